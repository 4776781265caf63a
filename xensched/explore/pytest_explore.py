"""The pytest front end of exploration: ``@pytest.mark.explore`` and its replay files.

Mirrors nothing in Xen. The xensched plugin (:mod:`xensched.pytest_plugin`) declares
the options and the marker and registers this module as a plugin. A marked test takes
the ``xensched_world`` fixture; its body is the set-up function of a
:class:`~xensched.explore.threads.ThreadsTarget`: the plugin calls it once per
execution, each time with a fresh :class:`~xensched.explore.threads.World`, and the
explorer runs the threads it started under the marker's strategy (as Hypothesis's
``@given`` runs its own loop inside the test call). Other fixtures the test takes are
resolved once, as usual, and passed to every call::

    @pytest.mark.explore(strategy="dpor", runs=200)
    def test_counter(xensched_world):
        x = xensched_world.cell("x", 0)

        def incr() -> None:
            x.store(x.load() + 1)

        xensched_world.thread("t0", incr)
        xensched_world.thread("t1", incr)

        def both_counted() -> None:
            assert x.peek() == 2

        xensched_world.check(both_counted)

The marker: ``explore(strategy="dpor", runs=200, seed=None, depth=3,
max_preemptions=None, keep_going=False, shards=1, seconds=None, memory_model=None,
lockdep=None, race_detector=None)``;
``seed=None`` is the per-test seed (the base seed ^ crc32 of the node id, less any shard
suffix, so that the shards of a randomised strategy share one seed).
``memory_model`` (``sc``, ``tso`` or ``relaxed``: :mod:`xensched.memory_model`) is the
model of the bus or host the body makes
(:meth:`~xensched.explore.threads.World.use_memory_model`); ``--xensched-memory-model
M`` sets it for every marked test, over the marker's; a body that picks a model itself
(``World.memory_model``, ``World.host(memory_model=...)``) keeps its own.
``lockdep=True`` (or ``--xensched-lockdep``, over the marker's) puts a fresh
:class:`~xensched.lockdep.Lockdep` on the bus of each execution
(:meth:`~xensched.explore.threads.World.use_lockdep`): a lock-order cycle or an IRQ
inversion among the body's threads fails the test like any violation.
``race_detector=True`` (or ``--xensched-race-detector``, over the marker's) puts a
fresh :class:`~xensched.race_detector.RaceDetector` there
(:meth:`~xensched.explore.threads.World.use_race_detector`): a data race among the
body's threads fails the test. Under ``tso``
and ``relaxed`` the drains of the store buffers are steps the strategy chooses, so the
exploration covers reorderings. The test fails when an execution records a violation: a thread that raises (an ``AssertionError``, ``pytest.fail()`` or ``sys.exit()`` too) is a ``crash``, a
failing :meth:`~xensched.explore.threads.World.check` an ``assert``. The failure says
the violation, the exploration's figures and the failing schedule step by step; the
failing execution is written as a replay file (``--xensched-replay-dir``, default
``.xensched/replays/`` under the rootdir), named in a ``xensched explore`` report
section and in ``user_properties`` (``xensched_replay``), and the failure ends with the
command that re-runs it: ``pytest 'NODEID' --xensched-replay FILE``. With that option
the test with the file's node id runs exactly the recorded schedule once; a divergence
fails it, naming the step.

``shards=N`` (1 to 1024, or ``--xensched-shards N`` for every marked test) parametrizes the test
into ``[shard0/N]`` ... ``[shardN-1/N]``, disjoint shares of one exploration (subtrees
for dfs and dpor, runs for random and pct), so that pytest-xdist can run them on
different workers. ``runs`` is shared out among the shards of random and pct (together
they run the unsharded exploration's runs) and bounds each shard of the tree searches
(whose subtrees are uneven) and of the portfolio. Each item records its figures in ``user_properties``
(``xensched_explore``); the terminal summary (on the xdist controller, which receives
them with the reports) has one line per explored test with the shards merged.

Left out: coroutine tests, and a failure summary for tests whose shards did not all
run (the line says how many ran, and never calls such a test exhaustive).
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import shlex
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pytest

from xensched.errors import XenschedError
from xensched.instruments import LOCKDEP_DEFAULT, RACE_DETECTOR_DEFAULT
from xensched.outputs import write_text_atomic
from xensched.pytest_plugin import MAX_SHARDS, fail_collection
from xensched.seeds import derive_seed

if TYPE_CHECKING:
    from collections.abc import Generator, Iterable, Mapping

    from xensched.explore.engine import Execution, ExploreResult
    from xensched.explore.replay import Replay
    from xensched.explore.threads import World

__all__ = [
    "FIXTURE",
    "MARKER",
    "MARKER_HELP",
    "ExploreSpec",
    "base_nodeid",
    "describe_failure",
    "replay_path",
]

MARKER: Final = "explore"
FIXTURE: Final = "xensched_world"
_SHARD_ARG: Final = "xensched_shard"
_PROPERTY: Final = "xensched_explore"
MARKER_HELP: Final = (
    "explore(strategy='dpor', runs=200, seed=None, depth=3, max_preemptions=None, "
    "keep_going=False, shards=1, seconds=None, memory_model=None, lockdep=None, "
    "race_detector=None): "
    "run the test "
    "body (which takes the xensched_world fixture) once per execution of a "
    "systematic exploration of the threads it starts, under memory_model (sc, tso "
    "or relaxed; --xensched-memory-model overrides it)"
)

_REPLAY_KEY: Final = pytest.StashKey["Replay | None"]()
_SHARD = r"shard\d+/\d+"


@dataclasses.dataclass(frozen=True, slots=True)
class ExploreSpec:
    """The arguments of ``@pytest.mark.explore``."""

    strategy: str = "dpor"
    runs: int | None = 200
    seed: int | None = None
    depth: int = 3
    max_preemptions: int | None = None
    keep_going: bool = False
    shards: int = 1
    seconds: float | None = None
    memory_model: str | None = None
    lockdep: bool | None = None
    race_detector: bool | None = None

    @classmethod
    def of(cls, mark: pytest.Mark, shards: int | None = None) -> ExploreSpec:
        """The spec of a marker (``shards``: the ``--xensched-shards`` override).

        Raises:
            TypeError: positional arguments, an unknown or ill-typed field.
            XenschedError: a strategy or option ``make_strategy`` refuses.
        """
        if mark.args:
            raise TypeError("takes keyword arguments only")
        try:
            spec = cls(**mark.kwargs)
        except TypeError as exc:
            raise TypeError(str(exc).replace("ExploreSpec.__init__()", "")) from None
        if shards is not None:
            spec = dataclasses.replace(spec, shards=shards)
        if "depth" in mark.kwargs and spec.strategy != "pct":
            # As xensched explore refuses --depth: given, it would change nothing.
            raise TypeError(
                f"depth={spec.depth!r}: the bug depth of strategy='pct', not of "
                f"strategy={spec.strategy!r}"
            )
        spec._validate()
        return spec

    def _validate(self) -> None:
        from xensched.explore import make_strategy

        def whole(
            name: str, value: object, low: int, optional: bool, high: int | None = None
        ) -> None:
            if value is None and optional:
                return
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise TypeError(f"{name}={value!r}: expected an int >= {low}")
            if high is not None and value > high:
                # Each shard is a test item: an unbounded count is unbounded memory.
                raise TypeError(f"{name}={value!r}: expected an int <= {high}")

        whole("runs", self.runs, 1, True)
        whole("seed", self.seed, 0, True)
        whole("depth", self.depth, 1, False)
        whole("max_preemptions", self.max_preemptions, 0, True)
        whole("shards", self.shards, 1, False, MAX_SHARDS)
        model: object = self.memory_model  # the marker's, of any type
        if model is not None:
            from xensched.memory_model import MODELS

            if model not in MODELS:
                raise TypeError(
                    f"memory_model={model!r}: expected one of {', '.join(MODELS)}"
                )
        if not isinstance(self.keep_going, bool):
            raise TypeError(f"keep_going={self.keep_going!r}: expected a bool")
        if self.lockdep is not None and not isinstance(self.lockdep, bool):
            raise TypeError(f"lockdep={self.lockdep!r}: expected a bool")
        races = self.race_detector
        if races is not None and not isinstance(races, bool):
            raise TypeError(f"race_detector={races!r}: expected a bool")
        seconds: object = self.seconds  # the marker's, of any type
        if seconds is not None and (
            not isinstance(seconds, int | float)
            or isinstance(seconds, bool)
            or seconds <= 0
        ):
            raise TypeError(f"seconds={seconds!r}: expected a number > 0")
        if (
            self.runs is None
            and seconds is None
            and self.strategy not in ("dfs", "dpor")
        ):
            raise TypeError(
                f"runs=None: the {self.strategy} strategy never runs out; give seconds="
            )
        make_strategy(
            self.strategy, depth=self.depth, max_preemptions=self.max_preemptions
        )


def base_nodeid(nodeid: str) -> str:
    """The node id without its ``shardK/N`` parameter: the test the shards share."""
    # The parameter ids of a node are joined with "-" in its last brackets.
    head, bracket, ids = nodeid.partition("[")
    if not bracket:
        return nodeid
    ids = re.sub(rf"^{_SHARD}\]$", "", ids)
    ids = re.sub(rf"^{_SHARD}-", "", ids)
    ids = re.sub(rf"-{_SHARD}(?=[-\]])", "", ids)
    return f"{head}[{ids}" if ids else head


def replay_path(directory: Path, nodeid: str) -> Path:
    """Where the replay file of ``nodeid`` goes: its id, made a file name."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_.") or "test"
    if len(name) > 120:  # a long parametrization: keep it unique with its crc
        name = f"{name[:110]}_{zlib.crc32(nodeid.encode()):08x}"
    return directory / f"{name}.json"


def replay_command(
    nodeid: str, path: str, shards: int | None, memory_model: str | None = None
) -> str:
    """The shell command that re-runs one replay file (``memory_model``: the
    ``--xensched-memory-model`` it ran with)."""
    quoted = "'" + nodeid.replace("'", "'\"'\"'") + "'"
    extra = f" --xensched-shards {shards}" if shards is not None else ""
    if memory_model is not None:
        extra += f" --xensched-memory-model {memory_model}"
    return f"pytest {quoted} --xensched-replay {shlex.quote(path)}{extra}"


def describe_failure(res: ExploreResult, ex: Execution, *, what: str) -> list[str]:
    """The failure text: the violations, the figures, the failing schedule."""
    lines = [f"{v.kind.value} in {v.where}: {v.message}" for v in ex.violations]
    ending = "exhaustive" if res.exhaustive else "not exhaustive"
    lines.append(
        f"{what}: {res.runs} runs ({res.distinct} distinct), {ending}, stopped: "
        f"{res.stop_reason or 'violation found'}"
    )
    if res.kinds:
        lines.append(f"violation kinds: {', '.join(sorted(res.kinds))}")
    at: dict[int, list[str]] = {}
    for v, step in zip(ex.violations, ex.violation_steps, strict=False):
        at.setdefault(step, []).append(v.kind.value)
    lines.append(f"failing schedule ({len(ex.steps)} steps):")
    width = max(len(s.thread) for s in ex.steps) if ex.steps else 0
    for i, s in enumerate(ex.steps):
        mark = f"  <- {', '.join(at[i])}" if i in at else ""
        lines.append(f"  {i:3d} {s.thread:<{width}} {s.op.describe()}{mark}")
    return lines


# -- hooks -------------------------------------------------------------------------------
def _shards_option(config: pytest.Config) -> int | None:
    value: int | None = config.getoption("xensched_shards")
    return value


def _model_option(config: pytest.Config) -> str | None:
    value: str | None = config.getoption("xensched_memory_model")
    return value


def _lockdep_option(config: pytest.Config) -> bool | None:
    value: bool | None = config.getoption("xensched_lockdep", None)
    return value


def _race_detector_option(config: pytest.Config) -> bool | None:
    value: bool | None = config.getoption("xensched_race_detector", None)
    return value


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(_Summary(config), "xensched-explore-summary")
    path: str | None = config.getoption("xensched_replay")
    replay = None
    if path is not None:
        from xensched.explore.replay import load_replay

        try:
            replay = load_replay(path)
        except XenschedError as exc:
            raise pytest.UsageError(f"--xensched-replay: {exc}") from None
        if replay.nodeid is None:
            raise pytest.UsageError(
                f"--xensched-replay: {path}: the replay of a scenario, not of a "
                "pytest test (it has no nodeid)"
            )
    config.stash[_REPLAY_KEY] = replay
    given: str | None = config.getoption("xensched_replay_dir")
    if given is not None:
        _check_replay_dir(given)


def _check_replay_dir(given: str) -> None:
    """Refuse ``--xensched-replay-dir DIR`` before any test runs unless the replay
    files can be written there: DIR, or its nearest existing ancestor (DIR is made
    when a test fails), must be a directory that accepts a new file."""
    from xensched.outputs import OutputPathError, check_output_dir

    option = "--xensched-replay-dir"
    if not given:
        raise pytest.UsageError(f"{option}: the directory name is empty")
    existing = Path(given).absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        if existing == Path(given).absolute():
            check_output_dir(option, given)
        else:
            check_output_dir(f"{option} {given}: directory", str(existing))
    except OutputPathError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    mark = metafunc.definition.get_closest_marker(MARKER)
    if mark is None or FIXTURE not in metafunc.fixturenames:
        return
    try:
        spec = ExploreSpec.of(mark, _shards_option(metafunc.config))
    except (TypeError, XenschedError):
        return  # the collection report names the problem
    if spec.shards > 1:
        n = spec.shards
        metafunc.parametrize(
            _SHARD_ARG,
            [(k, n) for k in range(n)],
            ids=[f"shard{k}/{n}" for k in range(n)],
        )


@pytest.fixture
def xensched_shard() -> tuple[int, int] | None:
    """The share of the exploration this item runs (``shards=`` parametrizes it)."""
    return None


@pytest.fixture
def xensched_world(xensched_shard: tuple[int, int] | None) -> World:
    """The World of an ``@pytest.mark.explore`` test: a fresh one for every execution
    (this instance only stands for them while fixtures are resolved)."""
    from xensched.explore.threads import World

    return World()


def mark_problems(config: pytest.Config, items: Iterable[pytest.Item]) -> list[str]:
    """One line for each test whose ``explore`` marker or fixture is misused."""
    shards = _shards_option(config)
    problems = []
    for item in items:
        mark = item.get_closest_marker(MARKER)
        uses = FIXTURE in getattr(item, "fixturenames", ())
        if mark is None:
            if uses:
                problems.append(
                    f"{item.nodeid}: the {FIXTURE} fixture is for tests marked "
                    f"@pytest.mark.{MARKER}"
                )
            continue
        if not uses:
            problems.append(
                f"{item.nodeid}: @pytest.mark.{MARKER} needs a test that takes the "
                f"{FIXTURE} fixture (its body sets up the threads to explore)"
            )
            continue
        if inspect.iscoroutinefunction(getattr(item, "obj", None)):
            problems.append(f"{item.nodeid}: @pytest.mark.{MARKER}: not on a coroutine")
            continue
        try:
            ExploreSpec.of(mark, shards)
        except (TypeError, XenschedError) as exc:
            problems.append(f"{item.nodeid}: @pytest.mark.{MARKER}: {exc}")
    return problems


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    # A collection error, as the stress marker's: the session stops before any test
    # runs, under xdist too (where a worker's UsageError is an internal error).
    return fail_collection((yield), collector.config, mark_problems)


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    replay = config.stash[_REPLAY_KEY]
    if replay is None or not items or getattr(config, "workerinput", None) is not None:
        # An xdist worker (whose UsageError is an INTERNALERROR) has only a share.
        return
    if not any(i.nodeid == replay.nodeid for i in items):
        raise pytest.UsageError(
            f"--xensched-replay: no collected test has the replay's node id "
            f"{replay.nodeid!r} (a renamed test, or a shard count other than "
            "--xensched-shards at the time?)"
        )


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    mark = pyfuncitem.get_closest_marker(MARKER)
    if mark is None or FIXTURE not in pyfuncitem.fixturenames:
        return None
    config = pyfuncitem.config
    spec = ExploreSpec.of(mark, _shards_option(config))
    names = pyfuncitem._fixtureinfo.argnames
    args = {n: pyfuncitem.funcargs[n] for n in names if n != FIXTURE}
    test = pyfuncitem.obj
    model = _model_option(config) or spec.memory_model
    lockdep = _lockdep_option(config)
    if lockdep is None:
        lockdep = spec.lockdep if spec.lockdep is not None else LOCKDEP_DEFAULT
    races = _race_detector_option(config)
    if races is None:
        races = (
            spec.race_detector
            if spec.race_detector is not None
            else RACE_DETECTOR_DEFAULT
        )

    def setup(world: World) -> None:
        if model is not None:
            world.use_memory_model(model)
        world.use_lockdep(lockdep)
        world.use_race_detector(races)
        test(**args, **({FIXTURE: world} if FIXTURE in names else {}))

    replay = config.stash[_REPLAY_KEY]
    if replay is not None and replay.nodeid == pyfuncitem.nodeid:
        _replay(pyfuncitem, setup, replay)
    else:
        _explore(pyfuncitem, setup, spec)
    return True


def _pinned_cpu(config: pytest.Config) -> int | None:
    """The CPU of ``--xensched-pin``: the N-th for xdist worker gwN (so that the
    workers do not share one), else the first; ``None`` without the option."""
    from xensched.drivers.workers import one_cpu

    if not config.getoption("xensched_pin"):
        return None
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    k = int(worker[2:]) if worker[:2] == "gw" and worker[2:].isdigit() else 0
    return one_cpu(k)


def _explore(item: pytest.Function, setup: Any, spec: ExploreSpec) -> None:
    from xensched.explore import Explorer, make_strategy
    from xensched.explore.engine import share_of_runs
    from xensched.explore.replay import Replay
    from xensched.explore.threads import ThreadsTarget
    from xensched.pytest_plugin import get_base_seed, rerun_command

    shard: tuple[int, int] | None = None
    if spec.shards > 1:
        param: Any = item.callspec.params[_SHARD_ARG]  # what generate_tests gave
        shard = (int(param[0]), int(param[1]))
    base_seed = get_base_seed(item.config)
    seed = (
        spec.seed
        if spec.seed is not None
        else derive_seed(base_seed, base_nodeid(item.nodeid))
    )
    search = make_strategy(
        spec.strategy,
        seed=seed,
        depth=spec.depth,
        max_preemptions=spec.max_preemptions,
        shard=shard,
    )
    res = Explorer(
        ThreadsTarget(setup),
        search,
        seed=seed,
        runs=share_of_runs(spec.runs, spec.strategy, shard),
        seconds=spec.seconds,
        keep_going=spec.keep_going,
        cpu=_pinned_cpu(item.config),
    ).explore()
    _stop_if_interrupted(res)
    item.user_properties.append(
        (
            _PROPERTY,
            {
                "test": base_nodeid(item.nodeid),
                "strategy": spec.strategy,
                "shard": list(shard) if shard is not None else [0, 1],
                "runs": res.runs,
                "distinct": res.distinct,
                "exhaustive": res.exhaustive,
                "kinds": sorted(res.kinds),
            },
        )
    )
    if res.failing is None:
        return
    options: dict[str, Any] = {
        "depth": spec.depth,
        "max_preemptions": spec.max_preemptions,
        "shard": list(shard) if shard is not None else None,
        "base_seed": base_seed,
        "memory_model": _model_option(item.config) or spec.memory_model or "sc",
    }
    replay = Replay.of(
        res.failing,
        seed=seed,
        strategy=spec.strategy,
        nodeid=item.nodeid,
        options=options,
    )
    try:
        shown = _write_replay(item, replay.to_json())
    except OSError as exc:  # a full disk, say: the violation is still the failure
        shown = None
        why = f"replay file not written: {exc.strerror or exc}"
        item.add_report_section("call", "xensched explore", why)
    lines = describe_failure(
        res, res.failing, what=f"{spec.strategy} exploration (seed {seed})"
    )
    shards = _shards_option(item.config)
    given_model = _model_option(item.config)
    if shown is None:
        lines.append(why)
    else:
        lines += [
            f"replay file: {shown}",
            "re-run this schedule with:",
            f"  {replay_command(item.nodeid, shown, shards, given_model)}",
        ]
    if spec.seed is None:
        extra = [f"--xensched-shards {shards}"] if shards is not None else []
        if given_model is not None:
            extra.append(f"--xensched-memory-model {given_model}")
        lines += [
            "re-run the exploration with:",
            f"  {rerun_command(item.nodeid, base_seed, extra)}",
        ]
    pytest.fail("\n".join(lines), pytrace=False)


def _stop_if_interrupted(res: ExploreResult) -> None:
    """Ctrl-C during an exploration: the explorer turned it into a result, which
    would pass the test and go on to the next; pytest stops the session instead."""
    if res.interrupted:
        raise KeyboardInterrupt


def _write_replay(item: pytest.Function, text: str) -> str:
    config = item.config
    given: str | None = config.getoption("xensched_replay_dir")
    directory = (
        Path(given) if given is not None else config.rootpath / ".xensched" / "replays"
    )
    path = replay_path(directory, item.nodeid)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(str(path), text)
    shown = _relative(path.resolve(), config.invocation_params.dir)
    item.user_properties.append(("xensched_replay", shown))
    item.add_report_section("call", "xensched explore", f"replay file: {shown}")
    return shown


def _relative(path: Path, start: Path) -> str:
    try:
        return str(path.relative_to(start.resolve()))
    except ValueError:
        return str(path)


def _replay(item: pytest.Function, setup: Any, replay: Replay) -> None:
    from xensched.explore import Explorer
    from xensched.explore.replay import ReplayDivergedError, ReplaySchedule
    from xensched.explore.threads import ThreadsTarget

    search = ReplaySchedule(replay.schedule, replay.accesses)
    diverged = None
    try:
        res = Explorer(ThreadsTarget(setup), search, seed=replay.seed, runs=1).explore()
    except ReplayDivergedError as exc:
        diverged = exc
    else:
        _stop_if_interrupted(res)
    if diverged is not None:
        pytest.fail(
            f"{diverged}\n(the replay of {replay.strategy}, seed {replay.seed}: the "
            "test or the code it runs changed since the file was written)",
            pytrace=False,
        )
    if res.failing is not None:
        path = item.config.getoption("xensched_replay")
        lines = describe_failure(res, res.failing, what=f"replay of {path}")
        pytest.fail("\n".join(lines), pytrace=False)


def _merge(into: dict[str, dict[str, Any]], fig: Mapping[str, Any]) -> None:
    test = str(fig["test"])
    k, n = fig["shard"]
    m = into.setdefault(
        test,
        {
            "strategy": fig["strategy"],
            "shards": int(n),
            "ran": set(),
            "runs": 0,
            "distinct": 0,
            "exhaustive": True,
            "kinds": set(),
        },
    )
    m["ran"].add(int(k))
    m["runs"] += int(fig["runs"])
    m["distinct"] += int(fig["distinct"])
    m["exhaustive"] = m["exhaustive"] and bool(fig["exhaustive"])
    m["kinds"].update(fig["kinds"])


def summary_lines(merged: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One line per explored test, its shards merged."""
    lines = []
    for test, m in merged.items():
        n = m["shards"]
        ran = len(m["ran"])
        complete = ran == n
        shards = (
            ""
            if n == 1
            else f" over {n} shards"
            if complete
            else (f" over {ran} of {n} shards")
        )
        ending = "exhaustive" if m["exhaustive"] and complete else "not exhaustive"
        kinds = ", ".join(sorted(m["kinds"])) or "none"
        lines.append(
            f"{test}: {m['strategy']}, {m['runs']} runs{shards}, {ending}, "
            f"violations: {kinds}"
        )
    return lines


class _Summary:
    """Collects the figures that the items' reports carry (from xdist workers too)
    and prints them merged at the end."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.merged: dict[str, dict[str, Any]] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call":
            return
        for name, value in report.user_properties:
            if name == _PROPERTY and isinstance(value, dict):
                _merge(self.merged, value)

    def pytest_terminal_summary(
        self, terminalreporter: pytest.TerminalReporter
    ) -> None:
        if not self.merged or getattr(self.config, "workerinput", None) is not None:
            return
        terminalreporter.write_sep("-", "xensched explore")
        for line in summary_lines(self.merged):
            terminalreporter.write_line(line)
