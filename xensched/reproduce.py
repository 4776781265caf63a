"""Reproduce the race of Xen commit 94734ab7c3 across every scheduler pairing.

Mirrors: the scenario of the patch's commit message: a pCPU switched between schedulers
by ``xl cpupool-cpu-add``/``cpupool-cpu-remove`` while other pCPUs schedule and wake
vCPUs on it and on the runqueue it joins or leaves.

For each boot scheduler x pool scheduler x direction x protocol, on a fresh 4-pCPU host
(Pool-0 = cpus 0-1, pool ``p`` = cpu 2 plus, for ``remove``, cpu 3; cpu 3 = ``x`` is
the one that moves):

1. a dry run counts the interaction points ``N`` of the toolstack thread doing the
   move (every lock, load, store and barrier of ``cpupool_*`` and
   ``schedule_cpu_switch``: found by the mechanism, not hand-placed);
2. for every ``k`` in ``0..N`` a run under the controlled driver lets the toolstack
   thread pass its first ``k`` points, then runs the observer pCPUs (``schedule()`` on
   ``x``; a wake-up and ``schedule()`` on its runqueue peer, cpu 2) round-robin, point by
   point (one inside a runqueue critical section waits while another can run), until
   they finish or spin on a lock the mover holds; the mover then goes on.
   ``k = N`` observes the host right after the move.

The host and the threads are the built-in scenario ``patch-move``
(:func:`xensched.scenario.patch_move`): its toolstack program ``xl-mover`` is the
mover, its two pCPU programs the observers, run by :class:`xensched.programs.ControlledRun`
with the strategy below.

Every run is deterministic (one thread at a time, fixed strategy), so the verdicts are
the same on every run. The result of a transition is the set of violation kinds seen in
any of its runs.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from xensched.drivers.controlled import next_after
from xensched.programs import ControlledRun
from xensched.protocol import SwitchProtocol
from xensched.scenario import (
    PATCH_MOVING_CPU,
    PATCH_PEER_CPU,
    build_host as scenario_build_host,
    patch_move,
)
from xensched.schedulers import SCHEDULERS
from xensched.violation import ViolationKind

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from xensched.drivers.controlled import ControlledDriver
    from xensched.host import Host
    from xensched.scenario import Scenario
    from xensched.smp import ExecContext
    from xensched.violation import Violation

Direction = Literal["add", "remove"]
DIRECTIONS: tuple[Direction, ...] = ("add", "remove")
MOVING_CPU = PATCH_MOVING_CPU
PEER_CPU = PATCH_PEER_CPU
#: The toolstack thread of ``patch-move`` that moves the pCPU.
MOVER = "xl-mover"


@dataclass(frozen=True, slots=True)
class Transition:
    """One move of pCPU ``x``: boot scheduler, pool scheduler, direction, protocol."""

    boot: str
    pool: str
    direction: Direction
    protocol: SwitchProtocol

    def describe(self) -> str:
        arrow = "->" if self.direction == "add" else "<-"
        return f"{self.boot} {arrow} {self.pool} ({self.direction}, {self.protocol})"


@dataclass(frozen=True, slots=True)
class Result:
    """What the runs of one transition found."""

    transition: Transition
    problems: tuple[str, ...]
    runs: int
    points: int
    first: tuple[Violation, ...] = field(default=(), compare=False)

    def to_json(self) -> dict[str, object]:
        t = self.transition
        return {
            "boot": t.boot,
            "pool": t.pool,
            "direction": t.direction,
            "protocol": str(t.protocol),
            "problems": list(self.problems),
            "runs": self.runs,
            "switch_points": self.points,
            "first": [
                {
                    "kind": v.kind.value,
                    "cpu": v.cpu,
                    "where": v.where,
                    "message": v.message,
                }
                for v in self.first
            ],
        }


class ObserveAt:
    """Strategy: the mover alone through its first ``k`` points, then observers first.

    The driver counts a point when the thread reaches it, before it runs: the mover
    waiting at its ``k + 1``-th point has done ``k``, and ``k = 0`` lets the
    observers in before the move's first access.

    Among the observers, one that is inside a runqueue critical section waits while
    another can run: that other one then runs until it enters a section too (a second
    pCPU in the same runqueue is a ``mutual-exclusion`` violation, unless the lock
    stops it, as it must), blocks, or finishes. So an overlap that the locks allow is
    always found, whatever the phase of the observers' paths.
    """

    def __init__(
        self,
        mover: ExecContext,
        k: int,
        inside: Callable[[ExecContext], bool] = lambda ctx: False,
    ) -> None:
        self.mover = mover
        self.k = k
        self.inside = inside

    def pick(
        self,
        ready: Sequence[ExecContext],
        last: ExecContext | None,
        driver: ControlledDriver,
    ) -> ExecContext:
        if self.mover in ready and driver.points_of(self.mover) <= self.k:
            return self.mover
        observers = [c for c in ready if c is not self.mover]
        outside = [c for c in observers if not self.inside(c)]
        if outside:
            return next_after(outside, last, driver)
        if observers:
            return next_after(observers, last, driver)
        return self.mover


def _in_a_runqueue(h: Host) -> Callable[[ExecContext], bool]:
    """Is a context inside one of the host's runqueue critical sections now?"""
    # A move creates no pool and destroys none: the scheduler instances are fixed.
    # Their runqueues are not (Credit1's come and go with its pCPUs): asked each time.
    scheds = {id(h.ops): h.ops} | {id(c.sched): c.sched for c in h.cpupool_list}

    def inside(ctx: ExecContext) -> bool:
        return any(
            ctx.name in cs.occupants()
            for sched in scheds.values()
            for cs in sched.runqueues()
        )

    return inside


def scenario_of(t: Transition) -> Scenario:
    """The ``patch-move`` scenario of one transition."""
    return patch_move(t.boot, t.pool, t.direction, str(t.protocol))


def build_host(
    boot: str, pool: str, direction: Direction, protocol: SwitchProtocol
) -> Host:
    """The starting host of a transition, set up with the fixed protocol."""
    return scenario_build_host(patch_move(boot, pool, direction, str(protocol)))


def _run_once(
    sc: Scenario, k: int | None
) -> tuple[Host, ControlledDriver, ExecContext]:
    # The dry run (k=None) runs the mover alone, to count its points.
    mover_prog = next(p for p in sc.threads if p.name == MOVER)
    run = ControlledRun(sc, threads=None if k is not None else [mover_prog])
    mover = run.context_of(MOVER)
    strategy = ObserveAt(
        mover, k if k is not None else 1 << 62, _in_a_runqueue(run.host)
    )
    run.run(strategy)
    assert run.driver is not None
    return run.host, run.driver, mover


def reproduce_transition(t: Transition) -> Result:
    """Observe one transition at every interaction point of the move."""
    sc = scenario_of(t)
    h, drv, mover = _run_once(sc, None)
    n = drv.points_of(mover)
    seen: dict[str, Violation] = {}
    for v in h.violations:
        seen.setdefault(v.kind.value, v)
    for k in range(n + 1):
        hk, _, _ = _run_once(sc, k)
        for v in hk.violations:
            seen.setdefault(v.kind.value, v)
    order = [kind.value for kind in ViolationKind]
    problems = tuple(sorted(seen, key=order.index))
    return Result(t, problems, n + 2, n, tuple(seen[p] for p in problems))


def transitions(
    boots: Sequence[str] = tuple(SCHEDULERS),
    pools: Sequence[str] = tuple(SCHEDULERS),
    directions: Sequence[Direction] = DIRECTIONS,
    protocols: Sequence[SwitchProtocol] = SwitchProtocol.PRESETS,
) -> list[Transition]:
    """Every combination, in a fixed order."""
    return [
        Transition(b, p, d, pr)
        for b, p, d, pr in itertools.product(boots, pools, directions, protocols)
    ]


def reproduce(
    selected: Sequence[Transition] | None = None,
    progress: Callable[[int, int, Result], None] | None = None,
) -> list[Result]:
    """Run :func:`reproduce_transition` for each transition (all 64 by default)."""
    todo = list(selected) if selected is not None else transitions()
    results = []
    for i, t in enumerate(todo):
        r = reproduce_transition(t)
        results.append(r)
        if progress is not None:
            progress(i + 1, len(todo), r)
    return results
