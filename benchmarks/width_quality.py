"""Quality per CPU time of the width presets: equal-time training runs from scratch, then one evaluation.

Usage: python benchmarks/width_quality.py [--minutes 8] [--presets tiny slim medium] [--out docs/width_quality.json]
Each preset trains with the shipped recipe (`python -m cwic train` defaults, except a 300-step
first stage so every preset reaches the importance map inside the budget) for the same wall time
on an otherwise idle machine, into runs/width-<preset>; then the quick evaluation of `cwic train`
(validation crops and 3 Kodak images at r = 0.1, 0.3, 0.6) scores its last weights. Process CPU
time is recorded with each run. Short budgets measure early learning speed, not final quality.

A one-off study; its committed output is docs/width_quality.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python benchmarks/...` from a checkout

from cwic.checkpoint import load_train_state  # noqa: E402
from cwic.images import load_rgb  # noqa: E402
from cwic.models.config import PRESETS  # noqa: E402
from cwic.models.network import CWICModel  # noqa: E402
from cwic.training.data import (  # noqa: E402
    DEFAULT_KODAK_DIR,
    DEFAULT_TRAIN_DIR,
    center_crops,
    list_images,
    load_downscaled,
    split,
)
from cwic.training.train import QUICK_KODAK, evaluate_quick  # noqa: E402
from cwic.training.train import main as train_main  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=8.0)
    ap.add_argument("--presets", nargs="+", default=["tiny", "slim", "medium"], choices=sorted(PRESETS))
    ap.add_argument("--runs", type=Path, default=REPO / "runs")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "width_quality.json")
    args = ap.parse_args()
    val_files = split(list_images(DEFAULT_TRAIN_DIR))[1][:16]
    val = torch.from_numpy(center_crops([load_downscaled(f, 128) for f in val_files], 128))
    kodak = [load_rgb(DEFAULT_KODAK_DIR / n) for n in QUICK_KODAK]
    rows = []
    for name in args.presets:
        out = args.runs / f"width-{name}"
        cpu0, wall0 = time.process_time(), time.time()
        argv = ["--out", str(out), "--preset", name, "--minutes", str(args.minutes), "--uniform-steps", "300"]
        train_main(argv + ["--eval-every", "1000000"])
        cpu, wall = time.process_time() - cpu0, time.time() - wall0
        model = CWICModel(PRESETS[name])
        info = load_train_state(out, model, torch.optim.Adam(model.parameters()))
        ev = evaluate_quick(model, val, kodak, torch.device("cpu"))
        rows.append(
            {
                "preset": name,
                "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
                "steps": info["step"],
                "train_wall_s": round(wall, 1),
                "train_cpu_s": round(cpu, 1),
                "val": ev["val"],
                "kodak": ev["kodak"],
                "val_psnr_mean": round(float(np.mean([v["psnr"] for v in ev["val"].values()])), 3),
                "val_raw_bpp_mean": round(float(np.mean([v["raw_bpp"] for v in ev["val"].values()])), 4),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    result = {
        "command": f"python benchmarks/width_quality.py --minutes {args.minutes:g}",
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "runs": rows,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
