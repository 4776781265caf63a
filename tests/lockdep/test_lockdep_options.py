"""``--lockdep`` on ``xensched stress``, ``explore``, ``replay``, ``reproduce`` and the
pytest markers; the documented orders on every scheduler pairing; a planted ABBA in a
scheduler, found under the free-running and the controlled driver.

The ABBA is planted in Credit2 by the test alone (``_plant_abba``): its
``do_schedule``, which ``schedule()`` calls with the runqueue lock held, also takes the
private lock, against csched2's rule (private lock, then runqueue lock), which
``csched2_deinit_pdata`` follows when a pCPU leaves a Credit2 pool.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from tests._schemas import validate
from xensched.cli import main
from xensched.explore import make_strategy
from xensched.explore.engine import Explorer, ScenarioTarget
from xensched.instruments import LOCKDEP_DEFAULT, InstrumentedTarget, LockdepSummary
from xensched.lockdep import Lockdep
from xensched.protocol import SwitchProtocol
from xensched.reproduce import Transition, reproduce_transition
from xensched.scenario import builtin
from xensched.schedulers import SCHEDULERS
from xensched.schedulers.credit2 import Credit2
from xensched.spinlock import spin_lock, spin_unlock
from xensched_stress.cli import main as stress_main
from xensched_stress.config import StressConfig, rerun_command
from xensched_stress.runner import run_stress

if TYPE_CHECKING:
    from pathlib import Path

ORDER_KINDS = {"lock-order", "irq-inversion"}
PRV, RQ = "credit2.prv->lock", "credit2.rqd[].lock"


def _plant_abba(mp: pytest.MonkeyPatch) -> None:
    real = Credit2.do_schedule

    def do_schedule(self: Credit2, *args: Any, **kwargs: Any) -> Any:
        # schedule() holds this pCPU's runqueue lock: the private lock after it.
        spin_lock(self.lock)
        spin_unlock(self.lock)
        return real(self, *args, **kwargs)

    mp.setattr(Credit2, "do_schedule", do_schedule)


def _json(path: Path, kind: str) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    validate(kind, data)
    return data


# -- the documented orders, on every pairing ------------------------------------------------


def _explore_lockdep(
    boot: str, pool: str, direction: str, protocol: str = "fixed", runs: int = 2
) -> tuple[set[str], LockdepSummary]:
    sc = builtin(
        "switch-race", boot=boot, pool=pool, direction=direction, protocol=protocol
    )
    target = InstrumentedTarget(ScenarioTarget(sc, 1), lockdep=True)
    res = Explorer(target, make_strategy("random", seed=1), runs=runs).explore()
    summary = target.lockdep_summary
    assert summary is not None
    return res.kinds, summary


@pytest.mark.parametrize("direction", ["add", "remove"])
@pytest.mark.parametrize("boot", list(SCHEDULERS))
def test_every_pairing_keeps_the_documented_orders(boot: str, direction: str) -> None:
    for pool in SCHEDULERS:
        kinds, s = _explore_lockdep(boot, pool, direction)
        what = f"{boot} -> {pool} {direction}"
        assert not kinds & ORDER_KINDS, what
        assert not kinds, what  # the fixed protocol: nothing at all
        assert s.acquisitions > 0
        # The pCPU leaves the pool it is in: Pool-0 (boot) on add, the other on remove.
        source, dest = (boot, pool) if direction == "add" else (pool, boot)
        # csched2_deinit_pdata: the private lock, then the runqueue lock.
        assert ((PRV, RQ) in s.edges) == (source == "credit2"), what
        # Credit's private lock is held with a runqueue lock only in switch_sched
        # (the declared exception): no edge from it, in any pairing.
        assert not [e for e in s.edges if e[0] == "credit.prv->lock"], what
        # switch_sched takes the new scheduler's private lock under the old lock in
        # Credit and Credit2; RTDS's and ARINC653's take none there.
        used = [u for u in s.sanctioned if u.where == "switch_sched"]
        if dest in ("credit", "credit2"):
            assert [u.taken for u in used] == [f"{dest}.prv->lock"], what
            assert "94734ab7c3" in used[0].why
        else:
            assert used == [], what


# -- the planted ABBA ----------------------------------------------------------------------------


def test_a_planted_abba_is_found_by_a_stress_run() -> None:
    cfg = StressConfig(
        ops=20000, seed=11, lockdep=True, lock_timeout=2.0, watchdog=10.0
    )
    with pytest.MonkeyPatch.context() as mp:
        _plant_abba(mp)
        report = run_stress(cfg)
    order = [v for v in report.violations if v.kind.value == "lock-order"]
    assert order, report.render()
    msg = order[0].message
    assert f"{PRV} -> {RQ}" in msg or f"{RQ} -> {PRV}" in msg
    assert "do_schedule()" in msg
    assert report.lockdep is not None
    assert {(PRV, RQ), (RQ, PRV)} <= set(report.lockdep.edges)


def test_without_lockdep_the_same_stress_run_says_nothing_of_the_order() -> None:
    cfg = StressConfig(ops=3000, seed=11, lockdep=False, lock_timeout=2.0)
    with pytest.MonkeyPatch.context() as mp:
        _plant_abba(mp)
        report = run_stress(cfg)
    assert not {v.kind.value for v in report.violations} & ORDER_KINDS
    assert report.lockdep is None
    assert report.to_json()["lockdep"] is None


def test_a_planted_abba_is_found_by_the_controlled_driver() -> None:
    with pytest.MonkeyPatch.context() as mp:
        _plant_abba(mp)
        kinds, s = _explore_lockdep("credit2", "credit", "add", runs=1)
    assert "lock-order" in kinds
    assert {(PRV, RQ), (RQ, PRV)} <= set(s.edges)


def test_explore_lockdep_reports_it_writes_a_replay_that_replays_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json, replay = tmp_path / "e.json", tmp_path / "r.json"
    argv = [
        "explore",
        "--scenario=switch-race",
        "--boot=credit2",
        "--pool=credit",
        "--strategy=random",
        "--runs=3",
        "--seed=1",
        "--lockdep",
        f"--json={out_json}",
        f"--replay-out={replay}",
    ]
    with pytest.MonkeyPatch.context() as mp:
        _plant_abba(mp)
        code = main(argv)
        out = capsys.readouterr().out
        data = _json(out_json, "explore")
        assert code == 1, out
        assert "lock-order" in data["kinds"]
        assert [PRV, RQ] in data["lockdep"]["edges"]
        assert "lockdep: " in out
        assert "acquisitions checked" in out
        rec = _json(replay, "replay")
        assert rec["options"]["lockdep"] is True
        assert rec["violation"]["kind"] == "lock-order"
        # The file's execution ran under lockdep: so does its replay, unless told.
        assert main(["replay", str(replay)]) == 1
        assert "lock-order at step" in capsys.readouterr().out
        assert main(["replay", "--no-lockdep", str(replay)]) == 0
        assert "NOT reproduced" in capsys.readouterr().out


# -- the options ----------------------------------------------------------------------------------


def test_the_default_is_the_measured_one() -> None:
    # See the README's section "Lock order: --lockdep": off, its cost being above 10%.
    assert LOCKDEP_DEFAULT is False
    assert StressConfig().lockdep is LOCKDEP_DEFAULT


def test_stress_lockdep_report_json_and_rerun_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "s.json"
    argv = ["--lockdep", "--ops", "1500", "--seed", "3", "--no-progress"]
    code = stress_main([*argv, "--json", str(f)])
    out = capsys.readouterr().out
    assert code == 0, out
    data = _json(f, "stress")
    assert data["config"]["lockdep"] is True
    ld = data["lockdep"]
    assert ld["acquisitions"] > 1000
    assert "cpupool_lock" in ld["classes"]
    # Pool moves of the default shape into p1 (Credit2) use the declared exception.
    assert any(
        s["where"] == "switch_sched" and s["taken"] == PRV for s in ld["sanctioned"]
    )
    assert "--lockdep" in data["rerun"]
    assert f"lockdep: {ld['acquisitions']:,} acquisitions checked" in out
    assert "declared exceptions used" in out
    code = stress_main(
        ["--no-lockdep", "--ops", "200", "--seed", "3", "--json", str(f)]
    )
    capsys.readouterr()
    data = _json(f, "stress")
    assert data["lockdep"] is None
    assert data["config"]["lockdep"] is False
    assert "lockdep" not in rerun_command(StressConfig(seed=3))


def test_stress_config_refuses_a_lockdep_that_is_not_a_bool() -> None:
    from xensched import ConfigError

    with pytest.raises(ConfigError, match="lockdep: 'yes': expected a bool"):
        StressConfig(lockdep="yes").validate()  # type: ignore[arg-type]


def test_reproduce_lockdep_same_problems_and_a_summary_per_move(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The legacy move here (the fixed one is the command's, below; all 64: slow).
    t = Transition("credit", "credit2", "add", SwitchProtocol.parse("legacy"))
    on = reproduce_transition(t, pause="mover", lockdep=True)
    off = reproduce_transition(t, pause="mover")
    assert on.problems == off.problems
    assert "lock-mismatch" in on.problems
    assert not set(on.problems) & ORDER_KINDS
    assert off.lockdep is None
    assert on.lockdep is not None
    assert on.lockdep.acquisitions > 0
    f = tmp_path / "r.json"
    argv = ["reproduce", "--boot=credit", "--pool=credit2", "--direction=add"]
    argv += ["--protocol=fixed", "--pause=mover", "--workers=1", "--no-progress"]
    code = main([*argv, "--lockdep", f"--json={f}"])
    out = capsys.readouterr().out
    assert code == 0
    data = _json(f, "reproduce")
    (r,) = data["results"]
    assert r["problems"] == []
    assert [s["where"] for s in r["lockdep"]["sanctioned"]] == ["switch_sched"]
    assert ", lockdep on" in out.splitlines()[0]
    assert "lockdep: " in out


# Two whole reproduce runs: 126 s alone on a slow day, past the suite's 180 s hang
# guard when another xdist worker shares the two cores (its worker was ended).
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_reproduce_all_moves_same_problems_with_and_without_lockdep() -> None:
    from xensched.reproduce import reproduce

    on = reproduce(workers=2, lockdep=True)
    off = reproduce(workers=2)
    assert [r.problems for r in on] == [r.problems for r in off]
    for r in on:
        assert not set(r.problems) & ORDER_KINDS, r.transition.describe()
        if r.transition.protocol.name == "fixed":
            assert r.problems == (), r.transition.describe()


def test_lockdep_summary_merges_and_serialises() -> None:
    a = LockdepSummary(2, ("a", "b"), (("a", "b"),))
    b = LockdepSummary(3, ("b", "c"), (("b", "c"),))
    m = a.merge(b)
    assert m.acquisitions == 5
    assert m.classes == ("a", "b", "c")
    assert m.to_json()["edges"] == [["a", "b"], ["b", "c"]]
    assert m.lines()[0].startswith("lockdep: 5 acquisitions checked, 3 lock classes")


def test_a_lockdep_target_gives_each_execution_its_own_lockdep() -> None:
    sc = builtin("switch-race", boot="credit", pool="credit2")
    target = InstrumentedTarget(ScenarioTarget(sc, 1), lockdep=True)
    seen: list[Lockdep] = []
    for _ in range(2):
        run = target.new_run()
        seen += [i for i in run.bus._instruments if isinstance(i, Lockdep)]
    assert len(seen) == 2
    assert seen[0] is not seen[1]
