"""One booted bench image and the measurements run from its snapshot (emu/bench).

The image (images/bench-l4.toml, guest side servers/bench/main.c) is built and booted once up to
the point where the guest asks for its parameters (the label `bench_params_hook`); that state
is saved.  Every measurement restores it, writes the parameters into EAX/ECX/EDX, and runs to
breakpoints on `bench_mark_start` and `bench_mark_end`, which the guest calls right before and
right after its measured loop.  The difference of the machine's retired-instruction counter
(`m.clock.now`) between the two is the exact guest cost of the loop (a handful of instructions
of the marks and rdtsc calls included); the CPU time of this thread between the same two stops
(time.thread_time_ns: on a shared host it leaves out the time the process was not running) is
its host time.  The guest also reports its own rdtsc count on COM1 (rdtsc = retired
instructions), which is checked against the breakpoint count.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from ..errors import UserError
from ..machine import Machine, Stop

ROOT = Path(__file__).resolve().parents[2]
IMAGE = ROOT / "images" / "bench-l4.toml"

MODES = {"lat_ctx": 1, "ovr": 2, "intra": 3, "pp_inter": 4, "pp_intra": 5, "null": 6}
ENTRIES = ("int", "gate")
_GUEST_LINE = re.compile(r"bench: mode=(\d+) entry=(\w+) procs=(\d+) kib=(\d+) iters=(\d+) "
                         r"insns=(\d+)")


@dataclass
class Measurement:
    """One run of the guest's measured loop."""
    mode: str
    entry: str
    procs: int
    kib: int
    iters: int
    insns: int          # retired guest instructions between the two marks (exact)
    guest_rdtsc: int    # the guest's own count of the same loop (rdtsc before/after)
    host_ns: int        # host wall-clock time between the two marks


def _symbols(path: Path) -> dict[str, int]:
    with open(path, "rb") as f:
        out: dict[str, int] = {}
        for sec in ELFFile(f).iter_sections():
            if isinstance(sec, SymbolTableSection):
                for s in sec.iter_symbols():
                    if s.name:
                        out.setdefault(s.name, s["st_value"])
        return out


class BenchSession:
    """Boot once, measure many times."""

    def __init__(self, image: Path = IMAGE, max_boot_insns: int = 500_000_000) -> None:
        from ..boot.image import build_image
        built = build_image(image)
        self.serial = bytearray()
        self.machine = m = Machine(ram_mib=built.image.ram_mib or 64,
                                   serial_out=self.serial.extend)
        self.power_on = m.save_state()      # ring 0, before the loader: for the floor guest
        m.boot_multiboot(str(built.kernel), [(str(p), c) for p, c in built.modules],
                         built.image.kernel.cmdline or "")
        bench = [p for p, c in built.modules if c == "bench"]
        if not bench:
            raise UserError(f"{image}: no module with cmdline 'bench'")
        syms = _symbols(bench[0])
        self.hook = syms["bench_params_hook"]
        self.mark_start = syms["bench_mark_start"]
        self.mark_end = syms["bench_mark_end"]
        r = self._run(max_boot_insns, until=self.hook)
        if r.reason is not Stop.BREAKPOINT or m.cpu.eip != self.hook:
            raise UserError(f"the bench image did not reach its parameter hook: {r.reason} "
                            f"{r.detail}\n{self.serial.decode(errors='replace')}")
        self.snapshot = m.save_state()
        self.serial_at_snapshot = len(self.serial)
        m.add_breakpoint(self.mark_start)
        m.add_breakpoint(self.mark_end)

    def _run(self, max_insns: int, until: int | None = None):
        while True:
            r = self.machine.run(max_insns=max_insns, until=until)
            if r.reason is not Stop.KDEBUG:
                return r

    def measure(self, mode: str, entry: str, procs: int = 2, kib: int = 0,
                iters: int = 1000, max_insns: int = 2_000_000_000) -> Measurement:
        from unicorn import x86_const as X
        m = self.machine
        m.load_state(self.snapshot)
        del self.serial[self.serial_at_snapshot:]
        m.cpu.set_reg(X.UC_X86_REG_EAX, MODES[mode] | (ENTRIES.index(entry) << 8) | (procs << 16))
        m.cpu.set_reg(X.UC_X86_REG_ECX, kib)
        m.cpu.set_reg(X.UC_X86_REG_EDX, iters)
        marks = []
        while len(marks) < 2:
            r = self._run(max_insns)
            t = time.thread_time_ns()
            if r.reason is not Stop.BREAKPOINT:
                raise UserError(f"bench {mode} {entry} N={procs} {kib}k: the guest stopped "
                                f"({r.reason.name}: {r.detail})\n"
                                + self.serial[self.serial_at_snapshot:].decode(errors="replace"))
            want = self.mark_start if not marks else self.mark_end
            if m.cpu.eip == want:
                marks.append((m.clock.now, t))
        r = self._run(max_insns)                   # to the guest's report and power-off
        text = self.serial[self.serial_at_snapshot:].decode(errors="replace")
        found = _GUEST_LINE.search(text)
        if r.reason is not Stop.EXIT or not found:
            raise UserError(f"bench {mode}: no result from the guest ({r.reason.name})\n{text}")
        return Measurement(mode, entry, procs, kib, iters, marks[1][0] - marks[0][0],
                           int(found.group(6)), marks[1][1] - marks[0][1])

    def floor(self, iterations: int = 100_000, runs: int = 3):
        """The engine floor (floor.py) on this session's own machine and Unicorn instance."""
        from .floor import measure_floor
        return measure_floor(iterations, runs, self.machine,
                             reset=lambda: self.machine.load_state(self.power_on))

    def close(self) -> None:
        self.machine.close()
