"""Reverse execution in the shell: `rs` and `rc` land exactly where forward execution was."""
from __future__ import annotations

from emu.debug.shell import Debugger
from emu.debug.symbols import SymbolTable
from emu.machine import Stop
from tests.emu.test_machine import LOOP, _ticking_guest
from tests.guest import Guest


def shell(m):
    out: list[str] = []
    d = Debugger(m, SymbolTable(), write=out.append)

    def run(line: str) -> str:
        out.clear()
        d.execute(line)
        return "".join(out)
    return d, run


def test_reverse_step_lands_on_the_same_state_as_stepping_forward():
    m, syms = Guest(kernel=LOOP).build()
    d, run = shell(m)
    states = {}
    for _ in range(20):
        states[m.clock.now] = m.cpu.registers()
        run("s")
    assert m.clock.now == 20
    run("rs")
    assert m.clock.now == 19 and m.cpu.registers() == states[19]
    out = run("rs 7")
    assert "back 7 instructions, at instruction 12" in out
    assert m.clock.now == 12 and m.cpu.registers() == states[12]
    run("s 8")
    assert m.clock.now == 20 and m.cpu.registers()["eip"] == d.m.cpu.eip


def test_reverse_continue_goes_to_the_previous_breakpoint_hit():
    m, syms = Guest(kernel=LOOP).build()
    d, run = shell(m)
    run(f"b {syms['again'] + 2:#x}")
    hits = []
    for _ in range(3):
        run("c")
        hits.append((m.clock.now, m.cpu.registers()))
    out = run("rc")
    assert f"back to breakpoint 1 at instruction {hits[1][0]}" in out
    assert m.cpu.registers() == hits[1][1]
    run("rc")
    assert m.clock.now == hits[0][0]
    out = run("rc")
    assert "start of the recorded history" in out and m.clock.now == 0


def test_going_back_after_the_guest_exited_and_forward_again_with_interrupts():
    """Past the end and back, under a 1 kHz timer: replay reproduces interrupts exactly."""
    m, syms = _ticking_guest().build()
    d, run = shell(m)
    run("c")
    assert d.finished is not None and d.finished.reason is Stop.EXIT
    end, log = m.clock.now, m.ram.read(0x7000, 32)
    run(f"rs {end // 2}")
    assert d.finished is None and m.clock.now == end - end // 2
    run("c")
    assert d.finished.reason is Stop.EXIT
    assert m.clock.now == end and m.ram.read(0x7000, 32) == log
