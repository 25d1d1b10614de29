"""The `l4emu bench` subcommand (emu/cli.py calls add_parser and main here).

    l4emu bench lat_ctx [-s KIB]... [--procs N...] [--entry int|gate] [--runs R]
                        [--hops H] [--json FILE] [--plot FILE.png] [--quiet]
    l4emu bench pingpong [--mode inter|intra] [--entry int|gate] [--runs R] [--iters I]
                         [--json FILE]
    l4emu bench null [--entry int|gate] [--runs R] [--iters I] [--json FILE]

Without --entry both entries are measured (lat_ctx: the gate only, the fast entry, unless
--entry int is given too).  Guest-instruction figures are exact and identical from run to run;
host times vary (median, min, max of R runs).
"""
from __future__ import annotations

import argparse
import sys

from ..cli import positive_int as _positive
from ..errors import UserError

WORK_KIB = 1024         # servers/bench/main.c WORK_BYTES: the working sets of all members


def _size(text: str) -> int:
    try:
        v = int(text.lower().rstrip("k"), 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a size in KiB") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"'{text}' must not be negative")
    return v


def add_parser(sub) -> None:
    b = sub.add_parser("bench", help="lmbench-style benchmarks of the L4 kernel "
                       "(exact guest instructions, host time)")
    bs = b.add_subparsers(dest="bench", parser_class=type(b))
    lc = bs.add_parser("lat_ctx", help="context switch: a ring of N tasks passing a token")
    lc.add_argument("-s", "--size", action="append", type=_size, metavar="KIB",
                    help="working set per task in KiB (repeatable; default 0)")
    lc.add_argument("--procs", nargs="+", type=_positive, metavar="N",
                    help="ring sizes (default 2 4 8 16 32 64)")
    lc.add_argument("--hops", type=_positive, default=20_000,
                    help="switches per point (default 20000)")
    pp = bs.add_parser("pingpong", help="one-way short IPC, inter/intra address space")
    pp.add_argument("--mode", action="append", choices=["inter", "intra"])
    pp.add_argument("--iters", type=_positive, default=10_000, help="round trips per run")
    nl = bs.add_parser("null", help="null system call: id_nearest(myself)")
    nl.add_argument("--iters", type=_positive, default=10_000, help="calls per run")
    for p in (lc, pp, nl):
        p.add_argument("--entry", action="append", choices=["int", "gate"],
                       help="kernel entry (repeatable)")
        p.add_argument("--runs", type=_positive, default=5,
                       help="runs per point for the host time (default 5)")
        p.add_argument("--json", metavar="FILE", help="write the JSON record here")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
    lc.add_argument("--plot", metavar="FILE.png", help="plot switch cost against N (matplotlib)")


def main(args) -> int:
    from . import report
    if args.bench is None:
        raise UserError("l4emu bench: choose lat_ctx, pingpong or null (l4emu bench -h)")
    if args.bench == "lat_ctx":
        from .lat_ctx import lmbench_lines, run_lat_ctx
        sizes = args.size or [0]
        procs = args.procs or [2, 4, 8, 16, 32, 64]
        if any(n < 2 or n > 64 for n in procs):
            raise UserError("--procs: the ring has 2..64 members")
        if max(procs) * max(sizes) > WORK_KIB:
            raise UserError(f"lat_ctx: {max(procs)} tasks x {max(sizes)} KiB: all working sets "
                            f"together must fit in {WORK_KIB} KiB (servers/bench/main.c)")
        entries = args.entry or ["gate"]
        rec = run_lat_ctx(sizes, procs, entries, args.runs, args.hops, args.quiet)
        for entry in entries:
            print(f"# lat_ctx-style, entry={entry}: guest microseconds per switch at the "
                  f"nominal {rec['nominal_ips'] / 1e9:g} GHz, overhead subtracted", file=sys.stderr)
            for line in lmbench_lines(rec, entry):
                print(line, file=sys.stderr)
        fl = rec["engine_floor"]["host_ns_per_switch"]
        report.table(
            f"lat_ctx (engine floor {fl / 1000:.2f} µs: gate + CR3 round trip)",
            ["size", "N", "entry", "insns/switch", "ovr", "net", "host µs med", "min", "max",
             "host net", "x floor", "same"],
            [(f"{p['size_kib']}k", p["procs"], p["entry"], p["insns_per_switch"],
              p["ovr_insns_per_switch"], p["insns_per_switch_net"],
              p["host_ns_per_switch"]["median"] / 1000, p["host_ns_per_switch"]["min"] / 1000,
              p["host_ns_per_switch"]["max"] / 1000, p["host_ns_per_switch_net"] / 1000,
              p["host_over_floor"], "yes" if p["reproducible"] else "NO")
             for p in rec["points"]])
        if args.plot:
            report.plot_lat_ctx(args.plot, rec["points"], fl)
    else:
        from .pingpong import run_null, run_pingpong
        entries = args.entry or ["int", "gate"]
        if args.bench == "pingpong":
            rec = run_pingpong(args.mode or ["inter", "intra"], entries, args.runs, args.iters,
                               args.quiet)
            title, unit = "pingpong: one-way short IPC", "one-way"
        elif args.bench == "null":
            rec = run_null(entries, args.runs, args.iters, args.quiet)
            title, unit = "null system call: id_nearest(myself)", "call"
        else:
            raise UserError("l4emu bench: choose lat_ctx, pingpong or null")
        fl = rec["engine_floor"]["host_ns_per_switch"]
        report.table(
            f"{title} (engine floor {fl / 1000:.2f} µs)",
            ["mode", "entry", f"insns/{unit}", "guest µs", "host µs med", "min", "max",
             "x floor", "same"],
            [(p["mode"], p["entry"], p["insns_per_op"], f"{p['guest_us_per_op']:.3f}",
              p["host_ns_per_op"]["median"] / 1000, p["host_ns_per_op"]["min"] / 1000,
              p["host_ns_per_op"]["max"] / 1000, p["host_over_floor"],
              "yes" if p["reproducible"] else "NO") for p in rec["points"]])
    if args.json:
        report.write_json(args.json, rec)
    bad = [p for p in rec["points"] if not p["reproducible"]]
    if bad:
        print("l4emu bench: guest instruction counts differed between runs", file=sys.stderr)
        return 1
    return 0
