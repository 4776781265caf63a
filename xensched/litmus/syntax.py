"""The values a litmus test parses into: the test, its threads' statements, the
expressions over registers and the final condition.

Mirrors nothing in Xen: the subset of the Linux kernel memory model's litmus format
(``tools/memory-model/litmus-tests/*.litmus``) that :mod:`xensched.litmus.parse`
reads. Everything is a frozen dataclass; a statement keeps its source line for
messages.

Left out: pointers, ``atomic_t``, RCU, loops, and every primitive the parser refuses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from xensched.errors import XenschedError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "CLASSES",
    "And",
    "Assign",
    "Atom",
    "Binary",
    "Cmpxchg",
    "Condition",
    "Const",
    "Decl",
    "Expr",
    "Fence",
    "If",
    "LitmusError",
    "LitmusTest",
    "Load",
    "Lock",
    "Not",
    "Or",
    "Process",
    "Prop",
    "Reg",
    "Stmt",
    "Store",
    "Unary",
    "Unlock",
    "Xchg",
    "atoms",
    "holds",
    "show",
]

Result = Literal["Always", "Sometimes", "Never"]

#: The reorderings a weak outcome may need (a test's ``Needs:`` note), each a class of
#: the kernel model's relaxations.
CLASSES: Mapping[str, str] = {
    "store-buffering": "a load passing an earlier store (W->R)",
    "store-reordering": "stores becoming visible out of program order (W->W)",
    "early-load": "a load satisfied before an earlier load (R->R)",
    "load-buffering": "a store becoming visible before an earlier load (R->W)",
    "non-mca": "stores seen in different orders by different CPUs "
    "(non-multicopy-atomic, IRIW)",
}


class LitmusError(XenschedError):
    """A litmus file that cannot be read or is outside the supported subset: one line,
    ``FILE:LINE: what``."""


# -- expressions over registers --------------------------------------------------


@dataclass(frozen=True, slots=True)
class Const:
    value: int


@dataclass(frozen=True, slots=True)
class Reg:
    name: str


@dataclass(frozen=True, slots=True)
class Unary:
    op: Literal["!", "-"]
    operand: Expr


@dataclass(frozen=True, slots=True)
class Binary:
    op: str  # one of + - == != < <= > >= && ||
    left: Expr
    right: Expr


Expr = Const | Reg | Unary | Binary


# -- statements -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Decl:
    """``int r0;`` or ``int r0 = EXPR;``."""

    reg: str
    init: Expr | None
    line: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Assign:
    """``r0 = EXPR;`` (registers and constants only)."""

    reg: str
    value: Expr
    line: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Load:
    """``r0 = READ_ONCE(*x);`` or ``r0 = smp_load_acquire(x);``."""

    reg: str
    var: str
    acquire: bool
    line: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Store:
    """``WRITE_ONCE(*x, EXPR);`` or ``smp_store_release(x, EXPR);``."""

    var: str
    value: Expr
    release: bool
    line: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Xchg:
    """``r0 = xchg(x, EXPR);`` (``reg`` is ``None`` without the assignment)."""

    reg: str | None
    var: str
    value: Expr
    line: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Cmpxchg:
    """``r0 = cmpxchg(x, OLD, NEW);``."""

    reg: str | None
    var: str
    old: Expr
    new: Expr
    line: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Fence:
    """``smp_mb();``, ``smp_wmb();`` or ``smp_rmb();``."""

    kind: Literal["mb", "wmb", "rmb"]
    line: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Lock:
    """``spin_lock(s);``."""

    lock: str
    line: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Unlock:
    """``spin_unlock(s);``."""

    lock: str
    line: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class If:
    """``if (COND) { ... } else { ... }``."""

    cond: Expr
    then: tuple[Stmt, ...]
    orelse: tuple[Stmt, ...]
    line: int = field(default=0, compare=False)


Stmt = Decl | Assign | Load | Store | Xchg | Cmpxchg | Fence | Lock | Unlock | If


@dataclass(frozen=True, slots=True)
class Process:
    """``Pn(int *x, spinlock_t *s) { ... }``: ``registers`` with their initial values
    (0 unless the initial-state block says ``n:r=v``)."""

    index: int
    params: tuple[str, ...]
    body: tuple[Stmt, ...]
    registers: tuple[tuple[str, int], ...]


# -- the final condition ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Atom:
    """``0:r0=1`` (``thread`` 0) or ``x=1`` (``thread`` ``None``: memory)."""

    thread: int | None
    name: str
    value: int

    @property
    def key(self) -> str:
        return self.name if self.thread is None else f"{self.thread}:{self.name}"


@dataclass(frozen=True, slots=True)
class Not:
    prop: Prop


@dataclass(frozen=True, slots=True)
class And:
    left: Prop
    right: Prop


@dataclass(frozen=True, slots=True)
class Or:
    left: Prop
    right: Prop


Prop = Atom | Not | And | Or


@dataclass(frozen=True, slots=True)
class Condition:
    """The final clause: ``exists``, ``~exists`` or ``forall`` over ``prop``."""

    quantifier: Literal["exists", "~exists", "forall"]
    prop: Prop
    text: str


def atoms(p: Prop) -> list[Atom]:
    """The atoms of ``p``, left to right."""
    if isinstance(p, Atom):
        return [p]
    if isinstance(p, Not):
        return atoms(p.prop)
    return atoms(p.left) + atoms(p.right)


def show(p: Prop, inside: str = "") -> str:
    """``p`` written as in a litmus file (``/\\`` binds tighter than ``\\/``)."""
    if isinstance(p, Atom):
        return f"{p.key}={p.value}"
    if isinstance(p, Not):
        inner = show(p.prop, "~")
        return f"~{inner}"
    if isinstance(p, And):
        text = f"{show(p.left, 'and')} /\\ {show(p.right, 'and')}"
        return f"({text})" if inside == "~" else text
    text = f"{show(p.left, 'or')} \\/ {show(p.right, 'or')}"
    return f"({text})" if inside in ("~", "and") else text


def holds(p: Prop, state: Mapping[str, int]) -> bool:
    """Does ``p`` hold of a final state (``{"0:r0": 1, "x": 1}``)?"""
    if isinstance(p, Atom):
        return state[p.key] == p.value
    if isinstance(p, Not):
        return not holds(p.prop, state)
    if isinstance(p, And):
        return holds(p.left, state) and holds(p.right, state)
    return holds(p.left, state) or holds(p.right, state)


@dataclass(frozen=True, slots=True)
class LitmusTest:
    """One parsed litmus test.

    ``result`` is the comment's ``Result:`` line (the kernel model's verdict on the
    condition's proposition, as herd7's ``Observation`` line gives it), ``needs`` its
    ``Needs:`` note: the alternatives of reorderings (:data:`CLASSES`) the weak outcome
    needs, each a set; a model doing none of them cannot show it.
    """

    name: str
    source: str
    comment: str
    result: Result | None
    needs: tuple[frozenset[str], ...]
    variables: tuple[tuple[str, int], ...]
    locks: tuple[str, ...]
    processes: tuple[Process, ...]
    condition: Condition
