"""The interaction layer: the one place where Xen model code meets threads.

Mirrors nothing in Xen; it is the seam that ``architecture.md`` calls the one rule.
Every access that two emulated CPUs can race on is an *interaction point*: a load,
store or read-modify-write of a shared field (:class:`~xensched.memory.Cell` and its
kinds: masks, runqueues), a lock attempt or release, a barrier, a critical-section
entry. Each is described by an :class:`Access` record (what it does, to which
:class:`Shared` object, and for a store the value), made *before* the access happens,
and handed to :meth:`Bus._point`, which

1. appends an event to the calling context's recent events (for reports; with
   ``trace_all`` off, loads are left out and only lock attempts are named),
2. hands the record to the active :class:`Driver` (free-running delay injection, the
   controlled one-thread-at-a-time scheduler, ...), which may hold the thread back,
3. hands it to the :class:`Instrument` objects that want points.

A load that nothing would observe (no driver, no memory model, no point instrument, a
trace that leaves loads out) skips the call: the free-running stress harness's hot path.

What happens *after* an access is a *note* (:meth:`Bus._note`), not a point: a lock
acquired, a trylock's result, a critical section left. Notes go to the events and the
instruments (a lock-order checker needs "acquired", a trace must tell a holder from a
waiter), never to the driver: the thread has nothing left to wait for there.

Loads and stores of cells go through ``Bus.memory`` when a :class:`MemoryModel` is
installed; it is also told about barriers and lock acquire and release, and always
learns the calling CPU. A bounded wait of model code (``vcpu_sleep_sync()`` waiting
for ``is_running`` to clear) is :meth:`Bus.wait_until`: the driver's wait, never a
clock or a sleep in the model.

The bus also collects :class:`~xensched.checks.Violation` records: a failed check is
data, never a crash of the harness.
"""

from __future__ import annotations

import enum
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypeVar

from xensched.errors import AssertFailedError, DeadlockError
from xensched.smp import ExecContext, _tls, current_or_none
from xensched.violation import Violation, ViolationKind

if TYPE_CHECKING:
    from collections.abc import Callable

    from xensched.memory import Cell
    from xensched.smp import Event
    from xensched.spinlock import SpinLock

T = TypeVar("T")


class PointKind(enum.Enum):
    """What an access does; the value is what traces print.

    Points (the driver is called before the access): ``LOAD``, ``STORE``, ``RMW``,
    ``LOCK`` (about to spin: the driver may hold a waiter back), ``TRYLOCK`` (about to
    try once), ``UNLOCK``, the barriers, ``ENTER`` (a critical section) and ``WAIT``
    (a bounded wait for a condition). Notes (after the fact, never a
    scheduling point): ``ACQUIRED``, ``TRYLOCK_OK``, ``TRYLOCK_FAILED``, ``EXIT``.
    """

    LOAD = "load"
    STORE = "store"
    RMW = "rmw"  # a read-modify-write (atomic where Xen's is: xchg, set_bit)
    LOCK = "lock"
    ACQUIRED = "acquired"
    TRYLOCK = "trylock"
    TRYLOCK_OK = "trylock-ok"
    TRYLOCK_FAILED = "trylock-failed"
    UNLOCK = "unlock"
    MB = "smp_mb"
    WMB = "smp_wmb"
    RMB = "smp_rmb"
    ENTER = "enter"
    EXIT = "exit"
    WAIT = "wait"
    # smp_load_acquire() / smp_store_release(): a load or store with an ordering.
    LOAD_ACQUIRE = "load-acquire"
    STORE_RELEASE = "store-release"
    # A buffered store becoming visible to the other CPUs: a step of its own under
    # the controlled driver with a store-buffer memory model (xensched.memory_model).
    DRAIN = "drain"


#: Kinds that change the object (for dependence: two accesses to one object
#: conflict when at least one of them is in here).
WRITES = frozenset(
    {
        PointKind.STORE,
        PointKind.STORE_RELEASE,
        PointKind.DRAIN,
        PointKind.RMW,
        PointKind.LOCK,
        PointKind.ACQUIRED,
        PointKind.TRYLOCK,
        PointKind.TRYLOCK_OK,
        PointKind.UNLOCK,
        PointKind.ENTER,
        PointKind.EXIT,
    }
)


class Shared:
    """Anything two emulated CPUs can race on: a field, a mask, a runqueue, a lock.

    ``oid`` is a stable identity: objects are numbered in creation order on their
    bus, so the same scenario under the same schedule numbers them the same way
    (what a replay file and a partial-order reduction compare). ``label`` is what a
    human reads, e.g. ``credit2@p1.rqd[0].runq``.
    """

    __slots__ = ("_bus", "label", "oid")

    def __init__(self, bus: Bus, label: str) -> None:
        self._bus = bus
        self.label = label
        self.oid = bus._new_oid()

    @property
    def bus(self) -> Bus:
        return self._bus


class Access(NamedTuple):
    """One access: what it does, to which object, and for a store the value stored.

    A ``NamedTuple`` rather than a frozen dataclass: one is built at every store, on
    the emulator's hottest path, and a tuple is several times cheaper to make.
    """

    kind: PointKind
    obj: Shared
    value: Any = None

    @property
    def label(self) -> str:
        return self.obj.label

    @property
    def is_write(self) -> bool:
        return self.kind in WRITES

    def conflicts(self, other: Access) -> bool:
        """Dependent: the same object and at least one of the two writes or locks."""
        return self.obj is other.obj and (self.is_write or other.is_write)


# Module constants: a global is cheaper to reach than an enum member or a module
# attribute (hot path).
_now = time.perf_counter_ns
_getframe = sys._getframe


class Driver(Protocol):
    """Decides how threads interleave; called at every interaction point."""

    def point(self, ctx: ExecContext, access: Access) -> None:
        """Called by ``ctx``'s own thread *before* the access it describes."""


class MemoryModel(Protocol):
    """How loads and stores of shared cells are seen: the seam for store buffers.

    ``None`` on the bus (the default) is sequential consistency: a load returns the
    last value stored. ``ctx`` is the calling CPU (``None`` for set-up code outside
    any context, which a model should treat as sequentially consistent).
    """

    def load(self, ctx: ExecContext | None, cell: Cell[T]) -> T:
        """What ``ctx`` reads from ``cell``."""
        ...

    def store(self, ctx: ExecContext | None, cell: Cell[T], value: T) -> None:
        """``ctx`` stores ``value`` to ``cell``."""

    def exchange(
        self, ctx: ExecContext | None, cell: Cell[T], fn: Callable[[T], T]
    ) -> T:
        """An atomic, fully ordered read-modify-write (``xchg``, ``set_bit``):
        store ``fn(old)``, return ``old``. The caller holds the cell's lock."""
        ...

    def load_acquire(self, ctx: ExecContext | None, cell: Cell[T]) -> T:
        """``smp_load_acquire()``: a load that later accesses cannot pass."""
        ...

    def store_release(self, ctx: ExecContext | None, cell: Cell[T], value: T) -> None:
        """``smp_store_release()``: a store that cannot pass earlier accesses."""

    def peek(self, ctx: ExecContext | None, cell: Cell[T]) -> T:
        """What ``ctx`` would read now without reordering (its own buffered store,
        else memory): for checks and reports, never a choice of the model."""
        ...

    def barrier(self, ctx: ExecContext | None, kind: PointKind) -> None:
        """``smp_mb`` / ``smp_wmb`` / ``smp_rmb`` on ``ctx``."""

    def acquire(self, ctx: ExecContext | None, lock: SpinLock) -> None:
        """``ctx`` now holds ``lock`` (an acquire)."""

    def release(self, ctx: ExecContext | None, lock: SpinLock) -> None:
        """``ctx`` is about to release ``lock`` (a release)."""


class Instrument:
    """No-op hooks; subclass and override what you need (trio-style).

    An instrument that raises is removed from the bus, the error is kept in
    :attr:`Bus.instrument_errors` and a ``crash`` violation names the instrument and
    the error (a run whose lockdep or race detector broke is not clean); it never
    breaks the emulation.
    """

    def on_point(self, ctx: ExecContext, access: Access) -> None:
        """Every interaction point (after the driver let it proceed) and every note
        (``ACQUIRED``, ``TRYLOCK_OK``/``FAILED``, ``EXIT``)."""

    def on_violation(self, violation: Violation) -> None:
        """Every recorded violation."""


# Frames of these modules are plumbing; the Xen function of an event is the nearest
# frame outside them.
_PLUMBING = frozenset(
    {
        "xensched.interaction",
        "xensched.memory",
        "xensched.spinlock",
        "xensched.sched_if",
        "xensched.checks",
        "xensched.smp",
    }
)

_WAIT = PointKind.WAIT
_LOCKK = PointKind.LOCK
_TRYK = PointKind.TRYLOCK
_LOADK = PointKind.LOAD
#: How often a free-running bounded wait re-evaluates its condition.
_WAIT_POLL = 0.0005


class Bus:
    """Per-host dispatcher of interaction points, violations and instruments.

    Args:
        lock_timeout: bound, in seconds, of every wait for a lock or a condition
            (the watchdog).
        strict: raise :class:`AssertFailedError` on a failed ``ASSERT``/``BUG_ON``
            instead of recording it and going on (as a non-debug Xen build would).
        trace_all: what each context's trace of recent events (the events a
            violation report shows) keeps. True: every point and note, each named
            after its Xen function. False: loads are left out of the trace and only
            lock attempts are named (who took which lock, from where, is what a
            report must say); other events show ``""``. Naming an event walks the
            stack, which makes a frame object for the model function and costs as
            much as the rest of the point; recording a load doubles the events.
            Drivers, instruments and the memory model see every access either way.
            Hosts trace everything by default; the stress harness, whose figure of
            merit is ``schedule()`` throughput, does not.
    """

    def __init__(
        self,
        *,
        lock_timeout: float = 10.0,
        strict: bool = False,
        trace_all: bool = True,
    ) -> None:
        # Read on the hot path, so plain attributes; set through the properties,
        # which keep `_unobserved_loads` true exactly when nothing would see a load.
        self._trace_all = trace_all
        self._driver: Driver | None = None
        self._memory: MemoryModel | None = None
        self._unobserved_loads = False
        # A load makes a point (something sees it); without one, a memory model
        # still answers it.
        self._load_points = True
        self.lock_timeout = lock_timeout
        self.strict = strict
        self._instruments: list[Instrument] = []
        # The instruments that override on_point: the only ones point() calls.
        self._point_instruments: list[Instrument] = []
        self.instrument_errors: list[BaseException] = []
        self._meta = threading.Lock()  # guards the lists below, never held long
        self._violations: list[Violation] = []
        # Bounds for long runs (the stress harness sets them; a plain host keeps
        # all): the first `max_violations` violations are kept in full (None: no
        # bound), plus the first of each kind, so that a report always has an
        # example of every kind; the rest are only counted, by kind. Each keeps the
        # last `max_events` events. A --keep-going run finds tens of thousands.
        self.max_violations: int | None = None
        self.max_events = 24
        self._kept_kinds: set[ViolationKind] = set()
        self._dropped: dict[ViolationKind, int] = {}
        self._oids = 0
        #: While not None, ``Cell.peek()`` appends its cell here: the controlled
        #: driver learns what a wake condition reads.
        self._peeks: list[Any] | None = None
        self.locks: list[SpinLock] = []
        self.contexts: list[ExecContext] = []
        self._retune()

    # -- what observes the points --------------------------------------------------

    @property
    def driver(self) -> Driver | None:
        """The active driver (``None``: threads run as the OS schedules them)."""
        return self._driver

    @driver.setter
    def driver(self, driver: Driver | None) -> None:
        with self._meta:  # as add_instrument retunes: one retune at a time
            self._driver = driver
            self._retune()

    @property
    def memory(self) -> MemoryModel | None:
        """The memory model (``None``: sequential consistency)."""
        return self._memory

    @memory.setter
    def memory(self, memory: MemoryModel | None) -> None:
        with self._meta:  # as add_instrument retunes: one retune at a time
            self._memory = memory
            self._retune()

    @property
    def trace_all(self) -> bool:
        return self._trace_all

    @trace_all.setter
    def trace_all(self, on: bool) -> None:
        with self._meta:
            self._trace_all = on
            self._retune()

    def _retune(self) -> None:
        """With ``_meta`` held (but in ``__init__``): a load nobody observes (no
        driver, no memory model, no instrument that takes points, and a trace that
        leaves loads out) is a plain read: its point would do nothing, so a cell
        skips it. The stress harness's hot path."""
        self._load_points = bool(
            self._driver is not None
            or self._trace_all
            or any(getattr(i, "wants_loads", True) for i in self._point_instruments)
        )
        self._unobserved_loads = self._memory is None and not self._load_points

    # -- registration -------------------------------------------------------------

    def add_instrument(self, inst: Instrument) -> None:
        with self._meta:
            self._set_instruments([*self._instruments, inst])

    def remove_instrument(self, inst: Instrument) -> None:
        with self._meta:
            self._set_instruments([i for i in self._instruments if i is not inst])

    def _instrument_crashed(self, inst: Instrument, hook: str, exc: Exception) -> None:
        """``inst`` raised in ``hook``: remove it, keep the error in
        :attr:`instrument_errors` and record a ``crash`` violation naming it, so that
        a broken lockdep or race detector fails the run instead of leaving it clean
        (it checks nothing more). The emulation goes on. Once per instrument: a
        second error from it (another thread was in it) is only kept."""
        with self._meta:
            self.instrument_errors.append(exc)
            present = any(i is inst for i in self._instruments)
            if present:
                self._set_instruments([i for i in self._instruments if i is not inst])
        if present:
            name = type(inst).__name__
            self.violation(
                ViolationKind.CRASH,
                f"{name}.{hook}",
                f"instrument {name} raised {type(exc).__name__}: {exc} "
                "(removed: it checks nothing more in this run)",
            )

    def _set_instruments(self, insts: list[Instrument]) -> None:
        """With ``_meta`` held: replace both lists (never mutated in place)."""
        self._instruments = insts
        self._point_instruments = [
            i for i in insts if type(i).on_point is not Instrument.on_point
        ]
        self._retune()

    def _new_oid(self) -> int:
        """The next object identity on this bus (see :class:`Shared`)."""
        with self._meta:
            self._oids += 1
            return self._oids

    def register_lock(self, lock: SpinLock) -> int:
        """Keep ``lock`` for deadlock reports; returns its creation rank."""
        with self._meta:
            self.locks.append(lock)
            return len(self.locks) - 1

    def new_context(self, name: str, cpu: int | None) -> ExecContext:
        """A new execution context; its name is made unique on this bus.

        Lock ownership and reports go by name, so two contexts never share one: a
        taken name gets a ``#2``, ``#3``... suffix.
        """
        with self._meta:
            taken = {c.name for c in self.contexts}
            unique, n = name, 1
            while unique in taken:
                n += 1
                unique = f"{name}#{n}"
            ctx = ExecContext(self, unique, cpu)
            self.contexts.append(ctx)
        ctx.fence = Shared(self, f"fence@{unique}")
        return ctx

    # -- interaction points -------------------------------------------------------

    def point(self, access: Access) -> None:
        """An interaction point of the calling context, before ``access``."""
        self._point(access, 3)

    def _point(self, access: Access, depth: int) -> None:
        """``point()`` for callers ``depth - 2`` plumbing frames above it.

        The hot path of the emulator (every lock, load, store): kept flat on purpose,
        ``kind._value_`` instead of the slower ``kind.value`` property.
        """
        # current_or_none(), inlined: one call less at every point.
        ctx: ExecContext | None = getattr(_tls, "ctx", None)
        if ctx is None or ctx.bus is not self:
            # Setup code outside any emulated CPU (tests poking at state): no event.
            return
        # The innermost Xen model function on the stack names the event. Hot path:
        # ``sys._getframe(d)`` creates a frame object only for the frame it returns,
        # where walking ``f_back`` creates one for every plumbing frame on the way.
        # ``depth`` counts from our caller's frame, hence one less here.
        kind = access[0]
        if self._trace_all or kind is _LOCKK or kind is _TRYK:
            getframe = _getframe
            d = depth - 1
            try:
                f = getframe(d)
                while f.f_globals.get("__name__") in _PLUMBING:
                    d += 1
                    f = getframe(d)
                fn = f.f_code.co_name
            except ValueError:  # ran off the bottom of the stack
                fn = "?"
            ctx.events.append((_now(), access, fn))
        elif kind is not _LOADK:
            ctx.events.append((_now(), access, ""))
        drv = self._driver
        if drv is not None:
            drv.point(ctx, access)
        insts = self._point_instruments
        if insts:
            self._dispatch_point(insts, ctx, access)

    def _note(self, access: Access) -> None:
        """After the fact (``ACQUIRED``, a trylock's result, ``EXIT``): an event and
        the instruments, never the driver. The Xen function is the last point's: a
        note always follows a point of the same call."""
        ctx: ExecContext | None = getattr(_tls, "ctx", None)
        if ctx is None or ctx.bus is not self:
            return
        events = ctx.events
        fn = events[-1][2] if events else "?"
        events.append((_now(), access, fn))
        insts = self._point_instruments
        if insts:
            self._dispatch_point(insts, ctx, access)

    def _dispatch_point(
        self, insts: list[Instrument], ctx: ExecContext, access: Access
    ) -> None:
        for inst in insts:
            try:
                inst.on_point(ctx, access)
            except Exception as exc:  # an instrument never breaks the emulation
                self._instrument_crashed(inst, "on_point", exc)

    # -- bounded waits ---------------------------------------------------------------

    def wait_until(
        self, pred: Callable[[], bool], what: str, obj: Shared | None = None
    ) -> None:
        """Block the calling context until ``pred()`` holds: the model's only wait.

        ``pred`` only reads state (it is plumbing: it may ``peek()``), and the cells
        it peeks, with the end of other threads, are all it may depend on: the
        controlled driver takes a wake whose condition peeked one cell to depend on
        writes to that cell only (a predicate that reads plain attributes must peek
        no cell, so that its wake depends on every write); ``what`` says what is
        awaited, for reports; ``obj`` is the object waited on (each check is
        a ``WAIT`` point on it). A driver with a ``wait_until(ctx, pred, what)`` of
        its own decides (the controlled driver parks the thread until ``pred``
        holds); otherwise the condition is polled. Bounded by ``lock_timeout``.

        Raises:
            DeadlockError: ``pred()`` did not hold in time (a ``deadlock`` violation
                is recorded; the error carries the full report, :meth:`deadlock`).
        """
        ctx = current_or_none()
        waiter = getattr(self.driver, "wait_until", None)
        if waiter is not None and ctx is not None and ctx.bus is self:
            waiter(ctx, pred, what)
            if obj is not None:
                self._note(Access(_WAIT, obj))  # what held: seen (race detector)
            return
        if ctx is not None:
            _flush_own(self._memory, ctx)
        deadline = time.monotonic() + self.lock_timeout
        tick = getattr(self._memory, "tick", None)  # other CPUs' stores come due
        while not pred():
            if tick is not None:
                tick()
                if pred():
                    break
            if obj is not None:
                self._point(Access(_WAIT, obj), 3)
            if time.monotonic() > deadline:
                name = ctx.name if ctx is not None else "?"
                msg = f"{name} waited {self.lock_timeout:g}s for {what}"
                raise self.deadlock("wait_until", msg)
            time.sleep(_WAIT_POLL)
        if obj is not None:
            self._note(Access(_WAIT, obj))

    def deadlock(self, where: str, message: str) -> DeadlockError:
        """A bounded wait of the calling context ran out in ``where``: returns the
        :class:`DeadlockError` to raise, whose report is ``message`` (one line: who
        waited for what) then :func:`xensched.diagnostics.deadlock_report`'s dump,
        and records a ``deadlock`` violation with ``message``.

        The dump is taken first, while the other threads are still as they were (an
        instrument told of the violation may let them go); it costs a few
        milliseconds, once per deadlock, never on the hot path.
        """
        # Imported here: diagnostics reads the bus (a cycle at import time), and
        # only a deadlock needs it.
        from xensched.diagnostics import deadlock_report

        report = deadlock_report(self, message)
        self.violation(ViolationKind.DEADLOCK, where, message)
        return DeadlockError(report, dumped=True)

    # -- violations ---------------------------------------------------------------

    def violation(
        self,
        kind: ViolationKind,
        where: str,
        message: str,
        cpu: int | None = None,
    ) -> Violation:
        """Record a failed check with the recent events of every context."""
        ctx = current_or_none()
        if cpu is None and ctx is not None:
            cpu = ctx.cpu
        v = Violation(
            kind=kind,
            cpu=cpu,
            where=where,
            message=message,
            context=ctx.name if ctx is not None else "-",
            events=self.recent_events(self.max_events) if self.max_events > 0 else (),
        )
        with self._meta:
            cap = self.max_violations
            if (
                cap is None
                or len(self._violations) < cap
                or kind not in self._kept_kinds
            ):
                self._violations.append(v)
                self._kept_kinds.add(kind)
            else:
                self._dropped[kind] = self._dropped.get(kind, 0) + 1
            insts = self._instruments
        crashed: list[tuple[Instrument, Exception]] = []
        for inst in insts:
            try:
                inst.on_violation(v)
            except Exception as exc:
                crashed.append((inst, exc))
        # After every instrument saw ``v``: the crash is a violation of its own.
        for inst, err in crashed:
            self._instrument_crashed(inst, "on_violation", err)
        if self.strict and kind is ViolationKind.ASSERT:
            raise AssertFailedError(f"{where}: {message}")
        return v

    def recent_events(self, limit: int = 24) -> tuple[Event, ...]:
        """The last ``limit`` events across all contexts, oldest first."""
        merged: list[Event] = []
        with self._meta:
            ctxs = list(self.contexts)
        for c in ctxs:
            # A context's newest events are its last ones: no more than ``limit``
            # of them can be among the newest of all.
            merged.extend(c.recent_events(limit))
        merged.sort()
        return tuple(merged[-limit:])

    @property
    def violations(self) -> list[Violation]:
        """The violations kept in full, oldest first (see ``max_violations``)."""
        with self._meta:
            return list(self._violations)

    @property
    def dropped_violations(self) -> dict[ViolationKind, int]:
        """How many violations past ``max_violations`` were counted only, by kind."""
        with self._meta:
            return dict(self._dropped)

    def clear_violations(self) -> None:
        with self._meta:
            self._violations.clear()
            self._kept_kinds.clear()
            self._dropped.clear()


def _flush_own(memory: MemoryModel | None, ctx: ExecContext) -> None:
    """A CPU about to wait (free-running) lets its store buffer drain first: a
    waiting CPU that kept its stores could wait forever for a CPU that waits for
    them, where hardware drains a buffer in bounded time."""
    flush = getattr(memory, "flush", None)
    if flush is not None:
        flush(ctx)
