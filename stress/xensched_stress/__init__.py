"""xensched's stress harness (installed as ``xensched_stress``).

Real threads hammer an emulated host: one per pCPU calling ``schedule()`` in a loop,
vCPU wake/sleep/migrate traffic, control threads moving pCPUs and domains between
cpupools. Modules:

- :mod:`~xensched_stress.config`: :class:`StressConfig`, :class:`PoolSpec`,
  :func:`rerun_command`;
- :mod:`~xensched_stress.runner`: :func:`run_stress`, the run's lifecycle (setup,
  start, wait, stop, report), its watchdog and progress snapshots;
- :mod:`~xensched_stress.workload`: what the pCPU and control threads do;
- :mod:`~xensched_stress.process`: the process's figures (CPU, RSS, threads);
- :mod:`~xensched_stress.diagnostics`: each context's last points at the first
  violation (the deadlock dumps are :mod:`xensched.diagnostics`'s);
- :mod:`~xensched_stress.report`: :class:`StressReport` (render, JSON, exit code);
- :mod:`~xensched_stress.cli`: ``xensched stress`` (also ``python -m xensched_stress``);
- :mod:`~xensched_stress.bench`: ``xensched bench``, the harness's figures.
"""

from __future__ import annotations

from .config import (
    PoolSpec as PoolSpec,
    StressConfig as StressConfig,
    reproduce_command as reproduce_command,  # deprecated: rerun_command
    rerun_command as rerun_command,
)
from .report import StopReason as StopReason, StressReport as StressReport
from .runner import ProgressSnapshot as ProgressSnapshot, run_stress as run_stress

__all__ = [
    "PoolSpec",
    "ProgressSnapshot",
    "StopReason",
    "StressConfig",
    "StressReport",
    "rerun_command",
    "run_stress",
]
