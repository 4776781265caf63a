"""The pool of participant threads an exploration keeps between its runs."""

from __future__ import annotations

import functools
import os
import threading
import weakref
from typing import Any

import pytest

from tests.explore.test_soundness import locked_counter
from xensched.drivers import workers as workers_mod
from xensched.drivers.workers import Workers, one_cpu, pinned
from xensched.explore import DPOR, Explorer
from xensched.explore.threads import ThreadsTarget, World


def test_a_worker_is_reused_and_carries_the_participants_name() -> None:
    names: list[str] = []
    with Workers() as pool:
        for name in ("pcpu0", "pcpu1", "xl"):
            job = pool.start(
                name, lambda: names.append(threading.current_thread().name)
            )
            job.join(5)
            assert not job.is_alive()
        assert (pool.jobs, pool.started) == (3, 1)
    assert names == ["pcpu0", "pcpu1", "xl"]


def test_participants_of_one_run_get_threads_of_their_own() -> None:
    # Each waits for the other: they can only both finish on two threads.
    a, b = threading.Event(), threading.Event()

    def first() -> None:
        a.set()
        assert b.wait(5)

    def second() -> None:
        b.set()
        assert a.wait(5)

    with Workers() as pool:
        jobs = [pool.start("a", first), pool.start("b", second)]
        for j in jobs:
            j.join(5)
        assert pool.started == 2
        assert not any(j.is_alive() for j in jobs)


def test_a_finished_job_keeps_nothing_of_its_body_alive() -> None:
    # The explorer collects a run's garbage as soon as its participants are joined:
    # a worker waiting for its next job must not hold the last one's body (before,
    # it kept it until then, and every run's host survived into the old generation).
    class Payload:
        pass

    with Workers() as pool:
        payload = Payload()
        ref = weakref.ref(payload)
        job = pool.start("x", functools.partial(id, payload))
        job.join(5)
        assert not job.is_alive()
        del job, payload
        assert ref() is None


def test_close_ends_every_worker_and_refuses_more_work() -> None:
    pool = Workers()
    pool.start("x", lambda: None).join(5)
    threads = [w.thread for w in pool._all]
    pool.close()
    assert not any(t is not None and t.is_alive() for t in threads)
    with pytest.raises(RuntimeError, match="closed"):
        pool.start("y", lambda: None)


def test_a_stuck_worker_bounds_close_and_ends_once_it_returns() -> None:
    release = threading.Event()
    pool = Workers(idle_wait=0.05)
    job = pool.start("stuck", lambda: release.wait(5))
    pool.close(timeout=0.05)  # returns although the job still runs
    assert job.is_alive()
    release.set()
    job.join(5)
    t = pool._all[0].thread
    assert t is not None
    t.join(5)
    assert not t.is_alive()


def test_an_exploration_runs_on_a_few_threads_and_finds_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pools: list[Workers] = []
    real = workers_mod.Workers

    class Counted(real):  # type: ignore[misc,valid-type]
        def __init__(self, **kw: Any) -> None:
            super().__init__(**kw)
            pools.append(self)

    monkeypatch.setattr("xensched.explore.engine.Workers", Counted)
    res = Explorer(
        ThreadsTarget(locked_counter), DPOR(), keep_going=True, collect_states=True
    ).explore()
    assert res.exhaustive
    assert res.final_states == {3}
    (pool,) = pools
    assert pool.jobs == 3 * res.runs  # three threads per execution
    assert pool.started <= 3


# -- pinning (where the OS offers it) ------------------------------------------------------
needs_affinity = pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity"), reason="no sched_setaffinity here"
)


@needs_affinity
def test_one_cpu_wraps_over_the_cpus_this_process_may_use() -> None:
    cpus = sorted(os.sched_getaffinity(0))
    assert [one_cpu(k) for k in range(len(cpus) + 1)] == [*cpus, cpus[0]]


@needs_affinity
def test_pinned_puts_the_calling_threads_cpus_back() -> None:
    before = os.sched_getaffinity(0)
    cpu = one_cpu(len(before) - 1)
    with pinned(cpu):
        assert os.sched_getaffinity(0) == {cpu}
    assert os.sched_getaffinity(0) == before
    with pinned(None):
        assert os.sched_getaffinity(0) == before


@needs_affinity
def test_an_exploration_on_one_cpu_runs_every_thread_there_and_finds_the_same() -> None:
    before = os.sched_getaffinity(0)
    cpu = one_cpu(len(before) - 1)
    seen: set[frozenset[int]] = set()
    real = locked_counter

    def watched(w: World) -> None:
        real(w)
        w.threads[:] = [(ctx, _noting(fn, seen)) for ctx, fn in w.threads]

    res = Explorer(
        ThreadsTarget(watched), DPOR(), keep_going=True, collect_states=True, cpu=cpu
    ).explore()
    unpinned = Explorer(
        ThreadsTarget(locked_counter), DPOR(), keep_going=True, collect_states=True
    ).explore()
    assert seen == {frozenset({cpu})}
    assert os.sched_getaffinity(0) == before  # the caller's CPUs are back
    assert (res.runs, res.final_states) == (unpinned.runs, unpinned.final_states)


def _noting(body: Any, seen: set[frozenset[int]]) -> Any:
    def run() -> None:
        seen.add(frozenset(os.sched_getaffinity(0)))
        body()

    return run


@needs_affinity
def test_a_refused_pin_leaves_the_exploration_to_run_anywhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A cpuset that lost the CPU since: sched_setaffinity says EINVAL. Pinning is
    # only an optimisation: the exploration runs, and no worker dies of it.
    def refuse(pid: int, cpus: object) -> None:
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(os, "sched_setaffinity", refuse)
    res = Explorer(
        ThreadsTarget(locked_counter),
        DPOR(),
        keep_going=True,
        collect_states=True,
        cpu=one_cpu(0),
        turn_timeout=5.0,
    ).explore()
    assert res.exhaustive
    assert res.final_states == {3}


def test_a_body_that_raises_keeps_its_worker_serving(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Before, the exception ended the worker's thread after it had put itself back as
    # idle: the next job handed to it never ran (a run then ended as a false timeout).
    seen: list[tuple[type[BaseException] | None, str | None]] = []
    monkeypatch.setattr(
        threading,
        "excepthook",
        lambda a: seen.append((a.exc_type, a.thread.name if a.thread else None)),
    )
    boom = RuntimeError("a strategy bug in _finish")

    def raises() -> None:
        raise boom

    ran: list[int] = []
    with Workers(idle_wait=0.2) as pool:
        first = pool.start("pcpu0", raises)
        first.join(5)
        assert not first.is_alive()
        second = pool.start("pcpu1", lambda: ran.append(1))
        second.join(5)
        assert ran == [1]
        assert not second.is_alive()
        assert (pool.jobs, pool.started) == (2, 1)
        assert first.error is boom
        assert second.error is None
    assert seen == [(RuntimeError, "pcpu0")]
