"""The `l4emu` command line: boot, build, debug and bench.

    l4emu boot KERNEL|IMAGE.toml [--module FILE[:CMDLINE]]... [--cmdline S] [-m MIB]
               [--max-insns N] [--disk FILE[,ro]]... [--rtc now|ISO-DATE] [--stats]
    l4emu boot ... --gdb [HOST:]PORT [--wait]     (serve gdb; see docs/debugging.md)
    l4emu debug KERNEL|IMAGE.toml [boot options] [--commands FILE] [--l4-layout FILE]
    l4emu build IMAGE.toml [--force]
    l4emu bench lat_ctx|pingpong|null [options]   (see emu/bench/cli.py, docs/benchmarking.md)
    l4emu --version

Serial output (COM1) goes to stdout; piped stdin is fed to COM1's receiver before the run.
Exit status: the guest's, as QEMU's isa-debug-exit reports it ((value << 1) | 1, always odd);
2 for bad input (one line on stderr, no traceback); and when the guest cannot finish, a
one-paragraph diagnostic on stderr with 124 (instruction limit), 125 (halted for good: nothing
can wake the CPU), 126 (triple fault or an engine error), 130 (interrupted), 141 (stdout was
closed), 3 (a host bug).
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
from datetime import datetime
from pathlib import Path
from typing import Optional, Sequence

from . import __version__
from .errors import EngineError, UserError

EXIT_BAD_INPUT, EXIT_HOST, EXIT_LIMIT, EXIT_HALTED, EXIT_CRASH, EXIT_INTERRUPTED = (
    2, 3, 124, 125, 126, 130)
EXIT_SIGPIPE = 141          # 128 + SIGPIPE: stdout was closed under us


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:       # one line, status 2, like every bad input
        raise UserError(f"{self.prog}: {message}")


def _module_arg(text: str) -> tuple[str, str]:
    path, _, cmdline = text.partition(":")
    if not path:
        raise argparse.ArgumentTypeError(f"bad module '{text}': expected FILE[:CMDLINE]")
    return path, cmdline


def _disk_arg(text: str) -> tuple[str, bool]:
    path, _, opt = text.partition(",")
    if opt not in ("", "ro"):
        raise argparse.ArgumentTypeError(f"bad disk option '{opt}' in '{text}' (only 'ro')")
    return path, opt == "ro"


def _rtc_arg(text: str) -> Optional[datetime]:
    if text == "now":
        return datetime.now().replace(microsecond=0)
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad --rtc '{text}': 'now' or an ISO date "
                                         "such as 2026-01-01T12:00:00") from None


def positive_int(text: str) -> int:
    """argparse type: a positive integer (decimal or 0x hex)."""
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"'{text}' must be positive")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="l4emu", description="A full-system IA-32 emulator that boots an L4 "
                "microkernel and measures it.")
    p.add_argument("--version", action="version", version=f"l4emu {__version__}")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)

    b = sub.add_parser("boot", help="boot a multiboot kernel or an image manifest")
    _boot_options(b)
    b.add_argument("--stats", action="store_true",
                   help="print instruction and trap counts to stderr at the end")
    b.add_argument("--gdb", default=None, metavar="[HOST:]PORT",
                   help="serve the GDB remote protocol on this port (loopback unless a host "
                        "is given)")
    b.add_argument("--wait", action="store_true",
                   help="with --gdb: stay stopped before the first instruction until gdb "
                        "attaches")

    d = sub.add_parser("debug", help="boot stopped in the debugger shell")
    _boot_options(d)
    d.add_argument("--commands", default=None, metavar="FILE",
                   help="run the debugger commands in FILE first")
    d.add_argument("--l4-layout", default=None, metavar="FILE",
                   help="the L4 kernel's data layout for info threads/tasks (TOML)")

    bl = sub.add_parser("build", help="build an image manifest's parts (cached)")
    bl.add_argument("image", help="images/*.toml")
    bl.add_argument("--force", action="store_true", help="rebuild even if cached")

    from .bench.cli import add_parser as add_bench_parser
    add_bench_parser(sub)
    return p


def _boot_options(b: argparse.ArgumentParser) -> None:
    """The options `boot` and `debug` share: what to boot and the machine to boot it on."""
    b.add_argument("target", help="a multiboot kernel (ELF or a.out kludge) or images/*.toml")
    b.add_argument("--module", action="append", type=_module_arg, default=[],
                   metavar="FILE[:CMDLINE]", help="a multiboot module (repeatable)")
    b.add_argument("--cmdline", default=None, help="the kernel command line")
    b.add_argument("-m", "--memory", type=positive_int, default=None, metavar="MIB",
                   help="RAM in MiB (default 256, or the image's)")
    b.add_argument("--max-insns", type=positive_int, default=None, metavar="N",
                   help="stop after N guest instructions")
    b.add_argument("--disk", action="append", type=_disk_arg, default=[],
                   metavar="FILE[,ro]", help="an ATA disk image (first master, then slave)")
    b.add_argument("--rtc", type=_rtc_arg, default=None, metavar="now|DATE",
                   help="start the guest's clock at the host time or a date "
                        "(default: a fixed date, for determinism)")


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command == "boot":
            return cmd_boot(args)
        if args.command == "build":
            return cmd_build(args)
        if args.command == "debug":
            from .debug.shell import cmd_debug
            return cmd_debug(args)
        if args.command == "bench":
            from .bench.cli import main as cmd_bench
            return cmd_bench(args)
        build_parser().print_help()
        return EXIT_BAD_INPUT
    except UserError as e:
        print(f"l4emu: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except EngineError as e:
        print(f"l4emu: {e}", file=sys.stderr)
        return EXIT_HOST
    except BrokenPipeError:
        return EXIT_HOST


def cmd_build(args) -> int:
    from .boot.image import build_image
    built = build_image(args.image, force=args.force)
    state = "cached" if built.cached else "built"
    print(f"{built.image.name}: {state} in {built.directory}")
    print(f"  kernel  {built.kernel}")
    for path, cmdline in built.modules:
        print(f"  module  {path}" + (f"  ({cmdline})" if cmdline else ""))
    return 0


def cmd_boot(args) -> int:
    from .machine import Stop

    out = sys.stdout.buffer
    closed = []

    def serial_out(data: bytes) -> None:
        if closed:
            return
        try:
            out.write(data)
            out.flush()
        except BrokenPipeError:
            # Whoever read our output has gone (`| head`): stop, quietly, as a shell tool does.
            closed.append(True)
            m.request_stop(Stop.REQUESTED, "stdout was closed")

    m, _kernel, _modules = prepare_machine(args, serial_out)
    if not sys.stdin.isatty():
        data = _read_stdin()
        if data:
            m.serial.feed(data)

    if args.gdb is not None:
        from .debug.gdbstub import serve_boot
        try:
            r = serve_boot(m, args.gdb, args.wait, args.max_insns,
                           log=lambda s: print(s, file=sys.stderr, flush=True))
        except (ValueError, OSError) as e:
            raise UserError(str(e)) from None
    else:
        r = _run_plain(m, args.max_insns)
    if closed:
        # Nothing more can reach stdout; keep the interpreter's own final flush quiet too.
        sys.stdout = open(os.devnull, "w")
        return EXIT_SIGPIPE
    out.flush()
    if args.stats:
        _print_stats(m, r)
    if r.reason is Stop.EXIT:
        return r.exit_status & 0xFF
    status, what = {
        Stop.MAX_INSNS: (EXIT_LIMIT, "reached the instruction limit"),
        Stop.HALTED: (EXIT_HALTED, "stopped making progress"),
        Stop.TRIPLE_FAULT: (EXIT_CRASH, "triple-faulted"),
        Stop.ENGINE_ERROR: (EXIT_CRASH, "crashed"),
        Stop.RESET: (EXIT_CRASH, "asked for a system reset"),
        Stop.REQUESTED: (EXIT_INTERRUPTED, "was interrupted"),
        Stop.HOST_ERROR: (EXIT_HOST, "hit a bug in l4emu"),
    }.get(r.reason, (EXIT_CRASH, f"stopped ({r.reason.value})"))
    print(f"l4emu: the guest {what} after {r.insns} instructions: {r.detail}.\n"
          f"{m.report()}", file=sys.stderr)
    return status


def prepare_machine(args, serial_out):
    """The machine `boot` and `debug` run: devices, firmware tables, the kernel and modules
    loaded, registers as a multiboot loader leaves them.  Returns (machine, kernel, modules)."""
    from .devices.ata import AtaDisk
    from .machine import Machine

    kernel: Path = Path(args.target)
    modules = list(args.module)
    cmdline = args.cmdline
    ram_mib = args.memory
    if kernel.suffix == ".toml":
        from .boot.image import build_image
        built = build_image(kernel)
        modules = [(str(p), c) for p, c in built.modules] + modules
        if cmdline is None:
            cmdline = built.image.kernel.cmdline
        if ram_mib is None:
            ram_mib = built.image.ram_mib
        kernel = built.kernel
    if len(args.disk) > 2:
        raise UserError("at most two --disk images (master and slave)")
    disks = [AtaDisk(path, readonly=ro) for path, ro in args.disk]
    for d in disks:
        if d.warning:
            print(f"l4emu: warning: {d.warning}", file=sys.stderr)
    disks += [None] * (2 - len(disks))
    m = Machine(ram_mib=ram_mib or 256, serial_out=serial_out, disks=tuple(disks),
                rtc_start=args.rtc)
    m.boot_multiboot(kernel, modules, cmdline or "")
    return m, kernel, modules


def _run_plain(m, max_insns):
    from .machine import Stop
    previous = signal.signal(signal.SIGINT, lambda *_: m.request_stop(Stop.REQUESTED,
                                                                      "interrupted"))
    try:
        limit = max_insns
        while True:
            r = m.run(max_insns=None if limit is None else limit - m.clock.now)
            if r.reason is not Stop.KDEBUG:
                break
            # No debugger attached to a plain boot: say so and go on.
            print(f"l4emu: {r.detail}; no debugger attached (use l4emu debug), continuing",
                  file=sys.stderr)
    finally:
        signal.signal(signal.SIGINT, previous)
    return r


def _read_stdin() -> bytes:
    try:
        return os.read(0, 1 << 20)
    except OSError:
        return b""


def _print_stats(m, r) -> None:
    s, c = m.stats, m.cpu.stats
    print(f"l4emu: {r.insns} instructions ({s.idle_insns} idle), {c.traps} traps, "
          f"{s.irqs_delivered} interrupts, {s.slices} slices, {c.block_misses} blocks "
          f"translated, stop: {r.reason.value}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
