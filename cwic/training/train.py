"""`python -m cwic train`: resumable training of the variable-rate content-weighted model.

Loss per sample: D + gamma * max(mean(p) - r, 0) + gamma_under * max(r - mean(p), 0), r drawn
per sample (`--rate-min/max/skew`) and fed to the importance network. The first term is the
paper's rate hinge; the weaker second one keeps a rate-conditioned map from collapsing to p = 0
early on. With `--mean-shift` the map's mean is r by construction and both terms are zero.
Stage 1 (`--uniform-steps`) replaces every importance map by a random
constant map (the two-stage recipe: the autoencoder learns first, without the map); after it,
`--uniform-frac` of each batch keeps uniform maps so the same decoder serves the ablation.
D is MSE, or 1 - MS-SSIM with `--distortion ms-ssim` (a fine-tune for the SSIM metrics).
With `--rate-weight per-db` each sample's D is divided by its own (detached) value times the batch
mean, so every sample counts by its relative error (equal weight per dB) instead of low rates
dominating; `--full-rate-frac` draws that share of samples at r = 1 (every channel kept).
`--decay-steps` makes the learning rate fall along one cosine to `--lr-end`; `--ema` keeps an
exponential moving average of the weights, which evaluation, `best/` and `export` use.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from ..checkpoint import load_checkpoint, load_train_state, save_checkpoint, save_train_state
from ..evaluation.metrics import quality
from ..images import load_rgb
from ..models.config import PRESETS, ModelConfig
from ..models.network import CWICModel, raw_bpp, reconstruct
from .data import DEFAULT_KODAK_DIR, DEFAULT_TRAIN_DIR, PatchSampler, center_crops, list_images, split
from .distortion import DISTORTIONS, distortion
from .growth import grow_codes, widen

EVAL_RATES = (0.1, 0.3, 0.6)
QUICK_KODAK = ("kodim01.png", "kodim07.png", "kodim23.png")
RD_SLOPE = 12.0  # dB per bpp: turns (PSNR, bpp) pairs into one score for picking the best step


def build_parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = p or argparse.ArgumentParser(prog="cwic train", description=__doc__)
    p.add_argument("--data", type=Path, default=DEFAULT_TRAIN_DIR, help="folder of training photos")
    p.add_argument("--kodak", type=Path, default=DEFAULT_KODAK_DIR, help="Kodak folder for quick evaluation")
    p.add_argument("--out", type=Path, required=True, help="run folder (state, log, best checkpoint)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/train_state.*")
    p.add_argument(
        "--init-from",
        type=Path,
        default=None,
        help="start a new OUT from a shipped checkpoint folder: its weights, step count and training record "
        "continue (the optimizer starts afresh with --warmup); for sessions whose run folder is gone",
    )
    p.add_argument(
        "--grow-n",
        type=int,
        default=None,
        help="with --init-from: widen the code to this many maps (e.g. 128), decoding exactly as before at first",
    )
    p.add_argument(
        "--widen",
        choices=sorted(PRESETS),
        default=None,
        help="with --init-from: widen the layers to this preset's widths, computing exactly as before at first",
    )
    p.add_argument("--preset", choices=sorted(PRESETS), default="slim")
    p.add_argument("--minutes", type=float, default=None, help="wall-clock budget of this invocation")
    p.add_argument("--steps", type=int, default=None, help="stop at this total step count")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--patch", type=int, default=128, help="crop side, a multiple of 8")
    p.add_argument("--lr", type=float, default=3e-4, help="Adam learning rate (overrides a resumed one)")
    p.add_argument(
        "--decay-steps",
        type=int,
        default=None,
        help="cosine decay of the lr from --lr to --lr-end over this many steps, counted from the step where "
        "a run first used it (kept on --resume)",
    )
    p.add_argument("--lr-end", type=float, default=1e-6, help="final lr of --decay-steps")
    p.add_argument(
        "--ema",
        type=float,
        default=0.0,
        help="decay of an exponential moving average of the weights (e.g. 0.999; 0 = off) used for evaluation, "
        "best/ and export",
    )
    p.add_argument("--warmup", type=int, default=200, help="linear lr warm-up steps of a fresh run")
    p.add_argument("--gamma", type=float, default=2.0, help="weight of the rate hinge")
    p.add_argument(
        "--gamma-under",
        type=float,
        default=0.5,
        help="weight of the lower hinge max(r - mean(p), 0) that keeps the map from collapsing",
    )
    p.add_argument("--rate-min", type=float, default=0.02)
    p.add_argument("--rate-max", type=float, default=0.85)
    p.add_argument(
        "--rate-skew",
        type=float,
        default=1.0,
        help="r = rate_min + (rate_max - rate_min) * u**skew, u ~ U(0, 1): below 1 draws high rates more often, "
        "so the last code channels (kept only at high r) train more",
    )
    p.add_argument(
        "--full-rate-frac", type=float, default=0.0, help="share of samples drawn at r = 1 (every channel kept)"
    )
    p.add_argument(
        "--rate-weight",
        choices=("none", "per-db"),
        default="none",
        help="per-db: weight each sample's distortion by the batch mean over its own value (equal weight per dB)",
    )
    p.add_argument("--uniform-steps", type=int, default=1000, help="stage-1 steps with uniform maps only")
    p.add_argument("--uniform-frac", type=float, default=0.125, help="share of uniform maps after stage 1")
    p.add_argument(
        "--detach-importance",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="stop the rate terms' gradients at the encoder features (see docs/training.md)",
    )
    p.add_argument(
        "--mean-shift",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="shift every importance map so that mean(p) = r (the model's config keeps it; default: as loaded)",
    )
    p.add_argument("--distortion", choices=DISTORTIONS, default="mse", help="D in the loss (see above)")
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--save-minutes", type=float, default=1.0, help="train-state save interval")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.patch % 8:
        raise SystemExit("--patch must be a multiple of 8")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    dev = torch.device(args.device)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    resuming = args.resume and (out / "train_state.json").is_file()
    if (args.grow_n or args.widen) and (resuming or not args.init_from):
        raise SystemExit("--grow-n and --widen start a new run: use them with --init-from, not on a resumed one")
    if resuming:
        model = CWICModel(ModelConfig.from_dict(json.loads((out / "train_state.json").read_text())["config"]))
    elif args.init_from:
        model, init_card, _ = load_checkpoint(args.init_from)  # float32 weights of the shipped checkpoint
        if args.grow_n:
            model = grow_codes(model, args.grow_n)
        if args.widen:
            model = widen(model, replace(PRESETS[args.widen], n=model.config.n, levels=model.config.levels))
    else:
        model = CWICModel(PRESETS[args.preset])
    if args.mean_shift is not None:
        model.config = replace(model.config, mean_shift=args.mean_shift)
    model = model.to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    info = {
        "step": 0,
        "wall_seconds": 0.0,
        "best_score": -math.inf,
        "np_rng": None,
        "sessions": [],
        "preset": args.preset,
    }
    if resuming:
        info.update(load_train_state(out, model, opt))
    elif args.init_from:
        record = init_card.get("training", {})
        info.update(
            step=int(record.get("steps", 0)),
            wall_seconds=float(record.get("wall_seconds", 0.0)),
            sessions=list(record.get("sessions", [])),
            preset=args.widen or init_card.get("preset"),
            init_from={"weights_id": init_card["weights_id"], "step": record.get("steps")}
            | ({"grown_from_n": init_card["config"]["n"]} if args.grow_n else {})
            | ({"widened_from": init_card.get("preset")} if args.widen else {}),
        )
    if args.decay_steps and not info.get("schedule"):
        info["schedule"] = {"start": info["step"], "steps": args.decay_steps}
    rng = np.random.default_rng([args.seed, info["step"]] if args.init_from and not resuming else args.seed)
    if info["np_rng"]:
        rng.bit_generator.state = info["np_rng"]
    info["sessions"] = info["sessions"] + [_session(args)]

    files_train, files_val = split(list_images(args.data))
    sampler = PatchSampler(files_train, args.patch)
    val = torch.from_numpy(center_crops(files_val[:16], args.patch))
    kodak = [load_rgb(args.kodak / n) for n in QUICK_KODAK if (args.kodak / n).is_file()]
    print(
        f"cwic train: {'resumed' if resuming else info['preset']}, "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params, "
        f"{len(sampler.images)} train / {len(files_val)} val photos, step {info['step']}, device {dev}, "
        f"{torch.get_num_threads()} threads",
        flush=True,
    )

    stop = {"flag": False}
    previous = {sig: signal.signal(sig, lambda *_: stop.update(flag=True)) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        ema = WeightAverage(model, args.ema, out if resuming else None) if args.ema else None
        return _loop(_Run(args, model, opt, info, rng, sampler, val, kodak, dev, ema), stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@dataclass
class _Run:
    """What the loop works on, set up by `main`."""

    args: argparse.Namespace
    model: CWICModel
    opt: torch.optim.Optimizer
    info: dict
    rng: np.random.Generator
    sampler: PatchSampler
    val: torch.Tensor
    kodak: list[np.ndarray]
    dev: torch.device
    ema: WeightAverage | None


class WeightAverage:
    """Exponential moving average of the weights, with the usual warm-up min(decay, (1+t)/(10+t)).

    Saved beside the train state (`ema.safetensors`) so `--resume` restores it.
    """

    FILE = "ema.safetensors"

    def __init__(self, model: torch.nn.Module, decay: float, resume_from: Path | None = None) -> None:
        self.model, self.decay, self.updates = model, decay, 0
        self.params = [p.detach().clone() for p in model.parameters()]
        if resume_from is not None and (resume_from / self.FILE).is_file():
            saved = load_file(str(resume_from / self.FILE))
            self.params = [saved[str(i)].to(p.device) for i, p in enumerate(self.params)]
            self.updates = int(saved["updates"])

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self.params, [p.detach() for p in self.model.parameters()], 1 - d)

    @torch.no_grad()
    def copy_to_model(self) -> None:
        for p, a in zip(self.model.parameters(), self.params, strict=True):
            p.copy_(a)

    @contextmanager
    def swapped_in(self) -> Iterator[None]:
        """The model computes with the averaged weights inside the block."""
        live = [p.detach().clone() for p in self.model.parameters()]
        self.copy_to_model()
        try:
            yield
        finally:
            with torch.no_grad():
                for p, v in zip(self.model.parameters(), live, strict=True):
                    p.copy_(v)

    def save(self, folder: Path) -> None:
        tensors = {str(i): p.contiguous().cpu() for i, p in enumerate(self.params)}
        tensors["updates"] = torch.tensor(self.updates)
        save_file(tensors, str(folder / (self.FILE + ".tmp")))
        (folder / (self.FILE + ".tmp")).replace(folder / self.FILE)


def scheduled_lr(args: argparse.Namespace, info: dict, step: int, first_step: int, fresh: bool) -> float:
    """Warm-up of a fresh optimizer, then constant --lr or one cosine from --lr to --lr-end."""
    lr = args.lr
    sched = info.get("schedule")
    if sched:
        t = min(1.0, max(0.0, (step - sched["start"]) / sched["steps"]))
        lr = args.lr_end + (args.lr - args.lr_end) * 0.5 * (1 + math.cos(math.pi * t))
    return lr * min(1.0, (step - first_step) / args.warmup) if fresh else lr


def _loop(run: _Run, stop: dict) -> int:
    """The training loop proper; saves the train state on exit, every --save-minutes and at SIGTERM."""
    args, model, opt, info, rng, dev = run.args, run.model, run.opt, run.info, run.rng, run.dev
    config, out = model.config, args.out
    first_step = info["step"]  # warm-up counts from here when the optimizer starts afresh
    fresh_optimizer = not opt.state
    log = (out / "log.jsonl").open("a")

    start = time.time()
    wall0 = info["wall_seconds"]
    cpu_start, cpu0 = time.process_time(), info.get("cpu_seconds", 0.0)
    last_save = start
    acc: dict[str, float] = {}
    bar = tqdm(total=args.steps, initial=info["step"], dynamic_ncols=True, mininterval=2.0)
    model.train()
    while not stop["flag"]:
        if args.steps is not None and info["step"] >= args.steps:
            break
        if args.minutes is not None and time.time() - start >= args.minutes * 60:
            break
        step = info["step"] + 1
        lr = scheduled_lr(args, info, step, first_step, fresh_optimizer)
        for g in opt.param_groups:
            g["lr"] = lr
        x = torch.from_numpy(run.sampler.batch(rng, args.batch)).to(dev)
        u = rng.uniform(0, 1, args.batch) ** args.rate_skew
        r = args.rate_min + (args.rate_max - args.rate_min) * u
        if args.full_rate_frac:
            r = np.where(rng.random(args.batch) < args.full_rate_frac, 1.0, r)
        rate = torch.from_numpy(r.astype(np.float32)).to(dev)
        use_uniform = (
            np.ones(args.batch, bool) if step <= args.uniform_steps else rng.random(args.batch) < args.uniform_frac
        )
        uniform = torch.from_numpy(np.where(use_uniform, rng.uniform(0, 1, args.batch), np.nan).astype(np.float32)).to(
            dev
        )
        res = model(x, rate, uniform, detach_importance=args.detach_importance)
        dist = distortion(args.distortion, res["x_hat"], x)
        mse = dist.detach() if args.distortion == "mse" else ((res["x_hat"].detach() - x) ** 2).mean(dim=(1, 2, 3))
        mean_p = res["p"].mean(dim=(1, 2, 3))
        learned = torch.from_numpy(~use_uniform).to(dev)
        over, under = torch.clamp(mean_p - rate, min=0), torch.clamp(rate - mean_p, min=0)
        if args.rate_weight == "per-db":
            dist = dist * (dist.detach().mean() / dist.detach().clamp(min=1e-12))
        loss = (dist + (args.gamma * over + args.gamma_under * under) * learned).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if run.ema:
            run.ema.update()
        info["step"] = step
        bpp = float(res["mask"].detach().mean()) * config.n / 64
        stats = {"loss": loss.item(), "psnr": float((-10 * torch.log10(mse)).mean()), "raw_bpp": bpp}
        if (~use_uniform).any():
            sel = torch.from_numpy(~use_uniform)
            stats["p_minus_r"] = float((mean_p.detach().cpu() - rate.cpu())[sel].mean())
        for k, v in stats.items():
            acc[k] = acc.get(k, 0.0) + v
        acc["n"] = acc.get("n", 0) + 1
        bar.update(1)
        if step % 20 == 0:
            avg = {k: v / acc["n"] for k, v in acc.items() if k != "n"}
            bar.set_postfix(
                loss=f"{avg['loss']:.4f}",
                psnr=f"{avg['psnr']:.2f}",
                bpp=f"{avg['raw_bpp']:.3f}",
                dp=f"{avg.get('p_minus_r', float('nan')):+.3f}",
            )
            info["wall_seconds"] = wall0 + time.time() - start
            info["cpu_seconds"] = cpu0 + time.process_time() - cpu_start
            _log(
                log,
                {
                    "step": step,
                    "lr": lr,
                    "wall_s": round(info["wall_seconds"], 1),
                    "cpu_s": round(info["cpu_seconds"], 1),
                    **{k: round(v, 5) for k, v in avg.items()},
                },
            )
            acc = {}
        if step % args.eval_every == 0:
            info["wall_seconds"] = wall0 + time.time() - start
            with run.ema.swapped_in() if run.ema else nullcontext():
                ev = evaluate_quick(model, run.val, run.kodak, dev)
                _log(log, {"step": step, "wall_s": round(info["wall_seconds"], 1), "eval": ev})
                tqdm.write(f"step {step}: val {ev['val']}  kodak {ev['kodak']}")
                if ev["score"] > info["best_score"]:
                    info["best_score"] = ev["score"]
                    save_checkpoint(out / "best", model, _card(args, config, info, ev))
            model.train()
        if time.time() - last_save >= args.save_minutes * 60:
            _save(run, wall0 + time.time() - start, cpu0 + time.process_time() - cpu_start)
            last_save = time.time()
    bar.close()
    _save(run, wall0 + time.time() - start, cpu0 + time.process_time() - cpu_start)
    print(f"saved step {info['step']} ({info['wall_seconds'] / 60:.1f} min in total) to {out}", flush=True)
    return 0


def _save(run: _Run, wall_seconds: float, cpu_seconds: float) -> None:
    run.info.update(wall_seconds=wall_seconds, cpu_seconds=cpu_seconds)
    save_train_state(run.args.out, run.model, run.opt, dict(run.info, np_rng=run.rng.bit_generator.state))
    if run.ema:
        run.ema.save(run.args.out)


@torch.no_grad()
def evaluate_quick(model: CWICModel, val: torch.Tensor, kodak: list[np.ndarray], dev: torch.device) -> dict:
    """Validation crops and a few Kodak images at EVAL_RATES: PSNR, SSIM, MS-SSIM, raw bpp."""
    model.eval()
    out: dict = {"val": {}, "kodak": {}}
    scores = []
    for r in EVAL_RATES:
        x_hat, _, mask = reconstruct(model, val.to(dev), r)
        mse = ((x_hat - val.to(dev)) ** 2).mean(dim=(1, 2, 3))
        v_psnr = float((-10 * torch.log10(mse)).mean())
        v_bpp = raw_bpp(mask, val.shape[-2:])
        out["val"][str(r)] = {"psnr": round(v_psnr, 3), "raw_bpp": round(v_bpp, 4)}
        scores.append(v_psnr - RD_SLOPE * v_bpp)
        rows = []
        for img in kodak:
            x = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float().div(255).to(dev)
            y, _, m = reconstruct(model, x, r)
            rec = (y[0].permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
            q = quality(img, rec)
            rows.append((q["psnr"], q["ssim"], q["ms_ssim"], raw_bpp(m, img.shape[:2])))
        if rows:
            out["kodak"][str(r)] = {
                k: round(float(np.mean([row[i] for row in rows])), 4)
                for i, k in enumerate(("psnr", "ssim", "ms_ssim", "raw_bpp"))
            }
    out["score"] = round(float(np.mean(scores)), 4)
    return out


def _card(args: argparse.Namespace, config: ModelConfig, info: dict, ev: dict) -> dict:
    return {
        "format": "cwic-checkpoint/1",
        "preset": info.get("preset"),
        "training": {
            "steps": info["step"],
            "wall_seconds": round(info["wall_seconds"], 1),
            "sessions": info["sessions"],
            "data": str(args.data.name),
            "init_from": info.get("init_from"),
            "recipe": recipe(config, info["sessions"]),
        },
        "quick_eval": ev,
    }


def recipe(config: ModelConfig, sessions: list[dict]) -> str:
    """The loss in one line, for model cards (the arguments of every session are recorded beside it)."""
    tuned = any(s.get("args", {}).get("distortion") == "ms-ssim" for s in sessions)
    text = ("D" if tuned else "MSE") + (
        " + gamma*max(mean(p)-r,0) + gamma_under*max(r-mean(p),0), "
        "r = rate_min + (rate_max-rate_min)*U(0,1)**rate_skew fed to the importance net"
    )
    if tuned:
        text += "; D = 1 - MS-SSIM in the sessions run with --distortion ms-ssim, MSE in the others"
    return text + ("; p shifted so that mean(p) = r (mean_shift): the hinges are zero" if config.mean_shift else "")


def _session(args: argparse.Namespace) -> dict:
    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": platform.node(),
        "cpu_count": torch.get_num_threads(),
        "device": args.device,
        "cuda": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None,
        "args": {k: str(v) for k, v in vars(args).items()},
    }


def _log(fh, obj: dict) -> None:
    fh.write(json.dumps(obj) + "\n")
    fh.flush()
