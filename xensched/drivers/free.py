"""The free-running driver: real OS threads interleave as the OS and the GIL decide.

Mirrors nothing in Xen. This is the stress driver of ``architecture.md``: every pCPU
thread runs at full speed and preemption comes from the interpreter (the GIL's switch
interval on a GIL build, the OS scheduler on a free-threaded one). Two knobs widen race
windows:

- :func:`free_running` lowers ``sys.setswitchinterval`` for the duration of a run (a
  GIL build then switches threads every few microseconds instead of every 5 ms) and
  restores it afterwards, even on error;
- :class:`DelayInjector`, installed as ``host.bus.driver``, sleeps a short random time
  at an interaction point with probability ``P``, in the manner of the Linux kernel's
  KCSAN: a thread that stalls inside a critical window keeps the window open while the
  other threads run into it. Each context draws from its own ``random.Random``, seeded
  from the base seed and the context's name, so *which* points are delayed and for how
  long is a function of the seed and of how many points each context has passed.

What a seed does not fix here: the OS interleaving. A run under this driver is a
sample, not a replay; only the controlled driver makes seed -> schedule exact.

With ``P = 0`` install no driver at all (``bus.driver = None``): ``Bus.point`` then
skips the driver call altogether and the hot path stays cheap.
"""

from __future__ import annotations

import random
import sys
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING

from xensched.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from xensched.interaction import Access, PointKind
    from xensched.smp import ExecContext

#: A switch interval that makes a GIL build interleave at a fine grain (the
#: interpreter default is 5e-3 s). Lower values mostly cost throughput.
FREE_RUNNING_SWITCH_INTERVAL = 1e-5

#: Upper bound of one injected delay, in seconds. KCSAN's default for tasks is 80 us;
#: a Python interaction point costs about 1 us, so this is ~100 points of the others.
DEFAULT_MAX_DELAY = 1e-4


@contextmanager
def free_running(interval: float = FREE_RUNNING_SWITCH_INTERVAL) -> Iterator[None]:
    """Lower ``sys.setswitchinterval`` to ``interval`` for the block, then restore it."""
    if interval <= 0:
        raise ConfigError(f"switch interval {interval}: must be > 0")
    old = sys.getswitchinterval()
    sys.setswitchinterval(interval)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


class DelayInjector:
    """Free-running driver: with probability ``probability`` sleep at a point.

    Args:
        probability: chance, at each interaction point, of a delay (0 < P <= 1).
        seed: base seed; each context gets ``random.Random(f"{seed}:{ctx.name}")``.
        max_delay: a delay is uniform in ``[0, max_delay]`` seconds.
        kinds: delay only at points of these kinds (default: every kind).
    """

    def __init__(
        self,
        probability: float,
        seed: int,
        *,
        max_delay: float = DEFAULT_MAX_DELAY,
        kinds: frozenset[PointKind] | None = None,
    ) -> None:
        if not 0.0 < probability <= 1.0:
            raise ConfigError(
                f"delay probability {probability}: must be in (0, 1]; "
                "for 0 install no driver"
            )
        if max_delay <= 0:
            raise ConfigError(f"max_delay {max_delay}: must be > 0")
        self.probability = probability
        self.seed = seed
        self.max_delay = max_delay
        self.kinds = kinds
        # One RNG and one counter per context. Each entry is only ever used by the
        # thread bound to that context; the lock guards creation of entries.
        self._rngs: dict[ExecContext, random.Random] = {}
        self._delays: dict[ExecContext, int] = {}
        self._meta = threading.Lock()

    def __repr__(self) -> str:
        return f"<DelayInjector P={self.probability:g} max={self.max_delay:g}s>"

    def _rng_for(self, ctx: ExecContext) -> random.Random:
        with self._meta:
            rng = self._rngs.get(ctx)
            if rng is None:
                # A str seed is hashed with SHA-512: stable across processes.
                rng = random.Random(f"{self.seed}:{ctx.name}")
                self._rngs[ctx] = rng
                self._delays[ctx] = 0
            return rng

    # -- the Driver protocol -----------------------------------------------------------
    def point(self, ctx: ExecContext, access: Access) -> None:
        rng = self._rngs.get(ctx)
        if rng is None:
            rng = self._rng_for(ctx)
        if rng.random() >= self.probability:
            return
        if self.kinds is not None and access.kind not in self.kinds:
            return
        self._delays[ctx] += 1
        time.sleep(rng.random() * self.max_delay)

    # -- results -------------------------------------------------------------------------
    def delays(self) -> dict[str, int]:
        """Delays injected so far, by context name."""
        with self._meta:
            return {ctx.name: n for ctx, n in self._delays.items()}

    def total_delays(self) -> int:
        return sum(self.delays().values())
