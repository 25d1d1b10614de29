"""PC16550D UART behaviour at the register level (no CPU)."""
from __future__ import annotations

from emu.bus import IrqBus, PortBus
from emu.clock import Clock
from emu.devices.uart import Uart16550

BASE = 0x3F8
RBR = THR = DLL = BASE
IER = DLM = BASE + 1
IIR = FCR = BASE + 2
LCR, MCR, LSR, MSR, SCR = BASE + 3, BASE + 4, BASE + 5, BASE + 6, BASE + 7


def make(**kw):
    clock = Clock(ips=1_000_000)
    irqs = IrqBus()
    uart = Uart16550(clock, irqs.line(4), **kw)
    bus = PortBus()
    bus.attach(uart)
    return clock, irqs, uart, bus


def run_until(clock: Clock, t: int) -> None:
    """Advance virtual time to `t`, firing events on the way as the run loop would."""
    while True:
        nd = clock.next_deadline()
        if nd is None or nd > t:
            break
        clock.advance(max(nd - clock.now, 0))
        clock.fire_due()
    clock.advance(t - clock.now)


def test_thr_write_goes_to_output():
    """THR write transmits the byte (instantly here); THRE and TEMT stay set in LSR."""
    _, _, uart, bus = make()
    for b in b"hi\n":
        bus.write(THR, 1, b)
    assert uart.transmitted == b"hi\n"
    assert bus.read(LSR, 1) & 0x60 == 0x60


def test_output_callable():
    """Bytes go to the given output callable instead of `transmitted`."""
    got = []
    _, _, uart, bus = make(output=got.append)
    bus.write(THR, 1, 0x41)
    assert got == [b"A"] and uart.transmitted == b""


def test_dlab_divisor_latch_round_trip():
    """LCR bit 7 (DLAB) maps offsets 0/1 to the divisor latch; clearing it restores RBR/IER."""
    _, _, uart, bus = make()
    bus.write(IER, 1, 0x05)
    bus.write(LCR, 1, 0x83)
    bus.write(DLL, 1, 0x01)
    bus.write(DLM, 1, 0x02)
    assert bus.read(DLL, 1) == 0x01 and bus.read(DLM, 1) == 0x02
    assert uart.transmitted == b""  # the DLL write did not transmit
    bus.write(LCR, 1, 0x03)
    assert bus.read(LCR, 1) == 0x03
    assert bus.read(IER, 1) == 0x05


def test_scratch_register():
    """SCR is a plain read/write byte (drivers probe for a UART with it)."""
    _, _, _, bus = make()
    bus.write(SCR, 1, 0x5A)
    assert bus.read(SCR, 1) == 0x5A


def test_fifo_enable_sets_iir_bits_6_7():
    """FCR bit 0 enables the FIFOs: idle IIR reads 0xC1 (FIFOs on, no interrupt pending)."""
    _, _, _, bus = make()
    assert bus.read(IIR, 1) == 0x01
    bus.write(FCR, 1, 0x07)
    assert bus.read(IIR, 1) == 0xC1
    bus.write(FCR, 1, 0x00)
    assert bus.read(IIR, 1) == 0x01


def test_rx_interrupt_needs_ier0_and_out2():
    """Received data sets LSR DR; the RX interrupt reaches IRQ 4 only with IER bit 0 and
    MCR OUT2 (the PC's interrupt buffer enable); reading RBR clears it."""
    _, irqs, uart, bus = make()
    uart.feed(b"x")
    assert bus.read(LSR, 1) & 0x01
    assert not irqs.levels[4]
    bus.write(IER, 1, 0x01)
    assert bus.read(IIR, 1) == 0x04  # identified in IIR even with OUT2 off
    assert not irqs.levels[4]
    bus.write(MCR, 1, 0x08)
    assert irqs.levels[4]
    assert bus.read(RBR, 1) == ord("x")
    assert not irqs.levels[4]
    assert not bus.read(LSR, 1) & 0x01
    assert bus.read(IIR, 1) == 0x01


def test_rx_host_queue_does_not_overrun():
    """Without FIFOs the receiver holds one byte; further fed bytes wait host-side, so reading
    them one by one returns all of them in order with no OE."""
    _, _, uart, bus = make()
    uart.feed(b"abc")
    out = bytearray()
    while bus.read(LSR, 1) & 0x01:
        out.append(bus.read(RBR, 1))
    assert out == b"abc"
    assert not bus.read(LSR, 1) & 0x02


def test_thre_interrupt_on_enable_cleared_by_iir_read():
    """Turning IER bit 1 on while THR is empty raises THR-empty (IIR 0x02); an IIR read that
    reports it clears it; a THR write re-arms it once the byte has gone."""
    _, irqs, _, bus = make()
    bus.write(MCR, 1, 0x08)
    bus.write(IER, 1, 0x02)
    assert irqs.levels[4]
    assert bus.read(IIR, 1) == 0x02
    assert not irqs.levels[4]
    assert bus.read(IIR, 1) == 0x01
    bus.write(THR, 1, 0x41)
    assert irqs.levels[4]
    assert bus.read(IIR, 1) == 0x02


def test_thre_reraised_by_toggling_ier():
    """Disabling and re-enabling IER bit 1 with THR empty raises THR-empty again (the check
    drivers use to detect UARTs that do not re-assert THRE)."""
    _, _, _, bus = make()
    bus.write(IER, 1, 0x02)
    assert bus.read(IIR, 1) == 0x02
    bus.write(IER, 1, 0x00)
    bus.write(IER, 1, 0x02)
    assert bus.read(IIR, 1) == 0x02


def test_interrupt_priority_line_status_first():
    """Identification priority: line status (OE) > RX data > THR empty; reading LSR clears OE."""
    _, _, _, bus = make()
    bus.write(MCR, 1, 0x10)  # loopback
    bus.write(IER, 1, 0x07)
    bus.write(THR, 1, 1)
    bus.write(THR, 1, 2)  # 16450 mode: the unread byte is overwritten -> OE
    assert bus.read(IIR, 1) == 0x06
    assert bus.read(LSR, 1) & 0x03 == 0x03
    assert bus.read(IIR, 1) == 0x04
    assert bus.read(RBR, 1) == 2
    assert bus.read(IIR, 1) == 0x02


def test_loopback():
    """MCR bit 4: THR bytes come back in RBR and do not leave; MSR follows MCR (CTS=RTS,
    DSR=DTR, RI=OUT1, DCD=OUT2); the IRQ line stays low (OUT2 pin forced inactive)."""
    _, irqs, uart, bus = make()
    bus.write(MCR, 1, 0x10)
    bus.read(MSR, 1)  # clear the deltas from entering loopback
    bus.write(IER, 1, 0x01)
    bus.write(THR, 1, 0xA5)
    assert uart.transmitted == b""
    assert bus.read(LSR, 1) & 0x01
    assert bus.read(IIR, 1) == 0x04
    assert not irqs.levels[4]
    assert bus.read(RBR, 1) == 0xA5
    bus.write(MCR, 1, 0x1F)
    assert bus.read(MSR, 1) == 0xFB  # all four inputs on; deltas except TERI (RI rose)
    bus.write(MCR, 1, 0x10)
    assert bus.read(MSR, 1) == 0x0F  # all went low: DCTS, DDSR, TERI (trailing edge), DDCD


def test_fed_input_waits_during_loopback():
    """In loopback the serial input is disconnected: fed bytes arrive after loopback ends."""
    _, _, uart, bus = make()
    bus.write(MCR, 1, 0x10)
    uart.feed(b"z")
    assert not bus.read(LSR, 1) & 0x01
    bus.write(MCR, 1, 0x00)
    assert bus.read(LSR, 1) & 0x01
    assert bus.read(RBR, 1) == ord("z")


def test_fifo_trigger_level_and_char_timeout():
    """FCR bits 6-7 = 01: RX data available at 4 bytes; below it, the character timeout
    (IIR 0xCC) fires after 4 character times without FIFO activity; reading clears it."""
    clock, irqs, uart, bus = make()
    bus.write(LCR, 1, 0x83)
    bus.write(DLL, 1, 1)  # 115200 baud: a 10-bit character takes ~86.8 us
    bus.write(LCR, 1, 0x03)
    bus.write(FCR, 1, 0x41)
    bus.write(MCR, 1, 0x08)
    bus.write(IER, 1, 0x01)
    uart.feed(b"abc")
    assert bus.read(IIR, 1) == 0xC1
    assert not irqs.levels[4]
    run_until(clock, clock.now + clock.insns_for_ns(300_000))
    assert bus.read(IIR, 1) == 0xC1  # 300 us < 4 characters (347 us)
    run_until(clock, clock.now + clock.insns_for_ns(100_000))
    assert bus.read(IIR, 1) == 0xCC
    assert irqs.levels[4]
    assert bus.read(RBR, 1) == ord("a")
    assert bus.read(IIR, 1) == 0xC1
    uart.feed(b"defg")  # 2 + 4 = 6 >= 4
    assert bus.read(IIR, 1) == 0xC4
    assert irqs.levels[4]
    out = bytes(bus.read(RBR, 1) for _ in range(6))
    assert out == b"bcdefg"
    assert not irqs.levels[4]


def test_fifo_holds_16_and_fcr_clears():
    """The RX FIFO holds 16 bytes; FCR bit 1 empties it (host-side bytes then move in)."""
    _, _, uart, bus = make()
    bus.write(FCR, 1, 0xC7)
    uart.feed(bytes(range(20)))
    assert uart.rx_waiting == 20
    bus.write(FCR, 1, 0xC3)
    assert uart.rx_waiting == 4
    assert bytes(bus.read(RBR, 1) for _ in range(4)) == bytes(range(16, 20))


def test_out2_gates_irq_line():
    """Clearing OUT2 with an interrupt pending lowers IRQ 4; setting it raises it again."""
    _, irqs, uart, bus = make()
    bus.write(IER, 1, 0x01)
    uart.feed(b"q")
    bus.write(MCR, 1, 0x08)
    assert irqs.levels[4]
    bus.write(MCR, 1, 0x00)
    assert not irqs.levels[4]


def test_save_load_round_trip():
    """save_state/load_state carry registers and both receive queues."""
    _, _, uart, bus = make()
    bus.write(FCR, 1, 0x01)
    bus.write(SCR, 1, 0x77)
    uart.feed(bytes(range(30)))
    state = uart.save_state()
    _, _, other, bus2 = make()
    other.load_state(state)
    assert bus2.read(SCR, 1) == 0x77
    assert bytes(bus2.read(RBR, 1) for _ in range(30)) == bytes(range(30))


def test_reset_lowers_irq_and_clears_registers():
    """Master reset: IER, LCR, MCR zero, IIR 0x01, FIFOs off; the IRQ line drops."""
    _, irqs, uart, bus = make()
    bus.write(MCR, 1, 0x08)
    bus.write(IER, 1, 0x02)
    assert irqs.levels[4]
    uart.reset()
    assert not irqs.levels[4]
    assert bus.read(IER, 1) == 0 and bus.read(MCR, 1) == 0 and bus.read(IIR, 1) == 0x01
