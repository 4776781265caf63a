"""``xensched litmus``: run litmus tests under the memory models and print verdicts.

Mirrors nothing in Xen. For each test and model: a jcstress-style histogram (each
outcome, how many executions ended with it, ``*`` on those that satisfy the
condition), whether the condition's proposition was observed, the expected ``Result:``
and the verdict (:mod:`xensched.litmus.run`); then a table of the verdicts. Exit 0,
1 if any verdict is ``weaker`` (the model shows an outcome the kernel model forbids),
2 for bad input (a missing file, a parse error, no test), 4 if ``--json`` could not be
written, 130 when interrupted (128 + the signal for SIGTERM or SIGHUP); the --json report
holds the runs done before an interruption.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from xensched.litmus.builtin import catalog
from xensched.litmus.parse import parse_file
from xensched.litmus.run import (
    DEFAULT_MAX_EXECUTIONS,
    SEARCHES,
    LitmusResult,
    run_test,
)
from xensched.litmus.syntax import LitmusError
from xensched.memory_model import MODELS
from xensched.options import integer
from xensched.outputs import (
    EXIT_NOT_WRITTEN,
    OutputPathError,
    check_output_paths,
    write_json_report,
)
from xensched.signals import RaiseInterrupt, signal_name, stop_signals

if TYPE_CHECKING:
    import argparse

    from xensched.litmus.syntax import LitmusTest
    from xensched.options import Parser

__all__ = ["add_litmus_parser", "render_result", "render_table"]

EXIT_WEAKER = 1
EXIT_USAGE = 2


def add_litmus_parser(sub: argparse._SubParsersAction[Parser]) -> None:
    p = sub.add_parser(
        "litmus",
        help="run litmus tests (the kernel memory model's C format) under sc, tso "
        "and relaxed",
        description=(
            "Run each litmus test (Linux tools/memory-model format: a C name header, "
            "an initial state, P0(...) functions, an exists, ~exists or forall "
            "clause) under each memory model, exhaustively: every interleaving, "
            "every drain order of the store buffers and every early load the model "
            "allows. Prints each outcome with its count (* marks the outcomes that "
            "satisfy the condition), whether the condition was observed, and the "
            "verdict against the test's Result: line (the kernel model's): agrees, "
            "stronger (the model forbids an outcome the kernel model allows, with "
            "the reordering it lacks) or weaker (it shows one the kernel model "
            "forbids: a bug). A construct outside the supported subset is an "
            "error, never a verdict."
        ),
        epilog="exit status: 0 no verdict is weaker, 1 a verdict is weaker, 2 bad "
        "input (a missing file, a parse error, no test), 4 --json could not be "
        "written, 130 interrupted.",
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="a .litmus file")
    p.add_argument(
        "--catalog",
        action="store_true",
        help="run the built-in catalog too (after the files)",
    )
    p.add_argument(
        "--model",
        action="append",
        choices=list(MODELS),
        help="a memory model (repeatable; default: all three)",
    )
    p.add_argument(
        "--json",
        metavar="FILE",
        help='write {"results": [{"test", "model", "outcomes", "observed", '
        '"expected", "verdict", ...}]}',
    )
    p.add_argument(
        "--list",
        action="store_true",
        help="list the tests (the catalog's without FILE) with their expected "
        "Result, and run nothing",
    )
    p.add_argument(
        "--search",
        choices=list(SEARCHES),
        default="dpor",
        help="the exhaustive search: dpor (default) or unreduced dfs (slower)",
    )
    p.add_argument(
        "--max-executions",
        type=integer(1, 10_000_000),
        default=DEFAULT_MAX_EXECUTIONS,
        metavar="N",
        help="give a search up after N executions (then no verdict; default "
        f"{DEFAULT_MAX_EXECUTIONS})",
    )
    p.add_argument(
        "--quiet",
        action="store_true",
        help="print only the table of verdicts, not each histogram",
    )
    p.set_defaults(func=_cmd_litmus_signals)


def _err(text: str) -> int:
    print(f"xensched litmus: error: {text}", file=sys.stderr)
    return EXIT_USAGE


def render_result(test: LitmusTest, r: LitmusResult) -> str:
    """One test under one model: the histogram and the verdict lines."""
    lines = [f"{test.name} under {r.model}: {test.condition.text}"]
    width = max([len(str(n)) for n in r.outcomes.values()] + [5])
    lines.append(f"  {'':1} {'count':>{width}}  outcome")
    for outcome, n in r.outcomes.items():
        mark = "*" if outcome in r.matching else " "
        lines.append(f"  {mark} {n:>{width}}  {outcome}")
    search = "exhaustive" if r.exhaustive else "NOT exhaustive"
    verdict: str = r.verdict or "none"
    if verdict == "weaker":
        verdict = "WEAKER"  # a bug of the model: not to be missed in the output
    lines.append(
        f"  observed: {'yes' if r.observed else 'no'}   expected: "
        f"{r.expected or '-'}   verdict: {verdict}"
        f"   ({r.executions} executions, {search}, {r.seconds:.2f} s)"
    )
    if r.reason:
        lines.append(f"  why: {r.reason}")
    for e in r.errors:
        lines.append("  failed execution: " + e.replace("\n", "\n    "))
    return "\n".join(lines)


def render_table(results: list[LitmusResult], models: list[str]) -> str:
    """The verdicts, one row per test, one column per model."""
    tests: dict[str, dict[str, LitmusResult]] = {}
    expected: dict[str, str] = {}
    for r in results:
        tests.setdefault(r.test, {})[r.model] = r
        expected[r.test] = r.expected or "-"
    w = max([len(t) for t in tests] + [4])
    head = (
        f"{'test':<{w}}  {'expected':<9}  " + "  ".join(f"{m:<8}" for m in models)
    ).rstrip()
    rows = [head, "-" * len(head)]
    for t, by in tests.items():
        cells = []
        for m in models:
            got = by.get(m)
            cells.append(f"{(got.verdict or 'none') if got is not None else '':<8}")
        rows.append(f"{t:<{w}}  {expected[t]:<9}  " + "  ".join(cells).rstrip())
    return "\n".join(rows)


def _load(args: argparse.Namespace) -> list[LitmusTest] | str:
    tests: list[LitmusTest] = []
    try:
        for f in args.files:
            tests.append(parse_file(f))
        if args.catalog or (args.list and not args.files):
            tests.extend(catalog())
    except LitmusError as e:
        return str(e)
    if not tests:
        return "no test: give a FILE or --catalog"
    return tests


def _cmd_litmus_signals(args: argparse.Namespace) -> int:
    stop = RaiseInterrupt()
    with stop_signals(stop):
        return _cmd_litmus(args, stop)


def _cmd_litmus(args: argparse.Namespace, stop: RaiseInterrupt) -> int:
    loaded = _load(args)
    if isinstance(loaded, str):
        return _err(loaded)
    tests = loaded
    if args.list:
        if args.json is not None:
            return _err(f"--json {args.json}: --list runs nothing, so writes no report")
        w = max(len(t.name) for t in tests)
        for t in tests:
            print(f"{t.name:<{w}}  {t.result or '-':<9}  {t.condition.text}")
        return 0
    try:
        check_output_paths(
            ("--json", args.json), inputs=[(f"the test {f}", f) for f in args.files]
        )
    except OutputPathError as e:
        return _err(str(e))
    models: list[str] = list(dict.fromkeys(args.model or MODELS))
    results: list[LitmusResult] = []
    try:
        with stop.armed():
            for t in tests:
                for m in models:
                    r = run_test(
                        t, m, search=args.search, max_executions=args.max_executions
                    )
                    results.append(r)
                    if not args.quiet:
                        print(render_result(t, r), end="\n\n", flush=True)
    except KeyboardInterrupt:
        # Ctrl-C, SIGTERM or SIGHUP: the runs done so far are still the report.
        by = f"{signal_name(stop.signum)} received: " if stop.signum else ""
        print(f"{by}interrupted after {len(results)} runs", file=sys.stderr)
        code = 130 if stop.signum is None else 128 + stop.signum
        if args.json:
            _write_json(args.json, results)
        return code
    print(render_table(results, models))
    weaker = [r for r in results if r.verdict == "weaker"]
    none = [r for r in results if r.verdict is None and r.expected is not None]
    print(
        f"\n{len(results)} runs: "
        + ", ".join(
            f"{sum(r.verdict == v for r in results)} {v}"
            for v in ("agrees", "stronger", "weaker")
        )
        + (f", {len(none)} without a verdict" if none else "")
    )
    code = EXIT_WEAKER if weaker else 0
    if args.json:
        if not _write_json(args.json, results):
            return code or EXIT_NOT_WRITTEN
        print(f"results written to {args.json}")
    return code


def _write_json(path: str, results: list[LitmusResult]) -> bool:
    """The ``--json`` report; False (said on stderr) when it was not written."""
    doc = {"results": [r.to_json() for r in results]}
    failed = write_json_report("--json", path, doc)
    if failed is not None:
        print(f"xensched litmus: error: {failed}", file=sys.stderr)
    return failed is None
