"""The line between shared fields and private state (xensched.fields) holds.

Every object of a built host is walked: an attribute is a shared field, a constant, or
declared private with its reason. Planted plain state shared between CPUs makes the
walk fail, so the check can fire.
"""

from __future__ import annotations

import ast
import itertools
import pathlib
import threading

import pytest

import xensched
from xensched import Host
from xensched.fields import audit, private_fields, rebound, snapshot
from xensched.schedulers import SCHEDULERS
from xensched.schedulers.credit import Credit

SCHEDS = list(SCHEDULERS)


def _workload(h: Host) -> None:
    """Every operation the host has, once or more, on one thread."""
    d1 = h.domain("d1")
    for _ in range(3):
        for cpu in range(h.nr_cpus):
            h.schedule(cpu)
    h.sleep(d1.vcpus[0])
    h.wake(d1.vcpus[0])
    h.migrate(d1.vcpus[1], 3)
    for cpu in range(h.nr_cpus):
        h.schedule(cpu)
    # A domain moves only once off every pCPU (domain_pause() waits for that, and
    # nobody else runs schedule() here).
    for v in d1.vcpus:
        h.sleep(v)
    for cpu in range(h.nr_cpus):
        h.schedule(cpu)
    h.cpupool_migrate("d1", "Pool-0")
    for v in d1.vcpus:
        h.wake(v)
    for cpu in range(h.nr_cpus):
        h.schedule(cpu)
    h.cpupool_cpu_remove("p", 3)
    h.cpupool_cpu_add("Pool-0", 3)
    d2 = h.create_domain("d2", "Pool-0", vcpus=1)
    for cpu in range(h.nr_cpus):
        h.schedule(cpu)
    h.sleep(d2.vcpus[0])
    for cpu in range(h.nr_cpus):
        h.schedule(cpu)
    h.destroy_domain("d2")
    h.cpupool_create("q", sched="rtds")
    h.cpupool_destroy("q")


def _host(boot: str, pool: str) -> Host:
    h = Host(4, sched=boot, protocol="fixed")
    h.cpupool_cpu_remove("Pool-0", 3)
    h.cpupool_create("p", sched=pool)
    h.cpupool_cpu_add("p", 3)
    h.create_domain("d1", "p", vcpus=2)
    return h


@pytest.mark.parametrize(("boot", "pool"), list(itertools.product(SCHEDS, SCHEDS)))
def test_every_attribute_is_shared_constant_or_declared(boot: str, pool: str) -> None:
    h = _host(boot, pool)
    assert [p.describe() for p in audit(h)] == []
    before = snapshot(h)
    _workload(h)
    assert h.violations == []
    assert [p.describe() for p in audit(h)] == []
    assert rebound(before, snapshot(h)) == []


def test_a_planted_shared_list_fails_the_walk() -> None:
    h = _host("credit", "credit2")
    h.ops.seen_cpus = []  # type: ignore[attr-defined]  # plain state, not a field
    [problem] = audit(h)
    assert problem.owner == "Credit"
    assert problem.attr == "seen_cpus"
    assert "mutable list" in problem.problem


def test_a_planted_raw_lock_fails_the_walk() -> None:
    h = _host("credit", "credit2")
    h.pool("p").sched.guard = threading.Lock()  # type: ignore[attr-defined]
    [problem] = audit(h)
    assert problem.attr == "guard"
    assert "not a model value" in problem.problem


def test_a_cell_holding_a_mutable_value_fails_the_walk() -> None:
    h = _host("credit", "credit2")
    h.percpu[1].schedule_data.sched_priv.value = {"plain": 1}
    [problem] = audit(h)
    assert problem.owner == "schedule_data[1].sched_priv"
    assert "mutable dict" in problem.problem


def test_a_planted_plain_counter_is_caught_changing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A plain int written by schedule() on every pCPU: no container, but it changes
    without an interaction point, and the snapshots see it."""
    h = _host("credit", "credit2")
    h.ops.last_cpu = -1  # type: ignore[attr-defined]
    original = Credit.do_schedule

    def do_schedule(self: Credit, cpu: int, now: int) -> xensched.Vcpu:
        self.last_cpu = cpu  # type: ignore[attr-defined]
        return original(self, cpu, now)

    monkeypatch.setattr(Credit, "do_schedule", do_schedule)
    before = snapshot(h)
    _workload(h)
    [change] = rebound(before, snapshot(h))
    assert change.startswith("Credit.last_cpu at host.")
    assert "changed from -1 to " in change


def test_every_private_declaration_gives_a_reason() -> None:
    h = _host("credit2", "credit")
    _workload(h)
    classes: set[type] = {type(h)}
    classes |= {type(s) for s in (h.ops, *(c.sched for c in h.cpupool_list))}
    classes |= {type(pc.schedule_data) for pc in h.percpu}
    declared = {c: private_fields(c) for c in classes}
    assert any(declared.values())
    for cls, fields in declared.items():
        for name, reason in fields.items():
            assert len(reason.split()) >= 3, f"{cls.__name__}.{name}: {reason!r}"


# -- the model reads no clock, draws no random number, never peeks -------------------

_MODEL = [
    "xensched/schedule.py",
    "xensched/cpupool.py",
    "xensched/domain.py",
    "xensched/percpu.py",
    "xensched/sched_if.py",
    *sorted(
        str(p.relative_to(pathlib.Path(xensched.__file__).parent.parent))
        for p in (pathlib.Path(xensched.__file__).parent / "schedulers").glob("*.py")
    ),
]
# Checks and emulator-only hooks may read without a point (see memory.py).
_MAY_PEEK = {"check_switched", "lock_for", "runqueues"}


def _tree(rel: str) -> ast.Module:
    root = pathlib.Path(xensched.__file__).parent.parent
    return ast.parse((root / rel).read_text(), rel)


@pytest.mark.parametrize("rel", _MODEL)
def test_model_code_never_touches_clocks_sleeps_or_randomness(rel: str) -> None:
    imported = set()
    for node in ast.walk(_tree(rel)):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"time", "random", "threading", "secrets"}, rel


@pytest.mark.parametrize("rel", _MODEL)
def test_model_code_never_peeks(rel: str) -> None:
    offenders = []
    for fn in ast.walk(_tree(rel)):
        if not isinstance(fn, ast.FunctionDef) or fn.name in _MAY_PEEK:
            continue
        for node in ast.walk(fn):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "peek"
            ):
                offenders.append(f"{rel}:{node.lineno} in {fn.name}()")
    assert offenders == []
