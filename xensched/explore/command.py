"""``xensched explore`` and ``xensched replay``: the explorer on the command line.

Mirrors nothing in Xen. ``explore`` builds a scenario from the options of ``xensched
stress`` (or a named built-in: ``round-trip``, ``switch-race``, ``patch-move``...),
bounds its programs so that every controlled run ends, and explores it with a strategy.
At the first violation (or, with ``--keep-going``, the first of each kind) it shrinks
the failing execution, prints it as a per-CPU story, writes a replay file and prints the
one-line command that replays it. ``replay FILE`` runs the recorded schedule again,
step by step, checking that it still fits the code.

Exit codes, as ``xensched stress``: 0 no violation, 1 violations, 2 usage error (a
malformed replay file, or one that no longer fits the code: it says at which step), 3
deadlock, 4 a report file could not be written at the end, 128 + the signal when
interrupted (130 for Ctrl-C).

Left out: resuming a search. An interrupted exploration reports what it ran; run
again, it starts from the beginning.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import multiprocessing
import os
import queue
import shlex
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import xensched
from xensched.drivers.workers import one_cpu
from xensched.errors import ConfigError, XenschedError
from xensched.explore import STRATEGIES, make_strategy
from xensched.explore.engine import (
    DEFAULT_MAX_STEPS,
    MAX_STEPS_RANGE,
    Explorer,
    ExploreResult,
    ScenarioTarget,
    share_of_runs,
)
from xensched.explore.replay import (
    Replay,
    ReplayDivergedError,
    ReplaySchedule,
    load_replay,
)
from xensched.explore.shrink import Shrunk, preemptions, shrink
from xensched.explore.story import record, render_story, timeline_events
from xensched.instruments import (
    LockdepSummary,
    RaceSummary,
    races_of,
    summary_of,
    with_instruments,
)
from xensched.options import (
    add_lockdep_option,
    add_memory_model_option,
    add_mutant_option,
    add_progress_option,
    add_race_detector_option,
    integer,
    mutant_protocol,
    mutant_scenario,
    probability,
    seconds,
    seed as seed_option,
    topology,
)
from xensched.outputs import (
    EXIT_NOT_WRITTEN,
    OutputPathError,
    check_output_paths,
    write_json_report,
)
from xensched.processes import END_GRACE, end_processes
from xensched.report import render_violation
from xensched.scenario import (
    BUILTIN,
    PoolSpec,
    builtin,
    builtin_parameters,
    override_scenario,
    parameters_line,
    scenario_from_options,
)
from xensched.schedulers import SCHEDULERS
from xensched.seeds import resolve_base_seed
from xensched.signals import (
    STOP_SIGNALS,
    RaiseInterrupt,
    quiet_lost_interrupts,
    signal_name,
    stop_signals,
)
from xensched.violation import ViolationKind

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from xensched.explore.engine import Execution
    from xensched.explore.story import Recorder
    from xensched.options import Parser
    from xensched.scenario import Scenario

__all__ = ["add_explore_parser", "add_replay_parser"]

EXIT_OK = 0
EXIT_VIOLATIONS = 1
EXIT_USAGE = 2
EXIT_DEADLOCK = 3
#: Bounds given to a scenario's unbounded programs (pCPU loops, random toolstacks).
DEFAULT_SCHEDULES = 3
DEFAULT_MOVES = 2
DEFAULT_RUNS = 10_000
DEFAULT_DEPTH = 3
MAX_WORKERS = 64


def _pool(text: str) -> str:
    """A scheduler name (a built-in's ``pool`` parameter) or NAME:SCHED[:CPUS]."""
    if text in SCHEDULERS:
        return text
    try:
        PoolSpec.parse(text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _outputs(p: argparse.ArgumentParser, *, explore: bool) -> None:
    out = p.add_argument_group("output")
    out.add_argument(
        "--json",
        metavar="FILE",
        help='write the result to FILE: {"violations": [...] as in xensched stress, '
        '"runs", "distinct", "points_per_second", "exhaustive", ...} (written even '
        "when interrupted)"
        if explore
        else 'write the result to FILE: {"reproduced": true|false|null, '
        '"violations": [...] as in xensched stress, ...} (written even when '
        "interrupted)",
    )
    if explore:
        out.add_argument(
            "--replay-out",
            metavar="FILE",
            help="where to write the replay file of the failing execution (default: "
            "xensched-replay-SCENARIO-SEED.json in the current directory; checked "
            "before the search either way)",
        )
        out.add_argument(
            "--no-shrink",
            action="store_true",
            help="keep the failing execution as found (default: shrink it first)",
        )
    out.add_argument(
        "--timeline",
        metavar="FILE",
        help=(
            "draw the (shrunk) failing execution"
            if explore
            else "draw the execution, when it shows a violation"
        )
        + ": the suffix picks the format, as for xensched stress: .svg a picture, "
        ".html a page holding it, anything else (FILE.json) Chrome's trace-event "
        "JSON (Perfetto, chrome://tracing)",
    )
    if not explore:
        return  # one execution: nothing to show progress of
    add_progress_option(out)


def add_explore_parser(sub: argparse._SubParsersAction[Parser]) -> None:
    p = sub.add_parser(
        "explore",
        help="explore the interleavings of a scenario: random, PCT, DFS, DPOR",
        description=(
            "Run a scenario again and again under the controlled driver (real "
            "threads, real locks, one thread between two interaction points), a "
            "strategy choosing who runs at every step, until a violation, --runs, "
            "--seconds, or the strategy has run every execution it covers "
            "(exhaustive: dfs without a bound cut, dpor). The failing execution is "
            "shrunk (unless --no-shrink), printed as a per-CPU story and written as "
            "a replay file, with the command that replays it. The seed is printed "
            "first."
        ),
        epilog=(
            "exit status: 0 no violation, 1 violations, 2 usage error, 3 deadlock, "
            "4 a report file could not be written, 128 + signal when interrupted. "
            "Strategies: "
            + "; ".join(f"{k}: {v}" for k, v in STRATEGIES.items())
            + ". Scenarios: "
            + ", ".join(BUILTIN)
            + " (see `xensched scenarios`)."
        ),
    )
    sc = p.add_argument_group(
        "scenario",
        "As for xensched stress: a built-in takes the options it has parameters for "
        f"({parameters_line(('boot', 'pool', 'direction'), '--')}; --boot and --pool "
        "SCHED pick the two schedulers of a move); "
        "other options override fields. Unbounded programs get --schedules and --moves. --mutant "
        "runs a mutant of the fix on the scenario: its protocol (an explicit "
        "--protocol must be the same) and its edits; the replay file carries both.",
    )
    sc.add_argument(
        "--scenario",
        metavar="NAME|FILE",
        default="round-trip",
        help="a built-in name, a JSON file or inline JSON (default: round-trip)",
    )
    sc.add_argument("--cpus", type=integer(1, 256), metavar="N", help="pCPUs")
    sc.add_argument("--topology", type=topology, metavar="SxC", help="e.g. 2x4")
    sc.add_argument("--boot", choices=list(SCHEDULERS), help="boot scheduler")
    sc.add_argument(
        "--pool",
        type=_pool,
        action="append",
        metavar="SCHED|NAME:SCHED[:CPUS]",
        help="a scheduler name (the built-in's other scheduler), or a pool spec as "
        "for stress (repeatable)",
    )
    sc.add_argument(
        "--protocol",
        metavar="SPEC",
        help="see `xensched protocols` (default: the scenario's, or --mutant's)",
    )
    add_mutant_option(sc)
    add_memory_model_option(
        sc, default=None, default_text="the scenario's own, sc for the built-ins"
    )
    add_lockdep_option(sc)
    add_race_detector_option(sc)
    sc.add_argument(
        "--direction", choices=["add", "remove"], help="switch-race, patch-move"
    )
    sc.add_argument(
        "--domains",
        type=integer(0, 64),
        metavar="N",
        help="guest domains, 0 to 64, placed in the pools round-robin",
    )
    sc.add_argument(
        "--vcpus", type=integer(1, 16), metavar="N", help="vCPUs per guest domain"
    )
    sc.add_argument(
        "--controllers",
        type=integer(0, 8),
        metavar="N",
        help="random toolstack threads (xl0...), 0 to 8",
    )
    sc.add_argument(
        "--domain-moves",
        type=probability,
        metavar="P",
        help="fraction of a random toolstack's moves that move a domain",
    )
    sc.add_argument(
        "--traffic",
        type=probability,
        metavar="P",
        help="pCPU loops: probability of a vCPU wake, sleep or migrate after each "
        "schedule()",
    )
    sc.add_argument(
        "--schedules",
        type=integer(1, 1000),
        default=DEFAULT_SCHEDULES,
        metavar="N",
        help=f"schedule() calls of each unbounded pCPU loop (default: "
        f"{DEFAULT_SCHEDULES}); only a scenario with such loops (stress-default, or "
        "a file's) has any: the other built-ins' programs are bounded already, and "
        "it changes nothing there",
    )
    sc.add_argument(
        "--moves",
        type=integer(1, 1000),
        default=DEFAULT_MOVES,
        metavar="N",
        help=f"moves of each random toolstack thread (default: {DEFAULT_MOVES}); "
        "as --schedules, it changes nothing for a scenario without one",
    )
    ex = p.add_argument_group("exploration")
    ex.add_argument(
        "--strategy",
        choices=list(STRATEGIES),
        default="dpor",
        help="how to choose at each step (default: dpor)",
    )
    ex.add_argument(
        "--runs",
        type=integer(1, 10**9),
        default=DEFAULT_RUNS,
        metavar="N",
        help=f"at most N executions (default: {DEFAULT_RUNS})",
    )
    ex.add_argument(
        "--seconds",
        type=seconds(),
        metavar="S",
        help="stop after S seconds (default: no time bound)",
    )
    ex.add_argument(
        "--seed",
        type=seed_option,
        metavar="S",
        help="seed of the strategy and of the programs' choices (default: "
        "$XENSCHED_SEED, else a fresh one; printed first)",
    )
    ex.add_argument(
        "--max-preemptions",
        type=integer(0, 1000),
        metavar="N",
        help="dfs and dpor (and the portfolio's dpor): at most N preemptions per "
        "execution; the search runs within 0 preemptions, then 1, up to N (iterative "
        "context bounding; dpor within a bound is bounded partial-order reduction)",
    )
    ex.add_argument(
        "--depth",
        type=integer(1, 20),
        metavar="D",
        help=f"pct: the bug depth to aim at (default: {DEFAULT_DEPTH}); refused with "
        "another strategy (the portfolio's PCT runs depths 1 to 3 of its own)",
    )
    ex.add_argument(
        "--keep-going",
        action="store_true",
        help="go on after a violation, to find every kind (default: stop at the first)",
    )
    ex.add_argument(
        "--max-steps",
        type=integer(*MAX_STEPS_RANGE),
        default=DEFAULT_MAX_STEPS,
        metavar="N",
        help="an execution longer than N steps is a livelock (default: "
        f"{DEFAULT_MAX_STEPS})",
    )
    ex.add_argument(
        "--all-points",
        action="store_true",
        help="random, pct and dfs within --max-preemptions: choose at every "
        "interaction point; by default they choose only at accesses another thread "
        "conflicts with (visible ones, learnt as the runs go: "
        "xensched.explore.visible), which spends random choices and the bound's "
        "preemptions where interleavings differ (dpor, dfs without a bound and dfs "
        "sharded by --workers always choose at every point: refused with them; "
        "under --memory-model tso or relaxed every strategy chooses at every "
        "point, the option then changes nothing)",
    )
    ex.add_argument(
        "--workers",
        type=integer(1, MAX_WORKERS),
        default=1,
        metavar="N",
        help="share the exploration among N processes: disjoint subtrees (dfs, "
        "dpor; --runs bounds each), the --runs shared out (random, pct), each "
        "member's share (portfolio); results merged (default: 1)",
    )
    ex.add_argument(
        "--observations",
        action="store_true",
        help="record what each thread read in every execution and count the "
        "distinct observations, and the run that met the last new one: how much "
        "behaviour a search that did not end has covered, and whether it still "
        "meets new behaviour (each point costs more; default: off)",
    )
    p.add_argument(
        "--pin",
        action="store_true",
        help="run each exploring process's threads on one CPU (worker K on the "
        "K-th of the CPUs it may use): one thread goes at a time, and a hand-off "
        "within one CPU is cheaper than across two (default: where the OS puts "
        "them). Two explorations side by side need different CPUs (taskset -c)",
    )
    _outputs(p, explore=True)
    p.set_defaults(func=cmd_explore)


def add_replay_parser(sub: argparse._SubParsersAction[Parser]) -> None:
    p = sub.add_parser(
        "replay",
        help="run a replay file's execution again, step by step",
        description=(
            "Run the execution that a replay file of xensched explore (or of "
            "xensched reproduce --replay-dir) records once more, checking at every step that the chosen thread is enabled and "
            "about to make the recorded access. Shows the same violation at the same "
            "step, or says where the run diverged from the file. The seed and the "
            "scenario come from the file, the memory model too unless --memory-model "
            "overrides it (a schedule recorded under another model then diverges: "
            "its drain steps, CPU>field, or early loads, CPU~k, do not exist, or new "
            "ones do). (The replay file of a pytest test, written "
            "by @pytest.mark.explore, is replayed by pytest --xensched-replay FILE: "
            "given one, this command says so.)"
        ),
        epilog=(
            "exit status: as xensched explore: 0 no violation, 1 violations, 2 "
            "usage error (a malformed file, or one that diverged), 3 deadlock, 4 a "
            "report file could not be written, 128 + signal when interrupted."
        ),
    )
    p.add_argument("file", metavar="FILE", help="a replay file (JSON)")
    add_memory_model_option(p, default=None, default_text="the file's scenario's")
    add_lockdep_option(p, default=None, default_text="as the file's execution ran")
    add_race_detector_option(
        p, default=None, default_text="as the file's execution ran"
    )
    _outputs(p, explore=False)
    p.set_defaults(func=cmd_replay)


# -- explore ------------------------------------------------------------------------------
#: The options that override a scenario's fields: what an invalid field may come from.
_FIELD_OPTIONS = (
    "cpus",
    "topology",
    "boot",
    "pool",
    "domains",
    "vcpus",
    "controllers",
    "domain_moves",
    "traffic",
)


def _scenario(args: argparse.Namespace) -> Scenario:
    try:
        return _build_scenario(args)
    except ConfigError as e:
        raise ConfigError(_blame(args, str(e))) from None


def _blame(args: argparse.Namespace, error: str) -> str:
    """``error``, a scenario field's, prefixed with the options that made the field
    invalid (``--cpus 1: threads[1].cpu: cpu1 does not exist``): the field names
    what the user did not write.

    The culprits are the options without which the scenario builds; when none
    alone is, all those given; when it fails without any of them, none.
    """
    given = [o for o in _FIELD_OPTIONS if getattr(args, o) is not None]
    if not given or error.startswith("--"):
        return error

    def builds_without(options: list[str]) -> bool:
        try:
            _build_scenario(
                argparse.Namespace(**{**vars(args), **dict.fromkeys(options)})
            )
        except ConfigError:
            return False
        return True

    if not builds_without(given):
        return error
    culprits = [o for o in given if builds_without([o])] or given
    words = []
    for o in culprits:
        values = getattr(args, o)
        for v in values if isinstance(values, list) else [values]:
            words.append(f"--{o.replace('_', '-')} {shlex.quote(str(v))}")
    return f"{' '.join(words)}: {error}"


def _build_scenario(args: argparse.Namespace) -> Scenario:
    given: dict[str, Any] = {}
    for opt in (
        "cpus",
        "topology",
        "boot",
        "memory_model",
        "direction",
        "domains",
        "vcpus",
        "controllers",
        "domain_moves",
        "traffic",
    ):
        v = getattr(args, opt)
        if v is not None:
            given[opt] = v
    # Not given, the mutant's protocol runs (fixed for one that only edits the
    # model); given, it must be the mutant's, or an edit mutant runs on it.
    protocol = mutant_protocol(args.protocol, args.mutant)
    if protocol is None and args.mutant is not None:
        protocol = args.mutant.protocol
    if protocol is not None:
        given["protocol"] = protocol
    pools = args.pool or []
    names = [p for p in pools if p in SCHEDULERS]
    specs = [p for p in pools if p not in SCHEDULERS]
    if names and specs:
        raise ConfigError("--pool: give scheduler names or pool specs, not both")
    if len(names) > 1:
        raise ConfigError("--pool: one scheduler name (the built-in's pool)")
    factory = BUILTIN.get(args.scenario)
    takes = builtin_parameters(args.scenario) if factory is not None else ()
    if "direction" in given and "direction" not in takes:
        raise ConfigError(f"--direction: scenario {args.scenario!r} has no direction")
    if names:
        if "pool" not in takes:
            raise ConfigError(
                f"--pool {names[0]}: scenario {args.scenario!r} has no pool "
                "scheduler parameter; give a pool spec NAME:SCHED[:CPUS]"
            )
        params = {k: v for k, v in given.items() if k in takes and k != "name"}
        rest = {k: v for k, v in given.items() if k not in params}
        sc = override_scenario(builtin(args.scenario, pool=names[0], **params), **rest)
    else:
        if specs:
            given["pool"] = [PoolSpec.parse(s) for s in specs]
        sc = scenario_from_options(args.scenario, **given)
        if specs:
            sc.unknown_pools()  # the programs may name a pool the specs dropped
    sc = mutant_scenario(sc, args.mutant).bounded(args.schedules, args.moves)
    sc.validate()
    return sc


def _explore_share(
    sc: Scenario,
    seed: int,
    opts: dict[str, Any],
    shard: tuple[int, int] | None = None,
    progress: Callable[[ExploreResult], None] | None = None,
) -> ExploreResult:
    """The exploration ``opts`` describe, or share ``shard`` of it."""
    search = make_strategy(
        opts["strategy"],
        seed=seed,
        depth=opts["depth"],
        max_preemptions=opts["max_preemptions"],
        shard=shard if shard is not None and shard[1] > 1 else None,
    )
    runs = share_of_runs(opts["runs"], opts["strategy"], shard)
    target = with_instruments(
        ScenarioTarget(sc, seed),
        lockdep=bool(opts.get("lockdep")),
        race_detector=bool(opts.get("race_detector")),
    )
    res = Explorer(
        target,
        search,
        seed=seed,
        runs=runs,
        seconds=opts["seconds"],
        keep_going=opts["keep_going"],
        max_steps=opts["max_steps"],
        progress=progress,
        all_points=bool(opts.get("all_points")),
        cpu=one_cpu(shard[0] if shard is not None else 0) if opts.get("pin") else None,
        observe=bool(opts.get("observations")),
    ).explore()
    # Carried to the command (and across a worker's pickle) with the result;
    # popped before the details are written.
    summary = summary_of(target)
    if summary is not None:
        res.details[_LOCKDEP] = summary
    races = races_of(target)
    if races is not None:
        res.details[_RACES] = races
    return res


#: The keys of :class:`LockdepSummary` and :class:`RaceSummary` in
#: ``ExploreResult.details``.
_LOCKDEP = "lockdep"
_RACES = "race_detector"


def _detail_parts(res: ExploreResult) -> list[Any]:
    parts: list[Any] = [res.details]
    workers = res.details.get("workers")
    if isinstance(workers, list):
        parts += [w for w in workers if isinstance(w, dict)]
    return parts


def _pop_lockdep(res: ExploreResult) -> LockdepSummary | None:
    """The lockdep summary ``_explore_share`` left in ``res.details``, taken out
    (of every worker's too: the union)."""
    out: LockdepSummary | None = None
    for d in _detail_parts(res):
        s = d.pop(_LOCKDEP, None)
        if isinstance(s, LockdepSummary):
            out = s if out is None else out.merge(s)
    return out


def _pop_races(res: ExploreResult) -> RaceSummary | None:
    """The race summary ``_explore_share`` left in ``res.details``, taken out (of
    every worker's too: the union)."""
    out: RaceSummary | None = None
    for d in _detail_parts(res):
        s = d.pop(_RACES, None)
        if isinstance(s, RaceSummary):
            out = s if out is None else out.merge(s)
    return out


def share_options(args: argparse.Namespace) -> dict[str, Any]:
    """What a share of the exploration takes from ``explore``'s options: a plain
    dict, which a worker process gets pickled."""
    return {
        "strategy": args.strategy,
        "depth": args.depth,
        "max_preemptions": args.max_preemptions,
        "runs": args.runs,
        "seconds": args.seconds,
        "keep_going": args.keep_going,
        "max_steps": args.max_steps,
        "all_points": args.all_points,
        "lockdep": args.lockdep,
        "race_detector": args.race_detector,
        "pin": args.pin,
        "observations": args.observations,
    }


def _shard_worker(
    sc_json: str,
    seed: int,
    opts: dict[str, Any],
    k: int,
    n: int,
    progress: Callable[[ExploreResult], None] | None = None,
) -> ExploreResult:
    """One worker process's share of an exploration."""
    from xensched.scenario import Scenario

    return _explore_share(Scenario.from_json(sc_json), seed, opts, (k, n), progress)


def _merge(parts: list[ExploreResult]) -> ExploreResult:
    first = parts[0]
    out = ExploreResult(first.strategy, first.seed)
    for r in parts:
        out.runs += r.runs
        out.abandoned += r.abandoned
        out.distinct += r.distinct
        out.points += r.points
        out.seconds = max(out.seconds, r.seconds)
        out.interrupted |= r.interrupted
        if r.failing is not None and out.failing is None:
            out.failing = r.failing
            out.violations = list(r.violations)
        elif r.failing is not None:
            # Before out.kinds takes r's: the kinds only this worker found.
            out.violations += [v for v in r.violations if v.kind.value not in out.kinds]
        out.kinds |= r.kinds
        for k, ex in r.first_of_kind.items():
            out.first_of_kind.setdefault(k, ex)
        if r.observations is not None:
            out.observations = (out.observations or set()) | r.observations
            out.last_new_observation = max(
                out.last_new_observation, r.last_new_observation
            )
    out.exhaustive = all(r.exhaustive for r in parts)
    reasons = {r.stop_reason for r in parts}
    out.stop_reason = (
        "violation found"
        if "violation found" in reasons
        else "interrupted"
        if "interrupted" in reasons
        else ", ".join(sorted(reasons))
    )
    details = [r.details for r in parts]
    out.details = {"workers": details}
    # The shards are disjoint subtrees that together make the tree: a bound that
    # each of them exhausted is exhausted for the whole search.
    if all(d.get("bound_exhausted") for d in details):
        out.details["bound_exhausted"] = True
        out.details["max_preemptions"] = details[0].get("max_preemptions")
    return out


class _StatusLine:
    """One line on stderr, rewritten in place at most every 0.2 s (a search and a
    shrink call back after every run, far more often than a reader can follow)."""

    def __init__(self) -> None:
        self._last = 0.0

    def show(self, line: str) -> None:
        now = time.monotonic()
        if now - self._last > 0.2:
            self._last = now
            sys.stderr.write(line)
            sys.stderr.flush()

    def clear(self) -> None:
        """Erase the line, if one was shown."""
        if self._last:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def _progress_line(res: ExploreResult) -> str:
    return (
        f"\r\x1b[K{res.strategy}: {res.runs} runs, {res.distinct} distinct, "
        f"{res.points_per_second:,.0f} points/s, {res.seconds:.1f}s"
        + (f", found {', '.join(sorted(res.kinds))}" if res.kinds else "")
    )


def _coverage(res: ExploreResult) -> str:
    """What the search covered: everything, or everything its preemption bound
    allows (a bounded search cut the rest, so it proves nothing beyond the bound)."""
    if res.exhaustive:
        return "exhaustive"
    d = res.details
    if d.get("bound_exhausted") and res.stop_reason == "exhausted":
        return (
            f"not exhaustive, bound exhausted: all within {d.get('max_preemptions')} "
            "preemptions covered, more preemptions cut"
        )
    return "not exhaustive"


def _exit_code(kinds: set[str]) -> int:
    if ViolationKind.DEADLOCK.value in kinds:
        return EXIT_DEADLOCK
    return EXIT_VIOLATIONS if kinds else EXIT_OK


def cmd_explore(args: argparse.Namespace) -> int:
    stop = RaiseInterrupt()
    # Ctrl-C too: a second one must not cut short the first one's clean-up (the
    # shrinking ending, the workers' results collected, the files written).
    with stop_signals(stop, (signal.SIGINT, *STOP_SIGNALS)), quiet_lost_interrupts():
        return _explore(args, stop)


def _err(cmd: str, msg: str) -> int:
    print(f"xensched {cmd}: error: {msg}", file=sys.stderr)
    return EXIT_USAGE


def _strategy_options(args: argparse.Namespace) -> None:
    """Refuse an option the strategy has no use for (accepted, it would change
    nothing, silently), as make_strategy refuses --max-preemptions; then give
    --depth its default.

    Raises:
        ConfigError: one line naming both options.
    """
    strategy = f"--strategy {args.strategy}"
    if args.depth is not None and args.strategy != "pct":
        raise ConfigError(
            f"--depth {args.depth}: the bug depth of --strategy pct, not of {strategy}"
            + (" (its PCT runs depths 1 to 3)" if args.strategy == "portfolio" else "")
        )
    every = None
    if args.strategy == "dpor":
        every = f"{strategy} always chooses"
    elif args.strategy == "dfs" and args.max_preemptions is None:
        every = f"{strategy} without --max-preemptions chooses"
    elif args.strategy == "dfs" and args.workers > 1:
        every = f"{strategy} sharded by --workers {args.workers} chooses"
    if args.all_points and every is not None:
        raise ConfigError(f"--all-points: {every} at every point anyway")
    if args.depth is None:
        args.depth = DEFAULT_DEPTH


def _explore(args: argparse.Namespace, stop: RaiseInterrupt) -> int:
    try:
        seed = resolve_base_seed(args.seed)
    except ValueError as e:
        return _err("explore", str(e))
    try:
        _strategy_options(args)
        sc = _scenario(args)
        make_strategy(
            args.strategy,
            seed=seed,
            depth=args.depth,
            max_preemptions=args.max_preemptions,
        )
        check_output_paths(
            ("--json", args.json),
            # Known now (the scenario's name and the seed): a directory that takes no
            # file must not be found out after the search.
            (
                "--replay-out" if args.replay_out else "the default --replay-out",
                _replay_path(args, sc, seed),
            ),
            ("--timeline", args.timeline),
            inputs=[(f"the scenario file {shlex.quote(args.scenario)}", args.scenario)]
            if args.scenario not in BUILTIN
            else [],
        )
    except (ConfigError, OutputPathError) as e:
        return _err("explore", str(e))
    print(
        f"xensched {xensched.__version__} explore: seed {seed}, scenario {sc.name} "
        f"({_setting(sc, _mutant_name(args))}), strategy {args.strategy}, {args.workers} worker"
        + ("s" if args.workers > 1 else ""),
        flush=True,
    )
    show = sys.stderr.isatty() if args.progress is None else args.progress
    status = _StatusLine()

    def show_progress(res: ExploreResult) -> None:
        if show:
            status.show(_progress_line(res))

    def progress(res: ExploreResult) -> None:
        if stop.signum is not None:
            # The signal's KeyboardInterrupt was dropped (quiet_lost_interrupts):
            # raised here, between two executions, explore() ends with it.
            raise KeyboardInterrupt
        show_progress(res)

    opts = share_options(args)
    if args.workers == 1:
        got: ExploreResult | None = None
        try:
            with stop.armed():
                got = _explore_share(sc, seed, opts, progress=progress)
        except KeyboardInterrupt:
            pass  # a signal as the arming began or ended, outside explore()
        res = got or ExploreResult(
            args.strategy, seed, interrupted=True, stop_reason="interrupted"
        )
    else:
        res = _explore_workers(sc, seed, opts, args.workers, stop, show_progress)
    if show:
        sys.stderr.write(_progress_line(res) + "\n")
    lockdep = _pop_lockdep(res)
    return _finish_explore(
        args, sc, seed, res, stop, lockdep, _pop_races(res), show=show
    )


#: After a stop, how long the workers have to hand in what they explored (an
#: execution takes milliseconds, a worker still starting up a second or two) before
#: they are killed.
WORKER_GRACE = 5.0
#: How often a worker sends its counts for the progress line.
_WORKER_PROGRESS_EVERY = 0.5


class _WorkerTracebackError(Exception):
    """A worker's traceback, as the cause of its exception raised here."""

    def __str__(self) -> str:
        return str(self.args[0])


def _shard_process(
    sc_json: str,
    seed: int,
    opts: dict[str, Any],
    k: int,
    n: int,
    signals: list[int],
    halt: Any,
    outbox: Any,
) -> None:
    """A worker process: share ``k`` of ``n`` explored, put on ``outbox``.

    Ctrl-C reaches the whole process group, and the parent may be signalled alone
    (it then sets ``halt``): either ends the exploration between two executions, and
    what it found so far is handed in, not lost. The parent kills a worker that does
    not hand in its share in time (SIGKILL: SIGTERM only stops it, as ``signals``).
    """
    stopped: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        stopped.append(signum)

    for sig in signals:
        signal.signal(sig, on_signal)
    if hasattr(signal, "pthread_sigmask"):
        # Started with them held (_held): one sent while it started comes now.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)
    last_sent = [time.monotonic()]

    def progress(res: ExploreResult) -> None:
        if stopped or halt.is_set():
            raise KeyboardInterrupt  # explore() ends with what it has
        now = time.monotonic()
        if now - last_sent[0] >= _WORKER_PROGRESS_EVERY:
            last_sent[0] = now
            counts = (res.runs, res.distinct, res.points, res.seconds, res.kinds)
            outbox.put(("progress", k, counts))

    try:
        res = _shard_worker(sc_json, seed, opts, k, n, progress)
    except BaseException as e:
        import pickle
        import traceback

        tb = traceback.format_exc()
        try:
            pickle.dumps(e)
        except Exception:
            e = RuntimeError(f"{type(e).__name__}: {e}")
        outbox.put(("error", k, e, tb))
        return
    outbox.put(("result", k, res))


@contextlib.contextmanager
def _held(signals: list[int]) -> Iterator[None]:
    """``signals`` held back while inside (in the main thread; elsewhere nothing),
    and delivered on the way out.

    A spawned process inherits the held mask: a worker starting up is not killed by
    a Ctrl-C (or a SIGTERM sent to the process group) before it can handle it, and
    takes the signal once its handlers are in (``_shard_process``). The parent's own
    signal in this window (the processes' start, milliseconds) is delivered when the
    block ends, not lost, as it was when the window ignored it. Where the platform
    cannot hold a signal back, it is ignored in the window instead, and lost.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if not hasattr(signal, "pthread_sigmask"):
        old = {sig: signal.signal(sig, signal.SIG_IGN) for sig in signals}
        try:
            yield
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
        return
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _explore_workers(
    sc: Scenario,
    seed: int,
    opts: dict[str, Any],
    n: int,
    stop: RaiseInterrupt,
    progress: Callable[[ExploreResult], None] | None = None,
) -> ExploreResult:
    """The exploration shared among ``n`` processes, their results merged.

    Called unarmed: the results come through a pipe, which an exception raised in
    the middle of a message would leave unreadable, so the waits poll
    ``stop.signum`` instead. On a signal the workers stop (see ``_shard_process``)
    and the result is what they hand in within ``WORKER_GRACE`` seconds.
    """
    # Those the parent handles (stop_signals left an ignored one, nohup's SIGHUP,
    # ignored): a worker stops on them too.
    signals = [
        int(sig)
        for sig in (signal.SIGINT, *STOP_SIGNALS)
        if signal.getsignal(sig) is not signal.SIG_IGN
    ]
    # spawn, not fork: the parent may have threads (and fork is not safe with them).
    ctx = multiprocessing.get_context("spawn")
    sc_json = sc.to_json(indent=None)
    # Made while the signals are held: the event and the queue start
    # multiprocessing's resource tracker, which dies of a SIGHUP to the process
    # group (it ignores only SIGINT and SIGTERM) and is then started again with
    # warnings and tracebacks; started held, it never takes one.
    with _held(signals):
        halt = ctx.Event()
        inbox = ctx.Queue()
    procs = [
        ctx.Process(
            target=_shard_process,
            args=(sc_json, seed, opts, k, n, signals, halt, inbox),
            name=f"xensched-explore-{k}",
            daemon=True,
        )
        for k in range(n)
    ]
    parts: dict[int, ExploreResult] = {}
    counts: dict[int, tuple[int, int, int, float, set[str]]] = {}
    dead: set[int] = set()  # seen dead with no result, once
    ended: set[int] = set()  # seen dead with no result after one more wait

    def gather(deadline: float | None) -> None:
        """Take the workers' messages until every result is in, a signal (none
        expected), or ``deadline`` (a signal expected)."""
        while len(parts) + len(ended) < n:
            if deadline is None and stop.signum is not None:
                return
            if deadline is not None and time.monotonic() >= deadline:
                return
            try:
                what, k, *payload = inbox.get(timeout=0.2)
            except queue.Empty:
                for k, p in enumerate(procs):
                    if k in parts or k in ended or p.is_alive():
                        continue
                    if k not in dead:
                        # Its last message was sent before it ended, but may not
                        # have been read yet: one more wait.
                        dead.add(k)
                    elif deadline is None:
                        raise XenschedError(
                            f"explore worker {k} ended without its result (exit "
                            f"code {p.exitcode})"
                        ) from None
                    else:
                        ended.add(k)
                continue
            if what == "result":
                parts[k] = payload[0]
            elif what == "progress":
                counts[k] = payload[0]
                if progress is not None:
                    progress(_counted(opts["strategy"], seed, counts))
            else:
                exc, tb = payload
                raise exc from _WorkerTracebackError(tb)

    try:
        with _held(signals):
            for p in procs:
                p.start()
        gather(None)
        if len(parts) < n:  # a signal: the workers stop and hand in their shares
            halt.set()
            gather(time.monotonic() + WORKER_GRACE)
    finally:
        halt.set()
        # They have handed in, or been told to stop: those that do not end within
        # a grace are killed.
        killed = end_processes(procs)
    if killed:
        print(
            f"xensched explore: {len(killed)} of {n} workers did not end within "
            f"{END_GRACE:g}s: killed (SIGKILL)",
            file=sys.stderr,
        )
    if len(parts) < n:
        print(
            f"xensched explore: {n - len(parts)} of {n} workers handed in nothing: "
            "their runs are not counted",
            file=sys.stderr,
        )
    merged = (
        _merge([parts[k] for k in sorted(parts)])
        if parts
        else ExploreResult(opts["strategy"], seed)
    )
    if stop.signum is not None or len(parts) < n:
        merged.interrupted = True
        merged.stop_reason = "interrupted"
    return merged


def _counted(
    strategy: str, seed: int, counts: dict[int, tuple[int, int, int, float, set[str]]]
) -> ExploreResult:
    """The workers' last counts summed, for the progress line."""
    out = ExploreResult(strategy, seed)
    for runs, distinct, points, secs, kinds in counts.values():
        out.runs += runs
        out.distinct += distinct
        out.points += points
        out.seconds = max(out.seconds, secs)
        out.kinds |= kinds
    return out


def _replay_path(args: argparse.Namespace, sc: Scenario, seed: int) -> str:
    if args.replay_out:
        return str(args.replay_out)
    return f"xensched-replay-{sc.name}-{seed}.json"


def _kind_replay_path(path: str, kind: str) -> str:
    """Where ``--keep-going`` writes the replay file of ``kind``: beside ``path``
    (the first kind's), its name ending in the kind."""
    # splitext: a dot file (.replay) has no suffix, a dot in a directory is none.
    stem, suffix = os.path.splitext(path)
    return f"{stem}-{kind}{suffix}"


def _observations_line(res: ExploreResult) -> str:
    assert res.observations is not None
    n = len(res.observations)
    if not n:
        return "observations: none (every execution was cut short)"
    where = " of its worker" if "workers" in res.details else ""
    return (
        f"observations: {n:,} distinct (what each thread read), the last new one at "
        f"run {res.last_new_observation:,}{where}"
    )


def _finish_explore(
    args: argparse.Namespace,
    sc: Scenario,
    seed: int,
    res: ExploreResult,
    stop: RaiseInterrupt,
    lockdep: LockdepSummary | None = None,
    races: RaceSummary | None = None,
    *,
    show: bool = False,
) -> int:
    print(
        f"{res.runs} runs ({res.distinct} distinct schedules, {res.abandoned} cut "
        f"short) in {res.seconds:.2f}s, {res.points_per_second:,.0f} points/s; "
        f"{_coverage(res)}; {res.stop_reason}"
    )
    if res.observations is not None:
        print(_observations_line(res))
    if res.strategy == "pct" and "per_run_probability" in res.details:
        d = res.details
        print(
            f"PCT depth {d['depth']}: a bug of depth {d['depth']} among "
            f"{d['threads']} threads and {d['steps_bound']} scheduling points is "
            f"found by one run with probability >= {d['per_run_probability']:.3g}; "
            f"the {d['counted_runs']} runs since the set of visible objects last grew "
            f"miss it with probability <= {d['miss_probability']:.3g}"
        )
    replay_file: str | None = None
    kind_replays: dict[str, str] = {}  # --keep-going: each other kind's file
    exit_code = _exit_code(res.kinds)
    failing = res.failing
    shrunk: Shrunk | None = None
    if failing is not None and failing.violations:
        kind = failing.violations[0].kind.value
        shown_sc: Scenario = sc
        if not args.no_shrink and kind != ViolationKind.LIVELOCK.value:
            shrunk = _shrink(args, sc, seed, failing, kind, stop, show)
        if shrunk is not None:
            s = shrunk
            failing = s.execution
            shown_sc = s.scenario or sc
            print(
                ("shrinking interrupted after" if s.interrupted else "shrunk in")
                + f" {s.runs} runs: {s.before[0]} -> {s.after[0]} preemptions, "
                f"{s.before[1]} -> {s.after[1]} steps to the violation, "
                f"{s.before[2]} -> {s.after[2]} threads"
                + (" (the smallest failing execution so far)" if s.interrupted else "")
            )
        ex, rec = record(
            with_instruments(
                ScenarioTarget(shown_sc, seed),
                lockdep=args.lockdep,
                race_detector=args.race_detector,
            ),
            failing.schedule,
            max_steps=args.max_steps,
        )
        if any(v.kind.value == kind for v in ex.violations):
            # The story's run, its steps numbered as the story and the picture
            # number them; one that did not show the kind (which a deterministic
            # replay of the schedule should) leaves the execution as found.
            failing = ex.first_of(kind)
        print(f"\nthe failing execution ({preemptions(ex.steps)} preemptions):")
        print(render_story(rec, ex.steps))
        print()
        print(render_violation(failing.violations[0]))
        others = sorted(res.kinds - {kind})
        if others:
            print(f"\nalso found (--keep-going): {', '.join(others)}")
            for v in res.violations:
                if v.kind.value in others:
                    print()
                    print(render_violation(v))
        options = {
            "max_steps": args.max_steps,
            **({"mutant": args.mutant.name} if args.mutant is not None else {}),
            **({"lockdep": True} if args.lockdep else {}),
            **({"race_detector": True} if args.race_detector else {}),
        }
        path = _replay_path(args, sc, seed)

        def write_replay(path: str, replay: Replay, label: str) -> bool:
            nonlocal exit_code
            failed = write_json_report("--replay-out", path, replay.to_dict())
            if failed:
                print(f"xensched explore: error: {failed}", file=sys.stderr)
                exit_code = exit_code or EXIT_NOT_WRITTEN
                return False
            print(f"{label}: xensched replay {shlex.quote(path)}")
            return True

        replay = Replay.of(
            failing,
            seed=seed,
            strategy=res.strategy,
            scenario=shown_sc,
            options=options,
        )
        if write_replay(path, replay, "\nreplay"):
            replay_file = path
        # --keep-going: each other kind's first execution too, as found (shrinking
        # each would multiply the wait), so that every kind can be shown again.
        for other in others:
            first = res.first_of_kind.get(other)
            if first is None:
                continue
            other_path = _kind_replay_path(path, other)
            replay = Replay.of(
                first,
                seed=seed,
                strategy=res.strategy,
                scenario=sc,
                options=options,
                kind=other,
            )
            if write_replay(other_path, replay, f"replay ({other}, not shrunk)"):
                kind_replays[other] = other_path
        if args.timeline:
            exit_code = _write_timeline(args.timeline, rec, exit_code, "explore")
    elif args.timeline:
        print(f"no violation: {args.timeline} not written")
    if lockdep is not None:
        print("\n".join(lockdep.lines()))
    if races is not None:
        print("\n".join(races.lines()))
    # A signal during the story and the files (not armed: they finish) still ends
    # the command as interrupted, once the files are out.
    if res.interrupted or stop.signum is not None:
        by = (
            f"{signal_name(stop.signum)} received: "
            if stop.signum not in (None, signal.SIGINT)  # Ctrl-C: the user knows
            else ""
        )
        during = (
            ", while shrinking" if shrunk is not None and shrunk.interrupted else ""
        )
        print(f"{by}interrupted after {res.runs} runs{during}", file=sys.stderr)
        exit_code = 130 if stop.signum is None else 128 + stop.signum
        res.interrupted = True
        res.stop_reason = "interrupted"
    if args.json:
        doc = _document(
            "explore",
            sc,
            seed,
            res,
            exit_code,
            replay_file,
            {
                "mutant": _mutant_name(args),
                "lockdep": _json(lockdep),
                "race_detector": _json(races),
                "observations": None
                if res.observations is None
                else {
                    "distinct": len(res.observations),
                    "last_new_run": res.last_new_observation,
                },
                "shrink": _shrink_json(shrunk),
                "replays": kind_replays,
            },
        )
        failed = write_json_report("--json", args.json, doc)
        if failed is not None:
            print(f"xensched explore: error: {failed}", file=sys.stderr)
            return exit_code or EXIT_NOT_WRITTEN
        print(f"result written to {args.json}")
    return exit_code


def _shrink(
    args: argparse.Namespace,
    sc: Scenario,
    seed: int,
    failing: Execution,
    kind: str,
    stop: RaiseInterrupt,
    show: bool,
) -> Shrunk | None:
    """``failing`` shrunk, or None when a signal came before the shrinking began."""
    if stop.signum is not None:
        # Interrupted already: the user asked to stop, not to wait for a shrink.
        print("not shrunk: interrupted")
        return None
    status = _StatusLine()

    def progress(runs: int, size: tuple[int, int, int]) -> None:
        status.show(
            f"\r\x1b[Kshrinking: {runs} runs, {size[1]} steps, {size[0]} "
            "preemptions so far"
        )

    out: Shrunk | None = None
    try:
        # Armed: a signal stops the shrinking (a run under way too), which keeps
        # what it has; ``stopped`` for a KeyboardInterrupt Python dropped.
        with stop.armed():
            out = shrink(
                failing,
                kind,
                scenario=sc,
                seed=seed,
                make_target=lambda c: with_instruments(
                    ScenarioTarget(c, seed),
                    lockdep=args.lockdep,
                    race_detector=args.race_detector,
                ),
                progress=progress if show else None,
                stopped=lambda: stop.signum is not None,
                max_steps=args.max_steps,
            )
    except KeyboardInterrupt:
        # The signal came as the arming began or ended, outside shrink(): ``out`` is
        # what there is (the command still ends as interrupted: stop.signum).
        if out is None:
            print("not shrunk: interrupted")
    finally:
        status.clear()
    return out


def _shrink_json(s: Shrunk | None) -> dict[str, Any] | None:
    if s is None:
        return None

    def size(t: tuple[int, int, int]) -> dict[str, int]:
        return {"preemptions": t[0], "steps": t[1], "threads": t[2]}

    return {
        "runs": s.runs,
        "interrupted": s.interrupted,
        "before": size(s.before),
        "after": size(s.after),
    }


def _write_timeline(path: str, rec: Recorder, exit_code: int, cmd: str) -> int:
    from xensched.timeline import Mark, write_timeline  # only when one is asked for

    marks = [
        Mark(step, v.context, v.kind.value, v.message) for _, step, v in rec.violations
    ]
    try:
        write_timeline(
            path,
            timeline_events(rec),
            marks,
            title=f"xensched {cmd}",
            logical=True,
        )
    except OSError as e:
        print(f"xensched {cmd}: error: {path}: {e.strerror or e}", file=sys.stderr)
        return exit_code or EXIT_NOT_WRITTEN
    print(f"timeline written to {path}")
    return exit_code


def _document(
    cmd: str,
    sc: Scenario,
    seed: int,
    res: ExploreResult,
    exit_code: int,
    replay_file: str | None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "xensched": xensched.__version__,
        "command": cmd,
        "scenario": sc.name,
        "protocol": sc.protocol,
        "memory_model": sc.memory_model,
        "strategy": res.strategy,
        "seed": seed,
        "runs": res.runs,
        "distinct": res.distinct,
        "abandoned": res.abandoned,
        "points": res.points,
        "points_per_second": round(res.points_per_second, 1),
        "seconds": round(res.seconds, 3),
        "exhaustive": res.exhaustive,
        "stop_reason": res.stop_reason,
        "kinds": sorted(res.kinds),
        "violations": [v.to_json() for v in res.violations],
        "replay": replay_file,
        "exit_code": exit_code,
        "details": _jsonable(res.details),
    }
    if extra:
        doc.update(extra)
    return doc


def _json(summary: LockdepSummary | RaceSummary | None) -> dict[str, object] | None:
    return summary.to_json() if summary is not None else None


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return str(v)


def _mutant_name(args: argparse.Namespace) -> str | None:
    return None if args.mutant is None else str(args.mutant.name)


def _setting(sc: Scenario, mutant: str | None = None) -> str:
    """The protocol, the mutant and the edits when there are, and the memory model
    when it is not ``sc``, for a header line."""
    out = [sc.protocol]
    if mutant is not None:
        out.append(f"mutant {mutant}")
    # An edit mutant's edit has the mutant's name: named once.
    edits = [e for e in sc.mutants if e != mutant]
    if edits:
        out.append(f"edits {', '.join(edits)}")
    if sc.memory_model != "sc":
        out.append(f"memory model {sc.memory_model}")
    return ", ".join(out)


# -- replay -------------------------------------------------------------------------------
def cmd_replay(args: argparse.Namespace) -> int:
    stop = RaiseInterrupt()
    with stop_signals(stop):
        return _replay(args, stop)


def _replay(args: argparse.Namespace, stop: RaiseInterrupt) -> int:
    try:
        replay = load_replay(args.file)
        check_output_paths(
            ("--json", args.json),
            ("--timeline", args.timeline),
            inputs=[(f"the replay file {shlex.quote(args.file)}", args.file)],
        )
    except (ConfigError, OutputPathError) as e:
        return _err("replay", str(e))
    if replay.scenario is None:
        # A shard's node id ([shardK/N]) is only collected with that shard count.
        shard = replay.options.get("shard")
        shards = f" --xensched-shards {shard[1]}" if isinstance(shard, list) else ""
        return _err(
            "replay",
            f"{args.file} records a pytest test ({replay.nodeid}): replay it with "
            f"pytest {shlex.quote(replay.nodeid or '')} --xensched-replay "
            f"{shlex.quote(args.file)}{shards}",
        )
    sc = replay.scenario
    if args.memory_model is not None and args.memory_model != sc.memory_model:
        print(
            f"xensched replay: the file's scenario ran under {sc.memory_model}; "
            f"replaying it under {args.memory_model} (--memory-model)",
            flush=True,
        )
        sc = dataclasses.replace(sc, memory_model=args.memory_model)
    mutant = replay.options.get("mutant")
    recorded_mutant = mutant if isinstance(mutant, str) else None
    print(
        f"xensched {xensched.__version__} replay: {args.file}: scenario {sc.name} "
        f"({_setting(sc, recorded_mutant)}), seed {replay.seed}, {len(replay.schedule)} steps found by "
        f"{replay.strategy}",
        flush=True,
    )
    play = ReplaySchedule(replay.schedule, replay.accesses)
    t0 = time.perf_counter()
    on = args.lockdep
    if on is None:
        on = replay.options.get("lockdep") is True
    races_on = args.race_detector
    if races_on is None:
        races_on = replay.options.get("race_detector") is True
    target = with_instruments(
        ScenarioTarget(sc, replay.seed), lockdep=on, race_detector=races_on
    )

    def write_json(res: ExploreResult, code: int, reproduced: bool | None) -> bool:
        """The ``--json`` report; False (said on stderr) when it was not written."""
        doc = _document(
            "replay",
            sc,
            replay.seed,
            res,
            code,
            args.file,
            {
                "mutant": recorded_mutant,
                "reproduced": reproduced,
                "lockdep": _json(summary_of(target)),
                "race_detector": _json(races_of(target)),
            },
        )
        failed = write_json_report("--json", args.json, doc)
        if failed is not None:
            print(f"xensched replay: error: {failed}", file=sys.stderr)
        return failed is None

    try:
        with stop.armed():
            ex, rec = record(
                target,
                search=play,
                max_steps=int(replay.options.get("max_steps", DEFAULT_MAX_STEPS)),
            )
    except ReplayDivergedError as e:
        return _err("replay", f"{args.file} does not fit this code and scenario: {e}")
    except KeyboardInterrupt:
        by = f"{signal_name(stop.signum)} received: " if stop.signum else ""
        print(f"{by}interrupted", file=sys.stderr)
        code = 130 if stop.signum is None else 128 + stop.signum
        if args.json:
            res = ExploreResult("replay", replay.seed, interrupted=True)
            res.seconds = time.perf_counter() - t0
            res.stop_reason = "interrupted"
            write_json(res, code, None)
        return code
    res = ExploreResult("replay", replay.seed, runs=1, distinct=1)
    res.points = len(ex.steps)
    res.seconds = time.perf_counter() - t0
    res.violations = list(ex.violations)
    res.kinds = {v.kind.value for v in ex.violations}
    res.failing = ex if ex.violations else None
    res.stop_reason = "replayed"
    print(render_story(rec, ex.steps))
    for v in ex.violations:
        print()
        print(render_violation(v))
    want = replay.violation
    same = None
    if want is not None:
        got = list(zip(ex.violations, ex.violation_steps, strict=False))
        same = any(v.kind.value == want.kind and s == want.step for v, s in got)
        print(
            f"\nrecorded: {want.kind} at step {want.step}: "
            + ("reproduced" if same else "NOT reproduced")
        )
    replayed = summary_of(target)
    if replayed is not None:
        print("\n".join(replayed.lines()))
    replayed_races = races_of(target)
    if replayed_races is not None:
        print("\n".join(replayed_races.lines()))
    exit_code = _exit_code(res.kinds)
    if args.timeline:
        if rec.violations:
            exit_code = _write_timeline(args.timeline, rec, exit_code, "replay")
        else:
            print(f"no violation: {args.timeline} not written")
    if args.json and not write_json(res, exit_code, same):
        return exit_code or EXIT_NOT_WRITTEN
    return exit_code
