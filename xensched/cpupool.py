"""cpupools: create, destroy, cpu-add, cpu-remove, migrate a domain.

Mirrors: xen/common/cpupool.c of RELEASE-4.7.0 (``cpupool_create``, ``cpupool_destroy``,
``cpupool_assign_cpu_locked``, ``cpupool_unassign_cpu`` with its helper,
``cpupool_move_domain_locked``, the checks of ``cpupool_do_sysctl``) and the ``xl
cpupool-*`` commands that drive them, under both switch protocols. Global state
(``cpupool_lock``, ``cpupool_free_cpus``, ``cpupool_moving_cpu``,
``cpupool_cpu_moving``) lives on the :class:`~xensched.host.Host`.

A pCPU moves pool -> free -> pool, never pool -> pool: a free pCPU runs the boot
scheduler ``&ops`` (Pool-0's instance). Refusals raise :class:`XenError` with Xen's
errno:

- ``EEXIST``: a pool id or name already exists;
- ``EBUSY``: destroying a pool that still has pCPUs or domains; removing the last
  pCPU of a pool with live domains;
- ``ENODEV``: adding a pCPU that is not free;
- ``EADDRNOTAVAIL``: adding a pCPU that is being moved out of another pool; removing
  a pCPU while another one is being moved;
- ``ENOENT``: no such pool; moving a domain to a pool without pCPUs; no such
  domain, which is the toolstack's answer (domains are named here, as xl names them,
  and xl's lookup fails): Xen's own for an unknown domid is ``ESRCH``, which a name
  never reaches;
- ``EPERM``: moving Domain-0 (``rcu_lock_remote_domain_by_id()``: the caller's own
  domain);
- ``EINVAL``: unknown scheduler, pCPU out of range;
- ``EAGAIN``: a vCPU still runs on the pCPU being removed (libxc retries).

Removing a pCPU that is not in the pool succeeds and does nothing (``ret = 0``). Every
refusal leaves the host unchanged but ``EAGAIN``: as in Xen, the pCPU is then left
*free and moving* (out of the pool's ``cpu_valid``, in ``cpupool_free_cpus``, still on
the pool's scheduler, ``cpupool_moving_cpu`` set), which only a removal of that pCPU
(retried, as libxc does) or an add of it back to the same pool ends; every other
removal is refused with ``EADDRNOTAVAIL`` meanwhile. Adding it back to that pool trips
4.7.0's ``ASSERT(c != old_pool)`` in ``schedule_cpu_switch()`` (its ``per_cpu(cpupool)``
is still that pool): a real debug-build bug of the "easily repaired" path the helper's
comment promises, reported here as in Xen.

The errnos are RELEASE-4.7.0's (125d4beee0) for both protocols. 94734ab7c3 and its
parent, the tree of the legacy protocol, answered ``EBUSY`` where 4.7.0 answers
``ENODEV`` and ``EADDRNOTAVAIL``; which errno a refusal carries has no bearing on the
switch under study.

Left out: hotplug (``cpupool_cpu_add``/``remove`` notifiers, ``cpupool_locked_cpus``),
suspend/resume, dying domains (moved to Pool-0 when their pool's last pCPU goes),
NUMA ``nodes=``, ``cpupool-rename``, the sysctl continuation, ``cpupool_cpu_moving``'s
reference count.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from xensched.errors import XenError
from xensched.memory import CpuMask, RunQueue
from xensched.schedule import (
    cpu_disable_scheduler,
    sched_move_domain,
    schedule_cpu_switch,
)
from xensched.spinlock import spin_lock, spin_unlock

if TYPE_CHECKING:
    from collections.abc import Callable

    from xensched.domain import Domain
    from xensched.host import Host
    from xensched.interaction import Bus
    from xensched.schedulers.base import Scheduler


#: The race detector's declaration (``Cell(racy=)``) of ``cpu_valid``.
CPU_VALID_RACY = (
    "cpumask_set_cpu()/cpumask_clear_cpu() under cpupool_lock "
    "(cpupool_assign_cpu_locked, cpupool_unassign_cpu); scheduler code reads it "
    "without that lock (cpupool_domain_cpumask(), cpupool_online_cpumask() in "
    "csched_load_balance, vcpu_migrate's re-check): a stale mask costs a missed or "
    "wasted balance, and cpu_disable_scheduler() answers EAGAIN to a late placement"
)


class Cpupool:
    """``struct cpupool``."""

    __slots__ = ("cpu_valid", "cpupool_id", "domains", "name", "sched")

    def __init__(self, bus: Bus, cpupool_id: int, name: str, sched: Scheduler) -> None:
        self.cpupool_id = cpupool_id
        self.name = name
        self.sched = sched
        # Written under cpupool_lock; read without it by schedulers and vcpu_migrate.
        self.cpu_valid = CpuMask(bus, f"cpupool[{name}].cpu_valid", racy=CPU_VALID_RACY)
        self.domains: RunQueue[Domain] = RunQueue(bus, f"cpupool[{name}].domains")

    @property
    def n_dom(self) -> int:
        return len(self.domains.load())

    def __repr__(self) -> str:
        return f"<cpupool {self.cpupool_id} {self.name!r} {self.sched.opt_name}>"


def cpupool_create(
    h: Host,
    poolid: int | None,
    name: str,
    sched: Callable[[], Scheduler],
) -> Cpupool:
    """``cpupool_create()``: a new empty pool with its own scheduler instance.

    ``poolid=None`` takes the next free id, chosen under ``cpupool_lock`` as Xen does
    for ``XEN_SYSCTL_CPUPOOL_PAR_ANY``. ``sched`` builds the instance
    (``scheduler_alloc()``) only once the pool is known to be new, so a refused
    create leaves nothing behind.
    """
    spin_lock(h.cpupool_lock)
    try:
        pools = h.cpupools.load()
        for c in pools:
            if c.cpupool_id == poolid:
                raise XenError(errno.EEXIST, f"cpupool id {poolid} already exists")
            if c.name == name:
                raise XenError(errno.EEXIST, f"cpupool {name!r} already exists")
        if poolid is None:
            poolid = max((c.cpupool_id for c in pools), default=-1) + 1
        instance = sched()
        c = Cpupool(h.bus, poolid, name, instance)
        if instance is not h.ops:  # Pool-0 uses the boot instance, already set up
            instance.init()
        # The list is kept sorted by id, as Xen's is.
        h.cpupools.update(lambda ps: tuple(sorted((*ps, c), key=_pool_id)))
        return c
    finally:
        spin_unlock(h.cpupool_lock)


def cpupool_destroy(h: Host, c: Cpupool) -> None:
    """``cpupool_destroy()``: only an empty pool (no pCPUs, no domains) goes."""
    spin_lock(h.cpupool_lock)
    try:
        n_dom = c.n_dom
        cpus = c.cpu_valid.load()
        if n_dom or cpus:
            raise XenError(
                errno.EBUSY,
                f"cpupool {c.name!r} still has "
                + (f"{n_dom} domain(s)" if n_dom else f"pCPUs {sorted(cpus)}"),
            )
        h.cpupools.remove(c)
        if c.sched is not h.ops:
            c.sched.deinit()
    finally:
        spin_unlock(h.cpupool_lock)


def cpupool_assign_cpu(h: Host, c: Cpupool, cpu: int) -> None:
    """ADDCPU (``xl cpupool-cpu-add``): a free pCPU joins pool ``c``."""
    _check_cpu(h, cpu)
    spin_lock(h.cpupool_lock)
    try:
        if not h.cpupool_free_cpus.test(cpu):
            owner = h.percpu[cpu].cpupool.load()
            raise XenError(
                errno.ENODEV,
                f"cpu{cpu} is not free (it is in cpupool "
                f"{owner.name if owner else '?'!r}); cpupool-cpu-remove it first",
            )
        _assign_cpu_locked(h, c, cpu)
    finally:
        spin_unlock(h.cpupool_lock)


def _assign_cpu_locked(h: Host, c: Cpupool, cpu: int) -> None:
    """``cpupool_assign_cpu_locked()``: ``cpupool_lock`` held, ``cpu`` free."""
    moving_from = h.cpupool_cpu_moving.load()
    if h.cpupool_moving_cpu.load() == cpu and c is not moving_from:
        raise XenError(
            errno.EADDRNOTAVAIL,
            f"cpu{cpu} is being moved out of cpupool "
            f"{moving_from.name if moving_from else '?'!r}",
        )
    schedule_cpu_switch(h, cpu, c)
    h.cpupool_free_cpus.clear(cpu)
    if h.cpupool_moving_cpu.load() == cpu:
        h.cpupool_moving_cpu.store(-1)
        h.cpupool_cpu_moving.store(None)
    c.cpu_valid.set(cpu)


def cpupool_unassign_cpu(h: Host, c: Cpupool, cpu: int) -> None:
    """RMCPU (``xl cpupool-cpu-remove``): the pCPU leaves ``c`` and becomes free."""
    _check_cpu(h, cpu)
    spin_lock(h.cpupool_lock)
    try:
        moving = h.cpupool_moving_cpu.load()
        if moving not in (-1, cpu):
            raise XenError(errno.EADDRNOTAVAIL, f"cpu{moving} is being moved")
        cpus = c.cpu_valid.load()
        if cpu not in cpus and cpu != moving:
            return  # "ret = 0": not in this pool, nothing to do
        n_dom = c.n_dom
        if n_dom and len(cpus) == 1 and cpu != moving:
            raise XenError(
                errno.EBUSY,
                f"cpu{cpu} is the last pCPU of cpupool {c.name!r}, which has "
                f"{n_dom} domain(s)",
            )
        h.cpupool_moving_cpu.store(cpu)
        h.cpupool_cpu_moving.store(c)
        c.cpu_valid.clear(cpu)
    finally:
        spin_unlock(h.cpupool_lock)
    # continue_hypercall_on_cpu(): run on this thread (a pCPU other than `cpu`).
    _unassign_cpu_helper(h, c)


def _unassign_cpu_helper(h: Host, c: Cpupool) -> None:
    spin_lock(h.cpupool_lock)
    try:
        # Xen reads cpupool_moving_cpu before taking the lock; it cannot change
        # while cpupool_cpu_moving is c, so reading it under the lock is the same.
        cpu = h.cpupool_moving_cpu.load()
        if c is not h.cpupool_cpu_moving.load():
            raise XenError(
                errno.EADDRNOTAVAIL, f"cpupool {c.name!r} is no longer moving a pCPU"
            )
        ret = cpu_disable_scheduler(h, cpu)
        h.cpupool_free_cpus.set(cpu)
        if ret:
            # "cpu_disable_scheduler() returning an error doesn't require resetting
            # cpupool_free_cpus' cpu bit [...] tools will retry the operation": the
            # pCPU stays free and moving, out of c->cpu_valid.
            raise XenError(
                ret,
                f"a vCPU still runs on cpu{cpu}; it is left free and being moved "
                f"out of cpupool {c.name!r}: remove it again",
            )
        try:
            schedule_cpu_switch(h, cpu, None)
        except XenError:
            h.cpupool_free_cpus.clear(cpu)
            raise
        h.cpupool_moving_cpu.store(-1)
        h.cpupool_cpu_moving.store(None)
    finally:
        spin_unlock(h.cpupool_lock)


def cpupool_move_domain(h: Host, d: Domain, c: Cpupool) -> None:
    """MOVEDOMAIN (``xl cpupool-migrate``)."""
    if d.domain_id == 0:
        # rcu_lock_remote_domain_by_id(): the toolstack's own domain.
        raise XenError(errno.EPERM, "Domain-0 cannot be moved to another cpupool")
    spin_lock(h.cpupool_lock)
    try:
        old = d.cpupool.load()
        if old is c:
            return
        if not c.cpu_valid.load():
            raise XenError(errno.ENOENT, f"cpupool {c.name!r} has no pCPUs")
        sched_move_domain(h, d, c)
        if old is not None:
            old.domains.remove(d)
        c.domains.append(d)
    finally:
        spin_unlock(h.cpupool_lock)


def _pool_id(c: Cpupool) -> int:
    return c.cpupool_id


def _check_cpu(h: Host, cpu: int) -> None:
    if not 0 <= cpu < h.nr_cpus:
        raise XenError(errno.EINVAL, f"cpu{cpu} does not exist (host has {h.nr_cpus})")
