"""Run a stress workload on an emulated host with real, free-running threads.

Mirrors what Xen's own cpupool tests do on hardware: every pCPU runs ``schedule()``
(its SCHEDULE_SOFTIRQ handler) over and over, vCPUs wake, sleep and migrate, and a
toolstack moves pCPUs between cpupools (``xl cpupool-cpu-remove`` then
``cpupool-cpu-add``) and domains between pools (``xl cpupool-migrate``).

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

import contextlib
import errno
import functools
import platform
import random
import sys
import sysconfig
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from xensched import (
    ConfigError,
    DeadlockError,
    Host,
    SwitchProtocol,
    ViolationKind,
    XenError,
    XenschedError,
)
from xensched.drivers.free import DelayInjector, free_running
from xensched.interaction import Instrument
from xensched.schedule import schedule, vcpu_block, vcpu_request_migrate, vcpu_unblock
from xensched.smp import bind

from .config import POOL0
from .report import ProcessFigures, StopReason, StressReport

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from xensched import Domain, Vcpu, Violation
    from xensched.smp import Event, ExecContext

    from .config import StressConfig

#: How often the main thread checks its bounds, samples the process and reports.
PROGRESS_INTERVAL = 0.25
_POLL = 0.02
#: Attempts of one xl operation refused with EAGAIN/EBUSY before giving up on it.
_XL_ATTEMPTS = 50
#: A thread that crashed this many times stops (``keep_going`` runs).
_CRASH_CAP = 20
#: Bound of the start barrier.
_START_TIMEOUT = 30.0
#: Once a deadlock is declared, new lock waits give up after this long, so that the
#: threads stuck behind it come home quickly.
_TEARDOWN_LOCK_TIMEOUT = 0.25
#: An idle pCPU polls its SCHEDULE_SOFTIRQ this often.
_IDLE_POLL = 0.0005


@dataclass(frozen=True, slots=True)
class ProgressSnapshot:
    """What the live progress line shows; handed to ``run_stress(progress=...)``."""

    elapsed: float
    ops: int
    #: ``schedule()`` calls per second since the previous snapshot
    ops_per_s: float
    switches: int
    domain_moves: int
    violations: int
    per_cpu: tuple[int, ...]


def thread_rng(seed: int, name: str) -> random.Random:
    """The private RNG of thread ``name`` in a run of base seed ``seed``.

    A ``str`` seed is hashed with SHA-512, so this is stable across processes (unlike
    ``hash(str)``).
    """
    return random.Random(f"xensched-stress:{seed}:{name}")


def run_stress(
    cfg: StressConfig,
    *,
    progress: Callable[[ProgressSnapshot], None] | None = None,
    stop: threading.Event | None = None,
) -> StressReport:
    """Run ``cfg`` and return what it found.

    Args:
        cfg: the run; validated first.
        progress: called from the calling thread about every 0.25 s, and once at the
            end, with a :class:`ProgressSnapshot`.
        stop: set it (from any thread) to stop the run early; the report then says
            ``interrupted=True``. A ``KeyboardInterrupt`` in the calling thread does
            the same.

    Raises:
        ConfigError: an invalid configuration (nothing was started).
    """
    cfg.validate()
    return _Run(cfg, stop).execute(progress)


class _CpuState:
    """Figures of one pCPU thread; written only by that thread."""

    __slots__ = ("count", "crashes", "exited", "ops", "quota", "reached")

    def __init__(self, quota: int | None) -> None:
        self.count = 0
        self.quota = quota
        self.reached = quota == 0  # its share of ``ops`` is done
        self.exited = False  # the thread left early (deadlock, crash cap)
        self.crashes = 0
        self.ops: Counter[str] = Counter()


class _CtlState:
    """Figures of one control thread; written only by that thread."""

    __slots__ = ("crashes", "domain_moves", "refusals", "retries", "switches")

    def __init__(self) -> None:
        self.switches = 0
        self.domain_moves = 0
        self.crashes = 0
        self.retries: Counter[str] = Counter()
        self.refusals: Counter[str] = Counter()


class _SharedExclusive:
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


class _StopOnViolation(Instrument):
    """Notes when the first violation came and, unless keep_going, stops the run."""

    def __init__(self, run: _Run) -> None:
        self._run = run

    def on_violation(self, violation: Violation) -> None:
        self._run.violation_seen()


def _ctx_switches() -> tuple[int, int] | None:
    """(voluntary, involuntary) context switches of the whole process, or None.

    ``getrusage(RUSAGE_SELF)`` counts every thread, finished ones included; psutil's
    ``num_ctx_switches()`` reads ``/proc/PID/status`` on Linux, which is the main
    thread's alone, so it is only the fallback.
    """
    try:
        import resource
    except ImportError:  # not POSIX
        return None
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_nvcsw, ru.ru_nivcsw


class _ProcessProbe:
    """psutil figures of this process over the run; all ``None`` without psutil."""

    def __init__(self) -> None:
        self._t0 = time.monotonic()
        self.peak_rss: int | None = None
        self.peak_threads: int | None = None
        try:
            import psutil
        except ImportError:  # optional: the report says "unavailable"
            self._proc = None
            return
        self._proc = psutil.Process()
        self._cpu0 = self._proc.cpu_times()
        self._ctx0 = _ctx_switches() or tuple(self._proc.num_ctx_switches()[:2])
        self.sample()

    def sample(self) -> None:
        if self._proc is None:
            return
        try:
            rss = self._proc.memory_info().rss
            threads = self._proc.num_threads()
        except Exception:  # psutil can fail on exotic platforms; figures are extras
            return
        self.peak_rss = max(self.peak_rss or 0, rss)
        self.peak_threads = max(self.peak_threads or 0, threads)

    def finish(self) -> ProcessFigures:
        if self._proc is None:
            return ProcessFigures()
        self.sample()
        try:
            cpu = self._proc.cpu_times()
            ctx = _ctx_switches() or tuple(self._proc.num_ctx_switches()[:2])
            rss = self._proc.memory_info().rss
        except Exception:  # see sample()
            return ProcessFigures()
        wall = max(time.monotonic() - self._t0, 1e-9)
        busy = (cpu.user - self._cpu0.user) + (cpu.system - self._cpu0.system)
        return ProcessFigures(
            cpu_percent=100.0 * busy / wall,
            rss_bytes=rss,
            peak_rss_bytes=self.peak_rss,
            threads=self.peak_threads,
            ctx_switches_voluntary=ctx[0] - self._ctx0[0],
            ctx_switches_involuntary=ctx[1] - self._ctx0[1],
        )


def python_description() -> str:
    """``Python 3.13.5 (free-threaded, GIL off)`` or ``Python 3.11.7 (GIL)``."""
    version = f"Python {platform.python_version()}"
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        gil_enabled = getattr(sys, "_is_gil_enabled", lambda: True)()
        return f"{version} (free-threaded, GIL {'on' if gil_enabled else 'off'})"
    return f"{version} (GIL)"


_SETUP = "setup"
#: Points of each context kept when the first violation is seen.
_CONTEXT_POINTS = 4


def _last_points(host: Host, n: int) -> tuple[Event, ...]:
    """The last ``n`` points of every context of ``host``, oldest first."""
    merged: list[Event] = []
    for ctx in list(host.bus.contexts):
        if ctx.name == _SETUP:
            continue  # the harness building the host, long before
        merged.extend(ctx.recent_events()[-n:])
    merged.sort()
    return tuple(merged)


def dump_threads() -> str:
    """Every thread's stack, labelled by thread name (pytest-timeout's dump_stacks)."""
    names = {t.ident: t.name for t in threading.enumerate()}
    frames = sys._current_frames()
    out: list[str] = []
    for ident, frame in sorted(
        frames.items(), key=lambda kv: str(names.get(kv[0], kv[0]))
    ):
        out.append(f"--- thread {names.get(ident, ident)} ---")
        for entry in traceback.format_stack(frame):
            out.extend(line for line in entry.rstrip("\n").split("\n"))
    return "\n".join(out)


def dump_locks(host: Host) -> str:
    """Every lock's owner (from ``lock.stats()``) and what each context did last."""
    stats = host.lock_stats()
    held = [s for s in stats if s.owner is not None]
    out = ["locks held:"]
    out.extend(
        f"  {s.name} held by {s.owner} (acquired {s.acquisitions}x, "
        f"contended {s.contended}x)"
        for s in held
    )
    if not held:
        out.append("  none")
    out.append(f"  ({len(stats) - len(held)} other locks free)")
    out.append("last interaction point of each context:")
    for ctx in list(host.bus.contexts):
        last = ctx.last_event()
        if last is not None:
            out.append(f"  {ctx.name}: {last[2]} {last[3]} [{last[4]}]")
    return "\n".join(out)


class _Run:
    """One execution of a :class:`StressConfig`."""

    def __init__(self, cfg: StressConfig, stop: threading.Event | None) -> None:
        self.cfg = cfg
        self.external_stop = stop
        self.host: Host | None = None
        self.injector: DelayInjector | None = None
        # Phase 1 of stopping: control threads leave, pCPU threads turn idle.
        self.halt = threading.Event()
        # Phase 2: pCPU threads leave.
        self.cpus_off = threading.Event()
        self._meta = threading.Lock()  # harness bookkeeping, never held long
        self.t0 = time.monotonic()
        self.t_end: float | None = None
        self.deadlock: str | None = None
        self.first_violation_after: float | None = None
        self.interrupted = False
        self.reason: StopReason | None = None
        ops = cfg.ops
        n = cfg.cpus
        self.cpu_states = [
            _CpuState(None if ops is None else ops // n + (1 if i < ops % n else 0))
            for i in range(n)
        ]
        self.ctl_states = [_CtlState() for _ in range(cfg.controllers)]
        self.threads: list[threading.Thread] = []
        self.pcpu_threads: list[threading.Thread] = []
        self.ctl_threads: list[threading.Thread] = []
        self.watchdog_thread: threading.Thread | None = None
        self.barrier: threading.Barrier | None = None
        self.vcpus: list[Vcpu] = []
        self.movable: list[Domain] = []
        self.guards: dict[Domain, threading.Lock] = {}
        self.toolstack = _SharedExclusive()
        self.pools: tuple[tuple[str, str, tuple[int, ...]], ...] = ()
        self.stragglers: tuple[str, ...] = ()
        self.first_context: tuple[Event, ...] = ()

    # -- the whole run -----------------------------------------------------------------
    def execute(
        self, progress: Callable[[ProgressSnapshot], None] | None
    ) -> StressReport:
        probe = _ProcessProbe()
        try:
            try:
                self._setup()
                with free_running(self.cfg.gil_switch_interval):
                    try:
                        self._start()
                        probe.sample()
                        self._wait(progress, probe)
                    finally:
                        self._teardown()
            except KeyboardInterrupt:
                self.interrupted = True
                self._teardown()
        finally:
            if self.host is not None:
                self.host.bus.driver = None
        self._final_audit()
        final = self._snapshot(0, 0.0)  # what the last progress line and report show
        if progress is not None:
            progress(final)
        return self._report(probe.finish(), final)

    # -- setup -------------------------------------------------------------------------
    def _setup(self) -> None:
        cfg = self.cfg
        try:
            # Built with the fixed protocol: setup moves run on one thread, and the
            # legacy protocol's sequential bugs (RTDS<->Credit2) are not the run's.
            h = Host(
                cfg.cpus,
                sched=cfg.boot,
                protocol=SwitchProtocol.FIXED,
                topology=cfg.topology,
                dom0_vcpus=1,
                lock_timeout=cfg.lock_bound,
                # Throughput first: loads stay out of the trace (see Bus).
                trace_all=False,
            )
            with bind(h.toolstack_context(_SETUP)):
                for p in cfg.pool_layout():
                    h.cpupool_create(p.name, p.sched)
                    for cpu in p.cpus:
                        h.cpupool_cpu_remove(POOL0, cpu)
                        h.cpupool_cpu_add(p.name, cpu)
                with_cpus = [c for c in h.cpupool_list if c.cpu_valid.peek()]
                for i in range(cfg.domains):
                    h.create_domain(
                        f"d{i + 1}", with_cpus[i % len(with_cpus)], vcpus=cfg.vcpus
                    )
        except XenError as e:
            raise ConfigError(f"setting up the host: {e}") from e
        h.protocol = SwitchProtocol.parse(cfg.protocol)
        self.host = h
        self.pools = tuple((p.name, p.sched, p.cpus) for p in h.list_cpupools())
        self.vcpus = list(h.iter_vcpus())
        self.movable = [d for d in h.domains.values() if d.domain_id != 0]
        self.guards = {d: threading.Lock() for d in h.domains.values()}
        h.bus.add_instrument(_StopOnViolation(self))
        if cfg.delay_injection > 0:
            self.injector = DelayInjector(
                cfg.delay_injection, cfg.seed, max_delay=cfg.max_delay
            )
            h.bus.driver = self.injector

    def _start(self) -> None:
        h = self.host
        assert h is not None
        cfg = self.cfg
        ctl_ctxs = [h.toolstack_context(f"xl{i}") for i in range(cfg.controllers)]
        self.pcpu_threads = [
            threading.Thread(
                target=self._pcpu_main, args=(n,), name=f"pcpu{n}", daemon=True
            )
            for n in range(cfg.cpus)
        ]
        self.ctl_threads = [
            threading.Thread(
                target=self._control_main, args=(i, ctx), name=ctx.name, daemon=True
            )
            for i, ctx in enumerate(ctl_ctxs)
        ]
        workers = self.pcpu_threads + self.ctl_threads
        self.barrier = threading.Barrier(len(workers) + 1, action=self._go)
        try:
            for t in workers:
                t.start()
                self.threads.append(t)
            self.barrier.wait(_START_TIMEOUT)
        except BaseException:
            self.barrier.abort()
            raise
        self.watchdog_thread = threading.Thread(
            target=self._watchdog_main, name="watchdog", daemon=True
        )
        self.watchdog_thread.start()
        self.threads.append(self.watchdog_thread)

    def _go(self) -> None:
        self.t0 = time.monotonic()

    def _sync(self) -> bool:
        assert self.barrier is not None
        try:
            self.barrier.wait(_START_TIMEOUT)
        except threading.BrokenBarrierError:
            return False
        return True

    # -- the calling thread: bounds, progress, Ctrl-C ------------------------------------
    def _wait(
        self,
        progress: Callable[[ProgressSnapshot], None] | None,
        probe: _ProcessProbe,
    ) -> None:
        cfg = self.cfg
        next_tick = self.t0 + PROGRESS_INTERVAL
        last_ops, last_t = 0, self.t0
        while True:
            now = time.monotonic()
            if self.halt.is_set():
                break
            if self.external_stop is not None and self.external_stop.is_set():
                self.interrupted = True
                break
            if cfg.ops is None:
                assert cfg.duration is not None
                if now - self.t0 >= cfg.duration:
                    self._set_reason(StopReason.DURATION)
                    break
            elif all(s.reached or s.exited for s in self.cpu_states):
                self._set_reason(StopReason.OPS)
                break
            if now >= next_tick:
                next_tick += PROGRESS_INTERVAL
                probe.sample()
                if progress is not None:
                    ops = self._ops()
                    rate = (ops - last_ops) / max(now - last_t, 1e-9)
                    last_ops, last_t = ops, now
                    progress(self._snapshot(ops, rate))
            timeout = _POLL
            if cfg.ops is None:
                assert cfg.duration is not None
                timeout = min(timeout, max(0.0, self.t0 + cfg.duration - now))
            self.halt.wait(timeout)
        self.t_end = time.monotonic()

    def _teardown(self) -> None:
        """Stop in two phases and join everything, each join bounded."""
        if self.t_end is None:
            self.t_end = time.monotonic()
        self.halt.set()
        if self.barrier is not None:
            # Threads still waiting at the barrier (start interrupted) leave now.
            self.barrier.abort()
        # In-flight waits keep the bound they started with, whatever happens later.
        bound = self.cfg.lock_bound + 2.0
        self._join(self.ctl_threads, bound)
        self.cpus_off.set()
        self._join(self.pcpu_threads, bound)
        if self.watchdog_thread is not None:
            self._join([self.watchdog_thread], 1.0)
        self.stragglers = tuple(t.name for t in self.threads if t.is_alive())

    def _join(self, threads: Sequence[threading.Thread], bound: float) -> None:
        deadline = time.monotonic() + bound
        for t in threads:
            while t.is_alive():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    t.join(min(remaining, 0.1))
                except KeyboardInterrupt:  # a second Ctrl-C: keep cleaning up
                    self.interrupted = True

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
        self, ctx: ExecContext, st: _CpuState | _CtlState, exc: Exception
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

    def _vcpu_op(self, h: Host, rng: random.Random, st: _CpuState) -> None:
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

    def _move_cpu(self, h: Host, rng: random.Random, st: _CtlState) -> None:
        pools = list(h.cpupool_list)
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

    def _move_domain(self, h: Host, rng: random.Random, st: _CtlState) -> None:
        d = rng.choice(self.movable)
        here = d.cpupool.peek()
        targets = [c for c in h.cpupool_list if c.cpu_valid.peek() and c is not here]
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
                while any(v.migrating.peek() for v in d.vcpus):
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

    def _xl(self, st: _CtlState, op: Callable[[], object]) -> bool:
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

    # -- the watchdog ------------------------------------------------------------------------
    def _watchdog_main(self) -> None:
        bound = self.cfg.watchdog
        tick = min(0.05, bound / 10)
        last, since = -1, time.monotonic()
        while not self.halt.wait(tick):
            now = time.monotonic()
            total = self._ops()
            running = any(not (s.reached or s.exited) for s in self.cpu_states)
            if total != last or not running:
                last, since = total, now
                continue
            if now - since >= bound:
                msg = (
                    f"watchdog: no pCPU made progress for {now - since:.1f}s "
                    f"(bound {bound:g}s); schedule() calls stuck at {total}"
                )
                assert self.host is not None
                self.host.bus.violation(ViolationKind.DEADLOCK, "watchdog", msg)
                self._deadlock(msg)
                return

    # -- events from the threads ---------------------------------------------------------------
    def violation_seen(self) -> None:
        with self._meta:
            first = self.first_violation_after is None
            if first:
                self.first_violation_after = time.monotonic() - self.t0
        if first and self.host is not None:
            # The violation's own events are the last few of all contexts; what the
            # other threads were in the middle of (say, xl0 halfway through a
            # switch) is often older. Keep each context's last points as well.
            self.first_context = _last_points(self.host, _CONTEXT_POINTS)
        if not self.cfg.keep_going:
            self._set_reason(StopReason.VIOLATION)
            self.halt.set()

    def _set_reason(self, reason: StopReason) -> None:
        with self._meta:
            if self.reason is None:
                self.reason = reason

    def _deadlock(self, why: str) -> None:
        """Declare a deadlock (once): dump stacks and lock owners, stop the run."""
        with self._meta:
            if self.deadlock is not None:
                return
            self.deadlock = why
        h = self.host
        assert h is not None
        dump = f"{why}\n\n{dump_locks(h)}\n\n{dump_threads()}"
        with self._meta:
            self.deadlock = dump
        # Threads stuck behind the deadlock give up quickly from now on.
        h.bus.lock_timeout = min(h.bus.lock_timeout, _TEARDOWN_LOCK_TIMEOUT)
        self.halt.set()

    def _crash(self, ctx: ExecContext, exc: BaseException) -> None:
        """An unexpected exception in emulated code: a ``crash`` violation."""
        h = self.host
        assert h is not None
        tb = traceback.extract_tb(exc.__traceback__)
        where = tb[-1].name if tb else "?"
        text = "".join(traceback.format_exception(exc)).rstrip()
        try:
            h.bus.violation(
                ViolationKind.CRASH,
                where,
                f"{ctx.name} crashed: {type(exc).__name__}: {exc}\n{text}",
                cpu=ctx.cpu,
            )
        finally:
            # Release what the dead context held, so the others are not stuck
            # behind it, and give it its IRQs back.
            for lock in list(h.bus.locks):
                if lock.owner == ctx.name:
                    with contextlib.suppress(XenschedError):
                        lock.release()
            ctx.irq_enabled = True

    # -- results -------------------------------------------------------------------------------
    def _ops(self) -> int:
        return sum(s.count for s in self.cpu_states)

    def _snapshot(self, ops: int, rate: float) -> ProgressSnapshot:
        now = self.t_end if self.t_end is not None else time.monotonic()
        counts = tuple(s.count for s in self.cpu_states)
        if not ops:
            ops = sum(counts)
            rate = ops / max(now - self.t0, 1e-9)
        return ProgressSnapshot(
            elapsed=now - self.t0,
            ops=ops,
            ops_per_s=rate,
            switches=sum(s.switches for s in self.ctl_states),
            domain_moves=sum(s.domain_moves for s in self.ctl_states),
            violations=len(self.host.violations) if self.host is not None else 0,
            per_cpu=counts,
        )

    def _final_audit(self) -> None:
        """After a clean stop, check every pCPU's lock pointer (``lock-clobbered``)."""
        h = self.host
        if h is None or self.deadlock is not None or self.stragglers:
            return
        if h.violations:
            return
        with bind(h.toolstack_context("audit")):
            h.audit()

    def _report(self, process: ProcessFigures, final: ProgressSnapshot) -> StressReport:
        h = self.host
        cfg = self.cfg
        violations = tuple(h.violations) if h is not None else ()
        if self.deadlock is not None:
            reason = StopReason.DEADLOCK
        elif self.interrupted:
            reason = StopReason.INTERRUPTED
        elif self.reason is not None:
            reason = self.reason
        elif violations:
            reason = StopReason.VIOLATION
        else:
            reason = StopReason.DURATION if cfg.ops is None else StopReason.OPS
        if self.first_violation_after is None and violations:
            # Found by the final audit.
            self.first_violation_after = (self.t_end or self.t0) - self.t0
        vcpu_ops: Counter[str] = Counter()
        for s in self.cpu_states:
            vcpu_ops.update(s.ops)
        retries: Counter[str] = Counter()
        refusals: Counter[str] = Counter()
        for c in self.ctl_states:
            retries.update(c.retries)
            refusals.update(c.refusals)
        driver = f"free-running, switch interval {cfg.gil_switch_interval:g}s"
        if self.injector is not None:
            driver += (
                f", delay injection P={cfg.delay_injection:g} "
                f"(<= {cfg.max_delay * 1e6:g}us)"
            )
        return StressReport(
            seed=cfg.seed,
            config=cfg,
            violations=violations,
            deadlock=self.deadlock,
            interrupted=self.interrupted,
            stop_reason=reason,
            elapsed=max(final.elapsed, 0.0),
            schedule_counts=final.per_cpu,
            lock_stats=tuple(h.lock_stats()) if h is not None else (),
            switches=final.switches,
            domain_moves=final.domain_moves,
            vcpu_ops=dict(sorted(vcpu_ops.items())),
            xl_retries=dict(sorted(retries.items())),
            xl_refusals=dict(sorted(refusals.items())),
            first_violation_after=self.first_violation_after,
            delays_injected=(
                self.injector.total_delays() if self.injector is not None else 0
            ),
            process=process,
            python=python_description(),
            driver=driver,
            pools=self.pools,
            stragglers=self.stragglers,
            first_context=self.first_context,
        )
