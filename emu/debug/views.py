"""Views of the machine that need no kernel symbols: registers, page tables, interrupt
controllers and devices.  Each function returns text lines; the shell prints them and the tests
read them.

Register names (`REGISTERS`) are the ones the shell and expressions accept: the 32-bit
general registers, their 16- and 8-bit parts, eip, eflags, the segment selectors and
cr0/cr2/cr3/cr4.  Segment caches, GDTR, IDTR, TR and LDTR come from the CPU's live state.
"""
from __future__ import annotations

from typing import Optional

from unicorn import x86_const as X

from ..cpu import SEG_CS, SEG_DS, SEG_ES, SEG_FS, SEG_GDT, SEG_GS, SEG_IDT, SEG_LDT, SEG_SS, SEG_TR
from ..memory import CR0_PG, CR4_PSE, PTE_A, PTE_D, PTE_P, PTE_PS, PTE_U, PTE_W, BadPhysical

GENERAL = ("eax", "ebx", "ecx", "edx", "esi", "edi", "ebp", "esp")
SEGMENTS = ("cs", "ss", "ds", "es", "fs", "gs")
CONTROL = ("cr0", "cr2", "cr3", "cr4")
_SUB16 = {"ax": "eax", "bx": "ebx", "cx": "ecx", "dx": "edx", "si": "esi", "di": "edi",
          "bp": "ebp", "sp": "esp"}
_SUB8 = {"al": ("eax", 0), "ah": ("eax", 8), "bl": ("ebx", 0), "bh": ("ebx", 8),
         "cl": ("ecx", 0), "ch": ("ecx", 8), "dl": ("edx", 0), "dh": ("edx", 8)}
_UC = {n: getattr(X, "UC_X86_REG_" + n.upper())
       for n in GENERAL + ("eip", "eflags") + SEGMENTS + CONTROL}
REGISTERS = tuple(_UC) + tuple(_SUB16) + tuple(_SUB8)

EFLAGS_BITS = [(0, "CF"), (2, "PF"), (4, "AF"), (6, "ZF"), (7, "SF"), (8, "TF"), (9, "IF"),
               (10, "DF"), (11, "OF"), (14, "NT"), (16, "RF"), (17, "VM"), (18, "AC")]
CR0_BITS = [(0, "PE"), (1, "MP"), (2, "EM"), (3, "TS"), (4, "ET"), (5, "NE"), (16, "WP"),
            (18, "AM"), (29, "NW"), (30, "CD"), (31, "PG")]
CR4_BITS = [(0, "VME"), (1, "PVI"), (2, "TSD"), (3, "DE"), (4, "PSE"), (5, "PAE"), (6, "MCE"),
            (7, "PGE"), (8, "PCE"), (9, "OSFXSR"), (10, "OSXMMEXCPT")]


def bits(value: int, table) -> str:
    return " ".join(name for bit, name in table if value >> bit & 1)


def read_reg(m, name: str) -> Optional[int]:
    """A register by (lower-case) name, or None if there is no such register."""
    name = name.lower()
    if name in _UC:
        return m.cpu.reg(_UC[name]) & (0xFFFF if name in SEGMENTS else 0xFFFFFFFF)
    if name in _SUB16:
        return m.cpu.reg(_UC[_SUB16[name]]) & 0xFFFF
    if name in _SUB8:
        full, shift = _SUB8[name]
        return (m.cpu.reg(_UC[full]) >> shift) & 0xFF
    return None


def write_reg(m, name: str, value: int) -> None:
    """Set a register; ValueError for an unknown name or a value the CPU refuses."""
    name = name.lower()
    value &= 0xFFFFFFFF
    if name in _SUB16:
        full = _SUB16[name]
        value = (read_reg(m, full) & 0xFFFF0000) | (value & 0xFFFF)
        name = full
    elif name in _SUB8:
        full, shift = _SUB8[name]
        value = (read_reg(m, full) & ~(0xFF << shift)) | ((value & 0xFF) << shift)
        name = full
    if name not in _UC:
        raise ValueError(f"no register named '{name}'")
    if name in SEGMENTS and value > 0xFFFF:
        raise ValueError(f"{name} is a 16-bit selector")
    m.cpu.set_reg(_UC[name], value)
    if name in CONTROL:
        m.cpu.flush_tlb()       # a new CR0/CR3/CR4 changes translations
    if name == "eip" or name in CONTROL:
        m.cpu.code_written()


def registers(m) -> list[str]:
    r = {n: read_reg(m, n) for n in GENERAL + ("eip", "eflags")}
    fl = r["eflags"]
    iopl = (fl >> 12) & 3
    return [
        "eax={eax:08x} ebx={ebx:08x} ecx={ecx:08x} edx={edx:08x}".format(**r),
        "esi={esi:08x} edi={edi:08x} ebp={ebp:08x} esp={esp:08x}".format(**r),
        f"eip={r['eip']:08x} eflags={fl:08x} [{bits(fl, EFLAGS_BITS)}] iopl={iopl} "
        f"cpl={m.cpu.cpl}",
    ]


def _seg_line(name: str, s) -> str:
    f = s.flags
    present = f >> 15 & 1
    kind = ("code" if f >> 11 & 1 else "data") if f >> 12 & 1 else "system"
    size = "32-bit" if f >> 22 & 1 else "16-bit"
    limit = s.limit
    return (f"{name}={s.selector:04x} base={s.base:08x} limit={limit:08x} dpl={f >> 13 & 3} "
            f"{kind} {size}{'' if present else ' not-present'}")


def segment_registers(m) -> list[str]:
    env = m.cpu.env
    out = [_seg_line(n, env.seg(i)) for n, i in
           (("cs", SEG_CS), ("ss", SEG_SS), ("ds", SEG_DS), ("es", SEG_ES), ("fs", SEG_FS),
            ("gs", SEG_GS))]
    tr, ldt = env.seg(SEG_TR), env.seg(SEG_LDT)
    gdt, idt = env.seg(SEG_GDT), env.seg(SEG_IDT)
    out.append(f"tr={tr.selector:04x} base={tr.base:08x} limit={tr.limit:08x}   "
               f"ldtr={ldt.selector:04x} base={ldt.base:08x} limit={ldt.limit:08x}")
    out.append(f"gdtr base={gdt.base:08x} limit={gdt.limit:04x}   "
               f"idtr base={idt.base:08x} limit={idt.limit:04x}")
    return out


def control_registers(m) -> list[str]:
    cr = {n: read_reg(m, n) for n in CONTROL}
    return [f"cr0={cr['cr0']:08x} [{bits(cr['cr0'], CR0_BITS)}]",
            f"cr2={cr['cr2']:08x}",
            f"cr3={cr['cr3']:08x} (page directory at {cr['cr3'] & 0xFFFFF000:#010x})",
            f"cr4={cr['cr4']:08x} [{bits(cr['cr4'], CR4_BITS)}]"]


# -- page tables (SDM vol. 3 §4.3) ---------------------------------------------------------
def pte_flags(e: int) -> str:
    names = [(PTE_P, "P"), (PTE_W, "W"), (PTE_U, "U"), (0x8, "PWT"), (0x10, "PCD"),
             (PTE_A, "A"), (PTE_D, "D"), (PTE_PS, "PS"), (0x100, "G")]
    return " ".join(n for b, n in names if e & b) or "-"


def page_walk(m, va: int, pd: Optional[int] = None) -> list[str]:
    """The walk of `va` through the page directory at `pd` (default: CR3's)."""
    cr0, cr3, cr4 = m.cpu.mmu_state()
    va &= 0xFFFFFFFF
    if pd is None:
        if not cr0 & CR0_PG:
            return [f"paging is off (CR0.PG=0): linear {va:#010x} is physical {va:#010x}"]
        pd = cr3
    pd &= 0xFFFFF000
    ram = m.ram
    out = [f"linear {va:#010x}: directory {pd:#010x}, pde index {va >> 22:#x}, "
           f"pte index {(va >> 12) & 0x3FF:#x}, offset {va & 0xFFF:#x}"]
    pde_addr = pd + (va >> 22) * 4
    try:
        pde = ram.read32(pde_addr)
    except BadPhysical:
        return out + [f"  pde at {pde_addr:#010x} is outside RAM"]
    out.append(f"  pde at {pde_addr:#010x} = {pde:#010x}  [{pte_flags(pde)}]")
    if not pde & PTE_P:
        return out + ["  not present: a page fault"]
    if pde & PTE_PS and cr4 & CR4_PSE:
        pa = (pde & 0xFFC00000) | (va & 0x3FFFFF)
        return out + [f"  4 MiB page -> physical {pa:#010x}"]
    pte_addr = (pde & 0xFFFFF000) + ((va >> 12) & 0x3FF) * 4
    try:
        pte = ram.read32(pte_addr)
    except BadPhysical:
        return out + [f"  pte at {pte_addr:#010x} is outside RAM"]
    out.append(f"  pte at {pte_addr:#010x} = {pte:#010x}  [{pte_flags(pte)}]")
    if not pte & PTE_P:
        return out + ["  not present: a page fault"]
    user = "user" if pde & pte & PTE_U else "supervisor"
    rw = "read/write" if pde & pte & PTE_W else "read-only"
    return out + [f"  4 KiB page -> physical {(pte & 0xFFFFF000) | (va & 0xFFF):#010x} "
                  f"({user}, {rw})"]


def mapping_ranges(m, pd: int, limit: int = 4096) -> list[tuple[int, int, int, str]]:
    """Present mappings of the directory at `pd` merged into (va, size, pa, rights) runs."""
    _, _, cr4 = m.cpu.mmu_state()
    ram = m.ram
    runs: list[list] = []

    def add(va: int, size: int, pa: int, e: int) -> None:
        rights = ("U" if e & PTE_U else "S") + ("W" if e & PTE_W else "R")
        if runs:
            last = runs[-1]
            if last[0] + last[1] == va and last[2] + last[1] == pa and last[3] == rights:
                last[1] += size
                return
        runs.append([va, size, pa, rights])

    pd &= 0xFFFFF000
    for i in range(1024):
        try:
            pde = ram.read32(pd + 4 * i)
        except BadPhysical:
            break
        if not pde & PTE_P:
            continue
        if pde & PTE_PS and cr4 & CR4_PSE:
            add(i << 22, 1 << 22, pde & 0xFFC00000, pde)
            continue
        pt = pde & 0xFFFFF000
        for j in range(1024):
            try:
                pte = ram.read32(pt + 4 * j)
            except BadPhysical:
                break
            if pte & PTE_P:
                add((i << 22) | (j << 12), 4096, pte & 0xFFFFF000, pde & pte)
        if len(runs) > limit:
            break
    return [tuple(r) for r in runs[:limit]]


def mappings(m, pd: int) -> list[str]:
    runs = mapping_ranges(m, pd)
    if not runs:
        return [f"directory {pd & 0xFFFFF000:#010x}: nothing mapped"]
    out = [f"directory {pd & 0xFFFFF000:#010x}: {len(runs)} runs (U/S user or supervisor, "
           "W/R writable or read-only)"]
    for va, size, pa, rights in runs:
        out.append(f"  {va:#010x}-{va + size - 1:#010x} -> {pa:#010x}  {rights}  "
                   f"{_size(size)}")
    return out


def _size(n: int) -> str:
    if n % (1 << 20) == 0:
        return f"{n >> 20} MiB"
    return f"{n >> 10} KiB"


# -- interrupt controllers -------------------------------------------------------------------
def _vectors(mask: int) -> str:
    v = [f"{i:#x}" for i in range(256) if mask >> i & 1]
    return ",".join(v) if v else "-"


def irq_state(m) -> list[str]:
    out = []
    pic = m.pic
    for name, chip in (("master", pic.master), ("slave", pic.slave)):
        out.append(f"pic {name:6}: base={chip.base:#04x} irr={chip.irr:08b} isr={chip.isr:08b} "
                   f"imr={chip.imr:08b} elcr={chip.elcr:08b}"
                   f"{' (initialising)' if chip.init_step else ''}")
    levels = "".join("1" if lv else "0" for lv in m.irqs.levels)
    out.append(f"isa lines 0-15: {levels}")
    io = m.ioapic
    masked = []
    for pin in range(24):
        e = io.entry(pin)
        if e & (1 << 16):
            masked.append(pin)
            continue
        mode = ("fixed", "lowest", "smi", "?", "nmi", "init", "?", "extint")[(e >> 8) & 7]
        out.append(f"ioapic pin {pin:2}: vector={e & 0xFF:#04x} {mode} "
                   f"{'level' if e >> 15 & 1 else 'edge'} "
                   f"{'low' if e >> 13 & 1 else 'high'} dest={e >> 56:#x}"
                   f"{' remote-irr' if e >> 14 & 1 else ''}")
    out.append("ioapic masked pins: " + (",".join(map(str, masked)) if masked else "none"))
    s = m.lapic.save_state()
    svr = s.get("svr", 0)
    out.append(f"lapic: {'enabled' if s.get('global') and svr & 0x100 else 'disabled'} "
               f"id={s.get('id', 0)} tpr={s.get('tpr', 0):#x} svr={svr:#x}")
    out.append(f"lapic irr: {_vectors(s.get('irr', 0))}   isr: {_vectors(s.get('isr', 0))}")
    lvt = s.get("lvt", {})
    names = {"0x320": "timer", "0x350": "lint0", "0x360": "lint1", "0x370": "error",
             "0x330": "thermal", "0x340": "perf"}
    parts = [f"{names.get(k, k)}={v:#x}{'(masked)' if v & 0x10000 else ''}"
             for k, v in sorted(lvt.items())]
    out.append("lapic lvt: " + " ".join(parts))
    out.append(f"lapic timer: initial={s.get('initial', 0):#x} divide-config={s.get('dcr', 0):#x} "
               f"{'running' if s.get('t_running') else 'stopped'}")
    out.append(f"cpu: IF={'1' if m.cpu.eflags & 0x200 else '0'} "
               f"interrupt pending={'yes' if m.intr.pending() else 'no'}")
    return out


def _short(v) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return f"{v:#x}" if v > 9 else str(v)
    if isinstance(v, (bytes, bytearray)):
        return f"<{len(v)} bytes>"
    if isinstance(v, (list, tuple)):
        return f"<{len(v)} items>"
    if isinstance(v, dict):
        return f"<{len(v)} fields>"
    if v is None:
        return "-"
    s = str(v)
    return s if len(s) <= 24 else s[:21] + "..."


def devices(m) -> list[str]:
    out = []
    for dev in m.devices:
        where = [f"ports {a:#x}-{a + n - 1:#x}" if n > 1 else f"port {a:#x}"
                 for a, n in dev.ports]
        where += [f"mmio {b:#x}-{b + s - 1:#x}" for b, s in dev.mmio]
        out.append(f"{dev.name}: {', '.join(where) or 'no ports'}")
        try:
            state = dev.save_state()
        except Exception as e:  # a device bug must not take the debugger down
            out.append(f"    (state unavailable: {type(e).__name__})")
            continue
        items = [f"{k}={_short(v)}" for k, v in state.items()
                 if not isinstance(v, (bytes, bytearray)) or len(v) <= 8]
        line = "    "
        for it in items:
            if len(line) + len(it) > 96:
                out.append(line.rstrip())
                line = "    "
            line += it + " "
        if line.strip():
            out.append(line.rstrip())
    events = m.clock.pending_events()
    now = m.clock.now
    out.append(f"clock: {now} instructions retired; {len(events)} events pending")
    for ev in events[:8]:
        what = ev.name or getattr(ev.callback, "__qualname__", "?")
        out.append(f"    in {ev.when - now} insns: {what}")
    return out
