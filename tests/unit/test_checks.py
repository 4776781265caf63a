"""Each checker is proved by feeding it a planted bug (and a healthy case)."""

from __future__ import annotations

import threading

import pytest

from tests.unit._threads import Threads, wait
from xensched import AssertFailedError, Host, SpinLock, Violation, ViolationKind
from xensched.checks import ASSERT, BUG_ON, CriticalSection, check_held
from xensched.interaction import Instrument
from xensched.sched_if import pcpu_schedule_lock_irq, pcpu_schedule_unlock_irq
from xensched.schedulers import Credit2
from xensched.smp import bind
from xensched.spinlock import spin_lock_irq, spin_unlock_irq


@pytest.fixture
def host() -> Host:
    return Host(4, sched="credit", dom0_vcpus=0)


# -- lock-mismatch ---------------------------------------------------------------------


def test_lock_mismatch_fires_when_the_wrong_lock_is_held(host: Host) -> None:
    wrong = host.lock_of(1)
    with host.on_cpu(0):
        spin_lock_irq(wrong)
        ok = check_held(wrong, 0, host.scheduler_of(0), "planted")
        spin_unlock_irq(wrong)
    assert ok is False
    [v] = host.violations
    assert v.kind is ViolationKind.LOCK_MISMATCH
    assert v.where == "planted"
    assert v.cpu == 0
    assert v.context == "pcpu0"
    assert "schedule_data[1]._lock" in v.message
    assert "schedule_data[0]._lock" in v.message


def test_lock_mismatch_quiet_when_the_right_lock_is_held(host: Host) -> None:
    with host.on_cpu(0):
        lock = pcpu_schedule_lock_irq(host, 2)
        assert check_held(lock, 2, host.scheduler_of(2), "healthy") is True
        pcpu_schedule_unlock_irq(host, lock, 2)
    assert host.violations == []


def test_lock_mismatch_from_schedule_under_a_planted_mapping(host: Host) -> None:
    """schedule() runs the checker itself: plant a foreign lock in cpu1's pointer."""
    planted = SpinLock(host.bus, "planted.lock")
    host.percpu[1].schedule_data.schedule_lock.store(planted)
    host.schedule(1)
    kinds = [(v.kind, v.where) for v in host.violations]
    assert (ViolationKind.LOCK_MISMATCH, "schedule") in kinds


# -- lock-clobbered ---------------------------------------------------------------------


def test_audit_finds_a_clobbered_lock_pointer(host: Host) -> None:
    assert host.audit() == []
    planted = SpinLock(host.bus, "planted.lock")
    host.percpu[2].schedule_data.schedule_lock.store(planted)
    [v] = host.audit()
    assert v.kind is ViolationKind.LOCK_CLOBBERED
    assert v.cpu == 2
    assert v.where == "audit"
    assert "planted.lock" in v.message
    assert "schedule_data[2]._lock" in v.message
    assert host.violations == [v]
    # Put it back: the audit is clean again and returns only new findings.
    host.percpu[2].schedule_data.schedule_lock.store(host.percpu[2].schedule_data._lock)
    assert host.audit() == []


def test_audit_on_credit2_with_another_runqueue_lock() -> None:
    h = Host(sched="credit2", topology="2x2", dom0_vcpus=0)
    assert h.audit() == []
    h.percpu[3].schedule_data.schedule_lock.store(h.lock_of(0))  # rq 0, not rq 1
    [v] = h.audit()
    assert v.cpu == 3
    assert "rqd[1].lock" in v.message


# -- mutual-exclusion --------------------------------------------------------------------


def test_mutual_exclusion_fires_for_two_threads_inside(host: Host) -> None:
    cs = CriticalSection(host.bus, "planted.runq")
    a_inside, b_done = threading.Event(), threading.Event()

    def a() -> None:
        with cs.section("planted_a"):
            a_inside.set()
            wait(b_done, "B to have been inside")

    def b() -> None:
        wait(a_inside, "A inside")
        with cs.section("planted_b"):
            assert sorted(cs.occupants()) == ["pcpu0", "pcpu1"]
        b_done.set()

    with Threads(a_inside, b_done) as threads:
        threads.start(host.cpu_contexts[0], a)
        threads.start(host.cpu_contexts[1], b)
        threads.join()
    [v] = host.violations
    assert v.kind is ViolationKind.MUTUAL_EXCLUSION
    assert v.where == "planted_b"
    assert v.cpu == 1
    assert v.context == "pcpu1"
    assert "pcpu1 entered planted.runq while pcpu0 was inside" in v.message
    assert cs.occupants() == []


def test_mutual_exclusion_quiet_for_turns_and_nesting(host: Host) -> None:
    cs = CriticalSection(host.bus, "planted.runq")
    with host.on_cpu(0):
        # The same context re-entering is not two pCPUs.
        with cs.section("first"), cs.section("nested"):
            assert cs.occupants() == ["pcpu0", "pcpu0"]
        with cs.section("second"):
            pass
    with host.on_cpu(1), cs.section("third"):
        assert cs.occupants() == ["pcpu1"]
    assert host.violations == []


# -- assert --------------------------------------------------------------------------------


def test_assert_records_a_violation_and_goes_on(host: Host) -> None:
    with host.on_cpu(2):
        assert ASSERT(True, "planted_fn", "fine") is True
        assert ASSERT(False, "planted_fn", "x == y") is False
        assert BUG_ON(False, "planted_bug", "fine") is False
        assert BUG_ON(True, "planted_bug", "z") is True
    a, b = host.violations
    assert (a.kind, a.where, a.message, a.cpu) == (
        ViolationKind.ASSERT,
        "planted_fn",
        "ASSERT(x == y) failed",
        2,
    )
    assert (b.kind, b.where, b.message) == (
        ViolationKind.ASSERT,
        "planted_bug",
        "BUG_ON(z)",
    )


def test_strict_host_raises_assert_failed() -> None:
    h = Host(2, strict=True)
    with h.on_cpu(0), pytest.raises(AssertFailedError, match="planted_fn: ASSERT"):
        ASSERT(False, "planted_fn", "x")
    assert issubclass(AssertFailedError, AssertionError)
    # Recorded before raising, so a report still has it.
    [v] = h.violations
    assert v.where == "planted_fn"


def test_strict_host_does_not_raise_for_other_kinds() -> None:
    h = Host(2, strict=True)
    planted = SpinLock(h.bus, "planted.lock")
    h.percpu[1].schedule_data.schedule_lock.store(planted)
    [v] = h.audit()
    assert v.kind is ViolationKind.LOCK_CLOBBERED


def test_strict_host_raises_from_the_model() -> None:
    """A planted Credit2 inconsistency: the BUG_ON in csched2_schedule raises."""
    h = Host(2, sched="credit2", dom0_vcpus=0, strict=True)
    assert isinstance(h.ops, Credit2)
    with h.on_cpu(0):
        h.ops.initialized.clear(1)
    with pytest.raises(AssertFailedError, match="csched2_schedule"):
        h.schedule(1)


# -- violation records and instruments ----------------------------------------------------


def test_violation_record_describe_and_json(host: Host) -> None:
    with host.on_cpu(3):
        ASSERT(False, "planted_fn", "x")
    [v] = host.violations
    assert isinstance(v, Violation)
    assert v.describe() == "assert on cpu3 in planted_fn(): ASSERT(x) failed"
    j = v.to_json()
    assert j["kind"] == "assert"
    assert j["cpu"] == 3
    assert j["where"] == "planted_fn"
    assert j["context"] == "pcpu3"
    assert isinstance(j["events"], list)
    host.bus.clear_violations()
    assert host.violations == []


def test_violation_carries_recent_events(host: Host) -> None:
    lock = host.lock_of(0)
    with host.on_cpu(0):
        spin_lock_irq(lock)
        spin_unlock_irq(lock)
        ASSERT(False, "planted_fn", "x")
    [v] = host.violations
    points = [(e[1], e[2], e[3]) for e in v.events]
    assert ("pcpu0", "lock", lock.name) in points
    assert ("pcpu0", "unlock", lock.name) in points
    assert [e[0] for e in v.events] == sorted(e[0] for e in v.events)


def test_every_kind_has_a_description() -> None:
    for kind in ViolationKind:
        assert kind.describe()
    assert ViolationKind("lock-clobbered") is ViolationKind.LOCK_CLOBBERED


def test_instruments_see_violations_and_a_broken_one_is_dropped(host: Host) -> None:
    seen: list[Violation] = []

    class Collect(Instrument):
        def on_violation(self, violation: Violation) -> None:
            seen.append(violation)

    class Broken(Instrument):
        def on_violation(self, violation: Violation) -> None:
            raise RuntimeError("broken instrument")

    host.bus.add_instrument(Broken())
    host.bus.add_instrument(Collect())
    with host.on_cpu(0):
        ASSERT(False, "planted_fn", "x")
        ASSERT(False, "planted_fn", "y")
    # The broken one is dropped at its first error, which is a crash violation of its
    # own (after every instrument saw the violation it failed on).
    crash = "instrument Broken raised RuntimeError: broken instrument"
    assert [v.message.split(" (")[0] for v in seen] == [
        "ASSERT(x) failed",
        crash,
        "ASSERT(y) failed",
    ]
    assert len(host.bus.instrument_errors) == 1
    assert isinstance(host.bus.instrument_errors[0], RuntimeError)
    assert [v.kind for v in host.violations] == [
        ViolationKind.ASSERT,
        ViolationKind.CRASH,
        ViolationKind.ASSERT,
    ]
    assert host.violations[1].where == "Broken.on_violation"


def test_an_instrument_that_raises_on_a_point_is_a_crash_violation(host: Host) -> None:
    # Before, a crashed lockdep or race detector was only kept in instrument_errors,
    # which nothing reads: the run it stopped checking came out clean.
    class Lockdep(Instrument):
        calls = 0

        def on_point(self, ctx: object, access: object) -> None:
            Lockdep.calls += 1
            raise KeyError("class of lock")

    host.bus.add_instrument(Lockdep())
    lock = host.lock_of(0)
    with host.on_cpu(0):
        spin_lock_irq(lock)
        spin_unlock_irq(lock)  # the emulation goes on
    assert Lockdep.calls == 1  # removed at its first error
    [v] = host.violations
    assert v.kind is ViolationKind.CRASH
    assert v.where == "Lockdep.on_point"
    assert "instrument Lockdep raised KeyError: 'class of lock'" in v.message
    assert v.cpu == 0
    assert [type(e) for e in host.bus.instrument_errors] == [KeyError]


def test_violation_outside_any_context(host: Host) -> None:
    v = host.bus.violation(ViolationKind.CRASH, "nowhere", "boom")
    assert v.context == "-"
    assert v.cpu is None
    with bind(host.toolstack_context("xl-test")):
        w = host.bus.violation(ViolationKind.CRASH, "somewhere", "boom")
    assert w.context == "xl-test"
    assert w.cpu is None
