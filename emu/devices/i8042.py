"""Intel 8042 keyboard controller (ports 0x60/0x64) with an attached AT keyboard that has no
keys, plus the chipset's "fast A20" port 0x92.

Ports:

    0x60  read   output buffer (clears OBF)
          write  data: the parameter of a pending controller command, else a byte sent to the
                 keyboard (clears status A2)
    0x64  read   status: bit 0 OBF, 1 IBF (always 0: input is taken at once), 2 SYS (command
                 byte bit 2), 3 A2 (last write was to 0x64), 4 keyboard not inhibited, 5 OBF
                 holds auxiliary-device data, 6 timeout, 7 parity error
          write  controller command (sets A2)
    0x92  r/w    system control port A: bit 0 fast reset (a 0-to-1 write resets the CPU),
                 bit 1 A20 gate; other bits are kept

Controller commands (0x64):

    0x20        read command byte      0x21-0x3F  read controller RAM byte
    0x60 b      write command byte     0x61-0x7F  write controller RAM byte
                (command byte: 0 keyboard IRQ 1 enable, 1 aux IRQ 12 enable, 2 SYS flag,
                 4 keyboard disabled, 5 aux disabled, 6 scancode translation)
    0xA7/0xA8   disable/enable aux     0xA9  aux interface test -> 0x00
    0xAA        self test -> 0x55      0xAB  keyboard interface test -> 0x00
    0xAD/0xAE   disable/enable keyboard
    0xC0        read input port        0xD0  read output port
    0xD1 b      write output port (bit 0 = 0 resets the system, bit 1 A20 gate)
    0xD2 b      place b in the output buffer as keyboard data
    0xD3 b      place b in the output buffer as aux data
    0xD4 b      send b to the aux device (none is attached: nothing answers)
    0xDD/0xDF   A20 off/on             0xE0  read test inputs -> 0x00
    0xF0-0xFF   pulse output port bits 0-3 where the command has a 0 (0xFE: reset)

Keyboard commands (0x60): 0xFF reset -> FA AA; 0xF2 identify -> FA AB 83; 0xED LEDs,
0xF3 typematic, 0xF0 scancode set (0 queries: FA FA 02) take a parameter and answer FA to each
byte; 0xEE echo -> EE; 0xF4 enable, 0xF5 disable, 0xF6 defaults, 0xF7-0xFD -> FA; anything else
-> FE (resend).

Choices:
- No keys: the keyboard never sends a scancode, only command answers.  Those are returned as
  they are; the translation bit is kept but there is nothing to translate.
- The output buffer is one byte as in the 8042; controller answers wait in a queue ahead of
  the keyboard's, and keyboard bytes wait while the keyboard is disabled (clock inhibited).
- IRQ 1 (keyboard data with command byte bit 0) and IRQ 12 (aux data with bit 1) follow OBF
  when lines are given; with none the device is polled only.
- A20 is one gate driven by both paths, the last write winning; both the output port bit 1
  and port 0x92 bit 1 read back its state.  It starts enabled (a multiboot loader leaves it on).
  `on_a20(enabled)` is told of changes; the machine applies them.
- `on_reset()` is called from inside the I/O access for 0xFE, a D1 write with bit 0 clear and
  a 0-to-1 write of port 0x92 bit 0; the machine decides when to reset.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable

from emu.bus import Device, IrqLine

# Status bits
ST_OBF, ST_SYS, ST_A2, ST_UNINHIBITED, ST_AUX = 0x01, 0x04, 0x08, 0x10, 0x20
# Command byte bits
CB_KBD_INT, CB_AUX_INT, CB_SYS, CB_KBD_OFF, CB_AUX_OFF = 0x01, 0x02, 0x04, 0x10, 0x20
# Output port bits
OUT_RESET, OUT_A20 = 0x01, 0x02
ACK, RESEND = 0xFA, 0xFE
# The command byte a PC BIOS leaves: translation on, aux disabled, SYS, keyboard IRQ on.
DEFAULT_CB = 0x65
# Input port: keyboard not inhibited, colour display (jumper open).
INPUT_PORT = 0xA0


class I8042(Device):
    """Keyboard controller at 0x60/0x64 and port 0x92; see the module docstring."""

    name = "i8042"
    ports = ((0x60, 1), (0x64, 1), (0x92, 1))

    def __init__(self, on_reset: Callable[[], None] | None = None,
                 irq1: IrqLine | None = None, irq12: IrqLine | None = None,
                 on_a20: Callable[[bool], None] | None = None) -> None:
        self.on_reset = on_reset
        self.on_a20 = on_a20
        self.irq1, self.irq12 = irq1, irq12
        self._a20 = True
        self._levels = [False, False]
        self.reset()

    @property
    def a20(self) -> bool:
        """Whether the A20 gate is open (physical address bit 20 passes through)."""
        return self._a20

    # -- Device ---------------------------------------------------------------------------
    def reset(self) -> None:
        """State after POST (the A20 gate is left as it is: a CPU reset does not close it)."""
        self._ram = bytearray(32)
        self._ram[0] = DEFAULT_CB
        self._obf = False
        self._out = 0
        self._out_aux = False
        self._ctrl_q: deque[tuple[int, bool]] = deque()
        self._kbd_q: deque[int] = deque()
        self._pending_cmd: int | None = None  # controller command awaiting its parameter
        self._kbd_pending: int | None = None  # keyboard command awaiting its parameter
        self._a2 = False
        self._port92 = 0
        self._update()

    def io_read(self, port: int, size: int) -> int:
        if port == 0x60:
            value = self._out
            self._obf = False
            self._update()
            return value
        if port == 0x64:
            return self._status()
        return (self._port92 & ~OUT_A20) | (OUT_A20 if self._a20 else 0)

    def io_write(self, port: int, size: int, value: int) -> None:
        value &= 0xFF
        if port == 0x60:
            self._a2 = False
            self._write_data(value)
        elif port == 0x64:
            self._a2 = True
            self._pending_cmd = None
            self._command(value)
        else:
            old = self._port92
            self._port92 = value
            self._set_a20(bool(value & OUT_A20))
            if value & 0x01 and not old & 0x01:
                self._do_reset()
        self._update()

    def save_state(self) -> dict:
        return {
            "ram": bytes(self._ram), "obf": self._obf, "out": self._out,
            "out_aux": self._out_aux, "ctrl_q": list(self._ctrl_q), "kbd_q": list(self._kbd_q),
            "pending_cmd": self._pending_cmd, "kbd_pending": self._kbd_pending,
            "a2": self._a2, "port92": self._port92, "a20": self._a20,
        }

    def load_state(self, state: dict) -> None:
        self._ram = bytearray(state["ram"])
        self._obf, self._out, self._out_aux = state["obf"], state["out"], state["out_aux"]
        self._ctrl_q = deque((b, aux) for b, aux in state["ctrl_q"])
        self._kbd_q = deque(state["kbd_q"])
        self._pending_cmd, self._kbd_pending = state["pending_cmd"], state["kbd_pending"]
        self._a2, self._port92 = state["a2"], state["port92"]
        self._set_a20(state["a20"])
        self._levels = [not self._irq_wanted(aux) for aux in (False, True)]  # force a resend
        self._update()

    # -- controller ----------------------------------------------------------------------
    def _status(self) -> int:
        cb = self._ram[0]
        st = ST_UNINHIBITED | (cb & CB_SYS)
        if self._obf:
            st |= ST_OBF | (ST_AUX if self._out_aux else 0)
        if self._a2:
            st |= ST_A2
        return st

    def _output_port(self) -> int:
        # Bits 4/5 mirror OBF for keyboard/aux data; bits 6/7 keyboard clock/data lines idle high.
        port = 0xC0 | OUT_RESET | (OUT_A20 if self._a20 else 0)
        if self._obf:
            port |= 0x20 if self._out_aux else 0x10
        return port

    def _reply(self, value: int, aux: bool = False) -> None:
        self._ctrl_q.append((value, aux))

    def _command(self, cmd: int) -> None:
        cb = self._ram[0]
        if cmd == 0x20 or 0x21 <= cmd <= 0x3F:
            self._reply(self._ram[cmd & 0x1F])
        elif 0x60 <= cmd <= 0x7F or cmd in (0xD1, 0xD2, 0xD3, 0xD4):
            self._pending_cmd = cmd
        elif cmd == 0xA7:
            self._ram[0] = cb | CB_AUX_OFF
        elif cmd == 0xA8:
            self._ram[0] = cb & ~CB_AUX_OFF
        elif cmd in (0xA9, 0xAB):
            self._reply(0x00)  # interface test: no clock or data line stuck
        elif cmd == 0xAA:
            self._reply(0x55)
        elif cmd == 0xAD:
            self._ram[0] = cb | CB_KBD_OFF
        elif cmd == 0xAE:
            self._ram[0] = cb & ~CB_KBD_OFF
        elif cmd == 0xC0:
            self._reply(INPUT_PORT)
        elif cmd == 0xD0:
            self._reply(self._output_port())
        elif cmd == 0xDD:
            self._set_a20(False)
        elif cmd == 0xDF:
            self._set_a20(True)
        elif cmd == 0xE0:
            self._reply(0x00)
        elif cmd >= 0xF0 and not cmd & OUT_RESET:
            self._do_reset()  # pulsing output port bit 0 low is the reset line
        # Other commands are vendor-specific: ignored.

    def _write_data(self, value: int) -> None:
        cmd = self._pending_cmd
        if cmd is None:
            self._keyboard(value)
            return
        self._pending_cmd = None
        if 0x60 <= cmd <= 0x7F:
            self._ram[cmd & 0x1F] = value
        elif cmd == 0xD1:
            self._set_a20(bool(value & OUT_A20))
            if not value & OUT_RESET:
                self._do_reset()
        elif cmd == 0xD2:
            self._reply(value)
        elif cmd == 0xD3:
            self._reply(value, aux=True)
        # 0xD4: no aux device is attached, so the byte goes nowhere and nothing answers.

    # -- keyboard ------------------------------------------------------------------------
    def _keyboard(self, value: int) -> None:
        if self._ram[0] & CB_KBD_OFF:
            # Writing to the keyboard re-enables its interface, as on IBM's controller.
            self._ram[0] &= ~CB_KBD_OFF
        q = self._kbd_q
        if self._kbd_pending is not None:
            cmd, self._kbd_pending = self._kbd_pending, None
            q.append(ACK)
            if cmd == 0xF0 and value == 0:
                q.append(0x02)  # scancode set 2 in use
            return
        if value in (0xED, 0xF3, 0xF0):
            self._kbd_pending = value
            q.append(ACK)
        elif value == 0xFF:
            q.clear()
            q.extend((ACK, 0xAA))  # acknowledge, then basic assurance test passed
        elif value == 0xF2:
            q.extend((ACK, 0xAB, 0x83))  # MF2 keyboard
        elif value == 0xEE:
            q.append(0xEE)
        elif 0xF4 <= value <= 0xFE:
            q.append(ACK)
        else:
            q.append(RESEND)

    # -- shared plumbing ------------------------------------------------------------------
    def _set_a20(self, enabled: bool) -> None:
        if enabled != self._a20:
            self._a20 = enabled
            if self.on_a20 is not None:
                self.on_a20(enabled)

    def _do_reset(self) -> None:
        if self.on_reset is not None:
            self.on_reset()

    def _irq_wanted(self, aux: bool) -> bool:
        if not self._obf or self._out_aux != aux:
            return False
        return bool(self._ram[0] & (CB_AUX_INT if aux else CB_KBD_INT))

    def _update(self) -> None:
        """Drive IRQ 1 and 12 from OBF; if the buffer is empty, refill it and drive them again.
        Driving before the refill makes a read that is followed at once by another byte drop
        and raise the line: the edge a real keyboard's transmission delay would give."""
        self._drive_irqs()
        if not self._obf:
            if self._ctrl_q:
                self._out, self._out_aux = self._ctrl_q.popleft()
                self._obf = True
            elif self._kbd_q and not self._ram[0] & CB_KBD_OFF:
                self._out, self._out_aux = self._kbd_q.popleft(), False
                self._obf = True
            self._drive_irqs()

    def _drive_irqs(self) -> None:
        for i, line in enumerate((self.irq1, self.irq12)):
            level = self._irq_wanted(bool(i))
            if level != self._levels[i]:
                self._levels[i] = level
                if line is not None:
                    line.set(level)
