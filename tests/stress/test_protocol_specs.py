"""The stress harness with protocol specs beyond the two presets."""

from __future__ import annotations

import shlex

import pytest

from xensched import ConfigError, ViolationKind
from xensched_stress.cli import build_parser, config_from_args, main
from xensched_stress.config import PoolSpec, StressConfig, rerun_command
from xensched_stress.runner import run_stress


def test_cli_keeps_the_spec_for_the_rerun_line() -> None:
    spec = "fixed-without:barrier,old-lock"
    args = build_parser().parse_args(["--protocol", spec])
    cfg = config_from_args(args, seed=1)
    assert cfg.protocol == spec
    cfg.validate()
    argv = shlex.split(rerun_command(cfg))
    assert argv[argv.index("--protocol") + 1] == spec
    again = config_from_args(build_parser().parse_args(argv[2:]), seed=1)
    assert again.protocol == cfg.protocol


def test_cli_bad_spec_is_a_one_line_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--protocol", "fixed-without:barrier,nope", "--no-progress"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        "xensched stress: error: protocol fixed-without:barrier,nope: unknown part "
        "'nope'; parts: alloc-no-init, old-lock, lock-irq, prv-lock-no-irq, "
        "pointer-last, barrier, unlock-by-pointer, deinit-before-free"
    ]


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("fixed-without:nope", "unknown part 'nope'"),
        ("fixed-without:", "name at least one part"),
        ("no_such_module_xyz:f", "cannot import"),
    ],
)
def test_validate_rejects_bad_specs(spec: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        StressConfig(protocol=spec).validate()


def test_fixed_without_deinit_before_free_trips_free_pdata() -> None:
    # The pre-patch free_pdata is back, alone: problem 2 on the first RTDS <->
    # Credit2 switch, whatever the interleaving.
    cfg = StressConfig(
        boot="rtds",
        pools=(PoolSpec("p1", "credit2", (2, 3)),),
        protocol="fixed-without:deinit-before-free",
        duration=2.0,
        seed=5,
        switch_interval=0.001,
        domain_moves=0.0,
    )
    r = run_stress(cfg)
    assert r.exit_code == 1
    assert ViolationKind.ASSERT in {v.kind for v in r.violations}
    assert any(v.where in ("rt_free_pdata", "csched2_free_pdata") for v in r.violations)
    assert "--protocol fixed-without:deinit-before-free" in r.rerun
