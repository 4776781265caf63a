"""Helpers of the plugin's pytester tests."""

from __future__ import annotations

import re

import pytest

# The inner projects get the outer project's strict settings, so that a plugin warning
# or an unregistered marker fails there as it would here. Hypothesis's plugin is left
# out: pytester restores sys.modules after each in-process run, so every run would
# import (and assertion-rewrite) all of hypothesis again, about 0.5 s each.
INNER_INI = """\
[pytest]
addopts = -p no:cacheprovider -p no:hypothesispytest --strict-markers --strict-config
filterwarnings = error
"""


def inner_ini(extra: str) -> str:
    """The inner projects' ini with more lines."""
    return INNER_INI + extra


def header_seed(result: pytest.RunResult) -> int:
    """The base seed printed in the report header."""
    match = re.search(r"^xensched: base seed (\d+)$", result.stdout.str(), re.MULTILINE)
    assert match is not None, result.stdout.str()
    return int(match.group(1))
