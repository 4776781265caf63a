"""``xensched.processes``: worker processes and pools ended within a bound."""

from __future__ import annotations

import multiprocessing
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, cast

import pytest

from xensched.processes import KILL_WAIT, PoolEnd, end_processes, shut_down_pool

if TYPE_CHECKING:
    from multiprocessing.pool import Pool
    from multiprocessing.synchronize import Event

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def _deaf(ready: Event) -> None:
    """A worker that ignores SIGTERM and would run a minute."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    ready.set()
    time.sleep(60.0)


def test_a_process_that_ignores_sigterm_is_killed_after_the_grace() -> None:
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    p = ctx.Process(target=_deaf, args=(ready,), name="deaf", daemon=True)
    p.start()
    try:
        assert ready.wait(30.0)
        p.terminate()  # ignored
        t0 = time.monotonic()
        killed = end_processes([p], grace=0.5)
        assert time.monotonic() - t0 < 0.5 + KILL_WAIT + 1.0
        assert killed == [p]
        assert not p.is_alive()
        assert p.exitcode == -signal.SIGKILL
    finally:
        if p.is_alive():
            p.kill()
        p.join(5.0)


def test_processes_that_end_are_not_killed() -> None:
    ctx = multiprocessing.get_context("spawn")
    p = ctx.Process(target=time.sleep, args=(0.0,), daemon=True)
    never_started = ctx.Process(target=time.sleep, args=(0.0,))
    p.start()
    assert end_processes([p, never_started], grace=30.0) == []
    assert p.exitcode == 0


class _StuckPool:
    """A pool whose join() does not return until the test lets it (as
    ``Pool.join`` waits for a worker that does not end)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls: list[str] = []

    def close(self) -> None:
        self.calls.append("close")

    def terminate(self) -> None:
        self.calls.append("terminate")

    def join(self) -> None:
        self.calls.append("join")
        self.release.wait(30.0)


@pytest.mark.parametrize("terminate", [False, True])
def test_a_pool_whose_join_never_returns_is_left_within_a_bound(
    terminate: bool,
) -> None:
    pool = _StuckPool()
    asked: list[int] = []

    def workers() -> list[multiprocessing.Process]:
        asked.append(1)
        return []

    t0 = time.monotonic()
    try:
        end = shut_down_pool(
            cast("Pool", pool), workers, terminate=terminate, grace=0.2
        )
    finally:
        pool.release.set()  # the thread it left ends: no thread outlives the test
    assert time.monotonic() - t0 < 0.2 + KILL_WAIT + 1.0
    assert pool.calls == ["terminate" if terminate else "close", "join"]
    assert asked  # the workers left were looked for, to be killed
    assert end == PoolEnd(killed=0, complete=False)
    assert end.lines() == [
        "the worker pool's shut-down did not complete (a worker that died while it "
        "waited for work keeps the lock of the pool's task queue): its threads are "
        "left behind"
    ]


def test_a_pool_that_shuts_down_says_nothing() -> None:
    pool = _StuckPool()
    pool.release.set()
    end = shut_down_pool(cast("Pool", pool), list, terminate=False)
    assert end == PoolEnd(killed=0, complete=True)
    assert end.lines() == []


def test_an_error_of_the_shut_down_is_raised_in_the_caller() -> None:
    class Broken(_StuckPool):
        def join(self) -> None:
            raise AssertionError("Cannot have cache with result_handler not alive")

    with pytest.raises(AssertionError, match="result_handler"):
        shut_down_pool(cast("Pool", Broken()), list, terminate=True)


def test_the_notice_counts_the_workers_killed() -> None:
    assert PoolEnd(1, True).lines() == [
        "1 worker process did not end within 2s of the pool's shut-down: killed "
        "(SIGKILL)"
    ]
    assert (
        PoolEnd(3, True)
        .lines(grace=5.0)[0]
        .startswith("3 worker processes did not end within 5s")
    )
