"""schedule_cpu_switch(): legacy (94734ab7c3^) versus fixed, driven from one thread.

A pCPU moves Pool-0 -> free -> pool ``p`` -> free -> Pool-0 on a 4-pCPU host. An
instrument watches every interaction point of the toolstack thread doing the move
and notes each moment when the *window* of the patch's problem 1 is open: the lock
``schedule_lock[x]`` points to is free (anyone may take it) but it is not the lock
that ``scheduler[x]`` uses for ``x``.
"""

from __future__ import annotations

import itertools
import threading

import pytest

from xensched import Host, SwitchProtocol
from xensched.checks import ViolationKind
from xensched.interaction import Access, Instrument, PointKind
from xensched.sched_if import pcpu_schedule_lock_irq, pcpu_schedule_unlock_irq
from xensched.smp import ExecContext, bind

ALL = ["credit", "credit2", "rtds", "arinc653"]
REMAPPING = {"credit2", "rtds"}  # schedulers whose lock is not the default _lock
FREE_PDATA = {"credit2": "csched2_free_pdata", "rtds": "rt_free_pdata"}
X = 3
PAIRS = list(itertools.product(ALL, ALL))


class WindowWatch(Instrument):
    """Records, at each point of ``ctx``, whether pCPU ``cpu``'s window is open."""

    def __init__(self, h: Host, cpu: int, ctx: ExecContext) -> None:
        self.h = h
        self.cpu = cpu
        self.ctx = ctx
        self.open_at: list[str] = []
        self.points: list[tuple[PointKind, str]] = []
        self._meta = threading.Lock()

    def on_point(self, ctx: ExecContext, access: Access) -> None:
        kind, label = access.kind, access.label
        if ctx is not self.ctx:
            return
        mapped = self.h.lock_of(self.cpu)
        wanted = self.h.scheduler_of(self.cpu).lock_for(self.cpu)
        with self._meta:
            self.points.append((kind, label))
            if mapped.owner is None and mapped is not wanted:
                self.open_at.append(f"{kind.value} {label}")


def _host(boot: str, pool: str, protocol: SwitchProtocol) -> tuple[Host, WindowWatch]:
    h = Host(4, sched=boot, protocol=protocol, dom0_vcpus=1)
    h.cpupool_create("p", sched=pool)
    watch = WindowWatch(h, X, h.toolstack_context("mover"))
    h.bus.add_instrument(watch)
    return h, watch


def _move(watch: WindowWatch, op: str, pool: str) -> None:
    """``xl cpupool-cpu-add/remove POOL 3`` from the watched toolstack context."""
    with bind(watch.ctx):
        if op == "add":
            watch.h.cpupool_cpu_add(pool, X)
        else:
            watch.h.cpupool_cpu_remove(pool, X)


# -- fixed: the patch -------------------------------------------------------------------


@pytest.mark.parametrize(("boot", "pool"), PAIRS)
def test_fixed_switch_has_no_window_and_keeps_the_mapping(boot: str, pool: str) -> None:
    h, watch = _host(boot, pool, SwitchProtocol.FIXED)
    p = h.pool("p")
    for op, target, sched in [
        ("remove", "Pool-0", h.ops),
        ("add", "p", p.sched),
        ("remove", "p", h.ops),
        ("add", "Pool-0", h.ops),
    ]:
        _move(watch, op, target)
        assert h.scheduler_of(X) is sched
        assert h.lock_of(X) is sched.lock_for(X)
        assert not h.lock_of(X).locked()
    assert watch.open_at == []
    assert h.violations == []
    assert h.audit() == []


@pytest.mark.parametrize(("boot", "pool"), PAIRS)
def test_fixed_switch_publishes_the_lock_pointer_last(boot: str, pool: str) -> None:
    """switch_sched: scheduler first, then (barrier), then the lock pointer."""
    _, watch = _host(boot, pool, SwitchProtocol.FIXED)
    _move(watch, "remove", "Pool-0")
    watch.points.clear()
    _move(watch, "add", "p")
    stores = [
        i
        for i, (kind, label) in enumerate(watch.points)
        if kind is PointKind.STORE
        and label in {f"per_cpu(scheduler, {X})", f"schedule_data[{X}].schedule_lock"}
    ]
    labels = [watch.points[i][1] for i in stores]
    assert labels == [f"per_cpu(scheduler, {X})", f"schedule_data[{X}].schedule_lock"]
    between = watch.points[stores[0] : stores[1]]
    # ARINC653's hook has no barrier in this version (the reference says so).
    assert ((PointKind.MB, f"fence@{watch.ctx.name}") in between) is (
        pool != "arinc653"
    )
    # The old lock is released only after the pointer store.
    unlocks = [
        i for i, (kind, _) in enumerate(watch.points) if kind is PointKind.UNLOCK
    ]
    assert any(i > stores[1] for i in unlocks)


def test_fixed_switch_takes_the_old_lock_with_irqs_off() -> None:
    """8b27d2b8af: the scheduler lock is IRQ-safe, so the switch must use _irq."""
    h, watch = _host("credit", "credit2", SwitchProtocol.FIXED)
    old = h.lock_of(X)
    with h.on_cpu(X):
        lock = pcpu_schedule_lock_irq(h, X)  # latches the old lock IRQ-safe
        pcpu_schedule_unlock_irq(h, lock, X)
    _move(watch, "remove", "Pool-0")
    _move(watch, "add", "p")
    assert old.stats().irq_safe is True
    assert not any(v.where == "check_lock" for v in h.violations)
    assert h.violations == []


# -- legacy: before the patch -----------------------------------------------------------


@pytest.mark.parametrize(("boot", "pool"), PAIRS)
def test_legacy_window_exactly_when_lock_mappings_differ(boot: str, pool: str) -> None:
    """Problem 1: legacy opens the window on an add and on a remove iff one side
    remaps the lock (Credit2 or RTDS); Credit/ARINC653 share the default lock."""
    _, watch = _host(boot, pool, SwitchProtocol.LEGACY)
    # Pool-0 -> free is the same instance (&ops): no switch, no window.
    _move(watch, "remove", "Pool-0")
    assert watch.open_at == []
    _move(watch, "add", "p")
    add_window = list(watch.open_at)
    watch.open_at.clear()
    _move(watch, "remove", "p")
    remove_window = list(watch.open_at)
    remaps = bool({boot, pool} & REMAPPING)
    assert bool(add_window) is remaps, add_window
    assert bool(remove_window) is remaps, remove_window


@pytest.mark.parametrize(("boot", "pool"), PAIRS)
def test_legacy_free_pdata_assert_and_clobber(boot: str, pool: str) -> None:
    """Problems 2 and 3: only between two lock-remapping schedulers (two instances)."""
    h, watch = _host(boot, pool, SwitchProtocol.LEGACY)
    _move(watch, "remove", "Pool-0")
    assert h.violations == []
    _move(watch, "add", "p")
    both = boot in REMAPPING and pool in REMAPPING
    kinds = {v.kind for v in h.violations}
    if not both:
        assert kinds == set()
        assert h.lock_of(X) is h.scheduler_of(X).lock_for(X)
        return
    asserts = [v for v in h.violations if v.kind is ViolationKind.ASSERT]
    assert asserts, h.violations
    # The old scheduler (boot's, running the free pCPU) trips its own ASSERT...
    assert asserts[0].where == FREE_PDATA[boot]
    assert "schedule_lock" in asserts[0].message
    # ... then resets the pointer to _lock over the new scheduler's remap.
    assert kinds == {ViolationKind.ASSERT, ViolationKind.LOCK_CLOBBERED}
    [clobbered] = [v for v in h.violations if v.kind is ViolationKind.LOCK_CLOBBERED]
    assert clobbered.cpu == X
    assert clobbered.where == "schedule_cpu_switch"
    assert h.scheduler_of(X) is h.pool("p").sched
    assert h.lock_of(X) is h.percpu[X].schedule_data._lock
    # The damage stays: an audit still finds it.
    [audited] = h.audit()
    assert audited.kind is ViolationKind.LOCK_CLOBBERED
    assert audited.where == "audit"
    assert audited.cpu == X


def test_legacy_rtds_to_credit2_is_the_patch_example() -> None:
    """The commit message's third trace: RTDS -> Credit2, ASSERT [3], clobber [4]."""
    h, watch = _host("rtds", "credit2", SwitchProtocol.LEGACY)
    _move(watch, "remove", "Pool-0")
    _move(watch, "add", "p")
    [a, c] = h.violations
    assert (a.kind, a.where) == (ViolationKind.ASSERT, "rt_free_pdata")
    assert a.message == "ASSERT(sd->schedule_lock == &prv->lock) failed"
    assert (c.kind, c.where) == (ViolationKind.LOCK_CLOBBERED, "schedule_cpu_switch")
    assert "credit2@p.rqd[0].lock" in c.message
    assert "schedule_data[3]._lock" in c.message
    # What a pCPU scheduling on x now runs: Credit2 code under the wrong lock.
    h.bus.clear_violations()
    h.schedule(X)
    [m] = h.violations
    assert (m.kind, m.where, m.cpu) == (ViolationKind.LOCK_MISMATCH, "schedule", X)


def test_switch_to_same_scheduler_instance_is_a_no_op() -> None:
    h, watch = _host("credit2", "credit2", SwitchProtocol.LEGACY)
    before = (h.scheduler_of(X), h.lock_of(X))
    _move(watch, "remove", "Pool-0")  # Pool-0 -> free: both &ops
    assert (h.scheduler_of(X), h.lock_of(X)) == before
    assert not any(
        kind is PointKind.STORE and label == f"schedule_data[{X}].schedule_lock"
        for kind, label in watch.points
    )
    assert h.violations == []


def test_switch_protocol_describe() -> None:
    assert SwitchProtocol.parse("legacy") is SwitchProtocol.LEGACY
    assert "94734ab7c3^" in SwitchProtocol.LEGACY.describe()
    assert "switch_sched" in SwitchProtocol.FIXED.describe()
    assert Host(2).protocol is SwitchProtocol.FIXED
