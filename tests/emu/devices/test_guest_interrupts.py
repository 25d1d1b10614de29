"""Interrupt controllers and timers driven by guest code the way real drivers program them.

Each test assembles a small protected-mode guest (tests/guest.py) that programs the 8259A pair,
the 8254, the local APIC, the IOAPIC, the IMCR or the UART through their ports and MMIO pages,
idles with `hlt` (the clock then jumps to the next event, so virtual seconds cost little host
time) and counts what arrives in its handlers.  Virtual time is read inside the guest with
`rdtsc`: the virtual TSC counts retired instructions, 1e9 per virtual second at the default rate.
Each test names the datasheet or SDM behaviour it checks; counts are exact.

RESULT area (0x6000) conventions used below: dword 0 is the handler count, dwords 1-2 the TSC
when the timer was started (low, high), the rest per test.
"""
from __future__ import annotations

from itertools import pairwise

import pytest

from emu.devices.pit import PIT_HZ
from emu.machine import Machine, Stop
from tests.guest import Guest, exit_code, pic_init, result, run

IPS = 1_000_000_000          # the default clock rate: one instruction per virtual nanosecond
LAPIC = 0xFEE00000
IOAPIC = 0xFEC00000

PIC_INIT_LINUX = pic_init()

# Remember the TSC in RESULT dwords 1-2 (the start of the measured window).
MARK_T0 = """
  rdtsc
  mov [0x6004], eax
  mov [0x6008], edx
"""


def pit_channel0(mode: int, divisor: int) -> str:
    """Control word (counter 0, lobyte/hibyte, `mode`, binary) then the 16-bit count."""
    return f"""
  mov al, {0x30 | mode << 1:#x}
  out 0x43, al
  mov al, {divisor & 0xFF:#x}
  out 0x40, al
  mov al, {divisor >> 8:#x}
  out 0x40, al
"""


def window_check(window: int, done: str) -> str:
    """EDX:EAX = TSC - t0 (64-bit); jump to `done` once it reaches `window` instructions.
    Clobbers EAX and EDX."""
    return f"""
  rdtsc
  sub eax, [0x6004]
  sbb edx, [0x6008]
  cmp edx, {window >> 32}
  ja {done}
  jb {done}_in
  cmp eax, {window & 0xFFFFFFFF}
  jae {done}
{done}_in:
"""


def pit_edge(k: int, divisor: int) -> int:
    """Instructions from the count load to the k-th reload of counter 0 (pit.py: the k-th period
    ends at start + ceil(k * N * ips / 1193182))."""
    return -(-k * divisor * IPS // PIT_HZ)


def lapic_write(off: int, value: int) -> str:
    return f"  mov dword ptr [{LAPIC + off:#x}], {value:#x}\n"


def ioapic_write(index: int, value: int) -> str:
    return (f"  mov dword ptr [{IOAPIC:#x}], {index:#x}\n"
            f"  mov dword ptr [{IOAPIC + 0x10:#x}], {value:#x}\n")


def dword(m: Machine, addr: int) -> int:
    return m.ram.read32(addr)


# -- 8259A + 8254 -----------------------------------------------------------------------------

def pit_pic_counting_guest(window: int, mode: int = 2, divisor: int = 11932) -> Guest:
    """Linux-style PIC init, PIT counter 0 in `mode`, IRQ 0 unmasked, idle in `hlt`; the IRQ 0
    handler counts arrivals before `window` instructions have passed since the control word and
    logs (TSC - t0) of the first, second and last counted arrival in dwords 3, 4, 5-6."""
    return Guest(kernel=PIC_INIT_LINUX + MARK_T0 + pit_channel0(mode, divisor) + """
      mov al, 0xfe
      out 0x21, al              # OCW1: unmask IRQ 0 only
      sti
    idle:
      hlt
      jmp idle
    """, handlers=f"""
    irq0:
      push eax
      push edx
      {window_check(window, "done")}
      inc dword ptr [0x6000]
      mov [0x6014], eax
      mov [0x6018], edx
      cmp dword ptr [0x6000], 1
      jne not_first
      mov [0x600c], eax
    not_first:
      cmp dword ptr [0x6000], 2
      jne not_second
      mov [0x6010], eax
    not_second:
      mov al, 0x20
      out 0x20, al              # OCW2: non-specific EOI
      pop edx
      pop eax
      iretd
    done:
      EXIT 1
    """, gates={0x20: ("irq0", 0xE, 0)})


@pytest.mark.parametrize("mode, seconds, expected", [(2, 1, 100), (2, 10, 1000), (3, 1, 100)])
def test_pit_100hz_through_8259a_counts_exactly(mode, seconds, expected):
    """8254 mode 2 (rate generator, Linux) or 3 (square wave, the BIOS) with N = 11932: OUT
    goes high at the control word (it was low in the unprogrammed mode-0 state after reset);
    every N input clocks it rises again (mode 2: after a one-clock low pulse; mode 3: after a
    low half-cycle), so IRQ 0 sees one rising edge at the control word and one per period of
    11932 / 1193182 s = 10.0000168 ms.  The 8259A latches an edge in IRR even while IMR masks
    it (datasheet: IMR inhibits the request, not the IRR latch), so the control-word edge is
    delivered as soon as the guest unmasks IRQ 0 and sets IF.  In the first second: that edge +
    periods 1..99 (the 100th ends 1.68 us after the second) = 100; in ten seconds: 1 + 999 =
    1000 (the 1000th period ends 16.8 us late).  Each IRQ is EOId with OCW2 0x20."""
    window = seconds * IPS
    m, r, _ = run(pit_pic_counting_guest(window, mode), max_insns=window + IPS)
    assert r.reason is Stop.EXIT and exit_code(r) == 1, m.report()
    assert result(m, 0) == expected
    # Arrivals are exactly one PIT period apart (no drift, no jitter): the second arrival is
    # the end of period 1, the last counted one the end of period expected - 1.
    assert result(m, 3) < 50        # the control-word edge, taken right after `sti`
    first_period, last = result(m, 4), result(m, 5) | result(m, 6) << 32
    assert pit_edge(1, 11932) < first_period < pit_edge(1, 11932) + 50
    assert last - first_period == pit_edge(expected - 1, 11932) - pit_edge(1, 11932)
    assert m.stats.irqs_delivered == expected + 1       # the last one ends the run


def test_masked_irq0_stays_in_irr_and_arrives_once_when_unmasked():
    """8259A datasheet: the IMR masks a request from reaching INT but the edge is still latched
    in IRR (OCW3 0x0A selects IRR for reads of the command port).  Three PIT periods pass with
    IRQ 0 masked and IF set: nothing is delivered, IRR bit 0 is set, ISR is clear (OCW3 0x0B).
    Unmasking (OCW1) delivers it at once, exactly once: the edges of the three periods collapsed
    into the one IRR bit.  Inside the handler ISR bit 0 is set until the EOI."""
    g = Guest(kernel=PIC_INIT_LINUX + pit_channel0(2, 1193) + """
      sti
      mov ecx, 1500000          # 3 ms of virtual time (2 instructions per iteration)
    spin:
      dec ecx
      jnz spin
      mov ebx, [0x6000]
      mov [0x600c], ebx         # handler count while masked
      mov al, 0x0a
      out 0x20, al              # OCW3: read IRR
      in al, 0x20
      mov [0x6010], eax
      mov al, 0x0b
      out 0x20, al              # OCW3: read ISR
      in al, 0x20
      mov [0x6014], eax
      mov al, 0xfe
      out 0x21, al              # OCW1: unmask IRQ 0
      jmp after_unmask          # end the block: a pending interrupt is taken here
    after_unmask:
      mov ebx, [0x6000]
      mov [0x6018], ebx         # count right after the unmask
      mov al, 0x0a
      out 0x20, al
      in al, 0x20
      mov [0x601c], eax         # IRR after the INTA cycle
      EXIT 2
    """, handlers="""
    irq0:
      push eax
      inc dword ptr [0x6000]
      mov al, 0x0b
      out 0x20, al              # OCW3: read ISR
      in al, 0x20
      mov [0x6020], eax
      mov al, 0x20
      out 0x20, al              # non-specific EOI
      in al, 0x20
      mov [0x6024], eax         # ISR after the EOI
      pop eax
      iretd
    """, gates={0x20: ("irq0", 0xE, 0)})
    m, r, _ = run(g)
    assert r.reason is Stop.EXIT and exit_code(r) == 2, m.report()
    assert result(m, 3) == 0                    # nothing delivered while masked
    assert result(m, 4) & 0xFF == 0x01          # IRR: IRQ 0 requested
    assert result(m, 5) & 0xFF == 0x00          # ISR: nothing in service
    assert result(m, 6) == 1                    # exactly one delivery on unmask
    assert result(m, 7) & 0xFF == 0x00          # IRR cleared by the INTA cycle
    assert result(m, 8) & 0xFF == 0x01          # ISR bit 0 set while in the handler
    assert result(m, 9) & 0xFF == 0x00          # ... and cleared by the EOI
    assert result(m, 0) == 1


# -- local APIC -------------------------------------------------------------------------------

def test_lapic_periodic_timer_1khz_divide_by_16():
    """SDM vol. 3 §10.5.4: software-enable the APIC (SVR bit 8, spurious vector 0xFF), LVT
    timer periodic (bit 17) with vector 0x40, divide configuration 0011b (by 16), initial count
    6250: the 100 MHz bus clock / 16 counts 6250 ticks in exactly 1 ms, the count reloads from
    the initial count at zero, and each expiry raises vector 0x40.  The first interrupt comes one
    full period after the initial-count write, so in the 0.1 s window starting just before that
    write there are 99 expiries, and the 100th falls just past its end (at the start + 0.1 s).
    Arrivals are exactly 1e6 instructions (1 ms) apart.  EOI by writing the EOI register;
    in the handler ISR bit 0x40 (ISR register 2, bit 0) is set and PPR is 0x40."""
    window = IPS // 10
    g = Guest(kernel=(lapic_write(0x0F0, 0x1FF) + lapic_write(0x320, 0x20040)
                      + lapic_write(0x3E0, 0x3) + MARK_T0 + lapic_write(0x380, 6250) + """
      sti
    idle:
      hlt
      jmp idle
    """), handlers=f"""
    timer:
      push eax
      push edx
      {window_check(window, "done")}
      inc dword ptr [0x6000]
      mov edx, [0x6000]
      mov [0x7000 + edx * 4], eax         # arrival log: TSC - t0 per interrupt
      mov eax, [{LAPIC + 0x120:#x}]
      mov [0x600c], eax                   # ISR bits 64-95
      mov eax, [{LAPIC + 0x0A0:#x}]
      mov [0x6010], eax                   # PPR
      mov dword ptr [{LAPIC + 0x0B0:#x}], 0
      pop edx
      pop eax
      iretd
    done:
      mov [0x6014], eax                   # the arrival that ended the window
      EXIT 3
    spurious:
      EXIT 0x55
    """, gates={0x40: ("timer", 0xE, 0), 0xFF: ("spurious", 0xE, 0)})
    m, r, _ = run(g, max_insns=2 * window)
    assert r.reason is Stop.EXIT and exit_code(r) == 3, m.report()
    n = result(m, 0)
    assert n == 99
    arrivals = [dword(m, 0x7000 + 4 * i) for i in range(1, n + 1)] + [result(m, 5)]
    assert all(b - a == 1_000_000 for a, b in pairwise(arrivals))
    assert 1_000_000 < arrivals[0] < 1_000_000 + 50
    assert arrivals[-1] > window
    assert result(m, 3) == 1                # ISR: vector 0x40 in service
    assert result(m, 4) == 0x40             # PPR = class of the in-service vector



def test_interrupt_pending_under_cli_is_taken_right_after_sti():
    """SDM vol. 3 §6.8.1 and STI (vol. 2): a maskable interrupt that became pending while IF=0
    is recognised once IF is set, after the one instruction STI's shadow covers.  Here a fixed
    self-IPI (vector 0x40) is sent with IF=0, then `sti` runs 10 instructions later and a 2M
    instruction loop follows.  The loop runs twice and the first pass sends an INIT IPI (which
    does nothing on one CPU), so on the second pass every block after `sti` is already
    translated: no block miss ends the budget by chance."""
    g = Guest(kernel=lapic_write(0x0F0, 0x1FF) + """
      mov dword ptr [0x6100], 0x40540   # pass 0: INIT to self (ignored)
      mov dword ptr [0x6104], 0x40040   # pass 1: fixed vector 0x40 to self
      xor edi, edi
    pass:
      mov eax, [0x6100 + edi * 4]
      mov [0xfee00300], eax             # IF=0: the IPI waits in IRR
      mov ecx, 4
    spin1:
      dec ecx
      jnz spin1
      rdtsc
      mov [0x6008], eax
      sti
      mov ecx, 1000000
    spin2:
      dec ecx
      jnz spin2
      cli
      inc edi
      cmp edi, 2
      jne pass
      EXIT 1
    """, handlers=f"""
    h:
      push eax
      push edx
      rdtsc
      mov [0x6004], eax
      inc dword ptr [0x6000]
      mov dword ptr [{LAPIC + 0x0B0:#x}], 0
      pop edx
      pop eax
      iretd
    """, gates={0x40: ("h", 0xE, 0)})
    m, r, _ = run(g)
    assert r.reason is Stop.EXIT and exit_code(r) == 1, m.report()
    assert result(m, 0) == 1
    sti_at, taken_at = result(m, 2), result(m, 1)
    # rdtsc, mov, sti, mov ecx (the shadow), then the interrupt; the handler's rdtsc is its 3rd.
    assert taken_at - sti_at < 20

# -- IMCR + IOAPIC --------------------------------------------------------------------------

# MP spec 1.4 §3.6.2.1: select the IMCR (0x70 to port 0x22) and set APIC mode (1 to 0x23), so the
# 8259A reaches the CPU only through LINT0; mask both 8259As; software-enable the local APIC.
APIC_MODE = PIC_INIT_LINUX + """
  mov al, 0x70
  out 0x22, al
  mov al, 1
  out 0x23, al
""" + lapic_write(0x0F0, 0x1FF)

# Anything but the expected vector ends the run with code 9 (PIC vectors, spurious).
STRAY = """
stray:
  EXIT 9
"""


def stray_gates() -> dict:
    return {v: ("stray", 0xE, 0) for v in [*range(0x20, 0x30), 0xFF]}


def test_pit_irq0_through_ioapic_pin2_in_apic_mode():
    """82093AA / MP spec: in APIC mode (IMCR) with the 8259A masked, ISA IRQ 0 reaches the
    IOAPIC on pin 2 (the interrupt source override every PC firmware reports).  Redirection
    entry 2 = vector 0x30, fixed, physical destination 0, edge, active high, unmasked: each PIT
    period becomes one vector-0x30 message to the local APIC, EOId at the LAPIC.  The PIT is
    programmed while entry 2 is still masked (its reset state): the control-word edge is lost
    (82093AA: edges on a masked pin are ignored, unlike the 8259A's IRR latch), so the 0.1 s
    window starting just before the control word holds only periods 1..9 of 10.0000168 ms
    (the 10th ends 1.5 us after the window) = 9."""
    window = IPS // 10
    g = Guest(kernel=APIC_MODE + MARK_T0 + pit_channel0(2, 11932)
              + ioapic_write(0x15, 0x00000000) + ioapic_write(0x14, 0x00000030) + """
      sti
    idle:
      hlt
      jmp idle
    """, handlers=f"""
    irq0:
      push eax
      push edx
      {window_check(window, "done")}
      inc dword ptr [0x6000]
      mov edx, [0x6000]
      mov [0x7000 + edx * 4], eax
      mov eax, [{LAPIC + 0x110:#x}]
      mov [0x600c], eax                   # ISR bits 32-63: vector 0x30 is bit 16
      mov dword ptr [{LAPIC + 0x0B0:#x}], 0
      pop edx
      pop eax
      iretd
    done:
      EXIT 4
    """ + STRAY, gates={0x30: ("irq0", 0xE, 0), **stray_gates()})
    m, r, _ = run(g, max_insns=2 * window)
    assert r.reason is Stop.EXIT and exit_code(r) == 4, m.report()
    n = result(m, 0)
    assert n == 9
    arrivals = [dword(m, 0x7000 + 4 * i) for i in range(1, n + 1)]
    for k, (a, b) in enumerate(pairwise(arrivals), start=1):
        assert b - a == pit_edge(k + 1, 11932) - pit_edge(k, 11932)
    assert pit_edge(1, 11932) < arrivals[0] < pit_edge(1, 11932) + 50
    assert result(m, 3) == 1 << 16
    # The 8259A saw the same edges (both sinks share the ISA line) but stays masked.
    assert m.pic.master.irr & 1


def test_pit_through_8259a_and_lint0_extint_virtual_wire():
    """MP spec 1.4 §3.6.2.2 virtual wire mode (what Linux sets up when it keeps the 8259A under
    the APIC): IMCR in APIC mode, LVT LINT0 = ExtINT (delivery mode 111b) unmasked, so the
    8259A's INT reaches the CPU through the local APIC and the INTA cycle fetches the vector
    from the 8259A (0x20 for IRQ 0; SDM §10.5.1: ExtINT bypasses IRR/ISR, so no LAPIC EOI, and
    the 8259A gets its OCW2 EOI).  The IOAPIC keeps every entry masked, so nothing arrives twice.
    Window 0.1 s from the control word: its edge (latched in the 8259A's IRR while masked) plus
    periods 1..9 = 10."""
    window = IPS // 10
    g = Guest(kernel=APIC_MODE + lapic_write(0x350, 0x700) + MARK_T0 + pit_channel0(2, 11932)
              + """
      mov al, 0xfe
      out 0x21, al
      sti
    idle:
      hlt
      jmp idle
    """, handlers=f"""
    irq0:
      push eax
      push edx
      {window_check(window, "done")}
      inc dword ptr [0x6000]
      mov eax, [{LAPIC + 0x100 + 0x10 * (0x20 >> 5):#x}]
      or [0x600c], eax                    # LAPIC ISR bits 32-63: must stay clear
      mov al, 0x20
      out 0x20, al
      pop edx
      pop eax
      iretd
    done:
      EXIT 8
    """ + STRAY, gates={0x20: ("irq0", 0xE, 0),
                        **{v: g for v, g in stray_gates().items() if v != 0x20}})
    m, r, _ = run(g, max_insns=2 * window)
    assert r.reason is Stop.EXIT and exit_code(r) == 8, m.report()
    assert result(m, 0) == 10
    assert result(m, 3) == 0


def test_uart_thre_irq4_through_ioapic_pin4():
    """PC16550D datasheet + PC wiring: with MCR OUT2 set (the PC's IRQ buffer enable), setting
    IER bit 1 while the THR is empty raises the THR-empty interrupt on ISA IRQ 4; IOAPIC pin 4
    (identity-mapped ISA line) routes it to vector 0x34.  The handler reads IIR (0x02: THR
    empty, which also clears it) and EOIs the LAPIC.  Each THR write re-arms THR empty (the byte
    leaves at once in virtual time), giving one interrupt per byte: 1 + 2 = 3 for "OK"."""
    g = Guest(kernel=APIC_MODE + ioapic_write(0x19, 0) + ioapic_write(0x18, 0x34) + """
      mov dx, 0x3fc
      mov al, 0x08
      out dx, al                # MCR: OUT2
      sti
      mov dx, 0x3f9
      mov al, 0x02
      out dx, al                # IER: THR empty
    wait1:
      cmp dword ptr [0x6000], 1
      jne wait1
      mov dx, 0x3f8
      mov al, 0x4f
      out dx, al                # 'O'
    wait2:
      cmp dword ptr [0x6000], 2
      jne wait2
      mov al, 0x4b
      out dx, al                # 'K'
    wait3:
      cmp dword ptr [0x6000], 3
      jne wait3
      mov dx, 0x3fa
      in al, dx
      mov [0x6020], eax         # IIR once every interrupt was served: none pending
      EXIT 5
    """, handlers=f"""
    com1:
      push eax
      push edx
      mov dx, 0x3fa
      in al, dx
      mov edx, [0x6000]
      mov [0x6004 + edx * 4], eax         # IIR per interrupt
      inc dword ptr [0x6000]
      mov dword ptr [{LAPIC + 0x0B0:#x}], 0
      pop edx
      pop eax
      iretd
    """ + STRAY, gates={0x34: ("com1", 0xE, 0), **stray_gates()})
    m, r, _ = run(g)
    assert r.reason is Stop.EXIT and exit_code(r) == 5, m.report()
    assert result(m, 0) == 3
    assert [result(m, i) & 0xFF for i in (1, 2, 3)] == [0x02, 0x02, 0x02]
    assert result(m, 8) & 0xFF == 0x01
    assert bytes(g.serial) == b"OK"


def self_ipi(vector: int) -> str:
    """ICR low: fixed delivery, shorthand 01 (self), edge; then a jump that ends the block so
    an interrupt the write made deliverable is taken before the next instruction."""
    return lapic_write(0x300, 0x40000 | vector) + f"""
  jmp ipi_sent_{vector:x}
ipi_sent_{vector:x}:
"""


def log(value: int) -> str:
    """Append `value` to the log at 0x6100 (count in RESULT dword 0)."""
    return f"""
  mov eax, [0x6000]
  mov dword ptr [0x6100 + eax * 4], {value:#x}
  inc dword ptr [0x6000]
"""


def test_lapic_higher_class_preempts_in_service_vector_lower_ones_wait():
    """SDM vol. 3 §10.8.3.1: an interrupt is dispatched only if its priority class (vector bits
    7-4) is above the processor priority, PPR = max(TPR, class of the highest in-service
    vector).  In the handler of vector 0x40 (IF set again with `sti`) self-IPIs (ICR shorthand
    self, §10.6.1) of 0x38 (lower class) and 0x45 (same class, higher vector) stay in IRR, while
    0x80 (higher class) preempts at once and nests.  After the 0x40 handler's EOI (with IF
    clear) and `iretd`, the waiting vectors are dispatched highest first: 0x45, then 0x38.
    Log: +v on entry, 0x100|v on exit, 0xA0|class for markers in the 0x40 handler."""
    g = Guest(kernel=lapic_write(0x0F0, 0x1FF) + """
      sti
    """ + self_ipi(0x40) + log(0xEE) + """
      EXIT 6
    """, handlers=f"""
    v40:
      push eax
      {log(0x40)}
      sti
      {self_ipi(0x38)}
      {log(0xA3)}
      {self_ipi(0x45)}
      {log(0xA4)}
      mov eax, [{LAPIC + 0x0A0:#x}]
      mov [0x6004], eax                   # PPR in the 0x40 handler
      mov eax, [{LAPIC + 0x220:#x}]
      mov [0x6008], eax                   # IRR bits 64-95: 0x45 waiting
      mov eax, [{LAPIC + 0x210:#x}]
      mov [0x600c], eax                   # IRR bits 32-63: 0x38 waiting
      {self_ipi(0x80)}
      {log(0xA8)}
      cli
      {log(0x140)}
      mov dword ptr [{LAPIC + 0x0B0:#x}], 0
      pop eax
      iretd
    v80:
      push eax
      {log(0x80)}
      mov eax, [{LAPIC + 0x0A0:#x}]
      mov [0x6010], eax                   # PPR in the nested 0x80 handler
      mov eax, [{LAPIC + 0x120:#x}]
      mov [0x6014], eax                   # ISR bits 64-95: 0x40 still in service
      mov eax, [{LAPIC + 0x140:#x}]
      mov [0x6018], eax                   # ISR bits 128-159: 0x80 in service
      {log(0x180)}
      mov dword ptr [{LAPIC + 0x0B0:#x}], 0
      pop eax
      iretd
    v45:
      push eax
      {log(0x45)}
      {log(0x145)}
      mov dword ptr [{LAPIC + 0x0B0:#x}], 0
      pop eax
      iretd
    v38:
      push eax
      {log(0x38)}
      {log(0x138)}
      mov dword ptr [{LAPIC + 0x0B0:#x}], 0
      pop eax
      iretd
    spurious:
      EXIT 0x55
    """, gates={0x40: ("v40", 0xE, 0), 0x80: ("v80", 0xE, 0), 0x45: ("v45", 0xE, 0),
                0x38: ("v38", 0xE, 0), 0xFF: ("spurious", 0xE, 0)})
    m, r, _ = run(g)
    assert r.reason is Stop.EXIT and exit_code(r) == 6, m.report()
    n = result(m, 0)
    entries = [dword(m, 0x6100 + 4 * i) for i in range(n)]
    assert entries == [0x40, 0xA3, 0xA4, 0x80, 0x180, 0xA8, 0x140,
                       0x45, 0x145, 0x38, 0x138, 0xEE]
    assert result(m, 1) == 0x40                 # PPR while 0x40 in service
    assert result(m, 2) == 1 << 5               # 0x45 pending
    assert result(m, 3) == 1 << 24              # 0x38 pending
    assert result(m, 4) == 0x80                 # PPR while 0x80 nests on 0x40
    assert result(m, 5) == 1                    # 0x40 still in service
    assert result(m, 6) == 1                    # 0x80 in service


# -- determinism ----------------------------------------------------------------------------

def compute_with_1khz_tick() -> Guest:
    """A 50M-instruction computation (an LCG folded into EBX/ESI) with the PIT at 1 kHz through
    the 8259A.  The handler adds the interrupted loop counter ECX to a sum, so the sum records
    exactly where each interrupt landed."""
    return Guest(kernel=PIC_INIT_LINUX + pit_channel0(2, 1193) + """
      mov al, 0xfe
      out 0x21, al
      mov eax, 12345
      xor ebx, ebx
      xor esi, esi
      mov ecx, 5000000
      sti
    work:
      imul eax, eax, 1103515245
      add eax, 12345
      xor ebx, eax
      rol ebx, 5
      add esi, ebx
      lea edi, [esi + eax * 2]
      xor esi, edi
      nop
      dec ecx
      jnz work
      cli
      EXIT 7
    """, handlers="""
    irq0:
      push eax
      inc dword ptr [0x6000]
      add [0x6004], ecx
      rdtsc
      mov [0x6008], eax
      mov al, 0x20
      out 0x20, al
      pop eax
      iretd
    """, gates={0x20: ("irq0", 0xE, 0)})


def test_interrupted_computation_is_deterministic():
    """DESIGN D5: time is retired instructions and interrupts are taken at block boundaries, so
    the same guest with a 1000 Hz PIT tick gives the same instruction count, the same number of
    handler runs at the same points (the sum of interrupted ECX values, the TSC of the last
    tick) and the same final registers on every run, also when the host splits the run into
    arbitrary `max_insns` slices.  The tick count is exact: the control-word edge plus every
    period of 1193 / 1193182 s that ended before the guest's `cli`."""
    def once(slice_insns=None):
        m, _ = compute_with_1khz_tick().build()
        if slice_insns is None:
            r = m.run(max_insns=200_000_000)
        else:
            while (r := m.run(max_insns=slice_insns)).reason is Stop.MAX_INSNS:
                pass
        assert r.reason is Stop.EXIT and exit_code(r) == 7, m.report()
        regs = m.cpu.registers()
        state = (r.insns, [result(m, i) for i in range(3)], regs)
        return m, state

    m, first = once()
    _, second = once()
    assert first == second
    _, sliced = once(slice_insns=1_234_567)
    assert sliced == first
    insns, (ticks, _sum, last_tick), _regs = first
    assert 50_000_000 < insns < 50_100_000
    t_load = m.pit.counters[0].start
    periods = sum(1 for k in range(1, 100) if t_load + pit_edge(k, 1193) < insns)
    assert ticks == 1 + periods == 51
    # The last tick was taken at the first block boundary after its edge: the loop body is one
    # 10-instruction block, and the handler's `rdtsc` is its fourth instruction.
    assert 3 <= last_tick - (t_load + pit_edge(periods, 1193)) < 10 + 3
