"""The default image end to end through the CLI: `l4emu boot images/hello.toml` boots the
kernel, sigma0 and the root task, which greets, runs an IPC round trip between two tasks,
has a page fault served by its pager, and powers off with status 0 (process status 1)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_hello_image_boots_and_shows_ipc_and_a_page_fault():
    r = subprocess.run([sys.executable, "-m", "emu.cli", "boot",
                        str(ROOT / "images" / "hello.toml")],
                       check=False, capture_output=True, timeout=120)
    out = r.stdout.decode()
    assert r.returncode == 1, (r.returncode, r.stderr.decode(), out)
    assert r.stderr == b""
    lines = out.splitlines()
    assert lines[0] == "L4/x86 V2 kernel (l4emu): booting"
    assert "root: hello from the root task, thread 4.0" in lines
    assert any(line.startswith("root: KIP at 0xfffff000: version 0x20001")
               and "entry by call gate" in line for line in lines)
    for n in (1, 2, 3):
        assert f"pong (task 5): got {n} from task 6" in lines
        assert f"ping (task 6): called pong with {n}, reply {n + 1} (error 0x0)" in lines
    assert any(line.startswith("pager: page fault of task 6 at 0x20000000") for line in lines)
    assert ("ping (task 6): the page at 0x20000000 says: hello from a page sigma0 gave the "
            "root task") in lines
    assert lines[-1] == "root: ping is done; all done, powering off"


def test_hello_is_deterministic():
    """The same image gives the same output and the same instruction count every run."""
    from .l4boot import boot
    runs = []
    for _ in range(2):
        s = boot("hello")
        r = s.run()
        runs.append((r.insns, s.text))
    assert runs[0] == runs[1]
