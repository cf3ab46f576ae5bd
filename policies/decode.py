"""Decode-mode attention policies for :mod:`psa.models.llama`, each with its K/V traffic.

API (small on purpose)::

    pol = make_decode_policy("h2o", "0.2", model.config, capacity)   # one per sequence
    model.prefill(ids, cache, attention=[pol])      # dense prefill; policies that need it
                                                    # gather importance / metadata here
    for t in continuation: model.step(t, cache, attention=[pol])
    pol.traces        # list[AccessTrace], one per decode step, addressed in pol.layout
                      # (kept only without a sink; with make_decode_policy(..., sink=f)
                      # each step's trace goes to f(step, trace) instead and is not kept)
    shared_prefill(model, ids, [pol, ...])  # one batch-1 dense prefill seen by every policy
    pol.counters()    # {name: int64 [steps, n_layers, n_kv_heads]}: alive, k_rows,
                      # k_lsb_rows, v_rows, v_lsb_rows, meta_rows, meta_writes
    pol.label, pol.layout (DecodeKVLayout), pol.upper_bound (True only for 'oracle')
    parse_decode_policies("dense,h2o=0.2/0.1,topp=0.9") -> [(name, value), ...]

Conventions shared by every policy (:class:`DecodePolicy`):

* Prefill is dense (exactly the model's default attention) and is not traced; decode steps are.
* Per step and layer, the new token's K and V rows are written (every K/V head, every plane
  of the layout: write traffic), then the policy reads what it uses. The new token's own K/V
  are on chip (just computed): always attended, never read.
* Reads are per K/V head: a row needed by several query heads of a GQA group is read once.
* Planes at 16 / 32 bits without LSBs (fp16 / fp32) are byte counts only: the math uses the
  float32 cache as is, so a policy whose budget covers everything equals dense. Integer planes
  (``spatten``, ``topp``) compute with :func:`~psa.golden.decode_trace.quantize_rows` values.
* Every estimate is paid for: MSB K rows (``spatten``, ``topp``), page min/max (``quest``),
  block summaries (``nsa``); ``h2o`` and ``spatten`` importance comes from the probabilities the
  step computes anyway. Only ``oracle`` (true top-k of the step's exact scores) is free, and it
  is flagged ``upper_bound = True``: a bound, not a design.

Policies (knob after ``=`` in :func:`make_decode_policy`):

``dense=16|32``   all rows, fp16 or fp32 bytes.
``spatten=KEEP``  SpAtten cascade: token keep fraction shrinking with depth to ``KEEP`` at the
                  last layer, across decode steps (new tokens appended, a protected window of
                  recent tokens), optional K/V-head pruning, progressive quantization (K MSB
                  first, K LSB re-read for flat rows) and local value pruning (per query, V
                  rows of its top ``v_keep`` probabilities only). See :class:`SpAttenDecode`.
``h2o=BUDGET``    heavy hitters + recent window, budget a fraction of the length, evicted
                  tokens gone for good. :class:`H2ODecode`.
``quest=BUDGET``  query-aware pages of 16 tokens from per-page key min/max. :class:`QuestDecode`.
``nsa=SELECTED``  local window + selected blocks chosen by compressed block summaries.
                  :class:`NSADecode`.
``topp=P``        per query head the fewest tokens whose MSB-estimated mass reaches ``P``
                  (:func:`~psa.golden.decode.select_topp`). :class:`TopPDecode`.
``oracle=KEEP``   true per-head top-k of the exact scores (upper bound). :class:`OracleDecode`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from psa.golden.decode import (
    DecodePruningState,
    gqa_importance,
    p_to_fixed,
    select_kv,
    select_topp,
)
from psa.golden.decode_trace import DecodeKVLayout, DecodePlane, quantize_rows, rows_trace
from psa.golden.fixed_point import quantize_unsigned_fraction
from psa.golden.pruning import resolve_keep
from psa.golden.topk import topk
from psa.golden.trace import AccessTrace
from psa.models.llama import DecodeAttention, KVCache, LlamaConfig, LlamaDecoder

__all__ = [
    "DecodePolicy",
    "DenseDecode",
    "SpAttenDecode",
    "H2ODecode",
    "QuestDecode",
    "NSADecode",
    "TopPDecode",
    "OracleDecode",
    "COUNTERS",
    "cascade_schedule",
    "DEFAULT_DECODE_POLICIES",
    "DECODE_POLICY_NAMES",
    "make_decode_policy",
    "parse_decode_policies",
    "shared_prefill",
]

#: Per-(step, layer, kv head) counters every policy keeps.
COUNTERS = ("alive", "k_rows", "k_lsb_rows", "v_rows", "v_lsb_rows", "meta_rows", "meta_writes")

P = DecodePlane


def _softmax(s: np.ndarray) -> np.ndarray:
    s = np.asarray(s, np.float64)
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _check_frac(name: str, value, lo_open: bool = True) -> float:
    v = float(value)
    if not (0.0 < v <= 1.0 if lo_open else 0.0 <= v <= 1.0):
        raise ValueError(f"{name} must be in {'(0' if lo_open else '[0'}, 1], got {value!r}")
    return v


class DecodePolicy(DecodeAttention):
    """Base of the decode policies: dense attention, write + read tracing, counters.

    Subclasses override :meth:`attend` (and may use :meth:`on_prefill` / :meth:`on_step`).
    """

    name = "dense"
    upper_bound = False
    #: ``(k_msb, k_lsb, v_msb, v_lsb)`` plane widths of the layout
    plane_bits: tuple[int, int, int, int] = (16, 0, 16, 0)

    def __init__(self, config: LlamaConfig, capacity: int, *, label: str | None = None,
                 sink: Callable[[int, AccessTrace], None] | None = None, **layout_kw) -> None:
        if not 1 <= capacity <= config.max_context:
            raise ValueError(f"capacity must be in 1..{config.max_context}, got {capacity}")
        self.config = config
        self.capacity = int(capacity)
        km, kl, vm, vl = self.plane_bits
        self.layout = DecodeKVLayout(config.n_layers, config.n_kv_heads, capacity,
                                     config.head_dim, km, kl, vm, vl, **layout_kw)
        self.label = label or self.name
        #: ``sink(step, trace)`` receives each decode step's trace at the end of the step
        #: (then the policy drops it); ``None`` keeps them all in :attr:`traces` instead.
        self.sink = sink
        self.traces: list[AccessTrace] = []
        self.steps = 0
        self._counts: list[dict[str, np.ndarray]] = []
        self._parts: list[AccessTrace] = []
        self._cnt: dict[str, np.ndarray] | None = None
        self.prefill_len = 0

    # ---- hooks of the model ---------------------------------------------------------------
    def prefill(self, layer, q, k, v, start):
        out = super().prefill(layer, q, k, v, start)
        self.prefill_len = start + q.shape[1]
        self.on_prefill(layer, q, k, v, start)
        return out

    def decode(self, layer, q, k, v):
        n = k.shape[1]
        if self._cnt is None:
            shape = (self.config.n_layers, self.config.n_kv_heads)
            self._cnt = {c: np.zeros(shape, np.int64) for c in COUNTERS}
            self._parts = []
            self.on_step_begin(n)
        for h in range(self.config.n_kv_heads):
            for plane in (P.K_MSB, P.K_LSB, P.V_MSB, P.V_LSB):
                self._parts.append(rows_trace(self.layout, plane, layer, h, [n - 1], True))
        self._cnt["alive"][layer] = n
        return np.asarray(self.attend(layer, q, k, v), np.float32)

    def end_step(self) -> None:
        if self._cnt is None:
            return
        self.on_step_end()
        trace = AccessTrace.concat(self._parts)
        self._counts.append(self._cnt)
        self._parts, self._cnt = [], None
        if self.sink is None:
            self.traces.append(trace)
        else:
            self.sink(self.steps, trace)
        self.steps += 1

    # ---- for subclasses --------------------------------------------------------------------
    def on_prefill(self, layer, q, k, v, start) -> None:
        """After each prefill chunk's dense attention of ``layer``."""

    def on_step_begin(self, n: int) -> None:
        """Before layer 0 of a decode step; ``n`` counts the new token."""

    def on_step_end(self) -> None:
        """After the last layer of a decode step."""

    def attend(self, layer: int, q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Dense: every row read at the layout's widths."""
        n = k.shape[1]
        for h in range(self.config.n_kv_heads):
            self.read(P.K_MSB, layer, h, np.arange(n - 1))
            self.read(P.V_MSB, layer, h, np.arange(n - 1))
        return DecodeAttention.decode(self, layer, q, k, v)

    _COUNTER_OF = {P.K_MSB: "k_rows", P.K_LSB: "k_lsb_rows", P.V_MSB: "v_rows",
                   P.V_LSB: "v_lsb_rows", P.PAGE_MINMAX: "meta_rows",
                   P.BLOCK_SUMMARY: "meta_rows"}

    def read(self, plane: DecodePlane, layer: int, kv_head: int, rows, write: bool = False
             ) -> None:
        """Record reads (or metadata writes) of ``rows`` (ascending) and count them."""
        rows = np.asarray(rows, np.int64)
        if self.layout.row_bytes(plane) == 0 or len(rows) == 0:
            return
        self._parts.append(rows_trace(self.layout, plane, layer, kv_head, rows, write))
        key = "meta_writes" if write else self._COUNTER_OF[P(plane)]
        self._cnt[key][layer, kv_head] += len(rows)

    def counters(self) -> dict[str, np.ndarray]:
        """Per-step counters: ``{name: int64 [steps, n_layers, n_kv_heads]}`` (:data:`COUNTERS`;
        ``alive``: tokens the policy still holds for that head, the new one included)."""
        shape = (0, self.config.n_layers, self.config.n_kv_heads)
        return {c: (np.stack([d[c] for d in self._counts]) if self._counts
                    else np.zeros(shape, np.int64)) for c in COUNTERS}

    def _attend_sets(self, q: np.ndarray, k: np.ndarray, v: np.ndarray,
                     sets: list[np.ndarray]) -> np.ndarray:
        """Softmax attention of each query head over its token set (float64)."""
        d = q.shape[1]
        g = self.config.group
        out = np.empty(q.shape, np.float64)
        for h in range(q.shape[0]):
            idx = sets[h]
            kh, vh = k[h // g, idx].astype(np.float64), v[h // g, idx].astype(np.float64)
            p = _softmax(kh @ q[h].astype(np.float64) / math.sqrt(d))
            out[h] = p @ vh
        return out

    def _read_union(self, layer: int, sets: list[np.ndarray], n: int, planes) -> None:
        g = self.config.group
        for kvh in range(self.config.n_kv_heads):
            u = np.unique(np.concatenate(sets[kvh * g:(kvh + 1) * g]))
            u = u[u != n - 1]
            for plane in planes:
                self.read(plane, layer, kvh, u)


class DenseDecode(DecodePolicy):
    """Dense attention; ``bits`` 16 (fp16 rows) or 32 (fp32 rows): same math, other bytes."""

    name = "dense"

    def __init__(self, config, capacity, bits: int = 16, **kw) -> None:
        if bits not in (16, 32):
            raise ValueError(f"dense: bits must be 16 or 32, got {bits!r}")
        self.plane_bits = (bits, 0, bits, 0)
        super().__init__(config, capacity, **kw)


def _with_current(idx: np.ndarray, n: int) -> np.ndarray:
    return np.union1d(np.asarray(idx, np.int64), [n - 1])


class OracleDecode(DecodePolicy):
    """Upper bound: per query head the exact top ``keep`` of the step's own scores (ties to
    the lower position; current token always kept), softmax over them. Charges only the
    selected K and V rows although choosing them needs every score: not a realisable policy."""

    name = "oracle"
    upper_bound = True

    def __init__(self, config, capacity, keep: float | int = 0.1, **kw) -> None:
        self.keep = keep
        resolve_keep(keep, 1, "oracle keep")
        super().__init__(config, capacity, **kw)

    def attend(self, layer, q, k, v):
        n = k.shape[1]
        g = self.config.group
        kk = resolve_keep(self.keep, n, "oracle keep")
        sets = []
        for h in range(q.shape[0]):
            s = k[h // g].astype(np.float64) @ q[h].astype(np.float64)
            sets.append(_with_current(topk(s, kk).indices, n))
        self._read_union(layer, sets, n, (P.K_MSB, P.V_MSB))
        return self._attend_sets(q, k, v, sets)


class H2ODecode(DecodePolicy):
    """H2O: per (layer, K/V head) a cache of ``budget`` tokens (fraction of the current length,
    or a count), ``max(1, round(recent * budget))`` of it the newest tokens, the rest the
    heaviest hitters by accumulated attention (:func:`~psa.golden.decode.gqa_importance` of
    every prefill query and decode step, summed over the group's query heads); an evicted
    token never returns (:class:`~psa.golden.decode.DecodePruningState`). The cache is pruned
    before each step's attention. Estimate cost: none beyond the reads (probabilities of the
    kept tokens are computed anyway)."""

    name = "h2o"

    def __init__(self, config, capacity, budget: float | int = 0.2, recent: float = 0.5,
                 prob_bits: int = 12, **kw) -> None:
        resolve_keep(budget, 1, "h2o budget")
        self.budget, self.recent = budget, _check_frac("h2o recent", recent, False)
        self.prob_bits = prob_bits
        super().__init__(config, capacity, **kw)
        c = config
        self.states = [[DecodePruningState(capacity, 1, prob_bits, 40)
                        for _ in range(c.n_kv_heads)] for _ in range(c.n_layers)]

    def on_prefill(self, layer, q, k, v, start):
        c = self.config
        L, n, d = q.shape[1], k.shape[1], c.head_dim
        g = c.group
        for h in range(c.n_kv_heads):
            st = self.states[layer][h]
            while st.next_token < n:
                st.append()
            s = np.einsum("gld,nd->gln", q[h * g:(h + 1) * g], k[h]) / math.sqrt(d)
            s[:, np.arange(n)[None, :] > (start + np.arange(L))[:, None]] = -np.inf
            p = _softmax(s)
            st.add_probs(quantize_unsigned_fraction(p, self.prob_bits).reshape(-1, n))

    def attend(self, layer, q, k, v):
        n = k.shape[1]
        g = self.config.group
        kk = max(resolve_keep(self.budget, n, "h2o budget"), 1)
        out = np.empty(q.shape, np.float64)
        for h in range(self.config.n_kv_heads):
            st = self.states[layer][h]
            while st.next_token < n:
                st.append()
            alive = st.prune_decode(kk, max(1, int(round(self.recent * kk))))
            self._cnt["alive"][layer, h] = len(alive)
            self.read(P.K_MSB, layer, h, alive[alive != n - 1])
            self.read(P.V_MSB, layer, h, alive[alive != n - 1])
            qs = q[h * g:(h + 1) * g].astype(np.float64)
            p = _softmax(qs @ k[h, alive].astype(np.float64).T / math.sqrt(q.shape[1]))
            out[h * g:(h + 1) * g] = p @ v[h, alive].astype(np.float64)
            st.add_scores_for(alive, gqa_importance(p, g, self.prob_bits)[0])
        return out


class QuestDecode(DecodePolicy):
    """Quest: pages of ``page_tokens`` tokens; per query head, page ``j``'s bound
    ``sum_i max(q_i min_ji, q_i max_ji)`` from the per-page key min/max, the top pages (ties to
    the lower page) up to ``ceil(budget * n / page_tokens)`` pages, the current (last) page
    always among them; softmax over their tokens. Nothing is evicted. Reads: the min/max rows
    of every page but the current one (``PAGE_MINMAX``, ``meta_bits``), then the K and V rows of
    the union of the group's pages; writes: the current page's min/max each step."""

    name = "quest"

    def __init__(self, config, capacity, budget: float | int = 0.2, page_tokens: int = 16,
                 **kw) -> None:
        resolve_keep(budget, 1, "quest budget")
        self.budget = budget
        super().__init__(config, capacity, page_tokens=page_tokens, **kw)

    def attend(self, layer, q, k, v):
        n = k.shape[1]
        c, pt = self.config, self.layout.page_tokens
        g = c.group
        n_pages = -(-n // pt)
        cur = n_pages - 1
        want = -(-resolve_keep(self.budget, n, "quest budget") // pt)
        sets = []
        for kvh in range(c.n_kv_heads):
            self.read(P.PAGE_MINMAX, layer, kvh, np.arange(cur))
            self.read(P.PAGE_MINMAX, layer, kvh, [cur], write=True)
            kp = np.zeros((n_pages * pt, c.head_dim), np.float64)
            kp[:n] = k[kvh]
            kp[n:] = k[kvh, n - 1]  # pad the last page with a key it holds
            kp = kp.reshape(n_pages, pt, c.head_dim)
            lo, hi = kp.min(axis=1), kp.max(axis=1)
            for h in range(kvh * g, (kvh + 1) * g):
                qh = q[h].astype(np.float64)
                bound = np.maximum(lo * qh, hi * qh).sum(axis=1)
                pages = topk(bound[:cur], max(want - 1, 0)).indices
                pages = np.append(pages, cur)
                tok = (pages[:, None] * pt + np.arange(pt)[None, :]).ravel()
                sets.append(tok[tok < n])
        self._read_union(layer, sets, n, (P.K_MSB, P.V_MSB))
        return self._attend_sets(q, k, v, sets)


class NSADecode(DecodePolicy):
    """NSA-style: per K/V head (selection shared by the GQA group, as in NSA) the ``window``
    newest tokens, plus ``selected`` complete blocks of ``block_tokens`` outside the window,
    block 0 (the attention sink) always one of them; the rest by block score ``sum over the
    group's heads of softmax(q . c_b / sqrt(d))`` over the compressed keys ``c_b`` (mean of
    the block's keys) of every complete block, ties to the lower block. Output: one softmax
    over the window and selected blocks (NSA's compressed branch and gates are not modelled:
    summaries only choose). Defaults scaled to the prompt length ``L`` (``context``, default
    ``capacity``): ``window = max(16, L // 8)``, ``block_tokens = max(16, L // 16)``, ``selected
    = 4``. Reads: the summaries of the complete blocks before the window (``BLOCK_SUMMARY``),
    then K and V rows; writes: a block's summary when it completes."""

    name = "nsa"

    def __init__(self, config, capacity, selected: int = 4, window: int | None = None,
                 block_tokens: int | None = None, context: int | None = None, **kw) -> None:
        ctx = capacity if context is None else context
        self.window = max(16, ctx // 8) if window is None else int(window)
        bt = max(16, ctx // 16) if block_tokens is None else int(block_tokens)
        if self.window < bt:
            raise ValueError(f"nsa: window ({self.window}) must be >= block_tokens ({bt})")
        if int(selected) < 1:
            raise ValueError(f"nsa: selected must be >= 1, got {selected!r}")
        self.selected = int(selected)
        super().__init__(config, capacity, block_tokens=bt, **kw)

    def attend(self, layer, q, k, v):
        n = k.shape[1]
        c, bt = self.config, self.layout.block_tokens
        g, d = c.group, c.head_dim
        win = np.arange(max(0, n - self.window), n)
        complete = n // bt
        n_out = max(0, (n - self.window) // bt)  # complete blocks entirely before the window
        sets = []
        for kvh in range(c.n_kv_heads):
            self.read(P.BLOCK_SUMMARY, layer, kvh, np.arange(n_out))
            if n % bt == 0:
                self.read(P.BLOCK_SUMMARY, layer, kvh, [complete - 1], write=True)
            blocks = np.zeros(0, np.int64)
            if n_out > 0:
                summ = k[kvh, :n_out * bt].astype(np.float64).reshape(n_out, bt, d).mean(axis=1)
                score = _softmax(q[kvh * g:(kvh + 1) * g].astype(np.float64) @ summ.T
                                 / math.sqrt(d)).sum(axis=0)
                rest = topk(score[1:], self.selected - 1).indices + 1
                blocks = np.concatenate([[0], rest])
            tok = (blocks[:, None] * bt + np.arange(bt)[None, :]).ravel()
            sel = np.union1d(tok, win)
            sets.extend([sel] * g)
        self._read_union(layer, sets, n, (P.K_MSB, P.V_MSB))
        return self._attend_sets(q, k, v, sets)


class TopPDecode(DecodePolicy):
    """Top-p (Twilight-style): per query head, scores ``q . K_msb / sqrt(d)`` of every cached
    token from the MSB plane of the stored K (``k_msb + k_lsb`` bit codes, one scale per row,
    :func:`~psa.golden.decode_trace.quantize_rows`), softmax in float64, probabilities to
    ``UQ0.prob_bits`` (:func:`~psa.golden.fixed_point.quantize_unsigned_fraction`), then
    :func:`~psa.golden.decode.select_topp` with ``p_to_fixed(p, prob_bits)`` (value descending,
    ties to the lower position; shortest prefix reaching p); the current token is always
    added. The kept tokens are attended with full-precision K (LSB rows read for the group's
    union) and V. Reads: K_MSB of every row, K_LSB and V of the kept union."""

    name = "topp"

    def __init__(self, config, capacity, p: float = 0.9, k_msb_bits: int = 8,
                 k_lsb_bits: int = 8, v_bits: int = 16, prob_bits: int = 16, **kw) -> None:
        self.p = _check_frac("topp p", p, False)
        self.prob_bits = prob_bits
        self.plane_bits = (k_msb_bits, k_lsb_bits, v_bits, 0)
        super().__init__(config, capacity, **kw)

    def attend(self, layer, q, k, v):
        n = k.shape[1]
        c = self.config
        g, d = c.group, c.head_dim
        km, kl, _, _ = self.plane_bits
        pf = p_to_fixed(self.p, self.prob_bits)
        sets = []
        kfull = []
        for kvh in range(c.n_kv_heads):
            self.read(P.K_MSB, layer, kvh, np.arange(n - 1))
            msb, full = quantize_rows(k[kvh], km, kl)
            kfull.append(full)
            for h in range(kvh * g, (kvh + 1) * g):
                pe = _softmax(msb @ q[h].astype(np.float64) / math.sqrt(d))
                sel = select_topp(quantize_unsigned_fraction(pe, self.prob_bits), pf)
                sets.append(_with_current(sel, n))
        self._read_union(layer, sets, n, (P.K_LSB, P.V_MSB))
        kq = np.stack(kfull)
        return self._attend_sets(q, kq, v, sets)


def cascade_schedule(n_layers: int, keep: float, start_layer: int = 1) -> tuple[float, ...]:
    """Token keep fraction per layer: 1 before ``start_layer``, then geometric down to
    ``keep`` at the last layer (``keep ** ((l - start + 1) / (n_layers - start))``)."""
    keep = _check_frac("spatten keep", keep)
    if not 0 <= start_layer < n_layers:
        raise ValueError(f"spatten start_layer must be in 0..{n_layers - 1}, got {start_layer}")
    span = n_layers - start_layer
    return tuple(1.0 if li < start_layer else keep ** ((li - start_layer + 1) / span)
                 for li in range(n_layers))


class SpAttenDecode(DecodePolicy):
    """SpAtten in decode: cascade token pruning across layers and decode steps.

    State: one :class:`~psa.golden.decode.DecodePruningState` per layer. A token's importance
    in layer ``l``'s state is its quantized probability (``UQ0.prob_bits``) summed over every
    query head of every layer ``j <= l`` where it was attended, over the prefill queries and
    every decode step (``add_probs_for``). At the start of each step the new token is appended
    to every layer (score 0), then layer by layer: ``retain`` the previous layer's alive tokens
    (cascade: a deeper layer never holds a token a shallower one dropped), then
    ``prune_decode(k_l, recent_l)`` with ``k_l = resolve_keep(schedule[l], n)`` and
    ``recent_l = max(1, round(recent * k_l))`` newest tokens protected (the new token at
    least). Pruned tokens never return.

    Per layer and K/V head with ``A`` the alive tokens: K rows are ``k_msb + k_lsb``-bit codes
    (:func:`~psa.golden.decode_trace.quantize_rows`); every query head of the group computes
    its softmax over ``A`` with MSB-only keys; a row whose largest probability is below
    ``refetch_threshold`` is flat, and then the head's K LSB rows of ``A`` are read and flat rows
    recomputed with full keys, and V is used at full precision (V LSB rows read). Local value
    pruning: each query head uses the V rows of its top ``ceil(v_keep |A|)`` probabilities
    (:func:`~psa.golden.decode.select_kv`), the others count as 0 (not renormalised); the group
    reads the union. Head pruning (``head_keep < 1``): from layer ``head_start`` on, after each
    step the K/V heads with the lowest accumulated output magnitude ``floor(sum |o|)`` of their
    query heads are dropped (their output is 0, nothing read) for the rest of the sequence.

    Variants (defaults keep the behaviour above): ``schedule="flat"`` keeps ``keep`` at every
    layer from ``start_layer`` on instead of the geometric cascade. ``v_mass``: local value
    pruning by cumulative mass instead of a count: each query head keeps the shortest top-p
    prefix of its probabilities quantized to ``UQ0.mass_bits``
    (:func:`~psa.golden.decode.select_topp` with ``p_to_fixed(v_mass, mass_bits)``: value
    descending, ties to the lower position). ``refetch="selected"``: the value selection is
    made from the MSB probabilities first; if a row of the group is flat, only the selected
    union's K LSB rows are read (not every alive row), the flat rows' scores are recomputed
    with full keys for the selected tokens and the current one (on chip) and MSB keys for the
    rest, one softmax over ``A`` again, and the output uses those probabilities over the same
    selection with full-precision V (V LSB rows of the union read). ``refetch_threshold > 1``
    makes every row flat (always refetch).

    Defaults (keep 0.7, recent 0.75, v_keep 0.5, K/V 6 + 4 bits, threshold 0.1) chosen on
    SmolLM2-135M, 512-token prompts of Python reference prose, 64 teacher-forced steps: +1.4 %
    perplexity, 3.1x fewer K/V read bytes than dense fp16 (keep 0.55: +1.8 %, 3.4x; keep 0.4:
    +4.9 %, 3.9x; ``OPENBLAS_NUM_THREADS=1 python bench/decode_policies.py --windows 8
    --seed 1 dense=16 spatten=0.7 spatten=0.55 spatten=0.4``).
    """

    name = "spatten"

    def __init__(self, config, capacity, keep: float = 0.7, start_layer: int = 1,
                 recent: float = 0.75, v_keep: float = 0.5, refetch_threshold: float = 0.1,
                 k_msb_bits: int = 6, k_lsb_bits: int = 4, v_msb_bits: int = 6,
                 v_lsb_bits: int = 4, head_keep: float = 1.0, head_start: int | None = None,
                 prob_bits: int = 12, v_mass: float | None = None, mass_bits: int = 16,
                 refetch: str = "all", schedule: str = "geometric", **kw) -> None:
        if schedule not in ("geometric", "flat"):
            raise ValueError(f"spatten schedule must be 'geometric' or 'flat', got {schedule!r}")
        if refetch not in ("all", "selected"):
            raise ValueError(f"spatten refetch must be 'all' or 'selected', got {refetch!r}")
        self.schedule = cascade_schedule(config.n_layers, keep, start_layer)
        if schedule == "flat":
            self.schedule = tuple(1.0 if li < start_layer else float(keep)
                                  for li in range(config.n_layers))
        self.keep, self.start_layer = keep, start_layer
        self.recent = _check_frac("spatten recent", recent, False)
        self.v_keep = _check_frac("spatten v_keep", v_keep)
        self.v_mass = None if v_mass is None else _check_frac("spatten v_mass", v_mass)
        self.mass_bits = mass_bits
        self.refetch = refetch
        self.head_keep = _check_frac("spatten head_keep", head_keep)
        self.head_start = config.n_layers * 3 // 4 if head_start is None else int(head_start)
        self.refetch_threshold = float(refetch_threshold)
        self.prob_bits = prob_bits
        self.plane_bits = (k_msb_bits, k_lsb_bits, v_msb_bits, v_lsb_bits)
        super().__init__(config, capacity, **kw)
        self.states = [DecodePruningState(capacity, config.n_kv_heads, prob_bits, 40, 48)
                       for _ in range(config.n_layers)]
        self.flat_rows = 0

    def _select_v(self, p: np.ndarray, vcount: int, vmass: int | None) -> np.ndarray:
        """Local value pruning of one query row ``p`` over the alive tokens: the top
        ``vcount`` probabilities, or with ``v_mass`` the shortest top-p prefix."""
        if vmass is None:
            return select_kv(p, vcount)
        return select_topp(quantize_unsigned_fraction(p, self.mass_bits), vmass)

    def _grow(self, n: int) -> None:
        for st in self.states:
            while st.next_token < n:
                st.append()

    def _add(self, layer: int, tokens: np.ndarray, row: np.ndarray) -> None:
        for st in self.states[layer:]:
            st.add_scores_for(tokens, row)

    def on_prefill(self, layer, q, k, v, start):
        c = self.config
        L, n = q.shape[1], k.shape[1]
        self._grow(n)
        g = c.group
        total = np.zeros(n, np.uint64)
        future = np.arange(n)[None, :] > (start + np.arange(L))[:, None]
        for kvh in range(c.n_kv_heads):
            s = np.einsum("gld,nd->gln", q[kvh * g:(kvh + 1) * g], k[kvh]) / math.sqrt(c.head_dim)
            s[:, future] = -np.inf
            qp = quantize_unsigned_fraction(_softmax(s), self.prob_bits)
            total += qp.sum(axis=(0, 1), dtype=np.uint64)
        self._add(layer, np.arange(n), total)

    def on_step_begin(self, n):
        self._grow(n)
        prev = None
        for li, st in enumerate(self.states):
            if prev is not None:
                st.retain(prev)
            kk = resolve_keep(self.schedule[li], n, f"spatten keep[{li}]")
            prev = st.prune_decode(max(kk, 1), max(1, int(round(self.recent * kk))))

    def on_step_end(self):
        if self.head_keep >= 1.0:
            return
        for li in range(self.head_start, self.config.n_layers):
            st = self.states[li]
            st.prune_heads(max(1, resolve_keep(self.head_keep, self.config.n_kv_heads)))

    def attend(self, layer, q, k, v):
        n = k.shape[1]
        c = self.config
        g, d = c.group, c.head_dim
        km, kl, vm, vl = self.plane_bits
        st = self.states[layer]
        alive = st.alive
        assert alive[-1] == n - 1, "the new token is always alive (recent >= 1)"
        prev = alive[alive != n - 1]
        out = np.zeros(q.shape, np.float64)
        row = np.zeros(len(alive), np.uint64)
        vcount = max(1, math.ceil(self.v_keep * len(alive)))
        vmass = None if self.v_mass is None else p_to_fixed(self.v_mass, self.mass_bits)
        progressive = kl > 0 and self.refetch_threshold > 0
        for kvh in range(c.n_kv_heads):
            if kvh not in st.heads:
                self._cnt["alive"][layer, kvh] = 0
                continue
            self._cnt["alive"][layer, kvh] = len(alive)
            kmsb, kfull = quantize_rows(k[kvh, alive], km, kl)
            vmsb, vfull = quantize_rows(v[kvh, alive], vm, vl)
            qs = q[kvh * g:(kvh + 1) * g].astype(np.float64)
            p = _softmax(qs @ kmsb.T / math.sqrt(d))
            self.read(P.K_MSB, layer, kvh, prev)
            flat = (p.max(axis=1) < self.refetch_threshold) if progressive \
                else np.zeros(g, bool)
            refetch = bool(flat.any())
            if refetch and self.refetch == "all":
                self.read(P.K_LSB, layer, kvh, prev)
                p[flat] = _softmax(qs[flat] @ kfull.T / math.sqrt(d))
                self.flat_rows += int(flat.sum())
            sels = [self._select_v(p[i], vcount, vmass) for i in range(g)]
            need = np.zeros(len(alive), bool)
            for sel in sels:
                need[sel] = True
            need[-1] = False  # the current token (last alive) is on chip
            if refetch and self.refetch == "selected":
                exact = need.copy()
                exact[-1] = True
                kmix = np.where(exact[:, None], kfull, kmsb)
                self.read(P.K_LSB, layer, kvh, alive[need])
                p[flat] = _softmax(qs[flat] @ kmix.T / math.sqrt(d))
                self.flat_rows += int(flat.sum())
            vv = vfull if refetch else vmsb
            for i, sel in enumerate(sels):
                out[kvh * g + i] = p[i, sel] @ vv[sel]
            self.read(P.V_MSB, layer, kvh, alive[need])
            if refetch:
                self.read(P.V_LSB, layer, kvh, alive[need])
            row += quantize_unsigned_fraction(p, self.prob_bits).sum(axis=0, dtype=np.uint64)
            if self.head_keep < 1.0:
                mag = int(np.floor(np.abs(out[kvh * g:(kvh + 1) * g]).sum()))
                st.add_head_magnitude(kvh, min(mag, (1 << 24) - 1))
        self._add(layer, alive, row)
        return out


# --------------------------------------------------------------------------------------------
# names and parsing
# --------------------------------------------------------------------------------------------

#: Policy name -> (knob, default values of a sweep).
DECODE_POLICY_NAMES: dict[str, tuple[str, tuple]] = {
    "dense": ("bits", ("16", "32")),
    "spatten": ("keep", ("0.7", "0.55", "0.4")),
    "h2o": ("budget", ("0.2",)),
    "quest": ("budget", ("0.2",)),
    "nsa": ("selected", ("4",)),
    "topp": ("p", ("0.9",)),
    "oracle": ("keep", ("0.1",)),
}
DEFAULT_DECODE_POLICIES = "dense,spatten,h2o,quest,nsa,topp,oracle"

_CLASSES = {"dense": DenseDecode, "spatten": SpAttenDecode, "h2o": H2ODecode,
            "quest": QuestDecode, "nsa": NSADecode, "topp": TopPDecode, "oracle": OracleDecode}
_KNOB_TYPES = {"dense": int, "spatten": float, "h2o": float, "quest": float, "nsa": int,
               "topp": float, "oracle": float}


def make_decode_policy(name: str, value: str | float | int | None, config: LlamaConfig,
                       capacity: int, **options) -> DecodePolicy:
    """A fresh policy instance (one per sequence): ``name`` from :data:`DECODE_POLICY_NAMES`,
    its knob set to ``value`` (``None``: the first default); ``options`` go to the class
    (e.g. ``recent=0.5``, ``context=512`` for ``nsa``). Label ``name=value``."""
    if name not in DECODE_POLICY_NAMES:
        raise ValueError(f"unknown decode policy {name!r}; one of {', '.join(_CLASSES)}")
    knob, defaults = DECODE_POLICY_NAMES[name]
    if value is None:
        value = defaults[0]
    try:
        x = _KNOB_TYPES[name](value)
    except ValueError:
        raise ValueError(f"decode policy {name}: {knob} must be a "
                         f"{_KNOB_TYPES[name].__name__}, got {value!r}") from None
    return _CLASSES[name](config, capacity, **{knob: x}, label=f"{name}={x:g}", **options)


def parse_decode_policies(text: str) -> list[tuple[str, str]]:
    """``"dense,h2o=0.2/0.1,topp"`` -> ``[("dense", "16"), ("h2o", "0.2"), ...]``; a bare name
    takes its default values; ``dense=16`` is always first (the baseline)."""
    out: list[tuple[str, str]] = [("dense", "16")]
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        name, sep, values = item.partition("=")
        name = name.strip()
        if name not in DECODE_POLICY_NAMES:
            raise ValueError(f"--policies: unknown decode policy {name!r}; one of "
                             f"{', '.join(DECODE_POLICY_NAMES)}")
        vals = [s.strip() for s in values.split("/")] if sep else \
            list(DECODE_POLICY_NAMES[name][1])
        for val in vals:
            if not val:
                raise ValueError(f"--policies: empty value in {item!r}")
            if (name, val) not in out:
                out.append((name, val))
    return out


# --------------------------------------------------------------------------------------------
# one prefill for several policies
# --------------------------------------------------------------------------------------------


class PrefillFanout(DecodeAttention):
    """Dense prefill attention once; every policy's :meth:`DecodePolicy.on_prefill` sees it."""

    def __init__(self, policies: Sequence[DecodePolicy]) -> None:
        self.policies = list(policies)

    def prefill(self, layer, q, k, v, start):
        out = DecodeAttention.prefill(self, layer, q, k, v, start)
        for pol in self.policies:
            pol.prefill_len = start + q.shape[1]
            pol.on_prefill(layer, q, k, v, start)
        return out


def shared_prefill(model: LlamaDecoder, ids: np.ndarray, policies: Sequence[DecodePolicy],
                   capacity: int | None = None, chunk: int = 256,
                   tick: Callable[[], None] | None = None) -> tuple[KVCache, np.ndarray]:
    """Prefill ``ids [L]`` once (batch 1, ``chunk`` tokens at a time) for every policy.

    Prefill is dense for every policy, so one pass serves them all: its hook runs the dense
    attention once per layer and chunk and hands the same ``q, k, v`` to each policy's
    :meth:`~DecodePolicy.on_prefill`, exactly what a batched prefill through the policies'
    own hooks does, at ``1 / len(policies)`` of the weight products and without a batch of
    prefill activations. Returns the cache (one copy per policy, in order, ``capacity`` rows,
    default the policies' capacity) and the last position's logits ``[len(policies), vocab]``.
    ``tick()`` is called after each chunk.
    """
    pols = list(policies)
    if not pols:
        raise ValueError("shared_prefill: give at least one policy")
    for pol in pols:
        if type(pol).prefill is not DecodePolicy.prefill:
            raise TypeError(f"shared_prefill: {type(pol).__name__} overrides prefill(); run "
                            "it through model.prefill instead")
    ids = np.asarray(ids, np.int64).reshape(1, -1)
    cap = pols[0].capacity if capacity is None else int(capacity)
    if chunk < 1:
        raise ValueError(f"shared_prefill: chunk must be >= 1, got {chunk}")
    cache = model.new_cache(1, cap)
    fan = [PrefillFanout(pols)]
    logits = None
    for s in range(0, ids.shape[1], chunk):
        logits = model.prefill(ids[:, s:s + chunk], cache, attention=fan, chunk=chunk)
        if tick is not None:
            tick()
    return cache.select([0] * len(pols)), np.repeat(logits, len(pols), axis=0)
