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
SUPER = 0x6C000000            # MDB_SUPER: the root task's 4 MiB page from sigma0
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
# Keys: (participant, slot) for a 4 KiB mapping at WINDOW + slot * PAGE; (participant, "S") for
# a 4 MiB mapping of its whole window (then it has no slot nodes: slot s is piece s of it);
# (0, "R") for the root task's 4 MiB page at SUPER (never checked, never split).
@dataclass
class Node:
    frame: int
    writable: bool
    parent: tuple | None


@dataclass
class Model:
    nodes: dict[tuple, Node] = field(default_factory=dict)

    def copy(self) -> "Model":
        return Model({k: Node(n.frame, n.writable, n.parent) for k, n in self.nodes.items()})

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

    def lookup(self, p, s):
        """The mapping at slot s of p: (node key, frame, writable), or None."""
        if (p, s) in self.nodes:
            n = self.nodes[(p, s)]
            return (p, s), n.frame, n.writable
        if (p, "S") in self.nodes:
            n = self.nodes[(p, "S")]
            return (p, "S"), n.frame + s * PAGE, n.writable
        return None

    def split(self, p, parent_piece=None) -> None:
        """p's 4 MiB mapping becomes pieces (kernel/mapdb.asm mdb_split): piece j's parent is
        piece j of the parent's split (parent_piece) or the unsplit parent; 4 KiB children go
        under the piece of their frame; 4 MiB children are split the same way."""
        key = (p, "S")
        n = self.nodes.pop(key)
        kids = [k for k, c in self.nodes.items() if c.parent == key]
        need = set(range(CHECK_SLOTS)) | {(self.nodes[k].frame - n.frame) // PAGE
                                          for k in kids if k[1] != "S"}
        for j in sorted(need):
            self.nodes[(p, j)] = Node(n.frame + j * PAGE, n.writable,
                                      parent_piece(j) if parent_piece else n.parent)
        for k in kids:
            if k[1] == "S":
                self.split(k[0], lambda j: (p, j))
            else:
                self.nodes[k].parent = (p, (self.nodes[k].frame - n.frame) // PAGE)

    def clear_window(self, y) -> None:
        """Everything y has in its window goes, recursively (before a 4 MiB mapping lands)."""
        for k in [k for k in self.nodes if k[0] == y and k[1] != "R"]:
            self.revoke(k, own=True)

    def map_one(self, x, s, y, t, write: bool, grant: bool) -> None:
        if self.lookup(x, s) is None:
            return
        if (y, "S") in self.nodes:             # a 4 KiB page onto a 4 MiB one: split it first
            self.split(y)
        skey, frame, sw = self.lookup(x, s)    # (the split may have split the source too)
        if skey[1] in ("S", "R"):
            grant = False                      # a piece of a 4 MiB page is mapped, not granted
        new_w = write and sw
        dst = self.nodes.get((y, t))
        if dst is not None and dst.parent == skey and dst.frame == frame and not grant:
            dst.writable = new_w               # the same mapping again: only the rights change
            return
        if dst is not None:
            self.revoke((y, t), own=True)      # overwriting revokes the old one first
        if skey not in self.nodes:             # ... which took the source with it (a cycle)
            return
        self.attach(skey, (y, t), frame, new_w, grant)

    def attach(self, skey, dkey, frame: int, new_w: bool, grant: bool) -> None:
        if grant:
            node = self.nodes.pop(skey)
            node.writable = new_w
            self.nodes[dkey] = node
            for n in self.nodes.values():
                if n.parent == skey:
                    n.parent = dkey
        else:
            self.nodes[dkey] = Node(frame, new_w, skey)

    def map_super(self, skey, y, write: bool, grant: bool) -> None:
        """A 4 MiB mapping (skey) onto y's whole window."""
        src = self.nodes.get(skey)
        if src is None:
            return
        new_w = write and src.writable
        dst = self.nodes.get((y, "S"))
        if dst is not None and dst.parent == skey and dst.frame == src.frame and not grant:
            dst.writable = new_w
            return
        self.clear_window(y)
        if skey not in self.nodes:
            return
        self.attach(skey, (y, "S"), src.frame, new_w, grant)

    def map_window(self, x, y, write: bool, grant: bool) -> None:
        if (x, "S") in self.nodes:
            self.map_super((x, "S"), y, write, grant)
            return
        for s in range(CHECK_SLOTS):
            self.map_one(x, s, y, s, write, grant)

    def unmap(self, x, slots: list[int], whole: bool, own: bool, flush: bool) -> None:
        if (x, "S") in self.nodes and slots:
            if whole:
                self.revoke((x, "S"), own=own, flush=flush)
                return
            self.split(x)                      # a part of it: it becomes pieces
        for s in slots:
            self.revoke((x, s), own=own, flush=flush)


def slots_of(fp: int) -> tuple[list[int], bool]:
    """The slots an fpage of the caller's covers (aligned down, as the kernel does; [] for the
    sizes the kernel ignores (below a page) and for fpages that miss the window), and whether
    it covers the whole window."""
    size = (fp >> 2) & 0x3F
    if size < 12:
        return [], False
    if size >= 32:
        return list(range(CHECK_SLOTS)), True
    base = fp & ~((1 << size) - 1) & 0xFFFFFFFF
    slots = [s for s in range(CHECK_SLOTS) if base <= WINDOW + s * PAGE < base + (1 << size)]
    return slots, size >= 22 and bool(slots)


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
            slots, whole = slots_of(self.fp)
            model.unmap(self.actor, slots, whole, own, flush)
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
            model.map_window(self.actor, self.target, write, grant)
        elif part == SUPER and self.actor == 0:
            model.map_super((0, "R"), self.target, write, grant)


actors = st.integers(0, PARTS - 1)
slot = st.integers(0, SLOTS - 1)


def mask_of(flush: bool, own: bool) -> int:
    return (FLUSH if flush else 0) | (ALL_SPACES if own else 0)


def mode(mask: int) -> str:
    return ("flush" if mask & FLUSH else "ro") + (", own" if mask & ALL_SPACES else "")


def place(draw, model: Model, anywhere: bool = False) -> tuple[int, int]:
    """A (participant, slot): mostly one that holds a mapping in the model (so the sequences
    build chains, overwrite, grant and revoke them), sometimes any."""
    keys = sorted(k for k in model.nodes if isinstance(k[1], int) and k[1] < SLOTS)
    keys += [(k[0], s) for k in sorted(model.nodes, key=str) if k[1] == "S" for s in range(SLOTS)]
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
def super_op(draw, model: Model):
    """The root task maps its 4 MiB page whole into a worker's window (over whatever is there);
    later operations map pieces of it on, map onto it, unmap parts of it (splits) or all."""
    y = draw(st.integers(1, PARTS - 1))
    w, g = draw(st.booleans()), draw(st.integers(0, 7)) == 0
    return Op(OP_MAP, 0, y, fpage(SUPER, 22, w, g), WINDOW,
              f"{'grant' if g else 'map'}_super(0 -> {y}, {'rw' if w else 'ro'})")


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
    model = initial.copy()
    seq: list[Op] = []
    for _ in range(data.draw(st.integers(1, MAX_OPS), label="length")):
        kind = data.draw(st.sampled_from([map_op, map_op, map_op, unmap_op, unmap_op, window_op,
                                          hostile_op, super_op]), label="kind")
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
        self.super_frame = self.read(sym("mdb_super_frame"))
        assert self.super_frame and not self.super_frame & 0x3FFFFF, hex(self.super_frame)
        self.snap = m.save_state()

    def read(self, va: int) -> int:
        return self.m.ram.read32(self.m.cpu.translate(va))

    def write(self, va: int, value: int) -> None:
        self.m.ram.write32(self.m.cpu.translate(va), value)

    def initial_model(self) -> Model:
        model = Model({(0, s): Node(f, True, None) for s, f in enumerate(self.root_frames)})
        model.nodes[(0, "R")] = Node(self.super_frame, True, None)
        return model

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
    for (p, s), n in model.nodes.items():
        if s == "S":
            for t in range(CHECK_SLOTS):
                out[(p, t)] = (n.frame + t * PAGE, n.writable)
        elif s != "R" and s < CHECK_SLOTS:
            out[(p, s)] = (n.frame, n.writable)
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
    # 4 MiB pages: split by a partial unmap or a 4 KiB map onto them (kernel mdb_split)
    sup = lambda y, w=True: Op(OP_MAP, 0, y, fpage(SUPER, 22, w), WINDOW,  # noqa: E731
                               f"map_super(0 -> {y})")
    win = lambda x, y: Op(OP_MAP, x, y, fpage(WINDOW, 22, True), 0,  # noqa: E731
                          f"map_window({x} -> {y})")
    unmap = lambda x, s, m: Op(OP_UNMAP, x, 0, fpage(R(s), 12), m,  # noqa: E731
                               f"unmap({x}:{s}, {mode(m)})")
    check(rig, [sup(1), unmap(1, 1, FLUSH | ALL_SPACES)])
    check(rig, [sup(1), win(1, 2), win(2, 3), unmap(1, 1, FLUSH)])
    check(rig, [sup(1), win(1, 2), unmap(2, 2, FLUSH | ALL_SPACES), unmap(1, 0, 0)])
    check(rig, [sup(1), Op(OP_MAP, 0, 1, fpage(R(0), 12, True), 2 * PAGE, "map(0:0 -> 1:2)")])
    check(rig, [sup(1), Op(OP_MAP, 1, 2, fpage(R(3), 12, True), 0, "map(1:3 -> 2:0)"),
                win(1, 3), unmap(1, 3, FLUSH)])
    check(rig, [sup(1), win(1, 2), Op(OP_MAP, 2, 1, fpage(R(1), 12, True), PAGE,
                                       "map(2:1 -> 1:1)")])
    check(rig, [sup(1), win(1, 2), Op(OP_MAP, 1, 2, fpage(R(1), 12, False), PAGE,
                                       "map(1:1 -> 2:1, ro)"),
                Op(OP_UNMAP, 1, 0, R(0) | 22 << 2, FLUSH, "unmap_size22(1:0, flush)")])


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_page_tables_follow_the_model(rig, data):
    check(rig, draw_sequence(data, rig.initial_model()))
