"""The free-running driver: seeded delay injection and the switch interval."""

from __future__ import annotations

import sys
import time

import pytest

from xensched import ConfigError, Host
from xensched.drivers import free
from xensched.drivers.free import DelayInjector, free_running
from xensched.interaction import PointKind


def _delays(seed: int, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, float]]:
    """Run a few host operations under an injector; record (context, delay)."""
    slept: list[tuple[str, float]] = []
    h = Host(2, sched="credit")
    inj = DelayInjector(0.3, seed)
    ctx_name = ["?"]

    def fake_sleep(d: float) -> None:
        slept.append((ctx_name[0], d))

    monkeypatch.setattr(time, "sleep", fake_sleep)  # what free.py calls
    h.bus.driver = inj
    try:
        for cpu in (0, 1, 0):
            ctx_name[0] = f"pcpu{cpu}"
            h.schedule(cpu)
    finally:
        h.bus.driver = None
    assert inj.total_delays() == len(slept)
    assert set(inj.delays()) <= {"pcpu0", "pcpu1"}
    return slept


def test_delays_are_a_function_of_the_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    a = _delays(42, monkeypatch)
    b = _delays(42, monkeypatch)
    c = _delays(43, monkeypatch)
    assert a
    assert a == b
    assert a != c
    assert all(0 <= d <= free.DEFAULT_MAX_DELAY for _, d in a)


def test_kinds_filter(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    h = Host(2, sched="credit")
    h.cpu_contexts[0].events.clear()  # boot ran on pcpu0
    h.bus.driver = DelayInjector(1.0, 0, kinds=frozenset({PointKind.UNLOCK}))
    try:
        h.schedule(0)
    finally:
        h.bus.driver = None
    unlocks = [e for e in h.cpu_contexts[0].recent_events() if e[2] == "unlock"]
    assert len(slept) == len(unlocks) > 0


@pytest.mark.parametrize("p", [0.0, -0.1, 1.5])
def test_probability_bounds(p: float) -> None:
    with pytest.raises(ConfigError, match="probability"):
        DelayInjector(p, 0)


def test_max_delay_bound() -> None:
    with pytest.raises(ConfigError, match="max_delay"):
        DelayInjector(0.5, 0, max_delay=0)


def test_free_running_restores_the_switch_interval() -> None:
    before = sys.getswitchinterval()
    with free_running(1e-5):
        assert sys.getswitchinterval() == pytest.approx(1e-5)
    assert sys.getswitchinterval() == before
    with pytest.raises(RuntimeError), free_running(2e-5):
        raise RuntimeError("boom")
    assert sys.getswitchinterval() == before
    with pytest.raises(ConfigError), free_running(0):
        pass  # pragma: no cover
