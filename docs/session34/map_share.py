"""Session 34: what the content-weighted default's map costs on Kodak, and the ablation margin if that
map were free (an upper bound on what a better map coder could buy against the map-free ablation).

    PYTHONPATH=. python docs/session34/map_share.py  # -> map_share.json

The map section's bytes of every default file (24 images x 6 levels, the files `cwic evaluate` makes)
over the image's pixels, averaged per level; the shifted curve is the committed evaluation's mean cwic
curve less that mean (exact: the mean of differences is the difference of means).
"""

import json
from pathlib import Path

import numpy as np

from cwic import Codec, bitstream
from cwic.evaluation.bdrate import bd_rate_curves
from cwic.images import load_rgb

codec = Codec.load("checkpoints/cwic-slim")
levels = [lv["level"] for lv in codec.levels]
map_bpp = {k: [] for k in levels}
for path in sorted(Path("../shared/data/kodak").glob("*.png")):
    rgb = load_rgb(path)
    for k in levels:
        _, map_s, _ = bitstream.parse(codec.compress(rgb, level=k).data)
        map_bpp[k].append(8 * len(map_s) / (rgb.shape[0] * rgb.shape[1]))
curves = json.loads(Path("docs/kodak/results.json").read_text())["curves"]
cw, uniform = curves["cwic"]["results"], curves["cwic-uniform"]["results"]
mean_map = [float(np.mean(map_bpp[k])) for k in levels]
free = dict(cw, bpp=[b - m for b, m in zip(cw["bpp"], mean_map, strict=True)])
out = {
    "map_bpp_per_level": {k: round(m, 5) for k, m in zip(levels, mean_map, strict=True)},
    "map_share_of_file": {k: round(m / b, 4) for k, m, b in zip(levels, mean_map, cw["bpp"], strict=True)},
    "cwic_vs_uniform": {
        m: {
            "as_coded": round(bd_rate_curves(uniform, cw, m), 2),
            "map_free": round(bd_rate_curves(uniform, free, m), 2),
        }
        for m in ("psnr-rgb", "ssim-rgb", "ms-ssim-rgb")
    },
}
print(json.dumps(out, indent=1))
Path("docs/session34/map_share.json").write_text(json.dumps(out, indent=1) + "\n")
