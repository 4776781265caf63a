"""``xensched fuzz`` as a user runs it: options refused before any work, a clean
campaign on the fix, a failing one on a mutant with its script, the replay of that
script, the explorer's replay file, and the --json report against its schema."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from tests._cli_process import CliProcess
from tests._schemas import validate
from xensched_stress.fuzz_cli import main

if TYPE_CHECKING:
    from pathlib import Path


def _fuzz(
    cwd: Path, *argv: str, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xensched", "fuzz", "--no-progress", *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--cpus", "1"], "--cpus 1: must be an integer in [2, 256]"),
        (["--mutant", "nope"], "--mutant 'nope': no such mutant"),
        (["--mutant", "legacy", "--protocol", "fixed"], "cannot be combined"),
        (["--duration", "-1"], "--duration"),
        (
            ["--shrink-duration", "0"],
            "--shrink-duration 0: must be a finite number of seconds in (0, ",
        ),
        (["--traffic", "2"], "--traffic 2: must be a probability in [0, 1]"),
        (
            ["--protocol", "fixed-without:nope"],
            "error: protocol fixed-without:nope: unknown part 'nope'",
        ),
        (["--replay", "missing.xl"], "--replay missing.xl: No such file"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    says: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["--no-progress", *argv]) == 2
    out, err = capsys.readouterr()
    assert says in err
    assert len(err.strip().splitlines()) == 1
    assert out == ""


def test_a_bad_script_line_names_file_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.xl").write_text(
        "# a comment\nxl cpupool-create p1 credit2\nxl vcpu-wake d1v0\n"
    )
    assert main(["--replay", "s.xl"]) == 2
    assert "--replay s.xl:3: fuzz does not run 'vcpu-wake'" in capsys.readouterr().err
    (tmp_path / "s.xl").write_text("xl schedule 1\n")
    assert main(["--replay", "s.xl"]) == 2
    assert "--replay s.xl:1: fuzz does not run 'schedule'" in capsys.readouterr().err


def test_a_script_that_is_not_text_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.xl").write_bytes(b"\xff\xfe xl cpupool-create p1\n")
    assert main(["--no-progress", "--replay", "s.xl"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        "xensched fuzz: error: --replay s.xl: not UTF-8 text (invalid start byte)"
    ]


def test_json_naming_the_replayed_script_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.xl").write_text("xl cpupool-create p1 credit2\n")
    assert main(["--no-progress", "--replay", "s.xl", "--json", "s.xl"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        "xensched fuzz: error: --json s.xl: the same file as the script s.xl (an "
        "output never replaces an input)"
    ]
    assert (tmp_path / "s.xl").read_text() == "xl cpupool-create p1 credit2\n"


def test_the_fix_runs_clean(tmp_path: Path) -> None:
    r = _fuzz(tmp_path, "--duration", "1", "--seed", "7", "--json", "out.json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("seed=7\n")
    data = json.loads((tmp_path / "out.json").read_text())
    validate("fuzz", data)
    assert data["violations"] == []
    assert data["complete"]
    assert data["examples"] >= 1
    assert data["operations"] >= 1
    assert data["schedules"] > 0
    # Nothing failed: the search is the whole run, and there is no shrink.
    assert data["search"]["stopped"] == "budget"
    assert data["search"]["examples"] == data["examples"]
    assert data["shrink"] is None
    assert "until the budget ran out; nothing to shrink" in r.stdout


def test_a_script_replays_a_mutant_and_not_the_fix(tmp_path: Path) -> None:
    (tmp_path / "s.xl").write_text(
        "xl cpupool-create p1 credit2\n"
        "xl cpupool-cpu-remove Pool-0 3\n"
        "xl cpupool-cpu-add p1 3\n"
        "xl cpupool-cpu-remove p1 3\n"
        "xl cpupool-cpu-add p1 3\n"
    )
    r = _fuzz(
        tmp_path, "--replay", "s.xl", "--mutant", "no-deinit-pdata", "--json", "m.json"
    )
    assert r.returncode == 1, r.stdout + r.stderr
    # Credit's free_pdata finds the pCPU deinit_pdata should have taken out.
    assert "ASSERT(!cpumask_test_cpu(cpu, prv->cpus))" in r.stdout
    data = json.loads((tmp_path / "m.json").read_text())
    validate("fuzz", data)
    assert data["mutant"] == "no-deinit-pdata"
    assert [v["kind"] for v in data["violations"]] == ["assert"]
    assert _fuzz(tmp_path, "--replay", "s.xl").returncode == 0


@pytest.mark.slow
def test_a_mutant_is_found_shrunk_written_replayed_and_explored(tmp_path: Path) -> None:
    r = _fuzz(
        tmp_path,
        "--duration",
        "60",
        "--seed",
        "1",
        "--mutant",
        "unlock-by-cpu",
        "--json",
        "out.json",
    )
    assert r.returncode == 1, r.stdout + r.stderr
    data = json.loads((tmp_path / "out.json").read_text())
    validate("fuzz", data)
    assert data["violations"][0]["kind"] == "assert"
    script = tmp_path / data["script_file"]
    lines = [x for x in script.read_text().splitlines() if not x.startswith("#")]
    assert lines == [f"xl {o}" for o in data["script"]]
    assert any("cpupool-cpu-add" in x for x in lines)
    assert "shrunk sequence:" in r.stdout
    assert f"replay: {data['replay_command']}" in r.stdout
    # The printed replay command fails again.
    argv = data["replay_command"].split()[2:]
    assert _fuzz(tmp_path, *argv).returncode == 1
    # The explorer's replay file replays the violation.
    ex = data["explorer"]
    assert ex["ran"], ex
    assert ex["replay_file"], ex
    rp = subprocess.run(
        [sys.executable, "-m", "xensched", "replay", ex["replay_file"]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert rp.returncode == 1, rp.stdout + rp.stderr
    # The example database in the working directory keeps the failure.
    assert (tmp_path / ".hypothesis" / "xensched-fuzz").is_dir()


@pytest.mark.slow
def test_legacy_is_found(tmp_path: Path) -> None:
    r = _fuzz(
        tmp_path,
        "--duration",
        "30",
        "--seed",
        "2",
        "--mutant",
        "legacy",
        "--no-explore",
        "--json",
        "out.json",
    )
    assert r.returncode == 1, r.stdout + r.stderr
    data = json.loads((tmp_path / "out.json").read_text())
    validate("fuzz", data)
    assert {v["kind"] for v in data["violations"]} & {"lock-mismatch", "assert"}
    assert data["script_file"]
    assert data["replay_command"]


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)]
)
def test_a_signal_stops_it_with_the_report_written(
    tmp_path: Path, signum: int, code: int
) -> None:
    p = CliProcess(
        [
            "-m",
            "xensched",
            "fuzz",
            "--duration",
            "600",
            "--seed",
            "4",
            "--progress",
            "--json",
            "out.json",
        ],
        tmp_path,
    )
    try:
        p.wait_for(r"examples, \d+ xl operations", stream="err")
        p.signal(signum)
        assert p.finish(timeout=60) == code, p.err
    finally:
        p.kill()
    assert "Traceback" not in p.err
    assert "interrupted: partial report" in p.out
    data = json.loads((tmp_path / "out.json").read_text())
    validate("fuzz", data)
    assert data["complete"] is False
    assert data["operations"] > 0
