"""The fuzz machine as a pytest user takes it: subclass, set ``config``, run."""

from __future__ import annotations

import threading

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from tests._threads import threads_left
from xensched_stress.fuzz import FuzzConfig, FuzzFailure, XlFuzzMachine


class FixedOnThreeCpus(XlFuzzMachine):
    config = FuzzConfig(cpus=3, seed=3)


FixedOnThreeCpus.TestCase.settings = settings(
    max_examples=4,
    stateful_step_count=10,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
TestFixedOnThreeCpus = FixedOnThreeCpus.TestCase


class UnlockByCpu(XlFuzzMachine):
    config = FuzzConfig(protocol="fixed-without:unlock-by-pointer", seed=3)


def test_a_mutant_machine_fails_and_leaves_no_thread() -> None:
    before = set(threading.enumerate())
    with pytest.raises(FuzzFailure) as e:
        run_state_machine_as_test(
            UnlockByCpu,
            settings=settings(
                max_examples=50,
                stateful_step_count=15,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
                report_multiple_bugs=False,
                # No shrinking: every example starts threads, and what is tested
                # here is that the machine fails, not how small Hypothesis makes it.
                phases=[Phase.generate],
            ),
        )
    assert any(v.kind.value == "assert" for v in e.value.violations)
    left = threads_left(before)
    assert not left, [t.name for t in left]
