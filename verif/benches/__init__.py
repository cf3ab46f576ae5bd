"""cocotb bench modules (imported inside the simulator by :func:`psa.verif.runner.run_cocotb`)."""
