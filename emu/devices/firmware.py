"""What a PC BIOS leaves in memory, written by Python instead (DESIGN D2), and the memory map.

No BIOS code runs in this machine, yet kernels look for the structures a BIOS leaves behind.
This module owns the physical layout facts of the emulated PC and writes those structures:

| where                 | what                                                            |
|-----------------------|-----------------------------------------------------------------|
| 0x400  (BDA, word)    | COM1 base port 0x3F8 (BDA serial port table; COM2-4 absent)     |
| 0x40E  (BDA, word)    | EBDA segment 0x9FC0                                             |
| 0x410  (BDA, word)    | equipment word: one serial port, FPU present                    |
| 0x413  (BDA, word)    | base memory size in KiB (639)                                   |
| 0x9FC00 (EBDA, byte)  | EBDA size in KiB (1)                                            |
| 0x9FC10               | Intel MP 1.4 floating pointer "_MP_" (first KiB of the EBDA)    |
| 0x9FC20               | MP configuration table "PCMP"                                   |
| 0xE0000               | ACPI RSDP "RSD PTR " (revision 0)                               |
| 0xE0040               | ACPI RSDT                                                       |
| 0xE0080               | ACPI MADT "APIC"                                                |

The machine is a uniprocessor: one CPU with local APIC ID 0 at 0xFEE00000, one I/O APIC with
ID 1 at 0xFEC00000, ISA IRQ 0 on I/O APIC pin 2 (the override every PC firmware declares) and
every other ISA IRQ on the pin of the same number.  `memory_map` is the single source of the
E820-style map: the multiboot loader hands the same ranges to the kernel, and every table here
lies in a range it marks reserved.
"""
from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import NamedTuple

KIB = 1024
MIB = 1024 * KIB

BDA_BASE = 0x400
BDA_END = 0x500
BDA_COM_PORTS = 0x400
BDA_EBDA_SEGMENT = 0x40E
BDA_EQUIPMENT = 0x410
BDA_BASE_MEMORY = 0x413

EBDA_BASE = 0x9FC00
EBDA_END = 0xA0000
BASE_MEMORY_KIB = EBDA_BASE // KIB  # 639
BIOS_AREA_BASE = 0xE0000
BIOS_AREA_END = 0x100000
HIGH_MEMORY_BASE = 0x100000

IOAPIC_BASE = 0xFEC00000
LAPIC_BASE = 0xFEE00000
BIOS_ROM_BASE = 0xFFFC0000  # the 256 KiB reset-vector alias below 4 GiB

COM1_PORT = 0x3F8
BSP_APIC_ID = 0
IOAPIC_ID = 1
LAPIC_VERSION = 0x14
IOAPIC_VERSION = 0x20
#: ISA IRQ 0 (the PIT) reaches the I/O APIC on pin 2; pin 0 carries the 8259A's ExtINT.
IRQ0_PIN = 2

# Family 6 signature and the CPUID.1 EDX bits an MP-aware kernel looks at (FPU PSE TSC MSR
# CX8 APIC PGE CMOV).  The CPU model in emu/cpu.py may pass its own values.
DEFAULT_CPU_SIGNATURE = (6 << 8) | (3 << 4) | 3
DEFAULT_CPU_FEATURES = (1 << 0) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 8) | (1 << 9) \
    | (1 << 13) | (1 << 15)

MP_FLOATING_ADDR = EBDA_BASE + 0x10
MP_CONFIG_ADDR = EBDA_BASE + 0x20
RSDP_ADDR = BIOS_AREA_BASE
RSDT_ADDR = BIOS_AREA_BASE + 0x40
MADT_ADDR = BIOS_AREA_BASE + 0x80

ACPI_OEM_ID = b"L4EMU "
ACPI_OEM_TABLE_ID = b"L4EMU   "
ACPI_CREATOR_ID = b"L4EM"
MP_OEM_ID = b"L4EMU   "
MP_PRODUCT_ID = b"PC          "


class MemoryType(enum.IntEnum):
    """Multiboot/E820 range types."""

    AVAILABLE = 1
    RESERVED = 2


class MemoryRange(NamedTuple):
    base: int
    length: int
    type: MemoryType

    @property
    def end(self) -> int:
        return self.base + self.length


def memory_map(ram_size: int) -> list[MemoryRange]:
    """The physical memory map of a machine with `ram_size` bytes of RAM, in address order."""
    if ram_size <= HIGH_MEMORY_BASE:
        raise ValueError(f"RAM size {ram_size:#x} does not reach above 1 MiB")
    avail, resv = MemoryType.AVAILABLE, MemoryType.RESERVED
    return [
        MemoryRange(0, EBDA_BASE, avail),
        MemoryRange(EBDA_BASE, EBDA_END - EBDA_BASE, resv),
        MemoryRange(BIOS_AREA_BASE, BIOS_AREA_END - BIOS_AREA_BASE, resv),
        MemoryRange(HIGH_MEMORY_BASE, ram_size - HIGH_MEMORY_BASE, avail),
        MemoryRange(IOAPIC_BASE, 0x1000, resv),
        MemoryRange(LAPIC_BASE, 0x1000, resv),
        MemoryRange(BIOS_ROM_BASE, (1 << 32) - BIOS_ROM_BASE, resv),
    ]


@dataclass(frozen=True)
class FirmwareInfo:
    """Physical addresses of the structures `write_firmware` put in RAM."""

    mp_floating: int
    mp_config: int
    rsdp: int
    rsdt: int
    madt: int
    #: [start, end) ranges written; all inside ranges `memory_map` marks reserved, or the BDA.
    areas: tuple[tuple[int, int], ...]


def _checksum(data: bytes) -> int:
    """The byte that makes `data` (with its checksum byte zero) sum to 0 mod 256."""
    return -sum(data) & 0xFF


def _with_checksum(data: bytes, offset: int) -> bytes:
    buf = bytearray(data)
    buf[offset] = 0
    buf[offset] = _checksum(buf)
    return bytes(buf)


# --- Intel MultiProcessor Specification 1.4 ------------------------------------------------

MP_ENTRY_PROCESSOR, MP_ENTRY_BUS, MP_ENTRY_IOAPIC, MP_ENTRY_IOINT, MP_ENTRY_LOCALINT = range(5)
MP_INT, MP_NMI, MP_SMI, MP_EXTINT = range(4)
MP_FLAGS_CONFORMS = 0  # polarity and trigger mode "conforms to the bus"


def _mp_config_table(cpu_signature: int, cpu_features: int) -> bytes:
    entries = [
        struct.pack("<BBBBII8x", MP_ENTRY_PROCESSOR, BSP_APIC_ID, LAPIC_VERSION,
                    0b11,  # enabled, bootstrap processor
                    cpu_signature, cpu_features),
        struct.pack("<BB6s", MP_ENTRY_BUS, 0, b"ISA   "),
        struct.pack("<BBBBI", MP_ENTRY_IOAPIC, IOAPIC_ID, IOAPIC_VERSION, 1, IOAPIC_BASE),
        # The 8259A pair's output reaches the I/O APIC on pin 0 (virtual wire through it).
        struct.pack("<BBHBBBB", MP_ENTRY_IOINT, MP_EXTINT, MP_FLAGS_CONFORMS, 0, 0,
                    IOAPIC_ID, 0),
    ]
    for irq in range(16):
        if irq == 2:  # the cascade input: no device raises it
            continue
        pin = IRQ0_PIN if irq == 0 else irq
        entries.append(struct.pack("<BBHBBBB", MP_ENTRY_IOINT, MP_INT, MP_FLAGS_CONFORMS,
                                   0, irq, IOAPIC_ID, pin))
    for kind, lint in ((MP_EXTINT, 0), (MP_NMI, 1)):
        entries.append(struct.pack("<BBHBBBB", MP_ENTRY_LOCALINT, kind, MP_FLAGS_CONFORMS,
                                   0, 0, 0xFF, lint))  # destination 0xFF: every local APIC
    body = b"".join(entries)
    header = struct.pack("<4sHBB8s12sIHHIHBx", b"PCMP", 44 + len(body), 4, 0,
                         MP_OEM_ID, MP_PRODUCT_ID, 0, 0, len(entries), LAPIC_BASE, 0, 0)
    return _with_checksum(header + body, 7)


def _mp_floating_pointer(config_addr: int) -> bytes:
    # Feature byte 1 = 0: a configuration table exists; byte 2 bit 7 = 0: no IMCR (virtual wire).
    raw = struct.pack("<4sIBBBB4x", b"_MP_", config_addr, 1, 4, 0, 0)
    return _with_checksum(raw, 10)


# --- ACPI -----------------------------------------------------------------------------------

def _acpi_table(signature: bytes, revision: int, body: bytes) -> bytes:
    header = struct.pack("<4sIBB6s8sI4sI", signature, 36 + len(body), revision, 0,
                         ACPI_OEM_ID, ACPI_OEM_TABLE_ID, 1, ACPI_CREATOR_ID, 1)
    return _with_checksum(header + body, 9)


MADT_LAPIC, MADT_IOAPIC, MADT_OVERRIDE, MADT_NMI_SOURCE, MADT_LAPIC_NMI = range(5)
MADT_PCAT_COMPAT = 1


def _madt() -> bytes:
    entries = [
        struct.pack("<BBBBI", MADT_LAPIC, 8, 0, BSP_APIC_ID, 1),  # ACPI id 0, enabled
        struct.pack("<BBBxII", MADT_IOAPIC, 12, IOAPIC_ID, IOAPIC_BASE, 0),
        struct.pack("<BBBBIH", MADT_OVERRIDE, 10, 0, 0, IRQ0_PIN, 0),
        struct.pack("<BBBHB", MADT_LAPIC_NMI, 6, 0xFF, 0, 1),  # every processor, LINT1
    ]
    return _acpi_table(b"APIC", 1, struct.pack("<II", LAPIC_BASE, MADT_PCAT_COMPAT)
                       + b"".join(entries))


def _rsdp(rsdt_addr: int) -> bytes:
    return _with_checksum(struct.pack("<8sB6sBI", b"RSD PTR ", 0, ACPI_OEM_ID, 0, rsdt_addr), 8)


# --- writing --------------------------------------------------------------------------------

def write_firmware(ram, ram_size: int, *, cpu_signature: int = DEFAULT_CPU_SIGNATURE,
                   cpu_features: int = DEFAULT_CPU_FEATURES) -> FirmwareInfo:
    """Write the BDA words, the MP 1.4 tables and the ACPI RSDP/RSDT/MADT into guest RAM.

    `ram` is a writable buffer that is guest physical memory from address 0.  The BDA, the
    EBDA and 0xE0000-0xFFFFF are cleared first, so they read the same after every call.
    """
    mem = memoryview(ram).cast("B")
    if ram_size <= HIGH_MEMORY_BASE or len(mem) < ram_size:
        raise ValueError(f"RAM buffer of {len(mem):#x} bytes cannot hold {ram_size:#x} bytes "
                         "reaching above 1 MiB")

    def put(addr: int, data: bytes) -> tuple[int, int]:
        mem[addr:addr + len(data)] = data
        return addr, addr + len(data)

    for lo, hi in ((BDA_BASE, BDA_END), (EBDA_BASE, EBDA_END), (BIOS_AREA_BASE, BIOS_AREA_END)):
        mem[lo:hi] = bytes(hi - lo)

    config = _mp_config_table(cpu_signature, cpu_features)
    madt = _madt()
    rsdt = _acpi_table(b"RSDT", 1, struct.pack("<I", MADT_ADDR))
    rsdp = _rsdp(RSDT_ADDR)
    # The addresses are fixed so every run has the same layout; these guard the fixed gaps.
    if (MP_CONFIG_ADDR + len(config) > EBDA_END or RSDP_ADDR + len(rsdp) > RSDT_ADDR
            or RSDT_ADDR + len(rsdt) > MADT_ADDR or MADT_ADDR + len(madt) > BIOS_AREA_END):
        raise AssertionError("firmware tables outgrew their fixed layout")

    areas = (
        put(BDA_COM_PORTS, struct.pack("<4H", COM1_PORT, 0, 0, 0)),
        put(BDA_EBDA_SEGMENT, struct.pack("<H", EBDA_BASE >> 4)),
        put(BDA_EQUIPMENT, struct.pack("<H", (1 << 9) | (1 << 1))),
        put(BDA_BASE_MEMORY, struct.pack("<H", BASE_MEMORY_KIB)),
        put(EBDA_BASE, bytes([(EBDA_END - EBDA_BASE) // KIB])),
        put(MP_FLOATING_ADDR, _mp_floating_pointer(MP_CONFIG_ADDR)),
        put(MP_CONFIG_ADDR, config),
        put(RSDP_ADDR, rsdp),
        put(RSDT_ADDR, rsdt),
        put(MADT_ADDR, madt),
    )
    return FirmwareInfo(mp_floating=MP_FLOATING_ADDR, mp_config=MP_CONFIG_ADDR,
                        rsdp=RSDP_ADDR, rsdt=RSDT_ADDR, madt=MADT_ADDR, areas=areas)
