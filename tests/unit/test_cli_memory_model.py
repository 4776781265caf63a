"""``--memory-model`` on ``xensched explore``, ``replay`` and ``reproduce``.

A schedule recorded under ``relaxed`` (with its drain steps) replays under its own
model and diverges, naming the step, under ``sc``; the JSON reports carry the model
and stay valid against their schemas.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import pytest

from tests._schemas import validate
from xensched.cli import build_parser, main
from xensched.explore import command, make_strategy
from xensched.explore.engine import ScenarioTarget
from xensched.explore.replay import Replay
from xensched.explore.story import record
from xensched.protocol import SwitchProtocol
from xensched.reproduce import Transition, scenario_of
from xensched.scenario import builtin

if TYPE_CHECKING:
    from pathlib import Path


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _json(path: Path, kind: str) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    validate(kind, data)
    return data


@pytest.mark.parametrize("cmd", ["explore", "replay", "reproduce"])
def test_a_bad_model_is_one_line_naming_the_choices(
    cmd: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [cmd, *(["r.json"] if cmd == "replay" else []), "--memory-model", "pso"]
    code, out, err = _run(argv, capsys)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1, err
    assert err.startswith(f"xensched {cmd}: error: ")
    assert "'pso'" in err
    assert all(m in err for m in ("sc", "tso", "relaxed"))


def _explore_args(*argv: str) -> Any:
    return build_parser().parse_args(["explore", *argv])


def test_explore_puts_the_model_in_the_scenario() -> None:
    assert command._scenario(_explore_args()).memory_model == "sc"
    sc = command._scenario(_explore_args("--memory-model", "relaxed"))
    assert sc.memory_model == "relaxed"
    own = builtin("round-trip").replace(memory_model="tso")
    inline = own.to_json(indent=None)
    assert command._scenario(_explore_args("--scenario", inline)).memory_model == "tso"
    over = _explore_args("--scenario", inline, "--memory-model", "sc")
    assert command._scenario(over).memory_model == "sc"


def test_explore_under_tso_says_so_and_writes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "e.json"
    argv = ["explore", "--memory-model", "tso", "--protocol", "fixed"]
    argv += ["--pool", "arinc653", "--strategy", "random", "--runs", "5"]
    argv += ["--seed", "2", "--no-progress", "--json", str(f)]
    code, out, _ = _run(argv, capsys)
    assert code == 0, out
    assert "scenario round-trip (fixed, memory model tso)" in out.splitlines()[0]
    data = _json(f, "explore")
    assert data["memory_model"] == "tso"
    assert data["runs"] == 5


@pytest.fixture
def relaxed_replay(tmp_path: Path) -> Path:
    """A round trip recorded under relaxed, its buffers drained by chosen steps."""
    sc = builtin("round-trip", protocol="fixed").replace(memory_model="relaxed")
    ex, _ = record(ScenarioTarget(sc, 0), search=make_strategy("random", seed=0))
    assert any(">" in name for name in ex.schedule)  # drain steps CPU>field
    assert not ex.violations
    path = tmp_path / "r.json"
    path.write_text(
        Replay.of(ex, seed=0, strategy="random", scenario=sc).to_json(),
        encoding="utf-8",
    )
    return path


def test_replay_runs_under_the_files_model(
    relaxed_replay: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "e.json"
    code, out, err = _run(["replay", str(relaxed_replay), "--json", str(f)], capsys)
    assert (code, err) == (0, "")
    assert "(fixed, memory model relaxed)" in out.splitlines()[0]
    assert _json(f, "explore")["memory_model"] == "relaxed"


def test_replay_under_another_model_diverges_naming_the_step(
    relaxed_replay: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(
        ["replay", str(relaxed_replay), "--memory-model", "sc"], capsys
    )
    assert code == 2
    assert "ran under relaxed; replaying it under sc (--memory-model)" in out
    assert err.count("\n") == 1, err
    assert err.startswith(
        f"xensched replay: error: {relaxed_replay} does not fit this code and "
        "scenario: the replay diverged at step "
    )
    assert re.search(r"diverged at step \d+: ", err)


def test_reproduce_under_tso_writes_the_model_and_its_replays(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f, d = tmp_path / "r.json", tmp_path / "replays"
    d.mkdir()
    argv = ["reproduce", "--boot", "credit", "--pool", "credit2", "--direction"]
    argv += ["add", "--protocol", "legacy", "--pause", "mover", "--workers", "1"]
    argv += ["--memory-model", "tso", "--no-progress", "--json", str(f)]
    code, out, _ = _run([*argv, "--replay-dir", str(d)], capsys)
    assert code == 0, out
    assert out.splitlines()[0].endswith(", memory model tso")
    (result,) = _json(f, "reproduce")["results"]
    assert result["memory_model"] == "tso"
    assert result["problems"] == ["lock-mismatch"]
    replay = d / "credit-credit2-add-legacy-lock-mismatch-tso.json"
    assert result["replays"] == {"lock-mismatch": str(replay)}
    assert json.loads(replay.read_text())["scenario"]["memory_model"] == "tso"


def test_reproduce_scenarios_carry_the_model() -> None:
    t = Transition("credit", "rtds", "remove", SwitchProtocol.parse("fixed"))
    assert scenario_of(t).memory_model == "sc"
    sc = scenario_of(t, ("no-lock-recheck",), "relaxed")
    assert (sc.memory_model, sc.mutants) == ("relaxed", ("no-lock-recheck",))
