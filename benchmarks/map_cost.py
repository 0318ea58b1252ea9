"""What the importance map buys and what it costs, on Kodak at every level -> docs/map_cost.json.

    python benchmarks/map_cost.py [--checkpoint DIR] [--out docs/map_cost.json]

The uniform-map ablation (issue 14's bar: the content-weighted model must beat it by >= 8 % BD-rate)
codes a constant map in almost no bits, while the content-weighted map is coded at 1.5 bits per
entry. This splits the comparison in two: the BD-rate of the content-weighted model against the
ablation as the real files stand, and with each file's map section left out on both sides (what
the map's allocation is worth if it were free). The gap between the two is what a cheaper map
could win. Real .cwic files; the map and code bits are the coder's own accounting
(`Compressed.map_bits`), the qualities those of `cwic evaluate`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python benchmarks/...` from a checkout

from cwic import Codec  # noqa: E402
from cwic.evaluation.bdrate import bd_rate_curves  # noqa: E402
from cwic.evaluation.evaluate import METRICS, score  # noqa: E402
from cwic.images import load_rgb  # noqa: E402
from cwic.training.data import DEFAULT_KODAK_DIR, list_images  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def curves(codec: Codec, files: list[Path]) -> dict[str, dict[str, list[float]]]:
    """Mean bpp, map bpp and metrics per level, for the content-weighted and the uniform maps."""
    out = {name: {"bpp": [], "map_bpp": [], **{m: [] for m in METRICS}} for name in ("cwic", "cwic-uniform")}
    images = [load_rgb(f) for f in files]
    for level in (lv["level"] for lv in codec.levels):
        for name, curve in out.items():
            rows = []
            for rgb in images:
                c = codec.compress(rgb, level=level, uniform=name == "cwic-uniform")
                pixels = rgb.shape[0] * rgb.shape[1]
                rows.append({"bpp": c.bpp, "map_bpp": c.map_bits / pixels, **score(rgb, c.reconstruction)})
            for key in curve:
                curve[key].append(float(np.mean([r[key] for r in rows])))
        print(f"level {level} done", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", type=Path, default=None)
    ap.add_argument("--kodak", type=Path, default=DEFAULT_KODAK_DIR)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "map_cost.json")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--limit", type=int, default=None, help="first N images only (a quick check of the script)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    codec = Codec.load(args.checkpoint)
    files = list_images(args.kodak)[: args.limit]
    t0 = time.time()
    c = curves(codec, files)
    free = {
        name: curve | {"bpp": [b - m for b, m in zip(curve["bpp"], curve["map_bpp"], strict=True)]}
        for name, curve in c.items()
    }
    out = {
        "checkpoint_id": codec.checkpoint_id,
        "images": len(files),
        "command": "python benchmarks/map_cost.py" + (f" --checkpoint {args.checkpoint}" if args.checkpoint else ""),
        "levels": [lv["level"] for lv in codec.levels],
        "curves": c,
        "map_share_of_bpp": [round(m / b, 4) for b, m in zip(c["cwic"]["bpp"], c["cwic"]["map_bpp"], strict=True)],
        "bdrate_vs_uniform": {m: round(bd_rate_curves(c["cwic-uniform"], c["cwic"], m), 2) for m in METRICS},
        "bdrate_vs_uniform_map_free": {
            m: round(bd_rate_curves(free["cwic-uniform"], free["cwic"], m), 2) for m in METRICS
        },
        "elapsed_s": round(time.time() - t0, 1),
    }
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({k: out[k] for k in ("map_share_of_bpp", "bdrate_vs_uniform", "bdrate_vs_uniform_map_free")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
