"""Rendering of results as text and JSON; the library returns data, this formats it.

Nothing here prints: the CLI and the pytest plugin decide where text goes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

# Lives with the output-path checks now; still importable from here.
from xensched.outputs import write_json_atomic as write_json_atomic
from xensched.scenario import PcpuLoop, PcpuOps
from xensched.violation import ViolationKind

if TYPE_CHECKING:
    from collections.abc import Sequence

    from xensched.reproduce import Result
    from xensched.scenario import Program, Scenario
    from xensched.violation import Violation

# How each violation kind maps to the problems named in the patch's commit message.
PATCH_PROBLEMS = {
    ViolationKind.LOCK_MISMATCH.value: "problem 1: lock already new, scheduler still "
    "old (or the reverse)",
    ViolationKind.ASSERT.value: "problem 2: an ASSERT fires (e.g. rt_free_pdata's)",
    ViolationKind.LOCK_CLOBBERED.value: "problem 3: free_pdata clobbers the new lock "
    "mapping",
    ViolationKind.MUTUAL_EXCLUSION.value: "consequence of 3: two pCPUs in one runqueue "
    "at once",
}


def _protocols(results: Sequence[Result]) -> list[str]:
    """The protocols' specs in the order they were asked for (legacy, fixed)."""
    return list(dict.fromkeys(str(r.transition.protocol) for r in results))


def _column(proto: str, mutant: str | None) -> str:
    """A protocol's column (and summary line): with ``mutant``, named after it."""
    return proto if mutant is None else f"mutant {mutant} ({proto})"


def render_reproduce_table(results: Sequence[Result], mutant: str | None = None) -> str:
    """A table: one row per move, one column per protocol spec, the problems found;
    ``mutant`` (``--mutant NAME``) names the columns, each that mutant's run."""
    rows: dict[tuple[str, str, str], dict[str, str]] = {}
    for r in results:
        t = r.transition
        cell = ", ".join(r.problems) if r.problems else "-"
        rows.setdefault((t.boot, t.pool, t.direction), {})[str(t.protocol)] = cell
    protocols = _protocols(results)
    head = ["boot", "pool", "move", *(_column(p, mutant) for p in protocols)]
    body = []
    for (boot, pool, direction), cells in rows.items():
        move = (
            f"cpu-{direction} ({boot}->{pool})"
            if direction == "add"
            else (f"cpu-{direction} ({pool}->{boot})")
        )
        body.append([boot, pool, move, *(cells.get(p, "") for p in protocols)])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=True)]
    line = "  ".join("-" * w for w in widths)
    out = [
        "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)),
        line,
    ]
    out += [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in body
    ]
    return "\n".join(out)


def render_summary(results: Sequence[Result], mutant: str | None = None) -> str:
    """Counts per protocol (``mutant``: named after it) and what each kind means."""
    lines = []
    for proto in _protocols(results):
        rs = [r for r in results if str(r.transition.protocol) == proto]
        bad = [r for r in rs if r.problems]
        kinds = sorted({k for r in bad for k in r.problems})
        lines.append(
            f"{_column(proto, mutant)}: problems in {len(bad)} of {len(rs)} moves"
            + (f" ({', '.join(kinds)})" if kinds else "")
        )
    seen = sorted({k for r in results for k in r.problems})
    if seen:
        lines.append("")
        lines.extend(f"  {k}: {PATCH_PROBLEMS.get(k, k)}" for k in seen)
    return "\n".join(lines)


def render_violation(v: Violation, events: int = 12) -> str:
    """One violation with the events that led to it, oldest first."""
    lines = [f"{v.describe()}  [seen by {v.context}]"]
    for _, ctx, kind, label, fn in v.events[-events:]:
        where = f"  in {fn}()" if fn else ""
        lines.append(f"    {ctx:>7}: {kind:<8} {label}{where}")
    return "\n".join(lines)


def render_scenario(sc: Scenario) -> str:
    """A scenario for people: its host, setup and programs, one line each."""
    pools = ", ".join(
        f"{p.name}={p.sched}[{','.join(map(str, p.cpus))}]" for p in sc.pools
    )
    lines = [
        f"{sc.name}: {sc.description}",
        f"  host: {sc.cpus} pCPUs"
        + (f" ({sc.topology})" if sc.topology else "")
        + f", boot {sc.boot}, protocol {sc.protocol}, Domain-0 with "
        f"{sc.dom0_vcpus} vCPU(s)",
        f"  pools: {pools or '-'}"
        + (f"; free pCPUs: {','.join(map(str, sc.free_cpus))}" if sc.free_cpus else ""),
        "  domains: "
        + (
            ", ".join(
                f"{d.name} ({d.vcpus} vCPUs, {d.pool or 'round-robin'})"
                for d in sc.domains
            )
            or "-"
        ),
    ]
    if sc.setup:
        lines.append("  setup: " + "; ".join(str(op) for op in sc.setup))
    lines.append("  threads:")
    for t in sc.threads:
        lines.append(f"    {t.name}: {_describe_program(t)}")
    return "\n".join(lines)


def _describe_program(t: Program) -> str:
    if isinstance(t, PcpuLoop):
        n = "until stopped" if t.schedules is None else f"{t.schedules} times"
        return f"schedule() {n}, vCPU traffic P={t.traffic:g}"
    if isinstance(t, PcpuOps):
        return "; ".join(str(op) for op in t.ops) or "nothing"
    if t.ops is not None:
        return "; ".join(str(op) for op in t.ops) or "nothing"
    n = "until stopped" if t.moves is None else f"{t.moves}"
    return (
        f"random moves ({n}), domain moves P={t.domain_moves:g}, every {t.interval:g}s"
    )
