"""The IA-32 CPU: Unicorn 2.1.4 plus what it lacks for a full system (DESIGN D1, D3, D4, D5).

This is the only module that knows Unicorn's internals and quirks (research/unicorn.md):

- Unicorn never consults the guest IDT.  Every exception and `int n` reaches `_on_intr` (#UD
  reaches `_on_invalid`), and `deliver()` performs protected-mode delivery as Intel SDM vol. 3
  ch. 6 describes it: interrupt and trap gates, the gate-DPL check for software interrupts,
  the privilege switch through TSS ss0/esp0, error codes, #DF for a fault during delivery and
  shutdown (triple fault) for a fault while delivering #DF.
- Python cannot lower CPL through the API, and Unicorn never clears `env->old_exception`
  (upstream issue #1883), so delivery edits the live `CPUX86State` directly.  Its address is
  found at start-up and every field used is verified against the public API; any other engine
  version is refused (`EngineError`).
- I/O permission (IOPL, TSS I/O bitmap) is not checked by Unicorn; it is checked here.  Ring-3
  I/O instructions get a code hook when their block is first seen, so a denied access raises
  #GP before the instruction executes (SDM vol. 1 §19.5).
- RDTSC returns virtual time; CPUID describes a fixed CPU model.
- Time: a native block callback (emu/native/blockhook.c) counts retired instructions per block
  and stops the run when the budget is spent.  A block that ends early on a fault or a
  breakpoint is corrected here from its instruction boundaries (capstone).
- Quirks handled here and nowhere else: spurious internal #PF on cache invalidation (CR2 and
  `old_exception` are saved around every invalidation), stale translations after host writes to
  code (`code_written()` flushes), no exit address (exits are enabled with an empty set, so no
  guest address is ever treated as the end of a run).
"""
from __future__ import annotations

import ctypes
import os
import struct
import weakref
from dataclasses import dataclass
from typing import Callable, Optional

import capstone
import unicorn
from unicorn import x86_const as X

from .bus import ALL_ONES, MmioBus, PortBus
from .errors import EngineError
from .memory import (CR0_PG, CR0_WP, CR4_PSE, PTE_A, PTE_D, PTE_P, PTE_PS, PTE_W, BadPhysical,
                     PageFault, Ram, translate)

SUPPORTED_UNICORN = "2.1.4"
_one_u32 = struct.Struct("<I")
_two_u32 = struct.Struct("<II")

# Exception vectors (SDM vol. 3 table 6-1).
DE, DB, NMI, BP, OF, BR, UD, NM, DF, TS, NP, SS, GP, PF, MF, AC = (
    0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 16, 17)
WITH_ERROR_CODE = frozenset({DF, TS, NP, SS, GP, PF, AC})
CONTRIBUTORY = frozenset({DE, TS, NP, SS, GP})
VECTOR_NAMES = {0: "#DE", 1: "#DB", 2: "NMI", 3: "#BP", 4: "#OF", 5: "#BR", 6: "#UD", 7: "#NM",
                8: "#DF", 10: "#TS", 11: "#NP", 12: "#SS", 13: "#GP", 14: "#PF", 16: "#MF",
                17: "#AC", 18: "#MC", 19: "#XM"}

EFLAGS_TF, EFLAGS_IF, EFLAGS_NT, EFLAGS_RF, EFLAGS_VM = 0x100, 0x200, 0x4000, 0x10000, 0x20000
HF_CPL_MASK, HF_INHIBIT_IRQ = 0x3, 0x8

# ---------------------------------------------------------------------------------------
# Raw access to libunicorn: a private CDLL handle so argtypes set here never disturb the
# binding's own calls.
from unicorn.unicorn_py3.unicorn import uclib as _binding_lib  # noqa: E402

_lib = ctypes.CDLL(_binding_lib._name)
_lib.uc_reg_read.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
_lib.uc_reg_write.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
_lib.uc_emu_start.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64,
                              ctypes.c_uint64, ctypes.c_size_t]
_lib.uc_emu_stop.argtypes = [ctypes.c_void_p]
_lib.uc_context_size.argtypes = [ctypes.c_void_p]
_lib.uc_context_size.restype = ctypes.c_size_t
_lib.uc_strerror.restype = ctypes.c_char_p
_hook_add = _lib.uc_hook_add          # variadic: argtypes left unset on purpose
_hook_add.restype = ctypes.c_int

INTR_CB = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p)
INVALID_CB = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p, ctypes.c_void_p)
IN_CB = ctypes.CFUNCTYPE(ctypes.c_uint32, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                         ctypes.c_void_p)
OUT_CB = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint32,
                          ctypes.c_void_p)
INSN_CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
CODE_CB = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint32,
                           ctypes.c_void_p)

# Offsets into CPUX86State for Unicorn 2.1.4 built for x86_64 hosts (target_ulong = 8 bytes).
# They are verified against the public API at start-up (`_verify_env`).
OFF_REGS, OFF_EIP, OFF_EFLAGS, OFF_HFLAGS, OFF_SEGS, OFF_CR = 0, 128, 136, 176, 184, 424
# The software TLB's three CPUTLBDescFast {mask, table} sit just below env (env->neg.tlb.f),
# after the three CPUTLBDesc (696 bytes each, the victim TLB among them) and 8 bytes of padding.
OFF_TLB_FAST = -0x40
OFF_TLB_DESC = OFF_TLB_FAST - 8 - 3 * 696
TLB_DESC_SIZE = 696
SEG_ES, SEG_CS, SEG_SS, SEG_DS, SEG_FS, SEG_GS, SEG_LDT, SEG_TR, SEG_GDT, SEG_IDT = range(10)


class BlockState(ctypes.Structure):
    """Mirror of `struct bh_state` in emu/native/blockhook.c."""

    _fields_ = [
        ("total", ctypes.c_uint64), ("budget", ctypes.c_uint64), ("limit", ctypes.c_uint64),
        ("fast_bound", ctypes.c_uint64), ("last_va", ctypes.c_uint64),
        ("last_size", ctypes.c_uint32), ("last_icount", ctypes.c_uint32),
        ("irq_waiting", ctypes.c_uint32), ("stopped", ctypes.c_uint32),
        ("cr3", ctypes.c_void_p), ("eflags", ctypes.c_void_p), ("hflags", ctypes.c_void_p),
        ("emu_stop", ctypes.c_void_p),
        ("miss_va", ctypes.c_uint64), ("miss_pa", ctypes.c_uint64),
        ("miss_size", ctypes.c_uint32), ("watch_hit", ctypes.c_uint32),
        ("table", ctypes.c_void_p), ("mask", ctypes.c_uint64), ("used", ctypes.c_uint64),
        ("cut_icount", ctypes.c_uint32), ("miss_f1", ctypes.c_uint32),
        ("ram", ctypes.c_void_p), ("ram_size", ctypes.c_uint64),
        ("gen", ctypes.c_void_p), ("wstate", ctypes.c_void_p),
        ("a20_mask", ctypes.c_uint64), ("write_faults", ctypes.c_uint64),
        ("relearned", ctypes.c_uint64),
        ("last_f0", ctypes.c_uint32), ("last_f1", ctypes.c_uint32),
        ("once_va", ctypes.c_uint64), ("once_size", ctypes.c_uint32),
        ("once_icount", ctypes.c_uint32),
        ("tlb", ctypes.c_void_p), ("tlbd", ctypes.c_void_p), ("regs", ctypes.c_void_p),
        ("segs", ctypes.c_void_p),
        ("fastw", ctypes.c_uint32), ("fastw_flush", ctypes.c_uint32),
        ("fastw_clears", ctypes.c_uint64), ("fastw_cr3", ctypes.c_uint64),
        ("fastw_done", ctypes.c_uint64 * 4), ("fastw_esp0", ctypes.c_void_p),
        ("keep", ctypes.c_void_p), ("keep_code", ctypes.c_uint64 * 3), ("kept", ctypes.c_uint64),
        ("keep_off", ctypes.c_uint32), ("keep_pad", ctypes.c_uint32),
        ("vcache", ctypes.c_void_p), ("vc_epoch", ctypes.c_uint32), ("vc_off", ctypes.c_uint32),
        ("vc_hits", ctypes.c_uint64), ("keep_mark", ctypes.c_uint64 * 3),
        ("keep_vmark", ctypes.c_uint64 * 3), ("kept_aside", ctypes.c_uint64),
        ("keep_scans", ctypes.c_uint64), ("victim_swaps", ctypes.c_uint64),
        ("bps", ctypes.c_void_p), ("n_bps", ctypes.c_uint32), ("bp_off", ctypes.c_uint32),
        ("bp_skip", ctypes.c_uint64), ("bp_at", ctypes.c_uint64),
    ]


class DeliveryRecord(ctypes.Structure):
    _fields_ = [("seq", ctypes.c_uint64), ("vector", ctypes.c_uint32),
                ("eip", ctypes.c_uint32), ("cpl", ctypes.c_uint32), ("pad", ctypes.c_uint32)]


class DeliveryState(ctypes.Structure):
    """Mirror of `struct dv_state` in emu/native/blockhook.c (native `int n` delivery)."""

    _fields_ = [
        ("reg_read", ctypes.c_void_p), ("reg_write", ctypes.c_void_p), ("slow", ctypes.c_void_p),
        ("ram", ctypes.c_void_p), ("ram_size", ctypes.c_uint64),
        ("regs", ctypes.c_void_p), ("eip", ctypes.c_void_p), ("eflags", ctypes.c_void_p),
        ("hflags", ctypes.c_void_p), ("old_exception", ctypes.c_void_p),
        ("is_int", ctypes.c_void_p), ("cr", ctypes.c_void_p), ("segs", ctypes.c_void_p),
        ("enabled", ctypes.c_uint32), ("reg_eflags", ctypes.c_int32),
        ("reg_ss", ctypes.c_int32), ("reg_cs", ctypes.c_int32), ("pad", ctypes.c_uint32),
        ("seq", ctypes.c_uint64), ("fast", ctypes.c_uint64),
        ("ring_pos", ctypes.c_uint32), ("pad2", ctypes.c_uint32),
        ("ring", DeliveryRecord * 16),
    ]


STOP_NONE, STOP_BUDGET, STOP_MISS, STOP_WATCH, STOP_LIMIT, STOP_BREAK = 0, 1, 3, 4, 5, 6
NO_PA = (1 << 64) - 1                    # a block outside RAM (or under PAE paging)
NO_VA = (1 << 64) - 1                    # BlockState.last_va when no block ran last
NO_LIMIT = (1 << 64) - 1


def _find_no_exit_request(uch: int) -> Optional[ctypes.c_uint8]:
    """Unicorn's `uc->no_exit_request` (include/uc_priv.h, 2.1.4), found by the fields before
    it, whose values are known: target_page_size 4096, target_page_align 4095, the host page
    sizes 4096 and 4096, the icache line size, context_content, cpu_context_size (what
    uc_context_size reports, less its 40-byte header), next_pc, then the bools hook_insert 0,
    first_tb, no_exit_request 0, init_done 1.  None when the layout
    is not that one: the checks then stay on (slower, never wrong)."""
    raw = ctypes.string_at(uch, 4096)
    head = struct.pack("<IIQQ", 4096, 4095, 4096, 4096)
    for at in range(0, len(raw) - 56, 8):
        if raw[at:at + 24] != head:
            continue
        line, content, ctx_size = struct.unpack_from("<iii", raw, at + 24)
        if line not in (32, 64, 128) or ctx_size + 40 != _lib.uc_context_size(uch):
            continue
        hook_insert, _first_tb, flag, init_done = raw[at + 48:at + 52]
        if (hook_insert, flag, init_done) == (0, 0, 1):
            return ctypes.c_uint8.from_address(uch + at + 50)
    return None


def _load_native():
    try:
        from . import _blockhook
    except ImportError as e:  # pragma: no cover - install problem
        raise EngineError("the native block callback is not built: reinstall l4emu "
                          "(pip install -e .) with a C compiler available") from e
    lib = ctypes.CDLL(_blockhook.__file__)
    lib.l4emu_block_state_size.restype = ctypes.c_size_t
    if lib.l4emu_block_state_size() != ctypes.sizeof(BlockState):
        raise EngineError("emu/_blockhook was built from a different blockhook.c: reinstall")
    lib.l4emu_block_reset.argtypes = [ctypes.POINTER(BlockState), ctypes.c_uint]
    lib.l4emu_block_insert.argtypes = [ctypes.POINTER(BlockState), ctypes.c_uint64,
                                       ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint32]
    lib.l4emu_block_free.argtypes = [ctypes.POINTER(BlockState)]
    lib.l4emu_wp_forget.argtypes = [ctypes.POINTER(BlockState)]
    lib.l4emu_wp_attach.argtypes = [ctypes.POINTER(BlockState), ctypes.c_void_p,
                                    ctypes.c_uint64]
    lib.l4emu_wp_ensure.argtypes = []
    lib.l4emu_dv_state_size.restype = ctypes.c_size_t
    if lib.l4emu_dv_state_size() != ctypes.sizeof(DeliveryState):
        raise EngineError("emu/_blockhook was built from a different blockhook.c: reinstall")
    return lib


class _SegView(ctypes.Structure):
    """One SegmentCache of the live CPU state (selector, base, limit, flags)."""

    _fields_ = [("selector", ctypes.c_uint32), ("pad", ctypes.c_uint32),
                ("base", ctypes.c_uint64), ("limit", ctypes.c_uint32),
                ("flags", ctypes.c_uint32)]


@dataclass
class SegmentCache:
    selector: int
    base: int
    limit: int
    flags: int

    @property
    def dpl(self) -> int:
        return (self.flags >> 13) & 3


@dataclass(slots=True)
class TrapRecord:
    """One delivered event, for the diagnostic report and the event stream."""

    vector: int
    error_code: Optional[int]
    eip: int
    cpl: int
    kind: str          # "fault", "int", "irq"
    cr2: Optional[int] = None
    seq: int = 0       # order among all delivered events (Python's and the native path's)

    def describe(self) -> str:
        name = VECTOR_NAMES.get(self.vector, f"vector {self.vector:#x}")
        s = f"{name} ({self.kind}) at eip={self.eip:#010x} cpl={self.cpl}"
        if self.error_code is not None:
            s += f" error={self.error_code:#x}"
        if self.cr2 is not None:
            s += f" cr2={self.cr2:#010x}"
        return s


class Shutdown(Exception):
    """A triple fault: the processor enters shutdown (SDM vol. 3 §6.15, interrupt 8)."""


class _DeliveryFault(Exception):
    """An exception raised while delivering another one."""

    def __init__(self, vector: int, error_code: int = 0, cr2: Optional[int] = None) -> None:
        super().__init__(f"{VECTOR_NAMES.get(vector, vector)} during delivery")
        self.vector = vector
        self.error_code = error_code
        self.cr2 = cr2


class Env:
    """The live CPUX86State fields the machine reads and patches.

    Scalars are properties over ctypes views (assigning to them writes the engine's state);
    `regs` (EAX, ECX, EDX, EBX, ESP, EBP, ESI, EDI) and `cr` (CR0..CR4) are arrays.
    """

    def __init__(self, addr: int, off_error_code: int, off_old_exception: int) -> None:
        self.addr = addr
        u64, u32, i32 = ctypes.c_uint64, ctypes.c_uint32, ctypes.c_int32
        self.regs = (u64 * 8).from_address(addr + OFF_REGS)
        self.cr = (u64 * 5).from_address(addr + OFF_CR)
        self._eip = u64.from_address(addr + OFF_EIP)
        self._eflags = u64.from_address(addr + OFF_EFLAGS)
        self._hflags = u32.from_address(addr + OFF_HFLAGS)
        self._error_code = i32.from_address(addr + off_error_code)
        self._is_int = i32.from_address(addr + off_error_code + 4)
        self._old_exception = i32.from_address(addr + off_old_exception)
        self.segs = [_SegView.from_address(addr + OFF_SEGS + 24 * i) for i in range(10)]

    eip = property(lambda self: self._eip.value,
                   lambda self, v: setattr(self._eip, "value", v & 0xFFFFFFFF))
    #: EFLAGS as the engine keeps it: IF, TF, IOPL, NT, RF are here; arithmetic flags are not.
    eflags_sys = property(lambda self: self._eflags.value,
                          lambda self, v: setattr(self._eflags, "value", v))
    hflags = property(lambda self: self._hflags.value,
                      lambda self, v: setattr(self._hflags, "value", v))
    error_code = property(lambda self: self._error_code.value)
    exception_is_int = property(lambda self: self._is_int.value)
    old_exception = property(lambda self: self._old_exception.value,
                             lambda self, v: setattr(self._old_exception, "value", v))

    def seg(self, i: int) -> SegmentCache:
        v = self.segs[i]
        return SegmentCache(v.selector, v.base & 0xFFFFFFFF, v.limit, v.flags)

    @property
    def cpl(self) -> int:
        return self.hflags & HF_CPL_MASK


def _readable_ranges() -> list[tuple[int, int]]:
    out = []
    with open("/proc/self/maps") as f:
        for line in f:
            addrs, perms = line.split()[:2]
            if perms.startswith("rw"):
                lo, hi = (int(x, 16) for x in addrs.split("-"))
                out.append((lo, hi))
    return out


def _env_candidates(uc: unicorn.Uc, handle: int):
    """Addresses that may be the live CPUX86State: memory the engine structure's pointers lead
    to that holds the register values just written (fresh random values, so that the state of
    an earlier engine left in memory does not match).  The caller proves the right one."""
    marks = [int.from_bytes(os.urandom(4), "little") | 1 for _ in range(8)]
    for i, r in enumerate((X.UC_X86_REG_EAX, X.UC_X86_REG_ECX, X.UC_X86_REG_EDX,
                           X.UC_X86_REG_EBX, X.UC_X86_REG_ESP, X.UC_X86_REG_EBP,
                           X.UC_X86_REG_ESI, X.UC_X86_REG_EDI)):
        uc.reg_write(r, marks[i])
    pattern = struct.pack("<8Q", *marks)
    ranges = _readable_ranges()

    def region(p: int) -> Optional[tuple[int, int]]:
        for lo, hi in ranges:
            if lo <= p < hi:
                return lo, hi
        return None

    own = region(handle)
    if own is None:
        return
    head = ctypes.string_at(handle, min(0x4000, own[1] - handle))
    seen = set()
    for off in range(0, len(head) - 7, 8):
        p = struct.unpack_from("<Q", head, off)[0]
        if p in seen or p < 0x10000:
            continue
        seen.add(p)
        r = region(p)
        if r is None:
            continue
        window = ctypes.string_at(p, min(0x40000, r[1] - p))
        idx = window.find(pattern)
        while idx >= 0:
            if idx % 8 == 0:
                yield p + idx
            idx = window.find(pattern, idx + 1)


@dataclass
class CpuModel:
    """What CPUID reports (a fixed P6-family model, so guests see the same CPU everywhere)."""

    vendor: bytes = b"GenuineIntel"
    brand: bytes = b"l4emu virtual IA-32 processor"
    signature: int = 0x000006F6          # family 6, model 15, stepping 6
    # FPU DE PSE TSC MSR CX8 APIC PGE CMOV MMX FXSR SSE SSE2 (no SEP: sysenter is not native
    # in Unicorn; no PAE: two-level paging only, DESIGN D1)
    features_edx: int = (1 << 0) | (1 << 2) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 8) | \
        (1 << 9) | (1 << 13) | (1 << 15) | (1 << 23) | (1 << 24) | (1 << 25) | (1 << 26)
    features_ecx: int = 0

    def leaf(self, eax: int, ecx: int) -> tuple[int, int, int, int]:
        if eax == 0:
            b, d, c = struct.unpack("<III", self.vendor)
            return 1, b, c, d
        if eax == 1:
            ebx = (0 << 24) | (1 << 16) | (8 << 8)     # APIC id 0, 1 logical CPU, 64-byte lines
            return self.signature, ebx, self.features_ecx, self.features_edx
        if eax == 0x80000000:
            return 0x80000004, 0, 0, 0
        if 0x80000002 <= eax <= 0x80000004:
            chunk = self.brand.ljust(48, b"\0")[(eax - 0x80000002) * 16:][:16]
            return struct.unpack("<IIII", chunk)
        return 0, 0, 0, 0


@dataclass
class IoDenied:
    """A denied port access seen by the I/O hook outside a precise code hook (fallback path)."""

    eip: int


@dataclass
class CpuStats:
    py_traps: int = 0          # events delivered by Python
    io_denied: int = 0
    block_misses: int = 0
    io_hooks: int = 0
    native: Optional["DeliveryState"] = None

    @property
    def traps(self) -> int:
        """Every event delivered, by Python or by the native software-interrupt path."""
        return self.py_traps + (self.native.fast if self.native is not None else 0)


class Cpu:
    """One IA-32 processor over `ram`, with ports and MMIO served by the given buses."""

    def __init__(self, ram: Ram, ports: PortBus, mmio: MmioBus,
                 tsc: Callable[[int], int], model: Optional[CpuModel] = None) -> None:
        if unicorn.__version__ != SUPPORTED_UNICORN:
            raise EngineError(f"l4emu needs unicorn {SUPPORTED_UNICORN} (its trap delivery "
                              f"relies on that version's internals); found {unicorn.__version__}")
        self.ram = ram
        self.ports = ports
        self.mmio = mmio
        self.tsc = tsc
        self.model = model or CpuModel()
        self.stats = CpuStats()
        self.uc = uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_32)
        self.h = ctypes.c_void_p(uc._uch.value if hasattr(uc._uch, "value") else uc._uch)
        uc.mem_map_ptr(0, ram.size, unicorn.UC_PROT_ALL,
                       ctypes.addressof(ctypes.c_char.from_buffer(ram.buf)))
        # No address ends a run: exits are enabled with an empty set.
        uc.ctl_exits_enabled(True)
        self._verify_env()
        self._v32 = ctypes.c_uint32()
        self._v16 = ctypes.c_uint16()
        self._v32_ref = ctypes.byref(self._v32)
        self._v16_ref = ctypes.byref(self._v16)
        self._dis = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_32)
        self._boundaries: dict[tuple[int, int, int], list[int]] = {}
        self._io_hooked: set[int] = set()
        self._traps: list[TrapRecord] = []         # Python's last few (16 to 64)
        self._on_trap: Optional[Callable[[TrapRecord], None]] = None
        self._shutdown: Optional[str] = None       # set on a triple fault
        self.fatal: Optional[BaseException] = None  # a host bug caught inside a hook
        self._pending_io_fault: Optional[IoDenied] = None
        self.stop_requested = False
        #: Set when the machine has powered off mid-block (the exit device): the rest of the
        #: block still runs in the engine, but its port accesses no longer reach devices.
        self._io_frozen = False
        #: Called after every port or MMIO write by the guest (the machine checks whether an
        #: interrupt became deliverable).
        self.after_device_write: Optional[Callable[[], None]] = None
        #: Debugger hook (trace io): called after every guest port or MMIO access with
        #: (kind, address, size, value), kind "in", "out", "mmio-r" or "mmio-w".
        self.on_io: Optional[Callable[[str, int, int, int], None]] = None
        self._watch_hook: Optional[int] = None
        self.a20 = True
        self._bps = None                            # the native breakpoint array (kept alive)
        self._exit_flag = _find_no_exit_request(self.h.value)
        self._exit_check_reasons: set[str] = set()
        if self._exit_flag is not None:
            self._exit_flag.value = 1               # no hook needs them yet
        self._install_block_hook()
        self._install_hooks()
        for base, size, dev in mmio.regions:
            self.map_mmio(base, size)

    # -- engine verification ----------------------------------------------------------------
    def _verify_env(self) -> None:
        for addr in _env_candidates(self.uc, self.h.value):
            env = self._check_env(addr)
            if env is not None and self._check_tlb(env):
                self.env = env
                return
        raise EngineError("Unicorn CPU state layout not recognised: cannot locate and verify "
                          "the live CPU state (is this really unicorn 2.1.4 on x86_64 Linux?)")

    def _check_env(self, addr: int) -> Optional[Env]:
        """Prove `addr` is the live state: registers written through the API appear there,
        and a write there is what the API reads back."""
        uc = self.uc
        size = _lib.uc_context_size(self.h) - 40
        raw = ctypes.string_at(addr, size)
        d = raw.find(struct.pack("<QQ", 0xFFFF0FF0, 0x400)) - 48   # env->dr[0]: dr6/dr7 reset
        if d <= 0:
            return None
        env = Env(addr, d - 16, d + 96)
        checks = [
            (X.UC_X86_REG_EIP, 0x00123456, lambda: env.eip),
            (X.UC_X86_REG_CR3, 0x00345000, lambda: env.cr[3]),
            (X.UC_X86_REG_CR0, 0x60000011, lambda: env.cr[0]),
            (X.UC_X86_REG_ESP, 0x00777770, lambda: env.regs[4]),
        ]
        for reg, val, read in checks:
            uc.reg_write(reg, val)
            if read() != val:
                return None
        env.regs[3] = 0x13572468
        if uc.reg_read(X.UC_X86_REG_EBX) != 0x13572468:
            return None
        if env.old_exception != -1 or env.cpl != 0 or env.seg(SEG_CS).selector != 0:
            return None
        uc.reg_write(X.UC_X86_REG_CR3, 0)
        uc.reg_write(X.UC_X86_REG_CR0, 0x11)
        for r in (X.UC_X86_REG_EAX, X.UC_X86_REG_EBX, X.UC_X86_REG_ECX, X.UC_X86_REG_EDX,
                  X.UC_X86_REG_ESI, X.UC_X86_REG_EDI, X.UC_X86_REG_EBP, X.UC_X86_REG_ESP):
            uc.reg_write(r, 0)
        return env

    @staticmethod
    def _check_tlb(env: Env) -> bool:
        """The software TLB below env, as blockhook.c reads it: for each of the three MMU
        indexes a mask (entries - 1) << 6 and a table whose entries, on a new engine, are all
        invalid (-1); before them the CPUTLBDesc with no large page, an empty victim TLB, no
        entry in use and an iotlb array."""
        ones = (1 << 64) - 1
        pairs = (ctypes.c_uint64 * 6).from_address(env.addr + OFF_TLB_FAST)
        for k in range(3):
            mask, table = pairs[2 * k], pairs[2 * k + 1]
            n = (mask >> 6) + 1
            if mask & 0x3F or n & (n - 1) or not 64 <= n <= 1 << 20 or table & 0xF or not table:
                return False
            first = (ctypes.c_uint64 * 3).from_address(table)
            if list(first) != [ones] * 3:
                return False
            d = env.addr + OFF_TLB_DESC + k * TLB_DESC_SIZE
            head = (ctypes.c_uint64 * 6).from_address(d)
            victims = (ctypes.c_uint64 * (8 * 8)).from_address(d + 48)
            iotlb = ctypes.c_uint64.from_address(d + TLB_DESC_SIZE - 8).value
            if (head[0], head[1], head[4], head[5]) != (ones, ones, 0, 0) or not iotlb \
                    or any(victims[8 * v + j] != ones for v in range(8) for j in range(3)):
                return False
        return True

    # -- hooks --------------------------------------------------------------------------------
    def _install_block_hook(self) -> None:
        self._native = lib = _load_native()
        self.bh = st = BlockState()
        self._bh_ptr = ctypes.pointer(st)
        if lib.l4emu_block_reset(self._bh_ptr, 12):
            raise MemoryError("block table")
        # The frames that hold counted code are watched for writes (blockhook.c); the state
        # must be released even when nobody calls close().
        self._finalizer = weakref.finalize(self, lib.l4emu_block_free, self._bh_ptr)
        err = lib.l4emu_wp_attach(self._bh_ptr, ctypes.addressof(ctypes.c_char.from_buffer(
            self.ram.buf)), self.ram.size)
        if err == -2:
            raise EngineError("too many machines alive in this process (256): close some")
        if err:
            raise EngineError("cannot watch guest RAM for writes to code (4 KiB host pages "
                              "and a SIGSEGV handler are needed)")
        st.budget = 0
        st.limit = NO_LIMIT
        st.cr3 = self.env.addr + OFF_CR + 3 * 8
        st.eflags = self.env.addr + OFF_EFLAGS
        st.hflags = self.env.addr + OFF_HFLAGS
        st.emu_stop = ctypes.cast(_lib.uc_emu_stop, ctypes.c_void_p).value
        st.tlb = self.env.addr + OFF_TLB_FAST
        st.tlbd = self.env.addr + OFF_TLB_DESC
        st.regs = self.env.addr + OFF_REGS
        st.segs = self.env.addr + OFF_SEGS
        st.fastw = 1
        st.fastw_cr3 = NO_VA
        st.bp_skip = NO_VA
        hh = ctypes.c_size_t()
        err = _hook_add(self.h, ctypes.byref(hh), unicorn.UC_HOOK_BLOCK,
                        ctypes.cast(lib.l4emu_block_cb, ctypes.c_void_p),
                        ctypes.cast(self._bh_ptr, ctypes.c_void_p),
                        ctypes.c_uint64(1), ctypes.c_uint64(0))
        if err:
            raise EngineError(f"cannot add the block hook: {_lib.uc_strerror(err).decode()}")

    def _add_hook(self, kind: int, cb, *extra, begin: int = 1, end: int = 0) -> int:
        hh = ctypes.c_size_t()
        err = _hook_add(self.h, ctypes.byref(hh), kind, ctypes.cast(cb, ctypes.c_void_p), None,
                        ctypes.c_uint64(begin), ctypes.c_uint64(end), *extra)
        if err:
            raise EngineError(f"cannot add hook {kind}: {_lib.uc_strerror(err).decode()}")
        return hh.value

    def _install_hooks(self) -> None:
        # Keep references: ctypes callbacks must outlive the engine's use of them.
        self._cbs = [INTR_CB(self._on_intr), INVALID_CB(self._on_invalid), IN_CB(self._on_in),
                     OUT_CB(self._on_out), INSN_CB(self._on_rdtsc), INSN_CB(self._on_cpuid)]
        intr, inval, cin, cout, rdtsc, cpuid = self._cbs
        # `int n` is delivered natively when it can be (emu/native/blockhook.c); everything
        # else, and every check that fails there, comes to `_on_intr`.
        self.dv = dv = DeliveryState()
        env = self.env
        dv.reg_read = ctypes.cast(_lib.uc_reg_read, ctypes.c_void_p).value
        dv.reg_write = ctypes.cast(_lib.uc_reg_write, ctypes.c_void_p).value
        dv.slow = ctypes.cast(intr, ctypes.c_void_p).value
        dv.ram = ctypes.addressof(ctypes.c_char.from_buffer(self.ram.buf))
        dv.ram_size = self.ram.size
        dv.regs = env.addr + OFF_REGS
        dv.eip = env.addr + OFF_EIP
        dv.eflags = env.addr + OFF_EFLAGS
        dv.hflags = env.addr + OFF_HFLAGS
        dv.old_exception = ctypes.addressof(env._old_exception)
        dv.is_int = ctypes.addressof(env._is_int)
        dv.cr = env.addr + OFF_CR
        dv.segs = env.addr + OFF_SEGS
        dv.reg_eflags, dv.reg_ss, dv.reg_cs = (X.UC_X86_REG_EFLAGS, X.UC_X86_REG_SS,
                                               X.UC_X86_REG_CS)
        dv.enabled = 1
        self._dv_ptr = ctypes.pointer(dv)
        self.stats.native = dv
        hh = ctypes.c_size_t()
        err = _hook_add(self.h, ctypes.byref(hh), unicorn.UC_HOOK_INTR,
                        ctypes.cast(self._native.l4emu_intr_cb, ctypes.c_void_p),
                        ctypes.cast(self._dv_ptr, ctypes.c_void_p),
                        ctypes.c_uint64(1), ctypes.c_uint64(0))
        if err:
            raise EngineError(f"cannot add the interrupt hook: {_lib.uc_strerror(err).decode()}")
        self._add_hook(unicorn.UC_HOOK_INSN_INVALID, inval)
        self._add_hook(unicorn.UC_HOOK_INSN, cin, ctypes.c_int(X.UC_X86_INS_IN))
        self._add_hook(unicorn.UC_HOOK_INSN, cout, ctypes.c_int(X.UC_X86_INS_OUT))
        self._add_hook(unicorn.UC_HOOK_INSN, rdtsc, ctypes.c_int(X.UC_X86_INS_RDTSC))
        self._add_hook(unicorn.UC_HOOK_INSN, cpuid, ctypes.c_int(X.UC_X86_INS_CPUID))
        self._io_code_cb = CODE_CB(self._on_io_insn)

    # -- state that decides whether `int n` may be delivered natively -----------------------
    def _sync_native(self) -> None:
        dv = getattr(self, "dv", None)
        if dv is not None:
            dv.enabled = int(self._on_trap is None and self._shutdown is None and
                             self._pending_io_fault is None and not self._io_frozen)

    def _state_property(name: str):          # noqa: N805 - a property factory
        def get(self):
            return getattr(self, name)

        def put(self, value):
            setattr(self, name, value)
            self._sync_native()
        return property(get, put)

    #: Called with each delivered event; while set, every event goes through Python.
    on_trap = _state_property("_on_trap")
    shutdown = _state_property("_shutdown")
    pending_io_fault = _state_property("_pending_io_fault")
    io_frozen = _state_property("_io_frozen")
    del _state_property

    @property
    def traps(self) -> list[TrapRecord]:
        """The last delivered events, oldest first: Python's records and the native path's."""
        dv = self.dv
        native = [TrapRecord(r.vector, None, r.eip, r.cpl, "int", None, r.seq)
                  for r in dv.ring if r.seq]
        merged = sorted(self._traps[-16:] + native, key=lambda t: t.seq)
        return merged[-16:]

    # -- the A20 gate ---------------------------------------------------------------------------
    def set_a20(self, enabled: bool) -> None:
        """With the gate closed, physical address bit 20 reads as 0 (IBM PC AT): every odd
        megabyte of RAM is remapped onto the even one below it; opening the gate restores it.
        Host-side physical reads (`ram`) always see the real memory."""
        if enabled == self.a20:
            return
        self.a20 = enabled
        self.bh.a20_mask = (1 << 64) - 1 if enabled else ~(1 << 20) & ((1 << 64) - 1)
        base = ctypes.addressof(ctypes.c_char.from_buffer(self.ram.buf))
        with self._guard_spurious():
            for start in range(1 << 20, self.ram.size, 2 << 20):
                length = min(1 << 20, self.ram.size - start)
                self.uc.mem_unmap(start, length)
                src = start if enabled else start - (1 << 20)
                self.uc.mem_map_ptr(start, length, unicorn.UC_PROT_ALL, base + src)
        self.flush_tlb()
        self.code_written()

    # -- breakpoints and Unicorn's exit checks ----------------------------------------------
    def set_breakpoints(self, addrs) -> None:
        """The addresses where a run stops, before the instruction (the native callback checks
        each block it is about to run: blockhook.c, STOP_BREAK)."""
        st = self.bh
        st.n_bps = 0
        found = sorted({a & 0xFFFFFFFF for a in addrs})
        self._bps = (ctypes.c_uint32 * len(found))(*found) if found else None
        st.bps = ctypes.addressof(self._bps) if found else None
        st.n_bps = len(found)
        self.forget_last_block()

    def start_at_breakpoint(self, yes: bool) -> None:
        """Whether the next run starts at a breakpoint, at a block boundary: then the block
        there runs (once: the callback forgets it at the first block it checks)."""
        self.bh.bp_skip = self.env.eip & 0xFFFFFFFF if yes else NO_VA

    @property
    def exit_checks(self) -> bool:
        """Whether Unicorn checks for a stop request after every guest memory access and after
        every code hook (tcg-op.c check_exit_request), in blocks translated from now on.  A
        stop from a block hook takes effect before its block either way (the check at every
        block's start stays); the checks are only needed while a code hook or a memory hook
        must stop the run within a block: Unicorn's instruction counter (single steps),
        watchpoints, the I/O permission hooks.  Without them a guest instruction that
        touches memory costs the host a helper call less (docs/benchmarking.md)."""
        return self._exit_flag is None or self._exit_flag.value == 0

    @property
    def lean_blocks(self) -> bool:
        """Whether blocks are translated without the exit checks while nothing needs them
        (on by default; off for a comparison: benchmarks/switch_ab.py --exit-checks)."""
        return "host" not in self._exit_check_reasons

    @lean_blocks.setter
    def lean_blocks(self, on: bool) -> None:
        self.need_exit_checks("host", not on)
        self.code_written()

    def need_exit_checks(self, reason: str, needed: bool) -> None:
        """Turn the checks on while any `reason` needs them: when they come on, every
        translation is dropped so that no block without them can run; when the last reason
        goes, blocks translated meanwhile keep theirs (harmless) until they are dropped."""
        before = bool(self._exit_check_reasons)
        if needed:
            self._exit_check_reasons.add(reason)
        else:
            self._exit_check_reasons.discard(reason)
        after = bool(self._exit_check_reasons)
        if self._exit_flag is None or before == after:
            return
        self._exit_flag.value = 0 if after else 1
        if after:
            self.code_written()

    # -- watchpoints ------------------------------------------------------------------------
    def watch_code_hook(self, enable: bool) -> None:
        """While watchpoints exist, a native code hook over all code stops the run right after
        the instruction whose access hit one (research/unicorn.md: a code hook runs before its
        instruction, and a stop from it takes effect before that instruction)."""
        if enable and self._watch_hook is None:
            self.need_exit_checks("watch", True)
            hh = ctypes.c_size_t()
            err = _hook_add(self.h, ctypes.byref(hh), unicorn.UC_HOOK_CODE,
                            ctypes.cast(self._native.l4emu_code_cb, ctypes.c_void_p),
                            ctypes.cast(self._bh_ptr, ctypes.c_void_p),
                            ctypes.c_uint64(1), ctypes.c_uint64(0))
            if err:
                raise EngineError(f"cannot add the watch hook: {_lib.uc_strerror(err).decode()}")
            self._watch_hook = hh.value
            self.code_written()
        elif not enable and self._watch_hook is not None:
            with self._guard_spurious():
                _lib.uc_hook_del(self.h, ctypes.c_size_t(self._watch_hook))
            self._watch_hook = None
            self.code_written()
            self.need_exit_checks("watch", False)

    def map_mmio(self, base: int, size: int) -> None:
        bus = self.mmio

        def rd(uc, offset, sz, user, base=base):
            try:
                dev = bus.find(base + offset)
                v = dev.mmio_read(base + offset, sz) if dev else ALL_ONES.get(sz, 0)
                if self.on_io is not None:
                    self.on_io("mmio-r", base + offset, sz, v)
                return v
            except BaseException as e:
                self._host_error(e)
                return 0

        def wr(uc, offset, sz, value, user, base=base):
            try:
                dev = bus.find(base + offset)
                if dev:
                    dev.mmio_write(base + offset, sz, value)
                if self.on_io is not None:
                    self.on_io("mmio-w", base + offset, sz, value)
                if self.after_device_write is not None:
                    self.after_device_write()
            except BaseException as e:
                self._host_error(e)

        self.uc.mmio_map(base, size, rd, None, wr, None)

    # -- registers ------------------------------------------------------------------------------
    def reg(self, regid: int) -> int:
        _lib.uc_reg_read(self.h, regid, ctypes.byref(self._v32))
        return self._v32.value

    def set_reg(self, regid: int, value: int) -> None:
        if regid in (X.UC_X86_REG_CS, X.UC_X86_REG_SS, X.UC_X86_REG_DS, X.UC_X86_REG_ES,
                     X.UC_X86_REG_FS, X.UC_X86_REG_GS):
            self._v16.value = value
            err = _lib.uc_reg_write(self.h, regid, ctypes.byref(self._v16))
        else:
            self._v32.value = value & 0xFFFFFFFF
            err = _lib.uc_reg_write(self.h, regid, ctypes.byref(self._v32))
        if err:
            raise ValueError(f"cannot write register {regid}: {_lib.uc_strerror(err).decode()}")
        self.forget_last_block()        # the native counter's "same block again" shortcut

    @property
    def eip(self) -> int:
        return self.env.eip & 0xFFFFFFFF

    @property
    def cpl(self) -> int:
        return self.env.cpl

    @property
    def eflags(self) -> int:
        return self.reg(X.UC_X86_REG_EFLAGS)

    @property
    def interrupts_enabled(self) -> bool:
        return bool(self.env.eflags_sys & EFLAGS_IF) and not (
            self.env.hflags & HF_INHIBIT_IRQ)

    def registers(self) -> dict[str, int]:
        names = ["eax", "ebx", "ecx", "edx", "esi", "edi", "ebp", "esp", "eip", "eflags",
                 "cs", "ss", "ds", "es", "fs", "gs", "cr0", "cr2", "cr3", "cr4"]
        return {n: self.reg(getattr(X, "UC_X86_REG_" + n.upper())) for n in names}

    def mmu_state(self) -> tuple[int, int, int]:
        cr = self.env.cr
        return cr[0], cr[3], cr[4]

    # -- memory for tools -----------------------------------------------------------------------
    def translate(self, va: int, *, write: bool = False, user: bool = False,
                  set_ad: bool = False) -> int:
        cr0, cr3, cr4 = self.mmu_state()
        return translate(self.ram, cr0, cr3, cr4, va, write=write, user=user, set_ad=set_ad)

    def read_virt(self, va: int, n: int) -> bytes:
        out = bytearray()
        while n > 0:
            chunk = min(n, 0x1000 - (va & 0xFFF))
            out += self.ram.read(self.translate(va), chunk)
            va, n = va + chunk, n - chunk
        return bytes(out)

    def code_written(self) -> None:
        """Drop every translation (the hooks that blocks carry changed, or the host wrote guest
        memory: see code_changed)."""
        self.uc.ctl_flush_tb()
        self.forget_last_block()        # a block may come back with another size

    def code_changed(self) -> None:
        """The host wrote guest memory that may hold code: drop the translations and every
        block's learned instruction count and boundaries too, since a block at the same
        address, in the same space and of the same size may now hold other instructions."""
        self.code_written()
        if self._native.l4emu_block_reset(self._bh_ptr, 12):
            raise MemoryError("block table")
        self._native.l4emu_wp_forget(self._bh_ptr)
        self._boundaries.clear()

    @property
    def fast_stores(self) -> bool:
        """Whether guest stores to pages without code skip Unicorn's slow store helper
        (blockhook.c, fast_writes).  Memory hooks only see the stores that take the slow
        path: whoever adds UC_HOOK_MEM_* hooks turns this off while they exist."""
        return bool(self.bh.fastw)

    @fast_stores.setter
    def fast_stores(self, on: bool) -> None:
        if on != bool(self.bh.fastw):
            self.bh.fastw = int(on)
            if not on:
                self.flush_tlb()    # entries let through before get the flag back

    @property
    def keep_tlb(self) -> bool:
        """Whether TLB entries are kept per address space across CR3 writes and put back,
        revalidated, when CR3 returns (blockhook.c, keep_*; only while fast_stores is on)."""
        return not self.bh.keep_off

    @keep_tlb.setter
    def keep_tlb(self, on: bool) -> None:
        if on != self.keep_tlb:
            self.bh.keep_off = int(not on)
            self.flush_tlb()        # and forget what was kept

    @property
    def va_cache(self) -> bool:
        """Whether block counts are cached by virtual address in front of the count table
        (blockhook.c, va_slot): an A/B switch for benchmarks, on by default."""
        return not self.bh.vc_off

    @va_cache.setter
    def va_cache(self, on: bool) -> None:
        self.bh.vc_off = int(not on)

    def flush_tlb(self) -> None:
        with self._guard_spurious():
            self.uc.ctl(unicorn.UC_CTL_TLB_FLUSH, unicorn.UC_CTL_IO_WRITE)
        self.bh.fastw_cr3 = NO_VA           # the fast-store pages must be settled again

    def _guard_spurious(self):
        cpu = self

        class _Guard:
            def __enter__(self):
                self.cr2 = cpu.env.cr[2]
                self.old = cpu.env.old_exception

            def __exit__(self, *exc):
                # Unicorn's cache invalidation walks the guest MMU at the current CPL and, on a
                # miss, leaves CR2 and old_exception changed (research/unicorn.md §11).
                cpu.env.cr[2] = self.cr2
                cpu.env.old_exception = self.old
                return False
        return _Guard()

    # -- running ---------------------------------------------------------------------------
    def run(self, budget: int) -> int:
        """Run from EIP until the retired-instruction total reaches `budget` (checked at block
        starts), the host asks for a stop, a new block needs its count, or the guest halts.
        Returns the engine's error code (0 for none)."""
        st = self.bh
        st.budget = 0 if self.stop_requested else budget
        st.fast_bound = 0
        st.stopped = STOP_NONE
        return _lib.uc_emu_start(self.h, self.env.eip & 0xFFFFFFFF, 0, 0, 0)

    def run_counted(self, n: int) -> int:
        """Execute at most `n` instructions with Unicorn's exact counter (for single steps;
        it stops from a code hook, so the exit checks come on until `end_counted`)."""
        self.need_exit_checks("counted", True)
        st = self.bh
        st.budget = 0 if self.stop_requested else 1 << 62
        st.fast_bound = 0
        st.stopped = STOP_NONE
        return _lib.uc_emu_start(self.h, self.env.eip & 0xFFFFFFFF, 0, 0, n)

    def end_counted(self) -> None:
        """No more runs with Unicorn's counter (its hook is gone): the exit checks may go."""
        self.need_exit_checks("counted", False)

    def request_stop(self) -> None:
        """Stop before the next block (callable from any hook); `clear_stop()` undoes it."""
        self.stop_requested = True
        self.end_budget()

    def end_budget(self, at: int = 0) -> None:
        """End the run at the first block that starts at or after `at` (0: the next block).
        Safe from any hook; it also cancels the native counter's same-block shortcut."""
        st = self.bh
        if at < st.budget:
            st.budget = at
        st.fast_bound = 0

    def clear_stop(self) -> None:
        self.stop_requested = False

    def learn_block(self) -> None:
        """Record the instruction count of the block the native callback did not know (or
        whose bytes may have changed since it was counted)."""
        st = self.bh
        va, size, pa = st.miss_va, st.miss_size, st.miss_pa
        self.stats.block_misses += 1
        cr3 = self.env.cr[3]
        if self.cpl == 3:
            self._hook_ring3_io(va, size, cr3)
        pc, icount, tb_size = self.uc.ctl_request_cache(va)
        if tb_size != size or icount == 0:
            icount = len(self._block_boundaries(va, size, cr3))
        if pa == NO_PA:
            # Not in RAM (or PAE paging): nothing to key it by; count this one run.
            st.once_va, st.once_size, st.once_icount = va, size, icount
            return
        if self._native.l4emu_block_insert(self._bh_ptr, pa, st.miss_f1, size, icount):
            raise MemoryError("block table")
        if st.fastw_flush:          # code landed in a frame written through the fast path
            st.fastw_flush = 0
            self.flush_tlb()

    def _block_boundaries(self, va: int, size: int, cr3: int = 0) -> list[int]:
        """Start addresses of the instructions of the block at `va` as its bytes are now
        (cached by address and bytes: the guest may rewrite code)."""
        try:
            code = self.read_virt(va, size)
        except (PageFault, BadPhysical):
            code = b""
        key = (va, code)
        b = self._boundaries.get(key)
        if b is None:
            if len(self._boundaries) > 65536:
                self._boundaries.clear()
            b = []
            pos = 0
            for addr, isz, _m, _o in self._dis.disasm_lite(code, va):
                b.append(addr)
                pos = addr - va + isz
            if pos < size:          # an instruction capstone cannot decode ends the block
                b.append(va + pos)
            self._boundaries[key] = b
        return b

    def retire_partial(self, eip: int) -> int:
        """The last counted block stopped before its end, at `eip`: un-count what did not run,
        and return how many of its instructions are left (0 when `eip` is not inside it).

        Faults leave EIP on the faulting instruction (not retired); traps and `int n` leave it
        after the instruction (retired), so in both cases the instructions before EIP retired.
        """
        st = self.bh
        va, size, icount = st.last_va, st.last_size, st.last_icount
        if not size:
            return 0
        self.forget_last_block()
        if not va <= eip < va + size:
            return 0
        b = self._block_boundaries(va, size, self.env.cr[3])
        done = min(sum(1 for a in b if a < eip), icount)
        st.total -= icount - done
        return icount - done

    def block_icount_at(self, va: int) -> int:
        """Instructions in the block a run would start at `va` (Unicorn's own translation)."""
        pc, icount, size = self.uc.ctl_request_cache(va)
        return icount

    def exact_total(self) -> int:
        """Instructions retired before the current instruction, for hooks where EIP is exact
        (the native counter has already counted the whole current block)."""
        st = self.bh
        va, size = st.last_va, st.last_size
        eip = self.eip
        if not size or not va <= eip < va + size:
            return st.total
        b = self._block_boundaries(va, size, self.env.cr[3])
        return st.total - st.last_icount + sum(1 for a in b if a < eip)

    def watch_writes(self) -> None:
        """Make sure the handler that sees guest stores into counted code is still the
        process's SIGSEGV handler (faulthandler, a debugger may have installed theirs since;
        it is chained to).  Once per run or step: a system call."""
        self._native.l4emu_wp_ensure()

    def forget_last_block(self) -> None:
        """No block ran last: the native callback's "same block again" shortcut (it compares
        addresses only) cannot apply to the next block."""
        self.bh.last_size = 0
        self.bh.last_va = NO_VA

    def block_ended_at_halt(self) -> bool:
        """After a run returned on its own: did it stop at a `hlt` (EIP just after it)?"""
        st = self.bh
        eip = self.eip
        if not st.last_size or st.last_va + st.last_size != eip:
            return False
        try:
            return self.read_virt(eip - 1, 1) == b"\xf4"
        except (PageFault, BadPhysical):
            return False

    # -- I/O permission (SDM vol. 1 §19.5) ---------------------------------------------------
    def io_allowed(self, port: int, size: int) -> bool:
        env = self.env
        if env.cpl <= (env.eflags_sys >> 12) & 3:
            return True
        tr = env.seg(SEG_TR)
        if tr.limit < 0x67:
            return False
        try:
            base = struct.unpack("<H", self.read_virt(tr.base + 0x66, 2))[0]
            off = base + port // 8
            if off + 1 > tr.limit:
                return False
            bits = int.from_bytes(self.read_virt(tr.base + off, 2), "little")
        except (PageFault, BadPhysical):
            return False
        mask = ((1 << size) - 1) << (port % 8)
        return not bits & mask

    def _hook_ring3_io(self, va: int, size: int, cr3: int) -> None:
        try:
            code = self.read_virt(va, size)
        except (PageFault, BadPhysical):
            return
        found = []
        for addr, _isz, mnem, _op in self._dis.disasm_lite(code, va):
            base = mnem.split()[-1]
            if base in ("in", "out", "insb", "insw", "insd", "outsb", "outsw", "outsd"):
                if addr not in self._io_hooked:
                    found.append(addr)
        if not found:
            return
        self.need_exit_checks("io", True)       # the hooks stop the run before a denied access
        for addr in found:
            self._io_hooked.add(addr)
            self._add_hook(unicorn.UC_HOOK_CODE, self._io_code_cb, begin=addr, end=addr)
        self.stats.io_hooks += len(found)
        with self._guard_spurious():
            self.uc.ctl_remove_cache(va, va + size)
        self.forget_last_block()

    def _decode_io(self, eip: int) -> Optional[tuple[int, int]]:
        """(port, size) of the I/O instruction at `eip`, or None if it is not one."""
        try:
            code = self.read_virt(eip, 15)
        except (PageFault, BadPhysical):
            return None
        i = 0
        opsize = 4
        while i < len(code) and code[i] in (0x66, 0x67, 0xF2, 0xF3, 0x26, 0x2E, 0x36, 0x3E,
                                             0x64, 0x65, 0xF0):
            if code[i] == 0x66:
                opsize = 2
            i += 1
        if i >= len(code):
            return None
        op = code[i]
        edx = self.env.regs[2] & 0xFFFF
        if op in (0xE4, 0xE6):
            return code[i + 1], 1
        if op in (0xE5, 0xE7):
            return code[i + 1], opsize
        if op in (0xEC, 0xEE, 0x6C, 0x6E):
            return edx, 1
        if op in (0xED, 0xEF, 0x6D, 0x6F):
            return edx, opsize
        return None

    def _on_io_insn(self, h, address, size, user) -> None:
        try:
            if self.env.cpl == 0:
                return
            eip = address & 0xFFFFFFFF
            io = self._decode_io(eip)
            if io is None or self.io_allowed(*io):
                return
            self.stats.io_denied += 1
            self.retire_partial(eip)
            self.deliver(GP, 0, kind="fault")
            # Writing EIP from a code hook ends the block before the hooked instruction runs.
            self._v32.value = self.env.eip & 0xFFFFFFFF
            _lib.uc_reg_write(self.h, X.UC_X86_REG_EIP, ctypes.byref(self._v32))
        except Shutdown:
            _lib.uc_emu_stop(self.h)
        except BaseException as e:
            self._host_error(e)

    def _deny_io(self) -> None:
        """Fallback for an I/O instruction with no code hook: the access is suppressed and
        #GP is raised at the next block boundary with EIP at the instruction."""
        self.stats.io_denied += 1
        if self.pending_io_fault is None:
            self.pending_io_fault = IoDenied(self.eip)
            self.request_stop()

    def _on_in(self, h, port, size, user) -> int:
        try:
            if self.io_frozen:
                return ALL_ONES[size]
            if self.pending_io_fault or not self.io_allowed(port, size):
                self._deny_io()
                return self.env.regs[0] & ALL_ONES[size]
            v = self.ports.read(port, size)
            if self.on_io is not None:
                self.on_io("in", port, size, v)
            return v
        except BaseException as e:
            self._host_error(e)
            return ALL_ONES.get(size, 0)

    def _on_out(self, h, port, size, value, user) -> None:
        try:
            if self.io_frozen:
                return
            if self.pending_io_fault or not self.io_allowed(port, size):
                self._deny_io()
                return
            self.ports.write(port, size, value)
            if self.on_io is not None:
                self.on_io("out", port, size, value)
            if self.after_device_write is not None:
                self.after_device_write()
        except BaseException as e:
            self._host_error(e)

    def _on_rdtsc(self, h, user) -> int:
        try:
            t = self.tsc(self.exact_total())
            env = self.env
            env.regs[0] = t & 0xFFFFFFFF
            env.regs[2] = (t >> 32) & 0xFFFFFFFF
        except BaseException as e:
            self._host_error(e)
        return 1

    def _on_cpuid(self, h, user) -> int:
        try:
            env = self.env
            a, b, c, d = self.model.leaf(env.regs[0] & 0xFFFFFFFF,
                                         env.regs[1] & 0xFFFFFFFF)
            env.regs[0], env.regs[3], env.regs[1], env.regs[2] = a, b, c, d
        except BaseException as e:
            self._host_error(e)
        return 1

    # -- exceptions and interrupts (SDM vol. 3 ch. 6) ----------------------------------------
    def _on_intr(self, h, intno, user) -> None:
        try:
            env = self.env
            if self.shutdown is not None or self.io_frozen:
                _lib.uc_emu_stop(self.h)
                return
            soft = bool(env.exception_is_int)
            eip = env.eip & 0xFFFFFFFF
            self.retire_partial(eip)
            if self.pending_io_fault is not None:
                # A denied access earlier in this block takes precedence.
                eip = self.pending_io_fault.eip
                self.pending_io_fault = None
                env.eip = eip
                self.deliver(GP, 0, kind="fault")
                return
            err = None
            if not soft and intno in WITH_ERROR_CODE:
                err = env.error_code & (0xFFFFFFFF if intno == PF else 0xFFFF)
            self.deliver(intno, err, kind="int" if soft else "fault", soft=soft)
        except Shutdown:
            _lib.uc_emu_stop(self.h)
        except BaseException as e:
            self._host_error(e)

    def _on_invalid(self, h, user) -> bool:
        try:
            if self.shutdown is not None or self.io_frozen:
                _lib.uc_emu_stop(self.h)
                return True
            self.retire_partial(self.eip)
            self.deliver(UD, None, kind="fault")
        except Shutdown:
            _lib.uc_emu_stop(self.h)
        except BaseException as e:
            self._host_error(e)
        return True

    def _host_error(self, e: BaseException) -> None:
        """A bug on the host side inside a hook: never unwind through C; stop and report."""
        if self.fatal is None:
            self.fatal = e
        _lib.uc_emu_stop(self.h)

    def deliver(self, vector: int, error_code: Optional[int] = None, *, kind: str = "irq",
                soft: bool = False) -> None:
        """Deliver an event through the guest IDT.  A fault raised on the way escalates per
        SDM vol. 3 table 6-5: contributory after contributory, or contributory or #PF after
        #PF, gives #DF; anything else is delivered in turn; a fault while delivering #DF is
        shutdown (`Shutdown`, after `self.shutdown` is set)."""
        env = self.env
        self._record(TrapRecord(vector, error_code, self.eip, self.cpl, kind,
                                env.cr[2] & 0xFFFFFFFF if vector == PF else None))
        cur, code = vector, error_code
        while True:
            try:
                # EXT (error code bit 0): set when this delivery is not for a software int.
                self._deliver_once(cur, code, soft, 0 if soft else 1)
                return
            except _DeliveryFault as f:
                if soft:
                    # A fault while delivering `int n` is a fault of the int instruction:
                    # the saved EIP is its address and it did not retire.
                    env.eip = self._int_insn_start(vector)
                    self.bh.total -= 1
                    soft = False
                self._record(TrapRecord(f.vector, f.error_code, self.eip, self.cpl,
                                        "fault in delivery", f.cr2))
                if cur == DF:
                    self._triple(f"{f} while delivering #DF")
                if (cur in CONTRIBUTORY and f.vector in CONTRIBUTORY) or \
                        (cur == PF and (f.vector in CONTRIBUTORY or f.vector == PF)):
                    cur, code = DF, 0
                    self._record(TrapRecord(DF, 0, self.eip, self.cpl, "fault"))
                else:
                    cur, code = f.vector, f.error_code
                if cur == PF:
                    env.cr[2] = f.cr2 or 0

    def _int_insn_start(self, vector: int) -> int:
        """Address of the software-interrupt instruction EIP has just moved past."""
        nxt = self.eip
        try:
            b = self.read_virt(nxt - 2, 2)
        except (PageFault, BadPhysical):
            return nxt - 2
        if b[0] == 0xCD and b[1] == vector:
            return nxt - 2                      # int imm8
        return nxt - 1                          # int3 (CC), into (CE), int1 (F1)

    def _record(self, r: TrapRecord) -> None:
        self.stats.py_traps += 1
        self.dv.seq += 1
        r.seq = self.dv.seq
        traps = self._traps
        traps.append(r)
        if len(traps) > 64:
            del traps[:-16]
        if self._on_trap is not None:
            self._on_trap(r)

    def _triple(self, why: str) -> None:
        self.shutdown = f"triple fault: {why}"
        raise Shutdown(self.shutdown)

    def _sys_phys(self, va: int, n: int, write: bool = False) -> int:
        """Physical address of a processor-made supervisor access of `n` bytes at linear
        `va` that stays within one page; faults become _DeliveryFault.

        This is `memory.translate` inlined for the delivery path (it runs several times per
        trap): the same walk, the same checks, A/D bits written only when they change."""
        cr = self.env.cr
        cr0 = cr[0]
        if not cr0 & CR0_PG:
            pa = va
        else:
            buf, size = self.ram.buf, self.ram.size
            pde_addr = (cr[3] & 0xFFFFF000) | ((va >> 20) & 0xFFC)
            if pde_addr + 4 > size:
                raise _DeliveryFault(GP, 0)
            pde = _one_u32.unpack_from(buf, pde_addr)[0]
            err = 2 if write else 0
            if not pde & PTE_P:
                raise _DeliveryFault(PF, err, va)
            if pde & PTE_PS and cr[4] & CR4_PSE:
                if write and not pde & PTE_W and cr0 & CR0_WP:
                    raise _DeliveryFault(PF, err | 1, va)
                want = pde | PTE_A | (PTE_D if write else 0)
                if want != pde:
                    _one_u32.pack_into(buf, pde_addr, want)
                pa = (pde & 0xFFC00000) | (va & 0x3FFFFF)
            else:
                pte_addr = (pde & 0xFFFFF000) | ((va >> 10) & 0xFFC)
                if pte_addr + 4 > size:
                    raise _DeliveryFault(GP, 0)
                pte = _one_u32.unpack_from(buf, pte_addr)[0]
                if not pte & PTE_P:
                    raise _DeliveryFault(PF, err, va)
                if write and not (pde & pte & PTE_W) and cr0 & CR0_WP:
                    raise _DeliveryFault(PF, err | 1, va)
                if not pde & PTE_A:
                    _one_u32.pack_into(buf, pde_addr, pde | PTE_A)
                want = pte | PTE_A | (PTE_D if write else 0)
                if want != pte:
                    _one_u32.pack_into(buf, pte_addr, want)
                pa = (pte & 0xFFFFF000) | (va & 0xFFF)
        if pa + n > self.ram.size:
            raise _DeliveryFault(GP, 0)
        return pa

    def _sys_read8(self, va: int) -> tuple[int, int]:
        """Two dwords (a descriptor) read by the processor at linear `va`."""
        if (va & 0xFFF) <= 0xFF8:
            return _two_u32.unpack_from(self.ram.buf, self._sys_phys(va, 8))
        lo = _one_u32.unpack_from(self.ram.buf, self._sys_phys(va, 4))[0]
        hi = _one_u32.unpack_from(self.ram.buf, self._sys_phys(va + 4, 4))[0]
        return lo, hi

    def _descriptor(self, sel: int, ext: int) -> tuple[int, int]:
        if sel & 4:
            raise _DeliveryFault(GP, (sel & 0xFFFC) | ext)   # LDT descriptors: not supported
        gdt = self.env.segs[SEG_GDT]
        if (sel & ~7) + 7 > gdt.limit:
            raise _DeliveryFault(GP, (sel & 0xFFFC) | ext)
        return self._sys_read8(gdt.base + (sel & ~7))

    def _push_frame(self, sp: int, frame: tuple[int, ...], ext: int) -> int:
        """Push `frame` (first element pushed first) below `sp`; returns the new ESP.  The
        pushes are supervisor writes (SDM §6.12.1)."""
        n = 4 * len(frame)
        new_sp = (sp - n) & 0xFFFFFFFF
        if (new_sp & 0xFFF) + n <= 0x1000:
            pa = self._sys_phys(new_sp, n, write=True)
            struct.pack_into(f"<{len(frame)}I", self.ram.buf, pa, *reversed(frame))
        else:
            for i, value in enumerate(frame):
                pa = self._sys_phys((sp - 4 * (i + 1)) & 0xFFFFFFFF, 4, write=True)
                _one_u32.pack_into(self.ram.buf, pa, value)
        return new_sp

    def _deliver_once(self, vector: int, error_code: Optional[int], soft: bool, ext: int) -> None:
        env = self.env
        cpl = env.hflags & HF_CPL_MASK
        idt = env.segs[SEG_IDT]
        gate_err = vector * 8 + 2 + ext
        if vector * 8 + 7 > idt.limit:
            raise _DeliveryFault(GP, gate_err)
        lo, hi = self._sys_read8(idt.base + vector * 8)
        gtype = (hi >> 8) & 0x1F
        if gtype not in (0xE, 0xF):          # 32-bit interrupt and trap gates only
            raise _DeliveryFault(GP, gate_err)
        if soft and (hi >> 13) & 3 < cpl:
            raise _DeliveryFault(GP, vector * 8 + 2)
        if not hi & 0x8000:
            raise _DeliveryFault(NP, gate_err)
        sel, offset = (lo >> 16) & 0xFFFF, (hi & 0xFFFF0000) | (lo & 0xFFFF)
        if sel & ~3 == 0:
            raise _DeliveryFault(GP, ext)
        access = (self._descriptor(sel, ext)[1] >> 8) & 0xFF
        ddpl = (access >> 5) & 3
        if access & 0x18 != 0x18 or ddpl > cpl:      # must be a code segment, DPL <= CPL
            raise _DeliveryFault(GP, (sel & 0xFFFC) | ext)
        if not access & 0x80:
            raise _DeliveryFault(NP, (sel & 0xFFFC) | ext)
        new_cpl = cpl if access & 0x04 else ddpl     # conforming code keeps the CPL
        _lib.uc_reg_read(self.h, X.UC_X86_REG_EFLAGS, self._v32_ref)
        eflags = self._v32.value
        segs = env.segs
        cs = segs[SEG_CS].selector
        eip = env.eip & 0xFFFFFFFF
        esp = env.regs[4] & 0xFFFFFFFF
        if new_cpl < cpl:
            tr = segs[SEG_TR]
            slot = 4 + 8 * new_cpl
            if slot + 7 > tr.limit:
                raise _DeliveryFault(TS, (tr.selector & 0xFFFC) | ext)
            new_esp, new_ss = self._sys_read8(tr.base + slot)
            new_ss &= 0xFFFF
            if new_ss & ~3 == 0:
                raise _DeliveryFault(TS, ext)
            sacc = (self._descriptor(new_ss, ext)[1] >> 8) & 0xFF
            if (new_ss & 3) != new_cpl or ((sacc >> 5) & 3) != new_cpl or \
                    sacc & 0x1A != 0x12:                       # writable data segment
                raise _DeliveryFault(TS, (new_ss & 0xFFFC) | ext)
            if not sacc & 0x80:
                raise _DeliveryFault(SS, (new_ss & 0xFFFC) | ext)
            frame = (segs[SEG_SS].selector, esp, eflags, cs, eip)
        else:
            new_esp, new_ss = esp, None
            frame = (eflags, cs, eip)
        if error_code is not None:
            frame += (error_code & 0xFFFFFFFF,)
        sp = self._push_frame(new_esp, frame, ext)
        # Commit: CPL, stack, flags, entry point; then load SS and CS through the engine so
        # their caches come from the GDT.
        env.hflags = (env.hflags & ~HF_CPL_MASK) | new_cpl
        env.old_exception = -1
        env.regs[4] = sp
        env.eip = offset
        clear = EFLAGS_TF | EFLAGS_NT | EFLAGS_RF | EFLAGS_VM
        if gtype == 0xE:
            clear |= EFLAGS_IF
        env.eflags_sys = env.eflags_sys & ~clear
        if new_ss is not None:
            self._v16.value = new_ss
            if _lib.uc_reg_write(self.h, X.UC_X86_REG_SS, self._v16_ref):
                raise _DeliveryFault(TS, (new_ss & 0xFFFC) | ext)
        self._v16.value = (sel & ~3) | new_cpl
        if _lib.uc_reg_write(self.h, X.UC_X86_REG_CS, self._v16_ref):
            raise _DeliveryFault(GP, (sel & 0xFFFC) | ext)

    # -- reports -----------------------------------------------------------------------------
    def disassemble(self, va: int, count: int = 4) -> list[str]:
        try:
            code = self.read_virt(va, 16 * count)
        except (PageFault, BadPhysical):
            return [f"{va:#010x}: <not mapped>"]
        out = []
        for insn in self._dis.disasm(code, va):
            out.append(f"{insn.address:#010x}: {insn.mnemonic} {insn.op_str}".rstrip())
            if len(out) >= count:
                break
        return out or [f"{va:#010x}: <undecodable>"]

    def close(self) -> None:
        self._finalizer()


def engine_version() -> str:
    return f"unicorn {unicorn.__version__} ({os.path.basename(_binding_lib._name)})"
