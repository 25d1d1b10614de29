"""A QEMU `isa-debug-exit` compatible port: the guest ends the run with a status of its choice.

    port      access  meaning
    port+0    write   value v (8, 16 or 32 bits): exit with status (v << 1) | 1
              read    all ones (nothing to read)

The status is odd by construction, as in QEMU, so that a guest exit is never confused with
success status 0 of the emulator itself; test harnesses conventionally write 0x10 for "pass"
(status 0x21).  `v` is the written value masked to the access size: `out dx, al` of 0x10 gives
0x21, `out dx, ax` of 0x1234 gives 0x2469.  Only `port` itself is claimed (a wider write starting
there still delivers its whole value, as QEMU's iosize-4 device does); the neighbouring ports
0xF0/0xF1 belong to the FPU error logic on PCs and stay unclaimed.

The device does not stop the machine itself: `on_exit(status)` is called from inside the I/O
access and the owner decides (the run loop stops at the end of the current block).
"""
from __future__ import annotations

from collections.abc import Callable

from emu.bus import ALL_ONES, Device


class DebugExit(Device):
    """Calls `on_exit((v << 1) | 1)` when the guest writes v to `port` (default 0xF4)."""

    name = "debug-exit"

    def __init__(self, on_exit: Callable[[int], None], port: int = 0xF4) -> None:
        self.on_exit = on_exit
        self.port = port
        self.ports = ((port, 1),)
        #: The last exit status the guest asked for (None until it writes).
        self.status: int | None = None

    def io_read(self, port: int, size: int) -> int:
        return ALL_ONES[size]

    def io_write(self, port: int, size: int, value: int) -> None:
        status = ((value & ALL_ONES[size]) << 1) | 1
        self.status = status
        self.on_exit(status)

    def reset(self) -> None:
        self.status = None

    def save_state(self) -> dict:
        return {"status": self.status}

    def load_state(self, state: dict) -> None:
        self.status = state.get("status")
