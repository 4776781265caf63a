"""Input files of the commands (a plan, a scenario, a replay, a litmus test, an xl
script): read whole as UTF-8 text, or refused in one line.

Every command that takes a file says the same two things the same way when it cannot
use it: the OS's reason (``No such file or directory``), or that it is not UTF-8 text
and the codec's reason. Which option or file it was is the caller's ``label``.

Mirrors nothing in Xen. Left out: what the text must say; each reader checks its own
format (JSON, the litmus syntax, xl lines) and names the field or line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xensched.errors import ConfigError

if TYPE_CHECKING:
    import os


class InputError(ConfigError):
    """A file that cannot be read as text. ``os_error``: the OS's refusal, or None
    when the file was read but is not UTF-8."""

    def __init__(self, message: str, os_error: OSError | None = None) -> None:
        super().__init__(message)
        self.os_error = os_error


def read_text(path: str | os.PathLike[str], label: str) -> str:
    """The whole of ``path`` as UTF-8 text.

    Raises:
        InputError: one line, ``LABEL: REASON``.
    """
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise InputError(f"{label}: {e.strerror or e}", e) from None
    except UnicodeDecodeError as e:
        raise InputError(f"{label}: not UTF-8 text ({e.reason})") from None
