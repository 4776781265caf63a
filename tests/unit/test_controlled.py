"""The controlled driver: one participant at a time, exact replay, deadlock found."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Sequence

import pytest

from xensched import DeadlockError, Host, SpinLock, ViolationKind
from xensched.drivers import ControlledDriver, RoundRobin
from xensched.interaction import Instrument
from xensched.schedule import schedule, vcpu_block, vcpu_unblock
from xensched.smp import ExecContext
from xensched.spinlock import spin_lock, spin_lock_irq, spin_unlock, spin_unlock_irq
from xensched.violation import Violation

TURN = 2.0  # turn_timeout: a bound only; no test here waits for it
_BOUND = 30.0  # of a wait for an event that comes within moments


class FirstReady:
    """Run the first ready participant (in spawn order) to completion."""

    def pick(
        self,
        ready: Sequence[ExecContext],
        last: ExecContext | None,
        driver: ControlledDriver,
    ) -> ExecContext:
        return ready[0]


def _workload(h: Host, drv: ControlledDriver) -> None:
    """pcpu0 and pcpu1 schedule and wake on a shared Credit2 runqueue."""
    d = h.domain("d1")

    def on_cpu0() -> None:
        for _ in range(3):
            schedule(h)

    def on_cpu1() -> None:
        vcpu_block(h, d.vcpus[0])
        schedule(h)
        vcpu_unblock(h, d.vcpus[0])
        schedule(h)

    drv.spawn(h.cpu_contexts[0], on_cpu0)
    drv.spawn(h.cpu_contexts[1], on_cpu1)


def _run(strategy: RoundRobin | FirstReady) -> tuple[list[tuple[str, str, str]], Host]:
    h = Host(2, sched="credit2", dom0_vcpus=0)
    h.create_domain("d1", vcpus=2)
    drv = ControlledDriver(h.bus, strategy, turn_timeout=TURN)
    _workload(h, drv)
    assert drv.run() == []
    assert h.bus.driver is None  # uninstalled after the run
    return drv.steps, h


def test_same_strategy_same_steps() -> None:
    steps_a, ha = _run(RoundRobin())
    steps_b, hb = _run(RoundRobin())
    assert steps_a == steps_b
    assert len(steps_a) > 20
    assert {s[0] for s in steps_a} == {"pcpu0", "pcpu1"}
    assert ha.violations == hb.violations == []
    # Same interleaving, same end state.
    for cpu in range(2):
        assert ha.percpu[cpu].schedule_data.curr.peek().name == (
            hb.percpu[cpu].schedule_data.curr.peek().name
        )


def test_round_robin_alternates_participants() -> None:
    steps, _ = _run(RoundRobin())
    who = [s[0] for s in steps]
    # While both run, turns alternate at every point.
    both = who[: who.index("pcpu1") + 6]
    alternations = sum(1 for x, y in itertools.pairwise(both) if x != y)
    assert alternations >= 4


def test_other_strategy_other_steps() -> None:
    rr, _ = _run(RoundRobin())
    first, _ = _run(FirstReady())
    assert rr != first
    # FirstReady runs pcpu0 to the end before pcpu1 starts.
    who = [s[0] for s in first]
    assert who == sorted(who)


def test_opposite_lock_order_is_a_deadlock_not_a_hang() -> None:
    h = Host(2, sched="credit", dom0_vcpus=0)
    a_lock = SpinLock(h.bus, "lock.A")
    b_lock = SpinLock(h.bus, "lock.B")
    drv = ControlledDriver(h.bus, RoundRobin(), turn_timeout=TURN)

    def ab() -> None:
        spin_lock_irq(a_lock)
        spin_lock(b_lock)

    def ba() -> None:
        spin_lock_irq(b_lock)
        spin_lock(a_lock)

    drv.spawn(h.cpu_contexts[0], ab)
    drv.spawn(h.cpu_contexts[1], ba)
    errors = drv.run()
    assert {ctx.name for ctx, _ in errors} == {"pcpu0", "pcpu1"}
    assert all(isinstance(exc, DeadlockError) for _, exc in errors)
    assert drv.deadlock is not None
    assert "no participant can run" in drv.deadlock
    # Every lock's owner and waiters (xensched.diagnostics' table), each context's
    # last point; no thread stacks: the model's own finding, the same on every run.
    assert (
        "\n  lock.A held by pcpu0 (acquired 1x, contended 0x); waited for by pcpu1\n"
        in drv.deadlock
    )
    assert (
        "\n  lock.B held by pcpu1 (acquired 1x, contended 0x); waited for by pcpu0\n"
        in drv.deadlock
    )
    assert "\n  pcpu0: lock lock.B [ab]" in drv.deadlock
    assert "--- thread" not in drv.deadlock
    deadlocks = [v for v in h.violations if v.kind is ViolationKind.DEADLOCK]
    assert len(deadlocks) == 1  # reported once, not once per participant
    assert deadlocks == h.violations
    assert deadlocks[0].where == "controlled"
    # The report names both sides of the cycle.
    assert "pcpu0: spins on lock.B held by pcpu1" in deadlocks[0].message
    assert "pcpu1: spins on lock.A held by pcpu0" in deadlocks[0].message
    assert a_lock.owner == "pcpu0"
    assert b_lock.owner == "pcpu1"
    assert drv.done(h.cpu_contexts[0])
    assert drv.done(h.cpu_contexts[1])


def test_same_lock_order_completes() -> None:
    h = Host(2, sched="credit", dom0_vcpus=0)
    a_lock = SpinLock(h.bus, "lock.A")
    b_lock = SpinLock(h.bus, "lock.B")
    drv = ControlledDriver(h.bus, RoundRobin(), turn_timeout=TURN)

    def ab() -> None:
        spin_lock_irq(a_lock)
        spin_lock(b_lock)
        spin_unlock(b_lock)
        spin_unlock_irq(a_lock)

    drv.spawn(h.cpu_contexts[0], ab)
    drv.spawn(h.cpu_contexts[1], ab)
    assert drv.run() == []
    assert drv.deadlock is None
    assert a_lock.stats().acquisitions == b_lock.stats().acquisitions == 2
    # Never a real wait: a participant is only let run when its lock is free.
    assert a_lock.stats().contended == b_lock.stats().contended == 0
    assert h.violations == []


def test_exception_in_a_participant_is_returned() -> None:
    h = Host(2, sched="credit", dom0_vcpus=0)
    drv = ControlledDriver(h.bus, RoundRobin(), turn_timeout=TURN)
    boom = ValueError("planted")

    def bad() -> None:
        schedule(h)
        raise boom

    def good() -> None:
        schedule(h)
        schedule(h)

    drv.spawn(h.cpu_contexts[0], bad)
    drv.spawn(h.cpu_contexts[1], good)
    errors = drv.run()
    assert errors == [(h.cpu_contexts[0], boom)]
    assert drv.done(h.cpu_contexts[1])
    assert drv.points_of(h.cpu_contexts[1]) > drv.points_of(h.cpu_contexts[0]) > 0
    assert drv.deadlock is None


def test_non_participants_run_freely() -> None:
    h = Host(2, sched="credit", dom0_vcpus=0)
    drv = ControlledDriver(h.bus, RoundRobin(), turn_timeout=TURN)
    outside: list[str] = []

    def part() -> None:
        schedule(h)
        # The test's own context is not a participant: it is never held back.
        with h.on_cpu(1):
            outside.append(schedule(h).name)

    drv.spawn(h.cpu_contexts[0], part)
    assert drv.run() == []
    assert outside == ["idle1"]
    assert drv.points_of(h.cpu_contexts[1]) == 0
    assert not drv.done(h.cpu_contexts[1])


def test_wait_for_parks_until_the_predicate_holds() -> None:
    h = Host(2, sched="credit", dom0_vcpus=0)
    drv = ControlledDriver(h.bus, RoundRobin(), turn_timeout=TURN)
    flag = h.percpu[1].softirq
    order: list[str] = []

    def waiter() -> None:
        drv.wait_for(h.cpu_contexts[1], lambda: flag.peek())
        order.append("woken")

    def raiser() -> None:
        for _ in range(3):
            schedule(h)
        order.append("raising")
        flag.store(True)

    drv.spawn(h.cpu_contexts[1], waiter)
    drv.spawn(h.cpu_contexts[0], raiser)
    assert drv.run() == []
    assert order == ["raising", "woken"]
    assert ("pcpu1", "wait", "<lambda>") in drv.steps


def test_wait_for_an_event_that_never_comes_is_a_deadlock() -> None:
    h = Host(2, sched="credit", dom0_vcpus=0)
    drv = ControlledDriver(h.bus, RoundRobin(), turn_timeout=TURN)

    def never() -> bool:
        return False

    drv.spawn(h.cpu_contexts[1], lambda: drv.wait_for(h.cpu_contexts[1], never))
    [(ctx, exc)] = drv.run()
    assert ctx is h.cpu_contexts[1]
    assert isinstance(exc, DeadlockError)
    assert "parked until an event that did not come" in str(exc)


@pytest.mark.parametrize("n", [1, 3])
def test_steps_name_every_turn(n: int) -> None:
    h = Host(4, sched="credit", dom0_vcpus=0)
    drv = ControlledDriver(h.bus, RoundRobin(), turn_timeout=TURN)
    for cpu in range(n):
        drv.spawn(h.cpu_contexts[cpu], lambda: schedule(h))
    assert drv.run() == []
    assert {s[0] for s in drv.steps} == {f"pcpu{c}" for c in range(n)}
    assert sum(drv.points_of(h.cpu_contexts[c]) for c in range(n)) == len(drv.steps)


def test_a_turn_held_outside_the_model_times_the_waiter_out() -> None:
    # pcpu0 blocks on something the driver cannot see while it has the turn: pcpu1's
    # bounded wait for its turn runs out and names it; pcpu0 then finishes.
    h = Host(2, sched="credit", dom0_vcpus=0)
    lock = SpinLock(h.bus, "lock.A")
    drv = ControlledDriver(h.bus, RoundRobin(), turn_timeout=0.2)
    outside = threading.Event()

    class _Released(Instrument):
        def on_violation(self, violation: Violation) -> None:
            outside.set()

    # pcpu0 stays away from every interaction point until pcpu1's wait has run out
    # (its deadlock recorded), however late the OS runs pcpu1: an event, not a
    # hold long enough on a quiet machine. Bounded: pcpu1 gives up after 0.2 s.
    h.bus.add_instrument(_Released())

    def blocker() -> None:
        spin_lock(lock)
        assert outside.wait(_BOUND), "pcpu1's wait for its turn never ran out"
        spin_unlock(lock)

    drv.spawn(h.cpu_contexts[0], blocker)
    drv.spawn(h.cpu_contexts[1], lambda: schedule(h))
    [(ctx, exc)] = drv.run()
    assert ctx is h.cpu_contexts[1]
    assert isinstance(exc, DeadlockError)
    assert "pcpu1 waited 0.2s for its turn" in str(exc)
    # A wait that ran out: every thread's stack too, the blocker's among them.
    assert exc.dumped
    assert "\n  lock.A held by pcpu0 (" in str(exc)
    assert "--- thread pcpu0 ---" in str(exc)
    assert ", in blocker\n" in str(exc)
    assert drv.done(h.cpu_contexts[0])
    assert lock.owner is None
    assert [v.kind for v in h.violations] == [ViolationKind.DEADLOCK]
    # The violation holds the report without the stacks, which stay on the error
    # (they differ from run to run, and replay files and JSON keep the message).
    [v] = h.violations
    assert v.message.startswith(str(exc).partition("\n")[0])
    assert "\n  lock.A held by pcpu0 (" in v.message
    assert "--- thread" not in v.message


# -- a wait for the turn is bounded from the run's last step, not from its start ----------

_STARVED_TURN = 0.3


def test_a_thread_kept_waiting_while_another_takes_steps_is_no_deadlock() -> None:
    # FirstReady runs pcpu0 to its end before pcpu1 has a turn, and pcpu0 takes steps
    # for five turn_timeouts: pcpu1 waits that long, the run itself never stalls.
    h = Host(2, sched="credit", dom0_vcpus=0)
    lock = SpinLock(h.bus, "lock.A")
    drv = ControlledDriver(h.bus, FirstReady(), turn_timeout=_STARVED_TURN)

    def busy() -> None:
        end = time.monotonic() + 5 * _STARVED_TURN
        while time.monotonic() < end:
            spin_lock(lock)
            spin_unlock(lock)

    def starved() -> None:
        spin_lock(lock)
        spin_unlock(lock)

    drv.spawn(h.cpu_contexts[0], busy)
    drv.spawn(h.cpu_contexts[1], starved)
    start = time.monotonic()
    assert drv.run() == []
    assert time.monotonic() - start >= 5 * _STARVED_TURN
    assert drv.deadlock is None
    assert h.violations == []
    assert drv.points_of(h.cpu_contexts[1]) == 2
    who = [s[0] for s in drv.steps]
    assert who == sorted(who)  # pcpu1's first turn came after pcpu0's last step


def test_a_stall_after_a_long_run_is_still_reported_within_a_bound() -> None:
    # pcpu0 takes steps for four turn_timeouts while pcpu1 waits, then blocks outside
    # the model with the turn: from its last step on, nobody takes one. pcpu1's wait
    # reports it no sooner than turn_timeout after that step, and not much later.
    turn = 0.2
    h = Host(2, sched="credit", dom0_vcpus=0)
    lock = SpinLock(h.bus, "lock.A")
    drv = ControlledDriver(h.bus, FirstReady(), turn_timeout=turn)
    stalled: list[float] = []
    reported: list[float] = []
    release = threading.Event()

    class _Reported(Instrument):
        def on_violation(self, violation: Violation) -> None:
            reported.append(time.monotonic())
            release.set()

    h.bus.add_instrument(_Reported())

    def busy_then_stuck() -> None:
        end = time.monotonic() + 4 * turn
        while time.monotonic() < end:
            spin_lock(lock)
            spin_unlock(lock)
        spin_lock(lock)  # its last step: the lock point
        stalled.append(time.monotonic())
        assert release.wait(_BOUND), "the stall was never reported"
        spin_unlock(lock)

    drv.spawn(h.cpu_contexts[0], busy_then_stuck)
    drv.spawn(h.cpu_contexts[1], lambda: schedule(h))
    [(ctx, exc)] = drv.run()
    assert ctx is h.cpu_contexts[1]
    assert isinstance(exc, DeadlockError)
    assert "pcpu1 waited 0.2s for its turn" in str(exc)
    assert ", in busy_then_stuck\n" in str(exc)  # the stuck thread's stack
    assert len(stalled) == len(reported) == 1
    waited = reported[0] - stalled[0]
    # At least the bound (the last step came just before `stalled`); at most the
    # bound and one check (a quarter of it), plus slack for a loaded machine.
    assert turn * 0.9 <= waited < turn * 1.25 + 1.0, waited
    assert [v.kind for v in h.violations] == [ViolationKind.DEADLOCK]
