"""The ``stress`` marker and the ``xensched_stress`` fixture (pytester).

Tests that only build configs run in process; tests that start stress threads, xdist
workers or pytest-timeout's timer run in a subprocess.
"""

from __future__ import annotations

import json
import zlib

import pytest

from tests.plugin.helpers import header_seed, inner_ini
from xensched_stress.config import StressConfig, rerun_command

CONFIG_TESTS = """
    import pytest
    from xensched_stress.config import PoolSpec, StressConfig

    pytestmark = pytest.mark.stress(boot="credit2", cpus=8)

    def test_defaults(xensched_stress, xensched_seed):
        assert xensched_stress.config() == StressConfig(
            seed=xensched_seed, duration=2.0 * SCALE, boot="credit2", cpus=8
        )

    @pytest.mark.stress(duration=2.0, cpus=2, pool="p1:credit:1")
    def test_marked(xensched_stress, xensched_seed):
        cfg = xensched_stress.config()
        assert cfg.duration == 2.0 * SCALE
        assert (cfg.cpus, cfg.boot, cfg.protocol) == (2, "credit2", "fixed")
        assert cfg.pools == (PoolSpec("p1", "credit", (1,)),)
        assert cfg.seed == xensched_seed == xensched_stress.seed
        over = xensched_stress.config(cpus=4, duration=1.0, protocol="legacy", seed=7)
        assert (over.cpus, over.duration, over.protocol, over.seed) == (
            4, 1.0 * SCALE, "legacy", 7
        )
        assert xensched_stress.config(ops=1000).ops == round(1000 * SCALE)
        assert xensched_stress.runs == ()

    @pytest.mark.stress(cpus=3)
    class TestClass:
        @pytest.mark.stress(duration=0.5)
        def test_closest_wins(self, xensched_stress):
            cfg = xensched_stress.config()
            assert (cfg.boot, cfg.cpus, cfg.duration) == ("credit2", 3, 0.5 * SCALE)
"""


def test_fixture_builds_config(project: pytest.Pytester) -> None:
    project.makepyfile(CONFIG_TESTS.replace("SCALE", "1.0"))
    project.runpytest("--xensched-seed=1").assert_outcomes(passed=3)


def test_stress_duration_scales_config(project: pytest.Pytester) -> None:
    project.makepyfile(CONFIG_TESTS.replace("SCALE", "0.25"))
    project.runpytest("--stress-duration=0.25").assert_outcomes(passed=3)


def test_stress_duration_ini(project: pytest.Pytester) -> None:
    project.makeini(inner_ini("xensched_stress_duration = 4\n"))
    project.makepyfile(CONFIG_TESTS.replace("SCALE", "4.0"))
    project.runpytest().assert_outcomes(passed=3)
    # The option wins over the ini.
    project.makepyfile(CONFIG_TESTS.replace("SCALE", "0.5"))
    project.runpytest("--stress-duration=0.5").assert_outcomes(passed=3)


def test_bad_marks_stop_the_session_at_collection(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import pytest

        @pytest.mark.stress(colour="red")
        def test_unknown_field(xensched_stress):
            xensched_stress.config()

        @pytest.mark.stress(1.0)
        def test_positional(xensched_stress):
            pass

        @pytest.mark.stress(cpus=1)
        def test_invalid(xensched_stress):
            xensched_stress()
        """
    )
    result = project.runpytest("--xensched-seed=1")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        [
            "*::test_unknown_field: @pytest.mark.stress: stress config: unknown "
            "field(s) colour; choose from pool, *",
            "*::test_positional: @pytest.mark.stress: @pytest.mark.stress takes "
            "keyword arguments only, got (1.0,)",
            "*::test_invalid: @pytest.mark.stress: cpus=1: a stress run needs 2 to "
            "256 pCPUs*",
        ]
    )


RUN_TESTS = """
    import pytest
    from xensched.pytest_plugin import assert_no_violations

    @pytest.mark.stress(duration=0.3, cpus=2)
    def test_fixed(xensched_stress, xensched_seed):
        report = xensched_stress()
        assert_no_violations(report)
        assert report.seed == xensched_seed
        assert report.exit_code == 0
        assert report.schedule_counts[0] > 0
        assert [run.report for run in xensched_stress.runs] == [report]

    @pytest.mark.timeout(60)
    @pytest.mark.stress(duration=0.3, cpus=4, boot="credit2", pool="p1:credit:2,3")
    def test_under_timeout(xensched_stress):
        assert_no_violations(xensched_stress())

    @pytest.mark.stress(duration=5.0, cpus=4, protocol="legacy", delay_injection=0.3)
    def test_legacy_breaks(xensched_stress):
        # Before Xen commit 94734ab7c3, a Credit<->Credit2 move breaks; with delays
        # injected, in some 0.03 s. The run stops at the first violation.
        assert_no_violations(xensched_stress())
"""


def test_real_stress_runs(project: pytest.Pytester) -> None:
    project.makeini(inner_ini("timeout = 30\ntimeout_method = thread\n"))
    project.makepyfile(test_runs=RUN_TESTS)
    result = project.runpytest_subprocess("--xensched-seed=42", "-v")
    result.assert_outcomes(passed=2, failed=1)
    nodeid = "test_runs.py::test_legacy_breaks"
    seed = 42 ^ zlib.crc32(nodeid.encode())
    cfg = StressConfig(
        duration=5.0, cpus=4, protocol="legacy", delay_injection=0.3, seed=seed
    )
    result.stdout.fnmatch_lines(
        [
            "xensched: base seed 42",
            "timeout: 30.0s",
            "timeout method: thread",
            "test_runs.py::test_fixed PASSED*",
            "test_runs.py::test_under_timeout PASSED*",
            "test_runs.py::test_legacy_breaks FAILED*",
            ">       assert_no_violations(xensched_stress())",
            f"E *AssertionError: stress run (seed {seed}) failed:",
            "*- xensched -*",
            f"per-test seed {seed} (base seed 42 ^ crc32 of the node id)",
            "rerun with:",
            f"  pytest '{nodeid}' --xensched-seed=42",
            f"  {rerun_command(cfg)}",
            # Stopping takes a moment: another pCPU may record one more meanwhile.
            "stress run 1 of 1: exit code 1, * violation*",
            "  * on cpu* in *(): *",
        ]
    )
    # __tracebackhide__: the helper's own frame is not shown.
    result.stdout.no_fnmatch_line("*raise AssertionError(*")


RECORD_CONFTEST = """
    import json, os, pathlib, zlib
    import pytest

    @pytest.fixture(autouse=True)
    def _record(request, xensched_seed):
        out = pathlib.Path(os.environ["SEEDS_OUT"])
        out.mkdir(exist_ok=True)
        name = f"{zlib.crc32(request.node.nodeid.encode())}.json"
        (out / name).write_text(json.dumps([request.node.nodeid, xensched_seed]))
"""

XDIST_TESTS = """
    import pytest

    @pytest.mark.parametrize("n", range(6))
    def test_p(n):
        pass

    class TestC:
        def test_m(self):
            pass

    def test_fails(xensched_stress):
        assert xensched_stress.seed < 0
"""


def recorded(project: pytest.Pytester, name: str) -> dict[str, int]:
    seeds = {}
    for path in (project.path / name).iterdir():
        nodeid, seed = json.loads(path.read_text())
        seeds[nodeid] = seed
    return seeds


def test_xdist_seeds_match_a_plain_run(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.makeconftest(RECORD_CONFTEST)
    project.makepyfile(test_x=XDIST_TESTS)

    monkeypatch.setenv("SEEDS_OUT", str(project.path / "plain"))
    project.runpytest("--xensched-seed=4321").assert_outcomes(passed=7, failed=1)
    plain = recorded(project, "plain")
    assert len(plain) == 8
    assert all(s == 4321 ^ zlib.crc32(k.encode()) for k, s in plain.items())

    monkeypatch.setenv("SEEDS_OUT", str(project.path / "xdist"))
    result = project.runpytest_subprocess("-n", "2", "--xensched-seed=4321")
    result.assert_outcomes(passed=7, failed=1)
    assert recorded(project, "xdist") == plain
    # The failure section comes back from the worker.
    seed = plain["test_x.py::test_fails"]
    result.stdout.fnmatch_lines(
        [
            "*- xensched -*",
            f"per-test seed {seed} (base seed 4321 ^ crc32 of the node id)",
            "rerun with:",
            "  pytest 'test_x.py::test_fails' --xensched-seed=4321",
        ]
    )


def test_xdist_workers_share_a_fresh_seed(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.makeconftest(RECORD_CONFTEST)
    project.makepyfile(test_x=XDIST_TESTS)
    monkeypatch.setenv("SEEDS_OUT", str(project.path / "fresh"))
    result = project.runpytest_subprocess("-n", "2")
    result.assert_outcomes(passed=7, failed=1)
    base = header_seed(result)
    seeds = recorded(project, "fresh")
    assert len(seeds) == 8
    assert all(s == base ^ zlib.crc32(k.encode()) for k, s in seeds.items())
    result.stdout.fnmatch_lines(
        [f"  pytest 'test_x.py::test_fails' --xensched-seed={base}"]
    )


def test_interrupted_run_stops_the_session(project: pytest.Pytester) -> None:
    # Ctrl-C during a run: the engine returns a partial report, the plugin re-raises
    # KeyboardInterrupt so that pytest stops as it would anywhere else.
    project.makeconftest(
        """
        import pytest
        import xensched_stress.runner
        from xensched_stress.report import StopReason, StressReport

        def interrupted_run(cfg, **kwargs):
            return StressReport(
                seed=cfg.seed, config=cfg, violations=(), deadlock=None,
                interrupted=True, stop_reason=StopReason.INTERRUPTED, elapsed=0.1,
                schedule_counts=(0,) * cfg.cpus, lock_stats=(), switches=0,
                domain_moves=0,
            )

        @pytest.fixture(autouse=True)
        def _ctrl_c(monkeypatch):
            monkeypatch.setattr(xensched_stress.runner, "run_stress", interrupted_run)
        """
    )
    project.makepyfile(
        """
        def test_a(xensched_stress):
            xensched_stress()

        def test_b():
            pass
        """
    )
    # no_reraise_ctrlc: pytester would otherwise pass the interrupt on to this session.
    result = project.runpytest(no_reraise_ctrlc=True)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*KeyboardInterrupt*", "*no tests ran*"])
