"""The result of a stress run: figures, violations, the deadlock dump, and how to rerun.

A :class:`StressReport` is data. :meth:`StressReport.render` gives the human report
(what broke first, per-pCPU figures, locks, the process), :meth:`StressReport.to_json`
the same as JSON for ``--json FILE``, and :attr:`StressReport.exit_code` the CLI's
verdict: 0 no violation, 1 violations, 3 deadlock (2, a usage error, comes from the CLI
before any run).
"""

from __future__ import annotations

import enum
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from .config import rerun_command

if TYPE_CHECKING:
    from collections.abc import Mapping

    from xensched import SpinLockStats, Violation
    from xensched.instruments import LockdepSummary, RaceSummary
    from xensched.smp import Event

    from .config import StressConfig

EXIT_OK = 0
EXIT_VIOLATIONS = 1
EXIT_USAGE = 2
EXIT_DEADLOCK = 3
#: The harness itself failed (the threads could not be started): no verdict.
EXIT_ERROR = 5


class StopReason(enum.Enum):
    """Why a run ended; the value is what reports print."""

    DURATION = "duration reached"
    OPS = "ops reached"
    VIOLATION = "violation found"
    DEADLOCK = "deadlock"
    INTERRUPTED = "interrupted"
    ERROR = "harness error"

    def describe(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class ProcessFigures:
    """The process's own figures over the run, from psutil (``None``: unavailable)."""

    cpu_percent: float | None = None
    rss_bytes: int | None = None
    peak_rss_bytes: int | None = None
    threads: int | None = None
    ctx_switches_voluntary: int | None = None
    ctx_switches_involuntary: int | None = None


@dataclass(frozen=True)
class StressReport:
    """Everything a stress run found; see :meth:`render` and :meth:`to_json`."""

    seed: int
    config: StressConfig
    violations: tuple[Violation, ...]
    deadlock: str | None
    interrupted: bool
    stop_reason: StopReason
    elapsed: float
    #: ``schedule()`` calls per pCPU, index = pCPU
    schedule_counts: tuple[int, ...]
    lock_stats: tuple[SpinLockStats, ...]
    #: completed pCPU moves between pools (cpu-remove then cpu-add)
    switches: int
    #: completed ``cpupool-migrate`` of a domain
    domain_moves: int
    #: vCPU operations done by the pCPU threads: wake, sleep, migrate
    vcpu_ops: Mapping[str, int] = field(default_factory=dict)
    #: xl retries of a refused operation, by errno name (EAGAIN, EBUSY)
    xl_retries: Mapping[str, int] = field(default_factory=dict)
    #: operations refused for good, by errno name
    xl_refusals: Mapping[str, int] = field(default_factory=dict)
    #: seconds from the start to the first violation
    first_violation_after: float | None = None
    delays_injected: int = 0
    process: ProcessFigures = field(default_factory=ProcessFigures)
    #: interpreter and driver, so a reader knows which mode a result came from
    python: str = ""
    driver: str = ""
    #: the pools at the start, ``(name, sched, cpus)``
    pools: tuple[tuple[str, str, tuple[int, ...]], ...] = ()
    #: threads still alive after the bounded joins (should always be empty)
    stragglers: tuple[str, ...] = ()
    #: whether the threads started; False: the run ended during set-up or its start
    #: failed, and no ``schedule()`` call was made
    threads_started: bool = True
    #: what went wrong in the harness itself (``stop_reason`` ERROR), else None
    error: str | None = None
    #: the last few interaction points of every context when the first violation
    #: was recorded (what the other threads were in the middle of)
    first_context: tuple[Event, ...] = ()
    #: violations past ``config.max_violations``, counted by kind but not kept
    violations_dropped: Mapping[str, int] = field(default_factory=dict)
    #: what lockdep checked (``config.lockdep``), or None when it was off
    lockdep: LockdepSummary | None = None
    #: what the race detector checked (``config.race_detector``), or None when off
    race_detector: RaceSummary | None = None

    # -- derived figures ------------------------------------------------------------
    @property
    def exit_code(self) -> int:
        """0 no violation, 1 violations, 3 deadlock, 5 harness error."""
        if self.error is not None and not self.violations_total:
            return EXIT_ERROR
        if self.deadlock is not None:
            return EXIT_DEADLOCK
        if self.violations_total:
            return EXIT_VIOLATIONS
        return EXIT_OK

    @property
    def total_ops(self) -> int:
        return sum(self.schedule_counts)

    @property
    def ops_per_s(self) -> float:
        return self.total_ops / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def rates(self) -> tuple[float, ...]:
        """``schedule()`` calls per second, per pCPU."""
        t = self.elapsed
        return tuple(c / t if t > 0 else 0.0 for c in self.schedule_counts)

    @property
    def violations_total(self) -> int:
        """Every violation found: those kept in full and those only counted."""
        return len(self.violations) + sum(self.violations_dropped.values())

    @property
    def violations_by_kind(self) -> dict[str, int]:
        """Every violation found, by kind (kept in full or not)."""
        counts = Counter(v.kind.value for v in self.violations)
        counts.update(self.violations_dropped)
        return dict(counts)

    @property
    def rerun(self) -> str:
        """The ``xensched stress ...`` command that reruns this run's workload."""
        return rerun_command(self.config)

    @property
    def reproduce(self) -> str:
        """Deprecated: :attr:`rerun` (a rerun is a new sample, not a replay)."""
        warnings.warn(
            "StressReport.reproduce is deprecated; use StressReport.rerun",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.rerun

    # -- JSON -------------------------------------------------------------------------
    def to_json(self) -> dict[str, object]:
        """The report as JSON-ready data (``--json FILE``)."""
        cfg = asdict(self.config)
        cfg["pools"] = [p.spec() for p in self.config.pools]
        # The model that ran (a scenario's own, unless the config overrode it).
        cfg["memory_model"] = self.config.run_memory_model
        if self.config.scenario is not None:
            # The scenario's own JSON, which `--scenario` and from_json read back.
            cfg["scenario"] = self.config.scenario.to_dict()
        return {
            "seed": self.seed,
            "mutant": self.config.mutant,
            "exit_code": self.exit_code,
            "stop_reason": self.stop_reason.value,
            "interrupted": self.interrupted,
            "elapsed": self.elapsed,
            "config": cfg,
            "rerun": self.rerun,
            "python": self.python,
            "driver": self.driver,
            "pools": [
                {"name": n, "sched": s, "cpus": list(c)} for n, s, c in self.pools
            ],
            "schedule": {
                "total": self.total_ops,
                "per_s": self.ops_per_s,
                "per_cpu": [
                    {"cpu": cpu, "count": n, "per_s": r}
                    for cpu, (n, r) in enumerate(
                        zip(self.schedule_counts, self.rates, strict=True)
                    )
                ],
            },
            "switches": self.switches,
            "domain_moves": self.domain_moves,
            "vcpu_ops": dict(self.vcpu_ops),
            "xl_retries": dict(self.xl_retries),
            "xl_refusals": dict(self.xl_refusals),
            "retries": sum(s.retries for s in self.lock_stats),
            "locks": [
                {
                    "name": s.name,
                    "owner": s.owner,
                    "acquisitions": s.acquisitions,
                    "contended": s.contended,
                    "trylock_failures": s.trylock_failures,
                    "retries": s.retries,
                }
                for s in self.lock_stats
            ],
            "violations_by_kind": self.violations_by_kind,
            "violations_total": self.violations_total,
            # Past config.max_violations: counted, not kept (bounds the report).
            "violations_dropped": dict(self.violations_dropped),
            "first_violation_after": self.first_violation_after,
            "violations": [v.to_json() for v in self.violations],
            "first_context": [
                {"context": e[1], "point": e[2], "what": e[3], "in": e[4]}
                for e in self.first_context
            ],
            "deadlock": self.deadlock,
            "delays_injected": self.delays_injected,
            "process": asdict(self.process),
            "stragglers": list(self.stragglers),
            "threads_started": self.threads_started,
            "error": self.error,
            "lockdep": self.lockdep.to_json() if self.lockdep is not None else None,
            "race_detector": (
                self.race_detector.to_json() if self.race_detector is not None else None
            ),
        }

    # -- the human report ---------------------------------------------------------------
    def render(self, *, max_locks: int = 12) -> str:
        """The human report: headline, figures, violations with their events, verdict."""
        cfg = self.config
        out: list[str] = []
        pools = ", ".join(f"{n}={s}[{','.join(map(str, c))}]" for n, s, c in self.pools)
        mutant = f" mutant={cfg.mutant}" if cfg.mutant is not None else ""
        if cfg.scenario is None:
            out.append(
                f"xensched stress: seed={self.seed}{mutant} "
                f"protocol={cfg.run_protocol} "
                f"memory_model={cfg.run_memory_model} boot={cfg.boot} pCPUs={cfg.cpus} pools: {pools or '-'}; "
                f"{cfg.domains} domain(s) x {cfg.vcpus} vCPU(s)"
            )
        else:
            sc = cfg.scenario
            out.append(
                f"xensched stress: seed={self.seed}{mutant} scenario {sc.name}: "
                f"protocol={cfg.run_protocol} memory_model={cfg.run_memory_model} "
                f"boot={sc.boot} pCPUs={sc.cpus} pools: "
                f"{pools or '-'}; {len(sc.domains)} domain(s), "
                f"{len(sc.threads)} thread program(s)"
            )
        if self.python or self.driver:
            out.append(f"  {self.python}; {self.driver}")
        headline = self._headline()
        if headline:
            out.append(headline)
        out.append(
            f"stopped: {self.stop_reason.describe()} after {self.elapsed:.2f}s"
            + (
                f" (first violation at {self.first_violation_after:.3f}s)"
                if self.first_violation_after is not None
                else ""
            )
        )
        out.append("")
        out.append("schedule() per pCPU:")
        for cpu, (n, r) in enumerate(
            zip(self.schedule_counts, self.rates, strict=True)
        ):
            out.append(f"  pcpu{cpu:<4d} {n:>10d}  {r:>10.0f}/s")
        out.append(f"  {'total':<8s} {self.total_ops:>10d}  {self.ops_per_s:>10.0f}/s")
        out.append(
            f"pool moves: {self.switches} pCPU switches, {self.domain_moves} "
            f"domain moves; xl retries: {_counts(self.xl_retries)}; "
            f"refused: {_counts(self.xl_refusals)}"
        )
        out.append(f"vCPU traffic: {_counts(self.vcpu_ops)}")
        if self.delays_injected:
            out.append(f"injected delays: {self.delays_injected}")
        out.extend(self._render_locks(max_locks))
        if self.lockdep is not None:
            out.extend(self.lockdep.lines())
        if self.race_detector is not None:
            out.extend(self.race_detector.lines())
        out.append("")
        out.extend(self._render_violations())
        if self.deadlock is not None:
            out.append("")
            out.append("deadlock:")
            out.extend(f"  {line}" for line in self.deadlock.splitlines())
        out.append("")
        out.append(f"process: {self._render_process()}")
        if self.stragglers:
            out.append(f"WARNING: threads still alive: {', '.join(self.stragglers)}")
        if self.error is not None:
            out.append(f"ERROR: harness error: {self.error}")
        if not self.threads_started:
            out.append(
                "WARNING: no thread ran: the run ended before its threads started, "
                "no schedule() call was made, and no violation means nothing was tested"
            )
        out.append("")
        out.append(
            f"result: {_verdict(self.exit_code)} (exit {self.exit_code}); "
            f"stop reason: {self.stop_reason.describe()}; seed={self.seed}"
        )
        out.append(f"rerun: {self.rerun}")
        return "\n".join(out)

    def _headline(self) -> str:
        """xdist style: who failed, doing what."""
        if not self.violations:
            return ""
        v = self.violations[0]
        who = v.context if v.context != "-" else "the harness"
        cpu = f" on cpu{v.cpu}" if v.cpu is not None else ""
        return (
            f"{who} hit {v.kind.value}{cpu} in {v.where}() "
            f"(seed={self.seed}): {v.message.splitlines()[0] if v.message else ''}"
        )

    def _render_locks(self, max_locks: int) -> list[str]:
        retries = sum(s.retries for s in self.lock_stats)
        busy = sorted(
            (s for s in self.lock_stats if s.contended or s.retries or s.owner),
            key=lambda s: (-(s.contended + s.retries), s.name),
        )
        out = [
            f"locks: {len(self.lock_stats)}, retry-on-change loops taken: {retries}",
        ]
        if busy:
            out.append("  contended / retries / acquisitions  lock")
        for s in busy[:max_locks]:
            owner = f"  (held by {s.owner})" if s.owner else ""
            out.append(
                f"  {s.contended:>9d} / {s.retries:>7d} / {s.acquisitions:>12d}  "
                f"{s.name}{owner}"
            )
        if len(busy) > max_locks:
            out.append(f"  ... {len(busy) - max_locks} more contended locks")
        return out

    def _render_violations(self) -> list[str]:
        if not self.violations:
            return ["violations: none"]
        by_kind = self.violations_by_kind
        out = [
            f"violations: {self.violations_total} ("
            + ", ".join(f"{k} {n}" for k, n in by_kind.items())
            + ")"
        ]
        if self.violations_dropped:
            out.append(
                f"  kept in full: {len(self.violations)} (the first "
                f"{self.config.max_violations} and the first of each kind; "
                "--max-violations); counted only: " + _counts(self.violations_dropped)
            )
        firsts: dict[str, Violation] = {}
        for v in self.violations:
            firsts.setdefault(v.kind.value, v)
        for kind, v in firsts.items():
            cpu = "-" if v.cpu is None else f"cpu{v.cpu}"
            out.append(f"  {kind} x{by_kind[kind]}: {v.kind.describe()}")
            out.append(
                f"    first: {cpu}, in {v.where}(), context {v.context}: "
                f"{_indent(v.message, 6)}"
            )
            if v.events:
                out.append("    events that led to it (oldest first):")
                out.extend(f"      {line}" for line in format_events(v.events))
            if v is self.violations[0] and self.first_context:
                out.append("    what every context did last, at that moment:")
                out.extend(
                    f"      {line}"
                    for line in format_events(self.first_context, v.events)
                )
        return out

    def _render_process(self) -> str:
        p = self.process
        if p.rss_bytes is None:
            return "figures unavailable (psutil missing)"
        parts = []
        if p.cpu_percent is not None:
            parts.append(f"CPU {p.cpu_percent:.0f}%")
        parts.append(f"RSS {_mib(p.rss_bytes)}")
        if p.peak_rss_bytes is not None:
            parts.append(f"peak {_mib(p.peak_rss_bytes)}")
        if p.threads is not None:
            parts.append(f"threads {p.threads}")
        if p.ctx_switches_voluntary is not None:
            parts.append(
                f"context switches {p.ctx_switches_voluntary} voluntary / "
                f"{p.ctx_switches_involuntary} involuntary"
            )
        return ", ".join(parts)


def format_events(
    events: tuple[Event, ...], relative_to: tuple[Event, ...] = ()
) -> list[str]:
    """Events as a step list: time before the last event (of ``relative_to`` if
    given), who, what, and in which Xen function."""
    if not events:
        return []
    last = (relative_to or events)[-1][0]
    width = max(len(e[1]) for e in events)
    return [
        f"{(ns - last) / 1000:>+10.1f}us  {ctx:<{width}s}  {kind:<7s} {label}"
        + (f"  [{fn}]" if fn else "")
        for ns, ctx, kind, label, fn in events
    ]


def _counts(m: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {n}" for k, n in m.items() if n) or "none"


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def _indent(text: str, n: int) -> str:
    return text.replace("\n", "\n" + " " * n)


def _verdict(code: int) -> str:
    return {
        EXIT_OK: "no violation",
        EXIT_VIOLATIONS: "violations found",
        EXIT_DEADLOCK: "deadlock",
        EXIT_ERROR: "harness error",
    }.get(code, "?")
