"""The kernel ABI's single source (kernel/abi.toml) turned into what each language includes.

This module owns reading the ABI table and generating, at build time:

- `abi.inc` for the kernel: `.equ NAME, value` lines keystone understands;
- `l4/abi.h` for the servers: `#define NAME value` (unsigned where the value needs 32 bits).

Both land in the image's build directory (DESIGN D8: nothing generated is checked in); the
build adds that directory to the include path of every part.  `load()` gives Python (tests,
tools) the same numbers.

The TOML has one table per subject; each entry is `NAME = int` or `NAME = {value = int,
doc = "..."}`.  Names must be valid C and assembler identifiers and unique across tables.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")


@dataclass(frozen=True)
class Constant:
    name: str
    value: int
    section: str
    doc: str = ""


def read(path: Path | str) -> list[Constant]:
    """Every constant of the ABI table at `path`, in file order."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such ABI table") from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path}: not valid TOML ({e})") from None
    out: list[Constant] = []
    seen: set[str] = set()
    for section, table in data.items():
        if not isinstance(table, dict):
            raise UserError(f"{path}: top-level key '{section}' must be a table")
        for name, entry in table.items():
            doc = ""
            if isinstance(entry, dict):
                doc = str(entry.get("doc", ""))
                entry = entry.get("value")
            if not _NAME.match(name) or not isinstance(entry, int) or isinstance(entry, bool):
                raise UserError(f"{path}: [{section}] {name}: need an UPPER_CASE name and an "
                                "integer value")
            if not -(1 << 31) <= entry < (1 << 32):
                raise UserError(f"{path}: [{section}] {name} does not fit in 32 bits")
            if name in seen:
                raise UserError(f"{path}: {name} is defined twice")
            seen.add(name)
            out.append(Constant(name, entry & 0xFFFFFFFF, section, doc))
    return out


def load(path: Path | str) -> dict[str, int]:
    """NAME -> value for every constant (values as unsigned 32-bit integers)."""
    return {c.name: c.value for c in read(path)}


def _header(path: Path, comment: str) -> str:
    return (f"{comment} Generated from {path.name} by emu/boot/abi.py: do not edit; change "
            f"the table instead.\n")


def to_asm(constants: list[Constant], source: Path) -> str:
    lines = [_header(source, ";")]
    section = None
    for c in constants:
        if c.section != section:
            section = c.section
            lines.append(f"\n; [{section}]")
        doc = f"    ; {c.doc}" if c.doc else ""
        lines.append(f".equ {c.name}, {c.value:#x}{doc}")
    return "\n".join(lines) + "\n"


def to_c(constants: list[Constant], source: Path) -> str:
    lines = [f"/* {_header(source, '').strip()} */", "#ifndef L4_ABI_H", "#define L4_ABI_H"]
    section = None
    for c in constants:
        if c.section != section:
            section = c.section
            lines.append(f"\n/* [{section}] */")
        suffix = "u" if c.value >= 0x80000000 else ""
        doc = f"  /* {c.doc} */" if c.doc else ""
        lines.append(f"#define {c.name} {c.value:#x}{suffix}{doc}")
    lines.append("\n#endif")
    return "\n".join(lines) + "\n"


def generate(source: Path | str, out_dir: Path) -> Path:
    """Write abi.inc and l4/abi.h for the table `source` into `out_dir`; returns `out_dir`."""
    source = Path(source)
    constants = read(source)
    (out_dir / "l4").mkdir(parents=True, exist_ok=True)
    (out_dir / "abi.inc").write_text(to_asm(constants, source))
    (out_dir / "l4" / "abi.h").write_text(to_c(constants, source))
    return out_dir
