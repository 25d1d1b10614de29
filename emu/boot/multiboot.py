"""Multiboot v1 loader (Multiboot Specification 0.6.96): kernel, modules and boot information.

This module owns putting a kernel into guest RAM the way a multiboot loader (GRUB legacy,
QEMU `-kernel`) would, and building the multiboot information structure (MBI) the kernel
finds in EBX (DESIGN D2).  The CPU state itself (loader GDT, EAX/EBX, EIP) is the machine's.

Layout it produces:

- the kernel at its physical addresses: ELF PT_LOAD segments at p_paddr, or, with header
  flag bit 16 (the "a.out kludge", also for flat binaries), the file range the header's
  address fields describe;
- modules one after another, each page-aligned, from the first page at or above both the
  kernel's end and 1 MiB;
- the MBI block at `MBI_BASE` (0x9000) in low memory: the MBI, then the command-line and
  loader-name strings, the module list and the memory map.  If the kernel occupies that spot
  the block goes to the first page after the last module instead.

Every loaded byte must lie in RAM the memory map (emu/devices/firmware.py) calls available,
so the kernel never covers the BIOS data the firmware writer leaves in the EBDA and at
0xE0000-0xFFFFF.  Bad input raises UserError with a one-line message starting with the path.
"""
from __future__ import annotations

import io
import itertools
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Union

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from emu.devices.firmware import (
    BASE_MEMORY_KIB,
    HIGH_MEMORY_BASE,
    KIB,
    MIB,
    MemoryRange,
    MemoryType,
    memory_map,
)
from emu.errors import UserError

HEADER_MAGIC = 0x1BADB002
BOOTLOADER_MAGIC = 0x2BADB002
HEADER_SEARCH = 8192
PAGE = 0x1000

HDR_PAGE_ALIGN = 1 << 0
HDR_MEMORY_INFO = 1 << 1
HDR_VIDEO_MODE = 1 << 2
HDR_AOUT_KLUDGE = 1 << 16
_HDR_KNOWN_REQUIRED = HDR_PAGE_ALIGN | HDR_MEMORY_INFO | HDR_VIDEO_MODE

MBI_MEMORY = 1 << 0
MBI_CMDLINE = 1 << 2
MBI_MODS = 1 << 3
MBI_MMAP = 1 << 6
MBI_LOADER_NAME = 1 << 9
MBI_SIZE = 116  # up to and including the framebuffer fields of spec 0.6.96
MBI_BASE = 0x9000
MBI_LIMIT = 0x9FC00  # start of the EBDA
LOADER_NAME = "l4emu"

MIN_RAM = 2 * MIB
MAX_RAM = 3 * 1024 * MIB  # the device window starts at 0xC0000000

PathLike = Union[str, "os.PathLike[str]"]


class LoadedModule(NamedTuple):
    """A module in RAM: [start, end) and its command line, as the MBI module list says."""

    start: int
    end: int
    cmdline: str


@dataclass(frozen=True)
class MultibootHeader:
    offset: int  # in the file
    flags: int
    header_addr: int = 0
    load_addr: int = 0
    load_end_addr: int = 0
    bss_end_addr: int = 0
    entry_addr: int = 0


@dataclass
class BootInfo:
    """What the loader did: the CPU starts at `entry` with EAX=`magic`, EBX=`mbi_addr`."""

    entry: int
    mbi_addr: int
    kernel_start: int
    kernel_end: int
    modules: list[LoadedModule]
    mmap: list[MemoryRange]
    #: name -> address (virtual, as linked) from the kernel's .symtab; empty without one.
    symbols: dict[str, int] = field(default_factory=dict)
    #: [start, end) of the MBI block (MBI, strings, module list, memory map).
    mbi_area: tuple[int, int] = (0, 0)
    magic: int = BOOTLOADER_MAGIC


@dataclass(frozen=True)
class _Chunk:
    """Bytes to place at a physical address; `zero` bytes of zero fill follow `data`."""

    addr: int
    data: bytes | memoryview
    zero: int = 0

    @property
    def end(self) -> int:
        return self.addr + len(self.data) + self.zero


def _align_up(value: int, align: int) -> int:
    return -(-value // align) * align


def _size_text(nbytes: int) -> str:
    for unit, name in ((1024 * MIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")):
        if nbytes % unit == 0:
            return f"{nbytes // unit} {name}"
    return f"{nbytes} bytes"


def _read_file(path: PathLike) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, not a file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror}") from None


def find_header(image: bytes, path: PathLike) -> MultibootHeader | None:
    """The first valid multiboot header in the first 8 KiB, or None if there is no magic.

    A magic number whose checksum is wrong is an error only if no valid header follows.
    """
    bad_offset = None
    for off in range(0, min(len(image), HEADER_SEARCH) - 11, 4):
        magic, flags, checksum = struct.unpack_from("<3I", image, off)
        if magic != HEADER_MAGIC:
            continue
        if (magic + flags + checksum) & 0xFFFFFFFF:
            bad_offset = off if bad_offset is None else bad_offset
            continue
        if flags & HDR_AOUT_KLUDGE:
            if off + 32 > len(image):
                raise UserError(f"{path}: multiboot header at {off:#x} is truncated")
            return MultibootHeader(off, flags, *struct.unpack_from("<5I", image, off + 12))
        return MultibootHeader(off, flags)
    if bad_offset is not None:
        raise UserError(f"{path}: multiboot header at offset {bad_offset:#x} has a bad checksum")
    return None


def _elf_problem(image: bytes) -> str | None:
    """Why `image` (which starts with the ELF magic) is not an i386 executable, or None."""
    if len(image) < 52:
        return "truncated ELF header"
    if image[4] != 1 or image[5] != 1:
        return "not an i386 ELF file (not 32-bit little-endian)"
    e_type, e_machine = struct.unpack_from("<HH", image, 16)
    if e_machine != 3:
        return f"not an i386 ELF file (machine {e_machine})"
    if e_type != 2:
        return f"not an executable ELF file (type {e_type})"
    return None


def _elf_chunks(elf: ELFFile, image: bytes, path: PathLike) -> tuple[list[_Chunk], int]:
    """The PT_LOAD segments as chunks at their physical addresses, and the physical entry."""
    chunks: list[_Chunk] = []
    entry = elf.header.e_entry
    phys_entry = None
    for seg in elf.iter_segments():
        if seg["p_type"] != "PT_LOAD" or seg["p_memsz"] == 0:
            continue
        paddr, vaddr = seg["p_paddr"], seg["p_vaddr"]
        filesz, memsz, offset = seg["p_filesz"], seg["p_memsz"], seg["p_offset"]
        if filesz > memsz or offset + filesz > len(image):
            raise UserError(f"{path}: segment at {paddr:#x} is truncated or malformed")
        chunks.append(_Chunk(paddr, memoryview(image)[offset:offset + filesz], memsz - filesz))
        # Higher-half kernels link the entry at a virtual address: translate it through the
        # segment holding it, as GRUB does.
        if phys_entry is None and vaddr <= entry < vaddr + memsz:
            phys_entry = entry - vaddr + paddr
    if not chunks:
        raise UserError(f"{path}: no loadable segments")
    return chunks, entry if phys_entry is None else phys_entry


def _kludge_chunks(hdr: MultibootHeader, image: bytes, path: PathLike) -> tuple[list[_Chunk], int]:
    """The image the header's address fields describe (flag bit 16), and its entry."""
    file_start = hdr.offset - (hdr.header_addr - hdr.load_addr)
    if hdr.header_addr < hdr.load_addr or file_start < 0:
        raise UserError(f"{path}: multiboot header_addr/load_addr are inconsistent")
    if hdr.load_end_addr:
        if hdr.load_end_addr <= hdr.header_addr:
            raise UserError(f"{path}: multiboot load_end_addr is below the header")
        load_size = hdr.load_end_addr - hdr.load_addr
        if file_start + load_size > len(image):
            raise UserError(f"{path}: file is shorter than multiboot load_end_addr says")
    else:
        load_size = len(image) - file_start
    load_end = hdr.load_addr + load_size
    bss = 0
    if hdr.bss_end_addr:
        if hdr.bss_end_addr < load_end:
            raise UserError(f"{path}: multiboot bss_end_addr is below load_end_addr")
        bss = hdr.bss_end_addr - load_end
    chunk = _Chunk(hdr.load_addr, memoryview(image)[file_start:file_start + load_size], bss)
    if not chunk.addr <= hdr.entry_addr < chunk.end:
        raise UserError(f"{path}: multiboot entry_addr {hdr.entry_addr:#x} is outside the image")
    return [chunk], hdr.entry_addr


def _elf_symbols(elf: ELFFile) -> dict[str, int]:
    symbols: dict[str, int] = {}
    for section in elf.iter_sections():
        if not isinstance(section, SymbolTableSection):
            continue
        for sym in section.iter_symbols():
            info = sym["st_info"]
            if not sym.name or info["type"] in ("STT_SECTION", "STT_FILE"):
                continue
            # A global wins over a local of the same name.
            if info["bind"] != "STB_LOCAL" or sym.name not in symbols:
                symbols[sym.name] = sym["st_value"]
    return symbols


def _check_placement(chunks: Sequence[_Chunk], ram_size: int, path: PathLike,
                     what: str) -> None:
    """Every chunk inside RAM, inside available memory, and not overlapping another."""
    avail = [r for r in memory_map(ram_size) if r.type == MemoryType.AVAILABLE]
    for chunk in chunks:
        if chunk.end > ram_size or chunk.addr < 0:
            raise UserError(f"{path}: {what} at {chunk.addr:#x}-{chunk.end:#x} does not fit "
                            f"in {_size_text(ram_size)} of RAM")
        if not any(r.base <= chunk.addr and chunk.end <= r.end for r in avail):
            raise UserError(f"{path}: {what} at {chunk.addr:#x}-{chunk.end:#x} is not in "
                            "available RAM (0x9FC00-0xFFFFF holds EBDA, video and BIOS)")
    ordered = sorted(chunks, key=lambda c: c.addr)
    for a, b in itertools.pairwise(ordered):
        if a.end > b.addr:
            raise UserError(f"{path}: overlapping segments at {a.addr:#x}-{a.end:#x} and "
                            f"{b.addr:#x}-{b.end:#x}")


def _cstring(text: str, path: PathLike, what: str) -> bytes:
    if "\0" in text:
        raise UserError(f"{path}: {what} contains a NUL character")
    return text.encode() + b"\0"


class _MbiBuilder:
    """Lays out the MBI block: MBI first, then what its pointers point at."""

    def __init__(self, base: int) -> None:
        self.base = base
        self.data = bytearray(MBI_SIZE)

    def add(self, blob: bytes, align: int = 1) -> int:
        self.data += bytes(-len(self.data) % align)
        addr = self.base + len(self.data)
        self.data += blob
        return addr


def _build_mbi(base: int, ram_size: int, cmdline: bytes,
               modules: Sequence[tuple[int, int, bytes]], mmap: Sequence[MemoryRange]
               ) -> bytes:
    mbi = _MbiBuilder(base)
    cmdline_addr = mbi.add(cmdline)
    name_addr = mbi.add(LOADER_NAME.encode() + b"\0")
    mod_strings = [mbi.add(text) for _, _, text in modules]
    mods = b"".join(struct.pack("<4I", start, end, string, 0)
                    for (start, end, _), string in zip(modules, mod_strings, strict=True))
    mods_addr = mbi.add(mods, 4)
    # Each entry is preceded by its size field (20), which mmap_addr points at.
    entries = b"".join(struct.pack("<IQQI", 20, r.base, r.length, int(r.type)) for r in mmap)
    mmap_addr = mbi.add(entries, 8)

    flags = MBI_MEMORY | MBI_CMDLINE | MBI_MODS | MBI_MMAP | MBI_LOADER_NAME
    mem_upper = (ram_size - HIGH_MEMORY_BASE) // KIB
    struct.pack_into("<IIIIIII", mbi.data, 0, flags, BASE_MEMORY_KIB, mem_upper, 0,
                     cmdline_addr, len(modules), mods_addr)
    struct.pack_into("<II", mbi.data, 44, len(entries), mmap_addr)
    struct.pack_into("<I", mbi.data, 64, name_addr)
    return bytes(mbi.data)


def load_multiboot(ram, ram_size: int, kernel: PathLike,
                   modules: Sequence[tuple[PathLike, str] | PathLike] = (),
                   cmdline: str = "") -> BootInfo:
    """Load `kernel` and `modules` into `ram` (guest physical memory from 0) and build the MBI.

    `modules` are (path, command line) pairs (a bare path means an empty command line); a
    module's command line is passed verbatim.
    The kernel's command line in the MBI is its file name followed by `cmdline`, as GRUB does.
    """
    if not MIN_RAM <= ram_size <= MAX_RAM:
        raise UserError(f"RAM size {_size_text(ram_size)} is outside the supported "
                        f"{_size_text(MIN_RAM)} to {_size_text(MAX_RAM)}")
    mem = memoryview(ram).cast("B")
    if len(mem) < ram_size:
        raise ValueError(f"RAM buffer of {len(mem):#x} bytes is smaller than {ram_size:#x}")

    image = _read_file(kernel)
    is_elf = image[:4] == b"\x7fELF"
    if is_elf and (problem := _elf_problem(image)):
        raise UserError(f"{kernel}: {problem}")
    header = find_header(image, kernel)
    if header is None:
        if is_elf:
            raise UserError(f"{kernel}: no multiboot header in the first {HEADER_SEARCH} bytes")
        raise UserError(f"{kernel}: not an ELF file and no multiboot header")
    unknown = header.flags & 0xFFFF & ~_HDR_KNOWN_REQUIRED
    if unknown:
        raise UserError(f"{kernel}: multiboot header requires unsupported features "
                        f"(flags {unknown:#x})")
    # Bit 2 (a video mode) is a request we cannot honour without a framebuffer; kernels
    # must cope with text mode, so it is ignored.

    symbols: dict[str, int] = {}
    elf = None
    if is_elf:
        try:
            elf = ELFFile(io.BytesIO(image))
            symbols = _elf_symbols(elf)
        except (ELFError, struct.error) as exc:
            raise UserError(f"{kernel}: corrupt ELF file ({exc})") from None
    if header.flags & HDR_AOUT_KLUDGE:
        chunks, entry = _kludge_chunks(header, image, kernel)
    elif elf is not None:
        try:
            chunks, entry = _elf_chunks(elf, image, kernel)
        except (ELFError, struct.error) as exc:
            raise UserError(f"{kernel}: corrupt ELF file ({exc})") from None
    else:
        raise UserError(f"{kernel}: not an ELF file and the multiboot header has no "
                        "address fields (flag bit 16)")
    _check_placement(chunks, ram_size, kernel, "kernel segment")
    if not any(c.addr <= entry < c.end for c in chunks):
        raise UserError(f"{kernel}: entry point {entry:#x} is outside the loaded image")
    kernel_start = min(c.addr for c in chunks)
    kernel_end = max(c.end for c in chunks)

    # Modules go above 1 MiB even after a low-memory kernel: below it they would run into
    # the EBDA.  Page alignment is always given (header bit 0 asks for no more).
    mod_chunks: list[tuple[_Chunk, bytes]] = []
    cursor = _align_up(max(kernel_end, HIGH_MEMORY_BASE), PAGE)
    for item in modules:
        path, text = (item, "") if isinstance(item, (str, os.PathLike)) else item
        data = _read_file(path)
        chunk = _Chunk(cursor, data)
        if chunk.end > ram_size:
            raise UserError(f"{path}: module does not fit in {_size_text(ram_size)} of RAM")
        mod_chunks.append((chunk, _cstring(text, path, "module command line")))
        cursor = _align_up(chunk.end, PAGE)

    kernel_cmdline = Path(kernel).name + (f" {cmdline}" if cmdline else "")
    mmap = memory_map(ram_size)
    occupied = chunks + [c for c, _ in mod_chunks]

    def build(base: int) -> bytes:
        return _build_mbi(base, ram_size, _cstring(kernel_cmdline, kernel, "command line"),
                          [(c.addr, c.end, t) for c, t in mod_chunks], mmap)

    mbi_base, mbi = MBI_BASE, build(MBI_BASE)
    if (MBI_BASE + len(mbi) > MBI_LIMIT
            or any(c.addr < MBI_BASE + len(mbi) and c.end > MBI_BASE for c in occupied)):
        mbi_base = cursor
        mbi = build(mbi_base)
        if mbi_base + len(mbi) > ram_size:
            raise UserError(f"{kernel}: no room for the multiboot information in "
                            f"{_size_text(ram_size)} of RAM")

    for chunk in occupied:
        mem[chunk.addr:chunk.addr + len(chunk.data)] = chunk.data
        mem[chunk.addr + len(chunk.data):chunk.end] = bytes(chunk.zero)
    mem[mbi_base:mbi_base + len(mbi)] = mbi

    return BootInfo(
        entry=entry, mbi_addr=mbi_base, kernel_start=kernel_start, kernel_end=kernel_end,
        modules=[LoadedModule(c.addr, c.end, t[:-1].decode()) for c, t in mod_chunks],
        mmap=mmap, symbols=symbols, mbi_area=(mbi_base, mbi_base + len(mbi)))
