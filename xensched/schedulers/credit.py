"""Credit1, the SMP credit scheduler.

Mirrors: xen/common/sched_credit.c at RELEASE-4.7.0 (fixed protocol) and at
94734ab7c3^ (legacy): ``csched_alloc_pdata``, ``init_pdata``/``csched_init_pdata``,
``csched_deinit_pdata``, ``csched_free_pdata``, ``csched_switch_sched``,
``csched_tick_suspend``/``resume``, ``csched_vcpu_insert``/``remove``/``wake``/``sleep``,
``csched_schedule`` with ``csched_load_balance`` and ``csched_runq_steal``,
``csched_cpu_pick``. The ASSERTs follow each tree: the ``init_pdata()`` helper's
(uninitialised runqueue) in both, ``csched_deinit_pdata``'s and ``csched_free_pdata``'s
(f45666afdb: init then deinit then free) on the fixed protocol only.

Lock scheme: each pCPU's ``schedule_lock`` is its default ``_lock`` (one runqueue per
pCPU, never remapped). The private lock ``prv->lock`` comes first: it is never taken
while a runqueue lock is held, except in ``switch_sched``, where the held lock belongs
to another scheduler. Load balancing steals from the pool's busy peers (those not in
``prv->idlers``) with ``pcpu_schedule_trylock`` and never spins on a peer; once a peer's
lock is held it steals only if that peer is still in the pool's ``cpu_valid``.

Simplified (documented, not Xen): priorities are UNDER/OVER/IDLE only (no BOOST);
``schedule()`` burns a fixed ``CSCHED_CREDITS_PER_TICK`` from the running vCPU; the
periodic ``csched_acct`` is replaced by a local refill of the vCPUs on a runqueue when
everything it could run is OVER; the master ticker is a flag; no affinity steps; no
``__runq_tickle`` (every pCPU thread calls ``schedule()`` in its own loop); no SMT or
core weighing in ``csched_cpu_pick``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from xensched.checks import ASSERT, BUG_ON, CriticalSection, check_held
from xensched.memory import Cell, CpuMask, RunQueue, dec, inc
from xensched.sched_if import (
    pcpu_schedule_trylock,
    pcpu_schedule_unlock,
    vcpu_schedule_lock_irq,
    vcpu_schedule_unlock_irq,
)
from xensched.schedulers.base import Scheduler
from xensched.spinlock import (
    SpinLock,
    local_irq_is_enabled,
    spin_is_locked,
    spin_lock,
    spin_lock_irqsave,
    spin_unlock,
    spin_unlock_irqrestore,
)

if TYPE_CHECKING:
    from xensched.domain import Domain, Vcpu
    from xensched.host import Host
    from xensched.interaction import Bus

CSCHED_PRI_TS_UNDER = -1
CSCHED_PRI_TS_OVER = -2
CSCHED_PRI_IDLE = -64
CSCHED_CREDITS_PER_TICK = 100
CSCHED_CREDITS_PER_TSLICE = 300
CSCHED_DEFAULT_WEIGHT = 256


def _burn(credit: int) -> int:
    return credit - CSCHED_CREDITS_PER_TICK


def _refill_slice(credit: int) -> int:
    return credit + CSCHED_CREDITS_PER_TSLICE


def _cycle(cpu: int, cpus: list[int]) -> int:
    """``cpumask_cycle()``: the first of ``cpus`` after ``cpu``, wrapping around."""
    return next((c for c in cpus if c > cpu), cpus[0])


#: The race detector's declaration (``Cell(racy=)``) of ``prv->idlers``.
IDLERS_RACY = (
    "cpumask_set_cpu()/cpumask_clear_cpu() by csched_schedule() and init_pdata(); "
    "csched_load_balance(), _csched_cpu_pick() and __runq_tickle() read it without "
    "prv->lock as a hint: a stale mask costs a missed steal or a wasted trylock"
)


class CschedVcpu:
    """``struct csched_vcpu``: its fields change under its pCPU's runqueue lock."""

    __slots__ = ("credit", "on_runq", "pri", "sdom", "vcpu")

    def __init__(self, vcpu: Vcpu, sdom: CschedDom | None) -> None:
        bus = vcpu.processor.bus
        self.vcpu = vcpu
        self.sdom = sdom
        self.pri: Cell[int] = Cell(
            bus,
            f"{vcpu.name}.csched_vcpu.pri",
            CSCHED_PRI_IDLE if vcpu.is_idle else CSCHED_PRI_TS_UNDER,
        )
        self.credit: Cell[int] = Cell(bus, f"{vcpu.name}.csched_vcpu.credit", 0)
        self.on_runq: Cell[bool] = Cell(bus, f"{vcpu.name}.csched_vcpu.on_runq", False)


class CschedDom:
    """``struct csched_dom``."""

    __slots__ = ("dom", "weight")

    def __init__(self, dom: Domain) -> None:
        self.dom = dom
        self.weight = CSCHED_DEFAULT_WEIGHT


class CschedPcpu:
    """``struct csched_pcpu``: the per-pCPU runqueue."""

    __slots__ = ("cpu", "cs", "runq", "runq_head", "ticker_active")

    def __init__(self, bus: Bus, cpu: int, instance: str) -> None:
        self.cpu = cpu
        self.runq: RunQueue[CschedVcpu] = RunQueue(
            bus, f"credit@{instance}.pcpu[{cpu}].runq"
        )
        # INIT_LIST_HEAD(&spc->runq) done: xzalloc() leaves runq.next/prev NULL
        # until init_pdata(), which ASSERTs they still are.
        self.runq_head: Cell[bool] = Cell(
            bus, f"credit@{instance}.pcpu[{cpu}].runq_head", False
        )
        self.cs = CriticalSection(bus, f"credit@{instance}.runq[{cpu}]")
        self.ticker_active: Cell[bool] = Cell(
            bus, f"credit@{instance}.pcpu[{cpu}].ticker_active", False
        )


class Credit(Scheduler):
    name = "SMP Credit Scheduler"
    opt_name = "credit"
    sched_id = 5  # XEN_SCHEDULER_CREDIT

    def __init__(self, h: Host, instance: str) -> None:
        super().__init__(h, instance)
        bus = h.bus
        self.lock = SpinLock(bus, f"credit@{instance}.prv->lock")
        # Written under prv->lock.
        self.ncpus: Cell[int] = Cell(bus, f"credit@{instance}.prv->ncpus", 0)
        self.cpus = CpuMask(bus, f"credit@{instance}.prv->cpus")
        self.credit: Cell[int] = Cell(bus, f"credit@{instance}.prv->credit", 0)
        self.master: Cell[int | None] = Cell(
            bus, f"credit@{instance}.prv->master", None
        )
        # prv->idlers: read without any lock by load balancing on other pCPUs.
        self.idlers = CpuMask(bus, f"credit@{instance}.prv->idlers", racy=IDLERS_RACY)
        self._pcpus: dict[int, CschedPcpu] = {}

    PRIVATE: ClassVar[dict[str, str]] = {
        "_pcpus": "emulator bookkeeping: the runqueues that exist, for runqueues() "
        "(Xen reaches them through per_cpu(schedule_data).sched_priv, as the model "
        "does)",
    }

    # -- helpers ----------------------------------------------------------------------
    def _pcpu(self, cpu: int) -> CschedPcpu | None:
        """``CSCHED_PCPU(cpu)``: through ``per_cpu(schedule_data, cpu).sched_priv``."""
        spc = self.h.percpu[cpu].schedule_data.sched_priv.load()
        return spc if isinstance(spc, CschedPcpu) else None

    def _init_pdata(self, spc: CschedPcpu | None, cpu: int) -> None:
        """The static ``init_pdata()`` helper (7760ff0d35), in both trees."""
        ASSERT(
            spin_is_locked(self.lock),
            "init_pdata",
            "spin_is_locked(&prv->lock)",
            cpu=cpu,
        )
        # cpu data needs to be allocated, but STILL uninitialized.
        ASSERT(
            spc is not None and not spc.runq_head.load(),
            "init_pdata",
            "spc && spc->runq.next == NULL && spc->runq.prev == NULL",
            cpu=cpu,
        )
        if spc is None:  # Xen dereferences NULL: stop here
            return
        self.credit.update(lambda c: c + CSCHED_CREDITS_PER_TSLICE)
        if self.ncpus.update(inc) == 1:
            self.master.store(cpu)
        self.cpus.set(cpu)
        spc.runq_head.store(True)
        spc.runq.store(())
        spc.ticker_active.store(True)
        curr = self.h.percpu[cpu].schedule_data.curr.load()
        BUG_ON(
            not curr.is_idle, "init_pdata", "!is_idle_vcpu(curr_on_cpu(cpu))", cpu=cpu
        )
        # Start off idling.
        self.idlers.set(cpu)

    def _deinit(self, spc: CschedPcpu, cpu: int) -> None:
        flags = spin_lock_irqsave(self.lock)
        self.credit.update(lambda c: c - CSCHED_CREDITS_PER_TSLICE)
        self.ncpus.update(dec)
        self.cpus.clear(cpu)
        if self.master.load() == cpu:
            rest = self.cpus.load()
            self.master.store(min(rest) if rest else None)
        self.idlers.clear(cpu)
        spc.ticker_active.store(False)
        spin_unlock_irqrestore(self.lock, flags)

    # -- per-pCPU hooks ---------------------------------------------------------------
    def alloc_pdata(self, cpu: int) -> Any:
        spc = CschedPcpu(self.h.bus, cpu, self.instance)
        self._pcpus[cpu] = spc
        return spc

    def init_pdata(self, pdata: Any, cpu: int, *, pre_patch: bool = False) -> None:
        sd = self.h.percpu[cpu].schedule_data
        if not pre_patch:
            # Only boot and hotplug reach here after the patch: nothing to remap.
            ASSERT(
                sd.schedule_lock.load() is sd._lock and not spin_is_locked(sd._lock),
                "csched_init_pdata",
                "sd->schedule_lock == &sd->_lock && !spin_is_locked(&sd->_lock)",
                cpu=cpu,
            )
        flags = spin_lock_irqsave(self.lock)
        self._init_pdata(pdata, cpu)
        spin_unlock_irqrestore(self.lock, flags)

    def deinit_pdata(self, pdata: Any, cpu: int) -> None:
        # f45666afdb (RELEASE-4.7.0): "Scheduler specific data for this pCPU must
        # still be there and be valid", alloc_pdata and init_pdata done, neither
        # free_pdata nor deinit_pdata yet.
        ASSERT(
            isinstance(pdata, CschedPcpu) and self.cpus.test(cpu),
            "csched_deinit_pdata",
            "spc && cpumask_test_cpu(cpu, prv->cpus)",
            cpu=cpu,
        )
        if isinstance(pdata, CschedPcpu):  # else Xen dereferences NULL: stop here
            self._deinit(pdata, cpu)

    def free_pdata(self, pdata: Any, cpu: int, *, pre_patch: bool = False) -> None:
        if pre_patch:
            # Before f45666afdb, free_pdata did the deinit work itself.
            if isinstance(pdata, CschedPcpu):
                self._deinit(pdata, cpu)
        else:
            # f45666afdb: "either init_pdata has never been called, or
            # deinit_pdata has been called already".
            ASSERT(
                not self.cpus.test(cpu),
                "csched_free_pdata",
                "!cpumask_test_cpu(cpu, prv->cpus)",
                cpu=cpu,
            )
        self._pcpus.pop(cpu, None)

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
            isinstance(vdata, CschedVcpu) and vdata.vcpu.is_idle,
            "csched_switch_sched",
            "svc && is_idle_vcpu(svc->vcpu)",
            cpu=cpu,
        )
        self.h.percpu[cpu].idle.sched_priv.store(vdata)
        ASSERT(
            not local_irq_is_enabled(),
            "csched_switch_sched",
            "!local_irq_is_enabled()",
            cpu=cpu,
        )
        # We hold the old scheduler's lock for cpu: it may or may not be the 'right'
        # one, but holding exactly it is what prevents the races.
        if init:
            spin_lock(self.lock)
            self._init_pdata(pdata, cpu)
            spin_unlock(self.lock)
        if not pointer_last:
            self._reroute(cpu, sd._lock, barrier)
        self.h.percpu[cpu].scheduler.store(self)
        sd.sched_priv.store(pdata)
        # Reroute the lock as the last thing: whoever takes it must find all of the
        # above in place.
        if pointer_last:
            self._reroute(cpu, sd._lock, barrier)

    def tick_suspend(self, cpu: int) -> None:
        spc = self._pcpu(cpu)
        if spc is not None:
            spc.ticker_active.store(False)

    def tick_resume(self, cpu: int) -> None:
        spc = self._pcpu(cpu)
        if spc is not None:
            spc.ticker_active.store(True)

    # -- per-vCPU hooks ---------------------------------------------------------------
    def alloc_vdata(self, v: Vcpu, dd: Any) -> Any:
        return CschedVcpu(v, dd if isinstance(dd, CschedDom) else None)

    def free_vdata(self, vdata: Any) -> None:
        if isinstance(vdata, CschedVcpu):
            BUG_ON(
                vdata.on_runq.load(),
                "csched_free_vdata",
                "!list_empty(&svc->runq_elem)",
            )

    def alloc_domdata(self, d: Domain) -> Any:
        return CschedDom(d)

    def _runq_insert(self, cpu: int, svc: CschedVcpu, where: str) -> None:
        spc = self._pcpu(cpu)
        if BUG_ON(spc is None, where, f"CSCHED_PCPU({cpu}) == NULL", cpu=cpu):
            return
        assert spc is not None
        with spc.cs.section(where):
            self._runq_insert_locked(spc, svc)

    def _runq_remove(self, cpu: int, svc: CschedVcpu, where: str) -> None:
        spc = self._pcpu(cpu)
        if spc is None:
            return
        with spc.cs.section(where):
            spc.runq.remove(svc)
            svc.on_runq.store(False)

    def insert_vcpu(self, v: Vcpu) -> None:
        # v->processor is where the caller put it (sched_init_vcpu(),
        # sched_move_domain()): 4.7's insert hooks never move it.
        svc = v.sched_priv.load()
        lock = vcpu_schedule_lock_irq(self.h, v)
        if not svc.on_runq.load() and v.runnable() and not v.is_running.load():
            self._runq_insert(v.processor.load(), svc, "csched_vcpu_insert")
        vcpu_schedule_unlock_irq(self.h, lock, v)

    def remove_vcpu(self, v: Vcpu) -> None:
        svc = v.sched_priv.load()
        lock = vcpu_schedule_lock_irq(self.h, v)
        if svc.on_runq.load():
            self._runq_remove(v.processor.load(), svc, "csched_vcpu_remove")
        vcpu_schedule_unlock_irq(self.h, lock, v)

    def wake(self, v: Vcpu) -> None:
        svc = v.sched_priv.load()
        cpu = v.processor.load()
        if self.h.percpu[cpu].schedule_data.curr.load() is v or svc.on_runq.load():
            return
        if svc.credit.load() >= 0:
            svc.pri.store(CSCHED_PRI_TS_UNDER)
        self._runq_insert(cpu, svc, "csched_vcpu_wake")

    def sleep(self, v: Vcpu) -> None:
        svc = v.sched_priv.load()
        if svc.on_runq.load():
            self._runq_remove(v.processor.load(), svc, "csched_vcpu_sleep")

    def pick_cpu(self, v: Vcpu) -> int:
        """``_csched_cpu_pick``, without SMT weighing: stay if idle, else an idler.

        Reads ``prv->idlers`` (a hint) and, as ``IS_RUNQ_IDLE``, the runqueue of
        ``v->processor`` only, whose lock the caller holds.
        """
        pool = v.domain.cpupool.load()
        cpus = sorted(pool.cpu_valid.load()) if pool is not None else self.pool_cpus()
        here = v.processor.load()
        if not cpus:
            return here
        cpu = here if here in cpus else _cycle(here, cpus)
        idlers = self.idlers.load() & set(cpus)
        if cpu == here:
            spc = self._pcpu(here)
            if spc is not None and not spc.runq.load():
                idlers |= {here}
        if cpu not in idlers and idlers:
            cpu = _cycle(cpu, sorted(idlers))
        return cpu

    # -- do_schedule --------------------------------------------------------------------
    def do_schedule(self, cpu: int, now: int) -> Vcpu:
        pc = self.h.percpu[cpu]
        idle = pc.idle
        spc = self._pcpu(cpu)
        if BUG_ON(
            spc is None, "csched_schedule", f"CSCHED_PCPU({cpu}) == NULL", cpu=cpu
        ):
            return idle
        assert spc is not None
        snext = self._pick_next(cpu, spc, idle)
        # Update the idlers mask if necessary, once, as csched_schedule ends: test
        # first, write only on a change.
        is_idle = snext is idle
        if self.idlers.test(cpu) != is_idle:
            if is_idle:
                self.idlers.set(cpu)
            else:
                self.idlers.clear(cpu)
        return snext

    def _pick_next(self, cpu: int, spc: CschedPcpu, idle: Vcpu) -> Vcpu:
        """``csched_schedule`` up to its choice: local runqueue, else load balance."""
        curr = self.h.percpu[cpu].schedule_data.curr.load()
        scurr = curr.sched_priv.load()
        with spc.cs.section("csched_schedule"):
            if not curr.is_idle and isinstance(scurr, CschedVcpu):
                if scurr.credit.update(_burn) < 0:
                    scurr.pri.store(CSCHED_PRI_TS_OVER)
                if curr.runnable() and curr.processor.load() == cpu:
                    self._runq_insert_locked(spc, scurr)
            snext = next(
                (s for s in spc.runq.load() if self.may_run(s.vcpu, cpu)), None
            )
            next_pri = snext.pri.load() if snext is not None else CSCHED_PRI_IDLE
        if snext is None or next_pri < CSCHED_PRI_TS_UNDER:
            stolen = self._load_balance(cpu, snext)
            if stolen is not None:
                return stolen.vcpu
        if snext is None:
            return idle
        with spc.cs.section("csched_schedule"):
            if next_pri == CSCHED_PRI_TS_OVER:
                self._refill(spc)
            spc.runq.remove(snext)
            snext.on_runq.store(False)
        return snext.vcpu

    @staticmethod
    def _runq_insert_locked(spc: CschedPcpu, svc: CschedVcpu) -> None:
        """``__runq_insert``: sorted by priority, FIFO among equals."""
        runq = spc.runq.load()
        pri = svc.pri.load()
        pos = len(runq)
        for i, other in enumerate(runq):
            if pri > other.pri.load():
                pos = i
                break
        spc.runq.insert(pos, svc)
        svc.on_runq.store(True)

    @staticmethod
    def _refill(spc: CschedPcpu) -> None:
        # Stands in for csched_acct: everything here is OVER, so hand out a slice.
        runq = spc.runq.load()
        pri: dict[CschedVcpu, int] = {}
        for svc in runq:
            if svc.credit.update(_refill_slice) >= 0:
                svc.pri.store(CSCHED_PRI_TS_UNDER)
            pri[svc] = svc.pri.load()
        spc.runq.store(tuple(sorted(runq, key=lambda s: -pri[s])))

    def _load_balance(self, cpu: int, snext: CschedVcpu | None) -> CschedVcpu | None:
        """``csched_load_balance``: trylock each busy peer, steal a better vCPU.

        Only the pool's non-idle pCPUs are peeked at (``online & ~prv->idlers``, as
        Xen does): an idle peer has nothing worth stealing, and skipping it keeps a
        large host from trylocking every pCPU at each ``schedule()``. As in Xen, a
        pCPU that is not (or no longer) in its pool's ``cpu_valid`` does not steal,
        and a peer is stolen from only if it is still in ``cpu_valid`` once its lock
        is held: a peer that left the pool since the walk began, being moved out or
        already free, is skipped whatever lock its pointer names.
        """
        pool = self.h.percpu[cpu].cpupool.load()
        # "If this CPU is going offline, or is not (yet) part of any cpupool [...]
        # we shouldn't steal work."
        if pool is None or not pool.cpu_valid.test(cpu):
            return None
        online = pool.cpu_valid  # cpupool_online_cpumask(c): the live mask
        # In 4.7 the walk starts at cpumask_first(&workers), not at a neighbour.
        peers = sorted(online.load() - self.idlers.load() - {cpu})
        floor = snext.pri.load() if snext is not None else CSCHED_PRI_IDLE
        for peer in peers:
            lock = pcpu_schedule_trylock(self.h, peer)
            if lock is None:
                continue
            try:
                # "Any work over there to steal?": cpumask_test_cpu(peer_cpu, online)
                # under the peer's lock, as in Xen 4.7 (and 94734ab7c3^). A peer in
                # cpu_valid runs this instance: cpu_valid gains a pCPU after its
                # switch and loses it before.
                if not online.test(peer):
                    continue
                check_held(lock, peer, self, "csched_load_balance")
                stolen = self._runq_steal(peer, cpu, floor)
            finally:
                pcpu_schedule_unlock(self.h, lock, peer)
            if stolen is not None:
                return stolen
        return None

    def _runq_steal(self, peer: int, cpu: int, floor: int) -> CschedVcpu | None:
        speer = self._pcpu(peer)
        if speer is None:
            return None
        with speer.cs.section("csched_runq_steal"):
            for svc in speer.runq.load():
                vc = svc.vcpu
                if (
                    svc.pri.load() > floor
                    and not vc.is_running.load()
                    and not vc.migrating.load()
                    and self.may_run(vc, cpu)
                ):
                    speer.runq.remove(svc)
                    svc.on_runq.store(False)
                    vc.processor.store(cpu)
                    return svc
        return None

    # -- emulator-only ------------------------------------------------------------------
    def lock_for(self, cpu: int) -> SpinLock | None:
        return self.h.percpu[cpu].schedule_data._lock

    def runqueues(self) -> list[CriticalSection]:
        return [spc.cs for spc in self._pcpus.values()]
