"""``@pytest.mark.explore(lockdep=...)``, ``@pytest.mark.stress(lockdep=...)`` and
``--xensched-lockdep`` / ``--no-xensched-lockdep`` over both."""

from __future__ import annotations

import pytest


def test_the_markers_and_the_option_turn_it_on(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import pytest
        from xensched.spinlock import spin_lock, spin_unlock

        def abba(w):
            a, b = w.lock("z@q.a"), w.lock("z@q.b")

            def ab():
                spin_lock(a); spin_lock(b); spin_unlock(b); spin_unlock(a)

            def ba():
                spin_lock(b); spin_lock(a); spin_unlock(a); spin_unlock(b)

            w.thread("t0", ab)
            w.thread("t1", ba)

        @pytest.mark.explore(strategy="dfs", runs=1, lockdep=True)
        def test_marked(xensched_world):
            abba(xensched_world)

        @pytest.mark.explore(strategy="dfs", runs=1)
        def test_unmarked(xensched_world):
            abba(xensched_world)

        @pytest.mark.stress(ops=300, lockdep=True)
        def test_stress(xensched_stress):
            r = xensched_stress()
            assert r.lockdep is not None and r.lockdep.acquisitions > 0
        """
    )
    opts = ("-p", "no:randomly", "--xensched-seed=1")
    res = project.runpytest(*opts)
    res.assert_outcomes(passed=2, failed=1)
    res.stdout.fnmatch_lines(["*test_marked*lock-order*"])
    # The option over the markers: the unmarked test fails, the stress test's run
    # (lockdep=True in its marker) has no summary and fails its own assertion.
    res = project.runpytest(*opts, "--xensched-lockdep", "-k", "unmarked")
    res.assert_outcomes(failed=1)
    res = project.runpytest(*opts, "--no-xensched-lockdep", "-k", "stress")
    res.assert_outcomes(failed=1)
