"""``--race-detector`` on ``xensched stress``, ``explore``, ``replay`` and
``reproduce``: the option, the reports (text and JSON against the shipped schemas),
the replay file that records it, and what it finds in the switch without the old
scheduler's lock (``fixed-without:old-lock``) against the fixed protocol.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import pytest

from tests._schemas import validate
from tests.race.test_switch_races import FIXED_REMAINING
from xensched import ConfigError
from xensched.cli import main
from xensched.explore.engine import Explorer, ScenarioTarget
from xensched.explore.pct import PCT
from xensched.instruments import (
    RACE_DETECTOR_DEFAULT,
    InstrumentedTarget,
    RaceSummary,
    races_of,
    summary_of,
    with_instruments,
)
from xensched.protocol import SwitchProtocol
from xensched.race_detector import Seen
from xensched.reproduce import Transition, reproduce_transition
from xensched.scenario import builtin
from xensched_stress.cli import main as stress_main
from xensched_stress.config import StressConfig, rerun_command

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

#: Fields the switch writes that the old scheduler's lock orders (the fix's point).
SWITCH = re.compile(r"per_cpu\(scheduler|sched_priv")


def _json(path: Path, kind: str) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    validate(kind, data)
    return data


def _exit(command: Callable[[list[str]], int], argv: list[str]) -> object:
    try:
        return command(argv)
    except SystemExit as e:
        return e.code


def _switch_fields(rd: dict[str, Any]) -> set[str]:
    return {r["field"] for r in rd["races"] if SWITCH.search(r["field"])}


def _key(r: dict[str, Any]) -> tuple[str, str, str]:
    a, b = sorted((r["first"]["fn"], r["second"]["fn"]))
    return (re.sub(r"\d+", "N", r["field"]), a, b)


EXPLORE = [
    "explore",
    "--scenario=switch-race",
    "--boot=credit",
    "--pool=credit",
    "--strategy=pct",
    "--seed=1",
    "--runs=20",
]


# -- the option -------------------------------------------------------------------------------


def test_the_default_is_off() -> None:
    # It makes every load a point (README, "What the race detector finds"; bench g).
    assert RACE_DETECTOR_DEFAULT is False
    assert StressConfig().race_detector is False


@pytest.mark.parametrize("command", ["explore", "reproduce"])
def test_the_option_takes_no_value(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _exit(main, [command, "--race-detector=yes"]) == 2
    assert "--race-detector" in capsys.readouterr().err


def test_stress_refuses_a_value_and_a_race_detector_that_is_not_a_bool(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _exit(stress_main, ["--race-detector=1"]) == 2
    assert "--race-detector" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="race_detector: 1: expected a bool"):
        StressConfig(race_detector=1).validate()  # type: ignore[arg-type]


def test_the_rerun_line_keeps_the_flag() -> None:
    assert "--race-detector" in rerun_command(StressConfig(seed=3, race_detector=True))
    assert "race-detector" not in rerun_command(StressConfig(seed=3))


# -- explore and replay -------------------------------------------------------------------------


def test_explore_without_the_old_lock_reports_data_races_and_replay_follows_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json, replay = tmp_path / "e.json", tmp_path / "r.json"
    argv = [*EXPLORE, "--protocol=fixed-without:old-lock", "--race-detector"]
    code = main([*argv, f"--json={out_json}", f"--replay-out={replay}"])
    out = capsys.readouterr().out
    assert code == 1, out
    data = _json(out_json, "explore")
    assert data["kinds"] == ["data-race"]
    rd = data["race_detector"]
    assert rd["accesses"] > 0
    assert _switch_fields(rd)
    assert data["lockdep"] is None
    assert f"race detector: {rd['accesses']:,} accesses checked" in out
    rec = _json(replay, "replay")
    assert rec["options"]["race_detector"] is True
    assert "lockdep" not in rec["options"]
    assert rec["violation"]["kind"] == "data-race"
    # The file's execution ran with the detector: so does its replay, unless told.
    replayed = tmp_path / "p.json"
    assert main(["replay", str(replay), f"--json={replayed}"]) == 1
    out = capsys.readouterr().out
    assert "data-race at step" in out
    assert ": reproduced" in out
    again = _json(replayed, "explore")
    assert again["reproduced"] is True
    assert again["race_detector"]["accesses"] > 0
    assert main(["replay", "--no-race-detector", str(replay)]) == 0
    assert "NOT reproduced" in capsys.readouterr().out


def test_explore_on_the_fixed_protocol_reports_no_race_on_the_switch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "e.json"
    argv = [*EXPLORE, "--protocol=fixed", "--race-detector", "--keep-going"]
    main([*argv, f"--json={f}", f"--replay-out={tmp_path / 'r.json'}"])
    capsys.readouterr()
    data = _json(f, "explore")
    assert data["runs"] == 20
    rd = data["race_detector"]
    assert not _switch_fields(rd)
    # What it still reports is what the README lists as remaining.
    assert {_key(r) for r in rd["races"]} <= FIXED_REMAINING


def test_an_instrumented_target_gives_each_execution_its_own_detector() -> None:
    sc = builtin(
        "switch-race", boot="credit", pool="credit", protocol="fixed-without:old-lock"
    )
    target = with_instruments(ScenarioTarget(sc, 1), race_detector=True)
    assert isinstance(target, InstrumentedTarget)
    Explorer(target, PCT(seed=1), runs=3, keep_going=True).explore()
    races = races_of(target)
    assert races is not None
    assert races.accesses > 0
    assert summary_of(target) is None  # lockdep was not asked for
    assert with_instruments(ScenarioTarget(sc, 1)) == ScenarioTarget(sc, 1)


def test_race_summary_merges_once_per_field_and_functions() -> None:
    a = Seen("pcpu0", "read", "f", ("l",))
    b = Seen("pcpu1", "write", "g", ())
    c = Seen("pcpu2", "write", "g", ())
    one = RaceSummary(3, (("x", a, b),))
    two = RaceSummary(4, (("x", a, c), ("y", a, b)))
    both = one.merge(two)
    assert both.accesses == 7
    assert [(f, s.context) for f, _, s in both.races] == [
        ("x", "pcpu1"),
        ("y", "pcpu1"),
    ]
    races = both.to_json()["races"]
    assert isinstance(races, list)
    assert races[0] == {
        "field": "x",
        "first": {"context": "pcpu0", "kind": "read", "fn": "f", "locks": ["l"]},
        "second": {"context": "pcpu1", "kind": "write", "fn": "g", "locks": []},
    }
    assert both.lines()[0] == "race detector: 7 accesses checked, 2 races found"


# -- stress -------------------------------------------------------------------------------------

STRESS = ["--boot=credit", "--pool=p1:credit:2,3", "--ops=1000", "--seed=1"]


def test_stress_without_the_old_lock_races_on_the_switch_and_the_fix_does_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Free-running threads: not one schedule, but at 600 ops each of seeds 1-5
    # reported 3 to 12 switch fields without the old lock, and none with it.
    f = tmp_path / "s.json"
    argv = [*STRESS, "--race-detector", "--keep-going", "--no-progress"]
    code = stress_main([*argv, "--protocol=fixed-without:old-lock", "--json", str(f)])
    out = capsys.readouterr().out
    assert code == 1, out
    data = _json(f, "stress")
    assert data["config"]["race_detector"] is True
    assert "--race-detector" in data["rerun"]
    rd = data["race_detector"]
    assert _switch_fields(rd), rd["races"]
    assert "data-race" in data["violations_by_kind"]
    assert f"race detector: {rd['accesses']:,} accesses checked" in out
    stress_main([*argv, "--protocol=fixed", "--json", str(f)])
    capsys.readouterr()
    data = _json(f, "stress")
    assert data["race_detector"]["accesses"] > 0
    assert not _switch_fields(data["race_detector"])


def test_stress_without_the_option_has_no_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "s.json"
    stress_main([*STRESS, "--ops=100", "--no-progress", "--json", str(f)])
    out = capsys.readouterr().out
    data = _json(f, "stress")
    assert data["race_detector"] is None
    assert data["config"]["race_detector"] is False
    assert "race detector:" not in out


# -- reproduce ----------------------------------------------------------------------------------


def test_reproduce_race_detector_per_move_json_and_replay_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    t = Transition("credit", "credit", "add", SwitchProtocol.parse("fixed"))
    assert reproduce_transition(t, pause="mover").race_detector is None
    f, d = tmp_path / "r.json", tmp_path / "replays"
    d.mkdir()
    argv = ["reproduce", "--boot=credit", "--pool=credit", "--direction=add"]
    argv += ["--protocol=fixed-without:old-lock", "--pause=mover", "--workers=1"]
    argv += ["--no-progress", "--race-detector", f"--json={f}", f"--replay-dir={d}"]
    code = main(argv)
    out = capsys.readouterr().out
    assert code == 0, out  # reproduce's table is its verdict: 0 when it completes
    data = _json(f, "reproduce")
    (r,) = data["results"]
    assert r["problems"] == ["data-race"]
    assert _switch_fields(r["race_detector"])
    assert ", race detector on" in out.splitlines()[0]
    (replay,) = d.iterdir()
    rec = _json(replay, "replay")
    assert rec["options"] == {"race_detector": True}
    assert main(["replay", str(replay)]) == 1
    assert ": reproduced" in capsys.readouterr().out
