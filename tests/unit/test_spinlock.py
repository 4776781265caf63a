"""SpinLock: owner, trylock, release rules, the watchdog, IRQ discipline, stats."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from tests.unit._threads import SpinWatch, Threads, wait
from xensched import DeadlockError, Host, SpinLock, SpinLockStats, XenschedError
from xensched.checks import ViolationKind
from xensched.smp import bind, current, smp_processor_id
from xensched.spinlock import (
    local_irq_disable,
    local_irq_enable,
    local_irq_is_enabled,
    local_irq_restore,
    local_irq_save,
    spin_is_locked,
    spin_lock,
    spin_lock_irq,
    spin_lock_irqsave,
    spin_trylock,
    spin_unlock,
    spin_unlock_irq,
    spin_unlock_irqrestore,
)


@pytest.fixture
def host() -> Host:
    return Host(4, sched="credit", dom0_vcpus=0)


@pytest.fixture
def lock(host: Host) -> SpinLock:
    return SpinLock(host.bus, "test.lock")


def _hold_in_thread(
    host: Host, lock: SpinLock, cpu: int, held: threading.Event, go: threading.Event
) -> Threads:
    """Start a thread bound to ``cpu`` holding ``lock`` until ``go`` is set."""
    threads = Threads(go)

    def holder() -> None:
        spin_lock(lock)
        held.set()
        wait(go, "the test to let the holder go")
        spin_unlock(lock)

    threads.start(host.cpu_contexts[cpu], holder)
    wait(held, "the holder to take the lock")
    return threads


# -- owner and is_locked ---------------------------------------------------------------


def test_owner_is_name_of_bound_pcpu_context(host: Host, lock: SpinLock) -> None:
    with bind(host.cpu_contexts[2]):
        assert not spin_is_locked(lock)
        spin_lock(lock)
        assert lock.owner == "pcpu2"
        assert spin_is_locked(lock)
        assert lock.stats().owner == "pcpu2"
        spin_unlock(lock)
    assert lock.stats().owner is None
    assert not spin_is_locked(lock)
    assert lock.stats().acquisitions == 1


def test_owner_is_name_of_toolstack_context(host: Host, lock: SpinLock) -> None:
    ctx = host.toolstack_context("xl-test")
    with bind(ctx):
        assert current() is ctx
        spin_lock(lock)
        assert lock.owner == "xl-test"
        spin_unlock(lock)


def test_unbound_thread_cannot_take_a_lock(lock: SpinLock) -> None:
    with pytest.raises(XenschedError, match="without a CPU context"):
        spin_lock(lock)
    assert not spin_is_locked(lock)


def test_toolstack_context_has_no_processor_id(host: Host) -> None:
    with bind(host.toolstack_context("xl-test")), pytest.raises(XenschedError):
        smp_processor_id()
    with bind(host.cpu_contexts[3]):
        assert smp_processor_id() == 3


def test_bind_is_reentrant_and_restores_previous(host: Host) -> None:
    with bind(host.cpu_contexts[0]):
        with bind(host.cpu_contexts[1]):
            assert current() is host.cpu_contexts[1]
        assert current() is host.cpu_contexts[0]


# -- trylock -----------------------------------------------------------------------------


def test_trylock_fails_while_another_thread_holds(host: Host, lock: SpinLock) -> None:
    held, go = threading.Event(), threading.Event()
    with _hold_in_thread(host, lock, 1, held, go), bind(host.cpu_contexts[0]):
        assert not spin_trylock(lock)
        assert not spin_trylock(lock)
        assert lock.owner == "pcpu1"
        assert lock.stats().trylock_failures == 2
    with bind(host.cpu_contexts[0]):
        assert spin_trylock(lock)
        assert lock.owner == "pcpu0"
        spin_unlock(lock)
    stats = lock.stats()
    assert stats.trylock_failures == 2
    assert stats.acquisitions == 2  # the holder's and the successful trylock


def test_trylock_on_free_lock_takes_it(host: Host, lock: SpinLock) -> None:
    with bind(host.cpu_contexts[0]):
        assert spin_trylock(lock)
        assert spin_is_locked(lock)
        assert lock.owner == "pcpu0"
        spin_unlock(lock)
    assert lock.stats().trylock_failures == 0


# -- release -----------------------------------------------------------------------------


def test_release_by_non_owner_raises(host: Host, lock: SpinLock) -> None:
    held, go = threading.Event(), threading.Event()
    with _hold_in_thread(host, lock, 1, held, go), bind(host.cpu_contexts[0]):
        with pytest.raises(XenschedError, match=r"pcpu0 unlocks .* held by pcpu1"):
            spin_unlock(lock)
        # The refused release did not touch the lock.
        assert spin_is_locked(lock)
        assert lock.owner == "pcpu1"


def test_release_of_free_lock_raises(host: Host, lock: SpinLock) -> None:
    with (
        bind(host.cpu_contexts[0]),
        pytest.raises(XenschedError, match="held by nobody"),
    ):
        spin_unlock(lock)


# -- contention and the watchdog -------------------------------------------------------


class _RefusalSeen:
    """A ``threading.Lock`` stand-in that says when a non-blocking attempt failed.

    The LOCK point comes just before the real attempt, so a test that lets the holder
    go on seeing the point alone may let the spinner find the lock free (uncontended).
    Waiting for the refused attempt itself orders the two without sleeping.
    """

    def __init__(self, inner: threading.Lock) -> None:
        self._inner = inner
        self.refused = threading.Event()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        ok = self._inner.acquire(blocking, timeout)
        if not ok and not blocking:
            self.refused.set()
        return ok

    def release(self) -> None:
        self._inner.release()

    def locked(self) -> bool:
        return self._inner.locked()


def test_contended_acquisition_is_counted(
    host: Host, lock: SpinLock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pcpu0 spins until pcpu1 lets go; ordered by the refused attempt, not by sleeping."""
    watch = SpinWatch()
    host.bus.add_instrument(watch)
    seen = _RefusalSeen(lock._lock)
    monkeypatch.setattr(lock, "_lock", seen)
    held, go = threading.Event(), threading.Event()
    got = threading.Event()
    threads = _hold_in_thread(host, lock, 1, held, go)
    with threads:

        def spinner() -> None:
            spin_lock(lock)
            got.set()
            spin_unlock(lock)

        threads.start(host.cpu_contexts[0], spinner)
        watch.wait_spinning(lock.name, {"pcpu0"})
        assert seen.refused.wait(timeout=10.0), "pcpu0 never tried the held lock"
        assert not got.is_set()
        go.set()
    assert got.is_set()
    stats = lock.stats()
    assert stats.acquisitions == 2
    assert stats.contended == 1
    assert stats.owner is None


def test_watchdog_raises_deadlock_naming_the_holder() -> None:
    host = Host(4, sched="credit", dom0_vcpus=0, lock_timeout=0.2)
    lock = SpinLock(host.bus, "stuck.lock")
    held, go = threading.Event(), threading.Event()
    with _hold_in_thread(host, lock, 1, held, go), bind(host.cpu_contexts[0]):
        with pytest.raises(DeadlockError) as info:
            spin_lock(lock)
        assert "held by pcpu1" in str(info.value)
        assert "pcpu0 spun on 'stuck.lock'" in str(info.value)
        assert lock.owner == "pcpu1"
    deadlocks = [v for v in host.violations if v.kind is ViolationKind.DEADLOCK]
    assert len(deadlocks) == 1
    v = deadlocks[0]
    assert v.where == "_spin_lock"
    assert v.context == "pcpu0"
    assert v.cpu == 0
    assert "held by pcpu1" in v.message


def test_host_refuses_a_non_positive_watchdog() -> None:
    with pytest.raises(ValueError, match="lock_timeout"):
        Host(2, lock_timeout=0)


# -- IRQ helpers -------------------------------------------------------------------------


def test_local_irq_disable_enable(host: Host) -> None:
    with bind(host.cpu_contexts[0]):
        assert local_irq_is_enabled()  # pCPUs boot with IRQs on
        local_irq_disable()
        assert not local_irq_is_enabled()
        local_irq_enable()
        assert local_irq_is_enabled()


def test_irq_state_is_per_context(host: Host) -> None:
    with bind(host.cpu_contexts[0]):
        local_irq_disable()
    with bind(host.cpu_contexts[1]):
        assert local_irq_is_enabled()
    with bind(host.cpu_contexts[0]):
        assert not local_irq_is_enabled()
        local_irq_enable()


@pytest.mark.parametrize("initially", [True, False])
def test_local_irq_save_restore(host: Host, initially: bool) -> None:
    with bind(host.cpu_contexts[0]):
        if not initially:
            local_irq_disable()
        flags = local_irq_save()
        assert flags is initially
        assert not local_irq_is_enabled()
        local_irq_restore(flags)
        assert local_irq_is_enabled() is initially
        local_irq_enable()


def test_spin_lock_irq_disables_and_unlock_irq_enables(
    host: Host, lock: SpinLock
) -> None:
    with bind(host.cpu_contexts[0]):
        spin_lock_irq(lock)
        assert not local_irq_is_enabled()
        assert lock.owner == "pcpu0"
        spin_unlock_irq(lock)
        assert local_irq_is_enabled()
        assert not spin_is_locked(lock)
    assert host.violations == []


def test_spin_lock_irq_with_irqs_already_off_is_an_assert(
    host: Host, lock: SpinLock
) -> None:
    with bind(host.cpu_contexts[0]):
        local_irq_disable()
        spin_lock_irq(lock)
        spin_unlock_irq(lock)
    [v] = host.violations
    assert v.kind is ViolationKind.ASSERT
    assert v.where == "_spin_lock_irq"
    assert lock.name in v.message


@pytest.mark.parametrize("initially", [True, False])
def test_spin_lock_irqsave_irqrestore_restore_flags(
    host: Host, lock: SpinLock, initially: bool
) -> None:
    with bind(host.cpu_contexts[0]):
        if not initially:
            local_irq_disable()
        flags = spin_lock_irqsave(lock)
        assert flags is initially
        assert not local_irq_is_enabled()
        assert lock.owner == "pcpu0"
        spin_unlock_irqrestore(lock, flags)
        assert local_irq_is_enabled() is initially
        assert not spin_is_locked(lock)
        local_irq_enable()
    assert host.violations == []


def test_failed_spin_lock_irq_gives_irqs_back() -> None:
    host = Host(2, sched="credit", dom0_vcpus=0, lock_timeout=0.05)
    lock = SpinLock(host.bus, "stuck.lock")
    held, go = threading.Event(), threading.Event()
    with _hold_in_thread(host, lock, 1, held, go), bind(host.cpu_contexts[0]):
        with pytest.raises(DeadlockError):
            spin_lock_irq(lock)
        assert local_irq_is_enabled()
        with pytest.raises(DeadlockError):
            spin_lock_irqsave(lock)
        assert local_irq_is_enabled()


# -- check_lock(): the IRQ-safety latch (Xen commit 8b27d2b8af) ----------------------------


def test_lock_latched_irq_safe_then_taken_with_irqs_on_is_a_bug(
    host: Host, lock: SpinLock
) -> None:
    with bind(host.cpu_contexts[0]):
        spin_lock_irq(lock)  # first use, IRQs off: latched IRQ-safe
        spin_unlock_irq(lock)
        assert lock.stats().irq_safe is True
        assert host.violations == []
        spin_lock(lock)  # IRQs on: what schedule_cpu_switch() did before 8b27d2b8af
        spin_unlock(lock)
    [v] = host.violations
    assert v.kind is ViolationKind.ASSERT
    assert v.where == "check_lock"
    assert "IRQs on" in v.message
    assert "latched IRQ-safe" in v.message
    assert lock.stats().irq_safe is True  # the latch never flips


def test_lock_latched_irq_unsafe_then_taken_with_irqs_off_is_a_bug(
    host: Host, lock: SpinLock
) -> None:
    with bind(host.cpu_contexts[0]):
        spin_lock(lock)
        spin_unlock(lock)
        assert lock.stats().irq_safe is False
        flags = spin_lock_irqsave(lock)
        spin_unlock_irqrestore(lock, flags)
    [v] = host.violations
    assert v.where == "check_lock"
    assert "latched IRQ-unsafe" in v.message


def test_trylock_is_checked_by_the_latch_too(host: Host, lock: SpinLock) -> None:
    with bind(host.cpu_contexts[0]):
        spin_lock_irq(lock)
        spin_unlock_irq(lock)
        assert spin_trylock(lock)
        spin_unlock(lock)
    assert [v.where for v in host.violations] == ["check_lock"]


def test_consistent_irq_use_never_trips_the_latch(host: Host, lock: SpinLock) -> None:
    with bind(host.cpu_contexts[0]):
        for _ in range(3):
            spin_lock_irq(lock)
            spin_unlock_irq(lock)
            flags = spin_lock_irqsave(lock)
            spin_unlock_irqrestore(lock, flags)
    with bind(host.cpu_contexts[1]):
        spin_lock_irq(lock)
        spin_unlock_irq(lock)
    assert host.violations == []
    assert lock.stats().acquisitions == 7


# -- stats ---------------------------------------------------------------------------------


def test_stats_is_a_frozen_snapshot(host: Host, lock: SpinLock) -> None:
    before = lock.stats()
    assert isinstance(before, SpinLockStats)
    assert before == SpinLockStats(
        name="test.lock",
        owner=None,
        acquisitions=0,
        contended=0,
        trylock_failures=0,
        retries=0,
        irq_safe=None,
    )
    with bind(host.cpu_contexts[0]):
        spin_lock(lock)
        during = lock.stats()
        spin_unlock(lock)
    # A snapshot does not follow the lock.
    assert before.acquisitions == 0
    assert during.owner == "pcpu0"
    assert during.acquisitions == 1
    assert lock.stats().owner is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        during.owner = "pcpu1"  # type: ignore[misc]


def test_host_lock_stats_lists_every_lock(host: Host, lock: SpinLock) -> None:
    names = [s.name for s in host.lock_stats()]
    assert "test.lock" in names
    assert "cpupool_lock" in names
    assert {f"schedule_data[{c}]._lock" for c in range(4)} <= set(names)
