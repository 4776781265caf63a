"""Drivers: how the threads of an emulated host interleave.

- :mod:`xensched.drivers.controlled`: one participant thread at a time, a strategy picks
  who runs at each interaction point (reproduce, explore, replay).
- :mod:`xensched.drivers.free`: real threads run freely (stress); optional seeded delay
  injection at interaction points widens race windows, KCSAN style.

A driver is anything with the :class:`xensched.interaction.Driver` method ``point``;
install one with ``host.bus.driver = drv`` (the controlled driver does so in ``run``).
"""

from __future__ import annotations

from xensched.drivers.controlled import (
    ControlledDriver as ControlledDriver,
    RoundRobin as RoundRobin,
    Strategy as Strategy,
    next_after as next_after,
)
from xensched.drivers.free import (
    DelayInjector as DelayInjector,
    free_running as free_running,
)

__all__ = [
    "ControlledDriver",
    "DelayInjector",
    "RoundRobin",
    "Strategy",
    "free_running",
    "next_after",
]
