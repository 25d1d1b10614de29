"""TLB entries kept across CR3 writes (emu/native/blockhook.c, keep_*).

Unicorn empties its TLB at every CR3 write; the block callback puts back entries it kept for
the address space CR3 returns to, each only after a walk of the page tables in force shows
that a refill would build the same entry and set no accessed or dirty bit.  A processor may
load translations at any time (Intel SDM vol. 3 §4.10.2.3), so a correct put-back is
invisible; these tests change the inactive space's page table between two visits and check
that the guest sees the change: a new frame (§4.10.4.1), a cleared dirty bit that the next
write sets again (§4.8), a page made read-only that faults (§4.6, CR0.WP=1).

Space A is the guests' identity map (tests/guest.py); space B is a copy whose 4-8 MiB page
table is its own, with V = 0x6A5000 mapped to frame F1 = 0x700000.  In B the stack is at V,
so the entry for V is one the callback keeps (the page the stack pushes to).
"""
from __future__ import annotations

import pytest
from unicorn import x86_const as X

from emu.machine import Stop
from tests.guest import PD, RESULT, Guest

PD_B, PT_B = 0x30000, 0x31000
V, F1, F2 = 0x6A5000, 0x700000, 0x701000   # V: a TLB slot of its own
PTE_V_B = PT_B + ((V >> 12) & 0x3FF) * 4
W, F3, F4 = 0x500000, 0x702000, 0x703000   # W: the TLB slot of the code page 0x100000
#                                            (in a table of up to 1024 entries)
PTE_W_B = PT_B + ((W >> 12) & 0x3FF) * 4
P, RW, A, D = 1, 2, 0x20, 0x40

PF_HANDLER = f"""
pf:
  mov eax, cr2
  mov [{RESULT:#x}], eax
  mov eax, [esp]
  mov [{RESULT + 4:#x}], eax
  mov eax, {PD}
  mov cr3, eax
  EXIT 14
"""


def two_visits(between: str, then: str, in_b: str = "nop"):
    """Build B, visit it (the stack at V: its entry is kept) and run `in_b`, go back to A and
    run `between` there, visit B again and run `then`, back to A and exit 0.  W is mapped in
    B to F3."""
    g = Guest(paging=True, handlers=PF_HANDLER, gates={14: ("pf", 0xE, 0)}, kernel=f"""
      mov esi, {PD}
      mov edi, {PD_B}
      mov ecx, 1024
      rep movs dword ptr es:[edi], dword ptr [esi]
      mov esi, {PD + 0x2000}
      mov edi, {PT_B}
      mov ecx, 1024
      rep movs dword ptr es:[edi], dword ptr [esi]
      mov dword ptr [{PD_B + 4}], {PT_B | 7}
      mov dword ptr [{PTE_V_B}], {F1 | P | RW | A | D}
      mov dword ptr [{PTE_W_B}], {F3 | P | RW | A | D}
      mov dword ptr [{F1 + 0xFFC}], 0x11111111
      mov dword ptr [{F2 + 0xFFC}], 0x22222222
      mov dword ptr [{F3 + 0xFFC}], 0x33333333
      mov dword ptr [{F4 + 0xFFC}], 0x44444444
      mov ebp, esp
      mov eax, {PD_B}
      mov cr3, eax
      mov esp, {V + 0x1000}
      push 0x11111111
      jmp in_b
    in_b:
      {in_b}
      jmp leave_b
    leave_b:
      mov eax, {PD}
      mov cr3, eax
      mov esp, ebp
      jmp in_a
    in_a:
      {between}
      mov eax, {PD_B}
      mov cr3, eax
      jmp again_b
    again_b:
      {then}
      mov eax, {PD}
      mov cr3, eax
      EXIT 0
    """)
    m, _ = g.build()
    r = m.run(max_insns=200_000)
    return m, r


def test_unchanged_page_is_put_back_and_reads_the_same():
    m, r = two_visits(between="nop", then=f"mov esi, [{V + 0xFFC}]")
    assert r.reason is Stop.EXIT and r.exit_status == 1, (r, m.report())
    assert m.cpu.reg(X.UC_X86_REG_ESI) == 0x11111111
    assert m.cpu.bh.kept >= 1                   # the entry for V went back in
    m.close()


def test_page_moved_to_another_frame_while_away():
    m, r = two_visits(between=f"mov dword ptr [{PTE_V_B}], {F2 | P | RW | A | D}",
                      then=f"mov esi, [{V + 0xFFC}]")
    assert r.reason is Stop.EXIT and r.exit_status == 1, (r, m.report())
    assert m.cpu.reg(X.UC_X86_REG_ESI) == 0x22222222      # F2, not the kept F1
    m.close()


def test_dirty_bit_cleared_while_away_is_set_by_the_next_write():
    m, r = two_visits(between=f"mov dword ptr [{PTE_V_B}], {F1 | P | RW | A}",
                      then=f"mov dword ptr [{V + 0xF00}], 5")
    assert r.reason is Stop.EXIT and r.exit_status == 1, (r, m.report())
    assert m.ram.read32(PTE_V_B) & D
    assert m.ram.read32(F1 + 0xF00) == 5
    m.close()


@pytest.mark.parametrize("page, pte, frame, in_b, before", [
    (V, PTE_V_B, F1, "nop", 0),                                   # the stack's page
    (W, PTE_W_B, F3, f"mov dword ptr [{W + 0xF00}], 7", 7),       # beside the code page
], ids=["stack", "beside-code"])
def test_page_made_read_only_while_away_faults(page, pte, frame, in_b, before):
    m, r = two_visits(in_b=in_b, between=f"mov dword ptr [{pte}], {frame | P | A | D}",
                      then=f"mov dword ptr [{page + 0xF00}], 5")
    assert r.reason is Stop.EXIT and r.exit_status == (14 << 1) | 1, (r, m.report())
    assert m.ram.read32(RESULT) == page + 0xF00             # CR2
    assert m.ram.read32(RESULT + 4) == 0b011                # present, write, supervisor
    assert m.ram.read32(frame + 0xF00) == before
    m.close()


# A page B reads (not its stack) is kept too: before the block that writes CR3 the callback
# keeps what the epoch filled.  W shares its TLB slot with the code page, which Unicorn
# refills before the first block of B's second visit runs, so W goes back in the victim TLB
# (kept_aside), from which the read swaps it in.

def test_page_read_in_an_epoch_is_put_back_beside_the_code_page():
    m, r = two_visits(in_b=f"mov esi, [{W + 0xFFC}]", between="nop",
                      then=f"mov esi, [{W + 0xFFC}]")
    assert r.reason is Stop.EXIT and r.exit_status == 1, (r, m.report())
    assert m.cpu.reg(X.UC_X86_REG_ESI) == 0x33333333
    assert m.cpu.bh.kept_aside >= 1
    m.close()


def test_page_put_back_beside_the_code_page_moved_while_away():
    m, r = two_visits(in_b=f"mov esi, [{W + 0xFFC}]",
                      between=f"mov dword ptr [{PTE_W_B}], {F4 | P | RW | A | D}",
                      then=f"mov esi, [{W + 0xFFC}]")
    assert r.reason is Stop.EXIT and r.exit_status == 1, (r, m.report())
    assert m.cpu.reg(X.UC_X86_REG_ESI) == 0x44444444      # F4, not the kept F3
    m.close()



def test_stack_page_sharing_the_code_pages_slot_is_swapped_in():
    """The kernel stack at W shares slot 0 with the code page 0x100000.  CR3 alternates
    between two directories with the same mappings: at each write Unicorn refills the code
    page to find the next block, the stack's kept entry goes back into the victim TLB, and
    before the next block the callback swaps it into the slot (victim_swap_in), as Unicorn
    would at the first push.  The values pushed and popped through it come out right."""
    g = Guest(paging=True, kernel=f"""
      mov esi, {PD}
      mov edi, {PD_B}
      mov ecx, 1024
      rep movs dword ptr es:[edi], dword ptr [esi]
      mov esp, {W + 0x1000}
      xor esi, esi
      mov ecx, 50
    again:
      mov eax, {PD_B}
      mov cr3, eax
      push ecx
      jmp in_b
    in_b:
      pop edx
      add esi, edx
      mov eax, {PD}
      mov cr3, eax
      push ecx
      jmp in_a
    in_a:
      pop edx
      add esi, edx
      dec ecx
      jnz again
      mov [{RESULT:#x}], esi
      EXIT 0
    """)
    m, _ = g.build()
    r = m.run(max_insns=100_000)
    assert r.reason is Stop.EXIT and r.exit_status == 1, (r, m.report())
    assert m.ram.read32(RESULT) == 50 * 51
    assert m.cpu.bh.kept_aside > 50 and m.cpu.bh.victim_swaps > 50
    m.close()
