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
