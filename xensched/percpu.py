"""Per-CPU scheduling state of the emulated host.

Mirrors: ``struct schedule_data`` and the per-CPU ``scheduler`` and ``cpupool``
pointers of xen/include/xen/sched-if.h (Xen 4.7), as set up by ``cpu_schedule_up()``
in xen/common/schedule.c: every pCPU starts on its default lock ``_lock``.

Left out: ``s_timer`` (time is a per-pCPU tick count, ``now``), ``urgent_count``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from xensched.memory import Cell
from xensched.spinlock import SpinLock

if TYPE_CHECKING:
    from xensched.cpupool import Cpupool
    from xensched.domain import Vcpu
    from xensched.interaction import Bus
    from xensched.schedulers.base import Scheduler


class ScheduleData:
    """``per_cpu(schedule_data, cpu)``."""

    __slots__ = ("_lock", "cpu", "curr", "now", "sched_priv", "schedule_lock")

    PRIVATE: ClassVar[dict[str, str]] = {
        "now": "this pCPU's tick count: only schedule() on this pCPU advances it",
    }

    def __init__(self, bus: Bus, cpu: int, idle: Vcpu) -> None:
        self.cpu = cpu
        self._lock = SpinLock(bus, f"schedule_data[{cpu}]._lock")
        # What everybody locks; schedulers remap it (the subject of the patch).
        # Not declared racy: sched_lock()'s read before the lock is racy by design,
        # but a declaration covers the field, and would also silence the re-read
        # under the lock, where the legacy protocol's remap races show.
        self.schedule_lock: Cell[SpinLock] = Cell(
            bus, f"schedule_data[{cpu}].schedule_lock", self._lock
        )
        self.curr: Cell[Vcpu] = Cell(bus, f"schedule_data[{cpu}].curr", idle)
        self.sched_priv: Cell[Any] = Cell(bus, f"schedule_data[{cpu}].sched_priv", None)
        # Emulated time of this pCPU, in ticks: advanced by each schedule() here.
        self.now = 0


class PerCpu:
    """All per-CPU pointers of one pCPU: ``schedule_data``, ``scheduler``, ``cpupool``."""

    __slots__ = ("cpu", "cpupool", "idle", "schedule_data", "scheduler", "softirq")

    def __init__(self, bus: Bus, cpu: int, idle: Vcpu, ops: Scheduler) -> None:
        self.cpu = cpu
        self.idle = idle
        self.schedule_data = ScheduleData(bus, cpu, idle)
        self.scheduler: Cell[Scheduler] = Cell(bus, f"per_cpu(scheduler, {cpu})", ops)
        self.cpupool: Cell[Cpupool | None] = Cell(bus, f"per_cpu(cpupool, {cpu})", None)
        # SCHEDULE_SOFTIRQ pending: set by cpu_raise_softirq(), cleared by schedule().
        self.softirq: Cell[bool] = Cell(bus, f"softirq_pending({cpu})", False)
