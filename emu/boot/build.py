"""Turn guest sources into ELF files: assembly kernels (DESIGN D7) and C servers (D8).

An assembly program is a set of files joined with `.include "file"` (resolved relative to the
including file, then in the include directories the caller gives: that is where the generated
`abi.inc` lives).  `.section .text`, `.section .data` and `.section .bss` split it; the build
puts all text first, then data, then bss, assembles the whole in one keystone pass (so labels
resolve across files and sections), and links it at `base` into an ELF32 executable with one
loadable segment, bss as zero fill, and every label as a symbol, so tools can name guest code.
A higher-half kernel gives `phys`, the address the loader puts it at (the segment's p_paddr).
Keystone's silent alignment trap is checked: every label that follows an `.align N` must come
out N-aligned, or the build fails naming it.

A C program (servers/) is compiled file by file with `zig cc` from the pinned `ziglang` wheel
for `x86-freestanding-none` (i686, no SSE/x87 code, no PIC, no stack protector) and linked at
`base` with a generated linker script: text, then rodata, data and bss each page-aligned, so
every page has one set of permissions.  The output is checked to be an i386 executable.
"""
from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from ..asm import AsmError, assemble, strip_comment
from ..errors import UserError
from .elf import Segment, Symbol, write_elf

_INCLUDE = re.compile(r'^\s*\.include\s+"([^"]+)"\s*$')
_SECTION = re.compile(r"^\s*\.section\s+(\.text|\.data|\.rodata|\.bss)\b")
_ORDER = (".text", ".rodata", ".data", ".bss")
_ALIGN = re.compile(r"^\s*\.(?:align|balign)\s+(\d+|0x[0-9a-fA-F]+)\s*$")
_LABEL_LINE = re.compile(r"^\s*([A-Za-z_.$][\w.$]*):")


@dataclass
class AsmProgram:
    """Sources of one assembly program after `.include` expansion, split by section."""

    sections: dict[str, list[str]]
    files: list[Path]


def _find_include(name: str, here: Path, include_dirs: Sequence[Path]) -> Path:
    for d in (here, *include_dirs):
        candidate = Path(d) / name
        if candidate.exists():
            return candidate
    return here / name


def read_program(path: Path, include_dirs: Sequence[Path] = ()) -> AsmProgram:
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
                current = walk(_find_include(m.group(1), p.parent, include_dirs), stack + (p,),
                               current)
                continue
            m = _SECTION.match(line)
            if m:
                current = m.group(1)
                continue
            sections[current].append(line)
        return current

    walk(path, (), ".text")
    return AsmProgram(sections, files)


def _check_alignment(lines: list[str], symbols: dict[str, int], path: Path) -> None:
    """Keystone sometimes drops an `.align` after a relaxed jump (research/unicorn.md): every
    label directly after an alignment directive must have come out aligned."""
    want: int | None = None
    for line in lines:
        s = line.strip()
        if not s:
            continue
        m = _ALIGN.match(s)
        if m:
            want = int(m.group(1), 0)
            continue
        m = _LABEL_LINE.match(s)
        if m and want:
            addr = symbols.get(m.group(1))
            if addr is not None and addr % want:
                raise UserError(f"{path}: label {m.group(1)} at {addr:#x} is not {want}-aligned "
                                "(keystone dropped an .align)")
            if s[m.end():].strip():
                want = None
            continue
        want = None


def build_asm_elf(path: Path, base: int = 0x100000, phys: int | None = None,
                  include_dirs: Sequence[Path] = ()) -> bytes:
    """Assemble the program whose main file is `path` for address `base` (loaded at `phys`,
    default `base`); return ELF bytes."""
    prog = read_program(path, include_dirs)
    src = []
    for name in _ORDER:
        src.append(f"__section{name.replace('.', '_')}_start:")
        src.extend(prog.sections[name])
    src.append("__end:")
    try:
        out = assemble("\n".join(src), base)
    except AsmError as e:
        raise UserError(f"{path}: {e}") from None
    _check_alignment(src, out.symbols, path)
    entry = out.symbols.get("start", out.symbols.get("_start", base))
    bss = out.symbols["__section_bss_start"] - base
    end = out.symbols["__end"] - base
    seg = Segment(".text", base, out.code[:bss], memsz=end, flags="rwx", paddr=phys)
    syms = [Symbol(n, a, type="func" if n in ("start", "_start") else "notype")
            for n, a in sorted(out.symbols.items(), key=lambda kv: kv[1])
            if not n.startswith("__section")]
    return write_elf([seg], entry, syms)


# -- C programs (DESIGN D8) --------------------------------------------------------------------
CFLAGS = ("-target", "x86-freestanding-none", "-march=i686", "-ffreestanding", "-nostdlib",
          "-fno-stack-protector", "-fno-pic", "-fno-pie", "-mno-sse", "-mno-mmx",
          "-msoft-float", "-fno-asynchronous-unwind-tables", "-fno-unwind-tables",
          "-fno-builtin", "-O2", "-g", "-std=c11", "-Wall", "-Wextra", "-Werror",
          "-Wno-unused-parameter")

LINKER_SCRIPT = """ENTRY(_start)
SECTIONS {{
  . = {base:#x};
  __image_start = .;
  .text : {{ *(.text.start) *(.text .text.*) }}
  . = ALIGN(4096);
  .rodata : {{ *(.rodata .rodata.*) }}
  . = ALIGN(4096);
  .data : {{ *(.data .data.*) }}
  . = ALIGN(4096);
  .bss : {{ *(.bss .bss.* COMMON) }}
  . = ALIGN(4096);
  __image_end = .;
  /DISCARD/ : {{ *(.eh_frame*) *(.note*) *(.comment) }}
}}
"""


def zig_command() -> list[str]:
    return [sys.executable, "-m", "ziglang", "cc"]


def zig_version() -> str:
    """The guest compiler's version (part of every C image's cache key)."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("ziglang")
    except PackageNotFoundError:  # pragma: no cover - the wheel is a dependency
        return "unknown"


def _zig_env(work: Path) -> dict[str, str]:
    env = dict(os.environ)
    # Keep zig's own caches with ours, not in the user's home.
    env.setdefault("ZIG_GLOBAL_CACHE_DIR", str(work / "zig-cache"))
    env.setdefault("ZIG_LOCAL_CACHE_DIR", str(work / "zig-cache"))
    return env


def c_sources(sources: Sequence[Path], libs: Sequence[Path]) -> list[Path]:
    """The files a C program compiles: its own sources, then every .c/.S of each library."""
    files = [Path(s) for s in sources]
    for lib in libs:
        files += sorted(p for p in Path(lib).iterdir() if p.suffix in (".c", ".S"))
    return files


def c_include_dirs(libs: Sequence[Path], includes: Sequence[Path]) -> list[Path]:
    return [Path(lib) / "include" for lib in libs] + [Path(i) for i in includes]


def build_c_elf(sources: Sequence[Path], base: int, work: Path, libs: Sequence[Path] = (),
                includes: Sequence[Path] = (), name: str = "program") -> bytes:
    """Compile and link a freestanding C program at `base`; returns the ELF bytes.  `work` is a
    scratch directory for objects (kept, so a failed build can be inspected)."""
    files = c_sources(sources, libs)
    if not files:
        raise UserError(f"{name}: no C sources")
    for f in files:
        if not f.is_file():
            raise UserError(f"{f}: no such file")
    objdir = work / f"{name}.obj"
    objdir.mkdir(parents=True, exist_ok=True)
    incs = [a for d in c_include_dirs(libs, includes) for a in ("-I", str(d))]
    env = _zig_env(work)

    def compile_one(i_f: tuple[int, Path]) -> Path:
        i, f = i_f
        obj = objdir / f"{i:02d}-{f.stem}.o"
        cmd = [*zig_command(), *CFLAGS, *incs, "-c", str(f), "-o", str(obj)]
        r = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env)
        if r.returncode:
            raise UserError(f"{f}: zig cc failed:\n{r.stderr.strip()}")
        return obj

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 2)) as pool:
        objs = list(pool.map(compile_one, enumerate(files)))
    script = objdir / "link.ld"
    script.write_text(LINKER_SCRIPT.format(base=base))
    out = work / f"{name}.elf"
    cmd = [*zig_command(), "-target", "x86-freestanding-none", "-nostdlib", "-static",
           f"-Wl,-T,{script}", "-Wl,--build-id=none", *map(str, objs), "-o", str(out)]
    r = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env)
    if r.returncode:
        raise UserError(f"{name}: zig cc link failed:\n{r.stderr.strip()}")
    data = out.read_bytes()
    _check_i386_exec(data, name)
    return data


def _check_i386_exec(data: bytes, name: str) -> None:
    try:
        elf = ELFFile(io.BytesIO(data))
    except ELFError as e:
        raise UserError(f"{name}: the linker wrote no valid ELF ({e})") from None
    h = elf.header
    if elf.elfclass != 32 or h.e_machine != "EM_386" or h.e_type != "ET_EXEC":
        raise UserError(f"{name}: linked file is not an i386 executable "
                        f"({elf.elfclass}-bit {h.e_machine} {h.e_type})")
