"""What a stress run keeps when it goes wrong: each context's last points.

Mirrors nothing in Xen. The deadlock dumps (every thread's stack, every lock's owner
and waiters) are the library's, :func:`xensched.diagnostics.deadlock_report`, which
the model's own bounded waits use too; this module keeps what only the harness needs.
They read the host's state without its locks, so they work while a deadlock holds them.
"""

from __future__ import annotations

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
