"""Would a smoother importance map pay for itself? File size and quality with the map low-passed before coding.

Usage: python benchmarks/map_smoothing.py [--checkpoint DIR] [--images 8] [--out docs/map_smoothing.json]
The map is 11-21 % of the payload at levels 1-5 (docs/bitstream_kodak.json), while the
uniform-map ablation's is nearly free. Here the importance net's output is smoothed (a 3x3 box
filter, or 2x2 block means) before the mean shift and the quantization, at encode time only: the
format, the decoder and the context models are unchanged, so this measures what the shipped
context model saves on a smoother map against what the coarser bit allocation costs. Real .cwic
sizes at every level on the first --images Kodak images; BD-rates against the unsmoothed map.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python benchmarks/...` from a checkout

from cwic.checkpoint import DEFAULT_CHECKPOINT  # noqa: E402
from cwic.codec import Codec  # noqa: E402
from cwic.evaluation.bdrate import bd_rate_curves  # noqa: E402
from cwic.evaluation.evaluate import METRICS  # noqa: E402
from cwic.evaluation.metrics import quality  # noqa: E402
from cwic.images import load_rgb  # noqa: E402
from cwic.training.data import DEFAULT_KODAK_DIR, list_images  # noqa: E402

FILTERS = ("none", "box3", "block2")


def smooth(p: torch.Tensor, how: str) -> torch.Tensor:
    """The importance map (B, 1, h, w) low-passed: unchanged, 3x3 box (edges replicated), or 2x2 block means."""
    if how == "box3":
        return F.avg_pool2d(F.pad(p, (1, 1, 1, 1), mode="replicate"), 3, 1)
    if how == "block2":
        h, w = p.shape[-2:]
        return F.interpolate(F.avg_pool2d(p, 2, 2, ceil_mode=True), scale_factor=2, mode="nearest")[..., :h, :w]
    return p


def curve(codec: Codec, images: list[np.ndarray]) -> dict:
    """Mean file bpp, map bpp and quality over `images` at every level of the checkpoint."""
    rows = []
    for lv in codec.levels:
        per_image = []
        for img in images:
            c = codec.compress(img, level=lv["level"])
            q = quality(img, c.reconstruction)
            pixels = img.shape[0] * img.shape[1]
            per_image.append((c.bpp, c.map_bits / pixels, q["psnr"], q["ssim"], q["ms_ssim"]))
        rows.append(np.mean(per_image, axis=0))
    cols = np.array(rows).T
    return {k: [round(float(v), 5) for v in col] for k, col in zip(("bpp", "map_bpp", *METRICS), cols, strict=True)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    ap.add_argument("--kodak", type=Path, default=DEFAULT_KODAK_DIR)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    codec = Codec.load(args.checkpoint)
    images = [load_rgb(f) for f in list_images(args.kodak)[: args.images]]
    importance = codec.model.importance.forward
    curves = {}
    for how in FILTERS:
        codec.model.importance.forward = lambda feats, rate, how=how: smooth(importance(feats, rate), how)
        curves[how] = curve(codec, images)
        print(how, json.dumps(curves[how]), flush=True)
    result = {
        "command": "python benchmarks/map_smoothing.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "checkpoint": codec.checkpoint_id,
        "images": len(images),
        "curves": curves,
        "bd_rate_vs_none": {
            how: {m: round(bd_rate_curves(curves["none"], curves[how], m), 2) for m in METRICS} for how in FILTERS[1:]
        },
    }
    print(json.dumps(result["bd_rate_vs_none"]))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
