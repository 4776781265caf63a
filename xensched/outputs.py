"""Output files of the commands: checked before a run, written atomically after it.

A run can take minutes; an output path that cannot be written must be refused before
it starts (:func:`check_output_paths`, a one-line :class:`OutputPathError` naming the
option), not found out after, when the results would be lost. What can still fail at
the end (a full disk) is reported by :func:`write_json_report` as one line, after the
text report has been printed, and the command exits :data:`EXIT_NOT_WRITTEN` unless
what the run found says more.

Files are created with the user's umask (as ``open()`` would) through a temporary file
in the same directory, synced, then renamed over the target: a reader sees the old
file or the new one, never a part.

Mirrors nothing in Xen. Left out: locking against another process writing the same
file (the last rename wins), and directories created on demand: a missing one is
refused before the run.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shlex
import stat
from typing import TYPE_CHECKING

from xensched.errors import XenschedError

if TYPE_CHECKING:
    from collections.abc import Sequence

#: Exit status of a run whose report file could not be written at the end (the text
#: report was printed). A run that found violations, a deadlock or was interrupted
#: keeps that status instead: it says more, and it is non-zero too.
EXIT_NOT_WRITTEN = 4

_FILE_KINDS = (
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISSOCK, "a socket"),
)


class OutputPathError(XenschedError):
    """An output option names a file that cannot be written (a usage error)."""


def _show(path: str) -> str:
    return shlex.quote(path)


def _reason(e: OSError) -> str:
    return e.strerror or str(e)


def _target(path: str) -> str:
    # Through a symlink, as `>` writes: replacing the link itself would leave its
    # target stale.
    return os.path.realpath(path)


def check_output_path(option: str, path: str) -> None:
    """Refuse ``path`` for ``option`` unless a report can be written there.

    The directory must exist and accept a new file (checked by creating and removing
    one, which also catches read-only mounts and pseudo file systems such as
    ``/proc``, where permission bits say nothing); an existing target must be a
    writable regular file.

    Raises:
        OutputPathError: one line, ``"--json PATH: the problem"``.
    """
    where = f"{option} {_show(path)}"
    if not path:
        raise OutputPathError(f"{option} {_show(path)}: the file name is empty")
    target = _target(path)
    directory = os.path.dirname(target)
    try:
        dir_st = os.stat(directory)
    except FileNotFoundError:
        raise OutputPathError(
            f"{where}: directory {_show(directory)} does not exist"
        ) from None
    except OSError as e:
        raise OutputPathError(
            f"{where}: directory {_show(directory)}: {_reason(e)}"
        ) from None
    if not stat.S_ISDIR(dir_st.st_mode):
        raise OutputPathError(f"{where}: {_show(directory)} is not a directory")
    try:
        st: os.stat_result | None = os.stat(target)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise OutputPathError(f"{where}: {_reason(e)}") from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise OutputPathError(f"{where}: is a directory")
        for test, kind in _FILE_KINDS:
            if test(st.st_mode):
                raise OutputPathError(f"{where}: is {kind}, not a regular file")
        try:
            # Opened without O_TRUNC and closed at once: the file is left as it is.
            os.close(os.open(target, os.O_WRONLY | os.O_NONBLOCK))
        except OSError as e:
            raise OutputPathError(f"{where}: not writable ({_reason(e)})") from None
    try:
        fd, probe = _create_temporary(directory, os.path.basename(target))
    except OSError as e:
        raise OutputPathError(
            f"{where}: cannot create a file in {_show(directory)} ({_reason(e)})"
        ) from None
    os.close(fd)
    os.unlink(probe)


def check_output_dir(option: str, directory: str) -> None:
    """Refuse ``directory`` for ``option`` unless files can be written in it (an
    existing directory that accepts a new file: see :func:`check_output_path`).

    Raises:
        OutputPathError: one line, ``"--replay-dir DIR: the problem"``.
    """
    where = f"{option} {_show(directory)}"
    try:
        st = os.stat(directory)
    except FileNotFoundError:
        raise OutputPathError(f"{where}: does not exist") from None
    except OSError as e:
        raise OutputPathError(f"{where}: {_reason(e)}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise OutputPathError(f"{where}: not a directory")
    try:
        fd, probe = _create_temporary(directory, "probe")
    except OSError as e:
        raise OutputPathError(f"{where}: cannot create a file ({_reason(e)})") from None
    os.close(fd)
    os.unlink(probe)


def check_output_paths(
    *options: tuple[str, str | None], inputs: Sequence[tuple[str, str]] = ()
) -> None:
    """:func:`check_output_path` for each ``(option, path)`` given (``None``: not
    given); two options may not name the same file, nor may one name any of the
    ``(what, path)`` files the command reads (``what`` names it in the message).

    Raises:
        OutputPathError: for the first option refused.
    """
    seen: dict[str, str] = {}
    for option, path in options:
        if path is None:
            continue
        check_output_path(option, path)
        for what, source in inputs:
            if _same_file(path, source):
                raise OutputPathError(
                    f"{option} {_show(path)}: the same file as {what} (an output "
                    "never replaces an input)"
                )
        target = _target(path)
        if target in seen:
            raise OutputPathError(
                f"{option} {_show(path)}: the same file as {seen[target]}"
            )
        seen[target] = option


def _same_file(a: str, b: str) -> bool:
    if _target(a) == _target(b):
        return True
    try:
        return os.path.samefile(a, b)  # hard links: two names, one file
    except OSError:
        return False  # one does not exist yet: not the same file


def _create_temporary(directory: str, name: str) -> tuple[int, str]:
    """A new empty file beside the target, created with mode 0666 less the umask.

    ``tempfile.mkstemp`` would make it 0600 whatever the umask; ``os.open`` lets the
    kernel apply the umask, without reading it (``os.umask`` can only be read by
    setting it, which other threads would see).
    """
    for _ in range(100):
        tmp = os.path.join(directory, f".{name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name in {directory}")


def write_text_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file, so a reader never sees
    half.

    A new file gets mode 0666 less the umask; a file replaced keeps its mode. The data
    is synced before the rename, so a crash leaves the old file or the new one.

    Raises:
        OSError: the file could not be written; the target is then unchanged and no
            temporary file is left behind.
    """
    target = _target(path)
    directory = os.path.dirname(target)
    fd, tmp = _create_temporary(directory, os.path.basename(target))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            try:
                old = os.stat(target)
            except FileNotFoundError:
                pass
            else:
                if stat.S_ISREG(old.st_mode):
                    os.fchmod(f.fileno(), stat.S_IMODE(old.st_mode))
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json_atomic(path: str, data: object) -> None:
    """Write JSON to ``path`` (see :func:`write_text_atomic`)."""
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def write_json_report(option: str, path: str, data: object) -> str | None:
    """Write ``data`` to ``path`` (see :func:`write_json_atomic`).

    Returns:
        ``None`` once written, else the one line that says why not, naming the option
        and the file (``"--json out.json: not written: No space left on device"``).
    """
    try:
        write_json_atomic(path, data)
    except OSError as e:
        return f"{option} {_show(path)}: not written: {_reason(e)}"
    return None
