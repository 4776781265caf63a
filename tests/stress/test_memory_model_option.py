"""``xensched stress --memory-model``: the option, the config, the host, the reports.

Short ``--ops`` runs with fixed seeds: the fixed protocol stays clean under ``tso`` and
``relaxed`` (the waits drain their CPU's buffer, so no run deadlocks on a store that
never drains), and the legacy protocol still shows its ``lock-mismatch``.
"""

from __future__ import annotations

import json
import shlex
from typing import TYPE_CHECKING

import pytest

from tests._schemas import validate
from xensched import ConfigError
from xensched.scenario import builtin
from xensched_stress.cli import build_parser, config_from_args, main
from xensched_stress.config import StressConfig, rerun_command
from xensched_stress.runner import _Run

if TYPE_CHECKING:
    from pathlib import Path


def _config(*argv: str) -> StressConfig:
    args = build_parser().parse_args(list(argv))
    cfg = config_from_args(args, 5)
    cfg.validate()
    return cfg


def test_a_bad_model_is_one_line_naming_the_choices(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--memory-model", "arm", "--ops", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("xensched stress: error: ")
    assert "--memory-model" in err
    assert "'arm'" in err
    assert all(m in err for m in ("sc", "tso", "relaxed"))


def test_the_config_refuses_an_unknown_model_in_one_line() -> None:
    with pytest.raises(ConfigError) as info:
        StressConfig(memory_model="pso").validate()
    assert str(info.value) == (
        "memory_model: unknown memory model 'pso': expected one of sc, tso, relaxed"
    )


def test_the_option_reaches_the_scenario_and_the_rerun_line() -> None:
    assert _config().memory_model == "sc"
    cfg = _config("--memory-model", "tso")
    assert cfg.memory_model == "tso"
    assert cfg.to_scenario().memory_model == "tso"
    words = shlex.split(rerun_command(cfg))
    assert words[words.index("--memory-model") + 1] == "tso"
    # The rerun line parses back to the same model.
    assert _config(*words[2:]).memory_model == "tso"
    assert "--memory-model" not in rerun_command(_config())


def test_beside_a_scenario_the_option_overrides_its_model() -> None:
    cfg = _config("--scenario", "stress-default", "--memory-model", "relaxed")
    assert cfg.scenario is not None
    assert cfg.scenario.memory_model == "relaxed"
    assert cfg.run_memory_model == "relaxed"
    assert cfg.to_scenario().memory_model == "relaxed"
    assert "--memory-model relaxed" in rerun_command(cfg)
    # Without the option the scenario's own model stands.
    own = builtin("stress-default").replace(memory_model="tso")
    cfg = _config("--scenario", own.to_json(indent=None))
    assert cfg.run_memory_model == "tso"
    assert "--memory-model tso" in rerun_command(cfg)
    # A config's model other than sc overrides a scenario's (the pytest marker).
    marker = StressConfig(scenario=own, memory_model="relaxed")
    assert marker.to_scenario().memory_model == "relaxed"


@pytest.mark.parametrize("model", ["sc", "tso", "relaxed"])
def test_the_model_reaches_the_host_with_the_run_seed(model: str) -> None:
    run = _Run(StressConfig(memory_model=model, seed=1234, ops=1), None)
    run._setup()  # builds the host; no thread started
    assert run.host is not None
    mem = run.host.bus.memory
    if model == "sc":
        assert mem is None
    else:
        assert getattr(mem, "name", None) == model
        assert getattr(mem, "seed", None) == 1234
        assert getattr(mem, "controlled", None) is False


def _run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[int, str, dict[str, object]]:
    f = tmp_path / "r.json"
    code = main([*argv, "--no-progress", "--json", str(f)])
    out = capsys.readouterr().out
    data = json.loads(f.read_text(encoding="utf-8"))
    validate("stress", data)
    return code, out, data


@pytest.mark.parametrize("model", ["tso", "relaxed"])
def test_the_fixed_protocol_is_clean_under_store_buffers(
    model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, data = _run(
        tmp_path, capsys, "--memory-model", model, "--ops", "1500", "--seed", "3"
    )
    assert code == 0, out
    assert data["violations_total"] == 0
    assert data["stop_reason"] == "ops reached"
    config = data["config"]
    assert isinstance(config, dict)
    assert config["memory_model"] == model
    assert f"--memory-model {model}" in str(data["rerun"])
    header = out.splitlines()[1]
    assert f"protocol=fixed memory_model={model} boot=credit" in header


@pytest.mark.parametrize(("model", "seed"), [("tso", 1), ("relaxed", 4)])
def test_the_legacy_protocol_still_fails_under_store_buffers(
    model: str, seed: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, data = _run(
        tmp_path,
        capsys,
        "--memory-model",
        model,
        "--protocol",
        "legacy",
        "--ops",
        "30000",
        "--seed",
        str(seed),
    )
    assert code == 1, out
    kinds = data["violations_by_kind"]
    assert isinstance(kinds, dict)
    assert "lock-mismatch" in kinds
    config = data["config"]
    assert isinstance(config, dict)
    assert config["memory_model"] == model
