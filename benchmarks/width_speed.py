"""Cost of each width preset on this machine: training step time and 768x512 inference time.

Usage: python benchmarks/width_speed.py [--out docs/width_speed.json]
Training step = forward + backward + Adam on a batch of 8 random 128x128 crops (the default
recipe); inference = encoder (with importance map) and decoder on one 768x512 image. Medians
of a few repeats after one warm-up; run it on an otherwise idle machine.

A one-off study; its committed output is docs/width_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python benchmarks/...` from a checkout

from cwic.models.config import PRESETS  # noqa: E402
from cwic.models.network import CWICModel, mask_from_levels, quantize_importance  # noqa: E402


def median_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure(name: str, repeats: int) -> dict:
    torch.manual_seed(0)
    model = CWICModel(PRESETS[name])
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    x, r = torch.rand(8, 3, 128, 128), torch.rand(8)

    def train_step() -> None:
        out = model(x, r)
        loss = ((out["x_hat"] - x) ** 2).mean() + out["p"].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    img = torch.rand(1, 3, 512, 768)
    with torch.no_grad():
        e, feats = model.analyze(img)
        mask = mask_from_levels(quantize_importance(model.importance_map(feats, 0.3), model.config), model.config)
        bits = (e > 0.5).float()
        enc = median_time(lambda: model.importance_map(model.analyze(img)[1], 0.3), repeats)
        dec = median_time(lambda: model.synthesize(bits, mask), repeats)
    return {
        "preset": name,
        "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
        "train_step_s": round(median_time(train_step, repeats), 4),
        "encode_768x512_s": round(enc, 4),
        "decode_768x512_s": round(dec, 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=Path("docs/width_speed.json"))
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rows = [measure(name, args.repeats) for name in ("tiny", "slim", "medium", "paper")]
    result = {
        "command": "python benchmarks/width_speed.py",
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "load_average_at_start": os.getloadavg()[0],
        "presets": rows,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
