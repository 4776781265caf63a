"""Xen spinlocks over real ``threading.Lock`` objects, with IRQ discipline.

Mirrors: xen/common/spinlock.c (``_spin_lock``, ``_spin_trylock``, ``_spin_unlock``,
the ``_irq``/``_irqsave`` variants, ``_spin_is_locked`` and the debug ``check_lock()``
IRQ-safety latch) and the local IRQ helpers of xen/include/asm-x86/system.h.

Glossary: ``spinlock_t`` is :class:`SpinLock`; the pCPU holding it is ``owner``.

- Every wait is bounded by the host's ``lock_timeout``: a lock not had in time raises
  :class:`~xensched.errors.DeadlockError` naming the holder, with every lock's owner
  and every thread's stack after that line (``Bus.deadlock``), and records a
  ``deadlock`` violation. Nothing here calls ``acquire()`` without a bound.
- ``check_lock()``: a lock is latched IRQ-safe or IRQ-unsafe the first time it is
  taken; taking it later the other way is a ``BUG()`` (Xen commit 8b27d2b8af found
  ``schedule_cpu_switch()`` doing exactly that), recorded as an ``assert`` violation.
- Statistics: acquisitions, contended acquisitions and retry-on-change loops are
  only updated while the lock is held, so the lock itself protects them; a failed
  trylock does not hold it, and counts under the lock's own ``_meta`` mutex.
- Interaction points: ``lock`` before the wait (a driver may hold the waiter back),
  then the note ``acquired`` once the lock is ours; ``trylock`` before the attempt,
  then ``trylock-ok`` or ``trylock-failed``; ``unlock`` before the release. So a
  trace tells a waiter from a holder, and a memory model sees each acquire and
  release.

Left out: ticket fairness, recursive and rw locks, lock profiling, preemption counts.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from xensched.errors import XenschedError
from xensched.interaction import Access, PointKind, Shared
from xensched.smp import current
from xensched.violation import ViolationKind

if TYPE_CHECKING:
    from xensched.interaction import Bus


@dataclass(frozen=True, slots=True)
class SpinLockStats:
    """A snapshot of one lock (trio-style ``statistics()``)."""

    name: str
    owner: str | None
    acquisitions: int
    contended: int
    trylock_failures: int
    retries: int
    irq_safe: bool | None


class SpinLock(Shared):
    """A Xen ``spinlock_t``: a real lock plus owner, IRQ latch and statistics."""

    __slots__ = (
        "_acquired",
        "_irq_safe",
        "_lock",
        "_meta",
        "_rec",
        "_try_failed",
        "_try_ok",
        "_trylock",
        "_unlock",
        "acquisitions",
        "contended",
        "name",
        "order",
        "owner",
        "retries",
        "trylock_failures",
    )

    def __init__(self, bus: Bus, name: str) -> None:
        super().__init__(bus, name)
        self.name = name
        # Access records of this lock, made once (the hot path builds none).
        self._rec = Access(PointKind.LOCK, self)
        self._acquired = Access(PointKind.ACQUIRED, self)
        self._trylock = Access(PointKind.TRYLOCK, self)
        self._try_ok = Access(PointKind.TRYLOCK_OK, self)
        self._try_failed = Access(PointKind.TRYLOCK_FAILED, self)
        self._unlock = Access(PointKind.UNLOCK, self)
        self._lock = threading.Lock()
        # Emulator bookkeeping that happens without the lock held: the one-time
        # IRQ-safety latch and the failed-trylock counter.
        self._meta = threading.Lock()
        self._irq_safe: bool | None = None
        self.owner: str | None = None
        self.acquisitions = 0
        self.contended = 0
        self.trylock_failures = 0
        self.retries = 0
        # Stands in for the lock's address where Xen orders locks by address.
        self.order = bus.register_lock(self)

    def __repr__(self) -> str:
        return f"<SpinLock {self.name} owner={self.owner}>"

    # -- Xen's check_lock() ------------------------------------------------------

    def _check_lock(self, irq_enabled: bool) -> None:
        irq_safe = not irq_enabled
        seen = self._irq_safe
        if seen is irq_safe:
            return
        with self._meta:
            seen = self._irq_safe
            if seen is None:
                self._irq_safe = irq_safe
                return
        if seen is not irq_safe:
            self._bus.violation(
                ViolationKind.ASSERT,
                "check_lock",
                f"BUG: {self.name} taken with IRQs "
                f"{'off' if irq_safe else 'on'} but latched "
                f"{'IRQ-safe' if seen else 'IRQ-unsafe'}",
            )

    # -- acquire/release -----------------------------------------------------------

    # ``_depth``: how many frames above the caller of the public spin_* function the
    # point is made (2 + the wrappers in between), so that the event names the Xen
    # function in one step rather than by walking the stack (the hot path).
    def acquire(self, _depth: int = 3) -> None:
        """``_spin_lock()``: spin (bounded) until the lock is ours."""
        ctx = current()
        self._check_lock(ctx.irq_enabled)
        bus = self._bus
        bus._point(self._rec, _depth)
        contended = False
        if not self._lock.acquire(blocking=False):
            contended = True
            # The spinning CPU's stores drain meanwhile (the holder may be waiting
            # for one of them); free-running only: a controlled waiter never gets here.
            flush = getattr(bus._memory, "flush", None)
            if flush is not None:
                flush(ctx)
            if not self._lock.acquire(timeout=bus.lock_timeout):
                holder = self.owner
                msg = (
                    f"{ctx.name} spun on {self.name!r} for "
                    f"{bus.lock_timeout:g}s; held by {holder or 'nobody'}"
                )
                raise bus.deadlock("_spin_lock", msg)
        self.owner = ctx.name
        self.acquisitions += 1
        if contended:
            self.contended += 1
        bus._note(self._acquired)
        mem = bus._memory
        if mem is not None:
            mem.acquire(ctx, self)

    def try_acquire(self, _depth: int = 3) -> bool:
        """``_spin_trylock()``: one attempt, never waits."""
        ctx = current()
        self._check_lock(ctx.irq_enabled)
        bus = self._bus
        bus._point(self._trylock, _depth)
        if not self._lock.acquire(blocking=False):
            with self._meta:
                self.trylock_failures += 1
            bus._note(self._try_failed)
            return False
        self.owner = ctx.name
        self.acquisitions += 1
        bus._note(self._try_ok)
        mem = bus._memory
        if mem is not None:
            mem.acquire(ctx, self)
        return True

    def release(self, _depth: int = 3) -> None:
        """``_spin_unlock()``."""
        ctx = current()
        if self.owner != ctx.name:
            raise XenschedError(
                f"{ctx.name} unlocks {self.name!r} held by {self.owner or 'nobody'}"
            )
        bus = self._bus
        bus._point(self._unlock, _depth)
        mem = bus._memory
        if mem is not None:
            mem.release(ctx, self)
        self.owner = None
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()

    def stats(self) -> SpinLockStats:
        return SpinLockStats(
            name=self.name,
            owner=self.owner,
            acquisitions=self.acquisitions,
            contended=self.contended,
            trylock_failures=self.trylock_failures,
            retries=self.retries,
            irq_safe=self._irq_safe,
        )


# -- Xen's API, by its names --------------------------------------------------------


def local_irq_disable() -> None:
    current().irq_enabled = False


def local_irq_enable() -> None:
    current().irq_enabled = True


def local_irq_is_enabled() -> bool:
    return current().irq_enabled


def local_irq_save() -> bool:
    """Returns the flags to hand to :func:`local_irq_restore` (IRQs were on)."""
    ctx = current()
    flags = ctx.irq_enabled
    ctx.irq_enabled = False
    return flags


def local_irq_restore(flags: bool) -> None:
    current().irq_enabled = flags


def spin_lock(lock: SpinLock) -> None:
    lock.acquire(4)


def spin_unlock(lock: SpinLock) -> None:
    lock.release(4)


def spin_trylock(lock: SpinLock) -> bool:
    return lock.try_acquire(4)


def spin_is_locked(lock: SpinLock) -> bool:
    return lock.locked()


def spin_lock_irq(lock: SpinLock) -> None:
    # Xen ASSERTs IRQs were on: spin_lock_irq() must not nest inside IRQs-off code.
    ctx = current()
    if not ctx.irq_enabled:
        ctx.bus.violation(
            ViolationKind.ASSERT,
            "_spin_lock_irq",
            f"ASSERT(local_irq_is_enabled()) failed taking {lock.name}",
        )
    ctx.irq_enabled = False
    try:
        lock.acquire(4)
    except BaseException:
        ctx.irq_enabled = True
        raise


def spin_unlock_irq(lock: SpinLock) -> None:
    lock.release(4)
    current().irq_enabled = True


def spin_lock_irqsave(lock: SpinLock) -> bool:
    flags = local_irq_save()
    try:
        lock.acquire(4)
    except BaseException:
        local_irq_restore(flags)
        raise
    return flags


def spin_unlock_irqrestore(lock: SpinLock, flags: bool) -> None:
    lock.release(4)
    local_irq_restore(flags)
