"""cpupools with xl's semantics: refusals carry Xen's errno and change nothing."""

from __future__ import annotations

import errno
from collections.abc import Callable

import pytest

from xensched import ConfigError, Cpupool, Host, PoolInfo, Topology, Vcpu, XenError
from xensched.checks import ViolationKind
from xensched.schedulers import Credit, Credit2


@pytest.fixture
def host() -> Host:
    """Pool-0 = cpus 0-2 (Domain-0), ``p1`` (credit2) = cpu 3 (d1), ``empty`` (rtds)
    without pCPUs, and no free pCPUs."""
    h = Host(4, sched="credit", dom0_vcpus=1)
    h.cpupool_cpu_remove("Pool-0", 3)
    h.cpupool_create("p1", sched="credit2")
    h.cpupool_cpu_add("p1", 3)
    h.create_domain("d1", "p1", vcpus=2)
    h.cpupool_create("empty", sched="rtds")
    assert h.violations == []
    return h


def _snapshot(h: Host) -> tuple[list[PoolInfo], frozenset[int], list[object]]:
    return (
        h.list_cpupools(),
        h.cpupool_free_cpus.peek(),
        [(h.scheduler_of(c), h.lock_of(c)) for c in range(h.nr_cpus)],
    )


REFUSALS: dict[str, tuple[Callable[[Host], object], int]] = {
    "create-duplicate-name": (lambda h: h.cpupool_create("p1"), errno.EEXIST),
    "create-duplicate-pool-0": (lambda h: h.cpupool_create("Pool-0"), errno.EEXIST),
    "create-unknown-scheduler": (
        lambda h: h.cpupool_create("p2", sched="bvt"),
        errno.EINVAL,
    ),
    "destroy-with-cpus-and-domains": (lambda h: h.cpupool_destroy("p1"), errno.EBUSY),
    "destroy-pool-0": (lambda h: h.cpupool_destroy("Pool-0"), errno.EBUSY),
    "destroy-unknown": (lambda h: h.cpupool_destroy("nope"), errno.ENOENT),
    "cpu-add-not-free": (lambda h: h.cpupool_cpu_add("empty", 0), errno.ENODEV),
    "cpu-add-own-cpu": (lambda h: h.cpupool_cpu_add("p1", 3), errno.ENODEV),
    "cpu-add-unknown-pool": (lambda h: h.cpupool_cpu_add("nope", 0), errno.ENOENT),
    "cpu-add-out-of-range": (lambda h: h.cpupool_cpu_add("empty", 4), errno.EINVAL),
    "cpu-add-negative": (lambda h: h.cpupool_cpu_add("empty", -1), errno.EINVAL),
    "cpu-remove-unknown-pool": (
        lambda h: h.cpupool_cpu_remove("nope", 0),
        errno.ENOENT,
    ),
    "cpu-remove-out-of-range": (
        lambda h: h.cpupool_cpu_remove("Pool-0", 99),
        errno.EINVAL,
    ),
    "cpu-remove-last-with-domain": (
        lambda h: h.cpupool_cpu_remove("p1", 3),
        errno.EBUSY,
    ),
    "migrate-to-pool-without-cpus": (
        lambda h: h.cpupool_migrate("d1", "empty"),
        errno.ENOENT,
    ),
    "migrate-domain-0": (lambda h: h.cpupool_migrate("Domain-0", "p1"), errno.EPERM),
    "migrate-unknown-domain": (lambda h: h.cpupool_migrate("d9", "p1"), errno.ENOENT),
    "migrate-unknown-pool": (lambda h: h.cpupool_migrate("d1", "nope"), errno.ENOENT),
    "create-domain-in-pool-without-cpus": (
        lambda h: h.create_domain("d2", "empty"),
        errno.ENOENT,
    ),
    "create-domain-duplicate": (lambda h: h.create_domain("d1", "p1"), errno.EEXIST),
    "create-domain-no-vcpus": (lambda h: h.create_domain("d2", vcpus=0), errno.EINVAL),
    "destroy-domain-0": (lambda h: h.destroy_domain("Domain-0"), errno.EINVAL),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusal_has_xen_errno_and_leaves_host_unchanged(host: Host, case: str) -> None:
    op, want = REFUSALS[case]
    before = _snapshot(host)
    domains = dict(host.domains)
    with pytest.raises(XenError) as info:
        op(host)
    assert info.value.errno == want, str(info.value)
    assert info.value.errname == errno.errorcode[want]
    assert str(info.value).startswith(errno.errorcode[want] + ": ")
    assert _snapshot(host) == before
    assert host.domains == domains
    assert host.cpupool_moving_cpu.peek() == -1
    assert host.violations == []


@pytest.mark.parametrize(("pool", "cpu"), [("p1", 0), ("empty", 0), ("Pool-0", 3)])
def test_removing_a_cpu_not_in_the_pool_succeeds_and_does_nothing(
    host: Host, pool: str, cpu: int
) -> None:
    """RELEASE-4.7.0's ``cpupool_unassign_cpu``: ``ret = 0`` for a pCPU not in the
    pool (and not the one being moved)."""
    before = _snapshot(host)
    host.cpupool_cpu_remove(pool, cpu)
    assert _snapshot(host) == before
    assert host.cpupool_moving_cpu.peek() == -1
    assert host.violations == []


def test_destroy_refused_for_pool_with_domains_only_by_its_domains() -> None:
    h = Host(4, sched="credit", dom0_vcpus=1)
    h.cpupool_cpu_remove("Pool-0", 3)
    h.cpupool_create("p1")
    h.cpupool_cpu_add("p1", 3)
    h.create_domain("d1", "p1")
    with pytest.raises(XenError, match="domain") as info:
        h.cpupool_destroy("p1")
    assert info.value.errno == errno.EBUSY


def test_destroy_refused_for_pool_with_cpus_only() -> None:
    h = Host(4, sched="credit", dom0_vcpus=1)
    h.cpupool_cpu_remove("Pool-0", 3)
    h.cpupool_create("p1")
    h.cpupool_cpu_add("p1", 3)
    with pytest.raises(XenError, match=r"pCPUs \[3\]") as info:
        h.cpupool_destroy("p1")
    assert info.value.errno == errno.EBUSY


def test_cpu_goes_pool_free_pool(host: Host) -> None:
    pool0 = host.pool("Pool-0")
    p1 = host.pool("p1")
    assert host.percpu[2].cpupool.peek() is pool0

    host.cpupool_cpu_remove("Pool-0", 2)
    assert host.cpupool_free_cpus.peek() == {2}
    assert host.percpu[2].cpupool.peek() is None
    # A free pCPU runs the boot scheduler &ops (Pool-0's instance).
    assert host.scheduler_of(2) is host.ops
    assert host.lock_of(2) is host.percpu[2].schedule_data._lock
    assert 2 not in pool0.cpu_valid.peek()

    host.cpupool_cpu_add("p1", 2)
    assert host.cpupool_free_cpus.peek() == frozenset()
    assert host.percpu[2].cpupool.peek() is p1
    assert p1.cpu_valid.peek() == {2, 3}
    sched = p1.sched
    assert isinstance(sched, Credit2)
    assert host.scheduler_of(2) is sched
    assert host.lock_of(2) is sched.rqd[0].lock
    assert host.lock_of(2) is host.lock_of(3)
    assert [pi.cpus for pi in host.list_cpupools()] == [(0, 1), (2, 3), ()]

    host.cpupool_cpu_remove("p1", 2)
    host.cpupool_cpu_add("Pool-0", 2)
    assert host.scheduler_of(2) is host.ops
    assert host.lock_of(2) is host.percpu[2].schedule_data._lock
    assert host.audit() == []
    assert host.violations == []


def test_list_cpupools(host: Host) -> None:
    assert host.list_cpupools() == [
        PoolInfo("Pool-0", 0, "credit", (0, 1, 2), ("Domain-0",)),
        PoolInfo("p1", 1, "credit2", (3,), ("d1",)),
        PoolInfo("empty", 2, "rtds", (), ()),
    ]


def test_create_defaults_to_boot_scheduler_and_destroy(host: Host) -> None:
    c = host.cpupool_create("p2")
    assert isinstance(c, Cpupool)
    assert isinstance(c.sched, Credit)
    assert c.sched is not host.ops  # its own instance
    assert c.cpupool_id == 3
    host.cpupool_destroy(c)
    host.cpupool_destroy("empty")
    assert [pi.name for pi in host.list_cpupools()] == ["Pool-0", "p1"]
    with pytest.raises(XenError) as info:
        host.pool("empty")
    assert info.value.errno == errno.ENOENT


def test_migrate_domain_then_its_vcpus_run_on_the_new_pool(host: Host) -> None:
    host.cpupool_cpu_remove("Pool-0", 2)
    host.cpupool_cpu_add("empty", 2)
    d1 = host.domain("d1")
    host.cpupool_migrate(d1, "empty")
    empty = host.pool("empty")
    assert d1.cpupool.peek() is empty
    assert [d.name for d in empty.domains.peek()] == ["d1"]
    assert host.pool("p1").domains.peek() == ()
    assert all(v.processor.peek() == 2 for v in d1.vcpus)
    assert not d1.paused.peek()
    ran = {host.schedule(2).name for _ in range(8)}
    assert ran >= {"d1v0", "d1v1"}
    assert not any(host.schedule(3).name.startswith("d1") for _ in range(4))
    # Now p1 has no domain: its last pCPU may go.
    host.cpupool_cpu_remove("p1", 3)
    assert host.cpupool_free_cpus.peek() == {3}
    assert host.violations == []


def test_migrate_to_own_pool_is_a_no_op(host: Host) -> None:
    before = _snapshot(host)
    host.cpupool_migrate("d1", "p1")
    assert _snapshot(host) == before


def test_cpu_remove_moves_vcpus_off_the_pcpu() -> None:
    h = Host(4, sched="credit", dom0_vcpus=0)
    d = h.create_domain("d1", vcpus=4)
    assert sorted(v.processor.peek() for v in d.vcpus) == [0, 1, 2, 3]
    h.cpupool_cpu_remove("Pool-0", 3)
    assert all(v.processor.peek() in {0, 1, 2} for v in d.vcpus)
    picks = {h.schedule(c).name for _ in range(6) for c in range(3)}
    assert picks >= {v.name for v in d.vcpus}
    assert h.violations == []


def _stranded_cpu3() -> tuple[Host, Vcpu]:
    """A removal of cpu3 from Pool-0 refused with EAGAIN: v still runs there."""
    h = Host(4, sched="credit", dom0_vcpus=0)
    v = h.create_domain("d1", vcpus=1).vcpus[0]
    h.migrate(v, 3)
    assert h.schedule(3) is v
    with pytest.raises(XenError) as info:
        h.cpupool_cpu_remove("Pool-0", 3)
    assert info.value.errno == errno.EAGAIN
    return h, v


def test_cpu_remove_while_a_vcpu_runs_there_is_eagain_and_leaves_it_moving() -> None:
    """As RELEASE-4.7.0's ``cpupool_unassign_cpu_helper``: on EAGAIN the pCPU stays
    free and moving, out of the pool's ``cpu_valid``, still on the pool's scheduler;
    a retry of the removal (libxc's) completes it."""
    h, v = _stranded_cpu3()
    pool0 = h.pool("Pool-0")
    assert pool0.cpu_valid.peek() == {0, 1, 2}
    assert h.cpupool_free_cpus.peek() == {3}
    assert h.cpupool_moving_cpu.peek() == 3
    assert h.cpupool_cpu_moving.peek() is pool0
    assert h.percpu[3].cpupool.peek() is pool0
    assert h.scheduler_of(3) is h.ops
    # cpu3 deschedules it (the migration completes in context_saved); xl retries.
    assert h.schedule(3).is_idle
    assert not v.is_running.peek()
    h.cpupool_cpu_remove("Pool-0", 3)
    assert h.cpupool_free_cpus.peek() == {3}
    assert h.cpupool_moving_cpu.peek() == -1
    assert h.cpupool_cpu_moving.peek() is None
    assert h.percpu[3].cpupool.peek() is None
    assert v.processor.peek() in {0, 1, 2}
    assert h.schedule(v.processor.peek()) is v
    assert h.violations == []


def test_a_moving_cpu_blocks_other_moves_with_eaddrnotavail() -> None:
    """``cpupool_unassign_cpu``: another pCPU moving -> EADDRNOTAVAIL;
    ``cpupool_assign_cpu_locked``: the moving pCPU into another pool ->
    EADDRNOTAVAIL. Both change nothing."""
    h, _ = _stranded_cpu3()
    p1 = h.cpupool_create("p1", sched="credit2")
    before = _snapshot(h)
    ops: list[Callable[[], None]] = [
        lambda: h.cpupool_cpu_remove("Pool-0", 2),
        lambda: h.cpupool_cpu_add(p1, 3),
    ]
    for op in ops:
        with pytest.raises(XenError) as info:
            op()
        assert info.value.errno == errno.EADDRNOTAVAIL, str(info.value)
        assert _snapshot(h) == before
    assert h.cpupool_moving_cpu.peek() == 3
    assert h.violations == []


def test_a_moving_cpu_removed_through_another_pool_is_freed() -> None:
    """4.7.0 lets a removal of the moving pCPU through from any pool: it empties the
    pool the pCPU is still in (``per_cpu(cpupool)``) and frees it."""
    h, v = _stranded_cpu3()
    p1 = h.cpupool_create("p1", sched="credit2")
    assert h.schedule(3).is_idle
    h.cpupool_cpu_remove(p1, 3)
    assert h.cpupool_moving_cpu.peek() == -1
    assert h.percpu[3].cpupool.peek() is None
    assert v.processor.peek() in {0, 1, 2}
    h.cpupool_cpu_add(p1, 3)
    assert h.scheduler_of(3) is p1.sched
    assert h.violations == []


def test_re_adding_a_moving_cpu_to_its_pool_trips_schedule_cpu_switch_assert() -> None:
    """The repair 4.7.0's helper suggests ("adding the cpu to the cpupool again")
    reaches ``schedule_cpu_switch()`` with ``per_cpu(cpupool, cpu)`` still that pool:
    ``ASSERT(c != old_pool ...)`` fires (a crash in a debug build); a release build
    goes on and the pCPU is back, which the emulator shows too."""
    h, _ = _stranded_cpu3()
    pool0 = h.pool("Pool-0")
    h.cpupool_cpu_add(pool0, 3)
    [bad] = h.violations
    assert (bad.kind, bad.where, bad.cpu) == (
        ViolationKind.ASSERT,
        "schedule_cpu_switch",
        3,
    )
    assert "c != old_pool" in bad.message
    assert pool0.cpu_valid.peek() == {0, 1, 2, 3}
    assert h.cpupool_free_cpus.peek() == frozenset()
    assert h.cpupool_moving_cpu.peek() == -1


def test_destroy_domain(host: Host) -> None:
    host.destroy_domain("d1")
    assert "d1" not in host.domains
    assert host.pool("p1").domains.peek() == ()
    assert all(host.schedule(3).is_idle for _ in range(3))
    with pytest.raises(XenError) as info:
        host.domain("d1")
    assert info.value.errno == errno.ENOENT
    host.cpupool_cpu_remove("p1", 3)
    host.cpupool_destroy("p1")
    assert host.violations == []


# -- host configuration --------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cpus": 0},
        {"cpus": 257},
        {"cpus": 4, "sched": "bvt"},
        {"cpus": 4, "protocol": "newer"},
        {"cpus": 4, "dom0_vcpus": -1},
        {"cpus": 3, "topology": "2x2"},
        {"topology": "2x"},
        {"topology": "two"},
    ],
)
def test_bad_host_config_is_a_config_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        Host(**kwargs)  # type: ignore[arg-type]


def test_topology() -> None:
    assert Topology.parse("2X4") == Topology(2, 4)
    assert Topology(2, 4).nr_cpus == 8
    assert [Topology(2, 4).cpu_to_socket(c) for c in (0, 3, 4, 7)] == [0, 0, 1, 1]
    with pytest.raises(ConfigError):
        Topology(0, 4)
    h = Host(topology="2x3")
    assert h.nr_cpus == 6


def test_pool_0_owns_all_cpus_at_boot() -> None:
    h = Host(4, sched="rtds", dom0_vcpus=2)
    assert h.list_cpupools() == [
        PoolInfo("Pool-0", 0, "rtds", (0, 1, 2, 3), ("Domain-0",))
    ]
    assert h.cpupool_free_cpus.peek() == frozenset()
    assert all(h.scheduler_of(c) is h.ops for c in range(4))
    assert h.audit() == []
