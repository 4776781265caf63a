"""The litmus parser: the supported subset read into values, and every construct
outside it refused with one line naming it and its file:line."""

from __future__ import annotations

import pytest

from xensched.litmus import LitmusError, parse, parse_file
from xensched.litmus.syntax import (
    And,
    Assign,
    Atom,
    Binary,
    Cmpxchg,
    Const,
    Decl,
    Fence,
    If,
    Load,
    Lock,
    Not,
    Or,
    Reg,
    Store,
    Unary,
    Unlock,
    Xchg,
    holds,
)

FULL = r"""C Full+subset

(*
 * Result: Sometimes
 * Needs: store-reordering | early-load + store-buffering
 *
 * Every supported statement once.
 *)

{
	x=1;
	int y = 2;
	1:r3=7;
}

P0(int *x, int *y, spinlock_t *s)
{
	int r0 = 1, r1;

	WRITE_ONCE(*x, r0 + 1);   // a comment
	smp_store_release(y, -2);
	smp_mb(); smp_wmb(); smp_rmb();
	spin_lock(s);
	r1 = READ_ONCE(*x);
	spin_unlock(s);
	/* a block
	comment */
	r0 = smp_load_acquire(y);
}

P1(int *x, int *z, spinlock_t *s)
{
	int r0 = xchg(x, 3), r1;

	r1 = cmpxchg(z, 0, r0);
	xchg(z, 4);
	if (r0 == 1 && !(r1 != 0) || r3 >= 2) {
		r1 = r1 - 1;
	} else
		r1 = 5;
	if (r1)
		WRITE_ONCE(*z, 9);
}

exists (0:r0=1 /\ ~(1:r1=0 \/ x=2) /\ z=-1)
"""


def test_every_supported_construct_is_read() -> None:
    t = parse(FULL, "full.litmus")
    assert t.name == "Full+subset"
    assert t.result == "Sometimes"
    assert t.needs == (
        frozenset({"store-reordering"}),
        frozenset({"early-load", "store-buffering"}),
    )
    assert t.variables == (("x", 1), ("y", 2), ("z", 0))
    assert t.locks == ("s",)
    p0, p1 = t.processes
    assert p0.params == ("x", "y", "s")
    assert p0.body == (
        Decl("r0", Const(1)),
        Decl("r1", None),
        Store("x", Binary("+", Reg("r0"), Const(1)), release=False),
        Store("y", Unary("-", Const(2)), release=True),
        Fence("mb"),
        Fence("wmb"),
        Fence("rmb"),
        Lock("s"),
        Load("r1", "x", acquire=False),
        Unlock("s"),
        Load("r0", "y", acquire=True),
    )
    assert p0.body[2].line == 20
    assert p0.body[-1].line == 28
    assert p1.registers == (("r0", 0), ("r1", 0), ("r3", 7))
    assert p1.body[:5] == (
        Decl("r0", None),
        Xchg("r0", "x", Const(3)),
        Decl("r1", None),
        Cmpxchg("r1", "z", Const(0), Reg("r0")),
        Xchg(None, "z", Const(4)),
    )
    branch = p1.body[5]
    assert isinstance(branch, If)
    assert branch.then == (Assign("r1", Binary("-", Reg("r1"), Const(1))),)
    assert branch.orelse == (Assign("r1", Const(5)),)
    assert isinstance(branch.cond, Binary)
    assert branch.cond.op == "||"  # && binds tighter than ||
    assert p1.body[6] == If(Reg("r1"), (Store("z", Const(9), release=False),), ())
    c = t.condition
    assert c.quantifier == "exists"
    assert c.prop == And(
        And(Atom(0, "r0", 1), Not(Or(Atom(1, "r1", 0), Atom(None, "x", 2)))),
        Atom(None, "z", -1),
    )
    assert c.text == r"exists (0:r0=1 /\ ~(1:r1=0 \/ x=2) /\ z=-1)"


def test_kernel_style_comments_everywhere() -> None:
    text = (
        "C MP+kernel-style\n\n(*\n * Result: Never\n *)\n\n{}\n\n"
        "P0(int *buf, int *flag) // Producer\n{\n\tWRITE_ONCE(*buf, 1);\n"
        "\tsmp_store_release(flag, 1);\n}\n\n"
        "P1(int *buf, int *flag) // Consumer\n{\n\tint r0;\n\tint r1;\n\n"
        "\tr0 = smp_load_acquire(flag);\n\tr1 = READ_ONCE(*buf); (* herd's *)\n}\n\n"
        "exists (1:r0=1 /\\ 1:r1=0) (* Bad outcome. *)\n"
    )
    t = parse(text)
    assert t.result == "Never"
    assert t.processes[1].body[-1] == Load("r1", "buf", acquire=False)
    assert t.condition.text == "exists (1:r0=1 /\\ 1:r1=0)"


def test_condition_quantifiers_and_empty_initial_state() -> None:
    base = "C T\n{}\nP0(int *x)\n{\n\tWRITE_ONCE(*x, 1);\n}\n"
    for clause, quant in (
        ("exists (x=1)", "exists"),
        ("~exists (x=1)", "~exists"),
        ("forall (x=1 \\/ x=0)", "forall"),
    ):
        t = parse(base + clause)
        assert t.condition.quantifier == quant
        assert t.result is None
        assert t.variables == (("x", 0),)
    t = parse(base + "exists x=1 /\\ ~x=2")
    assert holds(t.condition.prop, {"x": 1})
    assert not holds(t.condition.prop, {"x": 2})


PROLOGUE = "C Bad\n\n{}\n\nP0(int *x, int *y, spinlock_t *s)\n{\n\tint r0;\n"
CLOSE = "}\n\nexists (0:r0=1)\n"
LINE = 8  # the line of the statement under test


@pytest.mark.parametrize(
    ("statement", "named"),
    [
        ("rcu_read_lock();", "'rcu_read_lock'"),
        ("synchronize_rcu();", "'synchronize_rcu'"),
        ("smp_mb__after_spinlock();", "'smp_mb__after_spinlock'"),
        ("smp_mb__before_atomic();", "'smp_mb__before_atomic'"),
        ("atomic_inc(x);", "'atomic_inc'"),
        ("r0 = atomic_read(x);", "'atomic_read'"),
        ("r0 = xchg_relaxed(x, 1);", "'xchg_relaxed'"),
        ("r0 = READ_ONCE(*r0);", "pointer held in register r0"),
        ("while (r0) { r0 = 0; }", "'while (loops)'"),
        ("for (;;) { }", "'for (loops)'"),
        ("do { } while (0);", "'do (loops)'"),
        ("*x = 1;", "plain access through a pointer"),
        ("x = 1;", "plain store to x"),
        ("r0 = *x;", "plain access through a pointer"),
        ("r0 = x;", "x read without READ_ONCE"),
        ("r0 = READ_ONCE(*x) + 1;", "READ_ONCE inside an expression"),
        ("if (READ_ONCE(*x)) { }", "READ_ONCE inside an expression"),
        ("r0 = r0 * 2;", "operator *"),
        ("r0 = &x;", "address-of"),
        ("int *r1;", "pointer"),
    ],
)
def test_each_unsupported_construct_is_named_with_its_line(
    statement: str, named: str
) -> None:
    with pytest.raises(LitmusError) as e:
        parse(PROLOGUE + "\t" + statement + "\n" + CLOSE, "bad.litmus")
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"bad.litmus:{LINE}: ")
    assert named in msg


@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        ("", ":1:", "expected 'C name'"),
        ("X86 SB\n", ":1:", "only C litmus tests"),
        ("C\n{}\n", ":1:", "no test name"),
        ("C T\n(* no end\n", ":2:", "unterminated (* comment"),
        ("C T\n{ x=y; }\nP0(int *x) {}\nexists (x=0)", ":2:", "pointer initial value"),
        ("C T\n{}\nP0(atomic_t *v) {}\nexists (0:r0=0)", ":3:", "'atomic_t parameter'"),
        ("C T\n{}\nP1(int *x) {}\nexists (x=0)", ":3:", "expected P0"),
        (
            "C T\n{}\nP0(int *x) {\n\tWRITE_ONCE(*x, 1)\n}\nexists (x=1)",
            ":5:",
            "expected ';'",
        ),
        ("C T\n{}\nP0(int *x) {\n\tWRITE_ONCE(*x, 1);\n", ":5:", "unterminated block"),
        ("C T\n{}\nP0(int *x) {}\n", ":4:", "final exists"),
        (
            "C T\n{}\nP0(int *x) {}\nlocations [x]\nexists (x=0)",
            ":4:",
            "'locations clause'",
        ),
        (
            "C T\n{}\nP0(int *x) {}\nexists (x=0) junk",
            ":4:",
            "after the final condition",
        ),
        ("C T\n{}\nP0(int *x) {}\nexists (x=y)", ":4:", "comparing two locations"),
        ("C T\n{}\nP0(int *x) {}\nexists (0:r9=0)", ":4:", "no register of P0"),
        ("C T\n{}\nP0(int *x) {}\nexists (q=0)", ":4:", "no shared variable"),
        (
            "C T\n{}\nP0(int *x) {\n\tWRITE_ONCE(*q, 1);\n}\nexists (x=0)",
            ":4:",
            "q is not a parameter",
        ),
        (
            "C T\n{}\nP0(int *x) {\n\tWRITE_ONCE(x, 1);\n}\nexists (x=0)",
            ":4:",
            "takes *VAR",
        ),
        (
            "C T\n{}\nP0(int *x) {\n\tr0 = smp_load_acquire(*x);\n}\nexists (x=0)",
            ":4:",
            "not *VAR",
        ),
        (
            "C T\n{}\nP0(int *x) {\n\tr0 = r7;\n}\nexists (x=0)",
            ":4:",
            "unknown register r7",
        ),
        (
            "C T\n{}\nP0(int *x, spinlock_t *s) {\n\tspin_lock(x);\n}\nexists (x=0)",
            ":4:",
            "not a spinlock_t",
        ),
        (
            "C T\n{}\nP0(int *x) {\n\tREAD_ONCE(*x);\n}\nexists (x=0)",
            ":4:",
            "assigned to a register",
        ),
        (
            "C T\n{}\nP0(int *x) {\n\tWRITE_ONCE(*x, 1); @\n}\nexists (x=0)",
            ":4:",
            "unexpected character '@'",
        ),
    ],
)
def test_malformed_files_are_one_line_errors(text: str, where: str, words: str) -> None:
    with pytest.raises(LitmusError) as e:
        parse(text, "t.litmus")
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("t.litmus" + where), msg
    assert words in msg, msg


def test_bad_notes_are_refused() -> None:
    body = "{}\nP0(int *x) {}\nexists (x=0)\n"
    with pytest.raises(LitmusError, match=r"^t\.litmus:2: Result: 'Maybe'"):
        parse(f"C T\n(* Result: Maybe *)\n{body}", "t.litmus")
    with pytest.raises(LitmusError, match=r"^t\.litmus:3: Needs: unknown class oota"):
        parse(f"C T\n(*\n * Needs: oota\n *)\n{body}", "t.litmus")


def test_a_missing_file_is_a_litmus_error(tmp_path: object) -> None:
    with pytest.raises(LitmusError, match=r"none\.litmus: No such file or directory$"):
        parse_file(f"{tmp_path}/none.litmus")
