"""A parked pCPU's wake, for DPOR: a read of the cell its condition reads.

The controlled driver records the cells a wake condition peeks; a condition that
read one cell makes the wake depend on writes to that cell only, where it depended on
every write (the races of ``switch-race``'s idle observers with the toolstack's every
store). The soundness tests hold it to unreduced DFS (``pulse``).
"""

from __future__ import annotations

from tests.explore.test_soundness import pulse
from xensched.explore import DPOR, Explorer
from xensched.explore.base import WAKE, Op, independent
from xensched.explore.threads import ThreadsTarget


def test_a_wake_whose_condition_read_one_cell_depends_only_on_writes_to_it() -> None:
    wake = Op("wake", 7, "softirq_pending(2)")
    assert not independent(wake, Op("rmw", 7, "softirq_pending(2)"))
    assert independent(wake, Op("store", 8, "per_cpu(cpupool, 3)"))
    assert independent(wake, Op("load", 7, "softirq_pending(2)"))
    assert independent(wake, WAKE)
    # Without a cell, a wake depends on every write.
    assert not independent(WAKE, Op("store", 8, "per_cpu(cpupool, 3)"))
    assert independent(WAKE, Op("load", 8, "per_cpu(cpupool, 3)"))
    # And a wake is described the same way either way (replay files say "wake").
    assert wake.describe() == WAKE.describe() == "wake"


def test_dpor_learns_the_cell_a_wake_condition_reads() -> None:
    # The pulse's waiter: its wake is a read of the flag, not of every write.
    ex = Explorer(ThreadsTarget(pulse), DPOR(), runs=1)
    ex.search.begin(0)
    run = ex.execute(0)
    wakes = {op for s in run.steps for op in s.pending.values() if op.kind == "wake"}
    assert {op.label for op in wakes} == {"flag"}
