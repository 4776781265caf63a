"""``--mutant NAME`` on ``xensched explore`` and ``reproduce``, and ``xensched mutate
--list``, through the real entry point: refused names and protocols, the mutant run
in place of the fix (its protocol and edits), and named in the output, the JSON
(against its schema) and the replay file. Fixed seeds, one move or one run each."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

import xensched.reproduce
from tests._schemas import validate
from xensched.cli import build_parser, main
from xensched.explore.command import _scenario
from xensched.mutants import CATALOG, NO_LOCK_RECHECK, find_mutant

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    from xensched.reproduce import Result, Transition

#: The round trip of pCPU 1 into a credit2 pool; the built-in's protocol is legacy.
ROUND_TRIP = ["explore", "--scenario", "round-trip", "--boot", "credit"]
ROUND_TRIP += ["--pool", "credit2", "--runs", "1", "--seed", "1", "--no-progress"]
#: One move the pointer-first mutant gets wrong (under a second, the mover paused).
CREDIT_ADD = ["reproduce", "--boot", "credit", "--pool", "credit2", "--direction"]
CREDIT_ADD += ["add", "--pause", "mover", "--workers", "1", "--no-progress"]


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _read(path: Path, kind: str) -> Any:
    data = json.loads(path.read_text(encoding="utf-8"))
    validate(kind, data)
    return data


# -- refusals, the same on every command ---------------------------------------------
@pytest.mark.parametrize("command", ["explore", "reproduce"])
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
            ["--mutant", "pointer-first", "--protocol", "legacy"],
            "--mutant pointer-first runs --protocol fixed-without:pointer-last",
        ),
        (
            ["--mutant", "legacy", "--mutant", "no-barrier"],
            "--mutant given twice (legacy, then no-barrier): one mutant per run",
        ),
    ],
)
def test_a_bad_mutant_is_one_line_and_exit_2(
    command: str,
    argv: list[str],
    says: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    f = tmp_path / "r.json"
    code, out, err = _run([command, *argv, "--json", str(f)], capsys)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1, err
    assert err.startswith(f"xensched {command}: error: {says}"), err
    assert not f.exists()  # refused before any work


# -- explore ----------------------------------------------------------------------------
def test_explore_runs_the_mutant_and_names_it_everywhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    e, r = tmp_path / "e.json", tmp_path / "replay.json"
    argv = [*ROUND_TRIP, "--mutant", "unlock-by-cpu"]
    code, out, _ = _run([*argv, "--json", str(e), "--replay-out", str(r)], capsys)
    assert code == 1, out
    assert (
        "(fixed-without:unlock-by-pointer, mutant unlock-by-cpu)"
        in (out.splitlines()[0])
    )
    doc = _read(e, "explore")
    assert doc["mutant"] == "unlock-by-cpu"
    assert doc["protocol"] == "fixed-without:unlock-by-pointer"
    assert doc["kinds"]
    replay = _read(r, "replay")
    assert replay["options"]["mutant"] == "unlock-by-cpu"
    assert replay["scenario"]["protocol"] == "fixed-without:unlock-by-pointer"
    # The printed command replays it, and says which mutant it is.
    assert f"replay: xensched replay {r}" in out
    rr = tmp_path / "rr.json"
    code, out, _ = _run(["replay", str(r), "--json", str(rr)], capsys)
    assert code == 1
    assert "mutant unlock-by-cpu" in out.splitlines()[0]
    assert "reproduced" in out
    assert _read(rr, "explore")["mutant"] == "unlock-by-cpu"


def test_explore_without_the_mutant_the_fix_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    e = tmp_path / "e.json"
    argv = [*ROUND_TRIP, "--protocol", "fixed", "--json", str(e)]
    code, out, _ = _run(argv, capsys)
    assert code == 0, out
    assert "mutant" not in out.splitlines()[0]
    doc = _read(e, "explore")
    assert (doc["mutant"], doc["kinds"]) == (None, [])


@pytest.mark.parametrize(
    ("options", "protocol", "edits"),
    [
        # Not given: the mutant's protocol, fixed for an edit, over the built-in's.
        (["--mutant", NO_LOCK_RECHECK], "fixed", (NO_LOCK_RECHECK,)),
        (["--mutant", "legacy"], "legacy", ()),
        (["--mutant", "no-old-lock"], "fixed-without:old-lock", ()),
        # Given: an edit runs on it; a protocol mutant's own is accepted.
        (
            ["--mutant", NO_LOCK_RECHECK, "--protocol", "legacy"],
            "legacy",
            (NO_LOCK_RECHECK,),
        ),
        (
            ["--mutant", "no-old-lock", "--protocol", "fixed-without:old-lock"],
            "fixed-without:old-lock",
            (),
        ),
        ([], "legacy", ()),
    ],
)
def test_explore_scenario_carries_the_mutant(
    options: list[str], protocol: str, edits: tuple[str, ...]
) -> None:
    args = build_parser().parse_args(["explore", "--scenario", "round-trip", *options])
    sc = _scenario(args)
    assert (sc.protocol, sc.mutants) == (protocol, edits)


# -- reproduce --------------------------------------------------------------------------
def test_reproduce_runs_the_mutant_in_place_of_the_presets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "r.json"
    code, out, _ = _run(
        [*CREDIT_ADD, "--mutant", "pointer-first", "--json", str(f)], capsys
    )
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].endswith(", mutant pointer-first")
    column = "mutant pointer-first (fixed-without:pointer-last)"
    assert lines[1].endswith(f"  {column}")
    assert lines[3].endswith("  lock-mismatch")
    assert f"{column}: problems in 1 of 1 moves (lock-mismatch)" in lines
    doc = _read(f, "reproduce")
    assert doc["mutant"] == "pointer-first"
    [result] = doc["results"]
    assert result["protocol"] == "fixed-without:pointer-last"
    assert result["problems"] == ["lock-mismatch"]
    # The intact fix on the same move: nothing.
    code, out, _ = _run([*CREDIT_ADD, "--protocol", "fixed", "--json", str(f)], capsys)
    assert code == 0
    doc = _read(f, "reproduce")
    assert doc["mutant"] is None
    assert [r["problems"] for r in doc["results"]] == [[]]


def test_reproduce_protocols_and_edits_of_a_mutant(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    asked: list[tuple[list[str], tuple[str, ...]]] = []

    def record(
        selected: Sequence[Transition],
        progress: Callable[[int, int, Result], None] | None = None,
        mutants: Sequence[str] = (),
        **options: object,
    ) -> list[Result]:
        asked.append(([str(t.protocol) for t in selected], tuple(mutants)))
        return []

    monkeypatch.setattr(xensched.reproduce, "reproduce", record)
    one = ["reproduce", "--boot", "credit", "--pool", "rtds", "--direction", "add"]
    # An edit's name, as before the catalog: the fixed protocol with the edit.
    assert _run([*one, "--mutant", NO_LOCK_RECHECK], capsys)[0] == 0
    # An edit on every protocol given.
    both = ["--protocol", "legacy", "--protocol", "fixed"]
    assert _run([*one, *both, "--mutant", NO_LOCK_RECHECK], capsys)[0] == 0
    # A protocol mutant: its protocol alone, also when --protocol names it.
    assert _run([*one, "--mutant", "legacy"], capsys)[0] == 0
    assert _run([*one, "--protocol", "legacy", "--mutant", "legacy"], capsys)[0] == 0
    # No mutant: the presets, no edit.
    assert _run(one, capsys)[0] == 0
    assert asked == [
        (["fixed"], (NO_LOCK_RECHECK,)),
        (["legacy", "fixed"], (NO_LOCK_RECHECK,)),
        (["legacy"], ()),
        (["legacy"], ()),
        (["legacy", "fixed"], ()),
    ]


# -- mutate --list ----------------------------------------------------------------------
def test_mutate_list_names_every_mutant_with_a_line_each(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = _run(["mutate", "--list"], capsys)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert len(lines) == len(CATALOG)
    for m, line in zip(CATALOG, lines, strict=True):
        assert line.split()[0] == m.name
        assert m.summary in line
        assert line.endswith(f"[{m.describe()}]")
    # Every name it lists is one --mutant takes.
    assert {find_mutant(line.split()[0]) for line in lines} == set(CATALOG)


@pytest.mark.slow
def test_reproduce_replays_of_an_edit_mutant_are_named_after_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not after the intact protocol, whose files they would replace."""
    d, f = tmp_path / "replays", tmp_path / "r.json"
    d.mkdir()
    argv = ["reproduce", "--boot", "credit", "--pool", "credit2", "--direction"]
    argv += ["remove", "--pause", "mover", "--workers", "1", "--no-progress"]
    argv += ["--mutant", NO_LOCK_RECHECK, "--replay-dir", str(d), "--json", str(f)]
    code, _, _ = _run(argv, capsys)
    assert code == 0
    [result] = _read(f, "reproduce")["results"]
    assert result["mutants"] == [NO_LOCK_RECHECK]
    assert "lock-mismatch" in result["problems"]
    replay = d / f"credit-credit2-remove-fixed+{NO_LOCK_RECHECK}-lock-mismatch.json"
    assert result["replays"]["lock-mismatch"] == str(replay)
    assert _read(replay, "replay")["scenario"]["mutants"] == [NO_LOCK_RECHECK]
    code, out, _ = _run(["replay", str(replay)], capsys)
    assert code == 1
    assert f"(fixed, edits {NO_LOCK_RECHECK})" in out.splitlines()[0]
    assert "reproduced" in out
