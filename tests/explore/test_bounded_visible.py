"""Preemption-bounded DFS at visible accesses, against the same bound at every point.

Within a bound, DFS chooses only at visible accesses (xensched.explore.visible) and
starts its round again whenever the visible set grows. Moving a preemption from
before an invisible access to after it keeps the execution's equivalence class and
never adds a preemption, so the bounded search must reach exactly the final states
and violation kinds that the same bound reaches at every point: checked on small
programs drawn at random (with accesses of each thread's own cell mixed in, which
are what become invisible), on the hand-written soundness programs, and on the
round trip. A visible set blind to the runqueue is shown to lose the update that
the search at every point finds, so the comparison can fail.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import pytest

from tests.explore.test_random_programs import plan_of, program_of
from tests.explore.test_soundness import PROGRAMS, lost_update
from tests.explore.test_visible import _BlindTo, explore
from xensched.explore import BoundedDFS, ScenarioTarget, make_strategy
from xensched.explore.threads import ThreadsTarget
from xensched.scenario import round_trip

if TYPE_CHECKING:
    from collections.abc import Callable

    from xensched.explore import ExploreResult
    from xensched.explore.engine import Target
    from xensched.explore.threads import World

RUNS = 50_000


def both(target: Target, bound: int) -> tuple[ExploreResult, ExploreResult]:
    """The bounded search at visible points and at every point."""
    visible = explore(target, BoundedDFS(bound), runs=RUNS)
    every = explore(target, BoundedDFS(bound), runs=RUNS, all_points=True)
    assert visible.details["bound_exhausted"]
    assert every.details["bound_exhausted"]
    return visible, every


def with_own(seed: int) -> list[list[str]]:
    """A random program's plan with ``own`` operations (a thread's private cell)
    put between its steps."""
    rng = random.Random(10_000 + seed)
    plan = plan_of(seed)
    for ops in plan:
        for _ in range(rng.randint(1, 2)):
            ops.insert(rng.randint(0, len(ops)), "own0")
    return plan


@pytest.mark.parametrize("bound", [0, 1, 2])
@pytest.mark.parametrize(
    "seed",
    [pytest.param(s, marks=pytest.mark.slow) if s >= 6 else s for s in range(30)],
)
def test_visible_points_keep_what_every_point_finds_on_random_programs(
    seed: int, bound: int
) -> None:
    plan = with_own(seed)
    visible, every = both(ThreadsTarget(program_of(plan)), bound)
    assert visible.final_states == every.final_states, plan
    assert visible.kinds == every.kinds, plan


def test_the_random_programs_do_reduce() -> None:
    # The comparison above is not vacuous: the own cells are invisible, and the
    # bounded search at visible points runs fewer executions (on programs this
    # small, the executions run before a restart can make up the difference).
    fewer = 0
    for seed in range(6):
        visible, every = both(ThreadsTarget(program_of(with_own(seed))), 2)
        assert visible.choices < visible.points
        fewer += visible.runs < every.runs
    assert fewer >= 3


@pytest.mark.parametrize("program", PROGRAMS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("bound", [1, 2])
def test_visible_points_keep_what_every_point_finds_on_the_small_programs(
    program: Callable[[World], None], bound: int
) -> None:
    visible, every = both(ThreadsTarget(program), bound)
    assert visible.final_states == every.final_states
    assert visible.kinds == every.kinds


@pytest.mark.parametrize("protocol", ["legacy", "fixed"])
def test_visible_points_on_round_trip(protocol: str) -> None:
    visible, every = both(ScenarioTarget(round_trip(protocol=protocol)), 1)
    assert visible.kinds == every.kinds
    assert visible.kinds == ({"lock-mismatch"} if protocol == "legacy" else set())
    assert visible.final_states == every.final_states
    assert visible.runs < every.runs
    # The set grew as the first executions ran: the round started again each time.
    restarts = visible.details["restarts"]
    assert isinstance(restarts, int)
    assert restarts > 0
    assert every.details["restarts"] == 0  # no visible set: nothing to grow


def test_a_bounded_search_blind_to_the_runqueue_loses_the_update() -> None:
    target = ThreadsTarget(lost_update)
    assert explore(target, BoundedDFS(1)).final_states == {1, 2}
    planted = explore(target, BoundedDFS(1), visibility=_BlindTo("runq"))
    assert planted.details["bound_exhausted"]  # it believes it has seen everything
    assert planted.final_states == {2}


def test_unbounded_and_sharded_searches_choose_at_every_point() -> None:
    # Unbounded DFS is the reference the reductions are checked against; shards
    # must agree on one tree, which a set each learns on its own would not give.
    target = ThreadsTarget(lost_update)
    for search in (
        BoundedDFS(None),
        make_strategy("dfs", max_preemptions=1, shard=(0, 2)),
    ):
        res = explore(target, search, runs=1000)
        assert res.choices == res.points
        assert "visible_objects" not in res.details
