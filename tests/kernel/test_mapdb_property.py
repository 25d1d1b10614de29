"""A property test of the mapping database (issue 5; kernel/mapdb.asm, docs/abi.md under
fpage_unmap): hypothesis draws sequences of map / grant / fpage_unmap operations between the
root task and four tasks it created (servers/mdbtest, images/mdbtest.toml), the guest runs
them, and the host walks every task's page directory and compares each page slot - present,
writable, frame - with a Python model of the database: recursive revocation, grant moves the
node (children and all), a mapping over an existing one revokes that one first (unless it is
the same mapping again: only the rights change), read-only remaps reach every descendant,
bit 31 takes the caller's own mapping too.  Hostile flexpages (kernel addresses, sizes below a
page, unaligned bases, whole-address-space sizes) are mixed in.

The machine boots once; the driver stops in mdb_ready(), where it is snapshotted, and every
example restores the snapshot, writes its operations into mdb_ops[] and runs to
mdb_finished()."""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from emu.machine import Stop  # noqa: E402

from .l4boot import boot  # noqa: E402

PAGE = 0x1000
WINDOW = 0x68000000           # MDB_WINDOW: each participant's slots, page s at WINDOW + s*PAGE
SLOTS = 4                     # MDB_SLOTS
CHECK_SLOTS = SLOTS + 2       # the two past the last must stay empty
ROOT_PAGES = 3                # MDB_ROOT_PAGES: the root task's sigma0 pages, slots 0..2
PARTS = 5                     # the root task (0) and MDB_WORKERS = 4 tasks
MAX_OPS = 12
OP_MAP, OP_UNMAP = 1, 2
FLUSH, ALL_SPACES = 0x2, 0x80000000
TCB_AREA, TCB_SIZE, TCB_SPACE = 0xE0000000, 0x400, 0x10      # kernel/l4view.toml
RUN_BUDGET = 100_000_000   # guest instructions per example (a few hundred thousand are used)
EXAMPLES = 150


def fpage(base: int, size: int, write: bool = False, grant: bool = False) -> int:
    return (base & 0xFFFFFFFF & ~0xFFF) | size << 2 | int(write) << 1 | int(grant)


# -- the model ----------------------------------------------------------------------------------
@dataclass
class Node:
    frame: int
    writable: bool
    parent: tuple[int, int] | None


@dataclass
class Model:
    nodes: dict[tuple[int, int], Node] = field(default_factory=dict)

    def descendants(self, key):
        out, todo = [], [key]
        while todo:
            k = todo.pop()
            kids = [c for c, n in self.nodes.items() if n.parent == k]
            out += kids
            todo += kids
        return out

    def revoke(self, key, own: bool, flush: bool = True) -> None:
        if key not in self.nodes:
            return
        targets = self.descendants(key) + ([key] if own else [])
        for k in targets:
            if flush:
                del self.nodes[k]
            else:
                self.nodes[k].writable = False

    def map_one(self, x, s, y, t, write: bool, grant: bool) -> None:
        src = self.nodes.get((x, s))
        if src is None:
            return
        new_w = write and src.writable
        dst = self.nodes.get((y, t))
        if dst is not None and dst.parent == (x, s) and dst.frame == src.frame and not grant:
            dst.writable = new_w              # the same mapping again: only the rights change
            return
        if dst is not None:
            self.revoke((y, t), own=True)     # overwriting revokes the old one first
        if (x, s) not in self.nodes:          # ... which took the source with it (a cycle)
            return
        if grant:
            node = self.nodes.pop((x, s))
            node.writable = new_w
            self.nodes[(y, t)] = node
            for n in self.nodes.values():
                if n.parent == (x, s):
                    n.parent = (y, t)
        else:
            self.nodes[(y, t)] = Node(src.frame, new_w, (x, s))


def slots_of(fp: int) -> list[int]:
    """The slots an fpage of the caller's covers (aligned down, as the kernel does); [] for the
    sizes the kernel ignores (below a page) and for fpages that miss the window."""
    size = (fp >> 2) & 0x3F
    if size < 12:
        return []
    if size >= 32:
        return list(range(SLOTS))
    base = fp & ~((1 << size) - 1) & 0xFFFFFFFF
    return [s for s in range(SLOTS) if base <= WINDOW + s * PAGE < base + (1 << size)]


# -- operations ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Op:
    kind: int
    actor: int
    target: int
    fp: int
    arg: int
    desc: str

    def words(self):
        return [self.kind, self.actor, self.target, self.fp & 0xFFFFFFFF, self.arg & 0xFFFFFFFF]

    def __repr__(self):
        return self.desc

    def apply(self, model: Model) -> None:
        if self.kind == OP_UNMAP:
            flush, own = bool(self.arg & FLUSH), bool(self.arg & ALL_SPACES)
            for s in slots_of(self.fp):
                model.revoke((self.actor, s), own=own, flush=flush)
            return
        size = (self.fp >> 2) & 0x3F
        write, grant = bool(self.fp & 2), bool(self.fp & 1)
        if size < 12:
            return
        if size < 22:                          # a page (or a few) into the 4 MiB window
            base = self.fp & ~((1 << size) - 1)
            dst = WINDOW + (self.arg % (1 << 22) & ~((1 << size) - 1))
            for s in range(SLOTS):
                src_va = WINDOW + s * PAGE
                if base <= src_va < base + (1 << size):
                    t = (dst + (src_va - base) - WINDOW) // PAGE
                    model.map_one(self.actor, s, self.target, t, write, grant)
            return
        # the window is the smaller: it receives the 4 MiB of the fpage the send base points at
        base = self.fp & ~((1 << size) - 1) & 0xFFFFFFFF if size < 32 else 0
        part = base + ((self.arg - base) % (1 << size) & ~((1 << 22) - 1))
        if part == WINDOW:
            for s in range(SLOTS):
                model.map_one(self.actor, s, self.target, s, write, grant)


actors = st.integers(0, PARTS - 1)
slot = st.integers(0, SLOTS - 1)


def mask_of(flush: bool, own: bool) -> int:
    return (FLUSH if flush else 0) | (ALL_SPACES if own else 0)


def mode(mask: int) -> str:
    return ("flush" if mask & FLUSH else "ro") + (", own" if mask & ALL_SPACES else "")


def place(draw, model: Model, anywhere: bool = False) -> tuple[int, int]:
    """A (participant, slot): mostly one that holds a mapping in the model (so the sequences
    build chains, overwrite, grant and revoke them), sometimes any."""
    keys = sorted(model.nodes)
    if keys and not anywhere and draw(st.integers(0, 4)):
        return draw(st.sampled_from(keys))
    return draw(actors), draw(slot)


@st.composite
def map_op(draw, model: Model):
    x, s = place(draw, model)
    y, t = place(draw, model, anywhere=draw(st.booleans()))
    if y == x:
        y = (x + draw(st.integers(1, PARTS - 1))) % PARTS
    w, g = draw(st.booleans()), draw(st.integers(0, 3)) == 0
    return Op(OP_MAP, x, y, fpage(WINDOW + s * PAGE, 12, w, g), t * PAGE,
              f"{'grant' if g else 'map'}({x}:{s} -> {y}:{t}, {'rw' if w else 'ro'})")


@st.composite
def unmap_op(draw, model: Model):
    x, s = place(draw, model)
    mask = mask_of(draw(st.booleans()), draw(st.booleans()))
    return Op(OP_UNMAP, x, 0, fpage(WINDOW + s * PAGE, 12), mask, f"unmap({x}:{s}, {mode(mask)})")


@st.composite
def window_op(draw, model: Model):
    """A whole-window map (size 22) or an unmap of several slots (sizes 13, 14, 22, with bases
    not aligned to the size: the kernel aligns them down)."""
    x, s = place(draw, model)
    if draw(st.booleans()):
        y = (x + draw(st.integers(1, PARTS - 1))) % PARTS
        w, g = draw(st.booleans()), draw(st.integers(0, 3)) == 0
        return Op(OP_MAP, x, y, fpage(WINDOW, 22, w, g), 0,
                  f"{'grant' if g else 'map'}_window({x} -> {y}, {'rw' if w else 'ro'})")
    size = draw(st.sampled_from([13, 14, 22]))
    mask = mask_of(draw(st.booleans()), draw(st.booleans()))
    return Op(OP_UNMAP, x, 0, (WINDOW + s * PAGE) | size << 2, mask,
              f"unmap_size{size}({x}:{s}, {mode(mask)})")


@st.composite
def hostile_op(draw, model: Model):
    """Flexpages the model says do nothing (kernel memory, sizes below a page), and
    whole-address-space ones that must reach exactly the window's pages."""
    x, s = place(draw, model)
    kind = draw(st.sampled_from(["unmap_kernel", "map_kernel", "unmap_tiny", "map_tiny",
                                 "map_huge_kernel", "unmap_huge", "map_huge"]))
    if kind in ("unmap_huge", "map_huge") and x == 0:
        x = draw(st.integers(1, PARTS - 1))    # the root task's image has children: workers only
    y = (x + draw(st.integers(1, PARTS - 1))) % PARTS
    mask = mask_of(draw(st.booleans()), draw(st.booleans()))
    base = draw(st.sampled_from([0xC0000000, 0xC0100000, 0xE0000000, 0xFFFFF000]))
    if kind == "unmap_kernel":
        size = draw(st.sampled_from([12, 22, 30]))
        return Op(OP_UNMAP, x, 0, fpage(base, size), mask,
                  f"unmap_kernel({x}, {base:#x}/{size}, {mode(mask)})")
    if kind == "map_kernel":
        return Op(OP_MAP, x, y, fpage(base, 12, True, draw(st.booleans())), s * PAGE,
                  f"map_kernel({x} -> {y}:{s}, {base:#x})")
    if kind == "unmap_tiny":
        size = draw(st.integers(0, 11))
        return Op(OP_UNMAP, x, 0, (WINDOW + s * PAGE) | size << 2, mask,
                  f"unmap_tiny({x}:{s}, size {size}, {mode(mask)})")
    if kind == "map_tiny":
        size = draw(st.integers(0, 11))
        return Op(OP_MAP, x, y, (WINDOW + s * PAGE) | size << 2 | 2, s * PAGE,
                  f"map_tiny({x}:{s} -> {y}, size {size})")
    if kind == "map_huge_kernel":
        return Op(OP_MAP, x, y, 32 << 2 | 2, 0xC0000000,
                  f"map_huge_kernel({x} -> {y}, size 32, send base 0xc0000000)")
    if kind == "map_huge":
        w = draw(st.booleans())
        return Op(OP_MAP, x, y, 32 << 2 | int(w) << 1, WINDOW,
                  f"map_huge({x} -> {y}, size 32, send base the window, {'rw' if w else 'ro'})")
    mask &= ~ALL_SPACES                         # a worker keeps its own code pages
    return Op(OP_UNMAP, x, 0, 32 << 2, mask, f"unmap_huge({x}, {mode(mask)})")


def draw_sequence(data, initial: Model) -> list[Op]:
    """Up to MAX_OPS operations, each drawn against the model's state so far."""
    model = Model({k: Node(n.frame, n.writable, n.parent) for k, n in initial.nodes.items()})
    seq: list[Op] = []
    for _ in range(data.draw(st.integers(1, MAX_OPS), label="length")):
        kind = data.draw(st.sampled_from([map_op, map_op, map_op, unmap_op, unmap_op, window_op,
                                          hostile_op]), label="kind")
        op = data.draw(kind(model))
        seq.append(op)
        op.apply(model)
    return seq


# -- the machine --------------------------------------------------------------------------------
class Rig:
    def __init__(self) -> None:
        self.sess = sess = boot("mdbtest")
        m = self.m = sess.machine
        sym = lambda n: sess.symbol("mdbtest", n)  # noqa: E731
        self.ready, self.finished = sym("mdb_ready"), sym("mdb_finished")
        m.add_breakpoint(self.ready)
        m.add_breakpoint(self.finished)
        r = sess.run(max_insns=1_000_000_000)
        assert r.reason is Stop.BREAKPOINT and m.cpu.eip == self.ready, (r, sess.text)
        assert "mdbtest: ready, 0 errors" in sess.text, sess.text
        self.ops, self.nops = sym("mdb_ops"), sym("mdb_nops")
        tasks = [self.read(sym("mdb_tasks") + 4 * i) for i in range(PARTS)]
        self.pds = [self.read(TCB_AREA + task * 128 * TCB_SIZE + TCB_SPACE) for task in tasks]
        assert all(self.pds) and len(set(self.pds)) == PARTS, [hex(p) for p in self.pds]
        self.root_frames = [self.read(sym("mdb_root_frames") + 4 * i) for i in range(ROOT_PAGES)]
        self.snap = m.save_state()

    def read(self, va: int) -> int:
        return self.m.ram.read32(self.m.cpu.translate(va))

    def write(self, va: int, value: int) -> None:
        self.m.ram.write32(self.m.cpu.translate(va), value)

    def initial_model(self) -> Model:
        return Model({(0, s): Node(f, True, None) for s, f in enumerate(self.root_frames)})

    def walk(self, pd: int, va: int):
        ram = self.m.ram
        pde = ram.read32(pd + (va >> 22) * 4)
        if not pde & 1:
            return None
        if pde & 0x80:
            return (pde & 0xFFC00000) | (va & 0x3FF000), bool(pde & 2)
        pte = ram.read32((pde & 0xFFFFF000) + ((va >> 12) & 0x3FF) * 4)
        if not pte & 1:
            return None
        return pte & 0xFFFFF000, bool(pde & pte & 2)

    def run(self, seq: list[Op]) -> dict:
        m = self.m
        m.load_state(self.snap)
        for i, op in enumerate(seq):
            for j, w in enumerate(op.words()):
                self.write(self.ops + (i * 5 + j) * 4, w)
        self.write(self.nops, len(seq))
        r = self.sess.run(max_insns=RUN_BUDGET)
        assert r.reason is Stop.BREAKPOINT and m.cpu.eip == self.finished, \
            f"the driver did not finish: {r} at {m.cpu.eip:#x}\n{self.sess.text[-2000:]}"
        assert "KERNEL PANIC" not in self.sess.text and "KERNEL EXCEPTION" not in self.sess.text
        return {(p, s): self.walk(self.pds[p], WINDOW + s * PAGE)
                for p in range(PARTS) for s in range(CHECK_SLOTS)}


@pytest.fixture(scope="module")
def rig() -> Rig:
    return Rig()


def expected(rig: Rig, seq: list[Op]) -> dict:
    model = rig.initial_model()
    for op in seq:
        op.apply(model)
    out = {(p, s): None for p in range(PARTS) for s in range(CHECK_SLOTS)}
    for key, n in model.nodes.items():
        out[key] = (n.frame, n.writable)
    return out


def check(rig: Rig, seq: list[Op]) -> None:
    got, want = rig.run(seq), expected(rig, seq)
    bad = {k: (got[k], want[k]) for k in want if got[k] != want[k]}
    assert not bad, "after %r: (task, slot): (kernel, model) %r" % (seq, bad)


def test_known_sequences(rig):
    """A few hand-written cases first (the ktest scenarios, seen from the page tables)."""
    R = lambda s: WINDOW + s * PAGE  # noqa: E731
    a_b_c = [Op(OP_MAP, 0, 1, fpage(R(0), 12, True), 0, "map(0:0 -> 1:0, rw)"),
             Op(OP_MAP, 1, 2, fpage(R(0), 12, True), PAGE, "map(1:0 -> 2:1, rw)")]
    check(rig, a_b_c)
    check(rig, a_b_c + [Op(OP_UNMAP, 0, 0, fpage(R(0), 12), FLUSH, "unmap(0:0, flush)")])
    check(rig, a_b_c + [Op(OP_UNMAP, 1, 0, fpage(R(0), 12), FLUSH | ALL_SPACES, "unmap(1:0, own)")])
    check(rig, a_b_c + [Op(OP_UNMAP, 0, 0, fpage(R(0), 12), 0, "unmap(0:0, ro)")])
    check(rig, a_b_c + [Op(OP_MAP, 2, 3, fpage(R(1), 12, True, True), 0, "grant(2:1 -> 3:0)"),
                        Op(OP_UNMAP, 0, 0, fpage(R(0), 12), FLUSH, "unmap(0:0, flush)")])
    check(rig, a_b_c + [Op(OP_MAP, 0, 1, fpage(R(1), 12, True), 0, "map(0:1 -> 1:0, rw)")])
    check(rig, a_b_c + [Op(OP_MAP, 2, 0, fpage(R(1), 12, True), 0, "map(2:1 -> 0:0, rw)")])
    check(rig, a_b_c + [Op(OP_MAP, 0, 1, fpage(R(0), 12, False), 0, "map(0:0 -> 1:0, ro)")])
    check(rig, a_b_c + [Op(OP_UNMAP, 2, 0, 32 << 2, FLUSH, "unmap_huge(2, flush)"),
                        Op(OP_UNMAP, 1, 0, 0xC0000000 | 30 << 2, FLUSH | ALL_SPACES,
                           "unmap_kernel(1, 0xc0000000/30, flush, own)"),
                        Op(OP_MAP, 1, 3, 32 << 2 | 2, WINDOW, "map_huge(1 -> 3, rw)")])


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_page_tables_follow_the_model(rig, data):
    check(rig, draw_sequence(data, rig.initial_model()))
