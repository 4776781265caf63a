"""The stress marker takes the report caps, ``max_violations`` and ``max_events``."""

from __future__ import annotations

import pytest


def test_marker_takes_the_caps(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import pytest

        @pytest.mark.stress(max_violations=2, max_events=1)
        def test_caps(xensched_stress):
            cfg = xensched_stress.config()
            assert (cfg.max_violations, cfg.max_events) == (2, 1)
            assert xensched_stress.config(max_events=0).max_events == 0

        """
    )
    result = project.runpytest("--xensched-seed=1")
    result.assert_outcomes(passed=1)


def test_a_bad_cap_stops_the_session_at_collection(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import pytest

        @pytest.mark.stress(max_violations=0)
        def test_bad_cap(xensched_stress):
            xensched_stress.config()
        """
    )
    result = project.runpytest("--xensched-seed=1")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        ["*test_bad_cap: @pytest.mark.stress: max_violations=0: must be an integer*"]
    )
