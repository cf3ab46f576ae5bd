"""Run attention policies over a corpus: embeddings, accuracy against dense, K/V access traces.

Pure NumPy (no DRAM model here: ``psa report`` feeds the traces to :mod:`psa.sim`).

Accuracy of a policy against dense attention on the same ``N`` inputs:

* ``cosine_mean``, ``cosine_p5``: mean and 5th percentile (linear interpolation) over the
  inputs of the cosine between the policy's and the dense embedding (both unit norm).
* ``top1_agreement``: retrieval over the corpus, every input in turn the query and the
  other ``N - 1`` the collection, cosine similarity, both sides embedded by the same model
  (dense, or the policy). The fraction of queries whose nearest neighbour under the policy
  is the dense nearest neighbour.
* ``top5_agreement``: mean over queries of ``|top5(policy) & top5(dense)| / 5`` (``k`` is
  ``min(5, N - 1)``).

Traces: :func:`psa.models.minilm.fetch_trace` of each input in the policy's layout
(:func:`~psa.policies.encoder.policy_layout`), one request per K/V row read. :func:`coalesce`
merges runs of contiguous requests (adjacent token rows of one plane and head) into one
request, as a DMA engine in front of the memory controller does; DRAM figures use the
coalesced traces, so a 32-byte row is not charged a whole burst when its neighbour is read too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from psa.golden.cascade import dense_trace
from psa.golden.trace import AccessTrace, KVLayout
from psa.models.minilm import BertEncoder, Policy, fetch_trace
from psa.policies.encoder import policy_bits, policy_layout

__all__ = ["PolicyResult", "run_policy", "accuracy", "retrieval_agreement", "cosines",
           "coalesce", "dense_traces", "concat_traces", "ratio", "check_presets", "Stage"]

# stage(description, total) -> tick(): called at the start of each stage of a report; the
# returned function is called once per unit of work (for progress bars).
Stage = Callable[[str, int], Callable[[], None]]


def ratio(a: float, b: float) -> float:
    """``a / b`` as a reduction factor; ``inf`` when ``b`` is 0."""
    return float(a) / float(b) if b else float("inf")


def check_presets(presets: Sequence[str], option: str = "--dram") -> None:
    """Raise ValueError naming ``option`` unless every entry is a built-in DRAM preset or a
    preset TOML file, and there is at least one."""
    from pathlib import Path

    from psa.sim import list_presets

    if not presets:
        raise ValueError(f"{option}: give at least one preset")
    known = list_presets()
    for p in presets:
        if p not in known and not Path(p).is_file():
            raise ValueError(f"{option}: unknown preset {p!r}; one of {', '.join(known)}")


@dataclass
class PolicyResult:
    """One policy over ``N`` inputs of an ``L``-layer model.

    Attributes
    ----------
    name, params:
        The policy's report name and parameters.
    bits:
        ``(k_msb, k_lsb, v_msb, v_lsb)`` plane widths; ``layout`` the K/V layout.
    lengths:
        ``(N,)`` input lengths in tokens.
    embeddings:
        ``(N, hidden)`` unit-norm embeddings.
    alive, heads:
        ``(N, L)`` tokens alive and heads running in each layer.
    layer_bytes:
        ``(N, L)`` K/V payload bytes read per layer.
    traces:
        One uncoalesced :class:`AccessTrace` per input.
    refetch_rate:
        Fraction of running (head, layer) pairs whose LSB planes were read (0 without
        progressive quantization).
    seconds:
        Wall time of the forward passes.
    """

    name: str
    params: dict
    bits: tuple[int, int, int, int]
    layout: KVLayout
    lengths: np.ndarray
    embeddings: np.ndarray
    alive: np.ndarray
    heads: np.ndarray
    layer_bytes: np.ndarray
    traces: list[AccessTrace]
    refetch_rate: float
    seconds: float

    @property
    def payload_bytes(self) -> int:
        return int(self.layer_bytes.sum())


def run_policy(model: BertEncoder, inputs: Sequence[np.ndarray], policy: Policy,
               progress: Callable[[], None] | None = None) -> PolicyResult:
    """Encode every input under ``policy``; ``progress()`` is called after each input."""
    cfg = model.config
    layout = policy_layout(policy, cfg)
    n_layers = cfg.num_hidden_layers
    emb = np.zeros((len(inputs), cfg.hidden_size), np.float32)
    alive = np.zeros((len(inputs), n_layers), np.int64)
    heads = np.zeros((len(inputs), n_layers), np.int64)
    layer_bytes = np.zeros((len(inputs), n_layers), np.int64)
    traces = []
    refetch = running = 0
    t0 = time.perf_counter()
    for i, ids in enumerate(inputs):
        enc = model.encode(ids, policy)
        emb[i] = enc.embedding
        trace = fetch_trace(enc.layers, layout)
        traces.append(trace)
        for rec in enc.layers:
            alive[i, rec.layer] = len(rec.tokens)
            heads[i, rec.layer] = len(rec.heads)
        for layer, b in trace.bytes_by("layer").items():
            layer_bytes[i, layer] = b
        for s in getattr(policy, "layer_stats", []):
            refetch += s["refetch_heads"]
            running += s["heads"]
        if progress is not None:
            progress()
    return PolicyResult(
        name=policy.name, params=policy.params(), bits=policy_bits(policy), layout=layout,
        lengths=np.array([len(x) for x in inputs], np.int64), embeddings=emb, alive=alive,
        heads=heads, layer_bytes=layer_bytes, traces=traces,
        refetch_rate=refetch / running if running else 0.0,
        seconds=time.perf_counter() - t0)


def cosines(reference: np.ndarray, emb: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two ``(N, d)`` embedding matrices."""
    a = np.asarray(reference, np.float64)
    b = np.asarray(emb, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"cosines: shapes differ, {a.shape} vs {b.shape}")
    na = np.linalg.norm(a, axis=1)
    nb = np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.maximum(na * nb, 1e-30)


def _neighbours(emb: np.ndarray, k: int) -> np.ndarray:
    e = np.asarray(emb, np.float64)
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-30)
    sim = e @ e.T
    np.fill_diagonal(sim, -np.inf)
    # stable: equal similarities rank by lower index
    return np.argsort(-sim, axis=1, kind="stable")[:, :k]


def retrieval_agreement(reference: np.ndarray, emb: np.ndarray, k: int) -> float:
    """Mean over queries of the overlap of the ``k`` nearest neighbours (self excluded) under
    ``emb`` and under ``reference``, divided by ``k``; ``k`` is capped at ``N - 1``."""
    n = len(reference)
    if n < 2:
        raise ValueError(f"retrieval_agreement needs at least 2 inputs, got {n}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    k = min(k, n - 1)
    a, b = _neighbours(reference, k), _neighbours(emb, k)
    if k == 1:
        return float(np.mean(a[:, 0] == b[:, 0]))
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(a, b, strict=True)]))


def accuracy(reference: np.ndarray, emb: np.ndarray) -> dict[str, float]:
    """``cosine_mean``, ``cosine_p5``, ``top1_agreement``, ``top5_agreement`` (module doc)."""
    c = cosines(reference, emb)
    return {"cosine_mean": float(c.mean()), "cosine_p5": float(np.percentile(c, 5)),
            "top1_agreement": retrieval_agreement(reference, emb, 1),
            "top5_agreement": retrieval_agreement(reference, emb, 5)}


def coalesce(trace: AccessTrace) -> AccessTrace:
    """Merge each run of consecutive requests where one starts at the byte after the previous
    ends (same direction) into one request; keeps the first request's tags and time."""
    n = len(trace)
    if n == 0:
        return trace
    end = trace.addr + trace.size.astype(np.uint64)
    start_run = np.ones(n, bool)
    start_run[1:] = (trace.addr[1:] != end[:-1]) | (trace.is_write[1:] != trace.is_write[:-1])
    first = np.flatnonzero(start_run)
    size = np.add.reduceat(trace.size.astype(np.uint64), first)
    return AccessTrace(trace.addr[first], size.astype(np.uint32), trace.is_write[first],
                       None if trace.time_ns is None else trace.time_ns[first],
                       trace.layer[first], trace.plane[first])


def dense_traces(layout: KVLayout, lengths: Sequence[int]) -> list[AccessTrace]:
    """Dense attention at ``layout``'s widths: every row of every plane, layer and head (the
    "same bit widths" baseline), one trace per input length."""
    return [dense_trace(layout, int(n)) for n in lengths]


def concat_traces(traces: Sequence[AccessTrace]) -> AccessTrace:
    """Back-to-back inputs, each coalesced (what one DRAM simulation of a batch runs)."""
    return AccessTrace.concat(coalesce(t) for t in traces)

