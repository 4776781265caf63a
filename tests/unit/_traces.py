"""A violation whose trace holds one of each lock event, for the report tests.

:func:`held_and_waited` records, with real threads, a violation at a moment when
pcpu1 has taken and released ``test.b``, pcpu0 holds ``test.a`` (lock attempt, then
acquired) and ``test.b`` (a trylock that succeeded), and pcpu1 has tried ``test.b``
(a trylock that failed) and is spinning on ``test.a`` (a lock attempt with no
acquisition yet). A report of it must let a reader
tell the holder from the waiter.
"""

from __future__ import annotations

from xensched import Host
from xensched.spinlock import SpinLock, spin_lock, spin_trylock, spin_unlock
from xensched.violation import Violation, ViolationKind

from ._threads import SpinWatch, Threads

A, B = "test.a", "test.b"

#: The trace of :func:`held_and_waited`, as (context, event, lock), oldest first.
HELD_AND_WAITED = [
    ("pcpu1", "lock", B),
    ("pcpu1", "acquired", B),
    ("pcpu1", "unlock", B),
    ("pcpu0", "lock", A),
    ("pcpu0", "acquired", A),
    ("pcpu0", "trylock", B),
    ("pcpu0", "trylock-ok", B),
    ("pcpu1", "trylock", B),
    ("pcpu1", "trylock-failed", B),
    ("pcpu1", "lock", A),
]


def held_and_waited() -> Violation:
    """The violation described above, recorded by pcpu0 while pcpu1 spins."""
    h = Host(2, dom0_vcpus=0)
    a, b = SpinLock(h.bus, A), SpinLock(h.bus, B)
    spins = SpinWatch()
    h.bus.add_instrument(spins)
    for ctx in h.cpu_contexts:
        ctx.events.clear()  # the boot ran on pcpu0
    with h.on_cpu(1):
        spin_lock(b)
        spin_unlock(b)
    with h.on_cpu(0):
        spin_lock(a)
        assert spin_trylock(b)

    def waiter() -> None:
        assert not spin_trylock(b)
        spin_lock(a)
        spin_unlock(a)

    with Threads() as threads:
        threads.start(h.cpu_contexts[1], waiter)
        spins.wait_spinning(A, ["pcpu1"])
        with h.on_cpu(0):
            v = h.bus.violation(ViolationKind.DEADLOCK, "test", "pcpu1 waits on a")
            spin_unlock(b)
            spin_unlock(a)
        threads.join()
    return v
