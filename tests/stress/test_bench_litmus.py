"""``xensched bench --only f``: litmus tests per second under each memory model, the
text and the JSON against the shipped schema."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from tests._schemas import validate
from xensched.cli import main
from xensched.litmus.builtin import catalog
from xensched_stress import bench_litmus as bl

if TYPE_CHECKING:
    from pathlib import Path


def test_litmus_part_text_and_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Three small tests of the catalog under each model (about 1 s); --quick keeps
    the two-thread ones, here all of them."""
    small = [t for t in catalog() if t.name in ("SB", "MP", "CoWR", "IRIW")]
    monkeypatch.setattr(bl, "catalog", lambda: small)
    f = tmp_path / "b.json"
    assert main(["bench", "--only=f", "--quick", "--json", str(f)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    data = json.loads(f.read_text(encoding="utf-8"))
    validate("bench", data)
    lit = data["litmus"]
    assert lit["tests"] == 3  # IRIW has four threads: left out by --quick
    assert lit["quick"] is True
    assert [m["model"] for m in lit["models"]] == ["sc", "tso", "relaxed"]
    sc, tso, relaxed = lit["models"]
    assert sc["verdicts"] == {"agrees": 1, "stronger": 2, "weaker": 0, "none": 0}
    assert tso["verdicts"] == {"agrees": 2, "stronger": 1, "weaker": 0, "none": 0}
    assert relaxed["verdicts"] == {"agrees": 3, "stronger": 0, "weaker": 0, "none": 0}
    # Drains and early loads are choices: more executions than under sc.
    assert sc["executions"] < tso["executions"] < relaxed["executions"]
    assert all(m["tests_per_s"] > 0 for m in lit["models"])
    assert "(f) litmus: 3 tests of the built-in catalog (two-thread ones" in out
    for model in ("sc", "tso", "relaxed"):
        assert f"    {model:<8} " in out
