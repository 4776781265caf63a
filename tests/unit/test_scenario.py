"""Scenarios: the value, its JSON, its validation and the one host builder."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
from typing import Any

import pytest

from xensched import ConfigError, Host, SwitchProtocol
from xensched.scenario import (
    BUILTIN,
    CpuOp,
    DomainSpec,
    PcpuLoop,
    PcpuOps,
    PoolSpec,
    Scenario,
    Toolstack,
    XlOp,
    build_host,
    builtin,
    load_scenario,
    patch_move,
    stress_default,
)
from xensched.schedulers import SCHEDULERS

POOL0 = "Pool-0"


def _flag(obj: object, name: str) -> object:
    # Plain attribute today, a shared cell later: read either without a point.
    value = getattr(obj, name)
    peek = getattr(value, "peek", None)
    return peek() if callable(peek) else value


def _shape(h: Host) -> dict[str, Any]:
    """What a builder decides: pools, their pCPUs and domains, where vCPUs are."""
    return {
        "pools": [(p.name, p.sched, p.cpus, p.domains) for p in h.list_cpupools()],
        "vcpus": [
            (v.name, v.processor.peek(), _flag(v, "awake"), _flag(v, "migrating"))
            for v in h.iter_vcpus()
        ],
        "protocol": str(h.protocol),
        "locks": [(cpu, h.lock_of(cpu).name) for cpu in range(h.nr_cpus)],
        "violations": len(h.violations),
    }


# -- JSON ---------------------------------------------------------------------------------
PARAMETERISED = [
    *(
        ("patch-move", {"boot": b, "pool": p, "direction": d, "protocol": pr})
        for b, p, d, pr in itertools.product(
            SCHEDULERS, SCHEDULERS, ("add", "remove"), ("legacy", "fixed")
        )
    ),
    ("stress-default", {"cpus": 8, "boot": "rtds", "controllers": 3}),
    ("round-trip", {"pool": "rtds", "boot": "credit2"}),
]


@pytest.mark.parametrize("name", list(BUILTIN))
def test_every_builtin_round_trips_through_json(name: str) -> None:
    sc = builtin(name)
    text = sc.to_json()
    assert json.loads(text)["version"] == 1
    assert Scenario.from_json(text) == sc
    assert Scenario.from_json(sc.to_json(indent=None)) == sc


@pytest.mark.parametrize(("name", "params"), PARAMETERISED)
def test_parameterised_builtins_round_trip(name: str, params: dict[str, Any]) -> None:
    sc = builtin(name, **params)
    assert Scenario.from_json(sc.to_json()) == sc


def test_ops_are_strings_in_json() -> None:
    data = patch_move(direction="remove").to_dict()
    assert data["setup"] == [
        "cpupool-cpu-add p 3",
        "vcpu-migrate d1v1 3",
        "vcpu-sleep d1v1",
    ]
    assert data["threads"][0]["ops"] == ["cpupool-cpu-remove p 3"]
    assert data["threads"][1]["ops"] == ["schedule", "schedule", "idle 8"]
    assert XlOp.parse("cpupool-cpu-add p 3") == XlOp("cpupool-cpu-add", ("p", "3"))
    assert str(CpuOp("wake", ("d1v1",))) == "wake d1v1"


def test_a_scenario_file_that_is_not_text_is_a_config_error(tmp_path: Any) -> None:
    f = tmp_path / "s.json"
    f.write_bytes(b"\xff\xfe{}")
    with pytest.raises(ConfigError, match=r"s\.json: not UTF-8 text \(invalid start"):
        load_scenario(str(f))


def test_load_scenario_by_name_file_and_inline(tmp_path: Any) -> None:
    sc = patch_move(boot="rtds")
    f = tmp_path / "s.json"
    f.write_text(sc.to_json(), encoding="utf-8")
    assert load_scenario(str(f)) == sc
    assert load_scenario(sc.to_json(indent=None)) == sc
    assert load_scenario("patch-move") == patch_move()
    with pytest.raises(ConfigError, match=r"not a built-in .* not a readable file"):
        load_scenario(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.json: not JSON"):
        load_scenario(str(bad))


# -- validation ---------------------------------------------------------------------------
def _base() -> dict[str, Any]:
    return patch_move().to_dict()


def _set(path: str, value: object) -> dict[str, Any]:
    data = copy.deepcopy(_base())
    node: Any = data
    keys = [int(k) if k.isdigit() else k for k in path.split(".")]
    for k in keys[:-1]:
        node = node[k]
    if value is _DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return data


_DELETE = object()

BAD_FIELDS = [
    ("version", 2, "version: 2 is not supported"),
    ("version", _DELETE, "scenario.version: missing"),
    ("name", "", "name '': must be a non-empty word"),
    ("name", 3, "scenario.name: expected a string, got an integer"),
    ("cpus", 0, "cpus=0: must be 1 to 256"),
    ("cpus", "4", "scenario.cpus: expected an integer, got a string"),
    ("topology", "2y2", "topology: topology '2y2': expected SOCKETSxCORES"),
    ("topology", "2x4", "topology 2x4 has 8 pCPUs, not cpus=4"),
    ("boot", "bvt", "boot: unknown scheduler 'bvt'"),
    ("protocol", "fixed-ish", "protocol: protocol 'fixed-ish': choose legacy, fixed"),
    ("dom0_vcpus", -1, "dom0_vcpus=-1: must be >= 0"),
    ("pools.0.sched", "sedf", "pools[0]: pool 'p': unknown scheduler 'sedf'"),
    ("pools.0.name", "Pool-0", "pools[0]: pool name 'Pool-0' is taken"),
    ("pools.0.cpus", [9], "pools[0].cpus: cpu9 does not exist (cpus=4)"),
    ("pools.0.cpus", [3], "free_cpus: cpu3 is also in 'p'"),
    ("pools.0.cpus", [0, 1, 2], "they take every pCPU"),
    ("pools.0.cpus", ["2"], "scenario.pools[0].cpus[0]: expected an integer"),
    ("pools.0.colour", "red", "scenario.pools[0].colour: unknown field"),
    ("free_cpus", [4], "free_cpus: cpu4 does not exist"),
    ("domains.0.vcpus", 0, "domains[0].vcpus=0: must be in [1, 128]"),
    ("domains.0.pool", "q", "domains[0].pool 'q': no such pool"),
    ("domains.0.name", "Domain-0", "domains[0].name 'Domain-0': must be a new"),
    ("setup.0", "vcpu-sleep", "setup[0] 'vcpu-sleep': 'vcpu-sleep' takes VCPU"),
    ("setup.0", "cpupool-cpu-add p x", "CPU must be an integer, not 'x'"),
    ("setup.0", "xl-dance", "setup[0] 'xl-dance': unknown verb 'xl-dance'"),
    ("setup.0", 5, "scenario.setup[0]: expected an operation string"),
    ("threads.0.kind", "vcpu", "scenario.threads[0].kind: 'vcpu'; choose one of"),
    ("threads.0.name", "pcpu9", "threads[0].name 'pcpu9': must be a word not"),
    ("threads.0.moves", 3, "threads[0]: give ops or moves, not both"),
    ("threads.0.attempts", 0, "threads[0].attempts=0: must be >= 1"),
    ("threads.0.interval", -1, "threads[0].interval=-1.0: must be a finite number"),
    ("threads.0.interval", 1e9, "threads[0].interval=1000000000.0: must be a finite"),
    ("threads.0.domain_moves", 2, "threads[0].domain_moves=2.0: must be a prob"),
    ("threads.1.cpu", 2, "threads[2].cpu: pCPU 2 has two programs"),
    ("threads.1.cpu", 7, "threads[1].cpu: cpu7 does not exist"),
    ("threads.1.ops.2", "idle 0", "threads[1].ops[2] 'idle 0': 'idle': N=0 is out"),
    ("threads.1.ops.0", "dance", "threads[1].ops[0] 'dance': unknown verb"),
    ("threads", {}, "scenario.threads: expected a list, got an object"),
]


@pytest.mark.parametrize(
    ("path", "value", "message"), BAD_FIELDS, ids=[b[0] for b in BAD_FIELDS]
)
def test_each_bad_field_is_named_in_one_line(
    path: str, value: object, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        Scenario.from_dict(_set(path, value))
    text = str(info.value)
    assert message in text
    assert "\n" not in text


def test_loop_validation() -> None:
    sc = stress_default()
    with pytest.raises(ConfigError, match=r"threads\[0\]\.traffic=1\.5"):
        sc.replace(threads=(PcpuLoop(0, None, 1.5),))
    with pytest.raises(ConfigError, match=r"threads\[0\]\.schedules=-1"):
        sc.replace(threads=(PcpuLoop(0, -1),))
    with pytest.raises(ConfigError, match=r"threads\[1\]\.name 'xl': given twice"):
        sc.replace(threads=(Toolstack("xl"), Toolstack("xl")))
    with pytest.raises(ConfigError, match=r"threads\[0\]\.moves=-2"):
        sc.replace(threads=(Toolstack("xl", moves=-2),))
    with pytest.raises(TypeError):
        sc.replace(colour="red")


def test_not_json_and_not_an_object() -> None:
    with pytest.raises(ConfigError, match=r"^not JSON"):
        Scenario.from_json("{nope")
    with pytest.raises(ConfigError, match=r"^scenario: expected an object, got a list"):
        Scenario.from_json("[]")


def test_builtin_errors() -> None:
    with pytest.raises(ConfigError, match="no built-in scenario 'nope'"):
        builtin("nope")
    with pytest.raises(ConfigError, match="has no parameter 'direction'"):
        builtin("stress-default", direction="add")
    with pytest.raises(ConfigError, match="direction 'sideways'"):
        builtin("patch-move", direction="sideways")


def test_bounded() -> None:
    sc = stress_default()
    assert not sc.is_bounded()
    b = sc.bounded(schedules=7, moves=2)
    assert b.is_bounded()
    assert {t.schedules for t in b.threads if isinstance(t, PcpuLoop)} == {7}
    assert {t.moves for t in b.threads if isinstance(t, Toolstack)} == {2}
    assert patch_move().is_bounded()


# -- the one builder ------------------------------------------------------------------------
def _old_runner_host(
    cpus: int,
    boot: str,
    pools: tuple[PoolSpec, ...],
    domains: int,
    vcpus: int,
    protocol: str,
) -> Host:
    # xensched_stress.runner._Run._setup before scenarios.
    h = Host(cpus, sched=boot, protocol=SwitchProtocol.FIXED, dom0_vcpus=1)
    for p in pools:
        h.cpupool_create(p.name, p.sched)
        for cpu in p.cpus:
            h.cpupool_cpu_remove(POOL0, cpu)
            h.cpupool_cpu_add(p.name, cpu)
    with_cpus = [c for c in h.cpupool_list if c.cpu_valid.peek()]
    for i in range(domains):
        h.create_domain(f"d{i + 1}", with_cpus[i % len(with_cpus)], vcpus=vcpus)
    h.protocol = SwitchProtocol.parse(protocol)
    return h


def _old_bench_host(
    cpus: int, boot: str, pools: tuple[PoolSpec, ...], domains: int, vcpus: int
) -> Host:
    # xensched_stress.bench._shaped_host before scenarios.
    h = Host(cpus, sched=boot)
    for p in pools:
        h.cpupool_create(p.name, p.sched)
        for cpu in p.cpus:
            h.cpupool_cpu_remove(POOL0, cpu)
            h.cpupool_cpu_add(p.name, cpu)
    names = [POOL0, *(p.name for p in pools)]
    for i in range(domains):
        h.create_domain(f"d{i + 1}", names[i % len(names)], vcpus=vcpus)
    return h


def _old_reproduce_host(boot: str, pool: str, direction: str, protocol: str) -> Host:
    # xensched.reproduce.build_host before scenarios.
    h = Host(4, sched=boot, protocol=SwitchProtocol.FIXED, dom0_vcpus=1)
    h.cpupool_cpu_remove(POOL0, 2)
    h.cpupool_cpu_remove(POOL0, 3)
    h.cpupool_create("p", sched=pool)
    h.cpupool_cpu_add("p", 2)
    d1 = h.create_domain("d1", "p", vcpus=2)
    if direction == "remove":
        h.cpupool_cpu_add("p", 3)
        h.migrate(d1.vcpus[1], 3)
    h.sleep(d1.vcpus[1])
    h.bus.clear_violations()
    h.protocol = SwitchProtocol.parse(protocol)
    return h


STRESS_SHAPES = [
    (4, "credit", (), 2, 2, "fixed"),
    (4, "rtds", (), 3, 1, "legacy"),
    (
        8,
        "credit2",
        (PoolSpec("a", "rtds", (2, 3)), PoolSpec("b", "credit", (6,))),
        5,
        2,
        "fixed",
    ),
    (2, "arinc653", (PoolSpec("q", "credit2", (1,)),), 2, 1, "fixed"),
]


@pytest.mark.parametrize("shape", STRESS_SHAPES)
def test_build_host_matches_the_old_stress_and_bench_builders(
    shape: tuple[int, str, tuple[PoolSpec, ...], int, int, str],
) -> None:
    cpus, boot, pools, domains, vcpus, protocol = shape
    sc = stress_default(
        cpus, boot=boot, pools=pools, domains=domains, vcpus=vcpus, protocol=protocol
    )
    layout = sc.pools
    new = _shape(build_host(sc))
    assert new == _shape(_old_runner_host(cpus, boot, layout, domains, vcpus, protocol))
    bench = _shape(_old_bench_host(cpus, boot, layout, domains, vcpus))
    # The bench built with the default (fixed) protocol and never switched.
    assert new | {"protocol": "fixed"} == bench


@pytest.mark.parametrize(
    ("boot", "pool", "direction"),
    [
        ("credit", "credit2", "add"),
        ("credit", "credit2", "remove"),
        ("rtds", "credit2", "remove"),
        ("credit2", "rtds", "add"),
        ("arinc653", "credit", "remove"),
    ],
)
def test_build_host_matches_the_old_reproduce_builder(
    boot: str, pool: str, direction: str
) -> None:
    new = build_host(patch_move(boot, pool, direction, "legacy"))
    old = _old_reproduce_host(boot, pool, direction, "legacy")
    assert _shape(new) == _shape(old)


def test_build_host_places_domains_and_names_a_refused_step() -> None:
    sc = Scenario(
        "placed",
        cpus=4,
        pools=(PoolSpec("a", "credit2", (2, 3)), PoolSpec("empty", "rtds")),
        domains=(
            DomainSpec("x", 1),
            DomainSpec("y", 1, "a"),
            DomainSpec("z", 1),
            DomainSpec("w", 1),
        ),
    )
    pools = {p.name: p.domains for p in build_host(sc).list_cpupools()}
    # Round-robin over the pools with pCPUs, counting only unplaced domains.
    assert pools == {
        POOL0: ("Domain-0", "x", "w"),
        "a": ("y", "z"),
        "empty": (),
    }
    refused = sc.replace(setup=(XlOp("cpupool-destroy", ("a",)),))
    with pytest.raises(ConfigError, match=r"'cpupool-destroy a': EBUSY"):
        build_host(refused)


def test_pcpu_ops_program_shape() -> None:
    sc = patch_move()
    mover, x, peer = sc.threads
    assert isinstance(mover, Toolstack)
    assert mover.name == "xl-mover"
    assert isinstance(x, PcpuOps)
    assert (x.cpu, peer.name) == (3, "pcpu2")


def test_setup_schedule_starts_a_vcpu_running() -> None:
    sc = builtin("busy-peer-remove")
    assert XlOp.parse("schedule 3") in sc.setup
    assert Scenario.from_json(sc.to_json()) == sc
    h = build_host(sc)
    d1v0 = h.vcpu("d1v0")
    assert h.percpu[3].schedule_data.curr.peek() is d1v0
    # Busy, so that Credit's load balancing trylocks it.
    assert 3 not in h.scheduler_of(3).idlers.peek()  # type: ignore[attr-defined]


def test_schedule_is_for_setup_only_and_names_an_existing_cpu() -> None:
    sc = builtin("busy-peer-remove")
    mover = sc.threads[0]
    assert isinstance(mover, Toolstack)
    bad = dataclasses.replace(mover, ops=(XlOp.parse("schedule 3"),))
    with pytest.raises(
        ConfigError,
        match=r"threads\[0\]\.ops\[0\] 'schedule 3': 'schedule' is for setup",
    ):
        sc.replace(threads=(bad, *sc.threads[1:]))
    with pytest.raises(ConfigError, match=r"setup\[0\] 'schedule 5': cpu5 does not"):
        sc.replace(setup=(XlOp.parse("schedule 5"),))
