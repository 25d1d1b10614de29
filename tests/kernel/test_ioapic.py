"""The kernel's I/O APIC mode (kernel/irq.asm, docs/abi.md "Interrupts"): with "ioapic" on its
command line the kernel reads the Intel MP 1.4 table the firmware left (emu/devices/
firmware.py), masks the 8259A pair and takes every ISA interrupt through the I/O APIC pin the
table names (IRQ 0, the timer, on pin 2), acknowledging at the local APIC.  The whole guest test
suite passes in that mode too (interrupt IPC from the RTC included; the timer drives every
timeout); without an MP table the kernel says so and keeps the 8259A."""
from __future__ import annotations

from emu.devices.firmware import MP_FLOATING_ADDR
from emu.machine import Stop

from .l4boot import boot

BANNER = "L4: interrupts through the I/O APIC (8259A masked); IRQ 0 on pin 2"
FALLBACK = "L4: no I/O APIC in an MP table: interrupts through the 8259A"


def test_ktest_passes_through_the_ioapic():
    sess = boot("ktest", cmdline="ioapic")
    m = sess.machine
    while (r := m.run(max_insns=3_000_000_000)).reason is Stop.KDEBUG:
        pass
    lines = sess.text.splitlines()
    assert BANNER in lines, sess.text[:500]
    assert "ktest: irq_rtc ok" in lines and "ktest: ALL TESTS PASSED" in lines, sess.text[-2000:]
    assert r.reason is Stop.EXIT and r.exit_status == 1
    # the 8259As are masked (OCW1 0xFF) and the pin of IRQ 0 is the one the MP table names
    assert m.pic.read_byte(0x21) == 0xFF and m.pic.read_byte(0xA1) == 0xFF
    timer, rtc = m.ioapic.entry(2), m.ioapic.entry(8)
    assert timer & 0x1FFFF == 0x20, hex(timer)          # vector 0x20, fixed, edge, unmasked
    assert rtc & 0xFFFF == 0x28, hex(rtc)               # vector 0x28 (masked again or not)
    assert m.ioapic.entry(0) & 0x10000                  # the 8259A's ExtINT pin: unused


def test_without_an_mp_table_the_8259a_stays():
    sess = boot("hello", cmdline="ioapic")
    m = sess.machine
    m.ram.write(MP_FLOATING_ADDR, b"\0" * 16)       # no "_MP_" anywhere
    r = sess.run()
    lines = sess.text.splitlines()
    assert FALLBACK in lines and BANNER not in lines, sess.text[:500]
    assert r.reason is Stop.EXIT and lines[-1] == "root: ping is done; all done, powering off"


def test_default_is_the_8259a():
    sess = boot("hello")
    r = sess.run()
    assert r.reason is Stop.EXIT
    assert not any("I/O APIC" in line for line in sess.text.splitlines())
