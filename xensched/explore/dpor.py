"""Dynamic partial-order reduction: source sets and sleep sets (Abdulla et al., POPL 2014).

Mirrors nothing in Xen. Two executions that differ only in the order of independent
steps (different objects, or two reads of one) reach the same state by the same
accesses, so only one of them needs running. After each execution, DPOR computes the
happens-before order of its steps (vector clocks over the dependence relation) and
finds its *races*: two dependent steps of different threads, not ordered through any
other step. For each race ``(i, j)`` it makes sure that, at the state before ``i``,
some thread is tried that can start the reversed order: an *initial* of ``v``, the
steps after ``i`` that do not happen after it, followed by ``j``. Sleep sets keep a
thread from being tried where an equivalent execution has already run it; an execution
in which every enabled thread sleeps is cut short (``sleep_blocked``). When no node
has anything left to try, every Mazurkiewicz trace of the program has been run: the
search is *exhaustive*.

A race needs both steps run. A thread that was enabled at a step and never ran again
(parked until a condition that a later write made false again, as a pulse of a flag
does, or left behind by a deadlock) has no step to race with: wherever its pending
operation depended on the step taken instead, it is tried there too
(:meth:`DPOR._never_ran`).

Dependence comes from the access records (:func:`xensched.explore.base.independent`):
same object and at least one write; every lock operation writes its lock. Atomic bit
operations of one cpumask are the exception: they commute unless one clears the bit
the other sets, so the analysis keeps them apart from the mask's other writes (each
orders the loads and other writes of the mask, not the bit operations it commutes
with). A silent store, one that writes the value its cell already holds, is a read
of the cell (:func:`xensched.explore.base.silent`): it commutes with the cell's loads
and other silent stores. Races on a
lock are taken between *acquisitions* (the last ``lock`` or successful ``trylock`` of
another thread), not with its release, since a thread spinning on a held lock is not
enabled: reversing an acquisition with the holder's release could never run. A
``trylock`` races with both (its result depends on either). A step that could only run
in the other order if a disabled thread went first (a lock holder's, a parked
thread's) falls back to trying every thread enabled there, which is sound and costs
only executions.

Within a preemption bound (``max_preemptions``) it is bounded partial-order
reduction (BPOR: Coons, Musuvathi and McKinley, OOPSLA 2013). Reversing a race can
cost a preemption that the bound forbids, while the same reversal made where the
racing thread's run of steps began (the last switch to it) would replace a switch
instead of adding one: so each thread a race adds at a step is also added at the
start of that step's block, and what a node cannot take within the bound is cut
(``pruned_by_bound``), as in bounded DFS, and the search is iterative too (0
preemptions, then 1, up to the bound). Sleep sets are off under a bound: the
execution that put a thread to sleep may have spent preemptions that the equivalent
one it stands for could not (with them, the ``switch-race`` credit -> credit remove
within 2 reached 1 of its 4 final states). What it runs is checked against unreduced
DFS within the same bound on small programs, and without the blocks' points it is
shown to lose states. On the fixed ``switch-race`` credit -> credit remove within 2
preemptions: 3,005 executions (3,881 before silent stores), against 60,701 for
bounded DFS with its reductions.

``ignore`` is a planted defect for the soundness tests: operations on objects whose
label contains it are taken as independent of everything, as a DPOR that forgot a
dependence would.

Left out: optimal DPOR's wakeup trees (an execution may end ``sleep_blocked``, counted
and cut, never wrong), equivalences coarser than Mazurkiewicz traces (reads-from, values
read) and caching of states; the README measures what each would save on ``switch-race``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xensched.explore.base import (
    START,
    bits_commute,
    independent,
    thread_of,
    variants,
)
from xensched.explore.tree import TreeSearch

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from xensched.explore.base import Op, Step
    from xensched.explore.tree import Node

__all__ = ["DPOR"]

Clock = dict[str, int]


class DPOR(TreeSearch):
    """Source-DPOR with sleep sets over the controlled driver's executions."""

    name = "dpor"
    sleep_sets = True

    def __init__(
        self,
        ignore: str | None = None,
        shard: tuple[int, int] | None = None,
        max_preemptions: int | None = None,
        *,
        blocks: bool = True,
    ) -> None:
        super().__init__(max_preemptions, shard)
        # Under a bound, no sleep sets, and each race's thread is also tried where
        # its step's block began (``blocks=False``: the planted defect that does not,
        # see the module docstring).
        self.sleep_sets = max_preemptions is None
        self.blocks = blocks
        self.ignore = ignore
        self.races = 0
        # The last execution's clocks, one per step: a replayed prefix has the same.
        self._clocks: list[Clock] = []

    def _op(self, op: Op) -> Op:
        if self.ignore is not None and op.oid and self.ignore in op.label:
            return START  # the planted defect: independent of everything
        return op

    def choose(
        self,
        step: int,
        enabled: Sequence[str],
        pending: object,
        last: str | None,
    ) -> str | None:
        if self.ignore is not None:
            pending = {t: self._op(o) for t, o in pending.items()}  # type: ignore[attr-defined]
        return super().choose(step, enabled, pending, last)  # type: ignore[arg-type]

    def replayed(
        self, step: int, enabled: Sequence[str]
    ) -> tuple[str, Mapping[str, Op]] | None:
        if self.ignore is not None:
            return None  # the nodes hold the planted defect's operations
        return super().replayed(step, enabled)

    def analyse(self, steps: Sequence[Step]) -> None:
        # The steps before the one whose choice changed replay an execution that was
        # analysed already: their races were found then (the backtrack sets live on
        # in the nodes). Their clocks are still needed.
        start = max(self._prefix - 1, 0)
        cached = self._clocks
        clocks: list[Clock] = []
        pos: list[int] = []
        thread_clock: dict[str, Clock] = {}
        last_write: dict[int, int] = {}
        reads: dict[int, dict[str, int]] = {}
        last_acq: dict[int, int] = {}
        last_unlock: dict[int, int] = {}
        trylocks: dict[int, dict[str, int]] = {}
        held: set[int] = set()  # locks held after the steps so far
        # Atomic bit operations on each mask since its last other write, by
        # (thread, Op.bit): they commute with each other (unless one clears what
        # the other sets), so none of them orders the next; a thread's latest per
        # bit value covers its earlier ones by program order.
        bits: dict[int, dict[tuple[str, int], int]] = {}
        last_writer: dict[str, int] = {}  # each thread's latest write (for wakes)
        last_wake: dict[str, int] = {}
        names = [thread_of(s.thread) for s in steps]
        ops = [self._op(s.op) for s in steps]
        for j, op in enumerate(ops):
            t = names[j]
            oid = op.oid
            also = op.also
            drain = op.kind == "drain"
            if j < start:
                # Replayed: the same steps before it, so the same clock as then.
                clock = cached[j]
                clocks.append(clock)
                pos.append(clock[t])
                thread_clock[t] = clock
            else:
                pre = thread_clock.get(t, {})
                deps: list[int] = []
                cands: list[int] = []
                if op.kind == "start":
                    pass
                elif op.kind == "wake":
                    if oid:  # its condition read one cell: a read of it
                        w = last_write.get(oid)
                        deps = [w] if w is not None else []
                        if oid in bits:
                            deps += bits[oid].values()
                    else:
                        deps = [e for q, e in last_writer.items() if q != t]
                    cands = deps
                elif op.is_lock:
                    w = last_write.get(oid)
                    deps = [w] if w is not None else []
                    if op.kind == "lock":
                        cands = [e for e in (last_acq.get(oid),) if e is not None]
                    elif op.kind == "trylock":
                        cands = [
                            e
                            for e in (last_acq.get(oid), last_unlock.get(oid))
                            if e is not None
                        ]
                    else:
                        cands = list(trylocks.get(oid, {}).values())
                elif op.is_write:
                    w = last_write.get(oid)
                    deps = ([w] if w is not None else []) + list(
                        reads.get(oid, {}).values()
                    )
                    deps += [e for q, e in last_wake.items() if q != t]
                    if oid in bits:
                        bit = op.bit
                        deps += (
                            [
                                e
                                for (_, b), e in bits[oid].items()
                                if not bits_commute(b, bit)
                            ]
                            if bit
                            else bits[oid].values()
                        )
                    cands = deps
                else:
                    w = last_write.get(oid)
                    deps = [w] if w is not None else []
                    if oid in bits:
                        deps += bits[oid].values()
                    cands = deps
                if also and op.kind not in ("start", "wake"):
                    # The CPU's store buffer (see base.independent): drains write it,
                    # the CPU's own accesses read it.
                    w = last_write.get(also)
                    extra = [w] if w is not None else []
                    if drain:
                        extra += list(reads.get(also, {}).values())
                    deps = deps + extra
                    cands = cands + extra
                cands = [e for e in dict.fromkeys(cands) if names[e] != t]
                clock = dict(pre)
                for d in deps:
                    for q, c in clocks[d].items():
                        if c > clock.get(q, 0):
                            clock[q] = c
                clock[t] = pre.get(t, 0) + 1
                clocks.append(clock)
                pos.append(clock[t])
                thread_clock[t] = clock
                for i in cands:
                    base = dict(pre)
                    for k in cands:
                        if k != i:
                            for q, c in clocks[k].items():
                                if c > base.get(q, 0):
                                    base[q] = c
                    if base.get(names[i], 0) < pos[i]:
                        self.races += 1
                        self._reverse(steps, clocks, pos, i, j)
            # What later steps see of this one.
            if op.kind in ("start", "wake"):
                if op.kind == "wake":
                    if oid:
                        reads.setdefault(oid, {})[t] = j
                    else:
                        last_wake[t] = j
                continue
            if also:
                if drain:
                    last_write[also] = j
                    reads.pop(also, None)
                elif also != oid:
                    reads.setdefault(also, {})[t] = j
            if op.bit:
                # Not the mask's last write: the next bit operation may commute
                # with it, and the reads before it still race with that one.
                bits.setdefault(oid, {})[t, op.bit] = j
                last_writer[t] = j
            elif op.is_write:
                last_write[oid] = j
                reads.pop(oid, None)
                bits.pop(oid, None)
                last_writer[t] = j
                if op.kind == "lock":
                    last_acq[oid] = j
                    held.add(oid)
                    trylocks.pop(oid, None)
                elif op.kind == "trylock":
                    if oid not in held:  # it took the lock
                        last_acq[oid] = j
                        held.add(oid)
                    # One that failed acquired nothing: a later acquisition could
                    # only come first if the holder's release did, and that release
                    # races with this trylock (below, and the unlock's candidates).
                    trylocks.setdefault(oid, {})[t] = j
                elif op.kind == "unlock":
                    last_unlock[oid] = j
                    held.discard(oid)
            else:
                reads.setdefault(oid, {})[t] = j
        self._clocks = clocks
        if not self.abandoned:
            self._never_ran(steps, names, ops)

    def _never_ran(
        self, steps: Sequence[Step], names: Sequence[str], ops: Sequence[Op]
    ) -> None:
        """Try, at each step, the enabled threads that never ran again whose
        pending operation depended on the step taken (see the module docstring).

        A cut-short execution is skipped: its threads did not run because an
        equivalent execution ran them.
        """
        last = {t: j for j, t in enumerate(names)}  # each thread's last step
        for j, s in enumerate(steps):
            ran = ops[j]
            node = self.nodes[j]
            for u in s.enabled:
                tu = thread_of(u)
                if tu == names[j] or last.get(tu, -1) > j:
                    continue
                if u in node.sleep or independent(self._op(s.pending[u]), ran):
                    continue
                self._add(j, variants(u, node.enabled))

    def _reverse(
        self,
        steps: Sequence[Step],
        clocks: list[Clock],
        pos: list[int],
        i: int,
        j: int,
    ) -> None:
        node = self.nodes[i]
        ti, pi = thread_of(steps[i].thread), pos[i]
        first: dict[str, int] = {}
        initials: list[str] = []
        for e in range(i + 1, j + 1):
            if e != j and clocks[e].get(ti, 0) >= pi:
                continue  # happens after i: not in v
            te = thread_of(steps[e].thread)
            if te in first:
                continue
            first[te] = e
            ce = clocks[e]
            if all(ce.get(q, 0) < pos[f] for q, f in first.items() if q != te):
                initials.append(te)
        # Names enabled here, by thread (a thread's loads of older values are
        # names of their own).
        here: dict[str, list[str]] = {}
        for u in node.enabled:
            here.setdefault(thread_of(u), []).append(u)
        if any(
            u in node.backtrack or u in node.sleep
            for p in initials
            for u in here.get(p, ())
        ):
            return
        tj = thread_of(steps[j].thread)
        runnable = [p for p in initials if p in here]
        if runnable:
            p = tj if tj in runnable else runnable[0]
            self._add(i, variants(here[p][0], node.enabled))
        else:
            self._add(i, node.enabled)

    def _add(self, i: int, threads: Iterable[str]) -> None:
        """Try ``threads`` at step ``i``; within a bound, also where the block of
        step ``i``'s thread began, and only what the bound allows (see the module
        docstring)."""
        node = self.nodes[i]
        if self.bound is None:
            node.backtrack.update(threads)
            return
        k = i
        if self.blocks:
            who = thread_of(node.chosen)
            while k > 0 and thread_of(self.nodes[k - 1].chosen) == who:
                k -= 1
        start = self.nodes[k]
        for t in threads:
            self._within(node, t)
            if k != i:
                # Under a memory model the thread's names there may differ (its
                # loads of older values, another store buffer): any of them.
                for u in variants(t, start.enabled):
                    self._within(start, u)

    def _within(self, node: Node, thread: str) -> None:
        """Try ``thread`` at ``node`` if the bound allows it there."""
        if thread not in node.enabled or thread in node.done:
            return
        assert self.bound is not None
        if node.preemptions + node.cost(thread) <= self.bound:
            node.backtrack.add(thread)
        else:
            self.pruned = True

    def summary(self) -> dict[str, object]:
        out = super().summary()
        out["races"] = self.races
        if self.ignore is not None:
            out["ignored_dependence"] = self.ignore
        return out
