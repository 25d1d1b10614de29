"""Tests of `l4emu bench` (emu/bench, servers/bench): pinned exact guest instruction counts."""
