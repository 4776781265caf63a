"""``@pytest.mark.explore``: failing explorations, replay files, shards (pytester).

The inner tests are two threads incrementing a cell, without a lock (a lost update
that DPOR finds in its second execution) and with one (DPOR's two executions, both
fine). Everything runs in process but the xdist run, which starts workers.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import cast

import pytest

from tests._cli_process import CliProcess
from tests._outputs import no_space
from tests.plugin.helpers import inner_ini
from xensched.drivers.workers import one_cpu
from xensched.explore.pytest_explore import (
    _pinned_cpu,
    base_nodeid,
    replay_command,
    replay_path,
)
from xensched.explore.replay import load_replay

COUNTER_TESTS = """
    import pytest

    def counter(w, locked, check=True):
        x = w.cell("x", 0)
        lock = w.lock("lock")

        def incr():
            if locked:
                lock.acquire()
            x.store(x.load() + 1)
            if locked:
                lock.release()

        w.thread("t0", incr)
        w.thread("t1", incr)
        if check:
            def both_counted():
                assert x.peek() == 2
            w.check(both_counted)

    @pytest.mark.explore(strategy="dpor")
    def test_lost(xensched_world):
        counter(xensched_world, locked=False)

    @pytest.mark.explore(strategy="dpor")
    def test_locked(xensched_world):
        counter(xensched_world, locked=True)

    @pytest.mark.explore(strategy="dpor")
    def test_unchecked(xensched_world):
        counter(xensched_world, locked=False, check=False)
"""

LOST = "test_counter.py::test_lost"


def summary(result: pytest.RunResult) -> dict[str, str]:
    """``{test: figures}`` from the ``xensched explore`` summary lines."""
    found = re.findall(
        r"^(\S+::\S+): ((?:dpor|random), .*)$", result.stdout.str(), re.MULTILINE
    )
    return dict(found)


def test_lost_update_fails_with_its_schedule_and_replay(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(test_counter=COUNTER_TESTS)
    result = project.runpytest("--xensched-seed=1", "--junitxml=out.xml")
    result.assert_outcomes(failed=1, passed=2)
    path = replay_path(project.path / ".xensched" / "replays", LOST)
    rel = path.relative_to(project.path)
    result.stdout.fnmatch_lines(
        [
            "assert in check: assert 1 == 2",
            "dpor exploration (seed *): 2 runs (2 distinct), not exhaustive, "
            "stopped: violation found",
            "failing schedule (6 steps):",
            "    0 t0 start",
            "    1 t0 load x",
            "    2 t1 start",
            "    3 t1 load x",
            "    4 t1 store x",
            "    5 t0 store x  <- assert",
            f"replay file: {rel}",
            "re-run this schedule with:",
            f"  pytest '{LOST}' --xensched-replay {rel}",
            "re-run the exploration with:",
            f"  pytest '{LOST}' --xensched-seed=1",
        ]
    )
    # The merged summary: the lock makes the program correct, DPOR proves it.
    assert summary(result) == {
        LOST: "dpor, 2 runs, not exhaustive, violations: assert",
        "test_counter.py::test_locked": "dpor, 2 runs, exhaustive, violations: none",
        "test_counter.py::test_unchecked": "dpor, 4 runs, exhaustive, violations: none",
    }
    replay = load_replay(str(path))
    assert replay.nodeid == LOST
    assert replay.strategy == "dpor"
    assert replay.schedule == ("t0", "t0", "t1", "t1", "t1", "t0")
    assert replay.violation is not None
    assert replay.violation.kind == "assert"
    assert replay.violation.step == 5
    props = {
        p.get("name"): p.get("value")
        for p in ET.parse(project.path / "out.xml").iter("property")
    }
    assert props["xensched_replay"] == str(rel)

    # The printed command runs that one schedule again, and fails the same way.
    result = project.runpytest(LOST, "--xensched-replay", str(rel))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "assert in check: assert 1 == 2",
            f"replay of {rel}: 1 runs (1 distinct), not exhaustive, *",
            "    5 t0 store x  <- assert",
        ]
    )
    result.stdout.no_fnmatch_line("xensched explore*")  # a replay is no exploration

    # A test that changed since: the replay says where it no longer follows.
    project.makepyfile(
        test_counter=COUNTER_TESTS.replace(
            "x.store(x.load() + 1)", "x.load()\n            x.store(x.load() + 1)"
        )
    )
    result = project.runpytest(LOST, "--xensched-replay", str(rel))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "the replay diverged at step 4: t1 was to store x, but now it is to load x",
            "*(the replay of dpor, seed *: the test or the code it runs changed*",
        ]
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "not JSON (line 1: *"),
        ('{"format": "xensched-replay", "version": 9}', "replay.version: 9 *"),
        (
            '{"format": "xensched-replay", "version": 1, "seed": 0, "strategy": "d",'
            ' "schedule": [], "accesses": []}',
            "replay: needs a scenario or a nodeid",
        ),
    ],
)
def test_malformed_replay_is_usage_error(
    project: pytest.Pytester, content: str, message: str
) -> None:
    project.makepyfile(test_counter=COUNTER_TESTS)
    project.path.joinpath("bad.json").write_text(content)
    result = project.runpytest("--xensched-replay", "bad.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: --xensched-replay: bad.json: {message}"])


@pytest.mark.parametrize(
    ("directory", "message"),
    [
        ("f", "--xensched-replay-dir f: not a directory"),
        ("f/sub", "--xensched-replay-dir f/sub: directory */f: not a directory"),
    ],
)
def test_a_replay_dir_that_cannot_be_written_is_usage_error(
    project: pytest.Pytester, directory: str, message: str
) -> None:
    project.makepyfile(test_counter=COUNTER_TESTS)
    project.path.joinpath("f").write_text("a file")
    result = project.runpytest("--xensched-replay-dir", directory)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    result.stdout.no_fnmatch_line("*test_lost*")


def test_a_replay_file_not_written_leaves_the_violation_as_the_failure(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.makepyfile(test_counter=COUNTER_TESTS)
    monkeypatch.setattr(os, "replace", no_space(os.replace))
    result = project.runpytest("--xensched-seed=1", "-k", "lost")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "assert in check: *",
            "replay file not written: No space left on device",
        ]
    )
    result.stdout.no_fnmatch_line("*OSError*")
    result.stdout.no_fnmatch_line("*re-run this schedule with*")
    assert not list(project.path.joinpath(".xensched", "replays").glob(".*.tmp"))


@pytest.mark.skipif(sys.platform != "linux", reason="names an fd by /proc")
def test_a_replay_file_is_synced_before_it_replaces_the_old_one(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Written through a temporary file but not synced: a crash after the rename
    # could leave an empty replay file where the old one was.
    project.makepyfile(test_counter=COUNTER_TESTS)
    synced: list[str] = []
    fsync = os.fsync

    def noting_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", noting_fsync)
    result = project.runpytest("--xensched-seed=1", "-k", "lost")
    result.assert_outcomes(failed=1)
    name = replay_path(Path(), LOST).name
    assert any(os.path.basename(p).startswith(f".{name}.") for p in synced), synced


@pytest.mark.parametrize("value", ["0", "x", "1025", "3000000"])
def test_shards_out_of_range_is_usage_error(
    project: pytest.Pytester, value: str
) -> None:
    project.makepyfile(test_counter=COUNTER_TESTS)
    result = project.runpytest("--xensched-shards", value, "--co")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"ERROR: --xensched-shards: '{value}' is not an int in [[]1, 1024[]]"]
    )


def test_replay_of_unknown_test_is_usage_error(project: pytest.Pytester) -> None:
    project.makepyfile(test_counter=COUNTER_TESTS)
    result = project.runpytest("--xensched-seed=1", "-k", "lost")
    result.assert_outcomes(failed=1)
    project.makepyfile(test_counter=COUNTER_TESTS.replace("test_lost", "test_gone"))
    rel = replay_path(Path(".xensched/replays"), LOST)
    result = project.runpytest("--xensched-replay", str(rel))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            f"ERROR: --xensched-replay: no collected test has the replay's node id '{LOST}'*"
        ]
    )


def test_thread_assertion_is_a_crash(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import pytest

        @pytest.mark.explore(strategy="dfs", max_preemptions=1, runs=50)
        def test_flag(xensched_world):
            w = xensched_world
            flag = w.cell("flag", 0)
            w.thread("setter", lambda: flag.store(1))

            def reader():
                assert flag.load() == 0, "saw the flag"

            w.thread("reader", reader)
        """
    )
    result = project.runpytest("--xensched-replay-dir", "out")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "crash in reader: AssertionError: saw the flag*",
            "dfs exploration (seed *): * runs (* distinct), not exhaustive, *",
            "*<- crash",
            "replay file: out/test_thread_assertion_is_a_crash.py_test_flag.json",
        ]
    )


def test_thread_calling_pytest_fail_is_a_crash(project: pytest.Pytester) -> None:
    # pytest.fail() raises a BaseException: it was dropped, and the test passed.
    project.makepyfile(
        """
        import pytest

        @pytest.mark.explore(strategy="dpor")
        def test_fails_in_a_thread(xensched_world):
            w = xensched_world
            x = w.cell("x", 0)
            w.thread("t0", lambda: x.store(1))

            def gives_up():
                x.store(2)
                pytest.fail("gave up")

            w.thread("t1", gives_up)
        """
    )
    result = project.runpytest("--xensched-replay-dir", "out")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["crash in t1: Failed: gave up"])


LONG_THEN_NEXT = """
    import pytest

    started = False

    @pytest.mark.explore(strategy="random", runs=None, seconds=30)
    def test_long(xensched_world):
        global started
        if not started:
            started = True
            print("exploring", flush=True)
        x = xensched_world.cell("x", 0)
        xensched_world.thread("t0", lambda: x.store(1))
        xensched_world.thread("t1", lambda: x.store(2))

    def test_next():
        print("the next test ran", flush=True)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_in_an_exploration_stops_the_session(project: pytest.Pytester) -> None:
    # The explorer turns Ctrl-C into an interrupted result: the test passed with it,
    # and the session went on to the next test.
    project.makepyfile(test_long=LONG_THEN_NEXT)
    p = CliProcess(["-m", "pytest", "-s", "-p", "no:xdist"], project.path)
    try:
        p.wait_for(r"exploring", timeout=60)
        time.sleep(0.3)  # into the runs
        p.signal(signal.SIGINT)
        assert p.finish(timeout=30) == pytest.ExitCode.INTERRUPTED, p.out + p.err
    finally:
        p.kill()
    assert "KeyboardInterrupt" in p.out
    assert "the next test ran" not in p.out
    assert "passed" not in p.out


def test_ctrl_c_in_a_replay_stops_the_session(project: pytest.Pytester) -> None:
    # A thread raising KeyboardInterrupt is how Ctrl-C reaches the replay here (a
    # signal would have to land within its one short execution).
    project.makepyfile(
        test_lost="""
        import os
        import pytest

        @pytest.mark.explore(strategy="dpor")
        def test_lost(xensched_world):
            w = xensched_world
            x = w.cell("x", 0)

            def incr():
                x.store(x.load() + 1)

            def incr_then_interrupt():
                incr()
                if os.path.exists("interrupt"):
                    raise KeyboardInterrupt

            w.thread("t0", incr)
            w.thread("t1", incr_then_interrupt)

            def both_counted():
                assert x.peek() == 2

            w.check(both_counted)
        """
    )
    project.runpytest("--xensched-replay-dir", "out").assert_outcomes(failed=1)
    (project.path / "interrupt").touch()
    replay = replay_path(Path("out"), "test_lost.py::test_lost")
    result = project.runpytest(
        "test_lost.py::test_lost",
        "--xensched-replay",
        str(replay),
        no_reraise_ctrlc=True,
    )
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.assert_outcomes()


def test_misuse_is_a_collection_error(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import pytest

        @pytest.mark.explore
        def test_no_world():
            pass

        def test_no_mark(xensched_world):
            pass

        @pytest.mark.explore(strategy="bfs")
        def test_bad_strategy(xensched_world):
            pass

        @pytest.mark.explore(runs=0, colour="red")
        def test_bad_field(xensched_world):
            pass

        @pytest.mark.explore(strategy="random", runs=None)
        def test_endless(xensched_world):
            pass

        @pytest.mark.explore(strategy="dfs", depth=2)
        def test_depth_of_dfs(xensched_world):
            pass

        @pytest.mark.explore(strategy="random", runs=9, shards=3000000)
        def test_countless_shards(xensched_world):
            pass
        """
    )
    result = project.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*::test_no_world: @pytest.mark.explore needs a test that takes the "
            "xensched_world fixture*",
            "*::test_no_mark: the xensched_world fixture is for tests marked "
            "@pytest.mark.explore",
            "*::test_bad_strategy: @pytest.mark.explore: no strategy 'bfs'; *",
            "*::test_bad_field: @pytest.mark.explore: *unexpected keyword argument "
            "'colour'",
            "*::test_endless: @pytest.mark.explore: runs=None: the random strategy "
            "never runs out; give seconds=",
            "*::test_depth_of_dfs: @pytest.mark.explore: depth=2: the bug depth of "
            "strategy='pct', not of strategy='dfs'",
            "*::test_countless_shards: @pytest.mark.explore: shards=3000000: "
            "expected an int <= 1024",
        ]
    )


def test_shards_add_up_to_the_whole_exploration(project: pytest.Pytester) -> None:
    project.makepyfile(test_counter=COUNTER_TESTS)
    result = project.runpytest("-v", "--xensched-shards", "2", "-k", "not lost")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        [
            "test_counter.py::test_locked[[]shard0/2[]] PASSED*",
            "test_counter.py::test_locked[[]shard1/2[]] PASSED*",
        ],
        consecutive=False,
    )
    # DPOR's 2 and 4 executions (see the first test), shared without overlap.
    assert summary(result) == {
        "test_counter.py::test_locked": "dpor, 2 runs over 2 shards, exhaustive, "
        "violations: none",
        "test_counter.py::test_unchecked": "dpor, 4 runs over 2 shards, exhaustive, "
        "violations: none",
    }
    # The random walk's 7 runs are shared out: 4 and 3.
    project.makepyfile(
        test_random="""
        import pytest
        from test_counter import counter

        @pytest.mark.explore(strategy="random", runs=7, shards=2)
        def test_walk(xensched_world):
            counter(xensched_world, locked=True)
        """
    )
    result = project.runpytest("test_random.py")
    result.assert_outcomes(passed=2)
    assert summary(result) == {
        "test_random.py::test_walk": "random, 7 runs over 2 shards, not exhaustive, "
        "violations: none",
    }
    # One shard alone is not the whole exploration.
    result = project.runpytest(
        "test_counter.py::test_unchecked[shard1/2]", "--xensched-shards=2"
    )
    assert summary(result) == {
        "test_counter.py::test_unchecked": "dpor, 3 runs over 1 of 2 shards, "
        "not exhaustive, violations: none",
    }


@pytest.mark.slow  # starts two xdist workers: 1.5 s to 5 s
def test_marker_shards_under_xdist(project: pytest.Pytester) -> None:
    project.makeini(inner_ini(""))
    project.makepyfile(
        test_counter=COUNTER_TESTS.replace(
            '@pytest.mark.explore(strategy="dpor")\n    def test_unchecked',
            '@pytest.mark.explore(strategy="dpor", shards=2)\n    def test_unchecked',
        )
    )
    result = project.runpytest("-n", "2", "-k", "unchecked")
    result.assert_outcomes(passed=2)
    assert summary(result) == {
        "test_counter.py::test_unchecked": "dpor, 4 runs over 2 shards, exhaustive, "
        "violations: none",
    }


def test_base_nodeid() -> None:
    assert base_nodeid("t.py::test_x[shard1/2]") == "t.py::test_x"
    assert base_nodeid("t.py::test_x[a-shard0/3]") == "t.py::test_x[a]"
    assert base_nodeid("t.py::test_x[shard0/3-b]") == "t.py::test_x[b]"
    assert base_nodeid("t.py::test_x[a-shard0/3-b]") == "t.py::test_x[a-b]"
    assert base_nodeid("t.py::test_shard1/2") == "t.py::test_shard1/2"


def test_replay_command_quotes_the_path_for_the_shell() -> None:
    # A replay dir with a space split the path into two arguments.
    cmd = replay_command("t.py::test_a[x y]", "my replays/t.json", 2, "tso")
    assert shlex.split(cmd) == [
        *("pytest", "t.py::test_a[x y]", "--xensched-replay", "my replays/t.json"),
        *("--xensched-shards", "2", "--xensched-memory-model", "tso"),
    ]


def test_world_check_runs_after_a_clean_end_only() -> None:
    from xensched.explore import Explorer, make_strategy
    from xensched.explore.threads import ThreadsTarget, World

    checked: list[int] = []

    def setup(w: World, crash: bool) -> None:
        x = w.cell("x", 0)

        def body() -> None:
            x.store(1)
            if crash:
                raise ValueError("boom")

        w.thread("t0", body)
        w.check(lambda: checked.append(x.peek()))
        w.check(lambda: int("x"))

    res = Explorer(
        ThreadsTarget(lambda w: setup(w, False)), make_strategy("dpor")
    ).explore()
    assert checked == [1]  # one execution, every check run on its end state
    assert res.failing is not None
    assert [(v.kind.value, v.where) for v in res.failing.violations] == [
        ("crash", "check")
    ]
    assert res.failing.violations[0].message.startswith("ValueError: invalid literal")
    res = Explorer(
        ThreadsTarget(lambda w: setup(w, True)), make_strategy("dpor")
    ).explore()
    assert checked == [1]  # the crash fails the execution; no check after it
    assert res.failing is not None
    assert [(v.kind.value, v.where) for v in res.failing.violations] == [
        ("crash", "t0")
    ]


PINNED_TEST = """
    import os

    import pytest

    @pytest.mark.explore(strategy="dpor")
    def test_cpus(xensched_world):
        w = xensched_world
        x = w.cell("x", 0)

        def note():
            x.store(len(os.sched_getaffinity(0)))

        w.thread("t0", note)
        w.thread("t1", note)

        def on_one_cpu():
            assert x.peek() == 1, f"on {x.peek()} CPUs"

        w.check(on_one_cpu)
"""


@pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs two CPUs to pin to one",
)
def test_pin_runs_the_explored_threads_on_one_cpu(project: pytest.Pytester) -> None:
    project.makepyfile(test_pin=PINNED_TEST)
    project.runpytest("--xensched-pin").assert_outcomes(passed=1)
    unpinned = project.runpytest()
    unpinned.assert_outcomes(failed=1)
    unpinned.stdout.fnmatch_lines(["*assert in check: on * CPUs*"])


class _Config:
    def __init__(self, pin: bool) -> None:
        self.pin = pin

    def getoption(self, name: str) -> bool:
        assert name == "xensched_pin"
        return self.pin


@pytest.mark.parametrize(
    ("worker", "k"), [(None, 0), ("gw0", 0), ("gw1", 1), ("gw5", 5), ("master", 0)]
)
def test_each_xdist_worker_pins_to_its_own_cpu(
    monkeypatch: pytest.MonkeyPatch, worker: str | None, k: int
) -> None:
    if worker is None:
        monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    else:
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
    config = cast("pytest.Config", _Config(pin=True))
    assert _pinned_cpu(config) == one_cpu(k)
    assert _pinned_cpu(cast("pytest.Config", _Config(pin=False))) is None
