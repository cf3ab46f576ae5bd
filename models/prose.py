"""English prose for the decoder: the Python language reference's topic texts, and perplexity.

Source: ``pydoc_data.topics.topics`` of the running interpreter's standard library (the plain
text that ``help("assignment")`` shows: chapters of the Python Language Reference). Nothing
is copied into the repository, so the corpus is a pure function of the Python version
(:func:`fingerprint` names it). It is held out from the project's other corpus
(:mod:`.corpus`, standard library docstrings, which the encoder reports use); it is not held
out from SmolLM2's training data, which likely includes the Python documentation.

Selection (deterministic, no randomness):

1. Topics in sorted key order. Each text is split at blank lines into paragraphs.
2. A paragraph is kept if it is prose: not indented by three or more spaces (pydoc's code
   blocks and grammar rules are), no ``>>>`` or ``::=`` in it, not a heading underline, at
   least :data:`MIN_WORDS` words, at least 80 % letters and spaces. Its lines are joined with
   single spaces; a leading list bullet ``* `` is kept.
3. A document is one topic's kept paragraphs joined with blank lines; topics with none are
   dropped. :func:`documents` returns them in topic order.

:func:`token_stream` shuffles the documents with a seeded generator and concatenates their
token ids with the ids of ``"\\n\\n"`` in between; :func:`text_windows` cuts it into disjoint
windows (the decoder report's ``--texts``). :func:`perplexity` scores a stream in
non-overlapping windows, each evaluated from an empty context.
"""

from __future__ import annotations

import hashlib
import math
import sys
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .bpe import Tokenizer
    from .llama import LlamaDecoder

__all__ = ["MIN_WORDS", "paragraphs", "documents", "token_stream", "text_windows", "token_nll",
           "perplexity", "fingerprint"]

#: Shortest paragraph kept, in words.
MIN_WORDS = 8


def _topics() -> dict[str, str]:
    from pydoc_data.topics import topics

    return topics


def _is_prose(lines: list[str]) -> bool:
    first = lines[0]
    if len(first) - len(first.lstrip(" ")) >= 3:
        return False
    text = " ".join(s.strip() for s in lines)
    if ">>>" in text or "::=" in text:
        return False
    if set(text.replace(" ", "")) <= set("*=-~^+#"):
        return False
    if len(text.split()) < MIN_WORDS:
        return False
    good = sum(ch.isalpha() or ch == " " for ch in text)
    return good >= 0.8 * len(text)


def paragraphs(topic: str) -> list[str]:
    """Kept prose paragraphs of one ``pydoc_data`` topic, lines joined with single spaces."""
    topics = _topics()
    if topic not in topics:
        raise ValueError(f"pydoc_data.topics has no topic {topic!r}")
    out, block = [], []
    for line in topics[topic].splitlines() + [""]:
        if line.strip():
            block.append(line.rstrip())
            continue
        if block and _is_prose(block):
            out.append(" ".join(s.strip() for s in block))
        block = []
    return out


def documents(min_tokens: int = 0, tokenizer: Tokenizer | None = None) -> list[str]:
    """One document per topic (sorted), kept paragraphs joined with ``"\\n\\n"``.

    With ``min_tokens > 0`` only documents of at least that many tokens of ``tokenizer``
    (required then) are returned.
    """
    if min_tokens < 0:
        raise ValueError(f"documents: min_tokens must be >= 0, got {min_tokens}")
    if min_tokens and tokenizer is None:
        raise ValueError("documents: min_tokens > 0 needs a tokenizer")
    docs = []
    for topic in sorted(_topics()):
        paras = paragraphs(topic)
        if not paras:
            continue
        doc = "\n\n".join(paras)
        if min_tokens and len(tokenizer.encode(doc)) < min_tokens:
            continue
        docs.append(doc)
    return docs


def token_stream(tokenizer: Tokenizer, n_tokens: int, seed: int = 0) -> np.ndarray:
    """``n_tokens`` ids (int64): the documents in a seeded random order, ``"\\n\\n"`` between.

    Raises :class:`ValueError` with the corpus size if it holds fewer tokens.
    """
    if n_tokens < 1:
        raise ValueError(f"token_stream: n_tokens must be >= 1, got {n_tokens}")
    docs = documents()
    order = np.random.default_rng(seed).permutation(len(docs))
    sep = tokenizer.encode("\n\n")
    parts, total = [], 0
    for i in order:
        ids = tokenizer.encode(docs[i])
        parts += [ids, sep]
        total += len(ids) + len(sep)
        if total >= n_tokens:
            return np.concatenate(parts)[:n_tokens]
    raise ValueError(f"token_stream: n_tokens must be <= {total} (the whole corpus), "
                     f"got {n_tokens}")


def text_windows(tokenizer: Tokenizer, n_windows: int, length: int, seed: int = 0
                 ) -> np.ndarray:
    """``n_windows`` disjoint windows of ``length`` ids, int64 ``[n_windows, length]``: window
    ``w`` is tokens ``w * length .. (w + 1) * length - 1`` of :func:`token_stream` with ``seed``
    (so window 0 is the start of the stream, whatever ``n_windows``).

    Raises :class:`ValueError` naming the largest ``n_windows`` the corpus holds.
    """
    if n_windows < 1 or length < 1:
        raise ValueError(f"text_windows: n_windows and length must be >= 1, got {n_windows}, "
                         f"{length}")
    try:
        ids = token_stream(tokenizer, n_windows * length, seed=seed)
    except ValueError:
        total = sum(len(tokenizer.encode(d)) + len(tokenizer.encode("\n\n"))
                    for d in documents())
        raise ValueError(f"text_windows: {n_windows} windows of {length} tokens need "
                         f"{n_windows * length}, the corpus holds {total}: at most "
                         f"{total // length} windows of that length") from None
    return ids.reshape(n_windows, length)


def token_nll(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``-log softmax(logits)[target]`` per row (float64, nats): ``logits`` ``[n, vocab]``,
    ``targets`` ``[n]`` token ids."""
    x = np.asarray(logits, dtype=np.float64)
    m = x.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(x - m).sum(axis=1))
    return lse - x[np.arange(len(x)), np.asarray(targets)]


def perplexity(model: LlamaDecoder, ids: np.ndarray, window: int = 512) -> tuple[float, int]:
    """Perplexity of ``ids`` under ``model`` and the number of tokens predicted.

    The stream is cut into non-overlapping windows of ``window`` tokens (the last may be
    shorter, at least 2); each is run from an empty context with :meth:`LlamaDecoder.forward`
    and its tokens ``1..`` are scored against the predictions before them:
    ``exp(mean(-log p(token | window prefix)))``.
    """
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    if window < 2:
        raise ValueError(f"perplexity: window must be >= 2, got {window}")
    nll, count = 0.0, 0
    for s in range(0, len(ids), window):
        w = ids[s:s + window]
        if len(w) < 2:
            break
        nll += float(token_nll(model.forward(w[None])[0, :-1], w[1:]).sum())
        count += len(w) - 1
    if count == 0:
        raise ValueError("perplexity: need at least 2 tokens")
    return math.exp(nll / count), count


def fingerprint() -> str:
    """Short name of the corpus: Python version and a hash of the selected documents."""
    h = hashlib.sha256("\x00".join(documents()).encode()).hexdigest()[:12]
    return f"pydoc_data.topics py{sys.version_info.major}.{sys.version_info.minor} {h}"
