"""OS threads kept from one controlled run to the next of an exploration.

Mirrors nothing in Xen. An exploration runs the same scenario thousands of times, and
each controlled run used to start one OS thread per participant and join it at the
end: on this 2-core machine that was about a tenth of a DPOR execution of
``round-trip`` (three threads, 0.2 ms each). :class:`Workers` keeps the threads: a
participant's body runs on an idle worker, which goes back to the pool when the body
returns. Every participant is still its own real OS thread for the whole run (two
participants of one run never share a worker), and its thread carries the
participant's name while it runs, as stack dumps of a deadlock show it.

A pool lives as long as one :meth:`xensched.explore.Explorer.explore` (``with
Workers() as w``): :meth:`Workers.close` ends the idle workers and joins them, so no
thread outlives the exploration. A worker whose body never returned (a participant
stuck in a real lock) is not reused, and ``close`` waits for it only as long as its
bound, as joining a stuck thread would.

A body that raises does not end its worker: the error is kept in :attr:`Job.error`
and handed to :func:`threading.excepthook` as a thread of its own would, and the
worker goes back to the pool (before, the exception ended the thread after it had put
itself back as idle, and the next job handed to it never ran).

Every wait is bounded: an idle worker waits for work ``idle_wait`` seconds at a time
and re-checks whether the pool was closed.

A pool may keep its workers on one CPU (``cpu``, with :func:`pinned` for the thread
that drives the runs). A controlled run lets one participant go at a time, so one CPU
loses no parallelism, while each hand-off from a thread on one CPU to a thread on
another costs a cross-CPU wake-up: on this 2-core machine, DPOR proving ``round-trip``
took a fifth to a third less time with every thread on one CPU (the bench's figure 2).
Nothing is pinned where the OS offers no ``sched_setaffinity`` (the figures then
stand as they are).
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from types import TracebackType

__all__ = ["Job", "Workers", "one_cpu", "pinned"]

#: The name an idle worker's thread carries between jobs.
IDLE_NAME = "xensched-worker"


def one_cpu(k: int = 0) -> int | None:
    """The ``k``-th CPU (wrapping) of those this process may run on, for the ``k``-th
    of several explorations side by side; ``None`` where threads cannot be pinned."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    return cpus[k % len(cpus)] if cpus else None


def _pin(cpu: int | None) -> None:
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return
    # Best effort: pinning only makes hand-offs cheaper, and a worker must not die
    # of it (its participant would never start). A CPU taken away since one_cpu()
    # (a cpuset change) is refused with EINVAL: the thread runs anywhere.
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {cpu})  # 0: the calling thread (Linux)


@contextlib.contextmanager
def pinned(cpu: int | None) -> Iterator[None]:
    """Run the calling thread on ``cpu`` only inside the block, and put its CPUs back
    after (nothing when ``cpu`` is ``None``, or where the OS cannot pin threads).
    Threads it starts inside inherit it."""
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        yield
        return
    before = os.sched_getaffinity(0)
    _pin(cpu)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, before)


class Job:
    """One participant's body on a worker: what :meth:`threading.Thread.join` and
    ``is_alive`` are to a thread of its own."""

    __slots__ = ("_done", "error", "fn", "name")

    def __init__(self, name: str, fn: Callable[[], object]) -> None:
        self.name = name
        self.fn = fn
        #: What the body raised (``None``: it returned); set before the job is done.
        self.error: BaseException | None = None
        self._done = threading.Event()

    def join(self, timeout: float | None = None) -> None:
        self._done.wait(timeout)

    def is_alive(self) -> bool:
        return not self._done.is_set()


class _Worker:
    __slots__ = ("go", "job", "thread")

    def __init__(self) -> None:
        # Released when a job is handed over (or the pool closes): a handoff wakes
        # exactly this worker.
        self.go = threading.Lock()
        self.go.acquire()
        self.job: Job | None = None
        self.thread: threading.Thread | None = None


class Workers:
    """A pool of OS threads for the participants of successive controlled runs."""

    def __init__(self, idle_wait: float = 1.0, cpu: int | None = None) -> None:
        self.idle_wait = idle_wait
        #: The CPU every worker runs on (``None``: any; see the module docstring).
        self.cpu = cpu
        self._mu = threading.Lock()
        self._idle: list[_Worker] = []
        self._all: list[_Worker] = []
        self._closed = False
        #: Jobs run and threads started, for the curious (and the tests).
        self.jobs = 0
        self.started = 0

    def start(self, name: str, fn: Callable[[], object]) -> Job:
        """Run ``fn`` on an idle worker (a new one if none is idle)."""
        job = Job(name, fn)
        with self._mu:
            if self._closed:
                raise RuntimeError("the worker pool is closed")
            self.jobs += 1
            w = self._idle.pop() if self._idle else None
            if w is None:
                w = _Worker()
                self._all.append(w)
                self.started += 1
                fresh = True
            else:
                fresh = False
            w.job = job
        if fresh:
            w.thread = threading.Thread(
                target=self._loop, args=(w,), name=name, daemon=True
            )
            w.thread.start()
        w.go.release()
        return job

    def _loop(self, w: _Worker) -> None:
        _pin(self.cpu)
        me = threading.current_thread()
        while True:
            if not w.go.acquire(timeout=self.idle_wait):
                with self._mu:
                    if not self._closed or w.job is not None:
                        continue  # no work yet (or it is being handed over)
                    return
            with self._mu:
                job = w.job
            if job is None:
                return  # closed
            me.name = job.name
            try:
                job.fn()
            except BaseException as exc:  # the worker outlives its body's error
                job.error = exc
                # As a thread of its own dying of it would (the default prints it).
                with contextlib.suppress(BaseException):
                    threading.excepthook(
                        threading.ExceptHookArgs(
                            (type(exc), exc, exc.__traceback__, me)
                        )
                    )
                del exc
            finally:
                me.name = IDLE_NAME
                # Let go of the body (and the run it closes over) before the joiner
                # wakes: the explorer collects the run's garbage then, and a worker
                # waiting for its next job must not keep it alive until that.
                done, job = job._done, None
                with self._mu:
                    w.job = None
                    if not self._closed:
                        self._idle.append(w)
                done.set()

    def close(self, timeout: float = 10.0) -> None:
        """End every idle worker and join it; a busy one is joined for at most
        ``timeout`` seconds (its body is stuck: nothing more can be done)."""
        with self._mu:
            if self._closed:
                return
            self._closed = True
            idle, self._idle = self._idle, []
            workers = list(self._all)
        for w in idle:
            w.go.release()  # its job is None: it returns
        for w in workers:
            if w.thread is not None:
                w.thread.join(timeout)

    def __enter__(self) -> Workers:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
