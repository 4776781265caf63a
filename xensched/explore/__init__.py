"""Systematic and randomised exploration of controlled runs: strategies, the explorer,
replay files, shrinking and the story of a failing run.

Mirrors nothing in Xen. Every strategy implements
:class:`~xensched.explore.base.SearchStrategy` and is registered by name in
:data:`STRATEGIES` (what ``--strategy`` takes); :func:`make_strategy` builds one from
the options every front end shares.

Left out: runs that are not controlled. Free-running stress (the OS schedules the
threads) is :mod:`xensched_stress`'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from xensched.errors import ConfigError
from xensched.explore.base import (
    Op as Op,
    SearchStrategy as SearchStrategy,
    Step as Step,
)
from xensched.explore.dfs import BoundedDFS as BoundedDFS
from xensched.explore.dpor import DPOR as DPOR
from xensched.explore.engine import (
    Execution as Execution,
    Explorer as Explorer,
    ExploreResult as ExploreResult,
    ScenarioTarget as ScenarioTarget,
    SeedShard as SeedShard,
    host_state as host_state,
)
from xensched.explore.pct import PCT as PCT
from xensched.explore.portfolio import Portfolio as Portfolio
from xensched.explore.random_walk import RandomWalk as RandomWalk

if TYPE_CHECKING:
    from collections.abc import Callable

#: ``--strategy`` names and what each is.
STRATEGIES: Final[dict[str, str]] = {
    "random": "random walk: any enabled thread, uniformly, at every step",
    "pct": "PCT: random priorities with DEPTH-1 change points (probabilistic bound)",
    "dfs": "depth-first search of every interleaving within --max-preemptions",
    "dpor": "source-DPOR with sleep sets: one execution per Mazurkiewicz trace",
    "portfolio": "DPOR, PCT (depths 1-3) and random walks, taking turns",
}


def make_strategy(
    name: str,
    *,
    seed: int = 0,
    depth: int = 3,
    max_preemptions: int | None = None,
    shard: tuple[int, int] | None = None,
) -> SearchStrategy:
    """The strategy ``name`` of :data:`STRATEGIES`; ``shard=(k, n)`` makes it the
    ``k``-th of ``n`` disjoint shares of the exploration (subtrees for ``dfs`` and
    ``dpor``, runs for the randomised ones; the portfolio shares each member).

    Raises:
        ConfigError: an unknown name, or an option the strategy does not take.
    """
    if max_preemptions is not None and name not in ("dfs", "dpor", "portfolio"):
        raise ConfigError(
            "--max-preemptions bounds the dfs and dpor strategies (and the "
            f"portfolio's dpor), not {name}"
        )

    def seeds(inner: SearchStrategy) -> SearchStrategy:
        return inner if shard is None else SeedShard(inner, *shard)

    makers: dict[str, Callable[[], SearchStrategy]] = {
        "random": lambda: seeds(RandomWalk(seed)),
        "pct": lambda: seeds(PCT(seed, depth)),
        "dfs": lambda: BoundedDFS(max_preemptions, shard),
        "dpor": lambda: DPOR(shard=shard, max_preemptions=max_preemptions),
        "portfolio": lambda: Portfolio.default(seed, max_preemptions, shard),
    }
    make = makers.get(name)
    if make is None:
        raise ConfigError(
            f"no strategy {name!r}; choose one of {', '.join(STRATEGIES)}"
        )
    # Outside any try: a KeyError of a strategy's own is a bug to see, not a name.
    return make()


__all__ = [
    "DPOR",
    "PCT",
    "STRATEGIES",
    "BoundedDFS",
    "Execution",
    "ExploreResult",
    "Explorer",
    "Op",
    "Portfolio",
    "RandomWalk",
    "ScenarioTarget",
    "SearchStrategy",
    "Step",
    "host_state",
    "make_strategy",
]
