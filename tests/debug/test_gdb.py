"""The GDB stub driven by real gdb (Debian's, in batch mode) and, for what gdb's batch mode
cannot do (Ctrl-C, garbage, disconnects), by a raw protocol client over TCP."""
from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pytest

from emu.debug.gdbstub import checksum, escape, target_xml

from .kernels import HELLO_IMAGE, asm_kernel, gdb_port, hello_kernel, l4emu, start_l4emu

GDB = shutil.which("gdb")
needs_gdb = pytest.mark.skipif(GDB is None, reason="gdb is not installed (apt-get install gdb)")

SPIN = """
    mov ecx, 0
spin:
    inc ecx
    mov [counter], ecx
    jmp spin
counter: .long 0
"""


def run_gdb(port: int, *commands: str, kernel=None, timeout: float = 30) -> str:
    args = [GDB, "-nx", "-batch", "-ex", "set architecture i386"]
    if kernel is not None:
        args += ["-ex", f"file {kernel}"]
    args += ["-ex", f"target remote 127.0.0.1:{port}"]
    for c in commands:
        args += ["-ex", c]
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    return r.stdout + r.stderr


def finish(proc: subprocess.Popen, timeout: float = 30) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"l4emu did not finish: {err}")
    return proc.returncode, out, err


@needs_gdb
def test_real_gdb_breaks_steps_watches_and_detaches():
    k = hello_kernel()
    proc = start_l4emu("boot", str(HELLO_IMAGE), "--gdb", "0", "--wait")
    try:
        port = gdb_port(proc)
        out = run_gdb(port, "watch *(int*)&magic", "continue", "delete",
                      "break puts", "continue", "info registers", "x/4i $eip", "stepi",
                      "info registers eip", "info registers cr0 cr3", "detach", kernel=k)
    finally:
        status, serial, err = finish(proc)
    # The target description was accepted: no complaint, and the system feature is there.
    assert "warning" not in out.lower() or "target description" not in out.lower(), out
    assert "0x0010000c in start ()" in out
    # Watchpoint hit: gdb saw the write and the values around it.
    assert "Hardware watchpoint 1: *(int*)&magic" in out
    assert "Old value = 0" in out and "New value = 732803074" in out
    # Breakpoint on a kernel symbol.
    assert "Breakpoint 2 at 0x10013b" in out and "Breakpoint 2, 0x0010013b in puts ()" in out
    for reg in ("eax", "ecx", "esp", "eip", "eflags", "cs", "ss", "gs"):
        assert f"\n{reg} " in out, reg
    assert "=> 0x10013b <puts>:\tpush   %eax" in out
    assert "0x10013c <puts_next+1>:" in out or "<puts_next>" in out
    # stepi moved exactly one instruction.
    assert "0x0010013c in puts_next ()" in out
    assert "eip            0x10013c" in out
    assert "cr0            0x11" in out
    assert "[Inferior 1 (Remote target) detached]" in out
    # Detached: the guest ran to completion and l4emu exits with its status.
    assert status == 1, err
    assert serial.startswith("Hello from a multiboot kernel") and "bye" in serial
    assert "gdb detached; the guest runs to completion" in err


@needs_gdb
def test_real_gdb_continue_to_the_end_sees_the_exit_code():
    proc = start_l4emu("boot", str(HELLO_IMAGE), "--gdb", "0", "--wait")
    port = gdb_port(proc)
    out = run_gdb(port, "continue")
    status, serial, err = finish(proc)
    assert "[Inferior 1 (Remote target) exited with code 01]" in out
    assert status == 1 and "bye" in serial


@needs_gdb
def test_real_gdb_attaches_to_a_running_guest_and_kills_it(tmp_path):
    k = asm_kernel(tmp_path, SPIN)
    proc = start_l4emu("boot", str(k), "--gdb", "0")          # no --wait: the guest runs
    port = gdb_port(proc)
    out = run_gdb(port, "info registers eip ecx", "kill", kernel=k)
    status, _, err = finish(proc)
    assert "eip            0x10001" in out                       # inside the spin loop
    assert status == 130 and "killed by gdb" in err


# -- the protocol without gdb -----------------------------------------------------------------
class Rsp:
    """A minimal remote-protocol client for the tests."""

    def __init__(self, port: int) -> None:
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""

    def raw(self, data: bytes) -> None:
        self.s.sendall(data)

    def send(self, payload: bytes | str) -> None:
        data = payload.encode("latin-1") if isinstance(payload, str) else payload
        self.raw(b"$" + data + b"#" + b"%02x" % checksum(data))

    def _fill(self) -> None:
        chunk = self.s.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        self.buf += chunk

    def ack(self) -> bytes:
        while not self.buf:
            self._fill()
        c, self.buf = self.buf[:1], self.buf[1:]
        return c

    def reply(self) -> str:
        while True:
            start = self.buf.find(b"$")
            end = self.buf.find(b"#", start)
            if start >= 0 and end >= 0 and len(self.buf) >= end + 3:
                body = self.buf[start + 1:end]
                self.buf = self.buf[end + 3:]
                self.raw(b"+")
                return body.decode("latin-1")
            self._fill()

    def ask(self, payload: str) -> str:
        self.send(payload)
        assert self.ack() == b"+"
        return self.reply()

    def close(self) -> None:
        self.s.close()


def test_protocol_garbage_disconnects_ctrl_c_and_kill(tmp_path):
    k = asm_kernel(tmp_path, SPIN)
    proc = start_l4emu("boot", str(k), "--gdb", "0", "--wait")
    try:
        port = gdb_port(proc)
        c = Rsp(port)
        sup = c.ask("qSupported:multiprocess+;swbreak+;xmlRegisters=i386")
        assert "PacketSize=4000" in sup and "qXfer:features:read+" in sup
        xml = c.ask("qXfer:features:read:target.xml:0,ffff")
        assert xml[0] == "l" and "org.gnu.gdb.i386.core" in xml and "cr3" in xml
        assert xml[1:] == target_xml()
        # Garbage between packets is ignored; a bad checksum is refused with '-'.
        c.raw(b"hello world+++")
        c.raw(b"$g#00")
        assert c.ack() == b"-"
        regs = c.ask("g")
        assert len(regs) == 2 * (16 * 4 + 8 * 10 + 8 * 4 + 10 * 4)
        assert regs[8 * 8:8 * 9] == "0c001000"                 # eip = 0x10000c
        assert c.ask("m100000,4") == "02b0ad1b"                  # the multiboot magic
        assert c.ask("mdeadbeef,4").startswith("E")
        assert c.ask("Zq,0,0") == "E01" or c.ask("?")            # nonsense: an error, no crash
        # X: binary data with escaped bytes.
        payload = bytes([0x7D, 0x23, 0x24, 0x2A, 0x00, 0xFF])
        assert c.ask(b"X7000,6:" + escape(payload)) == "OK"
        assert c.ask("m7000,6") == payload.hex()
        # A breakpoint on the loop, continue, the T reply.
        assert c.ask("Z0,100011,1") == "OK"
        stop = c.ask("vCont;c")
        assert stop.startswith("T05") and "swbreak:;" in stop and "thread:01;" in stop
        assert c.ask("z0,100011,1") == "OK"
        # Ctrl-C while running: SIGINT within a short time.
        c.send("c")
        assert c.ack() == b"+"
        time.sleep(0.2)
        t0 = time.monotonic()
        c.raw(b"\x03")
        assert c.reply().startswith("T02")
        assert time.monotonic() - t0 < 2
        eip = c.ask("p8")
        # Disconnect without detaching: the guest stays stopped; the next client sees it.
        c.close()
        c = Rsp(port)
        assert c.ask("?").startswith("T02")
        assert c.ask("p8") == eip
        counter = c.ask("m100019,4")
        time.sleep(0.3)
        assert c.ask("m100019,4") == counter                     # really stopped
        # Single step moves one instruction.
        assert c.ask("s").startswith("T05")
        assert c.ask("vKill;1") == "OK"
        c.close()
    finally:
        status, _, err = finish(proc)
    assert status == 130 and "killed by gdb" in err


def test_monitor_commands_and_the_shell_gdb_command(tmp_path):
    """`gdb PORT` in the shell serves one client; gdb's `monitor` runs the shell's views."""
    cmds = tmp_path / "c.txt"
    cmds.write_text("gdb 0\nr\n")
    proc = subprocess.Popen(["python", "-m", "emu.cli", "debug", str(HELLO_IMAGE),
                             "--commands", str(cmds)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = None
        lines = []
        while port is None:
            line = proc.stdout.readline()
            assert line, "".join(lines) + proc.stderr.read()
            lines.append(line)
            if "gdb stub listening on" in line:
                port = int(line.split("listening on ")[1].split(";")[0].rsplit(":", 1)[1])
        c = Rsp(port)
        c.send("qRcmd," + b"info symbol $eip".hex())
        assert c.ack() == b"+"
        text = ""
        while True:
            r = c.reply()
            if r == "OK":
                break
            assert r[0] == "O"
            text += bytes.fromhex(r[1:]).decode()
        assert text == "0x0010000c is start\n"
        c.send("qRcmd," + b"c".hex())
        assert c.ack() == b"+"
        assert "cannot run inside gdb's monitor" in bytes.fromhex(c.reply()[1:]).decode()
        assert c.reply() == "OK"
        assert c.ask("D") == "OK"
        c.close()
    finally:
        status, out, err = finish(proc)
    out = "".join(lines) + out
    assert "gdb session ended (detach); back in the shell" in out
    assert "(l4emu) r\neax=2badb002" in out
    assert status == 0


def test_bad_gdb_port_is_one_line():
    r = l4emu("boot", str(HELLO_IMAGE), "--gdb", "notaport")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "l4emu: bad gdb port 'notaport': expected [HOST:]PORT"]


@needs_gdb
def test_real_gdb_reverse_continue_and_reverse_stepi():
    """gdb's reverse-continue and reverse-stepi (bc/bs packets): back to the previous
    breakpoint hit with the state it had then, and one instruction back."""
    k = hello_kernel()
    proc = start_l4emu("boot", str(HELLO_IMAGE), "--gdb", "0", "--wait")
    try:
        port = gdb_port(proc)
        out = run_gdb(port, "break puts", "continue", "print/x $esi", "continue",
                      "print/x $esi", "reverse-continue", "print/x $esi", "stepi",
                      "reverse-stepi", "info registers eip", "kill", kernel=k)
    finally:
        finish(proc)
    values = [line.split("=")[1].strip() for line in out.splitlines()
              if line.startswith("$")]
    assert len(values) == 3, out
    assert values[0] != values[1]               # two different calls of puts
    assert values[2] == values[0], out          # back at the first one, with its string
    assert "eip            0x10013b" in out, out
