"""Timelines: a failing interleaving of the emulated host, drawn.

Mirrors nothing in Xen. It turns the events a report keeps (``(ns, context, kind,
label, Xen function)``, see :mod:`xensched.smp`) and a few :class:`Mark` instants (a
violation, a marked step) into a picture of who held which lock when:

- ``.json`` (any suffix but ``.svg``/``.html``): Chrome trace-event JSON, what
  Perfetto (ui.perfetto.dev) and ``chrome://tracing`` open;
- ``.svg``: a self-contained SVG, one lane per thread, for a mail or a bug report;
- ``.html``: a page holding that SVG, with nothing fetched from elsewhere.

One track per context: pCPU threads (``pcpuN``) first by number, then the toolstack
threads by name. A lock hold runs from ``acquired``/``trylock-ok`` to the ``unlock`` of
the same label on the same context, a wait from ``lock`` to ``acquired``, a critical
section from ``enter`` to ``exit``; every other point is an instant. The events of a
report are a window: a hold whose start is older than the window starts at the
window's first instant, and one still open at its end (a run stopped by a violation
stops mid-flight) ends at its last.

Left out: flow arrows between a release and the acquire it lets through, counters,
memory-model reorderings (no event says which store a load saw).
"""

from __future__ import annotations

import colorsys
import html
import json
import math
import os
import re
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from xensched.outputs import write_text_atomic

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from xensched.smp import Event
    from xensched.violation import Violation

#: The SVG keeps the last this many events of a longer trace (and says so): past a
#: few thousand, bars are thinner than a pixel and the file is no longer mail-sized.
MAX_SVG_EVENTS = 3000


@dataclass(frozen=True, slots=True)
class Mark:
    """An instant worth a red line: a violation, or a marked step."""

    #: in the time base of the events (perf_counter ns, or a step number)
    t: int
    context: str
    #: e.g. ``"lock-mismatch"``
    name: str
    #: the message
    detail: str


def violation_mark(v: Violation) -> Mark:
    """A :class:`Mark` for ``v`` at the time of its last event (0 without events)."""
    t = v.events[-1][0] if v.events else 0
    return Mark(t=t, context=v.context, name=v.kind.value, detail=v.describe())


# -- the model both outputs draw ---------------------------------------------------------

_HOLD = "hold"
_WAIT = "wait"
_SECTION = "section"

# Points that open or close a slice, or only announce a note that does (a trylock's
# outcome comes as trylock-ok/-failed): not drawn as instants.
_SLICE_KINDS = frozenset(
    {"lock", "acquired", "trylock", "trylock-ok", "unlock", "enter", "exit"}
)


@dataclass(frozen=True, slots=True)
class _Slice:
    track: int
    kind: str  # _HOLD, _WAIT or _SECTION
    label: str
    fn: str
    start: int
    end: int
    #: began before the first event kept (its opening point is not in the window)
    from_before: bool
    #: still open at the last event
    unfinished: bool
    #: sub-track (> 0 when it overlaps a slice of its track without nesting in it)
    sub: int = 0
    #: nesting depth within its sub-track
    depth: int = 0


@dataclass(frozen=True, slots=True)
class _Point:
    track: int
    t: int
    kind: str
    label: str
    fn: str


@dataclass(frozen=True, slots=True)
class _Model:
    tracks: tuple[str, ...]
    #: sub-tracks per track (at least 1)
    subs: tuple[int, ...]
    #: rows per sub-track of each track (its deepest nesting + 1)
    rows: tuple[tuple[int, ...], ...]
    slices: tuple[_Slice, ...]
    points: tuple[_Point, ...]
    marks: tuple[Mark, ...]
    first: int
    #: the end of the time shown: the last instant (plus one step when logical)
    end: int
    logical: bool


_PCPU = re.compile(r"pcpu(\d+)")


def _track_key(name: str) -> tuple[int, int, str]:
    m = _PCPU.fullmatch(name)
    if m is not None:
        return (0, int(m.group(1)), name)
    return (1, 0, name)


def _is_thread(name: str) -> bool:
    # "-" is the harness (a violation seen by no context); it gets no lane.
    return bool(name) and name != "-"


def _model(events: Sequence[Event], marks: Sequence[Mark], logical: bool) -> _Model:
    evs = sorted(events, key=lambda e: e[0])  # stable: same-time events keep order
    names = {e[1] for e in evs} | {m.context for m in marks if _is_thread(m.context)}
    tracks = tuple(sorted(names, key=_track_key))
    index = {name: i for i, name in enumerate(tracks)}
    times = [e[0] for e in evs] + [m.t for m in marks]
    first = min(times, default=0)
    last = max(times, default=0)
    # A step is one unit wide: a slice ends after the step that closes it.
    unit = 1 if logical else 0
    end = last + unit

    slices: list[_Slice] = []
    points: list[_Point] = []
    open_: dict[tuple[str, str, str], list[tuple[int, str]]] = {}

    def push(kind: str, ctx: str, label: str, t: int, fn: str) -> None:
        open_.setdefault((kind, ctx, label), []).append((t, fn))

    def pop(kind: str, ctx: str, label: str, t: int, fn: str, stop: int) -> None:
        started = open_.get((kind, ctx, label))
        if started:
            start, start_fn = started.pop()
            slices.append(
                _Slice(
                    index[ctx], kind, label, start_fn or fn, start, stop, False, False
                )
            )
        elif kind != _WAIT:
            slices.append(_Slice(index[ctx], kind, label, fn, first, stop, True, False))

    for t, ctx, kind, label, fn in evs:
        if kind == "lock":
            push(_WAIT, ctx, label, t, fn)
        elif kind == "acquired":
            pop(_WAIT, ctx, label, t, fn, t)
            push(_HOLD, ctx, label, t, fn)
        elif kind == "trylock-ok":
            push(_HOLD, ctx, label, t, fn)
        elif kind == "unlock":
            pop(_HOLD, ctx, label, t, fn, t + unit)
        elif kind == "enter":
            push(_SECTION, ctx, label, t, fn)
        elif kind == "exit":
            pop(_SECTION, ctx, label, t, fn, t + unit)
        elif kind not in _SLICE_KINDS:
            points.append(_Point(index[ctx], t, kind, label, fn))
    for (kind, ctx, label), started in open_.items():
        for start, fn in started:
            slices.append(_Slice(index[ctx], kind, label, fn, start, end, False, True))

    placed, subs, rows = _place(slices, len(tracks))
    return _Model(
        tracks=tracks,
        subs=subs,
        rows=rows,
        slices=placed,
        points=tuple(points),
        marks=tuple(sorted(marks, key=lambda m: m.t)),
        first=first,
        end=end,
        logical=logical,
    )


def _place(
    slices: Iterable[_Slice], n_tracks: int
) -> tuple[tuple[_Slice, ...], tuple[int, ...], tuple[tuple[int, ...], ...]]:
    """Give each slice a sub-track where it nests properly, and its depth there.

    Locks are not always released in the reverse order of taking them
    (``schedule_cpu_switch()`` drops the old lock while holding the new one); a trace
    viewer draws a thread's slices as a stack and mangles two that overlap without
    nesting, so the second goes to a sub-track of its own.
    """
    order = sorted(slices, key=lambda s: (s.track, s.start, -s.end, s.kind))
    stacks: list[list[list[int]]] = [[] for _ in range(n_tracks)]  # ends, per sub
    depths: list[list[int]] = [[] for _ in range(n_tracks)]
    out: list[_Slice] = []
    for s in order:
        subs = stacks[s.track]
        sub = len(subs)
        for k, stack in enumerate(subs):
            while stack and stack[-1] <= s.start:
                stack.pop()
            if not stack or stack[-1] >= s.end:
                sub = k
                break
        if sub == len(subs):
            subs.append([])
            depths[s.track].append(0)
        stack = subs[sub]
        depth = len(stack)
        stack.append(s.end)
        depths[s.track][sub] = max(depths[s.track][sub], depth + 1)
        out.append(
            _Slice(
                s.track,
                s.kind,
                s.label,
                s.fn,
                s.start,
                s.end,
                s.from_before,
                s.unfinished,
                sub,
                depth,
            )
        )
    rows = tuple(tuple(d) or (0,) for d in depths)
    return tuple(out), tuple(max(1, len(d)) for d in depths), rows


# -- Chrome trace-event JSON -------------------------------------------------------------

_PID = 1


def _ts(model: _Model, t: int) -> float:
    if model.logical:
        return float(t)
    return round((t - model.first) / 1000, 3)


def _dur(model: _Model, start: int, end: int) -> float:
    if model.logical:
        return float(end - start)
    return round((end - start) / 1000, 3)


def _slice_name(s: _Slice) -> str:
    return f"wait {s.label}" if s.kind == _WAIT else s.label


def _slice_args(s: _Slice) -> dict[str, str]:
    args = {"fn": s.fn} if s.fn else {}
    if s.from_before:
        args["note"] = "began before the first event kept"
    if s.unfinished:
        args["note"] = "still open at the last event"
    return args


def _by_ts(e: dict[str, object]) -> float:
    ts = e["ts"]
    assert isinstance(ts, float)
    return ts


def chrome_trace(
    events: Sequence[Event],
    marks: Sequence[Mark] = (),
    *,
    title: str = "xensched",
    logical: bool = False,
) -> dict[str, Any]:
    """The trace as Chrome trace-event JSON data (``{"traceEvents": [...], ...}``).

    One pid for the host, one tid per context (``thread_name`` metadata, pCPUs
    first); holds, waits and sections are ``"X"`` slices properly nested per tid,
    other points thread instants, marks global instants. Times are microseconds
    since the first event, or step numbers when ``logical``.
    """
    model = _model(events, marks, logical)
    tids: dict[tuple[int, int], int] = {}
    meta: list[dict[str, object]] = [
        {
            "ph": "M",
            "pid": _PID,
            "tid": 0,
            "name": "process_name",
            "args": {"name": title},
        }
    ]
    for i in range(len(model.tracks)):
        tids[i, 0] = i + 1
    extra = len(model.tracks) + 1
    for i, name in enumerate(model.tracks):
        for sub in range(model.subs[i]):
            if sub:
                tids[i, sub] = extra
                extra += 1
            meta.append(
                {
                    "ph": "M",
                    "pid": _PID,
                    "tid": tids[i, sub],
                    "name": "thread_name",
                    "args": {"name": name if not sub else f"{name} (overlap {sub})"},
                }
            )
            meta.append(
                {
                    "ph": "M",
                    "pid": _PID,
                    "tid": tids[i, sub],
                    "name": "thread_sort_index",
                    "args": {"sort_index": i * 1000 + sub},
                }
            )
    body: list[dict[str, object]] = []
    for s in model.slices:
        body.append(
            {
                "ph": "X",
                "pid": _PID,
                "tid": tids[s.track, s.sub],
                "ts": _ts(model, s.start),
                "dur": _dur(model, s.start, s.end),
                "name": _slice_name(s),
                "cat": s.kind,
                "args": _slice_args(s),
            }
        )
    for p in model.points:
        body.append(
            {
                "ph": "i",
                "s": "t",
                "pid": _PID,
                "tid": tids[p.track, 0],
                "ts": _ts(model, p.t),
                "name": p.kind,
                "cat": "point",
                "args": {"what": p.label, "fn": p.fn},
            }
        )
    index = {name: i for i, name in enumerate(model.tracks)}
    for m in model.marks:
        track = index.get(m.context)
        body.append(
            {
                "ph": "i",
                "s": "g",
                "pid": _PID,
                "tid": 0 if track is None else tids[track, 0],
                "ts": _ts(model, m.t),
                "name": m.name,
                "cat": "mark",
                "args": {"detail": m.detail, "context": m.context},
            }
        )
    body.sort(key=_by_ts)
    return {
        "traceEvents": meta + body,
        "displayTimeUnit": "ms" if logical else "ns",
        "otherData": {
            "title": title,
            "time": "steps" if logical else "microseconds since the first event",
            "events": len(events),
        },
    }


# -- SVG -------------------------------------------------------------------------------

_LABEL_W = 130
_MIN_PLOT_W = 1040
_MAX_PLOT_W = 9000
_PX_PER_EVENT = 8
_RIGHT = 20
_TOP = 56  # title, subtitle, mark names
_ROW_H = 14
_ROW_GAP = 2
_POINTS_H = 9
_PAD = 4
# Local monospace faces only: nothing may be fetched. DejaVu first, for renderers
# (resvg, rsvg) that do not resolve the generic family.
_FONTS = "DejaVu Sans Mono, Menlo, Consolas, monospace"
_CHAR_W = 6.0  # monospace at 10px, near enough to fit labels in bars
_MARK = "#d50000"
_POINT_COLORS = {
    "load": "#9e9e9e",
    "store": "#1565c0",
    "rmw": "#6a1b9a",
    "smp_mb": "#ef6c00",
    "smp_wmb": "#ef6c00",
    "smp_rmb": "#ef6c00",
    "trylock-failed": "#ad1457",
    "wait": "#6d4c41",
}
_OTHER_POINT = "#455a64"
_MAX_LEGEND_LOCKS = 16
_MAX_MARK_LINES = 6
# Characters XML 1.0 refuses even escaped (a label is any Python string).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _x(text: str) -> str:
    """``text`` for XML content or a quoted attribute."""
    return html.escape(_NOT_XML.sub("?", text), quote=True)


def lock_color(label: str) -> str:
    """A fill for lock ``label``, the same in every run and every file."""
    h = zlib.crc32(label.encode("utf-8")) / 0xFFFFFFFF
    r, g, b = colorsys.hls_to_rgb(h, 0.72, 0.65)
    return f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"


def _nice_step(span: float, ticks: int = 10) -> float:
    raw = max(span / ticks, 1e-9)
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return float(m * mag)
    return float(10 * mag)


def _fmt_num(v: float) -> str:
    return f"{v:.3f}".rstrip("0").rstrip(".")


def _fit(text: str, width: float) -> str:
    n = int((width - 4) / _CHAR_W)
    if n < 3:
        return ""
    return text if len(text) <= n else text[: n - 1] + "\u2026"


def svg(
    events: Sequence[Event],
    marks: Sequence[Mark] = (),
    *,
    title: str = "xensched",
    logical: bool = False,
) -> str:
    """The trace as a self-contained SVG document: one labelled lane per context.

    Holds are bars colored after the lock (:func:`lock_color`), waits hatched,
    critical sections outlined, other points ticks under the bars, marks red lines
    named at the top and listed under the legend. Of more than
    :data:`MAX_SVG_EVENTS` events, the last ones are drawn, and the title says so.
    """
    return _svg(events, marks, title=title, logical=logical, standalone=True)


def _svg(
    events: Sequence[Event],
    marks: Sequence[Mark],
    *,
    title: str,
    logical: bool,
    standalone: bool,
) -> str:
    kept = sorted(events, key=lambda e: e[0])
    heading = title
    if len(kept) > MAX_SVG_EVENTS:
        heading += f" (last {MAX_SVG_EVENTS} of {len(kept)} events)"
        kept = kept[-MAX_SVG_EVENTS:]
    model = _model(kept, marks, logical)
    span = max(model.end - model.first, 1)
    plot_w = max(_MIN_PLOT_W, min(_MAX_PLOT_W, _PX_PER_EVENT * len(kept)))

    def x(t: int) -> float:
        return _LABEL_W + (t - model.first) / span * plot_w

    # Rows of each lane: its sub-tracks one under the other, each as deep as its
    # deepest nesting.
    lane_y: list[float] = []
    lane_h: list[float] = []
    row_base: list[list[int]] = []
    y = float(_TOP)
    for i in range(len(model.tracks)):
        bases, n = [], 0
        for depth in model.rows[i]:
            bases.append(n)
            n += max(depth, 1)
        row_base.append(bases)
        h = _PAD + max(n, 1) * (_ROW_H + _ROW_GAP) + _POINTS_H + _PAD
        lane_y.append(y)
        lane_h.append(h)
        y += h
    plot_bottom = y
    width = _LABEL_W + plot_w + _RIGHT

    unit = "steps" if logical else "\u00b5s since the first event"
    sub = (
        f"{len(kept)} events on {len(model.tracks)} threads; time to the right, "
        f"in {unit}"
    )

    # -- axis
    step = _nice_step(span if logical else span / 1000)
    axis: list[str] = []
    v = 0.0
    while True:
        t = model.first + (v if logical else v * 1000)
        if t > model.end + 1e-9:
            break
        xt = x(round(t)) if logical else _LABEL_W + (v * 1000) / span * plot_w
        label = _fmt_num(t if logical else v)
        axis.append(
            f'<line x1="{xt:.1f}" y1="{_TOP - 4}" x2="{xt:.1f}" y2="{plot_bottom:.1f}" '
            'stroke="#e0e0e0" stroke-width="1"/>'
            f'<text x="{xt + 2:.1f}" y="{plot_bottom + 12:.1f}" fill="#616161">'
            f"{_x(label)}</text>"
        )
        v += step
        if len(axis) > 200:  # a degenerate step; never more ticks than that
            break

    # -- lanes, slices, points
    lanes: list[str] = []
    for i, name in enumerate(model.tracks):
        fill = "#fafafa" if i % 2 == 0 else "#f0f0f0"
        lanes.append(
            f'<rect x="0" y="{lane_y[i]:.1f}" width="{width}" height="{lane_h[i]:.1f}" '
            f'fill="{fill}"/>'
            f'<text x="6" y="{lane_y[i] + _PAD + _ROW_H - 2:.1f}" font-size="12" '
            f'font-weight="bold" class="lane">{_x(_fit(name, _LABEL_W + 4) or name)}'
            f"<title>{_x(name)}</title></text>"
        )
    bars: list[str] = []
    for s in model.slices:
        x0, x1 = x(s.start), x(s.end)
        w = max(x1 - x0, 1.5)
        row = row_base[s.track][s.sub] + s.depth
        y0 = lane_y[s.track] + _PAD + row * (_ROW_H + _ROW_GAP)
        color = lock_color(s.label)
        dash = ' stroke-dasharray="3 2"' if s.from_before or s.unfinished else ""
        tip = f"{s.kind} {s.label}" + (f" in {s.fn}()" if s.fn else "")
        note = _slice_args(s).get("note")
        if note:
            tip += f" ({note})"
        if s.kind == _HOLD:
            style = f'fill="{color}" stroke="#424242" stroke-width="0.5"{dash}'
            cls = "hold"
        elif s.kind == _WAIT:
            style = f'fill="url(#tl-hatch)" stroke="{color}" stroke-width="1.5"{dash}'
            cls = "wait"
        else:
            style = f'fill="none" stroke="#212121" stroke-width="1.5"{dash}'
            cls = "section"
        text = _fit(_slice_name(s), w)
        bars.append(
            f'<g class="{cls}"><title>{_x(tip)}</title>'
            f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{w:.1f}" height="{_ROW_H}" '
            f"{style}/>"
            + (
                f'<text x="{x0 + 2:.1f}" y="{y0 + _ROW_H - 3:.1f}">{_x(text)}</text>'
                if text
                else ""
            )
            + "</g>"
        )
    ticks: list[str] = []
    for p in model.points:
        px = x(p.t)
        y1 = lane_y[p.track] + lane_h[p.track] - _PAD
        tip = f"{p.kind} {p.label}" + (f" in {p.fn}()" if p.fn else "")
        pw = max(x(p.t + 1) - px, 1.0) if logical else 1.0
        ticks.append(
            f'<rect class="point" x="{px:.1f}" y="{y1 - _POINTS_H + 1:.1f}" '
            f'width="{pw:.1f}" height="{_POINTS_H - 1}" '
            f'fill="{_POINT_COLORS.get(p.kind, _OTHER_POINT)}">'
            f"<title>{_x(tip)}</title></rect>"
        )

    # -- marks
    index = {name: i for i, name in enumerate(model.tracks)}
    mark_lines: list[str] = []
    for m in model.marks:
        mx = x(m.t)
        where = f" on {m.context}" if m.context in index else ""
        # Near the right edge the name goes left of its line, not off the picture.
        right = mx + 3 + _CHAR_W * len(m.name) > width - 2
        tx, anchor = (mx - 3, ' text-anchor="end"') if right else (mx + 3, "")
        mark_lines.append(
            f'<g class="mark"><title>{_x(m.name + where + ": " + m.detail)}</title>'
            f'<line x1="{mx:.1f}" y1="{_TOP - 14}" x2="{mx:.1f}" '
            f'y2="{plot_bottom:.1f}" stroke="{_MARK}" stroke-width="2"/>'
            f'<text x="{tx:.1f}" y="{_TOP - 6}" fill="{_MARK}" '
            f'font-weight="bold"{anchor}>{_x(m.name)}</text></g>'
        )

    # -- legend, then the marks in words
    ly = plot_bottom + 30
    legend: list[str] = [
        f'<text x="6" y="{ly:.1f}" font-weight="bold">legend</text>',
    ]
    lx = float(_LABEL_W)
    samples: list[tuple[str, str]] = [
        (
            f'<rect x="{{x}}" y="{ly - 10:.1f}" width="24" height="{_ROW_H - 2}" '
            f'fill="{lock_color("schedule_lock")}" stroke="#424242" stroke-width="0.5"/>',
            "lock held",
        ),
        (
            f'<rect x="{{x}}" y="{ly - 10:.1f}" width="24" height="{_ROW_H - 2}" '
            'fill="url(#tl-hatch)" stroke="#757575" stroke-width="1.5"/>',
            "waiting for the lock",
        ),
        (
            f'<rect x="{{x}}" y="{ly - 10:.1f}" width="24" height="{_ROW_H - 2}" '
            'fill="none" stroke="#212121" stroke-width="1.5"/>',
            "critical section",
        ),
        (
            f'<rect x="{{x}}" y="{ly - 10:.1f}" width="24" height="{_ROW_H - 2}" '
            'fill="#ffffff" stroke="#424242" stroke-dasharray="3 2"/>',
            "cut by the window",
        ),
        (
            f'<line x1="{{xm}}" y1="{ly - 12:.1f}" x2="{{xm}}" y2="{ly + 2:.1f}" '
            f'stroke="{_MARK}" stroke-width="2"/>',
            "violation / mark",
        ),
    ]
    for shape, words in samples:
        shape = shape.replace("{xm}", f"{lx + 12:.1f}")
        legend.append(shape.replace("{x}", f"{lx:.1f}"))
        legend.append(f'<text x="{lx + 30:.1f}" y="{ly:.1f}">{_x(words)}</text>')
        lx += 44 + _CHAR_W * len(words)
    ly += 18
    lx = float(_LABEL_W)
    for kind, color in (
        ("load", _POINT_COLORS["load"]),
        ("store", _POINT_COLORS["store"]),
        ("rmw", _POINT_COLORS["rmw"]),
        ("barrier", _POINT_COLORS["smp_mb"]),
        ("trylock-failed", _POINT_COLORS["trylock-failed"]),
        ("wait", _POINT_COLORS["wait"]),
        ("other", _OTHER_POINT),
    ):
        legend.append(
            f'<rect x="{lx:.1f}" y="{ly - 9:.1f}" width="3" height="{_POINTS_H - 1}" '
            f'fill="{color}"/><text x="{lx + 8:.1f}" y="{ly:.1f}">{_x(kind)}</text>'
        )
        lx += 24 + _CHAR_W * len(kind)
    locks = sorted({s.label for s in model.slices if s.kind != _SECTION})
    if locks:
        ly += 20
        legend.append(f'<text x="6" y="{ly:.1f}" font-weight="bold">locks</text>')
        lx = float(_LABEL_W)
        shown = locks[:_MAX_LEGEND_LOCKS]
        for label in shown:
            w = 22 + _CHAR_W * len(label)
            if lx + w > width - _RIGHT and lx > _LABEL_W:
                lx = float(_LABEL_W)
                ly += 16
            legend.append(
                f'<rect x="{lx:.1f}" y="{ly - 9:.1f}" width="12" height="10" '
                f'fill="{lock_color(label)}" stroke="#424242" stroke-width="0.5"/>'
                f'<text x="{lx + 16:.1f}" y="{ly:.1f}">{_x(label)}</text>'
            )
            lx += w + 6
        if len(locks) > len(shown):
            ly += 16
            legend.append(
                f'<text x="{_LABEL_W}" y="{ly:.1f}">and {len(locks) - len(shown)} '
                "more locks</text>"
            )
    for m in model.marks:
        ly += 20
        at = _fmt_num(m.t if logical else (m.t - model.first) / 1000)
        head = f"{m.name}" + (f" on {m.context}" if m.context in index else "")
        head += f" at {'step ' + at if logical else '+' + at + ' µs'}:"
        legend.append(
            f'<text x="6" y="{ly:.1f}" fill="{_MARK}" font-weight="bold" '
            f'class="mark-detail">{_x(head)}</text>'
        )
        lines = m.detail.splitlines() or [""]
        for line in lines[:_MAX_MARK_LINES]:
            ly += 14
            legend.append(f'<text x="18" y="{ly:.1f}">{_x(line[:200])}</text>')
        if len(lines) > _MAX_MARK_LINES:
            ly += 14
            legend.append(f'<text x="18" y="{ly:.1f}">...</text>')
    height = ly + 14

    xmlns = ' xmlns="http://www.w3.org/2000/svg"' if standalone else ""
    return "".join(
        [
            f'<svg{xmlns} width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}" '
            f'font-family="{_FONTS}" font-size="10">',
            f"<title>{_x(heading)}</title>",
            '<defs><pattern id="tl-hatch" patternUnits="userSpaceOnUse" width="6" '
            'height="6" patternTransform="rotate(45)">'
            '<rect width="6" height="6" fill="#f5f5f5"/>'
            '<line x1="0" y1="0" x2="0" y2="6" stroke="#9e9e9e" stroke-width="2"/>'
            "</pattern></defs>",
            f'<rect width="{width:.0f}" height="{height:.0f}" fill="#ffffff"/>',
            f'<text x="6" y="16" font-size="14" font-weight="bold">{_x(heading)}</text>',
            f'<text x="6" y="30" fill="#616161">{_x(sub)}</text>',
            *lanes,
            *axis,
            *bars,
            *ticks,
            *mark_lines,
            *legend,
            "</svg>\n",
        ]
    )


def html_page(
    events: Sequence[Event],
    marks: Sequence[Mark] = (),
    *,
    title: str = "xensched",
    logical: bool = False,
) -> str:
    """A self-contained HTML page showing :func:`svg` (nothing fetched from elsewhere)."""
    picture = _svg(events, marks, title=title, logical=logical, standalone=False)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_x(title)}</title>"
        "<style>body{margin:12px;background:#fff;font-family:monospace}"
        "svg{display:block}</style></head>\n<body>\n"
        f"{picture}</body></html>\n"
    )


# -- files -------------------------------------------------------------------------------


def write_timeline(
    path: str | os.PathLike[str],
    events: Sequence[Event],
    marks: Sequence[Mark] = (),
    *,
    title: str = "xensched",
    logical: bool = False,
) -> None:
    """Write the timeline to ``path``, in the format its suffix names.

    ``.svg``: :func:`svg`; ``.html``: :func:`html_page`; anything else: Chrome
    trace-event JSON (:func:`chrome_trace`). Written as :mod:`xensched.outputs`
    writes a report: through a temporary file, synced, renamed into place.

    Raises:
        OSError: not written; the target is then unchanged.
    """
    name = os.fspath(path)
    suffix = os.path.splitext(name)[1].lower()
    if suffix == ".svg":
        text = svg(events, marks, title=title, logical=logical)
    elif suffix in (".html", ".htm"):
        text = html_page(events, marks, title=title, logical=logical)
    else:
        data = chrome_trace(events, marks, title=title, logical=logical)
        text = json.dumps(data, indent=1) + "\n"
    write_text_atomic(name, text)
