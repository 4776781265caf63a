"""The race detector on small programs of known answer, explored exhaustively.

Each program runs under DPOR to exhaustion with a fresh detector per execution; the
answer is whether any execution reports a ``data-race`` (a race in one interleaving
is a race of the program: happens-before does not depend on the timing).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from xensched.explore.dpor import DPOR
from xensched.explore.engine import Explorer
from xensched.explore.threads import ThreadsTarget, World
from xensched.interaction import Access, PointKind
from xensched.memory import (
    smp_load_acquire,
    smp_mb,
    smp_rmb,
    smp_store_release,
    smp_wmb,
    xchg,
)
from xensched.race_detector import RaceDetector
from xensched.smp import ExecContext
from xensched.spinlock import spin_lock, spin_unlock

Setup = Callable[[World], None]
READ_ONCE = "a flag read with READ_ONCE on purpose"


def races(setup: Setup, model: str = "sc") -> set[str]:
    """The fields reported as racing in any execution."""
    found: set[str] = set()

    def with_detector(w: World) -> None:
        w.memory_model(model)
        det = RaceDetector()
        w.bus.add_instrument(det)
        setup(w)

        def note() -> None:
            found.update(field for field, _, _ in det.races)

        w.check(note)

    res = Explorer(
        ThreadsTarget(with_detector), DPOR(), runs=None, keep_going=True
    ).explore()
    assert res.exhaustive
    assert res.kinds <= {"data-race"}
    return found


def two_writes(locked: bool) -> Setup:
    def setup(w: World) -> None:
        x = w.cell("x", 0)
        lk = w.lock("l")

        def body() -> None:
            if locked:
                spin_lock(lk)
            x.store(x.load() + 1)
            if locked:
                spin_unlock(lk)

        w.thread("t0", body)
        w.thread("t1", body)

    return setup


def mp(kind: str) -> Setup:
    """Message passing: data then flag; the reader checks the flag, then data."""

    def setup(w: World) -> None:
        data = w.cell("data", 0)
        # The flag is READ_ONCE/WRITE_ONCE (declared) unless release/acquire.
        flag = w.cell("flag", 0, racy=None if kind == "release-acquire" else READ_ONCE)

        def writer() -> None:
            data.store(1)
            if kind == "release-acquire":
                smp_store_release(flag, 1)
            else:
                if kind == "fences":
                    smp_wmb()
                flag.store(1)

        def reader() -> None:
            seen = smp_load_acquire(flag) if kind == "release-acquire" else flag.load()
            if kind == "fences":
                smp_rmb()
            if seen:
                data.load()

        w.thread("w", writer)
        w.thread("r", reader)

    return setup


def chain() -> Setup:
    """A value handed from t0 to t1 to t2 through one lock, in that order by flags
    read under the lock: every access ordered, no race."""

    def setup(w: World) -> None:
        lk = w.lock("l")
        v = w.cell("v", 0)
        turn = w.cell("turn", 0)

        def step(me: int) -> Callable[[], None]:
            def body() -> None:
                spin_lock(lk)
                if turn.load() == me:
                    v.store(v.load() + 1)
                    turn.store(me + 1)
                spin_unlock(lk)

            return body

        for i in range(3):
            w.thread(f"t{i}", step(i))

    return setup


def xchg_flag(ordered: bool) -> Setup:
    """A flag set with xchg (fully ordered) after the data; the reader xchg's it back."""

    def setup(w: World) -> None:
        data = w.cell("data", 0)
        flag = w.cell("flag", 0)

        def writer() -> None:
            data.store(1)
            if ordered:
                xchg(flag, 1)
            else:
                flag.store(1)

        def reader() -> None:
            if xchg(flag, 0):
                data.load()

        w.thread("w", writer)
        w.thread("r", reader)

    return setup


@pytest.mark.parametrize("model", ["sc", "tso", "relaxed"])
def test_two_unlocked_writes_race_and_locked_ones_do_not(model: str) -> None:
    assert races(two_writes(False), model) == {"x"}
    assert races(two_writes(True), model) == set()


@pytest.mark.parametrize("model", ["sc", "tso", "relaxed"])
def test_message_passing_races_unless_ordered(model: str) -> None:
    assert races(mp("plain"), model) == {"data"}
    assert races(mp("fences"), model) == set()
    assert races(mp("release-acquire"), model) == set()


def test_a_lock_handed_through_three_threads_orders_everything() -> None:
    assert races(chain()) == set()


def test_a_fully_ordered_exchange_synchronises_and_a_plain_store_races() -> None:
    assert races(xchg_flag(True)) == set()
    assert races(xchg_flag(False)) == {"data", "flag"}


def test_a_declared_field_still_reports_two_racing_writes() -> None:
    def setup(w: World) -> None:
        x = w.cell("x", 0, racy=READ_ONCE)
        w.thread("t0", lambda: x.store(1))
        w.thread("t1", lambda: x.store(2))
        w.thread("t2", lambda: x.load())

    assert races(setup) == {"x"}


def test_a_report_names_both_accesses_their_functions_and_locks() -> None:
    reports: list[str] = []

    def setup(w: World) -> None:
        det = RaceDetector()
        w.bus.add_instrument(det)
        x = w.cell("x", 0)
        lk = w.lock("l")

        def locked_writer() -> None:
            spin_lock(lk)
            x.store(1)
            spin_unlock(lk)

        def bare_reader() -> None:
            x.load()

        w.thread("t0", locked_writer)
        w.thread("t1", bare_reader)
        w.check(
            lambda: reports.extend(
                f"{a.describe()} | {b.describe()}" for _, a, b in det.races
            )
        )

    Explorer(ThreadsTarget(setup), DPOR(), runs=None, keep_going=True).explore()
    assert "write by t0 in locked_writer() holding l" in "\n".join(reports)
    assert "read by t1 in bare_reader() holding no lock" in "\n".join(reports)


def test_a_full_barrier_pair_orders_like_wmb_rmb() -> None:
    def setup(w: World) -> None:
        data = w.cell("data", 0)
        flag = w.cell("flag", 0, racy=READ_ONCE)

        def writer() -> None:
            data.store(1)
            smp_mb()
            flag.store(1)

        def reader() -> None:
            if flag.load():
                smp_mb()
                data.load()

        w.thread("w", writer)
        w.thread("r", reader)

    assert races(setup) == set()


class _ForgetsReleases(RaceDetector):
    """A planted defect: lock releases publish nothing."""

    def on_point(self, ctx: ExecContext, access: Access) -> None:
        if access[0] is not PointKind.UNLOCK:
            super().on_point(ctx, access)


def test_a_detector_that_forgets_lock_releases_reports_a_false_race() -> None:
    found: set[str] = set()

    def setup(w: World) -> None:
        det = _ForgetsReleases()
        w.bus.add_instrument(det)
        two_writes(True)(w)
        w.check(lambda: found.update(f for f, _, _ in det.races))

    Explorer(ThreadsTarget(setup), DPOR(), runs=None, keep_going=True).explore()
    assert found == {"x"}


def race_pairs(store: str) -> set[tuple[str, str]]:
    """An acquire load of ``x`` on one thread, a store of it (``store``: plain,
    release or xchg) on another, unordered: the (first, second) accesses of every
    report, over both orders."""
    pairs: set[tuple[str, str]] = set()

    def setup(w: World) -> None:
        det = RaceDetector()
        w.bus.add_instrument(det)
        x = w.cell("x", 0)

        def writer() -> None:
            if store == "plain":
                x.store(1)
            elif store == "release":
                smp_store_release(x, 1)
            else:
                xchg(x, 1)

        w.thread("r", lambda: smp_load_acquire(x))
        w.thread("w", writer)
        w.check(lambda: pairs.update((a.kind, b.kind) for _, a, b in det.races))

    res = Explorer(ThreadsTarget(setup), DPOR(), runs=None, keep_going=True).explore()
    assert res.exhaustive
    return pairs


def test_an_acquire_load_races_with_a_plain_store_in_either_order() -> None:
    # Marked accesses race only with plain ones: a marked one vs a plain one is a
    # race whichever comes first. Before, only plain reads were recorded, so an
    # acquire load followed by an unordered plain store went unreported.
    assert race_pairs("plain") == {("write", "acquire load"), ("acquire load", "write")}
    assert race_pairs("release") == set()
    assert race_pairs("xchg") == set()
