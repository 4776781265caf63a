"""Litmus tests in the Linux kernel memory model's C format, run under the emulator's
memory models (``xensched litmus``).

Mirrors nothing in Xen. :mod:`~xensched.litmus.parse` reads the format's subset,
:mod:`~xensched.litmus.run` runs a test exhaustively under ``sc``, ``tso`` or
``relaxed`` and compares with the test's ``Result:`` line, and
:mod:`~xensched.litmus.catalog` is the built-in set of tests.
"""

from __future__ import annotations

from xensched.litmus.parse import parse, parse_file
from xensched.litmus.syntax import LitmusError, LitmusTest

__all__ = ["LitmusError", "LitmusTest", "parse", "parse_file"]
