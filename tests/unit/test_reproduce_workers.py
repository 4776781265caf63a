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


# -- the pool's shut-down is bounded ---------------------------------------------------
#
# A worker process that does not end when the pool shuts down (it ignores SIGTERM, or
# a thread of its own keeps it alive) once kept ``pool.join()`` / ``pool.terminate()``
# waiting for it: no bound. Now the command gives the workers a grace period, kills
# (SIGKILL) those left, says so on stderr, and prints and writes its results.
#
# The moves are stand-ins (the script below swaps in reproduce_transition before the
# command starts; a spawned worker runs the script too, so it has the stand-in): what
# the workers do at the end is the point, not the moves.

#: A stand-in that lingers or sticks stays this long (a bound: the test kills the
#: process group whatever happens).
_LINGER = 120.0

_SCRIPT = f'''
import os
import signal
import threading
import time
from pathlib import Path

import xensched.reproduce
from xensched.reproduce import Result

MODE = os.environ["XENSCHED_TEST_MODE"]
MARKS = Path(os.environ["XENSCHED_TEST_MARKS"])


def stand_in(t, *args, **kwargs):
    """One move in a worker process (only workers run moves: --workers 2)."""
    slow = t.direction == "remove" if MODE == "stuck" else str(t.protocol) == "fixed"
    if MODE == "linger":
        # A thread that outlives the move keeps the process from ending when the
        # pool sends it its sentinel, and SIGTERM (Pool.terminate) is ignored.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        (MARKS / f"linger-{{os.getpid()}}").touch()
        threading.Thread(target=time.sleep, args=({_LINGER},)).start()
    elif MODE == "stuck" and slow:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        (MARKS / f"stuck-{{os.getpid()}}").touch()
        time.sleep({_LINGER})
    elif MODE == "idle":
        (MARKS / f"{{'slow' if slow else 'fast'}}-{{os.getpid()}}").touch()
        if slow:
            time.sleep({_LINGER})
        # The slow move taken by the other worker before this one is done: this
        # one then waits for work (the other may still be starting up).
        end = time.monotonic() + {_LINGER}
        while not any(MARKS.glob("slow-*")) and time.monotonic() < end:
            time.sleep(0.01)
    return Result(t, (), 1, 1)


xensched.reproduce.reproduce_transition = stand_in

if __name__ == "__main__":
    from xensched.cli import main

    raise SystemExit(main())
'''

#: The shut-down's bound: the grace the workers have, then the kill (seconds)...
_SHUT_DOWN = 15.0


def _stand_in_run(
    tmp_path: Path, mode: str, *args: str
) -> tuple[CliProcess, Path, Path]:
    script = tmp_path / "stand_in.py"
    script.write_text(_SCRIPT, encoding="utf-8")
    marks = tmp_path / "marks"
    marks.mkdir()
    out_file = tmp_path / "r.json"
    argv = [str(script), "reproduce", "--workers", "2", "--boot", "credit"]
    argv += ["--pool", "credit", *args, "--json", str(out_file)]
    env = {"XENSCHED_TEST_MODE": mode, "XENSCHED_TEST_MARKS": str(marks)}
    return CliProcess(argv, tmp_path, env, new_session=True), marks, out_file


def _marks(marks: Path, prefix: str, n: int, timeout: float = _PROMPT) -> list[int]:
    """The pids of the ``n`` workers that left a ``prefix-PID`` mark, once they have."""
    deadline = time.monotonic() + timeout
    while True:
        found = [int(f.name.split("-")[1]) for f in marks.glob(f"{prefix}-*")]
        if len(found) >= n:
            return found
        assert time.monotonic() < deadline, f"{len(found)} of {n} {prefix} marks"
        time.sleep(0.05)


def test_workers_that_do_not_end_at_the_close_are_killed(
    tmp_path: Path, spawn: list[CliProcess]
) -> None:
    p, marks, out_file = _stand_in_run(tmp_path, "linger", "--no-progress")
    spawn.append(p)
    t0 = time.monotonic()
    assert p.finish(timeout=_PROMPT + _SHUT_DOWN) == 0, p.err
    assert time.monotonic() - t0 < _PROMPT  # not the lingering thread's 120 s
    # Those that ran a move linger (one worker may have run all four, the other
    # still starting up).
    n = len(set(_marks(marks, "linger", 1)))
    assert (
        f"xensched reproduce: {n} worker process{'es' if n > 1 else ''} did not "
        "end within 2s of the pool's shut-down: killed (SIGKILL)"
    ) in p.err
    assert "Traceback" not in p.err
    assert "\n4 moves in " in p.out
    assert f"results written to {out_file}" in p.out
    data = json.loads(out_file.read_text(encoding="utf-8"))
    validate("reproduce", data)
    assert data["complete"] is True
    assert len(data["results"]) == 4
    p.assert_group_ends()


def test_workers_that_ignore_sigterm_are_killed_when_interrupted(
    tmp_path: Path, spawn: list[CliProcess]
) -> None:
    p, marks, out_file = _stand_in_run(tmp_path, "stuck", "--no-progress")
    spawn.append(p)
    _marks(marks, "stuck", 2)  # the two remove moves run, and will not end
    t0 = time.monotonic()
    p.signal(signal.SIGTERM)  # the command alone: Pool.terminate() signals them
    assert p.finish(timeout=_PROMPT + _SHUT_DOWN) == 128 + signal.SIGTERM, p.err
    assert time.monotonic() - t0 < _SHUT_DOWN
    assert "SIGTERM received: interrupted after 2 of 4 moves" in p.err
    assert "xensched reproduce: 2 worker processes did not end" in p.err
    assert "Traceback" not in p.err
    assert "\n2 moves in " in p.out
    data = json.loads(out_file.read_text(encoding="utf-8"))
    validate("reproduce", data)
    assert data["complete"] is False
    assert len(data["results"]) == 2
    p.assert_group_ends()


def test_an_idle_worker_killed_does_not_hang_the_shut_down(
    tmp_path: Path, spawn: list[CliProcess]
) -> None:
    # An idle worker waits for its next move holding the lock of the pool's task
    # queue; killed there (kill -9), it never lets go, and Pool.terminate() waits
    # for that lock forever: the pool's shut-down cannot complete. The command
    # still ends: the workers left are killed, and it says so.
    p, marks, out_file = _stand_in_run(
        tmp_path, "idle", "--direction", "add", "--no-progress"
    )
    spawn.append(p)
    (fast,) = _marks(marks, "fast", 1)
    _marks(marks, "slow", 1)
    time.sleep(0.5)  # the fast move's worker back waiting for work
    t0 = time.monotonic()
    psutil.Process(fast).send_signal(signal.SIGKILL)
    assert p.finish(timeout=_PROMPT + _SHUT_DOWN) == 2, p.err
    assert time.monotonic() - t0 < _SHUT_DOWN
    assert "a worker process ended (killed by SIGKILL) after 1 of 2 moves" in p.err
    assert "Traceback" not in p.err
    assert "\n1 moves in " in p.out
    data = json.loads(out_file.read_text(encoding="utf-8"))
    validate("reproduce", data)
    assert data["complete"] is False
    assert len(data["results"]) == 1
    p.assert_group_ends()
