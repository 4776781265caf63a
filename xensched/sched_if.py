"""Retry-on-change acquisition of a pCPU's scheduler lock.

Mirrors: the ``sched_lock()``/``sched_unlock()`` macros of xen/include/xen/sched-if.h
(Xen 4.7) and what they generate: ``pcpu_schedule_lock[_irq|_irqsave]``,
``pcpu_schedule_unlock[_irq|_irqrestore]``, ``pcpu_schedule_trylock`` and the
``vcpu_schedule_lock*`` family keyed on ``v->processor``.

The loop: read ``schedule_lock``, take that lock, re-read the pointer; if it moved while
we spun, drop the lock and go again. Each retry is counted on the lock that turned out
stale (under that lock, so the count needs no other protection). The vcpu variants
re-read ``v->processor`` in the re-check, as Xen's comment explains: the vCPU may have
moved, or its pCPU's lock may have been remapped by a cpupool move.

``pcpu_schedule_trylock`` makes one attempt and gives up when the lock moved, as
Credit1's load balancer needs ("spinning could cause a deadlock if the peer CPU is
also load balancing"). The unlock variants ASSERT the pointer still matches; code that
remapped the lock must release by pointer (``spin_unlock(old_lock)``) instead.

Left out: XSA-453's speculation barrier; the loop is bounded (``_MAX_RETRIES``) so
that a livelock is reported rather than spun forever. The ``_irqsave`` variants save
and disable IRQs once, around the whole retry loop, where Xen's macro does
``spin_lock_irqsave``/``spin_unlock_irqrestore`` on each attempt and so lets IRQs in
between two attempts; nothing in this model takes an interrupt there, so no check
can tell the two apart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xensched.checks import ASSERT
from xensched.memory import data_race
from xensched.mutants import NO_LOCK_RECHECK, NO_TRYLOCK_RECHECK
from xensched.smp import current
from xensched.spinlock import (
    SpinLock,
    local_irq_restore,
    local_irq_save,
    spin_lock,
    spin_lock_irq,
    spin_trylock,
    spin_unlock,
    spin_unlock_irq,
    spin_unlock_irqrestore,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from xensched.domain import Vcpu
    from xensched.errors import DeadlockError
    from xensched.host import Host

_MAX_RETRIES = 100_000


def _livelock(what: str) -> DeadlockError:
    ctx = current()
    msg = f"{ctx.name}: {what} retried {_MAX_RETRIES} times"
    return ctx.bus.deadlock("sched_lock", msg)


def _lock_loop(
    h: Host,
    cpu_of: Callable[[bool], int],
    take: Callable[[SpinLock], None],
    drop: Callable[[SpinLock], None],
) -> SpinLock:
    """``cpu_of(racy)``: the pCPU whose lock to take; ``racy`` for the read before
    the lock, which races on purpose (``data_race``), not the re-check under it."""
    for _ in range(_MAX_RETRIES):
        lock = data_race(h.percpu[cpu_of(True)].schedule_data.schedule_lock)
        take(lock)
        if NO_LOCK_RECHECK in h.mutants:
            return lock  # the mutant: no re-check
        if lock is h.percpu[cpu_of(False)].schedule_data.schedule_lock.load():
            return lock
        lock.retries += 1  # we hold `lock`: it protects its own counter
        drop(lock)
    raise _livelock("schedule_lock")


# -- pcpu_* -------------------------------------------------------------------------


def pcpu_schedule_lock(h: Host, cpu: int) -> SpinLock:
    return _lock_loop(h, lambda _racy: cpu, spin_lock, spin_unlock)


def pcpu_schedule_lock_irq(h: Host, cpu: int) -> SpinLock:
    return _lock_loop(h, lambda _racy: cpu, spin_lock_irq, spin_unlock_irq)


def pcpu_schedule_lock_irqsave(h: Host, cpu: int) -> tuple[SpinLock, bool]:
    flags = local_irq_save()
    try:
        lock = _lock_loop(h, lambda _racy: cpu, spin_lock, spin_unlock)
    except BaseException:
        local_irq_restore(flags)
        raise
    return lock, flags


def _assert_still_mapped(h: Host, lock: SpinLock, cpu: int, where: str) -> None:
    ASSERT(
        lock is h.percpu[cpu].schedule_data.schedule_lock.load(),
        where,
        f"lock == per_cpu(schedule_data, {cpu}).schedule_lock",
        cpu=cpu,
    )


def pcpu_schedule_unlock(h: Host, lock: SpinLock, cpu: int) -> None:
    _assert_still_mapped(h, lock, cpu, "pcpu_schedule_unlock")
    spin_unlock(lock)


def pcpu_schedule_unlock_irq(h: Host, lock: SpinLock, cpu: int) -> None:
    _assert_still_mapped(h, lock, cpu, "pcpu_schedule_unlock_irq")
    spin_unlock_irq(lock)


def pcpu_schedule_unlock_irqrestore(
    h: Host, lock: SpinLock, flags: bool, cpu: int
) -> None:
    _assert_still_mapped(h, lock, cpu, "pcpu_schedule_unlock_irqrestore")
    spin_unlock_irqrestore(lock, flags)


def pcpu_schedule_trylock(h: Host, cpu: int) -> SpinLock | None:
    """One attempt; ``None`` when the lock is busy or moved while we took it."""
    sd = h.percpu[cpu].schedule_data
    lock = data_race(sd.schedule_lock)
    if not spin_trylock(lock):
        return None
    if NO_TRYLOCK_RECHECK in h.mutants:
        return lock  # the mutant: no re-check
    if lock is sd.schedule_lock.load():
        return lock
    lock.retries += 1
    spin_unlock(lock)
    return None


# -- vcpu_* -------------------------------------------------------------------------


def _processor(v: Vcpu) -> Callable[[bool], int]:
    def cpu_of(racy: bool) -> int:
        return data_race(v.processor) if racy else v.processor.load()

    return cpu_of


def vcpu_schedule_lock(h: Host, v: Vcpu) -> SpinLock:
    return _lock_loop(h, _processor(v), spin_lock, spin_unlock)


def vcpu_schedule_lock_irq(h: Host, v: Vcpu) -> SpinLock:
    return _lock_loop(h, _processor(v), spin_lock_irq, spin_unlock_irq)


def vcpu_schedule_lock_irqsave(h: Host, v: Vcpu) -> tuple[SpinLock, bool]:
    flags = local_irq_save()
    try:
        lock = _lock_loop(h, _processor(v), spin_lock, spin_unlock)
    except BaseException:
        local_irq_restore(flags)
        raise
    return lock, flags


def vcpu_schedule_unlock(h: Host, lock: SpinLock, v: Vcpu) -> None:
    _assert_still_mapped(h, lock, v.processor.load(), "vcpu_schedule_unlock")
    spin_unlock(lock)


def vcpu_schedule_unlock_irq(h: Host, lock: SpinLock, v: Vcpu) -> None:
    _assert_still_mapped(h, lock, v.processor.load(), "vcpu_schedule_unlock_irq")
    spin_unlock_irq(lock)


def vcpu_schedule_unlock_irqrestore(
    h: Host, lock: SpinLock, flags: bool, v: Vcpu
) -> None:
    _assert_still_mapped(h, lock, v.processor.load(), "vcpu_schedule_unlock_irqrestore")
    spin_unlock_irqrestore(lock, flags)
