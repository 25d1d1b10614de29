"""L4-aware views: the kernel's threads, tasks and address spaces, read from guest memory through
the kernel's symbols and a layout description (DESIGN D10).

The debugger knows nothing of the kernel's code.  What it knows is a *layout*: which symbols
locate the kernel's data and where each field sits in a thread control block (TCB).  The layout
is TOML, in the same shape as `DEFAULT_LAYOUT` below; the shell takes it from `--l4-layout FILE`,
else `l4view.toml` beside the kernel ELF, else `kernel/l4view.toml` in the source tree, else the
default.  The kernel owns its layout file and keeps it true when its structures change; a field
the layout does not name is simply not shown.

    [symbols]
    require = "syscall_table" # optional: a kernel symbol that says the layout applies
    tcbs = "l4_tcbs"          # first TCB of the TCB array (required: without it, no L4 views);
                              # a symbol, or a number for a fixed address
    count = 256               # number of TCB slots: a number, or a symbol holding a dword count
    current = "l4_current"    # a dword holding the address of the running thread's TCB, or
                              # { symbol, offset, add }: the dword at symbol + offset, plus add

    [tcb]
    stride = 0x800            # bytes from one TCB slot to the next
    fields.id = { offset = 0x00, type = "tid" }           # types: u8 u16 u32 tid ptr pd
    fields.state = { offset = 0x04, type = "u32", enum = "state" }
    ...

    [enum.state]              # value -> name; a slot whose state is "free" is not a thread
    0 = "free"

    [tid]                     # thread-ID bit fields (L4 V2 x86 low dword by default)
    lthread = [10, 7]         # shift, bits
    task = [17, 11]
    chief = [17, 11]          # optional: the chief's task in field `id_hi` (V2 high dword)

Field roles the views understand: `id`, `id_hi` (with `[tid] chief`: `info tasks` shows each
task's chief), `state`, `prio`, `timeslice`, `partner` (the thread this one sends to or
receives from), `timeout` (when its IPC times out), `pager`, `space` (the physical page
directory), `send_queue` (first TCB waiting to send to this one), `queue_next` (next TCB in
that queue), `eip`, `esp`.  Everything else in `fields` is shown by `info tcb` as a plain
value.  The thread in the first slot whose ID is all ones is the kernel's idle thread.

TCBs are read through the current page tables (the kernel is mapped in every space); a slot
whose page is not mapped is skipped, as L4 kernels map TCB pages lazily.

Trace points (`trace ipc`, `trace ctx`) are the kernel's instructions where an IPC message has
been delivered and where the CPU passes to another thread.  The debugger puts a machine
breakpoint on each while that trace is on, prints a line when it is reached and goes on (the
guest sees nothing: same instructions, same count).  The kernel describes them:

    [trace]
    fields = { msg0 = 0x6C, res_dope = 0x7C }   # extra TCB fields the points read: name =
                                                # offset (a dword) or { offset, type }
    ctx = [                                     # a table or a list of tables
      { symbol = "resume_tcb",                  # where: a kernel symbol (plus `offset`)
        from = "esp & ~0x3FF",                  # TCB of the thread that stops running
        to = "eax",                             # TCB of the thread that runs next
        space = "tcb:space of eax",             # its page directory (0: keeps the current)
        old_space = "cr3" },                    # the one before (default: CR3 here)
    ]
    ipc = [
      { symbol = "fastpath_deliver", path = "fast path",
        sender = "esi", receiver = "eax",       # TCBs
        w0 = "edx", w1 = "ebx",                 # the two message words
        dope = "0",                             # the receiver's result (message dope)
        snd = "0", rcv = "[esp + 12]" },        # the sender's descriptors: what kind of IPC
      { symbol = "ipc_transfer", at = "return", ...,
        kind = { page-fault = "tcb:rcv_state of esi == 5" } },   # labels the kernel's own
    ]

Every value is a debugger expression (docs/debugging.md: registers, `[addr]`, symbols,
arithmetic) evaluated when the instruction at the point is about to execute, plus
`tcb:FIELD of REG`: the field FIELD (from `[trace] fields`, else `[tcb.fields]`) of the TCB
whose address is in register (or symbol) REG.  `at = "return"` evaluates the values instead
when the function entered at `symbol` returns (the dword at ESP on entry is the return
address; the return is the first time execution reaches it with ESP 4 higher), for a routine
whose result is only known at its end.  `path` is a label printed with the line.  `snd` and
`rcv` (V2 descriptors, default 0) name the operation: a nil receive (0xFFFFFFFF) is a
`send`, an open one (bit 0) `reply-wait`, any other `call`; a send descriptor with bit 1 adds
`map`; `kind` (label = condition) overrides that: the first label whose condition holds
names it (the kernel's page-fault and exception IPCs).  Lines:

    [count] ipc 6.0 -> 5.0 call w0=0x1 w1=0x0 ok (fast path)
    [count] ctx 6.0 -> 5.0 (cr3 0x00152000)
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from ..memory import BadPhysical, PageFault, translate
from .symbols import SymbolTable
from .views import mappings

DEFAULT_LAYOUT = """
[symbols]
tcbs = "l4_tcbs"
count = "l4_tcb_count"
current = "l4_current"

[tcb]
stride = 0x800

[tcb.fields]
id = { offset = 0x00, type = "tid" }
state = { offset = 0x04, type = "u32", enum = "state" }
prio = { offset = 0x08, type = "u8" }
timeslice = { offset = 0x0c, type = "u32" }
partner = { offset = 0x10, type = "tid" }
timeout = { offset = 0x14, type = "u32" }
pager = { offset = 0x18, type = "tid" }
space = { offset = 0x1c, type = "pd" }
send_queue = { offset = 0x20, type = "ptr" }
queue_next = { offset = 0x24, type = "ptr" }
esp = { offset = 0x28, type = "u32" }

[enum.state]
0 = "free"
1 = "running"
2 = "ready"
3 = "sending"
4 = "receiving"
5 = "waiting"
6 = "inactive"
7 = "dead"

[tid]
lthread = [10, 7]
task = [17, 11]
"""

_SIZES = {"u8": 1, "u16": 2, "u32": 4, "tid": 4, "ptr": 4, "pd": 4}
NO_KERNEL = "no L4 kernel symbols in this image"


class LayoutError(Exception):
    """The layout file is malformed (one line)."""


@dataclass
class Field:
    name: str
    offset: int
    type: str = "u32"
    enum: Optional[str] = None


@dataclass
class TracePoint:
    """One `[trace]` point: `kind` is "ipc" or "ctx"; `values` maps a role (sender, w0, to,
    ...) to its expression."""

    kind: str
    symbol: str
    offset: int = 0
    at: str = "entry"            # or "return"
    path: str = ""
    values: dict[str, str] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)     # ipc: label -> condition


_TRACE_ROLES = {
    "ipc": ({"sender", "receiver"}, {"w0", "w1", "dope", "snd", "rcv"}),
    "ctx": ({"to"}, {"from", "space", "old_space"}),
}
_TCB_REF = re.compile(r"tcb:(\w+)\s+of\s+(\$?[A-Za-z_.][\w.]*)")


@dataclass
class Layout:
    symbols: dict[str, Any]
    stride: int
    fields: dict[str, Field]
    enums: dict[str, dict[int, str]]
    lthread: tuple[int, int] = (10, 7)
    task: tuple[int, int] = (17, 11)
    source: str = "built-in default"
    chief: Optional[tuple[int, int]] = None     # bits of the chief's task in field id_hi
    trace_fields: dict[str, Field] = field(default_factory=dict)
    trace: dict[str, list[TracePoint]] = field(default_factory=dict)
    mapdb: dict[str, Any] = field(default_factory=dict)     # the [mapdb] section, if any

    @property
    def size(self) -> int:
        return max((f.offset + _SIZES[f.type] for f in self.fields.values()), default=0)


def parse_layout(text: str, source: str = "built-in default") -> Layout:
    try:
        d = tomllib.loads(text)
        syms = dict(d.get("symbols", {}))
        if "tcbs" not in syms:
            raise LayoutError(f"{source}: [symbols] needs 'tcbs'")
        tcb = d.get("tcb", {})
        fields = {}
        for name, spec in tcb.get("fields", {}).items():
            t = spec.get("type", "u32")
            if t not in _SIZES:
                raise LayoutError(f"{source}: field '{name}' has unknown type '{t}'")
            fields[name] = Field(name, int(spec["offset"]), t, spec.get("enum"))
        enums = {n: {int(k): str(v) for k, v in e.items()} for n, e in d.get("enum", {}).items()}
        tid = d.get("tid", {})
        layout = Layout(syms, int(tcb.get("stride", 0x800)), fields, enums,
                        tuple(tid.get("lthread", (10, 7))), tuple(tid.get("task", (17, 11))),
                        source)
        if "chief" in tid:
            layout.chief = tuple(tid["chief"])
        _parse_trace(layout, d.get("trace", {}), source)
        layout.mapdb = _parse_mapdb(d.get("mapdb", {}), source)
        return layout
    except LayoutError:
        raise
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as e:
        raise LayoutError(f"{source}: bad L4 layout ({e})") from None


_MAPDB_NODE = ("space", "key", "parent", "child", "sibling", "hnext")


def _parse_mapdb(m: dict, source: str) -> dict[str, Any]:
    """The `[mapdb]` section: where the kernel's mapping database is and how to read it."""
    if not m:
        return {}
    for k in ("hash", "buckets", "node"):
        if k not in m:
            raise LayoutError(f"{source}: [mapdb] needs '{k}'")
    node = m["node"]
    for k in _MAPDB_NODE:
        if k not in node:
            raise LayoutError(f"{source}: [mapdb] node needs '{k}'")
    return {"hash": str(m["hash"]), "buckets": int(m["buckets"]),
            "node": {k: int(node[k]) for k in _MAPDB_NODE},
            "key_shift": int(m.get("key_shift", 12)), "space_shift": int(m.get("space_shift", 7)),
            "super": int(m.get("super", 1))}


def _parse_trace(layout: Layout, t: dict, source: str) -> None:
    """The `[trace]` section: extra fields and the ipc/ctx points (see the module docstring)."""
    for name, spec in t.get("fields", {}).items():
        if isinstance(spec, int):
            spec = {"offset": spec}
        ty = spec.get("type", "u32")
        if ty not in _SIZES:
            raise LayoutError(f"{source}: trace field '{name}' has unknown type '{ty}'")
        layout.trace_fields[name] = Field(name, int(spec["offset"]), ty)
    for kind, (required, optional) in _TRACE_ROLES.items():
        specs = t.get(kind, [])
        if isinstance(specs, dict):
            specs = [specs]
        points = []
        for spec in specs:
            where = f"{source}: [trace] {kind} point {spec.get('symbol', '?')!r}"
            if not isinstance(spec.get("symbol"), str):
                raise LayoutError(f"{source}: a [trace] {kind} point needs a 'symbol'")
            at = spec.get("at", "entry")
            if at not in ("entry", "return"):
                raise LayoutError(f"{where}: 'at' is \"entry\" or \"return\", not {at!r}")
            kinds = spec.get("kind", {}) if kind == "ipc" else {}
            if not isinstance(kinds, dict):
                raise LayoutError(f"{where}: 'kind' is a table: label = \"condition\"")
            kinds = {str(k): str(v) for k, v in kinds.items()}
            values = {k: str(v) for k, v in spec.items()
                      if k not in ("symbol", "offset", "at", "path", "kind")}
            missing = required - set(values)
            unknown = set(values) - required - optional
            if missing:
                raise LayoutError(f"{where} needs '{sorted(missing)[0]}'")
            if unknown:
                raise LayoutError(f"{where}: unknown key '{sorted(unknown)[0]}'")
            for v in list(values.values()) + list(kinds.values()):
                for m in _TCB_REF.finditer(v):
                    if m.group(1) not in layout.trace_fields and m.group(1) not in layout.fields:
                        raise LayoutError(f"{where}: no TCB field '{m.group(1)}' "
                                          "([trace] fields or [tcb.fields])")
            points.append(TracePoint(kind, spec["symbol"], int(spec.get("offset", 0)), at,
                                     str(spec.get("path", "")), values, kinds))
        layout.trace[kind] = points


_WIDTH = {1: "byte", 2: "word", 4: "dword"}

#: V2 IPC error codes (message dope bits 4-7).
IPC_ERRORS = {
    0x10: "not existent", 0x20: "receive timeout", 0x30: "send timeout",
    0x40: "receive cancelled", 0x50: "send cancelled", 0x60: "receive map failed",
    0x70: "send map failed", 0x80: "send page-fault timeout", 0x90: "receive page-fault "
    "timeout (sender)", 0xA0: "receive page-fault timeout", 0xB0: "send page-fault timeout "
    "(receiver)", 0xC0: "receive aborted", 0xD0: "send aborted", 0xE0: "receive message cut",
    0xF0: "send message cut",
}


def find_layout(explicit: Optional[str], kernel: Optional[str]) -> Layout:
    """The layout to use: the explicit file, one beside the kernel, the source tree's, or the
    default."""
    candidates = []
    if explicit:
        p = Path(explicit)
        if not p.is_file():
            raise LayoutError(f"{p}: no such layout file")
        candidates.append(p)
    if kernel:
        candidates.append(Path(kernel).with_name("l4view.toml"))
    candidates.append(Path(__file__).resolve().parents[2] / "kernel" / "l4view.toml")
    for p in candidates:
        if p.is_file():
            return parse_layout(p.read_text(), str(p))
    return parse_layout(DEFAULT_LAYOUT)


@dataclass
class Thread:
    slot: int
    addr: int
    values: dict[str, int] = field(default_factory=dict)


class L4View:
    """Reads the kernel's data through `symbols` and `layout` from machine `m`."""

    def __init__(self, m, symbols: SymbolTable, layout: Optional[Layout] = None) -> None:
        self.m = m
        self.symbols = symbols
        self.layout = layout or parse_layout(DEFAULT_LAYOUT)

    # -- availability and basic reads ----------------------------------------------------------
    def _sym(self, role: str) -> Optional[int]:
        """The address a [symbols] entry names: a symbol, a number (a fixed kernel address),
        or a table {symbol, offset, add}: the dword at symbol + offset, plus add (e.g. the
        current TCB derived from TSS.ESP0)."""
        name = self.layout.symbols.get(role)
        if isinstance(name, int):
            return name
        if self.symbols.kernel is None:
            return None
        if isinstance(name, str):
            return self.symbols.kernel.by_name.get(name)
        return None

    @property
    def available(self) -> bool:
        """Whether this image's kernel is the one the layout describes: the TCBs are located,
        and the symbol `[symbols] require` names (if any) is in the kernel."""
        req = self.layout.symbols.get("require")
        if isinstance(req, str) and (self.symbols.kernel is None or
                                     req not in self.symbols.kernel.by_name):
            return False
        return self._sym("tcbs") is not None

    def missing(self) -> str:
        return (f"{NO_KERNEL} (the layout ({self.layout.source}) locates TCBs at symbol "
                f"'{self.layout.symbols.get('tcbs')}'; see docs/debugging.md)")

    def _read(self, va: int, n: int) -> int:
        return int.from_bytes(self.m.cpu.read_virt(va, n), "little")

    def count(self) -> int:
        c = self.layout.symbols.get("count", 0)
        if isinstance(c, int):
            return c
        a = self._sym("count")
        if a is None:
            return 0
        try:
            return min(self._read(a, 4), 1 << 16)
        except (PageFault, BadPhysical):
            return 0

    def current_tcb(self) -> Optional[int]:
        spec = self.layout.symbols.get("current")
        if isinstance(spec, dict):
            base = self.symbols.kernel.by_name.get(spec.get("symbol", "")) \
                if self.symbols.kernel is not None else None
            if base is None:
                return None
            try:
                return (self._read(base + int(spec.get("offset", 0)), 4) +
                        int(spec.get("add", 0))) & 0xFFFFFFFF
            except (PageFault, BadPhysical):
                return None
        a = self._sym("current")
        if a is None:
            return None
        try:
            return self._read(a, 4)
        except (PageFault, BadPhysical):
            return None

    def read_tcb(self, slot: int, addr: int) -> Optional[Thread]:
        t = Thread(slot, addr)
        try:
            raw = self.m.cpu.read_virt(addr, self.layout.size)    # one read for all fields
        except (PageFault, BadPhysical):
            return None
        for f in self.layout.fields.values():
            t.values[f.name] = int.from_bytes(raw[f.offset:f.offset + _SIZES[f.type]],
                                              "little")
        return t

    def threads(self, include_free: bool = False) -> list[Thread]:
        base = self._sym("tcbs")
        if base is None:
            return []
        out = []
        for slot in range(self.count()):
            t = self.read_tcb(slot, base + slot * self.layout.stride)
            if t is None:
                continue
            if not include_free and (self.state_name(t) == "free" or
                                     t.values.get("id", 1) == 0):
                continue
            out.append(t)
        return out

    # -- formatting ----------------------------------------------------------------------------
    def tid(self, v: int) -> str:
        if v == 0:
            return "nil"
        if v == 0xFFFFFFFF:
            return "invalid"
        (ls, lb), (ts, tb) = self.layout.lthread, self.layout.task
        return f"{(v >> ts) & ((1 << tb) - 1):x}.{(v >> ls) & ((1 << lb) - 1):x}"

    def task_of(self, v: int) -> int:
        ts, tb = self.layout.task
        return (v >> ts) & ((1 << tb) - 1)

    def state_name(self, t: Thread) -> str:
        f = self.layout.fields.get("state")
        if f is None:
            return "?"
        v = t.values["state"]
        return self.layout.enums.get(f.enum or "", {}).get(v, str(v))

    def value(self, t: Thread, name: str) -> str:
        f = self.layout.fields[name]
        v = t.values[name]
        if f.type == "tid":
            return self.tid(v)
        if f.enum:
            return self.layout.enums.get(f.enum, {}).get(v, str(v))
        if f.type in ("ptr", "pd"):
            if f.type == "ptr" and v:
                other = self.by_addr(v)
                if other is not None and "id" in other.values:
                    return f"{v:#010x} ({self.tid(other.values['id'])})"
            return f"{v:#010x}"
        return str(v) if v < 0x10000 else f"{v:#x}"      # counts in decimal, addresses in hex

    def by_addr(self, addr: int) -> Optional[Thread]:
        base = self._sym("tcbs")
        if base is None or addr < base:
            return None
        slot, off = divmod(addr - base, self.layout.stride)
        if off or slot >= self.count():
            return None
        return self.read_tcb(slot, addr)

    def find(self, spec: int) -> Optional[Thread]:
        """A thread by its ID value (or by task.lthread packed the same way)."""
        for t in self.threads():
            if t.values.get("id") == spec:
                return t
        ls, _ = self.layout.lthread
        ts, _ = self.layout.task
        for t in self.threads():
            v = t.values.get("id", 0)
            if self.task_of(v) == self.task_of(spec) and \
                    (v >> ls) & 0x7F == (spec >> ls) & 0x7F:
                return t
        return None

    def parse_id(self, text: str, evaluate) -> int:
        """"T.L" (hex task.lthread) or an expression giving the raw ID."""
        if "." in text and all(p and all(c in "0123456789abcdefABCDEF" for c in p)
                               for p in text.split(".", 1)):
            task, lth = (int(p, 16) for p in text.split(".", 1))
            return (task << self.layout.task[0]) | (lth << self.layout.lthread[0])
        return evaluate(text)

    # -- the views -----------------------------------------------------------------------------
    def info_threads(self) -> list[str]:
        if not self.available:
            return [self.missing()]
        threads = self.threads()
        cur = self.current_tcb()
        cols = [c for c in ("state", "prio", "timeslice", "partner", "timeout", "pager")
                if c in self.layout.fields]
        out = ["  " + f"{'thread':10}" + "".join(f"{c:>11}" for c in cols) + "  tcb"]
        for t in threads:
            mark = "*" if t.addr == cur else " "
            tid = self.name(t)
            row = "".join(f"{self.value(t, c):>11}" for c in cols)
            out.append(f"{mark} {tid:10}{row}  {t.addr:#010x}")
        if not threads:
            out.append("  (no threads)")
        return out

    def name(self, t: Thread) -> str:
        """A thread's ID as task.lthread; the kernel's own thread (the one no ID names: all
        ones, in the first TCB slot) is "idle"."""
        v = t.values.get("id")
        if v is None:
            return f"#{t.slot}"
        if v == 0xFFFFFFFF and t.slot == 0:
            return "idle"
        return self.tid(v)

    def chief_of(self, t: Thread) -> Optional[int]:
        if self.layout.chief is None or "id_hi" not in t.values:
            return None
        s, b = self.layout.chief
        return (t.values["id_hi"] >> s) & ((1 << b) - 1)

    def info_tasks(self) -> list[str]:
        if not self.available:
            return [self.missing()]
        tasks: dict[int, list[Thread]] = {}
        kernel: list[Thread] = []
        for t in self.threads():
            if self.name(t) == "idle":
                kernel.append(t)
            else:
                tasks.setdefault(self.task_of(t.values.get("id", 0)), []).append(t)
        chiefs = self.layout.chief is not None and "id_hi" in self.layout.fields
        out = ["task   " + ("chief  " if chiefs else "") +
               "threads  space (page directory)  states"]
        for task in sorted(tasks):
            ts = tasks[task]
            space = ts[0].values.get("space")
            states = ", ".join(f"{self.name(t)} {self.state_name(t)}" for t in ts)
            sp = f"{space:#010x}" if space is not None else "?"
            chief = ""
            if chiefs:
                c = self.chief_of(ts[0])
                chief = f"{'kernel' if c == 0 else format(c, 'x'):<6} "
            out.append(f"{task:<6x} {chief}{len(ts):<8} {sp:<23} {states}")
        if kernel:
            states = ", ".join(f"{self.name(t)} {self.state_name(t)}" for t in kernel)
            out.append(f"{'-':<6} {'' if not chiefs else '-      '}{len(kernel):<8} "
                       f"{'(any)':<23} {states}")
        if not tasks and not kernel:
            out.append("(no tasks)")
        return out

    def info_tcb(self, spec: int) -> list[str]:
        if not self.available:
            return [self.missing()]
        t = self.find(spec)
        if t is None:
            return [f"no thread {self.tid(spec)} ({spec:#x})"]
        out = [f"thread {self.tid(t.values.get('id', 0))}: tcb at {t.addr:#010x} "
               f"(slot {t.slot}), state {self.state_name(t)}"]
        for name in self.layout.fields:
            out.append(f"  {name:12} {self.value(t, name)}")
        out.extend(self._wait_detail(t))
        return out

    def _wait_detail(self, t: Thread) -> list[str]:
        out = []
        state = self.state_name(t)
        # A receiver's expected sender may have a field of its own (`wait_for`: 0 = anyone,
        # 1 = nobody); otherwise `partner` serves both directions.
        field = "wait_for" if state in ("receiving", "waiting") and "wait_for" in t.values \
            else "partner"
        if field in t.values and state in ("sending", "receiving", "waiting"):
            verb = "sends to" if state == "sending" else "waits for"
            v = t.values[field]
            who = {0: "anyone", 1: "nobody (sleeping)"}.get(v, self.value(t, field)) \
                if field == "wait_for" else self.value(t, field)
            out.append(f"  {verb} {who}" +
                       (f", timeout {self.value(t, 'timeout')}" if "timeout" in t.values else ""))
        if "send_queue" in t.values:
            queue, seen = [], set()
            p = t.values["send_queue"]
            while p and p not in seen and len(queue) < 64:
                seen.add(p)
                q = self.by_addr(p)
                if q is None:
                    queue.append(f"{p:#010x}?")
                    break
                queue.append(self.tid(q.values.get("id", 0)))
                p = q.values.get("queue_next", 0)
            out.append("  senders waiting: " + (", ".join(queue) if queue else "none"))
        if "pager" in t.values:
            chain, seen = [], set()
            cur = t
            while cur is not None and "pager" in cur.values and len(chain) < 16:
                pg = cur.values["pager"]
                if pg in (0, 0xFFFFFFFF) or pg in seen:
                    break
                seen.add(pg)
                chain.append(self.tid(pg))
                cur = self.find(pg)
            out.append("  pager chain: " + (" -> ".join(chain) if chain else "none"))
        return out

    def _task_space(self, task: int) -> Optional[int]:
        for t in self.threads():
            if self.task_of(t.values.get("id", 0)) == task and "space" in t.values:
                return t.values["space"]
        return None

    def _task_and_space(self, spec: int) -> tuple[int, Optional[int], list[str]]:
        """The task `spec` names (a thread ID or a task number), its page directory, and the
        lines to print instead when there is none."""
        if not self.available:
            return 0, None, [self.missing()]
        task = self.task_of(spec) if spec >> self.layout.task[0] else spec
        pd = self._task_space(task)
        if pd is None:
            return task, None, [f"no task {task:x} (or its TCBs have no 'space' field)"]
        return task, pd, []

    def info_space(self, spec: int) -> list[str]:
        task, pd, missing = self._task_and_space(spec)
        if pd is None:
            return missing
        threads = [self.tid(t.values.get("id", 0)) for t in self.threads()
                   if self.task_of(t.values.get("id", 0)) == task]
        from .views import mapping_ranges
        runs = mapping_ranges(self.m, pd)
        user = sum(size for _, size, _, r in runs if r.startswith("U"))
        kern = sum(size for _, size, _, r in runs if r.startswith("S"))
        return [f"task {task:x}: page directory {pd:#010x}, threads {', '.join(threads)}",
                f"  user mappings: {user >> 10} KiB in "
                f"{sum(1 for r in runs if r[3].startswith('U'))} runs; "
                f"kernel mappings: {kern >> 10} KiB"]

    def info_mappings(self, spec: int) -> list[str]:
        task, pd, missing = self._task_and_space(spec)
        if pd is None:
            return missing
        return [f"task {task:x}:"] + mappings(self.m, pd)


    # -- the mapping database ------------------------------------------------------------------
    def _mdb_node(self, addr: int) -> dict[str, int]:
        off = self.layout.mapdb["node"]
        raw = self.m.cpu.read_virt(addr, max(off.values()) + 4)
        return {k: int.from_bytes(raw[o:o + 4], "little") for k, o in off.items()}

    def mdb_find(self, space: int, key: int) -> Optional[int]:
        """The node of (space, key) through the kernel's hash table, or None."""
        db = self.layout.mapdb
        table_ptr = self.symbols.kernel.by_name.get(db["hash"]) if self.symbols.kernel else None
        if table_ptr is None:
            return None
        bucket = ((key >> db["key_shift"]) ^ (space >> db["space_shift"])) & (db["buckets"] - 1)
        node = self._read(self._read(table_ptr, 4) + 4 * bucket, 4)
        for _ in range(4096):
            if not node:
                return None
            n = self._mdb_node(node)
            if n["key"] == key and n["space"] == space:
                return node
            node = n["hnext"]
        return None

    def info_maptree(self, spec: int, va: int) -> list[str]:
        """The mapping tree the page at `va` of a task belongs to: from the root (the
        owner's mapping) down, each mapping with its task, address and page-table rights."""
        task, pd, missing = self._task_and_space(spec)
        if pd is None:
            return missing
        db = self.layout.mapdb
        if not db:
            return ["this kernel's layout has no [mapdb] section: no mapping database to show"]
        try:
            node = self.mdb_find(pd, va & 0xFFFFF000) or \
                self.mdb_find(pd, (va & 0xFFC00000) | db["super"])
        except (PageFault, BadPhysical):
            return ["the mapping database is not readable here"]
        if node is None:
            return [f"task {task:x} has no mapping of {va:#010x} in the mapping database (not "
                    "mapped, or a boot mapping never mapped on)"]
        spaces = {t.values["space"]: self.task_of(t.values.get("id", 0)) for t in self.threads()
                  if "space" in t.values}
        root, seen = node, set()
        while root not in seen:
            seen.add(root)
            parent = self._mdb_node(root)["parent"]
            if not parent:
                break
            root = parent
        out = [f"mapping tree of task {task:x} {va:#010x} (* = that mapping):"]
        stack, shown = [(root, 0)], 0
        while stack and shown < 256:
            addr, depth = stack.pop()
            n = self._mdb_node(addr)
            page = n["key"] & ~db["super"]
            size = "4M" if n["key"] & db["super"] else "4K"
            who = spaces.get(n["space"])
            name = f"task {who:x}" if who is not None else f"space {n['space']:#x}"
            try:
                cr = self.m.cpu.mmu_state()
                frame = translate(self.m.ram, cr[0], n["space"], cr[2], page)
                writable = True
                try:
                    translate(self.m.ram, cr[0], n["space"], cr[2], page, write=True, user=True)
                except PageFault:
                    writable = False
                rights = f"-> {frame:#010x} {'rw' if writable else 'ro'}"
            except (PageFault, BadPhysical):
                rights = "-> not mapped"
            mark = "*" if addr == node else " "
            out.append(f"{mark} {'  ' * depth}{name} {page:#010x} {size} {rights}")
            shown += 1
            children, c = [], n["child"]
            while c and len(children) < 256:
                children.append(c)
                c = self._mdb_node(c)["sibling"]
            stack.extend((c, depth + 1) for c in reversed(children))
        return out


# -- trace lines ---------------------------------------------------------------------------------
class TraceFormatter:
    """Evaluates a trace point's values and formats its line; `evaluate(text)` is the
    debugger's expression evaluator (raises on a bad expression or address)."""

    def __init__(self, view: "L4View", evaluate) -> None:
        self.view = view
        self.evaluate = evaluate

    def expand(self, text: str) -> str:
        lay = self.view.layout

        def sub(m):
            f = lay.trace_fields.get(m.group(1)) or lay.fields[m.group(1)]
            return f"{_WIDTH.get(_SIZES[f.type], 'dword')}[({m.group(2)}) + {f.offset:#x}]"
        return _TCB_REF.sub(sub, text)

    def values(self, point: TracePoint) -> dict[str, int]:
        return {k: self.evaluate(self.expand(v)) & 0xFFFFFFFF for k, v in point.values.items()}

    def thread(self, tcb: int) -> str:
        t = self.view.by_addr(tcb)
        if t is None or "id" not in t.values:
            return f"kernel@{tcb:#010x}"      # not a TCB: e.g. the boot stack
        v = t.values["id"]
        return "idle" if v == 0xFFFFFFFF else self.view.tid(v)

    def line(self, point: TracePoint) -> str:
        v = self.values(point)
        if point.kind == "ctx":
            frm = self.thread(v["from"]) if "from" in v else "?"
            new = v.get("space", 0)
            old = v.get("old_space", self.evaluate("cr3"))
            if not new:
                sp = "space kept"
            elif new == old:
                sp = "same space"
            else:
                sp = f"cr3 {new:#010x}"
            via = f", {point.path}" if point.path else ""
            return f"ctx {frm} -> {self.thread(v['to'])} ({sp}{via})"
        snd, rcv = v.get("snd", 0), v.get("rcv", 0)
        special = next((label for label, cond in point.kinds.items()
                        if self.evaluate(self.expand(cond))), None)
        if special is not None:
            op = special
        elif rcv == 0xFFFFFFFF:
            op = "send"
        elif rcv & 1:
            op = "reply-wait"
        else:
            op = "call"
        if special is None and snd != 0xFFFFFFFF and snd & 2:
            op += " map"
        words = "".join(f" {w}={v[w]:#x}" for w in ("w0", "w1") if w in v)
        res = ""
        if "dope" in v:
            dope = v["dope"]
            err = dope & 0xF0
            if err:
                res = f" error {err:#x} ({IPC_ERRORS.get(err, '?')})"
            elif dope & 0x02:
                res = " ok, fpage received"
            else:
                res = " ok"
        tag = f" ({point.path})" if point.path else ""
        return (f"ipc {self.thread(v['sender'])} -> {self.thread(v['receiver'])} {op}"
                f"{words}{res}{tag}")
