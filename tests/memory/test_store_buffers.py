"""The store-buffer models under the controlled driver: what each one allows, and
DPOR's reduction shown equal to unreduced DFS on the same programs."""

from __future__ import annotations

from collections.abc import Callable, Hashable

import pytest

from xensched.explore.dfs import BoundedDFS
from xensched.explore.dpor import DPOR
from xensched.explore.engine import Explorer
from xensched.explore.threads import ThreadsTarget, World
from xensched.memory import (
    smp_load_acquire,
    smp_mb,
    smp_rmb,
    smp_store_release,
    smp_wmb,
    xchg,
)

Setup = Callable[[World], None]


def sb(model: str, *, mb: bool = False, xchgs: bool = False) -> Setup:
    """Store buffering: each CPU stores one field and loads the other."""

    def setup(w: World) -> None:
        w.memory_model(model)
        x, y = w.cell("x", 0), w.cell("y", 0)
        r: dict[str, int] = {}

        def p0() -> None:
            if xchgs:
                xchg(x, 1)
            else:
                x.store(1)
            if mb:
                smp_mb()
            r["r0"] = y.load()

        def p1() -> None:
            if xchgs:
                xchg(y, 1)
            else:
                y.store(1)
            if mb:
                smp_mb()
            r["r1"] = x.load()

        w.thread("P0", p0)
        w.thread("P1", p1)
        w.final_state(lambda: (r["r0"], r["r1"]))

    return setup


def mp(
    model: str, *, wmb: bool = False, rmb: bool = False, rel_acq: bool = False
) -> Setup:
    """Message passing: data then flag; the reader loads flag then data."""

    def setup(w: World) -> None:
        w.memory_model(model)
        data, flag = w.cell("data", 0), w.cell("flag", 0)
        r: dict[str, int] = {}

        def p0() -> None:
            data.store(1)
            if wmb:
                smp_wmb()
            if rel_acq:
                smp_store_release(flag, 1)
            else:
                flag.store(1)

        def p1() -> None:
            r["r0"] = smp_load_acquire(flag) if rel_acq else flag.load()
            if rmb:
                smp_rmb()
            r["r1"] = data.load()

        w.thread("P0", p0)
        w.thread("P1", p1)
        w.final_state(lambda: (r["r0"], r["r1"]))

    return setup


def corr(model: str) -> Setup:
    """Coherence of two loads of one field: never new then old."""

    def setup(w: World) -> None:
        w.memory_model(model)
        x = w.cell("x", 0)
        r: dict[str, int] = {}

        def p1() -> None:
            r["r0"] = x.load()
            r["r1"] = x.load()

        w.thread("P0", lambda: x.store(1))
        w.thread("P1", p1)
        w.final_state(lambda: (r["r0"], r["r1"]))

    return setup


def outcomes(setup: Setup, search: DPOR | BoundedDFS) -> set[Hashable]:
    res = Explorer(
        ThreadsTarget(setup), search, runs=None, keep_going=True, collect_states=True
    ).explore()
    assert res.exhaustive
    assert not res.violations
    return res.final_states


ALL_SB = {(0, 0), (0, 1), (1, 0), (1, 1)}
SC_SB = ALL_SB - {(0, 0)}
ALL_MP = {(0, 0), (0, 1), (1, 0), (1, 1)}
SC_MP = ALL_MP - {(1, 0)}

CASES: list[tuple[str, Callable[[str], Setup], dict[str, set[Hashable]]]] = [
    ("SB", sb, {"sc": set(SC_SB), "tso": set(ALL_SB), "relaxed": set(ALL_SB)}),
    (
        "SB+mbs",
        lambda m: sb(m, mb=True),
        {"sc": set(SC_SB), "tso": set(SC_SB), "relaxed": set(SC_SB)},
    ),
    (
        "SB+xchgs",
        lambda m: sb(m, xchgs=True),
        {"sc": set(SC_SB), "tso": set(SC_SB), "relaxed": set(SC_SB)},
    ),
    ("MP", mp, {"sc": set(SC_MP), "tso": set(SC_MP), "relaxed": set(ALL_MP)}),
    (
        "MP+wmb",
        lambda m: mp(m, wmb=True),
        {"sc": set(SC_MP), "tso": set(SC_MP), "relaxed": set(ALL_MP)},
    ),
    (
        "MP+wmb+rmb",
        lambda m: mp(m, wmb=True, rmb=True),
        {"sc": set(SC_MP), "tso": set(SC_MP), "relaxed": set(SC_MP)},
    ),
    (
        "MP+release+acquire",
        lambda m: mp(m, rel_acq=True),
        {"sc": set(SC_MP), "tso": set(SC_MP), "relaxed": set(SC_MP)},
    ),
    (
        "CoRR",
        corr,
        {m: {(0, 0), (0, 1), (1, 1)} for m in ("sc", "tso", "relaxed")},
    ),
]


@pytest.mark.parametrize("model", ["sc", "tso", "relaxed"])
@pytest.mark.parametrize(("name", "make", "want"), CASES, ids=[c[0] for c in CASES])
def test_each_model_allows_exactly_its_outcomes(
    name: str,
    make: Callable[[str], Setup],
    want: dict[str, set[Hashable]],
    model: str,
) -> None:
    assert outcomes(make(model), DPOR()) == want[model], name


# Unreduced DFS takes a second or more on these (hundreds of executions): slow.
_HEAVY = (
    {("SB", "relaxed"), ("SB", "tso"), ("SB+mbs", "relaxed")}
    | {("MP+wmb+rmb", m) for m in ("tso", "relaxed")}
    | {("MP+wmb", "relaxed")}
)
_AGAINST_DFS = [
    pytest.param(
        name,
        make,
        model,
        id=f"{name}-{model}",
        marks=[pytest.mark.slow] if (name, model) in _HEAVY else [],
    )
    for name, make, _ in CASES
    for model in ("tso", "relaxed")
]


@pytest.mark.parametrize(("name", "make", "model"), _AGAINST_DFS)
def test_dpor_finds_what_unreduced_dfs_finds_with_drains_and_early_loads(
    name: str, make: Callable[[str], Setup], model: str
) -> None:
    """The drain steps and loads of older values are choices DPOR reduces over:
    its outcome set is the unreduced search's."""
    assert outcomes(make(model), DPOR()) == outcomes(make(model), BoundedDFS(None))


def test_dpor_blind_to_one_field_misses_the_reordering_dfs_finds() -> None:
    """The planted defect: a DPOR that takes every access of ``flag`` (its loads
    and its drain) as independent of everything misses MP's weak outcome under
    relaxed, which unreduced DFS finds."""
    found = outcomes(mp("relaxed"), BoundedDFS(None))
    assert (1, 0) in found
    assert (1, 0) not in outcomes(mp("relaxed"), DPOR(ignore="flag"))
