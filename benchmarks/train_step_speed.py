"""CPU time of one training step, fp32 against bf16 autocast and channels_last, and what bf16 does to the gradient.

Usage: python benchmarks/train_step_speed.py [--preset slim] [--batch 32] [--steps 6] [--rounds 3]
           [--checkpoint checkpoints/cwic-slim] [--out docs/train_step_speed.json]
Speed, one thread: every variant runs the training pass of `cwic train` (forward, MSE, backward,
Adam) on the same random 128x128 crops; the variants take turns round by round, so a neighbour's
load falls on all of them alike, and each reports the median process CPU time per step over its
rounds (the first step of each round is a warm-up and not counted). Under autocast only the
decoder runs in bf16 (`CWICModel.forward`).
Fidelity: on 16 training crops, the shipped checkpoint's gradient in bf16 against float32 on the
same batch (cosine), for the decoder-only bf16 that training uses and for the whole net in bf16
(the encoder too, as before), with float32 on a second batch as the scale of ordinary batch noise.

Its committed output is docs/train_step_speed.json.
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

from cwic.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint  # noqa: E402
from cwic.models.config import PRESETS  # noqa: E402
from cwic.models.network import Binarize, CWICModel, ImportanceMask  # noqa: E402
from cwic.training.data import DEFAULT_TRAIN_DIR, PatchSampler, list_images  # noqa: E402
from cwic.training.train import cpu_has_bf16  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {"fp32": (False, False), "channels_last": (False, True), "bf16": (True, False), "bf16+cl": (True, True)}


def step_time(model, opt, x, rate, bf16: bool, steps: int) -> float:
    """Median CPU seconds per training step after one warm-up step."""
    times = []
    for i in range(steps + 1):
        t = time.process_time()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(x, rate)
        loss = ((out["x_hat"].float() - x) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i:
            times.append(time.process_time() - t)
    return float(np.median(times))


def crops(sampler: PatchSampler, rng: np.random.Generator, size: int) -> torch.Tensor:
    """A batch as `cwic train` draws it (random crops and flips of the training photos)."""
    return torch.from_numpy(sampler.batch(rng, size))


def whole_net_bf16(model: CWICModel, x: torch.Tensor, rate: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The training pass with the encoder and importance net under autocast too (the old behaviour)."""
    with torch.autocast("cpu", dtype=torch.bfloat16):
        e, feats = model.analyze(x)
        p = model.importance_map(feats, rate)
        bits = Binarize.apply(e.float())
        return model.synthesize(bits, ImportanceMask.apply(p, model.config)), bits


def gradient(model: CWICModel, x: torch.Tensor, rate: torch.Tensor, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(flattened MSE gradient, bits) of one batch in mode fp32, bf16 (decoder) or bf16-all."""
    model.zero_grad()
    if mode == "bf16-all":
        x_hat, bits = whole_net_bf16(model, x, rate)
    else:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bf16"):
            out = model(x, rate)
        x_hat, bits = out["x_hat"], out["bits"]
    ((x_hat.float() - x) ** 2).mean().backward()
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]), bits.detach()


def fidelity(checkpoint: Path, sampler: PatchSampler) -> dict:
    model, _, _ = load_checkpoint(checkpoint)
    model.train()
    rng = np.random.default_rng(0)
    a, b, rate = crops(sampler, rng, 16), crops(sampler, rng, 16), torch.linspace(0.05, 1, 16)
    ref, ref_bits = gradient(model, a, rate, "fp32")
    cos = lambda g: round(float(torch.nn.functional.cosine_similarity(ref, g, dim=0)), 4)  # noqa: E731
    out = {"checkpoint": str(checkpoint), "fp32_other_batch_cosine": cos(gradient(model, b, rate, "fp32")[0])}
    for mode in ("bf16", "bf16-all"):
        g, bits = gradient(model, a, rate, mode)
        out[f"{mode}_cosine"] = cos(g)
        out[f"{mode}_norm_ratio"] = round(float(g.norm() / ref.norm()), 3)
        out[f"{mode}_bits_flipped"] = round(float((bits != ref_bits).float().mean()), 5)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="slim", choices=sorted(PRESETS))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "train_step_speed.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    sampler = PatchSampler.from_files(list_images(DEFAULT_TRAIN_DIR)[:64], 128)
    x = crops(sampler, np.random.default_rng(1), args.batch)
    rate = torch.rand(args.batch)
    setups = {}
    for name, (bf16, cl) in VARIANTS.items():
        model = CWICModel(PRESETS[args.preset])
        xx = x.contiguous(memory_format=torch.channels_last) if cl else x
        if cl:
            model = model.to(memory_format=torch.channels_last)
        setups[name] = (model, torch.optim.Adam(model.parameters(), lr=1e-5), xx, bf16)
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for r in range(args.rounds):
        for name, (model, opt, xx, bf16) in setups.items():
            times[name].append(step_time(model, opt, xx, rate, bf16, args.steps))
            print(f"round {r + 1} {name}: {times[name][-1]:.2f} s/step", flush=True)
    base = float(np.median(times["fp32"]))
    rows = [
        {
            "variant": name,
            "cpu_s_per_step": round(float(np.median(t)), 3),
            "vs_fp32": round(float(np.median(t)) / base, 3),
        }
        for name, t in times.items()
    ]
    out = {
        "command": "python benchmarks/" + Path(__file__).name + " " + " ".join(argv or sys.argv[1:]),
        "preset": args.preset,
        "batch": args.batch,
        "patch": 128,
        "cpu": f"{platform.machine()} ({platform.processor() or 'cpu'}), 1 thread",
        "cpu_bf16": cpu_has_bf16(),  # without AVX512-BF16 / AMX, bf16 is emulated and slower
        "torch": torch.__version__,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "rows": rows,
        "gradient_fidelity": fidelity(args.checkpoint, sampler),
    }
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out["gradient_fidelity"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
