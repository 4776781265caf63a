"""The explorer's garbage collection between executions (``engine.Collector``)."""

from __future__ import annotations

import gc
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest

from xensched.explore import DPOR, Explorer, ScenarioTarget, engine
from xensched.scenario import round_trip

if TYPE_CHECKING:
    from xensched.explore.engine import ExploreResult, _ScenarioRun

gil_build = pytest.mark.skipif(
    engine._FREE_THREADED, reason="a free-threaded build keeps its own collection"
)


@dataclass
class _Watched:
    """A scenario's runs, with a weak reference to each run's host."""

    inner: ScenarioTarget
    hosts: list[weakref.ref[object]] = field(default_factory=list)

    def new_run(self) -> _ScenarioRun:
        run = self.inner.new_run()
        self.hosts.append(weakref.ref(run.host))
        return run


@gil_build
def test_no_host_of_an_earlier_execution_outlives_the_next_one() -> None:
    target = _Watched(ScenarioTarget(round_trip("credit", "credit2", "fixed"), 1))
    late: list[tuple[int, list[int]]] = []

    def check(res: ExploreResult) -> None:
        # After execution k: everything execution k-1 left was collected before k.
        alive = [i for i, h in enumerate(target.hosts[:-1]) if h() is not None]
        if alive:
            late.append((res.runs, alive))

    res = Explorer(target, DPOR(), runs=20, progress=check).explore()
    assert res.runs == 20
    assert late == []


@gil_build
def test_the_threshold_is_raised_while_explorations_run_and_put_back_after() -> None:
    before = gc.get_threshold()
    with engine.Collector() as outer:
        assert outer.active
        assert gc.get_threshold()[0] == engine._GC_THRESHOLD
        with engine.Collector() as inner:  # overlapping explorations
            assert inner.active
        # The inner one leaving does not put it back while the outer one runs.
        assert gc.get_threshold()[0] == engine._GC_THRESHOLD
    assert gc.get_threshold() == before


def test_a_caller_that_turned_the_collector_off_is_left_alone() -> None:
    before = gc.get_threshold()
    gc.disable()
    try:
        with engine.Collector() as c:
            assert not c.active
            assert gc.get_threshold() == before
            c.between()  # collects nothing
            assert not gc.isenabled()
    finally:
        gc.enable()
    assert gc.get_threshold() == before
