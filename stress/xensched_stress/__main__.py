"""``python -m xensched_stress``: the ``xensched stress`` command."""

from __future__ import annotations

from .cli import main

raise SystemExit(main(prog="python -m xensched_stress"))
