"""SmolLM2-135M-Instruct NumPy decoder speed: load, prefill and decode.

Measures (wall clock and process CPU time; the machine may be shared):

- load: GGUF read + dequantize to float32 + tokenizer (:func:`psa.models.llama.load_smollm2`);
- prefill tokens/s of a 512- and a 2048-token prompt into an empty cache (chunk 256);
- decode steps/s at batch 1 and 8, each sequence holding a 512-token prefix, over 16 steps
  (tokens/s = steps/s * batch).

BLAS threads follow ``OPENBLAS_NUM_THREADS`` (run once with 1 and once without). Prints a
table and writes JSON (default bench/results/llama_speed.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from psa.models import prose
from psa.models.llama import load_smollm2

ROOT = Path(__file__).resolve().parents[1]


def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "llama_speed.json")
    ap.add_argument("--steps", type=int, default=16)
    args = ap.parse_args()
    from threadpoolctl import threadpool_info

    threads = max((i.get("num_threads", 1) for i in threadpool_info()), default=1)
    (model, tok), load_w, load_c = timed(load_smollm2)
    res = {"threads": threads, "machine": platform.processor() or platform.machine(),
           "load_s": round(load_w, 2), "load_cpu_s": round(load_c, 2)}
    ids = prose.token_stream(tok, 2048 + 8 * 512, seed=0)
    for n in (512, 2048):
        cache = model.new_cache(1, n)
        _, w, c = timed(lambda n=n, cache=cache: model.prefill(ids[None, :n], cache))
        res[f"prefill_{n}_tok_s"] = round(n / w, 1)
        res[f"prefill_{n}_cpu_s"] = round(c, 2)
    for batch in (1, 8):
        cache = model.new_cache(batch, 512 + args.steps)
        prompts = ids[2048:2048 + batch * 512].reshape(batch, 512)
        model.prefill(prompts, cache)
        nxt = np.full(batch, tok.encode(" the")[0])

        def run(cache=cache, nxt=nxt):
            for _ in range(args.steps):
                model.step(nxt, cache)

        _, w, c = timed(run)
        res[f"decode_b{batch}_steps_s"] = round(args.steps / w, 2)
        res[f"decode_b{batch}_tok_s"] = round(batch * args.steps / w, 1)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    key = f"threads={threads}"
    old = json.loads(args.json.read_text()) if args.json.is_file() else {}
    old[key] = res
    args.json.write_text(json.dumps(old, indent=2) + "\n")
    for k, v in res.items():
        print(f"{k:>22}: {v}")
    print(f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', '(default)')}; "
          f"written to {args.json}")


if __name__ == "__main__":
    main()
