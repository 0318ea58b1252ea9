"""`python -m cwic export`: turn a training run into a shipped checkpoint.

Loads the run's best (or last; its moving average when trained with --ema) weights, writes
them as fp16 `model.safetensors` + `model.json` (with the training record), and checks on the
Kodak images that fp16 keeps the quality: the reference path (`model.reconstruct`, before
entropy coding) at a few rates with fp32 and with the shipped fp16 weights.
`python -m cwic train-entropy` then adds the entropy models and the calibrated levels (real
file bpp, PSNR, MS-SSIM) to the same checkpoint. `--average-with` exports the mean of several
runs' last weights instead (a "model soup", Wortsman et al. 2022), a way for runs side by side to
feed one model; measured in session 28 (docs/training.md), two seeds from one start ended within
0.03 dB of each other and their mean bought nothing. A `cwic train --decoder-only` run codes exactly
as its start did, so `--entropy-from START` carries the start's context models over instead
(checked: the encoder and the importance net must be the start's, bit for bit); then
`train-entropy --skip-train` re-measures the levels' quality and rewrites the golden file.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from ..checkpoint import DEFAULT_CHECKPOINT, load_checkpoint, save_checkpoint
from ..evaluation.metrics import quality
from ..images import load_rgb
from ..models.config import ModelConfig
from ..models.network import CWICModel, raw_bpp, reconstruct
from .data import DEFAULT_KODAK_DIR, list_images
from .ema import WeightAverage
from .pack import read_pack
from .train import model_card

CHECK_RATES = (0.05, 0.3, 0.65)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cwic export", description=__doc__)
    p.add_argument("--run", type=Path, required=True, help="training run folder (OUT of cwic train)")
    p.add_argument("--which", choices=("best", "last"), default="last")
    p.add_argument("--to", type=Path, default=DEFAULT_CHECKPOINT)
    p.add_argument("--kodak", type=Path, default=DEFAULT_KODAK_DIR, help="Kodak folder, or a pack's Kodak images")
    p.add_argument("--rates", type=float, nargs="+", default=list(CHECK_RATES), help="rates of the fp16 check")
    p.add_argument(
        "--average-with",
        type=Path,
        nargs="+",
        default=[],
        help="with --which last: other runs of the same architecture whose last weights are averaged in",
    )
    p.add_argument(
        "--entropy-from",
        type=Path,
        default=None,
        help="a checkpoint whose context models and levels to keep: the start of a --decoder-only run",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.which == "last":
        model, info = load_run(args.run)
        card = model_card(info, model.config) | {"exported_on": platform.node()}
        if args.average_with:
            card["averaged_with"] = average_runs(model, args.average_with)
    elif args.average_with:
        raise SystemExit("cwic export: --average-with averages last weights; drop --which best")
    else:
        model, card, _ = load_checkpoint(args.run / "best")
    model.eval()
    if args.kodak.suffix == ".zip":  # a pack from `cwic pack-data` carries the quick-evaluation images
        images = list(read_pack(args.kodak).kodak.values())
    else:
        images = [load_rgb(f) for f in list_images(args.kodak)]
    fp32 = measure_rates(model, images, args.rates)
    save_checkpoint(args.to, model, card, fp16=True)
    shipped, card, _ = load_checkpoint(args.to)
    check = measure_rates(shipped, images, args.rates)
    for row, ref in zip(check, fp32, strict=True):
        row["psnr_fp32"] = ref["psnr"]
    card["fp16_check"] = {
        "note": f"mean over {len(images)} Kodak images, reference path before entropy coding; "
        "raw_bpp = kept code bits + 4 bits per map entry",
        "rows": check,
    }
    extra = {}
    if args.entropy_from:
        card, extra = carry_entropy(shipped, card, args.entropy_from)
    save_checkpoint(args.to, shipped, card, extra=extra, fp16=True)
    print(json.dumps(check, indent=1))
    return 0


def carry_entropy(model: CWICModel, card: dict, source: Path) -> tuple[dict, dict]:
    """The card and `entropy.*` tensors that give `model` the context models of `source`, which codes alike.

    Context models are fitted to one encoder's codes and one importance net's maps: any other
    analysis side would decode, but at a cost the levels no longer describe, so it is refused.
    """
    start, start_card, extra = load_checkpoint(source)
    if "entropy" not in start_card or not extra:
        raise SystemExit(f"cwic export: --entropy-from {source} has no context models")
    mine, theirs = model.state_dict(), start.state_dict()
    differ = [
        k for k in theirs if not k.startswith("decoder.") and (k not in mine or not torch.equal(mine[k], theirs[k]))
    ]
    if mine.keys() != theirs.keys() or differ:
        raise SystemExit(
            f"cwic export: --entropy-from {source}: the encoder or the importance net differ from it "
            f"({', '.join(differ[:3]) or 'other layers'}), so its context models do not fit these codes; "
            "run `python -m cwic train-entropy` instead"
        )
    kept = {"entropy": start_card["entropy"], "levels": start_card.get("levels", [])}
    return card | kept | {"entropy_from": start_card["weights_id"]}, extra


def load_run(folder: Path) -> tuple[CWICModel, dict]:
    """A run's last weights (its moving average when trained with --ema: what ships) and its train-state info."""
    info = json.loads((folder / "train_state.json").read_text())
    model = CWICModel(ModelConfig.from_dict(info["config"]))
    tensors = load_file(str(folder / "train_state.safetensors"))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    if (folder / WeightAverage.FILE).is_file():
        WeightAverage(model, 1.0, folder).copy_to_model()
    return model, info


def average_runs(model: CWICModel, others: list[Path]) -> list[dict]:
    """Replace `model`'s weights by their mean with the last weights of `others`; the others' records.

    Only runs of one architecture average: a different config is refused, not reshaped.
    """
    dtypes = {k: v.dtype for k, v in model.state_dict().items()}
    state = {k: v.double() for k, v in model.state_dict().items()}
    records = []
    for folder in others:
        other, info = load_run(folder)
        if other.config != model.config:
            raise SystemExit(f"cwic export: --average-with {folder}: its architecture differs from --run's")
        for k, v in other.state_dict().items():
            state[k] += v.double()
        records.append(model_card(info, other.config)["training"])
    n = len(others) + 1
    model.load_state_dict({k: (v / n).to(dtypes[k]) for k, v in state.items()})
    return records


def measure_rates(model: CWICModel, images: list[np.ndarray], rates: list[float]) -> list[dict]:
    """Mean raw bpp, PSNR, SSIM and MS-SSIM of the reference reconstruction at each rate."""
    rows = []
    for r in rates:
        vals = []
        for img in images:
            x = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float().div(255)
            y, _, mask = reconstruct(model, x, r)
            rec = (y[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            q = quality(img, rec)
            vals.append((raw_bpp(mask, img.shape[:2]), q["psnr"], q["ssim"], q["ms_ssim"]))
        m = np.mean(np.array(vals, dtype=np.float64), axis=0)
        digits = {"raw_bpp": 4, "psnr": 3, "ssim": 4, "ms_ssim": 4}
        rows.append({"rate": r, **{k: round(v, digits[k]) for k, v in zip(digits, m, strict=True)}})
    return rows
