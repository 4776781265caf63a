"""``xensched stress --timeline FILE``: the first violation drawn, its path checked
before the run like ``--json``'s, written on Ctrl-C too, and nothing without a
violation."""

from __future__ import annotations

import json
import os
import threading
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Any

import pytest

import xensched_stress.cli
from tests._outputs import bad_output_paths, no_space
from tests._timelines import assert_nested, thread_names
from xensched.cli import main as xensched_main
from xensched_stress.cli import main

if TYPE_CHECKING:
    from pathlib import Path

#: The legacy race of 94734ab7c3, found within tens of milliseconds at this seed.
LEGACY = [
    "--boot=rtds",
    "--pool=p1:credit2:2,3",
    "--protocol=legacy",
    "--domain-moves=0",
    "--switch-interval=0.001",
    "--seed=5",
    "--no-progress",
]


def _never(*args: object, **kwargs: object) -> dict[str, object]:
    raise AssertionError("the run started")


def _check_trace(trace: dict[str, Any], report: dict[str, Any]) -> None:
    """A Chrome trace of the report's first violation: threads, nested slices, mark."""
    first = report["violations"][0]
    events = trace["traceEvents"]
    threads = thread_names(trace)
    contexts = {e["context"] for e in first["events"]}
    assert contexts <= set(threads.values())
    [mark] = [e for e in events if e.get("cat") == "mark"]
    assert (mark["ph"], mark["s"], mark["name"]) == ("i", "g", first["kind"])
    assert first["message"].splitlines()[0] in mark["args"]["detail"]
    # The mark is at the last event, the end of the picture.
    assert mark["ts"] == max(e["ts"] for e in events if "ts" in e)
    slices = [e for e in events if e["ph"] == "X"]
    assert slices  # a lock at least
    assert {e["cat"] for e in slices} <= {"hold", "wait", "section"}
    assert {e["tid"] for e in slices} <= set(threads)
    assert_nested(trace)


def test_a_legacy_run_draws_its_first_violation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    timeline, report = tmp_path / "out.json", tmp_path / "r.json"
    argv = [*LEGACY, "--duration=2", f"--timeline={timeline}", f"--json={report}"]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert f"timeline written to {timeline}" in out
    data = json.loads(report.read_text(encoding="utf-8"))
    trace = json.loads(timeline.read_text(encoding="utf-8"))
    assert trace["otherData"]["title"].startswith("xensched stress seed=5: ")
    _check_trace(trace, data)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "r.json"]


def test_an_svg_timeline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    timeline = tmp_path / "out.svg"
    assert main([*LEGACY, "--duration=2", f"--timeline={timeline}"]) == 1
    root = ET.fromstring(timeline.read_text(encoding="utf-8"))
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    marks = [
        g
        for g in root.iter("{http://www.w3.org/2000/svg}g")
        if g.get("class") == "mark"
    ]
    assert len(marks) == 1


def test_a_stopped_run_still_draws_what_it_found(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    timeline, report = tmp_path / "t.json", tmp_path / "r.json"
    stop = threading.Event()
    timer = threading.Timer(0.5, stop.set)
    timer.start()
    try:
        argv = [*LEGACY, "--duration=30", "--keep-going", "--max-violations=2"]
        code = main([*argv, f"--timeline={timeline}", f"--json={report}"], stop=stop)
    finally:
        timer.cancel()
        timer.join()
    assert code == 1
    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["interrupted"] is True
    _check_trace(json.loads(timeline.read_text(encoding="utf-8")), data)


def test_without_a_violation_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    timeline = tmp_path / "t.svg"
    argv = ["--duration=0.2", "--seed=1", "--no-progress", f"--timeline={timeline}"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"no violation: --timeline {timeline} not written" in out
    assert list(tmp_path.iterdir()) == []


def test_bad_timeline_paths_are_refused_before_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(xensched_stress.cli, "run_stress", _never)
    quick = ["--duration", "0.2", "--seed", "1", "--no-progress"]
    for path, problem in bad_output_paths(tmp_path):
        assert xensched_main(["stress", *quick, "--timeline", path]) == 2, path
        captured = capsys.readouterr()
        assert captured.out == ""
        [line] = captured.err.splitlines()
        assert line.startswith("xensched stress: error: --timeline ")
        assert problem in line
    same = str(tmp_path / "r.json")
    assert xensched_main(["stress", *quick, "--json", same, "--timeline", same]) == 2
    assert "the same file as --json" in capsys.readouterr().err


def test_help_names_the_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--timeline FILE" in out
    assert "Chrome trace-event JSON" in out


def test_a_full_disk_is_one_line_after_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "replace", no_space(os.replace))
    timeline = tmp_path / "t.html"
    assert main([*LEGACY, "--duration=2", f"--timeline={timeline}"]) == 1
    captured = capsys.readouterr()
    assert "result: violations found (exit 1)" in captured.out
    assert "timeline written" not in captured.out
    [line] = captured.err.splitlines()
    assert line == (
        f"xensched stress: error: --timeline {timeline}: not written: "
        "No space left on device"
    )
    assert list(tmp_path.iterdir()) == []
