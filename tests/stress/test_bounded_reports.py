"""Bounded reports: ``--max-violations`` and ``--max-events`` (StressConfig fields).

A ``--keep-going`` run of the legacy protocol finds thousands of violations a second;
its report keeps the first ones in full and counts the rest by kind, so its size does
not grow with the run's length.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests._schemas import validate
from xensched.violation import ViolationKind
from xensched_stress import StressConfig, run_stress
from xensched_stress.cli import main
from xensched_stress.config import PoolSpec, rerun_command
from xensched_stress.pytest_plugin import (
    StressRun,
    section_extra,
    stress_config_for,
)
from xensched_stress.report import StressReport

_KINDS = len(ViolationKind)


@pytest.fixture(scope="module")
def capped() -> StressReport:
    cfg = StressConfig(
        boot="rtds",
        pools=(PoolSpec("p1", "credit2", (2, 3)),),
        protocol="legacy",
        duration=None,
        ops=4_000,  # a count, not seconds: the same work on a loaded machine
        seed=5,
        switch_interval=0.001,
        domain_moves=0.0,
        keep_going=True,
        max_violations=3,
        max_events=2,
    )
    return run_stress(cfg)


def test_violations_past_the_cap_are_counted_by_kind(capped: StressReport) -> None:
    r = capped
    kept = r.violations
    assert 3 <= len(kept) <= 3 + _KINDS
    # The first three, then only the first of each kind not yet seen.
    later = [v.kind for v in kept[3:]]
    assert len(set(later)) == len(later)
    assert not set(later) & {v.kind for v in kept[:3]}
    assert r.violations_dropped, "the run found too few violations to test the cap"
    assert r.violations_total == len(kept) + sum(r.violations_dropped.values())
    assert sum(r.violations_by_kind.values()) == r.violations_total
    assert r.exit_code == 1
    assert all(len(v.events) <= 2 for v in kept)


def test_capped_report_text_and_json(capped: StressReport) -> None:
    r = capped
    text = r.render()
    assert f"violations: {r.violations_total} (" in text
    assert f"kept in full: {len(r.violations)} (the first 3 " in text
    assert "counted only: " in text
    data = json.loads(json.dumps(r.to_json()))
    validate("stress", data)
    assert data["violations_total"] == r.violations_total
    assert data["violations_dropped"] == dict(r.violations_dropped)
    assert len(data["violations"]) == len(r.violations)
    assert all(len(v["events"]) <= 2 for v in data["violations"])
    assert data["config"]["max_violations"] == 3
    assert "--max-violations 3 --max-events 2" in data["rerun"]


def test_plugin_section_counts_every_violation(capped: StressReport) -> None:
    extra = section_extra(1.0, [StressRun(capped.config, capped)])
    assert f"{capped.violations_total} violations" in extra.details[0]


def test_cli_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_file = tmp_path / "r.json"
    argv = ["--boot=rtds", "--pool=p1:credit2:2,3", "--protocol=legacy"]
    argv += ["--keep-going", "--ops=3000", "--seed=5", "--switch-interval=0.001"]
    argv += ["--max-violations=1", "--max-events=0", "--no-progress"]
    assert main([*argv, f"--json={out_file}"]) == 1
    out = capsys.readouterr().out
    assert "kept in full: " in out
    data = json.loads(out_file.read_text(encoding="utf-8"))
    validate("stress", data)
    assert all(v["events"] == [] for v in data["violations"])
    assert len(data["violations"]) <= 1 + _KINDS
    assert data["violations_total"] > len(data["violations"])


@pytest.mark.parametrize(
    ("option", "needle"),
    [
        ("--max-violations=0", "--max-violations 0: must be an integer in [1, 10000]"),
        ("--max-events=-1", "--max-events -1: must be an integer in [0, 1000]"),
    ],
)
def test_cli_refuses_bad_caps(
    option: str, needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([option, "--ops=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xensched stress: error: ")
    assert needle in err


def test_defaults_stay_off_the_rerun_line() -> None:
    cmd = rerun_command(StressConfig())
    assert "--max-violations" not in cmd
    assert "--max-events" not in cmd


def test_marker_fields() -> None:
    cfg = stress_config_for("t.py::t", 1, {"max_violations": 7, "max_events": 3})
    assert (cfg.max_violations, cfg.max_events) == (7, 3)


def test_documented(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    for opt in ("--max-violations", "--max-events"):
        assert opt in out
        assert f"| `{opt} N` |" in readme
