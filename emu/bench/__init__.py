"""`l4emu bench` (issue 6): lmbench-style lat_ctx, pingpong and null-syscall figures measured on
the L4 kernel in exact guest instructions, with host time beside them.

    session.py   boot images/bench-l4.toml once, snapshot, run one measurement per point
    floor.py     the engine floor: a bare call-gate round trip with one CR3 write
    lat_ctx.py   the ring of N tasks passing a token (lmbench's lat_ctx method)
    pingpong.py  one-way short IPC inter/intra address space, and the null system call
    report.py    lmbench-format output, summary table, progress bar, JSON, PNG plot
    cli.py       the argument parser and the commands (wired into emu/cli.py)
"""
