"""StressConfig, PoolSpec and the rerun command: no threads, no host."""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import replace

import pytest

from xensched import ConfigError
from xensched_stress.cli import build_parser, config_from_args
from xensched_stress.config import PoolSpec, StressConfig, rerun_command


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("p1:credit2:2,3", PoolSpec("p1", "credit2", (2, 3))),
        ("p1:rtds", PoolSpec("p1", "rtds", ())),
        ("big:arinc653:4-6,1", PoolSpec("big", "arinc653", (1, 4, 5, 6))),
    ],
)
def test_pool_spec_parse(text: str, expected: PoolSpec) -> None:
    assert PoolSpec.parse(text) == expected
    assert PoolSpec.parse(expected.spec()) == expected


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("bad", "NAME:SCHED"),
        ("p1", "NAME:SCHED"),
        (":credit", "NAME:SCHED"),
        ("p1:nope", "unknown scheduler"),
        ("p1:credit2:x", "bad pCPU list"),
        ("p1:credit2:3-1", "bad pCPU list"),
        ("p1:credit2:1:2", "NAME:SCHED"),
        ("Pool-0:credit", "boot pool"),
        ("p1:credit:", "empty pCPU list after the last ':'"),
        ("p1:credit: ", "empty pCPU list after the last ':'"),
        ("p:credit:3,3", "pCPU 3 is given twice in '3,3'"),
        ("p:credit:2-4,3", "pCPU 3 is given twice in '2-4,3'"),
    ],
)
def test_pool_spec_parse_errors(text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        PoolSpec.parse(text)


def test_default_config_is_valid_and_default_pool() -> None:
    cfg = StressConfig()
    cfg.validate()
    assert cfg.pool_layout() == (PoolSpec("p1", "credit2", (2, 3)),)
    assert StressConfig(boot="rtds", cpus=5).pool_layout() == (
        PoolSpec("p1", "credit", (2, 3, 4)),
    )
    assert cfg.lock_bound == cfg.watchdog
    assert replace(cfg, lock_timeout=0.5).lock_bound == 0.5


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"cpus": 1}, "cpus=1"),
        ({"cpus": 257}, "cpus=257"),
        ({"topology": "2x4"}, "topology 2x4 has 8"),
        ({"topology": "2by4"}, "SOCKETSxCORES"),
        ({"boot": "bvt"}, "boot scheduler"),
        ({"protocol": "nope"}, "protocol"),
        ({"pools": (PoolSpec("p1", "credit", (4,)),)}, "cpu4 does not exist"),
        (
            {"pools": (PoolSpec("a", "credit", (1,)), PoolSpec("b", "rtds", (1,)))},
            "two pools",
        ),
        (
            {"pools": (PoolSpec("a", "credit", (1,)), PoolSpec("a", "rtds", (2,)))},
            "given twice",
        ),
        ({"pools": (PoolSpec("a", "credit", (0, 1, 2, 3)),)}, "Pool-0"),
        ({"pools": (PoolSpec("a", "nope"),)}, "unknown scheduler"),
        ({"domains": -1}, "domains"),
        ({"vcpus": 0}, "vcpus"),
        ({"duration": 0.0}, "duration"),
        ({"duration": None}, "duration or a number of ops"),
        ({"ops": 0}, "ops=0"),
        ({"seed": -1}, "seed"),
        ({"switch_interval": 0.0}, "switch_interval"),
        ({"watchdog": -1.0}, "watchdog"),
        ({"delay_injection": 1.5}, "delay_injection"),
        ({"traffic": -0.1}, "traffic"),
        ({"controllers": -1}, "controllers"),
        ({"lock_timeout": 0.0}, "lock_timeout"),
        ({"max_violations": 0}, "max_violations=0: must be an integer in [1, 10000]"),
        ({"max_events": -1}, "max_events=-1: must be an integer in [0, 1000]"),
        # Upper bounds: what a run can honour, each with its range.
        ({"domains": 1025}, "domains=1025: must be an integer in [0, 1024]"),
        ({"vcpus": 129}, "vcpus=129: must be an integer in [1, 128]"),
        (
            {"domains": 1024, "vcpus": 5},
            "domains=1024 x vcpus=5: at most 4096 guest vCPUs in all",
        ),
        ({"duration": math.inf}, "duration=inf: must be a finite number of seconds"),
        ({"duration": math.nan}, "duration=nan: must be a finite number of seconds"),
        (
            {"duration": 86401.0},
            "duration=86401.0: must be a finite number of seconds in (0, 86400]",
        ),
        ({"watchdog": math.inf}, "watchdog=inf"),
        (
            {"ops": 10**10 + 1},
            "ops=10000000001: must be an integer in [1, 10000000000]",
        ),
        ({"seed": 2**32}, "seed=4294967296: must be an integer in [0, 4294967295]"),
        ({"controllers": 65}, "controllers=65: must be an integer in [0, 64]"),
        (
            {"max_delay": 2.0},
            "max_delay=2.0: must be a finite number of seconds in (0, 1]",
        ),
        ({"gil_switch_interval": 2.0}, "gil_switch_interval=2.0"),
        ({"domains": True}, "domains=True: must be an integer"),
    ],
)
def test_validate_names_the_problem(fields: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(needle)) as caught:
        replace(StressConfig(), **fields).validate()  # type: ignore[arg-type]
    assert "\n" not in str(caught.value)


def test_ops_replaces_duration() -> None:
    cfg = StressConfig(ops=100)
    cfg.validate()
    assert "--ops 100" in rerun_command(cfg)
    assert "--duration" not in rerun_command(cfg)


@pytest.mark.parametrize(
    "cfg",
    [
        StressConfig(),
        StressConfig(
            cpus=8,
            topology="2x4",
            boot="rtds",
            pools=(PoolSpec("p1", "credit2", (4, 5)), PoolSpec("p2", "arinc653")),
            protocol="legacy",
            domains=3,
            vcpus=1,
            duration=1.5,
            seed=123456,
            switch_interval=0.001,
            delay_injection=0.02,
            keep_going=True,
            watchdog=2.5,
            controllers=2,
            traffic=0.3,
            domain_moves=0.5,
            max_delay=5e-5,
            gil_switch_interval=1e-6,
            lock_timeout=3.0,
            max_violations=5,
            max_events=0,
        ),
        StressConfig(ops=1000, duration=None, seed=7),
    ],
)
def test_rerun_command_round_trips(cfg: StressConfig) -> None:
    cmd = rerun_command(cfg)
    argv = shlex.split(cmd)
    assert argv[:2] == ["xensched", "stress"]
    args = build_parser().parse_args(argv[2:])
    back = config_from_args(args, args.seed)
    if cfg.ops is not None:
        cfg = replace(cfg, duration=None)
    assert back == cfg
