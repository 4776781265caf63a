"""The ``schedule_cpu_switch()`` a host runs: the fix as a set of named parts.

Mirrors: xen/common/schedule.c and the schedulers' ``switch_sched``/``free_pdata``
before and after Xen commit 94734ab7c3 ("sched: close potential races when switching
scheduler to CPUs"), with its two follow-ups 8b27d2b8af and fb0c3a8a30 and the
``deinit_pdata`` split of f45666afdb (all in RELEASE-4.7.0).

A protocol is one of:

- ``legacy``: 94734ab7c3^, the pre-patch ``schedule_cpu_switch()`` as written (it has
  none of the parts; its swap is generic code, not a ``switch_sched`` hook);
- ``fixed``: RELEASE-4.7.0, every part;
- ``fixed-without:PART[,PART...]``: the fixed switch with each named part reverted to
  its pre-patch form, or dropped where it has none (see :class:`Part`);
- ``MODULE:FUNCTION``: a ``schedule_cpu_switch()`` of the user's own, a callable
  ``(h, cpu, old_ops, new_ops) -> None`` that runs where the fixed switch would (after
  the function's ASSERTs and the ``old_ops is new_ops`` shortcut, before the pCPU's
  cpupool is set and the switch is checked).

Left out: the patch also moved ``tick_suspend``/``tick_resume`` out of the switch's
critical section; the emulated tick hooks only read ``sched_priv`` and flip a flag
that nothing reads, so that move is not a part (the fixed switch always makes it).
The ASSERTs that the patch and fb0c3a8a30 added to the ``switch_sched`` hooks are
checks, not steps: they stay whichever parts are removed, which is how several
removals show (``csched_init_pdata``'s belongs to the post-patch ``init_pdata`` and
goes with ``alloc-no-init``). ``fixed-without:`` every part is not ``legacy``: the
pre-patch switch has another shape (no ``switch_sched`` hook), so it stays a preset
of its own.
"""

from __future__ import annotations

import enum
import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from xensched.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable

    from xensched.host import Host
    from xensched.schedulers.base import Scheduler

    #: ``(h, cpu, old_ops, new_ops) -> None``: the body of ``schedule_cpu_switch()``.
    SwitchFunction = Callable[[Host, int, Scheduler, Scheduler], None]

WITHOUT = "fixed-without:"


class Part(enum.StrEnum):
    """A named part of the fix; the value is its CLI name.

    Each is tested at exactly one site, in ``xensched.schedule._switch_fixed``, which
    hands the schedulers' hooks the matching form as keyword arguments.
    """

    ALLOC_NO_INIT = "alloc-no-init"
    OLD_LOCK = "old-lock"
    LOCK_IRQ = "lock-irq"
    PRV_LOCK_NO_IRQ = "prv-lock-no-irq"
    POINTER_LAST = "pointer-last"
    BARRIER = "barrier"
    UNLOCK_BY_POINTER = "unlock-by-pointer"
    DEINIT_BEFORE_FREE = "deinit-before-free"

    def describe(self) -> str:
        """What the part does in the fixed switch, and what its removal leaves."""
        return _DESCRIPTIONS[self]


_DESCRIPTIONS = {
    Part.ALLOC_NO_INIT: (
        "94734ab7c3: schedule_cpu_switch allocates the new scheduler's pdata and idle "
        "vdata without init_pdata; switch_sched initialises them under the old lock. "
        "Without it: init_pdata in its pre-patch form runs before the swap, and "
        "Credit2's and RTDS's remap the lock there (problem 1, window [2]); "
        "switch_sched then does not initialise again"
    ),
    Part.OLD_LOCK: (
        "94734ab7c3: the swap and the remap run in switch_sched while "
        "schedule_cpu_switch holds the pCPU's current lock, the old scheduler's, so "
        "that a spinner retries on the new one. Without it: no pCPU lock is taken "
        "around switch_sched at all (IRQs stay off if lock-irq is kept)"
    ),
    Part.LOCK_IRQ: (
        "8b27d2b8af: that lock is taken with pcpu_schedule_lock_irq. Without it: "
        "pcpu_schedule_lock with IRQs on, as 94734ab7c3 was first committed, which "
        "check_lock() and switch_sched's ASSERT(!local_irq_is_enabled()) catch"
    ),
    Part.PRV_LOCK_NO_IRQ: (
        "fb0c3a8a30: csched2_switch_sched takes its private lock with spin_lock, "
        "keeping IRQs off. Without it: spin_lock_irq/spin_unlock_irq, as 94734ab7c3 "
        "had it: an ASSERT in _spin_lock_irq fires and IRQs are back on while the "
        "old lock is still held"
    ),
    Part.POINTER_LAST: (
        "94734ab7c3: switch_sched stores schedule_lock as its last store, after "
        "per_cpu(scheduler) and sched_priv. Without it: the lock is rerouted before "
        "the scheduler swap (no pre-patch form: reordered)"
    ),
    Part.BARRIER: (
        "94734ab7c3: smp_mb() before the schedule_lock store in the switch_sched of "
        "Credit, Credit2 and RTDS. Without it: no barrier. Observable under the "
        "relaxed memory model (the lock pointer may become visible before the "
        "scheduler swap: a lock-mismatch), not under sc or tso"
    ),
    Part.UNLOCK_BY_POINTER: (
        "94734ab7c3: schedule_cpu_switch releases the lock it took by pointer, "
        "spin_unlock_irq(old_lock). Without it: pcpu_schedule_unlock_irq(old_lock, "
        "cpu), whose ASSERT fires whenever switch_sched moved the lock"
    ),
    Part.DEINIT_BEFORE_FREE: (
        "94734ab7c3 and f45666afdb: deinit_pdata tears the old scheduler's pCPU data "
        "down, then free_pdata only frees it and leaves schedule_lock alone. Without "
        "it: free_pdata in its pre-patch form does the teardown, and Credit2's and "
        "RTDS's ASSERT the lock is theirs and put _lock back (problems 2 and 3)"
    ),
}


def _pre_patch_switch(
    h: Host, cpu: int, old_ops: Scheduler, new_ops: Scheduler
) -> None:
    # Imported here: xensched.schedule imports this module. The name stays private
    # to schedule.py, where the events name it (as they name _switch_fixed).
    from xensched.schedule import _switch_legacy

    _switch_legacy(h, cpu, old_ops, new_ops)


@dataclass(frozen=True, slots=True)
class SwitchProtocol:
    """Which ``schedule_cpu_switch()`` a host runs; ``str()`` is its spec.

    Build one with :meth:`parse`; the presets are ``SwitchProtocol.LEGACY`` and
    ``SwitchProtocol.FIXED``.

    ``parts`` are the parts of the fix the generic fixed switch keeps; ``switch``,
    when set, replaces that switch (the ``legacy`` preset and user protocols).
    """

    name: str
    parts: frozenset[Part]
    switch: SwitchFunction | None = field(default=None, compare=False)

    LEGACY: ClassVar[SwitchProtocol]
    FIXED: ClassVar[SwitchProtocol]
    PRESETS: ClassVar[tuple[SwitchProtocol, ...]]

    def __str__(self) -> str:
        return self.name

    def has(self, part: Part) -> bool:
        """Does this protocol keep ``part`` of the fix?"""
        return part in self.parts

    def describe(self) -> str:
        if self is SwitchProtocol.LEGACY:
            return (
                "94734ab7c3^: init_pdata remaps the lock before the swap, the swap "
                "happens under the new lock, free_pdata puts the default lock back"
            )
        if self is SwitchProtocol.FIXED:
            return (
                "94734ab7c3 + f45666afdb + 8b27d2b8af + fb0c3a8a30: the swap and the "
                "remap happen in switch_sched under the old lock, the lock pointer "
                "last after smp_mb(), and deinit_pdata tears down before free_pdata"
            )
        if self.switch is not None:
            return f"a user's schedule_cpu_switch(): {self.name}"
        gone = [p.value for p in Part if p not in self.parts]
        return f"the fixed protocol without {', '.join(gone)}"

    @classmethod
    def parse(cls, spec: str | SwitchProtocol) -> SwitchProtocol:
        """A protocol from its spec (a preset comes back as the preset itself).

        Raises:
            ConfigError: an unknown preset or part, an empty or repeated part list,
                a module that does not import (or raises as it runs), a function missing or not callable.
        """
        if isinstance(spec, SwitchProtocol):
            return spec
        for preset in cls.PRESETS:
            if spec == preset.name:
                return preset
        if spec.startswith(WITHOUT):
            return cls._without(spec[len(WITHOUT) :])
        if ":" in spec:
            return cls._plugged(spec)
        raise ConfigError(
            f"protocol {spec!r}: choose legacy, fixed, {WITHOUT}PART[,PART...] or "
            "MODULE:FUNCTION"
        )

    @classmethod
    def _without(cls, names: str) -> SwitchProtocol:
        valid = ", ".join(p.value for p in Part)
        listed = [n.strip() for n in names.split(",")] if names.strip() else []
        if not listed:
            raise ConfigError(f"protocol {WITHOUT}: name at least one part ({valid})")
        gone: set[Part] = set()
        for name in listed:
            try:
                part = Part(name)
            except ValueError:
                raise ConfigError(
                    f"protocol {WITHOUT}{names}: unknown part {name!r}; parts: {valid}"
                ) from None
            if part in gone:
                raise ConfigError(
                    f"protocol {WITHOUT}{names}: part {name!r} named twice"
                )
            gone.add(part)
        # Canonical name (parts in switch order), so that equal protocols print alike.
        canonical = ",".join(p.value for p in Part if p in gone)
        return cls(f"{WITHOUT}{canonical}", frozenset(Part) - gone)

    @classmethod
    def _plugged(cls, spec: str) -> SwitchProtocol:
        module_name, _, attr = spec.rpartition(":")
        if not module_name or not attr:
            raise ConfigError(f"protocol {spec!r}: write MODULE:FUNCTION")
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise ConfigError(
                f"protocol {spec!r}: cannot import {module_name!r} ({e})"
            ) from None
        except Exception as e:  # the user's module failed as it ran, or a bad name
            raise ConfigError(
                f"protocol {spec!r}: cannot import {module_name!r} "
                f"({type(e).__name__}: {e})"
            ) from None
        func = getattr(module, attr, None)
        if func is None:
            raise ConfigError(f"protocol {spec!r}: {module_name} has no {attr!r}")
        if not callable(func):
            raise ConfigError(
                f"protocol {spec!r}: {module_name}.{attr} is not callable"
            )
        return cls(spec, frozenset(), func)

    @classmethod
    def catalog(cls) -> dict[str, object]:
        """The presets and parts, as ``xensched protocols --json`` prints them."""
        return {
            "presets": {
                p.name: [x.value for x in Part if p.has(x)] for p in cls.PRESETS
            },
            "parts": [{"name": p.value, "description": p.describe()} for p in Part],
        }


SwitchProtocol.LEGACY = SwitchProtocol("legacy", frozenset(), _pre_patch_switch)
SwitchProtocol.FIXED = SwitchProtocol("fixed", frozenset(Part))
SwitchProtocol.PRESETS = (SwitchProtocol.LEGACY, SwitchProtocol.FIXED)
