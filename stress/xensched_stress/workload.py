"""What the threads of a stress run do: pCPU loops, vCPU traffic, xl control threads.

Mirrors what Xen's own cpupool tests do on hardware: every pCPU runs ``schedule()``
(its SCHEDULE_SOFTIRQ handler) over and over, vCPUs wake, sleep and migrate, and a
toolstack moves pCPUs between cpupools (``xl cpupool-cpu-remove`` then
``cpupool-cpu-add``) and domains between pools (``xl cpupool-migrate``). The run's
lifecycle (setup, start, stop, report) is :mod:`xensched_stress.runner`'s.

Threads of a run (all named, so stack dumps read well):

- ``pcpuN``, one per pCPU, bound to ``host.cpu_contexts[N]``: ``schedule()`` in a loop;
  after each call, with probability ``traffic``, one vCPU operation (``vcpu_unblock``,
  ``vcpu_block`` or ``vcpu_request_migrate``) on a random vCPU;
- ``xlN``, the control threads, each bound to a toolstack context of its own: every
  ``switch_interval`` seconds a pCPU move or a domain move, retrying on ``EAGAIN`` and
  ``EBUSY`` as xl does;
- ``watchdog``: when no pCPU makes progress for ``watchdog`` seconds, dumps every
  thread's stack and every lock's owner and stops the run as a deadlock.

Every random choice comes from a ``random.Random`` of the thread's own, seeded from the
base seed and the thread's name: the seed fixes each thread's choices, not the OS
interleaving (see :mod:`xensched.drivers.free`).

Stopping is two-phase so that no wait of the model is left without a partner: on stop
the control threads finish their current operation (which may wait for a vCPU to be
descheduled) while the pCPU threads turn *idle*, running ``schedule()`` only when their
SCHEDULE_SOFTIRQ is pending, as an idle pCPU does; once the control threads are joined
the pCPU threads leave. Every join is bounded; a thread still alive after it is listed
in the report.

Harness rules that are not Xen's, so that a run only finds what it is about:

- a vCPU operation never runs on a domain that a control thread is moving between
  pools (a guard per domain, taken with a trylock by the pCPU threads): in Xen those
  come from the domain itself, which is paused then;
- a domain is only moved once none of its vCPUs has a migration pending, and no pCPU
  move runs meanwhile (pCPU moves share a toolstack lock, a domain move takes it
  alone). Xen 4.7 has the window this avoids: ``domain_pause()`` returns once
  ``is_running`` is clear, while ``context_saved()`` is about to run the deferred
  ``vcpu_migrate()``, which then meets ``sched_move_domain()`` halfway (the vCPU's
  pool already new, its ``sched_priv`` still the old scheduler's). That is a race
  between ``cpupool-migrate`` and a migration request (``vcpu_set_affinity`` or
  ``cpu_disable_scheduler``), not a scheduler switch, so the workload keeps them
  apart;
- when a thread crashes, the emulated locks it held are released so that the crash is
  reported as a crash and not, seconds later, as a deadlock.
"""

from __future__ import annotations

import errno
import functools
import random
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING

from xensched import DeadlockError, XenError
from xensched.schedule import schedule, vcpu_block, vcpu_request_migrate, vcpu_unblock
from xensched.smp import bind

if TYPE_CHECKING:
    from collections.abc import Callable

    from xensched import Domain, Host, Vcpu
    from xensched.smp import ExecContext

    from .config import StressConfig

#: Attempts of one xl operation refused with EAGAIN/EBUSY before giving up on it.
_XL_ATTEMPTS = 50
#: A thread that crashed this many times stops (``keep_going`` runs).
_CRASH_CAP = 20
#: An idle pCPU polls its SCHEDULE_SOFTIRQ this often.
_IDLE_POLL = 0.0005


def thread_rng(seed: int, name: str) -> random.Random:
    """The private RNG of thread ``name`` in a run of base seed ``seed``.

    A ``str`` seed is hashed with SHA-512, so this is stable across processes (unlike
    ``hash(str)``).
    """
    return random.Random(f"xensched-stress:{seed}:{name}")


class CpuState:
    """Figures of one pCPU thread; written only by that thread."""

    __slots__ = ("count", "crashes", "exited", "ops", "quota", "reached")

    def __init__(self, quota: int | None) -> None:
        self.count = 0
        self.quota = quota
        self.reached = quota == 0  # its share of ``ops`` is done
        self.exited = False  # the thread left early (deadlock, crash cap)
        self.crashes = 0
        self.ops: Counter[str] = Counter()


class CtlState:
    """Figures of one control thread; written only by that thread."""

    __slots__ = ("crashes", "domain_moves", "refusals", "retries", "switches")

    def __init__(self) -> None:
        self.switches = 0
        self.domain_moves = 0
        self.crashes = 0
        self.retries: Counter[str] = Counter()
        self.refusals: Counter[str] = Counter()


class SharedExclusive:
    """The harness's toolstack lock: pCPU moves share it, a domain move has it alone.

    A plain reader-writer lock with writer preference (a waiting domain move holds
    back new pCPU moves). Emulator bookkeeping, not a Xen lock; every wait is bounded.
    """

    def __init__(self) -> None:
        self._cv = threading.Condition(threading.Lock())
        self._shared = 0
        self._exclusive = False
        self._waiting = 0

    def acquire_shared(self, timeout: float) -> bool:
        with self._cv:
            ok = self._cv.wait_for(
                lambda: not self._exclusive and not self._waiting, timeout
            )
            if ok:
                self._shared += 1
            return ok

    def release_shared(self) -> None:
        with self._cv:
            self._shared -= 1
            self._cv.notify_all()

    def acquire_exclusive(self, timeout: float) -> bool:
        with self._cv:
            self._waiting += 1
            try:
                ok = self._cv.wait_for(
                    lambda: not self._exclusive and not self._shared, timeout
                )
            finally:
                self._waiting -= 1
            if ok:
                self._exclusive = True
            else:
                self._cv.notify_all()
            return ok

    def release_exclusive(self) -> None:
        with self._cv:
            self._exclusive = False
            self._cv.notify_all()


class Workload:
    """The bodies of a run's pCPU and control threads; the run supplies the rest.

    A base class of the run: the threads need its stop events and its reactions to a
    deadlock or a crash, which are lifecycle matters.
    """

    def __init__(self, cfg: StressConfig) -> None:
        self.cfg = cfg
        self.host: Host | None = None
        # Phase 1 of stopping: control threads leave, pCPU threads turn idle.
        self.halt = threading.Event()
        # Phase 2: pCPU threads leave.
        self.cpus_off = threading.Event()
        ops = cfg.ops
        n = cfg.cpus
        self.cpu_states = [
            CpuState(None if ops is None else ops // n + (1 if i < ops % n else 0))
            for i in range(n)
        ]
        self.ctl_states = [CtlState() for _ in range(cfg.controllers)]
        self.vcpus: list[Vcpu] = []
        self.movable: list[Domain] = []
        self.guards: dict[Domain, threading.Lock] = {}
        self.toolstack = SharedExclusive()

    # -- what the run provides ----------------------------------------------------------
    def _sync(self) -> bool:
        """Wait for every thread to start; False when the start was called off."""
        raise NotImplementedError

    def _deadlock(self, why: str) -> None:
        raise NotImplementedError

    def _crash(self, ctx: ExecContext, exc: BaseException) -> None:
        raise NotImplementedError

    # -- pCPU threads ----------------------------------------------------------------------
    def _pcpu_main(self, n: int) -> None:
        h = self.host
        assert h is not None
        ctx = h.cpu_contexts[n]
        st = self.cpu_states[n]
        rng = thread_rng(self.cfg.seed, ctx.name)
        traffic = self.cfg.traffic
        halt, off = self.halt, self.cpus_off
        softirq = h.percpu[n].softirq
        with bind(ctx):
            if not self._sync():
                return
            try:
                while not off.is_set():
                    try:
                        if halt.is_set() or st.reached:
                            # Idle, as a pCPU does: reschedule only when asked to.
                            if softirq.peek():
                                schedule(h)
                                st.count += 1
                            else:
                                off.wait(_IDLE_POLL)
                            continue
                        schedule(h)
                        st.count += 1
                        if st.quota is not None and st.count >= st.quota:
                            st.reached = True
                        if traffic and rng.random() < traffic:
                            self._vcpu_op(h, rng, st)
                    except Exception as e:
                        if self._step_failed(ctx, st, e):
                            return
            except BaseException as e:  # a pCPU thread never dies silently
                self._crash(ctx, e)
            finally:
                st.exited = True

    def _step_failed(
        self, ctx: ExecContext, st: CpuState | CtlState, exc: Exception
    ) -> bool:
        """One step of a thread's loop raised; returns True if the thread must stop.

        A deadlock ends the run. Anything else is a ``crash`` violation, and the
        thread goes on until it has crashed ``_CRASH_CAP`` times.
        """
        if isinstance(exc, DeadlockError):
            self._deadlock(f"{ctx.name}: {exc}")
            return True
        st.crashes += 1
        self._crash(ctx, exc)
        return st.crashes >= _CRASH_CAP

    def _vcpu_op(self, h: Host, rng: random.Random, st: CpuState) -> None:
        v = rng.choice(self.vcpus)
        guard = self.guards[v.domain]
        if not guard.acquire(blocking=False):
            return  # a control thread is moving this domain between pools
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
            guard.release()

    # -- control threads -------------------------------------------------------------------
    def _control_main(self, i: int, ctx: ExecContext) -> None:
        h = self.host
        assert h is not None
        st = self.ctl_states[i]
        rng = thread_rng(self.cfg.seed, ctx.name)
        cfg = self.cfg
        with bind(ctx):
            if not self._sync():
                return
            try:
                while not self.halt.wait(cfg.switch_interval):
                    try:
                        if self.movable and rng.random() < cfg.domain_moves:
                            self._move_domain(h, rng, st)
                        else:
                            self._move_cpu(h, rng, st)
                    except Exception as e:
                        if self._step_failed(ctx, st, e):
                            return
            except BaseException as e:  # never silently
                self._crash(ctx, e)

    def _move_cpu(self, h: Host, rng: random.Random, st: CtlState) -> None:
        pools = list(h.cpupool_list)
        # A pool's last pCPU stays while it has domains (Xen refuses with EBUSY).
        candidates = [
            (c, cpu)
            for c in pools
            if not (len(c.cpu_valid) == 1 and c.domains)
            for cpu in sorted(c.cpu_valid)
        ]
        if not candidates or len(pools) < 2:
            return
        src, cpu = rng.choice(candidates)
        dst = rng.choice([c for c in pools if c is not src])
        if not self.toolstack.acquire_shared(h.bus.lock_timeout):
            st.refusals["toolstack-busy"] += 1
            return
        try:
            if not self._xl(st, functools.partial(h.cpupool_cpu_remove, src, cpu)):
                return
            if self._xl(st, functools.partial(h.cpupool_cpu_add, dst, cpu)):
                st.switches += 1
        finally:
            self.toolstack.release_shared()

    def _move_domain(self, h: Host, rng: random.Random, st: CtlState) -> None:
        d = rng.choice(self.movable)
        here = d.cpupool.peek()
        targets = [c for c in h.cpupool_list if c.cpu_valid and c is not here]
        if not targets:
            return
        dst = rng.choice(targets)
        guard = self.guards[d]
        bound = h.bus.lock_timeout
        if not guard.acquire(timeout=bound):
            st.refusals["guard-timeout"] += 1
            return
        try:
            if not self.toolstack.acquire_exclusive(bound):
                st.refusals["toolstack-busy"] += 1
                return
            try:
                # A migration deferred to context_saved() must land first (see the
                # module docstring); the pCPU running the vCPU was asked to
                # reschedule, so this takes one schedule() there.
                deadline = time.monotonic() + bound
                while any(v.migrating for v in d.vcpus):
                    if self.halt.wait(_IDLE_POLL):
                        return
                    if time.monotonic() > deadline:
                        st.refusals["migration-pending"] += 1
                        return
                if self._xl(st, functools.partial(h.cpupool_migrate, d, dst)):
                    st.domain_moves += 1
            finally:
                self.toolstack.release_exclusive()
        finally:
            guard.release()

    def _xl(self, st: CtlState, op: Callable[[], object]) -> bool:
        """One xl command, retried on EAGAIN/EBUSY as xl and libxc do."""
        for attempt in range(_XL_ATTEMPTS):
            try:
                op()
                return True
            except XenError as e:
                if e.errno not in (errno.EAGAIN, errno.EBUSY):
                    st.refusals[e.errname] += 1
                    return False
                st.retries[e.errname] += 1
                if self.halt.wait(min(0.0002 * (attempt + 1), 0.005)):
                    return False
        st.refusals["gave-up"] += 1
        return False
