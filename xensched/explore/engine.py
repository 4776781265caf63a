"""The explorer: executions of a controlled run, one after another, under a strategy.

Mirrors nothing in Xen. A *target* makes a fresh run on demand (a scenario's host and
threads: :class:`ScenarioTarget`; or any threads a test spawns: see
:mod:`xensched.explore.threads`); the :class:`Explorer` runs it again and again under
the controlled driver, a :class:`~xensched.explore.base.SearchStrategy` choosing at
every step, until a violation (unless ``keep_going``), the run budget, the time
budget, or the strategy's exhaustion. Every execution's schedule (the chosen thread at
each step) is recorded, so a failing one can be written as a replay file, re-run
exactly, shrunk and drawn.

A thread waiting for a lock that another participant holds is not enabled (spinning
costs no steps); no enabled thread is a deadlock, which the driver reports with its
wait-for graph; an execution longer than ``max_steps`` is a ``livelock`` violation.

Left out: state caching (no execution is cut short because a state it reached was
seen before: what to run is the search's alone) and parallel executions (shards do
that, each with an explorer of its own: ``explore --workers``, the marker's
``shards=``).
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import sysconfig
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Protocol

from xensched.drivers.workers import Workers, pinned
from xensched.explore.base import START, WAKE, Op, Step, op_of, silent
from xensched.explore.observe import Observer
from xensched.explore.visible import Visibility, tell_grew
from xensched.interaction import Instrument, PointKind
from xensched.programs import ControlledRun
from xensched.violation import ViolationKind

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Mapping, Sequence

    from xensched.drivers.controlled import ControlledDriver
    from xensched.explore.base import SearchStrategy
    from xensched.host import Host
    from xensched.interaction import Access, Bus, Shared
    from xensched.scenario import Scenario
    from xensched.smp import ExecContext
    from xensched.violation import Violation

__all__ = [
    "DEFAULT_MAX_STEPS",
    "MAX_STEPS_RANGE",
    "Collector",
    "Execution",
    "ExploreResult",
    "Explorer",
    "Run",
    "ScenarioTarget",
    "SeedShard",
    "Target",
    "host_state",
    "share_of_runs",
]

#: Steps after which an execution is a livelock (a bounded program's runs here take
#: a few hundred).
DEFAULT_MAX_STEPS = 20_000
#: The ``--max-steps`` that ``explore`` takes: one place, since a replay file records
#: it and its loader must refuse what explore would.
MAX_STEPS_RANGE: Final = (10, 10_000_000)


class Run(Protocol):
    """One fresh run of a target, ready to go under a driver strategy."""

    @property
    def bus(self) -> Bus: ...

    def run(self, strategy: _Chooser) -> list[Violation]: ...

    def final_state(self) -> Hashable: ...

    @property
    def abandoned(self) -> bool:
        """Did the strategy end the run before its threads did?"""
        ...


class Target(Protocol):
    """Makes fresh, identical runs: the thing explored."""

    def new_run(self) -> Run: ...


def host_state(h: Host) -> tuple[object, ...]:
    """What a run leaves behind, for comparing the final states of two searches:
    each pCPU's pool, scheduler and lock, each pool's pCPUs and domains, each vCPU's
    pCPU and flags."""
    pcpus = tuple(
        (
            cpu,
            getattr(pc.cpupool.peek(), "name", None),
            pc.scheduler.peek().label,
            pc.schedule_data.schedule_lock.peek().name,
        )
        for cpu, pc in enumerate(h.percpu)
    )
    pools = tuple(
        (
            c.name,
            tuple(sorted(c.cpu_valid.peek())),
            tuple(d.name for d in c.domains.peek()),
        )
        for c in h.cpupool_list
    )
    vcpus = tuple(
        (
            v.name,
            v.processor.peek(),
            v.is_running.peek(),
            v.awake.peek(),
            v.migrating.peek(),
        )
        for v in h.iter_vcpus()
    )
    return (pcpus, pools, vcpus)


class _ScenarioRun:
    def __init__(self, scenario: Scenario, seed: int, lock_timeout: float) -> None:
        self._run = ControlledRun(scenario, seed, lock_timeout=lock_timeout)

    @property
    def bus(self) -> Bus:
        return self._run.host.bus

    @property
    def host(self) -> Host:
        return self._run.host

    def run(self, strategy: _Chooser) -> list[Violation]:
        return self._run.run(strategy, turn_timeout=strategy.turn_timeout)

    def final_state(self) -> Hashable:
        return host_state(self._run.host)

    @property
    def abandoned(self) -> bool:
        drv = self._run.driver
        return drv is not None and drv.abandoned is not None


@dataclass(frozen=True, slots=True)
class ScenarioTarget:
    """Runs of a :class:`~xensched.scenario.Scenario` (its programs must end)."""

    scenario: Scenario
    seed: int = 0
    lock_timeout: float = 10.0

    def new_run(self) -> _ScenarioRun:
        return _ScenarioRun(self.scenario, self.seed, self.lock_timeout)


# A Step without the NamedTuple constructor's Python call: one is made per step.
_new_step = tuple.__new__
_STORE = PointKind.STORE


class _StepOfViolation(Instrument):
    """Notes the step during which each violation is recorded."""

    def __init__(self, chooser: _Chooser) -> None:
        self.chooser = chooser
        self.steps: list[int] = []

    def on_violation(self, violation: Violation) -> None:
        self.steps.append(self.chooser.step_now())


class _NoPendingMap(dict[str, Op]):
    """What a strategy that says ``needs_pending = False`` gets: reading it is a bug."""

    def __missing__(self, key: str) -> Op:
        raise KeyError(f"{key}: this strategy said it reads no pending operation")


_NoPending = _NoPendingMap()


class _Chooser:
    """The driver's strategy for one execution: asks the search, records the steps."""

    def __init__(
        self,
        search: SearchStrategy,
        max_steps: int,
        turn_timeout: float,
        visibility: Visibility | None = None,
    ) -> None:
        self.search = search
        self.max_steps = max_steps
        self.turn_timeout = turn_timeout
        #: The exploration's pool of participant threads (the driver reads it).
        self.workers: Workers | None = None
        #: Every step of the execution, invisible ones too (the schedule a replay
        #: follows), and the steps that were scheduling points (what the search
        #: chose at: the same list when nothing is invisible).
        self.steps: list[Step] = []
        self.choices: list[Step] = self.steps
        self.visibility = visibility
        if visibility is not None:
            self.choices = []
            visibility.begin()
            self.elide = self._elide
        # Each parked participant's wake, from what its condition last read.
        self._wakes: dict[ExecContext, Op] = {}
        #: The strategy never reads ``pending`` (``needs_pending = False``).
        self.lazy = not getattr(search, "needs_pending", True)
        #: A tree search's ``replayed(k, enabled)``: its recorded choice and pending
        #: operations at choice ``k`` of the prefix it replays, or None.
        self._replayed: (
            Callable[[int, list[str]], tuple[str, Mapping[str, Op]] | None] | None
        ) = getattr(search, "replayed", None)
        self.livelock = False
        self.error: BaseException | None = None
        # Each participant's pending operation as last built, with the access it
        # was built from: a thread that did not run keeps its access, and building
        # its Op again at every step was a tenth of a controlled run's cost.
        self._ops: dict[ExecContext, tuple[Access, Op]] = {}

    def _elide(self, ctx: ExecContext, access: Access) -> bool:
        """The driver's ``elide``: an invisible access is a step of its own thread,
        recorded but not chosen (see :mod:`xensched.explore.visible`)."""
        assert self.visibility is not None
        if len(self.steps) >= self.max_steps or not self.visibility.invisible(
            ctx.name, access
        ):
            return False
        name = ctx.name
        op = op_of(access)
        self.steps.append(Step(name, op, (name,), {name: op}))
        return True

    def condition_read(self, ctx: ExecContext, cells: Sequence[Shared]) -> None:
        """The driver's ``condition_read``: ``ctx`` resumes when its condition
        holds; a condition that read one cell makes its wake a read of that cell
        (see :mod:`xensched.explore.base`)."""
        first = cells[0] if cells else None
        if first is not None and all(c is first for c in cells):
            self._wakes[ctx] = Op("wake", first.oid, first.label)
        else:
            self._wakes[ctx] = WAKE
        if self.visibility is not None:
            self.visibility.read_by_condition(c.label for c in cells)

    def step_now(self) -> int:
        """The step now running (the last one chosen)."""
        return max(len(self.steps) - 1, 0)

    def _pending(self, driver: ControlledDriver, ctx: ExecContext) -> Op:
        acc = driver.next_access(ctx)
        if acc is not None:
            if driver.memory is None:
                hit = self._ops.get(ctx)
                if hit is not None and hit[0] is acc:
                    op = hit[1]
                else:
                    op = op_of(acc)
                    self._ops[ctx] = (acc, op)
                # Silent or not by the cell now: another thread's store since the
                # last step may have changed it (see base.silent).
                if acc[0] is _STORE and silent(acc):
                    return op._replace(silent=True)
                return op
            fence = driver.owner_of(ctx).fence
            return op_of(acc, fence.oid if fence else 0)
        return self._wakes.get(ctx, WAKE) if driver.parked(ctx) else START

    def pick(
        self,
        ready: Sequence[ExecContext],
        last: ExecContext | None,
        driver: ControlledDriver,
    ) -> ExecContext | None:
        n = len(self.steps)
        if n >= self.max_steps:
            self.livelock = True
            driver.abandon(f"livelock: no end after {n} steps")
            return None
        names = [c.name for c in ready]
        k = len(self.choices)
        try:
            again = self._replayed(k, names) if self._replayed is not None else None
            if again is not None:
                # A step of the prefix a tree search replays: it chose here before,
                # with these pending operations (the run is deterministic).
                was, recorded = again
                return self._record(was, recorded[was], names, recorded, ready)
            pending: Mapping[str, Op]
            if self.lazy:
                # The strategy looks at no pending operation: only the chosen
                # thread's is recorded (for the replay file's accesses).
                pending = _NoPending
            else:
                pending = {c.name: self._pending(driver, c) for c in ready}
            name = self.search.choose(
                k, names, pending, last.name if last is not None else None
            )
        except BaseException as exc:  # a diverged replay, a broken strategy
            self.error = exc
            driver.abandon(f"the strategy failed: {exc}")
            return None
        if name is None:
            return None
        if self.lazy:
            op = self._pending(driver, ready[names.index(name)])
            pending = {name: op}
        else:
            op = pending[name]
        return self._record(name, op, names, pending, ready)

    def _record(
        self,
        name: str,
        op: Op,
        names: list[str],
        pending: Mapping[str, Op],
        ready: Sequence[ExecContext],
    ) -> ExecContext:
        """Record the chosen step; the participant that runs it."""
        step = _new_step(Step, (name, op, tuple(names), pending))
        self.steps.append(step)
        if self.choices is not self.steps:
            self.choices.append(step)
        return ready[names.index(name)]


@dataclass(frozen=True, slots=True)
class Execution:
    """One execution: its schedule and what it found."""

    index: int
    schedule: tuple[str, ...]
    steps: tuple[Step, ...]
    violations: tuple[Violation, ...]
    abandoned: bool
    final_state: Hashable = field(compare=False)
    #: The step during which each violation was recorded.
    violation_steps: tuple[int, ...] = ()
    #: Steps that were scheduling points (the others were invisible accesses).
    choices: int = 0

    def first_of(self, kind: str) -> Execution:
        """This execution with its violations reordered so that the first one of
        ``kind`` comes first (what a replay file records for that kind)."""
        pairs = list(zip(self.violations, self.violation_steps, strict=False))
        pairs.sort(key=lambda p: (p[0].kind.value != kind, p[1]))
        return dataclasses.replace(
            self,
            violations=tuple(p[0] for p in pairs),
            violation_steps=tuple(p[1] for p in pairs),
        )

    @property
    def kinds(self) -> tuple[str, ...]:
        order = [k.value for k in ViolationKind]
        return tuple(sorted({v.kind.value for v in self.violations}, key=order.index))


@dataclass(slots=True)
class ExploreResult:
    """What an exploration found, and how far it went."""

    strategy: str
    seed: int
    runs: int = 0
    abandoned: int = 0
    distinct: int = 0
    points: int = 0
    #: Of ``points``, those at which the strategy chose (see ``all_points``).
    choices: int = 0
    seconds: float = 0.0
    exhaustive: bool = False
    stop_reason: str = ""
    interrupted: bool = False
    failing: Execution | None = None
    #: The first execution that showed each kind (with ``keep_going``, one per kind
    #: found; ``failing`` is the first of them).
    first_of_kind: dict[str, Execution] = field(default_factory=dict)
    violations: list[Violation] = field(default_factory=list)
    kinds: set[str] = field(default_factory=set)
    final_states: set[Hashable] = field(default_factory=set)
    details: dict[str, object] = field(default_factory=dict)
    #: With ``observe``: a digest of each distinct observation (what every thread
    #: read, :mod:`xensched.explore.observe`) of the executions not cut short.
    observations: set[bytes] | None = None
    #: The run (1-based; a worker's own count) that met the last new observation.
    last_new_observation: int = 0

    @property
    def points_per_second(self) -> float:
        return self.points / self.seconds if self.seconds > 0 else 0.0


#: The automatic collector's first threshold while explorations run: high enough that
#: it stays out of an execution's way, low enough that an execution making garbage
#: without end still has it collected.
_GC_THRESHOLD = 100_000
#: Every this many executions, a full collection (the older generation's garbage:
#: the search's nodes it dropped).
_GC_FULL_EVERY = 256
# The explorations of this process that hold the collector's policy: the first in
# sets it, the last out puts the caller's threshold back.
_gc_lock = threading.Lock()
_gc_users = 0
_gc_saved: tuple[int, int, int] = (700, 10, 10)
_FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


class Collector:
    """The run's cyclic garbage collected between executions, not during them: a
    context in which :meth:`between` is called before each execution
    (:meth:`Explorer.explore` does; so does ``xensched reproduce``).

    A host is cyclic (its pCPUs, pools and schedulers point back at it), so every
    execution leaves a few hundred kilobytes that only the collector frees. Left to
    its allocation count, the collector runs in the middle of executions and scans
    the live host and the search's nodes two or three times before they die. One
    young collection between executions, when no host is alive (the worker pool lets
    go of a run's bodies before the explorer is told they ended), scans only the
    garbage, and the next host is built in memory still in the cache. Measured
    against the commit before, alternately, on one CPU: DPOR proving the fixed round
    trip in medians of 0.53 to 0.72 s before and 0.38 to 0.58 s after (4 pairs of 5
    runs), the ``switch-race`` credit -> credit add in 4.5 to 5.1 s before and 3.2 to
    3.9 s after. The live objects stay at about 19,000 over 2,000 executions of a
    remove; before, the hosts that the pool kept alive reached the old generation,
    where 400,000 objects waited for a full collection.

    Not on a free-threaded build: its collector has no young generation (every
    collection scans the whole heap), and a collection per execution doubled the
    round trip's time there (0.96 to 2.08 s, medians of 6). Nor when the caller
    turned the collector off (``gc.disable()``): that is its choice.
    """

    def __init__(self) -> None:
        self.active = False
        self.executions = 0

    def __enter__(self) -> Collector:
        global _gc_users, _gc_saved
        if _FREE_THREADED or not gc.isenabled():
            return self
        with _gc_lock:
            if _gc_users == 0:
                _gc_saved = gc.get_threshold()
                gc.set_threshold(_GC_THRESHOLD, *_gc_saved[1:])
            _gc_users += 1
        self.active = True
        return self

    def between(self) -> None:
        """Before an execution: collect what the one before it left."""
        if self.active:
            self.executions += 1
            gc.collect(2 if self.executions % _GC_FULL_EVERY == 0 else 1)

    def __exit__(self, *exc: object) -> None:
        global _gc_users
        if not self.active:
            return
        self.active = False
        with _gc_lock:
            _gc_users -= 1
            if _gc_users == 0:
                gc.set_threshold(*_gc_saved)


class Explorer:
    """Run ``target`` under ``search`` until something stops it; see the module doc.

    Args:
        runs: the most executions (``None``: until exhausted or ``seconds``).
        seconds: a time budget (``None``: none).
        keep_going: go on after a failing execution (collect every kind).
        collect_states: keep each execution's final state (for soundness tests).
        progress: called after each execution with the result so far.
        all_points: make every interaction point a scheduling point. By default a
            search that says ``visible_only`` chooses only at visible accesses
            (:mod:`xensched.explore.visible`) and is told (``visible_grew()``)
            when the set of visible objects grew: random walks, PCT, DFS within a
            preemption bound (unless sharded or not ``reduced``:
            :mod:`xensched.explore.dfs`), and the portfolio while its current
            member does. DPOR and DFS without a bound choose at every point.
        observe: record what each thread read in every execution
            (:class:`~xensched.explore.observe.Observer`) and count the distinct
            observations: how much behaviour a search that is not exhaustive has
            covered, and whether it still meets new behaviour (each point costs
            more).
        workers: a pool of participant threads (:mod:`xensched.drivers.workers`)
            for :meth:`execute` and :meth:`explore` to run on, for a caller that
            makes many one-execution explorers (``xensched reproduce``); the
            caller closes it. By default :meth:`explore` keeps a pool of its own
            for its run and a lone :meth:`execute` starts threads.
        cpu: run :meth:`explore`'s threads (the calling one, for the call, and
            its own pool's) on this CPU only (see :mod:`xensched.drivers.workers`
            and its ``one_cpu``): one participant goes at a time, and a hand-off
            within one CPU is cheaper than across two. ``None``: wherever the OS
            puts them.
    """

    def __init__(
        self,
        target: Target,
        search: SearchStrategy,
        *,
        seed: int = 0,
        runs: int | None = 1000,
        seconds: float | None = None,
        keep_going: bool = False,
        max_steps: int = DEFAULT_MAX_STEPS,
        turn_timeout: float = 10.0,
        collect_states: bool = False,
        progress: Callable[[ExploreResult], None] | None = None,
        all_points: bool = False,
        workers: Workers | None = None,
        cpu: int | None = None,
        observe: bool = False,
    ) -> None:
        self.target = target
        self.observe = observe
        self.cpu = cpu
        self.search = search
        self.seed = seed
        self.runs = runs
        self.seconds = seconds
        self.keep_going = keep_going
        self.max_steps = max_steps
        self.turn_timeout = turn_timeout
        self.collect_states = collect_states
        self.progress = progress
        self.visibility = None if all_points else Visibility()
        # Participant threads kept from one execution to the next: the caller's
        # pool if it gave one (it closes it), else one for as long as explore()
        # runs (a lone execute() then starts threads of its own).
        self._given_workers = workers
        self._workers: Workers | None = workers

    def execute(
        self,
        index: int,
        instruments: Callable[[Callable[[], int]], Sequence[Instrument]] | None = None,
    ) -> Execution:
        """One execution under the search (after ``search.begin(index)``).

        ``instruments(step_of)`` makes instruments to install on the run's bus;
        ``step_of()`` tells them the step now running.
        """
        run = self.target.new_run()
        vis = self.visibility
        if not getattr(self.search, "visible_only", False):
            vis = None
        chooser = _Chooser(self.search, self.max_steps, self.turn_timeout, vis)
        chooser.workers = self._workers
        at = _StepOfViolation(chooser)
        run.bus.add_instrument(at)
        if instruments is not None:
            for inst in instruments(chooser.step_now):
                run.bus.add_instrument(inst)
        violations = list(run.run(chooser))
        if chooser.error is not None:
            raise chooser.error
        if chooser.livelock:
            violations.append(
                run.bus.violation(
                    ViolationKind.LIVELOCK,
                    "explore",
                    f"the execution did not end within {self.max_steps} steps",
                )
            )
        abandoned = not chooser.livelock and run.abandoned
        self.search.end(chooser.choices, abandoned)
        if vis is not None and vis.grew:
            tell_grew(self.search)
        return Execution(
            index,
            tuple(s.thread for s in chooser.steps),
            tuple(chooser.steps),
            tuple(violations),
            abandoned,
            run.final_state() if self.collect_states and not abandoned else None,
            tuple(at.steps) + (chooser.step_now(),) * (len(violations) - len(at.steps)),
            len(chooser.choices),
        )

    def explore(self) -> ExploreResult:
        with pinned(self.cpu), Collector() as collector:
            return self._explore(collector)

    def _explore(self, collector: Collector) -> ExploreResult:
        res = ExploreResult(self.search.name, self.seed)
        observed: set[bytes] | None = set() if self.observe else None
        res.observations = observed
        seen: set[bytes] = set()
        t0 = time.perf_counter()
        i = 0
        pool = self._given_workers or Workers(cpu=self.cpu)
        self._workers = pool
        try:
            while True:
                # This shard's executions only: with shards, another's (the first,
                # which every shard runs to find the split) count for that one.
                if self.runs is not None and res.runs >= self.runs:
                    res.stop_reason = "runs reached"
                    break
                if self.seconds is not None and time.perf_counter() - t0 > self.seconds:
                    res.stop_reason = "time reached"
                    break
                if not self.search.begin(i):
                    res.stop_reason = "exhausted"
                    break
                collector.between()
                observer = None if observed is None else Observer()
                ex = self.execute(i, None if observer is None else observer.installs)
                i += 1
                if getattr(self.search, "foreign", False):
                    continue  # another shard's execution (see TreeSearch._split)
                res.runs += 1
                if observed is not None and observer is not None and not ex.abandoned:
                    digest = observer.digest()
                    if digest not in observed:
                        observed.add(digest)
                        res.last_new_observation = res.runs
                res.points += len(ex.steps)
                res.choices += ex.choices
                if ex.abandoned:
                    res.abandoned += 1
                else:
                    digest = hashlib.blake2b(
                        "\0".join(ex.schedule).encode(), digest_size=16
                    ).digest()
                    if digest not in seen:
                        seen.add(digest)
                        res.distinct += 1
                    if self.collect_states:
                        res.final_states.add(ex.final_state)
                if ex.violations:
                    new = [v for v in ex.violations if v.kind.value not in res.kinds]
                    res.violations.extend(new if self.keep_going else ex.violations)
                    res.kinds.update(v.kind.value for v in ex.violations)
                    for v in ex.violations:
                        res.first_of_kind.setdefault(v.kind.value, ex)
                    if res.failing is None:
                        res.failing = ex
                    if not self.keep_going:
                        res.stop_reason = "violation found"
                        break
                res.seconds = time.perf_counter() - t0
                if self.progress is not None:
                    self.progress(res)
        except KeyboardInterrupt:
            # Ctrl-C (or a signal made one): what was found so far is the result.
            res.interrupted = True
            res.stop_reason = "interrupted"
        finally:
            if pool is not self._given_workers:
                pool.close()
            self._workers = self._given_workers
            res.seconds = time.perf_counter() - t0
            res.exhaustive = self.search.exhaustive
            res.details = self.search.summary()
            vis = self.visibility
            if vis is not None and vis.shared:
                res.details["scheduling_points"] = res.choices
                res.details["visible_objects"] = len(vis.shared)
        return res


def share_of_runs(
    runs: int | None, strategy: str, shard: tuple[int, int] | None
) -> int | None:
    """The ``runs`` budget of share ``shard = (k, n)`` of an exploration of ``runs``
    runs under ``strategy`` (a name of ``make_strategy``).

    Shard ``k`` of a randomised strategy (``random``, ``pct``: :class:`SeedShard`)
    runs the runs ``k, k+n, ...`` of the whole: of the first ``runs``, those are its
    share, and together the shards run the unsharded exploration's runs. A tree
    search's subtrees (and so the portfolio's) are uneven: each shard may run
    ``runs`` of its own.
    """
    if shard is None or runs is None or strategy not in ("random", "pct"):
        return runs
    k, n = shard
    return len(range(k, runs, n))


class SeedShard:
    """Share ``k`` of ``n`` of a randomised strategy's runs: runs ``k, k+n, k+2n...``.

    Random walks and PCT draw each run from the seed and the run's number, so the
    shards of one exploration run disjoint sets of runs (the executions may still
    repeat: they are samples).
    """

    def __init__(self, inner: SearchStrategy, k: int, n: int) -> None:
        self.inner = inner
        self.k = k
        self.n = n
        self.name = inner.name

    def begin(self, run: int) -> bool:
        return self.inner.begin(run * self.n + self.k)

    def choose(
        self,
        step: int,
        enabled: Sequence[str],
        pending: Mapping[str, Op],
        last: str | None,
    ) -> str | None:
        return self.inner.choose(step, enabled, pending, last)

    def end(self, steps: Sequence[Step], abandoned: bool) -> None:
        self.inner.end(steps, abandoned)

    @property
    def exhaustive(self) -> bool:
        return self.inner.exhaustive

    @property
    def foreign(self) -> bool:
        return False

    @property
    def visible_only(self) -> bool:
        return bool(getattr(self.inner, "visible_only", False))

    @property
    def needs_pending(self) -> bool:
        return bool(getattr(self.inner, "needs_pending", True))

    def visible_grew(self) -> None:
        tell_grew(self.inner)

    def summary(self) -> dict[str, object]:
        return self.inner.summary()
