"""GDB remote serial protocol over TCP: a real gdb drives the machine (DESIGN D10).

    l4emu boot KERNEL --gdb [HOST:]PORT [--wait]      (loopback unless a host is given)
    (l4emu) gdb [HOST:]PORT                            (from the debugger shell)

What the stub serves (one thread, the CPU; addresses are linear, through the current CR3):

    ?  g G p P  m M X  c s vCont vCont?  Z0-Z4 z0-z4  D k vKill  H T
    qSupported (PacketSize, qXfer:features:read+, swbreak+, hwbreak+)  qXfer:features:read
    qAttached qC qfThreadInfo qsThreadInfo qSymbol qRcmd (monitor: the shell's view commands)

Target description: `org.gnu.gdb.i386.core` (eax..gs, and the x87 registers gdb's i386
architecture requires; the machine does not model the FPU for gdb, so they read as an empty
FPU and writes to them are ignored) plus `org.l4emu.i386.system` with cr0, cr2, cr3, cr4 and
the descriptor-table registers (`info registers system` in gdb).

Breakpoints (Z0 and Z1 alike) are machine breakpoints, never an int3 written into guest
memory.  Watchpoints: Z2 write, Z3 read, Z4 access, any length; they watch the physical memory
behind the range when set.  Stop replies are T packets with gdb's signal numbers:

    SIGTRAP (05)  breakpoint (swbreak), single step, watchpoint (watch/rwatch/awatch:ADDR),
                  the guest entering the kernel debugger, the instruction limit, hlt forever
    SIGINT  (02)  Ctrl-C from gdb (0x03 while running), or a client attaching to a running guest
    SIGSEGV (0b)  triple fault or an access to unbacked physical memory (the CPU cannot go on)
    SIGABRT (06)  a host-side error inside the emulator
    W xx          the guest powered off: xx is l4emu's exit status

Guest exceptions (page faults and the rest) are the guest's business: they are delivered
through its IDT and never stop the machine; break on the handler to see them.

The guest runs in bounded slices (`SLICE` instructions); between slices the stub polls the
socket without blocking, so a Ctrl-C stops the guest within a few milliseconds.  A client that
disconnects or sends garbage leaves the guest stopped and the stub listening for the next one;
`D` (detach) lets the guest run to completion; `k` ends the run.
"""
from __future__ import annotations

import select
import socket
from dataclasses import dataclass
from typing import Callable, Optional

from ..machine import Machine, RunResult, Stop
from ..memory import BadPhysical, PageFault
from .views import read_reg, write_reg

#: Instructions a debugger runs between looks at its user (Ctrl-C, a gdb packet).
SLICE = 2_000_000


def run_slice(m: Machine, max_insns: Optional[int]) -> Optional[RunResult]:
    """One bounded stretch of a debugger's run.  Returns the stop the user should see — the
    guest's own, the overall limit `max_insns` (an absolute count), or a slice that happened
    to end right on a breakpoint — or None when only the slice ended."""
    chunk = SLICE
    if max_insns is not None:
        left = max_insns - m.clock.now
        if left <= 0:
            return RunResult(Stop.MAX_INSNS, m.clock.now, None,
                             f"reached the limit of {max_insns} instructions")
        chunk = min(chunk, left)
    r = m.run(max_insns=chunk)
    if r.reason is not Stop.MAX_INSNS:
        return r
    if m.cpu.eip in m.breakpoints:
        return RunResult(Stop.BREAKPOINT, r.insns, None, f"breakpoint at {m.cpu.eip:#010x}")
    if max_insns is not None and m.clock.now >= max_insns:
        return RunResult(Stop.MAX_INSNS, m.clock.now, None,
                         f"reached the limit of {max_insns} instructions")
    return None
PACKET_SIZE = 0x4000
SIGINT, SIGTRAP, SIGABRT, SIGSEGV = 2, 5, 6, 11

# (name, bits, gdb type, group) in register-number order.
CORE_REGS = [(n, 32, t, None) for n, t in (
    ("eax", "int32"), ("ecx", "int32"), ("edx", "int32"), ("ebx", "int32"),
    ("esp", "data_ptr"), ("ebp", "data_ptr"), ("esi", "int32"), ("edi", "int32"),
    ("eip", "code_ptr"), ("eflags", "i386_eflags"), ("cs", "int32"), ("ss", "int32"),
    ("ds", "int32"), ("es", "int32"), ("fs", "int32"), ("gs", "int32"))]
X87_REGS = [(f"st{i}", 80, "i387_ext", "float") for i in range(8)] + \
    [(n, 32, "int", "float") for n in
     ("fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop")]
SYSTEM_REGS = [(n, 32, "int32", "system") for n in
               ("cr0", "cr2", "cr3", "cr4", "gdtr_base", "gdtr_limit", "idtr_base",
                "idtr_limit", "tr", "ldtr")]
ALL_REGS = CORE_REGS + X87_REGS + SYSTEM_REGS
_EMPTY_FPU = {"fctrl": 0x37F, "ftag": 0xFFFF}
_WRITABLE_SYSTEM = {"cr0", "cr2", "cr3", "cr4"}

_EFLAGS_FIELDS = [("CF", 0), ("", 1), ("PF", 2), ("AF", 4), ("ZF", 6), ("SF", 7), ("TF", 8),
                  ("IF", 9), ("DF", 10), ("OF", 11), ("NT", 14), ("RF", 16), ("VM", 17),
                  ("AC", 18), ("VIF", 19), ("VIP", 20), ("ID", 21)]


def target_xml() -> str:
    def reg(i: int, spec) -> str:
        name, bits, typ, group = spec
        g = f' group="{group}"' if group else ""
        return f'    <reg name="{name}" bitsize="{bits}" type="{typ}" regnum="{i}"{g}/>'

    flags = "\n".join(f'      <field name="{n}" start="{b}" end="{b}"/>'
                      for n, b in _EFLAGS_FIELDS)
    core = "\n".join(reg(i, s) for i, s in enumerate(CORE_REGS + X87_REGS))
    base = len(CORE_REGS) + len(X87_REGS)
    system = "\n".join(reg(base + i, s) for i, s in enumerate(SYSTEM_REGS))
    return ('<?xml version="1.0"?>\n<!DOCTYPE target SYSTEM "gdb-target.dtd">\n'
            '<target version="1.0">\n  <architecture>i386</architecture>\n'
            '  <feature name="org.gnu.gdb.i386.core">\n'
            f'    <flags id="i386_eflags" size="4">\n{flags}\n    </flags>\n{core}\n'
            '  </feature>\n  <feature name="org.l4emu.i386.system">\n'
            f'{system}\n  </feature>\n</target>\n')


def checksum(data: bytes) -> int:
    return sum(data) & 0xFF


def escape(data: bytes) -> bytes:
    out = bytearray()
    for b in data:
        if b in b"$#}*":
            out += bytes((0x7D, b ^ 0x20))
        else:
            out.append(b)
    return bytes(out)


def unescape(data: bytes) -> bytes:
    out = bytearray()
    it = iter(data)
    for b in it:
        if b == 0x7D:
            nxt = next(it, None)
            if nxt is None:
                break
            out.append(nxt ^ 0x20)
        else:
            out.append(b)
    return bytes(out)


def parse_listen(text: str) -> tuple[str, int]:
    """"[HOST:]PORT" -> (host, port); loopback unless a host is given; ValueError if bad."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host = ""
    host = host.strip("[]") or "127.0.0.1"
    try:
        p = int(port, 10)
    except ValueError:
        raise ValueError(f"bad gdb port '{text}': expected [HOST:]PORT") from None
    if not 0 <= p <= 65535:
        raise ValueError(f"bad gdb port '{text}': {p} is not a TCP port")
    return host, p


class Disconnected(Exception):
    """The client went away (EOF, reset)."""


@dataclass
class SessionEnd:
    """How a client session ended: 'detach', 'kill', 'disconnect' or 'exit' (guest powered off)."""

    how: str
    result: Optional[RunResult] = None


class GdbStub:
    """Serves one machine to gdb clients, one at a time."""

    def __init__(self, m: Machine, host: str = "127.0.0.1", port: int = 0,
                 log: Optional[Callable[[str], None]] = None,
                 monitor: Optional[Callable[[str], str]] = None,
                 max_insns: Optional[int] = None) -> None:
        self.m = m
        self.log = log or (lambda s: None)
        self.monitor = monitor
        self.max_insns = max_insns
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                                  socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host, port))
        except OSError as e:
            self.sock.close()
            raise OSError(f"cannot listen for gdb on {host}:{port}: {e.strerror}") from None
        self.sock.listen(1)
        self.host = host
        self.port = self.sock.getsockname()[1]
        self.client: Optional[socket.socket] = None
        self._buf = bytearray()
        self._interrupt = False
        self.last_stop = f"T{SIGTRAP:02x}thread:01;"
        self.finished: Optional[RunResult] = None     # the guest powered off or cannot go on
        self.xml = target_xml().encode()
        self.stop_flag = False                        # set by a signal handler: stop serving
        from .reverse import History
        self.history = History(m)                    # reverse-stepi / reverse-continue
        self.history.note()

    # -- connection ---------------------------------------------------------------------------
    def close(self) -> None:
        self._drop_client()
        self.sock.close()

    def _drop_client(self) -> None:
        if self.client is not None:
            try:
                self.client.close()
            except OSError:
                pass
        self.client = None
        self._buf.clear()

    def accept(self, timeout: Optional[float] = None) -> bool:
        """Wait for a client (at most `timeout` seconds; None: until one comes or stop_flag)."""
        waited = 0.0
        while not self.stop_flag:
            step = 0.2 if timeout is None else min(0.2, max(timeout - waited, 0))
            r, _, _ = select.select([self.sock], [], [], step)
            if r:
                conn, addr = self.sock.accept()
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.client = conn
                self._buf.clear()
                self.log(f"gdb: client connected from {addr[0]}:{addr[1]}")
                return True
            waited += step
            if timeout is not None and waited >= timeout:
                return False
        return False

    def _recv(self, timeout: Optional[float]) -> bytes:
        assert self.client is not None
        r, _, _ = select.select([self.client], [], [], timeout)
        if not r:
            return b""
        try:
            data = self.client.recv(65536)
        except (ConnectionError, OSError):
            raise Disconnected() from None
        if not data:
            raise Disconnected()
        return data

    def _send_raw(self, data: bytes) -> None:
        try:
            self.client.sendall(data)
        except (ConnectionError, OSError):
            raise Disconnected() from None

    def send(self, payload: str | bytes) -> None:
        data = payload.encode("latin-1") if isinstance(payload, str) else payload
        body = escape(data)
        self._send_raw(b"$" + body + b"#" + f"{checksum(body):02x}".encode())

    def _next_packet(self) -> Optional[bytes]:
        """Take one packet out of the buffer (acking it), or None if none is complete.
        Ctrl-C bytes set `_interrupt`; acks and garbage between packets are dropped."""
        buf = self._buf
        while buf:
            c = buf[0]
            if c == 0x03:
                self._interrupt = True
                del buf[0]
                continue
            if c != ord("$"):
                del buf[0]          # '+', '-', or noise
                continue
            end = buf.find(b"#")
            if end < 0:
                if len(buf) > 4 * PACKET_SIZE:
                    buf.clear()     # a runaway packet: drop it
                return None
            if len(buf) < end + 3:
                return None
            body = bytes(buf[1:end])
            sent = bytes(buf[end + 1:end + 3])
            del buf[:end + 3]
            try:
                ok = int(sent, 16) == checksum(body)
            except ValueError:
                ok = False
            if not ok:
                self._send_raw(b"-")
                continue
            self._send_raw(b"+")
            return unescape(body)
        return None

    # -- serving ------------------------------------------------------------------------------
    def serve_client(self) -> SessionEnd:
        """Handle one connected client until it detaches, kills, disconnects, or the guest
        powers off.  The guest is stopped whenever this returns (except after a detach)."""
        try:
            while not self.stop_flag:
                pkt = self._next_packet()
                if pkt is None:
                    self._buf += self._recv(0.2)
                    continue
                end = self._handle(pkt)
                if end is not None:
                    if end.how in ("detach", "kill", "exit"):
                        self._drop_client()
                    return end
            self._drop_client()
            return SessionEnd("disconnect")
        except Disconnected:
            self.log("gdb: client disconnected; the guest stays stopped")
            self._drop_client()
            return SessionEnd("disconnect")

    def _handle(self, pkt: bytes) -> Optional[SessionEnd]:
        try:
            text = pkt.decode("latin-1")
        except UnicodeDecodeError:
            self.send("")
            return None
        try:
            return self._dispatch(text, pkt)
        except Disconnected:
            raise
        except (ValueError, IndexError, KeyError):
            self.send("E01")      # malformed arguments
            return None
        except Exception as e:    # a bug here must not take the session down
            self.log(f"gdb: internal error on packet {text[:40]!r}: {type(e).__name__}: {e}")
            self.send("E03")
            return None

    def _dispatch(self, text: str, raw: bytes) -> Optional[SessionEnd]:
        m = self.m
        c = text[:1]
        if text == "?":
            self.send(self.last_stop)
        elif c == "g":
            self.send("".join(self._reg_hex(i) for i in range(len(ALL_REGS))))
        elif c == "G":
            self._write_all(text[1:])
        elif c == "p":
            n = int(text[1:], 16)
            self.send(self._reg_hex(n) if n < len(ALL_REGS) else "E01")
        elif c == "P":
            n, _, val = text[1:].partition("=")
            self.send(self._write_reg(int(n, 16), bytes.fromhex(val)))
        elif c == "m":
            addr, _, length = text[1:].partition(",")
            data = self._read_mem(int(addr, 16), min(int(length, 16), PACKET_SIZE // 2))
            self.send(data.hex() if data is not None else "E14")
        elif c == "M":
            head, _, hexdata = text[1:].partition(":")
            addr, _, length = head.partition(",")
            data = bytes.fromhex(hexdata)
            self.send(self._write_mem(int(addr, 16), data[:int(length, 16)]))
        elif c == "X":
            colon = raw.index(b":")
            addr, _, length = raw[1:colon].decode().partition(",")
            data = raw[colon + 1:colon + 1 + int(length, 16)]
            self.send(self._write_mem(int(addr, 16), data))
        elif c in "Zz":
            self.send(self._points(text))
        elif c in "cs" or (c in "CS" and text[1:3]):
            addr = text[1:] if c in "cs" else text[3:].lstrip(";")
            if addr:
                write_reg(m, "eip", int(addr, 16))
            return self._resume(single=c in "sS")
        elif text in ("bs", "bc"):
            self.send(self._reverse(step=text == "bs"))
        elif text.startswith("vCont?"):
            self.send("vCont;c;C;s;S")
        elif text.startswith("vCont;"):
            action = self._vcont_action(text[6:])
            if action is None:
                self.send("E01")
            else:
                return self._resume(single=action == "s")
        elif text.startswith("vKill"):
            self.send("OK")
            return SessionEnd("kill")
        elif c == "k":
            return SessionEnd("kill")
        elif c == "D":
            self.send("OK")
            return SessionEnd("detach")
        elif c == "H" or c == "T":
            self.send("OK")
        elif text.startswith("qSupported"):
            self.send(f"PacketSize={PACKET_SIZE:x};qXfer:features:read+;swbreak+;hwbreak+;"
                      "ReverseStep+;ReverseContinue+")
        elif text.startswith("qXfer:features:read:"):
            self.send(self._xfer(text[len("qXfer:features:read:"):]))
        elif text == "qAttached" or text.startswith("qAttached:"):
            self.send("1")
        elif text == "qC":
            self.send("QC1")
        elif text == "qfThreadInfo":
            self.send("m1")
        elif text == "qsThreadInfo":
            self.send("l")
        elif text.startswith("qThreadExtraInfo"):
            self.send(b"IA-32 CPU".hex())
        elif text.startswith("qSymbol"):
            self.send("OK")
        elif text.startswith("qRcmd,"):
            self._monitor(bytes.fromhex(text[6:]).decode(errors="replace"))
        else:
            self.send("")        # unsupported: the empty reply
        return None

    # -- registers ------------------------------------------------------------------------------
    def _reg_value(self, n: int) -> int:
        name, bits, _, _ = ALL_REGS[n]
        if name in _EMPTY_FPU:
            return _EMPTY_FPU[name]
        if bits == 80 or n >= len(CORE_REGS) and n < len(CORE_REGS) + len(X87_REGS):
            return 0
        v = read_reg(self.m, name)
        if v is not None:
            return v
        from ..cpu import SEG_GDT, SEG_IDT, SEG_LDT, SEG_TR
        env = self.m.cpu.env
        return {"gdtr_base": lambda: env.seg(SEG_GDT).base,
                "gdtr_limit": lambda: env.seg(SEG_GDT).limit,
                "idtr_base": lambda: env.seg(SEG_IDT).base,
                "idtr_limit": lambda: env.seg(SEG_IDT).limit,
                "tr": lambda: env.seg(SEG_TR).selector,
                "ldtr": lambda: env.seg(SEG_LDT).selector}[name]() & 0xFFFFFFFF

    def _reg_hex(self, n: int) -> str:
        bits = ALL_REGS[n][1]
        return self._reg_value(n).to_bytes(bits // 8, "little").hex()

    def _write_reg(self, n: int, data: bytes) -> str:
        if n >= len(ALL_REGS):
            return "E01"
        name, bits, _, _ = ALL_REGS[n]
        if len(data) != bits // 8:
            return "E01"
        if n >= len(CORE_REGS) and name not in _WRITABLE_SYSTEM:
            return "OK"          # x87 and descriptor-table registers: not writable here
        value = int.from_bytes(data, "little")
        if value == self._reg_value(n):
            return "OK"
        try:
            write_reg(self.m, name, value)
        except ValueError:
            return "E02"
        return "OK"

    def _write_all(self, hexdata: str) -> None:
        data = bytes.fromhex(hexdata)
        pos = 0
        for n, (name, bits, _, _) in enumerate(ALL_REGS):
            size = bits // 8
            if pos + size > len(data):
                break
            r = self._write_reg(n, data[pos:pos + size])
            if r != "OK":
                self.send(r)
                return
            pos += size
        self.send("OK")

    # -- memory ---------------------------------------------------------------------------------
    def _read_mem(self, addr: int, n: int) -> Optional[bytes]:
        try:
            return self.m.cpu.read_virt(addr & 0xFFFFFFFF, n)
        except (PageFault, BadPhysical):
            # Give what can be read up to the first bad page, as gdb accepts short reads.
            out = bytearray()
            va = addr
            while n > 0:
                chunk = min(n, 0x1000 - (va & 0xFFF))
                try:
                    out += self.m.cpu.read_virt(va & 0xFFFFFFFF, chunk)
                except (PageFault, BadPhysical):
                    break
                va, n = va + chunk, n - chunk
            return bytes(out) if out else None

    def _write_mem(self, addr: int, data: bytes) -> str:
        try:
            write_virt(self.m, addr, data)
        except (PageFault, BadPhysical):
            return "E14"
        return "OK"

    # -- breakpoints and watchpoints ----------------------------------------------------------
    def _points(self, text: str) -> str:
        insert = text[0] == "Z"
        kind, addr_s, length_s = text[1:].split(";")[0].split(",")[:3]
        addr, length = int(addr_s, 16), int(length_s, 16)
        m = self.m
        if kind in ("0", "1"):
            if insert:
                m.add_breakpoint(addr)
            else:
                m.remove_breakpoint(addr)
            return "OK"
        if kind in ("2", "3", "4"):
            wkind = {"2": "w", "3": "r", "4": "rw"}[kind]
            if insert:
                try:
                    m.add_watchpoint(addr, max(length, 1), wkind)
                except (PageFault, BadPhysical, ValueError):
                    return "E14"
            else:
                for wp in list(m.watchpoints):
                    if wp.addr == addr & 0xFFFFFFFF and wp.kind == wkind:
                        m.remove_watchpoint(wp)
                        break
            return "OK"
        return ""

    # -- running --------------------------------------------------------------------------------
    @staticmethod
    def _vcont_action(spec: str) -> Optional[str]:
        for part in spec.split(";"):
            action, _, tid = part.partition(":")
            if tid and tid not in ("1", "01", "-1", "p1.1", "p1.-1"):
                continue
            if action[:1] in ("c", "C"):
                return "c"
            if action[:1] in ("s", "S"):
                return "s"
        return None

    def _resume(self, single: bool) -> Optional[SessionEnd]:
        if self.finished is not None:
            self.send(self.last_stop)
            return None
        if single:
            r = step(self.m, 1)
        else:
            r = self.run_polling()
            if r is None:       # the client disconnected while the guest ran
                raise Disconnected()
        reply = self.stop_reply(r)
        self.last_stop = reply
        self.send(reply)
        if reply.startswith("W"):
            return SessionEnd("exit", r)
        return None

    def run_polling(self, poll_accept: bool = False) -> Optional[RunResult]:
        """Run in slices until the guest stops, polling the client for Ctrl-C (and, with
        `poll_accept` and no client, the listening socket for one).  Returns None if the
        client disconnected; a REQUESTED stop for Ctrl-C or a new client."""
        m = self.m
        self._interrupt = False
        while True:
            r = run_slice(m, self.max_insns)
            if r is not None:
                if not (r.reason is Stop.KDEBUG and self.client is None):
                    return r
                self.log(f"l4emu: {r.detail}; no debugger attached, continuing")
            if self.stop_flag:
                return RunResult(Stop.REQUESTED, m.clock.now, None, "interrupted")
            if self.client is not None:
                try:
                    self._buf += self._recv(0)
                except Disconnected:
                    self._drop_client()
                    return None
                if 0x03 in self._buf:
                    self._buf[:] = self._buf.replace(b"\x03", b"")
                    self._interrupt = True
                if self._interrupt:
                    self._interrupt = False
                    return RunResult(Stop.REQUESTED, m.clock.now, None, "interrupted by gdb")
            elif poll_accept and self.accept(timeout=0):
                return RunResult(Stop.REQUESTED, m.clock.now, None, "a gdb client attached")

    def _reverse(self, step: bool) -> str:
        """bs / bc: one instruction back, or back to the previous breakpoint or watchpoint
        hit, by replay from a checkpoint (emu/debug/reverse.py)."""
        m, h = self.m, self.history
        now = m.clock.now
        target = now - 1 if step else h.previous_stop(now, lambda: True)
        if target is None or target < h.start:
            h.goto(h.start)
            self.finished = None
            reply = f"T{SIGTRAP:02x}thread:01;replaylog:begin;"
        else:
            h.goto(target)
            self.finished = None
            regs = "".join(f"{n:02x}:{self._reg_hex(n)};" for n in (4, 5, 8))
            extra = "swbreak:;" if not step and m.cpu.eip in m.breakpoints else ""
            reply = f"T{SIGTRAP:02x}thread:01;{regs}{extra}"
        self.last_stop = reply
        return reply

    def stop_reply(self, r: RunResult) -> str:
        m = self.m
        self.history.note()
        if r.reason is Stop.EXIT:
            self.finished = r
            return f"W{_process_status(r) & 0xFF:02x}"
        regs = "".join(f"{n:02x}:{self._reg_hex(n)};" for n in (4, 5, 8))
        sig, extra = SIGTRAP, ""
        if r.reason is Stop.BREAKPOINT:
            extra = "swbreak:;"
        elif r.reason is Stop.WATCHPOINT and m.last_watch is not None:
            hit = m.last_watch
            wp = hit.watchpoint
            kind = {"w": "watch", "r": "rwatch", "rw": "awatch"}[wp.kind]
            addr = max(hit.addr, wp.addr)
            extra = f"{kind}:{addr:x};"
        elif r.reason is Stop.REQUESTED:
            sig = SIGINT
        elif r.reason in (Stop.TRIPLE_FAULT, Stop.ENGINE_ERROR, Stop.RESET):
            sig = SIGSEGV
            self._console(f"l4emu: {r.reason.value}: {r.detail}\n")
        elif r.reason is Stop.HOST_ERROR:
            sig = SIGABRT
            self._console(f"l4emu: {r.detail}\n")
        elif r.reason in (Stop.HALTED, Stop.MAX_INSNS, Stop.KDEBUG):
            self._console(f"l4emu: {r.detail}\n")
        return f"T{sig:02x}thread:01;{regs}{extra}"

    def _console(self, text: str) -> None:
        """Text for gdb's console (an O packet, valid while the target runs)."""
        if self.client is not None:
            try:
                self.send("O" + text.encode().hex())
            except Disconnected:
                pass

    def _monitor(self, cmd: str) -> None:
        if self.monitor is None:
            self.send("")
            return
        out = self.monitor(cmd)
        for i in range(0, len(out), 1024):
            self.send("O" + out[i:i + 1024].encode().hex())
        self.send("OK")

    def _xfer(self, args: str) -> str:
        annex, _, rng = args.partition(":")
        if annex != "target.xml":
            return "E00"
        off_s, _, len_s = rng.partition(",")
        off, length = int(off_s, 16), int(len_s, 16)
        chunk = self.xml[off:off + length]
        return ("l" if off + length >= len(self.xml) else "m") + chunk.decode()


def step(m: Machine, n: int = 1, stop_at: Callable[[], bool] = lambda: False) -> RunResult:
    """Execute up to `n` instructions, one at a time so that `stop_at()` (checked after each
    but the last) can end the steps early."""
    r = RunResult(Stop.STEPPED, m.clock.now, None, "stepped 0")
    for i in range(n):
        r = m.step(1)
        if r.reason is not Stop.STEPPED:
            return r
        if i + 1 < n and stop_at():
            break
    return RunResult(Stop.STEPPED, m.clock.now, None, r.detail)


def write_virt(m: Machine, va: int, data: bytes) -> None:
    """Debugger write at linear `va` through the current page tables (ignoring write
    protection, as a debugger does); translations are dropped since code may change."""
    pos = 0
    pieces = []
    while pos < len(data):
        a = (va + pos) & 0xFFFFFFFF
        chunk = min(len(data) - pos, 0x1000 - (a & 0xFFF))
        pieces.append((m.cpu.translate(a), data[pos:pos + chunk]))
        pos += chunk
    for pa, part in pieces:           # all translated first: a bad page writes nothing
        m.ram.write(pa, part)
    if data:
        m.cpu.code_changed()


def _process_status(r: RunResult) -> int:
    return (r.exit_status or 0) & 0xFF


def serve_boot(m: Machine, listen: str, wait: bool, max_insns: Optional[int],
               log: Callable[[str], None], monitor: Optional[Callable[[str], str]] = None,
               announce: Optional[Callable[[int], None]] = None) -> RunResult:
    """`l4emu boot --gdb`: run the guest under the stub until it ends, and return how.

    With `wait` the guest stays stopped before its first instruction until a client attaches;
    without it, the guest runs and a client may attach at any time (the guest stops there).
    """
    host, port = parse_listen(listen)
    stub = GdbStub(m, host, port, log=log, monitor=monitor, max_insns=max_insns)
    import signal
    previous = signal.signal(signal.SIGINT, lambda *_: setattr(stub, "stop_flag", True))
    log(f"l4emu: gdb stub listening on {stub.host}:{stub.port}"
        + (" (waiting for gdb before the first instruction)" if wait else ""))
    if announce is not None:
        announce(stub.port)
    def interrupted() -> RunResult:
        return RunResult(Stop.REQUESTED, m.clock.now, None, "interrupted")

    try:
        if wait and not stub.accept():
            return interrupted()
        while True:
            if stub.client is None:
                # Nobody attached: the guest runs until it ends or a client attaches.
                r = stub.run_polling(poll_accept=True)
                if stub.stop_flag:
                    return interrupted()
                if stub.client is None:
                    return r
                stub.last_stop = f"T{SIGINT:02x}thread:01;"
            end = stub.serve_client()
            if stub.stop_flag:
                return interrupted()
            if end.how == "exit":
                return end.result
            if end.how == "kill":
                log("l4emu: gdb killed the run")
                return RunResult(Stop.REQUESTED, m.clock.now, None, "killed by gdb")
            if end.how == "detach":
                log("l4emu: gdb detached; the guest runs to completion")
                return _run_to_end(m, max_insns, log)
            # A disconnect: the guest stays stopped until the next client.
            if not stub.accept():
                return interrupted()
    finally:
        signal.signal(signal.SIGINT, previous)
        stub.close()


def _run_to_end(m: Machine, max_insns: Optional[int], log) -> RunResult:
    for wp in list(m.watchpoints):
        m.remove_watchpoint(wp)
    for addr in list(m.breakpoints):
        m.remove_breakpoint(addr)
    while True:
        left = None if max_insns is None else max_insns - m.clock.now
        if left is not None and left <= 0:
            return RunResult(Stop.MAX_INSNS, m.clock.now, None,
                             f"reached the limit of {max_insns} instructions")
        r = m.run(max_insns=left)
        if r.reason is not Stop.KDEBUG:
            return r
        log(f"l4emu: {r.detail}; no debugger attached, continuing")
