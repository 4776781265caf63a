"""Domains and vCPUs of the emulated host.

Mirrors: ``struct domain`` and ``struct vcpu`` of xen/include/xen/sched.h, reduced to
what scheduling touches: ``v->processor``, ``v->sched_priv``, ``v->is_running``, the
pause state that makes ``vcpu_runnable()`` false, ``_VPF_migrating``, and the domain's
``cpupool`` and ``sched_priv`` (the scheduler's per-domain data).

Which fields are shared cells: ``processor`` and ``sched_priv`` (read by other pCPUs to
find a vCPU's lock and scheduler data) are :class:`~xensched.memory.Cell`, so every
access is an interaction point. The pause state (``awake``, ``migrating``, the domain's
``paused``) and ``is_running`` are single-word flags, as Xen's ``pause_flags`` bits
and ``is_running`` are: written under the vCPU's schedule lock or by the pCPU running
it, read racily by others exactly as Xen does. They are plain attributes to keep
``schedule()`` cheap; ``context_saved()`` makes its clear of ``is_running`` an
interaction point, the one store another pCPU waits for.

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
        self.processor: Cell[int] = Cell(bus, f"{self.name}->processor", processor)
        self.sched_priv: Cell[Any] = Cell(bus, f"{self.name}->sched_priv", None)
        # Written under the vCPU's schedule lock by schedule()/vcpu_wake()/sleep.
        self.is_running = False
        self.awake = domain.is_idle
        self.migrating = False
        # A stand-in for hard affinity: the pCPU a requested migration aims at.
        self.affinity: int | None = None

    def __repr__(self) -> str:
        return f"<vcpu {self.name}>"

    @property
    def is_idle(self) -> bool:
        return self.domain.is_idle

    def runnable(self) -> bool:
        """``vcpu_runnable()``: awake, its domain not paused, no migration in flight."""
        return self.awake and not self.migrating and not self.domain.paused


class Domain:
    """``struct domain``."""

    __slots__ = ("cpupool", "domain_id", "name", "paused", "sched_priv", "vcpus")

    def __init__(self, bus: Bus, domain_id: int, name: str) -> None:
        self.domain_id = domain_id
        self.name = name
        self.vcpus: list[Vcpu] = []
        self.cpupool: Cell[Cpupool | None] = Cell(bus, f"{name}->cpupool", None)
        self.sched_priv: Any = None
        self.paused = False

    def __repr__(self) -> str:
        return f"<domain {self.name} ({self.domain_id})>"

    @property
    def is_idle(self) -> bool:
        return self.domain_id == DOMID_IDLE
