"""``xensched mutate``: the mutation catalog of the fix on the command line.

Mirrors nothing in Xen. ``--list`` names every mutant of
:data:`xensched.mutants.CATALOG` with a line each: its name, what it breaks, and how a
command runs it (``--protocol SPEC``, the edit, the memory model it needs). The other
commands take one with ``--mutant NAME``. Without ``--list`` it runs the harness's
commands against each mutant and prints the kill table
(:mod:`xensched.killtable`): which check killed it, by which command, after how many
runs and seconds, and whether the intact fix was flagged by any of them.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from xensched.errors import ConfigError
from xensched.inputs import read_text
from xensched.killtable import (
    DEFAULT_TIMEOUT,
    PLAN,
    MutantResult,
    Outcome,
    load_plan,
    new_report,
    render_kill_table,
    run_kill_table,
)
from xensched.mutants import CATALOG
from xensched.options import add_progress_option, integer, mutant, seconds
from xensched.outputs import (
    EXIT_NOT_WRITTEN,
    OutputPathError,
    check_output_paths,
    write_json_report,
)
from xensched.signals import RaiseInterrupt, signal_name, stop_signals

if TYPE_CHECKING:
    import argparse

    from xensched.options import Parser

__all__ = ["add_mutate_parser", "catalog_lines"]

EXIT_OK = 0
#: A mutant survived, the intact fix was flagged, or a killer failed to run.
EXIT_SURVIVED = 1
EXIT_USAGE = 2
MAX_WORKERS = 64


def _default_workers() -> int:
    # Each killer is one process on the controlled driver, one thread at a time.
    return max(1, min(os.cpu_count() or 1, 8))


def add_mutate_parser(sub: argparse._SubParsersAction[Parser]) -> None:
    p = sub.add_parser(
        "mutate",
        help="run the harness's commands against every mutant of the fix and print "
        "the kill table; --list names the mutants",
        description=(
            "The mutants of the fix of Xen commit 94734ab7c3 that the harness's "
            "checks must kill: the pre-patch order, the fixed switch without one of "
            "its parts (xensched protocols), and named edits of the model. Each "
            "mutant has an ordered list of killers, commands of the harness "
            "(xensched reproduce, xensched explore) run on it with --protocol P "
            "--mutant NAME, each a process of its own; the first that reports a "
            "violation kills it. The same commands then run on the intact fix "
            "(--protocol fixed), which none may flag. Every killer is deterministic "
            "(reproduce pauses every point; explore runs DPOR with a fixed seed), "
            "so the table is the same on every run. Prints the table: each mutant, "
            "killed or not, by which check (the violation kind) and which command, "
            "after how many runs and seconds. --list prints one line per mutant: "
            "its name, what it breaks, and how it runs. xensched stress, explore "
            "and reproduce run one with --mutant NAME."
        ),
        epilog=(
            "exit status: 0 every mutant killed and the intact fix not flagged; 1 a "
            "mutant survived, the intact fix was flagged, or a killer could not run "
            "(timed out, usage error, no report); 2 usage error; 4 the table is out "
            "but --json FILE could not be written; 128 + signal when interrupted "
            "(130 Ctrl-C, 143 SIGTERM, 129 SIGHUP), with the table and --json FILE "
            "of what finished."
        ),
    )
    p.add_argument(
        "--list",
        action="store_true",
        help="list the mutants, one line each: NAME, what it breaks, and how it "
        "runs (its --protocol, its edit, the memory model it needs)",
    )
    p.add_argument(
        "--mutant",
        type=mutant,
        action="append",
        default=None,
        metavar="NAME",
        help="only this mutant (repeatable; default: every mutant of the catalog, "
        "see --list); the intact fix runs the killers of these only",
    )
    p.add_argument(
        "--plan",
        metavar="FILE",
        help='killers of your own: a JSON file {"MUTANT": [["explore", "--scenario", '
        '"round-trip", ...], ...]}, each killer the arguments of a xensched '
        "command without --protocol, --mutant and --json (the table adds them); "
        "the mutants it names get these in place of the built-in plan (an empty "
        "list: none) (default: the built-in plan, README)",
    )
    p.add_argument(
        "--workers",
        type=integer(1, MAX_WORKERS),
        default=None,
        metavar="N",
        help=f"run N killer commands at once, each a process (1 to {MAX_WORKERS}; "
        "default: the number of CPUs, at most 8); the table is the same",
    )
    p.add_argument(
        "--timeout",
        type=seconds(),
        default=DEFAULT_TIMEOUT,
        metavar="S",
        help="bound of one killer command in seconds; one that runs out is an "
        f"error of the table, not a kill (default: {DEFAULT_TIMEOUT:g})",
    )
    p.add_argument(
        "--json",
        metavar="FILE",
        help='also write {"mutants": [{"name", "killed", "kind", "by", "runs", '
        '"seconds", "tried"}, ...], "intact_flagged", "intact": [...], '
        '"complete", ...} to FILE (written even when interrupted)',
    )
    add_progress_option(p)
    p.set_defaults(func=_cmd_mutate_signals)


def catalog_lines() -> list[str]:
    """``xensched mutate --list``: one line per mutant of the catalog, in its order."""
    width = max(len(m.name) for m in CATALOG)
    return [f"{m.name:<{width}}  {m.summary} [{m.describe()}]" for m in CATALOG]


def _err(msg: str) -> int:
    print(f"xensched mutate: error: {msg}", file=sys.stderr)
    return EXIT_USAGE


def _cmd_mutate_signals(args: argparse.Namespace) -> int:
    # Installed until the table and the JSON are out, so that a signal cannot cut
    # them short; only the killers are interrupted.
    stop = RaiseInterrupt()
    with stop_signals(stop):
        return _cmd_mutate(args, stop)


def _cmd_mutate(args: argparse.Namespace, stop: RaiseInterrupt) -> int:
    if args.list:
        if args.json is not None:
            return _err(f"--json {args.json}: --list runs nothing, so writes no report")
        print("\n".join(catalog_lines()))
        return EXIT_OK
    plan = dict(PLAN)
    if args.plan is not None:
        try:
            text = read_text(args.plan, f"--plan {args.plan}")
            plan.update(load_plan(text, f"--plan {args.plan}"))
        except ConfigError as e:
            return _err(str(e))
    try:
        check_output_paths(
            ("--json", args.json),
            inputs=[(f"--plan {args.plan}", args.plan)]
            if args.plan is not None
            else [],
        )
    except OutputPathError as e:
        return _err(str(e))
    chosen = list(dict.fromkeys(args.mutant)) if args.mutant else list(CATALOG)
    workers = args.workers or _default_workers()
    show = sys.stderr.isatty() if args.progress is None else args.progress

    def progress(r: MutantResult | Outcome, done: int, total: int) -> None:
        if not show:
            return
        if isinstance(r, MutantResult):
            k = r.killer
            what = (
                f"{r.name}: killed ({k.kinds[0]}, {k.seconds:.1f}s)"
                if k is not None
                else f"{r.name}: NOT killed"
            )
        else:
            what = f"intact: {'FLAGGED (' + ', '.join(r.kinds) + ')' if r.flagged else 'clean'} ({r.seconds:.1f}s) {r.by}"
            if r.error:
                what = f"intact: error: {r.error}: {r.by}"
        print(f"[{done}/{total}] {what}", file=sys.stderr, flush=True)

    print(
        f"xensched mutate: {len(chosen)} mutants, {workers} worker"
        f"{'s' if workers != 1 else ''}, each killer bounded by {args.timeout:g} s",
        flush=True,
    )
    report = new_report(chosen, plan)
    code: int | None = None
    try:
        with stop.armed():
            run_kill_table(
                chosen,
                plan,
                workers=workers,
                timeout=args.timeout,
                on_done=progress,
                report=report,
            )
    except KeyboardInterrupt:
        by = f"{signal_name(stop.signum)} received: " if stop.signum else ""
        print(f"{by}interrupted", file=sys.stderr)
        code = 130 if stop.signum is None else 128 + stop.signum
    print(render_kill_table(report))
    if code is None:
        code = EXIT_OK if report.ok else EXIT_SURVIVED
    if args.json:
        failed = write_json_report("--json", args.json, report.to_json())
        if failed is not None:
            print(f"xensched mutate: error: {failed}", file=sys.stderr)
            return code or EXIT_NOT_WRITTEN
        print(f"report written to {args.json}")
    return code
