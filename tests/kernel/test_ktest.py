"""The kernel test suite (servers/ktest, images/ktest.toml): one boot, every guest test
checked by name, plus what the host sees of them (console lines, debugger stops, the exit).

The guest prints "ktest: <name> ok" per test and "ktest: ALL TESTS PASSED" at the end, in the
style of xv6's usertests; a failing check prints its file, line and values before
"ktest: <name> FAILED", which the assertion message here repeats."""
from __future__ import annotations

import re

import pytest

from emu.machine import Stop

from .l4boot import boot

# In the order the guest runs them (servers/ktest/main.c, TESTS).
GUEST_TESTS = [
    "kip", "boot_modules", "kdebug_output", "id_nearest",
    "ipc_send_receive", "ipc_call_reply", "ipc_open_wait_source", "ipc_both_entries",
    "ipc_timeout_zero", "ipc_timeout_finite", "ipc_fast_fallback", "ipc_not_existent",
    "ipc_dead_thread",
    "ipc_cancel", "ipc_map_window", "ipc_grant", "ipc_map_sizes", "ipc_fast_path_window",
    "pagefault_pager", "fpage_unmap", "sigma0_protocol", "sigma0_superpage",
    "fpage_unmap_recursive", "fpage_unmap_own", "fpage_remap_readonly", "fpage_grant_moves",
    "fpage_map_overwrites", "fpage_map_cycle",
    "exregs_create", "exregs_modify", "exc_int80", "exc_gp", "exc_hostile",
    "io_ports", "irq_rtc", "tls_threads", "tls_exception_reply", "io_unmap_recursive",
    "io_unmap_own", "superpage_split", "ipc_fastpath_refused",
    "task_lifecycle", "task_not_chief", "task_clan",
    "clan_redirect_out", "clan_redirect_in", "clan_call_through_chief", "clan_deceit",
    "clan_id_nearest", "clan_long_redirect", "clan_delete",
    "sched_priority_preempt", "sched_round_robin", "thread_switch_donation",
    "thread_schedule_mcp",
    "hostile_kernel_memory", "hostile_other_task_memory", "hostile_privileged",
    "hostile_trap_flag", "hostile_nested_task", "hostile_fuzz",
    "long_dwords", "long_string_pagefault", "long_cut", "long_pf_timeout", "long_hostile",
    "long_map", "long_cost",
]


class Run:
    def __init__(self, shortcuts: bool = True) -> None:
        sess = boot("ktest")
        self.kdebug_stops = 0
        m = sess.machine
        m.cpu.fast_stores = shortcuts
        while True:
            r = m.run(max_insns=3_000_000_000)
            if r.reason is not Stop.KDEBUG:
                break
            self.kdebug_stops += 1
        self.result = r
        self.text = sess.text
        self.lines = self.text.splitlines()
        self.fast_stores, self.kept = m.cpu.bh.fastw_clears, m.cpu.bh.kept

    def section(self, name: str) -> str:
        """The console output of one guest test."""
        start = self.text.find(f"ktest: {name} ...\n")
        end = self.text.find("ktest: ", self.text.find(f"ktest: {name} ", start + 1) + 1)
        return self.text[start:end]


@pytest.fixture(scope="module")
def run() -> Run:
    return Run()


def test_suite_runs_every_test_and_passes(run):
    """The guest ran exactly the listed tests, in order, and powered off with status 0."""
    started = [m.group(1) for m in re.finditer(r"^ktest: (\w+) \.\.\.$", run.text, re.MULTILINE)]
    assert started == GUEST_TESTS
    assert "ktest: ALL TESTS PASSED" in run.lines, run.text[-3000:]
    assert run.result.reason is Stop.EXIT and run.result.exit_status == 1   # (0 << 1) | 1
    assert "KERNEL PANIC" not in run.text and "KERNEL EXCEPTION" not in run.text


def test_engine_shortcuts_change_nothing_the_guest_sees(run):
    """The fast guest stores and the TLB entries kept across CR3 writes (emu/native/
    blockhook.c) are invisible to the guest: with both off, the whole suite prints the same
    and retires exactly as many instructions, over every IPC path, page fault, mapping
    change, address-space switch and exception the kernel tests exercise."""
    assert run.fast_stores > 0 and run.kept > 0          # the shortcuts were used
    plain = Run(shortcuts=False)
    assert plain.fast_stores == 0 and plain.kept == 0
    assert plain.text == run.text
    assert plain.result.insns == run.result.insns
    assert plain.kdebug_stops == run.kdebug_stops


@pytest.mark.parametrize("name", GUEST_TESTS)
def test_guest(run, name):
    """Each guest test reports ok."""
    assert f"ktest: {name} ok" in run.lines, run.section(name)


def test_kdebug_console_output(run):
    """int3 + cmp al, op: outstring, outchar, outhex32, outdec, outnstring (cut to its length)
    and kd_display print; enter_kdebug prints its text and stops the machine (Stop.KDEBUG)."""
    assert "KD: 1234abcd -42 nstring display\n" in run.text
    assert "L4: kdebug: ktest enters the debugger\n" in run.text
    assert run.kdebug_stops == 1


def test_hostile_threads_die_with_a_kernel_report(run):
    """Each hostile attempt ends as an exception the kernel reports and handles: the kernel
    and task 30 (0x1e) kill line, with the right exception, never a machine stop."""
    kills = re.findall(r"^L4: thread 1e\.00 killed: (#\w+) error (0x[0-9a-f]+) at eip",
                       run.section("hostile_kernel_memory") + run.section("hostile_privileged"),
                       re.MULTILINE)
    assert [k for k, _ in kills[:4]] == ["#PF"] * 4            # kernel memory, TCBs, KIP
    assert [int(e, 16) for _, e in kills[:4]] == [5, 7, 5, 7]  # user read/write, present
    rest = [k for k, _ in kills[4:]]
    assert rest.count("#GP") == 18 and rest[-4:] == ["#UD", "#DE", "#NM", "#UD"], rest
    assert "killed: #GP error 0x00000402" in run.text          # int 0x80: gate DPL check


def test_exceptions_become_ipc_with_a_handler(run):
    """exc_int80, exc_gp: with an exception handler, int 0x80 (#GP 0x402), #GP, #UD, #DE and
    #NM are messages to it and its reply changes the registers (the guest checks the frame
    and the resumed state): no kill line; a handler that does not exist kills as before."""
    assert "killed" not in run.section("exc_int80")
    assert re.findall(r"killed: (#\w+) error", run.section("exc_gp")) == ["#GP"]


def test_long_ipc_cost(run):
    """ktest long_cost prints one-way costs in guest instructions (docs/abi.md, "Long
    messages"): a long message costs more than a short one and a 4 KiB string more than 8
    dwords, all within bounds that catch a copy gone byte-by-byte or a lost fast path."""
    m = re.search(r"long ipc cost: short (\d+), 8 dwords (\d+), 4 KiB string (\d+) instructions",
                  run.text)
    assert m, run.section("long_cost")
    short, dwords, string = map(int, m.groups())
    assert short < 250, short
    assert short < dwords < 1000, dwords
    assert dwords < string < 3000, string
