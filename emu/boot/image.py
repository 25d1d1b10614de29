"""Image manifests (images/*.toml): what to build and how to boot it, built on demand and cached
by content hash (DESIGN D8: no guest binary is committed).

A manifest names a kernel and its modules by their sources, the kernel command line and the
machine it wants:

    description = "what this image shows"
    [kernel]
    asm = "../examples/multiboot-hello/hello.asm"   # paths are relative to the manifest
    base = 0x100000
    cmdline = "hello"
    [[module]]
    asm = "..."            # or elf = "path/to/file" for a file built elsewhere
    cmdline = "..."
    [machine]
    ram_mib = 64

`build_image()` builds every part into the cache directory ($L4EMU_CACHE, default
~/.cache/l4emu) under a key that hashes the manifest, every source file it reads and the
builder's own code, so an unchanged image is never rebuilt and a changed one always is.
"""
from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .. import __version__
from ..errors import UserError
from . import build as _build

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_BUILDER_FILES = ("asm.py", "boot/build.py", "boot/elf.py", "boot/image.py")


@dataclass
class Part:
    """A kernel or module: how to build it, and its command line."""

    kind: str                 # "asm" or "elf"
    source: Path
    base: int = 0x100000
    cmdline: str = ""


@dataclass
class Image:
    name: str
    manifest: Path
    description: str
    kernel: Part
    modules: list[Part] = field(default_factory=list)
    ram_mib: Optional[int] = None


@dataclass
class BuiltImage:
    image: Image
    directory: Path
    kernel: Path
    modules: list[tuple[Path, str]]
    cached: bool


def cache_dir() -> Path:
    env = os.environ.get("L4EMU_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "l4emu"


def _part(table: Any, where: str, manifest: Path) -> Part:
    if not isinstance(table, dict):
        raise UserError(f"{manifest}: [{where}] must be a table")
    kinds = [k for k in ("asm", "elf") if k in table]
    if len(kinds) != 1:
        raise UserError(f"{manifest}: [{where}] needs exactly one of 'asm' or 'elf'")
    kind = kinds[0]
    src = (manifest.parent / str(table[kind])).resolve()
    base = table.get("base", 0x100000)
    cmdline = table.get("cmdline", "")
    if not isinstance(base, int) or not isinstance(cmdline, str):
        raise UserError(f"{manifest}: [{where}] base must be an integer and cmdline a string")
    return Part(kind, src, base, cmdline)


def load_manifest(path: Path | str) -> Image:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such image manifest") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read ({e})") from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path}: not a valid TOML manifest ({e})") from None
    if "kernel" not in data:
        raise UserError(f"{path}: the manifest has no [kernel] table")
    kernel = _part(data["kernel"], "kernel", path)
    mods = data.get("module", [])
    if not isinstance(mods, list):
        raise UserError(f"{path}: 'module' must be an array of tables ([[module]])")
    modules = [_part(m, f"module {i + 1}", path) for i, m in enumerate(mods)]
    machine = data.get("machine", {})
    ram = machine.get("ram_mib") if isinstance(machine, dict) else None
    if ram is not None and not isinstance(ram, int):
        raise UserError(f"{path}: machine.ram_mib must be an integer")
    return Image(path.stem, path.resolve(), str(data.get("description", "")), kernel, modules,
                 ram)


def _inputs(part: Part) -> list[Path]:
    if part.kind == "asm":
        return _build.read_program(part.source).files
    if not part.source.is_file():
        raise UserError(f"{part.source}: no such file")
    return [part.source]


def image_key(image: Image) -> str:
    h = hashlib.sha256()
    h.update(f"l4emu {__version__}\n".encode())
    pkg = Path(__file__).resolve().parent.parent
    for rel in _BUILDER_FILES:
        h.update((pkg / rel).read_bytes())
    h.update(image.manifest.read_bytes())
    for part in [image.kernel, *image.modules]:
        h.update(f"{part.kind} {part.base:#x}\n".encode())
        for f in _inputs(part):
            h.update(str(f).encode() + b"\n" + f.read_bytes())
    return h.hexdigest()[:20]


def build_image(path: Path | str, force: bool = False) -> BuiltImage:
    """Build (or find in the cache) every part of the image at `path`."""
    image = load_manifest(path)
    directory = cache_dir() / "images" / f"{image.name}-{image_key(image)}"
    parts = [image.kernel, *image.modules]
    names = ["kernel.elf"] + [f"module{i}.elf" for i in range(1, len(parts))]
    outputs = [p.source if p.kind == "elf" else directory / n for p, n in zip(parts, names)]
    done = directory / "BUILT"
    cached = done.exists() and not force
    if not cached:
        directory.mkdir(parents=True, exist_ok=True)
        for part, out in zip(parts, outputs):
            if part.kind == "asm":
                out.write_bytes(_build.build_asm_elf(part.source, part.base))
        done.write_text("ok\n")
    return BuiltImage(image, directory, outputs[0],
                      [(o, m.cmdline) for o, m in zip(outputs[1:], image.modules)], cached)
