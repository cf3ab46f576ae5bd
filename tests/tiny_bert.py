"""A tiny randomly initialised BERT folder (safetensors + tokenizer + config) for tests.

Shared by the model, policy and report tests (``tests/`` is on pytest's ``pythonpath``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from psa.models.minilm import BertEncoder

SEED = 1234
WORDS = ["the", "cat", "sat", "on", "mat", "dog", "ran", "fast", "a", "big", "red", "ball",
         "##s", "##ing", "hello", "world", ".", ",", "!", "?"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
TINY = dict(vocab_size=32, hidden_size=16, num_hidden_layers=3, num_attention_heads=4,
            intermediate_size=24, max_position_embeddings=40, type_vocab_size=2,
            layer_norm_eps=1e-12, hidden_act="gelu", model_type="bert",
            position_embedding_type="absolute")


def tiny_tensors(cfg: dict, seed: int = SEED, prefix: str = "") -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    hid, inter = cfg["hidden_size"], cfg["intermediate_size"]

    def r(*shape: int, scale: float = 0.5) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    t = {
        "embeddings.word_embeddings.weight": r(cfg["vocab_size"], hid),
        "embeddings.position_embeddings.weight": r(cfg["max_position_embeddings"], hid),
        "embeddings.token_type_embeddings.weight": r(cfg["type_vocab_size"], hid),
        "embeddings.LayerNorm.weight": 1 + r(hid, scale=0.1),
        "embeddings.LayerNorm.bias": r(hid, scale=0.1),
        "embeddings.position_ids": np.arange(cfg["max_position_embeddings"])[None],
    }
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        for name in ("query", "key", "value"):
            t[p + f"attention.self.{name}.weight"] = r(hid, hid)
            t[p + f"attention.self.{name}.bias"] = r(hid, scale=0.1)
        t[p + "attention.output.dense.weight"] = r(hid, hid)
        t[p + "attention.output.dense.bias"] = r(hid, scale=0.1)
        t[p + "attention.output.LayerNorm.weight"] = 1 + r(hid, scale=0.1)
        t[p + "attention.output.LayerNorm.bias"] = r(hid, scale=0.1)
        t[p + "intermediate.dense.weight"] = r(inter, hid)
        t[p + "intermediate.dense.bias"] = r(inter, scale=0.1)
        t[p + "output.dense.weight"] = r(hid, inter)
        t[p + "output.dense.bias"] = r(hid, scale=0.1)
        t[p + "output.LayerNorm.weight"] = 1 + r(hid, scale=0.1)
        t[p + "output.LayerNorm.bias"] = r(hid, scale=0.1)
    return {prefix + k: v for k, v in t.items()}


def write_tokenizer_json(folder: Path) -> None:
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece

    vocab = {w: i for i, w in enumerate(SPECIAL + WORDS)}
    tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tok.save(str(folder / "tokenizer.json"))


def write_tiny(folder: Path, tokenizer: str = "json", prefix: str = "", **over) -> dict:
    """A tiny random BERT folder; returns its tensors (without prefix) and config."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg = {**TINY, **over}
    tensors = tiny_tensors(cfg)
    save_file({prefix + k: v for k, v in tensors.items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(cfg))
    if tokenizer == "json":
        write_tokenizer_json(folder)
    else:
        (folder / "vocab.txt").write_text("\n".join(SPECIAL + WORDS) + "\n")
    return {"tensors": tensors, "config": cfg}


def ids_for(model: BertEncoder, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ids = rng.integers(len(SPECIAL), model.config.vocab_size, n)
    ids[0], ids[-1] = model.tokenizer.cls_id, model.tokenizer.sep_id
    return ids
