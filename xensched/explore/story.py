"""The story of an execution: who took which lock, what they read, which check fired.

Mirrors nothing in Xen. :class:`Recorder` is an instrument that writes down every
point and note of one execution with the step it happened in, the Xen function, and
for loads and stores the value; :func:`render_story` prints the steps up to the
violation as a per-CPU list a Xen developer reads like a trace of the race: one line
per access, the thread's column set by its CPU, a rule where the turn passes to
another thread (marked ``preempts`` when the previous one could have gone on), and the
violation where the check fired.

Left out: the steps after the violation, and free-running runs, which have no steps
to number (``xensched stress`` prints its events instead).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from xensched.drivers.controlled import acts_for
from xensched.interaction import Instrument, PointKind

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from xensched.explore.base import SearchStrategy, Step
    from xensched.explore.engine import Execution, Target
    from xensched.interaction import Access
    from xensched.smp import Event, ExecContext
    from xensched.violation import Violation

__all__ = ["Recorded", "Recorder", "record", "render_story", "timeline_events"]

_VALUED = frozenset({PointKind.LOAD, PointKind.STORE})
_QUIET = frozenset({PointKind.ACQUIRED, PointKind.TRYLOCK_OK, PointKind.EXIT})


def _short(value: object, width: int = 48) -> str:
    name = getattr(value, "name", None) or getattr(value, "label", None)
    text = str(name) if isinstance(name, str) else repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


@dataclass(frozen=True, slots=True)
class Recorded:
    """One access of the execution, in order."""

    seq: int
    step: int
    thread: str
    cpu: int | None
    kind: str
    label: str
    value: str | None
    fn: str


class Recorder(Instrument):
    """Records every point and note, and every violation, with its step.

    ``step_of`` returns the step now running (the explorer's chooser knows it).
    Only the thread that holds the turn runs, and the controlled driver hands the
    turn over under its mutex, which orders one thread's appends before the next's:
    they never race, with or without the GIL.
    """

    def __init__(self, step_of: Callable[[], int]) -> None:
        self._step_of = step_of
        self.accesses: list[Recorded] = []
        self.violations: list[tuple[int, int, Violation]] = []  # (seq, step, v)

    def on_point(self, ctx: ExecContext, access: Access) -> None:
        kind, obj = access[0], access[1]
        value: str | None = None
        if kind in _VALUED:
            value = _short(access[2] if kind is not PointKind.LOAD else obj.peek())  # type: ignore[attr-defined]
        fn = ctx.function_of(access)
        self.accesses.append(
            Recorded(
                len(self.accesses),
                self._step_of(),
                ctx.name,
                ctx.cpu,
                kind._value_,
                obj.label,
                value,
                fn,
            )
        )

    def on_violation(self, violation: Violation) -> None:
        self.violations.append((len(self.accesses), self._step_of(), violation))


def render_story(
    rec: Recorder,
    steps: Sequence[Step],
    *,
    upto: int | None = None,
    context: int = 0,
) -> str:
    """The execution up to step ``upto`` (default: its first violation) as text."""
    if upto is None:
        upto = rec.violations[0][1] if rec.violations else len(steps) - 1
    upto = min(upto + context, len(steps) - 1) if steps else upto
    threads = sorted(
        {acts_for(s.thread) for s in steps},
        key=lambda t: (
            (0, int(t[4:])) if t.startswith("pcpu") and t[4:].isdigit() else (1, t)
        ),
    )
    col = {t: i for i, t in enumerate(threads)}
    width = max((len(t) for t in threads), default=4)
    lines = [
        "  threads: " + ", ".join(threads),
        f"  {'step':>5}  {'thread':<{width}}  what",
    ]
    # A violation recorded when the execution had made ``seq`` accesses comes
    # right after access ``seq - 1``.
    after: dict[int, list[Violation]] = {}
    for seq, _, v in rec.violations:
        after.setdefault(seq - 1, []).append(v)
    by_step: dict[int, list[Recorded]] = {}
    for a in rec.accesses:
        by_step.setdefault(a.step, []).append(a)
    prev: str | None = None
    for i, s in enumerate(steps[: upto + 1]):
        who = acts_for(s.thread)
        if who != prev:
            why = (
                f" (preempts {prev})" if prev is not None and prev in s.enabled else ""
            )
            lines.append(f"  {'':>5}  --- {who}{why}")
            prev = who
        indent = "  " * col[who]
        head = f"  {i:>5}  {who:<{width}}  {indent}"
        accs = by_step.get(i, [])
        if s.op.kind == "drain":
            lines.append(head + f"its store to {s.op.label} becomes visible (drain)")
        elif not any(PointKind(a.kind) not in _QUIET for a in accs):
            lines.append(head + s.op.describe())
        back = s.thread.partition("~")[2] if ">" not in s.thread else ""
        for a in accs:
            if PointKind(a.kind) not in _QUIET:
                what = f"{a.kind} {a.label}"
                if back and a.kind in ("load", "load-acquire"):
                    what += f" -> an older value ({back} back, satisfied early)"
                    back = ""
                elif a.value is not None:
                    what += f" -> {a.value}" if a.kind == "load" else f" = {a.value}"
                fn = f"{a.fn}(): " if a.fn else ""
                lines.append(head + fn + what)
            for v in after.pop(a.seq, ()):
                lines.append(f"  {'':>5}  {'':<{width}}  {indent}!! {v.describe()}")
    for seq in sorted(after):
        for v in after[seq]:
            if seq < 0 or seq >= len(rec.accesses) or rec.accesses[seq].step <= upto:
                lines.append(f"  {'':>5}  {'':<{width}}  !! {v.describe()}")
    return "\n".join(lines)


def timeline_events(rec: Recorder) -> list[Event]:
    """The recorded accesses as :class:`~xensched.smp.Event` tuples, timed by their
    step (for :mod:`xensched.timeline`, with ``logical=True``): the picture numbers
    steps as the story and the replay file do. The accesses of one step (a lock and
    its acquisition, the invisible accesses run with it) share its time."""
    return [(a.step, a.thread, a.kind, a.label, a.fn) for a in rec.accesses]


def record(
    target: Target,
    schedule: Sequence[str] = (),
    *,
    search: SearchStrategy | None = None,
    max_steps: int | None = None,
) -> tuple[Execution, Recorder]:
    """Run one execution of ``target`` with a :class:`Recorder`: ``schedule`` again
    (played as segments, forgivingly), or what ``search`` chooses (a replay's
    :class:`~xensched.explore.replay.ReplaySchedule`, whose errors propagate)."""
    from xensched.explore.engine import DEFAULT_MAX_STEPS, Explorer
    from xensched.explore.shrink import SegmentSchedule, segments

    recorders: list[Recorder] = []

    def make(step_of: Callable[[], int]) -> list[Recorder]:
        recorders.append(Recorder(step_of))
        return recorders

    play = search if search is not None else SegmentSchedule(segments(schedule))
    play.begin(0)
    explorer = Explorer(target, play, runs=1, max_steps=max_steps or DEFAULT_MAX_STEPS)
    ex = explorer.execute(0, make)
    return ex, recorders[0]
