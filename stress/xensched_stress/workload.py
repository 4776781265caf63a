"""The threads of a stress run: the scenario's programs under the free-running driver.

Mirrors nothing in Xen itself: what the threads do is :mod:`xensched.programs`'s (its
docstring has the harness rules and their reasons). This module gives those programs
what free-running needs: an :class:`FreeEnv` that paces toolstack threads with real
sleeps and stops them on the run's stop flags, and the thread bodies that bind each
program to its context, wait at the start barrier, and turn an exception into a
``crash`` violation (a thread goes on until it has crashed ``_CRASH_CAP`` times) or a
deadlock into the end of the run.

Threads of a run (all named, so stack dumps read well): ``pcpuN``, one per pCPU
program, bound to ``host.cpu_contexts[N]``; one per toolstack program, named after it
(``xl0``... for the default workload), bound to a toolstack context of its own.

Every random choice comes from a ``random.Random`` of the thread's own, seeded from the
base seed and the thread's name (:func:`thread_rng`): the seed fixes each thread's
choices, not the OS interleaving (see :mod:`xensched.drivers.free`).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from xensched.programs import (
    CpuStats,
    Harness,
    XlStats,
    run_program,
    thread_rng as thread_rng,
)
from xensched.scenario import PcpuLoop, PcpuOps, Toolstack
from xensched.smp import bind, current_or_none

if TYPE_CHECKING:
    from collections.abc import Callable

    from xensched import Host
    from xensched.smp import ExecContext

    from .config import StressConfig

#: A thread that crashed this many times stops (``keep_going`` runs).
_CRASH_CAP = 20
#: An idle pCPU polls its SCHEDULE_SOFTIRQ this often.
_IDLE_POLL = 0.0005


class FreeEnv:
    """What the programs ask of a free-running run (see ``xensched.programs.Env``).

    Toolstack threads sleep between operations on the run's ``halt`` event, which
    also tells them to stop (phase 1); pCPU threads idle by polling until ``cpus_off``
    (phase 2). These are the free-running driver's waits: the programs themselves
    block only on emulated primitives.
    """

    def __init__(self, run: Workload) -> None:
        self._run = run

    def stopping(self) -> bool:
        return self._run.halt.is_set()

    def leaving(self) -> bool:
        return self._run.cpus_off.is_set()

    def pause(self, seconds: float) -> bool:
        self._drain()
        return self._run.halt.wait(seconds)

    def toolstacks_done(self) -> bool:
        return all(s.done for s in self._run.ctl_states)

    def work_done(self) -> bool:
        return self.leaving() or self.toolstacks_done()

    def wait_for_work(self, pending: Callable[[], bool]) -> bool:
        self._drain()
        while not pending():
            if self.work_done():
                return False
            self._run.cpus_off.wait(_IDLE_POLL)
        return True

    def failed(
        self, ctx: ExecContext, stats: CpuStats | XlStats, exc: Exception
    ) -> bool:
        return self._run.step_failed(ctx, stats, exc)

    def _drain(self) -> None:
        """The calling CPU, about to sleep or idle, lets its store buffer drain (as
        ``Bus.wait_until`` does): nothing else would make its stores visible while
        the others idle too."""
        h = self._run.host
        ctx = current_or_none()
        flush = getattr(h.bus.memory if h is not None else None, "flush", None)
        if flush is not None and ctx is not None:
            flush(ctx)


class CtlState(XlStats):
    """A toolstack thread's figures, and whether it has finished."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        super().__init__()
        self.done = False


class Workload:
    """The threads of a run; the run (a subclass) supplies the lifecycle hooks."""

    def __init__(self, cfg: StressConfig) -> None:
        self.cfg = cfg
        self.scenario = cfg.to_scenario()
        self.host: Host | None = None
        self.harness: Harness | None = None
        # Phase 1 of stopping: toolstack threads leave, pCPU threads turn idle.
        self.halt = threading.Event()
        # Phase 2: pCPU threads leave.
        self.cpus_off = threading.Event()
        sc = self.scenario
        self.pcpu_programs: list[PcpuLoop | PcpuOps] = [
            t for t in sc.threads if isinstance(t, (PcpuLoop, PcpuOps))
        ]
        self.ctl_programs: list[Toolstack] = [
            t for t in sc.threads if isinstance(t, Toolstack)
        ]
        # One state per pCPU, programmed or not, so that figures go by pCPU number;
        # a pCPU without a program has nothing to do (quota 0).
        self.cpu_states = [CpuStats(0) for _ in range(sc.cpus)]
        # The run's ops bound is shared among the schedule() loops.
        loops = [p for p in self.pcpu_programs if isinstance(p, PcpuLoop)]
        ops = cfg.ops
        for p in self.pcpu_programs:
            quota = None
            if isinstance(p, PcpuLoop):
                quota = p.schedules
                if ops is not None:
                    k = loops.index(p)
                    share = ops // len(loops) + (1 if k < ops % len(loops) else 0)
                    quota = share if quota is None else min(quota, share)
            self.cpu_states[p.cpu] = CpuStats(quota)
        self.ctl_states = [CtlState() for _ in self.ctl_programs]
        self.env = FreeEnv(self)

    # -- what the run provides ----------------------------------------------------------
    def sync(self) -> bool:
        """Wait for every thread to start; False when the start was called off."""
        raise NotImplementedError

    def step_failed(
        self, ctx: ExecContext, st: CpuStats | XlStats, exc: Exception
    ) -> bool:
        """One operation raised; True if the thread must stop."""
        raise NotImplementedError

    def crash(self, ctx: ExecContext, exc: BaseException) -> None:
        raise NotImplementedError

    # -- thread bodies ---------------------------------------------------------------------
    def pcpu_main(self, prog: PcpuLoop | PcpuOps, ctx: ExecContext) -> None:
        h, hs = self.host, self.harness
        assert h is not None
        assert hs is not None
        st = self.cpu_states[prog.cpu]
        with bind(ctx):
            if not self.sync():
                return
            try:
                run_program(h, hs, prog, ctx, self.cfg.seed, st, self.env)
            except BaseException as e:  # a pCPU thread never dies silently
                self.crash(ctx, e)
            finally:
                st.exited = True

    def control_main(self, i: int, ctx: ExecContext) -> None:
        h, hs = self.host, self.harness
        assert h is not None
        assert hs is not None
        st = self.ctl_states[i]
        with bind(ctx):
            if not self.sync():
                st.done = True
                return
            try:
                run_program(
                    h, hs, self.ctl_programs[i], ctx, self.cfg.seed, st, self.env
                )
            except BaseException as e:  # never silently
                self.crash(ctx, e)
            finally:
                st.done = True
