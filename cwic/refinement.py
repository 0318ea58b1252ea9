"""Encoder-side refinement of an image's binary codes; the decoder and the bitstream stay as they are.

The encoder is one feed-forward pass, trained to be good on average over crops; for a given image
its codes are rarely the ones the fixed decoder would render best (the amortization gap of an
under-trained encoder). `refine_codes` closes part of that gap at encoding time: it takes the
encoder's code activations as a start and runs Adam on their logits, through the training's
straight-through binarizer, against

    J = D_dB + slope * R

where D_dB is the distortion in dB averaged over the metrics refined for (10 log10 MSE for PSNR,
10 log10 (1 - SSIM) for SSIM and MS-SSIM; PSNR and SSIM by default: each alone buys its own metric
at the other's cost), R the code's bits per pixel under the float twin of the shipped bit context
model, and slope the checkpoint's own rate-distortion slope in the same dB at that rate (dB per
bpp, from the levels calibrated on Kodak). So a bit flips only where it buys quality at the price the levels
themselves pay. The importance map, and with it the mask, is not changed. The result is whatever
bits come out; the file stores them like any other code, so decoding stays exact and any decoder
reads it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from .entropy_models.context_model import BitContext, code_bits, rate_plane_value
from .models.network import Binarize, CWICModel

DEFAULT_STEPS = 20  # nine tenths of what 40 steps buy, for half the time (docs/refine_steps.json)
LEARNING_RATE = 0.05  # per-step change of a code logit (Adam normalizes the step size)
METRICS = ("psnr", "ssim", "ms-ssim")
DEFAULT_METRICS = ("psnr", "ssim")
_CARD_KEYS = {"psnr": "psnr", "ssim": "ssim", "ms-ssim": "ms_ssim"}


def check_metrics(metrics: tuple[str, ...]) -> tuple[str, ...]:
    """`metrics` as a tuple, ValueError naming the choices when empty or unknown."""
    metrics = tuple(metrics)
    if not metrics or any(m not in METRICS for m in metrics):
        raise ValueError(f"refine_for must name some of {', '.join(METRICS)}, got {metrics!r}")
    return metrics


def distortion_db(metrics: tuple[str, ...], x_hat: Tensor, x: Tensor) -> Tensor:
    """Per image (B,), the mean over `metrics` of the distortion in dB, lower is better: 10 log10 MSE,
    10 log10 (1 - SSIM)."""
    total = x_hat.new_zeros(x.shape[0])
    for m in metrics:
        if m == "psnr":
            total = total + 10 * torch.log10(((x_hat - x) ** 2).mean(dim=(1, 2, 3)).clamp(min=1e-10))
        else:
            # Imported here so that `from cwic import Codec` stays free of training code (tests/test_layout.py).
            from .training.distortion import ms_ssim, ssim

            score = (ssim if m == "ssim" else ms_ssim)(x_hat.clamp(0, 1), x)
            total = total + 10 * torch.log10((1 - score).clamp(min=1e-10))
    return total / len(metrics)


def rd_slope(levels: list[dict], rate: float, metrics: tuple[str, ...]) -> float:
    """dB per bpp of the checkpoint's calibrated level curve at `rate` (>= 0), averaged over `metrics`.

    The slope at each level is the mean of its two neighbouring segments' (one at the ends);
    between levels it is interpolated in r. ValueError when the card has no measured levels.
    """
    keys = [_CARD_KEYS[m] for m in metrics]
    if len(levels) < 2 or any(lv.get(k) is None for lv in levels for k in [*keys, "bpp"]):
        raise ValueError("code refinement needs a checkpoint whose levels are calibrated (`cwic train-entropy`)")
    lv = sorted(levels, key=lambda d: d["rate"])
    db = [sum(d[k] if k == "psnr" else -10 * math.log10(1 - d[k]) for k in keys) / len(keys) for d in lv]
    seg = [(db[i + 1] - db[i]) / max(lv[i + 1]["bpp"] - lv[i]["bpp"], 1e-6) for i in range(len(lv) - 1)]
    at = [seg[0]] + [(a + b) / 2 for a, b in zip(seg, seg[1:], strict=False)] + [seg[-1]]
    return max(float(np.interp(rate, [d["rate"] for d in lv], at)), 0.0)


def refine_codes(
    model: CWICModel,
    bit_net: BitContext,
    x: Tensor,
    e: Tensor,
    mask: Tensor,
    t: Tensor,
    rate: float,
    slope: float,
    metrics: tuple[str, ...] = DEFAULT_METRICS,
    steps: int = DEFAULT_STEPS,
) -> Tensor:
    """Refined 0/1 codes (B, n, h, w) for the padded images x (B, 3, H, W) in [0, 1], all at one rate.

    The objective is taken over the padded image, as the decoder renders it (the padding
    replicates the last row and column, and is at most 7 pixels). Each image's objective is its
    own: the steps of a batch are those of each image alone (Adam is per element).

    e: the encoder's sigmoid activations; mask, t: each file's mask and last kept group per block
    (`top_group` of its map); slope: dB per bpp.
    Returns, per image, the encoder's own thresholded codes when no step improved J in float32
    (checked once at the end, because the steps run in bfloat16 where the CPU has it).
    """
    b, pixels = x.shape[0], x.shape[-2] * x.shape[-1]
    tt, rint = t.reshape(b, 1, *t.shape[-2:]), torch.full((b,), rate_plane_value(rate))
    amp = bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)())

    def objective(bits: Tensor, low_precision: bool) -> Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=low_precision):
            x_hat = model.synthesize(bits, mask).float()
        return distortion_db(metrics, x_hat, x) + slope * code_bits(bit_net, bits, tt, rint) / pixels

    start = (e > 0.5).float()
    z = torch.logit(e.detach().clamp(1e-4, 1 - 1e-4)).requires_grad_(True)
    opt = torch.optim.Adam([z], lr=LEARNING_RATE)
    best, best_j = start.clone(), torch.full((b,), math.inf)
    with torch.enable_grad():
        for _ in range(steps):
            bits = Binarize.apply(torch.sigmoid(z))
            j = objective(bits, amp)
            better = j.detach() < best_j
            best[better], best_j = bits.detach()[better], torch.where(better, j.detach(), best_j)
            (z.grad,) = torch.autograd.grad(j.sum(), [z])  # the weights' gradients are never formed
            opt.step()
    with torch.no_grad():
        keep = objective(best, False) < objective(start, False)
    return torch.where(keep.view(b, 1, 1, 1), best, start)
