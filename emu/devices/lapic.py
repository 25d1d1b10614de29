"""The local APIC of the one CPU (xAPIC, Intel SDM vol. 3 ch. 10) and the IMCR (MP spec 1.4).

`LocalApic` owns the CPU's interrupt priority logic (IRR/ISR/TMR, TPR/PPR), its timer, its error
register, self-IPIs through the ICR and the LINT0 ExtINT path to the 8259A pair.  It is an
`InterruptSource` for the CPU's INTR input.  `Imcr` owns the board register that routes the
8259A's INT output either straight to the CPU or to LINT0 only.

Local APIC registers (MMIO, 4 KiB at 0xFEE00000; 32-bit registers on 16-byte boundaries):

    offset       access  register
    0x020        RW      ID (bits 24-31)
    0x030        RO      version 0x00050014: version 0x14 (xAPIC), max LVT 5 (six entries)
    0x080        RW      TPR, task priority (bits 0-7)
    0x090        RO      APR, arbitration priority (SDM formula)
    0x0A0        RO      PPR, processor priority = TPR or class of highest ISR, whichever higher
    0x0B0        WO      EOI (any value): retires the highest in-service vector
    0x0C0        RO      RRD, remote read (reads 0: remote read is not modelled)
    0x0D0        RW      LDR, logical destination (bits 24-31)
    0x0E0        RW      DFR, destination format (bits 28-31; bits 0-27 read as ones)
    0x0F0        RW      SVR: spurious vector (0-7), software enable (8), focus check (9)
    0x100-0x170  RO      ISR, in service, vectors 32*i .. 32*i+31 in register i
    0x180-0x1F0  RO      TMR, trigger mode (1 = accepted level-triggered)
    0x200-0x270  RO      IRR, requested
    0x280        RW      ESR: a write latches the errors seen since the last write, then reads
    0x300        RW      ICR low: vector, delivery mode (8-10), dest mode (11), status (12, reads
                         0), level (14), trigger (15), shorthand (18-19); a write sends
    0x310        RW      ICR high: destination (bits 24-31)
    0x320        RW      LVT timer: vector, mask (16), periodic (17)
    0x330        RW      LVT thermal sensor  \
    0x340        RW      LVT perf counters    > vector, delivery mode, mask; never fire here
    0x350        RW      LVT LINT0: vector, delivery mode, polarity (13), trigger (15), mask
    0x360        RW      LVT LINT1: same layout
    0x370        RW      LVT error: vector, mask
    0x380        RW      timer initial count (a write starts the timer; 0 stops it)
    0x390        RO      timer current count (derived from the clock)
    0x3E0        RW      timer divide configuration (bits 0,1,3)
    other        --      reserved: reads 0, writes ignored, sets ESR bit 7 (illegal register)

Access widths: reads of any size return the byte lanes of the registers they cover (bytes 4-15
of each 16-byte slot read 0).  A write takes effect only when it starts on a slot and is at least
four bytes wide (the low dword is the value); narrower or misaligned writes are ignored, since
what they do is model-specific on real parts (SDM 10.4.1).  There is no x2APIC and no LVT CMCI
(the version register advertises six LVT entries); the IA32_APIC_BASE MSR belongs to the CPU,
which calls `set_global_enable()`; relocating the base at run time is not supported.

Timer: the count falls at `APIC_BUS_HZ` divided by the divide configuration.  Guest time is the
clock's instruction count, so the k-th expiry of a countdown started at t0 from `n` ticks falls at
t0 + ceil((n + (k-1)*initial) * divide * ips / APIC_BUS_HZ): exact integers, no drift.

LINT0/LINT1: only LINT0 in ExtINT mode does anything (the 8259A's INT, see `connect_lint0`).
Nothing else is wired to the pins: other LINT0 modes and LINT1 (NMI on a PC) can be programmed
and read back but never fire.  ExtINT is served before fixed interrupts at INTA.

Software disable (SVR bit 8 = 0, SDM 10.4.7.2): every LVT mask bit is set and cannot be cleared;
pending IRR/ISR bits are held (not dispatched) until the APIC is enabled again; new fixed
interrupts are not accepted (AMD's APM vol. 2 says so explicitly; the SDM is silent), which
also means ExtINT through LINT0 is off, because LINT0 is masked.  Global disable (the MSR) turns
LINT0 into the plain INTR pin: the connected 8259A reaches the CPU through it untouched.
"""
from __future__ import annotations

from collections.abc import Callable

from ..bus import ByteDevice, Device, InterruptPin, InterruptSource
from ..clock import Clock, Event

#: The timer's input clock before the divider.  100 MHz is the bus/crystal rate of the
#: Pentium 4 era parts this APIC resembles; guests calibrate it against the PIT anyway.
APIC_BUS_HZ = 100_000_000

LAPIC_BASE = 0xFEE00000
LAPIC_VERSION = 0x00050014

# Register offsets.
REG_ID = 0x020
REG_VERSION = 0x030
REG_TPR = 0x080
REG_APR = 0x090
REG_PPR = 0x0A0
REG_EOI = 0x0B0
REG_RRD = 0x0C0
REG_LDR = 0x0D0
REG_DFR = 0x0E0
REG_SVR = 0x0F0
REG_ISR = 0x100
REG_TMR = 0x180
REG_IRR = 0x200
REG_ESR = 0x280
REG_ICR_LO = 0x300
REG_ICR_HI = 0x310
LVT_TIMER = 0x320
LVT_THERMAL = 0x330
LVT_PERF = 0x340
LVT_LINT0 = 0x350
LVT_LINT1 = 0x360
LVT_ERROR = 0x370
REG_TIMER_INIT = 0x380
REG_TIMER_CUR = 0x390
REG_TIMER_DIV = 0x3E0

#: Writable bits of each LVT entry (everything else reads 0 or is read-only status).
LVT_WRITABLE = {
    LVT_TIMER: 0x300FF,  # vector, mask, periodic
    LVT_THERMAL: 0x107FF,  # vector, delivery mode, mask
    LVT_PERF: 0x107FF,
    LVT_LINT0: 0x1A7FF,  # vector, delivery mode, polarity, trigger, mask
    LVT_LINT1: 0x1A7FF,
    LVT_ERROR: 0x100FF,  # vector, mask
}
LVT_MASKED = 1 << 16
LVT_PERIODIC = 1 << 17

SVR_ENABLE = 1 << 8
SVR_WRITABLE = 0x3FF  # vector, software enable, focus processor checking

DELIVERY_FIXED = 0
DELIVERY_LOWEST = 1
DELIVERY_SMI = 2
DELIVERY_NMI = 4
DELIVERY_INIT = 5
DELIVERY_STARTUP = 6
DELIVERY_EXTINT = 7

ICR_WRITABLE = 0xCCFFF  # all but delivery status (12) and the reserved bits
ICR_LOGICAL = 1 << 11
SHORTHAND_NONE, SHORTHAND_SELF, SHORTHAND_ALL, SHORTHAND_OTHERS = range(4)

# Error status register bits (SDM table "ESR").
ESR_SEND_ILLEGAL_VECTOR = 1 << 5
ESR_RECV_ILLEGAL_VECTOR = 1 << 6
ESR_ILLEGAL_REGISTER = 1 << 7

#: Every implemented register slot; the rest of the page is reserved.
IMPLEMENTED = frozenset(
    [REG_ID, REG_VERSION, REG_TPR, REG_APR, REG_PPR, REG_EOI, REG_RRD, REG_LDR, REG_DFR,
     REG_SVR, REG_ESR, REG_ICR_LO, REG_ICR_HI, REG_TIMER_INIT, REG_TIMER_CUR, REG_TIMER_DIV]
    + list(LVT_WRITABLE)
    + [REG_ISR + 0x10 * i for i in range(8)]
    + [REG_TMR + 0x10 * i for i in range(8)]
    + [REG_IRR + 0x10 * i for i in range(8)]
)


def read_lanes(read_slot: Callable[[int], int], offset: int, size: int) -> int:
    """Assemble a `size`-byte read at `offset` from 32-bit registers on 16-byte slots.

    `read_slot(slot_offset)` gives a register's value; bytes 4-15 of a slot read 0.  Each slot is
    read once per access even when several bytes of it are wanted.
    """
    value = 0
    cache: dict[int, int] = {}
    for i in range(size):
        byte_off = offset + i
        lane = byte_off & 0xF
        if lane >= 4:
            continue
        slot = byte_off & ~0xF
        if slot not in cache:
            cache[slot] = read_slot(slot)
        value |= ((cache[slot] >> (8 * lane)) & 0xFF) << (8 * i)
    return value


def _highest(bits: int) -> int:
    """Highest set vector in a 256-bit map, or -1."""
    return bits.bit_length() - 1


class LocalApic(Device):
    """The local APIC (see the module docstring for the register table and the rules followed).

    Interrupt inputs: `accept()` (IOAPIC messages, and internally the timer, self-IPIs and LVT
    error) and LINT0 (`connect_lint0()`).  Output: the `InterruptSource` protocol.
    """

    name = "lapic"

    def __init__(self, clock: Clock, base: int = LAPIC_BASE, apic_id: int = 0) -> None:
        self.clock = clock
        self.base = base
        self.mmio = ((base, 0x1000),)
        self._reset_id = apic_id & 0xFF
        self._eoi_listeners: list[Callable[[int], None]] = []
        self._lint0: InterruptSource | None = None
        self._timer_event: Event | None = None
        self._in_error = False
        #: Called when an interrupt may have become deliverable, so the run loop can end its
        #: budget early and sample INTR (the timer, an EOI or a TPR write inside a budget).
        self.on_interrupt: Callable[[], None] | None = None
        self.reset()

    # -- wiring -------------------------------------------------------------------------
    def add_eoi_listener(self, listener: Callable[[int], None]) -> None:
        """`listener(vector)` is called on the EOI of a level-triggered vector (EOI broadcast)."""
        self._eoi_listeners.append(listener)

    def connect_lint0(self, source: InterruptSource | None) -> None:
        """Wire (or, with None, unwire) the 8259A pair's INT output to LINT0."""
        self._lint0 = source
        self._notify()

    # -- reset and state ----------------------------------------------------------------
    def reset(self) -> None:
        """Power-up state (SDM 10.4.7.1): LVTs masked, SVR 0xFF (software disabled)."""
        self.clock.cancel(self._timer_event)
        self._timer_event = None
        self._global = True
        self._id = self._reset_id
        self._tpr = 0
        self._ldr = 0
        self._dfr = 0xFFFFFFFF
        self._svr = 0xFF
        self._irr = 0
        self._isr = 0
        self._tmr = 0
        self._esr = 0
        self._esr_pending = 0
        self._icr_lo = 0
        self._icr_hi = 0
        self._lvt = {reg: LVT_MASKED for reg in LVT_WRITABLE}
        self._initial = 0
        self._dcr = 0
        # Timer countdown: started at _t_start from _t_from ticks with divider _t_div; expiries
        # 1.._t_fired have been delivered.
        self._t_running = False
        self._t_start = 0
        self._t_from = 0
        self._t_div = 2
        self._t_fired = 0

    _STATE_FIELDS = (
        "_global", "_id", "_tpr", "_ldr", "_dfr", "_svr", "_irr", "_isr", "_tmr", "_esr",
        "_esr_pending", "_icr_lo", "_icr_hi", "_initial", "_dcr", "_t_running", "_t_start",
        "_t_from", "_t_div", "_t_fired",
    )

    def save_state(self) -> dict:
        state = {f.lstrip("_"): getattr(self, f) for f in self._STATE_FIELDS}
        state["lvt"] = {f"{reg:#x}": value for reg, value in self._lvt.items()}
        return state

    def load_state(self, state: dict) -> None:
        self.clock.cancel(self._timer_event)
        self._timer_event = None
        for f in self._STATE_FIELDS:
            setattr(self, f, state[f.lstrip("_")])
        self._lvt = {int(reg, 16): value for reg, value in state["lvt"].items()}
        self._arm_timer()

    # -- global enable (IA32_APIC_BASE bit 11, owned by the CPU) ------------------------
    @property
    def global_enabled(self) -> bool:
        return self._global

    def set_global_enable(self, enabled: bool) -> None:
        """The MSR's enable bit.  Disabling loses the APIC's state (SDM 10.4.3); while disabled
        the MMIO page reads all ones, nothing is accepted and LINT0 is the CPU's INTR pin."""
        if enabled == self._global:
            return
        if not enabled:
            self.reset()
        self._global = enabled
        self._notify()

    # -- interrupt acceptance and the INTR protocol -------------------------------------
    @property
    def software_enabled(self) -> bool:
        return self._global and bool(self._svr & SVR_ENABLE)

    def accept(self, vector: int, level_triggered: bool = False) -> bool:
        """A fixed interrupt arrives (IOAPIC message, self-IPI, timer, LVT error).

        Sets IRR, and TMR for level-triggered ones (clears TMR for edge, SDM 10.8.4).  Returns
        False when it was not accepted: APIC disabled, or an illegal vector 0-15 (ESR bit 6).
        """
        vector &= 0xFF
        if not self.software_enabled:
            return False
        if vector < 16:
            self._error(ESR_RECV_ILLEGAL_VECTOR)
            return False
        bit = 1 << vector
        self._irr |= bit
        if level_triggered:
            self._tmr |= bit
        else:
            self._tmr &= ~bit
        self._notify()
        return True

    def accepts_destination(self, dest: int, logical: bool) -> bool:
        """Whether a message to `dest` reaches this APIC (SDM 10.6.2).

        Physical: the 8-bit ID, or 0xFF (broadcast).  Logical: 0xFF is broadcast; the flat model
        (DFR model 1111b) matches any common bit with LDR[31:24]; the cluster model (0000b)
        matches the cluster (high nibble; 0xF = all clusters) and any common bit in the low
        nibble.  Other DFR models are undefined by the SDM; they are treated as flat.
        """
        dest &= 0xFF
        if dest == 0xFF:
            return True
        if not logical:
            return dest == self._id
        ldr = self._ldr >> 24
        if self._dfr >> 28 == 0:
            cluster_ok = dest >> 4 in (0xF, ldr >> 4)
            return cluster_ok and bool(dest & ldr & 0xF)
        return bool(dest & ldr)

    def _ppr(self) -> int:
        isrv = max(_highest(self._isr), 0)
        if self._tpr >> 4 >= isrv >> 4:
            return self._tpr
        return isrv & 0xF0

    def _apr(self) -> int:
        isrv = max(_highest(self._isr), 0)
        irrv = max(_highest(self._irr), 0)
        tpr_class = self._tpr >> 4
        if tpr_class >= irrv >> 4 and tpr_class > isrv >> 4:
            return self._tpr
        # SDM 10.6.2.4 writes "max(TPR[7:4] AND ISRV[7:4], IRRV[7:4])" literally.
        return max(tpr_class & (isrv >> 4), irrv >> 4) << 4

    def _deliverable(self) -> int | None:
        """The highest IRR vector if its class beats the processor priority (SDM 10.8.3.1)."""
        if not self.software_enabled:
            return None
        irrv = _highest(self._irr)
        if irrv < 0 or irrv >> 4 <= self._ppr() >> 4:
            return None
        return irrv

    def _extint_pending(self) -> bool:
        lvt = self._lvt[LVT_LINT0]
        return (
            self._lint0 is not None
            and not lvt & LVT_MASKED
            and (lvt >> 8) & 7 == DELIVERY_EXTINT
            and self._lint0.pending()
        )

    def pending(self) -> bool:
        if not self._global:
            return self._lint0 is not None and self._lint0.pending()
        return self._extint_pending() or self._deliverable() is not None

    def acknowledge(self) -> int | None:
        """INTA.  ExtINT (SDM 10.9.4 note: bypasses IRR, ISR and priority) is served first and its
        vector comes from the 8259A; otherwise the highest deliverable IRR vector moves to ISR.
        If nothing is deliverable any more, the SVR's spurious vector (no ISR bit, SDM 10.9)."""
        if not self._global:
            return self._lint0.acknowledge() if self._lint0 is not None else None
        if self._lint0 is not None and self._extint_pending():
            return self._lint0.acknowledge()
        vector = self._deliverable()
        if vector is None:
            return self._svr & 0xFF
        bit = 1 << vector
        self._irr &= ~bit
        self._isr |= bit
        return vector

    def _eoi(self) -> None:
        vector = _highest(self._isr)
        if vector < 0:
            return
        self._isr &= ~(1 << vector)
        if self._tmr >> vector & 1:
            for listener in self._eoi_listeners:
                listener(vector)
        self._notify()

    def _notify(self) -> None:
        if self.on_interrupt is not None:
            self.on_interrupt()

    def _error(self, bits: int) -> None:
        """Log an error and raise the LVT error interrupt.  An error found while delivering the
        error interrupt itself (an illegal error vector) is logged but not re-raised."""
        self._esr_pending |= bits
        lvt = self._lvt[LVT_ERROR]
        if lvt & LVT_MASKED or self._in_error:
            return
        self._in_error = True
        try:
            self.accept(lvt & 0xFF)
        finally:
            self._in_error = False

    # -- ICR ----------------------------------------------------------------------------
    def _send_ipi(self) -> None:
        """Send the IPI in the ICR.  One CPU: only deliveries that include this APIC matter.

        Fixed and lowest-priority go to IRR (edge: the ICR trigger bit only qualifies INIT
        de-assert).  A vector below 16 sets ESR bit 5 and is not sent.  INIT and STARTUP have no
        other CPU to reach and are accepted and ignored; NMI and SMI are not modelled.
        """
        icr = self._icr_lo
        mode = (icr >> 8) & 7
        if mode not in (DELIVERY_FIXED, DELIVERY_LOWEST):
            return
        vector = icr & 0xFF
        if vector < 16:
            self._error(ESR_SEND_ILLEGAL_VECTOR)
            return
        shorthand = (icr >> 18) & 3
        if shorthand in (SHORTHAND_SELF, SHORTHAND_ALL):
            to_self = True
        elif shorthand == SHORTHAND_OTHERS:
            to_self = False
        else:
            to_self = self.accepts_destination(self._icr_hi >> 24, bool(icr & ICR_LOGICAL))
        if to_self:
            self.accept(vector)

    # -- timer --------------------------------------------------------------------------
    def _divide(self) -> int:
        code = ((self._dcr >> 1) & 4) | (self._dcr & 3)
        return 1 if code == 7 else 2 << code

    def _periodic(self) -> bool:
        return bool(self._lvt[LVT_TIMER] & LVT_PERIODIC)

    def _elapsed_ticks(self) -> int:
        return (self.clock.now - self._t_start) * APIC_BUS_HZ // (self._t_div * self.clock.ips)

    def _expiry_time(self, k: int) -> int:
        ticks = self._t_from + (k - 1) * self._initial
        return self._t_start + -(-ticks * self._t_div * self.clock.ips // APIC_BUS_HZ)

    def _current_count(self) -> int:
        if not self._t_running:
            return 0
        e = self._elapsed_ticks()
        if e < self._t_from:
            return self._t_from - e
        if self._periodic():
            # The reload is instantaneous: 0 is never seen, the next value is the initial count.
            return self._initial - (e - self._t_from) % self._initial
        return 0

    def _due_expiry(self) -> int:
        """Index of the latest expiry whose time has come (0 if none)."""
        e = self._elapsed_ticks()
        if e < self._t_from:
            return 0
        if self._periodic():
            return 1 + (e - self._t_from) // self._initial
        return 1

    def _arm_timer(self) -> None:
        self.clock.cancel(self._timer_event)
        self._timer_event = None
        if self._t_running:
            when = self._expiry_time(self._t_fired + 1)
            self._timer_event = self.clock.schedule(when, self._on_timer, "lapic-timer")

    def _on_timer(self) -> None:
        self._timer_event = None
        self._timer_catch_up()
        self._arm_timer()

    def _timer_catch_up(self) -> None:
        """Deliver an expiry that is due but not processed yet.  Several missed periods (a long
        idle skip) coalesce into one interrupt, as they would in the one IRR bit anyway."""
        if not self._t_running:
            return
        k = self._due_expiry()
        if k <= self._t_fired:
            return
        self._t_fired = k
        if not self._periodic():
            self._t_running = False
        lvt = self._lvt[LVT_TIMER]
        if not lvt & LVT_MASKED:
            self.accept(lvt & 0xFF)

    def _timer_rebase(self, change: Callable[[], None]) -> None:
        """Apply a mode or divider change to a running countdown: it continues from the current
        count under the new setting (losing at most the fraction of one tick)."""
        self._timer_catch_up()
        count = self._current_count()
        change()
        if self._t_running:
            self._t_start = self.clock.now
            self._t_from = count
            self._t_div = self._divide()
            self._t_fired = 0
            self._arm_timer()

    def _write_initial_count(self, value: int) -> None:
        self._timer_catch_up()
        self._initial = value
        self._t_running = value != 0
        self._t_start = self.clock.now
        self._t_from = value
        self._t_div = self._divide()
        self._t_fired = 0
        self._arm_timer()

    # -- MMIO ---------------------------------------------------------------------------
    def mmio_read(self, addr: int, size: int) -> int:
        if not self._global:
            return (1 << (8 * size)) - 1
        return read_lanes(self._read_reg, addr - self.base, size)

    def mmio_write(self, addr: int, size: int, value: int) -> None:
        off = addr - self.base
        if not self._global or off & 0xF or size < 4:
            return
        self._write_reg(off, value & 0xFFFFFFFF)

    def _read_reg(self, off: int) -> int:
        if REG_ISR <= off < REG_ISR + 0x180:
            bank = (off - REG_ISR) >> 7
            bits = (self._isr, self._tmr, self._irr)[bank]
            return (bits >> (32 * ((off >> 4) & 7))) & 0xFFFFFFFF
        if off in self._lvt:
            return self._lvt[off]
        if off == REG_ID:
            return self._id << 24
        if off == REG_VERSION:
            return LAPIC_VERSION
        if off == REG_TPR:
            return self._tpr
        if off == REG_APR:
            return self._apr()
        if off == REG_PPR:
            return self._ppr()
        if off in (REG_EOI, REG_RRD):
            return 0
        if off == REG_LDR:
            return self._ldr
        if off == REG_DFR:
            return self._dfr
        if off == REG_SVR:
            return self._svr
        if off == REG_ESR:
            return self._esr
        if off == REG_ICR_LO:
            return self._icr_lo
        if off == REG_ICR_HI:
            return self._icr_hi
        if off == REG_TIMER_INIT:
            return self._initial
        if off == REG_TIMER_CUR:
            return self._current_count()
        if off == REG_TIMER_DIV:
            return self._dcr
        self._error(ESR_ILLEGAL_REGISTER)
        return 0

    def _write_reg(self, off: int, value: int) -> None:
        if off in self._lvt:
            self._write_lvt(off, value)
        elif off == REG_ID:
            self._id = value >> 24
        elif off == REG_TPR:
            self._tpr = value & 0xFF
            self._notify()
        elif off == REG_EOI:
            self._eoi()
        elif off == REG_LDR:
            self._ldr = value & 0xFF000000
        elif off == REG_DFR:
            self._dfr = value | 0x0FFFFFFF
        elif off == REG_SVR:
            self._svr = value & SVR_WRITABLE
            if not self._svr & SVR_ENABLE:
                for reg in self._lvt:
                    self._lvt[reg] |= LVT_MASKED
            self._notify()
        elif off == REG_ESR:
            self._esr = self._esr_pending
            self._esr_pending = 0
        elif off == REG_ICR_LO:
            self._icr_lo = value & ICR_WRITABLE
            self._send_ipi()
        elif off == REG_ICR_HI:
            self._icr_hi = value & 0xFF000000
        elif off == REG_TIMER_INIT:
            self._write_initial_count(value)
        elif off == REG_TIMER_DIV:
            self._timer_rebase(lambda: setattr(self, "_dcr", value & 0xB))
        elif off not in IMPLEMENTED:
            self._error(ESR_ILLEGAL_REGISTER)
        # Writes to read-only registers are ignored.

    def _write_lvt(self, off: int, value: int) -> None:
        value &= LVT_WRITABLE[off]
        if not self.software_enabled:
            value |= LVT_MASKED
        if off == LVT_TIMER:
            def change() -> None:
                self._lvt[LVT_TIMER] = value

            if (value ^ self._lvt[LVT_TIMER]) & LVT_PERIODIC:
                self._timer_rebase(change)
            else:
                self._timer_catch_up()
                change()
            return
        self._lvt[off] = value
        if off == LVT_LINT0:
            self._notify()


IMCR_SELECT_PORT = 0x22
IMCR_DATA_PORT = 0x23
IMCR_INDEX = 0x70


class Imcr(ByteDevice):
    """Interrupt mode configuration register (MP spec 1.4 §3.6.2.1, ports 0x22/0x23).

        port  access  meaning
        0x22  RW      register select; 0x70 selects the IMCR
        0x23  RW      IMCR data when 0x70 is selected (else reads 0xFF, writes ignored):
                      bit 0 = 0 PIC mode (reset), 1 APIC mode

    PIC mode: the 8259A's INT drives the CPU's INTR directly.  The local APIC is part of the
    same core, so its own interrupts (timer, IPIs, IOAPIC messages) still reach the CPU; only
    its LINT0 input is cut off, so the 8259A cannot arrive twice.  CPU sources: [pic, lapic].
    APIC mode: the 8259A's INT reaches the CPU only through LINT0 (as ExtINT once the guest
    programs it so).  CPU sources: [lapic].  Other sources on the pin are kept, after these.
    """

    name = "imcr"
    ports = ((IMCR_SELECT_PORT, 2),)

    def __init__(self, pin: InterruptPin, pic: InterruptSource, lapic: LocalApic) -> None:
        self.pin = pin
        self.pic = pic
        self.lapic = lapic
        self.reset()

    @property
    def apic_mode(self) -> bool:
        return self._mode == 1

    def reset(self) -> None:
        self._select = 0
        self._mode = 0
        self._apply()

    def save_state(self) -> dict:
        return {"select": self._select, "mode": self._mode}

    def load_state(self, state: dict) -> None:
        self._select = state["select"]
        self._mode = state["mode"]
        self._apply()

    def _apply(self) -> None:
        others = [s for s in self.pin.sources if s is not self.pic and s is not self.lapic]
        if self._mode:
            self.lapic.connect_lint0(self.pic)
            self.pin.sources = [self.lapic, *others]
        else:
            self.lapic.connect_lint0(None)
            self.pin.sources = [self.pic, self.lapic, *others]

    def read_byte(self, port: int) -> int:
        if port == IMCR_SELECT_PORT:
            return self._select
        if port == IMCR_DATA_PORT and self._select == IMCR_INDEX:
            return self._mode
        return 0xFF

    def write_byte(self, port: int, value: int) -> None:
        if port == IMCR_SELECT_PORT:
            self._select = value
        elif port == IMCR_DATA_PORT and self._select == IMCR_INDEX:
            self._mode = value & 1
            self._apply()
