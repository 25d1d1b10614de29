"""Machine speed: guest MIPS against raw Unicorn, and the cost of one delivered `int 0x30`.

    python benchmarks/machine_speed.py [--runs R] [--json FILE]

(a) A compute-bound ring-0 loop (add/xor/imul/sub/dec/jnz, 6 instructions an iteration) runs
    on the Machine in its deterministic mode (the native block callback keeps the exact
    instruction count and the budget) and on a bare Unicorn engine with no hooks at all, in the
    same process, alternating, R times each.  Reported: median host MIPS of each and the ratio.
    Target (issue 2): the machine keeps at least 70 % of raw Unicorn.
(b) A ring-3 loop of `int 0x30` through a DPL-3 trap gate whose handler is a bare `iretd`:
    host microseconds per round trip (hook, IDT delivery in Python, guest handler, native
    iretd), median of R runs.  Target: <= 8 us.

Guest instruction counts are exact and printed too; host times are medians on a noisy machine.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import unicorn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from emu import __version__  # noqa: E402
from emu.asm import assemble  # noqa: E402
from emu.machine import Machine  # noqa: E402
from tests.guest import Guest  # noqa: E402

LOOP_ITERS = 20_000_000
LOOP = f"""
  mov ecx, {LOOP_ITERS}
l:
  add eax, ebx
  xor edx, eax
  imul esi, eax, 3
  sub ebx, 1
  dec ecx
  jnz l
  mov al, 0
  out 0xf4, al
"""
INT_ROUND_TRIPS = 100_000


def run_machine_loop() -> tuple[float, int]:
    code = assemble(LOOP, 0x100000).code
    m = Machine(ram_mib=16)
    m.load(0x100000, code)
    m.set_entry_state(0x100000)
    t = time.perf_counter()
    r = m.run()
    dt = time.perf_counter() - t
    m.close()
    return dt, r.insns


def run_raw_loop() -> tuple[float, int]:
    code = assemble(LOOP, 0x100000).code
    uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_32)
    uc.mem_map(0x100000, 0x10000)
    uc.mem_write(0x100000, code)
    end = 0x100000 + len(code) - 4          # stop before the exit port write
    t = time.perf_counter()
    uc.emu_start(0x100000, end)
    dt = time.perf_counter() - t
    return dt, 1 + 6 * LOOP_ITERS


def run_int30() -> tuple[float, int]:
    g = Guest(user=f"""
      mov ecx, {INT_ROUND_TRIPS}
    again:
      int 0x30
      dec ecx
      jnz again
      int 0x31
    """, handlers="h30:\n  iretd\nh31:\n  EXIT 0\n",
        gates={0x30: ("h30", 0xF, 3), 0x31: ("h31", 0xF, 3)})
    m, _ = g.build()
    t = time.perf_counter()
    r = m.run()
    dt = time.perf_counter() - t
    m.close()
    return dt, r.insns


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    machine, raw, ints = [], [], []
    insns = {}
    for _ in range(args.runs):
        dt, n = run_raw_loop()
        raw.append(n / dt / 1e6)
        dt, n = run_machine_loop()
        machine.append(n / dt / 1e6)
        insns["loop"] = n
        dt, n = run_int30()
        ints.append(dt / INT_ROUND_TRIPS * 1e6)
        insns["int30"] = n
    res = {
        "l4emu": __version__,
        "runs": args.runs,
        "raw_mips": {"median": statistics.median(raw), "min": min(raw), "max": max(raw)},
        "machine_mips": {"median": statistics.median(machine), "min": min(machine),
                         "max": max(machine)},
        "machine_vs_raw": statistics.median(machine) / statistics.median(raw),
        "int30_round_trip_us": {"median": statistics.median(ints), "min": min(ints),
                                "max": max(ints)},
        "guest_instructions": insns,
    }
    print(f"compute loop: {insns['loop']} guest instructions")
    print(f"  raw Unicorn (no hooks)  {res['raw_mips']['median']:8.0f} MIPS "
          f"(min {min(raw):.0f}, max {max(raw):.0f})")
    print(f"  l4emu machine           {res['machine_mips']['median']:8.0f} MIPS "
          f"(min {min(machine):.0f}, max {max(machine):.0f})")
    print(f"  ratio                   {res['machine_vs_raw'] * 100:8.1f} %   (target >= 70 %)")
    print(f"int 0x30 round trip ({INT_ROUND_TRIPS} from ring 3, {insns['int30']} guest "
          f"instructions in all)")
    print(f"  host time               {res['int30_round_trip_us']['median']:8.2f} us "
          f"(min {min(ints):.2f}, max {max(ints):.2f})   (target <= 8 us)")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
