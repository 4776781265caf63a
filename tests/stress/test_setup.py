"""A long set-up (many domains) shows progress, counts against the duration, and
stops between two steps when asked."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING

import pytest

from tests._cli_process import CliProcess
from xensched.cli import main
from xensched.scenario import build_host
from xensched_stress import runner
from xensched_stress.config import StressConfig
from xensched_stress.report import StopReason
from xensched_stress.runner import SetupProgress, run_stress

if TYPE_CHECKING:
    from pathlib import Path

# About 1.5 to 3 s of set-up here: long enough to be stopped in the middle.
_DOMAINS, _VCPUS = 1024, 4


def test_build_host_reports_every_step_in_order() -> None:
    sc = StressConfig(cpus=4, domains=3, vcpus=1).to_scenario()
    seen: list[tuple[int, int]] = []
    build_host(sc, on_step=lambda done, total: seen.append((done, total)))
    total = seen[0][1]
    # pCPUs 2 and 3 leave Pool-0, p1 is created and takes them, 3 domains.
    assert total == 2 + 1 + 2 + 3
    assert [d for d, _ in seen] == list(range(total + 1))
    assert {t for _, t in seen} == {total}


def test_a_raising_step_stops_the_set_up() -> None:
    sc = StressConfig(cpus=4, domains=3, vcpus=1).to_scenario()
    calls = 0

    def step(done: int, total: int) -> None:
        nonlocal calls
        calls += 1
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_host(sc, on_step=step)
    assert calls == 3


def test_a_stop_during_set_up_ends_the_run_promptly() -> None:
    stop = threading.Event()
    timer = threading.Timer(0.3, stop.set)
    cfg = StressConfig(cpus=4, duration=60.0, seed=1, domains=_DOMAINS, vcpus=_VCPUS)
    shown: list[SetupProgress] = []
    started = time.monotonic()
    timer.start()
    try:
        report = run_stress(cfg, stop=stop, setup_progress=shown.append)
    finally:
        timer.cancel()
        timer.join()
    assert time.monotonic() - started < 2.0
    assert report.interrupted
    assert sum(report.schedule_counts) == 0
    # Stopped in the middle of the set-up, not at its end.
    assert shown[-1].done < shown[-1].total


def test_set_up_counts_against_the_duration() -> None:
    cfg = StressConfig(cpus=4, duration=0.3, seed=1, domains=_DOMAINS, vcpus=_VCPUS)
    shown: list[SetupProgress] = []
    started = time.monotonic()
    report = run_stress(cfg, setup_progress=shown.append)
    assert time.monotonic() - started < 2.0
    assert report.stop_reason is StopReason.DURATION
    assert not report.interrupted
    assert sum(report.schedule_counts) == 0  # the duration ran out in set-up
    # A line every 0.25 s of set-up, not one per step, and one where it stopped.
    assert 1 <= len(shown) <= 3
    assert 0 < shown[-1].done < shown[-1].total
    assert shown[-1].elapsed >= 0.3
    assert all(x.elapsed >= runner.PROGRESS_INTERVAL for x in shown[:-1])


def test_a_short_set_up_shows_nothing_and_leaves_the_rest_of_the_duration() -> None:
    shown: list[SetupProgress] = []
    report = run_stress(StressConfig(duration=0.3, seed=1), setup_progress=shown.append)
    assert shown == []
    assert report.stop_reason is StopReason.DURATION
    assert sum(report.schedule_counts) > 0
    assert report.elapsed <= 0.3 + 0.25


def test_the_cli_shows_set_up_progress(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["stress", "--domains", "1024", "--vcpus", "4", "--duration", "0.4"]
    assert main([*argv, "--seed", "1", "--progress"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("seed=1\n")
    assert "] set-up: " in captured.err
    assert "/1029 steps" in captured.err  # 2 pCPUs out, p1 and its 2, 1024 domains


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_during_set_up_stops_it_with_a_report(tmp_path: Path) -> None:
    out_file = tmp_path / "r.json"
    args = ["-m", "xensched", "stress", "--domains", "1024", "--vcpus", "4"]
    args += ["--duration", "60", "--seed", "3", "--progress", "--json", str(out_file)]
    p = CliProcess(args, tmp_path)
    try:
        p.wait_for(r"\] set-up: \d+/1029 steps", stream="err")
        t0 = time.monotonic()
        p.signal(signal.SIGTERM)
        code = p.finish(timeout=30)
    finally:
        p.kill()
    assert time.monotonic() - t0 < 1.0, p.err  # not at the end of set-up
    assert code == 0, p.err
    assert "SIGTERM received: run stopped, partial report" in p.err
    data = json.loads(out_file.read_text(encoding="utf-8"))
    assert data["interrupted"] is True
    assert data["stragglers"] == []
