"""``xensched stress --json`` and ``xensched bench --json``: a path that cannot be
written is refused before any work; a write that fails at the end comes after the text
report, as one line, with exit 4 unless the run found more (xensched.outputs)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import stat
import sys
from typing import TYPE_CHECKING, Any

import pytest

import xensched_stress.cli
from tests._outputs import bad_output_paths, no_space, reader_gone
from tests._schemas import validate
from xensched import programs
from xensched.cli import main as xensched_main
from xensched.outputs import EXIT_NOT_WRITTEN
from xensched.spinlock import spin_lock
from xensched_stress import bench
from xensched_stress.cli import main as stress_main
from xensched_stress.runner import run_stress

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from xensched import Host, Vcpu
    from xensched_stress.report import StressReport

QUICK = ["--duration", "0.2", "--seed", "1", "--no-progress"]


def _no_space(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make renaming a report file into place fail as on a full disk."""
    monkeypatch.setattr(os, "replace", no_space(os.replace))


def _never(*args: object, **kwargs: object) -> dict[str, object]:
    raise AssertionError("the run started")


@pytest.fixture
def umask() -> Iterator[Callable[[int], None]]:
    """Set the process umask for the test; the old one is put back after it."""
    old = os.umask(0o022)
    os.umask(old)

    def set_umask(mask: int) -> None:
        os.umask(mask)

    yield set_umask
    os.umask(old)


# -- xensched stress -----------------------------------------------------------------------


def test_stress_refuses_every_bad_path_before_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(xensched_stress.cli, "run_stress", _never)
    for path, problem in bad_output_paths(tmp_path):
        assert xensched_main(["stress", *QUICK, "--json", path]) == 2, path
        captured = capsys.readouterr()
        assert captured.out == ""  # not even the seed line
        [line] = captured.err.splitlines()
        assert line.startswith("xensched stress: error: --json ")
        assert problem in line


def test_stress_prints_the_report_then_says_the_file_was_not_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    reports: list[StressReport] = []

    def run_and_keep(*args: Any, **kwargs: Any) -> StressReport:
        reports.append(run_stress(*args, **kwargs))
        return reports[-1]

    monkeypatch.setattr(xensched_stress.cli, "run_stress", run_and_keep)
    f = tmp_path / "r.json"
    _no_space(monkeypatch)
    monkeypatch.setattr(sys, "stderr", sys.stdout)  # one stream: the order shows
    assert stress_main([*QUICK, "--json", str(f)]) == EXIT_NOT_WRITTEN
    [report] = reports
    assert report.exit_code == 0
    # All of the report, then the one line, and no claim that the file was written.
    assert capsys.readouterr().out == (
        f"seed=1\n{report.render()}\n"
        f"xensched stress: error: --json {f}: not written: No space left on device\n"
    )
    assert [p.name for p in tmp_path.iterdir()] == []


def test_stress_deadlock_keeps_exit_3_when_the_file_is_not_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def stuck(h: Host) -> Vcpu:
        spin_lock(h.cpupool_lock)
        return h.percpu[0].idle

    monkeypatch.setattr(programs, "schedule", stuck)
    _no_space(monkeypatch)
    f = tmp_path / "r.json"
    argv = ["--watchdog", "0.3", "--lock-timeout", "0.8", "--seed", "1"]
    assert stress_main([*argv, "--no-progress", "--json", str(f)]) == 3
    captured = capsys.readouterr()
    assert "result: deadlock (exit 3)" in captured.out
    assert captured.err.splitlines()[-1].endswith(
        f"--json {f}: not written: No space left on device"
    )


def test_stress_writes_with_the_umask(
    tmp_path: Path, umask: Callable[[int], None], capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "r.json"
    umask(0o077)
    assert stress_main([*QUICK, "--json", str(f)]) == 0
    assert f"report written to {f}" in capsys.readouterr().out
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    data = json.loads(f.read_text(encoding="utf-8"))
    validate("stress", data)
    assert data["seed"] == 1


def test_stress_into_a_closed_pipe_still_writes_its_files(tmp_path: Path) -> None:
    report, timeline = tmp_path / "s.json", tmp_path / "t.svg"
    argv = ["stress", "--protocol", "legacy", *QUICK, "--json", str(report)]
    err = io.StringIO()
    with reader_gone(), contextlib.redirect_stderr(err):
        code = xensched_main([*argv, "--timeline", str(timeline)])
    assert err.getvalue() == ""
    doc = json.loads(report.read_text(encoding="utf-8"))
    validate("stress", doc)
    assert code == (1 if doc["violations"] else 0)
    # The picture comes after the text report too: drawn when there is a violation.
    assert timeline.exists() == bool(doc["violations"])


def test_stress_help_documents_exit_4(capsys: pytest.CaptureFixture[str]) -> None:
    assert stress_main(["--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "4 no violation but --json FILE could not be written at the end" in out


# -- xensched bench --------------------------------------------------------------------------


def test_bench_refuses_every_bad_path_before_any_part(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    parts = ("bench_race", "bench_fixed", "bench_throughput", "bench_scale")
    for part in (*parts, "bench_explore"):
        monkeypatch.setattr(bench, part, _never)
    for path, problem in bad_output_paths(tmp_path):
        assert xensched_main(["bench", "--only", "c", "--json", path]) == 2, path
        captured = capsys.readouterr()
        assert captured.out == ""  # not even the header
        [line] = captured.err.splitlines()
        assert line.startswith("xensched bench: error: --json ")
        assert problem in line


def _fast_throughput(duration: float, cpus: int) -> dict[str, object]:
    sys.stdout.write("(c) throughput: stand-in\n")
    return {"duration": duration, "cpus": cpus}


def test_bench_prints_the_figures_then_says_the_file_was_not_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bench, "bench_throughput", _fast_throughput)
    _no_space(monkeypatch)
    monkeypatch.setattr(sys, "stderr", sys.stdout)
    f = tmp_path / "b.json"
    code = bench.main(["--only", "c", "--json", str(f)], prog="xensched bench")
    assert code == EXIT_NOT_WRITTEN
    lines = capsys.readouterr().out.splitlines()
    assert "(c) throughput: stand-in" in lines
    assert lines[-2].startswith("bench done in ")
    assert lines[-1] == (
        f"xensched bench: error: --json {f}: not written: No space left on device"
    )
    assert [p.name for p in tmp_path.iterdir()] == []


def test_bench_writes_with_the_umask(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    umask: Callable[[int], None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(bench, "bench_throughput", _fast_throughput)
    f = tmp_path / "b.json"
    umask(0o027)
    argv = ["--only", "c", "--figure-duration", "0.5", "--json", str(f)]
    assert bench.main(argv) == 0
    capsys.readouterr()
    assert stat.S_IMODE(f.stat().st_mode) == 0o640
    assert json.loads(f.read_text(encoding="utf-8"))["throughput"] == {
        "duration": 0.5,
        "cpus": 4,
    }


def test_bench_help_documents_exit_4(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "4 done but --json FILE could not be written at the end" in out
