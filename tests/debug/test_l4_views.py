"""The L4-aware views on the real kernel: threads, tasks and a TCB of the hello image, read
through kernel/l4view.toml, agree with what the root task set up."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_info_threads_tasks_and_tcb_on_the_hello_image(tmp_path):
    cmds = tmp_path / "cmds"
    cmds.write_text("b pong\nc\ninfo threads\ninfo tasks\ninfo tcb 4.0\nq\n")
    r = subprocess.run([sys.executable, "-m", "emu.cli", "debug",
                        str(ROOT / "images" / "hello.toml"), "--commands", str(cmds)],
                       capture_output=True, text=True, timeout=120)
    out = r.stdout
    assert "breakpoint 1" in out and "<pong>" in out, out + r.stderr
    threads = out[out.index("(l4emu) info threads"):out.index("(l4emu) info tasks")]
    rows = {line.split()[1] if line.startswith("*") else line.split()[0]: line
            for line in threads.splitlines()[2:]}
    assert "receiving" in rows["2.0"]                  # sigma0 waits for requests
    assert "receiving" in rows["4.0"] and "receiving" in rows["4.1"]   # root, its pager
    assert rows["5.0"].startswith("*")                  # pong runs: we broke at its entry
    assert "4.1" in rows["5.0"] and "4.1" in rows["6.0"]   # both are paged by the root's pager
    tasks = out[out.index("(l4emu) info tasks"):out.index("(l4emu) info tcb")]
    assert "4.0 receiving, 4.1 receiving" in tasks
    chief = {line.split()[0]: line.split()[1] for line in tasks.splitlines()[2:] if line.strip()}
    assert chief["2"] == chief["4"] == "kernel"         # the boot tasks: the kernel's clan
    assert chief["5"] == chief["6"] == "4"              # ping and pong: the root task's
    assert "idle" in chief["-"] or "idle" in tasks      # the kernel's own thread, not a task
    tcb = out[out.index("(l4emu) info tcb 4.0"):]
    assert "waits for 0xe00c0000 (6.0)" in tcb          # root waits for ping's report
    assert "pager chain: 2.0" in tcb


def test_mapping_tree_of_the_page_the_pager_mapped(tmp_path):
    """`info mappings ID VA`: the page sigma0 gave the root task (at 0x20000000), which the
    root task's pager then mapped into ping (task 6): one tree, the same frame at each level."""
    cmds = tmp_path / "cmds"
    cmds.write_text("c\ninfo mappings 6.0 0x20000000\ninfo mappings 5.0 0x20000000\nq\n")
    r = subprocess.run([sys.executable, "-m", "emu.cli", "debug",
                        str(ROOT / "images" / "hello.toml"), "--commands", str(cmds)],
                       capture_output=True, text=True, timeout=120)
    out = r.stdout
    tree = out[out.index("mapping tree of task 6"):].splitlines()[1:4]
    assert tree[0].split()[:2] == ["task", "2"]               # sigma0's own mapping: the root
    assert tree[1].split()[:3] == ["task", "4", "0x20000000"]  # the root task's
    assert tree[2].startswith("*") and "task 6 0x20000000" in tree[2]
    frames = {line.split("->")[1].split()[0] for line in tree}
    assert len(frames) == 1 and all(line.endswith("rw") for line in tree)
    assert "task 5 has no mapping of 0x20000000" in out


# l4view.toml field -> the kernel/layout.inc constant it must sit at.
LAYOUT_NAMES = {
    "id": "TCB_ID_LO", "id_hi": "TCB_ID_HI", "state": "TCB_STATE", "space": "TCB_SPACE",
    "wait_for": "TCB_WAIT_FOR", "prio": "TCB_PRIO", "timeslice": "TCB_TIMESLICE",
    "send_queue": "TCB_SENDQ", "queue_next": "TCB_SQ_NEXT", "partner": "TCB_PARTNER",
    "pager": "TCB_PAGER_LO", "timeout": "TCB_DEADLINE", "esp": "TCB_KSP",
    "cpu_time": "TCB_CPU_TIME", "task": "TCB_TASK", "exc_handler": "TCB_EXCH_LO",
    "tls_base": "TCB_TLS_BASE", "tls_limit": "TCB_TLS_LIMIT",
    "msg0": "TCB_MSG0", "msg1": "TCB_MSG1", "res_dope": "TCB_RES_DOPE",
    "res_msg0": "TCB_RES_MSG0", "res_msg1": "TCB_RES_MSG1", "snd_desc": "TCB_SND_DESC",
    "rcv_desc": "TCB_RCV_DESC", "rcv_state": "TCB_RCV_STATE", "tcb_space": "TCB_SPACE",
}


def test_the_view_layout_follows_the_kernel_layout():
    """kernel/l4view.toml restates TCB offsets for the debugger; every one must be where
    kernel/layout.inc puts it (a moved field would make the views show another field)."""
    import re

    from emu.debug.l4view import parse_layout
    equ = {n: int(v, 16) for n, v in re.findall(r"^\.equ (TCB_\w+), (0x[0-9A-Fa-f]+)",
                                                (ROOT / "kernel" / "layout.inc").read_text(),
                                                re.MULTILINE)}
    layout = parse_layout((ROOT / "kernel" / "l4view.toml").read_text())
    fields = {**layout.fields, **layout.trace_fields}
    assert set(fields) <= set(LAYOUT_NAMES), set(fields) - set(LAYOUT_NAMES)
    for name, f in fields.items():
        assert f.offset == equ[LAYOUT_NAMES[name]], (name, hex(f.offset))
