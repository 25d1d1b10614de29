"""I/O APIC at device level, delivering into a real LocalApic (no CPU)."""
from __future__ import annotations

import pytest

from emu.bus import IrqBus
from emu.clock import Clock
from emu.devices.ioapic import IOAPIC_BASE, IoApic
from emu.devices.lapic import REG_EOI, REG_LDR, REG_SVR, LocalApic

MASKED = 1 << 16
LEVEL = 1 << 15
ACTIVE_LOW = 1 << 13
REMOTE_IRR = 1 << 14
LOGICAL = 1 << 11


def make() -> tuple[LocalApic, IoApic]:
    lapic = LocalApic(Clock(), apic_id=0)
    lapic.mmio_write(lapic.base + REG_SVR, 4, 0x1FF)
    return lapic, IoApic(lapic)


def reg_read(io: IoApic, index: int) -> int:
    io.mmio_write(IOAPIC_BASE, 4, index)
    return io.mmio_read(IOAPIC_BASE + 0x10, 4)


def reg_write(io: IoApic, index: int, value: int) -> None:
    io.mmio_write(IOAPIC_BASE, 4, index)
    io.mmio_write(IOAPIC_BASE + 0x10, 4, value)


def route(io: IoApic, pin: int, low: int, dest: int = 0) -> None:
    reg_write(io, 0x11 + 2 * pin, dest << 24)
    reg_write(io, 0x10 + 2 * pin, low)


def take(lapic: LocalApic) -> int | None:
    return lapic.acknowledge() if lapic.pending() else None


def eoi(lapic: LocalApic) -> None:
    lapic.mmio_write(lapic.base + REG_EOI, 4, 0)


def test_version_id_and_reset():
    """82093AA: IOAPICVER reads max redirection entry 0x17 (24 entries) and version 0x20;
    IOAPICID bits 24-27 are writable, ARB follows; reset masks every entry."""
    _, io = make()
    assert reg_read(io, 0x01) == 0x00170020
    assert (reg_read(io, 0x01) >> 16) + 1 == 24
    assert reg_read(io, 0x00) == 1 << 24
    reg_write(io, 0x00, 0x0A000000)
    assert reg_read(io, 0x00) == 0x0A000000
    assert reg_read(io, 0x02) == 0x0A000000
    for pin in range(24):
        assert reg_read(io, 0x10 + 2 * pin) == MASKED
        assert reg_read(io, 0x11 + 2 * pin) == 0
    assert reg_read(io, 0x40) == 0  # beyond the table
    assert io.mmio_read(IOAPIC_BASE, 1) == 0x40  # IOREGSEL reads back


def test_read_only_bits_and_destination_field():
    """82093AA: delivery status and remote IRR are read-only; destination is bits 56-63."""
    _, io = make()
    route(io, 5, 0xFFFFFFFF, dest=0xFF)
    assert reg_read(io, 0x10 + 10) == 0x1AFFF
    assert reg_read(io, 0x11 + 10) == 0xFF000000
    assert io.entry(5) >> 56 == 0xFF


def test_edge_irq14_routed_to_vector():
    """82093AA edge mode: a rising edge on pin 14 sends its vector to the LAPIC (TMR clear)."""
    lapic, io = make()
    bus = IrqBus()
    bus.attach(io)
    route(io, 14, 0x3E)
    bus.line(14).raise_()
    assert take(lapic) == 0x3E
    eoi(lapic)
    assert take(lapic) is None  # a level held high is one edge
    bus.line(14).lower()
    bus.line(14).pulse()
    assert take(lapic) == 0x3E


def test_masked_edge_is_lost():
    """82093AA: edges on a masked pin are ignored, not held pending; unmasking does not replay."""
    lapic, io = make()
    route(io, 14, MASKED | 0x3E)
    io.set_irq(14, True)
    io.set_irq(14, False)
    assert take(lapic) is None
    route(io, 14, 0x3E)
    assert take(lapic) is None


def test_level_remote_irr_cleared_by_eoi_and_redelivered():
    """82093AA level mode: delivery sets remote IRR (no re-send while set); the LAPIC's EOI
    broadcast clears it; a line still asserted is delivered again, a released one is not."""
    lapic, io = make()
    route(io, 10, LEVEL | 0x5A)
    io.set_irq(10, True)
    assert reg_read(io, 0x10 + 20) & REMOTE_IRR
    assert take(lapic) == 0x5A
    io.set_irq(10, True)  # still asserted: no second message while remote IRR is set
    assert take(lapic) is None
    eoi(lapic)  # level vector: broadcast reaches the IOAPIC, line still high
    assert reg_read(io, 0x10 + 20) & REMOTE_IRR
    assert take(lapic) == 0x5A
    io.set_irq(10, False)
    eoi(lapic)
    assert not reg_read(io, 0x10 + 20) & REMOTE_IRR
    assert take(lapic) is None


def test_level_unmask_while_asserted_delivers():
    """82093AA level mode: an asserted level on a masked pin is delivered when it is unmasked."""
    lapic, io = make()
    route(io, 11, MASKED | LEVEL | 0x6B)
    io.set_pin(11, True)
    assert take(lapic) is None
    route(io, 11, LEVEL | 0x6B)
    assert take(lapic) == 0x6B


def test_active_low_polarity():
    """82093AA polarity bit 13: active-low inverts the line (a falling wire is the edge)."""
    lapic, io = make()
    io.set_pin(16, True)  # idle high for an active-low PCI-style line
    route(io, 16, LEVEL | ACTIVE_LOW | 0x70)
    assert take(lapic) is None
    io.set_pin(16, False)
    assert take(lapic) == 0x70


def test_irq0_arrives_on_pin2():
    """MP table / MADT interrupt source override: ISA IRQ 0 is IOAPIC pin 2; IRQ 2 (cascade) is
    not a device line."""
    lapic, io = make()
    route(io, 0, 0x30)
    route(io, 2, 0x32)
    io.set_irq(0, True)
    assert take(lapic) == 0x32
    eoi(lapic)
    io.set_irq(2, True)
    io.set_irq(0, False)
    io.set_irq(0, True)
    assert take(lapic) == 0x32
    eoi(lapic)
    assert take(lapic) is None


def test_destination_filter():
    """82093AA destination: physical mode matches the LAPIC ID (or 0xFF); logical mode uses the
    LAPIC's LDR; other destinations are dropped (one CPU)."""
    lapic, io = make()
    route(io, 3, 0x43, dest=1)
    io.set_pin(3, True)
    assert take(lapic) is None
    io.set_pin(3, False)
    route(io, 3, 0x43, dest=0xFF)
    io.set_pin(3, True)
    assert take(lapic) == 0x43
    eoi(lapic)
    io.set_pin(3, False)
    lapic.mmio_write(lapic.base + REG_LDR, 4, 0x01000000)
    route(io, 3, LOGICAL | 0x44, dest=0x01)
    io.set_pin(3, True)
    assert take(lapic) == 0x44


def test_eoi_register_and_non_fixed_modes():
    """ICH IOAPIC (version 0x20) EOI register at +0x40 clears remote IRR; NMI/SMI/INIT/ExtINT
    entries send nothing here (not modelled)."""
    lapic, io = make()
    route(io, 9, LEVEL | 0x59)
    io.set_pin(9, True)
    assert take(lapic) == 0x59
    io.set_pin(9, False)
    io.mmio_write(IOAPIC_BASE + 0x40, 4, 0x59)
    assert not io.entry(9) & REMOTE_IRR
    for mode in (2, 4, 5, 7):
        route(io, 4, (mode << 8) | 0x50)
        io.set_pin(4, True)
        io.set_pin(4, False)
    assert lapic.save_state()["irr"] == 0


def test_refused_level_message_retried():
    """A level message the LAPIC refuses (software disabled) leaves remote IRR clear and is sent
    when the entry is rewritten."""
    lapic, io = make()
    lapic.mmio_write(lapic.base + REG_SVR, 4, 0xFF)
    route(io, 7, LEVEL | 0x57)
    io.set_pin(7, True)
    assert not io.entry(7) & REMOTE_IRR
    lapic.mmio_write(lapic.base + REG_SVR, 4, 0x1FF)
    route(io, 7, LEVEL | 0x57)
    assert take(lapic) == 0x57


def test_narrow_iowin_write_ignored_and_byte_reads():
    """Access widths (defined here): IOWIN writes must be 32-bit; reads give byte lanes."""
    _, io = make()
    io.mmio_write(IOAPIC_BASE, 1, 0x01)
    assert io.mmio_read(IOAPIC_BASE + 0x12, 1) == 0x17
    io.mmio_write(IOAPIC_BASE, 1, 0x10)
    io.mmio_write(IOAPIC_BASE + 0x10, 2, 0x30)
    assert io.entry(0) == MASKED


def test_bad_pin():
    _, io = make()
    with pytest.raises(ValueError):
        io.set_pin(24, True)


def test_state_roundtrip_and_reset_keeps_lines():
    """save_state/load_state are plain dicts; reset() masks entries but wires keep their level."""
    lapic, io = make()
    route(io, 12, LEVEL | 0x6C)
    io.set_pin(12, True)
    state = io.save_state()
    other = IoApic(lapic)
    other.load_state(state)
    assert other.save_state() == state
    io.reset()
    assert io.entry(12) == MASKED
    assert io.save_state()["lines"][12] is True
