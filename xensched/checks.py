"""Checks that run all the time, and the :class:`Violation` records they produce.

Mirrors: Xen's ``ASSERT()`` and ``BUG_ON()`` (xen/include/xen/lib.h), plus checks Xen
has no code for but whose breach is what the patch under study is about:

- ``lock-mismatch``: scheduling code on a pCPU runs holding a lock that is not the one
  its current scheduler uses for that pCPU (the patch's problem 1);
- ``assert``: an emulated ASSERT/BUG_ON failed, named after the Xen function
  (problem 2 is ``ASSERT(sd->schedule_lock == &prv->lock)`` in ``rt_free_pdata``);
- ``lock-clobbered``: after a switch, a pCPU's lock pointer is not its scheduler's
  (problem 3);
- ``mutual-exclusion``: two pCPUs inside one runqueue's critical section at once;
- ``deadlock``: a bounded wait ran out.

A failed ASSERT is recorded and execution goes on, as in a non-debug Xen build, so that
what follows (problem 3 follows problem 2) is observed too. Model code that cannot go
on after a ``BUG_ON`` returns early where Xen would have crashed.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from xensched.interaction import Access, PointKind, Shared
from xensched.smp import current, current_or_none
from xensched.violation import Violation as Violation, ViolationKind as ViolationKind

if TYPE_CHECKING:
    from xensched.interaction import Bus
    from xensched.schedulers.base import Scheduler
    from xensched.spinlock import SpinLock


def ASSERT(  # noqa: N802 - Xen's name
    cond: bool, where: str, what: str, cpu: int | None = None
) -> bool:
    """Emulated ``ASSERT(cond)``; records a violation when false. Returns ``cond``.

    ``cpu`` is the pCPU the assertion is about (default: the caller's own).
    """
    if not cond:
        current().bus.violation(
            ViolationKind.ASSERT, where, f"ASSERT({what}) failed", cpu=cpu
        )
    return cond


def BUG_ON(  # noqa: N802 - Xen's name
    cond: bool, where: str, what: str, cpu: int | None = None
) -> bool:
    """Emulated ``BUG_ON(cond)``; records a violation when true. Returns ``cond``.

    Callers return early when it fires: Xen would have crashed there.
    """
    if cond:
        current().bus.violation(ViolationKind.ASSERT, where, f"BUG_ON({what})", cpu=cpu)
    return cond


class CriticalSection(Shared):
    """Occupancy of one runqueue's critical section, to check mutual exclusion.

    Xen has no such object: it relies on the runqueue lock. Scheduler code wraps each
    access to a runqueue in ``with rq.section("csched2_schedule"):``; a second context
    entering while another is inside is a ``mutual-exclusion`` violation. Entering is
    an ``enter`` point (before), leaving an ``exit`` note (after), so a trace shows
    where a critical section ends.
    """

    __slots__ = ("_enter", "_exit", "_inside", "_meta", "name")

    def __init__(self, bus: Bus, name: str) -> None:
        super().__init__(bus, name)
        self.name = name
        self._meta = threading.Lock()  # emulator bookkeeping, not a Xen lock
        self._inside: list[str] = []
        self._enter = Access(PointKind.ENTER, self)
        self._exit = Access(PointKind.EXIT, self)

    def section(self, where: str) -> _Occupancy:
        return _Occupancy(self, where)

    def occupants(self) -> list[str]:
        with self._meta:
            return list(self._inside)


class _Occupancy:
    __slots__ = ("_cs", "_name", "_where")

    def __init__(self, cs: CriticalSection, where: str) -> None:
        self._cs = cs
        self._where = where
        self._name = ""

    def __enter__(self) -> None:
        ctx = current_or_none()
        cs = self._cs
        self._name = ctx.name if ctx is not None else "-"
        if ctx is not None:
            ctx.bus._point(cs._enter, 3)
        with cs._meta:
            others = [n for n in cs._inside if n != self._name]
            cs._inside.append(self._name)
        if ctx is not None and others:
            ctx.bus.violation(
                ViolationKind.MUTUAL_EXCLUSION,
                self._where,
                f"{self._name} entered {cs.name} while {', '.join(others)} was inside",
            )

    def __exit__(self, *exc: object) -> None:
        cs = self._cs
        with cs._meta:
            cs._inside.remove(self._name)
        cs._bus._note(cs._exit)


def check_held(held: SpinLock, cpu: int, sched: Scheduler, where: str) -> bool:
    """``lock-mismatch``: is ``held`` the lock ``sched`` designates for ``cpu``?

    Called where scheduling code has taken a pCPU's lock and is about to run
    ``sched``'s code for that pCPU. Returns True when they match.
    """
    expected = sched.lock_for(cpu)
    if expected is held:
        return True
    current().bus.violation(
        ViolationKind.LOCK_MISMATCH,
        where,
        f"{sched.label} code for cpu{cpu} runs under {held.name}, but its lock for "
        f"cpu{cpu} is {expected.name if expected is not None else 'none'}",
        cpu=cpu,
    )
    return False
