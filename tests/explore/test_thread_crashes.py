"""How an exception that ends one of a World's threads shows in an exploration."""

from __future__ import annotations

import sys

import pytest

from xensched.explore import Explorer
from xensched.explore.dpor import DPOR
from xensched.explore.threads import ThreadsTarget, World


def test_a_thread_ended_by_any_base_exception_is_a_crash() -> None:
    # pytest.fail()'s Failed, SystemExit and GeneratorExit are not Exceptions: they
    # were dropped, the checks were skipped too, and DPOR reported a clean proof.
    def setup(w: World) -> None:
        x = w.cell("x", 0)

        def fails() -> None:
            x.store(1)
            pytest.fail("from a thread")

        def exits() -> None:
            x.store(2)
            sys.exit(3)

        def closes() -> None:
            x.store(3)
            raise GeneratorExit("closed")

        w.thread("fails", fails)
        w.thread("exits", exits)
        w.thread("closes", closes)
        w.check(lambda: pytest.fail("a check never reached after a crash"))

    res = Explorer(ThreadsTarget(setup), DPOR(), runs=5).explore()
    assert res.failing is not None
    assert res.stop_reason == "violation found"
    assert sorted((v.kind.value, v.where, v.message) for v in res.violations) == [
        ("crash", "closes", "GeneratorExit: closed"),
        ("crash", "exits", "SystemExit: 3"),
        ("crash", "fails", "Failed: from a thread"),
    ]


def test_a_thread_raising_keyboard_interrupt_interrupts_the_exploration() -> None:
    # The user's Ctrl-C, whichever thread it reached: the explorer stops, as it
    # does for one in its own thread, and says so.
    def setup(w: World) -> None:
        x = w.cell("x", 0)

        def interrupted() -> None:
            x.store(1)
            raise KeyboardInterrupt

        w.thread("t0", interrupted)
        w.thread("t1", lambda: x.store(2))

    res = Explorer(ThreadsTarget(setup), DPOR(), runs=5).explore()
    assert res.interrupted
    assert res.stop_reason == "interrupted"
    assert res.violations == []


def test_a_check_ended_by_any_base_exception_is_a_crash() -> None:
    # pytest.fail() in a check escaped the explorer: no violation, no schedule.
    def setup(w: World) -> None:
        x = w.cell("x", 0)
        w.thread("t0", lambda: x.store(1))
        w.check(lambda: pytest.fail("x is wrong"))

    res = Explorer(ThreadsTarget(setup), DPOR(), runs=5).explore()
    assert res.failing is not None
    assert [(v.kind.value, v.where, v.message) for v in res.violations] == [
        ("crash", "check", "Failed: x is wrong")
    ]
