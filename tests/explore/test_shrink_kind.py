"""shrink() keeps the violation kind it was asked for, even where a smaller run shows
another kind (planted: the legacy switch racing Credit2 moves, whose runs show
``assert``/``lock-clobbered`` in fewer steps than ``lock-mismatch`` or
``mutual-exclusion``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from xensched.explore import make_strategy
from xensched.explore.engine import Explorer, ScenarioTarget
from xensched.explore.replay import ReplaySchedule
from xensched.explore.shrink import shrink
from xensched.scenario import builtin

if TYPE_CHECKING:
    from xensched.explore.engine import ExploreResult
    from xensched.scenario import Scenario

SEED = 1


@pytest.fixture(scope="module")
def legacy_switch_race() -> tuple[Scenario, ExploreResult]:
    sc = builtin(
        "switch-race",
        boot="credit2",
        pool="credit2",
        direction="add",
        protocol="legacy",
    )
    strategy = make_strategy("random", seed=SEED)
    res = Explorer(
        ScenarioTarget(sc, SEED), strategy, runs=150, keep_going=True
    ).explore()
    assert {"assert", "lock-mismatch", "mutual-exclusion"} <= res.kinds
    return sc, res


@pytest.mark.parametrize("kind", ["lock-mismatch", "mutual-exclusion"])
def test_shrinking_for_a_kind_ends_on_that_kind(
    legacy_switch_race: tuple[Scenario, ExploreResult], kind: str
) -> None:
    sc, res = legacy_switch_race
    ex = res.first_of_kind[kind]
    s = shrink(ex, kind, scenario=sc, seed=SEED)
    assert s.execution.violations[0].kind.value == kind
    assert s.after <= s.before
    # The plant: the same execution also shows an `assert`, and shrinking for that
    # reaches a smaller run than `kind` can; a shrinker that kept any violation
    # would have slid there.
    assert "assert" in ex.kinds
    assert shrink(ex, "assert", scenario=sc, seed=SEED).after < s.after
    # And the shrunk schedule replays to that kind, at that step.
    final = s.scenario or sc
    accesses = [st.op.describe() for st in s.execution.steps]
    play = ReplaySchedule(s.execution.schedule, accesses)
    play.begin(0)
    again = Explorer(ScenarioTarget(final, SEED), play, runs=1).execute(0)
    assert kind in again.kinds
    assert again.first_of(kind).violation_steps[0] == s.execution.violation_steps[0]
