"""A happens-before data-race detector over the access records, as an instrument.

Mirrors nothing in Xen: it is ThreadSanitizer's and KCSAN's job done on the emulated
host (the algorithm is FastTrack's, Flanagan and Freund, PLDI 2009, with full vector
clocks where epochs do not pay in Python). Every CPU (and toolstack context) has a
vector clock; happens-before comes from

- a lock: its release publishes the releaser's clock, its acquisition (or a
  successful trylock) joins it;
- a fully ordered read-modify-write (``xchg``, ``set_bit``: ``Cell.exchange``), which
  is both an acquire and a release of its field;
- ``smp_store_release`` (a release of its field) and ``smp_load_acquire`` (an acquire);
- barriers, as C11 fences: a store after an ``smp_wmb``/``smp_mb`` publishes the clock
  of that barrier on its field, and a load followed by ``smp_rmb``/``smp_mb`` joins
  what it read at the barrier; a completed bounded wait (``vcpu_sleep_sync`` on
  ``is_running``) counts as such a load and barrier, as Xen's polling loop is;
- the start of the run: everything set-up wrote happens before every thread.

Every load, store and plain read-modify-write of a :class:`~xensched.memory.Cell` is a
plain access (the model writes ``READ_ONCE``/``WRITE_ONCE`` nowhere on its own): two
accesses to one field from different contexts, at least one a write, neither
happening before the other, are a ``data-race`` violation naming both accesses, with
their context, Xen function and the locks held at each. Fully ordered
read-modify-writes and acquire/release accesses are *marked*: they never race with
each other, only with plain accesses.

What Xen reads racily on purpose is declared on the field (``Cell(..., racy=REASON)``,
one declaration per field, as Linux marks a read ``data_race()`` or ``READ_ONCE``): a
plain read of such a field races with nothing, its writes still race with each other.
A read racy at one place only is marked there, :func:`xensched.memory.data_race`
(the lock pointer read before the lock it names, re-read under it): that read is not
checked, the field's other accesses are.

Each pair (field, two Xen functions) is reported once. Loads must be points for the
detector to see them: installing it makes every load one (``wants_loads``), which
costs throughput; it is off unless asked for.

Left out: thread creation and join inside a run (the model's threads start together,
after set-up, and nothing but checks runs after them).
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from xensched.interaction import _PLUMBING as _BUS_PLUMBING, Instrument, PointKind
from xensched.memory import _ATOMIC, _DATA_RACE, BitOp
from xensched.violation import ViolationKind

if TYPE_CHECKING:
    from types import FrameType

    from xensched.interaction import Access
    from xensched.smp import ExecContext

__all__ = ["ATOMIC", "RaceDetector", "Seen"]

Clock = dict[str, int]

#: ``Access.value`` of a fully ordered read-modify-write's point (``Cell.exchange``).
ATOMIC = _ATOMIC

_LOAD = PointKind.LOAD
_STORE = PointKind.STORE
_RMW = PointKind.RMW
_ACQ = PointKind.LOAD_ACQUIRE
_REL = PointKind.STORE_RELEASE
_ACQUIRED = PointKind.ACQUIRED
_TRY_OK = PointKind.TRYLOCK_OK
_UNLOCK = PointKind.UNLOCK
_MB = PointKind.MB
_WMB = PointKind.WMB
_RMB = PointKind.RMB
_WAIT = PointKind.WAIT

# Frames of these modules are plumbing: the Xen function is the nearest other frame.
_PLUMBING = _BUS_PLUMBING | {
    "xensched.race_detector",
    "xensched.drivers.controlled",
    "xensched.drivers.free",
}


def _xen_function() -> str:
    f: FrameType | None = sys._getframe(2)
    while f is not None and f.f_globals.get("__name__") in _PLUMBING:
        f = f.f_back
    return f.f_code.co_name if f is not None else "?"


@dataclass(frozen=True, slots=True)
class Seen:
    """One access, as a report names it."""

    context: str
    kind: str
    fn: str
    locks: tuple[str, ...]

    def describe(self) -> str:
        held = ", ".join(self.locks) if self.locks else "no lock"
        return f"{self.kind} by {self.context} in {self.fn}() holding {held}"


class _Shadow:
    """What the detector knows of one field."""

    __slots__ = ("reads", "sync", "write", "write_atomic", "write_clock")

    def __init__(self) -> None:
        self.write: Seen | None = None
        # (context, its clock at the write)
        self.write_clock: tuple[str | None, int] = (None, 0)
        self.write_atomic = False
        # Per (context, marked): its clock at its last read of that sort, what was
        # seen. A marked read (an acquire load) races with a plain write only, a
        # plain one with every write: a context's last read of each sort is kept.
        self.reads: dict[tuple[str, bool], tuple[int, Seen]] = {}
        self.sync: Clock = {}  # what a release of this field published


class _Thread:
    __slots__ = ("acq_pending", "clock", "fence", "held", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.clock: Clock = {name: 1}
        self.fence: Clock | None = None  # the clock at its last release fence
        self.acq_pending: Clock = {}  # what its loads saw since the last acquire fence
        self.held: list[str] = []


def _join(into: Clock, other: Clock) -> None:
    for t, c in other.items():
        if c > into.get(t, 0):
            into[t] = c


class RaceDetector(Instrument):
    """The detector; ``bus.add_instrument(RaceDetector())`` before the threads run."""

    wants_loads = True

    def __init__(self) -> None:
        self._mu = threading.Lock()  # all state: one thread at a time inside
        self._threads: dict[ExecContext, _Thread] = {}
        self._fields: dict[int, _Shadow] = {}
        self._locks: dict[int, Clock] = {}
        self.reported: set[tuple[str, str, str]] = set()
        #: Reports as (field label, first access, second access), in order.
        self.races: list[tuple[str, Seen, Seen]] = []
        self.accesses = 0

    def _thread(self, ctx: ExecContext) -> _Thread:
        t = self._threads.get(ctx)
        if t is None:
            t = self._threads[ctx] = _Thread(ctx.name)
        return t

    def on_point(self, ctx: ExecContext, access: Access) -> None:
        kind = access[0]
        obj = access[1]
        if kind is _LOAD or kind is _STORE or kind is _RMW:
            if not hasattr(obj, "racy"):
                return  # not a field (a fence, a lock)
            if access[2] == _DATA_RACE:  # data_race(): unchecked, still a load
                with self._mu:
                    _join(self._thread(ctx).acq_pending, self._field(obj.oid).sync)
                return
            value = access[2]
            atomic = kind is _RMW and (value == ATOMIC or type(value) is BitOp)
            self._access(ctx, access, obj, kind, atomic)
        elif kind is _ACQ or kind is _REL:
            self._access(ctx, access, obj, kind, True)
        elif kind is _ACQUIRED or kind is _TRY_OK:
            with self._mu:
                t = self._thread(ctx)
                _join(t.clock, self._locks.get(obj.oid, {}))
                t.held.append(obj.label)
        elif kind is _UNLOCK:
            with self._mu:
                t = self._thread(ctx)
                self._locks[obj.oid] = dict(t.clock)
                t.clock[t.name] += 1
                held = t.held
                for i in range(len(held) - 1, -1, -1):  # the innermost hold of it
                    if held[i] == obj.label:
                        del held[i]
                        break
        elif kind is _MB or kind is _WMB or kind is _RMB:
            with self._mu:
                t = self._thread(ctx)
                if kind is not _WMB:  # an acquire fence
                    _join(t.clock, t.acq_pending)
                    t.acq_pending = {}
                if kind is not _RMB:  # a release fence
                    t.fence = dict(t.clock)
                    t.clock[t.name] += 1
        elif kind is _WAIT and hasattr(obj, "racy"):
            # A completed wait (the note after it) or a poll: a load of the
            # field and an acquire fence, as Xen's polling loops are.
            with self._mu:
                t = self._thread(ctx)
                _join(t.clock, self._field(obj.oid).sync)

    def _field(self, oid: int) -> _Shadow:
        s = self._fields.get(oid)
        if s is None:
            s = self._fields[oid] = _Shadow()
        return s

    def _access(
        self,
        ctx: ExecContext,
        access: Access,
        cell: object,
        kind: PointKind,
        marked: bool,
    ) -> None:
        # The bus named the event's Xen function already when it traces it (every
        # point with trace_all, and never a load without): walk the stack otherwise.
        fn = ctx.function_of(access) or _xen_function()
        label: str = cell.label  # type: ignore[attr-defined]
        racy: str | None = cell.racy  # type: ignore[attr-defined]
        reports: list[tuple[str, Seen, Seen]] = []
        with self._mu:
            self.accesses += 1
            t = self._thread(ctx)
            s = self._field(cell.oid)  # type: ignore[attr-defined]
            c = t.clock
            me = Seen(t.name, _KIND_NAMES[kind, marked], fn, tuple(t.held))
            writes = kind is not _LOAD and kind is not _ACQ
            reads = kind is not _STORE and kind is not _REL
            # Acquire side first: what this access synchronises with.
            if kind is _ACQ or (kind is _RMW and marked):
                _join(c, s.sync)
            elif reads:
                _join(t.acq_pending, s.sync)
            # The checks.
            w, wc = s.write_clock
            if (
                s.write is not None
                and w is not None
                and w != t.name
                and c.get(w, 0) < wc
                and not (marked and s.write_atomic)
                and (writes or racy is None)
            ):
                reports.append((label, s.write, me))
            if writes and racy is None:
                raced: set[str] = set()  # one report per context that read
                for (r, r_marked), (rc, seen) in s.reads.items():
                    if (
                        r != t.name
                        and r not in raced
                        and c.get(r, 0) < rc
                        and not (marked and r_marked)
                    ):
                        raced.add(r)
                        reports.append((label, seen, me))
            # The record.
            if writes:
                s.write = me
                s.write_clock = (t.name, c[t.name])
                s.write_atomic = marked
                s.reads = {}
            else:
                s.reads[t.name, marked] = (c[t.name], me)
            # Release side.
            if kind is _REL or (kind is _RMW and marked):
                _join(s.sync, c)
                c[t.name] += 1
            elif writes and t.fence is not None:
                _join(s.sync, t.fence)
            fresh = []
            for field, a, b in reports:
                key = (field, a.fn, b.fn)
                if key not in self.reported:
                    self.reported.add(key)
                    self.races.append((field, a, b))
                    fresh.append((field, a, b))
        for field, a, b in fresh:
            ctx.bus.violation(
                ViolationKind.DATA_RACE,
                b.fn,
                f"{field}: {a.describe()}, and {b.describe()}, unordered by "
                "happens-before",
            )


_KIND_NAMES = {
    (_LOAD, False): "read",
    (_STORE, False): "write",
    (_RMW, False): "read-modify-write",
    (_RMW, True): "atomic read-modify-write",
    (_ACQ, True): "acquire load",
    (_REL, True): "release store",
}
