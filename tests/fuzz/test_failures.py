"""How the fuzz machine fails when Xen does not answer: a deadlock (in an operation or
in a pCPU thread) comes with every thread's stack and the lock owners, a crash with its
traceback, and the threads stop; a failure that does not come back when Hypothesis
replays it is reported with the sequence that failed, shrunk by replaying it; a replay
runs until it fails; what fires after a replayed script's last operation is reported,
not raised; the allowance for removals refused while vCPUs move holds only when the
host is unchanged."""

from __future__ import annotations

import errno
import json
import random
import re
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING

import pytest

from tests._schemas import validate
from tests._threads import threads_left
from xensched import Host, XenError
from xensched.scenario import XlOp, apply_xl
from xensched.smp import bind
from xensched.spinlock import spin_lock, spin_lock_irq, spin_unlock
from xensched.violation import Violation, ViolationKind
from xensched_stress import fuzz_cli
from xensched_stress.fuzz import (
    FuzzConfig,
    FuzzFailure,
    Hammer,
    XlFuzzMachine,
    check_schedulers,
    run_script,
    shrink_by_replay,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

#: For the tests of a deadlock: a lock wait gives up soon.
QUICK = FuzzConfig(cpus=2, seed=5, lock_timeout=0.3)
#: For the tests that expect no deadlock: a lock wait is not mistaken for one when
#: a loaded machine leaves a lock's holder unscheduled for a while (a real deadlock
#: is still reported, later).
CFG = FuzzConfig(cpus=2, seed=5, lock_timeout=30.0)
#: Bound of the polls below (a wait, not an assertion on time).
_POLL_BOUND = 30.0


class Small(XlFuzzMachine):
    config = QUICK


class Calm(XlFuzzMachine):
    config = CFG


def _started(cls: type[XlFuzzMachine]) -> Iterator[XlFuzzMachine]:
    before = set(threading.enumerate())
    m = cls()
    try:
        yield m
    finally:
        m._failed = True  # the test looks at the failure itself
        m.teardown()
        left = threads_left(before)
        assert not left, [t.name for t in left]  # no pCPU thread left behind


@pytest.fixture
def machine() -> Iterator[XlFuzzMachine]:
    """A machine whose lock waits give up after 0.3 s: for the deadlock tests."""
    yield from _started(Small)


@pytest.fixture
def calm_machine() -> Iterator[XlFuzzMachine]:
    """A machine that no lock wait of a loaded host fails: no deadlock expected."""
    yield from _started(Calm)


def test_a_stuck_operation_is_a_deadlock_with_stacks(machine: XlFuzzMachine) -> None:
    never = XlOp("cpupool-destroy", ("p9",))
    with pytest.raises(FuzzFailure) as e:
        machine._run(
            never, lambda: machine.host.bus.wait_until(lambda: False, "nothing")
        )
    assert [v.kind for v in e.value.violations] == [ViolationKind.DEADLOCK]
    dump = e.value.dump
    assert dump is not None
    assert dump.startswith("xl cpupool-destroy p9: xl waited")
    assert "--- thread pcpu0 ---" in dump
    assert "locks held:" in dump


def test_a_stuck_pcpu_is_a_deadlock_with_stacks(machine: XlFuzzMachine) -> None:
    h = machine.host
    # A planted bug: the toolstack (this thread is bound to it) takes pCPU 1's lock
    # and never lets it go.
    planted = h.lock_of(1)
    spin_lock_irq(planted)

    def on_planted(v: Violation) -> bool:
        # "pcpuN spun on 'schedule_data[1]._lock' for 0.3s; held by xl" (0.25s once
        # the first deadlock has lowered the bound)
        return (
            v.kind is ViolationKind.DEADLOCK
            and f"spun on {planted.name!r}" in v.message
            and v.message.endswith("held by xl")
        )

    # Whoever gives up first, some pCPU thread spins on the planted lock itself and
    # gives up too: wait for both the dump and that violation.
    end = time.monotonic() + _POLL_BOUND
    while time.monotonic() < end and (
        machine.hammer.dump is None or not any(map(on_planted, h.violations))
    ):
        time.sleep(0.01)
    with pytest.raises(FuzzFailure) as e:
        machine._run(XlOp("cpupool-destroy", ("p9",)))
    assert any(map(on_planted, e.value.violations))
    dump = e.value.dump
    assert dump is not None
    # The dump is the first pCPU thread's to give up, and that need not be one that
    # spun on the planted lock: a pCPU in vcpu_migrate() may hold pCPU 0's lock
    # (_lock_double takes it first) while it spins on pCPU 1's, and the other pCPU
    # spin on pCPU 0's, held by the first. Both waits run out within moments of each
    # other; which thread reports first is the OS's call. Either way the first line
    # is a pCPU's own wait, the lock table names the planted owner, and every
    # thread's stack follows.
    first = re.fullmatch(
        r"(pcpu\d): \1 spun on '(.+)' for [\d.]+s; held by (\S+)",
        dump.splitlines()[0],
    )
    assert first is not None, dump.splitlines()[0]
    waiter, lock, holder = first.groups()
    if holder == "xl":
        assert lock == planted.name
    else:
        assert holder in {"pcpu0", "pcpu1"} - {waiter}
    assert f"\n  {planted.name} held by xl (" in dump
    assert "--- thread pcpu0 ---" in dump
    assert "--- thread pcpu1 ---" in dump


def test_an_exception_in_xen_is_a_crash_with_its_traceback(
    calm_machine: XlFuzzMachine,
) -> None:
    machine = calm_machine

    def boom() -> None:
        raise RuntimeError("planted")

    with pytest.raises(FuzzFailure) as e:
        machine._run(XlOp("cpupool-destroy", ("p9",)), boom)
    (v,) = e.value.violations
    assert v.kind is ViolationKind.CRASH
    assert "xl crashed: RuntimeError: planted" in v.message
    assert "in boom" in v.message
    assert e.value.dump is None


class FailsOnce(XlFuzzMachine):
    """Fails on its first example only: Hypothesis's replay of it passes (Flaky)."""

    config = FuzzConfig(cpus=2, seed=5)
    left: int = 1

    def _run(self, op: XlOp, action: object = None) -> None:
        super()._run(op)
        if type(self).left == 0:
            self.log.append("passing-run")  # tells the runs that passed apart
        elif op.verb == "cpupool-cpu-add":
            type(self).left -= 1
            planted = Violation(ViolationKind.MEMBERSHIP, None, "xl", "planted", "xl")
            self._fail_on([planted], op)


def test_a_failure_that_does_not_come_back_is_reported_with_its_sequence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(fuzz_cli, "machine_class", lambda cfg: FailsOnce)
    report = fuzz_cli.FuzzReport(5, FailsOnce.config, None)
    fuzz_cli._run_campaign(
        FailsOnce.config, 60.0, report, False, threading.Event(), shrink_duration=1.0
    )
    assert report.flaky
    assert [v.message for v in report.violations] == ["planted"]
    # The sequence that failed (the initial pool's three operations), not the
    # passing one Hypothesis ran last.
    assert report.script[0].startswith("cpupool-create p1 ")
    assert report.script[-1].startswith("cpupool-cpu-add p1 ")
    assert len(report.script) == 3
    assert "passing-run" not in report.script
    assert report.unshrunk == 3  # and shrinking by replay found nothing shorter


def test_what_fires_after_a_replayed_script_is_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stop = Hammer.stop

    def late(self: Hammer) -> None:
        stop(self)
        self.host.bus.violation(ViolationKind.ASSERT, "late", "planted")

    monkeypatch.setattr(Hammer, "stop", late)
    report = fuzz_cli.FuzzReport(5, CFG, None)
    fuzz_cli._replay_script(CFG, ["cpupool-create p1 credit2"], report)
    assert [v.message for v in report.violations] == ["planted"]
    assert report.exit_code == fuzz_cli.EXIT_FOUND


def test_each_subclass_counts_its_own_campaign() -> None:
    assert Small.refusals is not XlFuzzMachine.refusals
    assert FailsOnce.refusals is not Small.refusals
    assert Small.shortest_failure is None or Small.shortest_failure[0]


class FewAttempts(XlFuzzMachine):
    config = FuzzConfig(cpus=2, seed=5, attempts=3)


@pytest.mark.parametrize("planted", ["as-xen", "unchanged", "removed"])
def test_a_removal_refused_while_vcpus_move_must_leave_the_pcpu_moving(
    planted: str,
) -> None:
    """A removal still refused with EAGAIN after every attempt: Xen 4.7.0 leaves the
    pCPU free and moving, out of its pool. A planted host that does so passes (a
    transient refusal); one that leaves the host unchanged, or that removed the pCPU
    all the same, is an ``xl-result`` violation."""
    before = set(threading.enumerate())
    m = FewAttempts()
    transient = FewAttempts.transient
    calls: list[int] = []
    remove = XlOp("cpupool-cpu-remove", ("Pool-0", "1"))

    def eagain() -> None:
        # A planted host: every try answers EAGAIN (vCPUs still on the pCPU); what
        # its first try does to the host is the parameter.
        calls.append(1)
        h = m.host
        if planted == "as-xen" and len(calls) == 1:
            pool0 = h.pool("Pool-0")
            spin_lock(h.cpupool_lock)
            pool0.cpu_valid.clear(1)
            h.cpupool_free_cpus.set(1)
            h.cpupool_moving_cpu.store(1)
            h.cpupool_cpu_moving.store(pool0)
            spin_unlock(h.cpupool_lock)
        if planted == "removed" and len(calls) == 1:
            # The real removal may itself meet a vCPU still on the pCPU: retry it
            # until it lands, so that the host did change.
            for _ in range(1000):
                try:
                    apply_xl(h, remove)
                    break
                except XenError as e:
                    if e.errno not in (errno.EAGAIN, errno.EBUSY):
                        raise
                    time.sleep(0.001)
            else:
                raise AssertionError("the planted removal never landed")
        raise XenError(errno.EAGAIN, "planted")

    try:
        if planted == "as-xen":
            m._run(remove, eagain)
            assert m.model.moving == (1, "Pool-0")
        else:
            with pytest.raises(FuzzFailure) as e:
                m._run(remove, eagain)
            assert [v.kind for v in e.value.violations] == [ViolationKind.XL_RESULT]
            assert "refused (EAGAIN), the host shows" in e.value.violations[0].message
        assert len(calls) == 3
        assert FewAttempts.transient == transient + 1
    finally:
        m._failed = True
        m.teardown()
    left = threads_left(before)
    assert not left, [t.name for t in left]


class FailsOnP2(XlFuzzMachine):
    """A planted bug: creating pool p2 fails, one time in two (by a seeded coin)."""

    config = FuzzConfig(cpus=2, seed=5)
    coin = random.Random(1)

    def _run(self, op: XlOp, action: object = None) -> None:
        super()._run(op)
        p2 = op.verb == "cpupool-create" and op.args[0] == "p2"
        if p2 and type(self).coin.random() < 0.5:
            planted = Violation(ViolationKind.ASSERT, None, "xl", "planted", "xl")
            self._fail_on([planted], op)


def test_shrinking_by_replay_keeps_what_fails_now_and_then() -> None:
    script = [
        "cpupool-create p1 credit2",
        "cpupool-cpu-remove Pool-0 1",
        "cpupool-cpu-add p1 1",
        "create d1 p1 1",
        "cpupool-create p2 rtds",
        "destroy d1",
        "cpupool-destroy p9",
    ]
    first = None
    while first is None:  # bounded: a fair coin (seeded) comes up tails soon
        first = run_script(FailsOnP2, script)
    ops, failure = shrink_by_replay(FailsOnP2, script, first, seconds=60, tries=8)
    assert ops == ["cpupool-create p2 rtds"]
    assert [v.message for v in failure.violations] == ["planted"]


def test_a_replay_runs_until_it_fails(tmp_path: Path) -> None:
    report = fuzz_cli.FuzzReport(5, CFG, None)
    fuzz_cli._replay_script(CFG, ["cpupool-create p1 credit2"], report, runs=3)
    assert report.examples == 3
    assert report.violations == []
    assert report.refusals == {}
    report = fuzz_cli.FuzzReport(5, CFG, None)
    fuzz_cli._replay_script(CFG, ["cpupool-destroy p9"] * 2, report, runs=2)
    assert report.refusals == {"ENOENT": 4}


def test_runs_without_replay_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert fuzz_cli.main(["--runs", "3"]) == 2
    out, err = capsys.readouterr()
    assert err == "xensched fuzz: error: --runs N goes with --replay FILE\n"
    assert out == ""


def test_a_deadlock_report_exits_3_and_validates() -> None:
    report = fuzz_cli.FuzzReport(5, CFG, None)
    report.violations = [
        Violation(ViolationKind.DEADLOCK, 1, "_spin_lock", "pcpu1 spun", "pcpu1")
    ]
    report.deadlock = "pcpu1 spun\n\nlocks held:\n  none"
    report.flaky, report.unshrunk, report.transient = True, 7, 2
    report.script = ["cpupool-create p1 credit2"]
    assert report.exit_code == fuzz_cli.EXIT_DEADLOCK
    data = report.to_json()
    validate("fuzz", data)
    assert data["deadlock"] == report.deadlock
    assert data["unshrunk_operations"] == 7
    assert data["transient_refusals"] == 2


def test_planted_shared_scheduler_instance_is_seen() -> None:
    h = Host(4, sched="credit", dom0_vcpus=1)
    with bind(h.toolstack_context("xl")):
        h.cpupool_create("p1", "credit2")
        h.cpupool_create("p2", "credit2")
    assert check_schedulers(h) == []
    pools = {p.name: p for p in h.cpupool_list}
    pools["p2"].sched = pools["p1"].sched  # planted: one instance for two pools
    assert check_schedulers(h) == ["p2 shares its scheduler instance with p1"]
    pools["p2"].sched = h.ops  # planted: a pool on the boot instance
    assert check_schedulers(h) == ["p2 shares its scheduler instance with Pool-0"]


@pytest.mark.slow
def test_an_interleaving_failure_is_shrunk_and_replayed(tmp_path: Path) -> None:
    def fuzz(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "xensched", "fuzz", "--no-progress", *argv],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    r = fuzz(
        *("--mutant", "legacy", "--seed", "3", "--duration", "60", "--no-explore"),
        *("--json", "out.json"),
    )
    assert r.returncode == 1, r.stdout + r.stderr
    data = json.loads((tmp_path / "out.json").read_text())
    validate("fuzz", data)
    replay = data["replay_command"].split()[2:]
    if data["flaky"]:  # as it is on 2 cores: Hypothesis cannot replay it
        assert data["unshrunk_operations"] >= len(data["script"])
        assert replay[-2:] == ["--runs", str(fuzz_cli.FLAKY_RUNS)]
        assert "the sequence below failed" in r.stdout
        replay[-1] = "200"  # the same script, more chances to meet the interleaving
    assert any(o.startswith("cpupool-cpu-add") for o in data["script"])
    assert fuzz(*replay).returncode == 1


def test_shrinking_by_replay_adds_nothing_to_the_campaign_figures() -> None:
    # The replays ran on the campaign's own class: the report (and the kill table's
    # runs) counted them as the campaign's examples and operations.
    campaign: type[XlFuzzMachine] = type("FailsOnP2Campaign", (FailsOnP2,), {})
    script = ["cpupool-create p1 credit2", "cpupool-create p2 rtds", "destroy d9"]
    first = None
    while first is None:  # bounded: a fair coin (seeded) comes up tails soon
        first = run_script(campaign, script)

    def figures() -> tuple[object, ...]:
        return (
            campaign.examples,
            campaign.operations,
            campaign.schedules,
            dict(campaign.refusals),
            campaign.transient,
            list(campaign.last_log),
            campaign.shortest_failure,
        )

    before = figures()
    ops, _ = shrink_by_replay(campaign, script, first, seconds=60, tries=8)
    assert ops == ["cpupool-create p2 rtds"]
    assert figures() == before
