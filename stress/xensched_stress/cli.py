"""``xensched stress``: hammer ``schedule()`` on every pCPU while cpupools move.

Prints ``seed=...`` first (flushed), live progress on stderr when it is a terminal,
then the report. Exit codes: 0 no violation, 1 violations, 2 usage error, 3 deadlock,
4 no violation but ``--json FILE`` could not be written at the end, 5 harness error
(the threads could not be started; the report says why). ``--json FILE`` is
checked before the run and written (atomically, after the text report) whatever the
outcome, Ctrl-C and deadlock included; so is ``--timeline FILE``, the picture of the
first violation (:mod:`xensched.timeline`), written only when there is one. Ctrl-C
(SIGINT), SIGTERM and SIGHUP all stop the run the same way, through
:func:`~xensched.signals.stop_signals`, from parsing to the last file written: the
partial report is printed and written, and the exit code is that of what was found
(not 128+signal: a CI job that timed out has already failed, and the code still tells
a violation from none). A second signal changes nothing.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

from xensched import SCHEDULERS, ConfigError, Topology
from xensched.cli import ExternalCommand
from xensched.host import MAX_CPUS
from xensched.options import (
    MAX_SECONDS,
    Parser,
    add_lockdep_option,
    add_memory_model_option,
    add_mutant_option,
    add_race_detector_option,
    integer,
    mutant_protocol,
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
from xensched.scenario import BUILTIN, MAX_DOMAIN_VCPUS, MAX_DOMAINS
from xensched.seeds import resolve_base_seed
from xensched.signals import STOP_SIGNALS, signal_name, stop_signals
from xensched.timeline import violation_mark, write_timeline

from .config import (
    MAX_CONTROLLERS,
    MAX_EVENTS,
    MAX_OPS,
    MAX_SHORT_SECONDS,
    MAX_VIOLATIONS,
    PoolSpec,
    StressConfig,
    scenario_from_options,
)
from .report import EXIT_OK, EXIT_USAGE
from .runner import run_stress

if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import TextIO

    from .report import StressReport
    from .runner import ProgressSnapshot, SetupProgress

_DEFAULTS = StressConfig()
#: Options that shape the host and the workload: ``None`` unless given, so that
#: beside ``--scenario`` only the given ones override its fields.
_SHAPE_OPTIONS = (
    "cpus",
    "topology",
    "boot",
    "pool",
    "protocol",
    "domains",
    "vcpus",
    "switch_interval",
    "controllers",
    "domain_moves",
    "traffic",
    "memory_model",
)

_EPILOG = """\
exit codes: 0 no violation, 1 violations found, 2 usage error (a --json or
--timeline FILE that cannot be written is refused before the run), 3 deadlock, 4 no
violation but --json FILE could not be written at the end (the text report is printed
first; with violations or a deadlock the exit code stays 1 or 3), 5 harness error
(the threads could not be started). Ctrl-C, SIGTERM and SIGHUP stop the run: the
partial report is printed and written (--json, --timeline), and the exit code is that
of what was found, never 128 + the signal.

The seed fixes every choice each thread makes (which vCPU, which pool, which delay);
the OS still interleaves the threads, so a rerun with the same seed is a new sample of
the same workload, not a replay. Example, the race of Xen commit 94734ab7c3:

  xensched stress --protocol legacy --boot credit --pool p1:credit2:2,3 --duration 5
"""


def _pool(text: str) -> PoolSpec:
    try:
        return PoolSpec.parse(text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def build_parser(prog: str = "xensched stress") -> argparse.ArgumentParser:
    p = Parser(
        prog=prog,
        description=(
            "Run one thread per emulated pCPU calling schedule() in a loop, with vCPU "
            "wake/sleep/migrate traffic, while control threads move pCPUs between "
            "cpupools (cpu-remove then cpu-add, as xl does) and migrate domains. "
            "Stops at the first violation (unless --keep-going), on a deadlock, or "
            "when the duration or op count is reached."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    host = p.add_argument_group(
        "host and workload",
        "Without --scenario these shape the default workload (the built-in "
        "stress-default). With a built-in's name, the options it has parameters "
        "for are its parameters (--scenario stress-default --cpus 8 is the default "
        "workload on 8 pCPUs). Any other option given, and every option beside a "
        "FILE, overrides that field of the scenario: --cpus, --topology, --boot, "
        "--protocol as they are; --pool replaces its pools; --domains/--vcpus its "
        "domains; --traffic every pCPU loop; --switch-interval, --domain-moves and "
        "--controllers its random toolstack threads; --memory-model its memory "
        "model. --mutant runs a mutant of the fix on whatever runs: its protocol "
        "(an explicit --protocol must be the same) and its edits.",
    )
    host.add_argument(
        "--scenario",
        metavar="NAME|FILE",
        help="run this scenario: a built-in name (see `xensched scenarios`), a JSON "
        "file (`xensched scenarios NAME --json` writes one) or inline JSON",
    )
    host.add_argument(
        "--cpus",
        # 1 for a scenario that needs no move; the default workload says it needs 2.
        type=integer(1, MAX_CPUS),
        metavar="N",
        help=f"number of pCPUs, 1 to {MAX_CPUS}; 1 only for a --scenario that needs no "
        f"move (default: {_DEFAULTS.cpus}, or the topology's count)",
    )
    host.add_argument(
        "--topology",
        type=topology,
        metavar="SxC",
        help="sockets x cores, e.g. 2x4; Credit2 makes one runqueue per socket "
        "(default: one socket)",
    )
    host.add_argument(
        "--boot",
        choices=list(SCHEDULERS),
        default=None,
        help="boot scheduler, used by Pool-0 and by free pCPUs (default: "
        f"{_DEFAULTS.boot})",
    )
    host.add_argument(
        "--pool",
        type=_pool,
        action="append",
        metavar="NAME:SCHED[:CPUS]",
        help="create a cpupool with its own scheduler instance and move CPUS (e.g. "
        "2,3 or 2-3) into it from Pool-0; repeatable (default: one pool p1 holding "
        "the upper half of the pCPUs, credit2 when booting credit, credit otherwise)",
    )
    # A spec, kept as given for the rerun line; StressConfig.validate() parses it,
    # so that a bad one is a one-line usage error naming the problem.
    host.add_argument(
        "--protocol",
        # Checked with the rest of the config, for a one-line error naming the part
        # or module at fault (an argparse type would print the usage first).
        default=None,
        metavar="SPEC",
        help="schedule_cpu_switch() before Xen commit 94734ab7c3 (legacy), after it "
        "(fixed), fixed-without:PART[,PART...] or a MODULE:FUNCTION of your own; see "
        f"`xensched protocols` (default: {_DEFAULTS.protocol}, or --mutant's)",
    )
    add_mutant_option(host)
    host.add_argument(
        "--domains",
        type=integer(0, MAX_DOMAINS),
        default=None,
        metavar="N",
        help=f"guest domains, 0 to {MAX_DOMAINS}, created in the pools round-robin; "
        "at most 4096 guest vCPUs in all, so that set-up (1.5 to 3 s for 4096 here) "
        f"fits the run (default: {_DEFAULTS.domains})",
    )
    host.add_argument(
        "--vcpus",
        type=integer(1, MAX_DOMAIN_VCPUS),
        default=None,
        metavar="N",
        help=f"vCPUs per guest domain, 1 to {MAX_DOMAIN_VCPUS} (default: "
        f"{_DEFAULTS.vcpus})",
    )
    # None unless given: beside --scenario, the scenario's own model stands.
    add_memory_model_option(
        host, default=None, default_text="sc, or the --scenario's own"
    )

    run = p.add_argument_group("run")
    add_lockdep_option(run)
    add_race_detector_option(run)
    bound = run.add_mutually_exclusive_group()
    bound.add_argument(
        "--duration",
        type=seconds(),
        metavar="S",
        help=f"stop after S seconds, at most {MAX_SECONDS:g}; the clock starts "
        "before the host is set up, so set-up counts against it (default: "
        f"{_DEFAULTS.duration:g})",
    )
    bound.add_argument(
        "--ops",
        type=integer(1, MAX_OPS),
        metavar="N",
        help=f"stop after N schedule() calls in total (1 to {MAX_OPS:.0e}), however "
        "long it takes",
    )
    run.add_argument(
        "--seed",
        type=seed_option,
        metavar="S",
        help="base seed of every thread's choices (default: $XENSCHED_SEED, else a "
        "fresh random one; printed first): 0 to 2**32-1, decimal or 0x hex",
    )
    run.add_argument(
        "--switch-interval",
        type=seconds(),
        default=None,
        metavar="S",
        help="seconds between two operations of a control thread (default: "
        f"{_DEFAULTS.switch_interval:g})",
    )
    run.add_argument(
        "--controllers",
        type=integer(0, MAX_CONTROLLERS),
        default=None,
        metavar="N",
        help=f"control threads moving pCPUs and domains, 0 to {MAX_CONTROLLERS}, each "
        f"an xl of its own (default: {_DEFAULTS.controllers})",
    )
    run.add_argument(
        "--domain-moves",
        type=probability,
        default=None,
        metavar="P",
        help="fraction of control operations that are cpupool-migrate of a domain "
        f"rather than a pCPU move (default: {_DEFAULTS.domain_moves:g})",
    )
    run.add_argument(
        "--traffic",
        type=probability,
        default=None,
        metavar="P",
        help="after each schedule(), probability of a vCPU wake, sleep or migrate "
        f"(default: {_DEFAULTS.traffic:g})",
    )
    run.add_argument(
        "--delay-injection",
        type=probability,
        default=_DEFAULTS.delay_injection,
        metavar="P",
        help="with probability P, a short seeded random delay at each interaction "
        "point, KCSAN style, to widen race windows (default: %(default)g, off)",
    )
    run.add_argument(
        "--max-delay",
        type=seconds(MAX_SHORT_SECONDS),
        default=_DEFAULTS.max_delay,
        metavar="S",
        help="upper bound of one injected delay in seconds, at most "
        f"{MAX_SHORT_SECONDS:g} (default: %(default)g)",
    )
    run.add_argument(
        "--gil-switch-interval",
        type=seconds(MAX_SHORT_SECONDS),
        default=_DEFAULTS.gil_switch_interval,
        metavar="S",
        help="sys.setswitchinterval() for the run, restored afterwards; lower means "
        "finer interleaving on a GIL build; at most 1 (default: %(default)g)",
    )
    run.add_argument(
        "--keep-going",
        action="store_true",
        help="count every violation instead of stopping at the first",
    )
    run.add_argument(
        "--trace-all",
        action="store_true",
        help="keep every load in the event traces of the report, each named after "
        "its Xen function (default: loads left out and only lock attempts named; "
        "this costs throughput)",
    )
    run.add_argument(
        "--watchdog",
        type=seconds(),
        default=_DEFAULTS.watchdog,
        metavar="S",
        help="declare a deadlock (exit 3) when no pCPU makes progress for S seconds "
        "(default: %(default)g)",
    )
    run.add_argument(
        "--lock-timeout",
        type=seconds(),
        metavar="S",
        help="bound of every emulated lock wait; one that runs out is a deadlock "
        "(exit 3) (default: the --watchdog bound)",
    )

    out = p.add_argument_group("output")
    out.add_argument(
        "--json",
        metavar="FILE",
        help="also write the report as JSON to FILE (written even on Ctrl-C, "
        "SIGTERM, SIGHUP or deadlock)",
    )
    out.add_argument(
        "--timeline",
        metavar="FILE",
        help="also draw the first violation's interleaving to FILE, one lane per "
        "thread with its lock holds, waits and critical sections and a red line at "
        "the violation: .svg a picture, .html a page holding it, anything else "
        "Chrome trace-event JSON for ui.perfetto.dev or chrome://tracing (written "
        "even on Ctrl-C, SIGTERM or SIGHUP; nothing is written when the run finds "
        "no violation)",
    )
    out.add_argument(
        "--max-violations",
        type=integer(1, MAX_VIOLATIONS),
        default=_DEFAULTS.max_violations,
        metavar="N",
        help="keep the first N violations in full, and the first of each kind; count "
        "the rest by kind only, so that a --keep-going run of any length has a "
        f"report (and memory) of bounded size; 1 to {MAX_VIOLATIONS} (default: "
        "%(default)s)",
    )
    out.add_argument(
        "--max-events",
        type=integer(0, MAX_EVENTS),
        default=_DEFAULTS.max_events,
        metavar="N",
        help=f"events that led to it kept with each violation, 0 to {MAX_EVENTS} "
        "(default: %(default)s)",
    )
    out.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="live progress on stderr (default: only when stderr is a terminal)",
    )
    return p


def config_from_args(args: argparse.Namespace, seed: int) -> StressConfig:
    """The :class:`StressConfig` that parsed options describe.

    Raises:
        ConfigError: ``--scenario`` names no scenario, or an override makes it
            invalid.
    """
    duration = args.duration
    if args.ops is None and duration is None:
        duration = _DEFAULTS.duration
    run = {
        "duration": duration,  # None with --ops: the two are mutually exclusive
        "ops": args.ops,
        "seed": seed,
        "delay_injection": args.delay_injection,
        "keep_going": args.keep_going,
        "trace_all": args.trace_all,
        "watchdog": args.watchdog,
        "max_delay": args.max_delay,
        "gil_switch_interval": args.gil_switch_interval,
        "lock_timeout": args.lock_timeout,
        "max_violations": args.max_violations,
        "max_events": args.max_events,
        "lockdep": args.lockdep,
        "race_detector": args.race_detector,
        "mutant": None if args.mutant is None else args.mutant.name,
    }
    given = {
        name: getattr(args, name)
        for name in _SHAPE_OPTIONS
        if getattr(args, name) is not None
    }
    protocol = mutant_protocol(args.protocol, args.mutant)  # refuses a disagreeing one
    m = args.mutant
    if m is not None and args.protocol is None:
        # The mutant's own protocol runs, fixed for an edit, even on a --scenario of
        # another. Beside a --scenario, a protocol mutant's is left to
        # StressConfig.to_scenario: a built-in then keeps its name in the rerun line.
        keep = args.scenario is not None and m.protocol != "fixed"
        protocol = None if keep else m.protocol
    if protocol is not None:
        given["protocol"] = protocol
    if args.scenario is not None:
        sc = scenario_from_options(args.scenario, **given)
        return StressConfig(scenario=sc, **run)
    cpus = args.cpus
    if cpus is None:
        cpus = (
            Topology.parse(args.topology).nr_cpus
            if args.topology is not None
            else _DEFAULTS.cpus
        )
    shape: dict[str, Any] = {
        name: given.get(name, getattr(_DEFAULTS, name))
        for name in _SHAPE_OPTIONS
        if name != "pool"
    }
    shape.update(cpus=cpus, pools=tuple(args.pool or ()))
    return StressConfig(**shape, **run)


class _Progress:
    """The live progress line: refreshed in place on a terminal, else one a second."""

    def __init__(self, stream: TextIO, in_place: bool) -> None:
        self._stream = stream
        self._in_place = in_place
        self._last = -1.0
        self._shown = False

    def __call__(self, snap: ProgressSnapshot) -> None:
        if not self._in_place and snap.elapsed - self._last < 1.0:
            return
        self._last = snap.elapsed
        line = (
            f"[{snap.elapsed:7.1f}s] {snap.ops} schedule() ({snap.ops_per_s:,.0f}/s), "
            f"{snap.switches} pCPU switches, {snap.domain_moves} domain moves, "
            f"{snap.violations} violation{'s' if snap.violations != 1 else ''}"
        )
        if self._in_place:
            print(f"\r{line}\x1b[K", end="", file=self._stream, flush=True)
        else:
            print(line, file=self._stream, flush=True)
        self._shown = True

    def setup(self, snap: SetupProgress) -> None:
        """The host's set-up, shown only when it takes a while (many domains)."""
        early = snap.elapsed - self._last < 1.0 and snap.done < snap.total
        if not self._in_place and early:
            return
        self._last = snap.elapsed
        line = f"[{snap.elapsed:7.1f}s] set-up: {snap.done}/{snap.total} steps"
        if self._in_place:
            print(f"\r{line}\x1b[K", end="", file=self._stream, flush=True)
        else:
            print(line, file=self._stream, flush=True)
        self._shown = True

    def close(self) -> None:
        if self._in_place and self._shown:
            print(file=self._stream, flush=True)


def main(
    argv: Sequence[str] | None = None,
    *,
    prog: str = "xensched stress",
    stop: threading.Event | None = None,
) -> int:
    """Run ``xensched stress``; returns the exit code (0, 1, 2, 3, 4 or 5).

    SIGINT, SIGTERM and SIGHUP set ``stop`` (made when not given) while it runs, from
    the main thread: the run then ends through its Ctrl-C path, its partial report
    printed and written; a signal that lands after the run (in the final audit, or
    while the report is written) changes nothing.
    """
    if stop is None:
        stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int) -> None:
        # Only the event: the run ends through its Ctrl-C path, and a later signal
        # (during teardown, or while the report is written) changes nothing. Once
        # only: set() takes a lock, which a handler nested in it (a second signal
        # arriving there) would wait for forever.
        if received:
            return
        received.append(signum)
        stop.set()

    # Until the report is out, so that no signal can cut it short: Ctrl-C too, which
    # as a KeyboardInterrupt could land past the run's own handling of it (in the
    # final audit, the report, the JSON write) and lose the report.
    with stop_signals(on_signal, (signal.SIGINT, *STOP_SIGNALS)):
        return _main(argv, prog, stop, received)


def _main(
    argv: Sequence[str] | None,
    prog: str,
    stop: threading.Event,
    received: Sequence[int],
) -> int:
    parser = build_parser(prog)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: 2 on usage errors, 0 on --help
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    try:
        seed = resolve_base_seed(args.seed)
    except ValueError as e:  # a bad XENSCHED_SEED
        print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        cfg = config_from_args(args, seed)
        cfg.validate()
    except ConfigError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        check_output_paths(
            ("--json", args.json),
            ("--timeline", args.timeline),
            inputs=[(f"the scenario file {shlex.quote(args.scenario)}", args.scenario)]
            if args.scenario is not None and args.scenario not in BUILTIN
            else [],
        )
    except OutputPathError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    # The seed line first, as it always is: a mutant is named on the same line.
    mutant = f" mutant={cfg.mutant}" if cfg.mutant is not None else ""
    print(f"seed={seed}{mutant}", flush=True)
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    bar = _Progress(sys.stderr, in_place=sys.stderr.isatty()) if show else None
    try:
        try:
            report = run_stress(
                cfg,
                progress=bar,
                stop=stop,
                setup_progress=None if bar is None else bar.setup,
            )
        finally:
            if bar is not None:
                bar.close()  # ends the progress line before anything else prints
    except ConfigError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    if received and received[0] != signal.SIGINT:  # Ctrl-C: the user knows
        print(
            f"{prog}: {signal_name(received[0])} received: run stopped, partial report",
            file=sys.stderr,
            flush=True,
        )
    print(report.render(), flush=True)
    # The text report is out before the files are tried: a full disk must not cost
    # it, and one file that fails must not cost the other.
    failed: list[str] = []
    if args.json is not None:
        problem = write_json_report("--json", args.json, report.to_json())
        if problem is not None:
            failed.append(problem)
        else:
            print(f"report written to {args.json}", flush=True)
    if args.timeline is not None:
        problem = _write_timeline(args.timeline, report)
        if problem is not None:
            failed.append(problem)
    for problem in failed:
        print(f"{prog}: error: {problem}", file=sys.stderr)
    code = report.exit_code
    if failed and code == EXIT_OK:
        return EXIT_NOT_WRITTEN
    return code


def _write_timeline(path: str, report: StressReport) -> str | None:
    """Draw the first violation to ``path`` (or say there is none).

    Returns:
        ``None`` once written or when there was nothing to draw, else the one line
        that says why it was not written.
    """
    if not report.violations:
        print(f"no violation: --timeline {path} not written", flush=True)
        return None
    v = report.violations[0]
    title = f"xensched stress seed={report.seed}: {v.describe().splitlines()[0]}"
    try:
        write_timeline(path, v.events, [violation_mark(v)], title=title)
    except OSError as e:
        return f"--timeline {shlex.quote(path)}: not written: {e.strerror or e}"
    print(f"timeline written to {path}", flush=True)
    return None


#: ``xensched stress``, found by ``xensched`` through its ``xensched.commands`` group.
COMMAND = ExternalCommand(
    summary="hammer schedule() on every pCPU while cpupools move",
    main=lambda argv, prog: main(argv, prog=prog),
)
