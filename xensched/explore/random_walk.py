"""Random walk: at every step, any enabled thread, uniformly.

Mirrors nothing in Xen. The simplest strategy and often the fastest to a shallow bug;
each run draws from its own ``random.Random`` seeded with the exploration's seed and
the run's number, so run ``r`` of seed ``s`` is the same execution every time.

Left out: any memory of earlier runs (two runs may be one execution, and a walk is
never exhaustive), and uniformity over executions: each step is uniform, so an
execution that needs many steps of one thread in a row is rarely drawn.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from xensched.explore.base import Op, Step

__all__ = ["RandomWalk"]


class RandomWalk:
    """Pick uniformly among the enabled threads at every step."""

    name = "random"
    #: Steps are chosen at visible accesses only (:mod:`xensched.explore.visible`).
    visible_only = True
    #: It never looks at the pending operations: the driver builds only the chosen
    #: thread's.
    needs_pending = False

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._rng = random.Random(0)
        self.runs = 0

    def begin(self, run: int) -> bool:
        self._rng = random.Random(f"xensched-random:{self.seed}:{run}")
        return True

    def choose(
        self,
        step: int,
        enabled: Sequence[str],
        pending: Mapping[str, Op],
        last: str | None,
    ) -> str | None:
        return (
            enabled[self._rng.randrange(len(enabled))]
            if len(enabled) > 1
            else enabled[0]
        )

    def end(self, steps: Sequence[Step], abandoned: bool) -> None:
        self.runs += 1

    @property
    def exhaustive(self) -> bool:
        return False

    def summary(self) -> dict[str, object]:
        return {}
