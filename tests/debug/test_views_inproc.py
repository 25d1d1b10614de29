"""The shell's commands in-process on machines built by the tests: page-table views under
paging, the L4 views over a fake kernel's TCBs, and bad input that must change nothing."""
from __future__ import annotations

import hashlib
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emu.asm import assemble
from emu.boot.elf import Segment, Symbol, write_elf
from emu.boot.multiboot import load_multiboot
from emu.debug.l4view import DEFAULT_LAYOUT, L4View, find_layout, parse_layout
from emu.debug.shell import Debugger
from emu.debug.symbols import SymbolTable
from emu.devices.firmware import write_firmware
from emu.machine import Machine
from tests.guest import PD, Guest

from .kernels import hello_kernel


def session(m, symbols=None, l4=None):
    out: list[str] = []
    d = Debugger(m, symbols or SymbolTable(), write=out.append, l4=l4)

    def run(line: str) -> list[str]:
        out.clear()
        d.execute(line)
        return "".join(out).splitlines()
    return d, run


def test_page_table_views_under_paging():
    m, syms = Guest(kernel="spin: jmp spin", paging=True).build()
    m.run(max_insns=200)
    assert m.cpu.mmu_state()[0] & 0x80000000
    d, run = session(m)
    walk = run("info pt 0x400123")
    assert walk[0] == ("linear 0x00400123: directory 0x00010000, pde index 0x1, pte index 0x0, "
                       "offset 0x123")
    assert walk[1].startswith("  pde at 0x00010004 = ") and walk[1].endswith("[P W U]")
    assert walk[2].endswith("[P W U]")
    assert walk[3] == "  4 KiB page -> physical 0x00400123 (user, read/write)"
    assert run("info pt 0x900000")[-1] == "  not present: a page fault"
    assert run(f"info pt 0x400000 {PD:#x}")[0].startswith("linear 0x00400000: directory 0x00010000")
    runs = run("info pt")
    assert runs[0].startswith("directory 0x00010000: 2 runs")
    assert runs[1] == "  0x00000000-0x003fffff -> 0x00000000  SW  4 MiB"
    assert runs[2] == "  0x00400000-0x007fffff -> 0x00400000  UW  4 MiB"
    assert run("creg")[0].startswith("cr0=80010011 [PE ET WP PG]")
    assert run("sreg")[0].startswith("cs=0008 base=00000000 limit=ffffffff dpl=0 code 32-bit")
    assert run("x/2xw 0x900000") == [
        "cannot read 8 bytes at virtual 0x00900000: not mapped (page fault)"]


# -- L4 views over a fake kernel --------------------------------------------------------------
def tid(task: int, lthread: int) -> int:
    return (task << 17) | (lthread << 10) | 1


FAKE_KERNEL = f"""
start:
    jmp start
l4_tcb_count: .long 4
l4_current: .long l4_tcbs + 0x40
.align 64
l4_tcbs:
    ; slot 0: sigma0, 1.0, receiving (open wait), one sender queued
    .long {tid(1, 0)}, 4, 200, 10, 0, 0, 0, {PD}, l4_tcbs + 0x80, 0, 0
    .space 0x40 - 44
    ; slot 1: the root task, 2.0, running, pager sigma0
    .long {tid(2, 0)}, 1, 100, 7, 0, 0, {tid(1, 0)}, 0x30000, 0, 0, 0
    .space 0x40 - 44
    ; slot 2: 2.1 sending to sigma0 with a timeout, queued in sigma0's send queue
    .long {tid(2, 1)}, 3, 100, 3, {tid(1, 0)}, 5000, {tid(2, 0)}, 0x30000, 0, 0, 0
    .space 0x40 - 44
    ; slot 3: free
    .long 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
    .space 0x40 - 44
"""

LAYOUT = """
[symbols]
tcbs = "l4_tcbs"
count = "l4_tcb_count"
current = "l4_current"
[tcb]
stride = 0x40
[tcb.fields]
id = { offset = 0x00, type = "tid" }
state = { offset = 0x04, type = "u32", enum = "state" }
prio = { offset = 0x08, type = "u8" }
timeslice = { offset = 0x0c, type = "u32" }
partner = { offset = 0x10, type = "tid" }
timeout = { offset = 0x14, type = "u32" }
pager = { offset = 0x18, type = "tid" }
space = { offset = 0x1c, type = "pd" }
send_queue = { offset = 0x20, type = "ptr" }
queue_next = { offset = 0x24, type = "ptr" }
[enum.state]
0 = "free"
1 = "running"
3 = "sending"
4 = "receiving"
"""


def fake_l4(tmp_path):
    a = assemble(FAKE_KERNEL, 0x100000)
    elf = tmp_path / "fake-l4.elf"
    elf.write_bytes(write_elf([Segment(".text", 0x100000, a.code, flags="rwx")], 0x100000,
                              [Symbol(n, v) for n, v in sorted(a.symbols.items())]))
    m = Machine(ram_mib=8)
    m.load(0x100000, a.code)
    m.set_entry_state(0x100000)
    # Task 1's space: 8 KiB of user memory at 0x400000 from 0x500000, and 4 MiB of kernel.
    pt_user, pt_kernel = PD + 0x1000, PD + 0x2000
    m.ram.write32(PD, pt_kernel | 3)
    m.ram.write32(PD + 4, pt_user | 7)
    for i in range(1024):
        m.ram.write32(pt_kernel + 4 * i, (i << 12) | 3)
    m.ram.write32(pt_user, 0x500000 | 7)
    m.ram.write32(pt_user + 4, 0x501000 | 5)
    return m, SymbolTable.from_files(elf)


def test_l4_views_over_a_fake_kernel(tmp_path):
    layout_file = tmp_path / "l4view.toml"
    layout_file.write_text(LAYOUT)
    layout = find_layout(str(layout_file), None)
    m, symbols = fake_l4(tmp_path)
    d, run = session(m, symbols, L4View(m, symbols, layout))
    threads = run("info threads")
    assert threads[0].split() == ["thread", "state", "prio", "timeslice", "partner", "timeout",
                                  "pager", "tcb"]
    assert threads[1].split() == ["1.0", "receiving", "200", "10", "nil", "0", "nil",
                                  "0x00100040"]
    assert threads[2].split()[:3] == ["*", "2.0", "running"]       # the current thread
    assert threads[3].split() == ["2.1", "sending", "100", "3", "1.0", "5000", "2.0",
                                  "0x001000c0"]
    assert len(threads) == 4                                        # slot 3 is free
    tasks = run("info tasks")
    assert tasks[1].split()[:3] == ["1", "1", "0x00010000"]
    assert tasks[2].split()[:3] == ["2", "2", "0x00030000"]
    tcb = run("info tcb 1.0")
    assert tcb[0] == "thread 1.0: tcb at 0x00100040 (slot 0), state receiving"
    assert "  senders waiting: 2.1" in tcb
    assert "  pager chain: none" in tcb
    tcb = run("info tcb 2.1")
    assert "  sends to 1.0, timeout 5000" in tcb
    assert "  pager chain: 2.0 -> 1.0" in tcb
    assert run("info tcb 7.3") == ["no thread 7.3 (0xe0c00)"]
    space = run("info space 1")
    assert space[0] == "task 1: page directory 0x00010000, threads 1.0"
    assert space[1] == "  user mappings: 8 KiB in 2 runs; kernel mappings: 4096 KiB"
    maps = run("info mappings 1")
    assert maps[0] == "task 1:"
    assert "  0x00400000-0x00400fff -> 0x00500000  UW  4 KiB" in maps
    assert "  0x00401000-0x00401fff -> 0x00501000  UR  4 KiB" in maps
    assert run("info space 9") == ["no task 9 (or its TCBs have no 'space' field)"]


def test_default_layout_and_bad_layouts(tmp_path):
    assert parse_layout(DEFAULT_LAYOUT).symbols["tcbs"] == "l4_tcbs"
    # The source tree's kernel ships its own layout, found when nothing else is given.
    assert find_layout(None, None).symbols["require"] == "fastpath_ipc"
    bad = tmp_path / "bad.toml"
    bad.write_text("[symbols]\ntcbs = 'x'\n[tcb.fields]\nid = { offset = 0, type = 'f64' }\n")
    import pytest

    from emu.debug.l4view import LayoutError
    with pytest.raises(LayoutError, match="unknown type 'f64'"):
        find_layout(str(bad), None)
    with pytest.raises(LayoutError, match="needs 'tcbs'"):
        parse_layout("[symbols]\n")
    with pytest.raises(LayoutError, match="no such layout file"):
        find_layout(str(tmp_path / "none.toml"), None)


# -- nothing typed changes the guest unless it is meant to --------------------------------------
def hello_machine():
    m = Machine(ram_mib=4)
    write_firmware(m.ram.buf, m.ram.size)
    info = load_multiboot(m.ram.buf, m.ram.size, hello_kernel(), [], "x")
    m.cpu.code_written()
    m.set_entry_state(info.entry, {"eax": info.magic, "ebx": info.mbi_addr})
    return m


def guest_state(m) -> tuple:
    return (tuple(sorted(m.cpu.registers().items())), m.clock.now,
            hashlib.sha1(m.ram.view).hexdigest())


_MEANT_TO_CHANGE = {"continue", "step", "next", "finish", "set", "asm", "source", "gdb", "quit",
                    "rstep", "rcontinue"}
_WORDS = ["x/4xw", "xp/2i", "x/s", "u", "b", "tb", "d", "bl", "watch", "info", "r", "sreg",
          "creg", "bt", "p", "trace", "count", "help", "pt", "tcb", "irq", "$eax", "[", "]",
          "esp", "start", "puts", "0x", "0xffffffff", "-", "+", "*", "if", "==", "all", "r",
          "w", "rw", "'", '"', "/", "x/", "x/0x", "info pt", "on", "off", "ipc", ":", "\x00"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.sampled_from(_WORDS), st.text(max_size=6)), min_size=1,
                max_size=6))
def test_typed_garbage_never_raises_or_changes_the_guest(words):
    m = FUZZ_MACHINE
    line = " ".join(words)
    d = Debugger(m, FUZZ_SYMBOLS, write=lambda s: None)
    word = line.strip().split(" ")[0] if line.strip() else ""
    if d._resolve(word) in _MEANT_TO_CHANGE:
        return
    before = guest_state(m)
    d.execute(line)            # must not raise
    assert guest_state(m) == before, line
    for n in list(d.points):   # leave no hooks behind for the next example
        d._delete(n)


FUZZ_MACHINE = hello_machine()
FUZZ_SYMBOLS = SymbolTable.from_files(hello_kernel())


def test_machine_breakpoints_are_hooks_not_int3():
    m = hello_machine()
    d, run = session(m, SymbolTable.from_files(hello_kernel()))
    code = m.ram.read(0x10013B, 4)
    run("b puts")
    assert m.ram.read(0x10013B, 4) == code and 0x10013B in m.breakpoints
    run("d 1")
    assert 0x10013B not in m.breakpoints
    assert struct.unpack("<I", m.ram.read(0x100000, 4))[0] == 0x1BADB002
