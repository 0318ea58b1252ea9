"""Rate–distortion of training runs' current weights on Kodak, before entropy coding, to compare runs.

Usage: python benchmarks/runs_rd.py runs/main runs/n128 [--rates 0.04 0.1 ...] [--out docs/code_width.json]
Each run folder's last train state (`cwic train --out`; its moving average when trained with --ema),
or a shipped checkpoint folder, reconstructs all 24 Kodak images through the
reference path (`model.reconstruct`) at every rate r; the rate axis is the raw bpp (kept code bits
plus 4 bits per importance-map entry), so runs with different code widths n compare on the same
axis without training their entropy models first (and runs with different layer widths before
either is shipped). BD-rates are against the first run. Raw bpp is
an upper bound of the coded size: the context model saves more on some codes than on others, so a
close result here still needs the real codec (`cwic evaluate`) to settle it.

Its committed outputs are docs/code_width.json (n = 128 against n = 64), docs/layer_width.json
(medium against slim) and docs/recipe_arms.json (the training-recipe arms of session 13).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python benchmarks/...` from a checkout

from cwic.checkpoint import CARD, load_checkpoint  # noqa: E402
from cwic.evaluation.bdrate import bd_rate_curves  # noqa: E402
from cwic.images import load_rgb  # noqa: E402
from cwic.training.data import DEFAULT_KODAK_DIR, list_images  # noqa: E402
from cwic.training.export import load_run, measure_rates  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
METRICS = {"psnr": "psnr-rgb", "ssim": "ssim-rgb", "ms_ssim": "ms-ssim-rgb"}


def run_curve(folder: Path, images: list[np.ndarray], rates: list[float]) -> dict:
    """Mean raw bpp and quality over `images` at each rate, with the run's training record."""
    if (folder / CARD).is_file():  # a shipped checkpoint: its card holds the record
        model, card, _ = load_checkpoint(folder)
        info = {**card["training"], "step": card["training"]["steps"], "preset": card.get("preset")}
    else:
        model, info = load_run(folder)
    model.eval()
    rows = measure_rates(model, images, rates)
    columns = {"raw_bpp": "bpp", **METRICS}
    curve = {name: [float(row[k]) for row in rows] for k, name in columns.items()}
    sessions = info.get("sessions", [])
    return {
        "run": folder.name,
        "preset": info.get("preset"),
        "n": model.config.n,
        "step": info["step"],
        "wall_s": round(info["wall_seconds"], 1),
        "cpu_s_this_run": info.get("cpu_seconds"),
        "last_session_args": sessions[-1]["args"] if sessions else None,
        "rates": rates,
        "results": curve,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", type=Path, nargs="+", help="run folders; BD-rates are against the first")
    ap.add_argument("--rates", type=float, nargs="+", default=[0.04, 0.1, 0.2, 0.35, 0.5, 0.7, 1.0])
    ap.add_argument("--kodak", type=Path, default=DEFAULT_KODAK_DIR)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "code_width.json")
    args = ap.parse_args(argv)
    images = [load_rgb(p) for p in list_images(args.kodak)]
    curves = [run_curve(f, images, args.rates) for f in args.runs]
    anchor = curves[0]["results"]
    for c in curves[1:]:
        c["bd_rate_vs_first"] = {m: _round(bd_rate_curves(anchor, c["results"], m)) for m in METRICS.values()}
    out = {
        "command": "python benchmarks/runs_rd.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "images": len(images),
        "rate_axis": "raw bpp: kept code bits + 4 bits per importance-map entry, before entropy coding",
        "machine": platform.machine(),
        "torch": torch.__version__,
        "runs": curves,
    }
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    for c in curves:
        print(
            c["run"],
            c["preset"],
            c["n"],
            c["step"],
            c["results"]["bpp"],
            c["results"]["psnr-rgb"],
            c.get("bd_rate_vs_first"),
        )


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 2)


if __name__ == "__main__":
    main()
