"""``xensched scenarios``: the list, one scenario as text or JSON, exit codes."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from tests._outputs import reader_gone
from xensched.cli import main
from xensched.scenario import BUILTIN, Scenario, patch_move


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scenarios"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(BUILTIN)
    assert any("94734ab7c3" in line for line in lines)


def test_json_of_a_parameterised_builtin(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["scenarios", "patch-move", "--json", "--boot", "rtds", "--pool", "credit"]
    assert main([*argv, "--direction", "remove", "--protocol", "fixed"]) == 0
    sc = Scenario.from_dict(json.loads(capsys.readouterr().out))
    assert sc == patch_move("rtds", "credit", "remove", "fixed")


def test_text_of_a_builtin(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scenarios", "stress-default", "--cpus", "6"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("stress-default: ")
    assert "host: 6 pCPUs" in out
    assert "pcpu5: schedule() until stopped" in out
    assert "xl0: random moves (until stopped)" in out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["scenarios", "nope"], "no built-in scenario 'nope'"),
        (
            ["scenarios", "stress-default", "--pool", "credit"],
            "scenario 'stress-default' takes no --pool (its parameters here: "
            "--boot, --protocol, --cpus)",
        ),
        (["scenarios", "--json"], "need a NAME"),
        (["scenarios", "patch-move", "--pool", "sedf"], "invalid choice"),
        (
            ["scenarios", "patch-move", "--protocol", "x"],
            "protocol 'x': choose legacy, fixed",
        ),
    ],
)
def test_usage_errors_exit_2(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    # One line says what is wrong (argparse puts its usage above it).
    assert needle in capsys.readouterr().err.strip().splitlines()[-1]


def test_help_documents_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scenarios", "--help"]) == 0
    out = capsys.readouterr().out
    for opt in ("--json", "--boot", "--pool", "--direction", "--protocol", "--cpus"):
        assert opt in out
    # Every built-in that takes one of those parameters is named with them.
    text = " ".join(out.split()).replace("- ", "-")  # argparse wraps at hyphens
    assert "switch-race: boot, pool, direction, protocol" in text
    assert "stress-default: boot, protocol, cpus" in text
    assert main(["--help"]) == 0
    assert "scenarios" in capsys.readouterr().out


def test_a_reader_gone_ends_the_list_quietly() -> None:
    err = io.StringIO()
    with reader_gone(), contextlib.redirect_stderr(err):
        code = main(["scenarios"])
    assert (code, err.getvalue()) == (0, "")
