"""Going back in time: reverse step and reverse continue by checkpoints and exact replay.

The machine is deterministic and a run cut anywhere is the same run (emu/machine.py): from a
snapshot taken at instruction count C, `run(max_insns=N - C)` arrives at exactly the state the
machine had at count N.  So going back is: restore the latest checkpoint before the target
and replay forward to it, with breakpoints and watchpoints out of the way and the guest's
serial output (already shown once) silenced.

- `goto(n)`: be at instruction count n (n <= now).
- `previous_stop(is_stop)`: the last count before now at which a breakpoint or watchpoint
  the user set would have stopped the run, found by replaying the checkpoint intervals
  backwards; `is_stop` decides whether a stop counts (breakpoint conditions).

Checkpoints are taken when the debugger stops after having run far enough from the last one,
and thinned (keeping the first) when there are too many, so memory stays bounded.  Not
replayed: what lives outside the machine — an ATA disk image keeps the writes made after the
checkpoint, so going back across disk writes is not exact (the debugger says so).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Optional

from ..machine import Machine, RunResult, Snapshot, Stop


@dataclass
class Checkpoint:
    count: int
    snap: Snapshot


class History:
    def __init__(self, m: Machine, interval: int = 5_000_000, keep: int = 16) -> None:
        self.m = m
        self.interval = interval
        self.keep = keep
        self.checkpoints: list[Checkpoint] = []

    # -- recording ------------------------------------------------------------------------------
    def note(self) -> None:
        """The debugger stopped: take a checkpoint if the last one is far enough behind."""
        now = self.m.clock.now
        if self.checkpoints and now - self.checkpoints[-1].count < self.interval and \
                now >= self.checkpoints[-1].count:
            return
        # Forget checkpoints beyond now: they belong to a future this run has left.
        self.checkpoints = [c for c in self.checkpoints if c.count <= now]
        if self.checkpoints and self.checkpoints[-1].count == now:
            return
        self.checkpoints.append(Checkpoint(now, self.m.save_state()))
        if len(self.checkpoints) > self.keep:
            first, rest = self.checkpoints[0], self.checkpoints[1:]
            self.checkpoints = [first] + rest[1::2] + ([rest[-1]] if len(rest) % 2 == 0 else [])

    @property
    def start(self) -> int:
        return self.checkpoints[0].count if self.checkpoints else 0

    # -- replay ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _quiet(self, keep_points: bool):
        """Replay silently, and with the user's breakpoints and watchpoints suspended unless
        asked to keep them."""
        m = self.m
        out, m.serial.output = m.serial.output, (lambda data: None)
        suspended, m.suspend_points = m.suspend_points, not keep_points
        try:
            yield
        finally:
            m.serial.output = out
            m.suspend_points = suspended

    def _checkpoint_before(self, n: int) -> Checkpoint:
        best = None
        for c in self.checkpoints:
            if c.count <= n:
                best = c
        if best is None:
            raise ValueError(f"no checkpoint at or before instruction {n}: the recording "
                             f"starts at {self.start}")
        return best

    def goto(self, n: int) -> RunResult:
        """Restore the nearest checkpoint and replay to exactly instruction count `n`."""
        m = self.m
        cp = self._checkpoint_before(n)
        with self._quiet(keep_points=False):
            m.load_state(cp.snap)
            if n == cp.count:
                return RunResult(Stop.STEPPED, n, None, f"at instruction {n}")
            r = m.run(max_insns=n - cp.count)
        if r.reason is not Stop.MAX_INSNS or m.clock.now != n:
            raise RuntimeError(f"replay diverged: {r.reason.value} at {m.clock.now}, "
                               f"expected instruction {n}")
        return RunResult(Stop.STEPPED, n, None, f"at instruction {n}")

    def previous_stop(self, now: int, is_stop: Callable[[], bool]) -> Optional[int]:
        """The last count before `now` where a breakpoint or watchpoint stops the run."""
        m = self.m
        cps = [c for c in self.checkpoints if c.count < now]
        for i in range(len(cps) - 1, -1, -1):
            cp = cps[i]
            end = now if i == len(cps) - 1 else cps[i + 1].count
            last = None
            with self._quiet(keep_points=True):
                m.load_state(cp.snap)
                while m.clock.now < end:
                    r = m.run(max_insns=end - m.clock.now)
                    if r.reason in (Stop.BREAKPOINT, Stop.WATCHPOINT):
                        if m.clock.now < now and is_stop():
                            last = m.clock.now
                        continue
                    if r.reason is not Stop.MAX_INSNS:
                        break
            if last is not None:
                return last
        return None
