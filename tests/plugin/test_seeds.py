"""The base seed, the per-test seeds, the marker and the failure section (pytester)."""

from __future__ import annotations

import re
import zlib

import pytest

from tests.plugin.helpers import header_seed, inner_ini
from xensched.pytest_plugin import SEED_MAX

# Each inner test prints its node id and seed; run with -s to read them back.
SEED_TESTS = """
    import pytest

    def test_a(xensched_seed, request):
        print(f"SEED {request.node.nodeid} {xensched_seed}")

    @pytest.mark.parametrize("n", [1, 2])
    def test_param(xensched_seed, request, n):
        print(f"SEED {request.node.nodeid} {xensched_seed}")

    class TestC:
        def test_m(self, xensched_seed, request):
            print(f"SEED {request.node.nodeid} {xensched_seed}")
"""


def seeds_of(result: pytest.RunResult) -> dict[str, int]:
    """``{nodeid: seed}`` from the ``SEED nodeid seed`` lines the inner tests print."""
    found = re.findall(r"SEED (\S+) (\d+)", result.stdout.str())
    return {nodeid: int(seed) for nodeid, seed in found}


def test_header_shows_seed(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        from xensched.pytest_plugin import get_base_seed

        def test_a(request):
            assert get_base_seed(request.config) == 1234
        """
    )
    result = project.runpytest("--xensched-seed=1234")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["xensched: base seed 1234"])
    result.stdout.no_fnmatch_line("xensched: stress duration*")
    # The xdist hook is optional: the plugin works without xdist.
    result = project.runpytest("--xensched-seed=1234", "-p", "no:xdist")
    result.assert_outcomes(passed=1)


def test_header_shows_hex_seed_in_decimal(project: pytest.Pytester) -> None:
    project.makepyfile("def test_a(): pass")
    result = project.runpytest("--xensched-seed=0x10")
    assert header_seed(result) == 16


def test_env_seed(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    project.makepyfile("def test_a(): pass")
    monkeypatch.setenv("XENSCHED_SEED", "77")
    assert header_seed(project.runpytest()) == 77
    # The option wins over the environment.
    assert header_seed(project.runpytest("--xensched-seed=5")) == 5


def test_fresh_seed_each_session(project: pytest.Pytester) -> None:
    project.makepyfile("def test_a(): pass")
    seeds = {header_seed(project.runpytest()) for _ in range(3)}
    assert all(0 <= s <= SEED_MAX for s in seeds)
    assert len(seeds) > 1  # p = 2**-64 of a false failure


@pytest.mark.parametrize("value", ["abc", "-1", "4294967296", "1.5", ""])
def test_invalid_seed_is_usage_error(project: pytest.Pytester, value: str) -> None:
    project.makepyfile("def test_a(): pass")
    result = project.runpytest(f"--xensched-seed={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: --xensched-seed: '{value}' is not a seed*"])


def test_invalid_env_seed_is_usage_error(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.makepyfile("def test_a(): pass")
    monkeypatch.setenv("XENSCHED_SEED", "0xZZ")
    result = project.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: XENSCHED_SEED: '0xZZ' is not a seed*"])


@pytest.mark.parametrize("value", ["0", "-2", "nan", "abc"])
def test_invalid_stress_duration_is_usage_error(
    project: pytest.Pytester, value: str
) -> None:
    project.makepyfile("def test_a(): pass")
    result = project.runpytest(f"--stress-duration={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"ERROR: --stress-duration: '{value}' is not a duration factor*"]
    )


def test_invalid_stress_duration_ini_is_usage_error(project: pytest.Pytester) -> None:
    project.makeini(inner_ini("xensched_stress_duration = fast\n"))
    project.makepyfile("def test_a(): pass")
    result = project.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: xensched_stress_duration: 'fast' is not a duration factor*"]
    )


def test_stress_duration_in_header(project: pytest.Pytester) -> None:
    project.makepyfile("def test_a(): pass")
    result = project.runpytest("--xensched-seed=1", "--stress-duration=0.5")
    result.stdout.fnmatch_lines(
        ["xensched: base seed 1", "xensched: stress duration x0.5"]
    )


def test_per_test_seeds(project: pytest.Pytester) -> None:
    project.makepyfile(test_seeds=SEED_TESTS)
    first = project.runpytest("-s", "--xensched-seed=1234")
    first.assert_outcomes(passed=4)
    seeds = seeds_of(first)
    assert sorted(seeds) == [
        "test_seeds.py::TestC::test_m",
        "test_seeds.py::test_a",
        "test_seeds.py::test_param[1]",
        "test_seeds.py::test_param[2]",
    ]
    for nodeid, seed in seeds.items():
        assert seed == 1234 ^ zlib.crc32(nodeid.encode())
    assert len(set(seeds.values())) == len(seeds)
    # Stable: the same base seed gives the same per-test seeds in another session,
    # also when only some tests run.
    again = project.runpytest("-s", "--xensched-seed=1234", "-k", "param")
    assert seeds_of(again) == {k: v for k, v in seeds.items() if "param" in k}
    other = seeds_of(project.runpytest("-s", "--xensched-seed=1235"))
    assert all(other[k] == seeds[k] ^ 1234 ^ 1235 for k in seeds)


def test_marker_registered(project: pytest.Pytester) -> None:
    result = project.runpytest("--markers")
    result.stdout.fnmatch_lines(
        [
            "@pytest.mark.stress(duration=2.0, cpus=4, boot='credit', pool=None, "
            "protocol='fixed', **fields): *"
        ]
    )


def test_marker_accepted_by_strict_markers(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import pytest

        @pytest.mark.stress(duration=0.1, cpus=2)
        def test_a():
            pass
        """
    )
    project.runpytest("--strict-markers").assert_outcomes(passed=1)


def test_failure_section_with_seed(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("x", ["a b"])
        def test_boom(xensched_seed, x):
            assert xensched_seed < 0
        """
    )
    result = project.runpytest("--xensched-seed=1234")
    result.assert_outcomes(failed=1)
    nodeid = "test_failure_section_with_seed.py::test_boom[a b]"
    seed = 1234 ^ zlib.crc32(nodeid.encode())
    result.stdout.fnmatch_lines(
        [
            "*- xensched -*",
            f"per-test seed {seed} (base seed 1234 ^ crc32 of the node id)",
            "rerun with:",
            f"  pytest '{nodeid}' --xensched-seed=1234",
        ]
    )


def test_failure_section_names_stress_duration(project: pytest.Pytester) -> None:
    project.makepyfile("def test_boom(xensched_seed): assert False")
    result = project.runpytest("--xensched-seed=9", "--stress-duration=2.5")
    result.stdout.fnmatch_lines(
        [
            "  pytest 'test_failure_section_names_stress_duration.py::test_boom' "
            "--xensched-seed=9 --stress-duration=2.5"
        ]
    )


def test_no_section_when_passing_or_without_fixture(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        def test_ok(xensched_seed):
            pass

        def test_plain_failure():
            assert False
        """
    )
    result = project.runpytest("-rA", "--xensched-seed=3")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.no_fnmatch_line("*- xensched -*")
    result.stdout.no_fnmatch_line("*rerun with:*")


def test_seed_in_junit_properties(project: pytest.Pytester) -> None:
    project.makepyfile("def test_a(xensched_seed): pass")
    result = project.runpytest("--xensched-seed=1", "--junitxml=out.xml")
    result.assert_outcomes(passed=1)
    seed = 1 ^ zlib.crc32(b"test_seed_in_junit_properties.py::test_a")
    xml = (project.path / "out.xml").read_text()
    assert f'<property name="xensched_seed" value="{seed}" />' in xml
