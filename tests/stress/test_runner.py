"""run_stress: short, fixed-seed runs of the real threaded harness (each <= 2 s).

The root conftest checks that no thread outlives a test and that the switch interval
is restored, so every test here also checks that run_stress joins what it starts.
"""

from __future__ import annotations

import _thread
import json
import signal
import threading
import time
from typing import TYPE_CHECKING

import pytest

from xensched import ConfigError, Host, ViolationKind, programs
from xensched.schedule import schedule as real_schedule
from xensched.smp import current, smp_processor_id
from xensched.spinlock import spin_lock, spin_lock_irq
from xensched_stress.config import PoolSpec, StressConfig
from xensched_stress.report import StopReason, StressReport
from xensched_stress.runner import ProgressSnapshot, run_stress
from xensched_stress.workload import thread_rng

if TYPE_CHECKING:
    from xensched import Vcpu


def _check_report_shape(r: StressReport) -> None:
    data = r.to_json()
    json.dumps(data)  # JSON-ready
    assert data["seed"] == r.seed
    violations = data["violations"]
    assert isinstance(violations, list)
    for v in violations:
        assert {"kind", "cpu", "where", "message", "events"} <= set(v)
    text = r.render()
    assert f"seed={r.seed}" in text
    assert "rerun: xensched stress" in text
    assert len(r.schedule_counts) == r.config.cpus
    assert not r.stragglers


@pytest.mark.parametrize(
    ("boot", "pool"), [("credit", "credit2"), ("rtds", "arinc653"), ("credit2", "rtds")]
)
def test_fixed_protocol_short_run_is_clean(boot: str, pool: str) -> None:
    cfg = StressConfig(
        boot=boot,
        pools=(PoolSpec("p1", pool, (2, 3)),),
        duration=0.6,
        seed=11,
        switch_interval=0.002,
    )
    t0 = time.monotonic()
    r = run_stress(cfg)
    whole = time.monotonic() - t0
    _check_report_shape(r)
    assert r.exit_code == 0, r.render()
    assert r.violations == ()
    assert r.deadlock is None
    assert not r.interrupted
    assert r.stop_reason is StopReason.DURATION
    assert all(c > 0 for c in r.schedule_counts)
    # The duration runs from before the set-up, the report's elapsed from the
    # threads' start: on a loaded 3.13t the set-up took 0.42 s of the 0.6 and the
    # threads ran for 0.18 s. The duration was honoured, and no more than a bounded
    # wind-down past it.
    assert 0.6 <= whole < 10.0
    assert 0.0 < r.elapsed <= whole
    assert r.pools == (("Pool-0", boot, (0, 1)), ("p1", pool, (2, 3)))
    assert sum(r.vcpu_ops.values()) > 0
    assert any(s.acquisitions for s in r.lock_stats)


def test_control_threads_move_pcpus_and_domains() -> None:
    # Stop as soon as the control thread has done some of each (a loaded machine
    # may need longer: the bound is the duration).
    stop = threading.Event()

    def progress(snap: ProgressSnapshot) -> None:
        if snap.switches >= 3 and snap.domain_moves >= 1:
            stop.set()

    cfg = StressConfig(duration=1.8, seed=12, switch_interval=0.001, domain_moves=0.3)
    r = run_stress(cfg, progress=progress, stop=stop)
    assert r.exit_code == 0, r.render()
    assert r.switches >= 3
    assert r.domain_moves >= 1


def test_ops_bound_stops_the_run() -> None:
    r = run_stress(StressConfig(ops=400, duration=None, seed=3))
    assert r.stop_reason is StopReason.OPS
    assert r.total_ops >= 400
    assert r.exit_code == 0, r.render()


def test_legacy_sequential_assert_is_found_deterministically() -> None:
    # RTDS (boot) <-> Credit2 (pool) under the legacy protocol: every switch trips
    # csched2_free_pdata's or rt_free_pdata's ASSERT on its own (the patch's problem
    # 2), whatever the interleaving. The control thread only moves pCPUs here, and
    # it finishes its move before it stops: that ASSERT is always reported, even
    # when a pCPU ran into the race (problem 1) first. That race may show as any of
    # the three protocol kinds, mutual-exclusion included (two pCPUs in one Credit2
    # runqueue through the old and the new lock); what must never appear is a
    # deadlock or a crash of the emulator.
    cfg = StressConfig(
        boot="rtds",
        pools=(PoolSpec("p1", "credit2", (2, 3)),),
        protocol="legacy",
        duration=2.0,
        seed=5,
        switch_interval=0.001,
        domain_moves=0.0,
    )
    r = run_stress(cfg)
    _check_report_shape(r)
    assert r.exit_code == 1
    assert r.stop_reason is StopReason.VIOLATION
    kinds = {v.kind for v in r.violations}
    assert ViolationKind.ASSERT in kinds
    assert kinds <= {
        ViolationKind.ASSERT,
        ViolationKind.LOCK_CLOBBERED,
        ViolationKind.LOCK_MISMATCH,
        ViolationKind.MUTUAL_EXCLUSION,
    }
    assert any(v.where in ("rt_free_pdata", "csched2_free_pdata") for v in r.violations)
    assert r.first_violation_after is not None
    assert r.first_violation_after <= r.elapsed
    assert "xensched stress" in r.rerun
    assert "--protocol legacy" in r.rerun


def test_legacy_credit_credit2_race_is_found() -> None:
    # The race of the patch (problem 1) under free-running threads, windows widened
    # by delay injection. Measured: found within a few hundred schedule() calls and
    # 0.05 s on an idle machine. The bound is a count of calls, not seconds: with the
    # machine overloaded (two CPU hogs on 2 cores, 3.13t) the race took up to 12,700
    # calls and 3.8 s, and a 1.8 s bound had missed it.
    cfg = StressConfig(
        boot="credit",
        pools=(PoolSpec("p1", "credit2", (2, 3)),),
        protocol="legacy",
        duration=None,
        ops=40_000,
        seed=2016,
        switch_interval=0.001,
        delay_injection=0.02,
    )
    r = run_stress(cfg)
    assert r.exit_code == 1, r.render()
    assert r.violations[0].kind in (
        ViolationKind.LOCK_MISMATCH,
        ViolationKind.ASSERT,
        ViolationKind.MUTUAL_EXCLUSION,
    )
    assert r.delays_injected > 0
    assert "delay injection" in r.driver
    # The report shows what the toolstack thread was in the middle of.
    assert r.first_context
    assert "xl0" in {e[1] for e in r.first_context}
    assert "what every context did last" in r.render()


@pytest.mark.slow
def test_keep_going_counts_every_violation() -> None:
    cfg = StressConfig(
        boot="rtds",
        pools=(PoolSpec("p1", "credit2", (2, 3)),),
        protocol="legacy",
        duration=None,
        ops=8_000,  # a count, not seconds: enough moves on a loaded machine too
        seed=5,
        switch_interval=0.001,
        domain_moves=0.0,
        keep_going=True,
    )
    r = run_stress(cfg)
    assert r.stop_reason is StopReason.OPS
    assert len(r.violations) > 1
    assert sum(r.violations_by_kind.values()) == r.violations_total


def test_thread_rng_is_stable() -> None:
    assert thread_rng(1, "pcpu0").random() == thread_rng(1, "pcpu0").random()
    assert thread_rng(1, "pcpu0").random() != thread_rng(1, "pcpu1").random()
    assert thread_rng(1, "pcpu0").random() != thread_rng(2, "pcpu0").random()


def test_invalid_config_raises_before_starting() -> None:
    with pytest.raises(ConfigError):
        run_stress(StressConfig(cpus=1))


# -- the watchdog and deadlocks -----------------------------------------------------------


def _stuck_on_cpupool_lock(h: Host) -> Vcpu:
    """A schedule() that takes cpupool_lock and never lets go: the first caller gets
    it, and everybody, itself included, then spins on it."""
    spin_lock(h.cpupool_lock)
    return h.percpu[smp_processor_id()].idle


def test_watchdog_declares_a_deadlock_and_names_the_owner(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(programs, "schedule", _stuck_on_cpupool_lock)
    # lock_timeout well above the watchdog bound: the watchdog speaks first, even when
    # a loaded machine runs its thread late.
    cfg = StressConfig(duration=5.0, seed=1, watchdog=0.3, lock_timeout=1.5)
    r = run_stress(cfg)
    assert r.exit_code == 3
    assert r.stop_reason is StopReason.DEADLOCK
    assert r.deadlock is not None
    assert r.deadlock.startswith("watchdog: no pCPU made progress")
    assert "cpupool_lock held by " in r.deadlock  # a pCPU, or xl0 if it came first
    assert "--- thread pcpu0 ---" in r.deadlock  # every thread's stack
    assert "--- thread xl0 ---" in r.deadlock
    assert r.elapsed < 3.0  # the watchdog ended it, long before the 5 s duration
    assert ViolationKind.DEADLOCK in {v.kind for v in r.violations}
    data = r.to_json()
    assert data["deadlock"] == r.deadlock
    assert data["exit_code"] == 3
    assert "deadlock:" in r.render()


def test_lock_wait_timeout_in_a_pcpu_thread_is_a_deadlock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def planted(h: Host) -> Vcpu:
        if current().cpu == 1:
            spin_lock(h.cpupool_lock)  # the second call spins on itself
        return real_schedule(h)

    monkeypatch.setattr(programs, "schedule", planted)
    # No control thread: nobody else wants cpupool_lock.
    cfg = StressConfig(duration=5.0, seed=1, lock_timeout=0.3, controllers=0)
    r = run_stress(cfg)
    assert r.exit_code == 3
    assert r.deadlock is not None
    assert r.deadlock.startswith("pcpu1: pcpu1 spun on 'cpupool_lock'")
    assert "held by pcpu1" in r.deadlock
    # The report the spin took as it ran out: the lock table with the waiter, and
    # every thread's stack, pCPU 1's still in the function that spun.
    assert "\n  cpupool_lock held by pcpu1 (" in r.deadlock
    assert "waited for by pcpu1" in r.deadlock
    assert "--- thread pcpu0 ---" in r.deadlock
    assert ", in planted\n" in r.deadlock
    assert r.elapsed < 3.0  # the lock bound ended it, long before the 5 s duration


def test_a_crash_is_a_violation_with_its_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def crashing(h: Host) -> Vcpu:
        if current().cpu == 2:
            # Hold a lock when crashing: the harness must release it.
            spin_lock_irq(h.percpu[2].schedule_data._lock)
            raise RuntimeError("emulated code blew up")
        return real_schedule(h)

    monkeypatch.setattr(programs, "schedule", crashing)
    r = run_stress(StressConfig(duration=2.0, seed=1, lock_timeout=1.0))
    assert r.exit_code == 1, r.render()
    assert r.deadlock is None
    first = r.violations[0]
    assert first.kind is ViolationKind.CRASH
    assert first.cpu == 2
    assert first.where == "crashing"
    assert "RuntimeError: emulated code blew up" in first.message
    assert "Traceback" in first.message
    assert all(s.owner is None for s in r.lock_stats)


# -- stopping early ------------------------------------------------------------------------


def test_stop_event_gives_a_partial_report() -> None:
    stop = threading.Event()
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    try:
        r = run_stress(StressConfig(duration=30.0, seed=4), stop=stop)
    finally:
        timer.cancel()
        timer.join()
    assert r.interrupted, (r.stop_reason, r.exit_code, r.elapsed, r.violations[:1])
    assert r.stop_reason is StopReason.INTERRUPTED
    assert r.elapsed < 2.0
    assert r.total_ops > 0
    assert r.exit_code == 0
    assert r.to_json()["interrupted"] is True


def test_keyboard_interrupt_gives_a_partial_report() -> None:
    seen: list[ProgressSnapshot] = []

    def progress(snap: ProgressSnapshot) -> None:
        seen.append(snap)
        if len(seen) == 2:
            raise KeyboardInterrupt  # Ctrl-C while the main thread waits

    r = run_stress(StressConfig(duration=30.0, seed=4), progress=progress)
    assert r.interrupted, (r.stop_reason, r.exit_code, r.elapsed, r.violations[:1])
    assert r.stop_reason is StopReason.INTERRUPTED
    assert r.total_ops > 0
    assert r.elapsed < 2.0
    assert len(seen) == 3  # two live snapshots, then the final one
    assert seen[-1].ops == r.total_ops


def test_sigint_in_the_main_thread_gives_a_partial_report() -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("SIGINT is delivered to the main thread only")
    # A shell's background job inherits SIGINT ignored, and then interrupt_main()
    # does nothing: put Python's own handler in place for the test's duration.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.3, _thread.interrupt_main)
    timer.start()
    try:
        r = run_stress(StressConfig(duration=30.0, seed=4))
    finally:
        timer.cancel()
        timer.join()
        signal.signal(signal.SIGINT, previous)
    assert r.interrupted, (r.stop_reason, r.elapsed)
    assert r.elapsed < 2.0


def test_progress_snapshots() -> None:
    seen: list[ProgressSnapshot] = []
    # Snapshots come every 0.25 s and once at the end; 1.5 s leaves room for a main
    # thread starved by a loaded machine (0.6 s once gave only the final one).
    r = run_stress(StressConfig(duration=1.5, seed=9), progress=seen.append)
    assert len(seen) >= 2
    assert seen[-1].ops == r.total_ops
    assert seen[-1].per_cpu == r.schedule_counts
    assert all(s.ops_per_s >= 0 for s in seen)


@pytest.mark.parametrize("trace_all", [False, True])
def test_trace_all_decides_what_the_reported_events_hold(trace_all: bool) -> None:
    """Without --trace-all the events a report shows leave loads out and name only
    lock attempts; with it, loads are there and every event is named."""
    cfg = StressConfig(
        boot="rtds",
        pools=(PoolSpec("p1", "credit2", (2, 3)),),
        protocol="legacy",
        duration=2.0,
        seed=5,
        switch_interval=0.001,
        domain_moves=0.0,
        trace_all=trace_all,
    )
    r = run_stress(cfg)
    assert r.violations
    events = [e for v in r.violations for e in v.events]
    assert events
    kinds = {e[2] for e in events}
    assert ("load" in kinds) is trace_all
    unnamed = [e for e in events if not e[4]]
    if trace_all:
        assert unnamed == []
        assert "--trace-all" in r.rerun
    else:
        assert all(e[2] != "lock" for e in unnamed)
        assert "--trace-all" not in r.rerun
