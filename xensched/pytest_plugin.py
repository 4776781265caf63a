"""pytest plugin of xensched (declared once, through the ``pytest11`` entry point).

Placeholder until the stress plugin lands: keeps the entry point importable.
"""

from __future__ import annotations
