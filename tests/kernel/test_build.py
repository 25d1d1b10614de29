"""The build of L4 images (DESIGN D7, D8): the ABI's single source generates the kernel's
assembly include and the servers' C header; keystone traps are refused before they can
miscompile; C modules come out as i386 executables at their base; builds are cached."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from emu.asm import AsmError, assemble
from emu.boot import abi
from emu.boot.build import build_asm_elf
from emu.boot.image import build_image
from emu.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "kernel" / "abi.toml"


def test_abi_generates_matching_asm_and_c(tmp_path):
    """Every constant appears with the same value in abi.inc and l4/abi.h."""
    consts = abi.load(TABLE)
    out = abi.generate(TABLE, tmp_path)
    inc = dict(re.findall(r"^\.equ (\w+), (0x[0-9a-f]+)", (out / "abi.inc").read_text(),
                          re.MULTILINE))
    hdr = dict(re.findall(r"^#define (\w+) (0x[0-9a-f]+)u?", (out / "l4" / "abi.h").read_text(),
                          re.MULTILINE))
    assert set(inc) == set(hdr) == set(consts)
    for name, value in consts.items():
        assert int(inc[name], 16) == int(hdr[name], 16) == value, name
    # the V2 facts the rest relies on
    assert consts["L4_SYSCALL_IPC"] == 0x30 and consts["L4_SYSCALL_TASK_NEW"] == 0x36
    assert consts["L4_KIP_MAGIC_VALUE"].to_bytes(4, "little") == b"L4\xe6K"
    assert consts["L4_IPC_ENOT_EXISTENT"] == 0x10 and consts["L4_IPC_SEMSGCUT"] == 0xF0


def test_abi_table_errors_are_one_line(tmp_path):
    bad = tmp_path / "abi.toml"
    bad.write_text("[x]\nlower_case = 1\n")
    with pytest.raises(UserError, match="UPPER_CASE"):
        abi.read(bad)
    bad.write_text("[x]\nA = 1\n[y]\nA = 2\n")
    with pytest.raises(UserError, match="defined twice"):
        abi.read(bad)


@pytest.mark.parametrize("src, why", [
    (".equ A, 8\nx: nop\nmov eax, [x + A]", "more than one symbol"),
    (".equ A, 8\n.equ B, 4\nlea esp, [ecx + A - B]", "more than one symbol"),
    (".equ B, 4\nmov eax, [ecx + 0x400 - B]", "after '-'"),
    (".equ A, 4\nmov eax, [ecx + eax*A]", "multiplied"),
    (".equ A, 4\nmov eax, 0x400 - A", "after '-'"),
    (".equ A, 4\nand eax, ~A", "after '-' or '~'"),
    (".equ K, 0xC0000000\nsub edi, 4096 + K", "a number plus a symbol"),   # = sub edi, [K]
])
def test_keystone_miscompiling_operands_are_refused(src, why):
    """Operand expressions keystone 0.9.2 gets silently wrong (each seen while writing the
    kernel) are refused with the line named."""
    with pytest.raises(AsmError, match=re.escape(why)):
        assemble(src, 0xC0100000)


def test_operands_keystone_gets_right_still_assemble():
    out = assemble(".equ A, 0x400\n.equ B, 20\n.equ T, A - B\nx: nop\n"
                   "lea esp, [ecx + T]\nmov eax, x - A\nmov eax, [ecx + A]\nmov eax, [x + 8]\n",
                   0xC0100000)
    assert out.code[1:7] == bytes.fromhex("8da1ec030000")        # lea esp, [ecx + 0x3ec]


def test_keystone_error_names_the_line():
    with pytest.raises(AsmError, match="line 3: 'rep movsd'"):
        assemble("nop\nnop\nrep movsd\nnop\n")


def test_dropped_alignment_is_caught(tmp_path, monkeypatch):
    """A label after `.align N` must come out N-aligned (a keystone trap the build checks)."""
    src = tmp_path / "a.asm"
    src.write_text("start: nop\n.align 16\nhere: nop\n")
    build_asm_elf(src, 0x100000)                          # fine as assembled
    import emu.boot.build as b
    real = b.assemble

    def shifted(text, base):                               # pretend keystone lost the align
        out = real(text, base)
        out.symbols["here"] += 1
        return out
    monkeypatch.setattr(b, "assemble", shifted)
    with pytest.raises(UserError, match="here .* not 16-aligned"):
        build_asm_elf(src, 0x100000)


def test_images_build_into_i386_elfs_with_symbols():
    """The kernel links higher-half (vaddr 0xC0100000, paddr 1 MiB); C modules at their base;
    every part is an i386 executable with a symbol table naming its code."""
    built = build_image(ROOT / "images" / "hello.toml")
    with open(built.kernel, "rb") as f:
        k = ELFFile(f)
        seg = next(k.iter_segments())
        assert (seg["p_vaddr"], seg["p_paddr"]) == (0xC0100000, 0x100000)
        names = {s.name for s in k.get_section_by_name(".symtab").iter_symbols()}
        assert {"fastpath_ipc", "ipc_slow", "sched_pick", "kip"} <= names
    for (path, cmdline), base in zip(built.modules, (0x40000000, 0x50000000)):
        with open(path, "rb") as f:
            e = ELFFile(f)
            assert e.header.e_machine == "EM_386" and e.header.e_type == "ET_EXEC"
            loads = [s for s in e.iter_segments() if s["p_type"] == "PT_LOAD"]
            assert min(s["p_vaddr"] for s in loads) == base
            assert all(s["p_vaddr"] % 4096 == 0 for s in loads)   # one permission per page
            names = {s.name for s in e.get_section_by_name(".symtab").iter_symbols()}
            assert {"_start", "main", "l4_syscall", "l4_int_ipc", "l4_gate_ipc"} <= names


def test_kernel_cpu_page_layout():
    """What an address-space switch touches besides code and TCBs is one page (desc.asm, the
    CPU page; docs/benchmarking.md): the IDT, GDT, the fast path's two words and the TSS lie
    in it at the offsets layout.inc gives their aliases (the TSS at its end, so the space's
    I/O bitmap follows it); the fast path's code is one page; no written data shares a page
    with code."""
    built = build_image(ROOT / "images" / "hello.toml")
    with open(built.kernel, "rb") as f:
        syms = {s.name: s["st_value"]
                for s in ELFFile(f).get_section_by_name(".symtab").iter_symbols() if s.name}
    layout = (ROOT / "kernel" / "layout.inc").read_text()
    equ = {n: v for n, v in re.findall(r"^\.equ (CPU_\w+), IO_PAGE_VIRT \+ (0x[0-9A-Fa-f]+)",
                                        layout, re.MULTILINE)}
    page = syms["tss_page"]
    assert page % 4096 == 0
    assert syms["idt"] == page
    for name, label in (("CPU_GDT", "gdt"), ("CPU_CUR_SPACE", "cur_space"),
                        ("CPU_RESUME_USER", "resume_user_ptr")):
        assert syms[label] - page == int(equ[name], 16), name
    assert syms["gdt_end"] - syms["gdt"] == 14 * 8           # 0x68: the TLS entry
    assert syms["tss"] - page == 0x1000 - 104
    assert syms["gate_ipc"] >> 12 == (syms["fastpath_end"] - 1) >> 12
    assert syms["boot_magic"] % 4096 == 0 and syms["boot_magic"] > syms["fastpath_end"]


def test_image_cache_follows_the_abi_table_and_sources(tmp_path, monkeypatch):
    """An unchanged image is not rebuilt; a changed server source is."""
    monkeypatch.setenv("L4EMU_CACHE", str(tmp_path / "cache"))
    lib = tmp_path / "lib"
    (lib / "include").mkdir(parents=True)
    for f in (ROOT / "servers" / "lib").iterdir():
        if f.is_file():
            (lib / f.name).write_bytes(f.read_bytes())
    for f in (ROOT / "servers" / "lib" / "include").rglob("*.h"):
        dest = lib / "include" / f.relative_to(ROOT / "servers" / "lib" / "include")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(f.read_bytes())
    main = tmp_path / "main.c"
    main.write_text("#include <l4/l4.h>\nint main(void) { return L4_SYSCALL_IPC; }\n")
    manifest = tmp_path / "img.toml"
    manifest.write_text(f'abi = "{TABLE}"\n[kernel]\nasm = "{ROOT}/kernel/kernel.asm"\n'
                        'base = 0xC0100000\nphys = 0x100000\n'
                        f'[[module]]\nc = ["{main}"]\nlib = ["{lib}"]\nbase = 0x50000000\n')
    first = build_image(manifest)
    assert not first.cached
    assert build_image(manifest).cached
    main.write_text(main.read_text() + "\n/* changed */\n")
    third = build_image(manifest)
    assert not third.cached and third.directory != first.directory
