"""Helpers for unit tests that drive the emulator with real threads.

- :class:`Threads` starts named threads bound to emulated contexts, keeps what they
  raise, and joins them with a bound, re-raising the first error in the test.
- :class:`SpinWatch` is an instrument that knows which context spins on which lock.
  Since a ``LOCK`` point comes right before the real acquire, a test holding that
  lock knows, without sleeping, that another thread is now spinning on it.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from xensched.interaction import Access, Instrument, PointKind
from xensched.smp import bind

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from types import TracebackType

    from xensched.smp import ExecContext

#: Bound of every wait in a test: generous, only reached when the test is broken.
WAIT = 5.0


def wait(event: threading.Event, what: str) -> None:
    """Wait (bounded) for ``event``; fail the test if it never comes."""
    assert event.wait(WAIT), f"timed out waiting for {what}"


class Threads:
    """Named threads bound to contexts; errors kept and re-raised at :meth:`join`.

    Use as a context manager: when the block ends (normally or not) the
    ``on_exit`` events are set, so no thread waits for a test that is gone, then
    every thread is joined (bounded). Call :meth:`join` inside the block to wait
    for threads that must finish before those events are set.
    """

    def __init__(self, *on_exit: threading.Event) -> None:
        self._threads: list[threading.Thread] = []
        self._on_exit = on_exit
        self.errors: list[BaseException] = []
        self._meta = threading.Lock()

    def start(self, ctx: ExecContext, fn: Callable[[], object]) -> threading.Thread:
        def body() -> None:
            try:
                with bind(ctx):
                    fn()
            except BaseException as exc:  # kept, re-raised by join()
                with self._meta:
                    self.errors.append(exc)

        t = threading.Thread(target=body, name=f"test-{ctx.name}", daemon=True)
        self._threads.append(t)
        t.start()
        return t

    def join(self) -> None:
        for t in self._threads:
            t.join(WAIT)
        alive = [t.name for t in self._threads if t.is_alive()]
        assert not alive, f"threads did not finish: {alive}"
        if self.errors:
            raise self.errors[0]

    def __enter__(self) -> Threads:
        return self

    def __exit__(
        self,
        typ: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for ev in self._on_exit:
            ev.set()
        if typ is None:
            self.join()
        else:
            for t in self._threads:
                t.join(WAIT)


class SpinWatch(Instrument):
    """Knows which context spins on which lock, so a test can wait for a spinner.

    A ``LOCK`` point is passed right before the real acquire: it opens a spin on
    that lock; the context's next point (the re-check load, an unlock, ...) closes
    it. While the test holds lock ``L``, a context seen spinning on ``L`` is blocked
    on ``L`` (or about to be), whenever it passed that point.
    """

    def __init__(self) -> None:
        self._cv = threading.Condition(threading.Lock())
        self._spinning: dict[str, str] = {}

    def on_point(self, ctx: ExecContext, access: Access) -> None:
        kind, label = access.kind, access.label
        with self._cv:
            if kind is PointKind.LOCK:
                self._spinning[ctx.name] = label
                self._cv.notify_all()
            else:
                self._spinning.pop(ctx.name, None)

    def spinners(self, label: str, names: Iterable[str]) -> list[str]:
        with self._cv:
            return [n for n in names if self._spinning.get(n) == label]

    def wait_spinning(self, label: str, names: Iterable[str]) -> None:
        """Wait (bounded) until one of ``names`` spins on the lock ``label``."""
        wanted = frozenset(names)
        with self._cv:
            ok = self._cv.wait_for(
                lambda: any(self._spinning.get(n) == label for n in wanted), WAIT
            )
        assert ok, f"timed out waiting for one of {sorted(wanted)} to spin on {label}"
