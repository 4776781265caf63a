"""An emulated Xen host: pCPUs, the boot scheduler, Pool-0, domains, and xl's verbs.

Mirrors: the boot path of xen/common/schedule.c (``scheduler_init()``,
``cpu_schedule_up()``, ``init_pdata`` at CPU_STARTING), the creation of Pool-0 in
xen/common/cpupool.c, and the ``xl cpupool-*`` and ``xl create/destroy`` commands as a
Python API. Everything the emulator adds lives here: execution contexts per pCPU and
per toolstack thread, the audit of lock pointers, lock statistics.

A toolstack call (``host.cpupool_cpu_add(...)``) made by a thread that is not bound to
one of this host's contexts runs bound to a toolstack context of that thread's own.
"""

from __future__ import annotations

import contextlib
import errno
import threading
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, ClassVar

from xensched import cpupool as _cp
from xensched.domain import DOMID_IDLE, Domain, Vcpu
from xensched.errors import ConfigError, XenError
from xensched.interaction import Bus
from xensched.memory import Cell, CpuMask, RunQueue
from xensched.memory_model import check_model_name, make_memory_model
from xensched.mutants import check_mutants
from xensched.percpu import PerCpu
from xensched.protocol import SwitchProtocol
from xensched.schedule import (
    VCPU2OP,
    check_switched,
    domain_pause,
    schedule,
    vcpu_block,
    vcpu_request_migrate,
    vcpu_unblock,
)
from xensched.schedulers import SCHEDULERS
from xensched.smp import ExecContext, bind, current_or_none
from xensched.spinlock import SpinLock, spin_lock, spin_unlock

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping
    from contextlib import AbstractContextManager

    from xensched.cpupool import Cpupool
    from xensched.schedulers.base import Scheduler
    from xensched.spinlock import SpinLockStats
    from xensched.violation import Violation

MAX_CPUS = 256


@dataclass(frozen=True, slots=True)
class Topology:
    """Sockets x cores; pCPU ``n`` is on socket ``n // cores``."""

    sockets: int = 1
    cores: int = 4

    def __post_init__(self) -> None:
        if self.sockets < 1 or self.cores < 1:
            raise ConfigError(
                f"topology {self.sockets}x{self.cores}: both must be >= 1"
            )

    @classmethod
    def parse(cls, text: str) -> Topology:
        """``"2x4"`` -> two sockets of four cores."""
        try:
            s, c = text.lower().split("x")
            return cls(int(s), int(c))
        except ValueError:
            raise ConfigError(
                f"topology {text!r}: expected SOCKETSxCORES, e.g. 2x4"
            ) from None

    @property
    def nr_cpus(self) -> int:
        return self.sockets * self.cores

    def cpu_to_socket(self, cpu: int) -> int:
        return cpu // self.cores


@dataclass(frozen=True, slots=True)
class PoolInfo:
    """One line of ``xl cpupool-list``."""

    name: str
    cpupool_id: int
    sched: str
    cpus: tuple[int, ...]
    domains: tuple[str, ...]


def _scheduler_class(name: str) -> type[Scheduler]:
    try:
        return SCHEDULERS[name]
    except KeyError:
        raise XenError(
            errno.EINVAL,
            f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}",
        ) from None


class Host:
    """An emulated Xen host.

    Args:
        cpus: number of pCPUs (1..256); default: the topology's count.
        sched: the boot scheduler (``sched=`` on Xen's command line), used by Pool-0
            and by free pCPUs.
        protocol: which ``schedule_cpu_switch()`` runs: a ``SwitchProtocol`` or its
            spec: ``"legacy"`` (before Xen commit 94734ab7c3), ``"fixed"``,
            ``"fixed-without:PART[,PART...]"`` or a user's ``"MODULE:FUNCTION"``.
        topology: sockets x cores (``Topology`` or ``"2x4"``); Credit2 makes one
            runqueue per socket. Default: one socket of ``cpus`` cores.
        dom0_vcpus: vCPUs of Domain-0, created in Pool-0 (0 for none).
        lock_timeout: the watchdog bound of every lock wait, in seconds.
        strict: raise on a failed ASSERT instead of recording it and going on.
        trace_all: name the Xen function of every event, not only of lock
            attempts (see :class:`~xensched.interaction.Bus`; it costs throughput).
        mutants: named edits of the model (:mod:`xensched.mutants`).
        memory_model: ``"sc"``, ``"tso"`` or ``"relaxed"``
            (:mod:`xensched.memory_model`), installed once the host has booted.
        memory_seed: the seed of the model's drain delays under the free-running
            driver.

    Raises:
        ConfigError: an invalid configuration.
    """

    PRIVATE: ClassVar[dict[str, str]] = {
        "bus": "the emulator: interaction points, violations, contexts",
        "cpu_contexts": "emulator bookkeeping: the execution context of each pCPU",
        "_callers": "emulator bookkeeping: toolstack contexts by calling thread",
        "_callers_lock": "guards _callers (emulator bookkeeping, not a Xen lock)",
        "protocol": "configuration: chosen before CPUs run, never changed while "
        "they do (the harness switches it between set-up and the run)",
        "mutants": "configuration: the named edits of xensched.mutants, set as the "
        "protocol is",
        "memory_model": "configuration: the name of the memory model on the bus "
        "(xensched.memory_model), set before CPUs run",
    }

    def __init__(
        self,
        cpus: int | None = None,
        *,
        sched: str = "credit",
        protocol: SwitchProtocol | str = SwitchProtocol.FIXED,
        topology: Topology | str | None = None,
        dom0_vcpus: int = 1,
        lock_timeout: float = 10.0,
        strict: bool = False,
        trace_all: bool = True,
        mutants: Iterable[str] = (),
        memory_model: str = "sc",
        memory_seed: int = 0,
    ) -> None:
        self.mutants = check_mutants(mutants)
        try:
            self.memory_model = check_model_name(memory_model)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        topo = Topology.parse(topology) if isinstance(topology, str) else topology
        if topo is None:
            if cpus is None:
                cpus = 4
            topo = Topology(1, cpus) if cpus >= 1 else None
        if cpus is None and topo is not None:
            cpus = topo.nr_cpus
        if cpus is None or not 1 <= cpus <= MAX_CPUS:
            raise ConfigError(f"cpus={cpus}: a host has 1 to {MAX_CPUS} pCPUs")
        assert topo is not None
        if topo.nr_cpus != cpus:
            raise ConfigError(
                f"topology {topo.sockets}x{topo.cores} has {topo.nr_cpus} pCPUs, "
                f"not {cpus}"
            )
        if sched not in SCHEDULERS:
            raise ConfigError(f"sched={sched!r}: choose one of {', '.join(SCHEDULERS)}")
        self.protocol = SwitchProtocol.parse(protocol)
        if dom0_vcpus < 0:
            raise ConfigError(f"dom0_vcpus={dom0_vcpus}: must be >= 0")
        if lock_timeout <= 0:
            raise ConfigError(f"lock_timeout={lock_timeout}: must be > 0")
        self.nr_cpus = cpus
        self.topology = topo
        self.bus = Bus(lock_timeout=lock_timeout, strict=strict, trace_all=trace_all)
        self.cpu_contexts = [self.bus.new_context(f"pcpu{n}", n) for n in range(cpus)]
        self._callers: dict[int, ExecContext] = {}
        self._callers_lock = threading.Lock()
        self.domctl_lock = SpinLock(self.bus, "domctl_lock")
        # Written under domctl_lock. The table is replaced, never mutated in place, so
        # that readers on other threads iterate a consistent snapshot.
        self.next_domid: Cell[int] = Cell(self.bus, "next_domid", 1)
        self.domain_list: Cell[Mapping[str, Domain]] = Cell(
            self.bus, "domain_list", MappingProxyType({})
        )

        # cpupool.c globals, written under cpupool_lock.
        self.cpupool_lock = SpinLock(self.bus, "cpupool_lock")
        self.cpupools: RunQueue[Cpupool] = RunQueue(self.bus, "cpupool_list")
        self.cpupool_free_cpus = CpuMask(self.bus, "cpupool_free_cpus", range(cpus))
        self.cpupool_moving_cpu: Cell[int] = Cell(self.bus, "cpupool_moving_cpu", -1)
        self.cpupool_cpu_moving: Cell[Cpupool | None] = Cell(
            self.bus, "cpupool_cpu_moving", None
        )

        with bind(self.cpu_contexts[0]):
            self._boot(sched, dom0_vcpus)
        # Boot is set-up, made under sequential consistency; what runs next is not.
        self.bus.memory = make_memory_model(memory_model, memory_seed)

    # -- boot -------------------------------------------------------------------------
    def _boot(self, sched: str, dom0_vcpus: int) -> None:
        self.ops: Scheduler = SCHEDULERS[sched](self, "Pool-0")
        self.ops.init()
        self.idle_domain = Domain(self.bus, DOMID_IDLE, "idle")
        percpu: list[PerCpu] = []
        for cpu in range(self.nr_cpus):  # cpu_schedule_up()
            idle = Vcpu(self.bus, self.idle_domain, cpu, cpu)
            pc = PerCpu(self.bus, cpu, idle, self.ops)
            percpu.append(pc)
            pc.schedule_data.sched_priv.store(self.ops.alloc_pdata(cpu))
            idle.sched_priv.store(self.ops.alloc_vdata(idle, None))
            idle.is_running.store(True)
        self.idle_domain.vcpus = tuple(pc.idle for pc in percpu)
        self.percpu: tuple[PerCpu, ...] = tuple(percpu)
        # A pre-patch host boots with the pre-patch init_pdata too.
        pre_patch = self.protocol is SwitchProtocol.LEGACY
        for cpu in range(self.nr_cpus):  # CPU_STARTING
            sched_priv = self.percpu[cpu].schedule_data.sched_priv.load()
            self.ops.init_pdata(sched_priv, cpu, pre_patch=pre_patch)
        self.cpupool0 = _cp.cpupool_create(self, 0, "Pool-0", lambda: self.ops)
        for cpu in range(self.nr_cpus):
            _cp.cpupool_assign_cpu(self, self.cpupool0, cpu)
        if dom0_vcpus:
            self._create_domain(0, "Domain-0", self.cpupool0, dom0_vcpus)

    # -- contexts ----------------------------------------------------------------------
    def on_cpu(self, cpu: int) -> bind:
        """``with host.on_cpu(n):`` runs the block as pCPU ``n``."""
        if not 0 <= cpu < self.nr_cpus:
            raise ConfigError(f"cpu{cpu} does not exist (host has {self.nr_cpus})")
        return bind(self.cpu_contexts[cpu])

    def _caller(self) -> AbstractContextManager[ExecContext]:
        ctx = current_or_none()
        if ctx is not None and ctx.bus is self.bus:
            return contextlib.nullcontext(ctx)
        ident = threading.get_ident()
        with self._callers_lock:
            ctx = self._callers.get(ident)
            if ctx is None:
                n = len(self._callers)
                ctx = self.bus.new_context("xl" if n == 0 else f"xl{n}", None)
                self._callers[ident] = ctx
        return bind(ctx)

    def toolstack_context(self, name: str) -> ExecContext:
        """A new context for a toolstack thread (bind it with ``smp.bind``)."""
        return self.bus.new_context(name, None)

    # -- lookups (xl's side: by name, without the hypervisor's locks) -----------------
    @property
    def cpupool_list(self) -> tuple[Cpupool, ...]:
        """The pools, by id (a snapshot, for the toolstack and reports)."""
        return self.cpupools.peek()

    @property
    def domains(self) -> Mapping[str, Domain]:
        """The domains by name (a snapshot: the table is replaced, never mutated)."""
        return self.domain_list.peek()

    def pool(self, name: str) -> Cpupool:
        for c in self.cpupool_list:
            if c.name == name:
                return c
        raise XenError(errno.ENOENT, f"no cpupool named {name!r}")

    def domain(self, name: str) -> Domain:
        try:
            return self.domains[name]
        except KeyError:
            raise XenError(errno.ENOENT, f"no domain named {name!r}") from None

    def _as_pool(self, pool: Cpupool | str) -> Cpupool:
        return self.pool(pool) if isinstance(pool, str) else pool

    def _as_domain(self, d: Domain | str) -> Domain:
        return self.domain(d) if isinstance(d, str) else d

    # -- xl cpupool-* ----------------------------------------------------------------------
    def cpupool_create(self, name: str, sched: str | None = None) -> Cpupool:
        """``xl cpupool-create name=NAME sched=SCHED``: its own scheduler instance."""
        cls = _scheduler_class(sched) if sched is not None else type(self.ops)
        with self._caller():
            return _cp.cpupool_create(self, None, name, lambda: cls(self, name))

    def cpupool_destroy(self, pool: Cpupool | str) -> None:
        """``xl cpupool-destroy``."""
        with self._caller():
            _cp.cpupool_destroy(self, self._as_pool(pool))

    def cpupool_cpu_add(self, pool: Cpupool | str, cpu: int) -> None:
        """``xl cpupool-cpu-add POOL CPU``: the pCPU must be free."""
        with self._caller():
            _cp.cpupool_assign_cpu(self, self._as_pool(pool), cpu)

    def cpupool_cpu_remove(self, pool: Cpupool | str, cpu: int) -> None:
        """``xl cpupool-cpu-remove POOL CPU``: the pCPU becomes free."""
        with self._caller():
            _cp.cpupool_unassign_cpu(self, self._as_pool(pool), cpu)

    def cpupool_migrate(self, domain: Domain | str, pool: Cpupool | str) -> None:
        """``xl cpupool-migrate DOMAIN POOL``."""
        with self._caller():
            _cp.cpupool_move_domain(self, self._as_domain(domain), self._as_pool(pool))

    def list_cpupools(self) -> list[PoolInfo]:
        """``xl cpupool-list``."""
        return [
            PoolInfo(
                c.name,
                c.cpupool_id,
                c.sched.opt_name,
                tuple(sorted(c.cpu_valid.peek())),
                tuple(d.name for d in c.domains.peek()),
            )
            for c in self.cpupool_list
        ]

    # -- domains -----------------------------------------------------------------------------
    def create_domain(
        self, name: str, pool: Cpupool | str = "Pool-0", vcpus: int = 1
    ) -> Domain:
        """``xl create``: a domain of ``vcpus`` vCPUs in ``pool``, all awake."""
        if vcpus < 1:
            raise XenError(errno.EINVAL, f"domain {name!r}: vcpus={vcpus} must be >= 1")
        with self._caller():
            c = self._as_pool(pool)
            spin_lock(self.domctl_lock)
            try:
                if name in self.domain_list.load():
                    raise XenError(errno.EEXIST, f"domain {name!r} already exists")
                if not c.cpu_valid.load():
                    # libxl creates in Pool-0, then xc_cpupool_movedomain(): ENOENT.
                    raise XenError(errno.ENOENT, f"cpupool {c.name!r} has no pCPUs")
                domid = self.next_domid.load()
                self.next_domid.store(domid + 1)
                return self._create_domain(domid, name, c, vcpus)
            finally:
                spin_unlock(self.domctl_lock)

    def _create_domain(self, domid: int, name: str, c: Cpupool, nvcpus: int) -> Domain:
        d = Domain(self.bus, domid, name)
        d.cpupool.store(c)
        domdata = c.sched.alloc_domdata(d)
        d.sched_priv.store(domdata)
        cpus = sorted(c.cpu_valid.load())
        d.vcpus = tuple(
            Vcpu(self.bus, d, i, cpus[i % len(cpus)]) for i in range(nvcpus)
        )
        for v in d.vcpus:
            v.sched_priv.store(c.sched.alloc_vdata(v, domdata))
            c.sched.insert_vcpu(v)
        spin_lock(self.cpupool_lock)
        c.domains.append(d)
        spin_unlock(self.cpupool_lock)
        self.domain_list.update(lambda table: MappingProxyType({**table, name: d}))
        for v in d.vcpus:
            vcpu_unblock(self, v)
        return d

    def destroy_domain(self, domain: Domain | str) -> None:
        """``xl destroy``."""
        with self._caller():
            spin_lock(self.domctl_lock)
            try:
                self._destroy_domain(self._as_domain(domain))
            finally:
                spin_unlock(self.domctl_lock)

    def _destroy_domain(self, d: Domain) -> None:
        if d.domain_id == 0:
            raise XenError(errno.EINVAL, "Domain-0 cannot be destroyed")
        domain_pause(self, d)
        ops = VCPU2OP(self, d.vcpus[0])
        for v in d.vcpus:
            ops.remove_vcpu(v)
            ops.free_vdata(v.sched_priv.load())
        ops.free_domdata(d.sched_priv.load())
        spin_lock(self.cpupool_lock)
        c = d.cpupool.load()
        if c is not None:
            c.domains.remove(d)
        spin_unlock(self.cpupool_lock)
        self.domain_list.update(
            lambda table: MappingProxyType(
                {n: x for n, x in table.items() if x is not d}
            )
        )

    def vcpu(self, name: str) -> Vcpu:
        """A vCPU by name, ``"d1v0"`` style."""
        for d in self.domains.values():
            for v in d.vcpus:
                if v.name == name:
                    return v
        raise XenError(errno.ENOENT, f"no vCPU named {name!r}")

    def wake(self, v: Vcpu) -> None:
        """Unblock a vCPU (``vcpu_unblock()``)."""
        with self._caller():
            vcpu_unblock(self, v)

    def sleep(self, v: Vcpu) -> None:
        """Block a vCPU (``vcpu_block()``)."""
        with self._caller():
            vcpu_block(self, v)

    def migrate(self, v: Vcpu, cpu: int | None = None) -> None:
        """Move a vCPU, to ``cpu`` if given and in its pool (``vcpu_migrate()``)."""
        with self._caller():
            vcpu_request_migrate(self, v, cpu)

    def vcpu_pin(self, v: Vcpu, cpu: int) -> None:
        """``xl vcpu-pin``: hard affinity to ``cpu`` (``vcpu_set_hard_affinity()``).

        Xen refuses an affinity with no online pCPU of the vCPU's cpupool (EINVAL);
        here an affinity is one pCPU, so that pCPU must be in the pool. It reads the
        pool's pCPUs without ``cpupool_lock``, as Xen reads ``VCPU2ONLINE(v)``.
        """
        with self._caller():
            pool = v.domain.cpupool.load()
            if pool is None or not 0 <= cpu < self.nr_cpus:
                raise XenError(
                    errno.EINVAL, f"cpu{cpu} is not a pCPU of {v.name}'s pool"
                )
            if not pool.cpu_valid.test(cpu):
                raise XenError(
                    errno.EINVAL,
                    f"cpu{cpu} is not in cpupool {pool.name!r} of {v.name}",
                )
            vcpu_request_migrate(self, v, cpu)

    def schedule(self, cpu: int) -> Vcpu:
        """Run ``schedule()`` on pCPU ``cpu`` from the calling thread."""
        with self.on_cpu(cpu):
            return schedule(self)

    # -- results ------------------------------------------------------------------------------
    @property
    def violations(self) -> list[Violation]:
        return self.bus.violations

    def audit(self) -> list[Violation]:
        """Check every pCPU's lock pointer against its scheduler (``lock-clobbered``)."""
        before = len(self.bus.violations)
        with self._caller():
            for cpu in range(self.nr_cpus):
                check_switched(self, cpu, "audit")
        return self.bus.violations[before:]

    def lock_stats(self) -> list[SpinLockStats]:
        return [lock.stats() for lock in self.bus.locks]

    def scheduler_of(self, cpu: int) -> Scheduler:
        return self.percpu[cpu].scheduler.peek()

    def lock_of(self, cpu: int) -> SpinLock:
        return self.percpu[cpu].schedule_data.schedule_lock.peek()

    def iter_vcpus(self) -> Iterator[Vcpu]:
        for d in list(self.domains.values()):
            yield from d.vcpus
