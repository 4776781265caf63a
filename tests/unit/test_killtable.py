"""The kill table's plan and its reading of reports (xensched.killtable), without
running a killer: a catalog mutant with no killer, a killer that sets what the table
adds, and a report of neither shape are each caught here."""

from __future__ import annotations

import json

import pytest

from xensched.errors import ConfigError
from xensched.killtable import (
    PLAN,
    Killer,
    KillReport,
    MutantResult,
    Outcome,
    load_plan,
    read_report,
)
from xensched.mutants import CATALOG, find_mutant


def test_every_mutant_of_the_catalog_has_a_killer() -> None:
    assert [m.name for m in CATALOG] == list(PLAN)
    for name, killers in PLAN.items():
        assert killers, name
        for k in killers:
            assert k.problem() == "", (name, k)
            assert k.argv[0] in ("reproduce", "explore"), (name, k)


def test_a_mutant_runs_its_own_protocol_and_the_intact_fix_the_fixed_one() -> None:
    k = Killer(("explore", "--scenario", "round-trip"))
    edit, part = find_mutant("no-deinit-pdata"), find_mutant("pointer-first")
    assert k.for_mutant(edit)[-4:] == (
        "--protocol",
        "fixed",
        "--mutant",
        "no-deinit-pdata",
    )
    assert k.for_mutant(part)[-4:-2] == ("--protocol", "fixed-without:pointer-last")
    assert k.for_intact() == (*k.argv, "--protocol", "fixed")


def test_the_barrier_is_killed_under_relaxed_only_away_from_arinc653() -> None:
    # Under relaxed the fix itself is flagged on ARINC 653 moves (its switch_sched has
    # no barrier in Xen 4.7): a killer there would flag the intact fix.
    for k in PLAN["no-barrier"]:
        assert "relaxed" in k.argv
        assert "arinc653" not in k.argv


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[", "not JSON"),
        ("[]", "an object of mutant names"),
        ('{"no-such": []}', "mutant 'no-such'"),
        ('{"legacy": "reproduce"}', "a list of killers"),
        ('{"legacy": [[]]}', "non-empty list"),
        ('{"legacy": [["--boot", "credit"]]}', "starts with a command name"),
        ('{"legacy": [["reproduce", "--json", "x"]]}', "may not set --json"),
        ('{"legacy": [["reproduce", "--mutant=legacy"]]}', "may not set --mutant"),
        (
            '{"legacy": [["reproduce", "--protocol", "fixed"]]}',
            "may not set --protocol",
        ),
        ('{"legacy": [["reproduce", 3]]}', "non-empty strings"),
    ],
)
def test_a_bad_plan_is_one_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as e:
        load_plan(text, "--plan p.json")
    assert str(e.value).startswith("--plan p.json: ")
    assert "\n" not in str(e.value)


def test_a_plan_replaces_the_killers_of_the_mutants_it_names() -> None:
    plan = load_plan(
        json.dumps({"legacy": [["explore", "--runs", "1"]], "irqs-on": []}), "p"
    )
    assert plan == {"legacy": (Killer(("explore", "--runs", "1")),), "irqs-on": ()}


def test_reports_of_both_shapes_are_read() -> None:
    reproduce = {
        "results": [
            {"problems": ["lock-mismatch", "assert"], "runs": 170},
            {"problems": ["assert"], "runs": 30},
        ]
    }
    assert read_report(reproduce) == (("lock-mismatch", "assert"), 200)
    explore = {"violations": [{"kind": "lock-order"}], "runs": 1}
    assert read_report(explore) == (("lock-order",), 1)
    stress = {"violations": [], "schedule": 10}
    assert read_report(stress) == ((), None)
    fuzz = {"violations": [{"kind": "assert"}], "examples": 12}
    assert read_report(fuzz) == (("assert",), 12)
    with pytest.raises(ValueError, match="neither"):
        read_report({"runs": 3})


def test_a_mutant_is_killed_by_its_first_flagging_killer_only() -> None:
    quiet = Outcome("xensched a", (), 5, 1.0)
    loud = Outcome("xensched b", ("assert", "lock-mismatch"), 7, 2.0)
    r = MutantResult("legacy", (quiet, loud)).to_json()
    assert (r["killed"], r["kind"], r["by"], r["runs"], r["seconds"]) == (
        True,
        "assert",
        "xensched b",
        7,
        2.0,
    )
    survived = MutantResult("legacy", (quiet, Outcome("xensched c", error="timed out")))
    r = survived.to_json()
    assert (r["killed"], r["kind"], r["by"], r["runs"], r["seconds"]) == (
        False,
        None,
        None,
        None,
        1.0,
    )
    assert survived.errors == ("timed out",)


def test_a_killer_that_could_not_run_fails_the_table_even_when_a_later_one_kills() -> (
    None
):
    # ok once looked at the intact runs' errors only: a mutant's first killer that
    # timed out (or exited 2), then a later one that killed it, left the table ok,
    # and `xensched mutate` exited 0 though a killer could not run.
    erred = Outcome("xensched a", error="timed out after 300s")
    loud = Outcome("xensched b", ("assert",), 7, 2.0)
    clean = Outcome("xensched b", (), 3, 1.0)

    def table(*tried: Outcome) -> KillReport:
        return KillReport(
            mutants=[MutantResult("legacy", tried)],
            intact=[clean],
            selected=["legacy"],
            intact_planned=1,
            complete=True,
        )

    assert table(loud).ok  # the control: killed, nothing failed
    flaky = table(erred, loud)
    assert flaky.mutants[0].killed
    assert flaky.errors == ["legacy: timed out after 300s"]
    assert not flaky.ok
