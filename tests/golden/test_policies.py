"""Attention policies on the NumPy encoder: contracts, traces, the pruning unit's commands.

Most tests run a tiny random BERT written by ``tiny_bert.write_tiny``; the SpAtten floor
test runs MiniLM on the report's default corpus.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from tiny_bert import ids_for, write_tiny

from psa.golden.cascade import CascadeConfig, dense_trace
from psa.golden.pruning import PruningState, kv_fetch_trace
from psa.golden.quant import split_quantize
from psa.golden.trace import AccessTrace, KVLayout, Plane
from psa.models.minilm import BertConfig, BertEncoder, DensePolicy, LayerView, fetch_trace
from psa.policies.encoder import (
    FP32_BITS,
    POLICY_NAMES,
    ProgressivePolicy,
    SpAttenPolicy,
    TopKPolicy,
    WindowGlobalPolicy,
    make_policy,
    parse_policies,
    policy_layout,
    progressive_schedule,
    spatten_preset,
)
from psa.reports.experiment import (
    accuracy,
    coalesce,
    concat_traces,
    cosines,
    retrieval_agreement,
    run_policy,
)

SEED = 4321


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_bert_policies")
    write_tiny(folder, num_hidden_layers=4)
    return BertEncoder(folder)


def _encode(model, policy, n=30, seed=SEED):
    return model.encode(ids_for(model, n, seed), policy)


def _planes(trace: AccessTrace, planes) -> AccessTrace:
    sel = np.isin(trace.plane, [int(p) for p in planes])
    return AccessTrace(trace.addr[sel], trace.size[sel], layer=trace.layer[sel],
                       plane=trace.plane[sel])


def _same(a: AccessTrace, b: AccessTrace) -> bool:
    return (len(a) == len(b) and np.array_equal(a.addr, b.addr)
            and np.array_equal(a.size, b.size) and np.array_equal(a.plane, b.plane))


# --------------------------------------------------------------------------------------------
# SpAtten
# --------------------------------------------------------------------------------------------


def _keep_count(keep: int | float, total: int) -> int:
    """A schedule entry as a count, from CascadeConfig's contract: ints are counts, fractions
    of ``total`` round half up, at least 1."""
    return keep if isinstance(keep, int) else max(1, int(np.floor(keep * total + 0.5)))


def _top(scores: dict[int, int], ids: list[int], k: int) -> list[int]:
    """The ``k`` ids with the highest score, ties to the lowest id, returned ascending."""
    return sorted(sorted(ids, key=lambda i: (-scores[i], i))[:k])


def reference_schedule(cfg: CascadeConfig, n: int, n_heads: int, probs, mags) -> list:
    """SpAtten's cascade schedule written out plainly, independent of ``PruningState``.

    ``probs[l]``: per running head (ascending) the ``(queries, keys)`` ``UQ0.prob_bits``
    integers of layer ``l``, keys in alive order; ``mags[l]``: per running head its output L1
    magnitude (empty for the last layer, which prunes nothing). Token importance is the
    probabilities summed over heads and queries and accumulated over layers (saturating at
    ``score_bits``); head importance the magnitudes, likewise. After layer ``l`` the
    schedules keep the top heads, then the top tokens (ties to the lowest index); a pruned
    token or head never returns. Returns ``(alive, heads)`` at the start of every layer and
    after the last.
    """
    tok_cap, head_cap = (1 << cfg.score_bits) - 1, (1 << cfg.head_score_bits) - 1
    score = dict.fromkeys(range(n), 0)
    head_score = dict.fromkeys(range(n_heads), 0)
    alive, heads = list(range(n)), list(range(n_heads))
    states = []
    for layer, (layer_probs, layer_mags) in enumerate(zip(probs, mags, strict=True)):
        states.append((alive, heads))
        assert len(layer_probs) == len(heads) and len(layer_mags) in (0, len(heads))
        for p in layer_probs:
            for pos, token in enumerate(alive):
                score[token] = min(score[token] + int(p[:, pos].sum()), tok_cap)
        for head, mag in zip(heads, layer_mags, strict=False):
            head_score[head] = min(head_score[head] + int(mag), head_cap)
        if layer in cfg.head_keep:
            heads = _top(head_score, heads, _keep_count(cfg.head_keep[layer], n_heads))
        if layer in cfg.token_keep:
            alive = _top(score, alive, _keep_count(cfg.token_keep[layer], n))
    states.append((alive, heads))
    return states


CASES = [
    CascadeConfig(token_keep={0: 0.8, 1: 0.5, 2: 5}, head_keep={1: 3, 2: 0.5}),
    # narrow scores: prob_bits=8, score_bits=10 saturate after a few rows
    CascadeConfig(token_keep={1: 7}, head_keep={0: 2}, k_msb_bits=6, v_msb_bits=4, v_lsb_bits=2,
                  refetch_threshold=0.3, prob_bits=8, score_bits=10),
    CascadeConfig(token_keep={0: 0.5, 2: 0.25}, v_keep=0.5),
]


POLICY_CASES = [(SpAttenPolicy, (cfg,)) for cfg in CASES] + [(ProgressivePolicy, (0.4,))]


class _Capture:
    """Policy mixin keeping ``[view, attention, head_out]`` of every layer in ``captured``."""

    def begin(self, n_tokens, config):
        self.captured = []
        super().begin(n_tokens, config)

    def attend(self, view):
        att = super().attend(view)
        self.captured.append([view, att, None])
        return att

    def prune(self, view, att, head_out):
        self.captured[-1][2] = head_out
        return super().prune(view, att, head_out)


@pytest.mark.parametrize("case", range(len(POLICY_CASES)))
@pytest.mark.parametrize("n", [9, 30])
def test_spatten_matches_reference_schedule(tiny, case, n):
    """Alive tokens and heads of every layer are those of :func:`reference_schedule` fed with
    what the policy computed (probabilities, head outputs); the recorded unit commands say the
    same; each head's K_MSB/V_MSB reads are its alive rows in ascending order, line for line
    the pruning unit's fetch stream (:func:`kv_fetch_trace`) for that state."""
    seed = SEED + case
    cls, args = POLICY_CASES[case]
    pol = type("Capture", (_Capture, cls), {})(*args, record=True)
    enc = _encode(tiny, pol, n, seed)
    cfg, n_heads = pol.config, tiny.config.num_attention_heads
    n_layers = tiny.config.num_hidden_layers
    captured = pol.captured
    assert len(pol.script) == len(captured) == n_layers
    mag_cap = (1 << cfg.mag_bits) - 1
    mags = [[] if out is None else
            [min(int(np.floor(np.abs(o).sum(dtype=np.float64))), mag_cap) for o in out]
            for _, _, out in captured]
    for layer, (_, att, _) in enumerate(captured):
        ctx = f"seed={seed} n={n} layer={layer}"
        for qp, p in zip(pol.script[layer].probs, att.probs, strict=True):
            # the unit's inputs are the probabilities in UQ0.prob_bits, rounded to nearest
            # (1.0 clamps to the largest code); 1e-3: float32 probabilities
            assert qp.shape == p.shape == (len(att.probs[0]),) * 2, ctx
            top = (1 << cfg.prob_bits) - 1
            exact = np.minimum(p.astype(np.float64) * (1 << cfg.prob_bits), top)
            assert np.abs(qp.astype(np.float64) - exact).max() <= 0.5 + 1e-3, ctx
    states = reference_schedule(cfg, n, n_heads, [rec.probs for rec in pol.script], mags)
    layout = policy_layout(pol, tiny.config)
    trace = fetch_trace(enc.layers, layout)
    kv = (int(Plane.K_MSB), int(Plane.V_MSB))
    for layer, (rec, lrec) in enumerate(zip(pol.script, enc.layers, strict=True)):
        ctx = f"seed={seed} n={n} layer={layer}"
        alive, heads = states[layer]
        assert lrec.tokens.tolist() == alive, ctx
        assert lrec.heads.tolist() == heads, ctx
        assert rec.alive.tolist() == alive and rec.heads.tolist() == heads, ctx
        if layer + 1 < n_layers:  # the commands that take the unit to the next state
            assert rec.mags == mags[layer], ctx
            nxt_alive, nxt_heads = states[layer + 1]
            assert set(nxt_alive) <= set(alive) and set(nxt_heads) <= set(heads), ctx
            assert rec.prune == (len(nxt_alive) if layer in cfg.token_keep else None), ctx
            assert rec.prune_heads == (len(nxt_heads) if layer in cfg.head_keep else None), ctx
        req = lrec.requests[np.isin(lrec.requests[:, 0], kv)]
        if cfg.v_keep == 1.0:
            expect = [(plane, h, t) for h in heads for plane in kv for t in alive]
            assert req.tolist() == [list(e) for e in expect], ctx
            sel = (trace.layer == layer) & np.isin(trace.plane, kv)
            unit = kv_fetch_trace(layout, layer, np.array(alive), np.array(heads))
            assert _same(AccessTrace(trace.addr[sel], trace.size[sel], plane=trace.plane[sel]),
                         unit), ctx
        else:  # every K row; V rows a subset of the alive ones, ascending, per head
            k_rows = req[req[:, 0] == int(Plane.K_MSB)]
            assert k_rows.tolist() == [[int(Plane.K_MSB), h, t] for h in heads for t in alive]
            for h in heads:
                v_rows = req[(req[:, 0] == int(Plane.V_MSB)) & (req[:, 1] == h), 2]
                assert set(v_rows) <= set(alive) and np.all(np.diff(v_rows) > 0), ctx
    assert enc.tokens.tolist() == states[-1][0]


TINY_CFG = BertConfig(vocab_size=8, hidden_size=8, num_hidden_layers=3, num_attention_heads=2,
                      intermediate_size=8, max_position_embeddings=8)


def _view(layer: int, tokens, heads, q, k) -> LayerView:
    q, k = np.asarray(q, np.float32), np.asarray(k, np.float32)
    return LayerView(layer=layer, n_tokens=4, tokens=np.array(tokens), heads=np.array(heads),
                     q=q, k=k, v=np.ones_like(k))


@pytest.mark.parametrize("head_mags, kept_head", [((4, 8), 1), ((8, 8), 0), ((9, 8), 0)])
def test_spatten_by_hand(head_mags, kept_head):
    """Four tokens, two heads, float32 planes, by hand. Layer 0: head 0 attends uniformly
    (every probability 1/4 = 1024 in UQ0.12, 4 queries: 4096 per token), head 1 puts
    everything on token 3 (4095 per query): scores 4096, 4096, 4096, 20476. Keep 3 tokens:
    3 and, of the tied 0, 1, 2, the lowest two; keep 1 head: the larger magnitude, ties to
    head 0. Layer 1 (tokens 0, 1, 3): the kept head attends only to token 1 (+3 * 4095 =
    16381), but token 3's accumulated 20476 still wins the single slot."""
    big = [10.0, 0.0, 0.0, 0.0]
    pol = SpAttenPolicy(CascadeConfig(token_keep={0: 3, 1: 1}, head_keep={0: 1},
                                      k_msb_bits=32, k_lsb_bits=0, v_msb_bits=32,
                                      v_lsb_bits=0, refetch_threshold=0.0), record=True)
    pol.begin(4, TINY_CFG)
    assert pol.heads(0, 4).tolist() == [True, True]
    v0 = _view(0, [0, 1, 2, 3], [0, 1], [np.zeros((4, 4)), [big] * 4],
               [np.zeros((4, 4)), [[0] * 4] * 3 + [big]])
    att = pol.attend(v0)
    assert [p.sum(axis=0).tolist() for p in pol.script[0].probs] == \
        [[4096] * 4, [0, 0, 0, 4 * 4095]]
    K, V = int(Plane.K_MSB), int(Plane.V_MSB)
    assert att.requests.tolist() == [[pl, h, t] for h in (0, 1) for pl in (K, V)
                                     for t in range(4)]
    # head outputs whose L1 norms are the wanted magnitudes (+0.5: floor)
    head_out = np.stack([np.full((4, 4), (m + 0.5) / 16) for m in head_mags])
    assert pol.prune(v0, att, head_out).tolist() == [True, True, False, True]
    assert pol.script[0].mags == list(head_mags)
    assert pol.heads(1, 3).tolist() == [kept_head == 0, kept_head == 1]
    q1, k1 = [big] * 3, [[0] * 4, big, [0] * 4]
    v1 = _view(1, [0, 1, 3], [kept_head], [q1], [k1])
    att = pol.attend(v1)
    assert pol.script[1].probs[0].sum(axis=0).tolist() == [0, 3 * 4095, 0]
    assert att.requests.tolist() == [[pl, kept_head, t] for pl in (K, V) for t in (0, 1, 3)]
    assert pol.prune(v1, att, np.ones((1, 3, 4))).tolist() == [False, False, True]
    assert pol.heads(2, 1).tolist() == [kept_head == 0, kept_head == 1]


def test_spatten_probs_are_the_units_inputs(tiny):
    """Recorded rows are the policy's probabilities quantized to UQ0.prob_bits; head
    magnitudes are floor(sum |P V|) clamped to mag_bits."""
    pol = SpAttenPolicy(CascadeConfig(token_keep={0: 0.5}, mag_bits=6), record=True)
    enc = _encode(tiny, pol, 20)
    rec = pol.script[0]
    # rows of a softmax: each UQ0.12 row sums to about 2**12 (one rounding per entry)
    for p in rec.probs:
        sums = p.sum(axis=1).astype(np.int64)
        assert np.all(np.abs(sums - 4096) <= p.shape[1])
    assert all(0 <= m <= 63 for m in rec.mags) and max(rec.mags) == 63
    assert len(enc.layers[1].tokens) == 10


def test_spatten_progressive_quantization(tiny):
    """threshold 0: MSB planes only; threshold 1: every head refetches its LSB planes and the
    probabilities are those of the full-precision quantized keys."""
    ids = ids_for(tiny, 16, SEED)
    lo = SpAttenPolicy(CascadeConfig(refetch_threshold=0.0))
    hi = SpAttenPolicy(CascadeConfig(refetch_threshold=1.0))
    enc_lo, enc_hi = tiny.encode(ids, lo), tiny.encode(ids, hi)
    for rec in enc_lo.layers:
        assert set(rec.fetched) == {Plane.K_MSB, Plane.V_MSB}
    for rec in enc_hi.layers:
        assert set(rec.fetched) == {Plane.K_MSB, Plane.K_LSB, Plane.V_MSB, Plane.V_LSB}
        assert all(m.all() for m in rec.fetched.values())
    assert all(s["refetch_heads"] == s["heads"] for s in hi.layer_stats)
    assert all(s["refetch_heads"] == 0 for s in lo.layer_stats)
    # layer 0, head 0 by hand
    d = tiny.config.d_head
    x_view = {}

    class Spy(SpAttenPolicy):
        def attend(self, view):
            att = super().attend(view)
            if view.layer == 0:
                x_view["view"], x_view["att"] = view, att
            return att

    tiny.encode(ids, Spy(CascadeConfig(refetch_threshold=1.0)))
    view, att = x_view["view"], x_view["att"]
    k = split_quantize(view.k[0], 8, 4).full
    s = view.q[0].astype(np.float64) @ k.T / np.sqrt(d)
    p = np.exp(s - s.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(att.probs[0], p, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(att.v[0], split_quantize(view.v[0], 8, 4).full, rtol=1e-6,
                               atol=1e-7)
    # bytes: 8+4 bit planes, all read, against fp32
    layout = policy_layout(hi, tiny.config)
    assert fetch_trace(enc_hi.layers, layout).payload_bytes * 32 == \
        fetch_trace(tiny.encode(ids).layers, policy_layout(DensePolicy(), tiny.config)) \
        .payload_bytes * 12


def test_spatten_fp32_without_pruning_is_dense(tiny):
    ids = ids_for(tiny, 25, SEED)
    pol = SpAttenPolicy(CascadeConfig(k_msb_bits=32, k_lsb_bits=0, v_msb_bits=32, v_lsb_bits=0))
    a, b = tiny.encode(ids), tiny.encode(ids, pol)
    np.testing.assert_allclose(a.embedding, b.embedding, atol=2e-6)
    assert pol.bits() == FP32_BITS
    layout = policy_layout(pol, tiny.config)
    assert _same(fetch_trace(a.layers, layout), fetch_trace(b.layers, layout))
    assert _same(fetch_trace(a.layers, layout), dense_trace(layout, 25))


def test_spatten_validation():
    with pytest.raises(ValueError, match="query_tile"):
        SpAttenPolicy(CascadeConfig(query_tile=4))
    with pytest.raises(ValueError, match=r"token_keep\[1\] must keep at least one"):
        SpAttenPolicy(CascadeConfig(token_keep={1: 0}))
    with pytest.raises(ValueError, match="head_keep"):
        SpAttenPolicy(CascadeConfig(head_keep={1: 1.5}))
    with pytest.raises(ValueError, match="spatten preset"):
        spatten_preset("nope", 6)


def test_spatten_schedule_out_of_range(tiny):
    with pytest.raises(ValueError, match="token_keep: layer must be in 0..3"):
        _encode(tiny, SpAttenPolicy(CascadeConfig(token_keep={7: 0.5})))


def test_spatten_presets_depth():
    for preset in ("quant", "tokens", "default", "aggressive"):
        for layers in (2, 6, 12, 24):
            cfg = spatten_preset(preset, layers)
            cfg.validate(layers)
            assert all(0 <= layer <= layers - 2 for layer in cfg.token_keep)
            assert all(0 <= layer <= layers - 2 for layer in cfg.head_keep)
    assert spatten_preset("default", 6).token_keep == {4: 0.9}
    assert spatten_preset("aggressive", 6).token_keep == {1: 0.8, 2: 0.65, 3: 0.5, 4: 0.4}
    assert spatten_preset("quant", 6, refetch_threshold=0.2).refetch_threshold == 0.2


# --------------------------------------------------------------------------------------------
# progressive schedule
# --------------------------------------------------------------------------------------------


def test_progressive_schedule():
    s = progressive_schedule(6, 0.5)
    assert list(s) == [0, 1, 2, 3, 4]
    assert s[4] == pytest.approx(0.5)
    assert all(a > b for a, b in zip(list(s.values()), list(s.values())[1:], strict=False))
    assert progressive_schedule(6, 0.5, start_layer=3) == {3: pytest.approx(0.5 ** 0.5),
                                                           4: pytest.approx(0.5)}
    assert progressive_schedule(1, 0.5) == {}
    with pytest.raises(ValueError, match="final_keep"):
        progressive_schedule(6, 0.0)


def test_progressive_policy_alive_counts(tiny):
    n = 30
    pol = ProgressivePolicy(0.4)
    enc = _encode(tiny, pol, n)
    sched = progressive_schedule(tiny.config.num_hidden_layers, 0.4)
    expect = [n] + [max(1, int(np.floor(sched[layer] * n + 0.5)))
                    for layer in range(tiny.config.num_hidden_layers - 1)]
    assert [len(r.tokens) for r in enc.layers] == expect
    assert all(len(r.heads) == tiny.config.num_attention_heads for r in enc.layers)
    assert pol.bits() == FP32_BITS
    with pytest.raises(ValueError, match="start_layer"):
        ProgressivePolicy(0.5, start_layer=-1)


# --------------------------------------------------------------------------------------------
# static top-k and window + global
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("keep", [0.1, 0.25, 0.5])
@pytest.mark.parametrize("tile", [None, 4])
def test_topk_rows_and_reads(tiny, keep, tile):
    n = 23
    captured = []

    class Spy(TopKPolicy):
        def attend(self, view):
            att = super().attend(view)
            captured.append((view, att))
            return att

    enc = _encode(tiny, Spy(keep, query_tile=tile), n)
    k = max(1, int(np.floor(n * keep)))
    for (view, att), rec in zip(captured, enc.layers, strict=True):
        assert np.all((att.probs > 0).sum(axis=-1) == k)
        # exact-k rows are the k largest scores (ties to the lower key)
        s = view.q.astype(np.float64) @ np.swapaxes(view.k, -1, -2)
        kept_min = np.where(att.probs > 0, s, np.inf).min(axis=-1)
        dropped_max = np.where(att.probs > 0, -np.inf, s).max(axis=-1)
        assert np.all(kept_min >= dropped_max - 1e-5)
        tiles = [slice(0, n)] if tile is None else [slice(i, min(i + tile, n))
                                                    for i in range(0, n, tile)]
        req = rec.requests
        expect = []
        for head_i, head in enumerate(view.heads):
            for rows in tiles:
                need = np.flatnonzero((att.probs[head_i, rows] > 0).any(axis=0))
                expect += [(int(Plane.K_MSB), head, t) for t in range(n)]
                expect += [(int(Plane.V_MSB), head, t) for t in need]
        np.testing.assert_array_equal(req, np.array(expect))


def test_topk_full_keep_is_dense(tiny):
    ids = ids_for(tiny, 17, SEED)
    np.testing.assert_allclose(tiny.encode(ids, TopKPolicy(1.0)).embedding,
                               tiny.encode(ids).embedding, atol=1e-6)
    with pytest.raises(ValueError, match="keep"):
        TopKPolicy(0.0)
    with pytest.raises(ValueError, match="tie_rule"):
        TopKPolicy(0.5, tie_rule="random")
    with pytest.raises(ValueError, match="query_tile"):
        TopKPolicy(0.5, query_tile=0)


def test_window_global_mask():
    pol = WindowGlobalPolicy(window=0.25, global_keep=0.25, dense_layers=1)
    pol.begin(20, None)
    pol.importance[:] = np.arange(20) % 7  # tokens 6 and 13 highest, then 5, 12, 19
    tokens = np.arange(20)
    view = LayerView(layer=1, n_tokens=20, tokens=tokens, heads=np.arange(2),
                     q=np.zeros((2, 20, 4), np.float32), k=np.zeros((2, 20, 4), np.float32),
                     v=np.zeros((2, 20, 4), np.float32))
    mask = pol.mask(view, np.zeros((2, 20, 20)))
    w, g = 5, 5
    glob = {6, 13, 5, 12, 19}
    for i in range(20):
        start = min(max(i - w // 2, 0), 20 - w)
        expect = set(range(start, start + w)) | glob
        assert set(np.flatnonzero(mask[i])) == expect, i
    dense_view = LayerView(layer=0, n_tokens=20, tokens=tokens, heads=view.heads, q=view.q,
                           k=view.k, v=view.v)
    assert pol.mask(dense_view, np.zeros((2, 20, 20))).all()
    assert len(glob) == g


def test_window_policy_runs_and_reads_union(tiny):
    n = 24
    pol = WindowGlobalPolicy(window=0.25, query_tile=6)
    enc = _encode(tiny, pol, n)
    # layer 0 dense: every tile reads every row
    assert enc.layers[0].rows_read(Plane.K_MSB) == tiny.config.num_attention_heads * n * 4
    # later layers: a tile of 6 rows reads its windows (span <= 6 + 6 - 1) plus 6 global rows
    for rec in enc.layers[1:]:
        assert rec.rows_read(Plane.K_MSB) <= tiny.config.num_attention_heads * 4 * (11 + 6)
        assert rec.rows_read(Plane.K_MSB) == rec.rows_read(Plane.V_MSB)
    full = WindowGlobalPolicy(window=1.0, global_keep=0.0)
    ids = ids_for(tiny, n, SEED)
    np.testing.assert_allclose(tiny.encode(ids, full).embedding, tiny.encode(ids).embedding,
                               atol=1e-6)
    with pytest.raises(ValueError, match="dense_layers"):
        WindowGlobalPolicy(dense_layers=-1)
    with pytest.raises(ValueError, match="global_keep"):
        WindowGlobalPolicy(global_keep=1.5)


# --------------------------------------------------------------------------------------------
# specs, measures, traces
# --------------------------------------------------------------------------------------------


def test_parse_and_make_policies():
    specs = parse_policies("spatten=quant/default, topk=0.25,window")
    assert specs[0] == ("dense", None)
    assert specs[1:3] == [("spatten", "quant"), ("spatten", "default")]
    assert ("topk", "0.25") in specs
    assert [s for s in specs if s[0] == "window"] == [("window", str(v))
                                                      for v in POLICY_NAMES["window"][1]]
    assert parse_policies("dense") == [("dense", None)]
    for name, value in parse_policies("spatten,progressive,topk,window"):
        p = make_policy(name, value, 6)
        assert p.name == ("dense" if name == "dense" else f"{name}={value}" if name == "spatten"
                          else f"{name}={float(value):g}")
    with pytest.raises(ValueError, match="unknown policy 'bogus'"):
        parse_policies("dense,bogus")
    with pytest.raises(ValueError, match="dense' takes no value"):
        parse_policies("dense=1")
    with pytest.raises(ValueError, match="must be a number"):
        make_policy("topk", "lots", 6)
    with pytest.raises(ValueError, match="empty value"):
        parse_policies("topk=0.5/")


def test_retrieval_agreement_and_cosines():
    rng = np.random.default_rng(SEED)
    a = rng.standard_normal((12, 8))
    assert retrieval_agreement(a, a, 1) == 1.0
    assert retrieval_agreement(a, a, 5) == 1.0
    acc = accuracy(a, a)
    assert acc == {"cosine_mean": pytest.approx(1.0), "cosine_p5": pytest.approx(1.0),
                   "top1_agreement": 1.0, "top5_agreement": 1.0}
    # nearest neighbours of 0, 1, 2: (1, 2, 1) under x, (2, 2, 0) under y
    x = np.array([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8]])
    y = np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1]])
    assert retrieval_agreement(x, y, 1) == pytest.approx(1 / 3)
    assert retrieval_agreement(x, y, 5) == pytest.approx(1.0)  # k capped at N - 1 = 2
    np.testing.assert_allclose(cosines(x, -x), -1.0)
    with pytest.raises(ValueError, match="at least 2"):
        retrieval_agreement(x[:1], x[:1], 1)


def test_coalesce():
    t = AccessTrace([0, 32, 64, 200, 232, 96], [32, 32, 32, 32, 16, 32], layer=[0, 0, 0, 1, 1, 1],
                    plane=[0, 0, 0, 2, 2, 0])
    c = coalesce(t)
    assert c.addr.tolist() == [0, 200, 96]
    assert c.size.tolist() == [96, 48, 32]
    assert c.layer.tolist() == [0, 1, 1]
    assert c.payload_bytes == t.payload_bytes
    assert len(coalesce(AccessTrace.empty())) == 0
    w = AccessTrace([0, 32], [32, 32], is_write=[False, True])
    assert len(coalesce(w)) == 2


def test_run_policy_records(tiny):
    inputs = [ids_for(tiny, n, SEED + n) for n in (8, 20, 31)]
    dense = run_policy(tiny, inputs, DensePolicy())
    sp = run_policy(tiny, inputs, SpAttenPolicy(CascadeConfig(token_keep={0: 0.5},
                                                              head_keep={1: 2})))
    assert dense.alive.tolist() == [[n] * 4 for n in (8, 20, 31)]
    assert sp.alive[:, 1].tolist() == [4, 10, 16]
    assert sp.heads[:, 2].tolist() == [2, 2, 2]
    assert dense.layer_bytes.sum() == sum(t.payload_bytes for t in dense.traces)
    assert dense.payload_bytes == 4 * 4 * 2 * 4 * 4 * (8 + 20 + 31)  # layers heads K/V d*4
    assert 0.0 <= sp.refetch_rate <= 1.0
    batch = concat_traces(sp.traces)
    assert batch.payload_bytes == sp.payload_bytes
    assert len(batch) < sum(len(t) for t in sp.traces)


# --------------------------------------------------------------------------------------------
# hardware cross-check: the pruning unit replays MiniLM policy commands
# --------------------------------------------------------------------------------------------

REPLAY_POLICIES = ("spatten=default", "spatten=aggressive", "progressive=0.3")


def replay_case(n_tokens: int = 32, seed: int = 0) -> tuple[dict, dict]:
    """Record the pruning-unit commands of each SpAtten-style policy on one MiniLM input of
    ``n_tokens`` tokens; returns the bench's JSON case and the unit parameters."""
    from psa.models.corpus import chunks
    from psa.models.minilm import load_model

    model = load_model("minilm")
    chunk = next(c for c in chunks(model.tokenizer, 40, seed=seed, min_tokens=16,
                                   max_tokens=n_tokens) if len(c) == n_tokens)
    cfg = model.config
    sequences = []
    prob_bits = score_bits = head_score_bits = mag_bits = None
    for spec in REPLAY_POLICIES:
        name, _, value = spec.partition("=")
        pol = make_policy(name, value, cfg.num_hidden_layers)
        pol.record = True
        enc = model.encode(chunk.ids, pol)
        layout = policy_layout(pol, cfg)
        trace = fetch_trace(enc.layers, layout)
        c = pol.config
        prob_bits, score_bits, head_score_bits, mag_bits = (c.prob_bits, c.score_bits,
                                                            c.head_score_bits, c.mag_bits)
        layers = []
        for li, rec in enumerate(pol.script):
            sel = (trace.layer == li) & np.isin(trace.plane, [int(Plane.K_MSB),
                                                              int(Plane.V_MSB)])
            golden = AccessTrace(trace.addr[sel], trace.size[sel], layer=li,
                                 plane=trace.plane[sel])
            nxt = enc.layers[li + 1] if li + 1 < len(enc.layers) else None
            layers.append({
                "layer": li, "fetch_lines": list(golden.lines()),
                "fetch_planes": golden.plane.tolist(),
                "heads": rec.heads.tolist(), "probs": [p.tolist() for p in rec.probs],
                "mags": list(rec.mags), "prune_heads": rec.prune_heads, "prune": rec.prune,
                "heads_after": None if nxt is None else nxt.heads.tolist(),
                "alive_after": None if nxt is None else nxt.tokens.tolist(),
            })
        sequences.append({
            "policy": pol.name, "input": chunk.module, "n": len(chunk.ids),
            "layout": {"n_layers": layout.n_layers, "n_heads": layout.n_heads,
                       "max_tokens": layout.max_tokens, "d_head": layout.d_head,
                       "k_msb_bits": layout.k_msb_bits, "k_lsb_bits": layout.k_lsb_bits,
                       "v_msb_bits": layout.v_msb_bits, "v_lsb_bits": layout.v_lsb_bits},
            "layers": layers})
    params = dict(max_tokens=n_tokens, n_heads=cfg.num_attention_heads, lanes=8,
                  prob_bits=prob_bits, score_bits=score_bits, mag_bits=mag_bits,
                  head_score_bits=head_score_bits)
    return {"seed": seed + 1, "idle": 0.1, "stall": 0.2, "sequences": sequences}, params


def test_replay_case_is_consistent():
    """The recorded case exercises token and head pruning, and its golden fetch lines are the
    PruningState's fetch stream (what the RTL bench compares the unit with)."""
    case, params = replay_case()
    kinds = set()
    for seq in case["sequences"]:
        lay = seq["layout"]
        layout = KVLayout(**lay)
        state = PruningState(params["max_tokens"], params["n_heads"], params["prob_bits"],
                             params["score_bits"], params["head_score_bits"])
        state.start(seq["n"])
        for layer in seq["layers"]:
            assert list(state.fetch_requests(layout, layer["layer"]).lines()) == \
                layer["fetch_lines"], (seq["policy"], layer["layer"])
            for rows in layer["probs"]:
                state.add_probs(np.asarray(rows, dtype=np.uint64))
            for head, mag in zip(layer["heads"], layer["mags"], strict=False):
                state.add_head_magnitude(head, mag)
            if layer["prune_heads"] is not None:
                kinds.add("heads")
                assert state.prune_heads(layer["prune_heads"]).tolist() == layer["heads_after"]
            if layer["prune"] is not None:
                kinds.add("tokens")
                assert state.prune(layer["prune"]).tolist() == layer["alive_after"]
    assert kinds == {"heads", "tokens"}


@pytest.mark.rtl
@pytest.mark.slow
def test_rtl_replays_policies(sim_build_root, tmp_path):
    """The Verilated pruning unit, driven with the commands SpAtten/progressive policies
    issue on a MiniLM input, fetches exactly the policy's K_MSB/V_MSB rows, line for line."""
    from psa.verif.designs import get_bench

    case, kw = replay_case()
    path = tmp_path / "replay.json"
    path.write_text(json.dumps(case))
    get_bench("pruner").build_and_run(kw, sim_build_root, purpose="replay",
                                      env={"PSA_REPLAY": str(path)})
