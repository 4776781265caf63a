"""The lifecycle of a stress run: set up the host, start the threads, wait, stop, report.

Mirrors nothing in Xen. What the threads do is :mod:`xensched_stress.workload`'s (its
docstring has the harness rules); the process figures are
:mod:`~xensched_stress.process`'s and the deadlock dumps
:func:`xensched.diagnostics.deadlock_report`'s (a ``DeadlockError`` from the model
carries its own, taken where the wait ran out).

A run has these threads besides the workload's (all named, so stack dumps read well):
the calling thread, which checks the bounds, samples the process and reports progress;
and ``watchdog``, which dumps every thread's stack and every lock's owner and stops the
run as a deadlock when no pCPU makes progress for ``watchdog`` seconds.

Stopping is two-phase so that no wait of the model is left without a partner: on stop
the control threads finish their current operation (which may wait for a vCPU to be
descheduled) while the pCPU threads turn *idle*, running ``schedule()`` only when their
SCHEDULE_SOFTIRQ is pending, as an idle pCPU does; once the control threads are joined
the pCPU threads leave. Every join is bounded; a thread still alive after it is listed
in the report.

Harness rules that are not Xen's (enforced by :mod:`xensched.programs`, whose
docstring has them in full), so that a run only finds what it is about:

- no vCPU operation of the random traffic on a domain being moved between pools (a
  guard per domain, trylocked by the pCPU threads): in Xen the domain is paused then;
- a domain moves only with no migration of its vCPUs pending and no pCPU move
  running: Xen 4.7's ``domain_pause()`` can return while ``context_saved()`` is about
  to run a deferred ``vcpu_migrate()``, which then meets ``sched_move_domain()``
  halfway; that race is between ``cpupool-migrate`` and a migration request, not a
  scheduler switch, so the workload keeps them apart.

When a thread crashes, the emulated locks it held are released so that the crash is
reported as a crash and not, seconds later, as a deadlock.
"""

from __future__ import annotations

import contextlib
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from xensched import DeadlockError, ViolationKind, XenschedError
from xensched.diagnostics import deadlock_report
from xensched.drivers.free import DelayInjector, free_running
from xensched.instruments import LockdepSummary, RaceSummary
from xensched.interaction import Instrument
from xensched.lockdep import Lockdep
from xensched.programs import Harness
from xensched.race_detector import RaceDetector
from xensched.scenario import build_host
from xensched.smp import bind

from .diagnostics import CONTEXT_POINTS, last_points
from .process import ProcessProbe, python_description
from .report import StopReason, StressReport
from .workload import _CRASH_CAP, Workload

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from xensched import Violation
    from xensched.programs import CpuStats, XlStats
    from xensched.smp import Event, ExecContext

    from .config import StressConfig
    from .report import ProcessFigures

#: How often the main thread checks its bounds, samples the process and reports.
PROGRESS_INTERVAL = 0.25
_POLL = 0.02
#: Bound of the start barrier.
_START_TIMEOUT = 30.0
#: Once a deadlock is declared, new lock waits give up after this long, so that the
#: threads stuck behind it come home quickly.
_TEARDOWN_LOCK_TIMEOUT = 0.25


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


@dataclass(frozen=True, slots=True)
class SetupProgress:
    """How far the host's set-up is; handed to ``run_stress(setup_progress=...)``."""

    done: int
    total: int
    #: seconds since the run started (set-up counts against ``duration``)
    elapsed: float


class _SetupOutOfTimeError(Exception):
    """The run's duration ran out while the host was still being set up."""


def run_stress(
    cfg: StressConfig,
    *,
    progress: Callable[[ProgressSnapshot], None] | None = None,
    stop: threading.Event | None = None,
    setup_progress: Callable[[SetupProgress], None] | None = None,
) -> StressReport:
    """Run ``cfg`` and return what it found.

    Args:
        cfg: the run; validated first.
        progress: called from the calling thread about every 0.25 s, and once at the
            end, with a :class:`ProgressSnapshot`.
        stop: set it (from any thread) to stop the run early; the report then says
            ``interrupted=True``. A ``KeyboardInterrupt`` in the calling thread does
            the same. Both are honoured between two steps of the set-up too.
        setup_progress: called from the calling thread while the host is set up,
            about every 0.25 s once set-up has lasted that long, and once when it
            ends: a set-up that takes no time shows nothing.

    The run's clock starts before the host is set up: set-up time comes out of
    ``duration`` (the threads run for what is left), and a duration that runs out
    during set-up ends the run there, with no ``schedule()`` call made. The report's
    ``elapsed`` counts from the threads' start.

    Raises:
        ConfigError: an invalid configuration (nothing was started).
    """
    cfg.validate()
    return _Run(cfg, stop, setup_progress).execute(progress)


class _StopOnViolation(Instrument):
    """Notes when the first violation came and, unless keep_going, stops the run."""

    def __init__(self, run: _Run) -> None:
        self._run = run

    def on_violation(self, violation: Violation) -> None:
        self._run.violation_seen()


class _Run(Workload):
    """One execution of a :class:`StressConfig`."""

    def __init__(
        self,
        cfg: StressConfig,
        stop: threading.Event | None,
        setup_progress: Callable[[SetupProgress], None] | None = None,
    ) -> None:
        super().__init__(cfg)
        self.external_stop = stop
        self.setup_progress = setup_progress
        #: The run's clock: set-up counts against the duration.
        self.started = time.monotonic()
        self._setup_tick = self.started + PROGRESS_INTERVAL
        self._setup_shown = False
        self.injector: DelayInjector | None = None
        self.lockdep: Lockdep | None = None
        self.race_detector: RaceDetector | None = None
        self._meta = threading.Lock()  # harness bookkeeping, never held long
        #: When the threads passed the start barrier (``threads_started``); the
        #: report's ``elapsed`` counts from it, and is 0 when no thread started.
        self.t0 = time.monotonic()
        self.threads_started = False
        self.error: str | None = None
        self.t_end: float | None = None
        self.deadlock: str | None = None
        self.first_violation_after: float | None = None
        self.interrupted = False
        self.reason: StopReason | None = None
        self.threads: list[threading.Thread] = []
        self.pcpu_threads: list[threading.Thread] = []
        self.ctl_threads: list[threading.Thread] = []
        self.watchdog_thread: threading.Thread | None = None
        self.barrier: threading.Barrier | None = None
        self.pools: tuple[tuple[str, str, tuple[int, ...]], ...] = ()
        self.stragglers: tuple[str, ...] = ()
        self.first_context: tuple[Event, ...] = ()

    # -- the whole run -----------------------------------------------------------------
    def execute(
        self, progress: Callable[[ProgressSnapshot], None] | None
    ) -> StressReport:
        probe = ProcessProbe()
        try:
            try:
                self._setup()
                with free_running(self.cfg.gil_switch_interval):
                    try:
                        if self._start_or_fail():
                            probe.sample()
                            self._wait(progress, probe)
                    finally:
                        self._teardown()
            except KeyboardInterrupt:
                self.interrupted = True
                self._teardown()
            except _SetupOutOfTimeError:
                self._set_reason(StopReason.DURATION)
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
        # Throughput first unless asked: loads stay out of the trace (see
        # xensched.interaction.Bus).
        h = build_host(
            self.scenario,
            lock_timeout=cfg.lock_bound,
            trace_all=cfg.trace_all,
            on_step=self._setup_step,
            memory_seed=cfg.seed,
        )
        h.bus.max_violations = cfg.max_violations
        h.bus.max_events = cfg.max_events
        self.host = h
        self.harness = Harness(h)
        self.pools = tuple((p.name, p.sched, p.cpus) for p in h.list_cpupools())
        h.bus.add_instrument(_StopOnViolation(self))
        if cfg.lockdep:
            # After the set-up: what is checked is the run's workload.
            self.lockdep = Lockdep()
            h.bus.add_instrument(self.lockdep)
        if cfg.race_detector:
            # After the set-up too: set-up's writes happen before every thread.
            self.race_detector = RaceDetector()
            h.bus.add_instrument(self.race_detector)
        if cfg.delay_injection > 0:
            self.injector = DelayInjector(
                cfg.delay_injection, cfg.seed, max_delay=cfg.max_delay
            )
            h.bus.driver = self.injector

    def _setup_step(self, done: int, total: int) -> None:
        """Between two set-up steps: honour a stop and the duration, show progress."""
        now = time.monotonic()
        cfg = self.cfg
        stopped = self.external_stop is not None and self.external_stop.is_set()
        out_of_time = cfg.duration is not None and now - self.started >= cfg.duration
        out_of_time = out_of_time and cfg.ops is None
        # A set-up cut short always says how far it got: the run then made no
        # schedule() call, and this line tells why.
        due = now >= self._setup_tick or (done == total and self._setup_shown)
        if self.setup_progress is not None and (due or stopped or out_of_time):
            self._setup_tick = now + PROGRESS_INTERVAL
            self._setup_shown = True
            self.setup_progress(SetupProgress(done, total, now - self.started))
        if stopped:
            # The run's Ctrl-C path: an interrupted report, nothing started.
            raise KeyboardInterrupt
        if out_of_time:
            raise _SetupOutOfTimeError

    def _start(self) -> None:
        h = self.host
        assert h is not None
        self.pcpu_threads = [
            threading.Thread(
                target=self.pcpu_main,
                args=(p, h.cpu_contexts[p.cpu]),
                name=p.name,
                daemon=True,
            )
            for p in self.pcpu_programs
        ]
        ctl_ctxs = [h.toolstack_context(p.name) for p in self.ctl_programs]
        self.ctl_threads = [
            threading.Thread(
                target=self.control_main, args=(i, ctx), name=ctx.name, daemon=True
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

    def _start_or_fail(self) -> bool:
        """Start the threads; False, with the run's reason ERROR, when they could not
        be (``can't start new thread``, a start barrier broken or out of time)."""
        try:
            self._start()
        except Exception as e:
            with self._meta:
                self.error = (
                    "could not start the threads: "
                    + "".join(traceback.format_exception_only(e)).strip()
                )
            self._set_reason(StopReason.ERROR)
            return False
        return True

    def _go(self) -> None:
        self.t0 = time.monotonic()
        self.threads_started = True

    def sync(self) -> bool:
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
        probe: ProcessProbe,
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
                if now - self.started >= cfg.duration:
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
                timeout = min(timeout, max(0.0, self.started + cfg.duration - now))
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

    # -- failures in the threads -----------------------------------------------------------
    def step_failed(
        self, ctx: ExecContext, st: CpuStats | XlStats, exc: Exception
    ) -> bool:
        """One operation of a program raised; returns True if the thread must stop.

        A deadlock ends the run. Anything else is a ``crash`` violation, and the
        thread goes on until it has crashed ``_CRASH_CAP`` times.
        """
        if isinstance(exc, DeadlockError):
            self._deadlock(f"{ctx.name}: {exc}", dumped=exc.dumped)
            return True
        st.crashes += 1
        self.crash(ctx, exc)
        return st.crashes >= _CRASH_CAP

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
            self.first_context = last_points(self.host, CONTEXT_POINTS)
        if not self.cfg.keep_going:
            self._set_reason(StopReason.VIOLATION)
            self.halt.set()

    def _set_reason(self, reason: StopReason) -> None:
        with self._meta:
            if self.reason is None:
                self.reason = reason

    def _deadlock(self, why: str, *, dumped: bool = False) -> None:
        """Declare a deadlock (once): dump stacks and lock owners (unless ``why``,
        a ``DeadlockError``'s report, has them already), stop the run."""
        with self._meta:
            if self.deadlock is not None:
                return
            self.deadlock = why
        h = self.host
        assert h is not None
        dump = why if dumped else deadlock_report(h.bus, why)
        with self._meta:
            self.deadlock = dump
        # Threads stuck behind the deadlock give up quickly from now on.
        h.bus.lock_timeout = min(h.bus.lock_timeout, _TEARDOWN_LOCK_TIMEOUT)
        self.halt.set()

    def crash(self, ctx: ExecContext, exc: BaseException) -> None:
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
        # No thread started (set-up cut short, a start that failed): nothing ran.
        elapsed = max(now - self.t0, 0.0) if self.threads_started else 0.0
        if not ops:
            ops = sum(counts)
            rate = ops / max(elapsed, 1e-9)
        return ProgressSnapshot(
            elapsed=elapsed,
            ops=ops,
            ops_per_s=rate,
            switches=sum(s.switches for s in self.ctl_states),
            domain_moves=sum(s.domain_moves for s in self.ctl_states),
            violations=self._violations_total(),
            per_cpu=counts,
        )

    def _violations_total(self) -> int:
        h = self.host
        if h is None:
            return 0
        return len(h.violations) + sum(h.bus.dropped_violations.values())

    def _final_audit(self) -> None:
        """After a clean stop, check every pCPU's lock pointer (``lock-clobbered``)."""
        h = self.host
        if h is None or self.deadlock is not None or self.stragglers:
            return
        # Every thread has stopped: what a store buffer still holds reaches memory,
        # as it would on a machine left to itself, before the audit reads it.
        flush = getattr(h.bus.memory, "flush", None)
        if flush is not None:
            flush()
        if h.violations:
            return
        with bind(h.toolstack_context("audit")):
            h.audit()

    def _report(self, process: ProcessFigures, final: ProgressSnapshot) -> StressReport:
        h = self.host
        cfg = self.cfg
        violations = tuple(h.violations) if h is not None else ()
        dropped = h.bus.dropped_violations if h is not None else {}
        if self.deadlock is not None:
            reason = StopReason.DEADLOCK
        elif self.error is not None:
            reason = StopReason.ERROR
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
            violations_dropped={k.value: n for k, n in sorted(dropped.items())},
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
            threads_started=self.threads_started,
            error=self.error,
            first_context=self.first_context,
            lockdep=(
                LockdepSummary.of(self.lockdep) if self.lockdep is not None else None
            ),
            race_detector=(
                RaceSummary.of(self.race_detector)
                if self.race_detector is not None
                else None
            ),
        )
