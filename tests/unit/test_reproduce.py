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

import functools

import pytest

from xensched import SwitchProtocol
from xensched.checks import ViolationKind
from xensched.reproduce import (
    MOVING_CPU,
    Direction,
    Result,
    Transition,
    build_host,
    reproduce,
    reproduce_transition,
    transitions,
)

LEGACY, FIXED = SwitchProtocol.LEGACY, SwitchProtocol.FIXED
REMAPPING = {"credit2", "rtds"}
FREE_PDATA = {"credit2": "csched2_free_pdata", "rtds": "rt_free_pdata"}
MISMATCH = ViolationKind.LOCK_MISMATCH.value
ASSERT = ViolationKind.ASSERT.value
CLOBBERED = ViolationKind.LOCK_CLOBBERED.value
EXCLUSION = ViolationKind.MUTUAL_EXCLUSION.value


ORDER = transitions()


@functools.cache
def result(t: Transition) -> Result:
    """One computed result per transition, shared by every test of this module.

    Computed one at a time: running several controlled runs side by side overlaps
    their handoffs on an idle machine, but on a loaded one, and on the free-threaded
    build above all, it made this module several times slower.
    """
    return reproduce_transition(t)


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
        ("credit", "credit2", "remove"),  # Credit2 -> Credit, out of a pool
    ],
)
def test_problem_1_window_on_legacy_only(
    boot: str, pool: str, direction: Direction
) -> None:
    legacy = result(Transition(boot, pool, direction, LEGACY))
    assert legacy.problems == (MISMATCH,)
    [v] = legacy.first
    assert v.kind is ViolationKind.LOCK_MISMATCH
    assert v.cpu == MOVING_CPU
    assert v.where == "schedule"
    # The held lock is the Credit2 runqueue lock, the code Credit1's, or the reverse.
    assert "credit2@" in v.message
    assert "credit@" in v.message
    fixed = result(Transition(boot, pool, direction, FIXED))
    assert fixed.problems == ()
    assert fixed.first == ()


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
    assert j["runs"] == r.points + 2
    assert isinstance(j["first"], list)
    assert len(j["first"]) == len(r.problems)


def test_results_are_deterministic() -> None:
    t = Transition("credit2", "credit", "add", LEGACY)
    again = reproduce_transition(t)
    assert again == result(t)
    assert [v.describe() for v in again.first] == [
        v.describe() for v in result(t).first
    ]


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


@pytest.mark.parametrize("t", ORDER, ids=lambda t: t.describe())
def test_every_transition(t: Transition) -> None:
    r = result(t)
    must, may = expected(t)
    seen = set(r.problems)
    assert must <= seen, f"{t.describe()}: missing {must - seen}"
    assert seen <= may, f"{t.describe()}: unexpected {seen - may}"
    assert r.points > 0
    assert r.runs == r.points + 2
    if ASSERT in seen:
        old, _ = old_and_new(t)
        first_assert = next(v for v in r.first if v.kind.value == ASSERT)
        assert first_assert.where == FREE_PDATA[old]
    if CLOBBERED in seen:
        clobbered = next(v for v in r.first if v.kind.value == CLOBBERED)
        assert clobbered.cpu == MOVING_CPU


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
