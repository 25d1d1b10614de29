"""Firmware tables (emu/devices/firmware.py), found and parsed the way a kernel finds them.

MP tables: Intel MultiProcessor Specification 1.4, ch. 4 (search the first KiB of the EBDA
through the BDA word at 0x40E).  ACPI: RSDP on a 16-byte boundary in 0xE0000-0xFFFFF
(ACPI 1.0b 5.2.4), RSDT, MADT (5.2.10.4).
"""
from __future__ import annotations

import struct
from collections import Counter

import pytest

from emu.devices.firmware import MemoryType, memory_map, write_firmware

MIB = 1 << 20
RAM = 4 * MIB


@pytest.fixture(scope="module")
def mem() -> bytearray:
    ram = bytearray([0xAA]) * RAM
    write_firmware(ram, RAM)
    return ram


def word(mem: bytearray, addr: int) -> int:
    return struct.unpack_from("<H", mem, addr)[0]


def dword(mem: bytearray, addr: int) -> int:
    return struct.unpack_from("<I", mem, addr)[0]


def sums_to_zero(mem: bytearray, addr: int, length: int) -> bool:
    return sum(mem[addr:addr + length]) % 256 == 0


def test_bda(mem):
    assert word(mem, 0x40E) == 0x9FC0  # EBDA segment
    assert word(mem, 0x413) == 639  # base memory in KiB
    assert word(mem, 0x400) == 0x3F8 and word(mem, 0x402) == 0  # COM1 only
    assert (word(mem, 0x410) >> 9) & 7 == 1  # equipment word: one serial port


def find_mp(mem: bytearray) -> int:
    ebda = word(mem, 0x40E) << 4
    hits = [a for a in range(ebda, ebda + 1024, 16) if mem[a:a + 4] == b"_MP_"]
    assert len(hits) == 1
    return hits[0]


def test_mp_floating_pointer(mem):
    fp = find_mp(mem)
    length, rev = mem[fp + 8], mem[fp + 9]
    assert (length, rev) == (1, 4)
    assert sums_to_zero(mem, fp, 16 * length)
    assert mem[fp + 11] == 0  # feature byte 1: a configuration table is present


def mp_entries(mem: bytearray) -> tuple[int, list[bytes]]:
    table = dword(mem, find_mp(mem) + 4)
    assert mem[table:table + 4] == b"PCMP"
    length, count = word(mem, table + 4), word(mem, table + 34)
    assert mem[table + 6] == 4  # spec revision 1.4
    assert sums_to_zero(mem, table, length)
    pos, entries = table + 44, []
    for _ in range(count):
        size = 20 if mem[pos] == 0 else 8
        entries.append(bytes(mem[pos:pos + size]))
        pos += size
    assert pos == table + length
    return table, entries


def test_mp_config_table(mem):
    table, entries = mp_entries(mem)
    assert mem[table + 8:table + 16] == b"L4EMU   "
    assert mem[table + 16:table + 28] == b"PC          "
    assert dword(mem, table + 36) == 0xFEE00000
    assert Counter(e[0] for e in entries) == {0: 1, 1: 1, 2: 1, 3: 16, 4: 2}

    cpu = entries[0]
    apic_id, version, flags, signature = struct.unpack_from("<BBBI", cpu, 1)
    assert (apic_id, version, flags) == (0, 0x14, 0b11)  # enabled, BSP
    assert (signature >> 8) & 0xF == 6
    assert struct.unpack_from("<I", cpu, 8)[0] & (1 << 9)  # feature flags: APIC

    bus = next(e for e in entries if e[0] == 1)
    assert bus[1] == 0 and bus[2:8] == b"ISA   "
    ioapic = next(e for e in entries if e[0] == 2)
    assert struct.unpack("<BBBBI", ioapic)[1:] == (1, 0x20, 1, 0xFEC00000)


def test_mp_interrupt_routing(mem):
    _, entries = mp_entries(mem)
    ioints = [struct.unpack("<BBHBBBB", e)[1:] for e in entries if e[0] == 3]
    # (type, flags, bus, bus irq, ioapic, pin): ExtINT on pin 0, IRQ 0 on pin 2, no IRQ 2.
    assert (3, 0, 0, 0, 1, 0) in ioints
    routes = {irq: pin for kind, _, _, irq, _, pin in ioints if kind == 0}
    assert routes == {0: 2, **{n: n for n in range(1, 16) if n != 2}}
    assert all(flags == 0 and apic == 1 for _, flags, _, _, apic, _ in ioints)
    local = [struct.unpack("<BBHBBBB", e)[1:] for e in entries if e[0] == 4]
    assert sorted((kind, lint) for kind, _, _, _, _, lint in local) == [(1, 1), (3, 0)]


def find_rsdp(mem: bytearray) -> int:
    hits = [a for a in range(0xE0000, 0x100000, 16) if mem[a:a + 8] == b"RSD PTR "]
    assert len(hits) == 1
    return hits[0]


def acpi_table(mem: bytearray, addr: int, signature: bytes) -> bytes:
    assert mem[addr:addr + 4] == signature
    length = dword(mem, addr + 4)
    assert sums_to_zero(mem, addr, length)
    assert mem[addr + 10:addr + 16] == b"L4EMU "
    return bytes(mem[addr:addr + length])


def test_acpi_rsdp_rsdt_madt(mem):
    rsdp = find_rsdp(mem)
    assert sums_to_zero(mem, rsdp, 20)
    assert mem[rsdp + 9:rsdp + 15] == b"L4EMU " and mem[rsdp + 15] == 0  # revision 0
    rsdt = acpi_table(mem, dword(mem, rsdp + 16), b"RSDT")
    pointers = struct.unpack_from(f"<{(len(rsdt) - 36) // 4}I", rsdt, 36)
    assert len(pointers) == 1
    madt = acpi_table(mem, pointers[0], b"APIC")
    assert struct.unpack_from("<II", madt, 36) == (0xFEE00000, 1)  # PCAT_COMPAT

    entries, pos = [], 44
    while pos < len(madt):
        length = madt[pos + 1]
        entries.append(madt[pos:pos + length])
        pos += length
    assert pos == len(madt)
    assert [e[0] for e in entries] == [0, 1, 2, 4]
    assert struct.unpack("<BBBBI", entries[0])[2:] == (0, 0, 1)  # ACPI id 0, APIC id 0, on
    assert struct.unpack("<BBBxII", entries[1])[2:] == (1, 0xFEC00000, 0)
    assert struct.unpack("<BBBBIH", entries[2])[2:] == (0, 0, 2, 0)  # ISA IRQ 0 -> GSI 2
    assert struct.unpack("<BBBHB", entries[3])[4] == 1  # NMI on LINT1


def test_tables_lie_in_reserved_memory():
    ram = bytearray(RAM)
    info = write_firmware(ram, RAM)
    reserved = [r for r in memory_map(RAM) if r.type == MemoryType.RESERVED]
    for start, end in info.areas:
        if start < 0x500:  # the BDA: part of the real-mode data area, by convention
            continue
        assert any(r.base <= start and end <= r.end for r in reserved), hex(start)
    assert {info.mp_floating, info.mp_config} <= set(range(0x9FC00, 0xA0000))
    assert all(0xE0000 <= a < 0x100000 for a in (info.rsdp, info.rsdt, info.madt))


def test_layout_is_deterministic():
    a, b = bytearray(RAM), bytearray([0x55]) * RAM
    assert write_firmware(a, RAM) == write_firmware(b, RAM)
    for lo, hi in ((0x400, 0x500), (0x9FC00, 0xA0000), (0xE0000, 0x100000)):
        assert a[lo:hi] == b[lo:hi]


def test_memory_map():
    assert [(r.base, r.end, r.type) for r in memory_map(16 * MIB)] == [
        (0, 0x9FC00, 1), (0x9FC00, 0xA0000, 2), (0xE0000, 0x100000, 2),
        (0x100000, 16 * MIB, 1), (0xFEC00000, 0xFEC01000, 2), (0xFEE00000, 0xFEE01000, 2),
        (0xFFFC0000, 1 << 32, 2)]
