"""Named edits of the model beyond the switch protocol: mutants a check must kill.

Mirrors: the retry-on-change lock macros of ``xen/include/xen/sched-if.h`` (Xen 4.6/4.7:
``pcpu_schedule_lock*``, ``vcpu_schedule_lock*`` and ``pcpu_schedule_trylock``), which
re-read ``per_cpu(schedule_data, cpu).schedule_lock`` after taking the lock and retry
(or, for the trylock, give up) when it moved. The parts of the fix itself are
:class:`~xensched.protocol.SwitchProtocol` parts (``fixed-without:PART``); a mutant here
removes something the fix relies on elsewhere. A host carries its edits as
configuration (``Host(mutants=...)``, a scenario's ``mutants`` field), never as a
monkeypatch, so that a replay file names them and every thread of a run sees the same
code.

:data:`CATALOG` is the mutation catalog of the fix, what ``--mutant NAME`` and
``xensched mutate`` take: each :class:`Mutant` is a protocol (``legacy`` or the fixed
switch without one part) or the fixed protocol with one edit of this module. An edit
is its own mutant, under its own name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from xensched.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from xensched.scenario import Scenario

__all__ = [
    "CATALOG",
    "CREDIT2_LOCK_ORDER",
    "MUTANTS",
    "NO_DEINIT_PDATA",
    "NO_LOCK_RECHECK",
    "NO_TRYLOCK_RECHECK",
    "Mutant",
    "check_mutants",
    "find_mutant",
]

NO_TRYLOCK_RECHECK: Final = "no-trylock-recheck"
NO_LOCK_RECHECK: Final = "no-lock-recheck"
NO_DEINIT_PDATA: Final = "no-deinit-pdata"
CREDIT2_LOCK_ORDER: Final = "credit2-lock-order"

#: Every mutant by name, with what it removes.
MUTANTS: Final[dict[str, str]] = {
    NO_TRYLOCK_RECHECK: "pcpu_schedule_trylock() keeps the lock it took without "
    "re-reading the pCPU's schedule_lock pointer (the re-check of sched-if.h removed)",
    NO_LOCK_RECHECK: "the pcpu_/vcpu_schedule_lock macros take the lock the pointer "
    "named once, without re-reading the pointer and retrying when it moved",
    NO_DEINIT_PDATA: "the fixed schedule_cpu_switch never calls the old scheduler's "
    "deinit_pdata: its per-pCPU state (Credit2's runqueue masks, Credit's idlers) "
    "outlives the move",
    CREDIT2_LOCK_ORDER: "csched2_switch_sched takes the new runqueue's lock before "
    "its private lock, against Credit2's documented order (private, then runqueue)",
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


# -- the catalog --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Mutant:
    """One mutant of the fix: a protocol (a set of parts, or ``legacy``) plus edits.

    ``memory_model`` is the weakest model under which the mutant can be seen at all:
    ``relaxed`` for the dropped barrier (under ``sc`` and ``tso`` it is equivalent to
    the fix), ``sc`` for every other one.
    """

    name: str
    summary: str
    protocol: str = "fixed"
    edits: frozenset[str] = frozenset()
    memory_model: str = "sc"

    def apply(self, sc: Scenario) -> Scenario:
        """``sc`` running this mutant: its protocol, its edits added to the scenario's.

        The memory model is left as it is: a caller that wants the mutant seen sets
        :attr:`memory_model` itself (``xensched mutate`` does).
        """
        return sc.replace(
            protocol=self.protocol,
            mutants=tuple(sorted(set(sc.mutants) | self.edits)),
        )

    def describe(self) -> str:
        """``--protocol SPEC`` and edits, as ``xensched mutate --list`` shows them."""
        how = [f"--protocol {self.protocol}"] if self.protocol != "fixed" else []
        how += [f"edit {e}" for e in sorted(self.edits)]
        if self.memory_model != "sc":
            how.append(f"seen under --memory-model {self.memory_model} only")
        return "; ".join(how)


def _part(name: str, part: str, summary: str, model: str = "sc") -> Mutant:
    return Mutant(name, summary, protocol=f"fixed-without:{part}", memory_model=model)


def _edit(name: str) -> Mutant:
    return Mutant(name, MUTANTS[name], edits=frozenset({name}))


#: Every mutant of the fix, in the order ``xensched mutate`` runs them.
CATALOG: Final[tuple[Mutant, ...]] = (
    Mutant(
        "legacy",
        "the pre-patch order (94734ab7c3^): init_pdata remaps the lock before the "
        "swap, the swap runs under the new lock, free_pdata puts _lock back",
        protocol="legacy",
    ),
    _part(
        "pointer-first",
        "pointer-last",
        "switch_sched reroutes schedule_lock before it swaps the scheduler and "
        "sched_priv",
    ),
    _part(
        "no-old-lock",
        "old-lock",
        "schedule_cpu_switch runs switch_sched without holding the pCPU's old lock",
    ),
    _part(
        "unlock-by-cpu",
        "unlock-by-pointer",
        "the old lock is released with pcpu_schedule_unlock_irq(lock, cpu), not "
        "spin_unlock_irq(old_lock)",
    ),
    _part(
        "no-barrier",
        "barrier",
        "no smp_mb() before the schedule_lock store in switch_sched",
        model="relaxed",
    ),
    _part(
        "init-in-alloc",
        "alloc-no-init",
        "init_pdata runs before the swap, outside switch_sched, as before the patch",
    ),
    _part(
        "irqs-on",
        "lock-irq",
        "the old lock is taken with pcpu_schedule_lock, IRQs on (94734ab7c3 as first "
        "committed, before 8b27d2b8af)",
    ),
    _part(
        "prv-lock-irq",
        "prv-lock-no-irq",
        "csched2_switch_sched takes its private lock with spin_lock_irq, re-enabling "
        "IRQs under the old lock (before fb0c3a8a30)",
    ),
    _part(
        "free-pdata-teardown",
        "deinit-before-free",
        "free_pdata does the old scheduler's teardown in its pre-patch form, putting "
        "_lock back",
    ),
    _edit(NO_DEINIT_PDATA),
    _edit(NO_TRYLOCK_RECHECK),
    _edit(NO_LOCK_RECHECK),
    _edit(CREDIT2_LOCK_ORDER),
)

_BY_NAME: Final = {m.name: m for m in CATALOG}


def find_mutant(name: str) -> Mutant:
    """The catalog's mutant called ``name``.

    Raises:
        ConfigError: no such mutant (the message lists the known ones).
    """
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ConfigError(
            f"mutant {name!r}: choose one of {', '.join(_BY_NAME)} "
            "(`xensched mutate --list` describes them)"
        ) from None
