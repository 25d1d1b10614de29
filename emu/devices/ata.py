"""ATA primary channel: two drives over raw image files, PIO only (DESIGN D9).

The device speaks the ATA/ATAPI-6 command set the way Linux's (libata, pata_legacy) and xv6's IDE
drivers program it: LBA28 (and CHS) addressing, READ/WRITE SECTORS, READ/WRITE MULTIPLE,
IDENTIFY DEVICE, FLUSH CACHE and the housekeeping commands probes send.  No DMA.

Registers (offsets from `base`, default 0x1F0; `ctrl` default 0x3F6):

    port    read                                write
    ------  ----------------------------------  ---------------------------------------------
    base+0  data (8, 16 or 32 bits; see below)   data
    base+1  error                                features
    base+2  sector count                         sector count (0 means 256)
    base+3  LBA 7:0    (CHS: sector number)      same
    base+4  LBA 15:8   (CHS: cylinder low)       same
    base+5  LBA 23:16  (CHS: cylinder high)      same
    base+6  device: bit 6 LBA, bit 4 DEV,        same; DEV selects drive 0 (master) or 1 (slave)
            bits 3:0 LBA 27:24 (CHS: head)
    base+7  status; reading it clears INTRQ      command
    ctrl    alternate status (INTRQ untouched)   device control: bit 1 nIEN, bit 2 SRST

    status  0x80 BSY  0x40 DRDY  0x20 DF  0x10 DSC  0x08 DRQ  0x01 ERR
    error   0x40 UNC  0x10 IDNF  0x04 ABRT  (after reset/diagnostics: 0x01 = passed)

Both drives latch every write to base+1..base+6 and to the device control register (as on a real
cable); reads and the command register go to the drive DEV selects.  The selected drive alone
drives INTRQ, which reaches the IRQ line unless nIEN is set.

Timing.  Work happens at once: a read fetches its next block from the file when the block is
set up, a write goes to the file (`os.pwrite`) the moment the host has written the block's last
byte.  What the guest *sees* is delayed by `latency` guest instructions (default
`DEFAULT_LATENCY`): the drive shows BSY, and a `clock` event then posts the final status and
asserts INTRQ.  So a write is in the file before any status or interrupt says it is done.  The
first block of a PIO-out command gets DRQ at once with no BSY and no interrupt (xv6 writes its
data straight after the command byte).  With `latency=0` everything completes inside the
I/O access itself (device unit tests; the run loop then has to notice the IRQ on its own).
SRST completes as soon as the host clears it, without an interrupt.

Absent drive.  With DEV selecting a drive that is not there, status and alternate status read
0x00 (a drive that is neither busy nor ready: Linux's probe classifies it as no device, xv6's
probe loop sees it as missing), the error register reads 0, the other registers read back what
was written (drive 0 answers for it), commands are ignored and it never raises INTRQ.

Errors (status ERR|DRDY|DSC, INTRQ asserted, no data phase):
    unknown/unsupported command, NOP, DEVICE RESET (not a packet device), IDENTIFY PACKET,
    READ/WRITE MULTIPLE with multiple mode off, bad SET MULTIPLE / SET FEATURES argument,
    write to a read-only image                                    -> ABRT
    LBA or CHS address outside the image, or a transfer crossing its end -> IDNF; nothing is
    transferred and the LBA registers name the first sector in error (LBA mode)
    host read failure -> UNC; host write or fsync failure -> ABRT with DF in the status

Guest nonsense never raises: data-port reads without DRQ return all ones, data-port writes
without DRQ and commands written while BSY are ignored, a command written during a transfer
abandons that transfer and runs.  An access straddling the end of a block moves the bytes up to
the end and reads the rest as 0xFF.  An 8-bit data access moves one byte; a 32-bit one moves two
words.  A 16/32-bit access to a task-file register is split into byte accesses of consecutive
ports, as the ISA bus does for an 8-bit device.

Images are never truncated or grown: they are opened without O_CREAT/O_TRUNC, and a transfer
outside the whole 512-byte sectors of the file is refused (IDNF).  Only the first 2^28-1 sectors
are reachable (LBA28).
"""
from __future__ import annotations

import os
import stat
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

from emu.bus import ALL_ONES, Device, IrqLine
from emu.clock import Clock, Event
from emu.errors import UserError

SECTOR = 512
LBA28_LIMIT = 0x0FFFFFFF  # highest sector count words 60-61 can state

# Status register
BSY, DRDY, DF, DSC, DRQ, ERR = 0x80, 0x40, 0x20, 0x10, 0x08, 0x01
IDLE = DRDY | DSC
# Error register
UNC, IDNF, ABRT = 0x40, 0x10, 0x04
DIAG_PASSED = 0x01
# Device control register
NIEN, SRST = 0x02, 0x04
# Device register
DEV, LBA = 0x10, 0x40

MAX_MULTIPLE = 16
DEFAULT_HEADS, DEFAULT_SPT = 16, 63
#: Guest instructions between a command (or a finished block) and the status/INTRQ it earns:
#: 2 µs at the default 1e9 instructions per second.
DEFAULT_LATENCY = 2000

MODEL = "L4EMU ATA DISK"
FIRMWARE = "0.1"


class AtaDisk:
    """A raw disk image: whole 512-byte sectors of a file (or block device), read and
    written in place.

    `warning` is a one-line message for the CLI to print once (a size that is not a whole number
    of sectors), else None.  `last_io_error` remembers the last host I/O failure the guest was
    told about as a disk error.
    """

    def __init__(self, path: str | os.PathLike, readonly: bool = False) -> None:
        self.path = os.fspath(path)
        self.readonly = readonly
        self.warning: str | None = None
        self.last_io_error: str | None = None
        p = self.path
        # No O_CREAT, no O_TRUNC: a typo never makes an empty image, and a size is never changed.
        flags = (os.O_RDONLY if readonly else os.O_RDWR) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(p, flags | getattr(os, "O_BINARY", 0))
        except FileNotFoundError:
            raise UserError(f"{p}: no such disk image") from None
        except IsADirectoryError:
            raise UserError(f"{p}: is a directory, not a disk image") from None
        except PermissionError:
            hint = "" if readonly else " (attach it read-only?)"
            raise UserError(f"{p}: permission denied{hint}") from None
        except OSError as e:
            raise UserError(f"{p}: cannot open disk image: {e.strerror}") from None
        try:
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                raise UserError(f"{p}: is a directory, not a disk image")
            # lseek rather than st_size: a block device reports st_size 0.
            size = os.lseek(fd, 0, os.SEEK_END)
        except OSError as e:
            os.close(fd)
            raise UserError(f"{p}: cannot size disk image: {e.strerror}") from None
        except UserError:
            os.close(fd)
            raise
        self.size = size
        self.sectors = size // SECTOR
        if self.sectors == 0:
            os.close(fd)
            raise UserError(f"{p}: empty disk image ({size} bytes; a disk needs at least one "
                            f"{SECTOR}-byte sector)")
        if size % SECTOR:
            self.warning = (f"{p}: size {size} is not a multiple of {SECTOR}; "
                            f"the last {size % SECTOR} bytes are not used")
        self._fd = fd
        self._close = weakref.finalize(self, os.close, fd)

    def read(self, lba: int, count: int) -> bytes:
        """`count` sectors from `lba`; raises OSError on a host failure."""
        want = count * SECTOR
        off = lba * SECTOR
        parts = []
        got = 0
        while got < want:
            chunk = os.pread(self._fd, want - got, off + got)
            if not chunk:  # the file shrank under us: what is gone reads as zeros
                parts.append(bytes(want - got))
                break
            parts.append(chunk)
            got += len(chunk)
        return b"".join(parts)

    def write(self, lba: int, data: bytes) -> None:
        """Write whole sectors at `lba`, all of them before returning; raises OSError."""
        view = memoryview(data)
        off = lba * SECTOR
        while view:
            n = os.pwrite(self._fd, view, off)
            view = view[n:]
            off += n

    def flush(self) -> None:
        os.fsync(self._fd)

    def close(self) -> None:
        self._close()

    def __repr__(self) -> str:
        ro = " read-only" if self.readonly else ""
        return f"<AtaDisk {self.path} {self.sectors} sectors{ro}>"


def _ata_string(text: str, nbytes: int) -> list[int]:
    """IDENTIFY text field: space-padded ASCII, first character in the high byte of each word."""
    b = text.encode("ascii")[:nbytes].ljust(nbytes, b" ")
    return [(b[i] << 8) | b[i + 1] for i in range(0, nbytes, 2)]


@dataclass
class _Drive:
    """One drive's registers and the transfer it has in progress."""

    disk: AtaDisk | None
    serial: str
    # Task file as this drive latched it; after reset it holds the ATA signature.
    feature: int = 0
    count: int = 1
    lba_low: int = 1
    lba_mid: int = 0
    lba_high: int = 0
    device: int = 0
    status: int = IDLE
    error: int = DIAG_PASSED
    intrq: bool = False
    multiple: int = 0  # sectors per block for READ/WRITE MULTIPLE; 0 = multiple mode off
    heads: int = DEFAULT_HEADS  # CHS translation (INITIALIZE DEVICE PARAMETERS)
    spt: int = DEFAULT_SPT
    # Transfer: "in" (device to host), "out", or "" (none).  `buf` is the current block,
    # `lba` its first sector, `left` the sectors still to move including this block.
    direction: str = ""
    buf: bytearray = field(default_factory=bytearray)
    pos: int = 0
    lba: int = 0
    left: int = 0
    block: int = 1
    # Status to post (with INTRQ) when the pending completion event fires.
    pending: int | None = None

    @property
    def present(self) -> bool:
        return self.disk is not None

    def power_on(self) -> None:
        self.signature()
        self.multiple = 0
        self.heads, self.spt = DEFAULT_HEADS, DEFAULT_SPT
        self.feature = 0

    def signature(self) -> None:
        """Reset outcome: the ATA (non-packet) signature, diagnostics passed, no transfer."""
        self.count, self.lba_low, self.lba_mid, self.lba_high, self.device = 1, 1, 0, 0, 0
        self.error = DIAG_PASSED
        self.status = IDLE
        self.intrq = False
        self.pending = None
        self.end_transfer()

    def end_transfer(self) -> None:
        self.direction = ""
        self.buf = bytearray()
        self.pos = self.left = 0


class AtaChannel(Device):
    """An ATA channel (IRQ 14 on the primary) with a master and a slave drive, either absent.

    `latency` is the number of guest instructions between a command (or a transferred block)
    and the status/INTRQ that reports it; see the module docstring.
    """

    name = "ata"

    def __init__(self, clock: Clock, irq: IrqLine, master: AtaDisk | None,
                 slave: AtaDisk | None, base: int = 0x1F0, ctrl: int = 0x3F6,
                 latency: int = DEFAULT_LATENCY) -> None:
        if latency < 0:
            raise ValueError("latency must not be negative")
        self.clock = clock
        self.irq = irq
        self.base = base
        self.ctrl = ctrl
        self.latency = latency
        self.name = f"ata@{base:#x}"
        self.ports = ((base, 8), (ctrl, 1))
        self._drives = [_Drive(master, "L4EMU0001"), _Drive(slave, "L4EMU0002")]
        self._events: list[Event | None] = [None, None]
        self._line = False
        self.selected = 0
        self.devctl = 0
        self.reset()

    @property
    def drives(self) -> tuple[AtaDisk | None, AtaDisk | None]:
        return self._drives[0].disk, self._drives[1].disk

    # -- reset and interrupts ------------------------------------------------------------
    def reset(self) -> None:
        """Power-on / hardware reset: signature in both drives, multiple mode off, drive 0."""
        for i, d in enumerate(self._drives):
            self._cancel(i)
            d.power_on()
        self.selected = 0
        self.devctl = 0
        self._line = False
        self.irq.lower()

    def _update_irq(self) -> None:
        d = self._drives[self.selected]
        level = d.intrq and d.present and not self.devctl & NIEN
        if level != self._line:
            self._line = level
            if level:
                self.irq.raise_()
            else:
                self.irq.lower()

    def _cancel(self, i: int) -> None:
        self.clock.cancel(self._events[i])
        self._events[i] = None
        self._drives[i].pending = None

    def _complete(self, d: _Drive, status: int) -> None:
        """Post `status` and assert INTRQ, after `latency` instructions of BSY."""
        if self.latency == 0:
            d.status = status
            d.intrq = True
            self._update_irq()
            return
        i = self._drives.index(d)
        self._cancel(i)
        d.status = BSY | DRDY | DSC
        d.pending = status
        self._events[i] = self.clock.schedule_in(self.latency, _bind(self._finish, i),
                                                 f"{self.name} drive {i} ready")

    def _finish(self, i: int) -> None:
        d = self._drives[i]
        self._events[i] = None
        if d.pending is None:
            return
        d.status, d.pending = d.pending, None
        d.intrq = True
        self._update_irq()

    # -- port I/O ------------------------------------------------------------------------
    def io_read(self, port: int, size: int) -> int:
        if port == self.base:
            return self._data_read(size)
        if size == 1:
            return self._read8(port)
        # A wide access to 8-bit registers: the bus splits it into consecutive byte cycles.
        return sum(self._read8(port + k) << (8 * k) for k in range(size))

    def io_write(self, port: int, size: int, value: int) -> None:
        if port == self.base:
            self._data_write(size, value)
            return
        for k in range(size):
            self._write8(port + k, (value >> (8 * k)) & 0xFF)

    def _read8(self, port: int) -> int:
        d = self._drives[self.selected]
        if port == self.ctrl:
            return d.status if d.present else 0
        reg = port - self.base
        if reg == 0:
            return self._data_read(1)
        if reg == 7:
            if not d.present:
                return 0
            if d.intrq:
                d.intrq = False
                self._update_irq()
            return d.status
        if reg == 1:
            return d.error if d.present else 0
        if reg == 2:
            return d.count
        if reg == 3:
            return d.lba_low
        if reg == 4:
            return d.lba_mid
        if reg == 5:
            return d.lba_high
        if reg == 6:
            return d.device
        return 0xFF  # not ours (a wide access ran past the block)

    def _write8(self, port: int, value: int) -> None:
        if port == self.ctrl:
            self._device_control(value)
            return
        reg = port - self.base
        if reg == 7:
            self._command(value)
            return
        if not 1 <= reg <= 6:
            return
        attr = ("feature", "count", "lba_low", "lba_mid", "lba_high", "device")[reg - 1]
        for d in self._drives:
            setattr(d, attr, value)
        if reg == 6:
            self.selected = (value & DEV) >> 4
            self._update_irq()

    def _device_control(self, value: int) -> None:
        old, self.devctl = self.devctl, value
        if value & SRST and not old & SRST:
            # Reset asserted: whatever was going on stops; drives are busy until SRST clears.
            for i, d in enumerate(self._drives):
                self._cancel(i)
                d.end_transfer()
                d.intrq = False
                d.status = BSY
        elif old & SRST and not value & SRST:
            # Multiple mode and the CHS translation survive a soft reset; only power-on clears them.
            for d in self._drives:
                d.signature()
            self.selected = 0
        self._update_irq()

    # -- data port -----------------------------------------------------------------------
    def _data_read(self, size: int) -> int:
        d = self._drives[self.selected]
        if d.direction != "in" or not d.status & DRQ:
            return ALL_ONES[size]
        pos, end = d.pos, len(d.buf)
        stop = pos + size
        if stop < end:  # the common case: inside the block
            d.pos = stop
            return int.from_bytes(d.buf[pos:stop], "little")
        have = end - pos
        value = int.from_bytes(d.buf[pos:end], "little")
        value |= ALL_ONES[size] & ~((1 << (8 * have)) - 1)
        d.pos = end
        self._in_block_done(d)
        return value

    def _data_write(self, size: int, value: int) -> None:
        d = self._drives[self.selected]
        if d.direction != "out" or not d.status & DRQ:
            return
        pos = d.pos
        n = min(size, len(d.buf) - pos)
        d.buf[pos:pos + n] = value.to_bytes(size, "little")[:n]
        d.pos = pos + n
        if d.pos == len(d.buf):
            self._out_block_done(d)

    def _in_block_done(self, d: _Drive) -> None:
        n = len(d.buf) // SECTOR
        d.lba += n
        d.left -= n
        if d.left <= 0:
            # Last word of the last block: DRQ drops, no interrupt (PIO data-in protocol).
            d.end_transfer()
            d.status = IDLE
            return
        if self._load_block(d):
            self._complete(d, IDLE | DRQ)

    def _out_block_done(self, d: _Drive) -> None:
        n = len(d.buf) // SECTOR
        try:
            d.disk.write(d.lba, bytes(d.buf))
        except OSError as e:
            d.disk.last_io_error = f"{d.disk.path}: write at sector {d.lba}: {e.strerror}"
            self._fail(d, ABRT, DF)
            return
        d.lba += n
        d.left -= n
        if d.left <= 0:
            d.end_transfer()
            self._complete(d, IDLE)
            return
        d.buf = bytearray(min(d.block, d.left) * SECTOR)
        d.pos = 0
        self._complete(d, IDLE | DRQ)

    def _load_block(self, d: _Drive) -> bool:
        """Fetch the next PIO-in block from the image; on a host failure, fail with UNC."""
        n = min(d.block, d.left)
        try:
            d.buf = bytearray(d.disk.read(d.lba, n))
        except OSError as e:
            d.disk.last_io_error = f"{d.disk.path}: read at sector {d.lba}: {e.strerror}"
            self._fail(d, UNC)
            return False
        d.pos = 0
        return True

    # -- commands ------------------------------------------------------------------------
    def _command(self, cmd: int) -> None:
        d = self._drives[self.selected]
        if self.devctl & SRST:
            return
        if cmd == 0x90:  # EXECUTE DEVICE DIAGNOSTIC runs on both drives whatever DEV says
            self._cmd_diagnostic()
            return
        if not d.present or d.status & BSY:
            return
        # Writing the command register negates INTRQ; a new command ends any transfer.
        d.intrq = False
        self._update_irq()
        d.end_transfer()
        d.error = 0
        handler = _COMMANDS.get(cmd)
        if handler is None:
            self._fail(d, ABRT)
        else:
            handler(self, d, cmd)

    def _fail(self, d: _Drive, error: int, extra_status: int = 0) -> None:
        d.end_transfer()
        d.error = error
        self._complete(d, IDLE | ERR | extra_status)

    def _ok(self, d: _Drive, cmd: int = 0) -> None:
        self._complete(d, IDLE)

    def _sectors(self, d: _Drive) -> int:
        """Sectors an LBA28 command can reach."""
        return min(d.disk.sectors, LBA28_LIMIT)

    def _cylinders(self, d: _Drive) -> int:
        """Cylinders of the current CHS translation (at least 1, at most 65535)."""
        return max(1, min(0xFFFF, d.disk.sectors // (d.heads * d.spt)))

    def _address(self, d: _Drive) -> int | None:
        """The task file's start sector: LBA28, or CHS under the current translation (None if
        the CHS address is not one of the translation's)."""
        if d.device & LBA:
            return ((d.device & 0x0F) << 24) | (d.lba_high << 16) | (d.lba_mid << 8) | d.lba_low
        cyl, head, sec = (d.lba_high << 8) | d.lba_mid, d.device & 0x0F, d.lba_low
        if not (1 <= sec <= d.spt and head < d.heads and cyl < self._cylinders(d)):
            return None
        return (cyl * d.heads + head) * d.spt + sec - 1

    def _range(self, d: _Drive) -> tuple[int, int] | None:
        """(start, count) of the requested sectors, or None after failing the command with IDNF."""
        count = d.count or 256
        start = self._address(d)
        limit = self._sectors(d)
        if start is not None and start + count <= limit:
            return start, count
        if start is not None and d.device & LBA:
            # Error outputs: the LBA registers name the first sector that could not be reached.
            bad = max(start, limit)
            d.lba_low, d.lba_mid, d.lba_high = bad & 0xFF, (bad >> 8) & 0xFF, (bad >> 16) & 0xFF
            d.device = (d.device & 0xF0) | ((bad >> 24) & 0x0F)
        self._fail(d, IDNF)
        return None

    def _cmd_read(self, d: _Drive, cmd: int) -> None:
        multiple = cmd == 0xC4
        if multiple and not d.multiple:
            self._fail(d, ABRT)
            return
        rng = self._range(d)
        if rng is None:
            return
        d.lba, d.left = rng
        d.block = d.multiple if multiple else 1
        d.direction = "in"
        if self._load_block(d):
            self._complete(d, IDLE | DRQ)

    def _cmd_write(self, d: _Drive, cmd: int) -> None:
        multiple = cmd == 0xC5
        if (multiple and not d.multiple) or d.disk.readonly:
            self._fail(d, ABRT)
            return
        rng = self._range(d)
        if rng is None:
            return
        d.lba, d.left = rng
        d.block = d.multiple if multiple else 1
        d.direction = "out"
        d.buf = bytearray(min(d.block, d.left) * SECTOR)
        d.pos = 0
        # PIO data-out: the first block is asked for at once, without BSY or an interrupt.
        d.status = IDLE | DRQ

    def _cmd_verify(self, d: _Drive, cmd: int) -> None:
        if self._range(d) is not None:
            self._ok(d)

    def _cmd_seek(self, d: _Drive, cmd: int) -> None:
        start = self._address(d)
        if start is None or start >= self._sectors(d):
            self._fail(d, IDNF)
        else:
            self._ok(d)

    def _cmd_identify(self, d: _Drive, cmd: int) -> None:
        d.buf = bytearray(self.identify(self._drives.index(d)))
        d.pos = 0
        d.lba, d.left, d.block = 0, 1, 1
        d.direction = "in"
        self._complete(d, IDLE | DRQ)

    def _cmd_set_multiple(self, d: _Drive, cmd: int) -> None:
        n = d.count
        if n in (0, 1, 2, 4, 8, 16):
            d.multiple = n  # 0 switches multiple mode off (hdparm -m0)
            self._ok(d)
        else:
            # The standard: an unsupported block size aborts and leaves multiple mode disabled.
            d.multiple = 0
            self._fail(d, ABRT)

    def _cmd_init_params(self, d: _Drive, cmd: int) -> None:
        if d.count == 0:
            self._fail(d, ABRT)
            return
        d.spt = d.count
        d.heads = (d.device & 0x0F) + 1
        self._ok(d)

    def _cmd_set_features(self, d: _Drive, cmd: int) -> None:
        sub = d.feature
        if sub == 0x03:  # set transfer mode: PIO default or PIO flow-control modes 0-4
            mode = d.count
            if mode in (0x00, 0x01) or (mode >> 3 == 1 and mode & 7 <= 4):
                self._ok(d)
            else:
                self._fail(d, ABRT)  # DMA modes: no DMA here
        elif sub in (0x02, 0x82, 0x55, 0xAA, 0x66, 0xCC):
            # Write cache on/off, read look-ahead on/off, revert to defaults on/off: writes go
            # through to the file and there is no look-ahead, so each is a no-op.
            self._ok(d)
        else:
            self._fail(d, ABRT)

    def _cmd_check_power(self, d: _Drive, cmd: int) -> None:
        d.count = 0xFF  # active or idle
        self._ok(d)

    def _cmd_flush(self, d: _Drive, cmd: int) -> None:
        try:
            d.disk.flush()
        except OSError as e:
            d.disk.last_io_error = f"{d.disk.path}: flush: {e.strerror}"
            self._fail(d, ABRT, DF)
            return
        self._ok(d)

    def _cmd_diagnostic(self) -> None:
        """EXECUTE DEVICE DIAGNOSTIC: both drives post the signature; drive 0 interrupts."""
        if not any(d.present for d in self._drives):
            return
        for i, d in enumerate(self._drives):
            self._cancel(i)
            d.signature()
        self.selected = 0
        d0 = self._drives[0]
        if d0.present:
            self._complete(d0, IDLE)
        self._update_irq()

    # -- IDENTIFY ------------------------------------------------------------------------
    def identify(self, index: int) -> bytes:
        """The 512-byte IDENTIFY DEVICE block of drive `index` (0 master, 1 slave)."""
        d = self._drives[index]
        if d.disk is None:
            raise ValueError(f"{self.name}: no drive {index}")
        total = self._sectors(d)
        w = [0] * 256
        w[0] = 0x0040  # ATA device, fixed (not removable)
        w[1] = max(1, min(16383, total // (DEFAULT_HEADS * DEFAULT_SPT)))
        w[2] = 0xC837  # specific configuration: no spin-up SET FEATURES, IDENTIFY complete
        w[3] = DEFAULT_HEADS
        w[6] = DEFAULT_SPT
        w[10:20] = _ata_string(d.serial, 20)
        w[23:27] = _ata_string(FIRMWARE, 8)
        w[27:47] = _ata_string(MODEL, 40)
        w[47] = 0x8000 | MAX_MULTIPLE
        w[49] = 0x0200  # LBA supported; no DMA
        w[50] = 0x4000
        w[51] = 0x0200  # obsolete PIO timing mode 2, for drivers that read it
        w[53] = 0x0003  # words 54-58 and 64-70 are valid
        cyl = self._cylinders(d)
        w[54], w[55], w[56] = cyl, d.heads, d.spt
        chs = min(cyl * d.heads * d.spt, 0xFFFFFFFF)
        w[57], w[58] = chs & 0xFFFF, chs >> 16
        w[59] = 0x0100 | d.multiple  # multiple-sector setting valid; 0 = off
        w[60], w[61] = total & 0xFFFF, total >> 16
        w[64] = 0x0003  # PIO modes 3 and 4
        w[67] = w[68] = 120  # minimum PIO cycle time (ns) without / with IORDY
        w[80] = 0x007E  # ATA-1 .. ATA/ATAPI-6
        w[82] = 0x0008  # power management feature set (CHECK POWER MODE, IDLE, STANDBY)
        w[83] = 0x4000 | 0x1000  # word valid; FLUSH CACHE
        w[84] = 0x4000
        w[85] = 0x0008
        w[86] = 0x1000
        w[87] = 0x4000
        raw = bytearray(b"".join(x.to_bytes(2, "little") for x in w))
        # Integrity word: signature A5h, then a checksum making all 512 bytes sum to 0 mod 256.
        raw[510] = 0xA5
        raw[511] = (-sum(raw[:511])) & 0xFF
        return bytes(raw)

    # -- snapshots -----------------------------------------------------------------------
    _REGS = ("feature", "count", "lba_low", "lba_mid", "lba_high", "device", "status", "error",
             "intrq", "multiple", "heads", "spt", "direction", "pos", "lba", "left", "block")

    def save_state(self) -> dict:
        drives = []
        for i, d in enumerate(self._drives):
            s = {k: getattr(d, k) for k in self._REGS}
            s["buf"] = bytes(d.buf).hex()
            s["path"] = d.disk.path if d.disk else None
            s["readonly"] = d.disk.readonly if d.disk else False
            ev = self._events[i]
            if d.pending is not None and ev is not None:
                s["pending"] = [d.pending, max(0, ev.when - self.clock.now)]
            else:
                s["pending"] = None
            drives.append(s)
        return {"selected": self.selected, "devctl": self.devctl, "drives": drives}

    def load_state(self, state: dict) -> None:
        self.selected = state["selected"]
        self.devctl = state["devctl"]
        for i, s in enumerate(state["drives"]):
            self._cancel(i)
            d = self._drives[i]
            path = s["path"]
            if path is None:
                d.disk = None
            elif d.disk is None or d.disk.path != path or d.disk.readonly != s["readonly"]:
                d.disk = AtaDisk(path, readonly=s["readonly"])
            for k in self._REGS:
                setattr(d, k, s[k])
            d.buf = bytearray.fromhex(s["buf"])
            if s["pending"] is not None:
                status, remaining = s["pending"]
                d.pending = status
                self._events[i] = self.clock.schedule_in(
                    remaining, _bind(self._finish, i), f"{self.name} drive {i} ready")
        # Re-drive the line from the restored state, whatever it was before.
        d = self._drives[self.selected]
        self._line = bool(d.intrq and d.present and not self.devctl & NIEN)
        if self._line:
            self.irq.raise_()
        else:
            self.irq.lower()


def _bind(fn: Callable[[int], None], i: int) -> Callable[[], None]:
    return lambda: fn(i)


# Command byte -> handler.  Everything else (NOP 00h, DEVICE RESET 08h, IDENTIFY PACKET A1h,
# DMA, LBA48 ...) aborts.
_COMMANDS: dict[int, Callable[[AtaChannel, _Drive, int], None]] = {
    0x20: AtaChannel._cmd_read,        # READ SECTORS
    0x21: AtaChannel._cmd_read,        # READ SECTORS without retry (obsolete)
    0xC4: AtaChannel._cmd_read,        # READ MULTIPLE
    0x30: AtaChannel._cmd_write,       # WRITE SECTORS
    0x31: AtaChannel._cmd_write,       # WRITE SECTORS without retry (obsolete)
    0xC5: AtaChannel._cmd_write,       # WRITE MULTIPLE
    0x40: AtaChannel._cmd_verify,      # READ VERIFY SECTORS
    0x41: AtaChannel._cmd_verify,      # READ VERIFY SECTORS without retry (obsolete)
    0xEC: AtaChannel._cmd_identify,    # IDENTIFY DEVICE
    0xC6: AtaChannel._cmd_set_multiple,  # SET MULTIPLE MODE
    0x91: AtaChannel._cmd_init_params,  # INITIALIZE DEVICE PARAMETERS
    0xEF: AtaChannel._cmd_set_features,  # SET FEATURES
    0xE5: AtaChannel._cmd_check_power,  # CHECK POWER MODE
    0x98: AtaChannel._cmd_check_power,  # CHECK POWER MODE (ATA-1 code)
    0xE7: AtaChannel._cmd_flush,       # FLUSH CACHE
}
# RECALIBRATE (1xh, obsolete but still sent by old drivers) and the power commands: no-ops for
# a disk that never spins down.  STANDBY IMMEDIATE E0h, IDLE IMMEDIATE E1h, STANDBY E2h, IDLE
# E3h, and their ATA-1 codes 94h-97h.
for _op in (*range(0x10, 0x20), 0xE0, 0xE1, 0xE2, 0xE3, 0x94, 0x95, 0x96, 0x97):
    _COMMANDS[_op] = AtaChannel._ok
for _op in range(0x70, 0x80):  # SEEK (obsolete; 71h-7Fh are its ATA-1 forms)
    _COMMANDS[_op] = AtaChannel._cmd_seek
del _op
