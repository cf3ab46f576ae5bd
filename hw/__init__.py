"""Amaranth 0.5 components of the sparse-attention accelerator, and Verilog export."""
