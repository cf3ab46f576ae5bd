"""EDA tool flows over the designs of :mod:`psa.hw`: Verilator lint (:mod:`.lint`), Yosys and
nextpnr synthesis (:mod:`.synth`) and design-space sweeps (:mod:`.sweep`)."""
