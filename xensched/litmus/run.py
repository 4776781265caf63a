"""Run a litmus test under a memory model, exhaustively, and judge the outcomes.

Mirrors nothing in Xen. Each execution builds a fresh
:class:`~xensched.explore.threads.World`: one :class:`~xensched.memory.Cell` per shared
variable, one :class:`~xensched.spinlock.SpinLock` per ``spinlock_t``, and a thread
``Pn`` per process that interprets the test's statements with its registers in local
variables. The explorer (DPOR by default, or unreduced DFS) runs every interleaving,
every drain order of the store buffers and every early load the model allows; each
execution's *outcome* is the final value of every register and variable the
condition names, written as herd7 does (``0:r0=1; 1:r0=0; x=1;``).

The verdict compares the model's outcomes with the kernel model's ``Result:`` line,
which is about the condition's proposition ``P`` whatever the quantifier
(``exists``, ``~exists``, ``forall``), as herd7's ``Observation`` line is: ``Never``
no outcome satisfies ``P``, ``Always`` every outcome does, ``Sometimes`` both kinds
are allowed. The model's own classification of ``P`` gives:

``agrees``
    the same classification;
``stronger``
    the model forbids outcomes the kernel model allows (``Sometimes`` expected,
    ``Never`` or ``Always`` found): sound, and :attr:`LitmusResult.reason` says which
    reorderings the test's weak outcome needs that the model does not do;
``weaker``
    the model shows an outcome the kernel model forbids: a bug of the model.

No verdict (``None``) without a ``Result:`` line, or when the search was not
exhaustive (its execution budget ran out) or an execution failed (a deadlock, a
crash): a partial outcome set proves nothing about what is forbidden.

Left out: herd7's own memory models; the kernel model is only known through the
``Result:`` line the test carries.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from xensched.explore.dfs import BoundedDFS
from xensched.explore.dpor import DPOR
from xensched.explore.engine import Explorer
from xensched.explore.threads import ThreadsTarget, World
from xensched.litmus.syntax import (
    CLASSES,
    Assign,
    Cmpxchg,
    Const,
    Decl,
    Expr,
    Fence,
    If,
    LitmusTest,
    Load,
    Lock,
    Reg,
    Stmt,
    Store,
    Unary,
    Unlock,
    Xchg,
    atoms,
    holds,
)
from xensched.memory import (
    cmpxchg,
    smp_load_acquire,
    smp_mb,
    smp_rmb,
    smp_store_release,
    smp_wmb,
    xchg,
)
from xensched.memory_model import MODELS, check_model_name
from xensched.spinlock import spin_lock, spin_unlock

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from xensched.memory import Cell
    from xensched.spinlock import SpinLock

__all__ = [
    "CAPABILITIES",
    "DEFAULT_MAX_EXECUTIONS",
    "SEARCHES",
    "LitmusResult",
    "expected_verdict",
    "format_outcome",
    "program",
    "run_all",
    "run_test",
]

Verdict = Literal["agrees", "stronger", "weaker"]

#: The reorderings (:data:`~xensched.litmus.syntax.CLASSES`) each model can show.
CAPABILITIES: Mapping[str, frozenset[str]] = {
    "sc": frozenset(),
    "tso": frozenset({"store-buffering"}),
    "relaxed": frozenset({"store-buffering", "store-reordering", "early-load"}),
}

#: The searches a test can run under: both exhaustive.
SEARCHES = ("dpor", "dfs")

#: Executions after which a search is given up (and no verdict claimed). The
#: catalog's largest test needs a few thousand under ``relaxed`` with DPOR.
DEFAULT_MAX_EXECUTIONS = 100_000

Outcome = tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class LitmusResult:
    """One test under one model."""

    test: str
    model: str
    #: Outcome (``0:r0=1; x=1;``) -> executions that ended with it, sorted.
    outcomes: dict[str, int]
    #: The outcomes that satisfy the condition's proposition.
    matching: frozenset[str]
    observed: bool
    expected: str | None
    verdict: Verdict | None
    #: Why the verdict is ``stronger``, or why there is none; else empty.
    reason: str
    exhaustive: bool
    executions: int
    seconds: float
    #: Failed executions (deadlock, crash), one line each: no verdict then.
    errors: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "test": self.test,
            "model": self.model,
            "outcomes": dict(self.outcomes),
            "observed": self.observed,
            "expected": self.expected,
            "verdict": self.verdict,
            "reason": self.reason,
            "exhaustive": self.exhaustive,
            "executions": self.executions,
        }


def format_outcome(outcome: Outcome) -> str:
    """``0:r0=1; 1:r0=0; x=1;`` (herd7's form)."""
    return " ".join(f"{k}={v};" for k, v in outcome)


def _order(key: str) -> tuple[int, str]:
    # Registers by thread, then memory: herd7's order.
    t, sep, name = key.partition(":")
    return (int(t), name) if sep else (1 << 30, key)


def _eval(e: Expr, regs: dict[str, int]) -> int:
    if isinstance(e, Const):
        return e.value
    if isinstance(e, Reg):
        return regs[e.name]
    if isinstance(e, Unary):
        v = _eval(e.operand, regs)
        return int(not v) if e.op == "!" else -v
    op = e.op
    a = _eval(e.left, regs)
    if op == "&&":
        return int(bool(a) and bool(_eval(e.right, regs)))
    if op == "||":
        return int(bool(a) or bool(_eval(e.right, regs)))
    return _BINARY[op](a, _eval(e.right, regs))


_BINARY: dict[str, Callable[[int, int], int]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "==": lambda a, b: int(a == b),
    "!=": lambda a, b: int(a != b),
    "<": lambda a, b: int(a < b),
    "<=": lambda a, b: int(a <= b),
    ">": lambda a, b: int(a > b),
    ">=": lambda a, b: int(a >= b),
}


def _exec(
    body: Sequence[Stmt],
    regs: dict[str, int],
    cells: Mapping[str, Cell[int]],
    locks: Mapping[str, SpinLock],
) -> None:
    for s in body:
        if isinstance(s, Load):
            c = cells[s.var]
            regs[s.reg] = smp_load_acquire(c) if s.acquire else c.load()
        elif isinstance(s, Store):
            v = _eval(s.value, regs)
            if s.release:
                smp_store_release(cells[s.var], v)
            else:
                cells[s.var].store(v)
        elif isinstance(s, Fence):
            _FENCE[s.kind]()
        elif isinstance(s, Decl):
            regs[s.reg] = 0 if s.init is None else _eval(s.init, regs)
        elif isinstance(s, Assign):
            regs[s.reg] = _eval(s.value, regs)
        elif isinstance(s, If):
            branch = s.then if _eval(s.cond, regs) else s.orelse
            _exec(branch, regs, cells, locks)
        elif isinstance(s, Lock):
            spin_lock(locks[s.lock])
        elif isinstance(s, Unlock):
            spin_unlock(locks[s.lock])
        elif isinstance(s, Xchg):
            old = xchg(cells[s.var], _eval(s.value, regs))
            if s.reg is not None:
                regs[s.reg] = old
        else:
            assert isinstance(s, Cmpxchg)
            found = cmpxchg(cells[s.var], _eval(s.old, regs), _eval(s.new, regs))
            if s.reg is not None:
                regs[s.reg] = found


_FENCE: dict[str, Callable[[], None]] = {"mb": smp_mb, "wmb": smp_wmb, "rmb": smp_rmb}


def program(test: LitmusTest, model: str) -> Callable[[World], None]:
    """``test`` under ``model`` as a program for :class:`ThreadsTarget`: its final
    state is the outcome (for searches other than :func:`run_test`'s)."""
    keys = sorted({a.key for a in atoms(test.condition.prop)}, key=_order)

    def setup(w: World) -> None:
        w.memory_model(model)
        cells = {v: w.cell(v, init) for v, init in test.variables}
        locks = {name: w.lock(name) for name in test.locks}
        regs = [dict(p.registers) for p in test.processes]
        for p in test.processes:
            r = regs[p.index]

            def body(p_body: tuple[Stmt, ...] = p.body, r: dict[str, int] = r) -> None:
                _exec(p_body, r, cells, locks)

            w.thread(f"P{p.index}", body)

        def final() -> Outcome:
            out: list[tuple[str, int]] = []
            for k in keys:
                t, sep, name = k.partition(":")
                out.append((k, regs[int(t)][name] if sep else cells[k].peek()))
            return tuple(out)

        w.final_state(final)

    return setup


def _classify(test: LitmusTest, matching: int, total: int) -> str:
    if matching == 0:
        return "Never"
    return "Always" if matching == total else "Sometimes"


def _missing(test: LitmusTest, model: str) -> str:
    """Why ``model`` cannot show the test's weak outcome (from its ``Needs:`` note)."""
    if not test.needs:
        return f"{model} forbids an outcome the kernel model allows (no Needs: note)"
    alts = " or ".join(" + ".join(sorted(a)) for a in test.needs)
    lacking = sorted({c for a in test.needs for c in a - CAPABILITIES[model]})
    what = "; ".join(f"{c}: {CLASSES[c]}" for c in lacking)
    return f"the weak outcome needs {alts}, which {model} does not do ({what})"


def expected_verdict(test: LitmusTest, model: str) -> Verdict | None:
    """The verdict the test's notes predict for ``model``: ``agrees`` unless the
    kernel model allows a weak outcome (``Sometimes``) that needs reorderings the
    model does not do, then ``stronger``. ``None`` without a ``Result:`` line."""
    if test.result is None:
        return None
    if test.result != "Sometimes" or not test.needs:
        return "agrees"
    caps = CAPABILITIES[model]
    return "agrees" if any(a <= caps for a in test.needs) else "stronger"


def run_test(
    test: LitmusTest,
    model: str,
    *,
    search: str = "dpor",
    max_executions: int = DEFAULT_MAX_EXECUTIONS,
) -> LitmusResult:
    """Run ``test`` under ``model`` exhaustively; see the module docstring."""
    check_model_name(model)
    if search not in SEARCHES:
        raise ValueError(
            f"unknown search {search!r}: expected one of {', '.join(SEARCHES)}"
        )
    strategy = DPOR() if search == "dpor" else BoundedDFS(None)
    explorer = Explorer(
        ThreadsTarget(program(test, model)),
        strategy,
        runs=None,
        keep_going=True,
        collect_states=True,
    )
    counts: Counter[Outcome] = Counter()
    errors: list[str] = []
    t0 = time.perf_counter()
    i = 0
    capped = False
    while strategy.begin(i):
        if i >= max_executions:
            capped = True
            break
        ex = explorer.execute(i)
        i += 1
        for v in ex.violations:
            line = f"{v.kind.value}: {v.message}"
            if line not in errors:
                errors.append(line)
        if ex.abandoned or ex.violations:
            continue  # cut short by DPOR's sleep sets (or failed: in errors)
        state = ex.final_state
        assert isinstance(state, tuple)
        counts[state] += 1
    seconds = time.perf_counter() - t0
    exhaustive = not capped and strategy.exhaustive
    prop = test.condition.prop
    ordered = sorted(counts.items(), key=lambda kv: kv[0])
    outcomes = {format_outcome(o): n for o, n in ordered}
    matching = frozenset(format_outcome(o) for o in counts if holds(prop, dict(o)))
    observed = bool(matching)
    verdict: Verdict | None = None
    reason = ""
    if not exhaustive:
        reason = f"not exhaustive: stopped after {i} executions"
    elif errors:
        reason = f"an execution failed: {errors[0].splitlines()[0]}"
    elif test.result is not None:
        found = _classify(test, len(matching), len(counts))
        if found == test.result:
            verdict = "agrees"
        elif test.result == "Sometimes":
            verdict = "stronger"
            reason = _missing(test, model)
        else:
            verdict = "weaker"
            reason = (
                f"{model} shows an outcome the kernel model forbids "
                f"(expected {test.result}, found {found})"
            )
    return LitmusResult(
        test=test.name,
        model=model,
        outcomes=outcomes,
        matching=matching,
        observed=observed,
        expected=test.result,
        verdict=verdict,
        reason=reason,
        exhaustive=exhaustive,
        executions=i,
        seconds=seconds,
        errors=tuple(errors),
    )


def run_all(
    tests: Sequence[LitmusTest],
    models: Sequence[str] = MODELS,
    *,
    search: str = "dpor",
    max_executions: int = DEFAULT_MAX_EXECUTIONS,
) -> list[LitmusResult]:
    """Every test under every model, test by test."""
    return [
        run_test(t, m, search=search, max_executions=max_executions)
        for t in tests
        for m in models
    ]
