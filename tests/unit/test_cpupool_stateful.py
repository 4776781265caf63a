"""Random sequences of xl operations keep the host consistent (Hypothesis stateful).

Hypothesis generates sequences of ``cpupool-create/destroy/cpu-add/cpu-remove/
migrate``, ``create``/``destroy`` and ``schedule()`` calls against a small host running
the fixed protocol, valid ones (``cpu_move``) and refused ones alike, and shrinks a
failing sequence to a minimal one. After every step:

- each pCPU is in exactly one pool or free, and its per-CPU ``cpupool`` says which;
- each pCPU runs its pool's scheduler instance (the boot one when free);
- its ``schedule_lock`` is what that scheduler designates (``host.audit()``);
- every domain's vCPUs sit on pCPUs of the domain's pool;
- a refused operation (``XenError``) changed nothing (one refused with EAGAIN is
  retried, as libxc does, once every pCPU rescheduled);
- no check fired.

The same machine on the legacy protocol must fail: that is how we know it looks.

Derandomized with a bounded number of examples, so CI is deterministic.
"""

from __future__ import annotations

import errno

import hypothesis.strategies as st
import pytest
from hypothesis import Phase, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from xensched import SCHEDULERS, Host, XenError

NR_CPUS = 4
POOL_NAMES = ("p1", "p2")
DOMAIN_NAMES = ("d1", "d2")
XEN_ERRNOS = {
    errno.EEXIST,
    errno.EBUSY,
    errno.ENOENT,
    errno.EINVAL,
    errno.ENODEV,
    errno.EADDRNOTAVAIL,
    errno.EPERM,
}
#: Tries of an operation refused with EAGAIN, each after every pCPU rescheduled.
EAGAIN_TRIES = 10


class XlSession(RuleBasedStateMachine):
    protocol = "fixed"

    def __init__(self) -> None:
        super().__init__()
        self.host = Host(NR_CPUS, sched="credit2", protocol=self.protocol, dom0_vcpus=1)

    def _snapshot(self) -> object:
        h = self.host
        return (
            h.list_cpupools(),
            h.cpupool_free_cpus.peek(),
            [(h.scheduler_of(c), h.lock_of(c)) for c in range(NR_CPUS)],
            sorted(h.domains),
        )

    def _xl(self, op: str, *args: object) -> None:
        before = self._snapshot()
        refused: int | None = None
        # EAGAIN: a vCPU still runs on the pCPU being removed, which Xen 4.7.0 leaves
        # free and moving. libxc retries it (do_sysctl_save()); here every pCPU
        # reschedules first, as their own SCHEDULE_SOFTIRQ would have them do.
        for _ in range(EAGAIN_TRIES):
            try:
                getattr(self.host, op)(*args)
                return
            except XenError as e:
                refused = e.errno
            if refused != errno.EAGAIN:
                break
            for c in range(NR_CPUS):
                self.host.schedule(c)
        assert refused in XEN_ERRNOS, f"{op}{args}: unexpected errno {refused}"
        assert self._snapshot() == before, f"{op}{args} refused but changed"

    @rule(name=st.sampled_from(POOL_NAMES), sched=st.sampled_from(list(SCHEDULERS)))
    def create_pool(self, name: str, sched: str) -> None:
        self._xl("cpupool_create", name, sched)

    @rule(name=st.sampled_from(POOL_NAMES))
    def destroy_pool(self, name: str) -> None:
        self._xl("cpupool_destroy", name)

    @rule(pool=st.sampled_from(("Pool-0", *POOL_NAMES)), cpu=st.integers(0, NR_CPUS))
    def cpu_add(self, pool: str, cpu: int) -> None:
        self._xl("cpupool_cpu_add", pool, cpu)

    @rule(pool=st.sampled_from(("Pool-0", *POOL_NAMES)), cpu=st.integers(0, NR_CPUS))
    def cpu_remove(self, pool: str, cpu: int) -> None:
        self._xl("cpupool_cpu_remove", pool, cpu)

    @rule(data=st.data())
    def cpu_move(self, data: st.DataObject) -> None:
        """The xl flow: cpu-remove a pCPU from its pool, cpu-add it to another."""
        h = self.host
        owned = sorted((p.name, c) for p in h.cpupool_list for c in p.cpu_valid.peek())
        if owned:
            src, cpu = data.draw(st.sampled_from(owned), label="from")
            self._xl("cpupool_cpu_remove", src, cpu)
        free = sorted(h.cpupool_free_cpus.peek())
        if free:
            cpu = data.draw(st.sampled_from(free), label="cpu")
            dst = data.draw(st.sampled_from([p.name for p in h.cpupool_list]))
            self._xl("cpupool_cpu_add", dst, cpu)

    @rule(
        name=st.sampled_from(DOMAIN_NAMES),
        pool=st.sampled_from(("Pool-0", *POOL_NAMES)),
        vcpus=st.integers(1, 3),
    )
    def create_domain(self, name: str, pool: str, vcpus: int) -> None:
        self._xl("create_domain", name, pool, vcpus)

    @rule(name=st.sampled_from(DOMAIN_NAMES))
    def destroy_domain(self, name: str) -> None:
        self._xl("destroy_domain", name)

    @rule(name=st.sampled_from(DOMAIN_NAMES), pool=st.sampled_from(POOL_NAMES))
    def migrate_domain(self, name: str, pool: str) -> None:
        self._xl("cpupool_migrate", name, pool)

    @rule(cpu=st.integers(0, NR_CPUS - 1), times=st.integers(1, 3))
    def schedule_and_idle(self, cpu: int, times: int) -> None:
        # Run schedule() on one pCPU, then put every vCPU to sleep and reschedule
        # everywhere, so that no vCPU is left running on a pCPU no thread schedules
        # (a later pause would wait for it: see vcpu_sleep_sync()).
        h = self.host
        for _ in range(times):
            h.schedule(cpu)
        for v in list(h.iter_vcpus()):
            h.sleep(v)
        for c in range(NR_CPUS):
            h.schedule(c)
        for v in list(h.iter_vcpus()):
            h.wake(v)

    @invariant()
    def pcpus_partitioned(self) -> None:
        h = self.host
        owners: dict[int, str] = {}
        for pool in h.cpupool_list:
            for cpu in pool.cpu_valid.peek():
                assert cpu not in owners, f"cpu{cpu} in {owners[cpu]} and {pool.name}"
                owners[cpu] = pool.name
        for cpu in range(NR_CPUS):
            free = cpu in h.cpupool_free_cpus.peek()
            assert free != (cpu in owners), f"cpu{cpu}: free={free}, pools={owners}"
            mine = h.percpu[cpu].cpupool.peek()
            assert (mine.name if mine is not None else None) == owners.get(cpu)
            expected = mine.sched if mine is not None else h.ops
            assert h.scheduler_of(cpu) is expected

    @invariant()
    def vcpus_on_their_pool(self) -> None:
        for d in self.host.domains.values():
            pool = d.cpupool.peek()
            assert pool is not None
            for v in d.vcpus:
                assert v.processor.peek() in pool.cpu_valid.peek(), (v, pool)

    @invariant()
    def no_violation(self) -> None:
        h = self.host
        assert h.audit() == []
        assert h.violations == [], [v.describe() for v in h.violations]


SETTINGS = settings(
    max_examples=40,
    stateful_step_count=25,
    derandomize=True,
    deadline=None,
    database=None,
)
TestXlSession = XlSession.TestCase
TestXlSession.settings = SETTINGS


class LegacyXlSession(XlSession):
    protocol = "legacy"


def test_the_machine_finds_the_legacy_protocol_broken() -> None:
    """A check that cannot fire proves nothing: on legacy it must fire."""
    with pytest.raises(AssertionError, match=r"lock-clobbered|assert|lock-mismatch"):
        run_state_machine_as_test(
            LegacyXlSession,
            # That it fires is the point: shrinking the failure would only cost time.
            settings=settings(
                SETTINGS,
                print_blob=False,
                phases=(Phase.explicit, Phase.reuse, Phase.generate),
            ),
        )
