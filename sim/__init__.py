"""Cycle-level DRAM simulator driven by access traces."""
