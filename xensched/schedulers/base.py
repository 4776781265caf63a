"""The scheduler interface: ``struct scheduler`` of Xen 4.7.

Mirrors: xen/include/xen/sched-if.h ``struct scheduler`` and the ``SCHED_OP()``
convention that a missing hook is a no-op. A Python instance is one scheduler
*instance* (``ops`` plus its ``sched_data``): the boot scheduler ``&ops`` used by Pool-0
and by free pCPUs, or a pool's ``scheduler_alloc()``ed copy. Hooks are methods; ``self``
is Xen's ``ops`` argument.

Emulator-only, not Xen: :meth:`Scheduler.lock_for` says which lock this instance's
locking scheme designates for a pCPU, so that checks can compare it with the lock a
pCPU really holds; :meth:`Scheduler.runqueues` lists the runqueue critical sections.

The hooks the patch changed take their form as keyword arguments from the caller
(``xensched.schedule``, or a user's protocol), never from the host's protocol:
``init_pdata(pre_patch=True)`` and ``free_pdata(pre_patch=True)`` are their 94734ab7c3^
versions; ``switch_sched`` takes one switch per part of the fix it contains.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from xensched.memory import smp_mb

if TYPE_CHECKING:
    from collections.abc import Iterable

    from xensched.checks import CriticalSection
    from xensched.domain import Domain, Vcpu
    from xensched.host import Host
    from xensched.spinlock import SpinLock


class _OnRunqueue(Protocol):
    """A scheduler's per-vCPU data, as its runqueue holds it."""

    @property
    def vcpu(self) -> Vcpu: ...


_Svc = TypeVar("_Svc", bound=_OnRunqueue)


class Scheduler:
    """Base of the four schedulers; every hook defaults to Xen's "not implemented"."""

    #: ``struct scheduler.name``
    name: ClassVar[str] = ""
    #: ``struct scheduler.opt_name``, the ``sched=`` boot parameter
    opt_name: ClassVar[str] = ""
    #: ``XEN_SCHEDULER_*``
    sched_id: ClassVar[int] = 0

    def __init__(self, h: Host, instance: str) -> None:
        self.h = h
        self.instance = instance

    def __repr__(self) -> str:
        return f"<{self.opt_name} {self.instance}>"

    @property
    def label(self) -> str:
        return f"{self.opt_name}@{self.instance}"

    # -- instance -------------------------------------------------------------------
    def init(self) -> None:
        """``init``: allocate ``sched_data`` (private data and locks)."""

    def deinit(self) -> None:
        """``deinit``."""

    # -- per-pCPU -------------------------------------------------------------------
    def alloc_pdata(self, cpu: int) -> Any:
        return None

    def init_pdata(self, pdata: Any, cpu: int, *, pre_patch: bool = False) -> None:
        """Boot and hotplug only after the patch.

        ``pre_patch``: the 94734ab7c3^ version, which a switch called before the swap.
        """

    def deinit_pdata(self, pdata: Any, cpu: int) -> None:
        """Undo ``init_pdata`` (f45666afdb)."""

    def free_pdata(self, pdata: Any, cpu: int, *, pre_patch: bool = False) -> None:
        """Free per-pCPU data.

        ``pre_patch``: the 94734ab7c3^ version, which also did what ``deinit_pdata``
        does and, in Credit2 and RTDS, put the default lock back.
        """

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
        """Take ``cpu`` over: the patch's hook, called with the old lock held.

        The defaults are RELEASE-4.7.0's; each other value reverts one part of the
        fix (``xensched.protocol.Part``): ``init=False`` when ``init_pdata`` already
        ran before the swap, ``prv_lock_irq`` takes a private lock with
        ``spin_lock_irq`` (Credit2 before fb0c3a8a30), ``pointer_last=False``
        reroutes the lock before the scheduler swap, ``barrier=False`` drops the
        ``smp_mb()`` before that store.
        """
        raise NotImplementedError(f"{self.opt_name} has no switch_sched")

    def _reroute(self, cpu: int, lock: SpinLock, barrier: bool) -> None:
        """The end of ``switch_sched``: point ``cpu``'s ``schedule_lock`` at ``lock``.

        Whoever takes the new lock must find everything stored before it in place,
        hence the barrier before the store.
        """
        if barrier:
            smp_mb()
        self.h.percpu[cpu].schedule_data.schedule_lock.store(lock)

    def tick_suspend(self, cpu: int) -> None:
        """``tick_suspend``."""

    def tick_resume(self, cpu: int) -> None:
        """``tick_resume``."""

    # -- per-vCPU and per-domain ----------------------------------------------------
    def alloc_vdata(self, v: Vcpu, dd: Any) -> Any:
        return object()

    def free_vdata(self, vdata: Any) -> None:
        """``free_vdata``."""

    def alloc_domdata(self, d: Domain) -> Any:
        return None

    def free_domdata(self, dd: Any) -> None:
        """``free_domdata``."""

    def insert_vcpu(self, v: Vcpu) -> None:
        """``insert_vcpu``: the vCPU joins this scheduler (takes its own locks).

        ``v->processor`` is already set by the caller; 4.7's hooks never change it.
        """

    def remove_vcpu(self, v: Vcpu) -> None:
        """``remove_vcpu``."""

    def sleep(self, v: Vcpu) -> None:
        """``sleep``: called with the vCPU's schedule lock held."""

    def wake(self, v: Vcpu) -> None:
        """``wake``: called with the vCPU's schedule lock held."""

    def context_saved(self, v: Vcpu) -> None:
        """``context_saved``."""

    def migrate(self, v: Vcpu, new_cpu: int) -> None:
        """``migrate``: both pCPUs' locks held; default just moves ``v->processor``."""
        v.processor.store(new_cpu)

    def do_schedule(self, cpu: int, now: int) -> Vcpu:
        """``do_schedule``: pick what runs next on ``cpu`` (its lock is held)."""
        raise NotImplementedError

    def pick_cpu(self, v: Vcpu) -> int:
        """``pick_cpu``: a pCPU of the vCPU's pool to run it on.

        This default keeps ``v`` where it is when that is one of its pool's pCPUs, and
        otherwise takes the pool's first; Credit and Credit2 weigh load instead.
        """
        pool = v.domain.cpupool.load()
        cpus = sorted(pool.cpu_valid.load()) if pool is not None else self.pool_cpus()
        here = v.processor.load()
        if not cpus or here in cpus:
            return here
        return cpus[0]

    def first_runnable(
        self, queue: Iterable[_Svc], curr: Vcpu, cpu: int
    ) -> _Svc | None:
        """The first entry of ``queue`` that ``cpu`` may run now: its vCPU is ``curr``
        or not running elsewhere, is not being migrated, and belongs to ``cpu``'s pool.
        """
        for svc in queue:
            vc = svc.vcpu
            if (
                (vc is curr or not vc.is_running.load())
                and not vc.migrating.load()
                and self.may_run(vc, cpu)
            ):
                return svc
        return None

    # -- emulator-only ----------------------------------------------------------------
    def lock_for(self, cpu: int) -> SpinLock | None:
        """The lock this instance's scheme designates for ``cpu`` (None: not ours)."""
        raise NotImplementedError

    def runqueues(self) -> list[CriticalSection]:
        """The runqueue critical sections of this instance."""
        return []

    # -- helpers shared by the schedulers --------------------------------------------
    @staticmethod
    def may_run(v: Vcpu, cpu: int) -> bool:
        """Is ``cpu`` a pCPU of ``v``'s pool? (``cpupool_domain_cpumask()``)

        Xen 4.7's Credit2 forgot this for free pCPUs, which ran Pool-0's scheduler
        (fixed in 4.9 by e719192026); that bug is not the subject here, so every
        scheduler applies the rule.
        """
        pool = v.domain.cpupool.load()
        return pool is not None and pool.cpu_valid.test(cpu)

    def pool_cpus(self) -> list[int]:
        """The pCPUs this instance schedules: its pool's, or Pool-0's plus free ones."""
        return sorted(
            cpu for cpu, pc in enumerate(self.h.percpu) if pc.scheduler.load() is self
        )
