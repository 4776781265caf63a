"""The reference model of ``xensched fuzz`` against the emulated Xen, one thread.

:class:`Membership` is written from Xen's rules, not from the host's code: every
operation below runs on a real host and through the model, and both must give the
same answer (accepted, or the same errno) and the same membership afterwards. Then
the checker is fed planted bugs (an add that does nothing, a wrong errno, a pCPU left
on the wrong lock) and must fire.
"""

from __future__ import annotations

import errno

import pytest

from tests._threads import threads_left
from xensched import Host, XenError
from xensched.scenario import XlOp, apply_xl
from xensched.smp import bind
from xensched.violation import ViolationKind
from xensched_stress.fuzz import (
    FuzzConfig,
    FuzzFailure,
    Membership,
    check_schedulers,
    machine_class,
)

OPS = [
    "cpupool-create p1 credit2",
    "cpupool-create p1 rtds",  # EEXIST
    "cpupool-create Pool-0 credit",  # EEXIST
    "cpupool-destroy p9",  # ENOENT
    "cpupool-cpu-add p1 3",  # ENODEV: not free
    "cpupool-cpu-remove Pool-0 3",
    "cpupool-cpu-remove Pool-0 3",  # not in the pool: accepted, nothing to do
    "cpupool-cpu-remove Pool-0 4",  # EINVAL: no such pCPU
    "cpupool-cpu-add p9 3",  # ENOENT
    "create d1 p1 2",  # ENOENT: no pCPUs (libxl's move out of Pool-0)
    "cpupool-cpu-add p1 3",
    "create d1 p1 2",
    "create d1 Pool-0 1",  # EEXIST
    "create d2 p9 1",  # ENOENT
    "vcpu-pin d1v0 0",  # EINVAL: not in p1
    "vcpu-pin d1v0 3",
    "vcpu-pin d1v5 3",  # ENOENT
    "cpupool-destroy p1",  # EBUSY
    "cpupool-cpu-remove p1 3",  # EBUSY: last pCPU, with domains
    "cpupool-migrate Domain-0 p1",  # EPERM
    "cpupool-migrate d1 p9",  # ENOENT
    "cpupool-migrate d1 Pool-0",
    "cpupool-migrate d1 Pool-0",  # same pool: nothing to do
    "cpupool-cpu-remove p1 3",
    "cpupool-migrate d1 p1",  # ENOENT: no pCPUs
    "destroy Domain-0",  # EINVAL
    "destroy d9",  # ENOENT
    "destroy d1",
    "cpupool-destroy p1",
]


def _answer(h: Host, op: XlOp) -> int | None:
    try:
        apply_xl(h, op)
    except XenError as e:
        return e.errno
    return None


def test_the_model_answers_as_xen_does() -> None:
    h = Host(4, sched="credit", dom0_vcpus=1)
    m = Membership.of(h)
    refused = set()
    with bind(h.toolstack_context("xl")):
        for text in OPS:
            op = XlOp.parse(text)
            want = m.predict(op)
            got = _answer(h, op)
            assert got == want, (text, got, want)
            if got is None:
                m.apply(op)
            else:
                refused.add(got)
            assert Membership.observe(h) == m.state(), text
            assert check_schedulers(h) == [], text
    # Every errno the rules give was seen at least once.
    assert refused == {
        errno.EEXIST,
        errno.ENOENT,
        errno.EBUSY,
        errno.EINVAL,
        errno.ENODEV,
        errno.EPERM,
    }


def test_the_model_follows_a_removal_left_moving() -> None:
    """A removal refused with EAGAIN (a vCPU still on the pCPU) leaves the pCPU free
    and moving in Xen 4.7.0; the model, told so, answers as Xen does after it:
    EADDRNOTAVAIL for other removals and for an add elsewhere, and the retried
    removal lands."""
    h = Host(4, sched="credit", dom0_vcpus=0)
    m = Membership.of(h)
    with bind(h.toolstack_context("xl")):
        for text in ("cpupool-create p1 credit2", "create d1 Pool-0 1"):
            op = XlOp.parse(text)
            assert _answer(h, op) is None
            m.apply(op)
        v = h.domain("d1").vcpus[0]
        h.migrate(v, 3)
        assert h.schedule(3) is v
        remove = XlOp.parse("cpupool-cpu-remove Pool-0 3")
        assert m.predict(remove) is None
        assert _answer(h, remove) == errno.EAGAIN
        m.removal_refused(remove)
        assert Membership.observe(h) == m.state()
        assert m.state()[-1] == (3, "Pool-0")  # the moving pCPU and its pool
        assert check_schedulers(h) == []
        for text, want in (
            ("cpupool-cpu-remove Pool-0 2", errno.EADDRNOTAVAIL),
            ("cpupool-cpu-add p1 3", errno.EADDRNOTAVAIL),
            ("cpupool-cpu-add p1 2", errno.ENODEV),
        ):
            op = XlOp.parse(text)
            assert (m.predict(op), _answer(h, op)) == (want, want), text
            assert Membership.observe(h) == m.state(), text
        assert h.schedule(3).is_idle  # v leaves; the retry lands
        assert (m.predict(remove), _answer(h, remove)) == (None, None)
        m.apply(remove)
        assert Membership.observe(h) == m.state()
        assert m.state()[-1] is None
        assert check_schedulers(h) == []
    assert h.violations == []


def _run(cfg: FuzzConfig, ops: list[str]) -> list[ViolationKind]:
    machine = machine_class(cfg)()
    try:
        for text in ops:
            machine._run(XlOp.parse(text))
    except FuzzFailure as e:
        machine._failed = True
        return [v.kind for v in e.violations]
    finally:
        machine.teardown()
    return []


MOVE = [
    "cpupool-create p1 credit2",
    "cpupool-cpu-remove Pool-0 3",
    "cpupool-cpu-add p1 3",
]


def test_a_clean_move_passes() -> None:
    assert _run(FuzzConfig(seed=1), MOVE) == []


def test_planted_add_that_does_nothing_is_a_membership_violation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Host, "cpupool_cpu_add", lambda self, pool, cpu: None)
    assert ViolationKind.MEMBERSHIP in _run(FuzzConfig(seed=1), MOVE)


def test_planted_wrong_errno_is_an_xl_result_violation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def destroy(self: Host, pool: object) -> None:
        raise XenError(errno.EINVAL, "planted")

    monkeypatch.setattr(Host, "cpupool_destroy", destroy)
    kinds = _run(FuzzConfig(seed=1), ["cpupool-create p1 credit", "cpupool-destroy p1"])
    assert kinds == [ViolationKind.XL_RESULT]


def test_planted_refusal_that_changes_the_host_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = Host.cpupool_create

    def create(self: Host, name: str, sched: str | None = None) -> object:
        real(self, name + "x", sched)  # a pool appears...
        raise XenError(errno.EEXIST, "planted")  # ...though Xen said no

    monkeypatch.setattr(Host, "cpupool_create", create)
    kinds = _run(FuzzConfig(seed=1), ["cpupool-create p1 credit"])
    assert ViolationKind.XL_RESULT in kinds


def test_planted_wrong_lock_is_seen_by_the_scheduler_check() -> None:
    h = Host(4, sched="credit", dom0_vcpus=1)
    with bind(h.toolstack_context("xl")):
        h.cpupool_create("p1", "credit2")
        h.cpupool_cpu_remove("Pool-0", 3)
        h.cpupool_cpu_add("p1", 3)
    sd = h.percpu[3].schedule_data
    sd.schedule_lock.store(sd._lock)  # the clobber of problem 2, planted
    [line] = check_schedulers(h)
    assert "cpu3" in line
    assert "_lock" in line


def test_a_mutant_is_found_and_the_threads_end() -> None:
    import threading

    before = set(threading.enumerate())
    kinds = _run(
        FuzzConfig(seed=1, edits=("no-deinit-pdata",)),
        [*MOVE, "cpupool-cpu-remove p1 3", "cpupool-cpu-add p1 3"],
    )
    assert ViolationKind.ASSERT in kinds
    left = threads_left(before)
    assert not left, [t.name for t in left]
