"""Exact instruction counts when code changes under the counter (DESIGN D5).

The native block callback learns each block's instruction count once; these tests change the
code behind a block that has already been counted - by the guest's own stores, by a remap to
another frame, in a page that also holds busy data - and check that the count follows the
instructions that really ran.  Each rewrite keeps the block's address and length and changes
its number of instructions, so a stale count is visible in the total.
"""
from __future__ import annotations

from emu.asm import assemble
from emu.machine import Machine, Stop
from tests.guest import PD, Guest, load_flat

BASE = 0x100000


def run_flat(src: str) -> tuple[Machine, int]:
    m = load_flat(src)
    r = m.run(max_insns=1_000_000)
    assert r.reason is Stop.EXIT, r
    return m, r.insns


def run_flat_stopped(src: str, insns: int) -> tuple[Machine, int]:
    """Load `src` at BASE and run its first `insns` instructions."""
    m = load_flat(src)
    r = m.run(max_insns=insns)
    assert r.reason is Stop.MAX_INSNS, r
    return m, r.insns


def test_guest_rewrites_code_it_has_run():
    """A loop body of three `nop`s (3 bytes) is overwritten by the guest with `add eax, 1`
    (3 bytes, 1 instruction) from another block, then the loop runs again."""
    m, insns = run_flat("""
      mov esi, 0
    again:
      mov ecx, 100
    l:
      nop
      nop
      nop
      dec ecx
      jnz l
      inc esi
      cmp esi, 2
      je done
      mov byte ptr [l], 0x83
      mov byte ptr [l + 1], 0xC0
      mov byte ptr [l + 2], 0x01
      jmp again
    done:
      mov al, 0
      out 0xf4, al
    """)
    first = 1 + 100 * 5 + 3 + 3 + 1          # mov ecx; loop; inc/cmp/je; three stores; jmp
    second = 1 + 100 * 3 + 3 + 2             # mov ecx; loop; inc/cmp/je; mov al/out
    assert insns == 1 + first + second
    assert m.cpu.bh.write_faults >= 1        # the stores were seen
    m.close()


def test_code_next_to_busy_data_stays_exact_and_stops_faulting():
    """The loop stores into a word in the same page as its code on every iteration: the page
    stops being write-protected after a few faults (it becomes volatile and its blocks are
    checked by their bytes instead), and a rewrite of a block in it is still counted right."""
    m, insns = run_flat("""
      mov esp, 0x90000
      mov esi, 0
    phase:
      mov ecx, 50
    l:
      mov [data], ecx
      call f
      dec ecx
      jnz l
      inc esi
      cmp esi, 2
      je done
      mov byte ptr [f], 0x83
      mov byte ptr [f + 1], 0xC0
      mov byte ptr [f + 2], 0x01
      jmp phase
    done:
      mov al, 0
      out 0xf4, al
    f:
      nop
      nop
      nop
      ret
    data:
      .byte 0, 0, 0, 0
    """)
    phase1 = 1 + 50 * 8 + 3 + 3 + 1          # mov ecx; 50 x (mov call nop nop nop ret dec jnz)
    phase2 = 1 + 50 * 6 + 3 + 2              # mov ecx; 50 x (mov call add ret dec jnz); exit
    assert insns == 2 + phase1 + phase2
    # Without the volatile state every iteration would fault (about 100 faults).
    assert 1 <= m.cpu.bh.write_faults <= 12
    m.close()


REMAPPED = """
  mov ecx, 10
l:
  {body}
  dec ecx
  jnz l
  ret
"""
PTE_5M = PD + 0x2000 + ((0x500000 >> 12) & 0x3FF) * 4   # second page table: 4-8 MiB


def run_remapped(kernel: str) -> tuple[Machine, int]:
    """Run `kernel` (paging on) with the routine at 0x500000 in the frame 0x500000 as three
    `nop`s a loop, and in the frame 0x600000 the same length with one `add`."""
    frame_a = assemble(REMAPPED.format(body="nop\n nop\n nop"), 0x500000).code
    frame_b = assemble(REMAPPED.format(body="add eax, 1"), 0x500000).code
    assert len(frame_a) == len(frame_b)
    m, _ = Guest(paging=True, kernel=kernel).build()
    m.load(0x500000, frame_a)
    m.load(0x600000, frame_b)
    r = m.run(max_insns=1_000_000)
    assert r.reason is Stop.EXIT, r
    return m, r.insns


def call_twice(second_frame: int) -> str:
    """Call the routine, remap it to `second_frame`, call it again."""
    return f"""
      mov eax, 0x500000
      call eax
      mov dword ptr [{PTE_5M:#x}], {second_frame | 3:#x}
      invlpg [0x500000]
      mov eax, 0x500000
      call eax
    """


def test_remap_to_other_code_is_counted_by_its_own_frame():
    """The same virtual address, in the same address space (same CR3), is remapped to a frame
    holding different code of the same length (Intel SDM vol. 3 §4.10.4.1: INVLPG after the
    PTE change); the count follows the frame."""
    def total(second_frame: int) -> int:
        m, insns = run_remapped(call_twice(second_frame) + "EXIT 0")
        m.close()
        return insns

    same, other = total(0x500000), total(0x600000)
    assert same - other == 10 * 2            # three nops became one add, ten times


def test_a_host_write_does_not_make_the_running_code_volatile():
    """A frame whose block ran last and is then written by the host (a snapshot restore, the
    loader) is not taken for code that rewrites itself: after the restore no frame is
    volatile, so its blocks are not checked byte by byte at every lookup."""
    import ctypes
    m, _ = run_flat_stopped("""
      mov ecx, 1000
    l:
      add eax, 1
      dec ecx
      jnz l
      mov al, 0
      out 0xf4, al
    """, 100)
    snap = m.save_state()
    m.load_state(snap)
    wstate = ctypes.cast(m.cpu.bh.wstate, ctypes.POINTER(ctypes.c_uint8))
    frames = m.cpu.bh.ram_size >> 12
    assert not [f for f in range(frames) if wstate[f] & 2]     # WS_VOLATILE
    r = m.run(max_insns=10_000)
    assert r.reason is Stop.EXIT and r.insns == 1 + 1000 * 3 + 2
    m.close()


def test_remap_back_and_forth_with_every_block_known():
    """As above, back and forth, three times: once every block has been learned nothing else
    moves the counts' epoch, and the by-address cache (blockhook.c, va_slot) holds the block
    at 0x500000 as counted in the other frame; its entry must be checked against the frame
    Unicorn's TLB now gives, or the count is stale."""
    def total(second_frame: int) -> int:
        m, insns = run_remapped(f"""
          mov esi, 3
        again:
          {call_twice(second_frame)}
          mov dword ptr [{PTE_5M:#x}], {0x500000 | 3:#x}
          invlpg [0x500000]
          dec esi
          jnz again
          EXIT 0
        """)
        assert m.cpu.bh.vc_hits > 0          # the third pass runs from the cache
        m.close()
        return insns

    same, other = total(0x500000), total(0x600000)
    assert same - other == 3 * 10 * 2        # three passes, three nops became one add, ten times
