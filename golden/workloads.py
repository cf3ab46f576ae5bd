"""Seeded synthetic attention workloads with realistic structure.

Each (layer, head) gets Q, K, V of shape ``(n_tokens, d_head)`` built from
- a per-sequence token latent shared by all layers (so important tokens stay important),
- a few *heavy-hitter* tokens whose keys align with a direction every query shares
  (attention sinks, as in real LMs),
- a positional component that gives nearby tokens higher scores (local bias), and
- a per-head temperature drawn log-uniformly, so heads range from sharp to flat (varied entropy).

The arrays depend only on ``(seed, layer, head)``, not on which tokens are still alive, so a
pruned run and a dense run see the same numbers for the tokens they share.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SyntheticWorkload"]


@dataclass(frozen=True)
class SyntheticWorkload:
    """A multi-layer, multi-head attention workload (float32 Q/K/V on demand).

    Parameters
    ----------
    n_layers, n_heads, n_tokens, d_head : int
        Shape; every value must be >= 1 (``d_head >= 4``).
    seed : int
        Everything is a pure function of the seed.
    n_heavy : int
        Heavy-hitter tokens (attention sinks).
    local_width : float
        Positional correlation length in tokens (local bias).
    """

    n_layers: int = 12
    n_heads: int = 12
    n_tokens: int = 1024
    d_head: int = 64
    seed: int = 0
    n_heavy: int = 8
    local_width: float = 32.0

    def __post_init__(self) -> None:
        for name, lo in (("n_layers", 1), ("n_heads", 1), ("n_tokens", 1), ("d_head", 4),
                         ("n_heavy", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise ValueError(f"SyntheticWorkload: {name} must be an integer >= {lo}, got {v!r}")
        if not self.local_width > 0:
            raise ValueError(f"SyntheticWorkload: local_width must be > 0, got {self.local_width}")

    def _rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, *key])

    def _token_state(self):
        rng = self._rng(0xA77)
        n, d = self.n_tokens, self.d_head
        latent = rng.standard_normal((n, d))
        heavy = rng.choice(n, size=min(self.n_heavy, n), replace=False)
        salience = np.zeros(n)
        salience[heavy] = rng.uniform(3.0, 6.0, size=len(heavy))
        salience += 0.3 * rng.standard_normal(n)  # mild, persistent token-level importance
        # Smooth positional features: random Fourier features with wavelength ~ local_width.
        freqs = rng.standard_normal(d // 2) / self.local_width
        phase = rng.uniform(0, 2 * np.pi, d // 2)
        t = np.arange(n)[:, None]
        pos = np.concatenate([np.cos(t * freqs + phase), np.sin(t * freqs + phase)], axis=1)
        pos = np.pad(pos, ((0, 0), (0, d - pos.shape[1]))) / np.sqrt(d // 2)  # unit norm
        return latent, salience, pos

    def head_temperature(self, layer: int, head: int) -> float:
        """Inverse sharpness of a head, log-uniform in [0.5, 3]."""
        return float(np.exp(self._rng(1, layer, head).uniform(np.log(0.5), np.log(3.0))))

    def qkv(self, layer: int, head: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Q, K, V of one head for all tokens, float32 ``(n_tokens, d_head)``."""
        if not (0 <= layer < self.n_layers and 0 <= head < self.n_heads):
            raise ValueError(f"qkv: layer must be in 0..{self.n_layers - 1} and head in "
                             f"0..{self.n_heads - 1}, got ({layer}, {head})")
        latent, salience, pos = self._cached_state()
        n, d = self.n_tokens, self.d_head
        rng = self._rng(2, layer, head)
        wq, wk, wv = (rng.standard_normal((d, d)) / np.sqrt(d) for _ in range(3))
        sink = rng.standard_normal(d)
        sink /= np.linalg.norm(sink)
        temp = self.head_temperature(layer, head)
        gain = np.sqrt(np.sqrt(d)) / np.sqrt(temp)  # scores q.k / sqrt(d) scale with 1 / temp
        local = 2.0  # a token's own position scores local^2 above a distant one
        q = latent @ wq * 0.25 + local * pos + 1.5 * sink
        k = latent @ wk * 0.25 + local * pos + salience[:, None] * sink
        v = latent @ wv + 0.1 * rng.standard_normal((n, d))
        return ((q * gain).astype(np.float32), (k * gain).astype(np.float32),
                v.astype(np.float32))

    def _cached_state(self):
        cache = self.__dict__.get("_state")
        if cache is None:
            cache = self._token_state()
            object.__setattr__(self, "_state", cache)
        return cache
