"""CGA/VGA text screen behaviour (no CPU): the buffer in RAM and the CRTC ports."""
from __future__ import annotations

import mmap

from emu.bus import PortBus
from emu.devices.cga import BASE, CgaText


def make(ram=None):
    ram = bytearray(0x100000) if ram is None else ram
    dev = CgaText(ram)
    bus = PortBus()
    bus.attach(dev)
    return ram, dev, bus


def put(ram, row: int, col: int, text: str, attr: int = 0x07, start: int = 0) -> None:
    off = BASE + (start + row * 80 + col) * 2
    for i, ch in enumerate(text.encode("cp437")):
        ram[off + 2 * i] = ch
        ram[off + 2 * i + 1] = attr


def crtc(bus: PortBus, index: int, value: int) -> None:
    bus.write(0x3D4, 1, index)
    bus.write(0x3D5, 1, value)


def test_chars_in_ram_show_on_screen():
    """Text mode: cell (row, col) is the byte pair at 0xB8000 + 2 * (80 * row + col),
    character then attribute; the screen is 25 lines."""
    ram, dev, _ = make()
    put(ram, 0, 0, "Hello, L4")
    put(ram, 24, 70, "bottom")
    lines = dev.screen_text().split("\n")
    assert len(lines) == 25
    assert lines[0] == "Hello, L4"
    assert lines[24] == " " * 70 + "bottom"
    assert all(line == "" for line in lines[1:24])


def test_code_page_437():
    """Characters are code page 437: box drawing and the low glyphs come out as Unicode."""
    ram, dev, _ = make()
    ram[BASE] = 0xC9
    ram[BASE + 2] = 0x01
    assert dev.screen_text().split("\n")[0] == "╔☺"


def test_start_address_scrolls():
    """CRTC 0x0C/0x0D: the start address (in cells) is the cell shown top left."""
    ram, dev, bus = make()
    put(ram, 0, 0, "line0")
    put(ram, 1, 0, "line1")
    crtc(bus, 0x0C, 0x00)
    crtc(bus, 0x0D, 80)
    assert dev.screen_text().split("\n")[0] == "line1"


def test_cursor_location_via_crtc():
    """CRTC 0x0E/0x0F hold the cursor's cell; `cursor` is (row, col) relative to the start."""
    _, dev, bus = make()
    loc = 3 * 80 + 17
    crtc(bus, 0x0E, loc >> 8)
    crtc(bus, 0x0F, loc & 0xFF)
    assert dev.cursor == (3, 17)
    bus.write(0x3D4, 1, 0x0F)
    assert bus.read(0x3D5, 1) == loc & 0xFF
    crtc(bus, 0x0D, 80)
    assert dev.cursor == (2, 17)


def test_word_write_sets_index_and_data():
    """`out 0x3D4, ax` writes the index (AL) and the data (AH) as two byte cycles."""
    _, dev, bus = make()
    bus.write(0x3D4, 2, (5 << 8) | 0x0F)
    bus.write(0x3D4, 2, (0 << 8) | 0x0E)
    assert dev.cursor == (0, 5)


def test_cursor_disable_bit():
    """CRTC 0x0A bit 5 turns the cursor off."""
    _, dev, bus = make()
    assert dev.cursor_visible
    crtc(bus, 0x0A, 0x20)
    assert not dev.cursor_visible


def test_input_status_toggles_retrace():
    """Port 0x3DA bits 0 and 3 change between reads so retrace polling loops terminate."""
    _, _, bus = make()
    a, b = bus.read(0x3DA, 1), bus.read(0x3DA, 1)
    assert {a & 0x09, b & 0x09} == {0x00, 0x09}


def test_works_over_mmap():
    """The buffer can be the machine's mmap'ed RAM."""
    buf = mmap.mmap(-1, 0x100000)
    ram, dev, _ = make(buf)
    put(ram, 0, 0, "mmap")
    assert dev.screen_text().startswith("mmap")
    buf.close()


def test_save_load_round_trip():
    """save_state/load_state carry the CRTC registers."""
    _, dev, bus = make()
    crtc(bus, 0x0E, 0x01)
    crtc(bus, 0x0F, 0x00)
    _, dev2, _ = make()
    dev2.load_state(dev.save_state())
    assert dev2.cursor == dev.cursor == (3, 16)
