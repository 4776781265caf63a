"""``xensched.timeline``: holds, waits and sections per thread, as Chrome trace JSON,
SVG and HTML."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import pytest

from tests._timelines import assert_nested, thread_names
from xensched import timeline
from xensched.drivers.controlled import RoundRobin
from xensched.programs import ControlledRun
from xensched.scenario import round_trip
from xensched.timeline import (
    Mark,
    chrome_trace,
    html_page,
    lock_color,
    svg,
    violation_mark,
    write_timeline,
)

from ._traces import held_and_waited

if TYPE_CHECKING:
    from pathlib import Path

    from xensched.smp import Event

SVG = "{http://www.w3.org/2000/svg}"
POOL, SD1, RUNQ = "cpupool_lock", "schedule_data[1]._lock", "credit2@p1.runq[0]"

#: xl holds cpupool_lock (after waiting 1 us); pcpu1 waits 2 us for its
#: schedule_lock, then holds it to the end (still held: the run stopped there), with
#: a runqueue section inside; pcpu0 only loads.
EVENTS: list[Event] = [
    (1000, "xl", "lock", POOL, "cpupool_cpu_remove"),
    (2000, "xl", "acquired", POOL, "cpupool_cpu_remove"),
    (3000, "pcpu1", "lock", SD1, "schedule"),
    (4000, "pcpu0", "load", "schedule_data[0].curr", "schedule"),
    (5000, "pcpu1", "acquired", SD1, "schedule"),
    (6000, "pcpu1", "enter", RUNQ, "runq_insert"),
    (7000, "pcpu1", "store", "d1v0->processor", "runq_insert"),
    (8000, "pcpu1", "exit", RUNQ, "runq_insert"),
    (9000, "xl", "unlock", POOL, "cpupool_cpu_remove"),
    (10000, "pcpu1", "smp_mb", "pcpu1", "schedule"),
]
DETAIL = 'schedule() ran under <the wrong> lock & "more"\nsecond line'
MARK = Mark(t=10000, context="pcpu1", name="lock-mismatch", detail=DETAIL)


def _slices(trace: dict[str, Any]) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """(thread, slice name) -> [(ts, dur)], in order."""
    names = thread_names(trace)
    out: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for e in trace["traceEvents"]:
        if e["ph"] == "X":
            out[names[e["tid"]], e["name"]].append((e["ts"], e["dur"]))
    return dict(out)


# -- Chrome trace JSON ------------------------------------------------------------------


def test_chrome_trace_is_json_with_one_named_thread_per_context() -> None:
    trace = chrome_trace(EVENTS, [MARK], title="t <1>")
    assert json.loads(json.dumps(trace)) == trace
    assert trace["displayTimeUnit"] == "ns"
    events = trace["traceEvents"]
    assert isinstance(events, list)
    assert {e["pid"] for e in events} == {1}
    [process] = [e for e in events if e["name"] == "process_name"]
    assert process["args"] == {"name": "t <1>"}
    names = thread_names(trace)
    order = {
        e["tid"]: e["args"]["sort_index"]
        for e in events
        if e["ph"] == "M" and e["name"] == "thread_sort_index"
    }
    assert sorted(names.values(), key=lambda n: order[_tid(names, n)]) == [
        "pcpu0",
        "pcpu1",
        "xl",
    ]


def _tid(names: dict[int, str], name: str) -> int:
    [tid] = [t for t, n in names.items() if n == name]
    return tid


def test_holds_waits_and_sections_are_slices_with_their_times() -> None:
    trace = chrome_trace(EVENTS, [MARK])
    # Microseconds since the first event (1000 ns).
    assert _slices(trace) == {
        ("xl", f"wait {POOL}"): [(0.0, 1.0)],
        ("xl", POOL): [(1.0, 7.0)],
        ("pcpu1", f"wait {SD1}"): [(2.0, 2.0)],
        # Never released: closed at the last instant.
        ("pcpu1", SD1): [(4.0, 5.0)],
        ("pcpu1", RUNQ): [(5.0, 2.0)],
    }
    by_name = {e["name"]: e for e in trace["traceEvents"] if e["ph"] == "X"}
    assert by_name[POOL]["args"] == {"fn": "cpupool_cpu_remove"}
    assert by_name[POOL]["cat"] == "hold"
    assert by_name[f"wait {SD1}"]["cat"] == "wait"
    assert by_name[RUNQ]["cat"] == "section"
    assert by_name[SD1]["args"]["note"] == "still open at the last event"
    assert_nested(trace)


def test_other_points_are_thread_instants_with_their_label() -> None:
    trace = chrome_trace(EVENTS)
    names = thread_names(trace)
    points = [
        (names[e["tid"]], e["name"], e["ts"], e["args"]["what"])
        for e in trace["traceEvents"]
        if e["ph"] == "i" and e["cat"] == "point"
    ]
    assert points == [
        ("pcpu0", "load", 3.0, "schedule_data[0].curr"),
        ("pcpu1", "store", 6.0, "d1v0->processor"),
        ("pcpu1", "smp_mb", 9.0, "pcpu1"),
    ]
    assert all(e["s"] == "t" for e in trace["traceEvents"] if e.get("cat") == "point")


def test_a_mark_is_a_global_instant_named_after_its_kind() -> None:
    trace = chrome_trace(EVENTS, [MARK])
    [mark] = [e for e in trace["traceEvents"] if e.get("cat") == "mark"]
    assert (mark["ph"], mark["s"], mark["name"]) == ("i", "g", "lock-mismatch")
    assert mark["ts"] == 9.0
    assert mark["args"] == {"detail": DETAIL, "context": "pcpu1"}
    assert thread_names(trace)[mark["tid"]] == "pcpu1"


def test_pcpus_come_first_by_number_then_the_otherthread_names() -> None:
    events: list[Event] = [
        (1, name, "load", "x", "")
        for name in ("xl0", "pcpu10", "xl-mover", "pcpu2", "pcpu1")
    ]
    trace = chrome_trace(events)
    names = thread_names(trace)
    assert [names[t] for t in sorted(names)] == [
        "pcpu1",
        "pcpu2",
        "pcpu10",
        "xl-mover",
        "xl0",
    ]


def test_locks_released_out_of_order_go_to_a_second_thread_row() -> None:
    # schedule_cpu_switch() style: take a, take b, drop a, drop b.
    events: list[Event] = [
        (0, "pcpu0", "acquired", "a", "f"),
        (10, "pcpu0", "acquired", "b", "f"),
        (20, "pcpu0", "unlock", "a", "f"),
        (30, "pcpu0", "unlock", "b", "f"),
    ]
    trace = chrome_trace(events, logical=True)
    assert_nested(trace)
    assert _slices(trace) == {
        ("pcpu0", "a"): [(0.0, 21.0)],
        ("pcpu0 (overlap 1)", "b"): [(10.0, 21.0)],
    }


def test_a_release_without_its_acquire_starts_at_the_first_event() -> None:
    # The window of a report starts mid-flight: the acquire is older than it.
    events: list[Event] = [
        (5000, "pcpu0", "load", "x", ""),
        (8000, "pcpu0", "unlock", "l", "g"),
        (9000, "pcpu0", "exit", "s", "g"),
    ]
    trace = chrome_trace(events)
    assert _slices(trace) == {
        ("pcpu0", "l"): [(0.0, 3.0)],
        ("pcpu0", "s"): [(0.0, 4.0)],
    }
    notes = {e["args"].get("note") for e in trace["traceEvents"] if e["ph"] == "X"}
    assert notes == {"began before the first event kept"}
    assert_nested(trace)


def test_trylocks_and_a_recursive_lock() -> None:
    events: list[Event] = [
        (0, "pcpu0", "trylock", "r", "f"),
        (1, "pcpu0", "trylock-ok", "r", "f"),
        (2, "pcpu0", "lock", "r", "g"),
        (3, "pcpu0", "acquired", "r", "g"),
        (4, "pcpu0", "unlock", "r", "g"),
        (5, "pcpu0", "trylock", "q", "f"),
        (6, "pcpu0", "trylock-failed", "q", "f"),
        (7, "pcpu0", "unlock", "r", "f"),
    ]
    trace = chrome_trace(events, logical=True)
    assert _slices(trace) == {
        ("pcpu0", "r"): [(1.0, 7.0), (3.0, 2.0)],
        ("pcpu0", "wait r"): [(2.0, 1.0)],
    }
    points = [e["name"] for e in trace["traceEvents"] if e.get("cat") == "point"]
    assert points == ["trylock-failed"]
    assert_nested(trace)


def test_logical_time_is_step_numbers() -> None:
    # Steps keep their numbers, one unit each; the wait ends at the acquisition.
    events: list[Event] = [
        (s, c, k, lbl, f) for s, (_, c, k, lbl, f) in enumerate(EVENTS)
    ]
    trace = chrome_trace(events, logical=True)
    assert trace["displayTimeUnit"] == "ms"
    slices = _slices(trace)
    assert slices[("xl", POOL)] == [(1.0, 8.0)]  # acquired at 1, released at 8
    assert slices[("xl", f"wait {POOL}")] == [(0.0, 1.0)]
    assert slices[("pcpu1", SD1)] == [(4.0, 6.0)]  # open: to the end of step 9
    assert_nested(trace)


def test_violation_mark_sits_at_its_last_event() -> None:
    v = held_and_waited()
    mark = violation_mark(v)
    assert mark.t == v.events[-1][0]
    assert (mark.name, mark.context) == (v.kind.value, v.context)
    assert mark.detail == v.describe()
    trace = chrome_trace(v.events, [mark])
    slices = _slices(trace)
    # pcpu1 spins on test.a when the run stops: a wait left open.
    assert ("pcpu1", "wait test.a") in slices
    assert ("pcpu0", "test.a") in slices
    assert_nested(trace)


# -- SVG and HTML ---------------------------------------------------------------------


def _svg_root(text: str) -> ET.Element:
    root = ET.fromstring(text)
    assert root.tag == f"{SVG}svg"
    return root


def _texts(root: ET.Element) -> list[str]:
    return ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]


def test_svg_has_a_labelled_lane_per_thread_and_a_bar_per_hold() -> None:
    root = _svg_root(svg(EVENTS, [MARK], title="legacy & <seed 5>"))
    lanes = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "lane"]
    assert lanes == ["pcpu0", "pcpu1", "xl"]
    groups = list(root.iter(f"{SVG}g"))
    holds = [g for g in groups if g.get("class") == "hold"]
    assert len(holds) == 2
    fills = {r.get("fill") for g in holds for r in g.iter(f"{SVG}rect")}
    assert fills == {lock_color(POOL), lock_color(SD1)}
    assert len([g for g in groups if g.get("class") == "wait"]) == 2
    [section] = [g for g in groups if g.get("class") == "section"]
    assert section.find(f"{SVG}rect") is not None
    texts = _texts(root)
    assert "legacy & <seed 5>" in texts  # escaped in the file, intact when parsed
    assert "legend" in texts


def test_svg_shows_the_mark_and_its_message() -> None:
    root = _svg_root(svg(EVENTS, [MARK]))
    [mark] = [g for g in root.iter(f"{SVG}g") if g.get("class") == "mark"]
    line = mark.find(f"{SVG}line")
    assert line is not None
    assert line.get("stroke") == "#d50000"
    texts = _texts(root)
    assert "lock-mismatch" in texts
    assert 'schedule() ran under <the wrong> lock & "more"' in texts
    assert "second line" in texts


def test_svg_escapes_what_xml_refuses() -> None:
    events: list[Event] = [
        (0, "pcpu0", "acquired", "a\x01<]]>&", "f\x7f"),
        (5, "pcpu0", "unlock", "a\x01<]]>&", "f"),
    ]
    root = _svg_root(svg(events, [Mark(5, "-", "x&y", "\x00")]))
    assert "x&y" in _texts(root)


def test_lock_colors_are_stable_and_distinct() -> None:
    assert lock_color(SD1) == lock_color(SD1)
    assert lock_color(SD1) != lock_color("schedule_data[2]._lock")
    assert lock_color(SD1).startswith("#")
    assert len(lock_color(SD1)) == 7


def test_a_long_trace_keeps_its_last_events_and_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(timeline, "MAX_SVG_EVENTS", 20)
    events: list[Event] = [(t, "pcpu0", "load", f"x{t}", "") for t in range(50)]
    root = _svg_root(svg(events, title="long"))
    assert "long (last 20 of 50 events)" in _texts(root)
    tips = {"".join(t.itertext()) for t in root.iter(f"{SVG}title")}
    assert "load x49" in tips
    assert "load x29" not in tips
    width = float(root.get("width", "0"))
    assert 1000 < width < 1400  # mail-sized


def test_html_embeds_the_svg_and_fetches_nothing() -> None:
    page = html_page(EVENTS, [MARK], title="a <b>")
    assert page.startswith("<!DOCTYPE html>")
    assert "<svg " in page
    assert "</svg>" in page
    assert "<title>a &lt;b&gt;</title>" in page
    assert "http" not in page
    assert "<script" not in page
    assert "url(" not in page.replace("url(#tl-hatch)", "")


# -- files ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["t.json", "t.trace", "t.svg", "t.html", "T.SVG"])
def test_write_timeline_picks_the_format_from_the_suffix(
    tmp_path: Path, name: str
) -> None:
    path = tmp_path / name
    write_timeline(path, EVENTS, [MARK], title="w")
    text = path.read_text(encoding="utf-8")
    suffix = name.rsplit(".", 1)[1].lower()
    if suffix == "svg":
        _svg_root(text)
    elif suffix == "html":
        assert text.startswith("<!DOCTYPE html>")
        assert "<svg " in text
    else:
        assert json.loads(text)["traceEvents"]
    assert os.listdir(tmp_path) == [name]  # no temporary left behind


def test_write_timeline_fails_whole(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_timeline(tmp_path / "missing" / "t.svg", EVENTS)
    target = tmp_path / "t.json"
    target.write_text("old", encoding="utf-8")
    target.chmod(0o640)
    write_timeline(target, EVENTS)
    assert json.loads(target.read_text(encoding="utf-8"))["traceEvents"]
    assert target.stat().st_mode & 0o777 == 0o640  # a file replaced keeps its mode


def test_empty_traces_still_draw() -> None:
    assert chrome_trace([])["traceEvents"]
    _svg_root(svg([]))
    root = _svg_root(svg([], [Mark(0, "-", "deadlock", "no events kept")]))
    assert "deadlock" in _texts(root)


# -- a real run -----------------------------------------------------------------------


def test_a_controlled_round_trip_draws() -> None:
    run = ControlledRun(round_trip(protocol="legacy"))
    run.run(RoundRobin())
    events = sorted(e for c in run.host.bus.contexts for e in c.recent_events())
    assert events
    contexts = {e[1] for e in events}
    mark = Mark(events[-1][0], "pcpu1", "step", "the last step")
    trace = chrome_trace(events, [mark], title="round-trip")
    assert json.loads(json.dumps(trace)) == trace
    assert set(thread_names(trace).values()) >= contexts
    assert any(e["ph"] == "X" and e["cat"] == "hold" for e in trace["traceEvents"])
    assert_nested(trace)
    root = _svg_root(svg(events, [mark], title="round-trip"))
    lanes = {t.get("class") for t in root.iter(f"{SVG}text")}
    assert "lane" in lanes
    assert len([g for g in root.iter(f"{SVG}g") if g.get("class") == "hold"]) > 0
