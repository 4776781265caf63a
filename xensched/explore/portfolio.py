"""A portfolio: several strategies taking turns, one execution each.

Mirrors nothing in Xen. No single strategy wins everywhere: a random walk finds a
shallow bug in a handful of runs, PCT gives a probabilistic guarantee by depth, and
DPOR proves a small program correct but may take long to reach a deep corner of a big
one. The portfolio runs them in turn (run ``r`` goes to member ``r mod m``, skipping
members that are exhausted); it is exhaustive as soon as one exhaustive member is,
since that member alone has covered every execution.

Left out: adapting the turns to what finds bugs (the order is fixed round robin) and
sharing what one member learnt with another (DPOR's tree never hears of a random
walk's executions).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xensched.explore.dpor import DPOR
from xensched.explore.pct import PCT
from xensched.explore.random_walk import RandomWalk
from xensched.explore.visible import tell_grew

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from xensched.explore.base import Op, SearchStrategy, Step

__all__ = ["Portfolio"]


class Portfolio:
    """Members take turns; see the module docstring."""

    name = "portfolio"

    def __init__(self, members: Sequence[SearchStrategy]) -> None:
        if not members:
            raise ValueError("a portfolio needs at least one strategy")
        self.members = list(members)
        self._runs = [0] * len(members)
        self._done = [False] * len(members)
        self._current = 0
        self._turn = 0

    @classmethod
    def default(
        cls,
        seed: int = 0,
        max_preemptions: int | None = None,
        shard: tuple[int, int] | None = None,
    ) -> Portfolio:
        """DPOR (within ``max_preemptions``: BPOR, DFS within the bound reduced),
        PCT of depths 1 to 3, random."""
        from xensched.explore.engine import SeedShard  # engine imports this module

        systematic: SearchStrategy = DPOR(shard=shard, max_preemptions=max_preemptions)
        sampled: list[SearchStrategy] = [
            PCT(seed, 1),
            PCT(seed, 2),
            PCT(seed, 3),
            RandomWalk(seed),
        ]
        if shard is not None:
            sampled = [SeedShard(m, *shard) for m in sampled]
        return cls([systematic, *sampled])

    def begin(self, run: int) -> bool:
        m = len(self.members)
        for _ in range(m):
            k = self._turn % m
            self._turn += 1
            if self._done[k]:
                continue
            if self.members[k].begin(self._runs[k]):
                self._current = k
                return True
            self._done[k] = True
            if self.members[k].exhaustive:
                return False
        return False

    def choose(
        self,
        step: int,
        enabled: Sequence[str],
        pending: Mapping[str, Op],
        last: str | None,
    ) -> str | None:
        return self.members[self._current].choose(step, enabled, pending, last)

    def end(self, steps: Sequence[Step], abandoned: bool) -> None:
        k = self._current
        self._runs[k] += 1
        self.members[k].end(steps, abandoned)

    @property
    def visible_only(self) -> bool:
        """The member running now chooses at visible accesses only."""
        return bool(getattr(self.current, "visible_only", False))

    def visible_grew(self) -> None:
        """The visible set grew: tell the members that count on it."""
        for m in self.members:
            tell_grew(m)

    @property
    def current(self) -> SearchStrategy:
        """The member running the current execution."""
        return self.members[self._current]

    @property
    def exhaustive(self) -> bool:
        return any(m.exhaustive for m in self.members)

    @property
    def foreign(self) -> bool:
        """The execution that just ended is another shard's (see ``TreeSearch``)."""
        return bool(getattr(self.current, "foreign", False))

    def summary(self) -> dict[str, object]:
        return {
            "members": [
                {
                    "strategy": m.name
                    + (f"(depth {m.summary()['depth']})" if m.name == "pct" else ""),
                    "runs": r,
                    **m.summary(),
                }
                for m, r in zip(self.members, self._runs, strict=True)
            ]
        }
