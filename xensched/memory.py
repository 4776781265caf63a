"""Shared fields of the emulated host and the barriers that order them.

Mirrors: plain loads/stores of shared fields in Xen C code, the atomic bit operations
on ``cpumask_t`` (``cpumask_set_cpu()``, ``cpumask_clear_cpu()``), ``xchg()``, list
manipulation of runqueues under their lock, and ``smp_mb()``, ``smp_wmb()``,
``smp_rmb()`` (xen/include/asm-x86/system.h).

Every field that more than one CPU touches is a :class:`Cell` (or one of its kinds:
:class:`CpuMask`, :class:`RunQueue`): model code reads it with ``load()``, writes it
with ``store(v)``, and changes it with ``update(fn)`` (a plain read-modify-write, as
list manipulation under a lock is) or ``exchange(fn)`` (atomic and fully ordered, as
``xchg``/``set_bit`` are). Each is one interaction point of the host's
:class:`~xensched.interaction.Bus`, made before the access, with an
:class:`~xensched.interaction.Access` record naming the cell; each goes through
``bus.memory`` when a :class:`~xensched.interaction.MemoryModel` is installed. With none,
the model is sequentially consistent and barriers are interaction points and nothing
more.

Values held in cells are immutable (ints, frozensets, tuples, model objects): a
runqueue is a tuple replaced on every change, so a snapshot another CPU loaded never
changes under it, and no Python container is shared between threads.

``peek()`` reads without an interaction point: only checks, reports, the harness and
the predicates of bounded waits use it, never model logic. ``wait_until(pred, what)``
is the model's one way to wait for a cell (``vcpu_sleep_sync()``), a driver's wait.

``load()`` and ``store()`` are ``READ_ONCE()`` and ``WRITE_ONCE()``: every access here
is single-copy atomic, and the compiler is not emulated. :func:`smp_load_acquire` and
:func:`smp_store_release` are the ordered forms, :func:`xchg` and :func:`cmpxchg` the
fully ordered read-modify-writes. Under a store-buffer memory model
(:mod:`xensched.memory_model`) a fully ordered read-modify-write is a full barrier
point followed by the access, as Arm builds ``xchg`` from ``dmb`` and an exclusive pair.

Left out: dependency ordering (address, data and control dependencies order nothing).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Generic, NamedTuple, TypeVar

from xensched.interaction import Access, PointKind, Shared
from xensched.smp import _tls, current

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from xensched.interaction import Bus
    from xensched.smp import ExecContext

T = TypeVar("T")
E = TypeVar("E")

_LOAD = PointKind.LOAD
_new_access = tuple.__new__
_STORE = PointKind.STORE
_RMW = PointKind.RMW

# Atomic read-modify-writes of cells are made atomic by a small pool of striped locks
# (emulator bookkeeping), not one lock per cell: a host has thousands of cells.
_STRIPES = 64
_STRIPE_LOCKS = tuple(threading.Lock() for _ in range(_STRIPES))
#: The value of a fully ordered read-modify-write's access record (a plain one has
#: none), so that instruments can tell ``xchg`` from a read-modify-write under a lock.
_ATOMIC = "atomic"
#: The value of the access record of a load marked :func:`data_race`.
_DATA_RACE = "data_race"


class BitOp(NamedTuple):
    """The value of an atomic bit operation's access record (``cpumask_set_cpu()``,
    ``cpumask_clear_cpu()``): which bit, and whether it is set or cleared.

    Two of them on different bits of one mask, or both setting (both clearing) one
    bit, commute: either order leaves the same mask and neither returns anything, so
    exploration takes them as independent (:func:`xensched.explore.base.independent`).
    """

    cpu: int
    set: bool

    def __str__(self) -> str:
        return f"{'set' if self.set else 'clear'} bit {self.cpu}"


def _ctx() -> ExecContext | None:
    ctx: ExecContext | None = getattr(_tls, "ctx", None)
    return ctx


class Cell(Shared, Generic[T]):
    """One shared memory location of the emulated host."""

    __slots__ = ("_racy_rd", "_rd", "_rmw", "_xchg", "racy", "value")

    def __init__(
        self, bus: Bus, label: str, value: T, *, racy: str | None = None
    ) -> None:
        super().__init__(bus, label)
        self.value = value
        #: Why Xen reads this field without ordering, on purpose (``None``: it does
        #: not): the race detector's declaration (:mod:`xensched.race_detector`).
        self.racy = racy
        # The access records of a load and of a read-modify-write never change: made
        # once here rather than at every point, with tuple.__new__ (a host is built
        # for every controlled execution; the NamedTuple constructor is a Python
        # call, and these were a fifth of the build).
        self._rd = _new_access(Access, (_LOAD, self, None))
        self._rmw = _new_access(Access, (_RMW, self, None))
        self._xchg = _new_access(Access, (_RMW, self, _ATOMIC))
        self._racy_rd = _new_access(Access, (_LOAD, self, _DATA_RACE))

    # Bus._point() called directly (Bus.point() is one call more): these run at most
    # interaction points.
    def load(self) -> T:
        bus = self._bus
        if bus._unobserved_loads:  # nothing would see the point: a plain read
            return self.value
        # _observed_load(), inlined: the call cost a controlled run 10-20% of its
        # points per second (DPOR on round-trip, measured against the inline form).
        mem = bus._memory
        if not bus._load_points:  # only the memory model answers (see Bus._retune)
            return mem.load(_ctx(), self)  # type: ignore[union-attr]
        bus._point(self._rd, 3)
        return self.value if mem is None else mem.load(_ctx(), self)

    def _observed_load(self, access: Access) -> T:
        """A load something sees: a point (unless only the memory model would see
        it, see ``Bus._retune``), then the value, through the model if any."""
        bus = self._bus
        mem = bus._memory
        if not bus._load_points:
            return mem.load(_ctx(), self)  # type: ignore[union-attr]
        bus._point(access, 4)
        return self.value if mem is None else mem.load(_ctx(), self)

    def store(self, value: T) -> None:
        bus = self._bus
        bus._point(Access(_STORE, self, value), 3)
        mem = bus._memory
        if mem is None:
            self.value = value
        else:
            mem.store(_ctx(), self, value)

    def update(self, fn: Callable[[T], T], _depth: int = 3) -> T:
        """A plain read-modify-write (not atomic: what a lock protects); returns the
        new value. (``_depth``: plumbing frames above the model caller, plus 2.)"""
        bus = self._bus
        bus._point(self._rmw, _depth)
        mem = bus._memory
        if mem is None:
            new = self.value = fn(self.value)
            return new
        ctx = _ctx()
        new = fn(mem.load(ctx, self))
        mem.store(ctx, self, new)
        return new

    def exchange(
        self, fn: Callable[[T], T], _depth: int = 3, _access: Access | None = None
    ) -> T:
        """An atomic, fully ordered read-modify-write (``xchg``, ``test_and_set_bit``):
        stores ``fn(old)``; returns ``old``. (``_access``: the point's record, when
        it says more than "atomic", as a bit operation's does.)

        Atomic against other exchanges of the cell (they share a stripe lock), not
        against a plain :meth:`store` racing with it, which a real ``xchg`` would
        order: no field of the model is both exchanged and plainly stored."""
        bus = self._bus
        mem = bus._memory
        if mem is not None and _ctx() is not None:
            # Fully ordered: earlier stores drain first (a CPU of a store-buffer
            # model waits at this point until its buffer is empty).
            _barrier(_MB, _depth + 1)
        bus._point(self._xchg if _access is None else _access, _depth)
        with _STRIPE_LOCKS[self.oid % _STRIPES]:
            if mem is None:
                old = self.value
                self.value = fn(old)
                return old
            return mem.exchange(_ctx(), self, fn)

    def wait_until(self, pred: Callable[[T], bool], what: str) -> None:
        """Wait (bounded, the driver's wait) until ``pred(value)`` holds."""
        self._bus.wait_until(lambda: pred(self.value), what, self)

    def peek(self) -> T:
        """Read for a check, a report or the harness: no interaction point, no event.

        Under a store-buffer memory model, the calling CPU sees its own buffered
        store, as its next load would; anyone else sees memory.
        """
        bus = self._bus
        peeks = bus._peeks
        if peeks is not None:
            peeks.append(self)
        mem = bus._memory
        return self.value if mem is None else mem.peek(_ctx(), self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.label}={self.value!r}>"


class CpuMask(Cell[frozenset[int]]):
    """A shared ``cpumask_t``: bit operations are atomic, as Xen's ``set_bit`` is."""

    __slots__ = ()

    def __init__(
        self,
        bus: Bus,
        label: str,
        cpus: Iterable[int] = frozenset(),
        *,
        racy: str | None = None,
    ) -> None:
        super().__init__(bus, label, frozenset(cpus), racy=racy)

    def test(self, cpu: int) -> bool:
        """``cpumask_test_cpu()``."""
        # Cell.load(), inlined: the point must name test()'s caller in one step.
        bus = self._bus
        if bus._unobserved_loads:
            return cpu in self.value
        mem = bus._memory
        if not bus._load_points:
            return cpu in mem.load(_ctx(), self)  # type: ignore[union-attr]
        bus._point(self._rd, 3)
        return cpu in (self.value if mem is None else mem.load(_ctx(), self))

    def set(self, cpu: int) -> None:
        """``cpumask_set_cpu()``."""
        self.exchange(
            lambda bits: bits | {cpu},
            4,
            _new_access(Access, (_RMW, self, BitOp(cpu, True))),
        )

    def clear(self, cpu: int) -> None:
        """``cpumask_clear_cpu()``."""
        self.exchange(
            lambda bits: bits - {cpu},
            4,
            _new_access(Access, (_RMW, self, BitOp(cpu, False))),
        )

    def __repr__(self) -> str:
        return f"<CpuMask {self.label}={sorted(self.value)}>"


class RunQueue(Cell[tuple[E, ...]]):
    """A shared list (a runqueue, a list of domains): a tuple, replaced on change.

    Reads and changes are accesses of this object; changes are plain
    read-modify-writes, as Xen's list manipulation under the runqueue lock is, so a
    broken lock shows as a lost update, not as a corrupted Python list.
    """

    __slots__ = ()

    def __init__(
        self, bus: Bus, label: str, items: Iterable[E] = (), *, racy: str | None = None
    ) -> None:
        super().__init__(bus, label, tuple(items), racy=racy)

    def insert(self, pos: int, item: E) -> None:
        self.update(lambda q: (*q[:pos], item, *q[pos:]), 4)

    def append(self, item: E) -> None:
        self.update(lambda q: (*q, item), 4)

    def remove(self, item: E) -> bool:
        """Remove ``item`` if there; returns whether it was (one access either way)."""
        found = False

        def without(q: tuple[E, ...]) -> tuple[E, ...]:
            nonlocal found
            found = item in q
            return tuple(x for x in q if x is not item) if found else q

        self.update(without, 4)
        return found


def inc(n: int) -> int:
    """``n + 1``, for :meth:`Cell.update` of a counter (``cell.update(inc)``)."""
    return n + 1


def dec(n: int) -> int:
    """``n - 1``, for :meth:`Cell.update` of a counter."""
    return n - 1


_MB = PointKind.MB
_WMB = PointKind.WMB
_RMB = PointKind.RMB


def _barrier(kind: PointKind, _depth: int = 4) -> None:
    ctx = current()
    bus = ctx.bus
    bus._point(Access(kind, ctx.fence), _depth)
    mem = bus._memory
    if mem is not None:
        mem.barrier(ctx, kind)


def smp_mb() -> None:
    """Full barrier."""
    _barrier(_MB)


def smp_wmb() -> None:
    """Store-store barrier."""
    _barrier(_WMB)


def smp_rmb() -> None:
    """Load-load barrier."""
    _barrier(_RMB)


_ACQ = PointKind.LOAD_ACQUIRE
_REL = PointKind.STORE_RELEASE


def smp_load_acquire(cell: Cell[T]) -> T:
    """``smp_load_acquire()``: no later load or store of this CPU passes it."""
    bus = cell._bus
    bus._point(Access(_ACQ, cell), 3)
    mem = bus._memory
    return cell.value if mem is None else mem.load_acquire(_ctx(), cell)


def smp_store_release(cell: Cell[T], value: T) -> None:
    """``smp_store_release()``: no earlier load or store of this CPU passes it."""
    bus = cell._bus
    bus._point(Access(_REL, cell, value), 3)
    mem = bus._memory
    if mem is None:
        cell.value = value
    else:
        mem.store_release(_ctx(), cell, value)


def xchg(cell: Cell[T], value: T) -> T:
    """``xchg()``: store ``value``, return the old one; atomic and fully ordered."""
    return cell.exchange(lambda _old: value, 4)


def cmpxchg(cell: Cell[T], old: T, new: T) -> T:
    """``cmpxchg()``: store ``new`` if the value is ``old``; returns the value found.

    Fully ordered whether or not it stores (stronger than the kernel's, whose failed
    ``cmpxchg`` orders nothing).
    """
    return cell.exchange(lambda cur: new if cur == old else cur, 4)


def data_race(cell: Cell[T]) -> T:
    """A load that Xen makes racily on purpose *here* (Linux's ``data_race()``): the
    race detector does not check it, while the field's other accesses stay checked.

    For a read whose race is by design at one place only, as the read of the lock
    pointer before taking the lock it names (re-read under it: the retry-on-change
    of ``sched-if.h``); a field read racily everywhere is declared on the field
    (``Cell(racy=)``) instead.
    """
    if cell._bus._unobserved_loads:
        return cell.value
    return cell._observed_load(cell._racy_rd)
