"""What every exploration strategy sees and answers: steps, operations, the protocol.

Mirrors nothing in Xen. An *execution* of a controlled run is a sequence of *steps*:
at each one the driver has a set of enabled threads, each about to make one access
(its *pending operation*), and the strategy picks which one goes. The chosen thread
makes that access and runs its private code up to its next interaction point. So an
execution is the list of the chosen threads' names (the *schedule*), and the same
scenario, seed and schedule give the same execution: that is what a replay file holds.

An :class:`Op` is a pending access in the form that strategies compare across
executions: the object by its stable ``oid`` (numbered in creation order on the run's
bus, so equal under equal prefixes), not by identity. Two pseudo-operations stand for
steps that make no access of their own:

- ``start``: a thread's first step, before its first point; it touches nothing shared,
  so it is independent of everything;
- ``wake``: a thread parked until a condition holds (an idle pCPU waiting for
  ``SCHEDULE_SOFTIRQ``) resumes. When the driver saw the condition read one cell
  (it records what the condition peeks), the wake is a read of that cell
  (``softirq_pending(3)``): only a write to it can change whether the thread may
  resume. Otherwise the wake is taken to depend on every write (``oid`` 0). The end
  of another thread, which a condition may wait for too, is no access: it can only
  enable a wake, never disable one, so there is no order to try there.

Two accesses are dependent when they touch one object and at least one of them
writes it, with two exceptions:

- atomic bit operations of one cpumask (``cpumask_set_cpu()``,
  ``cpumask_clear_cpu()``; :attr:`Op.bit`) commute unless one sets the bit the other
  clears, as Credit's pCPUs setting and clearing their own bits of ``prv->idlers``
  do;
- a *silent* store (:attr:`Op.silent`), one that writes the value its cell already
  holds, writes nothing that anyone could tell: it commutes with the cell's loads
  and with other silent stores, and depends only on a store that changes the value
  (which would make it change the value too, in the other order). It is taken as a
  read, as model checkers take a compare-and-swap that fails. Whether a store is
  silent depends on the cell at the step, so it is decided where the step is
  chosen (:func:`silent`), and only under sequential consistency: under a
  store-buffer model a store goes to the buffer, and what memory holds then is
  not what the store will overwrite.

Under a store-buffer memory model two more kinds of step exist (see
:mod:`xensched.drivers.controlled`): a *drain* ``CPU>field`` (the buffered store
reaching memory: a write of the field) and a load of ``CPU~k`` (``CPU`` running, its
load returning an older value: the same thread as ``CPU``, :func:`thread_of`). Every
operation of a CPU then also touches that CPU's store buffer (``also``: read by the
CPU's own accesses, written by its drains), so a drain depends on the accesses of its
CPU that it may enable (a barrier waiting for the buffer to empty) or reorder.

Left out: operations that are not interaction points (``Cell.peek()``, which only
checks and wait conditions use) are invisible here: a check that reads a field with
``peek()`` is not ordered against the writes of that field by dependence.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, Protocol, cast

from xensched.drivers.controlled import thread_of
from xensched.interaction import WRITES, PointKind
from xensched.memory import BitOp

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from xensched.interaction import Access
    from xensched.memory import Cell

__all__ = [
    "START",
    "WAKE",
    "Op",
    "SearchStrategy",
    "Step",
    "bit_of",
    "bits_commute",
    "independent",
    "op_of",
    "silent",
    "thread_of",
    "variants",
]

_RMW = PointKind.RMW
_LOCK_KINDS = frozenset({"lock", "trylock", "unlock"})
_WRITE_VALUES = frozenset(k.value for k in WRITES)
_BY_VALUE = frozenset({int, bool, str, type(None), frozenset})


class Op(NamedTuple):
    """A pending access: its kind (a :class:`~xensched.interaction.PointKind` value, or
    ``start`` / ``wake``), the object's ``oid`` (0 for the pseudo-operations) and
    label; under a store-buffer model, ``also`` is the ``oid`` of the store buffer of
    the CPU it acts for (0: none). ``bit`` names an atomic bit operation of a
    cpumask (:class:`~xensched.memory.BitOp`): ``cpu + 1`` for a set, ``-(cpu + 1)``
    for a clear, 0 for any other access (:func:`bit_of`). ``silent`` marks a store
    that writes the value its cell already holds: not a write for dependence."""

    kind: str
    oid: int
    label: str
    also: int = 0
    bit: int = 0
    #: A store of the value its cell holds when it runs (see :func:`silent`).
    silent: bool = False

    @property
    def is_write(self) -> bool:
        return self.kind in _WRITE_VALUES and not self.silent

    @property
    def is_lock(self) -> bool:
        return self.kind in _LOCK_KINDS

    def describe(self) -> str:
        # A wake is described without the cell its condition read: replay files
        # name it so, whatever the driver learnt.
        return (
            self.kind
            if not self.oid or self.kind == "wake"
            else f"{self.kind} {self.label}"
        )


START = Op("start", 0, "")
WAKE = Op("wake", 0, "")


def independent(a: Op, b: Op) -> bool:
    """Can the two operations be swapped without changing what either does?"""
    if a.kind == "start" or b.kind == "start":
        return True
    if a.kind == "wake" or b.kind == "wake":
        wake, other = (a, b) if a.kind == "wake" else (b, a)
        if other.kind == "wake" or not other.is_write:
            return True
        return bool(wake.oid) and wake.oid != other.oid
    commuting_bits = a.bit and b.bit and bits_commute(a.bit, b.bit)
    if a.oid == b.oid and not commuting_bits:
        return not (a.is_write or b.is_write)
    if a.also and a.also == b.also:
        # One CPU's store buffer: its drains write it, its accesses read it.
        return a.kind != "drain" and b.kind != "drain"
    return True


def bits_commute(a: int, b: int) -> bool:
    """Do two atomic bit operations of one mask (:attr:`Op.bit`, both nonzero)
    commute? Yes unless one sets the bit that the other clears: either order leaves
    the same mask, and neither returns a value."""
    return a != -b


def op_of(access: Access, also: int = 0) -> Op:
    """The :class:`Op` of a point's access record (``also``: see :class:`Op`)."""
    obj = access[1]
    return Op(access[0]._value_, obj.oid, obj.label, also, bit_of(access))


def silent(access: Access) -> bool:
    """Does a store write the value its cell holds now (sequential consistency)?

    The same object, or an equal value of a type compared by value that no code
    of the model tells apart by identity (numbers, strings, ``None``, frozen sets
    of CPUs). Any other value equal but not the same object is taken as a change:
    code may compare it by identity.
    """
    # Only a Cell is stored to (Cell.store() makes the STORE points).
    new, old = access[2], cast("Cell[object]", access[1]).value
    return new is old or (
        type(new) is type(old) and type(new) in _BY_VALUE and new == old
    )


def bit_of(access: Access) -> int:
    """:attr:`Op.bit` of an access (0 unless it is an atomic bit operation)."""
    value = access[2]
    if type(value) is BitOp and access[0] is _RMW:
        return value.cpu + 1 if value.set else -(value.cpu + 1)
    return 0


def variants(name: str, enabled: Sequence[str]) -> list[str]:
    """The names in ``enabled`` that stand for the same thread as ``name`` (its
    loads of older values, under a relaxed memory model), ``name`` first."""
    t = thread_of(name)
    return [name] + [u for u in enabled if u != name and thread_of(u) == t]


class Step(NamedTuple):
    """One step of an execution: who ran and what it did, among whom.

    A ``NamedTuple`` rather than a frozen dataclass, as :class:`Op` is: one is made
    at every step of every controlled execution, and a tuple is made in half the
    time.
    """

    thread: str
    op: Op
    enabled: tuple[str, ...]
    #: The pending operation of every enabled thread (the chosen one's is ``op``).
    pending: Mapping[str, Op]


class SearchStrategy(Protocol):
    """An exploration strategy: picks at each step, learns from each execution.

    One object lives through a whole exploration. :meth:`begin` starts an execution
    (False: nothing is left to explore, the search is exhausted), :meth:`choose` is
    called at every step, :meth:`end` with the finished (or abandoned) execution.
    """

    name: str

    def begin(self, run: int) -> bool: ...

    def choose(
        self,
        step: int,
        enabled: Sequence[str],
        pending: Mapping[str, Op],
        last: str | None,
    ) -> str | None:
        """One of ``enabled`` (in spawn order), or ``None`` to abandon the run."""
        ...

    def end(self, steps: Sequence[Step], abandoned: bool) -> None: ...

    @property
    def exhaustive(self) -> bool:
        """Has every execution the strategy promises to cover been run?"""
        ...

    def summary(self) -> dict[str, object]:
        """Figures for reports (bounds, pruning, executions cut short)."""
        ...
