"""What an address-space switch touches after its CR3 write, counted exactly (issue 6).

Unicorn 2.1.4 (QEMU 5 softmmu) flushes its whole software TLB and its jump cache on every CR3
write, global pages included.  Afterwards every distinct (virtual page, MMU index) the guest
touches costs a TLB refill (a page walk and a memory-region lookup), and every translated
block entered other than by a direct jump chained within its page costs a hash-table lookup.
This tool counts both, deterministically (no timers):

    python benchmarks/switch_pages.py                # lat_ctx N=2 size 0 gate, and the floor
    python benchmarks/switch_pages.py --entry int
    python benchmarks/switch_pages.py --timing       # + host ns per page, block, store
    python benchmarks/switch_pages.py --image OLD/images/bench-l4.toml   # another tree

It runs `l4emu bench lat_ctx` (N=2, size 0) to the measured loop, lets it reach steady state,
then traces a few switches with Python hooks: every instruction (EIP, CPL, CR3, registers)
and every memory access the engine reports.  Unicorn's memory hooks give *physical*
addresses, and they also see what the CPU itself reads and writes for an instruction (GDT
descriptors on segment loads, the TSS's SS0:ESP0 on a ring change, the IDT for `int`, the
pushes to the new stack), so each access is mapped back to its virtual page by trying the
candidates the instruction can touch: its memory operands (capstone), the stack around ESP
before and after, the GDT, IDT and TSS (whose bases the CPU holds).  Accesses the CPU makes
for a kernel purpose (descriptor tables, the TSS, the ring-0 stack of a ring change) use the
kernel MMU index; others use the index of the instruction's CPL.

One "interval" is everything from one CR3 write to the next: in a ring of two tasks that is
exactly one switch (A's fast path writes CR3 = B, B runs and enters the kernel, B's fast path
writes CR3 = A).  Per interval the tool prints the distinct (page, index) pairs by kind, and
the translated blocks entered: distinct ones, and those entered by a lookup (after an
indirect jump, a `ret`/`iret`/`lcall`/`retf`/`popfd`/CR3 write or a jump to another page;
QEMU chains only direct jumps within a page), each a jump-cache miss after the flush.

--timing relates pages and blocks to host time on the engine-floor guest (emu/bench/floor.py):
the floor with k extra distinct 4 KiB pages read after the CR3 write against k reads of one
page (the same instructions), and k extra blocks entered by indirect jumps against k blocks
chained by direct jumps, alternated over several rounds on one Unicorn instance.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import capstone  # noqa: E402
import unicorn  # noqa: E402
from capstone import x86_const as CX  # noqa: E402
from unicorn import x86_const as X  # noqa: E402

from emu.memory import BadPhysical, PageFault, translate  # noqa: E402

KERNEL, USER = "kernel", "user"
REGS = {"eax": X.UC_X86_REG_EAX, "ecx": X.UC_X86_REG_ECX, "edx": X.UC_X86_REG_EDX,
        "ebx": X.UC_X86_REG_EBX, "esp": X.UC_X86_REG_ESP, "ebp": X.UC_X86_REG_EBP,
        "esi": X.UC_X86_REG_ESI, "edi": X.UC_X86_REG_EDI}
# Instructions after which QEMU leaves the block without a chainable direct jump.
UNCHAINED = {"ret", "retf", "iret", "iretd", "lcall", "ljmp", "popfd", "popf", "int", "int3",
             "sti", "hlt", "sysenter", "sysexit"}


@dataclass
class Insn:
    eip: int
    size: int
    cpl: int
    cr3: int
    regs: dict
    gdt: int
    idt: int
    tr: int
    text: str = ""
    accesses: list = field(default_factory=list)     # (kind 'R'/'W', physical, size)


def _chained(prev: Insn, addr: int) -> bool:
    """Whether QEMU 5 reaches the block at `addr` after `prev` by a patched direct jump (no
    lookup): a direct jump, call or conditional branch, or a plain fall-through (a block cut
    at its size limit), within the page of `prev`.  Indirect branches, `ret`, `iret`, far
    transfers, `popfd` and control-register writes leave the block for a jump-cache lookup."""
    ins = prev.cs
    if ins is None or (addr & ~0xFFF) != (prev.eip & ~0xFFF):
        return False
    if ins.mnemonic in UNCHAINED or (ins.mnemonic == "mov" and "cr" in ins.op_str):
        return False
    branch = any(g in (CX.X86_GRP_JUMP, CX.X86_GRP_CALL) for g in ins.groups)
    return not branch or (bool(ins.operands) and ins.operands[0].type == CX.X86_OP_IMM)


class Tracer:
    """Python code, block and memory hooks over a Machine for a bounded run."""

    def __init__(self, m) -> None:
        self.m = m
        self.insns: list[Insn] = []
        self.blocks: list[tuple[int, int]] = []         # (index of first insn, address)
        self.md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_32)
        self.md.detail = True

    def _code(self, uc, addr, size, _u):
        rr = uc.reg_read
        self.insns.append(Insn(addr & 0xFFFFFFFF, size, rr(X.UC_X86_REG_CS) & 3,
                               rr(X.UC_X86_REG_CR3), {k: rr(v) for k, v in REGS.items()},
                               rr(X.UC_X86_REG_GDTR)[1], rr(X.UC_X86_REG_IDTR)[1],
                               rr(X.UC_X86_REG_TR)[1]))

    def _block(self, uc, addr, size, _u):
        self.blocks.append((len(self.insns), addr & 0xFFFFFFFF))

    def _mem(self, uc, access, addr, size, value, _u):
        if self.insns:
            self.insns[-1].accesses.append(("W" if access == unicorn.UC_MEM_WRITE else "R",
                                            addr, size))

    def run(self, max_insns: int) -> None:
        uc = self.m.cpu.uc
        hs = [uc.hook_add(unicorn.UC_HOOK_CODE, self._code),
              uc.hook_add(unicorn.UC_HOOK_BLOCK, self._block),
              uc.hook_add(unicorn.UC_HOOK_MEM_READ | unicorn.UC_HOOK_MEM_WRITE, self._mem)]
        self.m.cpu.code_written()                # blocks already translated must see them
        self.m.cpu.fast_stores = False           # memory hooks see only slow-path stores
        try:
            self.m.run(max_insns=max_insns)
        finally:
            for h in hs:
                uc.hook_del(h)
            self.m.cpu.fast_stores = True
            self.m.cpu.code_written()
        self._decode()

    def _decode(self) -> None:
        ram = self.m.ram
        cr0 = self.m.cpu.uc.reg_read(X.UC_X86_REG_CR0)
        cr4 = self.m.cpu.uc.reg_read(X.UC_X86_REG_CR4)
        self.cr0, self.cr4 = cr0, cr4
        for i in self.insns:
            pa = translate(ram, cr0, i.cr3, cr4, i.eip)
            code = ram.read(pa, i.size)
            ins = next(self.md.disasm(code, i.eip), None)
            i.text = f"{ins.mnemonic} {ins.op_str}".strip() if ins else "?"
            i.cs = ins

    # -- physical -> virtual ----------------------------------------------------------------
    def _phys(self, cr3: int, va: int):
        try:
            return translate(self.m.ram, self.cr0, cr3, self.cr4, va) & ~0xFFF
        except (PageFault, BadPhysical):
            return None

    def resolve(self, n: int, nxt: Insn | None):
        """The accesses of instruction n as (virtual page, MMU index, what)."""
        i = self.insns[n]
        cands = []                          # (virtual address, what), the operands first
        for op in (i.cs.operands if i.cs else ()):
            if op.type == CX.X86_OP_MEM:
                ea = op.mem.disp
                if op.mem.base:
                    ea += i.regs[i.cs.reg_name(op.mem.base)]
                if op.mem.index:
                    ea += i.regs[i.cs.reg_name(op.mem.index)] * op.mem.scale
                cands.append((ea & 0xFFFFFFFF, "data"))
        operands = len(cands)
        for d in (0, -64, 64):
            cands.append(((i.regs["esp"] + d) & 0xFFFFFFFF, "stack"))
            if nxt is not None:
                cands.append(((nxt.regs["esp"] + d) & 0xFFFFFFFF, "stack"))
        tables = [(i.gdt, 0x68, "gdt"), (i.idt, 0x800, "idt"), (i.tr, 0x68, "tss")]
        for base, size, what in tables:
            cands += [(base, what), (base + size - 1, what)]
        out = []
        for kind, pa, size in i.accesses:
            found = None
            for va, what in cands[:operands]:       # what the instruction names
                if self._phys(i.cr3, va) == pa & ~0xFFF:
                    found = (va & ~0xFFF, what)
                    break
            for base, size_, what in ([] if found else tables):   # the CPU's own, by offset
                for va in (base, base + size_ - 1):
                    hit = (va & ~0xFFF) | (pa & 0xFFF)
                    if self._phys(i.cr3, va) == pa & ~0xFFF and base <= hit < base + size_:
                        found = (va & ~0xFFF, what)
                        break
                if found:
                    break
            for va, what in ([] if found else cands):
                if self._phys(i.cr3, va) == pa & ~0xFFF:
                    found = (va & ~0xFFF, what)
                    break
            if found is None:
                out.append((None, KERNEL if i.cpl == 0 else USER, f"? pa={pa:#x}"))
                continue
            va, what = found
            ring_change = i.cpl == 3 and nxt is not None and nxt.cpl == 0
            kernel = (i.cpl == 0 or what in ("gdt", "idt", "tss")
                      or (ring_change and what == "stack" and
                          va == (nxt.regs["esp"] & ~0xFFF)))
            out.append((va, KERNEL if kernel else USER, what + ("-w" if kind == "W" else "")))
        return out

    # -- intervals ------------------------------------------------------------------------------
    def intervals(self):
        """Split the trace at CR3 changes: [(first, last) instruction indices], complete ones."""
        cuts = [n for n in range(1, len(self.insns))
                if self.insns[n].cr3 != self.insns[n - 1].cr3]
        return list(zip(cuts, cuts[1:]))

    def interval_report(self, first: int, last: int) -> dict:
        pages = defaultdict(set)                          # (va, index) -> what
        for n in range(first, last):
            i = self.insns[n]
            pages[(i.eip & ~0xFFF, KERNEL if i.cpl == 0 else USER)].add("code")
            end = i.eip + i.size - 1                      # an instruction across a page end
            if (end & ~0xFFF) != (i.eip & ~0xFFF):
                pages[(end & ~0xFFF, KERNEL if i.cpl == 0 else USER)].add("code")
            nxt = self.insns[n + 1] if n + 1 < len(self.insns) else None
            for va, idx, what in self.resolve(n, nxt):
                pages[(va, idx)].add(what)
        # the CR3 write at `first - 1` belongs to the previous interval's instruction stream;
        # accesses from `first` on see the flushed TLB
        blocks, looked_up = [], []
        seen = set()
        by_index = dict(self.blocks)
        for n in range(first, last):
            if n not in by_index:
                continue
            addr = by_index[n]
            blocks.append(addr)
            if not _chained(self.insns[n - 1], addr) and addr not in seen:
                looked_up.append(addr)
            seen.add(addr)
        accesses = [a for n in range(first, last) for a in self.insns[n].accesses]
        return {"pages": dict(pages), "insns": last - first,
                "writes": sum(1 for a in accesses if a[0] == "W"),
                "reads": sum(1 for a in accesses if a[0] == "R"),
                "blocks": blocks, "distinct_blocks": sorted(set(blocks)),
                "looked_up": looked_up}


def print_interval(title: str, rep: dict, symbolize) -> None:
    pages = rep["pages"]
    k = sum(1 for (_, idx) in pages if idx == KERNEL)
    u = sum(1 for (_, idx) in pages if idx == USER)
    print(f"\n{title}: {rep['insns']} instructions, {len(pages)} distinct (page, MMU index) "
          f"pairs ({k} kernel, {u} user), {len(rep['distinct_blocks'])} distinct blocks "
          f"entered ({len(rep['blocks'])} entries), {len(rep['looked_up'])} by a lookup, "
          f"{rep['writes']} memory writes and {rep['reads']} reads (the CPU's own included)")
    for (va, idx), what in sorted(pages.items(), key=lambda kv: (kv[0][1], kv[0][0] or 0)):
        where = f"{va:#010x}" if va is not None else "   ?      "
        print(f"    {idx:6s} {where}  {', '.join(sorted(what)):28s} {symbolize(va)}")
    print("    blocks entered by a lookup: " +
          " ".join(symbolize(a, exact=True) for a in rep["looked_up"]))


def _symbolizer(tables):
    """tables: [(dict name -> address)] -> f(address) = 'name+off' of the nearest symbol below."""
    pairs = sorted((a, n) for t in tables for n, a in t.items() if a)

    def name(addr, exact=False):
        if addr is None:
            return ""
        if not exact and 0xE0000000 <= addr < 0xE2000000:      # L4_TCB_AREA
            n = (addr - 0xE0000000) >> 10
            return f"(TCBs of task {n >> 7}, lthreads {n & 127}-{(n & 127) + 3})"
        if not exact and addr == 0xFF800000:                   # IO_PAGE_VIRT
            return "(the CPU page's alias at IO_PAGE_VIRT: TSS; IDT, GDT after the change)"
        import bisect
        lo = addr if exact else addr
        k = bisect.bisect_right(pairs, (lo, "\xff")) - 1
        if k < 0:
            return f"{addr:#x}"
        a, n = pairs[k]
        if exact:
            return n if a == addr else f"{n}+{addr - a:#x}"
        # a page: name the symbols in it
        inside = [nm for aa, nm in pairs if addr <= aa < addr + 0x1000 and not nm.startswith(".")]
        first = n if a < addr else None
        shown = ([first] if first else []) + inside[:4]
        more = len(inside) - 4
        return "(" + ", ".join(shown) + (f", +{more}" if more > 0 else "") + ")"
    return name


# -- targets ---------------------------------------------------------------------------------
def trace_lat_ctx(entry: str = "gate", warm_insns: int = 5000, trace_insns: int = 700,
                  image=None):
    from emu.bench.session import ENTRIES, IMAGE, MODES, BenchSession, _symbols
    from emu.boot.image import build_image
    image = image or IMAGE
    sess = BenchSession(image)
    m = sess.machine
    m.load_state(sess.snapshot)
    m.cpu.set_reg(X.UC_X86_REG_EAX, MODES["lat_ctx"] | (ENTRIES.index(entry) << 8) | (2 << 16))
    m.cpu.set_reg(X.UC_X86_REG_ECX, 0)
    m.cpu.set_reg(X.UC_X86_REG_EDX, 1000)
    r = sess._run(10**9)
    assert m.cpu.eip == sess.mark_start, r
    m.run(max_insns=warm_insns)                       # steady state: 60 switches or so
    t = Tracer(m)
    t.run(trace_insns)
    built = build_image(image)
    tables = [_symbols(built.kernel)] + [_symbols(p) for p, c in built.modules if c == "bench"]
    return t, _symbolizer(tables), sess


def trace_floor(trace_insns: int = 40, **variant):
    from emu.bench.floor import setup_floor
    from emu.machine import Machine
    m = Machine(ram_mib=16)
    start, _ = setup_floor(m, 1000, **variant)
    m.run(max_insns=10_000, until=start)
    m.run(max_insns=500)
    t = Tracer(m)
    t.run(trace_insns)
    return t, _symbolizer([]), m


def _floor_cpu_ns(m, power_on, iterations: int, **variant) -> float:
    """Thread CPU ns per round trip of a floor variant (time.thread_time_ns: on a shared
    machine the wall clock also counts the time this process was not running)."""
    import time
    from emu.bench.floor import setup_floor
    m.load_state(power_on)
    start, done = setup_floor(m, iterations, **variant)
    m.run(max_insns=10_000, until=start)
    c0 = time.thread_time_ns()
    m.run(max_insns=100 * iterations, until=done)
    return (time.thread_time_ns() - c0) / iterations


def timing(rounds: int, iterations: int, k: int = 16) -> dict:
    """Host CPU ns per extra page refill, block lookup, chained block and instruction, from
    floor variants alternated on one Unicorn instance (medians over the rounds)."""
    from emu.machine import Machine
    m = Machine(ram_mib=16)
    power_on = m.save_state()
    variants = [("floor", {}),
                (f"+{k} distinct pages read", {"extra_pages": k}),
                (f"+{k} reads of one page", {"extra_pages": k, "same_page": True}),
                (f"+{k} blocks by lookup", {"extra_blocks": k}),
                (f"+{k} blocks chained", {"extra_blocks": k, "chained": True}),
                (f"+{k} register moves", {"extra_insns": k}),
                (f"+{k} stores to one page", {"extra_stores": k})]
    res = defaultdict(list)
    for _ in range(rounds):
        for name, v in variants:
            res[name].append(_floor_cpu_ns(m, power_on, iterations, **v))
    m.close()
    med = {n: statistics.median(v) for n, v in res.items()}
    print(f"\nfloor variants, host CPU ns per round trip (median of {rounds} rounds of "
          f"{iterations}, one Unicorn instance, alternated):")
    for name, _ in variants:
        print(f"    {name:26s} {med[name]:8.1f}   (min {min(res[name]):.1f})")
    insn = (med[f"+{k} register moves"] - med["floor"]) / k
    costs = {
        "page": (med[f"+{k} distinct pages read"] - med[f"+{k} reads of one page"]) / (k - 1),
        "lookup": (med[f"+{k} blocks by lookup"] - med[f"+{k} blocks chained"]) / k,
        "block": (med[f"+{k} blocks chained"] - med["floor"]) / k - insn,
        "insn": insn, "floor": med["floor"],
        "store": (med[f"+{k} stores to one page"] - med["floor"]) / k - insn}
    print(f"    per extra page refill (4 KiB page) {costs['page']:.1f} ns, per block lookup "
          f"{costs['lookup']:.1f} ns, per chained block {costs['block']:.1f} ns, per "
          f"instruction {costs['insn']:.1f} ns, per store {costs['store']:.1f} ns")
    return costs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--entry", choices=["gate", "int"], default="gate")
    ap.add_argument("--timing", action="store_true",
                    help="also time the floor variants (host ns per page and per block)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--iterations", type=int, default=20_000)
    ap.add_argument("--verbose", action="store_true", help="print the traced instructions")
    ap.add_argument("--image", type=Path, help="another bench image (e.g. of an older tree)")
    a = ap.parse_args(argv)

    t, sym, sess = trace_lat_ctx(a.entry, image=a.image and a.image.resolve())
    ivs = t.intervals()
    if len(ivs) < 3:
        print("too few CR3 writes traced", file=sys.stderr)
        return 1
    # Two consecutive intervals make one round of the ring (A->B, B->A).
    reps = [t.interval_report(first, last) for first, last in ivs[1:3]]
    for (first, _), rep in zip(ivs[1:3], reps):
        print_interval(f"lat_ctx N=2 size 0 {a.entry}: one switch, CR3 -> "
                       f"{t.insns[first].cr3:#x}", rep, sym)
    if a.verbose:
        first, last = ivs[1]
        for n in range(first - 1, last):
            i = t.insns[n]
            print(f"  {i.cpl} {i.eip:#010x} {i.text:36s} {sym(i.eip, exact=True)}")
    print(f"\nthe full round (two switches): {sum(len(r['pages']) for r in reps)} page refills, "
          f"{sum(len(r['looked_up']) for r in reps)} block lookups, "
          f"{len(set(reps[0]['distinct_blocks']) | set(reps[1]['distinct_blocks']))} "
          f"distinct blocks, {sum(r['writes'] for r in reps)} memory writes, "
          f"{sum(r['insns'] for r in reps)} instructions")
    sess.close()

    tf, symf, mf = trace_floor()
    fivs = tf.intervals()
    print_interval("engine floor (gate + CR3 + retf), one round trip",
                   tf.interval_report(*fivs[1]), symf)
    mf.close()
    if a.timing:
        timing(a.rounds, a.iterations)
    return 0


if __name__ == "__main__":
    sys.exit(main())
