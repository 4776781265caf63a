"""Every option of ``xensched stress``, ``bench`` and ``reproduce`` is checked with
its own one-line message naming the option and what it allows; exit 2, nothing run.

Through the real entry point, ``xensched.cli.main``, as the user types them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from xensched.cli import main
from xensched.scenario import builtin

if TYPE_CHECKING:
    from pathlib import Path


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The one error line of ``xensched ARGV``, after checking the rest is silent."""
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no seed line, no header: nothing ran
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"xensched {argv[0]}: error: ")
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        # The cases of issue 7.
        (
            ["--duration", "inf"],
            "--duration inf: must be a finite number of seconds in (0, 86400]",
        ),
        (["--duration", "nan"], "--duration nan: must be a finite number of seconds"),
        (["--duration", "0"], "--duration 0: must be a finite number of seconds"),
        (["--duration", "86401"], "--duration 86401: must be a finite number"),
        (["--domains", "100000"], "--domains 100000: must be an integer in [0, 1024]"),
        (["--pool", "p1:credit2:1,1"], "pool 'p1:credit2:1,1': pCPU 1 is given twice"),
        (["--pool", "p1:credit2:"], "pool 'p1:credit2:': empty pCPU list after"),
        (["--pool", "p1:credit2:2-3,3"], "pCPU 3 is given twice in '2-3,3'"),
        (["--cpus", "0"], "--cpus 0: must be an integer in [1, 256]"),
        (["--cpus", "1"], "cpus=1: a stress run needs 2 to 256 pCPUs"),
        # Each option's own line, with its range.
        (["--vcpus", "0"], "--vcpus 0: must be an integer in [1, 128]"),
        (["--vcpus", "129"], "--vcpus 129: must be an integer in [1, 128]"),
        (
            ["--domains", "1024", "--vcpus", "8"],
            "domains=1024 x vcpus=8: at most 4096 guest vCPUs in all",
        ),
        (["--ops", "0"], "--ops 0: must be an integer in [1, 10000000000]"),
        (["--seed", "-1"], "--seed '-1' is not a seed: expected an integer in 0.."),
        (["--seed", str(2**32)], "--seed '4294967296' is not a seed"),
        (["--switch-interval", "0"], "--switch-interval 0: must be a finite number"),
        (["--controllers", "65"], "--controllers 65: must be an integer in [0, 64]"),
        (["--domain-moves", "-0.1"], "--domain-moves -0.1: must be a probability"),
        (["--traffic", "nan"], "--traffic nan: must be a probability in [0, 1]"),
        (["--delay-injection", "2"], "--delay-injection 2: must be a probability"),
        (["--max-delay", "5"], "--max-delay 5: must be a finite number of seconds in"),
        (["--gil-switch-interval", "0"], "--gil-switch-interval 0: must be a finite"),
        (["--watchdog", "inf"], "--watchdog inf: must be a finite number of seconds"),
        (["--lock-timeout", "-1"], "--lock-timeout -1: must be a finite number"),
        (["--max-violations", "0"], "--max-violations 0: must be an integer in [1,"),
        (
            ["--max-events", "1001"],
            "--max-events 1001: must be an integer in [0, 1000]",
        ),
        (["--duration", "x"], "--duration x: must be a finite number of seconds"),
        (["--duration", ""], "--duration '': must be a finite number of seconds"),
        (["--domains", "many"], "--domains 'many': must be an integer in [0, 1024]"),
    ],
)
def test_stress_option_refused_in_one_line(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert needle in _refused(["stress", *argv], capsys)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        # The cases of issue 7: no traceback, no "0 of -1 seeds", no "[]".
        (["--fixed-total", "-1"], "--fixed-total -1: must be a finite number"),
        (["--figure-duration", "0"], "--figure-duration 0: must be a finite number"),
        (["--seeds", "-1"], "--seeds -1: must be an integer in [1, 1000]"),
        (["--only", ""], "--only '': must name at least one part, of a, b, c, d, e, f"),
        (["--only", " , "], "--only ' , ': must name at least one part"),
        (
            ["--only", "a,h"],
            "--only 'a,h': unknown part 'h'; choose from a, b, c, d, e, f, g",
        ),
        (["--move-cap", "0"], "--move-cap 0: must be a finite number of seconds"),
        (["--dpor-cap", "nan"], "--dpor-cap nan: must be a finite number"),
        # --cpus and --race-delay each their own message.
        (["--cpus", "0"], "--cpus 0: must be an integer in [2, 256]"),
        (["--race-delay", "5"], "--race-delay 5: must be a probability in [0, 1]"),
        (["--cpus", "300"], "--cpus 300: must be an integer in [2, 256]"),
        (["--seeds", "1001"], "--seeds 1001: must be an integer in [1, 1000]"),
        (["--seed", "-3"], "--seed '-3' is not a seed"),
        (["--seed", "4294967290"], "seeds up to 4294967309; they must stay in 0.."),
        (["--fixed-total", "inf"], "--fixed-total inf: must be a finite number"),
    ],
)
def test_bench_option_refused_in_one_line(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert needle in _refused(["bench", *argv], capsys)


def test_bench_cpus_and_race_delay_are_separate_messages(
    capsys: pytest.CaptureFixture[str],
) -> None:
    line = _refused(["bench", "--cpus", "3", "--race-delay", "5"], capsys)
    assert "--race-delay 5" in line
    assert "--cpus" not in line


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--protocol", "nope"], "--protocol 'nope': choose legacy, fixed"),
        (["--boot", "bvt"], "argument --boot: invalid choice: 'bvt'"),
        (["--boot", "credit", "--boot", "credit"], "--boot credit: given twice"),
        (["--pool", "rtds", "--pool", "rtds"], "--pool rtds: given twice"),
        (["--direction", "add", "--direction", "add"], "--direction add: given twice"),
    ],
)
def test_reproduce_option_refused_in_one_line(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert needle in _refused(["reproduce", "--no-progress", *argv], capsys)


def test_scenarios_cpus_refused_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    line = _refused(["scenarios", "stress-default", "--cpus", "0"], capsys)
    assert "--cpus 0: must be an integer in [1, 256]" in line


@pytest.mark.parametrize("option", ["--json", "--timeline"])
def test_stress_does_not_write_over_its_scenario_file(
    option: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sc = tmp_path / "sc.json"
    text = builtin("round-trip").to_json()
    sc.write_text(text, encoding="utf-8")
    line = _refused(["stress", "--scenario", str(sc), option, str(sc)], capsys)
    assert line.endswith(
        f"{option} {sc}: the same file as the scenario file {sc} (an output never "
        "replaces an input)"
    )
    assert sc.read_text(encoding="utf-8") == text


def test_help_still_shows_the_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stress", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: xensched stress")
    assert "0 to 1024" in out  # --domains' range
    assert "set-up counts against it" in out  # --duration
