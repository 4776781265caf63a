"""The built-in catalog of litmus tests, shipped as package data.

Mirrors nothing in Xen. The ``catalog/`` folder beside this module holds one
``.litmus`` file per test, written for xensched in the kernel's format (none is a copy
of a kernel file); each file's comment says what the test shows, the kernel model's
``Result:`` and, for an outcome the kernel model allows, the reorderings it ``Needs:``.
"""

from __future__ import annotations

from importlib.resources import files
from typing import TYPE_CHECKING

from xensched.litmus.parse import parse

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

    from xensched.litmus.syntax import LitmusTest

__all__ = ["catalog", "catalog_files"]


def catalog_files() -> list[Traversable]:
    """The catalog's files, by name."""
    folder = files("xensched.litmus").joinpath("catalog")
    return sorted(
        (f for f in folder.iterdir() if f.name.endswith(".litmus")),
        key=lambda f: f.name,
    )


def catalog() -> list[LitmusTest]:
    """The catalog's tests, parsed, by file name."""
    return [
        parse(f.read_text(encoding="utf-8"), f"catalog/{f.name}")
        for f in catalog_files()
    ]
