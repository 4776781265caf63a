"""Violations: a failed check, as data.

A :class:`Violation` has a stable kind (its value is what reports and JSON show), the
pCPU, the Xen function where it was seen, a message and the recent events that led to
it. The checks that produce them are in :mod:`xensched.checks`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xensched.smp import Event


class ViolationKind(enum.StrEnum):
    """Stable names of the checks; the value is what reports and JSON show."""

    LOCK_MISMATCH = "lock-mismatch"
    ASSERT = "assert"
    LOCK_CLOBBERED = "lock-clobbered"
    MUTUAL_EXCLUSION = "mutual-exclusion"
    DEADLOCK = "deadlock"
    CRASH = "crash"
    LIVELOCK = "livelock"
    LOCK_ORDER = "lock-order"
    IRQ_INVERSION = "irq-inversion"
    DATA_RACE = "data-race"
    MEMBERSHIP = "membership"
    XL_RESULT = "xl-result"

    def describe(self) -> str:
        return _DESCRIPTIONS[self]


_DESCRIPTIONS = {
    ViolationKind.LOCK_MISMATCH: "scheduler code ran under a lock its scheduler does "
    "not use for that pCPU",
    ViolationKind.ASSERT: "an emulated Xen ASSERT/BUG_ON failed",
    ViolationKind.LOCK_CLOBBERED: "after a switch the pCPU's schedule_lock is not its "
    "scheduler's",
    ViolationKind.MUTUAL_EXCLUSION: "two pCPUs were inside one runqueue's critical "
    "section at once",
    ViolationKind.DEADLOCK: "a bounded wait for a lock or a turn ran out",
    ViolationKind.CRASH: "emulated code raised an unexpected exception",
    ViolationKind.LIVELOCK: "a controlled execution ran past its step bound",
    ViolationKind.LOCK_ORDER: "two lock classes were taken in both orders (lockdep): "
    "a deadlock waiting for its timing",
    ViolationKind.IRQ_INVERSION: "a lock class was used both with IRQs enabled and "
    "disabled, or an IRQ-safe one held while an IRQ-unsafe one was taken",
    ViolationKind.DATA_RACE: "two CPUs accessed one shared field, at least one "
    "writing, unordered by happens-before (the race detector)",
    ViolationKind.MEMBERSHIP: "after an xl operation the host differs from the "
    "reference model of membership (pools, free pCPUs, domains, each pCPU's "
    "scheduler and lock): xensched fuzz",
    ViolationKind.XL_RESULT: "an xl operation was accepted where Xen refuses it, "
    "refused where Xen accepts it or with another errno, or refused yet changed the "
    "host: xensched fuzz",
}


@dataclass(frozen=True, slots=True)
class Violation:
    """One failed check: what, on which pCPU, in which Xen function, and what led to it.

    ``events`` holds ``(ns, context, kind, label, Xen function)`` tuples, oldest first.
    """

    kind: ViolationKind
    cpu: int | None
    where: str
    message: str
    context: str
    events: tuple[Event, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind.value,
            "cpu": self.cpu,
            "where": self.where,
            "message": self.message,
            "context": self.context,
            "events": [
                {"context": e[1], "point": e[2], "what": e[3], "in": e[4]}
                for e in self.events
            ],
        }

    def describe(self) -> str:
        cpu = "-" if self.cpu is None else f"cpu{self.cpu}"
        return f"{self.kind.value} on {cpu} in {self.where}(): {self.message}"
