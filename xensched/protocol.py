"""The two ``schedule_cpu_switch()`` protocols a host can run.

Mirrors: xen/common/schedule.c before and after Xen commit 94734ab7c3 ("sched: close
potential races when switching scheduler to CPUs").
"""

from __future__ import annotations

import enum


class SwitchProtocol(enum.StrEnum):
    """Which ``schedule_cpu_switch()`` a host runs; the value is the CLI name."""

    LEGACY = "legacy"
    FIXED = "fixed"

    def describe(self) -> str:
        if self is SwitchProtocol.LEGACY:
            return (
                "94734ab7c3^: init_pdata remaps the lock before the swap, the swap "
                "happens under the new lock, free_pdata puts the default lock back"
            )
        return (
            "94734ab7c3 + 8b27d2b8af + fb0c3a8a30: the swap and the remap happen in "
            "switch_sched under the old lock, the lock pointer last after smp_mb()"
        )
