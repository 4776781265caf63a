"""What a stress run prints when it goes wrong: thread stacks, lock owners, last points.

Mirrors nothing in Xen: the dumps a hypervisor developer would ask a watchdog for
(``dump_threads`` follows pytest-timeout's ``dump_stacks``). They read the host's
state without its locks, so they work while a deadlock holds them.
"""

from __future__ import annotations

import sys
import threading
import traceback
from typing import TYPE_CHECKING

from xensched.scenario import SETUP_CONTEXT as SETUP_CONTEXT

if TYPE_CHECKING:
    from xensched import Host
    from xensched.smp import Event

#: Points of each context kept when the first violation is seen.
CONTEXT_POINTS = 4


def last_points(host: Host, n: int) -> tuple[Event, ...]:
    """The last ``n`` points of every context of ``host``, oldest first."""
    merged: list[Event] = []
    for ctx in list(host.bus.contexts):
        if ctx.name == SETUP_CONTEXT:
            continue  # the harness building the host, long before
        merged.extend(ctx.recent_events(n))
    merged.sort()
    return tuple(merged)


def dump_threads() -> str:
    """Every thread's stack, labelled by thread name (pytest-timeout's dump_stacks)."""
    names = {t.ident: t.name for t in threading.enumerate()}
    frames = sys._current_frames()
    out: list[str] = []
    for ident, frame in sorted(
        frames.items(), key=lambda kv: str(names.get(kv[0], kv[0]))
    ):
        out.append(f"--- thread {names.get(ident, ident)} ---")
        for entry in traceback.format_stack(frame):
            out.extend(line for line in entry.rstrip("\n").split("\n"))
    return "\n".join(out)


def dump_locks(host: Host) -> str:
    """Every lock's owner (from ``lock.stats()``) and what each context did last."""
    stats = host.lock_stats()
    held = [s for s in stats if s.owner is not None]
    out = ["locks held:"]
    out.extend(
        f"  {s.name} held by {s.owner} (acquired {s.acquisitions}x, "
        f"contended {s.contended}x)"
        for s in held
    )
    if not held:
        out.append("  none")
    out.append(f"  ({len(stats) - len(held)} other locks free)")
    out.append("last interaction point of each context:")
    for ctx in list(host.bus.contexts):
        last = ctx.last_event()
        if last is not None:
            out.append(f"  {ctx.name}: {last[2]} {last[3]} [{last[4]}]")
    return "\n".join(out)
