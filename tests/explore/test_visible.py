"""Sampling at visible accesses (xensched.explore.visible).

A random walk or PCT chooses only where another thread conflicts. That must keep
every interleaving a sample could need (two planted defects show the learning is
what keeps them: a visible set blind to the runqueue never loses the update, one deaf
to what a wake condition reads never wakes in a pulse), record the invisible steps so
that a replay, which follows every point, runs the same execution, and leave the
systematic searches on every point.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.explore.test_soundness import lost_update, pulse
from xensched.explore import DPOR, PCT, BoundedDFS, Explorer, RandomWalk, ScenarioTarget
from xensched.explore.replay import ReplaySchedule
from xensched.explore.threads import ThreadsTarget
from xensched.explore.visible import Visibility
from xensched.scenario import round_trip

if TYPE_CHECKING:
    from collections.abc import Iterable

    from xensched.explore import ExploreResult, SearchStrategy
    from xensched.explore.engine import Target
    from xensched.interaction import Access

RUNS = 60


def explore(
    target: Target,
    search: SearchStrategy,
    *,
    runs: int = RUNS,
    all_points: bool = False,
    visibility: Visibility | None = None,
) -> ExploreResult:
    ex = Explorer(
        target,
        search,
        runs=runs,
        keep_going=True,
        collect_states=True,
        all_points=all_points,
    )
    if visibility is not None:
        ex.visibility = visibility
    return ex.explore()


class _BlindTo(Visibility):
    """A planted defect: accesses to objects whose label holds ``word`` never
    become scheduling points."""

    def __init__(self, word: str) -> None:
        super().__init__()
        self.word = word

    def invisible(self, thread: str, access: Access) -> bool:
        return self.word in access[1].label or super().invisible(thread, access)


class _DeafToConditions(Visibility):
    """A planted defect: what a wake condition reads is not made visible."""

    def read_by_condition(self, labels: Iterable[str]) -> None:
        pass


def test_a_visible_set_blind_to_the_runqueue_never_loses_the_update() -> None:
    target = ThreadsTarget(lost_update)
    assert explore(target, RandomWalk(1)).final_states == {1, 2}
    planted = explore(target, RandomWalk(1), visibility=_BlindTo("runq"))
    assert planted.final_states == {2}  # each load and store ran as one step


def test_a_visible_set_deaf_to_wake_conditions_sleeps_through_the_pulse() -> None:
    target = ThreadsTarget(pulse)
    assert explore(target, RandomWalk(1)).final_states == {0, 1}
    planted = explore(target, RandomWalk(1), visibility=_DeafToConditions())
    assert planted.final_states == {0}  # no point between the two stores


def test_sampling_at_visible_points_finds_the_race_sooner() -> None:
    # The legacy round trip: the toolstack's ~130 accesses, most its own, drown a
    # random walk's choices; at visible points it finds the race in a few runs.
    target = ScenarioTarget(round_trip(protocol="legacy"))
    visible = explore(target, RandomWalk(1), runs=40)
    every = explore(target, RandomWalk(1), runs=40, all_points=True)
    assert "lock-mismatch" in visible.kinds
    assert "lock-mismatch" not in every.kinds
    assert visible.choices < 0.7 * visible.points
    assert every.choices == every.points
    # What pCPU 1 and xl were seen to share: a few of the run's objects.
    shared = visible.details["visible_objects"]
    assert isinstance(shared, int)
    assert 5 < shared < 40


def test_pct_counts_the_runs_since_the_visible_set_last_grew() -> None:
    target = ScenarioTarget(round_trip(protocol="fixed"))
    res = explore(target, PCT(1, 3), runs=30)
    counted = res.details["counted_runs"]
    assert isinstance(counted, int)
    assert 0 < counted < 30  # the first run grew it, at least
    every = explore(target, PCT(1, 3), runs=30, all_points=True)
    assert every.details["counted_runs"] == 30


def test_invisible_steps_are_recorded_and_replay_follows_them() -> None:
    target = ScenarioTarget(round_trip(protocol="legacy"))
    res = Explorer(target, PCT(1, 3), runs=200).explore()
    failing = res.failing
    assert failing is not None
    assert failing.choices < len(failing.steps)
    invisible = [s for s in failing.steps if s.enabled == (s.thread,)]
    assert invisible  # recorded as steps of their own thread
    # A replay chooses at every point, invisible ones too: same steps, same find.
    schedule = [s.thread for s in failing.steps]
    accesses = [s.op.describe() for s in failing.steps]
    again = Explorer(target, ReplaySchedule(schedule, accesses), runs=1).execute(0)
    assert again.schedule == failing.schedule
    assert again.kinds == failing.kinds
    assert again.violation_steps[0] == failing.violation_steps[0]


@pytest.mark.parametrize(
    "search", [DPOR, lambda: BoundedDFS(None)], ids=["dpor", "dfs"]
)
def test_systematic_searches_choose_at_every_point(search: type[DPOR]) -> None:
    res = explore(ThreadsTarget(lost_update), search(), runs=1000)
    assert res.exhaustive
    assert res.choices == res.points
    assert "visible_objects" not in res.details
