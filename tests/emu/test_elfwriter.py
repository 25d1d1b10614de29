"""ELF32 writer (emu/boot/elf.py): pyelftools and readelf read back what was written."""
from __future__ import annotations

import io
import shutil
import subprocess

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from emu.boot.elf import Segment, Symbol, write_elf

TEXT = bytes(range(1, 40))
DATA = b"hello, data\0"


def _image() -> bytes:
    return write_elf(
        [Segment(".text", 0x100000, TEXT, flags="rx"),
         Segment(".data", 0x101000, DATA, memsz=0x100, flags="rw", bss_name=".sbss"),
         Segment(".bss", 0x102000, memsz=0x2000, flags="rw"),
         Segment(".high", 0xC0103000, b"\x90" * 8, flags="rx", paddr=0x103000)],
        entry=0x100004,
        symbols=[Symbol("start", 0x100004, 10, "func"),
                 Symbol("counter", 0x101000, 4, "object"),
                 Symbol("helper", 0x100010, 2, "func", "local"),
                 Symbol("stack_top", 0x104000, 0, "notype"),
                 Symbol("KERNEL_ABS", 0x12345678),
                 Symbol("high_code", 0xC0103000, 8, "func")])


def _elf(image: bytes) -> ELFFile:
    return ELFFile(io.BytesIO(image))


def test_header_and_program_headers():
    elf = _elf(_image())
    assert elf.elfclass == 32 and elf.little_endian
    assert elf["e_machine"] == "EM_386" and elf["e_type"] == "ET_EXEC"
    assert elf["e_entry"] == 0x100004
    segs = [s for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
    assert [(s["p_vaddr"], s["p_paddr"], s["p_filesz"], s["p_memsz"]) for s in segs] == [
        (0x100000, 0x100000, len(TEXT), len(TEXT)),
        (0x101000, 0x101000, len(DATA), 0x100),
        (0x102000, 0x102000, 0, 0x2000),
        (0xC0103000, 0x103000, 8, 8)]
    assert segs[0].data() == TEXT and segs[1].data() == DATA
    assert [s["p_flags"] for s in segs] == [5, 6, 6, 5]  # PF_R|PF_X, PF_R|PF_W
    for s in segs:  # offsets congruent to addresses modulo the alignment
        assert (s["p_offset"] - s["p_vaddr"]) % s["p_align"] == 0


def test_sections():
    elf = _elf(_image())
    secs = {s.name: s for s in elf.iter_sections()}
    assert list(secs) == ["", ".text", ".data", ".sbss", ".bss", ".high", ".symtab",
                          ".strtab", ".shstrtab"]
    assert secs[".text"]["sh_type"] == "SHT_PROGBITS" and secs[".text"].data() == TEXT
    assert secs[".text"]["sh_flags"] == 6  # SHF_ALLOC | SHF_EXECINSTR
    assert secs[".data"]["sh_flags"] == 3  # SHF_ALLOC | SHF_WRITE
    assert secs[".sbss"]["sh_type"] == "SHT_NOBITS"
    assert (secs[".sbss"]["sh_addr"], secs[".sbss"]["sh_size"]) == (0x101000 + len(DATA),
                                                                    0x100 - len(DATA))
    assert secs[".bss"]["sh_type"] == "SHT_NOBITS" and secs[".bss"]["sh_size"] == 0x2000


def test_symbols_locals_first_and_lookup():
    elf = _elf(_image())
    symtab = elf.get_section_by_name(".symtab")
    assert isinstance(symtab, SymbolTableSection)
    syms = list(symtab.iter_symbols())
    binds = [s["st_info"]["bind"] for s in syms[1:]]
    assert binds == ["STB_LOCAL"] + ["STB_GLOBAL"] * 5
    assert symtab["sh_info"] == 2  # index of the first global

    start = symtab.get_symbol_by_name("start")[0]
    assert (start["st_value"], start["st_size"], start["st_info"]["type"]) == (
        0x100004, 10, "STT_FUNC")
    assert elf.get_section(start["st_shndx"]).name == ".text"
    counter = symtab.get_symbol_by_name("counter")[0]
    assert counter["st_info"]["type"] == "STT_OBJECT"
    assert elf.get_section(counter["st_shndx"]).name == ".data"
    assert elf.get_section(symtab.get_symbol_by_name("stack_top")[0]["st_shndx"]).name == ".bss"
    assert symtab.get_symbol_by_name("KERNEL_ABS")[0]["st_shndx"] == "SHN_ABS"
    assert elf.get_section(symtab.get_symbol_by_name("high_code")[0]["st_shndx"]).name == ".high"


def test_no_symbols_still_valid():
    elf = _elf(write_elf([Segment(".text", 0x1000, b"\xc3")], entry=0x1000))
    assert elf.get_section_by_name(".symtab").num_symbols() == 1


@pytest.mark.parametrize("segments, problem", [
    ([Segment(".a", 0x1000, b"x" * 0x20), Segment(".b", 0x1010, b"y")], "overlap"),
    ([Segment(".a", 0x1000, b"x" * 8, memsz=4)], "memsz"),
    ([Segment(".a", 0x1000, b"x", flags="rq")], "flags"),
    ([Segment(".a", 0xFFFFFFF0, b"x" * 0x20)], "32-bit"),
])
def test_bad_segments_rejected(segments, problem):
    with pytest.raises(ValueError, match=problem):
        write_elf(segments, entry=0x1000)


@pytest.mark.skipif(shutil.which("readelf") is None, reason="binutils readelf not installed")
def test_readelf_accepts_it(tmp_path):
    path = tmp_path / "k.elf"
    path.write_bytes(_image())
    result = subprocess.run(["readelf", "-a", "-W", str(path)], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0
    assert "Warning" not in result.stderr and "Error" not in result.stderr, result.stderr
    assert "Intel 80386" in result.stdout
    assert " start" in result.stdout and " counter" in result.stdout
