"""Scenarios: what runs on an emulated host, as a value that serialises to JSON.

Mirrors nothing in Xen; it describes what a test rig would do to one: the host's shape
(pCPUs, topology, boot scheduler), the cpupools and domains it is set up with, the
``schedule_cpu_switch()`` protocol, and the program of every thread that runs on it:

- :class:`PcpuLoop`: a pCPU calling ``schedule()`` in a loop, with seeded random vCPU
  wake/sleep/migrate traffic (the stress workload's pCPUs);
- :class:`PcpuOps`: a pCPU running a fixed list of :class:`CpuOp` (``schedule``,
  ``wake d1v1``, ``idle 8``...), as the observers of ``xensched reproduce`` do;
- :class:`Toolstack`: an xl of its own, running a fixed list of :class:`XlOp`
  (``cpupool-cpu-add p 3``...) or seeded random pCPU and domain moves.

A scenario is data: frozen dataclasses, ``to_json()``/``from_json()`` (versioned,
``"version": 1``, validated on load with one-line :class:`~xensched.errors.ConfigError`
messages that name the field; never pickle), and programs are lists of operations, so
that a shrinker can drop threads and operations and a replay file can embed the whole
thing. :func:`build_host` is the one place where a host is built from a scenario; the
programs run under the free-running driver (``xensched stress``) or the controlled one
(:func:`xensched.programs.run_controlled`), both in :mod:`xensched.programs`.

:data:`BUILTIN` holds the named scenarios (``xensched scenarios`` lists them); some are
factories with parameters (:func:`patch_move`, :func:`stress_default`).

Left out: per-domain scheduler parameters (weights, budgets), vCPU affinity, and
any timing: a scenario says what each thread does, never when.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from xensched.errors import ConfigError, XenError
from xensched.host import MAX_CPUS, Host, Topology
from xensched.inputs import InputError, read_text
from xensched.memory_model import check_model_name, make_memory_model
from xensched.mutants import check_mutants
from xensched.options import MAX_SECONDS
from xensched.protocol import SwitchProtocol
from xensched.schedulers import SCHEDULERS
from xensched.smp import bind

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

__all__ = [
    "BUILTIN",
    "CPU_VERBS",
    "POOL0",
    "SCENARIO_VERSION",
    "SETUP_CONTEXT",
    "SETUP_ONLY_VERBS",
    "SETUP_PROTOCOL",
    "XL_VERBS",
    "CpuOp",
    "DomainSpec",
    "JsonReader",
    "PcpuLoop",
    "PcpuOps",
    "PoolSpec",
    "Program",
    "Scenario",
    "Toolstack",
    "XlOp",
    "apply_xl",
    "build_host",
    "builtin",
    "builtin_parameters",
    "check_protocol",
    "default_pools",
    "json_kind",
    "load_scenario",
    "override_scenario",
    "parameters_line",
    "patch_move",
    "peer_round_trip",
    "round_trip",
    "scenario_from_options",
    "scenario_reference",
    "stress_default",
    "switch_race",
]

SCENARIO_VERSION: Final = 1
POOL0: Final = "Pool-0"
#: Bounds on the guests a scenario creates, so that set-up fits a run. Set-up is one
#: thread creating every vCPU in turn: 4096 vCPUs took 1.2 to 1.4 s here on 8 pCPUs
#: (1000 x 4 or 250 x 16), about 3 s on 4 pCPUs, and it grows faster than linearly
#: beyond. Set-up counts against a stress run's duration and shows progress. 128 vCPUs is
#: Xen's own limit for an HVM guest; 1024 domains leaves room for 4 vCPUs each.
MAX_DOMAINS: Final = 1024
MAX_DOMAIN_VCPUS: Final = 128
MAX_GUEST_VCPUS: Final = 4096
#: vCPUs per guest domain of the stress workload, and of domains an option adds.
DEFAULT_VCPUS: Final = 2
#: The context that builds the host; the stress harness leaves its events out of
#: what it shows of a run.
SETUP_CONTEXT: Final = "setup"
#: The protocol the setup runs under, whatever the scenario's (see build_host).
SETUP_PROTOCOL: Final = "fixed"


# The two functions below are the only ones that know what a protocol spec is; the
# rest of the scenario code treats it as an opaque string.
def check_protocol(spec: str) -> str:
    """Validate a protocol spec and return it unchanged.

    Raises:
        ConfigError: not a protocol this build knows.
    """
    SwitchProtocol.parse(spec)  # raises ConfigError naming the problem
    return spec


def _switch_protocol(h: Host, spec: str) -> None:
    """Make ``h`` run protocol ``spec`` from now on (after setup)."""
    h.protocol = SwitchProtocol.parse(spec)


# -- operations ---------------------------------------------------------------------------
#: Verbs of :class:`XlOp` and their arguments (``?`` marks an optional one).
XL_VERBS: Final[dict[str, tuple[str, ...]]] = {
    "cpupool-create": ("NAME", "SCHED"),
    "cpupool-destroy": ("POOL",),
    "cpupool-cpu-add": ("POOL", "CPU"),
    "cpupool-cpu-remove": ("POOL", "CPU"),
    "cpupool-migrate": ("DOMAIN", "POOL"),
    "create": ("NAME", "POOL", "VCPUS"),
    "destroy": ("DOMAIN",),
    "vcpu-migrate": ("VCPU", "CPU?"),
    "vcpu-pin": ("VCPU", "CPU"),
    "vcpu-sleep": ("VCPU",),
    "vcpu-wake": ("VCPU",),
    # Not xl's: pCPU CPU runs schedule() once, so that a scenario can start with a
    # vCPU running. Setup only: a toolstack thread must not act as a pCPU.
    "schedule": ("CPU",),
}
#: Verbs of :data:`XL_VERBS` that only ``setup`` may use.
SETUP_ONLY_VERBS: Final = frozenset({"schedule"})
#: Verbs of :class:`CpuOp`: what a pCPU does in Xen, run on that pCPU.
CPU_VERBS: Final[dict[str, tuple[str, ...]]] = {
    "schedule": (),
    "wake": ("VCPU",),
    "sleep": ("VCPU",),
    "migrate": ("VCPU", "CPU?"),
    # Up to N times: wait until SCHEDULE_SOFTIRQ is raised here, then schedule();
    # stop waiting once every toolstack thread is done (an idle pCPU's loop).
    "idle": ("N",),
}
_INT_ARGS = frozenset({"CPU", "CPU?", "VCPUS", "N"})


def _check_op(
    verbs: Mapping[str, tuple[str, ...]], verb: str, args: tuple[str, ...]
) -> str:
    """Why ``verb args`` is not a valid operation, or ``""``."""
    spec = verbs.get(verb)
    if spec is None:
        return f"unknown verb {verb!r}; choose one of {', '.join(verbs)}"
    required = sum(1 for a in spec if not a.endswith("?"))
    if not required <= len(args) <= len(spec):
        return f"{verb!r} takes {' '.join(spec) or 'no arguments'}"
    for name, value in zip(spec, args, strict=False):
        if not value or any(c.isspace() for c in value):
            return f"{verb!r}: {name} must be a non-empty word"
        if name in _INT_ARGS:
            try:
                n = int(value)
            except ValueError:
                return f"{verb!r}: {name} must be an integer, not {value!r}"
            if n < (1 if name in ("VCPUS", "N") else 0):
                return f"{verb!r}: {name}={n} is out of range"
    return ""


@dataclass(frozen=True, slots=True)
class XlOp:
    """One toolstack operation, in xl's words: ``XlOp("cpupool-cpu-add", ("p", "3"))``.

    In JSON it is one string, ``"cpupool-cpu-add p 3"``; :meth:`parse` reads it.
    """

    verb: str
    args: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> XlOp:
        verb, *args = text.split()
        return cls(verb, tuple(args))

    def __str__(self) -> str:
        return " ".join((self.verb, *self.args))

    def problem(self) -> str:
        return _check_op(XL_VERBS, self.verb, self.args)


@dataclass(frozen=True, slots=True)
class CpuOp:
    """One operation of a pCPU program: ``CpuOp("wake", ("d1v1",))``, ``"wake d1v1"``."""

    verb: str
    args: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> CpuOp:
        verb, *args = text.split()
        return cls(verb, tuple(args))

    def __str__(self) -> str:
        return " ".join((self.verb, *self.args))

    def problem(self) -> str:
        return _check_op(CPU_VERBS, self.verb, self.args)


# -- programs --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PcpuLoop:
    """pCPU ``cpu`` calls ``schedule()`` ``schedules`` times (``None``: until stopped).

    After each call, with probability ``traffic``, a wake, sleep or migrate of a vCPU
    drawn from the thread's seeded RNG. Once done it idles: ``schedule()`` only when
    its SCHEDULE_SOFTIRQ is raised, until the toolstack threads are done.
    """

    cpu: int
    schedules: int | None = None
    traffic: float = 0.1

    @property
    def name(self) -> str:
        return f"pcpu{self.cpu}"


@dataclass(frozen=True, slots=True)
class PcpuOps:
    """pCPU ``cpu`` runs ``ops`` in order, then ends."""

    cpu: int
    ops: tuple[CpuOp, ...] = ()

    @property
    def name(self) -> str:
        return f"pcpu{self.cpu}"


@dataclass(frozen=True, slots=True)
class Toolstack:
    """An xl of its own: ``ops`` in order, or seeded random moves.

    With ``ops`` given, each is one xl command. Without, the thread makes ``moves``
    moves (``None``: until stopped), each a ``cpupool-migrate`` of a random guest
    domain with probability ``domain_moves``, else a pCPU move from a random pool to
    another (``cpupool-cpu-remove`` then ``cpupool-cpu-add``, as xl does). A command
    refused with EAGAIN, EBUSY or EADDRNOTAVAIL (a vCPU still on the pCPU, another
    move in progress) is retried, up to ``attempts`` tries in all, as libxc retries
    EAGAIN; other refusals are counted, not raised. Free-running, the thread
    waits ``interval`` seconds before each random move and between ``ops``.
    """

    name: str
    ops: tuple[XlOp, ...] | None = None
    moves: int | None = None
    domain_moves: float = 0.1
    interval: float = 0.005
    attempts: int = 50


Program: TypeAlias = PcpuLoop | PcpuOps | Toolstack


# -- host shape ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PoolSpec:
    """A cpupool created at setup, with its own scheduler instance: ``NAME:SCHED[:CPUS]``.

    ``cpus`` are moved into it from Pool-0; a pool without pCPUs starts empty.
    """

    name: str
    sched: str
    cpus: tuple[int, ...] = ()

    @classmethod
    def parse(cls, text: str) -> PoolSpec:
        """``"p1:credit2:2,3"`` -> ``PoolSpec("p1", "credit2", (2, 3))``.

        Raises:
            ConfigError: the text is not ``NAME:SCHED[:CPUS]`` or names an unknown
                scheduler.
        """
        parts = text.split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            raise ConfigError(
                f"pool {text!r}: expected NAME:SCHED[:CPUS], e.g. p1:credit2:2,3"
            )
        if len(parts) == 3 and not parts[2].strip():
            # "p1:credit2:" is a pool whose list was forgotten; "p1:credit2" says
            # an empty pool on purpose.
            raise ConfigError(
                f"pool {text!r}: empty pCPU list after the last ':' (give e.g. "
                f"{parts[0]}:{parts[1]}:2,3, or {parts[0]}:{parts[1]} for an empty pool)"
            )
        cpus = _parse_cpus(parts[2], text) if len(parts) == 3 else ()
        spec = cls(parts[0], parts[1], cpus)
        spec.check()
        return spec

    def check(self) -> None:
        """Checks that need no host: the name and the scheduler."""
        if not self.name or ":" in self.name or not _is_word(self.name):
            raise ConfigError(
                f"pool name {self.name!r}: must be a non-empty word, no ':'"
            )
        if self.name == POOL0:
            raise ConfigError(f"pool name {POOL0!r} is taken by the boot pool")
        if self.sched not in SCHEDULERS:
            raise ConfigError(
                f"pool {self.name!r}: unknown scheduler {self.sched!r}; choose one "
                f"of {', '.join(SCHEDULERS)}"
            )

    def spec(self) -> str:
        """Back to ``NAME:SCHED[:CPUS]``."""
        if not self.cpus:
            return f"{self.name}:{self.sched}"
        return f"{self.name}:{self.sched}:{','.join(map(str, self.cpus))}"


def _parse_cpus(text: str, spec: str) -> tuple[int, ...]:
    """``"2,3"`` or ``"4-7"`` or ``"1,4-5"`` -> sorted unique pCPU numbers."""
    cpus: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo_s, hi_s = part.split("-", 1)
                lo, hi = int(lo_s), int(hi_s)
                if lo > hi:
                    raise ValueError
                given = set(range(lo, hi + 1))
            else:
                given = {int(part)}
        except ValueError:
            raise ConfigError(
                f"pool {spec!r}: bad pCPU list {text!r} (expected e.g. 2,3 or 4-7)"
            ) from None
        # A pCPU named twice is a typo (2,2 for 2,3), not a wish to move it twice.
        if given & cpus:
            raise ConfigError(
                f"pool {spec!r}: pCPU {min(given & cpus)} is given twice in {text!r}"
            )
        cpus |= given
    if any(c < 0 for c in cpus):
        raise ConfigError(f"pool {spec!r}: pCPU numbers must be >= 0")
    return tuple(sorted(cpus))


@dataclass(frozen=True, slots=True)
class DomainSpec:
    """A guest domain created at setup, its vCPUs all awake.

    ``pool=None`` places it round-robin over the pools that have pCPUs once the pools
    are set up (Pool-0 first), counting only the domains not placed by name.
    """

    name: str
    vcpus: int = 1
    pool: str | None = None


def _is_word(s: str) -> bool:
    return bool(s) and not any(c.isspace() for c in s)


# -- the scenario ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Scenario:
    """Everything that runs on one emulated host; see the module docstring.

    Setup, in this order, single-threaded and under the fixed protocol: boot
    (``boot`` scheduler, Domain-0 with ``dom0_vcpus`` vCPUs in Pool-0); every pCPU of
    ``pools`` and ``free_cpus`` leaves Pool-0, in ascending order; each pool is created
    and gets its pCPUs; ``domains`` are created; ``setup`` runs. Then the protocol
    becomes ``protocol`` and the ``threads`` run, one thread per program.
    """

    name: str
    description: str = ""
    cpus: int = 4
    topology: str | None = None
    boot: str = "credit"
    pools: tuple[PoolSpec, ...] = ()
    free_cpus: tuple[int, ...] = ()
    domains: tuple[DomainSpec, ...] = ()
    dom0_vcpus: int = 1
    protocol: str = "fixed"
    setup: tuple[XlOp, ...] = ()
    threads: tuple[Program, ...] = ()
    #: Named edits of the model (:mod:`xensched.mutants`), applied after set-up.
    mutants: tuple[str, ...] = ()
    #: The memory model the threads run under (:mod:`xensched.memory_model`); the
    #: set-up is sequentially consistent.
    memory_model: str = "sc"

    # -- checks ------------------------------------------------------------------------
    def validate(self) -> None:
        """Check everything that can be checked without building the host.

        Raises:
            ConfigError: one line, naming the first bad field.
        """
        if not _is_word(self.name):
            raise ConfigError(f"name {self.name!r}: must be a non-empty word")
        if not 1 <= self.cpus <= MAX_CPUS:
            raise ConfigError(f"cpus={self.cpus}: must be 1 to {MAX_CPUS}")
        if self.topology is not None:
            try:
                topo = Topology.parse(self.topology)
            except ConfigError as e:
                raise ConfigError(f"topology: {e}") from None
            if topo.nr_cpus != self.cpus:
                raise ConfigError(
                    f"topology {self.topology} has {topo.nr_cpus} pCPUs, "
                    f"not cpus={self.cpus}"
                )
        if self.boot not in SCHEDULERS:
            raise ConfigError(
                f"boot: unknown scheduler {self.boot!r}; choose one of "
                f"{', '.join(SCHEDULERS)}"
            )
        try:
            check_protocol(self.protocol)
        except ConfigError as e:
            raise ConfigError(f"protocol: {e}") from None
        try:
            check_mutants(self.mutants)
        except ConfigError as e:
            raise ConfigError(f"mutants: {e}") from None
        try:
            check_model_name(self.memory_model)
        except ValueError as e:
            raise ConfigError(f"memory_model: {e}") from None
        if self.dom0_vcpus < 0:
            raise ConfigError(f"dom0_vcpus={self.dom0_vcpus}: must be >= 0")
        taken: dict[int, str] = {}
        names: set[str] = set()
        for i, p in enumerate(self.pools):
            try:
                p.check()
            except ConfigError as e:
                raise ConfigError(f"pools[{i}]: {e}") from None
            if p.name in names:
                raise ConfigError(f"pools[{i}]: pool {p.name!r} is given twice")
            names.add(p.name)
            for c in p.cpus:
                self._take(taken, c, repr(p.name), f"pools[{i}].cpus")
        for c in self.free_cpus:
            self._take(taken, c, "free_cpus", "free_cpus")
        if len(taken) >= self.cpus:
            raise ConfigError(
                "pools: they take every pCPU; Pool-0 (Domain-0's pool) needs at "
                "least one"
            )
        pool_names = {POOL0, *names}
        if len(self.domains) > MAX_DOMAINS:
            raise ConfigError(
                f"domains: {len(self.domains)} guests; at most {MAX_DOMAINS} "
                "(set-up must fit the run)"
            )
        guest_vcpus = sum(d.vcpus for d in self.domains)
        if guest_vcpus > MAX_GUEST_VCPUS:
            raise ConfigError(
                f"domains: {guest_vcpus} guest vCPUs in all; at most "
                f"{MAX_GUEST_VCPUS} (set-up must fit the run)"
            )
        dom_names: set[str] = set()
        for i, d in enumerate(self.domains):
            where = f"domains[{i}]"
            if not _is_word(d.name) or d.name in dom_names or d.name == "Domain-0":
                raise ConfigError(
                    f"{where}.name {d.name!r}: must be a new non-empty word"
                )
            dom_names.add(d.name)
            if not 1 <= d.vcpus <= MAX_DOMAIN_VCPUS:
                raise ConfigError(
                    f"{where}.vcpus={d.vcpus}: must be in [1, {MAX_DOMAIN_VCPUS}]"
                )
            if d.pool is not None and d.pool not in pool_names:
                raise ConfigError(f"{where}.pool {d.pool!r}: no such pool")
        for i, op in enumerate(self.setup):
            why = op.problem()
            if not why and op.verb == "schedule" and int(op.args[0]) >= self.cpus:
                why = f"cpu{op.args[0]} does not exist (cpus={self.cpus})"
            if why:
                raise ConfigError(f"setup[{i}] {str(op)!r}: {why}")
        self._validate_threads()

    def _take(self, taken: dict[int, str], c: int, who: str, where: str) -> None:
        if not 0 <= c < self.cpus:
            raise ConfigError(f"{where}: cpu{c} does not exist (cpus={self.cpus})")
        if c in taken:
            raise ConfigError(f"{where}: cpu{c} is also in {taken[c]}")
        taken[c] = who

    def unknown_pools(self) -> None:
        """Check that every pool an operation names exists: set up, or created by an
        operation (threads run concurrently, so any operation's creation counts).

        Not part of :meth:`validate`: an operation Xen refuses is a legitimate part
        of a scenario (a refusal is data). But when options replaced a built-in's
        pools, a name that never exists has every such operation refused with
        ENOENT: a run that silently does nothing.

        Raises:
            ConfigError: the first operation that names a pool that never exists.
        """
        known = {POOL0, *(p.name for p in self.pools)}
        ops: list[tuple[str, XlOp]] = [
            (f"setup[{i}]", op) for i, op in enumerate(self.setup)
        ]
        for i, t in enumerate(self.threads):
            if isinstance(t, Toolstack) and t.ops is not None:
                ops += [(f"threads[{i}].ops[{j}]", op) for j, op in enumerate(t.ops)]
        known |= {op.args[0] for _, op in ops if op.verb == "cpupool-create"}
        for where, op in ops:
            for name, arg in zip(XL_VERBS[op.verb], op.args, strict=False):
                if name == "POOL" and arg not in known:
                    raise ConfigError(
                        f"{where} {str(op)!r}: no cpupool {arg!r} (pools: "
                        f"{', '.join(sorted(known))})"
                    )

    def _validate_threads(self) -> None:
        pcpus: set[int] = set()
        names: set[str] = set()
        for i, t in enumerate(self.threads):
            where = f"threads[{i}]"
            if isinstance(t, (PcpuLoop, PcpuOps)):
                if not 0 <= t.cpu < self.cpus:
                    raise ConfigError(
                        f"{where}.cpu: cpu{t.cpu} does not exist (cpus={self.cpus})"
                    )
                if t.cpu in pcpus:
                    raise ConfigError(f"{where}.cpu: pCPU {t.cpu} has two programs")
                pcpus.add(t.cpu)
            if isinstance(t, PcpuLoop):
                if t.schedules is not None and t.schedules < 0:
                    raise ConfigError(f"{where}.schedules={t.schedules}: must be >= 0")
                _probability(f"{where}.traffic", t.traffic)
            elif isinstance(t, PcpuOps):
                for j, cop in enumerate(t.ops):
                    why = cop.problem()
                    if why:
                        raise ConfigError(f"{where}.ops[{j}] {str(cop)!r}: {why}")
            else:
                if not _is_word(t.name) or t.name.startswith("pcpu"):
                    raise ConfigError(
                        f"{where}.name {t.name!r}: must be a word not starting "
                        "with 'pcpu'"
                    )
                if t.name in names:
                    raise ConfigError(f"{where}.name {t.name!r}: given twice")
                names.add(t.name)
                if t.ops is not None:
                    if t.moves is not None:
                        raise ConfigError(
                            f"{where}: give ops or moves, not both (moves are random)"
                        )
                    for j, xop in enumerate(t.ops):
                        why = xop.problem()
                        if not why and xop.verb in SETUP_ONLY_VERBS:
                            why = f"{xop.verb!r} is for setup only"
                        if why:
                            raise ConfigError(f"{where}.ops[{j}] {str(xop)!r}: {why}")
                elif t.moves is not None and t.moves < 0:
                    raise ConfigError(f"{where}.moves={t.moves}: must be >= 0")
                _probability(f"{where}.domain_moves", t.domain_moves)
                if not (math.isfinite(t.interval) and 0 <= t.interval <= MAX_SECONDS):
                    raise ConfigError(
                        f"{where}.interval={t.interval}: must be a finite number of "
                        f"seconds in [0, {MAX_SECONDS:g}]"
                    )
                if t.attempts < 1:
                    raise ConfigError(f"{where}.attempts={t.attempts}: must be >= 1")

    # -- derived values -----------------------------------------------------------------
    def replace(self, **changes: Any) -> Scenario:
        """A copy with some fields changed (``dataclasses.replace``), validated.

        Raises:
            TypeError: an unknown field.
            ConfigError: the result is invalid.
        """
        new = dataclasses.replace(self, **changes)
        new.validate()
        return new

    def bounded(self, schedules: int = 20, moves: int = 4) -> Scenario:
        """A copy whose programs all end: unbounded loops get these bounds.

        The controlled driver needs it: a program without a bound would never give
        the run an end.
        """
        threads: list[Program] = []
        for t in self.threads:
            if isinstance(t, PcpuLoop) and t.schedules is None:
                t = dataclasses.replace(t, schedules=schedules)
            elif isinstance(t, Toolstack) and t.ops is None and t.moves is None:
                t = dataclasses.replace(t, moves=moves)
            threads.append(t)
        return dataclasses.replace(self, threads=tuple(threads))

    def is_bounded(self) -> bool:
        """Does every program end by itself?"""
        return all(
            not (isinstance(t, PcpuLoop) and t.schedules is None)
            and not (isinstance(t, Toolstack) and t.ops is None and t.moves is None)
            for t in self.threads
        )

    # -- JSON ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The JSON value (plain dicts, lists, strings and numbers)."""
        return {
            "version": SCENARIO_VERSION,
            "name": self.name,
            "description": self.description,
            "cpus": self.cpus,
            "topology": self.topology,
            "boot": self.boot,
            "pools": [
                {"name": p.name, "sched": p.sched, "cpus": list(p.cpus)}
                for p in self.pools
            ],
            "free_cpus": list(self.free_cpus),
            "domains": [
                {"name": d.name, "vcpus": d.vcpus, "pool": d.pool} for d in self.domains
            ],
            "dom0_vcpus": self.dom0_vcpus,
            "protocol": self.protocol,
            "setup": [str(op) for op in self.setup],
            "threads": [_program_to_dict(t) for t in self.threads],
            "mutants": list(self.mutants),
            "memory_model": self.memory_model,
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: object) -> Scenario:
        """Read and validate a scenario from its JSON value.

        Raises:
            ConfigError: one line naming the bad field.
        """
        r = JsonReader(data, "scenario")
        version = r.integer("version")
        if version != SCENARIO_VERSION:
            raise ConfigError(
                f"version: {version} is not supported (this build reads "
                f"{SCENARIO_VERSION})"
            )
        sc = cls(
            name=r.text("name"),
            description=r.text("description", ""),
            cpus=r.integer("cpus", 4),
            topology=r.opt_text("topology"),
            boot=r.text("boot", "credit"),
            pools=tuple(_pool_from(p) for p in r.objects("pools")),
            free_cpus=r.ints("free_cpus", ()),
            domains=tuple(_domain_from(d) for d in r.objects("domains")),
            dom0_vcpus=r.integer("dom0_vcpus", 1),
            protocol=r.text("protocol", "fixed"),
            setup=tuple(XlOp.parse(s) for s in r.words("setup")),
            threads=tuple(_program_from(t) for t in r.objects("threads")),
            mutants=tuple(r.words("mutants")),
            memory_model=r.text("memory_model", "sc"),
        )
        r.done()
        sc.validate()
        return sc

    @classmethod
    def from_json(cls, text: str) -> Scenario:
        """Parse and validate JSON text (see :meth:`from_dict`)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"not JSON: {e}") from None
        return cls.from_dict(data)


def _program_to_dict(t: Program) -> dict[str, Any]:
    if isinstance(t, PcpuLoop):
        return {
            "kind": "pcpu-loop",
            "cpu": t.cpu,
            "schedules": t.schedules,
            "traffic": t.traffic,
        }
    if isinstance(t, PcpuOps):
        return {"kind": "pcpu-ops", "cpu": t.cpu, "ops": [str(op) for op in t.ops]}
    return {
        "kind": "toolstack",
        "name": t.name,
        "ops": None if t.ops is None else [str(op) for op in t.ops],
        "moves": t.moves,
        "domain_moves": t.domain_moves,
        "interval": t.interval,
        "attempts": t.attempts,
    }


_KINDS = ("pcpu-loop", "pcpu-ops", "toolstack")


def _pool_from(r: JsonReader) -> PoolSpec:
    p = PoolSpec(r.text("name"), r.text("sched"), r.ints("cpus", ()))
    r.done()
    return p


def _domain_from(r: JsonReader) -> DomainSpec:
    d = DomainSpec(r.text("name"), r.integer("vcpus", 1), r.opt_text("pool"))
    r.done()
    return d


def _program_from(r: JsonReader) -> Program:
    kind = r.text("kind")
    t: Program
    if kind == "pcpu-loop":
        t = PcpuLoop(
            r.integer("cpu"), r.opt_integer("schedules"), r.number("traffic", 0.1)
        )
    elif kind == "pcpu-ops":
        t = PcpuOps(r.integer("cpu"), tuple(CpuOp.parse(s) for s in r.words("ops")))
    elif kind == "toolstack":
        ops = r.opt_words("ops")
        t = Toolstack(
            name=r.text("name"),
            ops=None if ops is None else tuple(XlOp.parse(s) for s in ops),
            moves=r.opt_integer("moves"),
            domain_moves=r.number("domain_moves", 0.1),
            interval=r.number("interval", 0.005),
            attempts=r.integer("attempts", 50),
        )
    else:
        raise ConfigError(f"{r.path}.kind: {kind!r}; choose one of {', '.join(_KINDS)}")
    r.done()
    return t


_MISSING: Any = object()


class JsonReader:
    """Typed reads of one JSON object; every error names the field's path (the
    scenario's fields here, a replay file's in :mod:`xensched.explore.replay`)."""

    def __init__(self, data: object, path: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected an object, got {json_kind(data)}")
        self.data: dict[str, Any] = data
        self.path = path
        self._seen: set[str] = set()

    def get(self, key: str, default: Any) -> Any:
        self._seen.add(key)
        if key in self.data:
            return self.data[key]
        if default is _MISSING:
            raise ConfigError(f"{self.path}.{key}: missing")
        return default

    def bad(self, key: str, want: str, value: object) -> ConfigError:
        return ConfigError(
            f"{self.path}.{key}: expected {want}, got {json_kind(value)}"
        )

    def text(self, key: str, default: Any = _MISSING) -> str:
        v = self.get(key, default)
        if not isinstance(v, str):
            raise self.bad(key, "a string", v)
        return v

    def opt_text(self, key: str) -> str | None:
        v = self.get(key, None)
        return None if v is None else self.text(key)

    def integer(self, key: str, default: Any = _MISSING) -> int:
        v = self.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.bad(key, "an integer", v)
        return v

    def opt_integer(self, key: str) -> int | None:
        v = self.get(key, None)
        return None if v is None else self.integer(key)

    def number(self, key: str, default: Any = _MISSING) -> float:
        v = self.get(key, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.bad(key, "a number", v)
        return float(v)

    def _list(self, key: str, default: Any) -> list[Any]:
        v = self.get(key, default)
        if not isinstance(v, (list, tuple)):
            raise self.bad(key, "a list", v)
        return list(v)

    def ints(self, key: str, default: Any = _MISSING) -> tuple[int, ...]:
        items = self._list(key, default)
        for i, v in enumerate(items):
            if isinstance(v, bool) or not isinstance(v, int):
                raise self.bad(f"{key}[{i}]", "an integer", v)
        return tuple(items)

    def words(self, key: str) -> list[str]:
        items = self._list(key, [])
        for i, v in enumerate(items):
            if not isinstance(v, str) or not v.split():
                raise self.bad(f"{key}[{i}]", "an operation string", v)
        return items

    def opt_words(self, key: str) -> list[str] | None:
        v = self.get(key, None)
        return None if v is None else self.words(key)

    def objects(self, key: str) -> list[JsonReader]:
        return [
            JsonReader(v, f"{self.path}.{key}[{i}]")
            for i, v in enumerate(self._list(key, []))
        ]

    def done(self) -> None:
        unknown = sorted(set(self.data) - self._seen)
        if unknown:
            raise ConfigError(f"{self.path}.{unknown[0]}: unknown field")


def json_kind(v: object) -> str:
    if v is None:
        return "null"
    return {
        bool: "a boolean",
        str: "a string",
        int: "an integer",
        float: "a number",
    }.get(type(v), "a list" if isinstance(v, list) else "an object")


def _probability(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name}={value}: must be a probability in [0, 1]")


# -- the one host builder -------------------------------------------------------------------
def build_host(
    scenario: Scenario,
    *,
    lock_timeout: float = 10.0,
    trace_all: bool = True,
    on_step: Callable[[int, int], None] | None = None,
    memory_seed: int = 0,
) -> Host:
    """The host of ``scenario``, set up and ready for its threads.

    The setup runs on one thread, bound to a toolstack context named ``setup``, with
    the fixed protocol: the legacy protocol's sequential bugs (RTDS<->Credit2 show
    theirs without any concurrency) belong to the setup, not to what the scenario
    runs. Violations seen during setup are dropped for the same reason; then the
    protocol becomes the scenario's.

    ``trace_all`` is :class:`~xensched.host.Host`'s: the stress harness turns it off.

    ``on_step(done, total)`` is called before each setup step (a pCPU moved, a pool
    or a domain created, a setup op), from this thread: a caller shows progress
    there, and stops a long set-up between two steps by raising (the exception goes
    through unchanged; the half-built host is dropped).

    Raises:
        ConfigError: the scenario is invalid, or Xen refused a setup step (naming it).
    """
    sc = scenario
    sc.validate()
    h = Host(
        sc.cpus,
        sched=sc.boot,
        protocol=SETUP_PROTOCOL,
        topology=sc.topology,
        dom0_vcpus=sc.dom0_vcpus,
        lock_timeout=lock_timeout,
        # Set-up's loads are no part of what a report of the run shows: naming
        # each one (a stack walk) was a fifth of a controlled run's cost.
        trace_all=False,
    )
    step = "boot"
    leaving = sorted({c for p in sc.pools for c in p.cpus} | set(sc.free_cpus))
    total = len(leaving) + sum(1 + len(p.cpus) for p in sc.pools)
    total += len(sc.domains) + len(sc.setup)
    done = 0

    def next_step(what: str) -> str:
        nonlocal done
        if on_step is not None:
            on_step(done, total)
        done += 1
        return what

    try:
        with bind(h.toolstack_context(SETUP_CONTEXT)):
            for cpu in leaving:
                step = next_step(f"cpupool-cpu-remove {POOL0} {cpu}")
                h.cpupool_cpu_remove(POOL0, cpu)
            for p in sc.pools:
                step = next_step(f"cpupool-create {p.name} {p.sched}")
                h.cpupool_create(p.name, p.sched)
                for cpu in p.cpus:
                    step = next_step(f"cpupool-cpu-add {p.name} {cpu}")
                    h.cpupool_cpu_add(p.name, cpu)
            with_cpus = [c.name for c in h.cpupool_list if c.cpu_valid.peek()]
            unplaced = 0
            for d in sc.domains:
                pool = d.pool
                if pool is None:
                    pool = with_cpus[unplaced % len(with_cpus)]
                    unplaced += 1
                step = next_step(f"create {d.name} {pool} {d.vcpus}")
                h.create_domain(d.name, pool, vcpus=d.vcpus)
            for op in sc.setup:
                step = next_step(str(op))
                apply_xl(h, op)
            if on_step is not None:
                on_step(total, total)
    except XenError as e:
        raise ConfigError(f"setting up the host: {step!r}: {e}") from e
    h.bus.clear_violations()
    h.bus.trace_all = trace_all
    _switch_protocol(h, sc.protocol)
    h.mutants = check_mutants(sc.mutants)
    h.memory_model = sc.memory_model
    h.bus.memory = make_memory_model(sc.memory_model, memory_seed)
    return h


def apply_xl(h: Host, op: XlOp) -> None:
    """Run one :class:`XlOp` on ``h`` from the calling thread.

    Raises:
        XenError: Xen refused it.
        ConfigError: the operation itself is malformed.
    """
    why = op.problem()
    if why:
        raise ConfigError(f"{str(op)!r}: {why}")
    a = op.args
    v = op.verb
    if v == "cpupool-create":
        h.cpupool_create(a[0], a[1])
    elif v == "cpupool-destroy":
        h.cpupool_destroy(a[0])
    elif v == "cpupool-cpu-add":
        h.cpupool_cpu_add(a[0], int(a[1]))
    elif v == "cpupool-cpu-remove":
        h.cpupool_cpu_remove(a[0], int(a[1]))
    elif v == "cpupool-migrate":
        h.cpupool_migrate(a[0], a[1])
    elif v == "create":
        h.create_domain(a[0], a[1], vcpus=int(a[2]))
    elif v == "destroy":
        h.destroy_domain(a[0])
    elif v == "vcpu-migrate":
        h.migrate(h.vcpu(a[0]), int(a[1]) if len(a) > 1 else None)
    elif v == "vcpu-pin":
        h.vcpu_pin(h.vcpu(a[0]), int(a[1]))
    elif v == "vcpu-sleep":
        h.sleep(h.vcpu(a[0]))
    elif v == "schedule":
        h.schedule(int(a[0]))
    else:
        assert v == "vcpu-wake"
        h.wake(h.vcpu(a[0]))


# -- built-in scenarios ------------------------------------------------------------------------
#: pCPU moved by ``patch-move`` and its runqueue peer, as in ``xensched reproduce``.
PATCH_MOVING_CPU: Final = 3
PATCH_PEER_CPU: Final = 2
#: Reschedules of the moving pCPU's observer while the move runs.
PATCH_OBSERVER_IDLE: Final = 8
#: Tries of the move when Xen says EAGAIN (a vCPU still being moved off the pCPU).
PATCH_MOVE_ATTEMPTS: Final = 3


def patch_move(
    boot: str = "credit",
    pool: str = "credit2",
    direction: str = "add",
    protocol: str = "legacy",
) -> Scenario:
    """The move of Xen commit 94734ab7c3's message, observed (``xensched reproduce``).

    A 4-pCPU host, Pool-0 = pCPUs 0-1, pool ``p`` (scheduler ``pool``) = pCPU 2, and
    pCPU 3 free (``add``) or also in ``p`` (``remove``, with d1v1 moved there); d1 has
    two vCPUs in ``p``, d1v1 asleep. The toolstack ``xl-mover`` moves pCPU 3 into ``p``
    or out of it while pCPU 3 runs ``schedule()`` twice then idles, rescheduling when
    asked, and its runqueue peer pCPU 2 wakes d1v1, schedules and puts it back to
    sleep.

    Raises:
        ConfigError: an unknown scheduler or direction.
    """
    if direction not in ("add", "remove"):
        raise ConfigError(f"direction {direction!r}: choose add or remove")
    x, peer = PATCH_MOVING_CPU, PATCH_PEER_CPU
    setup: tuple[XlOp, ...] = ()
    if direction == "remove":
        setup = (
            XlOp("cpupool-cpu-add", ("p", str(x))),
            XlOp("vcpu-migrate", ("d1v1", str(x))),
        )
    setup += (XlOp("vcpu-sleep", ("d1v1",)),)
    verb = "cpupool-cpu-add" if direction == "add" else "cpupool-cpu-remove"
    sc = Scenario(
        name="patch-move",
        description=(
            f"pCPU {x} {'into' if direction == 'add' else 'out of'} a {pool} pool "
            f"(boot {boot}) while pCPUs {x} and {peer} schedule: the race of Xen "
            "commit 94734ab7c3"
        ),
        cpus=4,
        boot=boot,
        pools=(PoolSpec("p", pool, (peer,)),),
        free_cpus=(x,),
        domains=(DomainSpec("d1", 2, "p"),),
        dom0_vcpus=1,
        protocol=protocol,
        setup=setup,
        threads=(
            Toolstack(
                "xl-mover",
                ops=(XlOp(verb, ("p", str(x))),),
                interval=0.0,
                attempts=PATCH_MOVE_ATTEMPTS,
            ),
            PcpuOps(
                x,
                (
                    CpuOp("schedule"),
                    CpuOp("schedule"),
                    CpuOp("idle", (str(PATCH_OBSERVER_IDLE),)),
                ),
            ),
            PcpuOps(
                peer,
                (
                    CpuOp("wake", ("d1v1",)),
                    CpuOp("schedule"),
                    CpuOp("sleep", ("d1v1",)),
                ),
            ),
        ),
    )
    sc.validate()
    return sc


def default_pools(cpus: int, boot: str) -> tuple[PoolSpec, ...]:
    """The stress workload's default: one pool ``p1`` with the upper half of the pCPUs.

    Its scheduler is the boot scheduler's counterpart that makes a switch
    interesting: Credit2 when booting Credit, Credit otherwise.
    """
    sched = "credit2" if boot == "credit" else "credit"
    return (PoolSpec("p1", sched, tuple(range(cpus // 2, cpus))),)


def stress_default(
    cpus: int = 4,
    *,
    topology: str | None = None,
    boot: str = "credit",
    pools: Sequence[PoolSpec] = (),
    protocol: str = "fixed",
    domains: int = 2,
    vcpus: int = DEFAULT_VCPUS,
    traffic: float = 0.1,
    controllers: int = 1,
    domain_moves: float = 0.1,
    switch_interval: float = 0.005,
    name: str = "stress-default",
) -> Scenario:
    """The stress workload: every pCPU hammers ``schedule()``, xl threads move pools.

    One :class:`PcpuLoop` per pCPU (unbounded, ``traffic``), ``controllers`` random
    :class:`Toolstack` threads ``xl0``..., ``domains`` guests ``d1``... of ``vcpus``
    vCPUs placed round-robin; ``pools`` or :func:`default_pools`.
    """
    sc = Scenario(
        name=name,
        description=(
            "every pCPU runs schedule() in a loop with vCPU traffic while xl threads "
            "move pCPUs and domains between pools (the xensched stress workload)"
        ),
        cpus=cpus,
        topology=topology,
        boot=boot,
        pools=tuple(pools) or default_pools(cpus, boot),
        domains=tuple(DomainSpec(f"d{i + 1}", vcpus) for i in range(domains)),
        dom0_vcpus=1,
        protocol=protocol,
        threads=(
            *(PcpuLoop(n, None, traffic) for n in range(cpus)),
            *(
                Toolstack(
                    f"xl{i}",
                    None,
                    None,
                    domain_moves=domain_moves,
                    interval=switch_interval,
                )
                for i in range(controllers)
            ),
        ),
    )
    return sc


def round_trip(
    boot: str = "credit", pool: str = "credit2", protocol: str = "legacy"
) -> Scenario:
    """pCPU 1 into a pool of scheduler ``pool`` and back, while it schedules twice."""
    return Scenario(
        name="round-trip",
        description=(
            f"a toolstack moves pCPU 1 from Pool-0 into a {pool} pool and back while "
            "pCPU 1 runs schedule() twice"
        ),
        cpus=2,
        boot=boot,
        pools=(PoolSpec("p", pool),),
        dom0_vcpus=1,
        protocol=protocol,
        threads=(
            Toolstack(
                "xl",
                ops=(
                    XlOp("cpupool-cpu-remove", (POOL0, "1")),
                    XlOp("cpupool-cpu-add", ("p", "1")),
                    XlOp("cpupool-cpu-remove", ("p", "1")),
                    XlOp("cpupool-cpu-add", (POOL0, "1")),
                ),
                interval=0.0,
            ),
            PcpuOps(1, (CpuOp("schedule"), CpuOp("schedule"))),
        ),
    )


def switch_race(
    boot: str = "credit",
    pool: str = "credit2",
    direction: str = "add",
    protocol: str = "fixed",
) -> Scenario:
    """The patch's move with two observer pCPUs, one direction at a time: the
    exploration form of ``patch-move`` (the same host and threads), named for
    ``xensched explore --scenario switch-race --direction add|remove``.

    Raises:
        ConfigError: an unknown scheduler or direction.
    """
    sc = patch_move(boot, pool, direction, protocol)
    return sc.replace(
        name="switch-race",
        description=(
            f"pCPU {PATCH_MOVING_CPU} {'into' if direction == 'add' else 'out of'} "
            f"a {pool} pool (boot {boot}) while pCPU {PATCH_MOVING_CPU} and its "
            f"runqueue peer pCPU {PATCH_PEER_CPU} schedule: the race of Xen commit "
            "94734ab7c3, for exploration"
        ),
    )


#: ``peer-round-trip``: the observer pCPU that load-balances and the peer it trylocks.
PEER_OBSERVER_CPU: Final = 1
PEER_MOVING_CPU: Final = 2


def peer_round_trip(
    boot: str = "credit2", pool: str = "credit", protocol: str = "fixed"
) -> Scenario:
    """A pool peer out of the pool and back while another pCPU trylocks it.

    A 3-pCPU host booting ``boot`` (Pool-0 = pCPU 0) with a pool ``p`` of scheduler
    ``pool`` holding pCPUs 1 and 2, and no guest. The toolstack moves pCPU 2 out of
    ``p`` (it becomes free, under ``boot``) and back in, while pCPU 1 runs
    ``schedule()`` twice: with nothing to run, Credit's ``csched_load_balance``
    trylocks every busy peer of the pool with ``pcpu_schedule_trylock``. This is the
    one caller of the trylock, and one move cannot show a missing re-check: an idle
    peer is in ``prv->idlers`` until ``deinit_pdata`` clears it, which is after the
    switch, so the observer only sees the peer's lock pointer change when it read the
    pool's pCPUs before the peer left and the pointer while the peer was away (on the
    boot scheduler's lock, Credit2's runqueue lock by default) and takes that lock
    after the peer came back. The re-check is what gives the stale lock back.
    """
    x, obs = PEER_MOVING_CPU, PEER_OBSERVER_CPU
    return Scenario(
        name="peer-round-trip",
        description=(
            f"pCPU {x} out of a {pool} pool (boot {boot}) and back while its pool "
            f"peer pCPU {obs} schedules and trylocks it (csched_load_balance)"
        ),
        cpus=3,
        boot=boot,
        pools=(PoolSpec("p", pool, (obs, x)),),
        dom0_vcpus=1,
        protocol=protocol,
        threads=(
            Toolstack(
                "xl",
                ops=(
                    XlOp("cpupool-cpu-remove", ("p", str(x))),
                    XlOp("cpupool-cpu-add", ("p", str(x))),
                ),
                interval=0.0,
            ),
            PcpuOps(obs, (CpuOp("schedule"), CpuOp("schedule"))),
        ),
    )


#: ``busy-peer-remove``: the pool peer that load-balances, the pCPU that leaves the
#: pool while running a vCPU, and the third pCPU of the pool that takes the vCPU.
BUSY_OBSERVER_CPU: Final = 2
BUSY_MOVING_CPU: Final = 3
BUSY_SPARE_CPU: Final = 4


def busy_peer_remove(
    boot: str = "credit2", pool: str = "credit", protocol: str = "fixed"
) -> Scenario:
    """A pool pCPU removed while it runs a vCPU and a pool peer load-balances.

    A 5-pCPU host booting ``boot`` (Pool-0 = pCPUs 0-1) with a pool ``p`` of
    scheduler ``pool`` holding pCPUs 2, 3 and 4, and a guest whose one vCPU runs on
    pCPU 3 when the threads start. The toolstack removes pCPU 3 from ``p`` while pCPU
    3 reschedules when asked (to let its vCPU go: ``cpu_disable_scheduler`` moves it
    to pCPU 4, whose lock nobody holds) and pCPU 2, with nothing to run, runs
    ``schedule()`` once: Credit's ``csched_load_balance`` trylocks pCPU 3, which is
    busy (not in ``prv->idlers``). The window: pCPU 2 reads pCPU 3's lock pointer,
    the removal completes (the pointer now names the boot scheduler's lock, unless it
    uses the same per-pCPU lock as Credit), and pCPU 2 takes the stale lock. With the
    re-check of ``pcpu_schedule_trylock`` the attempt fails; without it,
    ``pcpu_schedule_unlock``'s ``ASSERT`` fires. This is the one window of that
    trylock a single move opens, so ``xensched reproduce`` runs this scenario beside
    ``patch-move`` on every cpu-remove.
    """
    x, obs, spare = BUSY_MOVING_CPU, BUSY_OBSERVER_CPU, BUSY_SPARE_CPU
    return Scenario(
        name="busy-peer-remove",
        description=(
            f"pCPU {x} out of a {pool} pool (boot {boot}) while it runs a vCPU and "
            f"its pool peer pCPU {obs} load-balances (csched_load_balance)"
        ),
        cpus=5,
        boot=boot,
        pools=(PoolSpec("p", pool, (obs, x, spare)),),
        domains=(DomainSpec("d1", 1, "p"),),
        dom0_vcpus=1,
        protocol=protocol,
        setup=(XlOp("vcpu-migrate", ("d1v0", str(x))), XlOp("schedule", (str(x),))),
        threads=(
            Toolstack(
                "xl-mover",
                ops=(XlOp("cpupool-cpu-remove", ("p", str(x))),),
                interval=0.0,
                attempts=PATCH_MOVE_ATTEMPTS,
            ),
            PcpuOps(x, (CpuOp("idle", (str(PATCH_OBSERVER_IDLE),)),)),
            PcpuOps(obs, (CpuOp("schedule"),)),
        ),
    )


#: Named scenarios: a value, or a factory whose parameters all have defaults.
BUILTIN: Final[dict[str, Callable[..., Scenario]]] = {
    "busy-peer-remove": busy_peer_remove,
    "patch-move": patch_move,
    "peer-round-trip": peer_round_trip,
    "round-trip": round_trip,
    "stress-default": stress_default,
    "switch-race": switch_race,
}


def builtin_parameters(name: str) -> tuple[str, ...]:
    """The parameters built-in ``name`` takes: its factory's, by name (none for a
    value). ``name`` must be in :data:`BUILTIN`."""
    return tuple(inspect.signature(BUILTIN[name]).parameters)


def parameters_line(params: Sequence[str], prefix: str = "") -> str:
    """Which built-in takes which of ``params``, from the factories' signatures, as
    ``name: a, b; name: ...`` with each parameter after ``prefix`` (``--`` for the
    options that set them): a help text that cannot fall behind a new built-in."""
    return "; ".join(
        f"{name}: {', '.join(prefix + p for p in takes)}"
        for name in BUILTIN
        if (takes := [p for p in params if p in builtin_parameters(name)])
    )


def builtin(name: str, **params: Any) -> Scenario:
    """The built-in scenario ``name``, with its factory's ``params``.

    Raises:
        ConfigError: no such scenario, or a parameter it does not take.
    """
    try:
        factory = BUILTIN[name]
    except KeyError:
        raise ConfigError(
            f"no built-in scenario {name!r}; choose one of {', '.join(BUILTIN)}"
        ) from None
    takes = builtin_parameters(name)
    unknown = sorted(set(params) - set(takes))
    if unknown:
        raise ConfigError(
            f"scenario {name!r} has no parameter {unknown[0]!r} (it takes "
            f"{', '.join(takes) or 'none'})"
        )
    sc = factory(**params)
    sc.validate()
    return sc


def load_scenario(ref: str) -> Scenario:
    """A scenario by built-in name, JSON file path, or inline JSON (``{...}``).

    Raises:
        ConfigError: one line: no such name or file, or a bad scenario.
    """
    text = ref.strip()
    if text.startswith("{"):
        return Scenario.from_json(text)
    if ref in BUILTIN:
        return builtin(ref)
    try:
        content = read_text(ref, ref)
    except InputError as err:
        if err.os_error is None:
            raise  # read, but not UTF-8
        e = err.os_error
        if text.startswith("["):
            # Inline JSON that is no object ('[]'): say that, not "no such file".
            try:
                data = json.loads(text)
            except json.JSONDecodeError:
                pass
            else:
                return Scenario.from_dict(data)
        raise ConfigError(
            f"scenario {ref!r}: not a built-in ({', '.join(BUILTIN)}) and not a "
            f"readable file ({e.strerror})"
        ) from None
    try:
        return Scenario.from_json(content)
    except ConfigError as e:
        raise ConfigError(f"{ref}: {e}") from None


# -- the options of `xensched stress` and `xensched explore` ----------------------
def scenario_reference(sc: Scenario) -> str:
    """How ``--scenario`` names ``sc``: a built-in's name when it is that built-in
    unchanged, else the scenario itself as one line of JSON (the option takes both).
    """
    if sc.name in BUILTIN:
        try:
            if builtin(sc.name) == sc:
                return sc.name
        except ConfigError:  # a built-in that needs parameters
            pass
    return sc.to_json(indent=None)


def override_scenario(
    sc: Scenario,
    *,
    cpus: int | None = None,
    topology: str | None = None,
    boot: str | None = None,
    pool: Sequence[PoolSpec] | None = None,
    protocol: str | None = None,
    domains: int | None = None,
    vcpus: int | None = None,
    switch_interval: float | None = None,
    controllers: int | None = None,
    domain_moves: float | None = None,
    traffic: float | None = None,
    memory_model: str | None = None,
) -> Scenario:
    """``sc`` with the ``xensched stress`` options that were given (not ``None``).

    ``pool`` replaces the pools; ``domains`` replaces the domains by ``d1``...
    placed round-robin, of ``vcpus`` vCPUs (else the first domain's count, else the
    default), and ``vcpus`` alone resizes every domain; ``traffic`` applies to every
    :class:`PcpuLoop`; ``switch_interval`` to every toolstack thread;
    ``domain_moves`` to the random ones; ``controllers`` replaces the random
    toolstack threads by that many (``xl0``...), made like the first of them.

    Raises:
        ConfigError: the result is not a valid scenario.
    """
    changes: dict[str, object] = {}
    if cpus is not None:
        changes["cpus"] = cpus
    if topology is not None:
        changes["topology"] = topology
        if cpus is None:
            changes["cpus"] = Topology.parse(topology).nr_cpus
    if boot is not None:
        changes["boot"] = boot
    if pool is not None:
        changes["pools"] = tuple(pool)
    if protocol is not None:
        changes["protocol"] = protocol
    if memory_model is not None:
        changes["memory_model"] = memory_model
    if domains is not None:
        size = vcpus or (sc.domains[0].vcpus if sc.domains else DEFAULT_VCPUS)
        changes["domains"] = tuple(
            DomainSpec(f"d{i + 1}", size) for i in range(domains)
        )
    elif vcpus is not None:
        changes["domains"] = tuple(
            dataclasses.replace(d, vcpus=vcpus) for d in sc.domains
        )
    threads = list(sc.threads)
    if traffic is not None:
        threads = [
            dataclasses.replace(t, traffic=traffic) if isinstance(t, PcpuLoop) else t
            for t in threads
        ]
    if controllers is not None:
        random_xl = [t for t in threads if isinstance(t, Toolstack) and t.ops is None]
        model = random_xl[0] if random_xl else Toolstack("xl0")
        threads = [t for t in threads if t not in random_xl] + [
            dataclasses.replace(model, name=f"xl{i}") for i in range(controllers)
        ]
    if switch_interval is not None or domain_moves is not None:
        for i, t in enumerate(threads):
            if not isinstance(t, Toolstack):
                continue
            if switch_interval is not None:
                t = dataclasses.replace(t, interval=switch_interval)
            if domain_moves is not None and t.ops is None:
                t = dataclasses.replace(t, domain_moves=domain_moves)
            threads[i] = t
    changes["threads"] = tuple(threads)
    return sc.replace(**changes)


def scenario_from_options(ref: str, **given: Any) -> Scenario:
    """The scenario ``--scenario REF`` names, with the options given beside it.

    A built-in named by ``REF`` takes the options it has parameters for as
    parameters (``--scenario stress-default --cpus 8`` is the default workload on 8
    pCPUs, pools and loops included; ``--pool`` is its ``pools``); the other options,
    and all of them for a file or inline JSON, override fields
    (:func:`override_scenario`).

    Raises:
        ConfigError: no such scenario, or the result is invalid.
    """
    if ref not in BUILTIN:
        return override_scenario(load_scenario(ref), **given)
    takes = builtin_parameters(ref)
    params: dict[str, Any] = {}
    rest = dict(given)
    for option, value in given.items():
        param = "pools" if option == "pool" else option
        if param in takes and param != "name":
            params[param] = value
            del rest[option]
    if "topology" in params and "cpus" in takes and "cpus" not in params:
        params["cpus"] = Topology.parse(params["topology"]).nr_cpus
    return override_scenario(builtin(ref, **params), **rest)
