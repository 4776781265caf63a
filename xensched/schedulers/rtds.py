"""RTDS, the real-time deferrable server scheduler.

Mirrors: xen/common/sched_rt.c at RELEASE-4.7.0 (fixed protocol) and at 94734ab7c3^
(legacy): ``rt_init_pdata`` (8686d2a3f6: remap under the lock the pCPU currently uses),
``rt_switch_sched``, ``rt_deinit_pdata``, ``rt_free_pdata`` (legacy: the remap back to
``_lock`` and its two ASSERTs, the patch's problem 2 and 3), ``rt_vcpu_insert``/
``remove``/``wake``/``sleep``, ``rt_context_saved``, ``rt_schedule``, ``rt_cpu_pick``.

Lock scheme: one global lock ``prv->lock`` for every pCPU of the instance; it is the
runqueue lock and the private lock at once.

Simplified (documented, not Xen): time is a per-instance tick count advanced by every
``rt_schedule()`` under the global lock; each vCPU has a fixed period and budget
(``RTDS_DEFAULT_PERIOD``/``BUDGET`` ticks); the replenishment timer is folded into
``rt_schedule()``; EDF picks the earliest deadline with budget left.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xensched.checks import ASSERT, CriticalSection
from xensched.memory import Cell, RunQueue, dec, inc
from xensched.sched_if import (
    pcpu_schedule_lock_irqsave,
    vcpu_schedule_lock_irq,
    vcpu_schedule_unlock_irq,
)
from xensched.schedulers.base import Scheduler
from xensched.spinlock import (
    SpinLock,
    spin_is_locked,
    spin_lock_irqsave,
    spin_unlock_irqrestore,
)

if TYPE_CHECKING:
    from xensched.domain import Domain, Vcpu
    from xensched.host import Host

RTDS_DEFAULT_PERIOD = 10
RTDS_DEFAULT_BUDGET = 4


class RtVcpu:
    """``struct rt_vcpu``."""

    __slots__ = ("budget", "cur_budget", "cur_deadline", "period", "queue", "vcpu")

    def __init__(self, vcpu: Vcpu) -> None:
        bus = vcpu.processor.bus
        name = f"{vcpu.name}.rt_vcpu"
        self.vcpu = vcpu
        # Parameters: set at creation, never changed (no XEN_DOMCTL_SCHEDOP here).
        self.period = RTDS_DEFAULT_PERIOD
        self.budget = RTDS_DEFAULT_BUDGET
        # Changed under prv->lock.
        self.cur_budget: Cell[int] = Cell(bus, f"{name}.cur_budget", self.budget)
        self.cur_deadline: Cell[int] = Cell(bus, f"{name}.cur_deadline", self.period)
        # runq, depletedq, or on none.
        self.queue: Cell[RunQueue[RtVcpu] | None] = Cell(bus, f"{name}.queue", None)


class Rtds(Scheduler):
    name = "SMP RTDS Scheduler"
    opt_name = "rtds"
    sched_id = 8  # XEN_SCHEDULER_RTDS

    def __init__(self, h: Host, instance: str) -> None:
        super().__init__(h, instance)
        bus = h.bus
        self.lock = SpinLock(bus, f"rtds@{instance}.prv->lock")
        # Written under prv->lock.
        self.runq: RunQueue[RtVcpu] = RunQueue(bus, f"rtds@{instance}.prv->runq")
        self.depletedq: RunQueue[RtVcpu] = RunQueue(
            bus, f"rtds@{instance}.prv->depletedq"
        )
        self.cs = CriticalSection(bus, f"rtds@{instance}.runq")
        self.now: Cell[int] = Cell(bus, f"rtds@{instance}.now", 0)

    # -- per-pCPU -----------------------------------------------------------------------
    def init_pdata(self, pdata: Any, cpu: int, *, pre_patch: bool = False) -> None:
        # The same before and after the patch. Take the lock the pCPU uses *now*, remap, release that same lock.
        old_lock, flags = pcpu_schedule_lock_irqsave(self.h, cpu)
        self.h.percpu[cpu].schedule_data.schedule_lock.store(self.lock)
        spin_unlock_irqrestore(old_lock, flags)

    def switch_sched(
        self,
        cpu: int,
        pdata: Any,
        vdata: Any,
        *,
        init: bool = True,
        prv_lock_irq: bool = False,
        pointer_last: bool = True,
        barrier: bool = True,
    ) -> None:
        sd = self.h.percpu[cpu].schedule_data
        ASSERT(
            pdata is None and isinstance(vdata, RtVcpu) and vdata.vcpu.is_idle,
            "rt_switch_sched",
            "!pdata && svc && is_idle_vcpu(svc->vcpu)",
            cpu=cpu,
        )
        # The lock we hold is another scheduler's runqueue lock, never ours.
        ASSERT(
            sd.schedule_lock.load() is not self.lock,
            "rt_switch_sched",
            "per_cpu(schedule_data, cpu).schedule_lock != &prv->lock",
            cpu=cpu,
        )
        self.h.percpu[cpu].idle.sched_priv.store(vdata)
        if not pointer_last:
            self._reroute(cpu, self.lock, barrier)
        self.h.percpu[cpu].scheduler.store(self)
        sd.sched_priv.store(None)
        if pointer_last:
            self._reroute(cpu, self.lock, barrier)

    def deinit_pdata(self, pdata: Any, cpu: int) -> None:
        # 2656bc7b0c: under prv->lock, move repl_timer off cpu (or kill it if the
        # pool has no pCPU left); the timer is folded into rt_schedule() here.
        flags = spin_lock_irqsave(self.lock)
        spin_unlock_irqrestore(self.lock, flags)

    def free_pdata(self, pdata: Any, cpu: int, *, pre_patch: bool = False) -> None:
        if not pre_patch:
            return
        # The code the patch removed.
        sd = self.h.percpu[cpu].schedule_data
        flags = spin_lock_irqsave(self.lock)
        ASSERT(
            sd.schedule_lock.load() is self.lock,
            "rt_free_pdata",
            "sd->schedule_lock == &prv->lock",
            cpu=cpu,
        )
        ASSERT(
            not spin_is_locked(sd._lock),
            "rt_free_pdata",
            "!spin_is_locked(&sd->_lock)",
            cpu=cpu,
        )
        sd.schedule_lock.store(sd._lock)
        spin_unlock_irqrestore(self.lock, flags)

    # -- per-vCPU -----------------------------------------------------------------------
    def alloc_vdata(self, v: Vcpu, dd: Any) -> Any:
        return RtVcpu(v)

    def alloc_domdata(self, d: Domain) -> Any:
        return d.domain_id  # struct rt_dom: only its link to the domain is modelled

    def _q_insert(self, svc: RtVcpu) -> None:
        ASSERT(spin_is_locked(self.lock), "__runq_insert", "spin_is_locked(&prv->lock)")
        if svc.cur_budget.load() > 0:
            q = self.runq
            deadline = svc.cur_deadline.load()
            queued = q.load()
            pos = len(queued)
            for i, other in enumerate(queued):
                if deadline < other.cur_deadline.load():
                    pos = i
                    break
            q.insert(pos, svc)
        else:
            q = self.depletedq
            q.append(svc)
        svc.queue.store(q)

    @staticmethod
    def _q_remove(svc: RtVcpu) -> None:
        q = svc.queue.load()
        if q is not None:
            q.remove(svc)
            svc.queue.store(None)

    def _replenish(self, svc: RtVcpu, now: int) -> None:
        deadline = svc.cur_deadline.load()
        while deadline <= now:
            deadline += svc.period
        svc.cur_deadline.store(deadline)
        svc.cur_budget.store(svc.budget)

    def insert_vcpu(self, v: Vcpu) -> None:
        # v->processor is where the caller put it (sched_init_vcpu(),
        # sched_move_domain()): 4.7's insert hooks never move it.
        svc = v.sched_priv.load()
        lock = vcpu_schedule_lock_irq(self.h, v)
        if v.runnable() and not v.is_running.load() and svc.queue.load() is None:
            with self.cs.section("rt_vcpu_insert"):
                self._q_insert(svc)
        vcpu_schedule_unlock_irq(self.h, lock, v)

    def remove_vcpu(self, v: Vcpu) -> None:
        svc = v.sched_priv.load()
        lock = vcpu_schedule_lock_irq(self.h, v)
        with self.cs.section("rt_vcpu_remove"):
            self._q_remove(svc)
        vcpu_schedule_unlock_irq(self.h, lock, v)

    def wake(self, v: Vcpu) -> None:
        svc = v.sched_priv.load()
        cpu = v.processor.load()
        if (
            self.h.percpu[cpu].schedule_data.curr.load() is v
            or svc.queue.load() is not None
        ):
            return
        with self.cs.section("rt_vcpu_wake"):
            now = self.now.load()
            if now >= svc.cur_deadline.load():
                self._replenish(svc, now)
            self._q_insert(svc)

    def sleep(self, v: Vcpu) -> None:
        svc = v.sched_priv.load()
        if svc.queue.load() is not None:
            with self.cs.section("rt_vcpu_sleep"):
                self._q_remove(svc)

    def context_saved(self, v: Vcpu) -> None:
        """``rt_context_saved``: the vCPU's lock taken and released.

        What it does under the lock (``__RTDS_scheduled``, ``delayed_runq_add``,
        ``replq_remove``) is not modelled: ``rt_schedule`` puts a runnable ``curr``
        back on the runqueue, and the replenishment queue is folded into it.
        """
        lock = vcpu_schedule_lock_irq(self.h, v)
        vcpu_schedule_unlock_irq(self.h, lock, v)

    # -- do_schedule ---------------------------------------------------------------------
    def do_schedule(self, cpu: int, now: int) -> Vcpu:
        pc = self.h.percpu[cpu]
        curr = pc.schedule_data.curr.load()
        scurr = curr.sched_priv.load()
        with self.cs.section("rt_schedule"):
            now = self.now.update(inc)
            if not curr.is_idle and isinstance(scurr, RtVcpu):
                scurr.cur_budget.update(dec)
                if curr.runnable() and curr.processor.load() == cpu:
                    self._q_insert(scurr)
            # Replenishment, folded in from repl_timer_handler().
            for svc in self.depletedq.load():
                if svc.cur_deadline.load() <= now:
                    self._q_remove(svc)
                    self._replenish(svc, now)
                    self._q_insert(svc)
            snext = self.first_runnable(self.runq.load(), curr, cpu)
            if snext is None:
                return pc.idle
            self._q_remove(snext)
        if snext.vcpu.processor.load() != cpu:
            snext.vcpu.processor.store(cpu)
        return snext.vcpu

    # -- emulator-only --------------------------------------------------------------------
    def lock_for(self, cpu: int) -> SpinLock | None:
        return self.lock

    def runqueues(self) -> list[CriticalSection]:
        return [self.cs]
