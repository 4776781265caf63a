"""Preemption-bounded depth-first search (Musuvathi and Qadeer, PLDI 2007).

Mirrors nothing in Xen. Every enabled thread is tried at every scheduling point, as long as the
execution's preemptions stay within ``max_preemptions`` (``None``: no bound, every
interleaving; feasible only for a few dozen steps). Most concurrency bugs need few
preemptions, so a small bound covers much in little time, and the bounded search is
iterative (:mod:`xensched.explore.tree`): within 0 preemptions first, then 1, up to
the bound; the search says whether it
was *exhaustive* (no choice was cut by the bound: every interleaving was run) or only
*bound-exhausted*.

Within a bound it reduces twice, each time leaving out only executions equivalent to
one within the same bound that it runs:

- it chooses at visible accesses only (:mod:`xensched.explore.visible`, which says
  why) and starts its round again when the visible set grows; ``all_points`` of the
  explorer makes every point a choice again;
- a thread ``p`` preempted at a step where its pending operation ``a`` is a load
  sleeps from there until a step dependent on ``a`` runs (``preempted_sleeps``), and
  is not chosen while it sleeps (a silent store, :func:`xensched.explore.base.silent`,
  is no write here either: it changes nothing the load could read, so it leaves the
  thread asleep). An execution that resumed it asleep ran ``a`` after
  steps that all commute with it, so running ``a`` before them instead is
  equivalent, and no dearer: ``p`` goes on at that step (no preemption), its switch
  away comes one step later (at most the one preemption it replaces), and the switch
  back to ``p`` becomes a switch to the thread that ran after ``a`` (a preemption only
  where that one was). A load changes nothing, so what each switch in between costs
  stays the same; a write could enable a thread (an unlock its waiter, a store a
  parked pCPU's wake) and make a free switch away from that thread a preemption,
  which is how a sleep for every pending operation lost two final states of a
  three-thread program (a test keeps it). The equivalent execution chooses ``p`` where
  the other chose another thread; the least of them in that order is never left out,
  so each class within the bound is run. Sleep sets in full (every thread tried
  before, as DPOR keeps them) are unsound under a bound: the equivalent execution can
  need more preemptions than the bound allows. Only the thread that ran last has the
  cheap order above.

The fixed round trip within 2 preemptions: 8,378 executions at every point without
either, 2,306 at visible points, 1,246 with both (about half cut short where every
enabled thread sleeps); the ``switch-race`` credit -> credit2 add, 13,512 with both
(and the locksets of :mod:`xensched.explore.visible`; 47,481 at visible points alone,
measured before stop 26's fixes of fidelity to Xen).
``reduced=False`` turns both off. Without a bound DFS chooses at every
point and sleeps nothing: it is the reference that DPOR's reductions and these are
checked against.
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

    def __init__(
        self,
        max_preemptions: int | None = None,
        shard: tuple[int, int] | None = None,
        *,
        reduced: bool = True,
    ) -> None:
        super().__init__(max_preemptions, shard)
        # ``reduced``: within a bound, the two reductions of the module docstring;
        # False: every execution within the bound, at every point (the reference
        # they are checked against).
        self.preempted_sleeps = reduced and max_preemptions is not None

    @property
    def visible_only(self) -> bool:  # type: ignore[override]
        """Within a bound, choose at visible accesses only (see the module
        docstring); without one, or in a shard, at every point."""
        return self.preempted_sleeps and self.shard is None

    def initial_backtrack(self, node: Node) -> set[str]:
        return set(node.enabled)
