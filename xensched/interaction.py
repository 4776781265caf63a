"""The interaction layer: the one place where Xen model code meets threads.

Mirrors nothing in Xen; it is the seam that ``architecture.md`` calls the one rule.
Every *interaction point* of the emulated host (a lock acquire, trylock or release, a
load or store of a shared field, a barrier, an explicit preemption point) calls
:meth:`Bus.point`. The bus records the point in the calling context's recent events and
hands it to the active :class:`Driver` (free-running delay injection, the controlled
one-thread-at-a-time scheduler, ...) and to the :class:`Instrument` objects. Loads and
stores of shared cells (:class:`~xensched.memory.Cell`) go through ``Bus.memory``
when a :class:`MemoryModel` is installed, so that store buffers can later replace the
plain access without touching the Xen model.

The bus also collects :class:`~xensched.checks.Violation` records: a failed check is
data, never a crash of the harness.
"""

from __future__ import annotations

import enum
import sys
import threading
import time
from typing import TYPE_CHECKING, Protocol, TypeVar

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
    """What an interaction point does; the value is what traces print."""

    LOCK = "lock"  # about to spin on a lock (the driver may hold us back)
    TRYLOCK = "trylock"
    UNLOCK = "unlock"
    LOAD = "load"
    STORE = "store"
    BARRIER = "barrier"
    PREEMPT = "preempt"  # an explicit point where Xen could be interrupted


# Module constants: a global is cheaper to reach than an enum member or a module
# attribute (hot path).
_now = time.perf_counter_ns
_getframe = sys._getframe


class Driver(Protocol):
    """Decides how threads interleave; called at every interaction point."""

    def point(
        self, ctx: ExecContext, kind: PointKind, label: str, lock: SpinLock | None
    ) -> None:
        """Called by ``ctx``'s own thread *before* the access it describes."""


class MemoryModel(Protocol):
    """How loads and stores of shared cells are seen: the seam for store buffers.

    ``None`` on the bus (the default) is sequential consistency: a load returns the
    last value stored.
    """

    def load(self, cell: Cell[T]) -> T:
        """What the calling CPU reads from ``cell``."""
        ...

    def store(self, cell: Cell[T], value: T) -> None:
        """The calling CPU stores ``value`` to ``cell``."""


class Instrument:
    """No-op hooks; subclass and override what you need (trio-style).

    An instrument that raises is removed from the bus and the error is kept in
    :attr:`Bus.instrument_errors`; it never breaks the emulation.
    """

    def on_point(self, ctx: ExecContext, kind: PointKind, label: str) -> None:
        """Every interaction point, after the driver let it proceed."""

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


class Bus:
    """Per-host dispatcher of interaction points, violations and instruments.

    Args:
        lock_timeout: bound, in seconds, of every wait for a lock (the watchdog).
        strict: raise :class:`AssertFailedError` on a failed ``ASSERT``/``BUG_ON``
            instead of recording it and going on (as a non-debug Xen build would).
    """

    def __init__(self, *, lock_timeout: float = 10.0, strict: bool = False) -> None:
        self.driver: Driver | None = None
        self.memory: MemoryModel | None = None
        self.lock_timeout = lock_timeout
        self.strict = strict
        self._instruments: list[Instrument] = []
        # The instruments that override on_point: the only ones point() calls.
        self._point_instruments: list[Instrument] = []
        self.instrument_errors: list[BaseException] = []
        self._meta = threading.Lock()  # guards the lists below, never held long
        self._violations: list[Violation] = []
        self.locks: list[SpinLock] = []
        self.contexts: list[ExecContext] = []

    # -- registration -------------------------------------------------------------

    def add_instrument(self, inst: Instrument) -> None:
        with self._meta:
            self._set_instruments([*self._instruments, inst])

    def remove_instrument(self, inst: Instrument) -> None:
        with self._meta:
            self._set_instruments([i for i in self._instruments if i is not inst])

    def _set_instruments(self, insts: list[Instrument]) -> None:
        """With ``_meta`` held: replace both lists (never mutated in place)."""
        self._instruments = insts
        self._point_instruments = [
            i for i in insts if type(i).on_point is not Instrument.on_point
        ]

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
        return ctx

    # -- interaction points -------------------------------------------------------

    def point(self, kind: PointKind, label: str, lock: SpinLock | None = None) -> None:
        self._point(kind, label, lock, 3)

    def _point(
        self, kind: PointKind, label: str, lock: SpinLock | None, depth: int
    ) -> None:
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
        ctx.events.append((_now(), ctx.name, kind._value_, label, fn))
        drv = self.driver
        if drv is not None:
            drv.point(ctx, kind, label, lock)
        insts = self._point_instruments
        if insts:
            self._dispatch_point(insts, ctx, kind, label)

    def _dispatch_point(
        self,
        insts: list[Instrument],
        ctx: ExecContext,
        kind: PointKind,
        label: str,
    ) -> None:
        for inst in insts:
            try:
                inst.on_point(ctx, kind, label)
            except Exception as exc:  # an instrument never breaks the emulation
                self.instrument_errors.append(exc)
                self.remove_instrument(inst)

    # -- bounded waits ------------------------------------------------------------

    def wait_until(self, pred: Callable[[], bool], what: str) -> None:
        """Block the calling context until ``pred()`` holds; ``pred`` only reads state.

        Bounded by ``lock_timeout``: :class:`~xensched.errors.DeadlockError` after it.
        A driver that schedules threads itself (the controlled one) parks the thread
        until ``pred`` holds; otherwise this polls.
        """
        drv = self.driver
        ctx = current_or_none()
        wait = getattr(drv, "wait_until", None)
        if wait is not None and ctx is not None and ctx.bus is self:
            wait(ctx, pred, what)
            return
        deadline = time.monotonic() + self.lock_timeout
        while not pred():
            if time.monotonic() > deadline:
                name = ctx.name if ctx is not None else "?"
                raise DeadlockError(f"{name} waited {self.lock_timeout:g}s for {what}")
            time.sleep(0.0005)

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
            events=self.recent_events(),
        )
        with self._meta:
            self._violations.append(v)
            insts = self._instruments
        for inst in insts:
            try:
                inst.on_violation(v)
            except Exception as exc:
                self.instrument_errors.append(exc)
                self.remove_instrument(inst)
        if self.strict and kind is ViolationKind.ASSERT:
            raise AssertFailedError(f"{where}: {message}")
        return v

    def recent_events(self, limit: int = 24) -> tuple[Event, ...]:
        """The last ``limit`` events across all contexts, oldest first."""
        merged: list[Event] = []
        with self._meta:
            ctxs = list(self.contexts)
        for c in ctxs:
            merged.extend(c.recent_events())
        merged.sort()
        return tuple(merged[-limit:])

    @property
    def violations(self) -> list[Violation]:
        with self._meta:
            return list(self._violations)

    def clear_violations(self) -> None:
        with self._meta:
            self._violations.clear()
