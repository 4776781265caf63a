"""Preemption-bounded depth-first search (Musuvathi and Qadeer, PLDI 2007), unreduced.

Mirrors nothing in Xen. Every enabled thread is tried at every step, as long as the
execution's preemptions stay within ``max_preemptions`` (``None``: no bound, every
interleaving; feasible only for a few dozen steps). Most concurrency bugs need few
preemptions, so a small bound covers much in little time, and the bounded search is
iterative (:mod:`xensched.explore.tree`): within 0 preemptions first, then 1, up to
the bound; the search says whether it
was *exhaustive* (no choice was cut by the bound: every interleaving was run) or only
*bound-exhausted*. It is also the reference that DPOR's reductions are checked
against.
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

    def initial_backtrack(self, node: Node) -> set[str]:
        return set(node.enabled)
