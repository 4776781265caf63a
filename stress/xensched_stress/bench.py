"""``xensched bench``: the stress harness's figures, measured side by side in one run.

Seven parts (``--only a,c`` to pick):

a. the legacy protocol's race (Credit <-> Credit2 pCPU moves): in how many of N seeds
   a stress run finds a violation within 2 s, and the median time to the first one;
b. the fixed protocol: no violation across all 16 boot x pool scheduler pairings, for
   a total stress time split evenly between them;
c. throughput: ``schedule()`` calls per second with every check on, as a ratio against
   a bare retry-on-change acquire/release loop (``pcpu_schedule_lock_irq`` then
   ``pcpu_schedule_unlock_irq``) on a host of the same shape, in the same process;
d. scale: 2, 8, 32 and 128 pCPUs, ops/s and RSS per pCPU (each size in a fresh
   interpreter, so that RSS figures do not inherit the previous run's heap), for the
   default workload and for one without Credit1, whose idle pCPUs trylock every busy
   peer of their pool at each ``schedule()`` (``csched_load_balance`` walks
   ``online & ~prv->idlers``), O(busy pCPUs) per call;
e. exploration (:mod:`xensched_stress.bench_explore`): each strategy's time to the
   legacy round trip's violation, DPOR's proofs of the fixed round trip and of the
   switch-race moves, bounded DFS (reduced by BPOR) over those moves, interaction points per second,
   runs per second with 1 and 2 workers; a few moves unless ``--explore-full``;
f. memory models: ``schedule()`` calls per second under ``sc``, ``tso`` and
   ``relaxed`` (free-running, store buffers draining after seeded delays), in turn on
   hosts of one shape, with each model's ratio to ``sc``; and litmus tests per second
   (the built-in catalog, each test exhaustively under each model);
g. instruments: ``schedule()`` calls per second with no instrument, with lockdep
   (:mod:`xensched.lockdep`) and with the race detector (:mod:`xensched.race_detector`),
   in turn on hosts of one shape, round after round, and each one's ratio to none.

Figures are printed, never asserted: they depend on the machine and the interpreter.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import TYPE_CHECKING

from xensched import SCHEDULERS, Host
from xensched.cli import ExternalCommand
from xensched.drivers.free import free_running
from xensched.host import MAX_CPUS
from xensched.lockdep import Lockdep
from xensched.memory_model import MODELS
from xensched.options import (
    Parser,
    integer,
    probability,
    refusal,
    seconds,
    seed as seed_option,
)
from xensched.outputs import (
    EXIT_NOT_WRITTEN,
    OutputPathError,
    check_output_paths,
    write_json_report,
)
from xensched.race_detector import RaceDetector
from xensched.scenario import build_host
from xensched.sched_if import pcpu_schedule_lock_irq, pcpu_schedule_unlock_irq
from xensched.schedule import schedule
from xensched.seeds import SEED_MAX
from xensched.signals import (
    STOP_SIGNALS,
    RaiseInterrupt,
    quiet_lost_interrupts,
    signal_name,
    stop_signals,
)
from xensched.smp import bind

from .bench_explore import FIND_RUNS, ExploreBench, bench_explore
from .config import PoolSpec, StressConfig
from .process import python_description
from .report import EXIT_OK, EXIT_USAGE
from .runner import run_stress

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence

PARTS = ("a", "b", "c", "d", "e", "f", "g")
RACE_BOUND = 2.0
#: (a) runs free-running threads alone, then with delay injection widening the race
#: windows: without it the free-threaded build misses the 2 s bound in some seeds.
RACE_DELAYS = (0.0, 0.02)
SCALE_SIZES = (2, 8, 32, 128)


def _median(xs: Sequence[float]) -> float | None:
    return statistics.median(xs) if xs else None


def _fmt(x: float | None, unit: str = "s", digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}{unit}"


# -- (a) the legacy race --------------------------------------------------------------


def bench_race(seeds: int, base_seed: int, delay: float) -> dict[str, object]:
    print(
        f"(a) legacy Credit <-> Credit2 moves: {seeds} seeds, each run at most "
        f"{RACE_BOUND:g}s (4 pCPUs, Pool-0=credit[0,1], p1=credit2[2,3]); "
        + (
            "free-running threads, no delay injection"
            if delay == 0
            else f"delay injection P={delay:g} (<= 100us) widens the race windows"
        )
    )
    times: list[float] = []
    kinds: dict[str, int] = {}
    rows = []
    for i in range(seeds):
        cfg = StressConfig(
            cpus=4,
            boot="credit",
            pools=(PoolSpec("p1", "credit2", (2, 3)),),
            protocol="legacy",
            duration=RACE_BOUND,
            seed=base_seed + i,
            delay_injection=delay,
        )
        r = run_stress(cfg)
        t = r.first_violation_after
        found = bool(r.violations) and t is not None and t <= RACE_BOUND
        if found and t is not None:
            times.append(t)
            k = r.violations[0].kind.value
            kinds[k] = kinds.get(k, 0) + 1
        where = (
            f"{r.violations[0].kind.value} in {r.violations[0].where}()"
            if r.violations
            else "none"
        )
        print(
            f"    seed {cfg.seed:>6d}: {'found' if found else 'NOT found':9s} "
            f"after {_fmt(t)}  ({where}; {r.switches} switches, "
            f"{r.total_ops} schedule())",
            flush=True,
        )
        rows.append({"seed": cfg.seed, "found": found, "first_violation_after": t})
    med = _median(times)
    print(
        f"    => race found in {len(times)} of {seeds} seeds within {RACE_BOUND:g}s "
        f"({'no delay injection' if delay == 0 else f'delay injection P={delay:g}'}); "
        f"median time to first violation {_fmt(med)} "
        f"(min {_fmt(min(times) if times else None)}, "
        f"max {_fmt(max(times) if times else None)}); first kinds: "
        + (", ".join(f"{k} {n}" for k, n in kinds.items()) or "-")
    )
    return {
        "seeds": seeds,
        "found": len(times),
        "median_s": med,
        "delay_injection": delay,
        "first_kinds": kinds,
        "runs": rows,
    }


# -- (b) the fixed protocol, every pairing ------------------------------------------------


def bench_fixed(total: float, base_seed: int, cpus: int) -> dict[str, object]:
    pairs = list(itertools.product(SCHEDULERS, SCHEDULERS))
    each = total / len(pairs)
    upper = tuple(range(cpus // 2, cpus))
    print(
        f"(b) fixed protocol: {len(pairs)} boot x pool pairings, {each:.2f}s each "
        f"({total:g}s in total), {cpus} pCPUs, pool p1 = pCPUs "
        f"{','.join(map(str, upper))}"
    )
    rows = []
    bad = switches = 0
    for i, (boot, pool) in enumerate(pairs):
        cfg = StressConfig(
            cpus=cpus,
            boot=boot,
            pools=(PoolSpec("p1", pool, upper),),
            protocol="fixed",
            duration=each,
            seed=base_seed + i,
            keep_going=True,
        )
        r = run_stress(cfg)
        n = r.violations_total
        bad += n
        switches += r.switches
        kinds = ", ".join(f"{k} {c}" for k, c in r.violations_by_kind.items())
        print(
            f"    {boot:>8s} / {pool:<8s}: {n} violations{' (' + kinds + ')' if n else ''}"
            f"{'; deadlock' if r.deadlock else ''}; {r.total_ops} schedule() "
            f"({r.ops_per_s:,.0f}/s), {r.switches} pCPU switches, "
            f"{r.domain_moves} domain moves, seed {cfg.seed}",
            flush=True,
        )
        if n or r.deadlock:
            print("      rerun: " + r.rerun)
        rows.append(
            {
                "boot": boot,
                "pool": pool,
                "violations": n,
                "deadlock": r.deadlock is not None,
                "ops": r.total_ops,
                "switches": r.switches,
                "domain_moves": r.domain_moves,
                "seed": cfg.seed,
            }
        )
    print(
        f"    => {bad} violations across {len(pairs)} pairings in {total:g}s of "
        f"stress ({switches} pCPU switches in all)"
    )
    return {"total_s": total, "violations": bad, "pairings": rows}


# -- (c) throughput -----------------------------------------------------------------------


def _shaped_host(cfg: StressConfig) -> Host:
    """The host of the stress run of ``cfg``, from the one builder the runner uses."""
    return build_host(cfg.to_scenario(), trace_all=False)  # as the runner's


#: Bound of the start barrier of a loop's threads, and of joining them at its end.
_LOOP_START_TIMEOUT = 30.0
_LOOP_JOIN_TIMEOUT = 30.0


def _loop_rate(
    h: Host,
    step: Callable[[Host, int], None],
    duration: float,
    interval: float,
    threads_wanted: int | None = None,
    *,
    problems: list[str] | None = None,
) -> float:
    """Calls of ``step`` per second, one thread per pCPU (or on the first
    ``threads_wanted`` pCPUs), all for ``duration``.

    Every wait is bounded. A thread whose ``step`` raised (its count is what it did
    until then), a start barrier that broke or ran out, and threads still alive
    after the bounded joins are printed as a ``WARNING:`` line and added to
    ``problems`` when given."""
    nthreads = h.nr_cpus if threads_wanted is None else threads_wanted
    stop = threading.Event()
    counts = [0] * nthreads
    errors: list[str] = []
    barrier = threading.Barrier(nthreads + 1)

    def body(n: int) -> None:
        c = 0
        try:
            with bind(h.cpu_contexts[n]):
                barrier.wait(_LOOP_START_TIMEOUT)
                while not stop.is_set():
                    step(h, n)
                    c += 1
        except threading.BrokenBarrierError:
            pass  # the main thread reports the start
        except Exception as e:
            errors.append(f"pcpu{n}: {type(e).__name__}: {e}")  # list.append: atomic
        finally:
            counts[n] = c

    threads = [
        threading.Thread(target=body, args=(n,), name=f"pcpu{n}", daemon=True)
        for n in range(nthreads)
    ]
    found: list[str] = []
    elapsed = 0.0
    with free_running(interval):
        try:
            for t in threads:
                t.start()
            try:
                barrier.wait(_LOOP_START_TIMEOUT)
            except threading.BrokenBarrierError:
                found.append(
                    f"the threads did not start within {_LOOP_START_TIMEOUT:g}s"
                )
            else:
                t0 = time.monotonic()
                time.sleep(duration)
                elapsed = time.monotonic() - t0
        finally:
            stop.set()
            barrier.abort()
            deadline = time.monotonic() + _LOOP_JOIN_TIMEOUT
            for t in threads:
                if t.ident is not None:
                    t.join(max(0.0, deadline - time.monotonic()))
    found += errors
    stragglers = [t.name for t in threads if t.is_alive()]
    if stragglers:
        found.append(f"threads still alive: {', '.join(stragglers)}")
    for problem in found:
        print(f"    WARNING: {step.__name__} loop: {problem}", flush=True)
    if problems is not None:
        problems.extend(found)
    return sum(counts) / elapsed if elapsed > 0 else 0.0


def _bare(h: Host, n: int) -> None:
    lock = pcpu_schedule_lock_irq(h, n)
    pcpu_schedule_unlock_irq(h, lock, n)


def _raw_schedule(h: Host, n: int) -> None:
    schedule(h)


def bench_throughput(duration: float, cpus: int, rounds: int = 2) -> dict[str, object]:
    cfg = StressConfig(cpus=cpus, duration=duration / rounds, seed=1)
    print(
        f"(c) throughput: {cpus} pCPU threads, switch interval "
        f"{cfg.gil_switch_interval:g}s, default stress shape (credit + p1=credit2, "
        f"{cfg.domains} domains x {cfg.vcpus} vCPUs); the figures are measured in "
        f"turn, {rounds} rounds of {duration / rounds:g}s each, best round kept (the "
        "machine may be shared)"
    )
    # (step, threads) -> best rate over the rounds; None threads: one per pCPU.
    loops: dict[tuple[str, int | None], float] = {}
    steps = {"bare": _bare, "schedule": _raw_schedule}
    full = 0.0
    violations = 0
    problems: list[str] = []
    for _ in range(rounds):
        # One thread alone first (no GIL hand-offs, no lock contention), then one per
        # pCPU; each figure on a fresh host of the same shape.
        for threads in (1, None):
            for name, step in steps.items():
                rate = _loop_rate(
                    _shaped_host(cfg),
                    step,
                    duration / rounds,
                    cfg.gil_switch_interval,
                    threads,
                    problems=problems,
                )
                loops[name, threads] = max(loops.get((name, threads), 0.0), rate)
        r = run_stress(cfg)
        violations += r.violations_total
        full = max(full, r.ops_per_s)

    bare1, raw1 = loops["bare", 1], loops["schedule", 1]
    bare, raw = loops["bare", None], loops["schedule", None]

    def over(a: float, b: float) -> float:
        return a / b if b > 0 else 0.0  # 0: a loop that could not run (a problem)

    def verdict(ratio: float) -> str:
        return f"ratio {ratio:.3f}; target >= 0.25: {'met' if ratio >= 0.25 else 'NOT met'}"

    print("    one thread on pCPU 0:")
    print(f"      bare pcpu_schedule_lock_irq/unlock loop: {bare1:>10,.0f}/s")
    print(
        f"      schedule() loop, every check on:         {raw1:>10,.0f}/s  "
        f"({verdict(over(raw1, bare1))})"
    )
    print(f"    {cpus} threads, one per pCPU:")
    print(f"      bare pcpu_schedule_lock_irq/unlock loop: {bare:>10,.0f}/s")
    print(
        f"      schedule() loop, every check on:         {raw:>10,.0f}/s  "
        f"({verdict(over(raw, bare))})"
    )
    print(
        f"      full stress run (+ vCPU traffic, moves): {full:>10,.0f}/s  "
        f"({verdict(over(full, bare))})"
        + ("" if not violations else f"  [{violations} violations!]")
    )
    return {
        "single_bare_per_s": bare1,
        "single_schedule_loop_per_s": raw1,
        "ratio_single": over(raw1, bare1),
        "bare_per_s": bare,
        "schedule_loop_per_s": raw,
        "stress_per_s": full,
        "ratio_schedule_loop": over(raw, bare),
        "ratio_stress": over(full, bare),
        # A step that raised, a start that timed out, threads left: the figures
        # above are then not to be trusted.
        "problems": problems,
    }


# -- (f) memory models ------------------------------------------------------------------------


def _litmus_rate(budget: float) -> tuple[int, float] | None:
    """(tests run, seconds) for the built-in litmus catalog under every model, or
    None when this build has no litmus runner."""
    try:
        from xensched.litmus import run_catalog  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    t0 = time.perf_counter()
    n = 0
    while True:
        n += len(run_catalog())
        if time.perf_counter() - t0 >= budget:
            break
    return n, time.perf_counter() - t0


def bench_memory_models(
    duration: float, cpus: int, rounds: int = 2
) -> dict[str, object]:
    cfg = StressConfig(cpus=cpus, duration=duration / rounds, seed=1)
    print(
        f"(f) memory models: schedule() loop on {cpus} pCPU threads, default stress "
        f"shape, under each model in turn, {rounds} rounds of {duration / rounds:g}s, "
        "best round kept"
    )
    rates: dict[str, float] = {}
    drains: dict[str, int] = {}
    for _ in range(rounds):
        for model in MODELS:
            h = build_host(
                cfg.to_scenario().replace(memory_model=model),
                trace_all=False,
                memory_seed=1,
            )
            rate = _loop_rate(
                h, _raw_schedule, duration / rounds, cfg.gil_switch_interval
            )
            rates[model] = max(rates.get(model, 0.0), rate)
            mem = h.bus.memory
            drains[model] = getattr(mem, "drains", 0)
    sc = rates["sc"]
    for model in MODELS:
        extra = "" if model == "sc" else f"  (ratio to sc {rates[model] / sc:.3f})"
        print(f"    {model:8s} schedule() loop: {rates[model]:>10,.0f}/s{extra}")
    out: dict[str, object] = {
        "schedule_per_s": rates,
        "ratio_to_sc": {m: rates[m] / sc for m in MODELS},
    }
    lit = _litmus_rate(duration)
    if lit is None:
        print("    litmus: no runner in this build")
    else:
        n, secs = lit
        print(
            f"    litmus catalog, exhaustive under each model: {n / secs:,.1f} "
            f"tests/s ({n} in {secs:.1f}s)"
        )
        out["litmus_per_s"] = n / secs
    return out


# -- (g) instruments -------------------------------------------------------------------------


def _cpu_per_call(h: Host, calls: int) -> float:
    """Seconds of this thread's CPU time per ``schedule()`` call on pCPU 0, alone:
    a figure that other processes on the machine do not inflate."""
    with bind(h.cpu_contexts[0]):
        for _ in range(calls // 10):  # warm the caches and the graph
            schedule(h)
        t0 = time.thread_time()
        for _ in range(calls):
            schedule(h)
        return (time.thread_time() - t0) / calls


def _instrument(name: str) -> Lockdep | RaceDetector | None:
    if name == "lockdep":
        return Lockdep()
    if name == "race_detector":
        return RaceDetector()
    return None


def bench_instruments(duration: float, cpus: int, rounds: int = 2) -> dict[str, object]:
    cfg = StressConfig(cpus=cpus, duration=duration / rounds, seed=1)
    print(
        f"(g) instruments: schedule() loop on {cpus} pCPU threads, default stress "
        "shape, no instrument, lockdep, the race detector in turn, "
        f"{rounds} rounds of {duration / rounds:g}s, best round kept; then the CPU "
        "time of one schedule() call on one thread, each in turn, 5 rounds, least kept"
    )
    rates: dict[str, float] = {}
    cpu: dict[str, float] = {}
    checked = 0
    accesses = 0
    names = ("off", "lockdep", "race_detector")
    for _ in range(rounds):
        for name in names:
            h = _shaped_host(cfg)
            inst = _instrument(name)
            if inst is not None:
                h.bus.add_instrument(inst)
            rate = _loop_rate(
                h, _raw_schedule, duration / rounds, cfg.gil_switch_interval
            )
            rates[name] = max(rates.get(name, 0.0), rate)
            if isinstance(inst, Lockdep):
                checked = max(checked, inst.acquisitions)
            elif isinstance(inst, RaceDetector):
                accesses = max(accesses, inst.accesses)
    calls = max(200, int(min(rates.values()) * duration / 40))
    with free_running(cfg.gil_switch_interval):
        for _ in range(5):
            for name in names:
                h = _shaped_host(cfg)
                inst = _instrument(name)
                if inst is not None:
                    h.bus.add_instrument(inst)
                c = _cpu_per_call(h, calls)
                cpu[name] = min(cpu.get(name, c), c)
    ratio = rates["lockdep"] / rates["off"]
    cpu_ratio = cpu["off"] / cpu["lockdep"]
    race_ratio = rates["race_detector"] / rates["off"]
    race_cpu_ratio = cpu["off"] / cpu["race_detector"]
    print(f"    lockdep off schedule() loop: {rates['off']:>10,.0f}/s")
    print(
        f"    lockdep on  schedule() loop: {rates['lockdep']:>10,.0f}/s  (ratio to "
        f"off {ratio:.3f}; {checked:,} acquisitions checked in one round)"
    )
    print(
        f"    race detector on schedule() loop: {rates['race_detector']:>10,.0f}/s  "
        f"(ratio to off {race_ratio:.3f}; {accesses:,} accesses checked in one round)"
    )
    print(
        f"    one schedule() call, CPU time: off {cpu['off'] * 1e6:.1f} us, on "
        f"{cpu['lockdep'] * 1e6:.1f} us  (throughput ratio {cpu_ratio:.3f}, cost "
        f"{100 * (1 - cpu_ratio):.1f}%)"
    )
    print(
        f"    one schedule() call, CPU time: off {cpu['off'] * 1e6:.1f} us, race "
        f"detector on {cpu['race_detector'] * 1e6:.1f} us  (throughput ratio "
        f"{race_cpu_ratio:.3f}, cost {100 * (1 - race_cpu_ratio):.1f}%)"
    )
    return {
        "schedule_per_s": {
            "lockdep_off": rates["off"],
            "lockdep_on": rates["lockdep"],
            "race_detector_on": rates["race_detector"],
        },
        "lockdep_ratio": ratio,
        "lockdep_acquisitions": checked,
        "cpu_us_per_schedule": {
            "lockdep_off": cpu["off"] * 1e6,
            "lockdep_on": cpu["lockdep"] * 1e6,
            "race_detector_on": cpu["race_detector"] * 1e6,
        },
        "lockdep_cpu_ratio": cpu_ratio,
        "race_detector_ratio": race_ratio,
        "race_detector_accesses": accesses,
        "race_detector_cpu_ratio": race_cpu_ratio,
    }


# -- (d) scale ------------------------------------------------------------------------------


def _scale_one(
    cpus: int, duration: float, seed: int, extra: Sequence[str] = ()
) -> dict[str, object]:
    fd, path = tempfile.mkstemp(prefix=".xensched-bench-", suffix=".json")
    os.close(fd)
    try:
        cmd = [
            sys.executable,
            "-m",
            "xensched_stress",
            "--cpus",
            str(cpus),
            "--duration",
            repr(duration),
            "--seed",
            str(seed),
            "--no-progress",
            "--watchdog",
            "30",
            "--json",
            path,
            *extra,
        ]
        t0 = time.monotonic()
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=300, check=False
        )
        wall = time.monotonic() - t0
        if proc.returncode not in (0, 1, 3):
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr}")
        with open(path, encoding="utf-8") as f:
            data: dict[str, object] = json.load(f)
        data["wall_s"] = wall
        return data
    finally:
        os.unlink(path)


#: (d) measures the default workload, whose idle Credit1 pCPUs scan every busy peer
#: (csched_load_balance, O(busy pCPUs) per schedule()), and one without Credit1.
SCALE_WORKLOADS: tuple[tuple[str, str, str], ...] = (
    ("default (Pool-0 credit, p1 credit2)", "credit", "credit2"),
    ("no Credit1 (Pool-0 credit2, p1 rtds)", "credit2", "rtds"),
)


def bench_scale(duration: float, sizes: Sequence[int]) -> dict[str, object]:
    print(
        f"(d) scale: {', '.join(map(str, sizes))} pCPUs, {duration:g}s each, each in a "
        "fresh interpreter (fixed protocol, p1 = the upper half of the pCPUs); RSS "
        "is the peak of the whole process"
    )
    out: dict[str, object] = {}
    for title, boot, pool in SCALE_WORKLOADS:
        print(f"  {title}:")
        rows = []
        base_rss: int | None = None
        base_cpus = 0
        for n in sizes:
            upper = ",".join(map(str, range(n // 2, n)))
            d = _scale_one(
                n,
                duration,
                seed=1,
                extra=["--boot", boot, "--pool", f"p1:{pool}:{upper}"],
            )
            sched = d["schedule"]
            proc = d["process"]
            assert isinstance(sched, dict)
            assert isinstance(proc, dict)
            per_s = float(sched["per_s"])
            rss = proc.get("peak_rss_bytes") or proc.get("rss_bytes")
            rss_i = int(rss) if rss is not None else None
            marginal = None
            if base_rss is None:
                base_rss, base_cpus = rss_i, n
            elif rss_i is not None:
                marginal = (rss_i - base_rss) / (n - base_cpus)
            per_cpu = rss_i / n if rss_i is not None else None
            viol = d["violations"]
            print(
                f"    {n:>4d} pCPUs: {per_s:>10,.0f} schedule()/s ({per_s / n:>8,.0f} "
                f"per pCPU), RSS {_mib(rss_i)} = {_kib(per_cpu)} per pCPU"
                + (
                    # Signed: the heap may shrink between runs ("-41", not "+-41").
                    f", {marginal / 1024:+.0f} KiB per extra pCPU"
                    if marginal is not None
                    else ""
                )
                + f"; exit {d['exit_code']}"
                + (
                    f" ({len(viol)} violations)"
                    if isinstance(viol, list) and viol
                    else ""
                ),
                flush=True,
            )
            rows.append(
                {
                    "cpus": n,
                    "per_s": per_s,
                    "rss_bytes": rss_i,
                    "rss_per_cpu": per_cpu,
                    "marginal_rss_per_cpu": marginal,
                    "exit_code": d["exit_code"],
                }
            )
        out[f"{boot}+{pool}"] = rows
    return out


def _mib(n: float | None) -> str:
    return "-" if n is None else f"{n / (1 << 20):.1f} MiB"


def _kib(n: float | None) -> str:
    return "-" if n is None else f"{n / 1024:.0f} KiB"


# -- the command ------------------------------------------------------------------------------


#: Seeds of part (a): each takes up to RACE_BOUND seconds per --race-delay, so 1000
#: is over an hour already; more is a different experiment.
MAX_SEEDS = 1000


def _parts(text: str) -> tuple[str, ...]:
    parts = tuple(dict.fromkeys(x.strip() for x in text.split(",") if x.strip()))
    choose = ", ".join(PARTS)
    if not parts:
        raise refusal(repr(text), f"must name at least one part, of {choose}")
    unknown = [x for x in parts if x not in PARTS]
    if unknown:
        raise refusal(repr(text), f"unknown part {unknown[0]!r}; choose from {choose}")
    return parts


def build_parser(prog: str = "xensched bench") -> argparse.ArgumentParser:
    p = Parser(
        prog=prog,
        description=__doc__.split("\n\n", 1)[0] if __doc__ else None,
        epilog=(
            "Parts: (a) legacy race found per seed and median time to it, without "
            "and with delay injection; (b) fixed "
            "protocol over the 16 pairings; (c) schedule() throughput against a bare "
            "acquire/release loop; (d) ops/s and RSS at 2, 8, 32 and 128 pCPUs; "
            "(e) exploration: each strategy's median time and runs to the legacy "
            "round trip's violation, DPOR proving the fixed round trip (and "
            "unreduced DFS within a budget), DFS within 2 preemptions and DPOR "
            "over the switch-race moves (default: a few moves, about 3 minutes for "
            "(e) in all on 2 cores; --explore-full: all 32 moves, up to 160 minutes at the "
            "default caps), interaction points/s, runs/s with 1 and 2 workers; "
            "(f) schedule() throughput under the sc, tso and relaxed memory models "
            "and litmus tests per second; (g) schedule() throughput with no "
            "instrument, lockdep, the race detector. "
            "Exit status: 0 done, 2 usage error (a --json FILE that cannot be "
            "written is refused before any part runs), 4 done but --json FILE could "
            "not be written at the end (the figures are printed first), 128 + the "
            "signal on Ctrl-C, SIGTERM or SIGHUP (130, 143, 129: the parts done are "
            'kept and written, with "interrupted": true; the part running is not).'
        ),
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="a short smoke run: 5 seeds, 8 s of fixed stress, 1 s figures; (e) "
        "with 1 s caps",
    )
    p.add_argument(
        "--only",
        type=_parts,
        default=PARTS,
        metavar="PARTS",
        help="comma-separated parts to run, of a,b,c,d,e,f,g (default: all)",
    )
    p.add_argument(
        "--seeds",
        type=integer(1, MAX_SEEDS),
        metavar="N",
        help=f"seeds for (a) and for the randomised strategies of (e), 1 to "
        f"{MAX_SEEDS} (default: 20; quick: 5)",
    )
    p.add_argument(
        "--seed",
        type=seed_option,
        default=1,
        metavar="S",
        help="first seed; the parts use S, S+1, ..., which must stay below 2**32 "
        "(default: 1)",
    )
    p.add_argument(
        "--race-delay",
        type=probability,
        action="append",
        metavar="P",
        help="delay injection probability for (a), 0 for none; repeatable, each is "
        "measured on the same seeds; in [0, 1] (default: 0 and 0.02, side by side)",
    )
    p.add_argument(
        "--fixed-total",
        type=seconds(),
        metavar="S",
        help="seconds of fixed-protocol stress in (b), split over the 16 pairings "
        "in (0, 86400] (default: 60; quick: 8)",
    )
    p.add_argument(
        "--figure-duration",
        type=seconds(),
        metavar="S",
        help="seconds per throughput and scale figure in (c) and (d), in (0, 86400] "
        "(default: 3; quick: 1)",
    )
    p.add_argument(
        "--cpus",
        type=integer(2, MAX_CPUS),
        default=4,
        metavar="N",
        help=f"pCPUs for (b) and (c), 2 to {MAX_CPUS} (default: %(default)s)",
    )
    e = p.add_argument_group(
        "exploration (e)",
        'Caps in seconds, each in (0, 86400]; a capped figure says so ("not found '
        'in", "bound not exhausted", "not exhaustive").',
    )
    e.add_argument(
        "--explore-full",
        action="store_true",
        help="figures 3 and 4 over all 32 switch-race moves (4 x 4 boot x pool "
        "schedulers, add and remove) instead of a few; up to 32 x (2 x "
        "--move-cap + --dpor-cap), up to 160 minutes at the defaults",
    )
    e.add_argument(
        "--find-cap",
        type=seconds(),
        metavar="S",
        help=f"(e) 1: cap per seed and strategy, beside {FIND_RUNS} runs "
        "(default: 5; quick: 1)",
    )
    e.add_argument(
        "--dfs-budget",
        type=seconds(),
        metavar="S",
        help="(e) 2: unreduced DFS on the fixed round trip (default: 10; quick: 1)",
    )
    e.add_argument(
        "--move-cap",
        type=seconds(),
        metavar="S",
        help="(e) 3: cap per switch-race move and protocol of the bounded search "
        "(default: 120; quick: 1)",
    )
    e.add_argument(
        "--dpor-cap",
        type=seconds(),
        metavar="S",
        help="(e) 2, 4 and 6: cap per DPOR exploration (default: 60; quick: 5)",
    )
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    return p


def _explore_caps(args: argparse.Namespace, seeds: int) -> ExploreBench:
    def cap(given: float | None, default: float, quick: float) -> float:
        return given if given is not None else (quick if args.quick else default)

    return ExploreBench(
        seeds=seeds,
        base_seed=args.seed,
        find_cap=cap(args.find_cap, 5.0, 1.0),
        dfs_budget=cap(args.dfs_budget, 10.0, 1.0),
        move_cap=cap(args.move_cap, 120.0, 1.0),
        dpor_cap=cap(args.dpor_cap, 60.0, 5.0),
        full=args.explore_full,
    )


def main(argv: Sequence[str] | None = None, *, prog: str = "xensched bench") -> int:
    """Run the benchmark; prints the figures. Exit 0, 2 on a usage error, 4 when
    ``--json FILE`` could not be written at the end, 128 + the signal when
    interrupted (the parts done written)."""
    parser = build_parser(prog)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    parts = args.only
    delays = tuple(args.race_delay or RACE_DELAYS)
    seeds = args.seeds if args.seeds is not None else (5 if args.quick else 20)
    # (a) uses seed .. seed+seeds-1, (b) one seed per pairing.
    last = args.seed + max(seeds, len(SCHEDULERS) ** 2) - 1
    if last > SEED_MAX:
        print(
            f"{prog}: error: --seed {args.seed}: the parts would use seeds up to "
            f"{last}; they must stay in 0..{SEED_MAX}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        check_output_paths(("--json", args.json))
    except OutputPathError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    total = (
        args.fixed_total
        if args.fixed_total is not None
        else (8.0 if args.quick else 60.0)
    )
    fig = (
        args.figure_duration
        if args.figure_duration is not None
        else (1.0 if args.quick else 3.0)
    )
    python, ncpus = python_description(), os.cpu_count()
    print(f"xensched bench: {python}, {ncpus} CPUs", flush=True)
    t0 = time.monotonic()
    out: dict[str, object] = {"python": python, "cpus": ncpus}
    steps: list[tuple[str, str, Callable[[], object]]] = [
        ("a", "race", lambda: [bench_race(seeds, args.seed, p) for p in delays]),
        ("b", "fixed", lambda: bench_fixed(total, args.seed, args.cpus)),
        ("c", "throughput", lambda: bench_throughput(fig, args.cpus)),
        ("d", "scale", lambda: bench_scale(fig, SCALE_SIZES)),
        ("e", "explore", lambda: bench_explore(_explore_caps(args, seeds))),
        ("f", "memory_models", lambda: bench_memory_models(fig, args.cpus)),
        ("g", "instruments", lambda: bench_instruments(fig, args.cpus)),
    ]
    # Ctrl-C, SIGTERM, SIGHUP: the parts done are kept, printed and written; a part
    # cut short is not (a stress run inside it may have taken the interrupt as its
    # end, and its figures would be short). A second signal is ignored.
    stop = RaiseInterrupt()
    with stop_signals(stop, (signal.SIGINT, *STOP_SIGNALS)), quiet_lost_interrupts():
        for part, key, run in steps:
            if part not in parts:
                continue
            try:
                with stop.armed():
                    value = run()
            except KeyboardInterrupt:
                break
            if stop.signum is not None:
                break
            out[key] = value
        out["wall_s"] = time.monotonic() - t0
        code = EXIT_OK
        if stop.signum is not None:
            out["interrupted"] = True
            by = (
                f"{signal_name(stop.signum)} received: "
                if stop.signum != signal.SIGINT
                else ""
            )
            print(
                f"{by}interrupted after {out['wall_s']:.1f}s: the parts done are "
                "kept, the one running is not",
                file=sys.stderr,
                flush=True,
            )
            code = 128 + stop.signum
        else:
            print(f"bench done in {out['wall_s']:.1f}s", flush=True)
        if args.json is not None:
            failed = write_json_report("--json", args.json, out)
            if failed is not None:
                print(f"{prog}: error: {failed}", file=sys.stderr)
                return code or EXIT_NOT_WRITTEN
    return code


if __name__ == "__main__":
    raise SystemExit(main(prog="python -m xensched_stress.bench"))


#: ``xensched bench``, found by ``xensched`` through its ``xensched.commands`` group.
COMMAND = ExternalCommand(
    summary="print the harness's performance figures",
    main=lambda argv, prog: main(argv, prog=prog),
)
