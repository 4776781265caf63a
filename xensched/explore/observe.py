"""What each thread saw: the values its reads returned, as one comparable record.

Mirrors nothing in Xen. A thread of the model is deterministic given the values its
accesses return, so an execution's *observation* (for each thread, in order, every
object it read and the value it got) decides what every thread did. Strategies can
then be compared at the level of behaviours rather than of schedules:

- **A finer soundness check.** Every observation that a sampling strategy (random
  walk, PCT) meets must also be met by an exhaustive DPOR: two executions of one
  Mazurkiewicz trace read the same values, so an observation outside DPOR's means a
  trace DPOR missed or a dependence it does not see (an access with no interaction
  point, say). Final states alone can hide such a miss when the missed reads change
  nothing at the end. ``tests/explore/test_observations.py`` runs this on the round
  trip (and, slow, on two switch-race adds), and feeds it a DPOR blind to the lock
  pointer to see it fire.
- **What a coarser equivalence could save.** DPOR runs one execution per trace;
  a reduction by reads-from (Abdulla et al., OOPSLA 2019) at best one per
  reads-from relation (:func:`reads_from`), and one by values read (Agarwal et
  al., CAV 2021) at best one per observation. Measured here, reads-from folds
  nothing: every trace has a relation of its own on the fixed round trip (225
  traces), the ``switch-race`` credit -> credit and credit2 -> credit adds (1,043
  and 1,563 traces not cut short), and in DPOR's first 30,000 executions of the
  credit -> credit and credit2 -> credit2 removes (28,173 and 29,616 traces); all
  but the round trip's figures were measured before ``csched_load_balance``
  re-checked ``cpu_valid`` as Xen does and before DPOR took a silent store as a
  read. Traces that differ only in the order of two writes that nothing read
  between would share a relation; this model, it seems, has no such writes. The
  values fold: those traces read 125, 435, 867, 2,149 and 1,677 ways, and 696,503
  executions of DPOR on the credit -> credit remove (80 minutes, not exhaustive,
  clean) met 10,973 observations, none new in the last 130,000. So only a search
  by values read could bring the removes near bench figure 4's aim (all 32 moves
  in 10 minutes): at least some 11,000 executions per remove, about 30 s here,
  where DPOR's traces are far beyond it. ``tests/explore/test_observations.py``
  checks the round trip's counts.

What counts as a read: a load, the old value of a read-modify-write, a trylock's
result. Not an atomic bit operation (``cpumask_set_cpu()`` returns nothing, and DPOR
rightly takes bit operations on different bits as commuting, so their old masks
differ between executions of one trace), nor a lock acquisition (it returns nothing;
what the holder then reads is recorded). Values are recorded in a form that is equal
across executions (:func:`stable`): an emulated object by its label or name, not by
identity.

Left out: store-buffer memory models. A load there may return an older value than
the cell holds; this records the cell's value, which is what the load returns only
under sequential consistency.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from xensched.explore.base import thread_of
from xensched.interaction import Instrument, PointKind, Shared
from xensched.memory import BitOp, Cell

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Sequence

    from xensched.explore.base import Step
    from xensched.interaction import Access
    from xensched.smp import ExecContext

__all__ = ["Observation", "Observer", "ReadsFrom", "reads_from", "stable"]

#: Per thread (by name, sorted), the ``(object label, value)`` of each of its reads.
Observation = tuple[tuple[str, tuple[tuple[str, object], ...]], ...]

#: A step of an execution by its thread and its place among that thread's steps: the
#: same event in every execution of one program that runs that thread so far.
Event = tuple[str, int]
#: What a read read from: the last plain write of the object before it (``None``: the
#: initial value) and the atomic bit operations of a cpumask after that write, which
#: commute, so their order is not part of it.
Source = tuple[Event | None, frozenset[Event]]
#: For each read of an execution, in order: the read and its source.
ReadsFrom = tuple[tuple[Event, Source], ...]

_READS = frozenset({PointKind.LOAD, PointKind.LOAD_ACQUIRE, PointKind.RMW})
_TRY_RESULTS = frozenset({PointKind.TRYLOCK_OK, PointKind.TRYLOCK_FAILED})
# Steps (by their Op's kind) that read their object besides any write they make.
_RF_READS = frozenset({"rmw", "lock", "trylock", "wake"})


def stable(value: object) -> Hashable:
    """``value`` in a form equal across executions of one program.

    Plain values as they are; an emulated shared object by its label; a tuple
    element-wise; a set sorted; any other object by its type and its ``label`` or
    ``name`` (a vCPU, a scheduler), else by its type alone, which is coarser but
    never tells two equal values apart.
    """
    if value is None or isinstance(value, bool | int | str | float):
        return value
    if isinstance(value, Shared):
        return value.label
    if isinstance(value, tuple | list):
        return tuple(stable(v) for v in value)
    if isinstance(value, set | frozenset):
        return tuple(sorted((stable(v) for v in value), key=repr))
    for attr in ("label", "name"):
        named = getattr(value, attr, None)
        if isinstance(named, str):
            return (type(value).__name__, named)
    return type(value).__name__


class Observer(Instrument):
    """Records every participant's reads; install one per execution.

    ``Explorer.execute(i, lambda step_of: [observer])`` installs it on the run's bus;
    :meth:`observation` gives the record once the execution has ended.
    """

    def __init__(self) -> None:
        # Written by whichever participant holds the turn: under the controlled
        # driver one at a time, and each thread appends to its own list only.
        self._reads: dict[str, list[tuple[str, object]]] = {}

    def on_point(self, ctx: ExecContext, access: Access) -> None:
        kind, obj = access[0], access[1]
        if kind in _READS:
            if type(access[2]) is BitOp or not isinstance(obj, Cell):
                return
            # The point comes just before the access, with the thread holding the
            # turn: the cell's value now is what the access reads.
            seen: tuple[str, object] = (obj.label, stable(obj.peek()))
        elif kind in _TRY_RESULTS:
            seen = (obj.label, kind.value)
        else:
            return
        reads = self._reads.get(ctx.name)
        if reads is None:
            reads = self._reads.setdefault(ctx.name, [])
        reads.append(seen)

    def installs(self, _step_of: Callable[[], int]) -> list[Instrument]:
        """This observer, as :meth:`Explorer.execute`'s ``instruments`` argument."""
        return [self]

    def digest(self) -> bytes:
        """A 16-byte digest of :meth:`observation`, equal across processes (what
        ``xensched explore --observations`` keeps and its workers merge)."""
        return hashlib.blake2b(
            repr(self.observation()).encode(), digest_size=16
        ).digest()

    def observation(self) -> Observation:
        """What each thread read, in order: equal for two executions exactly when
        every thread read the same values."""
        return tuple(sorted((t, tuple(r)) for t, r in self._reads.items()))


def reads_from(steps: Sequence[Step]) -> ReadsFrom:
    """The reads-from relation of an execution (sequential consistency): for each
    read, which write it read from.

    Two executions with equal relations are reads-from equivalent (Abdulla et al.,
    OOPSLA 2019): every thread read the same writes, so the same values, so their
    observations are equal too; and two executions of one Mazurkiewicz trace have
    equal relations. So a reads-from search needs at most one execution per trace
    and at least one per observation. A lock acquisition reads the lock from its
    last release, and a ``trylock`` from the last operation on it (held or free);
    a wake that read one cell reads that cell. Under a store-buffer model this is
    not the relation a load's value came from: only for ``sc``.
    """
    count: dict[str, int] = {}
    last: dict[int, Event] = {}
    bits: dict[int, set[Event]] = {}
    held: set[int] = set()
    out: list[tuple[Event, Source]] = []
    for step in steps:
        thread = thread_of(step.thread)
        k = count.get(thread, 0)
        count[thread] = k + 1
        op = step.op
        oid = op.oid
        if not oid:  # a start, or a wake whose condition read no one cell
            continue
        event = (thread, k)
        kind = op.kind
        # A silent store writes, here: the relation is Xen's, not DPOR's.
        writes = op.is_write or op.silent
        reads = not op.bit and (kind in _RF_READS or not writes)
        if reads:
            out.append((event, (last.get(oid), frozenset(bits.get(oid, ())))))
        if kind == "wake":
            continue
        if op.bit:
            bits.setdefault(oid, set()).add(event)
            continue
        if kind == "trylock":
            if oid in held:
                continue  # it failed: it read the lock and wrote nothing
            held.add(oid)
        elif kind == "lock":
            held.add(oid)
        elif kind == "unlock":
            held.discard(oid)
        elif not writes:
            continue
        last[oid] = event
        bits.pop(oid, None)
    return tuple(out)
