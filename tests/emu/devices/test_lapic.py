"""Local APIC and IMCR at device level: no CPU, a bare Clock stepped by hand."""
from __future__ import annotations

import pytest

from emu.bus import InterruptPin
from emu.clock import Clock
from emu.devices.lapic import (
    APIC_BUS_HZ,
    ESR_ILLEGAL_REGISTER,
    ESR_RECV_ILLEGAL_VECTOR,
    ESR_SEND_ILLEGAL_VECTOR,
    LAPIC_BASE,
    LVT_ERROR,
    LVT_LINT0,
    LVT_TIMER,
    REG_APR,
    REG_DFR,
    REG_EOI,
    REG_ESR,
    REG_ICR_HI,
    REG_ICR_LO,
    REG_ID,
    REG_IRR,
    REG_ISR,
    REG_LDR,
    REG_PPR,
    REG_SVR,
    REG_TIMER_CUR,
    REG_TIMER_DIV,
    REG_TIMER_INIT,
    REG_TMR,
    REG_TPR,
    REG_VERSION,
    Imcr,
    LocalApic,
)

MASKED = 1 << 16
PERIODIC = 1 << 17
EXTINT = 7 << 8
DIV_1, DIV_2, DIV_16, DIV_128 = 0xB, 0x0, 0x3, 0xA


class FakePic:
    """An 8259A pair as an InterruptSource: a queue of vectors."""

    def __init__(self) -> None:
        self.queue: list[int] = []
        self.acks = 0

    def pending(self) -> bool:
        return bool(self.queue)

    def acknowledge(self) -> int | None:
        self.acks += 1
        return self.queue.pop(0) if self.queue else 0x27


def rd(apic: LocalApic, off: int, size: int = 4) -> int:
    return apic.mmio_read(apic.base + off, size)


def wr(apic: LocalApic, off: int, value: int) -> None:
    apic.mmio_write(apic.base + off, 4, value)


def enabled_apic(clock: Clock | None = None, **kw) -> LocalApic:
    apic = LocalApic(clock or Clock(), **kw)
    wr(apic, REG_SVR, 0x1FF)
    return apic


def take(apic: LocalApic) -> int | None:
    """INTA if the APIC asks for the CPU, else None."""
    return apic.acknowledge() if apic.pending() else None


def run_until(clock: Clock, apic: LocalApic, end: int) -> list[tuple[int, int]]:
    """Step event to event up to `end`, taking and retiring every interrupt: (time, vector)."""
    got = []
    while True:
        nd = clock.next_deadline()
        if nd is None or nd > end:
            clock.advance(end - clock.now)
            return got
        clock.advance(nd - clock.now)
        clock.fire_due()
        while apic.pending():
            got.append((clock.now, apic.acknowledge()))
            wr(apic, REG_EOI, 0)


# -- identification and reset ---------------------------------------------------------------


def test_version_and_id_reads():
    """SDM 10.4.8 / 10.4.6: version 0x14 with max LVT entry 5; ID in bits 24-31."""
    apic = LocalApic(Clock(), apic_id=3)
    assert rd(apic, REG_VERSION) == 0x00050014
    assert rd(apic, REG_ID) == 3 << 24
    wr(apic, REG_ID, 0x07000000)
    assert rd(apic, REG_ID) == 0x07000000
    wr(apic, REG_VERSION, 0)  # read-only
    assert rd(apic, REG_VERSION) == 0x00050014
    apic.reset()
    assert rd(apic, REG_ID) == 3 << 24


def test_reset_state():
    """SDM 10.4.7.1: LVTs masked, SVR 0xFF (software disabled), DFR all ones, TPR 0."""
    apic = LocalApic(Clock())
    for off in range(0x320, 0x380, 0x10):
        assert rd(apic, off) == MASKED
    assert rd(apic, REG_SVR) == 0xFF
    assert rd(apic, REG_DFR) == 0xFFFFFFFF
    assert rd(apic, REG_TPR) == 0
    assert not apic.software_enabled


def test_odd_sizes_and_offsets():
    """SDM 10.4.1: registers are 32-bit on 16-byte slots; narrower reads give byte lanes, bytes
    4-15 of a slot read 0; narrow or misaligned writes are ignored (defined here)."""
    apic = LocalApic(Clock())
    assert rd(apic, REG_VERSION, 1) == 0x14
    assert rd(apic, REG_VERSION + 2, 1) == 0x05
    assert rd(apic, REG_VERSION + 4, 4) == 0
    apic.mmio_write(LAPIC_BASE + REG_TPR, 1, 0x50)
    apic.mmio_write(LAPIC_BASE + REG_TPR + 4, 4, 0x50)
    assert rd(apic, REG_TPR) == 0


def test_reserved_register_sets_illegal_register_error():
    """SDM ESR bit 7: access to a reserved register (no CMCI LVT here: max LVT is 5)."""
    apic = enabled_apic()
    assert rd(apic, 0x2F0) == 0
    wr(apic, REG_ESR, 0)
    assert rd(apic, REG_ESR) == ESR_ILLEGAL_REGISTER


# -- SVR, priority, EOI ----------------------------------------------------------------------


def test_svr_software_enable():
    """SDM 10.4.7.2: software disabled accepts no fixed interrupts and keeps LVTs masked;
    setting SVR bit 8 enables it."""
    apic = LocalApic(Clock())
    assert not apic.accept(0x40)
    assert not apic.pending()
    wr(apic, LVT_TIMER, 0x30)  # mask cannot be cleared while disabled
    assert rd(apic, LVT_TIMER) == MASKED | 0x30
    wr(apic, REG_SVR, 0x1FF)
    assert apic.software_enabled
    wr(apic, LVT_TIMER, 0x30)
    assert rd(apic, LVT_TIMER) == 0x30
    assert apic.accept(0x40)
    assert take(apic) == 0x40
    wr(apic, REG_SVR, 0xFF)
    assert rd(apic, LVT_TIMER) & MASKED


def test_disabled_apic_holds_pending_irr():
    """SDM 10.4.7.2: pending IRR bits are held while software disabled, delivered on enable."""
    apic = enabled_apic()
    apic.accept(0x50)
    wr(apic, REG_SVR, 0xFF)
    assert not apic.pending()
    wr(apic, REG_SVR, 0x1FF)
    assert take(apic) == 0x50


def test_tpr_blocks_lower_classes():
    """SDM 10.8.3.1: an interrupt is delivered only if its class is above PPR's class."""
    apic = enabled_apic()
    wr(apic, REG_TPR, 0x50)
    apic.accept(0x55)
    assert not apic.pending()
    assert rd(apic, REG_PPR) == 0x50
    apic.accept(0x61)
    assert take(apic) == 0x61
    wr(apic, REG_EOI, 0)
    wr(apic, REG_TPR, 0x40)
    assert take(apic) == 0x55


def test_higher_class_preempts_same_class_waits():
    """SDM 10.8.3.1: a higher class nests over one in service; same or lower class waits for EOI;
    EOI retires the highest ISR bit."""
    apic = enabled_apic()
    apic.accept(0x31)
    assert take(apic) == 0x31
    assert rd(apic, REG_PPR) == 0x30
    apic.accept(0x3E)  # same class: waits
    apic.accept(0x22)  # lower class: waits
    assert not apic.pending()
    apic.accept(0x45)  # higher class: preempts
    assert take(apic) == 0x45
    assert rd(apic, REG_ISR + 0x20) == 1 << (0x45 - 0x40)
    assert rd(apic, REG_ISR + 0x10) == 1 << (0x31 - 0x20)
    wr(apic, REG_EOI, 0)  # retires 0x45
    assert not apic.pending()
    wr(apic, REG_EOI, 0)  # retires 0x31
    assert take(apic) == 0x3E
    wr(apic, REG_EOI, 0)
    assert take(apic) == 0x22
    wr(apic, REG_EOI, 0)
    assert rd(apic, REG_PPR) == 0


def test_irr_isr_tmr_registers():
    """SDM 10.8.4: IRR/ISR/TMR are 8 x 32-bit banks; TMR set for level, cleared for edge."""
    apic = enabled_apic()
    apic.accept(0x81, level_triggered=True)
    assert rd(apic, REG_IRR + 0x40) == 1 << 1
    assert rd(apic, REG_TMR + 0x40) == 1 << 1
    assert take(apic) == 0x81
    assert rd(apic, REG_IRR + 0x40) == 0
    assert rd(apic, REG_ISR + 0x40) == 1 << 1
    apic.accept(0x81)
    assert rd(apic, REG_TMR + 0x40) == 0


def test_level_eoi_broadcast():
    """SDM 10.8.5: EOI of a level-triggered vector (TMR set) is broadcast; edge EOIs are not."""
    apic = enabled_apic()
    heard: list[int] = []
    apic.add_eoi_listener(heard.append)
    apic.accept(0x60, level_triggered=True)
    apic.accept(0x70)
    assert take(apic) == 0x70
    assert take(apic) is None  # 0x60 is a lower class than 0x70 in service
    wr(apic, REG_EOI, 0)
    assert heard == []
    assert take(apic) == 0x60
    wr(apic, REG_EOI, 0)
    assert heard == [0x60]


def test_spurious_vector_when_nothing_deliverable_at_inta():
    """SDM 10.9: if the interrupt is no longer deliverable at INTA, the SVR vector comes back
    and no ISR bit is set."""
    apic = enabled_apic()
    wr(apic, REG_SVR, 0x1EF)
    assert apic.acknowledge() == 0xEF
    assert rd(apic, REG_ISR + 0x70) == 0


def test_apr_formula():
    """SDM 10.6.2.4: APR = TPR when TPR class >= IRRV and > ISRV, else the class maximum."""
    apic = enabled_apic()
    wr(apic, REG_TPR, 0x35)
    assert rd(apic, REG_APR) == 0x35
    apic.accept(0x81)
    assert rd(apic, REG_APR) == 0x80


# -- errors -----------------------------------------------------------------------------------


def test_illegal_vector_sets_esr_write_then_read():
    """SDM 10.5.3: vectors 0-15 are illegal (received: bit 6, sent: bit 5); the ESR shows errors
    only after a write, and a second write clears them."""
    apic = enabled_apic()
    assert not apic.accept(5)
    assert not apic.pending()
    assert rd(apic, REG_ESR) == 0  # not latched yet
    wr(apic, REG_ESR, 0)
    assert rd(apic, REG_ESR) == ESR_RECV_ILLEGAL_VECTOR
    wr(apic, REG_ICR_LO, (1 << 18) | 7)  # self-IPI with vector 7
    wr(apic, REG_ESR, 0)
    assert rd(apic, REG_ESR) == ESR_SEND_ILLEGAL_VECTOR
    wr(apic, REG_ESR, 0)
    assert rd(apic, REG_ESR) == 0


def test_lvt_error_interrupt():
    """SDM 10.5.3: a detected error raises the LVT error interrupt when unmasked; an illegal
    error vector is logged but does not recurse."""
    apic = enabled_apic()
    wr(apic, LVT_ERROR, 0xFE)
    apic.accept(3)
    assert take(apic) == 0xFE
    wr(apic, REG_EOI, 0)
    wr(apic, LVT_ERROR, 0x02)
    apic.accept(3)
    assert not apic.pending()


# -- ICR ----------------------------------------------------------------------------------


def test_self_ipi_via_icr_delivery_status_idle():
    """SDM 10.6.1: fixed IPI with the self shorthand lands in IRR; delivery status (bit 12)
    reads 0 once the write completed."""
    apic = enabled_apic()
    wr(apic, REG_ICR_LO, (1 << 18) | 0x4000 | 0x91)
    assert not rd(apic, REG_ICR_LO) & (1 << 12)
    assert rd(apic, REG_ICR_LO) & 0xFF == 0x91
    assert take(apic) == 0x91


def test_icr_destinations():
    """SDM 10.6.1/10.6.2: all-including-self reaches us, all-excluding-self does not; physical
    destination by ID; logical flat and cluster models through LDR/DFR; INIT/SIPI ignored."""
    apic = enabled_apic(apic_id=2)
    wr(apic, REG_ICR_LO, (2 << 18) | 0x41)
    assert take(apic) == 0x41
    wr(apic, REG_EOI, 0)
    wr(apic, REG_ICR_LO, (3 << 18) | 0x42)
    assert take(apic) is None
    wr(apic, REG_ICR_HI, 5 << 24)
    wr(apic, REG_ICR_LO, 0x43)
    assert take(apic) is None
    wr(apic, REG_ICR_HI, 2 << 24)
    wr(apic, REG_ICR_LO, 0x44)
    assert take(apic) == 0x44
    wr(apic, REG_EOI, 0)
    wr(apic, REG_LDR, 0x04000000)  # flat model (DFR reset value)
    wr(apic, REG_ICR_HI, 0x06 << 24)
    wr(apic, REG_ICR_LO, (1 << 11) | 0x45)
    assert take(apic) == 0x45
    wr(apic, REG_EOI, 0)
    wr(apic, REG_DFR, 0x0FFFFFFF)  # cluster model: cluster 3, member bit 1
    wr(apic, REG_LDR, 0x32000000)
    assert apic.accepts_destination(0x32, logical=True)
    assert apic.accepts_destination(0xF2, logical=True)
    assert not apic.accepts_destination(0x22, logical=True)
    assert not apic.accepts_destination(0x31, logical=True)
    wr(apic, REG_ICR_LO, (2 << 18) | (5 << 8))  # INIT to all
    wr(apic, REG_ICR_LO, (2 << 18) | (6 << 8) | 0x10)  # STARTUP to all
    assert take(apic) is None


# -- timer --------------------------------------------------------------------------------


def test_periodic_timer_exact_count_per_virtual_second():
    """SDM 10.5.4: periodic mode reloads the initial count; 62500 ticks / 16 at 100 MHz is
    10 ms, so exactly 100 interrupts in one virtual second, at exact instruction counts."""
    clock = Clock()
    apic = enabled_apic(clock)
    wr(apic, REG_TIMER_DIV, DIV_16)
    wr(apic, LVT_TIMER, PERIODIC | 0xEC)
    wr(apic, REG_TIMER_INIT, 62500)
    got = run_until(clock, apic, clock.ips)
    assert len(got) == 100
    assert all(v == 0xEC for _, v in got)
    assert [t for t, _ in got] == [k * clock.ips // 100 for k in range(1, 101)]


def test_periodic_timer_does_not_drift():
    """SDM 10.5.4 with an awkward ratio: expiry k falls at ceil(k*count*div*ips/bus), so the
    count over one second is floor(bus/(count*div)) whatever the rounding per period."""
    clock = Clock(ips=999_999_937)
    apic = enabled_apic(clock)
    wr(apic, REG_TIMER_DIV, DIV_1)
    wr(apic, LVT_TIMER, PERIODIC | 0x80)
    wr(apic, REG_TIMER_INIT, 300_007)
    got = run_until(clock, apic, clock.ips)
    assert len(got) == APIC_BUS_HZ // 300_007
    k = len(got)
    assert got[-1][0] == -(-k * 300_007 * clock.ips // APIC_BUS_HZ)


def test_one_shot_timer_fires_once_and_count_reaches_zero():
    """SDM 10.5.4: one-shot counts down once; the current count falls and stays at 0."""
    clock = Clock()
    apic = enabled_apic(clock)
    wr(apic, REG_TIMER_DIV, DIV_1)
    wr(apic, LVT_TIMER, 0x90)
    wr(apic, REG_TIMER_INIT, 1000)  # 10 instructions per tick: expires at 10000
    assert rd(apic, REG_TIMER_CUR) == 1000
    clock.advance(2500)
    assert rd(apic, REG_TIMER_CUR) == 750
    clock.advance(5000)
    assert rd(apic, REG_TIMER_CUR) == 250
    got = run_until(clock, apic, clock.ips)
    assert got == [(10000, 0x90)]
    assert rd(apic, REG_TIMER_CUR) == 0
    assert rd(apic, REG_TIMER_INIT) == 1000


def test_timer_stop_and_mask():
    """SDM 10.5.4: writing initial count 0 stops the timer; a masked timer counts but does not
    interrupt."""
    clock = Clock()
    apic = enabled_apic(clock)
    wr(apic, LVT_TIMER, PERIODIC | 0x90)
    wr(apic, REG_TIMER_INIT, 1000)
    wr(apic, REG_TIMER_INIT, 0)
    assert clock.next_deadline() is None
    assert rd(apic, REG_TIMER_CUR) == 0
    wr(apic, LVT_TIMER, MASKED | PERIODIC | 0x90)
    wr(apic, REG_TIMER_INIT, 1000)
    assert run_until(clock, apic, 1_000_000) == []
    assert rd(apic, REG_TIMER_CUR) > 0


def test_divide_configuration_changes_rate():
    """SDM 10.5.4 figure 10-10: divide codes 1011b = 1, 0000b = 2, 0011b = 16, 1010b = 128;
    a running countdown continues from its current count at the new rate."""
    for code, div in ((DIV_1, 1), (DIV_2, 2), (DIV_16, 16), (DIV_128, 128)):
        clock = Clock()
        apic = enabled_apic(clock)
        wr(apic, REG_TIMER_DIV, code)
        wr(apic, LVT_TIMER, PERIODIC | 0x90)
        wr(apic, REG_TIMER_INIT, 1000)
        got = run_until(clock, apic, 10_000_000)
        assert len(got) == 10_000_000 * APIC_BUS_HZ // (1000 * div * clock.ips)
    clock = Clock()
    apic = enabled_apic(clock)
    wr(apic, REG_TIMER_DIV, DIV_1)
    wr(apic, LVT_TIMER, 0x90)
    wr(apic, REG_TIMER_INIT, 1000)
    clock.advance(5000)  # half way: 500 left
    wr(apic, REG_TIMER_DIV, DIV_2)
    assert rd(apic, REG_TIMER_CUR) == 500
    assert run_until(clock, apic, 100_000) == [(15000, 0x90)]


def test_timer_mode_switch_keeps_counting():
    """SDM 10.5.4: switching one-shot to periodic while counting keeps the current countdown
    and then reloads the initial count."""
    clock = Clock()
    apic = enabled_apic(clock)
    wr(apic, REG_TIMER_DIV, DIV_1)
    wr(apic, LVT_TIMER, 0x90)
    wr(apic, REG_TIMER_INIT, 1000)
    clock.advance(4000)
    wr(apic, LVT_TIMER, PERIODIC | 0x90)
    got = run_until(clock, apic, 30_000)
    assert [t for t, _ in got] == [10000, 20000, 30000]


def test_timer_save_load_reschedules():
    """save_state/load_state: a restored APIC re-arms its timer at the same instruction count."""
    clock = Clock()
    apic = enabled_apic(clock)
    wr(apic, REG_TIMER_DIV, DIV_1)
    wr(apic, LVT_TIMER, PERIODIC | 0x90)
    wr(apic, REG_TIMER_INIT, 1000)
    clock.advance(3000)
    state = apic.save_state()
    apic.reset()
    assert clock.next_deadline() is None
    apic.load_state(state)
    assert clock.next_deadline() == 10000
    assert rd(apic, REG_TIMER_CUR) == 700
    assert run_until(clock, apic, 20000) == [(10000, 0x90), (20000, 0x90)]


# -- LINT0 ExtINT and the IMCR ---------------------------------------------------------------


def test_extint_through_lint0():
    """SDM 10.5.1 / 10.9.4 note: LINT0 in ExtINT mode passes the 8259A's INT to the CPU and the
    vector comes from the 8259A's INTA, bypassing IRR, ISR and priority."""
    apic = enabled_apic()
    pic = FakePic()
    apic.connect_lint0(pic)
    pic.queue.append(0x20)
    assert not apic.pending()  # LINT0 masked
    wr(apic, LVT_LINT0, EXTINT)
    wr(apic, REG_TPR, 0xF0)  # priority does not apply to ExtINT
    assert apic.pending()
    assert apic.acknowledge() == 0x20
    assert rd(apic, REG_ISR) == 0 and rd(apic, REG_ISR + 0x10) == 0
    assert not apic.pending()


def test_global_disable_makes_lint0_the_intr_pin():
    """SDM 10.4.3: with IA32_APIC_BASE[11] clear the APIC is off, its state is lost, and LINT0
    is the processor's INTR input."""
    apic = enabled_apic()
    pic = FakePic()
    apic.connect_lint0(pic)
    apic.accept(0x50)
    apic.set_global_enable(False)
    assert rd(apic, REG_VERSION) == 0xFFFFFFFF
    pic.queue.append(0x21)
    assert apic.acknowledge() == 0x21
    apic.set_global_enable(True)
    assert not apic.software_enabled
    assert rd(apic, REG_IRR + 0x20) == 0


def test_imcr_switching():
    """MP spec 1.4 §3.6.2.1: reset is PIC mode (8259A straight to INTR, LAPIC's own interrupts
    still reach the core); 0x70 -> port 0x22, 1 -> port 0x23 selects APIC mode (8259A only via
    LINT0). No double delivery in either mode."""
    clock = Clock()
    apic = enabled_apic(clock)
    pic = FakePic()
    pin = InterruptPin()
    imcr = Imcr(pin, pic, apic)
    wr(apic, LVT_LINT0, EXTINT)  # programmed, but LINT0 is cut off in PIC mode

    assert not imcr.apic_mode
    assert pin.sources == [pic, apic]
    pic.queue.append(0x20)
    assert not apic.pending()  # PIC not visible through LINT0
    assert pin.acknowledge() == 0x20
    assert pic.acks == 1 and not pin.pending()
    apic.accept(0x60)  # an IOAPIC message or the timer
    assert pin.acknowledge() == 0x60
    wr(apic, REG_EOI, 0)

    imcr.io_write(0x22, 1, 0x70)
    imcr.io_write(0x23, 1, 0x01)
    assert imcr.apic_mode
    assert imcr.io_read(0x23, 1) == 1
    assert pin.sources == [apic]
    pic.queue.append(0x21)
    assert pin.pending()
    assert pin.acknowledge() == 0x21
    assert pic.acks == 2 and not pin.pending()

    imcr.io_write(0x22, 2, 0x0070)  # word write: select then data 0 -> PIC mode
    assert not imcr.apic_mode
    assert pin.sources == [pic, apic]
    imcr.io_write(0x22, 1, 0x71)  # another index: data port ignores writes
    imcr.io_write(0x23, 1, 0x01)
    assert not imcr.apic_mode
    assert imcr.io_read(0x23, 1) == 0xFF
    state = imcr.save_state()
    imcr.io_write(0x22, 1, 0x70)
    imcr.io_write(0x23, 1, 0x01)
    imcr.load_state(state)
    assert pin.sources == [pic, apic]
    imcr.io_write(0x23, 1, 0x01)
    imcr.reset()
    assert not imcr.apic_mode


def test_on_interrupt_hook():
    """Run-loop contract: on_interrupt fires when an interrupt may have become deliverable."""
    clock = Clock()
    apic = enabled_apic(clock)
    calls: list[int] = []
    apic.on_interrupt = lambda: calls.append(clock.now)
    apic.accept(0x40)
    assert calls


@pytest.mark.parametrize("size", [1, 2, 4])
def test_state_roundtrip(size):
    """save_state/load_state round-trip the register file (plain dict)."""
    apic = enabled_apic()
    wr(apic, REG_TPR, 0x20)
    apic.accept(0x99, level_triggered=True)
    state = apic.save_state()
    other = LocalApic(Clock())
    other.load_state(state)
    assert rd(other, REG_TPR, size) == 0x20 & ((1 << (8 * size)) - 1)
    assert other.save_state() == state
    assert take(other) == 0x99
