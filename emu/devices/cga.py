"""CGA/VGA colour text mode: the 80x25 screen at physical 0xB8000 and the CRT controller ports.

The text buffer is ordinary guest RAM (no MMIO, so the guest writes it at full speed): each
character cell is two bytes, the character (code page 437) and its attribute (bits 0-3
foreground, 4-6 background, 7 blink).  This device only reads it, to show the screen.

Ports:

    0x3D4  r/w  CRTC index (bits 0-4)
    0x3D5  r/w  CRTC data, the indexed register; among them
                0x0A cursor start (bit 5 = cursor off, bits 0-4 first scan line)
                0x0B cursor end (bits 0-4 last scan line)
                0x0C/0x0D start address high/low: the cell shown top left, in cells
                0x0E/0x0F cursor location high/low, in cells from the start of the buffer
    0x3DA  r    input status 1: bit 0 display disabled (retrace or blanking), bit 3 vertical
                retrace

Choices:
- All CRTC registers read back (VGA behaviour; a CGA's 6845 makes most of them write-only).
  They start with the values of VGA mode 3 (80x25 colour text).  Only the start address and
  the cursor registers mean anything here: the geometry is always 80x25.
- Input status 1 alternates between "retrace" (0x09) and "display" (0x00) on every read, so a
  guest's wait-for-retrace loops (wait for the bit to clear, then to set, or the reverse) end
  after a read or two, deterministically, with no clock.
- The buffer window is 32 KiB (0xB8000-0xBFFFF); cells past its end wrap to its start, as the
  start address counts within it.
"""
from __future__ import annotations

from emu.bus import ByteDevice

BASE = 0xB8000
WINDOW = 0x8000
COLS, ROWS = 80, 25
# VGA mode 3 CRTC registers 0x00-0x18 (IBM VGA technical reference, mode 3 table).
MODE3_CRTC = bytes((
    0x5F, 0x4F, 0x50, 0x82, 0x55, 0x81, 0xBF, 0x1F, 0x00, 0x4F, 0x0D, 0x0E, 0x00, 0x00,
    0x00, 0x00, 0x9C, 0x8E, 0x8F, 0x28, 0x1F, 0x96, 0xB9, 0xA3, 0xFF,
))
# Code page 437 glyphs for 0x00-0x1F and 0x7F (Python's cp437 codec decodes these as control
# characters); 0x00 is shown as a blank, as the hardware's font draws it.
_LOW_GLYPHS = " ☺☻♥♦♣♠•◘○◙♂♀♪♫☼►◄↕‼¶§▬↨↑↓→←∟↔▲▼"
_CP437 = "".join(
    _LOW_GLYPHS[b] if b < 0x20 else "⌂" if b == 0x7F else bytes((b,)).decode("cp437")
    for b in range(256)
)


class CgaText(ByteDevice):
    """Colour text screen over guest RAM `ram` (a bytearray, an mmap, or an object whose `buf`
    is one); see the module docstring."""

    name = "cga"
    ports = ((0x3D4, 2), (0x3DA, 1))

    def __init__(self, ram: object) -> None:
        self.ram = getattr(ram, "buf", ram)
        self.reset()

    # -- observers ----------------------------------------------------------------------------
    @property
    def start_address(self) -> int:
        """The cell shown at the top left (CRTC 0x0C/0x0D)."""
        return self._crtc[0x0C] << 8 | self._crtc[0x0D]

    @property
    def cursor(self) -> tuple[int, int]:
        """(row, col) of the cursor on the screen (CRTC 0x0E/0x0F relative to the start)."""
        loc = (self._crtc[0x0E] << 8 | self._crtc[0x0F]) - self.start_address
        return divmod(loc % (WINDOW // 2), COLS)

    @property
    def cursor_visible(self) -> bool:
        return not self._crtc[0x0A] & 0x20

    def cells(self) -> bytes:
        """The 80x25 (character, attribute) byte pairs on screen, row by row."""
        first = (self.start_address * 2) % WINDOW
        size = COLS * ROWS * 2
        end = first + size
        if end <= WINDOW:
            return bytes(self.ram[BASE + first:BASE + end])
        return bytes(self.ram[BASE + first:BASE + WINDOW]) + bytes(
            self.ram[BASE:BASE + end - WINDOW])

    def screen_text(self) -> str:
        """The 25 screen lines, trailing blanks removed, joined by newlines."""
        chars = self.cells()[::2]
        return "\n".join(
            chars[r * COLS:(r + 1) * COLS].decode("latin-1").translate(_TO_UNICODE).rstrip()
            for r in range(ROWS))

    # -- Device ---------------------------------------------------------------------------
    def reset(self) -> None:
        self._crtc = bytearray(32)
        self._crtc[:len(MODE3_CRTC)] = MODE3_CRTC
        self._index = 0
        self._retrace = False

    def save_state(self) -> dict:
        return {"crtc": bytes(self._crtc), "index": self._index, "retrace": self._retrace}

    def load_state(self, state: dict) -> None:
        self._crtc = bytearray(state["crtc"])
        self._index = state["index"]
        self._retrace = state["retrace"]

    # -- registers ------------------------------------------------------------------------
    def read_byte(self, port: int) -> int:
        if port == 0x3D4:
            return self._index
        if port == 0x3D5:
            return self._crtc[self._index]
        if port == 0x3DA:
            self._retrace = not self._retrace
            return 0x09 if self._retrace else 0x00
        return 0xFF

    def write_byte(self, port: int, value: int) -> None:
        if port == 0x3D4:
            self._index = value & 0x1F
        elif port == 0x3D5:
            self._crtc[self._index] = value


# Latin-1 decoding maps byte b to code point b; this table then maps it to its CP437 glyph.
_TO_UNICODE = {b: _CP437[b] for b in range(256)}
