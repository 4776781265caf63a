"""``xensched fuzz``'s two budgets: ``--duration`` bounds the search for a failing
sequence, ``--shrink-duration`` the shrinking of the one found, each on its own; the
text report and the JSON say how long each part took and how it ended.

The failures are planted (a violation raised by the machine itself on a
``cpupool-migrate`` after a ``create``), so that they are found within the first
examples (the third, with ``--seed 1``) and their shrinking is real work (the first
failing sequence has nine operations, the shortest five).
"""

from __future__ import annotations

import json
import re
import threading
import time
from typing import TYPE_CHECKING, Any, ClassVar

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from tests._schemas import validate
from xensched.violation import Violation, ViolationKind
from xensched_stress import fuzz_cli
from xensched_stress.fuzz import FuzzConfig, XlFuzzMachine, run_script

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from xensched.scenario import XlOp


class Planted(XlFuzzMachine):
    """Fails on a ``cpupool-migrate`` after a ``create`` (any, refused ones too);
    with ``pause``, each operation takes that long more (a slow host)."""

    pause: ClassVar[float] = 0.0
    #: Each example after the first failure takes that long more (a slow shrink).
    shrink_pause: ClassVar[float] = 0.0
    #: Set the campaign's stop event (as a signal would) after this many examples
    #: past the first failure (None: never).
    stop_after: ClassVar[int | None] = None

    def __init__(self) -> None:
        super().__init__()
        if self.shrink_pause and type(self).shortest_failure is not None:
            time.sleep(self.shrink_pause)

    def _run(self, op: XlOp, action: Callable[[], object] | None = None) -> None:
        cls = type(self)
        if cls.stop_after is not None and cls.stop is not None:
            first = cls.first_failure
            if first is not None and cls.examples - first.examples >= cls.stop_after:
                cls.stop.set()
        super()._run(op, action)
        if self.pause:
            time.sleep(self.pause)
        created = any(o.startswith("create ") for o in self.log[:-1])
        if created and op.verb == "cpupool-migrate":
            planted = Violation(ViolationKind.ASSERT, None, "xl", "planted", "xl")
            self._fail_on([planted], op)


class NeverFails(XlFuzzMachine):
    """A slow host on which nothing fails: 50 ms an operation, so that a batch of 10
    examples of up to 25 operations would take some 10 s."""

    def _run(self, op: XlOp, action: Callable[[], object] | None = None) -> None:
        super()._run(op, action)
        time.sleep(0.05)


def _campaign(
    base: type[XlFuzzMachine], **attrs: object
) -> Callable[[FuzzConfig], type[XlFuzzMachine]]:
    """A machine_class that gives each campaign a fresh subclass of ``base``."""

    def make(cfg: FuzzConfig) -> type[XlFuzzMachine]:
        return type(f"{base.__name__}Campaign", (base,), {"config": cfg, **attrs})

    return make


@pytest.fixture(autouse=True)
def _hypothesis_warmed_up() -> None:
    """Hypothesis's one-off start-up done before the campaign: its first draw in a
    process reads the constants of every local module (seconds, for this tree),
    which would otherwise be the first search's, and make "found early" a matter of
    which test ran first in the process."""

    @given(st.integers())
    @settings(max_examples=1, database=None, deadline=None)
    def draw(x: int) -> None:
        pass

    draw()


def _fuzz(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    machine: Callable[[FuzzConfig], type[XlFuzzMachine]],
    *argv: str,
) -> tuple[int, str, dict[str, Any], float]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(fuzz_cli, "machine_class", machine)
    t0 = time.monotonic()
    code = fuzz_cli.main(
        [
            *("--cpus", "2", "--seed", "1", "--no-explore", "--no-progress"),
            *("--json", "out.json", *argv),
        ]
    )
    took = time.monotonic() - t0
    out = capsys.readouterr().out
    data = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    validate("fuzz", data)
    return code, out, data, took


def _part(data: dict[str, Any], name: str) -> dict[str, Any]:
    part = data[name]
    assert isinstance(part, dict), data
    return part


def test_a_failure_found_early_is_shrunk_to_the_end_and_each_part_timed(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A search budget shorter than the shrinking: the failure is found within it (at
    # the third example: under a second, on an idle machine), and the shrinking (some
    # 230 examples, 6 s and more, made 5 s longer here so that it outlasts the search
    # budget on any machine) goes on past it to the end.
    code, out, data, _ = _fuzz(
        tmp_path,
        monkeypatch,
        capsys,
        _campaign(Planted, shrink_pause=0.02),
        "--duration",
        "5",
    )
    assert code == fuzz_cli.EXIT_FOUND, out
    assert [v["kind"] for v in data["violations"]] == ["assert"]
    search, shrink = _part(data, "search"), _part(data, "shrink")
    assert search["budget"] == 5.0
    assert search["stopped"] == "failure", out
    assert shrink["budget"] == fuzz_cli.SHRINK_DURATION
    assert shrink["stopped"] == "done"
    # The shortest failing sequence: the initial pool (three operations), a create,
    # a cpupool-migrate.
    script = data["script"]
    assert isinstance(script, list)
    assert len(script) == 5, script
    assert script[3].startswith("create ")
    assert script[4].startswith("cpupool-migrate ")
    assert shrink["after"] == 5
    assert isinstance(shrink["before"], int)
    assert shrink["before"] > 5  # there was something to shrink
    # How long each part took, and what each ran; together, the campaign's figures.
    assert isinstance(search["seconds"], float)
    assert isinstance(shrink["seconds"], float)
    assert 0 < search["seconds"] < 5.0
    assert search["seconds"] + shrink["seconds"] > 5.0  # past the search's budget...
    assert shrink["stopped"] == "done"  # ...yet completed
    assert abs(search["seconds"] + shrink["seconds"] - data["seconds"]) < 0.01
    assert search["examples"] + shrink["examples"] == data["examples"]
    assert search["operations"] + shrink["operations"] == data["operations"]
    assert shrink["examples"] > 0
    assert shrink["replays"] == 0
    # The text says it too (its times to a tenth of a second).
    assert re.search(
        rf"\nsearched for \d+\.\ds \(budget 5s\): {search['examples']} examples, "
        rf"{search['operations']} xl operations, until the first failure\n",
        out,
    ), out
    assert re.search(
        rf"\nshrunk for \d+\.\ds \(budget {fuzz_cli.SHRINK_DURATION:g}s\): "
        rf"{shrink['examples']} examples, {shrink['operations']} xl operations: "
        rf"{shrink['before']} operations down to 5\n",
        out,
    ), out


def test_the_shrinking_stops_at_its_own_budget(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # 20 ms an operation: shrinking to the five operations takes far longer than 1 s.
    code, out, data, took = _fuzz(
        tmp_path,
        monkeypatch,
        capsys,
        _campaign(Planted, pause=0.02),
        *("--duration", "20", "--shrink-duration", "1"),
    )
    assert code == fuzz_cli.EXIT_FOUND, out
    shrink = _part(data, "shrink")
    assert _part(data, "search")["stopped"] == "failure"
    assert shrink["budget"] == 1.0
    assert shrink["stopped"] == "budget"
    # Within the budget, plus the example under way when it ran out.
    assert isinstance(shrink["seconds"], float)
    assert 1.0 <= shrink["seconds"] < 1.0 + 3.0
    assert took < 30.0
    # The shortest failing sequence seen by then, which fails again.
    script = data["script"]
    assert isinstance(script, list)
    assert shrink["after"] == len(script)
    assert 5 <= len(script) <= shrink["before"]
    failure = run_script(_campaign(Planted)(FuzzConfig(cpus=2)), script)
    assert failure is not None
    assert [v.message for v in failure.violations] == ["planted"]
    assert "stopped at its budget: the shortest failing sequence so far" in out
    assert data["script_file"]  # written, with its replay command


def test_the_search_stops_at_its_budget_within_a_batch(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, data, took = _fuzz(
        tmp_path, monkeypatch, capsys, _campaign(NeverFails), "--duration", "1"
    )
    assert code == fuzz_cli.EXIT_OK, out
    assert took < 1.0 + 5.0  # not the batch's 10 s
    search = _part(data, "search")
    assert data["shrink"] is None
    assert search["stopped"] == "budget"
    assert isinstance(search["seconds"], float)
    assert 1.0 <= search["seconds"] < 1.0 + 3.0
    assert search["examples"] == data["examples"]
    assert "until the budget ran out" in out
    assert "nothing to shrink" in out


def test_an_interrupted_shrink_reports_the_shortest_failure_so_far(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, data, _ = _fuzz(
        tmp_path,
        monkeypatch,
        capsys,
        _campaign(Planted, stop_after=3),
        "--duration",
        "20",
    )
    assert code == fuzz_cli.EXIT_INTERRUPTED, out
    assert data["complete"] is False
    shrink = _part(data, "shrink")
    assert shrink["stopped"] == "interrupted"
    assert [v["kind"] for v in data["violations"]] == ["assert"]
    script = data["script"]
    assert isinstance(script, list)
    assert script[-1].startswith("cpupool-migrate ")
    assert shrink["after"] == len(script)
    assert "interrupted: the shortest failing sequence so far" in out
    assert data["script_file"]  # the failure is not lost: its script is written
    assert data["explorer"] is None  # but not explored


def test_a_flaky_failure_shrinks_by_replay_within_the_shrink_budget(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Hypothesis cannot replay it (Flaky): the shrink by replay takes what is left of
    # the shrink budget, and its replays are counted apart.
    from tests.fuzz.test_failures import FailsOnce

    monkeypatch.chdir(tmp_path)
    campaign = _campaign(FailsOnce, left=1)(FailsOnce.config)
    monkeypatch.setattr(fuzz_cli, "machine_class", lambda cfg: campaign)
    report = fuzz_cli.FuzzReport(5, FailsOnce.config, None)
    t0 = time.monotonic()
    fuzz_cli._run_campaign(
        FailsOnce.config, 60.0, report, False, threading.Event(), shrink_duration=2.0
    )
    assert time.monotonic() - t0 < 60.0
    assert report.flaky
    assert report.shrink is not None
    assert report.shrink.replays > 0
    assert report.shrink.seconds <= 2.0 + 3.0
    assert report.shrink.stopped in ("done", "budget")
    assert report.shrink.after == len(report.script)
