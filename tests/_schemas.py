"""The JSON Schemas shipped with the packages, read as an installed user reads them.

Every ``--json`` report a test makes goes through :func:`validate`, so a key dropped,
renamed or retyped in a report fails the test that wrote it.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any

from jsonschema import Draft202012Validator

#: Report kind -> the package that ships its schema (``schemas/KIND.schema.json``).
KINDS = {
    "reproduce": "xensched",
    "explore": "xensched",
    "replay": "xensched",
    "protocols": "xensched",
    "scenario": "xensched",
    "litmus": "xensched",
    "mutate": "xensched",
    "stress": "xensched_stress",
    "bench": "xensched_stress",
    "fuzz": "xensched_stress",
}


@cache
def schema(kind: str) -> dict[str, Any]:
    text = (
        files(KINDS[kind])
        .joinpath("schemas", f"{kind}.schema.json")
        .read_text(encoding="utf-8")
    )
    data = json.loads(text)
    assert isinstance(data, dict)
    return data


def validator(kind: str) -> Draft202012Validator:
    return Draft202012Validator(schema(kind))


def validate(kind: str, data: object) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``data`` is a valid ``kind`` report.

    A stress report's ``config.scenario`` and a replay file's ``scenario`` are
    scenarios: checked against that schema too.
    """
    validator(kind).validate(data)
    if kind in ("stress", "replay"):
        assert isinstance(data, dict)
        scenario = (data["config"] if kind == "stress" else data)["scenario"]
        if scenario is not None:
            validator("scenario").validate(scenario)


def errors(kind: str, data: object) -> list[str]:
    """Every way ``data`` breaks the schema, one line each (empty: valid)."""
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
        for e in validator(kind).iter_errors(data)
    ]
