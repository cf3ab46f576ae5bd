"""Real English text for the model: docstrings of the Python standard library, chunked.

Nothing is copied into the repository: the text is read at run time from the source files of
the running interpreter's standard library (``sysconfig.get_paths()["stdlib"]``), parsed with
:mod:`ast` (nothing is imported). The corpus is therefore a pure function of the Python minor
version, the module list, the tokenizer and the seed; :func:`fingerprint` names it in reports.

Pipeline:

1. :func:`paragraphs`: for each module of :data:`DEFAULT_MODULES` that exists, the docstrings
   of the module, its classes and functions in source order, cleaned with
   :func:`inspect.cleandoc` and split at blank lines into paragraphs. Paragraphs that are not
   prose are dropped: doctest lines (``>>>``), reST tables and rules, fewer than
   ``MIN_WORDS`` words, or under 80 % letters and spaces (code, signatures). Lines of a
   paragraph are joined with single spaces.
2. :func:`chunks`: walks the paragraphs module by module, drawing each chunk's target length
   uniformly from ``min_tokens..max_tokens`` (``[CLS]`` and ``[SEP]`` included) and filling
   it with whole paragraphs of one module; the paragraph that crosses the target is cut at a
   word boundary, and the next chunk starts at the following paragraph. A chunk cut short by
   the end of its module is kept if it has at least ``min_tokens`` tokens. From all chunks so
   made, ``n`` are picked without replacement with the same seeded generator and returned in
   corpus order. Every chunk satisfies ``tokenizer.encode(chunk.text) == chunk.ids``.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import sys
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .minilm import Tokenizer

__all__ = ["DEFAULT_MODULES", "MIN_WORDS", "Chunk", "paragraphs", "chunks", "fingerprint"]

#: Well-documented pure-Python standard library modules, in corpus order. Modules missing
#: from the running Python (renamed or removed) are skipped.
DEFAULT_MODULES: tuple[str, ...] = (
    "argparse", "ast", "bisect", "calendar", "cmd", "collections", "configparser",
    "contextlib", "copy", "csv", "dataclasses", "_pydatetime", "datetime", "_pydecimal",
    "difflib", "doctest", "email.message", "enum", "fractions", "ftplib", "functools",
    "gettext", "gzip", "heapq", "http.client", "http.cookiejar", "imaplib", "inspect",
    "ipaddress", "json", "json.decoder", "locale", "logging", "mailbox", "numbers", "optparse",
    "os", "pathlib", "pickle", "platform", "pprint", "queue", "random", "sched", "shlex",
    "shutil", "smtplib", "socket", "statistics", "string", "subprocess", "tarfile",
    "tempfile", "textwrap", "threading", "timeit", "tokenize", "traceback", "turtle",
    "typing", "unittest.case", "urllib.parse", "urllib.request", "uuid", "warnings",
    "weakref", "zipfile",
)

#: Shortest paragraph kept, in words.
MIN_WORDS = 8


@dataclass(frozen=True)
class Chunk:
    """One model input: ``ids`` (int64, ``[CLS] ... [SEP]``) tokenize ``text`` exactly."""

    text: str
    ids: np.ndarray
    module: str

    def __len__(self) -> int:
        return len(self.ids)


def _module_file(stdlib: Path, module: str) -> Path | None:
    base = stdlib.joinpath(*module.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _docstrings(tree: ast.Module) -> list[str]:
    out: list[str] = []

    def visit(node: ast.AST) -> None:
        doc = ast.get_docstring(node, clean=True)
        if doc:
            out.append(doc)
        for child in getattr(node, "body", []):
            if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child)

    visit(tree)
    return out


def _is_prose(lines: list[str]) -> bool:
    if any(ln.lstrip().startswith((">>>", "...", "+--", "|")) for ln in lines):
        return False
    if any(set(ln.strip()) <= set("-=~*^+") for ln in lines):
        return False
    text = " ".join(ln.strip() for ln in lines)
    if len(text.split()) < MIN_WORDS:
        return False
    prose = sum(c.isalpha() or c == " " for c in text)
    return prose >= 0.8 * len(text)


def paragraphs(modules: Sequence[str] = DEFAULT_MODULES) -> list[tuple[str, str]]:
    """``(module, paragraph)`` pairs of prose from the standard library's docstrings."""
    return list(_paragraphs(tuple(modules)))


@functools.lru_cache(maxsize=4)
def _paragraphs(modules: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    out: list[tuple[str, str]] = []
    for module in modules:
        path = _module_file(stdlib, module)
        if path is None:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for doc in _docstrings(tree):
            block: list[str] = []
            for line in inspect.cleandoc(doc).splitlines() + [""]:
                if line.strip():
                    block.append(line)
                    continue
                if block and _is_prose(block):
                    out.append((module, " ".join(ln.strip() for ln in block)))
                block = []
    return tuple(out)


def _build(pars: list[tuple[str, str]], tokenizer: Tokenizer, rng: np.random.Generator,
           min_tokens: int, max_tokens: int) -> list[Chunk]:
    pieces = tokenizer.pieces([p for _, p in pars])
    made: list[Chunk] = []
    i = 0
    while i < len(pars):
        module = pars[i][0]
        body = int(rng.integers(min_tokens, max_tokens + 1)) - 2
        texts: list[str] = []
        ids: list[np.ndarray] = []
        have = 0
        while i < len(pars) and pars[i][0] == module and have < body:
            text = pars[i][1]
            pid, offsets = pieces[i]
            i += 1
            if have + len(pid) > body:
                cut = body - have
                # Back off to a word boundary: WordPiece continuations touch the piece before.
                while cut > 0 and offsets[cut, 0] == offsets[cut - 1, 1] \
                        and text[offsets[cut, 0]].isalnum() \
                        and text[offsets[cut - 1, 1] - 1].isalnum():
                    cut -= 1
                if cut == 0:
                    break
                text, pid = text[:offsets[cut - 1, 1]], pid[:cut]
            texts.append(text)
            ids.append(pid)
            have += len(pid)
        if have + 2 >= min_tokens:
            full = np.concatenate([[tokenizer.cls_id], *ids, [tokenizer.sep_id]]).astype(np.int64)
            made.append(Chunk("\n\n".join(texts), full, module))
    return made


def chunks(tokenizer: Tokenizer, n: int, seed: int = 0, min_tokens: int = 32,
           max_tokens: int = 512, modules: Sequence[str] = DEFAULT_MODULES) -> list[Chunk]:
    """``n`` chunks of ``min_tokens..max_tokens`` tokens of stdlib prose (see module doc).

    Deterministic for a given Python minor version, tokenizer, ``modules`` and ``seed``.
    Raises ``ValueError`` if the corpus has fewer than ``n`` chunks.
    """
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    if not 3 <= min_tokens <= max_tokens:
        raise ValueError(f"min_tokens must be in 3..max_tokens ({max_tokens}), got {min_tokens}")
    rng = np.random.default_rng(seed)
    made = _build(list(_paragraphs(tuple(modules))), tokenizer, rng, min_tokens, max_tokens)
    if n > len(made):
        raise ValueError(f"n={n} exceeds the {len(made)} chunks of {min_tokens}..{max_tokens} "
                         f"tokens in the corpus (Python {sys.version_info[0]}."
                         f"{sys.version_info[1]}, seed {seed})")
    picked = np.sort(rng.choice(len(made), size=n, replace=False))
    return [made[int(j)] for j in picked]


def fingerprint(chunks: Sequence[Chunk]) -> str:
    """Short SHA-256 over the chunks' token ids: names a corpus in reports."""
    h = hashlib.sha256()
    for c in chunks:
        h.update(np.asarray(c.ids, dtype="<i8").tobytes())
        h.update(b"|")
    return h.hexdigest()[:16]
