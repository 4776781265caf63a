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
  a reduction by reads-from or by values read (Abdulla et al., OOPSLA 2019;
  Agarwal et al., CAV 2021) at best one per observation. Measured here: the fixed
  round trip has 192 traces and 106 observations, ``switch-race`` credit -> credit
  add 1,152 traces and 435 observations. So such a reduction would save at most
  1.8x and 2.6x on these moves. The removes' observations cannot all be counted
  this way (that needs the exhaustive search that does not end on them), but they
  fold far more: 696,503 executions of DPOR on the credit -> credit remove (80
  minutes, not exhaustive, clean) met 10,973 observations, none new in the last
  130,000. A reads-from search would so run at least some 11,000 executions per
  remove (about 30 s here): 16 removes and the adds would be near bench figure 4's
  aim of all 32 moves in 10 minutes, where DPOR's traces are far beyond it.

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

from typing import TYPE_CHECKING

from xensched.interaction import Instrument, PointKind, Shared
from xensched.memory import BitOp, Cell

if TYPE_CHECKING:
    from collections.abc import Hashable

    from xensched.interaction import Access
    from xensched.smp import ExecContext

__all__ = ["Observation", "Observer", "stable"]

#: Per thread (by name, sorted), the ``(object label, value)`` of each of its reads.
Observation = tuple[tuple[str, tuple[tuple[str, object], ...]], ...]

_READS = frozenset({PointKind.LOAD, PointKind.LOAD_ACQUIRE, PointKind.RMW})
_TRY_RESULTS = frozenset({PointKind.TRYLOCK_OK, PointKind.TRYLOCK_FAILED})


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

    def observation(self) -> Observation:
        """What each thread read, in order: equal for two executions exactly when
        every thread read the same values."""
        return tuple(sorted((t, tuple(r)) for t, r in self._reads.items()))
