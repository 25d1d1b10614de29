"""The `l4emu debug` shell: a Bochs/gdb-style debugger on the Machine API (DESIGN D10).

    l4emu debug KERNEL|IMAGE.toml [boot options] [--commands FILE] [--l4-layout FILE]

The machine is built exactly as `l4emu boot` builds it and stops before the first instruction.
On a terminal the shell reads lines with prompt_toolkit (history, completion of commands,
registers and symbols); `--commands FILE` and piped input are read line by line, each echoed
after the prompt so a transcript reads like a session.  `help` lists the commands; `help CMD`
explains one.

Rules every command keeps: a command never raises out of `Debugger.execute` (a bad address,
expression or argument prints one line), and only the commands meant to change the guest
(`c s n finish set asm` and, through the machine, breakpoints and watchpoints, which do not
touch guest memory) change it.  Views read guest memory through the page tables without
setting accessed or dirty bits.
"""
from __future__ import annotations

import contextlib
import difflib
import os
import shlex
import signal
import sys
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import capstone

from ..errors import UserError
from ..machine import Machine, RunResult, Stop
from ..memory import BadPhysical, PageFault
from . import views
from .expr import Context, ExprError, evaluate
from .gdbstub import run_slice, step, write_virt
from .l4view import L4View, LayoutError, TraceFormatter, TracePoint, find_layout
from .reverse import History
from .symbols import SymbolTable

PROMPT = "(l4emu) "
_TERMINAL = (Stop.EXIT, Stop.TRIPLE_FAULT, Stop.HOST_ERROR, Stop.RESET)


class CommandError(Exception):
    """A command's arguments are wrong or it cannot do what was asked (one line)."""


@dataclass
class Point:
    """A numbered breakpoint or watchpoint as the user sees it."""

    number: int
    kind: str                    # "break" or "watch"
    addr: int
    temporary: bool = False
    cond: Optional[str] = None
    hits: int = 0
    length: int = 0
    access: str = ""             # watchpoints: r, w, rw
    watch: object = None         # the machine's Watchpoint


def _why(e: Exception) -> str:
    if isinstance(e, PageFault):
        return "not mapped (page fault)"
    if isinstance(e, BadPhysical):
        return "outside RAM"
    return str(e)


class Debugger:
    """The shell's state and commands over one machine.  `execute(line)` runs one command."""

    def __init__(self, m: Machine, symbols: Optional[SymbolTable] = None,
                 write: Optional[Callable[[str], None]] = None, l4: Optional[L4View] = None,
                 interactive: bool = False, max_insns: Optional[int] = None) -> None:
        self.m = m
        self.max_insns = max_insns
        self.symbols = symbols or SymbolTable()
        self._write = write or (lambda s: (sys.stdout.write(s), sys.stdout.flush()))
        self.l4 = l4 or L4View(m, self.symbols)
        self.interactive = interactive
        self.points: dict[int, Point] = {}
        self._next_point = 1
        self.trace: set[str] = set()
        #: `trace ipc|ctx` points entered with `at = "return"`: (point, return address, ESP
        #: after the return) until execution gets back there.
        self._trace_pending: list[tuple[TracePoint, int, int]] = []
        #: Machine breakpoints the trace points added for the current run.
        self._trace_bps: set[int] = set()
        self._in_run = False
        self.finished: Optional[RunResult] = None
        self.quit = False
        self._x_state = ("x", "w", None)
        self._source_depth = 0
        self._dis = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_32)
        self.ctx = Context(reg=lambda n: views.read_reg(m, n), symbol=self.symbols.address,
                           read=lambda a, n: m.cpu.read_virt(a, n))
        self.commands = self._command_table()
        self.history = History(m)
        self.history.note()

    # -- output ---------------------------------------------------------------------------------
    def out(self, text: str = "") -> None:
        self._write(text + "\n")

    def capture(self, line: str) -> str:
        """Run one command and return what it printed (the gdb stub's `monitor`)."""
        saved, buf = self._write, []
        self._write = buf.append
        try:
            word = line.split()[0] if line.split() else ""
            if self._resolve(word) in ("continue", "step", "next", "finish", "gdb", "quit",
                                       "source"):
                self.out(f"'{word}' cannot run inside gdb's monitor command")
            else:
                self.execute(line)
        finally:
            self._write = saved
        return "".join(buf)

    # -- the command table ------------------------------------------------------------------
    def _command_table(self) -> dict[str, tuple]:
        return {
            "continue": (self.cmd_continue, "c", "run until a breakpoint, watchpoint or the "
                         "end (Ctrl-C stops)"),
            "step": (self.cmd_step, "s [N]", "execute N instructions (default 1), into calls"),
            "next": (self.cmd_next, "n", "one instruction, stepping over call and int"),
            "finish": (self.cmd_finish, "finish", "run until the current function returns"),
            "rstep": (self.cmd_rstep, "rs [N]", "step back N instructions (default 1)"),
            "rcontinue": (self.cmd_rcontinue, "rc", "run backwards to the previous "
                          "breakpoint or watchpoint hit"),
            "break": (self.cmd_break, "b ADDR|SYMBOL [if EXPR]", "set a breakpoint"),
            "tbreak": (self.cmd_tbreak, "tb ADDR|SYMBOL [if EXPR]", "a one-time breakpoint"),
            "delete": (self.cmd_delete, "d N|all", "delete breakpoint or watchpoint N"),
            "blist": (self.cmd_blist, "bl", "list breakpoints and watchpoints"),
            "watch": (self.cmd_watch, "watch r|w|rw ADDR [LEN]", "stop on a read, write or "
                      "either of LEN bytes (default 4)"),
            "registers": (self.cmd_regs, "r", "general registers and flags"),
            "sreg": (self.cmd_sreg, "sreg", "segment registers, GDTR, IDTR, TR, LDTR"),
            "creg": (self.cmd_creg, "creg", "control registers"),
            "x": (self.cmd_x, "x/NFU ADDR", "examine virtual memory: F in x d u c s i, "
                  "U in b h w"),
            "xp": (self.cmd_xp, "xp/NFU ADDR", "examine physical memory"),
            "disassemble": (self.cmd_u, "u [ADDR] [N]", "disassemble N instructions "
                            "(default: 10 at EIP)"),
            "backtrace": (self.cmd_bt, "bt", "call stack by the frame-pointer chain"),
            "info": (self.cmd_info, "info WHAT", "tasks threads | tcb ID | space ID | "
                     "mappings ID [VA] | irq | devices | pt [VA [PD]] | breakpoints | symbol ADDR "
                     "| traps"),
            "trace": (self.cmd_trace, "trace on|off [trap|io|ipc|ctx]", "print events as the "
                      "guest runs"),
            "count": (self.cmd_count, "count", "instructions retired and events counted"),
            "set": (self.cmd_set, "set REG=VALUE | set [ADDR]=VALUE", "change a register or a "
                    "dword of memory"),
            "asm": (self.cmd_asm, "asm ADDR 'insn; insn'", "assemble into guest memory"),
            "print": (self.cmd_print, "p EXPR", "evaluate an expression"),
            "source": (self.cmd_source, "source FILE", "run the commands in FILE"),
            "gdb": (self.cmd_gdb, "gdb [HOST:]PORT", "serve one gdb client here, then return"),
            "help": (self.cmd_help, "help [CMD]", "list the commands, or explain one"),
            "quit": (self.cmd_quit, "q", "leave the debugger"),
        }

    ALIASES = {"c": "continue", "cont": "continue", "s": "step", "si": "step", "stepi": "step",
               "n": "next", "ni": "next", "nexti": "next", "b": "break", "tb": "tbreak",
               "d": "delete", "del": "delete", "bl": "blist", "r": "registers", "regs": "registers",
               "u": "disassemble", "disasm": "disassemble", "bt": "backtrace", "where": "backtrace",
               "p": "print", "h": "help", "?": "help", "q": "quit", "exit": "quit",
               "i": "info", "rs": "rstep", "rsi": "rstep", "rc": "rcontinue"}

    def _resolve(self, word: str) -> Optional[str]:
        if word.startswith("x/"):
            return "x"
        if word.startswith("xp/"):
            return "xp"
        if word in self.commands:
            return word
        return self.ALIASES.get(word)

    def command_names(self) -> list[str]:
        return sorted(set(self.commands) | set(self.ALIASES))

    # -- executing ------------------------------------------------------------------------------
    def execute(self, line: str) -> None:
        """Run one command line; never raises (errors print one line)."""
        line = line.strip()
        if not line or line.startswith("#"):
            return
        word, _, rest = line.partition(" ")
        name = self._resolve(word)
        if word.startswith(("x/", "xp/")):
            rest = word[word.index("/"):] + " " + rest
        if name is None:
            close = difflib.get_close_matches(word, self.command_names(), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else " (type 'help')"
            self.out(f"unknown command '{word}'{hint}")
            return
        try:
            self.commands[name][0](rest.strip())
        except (CommandError, ExprError) as e:
            self.out(str(e))
        except KeyboardInterrupt:
            self.out("interrupted")
        except Exception as e:   # a bug here must not end the session
            self.out(f"internal error in '{word}': {type(e).__name__}: {e}")

    def eval(self, text: str) -> int:
        if not text.strip():
            raise CommandError("an address or expression is needed")
        return evaluate(text, self.ctx)

    # -- locations ------------------------------------------------------------------------------
    def name(self, addr: int) -> str:
        d = self.symbols.describe(addr)
        return f" <{d}>" if d else ""

    def insn_at(self, addr: int):
        try:
            code = self.m.cpu.read_virt(addr, 16)
        except (PageFault, BadPhysical):
            try:
                code = self.m.cpu.read_virt(addr, 0x1000 - (addr & 0xFFF))
            except (PageFault, BadPhysical):
                return None
        return next(self._dis.disasm(code, addr, 1), None)

    def format_insn(self, insn) -> str:
        text = f"{insn.mnemonic} {insn.op_str}".rstrip()
        if insn.mnemonic.startswith(("call", "j", "loop")) and insn.op_str.startswith("0x"):
            try:
                text += self.name(int(insn.op_str, 16))
            except ValueError:
                pass
        return text

    def where(self, addr: Optional[int] = None) -> str:
        addr = self.m.cpu.eip if addr is None else addr
        insn = self.insn_at(addr)
        code = self.format_insn(insn) if insn else "<not mapped>"
        line = self.symbols.line(addr)
        return f"=> {addr:#010x}{self.name(addr)}: {code}" + (f"   [{line}]" if line else "")

    # -- running --------------------------------------------------------------------------------
    def _require_runnable(self) -> None:
        r = self.finished
        if r is not None:
            if r.reason is Stop.EXIT:
                raise CommandError(f"the guest has powered off (exit status "
                                   f"{(r.exit_status or 0) & 0xFF}); nothing more to run")
            raise CommandError(f"the machine cannot go on ({r.reason.value}: {r.detail})")

    @contextlib.contextmanager
    def _sigint(self):
        """Ctrl-C while the guest runs stops it at the next block."""
        try:
            prev = signal.signal(signal.SIGINT, lambda *_: self.m.request_stop(
                Stop.REQUESTED, "interrupted (Ctrl-C)"))
        except ValueError:          # not the main thread: no handler
            yield
            return
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, prev)

    @contextlib.contextmanager
    def _tracing(self):
        cpu = self.m.cpu
        old_trap, old_io = cpu.on_trap, cpu.on_io
        if "trap" in self.trace:
            cpu.on_trap = self._trace_trap
        if "io" in self.trace:
            cpu.on_io = self._trace_io
        try:
            yield
        finally:
            cpu.on_trap, cpu.on_io = old_trap, old_io

    def _trace_trap(self, rec) -> None:
        self.out(f"[{self.m.cpu.exact_total()}] trap {rec.describe()}{self.name(rec.eip)}")

    def _trace_io(self, kind: str, addr: int, size: int, value: int) -> None:
        arrow = "->" if kind in ("in", "mmio-r") else "<-"
        where = f"port {addr:#06x}" if kind in ("in", "out") else f"mmio {addr:#010x}"
        dev = self.m.ports.device_at(addr) if kind in ("in", "out") else self.m.mmio.find(addr)
        self.out(f"[{self.m.cpu.exact_total()}] {kind:6} {where} {arrow} {value:#0{2 + 2 * size}x}"
                 f" ({dev.name if dev else 'no device'}) eip={self.m.cpu.eip:#010x}")

    def _run(self, target: Optional[int] = None,
             done: Optional[Callable[[], bool]] = None) -> tuple[RunResult, Optional[Point]]:
        """Run until a stop the user should see.  `target` is an internal breakpoint (next,
        finish) that ends the run when `done()` says so.  Returns the result and the user's
        point that stopped it, if any."""
        m = self.m
        added = target is not None and target not in m.breakpoints
        if added:
            m.add_breakpoint(target)
        points = self._trace_points()
        self._in_run = True
        try:
            for addr in list(points) + [ret for _, ret, _ in self._trace_pending]:
                self._trace_bp(addr)
            with self._sigint(), self._tracing():
                while True:
                    r = self._slice()
                    if r is None:
                        continue
                    if r.reason is Stop.BREAKPOINT:
                        eip = m.cpu.eip
                        self._trace_at(eip, points)
                        hit = self._breakpoint_hit(eip)
                        if hit is not None:
                            return r, hit
                        if eip == target and (done is None or done()):
                            return r, None
                        continue
                    if r.reason is Stop.WATCHPOINT:
                        wp = m.last_watch.watchpoint if m.last_watch else None
                        p = next((p for p in self.points.values() if p.watch is wp), None)
                        if p is not None:
                            p.hits += 1
                        return r, p
                    return r, None
        finally:
            self._in_run = False
            user = {p.addr for p in self.points.values() if p.kind == "break"}
            if added and target not in user:
                m.remove_breakpoint(target)
            for addr in self._trace_bps - user:
                m.remove_breakpoint(addr)
            self._trace_bps.clear()

    # -- trace ipc / ctx: the kernel's trace points ---------------------------------------------
    def _trace_points(self) -> dict[int, list[TracePoint]]:
        """Address -> the points of the traced kinds there (ipc before ctx)."""
        out: dict[int, list[TracePoint]] = {}
        if not self.l4.available or self.symbols.kernel is None:
            return out
        for kind in ("ipc", "ctx"):
            if kind not in self.trace:
                continue
            for p in self.l4.layout.trace.get(kind, []):
                a = self.symbols.kernel.by_name.get(p.symbol)
                if a is not None:
                    out.setdefault((a + p.offset) & 0xFFFFFFFF, []).append(p)
        return out

    def _trace_bp(self, addr: int) -> None:
        if self._in_run and addr not in self.m.breakpoints:
            self.m.add_breakpoint(addr)
            self._trace_bps.add(addr)

    def _trace_at(self, eip: int, points: dict[int, list[TracePoint]]) -> None:
        """Execution is about to run the instruction at `eip`: print the lines of the trace
        points there (and of the functions with `at = "return"` that return here)."""
        if not points and not self._trace_pending:
            return
        esp = views.read_reg(self.m, "esp")
        for item in list(self._trace_pending):
            p, ret, sp = item
            if ret == eip and sp == esp:
                self._trace_pending.remove(item)
                self._trace_line(p)
        for p in points.get(eip, ()):
            if p.at == "return":
                try:
                    ret = self._dword(esp)
                except (PageFault, BadPhysical) as e:
                    self.out(f"[{self.m.cpu.exact_total()}] {p.kind} at {p.symbol}: cannot "
                             f"read the return address: {_why(e)}")
                    continue
                self._trace_pending.append((p, ret, (esp + 4) & 0xFFFFFFFF))
                del self._trace_pending[:-64]      # a routine that never returned: forget it
                self._trace_bp(ret)
            else:
                self._trace_line(p)

    def _trace_line(self, p: TracePoint) -> None:
        where = f"{self.m.cpu.exact_total()}"
        try:
            text = TraceFormatter(self.l4, lambda e: evaluate(e, self.ctx)).line(p)
        except (ExprError, PageFault, BadPhysical) as e:
            text = f"{p.kind} at {p.symbol}: {_why(e)}"
        self.out(f"[{where}] {text}")

    def _slice(self) -> Optional[RunResult]:
        """Run one slice; None if it ended only because the slice did.  Slices are short so
        that Ctrl-C (handled by Python between them) stops the guest promptly."""
        return run_slice(self.m, self.max_insns)

    def _breakpoint_hit(self, eip: int) -> Optional[Point]:
        for p in sorted(self.points.values(), key=lambda p: p.number):
            if p.kind != "break" or p.addr != eip:
                continue
            if p.cond:
                try:
                    if not evaluate(p.cond, self.ctx):
                        continue
                except ExprError as e:
                    self.out(f"breakpoint {p.number}: condition '{p.cond}' failed: {e}; "
                             "stopping")
            p.hits += 1
            if p.temporary:
                self._delete(p.number)
            return p
        return None

    def report(self, r: RunResult, point: Optional[Point] = None) -> None:
        m = self.m
        self.history.note()
        if r.reason in _TERMINAL:
            self.finished = r
        if r.reason is Stop.EXIT:
            st = (r.exit_status or 0) & 0xFF
            self.out(f"the guest powered off after {r.insns} instructions: exit status {st} "
                     f"(isa-debug-exit value {st >> 1:#x})")
            return
        if r.reason is Stop.BREAKPOINT:
            if point is not None:
                kind = "temporary breakpoint" if point.temporary else "breakpoint"
                self.out(f"{kind} {point.number}, {m.cpu.eip:#010x}{self.name(m.cpu.eip)}")
        elif r.reason is Stop.WATCHPOINT and m.last_watch is not None:
            w = m.last_watch
            what = "read" if w.access == "r" else f"write of {w.value:#x}"
            label = f"watchpoint {point.number}" if point else "watchpoint"
            self.out(f"{label}: {what} at {w.addr:#010x}{self.name(w.addr)} (size {w.size}), "
                     "stopped after the instruction")
        elif r.reason is Stop.STEPPED:
            pass
        elif r.reason in (Stop.TRIPLE_FAULT, Stop.ENGINE_ERROR, Stop.HOST_ERROR, Stop.RESET):
            self.out(f"the machine stopped: {r.reason.value}: {r.detail}")
            self.out(m.report())
            return
        else:
            self.out(f"stopped: {r.detail or r.reason.value}")
        self.out(self.where())

    # -- commands: running ---------------------------------------------------------------------
    def cmd_continue(self, args: str) -> None:
        self._require_runnable()
        r, p = self._run()
        self.report(r, p)

    def _count_arg(self, args: str, default: int = 1) -> int:
        if not args:
            return default
        n = self.eval(args)
        if n == 0 or n & 0x80000000:
            raise CommandError(f"'{args}' must be a positive count")
        return n

    def cmd_step(self, args: str) -> None:
        self._require_runnable()
        n = self._count_arg(args)
        m = self.m
        bps = {p.addr for p in self.points.values() if p.kind == "break"}
        hit = []
        points = self._trace_points()

        def at_breakpoint() -> bool:
            self._trace_at(m.cpu.eip, points)
            # Stepping N stops early at a breakpoint whose condition holds, as gdb's does.
            if m.cpu.eip in bps:
                p = self._breakpoint_hit(m.cpu.eip)
                if p is not None:
                    hit.append(p)
                    return True
            return False

        with self._sigint(), self._tracing():
            r = step(m, n, at_breakpoint)
            if not hit and r.reason is Stop.STEPPED:
                self._trace_at(m.cpu.eip, points)      # step() checks all but the last
        if hit:
            r = RunResult(Stop.BREAKPOINT, r.insns, None, r.detail)
        self.report(r, hit[0] if hit else None)

    def cmd_next(self, args: str) -> None:
        self._require_runnable()
        m = self.m
        insn = self.insn_at(m.cpu.eip)
        if insn is None or not (insn.mnemonic.startswith("call") or
                                insn.mnemonic in ("int", "int3", "into", "int1")):
            self.cmd_step("")
            return
        esp, cr3 = views.read_reg(m, "esp"), views.read_reg(m, "cr3")
        target = insn.address + insn.size
        r, p = self._run(target, lambda: views.read_reg(m, "esp") >= esp and
                         views.read_reg(m, "cr3") == cr3)
        self.report(r, p)

    def _return_address(self) -> tuple[int, int]:
        """(return address, ESP after the return) for the simple frames `finish` handles."""
        m = self.m
        eip, esp, ebp = (views.read_reg(m, n) for n in ("eip", "esp", "ebp"))
        insn = self.insn_at(eip)
        loc = self.symbols.lookup(eip)
        try:
            if (loc is not None and loc.offset == 0) or \
                    (insn is not None and insn.mnemonic in ("ret", "push") and
                     (insn.mnemonic == "ret" or insn.op_str == "ebp")):
                return self._dword(esp), esp + 4
            if loc is not None and loc.offset == 1 and \
                    m.cpu.read_virt(eip - 1, 1) == b"\x55":          # just after push ebp
                return self._dword(esp + 4), esp + 8
            if not ebp:
                raise CommandError("no frame pointer (ebp=0): cannot find the return address")
            return self._dword(ebp + 4), ebp + 8
        except (PageFault, BadPhysical) as e:
            raise CommandError(f"cannot read the stack: {_why(e)}") from None

    def _dword(self, addr: int) -> int:
        return int.from_bytes(self.m.cpu.read_virt(addr & 0xFFFFFFFF, 4), "little")

    def cmd_finish(self, args: str) -> None:
        self._require_runnable()
        m = self.m
        ret, sp_after = self._return_address()
        cr3 = views.read_reg(m, "cr3")
        self.out(f"run till exit to {ret:#010x}{self.name(ret)}")
        r, p = self._run(ret, lambda: views.read_reg(m, "esp") >= sp_after and
                         views.read_reg(m, "cr3") == cr3)
        self.report(r, p)
        if r.reason is Stop.BREAKPOINT and p is None:
            self.out(f"value returned: eax={views.read_reg(m, 'eax'):#x}")

    # -- commands: breakpoints ------------------------------------------------------------------
    def _add_point(self, p: Point) -> Point:
        p.number = self._next_point
        self._next_point += 1
        self.points[p.number] = p
        return p

    def _set_break(self, args: str, temporary: bool) -> None:
        if not args:
            raise CommandError("usage: b ADDR|SYMBOL [if EXPR]")
        spec, cond = args, None
        if " if " in f" {args} ":
            head, _, cond = f" {args} ".partition(" if ")
            spec, cond = head.strip(), cond.strip()
            if not cond:
                raise CommandError("'if' needs a condition")
            evaluate_check(cond)
        addr = self.eval(spec)
        self.m.add_breakpoint(addr)
        p = self._add_point(Point(0, "break", addr, temporary, cond))
        kind = "temporary breakpoint" if temporary else "breakpoint"
        line = self.symbols.line(addr)
        self.out(f"{kind} {p.number} at {addr:#010x}{self.name(addr)}"
                 + (f" [{line}]" if line else "") + (f" if {cond}" if cond else ""))

    def cmd_break(self, args: str) -> None:
        self._set_break(args, False)

    def cmd_tbreak(self, args: str) -> None:
        self._set_break(args, True)

    def _delete(self, number: int) -> None:
        p = self.points.pop(number)
        if p.kind == "break":
            if not any(q.kind == "break" and q.addr == p.addr for q in self.points.values()):
                self.m.remove_breakpoint(p.addr)
        else:
            self.m.remove_watchpoint(p.watch)

    def cmd_delete(self, args: str) -> None:
        if args in ("", "all"):
            if not args and self.points:
                raise CommandError("say 'd all' to delete every breakpoint and watchpoint")
            for n in list(self.points):
                self._delete(n)
            self.out("deleted every breakpoint and watchpoint")
            return
        for word in args.split():
            try:
                n = int(word, 0)
            except ValueError:
                raise CommandError(f"'{word}' is not a breakpoint number") from None
            if n not in self.points:
                raise CommandError(f"no breakpoint or watchpoint {n}")
            self._delete(n)
            self.out(f"deleted {n}")

    def cmd_blist(self, args: str) -> None:
        if not self.points:
            self.out("no breakpoints or watchpoints")
            return
        self.out("num  type        address     hits  what")
        for p in sorted(self.points.values(), key=lambda p: p.number):
            if p.kind == "break":
                t = "tbreak" if p.temporary else "break"
                what = self.symbols.describe(p.addr) + (f" if {p.cond}" if p.cond else "")
            else:
                t = f"watch {p.access}"
                what = f"{p.length} bytes" + (f" ({self.symbols.describe(p.addr)})"
                                              if self.symbols.describe(p.addr) else "")
            self.out(f"{p.number:<4} {t:<11} {p.addr:#010x}  {p.hits:<5} {what}")

    def cmd_watch(self, args: str) -> None:
        parts = args.split()
        if len(parts) < 2 or parts[0] not in ("r", "w", "rw"):
            raise CommandError("usage: watch r|w|rw ADDR [LEN]")
        access = parts[0]
        rest = parts[1:]
        length = 4
        if len(rest) > 1:
            length = self.eval(rest[-1])
            rest = rest[:-1]
        if not 1 <= length <= 0x100000:
            raise CommandError(f"watch length {length} is out of range (1..1 MiB)")
        addr = self.eval(" ".join(rest))
        try:
            wp = self.m.add_watchpoint(addr, length, access)
        except (PageFault, BadPhysical) as e:
            raise CommandError(f"cannot watch {addr:#010x}: {_why(e)}") from None
        p = self._add_point(Point(0, "watch", addr, length=length, access=access, watch=wp))
        self.out(f"watchpoint {p.number}: {access} {length} bytes at {addr:#010x}"
                 f"{self.name(addr)}")

    # -- commands: registers and memory ---------------------------------------------------------
    def cmd_regs(self, args: str) -> None:
        for line in views.registers(self.m):
            self.out(line)
        self.out(self.where())

    def cmd_sreg(self, args: str) -> None:
        for line in views.segment_registers(self.m):
            self.out(line)

    def cmd_creg(self, args: str) -> None:
        for line in views.control_registers(self.m):
            self.out(line)

    def _parse_x(self, args: str) -> tuple[int, str, str, str]:
        fmt, size, last = self._x_state
        count = 1
        if args.startswith("/"):
            spec, _, args = args[1:].partition(" ")
            digits = ""
            while spec and spec[0].isdigit():
                digits, spec = digits + spec[0], spec[1:]
            if digits:
                count = int(digits)
            for ch in spec:
                if ch in "xducsi":
                    fmt = ch
                elif ch in "bhw":
                    size = ch
                else:
                    raise CommandError(f"bad format letter '{ch}': formats x d u c s i, "
                                       "sizes b h w")
            if count <= 0 or count > 4096:
                raise CommandError("count must be 1..4096")
        args = args.strip()
        if not args:
            if last is None:
                raise CommandError("an address is needed")
            return count, fmt, size, last
        return count, fmt, size, args

    def cmd_x(self, args: str) -> None:
        self._examine(args, physical=False)

    def cmd_xp(self, args: str) -> None:
        self._examine(args, physical=True)

    def _examine(self, args: str, physical: bool) -> None:
        count, fmt, size, where = self._parse_x(args)
        addr = where if isinstance(where, int) else self.eval(where)
        m = self.m

        def read(a: int, n: int) -> bytes:
            try:
                return m.ram.read(a, n) if physical else m.cpu.read_virt(a & 0xFFFFFFFF, n)
            except (PageFault, BadPhysical) as e:
                kind = "physical" if physical else "virtual"
                raise CommandError(f"cannot read {n} bytes at {kind} {a:#010x}: "
                                   f"{_why(e)}") from None

        label = (lambda a: "") if physical else self.name
        if fmt == "i":
            code = read(addr, min(16 * count, 0x1000 - (addr & 0xFFF)) if not physical
                        else 16 * count)
            n = 0
            for insn in self._dis.disasm(code, addr):
                mark = "=>" if not physical and insn.address == m.cpu.eip else "  "
                self.out(f"{mark} {insn.address:#010x}{label(insn.address)}: "
                         f"{self.format_insn(insn)}")
                n += 1
                if n >= count:
                    break
            nxt = insn.address + insn.size if n else addr
            self._x_state = (fmt, size, nxt)
            return
        if fmt == "s":
            a = addr
            for _ in range(count):
                data = bytearray()
                while len(data) < 1024:
                    b = read(a + len(data), 1)
                    if b == b"\0":
                        break
                    data += b
                self.out(f"{a:#010x}{label(a)}: \"{_escape(bytes(data))}\"")
                a += len(data) + 1
            self._x_state = (fmt, size, a)
            return
        width = 1 if fmt == "c" else {"b": 1, "h": 2, "w": 4}[size]
        per_line = {1: 8, 2: 8, 4: 4}[width]
        data = read(addr, width * count)
        for i in range(0, count, per_line):
            a = addr + i * width
            items = []
            for j in range(i, min(count, i + per_line)):
                v = int.from_bytes(data[j * width:(j + 1) * width], "little")
                items.append(_fmt_item(v, fmt, width))
            self.out(f"{a:#010x}{label(a)}:\t" + "\t".join(items))
        self._x_state = (fmt, size, addr + width * count)

    def cmd_u(self, args: str) -> None:
        m = self.m
        count = 10
        if args:
            try:
                addr = self.eval(args)
            except ExprError:
                head, _, tail = args.rpartition(" ")
                if not head:
                    raise
                addr, count = self.eval(head), self._count_arg(tail)
        else:
            addr = m.cpu.eip
        count = min(count, 1000)
        try:
            code = m.cpu.read_virt(addr, min(16 * count, 0x1000 - (addr & 0xFFF)))
        except (PageFault, BadPhysical) as e:
            raise CommandError(f"cannot read code at {addr:#010x}: {_why(e)}") from None
        n = 0
        for insn in self._dis.disasm(code, addr):
            loc = self.symbols.lookup(insn.address)
            if loc is not None and loc.offset == 0:
                self.out(f"{loc.name}:")
            mark = "=>" if insn.address == m.cpu.eip else "  "
            hexbytes = insn.bytes.hex()
            self.out(f"{mark} {insn.address:#010x}{self.name(insn.address):<20} "
                     f"{hexbytes:<16} {self.format_insn(insn)}")
            n += 1
            if n >= count:
                break
        if n == 0:
            self.out(f"{addr:#010x}: <undecodable>")

    def cmd_bt(self, args: str) -> None:
        m = self.m
        eip, esp, ebp = (views.read_reg(m, n) for n in ("eip", "esp", "ebp"))
        frames = [eip]
        note = ""
        insn = self.insn_at(eip)
        loc = self.symbols.lookup(eip)
        try:
            if (loc is not None and loc.offset == 0) or (insn is not None and (
                    insn.mnemonic == "ret" or (insn.mnemonic == "push" and insn.op_str == "ebp"))):
                frames.append(self._dword(esp))       # no frame set up yet
            elif loc is not None and loc.offset == 1 and m.cpu.read_virt(eip - 1, 1) == b"\x55":
                frames.append(self._dword(esp + 4))
            seen = set()
            while ebp and len(frames) < 64 and ebp not in seen:
                seen.add(ebp)
                ret = self._dword(ebp + 4)
                nxt = self._dword(ebp)
                if ret == 0:
                    break
                frames.append(ret)
                if nxt and nxt <= ebp:
                    note = f"(the frame chain goes backwards at ebp={ebp:#010x}: stopped)"
                    break
                ebp = nxt
        except (PageFault, BadPhysical) as e:
            note = f"(stack unreadable at a frame: {_why(e)})"
        for i, a in enumerate(frames):
            line = self.symbols.line(a if i == 0 else a - 1)
            self.out(f"#{i:<2} {a:#010x}{self.name(a)}" + (f"   [{line}]" if line else ""))
        if note:
            self.out(note)

    # -- commands: views ------------------------------------------------------------------------
    def cmd_info(self, args: str) -> None:
        what, _, rest = args.partition(" ")
        rest = rest.strip()
        subs = {
            "tasks": lambda: self.l4.info_tasks(),
            "threads": lambda: self.l4.info_threads(),
            "tcb": lambda: self._l4_id(rest, self.l4.info_tcb),
            "space": lambda: self._l4_id(rest, self.l4.info_space),
            "mappings": lambda: self._info_mappings(rest),
            "irq": lambda: views.irq_state(self.m),
            "devices": lambda: views.devices(self.m),
            "pt": lambda: self._info_pt(rest),
            "breakpoints": lambda: self.cmd_blist("") or [],
            "registers": lambda: self.cmd_regs("") or [],
            "symbol": lambda: self._info_symbol(rest),
            "traps": lambda: [t.describe() + self.name(t.eip) for t in self.m.cpu.traps[-16:]]
            or ["no traps yet"],
        }
        if what not in subs:
            close = difflib.get_close_matches(what, subs, n=3, cutoff=0.4)
            raise CommandError(f"info what? one of: {' '.join(subs)}" if not what else
                               f"no 'info {what}'" + (f"; did you mean {', '.join(close)}?"
                                                      if close else f"; one of: {' '.join(subs)}"))
        for line in subs[what]():
            self.out(line)

    def _info_mappings(self, rest: str) -> list[str]:
        """`info mappings ID` (the task's page tables) or `info mappings ID VA` (that page's
        tree in the kernel's mapping database)."""
        parts = rest.split()
        if len(parts) >= 2:
            va = self.eval(" ".join(parts[1:]))
            return self._l4_id(parts[0], lambda spec: self.l4.info_maptree(spec, va))
        return self._l4_id(rest, self.l4.info_mappings)

    def _l4_id(self, text: str, view) -> list[str]:
        if not self.l4.available:
            return [self.l4.missing()]
        if not text:
            raise CommandError("an ID is needed (task.lthread in hex, or an expression)")
        return view(self.l4.parse_id(text, self.eval))

    def _info_pt(self, rest: str) -> list[str]:
        if not rest:
            _, cr3, _ = self.m.cpu.mmu_state()
            if not self.m.cpu.mmu_state()[0] & (1 << 31):
                return ["paging is off (CR0.PG=0): linear addresses are physical"]
            return views.mappings(self.m, cr3)
        parts = rest.split()
        if len(parts) >= 2:
            try:
                return views.page_walk(self.m, self.eval(" ".join(parts[:-1])),
                                       self.eval(parts[-1]))
            except ExprError:
                pass
        return views.page_walk(self.m, self.eval(rest))

    def _info_symbol(self, rest: str) -> list[str]:
        a = self.eval(rest)
        d = self.symbols.describe(a)
        line = self.symbols.line(a)
        if not d:
            return [f"no symbol matches {a:#010x}"]
        return [f"{a:#010x} is {d}" + (f" [{line}]" if line else "")]

    def _trace_missing(self, kind: str) -> Optional[str]:
        """Why `trace KIND` (ipc, ctx) cannot work on this image, or None."""
        if not self.l4.available:
            return f"trace {kind}: {self.l4.missing()}"
        points = self.l4.layout.trace.get(kind, [])
        if not points:
            return (f"trace {kind}: the L4 layout ({self.l4.layout.source}) has no [trace] "
                    f"{kind} points")
        names = self.symbols.kernel.by_name if self.symbols.kernel is not None else {}
        lost = [p.symbol for p in points if p.symbol not in names]
        if lost:
            return (f"trace {kind}: the kernel has no symbol '{lost[0]}' (the L4 layout "
                    f"{self.l4.layout.source} names it)")
        return None

    def cmd_trace(self, args: str) -> None:
        parts = args.split()
        if not parts:
            self.out("tracing: " + (", ".join(sorted(self.trace)) or "off"))
            return
        if parts[0] not in ("on", "off"):
            raise CommandError("usage: trace on|off [trap|io|ipc|ctx]")
        explicit = set(parts[1:])
        bad = explicit - {"trap", "io", "ipc", "ctx"}
        if bad:
            raise CommandError(f"unknown trace kind '{sorted(bad)[0]}': trap, io, ipc or ctx")
        if parts[0] == "on":
            kinds = set(explicit) or {"trap", "io", "ipc", "ctx"}
            for k in sorted(kinds & {"ipc", "ctx"}):
                why = self._trace_missing(k)
                if why is not None:
                    kinds.discard(k)
                    if k in explicit:
                        self.out(why)
            self.trace |= kinds
        else:
            kinds = explicit or set(self.trace)
            self.trace -= kinds
            self._trace_pending = [t for t in self._trace_pending if t[0].kind in self.trace]
        self.out("tracing: " + (", ".join(sorted(self.trace)) or "off"))

    # -- commands: going back ---------------------------------------------------------------------
    def _replay_warning(self) -> None:
        if self.m.ata is not None:
            self.out("note: disk images are not part of the history; going back across disk "
                     "writes replays against the image as it is now")

    def cmd_rstep(self, args: str) -> None:
        n = self._count_arg(args)
        now = self.m.clock.now
        target = max(now - n, self.history.start)
        if target == now:
            raise CommandError("already at the start of the recorded history")
        self._replay_warning()
        self.history.goto(target)
        self.finished = None
        self._trace_pending.clear()
        self.out(f"back {now - target} instruction{'s' if now - target != 1 else ''}, at "
                 f"instruction {target}")
        self.out(self.where())

    def cmd_rcontinue(self, args: str) -> None:
        m = self.m
        now = m.clock.now
        bps = {p.addr: p for p in self.points.values() if p.kind == "break"}

        def is_stop() -> bool:
            p = bps.get(m.cpu.eip)
            if p is None or not p.cond:
                return True
            try:
                return bool(evaluate(p.cond, self.ctx))
            except ExprError:
                return True

        self._replay_warning()
        self._trace_pending.clear()
        target = self.history.previous_stop(now, is_stop)
        if target is None:
            self.history.goto(self.history.start)
            self.finished = None
            self.out(f"no breakpoint or watchpoint hit before this point: at the start of the "
                     f"recorded history (instruction {self.history.start})")
        else:
            self.history.goto(target)
            self.finished = None
            p = bps.get(m.cpu.eip)
            what = f"breakpoint {p.number}" if p else "watchpoint hit"
            self.out(f"back to {what} at instruction {target}")
        self.out(self.where())

    def cmd_count(self, args: str) -> None:
        m = self.m
        self.out(f"{m.clock.now} instructions retired ({m.stats.idle_insns} skipped idle in "
                 f"hlt); {m.cpu.stats.traps} traps, {m.stats.irqs_delivered} interrupts "
                 f"delivered")

    def cmd_print(self, args: str) -> None:
        v = self.eval(args)
        signed = v - (1 << 32) if v & 0x80000000 else v
        self.out(f"{v:#x} = {v}" + (f" = {signed}" if signed != v else "") + self.name(v))

    # -- commands: changing the guest -----------------------------------------------------------
    def cmd_set(self, args: str) -> None:
        if "=" not in args:
            raise CommandError("usage: set REG=VALUE or set [ADDR]=VALUE")
        lhs, _, rhs = args.partition("=")
        lhs = lhs.strip()
        value = self.eval(rhs)
        size = 4
        low = lhs.lower()
        for word, n in (("byte", 1), ("word", 2), ("dword", 4)):
            if low.startswith(word + "["):
                size, lhs = n, lhs[len(word):]
                break
        if lhs.startswith("[") and lhs.endswith("]"):
            addr = self.eval(lhs[1:-1])
            try:
                write_virt(self.m, addr, (value & ((1 << 8 * size) - 1)).to_bytes(size, "little"))
            except (PageFault, BadPhysical) as e:
                raise CommandError(f"cannot write at {addr:#010x}: {_why(e)}") from None
            self.out(f"[{addr:#010x}] = {value & ((1 << 8 * size) - 1):#x}")
            return
        name = lhs.lstrip("$").lower()
        if views.read_reg(self.m, name) is None:
            raise CommandError(f"no register named '{lhs}'")
        try:
            views.write_reg(self.m, name, value)
        except ValueError as e:
            raise CommandError(f"cannot set {name}: {e}") from None
        self.out(f"{name} = {views.read_reg(self.m, name):#x}")

    def cmd_asm(self, args: str) -> None:
        try:
            parts = shlex.split(args)
        except ValueError as e:
            raise CommandError(f"bad quoting: {e}") from None
        if len(parts) < 2:
            raise CommandError("usage: asm ADDR 'insn; insn'")
        addr = self.eval(" ".join(parts[:-1]))
        source = "\n".join(s.strip() for s in parts[-1].split(";") if s.strip())
        from ..asm import AsmError, assemble
        try:
            code = assemble(source, addr).code
        except AsmError as e:
            raise CommandError(f"cannot assemble: {e}") from None
        if not code:
            raise CommandError("nothing assembled")
        try:
            write_virt(self.m, addr, code)
        except (PageFault, BadPhysical) as e:
            raise CommandError(f"cannot write at {addr:#010x}: {_why(e)}") from None
        self.out(f"wrote {len(code)} bytes at {addr:#010x}{self.name(addr)}: {code.hex()}")
        for insn in self._dis.disasm(code, addr):
            self.out(f"   {insn.address:#010x}: {self.format_insn(insn)}")

    # -- commands: the session ------------------------------------------------------------------
    def cmd_source(self, args: str) -> None:
        if not args:
            raise CommandError("usage: source FILE")
        if self._source_depth >= 8:
            raise CommandError("source files nest too deeply (8 levels)")
        try:
            with open(os.path.expanduser(args)) as f:
                lines = f.read().splitlines()
        except OSError as e:
            raise CommandError(f"cannot read {args}: {e.strerror}") from None
        self._source_depth += 1
        try:
            self.run_lines(lines, echo=True)
        finally:
            self._source_depth -= 1

    def run_lines(self, lines: Iterable[str], echo: bool) -> None:
        for line in lines:
            if self.quit:
                return
            if echo:
                self.out(PROMPT + line.rstrip())
            self.execute(line)

    def cmd_gdb(self, args: str) -> None:
        from .gdbstub import GdbStub, parse_listen
        try:
            host, port = parse_listen(args or "1234")
            stub = GdbStub(self.m, host, port, log=self.out, monitor=self.capture)
        except (ValueError, OSError) as e:
            raise CommandError(str(e)) from None
        prev = None
        try:
            prev = signal.signal(signal.SIGINT, lambda *_: setattr(stub, "stop_flag", True))
        except ValueError:
            pass
        try:
            self.out(f"gdb stub listening on {stub.host}:{stub.port}; in gdb: "
                     f"target remote {stub.host}:{stub.port} (Ctrl-C here gives up)")
            if not stub.accept():
                self.out("no gdb client came")
                return
            with self._tracing():
                end = stub.serve_client()
            self.out(f"gdb session ended ({end.how}); back in the shell")
            if end.how == "exit" and end.result is not None:
                self.report(end.result)
        finally:
            if prev is not None:
                signal.signal(signal.SIGINT, prev)
            stub.close()
        self.out(self.where())

    def cmd_help(self, args: str) -> None:
        if args:
            name = self._resolve(args.split()[0])
            if name is None:
                raise CommandError(f"no command '{args}'")
            _, usage, *text = self.commands[name]
            text = " ".join(text)
            aliases = sorted(a for a, t in self.ALIASES.items() if t == name)
            self.out(f"{usage}: {text}" + (f" (also: {', '.join(aliases)})" if aliases else ""))
            return
        for fn, usage, *text in self.commands.values():
            self.out(f"  {usage:34} {' '.join(text)}")
        self.out("Expressions: numbers (0x.. hex), registers ($eax or eax), symbols "
                 "(or module:symbol), + - * / and [ADDR] (a dword).")

    def cmd_quit(self, args: str) -> None:
        self.quit = True


def evaluate_check(cond: str) -> None:
    """Reject a condition that does not even parse (unknown names are checked when hit)."""
    from .expr import tokenize
    tokenize(cond)


def _escape(data: bytes) -> str:
    out = []
    for b in data:
        if 32 <= b < 127 and b not in (0x22, 0x5C):
            out.append(chr(b))
        else:
            out.append({10: "\\n", 13: "\\r", 9: "\\t", 0x22: '\\"', 0x5C: "\\\\"}.get(
                b, f"\\x{b:02x}"))
    return "".join(out)


def _fmt_item(v: int, fmt: str, width: int) -> str:
    bits = 8 * width
    if fmt == "x":
        return f"{v:#0{2 + 2 * width}x}"
    if fmt == "d":
        return str(v - (1 << bits) if v >> (bits - 1) else v)
    if fmt == "u":
        return str(v)
    if fmt == "c":
        return f"{v:3} '{_escape(bytes([v]))}'"
    return f"{v:#x}"


# -- the interactive front end -----------------------------------------------------------------
def _completer(dbg: Debugger):
    from prompt_toolkit.completion import Completer, Completion

    info_words = ["tasks", "threads", "tcb", "space", "mappings", "irq", "devices", "pt",
                  "breakpoints", "registers", "symbol", "traps"]

    class _Completer(Completer):
        def get_completions(self, document, complete_event):
            text = document.text_before_cursor
            words = text.split()
            current = "" if text.endswith(" ") or not words else words[-1]
            if len(words) == 0 or (len(words) == 1 and not text.endswith(" ")):
                pool = dbg.command_names()
            elif words[0] in ("info", "i") and len(words) <= 2:
                pool = info_words
            elif words[0] == "trace":
                pool = ["on", "off", "trap", "io", "ipc", "ctx"]
            elif words[0] in ("help", "h"):
                pool = dbg.command_names()
            else:
                stripped = current.lstrip("$[*(")
                prefix = current[:len(current) - len(stripped)]
                pool = [prefix + n for n in list(views.REGISTERS) + dbg.symbols.names()]
            count = 0
            for w in sorted(set(pool)):
                if w.startswith(current):
                    yield Completion(w, start_position=-len(current))
                    count += 1
                    if count >= 200:
                        return

    return _Completer()


def interactive_loop(dbg: Debugger) -> None:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory, InMemoryHistory

    history = InMemoryHistory()
    try:
        path = os.path.join(os.environ.get("L4EMU_CACHE") or
                            os.path.expanduser("~/.cache/l4emu"), "debug_history")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        history = FileHistory(path)
    except OSError:
        pass
    session = PromptSession(history=history, completer=_completer(dbg),
                            complete_while_typing=False)
    # Ctrl-C at the prompt clears the line; one that lands between a command's end and the
    # next prompt (a second press while a run stops) must not end the session either.
    while True:
        try:
            if dbg.quit:
                break
            dbg.execute(session.prompt(PROMPT))
        except KeyboardInterrupt:
            continue
        except EOFError:
            break


def plain_loop(dbg: Debugger, stream, echo: bool = True) -> None:
    while not dbg.quit:
        if not echo:
            dbg._write(PROMPT)
        line = stream.readline()
        if not line:
            break
        if echo:
            dbg.out(PROMPT + line.rstrip("\n"))
        dbg.execute(line)


def cmd_debug(args) -> int:
    """`l4emu debug`: build the machine as `boot` does, stopped, and run the shell."""
    from ..cli import prepare_machine

    # Guest serial output and the shell's own share stdout; the shell starts its lines at
    # column 0 even when the guest left a line unfinished.
    at_line_start = [True]

    def serial_out(data: bytes) -> None:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        if data:
            at_line_start[0] = data.endswith(b"\n")

    def write(text: str) -> None:
        if not at_line_start[0]:
            sys.stdout.write("\n")
            at_line_start[0] = True
        sys.stdout.write(text)
        sys.stdout.flush()

    m, kernel, modules = prepare_machine(args, serial_out)
    symbols = SymbolTable.from_files(kernel, [p for p, _ in modules])
    try:
        layout = find_layout(args.l4_layout, str(kernel))
    except LayoutError as e:
        raise UserError(str(e)) from None
    for w in symbols.warnings:
        print(f"l4emu: warning: {w}", file=sys.stderr)
    tty = sys.stdin.isatty() and sys.stdout.isatty()
    dbg = Debugger(m, symbols, write=write, l4=L4View(m, symbols, layout), interactive=tty,
                   max_insns=args.max_insns)
    files = len(symbols.objects)
    dbg.out(f"l4emu debug: {os.path.basename(str(kernel))} stopped before its first "
            f"instruction; {len(symbols)} symbols from {files} file{'s' if files != 1 else ''}. "
            "'help' lists the commands.")
    dbg.out(dbg.where())
    if args.commands:
        dbg.execute(f"source {args.commands}")
    if not dbg.quit:
        if tty:
            try:
                interactive_loop(dbg)
            except ImportError:         # prompt_toolkit missing: plain lines, no completion
                print("l4emu: prompt_toolkit is not installed: no history or completion",
                      file=sys.stderr)
                plain_loop(dbg, sys.stdin, echo=False)
        else:
            plain_loop(dbg, sys.stdin)
    sys.stdout.flush()
    if dbg.finished is not None and dbg.finished.reason is Stop.EXIT:
        return (dbg.finished.exit_status or 0) & 0xFF
    return 0
