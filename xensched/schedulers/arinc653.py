"""ARINC 653, the static time-partitioning scheduler.

Mirrors: xen/common/sched_arinc653.c at RELEASE-4.7.0 (fixed protocol) and at
94734ab7c3^ (legacy): ``a653sched_alloc_vdata`` (under the private lock),
``a653sched_free_vdata``, ``a653sched_vcpu_wake``/``sleep``, ``a653sched_do_schedule``
(which takes the private lock itself, irqsave), ``a653sched_pick_cpu``,
``a653_switch_sched``; there is no ``insert_vcpu`` (NULL in 4.7).

Back-ported, not 4.7: ``free_vdata`` takes the private lock, as 19049f8d79 (4.13) made
it. 4.7's ``a653sched_free_vdata`` unlinks the vCPU from ``vcpu_list`` (and rebuilds
the schedule from it) with no lock, racing ``a653sched_alloc_vdata`` and
``a653sched_do_schedule``, which hold it. That race is not the patch's subject, and
without the lock this model's runqueue check would report it (a ``mutual-exclusion``
on a domain destroyed or moved out of an ARINC 653 pool while its pCPUs schedule),
under both protocols.

Lock scheme: each pCPU's ``schedule_lock`` stays its default ``_lock``; ARINC653 never
remaps it (it has no ``init_pdata`` or ``free_pdata`` since 05ea4efc22), and after the
patch its ``switch_sched`` routes the lock back to ``_lock``, with no barrier between
the stores of ``per_cpu(scheduler)``/``sched_priv`` and that of the pointer, as in
4.7.0. Under the ``sc`` and ``tso`` memory models this is harmless (x86 keeps stores
in order); under ``relaxed`` it is a real, latent 4.7.0 bug on Arm, faithfully
reproduced: a pCPU that sees the new pointer takes ``_lock``, which the switch does not
hold, and can still read the old scheduler (``reproduce --memory-model relaxed
--protocol fixed``: a ``lock-mismatch`` on the cpu-adds into ARINC 653 from Credit2
and from RTDS, whose shared lock the pointer leaves). Xen closed it in 4.13 with
07513e15e6, whose generic code issues ``smp_wmb()`` before every lock pointer store.

Simplified (documented, not Xen): the major frame is one minor frame of
``A653_DEFAULT_RUNTIME`` ticks per vCPU, in creation order (Xen's default schedule puts
dom0's vCPUs in it); time is a per-instance tick count advanced under the private lock.
A pCPU runs the frame's vCPU only if that vCPU's ``processor`` is this pCPU.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xensched.checks import ASSERT, CriticalSection
from xensched.memory import Cell, RunQueue, inc
from xensched.schedulers.base import Scheduler
from xensched.spinlock import SpinLock, spin_lock_irqsave, spin_unlock_irqrestore

if TYPE_CHECKING:
    from xensched.domain import Vcpu
    from xensched.host import Host

A653_DEFAULT_RUNTIME = 2


class A653Vcpu:
    """``arinc653_vcpu_t``."""

    __slots__ = ("awake", "vc")

    def __init__(self, vc: Vcpu) -> None:
        self.vc = vc
        self.awake: Cell[bool] = Cell(
            vc.processor.bus, f"{vc.name}.arinc653_vcpu.awake", False
        )


class Arinc653(Scheduler):
    name = "ARINC 653 Scheduler"
    opt_name = "arinc653"
    sched_id = 7  # XEN_SCHEDULER_ARINC653

    def __init__(self, h: Host, instance: str) -> None:
        super().__init__(h, instance)
        bus = h.bus
        self.lock = SpinLock(bus, f"arinc653@{instance}.sched_priv->lock")
        # Written under sched_priv->lock.
        self.vcpus: RunQueue[A653Vcpu] = RunQueue(bus, f"arinc653@{instance}.vcpu_list")
        self.cs = CriticalSection(bus, f"arinc653@{instance}.schedule")
        self.ticks: Cell[int] = Cell(bus, f"arinc653@{instance}.ticks", 0)

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
        # Nothing to initialise and no private lock here; no barrier in 4.7.0.
        sd = self.h.percpu[cpu].schedule_data
        ASSERT(
            pdata is None and isinstance(vdata, A653Vcpu) and vdata.vc.is_idle,
            "a653_switch_sched",
            "!pdata && svc && is_idle_vcpu(svc->vc)",
            cpu=cpu,
        )
        self.h.percpu[cpu].idle.sched_priv.store(vdata)
        if not pointer_last:
            self._reroute(cpu, sd._lock, barrier=False)
        self.h.percpu[cpu].scheduler.store(self)
        sd.sched_priv.store(None)
        # Back to the default lock, to avoid needless contention on a shared one.
        if pointer_last:
            self._reroute(cpu, sd._lock, barrier=False)

    def alloc_vdata(self, v: Vcpu, dd: Any) -> Any:
        svc = A653Vcpu(v)
        flags = spin_lock_irqsave(self.lock)
        if not v.is_idle:
            with self.cs.section("a653sched_alloc_vdata"):
                self.vcpus.append(svc)
        spin_unlock_irqrestore(self.lock, flags)
        return svc

    def free_vdata(self, vdata: Any) -> None:
        if not isinstance(vdata, A653Vcpu):
            return
        flags = spin_lock_irqsave(self.lock)
        with self.cs.section("a653sched_free_vdata"):
            self.vcpus.remove(vdata)
        spin_unlock_irqrestore(self.lock, flags)

    def wake(self, v: Vcpu) -> None:
        svc = v.sched_priv.load()
        if isinstance(svc, A653Vcpu):
            svc.awake.store(True)

    def sleep(self, v: Vcpu) -> None:
        svc = v.sched_priv.load()
        if isinstance(svc, A653Vcpu):
            svc.awake.store(False)

    def do_schedule(self, cpu: int, now: int) -> Vcpu:
        pc = self.h.percpu[cpu]
        curr = pc.schedule_data.curr.load()
        snext = pc.idle
        flags = spin_lock_irqsave(self.lock)
        with self.cs.section("a653sched_do_schedule"):
            ticks = self.ticks.update(inc)
            vcpus = self.vcpus.load()
            if vcpus:
                svc = vcpus[(ticks // A653_DEFAULT_RUNTIME) % len(vcpus)]
                vc = svc.vc
                if (
                    svc.awake.load()
                    and vc.runnable()
                    and vc.processor.load() == cpu
                    and self.may_run(vc, cpu)
                    and (vc is curr or not vc.is_running.load())
                ):
                    snext = vc
        spin_unlock_irqrestore(self.lock, flags)
        return snext

    def lock_for(self, cpu: int) -> SpinLock | None:
        return self.h.percpu[cpu].schedule_data._lock

    def runqueues(self) -> list[CriticalSection]:
        return [self.cs]
