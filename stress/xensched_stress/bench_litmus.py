"""Part (f) of ``xensched bench``: litmus tests per second under each memory model.

Mirrors nothing in Xen. The built-in catalog of ``xensched litmus`` (every test run
exhaustively by DPOR, as the command runs it) under ``sc``, ``tso`` and ``relaxed``
side by side: tests per second and controlled executions per second, with the verdict
counts as a check that the run was the real one. ``tso`` and ``relaxed`` explore every
drain order and early load too, so they run more executions per test than ``sc``.

Left out: the histograms (``xensched litmus`` prints them), and unreduced DFS.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from xensched.litmus.builtin import catalog
from xensched.litmus.run import run_test
from xensched.memory_model import MODELS

if TYPE_CHECKING:
    from collections.abc import Sequence

    from xensched.litmus.syntax import LitmusTest

__all__ = ["bench_litmus"]


def _one(tests: Sequence[LitmusTest], model: str) -> dict[str, object]:
    verdicts = {"agrees": 0, "stronger": 0, "weaker": 0, "none": 0}
    executions = 0
    t0 = time.perf_counter()
    for t in tests:
        r = run_test(t, model)
        executions += r.executions
        verdicts[r.verdict or "none"] += 1
    wall = time.perf_counter() - t0
    return {
        "model": model,
        "tests": len(tests),
        "executions": executions,
        "wall_s": wall,
        "tests_per_s": len(tests) / wall if wall > 0 else 0.0,
        "executions_per_s": executions / wall if wall > 0 else 0.0,
        "verdicts": verdicts,
    }


def bench_litmus(quick: bool) -> dict[str, object]:
    """The catalog under each model (``quick``: its two-thread tests only)."""
    tests = catalog()
    if quick:
        tests = [t for t in tests if len(t.processes) <= 2]
    print(
        f"(f) litmus: {len(tests)} tests of the built-in catalog"
        f"{' (two-thread ones: --quick)' if quick else ''} under each memory model, "
        "each run exhaustively (DPOR, every interleaving, drain order and early load)"
    )
    rows = []
    for model in MODELS:
        row = _one(tests, model)
        rows.append(row)
        v = row["verdicts"]
        assert isinstance(v, dict)
        bad = f"  [{v['weaker']} WEAKER!]" if v["weaker"] else ""
        print(
            f"    {model:<8} {row['tests_per_s']:>7.1f} tests/s "
            f"{row['executions_per_s']:>8,.0f} executions/s  "
            f"({row['executions']:,} executions in {row['wall_s']:.1f}s; "
            f"{v['agrees']} agree, {v['stronger']} stronger){bad}",
            flush=True,
        )
    return {"tests": len(tests), "quick": quick, "models": rows}
