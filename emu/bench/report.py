"""Output of `l4emu bench` (emu/bench): lmbench-format lines, a progress bar and a summary
table (rich when installed, plain text otherwise), the JSON record and the PNG plot
(matplotlib, the optional extra `plot`)."""
from __future__ import annotations

import json
import platform
import statistics
import sys
from collections.abc import Iterable, Sequence
from contextlib import contextmanager

from .. import __version__


def host_stats(values: Sequence[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "runs": len(values)}


def environment() -> dict:
    import unicorn
    return {"emulator": "l4emu", "emulator_version": __version__,
            "unicorn": unicorn.__version__, "python": platform.python_version(),
            "host": platform.machine(), "processor": platform.processor() or None}


@contextmanager
def progress(total: int, description: str, quiet: bool = False):
    """Yields advance(label): a rich progress bar on a terminal, one stderr line per step
    otherwise (or nothing when quiet)."""
    if quiet:
        yield lambda label="": None
        return
    try:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
    except ImportError:
        done = [0]

        def advance(label: str = "") -> None:
            done[0] += 1
            print(f"[{done[0]}/{total}] {description} {label}", file=sys.stderr, flush=True)
        yield advance
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[label]}"),
                  transient=True, console=_console(stderr=True)) as bar:
        task = bar.add_task(description, total=total, label="")

        def advance(label: str = "") -> None:
            bar.update(task, advance=1, label=label)
        yield advance


def _console(stderr: bool = False):
    from rich.console import Console
    c = Console(stderr=stderr)
    if not c.is_terminal:                   # piped: do not squeeze the table into 80 columns
        c = Console(stderr=stderr, width=160)
    return c


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """The summary table: rich if installed, aligned plain text otherwise (stdout)."""
    rows = [[_fmt(c) for c in row] for row in rows]
    try:
        from rich.table import Table
    except ImportError:
        widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c)
                  for i, c in enumerate(columns)]
        print(f"\n{title}")
        print("  ".join(c.rjust(w) for c, w in zip(columns, widths)))
        for r in rows:
            print("  ".join(v.rjust(w) for v, w in zip(r, widths)))
        return
    t = Table(title=title)
    for c in columns:
        t.add_column(c, justify="right")
    for r in rows:
        t.add_row(*r)
    _console().print(t)


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.2f}"
    return str(v)


def write_json(path: str, record: dict) -> None:
    with open(path, "w") as f:
        json.dump(record, f, indent=2)
        f.write("\n")


def plot_lat_ctx(path: str, points: list[dict], floor_ns: float | None) -> None:
    """Switch cost against N, one curve per size (lmbench's lat_ctx graphs): guest
    instructions per switch on the left, host time per switch on the right."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        from ..errors import UserError
        raise UserError("--plot needs matplotlib: pip install 'l4emu[plot]'") from None
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.5))
    for kib in sorted({p["size_kib"] for p in points}):
        for entry in sorted({p["entry"] for p in points}):
            pts = sorted((p for p in points if p["size_kib"] == kib and p["entry"] == entry),
                         key=lambda p: p["procs"])
            xs = [p["procs"] for p in pts]
            label = f"size={kib}k {entry}"
            a.plot(xs, [p["insns_per_switch_net"] for p in pts], marker="o", label=label)
            b.plot(xs, [p["host_ns_per_switch_net"] / 1000 for p in pts], marker="o",
                   label=label)
    if floor_ns:
        b.axhline(floor_ns / 1000, color="grey", linestyle="--", label="engine floor")
    a.set(xlabel="processes (N)", ylabel="guest instructions per switch (overhead subtracted)",
          title="lat_ctx-style: exact guest cost", ylim=(0, None))
    b.set(xlabel="processes (N)", ylabel="host µs per switch (median, overhead subtracted)",
          title="lat_ctx-style: host time", ylim=(0, None))
    ns = sorted({p["procs"] for p in points})
    for ax in (a, b):
        ax.set_xscale("log", base=2)
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.minorticks_off()
    a.legend(fontsize=8)
    b.legend(fontsize=8)
    fig.suptitle(f"l4emu {__version__}: L4 context switch, ring of N tasks")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
