"""`trace ipc` and `trace ctx` on the real kernel (images/hello.toml): the trace points of
kernel/l4view.toml's [trace] section print each message and each thread switch as it happens,
and tracing changes nothing in the guest (the run ends at the same instruction count)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from emu.debug.l4view import LayoutError, find_layout, parse_layout

from .kernels import HELLO_IMAGE as MULTIBOOT_HELLO, debug_script

ROOT = Path(__file__).resolve().parents[2]
L4_HELLO = ROOT / "images" / "hello.toml"

IPC = re.compile(r"^\[(\d+)\] ipc (\S+) -> (\S+) ([a-z -]+?) w0=(0x[0-9a-f]+) "
                 r"w1=(0x[0-9a-f]+) (ok(?:, fpage received)?|error 0x[0-9a-f]+ \([^)]*\)) "
                 r"\((?:(fast|general) path|(long) message)\)$")
CTX = re.compile(r"^\[(\d+)\] ctx (\S+) -> (\S+) \((cr3 0x[0-9a-f]{8}|same space|space kept)"
                 r"(?:, fast path)?\)$")


def final_count(out: str) -> int:
    m = re.search(r"^(\d+) instructions retired", out, re.M)
    assert m, out
    return int(m.group(1))


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trace")
    r = debug_script(L4_HELLO, "trace on ipc\ntrace on ctx\nc\ncount\n", tmp_path=tmp)
    assert r.returncode == 1, r.stdout + r.stderr        # the hello image's exit status
    assert "Traceback" not in r.stdout + r.stderr and "internal error" not in r.stdout
    return r.stdout


def events(out: str) -> list[tuple]:
    """('ipc', count, sender, receiver, op, w0, w1, result, path) and
    ('ctx', count, from, to, space, line) in the order printed."""
    ev = []
    for line in out.splitlines():
        if m := IPC.match(line):
            c, s, r, op, w0, w1, res, path, long_path = m.groups()
            ev.append(("ipc", int(c), s, r, op, int(w0, 16), int(w1, 16), res, path or long_path))
        elif m := CTX.match(line):
            c, f, t, sp = m.groups()
            ev.append(("ctx", int(c), f, t, sp, line))
        else:
            assert not re.match(r"^\[\d+\] (ipc|ctx)", line), f"malformed trace line: {line}"
    return ev


def test_trace_on_ipc_and_ctx_says_so(traced):
    assert "(l4emu) trace on ipc\ntracing: ipc\n(l4emu) trace on ctx\ntracing: ctx, ipc" \
        in traced


def test_the_ping_pong_exchange(traced):
    ev = events(traced)
    ipcs = [e for e in ev if e[0] == "ipc"]
    pingpong = [(s, r, op, w0, w1, res) for _, _, s, r, op, w0, w1, res, _ in ipcs
                if {s, r} == {"5.0", "6.0"}]
    assert pingpong == [
        ("6.0", "5.0", "call", 1, 0, "ok"), ("5.0", "6.0", "reply-wait", 2, 0, "ok"),
        ("6.0", "5.0", "call", 2, 0, "ok"), ("5.0", "6.0", "reply-wait", 3, 0, "ok"),
        ("6.0", "5.0", "call", 3, 0, "ok"), ("5.0", "6.0", "reply-wait", 4, 0, "ok"),
    ], traced
    # Both paths deliver: the first call finds pong off its ready list (general path), the
    # rest go through the fast path.
    paths = [e[8] for e in ipcs if {e[2], e[3]} == {"5.0", "6.0"}]
    assert paths[0] == "general" and paths[1:] == ["fast"] * 5
    # The fast path switches by itself: its ctx line has the same count as its ipc line.
    fast = [e for e in ipcs if e[8] == "fast"]
    for e in fast:
        i = ev.index(e)
        nxt = ev[i + 1]
        assert nxt[0] == "ctx" and nxt[1] == e[1] and (nxt[2], nxt[3]) == (e[2], e[3])
        assert nxt[5].endswith(", fast path)")


def test_the_switches_alternate_between_ping_and_pong(traced):
    ev = events(traced)
    first_call = next(i for i, e in enumerate(ev) if e[0] == "ipc" and e[2:5] ==
                      ("6.0", "5.0", "call"))
    last_reply = max(i for i, e in enumerate(ev) if e[0] == "ipc" and e[2:4] == ("5.0", "6.0"))
    ctx = [e for e in ev[first_call:last_reply + 2] if e[0] == "ctx"]
    assert [(e[2], e[3]) for e in ctx] == [("6.0", "5.0"), ("5.0", "6.0")] * 3
    spaces = {e[3]: e[4] for e in ctx}
    assert spaces["5.0"] != spaces["6.0"] and all(s.startswith("cr3 0x") for s in spaces.values())
    # Over the whole run, each switch starts from the thread the previous one ran.
    allctx = [e for e in ev if e[0] == "ctx"]
    assert len(allctx) > 20
    assert allctx[0][2].startswith("kernel@")           # the first thread starts from boot
    for a, b in zip(allctx, allctx[1:]):
        assert b[2] == a[3], (a, b)
    counts = [e[1] for e in ev]
    assert counts == sorted(counts)


def test_page_faults_sigma0_and_the_final_send(traced):
    ipcs = [e[2:8] for e in events(traced) if e[0] == "ipc"]
    assert ("4.0", "2.0", "call", 0xFFFFFFFC, 0, "ok") in ipcs           # root asks sigma0
    assert any(e[:3] == ("2.0", "4.0", "reply-wait map") and e[5] == "ok, fpage received"
               for e in ipcs)
    i = ipcs.index(("6.0", "4.1", "page-fault", 0x20000000, 0x50000ae0, "ok"))
    assert ipcs[i + 1][:4] == ("4.1", "6.0", "reply-wait map", 0x20000000)
    assert ipcs[i + 1][5] == "ok, fpage received"
    assert ipcs[-1] == ("6.0", "4.0", "send", 0x600d, 0, "ok")


def test_tracing_changes_nothing(traced, tmp_path):
    r = debug_script(L4_HELLO, "c\ncount\n", tmp_path=tmp_path)
    assert final_count(r.stdout) == final_count(traced) > 300_000
    guest = [line for line in traced.splitlines() if line.startswith(("pong", "ping", "root"))]
    plain = [line for line in r.stdout.splitlines() if line.startswith(("pong", "ping", "root"))]
    assert guest == plain and len(guest) > 8


def test_trace_with_breakpoints_stepping_and_off(tmp_path):
    """A user breakpoint at a trace point stops after the trace line; a function traced at
    its return prints while stepping; `trace off ipc` stops the lines; the count still
    matches an untraced run."""
    cmds = ("trace on ctx\nb resume_tcb\nc\nd 1\ntrace off ctx\ntrace on ipc\n"
            "tb ipc_transfer\nc\ns 200\ntrace off ipc\nc\ncount\n")
    r = debug_script(L4_HELLO, cmds, tmp_path=tmp_path)
    out = r.stdout
    assert "Traceback" not in out + r.stderr and "internal error" not in out
    stop = out[out.index("(l4emu) b resume_tcb"):out.index("(l4emu) d 1")]
    assert re.search(r"\[\d+\] ctx kernel@0x[0-9a-f]+ -> 2\.0 \(cr3 0x[0-9a-f]{8}\)\n"
                     r"breakpoint 1, 0x[0-9a-f]+ <resume_tcb>", stop), stop
    stepped = out[out.index("(l4emu) s 200"):out.index("(l4emu) trace off ipc")]
    assert re.search(r"\[\d+\] ipc 4\.0 -> 2\.0 call w0=0xfffffffc w1=0x0 ok "
                     r"\(general path\)", stepped), stepped
    rest = out[out.index("(l4emu) trace off ipc"):]
    assert "tracing: off" in rest and "] ipc " not in rest and "] ctx " not in rest
    plain = debug_script(L4_HELLO, "c\ncount\n", tmp_path=tmp_path)
    assert final_count(out) == final_count(plain.stdout)


def test_trace_ipc_needs_the_l4_kernel(tmp_path):
    r = debug_script(MULTIBOOT_HELLO, "trace on ipc\ntrace on ctx\ntrace\n", tmp_path=tmp_path)
    out = r.stdout
    assert "trace ipc: no L4 kernel symbols in this image" in out
    assert "trace ctx: no L4 kernel symbols in this image" in out
    assert out.rstrip().endswith("(l4emu) trace\ntracing: off")


def test_the_trace_section_is_checked():
    layout = find_layout(None, None)
    assert {p.symbol for p in layout.trace["ipc"]} == {"fastpath_deliver", "ipc_transfer",
                                                       "lipc_transfer"}
    assert {p.symbol for p in layout.trace["ctx"]} == {"resume_tcb", "fastpath_deliver"}
    base = '[symbols]\ntcbs = 0\n[tcb.fields]\nid = { offset = 0 }\n'
    ok = parse_layout(base + '[trace]\nfields = { m = 4 }\n'
                      'ipc = { symbol = "x", sender = "eax", receiver = "tcb:m of ebx" }\n')
    assert ok.trace["ipc"][0].values["receiver"] == "tcb:m of ebx" and not ok.trace["ctx"]
    for bad, why in [
        ('ipc = { symbol = "x", sender = "eax" }', "needs 'receiver'"),
        ('ctx = { to = "eax" }', "needs a 'symbol'"),
        ('ctx = { symbol = "x", to = "eax", colour = "red" }', "unknown key 'colour'"),
        ('ctx = { symbol = "x", to = "tcb:nope of eax" }', "no TCB field 'nope'"),
        ('ctx = { symbol = "x", to = "eax", at = "exit" }', "'at' is"),
    ]:
        with pytest.raises(LayoutError, match=re.escape(why)):
            parse_layout(base + "[trace]\n" + bad + "\n")


@pytest.mark.slow
def test_tracing_the_kernel_test_suite_changes_nothing(tmp_path):
    """The whole kernel test suite (images/ktest.toml: page faults, maps, the idle thread,
    kdebug stops, exceptions as IPC) traced: every line well formed, the guest's output and
    the final count as without tracing."""
    run = "c\n" * 60 + "count\n"
    traced = debug_script(ROOT / "images" / "ktest.toml", "trace on ipc\ntrace on ctx\n" + run,
                          tmp_path=tmp_path, timeout=300).stdout
    plain = debug_script(ROOT / "images" / "ktest.toml", run, tmp_path=tmp_path,
                         timeout=300).stdout
    assert "ktest: ALL TESTS PASSED" in traced
    ev = events(traced)                                   # asserts every line parses
    assert sum(e[0] == "ipc" for e in ev) > 500 and sum(e[0] == "ctx" for e in ev) > 500
    assert any(e[0] == "ctx" and e[3] == "idle" and e[4] == "space kept" for e in ev)
    assert {e[4] for e in ev if e[0] == "ipc"} >= {"call", "reply-wait", "send",
                                                   "page-fault", "reply-wait map"}
    # long messages (ktest long_*): delivered, cut, and failed on a page-fault timeout
    long = [e for e in ev if e[0] == "ipc" and e[8] == "long"]
    assert any(e[7] == "ok" for e in long) and any("0xe0" in e[7] for e in long)
    assert any("0x80" in e[7] for e in long)
    guest = [line for line in traced.splitlines()
             if not re.match(r"^(\[\d+\] (ipc|ctx) |\(l4emu\) trace|tracing: )", line)]
    assert guest == plain.splitlines()
    assert final_count(traced) == final_count(plain)
