"""A ``python -m xensched ...`` child process that tests read line by line and signal.

Both pipes are read as they fill (a child blocked on a full pipe would look hung),
with every wait bounded, so a test never hangs on a child that does not answer.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path


class CliProcess:
    """Run ``sys.executable ARGS`` with stdout and stderr piped; see the module."""

    def __init__(
        self,
        args: Sequence[str],
        cwd: Path,
        env: Mapping[str, str] | None = None,
        *,
        new_session: bool = False,
    ) -> None:
        """``env``: variables added to this process's; ``new_session``: the child
        leads a process group of its own, for :meth:`signal_group`."""
        self.proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=None if env is None else {**os.environ, **env},
            start_new_session=new_session,
        )
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        self._bufs = {"out": bytearray(), "err": bytearray()}
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.proc.stdout, selectors.EVENT_READ, "out")
        self._sel.register(self.proc.stderr, selectors.EVENT_READ, "err")
        self._closed = False
        self._session = new_session

    @property
    def out(self) -> str:
        return self._bufs["out"].decode()

    @property
    def err(self) -> str:
        return self._bufs["err"].decode()

    def pump(self, timeout: float) -> None:
        """Read what the child wrote within ``timeout`` seconds."""
        for key, _ in self._sel.select(timeout):
            data = os.read(key.fd, 65536)
            if data:
                self._bufs[key.data].extend(data)
            else:
                self._sel.unregister(key.fileobj)

    def wait_for(
        self, pattern: str, stream: str = "out", timeout: float = 60.0
    ) -> None:
        """Read until ``pattern`` (a regex) matches ``stream`` ("out" or "err")."""
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self._bufs[stream].decode(errors="replace")):
            left = deadline - time.monotonic()
            if left <= 0 or not self._sel.get_map():
                self.kill()
                raise AssertionError(
                    f"no {pattern!r} on std{stream}:\n{self.out}\n{self.err}"
                )
            self.pump(min(left, 0.1))

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def signal_group(self, signum: int) -> None:
        """Signal the child's process group (its workers too), as a terminal's
        Ctrl-C or ``timeout`` do; needs ``new_session``."""
        os.killpg(self.proc.pid, signum)

    def finish(self, timeout: float) -> int:
        """Read to the end and return the exit code; fails after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while self._sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise AssertionError(
                    f"still running after {timeout:g}s:\n{self.out}\n{self.err}"
                )
            self.pump(min(left, 0.1))
        return self.proc.wait(max(0.1, deadline - time.monotonic()))

    def assert_group_ends(self, within: float = 5.0) -> None:
        """The child's process group (it leads one: ``new_session``) is gone within
        ``within`` seconds: no worker, nor multiprocessing's resource tracker, left
        behind."""
        deadline = time.monotonic() + within
        while True:
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                return
            assert time.monotonic() < deadline, "processes left in the group"
            time.sleep(0.1)

    def kill(self) -> None:
        """Kill the child if it still runs, and close the pipes (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._session:
            # Its workers too, even when it has ended without them.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._sel.close()
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


def reproduce_every_remove(tmp_path: Path, out_file: Path) -> CliProcess:
    """``xensched reproduce`` on every remove with 2 worker processes, in a session
    of its own: some 10 s of moves on an idle machine (32), so that a signal or a
    kill a test sends once its header is out lands while they run (the credit ->
    credit moves alone, 2 s, could end before: a clean exit 0)."""
    args = ["-m", "xensched", "reproduce", "--no-progress", "--workers", "2"]
    args += ["--direction", "remove", "--json", str(out_file)]
    return CliProcess(args, tmp_path, new_session=True)
