"""Symbols for the debugger and the GDB stub: names and source lines from ELF files (pyelftools).

A `SymbolTable` holds one `ObjectSymbols` per ELF file: the kernel first, then each multiboot
module that is an ELF file (C servers, built with DWARF line tables).  It answers:

    lookup(addr)      -> Located(name, offset, obj)     "putc+0x5" via `describe(addr)`
    address(name)     -> int            "putc", or "sigma0:main" to pick one object
    line(addr)        -> "file.c:42"    from DWARF .debug_line, where the object has it
    names()           -> every name (for completion)

The kernel's symbols win where an address is covered by several objects: modules are linked
for their own address spaces and may overlap each other (a module's symbols name user code in
whichever space runs it; the table cannot tell which space that is).  Symbols of no use for
naming code (section and file symbols, empty names, the ELF writer's `__section_*` markers) are
left out.  A file that is not ELF, or is malformed, yields no symbols and a warning, never an
exception: a debugger must still start on a stripped or odd image.
"""
from __future__ import annotations

import bisect
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

_SKIP_TYPES = {"STT_SECTION", "STT_FILE", "STT_TLS"}


@dataclass
class Located:
    """The symbol at or before an address."""

    name: str
    offset: int
    obj: "ObjectSymbols"
    size: int = 0

    def __str__(self) -> str:
        return self.name if self.offset == 0 else f"{self.name}+{self.offset:#x}"


@dataclass
class ObjectSymbols:
    """The symbols and line table of one ELF file."""

    label: str                       # "kernel" or the module's file stem
    path: str
    by_name: dict[str, int] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    funcs: set[str] = field(default_factory=set)
    ranges: list[tuple[int, int]] = field(default_factory=list)   # loaded [lo, hi)
    entry: int = 0
    _addrs: list[int] = field(default_factory=list)
    _names: list[str] = field(default_factory=list)
    _lines: Optional[list[tuple[int, str, int]]] = None
    _line_addrs: list[int] = field(default_factory=list)
    has_dwarf: bool = False

    def covers(self, addr: int) -> bool:
        return any(lo <= addr < hi for lo, hi in self.ranges)

    def lookup(self, addr: int) -> Optional[Located]:
        i = bisect.bisect_right(self._addrs, addr) - 1
        if i < 0:
            return None
        name = self._names[i]
        base = self._addrs[i]
        size = self.sizes.get(name, 0)
        if size and addr >= base + size and not self.covers(addr):
            return None
        return Located(name, addr - base, self, size)

    def line(self, addr: int) -> Optional[tuple[str, int]]:
        if not self.has_dwarf:
            return None
        if self._lines is None:
            self._load_lines()
        i = bisect.bisect_right(self._line_addrs, addr) - 1
        if i < 0:
            return None
        a, file, line = self._lines[i]
        if not file:          # an end-of-sequence row: the address is past that sequence
            return None
        return file, line

    def _load_lines(self) -> None:
        rows: list[tuple[int, str, int]] = []
        try:
            with open(self.path, "rb") as f:
                elf = ELFFile(f)
                dwarf = elf.get_dwarf_info()
                for cu in dwarf.iter_CUs():
                    lp = dwarf.line_program_for_CU(cu)
                    if lp is None:
                        continue
                    files = [_entry_name(lp, e) for e in lp.header["file_entry"]]
                    v5 = lp.header["version"] >= 5
                    for ent in lp.get_entries():
                        st = ent.state
                        if st is None:
                            continue
                        if st.end_sequence:
                            rows.append((st.address, "", 0))
                            continue
                        idx = st.file if v5 else st.file - 1
                        name = files[idx] if 0 <= idx < len(files) else "?"
                        rows.append((st.address, name, st.line))
        except (ELFError, OSError, ValueError, KeyError, IndexError, AttributeError):
            rows = []
        # Stable sort: for equal addresses keep the last row of a sequence start over the
        # end-of-sequence row of the previous one.
        rows.sort(key=lambda r: (r[0], 1 if r[1] else 0))
        self._lines = rows
        self._line_addrs = [r[0] for r in rows]


def _entry_name(lp, entry) -> str:
    name = entry.name.decode(errors="replace") if isinstance(entry.name, bytes) else entry.name
    return os.path.basename(name)


def load_object(path: str | os.PathLike,
                label: Optional[str] = None) -> tuple[Optional[ObjectSymbols], str]:
    """Read one ELF file's symbols; returns (symbols or None, a warning or "")."""
    p = Path(path)
    label = label or p.stem
    try:
        with open(p, "rb") as f:
            if f.read(4) != b"\x7fELF":
                return None, ""
            f.seek(0)
            elf = ELFFile(f)
            obj = ObjectSymbols(label, str(p), entry=elf["e_entry"])
            for seg in elf.iter_segments():
                if seg["p_type"] == "PT_LOAD" and seg["p_memsz"]:
                    obj.ranges.append((seg["p_vaddr"], seg["p_vaddr"] + seg["p_memsz"]))
            pairs: list[tuple[int, str]] = []
            for sec in elf.iter_sections():
                if sec["sh_type"] not in ("SHT_SYMTAB", "SHT_DYNSYM"):
                    continue
                for sym in sec.iter_symbols():
                    name = sym.name
                    if not name or name.startswith("__section_") or name == "__end":
                        continue
                    if sym["st_info"]["type"] in _SKIP_TYPES or sym["st_shndx"] == "SHN_UNDEF":
                        continue
                    value = sym["st_value"] & 0xFFFFFFFF
                    if name not in obj.by_name:
                        obj.by_name[name] = value
                        obj.sizes[name] = sym["st_size"]
                        if sym["st_info"]["type"] == "STT_FUNC":
                            obj.funcs.add(name)
                        pairs.append((value, name))
            # At one address prefer a function, then a global-looking name, then the first.
            pairs.sort(key=lambda vn: (vn[0], vn[1] not in obj.funcs, vn[1].startswith("."),
                                       vn[1]))
            for value, name in pairs:
                if obj._addrs and obj._addrs[-1] == value:
                    continue
                obj._addrs.append(value)
                obj._names.append(name)
            obj.has_dwarf = elf.has_dwarf_info() and elf.get_section_by_name(".debug_line") \
                is not None
            return obj, ""
    except FileNotFoundError:
        return None, f"{p}: no such file (no symbols from it)"
    except (ELFError, OSError, ValueError, KeyError, IndexError) as e:
        return None, f"{p}: cannot read its symbols ({e})"


class SymbolTable:
    """Every object's symbols; the kernel's first."""

    def __init__(self) -> None:
        self.objects: list[ObjectSymbols] = []
        self.warnings: list[str] = []

    @classmethod
    def from_files(cls, kernel: Optional[str | os.PathLike],
                   modules: tuple | list = ()) -> "SymbolTable":
        t = cls()
        if kernel is not None:
            t.add(kernel, "kernel")
        for m in modules:
            t.add(m)
        return t

    def add(self, path: str | os.PathLike, label: Optional[str] = None) -> Optional[ObjectSymbols]:
        obj, warning = load_object(path, label)
        if warning:
            self.warnings.append(warning)
        if obj is not None:
            taken = {o.label for o in self.objects}
            base, n = obj.label, 2
            while obj.label in taken:
                obj.label = f"{base}{n}"
                n += 1
            self.objects.append(obj)
        return obj

    @property
    def kernel(self) -> Optional[ObjectSymbols]:
        return self.objects[0] if self.objects and self.objects[0].label == "kernel" else None

    def __len__(self) -> int:
        return sum(len(o.by_name) for o in self.objects)

    def lookup(self, addr: int) -> Optional[Located]:
        """The symbol at or below `addr` in the first object whose loaded range covers it."""
        addr &= 0xFFFFFFFF
        for o in self.objects:
            if o.covers(addr):
                loc = o.lookup(addr)
                if loc is not None:
                    return loc
        return None

    def describe(self, addr: int) -> str:
        """"name+0x1c" or "" when no symbol names the address."""
        loc = self.lookup(addr)
        return "" if loc is None else str(loc)

    def address(self, name: str) -> Optional[int]:
        """The address of `name` ("sym", or "object:sym" to choose the object)."""
        if ":" in name:
            label, _, sym = name.partition(":")
            for o in self.objects:
                if o.label == label and sym in o.by_name:
                    return o.by_name[sym]
            return None
        for o in self.objects:
            if name in o.by_name:
                return o.by_name[name]
        return None

    def line(self, addr: int) -> Optional[str]:
        """"file.c:42" for an address in an object with DWARF line information."""
        addr &= 0xFFFFFFFF
        for o in self.objects:
            if o.covers(addr):
                fl = o.line(addr)
                if fl is not None:
                    return f"{fl[0]}:{fl[1]}"
        return None

    def is_function_start(self, addr: int) -> bool:
        loc = self.lookup(addr)
        return loc is not None and loc.offset == 0

    def names(self) -> list[str]:
        out: list[str] = []
        for o in self.objects:
            out.extend(o.by_name)
            if o.label != "kernel":
                out.extend(f"{o.label}:{n}" for n in o.by_name)
        return out
