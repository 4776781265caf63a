"""Project-wide fixtures: a fixed-seed RNG and a guard against leaked threads."""

from __future__ import annotations

import random
import sys
import threading
import time
from typing import TYPE_CHECKING

import pytest

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
    deadline = time.monotonic() + 5.0
    leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    while leaked and time.monotonic() < deadline:
        time.sleep(0.01)
        leaked = [t for t in leaked if t.is_alive()]
    assert not leaked, f"threads outlived the test: {[t.name for t in leaked]}"
    assert sys.getswitchinterval() == interval, "switch interval not restored"
