"""The 8254 programmable interval timer and PC system control port B (Intel 8254 datasheet).

`Pit8254` owns the three counters, their gates and outputs, IRQ 0 (channel 0's OUT) and port
0x61 (channel 2's gate and OUT as the PC wires them).  Its input clock is 1.193182 MHz of
*virtual* time: `clock.ips` instructions make one guest second, so the ticks elapsed since a
counter started are floor((now - start) * 1193182 / ips).  Host time is never read.

Ports:

    port  access  meaning
    0x40  RW      counter 0 (IRQ 0): count in, count/latch/status out, per its RW mode
    0x41  RW      counter 1 (DRAM refresh on a PC; counts but drives nothing)
    0x42  RW      counter 2 (speaker; gate = port 0x61 bit 0, OUT = port 0x61 bit 5)
    0x43  W       control word: bits 7-6 SC (counter; 11 = read-back), bits 5-4 RW (00 counter
                  latch, 01 lobyte, 10 hibyte, 11 lobyte then hibyte), bits 3-1 mode (6, 7 alias
                  2, 3), bit 0 BCD
    0x43  R       nothing answers: 0xFF
    0x61  RW      bit 0 counter 2 gate (RW), bit 1 speaker data enable (RW), bits 2-3 stored
                  (parity / IOCHK enables), bit 4 refresh toggle (RO), bit 5 counter 2 OUT (RO),
                  bits 6-7 read 0 (no IOCHK or parity errors)

Read-back command (0x43 = 11 C S c2 c1 c0 0): for each selected counter, C = 0 latches the count
and S = 0 latches the status byte (OUT, null count, RW, mode bits, BCD).  A latched status is
read first, then a latched count; a second latch before the read is ignored.  Reads and writes
have separate lobyte/hibyte flip-flops, both reset by a control word.

Modes (OUT after the control word: low in mode 0, high in the others; count 0 = 65536 binary,
10000 BCD, and BCD counting is real: reads give BCD digits):
- 0 interrupt on terminal count: OUT high when the count reaches 0 and stays high; the counter
  wraps and keeps counting.  Gate low pauses.  Writing the first byte of a lobyte/hibyte count
  stops counting and drops OUT; the complete count restarts it.
- 1 retriggerable one-shot: a gate rising edge loads the count, OUT low until terminal count.
- 2 rate generator: OUT low for the one tick before each reload, period N.  Gate low stops and
  forces OUT high; a gate rising edge reloads.  A new count takes effect at the next reload.
- 3 square wave: OUT high for ceil(N/2) ticks, low for floor(N/2); the count steps by 2 (odd N:
  N-1, N-3, ... as the datasheet shows).  A new count takes effect at the end of the current
  half-cycle.  Gate as in mode 2.
- 4 software strobe / 5 hardware (gate-triggered) strobe: OUT low for the one tick at terminal
  count.  Gate low pauses mode 4.  A new count in mode 5 (and 1) waits for the next trigger.

Simplifications and choices:
- A count is loaded at the moment it is written (or triggered), not at the next CLK edge: every
  sequence starts one tick (838 ns) earlier than on the chip, and the clock is in phase with the
  load.  So the k-th period of channel 0 ends exactly at start + ceil(k * N * ips / 1193182):
  no drift, integer arithmetic only.
- A count of 1 is illegal in modes 2 and 3 (datasheet); it counts as 2.
- Null count (status bit 6) is set by a control word and by a count write, and cleared when the
  count reaches the counting element.
- Reset leaves every counter unprogrammed, as if told mode 0, lobyte/hibyte, binary, with no
  count written: nothing counts, OUT is low, no events.  (Firmware that wants the BIOS's
  18.2 Hz tick writes 0x36, 0, 0 to it.)  Counter 2's gate is low; counters 0 and 1 have their
  gates tied high, as on a PC.
- IRQ 0 follows counter 0's OUT, except in mode 2, where the line is pulsed (raised and
  lowered at once) at each rising edge of OUT and otherwise stays low: an edge-triggered input
  sees the same edges, and the 838 ns low pulse does not cut the run loop's budgets.  Reads of
  OUT (read-back status) give the datasheet waveform in every mode.
- The refresh toggle (port 0x61 bit 4) flips every 18 ticks (15.09 us) of virtual time, as the
  PIIX does, independently of counter 1's programming.
- Only counter 0 schedules clock events (it is the only OUT wired to an interrupt); counters 1
  and 2 are computed from the time when read.
- `load_state` assumes the clock has been restored to the same time base; it re-creates the
  pending event from the saved programming and drives IRQ 0 to the saved level if the line
  differs.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from ..bus import ByteDevice, IrqLine
from ..clock import Clock, Event

PIT_HZ = 1_193_182
PIT_BASE, PIT_CONTROL = 0x40, 0x43
PORT_B = 0x61
#: Port B bits the guest writes and reads back (speaker enable, parity/IOCHK enables).
PORT_B_STORED = 0x0E
REFRESH_TICKS = 18


def _bcd_decode(raw: int) -> int:
    return sum(((raw >> (4 * i)) & 0xF) * 10 ** i for i in range(4))


def _bcd_encode(value: int) -> int:
    return sum(((value // 10 ** i) % 10) << (4 * i) for i in range(4))


@dataclass
class _Counter:
    """One counter's state.  Positions count ticks since the count was loaded (see `_pos`)."""

    mode: int = 0                      # effective mode 0-5
    mode_bits: int = 0                 # as written (6 and 7 alias 2 and 3)
    rw: int = 3
    bcd: bool = False
    count_reg: int | None = None    # raw count written since the control word
    write_lsb: int | None = None    # first byte of a lobyte/hibyte write
    read_msb_next: bool = False
    latch: int | None = None        # latched count, already in the read format
    status: int | None = None       # latched status byte
    null_count: bool = True
    gate: bool = True
    armed: bool = False                # a count is in the counting element (or was triggered)
    running: bool = False              # the counting element is counting
    start: int = 0                     # time the current run began
    offset: int = 0                    # position at `start`
    n: int = 0                         # the count being counted (1-65536)
    n_next: int | None = None       # modes 2/3: count written during counting
    reload_pos: int = 0                # ... and the position where it takes over
    idle_ce: int = 0                   # what a read gives while not armed


class Pit8254(ByteDevice):
    """Counters 0-2 and port 0x61; see the module docstring for the registers."""

    name = "pit"
    ports = ((PIT_BASE, 4), (PORT_B, 1))

    def __init__(self, clock: Clock, irq0: IrqLine) -> None:
        self.clock = clock
        self.irq0 = irq0
        self.counters = [_Counter() for _ in range(3)]
        self.port_b = 0
        self._line = False
        self._event: Event | None = None
        self._event_raw = 0
        self.reset()

    def reset(self) -> None:
        self.clock.cancel(self._event)
        self._event = None
        self.counters = [_Counter(gate=(i != 2)) for i in range(3)]
        self.port_b = 0
        self._line = False
        if self.irq0.level:
            self.irq0.lower()

    # -- time and waveform -------------------------------------------------------------------
    @property
    def _ips(self) -> int:
        return int(self.clock.ips)

    def _pos(self, c: _Counter, now: int) -> int:
        """Ticks since the count was loaded, applying a pending mode 2/3 reload once due."""
        p = c.offset
        if c.running:
            p += (now - c.start) * PIT_HZ // self._ips
        if c.n_next is not None and p >= c.reload_pos:
            shift = self._apply_reload(c)
            p += shift
        return p

    def _apply_reload(self, c: _Counter) -> int:
        """Switch to the count written during counting; returns how positions shifted."""
        n_new = c.n_next
        assert n_new is not None
        # Mode 3 half-cycle boundaries: after a high half the new count starts its low half.
        q0 = (n_new + 1) // 2 if c.mode == 3 and c.reload_pos % c.n else 0
        shift = q0 - c.reload_pos
        c.offset += shift
        c.n = n_new
        c.n_next = None
        c.null_count = False
        return shift

    def _time_of_raw(self, c: _Counter, raw: int) -> int:
        """First instruction count at which `raw` ticks have elapsed since `c.start`."""
        return c.start + -(-(raw * self._ips) // PIT_HZ)

    @staticmethod
    def _out(c: _Counter, pos: int) -> bool:
        m = c.mode
        if m in (2, 3) and not c.gate:
            return True
        if not c.armed:
            return m != 0
        n = c.n
        if m in (0, 1):
            return pos >= n
        if m == 2:
            return pos % n != n - 1
        if m == 3:
            return pos % n < (n + 1) // 2
        return pos != n

    @staticmethod
    def _ce_value(c: _Counter, pos: int) -> int:
        n = c.n
        if c.mode == 2:
            return n - pos % n
        if c.mode == 3:
            p = pos % n
            half = (n + 1) // 2
            if p >= half:
                p -= half
            return n - (n & 1) - 2 * p
        return n - pos

    @staticmethod
    def _boundary_after(c: _Counter, pos: int) -> int:
        """Modes 2/3: the next reload (mode 3: the next half-cycle end) after `pos`."""
        n = c.n
        if c.mode == 2:
            return (pos // n + 1) * n
        base = pos - pos % n
        half = (n + 1) // 2
        return base + half if pos % n < half else base + n

    def _next_edge(self, c: _Counter, pos: int) -> int | None:
        """Counter 0: the next position after `pos` where IRQ 0 changes."""
        if not (c.armed and c.running):
            return None
        n, m = c.n, c.mode
        if m in (0, 1):
            return n if pos < n else None
        if m in (2, 3):
            return self._boundary_after(c, pos)
        if pos < n:
            return n
        return n + 1 if pos == n else None

    def _read_ce(self, c: _Counter, now: int) -> int:
        if not c.armed:
            return c.idle_ce
        value = self._ce_value(c, self._pos(c, now))
        if c.bcd:
            return _bcd_encode(value % 10000)
        return value % 0x10000

    def _out_now(self, c: _Counter) -> bool:
        return self._out(c, self._pos(c, self.clock.now))

    def _effective(self, c: _Counter, raw: int) -> int:
        n = _bcd_decode(raw) if c.bcd else raw
        if n == 0:
            n = 10000 if c.bcd else 0x10000
        if c.mode in (2, 3):
            n = max(n, 2)
        return n

    # -- counter 0's line and events ---------------------------------------------------------
    def _drive(self, level: bool) -> None:
        if level != self._line:
            self._line = level
            self.irq0.set(level)

    def _settle(self, c: _Counter, prev_out: bool) -> None:
        """After a change to counter `c`: bring IRQ 0 and the event in line with the new state."""
        if c is not self.counters[0]:
            return
        self.clock.cancel(self._event)
        self._event = None
        pos = self._pos(c, self.clock.now)
        out = self._out(c, pos)
        if c.mode == 2:
            self._drive(False)
            if out and not prev_out:
                self.irq0.pulse()
        else:
            self._drive(out)
        self._schedule(pos)

    def _schedule(self, pos: int) -> None:
        c = self.counters[0]
        nxt = self._next_edge(c, pos)
        if nxt is None:
            return
        self._event_raw = nxt - c.offset
        self._event = self.clock.schedule(self._time_of_raw(c, self._event_raw),
                                          self._on_edge, "pit0")

    def _on_edge(self) -> None:
        # Work from the event's own position, not clock.now: the clock may already be past it.
        c = self.counters[0]
        self._event = None
        pos = c.offset + self._event_raw
        if c.n_next is not None and pos >= c.reload_pos:
            pos += self._apply_reload(c)
        if c.mode == 2:
            if pos % c.n == 0:
                self.irq0.pulse()
        else:
            self._drive(self._out(c, pos))
        self._schedule(pos)

    # -- programming -------------------------------------------------------------------------
    def _control(self, value: int) -> None:
        sc, rw = value >> 6, (value >> 4) & 3
        now = self.clock.now
        if sc == 3:
            self._read_back(value, now)
            return
        c = self.counters[sc]
        if rw == 0:
            if c.latch is None:
                c.latch = self._read_ce(c, now)
            return
        prev = self._out_now(c)
        idle = self._read_ce(c, now)
        bits = (value >> 1) & 7
        self.counters[sc] = c = _Counter(
            mode=bits - 4 if bits >= 6 else bits, mode_bits=bits, rw=rw, bcd=bool(value & 1),
            gate=c.gate, idle_ce=idle)
        self._settle(c, prev)

    def _read_back(self, value: int, now: int) -> None:
        for i, c in enumerate(self.counters):
            if not value & (2 << i):
                continue
            if not value & 0x20 and c.latch is None:
                c.latch = self._read_ce(c, now)
            if not value & 0x10 and c.status is None:
                c.status = (self._out(c, self._pos(c, now)) << 7 | c.null_count << 6
                            | c.rw << 4 | c.mode_bits << 1 | int(c.bcd))

    def _write_count(self, c: _Counter, byte: int) -> None:
        now = self.clock.now
        prev = self._out_now(c)
        if c.rw == 1:
            raw = byte
        elif c.rw == 2:
            raw = byte << 8
        elif c.write_lsb is None:
            c.write_lsb = byte
            if c.mode == 0:
                c.idle_ce = self._read_ce(c, now)
                c.armed = c.running = False
                self._settle(c, prev)
            return
        else:
            raw = c.write_lsb | byte << 8
            c.write_lsb = None
        self._load(c, raw, now)
        self._settle(c, prev)

    def _start(self, c: _Counter, n: int, now: int, running: bool) -> None:
        c.n = n
        c.n_next = None
        c.armed = True
        c.running = running
        c.start = now
        c.offset = 0
        c.null_count = False

    def _load(self, c: _Counter, raw: int, now: int) -> None:
        c.count_reg = raw
        c.null_count = True
        n = self._effective(c, raw)
        if c.mode in (0, 4):
            self._start(c, n, now, c.gate)
        elif c.mode in (2, 3):
            if c.armed and c.running:
                pos = self._pos(c, now)
                c.n_next = n
                c.reload_pos = self._boundary_after(c, pos)
            else:
                self._start(c, n, now, c.gate)
        # Modes 1 and 5 wait for the next gate trigger.

    def _set_gate(self, c: _Counter, level: bool) -> None:
        if level == c.gate:
            return
        now = self.clock.now
        prev = self._out_now(c)
        pos = self._pos(c, now)
        c.gate = level
        m = c.mode
        if m in (0, 4, 2, 3) and not level:
            c.offset, c.running, c.n_next = pos, False, None
        elif m in (0, 4):
            if c.armed:
                c.start, c.running = now, True
        elif level and c.count_reg is not None:
            # Modes 1, 2, 3, 5: a rising gate edge (re)loads the count.
            self._start(c, self._effective(c, c.count_reg), now, True)
        self._settle(c, prev)

    # -- ports -------------------------------------------------------------------------------
    def read_byte(self, port: int) -> int:
        now = self.clock.now
        if PIT_BASE <= port < PIT_CONTROL:
            return self._read_counter(self.counters[port - PIT_BASE], now)
        if port == PORT_B:
            c2 = self.counters[2]
            out2 = self._out(c2, self._pos(c2, now))
            refresh = (now * PIT_HZ // self._ips // REFRESH_TICKS) & 1
            return int(c2.gate) | (self.port_b & PORT_B_STORED) | refresh << 4 | out2 << 5
        return 0xFF

    def _read_counter(self, c: _Counter, now: int) -> int:
        if c.status is not None:
            value, c.status = c.status, None
            return value
        latched = c.latch is not None
        value = c.latch if latched else self._read_ce(c, now)
        assert value is not None
        if c.rw == 3:
            msb = c.read_msb_next
            c.read_msb_next = not msb
            release = msb
            byte = value >> 8 if msb else value & 0xFF
        else:
            release = True
            byte = value >> 8 if c.rw == 2 else value & 0xFF
        if latched and release:
            c.latch = None
        return byte

    def write_byte(self, port: int, value: int) -> None:
        if PIT_BASE <= port < PIT_CONTROL:
            self._write_count(self.counters[port - PIT_BASE], value)
        elif port == PIT_CONTROL:
            self._control(value)
        elif port == PORT_B:
            self.port_b = value & PORT_B_STORED
            self._set_gate(self.counters[2], bool(value & 1))

    # -- state -------------------------------------------------------------------------------
    def save_state(self) -> dict:
        pending = self._event is not None and not self._event.cancelled
        return {
            "counters": [asdict(c) for c in self.counters],
            "port_b": self.port_b,
            "line": self._line,
            "event_raw": self._event_raw if pending else None,
        }

    def load_state(self, state: dict) -> None:
        self.clock.cancel(self._event)
        self._event = None
        names = {f.name for f in fields(_Counter)}
        self.counters = [_Counter(**{k: v for k, v in cs.items() if k in names})
                         for cs in state["counters"]]
        self.port_b = int(state["port_b"])
        self._line = bool(state["line"])
        if self.irq0.level != self._line:
            self.irq0.set(self._line)
        raw = state.get("event_raw")
        if raw is not None:
            c = self.counters[0]
            self._event_raw = int(raw)
            self._event = self.clock.schedule(self._time_of_raw(c, self._event_raw),
                                              self._on_edge, "pit0")
