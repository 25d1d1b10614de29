"""Virtual time: retired guest instructions, and the event queue devices schedule on (DESIGN D5).

The clock never looks at the host's time.  `now` is the number of guest instructions retired
since reset, read live from the run loop's counter (so a device reading the time from inside an
I/O access sees it to the block).  A fixed nominal rate (`ips`, instructions per second) turns
instructions into guest seconds: at the default 1e9, one instruction is one nanosecond.

Devices schedule callbacks at absolute instruction counts.  The machine runs the guest up to the
earliest deadline, fires what is due in (deadline, sequence) order, and repeats; `hlt` jumps the
clock to the next deadline.  Two runs of the same guest therefore see the same events at the same
instruction counts.
"""
from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from typing import Callable, Optional

DEFAULT_IPS = 1_000_000_000


class _Counter:
    """Stand-in for the native counter when a clock runs without a CPU (device unit tests)."""

    total = 0


@dataclass(order=True)
class Event:
    """A scheduled callback; `cancel()` it through the clock."""

    when: int
    seq: int
    callback: Callable[[], None] = field(compare=False)
    name: str = field(default="", compare=False)
    cancelled: bool = field(default=False, compare=False)


class Clock:
    """Instruction-count time plus a deadline-ordered event queue."""

    def __init__(self, ips: int = DEFAULT_IPS, counter: object | None = None) -> None:
        if ips <= 0:
            raise ValueError("instructions per second must be positive")
        self.ips = ips
        self.counter = counter if counter is not None else _Counter()
        self._queue: list[Event] = []
        self._seq = itertools.count()
        #: Called with the new earliest deadline when an event is scheduled earlier than all
        #: others (the run loop lowers its budget so the event is not missed).
        self.on_earlier_deadline: Optional[Callable[[int], None]] = None

    # -- time ---------------------------------------------------------------------------
    @property
    def now(self) -> int:
        """Guest instructions retired so far."""
        return self.counter.total

    def ns(self, insns: Optional[int] = None) -> int:
        """Guest nanoseconds at the nominal rate for `insns` (default: now)."""
        t = self.now if insns is None else insns
        return t * 1_000_000_000 // self.ips

    def insns_for_ns(self, ns: int) -> int:
        """Instructions that take `ns` guest nanoseconds (at least 1 for a positive time)."""
        n = ns * self.ips // 1_000_000_000
        return max(n, 1) if ns > 0 else 0

    def advance(self, insns: int) -> None:
        """Move time forward without running code (idle skips, device unit tests)."""
        if insns < 0:
            raise ValueError("time does not run backwards")
        self.counter.total += insns

    # -- events -------------------------------------------------------------------------
    def schedule(self, when: int, callback: Callable[[], None], name: str = "") -> Event:
        """Call `callback()` once the clock reaches `when` (absolute instruction count)."""
        ev = Event(max(when, 0), next(self._seq), callback, name)
        earliest = self.next_deadline()
        heapq.heappush(self._queue, ev)
        if self.on_earlier_deadline is not None and (earliest is None or ev.when < earliest):
            self.on_earlier_deadline(ev.when)
        return ev

    def schedule_in(self, delta: int, callback: Callable[[], None], name: str = "") -> Event:
        return self.schedule(self.now + max(delta, 0), callback, name)

    def cancel(self, ev: Optional[Event]) -> None:
        if ev is not None:
            ev.cancelled = True

    def next_deadline(self) -> Optional[int]:
        q = self._queue
        while q and q[0].cancelled:
            heapq.heappop(q)
        return q[0].when if q else None

    def fire_due(self) -> int:
        """Run every event whose time has come, in (when, seq) order; returns how many ran."""
        n = 0
        q = self._queue
        while True:
            nd = self.next_deadline()
            if nd is None or nd > self.now:
                return n
            ev = heapq.heappop(q)
            ev.cancelled = True
            ev.callback()
            n += 1

    def clear(self) -> None:
        """Drop every pending event (a snapshot is being restored: devices re-arm theirs)."""
        for ev in self._queue:
            ev.cancelled = True
        self._queue.clear()

    def pending_events(self) -> list[Event]:
        return sorted(e for e in self._queue if not e.cancelled)
