"""The pages and translated blocks an address-space switch touches after its CR3 write
(benchmarks/switch_pages.py; docs/benchmarking.md "Where the host time of a switch goes").

Unicorn drops its whole software TLB at every CR3 write, so each distinct (virtual page, MMU
index) touched afterwards costs a refill.  The kernel keeps what the IPC fast path touches
besides code and the two TCBs in one page (the CPU page at IO_PAGE_VIRT: IDT, GDT, TSS, the
fast path's two words), and the bench loop touches its code, stack and `sink` only.  These
counts are exact (a trace, no timers): a change that spreads the switch over more pages fails.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CPU_PAGE = 0xFF83D000                   # IO_PAGE_VIRT (kernel/layout.inc)


def _tool():
    spec = importlib.util.spec_from_file_location("switch_pages",
                                                  ROOT / "benchmarks" / "switch_pages.py")
    mod = sys.modules.setdefault(spec.name, importlib.util.module_from_spec(spec))
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
@pytest.mark.parametrize("entry", ["gate", "int"])
def test_switch_touches_few_pages(entry):
    tool = _tool()
    t, _, sess = tool.trace_lat_ctx(entry)
    try:
        ivs = t.intervals()
        assert len(ivs) >= 3
        for first, last in ivs[1:3]:
            rep = t.interval_report(first, last)
            pages = rep["pages"]
            kernel = sorted(va for va, idx in pages if idx == tool.KERNEL)
            user = sorted(va for va, idx in pages if idx == tool.USER)
            assert None not in kernel + user, pages           # every access was placed
            # kernel code, the two TCBs, the CPU page: nothing else of the kernel
            assert len(kernel) == 4, [hex(v) for v in kernel]
            assert CPU_PAGE in kernel
            assert sum(1 for v in kernel if 0xE0000000 <= v < 0xE2000000) == 2
            # the bench loop: its code, its stack, `sink`
            assert len(user) == 3, [hex(v) for v in user]
            assert len(rep["looked_up"]) <= (5 if entry == "gate" else 4)
    finally:
        sess.close()


@pytest.mark.slow
def test_floor_pages():
    tool = _tool()
    t, _, m = tool.trace_floor()
    try:
        rep = t.interval_report(*t.intervals()[1])
        assert len(rep["pages"]) == 5 and rep["writes"] == 4 and len(rep["looked_up"]) == 3
    finally:
        m.close()
