"""DFS within a preemption bound, reduced, against the same bound unreduced.

Within a bound, DFS reduces twice (xensched.explore.dfs): it chooses only at visible
accesses (xensched.explore.visible: unshared objects, and shared ones that one lock
guards), starting its round again whenever the scheduling points grow, and a thread
it preempts sleeps until a step dependent on its pending operation runs. Either way,
the executions left out are each equivalent to one within the same bound that is run,
so the reduced search must reach exactly the final states and violation kinds of the
unreduced one (every execution within the bound, at every point): checked on small
programs drawn at random (with accesses of each thread's own cell mixed in, which
are what become invisible; with three threads; and mostly under a lock, which is
what guards a cell), on the hand-written soundness programs, and on the round trip. Two planted defects, a visible set blind to the
runqueue and a sleep that ignores dependence, are shown to lose the update that the
unreduced search finds, so the comparison can fail.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import pytest

import xensched.explore.tree
from tests.explore.test_random_programs import OPS, plan_of, program_of
from tests.explore.test_soundness import PROGRAMS, lost_update
from tests.explore.test_visible import _BlindTo, explore
from xensched.explore import BoundedDFS, Explorer, ScenarioTarget, make_strategy
from xensched.explore.threads import ThreadsTarget
from xensched.explore.visible import Visibility
from xensched.scenario import round_trip

if TYPE_CHECKING:
    from collections.abc import Callable

    from xensched.explore import ExploreResult
    from xensched.explore.engine import Target
    from xensched.explore.threads import World

RUNS = 50_000


def both(
    target: Target, bound: int, *, all_points: bool = False
) -> tuple[ExploreResult, ExploreResult]:
    """The reduced bounded search (at visible points unless ``all_points``) and the
    unreduced one."""
    reduced = explore(target, BoundedDFS(bound), runs=RUNS, all_points=all_points)
    every = explore(
        target, BoundedDFS(bound, reduced=False), runs=RUNS, all_points=True
    )
    assert reduced.details["bound_exhausted"]
    assert every.details["bound_exhausted"]
    return reduced, every


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
@pytest.mark.parametrize("all_points", [False, True], ids=["visible", "sleeps"])
def test_the_reduced_search_keeps_what_the_bound_reaches_on_random_programs(
    seed: int, bound: int, all_points: bool
) -> None:
    # ``sleeps``: at every point, so that the preempted threads' sleep is checked
    # on its own too.
    plan = with_own(seed)
    reduced, every = both(ThreadsTarget(program_of(plan)), bound, all_points=all_points)
    assert reduced.final_states == every.final_states, plan
    assert reduced.kinds == every.kinds, plan


def three_threads(seed: int) -> list[list[str]]:
    """Three threads of one to three operations each, ``own`` among them: more
    preemptions to move, and more threads to sleep, than ``plan_of`` draws."""
    rng = random.Random(20_000 + seed)
    return [
        [
            op
            + (
                rng.choice("xy")
                if op in ("load", "store", "locked")
                else "01"[rng.randint(0, 1)]
            )
            for op in (rng.choice((*OPS, "own")) for _ in range(rng.randint(1, 3)))
        ]
        for _ in range(3)
    ]


GUARDED_OPS = ("locked", "lload", "lstore", "locked", "lload", "own", "load", "test")


def guarded(seed: int) -> list[list[str]]:
    """Two or three threads whose accesses are mostly under the lock: cells that
    only such accesses touch are guarded (their accesses invisible), and a plain
    access among them takes the guard away."""
    rng = random.Random(30_000 + seed)
    threads = rng.randint(2, 3)
    return [
        [
            rng.choice(GUARDED_OPS) + rng.choice("xy")
            for _ in range(rng.randint(1, 3 if threads == 2 else 2))
        ]
        for _ in range(threads)
    ]


@pytest.mark.parametrize("bound", [1, 2])
@pytest.mark.parametrize(
    ("plans", "seed"),
    [
        pytest.param(three_threads, s, marks=pytest.mark.slow, id=f"three-{s}")
        for s in range(20)
    ]
    + [
        pytest.param(
            guarded, s, marks=[pytest.mark.slow] if s >= 6 else [], id=f"locked-{s}"
        )
        for s in range(30)
    ],
)
def test_the_reduced_search_keeps_what_the_bound_reaches_on_more_programs(
    plans: Callable[[int], list[list[str]]], seed: int, bound: int
) -> None:
    plan = plans(seed)
    reduced, every = both(ThreadsTarget(program_of(plan)), bound)
    assert reduced.final_states == every.final_states, plan
    assert reduced.kinds == every.kinds, plan


def test_the_locked_programs_have_guarded_cells() -> None:
    # The comparison above is not vacuous: most of those programs share a cell that
    # the lock guards, and the lockset makes fewer scheduling points.
    have = 0
    for seed in range(6):
        ex = Explorer(
            ThreadsTarget(program_of(guarded(seed))),
            BoundedDFS(2),
            runs=RUNS,
            keep_going=True,
        )
        res = ex.explore()
        vis = ex.visibility
        assert vis is not None
        have += any(vis.guards.get(label) for label in vis.shared)
        ex = Explorer(
            ThreadsTarget(program_of(guarded(seed))),
            BoundedDFS(2),
            runs=RUNS,
            keep_going=True,
        )
        ex.visibility = Visibility(locksets=False)
        assert res.choices <= ex.explore().choices
    assert have >= 3


def test_the_random_programs_do_reduce() -> None:
    # The comparison above is not vacuous: the own cells are invisible, and the
    # reduced search runs fewer steps in all (counting its executions cut short
    # where every enabled thread slept: on programs this small, those and the
    # executions run before a restart can outnumber the ones saved).
    fewer = 0
    for seed in range(6):
        reduced, every = both(ThreadsTarget(program_of(with_own(seed))), 2)
        assert reduced.choices < reduced.points
        fewer += reduced.points < every.points
    assert fewer >= 3


@pytest.mark.parametrize("program", PROGRAMS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("bound", [1, 2])
def test_the_reduced_search_keeps_what_the_bound_reaches_on_the_small_programs(
    program: Callable[[World], None], bound: int
) -> None:
    reduced, every = both(ThreadsTarget(program), bound)
    assert reduced.final_states == every.final_states
    assert reduced.kinds == every.kinds


@pytest.mark.parametrize("protocol", ["legacy", "fixed"])
def test_the_reduced_search_on_round_trip(protocol: str) -> None:
    reduced, every = both(ScenarioTarget(round_trip(protocol=protocol)), 1)
    assert reduced.kinds == every.kinds
    assert reduced.kinds == ({"lock-mismatch"} if protocol == "legacy" else set())
    assert reduced.final_states == every.final_states
    assert reduced.runs < every.runs
    assert reduced.points < 0.7 * every.points
    # The set grew as the first executions ran: the round started again each time.
    restarts = reduced.details["restarts"]
    assert isinstance(restarts, int)
    assert restarts > 0
    assert "restarts" not in every.details


def test_a_bounded_search_blind_to_the_runqueue_loses_the_update() -> None:
    target = ThreadsTarget(lost_update)
    assert explore(target, BoundedDFS(1)).final_states == {1, 2}
    planted = explore(target, BoundedDFS(1), visibility=_BlindTo("runq"))
    assert planted.details["bound_exhausted"]  # it believes it has seen everything
    assert planted.final_states == {2}


def read_twice(w: World) -> None:
    x, seen = w.cell("x", 0), w.cell("seen", (0, 0))

    def reader() -> None:
        first = x.load()
        seen.store((first, x.load()))

    w.thread("a", reader)
    w.thread("b", lambda: x.store(1))
    w.final_state(seen.peek)


def test_a_sleep_blind_to_dependence_misses_the_change_between_two_loads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # (0, 1) needs a preempted between its loads and resumed after b's store,
    # which depends on a's pending load: a sleep that ignores that (every step
    # taken as independent) never resumes a there.
    target = ThreadsTarget(read_twice)
    assert explore(target, BoundedDFS(1)).final_states == {(0, 0), (0, 1), (1, 1)}
    monkeypatch.setattr(xensched.explore.tree, "independent", lambda a, b: True)
    planted = explore(target, BoundedDFS(1))
    assert planted.details["bound_exhausted"]
    assert planted.final_states == {(0, 0), (1, 1)}


def test_a_preempted_thread_pending_a_write_does_not_sleep() -> None:
    # Why only a load: moving t1's unlock before what t2 and t0 ran would make t2's
    # lock enabled, and t2's switch to t0 a preemption it was not. A sleep for the
    # unlock lost two final states of this program (found by the random programs).
    plan = [["loadx"], ["lockedx", "loady"], ["loadx", "lockedx"]]
    reduced, every = both(ThreadsTarget(program_of(plan)), 1, all_points=True)
    assert reduced.final_states == every.final_states
    assert len(every.final_states) == 23


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
