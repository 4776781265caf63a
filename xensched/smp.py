"""Execution contexts: which emulated pCPU (or toolstack caller) a thread is.

Mirrors: ``smp_processor_id()`` and the per-CPU IRQ flag behind
``local_irq_disable()``/``local_irq_enable()`` (xen/include/asm-x86/system.h).

Every thread that runs Xen model code is bound to one :class:`ExecContext` for the
duration (``with bind(ctx): ...``). A pCPU thread is bound to the context of its pCPU;
a toolstack thread (the emulated ``xl``, issuing cpupool sysctls) gets a context of its
own with ``cpu = None``, because in Xen a sysctl runs *on* some pCPU but never at the
same time as that pCPU's own softirqs, which two real threads sharing one context would.

Only the thread bound to a context touches its IRQ state, so that state needs no lock.
Left out: real interrupts, softirq pending bits, NMI context.
"""

from __future__ import annotations

import collections
import threading
from typing import TYPE_CHECKING, Any

from xensched.errors import XenschedError

if TYPE_CHECKING:
    from xensched.interaction import Bus

_EVENTS_KEPT = 48

# (ns timestamp, context name, point kind, label, Xen function): what reports show.
Event = tuple[int, str, str, str, str]
# What a context keeps at each point: (ns timestamp, the Access record, Xen function).
# Three fields, formatted into an Event only when read: one is made at every point.
RawEvent = tuple[int, Any, str]

_tls = threading.local()


class ExecContext:
    """One emulated CPU (or toolstack caller) that a thread can be bound to."""

    __slots__ = ("bus", "cpu", "events", "fence", "irq_enabled", "name")

    def __init__(self, bus: Bus, name: str, cpu: int | None) -> None:
        self.bus = bus
        self.name = name
        self.cpu = cpu
        # Xen boots pCPUs with IRQs on; scheduler code turns them off around locks.
        self.irq_enabled = True
        # Recent interaction points of this context, written only by its own thread;
        # read (copied) when a violation is reported.
        self.events: collections.deque[RawEvent] = collections.deque(
            maxlen=_EVENTS_KEPT
        )
        # The object this context's barriers are accesses of (set by the bus: a
        # barrier orders this CPU's own accesses and touches no shared field).
        self.fence: Any = None

    def __repr__(self) -> str:
        return f"<ExecContext {self.name}>"

    def recent_events(self, limit: int | None = None) -> tuple[Event, ...]:
        """A copy of :attr:`events` (its newest ``limit`` only, if given), safe
        while the owning thread appends to it."""
        # Copying a deque another thread appends to can raise RuntimeError ("mutated
        # during iteration"); retry a few times, then go without.
        for _ in range(5):
            try:
                raw = tuple(self.events)
            except RuntimeError:
                continue
            if limit is not None:
                raw = raw[-limit:] if limit > 0 else ()
            name = self.name
            # kind._value_, not kind.value (an enum property, a Python call per
            # event): a legacy move of reproduce reports hundreds of violations.
            return tuple(
                (ns, name, access[0]._value_, access[1].label, fn)
                for ns, access, fn in raw
            )
        return ()

    def function_of(self, access: object) -> str:
        """The Xen function the bus named for ``access``, the point or note this
        context just made (from its own thread, in an instrument): ``""`` when the
        trace left it out (a load without ``trace_all``) or named none."""
        events = self.events
        if not events:
            return ""
        _, last, fn = events[-1]
        return fn if last is access else ""

    def last_event(self) -> Event | None:
        """The newest event, or None (safe while the owning thread appends)."""
        try:
            ns, access, fn = self.events[-1]
        except (IndexError, RuntimeError):
            return None
        return (ns, self.name, access.kind.value, access.obj.label, fn)


def current() -> ExecContext:
    """The context the calling thread is bound to.

    Raises:
        XenschedError: the thread runs Xen model code without being bound to a CPU.
    """
    ctx: ExecContext | None = getattr(_tls, "ctx", None)
    if ctx is None:
        raise XenschedError(
            f"thread {threading.current_thread().name!r} runs Xen code without a "
            "CPU context; wrap it in `with xensched.smp.bind(ctx):`"
        )
    return ctx


def current_or_none() -> ExecContext | None:
    ctx: ExecContext | None = getattr(_tls, "ctx", None)
    return ctx


def smp_processor_id() -> int:
    """The pCPU the calling thread emulates (toolstack contexts have none)."""
    cpu = current().cpu
    if cpu is None:
        raise XenschedError(f"{current().name} is a toolstack context, not a pCPU")
    return cpu


class bind:  # noqa: N801 - used like a keyword: `with bind(ctx):`
    """Bind the calling thread to ``ctx`` for the ``with`` block (re-entrant)."""

    __slots__ = ("_ctx", "_prev")

    def __init__(self, ctx: ExecContext) -> None:
        self._ctx = ctx
        self._prev: ExecContext | None = None

    def __enter__(self) -> ExecContext:
        self._prev = getattr(_tls, "ctx", None)
        _tls.ctx = self._ctx
        return self._ctx

    def __exit__(self, *exc: object) -> None:
        _tls.ctx = self._prev
