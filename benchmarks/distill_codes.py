"""Distil encoder-side refinement into the encoder: does an encoder taught the refined codes close the gap?

Sessions 22-23 trained the encoder alone on the usual loss and gained nothing, while 20 refinement
steps per image (cwic/refinement.py) buy 0.6-1.9 dB for the same decoder; 83-93 % of the bits
refinement flips have an encoder activation within 0.4-0.6, where the straight-through gradient is
biased (docs/session27/refine_one_step.json). This script tests a different training signal: the
refined codes of training crops as targets (binary cross-entropy on the kept bits), beside the
usual distortion, decoder frozen.

    python benchmarks/distill_codes.py generate --out runs/distill/targets.pt --minutes 28
    python benchmarks/distill_codes.py train --targets runs/distill/targets.pt --out runs/s27dist \
        --steps 6500 --minutes 78 --distill 4 --eval-every 500

Session 27 ran these and stopped the training at step 84,523 (docs/training.md, "Session 27"): the
encoder's agreement with the refined bits of its own training crops rose from 0.915 to 0.919 while
its Kodak quality fell.

`train` writes a run folder that `python -m cwic export --run OUT --which last` ships.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cwic import Codec
from cwic.checkpoint import load_checkpoint, save_train_state
from cwic.images import load_rgb
from cwic.models.network import Binarize, mask_from_levels, quantize_importance, top_group
from cwic.refinement import DEFAULT_METRICS, rd_slope, refine_codes
from cwic.training.data import (
    DEFAULT_KODAK_DIR,
    DEFAULT_TRAIN_DIR,
    QUICK_KODAK,
    VAL_PHOTOS,
    PatchSampler,
    center_crops,
    list_images,
    load_downscaled,
    split,
)
from cwic.training.distortion import distortion
from cwic.training.train import cpu_has_bf16, evaluate_quick


def generate(args) -> None:
    codec = Codec.load(args.checkpoint)
    model, config = codec.model, codec.config
    model.requires_grad_(False)
    bit_net = codec.entropy.float_bit_context()
    files_train, _ = split(list_images(args.data))
    sampler = PatchSampler([load_downscaled(f, args.patch) for f in files_train], args.patch)
    rng = np.random.default_rng(args.seed)
    rates = [lv["rate"] for lv in codec.levels]
    store = {"x": [], "rate": [], "bits": [], "q": [], "flipped": []}
    t0, last_save = time.time(), time.time()
    while time.time() - t0 < args.minutes * 60:
        x = torch.from_numpy(sampler.batch(rng, args.batch))
        rate = float(rates[rng.integers(len(rates))])
        with torch.no_grad():
            e, feats = model.analyze(x)
            q = quantize_importance(model.importance_map(feats, rate), config)
        mask = mask_from_levels(q, config)
        slope = rd_slope(codec.levels, rate, args.metrics)
        bits = refine_codes(model, bit_net, x, e, mask, top_group(q, config), rate, slope, args.metrics, args.steps)
        flipped = (((e > 0.5).float() != bits).float() * mask).sum() / mask.sum()
        store["x"].append((x * 255).round().to(torch.uint8))
        store["rate"].append(torch.full((args.batch,), rate))
        store["bits"].append(bits.to(torch.uint8))
        store["q"].append(q.to(torch.int8))
        store["flipped"].append(flipped.view(1))
        n = sum(len(b) for b in store["x"])
        print(
            json.dumps(
                {
                    "crops": n,
                    "rate": round(rate, 4),
                    "flipped": round(float(flipped), 4),
                    "s": round(time.time() - t0, 1),
                }
            ),
            flush=True,
        )
        if time.time() - last_save > 120:
            _write(store, args.out)
            last_save = time.time()
    _write(store, args.out)


def _write(store: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: torch.cat(v) for k, v in store.items()}, str(out) + ".tmp")
    Path(str(out) + ".tmp").replace(out)


def train(args) -> None:
    model, card, _ = load_checkpoint(args.checkpoint)
    config = model.config
    model.requires_grad_(False)
    model.encoder.requires_grad_(True)
    opt = torch.optim.Adam([p for p in model.encoder.parameters()], lr=args.lr)
    data = torch.load(args.targets)
    count = len(data["x"])
    files_train, files_val = split(list_images(args.data))
    val = torch.from_numpy(center_crops([load_downscaled(f, args.patch) for f in files_val[:VAL_PHOTOS]], args.patch))
    kodak = [load_rgb(args.kodak / n) for n in QUICK_KODAK]
    record = card.get("training", {})
    info = {
        "step": int(record.get("steps", 0)),
        "wall_seconds": float(record.get("wall_seconds", 0.0)),
        "sessions": list(record.get("sessions", []))
        + [
            {
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "script": "benchmarks/distill_codes.py train",
                "args": {k: str(v) for k, v in vars(args).items()},
                "crops": count,
            }
        ],
        "preset": card.get("preset"),
        "init_from": {"weights_id": card["weights_id"], "step": record.get("steps")},
        "global_batch": args.batch,
        "shards": 1,
        "encoder_only": True,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    log = (args.out / "log.jsonl").open("a")
    rng = np.random.default_rng(args.seed)
    amp = cpu_has_bf16()
    t0 = time.time()
    acc = {"loss": 0.0, "bce": 0.0, "agree": 0.0, "psnr": 0.0, "n": 0}
    for k in range(args.steps):
        if time.time() - t0 > args.minutes * 60:
            break
        lr = args.lr * min(1.0, (k + 1) / 50)
        lr = args.lr_end + (lr - args.lr_end) * 0.5 * (1 + math.cos(math.pi * k / args.steps))
        for g in opt.param_groups:
            g["lr"] = lr
        idx = torch.from_numpy(rng.choice(count, args.batch, replace=False))
        x = data["x"][idx].float() / 255
        target, q = data["bits"][idx].float(), data["q"][idx].long()
        mask = mask_from_levels(q, config)
        logits = model.encoder.to_codes(model.encoder.body(x * 2 - 1))
        bits = Binarize.apply(torch.sigmoid(logits))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            x_hat = model.synthesize(bits, mask).float()
        dist = distortion(args.distortion, x_hat, x)
        d_loss = (dist * (dist.detach().mean() / dist.detach().clamp(min=1e-12))).mean()
        bce = (F.binary_cross_entropy_with_logits(logits, target, reduction="none") * mask).sum() / mask.sum()
        loss = d_loss + args.distill * dist.detach().mean() * bce
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.encoder.parameters(), 1.0)
        opt.step()
        info["step"] += 1
        mse = ((x_hat.detach() - x) ** 2).mean(dim=(1, 2, 3))
        acc["loss"] += float(loss)
        acc["bce"] += float(bce)
        acc["agree"] += float((((logits > 0).float() == target).float() * mask).sum() / mask.sum())
        acc["psnr"] += float((-10 * torch.log10(mse)).mean())
        acc["n"] += 1
        if (k + 1) % 20 == 0:
            row = {"step": info["step"], "lr": lr, "s": round(time.time() - t0, 1)}
            row |= {key: round(v / acc["n"], 5) for key, v in acc.items() if key != "n"}
            acc = dict.fromkeys(acc, 0.0) | {"n": 0}
            log.write(json.dumps(row) + "\n")
            log.flush()
            print(json.dumps(row), flush=True)
        if (k + 1) % args.eval_every == 0 or k == 0:
            ev = evaluate_quick(model, val, kodak, torch.device("cpu"))
            log.write(json.dumps({"step": info["step"], "eval": ev}) + "\n")
            log.flush()
            print(f"step {info['step']}: kodak {ev['kodak']}", flush=True)
            model.train()
        if (k + 1) % 200 == 0:
            _save(model, opt, info, t0, args.out)
    _save(model, opt, info, t0, args.out)
    ev = evaluate_quick(model, val, kodak, torch.device("cpu"))
    log.write(json.dumps({"step": info["step"], "eval": ev}) + "\n")
    print(f"final step {info['step']}: kodak {ev['kodak']}", flush=True)


def _save(model, opt, info, t0, out) -> None:
    saved = dict(info, wall_seconds=info["wall_seconds"] + time.time() - t0)
    save_train_state(out, model, opt, saved)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("generate", "train"):
        s = sub.add_parser(name)
        s.add_argument("--checkpoint", type=Path, default=Path("checkpoints/cwic-slim"))
        s.add_argument("--data", type=Path, default=DEFAULT_TRAIN_DIR)
        s.add_argument("--patch", type=int, default=128)
        s.add_argument("--minutes", type=float, default=30)
        s.add_argument("--seed", type=int, default=27)
        s.add_argument("--threads", type=int, default=1)
    g = sub.choices["generate"]
    g.add_argument("--out", type=Path, required=True)
    g.add_argument("--batch", type=int, default=16)
    g.add_argument("--steps", type=int, default=20)
    g.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS))
    t = sub.choices["train"]
    t.add_argument("--targets", type=Path, required=True)
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--kodak", type=Path, default=DEFAULT_KODAK_DIR)
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--steps", type=int, default=3000, help="length of the cosine (stops earlier at --minutes)")
    t.add_argument("--lr", type=float, default=1e-4)
    t.add_argument("--lr-end", type=float, default=1e-6)
    t.add_argument("--distill", type=float, default=1.0, help="weight of the cross-entropy to the refined bits")
    t.add_argument("--distortion", default="mse+ssim+ms-ssim")
    t.add_argument("--eval-every", type=int, default=500)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.cmd == "generate":
        args.metrics = tuple(args.metrics)
        generate(args)
    else:
        train(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
