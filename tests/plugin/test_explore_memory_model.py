"""``@pytest.mark.explore(memory_model=...)`` and ``--xensched-memory-model`` (pytester).

The inner test is store buffering (each thread stores one cell, then loads the
other): both loads seeing 0 is impossible under ``sc`` and what a store buffer shows
under ``tso``, so the test passes or fails by the model it runs under.
"""

from __future__ import annotations

import json

import pytest

from tests._schemas import validate
from xensched.explore.pytest_explore import replay_path
from xensched.explore.threads import World

SB_TESTS = """
    import pytest

    def sb(w, own=None):
        if own is not None:
            w.memory_model(own)
        x, y = w.cell("x", 0), w.cell("y", 0)
        r = {}

        def p0():
            x.store(1)
            r["r0"] = y.load()

        def p1():
            y.store(1)
            r["r1"] = x.load()

        w.thread("P0", p0)
        w.thread("P1", p1)

        def not_both_zero():
            assert (r["r0"], r["r1"]) != (0, 0)

        w.check(not_both_zero)

    @pytest.mark.explore(strategy="dpor")
    def test_plain(xensched_world):
        sb(xensched_world)

    @pytest.mark.explore(strategy="dpor", memory_model="tso")
    def test_tso(xensched_world):
        sb(xensched_world)

    @pytest.mark.explore(strategy="dpor", memory_model="tso")
    def test_own_sc(xensched_world):
        sb(xensched_world, own="sc")
"""


def test_the_marker_picks_the_model(project: pytest.Pytester) -> None:
    project.makepyfile(test_sb=SB_TESTS)
    result = project.runpytest("--xensched-seed=1")
    result.assert_outcomes(failed=1, passed=2)
    result.stdout.fnmatch_lines(["FAILED test_sb.py::test_tso*"])


def test_the_option_overrides_the_marker_not_the_body(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(test_sb=SB_TESTS)
    result = project.runpytest("--xensched-seed=1", "--xensched-memory-model=sc")
    result.assert_outcomes(passed=3)
    result = project.runpytest("--xensched-seed=1", "--xensched-memory-model=tso")
    result.assert_outcomes(failed=2, passed=1)  # test_own_sc keeps its own model
    result.stdout.fnmatch_lines(
        [
            "*pytest 'test_sb.py::test_plain' --xensched-replay * --xensched-memory-model tso"
        ]
    )
    path = replay_path(project.path / ".xensched" / "replays", "test_sb.py::test_plain")
    recorded = json.loads(path.read_text(encoding="utf-8"))
    validate("replay", recorded)
    assert recorded["options"]["memory_model"] == "tso"
    # The replay runs the recorded schedule under the same model, and fails as it did.
    again = project.runpytest(
        "test_sb.py::test_plain",
        "--xensched-replay",
        str(path),
        "--xensched-memory-model=tso",
    )
    again.assert_outcomes(failed=1)
    again.stdout.fnmatch_lines(["*assert in check*"])


def test_a_bad_model_is_refused(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.explore(memory_model="pso")
        def test_x(xensched_world):
            pass
        """
    )
    result = project.runpytest()
    assert result.ret != 0
    result.stdout.fnmatch_lines(
        ["*memory_model='pso': expected one of sc, tso, relaxed*"]
    )
    result = project.runpytest("--xensched-memory-model=pso")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--xensched-memory-model*invalid choice*'pso'*"])


@pytest.mark.parametrize("model", ["tso", "relaxed"])
def test_a_world_gives_its_model_to_the_host_and_bus_it_makes(model: str) -> None:
    w = World()
    w.use_memory_model(model)
    host = w.host(cpus=2)
    assert getattr(host.bus.memory, "name", None) == model
    assert host.memory_model == model
    bare = World()
    bare.use_memory_model(model)
    assert getattr(bare.bus.memory, "name", None) == model
    own = World()
    own.use_memory_model(model)
    assert own.host(cpus=2, memory_model="sc").bus.memory is None


def test_the_stress_marker_takes_a_model(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_stress_model="""
        import pytest

        @pytest.mark.stress(memory_model="relaxed", ops=200)
        def test_relaxed(xensched_stress):
            report = xensched_stress()
            assert report.config.memory_model == "relaxed"
            assert report.exit_code == 0
            assert "--memory-model relaxed" in report.rerun
        """,
        test_stress_bad="""
        import pytest

        @pytest.mark.stress(memory_model="pso")
        def test_bad(xensched_stress):
            xensched_stress()
        """,
    )
    result = project.runpytest("--xensched-seed=3", "test_stress_model.py")
    result.assert_outcomes(passed=1)
    result = project.runpytest("test_stress_bad.py")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*test_bad: @pytest.mark.stress: memory_model: unknown memory model 'pso'*"]
    )
