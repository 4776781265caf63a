"""pytest-timeout and the stress plugin (pytester).

Whichever method pytest-timeout uses, a stress test that runs out of time keeps its
``xensched`` section (seed, rerun commands, what the runs found) in the output and in
the JUnit XML; a run ends before the deadline; a duration that cannot fit is warned
about at collection. Runs that start threads or a timer go through a subprocess:
pytest-timeout's thread method ends the process with ``os._exit(1)``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
import zlib

import pytest

from tests.plugin.helpers import inner_ini
from xensched_stress.config import StressConfig, rerun_command

WARNING = "xensched_stress.pytest_plugin.XenschedTimeoutWarning"

# A short run, then more work than the timeout allows: only pytest-timeout ends it.
OVERRUN_TESTS = """
    import time

    import pytest

    from xensched.pytest_plugin import assert_no_violations

    @pytest.mark.stress(duration=0.3, cpus=2)
    def test_overrun(xensched_stress):
        assert_no_violations(xensched_stress())
        time.sleep(60)
"""
OVERRUN_ID = "test_overrun.py::test_overrun"


def section_lines(nodeid: str, base: int, duration: float) -> list[str]:
    """The lines of the xensched section of a test with one short fixed run."""
    seed = base ^ zlib.crc32(nodeid.encode())
    cfg = StressConfig(duration=duration, cpus=2, seed=seed)
    return [
        f"per-test seed {seed} (base seed {base} ^ crc32 of the node id)",
        "rerun with:",
        f"  pytest '{nodeid}' --xensched-seed={base}",
        f"  {rerun_command(cfg)}",
        "stress run 1 of 1: exit code 0, 0 violations",
    ]


def junit_properties(path: str) -> dict[str, dict[str, str]]:
    """Each test case's properties (name -> value) in a JUnit XML file, by name."""
    cases: dict[str, dict[str, str]] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        props = {p.get("name", ""): p.get("value", "") for p in case.iter("property")}
        cases.setdefault(case.get("name", ""), {}).update(props)
    return cases


# -- collection warning ---------------------------------------------------------------
FIT_TESTS = """
    import pytest

    @pytest.mark.stress(duration=10.0)
    def test_too_long(xensched_stress):
        pass

    @pytest.mark.stress(duration=1.0)
    def test_fits(xensched_stress):
        pass

    @pytest.mark.timeout(60)
    @pytest.mark.stress(duration=10.0)
    def test_own_timeout(xensched_stress):
        pass

    @pytest.mark.stress(duration=10.0, ops=100)
    def test_ops_bounded(xensched_stress):
        pass

    @pytest.mark.stress(duration=10.0)
    def test_no_fixture():
        pass
"""


def test_warns_at_collection_when_a_duration_cannot_fit(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.makepyfile(test_fit=FIT_TESTS)
    result = project.runpytest(
        "--collect-only", "-q", "--timeout=5", f"-W default::{WARNING}"
    )
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*XenschedTimeoutWarning: stress duration 10 s (marker 10 s x "
            "--stress-duration 1) does not fit in pytest-timeout's 5 s less a 0.5 s "
            "margin: the run will be stopped after at most 4.5 s",
        ]
    )
    # One warning: the others fit, have their own timeout, count ops, or run nothing.
    assert result.stdout.str().count("XenschedTimeoutWarning") == 1
    # The duration factor counts; so does the ini.
    scaled = project.runpytest(
        "--collect-only", "-q", "--stress-duration=0.25", "--timeout=5"
    )
    assert scaled.ret == 0, scaled.stdout.str()
    scaled.stdout.no_fnmatch_line("*XenschedTimeoutWarning*")
    project.makeini(inner_ini("timeout = 1.2\n"))
    ini = project.runpytest("--collect-only", "-q", f"-W default::{WARNING}")
    ini.stdout.fnmatch_lines(["*does not fit in pytest-timeout's 1.2 s less*"])
    assert ini.stdout.str().count("XenschedTimeoutWarning") == 2
    # PYTEST_TIMEOUT comes before the ini, as pytest-timeout reads it.
    monkeypatch.setenv("PYTEST_TIMEOUT", "30")
    env = project.runpytest("--collect-only", "-q", f"-W default::{WARNING}")
    assert env.ret == 0, env.stdout.str()
    env.stdout.no_fnmatch_line("*XenschedTimeoutWarning*")


def test_warning_as_error_fails_the_test_at_setup(project: pytest.Pytester) -> None:
    # filterwarnings = error (the inner ini): an error of that test, not INTERNALERROR.
    project.makepyfile(test_fit=FIT_TESTS)
    result = project.runpytest("--timeout=5", "-k", "too_long or fits")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_too_long*",
            "XenschedTimeoutWarning: stress duration 10 s *",
        ]
    )


# -- the run ends before the deadline -------------------------------------------------
@pytest.mark.parametrize("method", ["signal", "thread"])
def test_run_ends_before_the_deadline(project: pytest.Pytester, method: str) -> None:
    project.makepyfile(
        """
        import pytest

        @pytest.mark.stress(duration=60.0, cpus=2)
        def test_long(xensched_stress):
            report = xensched_stress()
            assert report.interrupted and report.exit_code == 0
            assert report.elapsed < 3.0
            assert [run.cut_for_timeout for run in xensched_stress.runs] == [3.0]
        """
    )
    result = project.runpytest_subprocess(
        "--timeout=3", f"--timeout-method={method}", f"-W ignore::{WARNING}"
    )
    result.assert_outcomes(passed=1)
    assert result.duration < 10, result.duration


# -- pytest-timeout fires anyway --------------------------------------------------------
def test_thread_method_keeps_the_section(project: pytest.Pytester) -> None:
    project.makepyfile(test_overrun=OVERRUN_TESTS)
    xml = project.path / "junit.xml"
    result = project.runpytest_subprocess(
        "--xensched-seed=7",
        "--timeout=2",
        "--timeout-method=thread",
        f"--junitxml={xml}",
    )
    # pytest-timeout's thread method ends the process with os._exit(1), after the
    # failure, its section, the summary and the XML, then its stack dump.
    assert result.ret == 1, result.stdout.str()
    lines = section_lines(OVERRUN_ID, 7, 0.3)
    result.stdout.fnmatch_lines(
        [
            "*_ test_overrun _*",
            "Timeout (>2s) from pytest-timeout, thread method: the process ends after "
            "the stack dump that follows",
            "*- xensched -*",
            *lines,
            "FAILED test_overrun.py::test_overrun - Timeout (>2s) *",
            "*= 1 failed in *",
            "*+ Timeout +*",
            "*~ Stack of MainThread (*) ~*",
            "*time.sleep(60)",
            "*+ Timeout +*",
        ]
    )
    props = junit_properties(str(xml))["test_overrun"]
    assert props["xensched_section"] == "\n".join(lines)
    failure = ET.parse(xml).getroot().find(".//failure")
    assert failure is not None
    assert "Timeout (>2s) from pytest-timeout" in failure.get("message", "")


def test_signal_method_keeps_the_section(project: pytest.Pytester) -> None:
    project.makepyfile(test_overrun=OVERRUN_TESTS)
    xml = project.path / "junit.xml"
    result = project.runpytest_subprocess(
        "--xensched-seed=7",
        "--timeout=2",
        "--timeout-method=signal",
        f"--junitxml={xml}",
    )
    result.assert_outcomes(failed=1)
    lines = section_lines(OVERRUN_ID, 7, 0.3)
    result.stdout.fnmatch_lines(
        [
            "E       Failed: Timeout (>2.0s) from pytest-timeout.",
            "*- xensched -*",
            *lines,
        ]
    )
    props = junit_properties(str(xml))["test_overrun"]
    assert props["xensched_section"] == "\n".join(lines)


def test_interrupted_run_keeps_its_partial_report(project: pytest.Pytester) -> None:
    # What pytest-timeout's signal method does inside a run (its deadline stops runs
    # before, so the test raises from SIGALRM itself): the run stops and reports.
    project.makepyfile(
        test_alarm="""
        import signal

        import pytest

        def fail(signum, frame):
            pytest.fail("alarm")

        @pytest.mark.stress(duration=30.0, cpus=2)
        def test_alarm(xensched_stress):
            signal.signal(signal.SIGALRM, fail)
            signal.setitimer(signal.ITIMER_REAL, 0.5)
            try:
                xensched_stress()
            finally:
                signal.signal(signal.SIGALRM, signal.SIG_DFL)
        """
    )
    result = project.runpytest_subprocess("--xensched-seed=3")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "E       Failed: alarm",
            "*- xensched -*",
            "stress run 1 of 1: exit code 0, 0 violations, interrupted: a partial report",
        ]
    )
    assert result.duration < 15, result.duration


def test_thread_method_under_xdist(project: pytest.Pytester) -> None:
    project.makepyfile(test_overrun=OVERRUN_TESTS)
    xml = project.path / "junit.xml"
    result = project.runpytest_subprocess(
        "-p",
        "xdist",
        "-n",
        "2",
        # No replacement worker to start once this one is gone (about half the time).
        "--max-worker-restart=0",
        "--xensched-seed=7",
        "--timeout=2",
        "--timeout-method=thread",
        f"--junitxml={xml}",
    )
    assert result.ret == 1, result.stdout.str()
    lines = section_lines(OVERRUN_ID, 7, 0.3)
    # The worker reports the failure with its section before it dies; xdist then
    # adds its own "crashed" failure of the same test.
    result.stdout.fnmatch_lines(
        [
            "Timeout (>2s) from pytest-timeout, thread method: *",
            "*- xensched -*",
            *lines,
            "worker 'gw*' crashed while running 'test_overrun.py::test_overrun'",
        ]
    )
    props = junit_properties(str(xml))["test_overrun"]
    assert props["xensched_section"] == "\n".join(lines)


def test_thread_method_mid_run_keeps_a_partial_report(project: pytest.Pytester) -> None:
    # A run that has not stopped by the deadline (here: no margin at all, so the run
    # is never stopped early) is stopped by the timer and its partial report shown.
    project.makeconftest(
        """
        import xensched_stress.pytest_plugin as plugin

        plugin.timeout_margin = lambda seconds: -60.0
        """
    )
    project.makepyfile(
        test_mid="""
        import pytest

        @pytest.mark.stress(duration=30.0, cpus=2)
        def test_mid(xensched_stress):
            xensched_stress()
        """
    )
    xml = project.path / "junit.xml"
    result = project.runpytest_subprocess(
        "--xensched-seed=7",
        "--timeout=1.5",
        "--timeout-method=thread",
        f"--junitxml={xml}",
    )
    assert result.ret == 1, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*- xensched -*",
            "stress run 1 of 1: exit code 0, 0 violations, interrupted: a partial report",
            "*= 1 failed in *",
            "*+ Timeout +*",
            "*~ Stack of MainThread (*) ~*",
            "*+ Timeout +*",
        ]
    )
    props = junit_properties(str(xml))["test_mid"]
    assert "interrupted: a partial report" in props["xensched_section"]
    assert result.duration < 15, result.duration
