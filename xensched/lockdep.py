"""Lock-order checking in the manner of Linux's lockdep, as an instrument of the bus.

Mirrors Linux's ``kernel/locking/lockdep.c`` (Xen has no lockdep; its ``check_lock()``
latch, emulated in :mod:`xensched.spinlock`, is the per-lock half of the IRQ rule).
Every lock belongs to a *class*: its name without the scheduler instance and without
indices (``credit2@p.rqd[0].lock`` is of class ``credit2.rqd[].lock``, every pCPU's
default lock of ``schedule_data[]._lock``), so what one run teaches about one runqueue
lock holds for all of them. When a CPU acquires a lock of class ``B`` while it holds
one of class ``A``, the edge ``A -> B`` joins the order graph, with the Xen function of
each acquisition and the CPU (checked when the CPU asks for ``B``, before it waits, so
that free-running, a wait that deadlocks is reported too; under the controlled driver a
request is seen once the schedule grants the CPU its turn, so in the one execution
where the two requests deadlock the driver reports the ``deadlock`` with its wait-for
graph, and the orders that lead there are ``lock-order`` in the executions where both
acquisitions succeed). An edge that closes a cycle is a ``lock-order``
violation naming both chains: the new one and the path already in the graph, even if
no deadlock happened in that run. A class taken both with IRQs enabled and disabled,
or an IRQ-safe class held while an IRQ-unsafe one is taken, is an ``irq-inversion``.
As in lockdep, a successful trylock is held (later acquisitions order after it) but
makes no edge of its own: a trylock cannot wait, so it cannot close a deadlock.

Two locks of one class held together (``vcpu_migrate`` takes both pCPUs' default
locks, lower address first) make no edge: lockdep's nesting annotations are left out.

What Xen does against the order on purpose is *declared* (:data:`SANCTIONED`), never
silenced: an acquisition that matches a declaration makes no edge, and is counted and
listed in :attr:`Lockdep.sanctioned` with the reason.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from xensched.interaction import Instrument, PointKind
from xensched.violation import ViolationKind

if TYPE_CHECKING:
    from xensched.interaction import Access
    from xensched.smp import ExecContext
    from xensched.spinlock import SpinLock

__all__ = ["SANCTIONED", "Edge", "Lockdep", "Sanction", "instance_of", "lock_class"]

_INDEX = re.compile(r"\[[^\]]*\]")
_INSTANCE = re.compile(r"@[^.]+")


def lock_class(name: str) -> str:
    """The class of the lock called ``name``: instance and indices dropped."""
    return _INDEX.sub("[]", _INSTANCE.sub("", name))


def instance_of(name: str) -> str | None:
    """The scheduler instance a lock belongs to (``credit2@p``), or None."""
    m = _INSTANCE.search(name)
    return name[: m.end()] if m is not None else None


@dataclass(frozen=True, slots=True)
class Sanction:
    """An acquisition against the documented order that Xen makes on purpose.

    It applies when the function ``where`` takes a lock of class ``taken`` while it
    holds one of class ``held`` that belongs to another scheduler instance (or to
    none: a pCPU's default lock).
    """

    where: str
    held: str
    taken: str
    why: str


_OTHER_SCHEDULER = (
    "94734ab7c3: switch_sched runs with the pCPU's old lock held, which is the old "
    "scheduler's (another instance, or the pCPU's default lock), and then takes the "
    "new scheduler's private lock: csched2_switch_sched's comment says it does not "
    "break the private-before-runqueue rule, and cpupool_lock serialises every "
    "switch, so no CPU can take the two in the other order at the same time"
)

#: The declared exceptions to the lock order (see the module docstring).
SANCTIONED: tuple[Sanction, ...] = tuple(
    Sanction("switch_sched", held, taken, _OTHER_SCHEDULER)
    for held in (
        "schedule_data[]._lock",
        "credit2.rqd[].lock",
        "rtds.prv->lock",
    )
    for taken in ("credit2.prv->lock", "rtds.prv->lock", "credit.prv->lock")
)


@dataclass(frozen=True, slots=True)
class Edge:
    """``held -> taken``, as first seen: who, in which functions."""

    held: str
    taken: str
    cpu: str
    held_in: str
    taken_in: str

    def describe(self) -> str:
        return (
            f"{self.cpu}: {self.held} (taken in {self.held_in}()) then "
            f"{self.taken} (in {self.taken_in}())"
        )


class _Held:
    __slots__ = ("cls", "fn", "irq_off", "lock")

    def __init__(self, lock: SpinLock, cls: str, fn: str, irq_off: bool) -> None:
        self.lock = lock
        self.cls = cls
        self.fn = fn
        self.irq_off = irq_off


_ACQUIRED = PointKind.ACQUIRED
_TRY_OK = PointKind.TRYLOCK_OK
_UNLOCK = PointKind.UNLOCK
_LOCK = PointKind.LOCK
_TRYLOCK = PointKind.TRYLOCK


class Lockdep(Instrument):
    """The lock-order checker; ``bus.add_instrument(Lockdep())``.

    Each violation is reported once per pair of classes (a long run would otherwise
    repeat it at every acquisition).
    """

    #: It needs lock points and notes only: loads stay plain reads (see
    #: :meth:`xensched.interaction.Bus._retune`).
    wants_loads = False

    def __init__(self, sanctioned: tuple[Sanction, ...] = SANCTIONED) -> None:
        self._sanctions = sanctioned
        self._mu = threading.Lock()  # the graph; never held while reporting
        self.edges: dict[tuple[str, str], Edge] = {}
        self._succ: dict[str, set[str]] = {}
        self._held: dict[ExecContext, list[_Held]] = {}
        self._fn: dict[ExecContext, str] = {}
        self._classes: dict[str, str] = {}
        #: Per class: seen with IRQs disabled (True), enabled (False), or both.
        self.irq_use: dict[str, set[bool]] = {}
        self.reported: set[tuple[str, str]] = set()
        #: Declared acquisitions against the order: (sanction, edge), first of each.
        self.sanctioned: dict[tuple[str, str], tuple[Sanction, Edge]] = {}
        # Per context, written by its own thread only: no lock on the hot path.
        self._count: dict[ExecContext, int] = {}

    @property
    def acquisitions(self) -> int:
        """The acquisitions checked (trylocks that succeeded included)."""
        return sum(list(self._count.values()))

    # -- the instrument -------------------------------------------------------------
    def on_point(self, ctx: ExecContext, access: Access) -> None:
        # Most points are loads, stores and calls: the kinds tested first are the
        # ones the graph needs, the rest fall through every test.
        kind = access[0]
        if kind is _ACQUIRED:
            self._push(ctx, access[1])  # type: ignore[arg-type]
        elif kind is _LOCK:
            # Checked when the CPU asks for the lock, before it waits, as lockdep's
            # lock_acquire(): free-running, the order is reported even if this wait
            # deadlocks (see the module docstring for the controlled driver).
            fn = self._fn[ctx] = self._name(ctx, access)
            self._check(ctx, access[1], fn, trylock=False)  # type: ignore[arg-type]
        elif kind is _TRY_OK:
            fn = self._fn.get(ctx, "?")
            self._check(ctx, access[1], fn, trylock=True)  # type: ignore[arg-type]
            self._push(ctx, access[1])  # type: ignore[arg-type]
        elif kind is _TRYLOCK:
            self._fn[ctx] = self._name(ctx, access)
        elif kind is _UNLOCK:
            held = self._held.get(ctx)
            if held:
                lock = access[1]
                for i in range(len(held) - 1, -1, -1):
                    if held[i].lock is lock:
                        del held[i]
                        break

    @staticmethod
    def _name(ctx: ExecContext, access: Access) -> str:
        """The Xen function of the point ``access`` just made (its event's)."""
        return ctx.function_of(access) or "?"

    def _class(self, lock: SpinLock) -> str:
        cls = self._classes.get(lock.name)
        if cls is None:  # two regular expressions: once per lock name
            cls = self._classes[lock.name] = lock_class(lock.name)
        return cls

    def _push(self, ctx: ExecContext, lock: SpinLock) -> None:
        """``lock`` is now held by ``ctx``: later requests order after it."""
        held = self._held.get(ctx)
        if held is None:
            with self._mu:
                held = self._held.setdefault(ctx, [])
        count = self._count
        count[ctx] = count.get(ctx, 0) + 1
        held.append(
            _Held(lock, self._class(lock), self._fn.pop(ctx, "?"), not ctx.irq_enabled)
        )

    def _check(self, ctx: ExecContext, lock: SpinLock, fn: str, trylock: bool) -> None:
        """``ctx`` asks for ``lock`` (or a trylock got it): the IRQ rules, and the
        edges from every lock it holds."""
        cls = self._class(lock)
        irq_off = not ctx.irq_enabled
        held: list[_Held] = self._held.get(ctx) or []
        # The fast path, without the lock: nothing new to learn when the class is
        # already known in this IRQ state and every edge it would make is in the
        # graph (sets and dicts only grow, and a reader sees a whole entry). An
        # IRQ-safe holder of a known edge whose classes' IRQ use is unchanged was
        # checked when the edge was made, or its class is already reported.
        use0 = self.irq_use.get(cls)
        if use0 is not None and irq_off in use0:
            edges = self.edges
            if trylock or all(h.cls == cls or (h.cls, cls) in edges for h in held):
                return
        reports: list[tuple[ViolationKind, str, str, tuple[str, str]]] = []
        with self._mu:
            use = self.irq_use.setdefault(cls, set())
            if irq_off not in use:
                use.add(irq_off)
                if len(use) == 2:
                    key = (cls, "irq")
                    if key not in self.reported:
                        self.reported.add(key)
                        reports.append(
                            (
                                ViolationKind.IRQ_INVERSION,
                                fn,
                                f"{cls} is taken with IRQs enabled and with IRQs "
                                f"disabled (now by {ctx.name} in {fn}() with IRQs "
                                f"{'off' if irq_off else 'on'})",
                                key,
                            )
                        )
            if not trylock:
                for h in held:
                    if h.cls == cls:
                        continue  # same class nested: see the module docstring
                    edge = Edge(h.cls, cls, ctx.name, h.fn, fn)
                    s = self._sanction(h, lock, fn)
                    if s is not None:
                        self.sanctioned.setdefault((h.cls, cls), (s, edge))
                        continue
                    if h.irq_off and not irq_off:
                        key = (h.cls, cls + "@irq")
                        if key not in self.reported:
                            self.reported.add(key)
                            reports.append(
                                (
                                    ViolationKind.IRQ_INVERSION,
                                    fn,
                                    f"IRQ-safe {h.cls} held while IRQ-unsafe {cls} is "
                                    f"taken: {edge.describe()}",
                                    key,
                                )
                            )
                    if (h.cls, cls) in self.edges:
                        continue
                    path = self._path(cls, h.cls)
                    self.edges[h.cls, cls] = edge
                    self._succ.setdefault(h.cls, set()).add(cls)
                    if path is not None:
                        key = (min(h.cls, cls), max(h.cls, cls))
                        if key not in self.reported:
                            self.reported.add(key)
                            chain = "; ".join(e.describe() for e in path)
                            reports.append(
                                (
                                    ViolationKind.LOCK_ORDER,
                                    fn,
                                    f"{h.cls} -> {cls} closes a cycle. New: "
                                    f"{edge.describe()}. Already seen: {chain}",
                                    key,
                                )
                            )
        for kind, where, message, _ in reports:
            ctx.bus.violation(kind, where, message)

    # -- internals -------------------------------------------------------------------
    def _sanction(self, h: _Held, lock: SpinLock, fn: str) -> Sanction | None:
        inst = instance_of(lock.name)
        if inst is None or instance_of(h.lock.name) == inst:
            return None
        for s in self._sanctions:
            if s.where == fn and s.held == h.cls and s.taken == self._class(lock):
                return s
        return None

    def _path(self, src: str, dst: str) -> list[Edge] | None:
        """With ``_mu`` held: the edges of a path ``src ->* dst``, or None."""
        if src == dst:
            return []
        prev: dict[str, str] = {src: src}
        todo = [src]
        while todo:
            a = todo.pop()
            for b in self._succ.get(a, ()):
                if b in prev:
                    continue
                prev[b] = a
                if b == dst:
                    out: list[Edge] = []
                    while b != src:
                        out.append(self.edges[prev[b], b])
                        b = prev[b]
                    return out[::-1]
                todo.append(b)
        return None

    def order(self) -> list[tuple[str, str]]:
        """The order graph's edges, sorted."""
        with self._mu:
            return sorted(self.edges)
