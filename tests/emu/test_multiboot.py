"""Multiboot v1 loader (emu/boot/multiboot.py) against Multiboot Specification 0.6.96.

Kernels are assembled inline with keystone and linked with emu/boot/elf.py; the MBI is
parsed back from RAM with struct, as a kernel would read it.
"""
from __future__ import annotations

import struct
from pathlib import Path

import pytest
from keystone import KS_ARCH_X86, KS_MODE_32, Ks

from emu.boot.elf import Segment, Symbol, write_elf
from emu.boot.multiboot import BOOTLOADER_MAGIC, MBI_BASE, load_multiboot
from emu.errors import UserError

MIB = 1 << 20
RAM = 8 * MIB
MAGIC = 0x1BADB002
FILL = 0xAA  # RAM starts dirty so zeroing is observable


def header(flags: int, fields: tuple[int, ...] = ()) -> str:
    checksum = -(MAGIC + flags) & 0xFFFFFFFF
    words = (MAGIC, flags, checksum) + fields
    return "".join(f".long {w:#x}\n" for w in words)


def asm(source: str, base: int) -> bytes:
    encoding, _ = Ks(KS_ARCH_X86, KS_MODE_32).asm(source, base)
    return bytes(encoding)


def ram() -> bytearray:
    return bytearray([FILL]) * RAM


# Spec 3.1.2: magic, flags, checksum; then (bit 16) five address fields.
KERNEL_TEXT = header(0b11) + """
start:
    mov esp, 0x104000
    cmp eax, 0x2BADB002
    hlt
"""
DATA = b"kernel data!"


def elf_kernel(tmp_path: Path, name: str = "kernel.elf", *, text: str = KERNEL_TEXT,
               segments: list[Segment] | None = None, entry: int = 0x10000C) -> Path:
    code = asm(text, 0x100000)
    segs = segments if segments is not None else [
        Segment(".text", 0x100000, code),
        Segment(".data", 0x101000, DATA, memsz=0x1000, flags="rw"),
        Segment(".bss", 0x102000, memsz=0x2000, flags="rw"),
    ]
    path = tmp_path / name
    path.write_bytes(write_elf(segs, entry, [Symbol("start", 0x10000C, 12, "func"),
                                             Symbol("kdata", 0x101000, 12, "object")]))
    return path


def cstr(mem: bytearray, addr: int) -> str:
    return bytes(mem[addr:mem.index(0, addr)]).decode()


def parse_mbi(mem: bytearray, addr: int) -> dict:
    flags, lower, upper, _, cmdline, mods_count, mods_addr = struct.unpack_from("<7I", mem, addr)
    mmap_length, mmap_addr = struct.unpack_from("<II", mem, addr + 44)
    loader = struct.unpack_from("<I", mem, addr + 64)[0]
    mods = [struct.unpack_from("<4I", mem, mods_addr + 16 * i) for i in range(mods_count)]
    mmap, pos = [], mmap_addr
    while pos < mmap_addr + mmap_length:  # spec 3.3: size field, then base/length/type
        size, base, length, kind = struct.unpack_from("<IQQI", mem, pos)
        mmap.append((base, length, kind))
        pos += size + 4
    return {"flags": flags, "mem_lower": lower, "mem_upper": upper,
            "cmdline": cstr(mem, cmdline), "mods": [(s, e, cstr(mem, c)) for s, e, c, _ in mods],
            "mmap": mmap, "loader": cstr(mem, loader)}


def test_elf_kernel_segments_entry_and_bss(tmp_path):
    mem = ram()
    info = load_multiboot(mem, RAM, elf_kernel(tmp_path))
    code = asm(KERNEL_TEXT, 0x100000)
    assert info.entry == 0x10000C and info.magic == BOOTLOADER_MAGIC
    assert mem[0x100000:0x100000 + len(code)] == code
    assert mem[0x101000:0x101000 + len(DATA)] == DATA
    assert set(mem[0x101000 + len(DATA):0x104000]) == {0}  # .data tail and .bss zeroed
    assert mem[0x104000] == FILL  # nothing written past the image
    assert (info.kernel_start, info.kernel_end) == (0x100000, 0x104000)
    assert info.symbols["start"] == 0x10000C and info.symbols["kdata"] == 0x101000


def test_mbi_fields_modules_and_memory_map(tmp_path):
    mod_a = tmp_path / "sigma0"
    mod_a.write_bytes(b"A" * 5000)
    mod_b = tmp_path / "root"
    mod_b.write_bytes(b"B" * 10)
    mem = ram()
    info = load_multiboot(mem, RAM, elf_kernel(tmp_path), cmdline="debug=1 quiet",
                          modules=[(mod_a, "sigma0 -v"), (str(mod_b), "root"),
                                                  mod_b])
    assert info.mbi_addr == MBI_BASE
    mbi = parse_mbi(mem, info.mbi_addr)
    # Spec 3.3 flag bits: 0 mem, 2 cmdline, 3 mods, 6 mmap, 9 boot_loader_name.
    assert mbi["flags"] == (1 << 0) | (1 << 2) | (1 << 3) | (1 << 6) | (1 << 9)
    assert mbi["mem_lower"] == 639 and mbi["mem_upper"] == (RAM - MIB) // 1024
    assert mbi["cmdline"] == "kernel.elf debug=1 quiet"
    assert mbi["loader"] == "l4emu"
    assert mbi["mods"] == [(0x104000, 0x104000 + 5000, "sigma0 -v"),
                           (0x106000, 0x10600A, "root"), (0x107000, 0x10700A, "")]
    assert [tuple(m) for m in info.modules] == mbi["mods"]
    assert all(start % 4096 == 0 for start, _, _ in mbi["mods"])
    assert mem[0x104000:0x104000 + 5000] == b"A" * 5000
    assert mem[0x106000:0x10600A] == b"B" * 10
    assert mbi["mmap"] == [
        (0, 0x9FC00, 1), (0x9FC00, 0x400, 2), (0xE0000, 0x20000, 2),
        (0x100000, RAM - MIB, 1), (0xFEC00000, 0x1000, 2), (0xFEE00000, 0x1000, 2),
        (0xFFFC0000, 0x40000, 2)]
    assert [tuple(r) for r in info.mmap] == mbi["mmap"]
    lo, hi = info.mbi_area
    assert lo == MBI_BASE and hi < 0x9FC00


def test_no_cmdline_is_just_the_file_name(tmp_path):
    mem = ram()
    info = load_multiboot(mem, RAM, elf_kernel(tmp_path))
    mbi = parse_mbi(mem, info.mbi_addr)
    assert mbi["cmdline"] == "kernel.elf" and mbi["mods"] == []


def test_higher_half_entry_translated_to_physical(tmp_path):
    code = asm(KERNEL_TEXT, 0xC0100000)
    path = elf_kernel(tmp_path, segments=[Segment(".text", 0xC0100000, code, paddr=0x100000)],
                      entry=0xC010000C)
    mem = ram()
    info = load_multiboot(mem, RAM, path)
    assert info.entry == 0x10000C
    assert mem[0x100000:0x100000 + len(code)] == code


def test_low_memory_kernel_moves_the_mbi(tmp_path):
    code = asm(header(0) + "start: hlt", 0x8000)
    path = elf_kernel(tmp_path, segments=[Segment(".text", 0x8000, code,
                                                  memsz=0x4000)], entry=0x800C)
    mem = ram()
    info = load_multiboot(mem, RAM, path)
    assert info.mbi_addr == 0x100000  # first page at or above both the kernel and 1 MiB
    assert parse_mbi(mem, info.mbi_addr)["cmdline"] == "kernel.elf"
    assert set(mem[0x8000 + len(code):0xC000]) == {0}


def flat_kernel(tmp_path: Path, prefix: bytes = b"", bss_end: int = 0x102000) -> Path:
    """A flat binary: optional bytes, then the header (flag bit 16) describing the file."""
    base = 0x100000
    hdr_addr = base + len(prefix)
    entry = hdr_addr + 32
    hdr = asm(header(0x10003, (hdr_addr, base, 0, bss_end, entry)), hdr_addr)
    path = tmp_path / "flat.bin"
    path.write_bytes(prefix + hdr + asm("start: mov eax, 1\nhlt", entry))
    return path


@pytest.mark.parametrize("prefix", [b"", b"\x90" * 16])
def test_aout_kludge_flat_binary(tmp_path, prefix):
    path = flat_kernel(tmp_path, prefix)
    image = path.read_bytes()
    mem = ram()
    info = load_multiboot(mem, RAM, path)
    assert info.entry == 0x100000 + len(prefix) + 32
    assert mem[0x100000:0x100000 + len(image)] == image
    assert set(mem[0x100000 + len(image):0x102000]) == {0}
    assert mem[0x102000] == FILL
    assert info.kernel_end == 0x102000 and info.symbols == {}


def test_aout_kludge_load_end_addr_truncates(tmp_path):
    hdr = asm(header(0x10000, (0x200000, 0x200000, 0x200021, 0, 0x200020)), 0x200000)
    path = tmp_path / "k.bin"
    path.write_bytes(hdr + b"\xf4" + b"\xcc" * 100)  # trailing bytes past load_end_addr
    mem = ram()
    info = load_multiboot(mem, RAM, path)
    assert info.entry == 0x200020 and info.kernel_end == 0x200021
    assert mem[0x200000:0x200021] == hdr + b"\xf4" and mem[0x200021] == FILL


def test_video_mode_request_is_ignored(tmp_path):
    path = elf_kernel(tmp_path, text=header(0b111, (0,) * 5 + (0, 80, 25, 0)) + "start: hlt",
                      entry=0x100000 + 48)
    assert load_multiboot(ram(), RAM, path).entry == 0x100030


# --- bad input: one-line UserError starting with the file path -----------------------------

def expect_error(path, problem: str, **kwargs):
    with pytest.raises(UserError) as exc:
        load_multiboot(kwargs.pop("mem", None) or ram(), kwargs.pop("ram_size", RAM),
                       path, **kwargs)
    message = str(exc.value)
    assert message.startswith(str(path)), message
    assert problem in message, message
    assert "\n" not in message


def test_missing_kernel(tmp_path):
    expect_error(tmp_path / "nope.elf", "no such file")


def test_missing_module(tmp_path):
    kernel = elf_kernel(tmp_path)
    with pytest.raises(UserError, match=r"^.*/gone: no such file"):
        load_multiboot(ram(), RAM, kernel, modules=[(tmp_path / "gone", "")])


def test_not_elf_and_no_header(tmp_path):
    path = tmp_path / "junk.bin"
    path.write_bytes(b"\x90" * 9000)
    expect_error(path, "not an ELF file and no multiboot header")


def test_elf_without_multiboot_header(tmp_path):
    path = elf_kernel(tmp_path, text="start: hlt\n" + "nop\n" * 16, entry=0x100000)
    expect_error(path, "no multiboot header")


def test_header_beyond_8k_is_not_found(tmp_path):
    path = tmp_path / "late.bin"
    path.write_bytes(b"\0" * 8192 + asm(header(0x10000, (0,) * 5), 0))
    expect_error(path, "no multiboot header")


def test_wrong_machine(tmp_path):
    path = elf_kernel(tmp_path)
    image = bytearray(path.read_bytes())
    struct.pack_into("<H", image, 18, 62)  # EM_X86_64
    path.write_bytes(image)
    expect_error(path, "not an i386 ELF file")


def test_bad_checksum(tmp_path):
    text = ".long 0x1BADB002\n.long 3\n.long 0x12345678\nstart: hlt"
    expect_error(elf_kernel(tmp_path, text=text, entry=0x10000C), "bad checksum")


def test_unsupported_required_flag(tmp_path):
    expect_error(elf_kernel(tmp_path, text=header(1 << 3) + "start: hlt"),
                 "unsupported features")


def test_flat_binary_without_address_fields(tmp_path):
    path = tmp_path / "flat.bin"
    path.write_bytes(asm(header(0b11) + "hlt", 0))
    expect_error(path, "flag bit 16")


def test_kernel_does_not_fit(tmp_path):
    code = asm(KERNEL_TEXT, 0x100000)
    path = elf_kernel(tmp_path, segments=[Segment(".text", 0x100000, code),
                                          Segment(".bss", 0x200000, memsz=0x1000)])
    expect_error(path, "does not fit in 2 MiB of RAM", ram_size=2 * MIB)


def test_segment_in_reserved_area(tmp_path):
    code = asm(KERNEL_TEXT, 0x100000)
    path = elf_kernel(tmp_path, segments=[Segment(".text", 0x100000, code),
                                          Segment(".low", 0xE8000, b"x")])
    expect_error(path, "not in available RAM")


def test_overlapping_segments(tmp_path):
    code = asm(KERNEL_TEXT, 0x100000)
    path = elf_kernel(tmp_path, segments=[
        Segment(".text", 0x100000, code),
        Segment(".data", 0xC0000000, b"d" * 16, paddr=0x100010)])
    expect_error(path, "overlapping segments")


def test_truncated_elf(tmp_path):
    path = elf_kernel(tmp_path)
    path.write_bytes(path.read_bytes()[:0x2005])
    expect_error(path, "corrupt ELF file")


def test_entry_outside_image(tmp_path):
    expect_error(elf_kernel(tmp_path, entry=0x500000), "entry point")


def test_module_does_not_fit(tmp_path):
    big = tmp_path / "big.mod"
    big.write_bytes(bytes(MIB))
    kernel = elf_kernel(tmp_path)
    with pytest.raises(UserError) as exc:
        load_multiboot(bytearray(2 * MIB), 2 * MIB, kernel, modules=[(big, "big")])
    assert str(exc.value) == f"{big}: module does not fit in 2 MiB of RAM"


@pytest.mark.parametrize("size", [MIB, 4 * 1024 * MIB])
def test_ram_size_limits(tmp_path, size):
    with pytest.raises(UserError, match="RAM size .* is outside"):
        load_multiboot(bytearray(16), size, elf_kernel(tmp_path))
