"""``@pytest.mark.explore(race_detector=...)``, ``@pytest.mark.stress(race_detector=...)``
and ``--xensched-race-detector`` / ``--no-xensched-race-detector`` over both."""

from __future__ import annotations

import pytest


def test_the_markers_and_the_option_turn_it_on(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import pytest

        def unordered(w):
            x = w.cell("x", 0)

            def bump():
                x.store(x.load() + 1)

            w.thread("t0", bump)
            w.thread("t1", bump)

        @pytest.mark.explore(strategy="dfs", runs=1, race_detector=True)
        def test_marked(xensched_world):
            unordered(xensched_world)

        @pytest.mark.explore(strategy="dfs", runs=1)
        def test_unmarked(xensched_world):
            unordered(xensched_world)

        @pytest.mark.stress(ops=200, race_detector=True, keep_going=True)
        def test_stress(xensched_stress):
            r = xensched_stress()
            assert r.race_detector is not None and r.race_detector.accesses > 0
        """
    )
    opts = ("-p", "no:randomly", "--xensched-seed=1")
    res = project.runpytest(*opts)
    res.assert_outcomes(passed=2, failed=1)
    res.stdout.fnmatch_lines(["*test_marked*data-race*"])
    # The option over the markers: the unmarked test fails, the stress test's run
    # (race_detector=True in its marker) has no summary and fails its own assertion.
    res = project.runpytest(*opts, "--xensched-race-detector", "-k", "unmarked")
    res.assert_outcomes(failed=1)
    res = project.runpytest(*opts, "--no-xensched-race-detector", "-k", "stress")
    res.assert_outcomes(failed=1)
    res = project.runpytest(*opts, "--no-xensched-race-detector", "-k", "marked")
    res.assert_outcomes(passed=2)


def test_the_marker_refuses_a_race_detector_that_is_not_a_bool(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(
        """
        import pytest

        @pytest.mark.explore(race_detector="yes")
        def test_bad(xensched_world):
            pass
        """
    )
    res = project.runpytest("-p", "no:randomly")
    res.stdout.fnmatch_lines(["*race_detector='yes': expected a bool*"])
