"""The I/O APIC (82093AA datasheet; version 0x20 as in the ICH parts): ISA lines to LAPIC vectors.

`IoApic` owns the redirection table and the input pins' levels.  It is an `IrqSink` on the ISA
IRQ bus and sends its messages to the one `LocalApic` (`accept()`); it hears the LAPIC's EOI
broadcast to clear remote IRR.

MMIO window (4 KiB at 0xFEC00000):

    offset  access  register
    0x00    RW      IOREGSEL: index of the register IOWIN shows (bits 0-7)
    0x10    RW      IOWIN: the selected register (32-bit)
    0x40    WO      EOI (version 0x20 parts): a vector; clears remote IRR of level entries with it
    other   --      reads 0, writes ignored

Indirect registers (through IOREGSEL/IOWIN):

    index      access  register
    0x00       RW      IOAPICID: ID in bits 24-27
    0x01       RO      IOAPICVER 0x00170020: 24 redirection entries (max index 0x17), version 0x20
    0x02       RO      IOAPICARB: arbitration ID in bits 24-27 (follows the ID)
    0x10+2n    RW      redirection entry n, low dword:  vector (0-7), delivery mode (8-10),
                       dest mode (11, 1 = logical), delivery status (12, RO, reads 0: messages are
                       delivered at once), polarity (13, 1 = active low), remote IRR (14, RO),
                       trigger (15, 1 = level), mask (16)
    0x11+2n    RW      redirection entry n, high dword: destination (bits 24-31 = entry 56-63)
    other      --      reads 0, writes ignored

Reset masks every entry (other fields 0).  Accesses: IOREGSEL and EOI take the low byte of a
write of any width that starts at their offset; IOWIN writes must be 32-bit at 0x10 (narrower
ones are ignored); reads of any width return the byte lanes they cover.

Behaviour:
- Pins: ISA IRQ 0 arrives on pin 2 and IRQ n on pin n (the MP table and the MADT interrupt
  source override say so).  ISA IRQ 2 is the 8259A cascade, not a device line: it is ignored
  (it would otherwise collide with the timer on pin 2).  Pins 16-23 are reachable by `set_pin`.
- A pin is asserted when its line level differs from the polarity bit (active low inverts).
- Edge-triggered: a message is sent on the rising edge of "asserted" while unmasked.  An edge on a
  masked pin is lost, not latched (82093AA: edges on a masked pin are ignored); changing the
  polarity of a quiet line is not an edge.
- Level-triggered: while asserted, unmasked and remote IRR clear, a message is sent and remote
  IRR set.  The LAPIC's EOI of that vector (or the EOI register) clears remote IRR, and a line
  still asserted is sent again.  Unmasking an asserted level entry sends it.  Remote IRR is set
  only when the LAPIC took the message; a refused one (APIC disabled, destination not ours) is
  retried at the next change of line, entry or EOI.
- Delivery: fixed and lowest priority go to our one LAPIC when the destination includes it
  (physical: its ID or 0xFF; logical: per its LDR/DFR, `LocalApic.accepts_destination`),
  otherwise the message is dropped.  SMI, NMI, INIT and ExtINT entries send nothing: there is no
  NMI/SMI model, INIT has no second CPU, and no 8259A output is wired to an IOAPIC pin here (the
  8259A reaches the CPU directly or through LINT0, see `emu.devices.lapic.Imcr`).
"""
from __future__ import annotations

from ..bus import Device
from .lapic import DELIVERY_FIXED, DELIVERY_LOWEST, LocalApic, read_lanes

IOAPIC_BASE = 0xFEC00000
IOAPIC_VERSION = 0x00170020
NUM_PINS = 24

IOREGSEL = 0x00
IOWIN = 0x10
IOEOI = 0x40

REG_ID = 0x00
REG_VERSION = 0x01
REG_ARB = 0x02
REG_REDIR = 0x10

RTE_LOGICAL = 1 << 11
RTE_ACTIVE_LOW = 1 << 13
RTE_REMOTE_IRR = 1 << 14
RTE_LEVEL = 1 << 15
RTE_MASKED = 1 << 16
RTE_LOW_WRITABLE = 0x1AFFF  # all of the low dword but delivery status and remote IRR
RTE_DEST_SHIFT = 56


def isa_irq_to_pin(irq: int) -> int | None:
    """The IOAPIC pin an ISA IRQ arrives on, or None for the cascade line (IRQ 2)."""
    if irq == 0:
        return 2
    if irq == 2:
        return None
    return irq


class IoApic(Device):
    """The I/O APIC (see the module docstring for the register table and the rules followed)."""

    name = "ioapic"

    def __init__(self, lapic: LocalApic, base: int = IOAPIC_BASE, apic_id: int = 1) -> None:
        self.lapic = lapic
        self.base = base
        self.mmio = ((base, 0x1000),)
        self._reset_id = apic_id & 0xF
        #: Line levels as the wires carry them (device state: kept across reset).
        self._lines = [False] * NUM_PINS
        lapic.add_eoi_listener(self.eoi)
        self.reset()

    def reset(self) -> None:
        self._id = self._reset_id
        self._select = 0
        self._redir = [RTE_MASKED] * NUM_PINS

    def save_state(self) -> dict:
        return {
            "id": self._id,
            "select": self._select,
            "redir": list(self._redir),
            "lines": list(self._lines),
        }

    def load_state(self, state: dict) -> None:
        self._id = state["id"]
        self._select = state["select"]
        self._redir = list(state["redir"])
        self._lines = list(state["lines"])

    def entry(self, pin: int) -> int:
        """Redirection entry `pin` as a 64-bit value (for tools and tests)."""
        return self._redir[pin]

    # -- inputs -------------------------------------------------------------------------
    def set_irq(self, irq: int, level: bool) -> None:
        """IrqSink: ISA IRQ `irq` changed level."""
        pin = isa_irq_to_pin(irq)
        if pin is not None:
            self.set_pin(pin, level)

    def set_pin(self, pin: int, level: bool) -> None:
        """Input pin `pin` (0-23) now carries `level`."""
        if not 0 <= pin < NUM_PINS:
            raise ValueError(f"IOAPIC has no pin {pin}")
        was = self._asserted(pin)
        self._lines[pin] = bool(level)
        now = self._asserted(pin)
        rte = self._redir[pin]
        if rte & RTE_MASKED:
            return
        if rte & RTE_LEVEL:
            self._service_level(pin)
        elif now and not was:
            self._send(pin)

    def eoi(self, vector: int) -> None:
        """EOI broadcast from the LAPIC (or the EOI register): retire level entries of `vector`."""
        for pin, rte in enumerate(self._redir):
            if rte & RTE_LEVEL and rte & RTE_REMOTE_IRR and rte & 0xFF == vector:
                self._redir[pin] = rte & ~RTE_REMOTE_IRR
                self._service_level(pin)

    # -- delivery -----------------------------------------------------------------------
    def _asserted(self, pin: int) -> bool:
        return self._lines[pin] != bool(self._redir[pin] & RTE_ACTIVE_LOW)

    def _service_level(self, pin: int) -> None:
        rte = self._redir[pin]
        if rte & (RTE_MASKED | RTE_REMOTE_IRR) or not self._asserted(pin):
            return
        if self._send(pin):
            self._redir[pin] |= RTE_REMOTE_IRR

    def _send(self, pin: int) -> bool:
        rte = self._redir[pin]
        if (rte >> 8) & 7 not in (DELIVERY_FIXED, DELIVERY_LOWEST):
            return False
        if not self.lapic.accepts_destination(rte >> RTE_DEST_SHIFT, bool(rte & RTE_LOGICAL)):
            return False
        return self.lapic.accept(rte & 0xFF, bool(rte & RTE_LEVEL))

    # -- registers ----------------------------------------------------------------------
    def _read_indirect(self, index: int) -> int:
        if index in (REG_ID, REG_ARB):
            return self._id << 24
        if index == REG_VERSION:
            return IOAPIC_VERSION
        if REG_REDIR <= index < REG_REDIR + 2 * NUM_PINS:
            rte = self._redir[(index - REG_REDIR) >> 1]
            return (rte >> 32 if index & 1 else rte) & 0xFFFFFFFF
        return 0

    def _write_indirect(self, index: int, value: int) -> None:
        if index == REG_ID:
            self._id = (value >> 24) & 0xF
            return
        if not REG_REDIR <= index < REG_REDIR + 2 * NUM_PINS:
            return
        pin = (index - REG_REDIR) >> 1
        old = self._redir[pin]
        if index & 1:
            new = (old & 0xFFFFFFFF) | ((value >> 24) << RTE_DEST_SHIFT)
        else:
            new = (old & ~RTE_LOW_WRITABLE) | (value & RTE_LOW_WRITABLE)
            if not new & RTE_LEVEL:
                # Remote IRR is undefined for edge entries; keep it clear so a later switch to
                # level starts clean.
                new &= ~RTE_REMOTE_IRR
        self._redir[pin] = new
        if new & RTE_LEVEL:
            self._service_level(pin)

    def mmio_read(self, addr: int, size: int) -> int:
        def slot(off: int) -> int:
            if off == IOREGSEL:
                return self._select
            if off == IOWIN:
                return self._read_indirect(self._select)
            return 0

        return read_lanes(slot, addr - self.base, size)

    def mmio_write(self, addr: int, size: int, value: int) -> None:
        off = addr - self.base
        if off == IOREGSEL:
            self._select = value & 0xFF
        elif off == IOWIN and size >= 4:
            self._write_indirect(self._select, value & 0xFFFFFFFF)
        elif off == IOEOI:
            self.eoi(value & 0xFF)
