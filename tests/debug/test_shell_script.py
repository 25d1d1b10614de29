"""`l4emu debug --commands FILE`: scripted sessions on real images, output checked line by line.

Each session is a real process (the CLI as a user runs it) with stdin empty, so the shell
reads the command file, echoes each command after the prompt, and ends at end of input.
"""
from __future__ import annotations

import re

import pytest

from .kernels import HELLO_IMAGE, asm_kernel, c_kernel, debug_script, l4emu

HELLO_SESSION = """\
b puts
bl
c
r
x/4xw start
x/s msg_hello
x/3i $eip
u start 3
bt
s 2
n
info symbol puts+3
p start + 4*2
p [0x100000]
watch w magic
info pt
info irq
info devices
info threads
info tasks
info tcb 1.0
count
c
c
"""


@pytest.fixture(scope="module")
def hello_transcript(tmp_path_factory):
    r = debug_script(HELLO_IMAGE, HELLO_SESSION, tmp_path=tmp_path_factory.mktemp("hello"))
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    assert "internal error" not in r.stdout
    return r.stdout


def after(transcript: str, command: str) -> list[str]:
    """The lines a command printed: from its echo to the next prompt."""
    lines = transcript.splitlines()
    i = lines.index("(l4emu) " + command)
    out = []
    for line in lines[i + 1:]:
        if line.startswith("(l4emu) "):
            break
        out.append(line)
    return out


def test_session_starts_before_the_first_instruction(hello_transcript):
    first = hello_transcript.splitlines()[:2]
    assert "stopped before its first instruction" in first[0]
    assert re.match(r"=> 0x0010000c <start>: mov esp, 0x[0-9a-f]+$", first[1])


def test_breakpoint_on_a_symbol_and_continue(hello_transcript):
    assert after(hello_transcript, "b puts") == ["breakpoint 1 at 0x0010013b <puts>"]
    assert after(hello_transcript, "bl")[1].split()[:4] == ["1", "break", "0x0010013b", "0"]
    out = after(hello_transcript, "c")
    assert out == ["breakpoint 1, 0x0010013b <puts>", "=> 0x0010013b <puts>: push eax"]


def test_registers_and_memory_views(hello_transcript):
    regs = after(hello_transcript, "r")
    assert regs[0].startswith("eax=2badb00")          # the multiboot magic, almost untouched
    assert "eip=0010013b" in regs[2] and "cpl=0" in regs[2]
    assert after(hello_transcript, "x/4xw start")[0].startswith(
        "0x0010000c <start>:\t0x")
    assert after(hello_transcript, "x/s msg_hello") == [
        '0x001001a4 <msg_hello>: "Hello from a multiboot kernel on l4emu.\\n"']
    dis = after(hello_transcript, "x/3i $eip")
    assert dis[0] == "=> 0x0010013b <puts>: push eax" and len(dis) == 3
    u = after(hello_transcript, "u start 3")
    assert u[0] == "start:" and "mov esp" in u[1] and len(u) == 4


def test_backtrace_step_and_next(hello_transcript):
    bt = after(hello_transcript, "bt")
    assert bt[0].startswith("#0  0x0010013b <puts>")
    assert "<start+0x" in bt[1]                         # the return address on the stack
    assert after(hello_transcript, "s 2")[0].startswith("=> 0x0010013d <puts_next+0x1>")
    assert after(hello_transcript, "n")[0].startswith("=> 0x0010013f")


def test_expressions_and_symbols(hello_transcript):
    assert after(hello_transcript, "info symbol puts+3") == ["0x0010013e is puts_next+0x2"]
    assert after(hello_transcript, "p start + 4*2") == ["0x100014 = 1048596 <start+0x8>"]
    assert after(hello_transcript, "p [0x100000]")[0].startswith("0x1badb002 = ")


def test_machine_views(hello_transcript):
    assert after(hello_transcript, "info pt") == [
        "paging is off (CR0.PG=0): linear addresses are physical"]
    irq = after(hello_transcript, "info irq")
    assert irq[0].startswith("pic master: base=0x08") and "imr=11111111" in irq[0]
    assert any(line.startswith("ioapic masked pins: 0,1,2") for line in irq)
    assert any(line.startswith("lapic: ") for line in irq)
    dev = "\n".join(after(hello_transcript, "info devices"))
    for name in ("pic: ports 0x20-0x21", "com1: ports 0x3f8-0x3ff", "pit:", "rtc:",
                 "lapic: mmio 0xfee00000-0xfee00fff", "debug-exit: port 0xf4", "clock:"):
        assert name in dev


def test_l4_views_say_there_is_no_kernel(hello_transcript):
    for cmd in ("info threads", "info tasks", "info tcb 1.0"):
        out = after(hello_transcript, cmd)
        assert len(out) == 1 and out[0].startswith("no L4 kernel symbols in this image")


def test_watchpoint_is_set_and_counted(hello_transcript):
    assert after(hello_transcript, "watch w magic") == [
        "watchpoint 2: w 4 bytes at 0x0010026d <magic>"]
    assert re.match(r"\d+ instructions retired", after(hello_transcript, "count")[0])


def test_watchpoints_stop_after_the_access(tmp_path):
    session = "watch w magic\nc\nd 1\nwatch r magic 1\nc\nbl\n"
    r = debug_script(HELLO_IMAGE, session, tmp_path=tmp_path)
    out = r.stdout
    hit = after(out, "c")
    assert hit[0] == ("watchpoint 1: write of 0x2badb002 at 0x0010026d <magic> (size 4), "
                      "stopped after the instruction")
    assert hit[1].startswith("=> 0x0010001c <start+0x10>: call 0x100119 <serial_init>")
    assert after(out, "watch r magic 1") == ["watchpoint 2: r 1 bytes at 0x0010026d <magic>"]
    assert after(out, "bl")[1].split()[:5] == ["2", "watch", "r", "0x0010026d", "1"]


BAD_INPUT = """\
foo
contineu
x/4xw 0xdeadbeef
x/4qw 0
p nosuchsym
p 1 +
p [0xfffffff0]
p 5 / 0
b
b nosuchsym
watch z 0
watch w 0xdeadbeef
d 7
s -1
info nothing
info
set nosuch=1
set eax
asm 0x100000 'not an instruction'
source /no/such/file
u 0xdeadbeef
trace on sideways
r
"""


def test_bad_input_gives_one_line_and_changes_nothing(tmp_path):
    r = debug_script(HELLO_IMAGE, "r\n" + BAD_INPUT, tmp_path=tmp_path)
    assert r.returncode == 0 and "Traceback" not in r.stdout + r.stderr
    out = r.stdout
    for cmd in BAD_INPUT.splitlines()[:-1]:
        lines = after(out, cmd)
        assert len(lines) == 1, (cmd, lines)
        assert "internal error" not in lines[0], (cmd, lines)
    assert after(out, "foo") == ["unknown command 'foo'; did you mean info?"]
    assert "did you mean continue" in after(out, "contineu")[0]
    assert "0xdeadbeef" in after(out, "x/4xw 0xdeadbeef")[0]
    assert after(out, "p nosuchsym") == ["no symbol or register named 'nosuchsym'"]
    assert after(out, "p 5 / 0") == ["division by zero"]
    # The registers are the same before and after all of that.
    lines = out.splitlines()
    first = lines.index("(l4emu) r")
    last = len(lines) - 1 - lines[::-1].index("(l4emu) r")
    assert lines[first + 1:first + 4] == lines[last + 1:last + 4]


def test_guest_exit_ends_runs_and_sets_the_status(tmp_path):
    r = debug_script(HELLO_IMAGE, "c\nc\ns\n", tmp_path=tmp_path)
    assert r.returncode == 1, r.stderr           # the guest's status, as `boot` returns it
    assert "bye" in r.stdout
    assert re.search(r"the guest powered off after \d+ instructions: exit status 1 "
                     r"\(isa-debug-exit value 0x0\)", r.stdout)
    assert after(r.stdout, "s") == [
        "the guest has powered off (exit status 1); nothing more to run"]


def test_c_kernel_source_lines_backtrace_and_finish(tmp_path):
    k = c_kernel(tmp_path)
    session = """\
b square
c
bt
finish
info symbol $eip
b sum_squares if [esp+4] == 4
tb kmain
bl
x/dw counter
d 1
c
x/dw counter
"""
    r = debug_script(k, session, tmp_path=tmp_path)
    out = r.stdout
    assert r.returncode == 1 and "Traceback" not in out + r.stderr, out + r.stderr
    assert after(out, "b square")[0].startswith("breakpoint 1 at 0x") and \
        after(out, "b square")[0].endswith("<square> [k.c:12]")
    bt = after(out, "bt")
    assert [re.sub(r"0x[0-9a-f]+ ", "", line).split()[1:] for line in bt] == [
        ["<square>", "[k.c:12]"], ["<sum_squares+0x2a>", "[k.c:19]"],
        ["<kmain+0x12>", "[k.c:24]"], ["<_start+0xa>", "[k.c:32]"]]
    fin = after(out, "finish")
    assert fin[0].startswith("run till exit to 0x") and "<sum_squares+0x2a>" in fin[0]
    assert fin[-1] == "value returned: eax=0x1"           # square(1)
    assert after(out, "info symbol $eip")[0].endswith("is sum_squares+0x2a [k.c:19]")
    assert after(out, "b sum_squares if [esp+4] == 4")[0].endswith("if [esp+4] == 4")
    # sum_squares was entered once, before the breakpoint existed: the run ends at the exit.
    assert after(out, "x/dw counter")[0].endswith("\t0")
    assert "exit status 1" in out and out.rstrip().endswith("\t30")


def test_asm_patch_and_set_change_the_guest(tmp_path):
    body = """
      mov eax, 1
      mov dx, 0x3f8
      add al, 0x40
      out dx, al
      mov al, 0
      out 0xf4, al
      hlt
    """
    k = asm_kernel(tmp_path, body)
    session = """\
asm start 'mov eax, 2'
u start 3
set ebx = 7
p $ebx
set byte[0x7000] = 0x41
x/cb 0x7000
c
"""
    r = debug_script(k, session, tmp_path=tmp_path)
    out = r.stdout
    assert r.returncode == 1, out + r.stderr
    assert after(out, "asm start 'mov eax, 2'") == [
        "wrote 5 bytes at 0x0010000c <start>: b802000000",
        "   0x0010000c: mov eax, 2"]
    assert "mov eax, 2" in after(out, "u start 3")[1]
    assert after(out, "p $ebx") == ["0x7 = 7"]
    assert after(out, "x/cb 0x7000") == ["0x00007000:\t 65 'A'"]
    assert "B" in out          # the patched guest printed 0x40 + 2


def test_trace_trap_and_io(tmp_path):
    """trace io shows the port write; trace trap shows int 0x20 and the faults that follow
    (an empty IDT: #GP, #DF, then a triple fault)."""
    body = """
      mov al, 0x41
      out 0xe9, al
      LIDT [idtr]
      int 0x20
    idtr:
      .short 0
      .long 0
    """
    k = asm_kernel(tmp_path, body)
    r = debug_script(k, "trace on\nc\n", tmp_path=tmp_path)
    out = r.stdout
    assert after(out, "trace on") == ["tracing: io, trap"]
    assert re.search(r"\[1\] out    port 0x00e9 <- 0x41 \(no device\) eip=0x0010000e", out), out
    assert re.search(r"\[\d\] trap vector 0x20 \(int\) at eip=0x[0-9a-f]+ cpl=0 <start\+0x", out)
    assert re.search(r"\[\d\] trap #DF \(fault\) at eip=0x[0-9a-f]+ cpl=0 error=0x0", out)
    assert "the machine stopped: triple-fault" in out


def test_help_and_unknown_help(tmp_path):
    r = debug_script(HELLO_IMAGE, "help\nhelp c\nhelp nope\n", tmp_path=tmp_path)
    out = r.stdout
    assert any("x/NFU ADDR" in line for line in after(out, "help"))
    assert after(out, "help c")[0].startswith("c: run until") and \
        "(also: c, cont)" in after(out, "help c")[0]
    assert after(out, "help nope") == ["no command 'nope'"]


def test_bad_command_file_is_one_line(tmp_path):
    r = l4emu("debug", str(HELLO_IMAGE), "--commands", str(tmp_path / "missing.txt"))
    assert r.returncode == 0
    assert any(line.startswith("cannot read") and "missing.txt" in line
               for line in r.stdout.splitlines())


def test_stepping_and_breakpoints_keep_the_instruction_count(tmp_path):
    """Determinism under the debugger: stepping (into a call that lands just after a `hlt`
    byte), stopping at breakpoints and resuming end the run at the same instruction count as
    a plain boot."""
    plain = l4emu("boot", str(HELLO_IMAGE), "--stats")
    count = re.search(r"l4emu: (\d+) instructions", plain.stderr).group(1)
    r = debug_script(HELLO_IMAGE, "s 4\ns\nb puts\nc\nc\nn\nd 1\nc\n", tmp_path=tmp_path)
    assert after(r.stdout, "s 4")[0].startswith("=> 0x00100119 <serial_init>")
    assert after(r.stdout, "s")[0].startswith("=> 0x0010011d <serial_init+0x4>")
    assert f"the guest powered off after {count} instructions" in r.stdout, r.stdout
