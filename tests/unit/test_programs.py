"""Scenario programs under the controlled driver, and Bus.wait_until."""

from __future__ import annotations

import random
import threading
import time
from typing import TYPE_CHECKING, TypeVar, cast

import pytest

from xensched import ConfigError, DeadlockError, Host, ViolationKind
from xensched.drivers.controlled import ControlledDriver, RoundRobin
from xensched.programs import ControlledRun, CpuStats, XlStats, run_controlled
from xensched.scenario import (
    CpuOp,
    PcpuOps,
    Toolstack,
    XlOp,
    builtin,
    patch_move,
    stress_default,
)
from xensched.smp import bind

if TYPE_CHECKING:
    from collections.abc import Sequence

    from _typeshed import SupportsLenAndGetItem

    from xensched.programs import Env
    from xensched.smp import ExecContext

T = TypeVar("T")


class SeededWalk:
    """A seeded random choice among the ready threads at every point."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def pick(
        self,
        ready: Sequence[ExecContext],
        last: ExecContext | None,
        driver: ControlledDriver,
    ) -> ExecContext:
        return self._rng.choice(list(ready))


def _run(seed: int, strategy_seed: int) -> ControlledRun:
    sc = stress_default(domain_moves=0.5, controllers=2).bounded(schedules=12, moves=3)
    run = ControlledRun(sc, seed)
    run.run(SeededWalk(strategy_seed))
    return run


def test_stress_default_runs_controlled_and_ends() -> None:
    run = _run(7, 1)
    assert run.driver is not None
    assert run.driver.deadlock is None
    cpu = [s for s in run.stats if isinstance(s, CpuStats)]
    xl = [s for s in run.stats if isinstance(s, XlStats)]
    assert len(cpu) == 4
    assert len(xl) == 2
    # Every loop ran its bound, and the toolstacks did something.
    assert all(s.count >= 12 for s in cpu)
    assert sum(s.switches + s.domain_moves for s in xl) > 0
    assert run.host.violations == []


def test_controlled_runs_are_deterministic() -> None:
    a, b = _run(7, 1), _run(7, 1)
    assert a.driver is not None
    assert b.driver is not None
    assert a.driver.steps == b.driver.steps
    assert len(a.driver.steps) > 500
    c = _run(7, 2)
    assert c.driver is not None
    assert c.driver.steps != a.driver.steps  # another strategy, another schedule


def test_run_controlled_needs_bounded_programs() -> None:
    with pytest.raises(ConfigError, match=r"use scenario\.bounded\(\)"):
        run_controlled(stress_default(), RoundRobin())


def test_round_trip_runs_controlled() -> None:
    run = ControlledRun(builtin("round-trip", pool="credit2"))
    run.run(RoundRobin())
    xl = run.stats[0]
    assert isinstance(xl, XlStats)
    assert xl.switches == 2  # into p, then back into Pool-0
    assert run.host.list_cpupools()[0].cpus == (0, 1)


def test_patch_move_legacy_finds_the_race_and_fixed_does_not() -> None:
    # The observers interleaved round-robin with the move: RTDS -> Credit2 hits
    # rt_free_pdata's ASSERT under the legacy protocol only.
    legacy = run_controlled(
        patch_move("rtds", "credit2", "add", "legacy"), RoundRobin()
    )
    assert ViolationKind.ASSERT in {v.kind for v in legacy}
    fixed = run_controlled(patch_move("rtds", "credit2", "add", "fixed"), RoundRobin())
    assert fixed == []


def test_refused_ops_are_counted_not_raised() -> None:
    sc = patch_move().replace(
        threads=(
            Toolstack(
                "xl",
                ops=(XlOp("cpupool-destroy", ("nope",)), XlOp("vcpu-wake", ("d9v0",))),
            ),
        )
    )
    run = ControlledRun(sc)
    assert run.run(RoundRobin()) == []
    xl = run.stats[0]
    assert isinstance(xl, XlStats)
    assert xl.refusals == {"ENOENT": 2}


def test_a_crash_in_a_program_is_a_crash_violation() -> None:
    sc = patch_move().replace(threads=(PcpuOps(2, (CpuOp("wake", ("d1v7",)),)),))
    violations = run_controlled(sc, RoundRobin())
    assert [v.kind for v in violations] == [ViolationKind.CRASH]
    assert "d1v7" in violations[0].message


def test_a_program_ended_by_a_base_exception_is_a_crash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Not only an Exception: SystemExit ended the program as surely, and was dropped.
    def exits(*args: object) -> None:
        raise SystemExit(3)

    monkeypatch.setattr("xensched.programs.run_program", exits)
    sc = patch_move().replace(threads=(PcpuOps(2, (CpuOp("wake", ("d1v1",)),)),))
    violations = run_controlled(sc, RoundRobin())
    assert [(v.kind, v.where, v.message) for v in violations] == [
        (ViolationKind.CRASH, "pcpu2", "SystemExit: 3")
    ]


# -- Bus.wait_until -------------------------------------------------------------------------
def test_wait_until_polls_without_a_driver_and_gives_up() -> None:
    h = Host(2, lock_timeout=0.05)
    flag = threading.Event()
    with bind(h.toolstack_context("t")):
        threading.Timer(0.01, flag.set).start()
        h.bus.wait_until(flag.is_set, "the flag")
        t0 = time.monotonic()
        with pytest.raises(DeadlockError, match=r"t waited 0\.05s for nothing"):
            h.bus.wait_until(lambda: False, "nothing")
        assert time.monotonic() - t0 < 1.0


def test_wait_until_parks_under_the_controlled_driver() -> None:
    h = Host(2)
    a, b = h.toolstack_context("a"), h.toolstack_context("b")
    box: list[str] = []
    drv = ControlledDriver(h.bus, RoundRobin())

    def waiter() -> None:
        h.bus.wait_until(lambda: bool(box), "box")
        box.append("a")

    drv.spawn(a, waiter)
    drv.spawn(b, lambda: box.append("b"))
    assert drv.run() == []
    assert box == ["b", "a"]
    assert ("a", "wait", "<lambda>") in drv.steps


class _LastChoice(random.Random):
    """Picks the last candidate: the highest pCPU of the last pool, the last pool."""

    def choice(self, seq: SupportsLenAndGetItem[T]) -> T:
        return seq[len(seq) - 1]


class _NoPause:
    def pause(self, seconds: float) -> bool:
        return False


def _stranded(st: XlStats) -> object:
    return st.stranded


def test_a_removal_given_up_on_is_taken_up_by_the_next_move() -> None:
    """Xen 4.7.0 leaves the pCPU of a removal refused with EAGAIN free and moving,
    which blocks every other removal; the toolstack that gave up retries that
    removal at its next pCPU move (libxc would still be retrying it)."""
    from xensched.programs import Harness, _move_cpu

    h = Host(4, sched="credit", dom0_vcpus=0)
    p1 = h.cpupool_create("p1", sched="credit2")
    v = h.create_domain("d1", vcpus=1).vcpus[0]
    h.migrate(v, 3)
    assert h.schedule(3) is v
    hs, st = Harness(h), XlStats()
    prog = Toolstack("xl", attempts=2)
    env = cast("Env", _NoPause())
    with bind(h.toolstack_context("xl")):
        _move_cpu(h, hs, prog, _LastChoice(), st, env)
        assert st.refusals["gave-up"] == 1
        assert _stranded(st) == (h.pool("Pool-0"), 3)
        assert h.cpupool_moving_cpu.peek() == 3
        assert h.schedule(3).is_idle  # v leaves cpu3
        _move_cpu(h, hs, prog, _LastChoice(), st, env)
    assert _stranded(st) is None
    assert st.switches == 1
    assert p1.cpu_valid.peek() == {3}
    assert h.cpupool_moving_cpu.peek() == -1
    assert h.violations == []
