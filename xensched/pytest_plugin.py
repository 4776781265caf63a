"""pytest plugin of xensched: seeded stress runs as ordinary tests.

Declared once, through the ``pytest11`` entry point ``xensched``. It offers:

- ``--xensched-seed SEED``: the base seed of the session, printed in the report
  header. Resolved in this order: the option, the ``XENSCHED_SEED`` environment
  variable, then a fresh ``secrets.randbits(32)``. Under pytest-xdist the controller
  resolves it once and hands it to every worker through ``workerinput``, so a fresh
  seed is the same on all workers.
- ``--stress-duration FACTOR`` (ini ``xensched_stress_duration``): scales the
  ``duration`` of every stress run, e.g. ``0.25`` for a quick pass, ``10`` for a soak.
- a per-test seed, ``base ^ crc32(nodeid)``: stable across processes and xdist
  workers (``hash(str)`` is salted per process, so it is never used).
- ``@pytest.mark.stress(**fields)``: the :class:`xensched_stress.config.StressConfig`
  of the test's stress runs; ``pool="NAME:SCHED[:CPUS]"`` is short for one pool.
- fixtures ``xensched_seed`` (the per-test seed) and ``xensched_stress`` (a
  :class:`StressRunner`: ``xensched_stress(**overrides) -> StressReport``).
- on failure, a report section ``xensched`` with the per-test seed, the pytest command
  and the ``xensched stress`` command that reproduce it, and the violations found.

Everything the plugin does is also a plain function (:func:`derive_seed`,
:func:`resolve_base_seed`, :func:`stress_fields`, :func:`stress_config_for`,
:func:`assert_no_violations`), so the plugin is a thin adapter (xdist's
``get_xdist_worker_id`` next to its ``worker_id`` fixture is the model).

The stress engine (``xensched_stress``) is imported inside functions only: loading the
plugin must stay cheap and must never fail at pytest start-up.

A stress run that hangs is the engine watchdog's business (it reports a deadlock); a
run that hangs beyond that is killed by pytest-timeout, the outer guard. The plugin
adds no timer of its own.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import secrets
import zlib
from typing import TYPE_CHECKING, Any, Final, Protocol, final

import pytest

from xensched.errors import XenschedError

if TYPE_CHECKING:
    from collections.abc import Generator, Iterable, Mapping

    from xensched_stress.config import PoolSpec, StressConfig
    from xensched_stress.report import StressReport

__all__ = [
    "BASE_SEED_KEY",
    "SCALE_KEY",
    "SEED_ENV",
    "SEED_MAX",
    "STRESS_RUNS_KEY",
    "TEST_SEED_KEY",
    "StressRun",
    "StressRunner",
    "assert_no_violations",
    "derive_seed",
    "failure_section",
    "get_base_seed",
    "parse_scale",
    "parse_seed",
    "rerun_command",
    "resolve_base_seed",
    "stress_config_for",
    "stress_fields",
]

SEED_ENV: Final = "XENSCHED_SEED"
SEED_MAX: Final = 0xFFFFFFFF
_WORKERINPUT_KEY: Final = "xensched_base_seed"
_SCALE_INI: Final = "xensched_stress_duration"
# Violation lines shown per stress run in a failure section; the rest is counted.
_SECTION_VIOLATIONS: Final = 10


@final
@dataclasses.dataclass(frozen=True, slots=True)
class StressRun:
    """One stress run made by a test: its config, and its report once it finished."""

    config: StressConfig
    report: StressReport | None = None


BASE_SEED_KEY: Final = pytest.StashKey[int]()
SCALE_KEY: Final = pytest.StashKey[float]()
TEST_SEED_KEY: Final = pytest.StashKey[int]()
STRESS_RUNS_KEY: Final = pytest.StashKey[list[StressRun]]()


# -- library: seeds, configs, assertions ------------------------------------------------
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


def parse_scale(text: str) -> float:
    """A duration scale factor from text: a finite float > 0.

    Raises:
        ValueError: not such a number.
    """
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(
            f"{text!r} is not a duration factor: expected a number > 0, e.g. 0.5 or 10"
        )
    return value


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
    return secrets.randbits(32)


def derive_seed(base: int, nodeid: str) -> int:
    """The per-test seed: ``base ^ crc32(nodeid)``, 32 bits, stable across processes."""
    return (base ^ zlib.crc32(nodeid.encode("utf-8"))) & SEED_MAX


def get_base_seed(config: pytest.Config) -> int:
    """The session's base seed (the same on the xdist controller and its workers)."""
    return config.stash[BASE_SEED_KEY]


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
    from xensched_stress.config import PoolSpec

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
            may be given as ``"NAME:SCHED[:CPUS]"`` strings. An explicit ``seed``
            wins over the per-test seed.
        scale: the ``--stress-duration`` factor, applied to ``duration`` and, for a
            run bounded by a number of ``schedule()`` calls, to ``ops``.

    Raises:
        TypeError: an unknown field, or both ``pool`` and ``pools``.
        xensched.ConfigError: the resulting config is invalid.
    """
    from xensched_stress.config import StressConfig

    kwargs = dict(fields or {})
    if "pool" in kwargs:
        if "pools" in kwargs:
            raise TypeError("stress config: give 'pool' or 'pools', not both")
        kwargs["pools"] = _pool_specs(kwargs.pop("pool"))
    elif "pools" in kwargs:
        kwargs["pools"] = _pool_specs(kwargs["pools"])
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


def assert_no_violations(report: StressReport) -> None:
    """Fail, showing the rendered report, if a stress run found violations or hung."""
    __tracebackhide__ = True
    if report.exit_code != 0 or report.violations:
        raise AssertionError(
            f"stress run (seed {report.seed}) failed:\n{report.render()}"
        )


def rerun_command(nodeid: str, base_seed: int, scale: float = 1.0) -> str:
    """The shell command that reruns one test with the same seeds."""
    quoted = "'" + nodeid.replace("'", "'\"'\"'") + "'"
    cmd = f"pytest {quoted} --xensched-seed={base_seed}"
    if scale != 1.0:
        cmd += f" --stress-duration={scale!r}"
    return cmd


# -- the fixture's callable ------------------------------------------------------------------
@final
class StressRunner:
    """What the ``xensched_stress`` fixture returns.

    ``runner(**overrides)`` builds the config (marks, then ``overrides``, then the
    per-test seed and the duration factor), runs it and returns the
    :class:`~xensched_stress.report.StressReport`. ``runner.config(**overrides)``
    only builds the config. Every run is remembered for the failure report.
    """

    __slots__ = ("_base_seed", "_fields", "_nodeid", "_runs", "_scale")

    def __init__(
        self,
        nodeid: str,
        base_seed: int,
        fields: Mapping[str, Any],
        scale: float,
        runs: list[StressRun],
    ) -> None:
        self._nodeid = nodeid
        self._base_seed = base_seed
        self._fields = dict(fields)
        self._scale = scale
        self._runs = runs

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
        from xensched_stress.runner import run_stress

        cfg = self.config(**overrides)
        self._runs.append(StressRun(cfg))
        report = run_stress(cfg)
        self._runs[-1] = StressRun(cfg, report)
        if report.interrupted:
            # The engine turns Ctrl-C into a partial report; pytest must still stop.
            raise KeyboardInterrupt
        return report


# -- hooks -------------------------------------------------------------------------------------
class _XdistNode(Protocol):
    # The part of xdist's WorkerController that pytest_configure_node uses.
    config: pytest.Config
    workerinput: dict[str, Any]


def _seed_option(text: str) -> int:
    try:
        return parse_seed(text)
    except ValueError as exc:
        raise pytest.UsageError(f"--xensched-seed: {exc}") from None


def _scale_option(text: str) -> float:
    try:
        return parse_scale(text)
    except ValueError as exc:
        raise pytest.UsageError(f"--stress-duration: {exc}") from None


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("xensched", "Xen scheduler locking emulator")
    group.addoption(
        "--xensched-seed",
        type=_seed_option,
        default=None,
        metavar="SEED",
        help=f"Base seed of per-test seeds (default: ${SEED_ENV}, else random; "
        "printed in the header)",
    )
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


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "stress(duration=2.0, cpus=4, boot='credit', pool=None, protocol='fixed', "
        "**fields): the StressConfig of this test's xensched_stress runs; any "
        "StressConfig field may be given (topology, pools, domains, vcpus, ops, seed, "
        "switch_interval, delay_injection, keep_going, watchdog); pool='NAME:SCHED"
        "[:CPUS]' is short for one pool; duration is scaled by --stress-duration",
    )
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if workerinput is not None and _WORKERINPUT_KEY in workerinput:
        # An xdist worker: the controller's seed, even one it drew at random.
        seed = int(workerinput[_WORKERINPUT_KEY])
    else:
        try:
            seed = resolve_base_seed(config.getoption("xensched_seed"))
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None
    config.stash[BASE_SEED_KEY] = seed

    scale: float | None = config.getoption("stress_duration")
    if scale is None:
        ini = str(config.getini(_SCALE_INI)).strip() or "1.0"
        try:
            scale = parse_scale(ini)
        except ValueError as exc:
            raise pytest.UsageError(f"{_SCALE_INI}: {exc}") from None
    config.stash[SCALE_KEY] = scale


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: _XdistNode) -> None:
    # xdist hook, on the controller, once per worker before it starts.
    node.workerinput[_WORKERINPUT_KEY] = node.config.stash[BASE_SEED_KEY]


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = [f"xensched: base seed {config.stash[BASE_SEED_KEY]}"]
    scale = config.stash[SCALE_KEY]
    if scale != 1.0:
        lines.append(f"xensched: stress duration x{scale:g}")
    return lines


@pytest.fixture
def xensched_seed(request: pytest.FixtureRequest) -> int:
    """The per-test seed: the base seed xor the crc32 of the test's node id."""
    seed = derive_seed(request.config.stash[BASE_SEED_KEY], request.node.nodeid)
    request.node.stash[TEST_SEED_KEY] = seed
    # Shown in JUnit XML, and carried back from xdist workers with the report.
    prop = ("xensched_seed", seed)
    if prop not in request.node.user_properties:
        request.node.user_properties.append(prop)
    return seed


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
    )


def failure_section(
    nodeid: str,
    base_seed: int,
    scale: float,
    runs: Iterable[StressRun] = (),
) -> str:
    """The text of the ``xensched`` report section of a failed test."""
    seed = derive_seed(base_seed, nodeid)
    runs = list(runs)
    lines = [
        f"per-test seed {seed} (base seed {base_seed} ^ crc32 of the node id)",
        "reproduce with:",
        f"  {rerun_command(nodeid, base_seed, scale)}",
    ]
    if runs:
        from xensched_stress.report import reproduce_command

        lines += [f"  {reproduce_command(run.config)}" for run in runs]
    for n, run in enumerate(runs, 1):
        head = f"stress run {n} of {len(runs)}"
        report = run.report
        if report is None:
            lines.append(f"{head}: did not finish")
            continue
        found = len(report.violations)
        lines.append(
            f"{head}: exit code {report.exit_code}, {found} violation"
            f"{'' if found == 1 else 's'}"
        )
        if report.deadlock is not None:
            first = report.deadlock.strip().splitlines() or [""]
            lines.append(f"  deadlock: {first[0]}")
        for v in report.violations[:_SECTION_VIOLATIONS]:
            first = v.describe().strip().splitlines() or [""]
            lines.append(f"  {first[0]}")
        if found > _SECTION_VIOLATIONS:
            lines.append(f"  ... and {found - _SECTION_VIOLATIONS} more")
    return "\n".join(lines)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and TEST_SEED_KEY in item.stash:
        runs: list[StressRun] = item.stash.get(STRESS_RUNS_KEY, [])
        text = failure_section(
            item.nodeid,
            item.config.stash[BASE_SEED_KEY],
            item.config.stash[SCALE_KEY],
            runs,
        )
        report.sections.append(("xensched", text))
    return report
