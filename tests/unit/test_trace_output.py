"""``xensched reproduce -v`` tells waiting from holding: a lock attempt, its
acquisition, a trylock's result and a release are separate lines of a trace."""

from __future__ import annotations

import re

import pytest

from xensched.cli import main
from xensched.report import render_violation

from ._traces import HELD_AND_WAITED, held_and_waited

# render_violation's event line: "    CONTEXT: EVENT    LOCK  in FUNCTION()"
EVENT = re.compile(r"^ +(\S+): (\S+) +(.+?)(?:  in \S+\(\))?$")


def events_of(block: str) -> list[tuple[str, str, str]]:
    """(context, event, object) of each event line of a rendered violation."""
    matches = (EVENT.match(line) for line in block.splitlines())
    return [(m[1], m[2], m[3]) for m in matches if m]


def test_render_violation_keeps_each_lock_event_apart() -> None:
    text = render_violation(held_and_waited())
    assert events_of(text) == HELD_AND_WAITED


def test_reproduce_verbose_shows_attempt_then_acquired(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["reproduce", "--pause", "mover", "--boot", "rtds", "--pool", "credit2"]
    argv += ["--direction", "add"]
    assert main([*argv, "--protocol", "legacy", "-v", "--no-progress"]) == 0
    out = capsys.readouterr().out
    # One block per violation: "[move]", then "KIND on cpuN in ...", then events.
    parts = out.split("\n[rtds -> credit2 (add, legacy)]\n")[1:]
    blocks = {b.split(" ", 1)[0]: b for b in parts}
    assert set(blocks) == {
        "lock-mismatch",
        "assert",
        "lock-clobbered",
        "mutual-exclusion",
    }
    # Problem 2: the mover released the runqueue lock, then took RTDS's private
    # lock (attempt, acquired) in free_pdata, whose ASSERT then fires (observers'
    # events may come in between: every thread is paused at every point).
    steps = [
        e for e in events_of(blocks["assert"]) if e[1] != "load" and e[0] == "xl-mover"
    ]
    assert steps[-3:] == [
        ("xl-mover", "unlock", "credit2@p.rqd[0].lock"),
        ("xl-mover", "lock", "rtds@Pool-0.prv->lock"),
        ("xl-mover", "acquired", "rtds@Pool-0.prv->lock"),
    ]
    # Problem 1: a pCPU attempted a lock of cpu3, then held it (the one the check
    # then finds is not the lock cpu3's scheduler uses).
    mismatch = events_of(blocks["lock-mismatch"])
    attempts = [e for e in mismatch if e[1] == "lock" and e[0].startswith("pcpu")]
    assert attempts
    who, _, lock = attempts[-1]
    assert (who, "acquired", lock) in mismatch[mismatch.index(attempts[-1]) + 1 :]
