"""vcpu_migrate()'s retry bound: a lock pointer that never settles is a reported
``deadlock``, not a spin without end."""

from __future__ import annotations

import itertools

import pytest

from xensched import DeadlockError, Host, SpinLock, schedule
from xensched.checks import ViolationKind
from xensched.interaction import Access, Instrument, PointKind
from xensched.smp import ExecContext, bind


def test_vcpu_migrate_retry_loop_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schedule, "_MIGRATE_RETRIES", 5)
    host = Host(4, sched="credit", dom0_vcpus=1)
    [d] = host.domains.values()
    [v] = d.vcpus
    sd = host.percpu[v.processor.peek()].schedule_data
    fresh = (SpinLock(host.bus, f"test.fresh{i}") for i in itertools.count())
    moves = 0

    class MoveAtEveryLock(Instrument):
        """Each round re-reads the vCPU's pCPU lock after taking it: never the same."""

        def on_point(self, ctx: ExecContext, access: Access) -> None:
            nonlocal moves
            if access.kind is PointKind.LOCK:
                moves += 1
                sd.schedule_lock.value = next(fresh)  # no point: plain write

    host.bus.add_instrument(MoveAtEveryLock())
    with bind(host.cpu_contexts[0]), pytest.raises(DeadlockError, match="retried 5"):
        schedule.vcpu_migrate(host, v)
    [violation] = host.violations
    assert violation.kind is ViolationKind.DEADLOCK
    assert violation.where == "vcpu_migrate"
    assert violation.message == f"vcpu_migrate({v.name}) retried 5 times"
    assert moves == 5  # one lock a round: old and new pCPU are the same
    assert not any(lk.locked() for lk in host.bus.locks)
