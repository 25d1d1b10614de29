"""One interactive session through a real terminal: tmux runs `l4emu debug`, keys are typed
with send-keys and the screen is read with capture-pane (prompt_toolkit: completion, history,
Ctrl-C at the prompt)."""
from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time

import pytest

from .kernels import HELLO_IMAGE, ROOT, asm_kernel

TMUX = shutil.which("tmux")


class Terminal:
    def __init__(self, sock: str, name: str) -> None:
        self.base = [TMUX, "-S", sock]
        self.name = name

    def keys(self, *keys: str) -> None:
        subprocess.run(self.base + ["send-keys", "-t", self.name, *keys], check=True,
                       timeout=10)

    def screen(self) -> str:
        return subprocess.run(self.base + ["capture-pane", "-p", "-t", self.name, "-S", "-200"],
                              capture_output=True, text=True, timeout=10).stdout

    def wait_for(self, text: str, count: int = 1, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s = self.screen()
            if s.count(text) >= count:
                return s
            time.sleep(0.1)
        raise AssertionError(f"{text!r} (x{count}) never appeared on the screen:\n{self.screen()}")

    def wait_for_empty_prompt(self, timeout: float = 20) -> None:
        """Until the last line on the screen is a prompt with nothing typed after it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = [line for line in self.screen().splitlines() if line.strip()]
            if lines and lines[-1].rstrip() == "(l4emu)":
                return
            time.sleep(0.1)
        raise AssertionError(f"no empty prompt:\n{self.screen()}")


def start(tmp_path, target) -> tuple[Terminal, str]:
    sock = str(tmp_path / "tmux.sock")
    cmd = (f"cd {shlex.quote(str(ROOT))} && HOME={shlex.quote(str(tmp_path))} "
           f"{shlex.quote(sys.executable)} -m emu.cli debug {shlex.quote(str(target))}; "
           "echo EXITED $?; sleep 60")
    subprocess.run([TMUX, "-S", sock, "new-session", "-d", "-s", "dbg", "-x", "132", "-y", "50",
                    cmd], check=True, timeout=10)
    return Terminal(sock, "dbg"), sock


needs_tmux = pytest.mark.skipif(TMUX is None,
                                reason="tmux is not installed (apt-get install tmux)")


@needs_tmux
def test_interactive_session_in_a_terminal(tmp_path):
    t, sock = start(tmp_path, HELLO_IMAGE)
    try:
        t.wait_for("(l4emu)")
        # Tab completes an `info` topic.
        t.keys("info dev", "Tab")
        t.wait_for("(l4emu) info devices")
        t.keys("Enter")
        t.wait_for("com1: ports 0x3f8-0x3ff")
        # A symbol completes too.
        t.keys("b pu", "t", "s")
        t.keys("Enter")
        t.wait_for("breakpoint 1 at 0x0010013b <puts>")
        t.keys("c", "Enter")
        t.wait_for("breakpoint 1, 0x0010013b <puts>")
        # History: Up brings back `c`.
        t.keys("Up")
        t.wait_for("(l4emu) c", count=2)
        t.keys("Enter")
        t.wait_for("breakpoint 1, 0x0010013b <puts>", count=2)
        # A typo gets a suggestion; Ctrl-C at the prompt only clears the line.
        t.keys("contineu", "Enter")
        t.wait_for("did you mean continue")
        t.keys("half a line")
        t.wait_for("(l4emu) half a line")
        t.keys("C-c")
        t.wait_for_empty_prompt()
        t.keys("count", "Enter")
        t.wait_for("instructions retired")
        t.keys("q", "Enter")
        screen = t.wait_for("EXITED 0")
        assert "Traceback" not in screen
    finally:
        subprocess.run([TMUX, "-S", sock, "kill-server"], capture_output=True, timeout=10)


@needs_tmux
def test_ctrl_c_stops_a_running_guest(tmp_path):
    k = asm_kernel(tmp_path, "spin:\n  inc ecx\n  jmp spin\n")
    t, sock = start(tmp_path, k)
    try:
        t.wait_for("(l4emu)")
        # Under load the first prompt may drop keys typed before it reads the terminal, and
        # the run may not have started when a Ctrl-C arrives (at the prompt it only clears
        # the line): while the last line is an empty prompt type `c` again, else press
        # Ctrl-C, until the run reports the stop.
        deadline = time.monotonic() + 20
        while "stopped: interrupted (Ctrl-C)" not in (screen := t.screen()):
            assert time.monotonic() < deadline, screen
            lines = [line for line in screen.splitlines() if line.strip()]
            if lines and lines[-1].rstrip() == "(l4emu)":
                t.keys("c", "Enter")
                typed = time.monotonic() + 5            # its echo, before deciding again
                while (t.screen().count("(l4emu) c") <= screen.count("(l4emu) c")
                       and time.monotonic() < typed):
                    time.sleep(0.1)
            else:
                t.keys("C-c")
                time.sleep(0.5)
        t.keys("q", "Enter")
        t.wait_for("EXITED 0")
    finally:
        subprocess.run([TMUX, "-S", sock, "kill-server"], capture_output=True, timeout=10)
