"""``xensched stress --mutant NAME`` and ``StressConfig.mutant``: refused names and
protocols, the mutant's protocol and edits in what runs, and its name in the seed
line, the report, the rerun line and the --json report (against its schema)."""

from __future__ import annotations

import json
import shlex
from typing import TYPE_CHECKING

import pytest

from tests._schemas import validate
from xensched import ConfigError
from xensched.mutants import NO_LOCK_RECHECK
from xensched_stress.cli import build_parser, config_from_args, main
from xensched_stress.config import StressConfig, rerun_command
from xensched_stress.pytest_plugin import stress_config_for

if TYPE_CHECKING:
    from pathlib import Path


def _config(*argv: str) -> StressConfig:
    args = build_parser().parse_args(list(argv))
    return config_from_args(args, 5)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--mutant", "nope"], "--mutant 'nope': no such mutant; choose one of legacy"),
        (
            ["--mutant", "legacy", "--protocol", "fixed"],
            "--mutant legacy runs --protocol legacy; it cannot be combined with "
            "--protocol fixed",
        ),
        (
            ["--scenario", "round-trip", "--mutant", "unlock-by-cpu", "--protocol"],
            "--mutant unlock-by-cpu runs --protocol fixed-without:unlock-by-pointer; "
            "it cannot be combined with --protocol legacy",
        ),
        (
            ["--mutant", "legacy", "--mutant", "legacy"],
            "--mutant given twice (legacy, then legacy): one mutant per run",
        ),
    ],
)
def test_a_bad_mutant_is_one_line_and_exit_2(
    argv: list[str], says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if argv[-1] == "--protocol":
        argv = [*argv, "legacy"]
    f = tmp_path / "r.json"
    assert main([*argv, "--ops", "10", "--json", str(f)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1, err
    assert err.startswith(f"xensched stress: error: {says}"), err
    assert not f.exists()


@pytest.mark.parametrize(
    ("argv", "protocol", "edits"),
    [
        (["--mutant", "legacy"], "legacy", ()),
        (["--mutant", "legacy", "--protocol", "legacy"], "legacy", ()),
        (["--mutant", NO_LOCK_RECHECK], "fixed", (NO_LOCK_RECHECK,)),
        (
            ["--mutant", NO_LOCK_RECHECK, "--protocol", "legacy"],
            "legacy",
            (NO_LOCK_RECHECK,),
        ),
        # round-trip is a legacy scenario: an edit mutant runs on the fix.
        (
            ["--scenario", "round-trip", "--mutant", NO_LOCK_RECHECK],
            "fixed",
            (NO_LOCK_RECHECK,),
        ),
        (
            ["--scenario", "round-trip", "--mutant", "pointer-first"],
            "fixed-without:pointer-last",
            (),
        ),
        (["--scenario", "round-trip"], "legacy", ()),
    ],
)
def test_what_runs_is_the_mutant(
    argv: list[str], protocol: str, edits: tuple[str, ...]
) -> None:
    cfg = _config(*argv)
    cfg.validate()
    sc = cfg.to_scenario()
    assert (sc.protocol, sc.mutants) == (protocol, edits)
    assert cfg.run_protocol == protocol
    # The rerun line runs the same thing.
    again = _config(*shlex.split(rerun_command(cfg))[2:])
    assert again.to_scenario() == sc


def test_a_marker_config_names_the_mutant() -> None:
    """A StressConfig (a pytest marker's fields) takes the mutant by name."""
    cfg = StressConfig(mutant="pointer-first")
    cfg.validate()
    assert cfg.to_scenario().protocol == "fixed-without:pointer-last"
    with pytest.raises(ConfigError, match="mutant 'nope': choose one of legacy"):
        StressConfig(mutant="nope").validate()
    with pytest.raises(ConfigError, match="runs protocol fixed-without:pointer-last"):
        StressConfig(protocol="legacy", mutant="pointer-first").validate()
    # As the marker gives it: @pytest.mark.stress(scenario=..., mutant=...).
    marked = stress_config_for(
        "t.py::t", 1, {"scenario": "round-trip", "mutant": "no-old-lock"}
    )
    assert marked.to_scenario().protocol == "fixed-without:old-lock"
    with pytest.raises(ConfigError, match="mutant 'nope'"):
        stress_config_for("t.py::t", 1, {"mutant": "nope"})


def test_the_mutant_is_named_in_every_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # no-barrier is the fix itself under sc: a clean, bounded run.
    f = tmp_path / "r.json"
    argv = ["--mutant", "no-barrier", "--ops", "300", "--seed", "3"]
    assert main([*argv, "--no-progress", "--json", str(f)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "seed=3 mutant=no-barrier"
    assert lines[1].startswith(
        "xensched stress: seed=3 mutant=no-barrier protocol=fixed-without:barrier "
    )
    rerun = next(x for x in lines if x.startswith("rerun: "))
    assert "--protocol fixed-without:barrier" in rerun
    assert "--mutant no-barrier" in rerun
    data = json.loads(f.read_text(encoding="utf-8"))
    validate("stress", data)
    assert data["mutant"] == data["config"]["mutant"] == "no-barrier"


def test_without_a_mutant_the_json_says_null(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "r.json"
    assert main(["--ops", "100", "--seed", "3", "--no-progress", "--json", str(f)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "seed=3"
    data = json.loads(f.read_text(encoding="utf-8"))
    validate("stress", data)
    assert data["mutant"] is None


def test_a_builtin_keeps_its_name_in_the_rerun_line() -> None:
    cfg = _config("--scenario", "round-trip", "--mutant", "pointer-first")
    assert rerun_command(cfg).startswith(
        "xensched stress --scenario round-trip --duration 2.0 --mutant pointer-first "
    )
