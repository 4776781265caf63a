"""The dependency between the two packages goes one way: xensched_stress -> xensched."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from xensched import cli

ROOT = Path(__file__).resolve().parents[2]


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def test_xensched_never_imports_xensched_stress() -> None:
    offenders = sorted(
        f"{path.relative_to(ROOT)}: {mod}"
        for path in (ROOT / "xensched").rglob("*.py")
        for mod in _imported_modules(path)
        if mod == "xensched_stress" or mod.startswith("xensched_stress.")
    )
    assert offenders == []


def test_the_scan_sees_an_import(tmp_path: Path) -> None:
    # The scan above must be able to fail: both import forms, even when nested.
    f = tmp_path / "m.py"
    f.write_text(
        "def f():\n    import xensched_stress.runner\n"
        "    from xensched_stress.config import PoolSpec\n",
        encoding="utf-8",
    )
    assert _imported_modules(f) >= {"xensched_stress.runner", "xensched_stress.config"}


def test_stress_and_bench_are_found_through_entry_points() -> None:
    found = cli.external_commands()
    assert {"stress", "bench"} <= set(found)
    assert found["stress"].summary.startswith("hammer schedule()")


def test_xensched_help_lists_the_external_commands(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "stress" in out
    assert "print the harness's performance figures" in out


def test_xensched_hands_a_command_its_arguments(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["stress", "--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: xensched stress")
    assert cli.main(["stress", "--cpus", "1"]) == 2
    assert "cpus=1" in capsys.readouterr().err
