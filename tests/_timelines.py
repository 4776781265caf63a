"""Checks of Chrome trace-event JSON shared by the tests of ``xensched.timeline`` and
of ``xensched stress --timeline``."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

#: Times are microseconds as floats: ``ts + dur`` of one slice and ``ts`` of the next
#: may differ in the last bit where the nanoseconds they came from are equal.
_EPS = 1e-6


def thread_names(trace: dict[str, Any]) -> dict[int, str]:
    """tid -> the thread's name, from the ``thread_name`` metadata events."""
    return {
        e["tid"]: e["args"]["name"]
        for e in trace["traceEvents"]
        if e["ph"] == "M" and e["name"] == "thread_name"
    }


def assert_nested(trace: dict[str, Any]) -> None:
    """Every thread's ``X`` slices nest: none ends inside another and goes on past
    it (what a trace viewer needs to stack them)."""
    by_tid: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for e in trace["traceEvents"]:
        if e["ph"] == "X":
            assert e["dur"] >= 0, e
            by_tid[e["tid"]].append((e["ts"], e["ts"] + e["dur"]))
    for tid, spans in by_tid.items():
        spans.sort(key=lambda s: (s[0], -s[1]))
        stack: list[float] = []
        for start, end in spans:
            while stack and stack[-1] <= start + _EPS:
                stack.pop()
            assert not stack or end <= stack[-1] + _EPS, (tid, start, end, stack)
            stack.append(end)
