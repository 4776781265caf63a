"""``context_saved()``: the barriers around ``is_running`` and the schedulers' hooks."""

from __future__ import annotations

import threading

import pytest

from xensched import Host, Vcpu
from xensched.interaction import Access, Instrument, PointKind
from xensched.smp import ExecContext

ALL = ["credit", "credit2", "rtds", "arinc653"]


class _Recorder(Instrument):
    def __init__(self) -> None:
        self.seen: list[tuple[str, Access]] = []
        self._meta = threading.Lock()

    def on_point(self, ctx: ExecContext, access: Access) -> None:
        with self._meta:
            self.seen.append((ctx.name, access))


def _running_guest(sched: str) -> tuple[Host, Vcpu, int]:
    h = Host(2, sched=sched, dom0_vcpus=0)
    v = h.create_domain("d1", vcpus=1).vcpus[0]
    cpu = v.processor.peek()
    for _ in range(8):  # ARINC 653 runs it in its minor frame only
        if h.schedule(cpu) is v:
            return h, v, cpu
    raise AssertionError(f"{sched}: {v.name} never ran on cpu{cpu}")


@pytest.mark.parametrize("sched", ALL)
def test_is_running_is_cleared_between_smp_wmb_and_smp_mb(sched: str) -> None:
    """``smp_wmb(); prev->is_running = 0; smp_mb();``: the context is written before
    the flag clears, and the migration request is read after."""
    h, v, cpu = _running_guest(sched)
    rec = _Recorder()
    h.bus.add_instrument(rec)
    h.sleep(v)
    assert h.schedule(cpu).is_idle  # deschedules v: context_saved(v)
    mine = [a for name, a in rec.seen if name == f"pcpu{cpu}"]
    [at] = [
        i
        for i, a in enumerate(mine)
        if a.obj is v.is_running and a.kind is PointKind.STORE
    ]
    assert (mine[at - 1].kind, mine[at + 1].kind) == (PointKind.WMB, PointKind.MB)
    assert h.violations == []


@pytest.mark.parametrize("sched", ALL)
def test_context_saved_hook_takes_the_vcpu_lock_in_credit2_and_rtds(
    sched: str,
) -> None:
    """``csched2_context_saved`` and ``rt_context_saved`` run under
    ``vcpu_schedule_lock_irq(vc)``; Credit and ARINC 653 have no such hook."""
    h, v, cpu = _running_guest(sched)
    ctx = h.cpu_contexts[cpu]
    h.sleep(v)
    ctx.events.clear()  # the recent events of pcpuN: from here on
    assert h.schedule(cpu).is_idle
    locked_in = [fn for _, a, fn in ctx.events if a.kind is PointKind.LOCK]
    hooked = sched in ("credit2", "rtds")
    assert ("context_saved" in locked_in) == hooked, locked_in
    assert h.violations == []
