"""Generic scheduling: schedule(), wake/sleep/migrate, and schedule_cpu_switch().

Mirrors: xen/common/schedule.c of Xen 4.7 (fixed protocol) and of 94734ab7c3^
(legacy): ``schedule()``, ``context_saved()`` (with its ``smp_wmb()``/``smp_mb()``
around ``is_running``), ``vcpu_wake()``, ``vcpu_sleep_nosync()``/``vcpu_sleep_sync()``,
``vcpu_migrate()`` with ``sched_spin_lock_double()``, ``cpu_disable_scheduler()``,
``sched_move_domain()`` and ``schedule_cpu_switch()``: the pre-patch one as written, and
the fixed one with each part of the fix (``xensched.protocol.Part``) revertible at its
one site.

Checks made here: ``lock-mismatch`` wherever generic code, holding a pCPU's lock, is
about to run a scheduler's hook for that pCPU (``schedule``, ``vcpu_wake``,
``vcpu_sleep_nosync``, ``vcpu_migrate``); ``lock-clobbered`` when a switch completes.

Simplified (documented, not Xen): ``schedule()`` runs on the calling thread's pCPU and
does the context-switch bookkeeping (``curr``, ``is_running``) without a real switch;
time is a per-pCPU tick count; a migration target stands in for hard affinity;
``continue_hypercall_on_cpu()`` runs its helper on the calling thread.

Left out: ``context_saved()`` of an *idle* vCPU calls no scheduler hook (its barriers,
the ``is_running`` store and the migration check are there, as for every vCPU). Xen
4.7 calls ``SCHED_OP(VCPU2OP(prev), context_saved, prev)`` for idle too, and
``VCPU2OP(idle)`` is the boot scheduler ``&ops`` (the idle domain has no cpupool): on a
pCPU of another pool, the boot scheduler's hook (Credit2's, RTDS's) runs on the idle
vCPU under that pool's lock, with another scheduler's data in ``idle->sched_priv``. A
real 4.7 bug, fixed in 4.9 by a3653e6a27 (``vcpu_scheduler()``: an idle vCPU's
scheduler is ``per_cpu(scheduler, v->processor)``), and not the subject here: modelled,
it is one scheduler's code under another's lock, a ``lock-mismatch`` under both
protocols, which would hide the patch's own. Its 4.9 routing is not modelled
either: it reads ``per_cpu(scheduler)`` without a lock, which 4.7 does not, and the idle
halves of ``csched2_context_saved`` and ``rt_context_saved`` only clear a flag the
schedulers here do not keep.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

from xensched.checks import ASSERT, ViolationKind, check_held
from xensched.errors import DeadlockError, XenError
from xensched.memory import smp_mb, smp_wmb
from xensched.mutants import NO_DEINIT_PDATA
from xensched.protocol import Part
from xensched.sched_if import (
    pcpu_schedule_lock,
    pcpu_schedule_lock_irq,
    pcpu_schedule_unlock_irq,
    vcpu_schedule_lock_irq,
    vcpu_schedule_lock_irqsave,
    vcpu_schedule_unlock_irq,
    vcpu_schedule_unlock_irqrestore,
)
from xensched.smp import smp_processor_id
from xensched.spinlock import (
    SpinLock,
    local_irq_disable,
    local_irq_enable,
    spin_is_locked,
    spin_lock,
    spin_lock_irqsave,
    spin_unlock,
    spin_unlock_irq,
    spin_unlock_irqrestore,
)

if TYPE_CHECKING:
    from xensched.cpupool import Cpupool
    from xensched.domain import Domain, Vcpu
    from xensched.host import Host
    from xensched.schedulers.base import Scheduler

_MIGRATE_RETRIES = 10_000


def _clear(pending: bool) -> bool:
    return False


def _true(value: bool) -> bool:
    return True


def _not(value: bool) -> bool:
    return not value


def VCPU2OP(h: Host, v: Vcpu) -> Scheduler:  # noqa: N802 - Xen's macro name
    """The scheduler of the vCPU's domain: its pool's, or the boot one (``&ops``)."""
    pool = v.domain.cpupool.load()
    return pool.sched if pool is not None else h.ops


# -- schedule() -----------------------------------------------------------------------


def schedule(h: Host) -> Vcpu:
    """``schedule()``: the SCHEDULE_SOFTIRQ handler of the calling pCPU.

    Returns the vCPU that runs next on this pCPU.
    """
    cpu = smp_processor_id()
    pc = h.percpu[cpu]
    sd = pc.schedule_data
    # SCHEDULE_SOFTIRQ is being handled: clear its pending bit (do_softirq()'s
    # test_and_clear). A raise that lands after this leaves it set, and the next
    # schedule() clears it, as in Xen.
    pc.softirq.exchange(_clear)
    lock = pcpu_schedule_lock_irq(h, cpu)
    # The scheduler is read under the lock: the (lock, scheduler) pair of a pCPU
    # must change atomically with respect to that lock.
    sched = pc.scheduler.load()
    check_held(lock, cpu, sched, "schedule")
    sd.now += 1
    prev = sd.curr.load()
    nxt = sched.do_schedule(cpu, sd.now)
    if nxt is not prev:
        for v in (prev, nxt):
            if not v.is_idle:
                vcpu_lock = h.percpu[v.processor.load()].schedule_data.schedule_lock
                ASSERT(
                    spin_is_locked(vcpu_lock.load()),
                    "vcpu_runstate_change",
                    "spin_is_locked(per_cpu(schedule_data,v->processor).schedule_lock)",
                    cpu=cpu,
                )
        nxt.is_running.store(True)
        sd.curr.store(nxt)
    pcpu_schedule_unlock_irq(h, lock, cpu)
    if nxt is not prev:
        context_saved(h, prev)
    return nxt


def context_saved(h: Host, prev: Vcpu) -> None:
    """``context_saved()``: prev is off the pCPU; finish a deferred migration."""
    # Clear running flag /after/ writing context to memory.
    smp_wmb()
    prev.is_running.store(False)
    # Check for migration request /after/ clearing running flag.
    smp_mb()
    if not prev.is_idle:  # idle: see the module docstring
        VCPU2OP(h, prev).context_saved(prev)
    if prev.migrating.load():
        vcpu_migrate(h, prev)


# -- wake / sleep -----------------------------------------------------------------------


def vcpu_wake(h: Host, v: Vcpu) -> None:
    """``vcpu_wake()``."""
    lock, flags = vcpu_schedule_lock_irqsave(h, v)
    if v.runnable():
        ops = VCPU2OP(h, v)
        check_held(lock, v.processor.load(), ops, "vcpu_wake")
        ops.wake(v)
    vcpu_schedule_unlock_irqrestore(h, lock, flags, v)


def vcpu_sleep_nosync(h: Host, v: Vcpu) -> None:
    """``vcpu_sleep_nosync()``: take a vCPU that can't run off its runqueue."""
    lock, flags = vcpu_schedule_lock_irqsave(h, v)
    _vcpu_sleep_nosync_locked(h, v, lock)
    vcpu_schedule_unlock_irqrestore(h, lock, flags, v)


def _vcpu_sleep_nosync_locked(h: Host, v: Vcpu, lock: SpinLock) -> None:
    """``vcpu_sleep_nosync_locked()`` (9a36de177c): the caller holds ``v``'s lock."""
    if not v.runnable():
        ops = VCPU2OP(h, v)
        cpu = v.processor.load()
        check_held(lock, cpu, ops, "vcpu_sleep_nosync")
        if v.is_running.load():
            cpu_raise_softirq(h, cpu)
        ops.sleep(v)


def cpu_raise_softirq(h: Host, cpu: int) -> None:
    """``cpu_raise_softirq(cpu, SCHEDULE_SOFTIRQ)``: ask ``cpu`` to reschedule."""
    # test_and_set_bit(), as Xen's cpu_raise_softirq() sets the pending bit.
    h.percpu[cpu].softirq.exchange(_true)


def vcpu_sleep_sync(h: Host, v: Vcpu) -> None:
    """``vcpu_sleep_sync()``: sleep, then wait (bounded) until it is off its pCPU.

    Some thread must run ``schedule()`` on that pCPU for the vCPU to leave it: a
    single-threaded user who ran ``host.schedule(cpu)`` and got a guest vCPU must call
    it again once the vCPU sleeps, or this raises ``DeadlockError`` after the
    host's ``lock_timeout``. The wait is the driver's (``Bus.wait_until``): the model
    reads no clock and never sleeps.
    """
    vcpu_sleep_nosync(h, v)
    while v.is_running.load():
        v.is_running.wait_until(
            _not, f"{v.name} to leave its pCPU (no thread runs schedule() there?)"
        )


def vcpu_unblock(h: Host, v: Vcpu) -> None:
    """``vcpu_unblock()``: clear the blocked flag and wake."""
    # test_and_clear_bit(_VPF_blocked): atomic, as in Xen. Xen wakes only if the bit
    # was set; vcpu_wake() re-checks vcpu_runnable() under the lock either way.
    v.awake.exchange(_true)
    vcpu_wake(h, v)


def vcpu_block(h: Host, v: Vcpu) -> None:
    """``vcpu_block()``, as seen from the scheduler: set blocked, sleep."""
    v.awake.exchange(_clear)  # set_bit(_VPF_blocked): atomic, with no lock held
    vcpu_sleep_nosync(h, v)


# -- migration --------------------------------------------------------------------------


def _lock_double(a: SpinLock, b: SpinLock) -> bool:
    """``sched_spin_lock_double()``: one lock if equal, else lower 'address' first."""
    if a is b:
        return spin_lock_irqsave(a)
    lo, hi = (a, b) if a.order < b.order else (b, a)
    flags = spin_lock_irqsave(lo)
    spin_lock(hi)
    return flags


def _unlock_double(a: SpinLock, b: SpinLock, flags: bool) -> None:
    if a is not b:
        spin_unlock(b)
    spin_unlock_irqrestore(a, flags)


def _pick(h: Host, v: Vcpu) -> int:
    pool = v.domain.cpupool.load()
    # Read v->affinity once: other threads reset it without v's lock (a requested
    # migration, cpu_disable_scheduler() breaking affinity), and reading it three
    # times let a free-running stress run see "not None", "in the pool", then None,
    # and return None as a pCPU.
    affinity = v.affinity.load()
    if pool is not None and affinity is not None and pool.cpu_valid.test(affinity):
        return affinity
    return VCPU2OP(h, v).pick_cpu(v)


def vcpu_migrate(h: Host, v: Vcpu) -> None:
    """``vcpu_migrate()``: move a vCPU flagged ``migrating`` to a pCPU of its pool."""
    # As Xen 4.7: the first round locks the vCPU's own pCPU, and pick_cpu runs only
    # with the old and new pCPUs' locks held; a pick whose lock is not the one held
    # is locked on the next round.
    old_cpu = new_cpu = v.processor.load()
    for _ in range(_MIGRATE_RETRIES):
        old_lock = h.percpu[old_cpu].schedule_data.schedule_lock.load()
        new_lock = h.percpu[new_cpu].schedule_data.schedule_lock.load()
        flags = _lock_double(old_lock, new_lock)
        old_cpu = v.processor.load()
        if old_lock is h.percpu[old_cpu].schedule_data.schedule_lock.load():
            new_cpu = _pick(h, v)
            pool = v.domain.cpupool.load()
            if (
                new_lock is h.percpu[new_cpu].schedule_data.schedule_lock.load()
                and pool is not None
                and pool.cpu_valid.test(new_cpu)
            ):
                break
        _unlock_double(old_lock, new_lock, flags)
    else:
        msg = f"vcpu_migrate({v.name}) retried {_MIGRATE_RETRIES} times"
        raise h.bus.deadlock("vcpu_migrate", msg)
    # Still running somewhere: context_saved() will call us again.
    # test_and_clear_bit(_VPF_migrating), as in Xen.
    if v.is_running.load() or not v.migrating.exchange(_clear):
        _unlock_double(old_lock, new_lock, flags)
        return
    ops = VCPU2OP(h, v)
    check_held(old_lock, old_cpu, ops, "vcpu_migrate")
    check_held(new_lock, new_cpu, ops, "vcpu_migrate")
    ops.migrate(v, new_cpu)
    _unlock_double(old_lock, new_lock, flags)
    vcpu_wake(h, v)


def _vcpu_migrate_start(h: Host, v: Vcpu, lock: SpinLock) -> None:
    """``vcpu_migrate_start()``, backported from Xen 9a36de177c (4.11).

    Xen 4.7 set ``_VPF_migrating`` under the lock, dropped it, then called
    ``vcpu_sleep_nosync()``. In that gap ``context_saved()`` on the pCPU the vCPU just
    left could run the whole ``vcpu_migrate()`` while the vCPU still sat on that
    pCPU's runqueue (put back by the ``schedule()`` that descheduled it): its
    ``v->processor`` changed, the runqueue entry stayed, and ``vcpu_sleep_nosync()``
    then saw a runnable vCPU and did nothing. Free-running stress runs hit this in
    seconds (Credit1: ``ASSERT`` in ``vcpu_runstate_change()``), under either switch
    protocol, as George Dunlap's commit says of Xen. Setting the flag and taking the
    vCPU off its runqueue in one critical section closes the gap.
    """
    v.migrating.exchange(_true)  # set_bit(_VPF_migrating)
    _vcpu_sleep_nosync_locked(h, v, lock)


def vcpu_request_migrate(h: Host, v: Vcpu, target: int | None = None) -> None:
    """Ask for ``v`` to move (to ``target`` if given), as ``vcpu_set_affinity()`` does."""
    v.affinity.store(target)
    lock = vcpu_schedule_lock_irq(h, v)
    _vcpu_migrate_start(h, v, lock)
    vcpu_schedule_unlock_irq(h, lock, v)
    vcpu_migrate(h, v)


def cpu_disable_scheduler(h: Host, cpu: int) -> int:
    """``cpu_disable_scheduler()``: migrate every vCPU of ``cpu``'s pool off ``cpu``.

    The pool is ``per_cpu(cpupool, cpu)``, the one the pCPU still belongs to (a
    removal retried from another pool, which 4.7.0 lets through for the moving pCPU,
    empties that one). Returns 0, or ``EAGAIN`` when a vCPU is still running there.
    """
    pool = h.percpu[cpu].cpupool.load()
    if pool is None:
        return 0
    ret = 0
    for d in pool.domains.load():
        for v in d.vcpus:
            lock, flags = vcpu_schedule_lock_irqsave(h, v)
            on_cpu = v.processor.load() == cpu
            if on_cpu:
                if v.affinity.load() == cpu:
                    v.affinity.store(None)  # "breaking affinity"
                _vcpu_migrate_start(h, v, lock)  # 9a36de177c, see there
            vcpu_schedule_unlock_irqrestore(h, lock, flags, v)
            if on_cpu:
                vcpu_migrate(h, v)
            if v.processor.load() == cpu:
                ret = errno.EAGAIN
    return ret


# -- domains between pools ----------------------------------------------------------------


def domain_pause(h: Host, d: Domain) -> None:
    d.paused.store(True)
    for v in d.vcpus:
        vcpu_sleep_sync(h, v)


def domain_unpause(h: Host, d: Domain) -> None:
    d.paused.store(False)
    for v in d.vcpus:
        vcpu_wake(h, v)


def sched_move_domain(h: Host, d: Domain, c: Cpupool) -> None:
    """``sched_move_domain()``: the scheduling half of ``xl cpupool-migrate``."""
    old_ops = VCPU2OP(h, d.vcpus[0]) if d.vcpus else h.ops
    domdata = c.sched.alloc_domdata(d)
    vcpu_priv = [c.sched.alloc_vdata(v, domdata) for v in d.vcpus]
    try:
        domain_pause(h, d)
    except DeadlockError:
        # A vCPU never left its pCPU: undo, so the host is as it was.
        for vdata in vcpu_priv:
            c.sched.free_vdata(vdata)
        c.sched.free_domdata(domdata)
        domain_unpause(h, d)
        raise
    for v in d.vcpus:
        old_ops.remove_vcpu(v)
    old_domdata = d.sched_priv.load()
    d.cpupool.store(c)
    d.sched_priv.store(domdata)
    cpus = sorted(c.cpu_valid.load())
    for i, v in enumerate(d.vcpus):
        vcpudata = v.sched_priv.load()
        lock = vcpu_schedule_lock_irq(h, v)
        v.processor.store(cpus[i % len(cpus)])
        # With v->processor modified we must not assume we hold the lock.
        spin_unlock_irq(lock)
        v.sched_priv.store(vcpu_priv[i])
        v.affinity.store(None)
        c.sched.insert_vcpu(v)
        old_ops.free_vdata(vcpudata)
    domain_unpause(h, d)
    old_ops.free_domdata(old_domdata)


# -- schedule_cpu_switch() ------------------------------------------------------------------


def schedule_cpu_switch(h: Host, cpu: int, c: Cpupool | None) -> None:
    """Move ``cpu`` between a pool and the free pCPUs, by the host's protocol.

    The protocol's own switch (``legacy``, or a user's) or else :func:`_switch_fixed`
    runs between the ASSERTs and the store of the pCPU's cpupool.

    Raises:
        XenError: an ``alloc_*`` hook failed (the host is unchanged).
    """
    pc = h.percpu[cpu]
    old_ops = pc.scheduler.load()
    new_ops = c.sched if c is not None else h.ops
    old_pool = pc.cpupool.load()
    where = "schedule_cpu_switch"
    ASSERT(
        c is not old_pool and (c is not None or old_pool is not None),
        where,
        "c != old_pool && (c != NULL || old_pool != NULL)",
        cpu=cpu,
    )
    ASSERT(
        h.cpupool_free_cpus.test(cpu),
        where,
        "cpumask_test_cpu(cpu, &cpupool_free_cpus)",
        cpu=cpu,
    )
    ASSERT(
        (c is None and old_pool is not None and not old_pool.cpu_valid.test(cpu))
        or (c is not None and not c.cpu_valid.test(cpu)),
        where,
        "(c == NULL && !cpumask_test_cpu(cpu, old_pool->cpu_valid)) || "
        "(c != NULL && !cpumask_test_cpu(cpu, c->cpu_valid))",
        cpu=cpu,
    )
    if old_ops is not new_ops:
        switch = h.protocol.switch or _switch_fixed
        switch(h, cpu, old_ops, new_ops)
    pc.cpupool.store(c)
    check_switched(h, cpu, where)


def check_switched(h: Host, cpu: int, where: str) -> bool:
    """``lock-clobbered``: does ``cpu``'s lock pointer match its scheduler's scheme?"""
    pc = h.percpu[cpu]
    sched = pc.scheduler.peek()
    actual = pc.schedule_data.schedule_lock.peek()
    expected = sched.lock_for(cpu)
    if actual is expected:
        return True
    h.bus.violation(
        ViolationKind.LOCK_CLOBBERED,
        where,
        f"cpu{cpu} now runs {sched.label} but its schedule_lock points to "
        f"{actual.name}, not {expected.name if expected is not None else 'its lock'}",
        cpu=cpu,
    )
    return False


def _alloc(h: Host, cpu: int, new_ops: Scheduler) -> tuple[Any, Any]:
    idle = h.percpu[cpu].idle
    ppriv = new_ops.alloc_pdata(cpu)
    vpriv = new_ops.alloc_vdata(idle, idle.domain.sched_priv.load())
    if vpriv is None:
        new_ops.free_pdata(ppriv, cpu)
        raise XenError(errno.ENOMEM, f"{new_ops.label}: alloc_vdata for idle{cpu}")
    return ppriv, vpriv


def _alloc_and_init(h: Host, cpu: int, new_ops: Scheduler) -> tuple[Any, Any]:
    """94734ab7c3^'s allocation: ``init_pdata`` runs at once, and Credit2/RTDS remap
    the lock there, before the swap: window [2]."""
    idle = h.percpu[cpu].idle
    ppriv = new_ops.alloc_pdata(cpu)
    new_ops.init_pdata(ppriv, cpu, pre_patch=True)
    vpriv = new_ops.alloc_vdata(idle, idle.domain.sched_priv.load())
    return ppriv, vpriv


def _switch_legacy(h: Host, cpu: int, old_ops: Scheduler, new_ops: Scheduler) -> None:
    """94734ab7c3^: init_pdata remaps first; the swap runs under the *new* lock."""
    pc = h.percpu[cpu]
    sd = pc.schedule_data
    idle = pc.idle
    ppriv, vpriv = _alloc_and_init(h, cpu, new_ops)
    lock = pcpu_schedule_lock_irq(h, cpu)
    old_ops.tick_suspend(cpu)
    vpriv_old = idle.sched_priv.load()
    idle.sched_priv.store(vpriv)
    pc.scheduler.store(new_ops)
    ppriv_old = sd.sched_priv.load()
    sd.sched_priv.store(ppriv)
    new_ops.tick_resume(cpu)
    pcpu_schedule_unlock_irq(h, lock, cpu)
    # Window [1]: the scheduler is new, the lock may still be the old one's.
    old_ops.free_vdata(vpriv_old)
    old_ops.free_pdata(ppriv_old, cpu, pre_patch=True)  # Credit2/RTDS: [3], [4]


def _switch_fixed(h: Host, cpu: int, old_ops: Scheduler, new_ops: Scheduler) -> None:
    """94734ab7c3 with 8b27d2b8af and fb0c3a8a30 (RELEASE-4.7.0), part by part.

    Each :class:`Part` the host's protocol lacks is reverted here, at its one site,
    to its pre-patch form (or dropped); the schedulers' hooks get the matching form
    as keyword arguments and never look at the protocol themselves.
    """
    p = h.protocol
    pc = h.percpu[cpu]
    sd = pc.schedule_data
    idle = pc.idle
    # Allocate, but don't initialise: switch_sched does that, in order, under lock.
    early_init = not p.has(Part.ALLOC_NO_INIT)
    alloc = _alloc_and_init if early_init else _alloc
    ppriv, vpriv = alloc(h, cpu, new_ops)
    old_ops.tick_suspend(cpu)
    irq = p.has(Part.LOCK_IRQ)
    old_lock: SpinLock | None = None
    if p.has(Part.OLD_LOCK):
        # The old scheduler's lock: whoever spins on it will, once we drop it, see
        # the pointer changed and retry on the new one.
        old_lock = (pcpu_schedule_lock_irq if irq else pcpu_schedule_lock)(h, cpu)
    elif irq:
        local_irq_disable()
    vpriv_old = idle.sched_priv.load()
    ppriv_old = sd.sched_priv.load()
    new_ops.switch_sched(
        cpu,
        ppriv,
        vpriv,
        init=not early_init,
        prv_lock_irq=not p.has(Part.PRV_LOCK_NO_IRQ),
        pointer_last=p.has(Part.POINTER_LAST),
        barrier=p.has(Part.BARRIER),
    )
    if old_lock is None:
        if irq:
            local_irq_enable()
    elif p.has(Part.UNLOCK_BY_POINTER):
        # _Not_ pcpu_schedule_unlock(): schedule_lock may have changed!
        spin_unlock_irq(old_lock)
    else:
        pcpu_schedule_unlock_irq(h, old_lock, cpu)
    new_ops.tick_resume(cpu)
    if p.has(Part.DEINIT_BEFORE_FREE):
        if NO_DEINIT_PDATA not in h.mutants:
            old_ops.deinit_pdata(ppriv_old, cpu)
        old_ops.free_vdata(vpriv_old)
        old_ops.free_pdata(ppriv_old, cpu)
    else:
        old_ops.free_vdata(vpriv_old)
        old_ops.free_pdata(ppriv_old, cpu, pre_patch=True)  # Credit2/RTDS: [3], [4]
