"""``python -m xensched`` runs the ``xensched`` command."""

from __future__ import annotations

from xensched.cli import main

raise SystemExit(main())
