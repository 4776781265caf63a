"""Lockdep: a lock-order cycle is reported on the first run that takes both orders."""

from __future__ import annotations

from xensched.explore.dpor import DPOR
from xensched.explore.engine import Explorer
from xensched.explore.threads import ThreadsTarget, World
from xensched.interaction import Bus
from xensched.lockdep import Lockdep, instance_of, lock_class
from xensched.smp import bind
from xensched.spinlock import (
    SpinLock,
    local_irq_disable,
    local_irq_enable,
    spin_lock,
    spin_lock_irq,
    spin_trylock,
    spin_unlock,
    spin_unlock_irq,
)


def test_lock_classes_drop_the_instance_and_the_indices() -> None:
    assert lock_class("credit2@p.rqd[0].lock") == "credit2.rqd[].lock"
    assert lock_class("schedule_data[3]._lock") == "schedule_data[]._lock"
    assert lock_class("cpupool_lock") == "cpupool_lock"
    assert instance_of("credit2@p.prv->lock") == "credit2@p"
    assert instance_of("schedule_data[3]._lock") is None


def _abba(trylock_second: bool = False) -> tuple[Bus, Lockdep]:
    bus = Bus()
    ld = Lockdep()
    bus.add_instrument(ld)
    a, b = SpinLock(bus, "x@p.a"), SpinLock(bus, "x@p.b")
    t0, t1 = bus.new_context("t0", 0), bus.new_context("t1", 1)
    # One thread, then the other: no deadlock can happen, the order is still wrong.
    with bind(t0):
        spin_lock(a)
        spin_lock(b)
        spin_unlock(b)
        spin_unlock(a)
    with bind(t1):
        spin_lock(b)
        if trylock_second:
            assert spin_trylock(a)
        else:
            spin_lock(a)
        spin_unlock(a)
        spin_unlock(b)
    return bus, ld


def test_a_planted_abba_is_reported_without_a_deadlock_naming_both_chains() -> None:
    bus, ld = _abba()
    kinds = [v.kind.value for v in bus.violations]
    assert kinds == ["lock-order"]
    msg = bus.violations[0].message
    assert "t0: x.a (taken in _abba()) then x.b" in msg
    assert "t1: x.b (taken in _abba()) then x.a" in msg
    assert ld.order() == [("x.a", "x.b"), ("x.b", "x.a")]


def test_a_trylock_makes_no_order_edge() -> None:
    bus, ld = _abba(trylock_second=True)
    assert bus.violations == []
    assert ld.order() == [("x.a", "x.b")]


def test_the_abba_is_found_under_the_controlled_driver_too() -> None:
    def setup(w: World) -> None:
        a, b = w.lock("y@q.a"), w.lock("y@q.b")

        def ab() -> None:
            spin_lock(a)
            spin_lock(b)
            spin_unlock(b)
            spin_unlock(a)

        def ba() -> None:
            spin_lock(b)
            spin_lock(a)
            spin_unlock(a)
            spin_unlock(b)

        w.bus.add_instrument(Lockdep())
        w.thread("t0", ab)
        w.thread("t1", ba)

    res = Explorer(ThreadsTarget(setup), DPOR(), runs=1).explore()
    # The first execution runs t0 to its end, then t1: no deadlock, one report.
    assert res.kinds == {"lock-order"}


# -- planted IRQ inversions -------------------------------------------------------------


def _lockdep_bus() -> tuple[Bus, Lockdep]:
    bus = Bus()
    ld = Lockdep()
    bus.add_instrument(ld)
    return bus, ld


def _irq_reports(bus: Bus) -> list[str]:
    return [v.message for v in bus.violations if v.kind.value == "irq-inversion"]


def test_a_class_taken_with_irqs_on_and_off_is_one_irq_inversion() -> None:
    bus, _ = _lockdep_bus()
    # Two locks of one class, each taken one way only: check_lock()'s per-lock latch
    # stays quiet, only lockdep's per-class rule sees the planted mix.
    locks = [SpinLock(bus, f"x@p.rq[{i}].lock") for i in range(3)]
    t0 = bus.new_context("t0", 0)
    with bind(t0):
        spin_lock(locks[0])
        spin_unlock(locks[0])
        spin_lock_irq(locks[1])
        spin_unlock_irq(locks[1])
        # The class is already known both ways: no second report.
        spin_lock_irq(locks[2])
        spin_unlock_irq(locks[2])
    assert [v.kind.value for v in bus.violations] == ["irq-inversion"]
    msg = bus.violations[0].message
    assert msg.startswith(
        "x.rq[].lock is taken with IRQs enabled and with IRQs disabled"
    )
    assert "now by t0 in " in msg
    assert msg.endswith("with IRQs off)")


def _safe_then_unsafe(a: SpinLock, b: SpinLock, c: SpinLock | None = None) -> None:
    """With IRQs off take ``a`` (IRQ-safe), then turn IRQs on and take ``b``
    (IRQ-unsafe) under it; with ``c``, ``b`` is taken under ``c`` too."""
    spin_lock_irq(a)
    local_irq_enable()
    if c is not None:
        spin_lock(c)
    spin_lock(b)
    spin_unlock(b)
    if c is not None:
        spin_unlock(c)
    local_irq_disable()
    spin_unlock_irq(a)


def test_an_irq_safe_class_held_while_an_irq_unsafe_one_is_taken() -> None:
    bus, ld = _lockdep_bus()
    a, b = SpinLock(bus, "x@p.a"), SpinLock(bus, "x@p.b")
    with bind(bus.new_context("t0", 0)):
        _safe_then_unsafe(a, b)
    assert [v.kind.value for v in bus.violations] == ["irq-inversion"]
    msg = bus.violations[0].message
    assert msg.startswith("IRQ-safe x.a held while IRQ-unsafe x.b is taken: ")
    assert "t0: x.a (taken in _safe_then_unsafe()) then x.b" in msg
    # The order itself is fine: the edge is made, no cycle.
    assert ld.order() == [("x.a", "x.b")]


def test_a_second_irq_safe_over_unsafe_occurrence_is_not_reported_again() -> None:
    bus, ld = _lockdep_bus()
    a, b, c = SpinLock(bus, "x@p.a"), SpinLock(bus, "x@p.b"), SpinLock(bus, "x@p.c")
    with bind(bus.new_context("t0", 0)):
        _safe_then_unsafe(a, c)
        _safe_then_unsafe(a, b)
    first = _irq_reports(bus)
    assert len(first) == 2  # x.a over x.c, x.a over x.b
    # Again, from another CPU, with x.c held between: the edge x.c -> x.b is new, so
    # the check runs in full (not its fast path) and sees x.a held over x.b again.
    with bind(bus.new_context("t1", 1)):
        _safe_then_unsafe(a, b, c)
    assert _irq_reports(bus) == first
    assert ld.order() == [("x.a", "x.b"), ("x.a", "x.c"), ("x.c", "x.b")]


# -- a cycle longer than two ------------------------------------------------------------


def test_a_three_lock_cycle_is_one_lock_order_report_naming_the_chain() -> None:
    bus, ld = _lockdep_bus()
    a, b, c = SpinLock(bus, "x@p.a"), SpinLock(bus, "x@p.b"), SpinLock(bus, "x@p.c")
    # Three CPUs in turn, each taking one pair in order: no two of them ever hold the
    # same pair reversed, so only a path through the graph closes the cycle.
    for cpu, (first, second) in enumerate(((a, b), (b, c), (c, a))):
        with bind(bus.new_context(f"t{cpu}", cpu)):
            spin_lock(first)
            spin_lock(second)
            spin_unlock(second)
            spin_unlock(first)
    assert [v.kind.value for v in bus.violations] == ["lock-order"]
    msg = bus.violations[0].message
    here = "test_a_three_lock_cycle_is_one_lock_order_report_naming_the_chain"
    assert msg == (
        f"x.c -> x.a closes a cycle. New: t2: x.c (taken in {here}()) then x.a "
        f"(in {here}()). Already seen: t0: x.a (taken in {here}()) then x.b "
        f"(in {here}()); t1: x.b (taken in {here}()) then x.c (in {here}())"
    )
    assert ld.order() == [("x.a", "x.b"), ("x.b", "x.c"), ("x.c", "x.a")]
