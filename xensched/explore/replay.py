"""Replay files: a failing execution as versioned JSON, and the strategy that re-runs it.

Mirrors nothing in Xen. A replay file holds everything needed to run one execution
again, on another machine or after a code change: the target (a whole
:class:`~xensched.scenario.Scenario`, protocol included, or a pytest node id), the
seed, the strategy that found it, the *schedule* (the thread chosen at each step), what
each chosen thread was about to do at that step (``accesses``), and the violation with
the step at which it was recorded. It is JSON (never a pickle) and is validated on
load: a malformed file is one :class:`~xensched.errors.ConfigError` line naming the
field.

:class:`ReplaySchedule` follows the schedule and checks, at every step, that the chosen
thread is enabled and about to make the recorded access. When the code or the scenario
changed so that it is not, replay stops with :class:`ReplayDivergedError`, saying at
which step and how, instead of silently running another execution.

Left out: free-running runs (``xensched stress`` re-runs by seed, which samples again)
and reading other versions of the format: a file of another version is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from xensched.errors import ConfigError
from xensched.explore.engine import MAX_STEPS_RANGE
from xensched.inputs import read_text
from xensched.mutants import CATALOG
from xensched.scenario import JsonReader, Scenario, json_kind
from xensched.violation import ViolationKind

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from xensched.explore.base import Op, Step
    from xensched.explore.engine import Execution

__all__ = [
    "REPLAY_FORMAT",
    "REPLAY_VERSION",
    "Replay",
    "ReplayDivergedError",
    "ReplaySchedule",
    "load_replay",
]

REPLAY_FORMAT: Final = "xensched-replay"
REPLAY_VERSION: Final = 1


@dataclass(frozen=True, slots=True)
class RecordedViolation:
    """The violation a replay must show again: its kind, where, and at which step."""

    kind: str
    step: int
    cpu: int | None
    where: str
    message: str
    context: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "step": self.step,
            "cpu": self.cpu,
            "where": self.where,
            "message": self.message,
            "context": self.context,
        }


@dataclass(frozen=True, slots=True)
class Replay:
    """One execution to run again; see the module docstring."""

    schedule: tuple[str, ...]
    accesses: tuple[str, ...]
    seed: int
    strategy: str
    scenario: Scenario | None = None
    #: For an execution of a pytest test's threads: its node id.
    nodeid: str | None = None
    violation: RecordedViolation | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        ex: Execution,
        *,
        seed: int,
        strategy: str,
        scenario: Scenario | None = None,
        nodeid: str | None = None,
        options: Mapping[str, Any] | None = None,
        kind: str | None = None,
    ) -> Replay:
        """The replay of execution ``ex``: its first violation (of ``kind``, if
        given), if any."""
        rv = None
        found = [
            (v, step)
            for v, step in zip(ex.violations, ex.violation_steps, strict=False)
            if kind is None or v.kind.value == kind
        ]
        if found:
            v, step = found[0]
            rv = RecordedViolation(
                v.kind.value,
                step,
                v.cpu,
                v.where,
                v.message,
                v.context,
            )
        return cls(
            ex.schedule,
            tuple(s.op.describe() for s in ex.steps),
            seed,
            strategy,
            scenario,
            nodeid,
            rv,
            dict(options or {}),
        )

    def to_dict(self) -> dict[str, Any]:
        from xensched import __version__

        return {
            "format": REPLAY_FORMAT,
            "version": REPLAY_VERSION,
            "xensched": __version__,
            "scenario": self.scenario.to_dict() if self.scenario is not None else None,
            "nodeid": self.nodeid,
            "seed": self.seed,
            "strategy": self.strategy,
            "options": dict(self.options),
            "schedule": list(self.schedule),
            "accesses": list(self.accesses),
            "violation": self.violation.to_dict() if self.violation else None,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1) + "\n"

    @classmethod
    def from_dict(cls, data: object) -> Replay:
        """A replay from parsed JSON.

        Raises:
            ConfigError: one line naming what is wrong.
        """
        r = JsonReader(data, "replay")
        fmt = r.text("format")
        if fmt != REPLAY_FORMAT:
            raise ConfigError(f"replay.format: {fmt!r} is not {REPLAY_FORMAT!r}")
        version = r.integer("version")
        if version != REPLAY_VERSION:
            raise ConfigError(
                f"replay.version: {version} (this xensched reads version "
                f"{REPLAY_VERSION})"
            )
        if "xensched" in r.data:  # missing in files written by hand: harmless
            _nonempty(r, "xensched", r.text("xensched"))
        raw_sc = r.get("scenario", None)
        scenario = None
        if raw_sc is not None:
            try:
                scenario = Scenario.from_dict(raw_sc)
            except ConfigError as e:
                raise ConfigError(f"replay.{e}") from None
        nodeid = r.opt_text("nodeid")
        if nodeid is not None:
            _nonempty(r, "nodeid", nodeid)
        if scenario is None and nodeid is None:
            raise ConfigError("replay: needs a scenario or a nodeid")
        if scenario is not None and nodeid is not None:
            # One would be ignored: `xensched replay` runs the scenario, pytest
            # --xensched-replay the node.
            raise ConfigError(
                "replay.nodeid: given with a scenario (a file records a scenario or "
                "a pytest test's node id, not both)"
            )
        seed = r.integer("seed")
        if seed < 0:
            raise ConfigError(f"replay.seed: {seed}: expected an integer >= 0")
        strategy = _nonempty(r, "strategy", r.text("strategy"))
        options = _options(r.get("options", {}))
        for key in ("schedule", "accesses"):
            # words() takes a missing list as empty, which would blame the other one.
            if key not in r.data:
                raise ConfigError(f"replay.{key}: missing")
        schedule = tuple(r.words("schedule"))
        accesses = tuple(r.words("accesses"))
        if len(accesses) != len(schedule):
            raise ConfigError(
                f"replay.accesses: {len(accesses)} entries for {len(schedule)} steps"
            )
        raw_v = r.get("violation", None)
        violation = None
        if raw_v is not None:
            rv = JsonReader(raw_v, "replay.violation")
            violation = RecordedViolation(
                rv.text("kind"),
                rv.integer("step"),
                rv.opt_integer("cpu"),
                rv.text("where"),
                _nonempty(rv, "message", rv.text("message")),
                rv.text("context"),
            )
            rv.done()
            if violation.kind not in _KINDS:
                # Compared by kind, an unknown one would only say NOT reproduced.
                raise ConfigError(
                    f"replay.violation.kind: {violation.kind!r} is not a violation "
                    f"kind ({', '.join(_KINDS)})"
                )
            if violation.cpu is not None and violation.cpu < 0:
                raise ConfigError(
                    f"replay.violation.cpu: {violation.cpu}: expected an integer "
                    ">= 0 or null"
                )
            if not 0 <= violation.step < max(len(schedule), 1):
                raise ConfigError(
                    f"replay.violation.step: {violation.step} is not a step of the "
                    f"{len(schedule)}-step schedule"
                )
        r.done()
        return cls(
            schedule,
            accesses,
            seed,
            strategy,
            scenario,
            nodeid,
            violation,
            options,
        )


_KINDS: Final = tuple(k.value for k in ViolationKind)
_MUTANTS: Final = frozenset(m.name for m in CATALOG)


def _nonempty(r: JsonReader, key: str, value: str) -> str:
    if value == "":
        raise ConfigError(f"{r.path}.{key}: empty")
    return value


def _flag(r: JsonReader, key: str) -> None:
    v = r.get(key, False)
    if not isinstance(v, bool):
        raise r.bad(key, "a boolean", v)


def _options(raw: object) -> dict[str, Any]:
    """The ``options`` object, its known keys checked as explore writes them.

    Other keys pass: a pytest test's replay records its marker's options, which
    ``xensched replay`` does not read.

    Raises:
        ConfigError: one line naming the option.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"replay.options: expected an object, got {json_kind(raw)}")
    r = JsonReader(raw, "replay.options")
    if "max_steps" in raw:
        lo, hi = MAX_STEPS_RANGE
        steps = r.integer("max_steps")
        if not lo <= steps <= hi:
            raise ConfigError(
                f"replay.options.max_steps: {steps}: expected an integer in "
                f"[{lo}, {hi}] (what explore --max-steps takes)"
            )
    _flag(r, "lockdep")
    _flag(r, "race_detector")
    mutant = _nonempty(r, "mutant", r.text("mutant", None)) if "mutant" in raw else None
    if mutant is not None and mutant not in _MUTANTS:
        # The scenario carries what the mutant runs: the name is only shown, but a
        # name no mutant has would mislead the reader of the header.
        raise ConfigError(
            f"replay.options.mutant: {mutant!r} is not a mutant of the catalog "
            "(`xensched mutate --list`)"
        )
    shard = raw.get("shard")
    if shard is not None and not (
        isinstance(shard, list)
        and len(shard) == 2
        and all(isinstance(x, int) and not isinstance(x, bool) for x in shard)
        and 0 <= shard[0] < shard[1]
    ):
        raise ConfigError(
            f"replay.options.shard: expected [K, N] with 0 <= K < N, or null; got "
            f"{json.dumps(shard)}"
        )
    return raw


def load_replay(path: str) -> Replay:
    """Read and validate a replay file.

    Raises:
        ConfigError: one line: unreadable, not JSON, or not a valid replay.
    """
    text = read_text(path, path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not JSON (line {e.lineno}: {e.msg})") from None
    try:
        return Replay.from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


class ReplayDivergedError(RuntimeError):
    """The run no longer follows the recorded schedule (code or scenario changed)."""

    def __init__(self, step: int, message: str) -> None:
        super().__init__(f"the replay diverged at step {step}: {message}")
        self.step = step


class ReplaySchedule:
    """A strategy that follows a recorded schedule and checks every step."""

    name = "replay"

    def __init__(self, schedule: Sequence[str], accesses: Sequence[str]) -> None:
        self.schedule = list(schedule)
        self.accesses = list(accesses)
        self.ran = 0

    def begin(self, run: int) -> bool:
        return run == 0

    def choose(
        self,
        step: int,
        enabled: Sequence[str],
        pending: Mapping[str, Op],
        last: str | None,
    ) -> str | None:
        if step >= len(self.schedule):
            raise ReplayDivergedError(
                step,
                f"the run goes on after the {len(self.schedule)} recorded steps "
                f"(enabled: {', '.join(enabled)})",
            )
        want = self.schedule[step]
        what = self.accesses[step]
        if want not in enabled:
            raise ReplayDivergedError(
                step,
                f"{want} was to {what}, but it is not enabled (enabled: "
                f"{', '.join(f'{t} to {pending[t].describe()}' for t in enabled)})",
            )
        now = pending[want].describe()
        if now != what:
            raise ReplayDivergedError(
                step, f"{want} was to {what}, but now it is to {now}"
            )
        self.ran = step + 1
        return want

    def end(self, steps: Sequence[Step], abandoned: bool) -> None:
        if not abandoned and len(steps) < len(self.schedule):
            raise ReplayDivergedError(
                len(steps),
                f"the run ended after {len(steps)} of the {len(self.schedule)} "
                "recorded steps",
            )

    @property
    def exhaustive(self) -> bool:
        return False

    def summary(self) -> dict[str, object]:
        return {"replayed_steps": self.ran}
