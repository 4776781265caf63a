"""Fixtures of the plugin's pytester tests."""

from __future__ import annotations

import pytest

from tests.plugin.helpers import INNER_INI


@pytest.fixture
def project(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> pytest.Pytester:
    """A ``pytester`` whose inner project is strict and sees no ``XENSCHED_SEED``."""
    monkeypatch.delenv("XENSCHED_SEED", raising=False)
    pytester.makeini(INNER_INI)
    return pytester
