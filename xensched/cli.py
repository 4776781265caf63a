"""The ``xensched`` command: ``reproduce``, ``stress``, ``bench`` and ``protocols``.

``--protocol SPEC`` (``reproduce``, ``stress``) takes any protocol spec: ``legacy``,
``fixed``, ``fixed-without:PART[,PART...]`` or a user's ``MODULE:FUNCTION``
(``xensched.protocol``); ``xensched protocols`` lists the presets and parts.

Exit codes: 0 the run completed (for ``reproduce`` the verdicts are data), 1 violations
found (``stress``), 2 usage error, 3 deadlock (``stress``), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
import time
from typing import TYPE_CHECKING

import xensched
from xensched.errors import XenschedError
from xensched.protocol import WITHOUT, Part, SwitchProtocol
from xensched.report import (
    render_reproduce_table,
    render_summary,
    render_violation,
    write_json_atomic,
)
from xensched.schedulers import SCHEDULERS

if TYPE_CHECKING:
    from collections.abc import Sequence

    from xensched.reproduce import Result

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

_DESCRIPTION = """\
Emulate Xen's scheduler locking with real threads and real locks.

  reproduce   show the race fixed by Xen commit 94734ab7c3 across every scheduler
              pairing, under the pre-patch (legacy) and patched (fixed) protocols
  stress      hammer schedule() on every pCPU while cpupools move
  bench       print the harness's performance figures
  protocols   list the switch protocols: the presets and the parts of the fix

--protocol SPEC: legacy, fixed, fixed-without:PART[,PART...] or MODULE:FUNCTION
"""


def _reproduce_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "reproduce",
        help="show the three problems of the pre-patch protocol, and none after it",
        description=(
            "For every boot scheduler x pool scheduler (4 x 4), move pCPU 3 into a "
            "pool (cpu-add) and back out (cpu-remove) under each switch protocol, "
            "while observer pCPUs run schedule() and wake-ups at every interaction "
            "point of the move. The runs are serialised by the controlled driver, so "
            "the output is the same on every run. Prints a table of the problems "
            "found per move and protocol; exit 0 when the run completed."
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
        metavar="SPEC",
        help="these protocols (repeatable; default: legacy and fixed): legacy, "
        f"fixed, {WITHOUT}PART[,PART...] or MODULE:FUNCTION (a schedule_cpu_switch "
        "of your own); see `xensched protocols`",
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
    prog = p.add_mutually_exclusive_group()
    prog.add_argument(
        "--progress",
        dest="progress",
        action="store_true",
        default=None,
        help="show progress on stderr (default: when stderr is a terminal)",
    )
    prog.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress"
    )
    p.set_defaults(func=_cmd_reproduce)


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from xensched.reproduce import DIRECTIONS, reproduce, transitions

    todo = transitions(
        boots=args.boot or tuple(SCHEDULERS),
        pools=args.pool or tuple(SCHEDULERS),
        directions=args.direction or DIRECTIONS,
        protocols=list(dict.fromkeys(SwitchProtocol.parse(x) for x in args.protocol))
        if args.protocol
        else SwitchProtocol.PRESETS,
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
        f"xensched {xensched.__version__} reproduce: {len(todo)} moves, each observed "
        "at every interaction point (controlled driver, deterministic)",
        flush=True,
    )
    interrupted = False
    try:
        reproduce(todo, progress=progress)
    except KeyboardInterrupt:
        interrupted = True
        if show:
            sys.stderr.write("\n")
        print(f"interrupted after {len(results)} of {len(todo)} moves", file=sys.stderr)
    finally:
        if args.json:
            write_json_atomic(
                args.json,
                {
                    "xensched": xensched.__version__,
                    "complete": not interrupted and len(results) == len(todo),
                    "results": [r.to_json() for r in results],
                },
            )
    if results:
        print(render_reproduce_table(results))
        print()
        print(render_summary(results))
        if args.verbose:
            for r in results:
                for v in r.first:
                    print()
                    print(f"[{r.transition.describe()}]")
                    print(render_violation(v))
    print(f"\n{len(results)} moves in {time.monotonic() - started:.1f}s")
    if args.json:
        print(f"results written to {args.json}")
    return EXIT_INTERRUPTED if interrupted else EXIT_OK


def _protocols_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
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


def _stress_main(argv: Sequence[str]) -> int:
    from xensched_stress.cli import main as stress_main

    return stress_main(argv, prog="xensched stress")


def _bench_main(argv: Sequence[str]) -> int:
    from xensched_stress.bench import main as bench_main

    return bench_main(argv, prog="xensched bench")


# Subcommands whose options their own parser owns (argparse.REMAINDER would not
# take a leading option such as `xensched stress --duration 1`).
_DELEGATED = {"stress": _stress_main, "bench": _bench_main}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xensched",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"xensched {xensched.__version__}"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _reproduce_parser(sub)
    _protocols_parser(sub)
    # Listed for --help; `main` hands their arguments to their own parsers.
    sub.add_parser("stress", help="hammer schedule() on every pCPU while cpupools move")
    sub.add_parser("bench", help="print the harness's performance figures")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] in _DELEGATED:
        return _DELEGATED[args_list[0]](args_list[1:])
    parser = build_parser()
    try:
        args = parser.parse_args(args_list)
    except SystemExit as e:  # argparse exits 2 on usage errors, 0 on --help
        return int(e.code) if isinstance(e.code, int) else EXIT_USAGE
    try:
        return int(args.func(args))
    except XenschedError as e:
        print(f"xensched: error: {e}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())
