"""Verification: the Verilator/cocotb runner, reusable stream drivers and the benches.

The benches live in the package (not only under ``tests/``) so that ``psa verify`` runs the
very same bench as the test suite.
"""
