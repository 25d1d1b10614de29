"""Image manifests (images/*.toml): what to build and how to boot it, built on demand and cached
by content hash (DESIGN D8: no guest binary is committed).

A manifest names a kernel and its modules by their sources, the kernel command line and the
machine it wants:

    description = "what this image shows"
    abi = "../kernel/abi.toml"     # optional: generate abi.inc and l4/abi.h from this table
    [kernel]
    asm = "../examples/multiboot-hello/hello.asm"   # paths are relative to the manifest
    base = 0x100000        # link address
    phys = 0x100000        # optional: load address, for a higher-half kernel
    cmdline = "hello"
    [[module]]
    asm = "..."            # or elf = "path/to/file" for a file built elsewhere
    cmdline = "..."
    [[module]]
    c = ["../servers/sigma0/main.c"]   # C sources (.c, .S), built with zig cc
    lib = ["../servers/lib"]           # libraries: all their .c/.S, and their include/ dir
    include = []                       # more include directories
    base = 0x40000000
    [machine]
    ram_mib = 64

`build_image()` builds every part into the cache directory ($L4EMU_CACHE, default
~/.cache/l4emu) under a key that hashes the manifest, every source file it reads (for C: every
file in the source, library and include directories), the ABI table, the builder's own code
and the guest compiler's version, so an unchanged image is never rebuilt and a changed one
always is.  The generated ABI files go to `gen/` in the image's directory, which is on every
part's include path.
"""
from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import UserError
from . import abi as _abi
from . import build as _build

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_BUILDER_FILES = ("asm.py", "boot/build.py", "boot/elf.py", "boot/image.py", "boot/abi.py")


@dataclass
class Part:
    """A kernel or module: how to build it, and its command line."""

    kind: str                 # "asm", "elf" or "c"
    source: Path              # for "c": the first source file
    base: int = 0x100000
    cmdline: str = ""
    phys: int | None = None
    sources: list[Path] = field(default_factory=list)    # "c": all own sources
    libs: list[Path] = field(default_factory=list)
    includes: list[Path] = field(default_factory=list)


@dataclass
class Image:
    name: str
    manifest: Path
    description: str
    kernel: Part
    modules: list[Part] = field(default_factory=list)
    ram_mib: int | None = None
    abi: Path | None = None


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


def _paths(table: dict, key: str, where: str, manifest: Path) -> list[Path]:
    value = table.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UserError(f"{manifest}: [{where}] {key} must be a list of paths")
    return [(manifest.parent / v).resolve() for v in value]


def _part(table: Any, where: str, manifest: Path) -> Part:
    if not isinstance(table, dict):
        raise UserError(f"{manifest}: [{where}] must be a table")
    kinds = [k for k in ("asm", "elf", "c") if k in table]
    if len(kinds) != 1:
        raise UserError(f"{manifest}: [{where}] needs exactly one of 'asm', 'elf' or 'c'")
    kind = kinds[0]
    base = table.get("base", 0x100000)
    phys = table.get("phys")
    cmdline = table.get("cmdline", "")
    if not isinstance(base, int) or not isinstance(cmdline, str) or \
            not (phys is None or isinstance(phys, int)):
        raise UserError(f"{manifest}: [{where}] base and phys must be integers and cmdline a "
                        "string")
    if kind == "c":
        sources = _paths(table, "c", where, manifest)
        if not sources:
            raise UserError(f"{manifest}: [{where}] c needs at least one source")
        return Part(kind, sources[0], base, cmdline, phys, sources,
                    _paths(table, "lib", where, manifest),
                    _paths(table, "include", where, manifest))
    src = (manifest.parent / str(table[kind])).resolve()
    return Part(kind, src, base, cmdline, phys,
                includes=_paths(table, "include", where, manifest))


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
    abi = data.get("abi")
    if abi is not None and not isinstance(abi, str):
        raise UserError(f"{path}: abi must be a path")
    return Image(path.stem, path.resolve(), str(data.get("description", "")), kernel, modules,
                 ram, None if abi is None else (path.parent / abi).resolve())


def _tree(d: Path) -> list[Path]:
    if not d.is_dir():
        raise UserError(f"{d}: no such directory")
    return sorted(p for p in d.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def _inputs(part: Part, gen_dirs: list[Path]) -> list[Path]:
    if part.kind == "asm":
        files = _build.read_program(part.source, [*part.includes, *gen_dirs]).files
        return [f for f in files if not any(g in f.parents for g in gen_dirs)]
    if part.kind == "c":
        files = list(part.sources)
        for d in [*part.libs, *part.includes]:
            files += _tree(d)
        for f in files:
            if not f.is_file():
                raise UserError(f"{f}: no such file")
        return files
    if not part.source.is_file():
        raise UserError(f"{part.source}: no such file")
    return [part.source]


def image_key(image: Image, gen_dirs: list[Path] | None = None) -> str:
    h = hashlib.sha256()
    h.update(f"l4emu {__version__}\n".encode())
    pkg = Path(__file__).resolve().parent.parent
    for rel in _BUILDER_FILES:
        h.update((pkg / rel).read_bytes())
    h.update(image.manifest.read_bytes())
    if image.abi is not None:
        if not image.abi.is_file():
            raise UserError(f"{image.abi}: no such ABI table")
        h.update(image.abi.read_bytes())
    if any(p.kind == "c" for p in [image.kernel, *image.modules]):
        h.update(f"zig {_build.zig_version()} {' '.join(_build.CFLAGS)}\n".encode())
    for part in [image.kernel, *image.modules]:
        h.update(f"{part.kind} {part.base:#x} {part.phys}\n".encode())
        for f in _inputs(part, gen_dirs or []):
            h.update(str(f).encode() + b"\n" + f.read_bytes())
    return h.hexdigest()[:20]


def build_image(path: Path | str, force: bool = False) -> BuiltImage:
    """Build (or find in the cache) every part of the image at `path`."""
    image = load_manifest(path)
    # The generated ABI files are named by the table's own hash, so parts can be scanned for
    # their inputs (and the image key computed) before the image directory exists.
    gen_dirs: list[Path] = []
    if image.abi is not None:
        if not image.abi.is_file():
            raise UserError(f"{image.abi}: no such ABI table")
        digest = hashlib.sha256(image.abi.read_bytes()
                                + (Path(__file__).parent / "abi.py").read_bytes()).hexdigest()
        gen = cache_dir() / "abi" / digest[:20]
        if not (gen / "l4" / "abi.h").exists():
            _abi.generate(image.abi, gen)
        gen_dirs.append(gen)
    directory = cache_dir() / "images" / f"{image.name}-{image_key(image, gen_dirs)}"
    parts = [image.kernel, *image.modules]
    names = ["kernel.elf"] + [f"module{i}.elf" for i in range(1, len(parts))]
    outputs = [p.source if p.kind == "elf" else directory / n for p, n in zip(parts, names)]
    done = directory / "BUILT"
    cached = done.exists() and not force
    if not cached:
        directory.mkdir(parents=True, exist_ok=True)
        for part, out, name in zip(parts, outputs, names):
            if part.kind == "asm":
                out.write_bytes(_build.build_asm_elf(part.source, part.base, part.phys,
                                                     [*part.includes, *gen_dirs]))
            elif part.kind == "c":
                out.write_bytes(_build.build_c_elf(
                    part.sources, part.base, directory / "work", part.libs,
                    [*part.includes, *gen_dirs], name=Path(name).stem))
        done.write_text("ok\n")
    return BuiltImage(image, directory, outputs[0],
                      [(o, m.cmdline) for o, m in zip(outputs[1:], image.modules)], cached)
