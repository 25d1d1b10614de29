"""Device-level tests of the 8259A pair: each names the datasheet behaviour it checks."""
from __future__ import annotations

import random

from emu.bus import InterruptPin, IrqBus
from emu.devices.pic import Pic8259Pair


def make(init: bool = True) -> tuple[IrqBus, Pic8259Pair]:
    bus = IrqBus()
    pic = Pic8259Pair()
    bus.attach(pic)
    if init:
        linux_init(pic)
    return bus, pic


def out(pic: Pic8259Pair, port: int, value: int) -> None:
    pic.io_write(port, 1, value)


def inb(pic: Pic8259Pair, port: int) -> int:
    return pic.io_read(port, 1)


def linux_init(pic: Pic8259Pair, master_icw4: int = 0x01, slave_icw4: int = 0x01) -> None:
    """The sequence Linux's init_8259A writes (vectors 0x20 and 0x28, slave on IR2)."""
    out(pic, 0x20, 0x11)
    out(pic, 0x21, 0x20)
    out(pic, 0x21, 0x04)
    out(pic, 0x21, master_icw4)
    out(pic, 0xA0, 0x11)
    out(pic, 0xA1, 0x28)
    out(pic, 0xA1, 0x02)
    out(pic, 0xA1, slave_icw4)


def isr(pic: Pic8259Pair, cmd: int) -> int:
    out(pic, cmd, 0x0B)
    value = inb(pic, cmd)
    out(pic, cmd, 0x0A)
    return value


def test_reset_is_firmware_handover_all_masked() -> None:
    """Reset: initialised as PC firmware leaves it (0x08/0x70, cascade IR2), IMR 0xFF."""
    bus, pic = make(init=False)
    assert inb(pic, 0x21) == 0xFF and inb(pic, 0xA1) == 0xFF
    bus.line(1).pulse()
    assert not pic.pending()
    out(pic, 0x21, 0xFD)
    assert pic.pending()
    assert pic.acknowledge() == 0x09
    out(pic, 0xA1, 0xFE)
    out(pic, 0x21, 0xF9)
    out(pic, 0x20, 0x20)
    bus.line(8).pulse()
    assert pic.acknowledge() == 0x70


def test_linux_init_then_irq1_edge() -> None:
    """ICW1-4 (0x11, 0x20/0x28, 4/2, 1); ICW1 clears IMR; IRR->ISR on INTA; EOI clears ISR."""
    bus, pic = make()
    assert inb(pic, 0x21) == 0 and inb(pic, 0xA1) == 0
    assert not pic.pending()
    bus.line(1).pulse()
    assert pic.pending()
    assert inb(pic, 0x20) == 0x02           # IRR selected for reads after ICW1
    assert pic.acknowledge() == 0x21
    assert isr(pic, 0x20) == 0x02
    assert inb(pic, 0x20) == 0x00           # edge IRR bit cleared by INTA
    assert not pic.pending()
    out(pic, 0x20, 0x20)                     # non-specific EOI
    assert isr(pic, 0x20) == 0


def test_interrupt_pin_path() -> None:
    """The CPU's INTR pin sees the master's INT and its INTA reaches the pair."""
    bus, pic = make()
    pin = InterruptPin([pic])
    assert not pin.pending()
    bus.line(4).pulse()
    assert pin.pending()
    assert pin.acknowledge() == 0x24


def test_slave_irq12_cascade() -> None:
    """Slave INT drives master IR2: vector from the slave, both ISRs (slave IR4, master IR2)."""
    bus, pic = make()
    bus.line(12).pulse()
    assert pic.pending()
    assert pic.acknowledge() == 0x2C
    assert isr(pic, 0x20) == 0x04
    assert isr(pic, 0xA0) == 0x10
    out(pic, 0xA0, 0x20)
    out(pic, 0x20, 0x20)
    assert isr(pic, 0x20) == 0 and isr(pic, 0xA0) == 0
    assert not pic.pending()


def test_isa_irq2_is_not_a_device_line() -> None:
    """IR2 of the master is wired to the slave's INT only: ISA IRQ 2 changes nothing."""
    bus, pic = make()
    bus.line(2).pulse()
    assert not pic.pending()
    assert inb(pic, 0x20) == 0


def test_fully_nested_priority() -> None:
    """Lower IR wins; an IR in service blocks itself and lower levels, not higher ones."""
    bus, pic = make()
    bus.line(5).pulse()
    bus.line(3).pulse()
    assert pic.acknowledge() == 0x23
    assert not pic.pending()                 # IR5 waits: IR3 is in service
    bus.line(1).pulse()
    assert pic.pending()                     # IR1 is higher: it nests
    assert pic.acknowledge() == 0x21
    assert isr(pic, 0x20) == 0x0A
    out(pic, 0x20, 0x20)                     # ends IR1 (highest in service)
    assert isr(pic, 0x20) == 0x08
    assert not pic.pending()
    out(pic, 0x20, 0x20)
    assert pic.acknowledge() == 0x25


def test_slave_in_service_blocks_lower_master_levels() -> None:
    """Master IR2 in service (slave interrupt) blocks master IR3-7 until the master's EOI."""
    bus, pic = make()
    bus.line(10).pulse()
    assert pic.acknowledge() == 0x2A
    bus.line(4).pulse()
    assert not pic.pending()
    bus.line(0).pulse()
    assert pic.acknowledge() == 0x20
    out(pic, 0x20, 0x20)
    out(pic, 0xA0, 0x20)
    out(pic, 0x20, 0x20)
    assert pic.acknowledge() == 0x24


def test_masked_request_waits_in_irr() -> None:
    """OCW1 masks INT, not IRR: a masked edge stays requested and arrives when unmasked."""
    bus, pic = make()
    out(pic, 0x21, 0x08)
    bus.line(3).pulse()
    assert not pic.pending()
    assert inb(pic, 0x20) == 0x08
    out(pic, 0x21, 0x00)
    assert pic.pending()
    assert pic.acknowledge() == 0x23


def test_masked_slave_request_waits() -> None:
    """A slave request masked in the slave's IMR arrives when unmasked."""
    bus, pic = make()
    out(pic, 0xA1, 0x80)
    bus.line(15).pulse()
    assert not pic.pending()
    out(pic, 0xA1, 0x00)
    assert pic.acknowledge() == 0x2F


def test_elcr_level_triggered() -> None:
    """PIIX ELCR: level mode per IRQ; IRR follows the line; reserved bits (IRQ 0-2, 8, 13)
    read 0."""
    bus, pic = make()
    out(pic, 0x4D0, 0xFF)
    out(pic, 0x4D1, 0xFF)
    assert inb(pic, 0x4D0) == 0xF8
    assert inb(pic, 0x4D1) == 0xDE
    five = bus.line(5)
    five.raise_()
    assert inb(pic, 0x20) == 0x20
    assert pic.pending()
    five.lower()
    assert inb(pic, 0x20) == 0x00            # the request is withdrawn with the line
    assert not pic.pending()
    line = bus.line(11)
    line.raise_()
    assert inb(pic, 0xA0) == 0x08
    assert pic.acknowledge() == 0x2B
    assert inb(pic, 0xA0) == 0x08            # still requested: level IRR is the line
    out(pic, 0xA0, 0x20)
    out(pic, 0x20, 0x20)
    assert pic.pending()                     # line still high: interrupts again after EOI
    assert pic.acknowledge() == 0x2B
    line.lower()
    assert inb(pic, 0xA0) == 0x00
    out(pic, 0xA0, 0x20)
    out(pic, 0x20, 0x20)
    assert not pic.pending()


def test_ltim_level_mode_for_whole_chip() -> None:
    """ICW1 LTIM: every input of that chip is level-sensitive."""
    bus, pic = make(init=False)
    out(pic, 0x20, 0x19)
    out(pic, 0x21, 0x20)
    out(pic, 0x21, 0x04)
    out(pic, 0x21, 0x01)
    bus.line(0).raise_()
    assert pic.pending()
    bus.line(0).lower()
    assert not pic.pending()


def test_edge_latch_survives_line_drop() -> None:
    """Edge mode: the rising edge latches IRR (IrqLine.pulse contract); a held line does not
    repeat."""
    bus, pic = make()
    line = bus.line(6)
    line.raise_()
    assert pic.acknowledge() == 0x26
    out(pic, 0x20, 0x20)
    assert not pic.pending()                 # still high but no new edge
    line.lower()
    line.raise_()
    assert pic.pending()


def test_icw1_needs_a_new_edge() -> None:
    """ICW1 resets the edge sense latch: a line high across initialisation must rise again."""
    bus, pic = make()
    bus.line(3).raise_()
    linux_init(pic)
    assert not pic.pending()
    bus.line(3).lower()
    bus.line(3).raise_()
    assert pic.acknowledge() == 0x23


def test_auto_eoi() -> None:
    """ICW4 AEOI: the ISR bit is not left set by INTA, so the same level can come again."""
    bus, pic = make()
    linux_init(pic, master_icw4=0x03)
    bus.line(4).pulse()
    assert pic.acknowledge() == 0x24
    assert isr(pic, 0x20) == 0
    bus.line(4).pulse()
    assert pic.acknowledge() == 0x24


def test_ocw3_reads_irr_and_isr() -> None:
    """OCW3 RR/RIS selects IRR or ISR for reads of the command port; the data port reads IMR."""
    bus, pic = make()
    out(pic, 0x21, 0x40)
    bus.line(6).pulse()
    bus.line(5).pulse()
    assert pic.acknowledge() == 0x25
    out(pic, 0x20, 0x0A)
    assert inb(pic, 0x20) == 0x40
    out(pic, 0x20, 0x0B)
    assert inb(pic, 0x20) == 0x20
    assert inb(pic, 0x20) == 0x20            # the selection persists
    out(pic, 0x20, 0x08)                     # RR = 0: selection unchanged
    assert inb(pic, 0x20) == 0x20
    assert inb(pic, 0x21) == 0x40


def test_poll_command() -> None:
    """OCW3 poll: the next read is 0x80 | level and acknowledges it; no request reads 0."""
    bus, pic = make()
    bus.line(7).pulse()
    out(pic, 0x20, 0x0C)
    assert inb(pic, 0x20) == 0x87
    assert isr(pic, 0x20) == 0x80
    out(pic, 0x20, 0x0C)
    assert inb(pic, 0x21) == 0x00            # IR7 in service, nothing else: no request
    assert inb(pic, 0x21) == 0x00            # the poll was consumed: IMR again


def test_spurious_master_irq7() -> None:
    """Request gone between INT and INTA (level line dropped): IR7 vector, no ISR bit set."""
    bus, pic = make()
    out(pic, 0x4D0, 0x20)                    # IRQ 5 level-triggered
    bus.line(5).raise_()
    assert pic.pending()
    bus.line(5).lower()
    assert pic.acknowledge() == 0x27
    assert isr(pic, 0x20) == 0


def test_spurious_after_mask() -> None:
    """Masking between INT and INTA also leaves the master nothing to give: IR7 vector."""
    bus, pic = make()
    bus.line(3).pulse()
    out(pic, 0x21, 0x08)
    assert pic.acknowledge() == 0x27
    assert isr(pic, 0x20) == 0
    assert inb(pic, 0x20) == 0x08            # the edge request is still in IRR


def test_spurious_slave_irq15() -> None:
    """Slave request gone before INTA: master IR2 goes in service, slave gives its IR7 vector."""
    bus, pic = make()
    out(pic, 0x4D1, 0x08)                    # IRQ 11 level
    bus.line(11).raise_()
    assert pic.pending()
    bus.line(11).lower()
    assert pic.acknowledge() == 0x2F
    assert isr(pic, 0x20) == 0x04
    assert isr(pic, 0xA0) == 0
    out(pic, 0x20, 0x20)
    assert isr(pic, 0x20) == 0


def test_specific_eoi_and_rotation() -> None:
    """OCW2 specific EOI clears the named level; rotate-on-EOI makes it lowest priority."""
    bus, pic = make()
    bus.line(3).pulse()
    bus.line(4).pulse()
    assert pic.acknowledge() == 0x23
    out(pic, 0x20, 0x60 | 4)                 # specific EOI of a level not in service
    assert isr(pic, 0x20) == 0x08
    out(pic, 0x20, 0xE0 | 3)                 # rotate on specific EOI: IR3 lowest
    assert isr(pic, 0x20) == 0
    bus.line(3).pulse()
    assert pic.acknowledge() == 0x24         # IR4 now outranks IR3
    out(pic, 0x20, 0xC0 | 7)                 # set priority: IR7 lowest again
    out(pic, 0x20, 0x60 | 4)
    assert pic.acknowledge() == 0x23


def test_special_mask_mode() -> None:
    """OCW3 SMM: a level in service no longer blocks lower levels; masked ISR bits need
    specific EOI."""
    bus, pic = make()
    bus.line(1).pulse()
    assert pic.acknowledge() == 0x21
    bus.line(5).pulse()
    assert not pic.pending()
    out(pic, 0x21, 0x02)                     # the handler masks its own level ...
    out(pic, 0x20, 0x68)                     # ... and enters special mask mode
    assert pic.acknowledge() == 0x25
    out(pic, 0x20, 0x20)                     # non-specific EOI skips masked IR1
    assert isr(pic, 0x20) == 0x02
    out(pic, 0x20, 0x61)
    out(pic, 0x20, 0x48)                     # leave special mask mode
    assert isr(pic, 0x20) == 0


def test_special_fully_nested_mode() -> None:
    """SFNM on the master: a higher slave request gets through while IR2 is in service."""
    bus, pic = make()
    linux_init(pic, master_icw4=0x11)
    bus.line(12).pulse()
    assert pic.acknowledge() == 0x2C
    bus.line(9).pulse()
    assert pic.acknowledge() == 0x29
    assert isr(pic, 0xA0) == 0x12


def test_single_mode_vectors() -> None:
    """ICW1 SNGL without ICW3 and ICW4: the sequence ends after ICW2; vectors as in 8086 mode."""
    bus, pic = make(init=False)
    out(pic, 0x20, 0x12)
    out(pic, 0x21, 0x40)
    out(pic, 0x21, 0x00)                     # OCW1 now, not an ICW
    bus.line(6).pulse()
    assert pic.acknowledge() == 0x46


def test_int_inactive_during_icw_sequence() -> None:
    """While ICWs are awaited INT stays inactive; OCWs on the command port still decode."""
    bus, pic = make()
    out(pic, 0x20, 0x11)
    bus.line(1).pulse()
    assert not pic.pending()
    out(pic, 0x20, 0x0B)                     # OCW3 in the middle of the sequence
    out(pic, 0x21, 0x30)
    out(pic, 0x21, 0x04)
    assert not pic.pending()
    out(pic, 0x21, 0x01)
    assert pic.pending()
    assert pic.acknowledge() == 0x31
    assert inb(pic, 0x20) == 0x02            # ISR read selected by the OCW3 above


def test_restarted_and_nonsense_programming() -> None:
    """Interrupted ICW sequences, OCWs in odd places and random I/O never raise."""
    bus, pic = make(init=False)
    out(pic, 0x20, 0x11)
    out(pic, 0x20, 0x11)                     # restart
    out(pic, 0x21, 0x20)
    out(pic, 0x20, 0x15)                     # restart again with ICW4 expected, cascade
    out(pic, 0xA0, 0x0C)
    assert inb(pic, 0xA0) == 0
    rng = random.Random(8259)
    ports = [0x20, 0x21, 0xA0, 0xA1, 0x4D0, 0x4D1]
    for _ in range(20000):
        op = rng.randrange(5)
        if op == 0:
            pic.io_write(rng.choice(ports), rng.choice((1, 2, 4)), rng.getrandbits(32))
        elif op == 1:
            value = pic.io_read(rng.choice(ports), 1)
            assert 0 <= value <= 0xFF
        elif op == 2:
            bus.set(rng.randrange(16), rng.random() < 0.5)
        elif op == 3 and pic.pending():
            vector = pic.acknowledge()
            assert vector is not None and 0 <= vector <= 0xFF
        else:
            vector = pic.acknowledge()
            assert vector is not None and 0 <= vector <= 0xFF
    linux_init(pic)
    for irq in range(16):
        bus.set(irq, False)
    out(pic, 0x4D0, 0)
    out(pic, 0x4D1, 0)
    bus.line(1).pulse()
    assert pic.acknowledge() == 0x21


def test_wide_access_splits_into_bytes() -> None:
    """A 16-bit access to 0x20 reaches 0x20 and 0x21 in turn, as on the ISA bus."""
    _, pic = make()
    out(pic, 0x21, 0x5A)
    assert pic.io_read(0x20, 2) == 0x5A00


def test_save_load_round_trip() -> None:
    """save_state is plain data; load_state reproduces ISR, IRR, IMR, modes and pending INT."""
    bus, pic = make()
    linux_init(pic, master_icw4=0x01)
    out(pic, 0x4D1, 0x08)                    # IRQ 11 level-triggered ...
    out(pic, 0xA1, 0x08)                     # ... and masked for now
    out(pic, 0x21, 0x10)
    bus.line(11).raise_()
    bus.line(3).pulse()
    bus.line(4).pulse()
    assert pic.acknowledge() == 0x23
    state = pic.save_state()
    assert all(isinstance(v, (int, bool)) for chip in state.values() for v in chip.values())

    other = Pic8259Pair()
    other.load_state(state)
    for p in (pic, other):
        assert p.pending() is False
        assert isr(p, 0x20) == 0x08
        assert inb(p, 0x21) == 0x10
        out(p, 0x20, 0x20)
        assert not p.pending()
        out(p, 0xA1, 0x00)
        assert p.acknowledge() == 0x2B
        assert isr(p, 0xA0) == 0x08
        out(p, 0xA0, 0x20)
        out(p, 0x20, 0x20)
        assert p.acknowledge() == 0x2B       # level line still high in the saved pins
        out(p, 0xA1, 0x08)
        out(p, 0xA0, 0x20)
        out(p, 0x20, 0x20)
        out(p, 0x21, 0x00)
        assert p.acknowledge() == 0x24       # the latched edge of IRQ 4 survived
