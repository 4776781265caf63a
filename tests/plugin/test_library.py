"""The plugin's plain functions, used without pytest's machinery."""

from __future__ import annotations

import zlib

import pytest

from xensched import ConfigError, Violation, ViolationKind
from xensched.pytest_plugin import (
    SEED_MAX,
    assert_no_violations,
    derive_seed,
    parse_seed,
    resolve_base_seed,
)
from xensched_stress.config import (
    PoolSpec,
    StressConfig,
    reproduce_command,
    rerun_command as stress_rerun_command,
)
from xensched_stress.pytest_plugin import (
    StressRun,
    failure_section,
    parse_scale,
    rerun_command,
    stress_config_for,
    stress_fields,
)
from xensched_stress.report import StopReason, StressReport


@pytest.mark.parametrize(
    ("text", "seed"),
    [
        ("0", 0),
        ("1234", 1234),
        (" 42 ", 42),
        ("0x10", 16),
        ("0XfF", 255),
        ("4294967295", SEED_MAX),
        ("1_000", 1000),
    ],
)
def test_parse_seed(text: str, seed: int) -> None:
    assert parse_seed(text) == seed


@pytest.mark.parametrize("text", ["", "abc", "-1", "4294967296", "1.5", "0x", "1e3"])
def test_parse_seed_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="is not a seed"):
        parse_seed(text)


@pytest.mark.parametrize(("text", "scale"), [("1", 1.0), ("0.25", 0.25), ("10", 10.0)])
def test_parse_scale(text: str, scale: float) -> None:
    assert parse_scale(text) == scale


@pytest.mark.parametrize("text", ["0", "-1", "nan", "inf", "abc", ""])
def test_parse_scale_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration factor"):
        parse_scale(text)


def test_resolve_base_seed_order() -> None:
    assert resolve_base_seed(5, {"XENSCHED_SEED": "7"}) == 5
    assert resolve_base_seed(None, {"XENSCHED_SEED": "7"}) == 7
    assert resolve_base_seed(None, {"XENSCHED_SEED": "0x7"}) == 7
    fresh = {resolve_base_seed(None, {"XENSCHED_SEED": " "}) for _ in range(8)}
    assert all(0 <= s <= SEED_MAX for s in fresh)
    assert len(fresh) > 1  # drawn at random: eight equal draws have p = 2**-224


def test_resolve_base_seed_bad_env() -> None:
    with pytest.raises(ValueError, match=r"^XENSCHED_SEED: 'x' is not a seed"):
        resolve_base_seed(None, {"XENSCHED_SEED": "x"})


def test_derive_seed() -> None:
    nodeid = "tests/test_x.py::test_a[credit-credit2]"
    assert derive_seed(1234, nodeid) == 1234 ^ zlib.crc32(nodeid.encode())
    assert derive_seed(0, nodeid) == zlib.crc32(nodeid.encode())
    # A known value: the derivation is part of the reproduce contract.
    assert derive_seed(1234, "test_x.py::test_a") == 1234 ^ 0xFF2D587A == 4281162920
    assert derive_seed(SEED_MAX, nodeid) <= SEED_MAX
    assert derive_seed(1, nodeid) != derive_seed(1, nodeid + "x")


def test_rerun_command_quotes_node_id() -> None:
    assert (
        rerun_command("tests/t.py::test_a[x y]", 7)
        == "pytest 'tests/t.py::test_a[x y]' --xensched-seed=7"
    )
    assert (
        rerun_command("t.py::test_a['q']", 7, 0.5)
        == "pytest 't.py::test_a['\"'\"'q'\"'\"']' --xensched-seed=7 --stress-duration=0.5"
    )


def test_stress_fields_closest_mark_wins() -> None:
    module = pytest.mark.stress(cpus=8, boot="credit2", duration=1.0).mark
    cls = pytest.mark.stress(cpus=2).mark
    func = pytest.mark.stress(duration=0.5).mark
    # iter_markers() order: closest first.
    assert stress_fields([func, cls, module]) == {
        "cpus": 2,
        "boot": "credit2",
        "duration": 0.5,
    }
    assert stress_fields([]) == {}


def test_stress_fields_rejects_positional() -> None:
    with pytest.raises(TypeError, match="keyword arguments only"):
        stress_fields([pytest.mark.stress(2.0).mark])


# -- configs and failure text (needs the stress engine's types, runs nothing) ----------
def make_report(
    cfg: StressConfig,
    violations: tuple[Violation, ...] = (),
    deadlock: str | None = None,
) -> StressReport:
    return StressReport(
        seed=cfg.seed,
        config=cfg,
        violations=violations,
        deadlock=deadlock,
        interrupted=False,
        stop_reason=StopReason.DURATION,
        elapsed=1.0,
        schedule_counts=(10, 10),
        lock_stats=(),
        switches=0,
        domain_moves=0,
    )


def violation(n: int) -> Violation:
    return Violation(
        ViolationKind.LOCK_MISMATCH,
        n % 2,
        "csched_schedule",
        f"bad lock {n}\nmore",
        "pcpu0",
    )


def test_stress_config_for_defaults() -> None:
    nodeid = "t.py::test_a"
    cfg = stress_config_for(nodeid, 1234)
    assert cfg == StressConfig(seed=derive_seed(1234, nodeid))


def test_stress_config_for_fields_and_scale() -> None:
    cfg = stress_config_for(
        "t.py::test_a",
        1,
        {"cpus": 2, "boot": "credit2", "pool": "p1:credit:1", "duration": 2.0},
        scale=0.25,
    )
    assert (cfg.cpus, cfg.boot, cfg.duration) == (2, "credit2", 0.5)
    assert cfg.pools == (PoolSpec("p1", "credit", (1,)),)
    spec = PoolSpec("p2", "rtds", ())
    cfg = stress_config_for("t.py::test_a", 1, {"pools": ["p1:credit", spec]})
    assert cfg.pools == (PoolSpec("p1", "credit"), spec)
    assert stress_config_for("t.py::test_a", 1, {"pool": None}).pools == ()
    # An ops-bounded run ignores its duration: the factor scales the ops.
    cfg = stress_config_for("t.py::test_a", 1, {"ops": 1001, "duration": None}, 0.5)
    assert (cfg.ops, cfg.duration) == (500, None)
    assert stress_config_for("t.py::test_a", 1, {"ops": 1}, 0.1).ops == 1


def test_stress_config_for_explicit_seed_wins() -> None:
    assert stress_config_for("t.py::test_a", 1, {"seed": 99}).seed == 99


@pytest.mark.parametrize(
    ("fields", "error", "match"),
    [
        (
            {"colour": "red"},
            TypeError,
            r"unknown field\(s\) colour; choose from pool, cpus",
        ),
        ({"pool": "p:credit", "pools": ()}, TypeError, "'pool' or 'pools', not both"),
        ({"pool": 3}, TypeError, "pool 3: expected 'NAME:SCHED"),
        ({"pools": "p:credit:x"}, ConfigError, "bad pCPU list"),
        ({"cpus": 1}, ConfigError, "cpus=1"),
        ({"protocol": "old"}, ConfigError, "protocol 'old'"),
    ],
)
def test_stress_config_for_rejects(
    fields: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        stress_config_for("t.py::test_a", 1, fields)


def test_failure_section() -> None:
    nodeid = "t.py::test_a"
    cfg = stress_config_for(nodeid, 5)
    clean = make_report(cfg)
    many = make_report(cfg, tuple(violation(n) for n in range(12)))
    hung = make_report(cfg, (), deadlock="no pCPU progressed for 5.0s\nstacks...")
    runs = [
        StressRun(cfg, clean),
        StressRun(cfg, many),
        StressRun(cfg, hung),
        StressRun(cfg),
    ]
    text = failure_section(nodeid, 5, 2.0, runs)
    command = stress_rerun_command(cfg)
    assert text.splitlines() == [
        f"per-test seed {cfg.seed} (base seed 5 ^ crc32 of the node id)",
        "rerun with:",
        "  pytest 't.py::test_a' --xensched-seed=5 --stress-duration=2.0",
        *[f"  {command}"] * 4,
        "stress run 1 of 4: exit code 0, 0 violations",
        "stress run 2 of 4: exit code 1, 12 violations",
        *[
            f"  lock-mismatch on cpu{n % 2} in csched_schedule(): bad lock {n}"
            for n in range(10)
        ],
        "  ... and 2 more",
        "stress run 3 of 4: exit code 3, 0 violations",
        "  deadlock: no pCPU progressed for 5.0s",
        "stress run 4 of 4: did not finish",
    ]
    assert failure_section(nodeid, 5, 1.0).splitlines() == [
        f"per-test seed {cfg.seed} (base seed 5 ^ crc32 of the node id)",
        "rerun with:",
        "  pytest 't.py::test_a' --xensched-seed=5",
    ]


def test_the_rerun_line_says_rerun() -> None:
    """The stress command reruns the workload, it does not replay it; the word
    "reproduce" belongs to ``xensched reproduce``."""
    cfg = stress_config_for("t.py::test_a", 5)
    report = make_report(cfg, (violation(0),))
    command = stress_rerun_command(cfg)
    text = report.render()
    assert text.splitlines()[-1] == f"rerun: {command}"
    assert "reproduce" not in text
    data = report.to_json()
    assert data["rerun"] == report.rerun == command
    assert "reproduce" not in data
    section = failure_section("t.py::test_a", 5, 1.0, [StressRun(cfg, report)])
    assert "rerun with:" in section.splitlines()
    assert "reproduce" not in section


def test_the_old_names_of_the_rerun_command_warn() -> None:
    cfg = stress_config_for("t.py::test_a", 5)
    with pytest.warns(DeprecationWarning, match=r"use rerun_command\(\)"):
        assert reproduce_command(cfg) == stress_rerun_command(cfg)
    report = make_report(cfg)
    with pytest.warns(DeprecationWarning, match=r"use StressReport\.rerun"):
        assert report.reproduce == report.rerun


def test_assert_no_violations() -> None:
    cfg = stress_config_for("t.py::test_a", 5)
    assert_no_violations(make_report(cfg))
    bad = make_report(cfg, (violation(1),))
    with pytest.raises(
        AssertionError, match=r"(?s)stress run \(seed \d+\) failed:\n.*bad lock 1"
    ):
        assert_no_violations(bad)
    with pytest.raises(AssertionError, match="deadlock"):
        assert_no_violations(make_report(cfg, deadlock="stuck"))


def test_stress_config_takes_a_scenario_by_name() -> None:
    cfg = stress_config_for("t.py::test_a", 1, {"scenario": "patch-move", "ops": 9})
    assert cfg.scenario is not None
    assert cfg.scenario.name == "patch-move"
    assert cfg.to_scenario() is cfg.scenario
    with pytest.raises(ConfigError, match="no-such"):
        stress_config_for("t.py::test_a", 1, {"scenario": "no-such"})
