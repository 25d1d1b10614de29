"""Symbols from ELF files and the expression language, without running a guest."""
from __future__ import annotations

import pytest

from emu.debug.expr import Context, ExprError, evaluate
from emu.debug.symbols import SymbolTable

from .kernels import c_kernel, hello_kernel


@pytest.fixture(scope="module")
def hello_symbols():
    return SymbolTable.from_files(hello_kernel())


def test_names_and_addresses(hello_symbols):
    t = hello_symbols
    assert t.address("start") == 0x10000C
    assert t.address("kernel:puts") == t.address("puts") == 0x10013B
    assert t.address("nosuch") is None and t.address("other:puts") is None
    assert t.describe(0x10013B) == "puts"
    assert t.describe(0x10013E) == "puts_next+0x2"
    assert t.describe(0x50) == ""                 # below the kernel: nothing names it
    assert "puts" in t.names() and "__end" not in t.names()


def test_non_elf_module_and_missing_file_give_no_symbols(tmp_path):
    junk = tmp_path / "blob.bin"
    junk.write_bytes(b"\x00" * 64)
    t = SymbolTable.from_files(hello_kernel(), [junk, tmp_path / "gone.elf"])
    assert [o.label for o in t.objects] == ["kernel"]
    assert len(t.warnings) == 1 and "gone.elf" in t.warnings[0]


def test_dwarf_lines_of_a_c_module(tmp_path):
    k = c_kernel(tmp_path)
    t = SymbolTable.from_files(hello_kernel(), [k])
    assert [o.label for o in t.objects] == ["kernel", "k"]
    sq = t.address("k:square")
    assert sq is not None and t.objects[1].funcs >= {"square", "sum_squares", "kmain"}
    assert t.line(sq) == "k.c:12"
    assert t.line(t.address("k:kmain")) == "k.c:23"
    assert t.line(0x10000C) is None                # the assembly kernel has no line table


def ctx(regs=None, syms=None, mem=None) -> Context:
    regs = regs or {"eax": 0x10, "esp": 0x8000, "al": 0x10}
    syms = syms or {"buf": 0x2000, "sigma0:main": 0x400000}
    mem = mem or {}

    def read(addr, n):
        if addr not in mem:
            from emu.memory import PageFault
            raise PageFault(addr, 0)
        return mem[addr].to_bytes(4, "little")[:n]

    return Context(regs.get, syms.get, read)


@pytest.mark.parametrize("text, value", [
    ("42", 42), ("0x2a", 42), ("0b101", 5), ("0o17", 15), ("eax", 0x10), ("$eax", 0x10),
    ("buf + 4*2", 0x2008), ("(buf + 4) * 2", 0x4008), ("-1", 0xFFFFFFFF), ("~0", 0xFFFFFFFF),
    ("[esp]", 0x1234), ("[esp + 4] + 1", 6), ("byte[esp]", 0x34), ("word[esp]", 0x1234),
    ("eax == 16", 1), ("eax != 16 || 1", 1), ("eax < 3 && 1", 0), ("sigma0:main", 0x400000),
    ("1 << 4 | 1", 17), ("100 / 7 % 5", 4), ("!0", 1),
])
def test_expressions(text, value):
    assert evaluate(text, ctx(mem={0x8000: 0x1234, 0x8004: 5})) == value


@pytest.mark.parametrize("text, message", [
    ("", "empty expression"), ("1 +", "ends too early"), ("nosuch", "no symbol or register"),
    ("$nosuch", "no register named '$nosuch'"), ("[0x5000]", "cannot read 4 bytes at "
                                                 "0x00005000: not mapped (page fault)"),
    ("1 / 0", "division by zero"), ("(1", "ends too early"), ("1 2", "unexpected '2'"),
    ("5 @ 3", "cannot parse '@ 3'"), ("[1", "ends too early"),
])
def test_bad_expressions_say_why(text, message):
    with pytest.raises(ExprError) as e:
        evaluate(text, ctx())
    assert message in str(e.value) and "\n" not in str(e.value)
