"""Named edits of the model beyond the switch protocol: mutants a check must kill.

Mirrors: the retry-on-change lock macros of ``xen/include/xen/sched-if.h`` (Xen 4.6/4.7:
``pcpu_schedule_lock*``, ``vcpu_schedule_lock*`` and ``pcpu_schedule_trylock``), which
re-read ``per_cpu(schedule_data, cpu).schedule_lock`` after taking the lock and retry
(or, for the trylock, give up) when it moved. The parts of the fix itself are
:class:`~xensched.protocol.SwitchProtocol` parts (``fixed-without:PART``); a mutant here
removes something the fix relies on elsewhere. A host carries its mutants as
configuration (``Host(mutants=...)``, a scenario's ``mutants`` field), never as a
monkeypatch, so that a replay file names them and every thread of a run sees the same
code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from xensched.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["MUTANTS", "NO_LOCK_RECHECK", "NO_TRYLOCK_RECHECK", "check_mutants"]

NO_TRYLOCK_RECHECK: Final = "no-trylock-recheck"
NO_LOCK_RECHECK: Final = "no-lock-recheck"

#: Every mutant by name, with what it removes.
MUTANTS: Final[dict[str, str]] = {
    NO_TRYLOCK_RECHECK: "pcpu_schedule_trylock() keeps the lock it took without "
    "re-reading the pCPU's schedule_lock pointer (the re-check of sched-if.h removed)",
    NO_LOCK_RECHECK: "the pcpu_/vcpu_schedule_lock macros take the lock the pointer "
    "named once, without re-reading the pointer and retrying when it moved",
}


def check_mutants(names: Iterable[str]) -> frozenset[str]:
    """``names`` as a set, each a known mutant.

    Raises:
        ConfigError: an unknown name (the message lists the known ones).
    """
    out = frozenset(names)
    for name in sorted(out):
        if name not in MUTANTS:
            raise ConfigError(f"mutant {name!r}: choose one of {', '.join(MUTANTS)}")
    return out
