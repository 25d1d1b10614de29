"""Tests of the L4 kernel (kernel/) booted with its servers: guest suites and host-driven checks."""
