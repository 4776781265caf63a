"""``xensched stress`` (stress/cli.py) and ``xensched bench`` argument handling."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import threading
from typing import TYPE_CHECKING

import pytest

from tests._schemas import validate
from xensched import programs
from xensched.scenario import PoolSpec, Scenario, Toolstack, patch_move, stress_default
from xensched.smp import current
from xensched.spinlock import spin_lock
from xensched_stress import bench
from xensched_stress.cli import main
from xensched_stress.config import override_scenario, scenario_from_options

if TYPE_CHECKING:
    from pathlib import Path

    from xensched import Host, Vcpu


def _json(path: Path) -> dict[str, object]:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    validate("stress", data)
    return data


def test_run_prints_the_seed_first_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "r.json"
    argv = [
        "--duration",
        "0.3",
        "--seed",
        "77",
        "--no-progress",
        "--json",
        str(out_file),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "seed=77"
    assert "result: no violation (exit 0)" in out
    assert "rerun: xensched stress --cpus 4" in out
    assert f"report written to {out_file}" in out
    data = _json(out_file)
    assert data["seed"] == 77
    assert data["violations"] == []
    assert data["exit_code"] == 0
    assert data["interrupted"] is False
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary left


def test_without_seed_a_fresh_one_is_printed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("XENSCHED_SEED", raising=False)
    assert main(["--duration", "0.2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    m = re.fullmatch(r"seed=(\d+)", out.splitlines()[0])
    assert m is not None
    assert f"--seed {m.group(1)}" in out


def test_xensched_seed_env_is_the_default_seed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XENSCHED_SEED", "0x2a")
    assert main(["--ops", "20", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "seed=42"
    # --seed wins over the environment.
    assert main(["--ops", "20", "--seed", "7", "--no-progress"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "seed=7"


def test_bad_xensched_seed_env_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XENSCHED_SEED", "soon")
    assert main(["--ops", "20", "--no-progress"]) == 2
    captured = capsys.readouterr()
    assert "XENSCHED_SEED: 'soon' is not a seed" in captured.err
    assert "seed=" not in captured.out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--protocol", "nope"], "protocol 'nope': choose legacy, fixed"),
        (["--protocol", "fixed-without:nope"], "unknown part 'nope'"),
        (["--pool", "bad"], "expected NAME:SCHED[:CPUS]"),
        (["--pool", "p1:nope"], "unknown scheduler 'nope'"),
        (["--duration", "1", "--ops", "5"], "not allowed with argument"),
        (["--boot", "bvt"], "invalid choice: 'bvt'"),
        (["--delay-injection", "2"], "--delay-injection 2: must be a probability"),
        (["--cpus", "x"], "--cpus 'x': must be an integer in [1, 256]"),
        (["--topology", "2by2"], "SOCKETSxCORES"),
        (["--cpus", "1"], "cpus=1"),
        (["--pool", "p1:credit2:9"], "cpu9 does not exist"),
        (["--duration", "-1"], "--duration -1: must be a finite number of seconds"),
        (["--json", "/nonexistent/dir/r.json"], "directory /nonexistent/dir does not"),
        (["--scenario", "nope"], "scenario 'nope': not a built-in"),
        (["--scenario", '{"version": 1}'], "scenario.name: missing"),
        (["--scenario", "patch-move", "--cpus", "2"], "pools[0].cpus: cpu2"),
    ],
)
def test_usage_errors_exit_2(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert needle in captured.err
    assert "seed=" not in captured.out


def test_help_lists_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for opt in (
        "--cpus",
        "--topology",
        "--boot",
        "--pool",
        "--protocol",
        "--domains",
        "--vcpus",
        "--duration",
        "--ops",
        "--seed",
        "--switch-interval",
        "--delay-injection",
        "--keep-going",
        "--json",
        "--progress",
        "--no-progress",
        "--watchdog",
        "--scenario",
        "--controllers",
        "--traffic",
        "--domain-moves",
        "--max-delay",
        "--gil-switch-interval",
        "--lock-timeout",
    ):
        assert opt in out
    assert "exit codes: 0 no violation, 1 violations found" in out


def test_violations_exit_1_and_land_in_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "r.json"
    argv = [
        "--boot=rtds",
        "--pool=p1:credit2:2,3",
        "--protocol=legacy",
        "--domain-moves=0",
        "--switch-interval=0.001",
        "--duration=2",
        "--seed=5",
        "--no-progress",
        f"--json={out_file}",
    ]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "result: violations found (exit 1)" in out
    data = _json(out_file)
    violations = data["violations"]
    assert isinstance(violations, list)
    assert violations
    for v in violations:
        assert {"kind", "cpu", "where"} <= set(v)
    assert "assert" in {v["kind"] for v in violations}


def test_stopped_run_still_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "r.json"
    stop = threading.Event()
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    try:
        code = main(
            [
                "--duration",
                "30",
                "--seed",
                "3",
                "--no-progress",
                "--json",
                str(out_file),
            ],
            stop=stop,
        )
    finally:
        timer.cancel()
        timer.join()
    assert code == 0
    data = _json(out_file)
    assert data["interrupted"] is True
    assert data["stop_reason"] == "interrupted"
    assert "stopped: interrupted" in capsys.readouterr().out


def test_deadlock_exits_3_and_writes_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def stuck(h: Host) -> Vcpu:
        spin_lock(h.cpupool_lock)
        return h.percpu[0].idle

    monkeypatch.setattr(programs, "schedule", stuck)
    out_file = tmp_path / "r.json"
    argv = ["--watchdog", "0.3", "--lock-timeout", "0.8", "--seed", "1"]
    argv += ["--no-progress", "--json", str(out_file)]
    assert main(argv) == 3
    out = capsys.readouterr().out
    assert "result: deadlock (exit 3)" in out
    data = _json(out_file)
    deadlock = data["deadlock"]
    assert isinstance(deadlock, str)
    # Its owner is named: a pCPU, or xl0 when the toolstack took it first and then
    # waited for the stuck pCPUs.
    assert "cpupool_lock held by " in deadlock


def test_a_lock_wait_that_runs_out_prints_every_stack_and_owner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # pCPU 1 takes cpupool_lock twice: its second spin runs out (lock-timeout, well
    # below the watchdog). The report printed is the one the spin took, in that
    # pCPU's own frames, while they were stuck.
    def spins_on_itself(h: Host) -> Vcpu:
        if current().cpu == 1:
            spin_lock(h.cpupool_lock)
            spin_lock(h.cpupool_lock)
        return h.percpu[current().cpu or 0].idle

    monkeypatch.setattr(programs, "schedule", spins_on_itself)
    out_file = tmp_path / "r.json"
    argv = ["--watchdog", "30", "--lock-timeout", "0.3", "--seed", "1"]
    argv += ["--controllers", "0", "--no-progress", "--json", str(out_file)]
    assert main(argv) == 3
    out = capsys.readouterr().out
    assert "result: deadlock (exit 3)" in out
    section = out[out.index("deadlock:") :]
    assert "  pcpu1: pcpu1 spun on 'cpupool_lock' for 0.3s; held by pcpu1" in section
    assert "cpupool_lock held by pcpu1 (" in section
    assert "waited for by pcpu1" in section
    assert "--- thread pcpu0 ---" in section
    assert "--- thread pcpu1 ---" in section
    assert ", in spins_on_itself" in section
    deadlock = _json(out_file)["deadlock"]
    assert isinstance(deadlock, str)
    assert ", in spins_on_itself" in deadlock


def test_forced_progress_goes_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--duration", "0.6", "--seed", "2", "--progress"]) == 0
    err = capsys.readouterr().err
    assert "schedule() (" in err
    assert "pCPU switches" in err
    assert "violations" in err


def test_python_m_xensched_stress() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "xensched_stress", "--duration", "0.2", "--seed", "9"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "seed=9"
    assert proc.stderr == ""  # not a terminal: no progress


@pytest.mark.parametrize(
    ("argv", "needle"),
    [(["--only", "x"], "unknown part"), (["--cpus", "1"], "--cpus 1: must be")],
)
def test_bench_usage_errors(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench.main(argv) == 2
    assert needle in capsys.readouterr().err


def test_bench_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--help"], prog="xensched bench") == 0
    out = capsys.readouterr().out
    assert "usage: xensched bench" in out
    assert "--quick" in out
    assert "--explore-full" in out
    assert "exploration (e):" in out


def test_scenario_file_with_an_override(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sc = stress_default(3, pools=(PoolSpec("q", "rtds", (2,)),), controllers=2)
    f = tmp_path / "s.json"
    f.write_text(sc.replace(name="mine").to_json(), encoding="utf-8")
    out_file = tmp_path / "r.json"
    argv = ["--scenario", str(f), "--traffic", "0", "--boot", "credit2"]
    argv += ["--ops", "60", "--seed", "5", "--no-progress", "--json", str(out_file)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "seed=5"
    data = _json(out_file)
    config = data["config"]
    assert isinstance(config, dict)
    ran = config["scenario"]
    assert isinstance(ran, dict)
    # The file's fields, except those given beside it.
    assert (ran["name"], ran["cpus"], ran["boot"]) == ("mine", 3, "credit2")
    assert ran["pools"] == [{"name": "q", "sched": "rtds", "cpus": [2]}]
    loops = [t for t in ran["threads"] if t["kind"] == "pcpu-loop"]
    assert [t["traffic"] for t in loops] == [0.0, 0.0, 0.0]
    assert [t["name"] for t in ran["threads"] if t["kind"] == "toolstack"] == [
        "xl0",
        "xl1",
    ]
    # The rerun command carries the scenario itself, overrides applied.
    m = re.search(r"^rerun: (.*)$", out, re.MULTILINE)
    assert m is not None
    args = shlex.split(m.group(1))
    again = Scenario.from_json(args[args.index("--scenario") + 1])
    assert again == Scenario.from_dict(ran)


def test_builtin_scenario_by_name_reruns_by_name(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # patch-move runs the legacy protocol free-running: five schedule() calls may or
    # may not meet the race (CI once did), so only a usage error or deadlock fails.
    assert main(["--scenario", "patch-move", "--ops", "5", "--seed", "1"]) in (0, 1)
    out = capsys.readouterr().out
    assert "rerun: xensched stress --scenario patch-move --ops 5 --seed 1" in out


def test_controllers_override_replaces_the_random_toolstacks() -> None:
    sc = override_scenario(patch_move(), controllers=2, switch_interval=0.5)
    names = [t.name for t in sc.threads if isinstance(t, Toolstack)]
    assert names == ["xl-mover", "xl0", "xl1"]
    assert {t.interval for t in sc.threads if isinstance(t, Toolstack)} == {0.5}
    sc = override_scenario(stress_default(), domains=3, vcpus=1, protocol="legacy")
    assert [(d.name, d.vcpus) for d in sc.domains] == [("d1", 1), ("d2", 1), ("d3", 1)]
    assert sc.protocol == "legacy"
    assert override_scenario(sc, vcpus=4).domains[2].vcpus == 4


def test_a_builtin_takes_the_options_it_has_parameters_for() -> None:
    sc = scenario_from_options("stress-default", cpus=8, boot="rtds", traffic=0.3)
    assert sc == stress_default(8, boot="rtds", traffic=0.3)
    sc = scenario_from_options("stress-default", topology="2x3")
    assert (sc.cpus, sc.topology) == (6, "2x3")
    # patch-move has no cpus or traffic parameter: those override fields.
    sc = scenario_from_options("patch-move", boot="rtds", protocol="fixed", cpus=6)
    assert sc == patch_move(boot="rtds", protocol="fixed").replace(cpus=6)
