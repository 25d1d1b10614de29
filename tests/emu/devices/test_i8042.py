"""8042 keyboard controller and port 0x92 behaviour at the register level (no CPU)."""
from __future__ import annotations

from emu.bus import IrqBus, PortBus
from emu.devices.i8042 import I8042


def make(**kw):
    resets: list[int] = []
    a20_changes: list[bool] = []
    irqs = IrqBus()
    dev = I8042(on_reset=lambda: resets.append(1), irq1=irqs.line(1), irq12=irqs.line(12),
                on_a20=a20_changes.append, **kw)
    bus = PortBus()
    bus.attach(dev)
    return resets, a20_changes, irqs, dev, bus


def drain(bus: PortBus) -> list[int]:
    out = []
    while bus.read(0x64, 1) & 0x01:
        out.append(bus.read(0x60, 1))
    return out


def test_self_test_returns_55():
    """Controller command 0xAA (self test) answers 0x55 through the output buffer (OBF)."""
    _, _, _, _, bus = make()
    assert not bus.read(0x64, 1) & 0x01
    bus.write(0x64, 1, 0xAA)
    assert bus.read(0x64, 1) & 0x01
    assert bus.read(0x60, 1) == 0x55
    assert not bus.read(0x64, 1) & 0x01


def test_status_sys_and_a2():
    """Status bit 2 (SYS) mirrors the command byte after POST; bit 3 (A2) says whether the
    last write went to 0x64 (command) or 0x60 (data)."""
    _, _, _, _, bus = make()
    assert bus.read(0x64, 1) & 0x04
    bus.write(0x64, 1, 0xAD)
    assert bus.read(0x64, 1) & 0x08
    bus.write(0x60, 1, 0xF4)
    assert not bus.read(0x64, 1) & 0x08


def test_command_byte_round_trip():
    """0x60 + byte writes the command byte, 0x20 reads it back."""
    _, _, _, _, bus = make()
    bus.write(0x64, 1, 0x20)
    assert bus.read(0x60, 1) == 0x65
    bus.write(0x64, 1, 0x60)
    bus.write(0x60, 1, 0x40)
    bus.write(0x64, 1, 0x20)
    assert bus.read(0x60, 1) == 0x40
    assert not bus.read(0x64, 1) & 0x04  # SYS follows command byte bit 2


def test_interface_tests_and_enable_bits():
    """0xAB answers 0x00; 0xAD/0xAE and 0xA7/0xA8 flip command byte bits 4 and 5."""
    _, _, _, _, bus = make()
    bus.write(0x64, 1, 0xAB)
    assert bus.read(0x60, 1) == 0x00
    bus.write(0x64, 1, 0xAD)
    bus.write(0x64, 1, 0xA8)
    bus.write(0x64, 1, 0x20)
    assert bus.read(0x60, 1) & 0x30 == 0x10
    bus.write(0x64, 1, 0xAE)
    bus.write(0x64, 1, 0xA7)
    bus.write(0x64, 1, 0x20)
    assert bus.read(0x60, 1) & 0x30 == 0x20


def test_a20_via_output_port_d1_and_dd_df():
    """0xD1 writes the output port (bit 1 = A20); 0xD0 reads it back; 0xDD/0xDF close/open."""
    _, changes, _, dev, bus = make()
    assert dev.a20
    bus.write(0x64, 1, 0xD1)
    bus.write(0x60, 1, 0xDD)
    assert not dev.a20
    bus.write(0x64, 1, 0xD0)
    assert bus.read(0x60, 1) & 0x03 == 0x01
    bus.write(0x64, 1, 0xD1)
    bus.write(0x60, 1, 0xDF)
    assert dev.a20
    bus.write(0x64, 1, 0xDD)
    assert not dev.a20
    bus.write(0x64, 1, 0xDF)
    assert dev.a20
    assert changes == [False, True, False, True]


def test_a20_via_port_92():
    """Port 0x92 bit 1 is the fast A20 gate and reads back the gate's state."""
    resets, _, _, dev, bus = make()
    bus.write(0x92, 1, 0x00)
    assert not dev.a20
    assert bus.read(0x92, 1) & 0x02 == 0
    bus.write(0x92, 1, 0x02)
    assert dev.a20
    assert bus.read(0x92, 1) & 0x02
    assert resets == []


def test_port_92_fast_reset():
    """A 0-to-1 write of port 0x92 bit 0 resets the CPU."""
    resets, _, _, _, bus = make()
    bus.write(0x92, 1, 0x03)
    assert resets == [1]
    bus.write(0x92, 1, 0x03)  # no new edge
    assert resets == [1]


def test_fe_pulses_reset():
    """Command 0xFE pulses output port bit 0 (the reset line): on_reset is called."""
    resets, _, _, _, bus = make()
    bus.write(0x64, 1, 0xFE)
    assert resets == [1]
    bus.write(0x64, 1, 0xFF)  # pulses nothing
    assert resets == [1]


def test_d1_with_bit0_clear_resets():
    """Writing the output port with bit 0 = 0 asserts the system reset."""
    resets, _, _, _, bus = make()
    bus.write(0x64, 1, 0xD1)
    bus.write(0x60, 1, 0x02)
    assert resets == [1]


def test_keyboard_commands():
    """AT keyboard answers: FF -> FA AA, F4 -> FA, ED + arg -> FA FA, F2 -> FA AB 83, EE echo,
    unknown -> FE."""
    _, _, _, _, bus = make()
    bus.write(0x60, 1, 0xFF)
    assert drain(bus) == [0xFA, 0xAA]
    bus.write(0x60, 1, 0xF4)
    assert drain(bus) == [0xFA]
    bus.write(0x60, 1, 0xED)
    assert drain(bus) == [0xFA]
    bus.write(0x60, 1, 0x07)
    assert drain(bus) == [0xFA]
    bus.write(0x60, 1, 0xF2)
    assert drain(bus) == [0xFA, 0xAB, 0x83]
    bus.write(0x60, 1, 0xEE)
    assert drain(bus) == [0xEE]
    bus.write(0x60, 1, 0x01)
    assert drain(bus) == [0xFE]


def test_irq1_edge_per_byte():
    """With command byte bit 0, IRQ 1 follows OBF for keyboard data; reading a byte when
    another follows drops and raises the line (one edge per byte)."""
    edges = []

    class Sink:
        def set_irq(self, irq, level):
            if irq == 1:
                edges.append(level)

    _, _, irqs, _, bus = make()
    irqs.attach(Sink())
    bus.write(0x60, 1, 0xF2)
    assert irqs.levels[1]
    bus.read(0x60, 1)
    bus.read(0x60, 1)
    bus.read(0x60, 1)
    assert not irqs.levels[1]
    assert edges == [True, False, True, False, True, False]


def test_disabled_keyboard_holds_bytes():
    """With the keyboard disabled (0xAD) its answers wait; controller answers still come."""
    _, _, _, _, bus = make()
    bus.write(0x60, 1, 0xFF)  # answers queued: FA AA; FA goes to the output buffer
    bus.write(0x64, 1, 0xAD)
    assert bus.read(0x60, 1) == 0xFA
    assert not bus.read(0x64, 1) & 0x01  # AA waits
    bus.write(0x64, 1, 0xAA)
    assert drain(bus) == [0x55]
    bus.write(0x64, 1, 0xAE)
    assert drain(bus) == [0xAA]


def test_save_load_round_trip():
    """save_state/load_state carry the command byte, A20 and queued output."""
    _, _, _, dev, bus = make()
    bus.write(0x64, 1, 0xDD)
    bus.write(0x60, 1, 0xF2)
    state = dev.save_state()
    _, _, _, dev2, bus2 = make()
    dev2.load_state(state)
    assert not dev2.a20
    assert drain(bus2) == [0xFA, 0xAB, 0x83]
