"""National Semiconductor PC16550D UART (the PC's COM ports), with FIFOs and PC-style IRQ gating.

Registers at `base` + offset (DLAB = LCR bit 7):

    off  DLAB  read                         write
    0    0     RBR receive buffer           THR transmit holding
    0    1     DLL divisor latch low        DLL
    1    0     IER interrupt enable         IER  (bit 0 RX data, 1 THR empty, 2 line status,
                                                   3 modem status; bits 4-7 read 0)
    1    1     DLM divisor latch high       DLM
    2    -     IIR interrupt ident          FCR FIFO control
               bit 0   0 = interrupt pending
               bits 1-3 011 line status, 010 RX data, 110 char timeout, 001 THR empty,
                        000 modem status (highest priority first)
               bits 6-7 11 when the FIFOs are enabled
                                            FCR bit 0 enable FIFOs (a change clears them),
                                                bit 1 clear RX FIFO, bit 2 clear TX FIFO,
                                                bit 3 DMA mode (no effect), bits 6-7 RX
                                                trigger level 1/4/8/14
    3    -     LCR line control (bits 0-1 word length, 2 stop bits, 3-5 parity, 6 break,
               7 DLAB)
    4    -     MCR modem control (0 DTR, 1 RTS, 2 OUT1, 3 OUT2, 4 loopback; bits 5-7 read 0)
    5    -     LSR line status (0 DR, 1 OE, 2 PE, 3 FE, 4 BI, 5 THRE, 6 TEMT, 7 RX FIFO error);
               reading clears OE (and the line-status interrupt)
    6    -     MSR modem status (0 DCTS, 1 DDSR, 2 TERI, 3 DDCD, 4 CTS, 5 DSR, 6 RI, 7 DCD);
               reading clears bits 0-3 (and the modem-status interrupt)
    7    -     SCR scratch

Interrupts follow the datasheet's identification table: line status (IER 2) > received data
available at the trigger level / character timeout (IER 0) > THR empty (IER 1) > modem status
(IER 3).  The THR-empty interrupt is raised when the THR empties and when IER bit 1 is turned on
while it is empty; it is cleared by an IIR read that reports it or by a THR write.  On a PC the
UART's INTR pin reaches the ISA IRQ line only through a buffer enabled by OUT2, so the line
level is (an enabled interrupt is pending) and MCR.OUT2.  In loopback mode the datasheet forces
the modem-control output pins inactive, which disables that buffer: interrupts are identified
in IIR but the IRQ line stays low, as on real PCs.

Choices (emulation, not silicon):
- Transmission is instantaneous in virtual time: a THR write hands the byte to `output` at once
  and the THR (and shift register) are empty again, so THRE and TEMT always read 1 and each
  write re-arms the THR-empty interrupt (an edge on the IRQ line).  The baud rate matters only
  for the FIFO character timeout (4 character times from the divisor and LCR format).
- Received bytes (`feed`) move into the RX FIFO (one byte in 16450 mode) as space frees up;
  the rest wait in an unbounded host-side queue, so host input never overruns (the host is the
  far end of a flow-controlled link).  Overrun (LSR OE) happens only for loopback bytes the guest
  writes faster than it reads.  No parity, framing or break errors ever occur.
- The modem-status inputs outside loopback are those of a connected host: DCD, DSR, CTS
  asserted, RI off.  In loopback they follow MCR (CTS=RTS, DSR=DTR, RI=OUT1, DCD=OUT2).
- Accesses wider than a byte are split into byte accesses to consecutive ports, as the ISA bus
  does for an 8-bit device.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable

from emu.bus import ByteDevice, IrqLine
from emu.clock import Clock, Event

#: The PC's UART input clock; baud = CLOCK_HZ / (16 * divisor).
CLOCK_HZ = 1_843_200
FIFO_SIZE = 16
TRIGGER_LEVELS = (1, 4, 8, 14)

# IER bits
IER_RDA, IER_THRE, IER_RLS, IER_MSI = 0x01, 0x02, 0x04, 0x08
# IIR interrupt identifications (bit 0 clear = pending)
IIR_NONE, IIR_RLS, IIR_RDA, IIR_TIMEOUT, IIR_THRE, IIR_MSI = 0x01, 0x06, 0x04, 0x0C, 0x02, 0x00
# LSR bits
LSR_DR, LSR_OE, LSR_THRE, LSR_TEMT = 0x01, 0x02, 0x20, 0x40
LSR_ERRORS = 0x1E
# MCR bits
MCR_DTR, MCR_RTS, MCR_OUT1, MCR_OUT2, MCR_LOOP = 0x01, 0x02, 0x04, 0x08, 0x10
# MSR status bits seen outside loopback: a connected host (DCD, DSR, CTS).
MSR_CONNECTED = 0xB0


class Uart16550(ByteDevice):
    """A PC16550D at `base` (8 ports) raising `irq`; see the module docstring."""

    def __init__(
        self,
        clock: Clock,
        irq: IrqLine | None,
        base: int = 0x3F8,
        output: Callable[[bytes], None] | None = None,
        name: str = "com1",
    ) -> None:
        self.clock = clock
        self.irq = irq
        self.base = base
        self.name = name
        self.ports = ((base, 8),)
        self.output = output
        #: Bytes sent by the guest when no `output` callable was given.
        self.transmitted = bytearray()
        self._host_rx: deque[int] = deque()
        self._rx: deque[int] = deque()
        self._timeout_event: Event | None = None
        self._irq_level = False
        # Registers a master reset leaves alone (datasheet table II): divisor, scratch, RBR.
        self._dll, self._dlm = 12, 0  # 9600 baud, what a PC BIOS programs
        self._scr = 0
        self._rbr_last = 0
        self.reset()

    # -- host side ----------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        """Queue bytes arriving on the serial input (from a test or the CLI's stdin).

        Call it from the thread that runs the machine (between run budgets): it may change the
        IRQ line and schedule clock events."""
        self._host_rx.extend(data)
        self._pump()
        self._update_irq()

    @property
    def rx_waiting(self) -> int:
        """Bytes fed but not yet read by the guest (FIFO plus host-side queue)."""
        return len(self._rx) + len(self._host_rx)

    # -- Device ---------------------------------------------------------------------------
    def reset(self) -> None:
        """Master reset (MR pin): registers as the datasheet's reset table says."""
        self._ier = 0
        self._lcr = 0
        self._mcr = 0
        self._fifo_enabled = False
        self._trigger = 1
        self._lsr_err = 0
        self._thre_pending = False
        self._timeout_pending = False
        self._rx.clear()
        self._rx_activity = self.clock.now
        self.clock.cancel(self._timeout_event)
        self._timeout_event = None
        self._msr_status = self._modem_inputs()
        self._msr_delta = 0
        self._pump()
        self._update_irq()

    def read_byte(self, port: int) -> int:
        return self._read8(port - self.base)

    def write_byte(self, port: int, value: int) -> None:
        self._write8(port - self.base, value)

    def save_state(self) -> dict:
        return {
            "ier": self._ier, "lcr": self._lcr, "mcr": self._mcr, "dll": self._dll,
            "dlm": self._dlm, "scr": self._scr, "rbr_last": self._rbr_last,
            "fifo_enabled": self._fifo_enabled, "trigger": self._trigger,
            "lsr_err": self._lsr_err, "thre_pending": self._thre_pending,
            "timeout_pending": self._timeout_pending, "rx": bytes(self._rx),
            "host_rx": bytes(self._host_rx), "rx_activity": self._rx_activity,
            "msr_status": self._msr_status, "msr_delta": self._msr_delta,
            "transmitted": bytes(self.transmitted),
        }

    def load_state(self, state: dict) -> None:
        for key in ("ier", "lcr", "mcr", "dll", "dlm", "scr", "rbr_last", "fifo_enabled",
                    "trigger", "lsr_err", "thre_pending", "timeout_pending", "rx_activity",
                    "msr_status", "msr_delta"):
            setattr(self, "_" + key, state[key])
        self._rx = deque(state["rx"])
        self._host_rx = deque(state["host_rx"])
        self.transmitted = bytearray(state.get("transmitted", b""))
        self.clock.cancel(self._timeout_event)
        self._timeout_event = None
        self._arm_timeout()
        self._update_irq(force=True)

    # -- register access ------------------------------------------------------------------
    def _read8(self, off: int) -> int:
        dlab = self._lcr & 0x80
        if off == 0:
            if dlab:
                return self._dll
            return self._read_rbr()
        if off == 1:
            return self._dlm if dlab else self._ier
        if off == 2:
            ident = self._ident()
            if ident == IIR_THRE:
                # Reading IIR when THR-empty is the reported source clears it.
                self._thre_pending = False
                self._update_irq()
            return ident | (0xC0 if self._fifo_enabled else 0)
        if off == 3:
            return self._lcr
        if off == 4:
            return self._mcr
        if off == 5:
            lsr = LSR_THRE | LSR_TEMT | self._lsr_err | (LSR_DR if self._rx else 0)
            if self._lsr_err:
                self._lsr_err = 0
                self._update_irq()
            return lsr
        if off == 6:
            msr = self._msr_status | self._msr_delta
            if self._msr_delta:
                self._msr_delta = 0
                self._update_irq()
            return msr
        if off == 7:
            return self._scr
        return 0xFF

    def _write8(self, off: int, value: int) -> None:
        dlab = self._lcr & 0x80
        if off == 0:
            if dlab:
                self._dll = value
            else:
                self._write_thr(value)
        elif off == 1:
            if dlab:
                self._dlm = value
            else:
                old = self._ier
                self._ier = value & 0x0F
                # The 16550 raises THR-empty when the enable is turned on while THR is empty
                # (always, here); with the enable off there is nothing to remember.
                if self._ier & IER_THRE and not old & IER_THRE:
                    self._thre_pending = True
                elif not self._ier & IER_THRE:
                    self._thre_pending = False
                self._update_irq()
        elif off == 2:
            self._write_fcr(value)
        elif off == 3:
            self._lcr = value
        elif off == 4:
            was_loop = self._mcr & MCR_LOOP
            self._mcr = value & 0x1F
            self._modem_changed()
            if was_loop and not self._mcr & MCR_LOOP:
                self._pump()  # the serial input is connected again
            self._update_irq()
        elif off == 5:
            pass  # LSR is read-only (its write is for factory test)
        elif off == 6:
            pass  # MSR is read-only
        elif off == 7:
            self._scr = value

    def _read_rbr(self) -> int:
        if self._rx:
            self._rbr_last = self._rx.popleft()
            self._rx_activity = self.clock.now
        # Reading a character clears the timeout indication and restarts its timer.
        self._timeout_pending = False
        self._pump()
        self._arm_timeout()
        self._update_irq()
        return self._rbr_last

    def _write_thr(self, value: int) -> None:
        # The write clears THR-empty; the byte leaves at once, so THR is empty again and the
        # interrupt re-arms: the line drops and rises, an edge per byte as on real hardware.
        self._thre_pending = False
        self._update_irq()
        if self._mcr & MCR_LOOP:
            self._loopback_receive(value)
        elif self.output is None:
            self.transmitted.append(value)
        else:
            self.output(bytes((value,)))
        self._thre_pending = bool(self._ier & IER_THRE)
        self._update_irq()

    def _write_fcr(self, value: int) -> None:
        enable = bool(value & 0x01)
        if enable != self._fifo_enabled:
            self._clear_rx()  # changing FIFO mode empties both FIFOs
        self._fifo_enabled = enable
        if enable:
            # The other FCR bits are only programmed while bit 0 is set (datasheet).
            if value & 0x02:
                self._clear_rx()
            self._trigger = TRIGGER_LEVELS[value >> 6]
        self._pump()
        self._arm_timeout()
        self._update_irq()

    # -- receive path -----------------------------------------------------------------------
    def _capacity(self) -> int:
        return FIFO_SIZE if self._fifo_enabled else 1

    def _clear_rx(self) -> None:
        self._rx.clear()
        self._timeout_pending = False

    def _pump(self) -> None:
        """Move host input into the receiver while it has room (not in loopback: SIN is cut)."""
        if self._mcr & MCR_LOOP or not self._host_rx:
            return
        room = self._capacity() - len(self._rx)
        if room <= 0:
            return
        while room and self._host_rx:
            self._rx.append(self._host_rx.popleft())
            room -= 1
        self._rx_activity = self.clock.now
        self._arm_timeout()

    def _loopback_receive(self, value: int) -> None:
        if len(self._rx) < self._capacity():
            self._rx.append(value)
        else:
            self._lsr_err |= LSR_OE
            if not self._fifo_enabled:
                # 16450 mode: the new character overwrites the unread one.
                self._rx[-1] = value
            # FIFO mode: the character in the shift register is lost, the FIFO is kept.
        self._rx_activity = self.clock.now
        self._arm_timeout()

    def _timeout_insns(self) -> int:
        """Four character times at the programmed baud rate and format."""
        divisor = (self._dlm << 8 | self._dll) or 0x10000
        word = 5 + (self._lcr & 0x03)
        parity = 1 if self._lcr & 0x08 else 0
        stop_half_bits = (3 if word == 5 else 4) if self._lcr & 0x04 else 2
        half_bits = 2 * (1 + word + parity) + stop_half_bits
        ns = 4 * half_bits * divisor * 16 * 1_000_000_000 // (2 * CLOCK_HZ)
        return self.clock.insns_for_ns(ns)

    def _arm_timeout(self) -> None:
        """Make sure an event will look at the character timeout if it can still occur."""
        if (self._timeout_event is not None or not self._fifo_enabled or not self._rx
                or self._timeout_pending):
            return
        self._timeout_event = self.clock.schedule(
            self._rx_activity + self._timeout_insns(), self._on_timeout, f"{self.name} timeout")

    def _on_timeout(self) -> None:
        # One event serves many bytes: activity since it was scheduled pushes the deadline out.
        self._timeout_event = None
        if not self._fifo_enabled or not self._rx or self._timeout_pending:
            return
        due = self._rx_activity + self._timeout_insns()
        if self.clock.now >= due:
            self._timeout_pending = True
            self._update_irq()
        else:
            self._timeout_event = self.clock.schedule(due, self._on_timeout,
                                                      f"{self.name} timeout")

    # -- modem lines ----------------------------------------------------------------------
    def _modem_inputs(self) -> int:
        if not self._mcr & MCR_LOOP:
            return MSR_CONNECTED
        m = self._mcr
        return (((m & MCR_RTS) << 3) | ((m & MCR_DTR) << 5) | ((m & MCR_OUT1) << 4)
                | ((m & MCR_OUT2) << 4))

    def _modem_changed(self) -> None:
        new = self._modem_inputs()
        changed = new ^ self._msr_status
        delta = 0
        if changed & 0x10:
            delta |= 0x01  # DCTS
        if changed & 0x20:
            delta |= 0x02  # DDSR
        if changed & 0x40 and not new & 0x40:
            delta |= 0x04  # TERI: trailing edge of RI only
        if changed & 0x80:
            delta |= 0x08  # DDCD
        self._msr_status = new
        self._msr_delta |= delta

    # -- interrupts ----------------------------------------------------------------------
    def _rx_ready(self) -> bool:
        return len(self._rx) >= (self._trigger if self._fifo_enabled else 1)

    def _ident(self) -> int:
        """IIR bits 0-3: the highest-priority enabled pending interrupt."""
        ier = self._ier
        if ier & IER_RLS and self._lsr_err & LSR_ERRORS:
            return IIR_RLS
        if ier & IER_RDA:
            if self._rx_ready():
                return IIR_RDA
            if self._timeout_pending:
                return IIR_TIMEOUT
        if ier & IER_THRE and self._thre_pending:
            return IIR_THRE
        if ier & IER_MSI and self._msr_delta:
            return IIR_MSI
        return IIR_NONE

    def _update_irq(self, force: bool = False) -> None:
        level = (self._ident() != IIR_NONE and bool(self._mcr & MCR_OUT2)
                 and not self._mcr & MCR_LOOP)
        if level != self._irq_level or force:
            self._irq_level = level
            if self.irq is not None:
                self.irq.set(level)
