"""The line between shared fields and private state, walked and checked.

Mirrors nothing in Xen. The interaction layer sees an access only if it goes through a
shared field (:class:`~xensched.memory.Cell` and its kinds) or a lock. A plain Python
attribute that two emulated CPUs touch is invisible to every driver, memory model and
detector, so the model has none: every attribute of a model object is

- a :class:`~xensched.interaction.Shared` object (a cell, a mask, a runqueue, a lock, a
  critical section), whose value is itself immutable or a model object;
- a constant: set when the object is made and never rebound (names, ids, the domain a
  vCPU belongs to, a tuple of cells); or
- declared in the class's ``PRIVATE`` mapping, attribute name -> the reason it needs no
  interaction point (private to one CPU, or the emulator's own bookkeeping).

:func:`audit` walks every object reachable from a host and reports what breaks the
first two rules statically (a mutable container, a cell holding one); :func:`snapshot`
and :func:`rebound` catch a plain attribute that changes while the host runs. The test
suite runs both over a host that has been through every operation.
"""

from __future__ import annotations

import dataclasses
import enum
import types
from dataclasses import dataclass
from typing import Any

from xensched.interaction import Shared
from xensched.memory import Cell

#: Modules whose objects are the emulator itself, not the Xen model: never walked into.
_EMULATOR = ("xensched.interaction", "xensched.smp", "xensched.drivers")
_SCALARS = (type(None), bool, int, float, complex, str, bytes, range, enum.Enum)
_CONTAINERS = (list, dict, set, bytearray)


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One attribute that is neither a shared field, a constant, nor declared."""

    path: str  # how the walk reached it, e.g. host.percpu[2].schedule_data.now
    owner: str  # the class that has the attribute
    attr: str
    problem: str

    def describe(self) -> str:
        return f"{self.path}: {self.owner}.{self.attr} {self.problem}"


def private_fields(cls: type) -> dict[str, str]:
    """The ``PRIVATE`` declarations of ``cls`` and its bases (name -> reason)."""
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        out.update(getattr(klass, "PRIVATE", {}))
    return out


def _is_model(obj: object) -> bool:
    module = type(obj).__module__
    return module.startswith("xensched.") and not module.startswith(_EMULATOR)


def _attrs(obj: object) -> dict[str, Any]:
    names: list[str] = []
    for klass in type(obj).__mro__:
        slots = klass.__dict__.get("__slots__", ())
        names.extend([slots] if isinstance(slots, str) else slots)
    values = {n: getattr(obj, n) for n in names if hasattr(obj, n)}
    values.update(getattr(obj, "__dict__", {}))
    return {n: v for n, v in values.items() if n not in ("__dict__", "__weakref__")}


def _immutable(value: object) -> bool:
    if isinstance(value, _SCALARS):
        return True
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return bool(value.__dataclass_params__.frozen)  # type: ignore[attr-defined]
    return isinstance(value, types.FunctionType | types.MethodType | type)


class _Walk:
    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.problems: list[FieldProblem] = []
        # (id(owner), attr) -> (where, owner, value): the owner is kept so that its
        # id is not reused by another object between two snapshots.
        self.fields: dict[tuple[int, str], tuple[str, object, object]] = {}

    def value(self, value: object, path: str, owner: str, attr: str) -> None:
        """A value held by an attribute or a cell: immutable, or a model object."""
        if isinstance(value, tuple | frozenset):
            for i, item in enumerate(value):
                self.value(item, f"{path}[{i}]", owner, attr)
        elif isinstance(value, types.MappingProxyType):
            for k, item in value.items():
                self.value(item, f"{path}[{k!r}]", owner, attr)
        elif isinstance(value, Shared):
            if isinstance(value, Cell):
                self.value(value.peek(), f"{path}.value", value.label, "value")
        elif isinstance(value, _CONTAINERS):
            self.problems.append(
                FieldProblem(
                    path,
                    owner,
                    attr,
                    f"holds a mutable {type(value).__name__}: make it a shared field "
                    "(Cell, CpuMask, RunQueue) of immutable values, or declare it in "
                    f"{owner}.PRIVATE with the reason",
                )
            )
        elif _is_model(value):
            self.obj(value, path)
        elif not _immutable(value) and type(value) is not object:
            # Anything else (a raw threading.Lock, a foreign object) is state the
            # interaction layer cannot see. A bare object() is an opaque token.
            self.problems.append(
                FieldProblem(
                    path,
                    owner,
                    attr,
                    f"holds a {type(value).__name__}, which is not a model value: "
                    f"declare it in {owner}.PRIVATE with the reason",
                )
            )

    def obj(self, obj: object, path: str) -> None:
        if id(obj) in self.seen:
            return
        self.seen.add(id(obj))
        owner = type(obj).__name__
        declared = private_fields(type(obj))
        for attr, value in _attrs(obj).items():
            if attr in declared:
                continue
            where = f"{path}.{attr}"
            if not isinstance(value, Shared):
                self.fields[(id(obj), attr)] = (
                    f"{owner}.{attr} at {where}",
                    obj,
                    value,
                )
            self.value(value, where, owner, attr)


def audit(root: object, name: str = "host") -> list[FieldProblem]:
    """Every attribute reachable from ``root`` that holds mutable plain state."""
    walk = _Walk()
    walk.obj(root, name)
    return walk.problems


Snapshot = dict[tuple[int, str], tuple[str, object, object]]


def snapshot(root: object, name: str = "host") -> Snapshot:
    """The plain (non-shared, undeclared) attributes reachable from ``root`` and the
    object each holds now; compare two with :func:`rebound`."""
    walk = _Walk()
    walk.obj(root, name)
    return walk.fields


def rebound(before: Snapshot, after: Snapshot) -> list[str]:
    """Plain attributes present in both snapshots that now hold another object: state
    that changed without an interaction point."""
    return [
        f"{where} changed from {old!r} to {after[key][2]!r} without an interaction "
        "point: make it a shared field, or declare it PRIVATE with the reason"
        for key, (where, owner, old) in before.items()
        if key in after and after[key][1] is owner and after[key][2] is not old
    ]
