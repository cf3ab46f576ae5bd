"""Experiments and reports: policies run over a model and corpus (:mod:`.experiment`), their
K/V traces through the DRAM model, and the tables and plots of ``psa report``
(:mod:`.encoder`)."""
