"""The Machine API that every observer uses: breakpoints, watchpoints, stepping, run-until,
exact counts across all of them (DESIGN D10)."""
from __future__ import annotations

import pytest

from emu.machine import Stop
from tests.guest import Guest

LOOP = """
  mov ecx, 5
again:
  mov eax, ecx
  mov [0x7000], eax
  add ebx, eax
  dec ecx
  jnz again
  EXIT 0
"""


def build():
    m, syms = Guest(kernel=LOOP).build()
    return m, syms


def reference_count() -> int:
    m, _ = build()
    return m.run().insns


def test_run_until_stops_before_the_address_with_exact_count():
    """run(until=X) stops with EIP = X, the instruction at X not executed."""
    m, syms = build()
    r = m.run(until=syms["again"])
    assert r.reason is Stop.BREAKPOINT and m.cpu.eip == syms["again"]
    assert r.insns == 11                      # 10 prologue + mov ecx
    assert m.run().insns == reference_count()  # resuming gives the same total


@pytest.mark.parametrize("offset", [2, 0], ids=["inside-a-block", "at-a-block-start"])
def test_breakpoint_hits_every_iteration(offset):
    """A breakpoint stops each time round the loop: inside the loop block (the machine steps
    up to it), and at its first instruction (the block that holds it never runs again
    unchecked: blockhook.c)."""
    m, syms = build()
    bp = m.add_breakpoint(syms["again"] + offset)   # +2: mov [0x7000], eax
    hits = 0
    while True:
        r = m.run()
        if r.reason is not Stop.BREAKPOINT:
            break
        hits += 1
        assert m.cpu.eip == syms["again"] + offset
        assert r.insns == 11 + (1 if offset else 0) + 5 * (hits - 1)
    assert hits == 5 and bp.hits == 5
    assert r.reason is Stop.EXIT and r.insns == reference_count()


def test_two_breakpoints_in_one_block_stop_in_turn():
    """Resumed at a breakpoint at a block's start, the run stops at the next one inside it."""
    m, syms = build()
    m.add_breakpoint(syms["again"])
    m.add_breakpoint(syms["again"] + 2)
    seen = []
    while (r := m.run()).reason is Stop.BREAKPOINT:
        seen.append((m.cpu.eip - syms["again"], r.insns))
    assert seen == [(off, 11 + (1 if off else 0) + 5 * i) for i in range(5) for off in (0, 2)]
    assert r.reason is Stop.EXIT and r.insns == reference_count()


def test_exit_checks_only_while_a_hook_must_stop_within_a_block():
    """Unicorn's check for a stop after every memory access is translated into blocks only
    while something must stop a run inside a block: single steps (Unicorn's counter) and
    watchpoints; breakpoints need none (the block callback stops before their block)."""
    m, syms = build()
    assert not m.cpu.exit_checks
    m.run(until=syms["again"])                 # inside the first block: stepped to
    assert m.cpu.exit_checks
    m.add_breakpoint(syms["again"])            # the loop block's start from now on
    assert m.run().reason is Stop.BREAKPOINT and not m.cpu.exit_checks
    m.step(2)
    assert m.cpu.exit_checks
    assert m.run().reason is Stop.BREAKPOINT and not m.cpu.exit_checks
    m.remove_breakpoint(syms["again"])
    wp = m.add_watchpoint(0x7000, 4, "w")
    assert m.cpu.exit_checks
    assert m.run().reason is Stop.WATCHPOINT and m.cpu.eip == syms["again"] + 7
    m.remove_watchpoint(wp)
    assert not m.cpu.exit_checks
    assert m.run().insns == reference_count()


def test_without_exit_checks_a_memory_hook_stop_waits_for_the_block_end():
    """What the checks are for (and that the flag found in Unicorn's state is the one): a
    stop requested by a memory hook takes effect right after the access with them, at the
    next block without them."""
    import unicorn
    from unicorn import x86_const as X

    from emu.cpu import STOP_MISS
    for checks, ecx in ((True, 4), (False, 3)):
        m, syms = build()
        m.run(until=syms["again"])             # inside the first block, stepped to
        m.run(until=syms["again"])             # the loop block's start, second time round
        assert m.cpu.uc.reg_read(X.UC_X86_REG_ECX) == 4
        m.cpu.lean_blocks = not checks         # (drops every translation)
        m.cpu.fast_stores = False              # stores take the path memory hooks see
        m.cpu.uc.hook_add(unicorn.UC_HOOK_MEM_WRITE, lambda uc, *a: uc.emu_stop(),
                          begin=0x7000, end=0x7003)
        while m.cpu.run(1 << 40) == 0 and m.cpu.bh.stopped == STOP_MISS:
            m.cpu.learn_block()                # until the store asks for the stop
        assert m.cpu.uc.reg_read(X.UC_X86_REG_ECX) == ecx, checks   # `dec ecx` ran or not


def test_step_is_exact_and_composes_with_run():
    """step(n) retires exactly n instructions; stepping then running gives the same total."""
    m, syms = build()
    for n in (1, 1, 3, 7):
        before = m.clock.now
        r = m.step(n)
        assert r.reason is Stop.STEPPED and m.clock.now - before == n
    assert m.run().insns == reference_count()


def test_write_watchpoint_stops_after_the_writing_instruction():
    """The run stops right after the instruction whose store hit the watched bytes."""
    m, syms = build()
    wp = m.add_watchpoint(0x7000, 4, "w")
    seen = []
    while True:
        r = m.run()
        if r.reason is not Stop.WATCHPOINT:
            break
        hit = m.last_watch
        assert hit.access == "w" and hit.addr == 0x7000 and hit.size == 4
        assert m.cpu.eip == syms["again"] + 7    # the add after the store
        seen.append((hit.value, r.insns))
    assert [v for v, _ in seen] == [5, 4, 3, 2, 1]
    assert [n for _, n in seen] == [13 + 5 * i for i in range(5)]
    assert r.reason is Stop.EXIT and r.insns == reference_count()
    assert wp.hits == 5
    m.remove_watchpoint(wp)


def test_read_watchpoint_and_removal():
    m, syms = Guest(kernel="""
      mov dword ptr [0x7000], 3
      mov eax, [0x7000]
      mov ebx, [0x7000]
      EXIT 0
    """).build()
    wp = m.add_watchpoint(0x7000, 4, "r")
    r = m.run()
    assert r.reason is Stop.WATCHPOINT and m.last_watch.access == "r"
    m.remove_watchpoint(wp)
    assert m.run().reason is Stop.EXIT


def test_host_write_over_translated_code_takes_effect():
    """Unicorn keeps running a stale translation after a host write to code it has already
    translated (research §2): `Machine.load` drops translations, so the new code runs."""
    m, syms = Guest(kernel="""
    again:
      mov eax, 1
      mov [0x6000], eax
      EXIT 0
    """).build()
    assert m.run().reason is Stop.EXIT
    assert m.ram.read32(0x6000) == 1
    from emu.asm import assemble
    m.load(syms["again"], assemble("mov eax, 2", syms["again"]).code)
    m.set_entry_state(syms["again"])
    assert m.run().reason is Stop.EXIT
    assert m.ram.read32(0x6000) == 2


def test_host_write_of_other_code_of_the_same_size_is_counted_anew():
    """Counts are exact after the host rewrites code: the loop body of three `nop`s (3 bytes,
    3 instructions) becomes one `add eax, 1` (3 bytes, 1 instruction), so the loop block has
    the same address, address space and size but fewer instructions; a count learned for the
    old block must not be reused."""
    from emu.asm import assemble
    from emu.machine import Machine

    def loop(body: str) -> bytes:
        return assemble(f"""
          mov ecx, 100
        l:
          {body}
          dec ecx
          jnz l
          mov al, 0
          out 0xf4, al
        """, 0x100000).code

    old, new = loop("nop\n nop\n nop"), loop("add eax, 1")
    assert len(old) == len(new)
    m = Machine(ram_mib=16)
    m.load(0x100000, old)
    m.set_entry_state(0x100000)
    assert m.run().insns == 1 + 100 * 5 + 2
    m.load(0x100000, new)
    m.set_entry_state(0x100000)
    r = m.run()
    assert r.reason is Stop.EXIT
    assert r.insns == (1 + 100 * 5 + 2) + (1 + 100 * 3 + 2)
    m.close()


def test_snapshot_restore_replays_identically():
    """A snapshot taken mid-run, restored, runs to the same end: same output, same count,
    with a 1 kHz PIT interrupt and serial output in between (determinism + snapshots)."""
    g = Guest(kernel="""
      mov al, 0x11
      out 0x20, al
      mov al, 0x20
      out 0x21, al
      mov al, 4
      out 0x21, al
      mov al, 1
      out 0x21, al
      mov al, 0xfe
      out 0x21, al
      mov al, 0x34
      out 0x43, al
      mov ax, 1193
      out 0x40, al
      mov al, ah
      out 0x40, al
      sti
      mov ecx, 3000000
    spin:
      dec ecx
      jnz spin
      cli
      mov eax, [0x6000]
      EXIT al
    """, handlers="""
    tick:
      push eax
      push edx
      add dword ptr [0x6000], 1
      mov dx, 0x3f8
      mov al, 0x2e
      out dx, al
      mov al, 0x20
      out 0x20, al
      pop edx
      pop eax
      iretd
    """, gates={0x20: ("tick", 0xE, 0)})
    m, _ = g.build()
    first = m.run(max_insns=2_000_000)
    assert first.reason is Stop.MAX_INSNS
    snap = m.save_state()
    out_at_snap = len(g.serial)
    end1 = m.run()
    out1 = bytes(g.serial[out_at_snap:])
    m.load_state(snap)
    del g.serial[out_at_snap:]
    end2 = m.run()
    out2 = bytes(g.serial[out_at_snap:])
    assert end1.reason is end2.reason is Stop.EXIT
    assert end1.insns == end2.insns and end1.exit_status == end2.exit_status
    assert out1 == out2 and len(out1) > 0


def test_instruction_limit_is_exact_and_a_prefix_of_the_full_run():
    """run(max_insns=N) stops after exactly N instructions, in the same state as N single
    steps: a limited run is a prefix of the unlimited one (what replay stands on)."""
    for n in (1, 12, 13, 14, 20, 33):
        a, _ = build()
        r = a.run(max_insns=n)
        assert r.reason is Stop.MAX_INSNS and r.insns == n
        b, _ = build()
        b.step(n)
        assert a.cpu.registers() == b.cpu.registers()
        assert a.run().insns == reference_count()


def _ticking_guest():
    """A 1 kHz PIT interrupt (its handler logs the TSC it sees) over a compute loop."""
    from tests.guest import pic_init
    return Guest(kernel=pic_init(0xFE, 0xFF) + """
      mov al, 0x34
      out 0x43, al
      mov ax, 1193
      out 0x40, al
      mov al, ah
      out 0x40, al
      mov edi, 0x7000
      sti
      mov ecx, 400000
    spin:
      add eax, ecx
      xor ebx, eax
      dec ecx
      jnz spin
      cli
      EXIT 0
    """, handlers="""
    tick:
      push eax
      push edx
      rdtsc
      mov [edi], eax
      add edi, 4
      mov al, 0x20
      out 0x20, al
      pop edx
      pop eax
      iretd
    """, gates={0x20: ("tick", 0xE, 0)})


def test_stops_steps_and_slices_never_move_an_interrupt():
    """Determinism under observation: however a run is cut (odd slices, single steps,
    breakpoint stops), interrupts land on the same instructions and the run ends with the
    same count, because a cut block is finished before any interrupt is taken."""
    ref, syms = _ticking_guest().build()
    end = ref.run()
    log = ref.ram.read(0x7000, 4 * 8)
    assert end.reason is Stop.EXIT and log[:4] != b"\0\0\0\0"

    import struct
    ticks = [t for t in struct.unpack("<8I", log) if t]
    m, syms = _ticking_guest().build()
    m.add_breakpoint(syms["spin"] + 2)            # inside the loop block
    for i in range(40):
        r = m.run(max_insns=27_777 + i)
        assert r.reason in (Stop.MAX_INSNS, Stop.BREAKPOINT)
        m.step(3 + i % 5)
        if i == 5:
            m.remove_breakpoint(syms["spin"] + 2)
    # Cut just before each later tick is taken: inside the block that is running when the
    # timer fires, where an early interrupt would show.
    for t in ticks:
        for back in (9, 6, 3):
            if t - back > m.clock.now:
                m.run(max_insns=t - back - m.clock.now)
    r = m.run()
    assert r.reason is Stop.EXIT and r.insns == end.insns
    assert m.ram.read(0x7000, 4 * 8) == log
