"""pingpong (one-way short IPC) and null (a system call that does nothing) (emu/bench).

pingpong: a client calls a server `iterations` times with a short register message and the
server replies (reply_and_wait): inter-address-space (the server is another task) and
intra-address-space (another thread of the client's task), by int 0x30 and by the call gate.
One-way = round trip / 2, the client's loop included.  null: id_nearest(nil) = "who am I",
per entry method; per call, the loop included.
"""
from __future__ import annotations

from .lat_ctx import _repeat, floor_record, over_floor
from .report import environment, host_stats, progress
from .session import BenchSession

MODES = {"inter": "pp_inter", "intra": "pp_intra"}


def _point(sess, runs, bench, mode, label, entry, iters, per_unit, ips, floors):
    mark = len(floors)
    ms, same = _repeat(sess, runs, floors, mode=mode, entry=entry, procs=2, kib=0,
                       iters=iters)
    per = ms[0].insns / (iters * per_unit)
    per_run = [m.host_ns / (iters * per_unit) for m in ms]
    host = host_stats(per_run)
    return {"bench": bench, "mode": label, "entry": entry, "iterations": iters,
            "guest_insns_loop": ms[0].insns, "guest_rdtsc_loop": ms[0].guest_rdtsc,
            "insns_per_op": round(per, 4), "guest_us_per_op": round(per / ips * 1e6, 6),
            "host_ns_per_op": host, "host_over_floor": over_floor(per_run, floors[mark:]),
            "reproducible": same}


def run_pingpong(modes, entries, runs: int, iters: int = 10_000, quiet: bool = False,
                 sess: BenchSession | None = None) -> dict:
    own = sess is None
    sess = sess or BenchSession()
    ips = sess.machine.clock.ips
    points = []
    with progress(len(modes) * len(entries) + 1, "pingpong", quiet) as advance:
        floor = sess.floor(runs=1)
        floors = [floor.host_ns_per_switch]
        advance("engine floor")
        for mode in modes:
            for entry in entries:
                points.append(_point(sess, runs, "pingpong", MODES[mode], mode, entry, iters,
                                     2, ips, floors))
                advance(f"{mode} {entry}")
    if own:
        sess.close()
    return {"benchmark": "pingpong", "unit": "one-way IPC", **environment(),
            "nominal_ips": ips, "engine_floor": floor_record(floor, floors), "points": points}


def run_null(entries, runs: int, iters: int = 10_000, quiet: bool = False,
             sess: BenchSession | None = None) -> dict:
    own = sess is None
    sess = sess or BenchSession()
    ips = sess.machine.clock.ips
    points = []
    with progress(len(entries) + 1, "null", quiet) as advance:
        floor = sess.floor(runs=1)
        floors = [floor.host_ns_per_switch]
        advance("engine floor")
        for entry in entries:
            points.append(_point(sess, runs, "null", "null", "id_nearest(myself)", entry,
                                 iters, 1, ips, floors))
            advance(entry)
    if own:
        sess.close()
    return {"benchmark": "null", "unit": "system call", **environment(), "nominal_ips": ips,
            "engine_floor": floor_record(floor, floors), "points": points}

