"""``xensched fuzz``: Hypothesis-driven xl sequences against a hammered host.

Mirrors nothing in Xen; the machine and the model are :mod:`xensched_stress.fuzz`'s.
Prints ``seed=...`` first, then runs Hypothesis in batches (each with its own seed,
derived from the base seed) until a sequence fails or ``--duration`` is used up (the
search's budget, checked before every operation: a batch under way is cut short). A
failing sequence is then shrunk, within a budget of its own (``--shrink-duration``,
counted from the failure): as fuzzers do (Hypothesis's own shrink limit, AFL's
minimisation), a short search does not cut the shrink short, and a long shrink does
not count as search; the report gives each part's time and figures. The
example database is ``.hypothesis/xensched-fuzz`` in the working directory: a rerun
tries the saved failures first. A failing sequence, shrunk by Hypothesis, is printed as
an xl script (one command per line), written to ``--script FILE``
(``xensched-fuzz-SEED.xl`` by default) with the command that replays it
(``--replay FILE``: those operations in order, on a hammered host, with the same
checks). Unless ``--no-explore``, the script also runs under the explorer (controlled
driver, bounded); a failure found there comes with a replay file for
``xensched replay``.

Exit codes, as ``xensched stress``: 0 nothing found, 1 violations, 2 usage error, 3 a
deadlock, 4 a report file not written at the end; Ctrl-C, SIGTERM and SIGHUP stop it
with the partial report printed and written, exit 128 + the signal (130, 143, 129).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from hypothesis import HealthCheck, Phase, seed as hypothesis_seed, settings
from hypothesis.database import DirectoryBasedExampleDatabase
from hypothesis.errors import Flaky
from hypothesis.stateful import run_state_machine_as_test

import xensched
from xensched import SCHEDULERS, ConfigError, XenError
from xensched.cli import ExternalCommand
from xensched.errors import XenschedError
from xensched.host import MAX_CPUS
from xensched.inputs import read_text
from xensched.options import (
    MAX_SECONDS,
    Parser,
    add_lockdep_option,
    add_memory_model_option,
    add_mutant_option,
    add_progress_option,
    add_race_detector_option,
    integer,
    mutant_protocol,
    probability,
    seconds,
    seed as seed_option,
)
from xensched.outputs import (
    EXIT_NOT_WRITTEN,
    OutputPathError,
    check_output_paths,
    write_json_report,
    write_text_atomic,
)
from xensched.scenario import SETUP_ONLY_VERBS, XL_VERBS, XlOp, check_protocol
from xensched.seeds import derive_seed, resolve_base_seed
from xensched.signals import signal_name, stop_signals
from xensched.violation import Violation, ViolationKind

from .fuzz import (
    BudgetSpent,
    FuzzConfig,
    FuzzFailure,
    ReplayShrink,
    XlFuzzMachine,
    machine_class,
    run_script,
    script_scenario,
    shrink_by_replay,
)

if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterator, Sequence

    from xensched.mutants import Mutant

EXIT_OK, EXIT_FOUND, EXIT_USAGE, EXIT_DEADLOCK, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
#: Examples per Hypothesis batch, and operations per example at most.
BATCH = 10
STEPS = 25
DATABASE = os.path.join(".hypothesis", "xensched-fuzz")
#: Explorer runs given to a failing script.
EXPLORE_RUNS = 200
#: The default budget (seconds) of the shrink of a failing sequence, counted from the
#: failure: Hypothesis's shrink and, for a failure it could not replay (Flaky), the
#: shrink by replaying what is left of it. Hypothesis's own limit is 300 s; most
#: shrinks here take a few seconds to a few tens.
SHRINK_DURATION = 60.0
#: The replay command of a failure Hypothesis could not replay runs the script up to
#: this many times.
FLAKY_RUNS = 20
#: Violations printed (the --json report has them all).
_SHOWN = 5


def build_parser(prog: str = "xensched fuzz") -> argparse.ArgumentParser:
    p = Parser(
        prog=prog,
        description=(
            "Throw random sequences of xl operations (cpupool-create with a random "
            "scheduler, cpupool-destroy, cpupool-cpu-add/-remove, pCPU moves, "
            "cpupool-migrate, create, destroy, vcpu-pin; invalid ones included) at a "
            "host whose pCPU threads hammer schedule() with vCPU traffic. After every "
            "operation the host is compared with a reference model of membership "
            "(free pCPUs, pools, domains, each pCPU's scheduler and lock, Xen's errno "
            "for a refusal), and every check of the emulated Xen is watched. "
            "Hypothesis generates the sequences and shrinks a failing one, which is "
            "printed as an xl script with the command that replays it. The search "
            "(--duration) and the shrink (--shrink-duration) have a budget each, and "
            "the report says how long each took. The seed is printed first."
        ),
        epilog=(
            "exit status: 0 nothing found, 1 violations, 2 usage error, 3 deadlock, 4 "
            "a report file could not be written at the end; Ctrl-C, SIGTERM or SIGHUP "
            "stop it with the partial report printed and written, exit 128 + the "
            "signal (130, 143, 129). The example database is "
            f"{DATABASE} in the working directory."
        ),
    )
    p.add_argument(
        "--duration",
        type=seconds(MAX_SECONDS),
        default=10.0,
        metavar="S",
        help="search for S seconds (default: 10; checked before every operation); "
        "a failure ends the search earlier, and its shrink has a budget of its own",
    )
    p.add_argument(
        "--shrink-duration",
        type=seconds(MAX_SECONDS),
        default=SHRINK_DURATION,
        metavar="S",
        help="shrink a failing sequence for S seconds at most, counted from the "
        f"failure, apart from --duration (default: {SHRINK_DURATION:g}); past it the "
        "shortest failing sequence so far is reported",
    )
    p.add_argument(
        "--seed",
        type=seed_option,
        default=None,
        metavar="S",
        help="base seed (default: $XENSCHED_SEED or a fresh one, printed first)",
    )
    p.add_argument(
        "--cpus",
        type=integer(2, MAX_CPUS),
        default=4,
        metavar="N",
        help="pCPUs of the host (default: 4)",
    )
    p.add_argument(
        "--boot",
        choices=list(SCHEDULERS),
        default="credit",
        help="boot scheduler, Pool-0's (default: credit)",
    )
    p.add_argument(
        "--protocol",
        # Checked with the rest of the config (check_protocol in _main),
        # for a one-line error naming the part or module at fault, as stress does.
        default=None,
        metavar="SPEC",
        help="schedule_cpu_switch protocol: legacy, fixed, fixed-without:PART[,...] "
        "or MODULE:FUNCTION (default: fixed; see `xensched protocols`)",
    )
    add_mutant_option(p)
    add_memory_model_option(p)
    add_lockdep_option(p)
    add_race_detector_option(p)
    p.add_argument(
        "--traffic",
        type=probability,
        default=0.2,
        metavar="P",
        help="chance of a vCPU wake/sleep/migrate after each schedule() of a pCPU "
        "thread (default: 0.2)",
    )
    p.add_argument(
        "--replay",
        metavar="FILE",
        help="run the xl script FILE (one operation per line, as fuzz prints it) "
        "instead of generating sequences, with the same checks",
    )
    p.add_argument(
        "--runs",
        type=integer(1, 10_000),
        default=None,
        metavar="N",
        help="with --replay: run the script up to N times, a fresh host each, "
        "stopping at the first failure (default: 1; the replay command of a failure "
        f"that depends on the interleaving says {FLAKY_RUNS})",
    )
    p.add_argument(
        "--script",
        metavar="FILE",
        help="where to write the shrunk failing sequence (default: "
        "xensched-fuzz-SEED.xl in the working directory)",
    )
    p.add_argument(
        "--no-explore",
        dest="explore",
        action="store_false",
        help="do not run a failing script under the explorer (by default it gets "
        f"{EXPLORE_RUNS} random runs, and a replay file when they fail)",
    )
    p.add_argument(
        "--json",
        metavar="FILE",
        help='also write the report, with "violations" as xensched stress has them, '
        "to FILE (written even when interrupted)",
    )
    add_progress_option(p)
    return p


def _figures_json(figures: SearchFigures | ShrinkFigures) -> dict[str, object]:
    """A part's figures for the JSON: its fields, in order, the seconds rounded."""
    out = asdict(figures)
    out["seconds"] = round(figures.seconds, 3)
    return out


@dataclass(frozen=True, slots=True)
class SearchFigures:
    """The search for a failing sequence: from the start to the first failure (or
    to the end, when nothing failed)."""

    #: ``--duration``.
    budget: float
    seconds: float
    examples: int
    operations: int
    #: What ended it: ``"failure"``, ``"budget"`` or ``"interrupted"``.
    stopped: str

    def to_json(self) -> dict[str, object]:
        return _figures_json(self)

    def line(self) -> str:
        why = {
            "failure": "until the first failure",
            "budget": "until the budget ran out; nothing to shrink",
            "interrupted": "until interrupted; nothing to shrink",
        }[self.stopped]
        return (
            f"searched for {self.seconds:.1f}s (budget {self.budget:g}s): "
            f"{self.examples} examples, {self.operations} xl operations, {why}"
        )


@dataclass(frozen=True, slots=True)
class ShrinkFigures:
    """The shrink of the failing sequence: from the first failure to the end."""

    #: ``--shrink-duration``.
    budget: float
    seconds: float
    #: Hypothesis's shrink examples (the campaign's machine), and the shrink by
    #: replay's runs (a failure Hypothesis could not replay; not counted in the
    #: campaign's examples).
    examples: int
    operations: int
    replays: int
    #: Operations of the first failing sequence, and of the one reported.
    before: int
    after: int
    #: ``"done"`` (nothing more to try), ``"budget"`` (the shortest failing
    #: sequence so far) or ``"interrupted"`` (the same).
    stopped: str

    def to_json(self) -> dict[str, object]:
        return _figures_json(self)

    def line(self) -> str:
        replays = f", {self.replays} replays" if self.replays else ""
        why = {
            "done": "",
            "budget": "; stopped at its budget: the shortest failing sequence so far",
            "interrupted": "; interrupted: the shortest failing sequence so far",
        }[self.stopped]
        return (
            f"shrunk for {self.seconds:.1f}s (budget {self.budget:g}s): "
            f"{self.examples} examples, {self.operations} xl operations{replays}: "
            f"{self.before} operations down to {self.after}{why}"
        )


@dataclass
class FuzzReport:
    """What a campaign found; :meth:`to_json` is the ``--json`` report."""

    seed: int
    config: FuzzConfig
    mutant: str | None
    examples: int = 0
    operations: int = 0
    schedules: int = 0
    refusals: dict[str, int] = field(default_factory=dict)
    transient: int = 0
    seconds: float = 0.0
    violations: list[Violation] = field(default_factory=list)
    script: list[str] = field(default_factory=list)
    script_file: str | None = None
    replay_command: str | None = None
    explorer: dict[str, object] | None = None
    #: After a deadlock: every thread's stack and every lock's owner.
    deadlock: str | None = None
    flaky: bool = False
    #: A flaky failure's sequence before shrink_by_replay, in operations.
    unshrunk: int | None = None
    complete: bool = True
    #: A campaign's two parts (None under --replay; ``shrink`` None when nothing
    #: failed). ``seconds``, ``examples`` and ``operations`` are their sums.
    search: SearchFigures | None = None
    shrink: ShrinkFigures | None = None

    def take_figures(self, machine: type[XlFuzzMachine], seconds: float) -> None:
        """The campaign figures a machine class counted, and the time it took."""
        self.examples = machine.examples
        self.operations = machine.operations
        self.schedules = machine.schedules
        self.refusals = dict(machine.refusals)
        self.transient = machine.transient
        self.seconds = seconds

    @property
    def exit_code(self) -> int:
        if not self.complete:
            return EXIT_INTERRUPTED
        if any(v.kind is ViolationKind.DEADLOCK for v in self.violations):
            return EXIT_DEADLOCK
        return EXIT_FOUND if self.violations else EXIT_OK

    def to_json(self) -> dict[str, object]:
        c = self.config
        return {
            "xensched": xensched.__version__,
            "seed": self.seed,
            "complete": self.complete,
            "config": {
                "cpus": c.cpus,
                "boot": c.boot,
                "protocol": c.protocol,
                "edits": list(c.edits),
                "memory_model": c.memory_model,
                "lockdep": c.lockdep,
                "race_detector": c.race_detector,
                "traffic": c.traffic,
            },
            "mutant": self.mutant,
            "examples": self.examples,
            "operations": self.operations,
            "schedules": self.schedules,
            "refusals": dict(sorted(self.refusals.items())),
            "transient_refusals": self.transient,
            "seconds": round(self.seconds, 3),
            "search": self.search.to_json() if self.search is not None else None,
            "shrink": self.shrink.to_json() if self.shrink is not None else None,
            "violations": [v.to_json() for v in self.violations],
            "script": self.script,
            "script_file": self.script_file,
            "replay_command": self.replay_command,
            "flaky": self.flaky,
            "unshrunk_operations": self.unshrunk,
            "deadlock": self.deadlock,
            "explorer": self.explorer,
        }


def _run_campaign(
    cfg: FuzzConfig,
    duration: float,
    report: FuzzReport,
    show: bool,
    stop: threading.Event,
    shrink_duration: float = SHRINK_DURATION,
) -> None:
    """Search for ``duration`` seconds at most, then shrink a failure for
    ``shrink_duration`` seconds at most, counted from it (the two budgets apart).

    Past either budget the machine stops Hypothesis before its next operation
    (:class:`BudgetSpent`): a search batch is cut short, and a shrink cut short
    leaves the shortest failing sequence seen, which is reported, as it is when a
    signal stops the shrink."""
    machine = machine_class(cfg)
    db = DirectoryBasedExampleDatabase(DATABASE)
    t0 = time.monotonic()
    machine.search_deadline = t0 + duration
    machine.shrink_seconds = shrink_duration
    last_shown = [0.0]

    def on_step(cls: type[XlFuzzMachine]) -> None:
        now = time.monotonic()
        if show and now - last_shown[0] >= 0.5:
            last_shown[0] = now
            sys.stderr.write(
                f"\r\x1b[K{now - t0:5.1f}s  {cls.examples} examples, "
                f"{cls.operations} xl operations"
                + (", shrinking" if cls.first_failure is not None else "")
            )
            sys.stderr.flush()

    machine.on_step = on_step
    batch = 0
    failing: list[str] | None = None
    shrink_end = "done"
    replayed = ReplayShrink()
    interrupted = False

    def take_shortest() -> None:
        """The shortest failing sequence seen stands for the shrunk one."""
        nonlocal failing
        if failing is None and machine.shortest_failure is not None:
            failing, failure = machine.shortest_failure
            report.violations = failure.violations
            report.deadlock = failure.dump

    try:
        while time.monotonic() - t0 < duration and not stop.is_set():
            batch_settings = settings(
                max_examples=BATCH,
                stateful_step_count=STEPS,
                deadline=None,
                database=db,
                suppress_health_check=list(HealthCheck),
                report_multiple_bugs=False,
                print_blob=False,
                phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
            )
            hypothesis_seed(derive_seed(cfg.seed, f"fuzz-batch-{batch}"))(machine)
            batch += 1
            try:
                # Hypothesis prints the falsifying steps: to the terminal's stderr
                # when progress shows, else nowhere (the report prints the script).
                with contextlib.redirect_stdout(sys.stderr if show else io.StringIO()):
                    run_state_machine_as_test(machine, settings=batch_settings)
            except FuzzFailure as e:
                # Hypothesis ran the shrunk sequence last: ``last_log`` is its.
                report.violations = e.violations
                report.deadlock = e.dump
                break
            except BudgetSpent as e:
                if e.phase == "shrink":
                    shrink_end = "budget"
                    take_shortest()
                break  # "search": nothing failed within the budget
            except Flaky as e:
                # The failure depended on the interleaving: the shrunk sequence did
                # not fail again, and the last sequence run is one that passed. The
                # shortest one that failed is the machine's ``shortest_failure``.
                report.flaky = True
                shortest = machine.shortest_failure
                if shortest is not None:
                    failing, failure = shortest
                    report.violations = failure.violations
                    report.deadlock = failure.dump
                    report.unshrunk = len(failing)
                    first = machine.first_failure
                    spent = time.monotonic() - first.at if first is not None else 0.0
                    failing, failure = shrink_by_replay(
                        machine,
                        failing,
                        failure,
                        max(0.0, shrink_duration - spent),
                        progress=replayed,
                    )
                    report.violations = failure.violations
                    report.deadlock = failure.dump
                    shrink_end = "done" if replayed.complete else "budget"
                else:
                    report.violations = _first_failure(e) or [
                        Violation(ViolationKind.CRASH, None, "fuzz", str(e), "xl")
                    ]
                break
    except KeyboardInterrupt:
        # A failure found before the signal is not lost.
        interrupted = True
        take_shortest()
        raise
    finally:
        end = time.monotonic()
        report.take_figures(machine, end - t0)
        report.script = list(machine.last_log if failing is None else failing)
        interrupted = interrupted or stop.is_set()
        first = machine.first_failure
        if first is None:
            report.search = SearchFigures(
                duration,
                end - t0,
                machine.examples,
                machine.operations,
                "failure"
                if report.violations
                else "interrupted"
                if interrupted
                else "budget",
            )
        else:
            report.search = SearchFigures(
                duration, first.at - t0, first.examples, first.operations, "failure"
            )
            report.shrink = ShrinkFigures(
                shrink_duration,
                end - first.at,
                machine.examples - first.examples,
                machine.operations - first.operations,
                replayed.replays,
                first.length,
                len(report.script),
                "interrupted" if interrupted else shrink_end,
            )
        if show:
            sys.stderr.write("\n")


def _first_failure(e: BaseException) -> list[Violation] | None:
    seen: list[BaseException] = [e]
    while seen:
        x = seen.pop()
        if isinstance(x, FuzzFailure):
            return x.violations
        seen.extend(getattr(x, "exceptions", ()) or ())
        if x.__cause__ is not None:
            seen.append(x.__cause__)
        if x.__context__ is not None:
            seen.append(x.__context__)
    return None


def _replay_script(
    cfg: FuzzConfig, lines: list[str], report: FuzzReport, runs: int = 1
) -> None:
    """Run the script's operations in order on a hammered host, up to ``runs`` times
    (a fresh host each), until one run fails."""
    t0 = time.monotonic()
    machine = machine_class(cfg)
    try:
        for _ in range(runs):
            failure = run_script(machine, lines)
            if failure is not None:
                report.violations = failure.violations
                report.deadlock = failure.dump
                break
    finally:
        report.take_figures(machine, time.monotonic() - t0)
        report.script = list(machine.last_log)


def read_script(path: str) -> list[str]:
    """The operations of an xl script: one per line, ``xl`` optional, ``#`` comments.

    Raises:
        ConfigError: unreadable, or a line that is not an operation fuzz runs.
    """
    text = read_text(path, f"--replay {path}")
    ops = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        if words[0] == "xl":
            words = words[1:]
        op = XlOp(words[0], tuple(words[1:])) if words else XlOp("")
        why = op.problem()
        if not why and op.verb not in _FUZZ_VERBS:
            why = f"fuzz does not run {op.verb!r}; it runs {', '.join(_FUZZ_VERBS)}"
        if why:
            raise ConfigError(f"--replay {path}:{n}: {why}")
        ops.append(str(op))
    return ops


_FUZZ_VERBS = tuple(
    v
    for v in XL_VERBS
    if v not in ("vcpu-migrate", "vcpu-sleep", "vcpu-wake", *SETUP_ONLY_VERBS)
)


def _explore_script(
    cfg: FuzzConfig, script: str, report: FuzzReport, prog: str
) -> None:
    """Run the failing script under the explorer, bounded; record what it found."""
    sc = script_scenario(cfg, report.script)
    base = os.path.splitext(script)[0]
    scenario_file = base + ".scenario.json"
    replay_file = base + ".replay.json"
    try:
        write_text_atomic(scenario_file, sc.to_json() + "\n")
    except OSError as e:
        report.explorer = {"ran": False, "why": f"{scenario_file}: {e}"}
        return
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "explore.json")
        argv = [
            sys.executable,
            "-m",
            "xensched",
            "explore",
            "--scenario",
            scenario_file,
            "--strategy",
            "random",
            "--runs",
            str(EXPLORE_RUNS),
            "--seed",
            str(cfg.seed),
            "--replay-out",
            replay_file,
            "--no-progress",
            "--json",
            out,
        ]
        if cfg.lockdep:
            argv.append("--lockdep")
        if cfg.race_detector:
            argv.append("--race-detector")
        try:
            subprocess.run(argv, capture_output=True, timeout=300, check=False)
            with open(out, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError, subprocess.TimeoutExpired) as e:
            report.explorer = {"ran": False, "why": str(e)}
            return
    kinds = sorted({v["kind"] for v in data.get("violations", [])})
    found = bool(kinds) and os.path.exists(replay_file)
    report.explorer = {
        "ran": True,
        "runs": data.get("runs"),
        "kinds": kinds,
        "scenario": scenario_file,
        "replay_file": replay_file if found else None,
    }


class _Stop:
    """Ctrl-C, SIGTERM and SIGHUP: the first one asks the machine to stop before its
    next operation (so that no emulated lock is left held); a second Ctrl-C raises at
    once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.event = threading.Event()

    def __call__(self, signum: int) -> None:
        if self.signum is not None:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        self.signum = signum
        self.event.set()

    @contextlib.contextmanager
    def sigint(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        old = signal.signal(signal.SIGINT, lambda n, f: self(n))
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, old)


def main(argv: Sequence[str] | None = None, *, prog: str = "xensched fuzz") -> int:
    stop = _Stop()
    with stop_signals(stop), stop.sigint():
        return _main(argv, prog, stop)


def _err(prog: str, msg: str) -> int:
    print(f"{prog}: error: {msg}", file=sys.stderr)
    return EXIT_USAGE


def _main(argv: Sequence[str] | None, prog: str, stop: _Stop) -> int:
    parser = build_parser(prog)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    try:
        seed = resolve_base_seed(args.seed)
    except ValueError as e:
        return _err(prog, str(e))
    m: Mutant | None = args.mutant
    try:
        protocol = check_protocol(mutant_protocol(args.protocol, m) or "fixed")
        cfg = FuzzConfig(
            cpus=args.cpus,
            boot=args.boot,
            protocol=protocol,
            edits=tuple(sorted(m.edits)) if m is not None else (),
            memory_model=args.memory_model,
            lockdep=bool(args.lockdep),
            race_detector=bool(args.race_detector),
            seed=seed,
            traffic=args.traffic,
        )
        cfg.scenario().validate()
        if args.runs is not None and args.replay is None:
            raise ConfigError("--runs N goes with --replay FILE")
        lines = read_script(args.replay) if args.replay is not None else None
        script = args.script or f"xensched-fuzz-{seed}.xl"
        # Under --replay no script is written: --script is no output then.
        check_output_paths(
            ("--json", args.json),
            ("--script", script if lines is None else None),
            inputs=[(f"the script {shlex.quote(args.replay)}", args.replay)]
            if args.replay is not None
            else [],
        )
    except (ConfigError, OutputPathError) as e:
        return _err(prog, str(e))
    mutant = f" mutant={m.name}" if m is not None else ""
    print(f"seed={seed}{mutant}", flush=True)
    print(
        f"xensched {xensched.__version__} fuzz: {cfg.cpus} pCPUs (boot {cfg.boot}), "
        f"protocol {cfg.protocol}"
        + (f", edits {', '.join(cfg.edits)}" if cfg.edits else "")
        + (f", memory model {cfg.memory_model}" if cfg.memory_model != "sc" else "")
        + (", lockdep on" if cfg.lockdep else "")
        + (", race detector on" if cfg.race_detector else "")
        + (
            f", replaying {args.replay}"
            if lines is not None
            else f", {args.duration:g} s (shrink {args.shrink_duration:g} s), "
            f"example database {DATABASE}"
        ),
        flush=True,
    )
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    report = FuzzReport(seed, cfg, m.name if m is not None else None)
    XlFuzzMachine.stop = stop.event
    try:
        if lines is not None:
            _replay_script(cfg, lines, report, args.runs or 1)
        else:
            _run_campaign(
                cfg, args.duration, report, show, stop.event, args.shrink_duration
            )
        if stop.event.is_set():
            report.complete = False
    except KeyboardInterrupt:
        report.complete = False
    except (XenschedError, XenError) as e:
        report.violations.append(
            Violation(
                ViolationKind.CRASH, None, "fuzz", f"{type(e).__name__}: {e}", "xl"
            )
        )
    finally:
        XlFuzzMachine.stop = None
    if stop.signum is not None:
        print(
            f"{prog}: {signal_name(stop.signum)} received: partial report",
            file=sys.stderr,
            flush=True,
        )
    failed: list[str] = []
    # Interrupted while shrinking: the shortest failing sequence so far is written
    # too (a failure found is not lost), but not explored.
    if (
        report.violations
        and lines is None
        and (report.complete or report.shrink is not None)
    ):
        failed += _write_script(prog, args, cfg, m, script, report)
    _print(report)
    if args.json is not None:
        problem = write_json_report("--json", args.json, report.to_json())
        if problem is not None:
            failed.append(problem)
        else:
            print(f"report written to {args.json}", flush=True)
    for problem in failed:
        print(f"{prog}: error: {problem}", file=sys.stderr)
    code = report.exit_code
    if code == EXIT_INTERRUPTED and stop.signum is not None:
        code = 128 + stop.signum  # as reproduce and litmus: 143 SIGTERM, 129 SIGHUP
    return EXIT_NOT_WRITTEN if failed and code == EXIT_OK else code


def _write_script(
    prog: str,
    args: argparse.Namespace,
    cfg: FuzzConfig,
    m: Mutant | None,
    script: str,
    report: FuzzReport,
) -> list[str]:
    replay = ["--replay", script, "--cpus", str(cfg.cpus), "--boot", cfg.boot]
    replay += ["--mutant", m.name] if m is not None else ["--protocol", cfg.protocol]
    if m is not None and args.protocol is not None:
        replay += ["--protocol", cfg.protocol]
    if cfg.memory_model != "sc":
        replay += ["--memory-model", cfg.memory_model]
    if cfg.lockdep:
        replay.append("--lockdep")
    if cfg.race_detector:
        replay.append("--race-detector")
    replay += ["--seed", str(cfg.seed)]
    if report.flaky:
        replay += ["--runs", str(FLAKY_RUNS)]
    report.replay_command = f"{prog} {shlex.join(replay)}"
    header = [
        f"# xensched fuzz seed={cfg.seed}: {report.violations[0].describe().splitlines()[0]}",
        f"# replay: {report.replay_command}",
    ]
    try:
        write_text_atomic(
            script, "\n".join([*header, *(f"xl {o}" for o in report.script)]) + "\n"
        )
    except OSError as e:
        return [f"--script {shlex.quote(script)}: not written: {e.strerror or e}"]
    report.script_file = script
    if args.explore and args.replay is None and report.complete:
        _explore_script(cfg, script, report, prog)
    return []


def _print(report: FuzzReport) -> None:
    refused = ", ".join(f"{k} {n}" for k, n in sorted(report.refusals.items()))
    print(
        f"{report.examples} examples, {report.operations} xl operations "
        f"({refused or 'none refused'}), {report.schedules:,} schedule() calls "
        f"in {report.seconds:.1f}s",
        flush=True,
    )
    for part in (report.search, report.shrink):
        if part is not None:
            print(part.line(), flush=True)
    if report.transient:
        print(
            f"{report.transient} cpupool-cpu-remove still refused after "
            "every retry while vCPUs were moved off (allowed: host unchanged)",
            flush=True,
        )
    if not report.complete:
        print("interrupted: partial report", flush=True)
    if not report.violations:
        print("no violation", flush=True)
        return
    print(f"{len(report.violations)} violation(s):", flush=True)
    for v in report.violations[:_SHOWN]:
        print(f"  {v.describe()}", flush=True)
    if len(report.violations) > _SHOWN:
        more = len(report.violations) - _SHOWN
        print(f"  ... and {more} more (all of them in --json)", flush=True)
    if report.deadlock is not None:
        print("deadlock:", flush=True)
        for line in report.deadlock.splitlines():
            print(f"  {line}", flush=True)
    if report.flaky:
        how = ""
        if report.unshrunk is not None:
            how = (
                f", shrunk by replaying it from {report.unshrunk} operations"
                if report.unshrunk > len(report.script)
                else ", which replaying could not shorten"
            )
        print(
            "the failure depended on the interleaving: Hypothesis could not make the "
            f"shrunk sequence fail again; the sequence below failed{how} (a replay "
            "may need several runs)",
            flush=True,
        )
    if report.script:
        shrunk = report.script_file is not None
        print("shrunk sequence:" if shrunk else "sequence:", flush=True)
        for o in report.script:
            print(f"  xl {o}", flush=True)
    if report.script_file is not None:
        print(f"script written to {report.script_file}", flush=True)
        print(f"replay: {report.replay_command}", flush=True)
    ex = report.explorer
    if ex is not None:
        if ex.get("replay_file"):
            print(
                f"explorer: {', '.join(str(k) for k in _kinds(ex))} in the script's "
                f"scenario; replay: xensched replay {ex['replay_file']}",
                flush=True,
            )
        elif ex.get("ran"):
            print(
                f"explorer: nothing in {ex.get('runs')} controlled runs of the script "
                "(the failure needs free-running timing the bounded exploration did "
                "not reach)",
                flush=True,
            )


def _kinds(ex: dict[str, object]) -> list[object]:
    kinds = ex.get("kinds")
    return list(kinds) if isinstance(kinds, list) else []


#: ``xensched fuzz``, found through the ``xensched.commands`` entry-point group.
COMMAND = ExternalCommand(
    summary="fuzz xl cpupool sequences against a hammered host (Hypothesis)",
    main=lambda argv, prog: main(argv, prog=prog),
)
