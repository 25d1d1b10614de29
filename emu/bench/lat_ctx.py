"""lat_ctx-style context-switch cost (lmbench's method, reimplemented; emu/bench).

A ring of N threads, each in its own address space, passes a token by IPC; at each hop the
receiver sums its own working set of `size` KiB (servers/bench/main.c).  The overhead is the
same per-hop work (token bookkeeping and the sum over the members' working sets in turn) done
in one thread with no IPC: in L4 the IPC *is* the switch (a thread cannot IPC itself without
blocking), so what is subtracted is the work, and what remains is the token's trip from one
address space to the next: user stub, kernel entry, IPC fast path, CR3 write, exit, loop.

Per point: the exact guest instructions of the measured loop (identical on every run: it is
checked), per switch = loop / (iterations * N); guest time at the nominal rate (1 instruction
per ns); host time per switch, median, min and max over R runs.
"""
from __future__ import annotations

from .report import environment, host_stats, progress
from .session import BenchSession

DEFAULT_HOPS = 20_000           # switches per point (iterations = HOPS / N, at least 20)


def iterations_for(procs: int, hops: int = DEFAULT_HOPS) -> int:
    return max(20, -(-hops // procs))


def _repeat(sess: BenchSession, runs: int, floors: list[float] | None = None, **kw):
    """`runs` measurements of one point.  With `floors`, each is preceded by a run of the
    engine floor on the same machine (appended to `floors`): the host's speed drifts, so a
    point is compared with the floor measured right before it."""
    ms = []
    for _ in range(runs):
        if floors is not None:
            floors.append(sess.floor(runs=1).host_ns_per_switch)
        ms.append(sess.measure(**kw))
    counts = {m.insns for m in ms}
    return ms, len(counts) == 1


def over_floor(per_run_ns: list[float], floors: list[float]) -> float:
    """The median of each run's host time over the floor measured just before it."""
    import statistics
    return round(statistics.median(t / f for t, f in zip(per_run_ns, floors)), 3)


def floor_record(floor, floors: list[float]) -> dict:
    import statistics
    return {"what": "lcall through a DPL-3 call gate, one CR3 write, retf",
            "iterations": floor.iterations, "insns_per_switch": floor.insns_per_switch,
            "host_ns_per_switch": round(statistics.median(floors), 1),
            "host_ns_min": round(min(floors), 1), "host_ns_max": round(max(floors), 1),
            "runs": len(floors)}


def run_lat_ctx(sizes, procs_list, entries, runs: int, hops: int = DEFAULT_HOPS,
                quiet: bool = False, sess: BenchSession | None = None) -> dict:
    own = sess is None
    sess = sess or BenchSession()
    ips = sess.machine.clock.ips
    points, overheads = [], {}
    total = len(sizes) * len(procs_list) * (len(entries) + 1) + 1
    with progress(total, "lat_ctx", quiet) as advance:
        floor = sess.floor(runs=1)
        floors = [floor.host_ns_per_switch]
        advance("engine floor")
        for kib in sizes:
            for n in procs_list:
                iters = iterations_for(n, hops)
                ovr, _ = _repeat(sess, 1, mode="ovr", entry="gate", procs=n, kib=kib,
                                 iters=iters)
                ovr_insns = ovr[0].insns / (iters * n)
                ovr_ns = ovr[0].host_ns / (iters * n)
                overheads[(kib, n)] = ovr_insns
                advance(f"size={kib}k N={n} overhead")
                for entry in entries:
                    mark = len(floors)
                    ms, same = _repeat(sess, runs, floors, mode="lat_ctx", entry=entry,
                                       procs=n, kib=kib, iters=iters)
                    per = ms[0].insns / (iters * n)
                    per_run = [m.host_ns / (iters * n) for m in ms]
                    host = host_stats(per_run)
                    points.append({
                        "bench": "lat_ctx", "size_kib": kib, "procs": n, "entry": entry,
                        "iterations": iters, "switches": iters * n,
                        "guest_insns_loop": ms[0].insns,
                        "guest_rdtsc_loop": ms[0].guest_rdtsc,
                        "insns_per_switch": round(per, 4),
                        "ovr_insns_per_switch": round(ovr_insns, 4),
                        "insns_per_switch_net": round(per - ovr_insns, 4),
                        "guest_us_per_switch": round(per / ips * 1e6, 6),
                        "guest_us_per_switch_net": round((per - ovr_insns) / ips * 1e6, 6),
                        "host_ns_per_switch": host,
                        "ovr_host_ns_per_switch": round(ovr_ns, 1),
                        "host_ns_per_switch_net": round(host["median"] - ovr_ns, 1),
                        "host_over_floor": over_floor(per_run, floors[mark:]),
                        "reproducible": same,
                    })
                    advance(f"size={kib}k N={n} {entry}")
    if own:
        sess.close()
    return {"benchmark": "lat_ctx", **environment(), "nominal_ips": ips,
            "engine_floor": floor_record(floor, floors), "points": points}


def lmbench_lines(record: dict, entry: str) -> list[str]:
    """lmbench's output: per size `"size=Xk ovr=Y` then `N T` lines, times in microseconds
    of guest time at the nominal rate (three decimals: the figures are below 1 µs)."""
    ips = record["nominal_ips"]
    out = []
    pts = [p for p in record["points"] if p["entry"] == entry]
    for kib in sorted({p["size_kib"] for p in pts}):
        row = sorted((p for p in pts if p["size_kib"] == kib), key=lambda p: p["procs"])
        out.append("")
        out.append(f'"size={kib}k ovr={row[0]["ovr_insns_per_switch"] / ips * 1e6:.3f}')
        for p in row:
            if p["guest_us_per_switch_net"] > 0:
                out.append(f'{p["procs"]} {p["guest_us_per_switch_net"]:.3f}')
    return out
