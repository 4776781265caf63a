"""SIGTERM and SIGHUP (and, for some commands, SIGINT) for the command line: end a run
as Ctrl-C does.

Mirrors nothing in Xen. A CI job that runs out of time sends SIGTERM, a closed
terminal SIGHUP; by default either kills the process before it prints or writes its
report. :func:`stop_signals` routes them to a callback for the duration of a command
and puts the previous handlers back after, so only front ends (``xensched reproduce``,
``stress``, ``explore``, ``replay``, ``fuzz``, ``litmus``, ``mutate``, ``bench``) use it: never
library code, which may run in a pytest thread or in a program that has its own
handlers. ``explore`` and ``reproduce`` route SIGINT through it too, so that a second
Ctrl-C cannot cut short the clean-up of the first.

The callback runs in the main thread, between two bytecodes of whatever it was
doing, so it should only set a flag or an event (or raise ``KeyboardInterrupt``,
where the caller is ready for one); the command then ends through the path it has
for Ctrl-C. A signal the process ignores when the command starts (``nohup`` ignores
SIGHUP) stays ignored.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from types import FrameType

#: The signals that end a run as Ctrl-C does (those the platform has).
STOP_SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)
)


def signal_name(signum: int) -> str:
    """``SIGTERM`` for 15, and so on; the number for an unknown one."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


@contextlib.contextmanager
def stop_signals(
    on_signal: Callable[[int], None],
    signals: Iterable[signal.Signals] = STOP_SIGNALS,
) -> Iterator[None]:
    """Call ``on_signal(signum)`` on SIGTERM and SIGHUP (or ``signals``) while inside
    the block.

    The previous handlers are restored on the way out, whatever happens. Outside the
    main thread (where Python cannot install handlers) this does nothing. A command
    that adds SIGINT has its Ctrl-C go through the same callback, so that a second
    Ctrl-C cannot cut short the clean-up of the first (``RaiseInterrupt`` ignores it).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        on_signal(signum)

    previous: dict[signal.Signals, signal.Handlers | Callable[..., object] | int] = {}
    try:
        for sig in signals:
            old = signal.getsignal(sig)
            if old is signal.SIG_IGN:
                continue  # ignored on purpose (nohup): leave it so
            # None: a handler installed from C, which Python cannot put back; the
            # default is the nearest.
            previous[sig] = signal.SIG_DFL if old is None else old
            signal.signal(sig, handler)
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def quiet_lost_interrupts() -> Iterator[None]:
    """Inside the block, a ``KeyboardInterrupt`` that Python drops is not printed.

    A signal handler that raises (Ctrl-C's own, :class:`RaiseInterrupt`'s) raises
    in whatever the main thread runs, a weakref callback or a ``__del__`` too; there
    Python cannot propagate it, and prints it with a traceback ("Exception ignored
    in ...") through ``sys.unraisablehook``. The signal is not lost for a caller
    that also polls ``RaiseInterrupt.signum`` between two steps of its work: only
    the message is dropped here. Other unraisable exceptions are printed as before.
    """
    previous = sys.unraisablehook

    def hook(unraisable: sys.UnraisableHookArgs) -> None:
        if issubclass(unraisable.exc_type, KeyboardInterrupt):
            return
        previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous


class CommandInterrupt:
    """The SIGINT handler of the process's own command line (``xensched CMD``): the
    first Ctrl-C raises ``KeyboardInterrupt``, as Python's own handler does; later
    ones, and any once the command is :attr:`done`, are dropped.

    A command that handles Ctrl-C itself installs its handler over this one and puts
    it back when it ends (:func:`stop_signals`). A Ctrl-C of a flood (``timeout -s
    INT`` signals the command, then its group) that lands while it does so, or
    while the last output is flushed, comes here: the command ends as interrupted,
    not with a traceback from wherever the signal landed, and a second one cannot
    interrupt the handling of the first.
    """

    def __init__(self) -> None:
        self.fired = False
        self.done = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.fired or self.done:
            return
        self.fired = True
        raise KeyboardInterrupt


class RaiseInterrupt:
    """A :func:`stop_signals` callback for code that is ready for Ctrl-C.

    The first signal is remembered (:attr:`signum`) and, inside :meth:`armed`,
    raised as ``KeyboardInterrupt``, as Ctrl-C would be; outside, it is only
    remembered, so that it cannot cut short the writing of a report. Later signals
    are ignored: the first one's clean-up is under way.
    """

    __slots__ = ("_armed", "signum")

    def __init__(self) -> None:
        self.signum: int | None = None
        self._armed = False

    def __call__(self, signum: int) -> None:
        if self.signum is not None:
            return
        self.signum = signum
        if self._armed:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def armed(self) -> Iterator[None]:
        """Raise ``KeyboardInterrupt`` here on a signal (at once for an earlier one)."""
        self._armed = True
        try:
            if self.signum is not None:
                raise KeyboardInterrupt
            yield
        finally:
            self._armed = False
