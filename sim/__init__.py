"""Cycle-level DRAM simulator driven by access traces.

>>> from psa.sim import simulate, load_preset
>>> stats = simulate(trace, "ddr4-2400", scheduler="frfcfs")   # doctest: +SKIP

See docs/dram.md for the model and docs/dram_validation.md for the validation.
"""

from .addr_map import DEFAULT_MAPPING, MAPPINGS
from .frontend import Workload, load_workload, read_spatten_csv
from .memory_system import ControllerConfig, simulate
from .scheduler import SCHEDULERS
from .spec import DramSpec, PresetError, constraint_table, list_presets, load_preset
from .stats import SCHEMA_VERSION, Stats, reduction

__all__ = [
    "simulate", "ControllerConfig", "Stats", "reduction", "SCHEMA_VERSION",
    "DramSpec", "load_preset", "list_presets", "PresetError", "constraint_table",
    "Workload", "load_workload", "read_spatten_csv", "MAPPINGS", "DEFAULT_MAPPING", "SCHEDULERS",
]
