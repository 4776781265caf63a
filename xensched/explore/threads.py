"""Explore any threads, not only a scenario's: the target behind the pytest marker.

Mirrors nothing in Xen. A :class:`World` is what one execution's set-up function
builds: shared cells and locks on a fresh bus (or a whole :class:`~xensched.Host`), the
threads that race on them, and optionally what counts as the run's final state. The
explorer calls the set-up function once per execution, so everything it makes is
fresh each time and the same choices give the same run::

    def setup(w: World) -> None:
        x = w.cell("x", 0)
        w.thread("t0", lambda: x.update(lambda v: v + 1))
        w.thread("t1", lambda: x.update(lambda v: v + 1))
        w.final_state(lambda: x.peek())

        def both_counted() -> None:
            assert x.peek() == 2

        w.check(both_counted)

    Explorer(ThreadsTarget(setup), DPOR()).explore()

Threads named after a host's pCPU (``w.thread(3, fn)`` with a host) run bound to that
pCPU's context, as the scenario programs do.

:meth:`World.check` is how a test asserts on the end state: each check runs in the
explorer's thread once every thread has ended (not after a deadlock, a crash or an
abandoned run, whose violation already fails the execution); an ``AssertionError`` is
an ``assert`` violation, any other exception a ``crash``. Checks read with ``peek()``:
they are not threads of the run and make no interaction points.

Left out: shared state other than the World's cells, masks and locks (a plain Python
variable two threads share is no interaction point, so its races are not explored),
and threads started once the run has begun (a thread that a body starts runs outside
the driver's control).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from xensched.drivers.controlled import ControlledDriver, record_crashes
from xensched.interaction import Bus
from xensched.memory import Cell, CpuMask
from xensched.spinlock import SpinLock
from xensched.violation import ViolationKind

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Iterable

    from xensched.explore.engine import _Chooser
    from xensched.host import Host
    from xensched.lockdep import Lockdep
    from xensched.race_detector import RaceDetector
    from xensched.smp import ExecContext
    from xensched.violation import Violation

__all__ = ["ThreadsTarget", "World"]

T = TypeVar("T")


class World:
    """One execution's shared state and threads; see the module docstring."""

    def __init__(self) -> None:
        self._bus: Bus | None = None
        self._host: Host | None = None
        self.threads: list[tuple[ExecContext, Callable[[], object]]] = []
        self._state: Callable[[], Hashable] | None = None
        self.checks: list[Callable[[], object]] = []
        self.driver: ControlledDriver | None = None
        # The model a bus or host made here gets unless the set-up picks one.
        self._default_model = "sc"
        #: The Lockdep on this execution's bus (:meth:`use_lockdep`), or None.
        self.lockdep: Lockdep | None = None
        self._want_lockdep = False
        #: The RaceDetector on this execution's bus (:meth:`use_race_detector`).
        self.race_detector: RaceDetector | None = None
        self._want_race_detector = False

    @property
    def bus(self) -> Bus:
        """The execution's bus (a host's, once :meth:`host` made one)."""
        if self._bus is None:
            from xensched.memory_model import make_memory_model

            self._bus = Bus()
            self._bus.memory = make_memory_model(self._default_model)
            self._install_lockdep()
            self._install_race_detector()
        return self._bus

    def host(self, *args: Any, **kwargs: Any) -> Host:
        """A :class:`~xensched.Host` for this execution (arguments as ``Host``'s).

        Call it before making cells or threads: they all live on its bus.
        """
        from xensched.host import Host  # the host layer stands on this one

        if self._bus is not None:
            raise RuntimeError("World.host() must come before any cell, lock or thread")
        kwargs.setdefault("memory_model", self._default_model)
        self._host = Host(*args, **kwargs)
        self._bus = self._host.bus
        self._install_lockdep()
        self._install_race_detector()
        return self._host

    def memory_model(self, name: str, seed: int = 0) -> None:
        """Run this execution under memory model ``name`` (``sc``, ``tso``,
        ``relaxed``: :mod:`xensched.memory_model`). Call it before the threads run."""
        from xensched.memory_model import make_memory_model

        self.bus.memory = make_memory_model(name, seed)

    def use_memory_model(self, name: str) -> None:
        """The memory model of this execution unless the set-up function picks one
        itself (:meth:`memory_model`, ``host(memory_model=...)``): what
        ``@pytest.mark.explore(memory_model=...)`` and ``--xensched-memory-model``
        set. Call it before the set-up function runs."""
        from xensched.memory_model import check_model_name, make_memory_model

        self._default_model = check_model_name(name)
        if self._bus is not None:
            self._bus.memory = make_memory_model(name)

    def use_lockdep(self, on: bool) -> None:
        """Check this execution's lock order (:class:`~xensched.lockdep.Lockdep` on
        its bus, fresh for each execution): what ``@pytest.mark.explore(lockdep=True)``
        and ``--xensched-lockdep`` set. Call it before the set-up function runs."""
        self._want_lockdep = on
        if on and self._bus is not None:
            self._install_lockdep()

    def _install_lockdep(self) -> None:
        if self._want_lockdep and self.lockdep is None and self._bus is not None:
            from xensched.lockdep import Lockdep

            self.lockdep = Lockdep()
            self._bus.add_instrument(self.lockdep)

    def use_race_detector(self, on: bool) -> None:
        """Detect this execution's data races (a fresh
        :class:`~xensched.race_detector.RaceDetector` on its bus for each execution):
        what ``@pytest.mark.explore(race_detector=True)`` and
        ``--xensched-race-detector`` set. Call it before the set-up function runs."""
        self._want_race_detector = on
        if on and self._bus is not None:
            self._install_race_detector()

    def _install_race_detector(self) -> None:
        if (
            self._want_race_detector
            and self.race_detector is None
            and self._bus is not None
        ):
            from xensched.race_detector import RaceDetector

            self.race_detector = RaceDetector()
            self._bus.add_instrument(self.race_detector)

    def cell(self, label: str, value: T, *, racy: str | None = None) -> Cell[T]:
        """A shared field, every load and store an interaction point; ``racy``: why
        its reads race with its writes on purpose (:mod:`xensched.race_detector`)."""
        return Cell(self.bus, label, value, racy=racy)

    def mask(self, label: str, cpus: Iterable[int] = ()) -> CpuMask:
        """A shared ``cpumask_t`` whose ``set()``/``clear()`` are atomic bit
        operations (which exploration takes as commuting on different bits)."""
        return CpuMask(self.bus, label, cpus)

    def lock(self, name: str) -> SpinLock:
        """A spinlock (a real ``threading.Lock`` under the driver's control)."""
        return SpinLock(self.bus, name)

    def thread(self, name: str | int, fn: Callable[[], object]) -> ExecContext:
        """A thread running ``fn``; an ``int`` is a pCPU of :meth:`host`."""
        if isinstance(name, int):
            if self._host is None:
                raise RuntimeError(f"thread {name}: a pCPU thread needs World.host()")
            ctx = self._host.cpu_contexts[name]
        else:
            ctx = self.bus.new_context(name, None)
        if any(c is ctx for c, _ in self.threads):
            raise RuntimeError(f"thread {ctx.name}: one thread per context")
        self.threads.append((ctx, fn))
        return ctx

    def final_state(self, fn: Callable[[], Hashable]) -> None:
        """What the run leaves behind (default: nothing to compare)."""
        self._state = fn

    def check(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` on the end state of every execution; see the module docstring."""
        self.checks.append(fn)


class _ThreadsRun:
    def __init__(self, setup: Callable[[World], object]) -> None:
        self.world = World()
        setup(self.world)
        if not self.world.threads:
            raise RuntimeError("the set-up function started no thread (World.thread)")

    @property
    def bus(self) -> Bus:
        return self.world.bus

    def run(self, strategy: _Chooser) -> list[Violation]:
        w = self.world
        drv = ControlledDriver(w.bus, strategy, turn_timeout=strategy.turn_timeout)
        w.driver = drv
        for ctx, fn in w.threads:
            drv.spawn(ctx, fn)
        errors = drv.run()
        record_crashes(w.bus, errors)
        if not errors and drv.deadlock is None and drv.abandoned is None:
            self._check()
        return w.bus.violations

    def _check(self) -> None:
        for fn in self.world.checks:
            try:
                fn()
            except AssertionError as exc:
                self.bus.violation(ViolationKind.ASSERT, "check", str(exc) or repr(exc))
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # pytest.fail(), sys.exit(): as in a thread
                self.bus.violation(
                    ViolationKind.CRASH, "check", f"{type(exc).__name__}: {exc}"
                )

    def final_state(self) -> Hashable:
        fn = self.world._state
        return fn() if fn is not None else None

    @property
    def abandoned(self) -> bool:
        drv = self.world.driver
        return drv is not None and drv.abandoned is not None


class ThreadsTarget:
    """Runs of whatever ``setup(world)`` builds, fresh for each execution."""

    def __init__(self, setup: Callable[[World], object]) -> None:
        self.setup = setup

    def new_run(self) -> _ThreadsRun:
        return _ThreadsRun(self.setup)
