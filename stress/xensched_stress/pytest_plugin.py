"""pytest plugin of the stress harness: seeded stress runs as ordinary tests.

Mirrors nothing in Xen. Declared through its own ``pytest11`` entry point
(``xensched-stress``), so it loads whenever the package is installed; it stands on
``xensched.pytest_plugin`` (the seeds and the failure section), never the other way
round. It offers:

- ``--stress-duration FACTOR`` (ini ``xensched_stress_duration``): scales the
  ``duration`` of every stress run, e.g. ``0.25`` for a quick pass, ``10`` for a soak.
- ``@pytest.mark.stress(**fields)``: the :class:`xensched_stress.config.StressConfig`
  of the test's stress runs; ``pool="NAME:SCHED[:CPUS]"`` is short for one pool.
- the ``xensched_stress`` fixture (a :class:`StressRunner`:
  ``xensched_stress(**overrides) -> StressReport``).
- on failure, the ``xensched`` report section (see ``xensched.pytest_plugin``) gains
  the ``--stress-duration`` of the session, the ``xensched stress`` command of each
  run and the violations found.

Everything it does is also a plain function (:func:`stress_fields`,
:func:`stress_config_for`, :func:`failure_section`, :func:`rerun_command`). The
engine is imported inside functions, so loading the plugin stays cheap.

A stress run that hangs is the engine watchdog's business (it reports a deadlock); a
run that hangs beyond that is killed by pytest-timeout, the outer guard. With
pytest-timeout, the plugin:

- warns at collection (:class:`XenschedTimeoutWarning`) when a marker's duration,
  times the ``--stress-duration`` factor, does not fit in the test's timeout less a
  margin (:func:`timeout_margin`); the timeout is read as pytest-timeout documents it:
  the ``timeout`` marker, then ``--timeout``, ``PYTEST_TIMEOUT``, the ``timeout`` ini
  (:func:`timeout_of`);
- stops a run (its ``stop`` event) that margin before the deadline pytest-timeout
  gave the test (``xensched.pytest_plugin.TIMEOUT_DEADLINE_KEY``): the report is then
  complete, marked interrupted, and the test passes or fails on it as usual;
- runs each stress run in a thread of its own, the test's thread waiting for it: if
  the wait is interrupted (Ctrl-C, or pytest-timeout's ``signal`` method failing the
  test) the run is stopped and its partial report kept for the failure section before
  the exception goes on;
- when pytest-timeout's ``thread`` method fires anyway (the test does more than its
  runs), stops the current run and waits for its partial report before the core
  plugin reports the failure (``xensched.pytest_plugin.add_timeout_listener``).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import signal
import threading
import time
from typing import TYPE_CHECKING, Any, Final, final

import pytest

from xensched.errors import XenschedError
from xensched.options import MAX_SECONDS
from xensched.pytest_plugin import (
    BASE_SEED_KEY,
    TIMEOUT_DEADLINE_KEY,
    SectionExtra,
    add_section_contributor,
    add_timeout_listener,
    derive_seed,
    fail_collection,
    failure_section as _core_section,
    rerun_command as _core_rerun,
)
from xensched.scenario import load_scenario

if TYPE_CHECKING:
    from collections.abc import Generator, Iterable, Mapping

    from .config import PoolSpec, StressConfig
    from .report import StressReport

__all__ = [
    "SCALE_KEY",
    "STRESS_RUNS_KEY",
    "ItemTimeout",
    "StressRun",
    "StressRunner",
    "XenschedTimeoutWarning",
    "failure_section",
    "parse_scale",
    "rerun_command",
    "section_extra",
    "stress_config_for",
    "stress_fields",
    "stress_mark_problems",
    "timeout_margin",
    "timeout_of",
]

_SCALE_INI: Final = "xensched_stress_duration"
# Violation lines shown per stress run in a failure section; the rest is counted.
_SECTION_VIOLATIONS: Final = 10


@final
@dataclasses.dataclass(frozen=True, slots=True)
class StressRun:
    """One stress run made by a test: its config, and its report once it finished."""

    config: StressConfig
    report: StressReport | None = None
    # Stopped early to end before pytest-timeout's deadline (seconds of that timeout).
    cut_for_timeout: float | None = None


class XenschedTimeoutWarning(pytest.PytestWarning):
    """A stress marker's duration does not fit in the test's pytest-timeout."""


@final
@dataclasses.dataclass(frozen=True, slots=True)
class ItemTimeout:
    """A test's pytest-timeout settings, as far as the stress plugin needs them."""

    seconds: float
    method: str


@final
@dataclasses.dataclass(frozen=True, slots=True)
class _ActiveRun:
    stop: threading.Event
    done: threading.Event
    timed_out: threading.Event  # pytest-timeout's thread method is ending the process


SCALE_KEY: Final = pytest.StashKey[float]()
STRESS_RUNS_KEY: Final = pytest.StashKey[list[StressRun]]()
_ACTIVE_RUN_KEY: Final = pytest.StashKey[_ActiveRun]()
_TIMEOUT_ERROR_KEY: Final = pytest.StashKey[str]()
# How long a timed-out test waits for its stopped run's partial report.
_PARTIAL_REPORT_WAIT: Final = 5.0


# -- library: configs, sections ------------------------------------------------------------
def timeout_margin(seconds: float) -> float:
    """How long before pytest-timeout's deadline a stress run is stopped.

    A tenth of the timeout, at least 0.5 s (the report, the teardown's joins) and at
    most 5 s.
    """
    return min(max(0.1 * seconds, 0.5), 5.0)


def _positive(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None  # pytest-timeout reports its own bad values
    return number if math.isfinite(number) and number > 0 else None


def timeout_of(item: pytest.Item) -> ItemTimeout | None:
    """The pytest-timeout timeout of ``item``, or None (none, or no pytest-timeout).

    Read as pytest-timeout documents it: the ``timeout(seconds, method=...)`` marker,
    then ``--timeout``, ``PYTEST_TIMEOUT``, the ``timeout`` ini; the method from the
    marker, ``--timeout-method``, the ``timeout_method`` ini, else ``signal`` where
    SIGALRM exists.
    """
    config = item.config
    if not config.pluginmanager.hasplugin("timeout"):
        return None
    seconds: object = None
    method: object = None
    mark = item.get_closest_marker("timeout")
    if mark is not None:
        seconds = mark.kwargs.get("timeout", mark.args[0] if mark.args else None)
        method = mark.kwargs.get("method", mark.args[1] if len(mark.args) > 1 else None)
    if seconds is None:
        seconds = config.getoption("timeout", None)
    if seconds is None:
        seconds = os.environ.get("PYTEST_TIMEOUT") or config.getini("timeout") or None
    if method is None:
        method = config.getoption("timeout_method", None)
    if method is None:
        method = config.getini("timeout_method") or None
    if method is None:
        method = "signal" if hasattr(signal, "SIGALRM") else "thread"
    limit = _positive(seconds)
    return None if limit is None else ItemTimeout(limit, str(method))


def parse_scale(text: str) -> float:
    """A duration scale factor from text: a finite float > 0.

    Raises:
        ValueError: not such a number.
    """
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    # Up to a day per second of a marker's duration; each scaled duration is then
    # held to the run's own bound (a day) when the marks are checked.
    if not (math.isfinite(value) and 0 < value <= MAX_SECONDS):
        raise ValueError(
            f"{text!r} is not a duration factor: expected a finite number in "
            f"(0, {MAX_SECONDS:g}], e.g. 0.5 or 10"
        )
    return value


def stress_fields(marks: Iterable[pytest.Mark]) -> dict[str, Any]:
    """Merge the kwargs of ``stress`` marks, given closest first (``iter_markers``).

    The closest mark wins field by field: a function's mark overrides its class's,
    which overrides its module's.

    Raises:
        TypeError: a mark has positional arguments.
    """
    fields: dict[str, Any] = {}
    for mark in reversed(list(marks)):
        if mark.args:
            raise TypeError(
                f"@pytest.mark.stress takes keyword arguments only, got {mark.args!r}"
            )
        fields.update(mark.kwargs)
    return fields


def _pool_specs(value: object) -> tuple[PoolSpec, ...]:
    from .config import PoolSpec

    if value is None:
        return ()
    # One pool, or a list or tuple of them.
    items = value if isinstance(value, (list, tuple)) else [value]
    specs = []
    for item in items:
        if isinstance(item, PoolSpec):
            specs.append(item)
        elif isinstance(item, str):
            specs.append(PoolSpec.parse(item))
        else:
            raise TypeError(
                f"pool {item!r}: expected 'NAME:SCHED[:CPUS]', a PoolSpec, or a list "
                "of them"
            )
    return tuple(specs)


def stress_config_for(
    nodeid: str,
    base_seed: int,
    fields: Mapping[str, Any] | None = None,
    scale: float = 1.0,
) -> StressConfig:
    """The :class:`StressConfig` that the ``xensched_stress`` fixture would run.

    Args:
        nodeid: the test's node id; with ``base_seed`` it gives the seed.
        base_seed: the session's base seed.
        fields: ``StressConfig`` fields, e.g. the marks' kwargs merged with the
            fixture call's overrides. ``pool=`` is short for ``pools=(pool,)``; pools
            may be given as ``"NAME:SCHED[:CPUS]"`` strings; ``scenario=`` as a
            :class:`~xensched.scenario.Scenario` or a name, file or JSON string. An
            explicit ``seed`` wins over the per-test seed.
        scale: the ``--stress-duration`` factor, applied to ``duration`` and, for a
            run bounded by a number of ``schedule()`` calls, to ``ops``.

    Raises:
        TypeError: an unknown field, or both ``pool`` and ``pools``.
        xensched.ConfigError: the resulting config is invalid.
    """
    from .config import StressConfig

    kwargs = dict(fields or {})
    if "pool" in kwargs:
        if "pools" in kwargs:
            raise TypeError("stress config: give 'pool' or 'pools', not both")
        kwargs["pools"] = _pool_specs(kwargs.pop("pool"))
    elif "pools" in kwargs:
        kwargs["pools"] = _pool_specs(kwargs["pools"])
    if isinstance(kwargs.get("scenario"), str):
        # A built-in name, a JSON file or inline JSON, as `--scenario` takes.
        kwargs["scenario"] = load_scenario(kwargs["scenario"])
    known = inspect.signature(StressConfig).parameters
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        raise TypeError(
            f"stress config: unknown field(s) {', '.join(unknown)}; "
            f"choose from pool, {', '.join(known)}"
        )
    kwargs.setdefault("seed", derive_seed(base_seed, nodeid))
    cfg = StressConfig(**kwargs)
    if scale != 1.0:
        # An ops-bounded run ignores its duration: scale the ops instead.
        cfg = dataclasses.replace(
            cfg,
            duration=None if cfg.duration is None else cfg.duration * scale,
            ops=None if cfg.ops is None else max(1, round(cfg.ops * scale)),
        )
    cfg.validate()
    return cfg


def _scale_options(scale: float) -> tuple[str, ...]:
    return () if scale == 1.0 else (f"--stress-duration={scale!r}",)


def rerun_command(nodeid: str, base_seed: int, scale: float = 1.0) -> str:
    """The shell command that reruns one test with the same seeds and duration."""
    return _core_rerun(nodeid, base_seed, _scale_options(scale))


def section_extra(scale: float, runs: Iterable[StressRun] = ()) -> SectionExtra:
    """What the stress runs of a test add to its ``xensched`` failure section."""
    from .config import rerun_command as stress_rerun_command

    runs = list(runs)
    details: list[str] = []
    for n, run in enumerate(runs, 1):
        head = f"stress run {n} of {len(runs)}"
        report = run.report
        if report is None:
            details.append(f"{head}: did not finish")
            continue
        found = report.violations_total
        how = ""
        if run.cut_for_timeout is not None:
            how = (
                f", stopped {timeout_margin(run.cut_for_timeout):g} s before "
                f"pytest-timeout's {run.cut_for_timeout:g} s deadline"
            )
        elif report.interrupted:
            how = ", interrupted: a partial report"
        details.append(
            f"{head}: exit code {report.exit_code}, {found} violation"
            f"{'' if found == 1 else 's'}{how}"
        )
        if report.deadlock is not None:
            first = report.deadlock.strip().splitlines() or [""]
            details.append(f"  deadlock: {first[0]}")
        shown = report.violations[:_SECTION_VIOLATIONS]
        for v in shown:
            first = v.describe().strip().splitlines() or [""]
            details.append(f"  {first[0]}")
        if found > len(shown):
            details.append(f"  ... and {found - len(shown)} more")
    return SectionExtra(
        options=_scale_options(scale),
        commands=tuple(stress_rerun_command(run.config) for run in runs),
        details=tuple(details),
    )


def failure_section(
    nodeid: str, base_seed: int, scale: float, runs: Iterable[StressRun] = ()
) -> str:
    """The text of the ``xensched`` report section of a failed test with stress runs."""
    return _core_section(nodeid, base_seed, [section_extra(scale, runs)])


# -- the fixture's callable ------------------------------------------------------------------
@final
class StressRunner:
    """What the ``xensched_stress`` fixture returns.

    ``runner(**overrides)`` builds the config (marks, then ``overrides``, then the
    per-test seed and the duration factor), runs it and returns the
    :class:`~xensched_stress.report.StressReport`. ``runner.config(**overrides)``
    only builds the config. Every run is remembered for the failure report.
    """

    __slots__ = ("_base_seed", "_fields", "_nodeid", "_runs", "_scale", "_stash")

    def __init__(
        self,
        nodeid: str,
        base_seed: int,
        fields: Mapping[str, Any],
        scale: float,
        runs: list[StressRun],
        stash: pytest.Stash | None = None,
    ) -> None:
        self._nodeid = nodeid
        self._base_seed = base_seed
        self._fields = dict(fields)
        self._scale = scale
        self._runs = runs
        # The test's stash: pytest-timeout's deadline in, the active run out.
        self._stash = stash

    @property
    def seed(self) -> int:
        """The per-test seed (what a run uses unless given ``seed=``)."""
        return derive_seed(self._base_seed, self._nodeid)

    @property
    def runs(self) -> tuple[StressRun, ...]:
        """The runs made so far, oldest first."""
        return tuple(self._runs)

    def config(self, **overrides: Any) -> StressConfig:
        """The config a call with these overrides would run."""
        __tracebackhide__ = True
        try:
            return stress_config_for(
                self._nodeid,
                self._base_seed,
                {**self._fields, **overrides},
                self._scale,
            )
        except (TypeError, XenschedError) as exc:
            # The marks or the overrides are wrong: show the caller's line, not the
            # plugin's or the engine's frames.
            raise exc.with_traceback(None) from None

    def __call__(self, **overrides: Any) -> StressReport:
        """Run one stress workload and return its report (violations do not raise)."""
        __tracebackhide__ = True
        from .runner import run_stress

        cfg = self.config(**overrides)
        index = len(self._runs)
        self._runs.append(StressRun(cfg))
        active = _ActiveRun(threading.Event(), threading.Event(), threading.Event())
        deadline = (
            None if self._stash is None else self._stash.get(TIMEOUT_DEADLINE_KEY, None)
        )
        cut_for: list[float] = []  # set once the deadline stopped the run
        errors: list[BaseException] = []

        def body() -> None:
            try:
                report = run_stress(cfg, stop=active.stop)
                cut = cut_for[0] if cut_for else None
                self._runs[index] = StressRun(cfg, report, cut)
            except BaseException as exc:  # raised again in the test's thread
                errors.append(exc)
            finally:
                active.done.set()

        # In a thread of its own, so that whatever interrupts this thread (Ctrl-C,
        # pytest-timeout's SIGALRM) finds the run still able to stop and report.
        thread = threading.Thread(target=body, name="xensched-stress-run", daemon=True)
        if self._stash is not None:
            self._stash[_ACTIVE_RUN_KEY] = active
        try:
            thread.start()
            while not active.done.wait(0.05):
                if (
                    deadline is not None
                    and not active.stop.is_set()
                    and time.monotonic()
                    >= deadline.at - timeout_margin(deadline.seconds)
                ):
                    cut_for.append(deadline.seconds)
                    active.stop.set()
        except BaseException:
            active.stop.set()
            # The run joins its own threads within about its lock bound.
            thread.join(cfg.lock_bound + _PARTIAL_REPORT_WAIT)
            raise
        finally:
            if self._stash is not None and _ACTIVE_RUN_KEY in self._stash:
                del self._stash[_ACTIVE_RUN_KEY]
        thread.join()
        if errors:
            raise errors[0]
        if active.timed_out.is_set():
            # pytest-timeout's timer thread is reporting this test and will end the
            # process: going on here would race it (teardown, the next test).
            threading.Event().wait()
        report = self._runs[index].report
        assert report is not None
        if report.interrupted and not cut_for:
            # The engine turns Ctrl-C into a partial report; pytest must still stop.
            raise KeyboardInterrupt
        return report


# -- hooks -------------------------------------------------------------------------------------
def _scale_option(text: str) -> float:
    try:
        return parse_scale(text)
    except ValueError as exc:
        raise pytest.UsageError(f"--stress-duration: {exc}") from None


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("xensched", "Xen scheduler locking emulator")
    group.addoption(
        "--stress-duration",
        type=_scale_option,
        default=None,
        metavar="FACTOR",
        help="Scale factor > 0 for every stress run's duration, or ops count "
        f"(default: ini {_SCALE_INI}, else 1.0)",
    )
    parser.addini(
        _SCALE_INI,
        "Scale factor > 0 for every stress run's duration (--stress-duration)",
        type="string",
        default="1.0",
    )


def _stop_active_run(item: pytest.Item) -> None:
    # pytest-timeout's thread method is about to end the process: a partial report.
    active = item.stash.get(_ACTIVE_RUN_KEY, None)
    if active is not None:
        active.timed_out.set()
        active.stop.set()
        active.done.wait(_PARTIAL_REPORT_WAIT)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    from .config import StressConfig

    scale = config.stash[SCALE_KEY]
    default = inspect.signature(StressConfig).parameters["duration"].default
    for item in items:
        if "xensched_stress" not in getattr(item, "fixturenames", ()):
            continue
        try:
            fields = stress_fields(item.iter_markers("stress"))
        except TypeError:
            continue  # the fixture reports a misused marker
        if fields.get("ops") is not None:
            continue  # bounded by schedule() calls, not by time
        duration = _positive(fields.get("duration", default))
        limit = timeout_of(item)
        if duration is None or limit is None:
            continue
        room = limit.seconds - timeout_margin(limit.seconds)
        if duration * scale > room:
            warning = XenschedTimeoutWarning(
                f"stress duration {duration * scale:g} s (marker {duration:g} s x "
                f"--stress-duration {scale:g}) does not fit in pytest-timeout's "
                f"{limit.seconds:g} s less a {timeout_margin(limit.seconds):g} s "
                f"margin: the run will be stopped after at most {max(room, 0):g} s"
            )
            try:
                item.warn(warning)
            except XenschedTimeoutWarning:
                # Warnings are errors here (-W error, filterwarnings): raised from this
                # hook it would be an INTERNALERROR; the test errors at setup instead.
                item.stash[_TIMEOUT_ERROR_KEY] = f"{type(warning).__name__}: {warning}"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    message = item.stash.get(_TIMEOUT_ERROR_KEY, None)
    if message is not None:
        pytest.fail(message, pytrace=False)


def _contribute(item: pytest.Item) -> SectionExtra:
    runs: list[StressRun] = item.stash.get(STRESS_RUNS_KEY, [])
    return section_extra(item.config.stash[SCALE_KEY], runs)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "stress(duration=2.0, cpus=4, boot='credit', pool=None, protocol='fixed', "
        "**fields): the StressConfig of this test's xensched_stress runs; any "
        "StressConfig field may be given (topology, pools, domains, vcpus, ops, seed, "
        "switch_interval, delay_injection, keep_going, watchdog, scenario, "
        "max_violations, max_events, memory_model='sc'|'tso'|'relaxed', "
        "lockdep=True|False, which --xensched-lockdep overrides, "
        "race_detector=True|False, which --xensched-race-detector overrides, "
        "mutant='NAME', a mutant of the fix from `xensched mutate --list`); "
        "pool='NAME:SCHED[:CPUS]' is short for one pool; scenario= takes a Scenario "
        "or a built-in name; duration is scaled by --stress-duration",
    )
    scale: float | None = config.getoption("stress_duration")
    if scale is None:
        ini = str(config.getini(_SCALE_INI)).strip() or "1.0"
        try:
            scale = parse_scale(ini)
        except ValueError as exc:
            raise pytest.UsageError(f"{_SCALE_INI}: {exc}") from None
    config.stash[SCALE_KEY] = scale
    add_section_contributor(config, _contribute)
    add_timeout_listener(config, _stop_active_run)


def stress_mark_problems(
    config: pytest.Config, items: Iterable[pytest.Item]
) -> list[str]:
    """Check every test's ``@pytest.mark.stress(...)`` fields, as its fixture would:
    one line for each test whose marks are invalid, naming it and why.
    """
    base_seed = config.stash[BASE_SEED_KEY]
    scale = config.stash[SCALE_KEY]
    problems = []
    for item in items:
        marks = list(item.iter_markers("stress"))
        if not marks:
            continue
        try:
            stress_config_for(item.nodeid, base_seed, stress_fields(marks), scale)
        except (TypeError, XenschedError) as exc:
            problems.append(f"{item.nodeid}: @pytest.mark.stress: {exc}")
    return problems


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    # A collection error, so that a misspelt or invalid field stops the session
    # before any test runs (rather than failing its test after the others ran), under
    # xdist too, where a worker's UsageError is an internal error.
    return fail_collection((yield), collector.config, stress_mark_problems)


def pytest_report_header(config: pytest.Config) -> list[str]:
    scale = config.stash[SCALE_KEY]
    return [f"xensched: stress duration x{scale:g}"] if scale != 1.0 else []


@pytest.fixture
def xensched_stress(request: pytest.FixtureRequest, xensched_seed: int) -> StressRunner:
    """Run stress workloads: ``xensched_stress(**overrides) -> StressReport``.

    The config comes from the test's ``@pytest.mark.stress(...)`` marks, then the
    overrides, with the per-test seed and the ``--stress-duration`` factor.
    """
    node = request.node
    try:
        fields = stress_fields(node.iter_markers("stress"))
    except TypeError as exc:
        misuse = str(exc)
    else:
        misuse = ""
        lockdep = request.config.getoption("xensched_lockdep", None)
        if lockdep is not None:
            fields["lockdep"] = lockdep  # --xensched-lockdep, over the marks
        races = request.config.getoption("xensched_race_detector", None)
        if races is not None:
            fields["race_detector"] = races  # --xensched-race-detector, likewise
    if misuse:
        # A misused marker: the message says it all, the plugin's frames do not.
        pytest.fail(misuse, pytrace=False)
    runs = node.stash.setdefault(STRESS_RUNS_KEY, [])
    return StressRunner(
        node.nodeid,
        request.config.stash[BASE_SEED_KEY],
        fields,
        request.config.stash[SCALE_KEY],
        runs,
        node.stash,
    )
