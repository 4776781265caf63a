"""Shared fields of the emulated host and the barriers that order them.

Mirrors: plain loads/stores of shared per-CPU fields in Xen C code, and ``smp_mb()``,
``smp_wmb()``, ``smp_rmb()`` (xen/include/asm-x86/system.h).

Every field that more than one pCPU reads (the ``schedule_lock`` pointer, the per-CPU
``scheduler`` and ``cpupool``, ``sched_priv``, ``curr``, ``v->processor``, Credit2's
``runq_map``...) is a :class:`Cell`. Model code reads it with ``cell.load()`` and writes
it with ``cell.store(v)``; both are interaction points of the host's
:class:`~xensched.interaction.Bus`, so a driver can interleave other pCPUs between any
two accesses, and both go through ``bus.memory`` when a
:class:`~xensched.interaction.MemoryModel` is installed there (store buffers, later).
With none, the model is sequentially consistent and barriers are interaction points
and nothing more.

``Cell.peek()`` reads without an interaction point; only checks and reports use it.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Generic, TypeVar

from xensched.interaction import PointKind
from xensched.smp import current

if TYPE_CHECKING:
    from xensched.interaction import Bus

T = TypeVar("T")

_LOAD = PointKind.LOAD
_STORE = PointKind.STORE


class Cell(Generic[T]):
    """One shared memory location of the emulated host."""

    __slots__ = ("_bus", "label", "value")

    def __init__(self, bus: Bus, label: str, value: T) -> None:
        self._bus = bus
        self.label = label
        self.value = value

    # Bus._point() called directly (Bus.point() is one call more): these run at most
    # interaction points.
    def load(self) -> T:
        bus = self._bus
        bus._point(_LOAD, self.label, None, 3)
        mem = bus.memory
        return self.value if mem is None else mem.load(self)

    def store(self, value: T) -> None:
        bus = self._bus
        bus._point(_STORE, self.label, None, 3)
        mem = bus.memory
        if mem is None:
            self.value = value
        else:
            mem.store(self, value)

    def peek(self) -> T:
        """Read for a check or a report: no interaction point, no event."""
        return self.value

    def __repr__(self) -> str:
        return f"<Cell {self.label}={self.value!r}>"


def smp_mb() -> None:
    """Full barrier: an interaction point (no reordering is emulated yet)."""
    current().bus.point(PointKind.BARRIER, "smp_mb")


def smp_wmb() -> None:
    current().bus.point(PointKind.BARRIER, "smp_wmb")


def smp_rmb() -> None:
    current().bus.point(PointKind.BARRIER, "smp_rmb")


class CpuMask:
    """A shared ``cpumask_t`` updated with Xen's atomic bit operations.

    ``cpumask_set_cpu()``/``cpumask_clear_cpu()`` are atomic read-modify-writes in Xen
    (``set_bit``); here a private lock makes them so without relying on the GIL. Each
    operation is one interaction point.
    """

    __slots__ = ("_bits", "_bus", "_meta", "label")

    def __init__(self, bus: Bus, label: str) -> None:
        self._bus = bus
        self.label = label
        self._bits: frozenset[int] = frozenset()
        self._meta = threading.Lock()

    def test(self, cpu: int) -> bool:
        self._bus._point(_LOAD, self.label, None, 3)
        return cpu in self._bits

    def load(self) -> frozenset[int]:
        self._bus._point(_LOAD, self.label, None, 3)
        return self._bits

    def set(self, cpu: int) -> None:
        self._bus._point(_STORE, self.label, None, 3)
        with self._meta:
            self._bits = self._bits | {cpu}

    def clear(self, cpu: int) -> None:
        self._bus._point(_STORE, self.label, None, 3)
        with self._meta:
            self._bits = self._bits - {cpu}

    def peek(self) -> frozenset[int]:
        return self._bits

    def __repr__(self) -> str:
        return f"<CpuMask {self.label}={sorted(self._bits)}>"
