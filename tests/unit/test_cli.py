"""The ``xensched`` command: ``protocols`` and ``reproduce --protocol SPEC``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from xensched.cli import main
from xensched.protocol import Part


def test_protocols_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["protocols", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"presets", "parts"}
    assert out["presets"] == {"legacy": [], "fixed": [p.value for p in Part]}
    assert [p["name"] for p in out["parts"]] == [p.value for p in Part]
    for entry in out["parts"]:
        assert set(entry) == {"name", "description"}
        assert entry["description"] == Part(entry["name"]).describe()


def test_protocols_text_lists_presets_and_every_part(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["protocols"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "presets:"
    assert lines[1] == "  legacy"
    assert "  fixed" in lines
    for part in Part:
        assert f"  {part.value}" in lines
    assert "fixed-without:PART[,PART...]" in out
    assert "MODULE:FUNCTION" in out
    assert max(len(line) for line in lines) <= 88


def test_reproduce_runs_a_fixed_without_spec(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out_json = tmp_path / "r.json"
    argv = ["reproduce", "--pause", "mover", "--boot", "credit", "--pool", "credit2"]
    argv += ["--direction", "add", "--no-progress", "--json", str(out_json)]
    argv += ["--protocol", "fixed", "--protocol", "fixed-without:pointer-last"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    head = next(line for line in out.splitlines() if line.startswith("boot"))
    assert head.split() == [
        "boot",
        "pool",
        "move",
        "fixed",
        "fixed-without:pointer-last",
    ]
    assert "fixed-without:pointer-last: problems in 1 of 1 moves" in out
    assert "fixed: problems in 0 of 1 moves" in out
    results = json.loads(out_json.read_text())["results"]
    assert [r["protocol"] for r in results] == ["fixed", "fixed-without:pointer-last"]
    assert "lock-mismatch" in results[1]["problems"]


def test_reproduce_asks_each_protocol_once(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["reproduce", "--pause", "mover", "--boot", "credit", "--pool", "credit"]
    argv += ["--direction", "add"]
    argv += ["--protocol", "fixed-without:barrier,lock-irq"]
    argv += ["--protocol", "fixed-without:lock-irq,barrier", "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "reproduce: 1 moves, the mover paused" in out
    assert "fixed-without:lock-irq,barrier: problems in 1 of 1 moves" in out


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("nope", "--protocol 'nope': choose legacy, fixed"),
        ("fixed-without:nope", "unknown part 'nope'; parts: alloc-no-init"),
        ("fixed-without:", "name at least one part"),
        ("fixed-without:barrier,barrier", "named twice"),
        ("no_such_module_xyz:f", "cannot import 'no_such_module_xyz'"),
    ],
)
def test_reproduce_bad_protocol_is_a_one_line_usage_error(
    capsys: pytest.CaptureFixture[str], spec: str, needle: str
) -> None:
    assert main(["reproduce", "--protocol", spec, "--no-progress"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"xensched reproduce: error: --protocol {spec!r}: ")
    assert needle in lines[0]


def test_reproduce_protocol_module_that_raises_is_a_one_line_usage_error(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "raising_mod_a2.py").write_text('raise RuntimeError("boom")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "raising_mod_a2", raising=False)
    argv = ["reproduce", "--protocol", "raising_mod_a2:f", "--no-progress"]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        "xensched reproduce: error: --protocol 'raising_mod_a2:f': cannot import "
        "'raising_mod_a2' (RuntimeError: boom)"
    ]


def test_help_names_the_protocols_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "protocols" in out
    assert "fixed-without:PART" in out
    assert main(["reproduce", "--help"]) == 0
    assert "MODULE:FUNCTION" in capsys.readouterr().out


def test_reproduce_crash_leaves_the_moves_done_on_disk_and_raises_its_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The JSON's document once read `replays` before it was assigned: a crash after
    # the first move raised NameError in place of the crash, and wrote no JSON.
    import xensched.reproduce

    real = xensched.reproduce.reproduce_transition
    calls: list[object] = []

    def second_crashes(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[0])
        if len(calls) == 2:
            raise RuntimeError("boom on the second move")
        return real(*args, **kwargs)

    monkeypatch.setattr(xensched.reproduce, "reproduce_transition", second_crashes)
    out_json = tmp_path / "r.json"
    argv = ["reproduce", "--pause", "mover", "--boot", "credit", "--pool", "credit2"]
    argv += ["--direction", "add", "--protocol", "fixed", "--protocol", "legacy"]
    argv += ["--workers", "1", "--no-progress", "--json", str(out_json)]
    with pytest.raises(RuntimeError, match="boom on the second move"):
        main(argv)
    data = json.loads(out_json.read_text(encoding="utf-8"))
    assert data["complete"] is False
    assert [(r["protocol"], r["direction"]) for r in data["results"]] == [
        ("fixed", "add")
    ]
