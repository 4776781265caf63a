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
   thread reach its ``k``-th point, then runs the observer pCPUs (``schedule()`` on
   ``x``; a wake-up and ``schedule()`` on its runqueue peer, cpu 2) round-robin, point by
   point (one inside a runqueue critical section waits while another can run), until
   they finish or spin on a lock the mover holds; the mover then goes on.
   ``k = N`` observes the host right after the move.

Every run is deterministic (one thread at a time, fixed strategy), so the verdicts are
the same on every run. The result of a transition is the set of violation kinds seen in
any of its runs.
"""

from __future__ import annotations

import errno
import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from xensched.drivers.controlled import ControlledDriver, next_after
from xensched.errors import DeadlockError, XenError
from xensched.host import Host
from xensched.protocol import SwitchProtocol
from xensched.schedule import schedule, vcpu_block, vcpu_unblock
from xensched.schedulers import SCHEDULERS
from xensched.violation import ViolationKind

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from xensched.smp import ExecContext
    from xensched.violation import Violation

Direction = Literal["add", "remove"]
DIRECTIONS: tuple[Direction, ...] = ("add", "remove")
MOVING_CPU = 3
PEER_CPU = 2
MOVE_ATTEMPTS = 3
OBSERVER_SCHEDULES = 8


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
    """Strategy: the mover alone up to its ``k``-th point, then observers first.

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
        if self.mover in ready and driver.points_of(self.mover) < self.k:
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


def build_host(
    boot: str, pool: str, direction: Direction, protocol: SwitchProtocol
) -> Host:
    """The starting host of a transition, set up with the fixed protocol."""
    h = Host(4, sched=boot, protocol=SwitchProtocol.FIXED, dom0_vcpus=1)
    h.cpupool_cpu_remove("Pool-0", PEER_CPU)
    h.cpupool_cpu_remove("Pool-0", MOVING_CPU)
    h.cpupool_create("p", sched=pool)
    h.cpupool_cpu_add("p", PEER_CPU)
    d1 = h.create_domain("d1", "p", vcpus=2)
    if direction == "remove":
        h.cpupool_cpu_add("p", MOVING_CPU)
        h.migrate(d1.vcpus[1], MOVING_CPU)
    h.sleep(d1.vcpus[1])
    h.bus.clear_violations()
    h.protocol = protocol
    return h


def _run_once(
    boot: str, pool: str, direction: Direction, protocol: SwitchProtocol, k: int | None
) -> tuple[Host, ControlledDriver, ExecContext]:
    h = build_host(boot, pool, direction, protocol)
    mover = h.toolstack_context("xl-mover")
    drv = ControlledDriver(
        h.bus,
        ObserveAt(mover, k if k is not None else 1 << 62, _in_a_runqueue(h)),
    )

    def move() -> None:
        for attempt in range(MOVE_ATTEMPTS):
            try:
                if direction == "add":
                    h.cpupool_cpu_add("p", MOVING_CPU)
                else:
                    h.cpupool_cpu_remove("p", MOVING_CPU)
                return
            except XenError as e:
                # xl retries while a vCPU is still being moved off the pCPU.
                if e.errno != errno.EAGAIN or attempt == MOVE_ATTEMPTS - 1:
                    raise

    drv.spawn(mover, move)
    if k is not None:
        d1 = h.domain("d1")

        x_ctx = h.cpu_contexts[MOVING_CPU]
        softirq = h.percpu[MOVING_CPU].softirq

        def woken() -> bool:
            return softirq.peek() or drv.done(mover)

        def on_x() -> None:
            schedule(h)
            schedule(h)
            # Then idle as a pCPU does: reschedule whenever SCHEDULE_SOFTIRQ is
            # raised (a vCPU here must sleep or migrate), until the move is over.
            for _ in range(OBSERVER_SCHEDULES):
                drv.wait_for(x_ctx, woken)
                if not softirq.peek():
                    break
                schedule(h)

        def on_peer() -> None:
            vcpu_unblock(h, d1.vcpus[1])
            schedule(h)
            vcpu_block(h, d1.vcpus[1])

        drv.spawn(x_ctx, on_x)
        drv.spawn(h.cpu_contexts[PEER_CPU], on_peer)
    errors = drv.run()
    for ctx, exc in errors:
        # A deadlock is already a violation (the driver records it).
        if not isinstance(exc, Exception) or isinstance(exc, DeadlockError):
            continue
        h.bus.violation(
            ViolationKind.CRASH, ctx.name, f"{type(exc).__name__}: {exc}", cpu=ctx.cpu
        )
    return h, drv, mover


def reproduce_transition(t: Transition) -> Result:
    """Observe one transition at every interaction point of the move."""
    h, drv, mover = _run_once(t.boot, t.pool, t.direction, t.protocol, None)
    n = drv.points_of(mover)
    seen: dict[str, Violation] = {}
    for v in h.violations:
        seen.setdefault(v.kind.value, v)
    for k in range(n + 1):
        hk, _, _ = _run_once(t.boot, t.pool, t.direction, t.protocol, k)
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
