"""xensched: Xen's scheduler locking, emulated with real threads and real locks.

Every pCPU is an OS thread, every Xen spinlock a ``threading.Lock`` behind a mutable
per-CPU ``schedule_lock`` pointer. Start with :class:`Host`::

    host = Host(4, sched="credit", protocol="legacy")
    host.cpupool_cpu_remove("Pool-0", 3)
    host.cpupool_create("p1", sched="credit2")
    host.cpupool_cpu_add("p1", 3)
    host.violations
"""

from __future__ import annotations

from xensched.cpupool import Cpupool as Cpupool
from xensched.domain import Domain as Domain, Vcpu as Vcpu
from xensched.errors import (
    AssertFailedError as AssertFailedError,
    ConfigError as ConfigError,
    DeadlockError as DeadlockError,
    XenError as XenError,
    XenschedError as XenschedError,
)
from xensched.host import Host as Host, PoolInfo as PoolInfo, Topology as Topology
from xensched.protocol import Part as Part, SwitchProtocol as SwitchProtocol
from xensched.schedulers import SCHEDULERS as SCHEDULERS
from xensched.spinlock import SpinLock as SpinLock, SpinLockStats as SpinLockStats
from xensched.violation import Violation as Violation, ViolationKind as ViolationKind

__version__ = "0.1.0"

__all__ = [
    "SCHEDULERS",
    "AssertFailedError",
    "ConfigError",
    "Cpupool",
    "DeadlockError",
    "Domain",
    "Host",
    "Part",
    "PoolInfo",
    "SpinLock",
    "SpinLockStats",
    "SwitchProtocol",
    "Topology",
    "Vcpu",
    "Violation",
    "ViolationKind",
    "XenError",
    "XenschedError",
    "__version__",
]
