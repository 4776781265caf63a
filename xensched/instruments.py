"""The optional checkers of a run (lockdep, the race detector), as each command
installs them.

Mirrors nothing in Xen. ``--lockdep`` and ``--race-detector`` (``xensched stress``,
``explore``, ``replay``, ``reproduce``, and the pytest plugin) install a
:class:`~xensched.lockdep.Lockdep` and a :class:`~xensched.race_detector.RaceDetector`
on the bus of each run: their violations are the run's like any other, and
:class:`LockdepSummary` and :class:`RaceSummary` are what the reports add (lockdep:
acquisitions checked, lock classes, the order graph's edges, the declared exceptions
used; the race detector: accesses checked and each race with both accesses).

Under the controlled driver each *execution* gets fresh instruments
(:class:`InstrumentedTarget`), not one per exploration: a ``lock-order`` or
``data-race`` violation must come back when its schedule is replayed alone (a replay
file, the shrinker, the story all re-run one schedule), which a graph or vector
clocks taught by earlier executions would not give. A cycle whose two orders never
meet in one execution is therefore missed; the summaries are still the union over the
executions. A stress run is one execution, with one of each for its whole length.

Leaves out: nothing of the instruments themselves (they live in their own modules).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from xensched.lockdep import Lockdep
from xensched.race_detector import RaceDetector, Seen

if TYPE_CHECKING:
    from xensched.explore.engine import Run, Target
    from xensched.interaction import Bus

__all__ = [
    "LOCKDEP_DEFAULT",
    "RACE_DETECTOR_DEFAULT",
    "InstrumentedTarget",
    "LockdepSummary",
    "RaceSummary",
    "SanctionUse",
]

#: Lockdep's default in every command and the plugin: off, because its measured cost
#: is above 10% of ``schedule()`` throughput (README, "Lockdep"; bench part g).
LOCKDEP_DEFAULT = False

#: The race detector's default: off, because it makes every load an interaction point
#: (README, "What the race detector finds"; bench part g).
RACE_DETECTOR_DEFAULT = False


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


def _seen_json(a: Seen) -> dict[str, object]:
    return {"context": a.context, "kind": a.kind, "fn": a.fn, "locks": list(a.locks)}


@dataclass(frozen=True, slots=True)
class RaceSummary:
    """What the race detector checked in one run or a union of runs."""

    accesses: int = 0
    #: (field label, first access, second access), each (field, two functions) once.
    races: tuple[tuple[str, Seen, Seen], ...] = ()

    @classmethod
    def of(cls, det: RaceDetector) -> RaceSummary:
        return cls(det.accesses, tuple(det.races))

    def merge(self, other: RaceSummary) -> RaceSummary:
        """The union of two summaries (accesses add up; a race another run already
        reported for the same field and functions is kept once, the first)."""
        keys = {(f, a.fn, b.fn) for f, a, b in self.races}
        extra = tuple(r for r in other.races if (r[0], r[1].fn, r[2].fn) not in keys)
        return RaceSummary(self.accesses + other.accesses, self.races + extra)

    def to_json(self) -> dict[str, object]:
        """The ``"race_detector"`` object of the JSON reports."""
        return {
            "accesses": self.accesses,
            "races": [
                {"field": f, "first": _seen_json(a), "second": _seen_json(b)}
                for f, a, b in self.races
            ],
        }

    def lines(self) -> list[str]:
        """The text report's lines."""
        out = [
            f"race detector: {self.accesses:,} accesses checked, "
            f"{len(self.races)} races found"
        ]
        for f, a, b in self.races:
            out.append(f"  {f}: {a.describe()}, and {b.describe()}")
        return out


class InstrumentedTarget:
    """A target whose every run has a fresh :class:`Lockdep` and/or
    :class:`RaceDetector` on its bus, as asked; the union of what they checked is
    :attr:`lockdep_summary` and :attr:`race_summary` (None for one not asked for)."""

    def __init__(
        self, inner: Target, *, lockdep: bool = False, race_detector: bool = False
    ) -> None:
        self.inner = inner
        self.lockdep = lockdep
        self.race_detector = race_detector
        self._dep: Lockdep | None = None
        self._det: RaceDetector | None = None
        self._deps = LockdepSummary()
        self._races = RaceSummary()

    def new_run(self) -> Run:
        self._fold()
        run = self.inner.new_run()
        self.install(run.bus)
        return run

    def install(self, bus: Bus) -> None:
        """Fresh instruments, as asked, on ``bus`` (what :meth:`new_run` does)."""
        if self.lockdep:
            self._dep = Lockdep()
            bus.add_instrument(self._dep)
        if self.race_detector:
            self._det = RaceDetector()
            bus.add_instrument(self._det)

    def _fold(self) -> None:
        # Kept as summaries, not as the instruments: those hold the run's contexts,
        # and so its whole host, alive.
        if self._dep is not None:
            self._deps = self._deps.merge(LockdepSummary.of(self._dep))
            self._dep = None
        if self._det is not None:
            self._races = self._races.merge(RaceSummary.of(self._det))
            self._det = None

    @property
    def lockdep_summary(self) -> LockdepSummary | None:
        self._fold()
        return self._deps if self.lockdep else None

    @property
    def race_summary(self) -> RaceSummary | None:
        self._fold()
        return self._races if self.race_detector else None


def with_instruments(
    target: Target, *, lockdep: bool = False, race_detector: bool = False
) -> Target:
    """``target``, wrapped in an :class:`InstrumentedTarget` when any is asked for."""
    if lockdep or race_detector:
        return InstrumentedTarget(target, lockdep=lockdep, race_detector=race_detector)
    return target


def summary_of(target: Target) -> LockdepSummary | None:
    """The lockdep summary of a target :func:`with_instruments` made, or None."""
    if isinstance(target, InstrumentedTarget):
        return target.lockdep_summary
    return None


def races_of(target: Target) -> RaceSummary | None:
    """The race summary of a target :func:`with_instruments` made, or None."""
    if isinstance(target, InstrumentedTarget):
        return target.race_summary
    return None
