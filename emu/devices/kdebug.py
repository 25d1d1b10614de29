"""The kernel debugger port: how guest code asks to enter the host-side debugger.

The L4 kernel's kdebug interface (int3-based, DESIGN D7) prints through the UART itself; to
"enter the kernel debugger" it writes to this port, and the machine stops with reason
`Stop.KDEBUG` so the debugger shell (or `l4emu boot`, which reports it and goes on) takes over.

| port   | access | meaning                                                        |
|--------|--------|----------------------------------------------------------------|
| 0x8A00 | write  | enter the debugger; the value written is a reason code          |
| 0x8A00 | read   | 0x8A00 when a debugger is attached (tools set `attached`), else 0 |
"""
from __future__ import annotations

from typing import Callable

from ..bus import ALL_ONES, Device

KDEBUG_PORT = 0x8A00


class KdebugPort(Device):
    name = "kdebug"

    def __init__(self, on_enter: Callable[[int], None], port: int = KDEBUG_PORT) -> None:
        self.on_enter = on_enter
        self.ports = ((port, 2),)
        self.port = port
        self.attached = False
        self.entries = 0

    def io_read(self, port: int, size: int) -> int:
        if port == self.port:
            return (KDEBUG_PORT if self.attached else 0) & ALL_ONES[size]
        return ALL_ONES[size]

    def io_write(self, port: int, size: int, value: int) -> None:
        if port == self.port:
            self.entries += 1
            self.on_enter(value)

    def reset(self) -> None:
        self.entries = 0

    def save_state(self) -> dict:
        return {"entries": self.entries}

    def load_state(self, state: dict) -> None:
        self.entries = state.get("entries", 0)
