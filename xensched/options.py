"""Command-line option checks shared by ``xensched`` and the stress harness.

Mirrors nothing in Xen. Every bad value is one line on stderr, ``PROG: error: --OPTION
VALUE: what is allowed``, and exit status 2: :class:`Parser` drops argparse's usage
block (``--help`` still shows it), and the type factories here put the allowed range in
the message. The bounds themselves are the library's (``xensched.scenario``,
``xensched_stress.config``), so that a scenario file or a pytest marker is held to the
same ones.
"""

from __future__ import annotations

import argparse
import math
import re
from typing import TYPE_CHECKING, NoReturn

from xensched.errors import ConfigError
from xensched.host import Topology
from xensched.instruments import LOCKDEP_DEFAULT, RACE_DETECTOR_DEFAULT
from xensched.memory_model import MODELS
from xensched.mutants import CATALOG, Mutant, find_mutant
from xensched.seeds import parse_seed

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from xensched.scenario import Scenario

__all__ = [
    "MAX_SECONDS",
    "MEMORY_MODEL_HELP",
    "Parser",
    "add_lockdep_option",
    "add_memory_model_option",
    "add_mutant_option",
    "add_race_detector_option",
    "integer",
    "mutant",
    "mutant_protocol",
    "mutant_scenario",
    "probability",
    "refusal",
    "seconds",
    "seed",
]

#: The longest duration, timeout or interval any option takes: a day. Longer runs are
#: better made of several seeds, and a bound keeps ``inf`` and typos (``--duration
#: 1e9``) from starting a run that the machine cannot see to its end.
MAX_SECONDS = 86400.0

# argparse words a type's error as "argument --opt: MESSAGE"; a message that starts
# with this mark is the value's own verdict and reads better as "--opt VALUE: ...".
_OWN = "\x00"
_ARGUMENT = re.compile(r"argument (\S+): \x00", re.DOTALL)


class Parser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` whose usage errors are one line."""

    def error(self, message: str) -> NoReturn:
        message = _ARGUMENT.sub(r"\1 ", message).replace(_OWN, "")
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


def refusal(text: str, why: str) -> argparse.ArgumentTypeError:
    """What an argparse type raises to print ``--OPTION TEXT: WHY``."""
    return argparse.ArgumentTypeError(f"{_OWN}{text}: {why}")


def _refuse(text: str, allowed: str) -> NoReturn:
    raise refusal(text, f"must be {allowed}")


def integer(lo: int, hi: int) -> Callable[[str], int]:
    """An argparse type: an integer in ``[lo, hi]``."""

    def parse(text: str) -> int:
        try:
            value = int(text.strip(), 10)
        except ValueError:
            _refuse(repr(text), f"an integer in [{lo}, {hi}]")
        if not lo <= value <= hi:
            _refuse(text, f"an integer in [{lo}, {hi}]")
        return value

    return parse


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def seconds(hi: float = MAX_SECONDS, what: str = "seconds") -> Callable[[str], float]:
    """An argparse type: a finite number of seconds in ``(0, hi]``."""

    def parse(text: str) -> float:
        value = _float(text)
        if not (math.isfinite(value) and 0 < value <= hi):
            _refuse(
                text if text.strip() else repr(text),
                f"a finite number of {what} in (0, {hi:g}]",
            )
        return value

    return parse


def probability(text: str) -> float:
    """An argparse type: a probability, a finite number in ``[0, 1]``."""
    value = _float(text)
    if not 0.0 <= value <= 1.0:  # NaN fails this too
        _refuse(text if text.strip() else repr(text), "a probability in [0, 1]")
    return value


def seed(text: str) -> int:
    """An argparse type: a seed, as ``xensched.seeds.parse_seed`` takes it."""
    try:
        return parse_seed(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{_OWN}{e}") from None  # names the text


def topology(text: str) -> str:
    """An argparse type: a topology ``SxC`` (sockets x cores), kept as given."""
    try:
        Topology.parse(text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def add_progress_option(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
) -> None:
    """``--progress`` / ``--no-progress`` (``args.progress``: None means "when stderr
    is a terminal")."""
    prog = parser.add_mutually_exclusive_group()
    prog.add_argument(
        "--progress",
        dest="progress",
        action="store_true",
        default=None,
        help="show progress on stderr (default: when stderr is a terminal)",
    )
    prog.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress"
    )


#: What ``--memory-model`` (and the pytest option) says of each model, once.
MEMORY_MODEL_HELP = (
    "sc: sequential consistency, a load sees the last store; "
    "tso: x86, a FIFO store buffer per CPU, a later load may pass an earlier store; "
    "relaxed: Arm-like, stores drain out of order unless barriers, acquire/release "
    "or locks order them, and loads may be satisfied early "
    "(see xensched.memory_model)"
)


def add_memory_model_option(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    default: str | None = "sc",
    default_text: str | None = None,
) -> None:
    """``--memory-model sc|tso|relaxed`` (``args.memory_model``).

    ``default`` ``None`` means "not given" (the scenario's or the file's model then
    applies); ``default_text`` says what that is in the help.
    """
    shown = default_text if default_text is not None else str(default)
    parser.add_argument(
        "--memory-model",
        choices=list(MODELS),
        default=default,
        metavar="{" + ",".join(MODELS) + "}",
        help=f"the memory model the threads run under: {MEMORY_MODEL_HELP} "
        f"(default: {shown})",
    )


#: What ``--lockdep`` (and the pytest option) does, once.
LOCKDEP_HELP = (
    "check the lock order as Linux's lockdep does (xensched.lockdep): lock classes, "
    "the order graph, a lock-order violation for a cycle and irq-inversion for a "
    "class taken with IRQs both on and off, even when no deadlock happens; the "
    "report adds the acquisitions checked and the declared exceptions used"
)


def _add_instrument_option(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    flag: str,
    about: str,
    cost: str,
    default: bool | None,
    default_text: str | None,
) -> None:
    """``--FLAG`` / ``--no-FLAG`` for an optional checker; ``default`` None means
    "not given" (the caller decides: ``xensched replay`` follows the file), and
    ``default_text`` says what that is in the help."""
    shown = default_text or ("on" if default else "off")
    parser.add_argument(
        flag,
        action=argparse.BooleanOptionalAction,
        default=default,
        help=f"{about} (default: {shown}; {cost})",
    )


def add_lockdep_option(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    default: bool | None = LOCKDEP_DEFAULT,
    default_text: str | None = None,
) -> None:
    """``--lockdep`` / ``--no-lockdep`` (``args.lockdep``)."""
    _add_instrument_option(
        parser,
        "--lockdep",
        LOCKDEP_HELP,
        "it costs 10 to 30%% of schedule() throughput: README, Lock order",
        default,
        default_text,
    )


#: What ``--race-detector`` (and the pytest option) does, once.
RACE_DETECTOR_HELP = (
    "detect data races by happens-before (xensched.race_detector): two accesses to "
    "one field from different contexts, one a write, unordered by locks, atomics, "
    "release/acquire or barriers, are a data-race violation naming both; the report "
    "adds the accesses checked and each race found"
)


def add_race_detector_option(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    default: bool | None = RACE_DETECTOR_DEFAULT,
    default_text: str | None = None,
) -> None:
    """``--race-detector`` / ``--no-race-detector`` (``args.race_detector``)."""
    _add_instrument_option(
        parser,
        "--race-detector",
        RACE_DETECTOR_HELP,
        "off by default because it makes every load an interaction point, which "
        "costs schedule() throughput, see the README",
        default,
        default_text,
    )


def mutant(text: str) -> Mutant:
    """An argparse type: a mutant of :data:`xensched.mutants.CATALOG`."""
    try:
        return find_mutant(text)
    except ConfigError:
        raise refusal(
            repr(text),
            f"no such mutant; choose one of {', '.join(m.name for m in CATALOG)} "
            "(`xensched mutate --list`)",
        ) from None


class _Once(argparse.Action):
    """Store the value, refusing the option a second time: one mutant per run (a
    second ``--mutant`` would silently drop the first)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[object] | None,
        option_string: str | None = None,
    ) -> None:
        first = getattr(namespace, self.dest, None)
        if first is not None:
            parser.error(
                f"{option_string} given twice ({getattr(first, 'name', first)}, then "
                f"{getattr(values, 'name', values)}): one mutant per run (`xensched "
                "mutate` runs them all)"
            )
        setattr(namespace, self.dest, values)


def add_mutant_option(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
) -> None:
    """``--mutant NAME`` (``args.mutant``: a :class:`~xensched.mutants.Mutant` or None).

    A mutant is a protocol plus edits: combine it with ``--protocol`` through
    :func:`mutant_protocol`, which refuses the two together when they disagree.
    """
    parser.add_argument(
        "--mutant",
        type=mutant,
        action=_Once,
        default=None,
        metavar="NAME",
        help="run a mutant of the fix from the mutation catalog instead of the fix "
        "itself: its protocol (legacy, or the fixed switch without one part) and "
        "its edits of the model; `xensched mutate --list` names them (default: "
        "none)",
    )


def mutant_protocol(protocol: str | None, m: Mutant | None) -> str | None:
    """The protocol a run uses given ``--protocol`` (None: not given) and ``--mutant``.

    Raises:
        ConfigError: both given and the mutant's protocol is another one (a mutant
            that only edits the model runs on any protocol).
    """
    if m is None or m.protocol == "fixed":
        return protocol
    if protocol is not None and protocol != m.protocol:
        raise ConfigError(
            f"--mutant {m.name} runs --protocol {m.protocol}; it cannot be combined "
            f"with --protocol {protocol}"
        )
    return m.protocol


def mutant_scenario(sc: Scenario, m: Mutant | None) -> Scenario:
    """``sc`` running ``m``: a protocol mutant's protocol and, on any protocol, its
    edits added to the scenario's.

    Unlike :meth:`Mutant.apply`, an edit mutant keeps ``sc``'s protocol: ``--protocol
    legacy --mutant no-lock-recheck`` runs the edit on legacy (the commands set the
    protocol first: the one given, else the mutant's).
    """
    if m is None:
        return sc
    if m.protocol != "fixed":
        return m.apply(sc)
    return sc.replace(mutants=tuple(sorted(set(sc.mutants) | m.edits)))
