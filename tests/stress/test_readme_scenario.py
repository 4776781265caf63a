"""The README's example of writing a scenario runs, and prints what it says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def _example() -> str:
    blocks = re.findall(
        r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S
    )
    found = [b for b in blocks if "run_controlled(" in b]
    assert len(found) == 1
    return str(found[0])


def test_readme_scenario_example(capsys: pytest.CaptureFixture[str]) -> None:
    exec(compile(_example(), str(README), "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out.splitlines()
    assert out == ["assert rt_free_pdata", "lock-clobbered schedule_cpu_switch", "0"]
