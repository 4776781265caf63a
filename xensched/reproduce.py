"""Reproduce the race of Xen commit 94734ab7c3 across every scheduler pairing.

Mirrors: the scenario of the patch's commit message: a pCPU switched between schedulers
by ``xl cpupool-cpu-add``/``cpupool-cpu-remove`` while other pCPUs schedule and wake
vCPUs on it and on the runqueue it joins or leaves.

For each boot scheduler x pool scheduler x direction x protocol, on a fresh 4-pCPU host
(Pool-0 = cpus 0-1, pool ``p`` = cpu 2 plus, for ``remove``, cpu 3; cpu 3 = ``x`` is
the one that moves), the explorer (:mod:`xensched.explore`) runs the built-in scenario
``patch-move`` (:func:`xensched.scenario.patch_move`): its toolstack thread
``xl-mover`` moves pCPU ``x``; ``x`` itself runs ``schedule()`` and idles; its runqueue
peer, cpu 2, wakes a vCPU, schedules and puts it back to sleep. Every thread is paused
at every one of its points, the observers as well as the mover:

1. a dry run (each thread in turn, the mover first) counts the steps ``N_T`` of each
   thread ``T``;
2. for every thread ``T`` and every ``k`` in ``0..N_T``, a run lets ``T`` alone make
   its first ``k`` steps, then runs the others round-robin, step by step (one inside a
   runqueue critical section waits while another can run), until none of them can go
   on; ``T`` then goes on. With ``T`` the mover this observes the host at every point
   of the move; with ``T`` an observer, it tries the windows on the observer's side
   (read the lock pointer, the move completes, act on the stale lock), which is how a
   pCPU without the re-check of the lock macros goes wrong.

A cpu-remove also runs the built-in scenario ``busy-peer-remove``
(:func:`xensched.scenario.busy_peer_remove`): pCPU ``x`` leaves the pool while it runs a
vCPU and a pool peer load-balances. That is the one window of
``pcpu_schedule_trylock`` a single move opens (Credit's ``csched_load_balance`` trylocks
only busy peers, and ``patch-move``'s ``x`` is idle); there the dry run is followed by
the runs that pause the load-balancing peer at each of its points, not the other
threads, whose windows are ``patch-move``'s.

Each problem found comes with the execution that showed it first, which can be written
as a replay file (``xensched reproduce --replay-dir DIR``; ``xensched replay FILE``).

Every run is deterministic (one thread at a time, fixed strategy), so the verdicts are
the same on every run. The result of a transition is the set of violation kinds seen in
any of its runs.
"""

from __future__ import annotations

import contextvars
import functools
import itertools
import multiprocessing
import signal
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from xensched.drivers.controlled import drain_of, round_robin
from xensched.drivers.workers import Workers
from xensched.errors import XenschedError
from xensched.explore.engine import Collector, Explorer, ScenarioTarget
from xensched.explore.replay import Replay
from xensched.instruments import (
    LOCKDEP_DEFAULT,
    RACE_DETECTOR_DEFAULT,
    LockdepSummary,
    RaceSummary,
)
from xensched.interaction import Instrument, PointKind
from xensched.lockdep import Lockdep
from xensched.processes import shut_down_pool
from xensched.protocol import SwitchProtocol
from xensched.race_detector import RaceDetector
from xensched.scenario import (
    BUSY_OBSERVER_CPU,
    PATCH_MOVING_CPU,
    PATCH_PEER_CPU,
    PcpuOps,
    build_host as scenario_build_host,
    busy_peer_remove,
    patch_move,
)
from xensched.schedulers import SCHEDULERS
from xensched.signals import signal_name
from xensched.violation import ViolationKind

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from multiprocessing.pool import Pool
    from multiprocessing.process import BaseProcess

    from xensched.explore.base import Op, Step
    from xensched.explore.engine import Execution
    from xensched.host import Host
    from xensched.interaction import Access
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
    #: The execution that showed each problem first (for a replay file).
    executions: tuple[Execution, ...] = field(default=(), compare=False)
    mutants: tuple[str, ...] = ()
    #: The memory model the move ran under (:mod:`xensched.memory_model`).
    memory_model: str = "sc"
    #: What lockdep checked over the move's runs (``lockdep=True``), else None.
    lockdep: LockdepSummary | None = field(default=None, compare=False)
    #: What the race detector checked over the move's runs, else None.
    race_detector: RaceSummary | None = field(default=None, compare=False)
    #: The scenario each of ``executions`` ran (empty: ``patch-move``'s, for all).
    scenarios: tuple[Scenario, ...] = field(default=(), compare=False)

    def replay(self, i: int) -> Replay:
        """The replay of the execution that showed ``problems[i]`` first."""
        return Replay.of(
            self.executions[i].first_of(self.problems[i]),
            seed=0,
            strategy="reproduce",
            scenario=self.scenarios[i]
            if self.scenarios
            else scenario_of(self.transition, self.mutants, self.memory_model),
            options={
                **({"lockdep": True} if self.lockdep is not None else {}),
                **({"race_detector": True} if self.race_detector is not None else {}),
            }
            or None,
        )

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
            **({"mutants": list(self.mutants)} if self.mutants else {}),
            **(
                {"memory_model": self.memory_model} if self.memory_model != "sc" else {}
            ),
            **({"lockdep": self.lockdep.to_json()} if self.lockdep is not None else {}),
            **(
                {"race_detector": self.race_detector.to_json()}
                if self.race_detector is not None
                else {}
            ),
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


class PauseAt:
    """Strategy: ``paused`` alone through its first ``k`` steps, then the others.

    The others run round-robin, step by step, those outside a runqueue critical
    section first (a second pCPU in the same runqueue is a ``mutual-exclusion``
    violation, unless the lock stops it, as it must), until none of them is enabled;
    then ``paused`` goes on (and any other that it unblocks, as before). ``paused``
    ``None`` is the dry run: every thread in turn, in spawn order.

    Under a store-buffer memory model, when ``paused`` stops, one of its buffered
    stores becomes visible first: the newest the model lets go (a FIFO buffer only
    ever offers its oldest), so that the others find its stores in the most
    reordered state the model allows. Other stores drain only when nothing else
    can run.
    """

    name = "reproduce"
    #: It reads no pending operation (the explorer then records the chosen one's).
    needs_pending = False

    def __init__(self, paused: str | None, k: int, inside: _Sections) -> None:
        self.paused = paused
        self.k = k
        self.inside = inside
        self.made: dict[str, int] = {}
        self._reordered = False

    def begin(self, run: int) -> bool:
        self.made = {}
        self._reordered = False
        return run == 0

    def choose(
        self,
        step: int,
        enabled: Sequence[str],
        pending: Mapping[str, Op],
        last: str | None,
    ) -> str | None:
        p = self.paused
        own = [t for t in enabled if p is not None and drain_of(t) == p]
        if p is not None and p in enabled and self.made.get(p, 0) < self.k:
            pick = p
        elif p is not None and own and self.made.get(p, 0) < self.k:
            # It waits for its own buffer to drain (a barrier, a release): still
            # its turn alone.
            pick = own[0]
        elif (
            p is not None
            and not self._reordered
            and self.made.get(p, 0) >= self.k
            and own
        ):
            self._reordered = True
            pick = own[-1]
        else:
            others = [t for t in enabled if t != p] or list(enabled)
            if p is not None and self.made.get(p, 0) >= self.k:
                # The paused thread's stores stay buffered while anything else
                # can go (another's drain included).
                others = [t for t in others if drain_of(t) != p] or others
            outside = [t for t in others if not self.inside.occupied(t)]
            pick = round_robin(self.inside.order, outside or others, last)
        self.made[pick] = self.made.get(pick, 0) + 1
        return pick

    def end(self, steps: Sequence[Step], abandoned: bool) -> None:
        pass

    @property
    def exhaustive(self) -> bool:
        return False

    def summary(self) -> dict[str, object]:
        return {"paused": self.paused, "k": self.k}


class _Sections(Instrument):
    """Which threads are inside a runqueue critical section now (ENTER ... EXIT)."""

    def __init__(self, order: Sequence[str]) -> None:
        self.order = list(order)
        self._depth: dict[str, int] = {}

    def occupied(self, thread: str) -> bool:
        return self._depth.get(thread, 0) > 0

    def on_point(self, ctx: ExecContext, access: Access) -> None:
        kind = access[0]
        if kind is PointKind.ENTER:
            self._depth[ctx.name] = self._depth.get(ctx.name, 0) + 1
        elif kind is PointKind.EXIT:
            self._depth[ctx.name] = self._depth.get(ctx.name, 0) - 1


def scenario_of(
    t: Transition, mutants: Sequence[str] = (), memory_model: str = "sc"
) -> Scenario:
    """The ``patch-move`` scenario of one transition, under ``memory_model``."""
    return _variant(
        patch_move(t.boot, t.pool, t.direction, str(t.protocol)), mutants, memory_model
    )


def busy_scenario_of(
    t: Transition, mutants: Sequence[str] = (), memory_model: str = "sc"
) -> Scenario | None:
    """The ``busy-peer-remove`` scenario of a cpu-remove (None for a cpu-add)."""
    if t.direction != "remove":
        return None
    sc = busy_peer_remove(t.boot, t.pool, str(t.protocol))
    return _variant(sc, mutants, memory_model)


def _variant(sc: Scenario, mutants: Sequence[str], memory_model: str) -> Scenario:
    if mutants or memory_model != "sc":
        sc = sc.replace(mutants=tuple(mutants), memory_model=memory_model)
    return sc


def build_host(
    boot: str, pool: str, direction: Direction, protocol: SwitchProtocol
) -> Host:
    """The starting host of a transition, set up with the fixed protocol."""
    return scenario_build_host(patch_move(boot, pool, direction, str(protocol)))


#: The participant threads of the transition being reproduced (None: outside one,
#: each run starts its own). A context variable rather than an argument, so that
#: _run_once keeps the three-argument form that tests swap in.
_POOL: contextvars.ContextVar[Workers | None] = contextvars.ContextVar(
    "xensched_reproduce_pool", default=None
)


def _run_once(
    sc: Scenario,
    paused: str | None,
    k: int,
    lockdep: list[LockdepSummary] | None = None,
    races: list[RaceSummary] | None = None,
) -> Execution:
    """One run; with ``lockdep`` (``races``) a list, a fresh Lockdep (RaceDetector)
    checks it and its summary is appended."""
    order = [p.name for p in sc.threads]
    sections = _Sections(order)
    strategy = PauseAt(paused, k, sections)
    strategy.begin(0)
    explorer = Explorer(ScenarioTarget(sc), strategy, runs=1, workers=_POOL.get())
    dep = Lockdep() if lockdep is not None else None
    det = RaceDetector() if races is not None else None
    extra: list[Instrument] = [i for i in (dep, det) if i is not None]
    ex = explorer.execute(0, lambda step_of: [sections, *extra])
    if dep is not None and lockdep is not None:
        lockdep.append(LockdepSummary.of(dep))
    if det is not None and races is not None:
        races.append(RaceSummary.of(det))
    return ex


#: What ``pause`` takes: every thread, or the mover alone (the observers then never
#: stop of their own, so the windows on their side are not tried, and
#: ``busy-peer-remove``, which is such a window, is not run: about 2.5 times fewer
#: runs).
PAUSE_ALL = "all"
PAUSE_MOVER = "mover"


def reproduce_transition(
    t: Transition,
    mutants: Sequence[str] = (),
    pause: str = PAUSE_ALL,
    memory_model: str = "sc",
    lockdep: bool = LOCKDEP_DEFAULT,
    race_detector: bool = RACE_DETECTOR_DEFAULT,
) -> Result:
    """Observe one transition with every thread (``pause="mover"``: the mover
    alone) paused at every one of its steps, under ``memory_model``.

    Under ``tso`` or ``relaxed`` the drains of the store buffers are steps too
    (pseudo-threads ``CPU>field``); this strategy takes them when no thread can go
    on (a barrier or release waiting for them) and as the others' round-robin
    reaches them, so one drain order is tried per run, not every one: that is
    ``xensched explore``'s job.

    ``lockdep``: each run has a fresh :class:`~xensched.lockdep.Lockdep` on its bus
    (a problem must come back from its replay file alone); the result's summary is
    the union over the runs; ``race_detector`` the same with a
    :class:`~xensched.race_detector.RaceDetector`."""
    if pause not in (PAUSE_ALL, PAUSE_MOVER):
        raise ValueError(f"pause={pause!r}: {PAUSE_ALL} or {PAUSE_MOVER}")
    sc = scenario_of(t, mutants, memory_model)
    deps: list[LockdepSummary] | None = [] if lockdep else None
    dets: list[RaceSummary] | None = [] if race_detector else None
    # By keyword, and only when on: tests swap in a three-argument _run_once.
    extra: dict[str, Any] = {}
    if deps is not None:
        extra["lockdep"] = deps
    if dets is not None:
        extra["races"] = dets
    run_once: Callable[[Scenario, str | None, int], Execution] = (
        functools.partial(_run_once, **extra) if extra else _run_once
    )
    seen: dict[str, tuple[Violation, Execution, Scenario]] = {}
    runs = 0
    # Each run's garbage collected before the next (17 % of a move's time).
    collector = Collector()

    def note(ex: Execution, of: Scenario) -> None:
        for v in ex.violations:
            seen.setdefault(v.kind.value, (v, ex, of))

    def paused_at_every_point(
        of: Scenario, threads: Sequence[str] | None
    ) -> Counter[str]:
        """A dry run, then each of ``threads`` (None: every thread of ``of``)
        paused at each of its points; returns each thread's steps in the dry run."""
        nonlocal runs
        collector.between()
        dry = run_once(of, None, 0)
        note(dry, of)
        runs += 1
        made = Counter(dry.schedule)
        for thread in threads if threads is not None else [p.name for p in of.threads]:
            for k in range(made[thread] + 1):
                collector.between()
                note(run_once(of, thread, k), of)
                runs += 1
        return made

    # The transition's runs share one pool of participant threads (_run_once
    # reads it): starting and joining them per run was 5 % of a move's time.
    with Workers() as pool, collector:
        token = _POOL.set(pool)
        try:
            made = paused_at_every_point(sc, None if pause == PAUSE_ALL else [MOVER])
            busy = busy_scenario_of(t, mutants, memory_model)
            if busy is not None and pause == PAUSE_ALL:
                observer = next(
                    p.name
                    for p in busy.threads
                    if isinstance(p, PcpuOps) and p.cpu == BUSY_OBSERVER_CPU
                )
                paused_at_every_point(busy, [observer])
        finally:
            _POOL.reset(token)
    order = [kind.value for kind in ViolationKind]
    problems = tuple(sorted(seen, key=order.index))
    return Result(
        t,
        problems,
        runs,
        made[MOVER],
        tuple(seen[p][0] for p in problems),
        tuple(seen[p][1] for p in problems),
        tuple(mutants),
        sc.memory_model,
        functools.reduce(LockdepSummary.merge, deps, LockdepSummary())
        if deps is not None
        else None,
        functools.reduce(RaceSummary.merge, dets, RaceSummary())
        if dets is not None
        else None,
        tuple(seen[p][2] for p in problems),
    )


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
    mutants: Sequence[str] = (),
    workers: int = 1,
    pause: str = PAUSE_ALL,
    memory_model: str = "sc",
    lockdep: bool = LOCKDEP_DEFAULT,
    race_detector: bool = RACE_DETECTOR_DEFAULT,
    notice: Callable[[str], None] | None = None,
) -> list[Result]:
    """Run :func:`reproduce_transition` for each transition (all 64 by default).

    ``workers`` > 1 shares the transitions among that many processes; the results
    (and the calls of ``progress``) come in the order of ``selected`` either way, and
    each is the same as a single process gives: every run is deterministic. A worker
    process that dies (kill -9, the OOM killer) loses its move: the wait ends within
    :data:`WORKER_POLL` seconds with :class:`WorkerDiedError`, the other workers
    ended, ``progress`` having had the moves that came in.

    The workers' end is bounded too (:func:`xensched.processes.shut_down_pool`):
    those that have not ended :data:`xensched.processes.END_GRACE` seconds after
    the pool's shut-down began are killed (SIGKILL), and ``notice`` (if given) is
    told so in a line for the user.
    """
    todo = list(selected) if selected is not None else transitions()
    results: list[Result] = []
    if workers <= 1 or len(todo) <= 1:
        for i, t in enumerate(todo):
            r = reproduce_transition(
                t, mutants, pause, memory_model, lockdep, race_detector
            )
            results.append(r)
            if progress is not None:
                progress(i + 1, len(todo), r)
        return results
    # spawn, not fork: the caller may have threads. multiprocessing.Pool, not
    # concurrent.futures: terminate() ends it quietly when the user interrupts.
    ctx = multiprocessing.get_context("spawn")
    pool = ctx.Pool(min(workers, len(todo)), initializer=ignore_interrupts)
    # The pool's workers, started by now: a Pool replaces a worker that dies
    # (kill -9, the OOM killer) but loses its move, and imap would wait forever.
    mine = _workers_of(pool)
    try:
        each = functools.partial(
            reproduce_transition,
            mutants=mutants,
            pause=pause,
            memory_model=memory_model,
            lockdep=lockdep,
            race_detector=race_detector,
        )
        it = pool.imap(each, todo)
        while len(results) < len(todo):
            try:
                r = it.next(timeout=WORKER_POLL)
            except multiprocessing.TimeoutError:
                dead = [p for p in mine if not p.is_alive()]
                if dead:
                    raise WorkerDiedError(
                        len(results), len(todo), dead[0].exitcode
                    ) from None
                continue
            results.append(r)
            if progress is not None:
                progress(len(results), len(todo), r)
    except BaseException:
        _shut_down(pool, notice, terminate=True)
        raise
    _shut_down(pool, notice, terminate=False)
    return results


def _workers_of(pool: Pool) -> list[BaseProcess]:
    """The pool's worker processes now, the replacements it started for those that
    died included: its own list, ``Pool._pool`` (private, but there since Python
    2.6). Not the children started beside it, which are not the pool's to kill."""
    return list(getattr(pool, "_pool"))  # noqa: B009 (not in the type stubs)


def _shut_down(
    pool: Pool, notice: Callable[[str], None] | None, *, terminate: bool
) -> None:
    """The pool shut down within a bound, its workers killed if need be (said to
    ``notice``)."""
    end = shut_down_pool(pool, lambda: _workers_of(pool), terminate=terminate)
    if notice is not None:
        for line in end.lines():
            notice(line)


#: How often (seconds) ``reproduce`` with workers looks for a worker that died while
#: it waits for the next move's result.
WORKER_POLL = 0.25


class WorkerDiedError(XenschedError):
    """A worker process of :func:`reproduce` ended (killed, out of memory) while moves
    were left: its move is lost, so the run cannot complete. ``done`` moves had come
    in (handed to ``progress``), of ``total``."""

    def __init__(self, done: int, total: int, exitcode: int | None) -> None:
        how = (
            f"killed by {signal_name(-exitcode)}"
            if exitcode is not None and exitcode < 0
            else f"exit code {exitcode}"
        )
        super().__init__(
            f"a worker process ended ({how}) after {done} of {total} moves: "
            "its move is lost"
        )
        self.done = done
        self.total = total
        self.exitcode = exitcode


def ignore_interrupts() -> None:
    """In a worker process: leave Ctrl-C (sent to the whole process group) to the
    parent, which ends the workers itself (``Pool.terminate()``, a SIGTERM: that
    one a worker must not ignore)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
