"""RTDS, the real-time deferrable server scheduler.

Mirrors: xen/common/sched_rt.c at RELEASE-4.7.0 (fixed protocol) and at 94734ab7c3^
(legacy): ``rt_init_pdata`` (8686d2a3f6: remap under the lock the pCPU currently uses),
``rt_switch_sched``, ``rt_deinit_pdata``, ``rt_free_pdata`` (legacy: the remap back to
``_lock`` and its two ASSERTs, the patch's problem 2 and 3), ``rt_vcpu_insert``/
``remove``/``wake``/``sleep``, ``rt_schedule``, ``rt_cpu_pick``.

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
        self.vcpu = vcpu
        self.period = RTDS_DEFAULT_PERIOD
        self.budget = RTDS_DEFAULT_BUDGET
        self.cur_budget = self.budget
        self.cur_deadline = self.period
        self.queue: list[RtVcpu] | None = None  # runq, depletedq, or on none


class Rtds(Scheduler):
    name = "SMP RTDS Scheduler"
    opt_name = "rtds"
    sched_id = 8  # XEN_SCHEDULER_RTDS

    def __init__(self, h: Host, instance: str) -> None:
        super().__init__(h, instance)
        self.lock = SpinLock(h.bus, f"rtds@{instance}.prv->lock")
        self.runq: list[RtVcpu] = []
        self.depletedq: list[RtVcpu] = []
        self.cs = CriticalSection(f"rtds@{instance}.runq")
        self.now = 0
        self.cpus: set[int] = set()

    # -- per-pCPU -----------------------------------------------------------------------
    def init_pdata(self, pdata: Any, cpu: int, *, pre_patch: bool = False) -> None:
        # The same before and after the patch. Take the lock the pCPU uses *now*, remap, release that same lock.
        old_lock, flags = pcpu_schedule_lock_irqsave(self.h, cpu)
        self.h.percpu[cpu].schedule_data.schedule_lock.store(self.lock)
        self.cpus.add(cpu)
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
        self.cpus.add(cpu)  # a no-op when init_pdata ran before the swap
        if pointer_last:
            self._reroute(cpu, self.lock, barrier)

    def deinit_pdata(self, pdata: Any, cpu: int) -> None:
        flags = spin_lock_irqsave(self.lock)
        self.cpus.discard(cpu)
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
        self.cpus.discard(cpu)
        spin_unlock_irqrestore(self.lock, flags)

    # -- per-vCPU -----------------------------------------------------------------------
    def alloc_vdata(self, v: Vcpu, dd: Any) -> Any:
        return RtVcpu(v)

    def alloc_domdata(self, d: Domain) -> Any:
        return {"dom": d.domain_id}

    def _q_insert(self, svc: RtVcpu) -> None:
        ASSERT(spin_is_locked(self.lock), "__runq_insert", "spin_is_locked(&prv->lock)")
        if svc.cur_budget > 0:
            q = self.runq
            pos = len(q)
            for i, other in enumerate(q):
                if svc.cur_deadline < other.cur_deadline:
                    pos = i
                    break
            q.insert(pos, svc)
        else:
            q = self.depletedq
            q.append(svc)
        svc.queue = q

    @staticmethod
    def _q_remove(svc: RtVcpu) -> None:
        if svc.queue is not None:
            svc.queue.remove(svc)
            svc.queue = None

    def _replenish(self, svc: RtVcpu) -> None:
        while svc.cur_deadline <= self.now:
            svc.cur_deadline += svc.period
        svc.cur_budget = svc.budget

    def insert_vcpu(self, v: Vcpu) -> None:
        svc = v.sched_priv.load()
        v.processor.store(self.pick_cpu(v))
        lock = vcpu_schedule_lock_irq(self.h, v)
        if v.runnable() and not v.is_running and svc.queue is None:
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
        if self.h.percpu[cpu].schedule_data.curr.load() is v or svc.queue is not None:
            return
        with self.cs.section("rt_vcpu_wake"):
            if self.now >= svc.cur_deadline:
                self._replenish(svc)
            self._q_insert(svc)

    def sleep(self, v: Vcpu) -> None:
        svc = v.sched_priv.load()
        if svc.queue is not None:
            with self.cs.section("rt_vcpu_sleep"):
                self._q_remove(svc)

    # -- do_schedule ---------------------------------------------------------------------
    def do_schedule(self, cpu: int, now: int) -> Vcpu:
        pc = self.h.percpu[cpu]
        curr = pc.schedule_data.curr.load()
        scurr = curr.sched_priv.load()
        with self.cs.section("rt_schedule"):
            self.now += 1
            if not curr.is_idle and isinstance(scurr, RtVcpu):
                scurr.cur_budget -= 1
                if curr.runnable() and curr.processor.load() == cpu:
                    self._q_insert(scurr)
            # Replenishment, folded in from repl_timer_handler().
            for svc in [s for s in self.depletedq if s.cur_deadline <= self.now]:
                self._q_remove(svc)
                self._replenish(svc)
                self._q_insert(svc)
            snext = self.first_runnable(self.runq, curr, cpu)
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
