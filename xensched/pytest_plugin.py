"""pytest plugin of xensched: seeds, and the failure section that reruns a test.

Mirrors nothing in Xen. Declared once, through the ``pytest11`` entry point
``xensched``. It offers:

- ``--xensched-seed SEED``: the base seed of the session, printed in the report
  header. Resolved as :mod:`xensched.seeds` says: the option, ``XENSCHED_SEED``, then a
  fresh seed. Under pytest-xdist the controller resolves it once and hands it to every
  worker through ``workerinput``, so a fresh seed is the same on all workers.
- the ``xensched_seed`` fixture: the per-test seed, ``base ^ crc32(nodeid)``.
- on failure of a test that used it, a report section ``xensched`` with the per-test
  seed and the pytest command that reruns it. Other plugins add to the section (rerun
  options, commands, details) with :func:`add_section_contributor`; the stress
  harness's plugin (``xensched_stress.pytest_plugin``, its own ``pytest11`` entry
  point) adds its ``--stress-duration`` and the ``xensched stress`` commands.
- the ``explore`` marker, the ``xensched_world`` fixture and the options
  ``--xensched-replay``, ``--xensched-replay-dir``, ``--xensched-shards``,
  ``--xensched-pin`` and ``--xensched-memory-model`` (over the marker's
  ``memory_model=``) and ``--xensched-lockdep`` / ``--no-xensched-lockdep`` (over
  the ``explore`` and ``stress`` markers' ``lockdep=``), ``--xensched-race-detector`` /
  ``--no-xensched-race-detector`` (over the markers' ``race_detector=``): declared
  here, implemented in :mod:`xensched.explore.pytest_explore` (registered as a plugin
  in ``pytest_configure``, so that a session imports the explorer only then).
- :func:`assert_no_violations`, for any run report with ``exit_code``, ``violations``,
  ``seed`` and ``render()``.
- with pytest-timeout: each test's deadline in ``item.stash[TIMEOUT_DEADLINE_KEY]``
  (so that the stress plugin can end its runs before it), and, for tests that use the
  seed under the ``thread`` method, a timer of its own in place of pytest-timeout's
  (see "pytest-timeout" below).

pytest-timeout
--------------
The failure section of a test that pytest-timeout ends must not be lost. With the
``signal`` method pytest-timeout fails the test in the main thread and the section
comes by the ordinary path. With the ``thread`` method its timer dumps the stacks and
calls ``os._exit(1)``: no report, no summary, no JUnit XML. So for a test that uses
the seed, this plugin implements ``pytest_timeout_set_timer`` (the hook pytest-timeout
offers for "alternative timeout implementation strategies") with a timer of its own
that, when it fires: lets the listeners of :func:`add_timeout_listener` act (the
stress plugin stops its run and waits for the partial report), logs a failed report
of the test with the ``xensched`` section (through ``pytest_runtest_logreport``, so the
terminal, the JUnit XML and, under xdist, the controller receive it), ends the session
(``pytest_sessionfinish``: summary, JUnit XML) unless this is an xdist worker (whose
controller does that), and then hands over to pytest-timeout's own expiry
(``pytest_timeout.timeout_timer``: captured output, stack dump, ``os._exit(1)``).
What it relies on of pytest-timeout (2.4): the two hooks, the fields of the
``Settings`` it passes (``timeout``, ``method``, ``disable_debugger_detection``),
``is_debugging()``, and ``timeout_timer(item, settings)``; without the latter it dumps
the stacks with :mod:`faulthandler` and exits as pytest-timeout would.

This plugin never imports the stress harness: the dependency goes from
``xensched_stress`` to ``xensched`` only. Everything it does is also a plain function,
so the plugin is a thin adapter (xdist's ``get_xdist_worker_id`` next to its
``worker_id`` fixture is the model).
"""

from __future__ import annotations

import argparse
import dataclasses
import faulthandler
import importlib
import os
import sys
import threading
import time
import traceback
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, final

import pytest

from xensched.instruments import LOCKDEP_DEFAULT, RACE_DETECTOR_DEFAULT
from xensched.memory_model import MODELS
from xensched.options import LOCKDEP_HELP, MEMORY_MODEL_HELP, RACE_DETECTOR_HELP
from xensched.seeds import (
    SEED_ENV as SEED_ENV,
    SEED_MAX as SEED_MAX,
    derive_seed as derive_seed,
    parse_seed as parse_seed,
    resolve_base_seed as resolve_base_seed,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterable, Sequence

    from xensched.violation import Violation

__all__ = [
    "BASE_SEED_KEY",
    "SEED_ENV",
    "SEED_MAX",
    "TEST_SEED_KEY",
    "TIMEOUT_DEADLINE_KEY",
    "SectionExtra",
    "TimeoutDeadline",
    "add_section_contributor",
    "add_timeout_listener",
    "assert_no_violations",
    "derive_seed",
    "fail_collection",
    "failure_section",
    "get_base_seed",
    "item_section",
    "parse_seed",
    "rerun_command",
    "resolve_base_seed",
]

_WORKERINPUT_KEY: Final = "xensched_base_seed"

BASE_SEED_KEY: Final = pytest.StashKey[int]()
TEST_SEED_KEY: Final = pytest.StashKey[int]()


@final
@dataclasses.dataclass(frozen=True, slots=True)
class SectionExtra:
    """What another plugin adds to the ``xensched`` failure section of one test.

    ``options`` go on the pytest rerun command, ``commands`` are more lines under
    "rerun with:", ``details`` come last.
    """

    options: tuple[str, ...] = ()
    commands: tuple[str, ...] = ()
    details: tuple[str, ...] = ()


_CONTRIBUTORS_KEY: Final = pytest.StashKey[
    list["Callable[[pytest.Item], SectionExtra]"]
]()


def add_section_contributor(
    config: pytest.Config, contributor: Callable[[pytest.Item], SectionExtra]
) -> None:
    """Have ``contributor(item)`` add to the failure section of every failed test."""
    config.stash.setdefault(_CONTRIBUTORS_KEY, []).append(contributor)


@final
@dataclasses.dataclass(frozen=True, slots=True)
class TimeoutDeadline:
    """When pytest-timeout will end a test: ``at`` on :func:`time.monotonic`."""

    at: float
    seconds: float
    method: str  # "signal" or "thread", as pytest-timeout will run it


TIMEOUT_DEADLINE_KEY: Final = pytest.StashKey[TimeoutDeadline]()
_TIMER_KEY: Final = pytest.StashKey[threading.Timer]()
_LISTENERS_KEY: Final = pytest.StashKey[list["Callable[[pytest.Item], None]"]]()


def add_timeout_listener(
    config: pytest.Config, listener: Callable[[pytest.Item], None]
) -> None:
    """Have ``listener(item)`` called (from a timer thread) when pytest-timeout's
    thread method is about to end the process, before the failure is reported."""
    config.stash.setdefault(_LISTENERS_KEY, []).append(listener)


class RunReport(Protocol):
    """What :func:`assert_no_violations` reads of a run's report."""

    @property
    def seed(self) -> int: ...
    @property
    def exit_code(self) -> int: ...
    @property
    def violations(self) -> Sequence[Violation]: ...
    def render(self) -> str: ...


# -- library ---------------------------------------------------------------------------
def get_base_seed(config: pytest.Config) -> int:
    """The session's base seed (the same on the xdist controller and its workers)."""
    return config.stash[BASE_SEED_KEY]


def assert_no_violations(report: RunReport) -> None:
    """Fail, showing the rendered report, if a run found violations or hung."""
    __tracebackhide__ = True
    if report.exit_code != 0 or report.violations:
        raise AssertionError(
            f"stress run (seed {report.seed}) failed:\n{report.render()}"
        )


def rerun_command(nodeid: str, base_seed: int, options: Sequence[str] = ()) -> str:
    """The shell command that reruns one test with the same seeds."""
    quoted = "'" + nodeid.replace("'", "'\"'\"'") + "'"
    return " ".join([f"pytest {quoted} --xensched-seed={base_seed}", *options])


def failure_section(
    nodeid: str, base_seed: int, extras: Iterable[SectionExtra] = ()
) -> str:
    """The text of the ``xensched`` report section of a failed test."""
    extras = list(extras)
    seed = derive_seed(base_seed, nodeid)
    options = [o for e in extras for o in e.options]
    lines = [
        f"per-test seed {seed} (base seed {base_seed} ^ crc32 of the node id)",
        "rerun with:",
        f"  {rerun_command(nodeid, base_seed, options)}",
    ]
    lines += [f"  {c}" for e in extras for c in e.commands]
    lines += [d for e in extras for d in e.details]
    return "\n".join(lines)


def item_section(item: pytest.Item) -> str | None:
    """The ``xensched`` section of a test that used the seed, else None."""
    if TEST_SEED_KEY not in item.stash:
        return None
    contributors = item.config.stash.get(_CONTRIBUTORS_KEY, [])
    return failure_section(
        item.nodeid,
        item.config.stash[BASE_SEED_KEY],
        [contribute(item) for contribute in contributors],
    )


# -- hooks -------------------------------------------------------------------------------
class _XdistNode(Protocol):
    # The part of xdist's WorkerController that pytest_configure_node uses.
    config: pytest.Config
    workerinput: dict[str, Any]


def fail_collection(
    report: pytest.CollectReport,
    config: pytest.Config,
    problems_of: Callable[[pytest.Config, list[pytest.Item]], list[str]],
) -> pytest.CollectReport:
    """Turn the misuse of a marker into a collection error (for a plugin's
    ``pytest_make_collect_report`` wrapper): the session stops before any test runs,
    rather than failing the test after the others ran, under xdist too, where a
    worker's ``UsageError`` is an internal error. ``problems_of`` names each misuse
    among the collected items, one line each."""
    if report.passed:
        items = [x for x in report.result if isinstance(x, pytest.Item)]
        problems = problems_of(config, items)
        if problems:
            report.outcome = "failed"
            report.longrepr = "\n".join(problems)
            report.result = []
    return report


def _seed_option(text: str) -> int:
    try:
        return parse_seed(text)
    except ValueError as exc:
        raise pytest.UsageError(f"--xensched-seed: {exc}") from None


#: The most items ``--xensched-shards`` splits a test into: many more than any
#: machine's xdist workers, few enough that collection stays quick (three million
#: took 1.7 GB and more than 20 s before any test ran).
MAX_SHARDS = 1024


def _shards_option(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= MAX_SHARDS:
        raise pytest.UsageError(
            f"--xensched-shards: {text!r} is not an int in [1, {MAX_SHARDS}]"
        )
    return n


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
    # The explore marker's options; the rest is in xensched.explore.pytest_explore.
    group.addoption(
        "--xensched-replay",
        default=None,
        metavar="FILE",
        help="Run the @pytest.mark.explore test of the replay FILE's node id on "
        "exactly its recorded schedule, once",
    )
    group.addoption(
        "--xensched-replay-dir",
        default=None,
        metavar="DIR",
        help="Where failing explorations write their replay files (default: "
        ".xensched/replays under the rootdir)",
    )
    group.addoption(
        "--xensched-shards",
        type=_shards_option,
        default=None,
        metavar="N",
        help="Split every @pytest.mark.explore test into N items (1 to "
        f"{MAX_SHARDS}), disjoint shares "
        "of its exploration (for pytest-xdist), overriding the marker's shards",
    )
    group.addoption(
        "--xensched-pin",
        action="store_true",
        default=False,
        help="Run each @pytest.mark.explore test's threads on one CPU while it "
        "explores (xdist worker gwN on the N-th CPU, else the first): one thread "
        "goes at a time, and a hand-off within one CPU is cheaper (as xensched "
        "explore --pin)",
    )
    group.addoption(
        "--xensched-memory-model",
        choices=list(MODELS),
        default=None,
        help="Run every @pytest.mark.explore test under this memory model, "
        f"overriding the marker's memory_model: {MEMORY_MODEL_HELP} (default: the "
        "marker's, else sc; a test that picks one itself keeps it)",
    )
    group.addoption(
        "--xensched-lockdep",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Run every @pytest.mark.explore and @pytest.mark.stress test with "
        "lockdep on (--no-xensched-lockdep: off), overriding the markers' lockdep=: "
        f"{LOCKDEP_HELP} (default: the marker's, else "
        f"{'on' if LOCKDEP_DEFAULT else 'off'})",
    )
    group.addoption(
        "--xensched-race-detector",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Run every @pytest.mark.explore and @pytest.mark.stress test with "
        "the race detector on (--no-xensched-race-detector: off), overriding the "
        f"markers' race_detector=: {RACE_DETECTOR_HELP} (default: the marker's, "
        f"else {'on' if RACE_DETECTOR_DEFAULT else 'off'})",
    )


def pytest_configure(config: pytest.Config) -> None:
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
    from xensched.explore import pytest_explore  # only now: it imports the explorer

    config.addinivalue_line("markers", pytest_explore.MARKER_HELP)
    if not config.pluginmanager.is_registered(pytest_explore):
        config.pluginmanager.register(pytest_explore, "xensched-explore")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: _XdistNode) -> None:
    # xdist hook, on the controller, once per worker before it starts.
    node.workerinput[_WORKERINPUT_KEY] = node.config.stash[BASE_SEED_KEY]


# trylast: terminal.py prints the header hooks' results in reverse call order, so the
# base seed line comes first, before what other plugins add.
@pytest.hookimpl(trylast=True)
def pytest_report_header(config: pytest.Config) -> list[str]:
    return [f"xensched: base seed {config.stash[BASE_SEED_KEY]}"]


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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    text = item_section(item) if report.failed else None
    if text is not None:
        report.sections.append(("xensched", text))
        # JUnit XML writes properties, not sections: the teardown report carries it.
        if ("xensched_section", text) not in item.user_properties:
            item.user_properties.append(("xensched_section", text))
    return report


# -- pytest-timeout ----------------------------------------------------------------------
class _TimeoutSettings(Protocol):
    # The fields of pytest_timeout.Settings that this plugin reads.
    @property
    def timeout(self) -> float: ...
    @property
    def method(self) -> str: ...
    @property
    def disable_debugger_detection(self) -> bool | None: ...


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_timeout_set_timer(
    item: pytest.Item, settings: _TimeoutSettings
) -> bool | None:
    # pytest-timeout hook (firstresult): None lets pytest-timeout set its own timer.
    seconds = float(settings.timeout)
    method = settings.method
    if method == "signal" and threading.current_thread() is not threading.main_thread():
        method = "thread"  # what pytest-timeout does too: SIGALRM needs the main thread
    item.stash[TIMEOUT_DEADLINE_KEY] = TimeoutDeadline(
        time.monotonic() + seconds, seconds, method
    )
    if method != "thread" or "xensched_seed" not in getattr(item, "fixturenames", ()):
        return None
    timer = threading.Timer(seconds, _thread_timeout, (item, settings))
    timer.name = f"xensched timeout {item.nodeid}"
    timer.daemon = True
    item.stash[_TIMER_KEY] = timer
    timer.start()
    return True


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_timeout_cancel_timer(item: pytest.Item) -> bool | None:
    if TIMEOUT_DEADLINE_KEY in item.stash:
        del item.stash[TIMEOUT_DEADLINE_KEY]
    timer = item.stash.get(_TIMER_KEY, None)
    if timer is None:
        return None
    del item.stash[_TIMER_KEY]
    timer.cancel()
    if timer is not threading.current_thread():
        timer.join()
    return True


def _thread_timeout(item: pytest.Item, settings: _TimeoutSettings) -> None:
    # The timer thread: report what is known, then pytest-timeout's expiry.
    # Untyped (no py.typed): read through Any, and only what the module doc lists.
    pytest_timeout: Any = importlib.import_module("pytest_timeout")
    if not settings.disable_debugger_detection and pytest_timeout.is_debugging():
        return  # pytest-timeout leaves a debugging session alone; so do we
    try:
        for listener in item.config.stash.get(_LISTENERS_KEY, []):
            listener(item)
        _report_timeout(item, settings)
    except Exception:
        traceback.print_exc()
    expire = getattr(pytest_timeout, "timeout_timer", None)
    if expire is not None:
        expire(item, settings)  # dumps the stacks and calls os._exit(1)
    faulthandler.dump_traceback(all_threads=True)
    sys.stdout.flush()
    os._exit(1)


def _report_timeout(item: pytest.Item, settings: _TimeoutSettings) -> None:
    text = item_section(item)
    properties = list(item.user_properties)
    sections: list[tuple[str, str]] = []
    if text is not None:
        sections.append(("xensched", text))
        properties.append(("xensched_section", text))
    capman = item.config.pluginmanager.getplugin("capturemanager")
    if capman is not None:
        # What follows goes to the real terminal, as pytest-timeout's dump does.
        capman.suspend_global_capture(item)
    keywords: dict[str, Literal[1]] = dict.fromkeys(item.keywords, 1)
    message = (
        f"Timeout (>{settings.timeout:g}s) from pytest-timeout, thread method: the "
        "process ends after the stack dump that follows"
    )
    for when, outcome, longrepr in (
        ("call", "failed", message),
        ("teardown", "passed", None),
    ):
        report = pytest.TestReport(
            item.nodeid,
            item.location,
            keywords,
            outcome,  # type: ignore[arg-type]
            longrepr,
            when,  # type: ignore[arg-type]
            sections=sections if when == "call" else (),
            user_properties=properties,
        )
        item.ihook.pytest_runtest_logreport(report=report)
    if getattr(item.config, "workerinput", None) is None:
        # Not an xdist worker: nobody else will write the summary and the JUnit XML.
        item.session.shouldfail = "pytest-timeout"
        item.config.hook.pytest_sessionfinish(
            session=item.session, exitstatus=pytest.ExitCode.TESTS_FAILED
        )
