"""Retry-on-change acquisition of a pCPU's scheduler lock (sched-if.h's macros)."""

from __future__ import annotations

import functools
import threading

import pytest

from tests.unit._threads import SpinWatch, Threads, wait
from xensched import DeadlockError, Host, SpinLock, XenschedError, sched_if as si
from xensched.checks import ViolationKind
from xensched.interaction import Access, Instrument, PointKind
from xensched.smp import ExecContext, bind
from xensched.spinlock import (
    local_irq_disable,
    local_irq_is_enabled,
    spin_unlock,
    spin_unlock_irq,
)


@pytest.fixture
def host() -> Host:
    return Host(4, sched="credit", dom0_vcpus=1)


# -- pcpu_schedule_lock ----------------------------------------------------------------


@pytest.mark.parametrize("sched", ["credit", "credit2", "rtds", "arinc653"])
def test_pcpu_schedule_lock_returns_the_mapped_lock(sched: str) -> None:
    h = Host(4, sched=sched, dom0_vcpus=0)
    with bind(h.cpu_contexts[0]):
        for cpu in range(4):
            lock = si.pcpu_schedule_lock(h, cpu)
            assert lock is h.lock_of(cpu)
            assert lock is h.scheduler_of(cpu).lock_for(cpu)
            assert lock.owner == "pcpu0"
            si.pcpu_schedule_unlock(h, lock, cpu)
            assert not lock.locked()
    assert h.violations == []


def test_pcpu_schedule_lock_follows_a_remap(host: Host) -> None:
    new = SpinLock(host.bus, "test.new")
    host.percpu[1].schedule_data.schedule_lock.store(new)
    with bind(host.cpu_contexts[0]):
        lock = si.pcpu_schedule_lock(host, 1)
        assert lock is new
        si.pcpu_schedule_unlock(host, lock, 1)


def test_irq_variants_manage_the_irq_flag(host: Host) -> None:
    with bind(host.cpu_contexts[0]):
        lock = si.pcpu_schedule_lock_irq(host, 2)
        assert not local_irq_is_enabled()
        si.pcpu_schedule_unlock_irq(host, lock, 2)
        assert local_irq_is_enabled()

        lock, flags = si.pcpu_schedule_lock_irqsave(host, 2)
        assert flags is True
        assert not local_irq_is_enabled()
        si.pcpu_schedule_unlock_irqrestore(host, lock, flags, 2)
        assert local_irq_is_enabled()

        local_irq_disable()
        lock, flags = si.pcpu_schedule_lock_irqsave(host, 2)
        assert flags is False
        si.pcpu_schedule_unlock_irqrestore(host, lock, flags, 2)
        assert not local_irq_is_enabled()
    assert host.violations == []


def test_spinner_on_a_moved_lock_retries_and_ends_on_the_new_one(host: Host) -> None:
    """Thread A holds cpu1's lock and remaps it while B spins on it (Xen's rule 1)."""
    cpu = 1
    sd = host.percpu[cpu].schedule_data
    old = sd.schedule_lock.peek()
    new = SpinLock(host.bus, "test.new")
    watch = SpinWatch()
    host.bus.add_instrument(watch)
    a_holds, b_go, a_done = threading.Event(), threading.Event(), threading.Event()
    got: list[SpinLock] = []
    seen_mapped: list[SpinLock] = []

    def remapper() -> None:
        lock = si.pcpu_schedule_lock_irq(host, cpu)
        assert lock is old
        a_holds.set()
        watch.wait_spinning(old.name, {"pcpu2"})
        sd.schedule_lock.store(new)
        # _Not_ pcpu_schedule_unlock(): the pointer moved.
        spin_unlock_irq(lock)
        a_done.set()

    def spinner() -> None:
        wait(b_go, "the go for B")
        lock = si.pcpu_schedule_lock_irq(host, cpu)
        got.append(lock)
        seen_mapped.append(sd.schedule_lock.peek())
        si.pcpu_schedule_unlock_irq(host, lock, cpu)

    with Threads(b_go, a_holds) as threads:
        threads.start(host.toolstack_context("remapper"), remapper)
        wait(a_holds, "A to hold the old lock")
        threads.start(host.cpu_contexts[2], spinner)
        b_go.set()
    assert a_done.is_set()
    assert got == [new]
    assert seen_mapped == [new]
    assert old.stats().retries == 1
    assert new.stats().retries == 0
    assert new.stats().acquisitions == 1
    assert not old.locked()
    assert not new.locked()
    assert host.violations == []


def test_contention_every_acquisition_holds_the_mapped_lock(host: Host) -> None:
    """Three pCPUs hammer cpu1's lock while a toolstack thread remaps it 200 times.

    The remapper stores only while holding the current lock, as Xen's rule requires.
    Before each store it waits until some pCPU spins on that lock (seen at its LOCK
    point, no sleeping), and the new lock is always a fresh one, so every remap
    makes at least one spinner retry: retries >= remaps, whatever the interleaving.
    """
    cpu, remaps, max_loops = 1, 200, 200_000
    sd = host.percpu[cpu].schedule_data
    lockers = [host.cpu_contexts[n] for n in (0, 2, 3)]
    names = {c.name for c in lockers}
    watch = SpinWatch()
    host.bus.add_instrument(watch)
    stop, want, acquired = threading.Event(), threading.Event(), threading.Event()
    all_locks = [sd.schedule_lock.peek()]
    counts: dict[str, int] = {}
    mismatches: list[str] = []

    def locker(me: ExecContext) -> None:
        n = 0
        while not stop.is_set() and n < max_loops:
            lock = si.pcpu_schedule_lock_irq(host, cpu)
            if lock is not sd.schedule_lock.peek():
                mismatches.append(f"{me.name} holds {lock.name}")
            if lock.owner != me.name:
                mismatches.append(f"{me.name} holds {lock.name} owned by {lock.owner}")
            n += 1
            si.pcpu_schedule_unlock_irq(host, lock, cpu)
            if want.is_set():
                # threading.Lock is unfair: without this gate three lockers can
                # starve the remapper. They wait until it holds the lock, then
                # go back to spinning on it.
                wait(acquired, "the remapper to take the lock")
        counts[me.name] = n

    def remapper() -> None:
        try:
            for i in range(remaps):
                acquired.clear()
                want.set()
                lock = si.pcpu_schedule_lock_irq(host, cpu)
                want.clear()
                acquired.set()
                watch.wait_spinning(lock.name, names)
                new = SpinLock(host.bus, f"test.remap{i}")
                all_locks.append(new)
                sd.schedule_lock.store(new)
                spin_unlock_irq(lock)
        finally:
            stop.set()
            acquired.set()

    with Threads(stop, acquired) as threads:
        for ctx in lockers:
            threads.start(ctx, functools.partial(locker, ctx))
        threads.start(host.toolstack_context("remapper"), remapper)
        threads.join()  # before the block's end sets `stop`
    assert mismatches == []
    assert host.violations == []
    assert set(counts) == {"pcpu0", "pcpu2", "pcpu3"}
    assert all(n < max_loops for n in counts.values())
    retries = sum(lk.stats().retries for lk in all_locks)
    assert retries >= remaps
    acquisitions = sum(lk.stats().acquisitions for lk in all_locks)
    assert acquisitions == sum(counts.values()) + remaps + retries
    assert sd.schedule_lock.peek() is all_locks[-1]
    assert not any(lk.locked() for lk in all_locks)


def test_retry_loop_is_bounded(host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pointer that moves at every attempt is a livelock, reported, not spun on."""
    monkeypatch.setattr(si, "_MAX_RETRIES", 5)
    sd = host.percpu[1].schedule_data
    fresh = iter(SpinLock(host.bus, f"test.fresh{i}") for i in range(10))

    class MoveAtEveryLock(Instrument):
        def on_point(self, ctx: ExecContext, access: Access) -> None:
            if access.kind is PointKind.LOCK:
                sd.schedule_lock.value = next(fresh)  # no point: plain write

    host.bus.add_instrument(MoveAtEveryLock())
    with bind(host.cpu_contexts[0]), pytest.raises(DeadlockError, match="retried 5"):
        si.pcpu_schedule_lock(host, 1)
    [v] = host.violations
    assert v.kind is ViolationKind.DEADLOCK
    assert v.where == "sched_lock"
    assert not any(lk.locked() for lk in host.bus.locks)


# -- pcpu_schedule_trylock -------------------------------------------------------------


def test_trylock_returns_the_lock_when_free(host: Host) -> None:
    with bind(host.cpu_contexts[0]):
        lock = si.pcpu_schedule_trylock(host, 2)
        assert lock is host.lock_of(2)
        assert lock.owner == "pcpu0"
        si.pcpu_schedule_unlock(host, lock, 2)


def test_trylock_returns_none_when_busy(host: Host) -> None:
    target = host.lock_of(2)
    held, go = threading.Event(), threading.Event()

    def holder() -> None:
        lock = si.pcpu_schedule_lock(host, 2)
        held.set()
        wait(go, "the go to release")
        si.pcpu_schedule_unlock(host, lock, 2)

    with Threads(go) as threads:
        threads.start(host.cpu_contexts[2], holder)
        wait(held, "the holder")
        with bind(host.cpu_contexts[0]):
            assert si.pcpu_schedule_trylock(host, 2) is None
        assert target.owner == "pcpu2"
        go.set()
    stats = target.stats()
    assert stats.trylock_failures == 1
    assert stats.retries == 0


def test_trylock_returns_none_when_the_lock_moved(host: Host) -> None:
    """The pointer moves between the load and the re-check: one attempt, give up."""
    sd = host.percpu[2].schedule_data
    old = sd.schedule_lock.peek()
    new = SpinLock(host.bus, "test.new")

    class MoveOnTrylock(Instrument):
        def on_point(self, ctx: ExecContext, access: Access) -> None:
            kind, label = access.kind, access.label
            if kind is PointKind.TRYLOCK and label == old.name:
                sd.schedule_lock.value = new

    host.bus.add_instrument(MoveOnTrylock())
    with bind(host.cpu_contexts[0]):
        assert si.pcpu_schedule_trylock(host, 2) is None
    assert not old.locked()
    assert not new.locked()
    assert old.stats().retries == 1
    assert old.stats().acquisitions == 1
    assert new.stats().acquisitions == 0


# -- unlock ASSERTs --------------------------------------------------------------------


def test_pcpu_schedule_unlock_asserts_the_pointer_still_matches(host: Host) -> None:
    new = SpinLock(host.bus, "test.new")
    with bind(host.cpu_contexts[0]):
        lock = si.pcpu_schedule_lock(host, 1)
        host.percpu[1].schedule_data.schedule_lock.store(new)
        si.pcpu_schedule_unlock(host, lock, 1)
    assert not lock.locked()  # released anyway, as a non-debug Xen would
    [v] = host.violations
    assert v.kind is ViolationKind.ASSERT
    assert v.where == "pcpu_schedule_unlock"
    assert "per_cpu(schedule_data, 1).schedule_lock" in v.message


def test_vcpu_schedule_unlock_asserts_against_v_processor(host: Host) -> None:
    v = host.domain("Domain-0").vcpus[0]
    with bind(host.cpu_contexts[0]):
        lock = si.vcpu_schedule_lock_irq(host, v)
        v.processor.store((v.processor.peek() + 1) % 4)
        si.vcpu_schedule_unlock_irq(host, lock, v)
        assert local_irq_is_enabled()
    [viol] = host.violations
    assert viol.where == "vcpu_schedule_unlock_irq"


# -- vcpu_schedule_lock ------------------------------------------------------------------


def test_vcpu_schedule_lock_takes_the_lock_of_v_processor(host: Host) -> None:
    v = host.domain("Domain-0").vcpus[0]
    with bind(host.cpu_contexts[3]):
        for cpu in range(4):
            v.processor.store(cpu)
            lock = si.vcpu_schedule_lock_irq(host, v)
            assert lock is host.lock_of(cpu)
            si.vcpu_schedule_unlock_irq(host, lock, v)
            lock, flags = si.vcpu_schedule_lock_irqsave(host, v)
            assert lock is host.lock_of(cpu)
            si.vcpu_schedule_unlock_irqrestore(host, lock, flags, v)
    assert host.violations == []


def _move_vcpu_while_spinning(h: Host, to: int) -> tuple[SpinLock, SpinLock]:
    """A holds v's lock and moves v->processor to ``to`` while B spins in
    vcpu_schedule_lock(v). Returns (A's lock, the lock B ended up with)."""
    v = h.domain("Domain-0").vcpus[0]
    v.processor.store(0)
    watch = SpinWatch()
    h.bus.add_instrument(watch)
    a_holds, b_go = threading.Event(), threading.Event()
    a_lock: list[SpinLock] = []
    got: list[SpinLock] = []

    def mover() -> None:
        local_irq_disable()  # scheduler locks are IRQ-safe
        lock = si.vcpu_schedule_lock(h, v)
        a_lock.append(lock)
        a_holds.set()
        watch.wait_spinning(lock.name, {"pcpu2"})
        v.processor.store(to)
        spin_unlock(lock)  # not vcpu_schedule_unlock(): v->processor changed

    def locker() -> None:
        wait(b_go, "the go for B")
        local_irq_disable()
        lock = si.vcpu_schedule_lock(h, v)
        got.append(lock)
        si.vcpu_schedule_unlock(h, lock, v)

    with Threads(b_go, a_holds) as threads:
        threads.start(h.toolstack_context("mover"), mover)
        wait(a_holds, "A to hold v's lock")
        threads.start(h.cpu_contexts[2], locker)
        b_go.set()
    assert h.violations == []
    return a_lock[0], got[0]


def test_vcpu_schedule_lock_rereads_v_processor() -> None:
    h = Host(4, sched="credit", dom0_vcpus=1)
    old, got = _move_vcpu_while_spinning(h, 1)
    assert old is h.lock_of(0)
    assert got is h.lock_of(1)
    assert old.stats().retries == 1


def test_vcpu_schedule_lock_same_lock_after_move_succeeds() -> None:
    """Xen's comment: v->processor may change but the lock may be the same."""
    h = Host(4, sched="credit2", dom0_vcpus=1)  # one socket: one shared runqueue
    assert h.lock_of(0) is h.lock_of(1)
    old, got = _move_vcpu_while_spinning(h, 1)
    assert got is old
    assert old.stats().retries == 0


def test_unbound_caller_is_refused(host: Host) -> None:
    with pytest.raises(XenschedError, match="without a CPU context"):
        si.pcpu_schedule_lock(host, 0)


def test_toolstack_context_may_take_pcpu_locks(host: Host) -> None:
    with bind(host.toolstack_context("xl-test")):
        lock = si.pcpu_schedule_lock_irq(host, 3)
        assert lock.owner == "xl-test"
        si.pcpu_schedule_unlock_irq(host, lock, 3)
