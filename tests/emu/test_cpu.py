"""Exception and interrupt delivery, I/O permission, RDTSC/CPUID: guest programs assembled inline.

Each test names the Intel SDM behaviour it checks (vol. 3 ch. 6 unless stated).  Handlers store
what they see in the RESULT area (tests/guest.py) and end the run through the exit port.
"""
from __future__ import annotations

from emu.machine import Stop
from tests.guest import Guest, result, run, exit_code

# A handler that records vector-specific data then exits with a code.
SAVE_FRAME_AND_EXIT = """
{name}:
  mov eax, [esp]
  mov [0x6000], eax
  mov eax, [esp+4]
  mov [0x6004], eax
  mov eax, [esp+8]
  mov [0x6008], eax
  mov eax, [esp+12]
  mov [0x600c], eax
  mov eax, [esp+16]
  mov [0x6010], eax
  mov eax, [esp+20]
  mov [0x6014], eax
  mov eax, cr2
  mov [0x6018], eax
  EXIT {code}
"""


def handler(name: str, code: int) -> str:
    return SAVE_FRAME_AND_EXIT.format(name=name, code=code)


def test_int30_from_ring3_through_dpl3_trap_gate_and_back():
    """SDM §6.12.1: `int n` through a DPL-3 trap gate from ring 3 switches to the ring-0 stack
    from the TSS and pushes SS, ESP, EFLAGS, CS, EIP; `iretd` returns to ring 3 (§6.12.1,
    IRET in vol. 2)."""
    g = Guest(user="""
      mov ebx, 0x1234
      int 0x30
      mov [0x6020], eax
      int 0x31
    """, handlers="""
    h30:
      mov eax, [esp]
      mov [0x6000], eax
      mov eax, [esp+4]
      mov [0x6004], eax
      mov eax, [esp+8]
      mov [0x6008], eax
      mov eax, [esp+12]
      mov [0x600c], eax
      mov eax, [esp+16]
      mov [0x6010], eax
      mov [0x6014], esp
      mov ax, ss
      mov [0x6018], eax
      mov eax, 0x77
      iretd
    h31:
      EXIT 1
    """, gates={0x30: ("h30", 0xF, 3), 0x31: ("h31", 0xF, 3)})
    m, r, syms = run(g)
    assert r.reason is Stop.EXIT and exit_code(r) == 1, m.report()
    assert result(m, 0) == 0x400007                 # EIP after `int 0x30`
    assert result(m, 1) == 0x1B                     # CS of ring 3
    assert result(m, 2) & 0x202 == 0x202            # EFLAGS with IF
    assert result(m, 3) == 0x7FF000                 # user ESP
    assert result(m, 4) == 0x23                     # user SS
    assert result(m, 5) == 0x90000 - 20             # ring-0 stack from TSS.esp0
    assert result(m, 6) == 0x10                     # SS from TSS.ss0
    assert result(m, 8) == 0x77                     # value returned by the handler in EAX
    # 10 prologue + 6 to ring 3 + 2 user + 15 handler + 2 user + 2 (mov al; out 0xf4: the
    # machine powers off at the out)
    assert m.clock.now == 37


def test_int_through_dpl0_gate_from_ring3_raises_gp():
    """SDM §6.12.1.1: a software interrupt whose gate DPL < CPL raises #GP with error code
    vector*8 + 2 (IDT bit set), EIP at the `int` instruction."""
    g = Guest(user="""
      nop
      int 0x40
    """, handlers=handler("gp", 13), gates={0x40: ("gp", 0xE, 0), 13: ("gp", 0xE, 0)})
    m, r, _ = run(g)
    assert exit_code(r) == 13, m.report()
    assert result(m, 0) == 0x40 * 8 + 2             # error code
    assert result(m, 1) == 0x400001                 # EIP of the int instruction
    assert result(m, 2) == 0x1B


def _pf_guest(user: str, maps=()) -> Guest:
    return Guest(user=user, paging=True, maps=list(maps), handlers=handler("pf", 14),
                 gates={14: ("pf", 0xE, 0)})


def test_page_fault_not_present_user_read():
    """SDM vol. 3 §4.7: #PF error code P=0 W/R=0 U/S=1 for a user read of a not-present page;
    CR2 holds the linear address; EIP points at the faulting instruction."""
    g = _pf_guest("mov eax, [0x900010]\n", maps=[(0x900000, 0, 0x1000, None)])
    m, r, _ = run(g)
    assert exit_code(r) == 14, m.report()
    assert result(m, 0) == 0b100
    assert result(m, 1) == 0x400000
    assert result(m, 6) == 0x900010


def test_page_fault_user_write_to_read_only_page():
    """SDM §4.7: a user write to a present read-only page gives error code P=1 W/R=1 U/S=1."""
    g = _pf_guest("mov dword ptr [0x800004], 1\n", maps=[(0x800000, 0x800000, 0x1000, 5)])
    m, r, _ = run(g)
    assert exit_code(r) == 14, m.report()
    assert result(m, 0) == 0b111
    assert result(m, 6) == 0x800004


def test_page_fault_user_access_to_supervisor_page():
    """SDM §4.6: a user-mode read of a supervisor page faults with P=1 W/R=0 U/S=1."""
    g = _pf_guest("mov eax, [0x100000]\n")
    m, r, _ = run(g)
    assert exit_code(r) == 14, m.report()
    assert result(m, 0) == 0b101
    assert result(m, 6) == 0x100000


def test_supervisor_write_to_read_only_page_faults_with_cr0_wp():
    """SDM §4.6: with CR0.WP=1 a supervisor write to a read-only page faults (error 0b011)."""
    g = Guest(kernel="mov dword ptr [0x800000], 1\n", paging=True,
              maps=[(0x800000, 0x800000, 0x1000, 5)], handlers=handler("pf", 14),
              gates={14: ("pf", 0xE, 0)})
    m, r, _ = run(g)
    assert exit_code(r) == 14, m.report()
    assert result(m, 0) == 0b011
    assert result(m, 2) == 0x08                     # CS: same-privilege frame, no stack switch


def test_gp_with_selector_error_code():
    """SDM §6.15 (#GP): loading DS with a selector beyond the GDT limit gives #GP with the
    selector as error code."""
    g = Guest(kernel="mov ax, 0x1230\nmov ds, ax\n", handlers=handler("gp", 13),
              gates={13: ("gp", 0xE, 0)})
    m, r, syms = run(g)
    assert exit_code(r) == 13, m.report()
    assert result(m, 0) == 0x1230


def test_divide_error():
    """SDM §6.15 (#DE): `div` by zero faults with no error code, EIP at the `div`."""
    g = Guest(user="xor ecx, ecx\nmov eax, 5\ndiv ecx\n", handlers=handler("de", 10),
              gates={0: ("de", 0xE, 0)})
    m, r, _ = run(g)
    assert exit_code(r) == 10, m.report()
    assert result(m, 0) == 0x400007                 # EIP (no error code pushed)
    assert result(m, 1) == 0x1B


def test_invalid_opcode():
    """SDM §6.15 (#UD): `ud2` raises #UD with EIP at the instruction, no error code."""
    g = Guest(user="nop\nud2\n", handlers=handler("ud", 6), gates={6: ("ud", 0xE, 0)})
    m, r, _ = run(g)
    assert exit_code(r) == 6, m.report()
    assert result(m, 0) == 0x400001
    assert result(m, 1) == 0x1B


def test_fault_during_delivery_gives_double_fault():
    """SDM table 6-5: a contributory fault (#NP: the #GP gate is not present) while delivering
    a contributory exception (#GP) becomes #DF with error code 0."""
    g = Guest(user="int 0x40\n", handlers=handler("df", 8),
              gates={0x40: ("df", 0xE, 0), 13: ("df", 0xE, 0, False), 8: ("df", 0xE, 0)})
    m, r, _ = run(g)
    assert exit_code(r) == 8, m.report()
    assert result(m, 0) == 0                        # #DF error code
    assert result(m, 1) == 0x400000
    assert [t.vector for t in m.cpu.traps[-3:]] == [13, 11, 8]
    assert m.cpu.traps[-2].error_code == 13 * 8 + 2 + 1   # #NP: IDT entry, EXT


def test_page_fault_while_delivering_page_fault_is_double_fault():
    """SDM table 6-5: a #PF while pushing the frame of a #PF (ESP0 on a not-present page)
    becomes #DF."""
    g = Guest(kernel="mov dword ptr [0x3004], 0x00b00000\n", user="mov eax, [0x900000]\n",
              paging=True, maps=[(0x900000, 0, 0x1000, None), (0xAFF000, 0, 0x1000, None)],
              handlers="df:\n  EXIT 8\npf:\n  EXIT 14\n",
              gates={14: ("pf", 0xE, 0), 8: ("df", 0xE, 0)})
    # The #DF frame also lands on the bad stack: that is a triple fault.
    m, r, _ = run(g)
    assert r.reason is Stop.TRIPLE_FAULT, m.report()
    assert [t.vector for t in m.cpu.traps[-4:]] == [14, 14, 8, 14]


def test_triple_fault_stops_the_machine_with_a_report():
    """SDM §6.15 (interrupt 8): a fault while delivering #DF is a triple fault; the machine
    stops cleanly with registers, the last traps and the code at EIP."""
    g = Guest(user="int 0x40\n", idt_entries=1)
    m, r, _ = run(g)
    assert r.reason is Stop.TRIPLE_FAULT
    report = m.report()
    assert "#DF" in r.detail and "eip=00400000" in report and "int 0x40" in report
    assert "last traps" in report


def test_io_permission_bitmap_allows_one_port_and_denies_the_next():
    """SDM vol. 1 §19.5.2: at CPL > IOPL the TSS I/O bitmap decides; a clear bit allows the
    port, a set bit makes `out`/`in` raise #GP(0) before the access happens."""
    g = Guest(user="""
      mov al, 0x41
      mov dx, 0x3f8
      out dx, al
      mov dx, 0x3f9
      mov al, 0x0f
      out dx, al
      mov eax, 1
    """, io_allow=(0x3F8,), handlers=handler("gp", 13), gates={13: ("gp", 0xE, 0)})
    m, r, _ = run(g)
    assert exit_code(r) == 13, m.report()
    assert g.serial == b"A"
    assert result(m, 0) == 0                        # error code
    assert result(m, 1) == 0x40000D                 # EIP of the denied `out dx, al`


def test_in_denied_at_iopl0_leaves_eax_and_raises_gp():
    """SDM vol. 1 §19.5.1: `in` at CPL 3 with IOPL 0 and no bitmap permission raises #GP(0);
    the destination register is not written."""
    g = Guest(user="mov eax, 0x12345678\nin al, 0x71\nmov eax, 0\n",
              handlers="gp:\n  mov [0x6000], eax\n  mov eax, [esp+4]\n  mov [0x6004], eax\n"
                       "  EXIT 13\n", gates={13: ("gp", 0xE, 0)})
    m, r, _ = run(g)
    assert exit_code(r) == 13, m.report()
    assert result(m, 0) == 0x12345678
    assert result(m, 1) == 0x400005


def test_iopl3_allows_all_ports_from_ring3():
    """SDM vol. 1 §19.5.1: with CPL <= IOPL the bitmap is not consulted."""
    g = Guest(user="mov al, 0x42\nmov dx, 0x3f8\nout dx, al\nmov al, 7\nout 0xf4, al\nhlt\n",
              user_eflags=0x3202)
    m, r, _ = run(g)
    assert exit_code(r) == 7 and g.serial == b"B", m.report()


def test_rdtsc_is_virtual_time_and_cpuid_is_the_defined_model():
    """RDTSC (vol. 2) returns the virtual TSC: retired instructions; CPUID leaf 0 gives the
    vendor string of the defined model."""
    g = Guest(kernel="""
      rdtsc
      mov [0x6000], eax
      mov [0x6004], edx
      nop
      nop
      rdtsc
      mov [0x6008], eax
      xor eax, eax
      cpuid
      mov [0x600c], ebx
      mov [0x6010], edx
      mov [0x6014], ecx
      EXIT 0
    """)
    m, r, _ = run(g)
    assert exit_code(r) == 0, m.report()
    t0, t1 = result(m, 0), result(m, 2)
    assert t1 - t0 == 5                 # rdtsc, mov, mov, nop, nop retired between the reads
    assert result(m, 1) == 0
    vendor = b"".join(result(m, i).to_bytes(4, "little") for i in (3, 4, 5))
    assert vendor == b"GenuineIntel"


def test_same_program_twice_gives_identical_instruction_counts():
    """Determinism (DESIGN D5): the same guest retires the same number of instructions and
    takes the same traps on every run."""
    def once():
        g = Guest(user="""
          mov ecx, 500
        again:
          int 0x30
          mov eax, [0x900000]
          dec ecx
          jnz again
          int 0x31
        """, paging=True, maps=[(0x900000, 0, 0x1000, None)], handlers="""
        h30:
          iretd
        pf:
          add dword ptr [0x6000], 1
          mov eax, [0x10000 + 8]
          mov eax, [0x10000 + 4 * 2]
          add esp, 4
          add dword ptr [esp], 5
          iretd
        h31:
          EXIT 3
        """, gates={0x30: ("h30", 0xF, 3), 0x31: ("h31", 0xF, 3), 14: ("pf", 0xE, 0)})
        m, r, _ = run(g)
        assert exit_code(r) == 3, m.report()
        assert result(m, 0) == 500
        return r.insns, m.cpu.stats.traps
    assert once() == once()
