"""Which accesses are scheduling points: the visible ones, learnt across executions.

Mirrors nothing in Xen. Godefroid's stateless search (VeriSoft) schedules only at
*visible* operations: an access to an object that no other thread touches commutes
with every step of every other thread, so running it at once, without offering the
other threads a turn, loses no interleaving up to equivalence. Under the controlled
driver about half of a run's accesses are of that kind (the toolstack's
``cpupool_lock``, the new pool's private data, each CPU's fence), and a sampling
strategy that spends its random choices on them dilutes the ones that matter: on the
legacy round trip a random walk that chooses at every point needs a median of 430 runs
to find the race, one that chooses at visible accesses 5 (bench figure 1, seeds 1 to
20); PCT's ``k`` halves.

Which objects are shared is not known before running, so it is learnt. An access is
*invisible* when its object's label is not in :attr:`Visibility.shared`: no object of
that label has yet *conflicted*, been touched by two threads with at least one write
or lock operation among its accesses, in this execution or an earlier one (earlier
ones too, so that the set is complete sooner). The access that makes a label
conflict is visible and adds it to ``shared`` (:attr:`Visibility.grew`); so does an
object that a parked thread's wake condition reads (the driver records the cells the
condition peeks), since a write to it may enable that thread.

The sampling strategies use it (``visible_only``): a run on too few points is still a
real execution, and PCT counts towards its bound only the runs since the set last
grew. So does DFS within a preemption bound (:mod:`xensched.explore.dfs`): a
preemption just before an invisible access can move to just after it (the access
commutes with whatever the other threads ran meanwhile), which keeps the execution's
equivalence class and adds no preemption, so every bounded execution at every point
has an equivalent one within the same bound at visible points. Each growth makes the
tree built so far choose among other points, so the bounded search starts its round
again (``restarts`` in its summary): the set grows in the first few executions, and the
tree within ``b`` preemptions shrinks with the ``b``-th power of the points (the fixed
round trip within 2: 2,267 executions against 7,290). Unbounded DFS, the reference the
reductions are checked against, and DPOR choose at every point: for DPOR the restarts
cost more than the fewer points saved (measured on ``switch-race`` credit2 -> credit
add: 4,288 executions in 22 s with restarts, 2,114 in 10 s at every point, 2,125 in
11 s with the set learnt first by ten PCT runs). A sharded search also chooses at
every point: its shards must split one tree, which sets learnt apart would not give.

Labels are learnt, not oids: an ``oid`` numbers objects in creation order,
which an execution of another order may change, while a label names the Xen object.
Two objects of one label are both visible once either is: that costs scheduling
points, never interleavings.

Left out: store-buffer memory models (every access also touches its CPU's buffer, so
nothing is invisible; the driver makes every access a point).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xensched.interaction import WRITES

if TYPE_CHECKING:
    from collections.abc import Iterable

    from xensched.interaction import Access

__all__ = ["Visibility", "tell_grew"]


def tell_grew(search: object) -> None:
    """Tell ``search`` that the visible set grew, if it has ``visible_grew()`` (a
    strategy that counts on the set: PCT's bound, and what wraps one)."""
    grew = getattr(search, "visible_grew", None)
    if grew is not None:
        grew()


class Visibility:
    """The visible set of one exploration, and what each label's accesses were."""

    def __init__(self) -> None:
        #: Labels of objects whose accesses are scheduling points.
        self.shared: set[str] = set()
        #: ``shared`` grew during the execution that just ran.
        self.grew = False
        # label -> (the first thread to touch it, touched by another, written or
        # locked), over every execution so far
        self._seen: dict[str, tuple[str, bool, bool]] = {}

    def begin(self) -> None:
        """A new execution."""
        self.grew = False

    def invisible(self, thread: str, access: Access) -> bool:
        """May ``thread``'s ``access`` run without a scheduling point?

        Records the access; the one that makes its object conflict is visible and
        adds the object's label to :attr:`shared`.
        """
        obj = access[1]
        label = obj.label
        if label in self.shared:
            return False
        seen = self._seen.get(label)
        writes = access[0] in WRITES  # lock operations too
        if seen is None:
            self._seen[label] = (thread, False, writes)
            return True
        first, multi, written = seen
        multi = multi or first != thread
        written = written or writes
        if multi and written:
            self._add(label)
            return False
        self._seen[label] = (first, multi, written)
        return True

    def read_by_condition(self, labels: Iterable[str]) -> None:
        """A parked thread's wake condition read these objects: writes to them may
        wake it, so they are scheduling points."""
        for label in labels:
            if label not in self.shared:
                self._add(label)

    def _add(self, label: str) -> None:
        self.shared.add(label)
        self.grew = True
