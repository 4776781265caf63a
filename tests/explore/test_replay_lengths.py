"""A replay whose schedule is shorter or longer than the run says so, at the step where
the two part (planted: the legacy round trip's failing schedule, cut or padded)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from xensched.explore import make_strategy
from xensched.explore.engine import Explorer, ScenarioTarget
from xensched.explore.replay import ReplayDivergedError, ReplaySchedule
from xensched.scenario import round_trip

if TYPE_CHECKING:
    from xensched.explore.engine import Execution
    from xensched.scenario import Scenario


@pytest.fixture(scope="module")
def legacy_failure() -> tuple[Scenario, Execution]:
    sc = round_trip(protocol="legacy")
    res = Explorer(ScenarioTarget(sc), make_strategy("dpor"), runs=500).explore()
    assert res.failing is not None
    return sc, res.failing


def _replay(sc: Scenario, schedule: list[str], accesses: list[str]) -> None:
    play = ReplaySchedule(schedule, accesses)
    play.begin(0)
    Explorer(ScenarioTarget(sc), play, runs=1).execute(0)


def test_the_whole_schedule_replays_without_a_complaint(
    legacy_failure: tuple[Scenario, Execution],
) -> None:
    sc, failing = legacy_failure
    _replay(sc, list(failing.schedule), [s.op.describe() for s in failing.steps])


def test_a_schedule_cut_short_says_the_run_goes_on(
    legacy_failure: tuple[Scenario, Execution],
) -> None:
    sc, failing = legacy_failure
    accesses = [s.op.describe() for s in failing.steps]
    n = len(failing.schedule) - 5
    with pytest.raises(ReplayDivergedError) as info:
        _replay(sc, list(failing.schedule[:n]), accesses[:n])
    assert info.value.step == n
    assert str(info.value).startswith(
        f"the replay diverged at step {n}: the run goes on after the {n} recorded "
        "steps (enabled: "
    )


def test_a_schedule_padded_past_the_end_says_the_run_ended(
    legacy_failure: tuple[Scenario, Execution],
) -> None:
    sc, failing = legacy_failure
    accesses = [s.op.describe() for s in failing.steps]
    n = len(failing.schedule)
    last = failing.steps[-1]
    with pytest.raises(ReplayDivergedError) as info:
        _replay(
            sc, [*failing.schedule, *[last.thread] * 3], accesses + [accesses[-1]] * 3
        )
    assert info.value.step == n
    assert str(info.value) == (
        f"the replay diverged at step {n}: the run ended after {n} of the {n + 3} "
        "recorded steps"
    )
