"""The barrier of 94734ab7c3 is real: without it, a relaxed machine breaks the switch.

``switch_sched`` stores the scheduler, its private data and only then, after
``smp_mb()``, the lock pointer. On a machine whose stores may become visible out of
order, a CPU that finds the new pointer can take the new lock and still read the old
scheduler: the old scheduler's code then runs under the new scheduler's lock. The
explorer finds that interleaving (drain steps included) under ``relaxed``; under
``sc`` and ``tso`` (FIFO store buffers) it cannot exist, and the bounded searches here
find nothing, as they find nothing for the intact fixed protocol under any model.
Every search is PCT with a fixed seed and a bounded number of runs.
"""

from __future__ import annotations

import pytest

from xensched.explore.engine import Explorer, ScenarioTarget
from xensched.explore.pct import PCT
from xensched.scenario import builtin

RUNS = 60


def explore(protocol: str, model: str, runs: int = RUNS) -> set[str]:
    sc = builtin("round-trip", pool="credit2", protocol=protocol).replace(
        memory_model=model
    )
    res = Explorer(ScenarioTarget(sc, seed=1), PCT(seed=1), runs=runs, seed=1).explore()
    return res.kinds


def test_without_the_barrier_relaxed_shows_a_lock_mismatch() -> None:
    assert "lock-mismatch" in explore("fixed-without:barrier", "relaxed")


@pytest.mark.parametrize("model", ["sc", "tso"])
def test_without_the_barrier_sc_and_tso_show_nothing(model: str) -> None:
    assert explore("fixed-without:barrier", model) == set()


@pytest.mark.parametrize("model", ["sc", "tso", "relaxed"])
def test_the_intact_fix_shows_nothing_under_any_model(model: str) -> None:
    assert explore("fixed", model) == set()


@pytest.mark.parametrize("model", ["sc", "tso", "relaxed"])
def test_the_legacy_protocol_shows_its_problem_under_every_model(model: str) -> None:
    assert "lock-mismatch" in explore("legacy", model, runs=50)
