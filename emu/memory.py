"""Guest physical memory owned by Python, and the IA-32 page walk for tools and trap delivery.

RAM is one anonymous `mmap` mapped into Unicorn with `mem_map_ptr` (research/unicorn.md §2):
physical reads and writes from Python are plain buffer operations, side-effect free and
independent of the CPU's privilege level.

`translate()` walks the guest's two-level page tables (4 KiB pages, and 4 MiB pages when
CR4.PSE is set) the way the MMU does (Intel SDM vol. 3 §4.3), checking present, write and user
permissions, honouring CR0.WP for supervisor writes, and optionally setting the accessed and
dirty bits as the hardware would.  A failed walk raises `PageFault` with the #PF error code
(SDM §4.7) so the caller can deliver it.
"""
from __future__ import annotations

import mmap
import struct

from .errors import UserError

PAGE = 4096
PTE_P, PTE_W, PTE_U, PTE_A, PTE_D, PTE_PS = 0x1, 0x2, 0x4, 0x20, 0x40, 0x80
CR0_PG, CR0_WP = 1 << 31, 1 << 16
CR4_PSE = 1 << 4

_u32 = struct.Struct("<I")


class PageFault(Exception):
    """A page walk failed: `addr` is the linear address (CR2), `error_code` the #PF error code."""

    def __init__(self, addr: int, error_code: int) -> None:
        super().__init__(f"page fault at {addr:#010x} (error code {error_code:#x})")
        self.addr = addr
        self.error_code = error_code


class BadPhysical(Exception):
    """A physical address outside RAM."""


class Ram:
    """`size` bytes of guest RAM at physical address 0."""

    def __init__(self, size: int) -> None:
        if size <= 0 or size % PAGE:
            raise UserError(f"RAM size {size} is not a positive multiple of 4 KiB")
        self.size = size
        self.buf = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self.view = memoryview(self.buf)

    def read(self, addr: int, n: int) -> bytes:
        if addr < 0 or addr + n > self.size:
            raise BadPhysical(f"physical {addr:#x}+{n} outside RAM")
        return bytes(self.view[addr:addr + n])

    def write(self, addr: int, data: bytes) -> None:
        if addr < 0 or addr + len(data) > self.size:
            raise BadPhysical(f"physical {addr:#x}+{len(data)} outside RAM")
        self.view[addr:addr + len(data)] = data

    def read32(self, addr: int) -> int:
        if addr < 0 or addr + 4 > self.size:
            raise BadPhysical(f"physical {addr:#x} outside RAM")
        return _u32.unpack_from(self.buf, addr)[0]

    def write32(self, addr: int, value: int) -> None:
        if addr < 0 or addr + 4 > self.size:
            raise BadPhysical(f"physical {addr:#x} outside RAM")
        _u32.pack_into(self.buf, addr, value & 0xFFFFFFFF)

    def close(self) -> None:
        self.view.release()
        self.buf.close()


def translate(ram: Ram, cr0: int, cr3: int, cr4: int, va: int, *, write: bool = False,
              user: bool = False, set_ad: bool = False) -> int:
    """Linear -> physical under the given control registers (SDM vol. 3 §4.3, §4.6).

    `user` is a CPL-3 access; supervisor accesses to user pages are allowed, supervisor writes
    to read-only pages fault only when CR0.WP is set.  Raises PageFault or BadPhysical.
    """
    va &= 0xFFFFFFFF
    if not cr0 & CR0_PG:
        return va
    err = (2 if write else 0) | (4 if user else 0)
    pde_addr = (cr3 & 0xFFFFF000) + (va >> 22) * 4
    pde = ram.read32(pde_addr)
    if not pde & PTE_P:
        raise PageFault(va, err)
    if pde & PTE_PS and cr4 & CR4_PSE:
        _check(va, pde, pde, write, user, cr0, err)
        if set_ad:
            ram.write32(pde_addr, pde | PTE_A | (PTE_D if write else 0))
        return (pde & 0xFFC00000) | (va & 0x3FFFFF)
    pte_addr = (pde & 0xFFFFF000) + ((va >> 12) & 0x3FF) * 4
    pte = ram.read32(pte_addr)
    if not pte & PTE_P:
        raise PageFault(va, err)
    _check(va, pde, pte, write, user, cr0, err)
    if set_ad:
        if not pde & PTE_A:
            ram.write32(pde_addr, pde | PTE_A)
        ram.write32(pte_addr, pte | PTE_A | (PTE_D if write else 0))
    return (pte & 0xFFFFF000) | (va & 0xFFF)


def _check(va: int, pde: int, pte: int, write: bool, user: bool, cr0: int, err: int) -> None:
    # The effective rights are the AND of both levels (SDM §4.6.1).
    if user and not (pde & pte & PTE_U):
        raise PageFault(va, err | 1)
    if write and not (pde & pte & PTE_W) and (user or cr0 & CR0_WP):
        raise PageFault(va, err | 1)
