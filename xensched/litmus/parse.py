"""Read litmus tests written in the Linux kernel memory model's C format.

Mirrors nothing in Xen: the format of ``tools/memory-model/litmus-tests/*.litmus``
in Linux (herd7's C litmus dialect), restricted to what the emulator's memory models
can run:

- a ``C name`` header line, then optional ``(* ... *)`` comment blocks (also after
  the final condition); a comment's ``Result: Always|Sometimes|Never`` line is the
  kernel model's verdict, and a ``Needs: CLASS[+CLASS] | ...`` line (xensched's note)
  names the reorderings the weak outcome needs
  (:data:`~xensched.litmus.syntax.CLASSES`);
- an initial-state block ``{ x=0; y=1; 0:r1=2; }`` (``int x=0;`` too); shared
  variables not listed start at 0;
- ``Pn(int *x, spinlock_t *s) { ... }`` functions, ``n`` counting from 0, over
  ``int r;`` declarations (``int r = READ_ONCE(*x);`` too), ``READ_ONCE``,
  ``WRITE_ONCE``, ``smp_load_acquire``, ``smp_store_release``, ``smp_mb``,
  ``smp_wmb``, ``smp_rmb``, ``spin_lock``, ``spin_unlock``, ``xchg``, ``cmpxchg``,
  assignments of register expressions and ``if``/``else`` on registers;
- a final ``exists``, ``~exists`` or ``forall`` clause over ``n:reg=v`` and
  ``var=v`` atoms with ``/\\``, ``\\/``, ``~`` and parentheses.

Anything else (pointers held in registers, ``atomic_t``, RCU, ``smp_mb__*``, loops,
memory accesses inside expressions, ``locations``/``filter`` clauses) is a
:class:`~xensched.litmus.syntax.LitmusError` naming the construct and ``FILE:LINE``:
the runner never guesses at a test it does not understand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NoReturn, cast

from xensched.inputs import InputError, read_text
from xensched.litmus.syntax import (
    CLASSES,
    And,
    Assign,
    Atom,
    Binary,
    Cmpxchg,
    Condition,
    Const,
    Decl,
    Expr,
    Fence,
    If,
    LitmusError,
    LitmusTest,
    Load,
    Lock,
    Not,
    Or,
    Process,
    Prop,
    Reg,
    Result,
    Stmt,
    Store,
    Unary,
    Unlock,
    Xchg,
    atoms,
    show,
)

__all__ = ["parse", "parse_file"]

# ``(* ... *)`` comments (herd's) start with ``(*`` and a space, as after the final
# condition: ``READ_ONCE(*x)`` must stay a call.
_TOKEN = re.compile(
    r"""
    (?P<ws>[ \t\r\f\v]+)
  | (?P<nl>\n)
  | (?P<comment>//[^\n]*|/\*.*?\*/|\(\*\s.*?\*\))
  | (?P<int>\d+)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>/\\|\\/|==|!=|<=|>=|&&|\|\||->|\+\+|--|[{}()\[\];,*=!~:+\-<>&|.?%/^])
    """,
    re.VERBOSE | re.DOTALL,
)

#: Primitives and keywords of the kernel's format that the subset leaves out, with how
#: the error names them (anything not known at all is named as it is).
_UNSUPPORTED = {
    "while": "loops",
    "for": "loops",
    "do": "loops",
    "goto": "goto",
    "return": "return",
    "switch": "switch",
}

_FENCES: dict[str, Literal["mb", "wmb", "rmb"]] = {
    "smp_mb": "mb",
    "smp_wmb": "wmb",
    "smp_rmb": "rmb",
}

_RESULTS = ("Always", "Sometimes", "Never")


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # int, ident, op, eof
    text: str
    line: int


def _tokens(text: str, first_line: int, where: str) -> list[_Tok]:
    out: list[_Tok] = []
    line = first_line
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise LitmusError(f"{where}:{line}: unexpected character {text[pos]!r}")
        kind = m.lastgroup
        s = m.group()
        if kind in ("int", "ident", "op"):
            out.append(_Tok(kind, s, line))
        line += s.count("\n")
        pos = m.end()
    out.append(_Tok("eof", "", line))
    return out


class _Parser:
    def __init__(self, toks: list[_Tok], where: str) -> None:
        self.toks = toks
        self.i = 0
        self.where = where
        # Per process while its body is read: its parameters and registers.
        self.params: dict[str, str] = {}
        self.regs: set[str] = set()

    # -- tokens --------------------------------------------------------------------
    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def peek(self, k: int = 1) -> _Tok:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def fail(self, what: str, line: int | None = None) -> NoReturn:
        raise LitmusError(
            f"{self.where}:{self.tok.line if line is None else line}: {what}"
        )

    def unsupported(self, name: str, line: int) -> NoReturn:
        self.fail(
            f"unsupported construct {name!r} (outside the supported subset)", line
        )

    def next(self) -> _Tok:
        t = self.tok
        self.i += 1
        return t

    def at(self, text: str) -> bool:
        t = self.tok
        return t.kind in ("op", "ident") and t.text == text

    def accept(self, text: str) -> bool:
        if self.at(text):
            self.i += 1
            return True
        return False

    def expect(self, text: str, what: str = "") -> _Tok:
        if not self.at(text):
            self.fail(f"expected {text!r}{what}, found {self._shown()}")
        return self.next()

    def _shown(self) -> str:
        return "end of file" if self.tok.kind == "eof" else repr(self.tok.text)

    def ident(self, what: str) -> _Tok:
        if self.tok.kind != "ident":
            self.fail(f"expected {what}, found {self._shown()}")
        return self.next()

    def integer(self) -> int:
        neg = self.accept("-")
        if self.tok.kind != "int":
            self.fail(f"expected an integer, found {self._shown()}")
        v = int(self.next().text)
        return -v if neg else v

    # -- initial state -----------------------------------------------------------------
    def init_block(self) -> tuple[dict[str, int], dict[tuple[int, str], int]]:
        shared: dict[str, int] = {}
        regs: dict[tuple[int, str], int] = {}
        self.expect("{", " opening the initial-state block")
        while not self.accept("}"):
            if self.accept(";"):
                continue
            line = self.tok.line
            if self.tok.kind == "int" and self.peek().text == ":":
                p = int(self.next().text)
                self.next()
                name = self.ident("a register").text
                self.expect("=")
                regs[(p, name)] = self.integer()
            else:
                if self.at("int"):
                    self.next()
                elif self.tok.kind == "ident" and self.peek().kind == "ident":
                    self.unsupported(f"{self.tok.text} in the initial state", line)
                name = self.ident("a variable").text
                if self.accept(";"):
                    shared[name] = 0
                    continue
                self.expect("=", f" after {name}")
                if self.tok.kind == "ident" or self.at("&"):
                    self.unsupported(
                        f"{name}={self.tok.text} (pointer initial value)", line
                    )
                shared[name] = self.integer()
            if not self.at("}"):
                self.expect(";", " between initial values")
        return shared, regs

    # -- processes -------------------------------------------------------------------
    def process(
        self, expected: int, preset: set[str]
    ) -> tuple[int, tuple[str, ...], dict[str, str], tuple[Stmt, ...], set[str]]:
        t = self.ident("a process P0(...) or the final condition")
        m = re.fullmatch(r"P(\d+)", t.text)
        if m is None:
            self.fail(f"expected process P{expected}, found {t.text!r}", t.line)
        index = int(m.group(1))
        if index != expected:
            self.fail(f"process {t.text} out of order: expected P{expected}", t.line)
        self.expect("(")
        params: dict[str, str] = {}
        while not self.accept(")"):
            line = self.tok.line
            ty = self.ident("a parameter type").text
            if ty == "int":
                kind = "int"
            elif ty == "spinlock_t":
                kind = "spinlock"
            else:
                self.unsupported(f"{ty} parameter", line)
            self.expect("*", " (parameters are pointers to shared variables)")
            name = self.ident("a parameter name").text
            if name in params:
                self.fail(f"parameter {name} twice", line)
            params[name] = kind
            if not self.at(")"):
                self.expect(",")
        self.params = params
        # Registers the initial state gives a value are known before any statement.
        self.regs = set(preset)
        body = self.block()
        return index, tuple(params), params, body, self.regs

    def block(self) -> tuple[Stmt, ...]:
        self.expect("{")
        out: list[Stmt] = []
        while not self.accept("}"):
            if self.tok.kind == "eof":
                self.fail("unterminated block: expected '}'")
            out.extend(self.statement())
        return tuple(out)

    def body_or_stmt(self) -> tuple[Stmt, ...]:
        if self.at("{"):
            return self.block()
        return tuple(self.statement())

    def shared(self, deref: bool, what: str) -> str:
        """A shared variable argument: ``*x`` (``deref``) or ``x``."""
        line = self.tok.line
        if deref:
            if not self.accept("*"):
                self.fail(f"{what} takes *VAR (a pointer parameter dereferenced)")
        elif self.at("*"):
            self.fail(f"{what} takes VAR (the pointer parameter itself), not *VAR")
        if self.at("&"):
            self.unsupported("& (address-of)", line)
        name = self.ident("a shared variable").text
        kind = self.params.get(name)
        if kind is None:
            if name in self.regs:
                self.unsupported(f"pointer held in register {name}", line)
            self.fail(f"{name} is not a parameter of this process", line)
        if kind != "int":
            self.fail(f"{name} is a spinlock_t, not an int variable", line)
        if self.at("->") or self.at("[") or self.at("."):
            self.unsupported(f"{self.tok.text} (structures and arrays)", line)
        return name

    def lock_arg(self, what: str) -> str:
        line = self.tok.line
        name = self.ident("a spinlock").text
        if self.params.get(name) != "spinlock":
            self.fail(f"{what}: {name} is not a spinlock_t parameter", line)
        return name

    def statement(self) -> list[Stmt]:
        t = self.tok
        line = t.line
        if t.kind != "ident":
            if self.accept(";"):
                return []
            if self.at("{"):
                return list(self.block())
            if self.at("*"):
                self.unsupported("* (a plain access through a pointer)", line)
            self.fail(f"expected a statement, found {self._shown()}")
        name = t.text
        if name in _UNSUPPORTED:
            self.unsupported(f"{name} ({_UNSUPPORTED[name]})", line)
        if name == "int":
            return self.declaration()
        if name == "if":
            return [self.if_stmt()]
        if self.peek().text == "=" and self.peek().kind == "op":
            return [self.assignment()]
        if self.peek().text != "(":
            self.fail(f"expected a statement, found {name!r}", line)
        self.next()
        out: Stmt
        if name in _FENCES:
            self.expect("(")
            self.expect(")")
            out = Fence(_FENCES[name], line)
        elif name in ("WRITE_ONCE", "smp_store_release"):
            self.expect("(")
            var = self.shared(name == "WRITE_ONCE", name)
            self.expect(",")
            value = self.expr()
            self.expect(")")
            out = Store(var, value, name == "smp_store_release", line)
        elif name in ("spin_lock", "spin_unlock"):
            self.expect("(")
            lock = self.lock_arg(name)
            self.expect(")")
            out = Lock(lock, line) if name == "spin_lock" else Unlock(lock, line)
        elif name in ("xchg", "cmpxchg"):
            out = self.rmw(name, None, line)
        elif name in ("READ_ONCE", "smp_load_acquire"):
            self.fail(f"the value of {name} must be assigned to a register", line)
        else:
            self.unsupported(name, line)
        self.expect(";", " after the statement")
        return [out]

    def declaration(self) -> list[Stmt]:
        self.expect("int")
        out: list[Stmt] = []
        while True:
            line = self.tok.line
            if self.at("*"):
                self.unsupported("int * register (pointer)", line)
            reg = self.ident("a register name").text
            if reg in self.params:
                self.fail(f"register {reg} shadows a parameter", line)
            self.regs.add(reg)
            if not self.accept("="):
                out.append(Decl(reg, None, line))
            elif self._call_next():
                # int r0 = READ_ONCE(*x);: the declaration, then the access.
                out.append(Decl(reg, None, line))
                out.append(self.access(reg, line))
            else:
                out.append(Decl(reg, self.expr(), line))
            if not self.accept(","):
                break
        self.expect(";", " after the declaration")
        return out

    def _call_next(self) -> bool:
        return self.tok.kind == "ident" and self.peek().text == "("

    def assignment(self) -> Stmt:
        t = self.next()
        line = t.line
        reg = t.text
        if reg in self.params:
            self.unsupported(f"plain store to {reg} (use WRITE_ONCE)", line)
        self.regs.add(reg)
        self.expect("=")
        out = (
            self.access(reg, line)
            if self._call_next()
            else Assign(reg, self.expr(), line)
        )
        self.expect(";", " after the statement")
        return out

    def access(self, reg: str, line: int) -> Stmt:
        """``READ_ONCE(*x)`` and the other calls whose value goes to ``reg``."""
        f = self.next()
        out: Stmt
        if f.text in ("READ_ONCE", "smp_load_acquire"):
            self.expect("(")
            var = self.shared(f.text == "READ_ONCE", f.text)
            self.expect(")")
            out = Load(reg, var, f.text == "smp_load_acquire", line)
        elif f.text in ("xchg", "cmpxchg"):
            out = self.rmw(f.text, reg, line)
        else:
            self.unsupported(f.text, f.line)
        if self.tok.kind == "op" and self.tok.text not in (";", ",", "}"):
            self.unsupported(
                f"{f.text} inside an expression (assign it to a register)", f.line
            )
        return out

    def rmw(self, name: str, reg: str | None, line: int) -> Stmt:
        self.expect("(")
        var = self.shared(False, name)
        self.expect(",")
        a = self.expr()
        if name == "cmpxchg":
            self.expect(",")
            b = self.expr()
            self.expect(")")
            return Cmpxchg(reg, var, a, b, line)
        self.expect(")")
        return Xchg(reg, var, a, line)

    def if_stmt(self) -> Stmt:
        line = self.expect("if").line
        self.expect("(")
        cond = self.expr()
        self.expect(")")
        then = self.body_or_stmt()
        orelse = self.body_or_stmt() if self.accept("else") else ()
        return If(cond, then, orelse, line)

    # -- expressions over registers ------------------------------------------------------
    _LEVELS: tuple[tuple[str, ...], ...] = (
        ("||",),
        ("&&",),
        ("==", "!="),
        ("<", "<=", ">", ">="),
        ("+", "-"),
    )

    def expr(self, level: int = 0) -> Expr:
        if level == len(self._LEVELS):
            return self.unary()
        left = self.expr(level + 1)
        while self.tok.kind == "op" and self.tok.text in self._LEVELS[level]:
            op = self.next().text
            left = Binary(op, left, self.expr(level + 1))
        if (
            level == 0
            and self.tok.kind == "op"
            and self.tok.text in ("*", "/", "%", "&", "|", "^", "?")
        ):
            self.unsupported(f"operator {self.tok.text}", self.tok.line)
        return left

    def unary(self) -> Expr:
        t = self.tok
        if self.accept("!"):
            return Unary("!", self.unary())
        if self.accept("-"):
            return Unary("-", self.unary())
        if self.accept("("):
            e = self.expr()
            self.expect(")")
            return e
        if t.kind == "int":
            return Const(int(self.next().text))
        if t.kind == "ident":
            self.next()
            if self.at("("):
                if t.text in ("READ_ONCE", "smp_load_acquire", "xchg", "cmpxchg"):
                    self.unsupported(
                        f"{t.text} inside an expression (assign it to a register)",
                        t.line,
                    )
                self.unsupported(t.text, t.line)
            if t.text in self.params:
                self.unsupported(
                    f"{t.text} read without READ_ONCE (plain access)", t.line
                )
            if t.text not in self.regs:
                self.fail(
                    f"unknown register {t.text} (declare it: int {t.text};)", t.line
                )
            return Reg(t.text)
        if self.at("*"):
            self.unsupported("* (a plain access through a pointer)", t.line)
        if self.at("&"):
            self.unsupported("& (address-of)", t.line)
        self.fail(f"expected an expression, found {self._shown()}")

    # -- the final condition ------------------------------------------------------------
    def prop(self) -> Prop:
        left = self.conj()
        while self.accept("\\/"):
            left = Or(left, self.conj())
        return left

    def conj(self) -> Prop:
        left = self.neg()
        while self.accept("/\\"):
            left = And(left, self.neg())
        return left

    def neg(self) -> Prop:
        if self.accept("~"):
            return Not(self.neg())
        if self.accept("("):
            p = self.prop()
            self.expect(")", " closing the condition's parenthesis")
            return p
        return self.atom()

    def atom(self) -> Atom:
        line = self.tok.line
        thread: int | None = None
        if self.tok.kind == "int":
            thread = int(self.next().text)
            self.expect(":", " in a register atom such as 0:r0=1")
        name = self.ident("a register 0:r0 or a variable in the condition").text
        self.expect("=", f" after {name} in the condition")
        if self.tok.kind == "ident":
            self.unsupported(f"{name}={self.tok.text} (comparing two locations)", line)
        return Atom(thread, name, self.integer())


def _header(text: str, where: str) -> tuple[str, str, int, int]:
    """``(name, comment, offset of the rest, its line)``."""
    lines = text.split("\n")
    n = 0
    while n < len(lines) and not lines[n].strip():
        n += 1
    if n == len(lines):
        raise LitmusError(f"{where}:1: empty file: expected 'C name'")
    head = lines[n].strip().split(None, 1)
    if head[0] != "C":
        arch = (
            f" (a {head[0]} test: only C litmus tests are read)"
            if head[0]
            in (
                "X86",
                "AArch64",
                "ARM",
                "PPC",
                "RISCV",
                "LISA",
            )
            else ""
        )
        raise LitmusError(f"{where}:{n + 1}: expected 'C name' as the first line{arch}")
    if len(head) < 2:
        raise LitmusError(f"{where}:{n + 1}: the 'C' header has no test name")
    name = head[1].strip()
    pos = sum(len(x) + 1 for x in lines[: n + 1])
    line = n + 2
    comments: list[str] = []
    while True:
        rest = text[pos:]
        stripped = rest.lstrip()
        line += rest[: len(rest) - len(stripped)].count("\n")
        pos += len(rest) - len(stripped)
        if not stripped.startswith("(*"):
            break
        end = text.find("*)", pos + 2)
        if end < 0:
            raise LitmusError(f"{where}:{line}: unterminated (* comment")
        body = text[pos + 2 : end]
        comments.append(body)
        line += body.count("\n")
        pos = end + 2
    return name, "\n".join(comments), pos, line


def _notes(
    comment: str, where: str, text: str
) -> tuple[Result | None, tuple[frozenset[str], ...]]:
    result: Result | None = None
    needs: list[frozenset[str]] = []
    lines = text.split("\n")
    for raw in comment.split("\n"):
        # The note's own line, for the message (the first line that holds it).
        at = next((i + 1 for i, x in enumerate(lines) if raw.strip() in x), 0)
        m = re.match(r"\s*\*?\s*Result:\s*(\S+)", raw)
        if m is not None:
            word = m.group(1).rstrip(".")
            if word not in _RESULTS:
                raise LitmusError(
                    f"{where}:{at}: Result: {word!r}: expected Always, Sometimes "
                    "or Never"
                )
            result = cast("Result", word)
        m = re.match(r"\s*\*?\s*Needs:\s*(.*)", raw)
        if m is not None:
            for alt in m.group(1).split("|"):
                classes = frozenset(c.strip() for c in alt.split("+") if c.strip())
                unknown = sorted(classes - set(CLASSES))
                if unknown or not classes:
                    raise LitmusError(
                        f"{where}:{at}: Needs: unknown class {', '.join(unknown) or '(none)'}; "
                        f"known: {', '.join(CLASSES)}"
                    )
                needs.append(classes)
    return result, tuple(needs)


def parse(text: str, where: str = "<litmus>") -> LitmusTest:
    """Parse one test; ``where`` names it in errors (a path)."""
    name, comment, pos, line = _header(text, where)
    result, needs = _notes(comment, where, text)
    p = _Parser(_tokens(text[pos:], line, where), where)
    shared, init_regs = p.init_block()
    procs: list[Process] = []
    kinds: dict[str, str] = {}
    while p.tok.kind == "ident" and re.fullmatch(r"P\d+", p.tok.text):
        preset = {r for t, r in init_regs if t == len(procs)}
        index, params, pk, body, regs = p.process(len(procs), preset)
        for v, k in pk.items():
            if kinds.setdefault(v, k) != k:
                p.fail(f"{v} is an int in one process and a spinlock_t in another")
        values = tuple(sorted((r, init_regs.get((index, r), 0)) for r in regs))
        procs.append(Process(index, params, body, values))
    if not procs:
        p.fail(f"expected a process P0(...), found {p._shown()}")
    for t, r in init_regs:
        if t >= len(procs):
            raise LitmusError(f"{where}: initial value of {t}:{r}: there is no P{t}")
    line = p.tok.line
    if p.accept("exists"):
        quant: Literal["exists", "~exists", "forall"] = "exists"
    elif p.at("~") and p.peek().text == "exists":
        p.i += 2
        quant = "~exists"
    elif p.accept("forall"):
        quant = "forall"
    elif p.tok.kind == "ident" and p.tok.text in ("locations", "filter"):
        p.unsupported(f"{p.tok.text} clause", line)
    else:
        p.fail(
            f"expected the final exists, ~exists or forall clause, found {p._shown()}"
        )
    prop = p.prop()
    if p.tok.kind != "eof":
        p.fail(f"unexpected {p._shown()} after the final condition")
    for s in shared:
        if s not in kinds:
            kinds[s] = "int"
    variables = tuple(
        sorted((v, shared.get(v, 0)) for v, k in kinds.items() if k == "int")
    )
    locks = tuple(sorted(v for v, k in kinds.items() if k == "spinlock"))
    for s in shared:
        if kinds[s] != "int":
            raise LitmusError(
                f"{where}: {s} is a spinlock_t: it takes no initial value"
            )
    names = {v for v, _ in variables}
    for a in atoms(prop):
        if a.thread is None:
            if a.name not in names:
                raise LitmusError(
                    f"{where}:{line}: {a.name} in the condition is no shared variable"
                )
        elif a.thread >= len(procs) or a.name not in dict(procs[a.thread].registers):
            raise LitmusError(
                f"{where}:{line}: {a.thread}:{a.name} in the condition is no register of P{a.thread}"
            )
    return LitmusTest(
        name=name,
        source=where,
        comment="\n".join(
            re.sub(r"^\s*\*? ?", "", x).rstrip()
            for x in comment.strip("\n").split("\n")
        ).strip(),
        result=result,
        needs=needs,
        variables=variables,
        locks=locks,
        processes=tuple(procs),
        condition=Condition(quant, prop, f"{quant} ({show(prop)})"),
    )


def parse_file(path: str | Path) -> LitmusTest:
    """Parse the test in ``path`` (``LitmusError`` if unreadable or unsupported)."""
    p = Path(path)
    try:
        text = read_text(p, str(p))
    except InputError as e:
        raise LitmusError(str(e)) from None
    return parse(text, str(p))
