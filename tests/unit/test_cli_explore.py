"""``xensched explore`` and ``xensched replay`` through the real entry point.

The legacy round trip is explored once per module (the race found, shrunk, told as a
story, written as a replay file, a timeline and JSON) and its files are then read and
replayed, tampered with and broken. The exhaustive clean search runs the round trip
with an ARINC 653 pool, the smallest of the pairings (96 executions, under a second).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast

import pytest
from jsonschema import Draft202012Validator

import xensched
from tests._cli_process import CliProcess
from tests._outputs import no_space, reader_gone
from tests._schemas import errors, schema, validate
from xensched.cli import build_parser, main
from xensched.drivers.workers import one_cpu
from xensched.explore import command
from xensched.explore.engine import Explorer, ExploreResult, ScenarioTarget
from xensched.scenario import builtin
from xensched.signals import RaiseInterrupt
from xensched.violation import Violation, ViolationKind

if TYPE_CHECKING:
    from collections.abc import Iterator

    from xensched.explore.engine import Execution

LEGACY = ["explore", "--seed", "1", "--protocol", "legacy", "--no-progress"]
#: Exhaustive with DPOR and clean: the fixed round trip into an ARINC 653 pool.
FIXED = [*LEGACY[:3], "--protocol", "fixed", "--pool", "arinc653", "--no-progress"]
#: A command stopped by a signal ends within this (a bound, not a measure)...
_PROMPT = 30.0
#: ...and the searches it stops would run for this long (their --seconds) if the
#: signal were not heard.
_LONG = 120


@dataclass(frozen=True, slots=True)
class Ran:
    code: int
    out: str
    err: str
    dir: Path

    def json(self, name: str = "e.json") -> Any:
        return json.loads((self.dir / name).read_text(encoding="utf-8"))


def _main(argv: list[str], where: Path) -> Ran:
    """``main(argv)`` with its output kept (module fixtures cannot use capsys)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return Ran(code, out.getvalue(), err.getvalue(), where)


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def legacy(tmp_path_factory: pytest.TempPathFactory) -> Ran:
    """The legacy round trip explored (dpor), shrunk and written: about 1.5 s."""
    d = tmp_path_factory.mktemp("legacy")
    files = ["--json", d / "e.json", "--replay-out", d / "r.json"]
    return _main([*LEGACY, *map(str, files), "--timeline", str(d / "t.json")], d)


@pytest.fixture(scope="module")
def fixed(tmp_path_factory: pytest.TempPathFactory) -> Ran:
    d = tmp_path_factory.mktemp("fixed")
    return _main(
        [*FIXED, "--json", str(d / "e.json"), "--timeline", str(d / "t.json")], d
    )


def _one_line_error(err: str, cmd: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"xensched {cmd}: error: ")
    return lines[0]


# -- explore: the legacy race ------------------------------------------------------------


def test_explore_finds_shrinks_and_tells_the_legacy_race(legacy: Ran) -> None:
    assert legacy.code == 1, legacy.err
    lines = legacy.out.splitlines()
    assert lines[0] == (
        f"xensched {xensched.__version__} explore: seed 1, scenario round-trip "
        "(legacy), strategy dpor, 1 worker"
    )
    assert re.match(r"\d+ runs \(\d+ distinct schedules, 0 cut short\) in ", lines[1])
    assert lines[1].endswith("; not exhaustive; violation found")
    assert any(re.match(r"shrunk in \d+ runs: ", line) for line in lines)
    # The story: a row per step, then the violation under the step that saw it.
    assert "the failing execution (1 preemptions):" in lines
    bang = [line.strip() for line in lines if line.strip().startswith("!! ")]
    assert bang[0].startswith("!! lock-mismatch on cpu1 in schedule(): ")
    assert re.search(r"(?m)^ +\d+  pcpu1 +schedule\(\): ", legacy.out)
    replay = legacy.dir / "r.json"
    assert f"replay: xensched replay {replay}" in lines
    assert f"timeline written to {legacy.dir / 't.json'}" in lines
    assert lines[-1] == f"result written to {legacy.dir / 'e.json'}"
    assert legacy.err == ""


def test_explore_writes_the_replay_file(legacy: Ran) -> None:
    data = legacy.json("r.json")
    validate("replay", data)
    assert data["scenario"]["name"] == "round-trip"
    assert data["scenario"]["protocol"] == "legacy"
    assert (data["seed"], data["strategy"], data["nodeid"]) == (1, "dpor", None)
    assert data["options"] == {"max_steps": 20_000}
    assert len(data["schedule"]) == len(data["accesses"]) > 0
    assert set(data["schedule"]) == {"xl", "pcpu1"}
    v = data["violation"]
    assert (v["kind"], v["cpu"], v["context"]) == ("lock-mismatch", 1, "pcpu1")
    assert data["schedule"][v["step"]] == "pcpu1"


def test_explore_json(legacy: Ran) -> None:
    doc = legacy.json()
    validate("explore", doc)
    assert doc["command"] == "explore"
    assert (doc["scenario"], doc["protocol"], doc["strategy"]) == (
        "round-trip",
        "legacy",
        "dpor",
    )
    assert doc["seed"] == 1
    assert 0 < doc["distinct"] <= doc["runs"]
    assert doc["points"] > doc["runs"]
    assert doc["points_per_second"] > 0
    assert doc["exhaustive"] is False
    assert doc["stop_reason"] == "violation found"
    assert doc["kinds"] == ["lock-mismatch"]
    assert doc["replay"] == str(legacy.dir / "r.json")
    assert doc["exit_code"] == 1
    # Each violation is shaped as in a stress report.
    as_in_stress = Draft202012Validator(
        {"$ref": "#/$defs/violation", "$defs": schema("stress")["$defs"]}
    )
    assert doc["violations"]
    for v in doc["violations"]:
        as_in_stress.validate(v)
    assert doc["violations"][0]["kind"] == "lock-mismatch"
    assert doc["violations"][0]["events"]


def test_explore_timeline_is_a_chrome_trace(legacy: Ran) -> None:
    trace = legacy.json("t.json")
    events = trace["traceEvents"]
    assert isinstance(events, list)
    names = {e["args"]["name"] for e in events if e.get("name") == "thread_name"}
    assert names == {"pcpu1", "xl"}
    assert any(e["ph"] == "X" for e in events)


def test_keep_going_writes_a_replay_file_for_each_kind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The legacy RTDS <-> Credit2 round trip shows three kinds within 300 runs; each
    # gets a replay file that shows that kind again.
    r = tmp_path / "r.json"
    argv = [*LEGACY, "--boot", "rtds", "--pool", "credit2", "--keep-going"]
    argv += [
        "--runs",
        "300",
        "--replay-out",
        str(r),
        "--json",
        str(tmp_path / "e.json"),
    ]
    code, out, _ = _run(argv, capsys)
    assert code == 1
    doc = json.loads((tmp_path / "e.json").read_text())
    validate("explore", doc)
    first = json.loads(r.read_text())["violation"]["kind"]
    others = sorted(set(doc["kinds"]) - {first})
    assert others  # else the test shows nothing
    assert doc["replays"] == {k: str(tmp_path / f"r-{k}.json") for k in others}
    for kind, path in doc["replays"].items():
        assert f"replay ({kind}, not shrunk): xensched replay {path}" in out
        assert json.loads(Path(path).read_text())["violation"]["kind"] == kind
        code, out2, _ = _run(["replay", path], capsys)
        assert code == 1
        assert re.search(rf"(?m)^recorded: {kind} at step \d+: reproduced$", out2)


@pytest.mark.parametrize(
    ("path", "named"),
    [
        ("r.json", "r-assert.json"),
        ("out/r", "out/r-assert"),
        ("my.dir/r", "my.dir/r-assert"),
        (".replay", ".replay-assert"),  # was "-assert.replay": an option to a shell
        ("out/.r", "out/.r-assert"),
    ],
)
def test_keep_going_names_each_kind_s_file_beside_the_first(
    path: str, named: str
) -> None:
    assert command._kind_replay_path(path, "assert") == named


def test_explore_timeline_numbers_steps_as_the_story_does(legacy: Ran) -> None:
    # The violation's mark sits at the step of the story row the `!!` line is under
    # (and the replay file's), not at the count of accesses and notes before it.
    rows = legacy.out.split("!!", 1)[0].splitlines()[:-1]  # the last: the `!!` indent
    story_step = int(rows[-1].split()[0])
    marks = [e for e in legacy.json("t.json")["traceEvents"] if e.get("cat") == "mark"]
    assert [(m["name"], m["ts"]) for m in marks] == [("lock-mismatch", story_step)]
    assert legacy.json("r.json")["violation"]["step"] == story_step


def test_a_replay_file_that_cannot_be_written_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "replace", no_space(os.replace))
    r = tmp_path / "r.json"
    argv = [*LEGACY, "--no-shrink", "--replay-out", str(r)]
    code, out, err = _run(argv, capsys)
    assert code == 1  # the violations' status, not 4
    assert _one_line_error(err, "explore").endswith(
        f"--replay-out {r}: not written: No space left on device"
    )
    assert "replay: xensched replay" not in out
    assert not r.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        ([], ": is a directory"),
        (["--json", "xensched-replay-round-trip-1.json"], ": the same file as --json"),
    ],
)
def test_explore_checks_its_default_replay_file_before_the_search(
    argv: list[str],
    needle: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    if not argv:
        (tmp_path / "xensched-replay-round-trip-1.json").mkdir()
    code, out, err = _run([*LEGACY, *argv], capsys)
    assert (code, out) == (2, "")  # no header: refused before the search
    assert _one_line_error(err, "explore").endswith(
        "the default --replay-out xensched-replay-round-trip-1.json" + needle
    )


@pytest.mark.parametrize("option", ["--json", "--replay-out", "--timeline"])
def test_explore_does_not_write_over_its_scenario_file(
    option: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sc = tmp_path / "sc.json"
    text = builtin("round-trip").to_json()
    sc.write_text(text, encoding="utf-8")
    code, out, err = _run([*LEGACY, "--scenario", str(sc), option, str(sc)], capsys)
    assert (code, out) == (2, "")
    assert _one_line_error(err, "explore").endswith(
        f"{option} {sc}: the same file as the scenario file {sc} (an output never "
        "replaces an input)"
    )
    assert sc.read_text(encoding="utf-8") == text


# -- explore: exhaustive and clean, and shared among workers -----------------------------


def test_fixed_dpor_is_exhaustive_and_clean(fixed: Ran) -> None:
    assert fixed.code == 0, fixed.err
    assert "; exhaustive; exhausted" in fixed.out
    assert "!!" not in fixed.out
    assert f"no violation: {fixed.dir / 't.json'} not written" in fixed.out
    assert not (fixed.dir / "t.json").exists()
    doc = fixed.json()
    validate("explore", doc)
    assert doc["exhaustive"] is True
    assert doc["stop_reason"] == "exhausted"
    assert (doc["violations"], doc["kinds"], doc["replay"]) == ([], [], None)
    assert doc["runs"] == doc["distinct"] > 1
    assert doc["exit_code"] == 0


def test_pin_keeps_the_exploration_on_one_cpu_and_finds_the_same(
    fixed: Ran, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cpus: list[int | None] = []
    real = Explorer

    def spy(*args: Any, **kw: Any) -> Explorer:
        cpus.append(kw.get("cpu"))
        return real(*args, **kw)

    monkeypatch.setattr(command, "Explorer", spy)
    ran = _main([*FIXED, "--pin", "--json", str(tmp_path / "e.json")], tmp_path)
    assert ran.code == 0, ran.err
    assert cpus == [one_cpu(0)]
    assert (ran.json()["runs"], ran.json()["exhaustive"]) == (
        fixed.json()["runs"],
        True,
    )
    cpus.clear()
    assert _main([*FIXED, "--runs", "1"], tmp_path).code == 0
    assert cpus == [None]  # not unless asked: two explorations would share a CPU


def test_two_workers_share_the_exhaustive_search(fixed: Ran, tmp_path: Path) -> None:
    ran = _main(
        [*FIXED, "--workers", "2", "--json", str(tmp_path / "e.json")], tmp_path
    )
    assert ran.code == 0, ran.err
    assert ran.out.splitlines()[0].endswith("strategy dpor, 2 workers")
    doc = ran.json()
    validate("explore", doc)
    # Disjoint subtrees that cover the tree: the same executions, once each.
    assert doc["runs"] == fixed.json()["runs"]
    assert doc["exhaustive"] is True
    assert doc["violations"] == []
    assert len(doc["details"]["workers"]) == 2


def test_observations_are_counted_once_across_workers(
    fixed: Ran, tmp_path: Path
) -> None:
    assert fixed.json()["observations"] is None  # off unless asked
    docs = []
    for workers in ("1", "2"):
        ran = _main(
            [
                *FIXED,
                "--observations",
                "--workers",
                workers,
                "--json",
                str(tmp_path / "e.json"),
            ],
            tmp_path,
        )
        assert ran.code == 0, ran.err
        assert re.search(
            r"^observations: \d+ distinct \(what each thread read\)", ran.out, re.M
        )
        doc = ran.json()
        validate("explore", doc)
        docs.append(doc)
    one, two = (d["observations"] for d in docs)
    # Fewer than the traces (reads fold), and the two workers' shares merged as
    # a union: the same behaviours, not their sum.
    assert 1 < one["distinct"] < docs[0]["runs"]
    assert two["distinct"] == one["distinct"]
    assert 1 <= one["last_new_run"] <= docs[0]["runs"]


def test_merge_takes_the_union_of_the_observations() -> None:
    a = ExploreResult("dpor", 1, runs=4, observations={b"x", b"y"})
    a.last_new_observation = 3
    b = ExploreResult("dpor", 1, runs=5, observations={b"y", b"z"})
    b.last_new_observation = 2
    merged = command._merge([a, b])
    assert merged.observations == {b"x", b"y", b"z"}
    assert merged.last_new_observation == 3
    assert command._merge([ExploreResult("dpor", 1)]).observations is None


def test_merge_keeps_the_kinds_each_worker_found() -> None:
    def found(*kinds: ViolationKind) -> ExploreResult:
        res = ExploreResult("dpor", 1, runs=3, distinct=3, points=30, seconds=0.5)
        res.violations = [Violation(k, 1, "schedule", k.value, "pcpu1") for k in kinds]
        res.kinds = {k.value for k in kinds}
        res.failing = cast("Execution", object())
        res.exhaustive = True
        res.stop_reason = "violation found"
        return res

    mismatch, crash = ViolationKind.LOCK_MISMATCH, ViolationKind.CRASH
    clean = ExploreResult("dpor", 1, runs=2, exhaustive=True, stop_reason="exhausted")
    merged = command._merge([found(mismatch), clean, found(mismatch, crash)])
    assert [v.kind for v in merged.violations] == [mismatch, crash]
    assert merged.kinds == {"lock-mismatch", "crash"}
    assert (merged.runs, merged.points, merged.seconds) == (8, 60, 0.5)
    assert merged.stop_reason == "violation found"
    assert merged.exhaustive is True


@pytest.mark.parametrize("strategy", ["random", "pct"])
def test_workers_share_out_the_runs_of_a_random_strategy(strategy: str) -> None:
    # What each worker process runs, run here: --runs 5 over 2 workers is 3 + 2.
    sc = builtin("round-trip", protocol="fixed", pool="arinc653").to_json(indent=None)
    opts = {
        "strategy": strategy,
        "depth": 3,
        "max_preemptions": None,
        "runs": 5,
        "seconds": None,
        "keep_going": False,
        "max_steps": 20_000,
    }
    parts = [command._shard_worker(sc, 1, opts, k, 2) for k in range(2)]
    assert [r.runs for r in parts] == [3, 2]
    assert command._merge(parts).runs == 5


# -- explore: strategies, scenarios and options ------------------------------------------


def test_pct_prints_its_probability_bound(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [*FIXED, "--strategy", "pct", "--runs", "5"]
    code, out, _ = _run(argv, capsys)
    assert code == 0
    assert re.search(
        r"(?m)^PCT depth 3: a bug of depth 3 among 2 threads and \d+ scheduling "
        r"points is found by one run with probability >= \S+; the [1-4] runs since "
        r"the set of visible objects last grew miss it with probability <= \S+$",
        out,
    )


def test_pct_takes_its_depth(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(
        [*FIXED, "--strategy", "pct", "--depth", "2", "--runs", "3"], capsys
    )
    assert code == 0
    assert re.search(r"(?m)^PCT depth 2: a bug of depth 2 among ", out)


@pytest.mark.parametrize(
    "argv",
    [
        ["--strategy", "random"],
        ["--strategy", "pct"],
        ["--strategy", "portfolio"],
        ["--strategy", "dfs", "--max-preemptions", "1"],
    ],
)
def test_all_points_is_taken_where_it_makes_a_choice(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run([*FIXED, *argv, "--all-points", "--runs", "2"], capsys)
    assert (code, err) == (0, "")


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("strategy", ["dfs", "dpor"])
def test_a_bounded_search_says_what_its_bound_covered(
    strategy: str, workers: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The fixed round trip within 1 preemption: the bound cuts executions, so the
    # search is not exhaustive, but every one within the bound is covered; shared
    # among workers too, each of which exhausted the bound on its subtree.
    report = tmp_path / "r.json"
    argv = [*FIXED, "--strategy", strategy, "--max-preemptions", "1"]
    argv += ["--workers", str(workers), "--json", str(report)]
    code, out, _ = _run(argv, capsys)
    assert code == 0
    assert out.splitlines()[1].endswith(
        "; not exhaustive, bound exhausted: all within 1 preemptions covered, "
        "more preemptions cut; exhausted"
    )
    details = json.loads(report.read_text())["details"]
    assert details["bound_exhausted"] is True
    assert details["max_preemptions"] == 1


def test_merge_says_bound_exhausted_only_if_every_worker_exhausted_it() -> None:
    def part(exhausted: bool) -> ExploreResult:
        r = ExploreResult("dpor", 1)
        r.details = {"bound_exhausted": exhausted, "max_preemptions": 2}
        return r

    assert command._merge([part(True), part(True)]).details["bound_exhausted"]
    assert "bound_exhausted" not in command._merge([part(True), part(False)]).details


def test_switch_race_remove_legacy_rtds_finds_the_race(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["explore", "--scenario", "switch-race", "--direction", "remove"]
    argv += ["--boot", "credit", "--pool", "rtds", "--protocol", "legacy"]
    # PCT with this seed finds it in a few runs (DPOR takes a thousand).
    argv += ["--strategy", "pct", "--seed", "2", "--no-shrink", "--no-progress"]
    argv += ["--replay-out", str(tmp_path / "r.json")]
    code, out, _ = _run(argv, capsys)
    assert code == 1
    assert "scenario switch-race (legacy), strategy pct" in out
    assert re.search(r"(?m)^ +!! lock-mismatch on cpu3 in schedule\(\): ", out)
    assert "shrunk in" not in out
    data = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    validate("replay", data)
    assert [(p["name"], p["sched"]) for p in data["scenario"]["pools"]] == [
        ("p", "rtds")
    ]
    assert data["scenario"]["boot"] == "credit"


@pytest.fixture
def explored(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The scenario each explore hands the explorer."""
    seen: list[Any] = []

    def spy(sc: Any, seed: int) -> ScenarioTarget:
        seen.append(sc)
        return ScenarioTarget(sc, seed)

    monkeypatch.setattr(command, "ScenarioTarget", spy)
    return seen


@pytest.mark.parametrize(
    ("options", "boot", "pools"),
    [
        (
            ["--pool", "credit2"],
            "credit",
            [{"name": "p", "sched": "credit2", "cpus": []}],
        ),
        (
            ["--boot", "rtds", "--pool", "credit"],
            "rtds",
            [{"name": "p", "sched": "credit", "cpus": []}],
        ),
        (
            ["--pool", "p:rtds"],
            "credit",
            [{"name": "p", "sched": "rtds", "cpus": []}],
        ),
    ],
)
def test_pool_is_a_scheduler_name_or_a_pool_spec(
    options: list[str],
    boot: str,
    pools: list[dict[str, Any]],
    explored: list[Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = [*LEGACY, "--strategy", "random", "--runs", "1", *options]
    code, _, err = _run(argv, capsys)
    assert code in (0, 1), err
    (sc,) = explored
    assert sc.name == "round-trip"
    assert (sc.boot, sc.to_dict()["pools"]) == (boot, pools)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (
            ["--strategy", "random", "--max-preemptions", "2"],
            "--max-preemptions bounds the dfs and dpor strategies (and the "
            "portfolio's dpor), not random",
        ),
        (
            ["--scenario", "nope"],
            "scenario 'nope': not a built-in (busy-peer-remove, patch-move, ",
        ),
        (["--direction", "add"], "--direction: scenario 'round-trip' has no direction"),
        (["--pool", "credit", "--pool", "rtds"], "--pool: one scheduler name"),
        (["--pool", "credit", "--pool", "p:rtds"], "scheduler names or pool specs"),
        (
            ["--scenario", "stress-default", "--pool", "rtds"],
            "--pool rtds: scenario 'stress-default' has no pool scheduler parameter",
        ),
        (["--json", "/no/such/dir/e.json"], "--json"),
        (["--scenario", "[]"], "error: scenario: expected an object, got a list"),
        (["--cpus", "1"], "error: --cpus 1: threads[1].cpu: cpu1 does not exist"),
        (["--cpus", "1", "--domains", "3"], "error: --cpus 1: threads[1].cpu: "),
        (["--pool", "p:credit:9"], "error: --pool p:credit:9: pools[0].cpus: cpu9 "),
        (
            ["--depth", "5", "--strategy", "dfs"],
            "--depth 5: the bug depth of --strategy pct, not of --strategy dfs",
        ),
        (
            ["--depth", "7"],
            "--depth 7: the bug depth of --strategy pct, not of --strategy dpor",
        ),
        (
            ["--depth", "2", "--strategy", "portfolio"],
            "not of --strategy portfolio (its PCT runs depths 1 to 3)",
        ),
        (
            ["--all-points"],
            "--all-points: --strategy dpor always chooses at every point",
        ),
        (
            ["--all-points", "--strategy", "dfs"],
            "--all-points: --strategy dfs without --max-preemptions chooses at every ",
        ),
        (
            [
                "--all-points",
                "--strategy",
                "dfs",
                "--max-preemptions",
                "1",
                "--workers",
                "2",
            ],
            "--all-points: --strategy dfs sharded by --workers 2 chooses at every point",
        ),
    ],
)
def test_explore_usage_errors_are_one_line_exit_2(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run([*LEGACY, *argv], capsys)
    assert code == 2
    assert out == ""
    assert needle in _one_line_error(err, "explore")


def test_explore_bad_option_values_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, needle in [
        (["--strategy", "bfs"], "argument --strategy: invalid choice: 'bfs'"),
        (["--pool", "bogus"], "argument --pool: pool 'bogus': expected NAME:SCHED"),
        (["--workers", "0"], "--workers 0: must be an integer in [1, 64]"),
    ]:
        code, out, err = _run([*LEGACY, *argv], capsys)
        assert (code, out) == (2, "")
        assert needle in err.splitlines()[-1]


# -- replay ------------------------------------------------------------------------------


def test_replay_reproduces_the_race(
    legacy: Ran, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    replay = legacy.dir / "r.json"
    step = legacy.json("r.json")["violation"]["step"]
    argv = ["replay", str(replay), "--json", str(tmp_path / "j.json")]
    code, out, err = _run(argv, capsys)
    assert (code, err) == (1, "")
    assert out.startswith(
        f"xensched {xensched.__version__} replay: {replay}: scenario round-trip "
        "(legacy), seed 1, "
    )
    assert re.search(r"(?m)^ +!! lock-mismatch on cpu1 in schedule\(\): ", out)
    assert f"recorded: lock-mismatch at step {step}: reproduced" in out
    doc = json.loads((tmp_path / "j.json").read_text(encoding="utf-8"))
    validate("explore", doc)
    assert (doc["command"], doc["strategy"], doc["runs"]) == ("replay", "replay", 1)
    assert doc["reproduced"] is True
    assert doc["kinds"] == ["lock-mismatch"]
    assert doc["replay"] == str(replay)
    assert doc["exit_code"] == 1


def test_replay_interrupted_still_writes_its_json(
    legacy: Ran,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def ctrl_c(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(command, "record", ctrl_c)
    argv = ["replay", str(legacy.dir / "r.json"), "--json", str(tmp_path / "j.json")]
    code, _, err = _run(argv, capsys)
    assert (code, err) == (130, "interrupted\n")
    doc = json.loads((tmp_path / "j.json").read_text(encoding="utf-8"))
    validate("explore", doc)
    assert (doc["stop_reason"], doc["exit_code"]) == ("interrupted", 130)
    assert doc["reproduced"] is None


def _write(path: Path, data: Any) -> str:
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("option", ["--json", "--timeline"])
@pytest.mark.parametrize("name", ["r.json", "./r.json", "link.json", "hard.json"])
def test_replay_does_not_write_over_its_replay_file(
    option: str,
    name: str,
    legacy: Ran,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    text = (legacy.dir / "r.json").read_text(encoding="utf-8")
    Path("r.json").write_text(text, encoding="utf-8")
    Path("link.json").symlink_to("r.json")
    os.link("r.json", "hard.json")
    code, out, err = _run(["replay", "r.json", option, name], capsys)
    assert (code, out) == (2, "")
    assert _one_line_error(err, "replay").endswith(
        f"{option} {name}: the same file as the replay file r.json (an output never "
        "replaces an input)"
    )
    assert Path("r.json").read_text(encoding="utf-8") == text


def test_replay_of_a_tampered_file_says_where_it_diverged(
    legacy: Ran, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = legacy.json("r.json")
    data["accesses"][10] = "load no_such_object"
    f = _write(tmp_path / "r.json", data)
    code, _, err = _run(["replay", f], capsys)
    assert code == 2
    line = _one_line_error(err, "replay")
    assert f"{f} does not fit this code and scenario: " in line
    assert "diverged at step 10: " in line
    assert "was to load no_such_object, but now it is to " in line


def _drop_schedule(d: dict[str, Any]) -> None:
    del d["schedule"]


def _shorten(d: dict[str, Any]) -> None:
    d["accesses"].pop()


@pytest.mark.parametrize(
    ("breaks", "needle"),
    [
        (None, re.escape("not JSON (line 1: ")),
        (
            lambda d: d.update(version=2),
            re.escape("replay.version: 2 (this xensched reads version 1)"),
        ),
        (_drop_schedule, "replay.schedule: missing"),
        (_shorten, r"replay.accesses: (\d+) entries for (\d+) steps"),
        (
            lambda d: d.update(seed="1"),
            "replay.seed: expected an integer, got a string",
        ),
        (lambda d: d.update(scenario=None), "replay: needs a scenario or a nodeid"),
    ],
)
def test_replay_of_a_malformed_file_names_the_field(
    breaks: Any,
    needle: str,
    legacy: Ran,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    f = tmp_path / "r.json"
    if breaks is None:
        f.write_text('{"format": ', encoding="utf-8")
    else:
        data = legacy.json("r.json")
        breaks(data)
        _write(f, data)
    code, out, err = _run(["replay", str(f)], capsys)
    assert (code, out) == (2, "")
    line = _one_line_error(err, "replay")
    m = re.search(re.escape(f"{f}: ") + needle, line)
    assert m, line
    if m.groups():
        assert int(m[1]) == int(m[2]) - 1


def _option(key: str, value: Any) -> Any:
    return lambda d: d["options"].update({key: value})


def _violation(key: str, value: Any) -> Any:
    return lambda d: d["violation"].update({key: value})


def _as_pytest_test(**options: Any) -> Any:
    return lambda d: d.update(scenario=None, nodeid="t.py::t", options=options)


@pytest.mark.parametrize(
    ("breaks", "needle"),
    [
        (
            _option("max_steps", "x"),
            "options.max_steps: expected an integer, got a string",
        ),
        (
            _option("max_steps", None),
            "options.max_steps: expected an integer, got null",
        ),
        (
            _option("max_steps", [1]),
            "options.max_steps: expected an integer, got a list",
        ),
        (
            _option("max_steps", 1.5),
            "options.max_steps: expected an integer, got a number",
        ),
        (
            _option("max_steps", True),
            "options.max_steps: expected an integer, got a boolean",
        ),
        (
            _option("max_steps", -5),
            "options.max_steps: -5: expected an integer in [10, 10000000]",
        ),
        (_option("max_steps", 9), "options.max_steps: 9: expected an integer in [10, "),
        (_option("max_steps", 10**7 + 1), "options.max_steps: 10000001: expected an "),
        (
            _option("lockdep", "yes"),
            "options.lockdep: expected a boolean, got a string",
        ),
        (
            _option("lockdep", "false"),
            "options.lockdep: expected a boolean, got a string",
        ),
        (
            _option("race_detector", "x"),
            "options.race_detector: expected a boolean, got a",
        ),
        (
            _option("mutant", "nonexistent"),
            "options.mutant: 'nonexistent' is not a mutant",
        ),
        (_option("mutant", None), "options.mutant: expected a string, got null"),
        (_option("mutant", ""), "options.mutant: empty"),
        (lambda d: d.update(seed=-5), "seed: -5: expected an integer >= 0"),
        (lambda d: d.update(strategy=""), "strategy: empty"),
        (lambda d: d.update(xensched=""), "xensched: empty"),
        (lambda d: d.update(nodeid="t.py::t"), "nodeid: given with a scenario"),
        (lambda d: d.update(scenario=None, nodeid=""), "nodeid: empty"),
        (
            _violation("kind", "bogus"),
            "violation.kind: 'bogus' is not a violation kind (",
        ),
        (_violation("cpu", -1), "violation.cpu: -1: expected an integer >= 0 or null"),
        (_violation("message", ""), "violation.message: empty"),
        (_as_pytest_test(shard=[]), "options.shard: expected [K, N] with 0 <= K < N"),
        (
            _as_pytest_test(shard=[0, 0]),
            "options.shard: expected [K, N] with 0 <= K < N",
        ),
    ],
)
def test_replay_refuses_what_its_schema_refuses_naming_the_field(
    breaks: Any,
    needle: str,
    legacy: Ran,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = legacy.json("r.json")
    breaks(data)
    assert errors("replay", data)
    f = _write(tmp_path / "r.json", data)
    code, out, err = _run(["replay", f], capsys)
    assert (code, out) == (2, "")
    assert f"{f}: replay.{needle}" in _one_line_error(err, "replay")


def test_the_story_and_the_replay_keep_the_max_steps_of_the_search(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The run re-made for the story once took the default bound: a livelock at
    # --max-steps 10 was told as 176 steps that ended well, with no mark.
    r = tmp_path / "r.json"
    argv = ["explore", "--scenario", "round-trip", "--protocol", "fixed"]
    argv += ["--strategy", "random", "--runs", "1", "--seed", "1", "--no-progress"]
    code, out, _ = _run([*argv, "--max-steps", "10", "--replay-out", str(r)], capsys)
    assert code == 1
    assert "!! livelock on - in explore(): the execution did not end within 10" in out
    doc = json.loads(r.read_text(encoding="utf-8"))
    assert (doc["violation"]["kind"], doc["violation"]["step"]) == ("livelock", 9)
    assert main(["replay", str(r)]) == 1
    assert "recorded: livelock at step 9: reproduced" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"\xff\xfe{}", "not UTF-8 text (invalid start byte)"),
        (None, "No such file or directory"),
    ],
)
def test_replay_of_a_file_that_is_not_text_is_a_one_line_error(
    content: bytes | None, why: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "r.json"
    if content is not None:
        f.write_bytes(content)
    assert main(["replay", str(f)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [f"xensched replay: error: {f}: {why}"]


def test_replay_takes_what_explore_writes_at_the_edges(
    legacy: Ran, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = legacy.json("r.json")
    data["options"].update(max_steps=10**7, mutant="legacy", lockdep=False)
    validate("replay", data)
    code, out, err = _run(["replay", _write(tmp_path / "r.json", data)], capsys)
    assert (code, err) == (1, "")
    assert "(legacy, mutant legacy), seed 1, " in out.splitlines()[0]
    assert "recorded: lock-mismatch at step " in out


@pytest.mark.parametrize(
    ("shard", "extra"), [(None, ""), ([1, 4], " --xensched-shards 4")]
)
def test_replay_of_a_pytest_test_says_how_to_replay_it(
    shard: list[int] | None,
    extra: str,
    legacy: Ran,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = legacy.json("r.json")
    nodeid = "tests/test_x.py::test_race[a b]"
    data.update(scenario=None, nodeid=nodeid, options={"shard": shard})
    validate("replay", data)
    f = _write(tmp_path / "r.json", data)
    code, out, err = _run(["replay", f], capsys)
    assert (code, out) == (2, "")
    assert _one_line_error(err, "replay").endswith(
        f"{f} records a pytest test ({nodeid}): replay it with pytest '{nodeid}' "
        f"--xensched-replay {f}{extra}"
    )


# -- help ----------------------------------------------------------------------------


def _subparser(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    p = sub.choices[name]
    assert isinstance(p, argparse.ArgumentParser)
    return p


@pytest.mark.parametrize("name", ["explore", "replay"])
def test_help_explains_every_option(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run([name, "--help"], capsys)
    assert code == 0
    for action in _subparser(name)._actions:
        assert action.help, action.option_strings or action.dest
        for opt in action.option_strings:
            assert opt in out
    flat = " ".join(out.split())
    assert "exit status: " in flat
    assert "128 + signal when interrupted" in flat


def _help_of(command: str, option: str) -> str:
    (action,) = [a for a in _subparser(command)._actions if option in a.option_strings]
    return " ".join(str(action.help).split())


@pytest.mark.parametrize("name", ["explore", "replay"])
def test_timeline_help_says_what_any_other_suffix_writes(
    name: str,
) -> None:
    # write_timeline writes Chrome JSON for any suffix but .svg and .html (x.png too),
    # and stress's help says so.
    assert "anything else (FILE.json) Chrome's trace-event JSON" in _help_of(
        name, "--timeline"
    )


@pytest.mark.parametrize("option", ["--schedules", "--moves"])
def test_schedules_and_moves_help_says_a_bounded_scenario_ignores_them(
    option: str,
) -> None:
    assert "changes nothing" in _help_of("explore", option)


def test_top_level_help_lists_both_commands(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["--help"], capsys)
    assert code == 0
    assert re.search(r"(?m)^  explore +explore ", out)
    assert re.search(r"(?m)^  replay +run a replay file", out)


# -- Ctrl-C ------------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_writes_the_json_and_exits_130(tmp_path: Path) -> None:
    f = tmp_path / "e.json"
    argv = ["-m", "xensched", "explore", "--strategy", "random", "--runs", "1000000"]
    argv += ["--protocol", "fixed", "--seed", "3", "--progress", "--json", str(f)]
    p = CliProcess(argv, tmp_path)
    try:
        p.wait_for(r"random: [1-9]\d* runs", stream="err")  # into the runs
        p.signal(signal.SIGINT)
        assert p.finish(timeout=30) == 130, p.err
    finally:
        p.kill()
    assert "Traceback" not in p.err
    assert re.search(r"(?m)^interrupted after \d+ runs$", p.err)
    assert "; not exhaustive; interrupted" in p.out
    assert f"result written to {f}" in p.out
    doc = json.loads(f.read_text(encoding="utf-8"))
    validate("explore", doc)
    assert doc["stop_reason"] == "interrupted"
    assert doc["exit_code"] == 130
    assert 0 < doc["runs"] < 1_000_000


#: Finds the legacy switch race at its second run, then shrinks for about 9 s (five
#: threads, 31 preemptions): time to interrupt the shrinking.
SHRINKS_LONG = [
    *("-m", "xensched", "explore", "--scenario", "switch-race", "--protocol"),
    *("legacy", "--strategy", "random", "--domains", "4", "--controllers", "2"),
    *("--seed", "3", "--no-progress"),
]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_shrinking_keeps_the_smallest_execution_so_far(
    signum: int, tmp_path: Path
) -> None:
    replay, report, timeline = (tmp_path / f for f in ("r.json", "e.json", "t.json"))
    files = ["--replay-out", replay, "--json", report, "--timeline", timeline]
    # Unbuffered: the line that ends the search is read as it is printed.
    p = CliProcess(
        [*SHRINKS_LONG, *map(str, files)], tmp_path, {"PYTHONUNBUFFERED": "1"}
    )
    try:
        p.wait_for(r"; violation found\n")
        time.sleep(0.5)  # into the shrinking
        p.signal(signum)
        assert p.finish(timeout=30) == 128 + signum, p.err
    finally:
        p.kill()
    assert "Traceback" not in p.err
    by = "" if signum == signal.SIGINT else f"{signal.Signals(signum).name} received: "
    assert p.err.endswith(f"{by}interrupted after 2 runs, while shrinking\n"), p.err
    assert re.search(
        r"(?m)^shrinking interrupted after \d+ runs: 31 -> \d+ preemptions, .* "
        r"\(the smallest failing execution so far\)$",
        p.out,
    )
    assert f"replay: xensched replay {replay}" in p.out
    assert f"timeline written to {timeline}" in p.out
    doc = json.loads(report.read_text(encoding="utf-8"))
    validate("explore", doc)
    assert (doc["stop_reason"], doc["exit_code"]) == ("interrupted", 128 + signum)
    assert doc["kinds"] == ["lock-mismatch"]
    assert doc["replay"] == str(replay)
    shrunk = doc["shrink"]
    assert shrunk["interrupted"] is True
    assert shrunk["before"]["preemptions"] == 31
    assert timeline.stat().st_size > 0
    # What it kept is a failing execution: its replay shows the violation.
    ran = _main(["replay", str(replay), "--json", str(tmp_path / "rj.json")], tmp_path)
    assert ran.code == 1, ran.err
    assert ran.json("rj.json")["reproduced"] is True


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize(
    ("signum", "group", "times"),
    [
        # A terminal's Ctrl-C, or GNU timeout -s INT: the workers get it too, and
        # the main process may get it twice.
        pytest.param(signal.SIGINT, True, 2, id="ctrl-c-twice-to-the-group"),
        # A CI job's timeout signalling the main process alone: it tells them.
        pytest.param(signal.SIGTERM, False, 1, id="sigterm-to-the-main-process"),
    ],
)
def test_a_signal_with_workers_keeps_what_they_explored(
    signum: int, group: bool, times: int, tmp_path: Path
) -> None:
    f = tmp_path / "e.json"
    argv = ["-m", "xensched", "explore", "--scenario", "switch-race", "--direction"]
    argv += ["remove", "--workers", "2", "--seed", "1", "--progress", "--json", str(f)]
    argv += ["--seconds", str(_LONG)]  # a search that would outlast _PROMPT
    p = CliProcess(argv, tmp_path, new_session=True)
    try:
        # The workers' counts on the progress line: they are exploring.
        p.wait_for(r"dpor: [1-9]\d* runs", stream="err")
        for _ in range(times):
            (p.signal_group if group else p.signal)(signum)
        sent = time.monotonic()
        assert p.finish(timeout=2 * _PROMPT) == 128 + signum, p.err
        assert time.monotonic() - sent < _PROMPT  # not the search's _LONG s
    finally:
        p.kill()
    assert "Traceback" not in p.err
    assert "handed in nothing" not in p.err
    assert f"result written to {f}" in p.out
    doc = json.loads(f.read_text(encoding="utf-8"))
    validate("explore", doc)
    assert (doc["stop_reason"], doc["exit_code"]) == ("interrupted", 128 + signum)
    assert doc["runs"] > 0  # the workers' runs, handed in when they stopped
    assert len(doc["details"]["workers"]) == 2


def _long_share() -> tuple[str, dict[str, Any]]:
    """A switch-race remove under DPOR, capped at _LONG s: as ``explore --workers``
    hands it to a worker (``_shard_process``), a search that would not end soon."""
    argv = ["explore", "--scenario", "switch-race", "--direction", "remove"]
    args = build_parser().parse_args([*argv, "--seconds", str(_LONG)])
    sc = builtin("switch-race", direction="remove")
    opts = command.share_options(args)
    return sc.to_json(indent=None), opts


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="POSIX masks")
def test_a_signal_as_the_workers_start_is_not_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The window: the parent holds its signals while it starts the workers. One
    # that came there was lost when the window ignored them: the search ran on.
    import multiprocessing.context

    start = multiprocessing.context.SpawnProcess.start

    def signalled_start(self: multiprocessing.context.SpawnProcess) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        start(self)

    monkeypatch.setattr(multiprocessing.context.SpawnProcess, "start", signalled_start)
    sc_json, opts = _long_share()
    from xensched.scenario import Scenario
    from xensched.signals import stop_signals

    stop = RaiseInterrupt()
    began = time.monotonic()
    with stop_signals(stop, (signal.SIGTERM,)):
        res = command._explore_workers(Scenario.from_json(sc_json), 1, opts, 2, stop)
    assert stop.signum == signal.SIGTERM
    assert res.interrupted
    assert res.stop_reason == "interrupted"
    assert time.monotonic() - began < _PROMPT  # not the _LONG s the search had


#: A worker as ``explore --workers`` starts one: with SIGTERM held, and one sent.
_SIGNALLED_WORKER = """
import os, queue, signal, sys, threading, time
from tests.unit.test_cli_explore import _long_share
from xensched.explore import command

sc_json, opts = _long_share()
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])
os.kill(os.getpid(), signal.SIGTERM)
box = queue.Queue()
began = time.monotonic()
command._shard_process(sc_json, 1, opts, 0, 1, [signal.SIGTERM], threading.Event(), box)
while (got := box.get_nowait())[0] == "progress":
    pass
what, k, res = got
print(what, res.runs, res.interrupted, round(time.monotonic() - began, 1))
"""


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="POSIX masks")
def test_a_worker_signalled_as_it_started_stops_at_once() -> None:
    # A worker starts with the parent's signals held: it must let them in once its
    # handlers are there, or a Ctrl-C sent as it started would go unheard. In a
    # process of its own: here pytest's threads, which do not hold it, would take it.
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", _SIGNALLED_WORKER],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=2 * _LONG,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    what, runs, interrupted, seconds = out.stdout.split()
    assert (what, interrupted) == ("result", "True")
    assert int(runs) <= 1
    assert float(seconds) < _PROMPT  # not the _LONG s the search had


class _Dropped(RaiseInterrupt):
    """A signal whose KeyboardInterrupt Python dropped (it landed in a weakref
    callback): only ``signum`` is set. ``made``: the instances; ``armings``: how
    many times it was armed (the search, then the shrinking)."""

    made: ClassVar[list[_Dropped]] = []

    def __init__(self) -> None:
        super().__init__()
        self.armings = 0
        self.made.append(self)

    @contextlib.contextmanager
    def armed(self) -> Iterator[None]:
        self.armings += 1
        with super().armed():
            yield

    def __call__(self, signum: int) -> None:
        self.signum = self.signum or signum


@pytest.mark.parametrize(
    ("argv", "armings"),
    [
        pytest.param(
            [*FIXED, "--strategy", "random", "--runs", "1000000"], 1, id="runs"
        ),
        pytest.param([*SHRINKS_LONG[2:], "--replay-out", "r.json"], 2, id="shrinking"),
    ],
)
def test_a_signal_whose_interrupt_was_dropped_still_stops_explore(
    argv: list[str],
    armings: int,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(command, "RaiseInterrupt", _Dropped)
    _Dropped.made.clear()
    sent: list[float] = []

    def signal_later() -> None:
        # Once the runs (or the shrinking) are armed: the signal comes in them.
        deadline = time.monotonic() + _PROMPT
        while time.monotonic() < deadline and not (
            _Dropped.made and _Dropped.made[0].armings >= armings
        ):
            time.sleep(0.01)
        time.sleep(0.5)  # into the runs, or the shrinking
        if _Dropped.made and _Dropped.made[0].armings >= armings:
            sent.append(time.monotonic())
            _Dropped.made[0](signal.SIGTERM)

    thread = threading.Thread(target=signal_later, daemon=True)
    thread.start()
    code, _, err = _run([*argv, "--seconds", str(_LONG), "--json", "e.json"], capsys)
    thread.join(_PROMPT)
    assert sent
    # The next execution saw the signal: not the search's _LONG s.
    assert time.monotonic() - sent[0] < _PROMPT
    assert code == 143, err
    doc = json.loads((tmp_path / "e.json").read_text(encoding="utf-8"))
    assert doc["stop_reason"] == "interrupted"
    if armings == 2:
        # And the shrinking, which --seconds does not bound, was cut short: the
        # signal stopped it (the command ends as interrupted either way).
        assert doc["shrink"]["interrupted"] is True


# -- a reader that has gone (| head) ------------------------------------------------------


def test_explore_into_a_closed_pipe_still_writes_its_files(tmp_path: Path) -> None:
    files = [tmp_path / f for f in ("e.json", "r.json", "t.json")]
    argv = [*LEGACY, "--json", str(files[0]), "--replay-out", str(files[1])]
    err = io.StringIO()
    with reader_gone(), contextlib.redirect_stderr(err):
        code = main([*argv, "--timeline", str(files[2])])
    assert (code, err.getvalue()) == (1, "")
    assert all(f.stat().st_size > 0 for f in files)
    validate("explore", json.loads(files[0].read_text(encoding="utf-8")))


def test_replay_into_a_closed_pipe_still_writes_its_json(
    legacy: Ran, tmp_path: Path
) -> None:
    f = tmp_path / "j.json"
    err = io.StringIO()
    with reader_gone(), contextlib.redirect_stderr(err):
        code = main(["replay", str(legacy.dir / "r.json"), "--json", str(f)])
    assert (code, err.getvalue()) == (1, "")
    assert json.loads(f.read_text(encoding="utf-8"))["reproduced"] is True


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX pipes")
def test_a_closed_pipe_ends_the_process_quietly(tmp_path: Path) -> None:
    # The interpreter's own last flush of stdout too (it would say "Exception
    # ignored ... BrokenPipeError" and exit 120).
    f = tmp_path / "e.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "xensched", *LEGACY, "--json", str(f)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    proc.stdout.close()  # the reader gone before the first line
    _, err = proc.communicate(timeout=60)
    assert (proc.returncode, err.decode()) == (1, "")
    assert json.loads(f.read_text(encoding="utf-8"))["kinds"] == ["lock-mismatch"]


def test_a_pool_spec_that_drops_a_pool_the_programs_use_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # round-trip's toolstack moves pCPU 1 into pool p: replacing p by p9 would leave
    # every move refused (ENOENT), a run that silently does nothing.
    assert main(["explore", "--pool", "p9:rtds:1", "--seed", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "xensched explore: error: --pool p9:rtds:1: threads[0].ops[1] "
        "'cpupool-cpu-add p 1': no cpupool 'p' (pools: Pool-0, p9)"
    )
