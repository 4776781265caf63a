"""The strategies, the explorer's verdicts, replay, shrinking and the story."""

from __future__ import annotations

import json
from typing import cast

import pytest

from tests.explore.test_soundness import chain_of_three
from xensched.errors import ConfigError
from xensched.explore import (
    PCT,
    STRATEGIES,
    Explorer,
    RandomWalk,
    ScenarioTarget,
    make_strategy,
)
from xensched.explore.engine import ExploreResult
from xensched.explore.pct import pct_bound
from xensched.explore.replay import (
    Replay,
    ReplayDivergedError,
    ReplaySchedule,
    load_replay,
)
from xensched.explore.shrink import preemptions, shrink
from xensched.explore.story import record, render_story
from xensched.explore.threads import ThreadsTarget, World
from xensched.scenario import round_trip
from xensched.spinlock import spin_lock, spin_unlock


def abba(w: World) -> None:
    a, b = w.lock("A"), w.lock("B")

    def ab() -> None:
        spin_lock(a)
        spin_lock(b)
        spin_unlock(b)
        spin_unlock(a)

    def ba() -> None:
        spin_lock(b)
        spin_lock(a)
        spin_unlock(a)
        spin_unlock(b)

    w.thread("t0", ab)
    w.thread("t1", ba)


def spinner(w: World) -> None:
    flag = w.cell("flag", 0)

    def forever() -> None:
        while not flag.load():
            pass

    w.thread("spin", forever)


def test_every_strategy_is_made_by_name() -> None:
    for name in STRATEGIES:
        assert make_strategy(name, seed=1).name == name
    with pytest.raises(ConfigError, match="no strategy 'bogus'"):
        make_strategy("bogus")
    with pytest.raises(ConfigError, match="--max-preemptions"):
        make_strategy("pct", max_preemptions=1)
    bounded = make_strategy("dpor", max_preemptions=1)
    assert bounded.summary()["max_preemptions"] == 1


def test_the_portfolio_takes_turns_and_is_exhaustive_once_its_dpor_is() -> None:
    target = ThreadsTarget(chain_of_three)
    alone = Explorer(
        target, make_strategy("dpor"), runs=None, keep_going=True, collect_states=True
    ).explore()
    res = Explorer(
        target,
        make_strategy("portfolio", seed=1),
        runs=None,
        keep_going=True,
        collect_states=True,
    ).explore()
    assert (res.exhaustive, res.stop_reason) == (True, "exhausted")
    members = cast("list[dict[str, object]]", res.details["members"])
    assert [m["strategy"] for m in members] == [
        "dpor",
        "pct(depth 1)",
        "pct(depth 2)",
        "pct(depth 3)",
        "random",
    ]
    # One execution each per turn, until DPOR has none left: it alone covered all.
    assert [m["runs"] for m in members] == [alone.runs] * 5
    assert res.runs == 5 * alone.runs
    assert res.final_states == alone.final_states


def test_the_portfolio_within_a_bound_runs_bounded_dpor_then_samples() -> None:
    target = ThreadsTarget(chain_of_three)
    bpor = Explorer(
        target, make_strategy("dpor", max_preemptions=1), runs=None, keep_going=True
    ).explore()
    assert bpor.details["bound_exhausted"]
    assert not bpor.exhaustive
    cap = 5 * bpor.runs + 10
    res = Explorer(
        target,
        make_strategy("portfolio", seed=1, max_preemptions=1),
        runs=cap,
        keep_going=True,
    ).explore()
    members = cast("list[dict[str, object]]", res.details["members"])
    first = members[0]
    assert (first["strategy"], first["max_preemptions"]) == ("dpor", 1)
    assert first["runs"] == bpor.runs
    assert first["bound_exhausted"] is True
    # A bounded member proves nothing beyond its bound: the others go on.
    assert (res.exhaustive, res.stop_reason, res.runs) == (False, "runs reached", cap)


def test_a_deadlock_is_found_and_names_its_wait_for_graph() -> None:
    res = Explorer(ThreadsTarget(abba), make_strategy("dpor"), runs=100).explore()
    assert res.kinds == {"deadlock"}
    [v] = [v for v in res.violations if v.kind.value == "deadlock"]
    assert "wait-for graph" in v.message
    assert "t0 -> t1 (B)" in v.message or "t1 -> t0 (A)" in v.message


def test_a_step_bound_catches_a_livelock() -> None:
    res = Explorer(
        ThreadsTarget(spinner), make_strategy("random"), runs=1, max_steps=50
    ).explore()
    assert res.kinds == {"livelock"}


def test_random_and_pct_runs_are_a_function_of_seed_and_run() -> None:
    sc = round_trip(protocol="fixed")

    def schedules(search: RandomWalk | PCT) -> list[tuple[str, ...]]:
        ex = Explorer(ScenarioTarget(sc), search, runs=3)
        out = []
        for i in range(3):
            search.begin(i)
            out.append(ex.execute(i).schedule)
        return out

    assert schedules(RandomWalk(7)) == schedules(RandomWalk(7))
    assert schedules(RandomWalk(7)) != schedules(RandomWalk(8))
    assert schedules(PCT(7, 2)) == schedules(PCT(7, 2))


def test_pct_reports_its_bound() -> None:
    assert pct_bound(2, 10, 3) == pytest.approx(1 / 200)
    res = Explorer(
        ScenarioTarget(round_trip(protocol="fixed")), PCT(1, 2), runs=5
    ).explore()
    d = res.details
    assert d["threads"] == 2
    assert d["per_run_probability"] == pytest.approx(
        pct_bound(2, int(str(d["steps_bound"])), 2)
    )
    # Only the runs since the visible set last grew count (the first one grew it).
    counted = int(str(d["counted_runs"]))
    assert 0 < counted < 5
    miss = float(str(d["miss_probability"]))
    assert miss == pytest.approx((1 - float(str(d["per_run_probability"]))) ** counted)


def test_pct_change_points_fall_among_the_k_steps_it_counts() -> None:
    # The engine numbers its choices from 0, so the k steps are 0..k-1: a change
    # point at k never happens, one at 0 can (the bound counts both ends).
    pct = PCT(seed=7, depth=2)
    pct.k = 3
    seen = set()
    for run in range(64):
        pct.begin(run)
        seen |= set(pct._changes)
    assert seen == {0, 1, 2}


def test_dfs_says_whether_its_bound_cut_the_search() -> None:
    target = ThreadsTarget(abba)
    bounded = Explorer(target, make_strategy("dfs", max_preemptions=0)).explore()
    assert bounded.stop_reason == "exhausted"
    assert not bounded.exhaustive
    assert bounded.details["pruned_by_bound"] is True
    full = Explorer(target, make_strategy("dfs"), keep_going=True).explore()
    assert full.exhaustive


def test_bounded_dfs_searches_fewer_preemptions_first() -> None:
    # Iterative context bounding: the legacy round trip fails with one preemption,
    # so a search bounded by 3 stops in its round of bound 1, on an execution with
    # one preemption; a search that began at its bound (the deepest first) would
    # run on into executions with more.
    target = ScenarioTarget(round_trip(protocol="legacy"))
    res = Explorer(target, make_strategy("dfs", max_preemptions=3), runs=2000).explore()
    assert res.failing is not None
    assert res.details["bound_reached"] == 1
    assert preemptions(res.failing.steps) == 1
    # abba deadlocks only with a preemption: round 0 finds nothing, round 1 does.
    ab = Explorer(ThreadsTarget(abba), make_strategy("dfs", max_preemptions=2))
    found = ab.explore()
    assert found.kinds == {"deadlock"}
    assert found.details["bound_reached"] == 1


def test_bounded_dfs_stops_at_the_round_that_pruned_nothing() -> None:
    def alone(w: World) -> None:
        c = w.cell("c", 0)
        w.thread("t", lambda: c.store(1))

    res = Explorer(ThreadsTarget(alone), make_strategy("dfs", max_preemptions=5))
    done = res.explore()
    assert done.exhaustive
    assert done.details["bound_reached"] == 0
    assert done.runs == 1


@pytest.fixture(scope="module")
def legacy_failure() -> tuple[object, ...]:
    sc = round_trip(protocol="legacy")
    res = Explorer(ScenarioTarget(sc), make_strategy("dpor"), runs=500).explore()
    assert res.failing is not None
    return sc, res


def test_replay_reproduces_the_violation_at_its_step(legacy_failure, tmp_path) -> None:  # type: ignore[no-untyped-def]
    sc, res = legacy_failure
    replay = Replay.of(res.failing, seed=0, strategy="dpor", scenario=sc)
    path = tmp_path / "r.json"
    path.write_text(replay.to_json())
    again = load_replay(str(path))
    assert again == replay
    for _ in range(2):  # every time
        play = ReplaySchedule(again.schedule, again.accesses)
        play.begin(0)
        ex = Explorer(ScenarioTarget(sc), play, runs=1).execute(0)
        assert again.violation is not None
        assert ex.violations[0].kind.value == again.violation.kind
        assert ex.violation_steps[0] == again.violation.step


def test_replay_says_where_it_diverged(legacy_failure) -> None:  # type: ignore[no-untyped-def]
    sc, res = legacy_failure
    accesses = [s.op.describe() for s in res.failing.steps]
    accesses[7] = "load something-else"
    play = ReplaySchedule(res.failing.schedule, accesses)
    play.begin(0)
    with pytest.raises(ReplayDivergedError, match=r"diverged at step 7: .* now it is"):
        Explorer(ScenarioTarget(sc), play, runs=1).execute(0)
    # A schedule for another scenario: a thread that is not there.
    other = ["nobody", *res.failing.schedule[1:]]
    play = ReplaySchedule(other, [s.op.describe() for s in res.failing.steps])
    play.begin(0)
    with pytest.raises(ReplayDivergedError, match=r"step 0: nobody .* not enabled"):
        Explorer(ScenarioTarget(sc), play, runs=1).execute(0)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(version=2), "replay.version: 2"),
        (lambda d: d.update(format="x"), "replay.format"),
        (lambda d: d.pop("schedule"), "replay.schedule: missing"),
        (lambda d: d["accesses"].pop(), "replay.accesses: .* entries for"),
        (lambda d: d.update(scenario=None), "needs a scenario or a nodeid"),
        (lambda d: d["violation"].update(step=10**6), "replay.violation.step"),
        (lambda d: d.update(extra=1), "extra"),
    ],
)
def test_a_malformed_replay_file_is_one_line(  # type: ignore[no-untyped-def]
    legacy_failure, tmp_path, edit, message
) -> None:
    sc, res = legacy_failure
    d = Replay.of(res.failing, seed=0, strategy="dpor", scenario=sc).to_dict()
    edit(d)
    path = tmp_path / "r.json"
    path.write_text(json.dumps(d))
    with pytest.raises(ConfigError, match=message) as info:
        load_replay(str(path))
    assert "\n" not in str(info.value)


def test_shrinking_keeps_the_violation_and_reads_as_a_story(legacy_failure) -> None:  # type: ignore[no-untyped-def]
    sc, res = legacy_failure
    s = shrink(res.failing, "lock-mismatch", scenario=sc)
    assert s.after <= s.before
    assert s.after[1] < s.before[1]  # fewer steps to the violation
    assert s.execution.violations[0].kind.value == "lock-mismatch"
    assert preemptions(s.execution.steps) <= preemptions(res.failing.steps)
    ex, rec = record(ScenarioTarget(s.scenario or sc), s.execution.schedule)
    story = render_story(rec, ex.steps)
    assert "!! lock-mismatch on cpu1 in schedule()" in story
    assert "(preempts xl)" in story
    assert "schedule(): lock credit2@p.rqd[0].lock" in story


def test_an_interrupted_shrink_keeps_the_smallest_failing_execution_so_far(  # type: ignore[no-untyped-def]
    legacy_failure, monkeypatch
) -> None:
    sc, res = legacy_failure
    real = Explorer.execute
    calls = [0]

    def execute(self, index, instruments=None):  # type: ignore[no-untyped-def]
        calls[0] += 1
        # Ctrl-C in a schedule edit's run, after the shrinking dropped a program's
        # operation (at the 40th).
        if calls[0] == 43:
            raise KeyboardInterrupt
        return real(self, index, instruments)

    monkeypatch.setattr(Explorer, "execute", execute)
    try:
        s = shrink(res.failing, "lock-mismatch", scenario=sc)
    except KeyboardInterrupt:
        pytest.fail("the interrupt escaped shrink(): the executions it kept are lost")
    monkeypatch.undo()
    assert s.interrupted
    assert s.after < s.before  # what it found before the interrupt is kept
    assert s.execution.violations[0].kind.value == "lock-mismatch"
    # Still a failing execution: run again, it shows the violation.
    ex, _ = record(ScenarioTarget(s.scenario or sc), s.execution.schedule)
    assert ex.violations[0].kind.value == "lock-mismatch"


def test_a_shrink_ends_when_its_search_was_interrupted(  # type: ignore[no-untyped-def]
    legacy_failure, monkeypatch
) -> None:
    # explore() ends quietly on Ctrl-C, with a result that says so: the shrinking
    # must not go on to the next smaller scenario as if nothing happened.
    sc, res = legacy_failure
    searches = []

    def explore(self):  # type: ignore[no-untyped-def]
        searches.append(self)
        return ExploreResult("dpor", 0, interrupted=True, stop_reason="interrupted")

    monkeypatch.setattr(Explorer, "explore", explore)
    s = shrink(res.failing, "lock-mismatch", scenario=sc)
    assert len(searches) == 1
    assert s.interrupted
    assert s.execution.violations[0].kind.value == "lock-mismatch"


def test_shrink_reports_its_progress(legacy_failure) -> None:  # type: ignore[no-untyped-def]
    sc, res = legacy_failure
    seen: list[tuple[int, tuple[int, int, int]]] = []
    s = shrink(
        res.failing,
        "lock-mismatch",
        scenario=sc,
        progress=lambda runs, size: seen.append((runs, size)),
    )
    runs = [r for r, _ in seen]
    assert runs == sorted(runs)
    assert 0 < runs[-1] <= s.runs
    assert seen[0][1] == s.before
    assert seen[-1][1] == s.after
    assert not s.interrupted
