"""Free-running: a CPU that waits lets its own store buffer drain first.

Otherwise a waiting CPU could keep a store forever that the CPU it waits for needs to
see (under the free-running driver a store drains only after later operations, and
none come while everyone waits).
"""

from __future__ import annotations

import threading
import time

import pytest

from xensched.interaction import Bus
from xensched.memory import Cell
from xensched.memory_model import StoreBufferModel
from xensched.smp import bind
from xensched.spinlock import SpinLock


def _bus(model: str) -> Bus:
    bus = Bus()
    bus.memory = StoreBufferModel(model, seed=7)
    return bus


@pytest.mark.parametrize("model", ["tso", "relaxed"])
def test_wait_until_drains_the_waiters_buffer_first(model: str) -> None:
    bus = _bus(model)
    x = Cell(bus, "x", 0)
    a = bus.new_context("a", 0)
    with bind(a):
        x.store(1)
        assert x.value == 0  # in a's buffer, not in memory yet
        bus.wait_until(lambda: True, "nothing")
    assert x.value == 1
    assert isinstance(bus.memory, StoreBufferModel)
    assert bus.memory.buffered(a) == 0


@pytest.mark.parametrize("model", ["tso", "relaxed"])
def test_a_contended_spin_drains_the_spinners_buffer(model: str) -> None:
    bus = _bus(model)
    x = Cell(bus, "x", 0)
    lock = SpinLock(bus, "l")
    a, b = bus.new_context("a", 0), bus.new_context("b", 1)
    stored = threading.Event()
    errors: list[BaseException] = []

    def spinner() -> None:
        try:
            with bind(a):
                x.store(1)
                stored.set()
                lock.acquire()  # held by b: contended
                lock.release()
        except BaseException as e:  # reported by the test thread
            errors.append(e)

    with bind(b):
        lock.acquire()
        t = threading.Thread(target=spinner, name="spinner")
        t.start()
        try:
            assert stored.wait(2.0)
            # The holder sees the spinner's store while the spinner waits for it.
            deadline = time.monotonic() + 2.0
            while x.value != 1 and time.monotonic() < deadline:
                time.sleep(0.001)
            seen = x.value
        finally:
            lock.release()
            t.join(5.0)
    assert not t.is_alive()
    assert errors == []
    assert seen == 1
    assert lock.stats().contended == 1


@pytest.mark.parametrize("model", ["tso", "relaxed"])
def test_a_wait_sees_a_store_of_a_cpu_gone_quiet(model: str) -> None:
    # vcpu_sleep_sync(): cpu1 waits for is_running == 0, which cpu0 stored as it
    # went idle and then did nothing more. Only loads and stores ticked the model,
    # so the store stayed in cpu0's buffer and the wait ran out: a false deadlock.
    bus = Bus(lock_timeout=2.0)
    bus.memory = StoreBufferModel(model, seed=1)
    running = Cell(bus, "v->is_running", 1)
    cpu0, cpu1 = bus.new_context("cpu0", 0), bus.new_context("cpu1", 1)
    with bind(cpu0):
        running.store(0)  # buffered: drains after a seeded delay
    assert isinstance(bus.memory, StoreBufferModel)
    with bind(cpu1):
        running.wait_until(lambda v: v == 0, "is_running == 0")
    assert bus.memory.buffered(cpu0) == 0
    assert not bus.violations
