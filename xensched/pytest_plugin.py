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
- :func:`assert_no_violations`, for any run report with ``exit_code``, ``violations``,
  ``seed`` and ``render()``.

This plugin never imports the stress harness: the dependency goes from
``xensched_stress`` to ``xensched`` only. Everything it does is also a plain function,
so the plugin is a thin adapter (xdist's ``get_xdist_worker_id`` next to its
``worker_id`` fixture is the model).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Final, Protocol, final

import pytest

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
    "SectionExtra",
    "add_section_contributor",
    "assert_no_violations",
    "derive_seed",
    "failure_section",
    "get_base_seed",
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


# -- hooks -------------------------------------------------------------------------------
class _XdistNode(Protocol):
    # The part of xdist's WorkerController that pytest_configure_node uses.
    config: pytest.Config
    workerinput: dict[str, Any]


def _seed_option(text: str) -> int:
    try:
        return parse_seed(text)
    except ValueError as exc:
        raise pytest.UsageError(f"--xensched-seed: {exc}") from None


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
    if report.failed and TEST_SEED_KEY in item.stash:
        contributors = item.config.stash.get(_CONTRIBUTORS_KEY, [])
        text = failure_section(
            item.nodeid,
            item.config.stash[BASE_SEED_KEY],
            [contribute(item) for contribute in contributors],
        )
        report.sections.append(("xensched", text))
    return report
