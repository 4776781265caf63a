"""Fuzzed cpupool move loops: random xl sequences against a host whose pCPUs hammer
``schedule()``, checked after every operation against a reference model.

Mirrors the rules of ``xen/common/cpupool.c`` and the ``xl`` commands of RELEASE-4.7.0
(in :class:`Membership`, a model of membership written from those rules and nothing else):
which pCPUs are free or in which pool, which domains where, which scheduler instance
each pCPU runs and which lock it uses, and the errno of each refusal.

:class:`XlFuzzMachine` is a Hypothesis ``RuleBasedStateMachine``. Each example builds
a host (one traffic domain, ``t1``, in Pool-0), starts one OS thread per pCPU running
``schedule()`` in a loop with seeded vCPU wake/sleep/migrate traffic (the stress
workload's :func:`xensched.programs.run_pcpu_loop`, free-running), and runs the rules
on Hypothesis's thread, which is the toolstack: ``cpupool-create`` (a random
scheduler), ``cpupool-destroy``, ``cpupool-cpu-add``, ``cpupool-cpu-remove``, a pCPU
move (remove then add, as xl does), ``cpupool-migrate``, ``create``, ``destroy`` and
``vcpu-pin``, invalid ones included. After every operation:

- Xen's answer must be the model's: accepted, or refused with the same errno;
- a refused operation must leave the host unchanged, an accepted one must leave it as
  the model says (``membership`` otherwise; ``xl-result`` for a wrong answer);
- no check of the emulated Xen (ASSERT, lock-mismatch, lockdep...) may have fired.

A failure raises :class:`FuzzFailure`; Hypothesis shrinks the sequence and keeps it in
its example database. A campaign (``xensched fuzz``) gives the search and the shrink a
budget each (:attr:`XlFuzzMachine.search_deadline`, :attr:`XlFuzzMachine.shrink_seconds`,
counted from :attr:`XlFuzzMachine.first_failure`): once one is spent, the machine raises
:class:`BudgetSpent` before its next operation, which stops Hypothesis. Every machine records the operations it ran in ``log`` (the
class attribute :attr:`XlFuzzMachine.last_log` holds the last machine's), so that the
last, shrunk execution can be printed as an xl script; the shortest failing one is
kept too (:attr:`XlFuzzMachine.shortest_failure`) for a failure Hypothesis cannot
replay, which :func:`shrink_by_replay` shrinks by replaying (:func:`run_script`).
An operation that does not return in time, or a pCPU thread stuck on a lock, is a
``deadlock`` whose :attr:`FuzzFailure.dump` has every thread's stack and every lock's
owner; the example's threads then give up quickly and are joined.

pytest users subclass it (see the README, *xensched fuzz*)::

    class Legacy(XlFuzzMachine):
        config = FuzzConfig(protocol="legacy")

    TestLegacy = Legacy.TestCase

Harness rules (not Xen's), as in :mod:`xensched.programs`: the traffic domain is
never destroyed (its vCPUs are the pCPUs' traffic); before ``cpupool-migrate`` the
toolstack takes the domain's traffic guard and waits until no migration of its vCPUs
is pending. ``cpupool-cpu-remove`` refused with EAGAIN or EBUSY while vCPUs are
still being moved off the pCPU is retried, as libxc does, up to
:attr:`FuzzConfig.attempts` times; a removal still refused then is a transient
refusal and the sequence goes on: after EAGAIN the model expects what Xen 4.7.0 leaves,
the pCPU free and moving (out of its pool, every other removal refused with
EADDRNOTAVAIL until a removal of that pCPU lands; adding it back to its pool trips
4.7.0's ``ASSERT(c != old_pool)``, a real bug reported as such), after EBUSY the host
unchanged.

Left out: concurrent toolstacks (one toolstack thread, Hypothesis's: the model then
knows the order of operations), scheduler parameters, vCPU soft affinity.
"""

from __future__ import annotations

import contextlib
import errno
import threading
import time
import traceback
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

import hypothesis.strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from xensched import SCHEDULERS, DeadlockError, XenError, XenschedError
from xensched.diagnostics import deadlock_report
from xensched.drivers.free import free_running
from xensched.lockdep import Lockdep
from xensched.programs import (
    CpuStats,
    Harness,
    migrations_landed,
    run_pcpu_loop,
    thread_rng,
)
from xensched.race_detector import RaceDetector
from xensched.scenario import (
    POOL0,
    DomainSpec,
    PcpuLoop,
    Scenario,
    Toolstack,
    XlOp,
    apply_xl,
    build_host,
)
from xensched.smp import bind
from xensched.spinlock import spin_lock, spin_unlock
from xensched.violation import Violation, ViolationKind

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from xensched import Host
    from xensched.smp import ExecContext

__all__ = [
    "TRAFFIC_DOMAIN",
    "BudgetSpent",
    "FirstFailure",
    "FuzzConfig",
    "FuzzFailure",
    "Hammer",
    "Membership",
    "ReplayShrink",
    "XlFuzzMachine",
    "run_script",
    "script_scenario",
    "shrink_by_replay",
]

#: The domain whose vCPUs the pCPU threads wake, put to sleep and migrate.
TRAFFIC_DOMAIN = "t1"
#: Names the rules draw from: one more than can exist, so that some are unknown.
POOL_NAMES = (POOL0, "p1", "p2")
UNKNOWN_POOL = "p9"
GUEST_NAMES = ("d1", "d2")
#: An idle pCPU polls its SCHEDULE_SOFTIRQ this often.
_IDLE_POLL = 0.0005
#: Joining the pCPU threads at the end of an example.
_JOIN_BOUND = 10.0
#: The lock wait bound once a deadlock is seen: the threads stuck behind it give up
#: quickly, so that the example ends (as the stress runner's teardown).
_TEARDOWN_LOCK_TIMEOUT = 0.25


@dataclass(frozen=True, slots=True)
class FuzzConfig:
    """What one fuzzing campaign runs on (each example builds a fresh host)."""

    cpus: int = 4
    boot: str = "credit"
    protocol: str = "fixed"
    #: Edits of the model (:mod:`xensched.mutants`).
    edits: tuple[str, ...] = ()
    memory_model: str = "sc"
    lockdep: bool = False
    race_detector: bool = False
    seed: int = 0
    #: Chance of a vCPU operation after each ``schedule()`` of a pCPU thread.
    traffic: float = 0.2
    #: Tries of a ``cpupool-cpu-remove`` refused with EAGAIN/EBUSY.
    attempts: int = 50
    #: A lock wait longer than this is a deadlock.
    lock_timeout: float = 5.0

    def scenario(self) -> Scenario:
        """The host of each example: ``t1`` (2 vCPUs) in Pool-0, every pCPU looping."""
        return Scenario(
            name="fuzz",
            description="xensched fuzz: random xl operations while pCPUs schedule()",
            cpus=self.cpus,
            boot=self.boot,
            domains=(DomainSpec(TRAFFIC_DOMAIN, 2, POOL0),),
            protocol=self.protocol,
            mutants=self.edits,
            memory_model=self.memory_model,
            threads=tuple(PcpuLoop(c, None, self.traffic) for c in range(self.cpus)),
        )

    def key(self) -> str:
        """Names the campaign in the example database (a failure of one protocol is
        not replayed first under another)."""
        parts = [self.boot, str(self.cpus), self.protocol, *self.edits]
        return "-".join([*parts, self.memory_model])


class FuzzFailure(AssertionError):  # noqa: N818 (what a failing test raises)
    """What the machine raises: the violations of one operation, and, after a
    deadlock, ``dump``: every thread's stack and every lock's owner, taken while the
    threads were stuck."""

    def __init__(self, violations: list[Violation], dump: str | None = None) -> None:
        self.violations = violations
        self.dump = dump
        super().__init__("; ".join(v.describe() for v in violations))


class BudgetSpent(BaseException):
    """What the machine raises before an operation once a campaign's budget for
    ``phase`` (``"search"`` or ``"shrink"``) is spent. Not an ``Exception``: Hypothesis
    lets it through (and stops) rather than take it for a failure to shrink."""

    def __init__(self, phase: str) -> None:
        super().__init__(phase)
        self.phase = phase


@dataclass(frozen=True, slots=True)
class FirstFailure:
    """A campaign's first failure: when (``time.monotonic()``), the campaign's
    figures then (the failing example and its operations included), and the length
    of the failing sequence. What came before is the search, what comes after the
    shrink."""

    at: float
    examples: int
    operations: int
    length: int


# -- the reference model ----------------------------------------------------------------
@dataclass(slots=True)
class _Pool:
    sched: str
    cpus: set[int] = field(default_factory=set)
    domains: set[str] = field(default_factory=set)


class Membership:
    """The membership Xen must show, kept by Xen's rules in plain Python.

    :meth:`predict` says what Xen answers to an operation (None: accepted, else the
    errno), checking in the order Xen checks; :meth:`apply` makes an accepted one.
    """

    def __init__(self, nr_cpus: int) -> None:
        self.nr_cpus = nr_cpus
        self.pools: dict[str, _Pool] = {}
        self.free: set[int] = set()
        #: Domain name -> (pool, vCPUs).
        self.domains: dict[str, tuple[str, int]] = {}
        #: A pCPU a removal refused with EAGAIN left free and moving, and the pool
        #: that removal named (``cpupool_moving_cpu``, ``cpupool_cpu_moving``).
        self.moving: tuple[int, str] | None = None

    @classmethod
    def of(cls, h: Host) -> Membership:
        """The model of ``h`` as it is now (after set-up)."""
        m = cls(h.nr_cpus)
        for p in h.list_cpupools():
            m.pools[p.name] = _Pool(p.sched, set(p.cpus), set(p.domains))
        m.free = set(h.cpupool_free_cpus.peek())
        for d in h.domains.values():
            pool = d.cpupool.peek()
            m.domains[d.name] = (pool.name if pool else "", len(d.vcpus))
        m.moving = _moving(h)
        return m

    def state(self) -> tuple[object, ...]:
        return (
            tuple(
                (n, p.sched, tuple(sorted(p.cpus)), tuple(sorted(p.domains)))
                for n, p in sorted(self.pools.items())
            ),
            tuple(sorted(self.free)),
            tuple(sorted(self.domains.items())),
            self.moving,
        )

    @staticmethod
    def observe(h: Host) -> tuple[object, ...]:
        """What ``h`` shows, in :meth:`state`'s shape."""
        domains = []
        for d in h.domains.values():
            pool = d.cpupool.peek()
            domains.append((d.name, (pool.name if pool else "", len(d.vcpus))))
        return (
            tuple(
                sorted(
                    (p.name, p.sched, p.cpus, tuple(sorted(p.domains)))
                    for p in h.list_cpupools()
                )
            ),
            tuple(sorted(h.cpupool_free_cpus.peek())),
            tuple(sorted(domains)),
            _moving(h),
        )

    def pool_of_cpu(self, cpu: int) -> str | None:
        for name, p in self.pools.items():
            if cpu in p.cpus:
                return name
        return None

    def _vcpu_pool(self, vcpu: str) -> str | None:
        for name, (pool, n) in self.domains.items():
            for i in range(n):
                if vcpu == f"{name}v{i}":
                    return pool
        return None

    def predict(self, op: XlOp) -> int | None:
        a, v = op.args, op.verb
        if v == "cpupool-create":
            return errno.EEXIST if a[0] in self.pools else None
        if v == "cpupool-destroy":
            p = self.pools.get(a[0])
            if p is None:
                return errno.ENOENT
            return errno.EBUSY if p.cpus or p.domains else None
        if v in ("cpupool-cpu-add", "cpupool-cpu-remove"):
            p = self.pools.get(a[0])
            cpu = int(a[1])
            if p is None:
                return errno.ENOENT
            if not 0 <= cpu < self.nr_cpus:
                return errno.EINVAL
            moving, moving_from = self.moving or (-1, "")
            if v == "cpupool-cpu-add":
                if cpu not in self.free:
                    return errno.ENODEV
                if cpu == moving and a[0] != moving_from:
                    return errno.EADDRNOTAVAIL
                return None
            if moving not in (-1, cpu):
                return errno.EADDRNOTAVAIL
            if cpu not in p.cpus and cpu != moving:
                return None  # nothing to do
            last = len(p.cpus) == 1 and p.domains and cpu != moving
            return errno.EBUSY if last else None
        if v == "cpupool-migrate":
            if a[0] not in self.domains or a[1] not in self.pools:
                return errno.ENOENT
            if a[0] == "Domain-0":
                return errno.EPERM
            if self.domains[a[0]][0] == a[1]:
                return None
            return errno.ENOENT if not self.pools[a[1]].cpus else None
        if v == "create":
            if a[1] not in self.pools:
                return errno.ENOENT
            if a[0] in self.domains:
                return errno.EEXIST
            # libxl creates it in Pool-0, then moves it: ENOENT for no pCPUs.
            return errno.ENOENT if not self.pools[a[1]].cpus else None
        if v == "destroy":
            if a[0] not in self.domains:
                return errno.ENOENT
            return errno.EINVAL if a[0] == "Domain-0" else None
        if v == "vcpu-pin":
            pool = self._vcpu_pool(a[0])
            if pool is None:
                return errno.ENOENT
            return None if int(a[1]) in self.pools[pool].cpus else errno.EINVAL
        raise ValueError(f"the model has no rule for {op}")

    def apply(self, op: XlOp) -> None:
        a, v = op.args, op.verb
        if v == "cpupool-create":
            self.pools[a[0]] = _Pool(a[1])
        elif v == "cpupool-destroy":
            del self.pools[a[0]]
        elif v == "cpupool-cpu-add":
            cpu = int(a[1])
            self.free.discard(cpu)
            self.pools[a[0]].cpus.add(cpu)
            if self.moving is not None and self.moving[0] == cpu:
                self.moving = None
        elif v == "cpupool-cpu-remove":
            cpu, p = int(a[1]), self.pools[a[0]]
            if cpu in p.cpus or (self.moving is not None and self.moving[0] == cpu):
                p.cpus.discard(cpu)
                self.free.add(cpu)
                self.moving = None
        elif v == "cpupool-migrate":
            old, n = self.domains[a[0]]
            self.pools[old].domains.discard(a[0])
            self.pools[a[1]].domains.add(a[0])
            self.domains[a[0]] = (a[1], n)
        elif v == "create":
            self.domains[a[0]] = (a[1], int(a[2]))
            self.pools[a[1]].domains.add(a[0])
        elif v == "destroy":
            pool, _ = self.domains.pop(a[0])
            self.pools[pool].domains.discard(a[0])

    def removal_refused(self, op: XlOp) -> None:
        """A ``cpupool-cpu-remove`` the model accepts, still refused with EAGAIN after
        every retry: Xen 4.7.0 leaves the pCPU free and moving, out of the pool."""
        cpu = int(op.args[1])
        self.pools[op.args[0]].cpus.discard(cpu)
        self.free.add(cpu)
        self.moving = (cpu, op.args[0])


def _moving(h: Host) -> tuple[int, str] | None:
    """The host's pCPU being moved out of a pool, and that pool (None: none)."""
    cpu, pool = h.cpupool_moving_cpu.peek(), h.cpupool_cpu_moving.peek()
    return (cpu, pool.name) if cpu != -1 and pool is not None else None


def check_schedulers(h: Host) -> list[str]:
    """Each pCPU runs its pool's scheduler instance (the boot one when free) and uses
    the lock that instance designates for it, and each pool but Pool-0 has an
    instance of its own (``scheduler_alloc()``; Pool-0 and the free pCPUs run the
    boot one, ``&ops``): what is wrong, one line each."""
    wrong = []
    seen: dict[int, str] = {id(h.ops): POOL0}
    for p in h.cpupool_list:
        if p is h.cpupool0:
            if p.sched is not h.ops:
                wrong.append(f"{POOL0} runs {p.sched.label}, not the boot scheduler")
            continue
        other = seen.setdefault(id(p.sched), p.name)
        if other != p.name:
            wrong.append(f"{p.name} shares its scheduler instance with {other}")
    owner = {c: p for p in h.cpupool_list for c in p.cpu_valid.peek()}
    moving = h.cpupool_moving_cpu.peek()
    for cpu in range(h.nr_cpus):
        pool = owner.get(cpu)
        if cpu == moving:
            # Free and moving (a removal refused with EAGAIN): still on the pool's
            # scheduler, per_cpu(cpupool) (Xen 4.7.0).
            pool = h.percpu[cpu].cpupool.peek()
        want = pool.sched if pool is not None else h.ops
        runs = h.scheduler_of(cpu)
        if runs is not want:
            wrong.append(f"cpu{cpu} runs {runs.label}, not {want.label}")
            continue
        lock = h.lock_of(cpu)
        designated = want.lock_for(cpu)
        if designated is not None and lock is not designated:
            wrong.append(
                f"cpu{cpu} ({want.label}) uses {lock.name}, not {designated.name}"
            )
    return wrong


# -- the pCPU threads ------------------------------------------------------------------------
class Hammer:
    """A host whose pCPU threads run ``schedule()`` with traffic until :meth:`stop`.

    It is :class:`xensched.programs.Env` for those threads: they leave on ``off``;
    an exception in one is a ``crash`` violation on the bus (a deadlock one too).
    """

    def __init__(self, cfg: FuzzConfig, example_seed: int) -> None:
        self.cfg = cfg
        self.seed = example_seed
        self.host = build_host(
            cfg.scenario(),
            lock_timeout=cfg.lock_timeout,
            trace_all=False,
            memory_seed=example_seed,
        )
        self.harness = Harness(self.host)
        self.lockdep: Lockdep | None = None
        self.race_detector: RaceDetector | None = None
        if cfg.lockdep:
            self.lockdep = Lockdep()
            self.host.bus.add_instrument(self.lockdep)
        if cfg.race_detector:
            self.race_detector = RaceDetector()
            self.host.bus.add_instrument(self.race_detector)
        self.off = threading.Event()
        self.threads: list[threading.Thread] = []
        self.stragglers: list[str] = []
        self.schedules = 0
        self._stats: list[CpuStats] = []
        #: The first deadlock's stacks and lock owners (None: none seen).
        self.dump: str | None = None
        self._dump_lock = threading.Lock()  # plumbing: two pCPUs may time out at once

    # Env
    def stopping(self) -> bool:
        return self.off.is_set()

    def leaving(self) -> bool:
        return self.off.is_set()

    def pause(self, seconds: float) -> bool:
        return self.off.wait(seconds)

    def work_done(self) -> bool:
        return self.off.is_set()

    def wait_for_work(self, pending: Callable[[], bool]) -> bool:
        while not pending():
            if self.off.wait(_IDLE_POLL):
                return False
        return True

    def failed(self, ctx: ExecContext, stats: object, exc: Exception) -> bool:
        """A pCPU thread's exception: a ``deadlock`` (the bus recorded it when the
        wait ran out; the dump is taken here, while the others are still stuck) or a
        ``crash``. The thread leaves; what it held is released so that the others do
        not wait behind a dead context."""
        if isinstance(exc, DeadlockError):
            self.deadlocked(f"{ctx.name}: {exc}", dumped=exc.dumped)
        else:
            crashed(self.host, ctx, exc)
        release_held(self.host, ctx)
        return True

    def deadlocked(self, why: str, *, dumped: bool = False) -> None:
        """Keep the first deadlock's dump (``why`` itself when it is a
        ``DeadlockError``'s report, which has one); the threads behind it give up
        quickly."""
        with self._dump_lock:
            if self.dump is not None:
                return
            self.dump = why if dumped else deadlock_report(self.host.bus, why)
        bus = self.host.bus
        bus.lock_timeout = min(bus.lock_timeout, _TEARDOWN_LOCK_TIMEOUT)

    def _main(self, cpu: int, st: CpuStats) -> None:
        h = self.host
        ctx = h.cpu_contexts[cpu]
        with bind(ctx):
            try:
                run_pcpu_loop(
                    h,
                    self.harness,
                    PcpuLoop(cpu, None, self.cfg.traffic),
                    ctx,
                    thread_rng(self.seed, ctx.name),
                    st,
                    self,
                )
            except BaseException as e:  # a pCPU thread never dies silently
                self.failed(ctx, st, e if isinstance(e, Exception) else Exception(e))

    def start(self) -> None:
        for cpu in range(self.host.nr_cpus):
            st = CpuStats(None)
            self._stats.append(st)
            t = threading.Thread(
                target=self._main, args=(cpu, st), name=f"pcpu{cpu}", daemon=True
            )
            t.start()
            self.threads.append(t)

    def stop(self) -> None:
        """Stop and join the pCPU threads (bounded); one still alive is listed."""
        self.off.set()
        end = time.monotonic() + _JOIN_BOUND
        for t in self.threads:
            t.join(max(0.0, end - time.monotonic()))
            if t.is_alive():
                self.stragglers.append(t.name)
        self.schedules = sum(s.count for s in self._stats)
        if self.stragglers:
            why = (
                f"pCPU threads still running {_JOIN_BOUND:.0f} s after the stop: "
                + ", ".join(self.stragglers)
            )
            self.deadlocked(why)
            self.host.bus.violation(ViolationKind.DEADLOCK, "fuzz", why)


def crashed(h: Host, ctx: ExecContext, exc: BaseException) -> None:
    """An exception out of emulated code: a ``crash`` violation with its traceback."""
    tb = traceback.extract_tb(exc.__traceback__)
    where = tb[-1].name if tb else "fuzz"
    text = "".join(traceback.format_exception(exc)).rstrip()
    h.bus.violation(
        ViolationKind.CRASH,
        where,
        f"{ctx.name} crashed: {type(exc).__name__}: {exc}\n{text}",
        cpu=ctx.cpu,
    )


def release_held(h: Host, ctx: ExecContext) -> None:
    """Release the emulated locks ``ctx`` holds and give it its IRQs back (a context
    that will not go on: the others must not wait behind it)."""
    for lock in list(h.bus.locks):
        if lock.owner == ctx.name:
            with contextlib.suppress(XenschedError):
                lock.release()
    ctx.irq_enabled = True


# -- the state machine ------------------------------------------------------------------
def _cpu_strategy(n: int) -> st.SearchStrategy[int]:
    # One past the last pCPU: Xen's EINVAL for a pCPU that does not exist.
    return st.integers(0, n)


class XlFuzzMachine(RuleBasedStateMachine):
    """Random xl sequences on a hammered host; see the module docstring.

    Subclass it and set :attr:`config` (a :class:`FuzzConfig`) to fuzz another
    protocol, mutant, boot scheduler or memory model; ``Subclass.TestCase`` is a
    ``unittest`` case that pytest collects.
    """

    config: ClassVar[FuzzConfig] = FuzzConfig()
    #: The operations of the last machine built (the last example run).
    last_log: ClassVar[list[str]] = []
    #: Examples and operations run by every machine of this class, and the refusals
    #: seen by errno name (campaign figures; written by Hypothesis's thread only).
    examples: ClassVar[int] = 0
    operations: ClassVar[int] = 0
    schedules: ClassVar[int] = 0
    refusals: ClassVar[dict[str, int]] = {}
    #: ``cpupool-cpu-remove``s still refused with EAGAIN/EBUSY after every attempt
    #: (allowed by the model: the host must be unchanged).
    transient: ClassVar[int] = 0
    #: Set by a signal handler: the machine raises KeyboardInterrupt before its
    #: next operation, never inside one (whose locks would stay held).
    stop: ClassVar[threading.Event | None] = None
    #: The shortest failing execution seen, its operations and its failure (the
    #: sequence to report when Hypothesis cannot make the shrunk one fail again).
    shortest_failure: ClassVar[tuple[list[str], FuzzFailure] | None] = None
    #: Called after each operation with the class (progress).
    on_step: ClassVar[Callable[[type[XlFuzzMachine]], None] | None] = None
    #: The campaign's first failure (None: none yet): the end of its search.
    first_failure: ClassVar[FirstFailure | None] = None
    #: A campaign's budgets (None: none, Hypothesis's own limits): the search ends
    #: at ``search_deadline`` (``time.monotonic()``; after the first operation, so
    #: that something runs), the shrink ``shrink_seconds`` after the first failure.
    #: Past either, the machine raises :class:`BudgetSpent` before its next
    #: operation, as it raises KeyboardInterrupt on ``stop``.
    search_deadline: ClassVar[float | None] = None
    shrink_seconds: ClassVar[float | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Each subclass counts its own campaign (a pytest subclass does not add to
        # another's figures, nor share its refusals dict).
        super().__init_subclass__(**kwargs)
        cls.examples = cls.operations = cls.schedules = cls.transient = 0
        cls.refusals = {}
        cls.last_log = []
        cls.shortest_failure = None
        cls.first_failure = None

    def __init__(self) -> None:
        super().__init__()
        cls = type(self)
        cls.examples += 1
        self.log: list[str] = []
        cls.last_log = self.log
        self.hammer = Hammer(self.config, self.config.seed + cls.examples)
        self.host = self.hammer.host
        self.model = Membership.of(self.host)
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(free_running())
        self._ctx = self.host.toolstack_context("xl")
        self._stack.enter_context(bind(self._ctx))
        self.hammer.start()
        self._seen = 0
        self._failed = False

    def teardown(self) -> None:
        try:
            self.hammer.stop()
        finally:
            self._stack.close()
            type(self).schedules += self.hammer.schedules
        if not self._failed:
            self._fail_on([], XlOp("teardown"))

    def _abandon(self) -> None:
        """Ctrl-C in the middle of an operation: release the emulated locks the
        toolstack holds, so that the pCPU threads can stop, and report nothing of
        this example (what it saw after the interruption is not the model's)."""
        self._failed = True
        release_held(self.host, self._ctx)

    # -- one operation ------------------------------------------------------------------
    def _violation(self, kind: ViolationKind, op: XlOp, message: str) -> Violation:
        return Violation(kind, None, f"xl {op}", message, "xl")

    def _fail_on(self, found: list[Violation], op: XlOp) -> None:
        fired = self.host.violations[self._seen :]
        self._seen = len(self.host.violations)
        found = [*fired, *found]
        if found:
            self._failed = True
            failure = FuzzFailure(found, self.hammer.dump)
            cls = type(self)
            shortest = cls.shortest_failure
            if shortest is None or len(self.log) <= len(shortest[0]):
                cls.shortest_failure = (list(self.log), failure)
            if cls.first_failure is None:
                cls.first_failure = FirstFailure(
                    time.monotonic(), cls.examples, cls.operations, len(self.log)
                )
            raise failure

    def _broken(self, op: XlOp, exc: Exception) -> NoReturn:
        """The operation did not return: its wait ran out (a ``deadlock``, which the
        bus recorded) or the emulated Xen raised (a ``crash``). What the toolstack
        holds is released, so that the pCPU threads can stop."""
        if isinstance(exc, DeadlockError):
            self.hammer.deadlocked(f"xl {op}: {exc}", dumped=exc.dumped)
        else:
            crashed(self.host, self._ctx, exc)
        release_held(self.host, self._ctx)
        self._fail_on([], op)
        raise AssertionError(
            "unreachable: a violation was recorded"
        )  # pragma: no cover

    def _run(self, op: XlOp, action: Callable[[], object] | None = None) -> None:
        cls = type(self)
        if cls.stop is not None and cls.stop.is_set():
            self._failed = True
            raise KeyboardInterrupt
        spent = self._budget_spent()
        if spent is not None:
            self._failed = True  # cut short, not checked at its teardown
            raise BudgetSpent(spent)
        cls.operations += 1
        self.log.append(str(op))
        expected = self.model.predict(op)
        got: int | None = None
        transient = False
        # Only a removal is retried: vCPUs still being moved off the pCPU.
        removal = op.verb == "cpupool-cpu-remove"
        for attempt in range(self.config.attempts if removal else 1):
            try:
                (action or (lambda: apply_xl(self.host, op)))()
                got = None
                break
            except (KeyboardInterrupt, SystemExit):
                self._abandon()
                raise
            except XenError as e:
                got = e.errno
                retry = removal and got in (errno.EAGAIN, errno.EBUSY)
                if not retry or expected is not None:
                    break
                transient = attempt + 1 == self.config.attempts
                time.sleep(min(0.0002 * (attempt + 1), 0.005))
            except Exception as e:  # not an answer of Xen's: a deadlock or a crash
                self._broken(op, e)
        if transient:
            cls.transient += 1
        if got is not None:
            name = errno.errorcode.get(got, str(got))
            cls.refusals[name] = cls.refusals.get(name, 0) + 1
        found: list[Violation] = []
        if transient and got == errno.EAGAIN:
            self.model.removal_refused(op)
        if got != expected and not transient:
            xen = "accepted it" if got is None else f"refused it with {_errname(got)}"
            found.append(
                self._violation(
                    ViolationKind.XL_RESULT,
                    op,
                    f"Xen {xen}; the model says {_errname(expected)}",
                )
            )
        elif got is None:
            self.model.apply(op)
        seen = Membership.observe(self.host)
        if seen != self.model.state():
            kind = ViolationKind.MEMBERSHIP if got is None else ViolationKind.XL_RESULT
            found.append(
                self._violation(
                    kind,
                    op,
                    ("accepted" if got is None else f"refused ({_errname(got)})")
                    + f", the host shows {_diff(seen, self.model.state())}",
                )
            )
        found += [
            self._violation(ViolationKind.MEMBERSHIP, op, line)
            for line in check_schedulers(self.host)
        ]
        if cls.on_step is not None:
            cls.on_step(cls)
        self._fail_on(found, op)

    @classmethod
    def _budget_spent(cls) -> str | None:
        """The phase whose budget is spent (``"search"``, ``"shrink"``), or None."""
        first = cls.first_failure
        if first is not None:
            limit = cls.shrink_seconds
            if limit is not None and time.monotonic() - first.at >= limit:
                return "shrink"
            return None
        deadline = cls.search_deadline
        if deadline is not None and cls.operations > 0 and time.monotonic() >= deadline:
            return "search"
        return None

    # -- rules ------------------------------------------------------------------------
    @initialize(sched=st.sampled_from(sorted(SCHEDULERS)), data=st.data())
    def a_second_pool(self, sched: str, data: st.DataObject) -> None:
        """Every sequence starts with a pool of a random scheduler holding one pCPU:
        the switches between schedulers are what the fuzzing is for."""
        cpu = data.draw(st.integers(1, self.config.cpus - 1), label="cpu")
        self._run(XlOp("cpupool-create", ("p1", sched)))
        self._run(XlOp("cpupool-cpu-remove", (POOL0, str(cpu))))
        self._run(XlOp("cpupool-cpu-add", ("p1", str(cpu))))

    @rule(
        name=st.sampled_from((*POOL_NAMES[1:], POOL0)),
        sched=st.sampled_from(sorted(SCHEDULERS)),
    )
    def cpupool_create(self, name: str, sched: str) -> None:
        self._run(XlOp("cpupool-create", (name, sched)))

    @rule(name=st.sampled_from((*POOL_NAMES, UNKNOWN_POOL)))
    def cpupool_destroy(self, name: str) -> None:
        self._run(XlOp("cpupool-destroy", (name,)))

    @rule(name=st.sampled_from(POOL_NAMES), data=st.data())
    def cpupool_cpu_add(self, name: str, data: st.DataObject) -> None:
        cpu = data.draw(_cpu_strategy(self.config.cpus), label="cpu")
        self._run(XlOp("cpupool-cpu-add", (name, str(cpu))))

    @rule(name=st.sampled_from(POOL_NAMES), data=st.data())
    def cpupool_cpu_remove(self, name: str, data: st.DataObject) -> None:
        cpu = data.draw(_cpu_strategy(self.config.cpus), label="cpu")
        self._run(XlOp("cpupool-cpu-remove", (name, str(cpu))))

    @rule(data=st.data())
    def cpu_move(self, data: st.DataObject) -> None:
        """The xl flow of a pCPU move: cpu-remove from its pool, cpu-add to another."""
        owned = sorted(
            (name, c) for name, p in self.model.pools.items() for c in p.cpus
        )
        if not owned:
            return
        src, cpu = data.draw(st.sampled_from(owned), label="from")
        self._run(XlOp("cpupool-cpu-remove", (src, str(cpu))))
        others = sorted(set(self.model.pools) - {src}) or [src]
        if cpu in self.model.free:
            dst = data.draw(st.sampled_from(others), label="to")
            self._run(XlOp("cpupool-cpu-add", (dst, str(cpu))))

    @rule(
        name=st.sampled_from(("Domain-0", TRAFFIC_DOMAIN, *GUEST_NAMES)),
        pool=st.sampled_from((*POOL_NAMES, UNKNOWN_POOL)),
    )
    def cpupool_migrate(self, name: str, pool: str) -> None:
        op = XlOp("cpupool-migrate", (name, pool))
        d = self.host.domains.get(name)
        guards = self.hammer.harness.guards
        guard = guards.get(d) if d is not None else None
        if d is None or guard is None:
            self._run(op)
            return

        def migrate() -> None:
            # Harness rule (module docstring): no traffic on the domain and no
            # migration of its vCPUs pending while it moves.
            spin_lock(guard)
            try:
                self.host.bus.wait_until(
                    migrations_landed(d), f"the pending migrations of {d.name}"
                )
                apply_xl(self.host, op)
            finally:
                spin_unlock(guard)

        self._run(op, migrate)

    @rule(
        name=st.sampled_from(GUEST_NAMES),
        pool=st.sampled_from((*POOL_NAMES, UNKNOWN_POOL)),
        vcpus=st.integers(1, 3),
    )
    def create(self, name: str, pool: str, vcpus: int) -> None:
        self._run(XlOp("create", (name, pool, str(vcpus))))

    @rule(name=st.sampled_from(("Domain-0", *GUEST_NAMES)))
    def destroy(self, name: str) -> None:
        self._run(XlOp("destroy", (name,)))

    @rule(
        name=st.sampled_from((TRAFFIC_DOMAIN, *GUEST_NAMES)),
        index=st.integers(0, 2),
        data=st.data(),
    )
    def vcpu_pin(self, name: str, index: int, data: st.DataObject) -> None:
        cpu = data.draw(st.integers(0, self.config.cpus - 1), label="cpu")
        self._run(XlOp("vcpu-pin", (f"{name}v{index}", str(cpu))))


def _errname(e: int | None) -> str:
    return "accepted" if e is None else errno.errorcode.get(e, str(e))


def _diff(seen: tuple[object, ...], want: tuple[object, ...]) -> str:
    names = ("pools", "free pCPUs", "domains", "moving pCPU")
    parts = [
        f"{n} {s!r} where the model has {w!r}"
        for n, s, w in zip(names, seen, want, strict=True)
        if s != w
    ]
    return "; ".join(parts) or "the same state"


def machine_class(cfg: FuzzConfig) -> type[XlFuzzMachine]:
    """A machine for ``cfg``, named after it (the example database keys on the name)."""
    return type(
        f"XlFuzz[{cfg.key()}]",
        (XlFuzzMachine,),
        {"config": cfg},  # the campaign's figures: __init_subclass__
    )


def run_script(machine: type[XlFuzzMachine], ops: Sequence[str]) -> FuzzFailure | None:
    """Run the xl operations ``ops`` in order on a fresh ``machine`` (a hammered
    host, every check after every operation): its failure, or None. The machine's
    threads are stopped and joined; what fires after the last operation counts."""
    m = machine()
    failure: FuzzFailure | None = None
    try:
        for line in ops:
            op = XlOp.parse(line)
            if op.verb == "cpupool-migrate":
                m.cpupool_migrate(
                    *op.args
                )  # under the harness rule, as the rule runs it
            else:
                m._run(op)
    except FuzzFailure as e:
        failure = e
    finally:
        if failure is not None:
            m._failed = True  # reported: teardown only stops the threads
        try:
            m.teardown()
        except FuzzFailure as e:
            failure = e
    return failure


@dataclass(slots=True)
class ReplayShrink:
    """What :func:`shrink_by_replay` did, filled in as it goes."""

    #: The replays run (each a fresh machine and host).
    replays: int = 0
    #: False: it stopped at its time bound, not because nothing more could go.
    complete: bool = True


def shrink_by_replay(
    machine: type[XlFuzzMachine],
    ops: Sequence[str],
    failure: FuzzFailure,
    seconds: float,
    tries: int = 5,
    max_tries: int = 40,
    *,
    progress: ReplayShrink | None = None,
) -> tuple[list[str], FuzzFailure]:
    """Shrink a failing sequence whose failure depends on the interleaving, which
    Hypothesis gives up on (Flaky): delta debugging by replay. Chunks of operations
    (halves, then quarters, down to single ones) are removed, and a removal is kept
    when one of ``tries`` replays still fails with a violation of a kind the original
    failure had. When no single operation can go, the tries are doubled (a rare
    failure needs more replays to be seen) up to ``max_tries``, and it stops there or
    after ``seconds``; returns the shortest sequence and the failure of its last
    failing replay. ``progress``, if given, counts the replays and says whether it
    stopped at ``seconds``.

    The replays run on a fresh subclass of ``machine`` (no progress callback, no
    campaign budget: ``seconds`` is theirs), so
    that they add nothing to the campaign's figures (examples, operations,
    schedules, refusals, transient) and leave its ``last_log`` and
    ``shortest_failure`` as the campaign left them."""
    kinds = {v.kind for v in failure.violations}
    deadline = time.monotonic() + seconds
    # Its own figures (__init_subclass__); config, stop and the rest inherited.
    replayer = type(
        f"{machine.__name__}[shrink]",
        (machine,),
        {"on_step": None, "search_deadline": None, "shrink_seconds": None},
    )
    best, best_failure = list(ops), failure
    done = False  # nothing more to try (not the time bound)
    progress = progress if progress is not None else ReplayShrink()

    def fails(candidate: list[str]) -> FuzzFailure | None:
        for _ in range(tries):
            if time.monotonic() > deadline:
                return None
            progress.replays += 1
            f = run_script(replayer, candidate)
            if f is not None and kinds & {v.kind for v in f.violations}:
                return f
        return None

    n = 2
    while len(best) > 1 and time.monotonic() < deadline:
        chunk = max(1, -(-len(best) // n))
        removed = False
        i = 0
        while i < len(best) and time.monotonic() < deadline:
            candidate = best[:i] + best[i + chunk :]
            f = fails(candidate) if candidate else None
            if f is not None:
                best, best_failure, removed = candidate, f, True
            else:
                i += chunk
        if not removed:
            if chunk == 1:
                if tries * 2 > max_tries:
                    # Unless the bound cut the last pass short (fails() said no).
                    done = time.monotonic() <= deadline
                    break
                tries *= 2  # seen by fails(): the next single-op pass replays more
            n = min(n * 2, len(best))
    progress.complete = done or len(best) <= 1
    return best, best_failure


def script_scenario(cfg: FuzzConfig, ops: list[str], schedules: int = 3) -> Scenario:
    """The scenario of an xl script for the explorer: the fuzz host, a toolstack
    running ``ops`` and pCPUs calling ``schedule()`` ``schedules`` times each."""
    sc = cfg.scenario()
    return replace(
        sc,
        name="fuzz-script",
        description="a shrunk xensched fuzz sequence, for exploration",
        threads=(
            *(
                replace(t, schedules=schedules)
                for t in sc.threads
                if isinstance(t, PcpuLoop)
            ),
            Toolstack("xl", ops=tuple(XlOp.parse(o) for o in ops if o != "teardown")),
        ),
    )
