"""MC146818 RTC/CMOS behaviour at the register level (no CPU)."""
from __future__ import annotations

from datetime import datetime

from emu.bus import IrqBus, PortBus
from emu.clock import Clock
from emu.devices.rtc import Rtc

IPS = 1_000_000
START = datetime(2026, 11, 22, 12, 34, 56)  # a Sunday


class EdgeCounter:
    """An IrqSink counting rising edges per line."""

    def __init__(self) -> None:
        self.rises = [0] * 16
        self.level = [False] * 16

    def set_irq(self, irq: int, level: bool) -> None:
        if level and not self.level[irq]:
            self.rises[irq] += 1
        self.level[irq] = level


def make(start: datetime = START, ram_size: int = 256 << 20):
    clock = Clock(ips=IPS)
    irqs = IrqBus()
    edges = EdgeCounter()
    irqs.attach(edges)
    rtc = Rtc(clock, irqs.line(8), start, ram_size)
    bus = PortBus()
    bus.attach(rtc)
    return clock, irqs, edges, rtc, bus


def rd(bus: PortBus, index: int) -> int:
    bus.write(0x70, 1, index)
    return bus.read(0x71, 1)


def wr(bus: PortBus, index: int, value: int) -> None:
    bus.write(0x70, 1, index)
    bus.write(0x71, 1, value)


def time_regs(bus: PortBus) -> list[int]:
    return [rd(bus, i) for i in (0, 2, 4, 6, 7, 8, 9, 0x32)]


def run_until(clock: Clock, t: int) -> None:
    """Advance virtual time to `t`, firing events on the way as the run loop would."""
    while True:
        nd = clock.next_deadline()
        if nd is None or nd > t:
            break
        clock.advance(max(nd - clock.now, 0))
        clock.fire_due()
    clock.advance(t - clock.now)


def test_power_on_reads_bcd_24h():
    """Status B after POST: BCD, 24-hour; the registers hold `start` (weekday 1 = Sunday,
    century in 0x32)."""
    _, _, _, _, bus = make()
    assert rd(bus, 0x0B) == 0x02
    assert time_regs(bus) == [0x56, 0x34, 0x12, 0x01, 0x22, 0x11, 0x26, 0x20]


def test_binary_mode():
    """Status B DM (bit 2) = 1: the time registers read in binary."""
    _, _, _, _, bus = make()
    wr(bus, 0x0B, 0x06)
    assert time_regs(bus) == [56, 34, 12, 1, 22, 11, 26, 20]


def test_12_hour_mode_bcd_and_binary():
    """Status B bit 1 = 0: hours 1-12 with bit 7 = PM; 12:xx is 12 PM, 00:xx is 12 AM."""
    _, _, _, _, bus = make()
    wr(bus, 0x0B, 0x00)
    assert rd(bus, 4) == 0x92
    wr(bus, 0x0B, 0x04)
    assert rd(bus, 4) == 0x8C
    _, _, _, _, bus = make(datetime(2026, 1, 1, 0, 5, 0))
    wr(bus, 0x0B, 0x00)
    assert rd(bus, 4) == 0x12
    _, _, _, _, bus = make(datetime(2026, 1, 1, 13, 5, 0))
    wr(bus, 0x0B, 0x00)
    assert rd(bus, 4) == 0x81


def test_time_follows_virtual_time():
    """The time is start + clock.now / clock.ips seconds: 61 virtual seconds later the minute
    and second have moved on."""
    clock, _, _, _, bus = make()
    clock.advance(IPS * 61 - 1)
    assert rd(bus, 0) == 0x56 and rd(bus, 2) == 0x35
    clock.advance(1)
    assert rd(bus, 0) == 0x57 and rd(bus, 2) == 0x35


def test_year_rollover():
    """Dec 31 23:59:59 + 2 s is Jan 1 00:00:01 of the next year (weekday advances too)."""
    clock, _, _, _, bus = make(datetime(2026, 12, 31, 23, 59, 59))
    clock.advance(2 * IPS)
    # 2027-01-01 is a Friday: weekday 6.
    assert time_regs(bus) == [0x01, 0x00, 0x00, 0x06, 0x01, 0x01, 0x27, 0x20]


def test_century_rollover():
    """1999-12-31 23:59:59 + 1 s: year 00, century 20."""
    clock, _, _, _, bus = make(datetime(1999, 12, 31, 23, 59, 59))
    assert rd(bus, 0x32) == 0x19
    clock.advance(IPS)
    assert rd(bus, 9) == 0x00 and rd(bus, 0x32) == 0x20


def test_uip_in_last_244us_of_each_second():
    """Status A UIP is 1 for the 244 us before each update and 0 otherwise."""
    clock, _, _, _, bus = make()
    window = clock.insns_for_ns(244_000)
    assert not rd(bus, 0x0A) & 0x80
    clock.advance(IPS - window - 1)
    assert not rd(bus, 0x0A) & 0x80
    clock.advance(1)
    assert rd(bus, 0x0A) & 0x80
    assert rd(bus, 0) == 0x56  # still the old second
    clock.advance(window)
    assert not rd(bus, 0x0A) & 0x80
    assert rd(bus, 0) == 0x57
    assert rd(bus, 0x0A) & 0x7F == 0x26


def count_irq8_in_one_second(clock, edges, bus) -> int:
    """Run one virtual second, reading status C after each IRQ 8 as an interrupt handler does."""
    start_rises = edges.rises[8]
    end = clock.now + IPS
    while True:
        nd = clock.next_deadline()
        if nd is None or nd > end:
            break
        clock.advance(nd - clock.now)
        clock.fire_due()
        if edges.level[8]:
            rd(bus, 0x0C)
    clock.advance(end - clock.now)
    return edges.rises[8] - start_rises


def test_periodic_interrupt_rate():
    """PIE with rate 6 gives 1024 IRQ 8 per virtual second, rate 15 gives 2, rate 3 8192."""
    clock, _, edges, _, bus = make()
    wr(bus, 0x0B, 0x42)
    assert count_irq8_in_one_second(clock, edges, bus) == 1024
    wr(bus, 0x0A, 0x2F)
    rd(bus, 0x0C)
    assert count_irq8_in_one_second(clock, edges, bus) == 2
    wr(bus, 0x0A, 0x23)
    rd(bus, 0x0C)
    assert count_irq8_in_one_second(clock, edges, bus) == 8192


def test_status_c_read_lowers_irq():
    """IRQF, PF set after a periodic tick; reading status C returns them, clears them and
    lowers IRQ 8; a second read returns 0."""
    clock, irqs, _, _, bus = make()
    wr(bus, 0x0B, 0x42)
    run_until(clock, clock.now + IPS // 100)
    assert irqs.levels[8]
    assert rd(bus, 0x0C) == 0xC0
    assert not irqs.levels[8]
    assert rd(bus, 0x0C) == 0x00


def test_flags_set_without_enables():
    """PF and UF are set even with their interrupts disabled; IRQF and IRQ 8 stay clear."""
    clock, irqs, _, _, bus = make()
    rd(bus, 0x0C)
    clock.advance(IPS)
    assert rd(bus, 0x0C) == 0x50
    assert not irqs.levels[8]


def test_update_ended_interrupt():
    """UIE: one IRQ 8 per virtual second, status C reads UF (with IRQF)."""
    clock, _, edges, _, bus = make()
    wr(bus, 0x0A, 0x20)  # periodic rate 0: only update interrupts
    rd(bus, 0x0C)
    wr(bus, 0x0B, 0x12)
    assert count_irq8_in_one_second(clock, edges, bus) == 1


def test_alarm_with_dont_care():
    """AIE with alarm seconds = 0 and minutes/hours "don't care" (0xC0-0xFF) fires once a
    minute, at second 00."""
    clock, irqs, edges, _, bus = make()
    wr(bus, 0x0A, 0x20)
    wr(bus, 0x01, 0x00)
    wr(bus, 0x03, 0xC0)
    wr(bus, 0x05, 0xFF)
    rd(bus, 0x0C)
    wr(bus, 0x0B, 0x22)
    run_until(clock, 3 * IPS)  # 12:34:59
    assert not irqs.levels[8]
    run_until(clock, 4 * IPS)  # 12:35:00
    assert irqs.levels[8]
    assert rd(bus, 0) == 0x00 and rd(bus, 2) == 0x35
    assert rd(bus, 0x0C) & 0xE0 == 0xA0
    rises = edges.rises[8]
    run_until(clock, 64 * IPS)
    assert edges.rises[8] == rises + 1


def test_alarm_exact_time():
    """A fully specified alarm matches once, at that time."""
    clock, irqs, _, _, bus = make()
    wr(bus, 0x0A, 0x20)
    wr(bus, 0x01, 0x10)
    wr(bus, 0x03, 0x35)
    wr(bus, 0x05, 0x12)
    wr(bus, 0x0B, 0x22)
    run_until(clock, 13 * IPS)
    assert not irqs.levels[8]
    run_until(clock, 14 * IPS)  # 12:35:10
    assert irqs.levels[8]


def test_set_bit_stops_and_time_continues_from_written():
    """SET = 1 stops updates (and clears UIE) so the guest can write the time; after SET = 0
    the time counts on from what was written."""
    clock, _, _, _, bus = make()
    wr(bus, 0x0B, 0x82 | 0x10)
    assert rd(bus, 0x0B) == 0x82
    for index, value in ((0, 0x00), (2, 0x00), (4, 0x08), (7, 0x31), (8, 0x03), (9, 0x27)):
        wr(bus, index, value)
    clock.advance(5 * IPS)
    assert rd(bus, 0) == 0x00  # stopped
    assert not rd(bus, 0x0A) & 0x80
    wr(bus, 0x0B, 0x02)
    clock.advance(IPS)
    assert time_regs(bus)[:3] == [0x01, 0x00, 0x08]
    assert [rd(bus, 7), rd(bus, 8), rd(bus, 9)] == [0x31, 0x03, 0x27]


def test_write_day_before_month_is_not_clamped_early():
    """While SET is on the registers are plain bytes: day 31 written while the month is still
    November (30 days) survives once the month becomes March."""
    _, _, _, rtc, bus = make()
    wr(bus, 0x0B, 0x82)
    wr(bus, 7, 0x31)
    wr(bus, 8, 0x03)
    wr(bus, 0x0B, 0x02)
    assert rtc.now() == datetime(2026, 3, 31, 12, 34, 56)


def test_divider_reset_then_first_update_half_second_later():
    """Divider 11x holds the time; setting 010 again brings the first update 0.5 s later."""
    clock, _, _, _, bus = make()
    wr(bus, 0x0A, 0x66)
    clock.advance(3 * IPS + 123)
    assert rd(bus, 0) == 0x56
    wr(bus, 0x0A, 0x26)
    clock.advance(IPS // 2 - 1)
    assert rd(bus, 0) == 0x56
    clock.advance(1)
    assert rd(bus, 0) == 0x57


def test_memory_size_bytes_256mib():
    """CMOS memory bytes for 256 MiB: base 640 KiB, extended KiB capped at 0xFFFF in both
    copies, 3840 64-KiB blocks above 16 MiB; checksum over 0x10-0x2D."""
    _, _, _, _, bus = make(ram_size=256 << 20)
    assert rd(bus, 0x15) | rd(bus, 0x16) << 8 == 640
    assert rd(bus, 0x17) | rd(bus, 0x18) << 8 == 0xFFFF
    assert rd(bus, 0x30) | rd(bus, 0x31) << 8 == 0xFFFF
    assert rd(bus, 0x34) | rd(bus, 0x35) << 8 == 3840
    assert rd(bus, 0x2E) << 8 | rd(bus, 0x2F) == sum(rd(bus, i) for i in range(0x10, 0x2E))


def test_memory_size_bytes_small():
    """32 MiB: 31 MiB extended (31744 KiB), 256 blocks above 16 MiB."""
    _, _, _, _, bus = make(ram_size=32 << 20)
    assert rd(bus, 0x17) | rd(bus, 0x18) << 8 == 31 * 1024
    assert rd(bus, 0x34) | rd(bus, 0x35) << 8 == 256


def test_nmi_disable_bit_in_index():
    """Bit 7 of the index byte masks NMI and is not part of the register number."""
    _, _, _, rtc, bus = make()
    wr(bus, 0x80 | 0x40, 0x5A)
    assert rtc.nmi_disabled
    assert rd(bus, 0x40) == 0x5A
    assert not rtc.nmi_disabled
    assert rd(bus, 0x80 | 0x0D) == 0x80
    assert rd(bus, 0x80 | 0x00) == 0x56


def test_index_port_reads_ff():
    """Port 0x70 is write-only on PCs."""
    _, _, _, _, bus = make()
    bus.write(0x70, 1, 0x0B)
    assert bus.read(0x70, 1) == 0xFF


def test_nvram_persists_and_shutdown_byte():
    """CMOS RAM bytes keep what is written (0x0F shutdown status, 0x7F last byte), across
    the RESET pin too."""
    _, _, _, rtc, bus = make()
    wr(bus, 0x0F, 0x0A)
    wr(bus, 0x7F, 0x99)
    rtc.reset()
    assert rd(bus, 0x0F) == 0x0A and rd(bus, 0x7F) == 0x99


def test_reset_clears_enables_and_lowers_irq():
    """RESET pin: PIE/AIE/UIE/SQWE and status C clear, IRQ 8 falls; DM and 24/12 stay."""
    clock, irqs, _, rtc, bus = make()
    wr(bus, 0x0B, 0x7E)
    run_until(clock, IPS)
    assert irqs.levels[8]
    rtc.reset()
    assert not irqs.levels[8]
    assert rd(bus, 0x0B) == 0x06
    assert clock.next_deadline() is None


def test_save_load_round_trip():
    """save_state/load_state carry time, registers and RAM."""
    clock, _, _, rtc, bus = make()
    wr(bus, 0x0B, 0x06)
    wr(bus, 0x50, 0x12)
    clock.advance(10 * IPS)
    state = rtc.save_state()
    clock2, _, _, rtc2, bus2 = make(datetime(2000, 1, 1))
    clock2.advance(10 * IPS)
    rtc2.load_state(state)
    assert time_regs(bus2) == [6, 35, 12, 1, 22, 11, 26, 20]
    assert rd(bus2, 0x50) == 0x12
