"""Debugging tools on the Machine API (DESIGN D10): the `l4emu debug` shell, the GDB remote stub,
symbols from the kernel's and modules' ELF files, and L4-aware views of the kernel's data.

    symbols.py   ELF symbols and DWARF line tables: address <-> name, address -> file:line
    expr.py      the shell's expression language (numbers, registers, symbols, [deref])
    views.py     machine views that need no kernel: registers, page tables, IRQ controllers
    l4view.py    the kernel's own data (threads, tasks, spaces) read through its symbols
    shell.py     the interactive debugger
    gdbstub.py   GDB remote serial protocol over TCP

None of these reaches into Unicorn: they use emu.machine.Machine and emu.cpu.Cpu only.
"""
