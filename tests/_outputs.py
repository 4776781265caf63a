"""Output-file cases shared by the tests of ``xensched.outputs`` and of the commands
that write reports (``reproduce``, ``stress``, ``bench``)."""

from __future__ import annotations

import contextlib
import errno
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path


def bad_output_paths(tmp_path: Path) -> list[tuple[str, str]]:
    """Paths a ``--json`` must refuse before any work, each with the problem named."""
    (tmp_path / "f").write_text("x", encoding="utf-8")
    cases = [
        (str(tmp_path / "no" / "r.json"), "does not exist"),
        (str(tmp_path), "is a directory"),
        ("", "the file name is empty"),
        (str(tmp_path / "f" / "r.json"), "is not a directory"),
    ]
    if os.path.exists("/proc/version"):
        cases.append(("/proc/version", "cannot create a file in /proc"))
    if os.path.exists("/dev/null"):
        cases.append(("/dev/null", "is a character device"))
    return cases


def no_space(real: Callable[[str, str], None]) -> Callable[..., None]:
    """``os.replace`` that fails like a full disk when it renames a report file."""

    def replace(src: str, dst: str, *args: object, **kwargs: object) -> None:
        if str(src).endswith(".tmp"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(src, dst)

    return replace


@contextlib.contextmanager
def reader_gone() -> Iterator[None]:
    """stdout a pipe whose reader has gone (``| head`` done with it): every write
    fails with EPIPE, as ``BrokenPipeError`` (Python ignores SIGPIPE)."""
    r, w = os.pipe()
    os.close(r)
    # Line-buffered: the first line written already fails.
    with (
        open(w, "w", encoding="utf-8", buffering=1) as stream,
        contextlib.redirect_stdout(stream),
    ):
        yield
