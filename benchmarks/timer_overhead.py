"""Timer-interrupt overhead of the run loop, and host cost of ATA PIO sector reads.

What it measures (host wall time, `time.perf_counter`, around `Machine.run` only: building
and assembling the guest is not timed):

1. A compute-bound guest loop of fixed length (default 200M instructions: 10 register
   instructions per iteration) run
     (a) with no timer,
     (b) with the 8254 at 100 Hz (mode 2, N = 11932) delivering IRQ 0 through the 8259A,
     (c) the same at 1000 Hz (N = 1193),
     (d) and at 10 kHz (N = 119), where the per-interrupt cost stands out of the noise.
   Each handler only EOIs the PIC and counts.  Reported per variant: interrupts delivered,
   instructions retired, host seconds (median of R runs, the variants interleaved so drift in
   a noisy VM hits them alike), guest MIPS, overhead % against (a) of the same invocation, and
   host microseconds per delivered interrupt ((variant - a) / interrupts).
2. ATA PIO reads: a guest reads N sectors of a disk image (made in a temp dir) with READ
   SECTORS (256 sectors per command), waiting for IRQ 14 (through the slave 8259A) with `hlt`
   before each sector and moving it with `rep insw` (and, as a second row, `rep insd`).
   Reported: host microseconds per 512-byte sector (median of R runs), and host MB/s.

On a noisy VM the run-to-run spread of (a) is several per cent, larger than the whole cost of a
100 or 1000 Hz tick; the 10 kHz row is where us/IRQ means something.  Virtual time does not
depend on the host, so instruction and interrupt counts are identical on
every run; only the host seconds vary.

Run from the repository root:

    python benchmarks/timer_overhead.py                  # defaults: 200M insns, 3 runs
    python benchmarks/timer_overhead.py --insns 50e6 --runs 5 --sectors 1024 --json out.json

It takes well under two minutes with the defaults.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from emu.devices.ata import AtaDisk
from emu.machine import Machine, Stop
from tests.guest import Guest, exit_code, pic_init, result

PIC_INIT = pic_init()

#: (name, PIT divisor or None)
VARIANTS = (("no timer", None), ("PIT 100 Hz", 11932), ("PIT 1000 Hz", 1193),
            ("PIT 10 kHz", 119))
LOOP_BODY_INSNS = 10


def compute_guest(iterations: int, divisor: int | None) -> Guest:
    timer = "" if divisor is None else f"""
  mov al, 0x34
  out 0x43, al
  mov al, {divisor & 0xFF}
  out 0x40, al
  mov al, {divisor >> 8}
  out 0x40, al
  mov al, 0xfe
  out 0x21, al
"""
    return Guest(kernel=PIC_INIT + timer + f"""
  mov eax, 12345
  xor ebx, ebx
  xor esi, esi
  mov ecx, {iterations}
  sti
work:
  imul eax, eax, 1103515245
  add eax, 12345
  xor ebx, eax
  rol ebx, 5
  add esi, ebx
  lea edi, [esi + eax * 2]
  xor esi, edi
  nop
  dec ecx
  jnz work
  cli
  EXIT 1
""", handlers="""
irq0:
  push eax
  inc dword ptr [0x6000]
  mov al, 0x20
  out 0x20, al
  pop eax
  iretd
""", gates={0x20: ("irq0", 0xE, 0)}, ram_mib=16)


def time_compute(iterations: int, divisor: int | None) -> tuple[float, int, int]:
    m, _ = compute_guest(iterations, divisor).build()
    t0 = time.perf_counter()
    r = m.run(max_insns=iterations * LOOP_BODY_INSNS * 2)
    dt = time.perf_counter() - t0
    if r.reason is not Stop.EXIT or exit_code(r) != 1:
        raise SystemExit(f"compute guest did not finish: {r}\n{m.report()}")
    irqs = result(m, 0)
    m.close()
    return dt, r.insns, irqs


BUFFER = 0x200000


def ata_guest(sectors: int, dwords: bool) -> Guest:
    """READ SECTORS in commands of up to 256 sectors; one IRQ 14 per sector (handler reads the
    status register, which clears INTRQ, and EOIs both 8259As); `hlt` until it comes, then one
    string input of the sector into a 512-byte buffer."""
    move = "mov ecx, 128\n  rep insd" if dwords else "mov ecx, 256\n  rep insw"
    return Guest(kernel=PIC_INIT + f"""
  mov al, 0xfb
  out 0x21, al              # master: unmask IRQ 2 (cascade)
  mov al, 0xbf
  out 0xa1, al              # slave: unmask IRQ 14
  xor ebx, ebx              # next LBA
  mov ebp, {sectors}        # sectors left
command:
  mov esi, ebp
  cmp esi, 256
  jbe count_ok
  mov esi, 256
count_ok:
  mov dx, 0x1f6
  mov eax, ebx
  shr eax, 24
  or al, 0xe0
  out dx, al                # LBA mode, drive 0, LBA 27:24
  mov dx, 0x1f2
  mov eax, esi
  out dx, al                # count (256 -> 0)
  mov dx, 0x1f3
  mov eax, ebx
  out dx, al
  inc dx
  shr eax, 8
  out dx, al
  inc dx
  shr eax, 8
  out dx, al
  mov dx, 0x1f7
  mov al, 0x20
  out dx, al                # READ SECTORS
sector:
  cli
  cmp dword ptr [0x6004], 0
  jne ready
  sti
  hlt                       # sti's shadow covers hlt: no lost wake-up
  jmp sector
ready:
  sti
  mov dword ptr [0x6004], 0
  mov edi, {BUFFER}
  mov dx, 0x1f0
  cld
  {move}
  inc dword ptr [0x6000]
  inc ebx
  dec ebp
  jz done
  dec esi
  jnz sector
  jmp command
done:
  mov dx, 0x1f7
  in al, dx
  mov [0x6008], eax
  EXIT 1
""", handlers="""
irq14:
  push eax
  push edx
  mov dx, 0x1f7
  in al, dx                 # status: clears INTRQ
  mov dword ptr [0x6004], 1
  mov al, 0x20
  out 0xa0, al
  out 0x20, al
  pop edx
  pop eax
  iretd
""", gates={0x2E: ("irq14", 0xE, 0)}, ram_mib=16)


def time_ata(image: str, sectors: int, dwords: bool) -> float:
    m = Machine(ram_mib=16, disks=(AtaDisk(image), None))
    m, _ = ata_guest(sectors, dwords).build(m)
    t0 = time.perf_counter()
    r = m.run(max_insns=sectors * 1_000_000)
    dt = time.perf_counter() - t0
    if r.reason is not Stop.EXIT or exit_code(r) != 1 or result(m, 0) != sectors:
        raise SystemExit(f"ATA guest did not finish: {r} sectors={result(m, 0)}\n{m.report()}")
    last = (sectors - 1) % 256
    want = bytes((last * 7 + i) & 0xFF for i in range(512))
    got = bytes(m.ram.read(BUFFER, 512))
    if got != want:
        raise SystemExit("ATA guest read the wrong data for its last sector")
    m.close()
    return dt


def make_image(path: str, sectors: int) -> None:
    with open(path, "wb") as f:
        f.writelines(bytes(((s % 256) * 7 + i) & 0xFF for i in range(512)) for s in range(sectors))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--insns", type=float, default=200e6,
                    help="length of the compute loop in guest instructions (default 200e6)")
    ap.add_argument("--runs", type=int, default=3, help="runs per variant; the median is reported")
    ap.add_argument("--sectors", type=int, default=2048,
                    help="sectors per ATA run (0 skips the ATA part; default 2048)")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = ap.parse_args(argv)
    iterations = int(args.insns) // LOOP_BODY_INSNS

    time_compute(min(iterations, 1_000_000), VARIANTS[-1][1])     # warm-up, not reported
    times: dict[str, list[float]] = {name: [] for name, _ in VARIANTS}
    counts: dict[str, tuple[int, int]] = {}
    for _ in range(args.runs):
        for name, divisor in VARIANTS:
            dt, insns, irqs = time_compute(iterations, divisor)
            times[name].append(dt)
            if counts.setdefault(name, (insns, irqs)) != (insns, irqs):
                raise SystemExit(f"{name}: counts differ between runs (determinism broken)")

    base = statistics.median(times[VARIANTS[0][0]])
    rows = []
    for name, _ in VARIANTS:
        med = statistics.median(times[name])
        insns, irqs = counts[name]
        rows.append({
            "variant": name, "irqs": irqs, "insns": insns, "host_s": med,
            "host_s_min": min(times[name]), "host_s_all": times[name], "mips": insns / med / 1e6,
            "overhead_pct": (med / base - 1) * 100,
            "us_per_irq": (med - base) / irqs * 1e6 if irqs else None,
        })

    print(f"compute loop: {iterations * LOOP_BODY_INSNS:,} instructions, median of "
          f"{args.runs} runs ({platform.node()}, Python {platform.python_version()})")
    print(f"{'variant':<13}{'IRQs':>7}{'guest insns':>15}{'host s':>9}{'(min)':>8}{'MIPS':>8}"
          f"{'overhead':>10}{'us/IRQ':>8}")
    for r in rows:
        per = "" if r["us_per_irq"] is None else f"{r['us_per_irq']:8.1f}"
        print(f"{r['variant']:<13}{r['irqs']:>7}{r['insns']:>15,}{r['host_s']:>9.3f}"
              f"{r['host_s_min']:>8.3f}{r['mips']:>8.0f}{r['overhead_pct']:>9.1f}%{per}")

    ata_rows = []
    if args.sectors > 0:
        with tempfile.TemporaryDirectory() as tmp:
            image = os.path.join(tmp, "disk.img")
            make_image(image, args.sectors)
            for label, dwords in (("rep insw", False), ("rep insd", True)):
                ts = [time_ata(image, args.sectors, dwords) for _ in range(args.runs)]
                med = statistics.median(ts)
                ata_rows.append({"transfer": label, "sectors": args.sectors, "host_s": med,
                                 "host_s_all": ts, "us_per_sector": med / args.sectors * 1e6,
                                 "mb_per_s": args.sectors * 512 / med / 1e6})
        print(f"\nATA PIO READ SECTORS, IRQ 14 per sector, {args.sectors} sectors, median of "
              f"{args.runs} runs")
        print(f"{'transfer':<10}{'host s':>9}{'us/sector':>11}{'MB/s':>8}")
        for r in ata_rows:
            print(f"{r['transfer']:<10}{r['host_s']:>9.3f}{r['us_per_sector']:>11.1f}"
                  f"{r['mb_per_s']:>8.2f}")

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"compute": rows, "ata": ata_rows, "runs": args.runs,
                       "host": platform.node(), "python": platform.python_version()},
                      f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
