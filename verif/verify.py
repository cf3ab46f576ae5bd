"""Run a design's cocotb bench for one hardware configuration: the library behind ``psa verify``.

The benches are the test suite's own (:mod:`psa.verif.benches`): ``tb_topk`` (random packets of
every dataset with overflows, input gaps and output back-pressure, then resets mid-packet) and
``tb_pruner`` (generated multi-layer sequences compared with the golden cascade after every
layer, then a reset mid-layer and the error flag). :func:`verify` builds the configuration with
Verilator in ``<build_root>/<design>_<tag>`` (the folder the RTL tests use for the same
parameters, so an existing build is reused), runs the bench and returns a
:class:`VerifyResult`: pass/fail per test, the seed, and for a failure the first mismatching
packet with its expected and actual values, read from the cocotb results XML.
"""

from __future__ import annotations

import ast
import os
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["TestOutcome", "Mismatch", "VerifyResult", "verify",
           "default_build_root", "read_outcomes", "parse_mismatch"]


def default_build_root() -> Path:
    """``$PSA_SIM_BUILD``, else ``./sim_build`` (the folder the test suite uses)."""
    return Path(os.environ.get("PSA_SIM_BUILD", "sim_build"))


@dataclass
class Mismatch:
    """The first mismatching packet: its tag (index, dataset, n, k), expected and actual items.

    ``position`` is the first differing item of the two lists (``None`` if they are not
    lists); ``expected``/``actual`` are the values as the bench printed them.
    """

    tag: str
    expected: Any
    actual: Any
    position: int | None

    def describe(self, width: int = 4) -> str:
        """Two short lines around the first difference (full lists are in the JSON)."""
        if self.position is None or not isinstance(self.expected, list) \
                or not isinstance(self.actual, list):
            return f"{self.tag}:\n  expected {self.expected!r}\n  actual   {self.actual!r}"
        i = self.position
        return (f"{self.tag}: {len(self.expected)} items expected, {len(self.actual)} received; "
                f"first difference at item {i} (items are (index, value)):\n"
                f"  expected [{i}:]: {self.expected[i:i + width]!r}\n"
                f"  actual   [{i}:]: {self.actual[i:i + width]!r}")


_FIRST = re.compile(r"first: (?P<tag>.*?): expected (?P<exp>.*?), got (?P<got>.*?)(?: \| |$)",
                    re.DOTALL)


def parse_mismatch(message: str) -> Mismatch | None:
    """The first mismatch of a :class:`~psa.verif.streams.Scoreboard` failure message.

    The scoreboard reports ``"<context>: N mismatch(es); first: <tag>: expected <items>, got
    <items> | ..."``; returns ``None`` for any other message.
    """
    m = _FIRST.search(message)
    if m is None:
        return None

    def value(text: str) -> Any:
        try:
            return ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            return text.strip()

    exp, got = value(m.group("exp")), value(m.group("got"))
    position = None
    if isinstance(exp, list) and isinstance(got, list):
        position = next((i for i, (a, b) in enumerate(zip(exp, got, strict=False)) if a != b),
                        min(len(exp), len(got)))
    return Mismatch(m.group("tag"), exp, got, position)


@dataclass
class TestOutcome:
    """One cocotb test: ``passed``, and the failure message (``None`` when it passed)."""

    name: str
    passed: bool
    message: str | None = None


def read_outcomes(results_xml: str | os.PathLike) -> list[TestOutcome]:
    """Per-test outcomes from a cocotb xUnit results file (failure ``message`` attributes)."""
    out = []
    for case in ET.parse(results_xml).getroot().iter("testcase"):
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        message = None
        if bad is not None:
            message = bad.get("message") or (bad.text or "").strip() or bad.tag
        out.append(TestOutcome(case.get("name", "?"), bad is None, message))
    return out


@dataclass
class VerifyResult:
    """Outcome of :func:`verify`. ``count`` is in ``unit`` (packets or sequences)."""

    design: str
    params: dict[str, Any]
    seed: int
    count: int
    unit: str
    passed: bool
    tests: list[TestOutcome]
    build_dir: str
    log: str
    elapsed_s: float
    error: str | None = None                    # a failure outside the tests (build, setup)
    mismatch: Mismatch | None = field(default=None)

    @property
    def first_failure(self) -> str | None:
        """The message of the first failed test, or the build error."""
        if self.error:
            return self.error
        return next((t.message for t in self.tests if not t.passed), None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"first_failure": self.first_failure}


def verify(design: str, params: Mapping[str, Any] | None = None, *, count: int | None = None,
           seed: int = 1, build_root: str | os.PathLike | None = None, idle: float = 0.2,
           stall: float = 0.3, tests: Sequence[str] | None = None,
           verilog: str | None = None,
           extra_env: Mapping[str, str] | None = None) -> VerifyResult:
    """Run ``design``'s cocotb bench for one configuration on Verilator.

    Parameters
    ----------
    design, params
        A design with a bench (:data:`psa.verif.designs.BENCH_DESIGNS`: ``topk``,
        ``pruner``) and its hardware
        parameters (defaults of :mod:`psa.hw.designs` filled in).
    count
        Random packets (top-k) or generated sequences (pruner); default the bench's own.
    seed
        Seed of the stimulus (``PSA_SEED``) and of cocotb's random module.
    build_root
        Parent of the build folder (default :func:`default_build_root`).
    idle, stall
        Probability of an input gap and of output back-pressure per cycle.
    tests
        Bench tests to run (default: the random and the reset test).
    verilog
        Run the bench on this Verilog instead of the generated one (same top and ports; built
        in a folder of its own): e.g. a hand-edited or post-synthesis netlist.
    extra_env
        Bench environment variables that override the ones derived from ``params`` (e.g.
        ``{"PSA_SIGNED": "0"}`` checks a signed build against unsigned expectations).

    A bad parameter raises ValueError before anything is built; a failed build or test is
    reported in the result, not raised.
    """
    from psa.hw.designs import get_design
    from psa.verif.designs import get_bench
    from psa.verif.runner import CocotbFailure, results_path

    bench = get_bench(design)
    full = bench.full(params)
    if count is None:
        count = bench.default_count
    if count < 1:
        raise ValueError(f"count ({bench.unit}) must be >= 1, got {count}")
    for name, p in (("idle", idle), ("stall", stall)):
        if not 0.0 <= p < 1.0:
            raise ValueError(f"{name} must be a probability in [0, 1), got {p}")
    get_design(design).validate(**full)  # ValueError before anything is built
    root = build_root if build_root is not None else default_build_root()
    build = bench.build_dir(full, root, verilog)
    results = results_path(build, bench.verify.module)
    results.unlink(missing_ok=True)  # a failed build must not leave an old run's results
    t0 = time.perf_counter()
    error = None
    try:
        bench.build_and_run(full, root, tests=tests, verilog=verilog, seed=seed,
                            env={**bench.env(full, seed, count, idle, stall),
                                 **(extra_env or {})})
    except (Exception, SystemExit) as e:  # failed tests, or the build/simulator failed
        if not results.exists():
            error = str(e) if isinstance(e, CocotbFailure) else f"{type(e).__name__}: {e}"
            build_log = build / "build.log"
            if build_log.exists():
                tail = build_log.read_text(errors="replace").strip().splitlines()[-15:]
                error += "\n" + "\n".join(tail)
    outcomes = read_outcomes(results) if error is None and results.exists() else []
    passed = error is None and bool(outcomes) and all(t.passed for t in outcomes)
    result = VerifyResult(design, full, seed, count, bench.unit, passed, outcomes, str(build),
                          str(build / "sim.log"), round(time.perf_counter() - t0, 2), error)
    if result.first_failure:
        result.mismatch = parse_mismatch(result.first_failure)
    return result
