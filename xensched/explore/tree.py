"""Stateless systematic search: the tree of executions, re-run from the start.

Mirrors nothing in Xen. A controlled run cannot be snapshotted (its state is in real
threads' stacks), so systematic strategies are *stateless* (Godefroid, VeriSoft): each
execution re-runs the scenario from its initial state, follows a recorded prefix of
choices and then extends it. :class:`TreeSearch` keeps, for each step of the current
execution, a :class:`Node`: the enabled threads and their pending operations, what was
chosen, what is still to try there (``backtrack``), what has been tried (``done``) and
the *sleep set* (threads whose next step need not be tried, because an equivalent
execution has been). The next execution backtracks to the deepest node with something
left to try. Subclasses say what to try: :class:`~xensched.explore.dfs.BoundedDFS`
every enabled thread within a preemption bound, :class:`~xensched.explore.dpor.DPOR`
what its race analysis adds.

A *preemption* is a step that switches away from a thread that could have gone on.
Both searches try the thread that ran last first, so the first execution has none.
With a preemption bound ``B`` the search is *iterative* (Musuvathi and Qadeer's
iterative context bounding): it searches the tree within 0 preemptions, then within 1,
up to ``B``, so that a bug that needs few preemptions is found before the many
executions with more are tried. Each round re-runs the executions of the rounds before
(a small share: the executions within ``b`` preemptions grow with the ``b``-th power
of the steps); only the last round decides whether the search was exhaustive.

Left out: state caching (two prefixes that reach one state are each searched below),
and programs that are not deterministic under a schedule: a re-run that enables other
threads than its recorded prefix did is a :class:`ScheduleDivergedError`, not a
branch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xensched.explore.base import independent, thread_of, variants

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from xensched.explore.base import Op, Step

__all__ = ["Node", "ScheduleDivergedError", "TreeSearch"]

# The sleep set of a node below which nothing sleeps: shared, and never written
# (a node's sleep set is only read once the node is made).
_NO_SLEEP: dict[str, Op] = {}


def _relaxed(enabled: Sequence[str]) -> bool:
    """Are a memory model's choices (loads of older values, drains) among them?"""
    return any("~" in t or ">" in t for t in enabled)


class ScheduleDivergedError(RuntimeError):
    """A re-run did not follow its prefix: the program is not deterministic."""


class Node:
    """One step of the current execution, and what is left to try there."""

    __slots__ = (
        "backtrack",
        "chosen",
        "done",
        "enabled",
        "last",
        "only",
        "order",
        "pending",
        "preemptions",
        "sleep",
    )

    def __init__(
        self,
        enabled: tuple[str, ...],
        pending: Mapping[str, Op],
        last: str | None,
        preemptions: int,
        sleep: dict[str, Op],
    ) -> None:
        self.enabled = enabled
        self.pending = pending  # the chooser's, built for this step and never changed
        self.last = last
        self.preemptions = preemptions  # before this step's choice
        self.sleep = sleep
        self.chosen = ""
        self.backtrack: set[str] = set()
        self.done: set[str] = set()
        self.only: frozenset[str] | None = None  # this shard's share of the choices
        #: At the split of a sharded search: every choice, in the order a single
        #: search would try them (see :meth:`TreeSearch._split`).
        self.order: tuple[str, ...] | None = None

    def cost(self, thread: str) -> int:
        """1 when choosing ``thread`` here is a preemption."""
        last = self.last
        if last is None or thread == last:
            return 0
        was = thread_of(last)
        if thread_of(thread) == was:
            return 0  # the same thread, its load reading an older value
        return 1 if any(thread_of(t) == was for t in self.enabled) else 0

    def left(self) -> list[str]:
        """What is still to try here, the cheapest (no preemption) first."""
        todo = [
            t
            for t in self.enabled
            if t in self.backtrack
            and t not in self.done
            and t not in self.sleep
            and (self.only is None or t in self.only)
        ]
        todo.sort(key=self.cost)
        return todo


class TreeSearch:
    """The stateless search loop; see the module docstring.

    ``sleep_sets``: carry sleep sets (sound only with a dependence-aware
    ``backtrack``, i.e. DPOR; unreduced DFS tries everything).

    ``preempted_sleeps``: a thread preempted at a step before a load sleeps from
    there until a step dependent on that load runs: choosing it while it sleeps is
    an execution whose preemption could have come after the load instead, at no
    more preemptions (see :mod:`xensched.explore.dfs`, which uses it within a bound
    and says why a pending write may not sleep).
    """

    name = "tree"
    sleep_sets = False
    preempted_sleeps = False

    def __init__(
        self,
        max_preemptions: int | None = None,
        shard: tuple[int, int] | None = None,
    ) -> None:
        self.max_preemptions = max_preemptions
        #: The bound of the current round of the iterative search (see the module
        #: docstring); ``None`` without a bound.
        self.bound = None if max_preemptions is None else 0
        #: ``(k, n)``: explore only the ``k``-th of ``n`` disjoint subtrees (see
        #: :meth:`_split`); ``None``: the whole tree.
        self.shard = shard
        #: The execution that just ended belongs to another shard (the first one,
        #: which every shard runs to find where the tree splits).
        self.foreign = False
        self.nodes: list[Node] = []
        self._prefix = 0  # steps of the current execution that replay the tree
        self._exhausted = False
        self.pruned = False  # a choice was left out for the preemption bound
        self.executions = 0
        self._round_executions = 0  # executions of the current round
        self.sleep_blocked = 0  # executions cut short: every enabled thread slept
        self.abandoned = False  # the execution being analysed was cut short
        #: Times the search started its round again because the set of visible
        #: objects grew (a search that chooses at visible accesses only).
        self.restarts = 0

    # -- what subclasses decide ---------------------------------------------------------
    def initial_backtrack(self, node: Node) -> set[str]:
        """What to try at a new node besides its first choice."""
        return {node.chosen}

    def analyse(self, steps: Sequence[Step]) -> None:
        """Add to the nodes' backtrack sets after an execution (DPOR's races)."""

    #: Choose at visible accesses only (:mod:`xensched.explore.visible`); a subclass
    #: that says so must start again when the set grows (:meth:`visible_grew`).
    visible_only = False

    def visible_grew(self) -> None:
        """The set of visible objects grew during the execution that just ended:
        the nodes recorded so far chose among other points, so the current round
        starts again on the larger set. The set only grows, so this ends."""
        if not self.visible_only:
            return
        self.restarts += 1
        self.nodes = []
        self._prefix = 0
        self.pruned = False
        self._round_executions = 0

    # -- the SearchStrategy protocol ---------------------------------------------------
    def begin(self, run: int) -> bool:
        if self._exhausted:
            return False
        if run == 0 or not self.nodes:
            self.nodes = []
            self._prefix = 0
            return True
        for i in range(len(self.nodes) - 1, -1, -1):
            node = self.nodes[i]
            left = node.left()
            if left:
                del self.nodes[i + 1 :]
                node.chosen = left[0]
                node.done.add(left[0])
                if node.order is not None:
                    # The choices before it are another shard's (or were this
                    # one's): as done, they go to sleep below it where independent,
                    # as in a single search that tried them first.
                    node.done.update(node.order[: node.order.index(left[0])])
                self._prefix = i + 1
                return True
        # A shard goes on even when its share pruned nothing: another's may have,
        # and the next round splits the tree anew.
        if self.bound is not None and (self.pruned or self.shard is not None):
            assert self.max_preemptions is not None
            if self.bound < self.max_preemptions:
                # The next round: the whole tree again, one more preemption allowed.
                self.bound += 1
                self.pruned = False
                self._round_executions = 0
                self.nodes = []
                self._prefix = 0
                return True
        self._exhausted = True
        return False

    def replayed(
        self, step: int, enabled: Sequence[str]
    ) -> tuple[str, Mapping[str, Op]] | None:
        """At a step of the prefix this execution replays: the choice made there and
        the pending operations it was made among (a deterministic re-run has the
        same), so that the driver need not build them again; else None.

        Raises:
            ScheduleDivergedError: the re-run enabled other threads.
        """
        if step >= self._prefix:
            return None
        node = self._recorded(step, enabled)
        return node.chosen, node.pending

    def _recorded(self, step: int, enabled: Sequence[str]) -> Node:
        """The node of prefix step ``step``, checked against what the re-run
        enabled there.

        Raises:
            ScheduleDivergedError: the re-run enabled other threads.
        """
        node = self.nodes[step]
        if node.chosen not in enabled or tuple(enabled) != node.enabled:
            raise ScheduleDivergedError(
                f"step {step}: the re-run enabled {list(enabled)}, the recorded "
                f"run {list(node.enabled)} (chose {node.chosen})"
            )
        return node

    def choose(
        self,
        step: int,
        enabled: Sequence[str],
        pending: Mapping[str, Op],
        last: str | None,
    ) -> str | None:
        if step < self._prefix:
            return self._recorded(step, enabled).chosen
        nodes = self.nodes
        parent = nodes[-1] if nodes else None
        sleep: dict[str, Op] = _NO_SLEEP
        preemptions = 0
        if parent is not None:
            chosen = parent.chosen
            preemptions = parent.preemptions + parent.cost(chosen)
            # Past the node it backtracked to, a node's only done thread is the
            # one chosen, which never sleeps below it: the sleep set can only
            # shrink, and once empty it stays so (the common case, kept cheap).
            was = parent.last
            preempted = (
                self.preempted_sleeps
                and preemptions > parent.preemptions
                and was is not None
                and was in parent.pending
                and not _relaxed(parent.enabled)
            )
            if parent.sleep or preempted or (self.sleep_sets and len(parent.done) > 1):
                ran = parent.pending[chosen]
                who = thread_of(chosen)
                sleep = {
                    t: op
                    for t, op in parent.sleep.items()
                    if thread_of(t) != who and independent(op, ran)
                }
                if self.sleep_sets:
                    for t in parent.done:
                        op = parent.pending[t]
                        if thread_of(t) != who and independent(op, ran):
                            sleep[t] = op
                elif preempted:
                    # The thread preempted here sleeps while what runs instead is
                    # independent of its pending operation, if that is a load: one
                    # that changes nothing (a write could enable another thread,
                    # and so change what a switch costs).
                    assert was is not None
                    op = parent.pending[was]
                    if op.kind == "load" and independent(op, ran):
                        sleep[was] = op
        bound = self.bound
        node = Node(tuple(enabled), pending, last, preemptions, sleep)
        nodes.append(node)
        relaxed = _relaxed(enabled)
        if (
            not sleep
            and bound is None
            and not relaxed
            and last is not None
            and last in enabled
        ):
            # The common case, with nothing asleep, no bound and no memory model's
            # choices: the thread that ran last goes on (no preemption), as the
            # sort by cost below would pick it.
            chosen = last
        else:
            awake = [t for t in enabled if t not in sleep]
            if not awake:
                return None  # sleep-set blocked: an equivalent execution has run
            if bound is not None:
                allowed = [t for t in awake if preemptions + node.cost(t) <= bound]
                if len(allowed) < len(awake):
                    self.pruned = True
                awake = allowed
                if not awake:  # cannot happen: the last thread costs nothing
                    return None
            awake.sort(key=node.cost)
            chosen = awake[0]
        node.chosen = chosen
        node.done.add(chosen)
        node.backtrack = self.initial_backtrack(node)
        if relaxed:
            # Which older value a load returns is a choice of the program, not an
            # order of threads: each of them is tried wherever its thread is.
            node.backtrack |= set(variants(chosen, enabled))
        if bound is not None:
            node.backtrack = {
                t for t in node.backtrack if preemptions + node.cost(t) <= bound
            } | {chosen}
        return chosen

    def _split(self) -> None:
        """After the first execution: split the tree among the shards.

        Every shard runs the first execution; then the shallowest step where the
        search has two or more choices to try becomes the split: every thread
        enabled there is tried (a superset of any source set, so nothing is lost),
        dealt round-robin to the shards, and below it each shard searches its
        subtrees in full. Each branch starts with the sleep set a single search
        would give it: the choices dealt before it count as done (:meth:`begin`),
        since some shard explores each of them in full. The first execution counts
        for the shard its choice at the split went to; with no such step, the tree
        was that one execution.
        """
        assert self.shard is not None
        k, n = self.shard
        for i, node in enumerate(self.nodes):
            todo = [t for t in node.enabled if t in node.backtrack or t == node.chosen]
            if len(todo) < 2:
                continue
            options = sorted(node.enabled, key=node.cost)
            if self.bound is not None:
                options = [
                    t for t in options if node.preemptions + node.cost(t) <= self.bound
                ]
            mine = frozenset(t for m, t in enumerate(options) if m % n == k)
            node.only = mine
            node.order = tuple(options)
            node.backtrack |= mine
            self.foreign = node.chosen not in mine
            if self.foreign:
                # Nothing below the first execution's choice is this shard's.
                del self.nodes[i + 1 :]
            return
        self.foreign = k != 0
        if self.bound is None:
            self._exhausted = True
        # Else this round's tree was that one execution: begin() starts the next.

    def end(self, steps: Sequence[Step], abandoned: bool) -> None:
        self.executions += 1
        self._round_executions += 1
        first = self._round_executions == 1
        self.foreign = False
        if abandoned and self.nodes and not self.nodes[-1].chosen:
            self.sleep_blocked += 1
            self.nodes.pop()  # the blocked node was never left
        self.abandoned = abandoned
        self.analyse(steps)
        if first and self.shard is not None:
            self._split()

    @property
    def exhaustive(self) -> bool:
        """Every execution of the tree has been run (and none was pruned by a bound)."""
        return self._exhausted and not self.pruned

    @property
    def bound_exhausted(self) -> bool:
        """Every execution within the preemption bound has been run."""
        return self._exhausted

    def summary(self) -> dict[str, object]:
        return {
            "max_preemptions": self.max_preemptions,
            **({"bound_reached": self.bound} if self.bound is not None else {}),
            "bound_exhausted": self._exhausted,
            "pruned_by_bound": self.pruned,
            "sleep_blocked": self.sleep_blocked,
            **({"restarts": self.restarts} if self.visible_only else {}),
        }
