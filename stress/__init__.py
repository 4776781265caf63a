"""xensched's stress harness (installed as ``xensched_stress``)."""

from __future__ import annotations
