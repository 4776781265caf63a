"""The stress marker's fields and the plugin's options are checked before any test
runs: a misspelt or invalid field is a collection error, one line per test, and the
session stops there (under xdist too).
"""

from __future__ import annotations

import pytest

from tests.plugin.helpers import inner_ini

_RAN = "ran-the-test-body"


@pytest.mark.parametrize(
    ("marks", "needle"),
    [
        ("durration=1.0", "unknown field(s) durration; choose from pool, cpus"),
        ("duration=float('inf')", "duration=inf: must be a finite number of seconds"),
        ("duration=0", "duration=0: must be a finite number of seconds in (0, 86400]"),
        ("domains=100000", "domains=100000: must be an integer in [0, 1024]"),
        ("vcpus=0", "vcpus=0: must be an integer in [1, 128]"),
        ("pool='p1:credit2:1,1'", "pCPU 1 is given twice in '1,1'"),
        ("pool='p1:credit2:'", "empty pCPU list after the last ':'"),
        ("seed=2**32", "seed=4294967296: must be an integer in [0, 4294967295]"),
        ("traffic=2", "traffic=2: must be a probability in [0, 1]"),
        ("cpus=True", "cpus=True: a stress run needs 2 to 256 pCPUs"),
        ("cpus=3.5", "cpus=3.5: a stress run needs 2 to 256 pCPUs"),
    ],
)
def test_a_bad_marker_field_is_a_collection_error(
    project: pytest.Pytester, marks: str, needle: str
) -> None:
    project.makepyfile(
        f"""
        import pytest

        def test_fine():
            print({_RAN!r})

        @pytest.mark.stress({marks})
        def test_marked(xensched_stress):
            print({_RAN!r})
        """
    )
    result = project.runpytest("--xensched-seed=1", "-s")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    head = (
        "test_a_bad_marker_field_is_a_collection_error.py::test_marked: "
        "@pytest.mark.stress: "
    )
    errors = [line for line in result.stdout.lines if line.startswith(head)]
    assert len(errors) == 1, result.stdout.str()
    assert needle in errors[0]
    # No test ran, the valid one included.
    assert _RAN not in result.stdout.str()


def test_a_class_mark_is_checked_with_the_function_mark(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(
        """
        import pytest

        @pytest.mark.stress(cpus=8, pool="p1:credit2:6,7")
        class TestShaped:
            @pytest.mark.stress(cpus=4)
            def test_small(self, xensched_stress):
                pass
        """
    )
    result = project.runpytest("--xensched-seed=1")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*test_small: @pytest.mark.stress: *cpu6 does not*"])


def test_a_scaled_duration_past_a_day_is_refused(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import pytest

        @pytest.mark.stress(duration=2.0)
        def test_long(xensched_stress):
            pass
        """
    )
    result = project.runpytest("--xensched-seed=1", "--stress-duration=86400")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        ["*test_long: @pytest.mark.stress: duration=172800.0: must be a finite*"]
    )


def test_every_bad_test_of_a_module_is_named_under_xdist(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(
        f"""
        import pytest

        def test_fine():
            print({_RAN!r})

        @pytest.mark.stress(colour="red")
        def test_one(xensched_stress):
            pass

        @pytest.mark.stress(duration=float("inf"))
        def test_two(xensched_stress):
            pass
        """
    )
    result = project.runpytest("--xensched-seed=1", "-n", "2", "-s")
    # xdist reports collection errors as failures, and runs nothing.
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*::test_one: @pytest.mark.stress: stress config: unknown field(s) colour;*",
            "*::test_two: @pytest.mark.stress: duration=inf: must be a finite number*",
        ]
    )
    assert "INTERNALERROR" not in result.stdout.str()
    assert _RAN not in result.stdout.str()


def test_valid_marks_collect_and_run(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import pytest

        @pytest.mark.stress(pool="p1:credit2:2,3", domains=1, vcpus=1)
        def test_ok(xensched_stress):
            assert xensched_stress.config().pools[0].cpus == (2, 3)
        """
    )
    project.runpytest("--xensched-seed=1").assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("args", "ini", "needle"),
    [
        (
            ["--stress-duration=inf"],
            "",
            "--stress-duration: 'inf' is not a duration factor: expected a finite "
            "number in (0, 86400]",
        ),
        (["--stress-duration=0"], "", "--stress-duration: '0' is not a duration"),
        (
            [],
            "xensched_stress_duration = nan\n",
            "xensched_stress_duration: 'nan' is not a duration factor",
        ),
        (
            ["--xensched-seed=-1"],
            "",
            "--xensched-seed: '-1' is not a seed: expected an integer in 0..4294967295",
        ),
        (["--xensched-seed=4294967296"], "", "is not a seed"),
    ],
)
def test_bad_plugin_options_are_usage_errors(
    project: pytest.Pytester, args: list[str], ini: str, needle: str
) -> None:
    if ini:
        project.makeini(inner_ini(ini))
    project.makepyfile("def test_fine():\n    pass\n")
    result = project.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert needle in result.stderr.str()
