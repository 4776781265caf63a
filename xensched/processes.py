"""Worker processes of a command, ended within a bound.

Mirrors nothing in Xen. ``xensched explore --workers`` (plain spawned processes) and
``xensched reproduce --workers`` (a ``multiprocessing.Pool``) share their work among
processes. When the work is done, or interrupted, the workers are told to end: an
explore worker hands in its share and returns, a pool worker gets its sentinel (or
SIGTERM from ``Pool.terminate()``). A worker that does not end (it ignores SIGTERM,
a thread of its own keeps it alive, it is stuck in a call) must not keep the command
waiting: every wait here is bounded, and what is left is killed with SIGKILL, which
a process cannot ignore. The caller says so to the user.

``multiprocessing.Pool`` waits for its workers without a bound: ``join()`` and
``terminate()`` join each of them, and ``terminate()`` first takes the lock of the
pool's task queue, which an idle worker holds while it waits for work, so a worker
killed there (kill -9, the OOM killer) keeps it for ever. :func:`shut_down_pool`
runs the pool's own shut-down in a thread and waits for it only so long; if the
shut-down cannot complete even once the workers are killed, its thread (a daemon) is
left behind, and the caller is told.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from multiprocessing.pool import Pool
    from multiprocessing.process import BaseProcess

__all__ = ["END_GRACE", "KILL_WAIT", "PoolEnd", "end_processes", "shut_down_pool"]

#: How long (seconds) workers told to end have to do so before they are killed.
END_GRACE = 2.0
#: How long a killed worker (SIGKILL), or a pool's shut-down once its workers are
#: killed, has to finish: the kernel's work, not the process's.
KILL_WAIT = 2.0


def end_processes(
    procs: Iterable[BaseProcess], grace: float = END_GRACE
) -> list[BaseProcess]:
    """Wait up to ``grace`` seconds in all for ``procs`` (told to end) to end, then
    kill (SIGKILL) those that have not, and wait up to :data:`KILL_WAIT` for each.

    Returns the processes killed. Those never started are skipped. An exception in
    the wait (a ``KeyboardInterrupt``) still has the others killed first.
    """
    procs = [p for p in procs if p.pid is not None]
    deadline = time.monotonic() + grace
    killed: list[BaseProcess] = []
    try:
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()  # one that has just ended is not an error
                killed.append(p)
        for p in killed:
            p.join(KILL_WAIT)
    return killed


@dataclass(frozen=True, slots=True)
class PoolEnd:
    """How a pool's shut-down went (:func:`shut_down_pool`)."""

    #: The worker processes killed (SIGKILL): they had not ended within the grace.
    killed: int
    #: Whether the pool's own shut-down (its threads, its workers joined) completed.
    complete: bool

    def lines(self, grace: float = END_GRACE) -> list[str]:
        """What to tell the user: nothing for a clean shut-down."""
        out = []
        if self.killed:
            n = self.killed
            out.append(
                f"{n} worker process{'es' if n > 1 else ''} did not end within "
                f"{grace:g}s of the pool's shut-down: killed (SIGKILL)"
            )
        if not self.complete:
            out.append(
                "the worker pool's shut-down did not complete (a worker that died "
                "while it waited for work keeps the lock of the pool's task queue): "
                "its threads are left behind"
            )
        return out


def shut_down_pool(
    pool: Pool,
    workers: Callable[[], Iterable[BaseProcess]],
    *,
    terminate: bool,
    grace: float = END_GRACE,
) -> PoolEnd:
    """``pool.close()`` (``terminate``: ``pool.terminate()``) and ``pool.join()``,
    bounded: after ``grace`` seconds the pool's worker processes still alive
    (``workers()``, read then) are killed, and the shut-down has :data:`KILL_WAIT`
    more seconds.

    An exception of the pool's shut-down is raised here, once the workers are dealt
    with. An exception in the wait (a ``KeyboardInterrupt``) has the workers killed
    at once, and goes on.
    """
    errors: list[BaseException] = []

    def run() -> None:
        try:
            if terminate:
                pool.terminate()
            else:
                pool.close()
            pool.join()
        except BaseException as e:  # raised in the caller, below
            errors.append(e)

    shut = threading.Thread(target=run, name="xensched-pool-shut-down", daemon=True)
    shut.start()
    killed: list[BaseProcess] = []
    try:
        shut.join(grace)
    finally:
        if shut.is_alive():
            killed = end_processes(workers(), grace=0.0)
            shut.join(KILL_WAIT)
            # One the pool started as a replacement while the first were killed.
            killed += end_processes(workers(), grace=0.0)
    if errors:
        raise errors[0]
    return PoolEnd(len(killed), complete=not shut.is_alive())
