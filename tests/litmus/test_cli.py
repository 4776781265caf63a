"""``xensched litmus``: output, exit codes, and the --json report against its
schema."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import pytest

from tests._cli_process import CliProcess
from tests._schemas import errors, validate
from xensched.cli import main
from xensched.litmus.builtin import catalog_files

SB = catalog_files()[[f.name for f in catalog_files()].index("SB.litmus")]


@pytest.fixture
def sb(tmp_path: Path) -> Path:
    p = tmp_path / "SB.litmus"
    p.write_text(SB.read_text(encoding="utf-8"), encoding="utf-8")
    return p


def test_histogram_marks_and_verdicts(
    sb: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["litmus", str(sb), "--model", "sc", "--model", "tso"]) == 0
    out = capsys.readouterr().out
    assert "SB under sc: exists (0:r0=0 /\\ 1:r0=0)" in out
    assert "SB under relaxed" not in out
    sc = out[: out.index("SB under tso")].splitlines()
    tso = out[out.index("SB under tso") : out.index("test ")].splitlines()
    assert not [line for line in sc if line.startswith("  *")]
    marked = [line for line in tso if line.startswith("  *")]
    assert len(marked) == 1
    assert marked[0].endswith("  0:r0=0; 1:r0=0;")
    assert "observed: no   expected: Sometimes   verdict: stronger" in out
    assert "observed: yes   expected: Sometimes   verdict: agrees" in out
    assert "why: the weak outcome needs store-buffering, which sc does not do" in out
    table = out[out.index("test ") :]
    assert table.splitlines()[2].split() == ["SB", "Sometimes", "stronger", "agrees"]
    assert "2 runs: 1 agrees, 1 stronger, 0 weaker" in out


def test_json_report_is_valid_and_strict(
    sb: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.json"
    assert main(["litmus", str(sb), "--quiet", "--json", str(out)]) == 0
    assert "SB under" not in capsys.readouterr().out  # --quiet: the table only
    doc = json.loads(out.read_text(encoding="utf-8"))
    validate("litmus", doc)
    assert [r["model"] for r in doc["results"]] == ["sc", "tso", "relaxed"]
    tso = doc["results"][1]
    assert tso["test"] == "SB"
    assert tso["observed"] is True
    assert tso["expected"] == "Sometimes"
    assert tso["verdict"] == "agrees"
    assert tso["exhaustive"] is True
    # Executions DPOR cut short (sleep sets) end with no outcome.
    assert 0 < sum(tso["outcomes"].values()) <= tso["executions"]
    assert set(tso["outcomes"]) == {
        "0:r0=0; 1:r0=0;",
        "0:r0=0; 1:r0=1;",
        "0:r0=1; 1:r0=0;",
        "0:r0=1; 1:r0=1;",
    }
    r0 = doc["results"][0]
    for bad in (
        {**r0, "verdict": "WEAKER"},
        {**r0, "model": "arm"},
        {**r0, "outcomes": {"r0 is 1": 1}},
        {**r0, "observed": "yes"},
        {k: v for k, v in r0.items() if k != "expected"},
        {**r0, "extra": 1},
    ):
        assert errors("litmus", {"results": [bad]})
    assert not errors(
        "litmus", {"results": [{**r0, "expected": None, "verdict": None}]}
    )


def test_a_weaker_verdict_exits_1(sb: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = sb.read_text(encoding="utf-8").replace("Result: Sometimes", "Result: Never")
    sb.write_text(text, encoding="utf-8")
    assert main(["litmus", str(sb), "--model", "tso"]) == 1
    out = capsys.readouterr().out
    assert "verdict: WEAKER" in out
    assert "0 agrees, 0 stronger, 1 weaker" in out


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["litmus"], "no test: give a FILE or --catalog"),
        (
            ["litmus", "/nonexistent/x.litmus"],
            "/nonexistent/x.litmus: No such file or directory",
        ),
        (["litmus", "BAD"], "BAD:5: unsupported construct 'rcu_read_lock'"),
        (["litmus", "--catalog", "--model", "arm"], "invalid choice: 'arm'"),
        (["litmus", "--catalog", "--max-executions", "0"], "--max-executions 0"),
        (["litmus", "--catalog", "--json", "/nonexistent/dir/r.json"], "--json"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str],
    words: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad = tmp_path / "bad.litmus"
    bad.write_text(
        "C Bad\n{}\nP0(int *x)\n{\n\trcu_read_lock();\n}\nexists (x=0)\n",
        encoding="utf-8",
    )
    argv = [str(bad) if a == "BAD" else a for a in argv]
    words = words.replace("BAD", str(bad))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert words in err


def test_list_shows_the_catalog_without_running_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["litmus", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(catalog_files())
    sw = next(line for line in lines if line.startswith("SwitchSched+mb "))
    assert sw.split()[1] == "Never"
    assert "exists (1:r0=1 /\\ (1:r1=0 \\/ 1:r2=0))" in sw


def test_list_refuses_a_json_file_it_would_not_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "l.json"
    assert main(["litmus", "--list", "--json", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"xensched litmus: error: --json {out}: --list runs nothing, so writes no "
        "report"
    ]
    assert not out.exists()


def test_json_naming_a_test_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = min(catalog_files(), key=lambda f: f.name)
    test = tmp_path / "t.litmus"
    test.write_text(first.read_text(encoding="utf-8"), encoding="utf-8")
    before = test.read_text(encoding="utf-8")
    assert main(["litmus", str(test), "--json", str(test)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"xensched litmus: error: --json {test}: the same file as the test {test} "
        "(an output never replaces an input)"
    ]
    assert test.read_text(encoding="utf-8") == before


def test_help_names_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "litmus " in capsys.readouterr().out
    assert main(["litmus", "--help"]) == 0
    out = capsys.readouterr().out
    for opt in ("--catalog", "--model", "--json", "--list", "--search"):
        assert opt in out


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)]
)
def test_an_interrupted_run_writes_the_runs_done_so_far(
    tmp_path: Path, signum: int, code: int
) -> None:
    f = tmp_path / "l.json"
    p = CliProcess(
        ["-m", "xensched", "litmus", "--catalog", "--json", str(f)], tmp_path
    )
    try:
        p.wait_for(r"verdict: ")  # a first run is done
        p.signal(signum)
        assert p.finish(timeout=60) == code, p.err
    finally:
        p.kill()
    assert "Traceback" not in p.err
    assert re.search(r"interrupted after \d+ runs", p.err)
    doc = json.loads(f.read_text(encoding="utf-8"))
    validate("litmus", doc)
    assert 0 < len(doc["results"]) < 108
