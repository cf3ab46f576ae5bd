"""Perplexity and K/V bytes of decode-mode policies on SmolLM2, over several held-out windows.

Each window of the prose corpus (:mod:`psa.models.prose`) is ``L`` context tokens (prefilled
through the policy's hooks) followed by ``T`` teacher-forced decode steps; perplexity is over
the ``T`` predicted tokens of every window, bytes are the policy's K/V reads and writes
(every step's trace, exact). One JSON line per policy on stdout, and the list in
``--json``.

    OPENBLAS_NUM_THREADS=1 python bench/decode_policies.py --windows 8 --seed 1 \\
        dense=16 spatten=0.7 topp=0.9 h2o=0.2 quest=0.2 nsa=4 oracle=0.1

takes about 3 minutes per policy on one core (8 windows of 512 + 64 tokens).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from psa.models.llama import load_smollm2
from psa.models.prose import token_nll, token_stream
from psa.policies.decode import make_decode_policy


def run_policy(model, stream: np.ndarray, spec: str, windows: int, L: int, T: int) -> dict:
    name, _, value = spec.partition("=")
    kw = {"context": L} if name == "nsa" else {}
    nll, read_b, write_b, t0 = [], 0, 0, time.time()
    for w in range(windows):
        ids = stream[w * (L + T):(w + 1) * (L + T)]
        pol = make_decode_policy(name, value or None, model.config, L + T, **kw)
        cache = model.new_cache(1, L + T)
        logits = model.prefill(ids[None, :L], cache, attention=[pol])
        for i in range(T):
            nll.append(float(token_nll(logits, ids[L + i:L + i + 1])[0]))
            if i < T - 1:
                logits = model.step(ids[L + i:L + i + 1], cache, attention=[pol])
        for tr in pol.traces:
            read_b += int(tr.size[~tr.is_write].sum())
            write_b += int(tr.size[tr.is_write].sum())
    return {"policy": pol.label, "ppl": float(np.exp(np.mean(nll))), "predictions": len(nll),
            "read_bytes": read_b, "write_bytes": write_b, "seconds": round(time.time() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("policies", nargs="+", help="policy specs, e.g. dense=16 spatten=0.7")
    ap.add_argument("--windows", type=int, default=8)
    ap.add_argument("--context", type=int, default=512)
    ap.add_argument("--decode", type=int, default=64)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", type=Path, default=Path("bench/results/decode_policies.json"))
    a = ap.parse_args()
    model, tok = load_smollm2()
    stream = token_stream(tok, a.windows * (a.context + a.decode), seed=a.seed)
    rows = []
    for spec in a.policies:
        rows.append(run_policy(model, stream, spec, a.windows, a.context, a.decode))
        print(json.dumps(rows[-1]), flush=True)
    base = next((r for r in rows if r["policy"] == "dense=16"), rows[0])
    print(f"\n{'policy':<22}{'ppl':>9}{'vs ' + base['policy']:>16}{'read bytes':>14}")
    for r in rows:
        print(f"{r['policy']:<22}{r['ppl']:>9.3f}{100 * (r['ppl'] / base['ppl'] - 1):>+15.2f}%"
              f"{base['read_bytes'] / r['read_bytes']:>13.2f}x")
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(a).items()},
                                  "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
