"""The edges of a stress run: Ctrl-C after the run proper, a start that fails, a run
that ends before its threads start."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from tests._cli_process import CliProcess
from tests._schemas import validate
from xensched.scenario import build_host
from xensched_stress import runner
from xensched_stress.cli import build_parser, main as stress_main
from xensched_stress.config import StressConfig
from xensched_stress.report import EXIT_ERROR, StopReason
from xensched_stress.runner import run_stress

if TYPE_CHECKING:
    from pathlib import Path

    from xensched import Host
    from xensched.scenario import Scenario

#: ``python -c`` this, then the CLI's arguments: ``xensched`` whose final audit says
#: ``final audit`` on stdout and then lasts 5 s (a Ctrl-C lands in it).
_SLOW_AUDIT_CLI = """
import sys, time
from xensched.cli import main
from xensched_stress import runner

real = runner._Run._final_audit

def slow(self):
    print("final audit", flush=True)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        time.sleep(0.01)
    real(self)

runner._Run._final_audit = slow
sys.exit(main())  # argv None: the command line's own SIGINT handler
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_in_the_final_audit_still_writes_the_report(tmp_path: Path) -> None:
    # The KeyboardInterrupt of a Ctrl-C there went past the run's own handling of
    # it up to xensched's main: exit 130, no report, no JSON.
    out_file = tmp_path / "r.json"
    args = ["-c", _SLOW_AUDIT_CLI, "stress", "--duration", "0.2", "--seed", "4"]
    args += ["--no-progress", "--json", str(out_file)]
    p = CliProcess(args, tmp_path)
    try:
        p.wait_for(r"(?m)^final audit$")
        p.signal(signal.SIGINT)
        code = p.finish(timeout=90)
    finally:
        p.kill()
    assert code == 0, p.err
    assert "Traceback" not in p.err
    assert f"report written to {out_file}" in p.out
    data = json.loads(out_file.read_text(encoding="utf-8"))
    validate("stress", data)
    assert data["exit_code"] == 0
    assert data["threads_started"] is True


def _fail_start(monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> None:
    def start(self: Any) -> None:
        raise exc

    monkeypatch.setattr(runner._Run, "_start", start)


@pytest.mark.parametrize(
    "exc",
    [RuntimeError("can't start new thread"), threading.BrokenBarrierError()],
)
def test_a_start_that_fails_is_a_harness_error_report(
    monkeypatch: pytest.MonkeyPatch, exc: BaseException
) -> None:
    _fail_start(monkeypatch, exc)
    report = run_stress(StressConfig(duration=5.0, seed=1))
    assert report.stop_reason is StopReason.ERROR
    assert report.error is not None
    assert type(exc).__name__ in report.error
    assert report.exit_code == EXIT_ERROR
    assert not report.threads_started
    assert report.elapsed == 0.0
    text = report.render()
    assert "ERROR: harness error: could not start the threads" in text
    assert "result: harness error (exit 5)" in text
    validate("stress", report.to_json())


def test_the_cli_writes_the_report_of_a_start_that_fails(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _fail_start(monkeypatch, RuntimeError("can't start new thread"))
    out_file = tmp_path / "r.json"
    argv = ["--duration", "5", "--seed", "1", "--no-progress", "--json", str(out_file)]
    assert stress_main(argv) == EXIT_ERROR
    assert "can't start new thread" in capsys.readouterr().out
    data = json.loads(out_file.read_text(encoding="utf-8"))
    validate("stress", data)
    assert data["stop_reason"] == "harness error"
    assert data["exit_code"] == EXIT_ERROR


def test_a_run_that_ends_in_set_up_reports_no_time_and_says_no_thread_ran(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # It reported the set-up's time as elapsed, and a plain "no violation".
    def slow(sc: Scenario, **kw: Any) -> Host:
        on_step = kw.pop("on_step")

        def step(done: int, total: int) -> None:
            time.sleep(0.005)
            on_step(done, total)

        return build_host(sc, on_step=step, **kw)

    monkeypatch.setattr(runner, "build_host", slow)
    cfg = StressConfig(cpus=4, duration=0.3, seed=1, domains=512, vcpus=8)
    report = run_stress(cfg)
    assert report.stop_reason is StopReason.DURATION
    assert sum(report.schedule_counts) == 0
    assert report.elapsed == 0.0
    assert not report.threads_started
    assert "WARNING: no thread ran" in report.render()
    data = report.to_json()
    validate("stress", data)
    assert data["threads_started"] is False


def test_a_run_that_ran_has_no_such_warning() -> None:
    report = run_stress(StressConfig(duration=0.2, seed=1))
    assert report.threads_started
    assert report.elapsed > 0
    assert "no thread ran" not in report.render()


def test_cpus_help_says_what_the_option_takes() -> None:
    text = build_parser().format_help()
    assert "2 to 256" not in text
    assert build_parser().parse_args(["--cpus", "1"]).cpus == 1
