"""The optional checkers of a run (lockdep today), as each command installs them.

Mirrors nothing in Xen. ``--lockdep`` (``xensched stress``, ``explore``, ``replay``,
``reproduce``, and the pytest plugin) installs a :class:`~xensched.lockdep.Lockdep` on
the bus of each run: its violations are the run's like any other, and
:class:`LockdepSummary` is what the reports add (acquisitions checked, lock classes,
the order graph's edges, the declared exceptions used).

Under the controlled driver each *execution* gets a fresh ``Lockdep``
(:class:`LockdepTarget`), not one per exploration: a ``lock-order`` violation must
come back when its schedule is replayed alone (a replay file, the shrinker, the story
all re-run one schedule), which a graph taught by earlier executions would not give.
A cycle whose two orders never meet in one execution is therefore missed; the
summary is still the union over the executions. A stress run is one execution, with
one ``Lockdep`` for its whole length.

Leaves out: the race detector (issue 10, item 2), which will sit beside lockdep here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from xensched.lockdep import Lockdep

if TYPE_CHECKING:
    from xensched.explore.engine import Run, Target

__all__ = ["LOCKDEP_DEFAULT", "LockdepSummary", "LockdepTarget", "SanctionUse"]

#: Lockdep's default in every command and the plugin: off, because its measured cost
#: is above 10% of ``schedule()`` throughput (README, "Lockdep"; bench part g).
LOCKDEP_DEFAULT = False


@dataclass(frozen=True, slots=True)
class SanctionUse:
    """A declared exception to the order that a run used, first seen in ``where``."""

    held: str
    taken: str
    where: str
    why: str
    cpu: str

    def to_json(self) -> dict[str, str]:
        return {
            "held": self.held,
            "taken": self.taken,
            "where": self.where,
            "why": self.why,
        }


@dataclass(frozen=True, slots=True)
class LockdepSummary:
    """What lockdep checked in one run or a union of runs."""

    acquisitions: int = 0
    classes: tuple[str, ...] = ()
    edges: tuple[tuple[str, str], ...] = ()
    sanctioned: tuple[SanctionUse, ...] = ()
    #: Each edge's first acquisition, ``held -> taken``: who, in which functions.
    where: dict[tuple[str, str], str] = field(default_factory=dict, compare=False)

    @classmethod
    def of(cls, dep: Lockdep) -> LockdepSummary:
        edges = dict(dep.edges)
        uses = tuple(
            SanctionUse(held, taken, s.where, s.why, e.cpu)
            for (held, taken), (s, e) in sorted(dep.sanctioned.items())
        )
        return cls(
            dep.acquisitions,
            tuple(sorted(dep.irq_use)),
            tuple(sorted(edges)),
            uses,
            {k: e.describe() for k, e in edges.items()},
        )

    def merge(self, other: LockdepSummary) -> LockdepSummary:
        """The union of two summaries (acquisitions add up)."""
        uses = {(u.held, u.taken): u for u in other.sanctioned}
        uses.update({(u.held, u.taken): u for u in self.sanctioned})
        return LockdepSummary(
            self.acquisitions + other.acquisitions,
            tuple(sorted({*self.classes, *other.classes})),
            tuple(sorted({*self.edges, *other.edges})),
            tuple(uses[k] for k in sorted(uses)),
            {**other.where, **self.where},
        )

    def to_json(self) -> dict[str, object]:
        """The ``"lockdep"`` object of the JSON reports."""
        return {
            "acquisitions": self.acquisitions,
            "classes": list(self.classes),
            "edges": [list(e) for e in self.edges],
            "sanctioned": [u.to_json() for u in self.sanctioned],
        }

    def lines(self) -> list[str]:
        """The text report's lines."""
        out = [
            f"lockdep: {self.acquisitions:,} acquisitions checked, "
            f"{len(self.classes)} lock classes, {len(self.edges)} order edges"
            + (
                f": {', '.join(f'{a} -> {b}' for a, b in self.edges)}"
                if self.edges
                else ""
            )
        ]
        if self.sanctioned:
            out.append("lockdep: declared exceptions used (SANCTIONED, not checked):")
            for u in self.sanctioned:
                out.append(f"  {u.held} -> {u.taken} in {u.where}() ({u.cpu}): {u.why}")
        return out


class LockdepTarget:
    """A target whose every run has a fresh :class:`Lockdep` on its bus; the union of
    what they checked is :attr:`summary`."""

    def __init__(self, inner: Target) -> None:
        self.inner = inner
        self._current: Lockdep | None = None
        self._done = LockdepSummary()

    def new_run(self) -> Run:
        self._fold()
        run = self.inner.new_run()
        self._current = Lockdep()
        run.bus.add_instrument(self._current)
        return run

    def _fold(self) -> None:
        # Kept as a summary, not as the Lockdep: that one holds the run's contexts,
        # and so its whole host, alive.
        if self._current is not None:
            self._done = self._done.merge(LockdepSummary.of(self._current))
            self._current = None

    @property
    def summary(self) -> LockdepSummary:
        self._fold()
        return self._done


def with_lockdep(target: Target, on: bool) -> Target:
    """``target``, wrapped in a :class:`LockdepTarget` when ``on``."""
    return LockdepTarget(target) if on else target


def summary_of(target: Target) -> LockdepSummary | None:
    """The lockdep summary of a target :func:`with_lockdep` made, or None."""
    return target.summary if isinstance(target, LockdepTarget) else None
