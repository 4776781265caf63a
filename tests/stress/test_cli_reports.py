"""``xensched stress`` and ``xensched bench`` through the real entry point
(``xensched.cli.main`` and its ``xensched.commands`` group, or a subprocess): each
option as the report records it, the report text, the JSON against its shipped schema,
and the exit codes. (Exit 1 and 3, the stopped run and the scenario file are in
test_cli.py, whose reports are validated too; 4 and the refused paths in
test_outputs_cli.py; signals in test_signals.py.)"""

from __future__ import annotations

import copy
import json
import re
import shlex
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest

from tests._schemas import errors, validate
from xensched.cli import main
from xensched_stress import bench
from xensched_stress.bench_explore import ExploreBench

if TYPE_CHECKING:
    from pathlib import Path


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _load(path: Path, kind: str) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    validate(kind, data)
    return data


# -- xensched stress -----------------------------------------------------------------------

#: Every option that shapes a run, none at its default, and where the report keeps it.
OPTIONS: list[tuple[str, str, object]] = [
    ("--cpus=6", "cpus", 6),
    ("--boot=credit2", "boot", "credit2"),
    ("--pool=p1:rtds:4,5", "pools", ["p1:rtds:4,5"]),
    ("--protocol=fixed-without:barrier", "protocol", "fixed-without:barrier"),
    ("--domains=3", "domains", 3),
    ("--vcpus=1", "vcpus", 1),
    ("--ops=40", "ops", 40),
    ("--seed=11", "seed", 11),
    ("--switch-interval=0.002", "switch_interval", 0.002),
    ("--delay-injection=0.01", "delay_injection", 0.01),
    ("--keep-going", "keep_going", True),
    ("--watchdog=7", "watchdog", 7.0),
    ("--controllers=2", "controllers", 2),
    ("--traffic=0.2", "traffic", 0.2),
    ("--domain-moves=0.05", "domain_moves", 0.05),
    ("--max-delay=0.0002", "max_delay", 0.0002),
    ("--gil-switch-interval=0.0001", "gil_switch_interval", 0.0001),
    ("--lock-timeout=9", "lock_timeout", 9.0),
    ("--trace-all", "trace_all", True),
    ("--max-violations=5", "max_violations", 5),
    ("--max-events=6", "max_events", 6),
]


def test_stress_options_land_in_the_report_and_its_rerun(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "r.json"
    argv = ["stress", *(o for o, _, _ in OPTIONS), "--no-progress", "--json", str(f)]
    code, out, err = _run(argv, capsys)
    assert (code, err) == (0, ""), err
    data = _load(f, "stress")
    for option, key, value in OPTIONS:
        assert data["config"][key] == value, option
    assert data["seed"] == 11
    assert data["stop_reason"] == "ops reached"
    assert [(p["name"], p["sched"], p["cpus"]) for p in data["pools"]] == [
        ("Pool-0", "credit2", [0, 1, 2, 3]),
        ("p1", "rtds", [4, 5]),
    ]
    assert len(data["schedule"]["per_cpu"]) == 6
    # The text report says the same.
    lines = out.splitlines()
    assert lines[0] == "seed=11"
    assert lines[1] == (
        "xensched stress: seed=11 protocol=fixed-without:barrier memory_model=sc "
        "boot=credit2 "
        "pCPUs=6 pools: Pool-0=credit2[0,1,2,3], p1=rtds[4,5]; 3 domain(s) x 1 vCPU(s)"
    )
    assert "stopped: ops reached after " in out
    assert [x.split()[0] for x in lines if re.match(r"  pcpu\d", x)] == [
        f"pcpu{n}" for n in range(6)
    ]
    assert "result: no violation (exit 0); stop reason: ops reached; seed=11" in lines
    assert f"rerun: {data['rerun']}" in lines
    assert lines[-1] == f"report written to {f}"
    # The rerun line gives the same options back.
    g = tmp_path / "again.json"
    again = shlex.split(data["rerun"])
    assert again[:2] == ["xensched", "stress"]
    code, _, _ = _run([*again[1:], "--no-progress", "--json", str(g)], capsys)
    assert code == 0
    assert _load(g, "stress")["config"] == data["config"]


def test_stress_topology_and_duration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "r.json"
    argv = ["stress", "--topology=2x2", "--duration=0.3", "--seed=4", "--no-progress"]
    code, out, _ = _run([*argv, "--json", str(f)], capsys)
    assert code == 0
    data = _load(f, "stress")
    assert (data["config"]["topology"], data["config"]["cpus"]) == ("2x2", 4)
    assert data["config"]["duration"] == 0.3
    assert data["stop_reason"] == "duration reached"
    assert data["exit_code"] == 0
    assert data["violations"] == []
    assert data["violations_total"] == 0
    assert "stopped: duration reached after " in out


@pytest.fixture(scope="module")
def legacy_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A legacy run that finds violations past its caps (made once, about 1 s)."""
    f = tmp_path_factory.mktemp("stress") / "r.json"
    argv = ["stress", "--boot=rtds", "--pool=p1:credit2:2,3", "--protocol=legacy"]
    argv += ["--keep-going", "--ops=3000", "--seed=5", "--switch-interval=0.001"]
    argv += ["--max-violations=2", "--max-events=3", "--no-progress"]
    assert main([*argv, f"--json={f}"]) == 1
    return _load(f, "stress")


def test_stress_violations_report(legacy_report: dict[str, Any]) -> None:
    data = legacy_report
    assert data["exit_code"] == 1
    # Kept in full: the first two, and the first of each kind past them.
    kinds = {v["kind"] for v in data["violations"]}
    assert len(data["violations"]) <= 2 + len(kinds)
    assert set(data["violations_by_kind"]) == kinds
    assert data["violations_dropped"]
    dropped = sum(data["violations_dropped"].values())
    assert data["violations_total"] == len(data["violations"]) + dropped
    assert sum(data["violations_by_kind"].values()) == data["violations_total"]
    assert all(1 <= len(v["events"]) <= 3 for v in data["violations"])


def _mutate(doc: dict[str, Any], path: tuple[str | int, ...], change: str) -> Any:
    doc = copy.deepcopy(doc)
    *parent, key = path
    node: Any = doc
    for p in parent:
        node = node[p]
    if change == "drop":
        del node[key]
    elif change == "rename":
        node[f"{key}_renamed"] = node.pop(key)
    elif change == "stringify":
        node[key] = str(node[key])
    else:
        node[key] = "no-such-name"
    return doc


@pytest.mark.parametrize(
    ("path", "change"),
    [
        (("violations_total",), "drop"),
        (("violations_dropped",), "drop"),
        (("rerun",), "rename"),
        (("seed",), "stringify"),
        (("exit_code",), "unknown"),
        (("stop_reason",), "unknown"),
        (("config", "max_events"), "drop"),
        (("config", "boot"), "unknown"),
        (("schedule", "per_cpu", 0, "count"), "stringify"),
        (("locks", 0, "contended"), "rename"),
        (("violations", 0, "kind"), "unknown"),
        (("violations", 0, "events"), "drop"),
        (("violations", 0, "events", 0, "point"), "unknown"),
        (("first_context", 0, "in"), "drop"),
        (("process", "peak_rss_bytes"), "drop"),
    ],
)
def test_stress_schema_refuses_a_changed_report(
    path: tuple[str | int, ...], change: str, legacy_report: dict[str, Any]
) -> None:
    assert errors("stress", _mutate(legacy_report, path, change))


def test_stress_dropped_kinds_are_violation_kinds(
    legacy_report: dict[str, Any],
) -> None:
    doc = copy.deepcopy(legacy_report)
    doc["violations_dropped"]["no-such-kind"] = 1
    assert errors("stress", doc)


def test_stress_in_a_subprocess(tmp_path: Path) -> None:
    """``python -m xensched stress``: the command found through its entry point."""
    f = tmp_path / "r.json"
    argv = [sys.executable, "-m", "xensched", "stress", "--duration", "0.3"]
    argv += ["--seed", "8", "--json", str(f)]
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.splitlines()[0] == "seed=8"
    assert _load(f, "stress")["seed"] == 8


def test_stress_help_documents_every_exit_code(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = _run(["stress", "--help"], capsys)
    assert code == 0
    assert out.startswith("usage: xensched stress ")
    flat = " ".join(out.split())
    assert "exit codes: 0 no violation, 1 violations found, 2 usage error" in flat
    assert "3 deadlock, 4 no violation but --json FILE could not be written" in flat
    for option, _, _ in OPTIONS:
        assert option.split("=")[0] in out


# -- xensched bench ------------------------------------------------------------------------

PART_FUNCTIONS = (
    "bench_race",
    "bench_fixed",
    "bench_throughput",
    "bench_scale",
    "bench_explore",
    "bench_memory_models",
    "bench_instruments",
)


def test_bench_every_part_text_and_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """All four parts at their smallest (d: one size, 2 pCPUs); about 5 s."""
    monkeypatch.setattr(bench, "SCALE_SIZES", (2,))
    f = tmp_path / "b.json"
    argv = ["bench", "--seeds=1", "--seed=3", "--race-delay=0", "--fixed-total=0.32"]
    argv += ["--figure-duration=0.2", "--cpus=4", "--json", str(f), "--only=a,b,c,d"]
    code, out, err = _run(argv, capsys)
    assert (code, err) == (0, "")
    data = _load(f, "bench")
    assert set(data) == {"python", "cpus", "race", "fixed", "throughput", "scale"} | {
        "wall_s"
    }
    [race] = data["race"]
    assert (race["seeds"], race["delay_injection"]) == (1, 0.0)
    assert [r["seed"] for r in race["runs"]] == [3]
    assert data["fixed"]["total_s"] == 0.32
    assert [r["seed"] for r in data["fixed"]["pairings"]] == list(range(3, 19))
    assert data["fixed"]["violations"] == 0
    assert sorted(data["scale"]) == ["credit+credit2", "credit2+rtds"]
    assert all([r["cpus"] for r in rows] == [2] for rows in data["scale"].values())
    lines = out.splitlines()
    assert lines[0].startswith("xensched bench: ")
    heads = [x[:3] for x in lines if re.match(r"\([abcd]\) ", x)]
    assert heads == ["(a)", "(b)", "(c)", "(d)"]
    assert "(a) legacy Credit <-> Credit2 moves: 1 seeds" in out
    assert "(b) fixed protocol: 16 boot x pool pairings, 0.02s each" in out
    assert re.search(r"=> race found in [01] of 1 seeds within 2s", out)
    assert "=> 0 violations across 16 pairings in 0.32s of stress" in out
    assert re.search(r"^ +2 pCPUs: +[\d,]+ schedule\(\)/s", out, re.M)
    assert lines[-1].startswith("bench done in ")


def test_bench_options_reach_the_parts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--quick, the defaults, --only, --seed, --seeds, --race-delay, --cpus."""
    calls: list[tuple[str, tuple[object, ...]]] = []

    def part(name: str) -> Any:
        def run(*args: object) -> dict[str, object]:
            calls.append((name, args))
            return {}

        return run

    for name in PART_FUNCTIONS:
        monkeypatch.setattr(bench, name, part(name))
    assert main(["bench"]) == 0
    assert calls == [
        ("bench_race", (20, 1, 0.0)),
        ("bench_race", (20, 1, 0.02)),
        ("bench_fixed", (60.0, 1, 4)),
        ("bench_throughput", (3.0, 4)),
        ("bench_scale", (3.0, bench.SCALE_SIZES)),
        ("bench_explore", (ExploreBench(20, 1, 5.0, 10.0, 120.0, 60.0, False),)),
        ("bench_memory_models", (3.0, 4)),
        ("bench_instruments", (3.0, 4)),
    ]
    calls.clear()
    assert main(["bench", "--quick", "--only", "d,e,a", "--race-delay", "0.5"]) == 0
    assert calls == [
        ("bench_race", (5, 1, 0.5)),
        ("bench_scale", (1.0, (2, 8, 32, 128))),
        ("bench_explore", (ExploreBench(5, 1, 1.0, 1.0, 1.0, 5.0, False),)),
    ]
    calls.clear()
    argv = ["bench", "--only=e", "--seed=7", "--seeds=3", "--explore-full"]
    argv += ["--find-cap=0.5", "--dfs-budget=2", "--move-cap=3", "--dpor-cap=4"]
    assert main([*argv, "--quick"]) == 0
    assert calls == [("bench_explore", (ExploreBench(3, 7, 0.5, 2.0, 3.0, 4.0, True),))]
    calls.clear()
    argv = ["bench", "--only=b,c,f", "--seed=9", "--cpus=6", "--fixed-total=2"]
    assert main([*argv, "--figure-duration=0.5"]) == 0
    assert calls == [
        ("bench_fixed", (2.0, 9, 6)),
        ("bench_throughput", (0.5, 6)),
        ("bench_memory_models", (0.5, 6)),
    ]
    capsys.readouterr()


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["--only", "x"], "--only"),
        (["--cpus", "1"], "--cpus"),
        (["--race-delay", "2"], "--race-delay"),
        (["--seeds", "many"], "--seeds"),
        (["--figure-duration", "soon"], "--figure-duration"),
        (["--json"], "--json"),
        (["--find-cap", "0"], "--find-cap"),
        (["--dfs-budget", "-1"], "--dfs-budget"),
        (["--move-cap", "never"], "--move-cap"),
        (["--dpor-cap", "inf"], "--dpor-cap"),
        (["--explore-full=yes"], "--explore-full"),
    ],
)
def test_bench_usage_errors_exit_2_before_any_part(
    argv: list[str],
    option: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def never(*args: object) -> dict[str, object]:
        raise AssertionError("a part ran")

    for name in PART_FUNCTIONS:
        monkeypatch.setattr(bench, name, never)
    code, out, err = _run(["bench", *argv], capsys)
    assert (code, out) == (2, "")
    last = err.splitlines()[-1]
    assert last.startswith("xensched bench: error: ")
    assert option in last


def _explore_doc() -> dict[str, Any]:
    run: dict[str, Any] = {"runs": 5, "seconds": 0.5, "exhaustive": True}
    run |= {"stop_reason": "exhausted", "kinds": []}
    move = {"boot": "credit", "pool": "credit2", "direction": "add"}
    return {
        "full": False,
        "total_s": 3.0,
        "find": {
            "seeds": 1,
            "cap_runs": 2000,
            "cap_s": 5.0,
            "aim_s": 0.013,
            "strategies": [
                {
                    "strategy": "random",
                    "deterministic": False,
                    "seeds_tried": 1,
                    "found": 1,
                    "median_s": 0.01,
                    "median_runs": 3,
                    "aim_met": True,
                    "runs": [
                        {
                            "seed": 1,
                            "found": True,
                            "seconds": 0.01,
                            "runs": 3,
                            "kind": "lock-mismatch",
                        }
                    ],
                }
            ],
        },
        "prove": {
            "dpor": run,
            "dpor_unpinned": run,
            "dfs": run | {"exhaustive": False, "stop_reason": "time reached"},
            "dfs_budget_s": 10.0,
            "aim_s": 0.5,
            "aim_met": False,
        },
        "bounded_dfs": {
            "strategy": "dpor",
            "bound": 2,
            "cap_s": 10.0,
            "full": False,
            "total_s": 1.0,
            "moves": [
                move
                | {
                    "fixed": run | {"bound": "exhaustive"},
                    "legacy": run
                    | {"bound": "bound exhausted", "kinds": ["assert"]}
                    | {"first_failing_run": 2},
                }
            ],
        },
        "dpor_moves": {
            "cap_s": 60.0,
            "full": False,
            "proven": 1,
            "total_s": 0.5,
            "aim_s": 600.0,
            "aim_met": False,
            "moves": [move | run],
        },
        "points_per_s": {
            "points": 100,
            "seconds": 0.5,
            "per_s": 200.0,
            "dfs_per_s": 190.0,
            "aim_per_s": 20000,
            "aim_met": False,
        },
        "workers": move
        | {
            "speedup": 1.5,
            "exhaustion_speedup": None,
            "runs": [
                {
                    "workers": 1,
                    "runs": 5,
                    "exhaustive": True,
                    "wall_s": 1.0,
                    "runs_per_s": 5.0,
                    "exploring_s": 0.5,
                    "kinds": [],
                }
            ],
        },
    }


@pytest.mark.parametrize(
    ("path", "change"),
    [
        (("wall_s",), "drop"),
        (("python",), "rename"),
        (("throughput", "ratio_stress"), "drop"),
        (("throughput", "bare_per_s"), "stringify"),
        (("race", 0, "found"), "stringify"),
        (("race", 0, "runs", 0, "found"), "unknown"),
        (("fixed", "pairings", 0, "boot"), "unknown"),
        (("fixed", "pairings"), "rename"),
        (("explore", "find", "strategies", 0, "median_s"), "stringify"),
        (("explore", "find", "strategies", 0, "runs", 0, "kind"), "unknown"),
        (("explore", "bounded_dfs", "moves", 0, "fixed", "bound"), "unknown"),
        (("explore", "bounded_dfs", "moves", 0, "direction"), "unknown"),
        (("explore", "dpor_moves", "moves", 0, "exhaustive"), "stringify"),
        (("explore", "prove", "dpor", "runs"), "drop"),
        (("explore", "points_per_s", "per_s"), "rename"),
        (("explore", "workers", "runs", 0, "wall_s"), "drop"),
        (("explore", "workers", "exhaustion_speedup"), "stringify"),
    ],
)
def test_bench_schema_refuses_a_changed_report(
    path: tuple[str | int, ...], change: str
) -> None:
    doc: dict[str, Any] = {
        "python": "Python 3.11.7 (GIL)",
        "cpus": 2,
        "race": [
            {
                "seeds": 1,
                "found": 1,
                "median_s": 0.1,
                "delay_injection": 0.0,
                "first_kinds": {"assert": 1},
                "runs": [{"seed": 1, "found": True, "first_violation_after": 0.1}],
            }
        ],
        "fixed": {
            "total_s": 16.0,
            "violations": 0,
            "pairings": [
                {
                    "boot": "credit",
                    "pool": "rtds",
                    "violations": 0,
                    "deadlock": False,
                    "ops": 10,
                    "switches": 1,
                    "domain_moves": 0,
                    "seed": n,
                }
                for n in range(16)
            ],
        },
        "throughput": dict.fromkeys(
            (
                "single_bare_per_s",
                "single_schedule_loop_per_s",
                "ratio_single",
                "bare_per_s",
                "schedule_loop_per_s",
                "stress_per_s",
                "ratio_schedule_loop",
                "ratio_stress",
            ),
            1.0,
        ),
        "explore": _explore_doc(),
        "wall_s": 1.0,
    }
    validate("bench", doc)
    assert errors("bench", _mutate(doc, path, change))


def test_bench_memory_models_part_text_and_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Part (f) at its smallest: each model's schedule() rate side by side, and the
    litmus rate over two tests of the catalog (the whole of it takes ~12 s)."""
    import xensched.litmus as litmus

    small = [t for t in litmus.catalog() if t.name in ("SB", "MP")]
    monkeypatch.setattr(litmus, "run_catalog", lambda: litmus.run_all(small))
    f = tmp_path / "b.json"
    argv = ["bench", "--figure-duration=0.2", "--cpus=2", "--json", str(f), "--only=f"]
    code, out, err = _run(argv, capsys)
    assert (code, err) == (0, "")
    data = _load(f, "bench")
    mm = data["memory_models"]
    assert set(mm["schedule_per_s"]) == {"sc", "tso", "relaxed"}
    assert all(v > 0 for v in mm["schedule_per_s"].values())
    assert mm["ratio_to_sc"]["sc"] == 1.0
    assert mm["litmus_per_s"] > 0
    assert re.search(r"^ +litmus catalog, exhaustive under each model: ", out, re.M)
    for model in ("sc", "tso", "relaxed"):
        assert re.search(rf"^ +{model} +schedule\(\) loop: +[\d,]+/s", out, re.M)


def test_bench_instruments_part_text_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Part (g) at its smallest: schedule() with no instrument, lockdep and the race
    detector, side by side."""
    f = tmp_path / "b.json"
    argv = ["bench", "--figure-duration=0.2", "--cpus=2", "--json", str(f), "--only=g"]
    code, out, err = _run(argv, capsys)
    assert (code, err) == (0, "")
    data = _load(f, "bench")
    g = data["instruments"]
    assert set(g["schedule_per_s"]) == {"lockdep_off", "lockdep_on", "race_detector_on"}
    assert all(v > 0 for v in g["schedule_per_s"].values())
    assert g["lockdep_acquisitions"] > 0
    assert g["lockdep_ratio"] == pytest.approx(
        g["schedule_per_s"]["lockdep_on"] / g["schedule_per_s"]["lockdep_off"]
    )
    assert all(v > 0 for v in g["cpu_us_per_schedule"].values())
    assert re.search(r"^ +lockdep off schedule\(\) loop: +[\d,]+/s", out, re.M)
    assert re.search(
        r"^ +lockdep on +schedule\(\) loop: +[\d,]+/s +\(ratio to off", out, re.M
    )
    assert re.search(
        r"one schedule\(\) call, CPU time: off [\d.]+ us, on [\d.]+ us", out
    )
    assert g["race_detector_accesses"] > 0
    assert g["race_detector_ratio"] == pytest.approx(
        g["schedule_per_s"]["race_detector_on"] / g["schedule_per_s"]["lockdep_off"]
    )
    assert re.search(
        r"^ +race detector on schedule\(\) loop: +[\d,]+/s +\(ratio to off", out, re.M
    )
    assert re.search(r"CPU time: off [\d.]+ us, race detector on [\d.]+ us", out)
