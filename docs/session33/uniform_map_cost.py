"""Session 33: what the uniform-map ablation pays for its constant map, mean over Kodak per level,
with the default's context models before (commit 4bcd325) and after the three-lattice refit.

    mkdir -p /tmp/oldck && for f in model.json model.safetensors; do
        git show 4bcd325:checkpoints/cwic-slim/$f > /tmp/oldck/$f; done
    PYTHONPATH=. python docs/session33/uniform_map_cost.py  # -> docs/session33/uniform_map_cost.json

Per checkpoint and level: mean file bpp, mean map bpp, mean share of the file that is map.
"""

import json
from pathlib import Path

import numpy as np
import torch

from cwic import Codec
from cwic.images import load_rgb

torch.set_num_threads(1)
images = [load_rgb(p) for p in sorted(Path("../shared/data/kodak").glob("*.png"))]
pixels = [x.shape[0] * x.shape[1] for x in images]
out = {}
for name, folder in [("old", "/tmp/oldck"), ("new", "checkpoints/cwic-slim")]:
    codec = Codec.load(folder)
    rows = []
    for level in range(1, 7):
        files = [codec.compress(x, level=level, uniform=True) for x in images]
        bpp = np.mean([f.bpp for f in files])
        map_bpp = np.mean([f.map_bits / n for f, n in zip(files, pixels, strict=True)])
        share = np.mean([f.map_bits / (8 * len(f.data)) for f in files])
        rows.append((level, float(bpp), float(map_bpp), float(share)))
        print(name, level, f"bpp {bpp:.4f} map_bpp {map_bpp:.4f} share {share:.3f}", flush=True)
    out[name] = rows
Path("docs/session33/uniform_map_cost.json").write_text(json.dumps(out, indent=1) + "\n")
