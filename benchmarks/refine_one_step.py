"""Can one gradient of the refinement objective replace 20 refinement steps (the 1 s encode budget)?

cwic.refinement takes 20 Adam steps on the code logits (16 s of CPU for a Kodak image). The cheapest
version that could fit the budget is one straight-through gradient of J = D_dB + slope * R with
respect to the bits, then flipping the bits whose first-order gain is largest, among those near
the threshold. This script measures J and the metrics of such one-shot flips (several thresholds,
the best kept, as an encoder could afford a few forward passes), against the encoder's codes and
against what the codec's refinement (20 Adam steps) does to the same file, and against a few such
steps repeated (greedy: is it a cheaper refinement per CPU second than Adam?).

    python benchmarks/refine_one_step.py --out docs/session27/refine_one_step.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from cwic import Codec
from cwic.entropy_models.context_model import code_bits, rate_plane_value
from cwic.evaluation.metrics import quality
from cwic.images import load_rgb
from cwic.models.network import mask_from_levels, quantize_importance, top_group
from cwic.refinement import DEFAULT_METRICS, DEFAULT_STEPS, distortion_db, rd_slope
from cwic.training.data import DEFAULT_KODAK_DIR

NEAR = (0.05, 0.1, 0.2)  # |e - 0.5| below which a bit may flip
METRICS = ("psnr", "ssim", "ms_ssim")
GREEDY_STEPS = 5  # at most; each a gradient and two flip sets (1 % and 3 % of the candidates within 0.1)
SHARE = (0.01, 0.05, 0.25, 1.0)  # share of the candidates (largest first-order gain first) flipped


def one_image(codec: Codec, rgb: np.ndarray, level: int) -> dict:
    xp, e, feats, _ = codec._analyze(rgb, None)
    rate = codec.rate_of(level)
    q = quantize_importance(codec.model.importance_map(feats, rate)[0, 0], codec.config)
    mask = mask_from_levels(q[None, None], codec.config)
    t, rint = top_group(q, codec.config).view(1, 1, *q.shape), torch.tensor([rate_plane_value(rate)])
    net, slope, pixels = (
        codec.entropy.float_bit_context(),
        rd_slope(codec.levels, rate, DEFAULT_METRICS),
        xp[0, 0].numel(),
    )

    def objective(bits: torch.Tensor) -> torch.Tensor:
        x_hat = codec.model.synthesize(bits, mask)
        return distortion_db(DEFAULT_METRICS, x_hat, xp) + slope * code_bits(net, bits, t, rint) / pixels

    def metrics(bits: torch.Tensor) -> dict:
        with torch.no_grad():
            y = codec.model.synthesize(bits, mask)[0, :, : rgb.shape[0], : rgb.shape[1]].clamp(0, 1)
            return quality(rgb, (y.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))

    def flip_gain(cur: torch.Tensor) -> torch.Tensor:
        """First-order decrease of J when each kept bit of `cur` flips (one straight-through gradient)."""
        bits = cur.clone().requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(objective(bits).sum(), [bits])
        return -grad * (1 - 2 * cur) * mask

    def flipped(cur: torch.Tensor, gain: torch.Tensor, near: float, share: float) -> torch.Tensor:
        """`cur` with the top `share` of the gaining bits within `near` of the threshold flipped."""
        cand = (gain > 0) & ((e - 0.5).abs() < near)
        values = gain[cand].sort(descending=True).values
        return torch.where(cand & (gain >= values[max(1, int(share * len(values))) - 1]), 1 - cur, cur)

    start = (e > 0.5).float()
    cpu = time.process_time()
    gain = flip_gain(start)
    gradient_cpu_s = time.process_time() - cpu
    with torch.no_grad():
        j0 = float(objective(start))
        tries = []
        for near in NEAR:
            for share in SHARE:
                tried = flipped(start, gain, near, share)
                flips = int((tried != start).sum())
                tries.append({"near": near, "share": share, "flips": flips, "dJ": float(objective(tried)) - j0})
    best = min(tries, key=lambda r: r["dJ"])
    before, after = metrics(start), metrics(flipped(start, gain, best["near"], best["share"]))
    cpu = time.process_time()
    adam = codec._refine(xp, e, q, rate, DEFAULT_STEPS, DEFAULT_METRICS)[None]  # what `refine=20` codes
    adam_cpu_s = time.process_time() - cpu
    changed = (adam != start) & mask.bool()
    with torch.no_grad():
        adam_dj, by_adam = float(objective(adam)) - j0, metrics(adam)
    cpu, cur, j_cur, greedy = time.process_time(), start, j0, []
    for _ in range(GREEDY_STEPS):  # repeated one-step flips of small sets, while J falls
        gain = flip_gain(cur)
        with torch.no_grad():
            trials = [flipped(cur, gain, 0.1, f) for f in (0.01, 0.03)]
            j_best, best_trial = min(((float(objective(b)), b) for b in trials), key=lambda p: p[0])
        if j_best >= j_cur:
            break
        cur, j_cur = best_trial, j_best
        greedy.append(round(j_cur - j0, 4))
    greedy_cpu_s = time.process_time() - cpu
    return {
        "level": level,
        "greedy": {"dJ_per_step": greedy, "cpu_s": round(greedy_cpu_s, 2)},
        "gradient_cpu_s": round(gradient_cpu_s, 2),
        "kept_bits": int(mask.sum()),
        "tries": tries,
        "best": best,
        "best_gain": {k: round(after[k] - before[k], 4) for k in METRICS},
        "kept_bits_within_0.1": round(float(((e - 0.5).abs() < 0.1)[mask.bool()].float().mean()), 4),
        "adam": {
            "steps": DEFAULT_STEPS,
            "cpu_s": round(adam_cpu_s, 2),
            "dJ": round(adam_dj, 4),
            "flipped_share_of_kept": round(float(changed.sum() / mask.sum()), 4),
            "flips_within_0.1": round(float(((e - 0.5).abs() < 0.1)[changed].float().mean()), 4),
            "gain": {k: round(by_adam[k] - before[k], 4) for k in METRICS},
        },
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=Path("checkpoints/cwic-slim"))
    p.add_argument("--kodak", type=Path, default=DEFAULT_KODAK_DIR)
    p.add_argument("--images", nargs="+", default=["kodim15", "kodim01", "kodim07"])
    p.add_argument("--levels", type=int, nargs="+", default=[2, 4])
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    codec = Codec.load(args.checkpoint)
    rows = []
    for name in args.images:
        rgb = load_rgb(args.kodak / f"{name}.png")
        for level in args.levels:
            rows.append({"image": name} | one_image(codec, rgb, level))
            r = rows[-1]
            print(name, level, r["gradient_cpu_s"], r["best"], r["best_gain"], r["adam"], r["greedy"], flush=True)
    summary = {
        "tries_that_lowered_J": sum(t["dJ"] < 0 for r in rows for t in r["tries"]),
        "tries": sum(len(r["tries"]) for r in rows),
        "mean_gradient_cpu_s": round(float(np.mean([r["gradient_cpu_s"] for r in rows])), 2),
        "mean_best_gain": {k: round(float(np.mean([r["best_gain"][k] for r in rows])), 4) for k in METRICS},
        "mean_adam_gain": {k: round(float(np.mean([r["adam"]["gain"][k] for r in rows])), 4) for k in METRICS},
        "mean_adam_cpu_s": round(float(np.mean([r["adam"]["cpu_s"] for r in rows])), 2),
    }
    out = {
        "command": "python benchmarks/refine_one_step.py " + " ".join(argv or []),
        "threads": 1,
        "checkpoint": codec.checkpoint_id,
        "objective": list(DEFAULT_METRICS),
        "summary": summary,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
