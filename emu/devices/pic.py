"""The 8259A programmable interrupt controller pair of a PC/AT (Intel 8259A datasheet, PIIX ELCR).

`Pic8259Pair` owns both chips, the cascade between them (the slave's INT output drives the
master's IR2 input) and the PIIX edge/level control registers.  It is an `IrqSink` for ISA IRQs
0-15 and an `InterruptSource` for the CPU's INTR pin: `pending()` is the master's INT output and
`acknowledge()` is the INTA cycle that returns the vector.

Ports:

    port    access  meaning
    0x20    W       master: ICW1 when bit 4 = 1; OCW2 when bits 4,3 = 00; OCW3 when bits 4,3 = 01
    0x20    R       master: IRR or ISR as OCW3 last selected (IRR after ICW1); after an OCW3
                    poll command, the poll byte (bit 7 = request, bits 2-0 = level)
    0x21    W       master: ICW2, ICW3, ICW4 while an ICW sequence is open, else OCW1 (IMR)
    0x21    R       master: IMR; the poll byte after an OCW3 poll command
    0xA0    RW      slave: as 0x20
    0xA1    RW      slave: as 0x21
    0x4D0   RW      ELCR1: bit n = 1 puts IRQ n (3-7) in level mode; bits 0-2 read 0 (IRQ 0-2
                    are always edge-triggered on PIIX)
    0x4D1   RW      ELCR2: bit n = 1 puts IRQ 8+n in level mode; bits 0 and 5 (IRQ 8 and 13)
                    read 0

Commands (datasheet names):

    ICW1  bit 0 IC4 (ICW4 follows), bit 1 SNGL (no cascade), bit 3 LTIM (all inputs level).
          Starts the sequence; clears IMR, IRR and ISR, resets the edge sense latches (a line
          that is high must fall and rise again to request), makes IR7 lowest priority, sets
          slave ID 7, leaves special mask mode, selects IRR for reads, clears ICW4 functions.
    ICW2  vector base: bits 7-3 (bits 2-0 are replaced by the IR number).
    ICW3  (only when SNGL = 0) master: bit n = a slave on IRn; slave: its ID in bits 2-0.
    ICW4  (only when IC4 = 1) bit 0 8086 mode, bit 1 AEOI, bits 2-3 buffered mode, bit 4 SFNM.
    OCW1  IMR.
    OCW2  bits 7-5: 001 non-specific EOI, 011 specific EOI (level in bits 2-0), 101 rotate on
          non-specific EOI, 111 rotate on specific EOI, 110 set priority (level = lowest),
          100/000 set/clear rotate in AEOI mode, 010 no operation.
    OCW3  bit 1,0: 10 read IRR, 11 read ISR; bit 2 poll; bits 6,5: 11 set / 10 reset special
          mask mode.

Behaviour and the choices made where the datasheet leaves room:
- Reset leaves the pair as PC firmware hands it over: initialised, master vectors 0x08-0x0F,
  slave 0x70-0x77, cascade on IR2 (slave ID 2), 8086 mode, edge-triggered, normal EOI, and
  every IRQ masked (IMR 0xFF on both).  Any guest that programs the pair starts from ICW1.
- Edge mode: a rising edge of the input sets IRR and IRR stays set until the INTA cycle, even if
  the line falls first (the bus contract: `IrqLine.pulse()` is an edge that inputs latch).
  Level mode (LTIM, or the ELCR bit): IRR follows the line at every moment, so a line that
  falls before INTA withdraws its request.
- Priority: rotating order starting after the lowest-priority level (IR7 at reset).  A level in
  service blocks itself and every lower level (fully nested).  In special mask mode a level in
  service blocks only itself.  In special fully nested mode the master lets a request on a
  slave-carrying input through even while that input is in service (the slave has done the
  nesting among its own inputs).
- Spurious interrupts: if no unmasked request wins when INTA comes (the request went away
  between INT and INTA), the master answers with its IR7 vector and sets no ISR bit.  If the
  master's IR2 wins but the slave then has no request, the master's IR2 goes in service (it did
  see a request) and the slave answers with its own IR7 vector without setting its ISR; the
  guest then owes the master an EOI, as on real hardware.
- Cascade: ISA IRQ 2 is the master's cascade input, wired to the slave's INT and nothing else,
  so `set_irq(2, ...)` is ignored.  The master's IR2 sees edges of the slave's INT; each INTA
  cycle that serves the slave re-arms that edge latch, so a slave that still has a request
  afterwards (AEOI, or a higher level arriving during the cycle) requests again rather than
  being lost.  The master passes the cycle to the slave only for IR2 with SNGL = 0 and ICW3
  bit 2 set; the slave answers only if its ICW3 ID is 2.  A master input marked as a cascade
  input that has no slave behind it (any other ICW3 bit) gets no answer: the data bus floats
  and the vector reads 0xFF.
- While an ICW sequence is open the chip's INT output is held inactive.  Writes to the command
  port during the sequence are decoded as usual (ICW1 restarts it; OCW2/OCW3 take effect);
  writes to the data port are the awaited ICW.  Nothing the guest writes or reads raises.
- The vector is always formed as in 8086 mode (ICW2 bits 7-3 | IR); MCS-80/85 mode, the ADI
  bit and buffered mode are stored but change nothing on this bus.
- Poll (OCW3 bit 2): the next read of either port of that chip is the poll byte and counts as
  the chip's INTA (ISR set, edge IRR cleared, AEOI applied); it does not reach the slave.
- Non-specific EOI clears the highest-priority ISR bit; in special mask mode it skips ISR bits
  whose IMR bit is set (datasheet note), so such levels need a specific EOI.
"""
from __future__ import annotations

from ..bus import ByteDevice

MASTER_CMD, MASTER_DATA = 0x20, 0x21
SLAVE_CMD, SLAVE_DATA = 0xA0, 0xA1
ELCR1, ELCR2 = 0x4D0, 0x4D1
#: ELCR bits PIIX implements (the others read 0): IRQ 0-2, 8 and 13 are always edge.
ELCR_MASKS = (0xF8, 0xDE)
CASCADE_IR = 2


class _Chip:
    """One 8259A: its registers, its input pins and its command decoding."""

    FIELDS = ("irr", "isr", "imr", "pins", "elcr", "icw1", "icw3", "icw4", "base", "init_step",
              "read_isr", "poll", "smm", "rotate_aeoi", "lowest")

    def __init__(self, master: bool) -> None:
        self.master = master
        self.irr = self.isr = self.imr = 0
        self.pins = 0          # current input levels, bit per IR
        self.elcr = 0
        self.icw1 = self.icw3 = self.icw4 = 0
        self.base = 0
        self.init_step = 0     # 0: ready; 2, 3, 4: the ICW the data port expects next
        self.read_isr = False
        self.poll = False
        self.smm = False
        self.rotate_aeoi = False
        self.lowest = 7

    # -- configuration as ICWs left it ------------------------------------------------------
    @property
    def level_mask(self) -> int:
        return 0xFF if self.icw1 & 0x08 else self.elcr

    @property
    def single(self) -> bool:
        return bool(self.icw1 & 0x02)

    @property
    def aeoi(self) -> bool:
        return bool(self.icw4 & 0x02)

    @property
    def sfnm(self) -> bool:
        return bool(self.icw4 & 0x10)

    def is_cascade_input(self, ir: int) -> bool:
        return self.master and not self.single and bool(self.icw3 & (1 << ir))

    # -- inputs -----------------------------------------------------------------------------
    def set_pin(self, ir: int, level: bool) -> None:
        bit = 1 << ir
        if level:
            if not self.pins & bit:
                self.irr |= bit       # rising edge (level mode: follows the line anyway)
            self.pins |= bit
        else:
            self.pins &= ~bit
            if self.level_mask & bit:
                self.irr &= ~bit

    def follow_levels(self) -> None:
        """Level-mode IRR bits are the lines themselves."""
        lm = self.level_mask
        self.irr = (self.irr & ~lm) | (self.pins & lm)

    # -- priority ---------------------------------------------------------------------------
    def _order(self) -> range:
        return range(self.lowest + 1, self.lowest + 9)

    def resolve(self) -> int | None:
        """The level INT is raised for, or None (INT inactive)."""
        req = self.irr & ~self.imr
        if not req or self.init_step:
            return None
        for n in self._order():
            ir = n & 7
            bit = 1 << ir
            if self.isr & bit:
                if self.smm:
                    continue
                if self.sfnm and self.is_cascade_input(ir) and req & bit:
                    return ir
                return None
            if req & bit:
                return ir
        return None

    def highest_isr(self) -> int | None:
        skip = self.imr if self.smm else 0
        for n in self._order():
            ir = n & 7
            if self.isr & ~skip & (1 << ir):
                return ir
        return None

    def intack(self, ir: int) -> None:
        """The first INTA pulse for `ir` (or a poll read): IRR to ISR."""
        bit = 1 << ir
        if not self.level_mask & bit:
            self.irr &= ~bit
        if self.aeoi:
            if self.rotate_aeoi:
                self.lowest = ir
        else:
            self.isr |= bit

    # -- ports ------------------------------------------------------------------------------
    def write_command(self, value: int) -> None:
        if value & 0x10:
            self._icw1(value)
        elif value & 0x08:
            self._ocw3(value)
        else:
            self._ocw2(value)

    def write_data(self, value: int) -> None:
        step = self.init_step
        if step == 2:
            self.base = value & 0xF8
            if not self.single:
                self.init_step = 3
            else:
                self.init_step = 4 if self.icw1 & 0x01 else 0
        elif step == 3:
            self.icw3 = value
            self.init_step = 4 if self.icw1 & 0x01 else 0
        elif step == 4:
            self.icw4 = value & 0x1F
            self.init_step = 0
        else:
            self.imr = value

    def read_command(self) -> int:
        if self.poll:
            return self.poll_read()
        return self.isr if self.read_isr else self.irr

    def read_data(self) -> int:
        if self.poll:
            return self.poll_read()
        return self.imr

    def poll_read(self) -> int:
        self.poll = False
        ir = self.resolve()
        if ir is None:
            return 0
        self.intack(ir)
        return 0x80 | ir

    def _icw1(self, value: int) -> None:
        self.icw1 = value
        self.init_step = 2
        self.imr = self.isr = self.irr = 0
        self.follow_levels()
        self.icw3 = 7 if not self.master else 0
        self.icw4 = 0
        self.lowest = 7
        self.smm = False
        self.read_isr = False
        self.poll = False
        self.rotate_aeoi = False

    def _ocw2(self, value: int) -> None:
        cmd = value >> 5
        level = value & 7
        if cmd in (1, 5):            # non-specific EOI, with rotation for 5
            ir = self.highest_isr()
            if ir is not None:
                self.isr &= ~(1 << ir)
                if cmd == 5:
                    self.lowest = ir
        elif cmd in (3, 7):          # specific EOI, with rotation for 7
            self.isr &= ~(1 << level)
            if cmd == 7:
                self.lowest = level
        elif cmd == 6:
            self.lowest = level
        elif cmd == 4:
            self.rotate_aeoi = True
        elif cmd == 0:
            self.rotate_aeoi = False

    def _ocw3(self, value: int) -> None:
        if value & 0x40:
            self.smm = bool(value & 0x20)
        if value & 0x02:
            self.read_isr = bool(value & 0x01)
        self.poll = bool(value & 0x04)

    # -- state ------------------------------------------------------------------------------
    def save(self) -> dict:
        return {f: getattr(self, f) for f in self.FIELDS}

    def load(self, state: dict) -> None:
        for f in self.FIELDS:
            setattr(self, f, type(getattr(self, f))(state[f]))


class Pic8259Pair(ByteDevice):
    """Master and slave 8259A with the PIIX ELCR; see the module docstring for the registers."""

    name = "pic"
    ports = ((MASTER_CMD, 2), (SLAVE_CMD, 2), (ELCR1, 2))

    def __init__(self) -> None:
        self.master = _Chip(master=True)
        self.slave = _Chip(master=False)
        self._int = False
        self.reset()

    def reset(self) -> None:
        pins = (self.master.pins, self.slave.pins)
        self.master = _Chip(master=True)
        self.slave = _Chip(master=False)
        # The lines keep their levels across a reset of the chips.
        self.master.pins, self.slave.pins = pins
        self._firmware_init()
        self._update()

    def _firmware_init(self) -> None:
        for chip, base, icw3 in ((self.master, 0x08, 1 << CASCADE_IR),
                                 (self.slave, 0x70, CASCADE_IR)):
            chip.write_command(0x11)
            chip.write_data(base)
            chip.write_data(icw3)
            chip.write_data(0x01)
            chip.write_data(0xFF)

    # -- IrqSink ----------------------------------------------------------------------------
    def set_irq(self, irq: int, level: bool) -> None:
        if not 0 <= irq < 16:
            raise ValueError(f"ISA IRQ {irq} out of range 0-15")
        if irq == CASCADE_IR:
            return
        chip = self.master if irq < 8 else self.slave
        chip.set_pin(irq & 7, bool(level))
        self._update()

    # -- InterruptSource --------------------------------------------------------------------
    def pending(self) -> bool:
        """The master's INT output."""
        return self._int

    def acknowledge(self) -> int | None:
        """The INTA cycle: the vector, with IRR moved to ISR on the chips that answered."""
        m, s = self.master, self.slave
        ir = m.resolve()
        if ir is None:
            vector = m.base | 7
        elif m.is_cascade_input(ir):
            m.intack(ir)
            if ir == CASCADE_IR and (s.icw3 & 7) == CASCADE_IR:
                sir = s.resolve()
                if sir is None:
                    vector = s.base | 7
                else:
                    s.intack(sir)
                    vector = s.base | sir
            else:
                vector = 0xFF
            if ir == CASCADE_IR:
                m.set_pin(CASCADE_IR, False)
        else:
            m.intack(ir)
            vector = m.base | ir
        self._update()
        return vector

    def _update(self) -> None:
        slave_int = self.slave.resolve() is not None
        if slave_int != bool(self.master.pins & (1 << CASCADE_IR)):
            self.master.set_pin(CASCADE_IR, slave_int)
        self._int = self.master.resolve() is not None

    # -- ports ------------------------------------------------------------------------------
    def read_byte(self, port: int) -> int:
        if port in (MASTER_CMD, SLAVE_CMD):
            chip = self.master if port == MASTER_CMD else self.slave
            value = chip.read_command()
        elif port in (MASTER_DATA, SLAVE_DATA):
            chip = self.master if port == MASTER_DATA else self.slave
            value = chip.read_data()
        elif port in (ELCR1, ELCR2):
            return (self.master if port == ELCR1 else self.slave).elcr
        else:
            return 0xFF
        self._update()
        return value

    def write_byte(self, port: int, value: int) -> None:
        if port in (MASTER_CMD, SLAVE_CMD):
            (self.master if port == MASTER_CMD else self.slave).write_command(value)
        elif port in (MASTER_DATA, SLAVE_DATA):
            (self.master if port == MASTER_DATA else self.slave).write_data(value)
        elif port in (ELCR1, ELCR2):
            idx = port - ELCR1
            chip = (self.master, self.slave)[idx]
            chip.elcr = value & ELCR_MASKS[idx]
            chip.follow_levels()
        else:
            return
        self._update()

    # -- state ------------------------------------------------------------------------------
    def save_state(self) -> dict:
        return {"master": self.master.save(), "slave": self.slave.save()}

    def load_state(self, state: dict) -> None:
        self.master.load(state["master"])
        self.slave.load(state["slave"])
        self._update()
