"""``Bus.max_violations`` and ``Bus.max_events``: what a long run keeps.

A ``--keep-going`` stress run finds tens of thousands of violations; the bus keeps the
first ones in full (and the first of each kind) and counts the rest by kind, so that
memory and reports stay bounded.
"""

from __future__ import annotations

from xensched import Host, Violation
from xensched.interaction import Instrument
from xensched.violation import ViolationKind

_A = ViolationKind.LOCK_MISMATCH
_B = ViolationKind.ASSERT


def _host() -> Host:
    h = Host(4, sched="credit2", dom0_vcpus=0)
    for cpu in range(4):
        h.schedule(cpu)  # every pCPU context has events to show
    return h


def test_unbounded_by_default() -> None:
    h = _host()
    for i in range(150):
        h.bus.violation(_A, "f", f"n{i}")
    assert len(h.violations) == 150
    assert h.bus.dropped_violations == {}


def test_first_n_kept_then_counted_by_kind() -> None:
    h = _host()
    h.bus.max_violations = 3
    for i in range(5):
        h.bus.violation(_A, "f", f"a{i}")
    h.bus.violation(_B, "g", "b0")  # a new kind past the cap: its first is kept
    h.bus.violation(_B, "g", "b1")
    h.bus.violation(_A, "f", "a5")
    assert [v.message for v in h.violations] == ["a0", "a1", "a2", "b0"]
    assert h.bus.dropped_violations == {_A: 3, _B: 1}
    h.bus.clear_violations()
    assert h.violations == []
    assert h.bus.dropped_violations == {}
    h.bus.violation(_B, "g", "again")
    assert [v.message for v in h.violations] == ["again"]


def test_instruments_see_every_violation_kept_or_not() -> None:
    seen: list[str] = []

    class Count(Instrument):
        def on_violation(self, violation: Violation) -> None:
            seen.append(violation.message)

    h = _host()
    h.bus.max_violations = 1
    h.bus.add_instrument(Count())
    for i in range(4):
        h.bus.violation(_A, "f", str(i))
    assert seen == ["0", "1", "2", "3"]
    assert len(h.violations) == 1


def test_max_events_bounds_each_violation() -> None:
    h = _host()
    assert len(h.bus.violation(_A, "f", "default").events) == 24
    h.bus.max_events = 5
    v = h.bus.violation(_A, "f", "five")
    assert len(v.events) == 5
    # The newest ones: those that led to it.
    assert v.events == h.bus.recent_events(5)
    h.bus.max_events = 0
    assert h.bus.violation(_A, "f", "none").events == ()
