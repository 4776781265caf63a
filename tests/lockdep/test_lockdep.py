"""Lockdep: a lock-order cycle is reported on the first run that takes both orders."""

from __future__ import annotations

from xensched.explore.dpor import DPOR
from xensched.explore.engine import Explorer
from xensched.explore.threads import ThreadsTarget, World
from xensched.interaction import Bus
from xensched.lockdep import Lockdep, instance_of, lock_class
from xensched.smp import bind
from xensched.spinlock import SpinLock, spin_lock, spin_trylock, spin_unlock


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
