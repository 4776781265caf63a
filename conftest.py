"""Project-wide fixtures: a fixed-seed RNG and a guard against leaked threads."""

from __future__ import annotations

import random
import sys
import threading
from typing import TYPE_CHECKING

import pytest

from tests._threads import threads_left

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def rng() -> random.Random:
    """A seeded RNG: tests are deterministic."""
    return random.Random(20160408)


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves emulator threads running, or the switch interval changed."""
    before = set(threading.enumerate())
    interval = sys.getswitchinterval()
    yield
    leaked = threads_left(before)
    assert not leaked, f"threads outlived the test: {[t.name for t in leaked]}"
    assert sys.getswitchinterval() == interval, "switch interval not restored"
