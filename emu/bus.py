"""Port-I/O and MMIO dispatch, interrupt lines, and the base class every device derives from.

A device (DESIGN D9) is a small declared thing: the port ranges and MMIO ranges it answers,
read and write handlers, `reset()`, and `save_state()`/`load_state()`.  It knows nothing of
other devices; it raises interrupts through the `IrqLine` it was given and reads the time
from the `Clock` it was given.

Contracts:
- Port handlers get the port number and the access size in bytes (1, 2 or 4) and return (reads)
  an int of that size.  Unclaimed ports read as all ones and ignore writes, as on an ISA bus.
- MMIO handlers get the absolute physical address and the size.
- ISA IRQ lines fan out to every `IrqSink` attached to the `IrqBus` (the 8259A pair and the
  IOAPIC).  Each sink maps ISA IRQ numbers to its own inputs (the IOAPIC takes IRQ 0 on pin 2,
  as the MP table and the MADT override say; every other IRQ on the pin of the same number).
- The CPU samples its INTR input between run budgets: `InterruptPin.pending()` and
  `acknowledge()` (the INTA cycle, which returns the vector) over the attached sources in order.
"""
from __future__ import annotations

from typing import Iterable, Optional, Protocol

ALL_ONES = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF}


class Device:
    """Base class: override what the device implements.

    Subclasses document their registers in their docstring (a table: offset, access, meaning).
    """

    name: str = "device"
    #: (first port, number of ports) ranges this device answers.
    ports: tuple[tuple[int, int], ...] = ()
    #: (physical base, size) ranges this device answers.
    mmio: tuple[tuple[int, int], ...] = ()

    def io_read(self, port: int, size: int) -> int:
        return ALL_ONES[size]

    def io_write(self, port: int, size: int, value: int) -> None:
        pass

    def mmio_read(self, addr: int, size: int) -> int:
        return ALL_ONES.get(size, 0xFFFFFFFF)

    def mmio_write(self, addr: int, size: int, value: int) -> None:
        pass

    def reset(self) -> None:
        pass

    def save_state(self) -> dict:
        return {}

    def load_state(self, state: dict) -> None:
        pass

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class ByteDevice(Device):
    """A device whose registers are bytes: a wider access is split into byte accesses to
    consecutive ports, lowest first, as an ISA bus carries it (`out dx, ax` to an index/data
    pair writes both).  Subclasses implement `read_byte` and `write_byte`."""

    def io_read(self, port: int, size: int) -> int:
        value = 0
        for i in range(size):
            value |= (self.read_byte(port + i) & 0xFF) << (8 * i)
        return value

    def io_write(self, port: int, size: int, value: int) -> None:
        for i in range(size):
            self.write_byte(port + i, (value >> (8 * i)) & 0xFF)

    def read_byte(self, port: int) -> int:
        return 0xFF

    def write_byte(self, port: int, value: int) -> None:
        pass


class PortBus:
    """The 64 KiB x86 I/O port space."""

    def __init__(self) -> None:
        self._map: list[Optional[Device]] = [None] * 0x10000
        self.devices: list[Device] = []

    def attach(self, dev: Device) -> None:
        for first, count in dev.ports:
            for p in range(first, first + count):
                if not 0 <= p <= 0xFFFF:
                    raise ValueError(f"{dev.name}: port {p:#x} out of range")
                other = self._map[p]
                if other is not None:
                    raise ValueError(f"{dev.name}: port {p:#x} already taken by {other.name}")
                self._map[p] = dev
        self.devices.append(dev)

    def device_at(self, port: int) -> Optional[Device]:
        return self._map[port & 0xFFFF]

    def read(self, port: int, size: int) -> int:
        dev = self._map[port & 0xFFFF]
        if dev is None:
            return ALL_ONES[size]
        return dev.io_read(port & 0xFFFF, size) & ALL_ONES[size]

    def write(self, port: int, size: int, value: int) -> None:
        dev = self._map[port & 0xFFFF]
        if dev is not None:
            dev.io_write(port & 0xFFFF, size, value & ALL_ONES[size])


class MmioBus:
    """Physical MMIO ranges; the CPU maps each into Unicorn with callbacks to the device."""

    def __init__(self) -> None:
        self.regions: list[tuple[int, int, Device]] = []

    def attach(self, dev: Device) -> list[tuple[int, int, Device]]:
        new = []
        for base, size in dev.mmio:
            for b, s, d in self.regions:
                if base < b + s and b < base + size:
                    raise ValueError(f"{dev.name}: MMIO {base:#x} overlaps {d.name}")
            new.append((base, size, dev))
        self.regions.extend(new)
        return new

    def find(self, addr: int) -> Optional[Device]:
        for b, s, d in self.regions:
            if b <= addr < b + s:
                return d
        return None


class IrqSink(Protocol):
    def set_irq(self, irq: int, level: bool) -> None: ...


class IrqBus:
    """ISA interrupt lines 0-15, each wired to every attached sink (PIC pair, IOAPIC)."""

    def __init__(self) -> None:
        self.sinks: list[IrqSink] = []
        self.levels = [False] * 16

    def attach(self, sink: IrqSink) -> None:
        self.sinks.append(sink)
        for irq, level in enumerate(self.levels):
            if level:
                sink.set_irq(irq, True)

    def set(self, irq: int, level: bool) -> None:
        self.levels[irq] = level
        for s in self.sinks:
            s.set_irq(irq, level)

    def line(self, irq: int) -> "IrqLine":
        return IrqLine(self, irq)


class IrqLine:
    """One ISA interrupt line as a device sees it."""

    def __init__(self, bus: IrqBus, irq: int) -> None:
        self.bus = bus
        self.irq = irq

    @property
    def level(self) -> bool:
        return self.bus.levels[self.irq]

    def raise_(self) -> None:
        self.bus.set(self.irq, True)

    def lower(self) -> None:
        self.bus.set(self.irq, False)

    def pulse(self) -> None:
        """An edge: raise then lower (edge-triggered inputs latch it)."""
        self.bus.set(self.irq, True)
        self.bus.set(self.irq, False)

    def set(self, level: bool) -> None:
        self.bus.set(self.irq, level)


class InterruptSource(Protocol):
    def pending(self) -> bool: ...

    def acknowledge(self) -> Optional[int]: ...


class InterruptPin:
    """The CPU's INTR input: the interrupt controllers that may drive it, in priority order."""

    def __init__(self, sources: Iterable[InterruptSource] = ()) -> None:
        self.sources: list[InterruptSource] = list(sources)

    def pending(self) -> bool:
        return any(s.pending() for s in self.sources)

    def acknowledge(self) -> Optional[int]:
        """INTA: the vector of the highest-priority pending interrupt, or None (spurious)."""
        for s in self.sources:
            if s.pending():
                return s.acknowledge()
        return None
