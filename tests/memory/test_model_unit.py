"""StoreBufferModel's rules, one at a time, without a driver."""

from __future__ import annotations

import time

import pytest

from xensched import Host
from xensched.errors import ConfigError
from xensched.interaction import Bus, PointKind
from xensched.memory import Cell, smp_mb, smp_wmb
from xensched.memory_model import (
    FREE_MAX_DELAY_NS,
    StoreBufferModel,
    make_memory_model,
)
from xensched.smp import ExecContext, bind


def _setup(name: str) -> tuple[Bus, StoreBufferModel, ExecContext, ExecContext]:
    bus = Bus()
    mem = make_memory_model(name, seed=3)
    assert isinstance(mem, StoreBufferModel)
    bus.memory = mem
    return bus, mem, bus.new_context("a", 0), bus.new_context("b", 1)


@pytest.mark.parametrize("name", ["tso", "relaxed"])
def test_a_buffered_store_is_seen_by_its_cpu_only_until_it_drains(name: str) -> None:
    bus, mem, a, b = _setup(name)
    x = Cell(bus, "x", 0)
    with bind(a):
        x.store(1)
        assert x.load() == 1  # forwarded from its own buffer
        assert x.peek() == 1
    with bind(b):
        assert x.peek() == 0  # memory
    assert mem.buffered(a) == 1
    mem.flush(a)
    with bind(b):
        assert x.load() == 1


def test_tso_drains_in_order_and_relaxed_in_any_order_within_an_epoch() -> None:
    for name, want in (("tso", ["x"]), ("relaxed", ["x", "y"])):
        bus, mem, a, _ = _setup(name)
        mem.controlled = True  # the choices are a driver's now
        x, y = Cell(bus, "x", 0), Cell(bus, "y", 0)
        with bind(a):
            x.store(1)
            y.store(1)
        assert [c.label for _, c in mem.drain_options()] == want, name


def test_relaxed_wmb_keeps_later_stores_behind_earlier_ones() -> None:
    bus, mem, a, _ = _setup("relaxed")
    mem.controlled = True
    x, y, z = Cell(bus, "x", 0), Cell(bus, "y", 0), Cell(bus, "z", 0)
    with bind(a):
        x.store(1)
        x.store(2)
        smp_wmb()
        y.store(1)
        z.store(1)
    # Only x's oldest store may go; the second store to x keeps its order.
    assert [c.label for _, c in mem.drain_options()] == ["x"]
    mem.drain(a, x)
    assert [c.label for _, c in mem.drain_options()] == ["x"]
    mem.drain(a, x)
    assert sorted(c.label for _, c in mem.drain_options()) == ["y", "z"]
    with pytest.raises(ValueError, match="no buffered store to x"):
        mem.drain(a, x)


@pytest.mark.parametrize("name", ["tso", "relaxed"])
def test_ordering_points_wait_for_an_empty_buffer(name: str) -> None:
    bus, mem, a, _ = _setup(name)
    mem.controlled = True
    x = Cell(bus, "x", 0)
    assert mem.may_proceed(a, PointKind.MB)
    with bind(a):
        x.store(1)
    for kind in (PointKind.MB, PointKind.UNLOCK, PointKind.STORE_RELEASE):
        assert not mem.may_proceed(a, kind), kind
    assert mem.may_proceed(a, PointKind.LOAD)
    assert mem.may_proceed(a, PointKind.LOCK) is (name == "relaxed")
    mem.drain(a, x)
    assert mem.may_proceed(a, PointKind.MB)


def test_relaxed_loads_may_return_an_older_value_until_an_ordering_point() -> None:
    bus, mem, a, b = _setup("relaxed")
    mem.controlled = True
    x = Cell(bus, "x", 0)
    with bind(a):
        x.store(1)
    mem.drain(a, x)
    assert mem.load_choices(b, x) == 1  # 1 (newest) or 0 (satisfied early)
    mem.choose_load(b, 1)
    with bind(b):
        assert x.load() == 0
        assert mem.load_choices(b, x) == 1  # it saw 0: 1 is still to come
        assert x.load() == 1
        assert mem.load_choices(b, x) == 0  # coherence: never back to 0
    _, mem2, a2, b2 = _setup("relaxed")
    mem2.controlled = True
    y = Cell(a2.bus, "y", 0)
    with bind(a2):
        y.store(1)
    mem2.drain(a2, y)
    with bind(b2):
        smp_mb()
    assert mem2.load_choices(b2, y) == 0  # after a full barrier: the newest only


def test_tso_loads_never_return_an_older_value() -> None:
    bus, mem, a, b = _setup("tso")
    mem.controlled = True
    x = Cell(bus, "x", 0)
    with bind(a):
        x.store(1)
    mem.drain(a, x)
    assert mem.load_choices(b, x) == 0


def test_free_running_stores_drain_after_their_delay() -> None:
    bus, mem, a, b = _setup("relaxed")
    x = Cell(bus, "x", 0)
    with bind(a):
        x.store(1)
    deadline = time.monotonic() + 5.0
    with bind(b):
        while x.load() != 1:  # each load of any CPU drains what is due
            assert time.monotonic() < deadline, "the store never drained"
            time.sleep(FREE_MAX_DELAY_NS / 1e9 / 4)
    assert mem.drains == 1


def test_unknown_models_are_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="expected one of sc, tso, relaxed"):
        make_memory_model("arm")
    with pytest.raises(ConfigError, match="unknown memory model 'pso'"):
        Host(2, memory_model="pso")
    assert Host(2, memory_model="sc").bus.memory is None
    h = Host(2, memory_model="tso")
    assert isinstance(h.bus.memory, StoreBufferModel)
    assert h.bus.memory.name == "tso"
