"""Domains and vCPUs of the emulated host.

Mirrors: ``struct domain`` and ``struct vcpu`` of xen/include/xen/sched.h, reduced to
what scheduling touches: ``v->processor``, ``v->sched_priv``, ``v->is_running``, the
pause state that makes ``vcpu_runnable()`` false, ``_VPF_migrating``, and the domain's
``cpupool`` and ``sched_priv`` (the scheduler's per-domain data).

Every field another CPU reads or writes is a shared cell
(:class:`~xensched.memory.Cell`), so each access is an interaction point: ``processor``
and ``sched_priv`` (read by other pCPUs to find a vCPU's lock and scheduler data), the
pause state (``awake``, ``migrating``, the domain's ``paused``: Xen's ``pause_flags``
bits and ``pause_count``), ``is_running`` (cleared by ``context_saved()``, waited for
by ``vcpu_sleep_sync()``), ``affinity`` and the domain's ``cpupool`` and
``sched_priv``. What never changes after creation (names, ids, the domain a vCPU
belongs to, the tuple of a domain's vCPUs) is a plain attribute.

Left out: runstate accounting, affinity masks (every vCPU may run on every pCPU of its
pool; ``affinity`` only names the target of a requested migration), event channels,
memory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xensched.memory import Cell

if TYPE_CHECKING:
    from xensched.cpupool import Cpupool
    from xensched.interaction import Bus

DOMID_IDLE = 0x7FFF


#: The race detector's declaration (``Cell(racy=)``) of ``awake`` and ``migrating``.
PAUSE_FLAGS_RACY = (
    "a bit of v->pause_flags (_VPF_blocked, _VPF_migrating): changed only with "
    "set_bit()/test_and_clear_bit() (vcpu_block, vcpu_unblock, vcpu_migrate), read "
    "plainly by vcpu_runnable() and context_saved()'s test_bit() without the vCPU's "
    "lock; each change is followed by a sleep, wake or migration that re-reads it "
    "under the lock"
)


class Vcpu:
    """``struct vcpu``. Fields read by other pCPUs are :class:`~xensched.memory.Cell`."""

    __slots__ = (
        "affinity",
        "awake",
        "domain",
        "is_running",
        "migrating",
        "name",
        "processor",
        "sched_priv",
        "vcpu_id",
    )

    def __init__(self, bus: Bus, domain: Domain, vcpu_id: int, processor: int) -> None:
        self.domain = domain
        self.vcpu_id = vcpu_id
        self.name = f"idle{processor}" if domain.is_idle else f"{domain.name}v{vcpu_id}"
        # Not declared racy, as schedule_lock is not (xensched.percpu): the read
        # before vcpu_schedule_lock*() takes the lock is racy by design, the re-read
        # under it is not, and a declaration would cover both.
        self.processor: Cell[int] = Cell(bus, f"{self.name}->processor", processor)
        self.sched_priv: Cell[Any] = Cell(bus, f"{self.name}->sched_priv", None)
        # Set by schedule() under the vCPU's lock, cleared by context_saved().
        self.is_running: Cell[bool] = Cell(bus, f"{self.name}->is_running", False)
        self.awake: Cell[bool] = Cell(
            bus, f"{self.name}->awake", domain.is_idle, racy=PAUSE_FLAGS_RACY
        )
        self.migrating: Cell[bool] = Cell(
            bus, f"{self.name}->migrating", False, racy=PAUSE_FLAGS_RACY
        )
        # A stand-in for hard affinity: the pCPU a requested migration aims at.
        self.affinity: Cell[int | None] = Cell(bus, f"{self.name}->affinity", None)

    def __repr__(self) -> str:
        return f"<vcpu {self.name}>"

    @property
    def is_idle(self) -> bool:
        return self.domain.is_idle

    def runnable(self) -> bool:
        """``vcpu_runnable()``: awake, its domain not paused, no migration in flight."""
        return (
            self.awake.load()
            and not self.migrating.load()
            and not self.domain.paused.load()
        )


class Domain:
    """``struct domain``."""

    __slots__ = ("cpupool", "domain_id", "name", "paused", "sched_priv", "vcpus")

    def __init__(self, bus: Bus, domain_id: int, name: str) -> None:
        self.domain_id = domain_id
        self.name = name
        # Set once, when the domain's vCPUs are made (never changed after).
        self.vcpus: tuple[Vcpu, ...] = ()
        self.cpupool: Cell[Cpupool | None] = Cell(bus, f"{name}->cpupool", None)
        self.sched_priv: Cell[Any] = Cell(bus, f"{name}->sched_priv", None)
        self.paused: Cell[bool] = Cell(bus, f"{name}->paused", False)

    def __repr__(self) -> str:
        return f"<domain {self.name} ({self.domain_id})>"

    @property
    def is_idle(self) -> bool:
        return self.domain_id == DOMID_IDLE
