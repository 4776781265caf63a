"""What a deadlock report holds: every lock's owner and waiters, every thread's stack.

Mirrors nothing in Xen: the dump a hypervisor developer would ask a watchdog for
(``dump_threads`` follows pytest-timeout's ``dump_stacks``). :func:`deadlock_report`
is the one report of every bounded wait that runs out: the spinlock's spin
(``_spin_lock``), a free-running ``Bus.wait_until``, the retry loops of the lock
macros (``sched_lock``) and of ``vcpu_migrate()`` (each through ``Bus.deadlock``),
the stress harness's watchdog, and the controlled driver (its wait-for graph first).

- It runs once per deadlock reported, never on the hot path: nothing here is kept or
  counted while the host runs; the owners are the locks' own ``owner`` fields, the
  waiters and each context's position its recent events, which the bus keeps anyway.
- A waiter "as the model knows it" is a context whose last event is a ``lock`` point
  (made before the spin) with no ``acquired`` note after it; a context whose last
  event is a ``wait`` waits for a condition on that object.
- It reads the host's state without its locks (a deadlock holds them) and needs no
  GIL: the bus's lists are copied under the bus's own short mutex, a context's last
  event is read with one indexing of its deque (safe while its thread appends; an
  empty or changing deque is skipped), and ``sys._current_frames()`` is CPython's own
  snapshot of the threads. A thread that is still running while its stack is formatted
  may have moved on by the time its line is read; threads stuck in a deadlock do not.

Left out: the stacks of threads that never ran Python (a C thread has no frame) and
the owners of plain ``threading`` locks outside the model (only ``SpinLock`` records
its owner).
"""

from __future__ import annotations

import sys
import threading
import traceback
from typing import TYPE_CHECKING

from xensched.interaction import PointKind

if TYPE_CHECKING:
    from xensched.interaction import Access, Bus
    from xensched.smp import ExecContext

__all__ = ["deadlock_report", "dump_locks", "dump_threads"]

_LOCK = PointKind.LOCK


def _last(ctx: ExecContext) -> tuple[Access, str] | None:
    """``ctx``'s newest event (access, Xen function), or None: one read of the deque,
    safe while its thread appends (IndexError: empty; RuntimeError: a copy raced)."""
    try:
        _, access, fn = ctx.events[-1]
    except (IndexError, RuntimeError):
        return None
    return access, fn


def _snapshot(bus: Bus) -> tuple[list[ExecContext], list[Access | None]]:
    with bus._meta:  # short: the lists are only appended to under it
        ctxs = list(bus.contexts)
    lasts: list[Access | None] = []
    for ctx in ctxs:
        last = _last(ctx)
        lasts.append(None if last is None else last[0])
    return ctxs, lasts


def _lock_lines(bus: Bus) -> list[str]:
    """One line per lock held or waited for: its owner (``stats()``) and its waiters,
    then how many other locks are free."""
    with bus._meta:
        locks = list(bus.locks)
    ctxs, lasts = _snapshot(bus)
    waiters: dict[int, list[str]] = {}
    for ctx, access in zip(ctxs, lasts, strict=True):
        if access is not None and access[0] is _LOCK:
            waiters.setdefault(id(access[1]), []).append(ctx.name)
    out: list[str] = []
    for lock in locks:
        s = lock.stats()
        who = waiters.get(id(lock))
        if s.owner is None and who is None:
            continue
        line = (
            f"{s.name} held by {s.owner} (acquired {s.acquisitions}x, "
            f"contended {s.contended}x)"
            if s.owner is not None
            else f"{s.name} free"
        )
        if who is not None:
            line += f"; waited for by {', '.join(who)}"
        out.append(line)
    out.append(f"({len(locks) - len(out)} other locks free)")
    return out


def dump_locks(bus: Bus) -> str:
    """Every lock held or waited for (owner, waiters) and each context's last point."""
    out = ["locks held:"]
    lines = _lock_lines(bus)
    if len(lines) == 1:
        out.append("  none")
    out.extend(f"  {line}" for line in lines)
    out.append("last interaction point of each context:")
    with bus._meta:
        ctxs = list(bus.contexts)
    for ctx in ctxs:
        last = _last(ctx)
        if last is not None:
            access, fn = last
            out.append(f"  {ctx.name}: {access[0]._value_} {access[1].label} [{fn}]")
    return "\n".join(out)


def dump_threads() -> str:
    """Every thread's stack, labelled by thread name (pytest-timeout's dump_stacks)."""
    names = {t.ident: t.name for t in threading.enumerate()}
    frames = sys._current_frames()
    out: list[str] = []
    try:
        for ident, frame in sorted(
            frames.items(), key=lambda kv: str(names.get(kv[0], kv[0]))
        ):
            out.append(f"--- thread {names.get(ident, ident)} ---")
            for entry in traceback.format_stack(frame):
                out.extend(entry.rstrip("\n").split("\n"))
    finally:
        del frames  # frames keep their locals alive: drop them at once
    return "\n".join(out)


def deadlock_report(bus: Bus, why: str, *, stacks: bool = True) -> str:
    """The report of a deadlock on ``bus``: ``why`` (its first line is the one line
    that says who waited for what), then every lock's owner and waiters and each
    context's last point, then every thread's stack.

    ``stacks=False`` leaves the stacks out: the controlled driver's own finding
    that no participant can run, whose report must be the same on every run of a
    schedule (replay files and explorations keep it) and where each participant's
    last point says where it stands.
    """
    parts = [why, dump_locks(bus)]
    if stacks:
        parts.append(dump_threads())
    return "\n\n".join(parts)
