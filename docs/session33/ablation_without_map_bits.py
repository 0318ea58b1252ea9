"""Session 33: the content-weighted default against its uniform-map ablation with the ablation's
constant map taken out of its files (what a model without a map would pay), from the committed
evaluation's mean curves and the measured mean map bits per level.

    PYTHONPATH=. python docs/session33/ablation_without_map_bits.py  # -> ablation_without_map_bits.json

The mean over images of (file bpp - map bpp) is the mean file bpp less the mean map bpp, so the
shifted curve is exact up to the map section's byte padding (under 1 byte per file).
"""

import json
from pathlib import Path

from cwic.evaluation.bdrate import bd_rate_curves

curves = json.loads(Path("docs/kodak/results.json").read_text())["curves"]
map_bpp = [row[2] for row in json.loads(Path("docs/session33/uniform_map_cost.json").read_text())["new"]]
out = {}
for test, anchor in [("cwic", "cwic-uniform"), ("cwic-refined", "cwic-uniform-refined")]:
    a = curves[anchor]["results"]
    shifted = dict(a, bpp=[b - m for b, m in zip(a["bpp"], map_bpp, strict=True)])
    t = curves[test]["results"]
    out[test] = {
        metric: {
            "as_coded": round(bd_rate_curves(a, t, metric), 2),
            "map_bits_removed": round(bd_rate_curves(shifted, t, metric), 2),
        }
        for metric in ("psnr-rgb", "ssim-rgb", "ms-ssim-rgb")
    }
    print(test, "vs", anchor, out[test])
Path("docs/session33/ablation_without_map_bits.json").write_text(json.dumps(out, indent=1) + "\n")
