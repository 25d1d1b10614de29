"""ATA channel at device level: the port protocol a driver sees, against real image files.

Every test runs twice: with completion at once (`latency=0`) and with completion after a
scheduled delay (BSY in between), through `Rig.settle()`.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from emu.bus import IrqBus
from emu.clock import Clock
from emu.devices.ata import (
    ABRT,
    BSY,
    DRDY,
    DRQ,
    DSC,
    ERR,
    IDNF,
    NIEN,
    SRST,
    AtaChannel,
    AtaDisk,
)
from emu.errors import UserError

SECTOR = 512
BASE, CTRL = 0x1F0, 0x3F6


def pattern(lba: int) -> bytes:
    """Sector contents that name their own sector, so a wrong sector cannot pass."""
    return bytes(((lba * 7 + i) ^ (lba >> 8)) & 0xFF for i in range(SECTOR))


def make_image(path, sectors: int, extra: int = 0) -> str:
    with open(path, "wb") as f:
        f.writelines(pattern(lba) for lba in range(sectors))
        f.write(b"\xEE" * extra)
    return str(path)


class EdgeSink:
    """Counts rising edges and tracks the level of one IRQ line."""

    def __init__(self, irq: int) -> None:
        self.irq, self.level, self.edges = irq, False, 0

    def set_irq(self, irq: int, level: bool) -> None:
        if irq == self.irq:
            if level and not self.level:
                self.edges += 1
            self.level = level


class Rig:
    def __init__(self, master, slave=None, latency=0) -> None:
        self.clock = Clock()
        bus = IrqBus()
        self.sink = EdgeSink(14)
        bus.attach(self.sink)
        self.latency = latency
        self.ch = AtaChannel(self.clock, bus.line(14), master, slave, latency=latency)

    def inb(self, port: int) -> int:
        return self.ch.io_read(port, 1)

    def outb(self, port: int, value: int) -> None:
        self.ch.io_write(port, 1, value)

    def settle(self) -> None:
        """Let any delayed completion happen (BSY must show until then)."""
        if self.latency:
            assert self.inb(CTRL) & BSY
            self.clock.advance(self.latency)
            self.clock.fire_due()

    def status(self) -> int:
        return self.inb(BASE + 7)

    def alt(self) -> int:
        return self.inb(CTRL)

    def command(self, cmd: int, lba: int = 0, count: int = 1, dev: int = 0,
                feature: int = 0) -> None:
        self.outb(BASE + 6, 0xE0 | (dev << 4) | ((lba >> 24) & 0x0F))
        self.outb(BASE + 1, feature)
        self.outb(BASE + 2, count & 0xFF)
        self.outb(BASE + 3, lba & 0xFF)
        self.outb(BASE + 4, (lba >> 8) & 0xFF)
        self.outb(BASE + 5, (lba >> 16) & 0xFF)
        self.outb(BASE + 7, cmd)

    def read_block(self, nbytes: int, width: int = 2) -> bytes:
        return b"".join(self.ch.io_read(BASE, width).to_bytes(width, "little")
                        for _ in range(nbytes // width))

    def write_block(self, data: bytes, width: int = 2) -> None:
        for i in range(0, len(data), width):
            self.ch.io_write(BASE, width, int.from_bytes(data[i:i + width], "little"))

    def words(self, n: int = 256) -> list[int]:
        return [self.ch.io_read(BASE, 2) for _ in range(n)]


@pytest.fixture(params=[0, 500], ids=["instant", "delayed"])
def latency(request) -> int:
    return request.param


@pytest.fixture
def img(tmp_path) -> str:
    return make_image(tmp_path / "disk.img", 64)


def ata_string(words: list[int]) -> str:
    return b"".join(w.to_bytes(2, "big") for w in words).decode("ascii").rstrip()


def test_identify_strings_capacity_and_integrity_word(img, latency):
    """IDENTIFY DEVICE: ATA strings byte-swapped per word, LBA28 capacity in words 60-61, word
    47 = 8010h, LBA bit in word 49, FLUSH CACHE in 83/86, integrity word A5h + checksum."""
    r = Rig(AtaDisk(img), latency=latency)
    r.command(0xEC)
    r.settle()
    assert r.alt() == DRDY | DSC | DRQ
    w = r.words()
    assert r.alt() == DRDY | DSC  # DRQ drops after the last word
    assert ata_string(w[27:47]) == "L4EMU ATA DISK"
    assert ata_string(w[10:20]) == "L4EMU0001"
    assert w[60] | (w[61] << 16) == os.path.getsize(img) // SECTOR == 64
    assert w[47] == 0x8010 and w[49] & 0x0200 and w[3] == 16 and w[6] == 63
    assert w[83] & 0xD000 == 0x5000 and w[86] & 0x1000
    raw = b"".join(x.to_bytes(2, "little") for x in w)
    assert raw[510] == 0xA5 and sum(raw) % 256 == 0


@pytest.mark.parametrize("width", [2, 4])
def test_read_sector_data_drq_and_irq(img, latency, width):
    """READ SECTORS (PIO-in): DRQ + INTRQ when the sector is ready; alternate status leaves
    INTRQ asserted, status clears it; after the last word DRQ clears with no new interrupt."""
    r = Rig(AtaDisk(img), latency=latency)
    r.command(0x20, lba=5, count=1)
    r.settle()
    assert r.sink.level and r.sink.edges == 1
    assert r.alt() == DRDY | DSC | DRQ and r.sink.level
    assert r.status() == DRDY | DSC | DRQ and not r.sink.level
    assert r.read_block(SECTOR, width) == pattern(5)
    assert r.status() == DRDY | DSC
    assert r.sink.edges == 1


def test_multi_sector_read_interrupts_per_sector(img, latency):
    """READ SECTORS with count 3: one interrupt per sector, data in LBA order."""
    r = Rig(AtaDisk(img), latency=latency)
    r.command(0x20, lba=10, count=3)
    got = b""
    for k in range(3):
        r.settle()
        assert r.sink.edges == k + 1
        assert r.status() & DRQ
        got += r.read_block(SECTOR)
    assert got == pattern(10) + pattern(11) + pattern(12)
    assert r.status() == DRDY | DSC and r.sink.edges == 3


def test_write_is_in_file_at_completion_interrupt(img, latency):
    """WRITE SECTORS (PIO-out): DRQ at once with no interrupt; after each sector the device
    interrupts, and the bytes are already in the image file (read back through another file
    handle); READ SECTORS returns them."""
    r = Rig(AtaDisk(img), latency=latency)
    data = [bytes([0xA0 + k]) * SECTOR for k in range(2)]
    r.command(0x30, lba=7, count=2)
    assert r.alt() == DRDY | DSC | DRQ and r.sink.edges == 0
    r.write_block(data[0])
    r.settle()
    assert r.sink.edges == 1 and r.status() == DRDY | DSC | DRQ
    with open(img, "rb") as f:
        f.seek(7 * SECTOR)
        assert f.read(SECTOR) == data[0]
    r.write_block(data[1], width=4)
    r.settle()
    assert r.sink.edges == 2
    with open(img, "rb") as f:
        f.seek(7 * SECTOR)
        assert f.read(2 * SECTOR) == data[0] + data[1]
        f.seek(9 * SECTOR)
        assert f.read(SECTOR) == pattern(9)
    assert r.status() == DRDY | DSC
    r.command(0x20, lba=7, count=2)
    r.settle()
    first = r.read_block(SECTOR)
    r.settle()
    assert first + r.read_block(SECTOR) == data[0] + data[1]


def test_multiple_mode_block_of_four(img, latency):
    """SET MULTIPLE MODE 4, then WRITE MULTIPLE and READ MULTIPLE of 8 sectors: one DRQ block
    (and one interrupt) per 4 sectors; IDENTIFY word 59 reports the setting."""
    r = Rig(AtaDisk(img), latency=latency)
    r.command(0xC6, count=4)
    r.settle()
    assert r.status() == DRDY | DSC
    data = bytes((i * 13) & 0xFF for i in range(8 * SECTOR))
    r.command(0xC5, lba=20, count=8)
    assert r.alt() & DRQ and r.sink.edges == 1
    r.write_block(data[:4 * SECTOR])
    r.settle()
    assert r.sink.edges == 2 and r.status() & DRQ
    r.write_block(data[4 * SECTOR:])
    r.settle()
    assert r.sink.edges == 3 and r.status() == DRDY | DSC
    with open(img, "rb") as f:
        f.seek(20 * SECTOR)
        assert f.read(8 * SECTOR) == data

    r.command(0xC4, lba=20, count=8)
    r.settle()
    assert r.sink.edges == 4 and r.status() & DRQ
    got = r.read_block(4 * SECTOR, 4)
    r.settle()
    assert r.sink.edges == 5 and r.status() & DRQ
    got += r.read_block(4 * SECTOR, 4)
    assert got == data and r.status() == DRDY | DSC and r.sink.edges == 5

    r.command(0xEC)
    r.settle()
    assert r.words()[59] == 0x0104


def test_multiple_commands_need_multiple_mode(img, latency):
    """READ MULTIPLE with multiple mode off, and SET MULTIPLE MODE 3, abort."""
    r = Rig(AtaDisk(img), latency=latency)
    r.command(0xC4, lba=0, count=2)
    r.settle()
    assert r.status() == DRDY | DSC | ERR and r.inb(BASE + 1) == ABRT
    r.command(0xC6, count=3)
    r.settle()
    assert r.status() & ERR and r.inb(BASE + 1) == ABRT


def test_sector_count_zero_means_256(tmp_path, latency):
    """Sector count 0 transfers 256 sectors."""
    img = make_image(tmp_path / "big.img", 300)
    r = Rig(AtaDisk(img), latency=latency)
    r.command(0x20, lba=1, count=0)
    for k in range(256):
        r.settle()
        r.status()
        assert r.read_block(SECTOR, 4) == pattern(1 + k)
    assert r.status() == DRDY | DSC and r.sink.edges == 256


def test_past_end_is_idnf_and_file_unchanged(img, latency):
    """A read starting past the end, and a write crossing it: ERR + IDNF, no DRQ, nothing
    written; the LBA registers name the first sector out of reach."""
    before = Path(img).read_bytes()
    r = Rig(AtaDisk(img), latency=latency)
    r.command(0x20, lba=64, count=1)
    r.settle()
    assert r.status() == DRDY | DSC | ERR and r.inb(BASE + 1) == IDNF
    r.command(0x30, lba=62, count=4)
    r.settle()
    assert r.sink.edges == 2
    assert r.status() == DRDY | DSC | ERR and r.inb(BASE + 1) == IDNF
    assert r.inb(BASE + 3) == 64
    r.write_block(b"\x55" * SECTOR)  # no DRQ: ignored
    assert Path(img).read_bytes() == before


def test_read_only_image_refuses_writes(img, latency):
    """WRITE SECTORS to a read-only image: ERR + ABRT at once, no DRQ, the file unchanged;
    reads still work."""
    before = Path(img).read_bytes()
    r = Rig(AtaDisk(img, readonly=True), latency=latency)
    r.command(0x30, lba=3, count=1)
    r.settle()
    assert r.status() == DRDY | DSC | ERR and r.inb(BASE + 1) == ABRT
    r.write_block(b"\x55" * SECTOR)
    assert Path(img).read_bytes() == before
    r.command(0x20, lba=3)
    r.settle()
    assert r.read_block(SECTOR) == pattern(3)


def test_nien_suppresses_irq(img, latency):
    """With nIEN set the line stays low though the drive has data; clearing nIEN with the
    interrupt still pending raises it."""
    r = Rig(AtaDisk(img), latency=latency)
    r.outb(CTRL, NIEN)
    r.command(0x20, lba=2)
    r.settle()
    assert r.alt() & DRQ and r.sink.edges == 0
    r.outb(CTRL, 0)
    assert r.sink.level
    r.outb(CTRL, NIEN)
    assert not r.sink.level
    assert r.read_block(SECTOR) == pattern(2)


def test_slave_selected_by_dev_bit(tmp_path, latency):
    """DEV = 1 addresses the slave: its own data, serial and interrupt."""
    m = make_image(tmp_path / "m.img", 8)
    s = tmp_path / "s.img"
    s.write_bytes(b"\x11" * SECTOR * 4)
    r = Rig(AtaDisk(m), AtaDisk(s), latency=latency)
    r.command(0x20, lba=1, dev=1)
    r.settle()
    assert r.sink.level
    assert r.status() & DRQ
    assert r.read_block(SECTOR) == b"\x11" * SECTOR
    r.command(0xEC, dev=1)
    r.settle()
    w = r.words()
    assert ata_string(w[10:20]) == "L4EMU0002" and w[60] == 4
    r.command(0x20, lba=1, dev=0)
    r.settle()
    assert r.read_block(SECTOR) == pattern(1)


def test_absent_slave_reads_status_zero_and_ignores_commands(img, latency):
    """Selecting an absent slave: status and alternate status read 0, commands do nothing,
    no interrupt; the registers read back what was written."""
    r = Rig(AtaDisk(img), None, latency=latency)
    r.command(0xEC, dev=1)
    r.clock.advance(1000)
    r.clock.fire_due()
    assert r.status() == 0 and r.alt() == 0 and r.inb(BASE + 1) == 0
    assert r.sink.edges == 0 and r.ch.io_read(BASE, 2) == 0xFFFF
    r.outb(BASE + 2, 0x55)
    assert r.inb(BASE + 2) == 0x55
    r.outb(BASE + 6, 0xA0)
    assert r.status() == DRDY | DSC


def test_srst_gives_signature(img, latency):
    """SRST: BSY while asserted; on release the ATA signature (count 1, LBA low 1, mid 0,
    high 0, device 0), error 01h, DRDY, drive 0 selected, transfer abandoned, no interrupt."""
    r = Rig(AtaDisk(img), AtaDisk(img), latency=latency)
    r.command(0x20, lba=9, count=4, dev=1)
    r.settle()
    r.outb(CTRL, SRST)
    assert r.alt() & BSY and not r.sink.level
    r.outb(CTRL, 0)
    assert [r.inb(BASE + k) for k in range(1, 7)] == [0x01, 1, 1, 0, 0, 0]
    assert r.status() == DRDY | DSC
    assert r.ch.selected == 0 and r.ch.io_read(BASE, 2) == 0xFFFF
    assert r.sink.edges == 1


def test_unknown_and_unsupported_commands_abort(img, latency):
    """Unknown command, NOP, DEVICE RESET on a non-packet device, IDENTIFY PACKET, and a DMA
    transfer mode: ERR + ABRT with an interrupt each."""
    r = Rig(AtaDisk(img), latency=latency)
    for n, (cmd, feature, count) in enumerate(
            [(0xFA, 0, 0), (0x00, 0, 0), (0x08, 0, 0), (0xA1, 0, 0), (0xEF, 0x03, 0x42)]):
        r.command(cmd, feature=feature, count=count)
        r.settle()
        assert r.sink.edges == n + 1
        assert r.status() == DRDY | DSC | ERR and r.inb(BASE + 1) == ABRT, hex(cmd)


def test_housekeeping_commands(img, latency):
    """FLUSH CACHE, SET FEATURES PIO mode 4, CHECK POWER MODE (count FFh), IDLE IMMEDIATE,
    INITIALIZE DEVICE PARAMETERS, READ VERIFY: each completes with an interrupt, no error."""
    r = Rig(AtaDisk(img), latency=latency)
    for cmd, feature, count in [(0xE7, 0, 0), (0xEF, 0x03, 0x0C), (0xE5, 0, 0),
                                (0xE1, 0, 0), (0x91, 0, 63), (0x40, 0, 4)]:
        r.command(cmd, feature=feature, count=count)
        r.settle()
        assert r.status() == DRDY | DSC, hex(cmd)
    r.command(0xE5)
    r.settle()
    assert r.inb(BASE + 2) == 0xFF


def test_chs_addressing(img, latency):
    """With the LBA bit clear the task file is cylinder/head/sector under the 16-head,
    63-sector translation; a sector number of 0 is IDNF."""
    r = Rig(AtaDisk(img), latency=latency)
    # C0 H0 S5 -> LBA 4
    r.outb(BASE + 6, 0xA0)
    r.outb(BASE + 2, 1)
    r.outb(BASE + 3, 5)
    r.outb(BASE + 4, 0)
    r.outb(BASE + 5, 0)
    r.outb(BASE + 7, 0x20)
    r.settle()
    assert r.read_block(SECTOR) == pattern(4)
    r.outb(BASE + 3, 0)
    r.outb(BASE + 7, 0x20)
    r.settle()
    assert r.status() & ERR and r.inb(BASE + 1) == IDNF


def test_data_port_without_drq(img):
    """Data reads without DRQ return all ones, writes are ignored, and an 8-bit access during
    a transfer moves one byte."""
    r = Rig(AtaDisk(img))
    assert r.ch.io_read(BASE, 2) == 0xFFFF and r.ch.io_read(BASE, 4) == 0xFFFFFFFF
    r.ch.io_write(BASE, 2, 0x1234)
    r.command(0x20, lba=1)
    assert r.ch.io_read(BASE, 1) == pattern(1)[0]
    assert r.read_block(SECTOR - 1, 1) == pattern(1)[1:]
    assert r.status() == DRDY | DSC


def test_delayed_completion_shows_bsy(img):
    """With a latency the drive is BSY until the scheduled completion; data cannot be read
    early and no interrupt comes before it."""
    r = Rig(AtaDisk(img), latency=500)
    r.command(0x20, lba=1)
    assert r.status() & BSY and not r.status() & DRQ
    assert r.ch.io_read(BASE, 2) == 0xFFFF and r.sink.edges == 0
    r.clock.advance(499)
    r.clock.fire_due()
    assert r.alt() & BSY
    r.clock.advance(1)
    r.clock.fire_due()
    assert r.alt() == DRDY | DSC | DRQ and r.sink.edges == 1
    assert r.read_block(SECTOR) == pattern(1)


def test_save_load_mid_transfer(img, latency):
    """save_state in the middle of a multi-sector read (and, delayed, while BSY) restored into
    a fresh channel continues the transfer with the same data and interrupt line."""
    r = Rig(AtaDisk(img), latency=latency)
    r.command(0x20, lba=30, count=2)
    r.settle()
    r.status()
    half = r.read_block(SECTOR // 2)
    r2 = Rig(AtaDisk(img), latency=latency)
    r2.ch.load_state(r.ch.save_state())
    rest = r2.read_block(SECTOR // 2)
    assert half + rest == pattern(30)
    state = r2.ch.save_state()  # BSY (delayed) or DRQ + INTRQ (instant) for sector 31
    r3 = Rig(AtaDisk(img), latency=latency)
    r3.ch.load_state(state)
    r3.settle()
    assert r3.sink.level
    assert r3.read_block(SECTOR) == pattern(31)


def test_reset_restores_power_on_state(img):
    """reset(): signature, multiple mode off, no interrupt, drive 0 selected."""
    r = Rig(AtaDisk(img))
    r.command(0xC6, count=8)
    r.command(0x20, lba=1, dev=0)
    assert r.sink.level
    r.ch.reset()
    assert not r.sink.level
    assert [r.inb(BASE + k) for k in range(1, 7)] == [0x01, 1, 1, 0, 0, 0]
    r.command(0xEC)
    assert r.words()[59] == 0x0100


def test_size_not_multiple_of_512_warns_and_serves_whole_sectors(tmp_path):
    """An image of 3 sectors + 100 bytes: one warning naming the size and the unused tail;
    3 sectors served, the tail unreachable."""
    img = make_image(tmp_path / "odd.img", 3, extra=100)
    disk = AtaDisk(img)
    assert disk.warning == (f"{img}: size {3 * SECTOR + 100} is not a multiple of 512; "
                            "the last 100 bytes are not used")
    assert disk.sectors == 3
    r = Rig(disk)
    r.command(0x20, lba=2)
    assert r.read_block(SECTOR) == pattern(2)
    r.command(0x20, lba=3)
    assert r.status() & ERR and r.inb(BASE + 1) == IDNF
    assert AtaDisk(make_image(tmp_path / "even.img", 2)).warning is None


def test_bad_images_are_user_errors(tmp_path):
    """Missing file, directory, empty file: UserError with the path; nothing is created."""
    missing = tmp_path / "nope.img"
    with pytest.raises(UserError, match=r"nope\.img: no such disk image$"):
        AtaDisk(missing)
    assert not missing.exists()
    with pytest.raises(UserError, match="directory"):
        AtaDisk(tmp_path)
    with pytest.raises(UserError, match="directory"):
        AtaDisk(tmp_path, readonly=True)
    empty = tmp_path / "empty.img"
    empty.write_bytes(b"")
    with pytest.raises(UserError, match="empty disk image"):
        AtaDisk(empty)
    small = tmp_path / "small.img"
    small.write_bytes(b"x" * 100)
    with pytest.raises(UserError, match="empty disk image"):
        AtaDisk(small)
