"""The controlled driver: real threads, one at a time, a strategy picks who runs.

Mirrors nothing in Xen. This is the serializing driver of ``architecture.md``: every
participating thread is a real OS thread bound to an emulated CPU and takes real locks,
but it only runs between two interaction points when it holds the *turn*. At each point
the running thread hands the turn back and a :class:`Strategy` picks the next thread
among the runnable ones. A thread about to spin on a lock that another participant holds
is not runnable, so no real lock wait ever blocks, and the same strategy on the same
program gives the same interleaving: seed -> schedule is exact.

Every wait for the turn is bounded, from the run's last step rather than from its own
start: a thread gives up once no participant has taken a step for ``turn_timeout``
(a stall: a thread stuck outside the model with the turn), however long a strategy
has kept it waiting while the others ran. A waiting thread wakes four times per
``turn_timeout`` to compare the count of steps (the length of :attr:`steps`: nothing
is counted or timed at a step for it), so a stall is reported between
``turn_timeout`` and 1.25 times it after the last step; ``run()`` itself gives up
after four times it without a step. How long a run goes on taking steps is the
strategy's to bound (an explorer's ``max_steps``). When no participant is runnable
but some are unfinished, that is a deadlock of the emulated host: every waiting thread
gets :class:`~xensched.errors.DeadlockError` with the wait-for graph, every lock's
owner and waiters and each context's last point
(:func:`~xensched.diagnostics.deadlock_report`, without the thread stacks: that
report is the model's and the same on every run of the schedule). A wait for the turn
that runs out (a thread stuck outside the model) is reported the same way, with every
thread's stack as well.

The turn is handed over through one *gate* per participant (a ``threading.Lock`` held
while it is not that participant's turn), so a handoff wakes exactly one thread. A
shared condition with ``notify_all`` wakes every participant at every point, and on
free-threaded CPython, whose contended locks spin with ``sched_yield()`` before they
sleep, that herd made a controlled run 30 times slower on a loaded machine.

Under a store-buffer memory model (:mod:`xensched.memory_model`) the strategy also
chooses when a buffered store drains and which older value a load may return: each
drain that the model allows now is offered as a *pseudo-thread* ``CPU>field`` beside
the participants, and a participant about to make a load with ``k`` older admissible
values is offered as ``CPU~1`` ... ``CPU~k`` too. Picking a drain makes it at once (no
thread runs) and asks again; picking ``CPU~j`` runs ``CPU`` with its load returning the
``j``-th older value. A participant about to make an access that orders its buffered
stores (a full barrier, a release) is not runnable until its buffer is empty. When
every participant has ended, the remaining stores drain, still one choice at a time.

The driver keeps the list of steps it scheduled (:attr:`ControlledDriver.steps`), one
``(context, point, label)`` per turn, so that a failing interleaving can be printed as a
step list. A strategy sees what each waiting thread will do when it next runs
(:meth:`ControlledDriver.next_access`: the object and the kind of the access it is
about to make), which dependency-aware exploration and sleep sets need.
"""

from __future__ import annotations

import enum
import functools
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from xensched.diagnostics import deadlock_report
from xensched.errors import Abandoned, DeadlockError
from xensched.interaction import Access, PointKind
from xensched.smp import ExecContext, bind
from xensched.violation import ViolationKind

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from xensched.drivers.workers import Job, Workers
    from xensched.interaction import Bus
    from xensched.memory import Cell
    from xensched.memory_model import StoreBufferModel
    from xensched.spinlock import SpinLock


_LOCK = PointKind.LOCK
_DRAIN = PointKind.DRAIN
_LOADS = frozenset({PointKind.LOAD, PointKind.LOAD_ACQUIRE})
T = TypeVar("T")
#: Checks of the run's progress per ``turn_timeout`` by a thread waiting for its turn.
_TICKS = 4


# Pure functions of a step's name, called at every step by the searches (sleep sets,
# preemption costs, DPOR's analysis): cached, as a run has only a few names.
@functools.lru_cache(maxsize=4096)
def drain_of(name: str) -> str | None:
    """The CPU whose buffered store the step ``name`` drains (``CPU>field``), or
    None when it is not a drain."""
    cpu, sep, _ = name.partition(">")
    return cpu if sep else None


@functools.lru_cache(maxsize=4096)
def acts_for(name: str) -> str:
    """The CPU a step acts for: its own name, or the CPU of a drain (``CPU>field``)
    or of a load of an older value (``CPU~k``)."""
    return drain_of(name) or name.partition("~")[0]


@functools.lru_cache(maxsize=4096)
def thread_of(name: str) -> str:
    """The thread a step's name stands for: ``CPU~k`` (a load returning an older
    value) is ``CPU``; a drain ``CPU>field`` is a thread of its own."""
    return name if drain_of(name) is not None else name.partition("~")[0]


class Strategy(Protocol):
    """Picks the next thread to run; must be deterministic for exact replay.

    A strategy may also have ``elide(ctx, access) -> bool``: asked at each point
    before anything else, True lets ``ctx`` make ``access`` at once, without a
    scheduling point (an access no other thread conflicts with, see
    :mod:`xensched.explore.visible`); and ``condition_read(ctx, cells)``, told what
    parked ``ctx``'s wake condition read when it was evaluated (the cells it
    peeked). Neither is used under a store-buffer memory model. A ``workers``
    attribute (a :class:`~xensched.drivers.workers.Workers`) runs the participants
    on that pool's threads instead of new ones.
    """

    def pick(
        self,
        ready: Sequence[ExecContext],
        last: ExecContext | None,
        driver: ControlledDriver,
    ) -> ExecContext | None:
        """One of ``ready`` (never empty); ``last`` is who just yielded, if anyone.

        ``None`` abandons the run (:meth:`ControlledDriver.abandon`): an explorer
        that sees the rest of it is redundant, or that it ran past its step bound.
        """
        ...


class _State(enum.Enum):
    READY = "ready"
    DONE = "done"


_READY = _State.READY


class _Participant:
    __slots__ = (
        "body",
        "ctx",
        "error",
        "gate",
        "gate_open",
        "next",
        "points",
        "state",
        "thread",
        "until",
        "wants",
    )

    def __init__(self, ctx: ExecContext) -> None:
        self.ctx = ctx
        # Held while it is not this participant's turn; releasing it hands the turn
        # over. gate_open (under the driver's mutex) keeps it from being opened twice.
        self.gate = threading.Lock()
        self.gate.acquire()
        self.gate_open = False
        self.state = _State.READY
        self.wants: SpinLock | None = None
        # The access this participant makes when it next runs (None: it has not
        # reached its first point, or it waits for a condition).
        self.next: Access | None = None
        self.until: Callable[[], bool] | None = None
        self.points = 0
        self.error: BaseException | None = None
        self.body: Callable[[], None] | None = None
        # Its OS thread: its own, or a pooled worker's job (Workers); None until
        # the run starts it.
        self.thread: threading.Thread | Job | None = None


def record_crashes(
    bus: Bus, errors: Sequence[tuple[ExecContext, BaseException]]
) -> None:
    """Record each exception that ended a participant (what :meth:`ControlledDriver.run`
    returns) as a ``crash`` violation on ``bus``.

    Not :class:`~xensched.errors.Abandoned` (the strategy ended the run on purpose)
    nor :class:`~xensched.errors.DeadlockError` (the driver records the deadlock).
    Any other ``BaseException`` is a crash too: ``SystemExit``, ``GeneratorExit`` or
    pytest's ``Failed`` end a thread as surely as an ``Exception``, and dropping them
    made a run that failed look clean. A ``KeyboardInterrupt`` is raised again here,
    in the caller's thread: it is the user's, to stop the caller.

    Raises:
        KeyboardInterrupt: a participant raised one.
    """
    for _, exc in errors:
        if isinstance(exc, KeyboardInterrupt):
            raise exc
    for ctx, exc in errors:
        if isinstance(exc, Abandoned | DeadlockError):
            continue
        bus.violation(
            ViolationKind.CRASH, ctx.name, f"{type(exc).__name__}: {exc}", cpu=ctx.cpu
        )


class ControlledDriver:
    """Run participant threads one at a time under ``strategy``.

    Usage::

        drv = ControlledDriver(bus, strategy)
        drv.spawn(ctx_a, fn_a)
        drv.spawn(ctx_b, fn_b)
        errors = drv.run()      # installs itself on the bus, starts, joins
    """

    def __init__(
        self, bus: Bus, strategy: Strategy, *, turn_timeout: float = 10.0
    ) -> None:
        self.bus = bus
        self.strategy = strategy
        self.turn_timeout = turn_timeout
        self._mutex = threading.Lock()  # the driver's state; never held while waiting
        self._parts: dict[ExecContext, _Participant] = {}
        self._order: list[_Participant] = []
        self._running: ExecContext | None = None
        self._started = False
        self.deadlock: str | None = None
        #: Why the run was abandoned (:meth:`abandon`), or None.
        self.abandoned: str | None = None
        self._deadlock_reported = False
        # The deadlock report without stacks, for the violation (see _report).
        self._summary: str | None = None
        self.steps: list[tuple[str, str, str]] = []
        # The store-buffer model of the run (None: sequential consistency), and the
        # pseudo-threads offered at the current pick: ctx -> (access, owner, what).
        self._mem: StoreBufferModel | None = None
        self._pseudo: dict[
            ExecContext, tuple[Access, ExecContext, Cell[Any] | int]
        ] = {}
        self._pseudo_ctx: dict[str, ExecContext] = {}
        self._elide: Callable[[ExecContext, Access], bool] | None = getattr(
            strategy, "elide", None
        )
        self._condition_read: Callable[[ExecContext, list[Cell[Any]]], None] | None = (
            getattr(strategy, "condition_read", None)
        )
        self._workers: Workers | None = getattr(strategy, "workers", None)

    # -- setup -----------------------------------------------------------------------------
    def spawn(self, ctx: ExecContext, fn: Callable[[], object]) -> None:
        """Add a participant running ``fn`` bound to ``ctx``; runnable at once."""
        part = _Participant(ctx)

        def body() -> None:
            with bind(ctx):
                try:
                    self._wait_turn(part)
                    fn()
                except BaseException as exc:  # a pCPU thread never dies silently
                    part.error = exc
                finally:
                    self._finish(part)

        part.body = body
        with self._mutex:
            self._parts[ctx] = part
            self._order.append(part)
            started = self._started
        if started:
            self._start(part)

    def _start(self, part: _Participant) -> None:
        """Start ``part``'s OS thread: a pooled worker's if the strategy brought a
        pool (:mod:`xensched.drivers.workers`), else a thread of its own."""
        assert part.body is not None
        workers = self._workers
        if workers is not None:
            part.thread = workers.start(part.ctx.name, part.body)
            return
        t = threading.Thread(target=part.body, name=part.ctx.name, daemon=True)
        part.thread = t
        t.start()

    def done(self, ctx: ExecContext) -> bool:
        """Has participant ``ctx`` finished?"""
        part = self._parts.get(ctx)
        return part is not None and part.state is _State.DONE

    def wait_for(self, ctx: ExecContext, pred: Callable[[], bool]) -> None:
        """Park ``ctx`` (the caller) until ``pred()`` holds, as an idle pCPU waits
        for a softirq. ``pred`` is evaluated by the scheduler with its lock held: it
        must only read state.
        """
        part = self._parts[ctx]
        with self._mutex:
            part.until = pred
            self.steps.append((ctx.name, "wait", getattr(pred, "__name__", "?")))
            self._schedule_next(ctx)
        try:
            self._wait_turn(part)
        finally:
            part.until = None

    def wait_until(self, ctx: ExecContext, pred: Callable[[], bool], what: str) -> None:
        """:meth:`xensched.interaction.Bus.wait_until` under this driver: park."""
        if ctx not in self._parts:  # not a participant: runs freely
            raise DeadlockError(
                f"{ctx.name} waits for {what} outside the controlled run"
            )
        self.wait_for(ctx, pred)

    def next_access(self, ctx: ExecContext) -> Access | None:
        """What ``ctx`` will do when it next runs (``None`` before its first point
        or while it waits for a condition)."""
        part = self._parts.get(ctx)
        if part is None:
            pseudo = self._pseudo.get(ctx)
            return pseudo[0] if pseudo is not None else None
        return part.next

    def owner_of(self, ctx: ExecContext) -> ExecContext:
        """The participant a pseudo-thread acts for (``ctx`` itself otherwise)."""
        pseudo = self._pseudo.get(ctx)
        return pseudo[1] if pseudo is not None else ctx

    @property
    def memory(self) -> StoreBufferModel | None:
        """The store-buffer model whose choices this run makes, if any."""
        return self._mem

    def parked(self, ctx: ExecContext) -> bool:
        """Is ``ctx`` parked until a condition holds (:meth:`wait_for`)?"""
        part = self._parts.get(ctx)
        return part is not None and part.until is not None

    def started(self, ctx: ExecContext) -> bool:
        """Has ``ctx`` run its first step (reached a point, parked or finished)?"""
        part = self._parts.get(ctx)
        return part is not None and (
            part.points > 0 or part.until is not None or part.state is _State.DONE
        )

    def wait_for_graph(self) -> list[tuple[str, str, str]]:
        """``(waiter, holder, lock)`` for every participant that spins on a lock that
        another one holds: the edges of the wait-for graph."""
        with self._mutex:
            return [
                (p.ctx.name, p.wants.owner, p.wants.name)
                for p in self._order
                if p.state is _State.READY
                and p.wants is not None
                and p.wants.owner is not None
            ]

    def abandon(self, why: str) -> None:
        """With ``_mutex`` held (from :meth:`Strategy.pick`): end the run now.

        Every participant raises :class:`~xensched.errors.Abandoned` at its next
        wait for the turn and unwinds; no violation is recorded.
        """
        self.abandoned = why
        self._running = None
        self._open_all()

    def points_of(self, ctx: ExecContext) -> int:
        """Interaction points ``ctx`` has passed under this driver."""
        part = self._parts.get(ctx)
        return part.points if part is not None else 0

    def run(self) -> list[tuple[ExecContext, BaseException]]:
        """Run every participant to the end; returns the errors they raised."""
        prev = self.bus.driver
        self.bus.driver = self
        mem = self.bus.memory
        if mem is not None and hasattr(mem, "drain_options"):
            self._mem = cast("StoreBufferModel", mem)
            self._mem.start_controlled()
            # Every access also touches its CPU's store buffer: none is invisible.
            self._elide = self._condition_read = None
        try:
            with self._mutex:
                self._started = True
                parts = list(self._order)
            for p in parts:
                self._start(p)
            with self._mutex:
                self._schedule_next(None)
            try:
                self._join(self.turn_timeout * 4)
            except BaseException:
                # Ctrl-C in the joining thread: end the participants too, so that
                # none is left waiting for a turn that will never come.
                with self._mutex:
                    if self.abandoned is None:
                        self.abandon("interrupted")
                for p in parts:
                    assert p.thread is not None
                    p.thread.join(self.turn_timeout)
                raise
        finally:
            self.bus.driver = prev
            if self._mem is not None:
                self._mem.controlled = False
        return [(p.ctx, p.error) for p in self._order if p.error is not None]

    def _join(self, bound: float) -> None:
        """Wait for every participant to finish; give up once no participant has
        taken a step for ``bound`` seconds (a long run that takes steps goes on)."""
        tick = bound / _TICKS
        mark, since = -1, time.monotonic()
        while True:
            with self._mutex:
                pending = [p for p in self._order if p.thread is not None]
                steps = len(self.steps)
            now = time.monotonic()
            if steps != mark:
                mark, since = steps, now
            elif now - since >= bound:
                with self._mutex:
                    if self.deadlock is None:
                        self.deadlock = self._report(
                            f"run() timed out: no step taken for {bound:g}s"
                        )
                    self._open_all()
                for p in pending:
                    assert p.thread is not None
                    p.thread.join(self.turn_timeout)
                break
            end = now + tick
            for p in pending:
                assert p.thread is not None
                p.thread.join(max(0.0, end - time.monotonic()))
            with self._mutex:
                if all(p.state is _State.DONE for p in self._order):
                    break

    # -- the Driver protocol ------------------------------------------------------------------
    def point(self, ctx: ExecContext, access: Access) -> None:
        part = self._parts.get(ctx)
        if part is None:
            return  # not a participant: runs freely
        kind, obj = access[0], access[1]
        elide = self._elide
        invisible = elide is not None and elide(ctx, access)
        with self._mutex:
            part.points += 1
            self.steps.append((ctx.name, kind._value_, obj.label))
            if invisible:
                return  # no other thread conflicts on it: no turn is offered
            part.next = access
            # A LOCK access is always of a SpinLock.
            part.wants = cast("SpinLock", obj) if kind is _LOCK else None
            self._schedule_next(ctx)
            # Picked again (most steps): take the turn here, gate and all, rather
            # than in _wait_turn(), which would take the mutex a second time.
            again = self._running is ctx and part.gate_open
            if again:
                part.gate.acquire(blocking=False)  # released by _open() just now
                part.gate_open = False
        if not again:
            self._wait_turn(part)
        part.wants = None
        part.next = None

    # -- internals ---------------------------------------------------------------------------
    def _runnable(self, p: _Participant) -> bool:
        if p.state is not _State.READY:
            return False
        until = p.until
        if until is not None:
            told = self._condition_read
            if told is None:
                if not until():
                    return False
            else:
                # What the condition reads may change whether it holds: its
                # writes must be scheduling points.
                bus = self.bus
                peeks: list[Cell[Any]] = []
                bus._peeks = peeks
                try:
                    holds = until()
                finally:
                    bus._peeks = None
                told(p.ctx, peeks)
                if not holds:
                    return False
        w = p.wants
        if w is not None and w.owner is not None:
            return False
        mem = self._mem
        nxt = p.next
        return mem is None or nxt is None or mem.may_proceed(p.ctx, nxt[0])

    def _offer_pseudo(self, ready: list[ExecContext]) -> None:
        """With ``_mutex`` held: add the memory model's choices to ``ready``."""
        mem = self._mem
        assert mem is not None
        self._pseudo = {}
        for ctx in list(ready):
            acc = self._parts[ctx].next
            if acc is None or acc[0] not in _LOADS:
                continue
            k = mem.load_choices(ctx, cast("Cell[Any]", acc[1]))
            for j in range(1, k + 1):
                pc = self._pseudo_context(f"{ctx.name}~{j}")
                self._pseudo[pc] = (acc, ctx, j)
                ready.append(pc)
        for owner, cell in mem.drain_options():
            pc = self._pseudo_context(f"{owner.name}>{cell.label}")
            self._pseudo[pc] = (Access(_DRAIN, cell), owner, cell)
            ready.append(pc)

    def _pseudo_context(self, name: str) -> ExecContext:
        pc = self._pseudo_ctx.get(name)
        if pc is None:
            # Not registered on the bus: it never runs model code, only names a step.
            pc = self._pseudo_ctx[name] = ExecContext(self.bus, name, None)
        return pc

    def _schedule_next(self, last: ExecContext | None) -> None:
        """With ``_mutex`` held: give the turn to the strategy's pick."""
        while True:
            if self.abandoned is not None:
                self._open_all()
                return
            # _runnable(), with its common case inlined (no condition, no memory
            # model): a call per participant per point was a tenth of a point.
            if self._mem is None:
                ready = [
                    p.ctx
                    for p in self._order
                    if p.state is _READY
                    and (p.wants is None or p.wants.owner is None)
                    and (p.until is None or self._runnable(p))
                ]
            else:
                ready = [p.ctx for p in self._order if self._runnable(p)]
            if self._mem is not None:
                self._offer_pseudo(ready)
            if not ready:
                break
            picked = self.strategy.pick(ready, last, self)
            if picked is None:
                self._ended_by_strategy()
                return
            pseudo = self._pseudo.get(picked)
            if pseudo is None:
                self._running = picked
                self._open(self._parts[picked])
                return
            _, owner, what = pseudo
            assert self._mem is not None
            if isinstance(what, int):  # CPU~k: the owner runs, its load reads older
                self._mem.choose_load(owner, what)
                self._running = owner
                self._open(self._parts[owner])
                return
            self._mem.drain(owner, what)
            self.steps.append((picked.name, _DRAIN.value, what.label))
            last = picked
        self._running = None
        if self.deadlock is None and any(p.state is _State.READY for p in self._order):
            # Described once, while every side of the cycle is still there.
            self.deadlock = self._describe("no participant can run", stacks=False)
        self._open_all()

    def _ended_by_strategy(self) -> None:
        """With ``_mutex`` held: the strategy returned no thread (it may have called
        :meth:`abandon` with its reason already)."""
        if self.abandoned is None:
            self.abandon("the strategy ended the run")
        else:
            self.abandon(self.abandoned)

    @staticmethod
    def _open(part: _Participant) -> None:
        """With ``_mutex`` held: let ``part`` past its gate (once)."""
        if not part.gate_open:
            part.gate_open = True
            part.gate.release()

    def _open_all(self) -> None:
        """With ``_mutex`` held: wake every waiting participant (to see a deadlock)."""
        for p in self._order:
            if p.state is _State.READY:
                self._open(p)

    def _report(self, why: str) -> str:
        """With ``_mutex`` held: a wait ran out. The full report, every thread's
        stack included (for ``deadlock``); the violation's message is the same
        without the stacks, which differ from run to run (replay files and JSON
        keep it)."""
        self._summary = self._describe(why, stacks=False)
        return self._describe(why)

    def _describe(self, why: str, *, stacks: bool = True) -> str:
        """With ``_mutex`` held: the deadlock report, :func:`deadlock_report` after
        the wait-for graph and what each participant waits for. ``stacks=False``
        for "no participant can run", the model's own finding: its report must be
        the same on every run of the schedule (replay files keep it, explorations
        make thousands), and each participant's last point says where it stands."""
        lines = [f"controlled run deadlocked: {why}"]
        edges = [
            f"{p.ctx.name} -> {p.wants.owner} ({p.wants.name})"
            for p in self._order
            if p.state is _State.READY and p.wants is not None and p.wants.owner
        ]
        if edges:
            lines.append("  wait-for graph: " + ", ".join(edges))
        for p in self._order:
            if p.state is _State.DONE:
                continue
            w = p.wants
            if w is not None:
                what = f"spins on {w.name} held by {w.owner}"
            elif p.until is not None:
                what = "is parked until an event that did not come"
            else:
                what = "waits for its turn"
            lines.append(f"  {p.ctx.name}: {what}")
        return deadlock_report(self.bus, "\n".join(lines), stacks=stacks)

    def _wait_turn(self, part: _Participant) -> None:
        # The hot path is the first acquire: a count read before it, no clock.
        mark = len(self.steps)
        tick = self.turn_timeout / _TICKS
        passed = part.gate.acquire(timeout=tick)
        if not passed:
            passed = self._wait_on(part, mark, tick)
        with self._mutex:
            if not passed and part.gate_open:  # opened as the wait ran out
                passed = part.gate.acquire(blocking=False)
            if passed:
                part.gate_open = False
            if self._running is part.ctx and passed:
                return
            if self.abandoned is not None:
                raise Abandoned(self.abandoned)
            if self.deadlock is None:
                self.deadlock = self._report(
                    f"{part.ctx.name} waited {self.turn_timeout:g}s for its turn "
                    "with no step taken by any participant"
                )
                self._open_all()
            raise DeadlockError(self.deadlock, dumped=True)

    def _wait_on(self, part: _Participant, mark: int, tick: float) -> bool:
        """The first ``tick`` of a wait for the turn ran out: wait on, one tick at a
        time, while the run takes steps. True once the gate opens; False after
        ``_TICKS`` ticks in a row (``turn_timeout``) in which nobody took a step.

        ``mark`` is the count of steps when the wait began (read without the mutex:
        an older count only makes the first check see progress, never a stall).
        """
        idle = 1
        while True:
            with self._mutex:
                steps = len(self.steps)
            if steps != mark:
                mark, idle = steps, 0
            elif idle >= _TICKS:
                return False
            if part.gate.acquire(timeout=tick):
                return True
            idle += 1

    def _finish(self, part: _Participant) -> None:
        with self._mutex:
            part.state = _State.DONE
            if self._running is part.ctx or self._running is None:
                self._schedule_next(part.ctx)
            report = (
                isinstance(part.error, DeadlockError) and not self._deadlock_reported
            )
            if report:
                self._deadlock_reported = True
        if report:
            # The report without stacks: they differ from run to run, and replay
            # files and JSON keep the message; the error keeps them.
            with bind(part.ctx):
                self.bus.violation(
                    ViolationKind.DEADLOCK,
                    "controlled",
                    self._summary or str(part.error),
                )


class RoundRobin:
    """Switch to the next runnable participant (in spawn order) at every point."""

    def pick(
        self,
        ready: Sequence[ExecContext],
        last: ExecContext | None,
        driver: ControlledDriver,
    ) -> ExecContext | None:
        return next_after(ready, last, driver)


def next_after(
    ready: Sequence[ExecContext], last: ExecContext | None, driver: ControlledDriver
) -> ExecContext:
    """The first of ``ready`` after ``last`` in spawn order (round-robin's step)."""
    return round_robin([p.ctx for p in driver._order], ready, last)


def round_robin(order: Sequence[T], ready: Sequence[T], last: T | None) -> T:
    """The first of ``ready`` after ``last`` in ``order`` (``ready[0]`` when ``last``
    is not in it): round-robin's step, over contexts or thread names alike."""
    if last is None or last not in order:
        return ready[0]
    i = order.index(last)
    for x in (*order[i + 1 :], *order[: i + 1]):
        if x in ready:
            return x
    return ready[0]
