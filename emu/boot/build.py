"""Turn guest sources into ELF files: assembly kernels today (DESIGN D7), C servers later (D8).

An assembly program is a set of files joined with `.include "file"` (resolved relative to the
including file).  `.section .text`, `.section .data` and `.section .bss` split it; the build
puts all text first, then data, then bss, assembles the whole in one keystone pass (so labels
resolve across files and sections), and links it at `base` into an ELF32 executable with one
loadable segment, bss as zero fill, and every label as a symbol, so tools can name guest code.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..asm import AsmError, assemble, strip_comment
from ..errors import UserError
from .elf import Segment, Symbol, write_elf

_INCLUDE = re.compile(r'^\s*\.include\s+"([^"]+)"\s*$')
_SECTION = re.compile(r"^\s*\.section\s+(\.text|\.data|\.rodata|\.bss)\b")
_ORDER = (".text", ".rodata", ".data", ".bss")


@dataclass
class AsmProgram:
    """Sources of one assembly program after `.include` expansion, split by section."""

    sections: dict[str, list[str]]
    files: list[Path]


def read_program(path: Path) -> AsmProgram:
    sections: dict[str, list[str]] = {name: [] for name in _ORDER}
    files: list[Path] = []

    def walk(p: Path, stack: tuple[Path, ...], current: str) -> str:
        p = p.resolve()
        if p in stack:
            raise UserError(f"{p}: includes itself")
        try:
            text = p.read_text()
        except FileNotFoundError:
            raise UserError(f"{p}: no such file") from None
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"{p}: cannot read ({e})") from None
        files.append(p)
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = strip_comment(raw)
            m = _INCLUDE.match(line)
            if m:
                current = walk(p.parent / m.group(1), stack + (p,), current)
                continue
            m = _SECTION.match(line)
            if m:
                current = m.group(1)
                continue
            sections[current].append(line)
        return current

    walk(path, (), ".text")
    return AsmProgram(sections, files)


def build_asm_elf(path: Path, base: int = 0x100000) -> bytes:
    """Assemble the program whose main file is `path` for address `base`; return ELF bytes."""
    prog = read_program(path)
    src = []
    for name in _ORDER:
        src.append(f"__section{name.replace('.', '_')}_start:")
        src.extend(prog.sections[name])
    src.append("__end:")
    try:
        out = assemble("\n".join(src), base)
    except AsmError as e:
        raise UserError(f"{path}: {e}") from None
    entry = out.symbols.get("start", out.symbols.get("_start", base))
    bss = out.symbols["__section_bss_start"] - base
    end = out.symbols["__end"] - base
    seg = Segment(".text", base, out.code[:bss], memsz=end, flags="rwx")
    syms = [Symbol(n, a, type="func" if n in ("start", "_start") else "notype")
            for n, a in sorted(out.symbols.items(), key=lambda kv: kv[1])
            if not n.startswith("__section")]
    return write_elf([seg], entry, syms)
