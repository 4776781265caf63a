"""The built-in catalog: shipped, parsed, and each test's verdict under each model
as its notes predict (never weaker), with the issue's expectations spelled out."""

from __future__ import annotations

from functools import cache

import pytest

from xensched.litmus.builtin import catalog, catalog_files
from xensched.litmus.run import LitmusResult, expected_verdict, run_test
from xensched.litmus.syntax import LitmusTest

TESTS = catalog()
BY_NAME = {t.name: t for t in TESTS}

#: What each model forbids although the kernel model allows it (measured; the rest
#: agree). sc: every weak outcome; tso: all but store buffering; relaxed: load
#: buffering and non-multicopy-atomicity only.
STRONGER = {
    "sc": {
        "2+2W", "IRIW", "IRIW+acquires", "ISA2", "LB", "MP", "MP+locked-writer",
        "MP+rmb", "MP+wmb", "R", "S", "SB", "SB+release+acquire", "SwitchSched", "WRC",
    },
    "tso": {
        "2+2W", "IRIW", "IRIW+acquires", "ISA2", "LB", "MP", "MP+locked-writer",
        "MP+rmb", "MP+wmb", "S", "SwitchSched", "WRC",
    },
    "relaxed": {"IRIW+acquires", "LB"},
}  # fmt: skip


def test_the_catalog_is_shipped_and_names_its_files() -> None:
    files = catalog_files()
    assert len(files) == len(TESTS) >= 22
    for f, t in zip(files, TESTS, strict=True):
        assert f.name == f"{t.name}.litmus"
        assert t.result is not None, t.name
        assert t.comment, t.name
        # An outcome the kernel model allows says which reorderings it needs.
        assert (t.result == "Sometimes") == bool(t.needs), t.name


def test_the_catalog_covers_the_issues_shapes() -> None:
    want = {
        "MP", "MP+wmb+rmb", "MP+release+acquire", "MP+wmb", "SB", "SB+mbs",
        "SB+release+acquire", "LB", "LB+ctrls", "2+2W", "R", "R+mbs", "S", "WRC",
        "WRC+release+acquire", "IRIW", "IRIW+mbs", "ISA2", "ISA2+release+acquires",
        "CoRR", "CoWW", "MP+locks", "SB+xchgs", "SwitchSched", "SwitchSched+mb",
    }  # fmt: skip
    assert want <= set(BY_NAME)


@cache
def _run(name: str, model: str) -> LitmusResult:
    """Each test under each model once per session (the whole catalog: ~10 s)."""
    return run_test(BY_NAME[name], model)


#: Run in the default test run; the rest of the catalog is slow (opt-in) here, and
#: ``.ci/run`` runs all of it through ``xensched litmus --catalog`` on every build.
QUICK = {
    "MP", "MP+wmb", "MP+wmb+rmb", "MP+release+acquire", "MP+locks", "SB", "SB+mbs",
    "SB+xchgs", "LB", "2+2W", "R", "CoRR",
}  # fmt: skip


@pytest.mark.parametrize("model", ["sc", "tso", "relaxed"])
@pytest.mark.parametrize(
    "test",
    [
        pytest.param(t, id=t.name, marks=[] if t.name in QUICK else [pytest.mark.slow])
        for t in TESTS
    ],
)
def test_each_verdict_is_the_predicted_one_and_never_weaker(
    test: LitmusTest, model: str
) -> None:
    r = _run(test.name, model)
    assert r.exhaustive
    assert not r.errors
    assert r.verdict != "weaker", (r.reason, r.outcomes)
    assert r.verdict == expected_verdict(test, model), (r.reason, r.outcomes)
    assert (r.verdict == "stronger") == (test.name in STRONGER[model])
    if r.verdict == "stronger":
        assert "which " + model + " does not do" in r.reason


def test_switch_sched_without_its_barrier_fails_on_relaxed_only() -> None:
    assert _run("SwitchSched", "relaxed").observed
    assert not _run("SwitchSched", "tso").observed
    assert not _run("SwitchSched", "sc").observed
    for model in ("sc", "tso", "relaxed"):
        assert not _run("SwitchSched+mb", model).observed


def test_stronger_verdicts_name_the_missing_class() -> None:
    assert "load-buffering" in _run("LB", "relaxed").reason
    assert "non-mca" in _run("IRIW+acquires", "relaxed").reason
    assert "store-reordering" in _run("2+2W", "tso").reason
