"""What a stress run does: a scenario (host, pools, domains, workload) and the bounds.

A :class:`StressConfig` is a plain frozen value: the CLI builds one from its options,
the pytest plugin from a marker, and :func:`xensched_stress.runner.run_stress` runs it.
What runs is a :class:`xensched.scenario.Scenario`: ``scenario`` when given, else the
``stress-default`` one that the shape and workload fields describe
(:meth:`StressConfig.to_scenario`). The rest (duration, ops, seed, delay injection,
watchdog...) are options of the run, not of the scenario.
:func:`rerun_command` turns a config back into the ``xensched stress ...`` command
line that reruns its workload, so every report can say how to get here again (a new
sample of the same workload, not a replay).

Mirrors nothing in Xen.
"""

from __future__ import annotations

import dataclasses
import math
import shlex
import warnings
from dataclasses import dataclass

from xensched import SCHEDULERS, ConfigError, Topology
from xensched.host import MAX_CPUS
from xensched.instruments import LOCKDEP_DEFAULT, RACE_DETECTOR_DEFAULT
from xensched.memory_model import check_model_name
from xensched.mutants import find_mutant
from xensched.options import MAX_SECONDS, mutant_scenario
from xensched.scenario import (
    MAX_DOMAIN_VCPUS,
    MAX_DOMAINS,
    MAX_GUEST_VCPUS,
    POOL0 as POOL0,
    PoolSpec as PoolSpec,
    Scenario,
    check_protocol,
    default_pools,
    override_scenario as override_scenario,
    scenario_from_options as scenario_from_options,
    scenario_reference as scenario_reference,
    stress_default,
)
from xensched.seeds import SEED_MAX

# Bounds of the run's options that the machine can honour (the durations: a day,
# xensched.options.MAX_SECONDS; the guests: xensched.scenario's MAX_DOMAINS...).
#: Control threads: each is an OS thread of its own contending for the same locks;
#: beyond 64 they only queue on the cpupool lock.
MAX_CONTROLLERS = 64
#: schedule() calls: more than a day at the rates this emulator reaches (about 10^5/s).
MAX_OPS = 10**10
#: One injected delay, and the GIL switch interval: a second already freezes a run.
MAX_SHORT_SECONDS = 1.0
#: The report caps: 10^4 violations of 10^3 events each is about the most a report
#: file and the memory of a run can hold.
MAX_VIOLATIONS = 10_000
MAX_EVENTS = 1_000


@dataclass(frozen=True, slots=True)
class StressConfig:
    """One stress run.

    Bounds: the run ends after ``duration`` seconds, or, when ``ops`` is set, after
    ``ops`` ``schedule()`` calls in total (``duration`` is then ignored), or at the
    first violation unless ``keep_going``, or on a deadlock, or when stopped.

    ``protocol`` is a protocol spec (``xensched.SwitchProtocol.parse``): ``legacy``,
    ``fixed``, ``fixed-without:PART[,PART...]`` or ``MODULE:FUNCTION``.

    Workload knobs beyond the CLI's basics: ``controllers`` control threads (each a
    toolstack context of its own) move pCPUs and domains every ``switch_interval``
    seconds, a fraction ``domain_moves`` of their operations being ``cpupool-migrate``
    of a domain; after each ``schedule()`` a pCPU thread does a vCPU wake, sleep or
    migrate with probability ``traffic``. ``gil_switch_interval`` is what
    ``sys.setswitchinterval`` is set to for the run; ``max_delay`` bounds one injected
    delay. ``lock_timeout`` bounds every emulated lock wait (``Host(lock_timeout=)``,
    a ``DeadlockError`` when it runs out); by default it is ``watchdog``.
    ``trace_all`` keeps every load, named after its Xen function, in the traces that
    reports show (``Host(trace_all=)``), at a cost in throughput.
    ``max_violations`` bounds the violations kept in full (the first ones, plus the
    first of each kind); the rest are counted by kind. ``max_events`` bounds the
    events kept with each. Together they bound the memory and the report of a
    ``keep_going`` run of any length.

    ``memory_model`` is what the threads run under (:mod:`xensched.memory_model`):
    ``sc``, ``tso`` or ``relaxed``; its store buffers drain after delays drawn from
    ``seed``. With ``scenario`` given, ``sc`` leaves the scenario's own model, and
    another overrides it (:meth:`to_scenario`; :attr:`run_memory_model` is the one
    that runs).

    ``lockdep`` installs :class:`xensched.lockdep.Lockdep` on the host's bus for the
    whole run (:mod:`xensched.instruments`); ``race_detector`` does the same with
    :class:`xensched.race_detector.RaceDetector` (every load then a point).

    ``scenario``, when given, is what runs: its host and programs replace the shape
    and workload fields (``cpus`` to ``domain_moves``), which are then not used.

    ``mutant`` names a mutant of the fix (:data:`xensched.mutants.CATALOG`) that runs
    in place of the fix: a protocol mutant's protocol replaces ``protocol`` (or the
    scenario's; a ``protocol`` other than the default ``fixed`` must then be the
    mutant's own), and its edits are added to the scenario's, on the scenario's
    protocol (:meth:`to_scenario`; :attr:`run_protocol` is the protocol that runs).
    ``xensched stress --scenario NAME --mutant EDIT`` sets the scenario's protocol
    to ``fixed`` itself, unless ``--protocol`` says another.
    """

    cpus: int = 4
    topology: str | None = None
    boot: str = "credit"
    pools: tuple[PoolSpec, ...] = ()
    protocol: str = "fixed"
    domains: int = 2
    vcpus: int = 2
    duration: float | None = 2.0
    ops: int | None = None
    seed: int = 0
    switch_interval: float = 0.005
    delay_injection: float = 0.0
    keep_going: bool = False
    watchdog: float = 5.0
    controllers: int = 1
    traffic: float = 0.1
    domain_moves: float = 0.1
    max_delay: float = 1e-4
    gil_switch_interval: float = 1e-5
    lock_timeout: float | None = None
    scenario: Scenario | None = None
    trace_all: bool = False
    max_violations: int = 100
    max_events: int = 24
    memory_model: str = "sc"
    lockdep: bool = LOCKDEP_DEFAULT
    race_detector: bool = RACE_DETECTOR_DEFAULT
    mutant: str | None = None

    def validate(self) -> None:
        """Check everything that can be checked before building a host.

        Raises:
            ConfigError: naming the first problem found.
        """
        if not isinstance(self.lockdep, bool):
            raise ConfigError(f"lockdep: {self.lockdep!r}: expected a bool")
        if not isinstance(self.race_detector, bool):
            raise ConfigError(f"race_detector: {self.race_detector!r}: expected a bool")
        try:
            check_model_name(self.memory_model)
        except ValueError as e:
            raise ConfigError(f"memory_model: {e}") from None
        if self.scenario is not None:
            self.scenario.validate()
        else:
            self._validate_shape()
        if self.mutant is not None:
            m = find_mutant(self.mutant)
            # "fixed", the default, gives way: a marker cannot say it was not given.
            # An edit mutant runs on any protocol.
            other = self.protocol not in ("fixed", m.protocol)
            if self.scenario is None and m.protocol != "fixed" and other:
                raise ConfigError(
                    f"mutant {m.name} runs protocol {m.protocol}, not "
                    f"protocol={self.protocol}"
                )
        self._validate_run()

    def _validate_shape(self) -> None:
        cpus: object = self.cpus  # a marker's field can be anything
        if not (
            isinstance(cpus, int)
            and not isinstance(cpus, bool)
            and 2 <= cpus <= MAX_CPUS
        ):
            raise ConfigError(
                f"cpus={self.cpus}: a stress run needs 2 to {MAX_CPUS} pCPUs "
                "(one stays in Pool-0, the others move)"
            )
        if self.topology is not None:
            topo = Topology.parse(self.topology)
            if topo.nr_cpus != self.cpus:
                raise ConfigError(
                    f"topology {self.topology} has {topo.nr_cpus} pCPUs, "
                    f"not cpus={self.cpus}"
                )
        if self.boot not in SCHEDULERS:
            raise ConfigError(
                f"boot scheduler {self.boot!r}: choose one of {', '.join(SCHEDULERS)}"
            )
        check_protocol(self.protocol)
        seen_names: set[str] = set()
        seen_cpus: dict[int, str] = {}
        for p in self.pools:
            p.check()
            if p.name in seen_names:
                raise ConfigError(f"pool {p.name!r} is given twice")
            seen_names.add(p.name)
            for c in p.cpus:
                if c >= self.cpus:
                    raise ConfigError(
                        f"pool {p.name!r}: cpu{c} does not exist (cpus={self.cpus})"
                    )
                if c in seen_cpus:
                    raise ConfigError(
                        f"cpu{c} is in two pools ({seen_cpus[c]!r} and {p.name!r})"
                    )
                seen_cpus[c] = p.name
        if len(seen_cpus) >= self.cpus:
            raise ConfigError(
                "the pools take every pCPU: Pool-0 (Domain-0's pool) needs at least one"
            )
        _in_range("domains", self.domains, 0, MAX_DOMAINS)
        _in_range("vcpus", self.vcpus, 1, MAX_DOMAIN_VCPUS)
        if self.domains * self.vcpus > MAX_GUEST_VCPUS:
            raise ConfigError(
                f"domains={self.domains} x vcpus={self.vcpus}: at most "
                f"{MAX_GUEST_VCPUS} guest vCPUs in all (set-up must fit the run)"
            )
        _probability("traffic", self.traffic)
        _probability("domain_moves", self.domain_moves)
        _positive("switch_interval", self.switch_interval)
        _in_range("controllers", self.controllers, 0, MAX_CONTROLLERS)

    def _validate_run(self) -> None:
        if self.ops is not None:
            _in_range("ops", self.ops, 1, MAX_OPS)
        elif self.duration is None:
            raise ConfigError("give a duration or a number of ops")
        else:
            _positive("duration", self.duration)
        _in_range("seed", self.seed, 0, SEED_MAX)
        _positive("watchdog", self.watchdog)
        _positive("max_delay", self.max_delay, MAX_SHORT_SECONDS)
        _positive("gil_switch_interval", self.gil_switch_interval, MAX_SHORT_SECONDS)
        if self.lock_timeout is not None:
            _positive("lock_timeout", self.lock_timeout)
        _probability("delay_injection", self.delay_injection)
        _in_range("max_violations", self.max_violations, 1, MAX_VIOLATIONS)
        _in_range("max_events", self.max_events, 0, MAX_EVENTS)

    @property
    def lock_bound(self) -> float:
        """The bound of every emulated lock wait: ``lock_timeout`` or ``watchdog``."""
        return self.lock_timeout if self.lock_timeout is not None else self.watchdog

    def pool_layout(self) -> tuple[PoolSpec, ...]:
        """The pools to create: ``pools``, or the default when none are given.

        The default is one pool ``p1`` holding the upper half of the pCPUs, whose
        scheduler is the boot scheduler's counterpart that makes a switch interesting:
        Credit2 when booting Credit, Credit otherwise.
        """
        if self.scenario is not None:
            return self.scenario.pools
        return self.pools or default_pools(self.cpus, self.boot)

    @property
    def run_protocol(self) -> str:
        """The protocol that runs: the mutant's, else the scenario's or ``protocol``."""
        if self.mutant is not None:
            m = find_mutant(self.mutant)
            if m.protocol != "fixed":
                return m.protocol
        return self.scenario.protocol if self.scenario is not None else self.protocol

    @property
    def run_memory_model(self) -> str:
        """The memory model that runs: ``memory_model``, or the scenario's when
        that is ``sc``."""
        if self.scenario is not None and self.memory_model == "sc":
            return self.scenario.memory_model
        return self.memory_model

    def to_scenario(self) -> Scenario:
        """What runs: ``scenario``, or ``stress-default`` shaped by the fields, under
        :attr:`run_memory_model`, running :attr:`mutant` when one is named."""
        m = find_mutant(self.mutant) if self.mutant is not None else None
        return mutant_scenario(self._unmutated_scenario(), m)

    def _unmutated_scenario(self) -> Scenario:
        if self.scenario is not None:
            if self.scenario.memory_model == self.run_memory_model:
                return self.scenario
            return dataclasses.replace(self.scenario, memory_model=self.memory_model)
        sc = stress_default(
            self.cpus,
            topology=self.topology,
            boot=self.boot,
            pools=self.pools,
            protocol=self.protocol,
            domains=self.domains,
            vcpus=self.vcpus,
            traffic=self.traffic,
            controllers=self.controllers,
            domain_moves=self.domain_moves,
            switch_interval=self.switch_interval,
        )
        if self.memory_model == "sc":
            return sc
        return dataclasses.replace(sc, memory_model=self.memory_model)


def _positive(name: str, value: float, hi: float = MAX_SECONDS) -> None:
    if not (math.isfinite(value) and 0 < value <= hi):
        raise ConfigError(
            f"{name}={value}: must be a finite number of seconds in (0, {hi:g}]"
        )


def _in_range(name: str, value: object, lo: int, hi: int) -> None:
    # A marker's field can be anything; bool is an int, but True domains is a slip.
    ok = isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi
    if not ok:
        raise ConfigError(f"{name}={value!r}: must be an integer in [{lo}, {hi}]")


def _probability(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name}={value}: must be a probability in [0, 1]")


_DEFAULTS = StressConfig()


def rerun_command(cfg: StressConfig) -> str:
    """The exact ``xensched stress ...`` command line that reruns ``cfg``.

    The seed fixes every choice the threads make; with real threads the OS
    interleaving still varies from run to run.
    """
    args = ["xensched", "stress"]
    if cfg.scenario is not None:
        args += ["--scenario", scenario_reference(cfg.scenario)]
    else:
        args += ["--cpus", str(cfg.cpus)]
        if cfg.topology is not None:
            args += ["--topology", cfg.topology]
        args += ["--boot", cfg.boot]
        for p in cfg.pools:
            args += ["--pool", p.spec()]
        args += ["--protocol", cfg.run_protocol]
        args += ["--domains", str(cfg.domains), "--vcpus", str(cfg.vcpus)]
    if cfg.ops is not None:
        args += ["--ops", str(cfg.ops)]
    else:
        args += ["--duration", repr(cfg.duration)]
    if cfg.mutant is not None:
        args += ["--mutant", cfg.mutant]
    args += ["--seed", str(cfg.seed)]
    model = cfg.run_memory_model
    if model != "sc":
        # Also when the scenario's JSON above says it: the line reads as the run.
        args += ["--memory-model", model]
    workload: list[tuple[str, object, object]] = [
        ("--switch-interval", cfg.switch_interval, _DEFAULTS.switch_interval),
        ("--controllers", cfg.controllers, _DEFAULTS.controllers),
        ("--traffic", cfg.traffic, _DEFAULTS.traffic),
        ("--domain-moves", cfg.domain_moves, _DEFAULTS.domain_moves),
    ]
    optional: list[tuple[str, object, object]] = [
        *(workload if cfg.scenario is None else []),
        ("--delay-injection", cfg.delay_injection, _DEFAULTS.delay_injection),
        ("--max-delay", cfg.max_delay, _DEFAULTS.max_delay),
        ("--watchdog", cfg.watchdog, _DEFAULTS.watchdog),
        (
            "--gil-switch-interval",
            cfg.gil_switch_interval,
            _DEFAULTS.gil_switch_interval,
        ),
        ("--lock-timeout", cfg.lock_timeout, _DEFAULTS.lock_timeout),
        ("--max-violations", cfg.max_violations, _DEFAULTS.max_violations),
        ("--max-events", cfg.max_events, _DEFAULTS.max_events),
    ]
    for flag, value, default in optional:
        if value != default:
            args += [flag, repr(value)]
    if cfg.keep_going:
        args.append("--keep-going")
    if cfg.trace_all:
        args.append("--trace-all")
    if cfg.lockdep != LOCKDEP_DEFAULT:
        args.append("--lockdep" if cfg.lockdep else "--no-lockdep")
    if cfg.race_detector != RACE_DETECTOR_DEFAULT:
        args.append("--race-detector" if cfg.race_detector else "--no-race-detector")
    return shlex.join(args)


def reproduce_command(cfg: StressConfig) -> str:
    """Deprecated: :func:`rerun_command`.

    Renamed because the command reruns the workload, it does not replay it, and
    ``xensched reproduce`` is another command.
    """
    warnings.warn(
        "reproduce_command() is deprecated; use rerun_command()",
        DeprecationWarning,
        stacklevel=2,
    )
    return rerun_command(cfg)
