"""Shrinking a failing execution: fewer preemptions, fewer steps, fewer threads and
operations.

Mirrors nothing in Xen. A schedule is taken as a list of *segments*: ``(thread, n)``,
run ``thread`` for ``n`` steps. :class:`SegmentSchedule` plays a segment list forgivingly
(a segment whose thread is not enabled is skipped; when the list runs out, the thread
that ran last goes on while it can, then the first enabled one), so that any edit of
the list is still an execution, and fewer segments means fewer context switches.
:func:`shrink` edits greedily, keeping an edit when the execution still shows a
violation of the same kind: drop a segment, merge it into its neighbours, halve its
length; then, for a scenario, drop a thread or an operation of a thread's program and
find the failure again (the same segments first, then a short DPOR search). It stops
when no edit helps or the run budget is spent (the story and the picture are the
caller's: ``xensched explore`` re-runs the result with :func:`~xensched.explore.story.record`).
Ctrl-C (``KeyboardInterrupt``) stops it too:
every execution it kept showed the violation, so the smallest one so far is still a
failing execution, and is the result (``Shrunk.interrupted``).

Hypothesis's shrinker would serve a choice sequence too; this one is kept because
its edits are the ones that read well (a preemption removed, a thread removed) and it
needs no generation phase to find the failure first.

Left out: a minimum. The edits are greedy and bounded by ``budget`` runs, so a
smaller failing execution may exist; nor are the scenario's hosts shrunk (pCPUs,
pools, domains), only its thread programs.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from xensched.errors import ConfigError
from xensched.explore.dpor import DPOR
from xensched.explore.engine import DEFAULT_MAX_STEPS, Explorer, ScenarioTarget
from xensched.scenario import PcpuOps, Toolstack

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from xensched.explore.base import Op, Step
    from xensched.explore.engine import Execution, ExploreResult, Target
    from xensched.scenario import Scenario

__all__ = ["SegmentSchedule", "Shrunk", "preemptions", "segments", "shrink"]

Segments = tuple[tuple[str, int], ...]


def segments(schedule: Sequence[str]) -> Segments:
    """Run-length form of a schedule."""
    out: list[tuple[str, int]] = []
    for t in schedule:
        if out and out[-1][0] == t:
            out[-1] = (t, out[-1][1] + 1)
        else:
            out.append((t, 1))
    return tuple(out)


def preemptions(steps: Sequence[Step]) -> int:
    """Context switches away from a thread that could have gone on."""
    return sum(
        1
        for a, b in itertools.pairwise(steps)
        if a.thread != b.thread and a.thread in b.enabled
    )


class SegmentSchedule:
    """Plays a segment list forgivingly; see the module docstring."""

    name = "segments"
    needs_pending = False

    def __init__(self, segs: Segments) -> None:
        self.segs = list(segs)
        self._k = 0
        self._used = 0

    def begin(self, run: int) -> bool:
        self._k = 0
        self._used = 0
        return run == 0

    def choose(
        self,
        step: int,
        enabled: Sequence[str],
        pending: Mapping[str, Op],
        last: str | None,
    ) -> str | None:
        while self._k < len(self.segs):
            t, n = self.segs[self._k]
            if self._used < n and t in enabled:
                self._used += 1
                return t
            self._k += 1
            self._used = 0
        return last if last in enabled else enabled[0]

    def end(self, steps: Sequence[Step], abandoned: bool) -> None:
        pass

    @property
    def exhaustive(self) -> bool:
        return False

    def summary(self) -> dict[str, object]:
        return {}


@dataclass(frozen=True, slots=True)
class Shrunk:
    """The result: the smallest failing execution found, and how it was reached."""

    execution: Execution
    scenario: Scenario | None
    runs: int
    before: tuple[int, int, int]  # (preemptions, steps to the violation, threads)
    after: tuple[int, int, int]
    #: Stopped by Ctrl-C (or a signal raised as one) before it was done.
    interrupted: bool = False


def _size(ex: Execution) -> tuple[int, int, int]:
    upto = ex.violation_steps[0] + 1 if ex.violation_steps else len(ex.steps)
    return (preemptions(ex.steps[:upto]), upto, len(set(ex.schedule)))


def shrink(
    execution: Execution,
    kind: str,
    *,
    target: Target | None = None,
    scenario: Scenario | None = None,
    seed: int = 0,
    budget: int = 400,
    make_target: Callable[[Scenario], Target] | None = None,
    progress: Callable[[int, tuple[int, int, int]], None] | None = None,
    stopped: Callable[[], bool] | None = None,
    max_steps: int = DEFAULT_MAX_STEPS,
) -> Shrunk:
    """Shrink ``execution`` (which shows a violation of ``kind``); see the module doc.

    Give ``scenario`` (and ``seed``) to shrink a scenario's run, programs included,
    or ``target`` for any other target (its schedule only). ``progress(runs, size)``
    is called after each run with the runs so far and the size (preemptions, steps to
    the violation, threads) of the smallest failing execution so far. ``stopped()``
    is asked before each run: True stops the shrinking as Ctrl-C does (for a caller
    whose signal handler only sets a flag, or whose ``KeyboardInterrupt`` may have
    been dropped: see :func:`xensched.signals.quiet_lost_interrupts`).
    ``max_steps``: the exploration's livelock bound, which every run here keeps (a
    shorter one would turn the execution into a livelock).
    """
    if scenario is None and target is None:
        raise ValueError("shrink() needs a scenario or a target")

    def target_of(sc: Scenario | None) -> Target:
        if sc is None:
            assert target is not None
            return target
        return make_target(sc) if make_target is not None else ScenarioTarget(sc, seed)

    runs = 0

    def attempt(sc: Scenario | None, segs: Segments) -> Execution | None:
        nonlocal runs
        if stopped is not None and stopped():
            raise KeyboardInterrupt
        runs += 1
        play = SegmentSchedule(segs)
        play.begin(0)
        ex = Explorer(target_of(sc), play, runs=1, max_steps=max_steps).execute(0)
        if progress is not None:
            progress(runs, _size(best))
        if any(v.kind.value == kind for v in ex.violations):
            return ex.first_of(kind)
        return None

    best = execution.first_of(kind)
    best_sc = scenario
    start = _size(best)

    def better(ex: Execution) -> bool:
        return _size(ex) < _size(best)

    def explored(res: ExploreResult) -> None:
        if stopped is not None and stopped():
            raise KeyboardInterrupt  # explore() ends, interrupted
        if progress is not None:
            progress(runs + res.runs, _size(best))

    # The execution and its scenario under one name, stored at once: what an
    # interrupt leaves is a pair that ran together.
    kept = (best, best_sc)
    changed = True
    try:
        while changed and runs < budget:
            changed = False
            # 1. The schedule: drop, merge and shorten segments.
            segs = segments(best.schedule[: _size(best)[1]])
            k = 0
            while k < len(segs) and runs < budget:
                edits = [segs[:k] + segs[k + 1 :]]
                t, n = segs[k]
                if n > 1:
                    edits.append((*segs[:k], (t, n // 2), *segs[k + 1 :]))
                for cand in edits:
                    ex = attempt(best_sc, cand)
                    if ex is not None and better(ex):
                        kept = (ex, best_sc)
                        best, changed = ex, True
                        segs = segments(best.schedule[: _size(best)[1]])
                        break
                else:
                    k += 1
            # 2. The scenario: drop a thread, or an operation of a thread's program.
            if best_sc is None or runs >= budget:
                continue
            for cand_sc in _smaller_scenarios(best_sc):
                if runs >= budget:
                    break
                ex = attempt(cand_sc, segments(best.schedule))
                cut = False
                if ex is None:
                    runs += 1
                    res = Explorer(
                        target_of(cand_sc),
                        DPOR(),
                        runs=min(60, budget - runs),
                        max_steps=max_steps,
                        progress=explored,
                    ).explore()
                    runs += res.runs
                    if res.failing is not None and kind in res.kinds:
                        ex = res.failing.first_of(kind)
                    # explore() ends quietly on Ctrl-C: the shrinking must end too.
                    cut = res.interrupted
                if ex is not None:
                    kept = (ex, cand_sc)
                    best, best_sc, changed = ex, cand_sc, True
                if cut:
                    raise KeyboardInterrupt
                if ex is not None:
                    break
    except KeyboardInterrupt:
        best, best_sc = kept
        return Shrunk(best, best_sc, runs, start, _size(best), interrupted=True)
    return Shrunk(best, best_sc, runs, start, _size(best))


def _smaller_scenarios(sc: Scenario) -> list[Scenario]:
    """Each scenario with one thread, or one operation of a program, fewer."""
    out: list[Scenario] = []
    threads = list(sc.threads)
    for i in range(len(threads)):
        if len(threads) > 1:
            out.append(sc.replace(threads=tuple(threads[:i] + threads[i + 1 :])))
    for i, t in enumerate(threads):
        ops: tuple[object, ...] | None = None
        if isinstance(t, (PcpuOps, Toolstack)) and t.ops is not None and len(t.ops) > 1:
            ops = tuple(t.ops)
        if ops is None:
            continue
        for j in range(len(ops)):
            fewer = dataclasses.replace(t, ops=ops[:j] + ops[j + 1 :])  # type: ignore[arg-type]
            out.append(sc.replace(threads=(*threads[:i], fewer, *threads[i + 1 :])))
    valid = []
    for cand in out:
        try:
            cand.validate()
        except ConfigError:
            continue
        valid.append(cand)
    return valid
