"""`python -m cwic train-entropy`: train the context models, calibrate the levels, rewrite the golden file.

This is the ONE command that regenerates everything derived from the autoencoder weights on the
codec side (run it after every new autoencoder checkpoint):
  1. codes of training photos (random crops, random rates, some uniform maps) from the autoencoder;
  2. a few minutes of Adam on the staged map and bit context models (float32);
  3. integer export into the checkpoint's model.safetensors under `entropy.` keys (autoencoder
     weights are re-saved unchanged; the checkpoint id changes);
  4. level calibration: mean Kodak bpp from real file sizes, written to the card's `levels`;
  5. the golden files tests/golden/ (a small content-weighted .cwic and a uniform one, with the SHA-256 of
     their decoded codes and pixels).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..checkpoint import DEFAULT_CHECKPOINT, REPO_ROOT, load_checkpoint, save_checkpoint
from ..entropy_models.context_model import (
    BitContext,
    MapContext,
    bit_inputs,
    export_int,
    import_int,
    int_shape,
    lookup_tables,
    map_inputs,
    map_scales,
    rate_plane_value,
)
from ..images import load_rgb
from ..models.config import ModelConfig
from ..models.network import (
    kept_channels,
    mask_from_levels,
    pad_to_multiple,
    quantize_importance,
    top_group,
)
from .data import DEFAULT_KODAK_DIR, DEFAULT_TRAIN_DIR, list_images, load_downscaled, split

GOLDEN_DIR = REPO_ROOT / "tests" / "golden"
START_RATES = (0.04, 0.1, 0.18, 0.3, 0.45, 0.65)
CROP = 256  # training crop side (32 x 32 code locations)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cwic train-entropy", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    p.add_argument("--data", type=Path, default=DEFAULT_TRAIN_DIR)
    p.add_argument("--kodak", type=Path, default=DEFAULT_KODAK_DIR)
    p.add_argument("--minutes", type=float, default=20.0, help="training time (code extraction excluded)")
    p.add_argument("--crops", type=int, default=600, help="training crops to extract codes from")
    p.add_argument("--rates-per-crop", type=int, default=3)
    p.add_argument("--batch", type=int, default=48)
    p.add_argument("--window", type=int, default=16, help="code-location window of each training sample")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--width", type=int, default=48, help="channels of both context models (24 before session 14)")
    p.add_argument("--kernel", type=int, default=3, help="spatial kernel of their middle layer")
    p.add_argument(
        "--map-scales",
        type=int,
        default=None,
        help="lattices the map is coded over, coarse to fine (1: the four 2x2 phases before session 30; 3 cost "
        "6-9 %% fewer map bits on Kodak, docs/training.md); default: the warm start's, else 3",
    )
    p.add_argument(
        "--warm-start",
        action="store_true",
        help="continue from the checkpoint's own context models (their width and kernel) instead of a fresh init",
    )
    p.add_argument(
        "--warm-start-from",
        type=Path,
        help="continue from another checkpoint's context models (same n and L): for a fine-tuned "
        "encoder whose codes moved a little from that checkpoint's, cheaper than a fresh fit",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest beside a training run)")
    p.add_argument("--skip-train", action="store_true", help="keep the entropy models; only calibrate + golden")
    p.add_argument("--no-calibrate", action="store_true")
    p.add_argument("--no-golden", action="store_true")
    p.add_argument("--golden-dir", type=Path, default=GOLDEN_DIR)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    if not args.skip_train:
        train(args)
    from ..codec import Codec  # after training: the checkpoint now has entropy weights

    if not args.no_calibrate:
        codec = Codec.load(args.checkpoint)
        levels = add_quality(codec, args.kodak, calibrate_levels(codec, args.kodak))
        model, card, extra = load_checkpoint(args.checkpoint)
        card["levels"] = levels
        _save(args.checkpoint, model, card, extra)
        print(json.dumps(levels))
    if not args.no_golden:
        codec = Codec.load(args.checkpoint)
        for uniform in (False, True):
            print("golden:", json.dumps(write_golden(codec, args.kodak, args.golden_dir, uniform=uniform)))
    return 0


def _save(folder: Path, model, card: dict, extra: dict) -> None:
    """Re-save the checkpoint in its own dtype (fp16 autoencoder weights round-trip exactly)."""
    save_checkpoint(folder, model, card, extra=extra, fp16="float16" in card.get("dtype", "torch.float16"))


# -- 1. codes of training photos -------------------------------------------------------------------
@torch.no_grad()
def extract_codes(model, files: list[Path], crops: int, per_crop: int, rng: np.random.Generator):
    """(bits uint8 (N, n, h, w), map symbols q int64 (N, h, w), rate_int (N,)) from random crops and rates."""
    images = [img for img in (load_downscaled(f, CROP) for f in files) if min(img.shape[:2]) >= CROP]
    all_bits, all_q, all_r = [], [], []
    for i in range(crops):
        img = images[rng.integers(len(images))]
        y, x = rng.integers(img.shape[0] - CROP + 1), rng.integers(img.shape[1] - CROP + 1)
        t = torch.tensor(img[y : y + CROP, x : x + CROP]).permute(2, 0, 1)[None].float() / 255
        e, feats = model.analyze(t)
        bits = (e[0] > 0.5).to(torch.uint8)
        for _ in range(per_crop):
            rate = float(np.float32(math.exp(rng.uniform(math.log(0.01), math.log(0.99)))))
            p = model.importance_map(feats, rate)[0]
            if rng.random() < 0.12:
                p = torch.full_like(p, float(p.mean()))
            all_bits.append(bits)
            all_q.append(quantize_importance(p, model.config)[0])
            all_r.append(rate_plane_value(rate))
        if (i + 1) % 100 == 0:
            print(f"codes: {i + 1}/{crops} crops", flush=True)
    return torch.stack(all_bits), torch.stack(all_q), torch.tensor(all_r)


# -- 2./3. training and export ------------------------------------------------------------------------
def train(args) -> None:
    t0 = time.time()
    model, card, extra = load_checkpoint(args.checkpoint)
    config = model.config
    width, kernel, before, source, scales = args.width, args.kernel, {}, None, 3
    if args.warm_start or args.warm_start_from:  # checked before the minutes of code extraction
        source, before = warm_start_source(args, model, card, extra)
        width, kernel = int_shape(source, "entropy.bits")
        scales = map_scales(source["entropy.map.stage_bias"].shape[0])
    scales = args.map_scales or scales
    rng = np.random.default_rng(args.seed)
    codes, val = training_codes(model, args.data, args.crops, args.rates_per_crop, rng)
    print(f"codes extracted in {time.time() - t0:.0f} s: {len(codes[1])} train, {len(val[1])} validation", flush=True)

    map_net = MapContext(config.symbols, width, kernel, scales)
    bit_net = BitContext(config.n, config.levels, width, kernel)
    if source is not None:
        import_int(map_net, with_map_scales(with_map_symbols(source, config.symbols), scales), "entropy.map")
        import_int(bit_net, source, "entropy.bits")
        with torch.no_grad():
            vb, vm = _eval(map_net, bit_net, *val, config)
        print(f"warm start: {vb:.4f} bits per kept bit, {vm:.4f} bits per map entry", flush=True)
    step = fit(map_net, bit_net, codes, config, args.minutes, args.batch, args.window, args.lr, rng)
    with torch.no_grad():
        vb, vm = _eval(map_net, bit_net, *val, config)
    print(f"validation: {vb:.4f} bits per kept bit, {vm:.4f} bits per map entry ({step} steps)", flush=True)

    extra = {k: v for k, v in extra.items() if not k.startswith("entropy.")}
    extra |= export_int(map_net, "entropy.map") | export_int(bit_net, "entropy.bits") | lookup_tables()
    card = dict(card)
    card["entropy"] = {
        "steps": step + before.get("steps", 0),
        "minutes": args.minutes + before.get("minutes", 0),
        "width": width,
        "kernel": kernel,
        "map_scales": scales,
        "train_codes": len(codes[1]),
        "val_bits_per_kept_bit": round(vb, 4),
        "val_bits_per_map_entry": round(vm, 4),
    }
    if before:
        card["entropy"]["warm_start_from"] = before
    _save(args.checkpoint, model, card, extra)


def warm_start_source(args, model, card: dict, extra: dict) -> tuple[dict, dict]:
    """The `entropy.*` tensors to continue from (the checkpoint's own, or --warm-start-from's) and their card entry."""
    flag, path = "--warm-start", args.checkpoint
    if args.warm_start_from:
        flag, path = "--warm-start-from", args.warm_start_from
        other, card, extra = load_checkpoint(path)
        if (other.config.n, other.config.levels) != (model.config.n, model.config.levels):
            raise SystemExit(
                f"cwic train-entropy: {flag}: {path} codes n = {other.config.n}, L = {other.config.levels}; "
                f"{args.checkpoint} codes n = {model.config.n}, L = {model.config.levels}"
            )
    if "entropy.bits.conv2.w" not in extra:
        raise SystemExit(f"cwic train-entropy: {flag}: {path} has no context models yet")
    before = dict(card.get("entropy", {}))
    if args.warm_start_from:
        before["checkpoint"] = card["weights_id"]  # fitted to that checkpoint's codes
    return extra, before


def with_map_symbols(tensors: dict, symbols: int) -> dict:
    """`tensors` with the map model's head cut or grown to `symbols` outputs, new ones copies of its top one.

    So a `zero_level` model (L + 1 map symbols) warm-starts from the fit of the model it was trained
    from: its symbol q covers about the p of the old q, and the fit corrects the rest.
    """
    out = dict(tensors)
    for key in ("entropy.map.head.w", "entropy.map.head.b"):
        head = tensors[key]
        extra = symbols - head.shape[1]
        out[key] = head[:, :symbols] if extra <= 0 else torch.cat([head, head[:, -1:].repeat_interleave(extra, 1)], 1)
    return out


def with_map_scales(tensors: dict, scales: int) -> dict:
    """`tensors` with the map model's per-stage parameters re-laid for `scales` lattices.

    The coarsest lattice's four stages keep theirs; every finer lattice's three stages (all with
    the same neighbourhood, one lattice finer) start from the source's finest three.
    """
    out = dict(tensors)
    for key in ("entropy.map.stage_bias", "entropy.map.head.w", "entropy.map.head.b"):
        old = tensors[key]
        out[key] = torch.cat([old[:4]] + [old[-3:]] * (scales - 1)) if scales > 1 else old[:4]
    return out


def training_codes(model, data: Path, crops: int, per_crop: int, rng: np.random.Generator) -> tuple[tuple, tuple]:
    """(train, validation) codes, each (bits, q, rate_int), from the training photos' own split."""
    train_files, val_files = split(list_images(data))
    codes = extract_codes(model, train_files, crops, per_crop, rng)
    return codes, extract_codes(model, val_files, max(20, crops // 20), 2, rng)


def fit(
    map_net,
    bit_net,
    codes: tuple,
    config: ModelConfig,
    minutes: float,
    batch: int,
    window: int,
    lr: float,
    rng,
    present_stages: bool = True,
) -> int:
    """Adam on random windows for `minutes` (cosine decay to 5 % of lr); returns the step count.

    `present_stages`: each sample trains a bit stage whose group is kept somewhere in its window
    (at low rates most groups are dropped everywhere, and a uniformly drawn stage had nothing to
    code); False draws the stage uniformly, as before (benchmarks/context_arms.py compares them).
    """
    bits, q, rates = codes
    map_net.train()
    bit_net.train()
    opt = torch.optim.Adam(list(map_net.parameters()) + list(bit_net.parameters()), lr=lr)
    deadline = time.time() + minutes * 60
    step, ema = 0, None
    while time.time() < deadline:
        frac = 1 - (deadline - time.time()) / (minutes * 60)
        for group in opt.param_groups:
            group["lr"] = lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))
        idx = torch.from_numpy(rng.integers(len(q), size=batch))
        y, x = (int(v) for v in rng.integers(q.shape[-1] - window + 1, size=2))
        win = (slice(y, y + window), slice(x, x + window))
        mb, mq = _losses(
            map_net,
            bit_net,
            bits[idx][..., win[0], win[1]],
            q[idx][:, win[0], win[1]],
            rates[idx],
            config,
            rng,
            present_stages,
        )
        loss = mb + mq
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        if step % 200 == 0:
            print(f"step {step}: loss {ema:.4f} (bits/coded bit + bits/map entry)", flush=True)
    map_net.eval()
    bit_net.eval()
    return step


def _bit_model_inputs(bits, q, config: ModelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(kept bits as +-1, dropped 0 (B, n, h, w); last kept group t (B, 1, h, w)) of maps q (B, h, w)."""
    qq = q[:, None]
    return (2 * bits.float() - 1) * mask_from_levels(qq, config), top_group(qq, config)


def _losses(map_net, bit_net, bits, q, rates, config: ModelConfig, rng, present_stages: bool = True):
    """(mean bits per coded bit, mean bits per map entry) at one random stage per sample."""
    B, n, L = len(q), config.n, config.levels
    bits_pm, tt = _bit_model_inputs(bits, q, config)
    if present_stages:  # group g is kept where t >= g: draw g in [0, max t] (0 where nothing is kept)
        top = tt.reshape(B, -1).max(1).values.clamp(min=0).numpy() + 1
        bstage = torch.from_numpy(2 * rng.integers(top) + rng.integers(2, size=B))
    else:
        bstage = torch.from_numpy(rng.integers(2 * L, size=B))
    x, coded = bit_inputs(bits_pm, tt, bstage, rates, n // L)
    logits = bit_net(x, bstage)
    g = (bstage // 2).view(B, 1, 1, 1)
    chans = g * (n // L) + torch.arange(n // L).view(1, -1, 1, 1)
    target = torch.gather(bits.float(), 1, chans.expand(-1, -1, *bits.shape[2:]))
    w = coded.float().expand_as(target)
    bl = (F.binary_cross_entropy_with_logits(logits, target, reduction="none") * w).sum() / w.sum().clamp(min=1)
    mstage = torch.from_numpy(rng.integers(map_net.stage_bias.shape[0], size=B))
    xm, pos = map_inputs(q[:, None], mstage, rates, map_net.scales)
    ce = F.cross_entropy(map_net(xm, mstage), q, reduction="none")
    ml = (ce * pos[:, 0].float()).sum() / pos.float().sum()
    return bl / math.log(2), ml / math.log(2)


def _eval(map_net, bit_net, bits, q, rates, config: ModelConfig):
    """Exact-stage averages over every stage of the validation codes (float models)."""
    tot_b = tot_nb = 0.0
    n, L = config.n, config.levels
    bits_pm, tt = _bit_model_inputs(bits, q, config)
    B = len(q)
    for s in range(2 * L):
        st = torch.full((B,), s)
        x, coded = bit_inputs(bits_pm, tt, st, rates, n // L)
        target = bits.float()[:, (s // 2) * (n // L) : (s // 2 + 1) * (n // L)]
        w = coded.float().expand_as(target)
        tot_b += float((F.binary_cross_entropy_with_logits(bit_net(x, st), target, reduction="none") * w).sum())
        tot_nb += float(w.sum())
    map_bits, map_entries = map_bits_by_stage(map_net, q, rates)
    return tot_b / tot_nb / math.log(2), sum(map_bits) / sum(map_entries)


def map_bits_by_stage(map_net, q: torch.Tensor, rates: torch.Tensor) -> tuple[list[float], list[float]]:
    """(bits, entries) of maps q (B, h, w) under the float map model, per map stage."""
    bits, entries = [], []
    for s in range(map_net.stage_bias.shape[0]):
        st = torch.full((len(q),), s)
        x, pos = map_inputs(q[:, None], st, rates, map_net.scales)
        nats = F.cross_entropy(map_net(x, st), q, reduction="none") * pos[:, 0].float()
        bits.append(float(nats.sum()) / math.log(2))
        entries.append(float(pos.float().sum()))
    return bits, entries


# -- 4. level calibration ---------------------------------------------------------------------------
@torch.no_grad()
def kodak_bpp(codec, prepared, rate: float) -> tuple[float, float]:
    """(mean file bpp, mean raw bpp) over prepared Kodak images at rate r (real entropy-coded sizes)."""
    from .. import bitstream

    bpps, raws = [], []
    for feats, bits, pixels in prepared:
        rate32 = float(np.float32(rate))
        q = quantize_importance(codec.model.importance_map(feats, rate32)[0, 0], codec.config)
        c = codec.entropy.encode(q, bits, rate32)
        size = len(c.map_section) + len(c.bits_section) + bitstream.HEADER_SIZE + bitstream.TRAILER_SIZE
        bpps.append(size * 8 / pixels)
        raws.append((float(kept_channels(q, codec.config).sum()) + 4 * q.numel()) / pixels)
    return float(np.mean(bpps)), float(np.mean(raws))


@torch.no_grad()
def prepare_kodak(codec, kodak_dir: Path) -> list:
    from ..images import load_rgb

    out = []
    for f in list_images(kodak_dir):
        rgb = load_rgb(f)
        x, _ = pad_to_multiple(torch.tensor(rgb).permute(2, 0, 1)[None].float() / 255)
        e, feats = codec.model.analyze(x)
        out.append((feats, (e[0] > 0.5).float(), rgb.shape[0] * rgb.shape[1]))
    return out


def calibrate_levels(
    codec, kodak_dir: Path, rates=START_RATES, low: float = 0.15, high: float = 0.6, floor: float = 0.06
) -> list[dict]:
    """Measure mean Kodak bpp per level from real file sizes; widen the end rates toward <= low and >= high bpp.

    An end rate moves only while that lowers (raises) the measured bpp. A bottom level below `floor`
    bpp moves up first (a `zero_level` model keeps almost nothing at r = 0.04: 0.036 bpp at 16 dB, a
    level no one would pick and one that dominates every BD fit). If an end moved, the inner levels
    are re-placed at the same relative positions in log r and measured again.
    """
    prepared = prepare_kodak(codec, kodak_dir)
    start = list(rates)
    measured = {r: kodak_bpp(codec, prepared, r) for r in start}
    lo, hi = start[0], start[-1]
    while measured[lo][0] < floor and lo < start[1] / 1.3:
        lo = round(lo * 1.3, 4)
        measured[lo] = kodak_bpp(codec, prepared, lo)
    while measured[lo][0] > low and lo > 0.006:
        cand = round(lo * 0.6, 4)
        measured[cand] = kodak_bpp(codec, prepared, cand)
        if measured[cand][0] >= measured[lo][0]:
            break
        lo = cand
    while measured[hi][0] < high and hi < 0.99:
        cand = round(min(hi + 0.1, 0.99), 4)
        measured[cand] = kodak_bpp(codec, prepared, cand)
        if measured[cand][0] <= measured[hi][0]:
            break
        hi = cand
    if (lo, hi) != (start[0], start[-1]):
        span = math.log(start[-1]) - math.log(start[0])
        pos = [(math.log(r) - math.log(start[0])) / span for r in start]
        start = [round(math.exp(math.log(lo) + t * (math.log(hi) - math.log(lo))), 4) for t in pos]
        for r in start:
            if r not in measured:
                measured[r] = kodak_bpp(codec, prepared, r)
    levels = []
    for k, r in enumerate(start):
        bpp, raw = measured[r]
        levels.append({"level": k + 1, "rate": r, "bpp": round(bpp, 4), "raw_bpp": round(raw, 4)})
        print(f"level {k + 1}: r={r} bpp={bpp:.4f} raw={raw:.4f} saving={1 - bpp / raw:.1%}", flush=True)
    return levels


def add_quality(codec, kodak_dir: Path, levels: list[dict]) -> list[dict]:
    """Add each level's mean Kodak PSNR, SSIM and MS-SSIM (the reference reconstruction) to its row."""
    from .export import measure_rates

    images = [load_rgb(f) for f in list_images(kodak_dir)]
    rows = measure_rates(codec.model, images, [float(np.float32(lv["rate"])) for lv in levels])
    for lv, row in zip(levels, rows, strict=True):
        lv.update(psnr=row["psnr"], ssim=row["ssim"], ms_ssim=row["ms_ssim"])
        print(f"level {lv['level']}: psnr={lv['psnr']} ssim={lv['ssim']} ms_ssim={lv['ms_ssim']}", flush=True)
    return levels


# -- 5. golden file ------------------------------------------------------------------------------------
def pixels_sha256(rgb: np.ndarray) -> str:
    """SHA-256 of an H x W x 3 uint8 image's raw bytes (row-major RGB)."""
    return hashlib.sha256(np.ascontiguousarray(rgb, dtype=np.uint8).tobytes()).hexdigest()


def codes_sha256(q: torch.Tensor, bits: torch.Tensor) -> str:
    """SHA-256 of decoded (q, bits): exact on every machine, unlike float decoder pixels."""
    return hashlib.sha256(q.to(torch.uint8).numpy().tobytes() + bits.to(torch.uint8).numpy().tobytes()).hexdigest()


@torch.no_grad()
def write_golden(codec, kodak_dir: Path, out_dir: Path, side: int = 32, level: int = 4, uniform: bool = False) -> dict:
    """Pick the 32 x 32 Kodak crop whose decoder output is farthest from uint8 rounding boundaries and write
    it as `golden_name(uniform)` .cwic / .json (`uniform`: a uniform-map file, whose map is one symbol).

    A float32 decoder can differ in the last bits between CPUs; a large rounding margin keeps the
    committed pixel hash valid across machines. The hash of the decoded codes is exact anyway.
    """
    from ..images import load_rgb

    rgb = load_rgb(sorted(list_images(kodak_dir))[22])  # kodim23
    best = None
    rng = np.random.default_rng(0)
    for _ in range(60):
        y, x = rng.integers(rgb.shape[0] - side), rng.integers(rgb.shape[1] - side)
        crop = np.ascontiguousarray(rgb[y : y + side, x : x + side])
        c = codec.compress(crop, level=level, uniform=uniform)
        _, q, bits = codec.decode_codes(c.data)
        v = codec.synthesize_levels(q, bits, side, side).double()
        inner = v[(v > 0.5) & (v < 254.5)]
        margin = float((inner - inner.floor() - 0.5).abs().min()) if inner.numel() else 0.5
        if best is None or margin > best[0]:
            best = (margin, (int(y), int(x)), c, q, bits)
    margin, (y, x), c, q, bits = best
    out_dir.mkdir(parents=True, exist_ok=True)
    name = golden_name(uniform)
    (out_dir / f"{name}.cwic").write_bytes(c.data)
    info = {
        "source": f"kodim23.png crop x={x} y={y} {side}x{side}",
        "level": level,
        "uniform": uniform,
        "checkpoint_id": codec.checkpoint_id,
        "bytes": len(c.data),
        "pixels_sha256": pixels_sha256(codec.decompress(c.data)),
        "codes_sha256": codes_sha256(q, bits),
        "min_rounding_margin": round(margin, 6),
        "regenerate": "python -m cwic train-entropy --skip-train  (or without --skip-train to retrain)",
    }
    (out_dir / f"{name}.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def golden_name(uniform: bool) -> str:
    """File stem of the golden file: a content-weighted one, and a uniform one (constant map section)."""
    return "golden-uniform" if uniform else "golden"
