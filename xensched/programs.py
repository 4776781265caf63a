"""What the threads of a scenario do, under either driver.

Mirrors what Xen's own cpupool tests do on hardware: pCPUs run ``schedule()`` (their
SCHEDULE_SOFTIRQ handler) over and over, vCPUs wake, sleep and migrate, and a toolstack
moves pCPUs between cpupools (``xl cpupool-cpu-remove`` then ``cpupool-cpu-add``) and
domains between pools (``xl cpupool-migrate``). The programs are the
:mod:`xensched.scenario` values; this module runs them.

The programs block only on emulated primitives, so the controlled driver can schedule
them: the harness's locks are :class:`~xensched.spinlock.SpinLock` objects on the host's
bus, waits go through :meth:`~xensched.interaction.Bus.wait_until`, and pacing, stop
checks and idling are asked of an :class:`Env` that the driver's side supplies. The
free-running one (``xensched_stress``) sleeps between operations and stops on the run's
stop flag; the controlled one (:func:`run_controlled`) never sleeps, and every program
runs its bounded number of operations and ends.

Harness rules that are not Xen's, so that a run only finds what it is about:

- a vCPU operation of the random traffic never runs on a domain that a toolstack
  thread is moving between pools (a guard per domain, taken with a trylock by the pCPU
  threads): in Xen those come from the domain itself, which is paused then;
- a domain is only moved once none of its vCPUs has a migration pending, and no pCPU
  move runs meanwhile (pCPU moves share a toolstack lock, a domain move takes it
  alone). Xen 4.7 has the window this avoids: ``domain_pause()`` returns once
  ``is_running`` is clear, while ``context_saved()`` is about to run the deferred
  ``vcpu_migrate()``, which then meets ``sched_move_domain()`` halfway (the vCPU's
  pool already new, its ``sched_priv`` still the old scheduler's). That is a race
  between ``cpupool-migrate`` and a migration request (``vcpu_set_affinity`` or
  ``cpu_disable_scheduler``), not a scheduler switch, so the workload keeps them
  apart;
- a toolstack retries a refusal that another move or a vCPU still on the pCPU
  explains (EAGAIN, EBUSY, EADDRNOTAVAIL) a bounded number of times, where libxc
  retries EAGAIN for ever; a removal it gives up on leaves the pCPU free and moving, as
  Xen 4.7.0 does, and that toolstack's next pCPU move retries that removal.

Every random choice comes from a ``random.Random`` of the thread's own, seeded from the
base seed and the thread's name (:func:`thread_rng`).
"""

from __future__ import annotations

import errno
import functools
import random
from collections import Counter
from typing import TYPE_CHECKING, Protocol

from xensched.drivers.controlled import ControlledDriver, record_crashes
from xensched.errors import ConfigError, XenError
from xensched.scenario import PcpuLoop, PcpuOps, Toolstack, XlOp, apply_xl, build_host
from xensched.schedule import schedule, vcpu_block, vcpu_request_migrate, vcpu_unblock
from xensched.spinlock import SpinLock, spin_lock, spin_trylock, spin_unlock

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from xensched.cpupool import Cpupool
    from xensched.domain import Domain, Vcpu
    from xensched.drivers.controlled import Strategy
    from xensched.host import Host
    from xensched.interaction import Bus
    from xensched.scenario import CpuOp, Program, Scenario
    from xensched.smp import ExecContext
    from xensched.violation import Violation

__all__ = [
    "ControlledRun",
    "CpuStats",
    "Env",
    "Harness",
    "XlStats",
    "migrations_landed",
    "run_controlled",
    "run_program",
    "thread_rng",
]


def thread_rng(seed: int, name: str) -> random.Random:
    """The private RNG of thread ``name`` in a run of base seed ``seed``.

    The prefix is the stress harness's from before scenarios, so that a seed still
    makes the same choices.

    A ``str`` seed is hashed with SHA-512, so this is stable across processes (unlike
    ``hash(str)``).
    """
    return random.Random(f"xensched-stress:{seed}:{name}")


class CpuStats:
    """Figures of one pCPU program; written only by its thread."""

    __slots__ = ("count", "crashes", "exited", "ops", "quota", "reached")

    def __init__(self, quota: int | None) -> None:
        self.count = 0
        self.quota = quota
        self.reached = quota == 0  # its share of schedule() calls is done
        self.exited = False  # the thread left early (deadlock, crash cap)
        self.crashes = 0
        self.ops: Counter[str] = Counter()


class XlStats:
    """Figures of one toolstack program; written only by its thread."""

    __slots__ = (
        "crashes",
        "domain_moves",
        "refusals",
        "retries",
        "stranded",
        "switches",
    )

    def __init__(self) -> None:
        self.switches = 0
        self.domain_moves = 0
        self.crashes = 0
        self.retries: Counter[str] = Counter()
        self.refusals: Counter[str] = Counter()
        #: A removal this toolstack gave up on that left its pCPU free and moving
        #: (Xen 4.7.0, EAGAIN): the pool and the pCPU, retried by its next move.
        self.stranded: tuple[Cpupool, int] | None = None


class Env(Protocol):
    """What a program asks of the driver's side; see the module docstring."""

    def stopping(self) -> bool:
        """Stop phase 1: toolstack programs leave, pCPU loops turn idle."""
        ...

    def leaving(self) -> bool:
        """Stop phase 2: pCPU programs leave."""
        ...

    def pause(self, seconds: float) -> bool:
        """Pace a toolstack between operations; True when it must stop instead."""
        ...

    def wait_for_work(self, pending: Callable[[], bool]) -> bool:
        """An idle pCPU waits until ``pending()`` or no more work can come.

        Returns ``pending()``: False means the pCPU may leave.
        """
        ...

    def work_done(self) -> bool:
        """No more work will come: an idle pCPU loop may leave."""
        ...

    def failed(
        self, ctx: ExecContext, stats: CpuStats | XlStats, exc: Exception
    ) -> bool:
        """One operation raised ``exc``; True when the program must end."""
        ...


class SharedExclusive:
    """The harness's toolstack lock: pCPU moves share it, a domain move has it alone.

    A reader-writer lock with writer preference (a waiting domain move holds back new
    pCPU moves), built on an emulated spinlock and ``Bus.wait_until`` so that the
    controlled driver sees every wait. Harness bookkeeping, not a Xen lock.
    """

    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self._lock = SpinLock(bus, "harness:toolstack")
        # Read by the wait predicates without the lock: they only read.
        self._shared = 0
        self._exclusive = False
        self._waiting = 0

    def _shared_ok(self) -> bool:
        return not self._exclusive and not self._waiting

    def _exclusive_ok(self) -> bool:
        return not self._exclusive and not self._shared

    def acquire_shared(self) -> None:
        while True:
            spin_lock(self._lock)
            ok = self._shared_ok()
            if ok:
                self._shared += 1
            spin_unlock(self._lock)
            if ok:
                return
            self._bus.wait_until(self._shared_ok, "the toolstack lock (shared)")

    def release_shared(self) -> None:
        spin_lock(self._lock)
        self._shared -= 1
        spin_unlock(self._lock)

    def acquire_exclusive(self) -> None:
        spin_lock(self._lock)
        self._waiting += 1
        spin_unlock(self._lock)
        try:
            while True:
                spin_lock(self._lock)
                ok = self._exclusive_ok()
                if ok:
                    self._exclusive = True
                    self._waiting -= 1
                spin_unlock(self._lock)
                if ok:
                    return
                self._bus.wait_until(self._exclusive_ok, "the toolstack lock")
        except BaseException:
            spin_lock(self._lock)
            self._waiting -= 1
            spin_unlock(self._lock)
            raise

    def release_exclusive(self) -> None:
        spin_lock(self._lock)
        self._exclusive = False
        spin_unlock(self._lock)


class Harness:
    """The harness's state on one host: guards, the toolstack lock, what traffic picks.

    Built once the host is set up: the random traffic and the random domain moves pick
    among the domains that exist then.
    """

    def __init__(self, h: Host) -> None:
        self.host = h
        self.vcpus: list[Vcpu] = list(h.iter_vcpus())
        self.movable: list[Domain] = [d for d in h.domains.values() if d.domain_id != 0]
        self.guards: dict[Domain, SpinLock] = {
            d: SpinLock(h.bus, f"harness:guard[{d.name}]") for d in h.domains.values()
        }
        self.toolstack = SharedExclusive(h.bus)


def migrations_landed(d: Domain) -> Callable[[], bool]:
    # A wait predicate: it only reads (a plain flag today).
    def landed() -> bool:
        return not any(v.migrating.peek() for v in d.vcpus)

    return landed


# -- pCPU programs ----------------------------------------------------------------------------
def _vcpu_op(h: Host, hs: Harness, rng: random.Random, st: CpuStats) -> None:
    v = rng.choice(hs.vcpus)
    guard = hs.guards[v.domain]
    if not spin_trylock(guard):
        return  # a toolstack thread is moving this domain between pools
    try:
        r = rng.random()
        if r < 0.4:
            vcpu_unblock(h, v)
            st.ops["wake"] += 1
        elif r < 0.7:
            vcpu_block(h, v)
            st.ops["sleep"] += 1
        else:
            target = rng.randrange(h.nr_cpus) if rng.random() < 0.5 else None
            vcpu_request_migrate(h, v, target)
            st.ops["migrate"] += 1
    finally:
        spin_unlock(guard)


def run_pcpu_loop(
    h: Host,
    hs: Harness,
    prog: PcpuLoop,
    ctx: ExecContext,
    rng: random.Random,
    st: CpuStats,
    env: Env,
) -> None:
    """:class:`PcpuLoop`, on the calling thread bound to pCPU ``prog.cpu``."""
    softirq = h.percpu[prog.cpu].softirq
    traffic = prog.traffic
    while not env.leaving():
        try:
            if env.stopping() or st.reached:
                # Idle, as a pCPU does: reschedule only when asked to.
                if env.work_done():
                    return
                if softirq.peek() or env.wait_for_work(softirq.peek):
                    schedule(h)
                    st.count += 1
                    continue
                return
            schedule(h)
            st.count += 1
            if st.quota is not None and st.count >= st.quota:
                st.reached = True
            if traffic and rng.random() < traffic:
                _vcpu_op(h, hs, rng, st)
        except Exception as e:
            if env.failed(ctx, st, e):
                return


def _cpu_op(h: Host, op: CpuOp, st: CpuStats) -> None:
    a = op.args
    if op.verb == "schedule":
        schedule(h)
        st.count += 1
    elif op.verb == "wake":
        vcpu_unblock(h, h.vcpu(a[0]))
        st.ops["wake"] += 1
    elif op.verb == "sleep":
        vcpu_block(h, h.vcpu(a[0]))
        st.ops["sleep"] += 1
    elif op.verb == "migrate":
        vcpu_request_migrate(h, h.vcpu(a[0]), int(a[1]) if len(a) > 1 else None)
        st.ops["migrate"] += 1
    else:
        raise AssertionError(f"{op.verb}: run by run_pcpu_ops")


def run_pcpu_ops(
    h: Host, prog: PcpuOps, ctx: ExecContext, st: CpuStats, env: Env
) -> None:
    """:class:`PcpuOps`, on the calling thread bound to pCPU ``prog.cpu``."""
    softirq = h.percpu[prog.cpu].softirq
    for op in prog.ops:
        if env.leaving():
            break
        try:
            if op.verb == "idle":
                # Reschedule whenever SCHEDULE_SOFTIRQ is raised (a vCPU here must
                # sleep or migrate), until the toolstack threads are done.
                for _ in range(int(op.args[0])):
                    if not env.wait_for_work(softirq.peek):
                        break
                    schedule(h)
                    st.count += 1
            else:
                _cpu_op(h, op, st)
        except Exception as e:
            if env.failed(ctx, st, e):
                break
    st.reached = True


# -- toolstack programs ---------------------------------------------------------------------
#: Refusals a toolstack retries: EAGAIN (a vCPU still on the pCPU being removed; libxc's
#: do_sysctl_save() retries it), and another toolstack's pCPU move in progress:
#: EADDRNOTAVAIL in 4.7.0 (125d4beee0), EBUSY before it and for a busy pool.
_RETRIED = (errno.EAGAIN, errno.EBUSY, errno.EADDRNOTAVAIL)


def _xl(st: XlStats, op: Callable[[], object], attempts: int, env: Env) -> bool:
    """One xl command, retried on the transient refusals (``_RETRIED``)."""
    for attempt in range(attempts):
        try:
            op()
            return True
        except XenError as e:
            if e.errno not in _RETRIED:
                st.refusals[e.errname] += 1
                return False
            st.retries[e.errname] += 1
            if attempt + 1 < attempts and env.pause(min(0.0002 * (attempt + 1), 0.005)):
                return False
    st.refusals["gave-up"] += 1
    return False


def _move_cpu(
    h: Host, hs: Harness, prog: Toolstack, rng: random.Random, st: XlStats, env: Env
) -> None:
    pools = list(h.cpupool_list)
    if st.stranded is not None:
        # Xen 4.7.0 left the pCPU of a removal given up on free and moving: libxc
        # would still be retrying it, so this move takes it up again.
        src, cpu = st.stranded
        if src not in pools:  # destroyed since: 4.7.0 lets any pool remove it
            src = pools[0]
    else:
        # A pool's last pCPU stays while it has domains (Xen refuses with EBUSY).
        candidates = [
            (c, cpu)
            for c in pools
            if not (len(c.cpu_valid.peek()) == 1 and c.domains.peek())
            for cpu in sorted(c.cpu_valid.peek())
        ]
        if not candidates or len(pools) < 2:
            return
        src, cpu = rng.choice(candidates)
    dst = rng.choice([c for c in pools if c is not src] or pools)
    hs.toolstack.acquire_shared()
    try:
        if not _xl(st, lambda: h.cpupool_cpu_remove(src, cpu), prog.attempts, env):
            moving = h.cpupool_moving_cpu.peek() == cpu
            st.stranded = (src, cpu) if moving else None
            return
        st.stranded = None
        if _xl(st, lambda: h.cpupool_cpu_add(dst, cpu), prog.attempts, env):
            st.switches += 1
    finally:
        hs.toolstack.release_shared()


def _move_domain(
    h: Host, hs: Harness, prog: Toolstack, rng: random.Random, st: XlStats, env: Env
) -> None:
    d = rng.choice(hs.movable)
    here = d.cpupool.peek()
    targets = [c for c in h.cpupool_list if c.cpu_valid.peek() and c is not here]
    if not targets:
        return
    dst = rng.choice(targets)
    guard = hs.guards[d]
    spin_lock(guard)
    try:
        hs.toolstack.acquire_exclusive()
        try:
            # A migration deferred to context_saved() must land first (see the
            # module docstring); the pCPU running the vCPU was asked to reschedule,
            # so this takes one schedule() there.
            h.bus.wait_until(
                migrations_landed(d), f"the pending migrations of {d.name}"
            )
            if _xl(st, lambda: h.cpupool_migrate(d, dst), prog.attempts, env):
                st.domain_moves += 1
        finally:
            hs.toolstack.release_exclusive()
    finally:
        spin_unlock(guard)


def _count(st: XlStats, op: XlOp) -> None:
    if op.verb == "cpupool-cpu-add":
        st.switches += 1
    elif op.verb == "cpupool-migrate":
        st.domain_moves += 1


def run_toolstack(
    h: Host,
    hs: Harness,
    prog: Toolstack,
    ctx: ExecContext,
    rng: random.Random,
    st: XlStats,
    env: Env,
) -> None:
    """:class:`Toolstack`, on the calling thread bound to a toolstack context."""
    if prog.ops is not None:
        for i, op in enumerate(prog.ops):
            if env.stopping() or (i and env.pause(prog.interval)):
                return
            try:
                if _xl(st, functools.partial(apply_xl, h, op), prog.attempts, env):
                    _count(st, op)
            except Exception as e:
                if env.failed(ctx, st, e):
                    return
        return
    done = 0
    while prog.moves is None or done < prog.moves:
        if env.pause(prog.interval):
            return
        try:
            if hs.movable and rng.random() < prog.domain_moves:
                _move_domain(h, hs, prog, rng, st, env)
            else:
                _move_cpu(h, hs, prog, rng, st, env)
        except Exception as e:
            if env.failed(ctx, st, e):
                return
        done += 1


def run_program(
    h: Host,
    hs: Harness,
    prog: Program,
    ctx: ExecContext,
    seed: int,
    stats: CpuStats | XlStats,
    env: Env,
) -> None:
    """Run ``prog`` on the calling thread, which must be bound to ``ctx``."""
    rng = thread_rng(seed, ctx.name)
    if isinstance(prog, PcpuLoop):
        assert isinstance(stats, CpuStats)
        run_pcpu_loop(h, hs, prog, ctx, rng, stats, env)
    elif isinstance(prog, PcpuOps):
        assert isinstance(stats, CpuStats)
        run_pcpu_ops(h, prog, ctx, stats, env)
    else:
        assert isinstance(stats, XlStats)
        run_toolstack(h, hs, prog, ctx, rng, stats, env)


# -- the controlled driver ------------------------------------------------------------------
class _ControlledEnv:
    """Programs under the controlled driver: no sleeps, no stop, errors propagate."""

    def __init__(self, run: ControlledRun) -> None:
        self._run = run

    def stopping(self) -> bool:
        return False

    def leaving(self) -> bool:
        return False

    def pause(self, seconds: float) -> bool:
        return False

    def toolstacks_done(self) -> bool:
        drv = self._run.driver
        assert drv is not None
        return all(drv.done(c) for c in self._run.toolstack_contexts)

    def work_done(self) -> bool:
        return self.toolstacks_done()

    def wait_for_work(self, pending: Callable[[], bool]) -> bool:
        def woken() -> bool:
            return pending() or self.toolstacks_done()

        self._run.host.bus.wait_until(woken, "work")
        return pending()

    def failed(
        self, ctx: ExecContext, stats: CpuStats | XlStats, exc: Exception
    ) -> bool:
        # The driver sees the error end the thread (a deadlock is its violation);
        # run() turns anything else into a crash violation.
        raise exc


class ControlledRun:
    """A scenario's host and threads, ready to run under the controlled driver.

    Built in two steps so that a strategy can be made from the host and the contexts
    (``xensched reproduce`` does): ``run = ControlledRun(sc)``, then
    ``run.run(strategy)``. ``threads`` picks a subset of the scenario's programs (in
    the scenario's order); each program gets its pCPU's context or a toolstack
    context named after it.

    Raises:
        ConfigError: the scenario is invalid, a program does not end by itself
            (see :meth:`Scenario.bounded`), or a setup step was refused.
    """

    def __init__(
        self,
        scenario: Scenario,
        seed: int = 0,
        *,
        lock_timeout: float = 10.0,
        threads: Sequence[Program] | None = None,
    ) -> None:
        if not scenario.is_bounded():
            raise ConfigError(
                f"scenario {scenario.name!r}: a controlled run needs programs that "
                "end; use scenario.bounded()"
            )
        self.scenario = scenario
        self.seed = seed
        self.host = build_host(scenario, lock_timeout=lock_timeout, memory_seed=seed)
        self.harness = Harness(self.host)
        self.programs = list(scenario.threads if threads is None else threads)
        self.contexts: list[ExecContext] = [
            self.host.toolstack_context(p.name)
            if isinstance(p, Toolstack)
            else self.host.cpu_contexts[p.cpu]
            for p in self.programs
        ]
        self.toolstack_contexts = [
            c
            for c, p in zip(self.contexts, self.programs, strict=True)
            if isinstance(p, Toolstack)
        ]
        self.stats: list[CpuStats | XlStats] = [
            XlStats()
            if isinstance(p, Toolstack)
            else CpuStats(p.schedules if isinstance(p, PcpuLoop) else None)
            for p in self.programs
        ]
        self.driver: ControlledDriver | None = None

    def context_of(self, name: str) -> ExecContext:
        """The context of the program named ``name`` (``pcpu3``, ``xl-mover``)."""
        for p, c in zip(self.programs, self.contexts, strict=True):
            if p.name == name:
                return c
        raise KeyError(name)

    def run(self, strategy: Strategy, *, turn_timeout: float = 10.0) -> list[Violation]:
        """Run every program to its end; returns the host's violations.

        An exception that ends a program becomes a ``crash`` violation, but for a
        deadlock (which the driver records) and an abandoned run
        (:func:`~xensched.drivers.controlled.record_crashes`).
        """
        h = self.host
        drv = ControlledDriver(h.bus, strategy, turn_timeout=turn_timeout)
        self.driver = drv
        env = _ControlledEnv(self)
        for prog, ctx, st in zip(self.programs, self.contexts, self.stats, strict=True):
            drv.spawn(
                ctx,
                functools.partial(
                    run_program, h, self.harness, prog, ctx, self.seed, st, env
                ),
            )
        record_crashes(h.bus, drv.run())
        return h.violations


def run_controlled(
    scenario: Scenario, strategy: Strategy, seed: int = 0, *, lock_timeout: float = 10.0
) -> list[Violation]:
    """Run ``scenario`` under the controlled driver; returns the violations found.

    One thread at a time, ``strategy`` picking who runs at each interaction point, so
    the same scenario, strategy and seed give the same steps. Every program must end
    by itself (:meth:`Scenario.bounded`).
    """
    return ControlledRun(scenario, seed, lock_timeout=lock_timeout).run(strategy)
