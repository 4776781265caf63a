"""Output files (xensched.outputs): refused before a run, written atomically after it,
with the user's umask; and ``xensched reproduce --json`` through the real entry point."""

from __future__ import annotations

import errno
import json
import os
import socket
import stat
import sys
import threading
from typing import TYPE_CHECKING

import pytest

import xensched.reproduce
from tests._outputs import bad_output_paths, no_space
from xensched.cli import main
from xensched.outputs import (
    EXIT_NOT_WRITTEN,
    OutputPathError,
    check_output_dir,
    check_output_path,
    check_output_paths,
    write_json_atomic,
    write_json_report,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from pathlib import Path

    from xensched.reproduce import Result, Transition

#: The smallest reproduce run: one move, one protocol (about 0.3 s).
SMALL = [
    "--pause",
    "mover",
    "--boot",
    "credit",
    "--pool",
    "credit",
    "--direction",
    "add",
]
SMALL += ["--protocol", "fixed", "--no-progress"]
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _refusal(option: str, path: str) -> str:
    with pytest.raises(OutputPathError) as info:
        check_output_path(option, path)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def _entries(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


@pytest.fixture
def umask() -> Iterator[Callable[[int], None]]:
    """Set the process umask for the test; the old one is put back after it."""
    old = os.umask(0o022)
    os.umask(old)

    def set_umask(mask: int) -> None:
        os.umask(mask)

    yield set_umask
    os.umask(old)


# -- the check ---------------------------------------------------------------------------


def test_a_missing_directory_is_named(tmp_path: Path) -> None:
    path = tmp_path / "no" / "r.json"
    msg = _refusal("--json", str(path))
    assert msg == f"--json {path}: directory {tmp_path / 'no'} does not exist"


def test_a_directory_is_refused(tmp_path: Path) -> None:
    assert _refusal("--json", str(tmp_path)) == f"--json {tmp_path}: is a directory"


def test_an_empty_name_is_refused() -> None:
    assert _refusal("--json", "") == "--json '': the file name is empty"


def test_a_file_as_the_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x", encoding="utf-8")
    msg = _refusal("--json", str(tmp_path / "f" / "r.json"))
    assert msg.endswith(f": {tmp_path / 'f'} is not a directory")


def test_a_character_device_is_refused() -> None:
    if not os.path.exists(os.devnull) or os.devnull != "/dev/null":
        pytest.skip("no /dev/null")
    msg = _refusal("--out", "/dev/null")
    assert msg == "--out /dev/null: is a character device, not a regular file"


def test_a_named_pipe_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "p"
    os.mkfifo(fifo)
    assert _refusal("--json", str(fifo)).endswith(
        ": is a named pipe, not a regular file"
    )


def test_a_socket_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        assert _refusal("--json", str(path)).endswith(
            ": is a socket, not a regular file"
        )


def test_a_pseudo_file_system_is_refused() -> None:
    # /proc/version is a regular file whose permission bits let root write; only
    # creating the new file beside it shows the report cannot land there.
    if not os.path.exists("/proc/version"):
        pytest.skip("no /proc")
    msg = _refusal("--json", "/proc/version")
    assert msg.startswith("--json /proc/version: cannot create a file in /proc (")


@pytest.mark.skipif(IS_ROOT, reason="root writes through permission bits")
def test_an_unwritable_directory_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o500)
    try:
        msg = _refusal("--json", str(d / "r.json"))
    finally:
        d.chmod(0o700)
    assert (
        msg == f"--json {d / 'r.json'}: cannot create a file in {d} (Permission denied)"
    )


@pytest.mark.skipif(IS_ROOT, reason="root writes through permission bits")
def test_an_unwritable_file_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "r.json"
    f.write_text("{}", encoding="utf-8")
    f.chmod(0o444)
    assert _refusal("--json", str(f)) == f"--json {f}: not writable (Permission denied)"


def _refuse_writes(
    monkeypatch: pytest.MonkeyPatch, refused: Callable[[str, int], bool]
) -> None:
    """Make ``os.open`` answer EACCES where ``refused(path, flags)``: the refusal the
    permission bits give a user other than root, simulated so that it runs as root."""
    real = os.open

    def fake_open(path: str, flags: int, *args: int, **kwargs: int) -> int:
        if refused(os.fspath(path), flags):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        return real(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake_open)


def test_a_directory_refusing_new_files_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As test_an_unwritable_directory_is_refused, for root too: creating a file in
    # the directory is what answers EACCES.
    d = tmp_path / "ro"
    d.mkdir()
    _refuse_writes(
        monkeypatch,
        lambda path, flags: (
            os.path.dirname(path) == str(d) and bool(flags & os.O_CREAT)
        ),
    )
    msg = _refusal("--json", str(d / "r.json"))
    assert (
        msg == f"--json {d / 'r.json'}: cannot create a file in {d} (Permission denied)"
    )
    assert _entries(d) == []


def test_a_file_refusing_writes_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As test_an_unwritable_file_is_refused, for root too: opening the file for
    # writing is what answers EACCES (a new file beside it could be created).
    f = tmp_path / "r.json"
    f.write_text("{}", encoding="utf-8")
    _refuse_writes(monkeypatch, lambda path, flags: path == str(f))
    assert _refusal("--json", str(f)) == f"--json {f}: not writable (Permission denied)"
    assert f.read_text(encoding="utf-8") == "{}"


def test_a_name_with_spaces_is_quoted(tmp_path: Path) -> None:
    path = tmp_path / "a b" / "r.json"
    msg = _refusal("--json", str(path))
    assert msg.startswith(f"--json '{path}': directory '{tmp_path / 'a b'}'")


def test_the_check_leaves_nothing_changed(tmp_path: Path) -> None:
    f = tmp_path / "r.json"
    f.write_text("old", encoding="utf-8")
    before = f.stat()
    check_output_path("--json", str(f))  # an existing writable file is fine
    check_output_path("--json", str(tmp_path / "new.json"))
    assert _entries(tmp_path) == ["r.json"]  # no probe file left, nothing created
    assert f.read_text(encoding="utf-8") == "old"
    assert f.stat().st_mtime_ns == before.st_mtime_ns


def test_options_not_given_are_skipped_and_two_may_not_share_a_file(
    tmp_path: Path,
) -> None:
    a = str(tmp_path / "a.json")
    check_output_paths(("--json", None), ("--trace-out", a))
    with pytest.raises(OutputPathError) as info:
        check_output_paths(
            ("--json", a), ("--trace-out", str(tmp_path / "." / "a.json"))
        )
    assert str(info.value).endswith(": the same file as --json")
    with pytest.raises(OutputPathError, match=r"^--trace-out '': the file name"):
        check_output_paths(("--json", a), ("--trace-out", ""))


# -- the write ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)]
)
def test_a_new_file_gets_the_umask(
    tmp_path: Path, umask: Callable[[int], None], mask: int, mode: int
) -> None:
    umask(mask)
    f = tmp_path / "r.json"
    write_json_atomic(str(f), {"a": 1})
    assert stat.S_IMODE(f.stat().st_mode) == mode
    assert json.loads(f.read_text(encoding="utf-8")) == {"a": 1}
    assert _entries(tmp_path) == ["r.json"]


def test_a_replaced_file_keeps_its_mode(
    tmp_path: Path, umask: Callable[[int], None]
) -> None:
    umask(0o022)
    f = tmp_path / "r.json"
    f.write_text("{}", encoding="utf-8")
    f.chmod(0o640)
    write_json_atomic(str(f), [1])
    assert stat.S_IMODE(f.stat().st_mode) == 0o640
    assert json.loads(f.read_text(encoding="utf-8")) == [1]


def test_a_symlink_is_written_through(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "r.json"
    target.write_text("{}", encoding="utf-8")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    check_output_path("--json", str(link))
    write_json_atomic(str(link), {"v": 2})
    assert link.is_symlink()
    assert json.loads(target.read_text(encoding="utf-8")) == {"v": 2}


def test_the_data_is_synced_before_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        calls.append("fsync")
        real_fsync(fd)

    def replace(src: str, dst: str) -> None:
        calls.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    write_json_atomic(str(tmp_path / "r.json"), {})
    assert calls == ["fsync", "replace"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = tmp_path / "r.json"
    f.write_text('{"old": true}\n', encoding="utf-8")
    with pytest.raises(TypeError):  # not JSON: fails half-way through the dump
        write_json_atomic(str(f), {"a": list(range(1000)), "b": object()})
    assert f.read_text(encoding="utf-8") == '{"old": true}\n'
    assert _entries(tmp_path) == ["r.json"]
    monkeypatch.setattr(os, "replace", no_space(os.replace))
    with pytest.raises(OSError, match="No space left") as info:
        write_json_atomic(str(f), {"new": True})
    assert info.value.errno == errno.ENOSPC
    assert f.read_text(encoding="utf-8") == '{"old": true}\n'
    assert _entries(tmp_path) == ["r.json"]


def test_write_json_report_gives_one_line_naming_the_option_and_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = tmp_path / "r.json"
    assert write_json_report("--json", str(f), {}) is None
    monkeypatch.setattr(os, "replace", no_space(os.replace))
    assert (
        write_json_report("--json", str(f), {})
        == f"--json {f}: not written: No space left on device"
    )


def test_a_reader_never_sees_a_partial_file(tmp_path: Path) -> None:
    f = tmp_path / "r.json"
    pad = "x" * 200_000  # far more than one write() call
    write_json_atomic(str(f), {"v": 0, "pad": pad})
    stop = threading.Event()
    seen: list[int] = []
    bad: list[str] = []

    def read() -> None:
        while not stop.is_set():
            text = f.read_text(encoding="utf-8")
            try:
                doc = json.loads(text)
            except ValueError:
                bad.append(f"{len(text)} chars")
                continue
            if doc["pad"] != pad:
                bad.append(f"version {doc['v']} without its padding")
            seen.append(doc["v"])

    reader = threading.Thread(target=read, name="reader")
    reader.start()
    try:
        for v in range(1, 21):
            write_json_atomic(str(f), {"v": v, "pad": pad})
    finally:
        stop.set()
        reader.join(10.0)
    assert not reader.is_alive()
    assert bad == []
    assert seen  # the reader did read while the writes went on
    assert seen == sorted(seen)  # versions only move forward


# -- xensched reproduce --json --------------------------------------------------------------


def test_reproduce_refuses_every_bad_path_before_any_move(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("reproduce ran")

    monkeypatch.setattr(xensched.reproduce, "reproduce", no_run)
    for path, problem in bad_output_paths(tmp_path):
        assert main(["reproduce", *SMALL, "--json", path]) == 2, path
        captured = capsys.readouterr()
        assert captured.out == ""
        [line] = captured.err.splitlines()
        assert line.startswith("xensched reproduce: error: --json ")
        assert problem in line


def test_reproduce_prints_the_table_then_says_the_file_was_not_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "r.json"
    monkeypatch.setattr(os, "replace", no_space(os.replace))
    # One stream for both, to see the order in which they come out.
    monkeypatch.setattr(sys, "stderr", sys.stdout)
    assert main(["reproduce", *SMALL, "--json", str(f)]) == EXIT_NOT_WRITTEN
    lines = capsys.readouterr().out.splitlines()
    assert "credit  credit  cpu-add (credit->credit)  -" in lines
    assert "fixed: problems in 0 of 1 moves" in lines
    assert lines[-2].startswith("1 moves in ")
    assert lines[-1] == (
        f"xensched reproduce: error: --json {f}: not written: No space left on device"
    )
    assert _entries(tmp_path) == []


def test_reproduce_interrupted_keeps_130_when_the_file_is_not_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = xensched.reproduce.reproduce

    def one_then_ctrl_c(
        selected: Sequence[Transition],
        progress: Callable[[int, int, Result], None] | None = None,
        **options: object,
    ) -> list[Result]:
        real(selected[:1], progress)
        raise KeyboardInterrupt

    monkeypatch.setattr(xensched.reproduce, "reproduce", one_then_ctrl_c)
    monkeypatch.setattr(os, "replace", no_space(os.replace))
    argv = ["reproduce", *SMALL, "--protocol", "legacy", "--json", str(tmp_path / "r")]
    assert main(argv) == 130
    captured = capsys.readouterr()
    assert "1 moves in " in captured.out
    assert captured.err.splitlines() == [
        "interrupted after 1 of 2 moves",
        f"xensched reproduce: error: --json {tmp_path / 'r'}: not written: "
        "No space left on device",
    ]


def test_reproduce_writes_with_the_umask(
    tmp_path: Path, umask: Callable[[int], None], capsys: pytest.CaptureFixture[str]
) -> None:
    umask(0o027)
    f = tmp_path / "r.json"
    assert main(["reproduce", *SMALL, "--json", str(f)]) == 0
    assert f"results written to {f}" in capsys.readouterr().out
    assert stat.S_IMODE(f.stat().st_mode) == 0o640
    data = json.loads(f.read_text(encoding="utf-8"))
    assert data["complete"] is True
    assert [r["problems"] for r in data["results"]] == [[]]
    assert _entries(tmp_path) == ["r.json"]


def test_reproduce_help_documents_the_exit_codes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["reproduce", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "4 the run completed but --json FILE could not be written" in out


def test_an_output_directory_must_exist_be_one_and_take_files(tmp_path: Path) -> None:
    check_output_dir("--replay-dir", str(tmp_path))
    assert list(tmp_path.iterdir()) == []  # the probe is gone
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(OutputPathError, match=f"^--replay-dir {f}: not a directory$"):
        check_output_dir("--replay-dir", str(f))
    gone = tmp_path / "gone"
    with pytest.raises(OutputPathError, match=f"^--replay-dir {gone}: does not exist$"):
        check_output_dir("--replay-dir", str(gone))
