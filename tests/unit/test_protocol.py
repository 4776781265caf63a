"""The switch protocol as named parts: parsing, presets, and each part on its own.

For every part of the fix, removing it (``fixed-without:PART``) must change what the
switch does at that part's one site, and, where the part prevents a problem that
shows without memory reordering, the deterministic reproduce must report it.
"""

from __future__ import annotations

import itertools
import re
import sys
import threading
from pathlib import Path

import pytest

from xensched import ConfigError, Host, SwitchProtocol
from xensched.interaction import Access, Instrument, PointKind
from xensched.protocol import Part
from xensched.reproduce import Transition, reproduce_transition
from xensched.schedule import _switch_fixed, schedule
from xensched.schedulers.base import Scheduler
from xensched.schedulers.credit2 import Credit2
from xensched.smp import ExecContext, bind

X = 3
FIXED, LEGACY = SwitchProtocol.FIXED, SwitchProtocol.LEGACY
README = Path(__file__).resolve().parents[2] / "README.md"


def without(*parts: Part) -> SwitchProtocol:
    return SwitchProtocol.parse("fixed-without:" + ",".join(parts))


# -- parsing -------------------------------------------------------------------------------


def test_presets_parse_to_themselves() -> None:
    assert SwitchProtocol.parse("legacy") is LEGACY
    assert SwitchProtocol.parse("fixed") is FIXED
    assert SwitchProtocol.parse(FIXED) is FIXED
    assert SwitchProtocol.PRESETS == (LEGACY, FIXED)
    assert (str(LEGACY), str(FIXED)) == ("legacy", "fixed")
    assert FIXED.parts == frozenset(Part)
    assert LEGACY.parts == frozenset()
    assert all(FIXED.has(p) and not LEGACY.has(p) for p in Part)


def test_host_takes_a_spec_or_a_protocol() -> None:
    assert Host(2, protocol="legacy").protocol is LEGACY
    p = without(Part.BARRIER)
    assert Host(2, protocol=p).protocol is p
    assert Host(2, protocol="fixed-without:barrier").protocol == p


def test_fixed_without_is_canonical() -> None:
    a = SwitchProtocol.parse("fixed-without:barrier,alloc-no-init")
    b = SwitchProtocol.parse("fixed-without:alloc-no-init, barrier")
    assert a == b
    assert hash(a) == hash(b)
    assert str(a) == "fixed-without:alloc-no-init,barrier"
    assert a.parts == frozenset(Part) - {Part.ALLOC_NO_INIT, Part.BARRIER}
    assert not a.has(Part.BARRIER)
    assert a.has(Part.POINTER_LAST)
    assert a.switch is None
    assert a != FIXED
    assert "alloc-no-init, barrier" in a.describe()


def test_every_part_alone_and_all_of_them_parse() -> None:
    for part in Part:
        p = without(part)
        assert p.parts == frozenset(Part) - {part}
        assert str(p) == f"fixed-without:{part.value}"
    everything = without(*Part)
    assert everything.parts == frozenset()
    # Not legacy: that one keeps its own pre-patch switch.
    assert everything != LEGACY
    assert everything.switch is None


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("newer", "protocol 'newer': choose legacy, fixed, fixed-without:PART"),
        ("", "protocol '': choose legacy"),
        ("fixed-without:", "name at least one part (alloc-no-init, old-lock"),
        ("fixed-without: ,", "unknown part ''"),
        ("fixed-without:barrier,nope", "unknown part 'nope'; parts: alloc-no-init"),
        ("fixed-without:barrier,barrier", "part 'barrier' named twice"),
        ("fixed-without:BARRIER", "unknown part 'BARRIER'"),
        ("no_such_module_xyz:switch", "cannot import 'no_such_module_xyz'"),
        ("xensched.protocol:no_such_function", "has no 'no_such_function'"),
        ("xensched.protocol:WITHOUT", "xensched.protocol.WITHOUT is not callable"),
        (":switch", "write MODULE:FUNCTION"),
        ("xensched.protocol:", "write MODULE:FUNCTION"),
    ],
)
def test_bad_specs_are_one_line_config_errors(spec: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        SwitchProtocol.parse(spec)
    message = str(info.value)
    assert needle in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("source", "spec", "needle"),
    [
        ('raise RuntimeError("boom")\n', "boom_mod_a2:f", "(RuntimeError: boom)"),
        ("def f(:\n", "broken_syntax_a2:f", "(SyntaxError: "),
        ("", "..:f", "cannot import '..' (TypeError: "),
    ],
)
def test_a_module_that_fails_as_it_imports_is_a_config_error(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    source: str,
    spec: str,
    needle: str,
) -> None:
    name = spec.partition(":")[0]
    if source:
        (tmp_path / f"{name}.py").write_text(source, encoding="utf-8")
        monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    with pytest.raises(ConfigError) as info:
        SwitchProtocol.parse(spec)
    message = str(info.value)
    assert message.startswith(f"protocol {spec!r}: cannot import {name!r} ")
    assert needle in message
    assert "\n" not in message


def test_bad_spec_in_host_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown part 'barier'"):
        Host(2, protocol="fixed-without:barier")


def test_every_part_describes_its_removal() -> None:
    for part in Part:
        text = part.describe()
        assert "Without it" in text
        assert re.search(r"[0-9a-f]{10}", text), f"{part}: names no commit"
    assert "relaxed" in Part.BARRIER.describe()


def test_catalog() -> None:
    cat = SwitchProtocol.catalog()
    assert cat["presets"] == {"legacy": [], "fixed": [p.value for p in Part]}
    assert cat["parts"] == [
        {"name": p.value, "description": p.describe()} for p in Part
    ]


# -- the switch, watched from the mover's thread -------------------------------------------


class Watch(Instrument):
    """The mover's points, and those at which problem 1's window is open on ``X``:
    the lock ``schedule_lock[X]`` points to is free but not ``scheduler[X]``'s."""

    def __init__(self, h: Host, ctx: ExecContext) -> None:
        self.h = h
        self.ctx = ctx
        self.points: list[tuple[PointKind, str]] = []
        self.open_at: list[str] = []
        self._meta = threading.Lock()

    def on_point(self, ctx: ExecContext, access: Access) -> None:
        if ctx is not self.ctx:
            return
        kind, label = access.kind, access.label
        if kind is PointKind.MB:
            label = "smp_mb"  # a barrier's object is the CPU's own fence
        mapped = self.h.lock_of(X)
        wanted = self.h.scheduler_of(X).lock_for(X)
        with self._meta:
            self.points.append((kind, label))
            if mapped.owner is None and mapped is not wanted:
                self.open_at.append(f"{kind.value} {label}")


def _add(
    protocol: SwitchProtocol | str, boot: str = "credit", pool: str = "credit2"
) -> tuple[Host, Watch]:
    """Boot ``boot``, free pCPU X (unwatched), then watch it join a ``pool`` pool."""
    h = Host(4, sched=boot, protocol=protocol, dom0_vcpus=0)
    # schedule() on X latches its lock IRQ-safe, as a running host would have.
    with h.on_cpu(X):
        schedule(h)
    h.cpupool_cpu_remove("Pool-0", X)
    h.cpupool_create("p", sched=pool)
    watch = Watch(h, h.toolstack_context("mover"))
    h.bus.add_instrument(watch)
    with bind(watch.ctx):
        h.cpupool_cpu_add("p", X)
    return h, watch


def _kinds(h: Host) -> set[tuple[str, str]]:
    return {(v.kind.value, v.where) for v in h.violations}


def _reproduce(boot: str, pool: str, direction: str, p: SwitchProtocol) -> set[str]:
    t = Transition(boot, pool, direction, p)  # type: ignore[arg-type]
    return set(reproduce_transition(t, pause="mover").problems)


def test_fixed_is_clean_here() -> None:
    """The baseline every part's test departs from."""
    h, watch = _add(FIXED)
    assert h.violations == []
    assert watch.open_at == []
    assert (PointKind.MB, "smp_mb") in watch.points
    assert _reproduce("credit", "credit2", "add", FIXED) == set()


def _index(points: list[tuple[PointKind, str]], kind: PointKind, label: str) -> int:
    return points.index((kind, label))


def test_without_alloc_no_init_the_lock_moves_before_the_swap() -> None:
    p = without(Part.ALLOC_NO_INIT)
    h, watch = _add(p)
    # Site: csched2's init_pdata remapped before the swap, so the lock the switch
    # then takes is the new one, which csched2_switch_sched's ASSERT catches...
    assert ("assert", "csched2_switch_sched") in _kinds(h)
    # ...and meanwhile a free lock that is not Credit's designates X: window [2].
    assert watch.open_at
    assert h.lock_of(X) is h.scheduler_of(X).lock_for(X)
    # Problem 1, seen by reproduce: Credit code under Credit2's runqueue lock.
    assert "lock-mismatch" in _reproduce("credit", "credit2", "add", p)


def test_without_old_lock_no_lock_is_taken_around_the_swap() -> None:
    p = without(Part.OLD_LOCK)
    h, watch = _add(p)
    _, fixed = _add(FIXED)
    old = f"schedule_data[{X}]._lock"
    assert (PointKind.LOCK, old) in fixed.points
    assert (PointKind.LOCK, old) not in watch.points
    assert h.violations == []  # alone on one thread, nothing shows...
    assert watch.open_at  # ...but X's free lock is not its scheduler's meanwhile
    problems = _reproduce("credit", "credit2", "add", p)
    assert {"lock-mismatch", "mutual-exclusion"} <= problems


def test_without_lock_irq_the_old_lock_is_taken_with_irqs_on() -> None:
    h, _ = _add(without(Part.LOCK_IRQ))
    kinds = _kinds(h)
    # check_lock(): X's lock was latched IRQ-safe by schedule().
    assert ("assert", "check_lock") in kinds
    assert (
        "assert",
        "csched2_switch_sched",
    ) in kinds  # ASSERT(!local_irq_is_enabled())
    h2, _ = _add(without(Part.LOCK_IRQ), "credit2", "credit")
    assert ("assert", "csched_switch_sched") in _kinds(h2)


def test_without_prv_lock_no_irq_credit2_reenables_irqs() -> None:
    h, _ = _add(without(Part.PRV_LOCK_NO_IRQ))
    assert _kinds(h) == {("assert", "_spin_lock_irq")}
    # Only Credit2's switch_sched has a private lock to take.
    h2, _ = _add(without(Part.PRV_LOCK_NO_IRQ), "credit2", "rtds")
    assert h2.violations == []


def test_without_pointer_last_the_lock_is_rerouted_before_the_swap() -> None:
    p = without(Part.POINTER_LAST)
    h, watch = _add(p)
    _, fixed = _add(FIXED)
    sched, lock = f"per_cpu(scheduler, {X})", f"schedule_data[{X}].schedule_lock"
    store = PointKind.STORE
    assert _index(fixed.points, store, sched) < _index(fixed.points, store, lock)
    assert _index(watch.points, store, lock) < _index(watch.points, store, sched)
    assert h.violations == []
    # Holding the old lock does not help: X already points at Credit2's runqueue
    # lock, which is free, while X still runs Credit: problem 1's window.
    assert watch.open_at == [f"store per_cpu(scheduler, {X})"]
    # The previous session's finding: reproduce catches it.
    assert "lock-mismatch" in _reproduce("credit", "credit2", "add", p)


@pytest.mark.parametrize("pool", ["credit", "credit2", "rtds", "arinc653"])
def test_without_barrier_only_the_smp_mb_point_goes(pool: str) -> None:
    p = without(Part.BARRIER)
    h, watch = _add(p, "credit", pool)
    _, fixed = _add(FIXED, "credit", pool)
    mb = (PointKind.MB, "smp_mb")
    # ARINC653's switch_sched has no barrier in 4.7.0 either.
    assert fixed.points.count(mb) == (pool != "arinc653")
    assert mb not in watch.points
    assert [x for x in fixed.points if x != mb] == watch.points
    assert h.violations == []


def test_without_barrier_reproduce_sees_nothing_yet() -> None:
    """Sequentially consistent memory: the missing barrier is not observable."""
    t = Transition("credit", "credit2", "add", without(Part.BARRIER))
    r = reproduce_transition(t, pause="mover")
    f = reproduce_transition(
        Transition("credit", "credit2", "add", FIXED), pause="mover"
    )
    assert r.problems == f.problems == ()
    assert r.points == f.points - 1


def test_without_unlock_by_pointer_the_unlock_asserts() -> None:
    h, _ = _add(without(Part.UNLOCK_BY_POINTER))
    assert _kinds(h) == {("assert", "pcpu_schedule_unlock_irq")}
    # The lock is still released: nothing is left held.
    assert not h.lock_of(X).locked()
    assert not h.percpu[X].schedule_data._lock.locked()
    # When switch_sched does not move the lock, the ASSERT holds.
    h2, _ = _add(without(Part.UNLOCK_BY_POINTER), "credit", "credit")
    assert h2.violations == []


def test_without_deinit_before_free_problems_2_and_3() -> None:
    p = without(Part.DEINIT_BEFORE_FREE)
    h, _ = _add(p, "rtds", "credit2")
    kinds = _kinds(h)
    assert ("assert", "rt_free_pdata") in kinds  # problem 2
    assert ("lock-clobbered", "schedule_cpu_switch") in kinds  # problem 3
    assert h.lock_of(X) is h.percpu[X].schedule_data._lock
    problems = _reproduce("rtds", "credit2", "add", p)
    assert {"assert", "lock-clobbered", "mutual-exclusion"} <= problems


@pytest.mark.parametrize("pair", list(itertools.combinations(Part, 2)), ids=str)
def test_any_two_parts_removed_still_run(pair: tuple[Part, Part]) -> None:
    """A combination is a runnable protocol: moves complete, nothing crashes."""
    for boot, pool in [("credit", "credit2"), ("rtds", "credit"), ("credit2", "rtds")]:
        h, _ = _add(without(*pair), boot, pool)
        assert h.scheduler_of(X) is h.pool("p").sched
        with h.on_cpu(X):
            schedule(h)
        h.cpupool_cpu_remove("p", X)
        assert h.scheduler_of(X) is h.ops
        assert not any(v.kind.value == "crash" for v in h.violations)
        assert not any(lock.locked() for lock in (h.lock_of(0), h.lock_of(X)))


def test_every_part_removed_still_runs() -> None:
    p = without(*Part)
    problems = _reproduce("credit2", "rtds", "add", p)
    assert "crash" not in problems
    assert problems  # it is broken, and says how


# -- a user's schedule_cpu_switch ------------------------------------------------------


def _readme_module() -> str:
    """The worked example of the README: the python block that opens with ``# mymod.py``."""
    text = README.read_text(encoding="utf-8")
    m = re.search(r"```python\n(# mymod\.py[^\n]*\n.*?)```", text, re.S)
    assert m is not None, "README lost its mymod.py example"
    return m.group(1)


@pytest.fixture
def mymod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "mymod.py").write_text(_readme_module(), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "mymod", raising=False)
    return "mymod:switch"


def test_the_readme_protocol_is_fixed_without_barrier(mymod: str) -> None:
    p = SwitchProtocol.parse(mymod)
    assert str(p) == "mymod:switch"
    assert p.switch is not None
    assert p.parts == frozenset()
    assert "mymod:switch" in p.describe()
    h, watch = _add(p)
    _, reference = _add(without(Part.BARRIER))
    assert watch.points == reference.points
    assert h.violations == []
    assert h.lock_of(X) is h.scheduler_of(X).lock_for(X)


@pytest.mark.slow
def test_a_user_protocol_runs_through_reproduce(mymod: str) -> None:
    for direction in ("add", "remove"):
        mine = reproduce_transition(
            Transition("rtds", "credit2", direction, SwitchProtocol.parse(mymod)),
            pause="mover",
        )
        ref = reproduce_transition(
            Transition("rtds", "credit2", direction, without(Part.BARRIER)),
            pause="mover",
        )
        assert (mine.problems, mine.points) == (ref.problems, ref.points)
        assert mine.to_json()["protocol"] == "mymod:switch"


def test_a_user_protocol_is_called_for_real_switches_only() -> None:
    calls: list[tuple[int, str, str]] = []

    def spy(h: Host, cpu: int, old_ops: Scheduler, new_ops: Scheduler) -> None:
        calls.append((cpu, repr(old_ops), repr(new_ops)))
        _switch_fixed(h, cpu, old_ops, new_ops)

    h = Host(4, protocol=SwitchProtocol("spy", frozenset(Part), spy), dom0_vcpus=0)
    h.cpupool_cpu_remove("Pool-0", X)  # Pool-0 -> free: same scheduler, no call
    assert calls == []
    h.cpupool_create("p", sched="credit2")
    h.cpupool_cpu_add("p", X)
    assert calls == [(X, "<credit Pool-0>", "<credit2 p>")]
    assert h.violations == []


@pytest.mark.parametrize(
    ("protocol", "pre_patch"),
    [(LEGACY, True), (FIXED, False), (without(Part.ALLOC_NO_INIT), False)],
    ids=str,
)
def test_boot_runs_the_init_pdata_of_the_hosts_era(
    monkeypatch: pytest.MonkeyPatch, protocol: SwitchProtocol, pre_patch: bool
) -> None:
    """A legacy host is 94734ab7c3^ from boot on; every other one boots as 4.7.0."""
    seen: list[bool] = []
    real = Credit2.init_pdata

    def spy(self: Credit2, pdata: object, cpu: int, *, pre_patch: bool = False) -> None:
        seen.append(pre_patch)
        real(self, pdata, cpu, pre_patch=pre_patch)

    monkeypatch.setattr(Credit2, "init_pdata", spy)
    h = Host(2, sched="credit2", protocol=protocol)
    assert seen == [pre_patch, pre_patch]
    assert h.violations == []
