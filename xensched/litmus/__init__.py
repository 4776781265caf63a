"""Litmus tests in the Linux kernel memory model's C format, run under the emulator's
memory models (``xensched litmus``).

Mirrors nothing in Xen. :mod:`~xensched.litmus.parse` reads the format's subset,
:mod:`~xensched.litmus.run` runs a test exhaustively under ``sc``, ``tso`` or
``relaxed`` and compares with the test's ``Result:`` line, and
:mod:`~xensched.litmus.catalog` is the built-in set of tests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xensched.litmus.builtin import catalog
from xensched.litmus.parse import parse, parse_file
from xensched.litmus.run import LitmusResult, run_all
from xensched.litmus.syntax import LitmusError, LitmusTest
from xensched.memory_model import MODELS

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "LitmusError",
    "LitmusResult",
    "LitmusTest",
    "catalog",
    "parse",
    "parse_file",
    "run_all",
    "run_catalog",
]


def run_catalog(models: Sequence[str] = MODELS) -> list[LitmusResult]:
    """The built-in catalog under each of ``models``, every test exhaustively (what
    ``xensched litmus --catalog`` runs, and ``xensched bench``'s part (f) times)."""
    return run_all(catalog(), models)
