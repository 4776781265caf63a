"""Threads a test left running: compared by identity with those that ran before it,
so that unrelated threads (pytest's, another test's ending late) do not count."""

from __future__ import annotations

import threading
import time

#: How long threads started by a test may take to end once it is over.
END_BOUND = 5.0


def threads_left(
    before: set[threading.Thread], bound: float = END_BOUND
) -> list[threading.Thread]:
    """The threads alive now and not in ``before``, after waiting up to ``bound``
    seconds for them to end (a bounded wait: empty as soon as they all have)."""
    deadline = time.monotonic() + bound
    left = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    while left and time.monotonic() < deadline:
        time.sleep(0.01)
        left = [t for t in left if t.is_alive()]
    return left
