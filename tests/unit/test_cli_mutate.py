"""``xensched mutate`` through the real entry point: the kill table of a few mutants.

Each test runs the table on one or two mutants whose killers take about a second
(explore DPOR with a fixed seed); the whole catalog (about 30 s on 2 cores) is
``-m slow`` here and a step of CI (README, "xensched mutate"). A weakened check is
planted through ``--plan``: the killer of credit2-lock-order without ``--lockdep``,
the one check that sees its lock order, must leave it alive and fail the table.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from tests._cli_process import CliProcess
from tests._schemas import validate
from xensched.cli import main
from xensched.killtable import LOCKDEP, PLAN
from xensched.scenario import builtin

#: credit2-lock-order's killer with its check weakened: the same command without
#: --lockdep.
ROUND_TRIP = [a for a in LOCKDEP.argv if a != "--lockdep"]


def _mutate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str, Any]:
    out = tmp_path / "m.json"
    code = main(
        ["mutate", "--no-progress", "--workers", "2", "--json", str(out), *args]
    )
    captured = capsys.readouterr()
    data = json.loads(out.read_text(encoding="utf-8")) if out.exists() else None
    if data is not None:
        validate("mutate", data)
    return code, captured.out, captured.err, data


def _plan(tmp_path: Path, plan: dict[str, list[list[str]]]) -> str:
    p = tmp_path / "plan.json"
    p.write_text(json.dumps(plan), encoding="utf-8")
    return str(p)


def test_lockdep_kills_the_credit2_lock_order_and_the_fix_stays_clean(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err, data = _mutate(tmp_path, capsys, "--mutant", "credit2-lock-order")
    assert code == 0, out + err
    assert data["complete"] is True
    assert data["intact_flagged"] is False
    [row] = data["mutants"]
    assert row["name"] == "credit2-lock-order"
    assert row["killed"] is True
    assert row["kind"] == "lock-order"
    assert row["by"].startswith("xensched explore --scenario round-trip")
    assert row["by"].endswith(
        "--lockdep --runs 50 --strategy dpor --seed 1 "
        "--no-shrink --protocol fixed --mutant credit2-lock-order"
    )
    assert row["runs"] == 1
    [intact] = data["intact"]
    assert intact["by"].endswith("--no-shrink --protocol fixed")
    assert (intact["flagged"], intact["error"]) == (False, None)
    assert intact["runs"] == 50
    assert "credit2-lock-order  yes     lock-order" in out
    assert "intact fix (--protocol fixed): not flagged by the 1 commands" in out
    assert "1 of 1 mutants killed" in out


def test_the_peer_round_trip_kills_the_missing_trylock_recheck(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The hard one: a single move cannot show it (README, "xensched mutate")."""
    code, out, err, data = _mutate(tmp_path, capsys, "--mutant", "no-trylock-recheck")
    assert code == 0, out + err
    [row] = data["mutants"]
    assert (row["killed"], row["kind"], row["runs"]) == (True, "lock-mismatch", 36)
    [intact] = data["intact"]
    # DPOR covers every execution of the fix: 125, all clean.
    assert (intact["flagged"], intact["runs"]) == (False, 125)


def test_a_weakened_check_leaves_its_mutant_alive_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The planted weakening: lockdep off, so nothing sees the lock order."""
    assert "--lockdep" in LOCKDEP.argv
    assert PLAN["credit2-lock-order"] == (LOCKDEP,)
    plan = _plan(tmp_path, {"credit2-lock-order": [ROUND_TRIP]})
    code, out, err, data = _mutate(
        tmp_path, capsys, "--mutant", "credit2-lock-order", "--plan", plan
    )
    assert code == 1, out + err
    [row] = data["mutants"]
    assert (row["killed"], row["kind"], row["by"], row["runs"]) == (
        False,
        None,
        None,
        None,
    )
    [tried] = row["tried"]
    assert (tried["flagged"], tried["runs"], tried["error"]) == (False, 50, None)
    assert data["intact_flagged"] is False
    assert "credit2-lock-order  NO" in out
    assert "0 of 1 mutants killed" in out


def test_a_killer_that_flags_the_fix_fails_the_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A killer whose scenario carries an edit of its own flags the intact run too
    (the fix is not intact there): the table must say so and fail."""
    sc = builtin("round-trip", boot="credit2", pool="credit", protocol="fixed")
    planted = tmp_path / "planted.json"
    planted.write_text(sc.replace(mutants=("no-deinit-pdata",)).to_json(), "utf-8")
    killer = ["explore", "--scenario", str(planted), "--runs", "5", "--seed", "1"]
    plan = _plan(tmp_path, {"legacy": [[*killer, "--no-shrink"]]})
    code, out, err, data = _mutate(
        tmp_path, capsys, "--mutant", "legacy", "--plan", plan
    )
    assert code == 1, out + err
    assert data["mutants"][0]["killed"] is True
    assert data["intact_flagged"] is True
    [intact] = data["intact"]
    assert (intact["flagged"], intact["kinds"], intact["runs"]) == (True, ["assert"], 1)
    assert "intact fix FLAGGED by 1 of 1 commands:" in out


def test_a_killer_that_cannot_run_is_an_error_not_a_kill(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = _plan(tmp_path, {"legacy": [["explore", "--no-such-option"]]})
    code, out, err, data = _mutate(
        tmp_path, capsys, "--mutant", "legacy", "--plan", plan
    )
    assert code == 1, out + err
    [row] = data["mutants"]
    assert row["killed"] is False
    assert row["tried"][0]["error"].startswith("usage error: ")
    assert "--no-such-option" in row["tried"][0]["error"]
    assert data["intact"][0]["error"].startswith("usage error: ")
    assert "error: legacy: usage error" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mutant", "no-such"], "--mutant 'no-such': no such mutant"),
        (["--workers", "0"], "--workers 0: must be an integer in [1, 64]"),
        (["--timeout", "0"], "--timeout 0: must be a finite number"),
        (["--plan", "/nonexistent/p.json"], "--plan /nonexistent/p.json: "),
        (["--json", "/nonexistent/m.json"], "--json /nonexistent/m.json: directory"),
    ],
)
def test_bad_input_is_refused_before_any_work(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["mutate", *args]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert len(err.strip().splitlines()) == 1, err


def test_a_bad_plan_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = _plan(tmp_path, {"legacy": [["reproduce", "--json", "x.json"]]})
    assert main(["mutate", "--plan", plan]) == 2
    err = capsys.readouterr().err
    assert f"--plan {plan}: legacy: a killer may not set --json" in err


def test_a_plan_file_that_is_not_text_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = tmp_path / "plan.json"
    plan.write_bytes(b"\xff\xfe{}")
    assert main(["mutate", "--plan", str(plan)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"xensched mutate: error: --plan {plan}: not UTF-8 text (invalid start byte)"
    ]


def test_list_refuses_a_json_file_it_would_not_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m.json"
    assert main(["mutate", "--list", "--json", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"xensched mutate: error: --json {out}: --list runs nothing, so writes no "
        "report"
    ]
    assert not out.exists()


def test_json_naming_the_plan_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = _plan(tmp_path, {})
    assert main(["mutate", "--plan", plan, "--json", plan]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"xensched mutate: error: --json {plan}: the same file as --plan {plan} (an "
        "output never replaces an input)"
    ]
    assert Path(plan).read_text(encoding="utf-8") == "{}"


def test_sigterm_writes_the_report_of_what_finished(tmp_path: Path) -> None:
    out = tmp_path / "m.json"
    # no-barrier's killer (reproduce under relaxed) runs for seconds: stopped in it.
    p = CliProcess(
        [
            "-m",
            "xensched",
            "mutate",
            "--mutant",
            "no-barrier",
            "--workers",
            "1",
            "--progress",
            "--json",
            str(out),
        ],
        tmp_path,
    )
    try:
        p.wait_for(r"xensched mutate: 1 mutants")
        p.signal(signal.SIGTERM)
        code = p.finish(60)
    finally:
        p.kill()
    assert code == 128 + signal.SIGTERM, p.out + p.err
    assert "SIGTERM received: interrupted" in p.err
    data = json.loads(out.read_text(encoding="utf-8"))
    validate("mutate", data)
    assert data["complete"] is False
    assert data["mutants"] == []
    assert "0 of 1 mutants killed" in p.out
    assert "(interrupted: 1 not finished)" in p.out


@pytest.mark.slow
def test_every_mutant_of_the_catalog_is_killed_and_the_fix_never_flagged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err, data = _mutate(tmp_path, capsys)
    assert code == 0, out + err
    assert data["complete"] is True
    assert [r["name"] for r in data["mutants"]] == list(PLAN)
    assert all(r["killed"] for r in data["mutants"]), out
    assert data["intact_flagged"] is False
    assert len(data["intact"]) == 6
