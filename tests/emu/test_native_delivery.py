"""`int n` delivered by the native path (emu/native/blockhook.c) is indistinguishable from
Python's delivery (emu/cpu.py): same frames, flags, registers, memory and counts.  An
observer of every trap (`Cpu.on_trap`) sends all events through Python, which is the
reference here."""
from __future__ import annotations

import pytest

from emu.machine import Stop
from tests.guest import Guest

# Ring 3 -> ring 0 through a trap gate and an interrupt gate (IF cleared), ring 0 -> ring 0,
# then a page fault (Python's) and a DPL violation (#GP, Python's): all in one run.
USER = """
  mov ecx, 300
again:
  mov eax, ecx
  int 0x30
  int 0x31
  add ebx, eax
  dec ecx
  jnz again
  mov eax, [0x900000]
  int 0x40
"""
HANDLERS = """
h30:
  pushfd
  pop eax
  mov [0x6000], eax            ; EFLAGS inside a trap gate: IF still set
  mov eax, [esp + 12]
  mov [0x6004], eax            ; the user ESP in the frame
  add dword ptr [0x6008], 1
  iretd
h31:
  pushfd
  pop eax
  mov [0x600c], eax            ; EFLAGS inside an interrupt gate: IF clear
  int 0x32                     ; same-privilege delivery
  iretd
h32:
  mov eax, [esp + 8]
  mov [0x6010], eax            ; EFLAGS pushed for the ring-0 int
  iretd
pf:
  add dword ptr [0x6014], 1
  add esp, 4
  add dword ptr [esp], 5
  iretd
gp:
  mov eax, [esp]
  mov [0x6018], eax            ; error code 0x40*8+2
  EXIT 7
"""
GATES = {0x30: ("h30", 0xF, 3), 0x31: ("h31", 0xE, 3), 0x32: ("h32", 0xE, 0),
         0x40: ("gp", 0xE, 0), 13: ("gp", 0xE, 0), 14: ("pf", 0xE, 0)}


def run(native: bool, paging: bool):
    g = Guest(user=USER, handlers=HANDLERS, gates=GATES, paging=paging,
              maps=[(0x900000, 0, 0x1000, None)] if paging else [])
    m, _ = g.build()
    if not native:
        m.cpu.on_trap = lambda rec: None        # every event through Python
    r = m.run(max_insns=1_000_000)
    state = (r.reason, r.insns, r.exit_status, m.cpu.registers(), m.ram.read(0x6000, 0x20),
             m.ram.read(0x80000, 0x10000), m.cpu.stats.traps)
    return state, m


@pytest.mark.parametrize("paging", [False, True])
def test_native_int_delivery_matches_python(paging):
    ref, mp = run(native=False, paging=paging)
    fast, mn = run(native=True, paging=paging)
    assert ref[0] is Stop.EXIT and ref[2] == (7 << 1) | 1
    assert fast == ref
    assert mn.cpu.dv.fast > 600 and mp.cpu.dv.fast == 0
    # Reports see both kinds of event, in order.
    kinds = [t.kind for t in mn.cpu.traps[-3:]]
    assert kinds[-1].startswith("fault") and "int" in kinds
