"""The training batches: patches, target rates and uniform-map draws, in shards with their own streams.

The global batch of a step is `shards` equal pieces, shard k drawn from its own seeded Generator,
concatenated in shard order. Each process of a distributed run draws only its own shards, so one
process with `--shards 2` sees exactly the batches that two ranks see together, and a run's data
does not depend on how many processes or devices trained it. `BatchStream` can draw ahead in a
background thread (to keep a GPU busy); every batch carries the Generator states after it, so a
saved state resumes at the first batch not yet trained on.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from itertools import count

import numpy as np

from .data import PatchSampler


@dataclass(frozen=True)
class Recipe:
    """What each sample draws besides its patch (the `cwic train` options of the same names)."""

    rate_min: float
    rate_max: float
    rate_skew: float
    full_rate_frac: float
    uniform_steps: int
    uniform_frac: float


@dataclass
class Batch:
    x: np.ndarray  # (B, 3, P, P) float32 in [0, 1]
    rate: np.ndarray  # (B,) float32 target rates
    uniform: np.ndarray  # (B,) float32: the constant map of a uniform-map sample, NaN for a learned map
    rng_states: list[dict]  # the shards' Generator states after this batch


def shard_rng(seed: int, shard: int, step: int | None) -> np.random.Generator:
    """Shard k's stream: seeded by (seed, k), or by (seed, step, k) for a run started from a checkpoint.

    Shard 0 keeps the seeding of the single-stream runs before sharding (seed, or (seed, step)).
    """
    key = [seed] if step is None else [seed, step]
    return np.random.default_rng(key + [shard] if shard else key)


def draw(rng: np.random.Generator, sampler: PatchSampler, size: int, step: int, recipe: Recipe) -> Batch:
    """One shard of the batch of `step`."""
    x = sampler.batch(rng, size)
    u = rng.uniform(0, 1, size) ** recipe.rate_skew
    r = recipe.rate_min + (recipe.rate_max - recipe.rate_min) * u
    if recipe.full_rate_frac:
        r = np.where(rng.random(size) < recipe.full_rate_frac, 1.0, r)
    use_uniform = np.ones(size, bool) if step <= recipe.uniform_steps else rng.random(size) < recipe.uniform_frac
    uniform = np.where(use_uniform, rng.uniform(0, 1, size), np.nan)
    return Batch(x, r.astype(np.float32), uniform.astype(np.float32), [])


class BatchStream:
    """This process's part of every step's batch, from step `first` on; `ahead` > 0 draws in a thread."""

    def __init__(
        self, rngs: list[np.random.Generator], sampler: PatchSampler, size: int, first: int, recipe: Recipe, ahead: int
    ) -> None:
        self.rngs, self.sampler, self.size, self.recipe = rngs, sampler, size, recipe
        self.steps = count(first)
        self.queue: queue.Queue[Batch] | None = None
        if ahead > 0:
            self.queue = queue.Queue(maxsize=ahead)
            threading.Thread(target=self._fill, daemon=True).start()

    def _draw(self) -> Batch:
        step = next(self.steps)
        parts = [draw(rng, self.sampler, self.size, step, self.recipe) for rng in self.rngs]
        return Batch(
            np.concatenate([p.x for p in parts]),
            np.concatenate([p.rate for p in parts]),
            np.concatenate([p.uniform for p in parts]),
            [rng.bit_generator.state for rng in self.rngs],
        )

    def _fill(self) -> None:
        while True:
            self.queue.put(self._draw())

    def next(self) -> Batch:
        return self.queue.get() if self.queue else self._draw()
