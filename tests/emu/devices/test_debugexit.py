"""QEMU isa-debug-exit compatible port (no CPU)."""
from __future__ import annotations

from emu.bus import PortBus
from emu.devices.debugexit import DebugExit


def make():
    calls: list[int] = []
    dev = DebugExit(calls.append)
    bus = PortBus()
    bus.attach(dev)
    return calls, dev, bus


def test_write_0x10_exits_with_0x21():
    """isa-debug-exit: writing v gives exit status (v << 1) | 1."""
    calls, dev, bus = make()
    bus.write(0xF4, 1, 0x10)
    assert calls == [0x21]
    assert dev.status == 0x21


def test_value_masked_to_access_size():
    """The value is the written one at the access size: a 16-bit write keeps 16 bits."""
    calls, _, bus = make()
    bus.write(0xF4, 2, 0x1234)
    bus.write(0xF4, 1, 0x0)
    assert calls == [0x2469, 0x01]


def test_reads_all_ones():
    """Nothing to read: the port reads as all ones at every size."""
    _, _, bus = make()
    assert bus.read(0xF4, 1) == 0xFF
    assert bus.read(0xF4, 4) == 0xFFFFFFFF


def test_custom_port():
    """The port is configurable (QEMU's iobase property)."""
    calls: list[int] = []
    bus = PortBus()
    bus.attach(DebugExit(calls.append, port=0x501))
    bus.write(0x501, 1, 1)
    assert calls == [3]
