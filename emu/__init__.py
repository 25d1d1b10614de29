"""l4emu: a full-system IA-32 emulator on Unicorn 2.1.4 that boots an L4 microkernel.

The package is the machine (cpu, memory, clock, buses, devices, firmware, boot loader) and the
tools that observe it through one Machine API (CLI, debugger, GDB stub, benchmarks).
"""
__version__ = "0.1.0"
