"""The stress report, as text and as JSON, tells waiting from holding: a lock
attempt, its acquisition, a trylock's result and a release are separate events."""

from __future__ import annotations

import re

from tests.unit._traces import HELD_AND_WAITED, held_and_waited
from xensched.scenario import patch_move
from xensched_stress import StressConfig, StressReport, run_stress
from xensched_stress.report import StopReason

# format_events' line: "   -12.3us  CONTEXT  EVENT   LOCK  [FUNCTION]"
EVENT = re.compile(r"^ +[+-]\d+\.\dus  (\S+) +(\S+) +(.+?)(?:  \[\S+\])?$")
FREE_PDATA_LOCK = [
    ("xl-mover", "unlock", "credit2@p.rqd[0].lock"),
    ("xl-mover", "lock", "rtds@Pool-0.prv->lock"),
    ("xl-mover", "acquired", "rtds@Pool-0.prv->lock"),
]


def text_events(text: str, kind: str) -> list[tuple[str, str, str]]:
    """(context, event, object) of the events listed under the first ``kind``
    violation of a rendered report."""
    lines = text.splitlines()
    start = lines.index(
        "    events that led to it (oldest first):", _header(lines, kind)
    )
    out = []
    for line in lines[start + 1 :]:
        m = EVENT.match(line)
        if m is None:
            break
        out.append((m[1], m[2], m[3]))
    return out


def _header(lines: list[str], kind: str) -> int:
    return next(i for i, line in enumerate(lines) if line.startswith(f"  {kind} x"))


def json_events(report: StressReport, n: int) -> list[tuple[str, str, str]]:
    data = report.to_json()
    violations = data["violations"]
    assert isinstance(violations, list)
    return [(e["context"], e["point"], e["what"]) for e in violations[n]["events"]]


def _report(cfg: StressConfig) -> StressReport:
    return StressReport(
        seed=cfg.seed,
        config=cfg,
        violations=(held_and_waited(),),
        deadlock=None,
        interrupted=False,
        stop_reason=StopReason.VIOLATION,
        elapsed=1.0,
        schedule_counts=(0, 0),
        lock_stats=(),
        switches=0,
        domain_moves=0,
    )


def test_report_text_and_json_keep_each_lock_event_apart() -> None:
    """pcpu0 holds test.a, pcpu1 waits on it: the report shows an ``acquired``
    after pcpu0's attempt and none after pcpu1's."""
    r = _report(StressConfig(seed=1))
    assert text_events(r.render(), "deadlock") == HELD_AND_WAITED
    assert json_events(r, 0) == HELD_AND_WAITED


def test_a_stress_run_reports_the_attempt_and_the_acquisition() -> None:
    """Problem 2 on a real run: the mover releases the runqueue lock, then takes
    RTDS's private lock in free_pdata (an attempt, then acquired), and the ASSERT
    there fires while it holds it. The mover runs alone, so that no other thread's
    events push its own out of the report's window."""
    sc = patch_move("rtds", "credit2", "add", "legacy")
    sc = sc.replace(threads=tuple(t for t in sc.threads if t.name == "xl-mover"))
    r = run_stress(StressConfig(scenario=sc, duration=5.0, seed=1))
    assert r.violations[0].where == "rt_free_pdata"
    assert json_events(r, 0)[-3:] == FREE_PDATA_LOCK
    assert text_events(r.render(), "assert")[-3:] == FREE_PDATA_LOCK
