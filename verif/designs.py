"""One description per design with cocotb benches: the tests, ``psa verify``, ``psa sweep`` and
the benchmarks all locate, build and run a design's benches through its :class:`BenchDesign`.

A :class:`BenchDesign` names the hardware design (:mod:`psa.hw.designs`), its cocotb bench
modules and tests by purpose (``verify``: the random and reset tests; ``cycles``: the cycle
measurements; others such as ``capture`` or ``replay``), the build-folder tag of a parameter
set, and the environment variables that carry parameters and stimulus options into the bench.
Every build of a parameter set lives in ``<build_root>/<design>_<tag>``, whichever caller made
it, so a build is reused by all of them while its Verilog is unchanged.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Any

__all__ = ["Bench", "BenchDesign", "BENCH_DESIGNS", "get_bench"]


@dataclass(frozen=True)
class Bench:
    """A cocotb test module and the tests of it that one purpose runs."""

    module: str
    tests: tuple[str, ...]


#: Cycle points of one run: ``(n, k)`` for top-k, ``(n, rows, k)`` for the pruner.
Points = Sequence[Sequence[int]]


@dataclass(frozen=True)
class BenchDesign:
    """How to build and run one design's benches.

    ``benches`` maps a purpose (``verify``, ``cycles``, ...) to its :class:`Bench`;
    ``make_tag(params)`` names a full parameter set's build folder (after ``<name>_``);
    ``params_env(params)`` gives the bench its hardware parameters; ``count_var`` is the
    variable of the verification count (in ``unit``); ``cycles_env(points, packets, seed)``
    the variables of the ``cycles`` test, which writes its JSON to ``PSA_BENCH_OUT``.
    """

    name: str
    benches: Mapping[str, Bench]
    unit: str
    count_var: str
    default_count: int
    make_tag: Callable[[Mapping[str, Any]], str]
    params_env: Callable[[Mapping[str, Any]], dict[str, str]]
    cycles_env: Callable[[Points, int, int], dict[str, str]] | None = field(default=None)

    @property
    def verify(self) -> Bench:
        """The random and reset tests run by the RTL suite and ``psa verify``."""
        return self.benches["verify"]

    def bench(self, purpose: str) -> Bench:
        """The bench of ``purpose``; ValueError naming the purposes this design has."""
        if purpose not in self.benches:
            raise ValueError(f"{self.name}: no {purpose!r} bench; has {sorted(self.benches)}")
        return self.benches[purpose]

    def full(self, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``params`` with the design's defaults filled in (:mod:`psa.hw.designs`)."""
        from psa.hw.designs import get_design

        return {**get_design(self.name).defaults(), **(params or {})}

    def tag(self, params: Mapping[str, Any]) -> str:
        """The parameter part of the build folder's name (defaults filled in)."""
        return self.make_tag(self.full(params))

    def build_dir(self, params: Mapping[str, Any], build_root: str | os.PathLike,
                  verilog: str | None = None, generated: str | None = None) -> Path:
        """``<build_root>/<name>_<tag>``; a hand-supplied ``verilog`` that differs from the
        generated one (``generated``, made here if not given) gets a folder of its own
        (``_custom_<hash>``)."""
        name = f"{self.name}_{self.tag(params)}"
        if verilog is not None:
            if generated is None:
                from psa.hw.designs import get_design

                generated = get_design(self.name).verilog(**self.full(params))
            if verilog != generated:
                name += "_custom_" + sha256(verilog.encode()).hexdigest()[:10]
        return Path(build_root) / name

    def env(self, params: Mapping[str, Any], seed: int, count: int, idle: float,
            stall: float) -> dict[str, str]:
        """Environment of the ``verify`` tests: parameters, seed, ``count`` (in ``unit``) and
        the probabilities of an input gap (``idle``) and of back-pressure (``stall``)."""
        return {**self.params_env(self.full(params)), "PSA_SEED": str(seed),
                self.count_var: str(count), "PSA_IDLE": str(idle), "PSA_STALL": str(stall)}

    def build_and_run(self, params: Mapping[str, Any], build_root: str | os.PathLike, *,
                      purpose: str = "verify", tests: str | Sequence[str] | None = None,
                      env: Mapping[str, str] | None = None, verilog: str | None = None,
                      seed: int | None = None, quiet: bool = True) -> Path:
        """Build ``params`` (defaults filled in) in :meth:`build_dir` and run the ``purpose``
        bench's tests (or ``tests``) through :func:`psa.verif.runner.run_cocotb`.

        The bench gets :attr:`params_env` plus ``env`` (which wins). ``verilog`` replaces the
        generated Verilog (same top and ports). Returns the results XML; raises
        :class:`~psa.verif.runner.CocotbFailure` if a test failed and ValueError for a bad
        parameter before anything is built.
        """
        from psa.hw.designs import get_design
        from psa.verif.runner import run_cocotb

        bench = self.bench(purpose)
        design = get_design(self.name)
        full = self.full(params)
        generated = design.verilog(**full)
        build = self.build_dir(full, build_root, verilog, generated)
        if tests is None:
            tests = bench.tests
        return run_cocotb(verilog if verilog is not None else generated, design.toplevel,
                          bench.module, build, extra_env={**self.params_env(full), **(env or {})},
                          testcase=[tests] if isinstance(tests, str) else list(tests),
                          seed=seed, quiet=quiet)

    def measure_cycles(self, params: Mapping[str, Any], build_root: str | os.PathLike,
                       points: Points, *, packets: int = 100, seed: int = 1) -> Any:
        """Run the ``cycles`` test at ``points`` (``packets`` packets each where the bench
        draws packets); returns the JSON it wrote."""
        if self.cycles_env is None:
            raise ValueError(f"{self.name}: no cycles bench")
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "cycles.json"
            self.build_and_run(params, build_root, purpose="cycles",
                               env={**self.cycles_env(points, packets, seed),
                                    "PSA_BENCH_OUT": str(out)})
            return json.loads(out.read_text())


# ------------------------------------------------------------------------------------------------
# top-k engine (verif/benches/tb_topk.py)


def _topk_tag(p: Mapping[str, Any]) -> str:
    return f"p{p['lanes']}_w{p['width']}_n{p['max_n']}_{'s' if p['signed'] else 'u'}"


def _topk_params_env(p: Mapping[str, Any]) -> dict[str, str]:
    return {"PSA_LANES": str(p["lanes"]), "PSA_MAX_N": str(p["max_n"]),
            "PSA_SIGNED": str(int(p["signed"]))}


def _topk_cycles_env(points: Points, packets: int, seed: int) -> dict[str, str]:
    # n:k, or n:k:dataset (psa.verif.topk_cases.DATASETS; uniform when left out)
    return {"PSA_BENCH_POINTS": ",".join(":".join(map(str, pt)) for pt in points),
            "PSA_BENCH_PACKETS": str(packets), "PSA_SEED": str(seed)}


# ------------------------------------------------------------------------------------------------
# pruning unit (verif/benches/tb_pruner.py, tb_policy_replay.py)

#: Build-folder tag of the pruner: every parameter (all of them change the Verilog).
_PRUNER_TAG = (("max_tokens", "n"), ("n_heads", "h"), ("lanes", "p"), ("prob_bits", "pb"),
               ("score_bits", "sb"), ("mag_bits", "mb"), ("head_score_bits", "hb"),
               ("addr_bits", "ab"), ("layer_bits", "lb"), ("digit_bits", "db"))


def _pruner_tag(p: Mapping[str, Any]) -> str:
    return "_".join(f"{short}{p[name]}" for name, short in _PRUNER_TAG)


def _pruner_params_env(p: Mapping[str, Any]) -> dict[str, str]:
    return {"PSA_PRUNER_PARAMS": json.dumps(dict(p))}


def _pruner_cycles_env(points: Points, packets: int, seed: int) -> dict[str, str]:
    return {"PSA_BENCH_POINTS": json.dumps([list(map(int, pt)) for pt in points])}


_TOPK_BENCH = "psa.verif.benches.tb_topk"
_PRUNER_BENCH = "psa.verif.benches.tb_pruner"

#: The designs with cocotb benches, by :mod:`psa.hw.designs` name.
BENCH_DESIGNS: dict[str, BenchDesign] = {
    "topk": BenchDesign(
        "topk", {"verify": Bench(_TOPK_BENCH, ("random_packets", "reset_mid_packet")),
                 "cycles": Bench(_TOPK_BENCH + "_cycles", ("cycles",))},
        "packets", "PSA_PACKETS", 200, _topk_tag, _topk_params_env, _topk_cycles_env),
    "pruner": BenchDesign(
        "pruner", {"verify": Bench(_PRUNER_BENCH, ("golden_sequences", "reset_mid_layer")),
                   "cycles": Bench(_PRUNER_BENCH + "_cycles", ("cycles",)),
                   "decode_cycles": Bench(_PRUNER_BENCH + "_cycles", ("decode_steps",)),
                   "capture": Bench(_PRUNER_BENCH + "_capture", ("capture_trace",)),
                   "decode": Bench(_PRUNER_BENCH + "_decode",
                                   ("decode_sequences", "decode_reset_mid_step")),
                   "replay": Bench("psa.verif.benches.tb_policy_replay", ("replay_policy",)),
                   "replay_decode": Bench("psa.verif.benches.tb_policy_replay",
                                          ("replay_decode",))},
        "sequences", "PSA_SEQUENCES", 10, _pruner_tag, _pruner_params_env, _pruner_cycles_env),
}


def get_bench(name: str) -> BenchDesign:
    """The :class:`BenchDesign` of ``name``; ValueError naming the designs that have one."""
    if name not in BENCH_DESIGNS:
        raise ValueError(f"no cocotb bench for design {name!r}; choose one of "
                         f"{sorted(BENCH_DESIGNS)}")
    return BENCH_DESIGNS[name]
