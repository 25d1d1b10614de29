"""Boot L4 images in-process for the kernel tests: build (cached), load like `l4emu boot`, and
name guest code through the ELF symbols of the kernel and of each module.

    sess = boot("hello")              # images/hello.toml
    sess.run()                        # to the guest's power-off
    sess.serial                       # everything written to COM1
    sess.symbol("root", "l4_int_ipc") # a module's symbol (modules: "sigma0", "root", ...)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from emu.boot import abi
from emu.boot.image import build_image
from emu.machine import Machine, RunResult, Stop

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "images"
ABI = abi.load(ROOT / "kernel" / "abi.toml")


def elf_symbols(path: Path) -> dict[str, int]:
    """Symbol -> address of an ELF file ({} for a module that is not one, e.g. data)."""
    with open(path, "rb") as f:
        if f.read(4) != b"\x7fELF":
            return {}
        f.seek(0)
        out: dict[str, int] = {}
        for sec in ELFFile(f).iter_sections():
            if isinstance(sec, SymbolTableSection):
                for s in sec.iter_symbols():
                    if s.name and s["st_info"]["type"] not in ("STT_SECTION", "STT_FILE"):
                        out.setdefault(s.name, s["st_value"])
        return out


@dataclass
class Session:
    machine: Machine
    kernel: dict[str, int]
    modules: dict[str, dict[str, int]]
    serial: bytearray = field(default_factory=bytearray)

    def symbol(self, module: str, name: str) -> int:
        return (self.kernel if module == "kernel" else self.modules[module])[name]

    def run(self, max_insns: int = 2_000_000_000, until: int | None = None) -> RunResult:
        """Run on, going past kernel-debugger stops (as `l4emu boot` does)."""
        while True:
            r = self.machine.run(max_insns=max_insns, until=until)
            if r.reason is not Stop.KDEBUG:
                return r

    @property
    def text(self) -> str:
        return self.serial.decode(errors="replace")


def boot(image: str, ram_mib: int | None = None, cmdline: str | None = None) -> Session:
    """Boot images/<image>.toml; `cmdline` replaces the kernel's command line."""
    built = build_image(IMAGES / f"{image}.toml")
    serial = bytearray()
    m = Machine(ram_mib=ram_mib or built.image.ram_mib or 64, serial_out=serial.extend)
    m.boot_multiboot(built.kernel, [(str(p), c) for p, c in built.modules],
                     built.image.kernel.cmdline if cmdline is None else cmdline)
    modules = {c or p.stem: elf_symbols(p) for p, c in built.modules}
    return Session(m, elf_symbols(built.kernel), modules, serial)


@dataclass
class IpcCosts:
    """Guest instructions measured with breakpoints (images/pingpong.toml)."""

    one_way: dict[str, list[int]]        # "int"/"gate": every fast-path one-way IPC seen
    slow: dict[str, list[int]]           # pairs that went through the general path
    page_fault: list[int]                # faulting load -> its retry, through the pager
    serial: str


def measure_pingpong() -> IpcCosts:
    """Boot the pingpong image and count, exactly, the instructions from a thread's kernel
    entry instruction (int 0x30 or lcall in libl4's stub) to the first user instruction of the
    thread that receives (the stub's next instruction), for every IPC; and from a faulting
    load to its retry.  A pair during which the general path ran is listed apart."""
    sess = boot("pingpong")
    m = sess.machine
    entry = {sess.symbol("pingpong", "l4_int_ipc"): "int",
             sess.symbol("pingpong", "l4_gate_ipc"): "gate"}
    returns = {sess.symbol("pingpong", "l4_int_ipc_return"),
               sess.symbol("pingpong", "l4_gate_ipc_return")}
    slow = sess.symbol("kernel", "ipc_slow")
    touch = sess.symbol("pingpong", "pf_touch_insn")
    for addr in [*entry, *returns, slow, touch]:
        m.add_breakpoint(addr)
    one_way: dict[str, list[int]] = {"int": [], "gate": []}
    slow_pairs: dict[str, list[int]] = {"int": [], "gate": []}
    faults: list[int] = []
    pending = None           # [kind, start, general path seen]
    touch_at = None
    while True:
        r = m.run(max_insns=1_000_000_000)
        if r.reason is Stop.KDEBUG:
            continue
        if r.reason is not Stop.BREAKPOINT:
            break
        eip, now = m.cpu.eip, m.clock.now
        if eip in entry:
            pending = [entry[eip], now, False]
        elif eip == slow and pending:
            pending[2] = True
        elif eip in returns and pending:
            (slow_pairs if pending[2] else one_way)[pending[0]].append(now - pending[1])
            pending = None
        elif eip == touch:
            if touch_at is None:
                touch_at = now
            else:
                faults.append(now - touch_at)
                touch_at = None
    assert r.reason is Stop.EXIT, f"pingpong did not finish: {r.reason} {r.detail}"
    return IpcCosts(one_way, slow_pairs, faults, sess.text)
