"""Builds the one native piece of l4emu: the per-block budget callback (emu/native/blockhook.c).

Everything else is Python. The callback is called by Unicorn at the start of every translated
block; it keeps the exact retired-instruction count and stops the run when the budget is spent,
without entering Python (DESIGN D5, research/unicorn.md section 12).
"""
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("emu._blockhook", sources=["emu/native/blockhook.c"],
                  extra_compile_args=["-O2"]),
    ],
)
