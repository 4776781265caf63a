"""The patch's three problems, reproduced with observer pCPUs (xensched.reproduce).

Expectations come from the reference (the commit message of 94734ab7c3 and
xen-sched-locking.md §3.4), not from what the code happens to print:

- ``fixed``: no problem for any transition.
- ``legacy``, neither side remaps the lock (Credit1/ARINC653 in any pairing, the
  default per-pCPU ``_lock`` on both sides): no problem.
- ``legacy``, exactly one side is Credit2 or RTDS: problem 1 only, ``lock-mismatch``
  (the window with the lock new and the scheduler old, or the reverse). The old
  scheduler's ``free_pdata`` either does not touch the lock (Credit1/ARINC653) or
  finds its own lock still mapped and resets it to ``_lock``, which is right for the
  new one: no ``assert``, no ``lock-clobbered``.
- ``legacy``, both sides Credit2/RTDS (always two instances: the boot one ``&ops`` and
  the pool's): problem 1, problem 2 (``assert`` in the *old* scheduler's
  ``free_pdata``) and problem 3 (``lock-clobbered``). Problem 3 leaves the pCPU on
  its private ``_lock`` while it shares a runqueue, so ``mutual-exclusion`` is seen
  too: the observers' strategy lets a second pCPU run while one is inside a runqueue
  section, so an overlap the locks allow is always found.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import TYPE_CHECKING

import pytest

import xensched.reproduce
from xensched import SwitchProtocol
from xensched.checks import ViolationKind
from xensched.explore.engine import Explorer, ScenarioTarget
from xensched.explore.replay import ReplaySchedule, load_replay
from xensched.mutants import NO_LOCK_RECHECK, NO_TRYLOCK_RECHECK
from xensched.reproduce import (
    MOVER,
    MOVING_CPU,
    Direction,
    Result,
    Transition,
    build_host,
    reproduce,
    reproduce_transition,
    transitions,
)
from xensched.scenario import BUSY_OBSERVER_CPU, builtin

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from xensched.explore.engine import Execution
    from xensched.scenario import Scenario

LEGACY, FIXED = SwitchProtocol.LEGACY, SwitchProtocol.FIXED
REMAPPING = {"credit2", "rtds"}
FREE_PDATA = {"credit2": "csched2_free_pdata", "rtds": "rt_free_pdata"}
MISMATCH = ViolationKind.LOCK_MISMATCH.value
ASSERT = ViolationKind.ASSERT.value
CLOBBERED = ViolationKind.LOCK_CLOBBERED.value
EXCLUSION = ViolationKind.MUTUAL_EXCLUSION.value
#: The load-balancing pCPU thread of ``busy-peer-remove``.
OBSERVER = f"pcpu{BUSY_OBSERVER_CPU}"


ORDER = transitions()


@dataclasses.dataclass(frozen=True)
class Observed:
    """A transition's result and every run it made: ``(scenario, paused, k,
    execution)``."""

    result: Result
    runs: tuple[tuple[str, str | None, int, Execution], ...]

    def of(self, scenario: str) -> list[tuple[str | None, int, Execution]]:
        return [(p, k, ex) for name, p, k, ex in self.runs if name == scenario]


def observe(
    t: Transition, plant: Callable[[pytest.MonkeyPatch], None] | None = None
) -> Observed:
    """``reproduce_transition(t)``, logging every run it makes; ``plant`` may first
    swap a bug into :mod:`xensched.reproduce`."""
    with pytest.MonkeyPatch.context() as mp:
        logs: list[tuple[str, str | None, int, Execution]] = []
        real = xensched.reproduce._run_once

        def run_once(sc: Scenario, paused: str | None, k: int) -> Execution:
            ex = real(sc, paused, k)
            logs.append((sc.name, paused, k, ex))
            return ex

        mp.setattr(xensched.reproduce, "_run_once", run_once)
        if plant is not None:  # over the log: what it changes is seen
            plant(mp)
        r = xensched.reproduce.reproduce_transition(t)
    return Observed(r, tuple(logs))


def check_observed_at_every_point(seen: Observed) -> None:
    """Every thread of ``patch-move`` is paused at every one of its steps: one dry
    run counts each thread's steps ``N``; then, for every thread and every ``k`` in
    ``0..N``, one run where that thread alone makes its first ``k`` steps (fewer only
    when it cannot go on: not enabled, or finished) before any other thread runs.
    A cpu-remove does the same in ``busy-peer-remove`` for its load-balancing
    observer alone. ``runs`` counts them all and ``points`` is the mover's count."""
    r = seen.result
    assert r.runs == len(seen.runs), f"runs={r.runs}, but {len(seen.runs)} were done"
    names = {name for name, *_ in seen.runs}
    busy = {"busy-peer-remove"} if r.transition.direction == "remove" else set()
    assert names == {"patch-move", *busy}, f"ran {sorted(names)}"
    counts = _check_paused_at_every_point(seen.of("patch-move"), None)
    assert r.points == counts.get(MOVER), (
        f"points={r.points}, but the mover made {counts.get(MOVER)} steps alone"
    )
    if busy:
        _check_paused_at_every_point(seen.of("busy-peer-remove"), OBSERVER)


def _check_paused_at_every_point(
    runs: list[tuple[str | None, int, Execution]], only: str | None
) -> dict[str, int]:
    """One dry run, then ``only`` (every thread, for None) paused at each of its
    points; returns each thread's steps in the dry run."""
    dry = [ex for paused, _, ex in runs if paused is None]
    assert len(dry) == 1, f"{len(dry)} dry runs, not one"
    counts: dict[str, int] = {}
    for name in dry[0].schedule:
        counts[name] = counts.get(name, 0) + 1
    paused_threads = {paused for paused, _, _ in runs if paused is not None}
    assert paused_threads == (set(counts) if only is None else {only}), (
        f"paused {sorted(paused_threads)}"
    )
    for thread, n in counts.items():
        if only is not None and thread != only:
            continue
        ks = sorted(k for paused, k, _ in runs if paused == thread)
        missing = sorted(set(range(n + 1)) - set(ks))
        assert ks == list(range(n + 1)), (
            f"{thread} is not paused once at each of its {n + 1} positions: "
            f"missing {missing}, paused at {ks}"
        )
    for paused, k, ex in runs:
        if paused is None:
            continue
        j = next((i for i, t in enumerate(ex.schedule) if t != paused), None)
        if j is None:
            continue  # it ran alone to the end
        stuck = j < k and paused not in ex.steps[j].enabled
        assert j == k or stuck, (
            f"{paused} paused at {k} made {j} steps alone before another thread ran"
        )
    return counts


@functools.cache
def observed(t: Transition) -> Observed:
    """One observed result per transition, shared by every test of this module.

    Computed one at a time: running several controlled runs side by side overlaps
    their handoffs on an idle machine, but on a loaded one, and on the free-threaded
    build above all, it made this module several times slower.
    """
    return observe(t)


def result(t: Transition) -> Result:
    return observed(t).result


@functools.cache
def mover_result(t: Transition) -> Result:
    """The mover-only family (``pause="mover"``): a quarter of the runs, enough for
    the tests of what the mover's windows show."""
    return reproduce_transition(t, pause="mover")


def old_and_new(t: Transition) -> tuple[str, str]:
    """Schedulers before and after the switch of pCPU x.

    A free pCPU runs the boot scheduler: ``add`` goes boot -> pool, ``remove`` goes
    pool -> boot.
    """
    return (t.boot, t.pool) if t.direction == "add" else (t.pool, t.boot)


def expected(t: Transition) -> tuple[set[str], set[str]]:
    """(kinds that must be seen, kinds that may be seen) for ``t``."""
    if t.protocol is FIXED:
        return set(), set()
    old, new = old_and_new(t)
    if old in REMAPPING and new in REMAPPING:
        must = {MISMATCH, ASSERT, CLOBBERED, EXCLUSION}
        return must, must
    if old in REMAPPING or new in REMAPPING:
        return {MISMATCH}, {MISMATCH}
    return set(), set()


# -- the three problems, named --------------------------------------------------------


@pytest.mark.parametrize(
    ("boot", "pool", "direction"),
    [
        ("credit", "credit2", "add"),  # Credit -> Credit2: window [2]
        ("credit2", "credit", "add"),  # Credit2 -> Credit: window [1]
        pytest.param(
            "credit", "credit2", "remove", marks=pytest.mark.slow
        ),  # Credit2 -> Credit, out of a pool
    ],
)
def test_problem_1_window_on_legacy_only(
    boot: str, pool: str, direction: Direction
) -> None:
    legacy = mover_result(Transition(boot, pool, direction, LEGACY))
    assert legacy.problems == (MISMATCH,)
    [v] = legacy.first
    assert v.kind is ViolationKind.LOCK_MISMATCH
    assert v.cpu == MOVING_CPU
    assert v.where == "schedule"
    # The held lock is the Credit2 runqueue lock, the code Credit1's, or the reverse.
    assert "credit2@" in v.message
    assert "credit@" in v.message
    fixed = mover_result(Transition(boot, pool, direction, FIXED))
    assert fixed.problems == ()
    assert fixed.first == ()


@pytest.mark.slow
def test_problems_2_and_3_rtds_to_credit2_on_legacy() -> None:
    legacy = result(Transition("rtds", "credit2", "add", LEGACY))
    assert {MISMATCH, ASSERT, CLOBBERED} <= set(legacy.problems)
    first = {v.kind.value: v for v in legacy.first}
    assert first[ASSERT].where == "rt_free_pdata"  # problem 2, [3]
    assert "sd->schedule_lock == &prv->lock" in first[ASSERT].message
    assert first[CLOBBERED].cpu == MOVING_CPU  # problem 3, [4]
    assert "credit2@p.rqd[0].lock" in first[CLOBBERED].message
    assert result(Transition("rtds", "credit2", "add", FIXED)).problems == ()


def test_problems_come_in_a_stable_order_with_json() -> None:
    r = result(Transition("rtds", "credit2", "add", LEGACY))
    order = [k.value for k in ViolationKind]
    assert list(r.problems) == sorted(r.problems, key=order.index)
    assert [v.kind.value for v in r.first] == list(r.problems)
    j = r.to_json()
    assert j["boot"] == "rtds"
    assert j["pool"] == "credit2"
    assert j["direction"] == "add"
    assert j["protocol"] == "legacy"
    assert j["problems"] == list(r.problems)
    assert (j["runs"], j["switch_points"]) == (r.runs, r.points)
    assert isinstance(j["first"], list)
    assert len(j["first"]) == len(r.problems)


def test_results_are_deterministic() -> None:
    t = Transition("credit2", "credit", "add", LEGACY)
    again = reproduce_transition(t, pause="mover")
    assert again == mover_result(t)
    assert [v.describe() for v in again.first] == [
        v.describe() for v in mover_result(t).first
    ]
    assert [e.schedule for e in again.executions] == [
        e.schedule for e in mover_result(t).executions
    ]


def test_pausing_the_mover_alone_runs_fewer_and_misses_the_observers_windows() -> None:
    t = Transition("rtds", "credit2", "add", LEGACY)
    assert mover_result(t).problems == result(t).problems
    assert mover_result(t).runs * 3 < result(t).runs
    with pytest.raises(ValueError, match="pause='some'"):
        reproduce_transition(t, pause="some")


# -- every transition ----------------------------------------------------------------------


def test_transitions_cover_the_64_combinations() -> None:
    ts = ORDER
    assert len(ts) == 64
    assert len(set(ts)) == 64
    assert {t.protocol for t in ts} == {LEGACY, FIXED}
    assert {t.direction for t in ts} == {"add", "remove"}
    assert Transition("rtds", "credit2", "add", LEGACY).describe() == (
        "rtds -> credit2 (add, legacy)"
    )
    assert Transition("rtds", "credit2", "remove", FIXED).describe() == (
        "rtds <- credit2 (remove, fixed)"
    )


#: Run by default: a move where both sides remap (every kind of problem), under both
#: protocols; the named tests above add one side remapping and none (the mover's
#: family). The other 62 moves are `slow` (`pytest -m slow`); .ci/run's `xensched
#: reproduce` checks all 64 on every CI run.
DEFAULT_MOVES = {("rtds", "credit2", "add")}


@pytest.mark.parametrize(
    "t",
    [
        pytest.param(
            t,
            marks=()
            if (t.boot, t.pool, t.direction) in DEFAULT_MOVES
            else pytest.mark.slow,
            id=t.describe(),
        )
        for t in ORDER
    ],
)
def test_every_transition(t: Transition) -> None:
    r = result(t)
    must, may = expected(t)
    seen = set(r.problems)
    assert must <= seen, f"{t.describe()}: missing {must - seen}"
    assert seen <= may, f"{t.describe()}: unexpected {seen - may}"
    assert r.points > 0
    check_observed_at_every_point(observed(t))
    if ASSERT in seen:
        old, _ = old_and_new(t)
        first_assert = next(v for v in r.first if v.kind.value == ASSERT)
        assert first_assert.where == FREE_PDATA[old]
    if CLOBBERED in seen:
        clobbered = next(v for v in r.first if v.kind.value == CLOBBERED)
        assert clobbered.cpu == MOVING_CPU


class _PausedOneStepEarly(xensched.reproduce.PauseAt):
    # The strategy with an off-by-one: the paused thread stops a step early.
    def __init__(
        self, paused: str | None, k: int, inside: xensched.reproduce._Sections
    ) -> None:
        super().__init__(paused, max(k - 1, 0), inside)


def _off_by_one(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(xensched.reproduce, "PauseAt", _PausedOneStepEarly)


def _every_other_point(mp: pytest.MonkeyPatch) -> None:
    real = xensched.reproduce._run_once

    def run_once(sc: Scenario, paused: str | None, k: int) -> Execution:
        return real(sc, paused, k - k % 2)

    mp.setattr(xensched.reproduce, "_run_once", run_once)


def _miscounting(**counts: int) -> Callable[[Observed], Observed]:
    # A reproduce whose result misreports its figures: the runs are the real ones
    # (the unplanted observation's, shared), the result is off.
    def plant(seen: Observed) -> Observed:
        r = seen.result
        wrong = dataclasses.replace(
            r, **{k: getattr(r, k) + d for k, d in counts.items()}
        )
        return dataclasses.replace(seen, result=wrong)

    return plant


@pytest.mark.parametrize(
    ("plant", "message"),
    [
        (_off_by_one, r"paused at \d+ made \d+ steps alone"),
        (_every_other_point, "not paused once at each"),
    ],
    ids=["off-by-one", "every-other-point"],
)
def test_every_point_check_fails_on_a_reproduce_that_skips(
    plant: Callable[[pytest.MonkeyPatch], None], message: str
) -> None:
    t = Transition("credit", "arinc653", "add", LEGACY)
    check_observed_at_every_point(observed(t))  # the same transition, unplanted
    with pytest.raises(AssertionError, match=message):
        check_observed_at_every_point(observe(t, plant))


@pytest.mark.parametrize(
    ("plant", "message"),
    [
        (_miscounting(runs=-1), "were done"),
        (_miscounting(points=1), "the mover made .* steps alone"),
    ],
    ids=["runs-miscounted", "points-miscounted"],
)
def test_every_point_check_fails_on_a_reproduce_that_miscounts(
    plant: Callable[[Observed], Observed], message: str
) -> None:
    seen = observed(Transition("credit", "arinc653", "add", LEGACY))
    check_observed_at_every_point(seen)
    with pytest.raises(AssertionError, match=message):
        check_observed_at_every_point(plant(seen))


def test_reproduce_runs_a_selection_with_progress() -> None:
    sel = [Transition("credit", "arinc653", "add", LEGACY)]
    calls: list[tuple[int, int]] = []
    [r] = reproduce(sel, progress=lambda i, n, res: calls.append((i, n)))
    assert calls == [(1, 1)]
    assert r == result(sel[0])
    assert r.problems == ()


@pytest.mark.parametrize("direction", ["add", "remove"])
def test_build_host_starting_state(direction: Direction) -> None:
    h = build_host("credit", "credit2", direction, LEGACY)
    assert h.protocol is LEGACY
    assert h.violations == []
    pools = {pi.name: pi for pi in h.list_cpupools()}
    assert pools["Pool-0"].cpus == (0, 1)
    if direction == "add":
        assert pools["p"].cpus == (2,)
        assert h.cpupool_free_cpus.peek() == {MOVING_CPU}
    else:
        assert pools["p"].cpus == (2, MOVING_CPU)
        assert h.cpupool_free_cpus.peek() == frozenset()
    assert pools["p"].domains == ("d1",)


@pytest.mark.slow
def test_without_the_lock_recheck_the_fixed_protocol_fails() -> None:
    # The observers' side: a pCPU that read the lock pointer before the move and
    # takes the old lock after it, with no re-check, runs the new scheduler's code
    # under the old lock. Only pausing the observer finds it.
    t = Transition("credit", "credit2", "add", FIXED)
    assert result(t).problems == ()
    mutant = reproduce_transition(t, [NO_LOCK_RECHECK])
    assert MISMATCH in mutant.problems
    assert mutant.to_json()["mutants"] == [NO_LOCK_RECHECK]


def test_each_problem_comes_with_a_replay_that_shows_it(tmp_path: Path) -> None:
    r = result(Transition("rtds", "credit2", "add", LEGACY))
    for i, kind in enumerate(r.problems):
        path = tmp_path / f"{kind}.json"
        path.write_text(r.replay(i).to_json())
        replay = load_replay(str(path))
        assert replay.violation is not None
        assert replay.violation.kind == kind
        play = ReplaySchedule(replay.schedule, replay.accesses)
        play.begin(0)
        assert replay.scenario is not None
        ex = Explorer(ScenarioTarget(replay.scenario), play, runs=1).execute(0)
        kinds = (v.kind.value for v in ex.violations)
        got = set(zip(kinds, ex.violation_steps, strict=True))
        assert (kind, replay.violation.step) in got
        assert json.loads(path.read_text())["strategy"] == "reproduce"


def test_workers_give_the_same_results() -> None:
    sel = [
        Transition("credit", "arinc653", "add", LEGACY),
        Transition("credit", "credit2", "add", LEGACY),
    ]
    assert reproduce(sel, workers=2, pause="mover") == [mover_result(t) for t in sel]


def test_replay_dir_is_checked_before_the_run_and_written_after(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from xensched.cli import main

    argv = ["reproduce", "--pause", "mover", "--boot", "rtds", "--pool", "credit2"]
    argv += ["--direction", "add", "--protocol", "legacy", "--no-progress"]
    missing = tmp_path / "nope"
    assert main([*argv, "--replay-dir", str(missing)]) == 2
    assert capsys.readouterr().err == (
        f"xensched reproduce: error: --replay-dir {missing}: does not exist\n"
    )
    assert main([*argv, "--replay-dir", str(tmp_path)]) == 0
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == [
        f"rtds-credit2-add-legacy-{kind}.json"
        for kind in sorted(
            mover_result(Transition("rtds", "credit2", "add", LEGACY)).problems
        )
    ]


def _busy_runs(protocol: str, mutants: tuple[str, ...]) -> list[Execution]:
    # reproduce's runs of busy-peer-remove: the dry run, then the load-balancing
    # observer paused at each of its points (credit2 boot, Credit pool).
    sc = builtin("busy-peer-remove", protocol=protocol).replace(mutants=mutants)
    dry = xensched.reproduce._run_once(sc, None, 0)
    n = dry.schedule.count(OBSERVER)
    return [dry] + [xensched.reproduce._run_once(sc, OBSERVER, k) for k in range(n + 1)]


def test_without_the_trylock_recheck_a_busy_peer_keeps_a_stale_lock() -> None:
    # The observer reads the busy pCPU's lock pointer, the removal completes (the
    # pointer now names Credit2's runqueue lock), and it trylocks Credit's old
    # per-pCPU lock: the re-check gives it back; without it, the unlock's ASSERT.
    intact = [v for ex in _busy_runs("fixed", ()) for v in ex.violations]
    assert intact == []
    found = [
        v for ex in _busy_runs("fixed", (NO_TRYLOCK_RECHECK,)) for v in ex.violations
    ]
    assert {(v.kind.value, v.where, v.cpu) for v in found} == {
        (ASSERT, "pcpu_schedule_unlock", MOVING_CPU)
    }


@pytest.mark.slow
def test_reproduce_shows_the_missing_trylock_recheck_with_a_replay(
    tmp_path: Path,
) -> None:
    t = Transition("credit2", "credit", "remove", FIXED)
    assert result(t).problems == ()
    r = reproduce_transition(t, [NO_TRYLOCK_RECHECK])
    assert r.problems == (ASSERT,)
    replay = r.replay(0)
    assert replay.scenario is not None
    assert replay.scenario.name == "busy-peer-remove"
    path = tmp_path / "r.json"
    path.write_text(replay.to_json())
    loaded = load_replay(str(path))
    play = ReplaySchedule(loaded.schedule, loaded.accesses)
    play.begin(0)
    assert loaded.scenario is not None
    ex = Explorer(ScenarioTarget(loaded.scenario), play, runs=1).execute(0)
    assert loaded.violation is not None
    assert (ASSERT, loaded.violation.step) in set(
        zip((v.kind.value for v in ex.violations), ex.violation_steps, strict=True)
    )
