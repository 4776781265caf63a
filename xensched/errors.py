"""Exceptions raised by xensched.

Glossary: Xen reports a refused hypercall as a negative errno (``-EBUSY``); here that
becomes :class:`XenError` carrying the positive errno, so that a caller can test
``err.errno == errno.EBUSY`` exactly as a libxc user would.
"""

from __future__ import annotations

import errno as _errno


class XenschedError(Exception):
    """Root of every exception raised by xensched itself."""


class ConfigError(XenschedError, ValueError):
    """An invalid host or scenario configuration (bad cpu count, unknown scheduler)."""


class XenError(XenschedError):
    """A refusal that Xen itself would return as ``-errno`` (cpupool and domain ops).

    The host is left exactly as it was before the refused operation.
    """

    def __init__(self, errno: int, message: str) -> None:
        name = _errno.errorcode.get(errno, str(errno))
        super().__init__(f"{name}: {message}")
        self.errno = errno
        self.errname = name
        self.message = message


class DeadlockError(XenschedError):
    """A bounded wait ran out: a lock was held, or a turn not given, for too long.

    ``str(err)`` is the report. Its first line says who waited for what, and for
    how long (``pcpu0 spun on 'cpupool_lock' for 5s; held by pcpu1``); where a wait
    ran out, the rest is :func:`xensched.diagnostics.deadlock_report`'s: every
    lock's owner and waiters, each context's last point and every thread's stack,
    taken while the others were still stuck, and ``dumped`` is True.
    """

    def __init__(self, message: str, *, dumped: bool = False) -> None:
        super().__init__(message)
        #: The message holds the state dump already (a harness adds none of its own).
        self.dumped = dumped


class AssertFailedError(XenschedError, AssertionError):
    """An emulated Xen ``ASSERT()``/``BUG_ON()`` failed on a host in strict mode."""


class Abandoned(BaseException):
    """A controlled run was ended by its strategy (an explorer saw the rest of it is
    redundant, or it ran past its step bound).

    A ``BaseException``, as ``KeyboardInterrupt`` is: it must unwind through the
    model's and the programs' ``except Exception`` handlers without being taken for
    a failure of the emulated code.
    """
