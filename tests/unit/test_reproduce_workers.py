"""``xensched reproduce --workers N`` when a worker process dies (kill -9, the OOM
killer): a ``multiprocessing.Pool`` replaces the worker but loses its move, and the
command once waited for that move forever. Now the wait ends with one error line,
exit status 2, the moves done so far printed and written (``"complete": false``).
"""

from __future__ import annotations

import json
import signal
import sys
import time
from typing import TYPE_CHECKING

import psutil
import pytest

from tests._cli_process import CliProcess, reproduce_every_remove
from tests._schemas import validate

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

#: The command ends within this after the kill (a bound, not a measure); the run
#: it cuts short, every remove on 2 workers, takes some 10 s.
_PROMPT = 30.0


@pytest.fixture
def spawn() -> Iterator[list[CliProcess]]:
    procs: list[CliProcess] = []
    yield procs
    for p in procs:
        p.kill()


def _pool_workers(pid: int, n: int, timeout: float) -> list[psutil.Process]:
    """The ``n`` spawned pool workers of process ``pid`` (not its resource tracker),
    once they are all up; fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = []
        for child in psutil.Process(pid).children():
            try:
                cmdline = " ".join(child.cmdline())
            except psutil.NoSuchProcess:
                continue
            if "spawn_main" in cmdline:
                found.append(child)
        if len(found) >= n:
            return found
        assert time.monotonic() < deadline, f"{len(found)} of {n} workers up"
        time.sleep(0.05)


def test_a_worker_killed_ends_reproduce_with_an_error_and_the_moves_done(
    tmp_path: Path, spawn: list[CliProcess]
) -> None:
    out_file = tmp_path / "r.json"
    p = reproduce_every_remove(tmp_path, out_file)
    spawn.append(p)
    p.wait_for(r"reproduce: (\d+) moves")
    total = 16 * 2  # every boot x pool scheduler, under legacy and fixed
    assert f"reproduce: {total} moves" in p.out
    victim = _pool_workers(p.proc.pid, 2, timeout=_PROMPT)[0]
    time.sleep(1.5)  # the workers started, and running their first moves
    t0 = time.monotonic()
    victim.send_signal(signal.SIGKILL)
    assert p.finish(timeout=2 * _PROMPT) == 2, p.err
    assert time.monotonic() - t0 < _PROMPT  # not forever (the bug), nor the run
    assert "xensched reproduce: error: a worker process ended (killed by SIGKILL)" in (
        p.err
    )
    assert "Traceback" not in p.err
    assert f"results written to {out_file}" in p.out
    data = json.loads(out_file.read_text(encoding="utf-8"))
    validate("reproduce", data)
    assert data["complete"] is False
    assert len(data["results"]) < total
    assert f"\n{len(data['results'])} moves in " in p.out
    p.assert_group_ends()
