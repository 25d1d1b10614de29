"""Devices driven by guest programs the way real drivers program them.

Each test assembles a small ring-0 guest (tests/guest.py) that talks to a device through its
ports exactly as a PC driver does (Linux, xv6), stores what it sees in the RESULT area at 0x6000
and ends through the isa-debug-exit port; the host then checks RESULT, guest memory, the device
observers and, for the disk, the image file itself.  Each test names the datasheet behaviour it
relies on.
"""
from __future__ import annotations

import struct
from datetime import datetime
from pathlib import Path

import pytest

from emu.asm import assemble
from emu.devices.ata import AtaDisk
from emu.machine import RTC_EPOCH, Machine, Stop
from tests.guest import RESULT, Guest, exit_code, pic_init, result

SECTOR = 512
SECTORS = 64
BUF = 0x200000       # transfer buffers, far from code, tables and RESULT
BUF2 = 0x210000
XFER_PTR = 0x6100    # where an interrupt handler keeps its transfer pointer
LOW_CODE = 0x8000    # code that must run below 1 MiB


def run_guest(kernel: str, handlers: str = "", gates: dict | None = None,
              machine: Machine | None = None, max_insns: int = 5_000_000):
    g = Guest(kernel=kernel, handlers=handlers, gates=gates or {})
    m, syms = g.build(machine)
    r = m.run(max_insns=max_insns)
    return m, r, g, syms


def results(m: Machine, n: int) -> list[int]:
    return [result(m, i) for i in range(n)]




# =================================================================================================
# MC146818 RTC
# =================================================================================================
# Linux's mc146818_get_time(): wait until UIP is clear, read the time registers, then check that
# UIP is still clear and the seconds did not change (else an update hit the reads: retry).
RTC_READ_TIME = """
{tag}_retry:
    mov al, 0x0a
    out 0x70, al
    in al, 0x71
    test al, 0x80           ; UIP: an update is due within 244 us
    jnz {tag}_retry
    mov edi, {out}
    lea esi, [{tag}_regs]
    mov ecx, 7
{tag}_next:
    lodsb
    out 0x70, al
    in al, 0x71
    movzx eax, al
    stosd
    loop {tag}_next
    mov al, 0x0a
    out 0x70, al
    in al, 0x71
    test al, 0x80
    jnz {tag}_retry
    mov al, 0x00
    out 0x70, al
    in al, 0x71
    cmp al, [{out}]
    jne {tag}_retry
    jmp {tag}_done
{tag}_regs:
    .byte 0x00, 0x02, 0x04, 0x07, 0x08, 0x09, 0x32   ; sec min hour mday month year century
{tag}_done:
"""


def rtc_read_time(tag: str, out: int) -> str:
    return RTC_READ_TIME.format(tag=tag, out=out)


def test_rtc_time_in_bcd_then_binary_after_status_b_dm():
    """MC146818 datasheet, 'Time, calendar and alarm locations' and register B bit 2 (DM): with
    DM = 0 (the PC default) the time registers read in BCD; after the guest sets DM = 1 they read
    in binary.  The century (CMOS 0x32, IBM convention) is encoded the same way.  The guest waits
    for UIP = 0 before reading, as Linux's mc146818_get_time() does."""
    kernel = (rtc_read_time("bcd", RESULT)
              + """
    mov al, 0x0b
    out 0x70, al
    in al, 0x71
    mov [0x6040], eax
    or al, 0x04             ; DM = 1: binary
    mov ah, al
    mov al, 0x0b
    out 0x70, al
    mov al, ah
    out 0x71, al
"""
              + rtc_read_time("bin", RESULT + 0x20)
              + "EXIT 1\n")
    m, r, _, _ = run_guest(kernel, machine=Machine(ram_mib=16,
                                                   rtc_start=datetime(2026, 11, 22, 12, 34, 56)))
    assert exit_code(r) == 1, m.report()
    assert results(m, 7) == [0x56, 0x34, 0x12, 0x22, 0x11, 0x26, 0x20]
    assert result(m, 0x10) & 0xFF == 0x02           # status B as the BIOS leaves it: 24 h, BCD
    assert [result(m, 8 + i) for i in range(7)] == [56, 34, 12, 22, 11, 26, 20]
    assert m.rtc.now() == datetime(2026, 11, 22, 12, 34, 56)


def test_rtc_default_start_is_the_fixed_epoch():
    """DESIGN D5 (determinism): without `rtc_start` the RTC starts at RTC_EPOCH, never at the
    host's time, so two machines read the same date: 2026-01-01 00:00:00, a Thursday (day of
    week register 0x06 = 5, Sunday = 1)."""
    kernel = rtc_read_time("t", RESULT) + """
    mov al, 0x06
    out 0x70, al
    in al, 0x71
    mov [0x6020], eax
    EXIT 1
"""
    seen = []
    for _ in range(2):
        m, r, _, _ = run_guest(kernel)
        assert exit_code(r) == 1, m.report()
        seen.append((results(m, 7), result(m, 8), r.insns))
    assert RTC_EPOCH == datetime(2026, 1, 1, 0, 0, 0)
    assert seen[0] == seen[1]
    assert seen[0][0] == [0x00, 0x00, 0x00, 0x01, 0x01, 0x26, 0x20]
    assert seen[0][1] == 5


def test_rtc_seconds_advance_on_the_falling_edge_of_uip():
    """MC146818 register A bit 7 (UIP) rises 244 us before the update cycle and falls when the
    registers hold the new second: a guest that waits for UIP to rise and then to fall (the old
    Linux get_cmos_time() synchronisation) reads second 57 right after 56, one virtual second
    (clock.ips instructions) after the start.  A slow clock (1e5 instructions per second) keeps
    the spin short."""
    m = Machine(ram_mib=16, ips=100_000, rtc_start=datetime(2026, 11, 22, 12, 34, 56))
    kernel = """
    mov al, 0x00
    out 0x70, al
    in al, 0x71
    mov [0x6000], eax
wait_rise:
    mov al, 0x0a
    out 0x70, al
    in al, 0x71
    test al, 0x80
    jz wait_rise
    mov [0x6004], eax
wait_fall:
    mov al, 0x0a
    out 0x70, al
    in al, 0x71
    test al, 0x80
    jnz wait_fall
    mov al, 0x00
    out 0x70, al
    in al, 0x71
    mov [0x6008], eax
    EXIT 1
"""
    m, r, _, _ = run_guest(kernel, machine=m)
    assert exit_code(r) == 1, m.report()
    assert result(m, 0) == 0x56
    assert result(m, 1) == 0xA6                     # UIP | divider 010 | rate 0110
    assert result(m, 2) == 0x57
    assert 100_000 <= r.insns < 100_000 + 200


def test_cmos_memory_size_bytes():
    """IBM PC AT CMOS map, as the module docstring lists it: 0x15/0x16 base memory in KiB (640),
    0x17/0x18 and 0x30/0x31 extended memory above 1 MiB in KiB, 0x34/0x35 memory above 16 MiB in
    64 KiB units; what BIOS-less guests size memory from.  A 64 MiB machine."""
    kernel = """
    mov esi, 0x6000
    lea ebx, [cmos_regs]
    mov ecx, 8
next_reg:
    mov al, [ebx]
    out 0x70, al
    in al, 0x71
    movzx eax, al
    mov [esi], eax
    add esi, 4
    inc ebx
    loop next_reg
    EXIT 1
cmos_regs:
    .byte 0x15, 0x16, 0x17, 0x18, 0x30, 0x31, 0x34, 0x35
"""
    m, r, _, _ = run_guest(kernel, machine=Machine(ram_mib=64))
    assert exit_code(r) == 1, m.report()
    values = results(m, 8)
    assert values[0] | values[1] << 8 == 640
    assert values[2] | values[3] << 8 == 63 * 1024
    assert values[4] | values[5] << 8 == 63 * 1024
    assert values[6] | values[7] << 8 == 48 * 16


RTC_IRQ_HANDLER = """
rtc_irq:
    pushad
    rdtsc                   ; the TSC counts retired instructions here
    mov ebx, [0x6000]
    mov [0x6040 + ebx * 4], eax
    mov al, 0x0c            ; status C: which sources, and reading it lowers IRQ 8
    out 0x70, al
    in al, 0x71
    movzx eax, al
    or [0x6004], eax
    mov al, 0x00
    out 0x70, al
    in al, 0x71
    movzx eax, al
    mov [0x6010 + ebx * 4], eax
    inc dword ptr [0x6000]
    mov al, 0x60            ; specific EOI, slave IR0
    out 0xa0, al
    mov al, 0x62            ; specific EOI, master IR2
    out 0x20, al
    popad
    iretd
"""


@pytest.mark.parametrize("reg_a,reg_b,flags,period", [
    # UIE: once a second, after the update.  PF is in C too: the 1024 Hz rate still runs, and
    # a flag is set whether or not its interrupt is enabled.
    (0x26, 0x12, 0xD0, 1_000_000_000),
    (0x26, 0x42, 0xC0, 976_562.5),          # PIE, rate 6: 1024 Hz
])
def test_rtc_interrupts_through_irq8(reg_a, reg_b, flags, period):
    """MC146818 datasheet, register B (UIE, PIE), register C and the IRQ pin: the update-ended
    interrupt comes once a second just after the time registers change, the periodic one at
    32768 >> (rate - 1) Hz; IRQ 8 stays asserted until status C is read (IRQF with UF or PF
    set; the flags themselves are set whether or not their enable is).  IRQ 8 arrives as
    vector 0x28 through the slave 8259A set up as Linux does; the guest waits with `sti; hlt`,
    so the machine skips to each event and delivers it there: the handler's `rdtsc`, after one
    instruction (`pushad`), reads the event time + 1. Three interrupts, the k-th at k periods
    (rounded down to an instruction)."""
    kernel = pic_init(0xFB, 0xFE) + f"""
    mov al, 0x0a
    out 0x70, al
    mov al, {reg_a:#x}
    out 0x71, al
    mov al, 0x0b
    out 0x70, al
    mov al, {reg_b:#x}
    out 0x71, al
wait_irq:
    sti
    hlt
    cli
    cmp dword ptr [0x6000], 3
    jb wait_irq
    EXIT 1
"""
    m = Machine(ram_mib=16, rtc_start=datetime(2026, 11, 22, 12, 34, 56))
    m, r, _, _ = run_guest(kernel, RTC_IRQ_HANDLER, gates={0x28: ("rtc_irq", 0xE, 0)},
                           machine=m, max_insns=4_000_000_000)
    assert exit_code(r) == 1, m.report()
    assert result(m, 0) == 3
    assert result(m, 1) == flags
    seconds = [result(m, 4 + i) for i in range(3)]
    assert seconds == ([0x57, 0x58, 0x59] if reg_b & 0x10 else [0x56] * 3)
    assert [result(m, 0x10 + k) for k in range(3)] == [int(k * period) + 1 for k in (1, 2, 3)]
    assert m.stats.irqs_delivered == 3


# =================================================================================================
# ATA primary channel
# =================================================================================================
def pattern(lba: int, salt: int = 0) -> bytes:
    """Sector contents naming their sector (and image), so a wrong sector cannot pass."""
    head = struct.pack("<II", lba, salt)
    return head + bytes(((lba * 13 + salt) ^ i) & 0xFF for i in range(SECTOR - len(head)))


def make_image(path, sectors: int = SECTORS, salt: int = 0) -> str:
    with open(path, "wb") as f:
        f.writelines(pattern(lba, salt) for lba in range(sectors))
    return str(path)


def sectors_of(path: str, lba: int, count: int = 1) -> bytes:
    with open(path, "rb") as f:
        f.seek(lba * SECTOR)
        return f.read(count * SECTOR)


# Subroutines a polling driver needs (put in `handlers`, reached by `call`).
ATA_LIB = """
; Wait until BSY is clear; AL = status (EAX zero-extended).  One alternate-status read first:
; the 400 ns a host must wait before the status is valid (Linux ata_sff_pause()).
ata_wait:
    mov dx, 0x3f6
    in al, dx
ata_wait_loop:
    mov dx, 0x1f7
    in al, dx
    test al, 0x80
    jnz ata_wait_loop
    movzx eax, al
    ret

; Wait until BSY is clear and DRDY set (xv6 idewait()).
ata_ready:
    mov dx, 0x1f7
    in al, dx
    and al, 0xc0
    cmp al, 0x40
    jne ata_ready
    ret

; Task file and command: EBX = LBA28, CL = sector count, CH = drive (0/1), AL = command.
ata_command:
    push eax
    mov al, ch
    shl al, 4
    or al, 0xe0             ; LBA mode
    mov edx, ebx
    shr edx, 24
    and dl, 0x0f
    or al, dl
    mov dx, 0x1f6
    out dx, al
    call ata_ready
    mov dx, 0x1f2
    mov al, cl
    out dx, al
    mov dx, 0x1f3
    mov al, bl
    out dx, al
    mov dx, 0x1f4
    mov al, bh
    out dx, al
    mov eax, ebx
    shr eax, 16
    mov dx, 0x1f5
    out dx, al
    pop eax
    mov dx, 0x1f7
    out dx, al
    ret

; PIO data-in, polled: ESI = sectors, EDI = buffer.  Returns EAX = last status, 0xffff on an
; error (ERR set or DRQ missing), with the status in RESULT+0x3c.
ata_pio_in:
    call ata_wait
    mov [0x603c], eax
    test al, 0x01
    jnz ata_pio_fail
    test al, 0x08
    jz ata_pio_fail
    mov ecx, 256
    mov dx, 0x1f0
    rep insw
    dec esi
    jnz ata_pio_in
    mov dx, 0x3f6
    in al, dx
    movzx eax, al
    ret
ata_pio_fail:
    mov eax, 0xffff
    ret

; PIO data-out, polled: ESI = sectors, EBP = buffer.  Same returns as ata_pio_in.
ata_pio_out:
    call ata_wait
    mov [0x603c], eax
    test al, 0x01
    jnz ata_pio_fail
    test al, 0x08
    jz ata_pio_fail
    push esi
    mov esi, ebp
    mov ecx, 256
    mov dx, 0x1f0
    rep outsw
    mov ebp, esi
    pop esi
    dec esi
    jnz ata_pio_out
    call ata_wait           ; the last block: BSY until it is on the medium, then INTRQ
    ret
"""


def ata_read(lba: int, count: int, buf: int, drive: int = 0) -> str:
    """A polled READ SECTORS (20h) of `count` sectors; EAX = final status or 0xffff."""
    return f"""
    mov ebx, {lba:#x}
    mov cl, {count}
    mov ch, {drive}
    mov al, 0x20
    call ata_command
    mov esi, {count}
    mov edi, {buf:#x}
    call ata_pio_in
"""


def ata_write(lba: int, count: int, buf: int, drive: int = 0) -> str:
    """A polled WRITE SECTORS (30h); EAX = final status or 0xffff."""
    return f"""
    mov ebx, {lba:#x}
    mov cl, {count}
    mov ch, {drive}
    mov al, 0x30
    call ata_command
    mov esi, {count}
    mov ebp, {buf:#x}
    call ata_pio_out
"""


NIEN_ON = """
    mov dx, 0x3f6           ; device control: nIEN, a polling driver takes no interrupts
    mov al, 0x02
    out dx, al
"""

# Error outputs after a failed command: status, error, sector count, LBA 7:0 .. 27:24.
ATA_SAVE_TASKFILE = """
    mov [0x6000], eax
    mov edi, 0x6004
    mov dx, 0x1f1
{}_tf:
    in al, dx
    movzx eax, al
    stosd
    inc dx
    cmp dx, 0x1f7
    jne {}_tf
"""


def save_taskfile(tag: str) -> str:
    return ATA_SAVE_TASKFILE.format(tag, tag)


def ata_machine(*disks: AtaDisk | None) -> Machine:
    pair = (list(disks) + [None, None])[:2]
    return Machine(ram_mib=16, disks=(pair[0], pair[1]))


def ata_words_string(words: list[int]) -> str:
    """An ATA string: two characters a word, the first in the high byte (ATA-6 §3.2.9)."""
    return b"".join(struct.pack(">H", w) for w in words).decode("ascii")


def test_ata_identify_device_polled(tmp_path):
    """ATA/ATAPI-6 §8.15 IDENTIFY DEVICE (ECh), PIO data-in (§9.7): after the command the host
    polls BSY, sees DRQ and reads 256 words.  Words 27-46 hold the model and 10-19 the serial
    number as byte-swapped ATA strings; words 60-61 the LBA28 capacity; word 255 the integrity
    word (A5h and a checksum making the 512 bytes sum to 0).  DRQ drops after the last word."""
    path = make_image(tmp_path / "disk.img")
    kernel = NIEN_ON + """
    mov ebx, 0
    mov cl, 0
    mov ch, 0
    mov al, 0xec
    call ata_command
    mov esi, 1
    mov edi, 0x200000
    call ata_pio_in
    mov [0x6000], eax
    EXIT 1
"""
    m, r, _, _ = run_guest(kernel, ATA_LIB, machine=ata_machine(AtaDisk(path)))
    assert exit_code(r) == 1, m.report()
    assert result(m, 15) == 0x58                    # DRDY DSC DRQ before the transfer
    assert result(m, 0) == 0x50                     # DRDY DSC after it: DRQ gone
    raw = m.ram.read(BUF, SECTOR)
    words = list(struct.unpack("<256H", raw))
    assert ata_words_string(words[27:47]) == "L4EMU ATA DISK".ljust(40)
    assert ata_words_string(words[10:20]) == "L4EMU0001".ljust(20)
    assert words[60] | words[61] << 16 == SECTORS
    assert words[49] & 0x0200                       # LBA supported
    assert raw[510] == 0xA5 and sum(raw) % 256 == 0


@pytest.mark.parametrize("lba", [37, 0x1020304])
def test_ata_read_sectors_lba28_polled(tmp_path, lba):
    """ATA-6 §8.27 READ SECTORS (20h) in LBA mode (device register bit 6, LBA 27:24 in bits
    3:0, §7.10): the data read equals sector `lba` of the image.  0x1020304 puts a different
    byte in each of the four address fields (a sparse image of 0x1020305 sectors)."""
    path = str(tmp_path / "disk.img")
    if lba < SECTORS:
        make_image(path)
    else:
        with open(path, "wb") as f:
            f.truncate((lba + 1) * SECTOR)
            f.seek(lba * SECTOR)
            f.write(pattern(lba))
    kernel = NIEN_ON + ata_read(lba, 1, BUF) + "mov [0x6000], eax\nEXIT 1\n"
    m, r, _, _ = run_guest(kernel, ATA_LIB, machine=ata_machine(AtaDisk(path)))
    assert exit_code(r) == 1, m.report()
    assert result(m, 0) == 0x50
    assert m.ram.read(BUF, SECTOR) == sectors_of(path, lba) == pattern(lba)


def test_ata_write_sectors_then_read_back(tmp_path):
    """ATA-6 §8.57 WRITE SECTORS (30h), PIO data-out (§9.8): DRQ asks for each sector, the host
    writes 256 words, BSY then clears with no error.  DESIGN D9: once the guest sees the write
    complete the bytes are in the image file.  Then FLUSH CACHE (E7h) and READ SECTORS return
    the same bytes; the sectors around are untouched and the file size is unchanged."""
    path = make_image(tmp_path / "disk.img")
    before = Path(path).read_bytes()
    data = bytes((i * 7 + 3) & 0xFF for i in range(2 * SECTOR))
    kernel = NIEN_ON + ata_write(10, 2, BUF) + """
    mov [0x6000], eax
written:
    mov ebx, 0
    mov cl, 0
    mov ch, 0
    mov al, 0xe7
    call ata_command
    call ata_wait
    mov [0x6004], eax
""" + ata_read(10, 2, BUF2) + """
    mov [0x6008], eax
    EXIT 1
"""
    g = Guest(kernel=kernel, handlers=ATA_LIB)
    m, syms = g.build(ata_machine(AtaDisk(path)))
    m.load(BUF, data)
    r = m.run(max_insns=5_000_000, until=syms["written"])
    assert r.reason is Stop.BREAKPOINT, m.report()
    assert result(m, 0) == 0x50                     # write complete: DRDY DSC, no ERR
    assert sectors_of(path, 10, 2) == data          # ... and in the file at that moment
    r = m.run(max_insns=5_000_000)
    assert exit_code(r) == 1, m.report()
    assert result(m, 1) == 0x50                     # FLUSH CACHE done
    assert result(m, 2) == 0x50
    assert m.ram.read(BUF2, 2 * SECTOR) == data
    after = Path(path).read_bytes()
    assert len(after) == len(before) == SECTORS * SECTOR
    assert after == before[:10 * SECTOR] + data + before[12 * SECTOR:]


def test_ata_address_past_the_end_is_idnf(tmp_path):
    """ATA-6 §8.57/§8.27 error outputs: a WRITE SECTORS to the first sector past the image and a
    READ SECTORS crossing its end both end with ERR in the status (no DRQ: no data phase) and
    IDNF (bit 4) in the error register; in LBA mode the LBA registers then name the first
    sector that could not be reached (64 = 0x40).  The file is unchanged."""
    path = make_image(tmp_path / "disk.img")
    before = Path(path).read_bytes()
    kernel = NIEN_ON + ata_write(SECTORS, 1, BUF) + save_taskfile("w") + """
    mov esi, 0x6000
    mov edi, 0x6080
    mov ecx, 8
    rep movs dword ptr es:[edi], dword ptr [esi]
""" + ata_read(SECTORS - 1, 2, BUF2) + save_taskfile("r") + "EXIT 1\n"
    m, r, _, _ = run_guest(kernel, ATA_LIB, machine=ata_machine(AtaDisk(path)))
    assert exit_code(r) == 1, m.report()
    # [returned status, error, count, LBA 7:0, 15:8, 23:16, device]
    write = [m.ram.read32(RESULT + 0x80 + 4 * i) for i in range(7)]
    read = results(m, 7)
    assert write == [0xFFFF, 0x10, 1, 0x40, 0, 0, 0xE0]
    assert read == [0xFFFF, 0x10, 2, 0x40, 0, 0, 0xE0]
    assert m.ram.read32(RESULT + 0x3C) == 0x51      # DRDY DSC ERR, no DRQ
    assert Path(path).read_bytes() == before


ATA_IRQ_HANDLER = """
ata_irq:
    pushad
    cld
    mov dx, 0x1f7
    in al, dx               ; status: clears INTRQ
    movzx eax, al
    or [0x6004], eax        ; every status seen
    test al, 0x08
    jz ata_irq_eoi
    mov edi, [0x6100]
    mov ecx, [0x6108]       ; dwords per block
    mov dx, 0x1f0
    rep insd
    mov [0x6100], edi
ata_irq_eoi:
    inc dword ptr [0x6000]
    mov al, 0x66            ; specific EOI, slave IR6
    out 0xa0, al
    mov al, 0x62            ; specific EOI, master IR2 (cascade)
    out 0x20, al
    popad
    iretd
"""

ATA_IRQS_ON = """
    mov dx, 0x3f6
    mov al, 0x00            ; nIEN = 0: interrupts on
    out dx, al
"""


@pytest.mark.parametrize("cmd,count,multiple,irqs", [
    (0x20, 4, 0, 4),        # READ SECTORS: one interrupt per sector
    (0xC4, 8, 4, 2),        # READ MULTIPLE with SET MULTIPLE MODE 4: one per 4-sector block
])
def test_ata_interrupt_driven_read(tmp_path, cmd, count, multiple, irqs):
    """ATA-6 §9.7 PIO data-in with interrupts: the device asserts INTRQ (IRQ 14) when each
    DRQ data block is ready (a sector for READ SECTORS, the SET MULTIPLE MODE block size for
    READ MULTIPLE, §8.32/§8.39); reading the status register clears it.  IRQ 14 reaches vector
    0x2E through the slave 8259A (ICW2 0x28, IR6); the handler reads the status, moves the block
    with `rep insd` (32-bit data port accesses) and EOIs slave then master (Linux
    mask_and_ack_8259A()).  No interrupt follows the last block (DRQ just drops)."""
    path = make_image(tmp_path / "disk.img")
    set_multiple = "" if not multiple else NIEN_ON + f"""
    mov ebx, 0
    mov cl, {multiple}
    mov ch, 0
    mov al, 0xc6            ; SET MULTIPLE MODE, polled
    call ata_command
    call ata_wait           ; reading the status also clears the INTRQ it earned
    mov [0x600c], eax
"""
    kernel = pic_init(0xFB, 0xBF) + set_multiple + ATA_IRQS_ON + f"""
    mov dword ptr [0x6100], {BUF:#x}
    mov dword ptr [0x6108], {128 * (multiple or 1)}
    mov ebx, 20
    mov cl, {count}
    mov ch, 0
    mov al, {cmd:#x}
    call ata_command
wait_irq:
    sti
    hlt
    cli
    cmp dword ptr [0x6000], {irqs}
    jb wait_irq
    mov dx, 0x3f6
    in al, dx
    movzx eax, al
    mov [0x6008], eax
    EXIT 1
"""
    m, r, _, _ = run_guest(kernel, ATA_LIB + ATA_IRQ_HANDLER,
                           gates={0x2E: ("ata_irq", 0xE, 0)}, machine=ata_machine(AtaDisk(path)))
    assert exit_code(r) == 1, m.report()
    assert result(m, 0) == irqs
    assert result(m, 1) == 0x58                     # only DRDY DSC DRQ, never ERR
    assert result(m, 2) == 0x50                     # all read: DRQ clear
    assert result(m, 3) == (0x50 if multiple else 0)
    assert m.stats.irqs_delivered == irqs
    assert m.ram.read32(XFER_PTR) == BUF + count * SECTOR
    assert m.ram.read(BUF, count * SECTOR) == sectors_of(path, 20, count)


def test_ata_interrupt_driven_write_as_xv6(tmp_path):
    """ATA-6 §9.8 PIO data-out: after WRITE SECTORS the device asks for the first sector with
    DRQ and no interrupt, so xv6's idestart() writes the data (`rep outsd`) straight after the
    command byte; INTRQ comes once the sector is written, and xv6's ideintr() reads the status.
    One interrupt; the sector is in the file when it arrives (DESIGN D9)."""
    path = make_image(tmp_path / "disk.img")
    data = bytes((i * 11 + 5) & 0xFF for i in range(SECTOR))
    kernel = pic_init(0xFB, 0xBF) + ATA_IRQS_ON + f"""
    mov ebx, 9
    mov cl, 1
    mov ch, 0
    mov al, 0x30
    call ata_command
    mov esi, {BUF:#x}
    mov ecx, 128
    mov dx, 0x1f0
    rep outs dx, dword ptr [esi]
wait_irq:
    sti
    hlt
    cli
    cmp dword ptr [0x6000], 1
    jb wait_irq
    EXIT 1
"""
    handlers = ATA_LIB + """
ata_irq:
    push eax
    push edx
    mov dx, 0x1f7
    in al, dx
    movzx eax, al
    mov [0x6004], eax
    inc dword ptr [0x6000]
    mov al, 0x66
    out 0xa0, al
    mov al, 0x62
    out 0x20, al
    pop edx
    pop eax
    iretd
"""
    g = Guest(kernel=kernel, handlers=handlers, gates={0x2E: ("ata_irq", 0xE, 0)})
    m, syms = g.build(ata_machine(AtaDisk(path)))
    m.load(BUF, data)
    r = m.run(max_insns=1_000_000, until=syms["ata_irq"])
    assert r.reason is Stop.BREAKPOINT, m.report()
    assert sectors_of(path, 9) == data
    r = m.run(max_insns=1_000_000)
    assert exit_code(r) == 1, m.report()
    assert results(m, 2) == [1, 0x50]
    assert m.stats.irqs_delivered == 1
    assert sectors_of(path, 8) == pattern(8) and sectors_of(path, 10) == pattern(10)


def test_ata_write_to_read_only_disk_aborts(tmp_path):
    """ATA-6 §8.57 error outputs: a WRITE SECTORS the device cannot perform ends with ERR and
    ABRT (bit 2) and no data phase; the read-only image file is unchanged (AtaDisk(readonly=True)
    opens it O_RDONLY)."""
    path = make_image(tmp_path / "disk.img")
    before = Path(path).read_bytes()
    kernel = NIEN_ON + ata_write(3, 1, BUF) + save_taskfile("w") + ata_read(3, 1, BUF2) + """
    mov [0x6040], eax
    EXIT 1
"""
    m, r, _, _ = run_guest(kernel, ATA_LIB,
                           machine=ata_machine(AtaDisk(path, readonly=True)))
    assert exit_code(r) == 1, m.report()
    assert result(m, 0) == 0xFFFF                   # the driver saw the error
    assert result(m, 1) == 0x04                     # ABRT
    assert result(m, 0x10) == 0x50                  # reading still works
    assert m.ram.read(BUF2, SECTOR) == pattern(3)
    assert Path(path).read_bytes() == before


def test_ata_slave_drive_selected_by_dev_bit(tmp_path):
    """ATA-6 §7.10 device register bit 4 (DEV) selects device 1: READ SECTORS of sector 0 with
    DEV = 1 returns the slave image's sector 0, with DEV = 0 the master's; IDENTIFY of the
    slave reports its own serial number."""
    master = make_image(tmp_path / "master.img", salt=0)
    slave = make_image(tmp_path / "slave.img", sectors=8, salt=0x5A)
    kernel = NIEN_ON + ata_read(0, 1, BUF, drive=1) + "mov [0x6000], eax\n" \
        + ata_read(0, 1, BUF + SECTOR, drive=0) + "mov [0x6004], eax\n" + """
    mov ebx, 0
    mov cl, 0
    mov ch, 1
    mov al, 0xec
    call ata_command
    mov esi, 1
    mov edi, 0x210000
    call ata_pio_in
    mov [0x6008], eax
    EXIT 1
"""
    m, r, _, _ = run_guest(kernel, ATA_LIB, machine=ata_machine(AtaDisk(master), AtaDisk(slave)))
    assert exit_code(r) == 1, m.report()
    assert results(m, 3) == [0x50, 0x50, 0x50]
    assert m.ram.read(BUF, SECTOR) == pattern(0, 0x5A) == sectors_of(slave, 0)
    assert m.ram.read(BUF + SECTOR, SECTOR) == pattern(0, 0)
    words = struct.unpack("<256H", m.ram.read(BUF2, SECTOR))
    assert ata_words_string(list(words[10:20])) == "L4EMU0002".ljust(20)
    assert words[60] | words[61] << 16 == 8


# =================================================================================================
# CGA text screen
# =================================================================================================
def test_cga_text_and_crtc_cursor():
    """IBM CGA/VGA text mode 3: each cell at 0xB8000 is a character and an attribute byte;
    the CRTC cursor location registers 0Eh (high) and 0Fh (low), reached through index 0x3D4 and
    data 0x3D5, place the cursor in cells.  The high byte goes as two byte writes, the low one
    as a single `out dx, ax` (index in AL, data in AH) as Linux vgacon does."""
    kernel = """
    mov edi, 0xb8000
    lea esi, [text]
    mov ecx, 5
    mov ah, 0x1f            ; white on blue
copy:
    lodsb
    stosw
    inc ah                  ; a different attribute for each letter
    loop copy
    mov word ptr [0xb87d0], 0x4e3e   ; ">" yellow on red at (12, 40)
    mov dx, 0x3d4
    mov al, 0x0e
    out dx, al
    inc dx
    mov al, 0x03            ; cursor 0x3e9 = 12 * 80 + 41
    out dx, al
    dec dx
    mov ax, 0xe90f
    out dx, ax
    mov al, 0x0f
    out dx, al
    inc dx
    in al, dx
    movzx eax, al
    mov [0x6000], eax
    EXIT 1
text:
    .ascii "Hello"
"""
    m, r, _, _ = run_guest(kernel)
    assert exit_code(r) == 1, m.report()
    lines = m.cga.screen_text().split("\n")
    assert len(lines) == 25
    assert lines[0] == "Hello"
    assert lines[12] == " " * 40 + ">"
    assert all(line == "" for i, line in enumerate(lines) if i not in (0, 12))
    assert m.cga.cells()[:10] == b"H\x1fe\x20l\x21l\x22o\x23"
    assert m.cga.cursor == (12, 41)
    assert result(m, 0) == 0xE9                     # CRTC registers read back (VGA)


# =================================================================================================
# 8042 keyboard controller
# =================================================================================================
KBC_LIB = """
kbc_wait_write:             ; Linux i8042_wait_write(): IBF (status bit 1) clear
    in al, 0x64
    test al, 0x02
    jnz kbc_wait_write
    ret
kbc_wait_read:              ; i8042_wait_read(): OBF (status bit 0) set
    in al, 0x64
    test al, 0x01
    jz kbc_wait_read
    ret
kbc_read_output_port:       ; D0h: the output port arrives in the output buffer
    call kbc_wait_write
    mov al, 0xd0
    out 0x64, al
    call kbc_wait_read
    in al, 0x60
    movzx eax, al
    ret
kbc_write_output_port:      ; D1h, then the new output port byte (in BL) through 0x60
    call kbc_wait_write
    mov al, 0xd1
    out 0x64, al
    call kbc_wait_write
    mov al, bl
    out 0x60, al
    ret
"""


def test_kbc_self_test_and_a20_through_output_port_and_port_92():
    """Intel 8042 / IBM PC AT technical reference: command AAh (controller self-test) puts 55h
    in the output buffer, the host waiting for OBF; command D1h writes the output port, whose
    bit 1 gates A20 (bit 0 must stay 1 or the system resets); D0h reads it back.  The PS/2
    system control port A (0x92) bit 1 is the "fast A20" gate.  `m.kbc.a20` follows the last
    write of either path.  The code runs below 1 MiB (at LOW_CODE), as boot code toggling A20
    must: with A20 off, addresses at 1 MiB wrap to 0."""
    low = """
    call kbc_wait_write
    mov al, 0xaa
    out 0x64, al
    call kbc_wait_read
    in al, 0x60
    movzx eax, al
    mov [0x6000], eax
    mov bl, 0xdd            ; A20 off, reset line inactive
    call kbc_write_output_port
    call kbc_read_output_port
    mov [0x6004], eax
    mov bl, 0xdf            ; A20 on
    call kbc_write_output_port
    call kbc_read_output_port
    mov [0x6008], eax
    in al, 0x92
    and al, 0xfc            ; A20 off, no reset
    out 0x92, al
    in al, 0x92
    movzx eax, al
    mov [0x600c], eax
    or al, 0x02             ; A20 on (Linux enable_a20_fast())
    out 0x92, al
    in al, 0x92
    movzx eax, al
    mov [0x6010], eax
    in al, 0x64
    movzx eax, al
    mov [0x6014], eax
    ret
""" + KBC_LIB
    g = Guest(kernel=f"mov eax, {LOW_CODE:#x}\ncall eax\nEXIT 1\n")
    m, _ = g.build()
    m.load(LOW_CODE, assemble(low, LOW_CODE).code)
    changes: list[bool] = []
    m.kbc.on_a20 = changes.append
    assert m.kbc.a20
    r = m.run(max_insns=1_000_000)
    assert exit_code(r) == 1, m.report()
    assert result(m, 0) == 0x55
    assert result(m, 1) & 0x03 == 0x01              # reset inactive, A20 off
    assert result(m, 2) & 0x03 == 0x03              # A20 on
    assert result(m, 3) == 0x00
    assert result(m, 4) == 0x02
    assert result(m, 5) & 0x01 == 0                 # OBF empty: every reply was read
    assert changes == [False, True, False, True]
    assert m.kbc.a20


def test_a20_off_wraps_the_second_megabyte_onto_the_first():
    """IBM PC AT: with the A20 gate closed, physical address bit 20 is forced to 0, so 1 MiB +
    x aliases x (what boot code tests to see whether A20 is on).  The i8042 docstring says the
    machine applies `on_a20`; the code runs below 1 MiB so that it survives the wrap."""
    low = """
    in al, 0x92
    and al, 0xfc            ; A20 off
    out 0x92, al
    mov dword ptr [0x7000], 0
    mov dword ptr [0x107000], 0x12345678
    mov eax, [0x7000]
    mov [0x6000], eax
    in al, 0x92
    or al, 0x02             ; A20 on again
    out 0x92, al
    ret
"""
    g = Guest(kernel=f"mov eax, {LOW_CODE:#x}\ncall eax\nEXIT 1\n")
    m, _ = g.build()
    m.load(LOW_CODE, assemble(low, LOW_CODE).code)
    r = m.run(max_insns=1_000_000)
    assert exit_code(r) == 1, m.report()
    assert result(m, 0) == 0x12345678


@pytest.mark.parametrize("how", [
    "mov al, 0xfe\nout 0x64, al",              # pulse output port bit 0 (Linux reboot=k)
    "mov bl, 0xdc\ncall kbc_write_output_port",  # D1h with the reset bit clear
    "in al, 0x92\nor al, 0x01\nout 0x92, al",  # fast reset: bit 0 of port 0x92 0 -> 1
])
def test_kbc_reset_stops_the_machine(how):
    """IBM PC AT technical reference: the 8042's output port bit 0 drives the CPU reset line
    (command FEh pulses it low; a D1h write with bit 0 clear holds it), and port 0x92 bit 0
    going 0 -> 1 resets too.  The machine stops with Stop.RESET; the code after the reset
    completes its reset delay: the run ends at the block boundary after the write, before
    the `udelay(50)`-like loop Linux's reboot code spins in ends."""
    kernel = f"""
    call kbc_wait_write
    {how}
    mov ecx, 1000
delay:
    loop delay
    mov dword ptr [0x6000], 0xdead
spin:
    jmp spin
"""
    g = Guest(kernel=kernel, handlers=KBC_LIB)
    m, _ = g.build()
    r = m.run(max_insns=1_000_000)
    assert r.reason is Stop.RESET, m.report()
    assert result(m, 0) == 0
    assert r.insns < 100


# =================================================================================================
# 16550 UART receive
# =================================================================================================
UART_INIT = """
    mov dx, 0x3fb
    mov al, 0x80            ; DLAB
    out dx, al
    mov dx, 0x3f8
    mov al, 0x01            ; divisor 1: 115200 baud
    out dx, al
    inc dx
    mov al, 0x00
    out dx, al
    mov dx, 0x3fb
    mov al, 0x03            ; 8N1, DLAB off
    out dx, al
    mov dx, 0x3fa
    mov al, {fcr:#x}
    out dx, al
    mov dx, 0x3fc
    mov al, 0x0b            ; DTR RTS OUT2 (OUT2 gates the IRQ line on PCs)
    out dx, al
    mov dx, 0x3f9
    mov al, {ier:#x}
    out dx, al
"""


def test_uart_polled_echo():
    """PC16550D datasheet, LSR bit 0 (DR) is set while a received character waits in RBR and
    clears when it is read; LSR bit 5 (THRE) says THR takes a byte.  A guest that polls DR,
    reads RBR and writes it back to THR once THRE is set echoes the bytes fed to the input.  The
    set-up is xv6's uartinit() (FIFO off, so FCR 0 discards nothing already received)."""
    kernel = UART_INIT.format(fcr=0x00, ier=0) + """
    mov ecx, 4
next:
    mov dx, 0x3fd
wait_dr:
    in al, dx
    test al, 0x01
    jz wait_dr
    mov dx, 0x3f8
    in al, dx
    mov bl, al
    mov dx, 0x3fd
wait_thre:
    in al, dx
    test al, 0x20
    jz wait_thre
    mov dx, 0x3f8
    mov al, bl
    out dx, al
    loop next
    mov dx, 0x3fd
    in al, dx
    movzx eax, al
    mov [0x6000], eax
    EXIT 1
"""
    g = Guest(kernel=kernel)
    m, _ = g.build()
    m.serial.feed(b"ping")
    r = m.run(max_insns=1_000_000)
    assert exit_code(r) == 1, m.report()
    assert bytes(g.serial) == b"ping"
    assert result(m, 0) == 0x60                     # THRE TEMT, DR clear: all read
    assert m.serial.rx_waiting == 0


@pytest.mark.parametrize("fcr,iir", [
    (0x00, 0x04),    # 16450 mode: received data available as soon as a byte is in RBR
    (0xC7, 0xCC),    # FIFO, trigger 14: 4 bytes stay below it, the character timeout reports
])
def test_uart_interrupt_driven_receive(fcr, iir):
    """PC16550D datasheet, IER bit 0 and IIR: with receive interrupts enabled and OUT2 set the
    UART raises IRQ 4 (vector 0x24 through the master 8259A) while data waits; the handler reads
    IIR, then RBR while LSR.DR (Linux serial8250_rx_chars()), echoes, and EOIs.  In FIFO mode
    with trigger level 14 four bytes raise no 'data available' but the character timeout
    (IIR 0xCC) four character times later.  Bytes are fed once the guest has set the UART up
    (enabling the FIFO clears the receiver, as the datasheet says).  A guest halted with
    nothing pending stops the run; bytes fed afterwards wake it through the interrupt."""
    kernel = pic_init(0xEB, 0xFF) + UART_INIT.format(fcr=fcr, ier=0x01) + """
ready:
wait_rx:
    sti
    hlt
    cli
    cmp dword ptr [0x6000], 8
    jb wait_rx
    EXIT 1
"""
    handlers = """
uart_irq:
    pushad
    mov dx, 0x3fa
    in al, dx
    movzx eax, al
    mov [0x6004], eax       ; IIR as the handler found it
rx_more:
    mov dx, 0x3fd
    in al, dx
    test al, 0x01
    jz rx_done
    mov dx, 0x3f8
    in al, dx
    out dx, al              ; echo (THR is always empty here)
    inc dword ptr [0x6000]
    jmp rx_more
rx_done:
    inc dword ptr [0x6008]  ; interrupts taken
    mov al, 0x20            ; non-specific EOI
    out 0x20, al
    popad
    iretd
"""
    g = Guest(kernel=kernel, handlers=handlers, gates={0x24: ("uart_irq", 0xE, 0)})
    m, syms = g.build()
    r = m.run(max_insns=1_000_000, until=syms["ready"])
    assert r.reason is Stop.BREAKPOINT, m.report()
    m.serial.feed(b"ping")
    r = m.run(max_insns=5_000_000)
    assert r.reason is Stop.HALTED, m.report()
    assert bytes(g.serial) == b"ping"
    assert results(m, 3) == [4, iir, 1]
    m.serial.feed(b"pong")
    r = m.run(max_insns=5_000_000)
    assert exit_code(r) == 1, m.report()
    assert bytes(g.serial) == b"pingpong"
    assert results(m, 3) == [8, iir, 2]
    assert m.stats.irqs_delivered == 2
