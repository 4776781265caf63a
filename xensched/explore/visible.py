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

A shared object can still be *guarded* (Eraser's lockset, Savage et al., TOCS 1997):
every data access to its label so far, in every execution, was made holding one same
lock (:attr:`Visibility.guards`, by lock label). A thread about to access it holds
that lock, so no other thread can touch the object until the holder releases it, and
the access commutes with whatever the others run meanwhile: it is invisible too. The
lock operations stay visible, and the first access made without the lock takes the
guard away (``grew``). A lock label that names two lock objects of one execution
guards nothing, and neither does anything for the cells a wake condition reads (a
parked thread's wake takes no lock). The locks a thread holds are followed from its
own points: its ``lock`` or ``trylock`` point names the lock, and at its next point
the lock's ``owner`` says whether it took it; an ``unlock`` point drops it. On
``switch-race`` about a quarter of the shared accesses are guarded (the runqueues and
the vCPUs' scheduler data under their runqueue lock); the lock pointer and the fields
Xen reads without a lock (the patch's race is on them) are not. Learning only makes
the guard smaller, so it needs no exemption for an object's first, unlocked,
initialisation as Eraser's has: such an object is simply never guarded.

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
round trip within 2: 2,267 executions against 7,290; the ``switch-race`` credit ->
credit2 add with the preempted thread's sleep of :mod:`xensched.explore.dfs`, 12,978
with guards against 18,431 without). Unbounded DFS, the reference the
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

from xensched.interaction import WRITES, PointKind

if TYPE_CHECKING:
    from collections.abc import Iterable

    from xensched.interaction import Access, Shared

__all__ = ["Visibility", "tell_grew"]

_LOAD = PointKind.LOAD
_STORE = PointKind.STORE
_RMW = PointKind.RMW
_LOCK = PointKind.LOCK
_TRYLOCK = PointKind.TRYLOCK
_UNLOCK = PointKind.UNLOCK
_NO_LOCKS: frozenset[str] = frozenset()


def tell_grew(search: object) -> None:
    """Tell ``search`` that the visible set grew, if it has ``visible_grew()`` (a
    strategy that counts on the set: PCT's bound, and what wraps one)."""
    grew = getattr(search, "visible_grew", None)
    if grew is not None:
        grew()


class Visibility:
    """The visible set of one exploration, and what each label's accesses were.

    ``locksets``: an access to a shared object that every access so far made
    holding one same lock is invisible too (see the module docstring); False:
    the shared objects alone decide.
    """

    def __init__(self, *, locksets: bool = True) -> None:
        #: Labels of objects whose accesses are scheduling points (unless guarded).
        self.shared: set[str] = set()
        #: ``shared`` grew, or a guarded label lost its guard, during the execution
        #: that just ran: the scheduling points grew.
        self.grew = False
        self.locksets = locksets
        # label -> (the first thread to touch it, touched by another, written or
        # locked), over every execution so far
        self._seen: dict[str, tuple[str, bool, bool]] = {}
        #: label -> the labels of the locks held at every data access to it so far,
        #: in every execution (Eraser's lockset); a label with a nonempty one is
        #: *guarded*.
        self.guards: dict[str, frozenset[str]] = {}
        # Labels a wake condition read: always scheduling points, guarded or not
        # (a parked thread's wake takes no lock).
        self._conditions: set[str] = set()
        # Lock labels two lock objects of one execution had: they guard nothing.
        self._ambiguous: set[str] = set()
        # This execution: each thread's held lock labels, the lock its last point
        # tried to take, and each lock label's object.
        self._held: dict[str, list[str]] = {}
        self._trying: dict[str, Shared] = {}
        self._lock_oid: dict[str, int] = {}
        # Each thread's guard (its held lock labels less the ambiguous ones), made
        # when first needed after its locks changed.
        self._guard_of: dict[str, frozenset[str]] = {}

    def begin(self) -> None:
        """A new execution."""
        self.grew = False
        self._held = {}
        self._trying = {}
        self._lock_oid = {}
        self._guard_of = {}

    def invisible(self, thread: str, access: Access) -> bool:
        """May ``thread``'s ``access`` run without a scheduling point?

        Records the access; the one that makes its object conflict is visible and
        adds the object's label to :attr:`shared`.
        """
        kind = access[0]
        obj = access[1]
        label = obj.label
        if self.locksets:
            guard = self._track_locks(thread, kind, obj)
            if guard is not None:
                was = self.guards.get(label)
                if was is None or not was <= guard:
                    # A new set only when the guard changes (rarely, once learnt).
                    now = guard if was is None else was & guard
                    self.guards[label] = now
                else:
                    now = was
                if label in self.shared:
                    if now and label not in self._conditions:
                        return True
                    if was:  # it lost its guard: its accesses become points
                        self.grew = True
                    return False
        if label in self.shared:
            return False
        seen = self._seen.get(label)
        writes = kind in WRITES  # lock operations too
        if seen is None:
            self._seen[label] = (thread, False, writes)
            return True
        first, multi, written = seen
        multi = multi or first != thread
        written = written or writes
        if multi and written:
            self._add(label)
            return self._guarded(label)
        self._seen[label] = (first, multi, written)
        return True

    def _guarded(self, label: str) -> bool:
        return bool(self.guards.get(label)) and label not in self._conditions

    def _track_locks(
        self, thread: str, kind: PointKind, obj: Shared
    ) -> frozenset[str] | None:
        """Follow ``thread``'s locks up to this point; for a data access, the labels
        of the locks it holds (those that guard: no two objects of one label)."""
        if self._trying:
            trying = self._trying.pop(thread, None)
            if trying is not None and getattr(trying, "owner", None) == thread:
                # Its previous point tried to take this lock, and it did.
                self._held.setdefault(thread, []).append(trying.label)
                self._guard_of.pop(thread, None)
        if kind is _LOAD or kind is _STORE or kind is _RMW:
            guard = self._guard_of.get(thread)
            if guard is None:
                # Made once per change of the thread's locks, not per access.
                held = self._held.get(thread)
                guard = frozenset(held) - self._ambiguous if held else _NO_LOCKS
                self._guard_of[thread] = guard
            return guard
        if kind is _LOCK or kind is _TRYLOCK:
            self._trying[thread] = obj
            label = obj.label
            oid = self._lock_oid.setdefault(label, obj.oid)
            if oid != obj.oid and label not in self._ambiguous:
                self._ambiguous.add(label)
                self._guard_of.clear()
                for k, g in self.guards.items():
                    if label in g:
                        self.guards[k] = g - {label}
                        if len(g) == 1 and k in self.shared:
                            self.grew = True
        elif kind is _UNLOCK:
            held = self._held.get(thread)
            if held and obj.label in held:
                # The innermost hold of it.
                del held[len(held) - 1 - held[::-1].index(obj.label)]
                self._guard_of.pop(thread, None)
        return None

    def read_by_condition(self, labels: Iterable[str]) -> None:
        """A parked thread's wake condition read these objects: writes to them may
        wake it, so they are scheduling points."""
        for label in labels:
            if label in self._conditions:
                continue
            self._conditions.add(label)
            if label not in self.shared or self.guards.get(label):
                self.shared.add(label)
                self.grew = True

    def _add(self, label: str) -> None:
        self.shared.add(label)
        if not self._guarded(label):
            self.grew = True
