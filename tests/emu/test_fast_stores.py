"""Guest stores that skip Unicorn's slow store helper (emu/native/blockhook.c, fast_writes).

Unicorn 2.1.4 flags every TLB entry of writable RAM "not dirty", so every guest store runs its
slow helper, which looks for translated code to invalidate (Intel SDM vol. 3 §11.6: a store
into code that is about to run must take effect).  The block callback clears the flag for
the stack's page and the TSS's page when their frame has never held code.  These tests check
both halves: the flag is cleared where it may be, and code written through such a page, or
through another mapping of its frame, or watched by a watchpoint, still behaves as on a CPU.
"""
from __future__ import annotations

import ctypes

from unicorn import x86_const as X

from emu.cpu import OFF_TLB_FAST
from emu.machine import Machine, Stop
from tests.guest import PD, Guest, load_flat

TLB_NOTDIRTY = 0x400
KERNEL_INDEX = 2            # Unicorn's MMU index for ring 0 without SMAP


def write_flags(m: Machine, va: int, index: int = KERNEL_INDEX) -> int | None:
    """The flag bits of `va`'s TLB entry for stores, or None when it has no entry."""
    mask, table = (ctypes.c_uint64 * 2).from_address(m.cpu.env.addr + OFF_TLB_FAST + 16 * index)
    entry = table + ((va >> 12) & (mask >> 6)) * 64
    addr_write = ctypes.c_uint64.from_address(entry + 8).value
    if addr_write & ~0xFFF != va & ~0xFFF:
        return None
    return addr_write & 0xFFF


PUSH_LOOP = """
  mov esp, 0x90000
  mov ecx, 20
l:
  push ecx
  push ecx
  pop eax
  pop eax
  dec ecx
  jnz l
  mov al, 0
  out 0xf4, al
"""


def run_push_loop(fast: bool) -> tuple[Machine, int]:
    m = load_flat(PUSH_LOOP)
    m.cpu.fast_stores = fast
    r = m.run(max_insns=10_000)
    assert r.reason is Stop.EXIT, r
    return m, r.insns


def test_stack_page_is_let_through_and_counts_do_not_change():
    m, fast_insns = run_push_loop(True)
    assert write_flags(m, 0x8FFFC) == 0               # the stack page's stores: fast path
    assert m.cpu.bh.fastw_clears >= 1
    m.close()
    m, slow_insns = run_push_loop(False)
    assert write_flags(m, 0x8FFFC) == TLB_NOTDIRTY    # left to Unicorn: slow path
    assert m.cpu.bh.fastw_clears == 0
    m.close()
    assert fast_insns == slow_insns == 2 + 6 * 20 + 2


def test_code_built_on_the_stack_runs_and_can_be_rebuilt():
    """Code pushed onto a fast stack page, then called there; then pushed again, different,
    over the same bytes, and called again: the second call runs the new code (SDM vol. 3
    §11.6)."""
    # 90 90 90 c3 (nop nop nop ret), then 83 c0 01 c3 (add eax, 1; ret)
    m = load_flat("""
      mov esp, 0x90000
      push 0x11111111
      jmp filled
    filled:
      push 0x22222222
      push 0xC3909090
      mov eax, 0
      call esp
      mov ebx, eax
      pop edx
      push 0xC301C083
      call esp
      mov esi, eax
      mov al, 0
      out 0xf4, al
    """)
    r = m.run(max_insns=10_000)
    assert r.reason is Stop.EXIT, r
    assert m.cpu.reg(X.UC_X86_REG_EBX) == 0 and m.cpu.reg(X.UC_X86_REG_ESI) == 1
    assert r.insns == 14 + 4 + 2
    assert m.cpu.bh.fastw_clears >= 1
    m.close()


def test_code_rewritten_through_another_mapping_of_its_frame():
    """Frame 0x503000 is mapped at 0x503000 and, as the stack, at 0x705000 (TLB slots apart).
    Stores through 0x705000 take the fast path while the frame holds no code; then code
    written there runs at 0x503000, is rewritten through 0x705000 and runs again: the new code
    runs (SDM vol. 3 §11.6).  Unicorn drops translations only on stores that take its slow
    path, so the alias's fast entry must be gone once the frame holds code, and stay gone."""
    alias_pte = PD + 0x2000 + ((0x705000 >> 12) & 0x3FF) * 4   # second page table: 4-8 MiB
    m, _ = Guest(paging=True, kernel=f"""
      mov dword ptr [{alias_pte:#x}], {0x503000 | 3:#x}
      invlpg [0x705000]
      mov esp, 0x705800
      push 1
      jmp first
    first:
      push 2
      mov dword ptr [0x705000], 0xC3909090
      mov eax, 0
      mov ecx, 0x503000
      call ecx
      mov ebx, eax
      push 3
      jmp second
    second:
      push 4
      mov dword ptr [0x705000], 0xC301C083
      call ecx
      mov esi, eax
      EXIT 0
    """).build()
    r = m.run(max_insns=100_000)
    assert r.reason is Stop.EXIT, r
    assert m.cpu.reg(X.UC_X86_REG_EBX) == 0      # nop nop nop ret
    assert m.cpu.reg(X.UC_X86_REG_ESI) == 1      # add eax, 1; ret
    assert m.cpu.bh.fastw_clears >= 1
    m.close()


def test_watchpoint_on_a_fast_stack_page_sees_every_store():
    """A watchpoint added after the stack page went fast still stops at each store."""
    m = load_flat(PUSH_LOOP)
    r = m.run(max_insns=2 + 6 * 5)               # five iterations
    assert r.reason is Stop.MAX_INSNS
    assert write_flags(m, 0x8FFFC) == 0
    wp = m.add_watchpoint(0x8FFF8, 4, "w")       # the second push of each iteration
    hits = []
    while (r := m.run(max_insns=10_000)).reason is Stop.WATCHPOINT:
        hits.append(m.last_watch.value)
    assert r.reason is Stop.EXIT, r
    assert hits == list(range(15, 0, -1))
    m.remove_watchpoint(wp)
    assert m.cpu.fast_stores
    m.close()
