"""Atomic bit operations of a cpumask commute, for DPOR (``Op.bit``).

``cpumask_set_cpu()`` and ``cpumask_clear_cpu()`` of different pCPUs on one mask
(Credit's ``prv->idlers``, a pool's ``cpu_valid``) leave the same mask in either
order and return nothing, so they are independent; a set and a clear of one bit are
not, nor is any bit operation with a load of the mask. The soundness programs
``bit_operations`` and ``bit_pulse`` hold DPOR to unreduced DFS; here, the relation
itself, what it saves on a Xen scenario, and a planted defect (every bit operation
taken as commuting) that loses an outcome.
"""

from __future__ import annotations

import pytest

from tests.explore.test_soundness import explore, set_against_clear, unreduced
from xensched.explore import DPOR, ScenarioTarget, base, dpor
from xensched.explore.base import Op, bit_of, independent
from xensched.explore.threads import ThreadsTarget
from xensched.interaction import Access, Bus, PointKind
from xensched.memory import BitOp, CpuMask
from xensched.scenario import switch_race


def bit(cpu: int, *, set_it: bool) -> Op:
    return Op("rmw", 5, "prv->idlers", 0, cpu + 1 if set_it else -(cpu + 1))


def test_bit_operations_commute_unless_one_clears_what_the_other_sets() -> None:
    assert independent(bit(1, set_it=True), bit(2, set_it=False))
    assert independent(bit(1, set_it=True), bit(1, set_it=True))
    assert independent(bit(1, set_it=False), bit(1, set_it=False))
    assert not independent(bit(1, set_it=True), bit(1, set_it=False))
    # Not with a load of the mask, nor with any other write of it.
    assert not independent(bit(1, set_it=True), Op("load", 5, "prv->idlers"))
    assert not independent(bit(1, set_it=True), Op("rmw", 5, "prv->idlers"))
    assert not independent(bit(1, set_it=True), Op("store", 5, "prv->idlers"))
    # A wake whose condition read the mask depends on each of them.
    assert not independent(bit(1, set_it=True), Op("wake", 5, "prv->idlers"))


def test_a_mask_names_its_bit_operations_in_the_access_record() -> None:
    bus = Bus()
    mask = CpuMask(bus, "m")
    seen: list[Access] = []

    def record(access: Access, depth: int = 2) -> None:
        seen.append(access)

    bus._point = record  # type: ignore[method-assign]
    mask.set(3)
    mask.clear(2)
    assert [a.value for a in seen] == [BitOp(3, True), BitOp(2, False)]
    assert [bit_of(a) for a in seen] == [4, -3]
    assert str(seen[0].value) == "set bit 3"
    # Only a read-modify-write's value is a bit operation.
    assert bit_of(Access(PointKind.STORE, mask, BitOp(3, True))) == 0


@pytest.mark.slow
def test_commuting_bits_save_executions_of_a_xen_scenario() -> None:
    # Credit's prv->idlers and the pools' cpu_valid take bit operations from
    # several pCPUs. With them ordered like any writes, DPOR proved this move in
    # 1,411 executions (bench figure 6 at f6feaaa); the answer stays the same.
    res = explore(ScenarioTarget(switch_race("credit", "credit", "add")), DPOR())
    assert res.exhaustive
    assert not res.kinds
    assert res.runs < 1411


def test_commuting_bits_are_a_reduction() -> None:
    # Three bit operations of one mask: only the set and the clear of bit 0 are
    # ordered, so DPOR runs both orders of those two. Taken as writes like any
    # other, the three would have been 3! = 6 traces; unreduced DFS runs every
    # interleaving of the threads' two steps each (start, then the operation).
    target = ThreadsTarget(set_against_clear)
    assert explore(target, DPOR()).runs == 2
    assert unreduced(target).runs == 90


def test_a_dpor_taking_every_bit_operation_as_commuting_loses_an_outcome(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    target = ThreadsTarget(set_against_clear)
    assert unreduced(target).final_states == {(), (0,)}
    monkeypatch.setattr(dpor, "bits_commute", lambda a, b: True)
    monkeypatch.setattr(base, "bits_commute", lambda a, b: True)
    planted = explore(target, DPOR())
    assert planted.exhaustive  # it believes it has seen everything
    assert planted.runs == 1
    assert len(planted.final_states) == 1  # the other order's mask is never run
