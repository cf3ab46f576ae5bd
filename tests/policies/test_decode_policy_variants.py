"""SpAtten decode variants (mass-based value pruning, LSB refetch of the selected rows, flat
schedule) and the shared prefill of bench/decode_pareto.py, on a tiny random Llama."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from psa.golden.decode_trace import DecodePlane, quantize_rows
from psa.golden.fixed_point import quantize_unsigned_fraction
from psa.golden.pruning import resolve_keep
from psa.golden.trace import AccessTrace
from psa.models.llama import LlamaConfig, LlamaDecoder
from psa.policies.decode import (
    COUNTERS,
    H2ODecode,
    QuestDecode,
    SpAttenDecode,
    TopPDecode,
)

P = DecodePlane
TINY = LlamaConfig(n_layers=3, hidden=48, n_heads=6, n_kv_heads=2, head_dim=8, ffn=96,
                   vocab=101, rope_base=10000.0, rms_eps=1e-5, max_context=128)
L0, STEPS, CAP = 40, 10, 64
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model() -> LlamaDecoder:
    return LlamaDecoder.random(TINY, seed=1)


def text(seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, TINY.vocab, L0), rng.integers(0, TINY.vocab, STEPS)


def run(model, pol, seed: int = 0) -> np.ndarray:
    ids, cont = text(seed)
    cache = model.new_cache(1, CAP)
    hooks = None if pol is None else [pol]
    out = [model.prefill(ids[None], cache, attention=hooks)]
    for t in cont:
        out.append(model.step(np.array([t]), cache, attention=hooks))
    return np.concatenate(out)


SELECTED = dict(refetch="selected", refetch_threshold=2.0, k_msb_bits=4, k_lsb_bits=4,
                v_msb_bits=4, v_lsb_bits=4)


def variants() -> list[SpAttenDecode]:
    return [
        SpAttenDecode(TINY, CAP, keep=0.4, recent=0.25, v_mass=0.8, **SELECTED),
        SpAttenDecode(TINY, CAP, keep=0.5, recent=0.25, v_mass=0.9, refetch="selected",
                      refetch_threshold=0.3),
        SpAttenDecode(TINY, CAP, keep=0.5, v_mass=0.7, refetch_threshold=0.3),
        SpAttenDecode(TINY, CAP, keep=0.5, schedule="flat", start_layer=1, v_mass=0.9,
                      **SELECTED),
    ]


LABELS = ["mass+selected", "mass+selected-flat-rows", "mass+all", "flat-schedule"]


def reads(pol, trace: AccessTrace, plane, layer: int, kvh: int) -> np.ndarray:
    """Row ids of ``plane`` read for (layer, kv head) in ``trace``."""
    lay = pol.layout
    if lay.row_bytes(plane) == 0:
        return np.zeros(0, np.int64)
    base = int(lay.address(plane, layer, kvh, 0))
    sel = (~trace.is_write) & (trace.plane == int(plane)) & (trace.layer == layer)
    rows = (trace.addr[sel].astype(np.int64) - base) // lay.row_bytes(plane)
    return np.sort(rows[(rows >= 0) & (rows < lay.rows_per_head(plane))])


def on_grid(x: np.ndarray, msb: int, lsb: int) -> np.ndarray:
    """Rows already equal to their ``msb + lsb``-bit reconstruction (a fixed point)."""
    return quantize_rows(x, msb, lsb)[1]


def new_lsbs(row: np.ndarray, msb: int, lsb: int, rng) -> np.ndarray:
    """``row`` (on the grid) with random LSBs and the same MSB codes and scale (the element of
    largest magnitude, which sets the scale, is kept)."""
    lim = (1 << (msb + lsb - 1)) - 1
    amax = np.abs(row).max()
    scale = amax / lim if amax > 0 else 1.0
    code = np.rint(row / scale).astype(np.int64)
    top = (code >> lsb) << lsb
    new = np.clip(top + rng.integers(0, 1 << lsb, len(code)), -lim, lim)
    j = int(np.argmax(np.abs(row)))
    new[j] = code[j]
    out = row.copy()
    keep = new != code
    out[keep] = new[keep] * scale
    return out


def step_inputs(pol, model, seed: int):
    """Prefill + 4 steps through the model, then random q and new K/V for one more step."""
    ids, cont = text(seed)
    cache = model.new_cache(1, CAP)
    model.prefill(ids[None], cache, attention=[pol])
    for t in cont[:4]:
        model.step(np.array([t]), cache, attention=[pol])
    n = int(cache.lengths[0]) + 1
    rng = np.random.default_rng(seed + 100)
    k = cache.k[:, 0, :, :n].astype(np.float64)
    v = cache.v[:, 0, :, :n].astype(np.float64)
    k[:, :, n - 1] = rng.standard_normal(k[:, :, n - 1].shape)
    v[:, :, n - 1] = rng.standard_normal(v[:, :, n - 1].shape)
    km, kl, vm, vl = pol.plane_bits
    k, v = on_grid(k, km, kl), on_grid(v, vm, vl)
    q = rng.standard_normal((TINY.n_layers, TINY.n_heads, TINY.head_dim))
    return q, k, v, n


@pytest.mark.parametrize("idx", range(4), ids=LABELS)
@pytest.mark.parametrize("seed", [0, 1])
def test_bits_not_read_do_not_matter(model, idx, seed):
    """Every bit the variant uses is a bit it says it read: rows it did not read are replaced,
    and the LSBs of rows whose MSB plane it read but whose LSB plane it did not are changed
    (MSB codes and row scale kept); the output is bit-identical."""
    pol = variants()[idx]
    km, kl, vm, vl = pol.plane_bits
    q, k, v, n = step_inputs(pol, model, seed)
    twin = copy.deepcopy(pol)
    rng = np.random.default_rng(seed)
    lsb_changed = 0
    for layer in range(TINY.n_layers):
        out = pol.decode(layer, q[layer], k[layer], v[layer])
        trace = AccessTrace.concat(pol._parts)
        k2, v2 = k[layer].copy(), v[layer].copy()
        for h in range(TINY.n_kv_heads):
            for x2, msb_plane, lsb_plane, mb, lb in ((k2, P.K_MSB, P.K_LSB, km, kl),
                                                     (v2, P.V_MSB, P.V_LSB, vm, vl)):
                msb = set(reads(pol, trace, msb_plane, layer, h).tolist()) | {n - 1}
                lsb = set(reads(pol, trace, lsb_plane, layer, h).tolist()) | {n - 1}
                assert lsb <= msb, (pol.label, layer, h)
                for i in range(n - 1):
                    if i not in msb:
                        x2[h, i] = rng.standard_normal(TINY.head_dim)
                    elif i not in lsb:
                        before = x2[h, i].copy()
                        x2[h, i] = new_lsbs(x2[h, i], mb, lb, rng)
                        lsb_changed += int(not np.array_equal(before, x2[h, i]))
        out2 = twin.decode(layer, q[layer], k2, v2)
        assert np.array_equal(out, out2), f"{LABELS[idx]}: layer {layer} used unread bits"
    if pol.refetch == "selected":  # rows read at MSB precision only exist
        assert lsb_changed > 0
    pol.end_step()
    twin.end_step()


def _topp_reference(p: np.ndarray, mass: float, bits: int) -> set[int]:
    """Shortest prefix (value descending, ties to the lower position) reaching the mass."""
    qp = quantize_unsigned_fraction(p, bits).astype(np.int64)
    target = int(np.floor(mass * (1 << bits) + 0.5))
    order = sorted(range(len(qp)), key=lambda i: (-qp[i], i))
    acc, keep = 0, []
    for i in order:
        if acc >= target:
            break
        acc += int(qp[i])
        keep.append(i)
    return set(keep)


def test_mass_selection_and_selected_refetch_match_reference(model):
    """refetch='selected', every row refetched: per (layer, K/V head) the V rows read are the
    union over the group's query heads of the top-p sets of the MSB-key probabilities, and
    the K LSB, V MSB and V LSB rows read are that same union; the output is the softmax with
    full keys on the union (and the on-chip current token) and MSB keys elsewhere, applied to
    full-precision V of each head's own set."""
    pol = SpAttenDecode(TINY, CAP, keep=0.5, recent=0.25, v_mass=0.8, mass_bits=12, **SELECTED)
    q, k, v, n = step_inputs(pol, model, 3)
    g, d = TINY.group, TINY.head_dim
    for layer in range(TINY.n_layers):
        out = pol.decode(layer, q[layer], k[layer], v[layer])
        trace = AccessTrace.concat(pol._parts)
        for h in range(TINY.n_kv_heads):
            alive = np.array(sorted(set(reads(pol, trace, P.K_MSB, layer, h).tolist())
                                    | {n - 1}))
            kmsb, kfull = quantize_rows(k[layer, h, alive], 4, 4)
            vfull = quantize_rows(v[layer, h, alive], 4, 4)[1]
            sets, union = [], set()
            for i in range(g):
                s = kmsb @ q[layer, h * g + i] / np.sqrt(d)
                p = np.exp(s - s.max())
                sets.append(sorted(_topp_reference(p / p.sum(), 0.8, 12)))
                union |= set(sets[-1])
            want = sorted(int(alive[j]) for j in union if alive[j] != n - 1)
            for plane in (P.K_LSB, P.V_MSB, P.V_LSB):
                assert reads(pol, trace, plane, layer, h).tolist() == want, (layer, h, plane)
            exact = np.zeros(len(alive), bool)
            exact[sorted(union)] = True
            exact[-1] = True
            kmix = np.where(exact[:, None], kfull, kmsb)
            for i in range(g):
                s = kmix @ q[layer, h * g + i] / np.sqrt(d)
                p = np.exp(s - s.max())
                p /= p.sum()
                ref = p[sets[i]] @ vfull[sets[i]]
                assert np.allclose(out[h * g + i], ref, rtol=1e-6, atol=1e-7), (layer, h, i)
    pol.end_step()


def test_selected_refetch_full_budget_equals_dense(model):
    """keep 1, all mass, 32-bit codes, every row refetched: equal to dense attention."""
    ref = run(model, None)
    pol = SpAttenDecode(TINY, CAP, keep=1.0, recent=0.0, v_mass=1.0, mass_bits=30,
                        refetch="selected", refetch_threshold=2.0, k_msb_bits=16,
                        k_lsb_bits=16, v_msb_bits=16, v_lsb_bits=16)
    got = run(model, pol)
    assert np.abs(got - ref).max() / np.abs(ref).max() < 1e-5


def test_selected_refetch_reads_fewer_lsb_rows_than_all(model):
    """Same selection, same flat test: 'selected' re-reads K LSB rows of the selected union
    only; 'all' re-reads every alive row's; the K MSB reads are the same on the first step."""
    kw = dict(keep=0.5, recent=0.25, v_mass=0.7, refetch_threshold=2.0)
    a = SpAttenDecode(TINY, CAP, refetch="all", **kw)
    s = SpAttenDecode(TINY, CAP, refetch="selected", **kw)
    run(model, a)
    run(model, s)
    ca, cs = a.counters(), s.counters()
    assert np.array_equal(ca["k_rows"][0], cs["k_rows"][0])
    assert np.array_equal(ca["k_lsb_rows"], ca["k_rows"])  # every row flat: all re-read
    assert np.array_equal(cs["k_lsb_rows"], cs["v_rows"])
    assert cs["k_lsb_rows"].sum() < ca["k_lsb_rows"].sum()


def test_flat_schedule_alive_counts(model):
    pol = SpAttenDecode(TINY, CAP, keep=0.5, schedule="flat", start_layer=1)
    run(model, pol)
    alive = pol.counters()["alive"]
    for s in range(STEPS):
        n = L0 + s + 1
        assert (alive[s, 0] == n).all()
        assert (alive[s, 1:] == resolve_keep(0.5, n)).all(), s
    assert pol.schedule == (1.0, 0.5, 0.5)


def test_variant_checks():
    with pytest.raises(ValueError, match="spatten refetch must be 'all' or 'selected'"):
        SpAttenDecode(TINY, CAP, refetch="some")
    with pytest.raises(ValueError, match="spatten schedule"):
        SpAttenDecode(TINY, CAP, schedule="linear")
    with pytest.raises(ValueError, match=r"spatten v_mass must be in \(0, 1\]"):
        SpAttenDecode(TINY, CAP, v_mass=0.0)


def _bench():
    spec = importlib.util.spec_from_file_location("decode_pareto",
                                                  ROOT / "bench" / "decode_pareto.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_shared_prefill_equals_separate_runs(model):
    """bench/decode_pareto.py: one prefill (policies of equal prefill state share one
    on_prefill and get copies) then a batched decode gives each policy the logits and
    counters of its own run."""
    bench = _bench()

    def pols():
        return [SpAttenDecode(TINY, CAP, keep=0.4), SpAttenDecode(TINY, CAP, keep=0.6,
                                                                  v_mass=0.8, **SELECTED),
                H2ODecode(TINY, CAP, budget=0.3), H2ODecode(TINY, CAP, budget=0.5),
                TopPDecode(TINY, CAP, p=0.8), QuestDecode(TINY, CAP, budget=0.3)]

    refs = []
    for pol in pols():
        refs.append((run(model, pol)[1:], pol.counters()))
    ps = pols()
    assert len({bench._prefill_key(p) for p in ps}) == 3
    ids, cont = text()
    cache = bench.prefill_shared(model, ids, ps, CAP)
    assert cache.batch == len(ps)
    out = np.stack([model.step(np.full(len(ps), t), cache, attention=ps) for t in cont], 1)
    for i, (logits, cnt) in enumerate(refs):
        assert np.allclose(out[i], logits, rtol=1e-5, atol=1e-5), ps[i].label
        for c in COUNTERS:
            assert np.array_equal(ps[i].counters()[c], cnt[c]), (ps[i].label, c)
