"""The ``xensched`` command: ``reproduce``, ``protocols``, ``scenarios``, ``litmus``,
``mutate``, and the commands other packages add.

Mirrors nothing in Xen. ``reproduce``, ``explore``, ``replay``, ``litmus``,
``mutate``, ``protocols`` and ``scenarios`` are built in; other subcommands (the stress harness's
``stress`` and ``bench``) are found through the entry-point group
``xensched.commands``, each naming an :class:`ExternalCommand`. So
this package never imports the stress harness: the dependency goes from
``xensched_stress`` to ``xensched`` only, and ``xensched`` works without it installed.

``--protocol SPEC`` (``reproduce``, ``stress``) takes any protocol spec: ``legacy``,
``fixed``, ``fixed-without:PART[,PART...]`` or a user's ``MODULE:FUNCTION``
(``xensched.protocol``); ``xensched protocols`` lists the presets and parts.

Exit codes: 0 the run completed (for ``reproduce`` the verdicts are data), 1 violations
found (``stress``) or a ``weaker`` verdict (``litmus``), 2 usage error, 3 deadlock
(``stress``), 4 a report file could not be written at the end (when nothing above
applies; ``xensched.outputs``), 130 interrupted. ``reproduce`` takes SIGTERM and
SIGHUP as it takes Ctrl-C (partial table and JSON) and exits 128 + the signal's
number: 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import textwrap
import threading
import time
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, TextIO, cast

import xensched
from xensched.errors import ConfigError, XenschedError
from xensched.explore.command import add_explore_parser, add_replay_parser
from xensched.host import MAX_CPUS
from xensched.instruments import LockdepSummary, RaceSummary
from xensched.litmus.command import add_litmus_parser
from xensched.mutate import add_mutate_parser
from xensched.options import (
    Parser,
    add_lockdep_option,
    add_memory_model_option,
    add_mutant_option,
    add_progress_option,
    add_race_detector_option,
    integer,
    mutant_protocol,
    refusal,
)
from xensched.outputs import (
    EXIT_NOT_WRITTEN,
    OutputPathError,
    check_output_dir,
    check_output_paths,
    write_json_report,
    write_text_atomic,
)
from xensched.protocol import WITHOUT, Part, SwitchProtocol
from xensched.report import (
    render_reproduce_table,
    render_scenario,
    render_summary,
    render_violation,
)
from xensched.schedulers import SCHEDULERS
from xensched.signals import (
    STOP_SIGNALS,
    CommandInterrupt,
    RaiseInterrupt,
    quiet_lost_interrupts,
    signal_name,
    stop_signals,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from xensched.reproduce import Result

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: The entry-point group of subcommands that other packages add.
COMMANDS_GROUP = "xensched.commands"

_DESCRIPTION = """\
Emulate Xen's scheduler locking with real threads and real locks.

  reproduce   show the race fixed by Xen commit 94734ab7c3 across every scheduler
              pairing, under the pre-patch (legacy) and patched (fixed) protocols
  explore     explore a scenario's interleavings (random, PCT, DFS, DPOR), shrink
              the failing one and write a replay file
  replay      run a replay file's execution again, step by step
  litmus      run litmus tests (the kernel memory model's C format) under the
              sc, tso and relaxed memory models; --catalog runs the built-in ones
  mutate      run the harness's commands against every mutant of the fix and
              print the kill table; --list names the mutants (each command's
              --mutant NAME runs one)
  protocols   list the switch protocols: the presets and the parts of the fix
  scenarios   list the built-in scenarios, or print one (as JSON with --json)
"""
_PROTOCOL_NOTE = """
--protocol SPEC: legacy, fixed, fixed-without:PART[,PART...] or MODULE:FUNCTION
"""


@dataclass(frozen=True, slots=True)
class ExternalCommand:
    """A subcommand another package adds through the ``xensched.commands`` group.

    ``main(argv, prog)`` parses its own options (everything after the command's name)
    and returns the exit code; ``summary`` is its line in ``xensched --help``.
    """

    summary: str
    main: Callable[[Sequence[str], str], int]


def external_commands(
    broken: dict[str, str] | None = None,
) -> dict[str, ExternalCommand]:
    """The subcommands installed packages add, by name (sorted).

    One that cannot be loaded (a broken install) is left out rather than breaking the
    built-in commands; its name and why go into ``broken`` when given.
    """
    found: dict[str, ExternalCommand] = {}
    for ep in entry_points(group=COMMANDS_GROUP):
        try:
            cmd = ep.load()
        except Exception as e:  # a broken plugin must not break `xensched reproduce`
            if broken is not None:
                broken[ep.name] = f"{type(e).__name__}: {e}"
            continue
        if isinstance(cmd, ExternalCommand):
            found[ep.name] = cmd
        elif broken is not None:
            broken[ep.name] = f"{ep.value} is not an ExternalCommand"
    return dict(sorted(found.items()))


def _protocol(text: str) -> SwitchProtocol:
    try:
        return SwitchProtocol.parse(text)
    except ConfigError as e:
        why = str(e)
        for named in (f"protocol {text!r}: ", f"protocol {text}: "):
            why = why.removeprefix(named)  # the option's own line names it
        raise refusal(repr(text), why) from None


def _reproduce_parser(sub: argparse._SubParsersAction[Parser]) -> None:
    p = sub.add_parser(
        "reproduce",
        help="show the three problems of the pre-patch protocol, and none after it",
        description=(
            "For every boot scheduler x pool scheduler (4 x 4), move pCPU 3 into a "
            "pool (cpu-add) and back out (cpu-remove) under each switch protocol, "
            "while observer pCPUs run schedule() and wake-ups; every thread, the "
            "mover and the observers, is paused at every one of its interaction "
            "points while the others run (the explorer, on the controlled driver), "
            "so windows on either side are tried and the output is the same on "
            "every run. Prints a table of the problems "
            "found per move and protocol; exit 0 when the run completed. --mutant "
            "NAME runs a mutant of the fix in place of the presets: its protocol "
            "(a mutant that only edits the model: fixed, or each --protocol given; "
            "a --protocol the mutant's protocol disagrees with is refused), its "
            "edits on every move. Ctrl-C, "
            "SIGTERM or SIGHUP stop it with the moves done so far printed and "
            "written; the exit status is then 128 + the signal (130, 143, 129)."
        ),
        epilog=(
            "exit status: 0 the run completed, 2 usage error (a --json FILE or "
            "--replay-dir DIR that cannot be written is refused before the run) or "
            "a --workers process died (killed, out of memory: its move is lost; the "
            'moves done so far are printed and written, "complete": false), 4 '
            "the run completed but --json FILE could not be written (or a replay "
            "file) at the end (the table is printed first), 130 interrupted."
        ),
    )
    names = list(SCHEDULERS)
    p.add_argument(
        "--boot",
        action="append",
        choices=names,
        metavar="SCHED",
        help=f"only these boot schedulers (repeatable; one of {', '.join(names)}; "
        "default: all)",
    )
    p.add_argument(
        "--pool",
        action="append",
        choices=names,
        metavar="SCHED",
        help="only these pool schedulers (repeatable; default: all)",
    )
    p.add_argument(
        "--direction",
        action="append",
        choices=["add", "remove"],
        help="only these moves (repeatable; default: add and remove)",
    )
    p.add_argument(
        "--protocol",
        action="append",
        type=_protocol,
        metavar="SPEC",
        help="these protocols (repeatable; default: legacy and fixed): legacy, "
        f"fixed, {WITHOUT}PART[,PART...] or MODULE:FUNCTION (a schedule_cpu_switch "
        "of your own); see `xensched protocols`",
    )
    add_mutant_option(p)
    add_memory_model_option(p)
    add_lockdep_option(p)
    add_race_detector_option(p)
    p.add_argument(
        "--pause",
        choices=["all", "mover"],
        default="all",
        help="which threads are paused at every one of their points: all (the "
        "default: the mover and the observers) or the mover alone (about 2.5 times "
        "fewer runs, half the time; the windows on the observers' side are not "
        "tried, nor busy-peer-remove run, so the mutant no-trylock-recheck goes "
        "unseen)",
    )
    p.add_argument(
        "--replay-dir",
        metavar="DIR",
        help="write a replay file for each problem found (the execution that showed "
        "it first) to DIR, an existing directory (checked before the run), as BOOT-POOL-DIRECTION-PROTOCOL-KIND.json "
        "(+EDIT after PROTOCOL under an edit --mutant, -MODEL before .json under "
        "--memory-model tso or relaxed); replay one "
        "with `xensched replay FILE`",
    )
    p.add_argument(
        "--workers",
        type=integer(1, 64),
        default=None,
        metavar="N",
        help="share the moves among N processes (default: twice the number of "
        "CPUs, at most 8: a controlled run leaves its core idle at each hand-off "
        "between threads, which a second process fills); the results are the same",
    )
    p.add_argument(
        "--json",
        metavar="FILE",
        help='also write {"results": [{"boot", "pool", "direction", "protocol", '
        '"problems"}, ...]} to FILE (written even when interrupted)',
    )
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="after the table, show the first violation of each kind per move, "
        "with the events that led to it",
    )
    add_progress_option(p)
    p.set_defaults(func=_cmd_reproduce)


def _cmd_reproduce(args: argparse.Namespace) -> int:
    # Installed until the table and the JSON are out, so that a signal cannot cut
    # them short; only the moves are interrupted. Ctrl-C too: `timeout -s INT`
    # sends it twice (to the command, then to its group), and a second
    # KeyboardInterrupt inside Pool.terminate() left the pool's join waiting forever.
    stop = RaiseInterrupt()
    with stop_signals(stop, (signal.SIGINT, *STOP_SIGNALS)), quiet_lost_interrupts():
        return _reproduce(args, stop)


def _reproduce(args: argparse.Namespace, stop: RaiseInterrupt) -> int:
    from xensched.reproduce import (
        DIRECTIONS,
        WorkerDiedError,
        reproduce,
        transitions,
    )

    # A repeated filter is a typo for another value, and would run its moves twice.
    # (A protocol spelt twice, fixed-without:a,b and fixed-without:b,a, runs once.)
    for option, given in (
        ("--boot", args.boot),
        ("--pool", args.pool),
        ("--direction", args.direction),
    ):
        seen: set[str] = set()
        for value in given or ():
            if value in seen:
                print(
                    f"xensched reproduce: error: {option} {value}: given twice",
                    file=sys.stderr,
                )
                return EXIT_USAGE
            seen.add(value)
    protocols: Sequence[SwitchProtocol] = SwitchProtocol.PRESETS
    if args.protocol:
        protocols = list(dict.fromkeys(args.protocol))
    mutant = args.mutant
    try:
        if mutant is not None:
            for given in protocols if args.protocol else ():
                mutant_protocol(str(given), mutant)  # refuses a disagreeing one
            if not args.protocol:
                protocols = [SwitchProtocol.parse(mutant.protocol)]
        check_output_paths(("--json", args.json))
        if args.replay_dir is not None:
            check_output_dir("--replay-dir", args.replay_dir)
    except (ConfigError, OutputPathError) as e:
        print(f"xensched reproduce: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    mutant_name = None if mutant is None else str(mutant.name)
    todo = transitions(
        boots=args.boot or tuple(SCHEDULERS),
        pools=args.pool or tuple(SCHEDULERS),
        directions=args.direction or DIRECTIONS,
        protocols=protocols,
    )
    show = sys.stderr.isatty() if args.progress is None else args.progress
    results: list[Result] = []
    started = time.monotonic()

    def progress(i: int, n: int, r: Result) -> None:
        results.append(r)
        if show:
            found = ", ".join(r.problems) or "none"
            sys.stderr.write(
                f"\r\x1b[K[{i}/{n}] {r.transition.describe()}: {found}"
                + ("\n" if i == n else "")
            )
            sys.stderr.flush()

    print(
        f"xensched {xensched.__version__} reproduce: {len(todo)} moves, "
        + ("every thread" if args.pause == "all" else "the mover")
        + " paused at every interaction point (controlled driver, deterministic)"
        + (f", mutant {mutant_name}" if mutant_name is not None else "")
        + (f", memory model {args.memory_model}" if args.memory_model != "sc" else "")
        + (", lockdep on" if args.lockdep else "")
        + (", race detector on" if args.race_detector else ""),
        flush=True,
    )
    interrupted = False
    died: WorkerDiedError | None = None  # a worker process died: the run is cut short
    # Filled after the run; empty until then, so that a crash's JSON (below) has
    # the moves done so far, without their replays.
    replays: dict[int, dict[str, str]] = {}

    def document() -> dict[str, object]:
        return {
            "xensched": xensched.__version__,
            "complete": not interrupted and died is None and len(results) == len(todo),
            "mutant": mutant_name,
            "results": [
                r.to_json() | ({"replays": replays[i]} if i in replays else {})
                for i, r in enumerate(results)
            ],
        }

    workers = args.workers or min(2 * (os.cpu_count() or 1), 8)
    try:
        with stop.armed():
            reproduce(
                todo,
                progress=progress,
                mutants=tuple(sorted(mutant.edits)) if mutant is not None else (),
                workers=workers,
                pause=args.pause,
                memory_model=args.memory_model,
                lockdep=args.lockdep,
                race_detector=args.race_detector,
                notice=lambda line: print(
                    f"xensched reproduce: {line}", file=sys.stderr, flush=True
                ),
            )
    except WorkerDiedError as e:
        # Its move is lost: the moves done so far are printed and written below,
        # and the status is an error's (2), as a XenschedError's is in every command.
        died = e
        if show:
            sys.stderr.write("\n")
        print(f"xensched reproduce: error: {e}", file=sys.stderr)
    except KeyboardInterrupt:
        interrupted = True
        if show:
            sys.stderr.write("\n")
        by = (
            f"{signal_name(stop.signum)} received: "
            if stop.signum not in (None, signal.SIGINT)  # Ctrl-C: the user knows
            else ""
        )
        print(
            f"{by}interrupted after {len(results)} of {len(todo)} moves",
            file=sys.stderr,
        )
    except BaseException:
        # A crash still leaves the moves done so far on disk; its traceback follows.
        if args.json is not None:
            failed = write_json_report("--json", args.json, document())
            if failed is not None:
                print(f"xensched reproduce: error: {failed}", file=sys.stderr)
        raise
    unwritten: list[str] = []
    if args.replay_dir is not None:
        replays, unwritten = _write_replays(args.replay_dir, results)
        for line in unwritten:
            print(f"xensched reproduce: error: {line}", file=sys.stderr)
    if results:
        print(render_reproduce_table(results, mutant_name))
        print()
        print(render_summary(results, mutant_name))
        if args.verbose:
            for r in results:
                for v in r.first:
                    print()
                    print(f"[{r.transition.describe()}]")
                    print(render_violation(v))
    if args.lockdep and results:
        print()
        print("\n".join(_lockdep_union(results).lines()))
    if args.race_detector and results:
        print()
        print("\n".join(_race_union(results).lines()))
    print(f"\n{len(results)} moves in {time.monotonic() - started:.1f}s", flush=True)
    # Interrupted: the shell's convention, 128 + the signal (130 for Ctrl-C, SIGINT).
    code = EXIT_NOT_WRITTEN if unwritten else EXIT_OK
    if died is not None:
        code = EXIT_USAGE
    if interrupted or stop.signum is not None:
        code = EXIT_INTERRUPTED if stop.signum is None else 128 + stop.signum
    # The table is out before the file is tried: a full disk must not cost it.
    if args.json is not None:
        failed = write_json_report("--json", args.json, document())
        if failed is not None:
            print(f"xensched reproduce: error: {failed}", file=sys.stderr)
            return EXIT_NOT_WRITTEN if code == EXIT_OK else code
        print(f"results written to {args.json}")
    return code


def _lockdep_union(results: Sequence[Result]) -> LockdepSummary:
    """What lockdep checked over every move (the text report's lines)."""
    out = LockdepSummary()
    for r in results:
        if r.lockdep is not None:
            out = out.merge(r.lockdep)
    return out


def _race_union(results: Sequence[Result]) -> RaceSummary:
    """What the race detector checked over every move (the text report's lines)."""
    out = RaceSummary()
    for r in results:
        if r.race_detector is not None:
            out = out.merge(r.race_detector)
    return out


def _write_replays(
    directory: str, results: Sequence[Result]
) -> tuple[dict[int, dict[str, str]], list[str]]:
    """A replay file per problem of each result; returns the paths by result and kind,
    and a line for each file that could not be written."""
    out: dict[int, dict[str, str]] = {}
    errors: list[str] = []
    for i, r in enumerate(results):
        t = r.transition
        for j, kind in enumerate(r.problems):
            model = f"-{r.memory_model}" if r.memory_model != "sc" else ""
            # An edit mutant's file must not take the intact protocol's name.
            edits = "".join(f"+{e}" for e in r.mutants)
            name = f"{t.boot}-{t.pool}-{t.direction}-{t.protocol}{edits}-{kind}{model}.json"
            name = "".join(c if c.isalnum() or c in "-_.+" else "_" for c in name)
            path = os.path.join(directory, name)
            try:
                write_text_atomic(path, r.replay(j).to_json())
            except OSError as e:
                errors.append(f"--replay-dir {path}: not written: {e.strerror or e}")
                continue
            out.setdefault(i, {})[kind] = path
    return out, errors


def _protocols_parser(
    sub: argparse._SubParsersAction[Parser],
) -> None:
    p = sub.add_parser(
        "protocols",
        help="list the switch protocols: the presets and the parts of the fix",
        description=(
            "The presets (legacy, fixed) with the parts of the fix each keeps, and "
            "every part with what the fixed protocol does without it. Any command's "
            f"--protocol takes a preset, {WITHOUT}PART[,PART...] or MODULE:FUNCTION."
        ),
    )
    p.add_argument(
        "--json",
        action="store_true",
        help='print {"presets": {"legacy": [parts], "fixed": [parts]}, '
        '"parts": [{"name", "description"}]}',
    )
    p.set_defaults(func=_cmd_protocols)


def _cmd_protocols(args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps(SwitchProtocol.catalog(), indent=2))
        return EXIT_OK

    def para(text: str, indent: str) -> str:
        return textwrap.fill(text, 88, initial_indent=indent, subsequent_indent=indent)

    print("presets:")
    for preset in SwitchProtocol.PRESETS:
        parts = ", ".join(x.value for x in Part if preset.has(x)) or "none"
        print(f"  {preset.name}")
        print(para(preset.describe(), "      "))
        print(para(f"parts: {parts}", "      "))
    print(f"\nparts (--protocol {WITHOUT}PART[,PART...] drops them):")
    for part in Part:
        print(f"  {part.value}")
        print(para(part.describe(), "      "))
    print(
        "\n"
        + para(
            "--protocol MODULE:FUNCTION runs your own schedule_cpu_switch(h, cpu, "
            "old_ops, new_ops); see the README.",
            "",
        )
    )
    return EXIT_OK


#: Options of ``xensched scenarios NAME`` handed to a parameterised built-in.
_SCENARIO_PARAMS = ("boot", "pool", "direction", "protocol", "cpus")


def _scenario_params(name: str) -> list[str]:
    """Which of :data:`_SCENARIO_PARAMS` built-in ``name`` takes (its factory's
    signature says, so the help cannot fall behind a new built-in)."""
    from xensched.scenario import builtin_parameters

    takes = builtin_parameters(name)
    return [k for k in _SCENARIO_PARAMS if k in takes]


def _scenarios_parser(sub: argparse._SubParsersAction[Parser]) -> None:
    from xensched.scenario import parameters_line

    takes = parameters_line(_SCENARIO_PARAMS)
    p = sub.add_parser(
        "scenarios",
        help="list the built-in scenarios, or print one (as JSON with --json)",
        description=(
            "Without NAME, list the built-in scenarios: a name and one line each. "
            "With NAME, print that scenario: its host, setup and thread programs, or "
            "with --json the scenario as JSON (version 1), which `xensched stress "
            "--scenario FILE` runs. --boot, --pool, --direction, --protocol and "
            f"--cpus are parameters of the built-ins that take them ({takes}). "
            "Exit 0, or 2 for an unknown name or parameter."
        ),
    )
    p.add_argument("name", nargs="?", metavar="NAME", help="a built-in scenario")
    p.add_argument("--json", action="store_true", help="print NAME as JSON")
    names = list(SCHEDULERS)
    p.add_argument("--boot", choices=names, help="boot scheduler parameter")
    p.add_argument(
        "--pool", choices=names, metavar="SCHED", help="pool scheduler parameter"
    )
    p.add_argument(
        "--direction", choices=["add", "remove"], help="direction parameter (of a move)"
    )
    p.add_argument("--protocol", metavar="PROTOCOL", help="protocol parameter")
    p.add_argument(
        "--cpus",
        type=integer(1, MAX_CPUS),
        metavar="N",
        help=f"pCPUs parameter, 1 to {MAX_CPUS}",
    )
    p.set_defaults(func=_cmd_scenarios)


def _cmd_scenarios(args: argparse.Namespace) -> int:
    from xensched.scenario import BUILTIN, builtin

    params = {
        k: getattr(args, k) for k in _SCENARIO_PARAMS if getattr(args, k) is not None
    }
    if args.name is None:
        if params or args.json:
            print(
                "xensched scenarios: error: --json and parameters need a NAME",
                file=sys.stderr,
            )
            return EXIT_USAGE
        width = max(len(n) for n in BUILTIN)
        for name in BUILTIN:
            print(f"{name:<{width}}  {builtin(name).description}")
        return EXIT_OK
    if args.name in BUILTIN:
        takes = _scenario_params(args.name)
        unknown = [k for k in params if k not in takes]
        if unknown:
            print(
                f"xensched scenarios: error: scenario {args.name!r} takes no "
                f"--{unknown[0]} (its parameters here: "
                f"{', '.join(f'--{k}' for k in takes) or 'none'})",
                file=sys.stderr,
            )
            return EXIT_USAGE
    sc = builtin(args.name, **params)  # refused by main(): "xensched scenarios: ..."
    if args.json:
        print(sc.to_json())
    else:
        print(render_scenario(sc))
    return EXIT_OK


def build_parser(
    external: dict[str, ExternalCommand] | None = None,
) -> argparse.ArgumentParser:
    if external is None:
        external = external_commands()
    description = (
        _DESCRIPTION
        + "".join(f"  {name:<11} {cmd.summary}\n" for name, cmd in external.items())
        + _PROTOCOL_NOTE
    )
    parser = Parser(
        prog="xensched",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"xensched {xensched.__version__}"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _reproduce_parser(sub)
    add_explore_parser(sub)
    add_replay_parser(sub)
    add_litmus_parser(sub)
    add_mutate_parser(sub)
    _protocols_parser(sub)
    _scenarios_parser(sub)
    # Listed for --help; `main` hands their arguments to their own parsers
    # (argparse.REMAINDER would not take a leading option such as `--duration 1`).
    for name, cmd in external.items():
        sub.add_parser(name, help=cmd.summary)
    return parser


class QuietPipe:
    """A text stream that stops writing, quietly, once its reader has gone.

    ``xensched explore ... | head`` closes the pipe while the command still prints;
    a ``BrokenPipeError`` there would end it before the files it writes after its
    text (replay, timeline, JSON). Caught here, every command goes on to its end
    and its exit status, its later output dropped. The stream's file descriptor
    then points at ``os.devnull``: the interpreter flushes the stream once more at
    exit, and into the closed pipe that flush would print an error (as Python's
    documentation on SIGPIPE advises).
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.broken = False

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                return self.stream.write(text)
            except BrokenPipeError:
                self._broke()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self.stream.flush()
            except BrokenPipeError:
                self._broke()

    def _broke(self) -> None:
        self.broken = True
        try:
            fd = self.stream.fileno()
        except (OSError, ValueError):
            return  # not a file (a test's StringIO): nothing flushes it at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, fd)
        finally:
            os.close(devnull)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def main(argv: Sequence[str] | None = None) -> int:
    own = argv is None and threading.current_thread() is threading.main_thread()
    interrupt: CommandInterrupt | None = None
    if own and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        # Not when ignored (nohup, a background job): it stays ignored.
        interrupt = CommandInterrupt()
        signal.signal(signal.SIGINT, interrupt)
    out, err = sys.stdout, sys.stderr
    sys.stdout = cast("TextIO", QuietPipe(out))
    sys.stderr = cast("TextIO", QuietPipe(err))
    try:
        try:
            code = _main(argv)
        except KeyboardInterrupt:
            if interrupt is None:
                raise  # a caller's (a test's, a program's) to handle
            # A Ctrl-C that no command handler took (one landed as a command put
            # its handler back, or the command has none): the status of an
            # interrupted command, without a traceback.
            code = 128 + signal.SIGINT
        finally:
            if interrupt is not None:
                interrupt.done = True
        sys.stdout.flush()  # here, where a closed pipe is caught
        sys.stderr.flush()
    finally:
        sys.stdout, sys.stderr = out, err
    if own:
        # The process's own command line, done: a Ctrl-C now (the second of two,
        # say) has nothing left to stop, and would only turn the exit that follows
        # into a traceback.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    return code


def _main(argv: Sequence[str] | None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    broken: dict[str, str] = {}
    external = external_commands(broken)
    if args_list and args_list[0] in broken:
        print(
            f"xensched: error: command {args_list[0]!r} failed to load: "
            f"{broken[args_list[0]]}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args_list and args_list[0] in external:
        return external[args_list[0]].main(args_list[1:], f"xensched {args_list[0]}")
    parser = build_parser(external)
    try:
        args, extra = parser.parse_known_args(args_list)
        if extra:
            # Refused by the command's own parser, so that the line names it
            # ("xensched reproduce: error: ..."), as its other usage errors do.
            _command_parser(parser, args.command).error(
                f"unrecognized arguments: {' '.join(extra)}"
            )
    except SystemExit as e:  # argparse exits 2 on usage errors, 0 on --help
        return int(e.code) if isinstance(e.code, int) else EXIT_USAGE
    try:
        return int(args.func(args))
    except XenschedError as e:
        print(f"xensched {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE


def _command_parser(parser: argparse.ArgumentParser, name: str) -> Parser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and name in action.choices:
            return cast("Parser", action.choices[name])
    raise LookupError(name)


if __name__ == "__main__":
    raise SystemExit(main())
