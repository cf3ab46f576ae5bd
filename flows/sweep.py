"""Design-space sweeps: cycles, ECP5 area and Fmax (and optionally verification) over a grid.

A sweep evaluates every point of a grid of hardware parameters (:func:`grid`) with
:func:`evaluate_point`, in parallel on a local process pool or on a Dask distributed cluster
(:func:`run_sweep`). Each finished point is appended to ``<out>/points.jsonl`` as it completes,
so an interrupted sweep resumes from the points already done; at the end ``sweep.json``,
``sweep.csv`` and PNG plots are written (:func:`write_outputs`).

Per point (one flat row; ``status`` is ``ok``, ``invalid`` for a parameter combination the
design rejects, or ``error`` if a stage failed; ``error`` holds the first line of each failing
stage's message, ``error_detail`` the full tracebacks with the tools' log tails, ``error_log``
the last lines of a failing tool's log by stage; failed points are drawn as red crosses in the
plots):

- cycles (Verilator, the bench's ``cycles`` test, fixed seed): for top-k, uniform random
  packets of ``n = max_n`` and ``n = max_n / 4`` elements (``k = n / 4``), input at full rate,
  ``out_ready`` high; ``latency_cycles`` (first input beat to last output beat, one packet in
  flight) and ``interval_cycles`` (spacing of back-to-back packets), medians over
  ``packets`` packets, for ``n = max_n``. For the pruner: ``rows`` query rows over ``n =
  max_tokens`` tokens, prune to ``n / 2`` and fetch; ``interval_cycles`` is the accumulation
  time of the rows. ``cycles_per_beat`` = ``interval_cycles / beats``, where a beat is ``P``
  elements (1.0: ``P`` elements every cycle).
- synthesis (:func:`psa.flows.synth.synthesize`): ``lut4``, ``ff``, ``ccu2c``, ``bram``, ``dsp``,
  ``generic_cells``, ``fmax_mhz``, ``fmax_placed_mhz`` (estimate after placement),
  ``routed``, ``fits`` (flat figures of ``SynthResult.row()``).
- ``throughput_meps``: million elements per second = ``lanes * fmax_mhz / cycles_per_beat``;
  when routing was cut short, ``throughput_est_meps`` is the same from ``fmax_placed_mhz``
  (an estimate, kept apart and drawn hollow in the plots); ``elements_per_cycle`` =
  ``lanes / cycles_per_beat`` (known without place and route).
- verification (optional): ``verified`` (bool) from :func:`psa.verif.verify.verify`.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import math
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

__all__ = ["SweepOptions", "parse_axis", "grid", "point_key", "evaluate_point", "run_sweep",
           "load_done", "write_outputs", "write_csv", "pareto_front", "plot", "CYCLE_BENCHES",
           "CSV_COLUMNS"]


@dataclass(frozen=True)
class SweepOptions:
    """What to run at every point (all plain data, so it travels to Dask workers).

    ``packets``: cycle-test packets per size (top-k) or query rows (pruner); ``seed`` seeds the
    cycle and verification stimulus; ``verify_count`` packets/sequences for verification
    (``None``: the bench's default); ``build_root`` holds the Verilator builds and
    ``cache_root`` the synthesis cache (``None``: :func:`psa.flows.synth.cache_dir`), both as seen
    by the machine that runs the point.
    """

    cycles: bool = True
    synth: bool = True
    verify: bool = False
    place: bool = True
    abc9: bool = False
    widelut: bool = True
    placer: str = "heap"
    router: str = "router1"
    device: str = "ecp5-85k"
    target_mhz: float = 200.0
    packets: int = 20
    seed: int = 1
    verify_count: int | None = None
    synth_timeout_s: float | None = None
    build_root: str = "sim_build"
    cache_root: str | None = None

    def result_fields(self) -> dict[str, Any]:
        """The options that change a point's figures (paths and timeouts do not)."""
        d = asdict(self)
        for name in ("build_root", "cache_root", "synth_timeout_s"):
            d.pop(name)
        if d["router"] == "router1":    # keys of default-router sweeps stay as they were
            d.pop("router")
        if d["widelut"]:                # and of default LUT mapping
            d.pop("widelut")
        if d["placer"] == "heap":       # and default placer
            d.pop("placer")
        return d


# ------------------------------------------------------------------------------------------------
# Grid


_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def parse_axis(text: str, kind: type, name: str = "value") -> list[Any]:
    """``"4,8,16"`` -> ``[4, 8, 16]`` for an int parameter; bools take true/false/1/0/yes/no.

    Duplicates are dropped (first kept). Raises ValueError naming ``name`` on a bad item.
    """
    items = [t.strip() for t in str(text).split(",")]
    if not items or any(t == "" for t in items):
        raise ValueError(f"{name}: expected a comma-separated list such as '4,8,16', "
                         f"got {text!r}")
    out: list[Any] = []
    for t in items:
        if kind is bool:
            if t.lower() not in _TRUE | _FALSE:
                raise ValueError(f"{name}: {t!r} is not a boolean (true/false, 1/0, yes/no)")
            v: Any = t.lower() in _TRUE
        else:
            try:
                v = kind(t)
            except ValueError:
                raise ValueError(f"{name}: {t!r} is not a valid {kind.__name__}") from None
        if v not in out:
            out.append(v)
    return out


def grid(axes: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the axes, the last axis varying fastest."""
    names = list(axes)
    return [dict(zip(names, combo, strict=True))
            for combo in itertools.product(*(axes[n] for n in names))]


def point_key(design: str, params: Mapping[str, Any], options: SweepOptions) -> str:
    """Identity of a point's result: design, parameters and result-changing options."""
    blob = json.dumps({"design": design, "params": dict(params),
                       "options": options.result_fields()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------------
# Cycles


@dataclass(frozen=True)
class CycleBench:
    """What a sweep measures with a design's ``cycles`` test (the bench itself, its build
    folder and environment are the design's :class:`psa.verif.designs.BenchDesign`)."""

    points: Callable[[Mapping[str, Any], SweepOptions], list[list[int]]]
    summarise: Callable[[Mapping[str, Any], Any], dict[str, Any]]


def _topk_points(p: Mapping[str, Any], o: SweepOptions) -> list[list[int]]:
    sizes = sorted({max(p["lanes"], p["max_n"] // 4), p["max_n"]})
    return [[n, max(1, n // 4)] for n in sizes]


def _median(values: Iterable[float]) -> float:
    s = sorted(values)
    if not s:
        return math.nan
    mid = len(s) // 2
    return float(s[mid]) if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def _topk_summary(p: Mapping[str, Any], data: Any) -> dict[str, Any]:
    per_size = []
    for point in data["points"]:
        n = point["n"]
        per_size.append({"n": n, "k": point["k"], "beats": math.ceil(n / p["lanes"]),
                         "latency_cycles": _median(point["latency"]),
                         "interval_cycles": _median(point["interval"])})
    main = max(per_size, key=lambda r: r["n"])
    return {"n": main["n"], "k": main["k"], "latency_cycles": main["latency_cycles"],
            "interval_cycles": main["interval_cycles"],
            "cycles_per_beat": main["interval_cycles"] / main["beats"],
            "cycles_by_size": per_size}


def _pruner_points(p: Mapping[str, Any], o: SweepOptions) -> list[list[int]]:
    n = p["max_tokens"]
    return [[n, o.packets, max(1, n // 2)]]


def _pruner_summary(p: Mapping[str, Any], data: Any) -> dict[str, Any]:
    r = data[0]
    return {"n": r["n"], "k": r["k"], "latency_cycles": r["prune_cycles"] + r["fetch_cycles"],
            "interval_cycles": r["acc_cycles"], "cycles_per_beat": r["acc_cycles"] / r["beats"],
            "prune_cycles": r["prune_cycles"], "fetch_cycles": r["fetch_cycles"]}


#: Designs whose bench has a ``cycles`` test.
CYCLE_BENCHES: dict[str, CycleBench] = {
    "topk": CycleBench(_topk_points, _topk_summary),
    "pruner": CycleBench(_pruner_points, _pruner_summary),
}


def measure_cycles(design: str, params: Mapping[str, Any],
                   options: SweepOptions) -> dict[str, Any]:
    """Run ``design``'s ``cycles`` test for one configuration; returns the row's cycle fields."""
    from psa.verif.designs import get_bench

    bench = CYCLE_BENCHES[design]
    data = get_bench(design).measure_cycles(params, options.build_root,
                                            bench.points(params, options),
                                            packets=options.packets, seed=options.seed)
    return bench.summarise(params, data)


# ------------------------------------------------------------------------------------------------
# One point


def evaluate_point(design: str, params: Mapping[str, Any],
                   options: SweepOptions) -> dict[str, Any]:
    """Evaluate one grid point; never raises for a bad point (see the module docstring).

    Stages run in order cycles, synthesis, verification; a failing stage is recorded in
    ``error`` (``"<stage>: <message>"``) and the later stages still run.
    """
    from psa.hw.designs import get_design

    t0 = time.perf_counter()
    row: dict[str, Any] = {"design": design, **params, "status": "ok", "error": None,
                           "key": point_key(design, params, options)}
    spec = get_design(design)
    full = {**spec.defaults(), **params}
    try:
        spec.validate(**full)
    except (ValueError, TypeError) as e:
        row.update(status="invalid", error=str(e), elapsed_s=0.0)
        return row
    errors: list[str] = []
    details: dict[str, str] = {}
    logs: dict[str, str] = {}  # stage -> last lines of the failing tool's log

    def stage(name: str, fn: Callable[[], dict[str, Any]]) -> None:
        try:
            row.update(fn())
        except Exception as e:  # a stage failure is a result of the point, not of the sweep
            text = str(e).strip()
            first = text.splitlines()[0] if text else ""
            tail = getattr(e, "log_tail", None)
            if tail is not None:
                logs[name] = str(tail).rstrip()
                first = first.removesuffix("; last lines of its log:")
                first += "; log tail in error_log" if logs[name] else "; its log is empty"
            errors.append(f"{name}: {type(e).__name__}: {first}")
            details[name] = "".join(traceback.format_exception(type(e), e, e.__traceback__))

    if options.cycles and design in CYCLE_BENCHES:
        stage("cycles", lambda: measure_cycles(design, full, options))
    if options.synth:
        stage("synth", lambda: _synth_fields(design, full, options))
    if options.verify:
        stage("verify", lambda: _verify_fields(design, full, options))
    lanes = full.get("lanes", 1)
    cpb = row.get("cycles_per_beat")
    if cpb:
        row["elements_per_cycle"] = lanes / cpb
        if row.get("fmax_mhz"):
            row["throughput_meps"] = lanes * row["fmax_mhz"] / cpb
        elif row.get("fmax_placed_mhz"):
            row["throughput_est_meps"] = lanes * row["fmax_placed_mhz"] / cpb
    if errors:
        row.update(status="error", error="; ".join(errors), error_detail=details)
        if logs:
            row["error_log"] = logs
    row["elapsed_s"] = round(time.perf_counter() - t0, 1)
    return row


def _synth_fields(design: str, params: Mapping[str, Any],
                  options: SweepOptions) -> dict[str, Any]:
    from psa.flows.synth import synthesize

    r = synthesize(design, params, device=options.device, target_mhz=options.target_mhz,
                   abc9=options.abc9, widelut=options.widelut, place=options.place,
                   placer=options.placer, router=options.router,
                   cache_root=Path(options.cache_root) if options.cache_root else None,
                   timeout_s=options.synth_timeout_s)
    row = r.row()
    for name in params:
        row.pop(name, None)
    return row | {"synth_cached": r.cached}


def _verify_fields(design: str, params: Mapping[str, Any],
                   options: SweepOptions) -> dict[str, Any]:
    from psa.verif.designs import BENCH_DESIGNS
    from psa.verif.verify import verify

    if design not in BENCH_DESIGNS:
        return {}
    r = verify(design, params, count=options.verify_count, seed=options.seed,
               build_root=options.build_root)
    if not r.passed:
        raise AssertionError(f"verification failed (seed {r.seed}): {r.first_failure}")
    return {"verified": True, "verify_count": r.count}


# ------------------------------------------------------------------------------------------------
# Running a sweep


def load_done(path: Path) -> dict[str, dict[str, Any]]:
    """Rows of ``points.jsonl`` by key (later lines win; a torn last line is ignored)."""
    done: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return done
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and "key" in row:
            done[row["key"]] = row
    return done


@dataclass
class SweepRun:
    """What :func:`run_sweep` returns: rows in grid order and how many were reused."""

    rows: list[dict[str, Any]]
    reused: int
    evaluated: int
    outputs: dict[str, str] = field(default_factory=dict)


Evaluator = Callable[[str, Mapping[str, Any], SweepOptions], dict[str, Any]]


def run_sweep(design: str, axes: Mapping[str, Sequence[Any]], out: str | os.PathLike,
              options: SweepOptions = SweepOptions(), *, jobs: int = 1,
              dask_address: str | None = None, dask_timeout_s: float = 20.0,
              restart: bool = False,
              evaluate: Evaluator = evaluate_point,
              on_start: Callable[[int, int], None] | None = None,
              on_point: Callable[[dict[str, Any]], None] | None = None,
              plots: bool = True) -> SweepRun:
    """Evaluate every point of ``grid(axes)`` of ``design`` and write the outputs to ``out``.

    Points whose row (same :func:`point_key`) is already in ``out/points.jsonl`` with status
    ``ok`` or ``invalid`` are reused unless ``restart``. The rest run on ``jobs`` local
    processes (``jobs == 1``: in this process), or on the Dask scheduler at ``dask_address``
    (``tcp://host:port``, connection timeout ``dask_timeout_s``) when given. Each finished
    row is appended to ``points.jsonl`` at once. ``on_start(total, reused)`` and
    ``on_point(row)`` report progress. On KeyboardInterrupt the outputs of the finished points
    are written and the interrupt is re-raised.
    """
    from psa.hw.designs import get_design

    spec = get_design(design)
    known = {p.name for p in spec.params}
    unknown = set(axes) - known
    if unknown:
        raise ValueError(f"{design}: unknown parameter(s) {sorted(unknown)}; allowed: "
                         f"{sorted(known)}")
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    full_axes = {p.name: list(axes.get(p.name, [p.default])) for p in spec.params}
    points = grid(full_axes)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    options = replace(options, build_root=str(Path(options.build_root).resolve()))
    journal = out / "points.jsonl"
    done = {} if restart else load_done(journal)
    keys = [point_key(design, p, options) for p in points]
    rows: dict[str, dict[str, Any]] = {k: done[k] for k in keys
                                       if k in done and done[k]["status"] in ("ok", "invalid")}
    todo = [(k, p) for k, p in zip(keys, points, strict=True) if k not in rows]
    if on_start:
        on_start(len(points), len(rows))

    def finish(row: dict[str, Any]) -> None:
        rows[row["key"]] = row
        with journal.open("a") as f:
            f.write(json.dumps(row, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if on_point:
            on_point(row)

    def ordered() -> list[dict[str, Any]]:
        return [rows[k] for k in keys if k in rows]

    meta = {"design": design, "axes": full_axes, "options": asdict(options),
            "grid_points": len(points)}
    try:
        if dask_address:
            _run_dask(dask_address, dask_timeout_s, design, todo, options, evaluate, finish)
        elif jobs == 1 or len(todo) <= 1:
            for _, params in todo:
                finish(evaluate(design, params, options))
        else:
            _run_pool(jobs, design, todo, options, evaluate, finish)
    except KeyboardInterrupt:
        write_outputs(out, ordered(), meta | {"interrupted": True}, plots=False)
        raise
    result = SweepRun(ordered(), len(points) - len(todo), len(todo))
    result.outputs = write_outputs(out, result.rows, meta, plots=plots)
    return result


def _die_with_parent() -> None:
    """Pool initializer: a worker ends when the sweep process dies (Linux), so a killed sweep
    leaves no worker, and through the tools' own guard no Yosys or nextpnr, running."""
    if sys.platform == "linux":
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)     # PR_SET_PDEATHSIG


def _run_pool(jobs: int, design: str, todo: list[tuple[str, dict[str, Any]]],
              options: SweepOptions, evaluate: Evaluator,
              finish: Callable[[dict[str, Any]], None]) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn: workers start clean (no inherited threads from the progress display).
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(todo)),
                               mp_context=multiprocessing.get_context("spawn"),
                               initializer=_die_with_parent)
    try:
        futures = {pool.submit(evaluate, design, params, options): params
                   for _, params in todo}
        for fut in as_completed(futures):
            finish(_row_or_error(fut, design, futures[fut], options))
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def _run_dask(address: str, timeout_s: float, design: str, todo: list[tuple[str, dict[str, Any]]],
              options: SweepOptions, evaluate: Evaluator,
              finish: Callable[[dict[str, Any]], None]) -> None:
    try:
        from dask.distributed import Client, as_completed
    except ImportError:  # pragma: no cover - dask is a dependency
        raise RuntimeError("--dask needs dask[distributed]: pip install 'dask[distributed]'") \
            from None
    try:
        client = Client(address, timeout=f"{timeout_s}s")
    except OSError as e:
        raise RuntimeError(f"cannot reach the Dask scheduler at {address}: {e}") from None
    try:
        futures = {}
        for key, params in todo:
            fut = client.submit(evaluate, design, params, options, pure=False,
                                key=f"psa-sweep-{design}-{key}-{time.time_ns()}")
            futures[fut] = params
        try:
            for fut in as_completed(futures):
                finish(_row_or_error(fut, design, futures[fut], options))
        except BaseException:
            client.cancel(list(futures))
            raise
    finally:
        client.close()


def _row_or_error(fut: Any, design: str, params: dict[str, Any],
                  options: SweepOptions) -> dict[str, Any]:
    """The future's row, or an ``error`` row if the worker itself died."""
    try:
        return fut.result()
    except Exception as e:
        return {"design": design, **params, "status": "error",
                "error": f"worker: {type(e).__name__}: {e}",
                "key": point_key(design, params, options)}


# ------------------------------------------------------------------------------------------------
# Outputs

#: CSV columns after the design's parameters (absent figures are left empty).
CSV_COLUMNS = ("status", "n", "k", "latency_cycles", "interval_cycles", "cycles_per_beat",
               "elements_per_cycle", "lut4", "ccu2c", "ff", "bram", "dsp", "placed_comb",
               "port_register_ffs", "generic_cells", "fmax_mhz", "fmax_placed_mhz", "routed",
               "fits", "throughput_meps", "throughput_est_meps",
               "verified", "device", "elapsed_s", "error")


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]], param_names: Sequence[str]) -> None:
    """One line per point: parameters, then :data:`CSV_COLUMNS`."""
    columns = [*param_names, *CSV_COLUMNS]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for row in rows:
            w.writerow({c: ("" if row.get(c) is None else row.get(c)) for c in columns})


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_outputs(out: Path, rows: Sequence[Mapping[str, Any]], meta: Mapping[str, Any], *,
                  plots: bool = True) -> dict[str, str]:
    """``sweep.json`` (``meta`` + rows), ``sweep.csv`` and, if ``plots``, the PNG plots."""
    out = Path(out)
    params = list(meta["axes"])
    files = {"json": out / "sweep.json", "csv": out / "sweep.csv"}
    _atomic_write(files["json"], json.dumps({**meta, "points": list(rows)}, indent=1,
                                            default=str) + "\n")
    write_csv(files["csv"], rows, params)
    if plots:
        files.update(plot(rows, params, out, title=meta.get("design", "")))
    return {k: str(v) for k, v in files.items()}


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points not dominated in (smaller ``x``, larger ``y``), by ascending x.

    A point is dominated if another has ``x' <= x`` and ``y' >= y`` with one strict.
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def _label(row: Mapping[str, Any], varying: Sequence[str]) -> str:
    short = {"lanes": "P", "width": "W", "max_n": "N", "max_tokens": "N", "n_heads": "H",
             "signed": "s"}
    return " ".join(f"{short.get(n, n)}{int(row[n]) if isinstance(row[n], bool) else row[n]}"
                    for n in varying)


def plot(rows: Sequence[Mapping[str, Any]], params: Sequence[str], out: Path,
         title: str = "") -> dict[str, Path]:
    """cycles_vs_luts.png, fmax_vs_lanes.png and pareto.png of the ``ok`` rows; ``error`` rows
    are drawn as red crosses (at their x value when they have one) with a legend entry."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r.get("status") == "ok"]
    failed = [r for r in rows if r.get("status") == "error"]
    varying = [n for n in params if len({json.dumps(r.get(n)) for r in ok + failed}) > 1] or \
        [n for n in params if n == "lanes"]
    files = {}

    def mark_failed(ax, x_key: str) -> None:
        """Failed points as red crosses along the bottom edge at their x value (or listed in
        a corner when they have none), with one legend entry."""
        placed = [r for r in failed if r.get(x_key) is not None]
        if placed:
            ax.scatter([r[x_key] for r in placed], [0.03] * len(placed), marker="x",
                       color="red", s=60, zorder=4, transform=ax.get_xaxis_transform(),
                       clip_on=False, label=f"failed point ({len(failed)}; see sweep.json)")
            for r in placed:
                ax.annotate(_label(r, varying) or "failed", (r[x_key], 0.03), fontsize=7,
                            color="red", xycoords=("data", "axes fraction"), xytext=(3, 3),
                            textcoords="offset points")
        unplaced = [r for r in failed if r.get(x_key) is None]
        if unplaced:
            names = ", ".join(_label(r, varying) or "point" for r in unplaced)
            ax.scatter([], [], marker="x", color="red",
                       label=None if placed else f"failed point ({len(failed)}; see sweep.json)")
            ax.text(0.02, 0.02, f"x failed: {names}", color="red", fontsize=7,
                    transform=ax.transAxes, ha="left", va="bottom")
        if failed:
            ax.legend(fontsize=7)

    def save(fig, name: str) -> None:
        fig.tight_layout()
        path = out / name
        fig.savefig(path, dpi=120)
        plt.close(fig)
        files[name.removesuffix(".png")] = path

    def empty(ax, text: str) -> None:
        ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)

    # 1. cycles per element against LUT4
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    pts = [r for r in ok if r.get("lut4") and r.get("interval_cycles")]
    for r in pts:
        y = r["interval_cycles"] / r["n"]
        ax.scatter(r["lut4"], y, color="tab:blue")
        ax.annotate(_label(r, varying), (r["lut4"], y), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
    if not pts:
        empty(ax, "no point with both cycles and LUT4")
    ax.set_xlabel("LUT4 (design, ECP5)")
    ax.set_ylabel("cycles per element (back-to-back packets of n = N)")
    mark_failed(ax, "lut4")
    ax.set_title(f"{title}: cycles vs area")
    ax.grid(alpha=0.3)
    save(fig, "cycles_vs_luts.png")

    # 2. Fmax against lanes, one line per setting of the other parameters
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    pts = [r for r in ok if r.get("fmax_mhz") and "lanes" in r]
    est = [r for r in ok if not r.get("fmax_mhz") and r.get("fmax_placed_mhz") and "lanes" in r]
    others = [n for n in varying if n != "lanes"]
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in pts:
        groups.setdefault(_label(r, others) or title, []).append(r)
    for name, group in sorted(groups.items()):
        group = sorted(group, key=lambda r: r["lanes"])
        ax.plot([r["lanes"] for r in group], [r["fmax_mhz"] for r in group], marker="o",
                label=name)
    if est:
        ax.scatter([r["lanes"] for r in est], [r["fmax_placed_mhz"] for r in est],
                   facecolors="none", edgecolors="tab:gray",
                   label="estimate after placement (routing unfinished)")
    if pts or est:
        ax.set_xscale("log", base=2)
        ax.legend(fontsize=7)
    else:
        empty(ax, "no Fmax (not placed, or did not fit)")
    ax.set_xlabel("lanes P")
    ax.set_ylabel("Fmax (MHz; post-route unless hollow)")
    mark_failed(ax, "lanes")
    ax.set_title(f"{title}: Fmax vs lanes")
    ax.grid(alpha=0.3)
    save(fig, "fmax_vs_lanes.png")

    # 3. throughput against area, Pareto front highlighted
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    # Points whose routing was cut short use the estimate after placement, drawn hollow.
    def throughput(r: Mapping[str, Any]) -> float | None:
        return r.get("throughput_meps") or r.get("throughput_est_meps")

    pts = [r for r in ok if r.get("lut4") and throughput(r)]
    ys = [float(throughput(r)) for r in pts]
    ylabel = "throughput (M elements/s) = P x Fmax / cycles per beat"
    if not pts:
        pts = [r for r in ok if r.get("lut4") and r.get("elements_per_cycle")]
        ys = [float(r["elements_per_cycle"]) for r in pts]
        ylabel = "elements per cycle (no Fmax: not placed)"
    xy = [(float(r["lut4"]), y) for r, y in zip(pts, ys, strict=True)]
    front = pareto_front(xy)
    if pts:
        hollow = [bool(r.get("throughput_est_meps")) for r in pts]

        def draw(indices, legend: str | None, **style) -> None:
            chosen = list(indices)
            if chosen:
                ax.scatter([xy[i][0] for i in chosen], [xy[i][1] for i in chosen],
                           label=legend, **style)
        draw((i for i in range(len(pts)) if not hollow[i]), "grid points", color="0.6")
        draw((i for i in range(len(pts)) if hollow[i]),
             "Fmax estimated after placement (routing unfinished)",
             facecolors="none", edgecolors="0.4", s=60)
        ax.step([xy[i][0] for i in front], [xy[i][1] for i in front], where="post",
                color="tab:red")
        draw((i for i in front if not hollow[i]), "Pareto front", color="tab:red", zorder=3)
        draw((i for i in front if hollow[i]), None, facecolors="none",
             edgecolors="tab:red", s=60, zorder=3)
        for i, r in enumerate(pts):
            ax.annotate(_label(r, varying), xy[i], fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        # Points too big for the part have an area but no throughput: a dashed line at it.
        for j, r in enumerate(r for r in ok if r.get("fits") is False and r.get("lut4")):
            ax.axvline(r["lut4"], color="0.5", linestyle="--",
                       label="does not fit the part (area only)" if j == 0 else None)
            ax.annotate(f"{_label(r, varying)}: does not fit", (r["lut4"], 0.5), fontsize=7,
                        xycoords=("data", "axes fraction"), rotation=90, ha="right",
                        va="center", xytext=(-2, 0), textcoords="offset points")
        ax.legend(fontsize=7)
    else:
        empty(ax, "no point with area and cycles")
    ax.set_xlabel("area: LUT4 (design, ECP5)")
    ax.set_ylabel(ylabel, fontsize=8)
    mark_failed(ax, "lut4")
    ax.set_title(f"{title}: throughput vs area")
    ax.grid(alpha=0.3)
    save(fig, "pareto.png")
    return files
