"""A long set-up (many domains) shows progress, counts against the duration, and
stops between two steps when asked."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from tests._cli_process import CliProcess
from xensched.cli import main
from xensched.scenario import build_host
from xensched_stress import runner
from xensched_stress.config import StressConfig
from xensched_stress.report import StopReason
from xensched_stress.runner import SetupProgress, run_stress

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from xensched import Host
    from xensched.scenario import Scenario

_DOMAINS, _VCPUS = 1024, 4
#: The set-up's steps on 4 pCPUs: 2 pCPUs out of Pool-0, p1 and its 2, the domains.
_STEPS = 2 + 1 + 2 + _DOMAINS
#: A run that ends promptly ends within this (a bound, not a measure: the runs here
#: would last 60 s, or their set-up over 5 s, if what is tested did not work).
_PROMPT = 30.0
#: What each set-up step is slowed by where a test needs the set-up to last: set-up
#: then takes over 5 s (1029 steps) on any machine, and its length does not depend
#: on how fast the machine is.
_STEP_SLEEP = 0.005

#: ``python -c`` this, then the CLI's arguments: ``xensched`` with each set-up step
#: slowed by 0.05 s (over 50 s of set-up).
_SLOW_SETUP_CLI = """
import sys, time
from xensched.cli import main
from xensched_stress import runner

real = runner.build_host

def build_host(sc, *, on_step=None, **kw):
    def step(done, total):
        time.sleep(0.05)
        on_step(done, total)
    return real(sc, on_step=step, **kw)

runner.build_host = build_host
sys.exit(main(sys.argv[1:]))
"""


def _before_each_step(
    monkeypatch: pytest.MonkeyPatch, before: Callable[[int, int], None]
) -> None:
    """Have ``run_stress`` call ``before(done, total)`` before each set-up step,
    ahead of its own check between two steps (a stop, the duration, progress)."""

    def wrapped(sc: Scenario, **kw: Any) -> Host:
        on_step = kw.pop("on_step")

        def step(done: int, total: int) -> None:
            before(done, total)
            on_step(done, total)

        return build_host(sc, on_step=step, **kw)  # what runner calls

    monkeypatch.setattr(runner, "build_host", wrapped)


def _slow_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    _before_each_step(monkeypatch, lambda done, total: time.sleep(_STEP_SLEEP))


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


def test_a_stop_during_set_up_ends_the_run_promptly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stop = threading.Event()
    at = 10  # the stop comes before the 11th step

    def before(done: int, total: int) -> None:
        if done == at:
            stop.set()

    _before_each_step(monkeypatch, before)
    cfg = StressConfig(cpus=4, duration=60.0, seed=1, domains=_DOMAINS, vcpus=_VCPUS)
    shown: list[SetupProgress] = []
    started = time.monotonic()
    report = run_stress(cfg, stop=stop, setup_progress=shown.append)
    assert time.monotonic() - started < _PROMPT  # not the run's 60 s
    assert report.interrupted
    assert sum(report.schedule_counts) == 0
    # Stopped at the step where the stop came, in the middle of the set-up.
    assert (shown[-1].done, shown[-1].total) == (at, _STEPS)


def test_set_up_counts_against_the_duration(monkeypatch: pytest.MonkeyPatch) -> None:
    _slow_steps(monkeypatch)  # over 5 s of set-up: the duration runs out in it
    duration = 1.0
    cfg = StressConfig(
        cpus=4, duration=duration, seed=1, domains=_DOMAINS, vcpus=_VCPUS
    )
    shown: list[SetupProgress] = []
    started = time.monotonic()
    report = run_stress(cfg, setup_progress=shown.append)
    assert time.monotonic() - started < _PROMPT
    assert report.stop_reason is StopReason.DURATION
    assert not report.interrupted
    assert sum(report.schedule_counts) == 0  # the duration ran out in set-up
    # A line every 0.25 s of set-up at most (not one per step: there were about
    # 200), and one where it stopped.
    assert 1 <= len(shown) <= int(duration / runner.PROGRESS_INTERVAL) + 1
    assert 0 < shown[-1].done < shown[-1].total
    assert shown[-1].elapsed >= duration
    assert all(x.elapsed >= runner.PROGRESS_INTERVAL for x in shown[:-1])


def test_a_short_set_up_shows_nothing_and_leaves_the_rest_of_the_duration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A set-up shorter than the interval between two lines shows none, not even
    # one at its end. The interval is made long, so that this set-up (a few steps)
    # is shorter than it however loaded the machine is.
    monkeypatch.setattr(runner, "PROGRESS_INTERVAL", _PROMPT)
    shown: list[SetupProgress] = []
    report = run_stress(StressConfig(duration=0.3, seed=1), setup_progress=shown.append)
    assert shown == []
    assert report.stop_reason is StopReason.DURATION
    assert sum(report.schedule_counts) > 0
    assert report.elapsed < 0.3 + _PROMPT  # ended by the duration


def test_the_cli_shows_set_up_progress(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _slow_steps(monkeypatch)  # a set-up that lasts past the first line's 0.25 s
    argv = ["stress", "--domains", "1024", "--vcpus", "4", "--duration", "0.4"]
    assert main([*argv, "--seed", "1", "--progress"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("seed=1\n")
    assert "] set-up: " in captured.err
    assert "/1029 steps" in captured.err  # 2 pCPUs out, p1 and its 2, 1024 domains


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_during_set_up_stops_it_with_a_report(tmp_path: Path) -> None:
    out_file = tmp_path / "r.json"
    # Over 50 s of set-up (each step slowed): one that ends within _PROMPT of the
    # signal was stopped in the middle, not at its end.
    args = ["-c", _SLOW_SETUP_CLI, "stress", "--domains", "1024", "--vcpus", "4"]
    args += ["--duration", "60", "--seed", "3", "--progress", "--json", str(out_file)]
    p = CliProcess(args, tmp_path)
    try:
        p.wait_for(r"\] set-up: \d+/1029 steps", stream="err")
        t0 = time.monotonic()
        p.signal(signal.SIGTERM)
        code = p.finish(timeout=2 * _PROMPT)
    finally:
        p.kill()
    assert time.monotonic() - t0 < _PROMPT, p.err  # not at the end of set-up
    assert code == 0, p.err
    assert "SIGTERM received: run stopped, partial report" in p.err
    data = json.loads(out_file.read_text(encoding="utf-8"))
    assert data["interrupted"] is True
    assert data["stragglers"] == []
