"""Preemption-bounded depth-first search (Musuvathi and Qadeer, PLDI 2007).

Mirrors nothing in Xen. Every enabled thread is tried at every scheduling point, as long as the
execution's preemptions stay within ``max_preemptions`` (``None``: no bound, every
interleaving; feasible only for a few dozen steps). Most concurrency bugs need few
preemptions, so a small bound covers much in little time, and the bounded search is
iterative (:mod:`xensched.explore.tree`): within 0 preemptions first, then 1, up to
the bound; the search says whether it
was *exhaustive* (no choice was cut by the bound: every interleaving was run) or only
*bound-exhausted*.

Within a bound it chooses at visible accesses only (:mod:`xensched.explore.visible`,
which says why that loses no execution up to equivalence) and starts its round again
when the visible set grows; ``all_points`` of the explorer makes every point a choice
again. Without a bound it chooses at every point: it is the reference that DPOR's
reductions and the visible points themselves are checked against.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xensched.explore.tree import TreeSearch

if TYPE_CHECKING:
    from xensched.explore.tree import Node

__all__ = ["BoundedDFS"]


class BoundedDFS(TreeSearch):
    """Every enabled thread at every step, within the preemption bound."""

    name = "dfs"

    @property
    def visible_only(self) -> bool:  # type: ignore[override]
        """Within a bound, choose at visible accesses only (see the module
        docstring); without one, or in a shard, at every point."""
        return self.max_preemptions is not None and self.shard is None

    def initial_backtrack(self, node: Node) -> set[str]:
        return set(node.enabled)
