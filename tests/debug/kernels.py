"""Small kernels and a process runner shared by the debugger tests.

- `hello_kernel()`: the multiboot example image's kernel ELF (built and cached by the image).
- `c_kernel(dir)`: a multiboot kernel in C with frames and DWARF lines (zig cc, DESIGN D8).
- `asm_kernel(dir, body)`: a multiboot ELF from inline assembly (tests/cli/test_boot.py).
- `l4emu(...)`: the CLI as a real process; `start_l4emu(...)` for the ones tests talk to.
"""
from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

from tests.cli.test_boot import kernel_elf as asm_kernel  # noqa: F401  (re-exported)

ROOT = Path(__file__).resolve().parents[2]
HELLO_IMAGE = ROOT / "images" / "multiboot-hello.toml"

C_KERNEL = r"""/* A multiboot kernel in C for the debugger's tests: frames, a loop, a global. */
__attribute__((section(".multiboot"), used, aligned(4)))
static const unsigned int mb_header[3] = {0x1BADB002u, 0x3u, -(0x1BADB002u + 0x3u)};

unsigned char kstack[8192] __attribute__((aligned(16)));
volatile int counter;

static void outb(unsigned short port, unsigned char v) {
    __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

int square(int x) {
    return x * x;
}

int sum_squares(int n) {
    int s = 0;
    for (int i = 1; i <= n; i++)
        s += square(i);
    return s;
}

void kmain(void) {
    counter = sum_squares(4);
    outb(0x3f8, '0' + counter % 10);
    outb(0x3f8, '\n');
    outb(0xf4, 0);
    for (;;) {}
}

__attribute__((naked, noreturn)) void _start(void) {
    __asm__ volatile("mov $kstack + 8192, %esp\n\tcall kmain\n\thlt");
}
"""

C_LINK = """
ENTRY(_start)
SECTIONS {
  . = 0x100000;
  .text : { KEEP(*(.multiboot)) *(.text*) }
  .rodata : { *(.rodata*) }
  .data : { *(.data*) }
  .bss : { *(.bss*) *(COMMON) }
}
"""


def hello_kernel() -> Path:
    from emu.boot.image import build_image
    return Path(build_image(HELLO_IMAGE).kernel)


def c_kernel(directory: Path) -> Path:
    src, ld, out = directory / "k.c", directory / "k.ld", directory / "k.elf"
    src.write_text(C_KERNEL)
    ld.write_text(C_LINK)
    subprocess.run([sys.executable, "-m", "ziglang", "cc", "-target", "x86-freestanding-none",
                    "-g", "-O0", "-fno-omit-frame-pointer", "-ffreestanding",
                    "-fno-sanitize=all", "-fno-stack-protector", "-nostdlib", "-T", str(ld),
                    "-o", str(out), str(src)], check=True, capture_output=True, timeout=120)
    return out


def _env() -> dict:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def l4emu(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "emu.cli", *args], stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=timeout, env=_env(), cwd=ROOT, text=True)


def debug_script(target, commands: str, *extra: str, tmp_path: Path,
                 timeout: float = 60) -> subprocess.CompletedProcess:
    """`l4emu debug TARGET --commands FILE` with the given commands; stdin is empty."""
    f = tmp_path / "commands.txt"
    f.write_text(commands)
    return l4emu("debug", str(target), "--commands", str(f), *extra, timeout=timeout)


def start_l4emu(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "emu.cli", *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(),
                            cwd=ROOT, text=True)


def gdb_port(proc: subprocess.Popen, timeout: float = 20) -> int:
    """The port the stub announced on stderr ("... listening on HOST:PORT")."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], 0.5)
        if not ready:
            if proc.poll() is not None:
                raise AssertionError(f"l4emu ended before listening: {proc.returncode}")
            continue
        line = proc.stderr.readline()
        if not line:
            if proc.poll() is not None:
                raise AssertionError(f"l4emu ended before listening: {proc.returncode}")
            continue
        if "listening on" in line:
            return int(line.split("listening on", 1)[1].split()[0].rsplit(":", 1)[1])
    raise AssertionError("the gdb stub did not announce its port")
