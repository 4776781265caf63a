"""xensched.seeds: the one place the plugin and the CLI take their seed rules from."""

from __future__ import annotations

import zlib

import pytest

import xensched.pytest_plugin as plugin
from xensched import seeds


def test_the_plugin_uses_the_seeds_module() -> None:
    for name in ("derive_seed", "parse_seed", "resolve_base_seed", "SEED_ENV"):
        assert getattr(plugin, name) is getattr(seeds, name)


def test_fresh_seeds_are_32_bits_and_vary() -> None:
    drawn = {seeds.fresh_seed() for _ in range(8)}
    assert all(0 <= s <= seeds.SEED_MAX for s in drawn)
    assert len(drawn) > 1


def test_environment_then_fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(seeds.SEED_ENV, "0x10")
    assert seeds.resolve_base_seed(None) == 16
    assert seeds.resolve_base_seed(3) == 3
    monkeypatch.setenv(seeds.SEED_ENV, "")
    assert 0 <= seeds.resolve_base_seed(None) <= seeds.SEED_MAX
    assert seeds.derive_seed(5, "a::b") == 5 ^ zlib.crc32(b"a::b")
