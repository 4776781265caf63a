"""``xensched bench --only e``: the exploration figures (bench_explore.py), their text,
their JSON against the shipped schema, the median over seeds with misses, the full
form's 32 moves, and the worker figure's command line."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import pytest

from tests._schemas import validate
from xensched.cli import main
from xensched.explore import ExploreResult
from xensched_stress import bench_explore as be

if TYPE_CHECKING:
    from pathlib import Path

    from xensched.scenario import Scenario


def _fake_process(workers: int, cap: float) -> dict[str, object]:
    return {
        "workers": workers,
        "runs": 10 * workers,
        "exhaustive": True,
        "wall_s": 1.0,
        "runs_per_s": 10.0 * workers,
        "exploring_s": 0.5,
        "kinds": [],
    }


def test_quick_form_with_tiny_caps_text_and_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every figure, real explorations capped at a few tens of ms (the worker
    processes stubbed: see the last test); about 2 s."""
    monkeypatch.setattr(be, "_explore_process", _fake_process)
    f = tmp_path / "e.json"
    argv = ["bench", "--only=e", "--seeds=1", "--find-cap=0.05", "--dfs-budget=0.05"]
    argv += ["--move-cap=0.05", "--dpor-cap=0.1", "--json", str(f)]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert err == ""
    data = json.loads(f.read_text(encoding="utf-8"))
    validate("bench", data)
    e = data["explore"]
    assert e["full"] is False
    labels = [s["strategy"] for s in e["find"]["strategies"]]
    assert labels == [spec[0] for spec in be.FIND_STRATEGIES]
    dpor = next(s for s in e["find"]["strategies"] if s["strategy"] == "dpor")
    assert dpor["deterministic"] is True
    assert {r["seed"] for r in dpor["runs"]} == {1}
    moves = [(m["boot"], m["pool"], m["direction"]) for m in e["bounded_dfs"]["moves"]]
    assert moves == list(be.QUICK_MOVES)
    # 50 ms cannot exhaust 2 preemptions of switch-race: it must say so.
    assert all(
        m["fixed"]["bound"] == "bound not exhausted" for m in e["bounded_dfs"]["moves"]
    )
    assert "bound not exhausted" in out
    dmoves = [(m["boot"], m["pool"], m["direction"]) for m in e["dpor_moves"]["moves"]]
    assert dmoves == list(be.QUICK_DPOR_MOVES)
    assert e["dpor_moves"]["aim_met"] is False  # judged on all 32 only
    assert e["prove"]["dpor"]["kinds"] == []  # the fixed round trip is clean
    assert e["points_per_s"]["points"] > 0
    assert [r["workers"] for r in e["workers"]["runs"]] == [1, 2]
    assert e["workers"]["speedup"] == 2.0
    # Twice the runs in the same wall time: the search itself was not shorter.
    assert e["workers"]["exhaustion_speedup"] == 1.0
    assert "time to exhaust the exploration: 1.00x (20 executions for the 10" in out
    heads = re.findall(r"^  (\d)\. ", out, re.M)
    assert heads == ["1", "2", "5", "3", "4", "6"]
    assert re.search(r"random +(median|not found in 2000 runs / 0.05 s)", out)
    assert "aim: under 13.0 ms median (interleave-test" in out
    assert "(the aim is judged on all 32: --explore-full)" in out


def _result(
    found: bool, seconds: float = 0.01, runs: int = 3, **kw: Any
) -> ExploreResult:
    r = ExploreResult("x", 0, runs=runs, seconds=seconds, **kw)
    r.stop_reason = "violation found" if found else "time reached"
    if found:
        r.kinds = {"lock-mismatch"}
    return r


def test_find_stops_once_the_misses_decide_the_median(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[int] = []
    # Seeds 1 and 3 find it; 2, 4, 5 miss: with 6 seeds the 3rd miss decides.
    outcome = {1: True, 2: False, 3: True, 4: False, 5: False, 6: True}

    def fake(sc: Scenario, strategy: str, *, seed: int = 1, **kw: Any) -> ExploreResult:
        seen.append(seed)
        return _result(outcome[seed])

    monkeypatch.setattr(be, "_explore", fake)
    cfg = be.ExploreBench(seeds=6, base_seed=1, find_cap=0.5)
    row = be._find_one("random", "random", {}, False, cfg)
    assert seen == [1, 2, 3, 4, 5]
    assert (row["seeds_tried"], row["found"], row["median_s"]) == (5, 2, None)
    assert row["median_runs"] is None
    assert "not found in 2000 runs / 0.5 s (median)" in capsys.readouterr().out

    seen.clear()
    outcome.update({4: True, 5: True})
    row = be._find_one("random", "random", {}, False, cfg)
    assert seen == [1, 2, 3, 4, 5, 6]
    assert (row["found"], row["median_s"], row["median_runs"]) == (5, 0.01, 3)


def test_a_deterministic_strategy_is_timed_on_one_seed_or_once_on_a_miss(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[int] = []
    found = [True]

    def fake(sc: Scenario, strategy: str, *, seed: int = 1, **kw: Any) -> ExploreResult:
        seen.append(seed)
        return _result(found[0], seconds=0.002 * len(seen), runs=21)

    monkeypatch.setattr(be, "_explore", fake)
    cfg = be.ExploreBench(seeds=20, base_seed=4)
    row = be._find_one("dpor", "dpor", {}, True, cfg)
    assert seen == [4] * be.DETERMINISTIC_REPEATS
    assert (row["median_s"], row["median_runs"], row["aim_met"]) == (0.004, 21, True)
    assert "timed 3x" in capsys.readouterr().out
    seen.clear()
    found[0] = False
    row = be._find_one("dpor", "dpor", {}, True, cfg)
    assert seen == [4]
    assert "not found: timed once" in capsys.readouterr().out


def test_the_full_form_covers_all_32_moves_and_judges_the_aim(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    scenarios: list[tuple[str, str, str, str, int | None]] = []

    def fake(sc: Scenario, strategy: str, **kw: Any) -> ExploreResult:
        bound = kw.get("max_preemptions")
        scenarios.append((sc.boot, sc.pools[0].sched, sc.protocol, strategy, bound))
        r = _result(False, exhaustive=True)
        r.stop_reason = "exhausted"
        return r

    monkeypatch.setattr(be, "_explore", fake)
    # What reproduce reports, stubbed: the first move's legacy run misses it.
    monkeypatch.setattr(
        be,
        "_legacy_problems",
        lambda m: {"mutual-exclusion"} if m == be.ALL_MOVES[0] else set(),
    )
    cfg = be.ExploreBench(full=True)
    bounded = be.bench_bounded(cfg)
    dpor = be.bench_dpor_moves(cfg)
    assert len(bounded["moves"]) == len(dpor["moves"]) == 32  # type: ignore[arg-type]
    assert len(set(be.ALL_MOVES)) == 32
    # Figure 3 bounds each move (add and remove) on both protocols; figure 4 runs
    # each fixed one without a bound.
    assert scenarios.count(("credit", "credit2", "legacy", "dpor", 2)) == 2
    assert scenarios.count(("rtds", "arinc653", "fixed", "dpor", 2)) == 2
    assert scenarios.count(("rtds", "arinc653", "fixed", "dpor", None)) == 2
    assert len(scenarios) == 3 * 32
    assert (dpor["proven"], dpor["aim_met"]) == (32, True)
    out = capsys.readouterr().out
    assert "=> fixed: 32 of 32 moves clean, bound exhausted in 32" in out
    assert "every problem reproduce reports found in 31 of 32" in out
    assert "MISSED mutual-exclusion" in out
    assert bounded["moves"][0]["legacy"]["missed"] == ["mutual-exclusion"]  # type: ignore[index]
    assert "=> 32 of 32 moves proven in" in out


def test_the_worker_figure_runs_xensched_explore() -> None:
    """One real ``xensched explore --workers 1`` in a fresh interpreter; about 2 s."""
    row = be._explore_process(1, 0.2)
    assert row["workers"] == 1
    assert isinstance(row["runs"], int)
    assert row["runs"] >= 1
    assert row["exhaustive"] is False  # 0.2 s cannot exhaust the move
    assert row["kinds"] == []
    assert 0.2 <= float(row["exploring_s"]) < float(row["wall_s"])  # type: ignore[arg-type]
