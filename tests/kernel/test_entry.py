"""Kernel entry corner cases the guest suite cannot aim at, driven from the host.

A call gate does not clear IF (unlike an interrupt gate), so the first instruction of a gate
entry is the one place outside the idle loop where the kernel can be interrupted.  The tick
that lands there must neither switch threads nor disturb the system call: the interrupted
thread's frame is not in its final form yet (kernel/entry.asm, kernel/sched.asm)."""
from __future__ import annotations

from emu.machine import Stop

from .l4boot import boot


def test_timer_interrupt_at_a_call_gate_entry():
    sess = boot("hello")
    m = sess.machine
    lcall = sess.symbol("root", "l4_gate_ipc")         # libl4's `lcall L4_GATE_IPC, 0`
    gate = sess.symbol("kernel", "gate_ipc")
    irq0 = sess.symbol("kernel", "irq0_entry")
    for _ in range(5):                                  # some way into the run
        r = m.run(max_insns=200_000_000, until=lcall)
        assert r.reason is Stop.BREAKPOINT, (r.reason, r.detail)
    assert m.cpu.cpl == 3
    # The breakpoint stopped at a block boundary, before the lcall: execute it, and a timer
    # tick is then taken at the next block boundary with IF set: the gate's target.
    r = m.step(1)
    assert r.reason is Stop.STEPPED and m.cpu.cpl == 0 and m.cpu.eip == gate
    m.irqs.line(0).pulse()
    r = m.run(max_insns=100, until=irq0)
    assert r.reason is Stop.BREAKPOINT, (r.reason, r.detail)
    regs = m.cpu.registers()
    frame = m.cpu.read_virt(regs["esp"], 12)
    eip, cs = int.from_bytes(frame[0:4], "little"), int.from_bytes(frame[4:8], "little")
    assert (eip, cs) == (gate, 0x08), "the tick did not land on the gate entry"
    # It returns there (no switch), and the system call completes as if nothing happened.
    r = m.run(max_insns=10_000, until=gate)
    assert r.reason is Stop.BREAKPOINT and m.cpu.registers()["cr3"] == regs["cr3"]
    r = sess.run()
    assert r.reason is Stop.EXIT and r.exit_status == 1, sess.text[-2000:]
    assert sess.text.rstrip().endswith("root: ping is done; all done, powering off")
