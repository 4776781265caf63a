"""SIGTERM and SIGHUP as Ctrl-C: ``xensched.signals`` and ``xensched reproduce``.

``reproduce`` exits 128 + the signal's number (130 for Ctrl-C, 143 SIGTERM, 129
SIGHUP) with its partial table printed and its JSON written (``"complete": false``).
The handlers are the command's only while it runs: the previous ones come back after,
and a signal the process ignores (``nohup``) stays ignored.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING

import pytest

from tests._cli_process import CliProcess, reproduce_every_remove
from tests._schemas import validate
from xensched.signals import (
    STOP_SIGNALS,
    RaiseInterrupt,
    quiet_lost_interrupts,
    signal_name,
    stop_signals,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

_in_main_thread = pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(),
    reason="handlers can only be installed from the main thread",
)


#: A command stopped by a signal ends within this (a bound, not a measure)...
_PROMPT = 30.0
#: ...and the run it stops would take several times as long if the signal were not
#: heard: reproduce under every protocol, the two presets and the fixed switch
#: without each of its parts (320 moves: about 150 s on 2 cores, 20 moves and 9 s
#: for each boot and pool scheduler).
_PROTOCOLS = [
    "legacy",
    "fixed",
    *(
        f"fixed-without:{part}"
        for part in (
            "alloc-no-init",
            "old-lock",
            "lock-irq",
            "prv-lock-no-irq",
            "pointer-last",
            "barrier",
            "unlock-by-pointer",
            "deinit-before-free",
        )
    ),
]
_EVERY_PROTOCOL = [arg for p in _PROTOCOLS for arg in ("--protocol", p)]


@pytest.fixture
def spawn() -> Iterator[list[CliProcess]]:
    procs: list[CliProcess] = []
    yield procs
    for p in procs:
        p.kill()


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)]
)
def test_reproduce_interrupted_by_a_signal(
    signum: int, code: int, tmp_path: Path, spawn: list[CliProcess]
) -> None:
    out_file = tmp_path / "r.json"
    args = ["-m", "xensched", "reproduce", "--no-progress", "--json", str(out_file)]
    p = CliProcess([*args, *_EVERY_PROTOCOL], tmp_path)
    spawn.append(p)
    p.wait_for(r"reproduce: \d+ moves")
    time.sleep(0.5)
    t0 = time.monotonic()
    p.signal(signum)
    assert p.finish(timeout=2 * _PROMPT) == code, p.err
    assert time.monotonic() - t0 < _PROMPT  # not the whole run's 150 s
    name = signal_name(signum)
    assert f"{name} received: interrupted after " in p.err
    assert "Traceback" not in p.err
    assert f"results written to {out_file}" in p.out
    data = json.loads(out_file.read_text(encoding="utf-8"))
    validate("reproduce", data)
    assert data["complete"] is False
    assert isinstance(data["results"], list)
    assert len(data["results"]) < 16 * 2 * len(_PROTOCOLS)


def test_reproduce_ctrl_c_sent_as_timeout_sends_it_ends_with_its_workers(
    tmp_path: Path, spawn: list[CliProcess]
) -> None:
    # `timeout -s INT` signals the command, then its whole group (the workers too);
    # a second SIGINT that lands in Pool.terminate() once left the command waiting
    # forever in the pool's join. A second's worth, so that one lands there.
    out_file = tmp_path / "r.json"
    p = reproduce_every_remove(tmp_path, out_file)
    spawn.append(p)
    p.wait_for(r"reproduce: \d+ moves")
    time.sleep(1.5)  # the workers started, and running their first moves
    t0 = time.monotonic()
    p.signal(signal.SIGINT)
    while time.monotonic() - t0 < 1.0:
        p.signal_group(signal.SIGINT)
        time.sleep(0.001)
    assert p.finish(timeout=2 * _PROMPT) == 130, p.err
    # Not forever in the pool's join (the bug); that the run was cut short is
    # what "complete": false below shows.
    assert time.monotonic() - t0 < _PROMPT
    assert "interrupted after " in p.err
    assert "received" not in p.err  # Ctrl-C: the user knows
    assert "Traceback" not in p.err
    data = json.loads(out_file.read_text(encoding="utf-8"))
    validate("reproduce", data)
    assert data["complete"] is False
    p.assert_group_ends()


def test_signal_names() -> None:
    assert signal_name(signal.SIGTERM) == "SIGTERM"
    assert signal_name(signal.SIGHUP) == "SIGHUP"
    assert signal_name(12345) == "12345"
    assert set(STOP_SIGNALS) == {signal.SIGTERM, signal.SIGHUP}


@_in_main_thread
def test_handlers_are_installed_then_restored() -> None:
    def mine(signum: int, frame: object) -> None:
        pass

    before = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    signal.signal(signal.SIGTERM, mine)
    try:
        with stop_signals(lambda signum: None):
            assert signal.getsignal(signal.SIGTERM) is not mine
            assert callable(signal.getsignal(signal.SIGHUP))
        assert signal.getsignal(signal.SIGTERM) is mine
        assert signal.getsignal(signal.SIGHUP) == before[signal.SIGHUP]
        with pytest.raises(RuntimeError), stop_signals(lambda signum: None):
            raise RuntimeError  # restored on the way out of an exception too
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        for sig, old in before.items():
            signal.signal(sig, old)


@_in_main_thread
def test_an_ignored_signal_stays_ignored() -> None:
    before = signal.getsignal(signal.SIGHUP)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as nohup leaves it
    try:
        with stop_signals(lambda signum: None):
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, before)


@_in_main_thread
def test_sigint_too_when_asked() -> None:
    seen: list[int] = []
    before = signal.getsignal(signal.SIGINT)
    with stop_signals(seen.append, (signal.SIGINT, *STOP_SIGNALS)):
        signal.raise_signal(signal.SIGINT)
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    assert seen == [signal.SIGINT]
    assert signal.getsignal(signal.SIGINT) is before


def test_a_dropped_keyboard_interrupt_is_not_printed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    printed: list[type[BaseException]] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: printed.append(u.exc_type))

    class Dies:
        def __init__(self, exc: BaseException) -> None:
            self.exc = exc

        def __del__(self) -> None:
            raise self.exc  # where a signal handler's raise may land

    with quiet_lost_interrupts():
        Dies(KeyboardInterrupt())
        Dies(ValueError("not an interrupt"))
    Dies(KeyboardInterrupt())
    # Inside, the interrupt is dropped quietly and anything else printed as
    # before; outside, the interrupt too.
    assert printed == [ValueError, KeyboardInterrupt]


def test_outside_the_main_thread_nothing_is_installed() -> None:
    seen: list[object] = []

    def body() -> None:
        before = signal.getsignal(signal.SIGTERM)
        with stop_signals(lambda signum: None):
            seen.append(signal.getsignal(signal.SIGTERM) is before)

    t = threading.Thread(target=body)
    t.start()
    t.join(10)
    assert seen == [True]


def test_raise_interrupt_only_when_armed_and_only_once() -> None:
    early = RaiseInterrupt()
    early(signal.SIGTERM)  # not armed (the table is being written): only noted
    assert early.signum == signal.SIGTERM
    with pytest.raises(KeyboardInterrupt), early.armed():
        pytest.fail("a signal that came before arming interrupts at once")

    stop = RaiseInterrupt()
    survived: list[bool] = []

    def two_signals() -> None:
        with stop.armed():
            try:
                stop(signal.SIGHUP)
            except KeyboardInterrupt:
                stop(signal.SIGTERM)  # a second one, during the clean-up: ignored
                survived.append(True)
                raise

    with pytest.raises(KeyboardInterrupt):
        two_signals()
    assert survived == [True]
    assert stop.signum == signal.SIGHUP


#: ``xensched CMD`` as its own process, with a Ctrl-C at a chosen moment (``WHEN``):
#: as the command's own handler is put back, or after the command, before the exit.
_LATE_CTRL_C = """
import os, signal, sys
from xensched import cli, signals

when = sys.argv[1]
if when == "as-the-handler-is-put-back":
    real = signals.stop_signals

    def putting_back(*args, **kwargs):
        cm = real(*args, **kwargs)

        class Wrapped:
            def __enter__(self):
                return cm.__enter__()

            def __exit__(self, *exc):
                out = cm.__exit__(*exc)
                os.kill(os.getpid(), signal.SIGINT)  # the old handler is back
                return out

        return Wrapped()

    signals.stop_signals = putting_back
    cli.stop_signals = putting_back
    sys.argv = ["xensched", "reproduce", "--boot", "credit", "--pool", "credit",
                "--direction", "add", "--protocol", "fixed", "--workers", "1",
                "--no-progress"]
else:
    real_main = cli._main

    def then_ctrl_c(argv):
        code = real_main(argv)
        os.kill(os.getpid(), signal.SIGINT)  # the command done, not yet exited
        return code

    cli._main = then_ctrl_c
    sys.argv = ["xensched", "protocols"]
raise SystemExit(cli.main())
"""


@pytest.mark.parametrize("when", ["as-the-handler-is-put-back", "after-the-command"])
def test_a_late_ctrl_c_ends_the_command_as_interrupted_not_a_traceback(
    when: str,
) -> None:
    # A flood of Ctrl-C (timeout -s INT, a user's repeated ^C) once landed where no
    # command handler was in place: a KeyboardInterrupt traceback, killed by SIGINT.
    import subprocess

    out = subprocess.run(
        [sys.executable, "-c", _LATE_CTRL_C, when],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in out.stderr
    assert out.returncode == 128 + signal.SIGINT, out.stderr
