"""``xensched reproduce``, ``protocols``, ``scenarios`` and the top level, through the
real entry point: each option, the table or text, the JSON against its shipped schema,
and every exit code. (The output-path refusals, exit 4 and 130 are in test_outputs.py;
143 and 129 in test_signals.py; protocol-spec errors in test_cli.py.)"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

import pytest

import xensched
import xensched.cli
import xensched.reproduce
from tests._schemas import validate
from xensched.cli import main
from xensched.report import render_reproduce_table
from xensched.scenario import BUILTIN

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    from xensched.reproduce import Result, Transition

#: One move that the pre-patch protocol gets wrong in every way (about 0.5 s each).
RTDS_ADD = ["--boot", "rtds", "--pool", "credit2", "--direction", "add"]


def _table(out: str) -> dict[tuple[str, str, str], dict[str, str]]:
    """reproduce's table as {(boot, pool, move): {protocol: cell}}."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("boot  "))
    # Columns are separated by two spaces or more; the ruler gives their starts.
    starts = [m.start() for m in re.finditer(r"-+", lines[start + 1])]
    head = [
        lines[start][a:b].strip()
        for a, b in zip(starts, [*starts[1:], None], strict=True)
    ]
    rows: dict[tuple[str, str, str], dict[str, str]] = {}
    for line in lines[start + 2 :]:
        if not line:
            break
        cells = [
            line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)
        ]
        rows[cells[0], cells[1], cells[2]] = dict(zip(head[3:], cells[3:], strict=True))
    return rows


def _check_rtds_add(out: str, data: dict[str, object]) -> None:
    """What the legacy and fixed runs of rtds -> credit2 (add) must show."""
    row = _table(out)["rtds", "credit2", "cpu-add (rtds->credit2)"]
    legacy = row["legacy"].split(", ")
    assert {"assert", "lock-clobbered"} <= set(legacy)
    assert row["fixed"] == "-"
    results = data["results"]
    assert isinstance(results, list)
    # The table shows what the JSON says, cell by cell.
    by_protocol = {r["protocol"]: r["problems"] for r in results}
    assert by_protocol == {"legacy": legacy, "fixed": []}


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -- xensched reproduce ----------------------------------------------------------------


def test_reproduce_table_json_and_exit_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "r.json"
    argv = ["reproduce", "--pause", "mover", *RTDS_ADD, "--protocol", "legacy"]
    argv += ["--protocol", "fixed"]
    code, out, err = _run([*argv, "--no-progress", "--json", str(f)], capsys)
    assert code == 0
    assert err == ""
    assert out.splitlines()[0] == (
        f"xensched {xensched.__version__} reproduce: 2 moves, the mover paused at "
        "every interaction point (controlled driver, deterministic)"
    )
    data = json.loads(f.read_text(encoding="utf-8"))
    validate("reproduce", data)
    assert data["complete"] is True
    assert data["xensched"] == xensched.__version__
    _check_rtds_add(out, data)
    lines = out.splitlines()
    assert "fixed: problems in 0 of 1 moves" in lines
    legacy = next(x for x in lines if x.startswith("legacy: problems in 1 of 1 moves"))
    assert "assert" in legacy
    assert "lock-clobbered" in legacy
    assert "  assert: problem 2: an ASSERT fires (e.g. rt_free_pdata's)" in lines
    assert re.fullmatch(r"2 moves in \d+\.\ds", lines[-2])
    assert lines[-1] == f"results written to {f}"


def test_a_table_of_dashes_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The planted bug of issue 7: every cell rendered as '-' must not pass."""

    def dashes(results: Sequence[Result], mutant: str | None = None) -> str:
        return render_reproduce_table(
            [dataclasses.replace(r, problems=()) for r in results], mutant
        )

    monkeypatch.setattr(xensched.cli, "render_reproduce_table", dashes)
    f = tmp_path / "r.json"
    argv = ["reproduce", "--pause", "mover", *RTDS_ADD, "--protocol", "legacy"]
    argv += ["--protocol", "fixed"]
    code, out, _ = _run([*argv, "--no-progress", "--json", str(f)], capsys)
    assert code == 0
    assert _table(out)["rtds", "credit2", "cpu-add (rtds->credit2)"]["legacy"] == "-"
    with pytest.raises(AssertionError):
        _check_rtds_add(out, json.loads(f.read_text(encoding="utf-8")))


def test_reproduce_filters_select_the_moves(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Repeated --boot, --pool, --direction and --protocol: the product, in order."""
    asked: list[Transition] = []

    def record(
        selected: Sequence[Transition],
        progress: Callable[[int, int, Result], None] | None = None,
        **options: object,
    ) -> list[Result]:
        asked.extend(selected)
        return []

    monkeypatch.setattr(xensched.reproduce, "reproduce", record)
    argv = ["reproduce", "--boot", "credit", "--boot", "rtds", "--pool", "arinc653"]
    argv += ["--direction", "remove", "--protocol", "fixed", "--no-progress"]
    code, out, _ = _run(argv, capsys)
    assert code == 0
    assert "reproduce: 2 moves" in out
    assert [(t.boot, t.pool, t.direction, str(t.protocol)) for t in asked] == [
        ("credit", "arinc653", "remove", "fixed"),
        ("rtds", "arinc653", "remove", "fixed"),
    ]
    asked.clear()
    # No filter: every boot x pool x direction x preset.
    assert _run(["reproduce", "--no-progress"], capsys)[0] == 0
    assert len(asked) == 4 * 4 * 2 * 2
    assert {str(t.protocol) for t in asked} == {"legacy", "fixed"}


@pytest.mark.slow
def test_reproduce_remove_row_and_verbose(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["reproduce", "--boot", "rtds", "--pool", "credit2", "--direction"]
    code, out, _ = _run([*argv, "remove", "--protocol", "legacy", "-v"], capsys)
    assert code == 0
    [(key, row)] = _table(out).items()
    assert key == ("rtds", "credit2", "cpu-remove (credit2->rtds)")
    kinds = row["legacy"].split(", ")
    assert kinds != ["-"]
    # -v: each kind's first violation, under the move it came from, with its events.
    heads = [x for x in out.splitlines() if x == "[rtds <- credit2 (remove, legacy)]"]
    assert len(heads) == len(kinds)
    for kind in kinds:
        assert re.search(rf"^{re.escape(kind)} on (cpu\d+|-) in \w+\(\)", out, re.M)


def test_reproduce_progress(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["reproduce", "--pause", "mover", "--boot", "credit", "--pool", "credit"]
    argv += ["--direction", "add"]
    code, _, err = _run([*argv, "--protocol", "fixed", "--progress"], capsys)
    assert code == 0
    assert "[1/1] credit -> credit (add, fixed): none\n" in err
    code, _, err = _run([*argv, "--protocol", "fixed", "--no-progress"], capsys)
    assert (code, err) == (0, "")


def test_reproduce_interrupted_json_is_valid_and_incomplete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = xensched.reproduce.reproduce

    def one_then_ctrl_c(
        selected: Sequence[Transition],
        progress: Callable[[int, int, Result], None] | None = None,
        **options: object,
    ) -> list[Result]:
        real(selected[:1], progress)
        raise KeyboardInterrupt

    monkeypatch.setattr(xensched.reproduce, "reproduce", one_then_ctrl_c)
    f = tmp_path / "r.json"
    argv = ["reproduce", "--pause", "mover", *RTDS_ADD, "--no-progress"]
    argv += ["--json", str(f)]
    code, out, err = _run(argv, capsys)
    assert code == 130
    assert err == "interrupted after 1 of 2 moves\n"
    assert "legacy" in _table(out)["rtds", "credit2", "cpu-add (rtds->credit2)"]
    data = json.loads(f.read_text(encoding="utf-8"))
    validate("reproduce", data)
    assert data["complete"] is False
    assert [r["protocol"] for r in data["results"]] == ["legacy"]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["reproduce", "--boot", "bvt"], "argument --boot: invalid choice: 'bvt'"),
        (["reproduce", "--pool", "sedf"], "argument --pool: invalid choice: 'sedf'"),
        (["reproduce", "--direction", "up"], "argument --direction: invalid choice"),
        (["reproduce", "--progress", "--no-progress"], "not allowed with argument"),
        (["reproduce", "--json"], "argument --json: expected one argument"),
        # Found by the top-level parser, refused in the subcommand's name.
        (["reproduce", "--frobnicate"], "unrecognized arguments: --frobnicate"),
        (["reproduce", "extra"], "unrecognized arguments: extra"),
    ],
)
def test_reproduce_usage_errors_exit_2(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(argv, capsys)
    assert code == 2
    assert out == ""
    last = err.splitlines()[-1]
    assert last.startswith("xensched reproduce: error: ")
    assert needle in last


def test_reproduce_help_lists_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["reproduce", "--help"], capsys)
    assert code == 0
    for opt in ("--boot", "--pool", "--direction", "--protocol", "--json", "-v"):
        assert opt in out
    assert "--progress" in out
    assert "--no-progress" in out
    flat = " ".join(out.split())
    assert "exit status: 0 the run completed, 2 usage error" in flat
    assert "128 + the signal (130, 143, 129)" in flat


# -- xensched protocols ------------------------------------------------------------------


def test_protocols_json_matches_its_schema(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(["protocols", "--json"], capsys)
    assert (code, err) == (0, "")
    validate("protocols", json.loads(out))


def test_protocols_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(["protocols", "--yaml"], capsys)
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        "xensched protocols: error: unrecognized arguments: --yaml"
    ]


# -- xensched scenarios ------------------------------------------------------------------


@pytest.mark.parametrize("name", list(BUILTIN))
def test_every_builtin_scenario_json_matches_its_schema(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(["scenarios", name, "--json"], capsys)
    assert (code, err) == (0, "")
    data = json.loads(out)
    validate("scenario", data)
    assert data["name"] == name


def test_scenario_parameters_land_in_the_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["scenarios", "stress-default", "--json", "--boot", "rtds", "--cpus", "6"]
    code, out, _ = _run([*argv, "--protocol", "legacy"], capsys)
    assert code == 0
    data = json.loads(out)
    validate("scenario", data)
    assert (data["boot"], data["cpus"], data["protocol"]) == ("rtds", 6, "legacy")
    argv = ["scenarios", "patch-move", "--json", "--pool", "arinc653"]
    code, out, _ = _run([*argv, "--direction", "remove"], capsys)
    assert code == 0
    data = json.loads(out)
    validate("scenario", data)
    assert [p["sched"] for p in data["pools"]] == ["arinc653"]
    mover = data["threads"][0]
    assert mover["ops"][0].startswith("cpupool-cpu-remove ")


def test_scenarios_bad_cpus_is_one_line_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = _run(["scenarios", "stress-default", "--cpus", "1"], capsys)
    assert (code, out) == (2, "")
    [line] = err.splitlines()
    assert line.startswith("xensched scenarios: error: ")  # as its other errors


# -- the top level ----------------------------------------------------------------------


def test_console_script_is_cli_main() -> None:
    [ep] = entry_points(group="console_scripts", name="xensched")
    assert ep.load() is main


def test_version_and_missing_or_unknown_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = _run(["--version"], capsys)
    assert (code, out) == (0, f"xensched {xensched.__version__}\n")
    code, out, err = _run([], capsys)
    assert (code, out) == (2, "")
    assert "the following arguments are required: COMMAND" in err
    code, out, err = _run(["frob"], capsys)
    assert (code, out) == (2, "")
    assert "invalid choice: 'frob'" in err
    code, out, _ = _run(["--help"], capsys)
    assert code == 0
    for cmd in ("reproduce", "protocols", "scenarios", "stress", "bench"):
        assert re.search(rf"^  {cmd} ", out, re.M), cmd


@pytest.mark.slow
def test_reproduce_in_a_subprocess(tmp_path: Path) -> None:
    """``python -m xensched``: the table on stdout, nothing on stderr, exit 0."""
    f = tmp_path / "r.json"
    argv = [sys.executable, "-m", "xensched", "reproduce", *RTDS_ADD]
    argv += ["--protocol", "legacy", "--protocol", "fixed", "--json", str(f)]
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # not a terminal: no progress
    data = json.loads(f.read_text(encoding="utf-8"))
    validate("reproduce", data)
    _check_rtds_add(proc.stdout, data)
