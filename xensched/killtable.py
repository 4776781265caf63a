"""The kill table of ``xensched mutate``: the harness's own commands against each mutant.

Mirrors nothing in Xen. A mutant of the fix (:data:`xensched.mutants.CATALOG`) is
*killed* when one of the harness's commands, run on it, reports a violation: a
:class:`Killer` is such a command (``xensched reproduce ...``, ``xensched explore
...``), written once without the mutant, and :data:`PLAN` gives every mutant an
ordered list of them, the cheapest deterministic one first. A killer runs as a
subprocess (``python -m xensched ARGV --protocol P --mutant NAME --json FILE``, in a
temporary directory, so that a replay file or an example database lands there) under
a timeout, and its ``--json`` report says whether it killed: a non-empty
``"violations"`` list (``explore``, ``stress``, and any command that reports as they
do) or a move with ``"problems"`` (``reproduce``). The first killer that kills ends
the mutant's list.

The *intact* fix runs every killer the selected mutants use, with ``--protocol
fixed`` in place of the mutant: a check that flags the fix itself would make every
kill worthless. The race detector's declared races (``Cell(racy=)``) never reach a
report's violations, so they are aside here too.

Left out of :data:`PLAN`: ``stress`` and ``fuzz`` runs as killers (free-running, so
nondeterministic: the table must be the same on every run and every machine; a
``--plan`` file can add them, e.g. ``["fuzz", "--seed", "1", "--duration", "10",
"--no-explore"]`` kills ``no-deinit-pdata`` with the fix clean). Left out entirely:
any retry of a killer that timed out or failed: that is an error of the table,
reported as one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import xensched
from xensched.errors import ConfigError
from xensched.mutants import CATALOG, Mutant, find_mutant

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

__all__ = [
    "DEFAULT_TIMEOUT",
    "INTACT_PROTOCOL",
    "PLAN",
    "KillReport",
    "Killer",
    "MutantResult",
    "Outcome",
    "load_plan",
    "new_report",
    "render_kill_table",
    "run_kill_table",
]

#: The protocol the intact fix runs the killers under.
INTACT_PROTOCOL: Final = "fixed"
#: Bound of one killer command, in seconds: the slowest default killer takes under
#: 10 s here; a killer that hangs must not hang the table.
DEFAULT_TIMEOUT: Final = 300.0
#: Options a killer may not set itself: the table adds them (the mutant, the intact
#: protocol, the report it reads).
_ADDED_OPTIONS: Final = ("--json", "--mutant", "--protocol")


@dataclass(frozen=True, slots=True)
class Killer:
    """A command of the harness that can kill a mutant: ``xensched ARGV...``.

    ``argv`` names neither the protocol nor the mutant nor the report; the table adds
    ``--protocol P --mutant NAME`` for a mutant (its own protocol, explicit, so that a
    built-in scenario whose default protocol is ``legacy`` runs the mutant's, and an
    edit runs on the fixed switch) and ``--protocol fixed`` for the intact fix.
    """

    argv: tuple[str, ...]

    def for_mutant(self, m: Mutant) -> tuple[str, ...]:
        return (*self.argv, "--protocol", m.protocol, "--mutant", m.name)

    def for_intact(self) -> tuple[str, ...]:
        return (*self.argv, "--protocol", INTACT_PROTOCOL)

    def problem(self) -> str:
        """Why this killer cannot be run by the table, or ``""``."""
        # A --plan file is JSON: its strings are checked here, not by the type.
        items: tuple[object, ...] = self.argv
        if not items or not all(isinstance(a, str) and a for a in items):
            return "a killer is a non-empty list of non-empty strings"
        if self.argv[0].startswith("-"):
            return f"a killer starts with a command name, not {self.argv[0]!r}"
        for a in self.argv:
            opt = a.split("=", 1)[0]
            if opt in _ADDED_OPTIONS:
                return f"a killer may not set {opt} (the table adds it)"
        return ""


def _k(*argv: str) -> Killer:
    return Killer(tuple(argv))


# The killers, measured on 2 cores (README, "xensched mutate"). reproduce is the same
# on every run by construction (every point of every thread paused); explore's
# DPOR with a fixed seed runs the same executions in the same order.
_MOVE = ("reproduce", "--boot", "credit", "--pool", "credit2", "--direction")
_ONE = ("--workers", "1")  # the table runs killers side by side itself
#: pCPU 3 into a Credit2 pool, boot Credit: problem 1 of the patch and most parts.
ADD: Final = _k(*_MOVE, "add", *_ONE)
#: pCPU 3 out of it: free_pdata's pre-patch teardown only shows on the way out.
REMOVE: Final = _k(*_MOVE, "remove", *_ONE)
#: The barrier is only missing under a model that reorders stores. Not a move into or
#: out of ARINC653: its switch_sched has no barrier in Xen 4.7 either, and relaxed
#: flags the fix there (README, Memory models).
RELAXED: Final = _k(*_MOVE, "add", "--memory-model", "relaxed", *_ONE)
_EXPLORE = ("--strategy", "dpor", "--seed", "1", "--no-shrink")
#: pCPU 1 out of Pool-0 (Credit2) and back, through a Credit pool: re-entering
#: Credit2 finds the state deinit_pdata should have cleared (an ASSERT, first run).
REENTRY: Final = _k(
    "explore",
    "--scenario",
    "round-trip",
    "--boot",
    "credit2",
    "--pool",
    "credit",
    "--runs",
    "50",
    *_EXPLORE,
)
#: A pool peer out and back while csched_load_balance trylocks it: the one caller of
#: pcpu_schedule_trylock (36 runs; the fix is exhausted clean in 125).
PEER: Final = _k("explore", "--scenario", "peer-round-trip", "--runs", "200", *_EXPLORE)
#: Lock order: Credit2's switch_sched against _deinit's order, seen by lockdep
#: without a deadlock (first run).
LOCKDEP: Final = _k(
    "explore",
    "--scenario",
    "round-trip",
    "--boot",
    "credit",
    "--pool",
    "credit2",
    "--lockdep",
    "--runs",
    "50",
    *_EXPLORE,
)

#: Every mutant of the catalog and its killers, first tried first. A second killer
#: is tried only when the first did not kill.
PLAN: Final[Mapping[str, tuple[Killer, ...]]] = {
    "legacy": (ADD, REMOVE),
    "pointer-first": (ADD, REMOVE),
    "no-old-lock": (ADD, REMOVE),
    "unlock-by-cpu": (ADD, REMOVE),
    "no-barrier": (RELAXED,),
    "init-in-alloc": (ADD,),
    "irqs-on": (ADD, REMOVE),
    "prv-lock-irq": (ADD,),
    "free-pdata-teardown": (REMOVE,),
    "no-deinit-pdata": (REENTRY,),
    "no-trylock-recheck": (PEER,),
    "no-lock-recheck": (ADD, REMOVE, REENTRY),
    "credit2-lock-order": (LOCKDEP,),
}


def load_plan(text: str, where: str) -> dict[str, tuple[Killer, ...]]:
    """A ``--plan`` file: ``{"MUTANT": [["explore", "--scenario", ...], ...], ...}``.

    Each mutant named gets these killers in place of :data:`PLAN`'s (an empty list:
    none, so the mutant survives).

    Raises:
        ConfigError: one line naming ``where`` and the problem.
    """
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{where}: not JSON ({e})") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: an object of mutant names to lists of killers")
    out: dict[str, tuple[Killer, ...]] = {}
    for name, killers in doc.items():
        try:
            find_mutant(name)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
        if not isinstance(killers, list) or not all(
            isinstance(k, list) for k in killers
        ):
            raise ConfigError(
                f"{where}: {name}: a list of killers, each a list of strings"
            )
        ks = tuple(Killer(tuple(k)) for k in killers)
        for k in ks:
            problem = k.problem()
            if problem:
                raise ConfigError(f"{where}: {name}: {problem}")
        out[name] = ks
    return out


# -- one killer run ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Outcome:
    """What one killer command did: the kinds it reported, or why it did not run."""

    by: str
    kinds: tuple[str, ...] = ()
    runs: int | None = None
    seconds: float = 0.0
    error: str | None = None

    @property
    def flagged(self) -> bool:
        return bool(self.kinds)

    def to_json(self) -> dict[str, Any]:
        return {
            "by": self.by,
            "flagged": self.flagged,
            "kinds": list(self.kinds),
            "runs": self.runs,
            "seconds": round(self.seconds, 3),
            "error": self.error,
        }


def read_report(doc: Any) -> tuple[tuple[str, ...], int | None]:
    """The violation kinds a command's ``--json`` report holds (in order, distinct)
    and its runs (``None``: the report has no count of runs).

    ``reproduce``'s report has ``"results"``, each with ``"problems"`` and ``"runs"``;
    every other command's has ``"violations"`` (each with a ``"kind"``) and, for
    ``explore``, ``"runs"``, for ``fuzz``, ``"examples"`` (Hypothesis's, counted as
    runs).
    """
    if not isinstance(doc, dict):
        raise ValueError("the report is not a JSON object")
    kinds: list[str] = []
    runs: int | None = None
    if "results" in doc:
        runs = 0
        for r in doc["results"]:
            kinds.extend(r.get("problems", []))
            runs += int(r.get("runs", 0))
    elif "violations" in doc:
        kinds.extend(v["kind"] for v in doc["violations"])
        for key in ("runs", "examples"):
            if isinstance(doc.get(key), int):
                runs = doc[key]
                break
    else:
        raise ValueError("the report has neither violations nor results")
    return tuple(dict.fromkeys(str(k) for k in kinds)), runs


class _Procs:
    """The killer processes running now, so that an interrupt can end them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._procs: set[subprocess.Popen[bytes]] = set()
        self.stopped = threading.Event()

    def add(self, p: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._procs.add(p)
            late = self.stopped.is_set()
        if late:  # started as stop() ran: it missed this one
            _kill_group(p)

    def discard(self, p: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._procs.discard(p)

    def stop(self) -> None:
        """End every killer process we started (each its own process group)."""
        self.stopped.set()
        with self._lock:
            procs = list(self._procs)
        for p in procs:
            _kill_group(p)


def _kill_group(p: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(p.pid, signal.SIGKILL)


def _tail(path: str, lines: int = 1) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read().strip().splitlines()
    except OSError:
        return ""
    return " / ".join(text[-lines:])


def run_killer(
    argv: Sequence[str], timeout: float, procs: _Procs | None = None
) -> Outcome:
    """Run ``xensched ARGV --json FILE`` in a temporary directory and read its report.

    A command that exits 2 (usage), runs out of ``timeout`` or writes no readable
    report is an :attr:`Outcome.error`, never a kill.
    """
    by = shlex.join(("xensched", *argv))
    with tempfile.TemporaryDirectory(prefix="xensched-mutate-") as tmp:
        report = os.path.join(tmp, "report.json")
        log = os.path.join(tmp, "stderr.txt")
        cmd = [sys.executable, "-m", "xensched", *argv, "--json", report]
        t0 = time.monotonic()
        with open(log, "wb") as err:
            if procs is not None and procs.stopped.is_set():
                return Outcome(by, error="interrupted")
            p = subprocess.Popen(
                cmd,
                cwd=tmp,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,  # its own group: a timeout ends its children
            )
            if procs is not None:
                procs.add(p)
            try:
                rc = p.wait(timeout)
            except subprocess.TimeoutExpired:
                _kill_group(p)
                p.wait()
                return Outcome(
                    by,
                    seconds=time.monotonic() - t0,
                    error=f"timed out after {timeout:g} s",
                )
            finally:
                if procs is not None:
                    procs.discard(p)
        seconds = time.monotonic() - t0
        if procs is not None and procs.stopped.is_set() and rc < 0:
            return Outcome(by, seconds=seconds, error="interrupted")
        if rc == 2:
            return Outcome(
                by, seconds=seconds, error=f"usage error: {_tail(log) or 'exit 2'}"
            )
        try:
            with open(report, encoding="utf-8") as f:
                kinds, runs = read_report(json.load(f))
        except (OSError, ValueError, KeyError, TypeError) as e:
            why = _tail(log) or f"exit {rc}"
            return Outcome(by, seconds=seconds, error=f"no report ({e}): {why}")
        return Outcome(by, kinds, runs, seconds)


# -- the table --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class MutantResult:
    """One row of the kill table: the killers tried on ``name``, in order."""

    name: str
    tried: tuple[Outcome, ...]

    @property
    def killer(self) -> Outcome | None:
        return next((o for o in self.tried if o.flagged), None)

    @property
    def killed(self) -> bool:
        return self.killer is not None

    @property
    def errors(self) -> tuple[str, ...]:
        return tuple(o.error for o in self.tried if o.error)

    def to_json(self) -> dict[str, Any]:
        k = self.killer
        return {
            "name": self.name,
            "killed": k is not None,
            "kind": k.kinds[0] if k is not None else None,
            "by": k.by if k is not None else None,
            "runs": k.runs if k is not None else None,
            "seconds": round(
                k.seconds if k is not None else sum(o.seconds for o in self.tried), 3
            ),
            "tried": [o.to_json() for o in self.tried],
        }


@dataclass(slots=True)
class KillReport:
    """The kill table so far: every mutant finished, every intact check run."""

    mutants: list[MutantResult] = field(default_factory=list)
    intact: list[Outcome] = field(default_factory=list)
    #: The mutants the table was to run, finished or not.
    selected: list[str] = field(default_factory=list)
    #: How many intact checks the table was to run.
    intact_planned: int = 0
    complete: bool = False
    seconds: float = 0.0

    @property
    def intact_flagged(self) -> bool:
        return any(o.flagged for o in self.intact)

    @property
    def errors(self) -> list[str]:
        out = [f"{m.name}: {e}" for m in self.mutants for e in m.errors]
        out += [f"intact: {o.by}: {o.error}" for o in self.intact if o.error]
        return out

    @property
    def ok(self) -> bool:
        """Every mutant killed, the intact fix clean, nothing failed to run."""
        return (
            self.complete
            and all(m.killed for m in self.mutants)
            and not self.intact_flagged
            and not self.errors  # a mutant's killers' too, not the intact runs' only
        )

    def to_json(self) -> dict[str, Any]:
        order = {m.name: i for i, m in enumerate(CATALOG)}
        return {
            "xensched": xensched.__version__,
            "complete": self.complete,
            "seconds": round(self.seconds, 3),
            "mutants": [
                m.to_json()
                for m in sorted(self.mutants, key=lambda m: order.get(m.name, 0))
            ],
            "intact_flagged": self.intact_flagged,
            "intact": [o.to_json() for o in self.intact],
        }


def _intact_killers(
    mutants: Sequence[Mutant], plan: Mapping[str, Sequence[Killer]]
) -> list[Killer]:
    # Each distinct killer once, in the plan's order.
    return list(dict.fromkeys(k for m in mutants for k in plan.get(m.name, ())))


def new_report(
    mutants: Iterable[Mutant], plan: Mapping[str, Sequence[Killer]] = PLAN
) -> KillReport:
    """An empty table for ``mutants``: what an interrupt before any result shows."""
    chosen = list(mutants)
    return KillReport(
        selected=[m.name for m in chosen],
        intact_planned=len(_intact_killers(chosen, plan)),
    )


def _run_mutant(
    m: Mutant, killers: Sequence[Killer], timeout: float, procs: _Procs
) -> MutantResult:
    tried: list[Outcome] = []
    for k in killers:
        if procs.stopped.is_set():
            break
        o = run_killer(k.for_mutant(m), timeout, procs)
        tried.append(o)
        if o.flagged:
            break
    return MutantResult(m.name, tuple(tried))


def run_kill_table(
    mutants: Iterable[Mutant],
    plan: Mapping[str, Sequence[Killer]] = PLAN,
    *,
    workers: int = 1,
    timeout: float = DEFAULT_TIMEOUT,
    on_done: Callable[[MutantResult | Outcome, int, int], None] | None = None,
    report: KillReport | None = None,
) -> KillReport:
    """Run each mutant's killers until one kills, and every killer on the intact fix.

    ``workers`` killer commands run at once (processes; each mutant's killers in
    turn). ``on_done(result, done, total)`` is called as each mutant or intact check
    finishes (a :class:`MutantResult` or the intact :class:`Outcome`). ``report``
    (from :func:`new_report`) is filled as results come in, so that a caller
    interrupted (``KeyboardInterrupt``) still has what finished; the processes
    running then are killed.
    """
    chosen = list(mutants)
    out = report if report is not None else new_report(chosen, plan)
    intact = _intact_killers(chosen, plan)
    total = len(chosen) + len(intact)
    procs = _Procs()
    t0 = time.monotonic()
    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    pending: dict[Future[Any], str] = {}
    try:
        for m in chosen:
            pending[
                pool.submit(_run_mutant, m, plan.get(m.name, ()), timeout, procs)
            ] = "mutant"
        for k in intact:
            pending[pool.submit(run_killer, k.for_intact(), timeout, procs)] = "intact"
        done_count = 0
        while pending:
            # A bounded wait, so that Ctrl-C reaches this thread promptly.
            finished, _ = wait(list(pending), timeout=0.2, return_when=FIRST_COMPLETED)
            for f in finished:
                what = pending.pop(f)
                result = f.result()
                if what == "mutant":
                    out.mutants.append(result)
                else:
                    out.intact.append(result)
                done_count += 1
                if on_done is not None:
                    on_done(result, done_count, total)
        out.complete = True
    finally:
        if not out.complete:
            procs.stop()
            for f in pending:
                f.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
        out.seconds = time.monotonic() - t0
        # In the plan's order, whichever finished first.
        rank = {
            shlex.join(("xensched", *k.for_intact())): i for i, k in enumerate(intact)
        }
        out.intact.sort(key=lambda o: rank.get(o.by, 0))
    return out


def render_kill_table(r: KillReport) -> str:
    """The kill table as text: one row per mutant, then the intact fix's verdict."""
    order = {m.name: i for i, m in enumerate(CATALOG)}
    rows = [("mutant", "killed", "check", "runs", "seconds", "command")]
    for m in sorted(r.mutants, key=lambda m: order.get(m.name, 0)):
        k = m.killer
        if k is not None:
            rows.append(
                (
                    m.name,
                    "yes",
                    k.kinds[0],
                    "-" if k.runs is None else str(k.runs),
                    f"{k.seconds:.1f}",
                    k.by,
                )
            )
        else:
            why = "; ".join(m.errors) or f"{len(m.tried)} killer(s) found nothing"
            secs = sum(o.seconds for o in m.tried)
            rows.append((m.name, "NO", "-", "-", f"{secs:.1f}", why))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = []
    for j, row in enumerate(rows):
        cells = [
            row[i].rjust(widths[i]) if i in (3, 4) and j else row[i].ljust(widths[i])
            for i in range(5)
        ]
        lines.append("  ".join((*cells, row[5])).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in (*widths, len("command"))))
    flagged = [o for o in r.intact if o.flagged]
    lines.append("")
    if flagged:
        lines.append(
            f"intact fix FLAGGED by {len(flagged)} of {len(r.intact)} commands:"
        )
        lines += [f"  {', '.join(o.kinds)}: {o.by}" for o in flagged]
    else:
        ran = len(r.intact)
        of = (
            "" if ran >= r.intact_planned else f" that finished (of {r.intact_planned})"
        )
        lines.append(
            f"intact fix (--protocol {INTACT_PROTOCOL}): not flagged by the "
            f"{ran} commands{of}"
        )
    for e in r.errors:
        lines.append(f"error: {e}")
    killed = sum(m.killed for m in r.mutants)
    total = max(len(r.selected), len(r.mutants))
    left = total - len(r.mutants)
    lines.append(
        f"{killed} of {total} mutants killed in {r.seconds:.1f}s"
        + ("" if r.complete else f" (interrupted: {left} not finished)")
    )
    return "\n".join(lines)
