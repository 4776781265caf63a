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
from xensched.schedulers import Scheduler
from xensched.smp import ExecContext, bind
from xensched.spinlock import local_irq_enable, spin_unlock

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
        # Each ACQUIRED note: its index in ``points``, the lock, IRQs enabled then.
        self.acquired: list[tuple[int, str, bool]] = []
        self._meta = threading.Lock()

    def on_point(self, ctx: ExecContext, access: Access) -> None:
        kind, label = access.kind, access.label
        if ctx is not self.ctx:
            return
        mapped = self.h.lock_of(self.cpu)
        wanted = self.h.scheduler_of(self.cpu).lock_for(self.cpu)
        with self._meta:
            if kind is PointKind.ACQUIRED:
                self.acquired.append((len(self.points), label, ctx.irq_enabled))
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


SCHED_STORE = (PointKind.STORE, f"per_cpu(scheduler, {X})")
POINTER_STORE = (PointKind.STORE, f"schedule_data[{X}].schedule_lock")


def _add_watched(
    boot: str, pool: str, protocol: SwitchProtocol
) -> tuple[Host, WindowWatch, str]:
    """X leaves Pool-0 (unwatched), then joins pool ``p``, watched; and the label of
    the lock X's pointer designated before it joined (the old scheduler's)."""
    h, watch = _host(boot, pool, protocol)
    with h.on_cpu(X):
        # Latch X's lock IRQ-safe, as schedule() on a running host would.
        lock = pcpu_schedule_lock_irq(h, X)
        pcpu_schedule_unlock_irq(h, lock, X)
    _move(watch, "remove", "Pool-0")
    old = h.lock_of(X).label
    watch.points.clear()
    watch.acquired.clear()
    _move(watch, "add", "p")
    return h, watch, old


def _held_from(watch: WindowWatch, label: str, until: int) -> int | None:
    """Where the mover took ``label`` and still held it at point ``until``, if so."""
    held: int | None = None
    for i, (kind, lbl) in enumerate(watch.points[:until]):
        if lbl == label and kind is PointKind.ACQUIRED:
            held = i
        elif lbl == label and kind is PointKind.UNLOCK:
            held = None
    return held


def check_publishes_pointer_last(
    boot: str, pool: str, protocol: SwitchProtocol
) -> None:
    """switch_sched stores the scheduler, then (barrier) the lock pointer, all under
    the old lock, released only after the pointer store: a pCPU spinning on the old
    lock finds the new pointer, and the new scheduler behind it, once it gets in."""
    _, watch, old = _add_watched(boot, pool, protocol)
    pts = watch.points
    stores = [i for i, p in enumerate(pts) if p in (SCHED_STORE, POINTER_STORE)]
    assert [pts[i] for i in stores] == [SCHED_STORE, POINTER_STORE], (
        "the lock pointer is not stored once, after the scheduler"
    )
    sched_at, pointer_at = stores
    # ARINC653's hook has no barrier in this version (the reference says so).
    assert ((PointKind.MB, f"fence@{watch.ctx.name}") in pts[sched_at:pointer_at]) is (
        pool != "arinc653"
    )
    # One hold of the old lock spans both stores: taken before the scheduler store,
    # released after the pointer store (any other unlock proves nothing).
    taken_at = _held_from(watch, old, pointer_at)
    assert taken_at is not None, f"the old lock {old} is not held at the pointer store"
    assert taken_at < sched_at, f"the old lock {old} is retaken between the stores"
    assert (PointKind.UNLOCK, old) in pts[pointer_at:], (
        f"the move leaves the old lock {old} held"
    )


def check_takes_old_lock_with_irqs_off(
    boot: str, pool: str, protocol: SwitchProtocol
) -> None:
    """8b27d2b8af: the scheduler lock is IRQ-safe, so the switch takes it with _irq:
    the old lock is held, taken with IRQs off, when the scheduler is swapped."""
    h, watch, old = _add_watched(boot, pool, protocol)
    sched_at = watch.points.index(SCHED_STORE)
    taken_at = _held_from(watch, old, sched_at)
    assert taken_at is not None, (
        f"the move does not hold the old lock {old} when it swaps the scheduler"
    )
    [irq_enabled] = [on for i, _, on in watch.acquired if i == taken_at]
    assert not irq_enabled, f"the move took the old lock {old} with IRQs on"
    assert not any(v.where == "check_lock" for v in h.violations)
    assert h.violations == []


@pytest.mark.parametrize(("boot", "pool"), PAIRS)
def test_fixed_switch_publishes_the_lock_pointer_last(boot: str, pool: str) -> None:
    check_publishes_pointer_last(boot, pool, SwitchProtocol.FIXED)


@pytest.mark.parametrize(("boot", "pool"), PAIRS)
def test_fixed_switch_takes_the_old_lock_with_irqs_off(boot: str, pool: str) -> None:
    check_takes_old_lock_with_irqs_off(boot, pool, SwitchProtocol.FIXED)


def _switch_unlocking_early(
    h: Host, cpu: int, old_ops: Scheduler, new_ops: Scheduler
) -> None:
    # The fixed switch, but the old lock dropped before switch_sched publishes the
    # new pointer: a pCPU that was spinning on it gets in while X still points at it.
    pc = h.percpu[cpu]
    idle = pc.idle
    ppriv = new_ops.alloc_pdata(cpu)
    vpriv = new_ops.alloc_vdata(idle, idle.domain.sched_priv.load())
    old_ops.tick_suspend(cpu)
    old_lock = pcpu_schedule_lock_irq(h, cpu)
    vpriv_old = idle.sched_priv.load()
    ppriv_old = pc.schedule_data.sched_priv.load()
    spin_unlock(old_lock)  # the bug: IRQs stay off, the lock goes
    new_ops.switch_sched(cpu, ppriv, vpriv)
    local_irq_enable()
    new_ops.tick_resume(cpu)
    old_ops.deinit_pdata(ppriv_old, cpu)
    old_ops.free_vdata(vpriv_old)
    old_ops.free_pdata(ppriv_old, cpu)


UNLOCKS_EARLY = SwitchProtocol("unlocks-early", frozenset(), _switch_unlocking_early)
PLANTED = {
    "pointer-first": (
        SwitchProtocol.parse("fixed-without:pointer-last"),
        "not stored once, after the scheduler",
    ),
    "unlocks-early": (UNLOCKS_EARLY, "not held at the pointer store"),
    "no-old-lock": (
        SwitchProtocol.parse("fixed-without:old-lock"),
        "not held at the pointer store",
    ),
}


@pytest.mark.parametrize(("boot", "pool"), [("rtds", "credit2"), ("credit", "credit")])
@pytest.mark.parametrize("bug", PLANTED)
def test_pointer_last_check_fails_on_a_switch_that_publishes_early(
    bug: str, boot: str, pool: str
) -> None:
    protocol, message = PLANTED[bug]
    with pytest.raises(AssertionError, match=message):
        check_publishes_pointer_last(boot, pool, protocol)


@pytest.mark.parametrize(("boot", "pool"), [("credit", "credit2"), ("credit2", "rtds")])
@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("fixed-without:old-lock", "does not hold the old lock"),
        ("fixed-without:lock-irq", "with IRQs on"),
    ],
)
def test_old_lock_check_fails_on_a_switch_without_it(
    spec: str, message: str, boot: str, pool: str
) -> None:
    with pytest.raises(AssertionError, match=message):
        check_takes_old_lock_with_irqs_off(boot, pool, SwitchProtocol.parse(spec))


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
