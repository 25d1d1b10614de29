"""Build small protected-mode guests inline with keystone and run them on a Machine.

The layout every guest here shares (physical = linear, identity-mapped when paging is on):

    0x001000 GDT   0x08 kernel code, 0x10 kernel data, 0x1b user code, 0x23 user data,
                   0x28 TSS, 0x33 call gate (DPL 3 -> kernel code at `gate_entry`)
    0x002000 IDT   256 gates, filled from `gates`
    0x003000 TSS   esp0 = KSTACK, ss0 = 0x10, I/O bitmap at +0x68 (8 KiB + 1 byte, all denied
                   unless `io_allow` lists ports)
    0x006000 RESULT area the handlers write, read back by the test
    0x010000 page directory, page tables after it (when `paging=True`)
    0x090000 kernel stack top (ESP0)
    0x100000 kernel code: prologue, then `kernel`, then the iretd to user mode (if `user`)
    0x400000 user code   0x7ff000 user stack top

`kernel` runs in ring 0 after the prologue (segments, TR, IDT, paging).  If `user` is given the
kernel then enters ring 3 at it with `iretd` (EFLAGS from `user_eflags`).  Handlers are labels in
`kernel` or `handlers`; `gates` maps a vector to (label, type, dpl) with type 0xE (interrupt
gate) or 0xF (trap gate).  Helper macros: `EXIT n` writes n to the isa-debug-exit port.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Optional

from emu.asm import assemble
from emu.machine import Machine, RunResult

GDT, IDT, TSS, RESULT, PD, KSTACK = 0x1000, 0x2000, 0x3000, 0x6000, 0x10000, 0x90000
KCODE_ADDR, UCODE_ADDR, USTACK = 0x100000, 0x400000, 0x7FF000
KCODE, KDATA, UCODE, UDATA, TSS_SEL, CGATE = 0x08, 0x10, 0x1B, 0x23, 0x28, 0x33
PTE_P, PTE_W, PTE_U = 1, 2, 4


def seg_desc(base: int, limit: int, access: int, flags: int = 0xC) -> bytes:
    return struct.pack("<HHBBBB", limit & 0xFFFF, base & 0xFFFF, (base >> 16) & 0xFF, access,
                       ((flags & 0xF) << 4) | ((limit >> 16) & 0xF), (base >> 24) & 0xFF)


def gate_desc(sel: int, off: int, typ: int, dpl: int, present: bool = True) -> bytes:
    return struct.pack("<HHBBH", off & 0xFFFF, sel, 0,
                       (0x80 if present else 0) | (dpl << 5) | typ, off >> 16)


PROLOGUE = f"""
    mov ax, {KDATA}
    mov ds, ax
    mov es, ax
    mov fs, ax
    mov gs, ax
    mov ss, ax
    mov esp, {KSTACK}
    mov ax, {TSS_SEL}
    ltr ax
    LIDT [idtr]
"""

PAGING_ON = f"""
    mov eax, {PD}
    mov cr3, eax
    mov eax, cr0
    or eax, 0x80010000
    mov cr0, eax
"""


def iret_to_user(eflags: int) -> str:
    return f"""
    push {UDATA}
    push {USTACK}
    push {eflags:#x}
    push {UCODE}
    push {UCODE_ADDR:#x}
    iretd
"""


@dataclass
class Guest:
    kernel: str = ""
    user: Optional[str] = None
    handlers: str = ""
    gates: dict = field(default_factory=dict)
    paging: bool = False
    maps: list = field(default_factory=list)     # extra (virt, phys, size, flags)
    io_allow: tuple = ()
    user_eflags: int = 0x202
    idt_entries: int = 256
    gate_entry: Optional[str] = None
    ram_mib: int = 16

    def build(self, machine: Optional[Machine] = None) -> tuple[Machine, dict]:
        m = machine or Machine(ram_mib=self.ram_mib)
        self.serial = bytearray()
        m.serial.output = self.serial.extend
        tail = "" if self.user is None else iret_to_user(self.user_eflags)
        ksrc = PROLOGUE + (PAGING_ON if self.paging else "") + self.kernel + tail + "\n" + \
            self.handlers + f"\nidtr:\n.short {self.idt_entries * 8 - 1}\n.long {IDT}\n"
        ksrc = _expand(ksrc)
        k = assemble(ksrc, KCODE_ADDR)
        syms = dict(k.symbols)
        m.load(KCODE_ADDR, k.code)
        if self.user is not None:
            u = assemble(_expand(self.user), UCODE_ADDR)
            m.load(UCODE_ADDR, u.code)
            syms.update({"user." + n: a for n, a in u.symbols.items()})
        gate_target = syms[self.gate_entry] if self.gate_entry else 0
        gdt = b"".join([
            bytes(8),
            seg_desc(0, 0xFFFFF, 0x9A), seg_desc(0, 0xFFFFF, 0x92),
            seg_desc(0, 0xFFFFF, 0xFA), seg_desc(0, 0xFFFFF, 0xF2),
            seg_desc(TSS, 0x68 + 0x2000, 0x89, 0x0),
            struct.pack("<HHBBH", gate_target & 0xFFFF, KCODE, 0, 0x80 | (3 << 5) | 0xC,
                        gate_target >> 16),
        ])
        m.load(GDT, gdt)
        from unicorn import x86_const as X
        m.set_entry_state(KCODE_ADDR)
        m.cpu.uc.reg_write(X.UC_X86_REG_GDTR, (0, GDT, len(gdt) - 1, 0))
        idt = bytearray(256 * 8)
        for vec, spec in self.gates.items():
            label, typ, dpl = spec[:3]
            present = spec[3] if len(spec) > 3 else True
            idt[vec * 8:vec * 8 + 8] = gate_desc(KCODE, syms[label], typ, dpl, present)
        m.load(IDT, bytes(idt))
        tss = bytearray(0x68)
        struct.pack_into("<II", tss, 4, KSTACK, KDATA)
        struct.pack_into("<H", tss, 0x66, 0x68)
        bitmap = bytearray(b"\xff" * 0x2000) + b"\xff"
        for p in self.io_allow:
            bitmap[p // 8] &= ~(1 << (p % 8)) & 0xFF
        m.load(TSS, bytes(tss) + bytes(bitmap))
        if self.paging:
            self._build_paging(m)
        return m, syms

    def _build_paging(self, m: Machine) -> None:
        maps = [(0, 0, 0x400000, PTE_P | PTE_W),                       # kernel, supervisor
                (0x400000, 0x400000, 0x400000, PTE_P | PTE_W | PTE_U)] + list(self.maps)
        pts: dict[int, int] = {}
        nxt = PD + 0x1000
        m.load(PD, bytes(4096))
        for virt, phys, size, fl in maps:
            for off in range(0, size, 4096):
                v, p = virt + off, phys + off
                pdi, pti = v >> 22, (v >> 12) & 0x3FF
                if pdi not in pts:
                    pts[pdi] = nxt
                    nxt += 0x1000
                    m.load(pts[pdi], bytes(4096))
                    m.ram.write32(PD + pdi * 4, pts[pdi] | 7)
                if fl is None:
                    m.ram.write32(pts[pdi] + pti * 4, 0)
                else:
                    m.ram.write32(pts[pdi] + pti * 4, (p & ~0xFFF) | fl)


def load_flat(src: str, base: int = KCODE_ADDR) -> Machine:
    """A 16 MiB machine with `src` assembled at `base` and about to run it in its entry state
    (flat 32-bit protected mode, ring 0, no paging: Machine.set_entry_state)."""
    m = Machine(ram_mib=16)
    m.load(base, assemble(src, base).code)
    m.set_entry_state(base)
    return m


def pic_init(master_mask: int = 0xFF, slave_mask: int = 0xFF) -> str:
    """The 8259A pair set up as Linux's init_8259A() does it: ICW1 edge + ICW4, vectors
    0x20/0x28, slave on IR2, 8086 mode, then the masks."""
    return f"""
  mov al, 0x11
  out 0x20, al
  out 0xa0, al
  mov al, 0x20
  out 0x21, al
  mov al, 0x28
  out 0xa1, al
  mov al, 4
  out 0x21, al
  mov al, 2
  out 0xa1, al
  mov al, 1
  out 0x21, al
  out 0xa1, al
  mov al, {master_mask:#x}
  out 0x21, al
  mov al, {slave_mask:#x}
  out 0xa1, al
"""


def _expand(src: str) -> str:
    """`EXIT n` -> write n to the isa-debug-exit port (keystone has no macros)."""
    out = []
    for line in src.splitlines():
        s = line.strip()
        if s.upper().startswith("EXIT "):
            out.append(f"  mov al, {s[5:].strip()}\n  out 0xf4, al\n  hlt")
        else:
            out.append(line)
    return "\n".join(out)


def run(guest: Guest, max_insns: int = 10_000_000) -> tuple[Machine, RunResult, dict]:
    m, syms = guest.build()
    r = m.run(max_insns=max_insns)
    return m, r, syms


def result(m: Machine, index: int) -> int:
    """Dword `index` of the RESULT area."""
    return m.ram.read32(RESULT + 4 * index)


def exit_code(r: RunResult) -> Optional[int]:
    """The value the guest wrote to the exit port (QEMU encodes it as (v << 1) | 1)."""
    return None if r.exit_status is None else r.exit_status >> 1
