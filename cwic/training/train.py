"""`python -m cwic train`: resumable training of the variable-rate content-weighted model.

Loss per sample: D + gamma * max(mean(p) - r, 0) + gamma_under * max(r - mean(p), 0), r drawn
per sample (`--rate-min/max/skew`) and fed to the importance network. The first term is the
paper's rate hinge; the weaker second one keeps a rate-conditioned map from collapsing to p = 0
early on. With `--mean-shift` the map's mean is r by construction and both terms are zero.
Stage 1 (`--uniform-steps`) replaces every importance map by a random
constant map (the two-stage recipe: the autoencoder learns first, without the map); after it,
`--uniform-frac` of each batch keeps uniform maps so the same decoder serves the ablation.
D is MSE, 1 - MS-SSIM with `--distortion ms-ssim` (a fine-tune for the SSIM metrics), or
sqrt(MSE * (1 - SSIM)) with `--distortion mse+ssim` (PSNR and SSIM in dB, averaged), or the cube root
of MSE * (1 - SSIM) * (1 - MS-SSIM) with `--distortion mse+ssim+ms-ssim` (all three in dB, averaged),
or sqrt((1 - SSIM) * (1 - MS-SSIM)) with `--distortion ssim+ms-ssim` (the SSIM metrics alone).
With `--rate-weight per-db` each sample's D is divided by its own (detached) value times the batch
mean, so every sample counts by its relative error (equal weight per dB) instead of low rates
dominating; `--full-rate-frac` draws that share of samples at r = 1 (every channel kept).
`--map-tv` adds the map's total variation (mean absolute difference of L * p between neighbours,
weighted by the batch-mean D so its weight does not drift with the distortion): the map is coded
at 1-3 bits per entry, barely below its marginal entropy, and nothing else in the loss prices it.
`--decay-steps` makes the learning rate fall along one cosine to `--lr-end`; `--ema` keeps an
exponential moving average of the weights, which evaluation, `best/` and `export` use.
`--binarize stochastic` draws each training bit as 1 with probability e instead of thresholding
(decoding still thresholds), with noise seeded by the step, so `--resume` stays exact.
`--decoder-only` freezes the encoder and the importance net (the second half of "soft then hard",
Guo et al. 2021): the biased straight-through gradient no longer moves the code, the step skips
the encoder's backward pass, and the start's codes, maps and context models stay exactly valid.
`--encoder-only` is the converse: the decoder frozen, the encoder and the importance net learn to
feed it (the gap that encoder-side refinement measures, docs/refinement.md); the codes change, so
its context models are fitted again after export.

One process, or one per device under `torchrun --nproc_per_node=N -m cwic train ...`
(DistributedDataParallel; see cwic/training/distributed.py and docs/training.md "Training on
GPUs"): `--batch` is the global batch, drawn in `--shards` independent streams (batches.py), so
the data of a run does not depend on how many processes train it. On CUDA: bf16 autocast for the
decoder (the encoder, the importance net, the binarizer, the mask and the loss stay float32, TF32
off: low precision there flips code bits against the CPU codec), cudnn autotuning, batches drawn
ahead in a background thread. `--amp bf16 --channels-last` is also the fastest setting on a CPU
with bf16 instructions (AVX512-BF16 or AMX); on one without them bf16 is emulated and slower than
float32, and `cwic train` says so.
`--data` takes a photo folder or a pack from `cwic pack-data`.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import signal
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import load_checkpoint, load_train_state, save_checkpoint, save_train_state
from ..evaluation.metrics import quality
from ..images import load_rgb
from ..models.config import PRESETS, ModelConfig
from ..models.network import CWICModel, ResBlock, raw_bpp, reconstruct
from . import distributed
from .batches import BatchStream, Recipe, shard_rng
from .code_rate import DB_PER_NATURAL, CodeRate
from .data import (
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
from .distortion import DISTORTIONS, distortion
from .ema import WeightAverage
from .growth import grow_codes, widen, widen_decoder, widen_encoder
from .pack import read_pack

EVAL_RATES = (0.1, 0.3, 0.6)
RD_SLOPE = 12.0  # dB per bpp: turns (PSNR, bpp) pairs into one score for picking the best step


def build_parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = p or argparse.ArgumentParser(prog="cwic train", description=__doc__)
    p.add_argument(
        "--data", type=Path, default=DEFAULT_TRAIN_DIR, help="folder of training photos, or a .zip from cwic pack-data"
    )
    p.add_argument("--kodak", type=Path, default=DEFAULT_KODAK_DIR, help="Kodak folder for quick evaluation")
    p.add_argument("--out", type=Path, required=True, help="run folder (state, log, best checkpoint)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUT/train_state.*, with the recipe of its last session for every option not given",
    )
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
    p.add_argument(
        "--widen-decoder",
        choices=sorted(PRESETS),
        default=None,
        help="with --init-from: widen the decoder's layers alone to this preset's widths (for --decoder-only: "
        "the codes and context models stay valid)",
    )
    p.add_argument(
        "--widen-encoder",
        choices=sorted(PRESETS),
        default=None,
        help="with --init-from: widen the encoder's and the importance net's layers alone to this preset's "
        "widths (for --encoder-only: the decoder stays as it is)",
    )
    p.add_argument("--preset", choices=sorted(PRESETS), default="slim")
    p.add_argument(
        "--gdn",
        action="store_true",
        help="a fresh run with GDN / IGDN in place of the ReLUs between layers (a resumed one keeps its transform)",
    )
    p.add_argument("--minutes", type=float, default=None, help="wall-clock budget of this invocation")
    p.add_argument("--steps", type=int, default=None, help="stop at this total step count")
    p.add_argument("--batch", type=int, default=8, help="global batch (all processes together)")
    p.add_argument(
        "--shards",
        type=int,
        default=None,
        help="independent data streams the global batch is drawn in (default: the number of processes; "
        "a run keeps the number it started with)",
    )
    p.add_argument("--patch", type=int, default=128, help="crop side, a multiple of 8")
    p.add_argument("--lr", type=float, default=3e-4, help="Adam learning rate")
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
    p.add_argument(
        "--zero-init-residual",
        action="store_true",
        help="a fresh run whose residual branches start at zero (Fixup): every block starts as the identity "
        "(no effect on a resumed run)",
    )
    p.add_argument(
        "--clip", type=float, default=1.0, help="gradient-norm clipping (the first author's code: 0.06, then 0.006)"
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
    p.add_argument(
        "--map-tv",
        type=float,
        default=0.0,
        help="weight of the map's total variation (in levels, times the batch-mean distortion): a proxy "
        "for the map's coded size, which the mean-shifted loss does not see (docs/training.md, session 18)",
    )
    p.add_argument(
        "--code-rate",
        type=float,
        default=0.0,
        help="weight of the kept code's bits under --bit-model's context model, priced at that checkpoint's "
        "own R-D slope at each sample's rate (1 = the slope itself): the coded size, which the map's sum does "
        "not see (docs/training.md, session 22)",
    )
    p.add_argument(
        "--bit-model",
        type=Path,
        default=None,
        help="checkpoint whose bit context model and calibrated levels --code-rate uses (default: --init-from)",
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
    p.add_argument(
        "--zero-level",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="map symbol 0 keeps no channel (L + 1 symbols; the paper's Eq. 4) instead of n/L, so flat "
        "regions can give all their bits away (the model's config keeps it; default: as loaded)",
    )
    p.add_argument(
        "--binarize",
        choices=("threshold", "stochastic"),
        default="threshold",
        help="training bits: e > 0.5, or 1 with probability e (see above)",
    )
    p.add_argument("--distortion", choices=DISTORTIONS, default="mse", help="D in the loss (see above)")
    p.add_argument(
        "--decoder-only",
        action="store_true",
        help="train the decoder alone, the encoder and the importance net frozen: the codes and maps stay "
        "those of the start, so its context models stay valid (kept on --resume)",
    )
    p.add_argument(
        "--encoder-only",
        action="store_true",
        help="train the encoder and the importance net alone, the decoder frozen (kept on --resume)",
    )
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--save-minutes", type=float, default=1.0, help="train-state save interval")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--amp", choices=("none", "bf16"), default=None, help="autocast (default: bf16 on CUDA, else none)")
    p.add_argument(
        "--channels-last", action=argparse.BooleanOptionalAction, default=False, help="NHWC memory format for the convs"
    )
    p.add_argument(
        "--prefetch", type=int, default=None, help="batches drawn ahead in a thread (default: 4 on CUDA, 0 on CPU)"
    )
    return p


# What a resumed run does not take from its last session: where and how long it runs, not how it learns.
NOT_INHERITED = frozenset(
    "data kodak out resume init_from grow_n widen widen_decoder widen_encoder preset gdn zero_init_residual "
    "minutes steps save_minutes threads device prefetch".split()
)


def map_total_variation(p: torch.Tensor, symbols: int) -> torch.Tensor:
    """Per-sample mean |difference| of symbols * p between horizontal and vertical neighbours, (B,)."""
    q = p.float() * symbols
    dy = (q[..., 1:, :] - q[..., :-1, :]).abs().mean(dim=(1, 2, 3))
    dx = (q[..., :, 1:] - q[..., :, :-1]).abs().mean(dim=(1, 2, 3))
    return (dx + dy) / 2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; under --resume every recipe option not given takes the run's last session's value.

    Without this a resumed run silently fell back to the parser defaults (batch 8, lr 3e-4, ...), so
    `--resume` alone changed the recipe mid-run.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    state = args.out / "train_state.json"
    if not (args.resume and state.is_file()):
        return args
    probe = build_parser()
    for action in probe._actions:
        action.default = argparse.SUPPRESS
    given = vars(probe.parse_args(argv))
    stored = (json.loads(state.read_text()).get("sessions") or [{}])[-1].get("args", {})
    for action in parser._actions:
        dest = action.dest
        if dest in NOT_INHERITED or dest in given or dest not in stored:
            continue
        text = stored[dest]
        if text == "None":
            value = None
        elif action.nargs == 0:  # a flag: store_true or --x/--no-x
            value = text == "True"
        else:
            value = action.type(text) if action.type else text
        setattr(args, dest, value)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.patch % 8:
        raise SystemExit("--patch must be a multiple of 8")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    ranks = distributed.setup(args.device)
    finished = False
    try:
        status = _train(args, ranks)
        finished = True
        return status
    finally:
        distributed.teardown(ranks, finished)


def _train(args: argparse.Namespace, ranks: distributed.Ranks) -> int:
    dev, out = ranks.device, args.out
    if ranks.main:
        out.mkdir(parents=True, exist_ok=True)
    resuming = args.resume and (out / "train_state.json").is_file()
    saved = json.loads((out / "train_state.json").read_text()) if resuming else {}
    if (args.grow_n or args.widen or args.widen_decoder or args.widen_encoder) and (resuming or not args.init_from):
        raise SystemExit(
            "--grow-n, --widen, --widen-decoder and --widen-encoder start a new run: "
            "use them with --init-from, not on a resumed one"
        )
    if (args.gdn or args.zero_init_residual) and args.init_from and not resuming:
        raise SystemExit("--gdn and --zero-init-residual start a fresh run, not an --init-from one")
    if resuming:
        model = CWICModel(ModelConfig.from_dict(saved["config"]))
        if args.gdn and not model.config.gdn:  # the same command with --resume is fine; a changed transform is not
            raise SystemExit("--gdn: this run was started with ReLU transforms and keeps them")
    elif args.init_from:
        model, init_card, _ = load_checkpoint(args.init_from)  # float32 weights of the shipped checkpoint
        if args.grow_n:
            model = grow_codes(model, args.grow_n)
        if args.widen:
            model = widen(model, replace(PRESETS[args.widen], n=model.config.n, levels=model.config.levels))
        if args.widen_decoder:
            model = widen_decoder(model, PRESETS[args.widen_decoder])
        if args.widen_encoder:
            model = widen_encoder(model, PRESETS[args.widen_encoder])
    else:
        model = CWICModel(replace(PRESETS[args.preset], gdn=args.gdn))
        if args.zero_init_residual:
            zero_init_residual(model)
    if args.mean_shift is not None:
        model.config = replace(model.config, mean_shift=args.mean_shift)
    if args.zero_level is not None:
        model.config = replace(model.config, zero_level=args.zero_level)
    model = model.to(dev)
    # a resumed run keeps what it trains: its optimizer holds the moments of those parameters alone
    decoder_only = bool(saved.get("decoder_only", False)) if resuming else args.decoder_only
    encoder_only = bool(saved.get("encoder_only", False)) if resuming else args.encoder_only
    if decoder_only and encoder_only:
        raise SystemExit("--decoder-only and --encoder-only together would train nothing: choose one")
    for part in (model.encoder, model.importance):
        part.requires_grad_(not decoder_only)
    model.decoder.requires_grad_(not encoder_only)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=args.lr)
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
            | ({"widened_from": init_card.get("preset")} if args.widen else {})
            | ({"decoder_widened_to": args.widen_decoder} if args.widen_decoder else {})
            | ({"encoder_widened_to": args.widen_encoder} if args.widen_encoder else {}),
        )
    if args.decay_steps and not info.get("schedule"):
        info["schedule"] = {"start": info["step"], "steps": args.decay_steps}
    shards = int(info.get("shards") or args.shards or ranks.world)
    if shards % ranks.world or args.batch % shards:
        raise SystemExit(
            f"the global batch {args.batch} is {shards} shards (the run's --shards): "
            f"the shards must divide it and {ranks.world} processes must divide the shards"
        )
    info["shards"], info["global_batch"] = shards, args.batch
    info["decoder_only"], info["encoder_only"] = decoder_only, encoder_only
    mine = range(ranks.rank * shards // ranks.world, (ranks.rank + 1) * shards // ranks.world)
    seed_step = info["step"] if args.init_from and not resuming else None
    rngs = [shard_rng(args.seed, k, seed_step) for k in mine]
    saved = info["np_rng"]
    for k, rng in zip(mine, rngs, strict=True):
        if saved:  # one state per shard; a run from before sharding saved shard 0's alone
            rng.bit_generator.state = saved[k] if isinstance(saved, list) else saved
    if args.code_rate and args.bit_model is None:
        args.bit_model = args.init_from
    if args.code_rate and args.distortion.startswith("mse+"):
        raise SystemExit("--code-rate prices bits in PSNR or MS-SSIM dB: use it with --distortion mse or ms-ssim")
    if args.code_rate and args.bit_model is None:
        raise SystemExit("--code-rate needs --bit-model CHECKPOINT (or --init-from) for its context model")
    code_rate = None
    if args.code_rate:
        try:
            code_rate = CodeRate(args.bit_model, "psnr" if args.distortion == "mse" else "ms-ssim").to(dev)
        except (FileNotFoundError, ValueError) as e:
            raise SystemExit(f"--bit-model: {e}") from None
    info["sessions"] = info["sessions"] + [_session(args, ranks)]

    if args.data.suffix == ".zip":
        pack = read_pack(args.data)
        if pack.patch != args.patch:
            raise SystemExit(f"{args.data} was packed for --patch {pack.patch}; pack it again for {args.patch}")
        train_images, val_images, kodak = pack.train, pack.val, list(pack.kodak.values())
    else:
        files_train, files_val = split(list_images(args.data))
        train_images = [load_downscaled(f, args.patch) for f in files_train]
        val_images = [load_downscaled(f, args.patch) for f in files_val[:VAL_PHOTOS]]
        kodak = [load_rgb(args.kodak / n) for n in QUICK_KODAK if (args.kodak / n).is_file()]
    sampler = PatchSampler(train_images, args.patch)
    val = torch.from_numpy(center_crops(val_images, args.patch))
    recipe_ = Recipe(
        args.rate_min, args.rate_max, args.rate_skew, args.full_rate_frac, args.uniform_steps, args.uniform_frac
    )
    ahead = args.prefetch if args.prefetch is not None else (4 if dev.type == "cuda" else 0)
    stream = BatchStream(rngs, sampler, args.batch // shards, info["step"] + 1, recipe_, ahead)
    if ranks.main:
        print(
            f"cwic train: {'resumed' if resuming else info['preset']}, "
            f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params, "
            f"{len(sampler.images)} train / {len(val_images)} val photos, step {info['step']}, device {dev}, "
            f"{ranks.world} process(es) x {torch.get_num_threads()} threads, global batch {args.batch} "
            f"in {shards} shard(s)",
            flush=True,
        )
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        # the encoder stays true float32, as the CPU codec runs it: TF32 would flip bits near 0.5
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)

    stop = {"flag": False}
    previous = {sig: signal.signal(sig, lambda *_: stop.update(flag=True)) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        ema = WeightAverage(model, args.ema, out if resuming else None) if args.ema else None
        return _loop(_Run(args, model, opt, info, stream, val, kodak, ranks, ema, code_rate), stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@dataclass
class _Run:
    """What the loop works on, set up by `_train`."""

    args: argparse.Namespace
    model: CWICModel
    opt: torch.optim.Optimizer
    info: dict
    stream: BatchStream
    val: torch.Tensor
    kodak: list[np.ndarray]
    ranks: distributed.Ranks
    ema: WeightAverage | None
    code_rate: CodeRate | None = None  # --code-rate's pricer
    rng_states: list[dict] | None = None  # this rank's shards after the last batch trained on


@torch.no_grad()
def zero_init_residual(model: CWICModel) -> None:
    """Zero the last conv's weights of every residual branch, so each block starts near the identity (Fixup).

    Its bias starts at +0.01, not 0: the branch ends in a ReLU, whose gradient at exactly 0 is 0,
    so an all-zero last conv would never learn.
    """
    for block in model.modules():
        if isinstance(block, ResBlock):
            block.conv2.weight.zero_()
            block.conv2.bias.fill_(0.01)


def scheduled_lr(args: argparse.Namespace, info: dict, step: int, first_step: int, fresh: bool) -> float:
    """Warm-up of a fresh optimizer, then constant --lr or one cosine from --lr to --lr-end."""
    lr = args.lr
    sched = info.get("schedule")
    if sched:
        t = min(1.0, max(0.0, (step - sched["start"]) / sched["steps"]))
        lr = args.lr_end + (args.lr - args.lr_end) * 0.5 * (1 + math.cos(math.pi * t))
    return lr * min(1.0, (step - first_step) / args.warmup) if fresh else lr


def binarize_noise(args: argparse.Namespace, shape: torch.Size, n: int, step: int, rank: int) -> torch.Tensor:
    """Uniform noise for stochastic binarization, a function of (seed, step, rank) alone: resumable."""
    gen = torch.Generator().manual_seed((args.seed * 1_000_003 + step) * 1009 + rank)
    b, _, h, w = shape
    return torch.rand((b, n, h // 8, w // 8), generator=gen)


def _loop(run: _Run, stop: dict) -> int:
    """The training loop proper; saves the train state on exit, every --save-minutes and at SIGTERM.

    Under torchrun every rank runs it; rank 0 alone logs, evaluates and writes files, and decides
    (for all ranks) when to save and when to stop.
    """
    args, model, opt, info, ranks = run.args, run.model, run.opt, run.info, run.ranks
    dev, config, out = ranks.device, model.config, args.out
    net = torch.nn.parallel.DistributedDataParallel(model) if ranks.world > 1 else model
    amp = args.amp if args.amp is not None else ("bf16" if dev.type == "cuda" else "none")
    if amp == "bf16" and dev.type == "cpu" and ranks.main and not cpu_has_bf16():
        print(
            "cwic train: warning: this CPU has no bf16 instructions (AVX512-BF16 / AMX), so --amp bf16 is "
            "emulated and slower than float32 here (docs/training.md); --amp none is the faster setting",
            file=sys.stderr,
        )
    first_step = info["step"]  # warm-up counts from here when the optimizer starts afresh
    fresh_optimizer = not opt.state
    log = (out / "log.jsonl").open("a") if ranks.main else None

    start = time.time()
    wall0 = info["wall_seconds"]
    cpu_start, cpu0 = time.process_time(), info.get("cpu_seconds", 0.0)
    last_save, last_step_time, last_step = start, start, info["step"]
    acc: dict[str, torch.Tensor] = {}
    model.train()
    while True:
        out_of_budget = (args.steps is not None and info["step"] >= args.steps) or (
            args.minutes is not None and time.time() - start >= args.minutes * 60
        )
        due = time.time() - last_save >= args.save_minutes * 60
        finished, save_now = distributed.agree([stop["flag"] or out_of_budget, due], ranks)
        if finished:
            break
        if save_now:
            _save(run, wall0 + time.time() - start, cpu0 + time.process_time() - cpu_start)
            last_save = time.time()
        step = info["step"] + 1
        lr = scheduled_lr(args, info, step, first_step, fresh_optimizer)
        for g in opt.param_groups:
            g["lr"] = lr
        batch = run.stream.next()
        x = torch.from_numpy(batch.x).to(dev, non_blocking=True)
        if args.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        rate = torch.from_numpy(batch.rate).to(dev)
        uniform = torch.from_numpy(batch.uniform).to(dev)
        learned = torch.isnan(uniform)
        noise = None
        if args.binarize == "stochastic":
            noise = binarize_noise(args, x.shape, config.n, step, ranks.rank).to(dev)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
            res = net(x, rate, uniform, detach_importance=args.detach_importance, noise=noise)
        x_hat = res["x_hat"].float()
        dist = distortion(args.distortion, x_hat, x)
        mse = dist.detach() if args.distortion == "mse" else ((x_hat.detach() - x) ** 2).mean(dim=(1, 2, 3))
        mean_p = res["p"].mean(dim=(1, 2, 3))
        over, under = torch.clamp(mean_p - rate, min=0), torch.clamp(rate - mean_p, min=0)
        if args.rate_weight == "per-db" or args.map_tv or args.code_rate:  # one all-reduce, where a term needs it
            batch_mean = distributed.all_sum(dist.detach().sum(), ranks) / args.batch
        if args.rate_weight == "per-db":  # normalised by the mean over the global batch, on every rank
            dist = dist * (batch_mean / dist.detach().clamp(min=1e-12))
        tv = map_total_variation(res["p"], config.symbols)
        map_term = args.map_tv * batch_mean * tv if args.map_tv else torch.zeros_like(tv)
        loss_i = dist + (args.gamma * over + args.gamma_under * under + map_term) * learned
        if run.code_rate:  # J = D_dB + slope * bpp, as refinement prices it, in the per-dB loss's units
            code_bpp = run.code_rate.bpp(res["bits"], res["p"], rate)
            scale = batch_mean if args.rate_weight == "per-db" else dist.detach()
            loss_i = loss_i + args.code_rate * scale / DB_PER_NATURAL * run.code_rate.slopes(rate) * code_bpp
        loss = loss_i.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()  # DDP all-reduces (averages) the gradients here
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        if run.ema:
            run.ema.update()
        info["step"], run.rng_states = step, batch.rng_states
        stats = {
            "loss": loss.detach() * x.shape[0],
            "psnr": (-10 * torch.log10(mse)).sum(),
            "raw_bpp": res["mask"].detach().float().mean(dim=(1, 2, 3)).sum() * config.n / 64,
            "p_minus_r": ((mean_p.detach() - rate) * learned).sum(),
            "map_tv": (tv.detach() * learned).sum(),
            "learned": learned.sum(),
            **({"code_bpp": code_bpp.detach().sum()} if run.code_rate else {}),
            "samples": torch.tensor(x.shape[0], device=dev),
        }
        for k, v in stats.items():
            acc[k] = acc.get(k, 0) + v.float()
        if step % 20 == 0:  # every rank reaches this step: the sums over the global batch
            totals = distributed.all_sum(torch.stack(list(acc.values())), ranks).tolist()
            sums = dict(zip(acc, totals, strict=True))
            acc = {}
            now = time.time()
            info["wall_seconds"] = wall0 + now - start
            info["cpu_seconds"] = cpu0 + time.process_time() - cpu_start
            if ranks.main:
                row = {
                    "step": step,
                    "lr": lr,
                    "wall_s": round(info["wall_seconds"], 1),
                    "cpu_s": round(info["cpu_seconds"], 1),
                    "steps_per_s": round((step - last_step) / max(now - last_step_time, 1e-9), 3),
                    **{
                        k: round(sums[k] / sums["samples"], 5)
                        for k in ("loss", "psnr", "raw_bpp", "code_bpp")
                        if k in sums
                    },
                }
                if sums["learned"]:
                    row["p_minus_r"] = round(sums["p_minus_r"] / sums["learned"], 5)
                    row["map_tv"] = round(sums["map_tv"] / sums["learned"], 4)
                _log(log, row)
                print(json.dumps(row), flush=True)
            last_step_time, last_step = now, step
        if step % args.eval_every == 0 and ranks.main:
            info["wall_seconds"] = wall0 + time.time() - start
            with run.ema.swapped_in() if run.ema else nullcontext():
                ev = evaluate_quick(model, run.val, run.kodak, dev)
                _log(log, {"step": step, "wall_s": round(info["wall_seconds"], 1), "eval": ev})
                print(f"step {step}: val {ev['val']}  kodak {ev['kodak']}", flush=True)
                if ev["score"] > info["best_score"]:
                    info["best_score"] = ev["score"]
                    save_checkpoint(out / "best", model, model_card(info, config) | {"quick_eval": ev})
            model.train()
    _save(run, wall0 + time.time() - start, cpu0 + time.process_time() - cpu_start)
    if ranks.main:
        print(f"saved step {info['step']} ({info['wall_seconds'] / 60:.1f} min in total) to {out}", flush=True)
    return 0


def _save(run: _Run, wall_seconds: float, cpu_seconds: float) -> None:
    """Every rank's shard streams go into the one state that rank 0 writes (a collective call)."""
    states = [s for part in distributed.gather(run.rng_states, run.ranks) if part for s in part]
    if not run.ranks.main:
        return
    run.info.update(wall_seconds=wall_seconds, cpu_seconds=cpu_seconds)
    if len(states) == run.info["shards"]:
        run.info["np_rng"] = states
    save_train_state(run.args.out, run.model, run.opt, run.info)
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


def model_card(info: dict, config: ModelConfig) -> dict:
    """The model card of a run's weights: the training record (every session's arguments) and the loss."""
    return {
        "format": "cwic-checkpoint/1",
        "preset": info.get("preset"),
        "training": {
            "steps": info["step"],
            "wall_seconds": round(info["wall_seconds"], 1),
            "global_batch": info.get("global_batch"),
            "shards": info.get("shards"),
            "sessions": info["sessions"],
            "init_from": info.get("init_from"),
            "recipe": recipe(config, info["sessions"]),
        },
    }


def recipe(config: ModelConfig, sessions: list[dict]) -> str:
    """The loss in one line, for model cards (the arguments of every session are recorded beside it)."""
    tuned = any(s.get("args", {}).get("distortion", "mse") != "mse" for s in sessions)
    text = ("D" if tuned else "MSE") + (
        " + gamma*max(mean(p)-r,0) + gamma_under*max(r-mean(p),0), "
        "r = rate_min + (rate_max-rate_min)*U(0,1)**rate_skew fed to the importance net"
    )
    if tuned:
        text += (
            "; D = 1 - MS-SSIM in the sessions run with --distortion ms-ssim, sqrt(MSE * (1 - SSIM)) in those "
            "run with --distortion mse+ssim, the cube root of MSE * (1 - SSIM) * (1 - MS-SSIM) in those run with "
            "--distortion mse+ssim+ms-ssim, sqrt((1 - SSIM) * (1 - MS-SSIM)) in those run with --distortion "
            "ssim+ms-ssim, MSE in the others"
        )
    return text + ("; p shifted so that mean(p) = r (mean_shift): the hinges are zero" if config.mean_shift else "")


def cpu_has_bf16() -> bool:
    """Whether the CPU computes bf16 natively; without it autocast emulates bf16, about 4x slower per step."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return True  # cannot tell (not Linux): no warning
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _session(args: argparse.Namespace, ranks: distributed.Ranks) -> dict:
    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": platform.node(),
        "cpu_count": torch.get_num_threads(),
        "cpu_bf16": cpu_has_bf16(),
        "device": str(ranks.device),
        "processes": ranks.world,
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(ranks.device) if ranks.device.type == "cuda" else None,
        "args": {k: str(v) for k, v in vars(args).items()},
    }


def _log(fh, obj: dict) -> None:
    fh.write(json.dumps(obj) + "\n")
    fh.flush()
