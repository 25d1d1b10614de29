"""Device-level tests of the 8254 and port 0x61: each names the datasheet behaviour it checks.

Time is driven by hand: `clock.advance(n)` then `clock.fire_due()`, as the run loop does between
budgets.  IRQ 0 goes through a real 8259A pair programmed as Linux does it.
"""
from __future__ import annotations

import random

from emu.bus import IrqBus
from emu.clock import Clock
from emu.devices.pic import Pic8259Pair
from emu.devices.pit import PIT_HZ, Pit8254

GIGA = 1_000_000_000


class Rig:
    def __init__(self, ips: int = GIGA) -> None:
        self.clock = Clock(ips=ips)
        self.bus = IrqBus()
        self.pic = Pic8259Pair()
        self.bus.attach(self.pic)
        for port, value in ((0x20, 0x11), (0x21, 0x20), (0x21, 0x04), (0x21, 0x01),
                            (0xA0, 0x11), (0xA1, 0x28), (0xA1, 0x02), (0xA1, 0x01)):
            self.pic.io_write(port, 1, value)
        self.pit = Pit8254(self.clock, self.bus.line(0))
        self.irq0_times: list[int] = []

    def out(self, port: int, value: int) -> None:
        self.pit.io_write(port, 1, value)

    def inb(self, port: int) -> int:
        return self.pit.io_read(port, 1)

    def program(self, counter: int, mode: int, count: int, rw: int = 3, bcd: bool = False) -> None:
        self.out(0x43, counter << 6 | rw << 4 | mode << 1 | int(bcd))
        if rw in (1, 3):
            self.out(0x40 + counter, count & 0xFF)
        if rw in (2, 3):
            self.out(0x40 + counter, count >> 8 & 0xFF)

    def service(self) -> None:
        """The CPU taking every pending interrupt, with an EOI for each."""
        while self.pic.pending():
            vector = self.pic.acknowledge()
            if vector == 0x20:
                self.irq0_times.append(self.clock.now)
            self.pic.io_write(0x20, 1, 0x20)

    def run_until(self, until: int) -> None:
        """Run the clock to `until` stopping at every deadline, as the machine's run loop does."""
        self.service()
        while True:
            deadline = self.clock.next_deadline()
            if deadline is None or deadline > until:
                break
            self.clock.advance(deadline - self.clock.now)
            self.clock.fire_due()
            self.service()
        self.clock.advance(until - self.clock.now)

    def latch_read(self, counter: int) -> int:
        self.out(0x43, counter << 6)
        lo = self.inb(0x40 + counter)
        return lo | self.inb(0x40 + counter) << 8


def tick_time(ticks: int, ips: int = GIGA, t0: int = 0) -> int:
    """The first instruction count at which `ticks` input clocks have passed since t0."""
    return t0 + -(-(ticks * ips) // PIT_HZ)


def test_mode2_100hz_exact_edge_count() -> None:
    """Mode 2 rate generator, divisor 11932: one IRQ 0 per period, the k-th at ceil(k*N*ips/f).

    The control word puts OUT high (it was low since reset): that edge is the first interrupt.
    The 100th period ends 15 us after the first second (11932 * 100 > 1193182), so the first
    virtual second holds exactly 100 edges, ten seconds exactly 1000.
    """
    rig = Rig()
    rig.program(0, 2, 11932)
    rig.run_until(GIGA)
    assert len(rig.irq0_times) == 100
    assert rig.irq0_times[0] == 0
    assert rig.irq0_times[1:] == [tick_time(k * 11932) for k in range(1, 100)]
    rig.run_until(10 * GIGA)
    assert len(rig.irq0_times) == 1000
    assert rig.irq0_times[-1] == tick_time(999 * 11932)
    assert not rig.bus.levels[0]             # mode 2: the line is pulsed, low between edges


def test_mode3_100hz_exact_edge_count() -> None:
    """Mode 3 square wave: IRQ 0 rises once per period; the line is high for the first half."""
    rig = Rig()
    rig.program(0, 3, 11932)
    assert rig.bus.levels[0]
    rig.run_until(tick_time(5966) - 1)
    assert rig.bus.levels[0]
    rig.run_until(tick_time(5966))
    assert not rig.bus.levels[0]
    rig.run_until(GIGA)
    assert len(rig.irq0_times) == 100
    assert rig.irq0_times[1:] == [tick_time(k * 11932) for k in range(1, 100)]
    rig.run_until(10 * GIGA)
    assert len(rig.irq0_times) == 1000


def test_no_drift_at_awkward_rates() -> None:
    """Integer event times: after 10000 periods the edge is where the exact formula puts it."""
    ips = 123_456_791
    rig = Rig(ips=ips)
    rig.clock.advance(777)
    rig.program(0, 2, 1193)                  # ~1000 Hz
    t0 = 777
    rig.run_until(tick_time(10000 * 1193, ips, t0))
    assert len(rig.irq0_times) == 10001
    assert rig.irq0_times[-1] == tick_time(10000 * 1193, ips, t0)


def test_late_firing_does_not_shift_the_schedule() -> None:
    """Events fired late (clock far past them) still schedule from their own times."""
    rig = Rig()
    rig.program(0, 2, 1000)
    rig.clock.advance(tick_time(50_000))
    while rig.clock.fire_due():
        pass
    pending = rig.clock.pending_events()
    assert [e.when for e in pending] == [tick_time(51_000)]


def test_count_reads_decrease() -> None:
    """Counter latch command and lobyte/hibyte reads: the count falls by one per input clock."""
    rig = Rig()
    rig.program(0, 2, 50000)
    assert rig.latch_read(0) == 50000
    rig.clock.advance(tick_time(100))
    assert rig.latch_read(0) == 49900
    rig.clock.advance(tick_time(1000) - tick_time(100))
    assert rig.latch_read(0) == 49000
    rig.clock.advance(tick_time(50000) - tick_time(1000))
    assert rig.latch_read(0) == 50000        # reloaded at the period's end
    lo = rig.inb(0x40)                       # unlatched reads follow the count live
    hi = rig.inb(0x40)
    assert lo | hi << 8 == 50000


def test_latch_holds_until_read() -> None:
    """A latched count does not move, and a second latch before the read is ignored."""
    rig = Rig()
    rig.program(0, 0, 0x1234)
    rig.out(0x43, 0x00)
    rig.clock.advance(tick_time(0x100))
    rig.out(0x43, 0x00)
    assert rig.inb(0x40) == 0x34
    assert rig.inb(0x40) == 0x12
    assert rig.latch_read(0) == 0x1134


def test_lobyte_and_hibyte_modes() -> None:
    """RW 01 and 10: one byte per access, the other byte of the count zero."""
    rig = Rig()
    rig.program(1, 2, 0x80, rw=1)
    assert rig.inb(0x41) == 0x80
    assert rig.inb(0x41) == 0x80
    rig.program(1, 2, 0x3000, rw=2)
    rig.clock.advance(tick_time(0x100))
    assert rig.inb(0x41) == 0x2F


def test_mode0_one_shot_single_edge() -> None:
    """Mode 0: OUT low at the control word, high at terminal count, and stays high."""
    rig = Rig()
    rig.program(0, 0, 1000)
    assert not rig.bus.levels[0]
    rig.run_until(tick_time(1000) - 1)
    assert rig.irq0_times == []
    rig.run_until(GIGA)
    assert rig.irq0_times == [tick_time(1000)]
    assert rig.bus.levels[0]
    assert rig.clock.pending_events() == []
    ticks = GIGA * PIT_HZ // GIGA
    assert rig.latch_read(0) == (1000 - ticks) % 0x10000    # counts on past zero


def test_mode0_rewrite_restarts() -> None:
    """Mode 0: the first byte of a new count drops OUT and stops counting; the second restarts."""
    rig = Rig()
    rig.program(0, 0, 100)
    rig.run_until(tick_time(200))
    assert rig.bus.levels[0]
    rig.out(0x40, 0x10)
    assert not rig.bus.levels[0]
    rig.clock.advance(tick_time(300))
    rig.out(0x40, 0x00)
    t0 = rig.clock.now
    rig.run_until(t0 + tick_time(0x10) - 1)
    assert len(rig.irq0_times) == 1
    rig.run_until(t0 + tick_time(0x10))
    assert len(rig.irq0_times) == 2


def test_linux_tsc_calibration_channel2() -> None:
    """Linux pit_calibrate_tsc: gate on via port 0x61, counter 2 mode 0, poll 0x61 bit 5."""
    rig = Rig()
    latch = 11931                            # CAL_LATCH: 10 ms
    rig.out(0x61, (rig.inb(0x61) & ~0x02) | 0x01)
    rig.out(0x43, 0xB0)
    t0 = rig.clock.now
    rig.out(0x42, latch & 0xFF)
    assert rig.inb(0x61) & 0x20 == 0
    rig.out(0x42, latch >> 8)
    polls = 0
    while not rig.inb(0x61) & 0x20:
        rig.clock.advance(997)               # a poll loop of 997 instructions
        polls += 1
    assert rig.clock.now >= tick_time(latch, t0=t0)
    assert rig.clock.now - 997 < tick_time(latch, t0=t0)
    assert polls == -(-tick_time(latch) // 997)
    assert rig.inb(0x61) & 0x01


def test_linux_quick_calibrate_msb_reads() -> None:
    """Linux quick_pit_calibrate: counter 2 mode 0 from 0xFFFF; MSB falls every 256 clocks."""
    rig = Rig()
    rig.out(0x61, 0x01)
    rig.program(2, 0, 0xFFFF)
    msbs = []
    for _ in range(5):
        rig.inb(0x42)
        msbs.append(rig.inb(0x42))
        rig.clock.advance(tick_time(256))
    assert msbs == [0xFF, 0xFE, 0xFD, 0xFC, 0xFB]


def test_gate_holds_channel2() -> None:
    """Gate low: mode 0 pauses counting; mode 2 stops with OUT high and reloads on the
    rising edge."""
    rig = Rig()
    rig.program(2, 0, 1000)                  # gate still low (port 0x61 bit 0 = 0)
    rig.clock.advance(tick_time(5000))
    assert rig.latch_read(2) == 1000
    rig.out(0x61, 0x01)
    rig.clock.advance(tick_time(400))
    assert rig.latch_read(2) == 600
    rig.out(0x61, 0x00)
    rig.clock.advance(tick_time(400))
    assert rig.latch_read(2) == 600
    assert rig.inb(0x61) & 0x20 == 0
    rig.out(0x61, 0x01)
    rig.clock.advance(tick_time(600) + 1)
    assert rig.inb(0x61) & 0x20

    rig.program(2, 2, 100)
    rig.clock.advance(tick_time(30))
    rig.out(0x61, 0x00)
    assert rig.inb(0x61) & 0x20
    frozen = rig.latch_read(2)
    rig.clock.advance(tick_time(500))
    assert rig.latch_read(2) == frozen
    rig.out(0x61, 0x01)
    assert rig.latch_read(2) == 100


def test_port61_bits() -> None:
    """Port 0x61: gate and speaker bits read back, refresh bit toggles every 18 clocks."""
    rig = Rig()
    rig.out(0x61, 0xFF)
    value = rig.inb(0x61)
    assert value & 0x0F == 0x0F
    assert value & 0xC0 == 0
    seen = set()
    for _ in range(8):
        seen.add(rig.inb(0x61) & 0x10)
        rig.clock.advance(tick_time(9))
    assert seen == {0x00, 0x10}
    assert rig.inb(0x43) == 0xFF


def test_read_back_status_and_count() -> None:
    """Read-back: status byte (OUT, null count, RW, mode, BCD) read first, then the count."""
    rig = Rig()
    rig.out(0x43, 0x34)                      # counter 0, lobyte/hibyte, mode 2
    rig.out(0x43, 0xE2)                      # read-back status of counter 0
    assert rig.inb(0x40) == 0x80 | 0x40 | 0x34
    rig.out(0x40, 0x00)
    rig.out(0x40, 0x10)
    rig.clock.advance(tick_time(0x10))
    rig.out(0x43, 0xC2)                      # status and count
    rig.clock.advance(tick_time(0x100))
    assert rig.inb(0x40) == 0x80 | 0x34      # count loaded: null count clear
    assert rig.inb(0x40) == 0xF0
    assert rig.inb(0x40) == 0x0F
    rig.out(0x43, 0xD2)                      # count only
    rig.out(0x43, 0xEA)                      # status of counters 0 and 2 (0 already latched)
    assert rig.inb(0x40) == 0x80 | 0x34      # status comes first
    assert rig.inb(0x40) == 0xF0             # the count latched before the second command
    assert rig.inb(0x42) == 0x70             # counter 2 after reset: null count, lo/hi, mode 0


def test_read_back_mode0_out() -> None:
    """Read-back status OUT bit follows mode 0's terminal count."""
    rig = Rig()
    rig.program(1, 0, 10)
    rig.out(0x43, 0xE4)
    assert rig.inb(0x41) & 0x80 == 0
    rig.clock.advance(tick_time(10))
    rig.out(0x43, 0xE4)
    assert rig.inb(0x41) & 0x80


def test_bcd_counting() -> None:
    """BCD: count 0 is 10000 and reads give BCD digits."""
    rig = Rig()
    rig.program(1, 2, 0x0000, bcd=True)
    assert rig.latch_read(1) == 0x0000
    rig.clock.advance(tick_time(1))
    assert rig.latch_read(1) == 0x9999
    rig.clock.advance(tick_time(1235) - tick_time(1))
    assert rig.latch_read(1) == 0x8765
    rig.clock.advance(tick_time(10000) - tick_time(1235))
    assert rig.latch_read(1) == 0x0000


def test_bcd_period() -> None:
    """Mode 2 BCD count 0x1000: IRQ 0 every 1000 clocks."""
    rig = Rig()
    rig.program(0, 2, 0x1000, bcd=True)
    rig.run_until(tick_time(3000))
    assert rig.irq0_times == [0, tick_time(1000), tick_time(2000), tick_time(3000)]


def test_mode3_count_sequence() -> None:
    """Mode 3 odd count: N-1, N-3, ... twice per period; OUT high (N+1)/2 clocks, low (N-1)/2."""
    rig = Rig()
    rig.program(1, 3, 7)
    seen = []
    outs = []
    for k in range(9):
        rig.clock.advance(tick_time(k) - rig.clock.now)
        seen.append(rig.latch_read(1))
        rig.out(0x43, 0xE4)
        outs.append(rig.inb(0x41) >> 7)
    assert seen == [6, 4, 2, 0, 6, 4, 2, 6, 4]
    assert outs == [1, 1, 1, 1, 0, 0, 0, 1, 1]


def test_mode2_new_count_at_next_reload() -> None:
    """Mode 2: a count written during counting takes effect at the end of the current period."""
    rig = Rig()
    rig.program(0, 2, 1000)
    rig.run_until(tick_time(500))
    rig.out(0x40, 2000 & 0xFF)
    rig.out(0x40, 2000 >> 8)
    assert rig.latch_read(0) == 500
    rig.run_until(tick_time(6000))
    assert rig.irq0_times == [0, tick_time(1000), tick_time(3000), tick_time(5000)]


def test_mode3_new_count_at_half_cycle() -> None:
    """Mode 3: a new count takes over at the end of the current half-cycle."""
    rig = Rig()
    rig.program(0, 3, 1000)
    rig.run_until(tick_time(100))
    rig.out(0x40, 400 & 0xFF)
    rig.out(0x40, 400 >> 8)
    rig.run_until(tick_time(500))            # high half of the old count ends: new low half
    assert not rig.bus.levels[0]
    rig.run_until(tick_time(1500))
    assert rig.irq0_times == [0, tick_time(700), tick_time(1100), tick_time(1500)]


def test_mode4_strobe() -> None:
    """Mode 4: OUT high at the control word, low for one clock at terminal count (N), high again."""
    rig = Rig()
    rig.program(0, 4, 50)
    rig.run_until(tick_time(50))
    assert not rig.bus.levels[0]
    rig.run_until(tick_time(1000))
    assert rig.irq0_times == [0, tick_time(51)]


def test_modes_1_and_5_wait_for_gate() -> None:
    """Modes 1 and 5 on counter 2: nothing until a gate rising edge; then OUT follows the mode."""
    rig = Rig()
    rig.program(2, 1, 100)
    rig.clock.advance(tick_time(500))
    assert rig.inb(0x61) & 0x20
    rig.out(0x61, 0x01)
    assert rig.inb(0x61) & 0x20 == 0
    rig.clock.advance(tick_time(100))
    assert rig.inb(0x61) & 0x20
    rig.out(0x61, 0x00)
    rig.program(2, 5, 10)
    rig.out(0x61, 0x01)
    t0 = rig.clock.now
    rig.clock.advance(tick_time(10, t0=t0) - t0)
    assert rig.inb(0x61) & 0x20 == 0
    rig.clock.advance(tick_time(11, t0=t0) - rig.clock.now)
    assert rig.inb(0x61) & 0x20


def test_reprogramming_cancels_events() -> None:
    """A control word resets the counter: its pending event is cancelled, not left to fire."""
    rig = Rig()
    rig.program(0, 2, 1000)
    assert len(rig.clock.pending_events()) == 1
    rig.out(0x43, 0x30)
    assert rig.clock.pending_events() == []
    rig.run_until(GIGA)
    assert rig.irq0_times == [0]


def test_save_load_round_trip() -> None:
    """save_state is plain data; load_state on a fresh PIT re-creates the events it had."""
    rig = Rig()
    rig.program(0, 3, 11932)
    rig.program(2, 0, 0x8000)
    rig.out(0x61, 0x03)
    rig.run_until(tick_time(30000))
    rig.out(0x43, 0x80)                      # a latched count rides along
    state = rig.pit.save_state()

    twin = Rig()
    twin.clock.advance(rig.clock.now)
    twin.pit.load_state(state)
    assert twin.bus.levels[0] == rig.bus.levels[0]
    assert [e.when for e in twin.clock.pending_events()] == \
        [e.when for e in rig.clock.pending_events()]
    for r in (rig, twin):
        assert r.inb(0x42) | r.inb(0x42) << 8 == 0x8000 - 30000
        r.irq0_times.clear()
        r.run_until(GIGA)
    assert twin.irq0_times == rig.irq0_times
    assert len(twin.irq0_times) == 97
    assert twin.latch_read(2) == rig.latch_read(2)
    assert twin.inb(0x61) == rig.inb(0x61)


def test_nonsense_programming_never_raises() -> None:
    """Random writes and reads on every port, wide accesses included, give bytes, never errors."""
    rig = Rig()
    rng = random.Random(8254)
    ports = [0x40, 0x41, 0x42, 0x43, 0x61]
    for _ in range(20000):
        if rng.random() < 0.5:
            rig.pit.io_write(rng.choice(ports), rng.choice((1, 1, 1, 2, 4)), rng.getrandbits(32))
        else:
            assert 0 <= rig.inb(rng.choice(ports)) <= 0xFF
        rig.clock.advance(rng.randrange(2000))
        rig.clock.fire_due()
        rig.service()
    rig.program(0, 2, 100)
    rig.irq0_times.clear()
    t0 = rig.clock.now
    rig.run_until(t0 + tick_time(1000))
    assert [t for t in rig.irq0_times if t > t0] == [t0 + tick_time(100 * k) for k in range(1, 11)]


def test_reset_state() -> None:
    """Reset: nothing counts, no events, IRQ 0 low, counter 2's gate low."""
    rig = Rig()
    rig.program(0, 3, 100)
    rig.pit.reset()
    assert rig.clock.pending_events() == []
    assert not rig.bus.levels[0]
    assert rig.inb(0x61) & 0x01 == 0
