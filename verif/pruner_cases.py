"""Pruning-unit workloads for the RTL bench and the benchmark, and captured-trace conversion.

A :class:`PrunerParams` is one hardware parameter set; a :class:`SequenceSpec` one multi-layer
sequence (token/head keep schedules, how probabilities are drawn). :func:`sequence_script`
expands a sequence into the command-level script that drives both the golden
:class:`~psa.golden.pruning.PruningState` and the hardware, layer by layer, from its seed.

:func:`requests_to_trace` turns the requests captured on the unit's ``fetch`` stream into an
:class:`~psa.golden.trace.AccessTrace`, so that hardware traces can be written in the project
trace format and fed to the DRAM simulator; :func:`capture_fetch_trace` does it all from plain
Python: builds the unit, runs a sequence on Verilator (checked against golden) and returns the
hardware's trace.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from psa.golden.cascade import spatten_token_schedule
from psa.golden.decode import DecodePruningState, p_to_fixed, select_fetch_trace
from psa.golden.fixed_point import quantize_unsigned_fraction
from psa.golden.pruning import PruningState, resolve_keep
from psa.golden.trace import AccessTrace, KVLayout, Plane, read_trace
from psa.hw.layouts import select_arg
from psa.hw.pruner import DEFAULTS, Op

__all__ = ["PrunerParams", "SequenceSpec", "DecodeSpec", "make_decode_sequences",
           "run_decode_sequence", "DecodeResult", "LayerScript", "sequence_script",
           "make_sequences", "DECODE_PARAMS", "record_decode_stream",
           "kv_layout", "kv_config", "requests_to_trace", "PARAM_SETS", "FetchRequest",
           "PrunerPort", "run_sequence", "SequenceResult", "Mismatch", "capture_fetch_trace",
           "layout_to_json", "layout_from_json"]


@dataclass(frozen=True)
class PrunerParams:
    """Hardware parameters of :class:`psa.hw.pruner.PruningUnit` (same names and defaults:
    :data:`psa.hw.pruner.DEFAULTS`)."""

    max_tokens: int = DEFAULTS["max_tokens"]
    n_heads: int = DEFAULTS["n_heads"]
    lanes: int = DEFAULTS["lanes"]
    prob_bits: int = DEFAULTS["prob_bits"]
    score_bits: int = DEFAULTS["score_bits"]
    mag_bits: int = DEFAULTS["mag_bits"]
    head_score_bits: int = DEFAULTS["head_score_bits"]
    addr_bits: int = DEFAULTS["addr_bits"]
    layer_bits: int = DEFAULTS["layer_bits"]
    digit_bits: int = DEFAULTS["digit_bits"]

    def kwargs(self) -> dict:
        return asdict(self)

    @property
    def tag(self) -> str:
        """Build-folder tag (``sim_build/pruner_<tag>``): :mod:`psa.verif.designs`'."""
        from psa.verif.designs import get_bench

        return get_bench("pruner").tag(self.kwargs())


#: The parameter sets of the RTL suite: main (scores narrow enough to saturate in the ``max``
#: sequences), saturating narrow 8-bit probabilities with P=4, wide P=16.
PARAM_SETS: dict[str, PrunerParams] = {
    "main": PrunerParams(64, 4, 8, 12, 16, 24, 20),
    "saturate": PrunerParams(128, 3, 4, 8, 10, 12, 12),
    "wide": PrunerParams(256, 6, 16, 12, 20, 24, 24),
}

#: Long decode sequences and the SmolLM2 replay (test_pruner_decode.py, ``-m slow``): the
#: defaults at N = 2048, P = 16 (the build bench/pruner_cycles.py --decode measures at P = 16).
DECODE_PARAMS = PrunerParams(2048, DEFAULTS["n_heads"], 16)


@dataclass(frozen=True)
class SequenceSpec:
    """One sequence: ``n`` tokens through ``n_layers`` layers.

    ``token_keep``/``head_keep`` map *after layer l* to a count. ``rows`` query rows per kept
    head and layer (``None``: one per alive token, as in a real forward pass). ``probs`` is the
    row distribution: ``softmax`` (peaky rows), ``uniform`` (flat rows, many ties), ``max``
    (every lane at full scale: saturation), ``sparse`` (mostly zeros: ties at zero).
    """

    n: int
    n_layers: int
    token_keep: Mapping[int, int]
    head_keep: Mapping[int, int] = field(default_factory=dict)
    rows: int | None = 2
    probs: str = "softmax"
    mag_max: int = 1 << 14
    seed: int = 0

    def to_json(self) -> str:
        d = asdict(self)
        d["token_keep"] = {str(k): v for k, v in self.token_keep.items()}
        d["head_keep"] = {str(k): v for k, v in self.head_keep.items()}
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str) -> SequenceSpec:
        d = json.loads(text)
        d["token_keep"] = {int(k): v for k, v in d["token_keep"].items()}
        d["head_keep"] = {int(k): v for k, v in d["head_keep"].items()}
        return cls(**d)


@dataclass
class LayerScript:
    """What to send in one layer: ``probs[i]`` are the rows (rows x alive) of the i-th kept
    head, ``mags[i]`` its magnitude; then ``prune_heads`` and ``prune`` (None: no prune)."""

    layer: int
    probs: list[np.ndarray]
    mags: list[int]
    prune_heads: int | None
    prune: int | None


def _rows(rng: np.random.Generator, kind: str, rows: int, alive: int, bits: int) -> np.ndarray:
    if kind == "max":
        return np.full((rows, alive), (1 << bits) - 1, dtype=np.uint64)
    if kind == "uniform":
        p = np.full((rows, alive), 1.0 / max(alive, 1))
    elif kind == "sparse":
        p = np.zeros((rows, alive))
        if alive:
            hot = rng.integers(0, alive, size=(rows, 2))
            for r in range(rows):
                p[r, hot[r]] = 0.5
    else:
        x = rng.normal(0.0, 2.0, size=(rows, alive))
        e = np.exp(x - x.max(axis=1, keepdims=True)) if alive else x
        p = e / e.sum(axis=1, keepdims=True) if alive else e
    return quantize_unsigned_fraction(p, bits)


def sequence_script(spec: SequenceSpec, params: PrunerParams, alive_count, kept_heads
                    ) -> Iterator[LayerScript]:
    """The layers of ``spec``. ``alive_count()`` and ``kept_heads()`` give the golden state
    when each layer starts (rows depend on it), so the script is a generator."""
    rng = np.random.default_rng(spec.seed)
    mag_top = min(spec.mag_max, (1 << params.mag_bits) - 1)
    for layer in range(spec.n_layers):
        alive, heads = alive_count(), kept_heads()
        rows = alive if spec.rows is None else spec.rows
        probs = [_rows(rng, spec.probs, rows, alive, params.prob_bits) for _ in heads]
        mags = [int(rng.integers(0, mag_top + 1)) for _ in heads]
        yield LayerScript(layer, probs, mags, spec.head_keep.get(layer),
                          spec.token_keep.get(layer))


def make_sequences(params: PrunerParams, count: int, seed: int) -> list[SequenceSpec]:
    """``count`` sequences cycling through the suite's kinds: SpAtten GPT-2 schedule (keep 0.9,
    0.7, 0.2, 0.1 over 12 layers), aggressive (down to 1 token, and to 0), saturation, edge
    cases (k >= alive, prune before any probabilities, n = 1 and n = max_tokens), with head
    pruning on some."""
    rng = np.random.default_rng(seed)
    out = []
    kinds = ("spatten", "aggressive", "saturate", "edge", "random")
    for i in range(count):
        kind = kinds[i % len(kinds)]
        s = int(rng.integers(0, 2**31))
        h = params.n_heads
        n = int(rng.integers(max(2, params.max_tokens // 2), params.max_tokens + 1))
        if kind == "spatten":
            sched = spatten_token_schedule(12)
            keep = {layer: resolve_keep(f, n) for layer, f in sched.items()}
            heads = {9: max(1, h - 1), 10: max(1, h // 2)} if i % 2 else {}
            out.append(SequenceSpec(n, 12, keep, heads, 1 + i % 3, "softmax", seed=s))
        elif kind == "aggressive":
            keep = {0: max(1, n // 2), 1: max(1, n // 6), 2: 3, 3: 1}
            if i % 4 == 1:
                keep[4] = 0
            heads = {1: max(1, h // 2), 3: 1} if i % 3 == 0 else {}
            out.append(SequenceSpec(n, 6, keep, heads, 2, ("sparse", "softmax")[i % 2],
                                    seed=s))
        elif kind == "saturate":
            keep = {1: max(1, 3 * n // 4), 3: max(1, n // 3)}
            out.append(SequenceSpec(n, 5, keep, {2: max(1, h - 1)}, 3,
                                    ("max", "uniform")[i % 2],
                                    mag_max=(1 << params.mag_bits) - 1, seed=s))
        elif kind == "edge":
            n = (1, params.max_tokens, params.lanes, params.lanes + 1)[i % 4]
            n = min(n, params.max_tokens)
            # prune before any probabilities (layer 0 with no rows: see rows=0), k >= alive,
            # head pruning to 0 heads at the end.
            keep = {0: n + 3, 1: max(1, n - 1), 2: n}
            out.append(SequenceSpec(n, 4, keep, {1: h + 2, 2: 0} if i % 2 else {}, 0,
                                    "uniform", seed=s))
        else:
            layers = int(rng.integers(2, 8))
            keep, alive = {}, n
            for layer in range(layers):
                if rng.random() < 0.5:
                    alive = int(rng.integers(0, alive + 2))
                    keep[layer] = alive
            heads = {int(rng.integers(0, layers)): int(rng.integers(1, h + 1))} \
                if rng.random() < 0.5 else {}
            out.append(SequenceSpec(n, layers, keep, heads, int(rng.integers(0, 3)),
                                    str(rng.choice(["softmax", "uniform", "sparse", "max"])),
                                    seed=s))
    return out


def kv_layout(params: PrunerParams, n_layers: int, d_head: int = 64,
              k_bits: int = 8, v_bits: int = 6) -> KVLayout:
    """A K/V layout the unit can address: ``max_tokens`` rows per head, MSB planes only
    fetched (``k_bits``/``v_bits``; LSB planes exist but are not part of this stream)."""
    return KVLayout(n_layers, params.n_heads, params.max_tokens, d_head, k_bits, 4, v_bits, 2)


def kv_config(layout: KVLayout) -> dict[str, int]:
    """The ``cfg`` port values (field -> int) of the unit for ``layout``."""
    return {
        "k_base": layout.base(Plane.K_MSB), "v_base": layout.base(Plane.V_MSB),
        "k_row_bytes": layout.row_bytes(Plane.K_MSB),
        "v_row_bytes": layout.row_bytes(Plane.V_MSB),
        "token_pitch": layout.max_tokens, "head_pitch": layout.n_heads,
        "k_lsb_base": layout.base(Plane.K_LSB), "v_lsb_base": layout.base(Plane.V_LSB),
        "k_lsb_row_bytes": layout.row_bytes(Plane.K_LSB),
        "v_lsb_row_bytes": layout.row_bytes(Plane.V_LSB),
    }


@dataclass(frozen=True)
class FetchRequest:
    """One request captured on the ``fetch`` stream (``plane`` is a :class:`Plane` value)."""

    addr: int
    size: int
    plane: int
    head: int = -1
    token: int = -1


def requests_to_trace(requests: Iterable[FetchRequest | Mapping | tuple],
                      layer: int = -1) -> AccessTrace:
    """An untimed :class:`AccessTrace` of captured reads, in capture order, tagged ``layer``.

    ``requests`` holds :class:`FetchRequest`, mappings with ``addr``/``size``/``plane`` keys, or
    ``(addr, size, plane)`` tuples.
    """
    addr, size, plane = [], [], []
    for r in requests:
        if isinstance(r, FetchRequest):
            a, s, p = r.addr, r.size, r.plane
        elif isinstance(r, Mapping):
            a, s, p = r["addr"], r["size"], r["plane"]
        else:
            a, s, p = r[:3]
        addr.append(int(a))
        size.append(int(s))
        plane.append(int(p))
    return AccessTrace(np.array(addr, dtype=np.uint64), np.array(size, dtype=np.uint32),
                       layer=layer, plane=np.array(plane, dtype=np.uint8))


class PrunerPort(Protocol):
    """What :func:`run_sequence` needs from a simulated unit (cocotb or Amaranth)."""

    async def command(self, op: int, arg: int = 0) -> list[dict]:
        """Issue one command; return the list it streams out (``[]`` for an empty list or a
        command without output), as dicts of payload fields."""

    async def send_rows(self, rows: np.ndarray) -> None:
        """Send query rows (rows x alive) as beats of ``lanes`` probabilities; return when the
        last beat has been accepted."""

    async def send_magnitude(self, head: int, value: int) -> None:
        """Send one head magnitude; return when accepted."""

    async def select(self, arg: int, row: np.ndarray) -> list[dict]:
        """Issue ``SELECT arg``, send the query ``row`` (1-D, over the alive tokens) and return
        the fetch requests it streams out. (Decode sequences only.)"""

    async def error(self) -> bool:
        """The unit's sticky ``error`` output once the last command has taken effect. (Decode
        sequences only.)"""


class Mismatch(AssertionError):
    """Hardware and golden differ; the message names the sequence seed, layer and field."""


def _compare(what: str, spec: SequenceSpec, layer: int, got, expect) -> None:
    if got != expect:
        first = next((i for i, (a, b) in enumerate(zip(got, expect, strict=False)) if a != b),
                     min(len(got), len(expect)))
        raise Mismatch(f"seed {spec.seed} layer {layer} {what}: hardware has {len(got)} "
                       f"entries, golden {len(expect)}; first difference at {first}: "
                       f"hardware {got[first:first + 3]} golden {expect[first:first + 3]}")


@dataclass
class SequenceResult:
    """Per layer: the captured fetch trace (equal to golden's) and the alive counts."""

    traces: list[AccessTrace]
    alive: list[int]
    checks: int = 0


async def run_sequence(port: PrunerPort, spec: SequenceSpec, params: PrunerParams,
                       layout: KVLayout) -> SequenceResult:
    """Drive ``spec`` through ``port`` and the golden model together; after every layer check
    the fetch requests (line for line in the trace format), the alive list with scores, the
    kept heads with scores, and every prune's output. Raises :class:`Mismatch`."""

    state = PruningState(params.max_tokens, params.n_heads, params.prob_bits, params.score_bits,
                         params.head_score_bits)
    state.start(spec.n)
    await port.command(Op.START.value, spec.n)
    result = SequenceResult([], [])

    def tokens() -> list[tuple[int, int]]:
        return list(zip(state.alive.tolist(), state.scores.tolist(), strict=True))

    def heads() -> list[tuple[int, int]]:
        return list(zip(state.heads.tolist(), state.head_scores.tolist(), strict=True))

    def pairs(got: list[dict]) -> list[tuple[int, int]]:
        return [(int(b["id"]), int(b["score"])) for b in got]

    for script in sequence_script(spec, params, lambda: len(state.alive),
                                  lambda: state.heads.copy()):
        layer = script.layer
        got = requests_to_trace(await port.command(Op.FETCH.value, layer), layer)
        expect = state.fetch_requests(layout, layer)
        _compare("fetch trace", spec, layer, list(got.lines()), list(expect.lines()))
        _compare("fetch planes", spec, layer, got.plane.tolist(), expect.plane.tolist())
        result.traces.append(got)
        result.alive.append(len(state.alive))
        for head, rows, mag in zip(state.heads.tolist(), script.probs, script.mags,
                                   strict=True):
            await port.send_rows(rows)
            if rows.size:  # PruningState.add_probs rejects rows over 0 alive tokens
                state.add_probs(rows)
            await port.send_magnitude(head, mag)
            state.add_head_magnitude(head, mag)
        _compare("alive tokens and scores", spec, layer,
                 pairs(await port.command(Op.READ_TOKENS.value)), tokens())
        _compare("kept heads and scores", spec, layer,
                 pairs(await port.command(Op.READ_HEADS.value)), heads())
        result.checks += 3
        if script.prune_heads is not None:
            state.prune_heads(script.prune_heads)
            _compare(f"prune_heads({script.prune_heads})", spec, layer,
                     pairs(await port.command(Op.PRUNE_HEADS.value, script.prune_heads)),
                     heads())
            result.checks += 1
        if script.prune is not None:
            state.prune(script.prune)
            _compare(f"prune({script.prune})", spec, layer,
                     pairs(await port.command(Op.PRUNE.value, script.prune)), tokens())
            result.checks += 1
    return result


def layout_to_json(layout: KVLayout) -> str:
    """JSON of a :class:`KVLayout`'s constructor arguments (for the bench environment)."""
    names = ("n_layers", "n_heads", "max_tokens", "d_head", "k_msb_bits", "k_lsb_bits",
             "v_msb_bits", "v_lsb_bits", "bases", "align")
    return json.dumps({name: getattr(layout, name) for name in names})


def layout_from_json(text: str) -> KVLayout:
    d = json.loads(text)
    if d.get("bases") is not None:
        d["bases"] = tuple(d["bases"])
    return KVLayout(**d)


def capture_fetch_trace(params: PrunerParams, spec: SequenceSpec, layout: KVLayout,
                        build_root: str | os.PathLike, idle: float = 0.0,
                        stall: float = 0.0) -> AccessTrace:
    """Run ``spec`` on the Verilated ``pruning_unit`` (checked against golden after every
    layer) and return the K/V requests it emitted, read back from the trace file it wrote.

    The design is built in ``build_root/pruner_<params.tag>`` (reused while unchanged).
    ``layout`` must address every token and head of ``params`` (``max_tokens`` and
    ``n_heads`` at least as large).
    """
    from psa.verif.designs import get_bench

    if layout.max_tokens < params.max_tokens or layout.n_heads < params.n_heads:
        raise ValueError(f"capture_fetch_trace: layout ({layout.max_tokens} tokens, "
                         f"{layout.n_heads} heads) must cover the unit ({params.max_tokens}, "
                         f"{params.n_heads})")
    if layout.n_layers < spec.n_layers:
        raise ValueError(f"capture_fetch_trace: layout has {layout.n_layers} layers, the "
                         f"sequence {spec.n_layers}")
    bench = get_bench("pruner")
    root = Path(build_root).resolve()
    out = bench.build_dir(params.kwargs(), root) / f"capture_{spec.seed}.trace"
    bench.build_and_run(params.kwargs(), root, purpose="capture",
                        env={"PSA_SEQUENCE": spec.to_json(),
                             "PSA_LAYOUT": layout_to_json(layout), "PSA_TRACE_OUT": str(out),
                             "PSA_IDLE": str(idle), "PSA_STALL": str(stall)})
    return read_trace(out)


# ------------------------------------------------------------------------------- decode mode


@dataclass(frozen=True)
class DecodeSpec:
    """A decode sequence: prefill ``n`` tokens (``prefill_rows`` accumulated rows), then
    ``steps`` steps of: ``APPEND`` (initial score ``append_score``), ``FETCH`` every
    ``fetch_every`` steps (layer ``step % n_layers``), ``rows`` query rows per kept head each
    with a ``SELECT`` (kv or top-p alternating with ``topp_every``; accumulated), and every
    ``prune_every`` steps a ``PRUNE`` to ``keep`` of the alive tokens (at least ``min_alive``).
    ``lsb_threshold`` flags flat rows; ``probs`` as :class:`SequenceSpec`. With ``fill`` the
    sequence ends by appending until the list is full (the last APPEND sets ``error``).
    """

    n: int
    steps: int
    rows: int = 1
    keep: float = 0.75
    prune_every: int = 4
    fetch_every: int = 8
    topp_every: int = 2
    append_score: int = 0
    lsb_threshold: int = 0
    probs: str = "softmax"
    n_layers: int = 4
    fill: bool = False
    seed: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> DecodeSpec:
        return cls(**json.loads(text))


def make_decode_sequences(params: PrunerParams, count: int, seed: int, steps: int = 60
                          ) -> list[DecodeSpec]:
    """``count`` decode sequences cycling through: SpAtten-like (peaky rows, prune to 0.75),
    flat rows (LSB requests, many ties), sparse rows (ties at 0, kv above the non-zeros),
    saturating initial scores with aggressive pruning, a short prefill filled to the
    capacity (APPEND on a full list)."""
    rng = np.random.default_rng(seed)
    n_max = params.max_tokens
    top = 1 << params.prob_bits
    out = []
    def capped(spec: DecodeSpec) -> DecodeSpec:   # ids run out after max_tokens - n steps
        return spec if spec.fill else dataclasses.replace(
            spec, steps=min(spec.steps, n_max - spec.n))

    for i in range(count):
        s = int(rng.integers(0, 2**31))
        kind = i % 5
        if kind == 0:
            out.append(DecodeSpec(int(rng.integers(1, n_max // 2)), steps, 1, 0.75, 4, 8,
                                  2, 0, top // 16, "softmax", seed=s))
        elif kind == 1:
            out.append(DecodeSpec(int(rng.integers(1, n_max // 2)), steps, 2, 0.8, 3, 16,
                                  2, 0, top // 4, "uniform", seed=s))
        elif kind == 2:
            out.append(DecodeSpec(int(rng.integers(0, n_max // 4)), steps, 1, 0.6, 5, 8, 3,
                                  int(rng.integers(0, 4)), 0, "sparse", seed=s))
        elif kind == 3:
            out.append(DecodeSpec(int(rng.integers(2, n_max // 2)), steps, 1, 0.5, 2, 8, 1,
                                  (1 << params.score_bits) + 5, top, "max", seed=s))
        else:
            out.append(DecodeSpec(int(rng.integers(n_max // 2, n_max)), max(4, steps // 4),
                                  1, 1.0, 1000, 2, 2, 1, top // 8, "softmax", fill=True,
                                  seed=s))
    return [capped(spec) for spec in out]


@dataclass
class DecodeResult:
    """Fetch traces of every FETCH and SELECT (equal to golden's), checks made, appends."""

    traces: list[AccessTrace]
    checks: int = 0
    appends: int = 0
    selects: int = 0


def _targets(rng: np.random.Generator, alive: int, bits: int, topp: bool) -> int:
    """A SELECT target: the edges (0, everything, more than everything) and typical values."""
    if topp:
        return int(rng.choice([0, 1 << bits, p_to_fixed(0.9, bits), p_to_fixed(0.5, bits),
                               int(rng.integers(1, (1 << bits) + 1))]))
    return int(rng.choice([0, alive, alive + 2, max(1, alive // 2), 1,
                           int(rng.integers(0, alive + 1))]))


async def run_decode_sequence(port: PrunerPort, spec: DecodeSpec, params: PrunerParams,
                              layout: KVLayout) -> DecodeResult:
    """Drive ``spec`` through ``port`` and :class:`~psa.golden.decode.DecodePruningState`
    together, comparing every FETCH and SELECT request stream line for line
    (:func:`~psa.golden.decode.select_fetch_trace`), every PRUNE output and, every step, the
    alive list with scores. Raises :class:`Mismatch`."""
    rng = np.random.default_rng(spec.seed)
    state = DecodePruningState(params.max_tokens, params.n_heads, params.prob_bits,
                               params.score_bits, params.head_score_bits)
    state.start(spec.n)
    await port.command(Op.START.value, spec.n)
    result = DecodeResult([])
    ref = SequenceSpec(spec.n, 1, {}, seed=spec.seed)   # names the seed in Mismatch messages
    layer = 0

    def tokens() -> list[tuple[int, int]]:
        return list(zip(state.alive.tolist(), state.scores.tolist(), strict=True))

    def pairs(got: list[dict]) -> list[tuple[int, int]]:
        return [(int(b["id"]), int(b["score"])) for b in got]

    if spec.n:
        rows = _rows(rng, spec.probs, 2, spec.n, params.prob_bits)
        await port.send_rows(rows)
        state.add_probs(rows)
    total_steps = spec.steps + (params.max_tokens if spec.fill else 0)
    for step in range(total_steps):
        where = f"step {step}"
        if state.next_token >= params.max_tokens:
            await port.command(Op.APPEND.value, spec.append_score)
            if not await port.error():
                raise Mismatch(f"seed {spec.seed} {where}: APPEND on a full list did not raise "
                               f"error")
            break
        if await port.error():
            raise Mismatch(f"seed {spec.seed} {where}: error flag raised")
        state.append(spec.append_score)
        await port.command(Op.APPEND.value, spec.append_score)
        result.appends += 1
        if step >= spec.steps:
            continue                      # filling the list: appends only
        alive = len(state.alive)
        if step % spec.fetch_every == 0:
            layer = step % spec.n_layers
            got = requests_to_trace(await port.command(Op.FETCH.value, layer), layer)
            _compare("fetch trace", ref, step, list(got.lines()),
                     list(state.fetch_requests(layout, layer).lines()))
            result.traces.append(got)
        for head in state.heads.tolist():
            for r in range(spec.rows):
                topp = (step + r + head) % spec.topp_every == 0
                target = _targets(rng, alive, params.prob_bits, topp)
                row = _rows(rng, spec.probs, 1, alive, params.prob_bits)[0]
                got = requests_to_trace(await port.select(
                    select_arg(target, head, topp, accumulate=True), row), layer)
                expect = select_fetch_trace(layout, layer, head, state.alive, row, target,
                                            topp, spec.lsb_threshold)
                what = f"select({'topp' if topp else 'kv'}={target}, head {head})"
                _compare(what, ref, step, list(got.lines()), list(expect.lines()))
                _compare(what + " planes", ref, step, got.plane.tolist(),
                         expect.plane.tolist())
                state.add_probs(row)
                result.traces.append(got)
                result.selects += 1
        _compare("alive tokens and scores", ref, step,
                 pairs(await port.command(Op.READ_TOKENS.value)), tokens())
        result.checks += 1
        if (step + 1) % spec.prune_every == 0:
            k = max(min(2, alive), int(round(spec.keep * alive)))
            state.prune(k)
            _compare(f"prune({k})", ref, step,
                     pairs(await port.command(Op.PRUNE.value, k)), tokens())
            result.checks += 1
    return result


# ------------------------------------------------------------------ recorded decode streams


def record_decode_stream(model, ids: np.ndarray, steps: int, params: PrunerParams,
                         layer: int = 0, v_keep: float = 0.5, p: float = 0.9,
                         keep: float = 0.8, prune_every: int = 4,
                         lsb_threshold: float = 0.1) -> dict:
    """The pruning-unit command stream of one layer of a real decoder, with golden's answers.

    Runs ``model`` (a :class:`psa.models.llama.LlamaDecoder`, dense attention: the outputs are
    the model's own) on the prompt ``ids`` and ``steps`` greedy decode steps, and records for
    ``layer`` what a unit holding that layer's state gets: ``START`` with the prompt length,
    ``PRUNE_HEADS`` to the model's K/V heads, the last prompt position's query rows
    (importance), then per step ``APPEND``, ``FETCH``
    ``layer``, per K/V head one accumulated ``SELECT`` per query head of its group (even query
    heads top-``ceil(v_keep alive)``, odd ones top-p ``p``) over the alive tokens, with the
    rows quantized to ``UQ0.prob_bits`` from the softmax over the alive tokens, and every
    ``prune_every`` steps ``PRUNE round(keep alive)``. ``lsb_threshold`` (a probability) flags
    flat rows. The expected answers come from :class:`DecodePruningState` and
    :func:`select_fetch_trace`. Returns a JSON-able dict (``tb_policy_replay.replay_decode``).
    """
    from psa.models.llama import DecodeAttention

    cfg = model.config
    if cfg.n_kv_heads > params.n_heads or len(ids) + steps > params.max_tokens:
        raise ValueError(f"record_decode_stream: the unit ({params.n_heads} heads, "
                         f"{params.max_tokens} tokens) must hold {cfg.n_kv_heads} K/V heads "
                         f"and {len(ids) + steps} tokens")
    layout = kv_layout(params, cfg.n_layers)
    thr = p_to_fixed(lsb_threshold, params.prob_bits)
    pf = p_to_fixed(p, params.prob_bits)
    state = DecodePruningState(params.max_tokens, params.n_heads, params.prob_bits,
                               params.score_bits, params.head_score_bits)
    commands: list[dict] = []
    g = cfg.group

    def rows_of(q, k):
        s = np.einsum("hd,nd->hn", q.astype(np.float64), k.astype(np.float64))
        s /= np.sqrt(cfg.head_dim)
        e = np.exp(s - s.max(axis=1, keepdims=True))
        return quantize_unsigned_fraction(e / e.sum(axis=1, keepdims=True), params.prob_bits)

    def tokens() -> list[list[int]]:
        return [[int(t), int(s)] for t, s in zip(state.alive, state.scores, strict=True)]

    class Recorder(DecodeAttention):
        def prefill(self, li, q, k, v, start):
            out = super().prefill(li, q, k, v, start)
            n = k.shape[1]
            if li == layer and n == len(ids):      # the last prompt chunk
                state.start(n)
                commands.append({"op": Op.START.value, "arg": n})
                # a unit with more heads than the model keeps the first n_kv_heads (scores 0)
                commands.append({"op": Op.PRUNE_HEADS.value, "arg": cfg.n_kv_heads,
                                 "heads": state.prune_heads(cfg.n_kv_heads).tolist()})
                for h in range(cfg.n_kv_heads):
                    rows = rows_of(q[h * g:(h + 1) * g, -1], k[h])
                    commands.append({"op": "rows", "rows": rows.tolist()})
                    state.add_probs(rows)
            return out

        def decode(self, li, q, k, v):
            if li == layer:
                n = k.shape[1]
                state.append()
                commands.append({"op": Op.APPEND.value, "arg": 0})
                expect = state.fetch_requests(layout, layer)
                commands.append({"op": Op.FETCH.value, "arg": layer,
                                 "lines": list(expect.lines()), "planes": expect.plane.tolist()})
                alive = state.alive.copy()
                assert alive[-1] == n - 1
                for h in state.heads.tolist():
                    rows = rows_of(q[h * g:(h + 1) * g], k[h, alive])
                    for i, row in enumerate(rows):
                        topp = bool(i % 2)
                        target = pf if topp else max(1, int(np.ceil(v_keep * len(alive))))
                        tr = select_fetch_trace(layout, layer, h, alive, row, target, topp, thr)
                        commands.append({"op": Op.SELECT.value,
                                         "arg": select_arg(target, h, topp, accumulate=True),
                                         "row": row.tolist(), "lines": list(tr.lines()),
                                         "planes": tr.plane.tolist()})
                        state.add_probs(row)
                commands.append({"op": Op.READ_TOKENS.value, "tokens": tokens()})
                if (n - len(ids)) % prune_every == 0:
                    kk = max(1, int(round(keep * len(state.alive))))
                    state.prune(kk)
                    commands.append({"op": Op.PRUNE.value, "arg": kk, "tokens": tokens()})
            return super().decode(li, q, k, v)

    rec = Recorder()
    cache = model.new_cache(1, len(ids) + steps + 1)
    logits = model.prefill(np.asarray(ids, np.int64)[None, :], cache, attention=[rec])
    for _ in range(steps):
        logits = model.step(np.argmax(logits, axis=1), cache, attention=[rec])
    return {"params": params.kwargs(), "layout": json.loads(layout_to_json(layout)),
            "lsb_threshold": thr, "layer": layer, "prompt": len(ids), "steps": steps,
            "commands": commands}
