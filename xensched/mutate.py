"""``xensched mutate``: the mutation catalog of the fix on the command line.

Mirrors nothing in Xen. ``--list`` names every mutant of
:data:`xensched.mutants.CATALOG` with a line each: its name, what it breaks, and how a
command runs it (``--protocol SPEC``, the edit, the memory model it needs). The other
commands take one with ``--mutant NAME``. Without ``--list`` the command is to run the
harness's commands against each mutant and print a kill table; that is not built yet
and the command says so (exit 2).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from xensched.mutants import CATALOG

if TYPE_CHECKING:
    import argparse

    from xensched.options import Parser

__all__ = ["add_mutate_parser", "catalog_lines"]

EXIT_OK = 0
EXIT_USAGE = 2


def add_mutate_parser(sub: argparse._SubParsersAction[Parser]) -> None:
    p = sub.add_parser(
        "mutate",
        help="the mutation catalog of the fix: --list names every mutant",
        description=(
            "The mutants of the fix of Xen commit 94734ab7c3 that the harness's "
            "checks must kill: the pre-patch order, the fixed switch without one of "
            "its parts (xensched protocols), and named edits of the model. --list "
            "prints one line per mutant: its name, what it breaks, and how it runs. "
            "xensched stress, explore and reproduce run one with --mutant NAME."
        ),
        epilog="exit status: 0 listed, 2 usage error (and, for now, without --list: "
        "the kill table is not built yet).",
    )
    p.add_argument(
        "--list",
        action="store_true",
        help="list the mutants, one line each: NAME, what it breaks, and how it "
        "runs (its --protocol, its edit, the memory model it needs)",
    )
    p.set_defaults(func=_cmd_mutate)


def catalog_lines() -> list[str]:
    """``xensched mutate --list``: one line per mutant of the catalog, in its order."""
    width = max(len(m.name) for m in CATALOG)
    return [f"{m.name:<{width}}  {m.summary} [{m.describe()}]" for m in CATALOG]


def _cmd_mutate(args: argparse.Namespace) -> int:
    if args.list:
        print("\n".join(catalog_lines()))
        return EXIT_OK
    print(
        "xensched mutate: the kill table is not built yet (--list names the mutants)",
        file=sys.stderr,
    )
    return EXIT_USAGE
