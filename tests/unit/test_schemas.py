"""The JSON Schema files of the ``--json`` reports: shipped, valid, and strict.

Strict means a report that loses or renames a key, or gives one of the wrong type or
an unknown violation kind or part, is refused: each mutation below is tried on a
real report and must give at least one error.
"""

from __future__ import annotations

import copy
import json
from importlib.resources import files
from typing import Any

import pytest
from jsonschema import Draft202012Validator, ValidationError

from tests._schemas import KINDS, errors, schema, validate
from xensched.cli import main
from xensched.mutants import CATALOG
from xensched.violation import ViolationKind


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_schema_is_a_valid_draft_2020_12_schema(kind: str) -> None:
    s = schema(kind)
    assert s["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(s)
    assert s["$id"] == f"urn:xensched:schema:{kind}"
    # Strict at the top: an unknown key is an error, and the keys are all required.
    assert s["additionalProperties"] is False


def test_every_shipped_schema_file_is_a_known_kind() -> None:
    shipped = {
        (pkg, p.name)
        for pkg in set(KINDS.values())
        for p in files(pkg).joinpath("schemas").iterdir()
        if p.name.endswith(".json")
    }
    assert shipped == {(pkg, f"{k}.schema.json") for k, pkg in KINDS.items()}


def _out(argv: list[str], capsys: pytest.CaptureFixture[str]) -> Any:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def _mutated(doc: Any, path: tuple[str | int, ...], change: str) -> Any:
    doc = copy.deepcopy(doc)
    *parent, key = path
    node = doc
    for p in parent:
        node = node[p]
    if change == "drop":
        del node[key]
    elif change == "rename":
        node[f"{key}_renamed"] = node.pop(key)
    elif change == "stringify":
        node[key] = str(node[key])
    elif change == "unknown":
        node[key] = "no-such-name"
    return doc


@pytest.mark.parametrize(
    ("path", "change"),
    [
        (("presets",), "drop"),
        (("parts",), "rename"),
        (("presets", "fixed"), "drop"),
        (("presets", "fixed", 0), "unknown"),
        (("parts", 0, "name"), "unknown"),
        (("parts", 0, "description"), "drop"),
    ],
)
def test_protocols_schema_refuses_a_changed_report(
    path: tuple[str | int, ...], change: str, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = _out(["protocols", "--json"], capsys)
    validate("protocols", doc)
    assert errors("protocols", _mutated(doc, path, change))


@pytest.mark.parametrize(
    ("path", "change"),
    [
        (("version",), "stringify"),
        (("threads",), "drop"),
        (("boot",), "unknown"),
        (("pools", 0, "sched"), "unknown"),
        (("domains", 0, "vcpus"), "stringify"),
        (("threads", 0, "kind"), "unknown"),
        (("threads", 0, "attempts"), "rename"),
        (("cpus",), "stringify"),
    ],
)
def test_scenario_schema_refuses_a_changed_report(
    path: tuple[str | int, ...], change: str, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = _out(["scenarios", "patch-move", "--json"], capsys)
    validate("scenario", doc)
    assert errors("scenario", _mutated(doc, path, change))


@pytest.fixture(scope="module")
def legacy_move(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The report of one legacy move that finds every problem (made once: 0.5 s)."""
    f = tmp_path_factory.mktemp("reproduce") / "r.json"
    argv = ["reproduce", "--pause", "mover", "--boot", "rtds", "--pool", "credit2"]
    argv += ["--direction", "add"]
    assert main([*argv, "--protocol", "legacy", "--no-progress", "--json", str(f)]) == 0
    return json.loads(f.read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("path", "change"),
    [
        (("complete",), "drop"),
        (("results",), "rename"),
        (("results", 0, "problems"), "drop"),
        (("results", 0, "problems", 0), "unknown"),
        (("results", 0, "boot"), "unknown"),
        (("results", 0, "direction"), "unknown"),
        (("results", 0, "runs"), "stringify"),
        (("results", 0, "switch_points"), "rename"),
        (("results", 0, "first", 0, "kind"), "unknown"),
        (("results", 0, "first", 0, "message"), "drop"),
    ],
)
def test_reproduce_schema_refuses_a_changed_report(
    path: tuple[str | int, ...], change: str, legacy_move: Any
) -> None:
    validate("reproduce", legacy_move)
    assert errors("reproduce", _mutated(legacy_move, path, change))


@pytest.fixture(scope="module")
def legacy_explore(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    """The report and the replay file of the legacy round trip's race, found by DPOR
    and not shrunk (made once: 0.3 s)."""
    d = tmp_path_factory.mktemp("explore")
    argv = ["explore", "--seed", "1", "--protocol", "legacy", "--no-shrink"]
    argv += ["--no-progress", "--json", str(d / "e.json")]
    assert main([*argv, "--replay-out", str(d / "r.json")]) == 1
    return tuple(
        json.loads((d / name).read_text(encoding="utf-8"))
        for name in ("e.json", "r.json")
    )


@pytest.mark.parametrize(
    ("path", "change"),
    [
        (("exhaustive",), "drop"),
        (("points_per_second",), "rename"),
        (("runs",), "stringify"),
        (("strategy",), "unknown"),
        (("stop_reason",), "unknown"),
        (("kinds", 0), "unknown"),
        (("violations", 0, "kind"), "unknown"),
        (("violations", 0, "events"), "drop"),
        (("violations", 0, "events", 0, "point"), "unknown"),
        (("exit_code",), "stringify"),
    ],
)
def test_explore_schema_refuses_a_changed_report(
    path: tuple[str | int, ...], change: str, legacy_explore: tuple[Any, Any]
) -> None:
    doc = legacy_explore[0]
    validate("explore", doc)
    assert errors("explore", _mutated(doc, path, change))


def test_explore_schema_tells_replay_reports_from_explore_reports(
    legacy_explore: tuple[Any, Any],
) -> None:
    doc = legacy_explore[0]
    assert errors("explore", {**doc, "reproduced": True})  # explore has none
    replayed = {**doc, "command": "replay", "strategy": "replay"}
    assert errors("explore", replayed)  # replay must say
    assert not errors("explore", {**replayed, "reproduced": None})


@pytest.mark.parametrize(
    ("path", "change"),
    [
        (("format",), "unknown"),
        (("version",), "stringify"),
        (("schedule",), "drop"),
        (("accesses",), "rename"),
        (("seed",), "stringify"),
        (("violation", "kind"), "unknown"),
        (("violation", "step"), "drop"),
        (("scenario", "boot"), "unknown"),
    ],
)
def test_replay_schema_refuses_a_changed_file(
    path: tuple[str | int, ...], change: str, legacy_explore: tuple[Any, Any]
) -> None:
    replay = legacy_explore[1]
    validate("replay", replay)
    changed = _mutated(replay, path, change)
    if path[0] == "scenario":
        # The scenario is checked against its own schema, as validate() does.
        with pytest.raises(ValidationError):
            validate("replay", changed)
    else:
        assert errors("replay", changed)


def test_replay_schema_takes_a_pytest_node_instead_of_a_scenario(
    legacy_explore: tuple[Any, Any],
) -> None:
    replay = legacy_explore[1]
    node = {**replay, "scenario": None, "nodeid": "tests/test_x.py::test_race"}
    assert not errors("replay", node)
    assert errors("replay", {**node, "nodeid": None})


def test_replay_schema_names_every_mutant_and_violation_kind() -> None:
    # xensched replay refuses what these enums do not list: they must follow the code.
    options = schema("replay")["properties"]["options"]["properties"]
    assert options["mutant"]["enum"] == [m.name for m in CATALOG]
    assert schema("replay")["$defs"]["kind"]["enum"] == [k.value for k in ViolationKind]
