"""Store buffers: the memory of x86 (TSO) and of a weaker, Arm-like machine.

Mirrors the ordering half of Xen's ``asm-x86/system.h`` and ``asm-arm/system.h``
(``smp_mb``, ``smp_wmb``, ``smp_rmb``, ``xchg``) and the acquire and release semantics
of ``spin_lock``/``spin_unlock``, as the Linux kernel memory model
(``tools/memory-model``) states them. The emulated host's shared fields
(:class:`~xensched.memory.Cell`) go through a model installed on the bus; the
emulator's own bookkeeping never does.

Three models (:data:`MODELS`):

``sc``
    Sequential consistency: no model on the bus, a load returns the last store.

``tso`` (x86)
    Each CPU has a FIFO store buffer. A store enters it; a load forwards from the
    CPU's own newest buffered store to that field, else reads memory. Buffered stores
    reach memory in order (*drain*). ``smp_mb()``, a lock acquisition (a ``lock``
    prefixed instruction), a lock release and a fully ordered read-modify-write wait
    until the buffer is empty; ``smp_wmb()`` and ``smp_rmb()`` are compiler barriers.
    The one reordering: a later load passes an earlier store (store buffering, SB).

``relaxed`` (Arm-like)
    The store buffer drains in any order, except that stores to one field stay in
    order (coherence) and ``smp_wmb()`` splits the buffer into *epochs*: nothing of a
    later epoch drains before everything of the earlier ones. A store release and a
    lock release wait for an empty buffer. Loads may be *satisfied early*: a load may
    return an older value of a field, as long as that value was still current at
    some time no earlier than (a) the CPU's last load or store of that field
    (coherence), (b) the CPU's last ``smp_mb()``, lock acquisition, acquire load or
    fully ordered read-modify-write, and, after an ``smp_rmb()``, (c) the time the
    CPU's earlier loads were satisfied. Memory is one global order of drains, so the
    machine is multi-copy atomic (as Armv8 is): IRIW-style outcomes stay forbidden.

When a buffered store drains and which older value a load returns are *choices*.
Under the controlled driver they are steps the strategy picks
(:meth:`StoreBufferModel.drain_options`, :meth:`StoreBufferModel.load_choices`): a
drain is a step of a pseudo-thread named ``CPU>field``, and a load that returns the
``k``-th older admissible value is a step of ``CPU~k``, so exploration, DPOR, replay
and shrinking all cover reorderings. Under the free-running driver a store drains
after a seeded random delay (up to :data:`FREE_MAX_DELAY_NS`, seen at the next load
or store of any CPU), and loads read the newest value: ``relaxed`` then samples store reorderings only.

Left out: load buffering (a load never returns a value stored after it in any
order, so LB-shaped outcomes are forbidden), non-multi-copy atomicity (IRIW),
dependency ordering (no address, data or control dependency orders anything, which
only ever allows more), and per-CPU caches: memory is one array plus the buffers.
"""

from __future__ import annotations

import heapq
import random
import threading
import time
from typing import TYPE_CHECKING, Any, TypeVar

from xensched.interaction import PointKind

if TYPE_CHECKING:
    from collections.abc import Callable

    from xensched.memory import Cell
    from xensched.smp import ExecContext
    from xensched.spinlock import SpinLock

__all__ = [
    "MODELS",
    "StoreBufferModel",
    "check_model_name",
    "make_memory_model",
]

T = TypeVar("T")

#: The models a host can run, weakest last.
MODELS = ("sc", "tso", "relaxed")

#: A store drains, under the free-running driver, after a seeded random delay of up
#: to this many nanoseconds (at the next load or store of any CPU after it).
FREE_MAX_DELAY_NS = 200_000

#: Values of a field kept for early loads (older ones can no longer be chosen; a
#: controlled run that would need one reads the oldest kept).
HISTORY = 16

_now = time.perf_counter_ns
_MB = PointKind.MB
_WMB = PointKind.WMB
_RMB = PointKind.RMB


def check_model_name(name: str) -> str:
    """``name`` if it is a model of :data:`MODELS`, else ``ValueError`` naming them."""
    if name not in MODELS:
        raise ValueError(
            f"unknown memory model {name!r}: expected one of {', '.join(MODELS)}"
        )
    return name


def make_memory_model(name: str, seed: int = 0) -> StoreBufferModel | None:
    """The model called ``name`` (``None`` for ``sc``: nothing on the bus)."""
    check_model_name(name)
    if name == "sc":
        return None
    return StoreBufferModel(name, seed)


class _Entry:
    """One buffered store."""

    __slots__ = ("cell", "due", "epoch", "seq", "value")

    def __init__(self, cell: Cell[Any], value: Any, epoch: int, seq: int) -> None:
        self.cell = cell
        self.value = value
        self.epoch = epoch
        self.seq = seq
        self.due = 0


class _Cpu:
    """A CPU's side of the memory: its buffer and what orders its loads."""

    __slots__ = ("buffer", "choice", "coh", "ctx", "epoch", "floor", "last_due", "read")

    def __init__(self, ctx: ExecContext) -> None:
        self.ctx = ctx
        self.buffer: list[_Entry] = []
        self.epoch = 0
        # Loads may not be satisfied before `floor` (the last full fence, acquire).
        self.floor = 0
        # The latest time at which this CPU's loads so far were satisfied (what an
        # smp_rmb() raises the floor to).
        self.read = 0
        # Per field (oid): the time of the value this CPU last read or wrote there.
        self.coh: dict[int, int] = {}
        # The older value the strategy picked for this CPU's pending load (0: newest).
        self.choice = 0
        # Free-running: the latest due time in the buffer, per epoch order.
        self.last_due = 0


class StoreBufferModel:
    """``tso`` or ``relaxed``; see the module docstring.

    Thread-safe: every method takes the model's own lock (emulator bookkeeping, never
    held while the caller waits for anything else).
    """

    def __init__(self, name: str, seed: int = 0) -> None:
        if name not in ("tso", "relaxed"):
            raise ValueError(f"StoreBufferModel: {name!r} is not tso or relaxed")
        self.name = name
        self.fifo = name == "tso"
        self.seed = seed
        self._mu = threading.Lock()
        self._cpus: dict[ExecContext, _Cpu] = {}
        self._clock = 0  # drains so far: the time of memory
        self._seq = 0
        # Per field (oid): [(time, value)] of the values it held, oldest first.
        self._hist: dict[int, list[tuple[int, Any]]] = {}
        #: Set by the controlled driver for its run: drains and early loads are then
        #: the strategy's choices, never the model's.
        self.controlled = False
        self._rng = random.Random(seed)
        self._due: list[tuple[int, int, _Entry, _Cpu]] = []  # free-running drains
        #: Stores drained and early loads taken, for reports and the benchmark.
        self.drains = 0
        self.early_loads = 0

    def __repr__(self) -> str:
        return f"<StoreBufferModel {self.name}>"

    # -- bookkeeping -----------------------------------------------------------------
    def _cpu(self, ctx: ExecContext) -> _Cpu:
        c = self._cpus.get(ctx)
        if c is None:
            c = self._cpus[ctx] = _Cpu(ctx)
        return c

    def _history(self, cell: Cell[Any]) -> list[tuple[int, Any]]:
        h = self._hist.get(cell.oid)
        if h is None:
            h = self._hist[cell.oid] = [(0, cell.value)]
        return h

    def _write_memory(self, cell: Cell[Any], value: Any) -> int:
        """With ``_mu`` held: ``value`` reaches memory now; returns its time."""
        self._clock += 1
        if self.controlled:  # only a controlled run's early loads read the past
            h = self._history(cell)
            h.append((self._clock, value))
            if len(h) > HISTORY:
                del h[0]
        cell.value = value
        return self._clock

    def _drain_entry(self, c: _Cpu, e: _Entry) -> None:
        c.buffer.remove(e)
        t = self._write_memory(e.cell, e.value)
        c.coh[e.cell.oid] = max(c.coh.get(e.cell.oid, 0), t)
        self.drains += 1

    def _drain_all(self, c: _Cpu) -> None:
        """With ``_mu`` held: everything ``c`` buffered reaches memory, in an order
        the model allows (oldest first always is one)."""
        while c.buffer:
            self._drain_entry(c, c.buffer[0])

    def _tick(self, now: int) -> None:
        """With ``_mu`` held, free-running only: drain what is due at ``now``."""
        due = self._due
        while due and due[0][0] <= now:
            _, _, e, c = heapq.heappop(due)
            if e in c.buffer:  # not drained by a barrier meanwhile
                self._drain_entry(c, e)

    def _free_load(self, ctx: ExecContext, cell: Cell[T]) -> T:
        """A load under the free-running driver: the newest value, its own buffered
        store first. Most find their CPU's buffer empty and nothing due, and take
        no lock: only the CPU itself fills its buffer, and a value is read whole."""
        due = self._due
        if due:
            now = _now()
            try:
                ripe = due[0][0] <= now
            except IndexError:  # emptied by another CPU since the test above
                ripe = False
            if ripe:
                with self._mu:
                    self._tick(now)
        c = self._cpus.get(ctx)
        if c is None or not c.buffer:
            return cell.value
        with self._mu:
            own = self._newest_buffered(c, cell)
            value: T = own.value if own is not None else cell.value
            return value

    def _newest_buffered(self, c: _Cpu, cell: Cell[Any]) -> _Entry | None:
        for e in reversed(c.buffer):
            if e.cell is cell:
                return e
        return None

    def _admissible(self, c: _Cpu, cell: Cell[Any]) -> list[tuple[int, Any]]:
        """With ``_mu`` held: the values ``c`` may load from ``cell``, newest first
        (only the newest under TSO or a free-running run)."""
        h = self._history(cell)
        if self.fifo or not self.controlled:
            return [h[-1]]
        lo = max(c.floor, c.coh.get(cell.oid, 0))
        out: list[tuple[int, Any]] = []
        for i in range(len(h) - 1, -1, -1):
            out.append(h[i])
            # h[i] was current from its time until the next value's: it may be read
            # if that interval reaches `lo`.
            if h[i][0] <= lo:
                break
        return out

    def _load(self, ctx: ExecContext | None, cell: Cell[T], acquire: bool) -> T:
        if ctx is None:
            return cell.value
        if not self.controlled:
            return self._free_load(ctx, cell)
        with self._mu:
            c = self._cpu(ctx)
            own = self._newest_buffered(c, cell)
            choice, c.choice = c.choice, 0
            if own is not None:
                value: T = own.value
                return value
            options = self._admissible(c, cell)
            k = min(choice, len(options) - 1)
            t, value = options[k]
            if k:
                self.early_loads += 1
            # The earliest time this load can have been satisfied.
            sat = max(t, c.floor, c.coh.get(cell.oid, 0))
            c.coh[cell.oid] = max(c.coh.get(cell.oid, 0), t)
            c.read = max(c.read, sat)
            if acquire:
                c.floor = max(c.floor, sat)
            return value

    def _store(
        self, ctx: ExecContext | None, cell: Cell[T], value: T, release: bool
    ) -> None:
        with self._mu:
            if ctx is None:
                self._write_memory(cell, value)
                return
            c = self._cpu(ctx)
            if release:
                # Nothing earlier passes a release: a controlled CPU waited for an
                # empty buffer at the point (may_proceed); a free one drains here.
                self._drain_all(c)
            self._seq += 1
            e = _Entry(cell, value, c.epoch, self._seq)
            c.buffer.append(e)
            if not self.controlled:
                now = _now()
                self._tick(now)
                # Due no earlier than what must drain before it, so the heap only
                # ever pops a store the model allows to go.
                delay = self._rng.randint(0, FREE_MAX_DELAY_NS)
                prior = c.last_due if self.fifo else self._prior_due(c, e)
                e.due = max(now + delay, prior)
                c.last_due = max(c.last_due, e.due)
                heapq.heappush(self._due, (e.due, e.seq, e, c))

    def _prior_due(self, c: _Cpu, e: _Entry) -> int:
        due = 0
        for o in c.buffer:
            if o is not e and (o.epoch < e.epoch or o.cell is e.cell):
                due = max(due, o.due)
        return due

    def _idle(self, ctx: ExecContext) -> bool:
        """Free-running and nothing buffered: an ordering point has nothing to do
        (the load floors only matter to a controlled run's early loads)."""
        if self.controlled:
            return False
        c = self._cpus.get(ctx)
        return c is None or not c.buffer

    # -- the MemoryModel protocol --------------------------------------------------
    def load(self, ctx: ExecContext | None, cell: Cell[T]) -> T:
        return self._load(ctx, cell, False)

    def load_acquire(self, ctx: ExecContext | None, cell: Cell[T]) -> T:
        return self._load(ctx, cell, True)

    def store(self, ctx: ExecContext | None, cell: Cell[T], value: T) -> None:
        self._store(ctx, cell, value, False)

    def store_release(self, ctx: ExecContext | None, cell: Cell[T], value: T) -> None:
        self._store(ctx, cell, value, True)

    def peek(self, ctx: ExecContext | None, cell: Cell[T]) -> T:
        c = self._cpus.get(ctx) if ctx is not None else None
        if c is None or not c.buffer:  # only ctx itself fills its buffer
            return cell.value
        with self._mu:
            own = self._newest_buffered(c, cell)
            value: T = own.value if own is not None else cell.value
            return value

    def exchange(
        self, ctx: ExecContext | None, cell: Cell[T], fn: Callable[[T], T]
    ) -> T:
        with self._mu:
            if ctx is None:
                old: T = cell.value
                self._write_memory(cell, fn(old))
                return old
            c = self._cpu(ctx)
            self._drain_all(c)  # empty already after the barrier point
            old = cell.value
            t = self._write_memory(cell, fn(old))
            c.coh[cell.oid] = t
            c.floor = c.read = max(c.read, t)
            return old

    def barrier(self, ctx: ExecContext | None, kind: PointKind) -> None:
        if ctx is None or self._idle(ctx):
            return
        with self._mu:
            c = self._cpu(ctx)
            if kind is _MB:
                self._drain_all(c)
                c.floor = c.read = max(c.read, self._clock)
            elif kind is _WMB:
                c.epoch += 1
            elif kind is _RMB:
                c.floor = max(c.floor, c.read)

    def acquire(self, ctx: ExecContext | None, lock: SpinLock) -> None:
        if ctx is None or self._idle(ctx):
            return
        with self._mu:
            c = self._cpu(ctx)
            if self.fifo:
                self._drain_all(c)  # a locked instruction drains the buffer
            # Whatever the last holder stored before its release is in memory.
            c.floor = c.read = max(c.read, self._clock)

    def release(self, ctx: ExecContext | None, lock: SpinLock) -> None:
        if ctx is None or self._idle(ctx):
            return
        with self._mu:
            self._drain_all(self._cpu(ctx))

    # -- what the drivers ask --------------------------------------------------------
    def may_proceed(self, ctx: ExecContext, kind: PointKind) -> bool:
        """May ``ctx`` make an access of ``kind`` now? An access that orders earlier
        stores before it waits until ``ctx``'s buffer is empty (the controlled
        driver does not run it before; the drains are other steps)."""
        if kind not in _DRAINING[self.fifo]:
            return True
        with self._mu:
            c = self._cpus.get(ctx)
            return c is None or not c.buffer

    def drain_options(self) -> list[tuple[ExecContext, Cell[Any]]]:
        """The stores that may drain now, one per ``(CPU, field)``: the oldest
        buffered store of that field, if nothing that must go first is pending."""
        out: list[tuple[ExecContext, Cell[Any]]] = []
        with self._mu:
            for c in self._cpus.values():
                buf = c.buffer
                if not buf:
                    continue
                if self.fifo:
                    out.append((c.ctx, buf[0].cell))
                    continue
                first = buf[0].epoch
                seen: set[int] = set()
                for e in buf:
                    if e.epoch != first:
                        break
                    if e.cell.oid not in seen:
                        seen.add(e.cell.oid)
                        out.append((c.ctx, e.cell))
        return out

    def drain(self, ctx: ExecContext, cell: Cell[Any]) -> None:
        """The oldest store of ``ctx`` to ``cell`` reaches memory (a drain step)."""
        with self._mu:
            c = self._cpus[ctx]
            for e in c.buffer:
                if e.cell is cell:
                    self._drain_entry(c, e)
                    return
        raise ValueError(f"{ctx.name} has no buffered store to {cell.label}")

    def load_choices(self, ctx: ExecContext, cell: Cell[Any]) -> int:
        """How many older values than the newest ``ctx`` may load from ``cell`` now."""
        if self.fifo or not self.controlled:
            return 0
        with self._mu:
            c = self._cpu(ctx)
            if self._newest_buffered(c, cell) is not None:
                return 0
            return len(self._admissible(c, cell)) - 1

    def choose_load(self, ctx: ExecContext, k: int) -> None:
        """``ctx``'s pending load returns the ``k``-th older admissible value."""
        with self._mu:
            self._cpu(ctx).choice = k

    def start_controlled(self) -> None:
        """A controlled run begins: what set-up left buffered reaches memory, and
        the past starts now (every field's history is its present value)."""
        with self._mu:
            for c in self._cpus.values():
                self._drain_all(c)
            self._hist.clear()
            self._due.clear()
            self.controlled = True

    def buffered(self, ctx: ExecContext) -> int:
        """Stores ``ctx`` has not drained yet."""
        with self._mu:
            c = self._cpus.get(ctx)
            return len(c.buffer) if c is not None else 0

    def tick(self) -> None:
        """Free-running: drain every store now due, whoever buffered it.

        A load or a store ticks the model; a CPU that polls for another's store
        (``Bus.wait_until``) does neither, and the CPU that buffered it may have
        gone quiet (its program ended, or it sleeps in an injected delay): the
        poll ticks, so that the store drains within its seeded delay as hardware's
        would, instead of never."""
        if self.controlled or not self._due:
            return
        with self._mu:
            self._tick(_now())

    def flush(self, ctx: ExecContext | None = None) -> None:
        """Drain ``ctx``'s buffer (every CPU's with ``None``): the end of a
        free-running run, a CPU about to wait."""
        with self._mu:
            cpus = list(self._cpus.values()) if ctx is None else [self._cpu(ctx)]
            for c in cpus:
                self._drain_all(c)


# Accesses that wait for an empty store buffer (index: fifo, i.e. TSO). TSO's lock
# acquisitions are locked instructions; everywhere a release orders the stores before
# it, and a full barrier (the one before every fully ordered read-modify-write too)
# drains the buffer.
_DRAINING = {
    True: frozenset(
        {
            PointKind.MB,
            PointKind.LOCK,
            PointKind.TRYLOCK,
            PointKind.UNLOCK,
            PointKind.STORE_RELEASE,
        }
    ),
    False: frozenset({PointKind.MB, PointKind.UNLOCK, PointKind.STORE_RELEASE}),
}
