"""Seeds: the base seed of a session or a run, and the per-test seeds derived from it.

Mirrors nothing in Xen. One place for the rules that the pytest plugin and the
``xensched stress`` command share, so that both honour ``XENSCHED_SEED`` the same way:

- a base seed is resolved in a fixed order: an explicit option, then the
  ``XENSCHED_SEED`` environment variable (an empty one counts as unset), then a fresh
  ``secrets.randbits(32)``, which the caller prints so that the run can be repeated;
- a per-test seed is ``base ^ crc32(nodeid)``: stable across processes and xdist
  workers, where ``hash(str)`` is salted per process.
"""

from __future__ import annotations

import os
import secrets
import zlib
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "SEED_ENV",
    "SEED_MAX",
    "derive_seed",
    "fresh_seed",
    "parse_seed",
    "resolve_base_seed",
]

SEED_ENV: Final = "XENSCHED_SEED"
SEED_MAX: Final = 0xFFFFFFFF


def parse_seed(text: str) -> int:
    """A base seed from text: decimal or ``0x`` hex, in ``0..2**32-1``.

    Raises:
        ValueError: not such a number.
    """
    s = text.strip().lower().replace("_", "")
    try:
        value = int(s, 16) if s.startswith("0x") else int(s, 10)
    except ValueError:
        value = -1
    if not 0 <= value <= SEED_MAX:
        raise ValueError(
            f"{text!r} is not a seed: expected an integer in 0..{SEED_MAX} "
            "(decimal or 0x hex)"
        )
    return value


def fresh_seed() -> int:
    """A new random base seed (32 bits); print it, or the run cannot be repeated."""
    return secrets.randbits(32)


def resolve_base_seed(
    option: int | None, environ: Mapping[str, str] | None = None
) -> int:
    """The base seed: ``option`` if given, else ``$XENSCHED_SEED``, else a fresh one.

    An empty ``XENSCHED_SEED`` counts as unset.

    Raises:
        ValueError: ``XENSCHED_SEED`` holds no valid seed.
    """
    if option is not None:
        return option
    env = (os.environ if environ is None else environ).get(SEED_ENV, "").strip()
    if env:
        try:
            return parse_seed(env)
        except ValueError as exc:
            raise ValueError(f"{SEED_ENV}: {exc}") from None
    return fresh_seed()


def derive_seed(base: int, nodeid: str) -> int:
    """The per-test seed: ``base ^ crc32(nodeid)``, 32 bits, stable across processes."""
    return (base ^ zlib.crc32(nodeid.encode("utf-8"))) & SEED_MAX
