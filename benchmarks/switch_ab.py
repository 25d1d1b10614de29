"""Host time of lat_ctx N=2 size 0 against the engine floor, for one or more bench images,
alternated in one process (issue 6; docs/benchmarking.md).

    python benchmarks/switch_ab.py images/bench-l4.toml OTHER/images/bench-l4.toml --rounds 9

Each image gets its own BenchSession (a booted machine and Unicorn instance).  Every round
measures, for every image in turn: the engine floor on that image's own machine, then the
lat_ctx ring (N=2, size 0) by the gate and by `int 0x30`.  Per measurement it takes both the
wall clock and the thread's CPU time (time.thread_time_ns: on a shared machine the wall clock
also counts the time the process was not running); the figure to compare is the ratio to the
floor measured on the same machine in the same round.  OTHER is e.g. an older tree exported
with `git archive` (the image's kernel and servers are built from the files next to it).
With `--slow-stores`, every image is measured a second time in each round with the fast
guest stores of emu/native/blockhook.c turned off (`Cpu.fast_stores`), on the same machine;
with `--no-keep`, with the TLB entries kept across CR3 writes turned off (`Cpu.keep_tlb`);
with `--no-va-cache`, with block counts looked up in the count table only (`Cpu.va_cache`);
with `--exit-checks`, with Unicorn's check for a stop request after every guest memory
access translated into every block (`Cpu.lean_blocks`).
Each such variant also gets its time per switch divided by the default's of the same round,
the median of those ratios being the steadiest figure for a small difference (many short
rounds: `--rounds 61 --iters 2500 --floor-iterations 10000`).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from unicorn import x86_const as X  # noqa: E402

from emu.bench.floor import setup_floor  # noqa: E402
from emu.bench.session import ENTRIES, MODES, BenchSession  # noqa: E402
from emu.machine import Stop  # noqa: E402


# The emulator's shortcuts that can be turned off for a measurement: option, Cpu property.
SWITCHES = [
    ("--slow-stores", "fast_stores", "the fast guest stores off"),
    ("--no-keep", "keep_tlb", "the TLB entries not kept across CR3 writes"),
    ("--no-va-cache", "va_cache", "block counts not cached by address"),
    ("--exit-checks", "lean_blocks", "Unicorn's exit checks after every memory access"),
]


def _clocks():
    return time.perf_counter_ns(), time.thread_time_ns()


def floor_ns(sess: BenchSession, iterations: int) -> tuple[float, float]:
    m = sess.machine
    m.load_state(sess.power_on)
    start, done = setup_floor(m, iterations)
    m.run(max_insns=10_000, until=start)
    w0, c0 = _clocks()
    r = m.run(max_insns=20 * iterations, until=done)
    w1, c1 = _clocks()
    assert r.reason is Stop.BREAKPOINT, r
    return (w1 - w0) / iterations, (c1 - c0) / iterations


def lat_ctx_ns(sess: BenchSession, entry: str, iters: int) -> tuple[float, float, int]:
    """(wall ns, CPU ns, guest instructions) per switch of the ring N=2, size 0."""
    m = sess.machine
    m.load_state(sess.snapshot)
    m.cpu.set_reg(X.UC_X86_REG_EAX, MODES["lat_ctx"] | (ENTRIES.index(entry) << 8) | (2 << 16))
    m.cpu.set_reg(X.UC_X86_REG_ECX, 0)
    m.cpu.set_reg(X.UC_X86_REG_EDX, iters)
    marks = []
    while len(marks) < 2:
        r = sess._run(2_000_000_000)
        clk = _clocks()
        assert r.reason is Stop.BREAKPOINT, r
        want = sess.mark_start if not marks else sess.mark_end
        if m.cpu.eip == want:
            marks.append((m.clock.now, *clk))
    n = 2 * iters
    return ((marks[1][1] - marks[0][1]) / n, (marks[1][2] - marks[0][2]) / n,
            marks[1][0] - marks[0][0])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("images", nargs="+", type=Path)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--iters", type=int, default=10_000, help="ring trips per measurement")
    ap.add_argument("--floor-iterations", type=int, default=100_000)
    for flag, _attr, what in SWITCHES:
        ap.add_argument(flag, action="store_true", help=f"also measure each image with {what}")
    a = ap.parse_args(argv)
    opened = [BenchSession(p.resolve()) for p in a.images]
    variants = [(s, p, None) for s, p in zip(opened, a.images)]
    for flag, attr, what in SWITCHES:
        if getattr(a, flag[2:].replace("-", "_")):
            variants += [(s, p, (attr, what)) for s, p in zip(opened, a.images)]
    sessions = [v[0] for v in variants]
    rows = {(i, k): [] for i in range(len(sessions)) for k in ("floor", "gate", "int")}
    insns = {}
    for rnd in range(a.rounds):
        for i, s in enumerate(sessions):
            off = variants[i][2]
            if off:
                setattr(s.machine.cpu, off[0], False)
            fw, fc = floor_ns(s, a.floor_iterations)
            rows[(i, "floor")].append((fw, fc, fw, fc))
            for e in ("gate", "int"):
                w, c, n = lat_ctx_ns(s, e, a.iters)
                insns[(i, e)] = n / (2 * a.iters)
                rows[(i, e)].append((w, c, w / fw, c / fc))
            if off:
                setattr(s.machine.cpu, off[0], True)
        print(f"round {rnd + 1}/{a.rounds}", file=sys.stderr, flush=True)
    print(f"lat_ctx N=2 size 0, {a.iters * 2} switches per run, median (min) of {a.rounds} "
          "rounds; x floor = ratio to the floor of the same machine and round")
    for i, (_s, p, what) in enumerate(variants):
        f = rows[(i, "floor")]
        print(f"\n{p}" + (f"  ({what[1]})" if what else ""))
        print(f"    floor      wall {statistics.median(r[0] for r in f):7.0f} ns "
              f"({min(r[0] for r in f):.0f})   cpu {statistics.median(r[1] for r in f):7.0f} ns "
              f"({min(r[1] for r in f):.0f})")
        for e in ("gate", "int"):
            rs = rows[(i, e)]
            print(f"    {e:5s}      wall {statistics.median(r[0] for r in rs):7.0f} ns "
                  f"({min(r[0] for r in rs):.0f})   cpu {statistics.median(r[1] for r in rs):7.0f}"
                  f" ns ({min(r[1] for r in rs):.0f})   x floor wall "
                  f"{statistics.median(r[2] for r in rs):.2f} ({min(r[2] for r in rs):.2f})  "
                  f"cpu {statistics.median(r[3] for r in rs):.2f} ({min(r[3] for r in rs):.2f})"
                  f"   {insns[(i, e)]:.2f} insns/switch")
        if what:
            # Against the same image with every shortcut on, round by round (the rounds
            # alternate the two, so a slow phase of the host hits both alike).
            base = variants.index((_s, p, None))
            for e in ("gate", "int"):
                paired = [r[1] / b[1] for r, b in zip(rows[(i, e)], rows[(base, e)])]
                print(f"    {e:5s}      cpu / default's in the same round: median "
                      f"{statistics.median(paired):.3f} (min {min(paired):.3f}, "
                      f"max {max(paired):.3f})")
    for s in opened:
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
