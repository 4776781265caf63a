"""The measuring loops of ``xensched bench``: every wait bounded, nothing lost."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import TYPE_CHECKING

from xensched import smp
from xensched_stress import bench
from xensched_stress.config import StressConfig

if TYPE_CHECKING:
    from collections.abc import Iterator

    import pytest

    from xensched import Host
    from xensched.smp import ExecContext


def _host() -> Host:
    return bench._shaped_host(StressConfig(cpus=2, seed=1))


def test_a_step_that_raises_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    # Its thread's count stayed 0 and nothing said why.
    def step(h: Host, n: int) -> None:
        if n == 1:
            raise RuntimeError("planted")
        bench._bare(h, n)

    problems: list[str] = []
    rate = bench._loop_rate(_host(), step, 0.05, 0.005, problems=problems)
    assert rate > 0  # pCPU 0 ran
    assert problems == ["pcpu1: RuntimeError: planted"]
    assert "WARNING: step loop: pcpu1: RuntimeError: planted" in capsys.readouterr().out


def test_a_thread_that_never_reaches_the_start_is_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The start barrier had no timeout: a thread that died before it hung the bench.
    monkeypatch.setattr(bench, "_LOOP_START_TIMEOUT", 0.3)
    real = smp.bind

    @contextlib.contextmanager
    def bind(ctx: ExecContext) -> Iterator[None]:
        if ctx.cpu == 1:
            raise RuntimeError("no context")
        with real(ctx):
            yield

    monkeypatch.setattr(bench, "bind", bind)
    problems: list[str] = []
    result: list[float] = []
    t = threading.Thread(
        target=lambda: result.append(
            bench._loop_rate(_host(), bench._bare, 0.05, 0.005, problems=problems)
        ),
        daemon=True,
    )
    t.start()
    t.join(10.0)
    assert not t.is_alive(), "the loop's start is not bounded"
    assert result == [0.0]
    assert "the threads did not start within 0.3s" in problems
    assert "pcpu1: RuntimeError: no context" in problems


def test_threads_left_after_the_join_are_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Threads still alive after join(30) were not reported.
    monkeypatch.setattr(bench, "_LOOP_JOIN_TIMEOUT", 0.2)
    release = threading.Event()

    def step(h: Host, n: int) -> None:
        if n == 1:
            release.wait(10.0)  # stuck past the join's bound, then leaves
        else:
            time.sleep(0.001)

    problems: list[str] = []
    try:
        bench._loop_rate(_host(), step, 0.05, 0.005, problems=problems)
    finally:
        release.set()
    assert problems == ["threads still alive: pcpu1"]
