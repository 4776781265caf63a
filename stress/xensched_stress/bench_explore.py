"""Part (e) of ``xensched bench``: the explorer's figures, measured side by side.

Mirrors nothing in Xen. Six figures, each against its aim:

1. the legacy Credit <-> Credit2 round trip found by each strategy: median wall time
   and median runs to the first violation over the seeds (dfs and dpor do not depend
   on the seed: one schedule order, timed a few times), each seed capped;
2. DPOR proving the fixed round trip exhaustively, and unreduced DFS on the same
   scenario within a budget;
3. preemption-bounded search (2 preemptions) over the switch-race moves, fixed
   protocol (clean? bound exhausted?) and legacy (the violation kinds found): DFS
   reduced by bounded partial-order reduction (``dpor --max-preemptions 2``), which
   reaches every state that unreduced DFS within the bound reaches;
4. DPOR without a bound over the fixed switch-race moves;
5. interaction points per second in controlled mode (DPOR's runs of figure 2);
6. runs per second of one exploration with 1 and with 2 worker processes
   (``xensched explore --workers N`` in a fresh interpreter each).

Every exploration runs its threads on one CPU (``xensched explore --pin``; figure 6's
worker K on the K-th CPU): figure 2 also gives DPOR with the threads wherever the OS
puts them, for comparison. Figures 3 and 4 cover a few moves unless ``full`` (all 32: 4 x 4 boot x pool
schedulers, both directions). Left out: the shrinking and story of a failing run (the
explorer's, not a figure), and the other built-in scenarios.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from xensched import SCHEDULERS
from xensched.drivers.workers import one_cpu
from xensched.explore import Explorer, ExploreResult, ScenarioTarget, make_strategy
from xensched.protocol import SwitchProtocol
from xensched.reproduce import Direction, Transition, reproduce_transition
from xensched.scenario import round_trip, switch_race

if TYPE_CHECKING:
    from collections.abc import Sequence

    from xensched.scenario import Scenario

#: Figure 1: (label, strategy, options, deterministic). dfs and dpor choose in a fixed
#: order whatever the seed; the round trip's programs make no seeded choice either.
#: ``all_points``: the sampling strategy chooses at every point, not only at the
#: visible ones (``--all-points``), for comparison.
FIND_STRATEGIES: tuple[tuple[str, str, dict[str, int], bool], ...] = (
    ("random", "random", {}, False),
    ("random, every point", "random", {"all_points": 1}, False),
    ("pct depth 1", "pct", {"depth": 1}, False),
    ("pct depth 2", "pct", {"depth": 2}, False),
    ("pct depth 3", "pct", {"depth": 3}, False),
    ("pct 3, every point", "pct", {"depth": 3, "all_points": 1}, False),
    ("dfs <= 2 preemptions", "dfs", {"max_preemptions": 2}, True),
    ("dpor <= 2 preemptions", "dpor", {"max_preemptions": 2}, True),
    ("dpor", "dpor", {}, True),
    ("portfolio", "portfolio", {}, False),
)
#: Figure 1's runs cap per seed (beside the time cap).
FIND_RUNS = 2000
#: Timings of a deterministic strategy in figure 1.
DETERMINISTIC_REPEATS = 3
#: Figure 1's aim: interleave-test, the fastest Python peer, finds it in 13 ms median.
FIND_AIM_S = 0.013
PROVE_AIM_S = 0.5
#: Figure 2's DPOR runs, each way (pinned, not), alternately.
PROVE_REPEATS = 3
POINTS_AIM = 20_000
ALL_PROVEN_AIM_S = 600.0
#: Figure 3's bound, and its search: DFS within the bound, reduced by BPOR (the
#: ``dpor`` strategy given a bound). Plain ``dfs`` within 2 preemptions reaches the same
#: states (tests/explore/test_bounded_dpor.py) in up to 17 times the executions.
DFS_BOUND = 2
BOUNDED_STRATEGY = "dpor"
#: All 32 moves of figures 3 and 4, and the few of the default (quick) form: the
#: patch's own pairing both ways for 3; for 4 (and 6), a move that DPOR proves in
#: seconds (most take minutes).
ALL_MOVES: tuple[tuple[str, str, str], ...] = tuple(
    (b, p, d)
    for b, p in itertools.product(SCHEDULERS, SCHEDULERS)
    for d in ("add", "remove")
)
QUICK_MOVES: tuple[tuple[str, str, str], ...] = (
    ("credit", "credit2", "add"),
    ("credit", "credit2", "remove"),
)
QUICK_DPOR_MOVES: tuple[tuple[str, str, str], ...] = (("credit", "arinc653", "add"),)
#: Figure 6: DPOR to exhaustion of this move, with 1 then 2 workers: the add with
#: the most executions (988), so that the figure is the exploration's more than the
#: start of the worker processes (the credit -> credit add it replaced takes 332
#: since DPOR takes silent stores as reads: about a second, as long as the start).
WORKERS_MOVE: tuple[str, str, str] = ("credit2", "credit", "add")
WORKERS = (1, 2)


@dataclass(frozen=True, slots=True)
class ExploreBench:
    """What part (e) measures and its caps (seconds)."""

    seeds: int = 20
    base_seed: int = 1
    find_cap: float = 5.0
    dfs_budget: float = 10.0
    move_cap: float = 120.0
    dpor_cap: float = 60.0
    full: bool = False


def _explore(
    sc: Scenario,
    strategy: str,
    *,
    seed: int = 1,
    runs: int | None = None,
    seconds: float | None = None,
    keep_going: bool = False,
    depth: int = 3,
    max_preemptions: int | None = None,
    all_points: bool = False,
    pin: bool = True,
) -> ExploreResult:
    return Explorer(
        ScenarioTarget(sc, seed),
        make_strategy(
            strategy, seed=seed, depth=depth, max_preemptions=max_preemptions
        ),
        seed=seed,
        runs=runs,
        seconds=seconds,
        keep_going=keep_going,
        all_points=all_points,
        cpu=one_cpu() if pin else None,
    ).explore()


def _ms(x: float) -> str:
    return f"{x * 1000:,.0f} ms" if x >= 0.1 else f"{x * 1000:.1f} ms"


def _median(xs: Sequence[float]) -> float:
    """Not-found seeds count as infinity: the median is then infinite when at least
    half of them missed."""
    return statistics.median(xs) if xs else math.inf


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


# -- 1. the legacy round trip found by each strategy ---------------------------------------


def _find_one(
    label: str, name: str, options: dict[str, int], det: bool, cfg: ExploreBench
) -> dict[str, object]:
    sc = round_trip("credit", "credit2", "legacy")
    seeds = (
        [cfg.base_seed] * DETERMINISTIC_REPEATS
        if det
        else [cfg.base_seed + i for i in range(cfg.seeds)]
    )
    # Past this many misses the median is a miss whatever the other seeds do.
    hopeless = (len(seeds) + 1) // 2
    times: list[float] = []
    runs: list[float] = []
    rows: list[dict[str, object]] = []
    misses = 0
    for s in seeds:
        r = _explore(
            sc,
            name,
            seed=s,
            runs=FIND_RUNS,
            seconds=cfg.find_cap,
            depth=options.get("depth", 3),
            max_preemptions=options.get("max_preemptions"),
            all_points=bool(options.get("all_points")),
        )
        found = r.stop_reason == "violation found"
        times.append(r.seconds if found else math.inf)
        runs.append(r.runs if found else math.inf)
        rows.append(
            {"seed": s, "found": found, "seconds": r.seconds, "runs": r.runs}
            | {"kind": r.violations[0].kind.value if r.violations else None}
        )
        misses += not found
        # A deterministic strategy that misses misses again: once is the figure.
        if misses >= hopeless or (det and not found):
            break
    med_t, med_r = _median(times), _median(runs)
    tried = len(rows)
    found_n = tried - misses
    if math.isfinite(med_t):
        verdict = "met" if med_t < FIND_AIM_S else "NOT met"
        what = f"median {_ms(med_t):>9s}, {med_r:>6g} runs; aim {verdict}"
    else:
        what = f"not found in {FIND_RUNS} runs / {cfg.find_cap:g} s (median)"
    if det:
        how = (
            f"seed-independent, timed {tried}x"
            if not misses
            else "seed-independent, not found: timed once"
        )
    else:
        how = f"found in {found_n} of {tried} seeds" + (
            f" (stopped: {misses} misses decide the median)"
            if tried < len(seeds)
            else ""
        )
    print(f"    {label:<21s} {what}  [{how}]", flush=True)
    return {
        "strategy": label,
        "deterministic": det,
        "seeds_tried": tried,
        "found": found_n,
        "median_s": _finite(med_t),
        "median_runs": _finite(med_r),
        "aim_met": math.isfinite(med_t) and med_t < FIND_AIM_S,
        "runs": rows,
    }


def bench_find(cfg: ExploreBench) -> dict[str, object]:
    print(
        f"  1. legacy Credit <-> Credit2 round trip (2 pCPUs), time and runs to the "
        f"first violation: median over {cfg.seeds} seeds from {cfg.base_seed} "
        f"(dfs and dpor: seed-independent, timed {DETERMINISTIC_REPEATS}x), each "
        f"capped at {FIND_RUNS} runs or {cfg.find_cap:g} s; aim: under "
        f"{_ms(FIND_AIM_S)} median (interleave-test, the fastest Python peer)",
        flush=True,
    )
    rows = [_find_one(*spec, cfg) for spec in FIND_STRATEGIES]
    return {
        "seeds": cfg.seeds,
        "cap_runs": FIND_RUNS,
        "cap_s": cfg.find_cap,
        "aim_s": FIND_AIM_S,
        "strategies": rows,
    }


# -- 2 and 5. the fixed round trip proved -------------------------------------------------


def bench_prove(cfg: ExploreBench) -> tuple[dict[str, object], dict[str, object]]:
    sc = round_trip("credit", "credit2", "fixed")
    print(
        f"  2. fixed round trip: DPOR to exhaustion (cap {cfg.dpor_cap:g} s; aim: under "
        f"{PROVE_AIM_S:g} s), then unreduced DFS within {cfg.dfs_budget:g} s",
        flush=True,
    )
    # Pinned and not, alternately: the median of each is the figure.
    pinned: list[ExploreResult] = []
    loose: list[ExploreResult] = []
    for _ in range(PROVE_REPEATS):
        pinned.append(_explore(sc, "dpor", seconds=cfg.dpor_cap, keep_going=True))
        loose.append(
            _explore(sc, "dpor", seconds=cfg.dpor_cap, keep_going=True, pin=False)
        )
    d, u = _median_run(pinned), _median_run(loose)
    dfs = _explore(sc, "dfs", seconds=cfg.dfs_budget, keep_going=True)
    proved = d.exhaustive and not d.kinds
    print(
        f"    dpor: {d.runs} executions in {d.seconds:.2f} s (median of "
        f"{PROVE_REPEATS}), "
        + ("exhaustive" if d.exhaustive else f"NOT exhaustive ({d.stop_reason})")
        + (f", violations: {', '.join(sorted(d.kinds))}" if d.kinds else ", clean")
        + f"; aim {'met' if proved and d.seconds < PROVE_AIM_S else 'NOT met'}"
    )
    print(
        f"    dpor, threads on any CPU (no --pin): {u.runs} executions in "
        f"{u.seconds:.2f} s (median of {PROVE_REPEATS}, alternating with the above): "
        f"{u.seconds / d.seconds:.2f}x the time on one CPU"
    )
    print(
        f"    unreduced dfs: {dfs.runs} executions in {dfs.seconds:.2f} s, "
        + (
            "exhaustive"
            if dfs.exhaustive
            else f"NOT exhaustive ({dfs.stop_reason})"
            + (
                f": {dfs.runs / d.runs:.1f}x DPOR's executions and counting"
                if d.exhaustive and d.runs
                else ""
            )
        )
        + (f", violations: {', '.join(sorted(dfs.kinds))}" if dfs.kinds else ""),
        flush=True,
    )
    pps = d.points_per_second
    print(
        f"  5. interaction points per second, controlled mode (DPOR above): "
        f"{pps:,.0f}/s ({d.points} points; unreduced dfs: "
        f"{dfs.points_per_second:,.0f}/s); aim >= {POINTS_AIM:,}: "
        f"{'met' if pps >= POINTS_AIM else 'NOT met'}",
        flush=True,
    )
    prove = {
        "dpor": _summary(d),
        "dpor_unpinned": _summary(u),
        "dfs": _summary(dfs),
        "dfs_budget_s": cfg.dfs_budget,
        "aim_s": PROVE_AIM_S,
        "aim_met": proved and d.seconds < PROVE_AIM_S,
    }
    points: dict[str, object] = {
        "points": d.points,
        "seconds": d.seconds,
        "per_s": pps,
        "dfs_per_s": dfs.points_per_second,
        "aim_per_s": POINTS_AIM,
        "aim_met": pps >= POINTS_AIM,
    }
    return prove, points


def _median_run(rs: Sequence[ExploreResult]) -> ExploreResult:
    """The run of median time among ``rs`` (the upper one of an even count)."""
    return sorted(rs, key=lambda r: r.seconds)[len(rs) // 2]


def _summary(r: ExploreResult) -> dict[str, object]:
    return {
        "runs": r.runs,
        "seconds": r.seconds,
        "exhaustive": r.exhaustive,
        "stop_reason": r.stop_reason,
        "kinds": sorted(r.kinds),
    }


# -- 3. bounded search over the switch-race moves -----------------------------------------


def _move(m: tuple[str, str, str]) -> str:
    return f"{m[0]:>8s} -> {m[1]:<8s} {m[2]:<6s}"


def _bound(r: ExploreResult) -> str:
    if r.exhaustive:
        return "exhaustive"
    if r.details.get("bound_exhausted"):
        return "bound exhausted"
    return "bound not exhausted"


def _legacy_problems(m: tuple[str, str, str]) -> set[str]:
    """The legacy problems of the patch on move ``m``: what ``xensched reproduce``
    reports for it (about a second), the reference figure 3's legacy runs are
    judged against."""
    boot, pool, direction = m
    d: Direction = "add" if direction == "add" else "remove"
    t = Transition(boot, pool, d, SwitchProtocol.LEGACY)
    return set(reproduce_transition(t).problems)


def bench_bounded(cfg: ExploreBench) -> dict[str, object]:
    moves = ALL_MOVES if cfg.full else QUICK_MOVES
    print(
        f"  3. {BOUNDED_STRATEGY} <= {DFS_BOUND} preemptions over switch-race (the patch's move, two "
        f"observer pCPUs), {len(moves)} move{'s' if len(moves) != 1 else ''}"
        + ("" if cfg.full else f" of {len(ALL_MOVES)} (--explore-full: all)")
        + f", {cfg.move_cap:g} s cap per move and protocol",
        flush=True,
    )
    rows: list[dict[str, object]] = []
    t0 = time.perf_counter()
    for m in moves:
        fx = _explore(
            switch_race(*m, "fixed"),
            BOUNDED_STRATEGY,
            seconds=cfg.move_cap,
            keep_going=True,
            max_preemptions=DFS_BOUND,
        )
        lg = _explore(
            switch_race(*m, "legacy"),
            BOUNDED_STRATEGY,
            seconds=cfg.move_cap,
            keep_going=True,
            max_preemptions=DFS_BOUND,
        )
        first = lg.failing.index + 1 if lg.failing is not None else None
        # The legacy problems of the patch on this move: what reproduce reports.
        known = _legacy_problems(m)
        missed = sorted(known - lg.kinds)
        print(
            f"    {_move(m)} fixed: {_bound(fx)}, "
            + (f"VIOLATIONS {', '.join(sorted(fx.kinds))}" if fx.kinds else "clean")
            + f", {fx.runs} executions in {fx.seconds:.1f} s; legacy: "
            + (
                f"{', '.join(sorted(lg.kinds))} (first at execution {first})"
                if lg.kinds
                else "none found"
            )
            + f", {_bound(lg)}, {lg.runs} executions in {lg.seconds:.1f} s; "
            + (
                f"MISSED {', '.join(missed)}"
                if missed
                else "every one reproduce reports"
            ),
            flush=True,
        )
        rows.append(
            {
                "boot": m[0],
                "pool": m[1],
                "direction": m[2],
                "fixed": _summary(fx) | {"bound": _bound(fx)},
                "legacy": _summary(lg)
                | {
                    "bound": _bound(lg),
                    "first_failing_run": first,
                    "reproduce_kinds": sorted(known),
                    "missed": missed,
                },
            }
        )
    total = time.perf_counter() - t0
    clean = sum(not r["fixed"]["kinds"] for r in rows)  # type: ignore[index]
    done = sum(r["fixed"]["bound"] != "bound not exhausted" for r in rows)  # type: ignore[index]
    found = sum(not r["legacy"]["missed"] for r in rows)  # type: ignore[index]
    print(
        f"    => fixed: {clean} of {len(rows)} moves clean, bound exhausted in {done}; "
        f"legacy: every problem reproduce reports found in {found} of {len(rows)}; "
        f"{total:.1f} s in all",
        flush=True,
    )
    return {
        "strategy": BOUNDED_STRATEGY,
        "bound": DFS_BOUND,
        "cap_s": cfg.move_cap,
        "full": cfg.full,
        "total_s": total,
        "moves": rows,
    }


# -- 4. DPOR without a bound over the fixed moves -----------------------------------------


def bench_dpor_moves(cfg: ExploreBench) -> dict[str, object]:
    moves = ALL_MOVES if cfg.full else QUICK_DPOR_MOVES
    print(
        f"  4. dpor (no bound) over switch-race, fixed protocol, {len(moves)} move"
        f"{'s' if len(moves) != 1 else ''}"
        + ("" if cfg.full else f" of {len(ALL_MOVES)} (--explore-full: all)")
        + f", {cfg.dpor_cap:g} s cap per move; aim: all {len(ALL_MOVES)} proven in "
        f"{ALL_PROVEN_AIM_S / 60:g} minutes",
        flush=True,
    )
    rows: list[dict[str, object]] = []
    t0 = time.perf_counter()
    for m in moves:
        r = _explore(
            switch_race(*m, "fixed"), "dpor", seconds=cfg.dpor_cap, keep_going=True
        )
        print(
            f"    {_move(m)} "
            + ("proven" if r.exhaustive and not r.kinds else "NOT proven")
            + f": {'exhaustive' if r.exhaustive else 'not exhaustive (' + r.stop_reason + ')'}"
            + (f", VIOLATIONS {', '.join(sorted(r.kinds))}" if r.kinds else "")
            + f", {r.runs} executions in {r.seconds:.1f} s",
            flush=True,
        )
        rows.append({"boot": m[0], "pool": m[1], "direction": m[2]} | _summary(r))
    total = time.perf_counter() - t0
    proven = sum(bool(r["exhaustive"]) and not r["kinds"] for r in rows)
    met = cfg.full and proven == len(ALL_MOVES) and total <= ALL_PROVEN_AIM_S
    print(
        f"    => {proven} of {len(rows)} moves proven in {total:.1f} s"
        + (
            f"; aim {'met' if met else 'NOT met'}"
            if cfg.full
            else " (the aim is judged on all 32: --explore-full)"
        ),
        flush=True,
    )
    return {
        "cap_s": cfg.dpor_cap,
        "full": cfg.full,
        "proven": proven,
        "total_s": total,
        "aim_s": ALL_PROVEN_AIM_S,
        "aim_met": met,
        "moves": rows,
    }


# -- 6. workers ------------------------------------------------------------------------------


def _explore_process(workers: int, cap: float) -> dict[str, object]:
    fd, path = tempfile.mkstemp(prefix=".xensched-bench-", suffix=".json")
    os.close(fd)
    boot, pool, direction = WORKERS_MOVE
    cmd = [
        sys.executable,
        "-m",
        "xensched",
        "explore",
        "--scenario=switch-race",
        f"--boot={boot}",
        f"--pool={pool}",
        f"--direction={direction}",
        "--protocol=fixed",
        "--strategy=dpor",
        "--seed=1",
        "--runs=1000000",
        f"--seconds={cap!r}",
        f"--workers={workers}",
        "--pin",
        "--no-progress",
        "--no-shrink",
        f"--json={path}",
    ]
    try:
        t0 = time.monotonic()
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=cap + 120, check=False
        )
        wall = time.monotonic() - t0
        # 1 and 3: a violation or a deadlock, which the figure then reports.
        if proc.returncode not in (0, 1, 3):
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout}{proc.stderr}")
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    finally:
        os.unlink(path)
    runs = int(data["runs"])
    exploring = float(data["seconds"])
    return {
        "workers": workers,
        "runs": runs,
        "exhaustive": bool(data["exhaustive"]),
        "wall_s": wall,
        "runs_per_s": runs / wall,
        "exploring_s": exploring,
        "kinds": list(data["kinds"]),
    }


def bench_workers(cfg: ExploreBench) -> dict[str, object]:
    print(
        f"  6. runs per second, one exploration (dpor, switch-race {WORKERS_MOVE[0]} -> "
        f"{WORKERS_MOVE[1]} {WORKERS_MOVE[2]}, fixed; cap {cfg.dpor_cap:g} s) with "
        + " and ".join(map(str, WORKERS))
        + " workers: `xensched explore --workers N --pin`, wall time of the whole "
        "command",
        flush=True,
    )
    rows = [_explore_process(n, cfg.dpor_cap) for n in WORKERS]
    for r in rows:
        print(
            f"    {r['workers']} worker{'s' if r['workers'] != 1 else ' '}: {r['runs']} "
            f"runs in {r['wall_s']:.2f} s = {r['runs_per_s']:,.1f} runs/s"
            f" ({'exhaustive' if r['exhaustive'] else 'NOT exhaustive'}"
            + (f", VIOLATIONS {', '.join(r['kinds'])}" if r["kinds"] else "")  # type: ignore[arg-type]
            + f"; the slowest worker explored for {r['exploring_s']:.2f} s of it)",
            flush=True,
        )
    one, most = rows[0], rows[-1]
    speedup = float(most["runs_per_s"]) / float(one["runs_per_s"])  # type: ignore[arg-type]
    # The shards of a tree search may run executions that one search would not: more
    # runs per second is then not a shorter search, which the wall times tell.
    both = bool(one["exhaustive"]) and bool(most["exhaustive"])
    sooner = float(one["wall_s"]) / float(most["wall_s"]) if both else None  # type: ignore[arg-type]
    print(
        f"    => runs/s with {WORKERS[-1]} workers: {speedup:.2f}x; "
        + (
            f"time to exhaust the exploration: {sooner:.2f}x"
            + (
                f" ({most['runs']} executions for the {one['runs']} of one worker)"
                if most["runs"] != one["runs"]
                else ""
            )
            if sooner is not None
            else "time to exhaust it: not measured (capped)"
        ),
        flush=True,
    )
    return {
        "boot": WORKERS_MOVE[0],
        "pool": WORKERS_MOVE[1],
        "direction": WORKERS_MOVE[2],
        "runs": rows,
        "speedup": speedup,
        "exhaustion_speedup": sooner,
    }


def bench_explore(cfg: ExploreBench) -> dict[str, object]:
    print(
        "(e) exploration (controlled mode, one thread between two interaction points; "
        "each exploring process's threads on one CPU, as --pin, unless said): "
        + (
            "full form, all 32 moves"
            if cfg.full
            else "quick form (--explore-full: all 32 moves)"
        ),
        flush=True,
    )
    t0 = time.perf_counter()
    find = bench_find(cfg)
    prove, points = bench_prove(cfg)
    bounded = bench_bounded(cfg)
    dpor = bench_dpor_moves(cfg)
    workers = bench_workers(cfg)
    total = time.perf_counter() - t0
    print(f"    => (e) done in {total:.1f} s", flush=True)
    return {
        "full": cfg.full,
        "find": find,
        "prove": prove,
        "bounded_dfs": bounded,
        "dpor_moves": dpor,
        "points_per_s": points,
        "workers": workers,
        "total_s": total,
    }
