"""The machine: CPU, RAM, clock, buses and devices, and the deterministic run loop (DESIGN D5, D10).

The run loop executes the guest in budgets that end at the next clock event (a timer expiry,
a device completion) or at a limit the caller set.  Between budgets it fires due events and,
when EFLAGS.IF is set and no interrupt shadow is active, takes one interrupt from the CPU's
INTR pin and delivers it through the guest IDT.  `hlt` jumps the clock to the next event.
Budgets end at block boundaries (the native block callback), so interrupts arrive at the
first block boundary at or after their time: the same image and inputs give the same
instruction counts and the same output on every run.

Every observer (CLI, tests, debugger, GDB stub, benchmarks) uses this API: run / stop /
step / run_until, breakpoints, registers, virtual and physical memory, counters and the trap
record.  None of them reaches into Unicorn.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Optional

import unicorn
from unicorn import x86_const as X

from .bus import Device, InterruptPin, IrqBus, MmioBus, PortBus
from .clock import DEFAULT_IPS, Clock
from .cpu import (GP, NO_LIMIT, STOP_BREAK, STOP_BUDGET, STOP_LIMIT, STOP_MISS, STOP_NONE,
                  STOP_WATCH, Cpu, Shutdown)
from .devices.ata import AtaChannel, AtaDisk
from .devices.cga import CgaText
from .devices.debugexit import DebugExit
from .devices.i8042 import I8042
from .devices.kdebug import KdebugPort
from .devices.ioapic import IoApic
from .devices.lapic import Imcr, LocalApic
from .devices.pic import Pic8259Pair
from .devices.pit import Pit8254
from .devices.rtc import Rtc
from .devices.uart import Uart16550
from .errors import UserError
from .memory import Ram

#: Longest stretch the guest runs without Python regaining control (Ctrl-C, host stops).
MAX_SLICE = 50_000_000
#: Where the guest's real-time clock starts unless the user asks for the host's time.
RTC_EPOCH = datetime(2026, 1, 1, 0, 0, 0)


class Stop(enum.Enum):
    EXIT = "exit"                  # the guest wrote the exit device
    MAX_INSNS = "max-insns"        # the instruction limit was reached
    HALTED = "halted"              # hlt with nothing that can ever wake the CPU
    TRIPLE_FAULT = "triple-fault"
    BREAKPOINT = "breakpoint"
    WATCHPOINT = "watchpoint"
    STEPPED = "stepped"
    REQUESTED = "requested"        # the host asked (Ctrl-C, a tool)
    RESET = "reset"                # the guest asked for a system reset
    KDEBUG = "kdebug"              # guest code asked to enter the kernel debugger
    ENGINE_ERROR = "engine-error"  # e.g. an access to unbacked physical memory
    HOST_ERROR = "host-error"      # a bug on the host side, caught inside a hook


@dataclass
class RunResult:
    reason: Stop
    insns: int
    exit_status: Optional[int] = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.reason is Stop.EXIT


@dataclass
class Breakpoint:
    addr: int
    temporary: bool = False
    hits: int = 0


@dataclass
class Watchpoint:
    """Watch `length` bytes at linear `addr` for reads ("r"), writes ("w") or both ("rw").

    The physical memory behind the address when the watchpoint is set is what is watched
    (the engine's memory hooks see physical addresses); accesses the machine itself makes
    while delivering a trap (the frame it pushes) are not seen."""

    addr: int
    length: int
    kind: str
    hits: int = 0
    handles: list = field(default_factory=list)


@dataclass
class WatchHit:
    watchpoint: Watchpoint
    access: str          # "r" or "w"
    addr: int            # linear address of the access
    size: int
    value: Optional[int]  # the value written (writes only)
    eip: int             # the instruction after the access: where the run stopped


@dataclass
class Snapshot:
    """A saved machine (see `Machine.save_state`)."""

    context: object
    ram: bytes
    devices: list
    irq_levels: list
    pin_sources: list
    total: int
    halted: bool
    exit_status: Optional[int]
    a20: bool
    partial: int = 0


@dataclass
class MachineStats:
    slices: int = 0
    irqs_delivered: int = 0
    idle_insns: int = 0
    halts: int = 0


class Machine:
    """A uniprocessor PC: RAM at 0, COM1, the isa-debug-exit port, and whatever devices are
    added; guest code is loaded by the boot loader or by the caller."""

    def __init__(self, ram_mib: int = 256, ips: int = DEFAULT_IPS,
                 serial_out: Optional[Callable[[bytes], None]] = None,
                 disks: tuple[AtaDisk | None, AtaDisk | None] = (None, None),
                 rtc_start: Optional[datetime] = None) -> None:
        if not 2 <= ram_mib <= 3072:
            raise UserError(f"RAM size {ram_mib} MiB is outside 2..3072 MiB")
        self.clock = Clock(ips)
        self.ram = Ram(ram_mib << 20)
        self.ports = PortBus()
        self.mmio = MmioBus()
        self.irqs = IrqBus()
        self.intr = InterruptPin()
        self.cpu = Cpu(self.ram, self.ports, self.mmio, tsc=lambda insns: insns)
        self.cpu.after_device_write = self._interrupt_maybe
        self.clock.counter = self.cpu.bh
        self.clock.on_earlier_deadline = self._lower_budget
        self.stats = MachineStats()
        self.devices: list[Device] = []
        self.breakpoints: dict[int, Breakpoint] = {}
        self.halted = False
        self.exit_status: Optional[int] = None
        self._stop_reason: Optional[Stop] = None
        self._stop_detail = ""
        self._counted_mode = False
        self._exit_at: Optional[int] = None
        #: Instructions left in a block that a stop cut short (a limit, a breakpoint, a
        #: single step).  They run before any interrupt or event is taken, so that stopping
        #: anywhere never changes where interrupts land: the same run cut into pieces is
        #: the same run.
        self._partial = 0
        #: While set, breakpoints and watchpoints stay installed but do not stop the run
        #: (a debugger replaying history).
        self.suspend_points = False
        self.watchpoints: list[Watchpoint] = []
        self.last_watch: Optional[WatchHit] = None
        self._watch_pending: Optional[tuple] = None
        self._build_pc(serial_out, disks, rtc_start or RTC_EPOCH)

    def _build_pc(self, serial_out, disks, rtc_start: datetime) -> None:
        """The devices of the PC this machine is (DESIGN D9): each gets only its IRQ line, the
        clock, and (for the controllers) the interrupt pin it drives."""
        line = self.irqs.line
        self.pic = self.add_device(Pic8259Pair())
        self.irqs.attach(self.pic)
        self.lapic = self.add_device(LocalApic(self.clock))
        self.lapic.on_interrupt = self._interrupt_maybe
        self.ioapic = self.add_device(IoApic(self.lapic))
        self.irqs.attach(self.ioapic)
        self.imcr = self.add_device(Imcr(self.intr, self.pic, self.lapic))
        self.pit = self.add_device(Pit8254(self.clock, line(0)))
        self.rtc = self.add_device(Rtc(self.clock, line(8), rtc_start, self.ram.size))
        self.kbc = self.add_device(I8042(on_reset=self._guest_reset, irq1=line(1),
                                         irq12=line(12), on_a20=self.cpu.set_a20))
        self.cga = self.add_device(CgaText(self.ram))
        self.serial = self.add_device(Uart16550(self.clock, line(4), base=0x3F8,
                                                output=serial_out))
        self.add_device(DebugExit(self._guest_exit))
        self.kdebug = self.add_device(KdebugPort(self._kdebug_enter))
        self.ata = None
        if any(d is not None for d in disks):
            self.ata = self.add_device(AtaChannel(self.clock, line(14), disks[0], disks[1]))

    # -- construction -------------------------------------------------------------------------
    def add_device(self, dev: Device) -> Device:
        self.ports.attach(dev)
        for base, size, _ in self.mmio.attach(dev):
            self.cpu.map_mmio(base, size)
        self.devices.append(dev)
        return dev

    def load(self, addr: int, data: bytes) -> None:
        """Write bytes to guest physical memory (loader, tests); translations are dropped."""
        self.ram.write(addr, data)
        self.cpu.code_changed()

    def boot_multiboot(self, kernel, modules=(), cmdline: str = ""):
        """Boot like a PC with a multiboot loader (DESIGN D2): write the firmware tables (with
        this CPU's signature and features), load the kernel and modules, and set the entry
        state (EAX=0x2BADB002, EBX=the MBI).  Returns the loader's BootInfo."""
        from .boot.multiboot import load_multiboot
        from .devices.firmware import write_firmware
        model = self.cpu.model
        write_firmware(self.ram.buf, self.ram.size, cpu_signature=model.signature,
                       cpu_features=model.features_edx)
        info = load_multiboot(self.ram.buf, self.ram.size, kernel, list(modules), cmdline)
        self.cpu.code_changed()
        self.set_entry_state(info.entry, {"eax": info.magic, "ebx": info.mbi_addr})
        return info

    def set_entry_state(self, eip: int, regs: Optional[dict[str, int]] = None,
                        flat_gdt_at: int = 0x500) -> None:
        """Enter like a multiboot loader (DESIGN D2): a loader GDT with flat 32-bit code (0x08)
        and data (0x10) segments, paging off, IF=0; `regs` sets general registers."""
        gdt = bytes(8) + bytes.fromhex("ffff0000009acf00") + bytes.fromhex("ffff00000092cf00")
        self.ram.write(flat_gdt_at, gdt)
        uc = self.cpu.uc
        uc.reg_write(X.UC_X86_REG_GDTR, (0, flat_gdt_at, len(gdt) - 1, 0))
        uc.reg_write(X.UC_X86_REG_CR0, 0x11)
        uc.reg_write(X.UC_X86_REG_CS, 0x08)
        for seg in (X.UC_X86_REG_SS, X.UC_X86_REG_DS, X.UC_X86_REG_ES, X.UC_X86_REG_FS,
                    X.UC_X86_REG_GS):
            uc.reg_write(seg, 0x10)
        uc.reg_write(X.UC_X86_REG_EFLAGS, 0x2)
        for name, value in (regs or {}).items():
            uc.reg_write(getattr(X, "UC_X86_REG_" + name.upper()), value)
        uc.reg_write(X.UC_X86_REG_EIP, eip)
        self.cpu.forget_last_block()
        self._partial = 0
        self.halted = False

    # -- stopping --------------------------------------------------------------------------------
    def _kdebug_enter(self, code: int) -> None:
        self.request_stop(Stop.KDEBUG, f"the guest entered the kernel debugger (code {code:#x}) "
                          f"at eip={self.cpu.eip:#010x}")

    def _guest_reset(self) -> None:
        self.request_stop(Stop.RESET, "the guest asked for a system reset (8042 / port 0x92)")

    def _interrupt_maybe(self) -> None:
        """A device write or an APIC change may have made an interrupt deliverable: end the
        budget at the next block so the run loop takes it without delay."""
        if self.intr.pending():
            self.cpu.end_budget()

    def _guest_exit(self, status: int) -> None:
        """isa-debug-exit: the machine powers off at this `out` instruction.  The engine still
        finishes the block, so freeze device I/O and remember the exact instruction count."""
        if self.cpu.io_frozen:
            return
        self.exit_status = status
        self._exit_at = self.cpu.exact_total() + 1
        self.cpu.io_frozen = True
        self.request_stop(Stop.EXIT)

    def request_stop(self, reason: Stop = Stop.REQUESTED, detail: str = "") -> None:
        """Stop before the next block; safe from device handlers, hooks and signal handlers."""
        if self._stop_reason is None:
            self._stop_reason = reason
            self._stop_detail = detail
        self.cpu.request_stop()

    def _lower_budget(self, when: int) -> None:
        self.cpu.end_budget(when)

    # -- breakpoints ---------------------------------------------------------------------
    def add_breakpoint(self, addr: int, temporary: bool = False) -> Breakpoint:
        """Stop before the instruction at linear `addr` (any address space).  The native block
        callback checks every block it is about to run against the breakpoints (blockhook.c):
        no code hook, so no translation is dropped and the run keeps its speed."""
        bp = self.breakpoints.get(addr)
        if bp is None:
            bp = Breakpoint(addr, temporary)
            self.breakpoints[addr] = bp
            self.cpu.set_breakpoints(self.breakpoints)
        return bp

    def remove_breakpoint(self, addr: int) -> None:
        if self.breakpoints.pop(addr, None) is not None:
            self.cpu.set_breakpoints(self.breakpoints)

    def _breakpoint_stop(self) -> Optional[RunResult]:
        """The native callback stopped before a block that holds a breakpoint.  At the block's
        first instruction that is the stop; inside it, the block's instructions up to the
        breakpoint run one at a time (the rest stay partial, as after any stop mid-block)."""
        cpu, st = self.cpu, self.cpu.bh
        at = st.bp_at & 0xFFFFFFFF
        if at == cpu.eip:
            bp = self.breakpoints.get(at)
            if bp is not None:
                bp.hits += 1
            return self._finish(Stop.BREAKPOINT, f"breakpoint at {at:#010x}")
        self._partial = st.cut_icount
        # The block's own first instruction is a breakpoint only if this run started there.
        r = self._step_exact(st.cut_icount, events=False, breakpoints=True,
                             resuming=cpu.eip in self.breakpoints)
        if r is None:
            self._leave_counted_mode()      # the block left before the breakpoint (a trap)
        return r

    # -- watchpoints --------------------------------------------------------------------------
    def add_watchpoint(self, addr: int, length: int = 4, kind: str = "w") -> Watchpoint:
        if kind not in ("r", "w", "rw"):
            raise ValueError("watchpoint kind is r, w or rw")
        if length <= 0:
            raise ValueError("watchpoint length must be positive")
        wp = Watchpoint(addr & 0xFFFFFFFF, length, kind)
        self.cpu.fast_stores = False        # the memory hooks see only slow-path stores
        types = (unicorn.UC_HOOK_MEM_READ if "r" in kind else 0) | \
            (unicorn.UC_HOOK_MEM_WRITE if "w" in kind else 0)
        va, end = wp.addr, wp.addr + length
        while va < end:
            chunk = min(end - va, 0x1000 - (va & 0xFFF))
            pa = self.cpu.translate(va)          # raises PageFault for unmapped memory
            cb = self._make_watch_cb(wp, va - pa)
            wp.handles.append(self.cpu.uc.hook_add(types, cb, begin=pa, end=pa + chunk - 1))
            va += chunk
        self.watchpoints.append(wp)
        self.cpu.watch_code_hook(True)
        return wp

    def remove_watchpoint(self, wp: Watchpoint) -> None:
        if wp in self.watchpoints:
            self.watchpoints.remove(wp)
            with self.cpu._guard_spurious():
                for h in wp.handles:
                    self.cpu.uc.hook_del(h)
            if not self.watchpoints:
                self.cpu.watch_code_hook(False)
                self.cpu.fast_stores = True

    def _make_watch_cb(self, wp: Watchpoint, delta: int):
        def cb(uc, access, address, size, value, user):
            if self.suspend_points or (self._counted_mode and self._watch_pending is not None):
                return
            if self._watch_pending is None:
                kind = "w" if access == unicorn.UC_MEM_WRITE else "r"
                self._watch_pending = (wp, kind, (address + delta) & 0xFFFFFFFF, size,
                                       value if kind == "w" else None)
                self.cpu.bh.watch_hit = 1
        return cb

    # -- running --------------------------------------------------------------------------------
    def run(self, max_insns: Optional[int] = None, until: Optional[int] = None) -> RunResult:
        """Run until the guest exits, a limit or breakpoint is reached, or it can make no more
        progress.  `max_insns` counts from now; `until` is a one-shot breakpoint address."""
        cpu, clock = self.cpu, self.clock
        limit = None if max_insns is None else clock.now + max_insns
        if until is not None:
            self.add_breakpoint(until, temporary=True)
        if self._counted_mode:
            self._leave_counted_mode()
        self._stop_reason = None
        cpu.clear_stop()
        cpu.watch_writes()
        cpu.io_frozen = False
        self._arm_breakpoints()
        resuming = True
        at_breakpoint = cpu.eip in self.breakpoints and not self.suspend_points
        # Resuming from a breakpoint: execute the instruction under it first.  At a block
        # boundary the callback lets its block run once; inside a block, it is stepped.
        cpu.start_at_breakpoint(at_breakpoint and not self._partial)
        if at_breakpoint and self._partial:
            r = self.step(1)
            if r.reason is not Stop.STEPPED:
                return r
            self._leave_counted_mode()
            resuming = False
        # A block that would end past the limit is not run whole: the run stops before it
        # and finishes it one instruction at a time, so a limited run ends exactly at the
        # limit and is a prefix of the unlimited run.
        cpu.bh.limit = NO_LIMIT if limit is None else limit
        try:
            while True:
                if self._partial:
                    n = self._partial if limit is None else min(self._partial, limit - clock.now)
                    if n > 0:
                        r = self._step_exact(n, events=False, breakpoints=True,
                                             resuming=resuming)
                        if r is not None:
                            return r
                        self._leave_counted_mode()
                        resuming = False
                        continue
                clock.fire_due()
                if self._stop_reason is not None:
                    return self._finish(self._stop_reason, self._stop_detail)
                if limit is not None and clock.now >= limit:
                    return self._finish(Stop.MAX_INSNS, f"reached the limit of {max_insns} "
                                        "instructions")
                self._take_interrupt()
                if self.halted:
                    r = self._idle(limit)
                    if r is not None:
                        return r
                    continue
                budget = clock.now + MAX_SLICE
                nd = clock.next_deadline()
                if nd is not None and nd < budget:
                    budget = nd
                if limit is not None and limit < budget:
                    budget = limit
                if budget <= clock.now:
                    budget = clock.now + 1      # e.g. an interrupt shadow: run one block
                err = cpu.run(budget)
                self.stats.slices += 1
                r = self._after_run(err)
                if r is not None:
                    return r
        except Shutdown:
            return self._finish(Stop.TRIPLE_FAULT, cpu.shutdown or "triple fault")
        finally:
            cpu.bh.limit = NO_LIMIT
            if until is not None:
                self.remove_breakpoint(until)

    def _take_interrupt(self) -> None:
        cpu = self.cpu
        pending = self.intr.pending()
        if pending and cpu.interrupts_enabled:
            vec = self.intr.acknowledge()
            if vec is not None:
                self.halted = False
                self.stats.irqs_delivered += 1
                cpu.deliver(vec, kind="irq")
            pending = self.intr.pending()
        # A pending interrupt the CPU cannot take yet (IF=0, or the shadow after sti/mov ss):
        # the native callback ends the run at the first block where it can.
        cpu.bh.irq_waiting = 1 if pending else 0

    def _idle(self, limit: Optional[int]) -> Optional[RunResult]:
        """hlt: skip to the next event, or stop when nothing can wake the CPU."""
        cpu, clock = self.cpu, self.clock
        if not cpu.env.eflags_sys & 0x200:
            return self._finish(Stop.HALTED, "hlt with interrupts disabled (IF=0): the CPU "
                                "can never wake up")
        nd = clock.next_deadline()
        if nd is None:
            return self._finish(Stop.HALTED, "hlt with no timer or device event pending: "
                                "nothing can wake the CPU")
        target = nd if limit is None else min(nd, limit)
        if target > clock.now:
            self.stats.idle_insns += target - clock.now
            clock.advance(target - clock.now)
        return None

    def _after_run(self, err: int) -> Optional[RunResult]:
        cpu, st = self.cpu, self.cpu.bh
        if self._stop_reason is Stop.EXIT:
            return self._finish(Stop.EXIT)      # powered off: what ran after does not matter
        if cpu.fatal is not None:
            e = cpu.fatal
            return self._finish(Stop.HOST_ERROR, f"host error in a hook: "
                                f"{type(e).__name__}: {e}")
        if cpu.shutdown is not None:
            return self._finish(Stop.TRIPLE_FAULT, cpu.shutdown)
        if cpu.pending_io_fault is not None:
            cpu.env.eip = cpu.pending_io_fault.eip
            cpu.pending_io_fault = None
            cpu.deliver(GP, 0, kind="fault")
            return None
        if st.stopped == STOP_WATCH or self._watch_pending is not None:
            return self._watch_stop()
        if err:
            cpu.retire_partial(cpu.eip)
            return self._finish(Stop.ENGINE_ERROR, _engine_error_text(err, cpu))
        stopped = st.stopped
        if stopped == STOP_MISS:
            cpu.learn_block()
            return None
        if stopped == STOP_LIMIT:
            self._partial = st.cut_icount
            return self._step_exact(st.limit - st.total, events=False)
        if stopped == STOP_BREAK:
            return self._breakpoint_stop()
        if stopped == STOP_BUDGET:
            if self._stop_reason is None:
                cpu.clear_stop()        # a device's stop that the machine did not adopt
            return None
        if stopped == STOP_NONE and cpu.block_ended_at_halt():
            self.halted = True
            self.stats.halts += 1
            return None
        return self._finish(Stop.ENGINE_ERROR, f"the CPU stopped at {cpu.eip:#010x} for no "
                            "reason the machine knows")

    def _watch_stop(self) -> RunResult:
        cpu = self.cpu
        wp, kind, addr, size, value = self._watch_pending
        self._watch_pending = None
        cpu.bh.watch_hit = 0
        if not self._counted_mode:
            self._partial = cpu.retire_partial(cpu.eip)
        wp.hits += 1
        self.last_watch = WatchHit(wp, kind, addr, size, value, cpu.eip)
        what = "read" if kind == "r" else f"write of {value:#x}"
        return self._finish(Stop.WATCHPOINT, f"watchpoint: {what} at {addr:#010x} "
                            f"(size {size}), stopped at {cpu.eip:#010x}")

    def _finish(self, reason: Stop, detail: str = "") -> RunResult:
        if reason is Stop.EXIT and self._exit_at is not None:
            self.cpu.bh.total = self._exit_at
            self.cpu.forget_last_block()
            self._exit_at = None
        self.cpu.clear_stop()
        self._stop_reason = None
        return RunResult(reason, self.clock.now, self.exit_status, detail)

    def step(self, n: int = 1) -> RunResult:
        """Execute `n` instructions exactly (interrupts and events are handled in between)."""
        self.cpu.watch_writes()
        try:
            r = self._step_exact(n, events=True)
            return r or self._finish(Stop.STEPPED, f"stepped {n}")
        except Shutdown:
            return self._finish(Stop.TRIPLE_FAULT, self.cpu.shutdown or "triple fault")

    def _step_exact(self, n: int, events: bool, breakpoints: bool = False,
                    resuming: bool = False) -> Optional[RunResult]:
        """Execute `n` instructions one at a time with Unicorn's exact counter.  With `events`,
        clock events and interrupts are taken between them (single stepping); without, they
        run as the rest of one block would, which is how a run ends exactly at a limit.
        With `breakpoints`, an instruction at a breakpoint address stops the run before it
        (except the first one when `resuming`: the run starts there).  Returns a RunResult
        when the machine stopped for another reason, else None."""
        cpu, clock, st = self.cpu, self.clock, self.cpu.bh
        if not self._counted_mode:
            # Unicorn's counting hook only sees blocks translated after it exists: drop every
            # translation, and create the hook with a counted run that stops before its first
            # block, so that blocks translated from here on (even by `_block_icount`) have it.
            # Breakpoints are checked here, one instruction at a time, not natively.
            cpu.code_written()
            self._counted_mode = True
            self._arm_breakpoints()
            cpu.request_stop()
            cpu.run_counted(1)
            cpu.clear_stop()
        saved_limit, st.limit = st.limit, NO_LIMIT
        try:
            done = 0
            while done < n:
                if events and not self._partial:
                    # At a block boundary of a normal run: events and interrupts happen here,
                    # and only here, exactly as they would without stepping.
                    clock.fire_due()
                    if self._stop_reason is not None:
                        return self._finish(self._stop_reason, self._stop_detail)
                    self._take_interrupt()
                    if self.halted:
                        r = self._idle(None)
                        if r is not None:
                            return r
                        continue
                    self._partial = self._block_icount(cpu.eip)
                elif self.halted:
                    self._partial = 0
                    return None
                if breakpoints and (done or not resuming) and cpu.eip in self.breakpoints \
                        and not self.suspend_points:
                    bp = self.breakpoints[cpu.eip]
                    bp.hits += 1
                    return self._finish(Stop.BREAKPOINT, f"breakpoint at {cpu.eip:#010x}")
                before, start, traps = st.total, cpu.eip, cpu.stats.traps
                err = cpu.run_counted(1)
                if st.stopped == STOP_MISS:
                    # The native counter met a block it does not know: before the
                    # instruction (retry), or after it, at the next block (done).
                    cpu.learn_block()
                    if cpu.eip == start and cpu.stats.traps == traps:
                        st.total = before
                        continue
                if cpu.fatal is not None or cpu.shutdown is not None or err:
                    return self._after_run(err) or self._finish(Stop.ENGINE_ERROR)
                if cpu.pending_io_fault is not None:
                    st.total = before
                    self._after_run(0)
                    self._partial = 0
                    done += 1
                    continue
                trapped = cpu.stats.traps != traps
                faulted = trapped and cpu.traps[-1].kind == "fault"
                st.total = before + (0 if faulted else 1)
                cpu.forget_last_block()
                # A trap leaves the block for the handler's: a boundary, as in a normal run.
                self._partial = 0 if trapped else max(self._partial - 1, 0)
                if cpu.eip == (start + 1) & 0xFFFFFFFF and _is_hlt(cpu, start):
                    self.halted = True
                    self._partial = 0
                done += 1
                if self._watch_pending is not None:
                    return self._watch_stop()
                if not events and self._stop_reason is not None:
                    return None
            return None
        finally:
            st.limit = saved_limit

    def _block_icount(self, eip: int) -> int:
        """Instructions in the block a normal run would execute from `eip`."""
        try:
            return self.cpu.block_icount_at(eip)
        except unicorn.UcError:
            return 1            # not even its first instruction can be fetched: it faults

    def _leave_counted_mode(self) -> None:
        """The first run without a count removes Unicorn's counting hook, which invalidates
        blocks at the current CPL and may leave a spurious #PF behind (research §11): let that
        happen in a run that stops before its first block, then restore CR2."""
        cpu = self.cpu
        self._counted_mode = False
        with cpu._guard_spurious():
            cpu.request_stop()
            cpu.run(0)
            cpu.clear_stop()
        cpu.end_counted()
        self._arm_breakpoints()

    def _arm_breakpoints(self) -> None:
        """The block callback stops at breakpoints unless they are suspended, or the machine
        steps (which checks them itself, one instruction at a time)."""
        self.cpu.bh.bp_off = int(self.suspend_points or self._counted_mode)

    # -- snapshots --------------------------------------------------------------------------------
    def save_state(self) -> "Snapshot":
        """Everything needed to come back to this instant: CPU, RAM, devices, time.

        Restoring and running again gives the same instructions, output and counts as the
        first time (the run loop is deterministic), which is what reverse stepping and
        "boot once, measure many times" stand on."""
        cpu = self.cpu
        if self._counted_mode:
            self._leave_counted_mode()
        return Snapshot(
            context=cpu.uc.context_save(),
            ram=bytes(self.ram.buf),
            devices=[d.save_state() for d in self.devices],
            irq_levels=list(self.irqs.levels),
            pin_sources=list(self.intr.sources),
            total=cpu.bh.total,
            halted=self.halted,
            exit_status=self.exit_status,
            a20=cpu.a20,
            partial=self._partial,
        )

    def load_state(self, snap: "Snapshot") -> None:
        cpu = self.cpu
        if self._counted_mode:
            self._leave_counted_mode()
        cpu.set_a20(snap.a20)
        cpu.uc.context_restore(snap.context)
        # Unicorn's context restore leaves the TLB as it was (research §9h).
        cpu.flush_tlb()
        self.ram.buf[:] = snap.ram
        cpu.code_changed()
        self.clock.clear()
        cpu.bh.total = snap.total
        for level_irq, level in enumerate(snap.irq_levels):
            self.irqs.levels[level_irq] = level
        for dev, state in zip(self.devices, snap.devices):
            dev.load_state(state)
        self.intr.sources[:] = snap.pin_sources
        self.halted = snap.halted
        self.exit_status = snap.exit_status
        self._partial = snap.partial
        cpu.shutdown = None
        cpu.pending_io_fault = None
        cpu.io_frozen = False
        self._stop_reason = None
        self._exit_at = None
        self._watch_pending = None
        cpu.clear_stop()

    # -- reports -------------------------------------------------------------------------
    def report(self) -> str:
        """Registers, the last traps and the code at EIP: what a user needs after a bad stop."""
        cpu = self.cpu
        r = cpu.registers()
        lines = [
            "eax={eax:08x} ebx={ebx:08x} ecx={ecx:08x} edx={edx:08x} esi={esi:08x} "
            "edi={edi:08x} ebp={ebp:08x} esp={esp:08x}".format(**r),
            "eip={eip:08x} eflags={eflags:08x} cs={cs:04x} ss={ss:04x} ds={ds:04x} "
            "cr0={cr0:08x} cr2={cr2:08x} cr3={cr3:08x} cr4={cr4:08x} cpl={cpl}".format(
                cpl=cpu.cpl, **r),
        ]
        if cpu.traps:
            lines.append("last traps: " + "; ".join(t.describe() for t in cpu.traps[-4:]))
        lines.append("code: " + " | ".join(cpu.disassemble(cpu.eip, 3)))
        lines.append(f"instructions retired: {self.clock.now}")
        return "\n".join(lines)

    def close(self) -> None:
        self.cpu.close()


def _is_hlt(cpu: Cpu, addr: int) -> bool:
    try:
        return cpu.read_virt(addr, 1) == b"\xf4"
    except Exception:
        return False


def _engine_error_text(err: int, cpu: Cpu) -> str:
    names = {unicorn.UC_ERR_READ_UNMAPPED: "read of unbacked physical memory",
             unicorn.UC_ERR_WRITE_UNMAPPED: "write to unbacked physical memory",
             unicorn.UC_ERR_FETCH_UNMAPPED: "instruction fetch from unbacked physical memory",
             unicorn.UC_ERR_EXCEPTION: "unhandled CPU exception"}
    what = names.get(err, f"Unicorn error {err}")
    return f"{what} at eip={cpu.eip:#010x}"


__all__ = ["Machine", "RunResult", "Stop", "Breakpoint", "Watchpoint", "WatchHit", "Snapshot"]
