"""The decoder report: decode-mode attention policies on SmolLM2, perplexity against K/V DRAM cost.

Per context length ``C`` and text ``w`` (``texts`` disjoint windows of the prose corpus,
:func:`psa.models.prose.text_windows`, each ``max(contexts) + 1`` tokens; context ``C`` uses the
last ``C + 1`` tokens of the window, so every context predicts the same continuation): a
prefill of ``C - D`` tokens (``D`` = decode steps), then ``D`` teacher-forced decode steps
feeding the next ``D`` true tokens, step ``t``'s logits predicting the token after the one
fed. At the last step the cache holds ``C`` tokens, so ``C <= max_context`` (8192 for
SmolLM2) and ``C > D``. Every policy (:mod:`psa.policies.decode`, plus the ``dense=32``
baseline) decodes in one batch (batch = policies, so the decode weight products are matrix
products) after one shared batch-1 dense prefill (:func:`~psa.policies.decode.shared_prefill`:
prefill is dense for every policy; each policy's prefill hook sees its attention), run in
chunks of ``prefill_chunk`` tokens.

Figures per policy and context (``N`` = texts):

* ``ppl``: ``exp`` of the token-weighted mean negative log-likelihood of the ``N * D`` true
  next tokens (all texts pooled); ``ppl_change``: ``ppl / ppl(dense) - 1``; ``per_text``:
  the same per text, and ``spread``: min / max over texts of the per-text ``ppl_change``,
  ``top1_agreement`` and byte reduction.
* ``top1_agreement``: fraction of the ``N * D`` steps whose argmax equals dense's argmax.
* bytes read / written, per text (mean over texts): every step's trace, coalesced, rounded to
  the preset's bursts (exact, every step).
* cycles and energy, per text: :class:`psa.sim.stream.StreamSimulator` over the traces of
  every ``dram_every``-th step (steps ``dram_every // 2``, ``+ dram_every``, ... of each text;
  1 = all steps) fed back to back with controller state carried, scaled by ``D / sampled
  steps`` and divided by ``N``. With ``dram_check`` every step is also streamed and
  ``sampling_error`` gives the relative error of that estimate against all steps.
* reductions against ``dense=16`` (fp16 K/V) and ``dense=32`` (fp32 K/V).
* alive tokens per layer and per step (mean over texts, steps and K/V heads, as a fraction of
  the tokens in the cache).

Memory stays bounded in the steps: each step's trace goes to a per-policy sink at the end of
the step (bytes counted, a sampled step fed to the simulators, then dropped); what is kept per
step is ``O(layers * heads)`` counters and the logits' NLL. ``timing`` holds the wall time of
each phase and the process's peak resident memory.

:func:`run_decoder_report` returns the ``report.json`` document; :func:`write_decoder_report`
writes it with ``report.md`` and the PNG plots. ``psa report --model smollm2`` is the CLI.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from psa.reports.experiment import Stage, check_presets, coalesce, ratio

__all__ = ["DecoderReportConfig", "run_decoder_report", "write_decoder_report",
           "DEFAULT_CONTEXTS", "DEFAULT_DECODE", "DEFAULT_TEXTS", "DEFAULT_DECODER_POLICIES",
           "DEFAULT_PRESETS", "SCHEMA_VERSION", "sampled_steps", "pooled_ppl", "spread"]

SCHEMA_VERSION = 2
DEFAULT_CONTEXTS = (512,)
DEFAULT_DECODE = 32
DEFAULT_TEXTS = 2
DEFAULT_DECODER_POLICIES = "dense,spatten,h2o=0.2,quest=0.2,topp=0.9,oracle=0.1"
DEFAULT_PRESETS = "hbm2,ddr4-2400"
DEFAULT_DRAM_EVERY = 8
DEFAULT_PREFILL_CHUNK = 256
#: Bursts per simulated window of each StreamSimulator (about 112 bytes a burst; results do
#: not depend on it): 14 simulators of a default run hold at most ~30 MB each.
SIM_CHUNK_BURSTS = 1 << 18


@dataclass(frozen=True)
class DecoderReportConfig:
    """What the decoder report runs (see the module docstring).

    ``contexts``: context lengths ``C`` (tokens in the cache at the last decode step,
    ``decode < C <= max_context``); ``decode``: decode steps ``D`` (>= 1); ``texts``: corpus
    windows ``N`` (>= 1); ``dram_every``: simulate every ``dram_every``-th step for
    cycles/energy (1 = all); ``dram_check``: also simulate every step and report the sampling
    error; ``prefill_chunk``: prefill tokens per pass.
    """

    model: str = "smollm2"
    contexts: tuple[int, ...] = DEFAULT_CONTEXTS
    decode: int = DEFAULT_DECODE
    texts: int = DEFAULT_TEXTS
    policies: str = DEFAULT_DECODER_POLICIES
    presets: tuple[str, ...] = tuple(DEFAULT_PRESETS.split(","))
    dram_every: int = DEFAULT_DRAM_EVERY
    dram_check: bool = False
    prefill_chunk: int = DEFAULT_PREFILL_CHUNK
    seed: int = 0
    command: str = "psa report --model smollm2"

    def check(self, max_context: int | None = None) -> None:
        """Raise ValueError naming the option for a bad setting (before any work)."""
        from psa.policies.decode import parse_decode_policies
        if self.decode < 1:
            raise ValueError(f"--decode must be >= 1, got {self.decode}")
        if not self.contexts:
            raise ValueError("--context: give at least one context length")
        for c in self.contexts:
            if c <= self.decode:
                raise ValueError(f"--context: each length must be > --decode ({self.decode}): "
                                 f"C - D prompt tokens are prefilled, then D decode steps; "
                                 f"got {c}")
            if max_context is not None and c > max_context:
                raise ValueError(f"--context: each length must be <= {max_context} (the "
                                 f"model's max_context; the prompt, C - {self.decode}, plus "
                                 f"--decode {self.decode} steps fill C cache rows), got {c}")
        if self.texts < 1:
            raise ValueError(f"--texts must be >= 1, got {self.texts}")
        if self.dram_every < 1:
            raise ValueError(f"--dram-every must be >= 1, got {self.dram_every}")
        if self.prefill_chunk < 1:
            raise ValueError(f"prefill_chunk must be >= 1, got {self.prefill_chunk}")
        check_presets(self.presets)
        parse_decode_policies(self.policies)


def sampled_steps(n_steps: int, every: int) -> list[int]:
    """Steps whose traces the DRAM simulator runs: ``every // 2, every // 2 + every, ...``
    (all steps when ``every`` is 1; at least one step)."""
    if every <= 1:
        return list(range(n_steps))
    s = list(range(min(every // 2, n_steps - 1), n_steps, every))
    return s or [0]


def pooled_ppl(nll: np.ndarray) -> float:
    """Perplexity of NLLs (nats) pooled over texts: ``exp(sum / count)`` over every token
    (token-weighted, so a text's weight is its number of predicted tokens)."""
    x = np.concatenate([np.ravel(a) for a in nll]) if isinstance(nll, list) else np.ravel(nll)
    if x.size == 0:
        raise ValueError("pooled_ppl: no tokens")
    return float(np.exp(x.sum() / x.size))


def spread(values) -> dict[str, float]:
    """``{"min", "max"}`` of per-text values."""
    v = np.asarray(list(values), np.float64)
    return {"min": float(v.min()), "max": float(v.max())}


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (10^6 bytes)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1e6 if sys.platform == "darwin" else r / 1e3


class _DramSink:
    """One policy's trace consumer (``pol.sink``): per step, the coalesced trace's bytes per
    preset, and for sampled steps (and every step with ``check``) the simulators' feed. The
    trace is not kept."""

    def __init__(self, specs: dict, sampled: set[int], check: bool) -> None:
        from psa.sim.stream import StreamSimulator

        self.specs = specs
        self.sampled = sampled
        self.read = dict.fromkeys(specs, 0)
        self.write = dict.fromkeys(specs, 0)
        self.per_text: list[dict[str, int]] = []  # bytes (read + written) of each text
        self._text_start = dict.fromkeys(specs, 0)
        self.sims = {p: StreamSimulator(s, chunk_bursts=SIM_CHUNK_BURSTS)
                     for p, s in specs.items()}
        self.all = ({p: StreamSimulator(s, chunk_bursts=SIM_CHUNK_BURSTS)
                     for p, s in specs.items()} if check else None)
        self.sim_s = 0.0
        self.sampled_count = 0
        self.steps = 0

    def __call__(self, step: int, trace) -> None:
        ct = coalesce(trace)
        w = ct.is_write
        for p, spec in self.specs.items():
            bb = spec.org.burst_bytes
            nb = ct.bursts(bb)
            self.read[p] += int(nb[~w].sum()) * bb
            self.write[p] += int(nb[w].sum()) * bb
        t0 = time.perf_counter()
        if step in self.sampled:
            self.sampled_count += 1
            for sim in self.sims.values():
                sim.feed(ct)
        if self.all is not None:
            for sim in self.all.values():
                sim.feed(ct)
        self.sim_s += time.perf_counter() - t0
        self.steps += 1

    def end_text(self) -> None:
        now = {p: self.read[p] + self.write[p] for p in self.specs}
        self.per_text.append({p: now[p] - self._text_start[p] for p in self.specs})
        self._text_start = now

    def results(self, n_steps: int) -> dict[str, dict]:
        """Per preset: bytes and cycles/energy per text (means over texts)."""
        n_texts = max(len(self.per_text), 1)
        t0 = time.perf_counter()
        out = {}
        for p in self.specs:
            st = self.sims[p].finish()
            scale = n_steps / max(self.sampled_count, 1)  # all texts' steps / sampled ones
            d = {"read_bytes": self.read[p] / n_texts, "write_bytes": self.write[p] / n_texts,
                 "dram_bytes": (self.read[p] + self.write[p]) / n_texts,
                 "cycles": st.cycles * scale / n_texts,
                 "energy_nJ": st.energy_nJ * scale / n_texts,
                 "ns": st.ns * scale / n_texts, "row_hit_rate": st.row_hit_rate,
                 "sampled_bursts": st.bursts,
                 "per_text_dram_bytes": [t[p] for t in self.per_text]}
            if self.all is not None:
                sa = self.all[p].finish()
                d["cycles_all_steps"] = sa.cycles / n_texts
                d["energy_all_steps_nJ"] = sa.energy_nJ / n_texts
                d["sampling_error"] = {
                    "cycles": d["cycles"] / d["cycles_all_steps"] - 1.0,
                    "energy_nJ": d["energy_nJ"] / d["energy_all_steps_nJ"] - 1.0}
            out[p] = d
        self.sim_s += time.perf_counter() - t0
        return out


def _run_context(model, windows: np.ndarray, context: int, cfg: DecoderReportConfig, specs,
                 presets, stage: Stage) -> tuple[list[dict], dict]:
    from psa.models.prose import token_nll
    from psa.policies.decode import make_decode_policy, shared_prefill
    from psa.sim import load_preset

    mc = model.config
    n_dec, n_texts = cfg.decode, len(windows)
    prompt = context - n_dec
    b = len(specs)
    dram_specs = {p: load_preset(p) for p in presets}
    sampled = set(sampled_steps(n_dec, cfg.dram_every))
    sinks = [_DramSink(dram_specs, sampled, cfg.dram_check) for _ in specs]
    n_chunks = -(-prompt // cfg.prefill_chunk)
    tick = stage(f"context {context}: {n_texts} text(s) x (prefill {n_chunks} chunks + "
                 f"{n_dec} steps)", n_texts * (n_chunks + n_dec))
    nll = np.zeros((b, n_texts, n_dec))
    top1 = np.zeros((b, n_texts, n_dec), np.int64)
    lengths = prompt + 1 + np.arange(n_dec)  # tokens in the cache at each step
    alive_layer = np.zeros((b, mc.n_layers))
    alive_step = np.zeros((b, n_dec))
    labels, upper = [], []
    t_prefill = t_decode = 0.0
    for w in range(n_texts):
        ids = windows[w, windows.shape[1] - context - 1:]
        pols = [make_decode_policy(n, v, mc, context, sink=sinks[i])
                for i, (n, v) in enumerate(specs)]
        labels = [p.label for p in pols]
        upper = [bool(getattr(p, "upper_bound", False)) for p in pols]
        t0 = time.perf_counter()
        cache, _ = shared_prefill(model, ids[:prompt], pols, capacity=context,
                                  chunk=cfg.prefill_chunk, tick=tick)
        t1 = time.perf_counter()
        t_prefill += t1 - t0
        for t in range(n_dec):
            logits = model.step(np.full(b, ids[prompt + t]), cache, attention=pols)
            nll[:, w, t] = token_nll(logits, np.full(b, ids[prompt + t + 1]))
            top1[:, w, t] = logits.argmax(axis=1)
            tick()
        t_decode += time.perf_counter() - t1
        for i, pol in enumerate(pols):
            frac = pol.counters()["alive"] / lengths[:, None, None]  # [steps, layers, heads]
            alive_layer[i] += frac.mean(axis=(0, 2)) / n_texts
            alive_step[i] += frac.mean(axis=(1, 2)) / n_texts
            sinks[i].end_text()
        del cache, pols
    out = []
    for i, sink in enumerate(sinks):
        out.append({
            "name": labels[i], "family": labels[i].split("=")[0], "upper_bound": upper[i],
            "nll": nll[i].tolist(), "ppl": pooled_ppl(nll[i]),
            "top1": top1[i], "dram": sink.results(n_texts * n_dec),
            "alive_fraction_per_layer": alive_layer[i].tolist(),
            "alive_fraction_per_step": alive_step[i].tolist(),
            "alive_fraction_mean": float(alive_step[i].mean()),
        })
    pr = presets[0]
    dense = out[0]
    fp32 = next(p for p in out if p["name"] == "dense=32")
    d_text_ppl = np.exp(nll[0].mean(axis=1))
    for i, p in enumerate(out):
        p["ppl_change"] = p["ppl"] / dense["ppl"] - 1.0
        p["top1_agreement"] = float(np.mean(p["top1"] == dense["top1"]))
        text_ppl = np.exp(nll[i].mean(axis=1))
        base_b = dense["dram"][pr]["per_text_dram_bytes"]
        p["per_text"] = [{"ppl": float(text_ppl[w]),
                          "ppl_change": float(text_ppl[w] / d_text_ppl[w] - 1.0),
                          "top1_agreement": float(np.mean(p["top1"][w] == dense["top1"][w])),
                          "bytes_vs_fp16": ratio(base_b[w],
                                                 p["dram"][pr]["per_text_dram_bytes"][w])}
                         for w in range(n_texts)]
        p["spread"] = {k: spread(t[k] for t in p["per_text"])
                       for k in ("ppl_change", "top1_agreement", "bytes_vs_fp16")}
        p["top1"] = p["top1"].tolist()
        for prs, d in p["dram"].items():
            for base_name, base in (("fp16", dense), ("fp32", fp32)):
                bd = base["dram"][prs]
                d[f"vs_{base_name}"] = {k: ratio(bd[k], d[k])
                                        for k in ("dram_bytes", "cycles", "energy_nJ")}
    timing = {"prefill_s": t_prefill, "decode_s": t_decode - sum(s.sim_s for s in sinks),
              "dram_sim_s": sum(s.sim_s for s in sinks), "peak_rss_MB": peak_rss_mb()}
    return out, timing


def run_decoder_report(cfg: DecoderReportConfig, stage: Stage | None = None, *, model=None,
                       tokens: np.ndarray | None = None) -> dict:
    """Run the report; returns the ``report.json`` document.

    ``model`` (a :class:`~psa.models.llama.LlamaDecoder`) and ``tokens`` (int ids, at least
    ``texts * (max(contexts) + 1)``, cut into ``texts`` windows) replace SmolLM2 and the prose
    corpus (tests use a tiny random model). ``stage(description, total)`` returns a function
    called once per unit of work (a prefill chunk or a decode step).
    """
    from psa.policies.decode import parse_decode_policies

    stage = stage or (lambda _d, _n: (lambda: None))
    t0 = time.perf_counter()
    width = max(cfg.contexts) + 1
    source = "tokens given"
    if model is None:
        if cfg.model != "smollm2":
            raise ValueError(f"--model: decoder report supports smollm2, got {cfg.model!r}")
        from psa.models.llama import load_smollm2
        from psa.models.prose import fingerprint, text_windows

        model, tok = load_smollm2()
        cfg.check(model.config.max_context)
        windows = text_windows(tok, cfg.texts, width, seed=cfg.seed)
        source = fingerprint()
    else:
        cfg.check(model.config.max_context)
        tokens = np.asarray(tokens, np.int64).ravel()
        if len(tokens) < cfg.texts * width:
            raise ValueError(f"tokens: need {cfg.texts * width} ({cfg.texts} texts of "
                             f"{width}), got {len(tokens)}")
        windows = tokens[:cfg.texts * width].reshape(cfg.texts, width)
    t_load = time.perf_counter() - t0
    specs = parse_decode_policies(cfg.policies)
    if ("dense", "32") not in specs:
        specs.append(("dense", "32"))
    presets = list(cfg.presets)
    per_ctx, timing = {}, {}
    for c in cfg.contexts:
        per_ctx[str(c)], timing[str(c)] = _run_context(model, windows, c, cfg, specs,
                                                       presets, stage)
    mc = model.config
    steps = sampled_steps(cfg.decode, cfg.dram_every)
    method = ("all steps, streamed with controller state carried" if cfg.dram_every == 1 else
              f"every {cfg.dram_every}th step ({len(steps)} of {cfg.decode} per text) streamed "
              f"back to back, scaled by {cfg.decode / len(steps):g}")
    doc = {
        "schema_version": SCHEMA_VERSION, "kind": "decoder", "command": cfg.command,
        "model": {"name": cfg.model, "layers": mc.n_layers, "heads": mc.n_heads,
                  "kv_heads": mc.n_kv_heads, "head_dim": mc.head_dim,
                  "max_context": mc.max_context},
        "contexts": list(cfg.contexts), "decode": cfg.decode, "texts": cfg.texts,
        "seed": cfg.seed,
        "corpus": {"source": source, "window_tokens": width,
                   "windows": f"{cfg.texts} disjoint windows of {width} tokens; context C "
                              f"uses the last C + 1 of each"},
        "primary_preset": presets[0],
        "dram": {"presets": presets, "every": cfg.dram_every, "sampled_steps": steps,
                 "checked": cfg.dram_check, "cycles_method": method},
        "results": per_ctx,
        "timing": {"load_s": t_load, "contexts": timing, "peak_rss_MB": peak_rss_mb(),
                   "total_s": time.perf_counter() - t0},
    }
    if cfg.dram_check:
        doc["dram"]["sampling_error"] = sampling_error_summary(doc)
    return doc


def sampling_error_summary(doc: dict) -> dict:
    """Worst ``|relative error|`` of the sampled cycles / energy per context and preset."""
    out = {}
    for c, pols in doc["results"].items():
        out[c] = {}
        for pr in doc["dram"]["presets"]:
            errs = [p["dram"][pr]["sampling_error"] for p in pols]
            out[c][pr] = {k: max(abs(e[k]) for e in errs) for k in ("cycles", "energy_nJ")}
    return out


def _fmt(x: float, d: int = 2) -> str:
    return "inf" if x == float("inf") else f"{x:.{d}f}"


def _pct_range(sp: dict) -> str:
    return f"{100 * sp['min']:+.1f}..{100 * sp['max']:+.1f}%"


def headline_rows(doc: dict) -> list[list[str]]:
    """Rows ``context, policy, ppl, ppl change, its min..max over texts, top-1, bytes vs
    fp16/fp32, cycles vs fp16, energy vs fp16, alive`` on the primary preset (shared by
    report.md and the CLI table)."""
    pr = doc["primary_preset"]
    rows = []
    for c, pols in doc["results"].items():
        for p in pols:
            d = p["dram"][pr]
            rows.append([c, p["name"] + (" (bound)" if p["upper_bound"] else ""),
                         f"{p['ppl']:.3f}", f"{100 * p['ppl_change']:+.2f}%",
                         _pct_range(p["spread"]["ppl_change"]),
                         f"{p['top1_agreement']:.2f}", f"{_fmt(d['vs_fp16']['dram_bytes'])}x",
                         f"{_fmt(d['vs_fp32']['dram_bytes'])}x",
                         f"{_fmt(d['vs_fp16']['cycles'])}x",
                         f"{_fmt(d['vs_fp16']['energy_nJ'])}x",
                         f"{p['alive_fraction_mean']:.2f}"])
    return rows


HEADLINE_COLUMNS = ("context", "policy", "ppl", "ppl change", "per text", "top-1",
                    "bytes vs fp16", "bytes vs fp32", "cycles vs fp16", "energy vs fp16",
                    "alive")


def sampling_rows(doc: dict) -> list[list[str]]:
    """Rows ``context, policy, preset, cycles all steps, sampled estimate, error, energy
    error`` of a ``dram_check`` run (empty otherwise)."""
    if not doc["dram"].get("checked"):
        return []
    rows = []
    for c, pols in doc["results"].items():
        for p in pols:
            for prs, d in p["dram"].items():
                e = d["sampling_error"]
                rows.append([c, p["name"], prs, f"{d['cycles_all_steps']:,.0f}",
                             f"{d['cycles']:,.0f}", f"{100 * e['cycles']:+.2f}%",
                             f"{100 * e['energy_nJ']:+.2f}%"])
    return rows


def _markdown(doc: dict) -> str:
    pr = doc["primary_preset"]
    m = doc["model"]
    tm = doc["timing"]
    lines = ["# Decode-mode attention policies on SmolLM2", "",
             f"Model: {m['name']} ({m['layers']} layers, {m['heads']} query / {m['kv_heads']} "
             f"K/V heads, head_dim {m['head_dim']}). Contexts {doc['contexts']} (tokens in "
             f"the cache at the last step), {doc['decode']} teacher-forced decode steps per "
             f"text, {doc['texts']} text(s) ({doc['corpus']['windows']}; corpus "
             f"{doc['corpus']['source']}), seed {doc['seed']}.",
             "",
             "ppl: pooled over all texts' predicted tokens (token-weighted NLL); per text: "
             "min..max over texts of the per-text ppl change. Bytes, cycles, energy: per "
             "text (mean over texts).", "",
             f"DRAM: bytes count every step's trace exactly; cycles and energy: "
             f"{doc['dram']['cycles_method']}.", "",
             f"Command: `{doc['command']}`", "",
             f"## Headline ({pr}; reductions against dense fp16 / fp32 K/V)", "",
             "| " + " | ".join(HEADLINE_COLUMNS) + " |",
             "|---|---|" + "---:|" * (len(HEADLINE_COLUMNS) - 2)]
    lines += ["| " + " | ".join(r) + " |" for r in headline_rows(doc)]
    srows = sampling_rows(doc)
    if srows:
        lines += ["", f"## Error of step sampling (--dram-every {doc['dram']['every']} "
                  "against every step streamed)", "",
                  "| context | policy | preset | cycles, all steps | sampled estimate | "
                  "error | energy error |", "|---|---|---|---:|---:|---:|---:|"]
        lines += ["| " + " | ".join(r) + " |" for r in srows]
    lines += ["", "## Time and memory", "",
              "| context | prefill s | decode s | DRAM simulation s | peak RSS MB (so far) |",
              "|---|---:|---:|---:|---:|"]
    for c, t in tm["contexts"].items():
        lines.append(f"| {c} | {t['prefill_s']:.0f} | {t['decode_s']:.0f} | "
                     f"{t['dram_sim_s']:.0f} | {t['peak_rss_MB']:.0f} |")
    lines.append(f"\nModel load {tm['load_s']:.0f} s; total {tm['total_s']:.0f} s.")
    lines += ["", "## DRAM per preset", "",
              "| context | policy | preset | read MB | written MB | cycles | energy (uJ) | "
              "cycles vs fp16 | cycles vs fp32 | energy vs fp32 |",
              "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for c, pols in doc["results"].items():
        for p in pols:
            for prs, d in p["dram"].items():
                lines.append(f"| {c} | {p['name']} | {prs} | {d['read_bytes'] / 1e6:.2f} | "
                             f"{d['write_bytes'] / 1e6:.3f} | {d['cycles']:,.0f} | "
                             f"{d['energy_nJ'] / 1e3:.1f} | {_fmt(d['vs_fp16']['cycles'])}x | "
                             f"{_fmt(d['vs_fp32']['cycles'])}x | "
                             f"{_fmt(d['vs_fp32']['energy_nJ'])}x |")
    lines += ["", "## Alive tokens per layer (fraction of the length, mean over steps and "
              "K/V heads)", ""]
    n_l = doc["model"]["layers"]
    lines += ["| context | policy | " + " | ".join(f"L{i}" for i in range(n_l)) + " |",
              "|---|---|" + "---:|" * n_l]
    for c, pols in doc["results"].items():
        for p in pols:
            lines.append(f"| {c} | {p['name']} | " + " | ".join(
                f"{x:.2f}" for x in p["alive_fraction_per_layer"]) + " |")
    lines += ["", "Plots: " + ", ".join(f"`{p}`" for p in doc.get("plots", [])), ""]
    return "\n".join(lines)


def _plots(doc: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pr = doc["primary_preset"]
    written = []
    for c, pols in doc["results"].items():
        fig, ax = plt.subplots(figsize=(8.5, 4.4))
        for p in pols:
            ax.plot(p["alive_fraction_per_layer"], marker="o", label=p["name"])
        ax.set_xlabel("layer")
        ax.set_ylabel("alive tokens (fraction of length)")
        ax.set_ylim(0, 1.05)
        ax.set_title(f"Alive tokens per layer, context {c} (mean over steps)")
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
        ax.grid(alpha=0.3)
        fig.tight_layout()
        name = f"alive_ctx{c}.png"
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        written.append(name)
    fig, ax = plt.subplots(figsize=(7, 4.6))
    for c, pols in doc["results"].items():
        xs = [p["dram"][pr]["vs_fp16"]["cycles"] for p in pols]
        ys = [100 * p["ppl_change"] for p in pols]
        # bars: min..max over texts of the per-text perplexity change
        err = np.array([[y - 100 * p["spread"]["ppl_change"]["min"],
                         100 * p["spread"]["ppl_change"]["max"] - y]
                        for p, y in zip(pols, ys, strict=True)]).T.clip(0)
        ax.errorbar(xs, ys, yerr=err, fmt="o", capsize=3, label=f"context {c}")
        for p, x, y in zip(pols, xs, ys, strict=True):
            ax.annotate(p["name"], (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel(f"DRAM cycles reduction vs dense fp16 ({pr}, log)")
    ax.set_ylabel("perplexity change vs dense (%; bars: min..max over texts)")
    ax.set_title("Perplexity against DRAM time")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(out / "pareto_decoder.png", dpi=110)
    plt.close(fig)
    written.append("pareto_decoder.png")
    return written


def write_decoder_report(doc: dict, out: Path) -> list[Path]:
    """Write report.md, report.json and the PNG plots to ``out``; returns the files."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    doc["plots"] = _plots(doc, out)
    (out / "report.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / "report.md").write_text(_markdown(doc))
    return [out / "report.md", out / "report.json", *(out / p for p in doc["plots"])]
