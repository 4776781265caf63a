"""The interaction layer: access records, notes, the memory-model seam, next accesses.

What the tools of later issues stand on: every shared access reaches drivers,
instruments and the memory model as an ``Access`` (kind, object, value) made before the
access; lock acquisition, trylock results and section exits are notes after the fact;
a strategy can see what each waiting thread will do next.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from xensched import Host, Vcpu
from xensched.checks import CriticalSection
from xensched.drivers.controlled import ControlledDriver, next_after
from xensched.errors import DeadlockError
from xensched.interaction import WRITES, Access, Bus, Instrument, PointKind
from xensched.memory import Cell
from xensched.schedule import schedule, vcpu_block, vcpu_sleep_sync, vcpu_unblock
from xensched.smp import ExecContext, bind
from xensched.spinlock import SpinLock, spin_lock, spin_trylock, spin_unlock
from xensched.violation import ViolationKind

from ._threads import Threads, wait


class Recorder(Instrument):
    def __init__(self) -> None:
        self.seen: list[tuple[str, Access]] = []
        self._meta = threading.Lock()

    def on_point(self, ctx: ExecContext, access: Access) -> None:
        with self._meta:
            self.seen.append((ctx.name, access))

    def kinds(self, label: str) -> list[str]:
        with self._meta:
            return [a.kind.value for _, a in self.seen if a.label == label]


def _guest_host() -> tuple[Host, Vcpu]:
    h = Host(2, sched="credit2", dom0_vcpus=0)
    d = h.create_domain("d1", vcpus=1)
    return h, d.vcpus[0]


def test_a_store_point_comes_before_the_store_and_carries_the_value() -> None:
    """context_saved() clears is_running: the point sees the old value still there."""
    h, v = _guest_host()
    cpu = v.processor.peek()
    assert h.schedule(cpu) is v
    seen: list[tuple[bool, object]] = []
    is_running: Cell[bool] = v.is_running

    class AtStore(Instrument):
        def on_point(self, ctx: ExecContext, access: Access) -> None:
            if access.obj is is_running and access.kind is PointKind.STORE:
                seen.append((is_running.peek(), access.value))

    h.bus.add_instrument(AtStore())
    h.sleep(v)
    h.schedule(cpu)  # deschedules v: context_saved()
    assert seen == [(True, False)]


def test_every_access_names_a_shared_object_with_a_stable_identity() -> None:
    def labels_to_oids() -> dict[str, int]:
        h, _ = _guest_host()
        rec = Recorder()
        h.bus.add_instrument(rec)
        for cpu in range(2):
            h.schedule(cpu)
        return {a.label: a.obj.oid for _, a in rec.seen}

    first, second = labels_to_oids(), labels_to_oids()
    assert first == second  # same construction order, same identities
    assert len(set(first.values())) == len(first)  # one object per label
    assert {"credit2@Pool-0.rqd[0].runq", "d1v0->is_running"} <= set(first)


def test_lock_attempt_acquired_and_release_are_distinct_events() -> None:
    h = Host(2, dom0_vcpus=0)
    lock = SpinLock(h.bus, "test.lock")
    rec = Recorder()
    h.bus.add_instrument(rec)
    holding, spinning, release = threading.Event(), threading.Event(), threading.Event()

    class SeeSpin(Instrument):
        def on_point(self, ctx: ExecContext, access: Access) -> None:
            if ctx.name == "pcpu1" and access.obj is lock:
                spinning.set()

    h.bus.add_instrument(SeeSpin())

    def holder() -> None:
        spin_lock(lock)
        holding.set()
        wait(release, "the release")
        spin_unlock(lock)

    def waiter() -> None:
        wait(holding, "the holder")
        spin_lock(lock)
        spin_unlock(lock)

    with Threads(release) as threads:
        threads.start(h.cpu_contexts[0], holder)
        threads.start(h.cpu_contexts[1], waiter)
        wait(spinning, "pcpu1 to attempt the lock")
        # pcpu1 has attempted but not acquired: the trace says it is waiting.
        last = h.cpu_contexts[1].last_event()
        assert last is not None
        assert last[2:4] == ("lock", "test.lock")
        release.set()
        threads.join()
    by_ctx = [(c, a.kind.value) for c, a in rec.seen if a.obj is lock]
    assert [k for c, k in by_ctx if c == "pcpu1"] == ["lock", "acquired", "unlock"]
    assert [k for c, k in by_ctx if c == "pcpu0"] == ["lock", "acquired", "unlock"]


def test_trylock_results_and_section_exit_are_notes() -> None:
    h = Host(2, dom0_vcpus=0)
    lock = SpinLock(h.bus, "test.lock")
    cs = CriticalSection(h.bus, "test.section")
    rec = Recorder()
    h.bus.add_instrument(rec)
    h.cpu_contexts[0].events.clear()  # the boot ran on pcpu0
    with bind(h.cpu_contexts[0]):
        assert spin_trylock(lock)
        with cs.section("here"):
            pass
    with bind(h.cpu_contexts[1]):
        assert not spin_trylock(lock)
    with bind(h.cpu_contexts[0]):
        spin_unlock(lock)
    assert rec.kinds("test.lock") == [
        "trylock",
        "trylock-ok",
        "trylock",
        "trylock-failed",
        "unlock",
    ]
    assert rec.kinds("test.section") == ["enter", "exit"]
    # The trace names the Xen function of each event (trace_all is on by default).
    events = h.cpu_contexts[0].recent_events()
    assert [e[2] for e in events] == [
        "trylock",
        "trylock-ok",
        "enter",
        "exit",
        "unlock",
    ]
    assert {e[4] for e in events} == {"test_trylock_results_and_section_exit_are_notes"}


def test_without_trace_all_loads_stay_out_of_the_trace_but_reach_instruments() -> None:
    h = Host(2, sched="credit2", dom0_vcpus=0, trace_all=False)
    rec = Recorder()
    h.bus.add_instrument(rec)
    h.cpu_contexts[0].events.clear()  # the boot ran on pcpu0
    h.schedule(0)
    events = h.cpu_contexts[0].recent_events()
    assert events
    assert "load" not in {e[2] for e in events}
    assert any(a.kind is PointKind.LOAD for _, a in rec.seen)
    # Lock attempts are still named after the Xen function that made them.
    assert {e[4] for e in events if e[2] == "lock"} == {"schedule"}


def test_access_dependence() -> None:
    h = Host(1, dom0_vcpus=0)
    a = Cell(h.bus, "a", 0)
    b = Cell(h.bus, "b", 0)
    load_a, store_a = Access(PointKind.LOAD, a), Access(PointKind.STORE, a, 1)
    assert not load_a.conflicts(Access(PointKind.LOAD, a))
    assert load_a.conflicts(store_a)
    assert store_a.conflicts(load_a)
    assert not store_a.conflicts(Access(PointKind.STORE, b, 1))
    assert PointKind.LOCK in WRITES
    assert PointKind.LOAD not in WRITES


# -- the memory-model seam -----------------------------------------------------------------


class RecordingSC:
    """Sequential consistency, recording what the seam tells it (and on which CPU)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str | None, str, str]] = []
        self._meta = threading.Lock()

    def _log(self, ctx: ExecContext | None, what: str, label: str) -> None:
        with self._meta:
            self.calls.append((ctx.name if ctx is not None else None, what, label))

    def load(self, ctx: ExecContext | None, cell: Cell[Any]) -> Any:
        self._log(ctx, "load", cell.label)
        return cell.value

    def store(self, ctx: ExecContext | None, cell: Cell[Any], value: Any) -> None:
        self._log(ctx, "store", cell.label)
        cell.value = value

    def exchange(
        self, ctx: ExecContext | None, cell: Cell[Any], fn: Callable[[Any], Any]
    ) -> Any:
        self._log(ctx, "exchange", cell.label)
        old = cell.value
        cell.value = fn(old)
        return old

    def load_acquire(self, ctx: ExecContext | None, cell: Cell[Any]) -> Any:
        self._log(ctx, "load-acquire", cell.label)
        return cell.value

    def store_release(
        self, ctx: ExecContext | None, cell: Cell[Any], value: Any
    ) -> None:
        self._log(ctx, "store-release", cell.label)
        cell.value = value

    def peek(self, ctx: ExecContext | None, cell: Cell[Any]) -> Any:
        return cell.value

    def barrier(self, ctx: ExecContext | None, kind: PointKind) -> None:
        self._log(ctx, kind.value, "-")

    def acquire(self, ctx: ExecContext | None, lock: SpinLock) -> None:
        self._log(ctx, "acquire", lock.name)

    def release(self, ctx: ExecContext | None, lock: SpinLock) -> None:
        self._log(ctx, "release", lock.name)


def _switch_and_schedule(h: Host) -> list[str]:
    h.cpupool_cpu_remove("Pool-0", 3)
    h.cpupool_create("p", sched="credit2")
    h.cpupool_cpu_add("p", 3)
    h.create_domain("d1", "p", vcpus=2)
    return [h.schedule(cpu).name for cpu in (3, 3, 0, 3)]


def test_the_memory_model_sees_loads_stores_barriers_and_locks_with_the_cpu() -> None:
    plain = Host(4, sched="credit", dom0_vcpus=1)
    ran_plain = _switch_and_schedule(plain)
    h = Host(4, sched="credit", dom0_vcpus=1)
    mem = RecordingSC()
    h.bus.memory = mem
    ran = _switch_and_schedule(h)
    # An SC model through the seam changes nothing.
    assert ran == ran_plain
    assert h.violations == plain.violations == []
    whats = {w for _, w, _ in mem.calls}
    assert whats >= {"load", "store", "exchange", "smp_mb", "acquire", "release"}
    # Each call knows its CPU: the switch ran on the toolstack, schedule() on pcpu3.
    assert ("xl", "smp_mb", "-") in mem.calls
    assert ("pcpu3", "acquire", "credit2@p.rqd[0].lock") in mem.calls
    assert ("pcpu3", "load", "schedule_data[3].schedule_lock") in mem.calls


# -- what a strategy sees ------------------------------------------------------------------


class Watching:
    """Round-robin that checks, at every pick, what each waiting thread will do."""

    def __init__(self) -> None:
        self.checked = 0
        self.locks_seen = 0

    def pick(
        self,
        ready: Sequence[ExecContext],
        last: ExecContext | None,
        driver: ControlledDriver,
    ) -> ExecContext:
        for ctx in ready:
            nxt = driver.next_access(ctx)
            if nxt is None:
                continue
            # It is the access the thread stopped in front of: its last step.
            mine = [s for s in driver.steps if s[0] == ctx.name]
            assert mine[-1] == (ctx.name, nxt.kind.value, nxt.label)
            self.checked += 1
            self.locks_seen += nxt.kind is PointKind.LOCK
        return next_after(ready, last, driver)


def test_a_strategy_sees_the_next_access_of_every_waiting_thread() -> None:
    h, v = _guest_host()
    strategy = Watching()
    drv = ControlledDriver(h.bus, strategy)

    def on_0() -> None:
        schedule(h)
        schedule(h)

    def on_1() -> None:
        schedule(h)
        vcpu_unblock(h, v)

    drv.spawn(h.cpu_contexts[0], on_0)
    drv.spawn(h.cpu_contexts[1], on_1)
    assert drv.run() == []
    assert strategy.checked > 20
    assert strategy.locks_seen > 0


# -- bounded waits are the driver's --------------------------------------------------------


def test_a_free_running_wait_is_bounded_and_reported() -> None:
    h, v = _guest_host()
    h.bus.lock_timeout = 0.2
    cpu = v.processor.peek()
    assert h.schedule(cpu) is v
    with bind(h.toolstack_context("xl")), pytest.raises(DeadlockError, match="d1v0"):
        vcpu_sleep_sync(h, v)  # nobody runs schedule() on its pCPU
    [viol] = h.violations
    assert viol.kind is ViolationKind.DEADLOCK
    assert viol.where == "wait_until"


def test_a_controlled_wait_parks_until_another_cpu_makes_it_true() -> None:
    h, v = _guest_host()
    cpu = v.processor.peek()
    assert h.schedule(cpu) is v
    xl = h.toolstack_context("xl")

    class TheToolstackFirst:
        """So that it reaches its wait before the pCPU deschedules the vCPU."""

        def pick(
            self,
            ready: Sequence[ExecContext],
            last: ExecContext | None,
            driver: ControlledDriver,
        ) -> ExecContext:
            return xl if xl in ready else ready[0]

    drv = ControlledDriver(h.bus, TheToolstackFirst())

    def pause() -> None:  # as domain_pause() does, for one vCPU
        vcpu_block(h, v)
        vcpu_sleep_sync(h, v)

    drv.spawn(xl, pause)

    cpu_ctx = h.cpu_contexts[cpu]
    softirq = h.percpu[cpu].softirq

    def pcpu() -> None:
        # Idle as a pCPU does: reschedule when SCHEDULE_SOFTIRQ is raised.
        for _ in range(5):
            drv.wait_for(cpu_ctx, lambda: softirq.peek() or drv.done(xl))
            if not softirq.peek():
                return
            schedule(h)

    drv.spawn(cpu_ctx, pcpu)
    assert drv.run() == []
    assert not v.is_running.peek()
    assert (xl.name, "wait") in [(s[0], s[1]) for s in drv.steps]
    assert h.violations == []


def unobserved(h: Host) -> bool:
    return h.bus._unobserved_loads


def test_an_unobserved_load_is_a_plain_read_and_any_observer_restores_its_point() -> (
    None
):
    """trace_all=False with no driver, memory model or instrument: nothing would see
    a load, so it skips its point; each kind of observer brings the points back."""
    h = Host(2, sched="credit2", dom0_vcpus=0, trace_all=False)
    cell = h.percpu[1].schedule_data.schedule_lock
    assert unobserved(h)

    def loads_seen() -> int:
        rec = Recorder()
        h.bus.add_instrument(rec)
        with bind(h.cpu_contexts[0]):
            cell.load()
        h.bus.remove_instrument(rec)
        return sum(a.kind is PointKind.LOAD for _, a in rec.seen)

    assert loads_seen() == 1  # the instrument itself is an observer
    assert unobserved(h)
    for observer in ("driver", "memory", "trace_all"):
        value: Any = {"driver": RoundRobinDriverStub(), "memory": RecordingSC()}.get(
            observer, True
        )
        setattr(h.bus, observer, value)
        assert not unobserved(h), observer
        setattr(h.bus, observer, False if observer == "trace_all" else None)
        assert unobserved(h), observer


class RoundRobinDriverStub:
    def point(self, ctx: ExecContext, access: Access) -> None:
        """Lets every thread through."""


def test_every_retune_runs_under_the_bus_meta_lock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # add_instrument retunes under _meta; the driver, memory and trace_all setters
    # did not, and a setter racing with it could leave _unobserved_loads stale.
    bus = Bus()
    held: list[bool] = []
    retune = bus._retune

    def spy() -> None:
        held.append(bus._meta.locked())
        retune()

    monkeypatch.setattr(bus, "_retune", spy)
    bus.trace_all = False
    bus.memory = None
    bus.driver = None
    bus.add_instrument(Instrument())
    assert held == [True, True, True, True]
