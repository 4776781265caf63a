"""A bounded wait of the model that runs out reports the whole picture.

Each path plants a deadlock of two threads: the spin of ``_spin_lock``, a free-running
``Bus.wait_until`` (with and without the delay injector), the retry loop of the lock
macros (``sched_lock``) and of ``vcpu_migrate()``. The ``DeadlockError`` must keep the
one line it always had first, then name both locks' owners (and the waiter), then
carry both threads' stacks, with the planted functions in them. The violation
recorded stays that one line.

Each planted function catches its own ``DeadlockError`` and then waits at a barrier
before it lets its lock go: whichever thread gives up first, the other one is still
inside its planted function when the report is taken.
"""

from __future__ import annotations

import itertools
import pickle
import threading
from collections.abc import Callable

import pytest

from tests.unit._threads import WAIT, Threads
from xensched import DeadlockError, Host, SpinLock, sched_if as si, schedule
from xensched.checks import ViolationKind
from xensched.diagnostics import deadlock_report, dump_locks
from xensched.drivers.free import DelayInjector
from xensched.interaction import Access, Instrument, PointKind
from xensched.memory import Cell
from xensched.smp import ExecContext, bind
from xensched.spinlock import spin_lock, spin_unlock

TIMEOUT = 0.3


def _host() -> Host:
    return Host(2, sched="credit", dom0_vcpus=0, lock_timeout=TIMEOUT)


def _assert_full_report(
    err: BaseException | None,
    first: str,
    owners: dict[str, str],
    functions: tuple[str, ...],
) -> str:
    """``err`` is a dumped ``DeadlockError`` whose first line is ``first``, whose lock
    table names each lock's owner, and whose stacks show both threads and the
    planted ``functions``."""
    assert isinstance(err, DeadlockError), err
    text = str(err)
    assert text.splitlines()[0] == first
    assert "\nlocks held:\n" in text, text
    for lock, owner in owners.items():
        assert f"\n  {lock} held by {owner} (" in text, text
    assert "--- thread test-pcpu0 ---" in text
    assert "--- thread test-pcpu1 ---" in text
    for fn in functions:
        assert f", in {fn}\n" in text, fn
    assert err.dumped
    return text


def _deadlock_messages(host: Host) -> set[str]:
    return {v.message for v in host.violations if v.kind is ViolationKind.DEADLOCK}


def test_a_spin_that_runs_out_reports_every_stack_and_owner() -> None:
    host = _host()
    a, b = SpinLock(host.bus, "test.A"), SpinLock(host.bus, "test.B")
    both_hold = threading.Barrier(2, timeout=WAIT)
    both_gave_up = threading.Barrier(2, timeout=WAIT)
    errors: dict[str, DeadlockError] = {}

    def take_a_then_b() -> None:
        spin_lock(a)
        both_hold.wait()
        try:
            spin_lock(b)
        except DeadlockError as e:
            errors["ab"] = e
        both_gave_up.wait()
        spin_unlock(a)

    def take_b_then_a() -> None:
        spin_lock(b)
        both_hold.wait()
        try:
            spin_lock(a)
        except DeadlockError as e:
            errors["ba"] = e
        both_gave_up.wait()
        spin_unlock(b)

    with Threads() as threads:
        threads.start(host.cpu_contexts[0], take_a_then_b)
        threads.start(host.cpu_contexts[1], take_b_then_a)
        threads.join()
    owners = {"test.A": "pcpu0", "test.B": "pcpu1"}
    planted = ("take_a_then_b", "take_b_then_a")
    ab = _assert_full_report(
        errors.get("ab"),
        "pcpu0 spun on 'test.B' for 0.3s; held by pcpu1",
        owners,
        planted,
    )
    ba = _assert_full_report(
        errors.get("ba"),
        "pcpu1 spun on 'test.A' for 0.3s; held by pcpu0",
        owners,
        planted,
    )
    # The waiters, as the model knows them: each one's last point is its spin.
    for text in (ab, ba):
        assert (
            "\n  test.A held by pcpu0 (acquired 1x, contended 0x); "
            "waited for by pcpu1\n" in text
        )
        assert (
            "\n  test.B held by pcpu1 (acquired 1x, contended 0x); "
            "waited for by pcpu0\n" in text
        )
        assert "  pcpu0: lock test.B [take_a_then_b]" in text
    # The violations keep their one line.
    assert _deadlock_messages(host) == {ab.splitlines()[0], ba.splitlines()[0]}


@pytest.mark.parametrize("injector", [False, True], ids=["no-driver", "delays"])
def test_a_wait_until_that_never_holds_reports_every_stack_and_owner(
    injector: bool,
) -> None:
    host = _host()
    if injector:  # the free-running driver: its waits are the bus's polling ones
        host.bus.driver = DelayInjector(1.0, seed=1, max_delay=1e-5)
    a, b = SpinLock(host.bus, "test.A"), SpinLock(host.bus, "test.B")
    flag = Cell(host.bus, "test.flag", False)
    both_hold = threading.Barrier(2, timeout=WAIT)
    both_gave_up = threading.Barrier(2, timeout=WAIT)
    errors: dict[str, DeadlockError] = {}

    def wait_for_the_flag_holding_a() -> None:
        spin_lock(a)
        both_hold.wait()
        try:
            host.bus.wait_until(flag.peek, "a flag nobody sets", flag)
        except DeadlockError as e:
            errors["wait"] = e
        both_gave_up.wait()
        spin_unlock(a)

    def take_b_then_a() -> None:
        spin_lock(b)
        both_hold.wait()
        try:
            spin_lock(a)
        except DeadlockError as e:
            errors["spin"] = e
        both_gave_up.wait()
        spin_unlock(b)

    with Threads() as threads:
        threads.start(host.cpu_contexts[0], wait_for_the_flag_holding_a)
        threads.start(host.cpu_contexts[1], take_b_then_a)
        threads.join()
    text = _assert_full_report(
        errors.get("wait"),
        "pcpu0 waited 0.3s for a flag nobody sets",
        {"test.A": "pcpu0", "test.B": "pcpu1"},
        ("wait_for_the_flag_holding_a", "take_b_then_a"),
    )
    assert "waited for by pcpu1" in text
    assert "  pcpu0: wait test.flag [" in text
    assert "pcpu0 waited 0.3s for a flag nobody sets" in _deadlock_messages(host)


class _MoveAtEveryLock(Instrument):
    """Remaps ``cpu``'s lock pointer at every lock attempt: the retry loops never
    settle (a livelock, planted)."""

    def __init__(self, host: Host, cpu: int) -> None:
        self._sd = host.percpu[cpu].schedule_data
        self._fresh = (SpinLock(host.bus, f"test.fresh{i}") for i in itertools.count())
        self._meta = threading.Lock()

    def on_point(self, ctx: ExecContext, access: Access) -> None:
        if access.kind is PointKind.LOCK and ctx.name == "pcpu0":
            with self._meta:
                self._sd.schedule_lock.value = next(self._fresh)  # a plain write


def _livelock_beside_a_holder(host: Host, livelock: Callable[[], object]) -> str:
    """pcpu0 takes ``test.A`` then runs ``livelock()`` (which must raise
    DeadlockError); pcpu1 holds ``test.B`` meanwhile. Returns pcpu0's report."""
    a, b = SpinLock(host.bus, "test.A"), SpinLock(host.bus, "test.B")
    both_hold = threading.Barrier(2, timeout=WAIT)
    reported = threading.Event()
    errors: dict[str, DeadlockError] = {}

    def livelock_holding_a() -> None:
        spin_lock(a)
        both_hold.wait()
        try:
            livelock()
        except DeadlockError as e:
            errors["livelock"] = e
        reported.set()
        spin_unlock(a)

    def hold_b_meanwhile() -> None:
        spin_lock(b)
        both_hold.wait()
        assert reported.wait(WAIT)
        spin_unlock(b)

    with Threads(reported) as threads:
        threads.start(host.cpu_contexts[0], livelock_holding_a)
        threads.start(host.cpu_contexts[1], hold_b_meanwhile)
        threads.join()
    err = errors.get("livelock")
    assert isinstance(err, DeadlockError), err
    return str(err)


def test_a_lock_macro_that_never_settles_reports_every_stack_and_owner(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(si, "_MAX_RETRIES", 5)
    host = _host()
    host.bus.add_instrument(_MoveAtEveryLock(host, 1))
    text = _livelock_beside_a_holder(host, lambda: si.pcpu_schedule_lock(host, 1))
    first = "pcpu0: schedule_lock retried 5 times"
    assert text.splitlines()[0] == first
    assert "\n  test.A held by pcpu0 (" in text
    assert "\n  test.B held by pcpu1 (" in text
    assert "--- thread test-pcpu0 ---" in text
    assert "--- thread test-pcpu1 ---" in text
    assert ", in livelock_holding_a\n" in text
    assert ", in hold_b_meanwhile\n" in text
    assert ", in _lock_loop\n" in text  # where pcpu0 gave up
    assert _deadlock_messages(host) == {first}


def test_vcpu_migrate_that_never_settles_reports_every_stack_and_owner(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(schedule, "_MIGRATE_RETRIES", 5)
    host = Host(2, sched="credit", dom0_vcpus=1, lock_timeout=TIMEOUT)
    [d] = host.domains.values()
    [v] = d.vcpus
    host.bus.add_instrument(_MoveAtEveryLock(host, v.processor.peek()))
    text = _livelock_beside_a_holder(host, lambda: schedule.vcpu_migrate(host, v))
    first = f"vcpu_migrate({v.name}) retried 5 times"
    assert text.splitlines()[0] == first
    assert "\n  test.A held by pcpu0 (" in text
    assert "\n  test.B held by pcpu1 (" in text
    assert ", in livelock_holding_a\n" in text
    assert ", in hold_b_meanwhile\n" in text
    assert _deadlock_messages(host) == {first}


def test_the_report_of_an_idle_host_names_no_owner() -> None:
    host = _host()
    SpinLock(host.bus, "test.A")
    text = deadlock_report(host.bus, "why")
    assert text.startswith("why\n\nlocks held:\n  none\n  (")
    assert "other locks free)" in text
    assert f"--- thread {threading.current_thread().name} ---" in text
    assert "--- thread" not in deadlock_report(host.bus, "why", stacks=False)


def test_a_free_lock_with_a_waiter_is_listed() -> None:
    # A context whose last point is a lock attempt waits for it, held or not (the
    # controlled driver parks a thread there until it is picked).
    host = _host()
    a = SpinLock(host.bus, "test.A")
    ctx = host.cpu_contexts[1]
    ctx.events.append((0, a._rec, "somewhere"))
    assert "\n  test.A free; waited for by pcpu1\n" in dump_locks(host.bus)


def test_the_error_keeps_its_report_across_processes() -> None:
    err = DeadlockError("first line\n\nthe rest", dumped=True)
    back = pickle.loads(pickle.dumps(err))
    assert str(back) == str(err)
    assert back.dumped
    assert not DeadlockError("plain").dumped


def test_a_spin_on_a_lock_held_by_the_same_cpu_names_it_as_both() -> None:
    # The simplest deadlock, one thread: the report is still the full one.
    host = _host()
    a = SpinLock(host.bus, "test.A")
    with bind(host.cpu_contexts[0]):
        spin_lock(a)
        with pytest.raises(DeadlockError) as info:
            spin_lock(a)
        spin_unlock(a)
    text = str(info.value)
    assert text.splitlines()[0] == "pcpu0 spun on 'test.A' for 0.3s; held by pcpu0"
    assert (
        "\n  test.A held by pcpu0 (acquired 1x, contended 0x); waited for by pcpu0\n"
        in text
    )
    assert ", in test_a_spin_on_a_lock_held_by_the_same_cpu_names_it_as_both\n" in text
