"""PCT: probabilistic concurrency testing (Burckhardt et al., ASPLOS 2010).

Mirrors nothing in Xen. Each run gives the threads distinct random priorities
``d .. d+n-1`` and picks ``d - 1`` random *change points* among the first ``k`` steps;
at every step the enabled thread of highest priority runs, and at the ``i``-th change
point the running thread drops to priority ``d - i``, below every initial one. A bug of
*depth* ``d`` (``d`` ordering constraints between steps of ``n`` threads in executions
of at most ``k`` steps) is found by one run with probability at least
``1 / (n k^(d-1))``, so ``R`` runs miss it with probability at most
``(1 - 1 / (n k^(d-1)))^R``: :meth:`PCT.summary` reports both.

``k`` is not known before the first run: it starts at :data:`INITIAL_STEPS` and is the
longest execution seen so far afterwards (the bound is computed with the ``k`` in use).
A thread that appears late gets a random initial priority among the others'.

Steps are the scheduling points: the visible accesses (:mod:`xensched.explore.visible`),
so ``k`` counts only accesses that another thread conflicts with, and a bug's ordering
constraints are between such accesses. Until the set of visible objects stops
growing, a run may have chosen among too few points: the miss probability counts only
the runs since it last grew (``counted_runs``).

Left out: a ``k`` fixed before the first run, as the paper assumes (here it is the
longest execution met so far, so the bound of the first runs is over an estimate),
and the later variants for weak memory models.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from xensched.explore.base import Op, Step

__all__ = ["INITIAL_STEPS", "PCT", "pct_bound"]

#: ``k`` for the first run, before any execution's length is known.
INITIAL_STEPS = 200


def pct_bound(threads: int, steps: int, depth: int) -> float:
    """The per-run probability bound ``1 / (n k^(d-1))`` of PCT."""
    return 1.0 / (max(threads, 1) * float(max(steps, 1)) ** (depth - 1))


class PCT:
    """Priority-based scheduling with ``depth - 1`` random priority change points."""

    name = "pct"
    #: Steps are chosen at visible accesses only (:mod:`xensched.explore.visible`).
    visible_only = True
    #: It never looks at the pending operations: the driver builds only the chosen
    #: thread's.
    needs_pending = False

    def __init__(self, seed: int = 0, depth: int = 3) -> None:
        if depth < 1:
            raise ValueError(f"PCT depth {depth}: must be at least 1")
        self.seed = seed
        self.depth = depth
        self.k = INITIAL_STEPS
        self.threads = 0
        self.runs = 0
        self.counted = 0  # runs since the visible set last grew
        self._rng = random.Random(0)
        self._prio: dict[str, float] = {}
        self._changes: dict[int, int] = {}

    def begin(self, run: int) -> bool:
        self._rng = rng = random.Random(f"xensched-pct:{self.seed}:{self.depth}:{run}")
        self._prio = {}
        # Steps count from 0 (the engine's choice index): the k steps are 0..k-1.
        points = rng.sample(range(self.k), min(self.depth - 1, self.k))
        # The i-th change point (in step order) lowers the runner to depth - i.
        self._changes = {s: self.depth - i for i, s in enumerate(sorted(points), 1)}
        return True

    def _priority(self, name: str) -> float:
        p = self._prio.get(name)
        if p is None:
            # Distinct initial priorities above every change point's (d - i < d).
            p = self.depth + self._rng.random() * 1000.0
            self._prio[name] = p
        return p

    def choose(
        self,
        step: int,
        enabled: Sequence[str],
        pending: Mapping[str, Op],
        last: str | None,
    ) -> str | None:
        best = max(enabled, key=self._priority)
        low = self._changes.get(step)
        if low is not None:
            self._prio[best] = low
            best = max(enabled, key=self._priority)
        return best

    def end(self, steps: Sequence[Step], abandoned: bool) -> None:
        self.runs += 1
        self.counted += 1
        self.k = max(self.k if self.runs > 1 else 0, len(steps), 1)
        self.threads = max(self.threads, len(self._prio))

    @property
    def exhaustive(self) -> bool:
        return False

    def summary(self) -> dict[str, object]:
        p = pct_bound(self.threads, self.k, self.depth)
        return {
            "depth": self.depth,
            "threads": self.threads,
            "steps_bound": self.k,
            "per_run_probability": p,
            "counted_runs": self.counted,
            "miss_probability": (1.0 - p) ** self.counted,
        }

    def visible_grew(self) -> None:
        """The run that just ended found a new visible object: the runs so far
        chose among too few points to count towards the bound."""
        self.counted = 0
