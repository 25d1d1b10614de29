"""`l4emu boot` end to end: real processes, real files, exit statuses and one-line errors."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from emu.asm import assemble
from emu.boot.elf import Segment, Symbol, write_elf

MB_HEADER = """
  .long 0x1BADB002
  .long 0x00000003
  .long -(0x1BADB002 + 0x00000003)
"""


def kernel_elf(tmp_path: Path, body: str, name: str = "k.elf") -> Path:
    """A multiboot ELF kernel at 1 MiB: header, then `body` (starting at label `start`)."""
    a = assemble(MB_HEADER + "start:\n" + body, 0x100000)
    p = tmp_path / name
    p.write_bytes(write_elf([Segment(".text", 0x100000, a.code, flags="rwx")],
                            a.symbols["start"], [Symbol("start", a.symbols["start"])]))
    return p


PRINT_AND_EXIT = """
  mov esi, msg
  mov dx, 0x3f8
next:
  lodsb
  test al, al
  jz done
  out dx, al
  jmp next
done:
  mov al, {status}
  out 0xf4, al
  hlt
msg: .asciz "{text}"
"""


def l4emu(*args: str, stdin: bytes = b"", timeout: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "emu.cli", *args], input=stdin,
                          capture_output=True, timeout=timeout,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_boot_prints_serial_and_exits_with_guest_status(tmp_path):
    """The serial output is stdout; the status is isa-debug-exit's (value << 1) | 1."""
    k = kernel_elf(tmp_path, PRINT_AND_EXIT.format(status=0x15, text="hi from the guest\\n"))
    r = l4emu("boot", str(k))
    assert r.stdout == b"hi from the guest\n"
    assert r.returncode == (0x15 << 1) | 1
    assert r.stderr == b""


def test_boot_gives_multiboot_state_and_modules(tmp_path):
    """DESIGN D2: EAX=0x2BADB002, EBX=the MBI with the module's command line."""
    mod = tmp_path / "mod.bin"
    mod.write_bytes(b"MODULE DATA")
    body = """
      cmp eax, 0x2BADB002
      jne bad
      mov eax, [ebx + 24]          ; mods_addr
      mov esi, [eax + 8]           ; first module's command line
      mov dx, 0x3f8
    next:
      lodsb
      test al, al
      jz ok
      out dx, al
      jmp next
    ok:
      mov al, 0
      out 0xf4, al
    bad:
      mov al, 9
      out 0xf4, al
      hlt
    """
    k = kernel_elf(tmp_path, body)
    r = l4emu("boot", str(k), "--module", f"{mod}:the module line", "--cmdline", "x=1")
    assert r.returncode == 1, r.stderr
    assert r.stdout == b"the module line"


def test_same_boot_twice_is_identical(tmp_path):
    """Determinism: output and instruction count are the same on every run."""
    k = kernel_elf(tmp_path, PRINT_AND_EXIT.format(status=0, text="same"))
    runs = [l4emu("boot", str(k), "--stats") for _ in range(2)]
    assert runs[0].stdout == runs[1].stdout == b"same"
    assert runs[0].stderr == runs[1].stderr and b"instructions" in runs[0].stderr


def test_piped_stdin_reaches_the_uart(tmp_path):
    """Input: bytes on stdin arrive in COM1's receiver (LSR.DR, RBR)."""
    body = """
      mov ecx, 3
    again:
      mov dx, 0x3fd
    poll:
      in al, dx
      test al, 1
      jz poll
      mov dx, 0x3f8
      in al, dx
      inc al
      out dx, al
      loop again
      mov al, 0
      out 0xf4, al
    """
    k = kernel_elf(tmp_path, body)
    r = l4emu("boot", str(k), stdin=b"abc")
    assert r.stdout == b"bcd" and r.returncode == 1


@pytest.mark.parametrize("body, status, words", [
    ("spin: jmp spin\n", 124, b"instruction limit"),
    ("cli\nhlt\n", 125, b"stopped making progress"),
    ("lidt [0x7000]\nint 0x30\n", 126, b"triple"),
])
def test_guest_that_cannot_finish_gets_a_diagnostic(tmp_path, body, status, words):
    """No progress, the instruction limit and a triple fault each end with one diagnostic
    paragraph (registers, last traps, code at EIP) and a non-zero status, no traceback."""
    k = kernel_elf(tmp_path, body)
    r = l4emu("boot", str(k), "--max-insns", "100000")
    assert r.returncode == status
    assert words in r.stderr and b"eip=" in r.stderr and b"code:" in r.stderr
    assert b"Traceback" not in r.stderr


def _one_line_error(r: subprocess.CompletedProcess, *fragments: bytes) -> None:
    assert r.returncode == 2
    lines = r.stderr.decode().strip().splitlines()
    assert len(lines) == 1, r.stderr
    for f in fragments:
        assert f in r.stderr
    assert b"Traceback" not in r.stderr


def test_bad_input_missing_file(tmp_path):
    _one_line_error(l4emu("boot", str(tmp_path / "nope.elf")), b"nope.elf", b"no such file")


def test_bad_input_not_elf(tmp_path):
    p = tmp_path / "junk.bin"
    p.write_bytes(b"\x00" * 100)
    _one_line_error(l4emu("boot", str(p)), b"junk.bin")


def test_bad_input_elf_without_multiboot_header(tmp_path):
    a = assemble("start: hlt", 0x100000)
    p = tmp_path / "plain.elf"
    p.write_bytes(write_elf([Segment(".text", 0x100000, a.code)], 0x100000))
    _one_line_error(l4emu("boot", str(p)), b"plain.elf", b"multiboot header")


def test_bad_input_kernel_does_not_fit(tmp_path):
    a = assemble(MB_HEADER + "start: hlt", 0x100000)
    p = tmp_path / "big.elf"
    p.write_bytes(write_elf([Segment(".text", 0x100000, a.code, memsz=8 << 20)], 0x10000C))
    _one_line_error(l4emu("boot", str(p), "-m", "4"), b"big.elf")


def test_bad_input_overlapping_segments(tmp_path):
    """Overlapping segments are refused by the loader (one line naming the file)."""
    import struct
    a = assemble(MB_HEADER + "start: hlt", 0x100000)
    p = tmp_path / "overlap.elf"
    data = bytearray(write_elf([Segment(".text", 0x100000, a.code, flags="rx"),
                                Segment(".data", 0x200000, b"x" * 16, flags="rw")], 0x10000C))
    # Move the second segment's physical address onto the first (the writer refuses to).
    phoff = struct.unpack_from("<I", data, 28)[0]
    struct.pack_into("<I", data, phoff + 32 + 12, 0x100004)
    p.write_bytes(bytes(data))
    _one_line_error(l4emu("boot", str(p)), b"overlap.elf", b"overlap")


def test_bad_input_module_does_not_fit(tmp_path):
    k = kernel_elf(tmp_path, "hlt\n")
    mod = tmp_path / "huge.mod"
    mod.write_bytes(b"\0" * (3 << 20))
    _one_line_error(l4emu("boot", str(k), "-m", "2", "--module", str(mod)), b"huge.mod")


def test_bad_option_is_one_line():
    _one_line_error(l4emu("boot", "x", "--max-insns", "-5"), b"max-insns")


def test_default_image_boots():
    """The README's first command: the default image builds, boots and exits 1 (status 0)."""
    root = Path(__file__).resolve().parents[2]
    r = l4emu("boot", str(root / "images" / "hello.toml"))
    assert r.returncode == 1, r.stderr
    assert r.stdout


def test_multiboot_example_image_boots():
    """The multiboot example reads the MBI and finds the firmware tables a BIOS leaves."""
    root = Path(__file__).resolve().parents[2]
    r = l4emu("boot", str(root / "images" / "multiboot-hello.toml"))
    assert r.returncode == 1, r.stderr
    assert b"Hello from a multiboot kernel" in r.stdout
    assert b"found the Intel MP floating pointer" in r.stdout
    assert b"found the ACPI RSDP" in r.stdout
    assert b"command line: kernel.elf greeting=hello" in r.stdout


def test_version():
    r = l4emu("--version")
    assert r.returncode == 0 and r.stdout.startswith(b"l4emu ")


ATA_IDENTIFY_AND_EXIT = """
  mov dx, 0x1f6
  mov al, 0xe0
  out dx, al
  mov dx, 0x1f7
  mov al, 0xec
  out dx, al
wait:
  in al, dx
  test al, 0x80
  jnz wait
  mov edi, 0x200000
  mov ecx, 256
  mov dx, 0x1f0
  rep insw
  mov ax, [0x200000 + 60 * 2]       ; LBA28 capacity, low word
  out 0xf4, al
"""


def test_disk_option_serves_the_image(tmp_path):
    """--disk FILE: IDENTIFY reports the image's capacity in sectors."""
    img = tmp_path / "disk.img"
    img.write_bytes(b"\0" * 512 * 9)
    k = kernel_elf(tmp_path, ATA_IDENTIFY_AND_EXIT)
    r = l4emu("boot", str(k), "--disk", str(img))
    assert r.returncode == (9 << 1) | 1, r.stderr


def test_disk_not_a_multiple_of_512_is_served_with_one_warning(tmp_path):
    img = tmp_path / "odd.img"
    img.write_bytes(b"\0" * (512 * 3 + 100))
    k = kernel_elf(tmp_path, ATA_IDENTIFY_AND_EXIT)
    r = l4emu("boot", str(k), "--disk", str(img))
    assert r.returncode == (3 << 1) | 1
    assert r.stderr.count(b"warning") == 1 and b"odd.img" in r.stderr
    assert img.stat().st_size == 512 * 3 + 100          # never truncated or grown


def test_bad_input_missing_disk(tmp_path):
    k = kernel_elf(tmp_path, "hlt\n")
    _one_line_error(l4emu("boot", str(k), "--disk", str(tmp_path / "none.img")), b"none.img")


def test_bad_input_three_disks(tmp_path):
    k = kernel_elf(tmp_path, "hlt\n")
    img = tmp_path / "d.img"
    img.write_bytes(b"\0" * 1024)
    _one_line_error(l4emu("boot", str(k), *["--disk", str(img)] * 3), b"two")


def test_bad_input_disk_option(tmp_path):
    _one_line_error(l4emu("boot", "k", "--disk", "x.img,rw"), b"rw")


def test_rtc_option_sets_the_guest_date(tmp_path):
    """--rtc DATE: the CMOS clock starts there (BCD year register 0x09)."""
    body = """
      mov al, 0x09
      out 0x70, al
      in al, 0x71
      out 0xf4, al
    """
    k = kernel_elf(tmp_path, body)
    r = l4emu("boot", str(k), "--rtc", "2031-05-06T07:08:09")
    assert r.returncode == (0x31 << 1) | 1
    _one_line_error(l4emu("boot", str(k), "--rtc", "yesterday"), b"--rtc")


def test_closed_stdout_ends_the_run_quietly(tmp_path):
    """`l4emu boot ... | head -1`: once stdout is gone the run stops, with status 141
    (128 + SIGPIPE) and nothing on stderr, as a shell tool does."""
    k = kernel_elf(tmp_path, """
      mov dx, 0x3f8
    again:
      mov al, 0x41
      out dx, al
      mov al, 10
      out dx, al
      jmp again
    """)
    p = subprocess.Popen([sys.executable, "-m", "emu.cli", "boot", str(k)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout.readline() == b"A\n"
    p.stdout.close()
    err = p.stderr.read()
    assert p.wait(timeout=60) == 141
    assert err == b""
