"""psa: sparse-attention accelerator toolkit.

Subpackages follow the data flow scores -> top-k -> pruning -> access trace -> DRAM model:

- :mod:`psa.golden`  bit-exact NumPy reference model (the spec the RTL must match)
- :mod:`psa.hw`      Amaranth 0.5 components and Verilog export
- :mod:`psa.verif`   cocotb stream drivers, benches and the Verilator runner
- :mod:`psa.sim`     cycle-level DRAM simulator
- :mod:`psa.cli`     the ``psa`` command
"""

__version__ = "0.1.0"
