"""Credit2, the credit scheduler with shared runqueues.

Mirrors: xen/common/sched_credit2.c at RELEASE-4.7.0 (fixed protocol) and at
94734ab7c3^ (legacy): ``init_pdata`` (the static helper), ``csched2_init_pdata``,
``csched2_switch_sched`` (with fb0c3a8a30's ``spin_lock``), ``csched2_deinit_pdata``
(f45666afdb), ``csched2_free_pdata`` (legacy: with the remap back to ``_lock`` and its
ASSERTs), ``csched2_vcpu_insert``/``remove``/``wake``/``sleep``/``migrate``,
``csched2_context_saved``, ``csched2_cpu_pick`` and ``csched2_schedule`` with its three
BUG_ONs. The ASSERTs follow
each tree: ``csched2_init_pdata``'s ``ASSERT(!pdata)`` on the fixed protocol only,
``csched2_vcpu_migrate``'s ``BUG_ON`` on an uninitialised target in both (its
hard-affinity ASSERT is left out: an affinity here is one pCPU or none).

Lock scheme: one runqueue per socket (the PRE rule ``rqi = cpu ? cpu_to_socket(cpu) :
0``), each with a lock that the ``schedule_lock`` of every pCPU of that runqueue points
to. ``prv->lock`` is taken before any runqueue lock, except in ``switch_sched`` where
the lock already held is another scheduler's. For the fixed protocol this is
RELEASE-4.7.0 booted with ``credit2_runqueue=socket``: the same pCPUs share a runqueue
(4.7.0's ``cpu_to_runqueue()`` numbers the runqueues in the order they are first used,
where here the socket is the index). 4.7.0's default is ``core`` (bcd46d3912), one
runqueue per core, i.e. per pCPU on a topology without SMT; 4.8 went back to ``socket``
(3a782c7603).

Simplified (documented, not Xen): credit burns a fixed amount per ``schedule()``;
``reset_credit`` gives every vCPU of the runqueue ``CSCHED2_CREDIT_INIT`` when the best
candidate has none left; no load balancing between runqueues, no weights, no
``runq_tickle``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xensched.checks import ASSERT, BUG_ON, CriticalSection
from xensched.memory import Cell, CpuMask, RunQueue
from xensched.mutants import CREDIT2_LOCK_ORDER
from xensched.sched_if import (
    pcpu_schedule_lock,
    vcpu_schedule_lock_irq,
    vcpu_schedule_unlock_irq,
)
from xensched.schedulers.base import Scheduler
from xensched.spinlock import (
    SpinLock,
    local_irq_is_enabled,
    spin_is_locked,
    spin_lock,
    spin_lock_irq,
    spin_lock_irqsave,
    spin_unlock,
    spin_unlock_irq,
    spin_unlock_irqrestore,
)

if TYPE_CHECKING:
    from xensched.domain import Domain, Vcpu
    from xensched.host import Host

CSCHED2_CREDIT_INIT = 1000
CSCHED2_CREDIT_BURN = 250
CSCHED2_IDLE_CREDIT = -(1 << 30)


class Csched2Vcpu:
    """``struct csched2_vcpu``."""

    __slots__ = ("credit", "on_runq", "rqd", "sdom", "vcpu")

    def __init__(self, vcpu: Vcpu, sdom: Any) -> None:
        bus = vcpu.processor.bus
        name = f"{vcpu.name}.csched2_vcpu"
        self.vcpu = vcpu
        self.sdom = sdom
        self.credit: Cell[int] = Cell(
            bus,
            f"{name}.credit",
            CSCHED2_IDLE_CREDIT if vcpu.is_idle else CSCHED2_CREDIT_INIT,
        )
        self.rqd: Cell[Csched2RunqueueData | None] = Cell(bus, f"{name}.rqd", None)
        self.on_runq: Cell[bool] = Cell(bus, f"{name}.on_runq", False)


class Csched2Dom:
    """``struct csched2_dom``: only its (constant) weight is modelled."""

    __slots__ = ("dom", "weight")

    def __init__(self, dom: Domain) -> None:
        self.dom = dom
        self.weight = 256


def _burn(credit: int) -> int:
    return credit - CSCHED2_CREDIT_BURN


def _reset(credit: int) -> int:
    return min(credit, 0) + CSCHED2_CREDIT_INIT


#: The race detector's declaration (``Cell(racy=)``) of ``prv->initialized`` and
#: ``rqd->active``.
OWN_BIT_RACY = (
    "init_pdata()/csched2_deinit_pdata() change it with cpumask_set_cpu()/"
    "cpumask_clear_cpu() under prv->lock alone; csched2_schedule()'s BUG_ON tests "
    "the running pCPU's own bit under its runqueue lock, a bit no one else changes "
    "while that pCPU schedules here"
)


class Csched2RunqueueData:
    """``struct csched2_runqueue_data``."""

    __slots__ = ("active", "cs", "id", "idle", "lock", "runq", "svc")

    def __init__(self, h: Host, instance: str, rqi: int) -> None:
        bus = h.bus
        name = f"credit2@{instance}.rqd[{rqi}]"
        self.id = rqi
        self.lock = SpinLock(bus, f"{name}.lock")
        self.runq: RunQueue[Csched2Vcpu] = RunQueue(bus, f"{name}.runq")
        # Every vCPU assigned here.
        self.svc: RunQueue[Csched2Vcpu] = RunQueue(bus, f"{name}.svc")
        self.active = CpuMask(bus, f"{name}.active", racy=OWN_BIT_RACY)
        self.idle = CpuMask(bus, f"{name}.idle")
        self.cs = CriticalSection(bus, name)


class Credit2(Scheduler):
    name = "SMP Credit Scheduler rev2"
    opt_name = "credit2"
    sched_id = 6  # XEN_SCHEDULER_CREDIT2

    def __init__(self, h: Host, instance: str) -> None:
        super().__init__(h, instance)
        self.lock = SpinLock(h.bus, f"credit2@{instance}.prv->lock")
        self.rqd = tuple(
            Csched2RunqueueData(h, instance, i) for i in range(h.topology.sockets)
        )
        self.runq_map: tuple[Cell[int], ...] = tuple(
            Cell(h.bus, f"credit2@{instance}.runq_map[{cpu}]", -1)
            for cpu in range(h.nr_cpus)
        )
        self.initialized = CpuMask(
            h.bus, f"credit2@{instance}.initialized", racy=OWN_BIT_RACY
        )
        self.active_queues = CpuMask(h.bus, f"credit2@{instance}.active_queues")

    def _rqi_of(self, cpu: int) -> int:
        # 94734ab7c3^ rule: cpu 0 always on runqueue 0, others by socket.
        return 0 if cpu == 0 else self.h.topology.cpu_to_socket(cpu)

    def _rqd_of(self, cpu: int) -> Csched2RunqueueData | None:
        """``RQD(ops, cpu)``."""
        rqi = self.runq_map[cpu].load()
        return self.rqd[rqi] if rqi >= 0 else None

    # -- per-pCPU -----------------------------------------------------------------------
    def _init_pdata(self, cpu: int, remap: bool) -> int:
        """The static ``init_pdata()``; with ``remap`` it is the 94734ab7c3^ version."""
        ASSERT(
            spin_is_locked(self.lock),
            "init_pdata",
            "spin_is_locked(&prv->lock)",
            cpu=cpu,
        )
        ASSERT(
            not self.initialized.test(cpu),
            "init_pdata",
            "!cpumask_test_cpu(cpu, &prv->initialized)",
            cpu=cpu,
        )
        rqi = self._rqi_of(cpu)
        rqd = self.rqd[rqi]
        if not self.active_queues.test(rqi):
            self.active_queues.set(rqi)  # activate_runqueue()
        old_lock = None
        if remap:
            # IRQs already disabled.
            old_lock = pcpu_schedule_lock(self.h, cpu)
            self.h.percpu[cpu].schedule_data.schedule_lock.store(rqd.lock)
        self.runq_map[cpu].store(rqi)
        rqd.idle.set(cpu)
        rqd.active.set(cpu)
        if old_lock is not None:
            # _Not_ pcpu_schedule_unlock(): per_cpu().schedule_lock changed!
            spin_unlock(old_lock)
        self.initialized.set(cpu)
        return rqi

    def init_pdata(self, pdata: Any, cpu: int, *, pre_patch: bool = False) -> None:
        if not pre_patch:
            # RELEASE-4.7.0: "since we don't (need to) implement alloc_pdata,
            # either that's NULL, or something is very wrong!"
            ASSERT(pdata is None, "csched2_init_pdata", "!pdata", cpu=cpu)
        flags = spin_lock_irqsave(self.lock)
        if pre_patch:
            self._init_pdata(cpu, remap=True)
        else:
            old_lock = pcpu_schedule_lock(self.h, cpu)
            rqi = self._init_pdata(cpu, remap=False)
            self.h.percpu[cpu].schedule_data.schedule_lock.store(self.rqd[rqi].lock)
            spin_unlock(old_lock)
        spin_unlock_irqrestore(self.lock, flags)

    def _deinit(self, cpu: int, remap_back: bool) -> None:
        sd = self.h.percpu[cpu].schedule_data
        where = "csched2_free_pdata" if remap_back else "csched2_deinit_pdata"
        flags = spin_lock_irqsave(self.lock)
        if not ASSERT(
            self.initialized.test(cpu),
            where,
            "cpumask_test_cpu(cpu, &prv->initialized)",
            cpu=cpu,
        ):
            spin_unlock_irqrestore(self.lock, flags)
            return
        rqi = self.runq_map[cpu].load()
        rqd = self.rqd[rqi]
        spin_lock(rqd.lock)  # IRQs are already off
        BUG_ON(
            not rqd.idle.test(cpu), where, "!cpumask_test_cpu(cpu, &rqd->idle)", cpu=cpu
        )
        rqd.idle.clear(cpu)
        rqd.active.clear(cpu)
        if not rqd.active.load():
            self.active_queues.clear(rqi)  # deactivate_runqueue()
        if remap_back:
            # The code the patch removed: it clobbers whatever the new scheduler set.
            ASSERT(
                sd.schedule_lock.load() is rqd.lock,
                "csched2_free_pdata",
                "sd->schedule_lock == &rqd->lock",
                cpu=cpu,
            )
            ASSERT(
                not spin_is_locked(sd._lock),
                "csched2_free_pdata",
                "!spin_is_locked(&sd->_lock)",
                cpu=cpu,
            )
            sd.schedule_lock.store(sd._lock)
        spin_unlock(rqd.lock)
        # prv->runq_map[cpu] keeps its runqueue, as in Xen: only `initialized` says
        # whether cpu is this instance's (init_pdata writes the map again).
        self.initialized.clear(cpu)
        spin_unlock_irqrestore(self.lock, flags)

    def deinit_pdata(self, pdata: Any, cpu: int) -> None:
        self._deinit(cpu, remap_back=False)

    def free_pdata(self, pdata: Any, cpu: int, *, pre_patch: bool = False) -> None:
        if pre_patch:
            self._deinit(cpu, remap_back=True)

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
            pdata is None and isinstance(vdata, Csched2Vcpu) and vdata.vcpu.is_idle,
            "csched2_switch_sched",
            "!pdata && svc && is_idle_vcpu(svc->vcpu)",
            cpu=cpu,
        )
        ASSERT(
            not local_irq_is_enabled(),
            "csched2_switch_sched",
            "!local_irq_is_enabled()",
            cpu=cpu,
        )
        # The credit2-lock-order mutant: our own runqueue's lock first, against the
        # documented order (private, then runqueue) that _deinit() keeps.
        rq_lock = None
        if CREDIT2_LOCK_ORDER in self.h.mutants:
            rq_lock = self.rqd[self._rqi_of(cpu)].lock
            spin_lock(rq_lock)
        # We own a runqueue lock already, but it is another scheduler's: taking our
        # private lock after it does not break our ordering rule. spin_lock, not
        # spin_lock_irq, whose unlock would turn IRQs back on under that lock.
        (spin_lock_irq if prv_lock_irq else spin_lock)(self.lock)
        self.h.percpu[cpu].idle.sched_priv.store(vdata)
        rqi = self._init_pdata(cpu, remap=False) if init else self.runq_map[cpu].load()
        ASSERT(
            sd.schedule_lock.load() is not self.rqd[rqi].lock,
            "csched2_switch_sched",
            "per_cpu(schedule_data, cpu).schedule_lock != &prv->rqd[rqi].lock",
            cpu=cpu,
        )
        if not pointer_last:
            self._reroute(cpu, self.rqd[rqi].lock, barrier)
        self.h.percpu[cpu].scheduler.store(self)
        sd.sched_priv.store(None)
        if pointer_last:
            self._reroute(cpu, self.rqd[rqi].lock, barrier)
        (spin_unlock_irq if prv_lock_irq else spin_unlock)(self.lock)
        if rq_lock is not None:
            spin_unlock(rq_lock)

    # -- per-vCPU -----------------------------------------------------------------------
    def alloc_vdata(self, v: Vcpu, dd: Any) -> Any:
        return Csched2Vcpu(v, dd)

    def free_vdata(self, vdata: Any) -> None:
        if isinstance(vdata, Csched2Vcpu):
            BUG_ON(vdata.on_runq.load(), "csched2_free_vdata", "__vcpu_on_runq(svc)")

    def alloc_domdata(self, d: Domain) -> Any:
        return Csched2Dom(d)

    def _runq_insert(self, svc: Csched2Vcpu, where: str) -> None:
        cpu = svc.vcpu.processor.load()
        ASSERT(
            spin_is_locked(self.h.percpu[cpu].schedule_data.schedule_lock.load()),
            "runq_insert",
            "spin_is_locked(per_cpu(schedule_data, cpu).schedule_lock)",
            cpu=cpu,
        )
        rqd = svc.rqd.load()
        if rqd is None:
            return
        with rqd.cs.section(where):
            self._runq_insert_locked(rqd, svc)

    @staticmethod
    def _runq_insert_locked(rqd: Csched2RunqueueData, svc: Csched2Vcpu) -> None:
        runq = rqd.runq.load()
        credit = svc.credit.load()
        pos = len(runq)
        for i, other in enumerate(runq):
            if credit > other.credit.load():
                pos = i
                break
        rqd.runq.insert(pos, svc)
        svc.on_runq.store(True)

    def _runq_remove(self, svc: Csched2Vcpu, where: str) -> None:
        rqd = svc.rqd.load()
        if rqd is None:
            return
        with rqd.cs.section(where):
            rqd.runq.remove(svc)
            svc.on_runq.store(False)

    def insert_vcpu(self, v: Vcpu) -> None:
        # v->processor is where the caller put it (sched_init_vcpu(),
        # sched_move_domain()): 4.7's insert hooks never move it.
        svc = v.sched_priv.load()
        lock = vcpu_schedule_lock_irq(self.h, v)
        rqd = self._rqd_of(v.processor.load())
        if rqd is not None:  # runq_assign()
            with rqd.cs.section("runq_assign"):
                svc.rqd.store(rqd)
                rqd.svc.append(svc)
        vcpu_schedule_unlock_irq(self.h, lock, v)

    def remove_vcpu(self, v: Vcpu) -> None:
        svc = v.sched_priv.load()
        lock = vcpu_schedule_lock_irq(self.h, v)
        if svc.on_runq.load():
            self._runq_remove(svc, "csched2_vcpu_remove")
        rqd = svc.rqd.load()
        if rqd is not None:  # runq_deassign()
            with rqd.cs.section("runq_deassign"):
                rqd.svc.remove(svc)
                svc.rqd.store(None)
        vcpu_schedule_unlock_irq(self.h, lock, v)

    def wake(self, v: Vcpu) -> None:
        svc = v.sched_priv.load()
        cpu = v.processor.load()
        if self.h.percpu[cpu].schedule_data.curr.load() is v or svc.on_runq.load():
            return
        self._runq_insert(svc, "csched2_vcpu_wake")

    def sleep(self, v: Vcpu) -> None:
        svc = v.sched_priv.load()
        if svc.on_runq.load():
            self._runq_remove(svc, "csched2_vcpu_sleep")

    def context_saved(self, v: Vcpu) -> None:
        """``csched2_context_saved``: the vCPU's lock taken and released.

        What it does under the lock is not modelled: the ``__CSFLAG_scheduled``/
        ``delayed_runq_add`` hand-off (``do_schedule`` puts a runnable ``curr`` back
        on the runqueue here), ``update_load``, and its ``BUG_ON(!is_idle_vcpu(vc)
        && svc->rqd != RQD(ops, vc->processor))``, which a 4.7 race unrelated to the
        patch fires: ``domain_pause()`` returns once ``is_running`` is clear, before
        this hook, and ``sched_move_domain()``'s ``csched2_vcpu_remove`` may then
        clear ``svc->rqd`` first (seen under the controlled driver).
        """
        lock = vcpu_schedule_lock_irq(self.h, v)
        vcpu_schedule_unlock_irq(self.h, lock, v)

    def migrate(self, v: Vcpu, new_cpu: int) -> None:
        # "Check if new_cpu is valid" (both trees). Xen would crash here.
        if BUG_ON(
            not self.initialized.test(new_cpu),
            "csched2_vcpu_migrate",
            "!cpumask_test_cpu(new_cpu, &CSCHED2_PRIV(ops)->initialized)",
            cpu=new_cpu,
        ):
            return
        svc = v.sched_priv.load()
        trqd = self._rqd_of(new_cpu)
        srqd = svc.rqd.load()
        if trqd is None or trqd is srqd:
            v.processor.store(new_cpu)
            return
        was_queued = svc.on_runq.load()
        if was_queued:
            self._runq_remove(svc, "csched2_vcpu_migrate")
        if srqd is not None:
            with srqd.cs.section("runq_deassign"):
                srqd.svc.remove(svc)
        v.processor.store(new_cpu)
        with trqd.cs.section("runq_assign"):
            svc.rqd.store(trqd)
            trqd.svc.append(svc)
        if was_queued:
            self._runq_insert(svc, "csched2_vcpu_migrate")

    def pick_cpu(self, v: Vcpu) -> int:
        pool = v.domain.cpupool.load()
        cpus = sorted(pool.cpu_valid.load()) if pool is not None else self.pool_cpus()
        if not cpus:
            return v.processor.load()
        here = v.processor.load()
        idle: set[int] = set()
        for rqd in self.rqd:
            idle |= rqd.idle.load()
        return min(cpus, key=lambda c: (c not in idle, c != here, c))

    # -- do_schedule ---------------------------------------------------------------------
    def do_schedule(self, cpu: int, now: int) -> Vcpu:
        pc = self.h.percpu[cpu]
        idle = pc.idle
        if BUG_ON(
            not self.initialized.test(cpu),
            "csched2_schedule",
            "!cpumask_test_cpu(cpu, &prv->initialized)",
            cpu=cpu,
        ):
            return idle
        rqd = self._rqd_of(cpu)
        if rqd is None or BUG_ON(
            not rqd.active.test(cpu),
            "csched2_schedule",
            "!cpumask_test_cpu(cpu, &rqd->active)",
            cpu=cpu,
        ):
            return idle
        curr = pc.schedule_data.curr.load()
        scurr = curr.sched_priv.load()
        if BUG_ON(
            not curr.is_idle
            and not (isinstance(scurr, Csched2Vcpu) and scurr.rqd.load() is rqd),
            "csched2_schedule",
            "!is_idle_vcpu(scurr->vcpu) && scurr->rqd != rqd",
            cpu=cpu,
        ):
            return idle
        with rqd.cs.section("csched2_schedule"):
            if not curr.is_idle:
                scurr.credit.update(_burn)
                if curr.runnable() and curr.processor.load() == cpu:
                    self._runq_insert_locked(rqd, scurr)
            snext = self.first_runnable(rqd.runq.load(), curr, cpu)
            if snext is not None and snext.credit.load() <= 0:
                # reset_credit(): everyone on this runqueue gets a fresh allowance.
                for svc in rqd.svc.load():
                    svc.credit.update(_reset)
                runq = rqd.runq.load()
                credit = {svc: svc.credit.load() for svc in runq}
                rqd.runq.store(tuple(sorted(runq, key=lambda s: -credit[s])))
            if snext is not None:
                rqd.runq.remove(snext)
                snext.on_runq.store(False)
        if snext is None:
            rqd.idle.set(cpu)
            return idle
        rqd.idle.clear(cpu)
        if snext.vcpu.processor.load() != cpu:
            snext.vcpu.processor.store(cpu)
        return snext.vcpu

    # -- emulator-only --------------------------------------------------------------------
    def lock_for(self, cpu: int) -> SpinLock | None:
        # A check's reads. The map outlives deinit_pdata: `initialized` decides.
        if cpu not in self.initialized.peek():
            return None
        rqi = self.runq_map[cpu].peek()
        return self.rqd[rqi].lock if rqi >= 0 else None

    def runqueues(self) -> list[CriticalSection]:
        return [rqd.cs for rqd in self.rqd]
