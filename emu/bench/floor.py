"""The engine floor of an address-space switch through the fast entry (issue 6).

A tiny guest of its own (no L4 kernel): user code loops over `lcall` through a DPL-3 call gate
whose ring-0 target writes CR3 once (alternating between two page directories that map the
same memory) and returns with `retf`.  One iteration is the least an inter-address-space IPC
by the call gate can cost on this engine: privilege change in and out plus one CR3 write, no
kernel work.  It runs on the benchmark's own Machine (same Unicorn instance, run loop and
block hook), in the same run, before the points; `bench` divides its host time per
switch by this.

Layout (physical = linear):  GDT 0x1000 (0x08/0x10 kernel code/data, 0x1B/0x23 user code/data,
0x28 TSS, 0x33 the call gate), TSS 0x3000, page directories 0x10000 and 0x11000 (4 MiB pages,
user, writable, covering the first 8 MiB), kernel code 0x100000, user code 0x200000.

Variants (benchmarks/switch_pages.py relates pages to host time with them; the default is
the floor itself): `extra_pages=k` reads k more distinct pages after the CR3 write (4 KiB
pages at EXTRA, mapped through a page table at 0x12000 in both directories, like the L4
kernel's TCBs and user pages), `same_page=True` makes those k reads hit one page (the same
instructions, one TLB refill: the control); `extra_blocks=k` enters k more translated blocks
after the CR3 write by indirect jumps (each a jump-cache miss after the flush), and
`chained=True` reaches them by direct jumps instead (the control); `extra_insns=k` adds k
register moves (the cost of an instruction), `extra_stores=k` k stores to one of those pages
(the cost of a store: Unicorn 2.1.4 takes its slow store path for every guest write).
"""
from __future__ import annotations

import struct
import time
from dataclasses import dataclass

from ..asm import assemble
from ..machine import Machine, Stop

GDT, TSS, PD1, PD2, KSTACK, KCODE, UCODE, USTACK = (
    0x1000, 0x3000, 0x10000, 0x11000, 0x90000, 0x100000, 0x200000, 0x3FF000)
PT_EXTRA, EXTRA = 0x12000, 0x800000      # the variants' 4 KiB pages (PDE 2)


@dataclass
class Floor:
    iterations: int
    insns_per_switch: float   # guest instructions per round trip (lcall, 3 in the gate, retf, loop)
    host_ns_per_switch: float


def _seg(base: int, limit: int, access: int, flags: int = 0xC) -> bytes:
    return struct.pack("<HHBBBB", limit & 0xFFFF, base & 0xFFFF, (base >> 16) & 0xFF, access,
                       (flags << 4) | ((limit >> 16) & 0xF), base >> 24)


def _variant_src(extra_pages: int, same_page: bool, extra_blocks: int, chained: bool,
                 extra_insns: int, extra_stores: int) -> str:
    """What a variant adds after the CR3 write (nothing for the floor itself)."""
    lines = [f"    mov edx, [{EXTRA + (0 if same_page else i * 0x1000)}]"
             for i in range(extra_pages)]
    lines += ["    mov edx, ebx"] * extra_insns
    lines += [f"    mov [{EXTRA + 4 * i}], ebx" for i in range(extra_stores)]
    for i in range(extra_blocks):
        if chained:
            lines.append(f"    jmp xb{i}")
        else:
            lines += [f"    mov edx, xb{i}", "    jmp edx"]
        lines.append(f"xb{i}:")
    return "\n".join(lines)


def _kernel_src(variant: str = "") -> str:
    return f"""
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov esp, {KSTACK}
    mov ax, 0x28
    ltr ax
    mov eax, cr4
    or eax, 0x10
    mov cr4, eax
    mov eax, {PD1}
    mov cr3, eax
    mov eax, cr0
    or eax, 0x80010000
    mov cr0, eax
    push 0x23
    push {USTACK}
    push 0x2
    push 0x1B
    push {UCODE}
    iretd
gate:
    mov eax, cr3
    xor eax, {PD1 ^ PD2}
    mov cr3, eax
{variant}
    retf
"""


def _user_src(n: int) -> str:
    return f"""
    mov ecx, {n}
start:
    lcall 0x33:0
    dec ecx
    jnz start
done:
    jmp done
"""


def measure_floor(iterations: int = 100_000, runs: int = 3,
                  machine: Machine | None = None, reset=None, **variant) -> Floor:
    """The floor per switch: the median host time of `runs` runs.  Pass the benchmark's own
    machine to run the floor guest on the same Unicorn instance (its speed varies from one
    instance to the next, docs/benchmarking.md), with `reset()` bringing it back to its
    power-on state (ring 0) before each run; the caller restores its own state afterwards.
    `variant`: the keywords of setup_floor (the default is the floor)."""
    import statistics
    runs_ = []
    for _ in range(runs):
        if reset is not None:
            reset()
        runs_.append(_measure_once(iterations, machine, **variant))
    return Floor(iterations, runs_[0].insns_per_switch,
                 statistics.median(r.host_ns_per_switch for r in runs_))


def _measure_once(iterations: int, machine: Machine | None, **variant) -> Floor:
    m = machine or Machine(ram_mib=16)
    start, done = setup_floor(m, iterations, **variant)
    r = m.run(max_insns=10_000, until=start)
    assert r.reason is Stop.BREAKPOINT, r
    c0, t0 = m.clock.now, time.thread_time_ns()
    r = m.run(max_insns=(20 + 3 * sum(variant.values())) * iterations, until=done)
    t1, c1 = time.thread_time_ns(), m.clock.now
    if r.reason is not Stop.BREAKPOINT:
        raise RuntimeError(f"engine floor guest did not finish: {r.reason} {r.detail}")
    if machine is None:
        m.close()
    return Floor(iterations, (c1 - c0) / iterations, (t1 - t0) / iterations)


def setup_floor(m: Machine, iterations: int, extra_pages: int = 0, same_page: bool = False,
                extra_blocks: int = 0, chained: bool = False,
                extra_insns: int = 0, extra_stores: int = 0) -> tuple[int, int]:
    """Load the floor guest (or a variant) into `m` at power-on; returns the addresses of
    the user loop's first instruction and of its end (run from one to the other)."""
    k = assemble(_kernel_src(_variant_src(extra_pages, same_page, extra_blocks, chained,
                                          extra_insns, extra_stores)), KCODE)
    u = assemble(_user_src(iterations), UCODE)
    m.load(KCODE, k.code)
    m.load(UCODE, u.code)
    gate = k.symbols["gate"]
    gdt = b"".join([bytes(8), _seg(0, 0xFFFFF, 0x9A), _seg(0, 0xFFFFF, 0x92),
                    _seg(0, 0xFFFFF, 0xFA), _seg(0, 0xFFFFF, 0xF2),
                    _seg(TSS, 0x67, 0x89, 0x0),
                    struct.pack("<HHBBH", gate & 0xFFFF, 0x08, 0, 0x80 | (3 << 5) | 0xC,
                                gate >> 16)])
    m.load(GDT, gdt)
    tss = bytearray(0x68)
    struct.pack_into("<II", tss, 4, KSTACK, 0x10)
    struct.pack_into("<H", tss, 0x66, 0x68)
    m.load(TSS, bytes(tss))
    for pd in (PD1, PD2):
        m.load(pd, struct.pack("<III", 0x87, 0x400087, PT_EXTRA | 7) + bytes(4096 - 12))
    m.load(PT_EXTRA, b"".join(struct.pack("<I", EXTRA + i * 0x1000 | 0x67)   # A, D set
                              for i in range(1024)))
    from unicorn import x86_const as X
    m.set_entry_state(KCODE)
    m.cpu.uc.reg_write(X.UC_X86_REG_GDTR, (0, GDT, len(gdt) - 1, 0))
    start, done = UCODE + u.symbols["start"], UCODE + u.symbols["done"]
    if u.symbols["start"] >= UCODE:         # symbols may already be absolute
        start, done = u.symbols["start"], u.symbols["done"]
    return start, done
