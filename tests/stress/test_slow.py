"""Longer stress runs, opt-in with ``-m slow``: fixed seeds, bounded, no timing figures.

The default suite keeps every stress test under 2 s; these take up to a minute.
"""

from __future__ import annotations

import itertools
import re

import pytest

from xensched import SCHEDULERS, ViolationKind
from xensched_stress import bench
from xensched_stress.config import PoolSpec, StressConfig
from xensched_stress.runner import run_stress

pytestmark = pytest.mark.slow

PROBLEMS = {
    ViolationKind.LOCK_MISMATCH,
    ViolationKind.ASSERT,
    ViolationKind.LOCK_CLOBBERED,
    ViolationKind.MUTUAL_EXCLUSION,
}


@pytest.mark.parametrize("seed", range(1, 11))
def test_legacy_credit_credit2_race_within_2s(seed: int) -> None:
    cfg = StressConfig(
        boot="credit",
        pools=(PoolSpec("p1", "credit2", (2, 3)),),
        protocol="legacy",
        duration=2.0,
        seed=seed,
        delay_injection=0.02,
    )
    r = run_stress(cfg)
    assert r.exit_code == 1, r.render()
    assert r.violations[0].kind in PROBLEMS
    assert r.first_violation_after is not None
    assert r.first_violation_after <= 2.0


@pytest.mark.parametrize(
    ("boot", "pool"), list(itertools.product(SCHEDULERS, SCHEDULERS))
)
def test_fixed_protocol_every_pairing(boot: str, pool: str) -> None:
    cfg = StressConfig(
        boot=boot,
        pools=(PoolSpec("p1", pool, (2, 3)),),
        duration=2.0,
        seed=100,
        keep_going=True,
        delay_injection=0.01,
        controllers=2,
        domain_moves=0.2,
    )
    r = run_stress(cfg)
    assert r.violations == (), r.render()
    assert r.deadlock is None
    assert not r.stragglers


@pytest.mark.parametrize("cpus", [32, 128])
def test_many_pcpus(cpus: int) -> None:
    cfg = StressConfig(cpus=cpus, topology=f"2x{cpus // 2}", duration=2.0, seed=1)
    r = run_stress(cfg)
    assert r.exit_code == 0, r.render()
    assert len(r.schedule_counts) == cpus
    assert r.total_ops > 0
    assert not r.stragglers


def test_bench_quick_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--quick", "--only", "a,c", "--seeds", "2", "--figure-duration", "0.5"]
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    assert "(a) legacy Credit <-> Credit2 moves" in out
    assert "(c) throughput" in out
    assert "bench done" in out


def test_bench_explore_quick_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    """Part (e) at --quick, the worker processes real."""
    assert bench.main(["--quick", "--only", "e", "--seeds", "2"]) == 0
    out = capsys.readouterr().out
    assert "(e) exploration" in out
    assert re.search(r"dpor +median", out)  # found by the seed-independent DPOR
    assert re.search(r"2 workers: \d+ runs", out)
    assert "bench done" in out


@pytest.mark.parametrize("model", ["tso", "relaxed"])
def test_store_buffers_leave_the_fixed_protocol_clean_for_5s(model: str) -> None:
    # A few seconds of the default workload: no violation, no deadlock (a waiting
    # CPU drains its own buffer, so nobody waits on a store that never drains).
    r = run_stress(StressConfig(memory_model=model, duration=5.0, seed=11))
    assert r.exit_code == 0, r.render()
    assert r.total_ops > 1000


@pytest.mark.parametrize("model", ["tso", "relaxed"])
def test_store_buffers_keep_the_legacy_race(model: str) -> None:
    r = run_stress(
        StressConfig(memory_model=model, protocol="legacy", duration=10.0, seed=12)
    )
    assert r.exit_code == 1, r.render()
    assert r.violations[0].kind in PROBLEMS
