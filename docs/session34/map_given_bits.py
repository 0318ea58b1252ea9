"""Session 34: would the map be cheaper to code after the bits that every location keeps?

    PYTHONPATH=. python docs/session34/map_given_bits.py  # -> map_given_bits.json

Group 0 (code maps 0-3) is kept at every location, so a coder could send it before the map and let
the map's context model read it. Estimate of what that is worth: count-based models of q, fitted on
12 Kodak images and scored (cross-entropy, bits per map entry, add-1/2 smoothing) on the other 12,
with the causal neighbours' mean level as context, without and with features of group 0's bits (the
location's 4-bit pattern; its Hamming distances to the left and upper neighbours' patterns). Raster
causal context only, coarser than the shipped 3-lattice coder: the relative change is the estimate.
"""

import json
from pathlib import Path

import numpy as np
import torch

from cwic import Codec
from cwic.images import load_rgb
from cwic.models.network import pad_to_multiple, quantize_importance

codec = Codec.load("checkpoints/cwic-slim")
paths = sorted(Path("../shared/data/kodak").glob("*.png"))
levels = (1, 2, 3, 4)
data = {k: [] for k in levels}
with torch.no_grad():
    for path in paths:
        x = torch.tensor(load_rgb(path)).permute(2, 0, 1)[None].float() / 255
        e, feats = codec.model.analyze(pad_to_multiple(x)[0])
        g0 = (e[0, :4] > 0.5).numpy().astype(np.int64)
        pattern = g0[0] + 2 * g0[1] + 4 * g0[2] + 8 * g0[3]
        for k in levels:
            p = codec.model.importance_map(feats, float(np.float32(codec.rate_of(k))))[0, 0]
            data[k].append((quantize_importance(p, codec.config).numpy(), g0, pattern))


def features(q, g0, pattern):
    """Per location (skipping the first row and column): q, the neighbours' mean level and group-0 features."""
    left, up = q[1:, :-1], q[:-1, 1:]
    nb = (left + up) // 2
    ham_l = np.abs(g0[:, 1:, 1:] - g0[:, 1:, :-1]).sum(0)
    ham_u = np.abs(g0[:, 1:, 1:] - g0[:, :-1, 1:]).sum(0)
    return {
        "q": q[1:, 1:].ravel(),
        "nb": nb.ravel(),
        "pattern": pattern[1:, 1:].ravel(),
        "edges": np.minimum(ham_l + ham_u, 4).ravel(),
    }


def cross_entropy(train, test, keys, symbols=16):
    """Bits per entry of q on `test` under counts of (context -> q) from `train`, add-1/2 smoothing."""

    def ctx(f):
        c = np.zeros_like(f["q"])
        for key in keys:
            c = c * 17 + f[key]
        return c

    counts = {}
    for c, q in zip(ctx(train), train["q"], strict=True):
        counts.setdefault(c, np.full(symbols, 0.5))[q] += 1
    bits = [
        -np.log2(counts.get(c, np.full(symbols, 0.5))[q] / counts.get(c, np.full(symbols, 0.5)).sum())
        for c, q in zip(ctx(test), test["q"], strict=True)
    ]
    return float(np.mean(bits))


out = {}
for k in levels:
    fs = [features(*d) for d in data[k]]
    train, test = ({key: np.concatenate([f[key] for f in part]) for key in part[0]} for part in (fs[::2], fs[1::2]))
    row = {
        name: round(cross_entropy(train, test, keys), 4)
        for name, keys in {
            "no context": [],
            "neighbours": ["nb"],
            "neighbours + pattern": ["nb", "pattern"],
            "neighbours + edges": ["nb", "edges"],
            "neighbours + pattern + edges": ["nb", "pattern", "edges"],
        }.items()
    }
    out[f"level {k}"] = row
    print(k, row, flush=True)
Path("docs/session34/map_given_bits.json").write_text(json.dumps(out, indent=1) + "\n")
