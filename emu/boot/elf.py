"""A small ELF32 i386 executable writer: the link step for code keystone assembled.

pyelftools only reads ELF, so this module owns writing it.  The output is an ET_EXEC, EM_386,
little-endian file with:

- one PT_LOAD program header per `Segment` (file bytes, then zero fill up to `memsz`);
- section headers: a PROGBITS section for each segment's file bytes and a NOBITS section for
  its zero fill (or a single NOBITS section for a segment with no file bytes), `.symtab` with
  its `.strtab` (local symbols first, as the ELF specification requires), and `.shstrtab`.

The symbol table is what lets gdb, the debugger shell and the tracer name kernel code
(DESIGN D7, D10).  Programming errors (overlapping segments, bad flags) raise ValueError.
"""
from __future__ import annotations

import itertools
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

ET_EXEC = 2
EM_386 = 3
PT_LOAD = 1
PF_X, PF_W, PF_R = 1, 2, 4
SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB, SHT_NOBITS = 1, 2, 3, 8
SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 1, 2, 4
SHN_ABS = 0xFFF1
STB_LOCAL, STB_GLOBAL = 0, 1
STT_NOTYPE, STT_OBJECT, STT_FUNC = 0, 1, 2

EHDR_SIZE, PHDR_SIZE, SHDR_SIZE, SYM_SIZE = 52, 32, 40, 16

SymbolType = Literal["func", "object", "notype"]
SymbolBinding = Literal["global", "local"]
_SYMBOL_TYPES = {"func": STT_FUNC, "object": STT_OBJECT, "notype": STT_NOTYPE}
_SYMBOL_BINDINGS = {"global": STB_GLOBAL, "local": STB_LOCAL}


@dataclass(frozen=True)
class Segment:
    """One PT_LOAD segment and the section(s) naming it.

    `name` names the section of the file bytes (".text", ".data"), or the NOBITS section when
    `data` is empty (".bss").  Zero fill after non-empty `data` gets a NOBITS section named
    `bss_name`.  `flags` is a subset of "rwx".  `paddr` defaults to `vaddr`.
    """

    name: str
    vaddr: int
    data: bytes = b""
    memsz: int | None = None
    flags: str = "rx"
    paddr: int | None = None
    align: int = 0x1000
    bss_name: str = ".bss"

    @property
    def size(self) -> int:
        return len(self.data) if self.memsz is None else self.memsz

    @property
    def load_addr(self) -> int:
        return self.vaddr if self.paddr is None else self.paddr


@dataclass(frozen=True)
class Symbol:
    """A symbol-table entry; its section is the one whose address range holds `value`."""

    name: str
    value: int
    size: int = 0
    type: SymbolType = "notype"
    bind: SymbolBinding = "global"


@dataclass(frozen=True)
class _Section:
    name: str
    type: int
    flags: int
    addr: int
    offset: int
    size: int
    link: int = 0
    info: int = 0
    align: int = 1
    entsize: int = 0


class _StringTable:
    """An ELF string table: NUL first, each name stored once."""

    def __init__(self) -> None:
        self.data = bytearray(b"\0")
        self._index: dict[str, int] = {"": 0}

    def add(self, name: str) -> int:
        if name not in self._index:
            if "\0" in name:
                raise ValueError(f"name {name!r} contains a NUL byte")
            self._index[name] = len(self.data)
            self.data += name.encode() + b"\0"
        return self._index[name]


def _check_segments(segments: Sequence[Segment]) -> None:
    for seg in segments:
        if not seg.name or set(seg.flags) - set("rwx"):
            raise ValueError(f"segment {seg.name!r}: needs a name and flags from 'rwx'")
        if seg.size < len(seg.data):
            raise ValueError(f"segment {seg.name}: memsz {seg.size:#x} < file size")
        if seg.align <= 0 or seg.align & (seg.align - 1):
            raise ValueError(f"segment {seg.name}: alignment {seg.align} is not a power of 2")
        for addr in (seg.vaddr, seg.load_addr):
            if addr < 0 or addr + seg.size > 1 << 32:
                raise ValueError(f"segment {seg.name}: outside the 32-bit address space")
    ordered = sorted(segments, key=lambda s: s.vaddr)
    for a, b in itertools.pairwise(ordered):
        if a.vaddr + a.size > b.vaddr:
            raise ValueError(f"segments {a.name} and {b.name} overlap")


def _segment_flags(seg: Segment) -> tuple[int, int]:
    """(p_flags, sh_flags) for a segment."""
    pf = (PF_R if "r" in seg.flags else 0) | (PF_W if "w" in seg.flags else 0) \
        | (PF_X if "x" in seg.flags else 0)
    sf = SHF_ALLOC | (SHF_WRITE if "w" in seg.flags else 0) \
        | (SHF_EXECINSTR if "x" in seg.flags else 0)
    return pf, sf


def write_elf(segments: Sequence[Segment], entry: int,
              symbols: Iterable[Symbol] = ()) -> bytes:
    """Link `segments` into an ELF32 i386 executable entered at `entry`; return the file."""
    segments = list(segments)
    _check_segments(segments)
    out = bytearray(EHDR_SIZE + PHDR_SIZE * len(segments))

    # File offsets stay congruent to addresses modulo the alignment, as loaders that map
    # segments page by page (and readelf's checks) expect.
    phdrs: list[bytes] = []
    sections: list[_Section] = [_Section("", 0, 0, 0, 0, 0)]
    for seg in segments:
        offset = len(out) + (seg.vaddr - len(out)) % seg.align
        out += bytes(offset - len(out)) + seg.data
        pf, sf = _segment_flags(seg)
        phdrs.append(struct.pack("<8I", PT_LOAD, offset, seg.vaddr, seg.load_addr,
                                 len(seg.data), seg.size, pf, seg.align))
        if seg.data:
            sections.append(_Section(seg.name, SHT_PROGBITS, sf, seg.vaddr, offset,
                                     len(seg.data), align=_natural_align(seg.vaddr)))
        if seg.size > len(seg.data):
            sections.append(_Section(seg.bss_name if seg.data else seg.name, SHT_NOBITS, sf,
                                     seg.vaddr + len(seg.data), offset + len(seg.data),
                                     seg.size - len(seg.data),
                                     align=_natural_align(seg.vaddr + len(seg.data))))
    out[EHDR_SIZE:EHDR_SIZE + len(phdrs) * PHDR_SIZE] = b"".join(phdrs)

    strtab = _StringTable()
    symtab = bytearray(SYM_SIZE)  # entry 0 is the undefined symbol
    ordered = sorted(symbols, key=lambda s: s.bind != "local")  # stable: locals first
    first_global = 1 + sum(1 for s in ordered if s.bind == "local")
    for sym in ordered:
        if sym.type not in _SYMBOL_TYPES or sym.bind not in _SYMBOL_BINDINGS:
            raise ValueError(f"symbol {sym.name}: bad type {sym.type!r} or binding {sym.bind!r}")
        info = (_SYMBOL_BINDINGS[sym.bind] << 4) | _SYMBOL_TYPES[sym.type]
        symtab += struct.pack("<IIIBBH", strtab.add(sym.name), sym.value & 0xFFFFFFFF,
                              sym.size, info, 0, _section_of(sym.value, sections))

    symtab_index = len(sections)
    out += bytes(-len(out) % 4)
    sections.append(_Section(".symtab", SHT_SYMTAB, 0, 0, len(out), len(symtab),
                             link=symtab_index + 1, info=first_global, align=4,
                             entsize=SYM_SIZE))
    out += symtab
    sections.append(_Section(".strtab", SHT_STRTAB, 0, 0, len(out), len(strtab.data)))
    out += strtab.data

    shstrtab = _StringTable()
    for sec in sections:
        shstrtab.add(sec.name)
    shstrtab.add(".shstrtab")
    sections.append(_Section(".shstrtab", SHT_STRTAB, 0, 0, len(out), len(shstrtab.data)))
    out += shstrtab.data

    out += bytes(-len(out) % 4)
    shoff = len(out)
    for sec in sections:
        out += struct.pack("<10I", shstrtab.add(sec.name), sec.type, sec.flags, sec.addr,
                           sec.offset, sec.size, sec.link, sec.info, sec.align, sec.entsize)

    ident = b"\x7fELF" + bytes([1, 1, 1]) + bytes(9)  # ELFCLASS32, little-endian, version 1
    out[:EHDR_SIZE] = ident + struct.pack(
        "<HHIIIIIHHHHHH", ET_EXEC, EM_386, 1, entry, EHDR_SIZE, shoff, 0, EHDR_SIZE,
        PHDR_SIZE, len(segments), SHDR_SIZE, len(sections), len(sections) - 1)
    return bytes(out)


def _natural_align(addr: int, cap: int = 16) -> int:
    """The largest power of two up to `cap` that divides `addr` (a section's sh_addralign)."""
    return min(addr & -addr, cap) if addr else cap


def _section_of(value: int, sections: Sequence[_Section]) -> int:
    """Index of the allocated section holding `value` (its end counts, for `_end`-style
    symbols), else SHN_ABS."""
    for index, sec in enumerate(sections):
        if sec.flags & SHF_ALLOC and sec.addr <= value < sec.addr + sec.size:
            return index
    for index, sec in enumerate(sections):
        if sec.flags & SHF_ALLOC and value == sec.addr + sec.size:
            return index
    return SHN_ABS
