"""The process's own figures over a stress run: CPU, RSS, threads, context switches.

Mirrors nothing in Xen. psutil is optional: without it every figure is ``None`` and
the report says "unavailable"; the interpreter's description needs nothing.
"""

from __future__ import annotations

import platform
import sys
import sysconfig
import time

from .report import ProcessFigures


def _ctx_switches() -> tuple[int, int] | None:
    """(voluntary, involuntary) context switches of the whole process, or None.

    ``getrusage(RUSAGE_SELF)`` counts every thread, finished ones included; psutil's
    ``num_ctx_switches()`` reads ``/proc/PID/status`` on Linux, which is the main
    thread's alone, so it is only the fallback.
    """
    try:
        import resource
    except ImportError:  # not POSIX
        return None
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_nvcsw, ru.ru_nivcsw


class ProcessProbe:
    """psutil figures of this process over the run; all ``None`` without psutil."""

    def __init__(self) -> None:
        self._t0 = time.monotonic()
        self.peak_rss: int | None = None
        self.peak_threads: int | None = None
        try:
            import psutil
        except ImportError:  # optional: the report says "unavailable"
            self._proc = None
            return
        self._proc = psutil.Process()
        self._cpu0 = self._proc.cpu_times()
        self._ctx0 = _ctx_switches() or tuple(self._proc.num_ctx_switches()[:2])
        self.sample()

    def sample(self) -> None:
        if self._proc is None:
            return
        try:
            rss = self._proc.memory_info().rss
            threads = self._proc.num_threads()
        except Exception:  # psutil can fail on exotic platforms; figures are extras
            return
        self.peak_rss = max(self.peak_rss or 0, rss)
        self.peak_threads = max(self.peak_threads or 0, threads)

    def finish(self) -> ProcessFigures:
        if self._proc is None:
            return ProcessFigures()
        self.sample()
        try:
            cpu = self._proc.cpu_times()
            ctx = _ctx_switches() or tuple(self._proc.num_ctx_switches()[:2])
            rss = self._proc.memory_info().rss
        except Exception:  # see sample()
            return ProcessFigures()
        wall = max(time.monotonic() - self._t0, 1e-9)
        busy = (cpu.user - self._cpu0.user) + (cpu.system - self._cpu0.system)
        return ProcessFigures(
            cpu_percent=100.0 * busy / wall,
            rss_bytes=rss,
            peak_rss_bytes=self.peak_rss,
            threads=self.peak_threads,
            ctx_switches_voluntary=ctx[0] - self._ctx0[0],
            ctx_switches_involuntary=ctx[1] - self._ctx0[1],
        )


def python_description() -> str:
    """``Python 3.13.5 (free-threaded, GIL off)`` or ``Python 3.11.7 (GIL)``."""
    version = f"Python {platform.python_version()}"
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        gil_enabled = getattr(sys, "_is_gil_enabled", lambda: True)()
        return f"{version} (free-threaded, GIL {'on' if gil_enabled else 'off'})"
    return f"{version} (GIL)"
