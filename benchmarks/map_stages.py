"""How well the context model predicts the importance map: bits per entry per coding stage -> JSON.

    python benchmarks/map_stages.py [--checkpoint DIR] [--images 8] [--out docs/map_stages.json]

The map is coded in 2x2 phases, coarse to fine (four on one lattice before session 30); the first
sees no decoded neighbour. Per level: the model's
cross-entropy (bits per map entry) in each stage, its mean, and the zeroth-order entropy of each
image's own level histogram (what a coder with no context but a per-image table would need).
A mean close to the marginal says the map is spatially unpredictable at one-level resolution:
most of its bits describe level-to-level noise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python benchmarks/...` from a checkout

from cwic.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint  # noqa: E402
from cwic.entropy_models.context_model import MapContext, import_int, int_shape, map_scales, rate_plane_value  # noqa: E402
from cwic.images import load_rgb  # noqa: E402
from cwic.models.network import pad_to_multiple, quantize_importance  # noqa: E402
from cwic.training.data import DEFAULT_KODAK_DIR, list_images  # noqa: E402
from cwic.training.train_entropy import map_bits_by_stage  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@torch.no_grad()
def stage_costs(checkpoint: Path, files: list[Path]) -> list[dict]:
    """Per level of the checkpoint: bits per entry in each map stage, their mean, the marginal entropy."""
    model, card, extra = load_checkpoint(checkpoint)
    width, kernel = int_shape(extra, "entropy.map")
    net = MapContext(model.config.symbols, width, kernel, map_scales(extra["entropy.map.stage_bias"].shape[0]))
    import_int(net, extra, "entropy.map")
    feats = []
    for f in files:
        x, _ = pad_to_multiple(torch.from_numpy(load_rgb(f).copy()).permute(2, 0, 1)[None].float() / 255)
        feats.append(model.analyze(x)[1])
    out = []
    for level in card["levels"]:
        bits, count, marginal = np.zeros(net.stage_bias.shape[0]), np.zeros(net.stage_bias.shape[0]), []
        for feat in feats:
            q = quantize_importance(model.importance_map(feat, level["rate"]), model.config)[:, 0]
            stage_bits, entries = map_bits_by_stage(net, q, torch.tensor([rate_plane_value(level["rate"])]))
            bits += stage_bits
            count += entries
            hist = np.bincount(q.flatten().numpy(), minlength=model.config.symbols) / q.numel()
            marginal.append(float(-(hist[hist > 0] * np.log2(hist[hist > 0])).sum()))
        out.append(
            {
                "level": level["level"],
                "bits_per_entry_by_stage": [round(float(b / c), 3) for b, c in zip(bits, count, strict=True)],
                "bits_per_entry": round(float(bits.sum() / count.sum()), 3),
                "marginal_entropy": round(float(np.mean(marginal)), 3),
            }
        )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    ap.add_argument("--kodak", type=Path, default=DEFAULT_KODAK_DIR)
    ap.add_argument("--images", type=int, default=8, help="the first N Kodak images")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "map_stages.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = stage_costs(args.checkpoint, list_images(args.kodak)[: args.images])
    out = {"checkpoint": str(args.checkpoint), "images": args.images, "levels": rows}
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    for row in rows:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
