"""Motorola MC146818 real-time clock and CMOS RAM (ports 0x70/0x71, IRQ 8).

Ports:

    0x70  write  bit 7 NMI disable, bits 0-6 register index     read: 0xFF (write-only)
    0x71  r/w    the indexed register

Registers (the time registers read in BCD or binary as status B bit 2 says):

    0x00  seconds          0x01  seconds alarm     0x02  minutes    0x03  minutes alarm
    0x04  hours (12-hour mode: 1-12, bit 7 = PM)   0x05  hours alarm
    0x06  day of week (1 = Sunday)   0x07 day of month   0x08 month   0x09 year (00-99)
    0x0A  status A  bit 7 UIP (read-only), bits 4-6 divider (010 = 32.768 kHz time base,
                    11x = divider chain in reset), bits 0-3 periodic rate (0 = off, 1-2 = 256
                    and 128 Hz, n >= 3: 65536 >> n Hz)
    0x0B  status B  bit 7 SET (stop updates; clears UIE), 6 PIE, 5 AIE, 4 UIE, 3 SQWE (no pin),
                    2 DM (1 = binary), 1 24/12 (1 = 24-hour), 0 DSE (ignored)
    0x0C  status C  bit 7 IRQF, 6 PF, 5 AF, 4 UF; reading clears it and lowers IRQ 8
    0x0D  status D  bit 7 VRT (battery good): always 0x80
    0x0E-0x7F CMOS RAM, with what a PC BIOS leaves there:
          0x0F shutdown status, 0x10 floppy types (none), 0x14 equipment (FPU, VGA),
          0x15/0x16 base memory KiB, 0x17/0x18 and 0x30/0x31 extended memory KiB above 1 MiB
          (capped at 0xFFFF), 0x2E/0x2F checksum of 0x10-0x2D, 0x32 century (live, encoded like
          the year), 0x34/0x35 memory above 16 MiB in 64 KiB units (capped at 0xFFFF)

Time is `start` plus virtual time (clock.now / clock.ips seconds), never the host's clock, so a
run is deterministic.  The update cycle is instantaneous at each virtual second boundary; UIP
reads 1 during the 244 us before it (the datasheet's warning window), so a guest that waits for
UIP to fall and then reads sees a stable time.  The alarm compares the time after each update
with the three alarm bytes, a byte with its top two bits set (0xC0-0xFF) matching anything.
Status C flags are set whether or not their interrupt is enabled; IRQ 8 rises when a flag and
its enable (PF/PIE, AF/AIE, UF/UIE) are both set and falls when status C is read.

Choices (emulation, not silicon):
- The time is kept as a date, not as register bytes: changing DM or 24/12 re-encodes what the
  time registers read instead of leaving stale bytes (a guest must rewrite the time after such a
  change on real hardware, so this only differs for guests that do not).  While SET is 1 (or the
  divider is stopped) the registers are plain bytes the guest writes; when updates resume they
  are decoded in the then-current format, out-of-range fields clamped (month 1-12, day to the
  month's length, hours 0-23, minutes/seconds 0-59), and time continues from there.  A write to
  a time register while updates run applies at once and keeps the second's phase.
- The day of week counts along with the date (an offset from the true weekday is kept, so a
  guest that writes a different weekday keeps its own convention).
- Only divider 010 runs the clock and the periodic interrupt; leaving divider reset (11x)
  schedules the first update half a second later, as the datasheet says.
- Port 0x70 is write-only on PCs and reads 0xFF.  The NMI-disable bit is kept (`nmi_disabled`)
  but nothing here raises an NMI.
- `reset()` is the chip's RESET pin (PIE, AIE, UIE, SQWE and status C cleared); time and CMOS
  RAM are battery-backed and survive it.
"""
from __future__ import annotations

import calendar
from datetime import datetime, timedelta

from emu.bus import ByteDevice, IrqLine
from emu.clock import Clock, Event

# Status B bits
B_SET, B_PIE, B_AIE, B_UIE, B_SQWE, B_DM, B_24H = 0x80, 0x40, 0x20, 0x10, 0x08, 0x04, 0x02
# Status C bits (each flag sits at the same bit as its enable in status B)
C_IRQF, C_PF, C_AF, C_UF = 0x80, 0x40, 0x20, 0x10
A_UIP = 0x80
UIP_NS = 244_000
CENTURY = 0x32
# Register indices of the time fields that freeze into RAM while updates are stopped.
SEC, SEC_ALARM, MIN, MIN_ALARM, HOUR, HOUR_ALARM, WDAY, MDAY, MONTH, YEAR = range(10)
TIME_REGS = (SEC, MIN, HOUR, WDAY, MDAY, MONTH, YEAR, CENTURY)
DAY = 86_400


def _weekday(dt: datetime) -> int:
    """Day of week as the RTC counts it: 1 = Sunday ... 7 = Saturday."""
    return dt.isoweekday() % 7 + 1


class Rtc(ByteDevice):
    """MC146818 RTC + CMOS at 0x70/0x71 raising `irq8`; see the module docstring."""

    name = "rtc"
    ports = ((0x70, 2),)

    def __init__(self, clock: Clock, irq8: IrqLine | None, start: datetime,
                 ram_size: int) -> None:
        self.clock = clock
        self.irq8 = irq8
        self._event: Event | None = None
        self._irq_level = False
        self._ram = bytearray(128)
        self._index = 0
        self.nmi_disabled = False
        # Power-on state as a PC BIOS leaves it: 32.768 kHz divider, 1024 Hz rate, BCD, 24-hour.
        self._a = 0x26
        self._b = B_24H
        self._flags = 0
        now = clock.now
        self._phase = now  # an instruction count at which a second boundary falls
        self._running = True
        self._base_dt = start.replace(tzinfo=None, microsecond=0)
        self._base_insns = now
        self._wday_offset = 0
        self._synced = now
        self._init_cmos(ram_size)
        self._update_irq(force=True)
        self._reschedule()

    def _init_cmos(self, ram_size: int) -> None:
        ram = self._ram
        ram[0x14] = 0x02  # equipment: FPU present, EGA/VGA display, no floppy drives
        base_kib = min(640, ram_size // 1024)
        ext_kib = min(0xFFFF, max(0, ram_size - 0x100000) // 1024)
        above16 = min(0xFFFF, max(0, ram_size - 0x1000000) // 0x10000)
        ram[0x15], ram[0x16] = base_kib & 0xFF, base_kib >> 8
        ram[0x17], ram[0x18] = ext_kib & 0xFF, ext_kib >> 8
        ram[0x30], ram[0x31] = ext_kib & 0xFF, ext_kib >> 8
        ram[0x34], ram[0x35] = above16 & 0xFF, above16 >> 8
        checksum = sum(ram[0x10:0x2E]) & 0xFFFF
        ram[0x2E], ram[0x2F] = checksum >> 8, checksum & 0xFF

    # -- observers ----------------------------------------------------------------------------
    def now(self) -> datetime:
        """The date and time the RTC holds at the current virtual time (while updates run)."""
        if not self._running:
            return self._decode_fields()[0]
        return self._dt_at(self.clock.now)

    @property
    def index(self) -> int:
        return self._index

    # -- Device ---------------------------------------------------------------------------
    def reset(self) -> None:
        """The RESET pin: interrupt enables, SQWE and the flags clear; time and RAM are kept."""
        self._sync()
        self._b &= ~(B_PIE | B_AIE | B_UIE | B_SQWE)
        self._flags = 0
        self._update_irq()
        self._reschedule()

    def read_byte(self, port: int) -> int:
        return self._read_data() if port == 0x71 else 0xFF

    def write_byte(self, port: int, value: int) -> None:
        if port == 0x70:
            self._index = value & 0x7F
            self.nmi_disabled = bool(value & 0x80)
        elif port == 0x71:
            self._write_data(value)

    def save_state(self) -> dict:
        self._sync()
        return {
            "ram": bytes(self._ram), "index": self._index, "nmi_disabled": self.nmi_disabled,
            "a": self._a, "b": self._b, "flags": self._flags, "phase": self._phase,
            "running": self._running, "base_dt": self._base_dt.isoformat(),
            "base_insns": self._base_insns, "wday_offset": self._wday_offset,
            "synced": self._synced,
        }

    def load_state(self, state: dict) -> None:
        self._ram = bytearray(state["ram"])
        self._index = state["index"]
        self.nmi_disabled = state["nmi_disabled"]
        self._a, self._b, self._flags = state["a"], state["b"], state["flags"]
        self._phase, self._running = state["phase"], state["running"]
        self._base_dt = datetime.fromisoformat(state["base_dt"])
        self._base_insns, self._wday_offset = state["base_insns"], state["wday_offset"]
        self._synced = state["synced"]
        self._update_irq(force=True)
        self._reschedule()

    # -- register access ------------------------------------------------------------------
    def _read_data(self) -> int:
        i = self._index
        if i == 0x0A:
            return self._a | (A_UIP if self._uip() else 0)
        if i == 0x0B:
            return self._b
        if i == 0x0C:
            self._sync()
            value = self._flags | (C_IRQF if self._irqf() else 0)
            self._flags = 0
            self._update_irq()
            self._reschedule()
            return value
        if i == 0x0D:
            return 0x80
        if i in TIME_REGS and self._running:
            return self._encode_now(i)
        return self._ram[i]

    def _write_data(self, value: int) -> None:
        i = self._index
        if i == 0x0A:
            self._sync()
            was_reset = self._a & 0x60 == 0x60
            self._a = value & 0x7F  # UIP is read-only
            if was_reset and (value >> 4) & 7 == 2:
                # Leaving divider reset: the first update comes half a second later.
                self._freeze()
                self._phase = self.clock.now + self.clock.ips // 2
            self._apply_run_state()
        elif i == 0x0B:
            self._sync()
            if value & B_SET:
                value &= ~B_UIE  # the datasheet: SET going to 1 clears UIE
            self._b = value
            self._apply_run_state()
        elif i in (0x0C, 0x0D):
            pass  # read-only
        elif i in TIME_REGS and self._running:
            # A write while updates run: apply it to the date now, keeping the second's phase.
            self._sync()
            self._freeze()
            self._ram[i] = value
            self._thaw()
            self._reschedule()
        else:
            self._ram[i] = value
            if i in (SEC_ALARM, MIN_ALARM, HOUR_ALARM):
                self._sync()
                self._reschedule()

    # -- time keeping -----------------------------------------------------------------------
    def _divider_runs(self) -> bool:
        return (self._a >> 4) & 7 == 2

    def _apply_run_state(self) -> None:
        should_run = self._divider_runs() and not self._b & B_SET
        if should_run and not self._running:
            self._thaw()
        elif self._running and not should_run:
            self._freeze()
        self._update_irq()
        self._reschedule()

    def _last_boundary(self, t: int) -> int:
        return t - (t - self._phase) % self.clock.ips

    def _dt_at(self, t: int) -> datetime:
        return self._base_dt + timedelta(seconds=(t - self._base_insns) // self.clock.ips)

    def _freeze(self) -> None:
        """Stop updates: the time registers become plain bytes holding the current time."""
        if not self._running:
            return
        for i in TIME_REGS:
            self._ram[i] = self._encode_now(i)
        self._running = False

    def _thaw(self) -> None:
        """Resume updates from what the time registers hold, at the current second phase."""
        dt, wday = self._decode_fields()
        self._base_dt = dt
        self._base_insns = self._last_boundary(self.clock.now)
        self._wday_offset = (wday - _weekday(dt)) % 7
        self._running = True

    def _bcd(self) -> bool:
        return not self._b & B_DM

    def _enc(self, v: int) -> int:
        return ((v // 10) << 4 | v % 10) if self._bcd() else v

    def _dec(self, b: int) -> int:
        return (b >> 4) * 10 + (b & 0x0F) if self._bcd() else b

    def _enc_hour(self, h: int) -> int:
        if self._b & B_24H:
            return self._enc(h)
        return self._enc(h % 12 or 12) | (0x80 if h >= 12 else 0)

    def _dec_hour(self, b: int) -> int:
        if self._b & B_24H:
            return self._dec(b)
        return self._dec(b & 0x7F) % 12 + (12 if b & 0x80 else 0)

    def _encode_now(self, i: int) -> int:
        dt = self._dt_at(self.clock.now)
        if i == SEC:
            return self._enc(dt.second)
        if i == MIN:
            return self._enc(dt.minute)
        if i == HOUR:
            return self._enc_hour(dt.hour)
        if i == WDAY:
            return self._enc((_weekday(dt) - 1 + self._wday_offset) % 7 + 1)
        if i == MDAY:
            return self._enc(dt.day)
        if i == MONTH:
            return self._enc(dt.month)
        if i == YEAR:
            return self._enc(dt.year % 100)
        return self._enc(dt.year // 100)  # CENTURY

    def _decode_fields(self) -> tuple[datetime, int]:
        """The frozen time registers as (date, weekday), out-of-range fields clamped."""
        r = self._ram

        def clamp(v: int, lo: int, hi: int) -> int:
            return min(max(v, lo), hi)

        year = clamp(self._dec(r[CENTURY]) * 100 + self._dec(r[YEAR]) % 100, 1, 9999)
        month = clamp(self._dec(r[MONTH]), 1, 12)
        day = clamp(self._dec(r[MDAY]), 1, calendar.monthrange(year, month)[1])
        dt = datetime(year, month, day, clamp(self._dec_hour(r[HOUR]), 0, 23),
                      clamp(self._dec(r[MIN]), 0, 59), clamp(self._dec(r[SEC]), 0, 59))
        return dt, clamp(self._dec(r[WDAY]), 1, 7)

    def _uip(self) -> bool:
        if not self._running:
            return False  # SET (or a stopped divider) clears UIP: no update is coming
        ips = self.clock.ips
        window = self.clock.insns_for_ns(UIP_NS)
        return (self.clock.now - self._phase) % ips >= ips - window

    # -- interrupt sources ----------------------------------------------------------------
    def _period_units(self) -> int:
        """Periodic interrupt period in 1/32768 s units (0 = off or divider stopped)."""
        rate = self._a & 0x0F
        if rate == 0 or not self._divider_runs():
            return 0
        return (128, 256)[rate - 1] if rate < 3 else 1 << (rate - 1)

    def _tick_index(self, t: int, units: int) -> int:
        """Index k of the last periodic tick at or before t; tick k falls at
        phase + k * ips * units // 32768 (exact over a second whatever the rate)."""
        return ((t - self._phase + 1) * 32768 - 1) // (self.clock.ips * units)

    def _tick_time(self, k: int, units: int) -> int:
        return self._phase + k * self.clock.ips * units // 32768

    def _next_alarm(self, t: int) -> int | None:
        """Instruction count of the first update after `t` whose new time matches the alarm."""
        if not self._running:
            return None
        want = []
        for reg, limit in ((HOUR_ALARM, 24), (MIN_ALARM, 60), (SEC_ALARM, 60)):
            b = self._ram[reg]
            if b & 0xC0 == 0xC0:
                want.append(range(limit))  # "don't care"
                continue
            v = self._dec_hour(b) if reg == HOUR_ALARM else self._dec(b)
            if not 0 <= v < limit:
                return None  # a value the time never takes: the alarm never fires
            want.append((v,))
        hours, minutes, seconds = want
        dt = self._dt_at(t)
        now_s = dt.hour * 3600 + dt.minute * 60 + dt.second
        first = None
        # The earliest second of day after now_s matching all three; candidates come in order,
        # and whole hours/minutes already past are skipped, so this is at most ~150 steps.
        for h in hours:
            if h * 3600 + 3599 <= now_s:
                continue
            for m in minutes:
                if h * 3600 + m * 60 + 59 <= now_s:
                    continue
                for s in seconds:
                    x = h * 3600 + m * 60 + s
                    if x > now_s:
                        first = x
                        break
                if first is not None:
                    break
            if first is not None:
                break
        if first is None:  # tomorrow's earliest match
            first = DAY + hours[0] * 3600 + minutes[0] * 60 + seconds[0]
        return self._last_boundary(t) + (first - now_s) * self.clock.ips

    def _sync(self) -> None:
        """Set the status C flags for every periodic tick, update and alarm match in
        (last sync, now]; the state they depend on has not changed in that interval."""
        t0, t1 = self._synced, self.clock.now
        if t1 <= t0:
            return
        units = self._period_units()
        if units and self._tick_index(t1, units) > self._tick_index(t0, units):
            self._flags |= C_PF
        if self._running:
            ips = self.clock.ips
            if (t1 - self._phase) // ips > (t0 - self._phase) // ips:
                self._flags |= C_UF
            alarm = self._next_alarm(t0)
            if alarm is not None and alarm <= t1:
                self._flags |= C_AF
        self._synced = t1

    def _irqf(self) -> bool:
        return bool(self._flags & self._b & (C_PF | C_AF | C_UF))

    def _update_irq(self, force: bool = False) -> None:
        level = self._irqf()
        if level != self._irq_level or force:
            self._irq_level = level
            if self.irq8 is not None:
                self.irq8.set(level)

    def _reschedule(self) -> None:
        """One event, at the next moment an enabled source whose flag is clear will set it.
        Sources whose flag is already set need no event: IRQ 8 stays high until status C is
        read, and reading it reschedules."""
        self.clock.cancel(self._event)
        self._event = None
        now = self.clock.now
        due: list[int] = []
        units = self._period_units()
        if self._b & B_PIE and not self._flags & C_PF and units:
            due.append(self._tick_time(self._tick_index(now, units) + 1, units))
        if self._running:
            if self._b & B_UIE and not self._flags & C_UF:
                due.append(self._last_boundary(now) + self.clock.ips)
            if self._b & B_AIE and not self._flags & C_AF:
                alarm = self._next_alarm(now)
                if alarm is not None:
                    due.append(alarm)
        if due:
            self._event = self.clock.schedule(min(due), self._on_event, "rtc")

    def _on_event(self) -> None:
        self._event = None
        self._sync()
        self._update_irq()
        self._reschedule()
