"""The four schedulers: what do_schedule picks, their lock schemes, their BUG_ONs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.unit._threads import Threads
from xensched import SCHEDULERS, Host, Topology
from xensched.checks import ViolationKind
from xensched.interaction import Instrument
from xensched.schedule import _alloc_and_init, domain_pause, domain_unpause
from xensched.schedulers import Arinc653, Credit, Credit2, Rtds

if TYPE_CHECKING:
    from collections.abc import Callable

    from xensched.cpupool import Cpupool
    from xensched.domain import Vcpu
    from xensched.interaction import Access
    from xensched.smp import ExecContext

ALL = ["credit", "credit2", "rtds", "arinc653"]
ROUNDS = 12


def _host_with_pool(sched: str) -> Host:
    """Pool-0 = cpus 0-1 (Domain-0, 2 vCPUs); pool ``p`` = cpus 2-3 (d1, 2 vCPUs)."""
    h = Host(4, sched=sched, dom0_vcpus=2)
    h.cpupool_cpu_remove("Pool-0", 2)
    h.cpupool_cpu_remove("Pool-0", 3)
    h.cpupool_create("p", sched=sched)
    h.cpupool_cpu_add("p", 2)
    h.cpupool_cpu_add("p", 3)
    h.create_domain("d1", "p", vcpus=2)
    assert h.violations == []
    return h


def _picks(h: Host, cpus: list[int], rounds: int = ROUNDS) -> dict[int, list[str]]:
    picks: dict[int, list[str]] = {c: [] for c in cpus}
    for _ in range(rounds):
        for c in cpus:
            picks[c].append(h.schedule(c).name)
    return picks


def test_registry_names_the_four_schedulers() -> None:
    assert {
        "credit": Credit,
        "credit2": Credit2,
        "rtds": Rtds,
        "arinc653": Arinc653,
    } == SCHEDULERS
    assert {cls.opt_name for cls in SCHEDULERS.values()} == set(ALL)
    assert len({cls.sched_id for cls in SCHEDULERS.values()}) == 4


@pytest.mark.parametrize("sched", ALL)
def test_do_schedule_runs_guests_of_the_pcpu_pool_only(sched: str) -> None:
    h = _host_with_pool(sched)
    picks = _picks(h, [0, 1, 2, 3])
    dom0 = {"Domain-0v0", "Domain-0v1"}
    d1 = {"d1v0", "d1v1"}
    for cpu in range(4):
        guests = {p for p in picks[cpu] if not p.startswith("idle")}
        assert guests, f"cpu{cpu} only ran idle: {picks[cpu]}"
        assert guests <= (dom0 if cpu < 2 else d1), f"cpu{cpu} ran {guests}"
        assert {p for p in picks[cpu] if p.startswith("idle")} <= {f"idle{cpu}"}
    # Every guest vCPU got to run somewhere in its pool.
    assert {p for c in (0, 1) for p in picks[c]} >= dom0
    assert {p for c in (2, 3) for p in picks[c]} >= d1
    for cpu in range(4):
        curr = h.percpu[cpu].schedule_data.curr.peek()
        assert curr.name == picks[cpu][-1]
        if not curr.is_idle:
            assert curr.is_running.peek()
            assert curr.processor.peek() == cpu
    assert h.violations == []


@pytest.mark.parametrize("sched", ALL)
def test_sleep_and_wake_change_what_runs(sched: str) -> None:
    h = _host_with_pool(sched)
    d1 = h.domain("d1")
    _picks(h, [2, 3], rounds=4)
    for v in d1.vcpus:
        h.sleep(v)
    after_sleep = _picks(h, [2, 3], rounds=4)
    assert after_sleep == {2: ["idle2"] * 4, 3: ["idle3"] * 4}
    assert not any(v.is_running.peek() for v in d1.vcpus)

    v0 = d1.vcpus[0]
    h.wake(v0)
    after_wake = _picks(h, [2, 3], rounds=ROUNDS)
    ran = {p for c in (2, 3) for p in after_wake[c]}
    assert "d1v0" in ran
    assert "d1v1" not in ran  # still asleep
    # Pool-0 was never affected.
    assert not any(p.startswith("d1") for p in _picks(h, [0, 1], rounds=2)[0])
    assert h.violations == []


@pytest.mark.parametrize("sched", ALL)
def test_paused_domain_does_not_run(sched: str) -> None:
    h = _host_with_pool(sched)
    d1 = h.domain("d1")
    with h.on_cpu(0):
        domain_pause(h, d1)  # nothing of d1 runs yet: no wait
    picks = _picks(h, [2, 3], rounds=6)
    assert all(p.startswith("idle") for c in (2, 3) for p in picks[c])
    with h.on_cpu(0):
        domain_unpause(h, d1)
    picks = _picks(h, [2, 3], rounds=6)
    assert {p for c in (2, 3) for p in picks[c]} >= {"d1v0", "d1v1"}
    assert h.violations == []


# -- lock schemes ----------------------------------------------------------------------


def test_credit2_runqueue_per_socket() -> None:
    h = Host(sched="credit2", topology=Topology(2, 2), dom0_vcpus=0)
    ops = h.ops
    assert isinstance(ops, Credit2)
    assert len(ops.rqd) == 2
    assert h.lock_of(0) is ops.rqd[0].lock
    assert h.lock_of(1) is ops.rqd[0].lock
    assert h.lock_of(2) is ops.rqd[1].lock
    assert h.lock_of(3) is ops.rqd[1].lock
    assert ops.rqd[0].active.peek() == {0, 1}
    assert ops.rqd[1].active.peek() == {2, 3}
    assert [ops.runq_map[c].peek() for c in range(4)] == [0, 0, 1, 1]
    for cpu in range(4):
        assert h.lock_of(cpu) is not h.percpu[cpu].schedule_data._lock
        assert ops.lock_for(cpu) is h.lock_of(cpu)


def test_credit2_topology_string_and_cpu0_on_runqueue_0() -> None:
    h = Host(sched="credit2", topology="3x1", dom0_vcpus=0)
    ops = h.ops
    assert isinstance(ops, Credit2)
    # One pCPU per socket: cpu n is on socket n, and cpu 0 is always runqueue 0.
    assert [ops.runq_map[c].peek() for c in range(3)] == [0, 1, 2]
    assert len({id(h.lock_of(c)) for c in range(3)}) == 3


def test_credit2_shared_runqueue_vcpu_moves_between_its_pcpus() -> None:
    h = Host(sched="credit2", topology=Topology(2, 2), dom0_vcpus=0)
    d = h.create_domain("d1", vcpus=1)
    v = d.vcpus[0]
    assert h.schedule(v.processor.peek()) is v
    h.sleep(v)
    assert h.schedule(v.processor.peek()).is_idle
    h.wake(v)
    # Any pCPU of the vCPU's runqueue may pick it up.
    peer = v.processor.peek() ^ 1
    assert h.lock_of(peer) is h.lock_of(v.processor.peek())
    assert h.schedule(peer) is v
    assert v.processor.peek() == peer
    assert h.violations == []


def test_rtds_every_pcpu_uses_the_one_global_lock() -> None:
    h = Host(4, sched="rtds", dom0_vcpus=0)
    ops = h.ops
    assert isinstance(ops, Rtds)
    for cpu in range(4):
        assert h.lock_of(cpu) is ops.lock
        assert ops.lock_for(cpu) is ops.lock


def test_rtds_pools_have_their_own_global_lock() -> None:
    h = _host_with_pool("rtds")
    pool_sched, boot_sched = h.pool("p").sched, h.ops
    assert isinstance(pool_sched, Rtds)
    assert isinstance(boot_sched, Rtds)
    assert pool_sched.lock is not boot_sched.lock
    locks = [h.lock_of(c) for c in range(4)]
    assert locks == [boot_sched.lock] * 2 + [pool_sched.lock] * 2


@pytest.mark.parametrize("sched", ["credit", "arinc653"])
def test_default_per_pcpu_lock(sched: str) -> None:
    h = _host_with_pool(sched)
    locks = [h.lock_of(c) for c in range(4)]
    for cpu in range(4):
        assert locks[cpu] is h.percpu[cpu].schedule_data._lock
        assert h.scheduler_of(cpu).lock_for(cpu) is locks[cpu]
    assert len({id(lk) for lk in locks}) == 4


@pytest.mark.parametrize("sched", ALL)
def test_insert_vcpu_leaves_the_processor_where_the_caller_put_it(sched: str) -> None:
    """4.7's insert hooks never write ``v->processor`` (``sched_init_vcpu()`` and
    ``sched_move_domain()`` choose it, cycling through the pool's pCPUs); ARINC 653
    has no ``insert_vcpu`` at all. Here cpu0 runs a vCPU and has another queued,
    which Credit's and Credit2's ``pick_cpu`` would avoid."""
    h = Host(4, sched=sched, dom0_vcpus=0)
    busy = h.create_domain("d1", vcpus=2).vcpus
    h.migrate(busy[1], 0)
    assert [v.processor.peek() for v in busy] == [0, 0]
    for _ in range(8):
        if h.schedule(0) in busy:
            break
    d2 = h.create_domain("d2", vcpus=3)
    assert [v.processor.peek() for v in d2.vcpus] == [0, 1, 2]
    assert h.violations == []


def test_credit2_runq_map_outlives_deinit_pdata() -> None:
    """``csched2_deinit_pdata`` leaves ``prv->runq_map[cpu]`` as it was;
    ``prv->initialized`` says the pCPU is no longer this instance's."""
    h = _host_with_pool("credit2")
    h.destroy_domain("d1")
    sched = h.pool("p").sched
    assert isinstance(sched, Credit2)
    h.cpupool_cpu_remove("p", 3)
    assert sched.runq_map[3].peek() == 0
    assert 3 not in sched.initialized.peek()
    assert sched.lock_for(3) is None
    h.cpupool_cpu_add("p", 3)
    assert sched.lock_for(3) is sched.rqd[0].lock is h.lock_of(3)
    assert h.violations == []


# -- Credit1 load balancing -----------------------------------------------------------


def test_credit_load_balance_steals_from_a_peer() -> None:
    h = Host(2, sched="credit", dom0_vcpus=0)
    d = h.create_domain("d1", vcpus=2)
    v0, v1 = d.vcpus
    assert (v0.processor.peek(), v1.processor.peek()) == (0, 1)
    assert h.schedule(0) is v0
    # Queue v1 on cpu0, behind the running v0.
    h.migrate(v1, 0)
    assert v1.processor.peek() == 0
    ops = h.ops
    assert isinstance(ops, Credit)
    runq0 = ops._pcpus[0].runq
    assert [s.vcpu for s in runq0.peek()] == [v1]
    peer_lock = h.lock_of(0)
    before = peer_lock.stats().acquisitions
    # cpu1 has nothing: csched_load_balance trylocks cpu0 and steals v1.
    assert h.schedule(1) is v1
    assert v1.processor.peek() == 1
    assert v1.is_running.peek()
    assert ops._pcpus[0].runq.peek() == ()
    assert peer_lock.stats().acquisitions > before
    assert h.violations == []


def test_credit_load_balance_peeks_only_at_non_idle_peers() -> None:
    """It walks ``online & ~prv->idlers``: a peer idling at its last schedule() is not
    trylocked, even with work queued (in Xen a tickle would wake that peer)."""
    h = Host(2, sched="credit", dom0_vcpus=0)
    d = h.create_domain("d1", vcpus=2)
    v0, v1 = d.vcpus
    ops = h.ops
    assert isinstance(ops, Credit)
    assert ops.idlers.peek() == {0, 1}  # init_pdata: "start off idling"
    h.migrate(v1, 0)  # both queued on cpu0, which has not scheduled yet
    peer_lock = h.lock_of(0)
    before = peer_lock.stats().acquisitions
    assert h.schedule(1).is_idle
    assert peer_lock.stats().acquisitions == before
    assert v1.processor.peek() == 0
    assert h.schedule(0) is v0
    assert ops.idlers.peek() == {1}
    # cpu0 is busy now: cpu1 peeks at it and steals the queued v1.
    assert h.schedule(1) is v1
    assert ops.idlers.peek() == frozenset()
    assert h.violations == []


def test_credit_load_balance_skips_a_busy_peer() -> None:
    """The peer's lock is taken with trylock: a held lock means no stealing."""
    from xensched.smp import bind
    from xensched.spinlock import spin_lock_irq, spin_unlock_irq

    h = Host(2, sched="credit", dom0_vcpus=0)
    d = h.create_domain("d1", vcpus=2)
    v0, v1 = d.vcpus
    assert h.schedule(0) is v0
    h.migrate(v1, 0)
    peer_lock = h.lock_of(0)
    other = h.toolstack_context("holder")
    with bind(other):
        spin_lock_irq(peer_lock)
    try:
        assert h.schedule(1).is_idle
    finally:
        with bind(other):
            spin_unlock_irq(peer_lock)
    assert peer_lock.stats().trylock_failures >= 1
    assert v1.processor.peek() == 0
    assert h.schedule(1) is v1  # free now: stolen
    assert h.violations == []


class _MoveAtTrylock(Instrument):
    """The first time ``pcpu{observer}`` is about to read ``cpu``'s lock pointer (the
    load of ``pcpu_schedule_trylock``), ``mover`` runs on a thread of its own, bound
    to ``ctx``, and the observer goes on once it is done."""

    def __init__(
        self, observer: int, cpu: int, ctx: ExecContext, mover: Callable[[], None]
    ) -> None:
        self._observer = f"pcpu{observer}"
        self._label = f"schedule_data[{cpu}].schedule_lock"
        self._ctx = ctx
        self._mover = mover
        self.fired = False

    def on_point(self, ctx: ExecContext, access: Access) -> None:
        if self.fired or ctx.name != self._observer or access.label != self._label:
            return
        self.fired = True
        with Threads() as threads:
            threads.start(self._ctx, self._mover)
            threads.join()


def _credit_pool_with_a_busy_peer(protocol: str) -> tuple[Host, Cpupool, Vcpu]:
    """Boot Credit2, a Credit pool ``p`` = cpus 2-4: cpu3 runs one vCPU of d1 and has
    the other queued (stealable), cpus 2 and 4 idle. Returns the queued vCPU."""
    h = Host(5, sched="credit2", protocol=protocol, dom0_vcpus=1)
    for c in (2, 3, 4):
        h.cpupool_cpu_remove("Pool-0", c)
    p = h.cpupool_create("p", sched="credit")
    for c in (2, 3, 4):
        h.cpupool_cpu_add(p, c)
    d = h.create_domain("d1", p, vcpus=2)
    for v in d.vcpus:
        h.migrate(v, 3)
    running = h.schedule(3)
    [queued] = [v for v in d.vcpus if v is not running]
    assert queued.processor.peek() == 3
    assert not queued.is_running.peek()
    assert isinstance(p.sched, Credit)
    assert p.sched.idlers.peek() == {2, 4}
    assert h.violations == []
    return h, p, queued


@pytest.mark.parametrize("protocol", ["legacy", "fixed"])
def test_credit_load_balance_rechecks_the_peer_is_in_the_pool(protocol: str) -> None:
    """``csched_load_balance`` tests ``cpumask_test_cpu(peer_cpu, online)`` once the
    peer's lock is held. Here cpu3 leaves ``p`` between cpu2's walk of the busy peers
    and its trylock: the first half of a cpu-remove (out of ``cpu_valid``, free) and,
    on ``legacy``, the pre-patch ``init_pdata`` of the boot Credit2 that remaps
    cpu3's lock before the swap (window [2]). Xen steals nothing there: no vCPU taken
    from a pCPU leaving the pool, and on ``legacy`` no Credit code under Credit2's
    lock (the lock-mismatch the emulator used to report, on a path Xen cannot
    take)."""
    h, p, queued = _credit_pool_with_a_busy_peer(protocol)

    def mover() -> None:
        p.cpu_valid.clear(3)
        h.cpupool_free_cpus.set(3)
        if protocol == "legacy":
            _alloc_and_init(h, 3, h.ops)

    move = _MoveAtTrylock(2, 3, h.toolstack_context("xl"), mover)
    h.bus.add_instrument(move)
    assert h.schedule(2).is_idle
    assert move.fired
    if protocol == "legacy":
        assert h.lock_of(3) is not h.percpu[3].schedule_data._lock
    assert queued.processor.peek() == 3
    assert h.violations == []


def test_credit_load_balance_not_from_a_pcpu_leaving_its_pool() -> None:
    """A pCPU out of its pool's ``cpu_valid`` (being removed) does not balance: it
    trylocks no peer ("If this CPU is going offline, or is not (yet) part of any
    cpupool [...] we shouldn't steal work")."""
    h, p, queued = _credit_pool_with_a_busy_peer("fixed")
    with h.on_cpu(0):
        p.cpu_valid.clear(2)
    peer_lock = h.lock_of(3)
    before = peer_lock.stats().acquisitions
    assert h.schedule(2).is_idle
    assert peer_lock.stats().acquisitions == before
    assert queued.processor.peek() == 3
    with h.on_cpu(0):
        p.cpu_valid.set(2)
    assert h.schedule(2) is queued  # back in the pool: it steals
    assert h.violations == []


# -- BUG_ONs -------------------------------------------------------------------------------


def test_credit2_bug_on_uninitialized_cpu() -> None:
    h = Host(4, sched="credit2", dom0_vcpus=0)
    ops = h.ops
    assert isinstance(ops, Credit2)
    with h.on_cpu(0):
        ops.initialized.clear(1)
    assert h.schedule(1).is_idle
    # Out of prv->initialized, cpu1 is not Credit2's: its runqueue lock is not the
    # lock Credit2 designates for it either (lock_for() asks prv->initialized).
    [mismatch, v] = h.violations
    assert (mismatch.kind, mismatch.where, mismatch.cpu) == (
        ViolationKind.LOCK_MISMATCH,
        "schedule",
        1,
    )
    assert v.kind is ViolationKind.ASSERT
    assert v.where == "csched2_schedule"
    assert "prv->initialized" in v.message
    assert v.cpu == 1


def test_credit2_bug_on_inactive_cpu() -> None:
    h = Host(4, sched="credit2", dom0_vcpus=0)
    ops = h.ops
    assert isinstance(ops, Credit2)
    with h.on_cpu(0):
        ops.rqd[0].active.clear(2)
    h.schedule(2)
    [v] = h.violations
    assert v.where == "csched2_schedule"
    assert "rqd->active" in v.message


def test_credit2_healthy_schedule_has_no_bug_on() -> None:
    h = Host(4, sched="credit2", dom0_vcpus=2)
    _picks(h, [0, 1, 2, 3], rounds=4)
    assert h.violations == []


def test_credit_bug_on_missing_pcpu_data() -> None:
    h = Host(2, sched="credit", dom0_vcpus=0)
    h.percpu[1].schedule_data.sched_priv.store(None)
    assert h.schedule(1).is_idle
    [v] = h.violations
    assert v.where == "csched_schedule"


# -- the ASSERTs of f45666afdb and of the pCPU hooks ----------------------------------------


def _asserts(h: Host) -> list[tuple[str, str, int | None]]:
    return [(v.where, v.message, v.cpu) for v in h.violations]


def test_credit_free_pdata_asserts_deinit_pdata_ran() -> None:
    """RELEASE-4.7.0's ``csched_free_pdata``: ``ASSERT(!cpumask_test_cpu(cpu,
    prv->cpus))``. Without the old scheduler's ``deinit_pdata`` (the mutant
    ``no-deinit-pdata``), a move out of Credit fires it."""
    h = Host(4, sched="credit", dom0_vcpus=0, mutants=("no-deinit-pdata",))
    h.cpupool_cpu_remove("Pool-0", 3)  # Pool-0 -> free: the same &ops, no switch
    assert h.violations == []
    h.cpupool_cpu_add(h.cpupool_create("p", sched="credit2"), 3)
    assert _asserts(h) == [
        (
            "csched_free_pdata",
            "ASSERT(!cpumask_test_cpu(cpu, prv->cpus)) failed",
            3,
        )
    ]


def test_credit_deinit_pdata_asserts_init_pdata_ran() -> None:
    h = Host(2, sched="credit", dom0_vcpus=0)
    ops = h.ops
    assert isinstance(ops, Credit)
    spc = h.percpu[1].schedule_data.sched_priv.peek()
    with h.on_cpu(0):
        ops.deinit_pdata(spc, 1)
        assert h.violations == []
        ops.deinit_pdata(spc, 1)  # twice: cpu1 is no longer in prv->cpus
        ops.deinit_pdata(None, 1)
    want = "ASSERT(spc && cpumask_test_cpu(cpu, prv->cpus)) failed"
    assert _asserts(h) == [("csched_deinit_pdata", want, 1)] * 2


def test_credit_init_pdata_asserts_the_runqueue_is_uninitialised() -> None:
    """The ``init_pdata()`` helper, in both trees: ``ASSERT(spc && spc->runq.next ==
    NULL && spc->runq.prev == NULL)``: initialising a pCPU's data twice fires it."""
    for protocol in ("legacy", "fixed"):
        h = Host(2, sched="credit", protocol=protocol, dom0_vcpus=0)
        spc = h.percpu[1].schedule_data.sched_priv.peek()
        with h.on_cpu(0):
            h.ops.init_pdata(spc, 1, pre_patch=protocol == "legacy")
        want = "ASSERT(spc && spc->runq.next == NULL && spc->runq.prev == NULL) failed"
        assert _asserts(h) == [("init_pdata", want, 1)], protocol


def test_credit2_init_pdata_asserts_no_pdata() -> None:
    """RELEASE-4.7.0's ``csched2_init_pdata``: ``ASSERT(!pdata)`` (Credit2 has no
    ``alloc_pdata``); 94734ab7c3^ has no such ASSERT."""
    for protocol in ("legacy", "fixed"):
        h = Host(2, sched="credit2", protocol=protocol, dom0_vcpus=0)
        ops = h.ops
        assert isinstance(ops, Credit2)
        with h.on_cpu(0):
            ops._deinit(1, remap_back=protocol == "legacy")
            ops.init_pdata(object(), 1, pre_patch=protocol == "legacy")
        want = [("csched2_init_pdata", "ASSERT(!pdata) failed", 1)]
        assert _asserts(h) == (want if protocol == "fixed" else []), protocol


def test_credit2_migrate_bug_on_uninitialised_target() -> None:
    """``csched2_vcpu_migrate``: ``BUG_ON(!cpumask_test_cpu(new_cpu,
    &CSCHED2_PRIV(ops)->initialized))``, in both trees."""
    h = Host(4, sched="credit2", dom0_vcpus=0)
    ops = h.ops
    assert isinstance(ops, Credit2)
    v = h.create_domain("d1", vcpus=1).vcpus[0]
    with h.on_cpu(0):
        ops.initialized.clear(2)
        ops.migrate(v, 2)
    assert v.processor.peek() != 2
    assert _asserts(h) == [
        (
            "csched2_vcpu_migrate",
            "BUG_ON(!cpumask_test_cpu(new_cpu, &CSCHED2_PRIV(ops)->initialized))",
            2,
        )
    ]
