"""The kept code's coded size as a training term (`cwic train --code-rate`).

The paper's rate term is the importance map's sum: it counts the channels kept, not what they
cost once the context model codes them, so nothing in training asks the encoder for bits the
coder finds predictable. Encoder-side refinement (cwic.refinement) prices exactly that, and
finds codes the same decoder renders about a dB better at the same file size; this term puts
the same price into training, so the encoder learns such codes for every image at once.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..checkpoint import load_checkpoint
from ..entropy_models.context_model import BitContext, code_bits, import_int, int_shape
from ..models.network import quantize_importance, top_group
from ..refinement import rd_slope

DB_PER_NATURAL = 10 / math.log(10)  # d(10 log10 D) = DB_PER_NATURAL * dD / D


class CodeRate:
    """A checkpoint's float bit model and R-D slopes: the per-sample price of a batch's kept bits."""

    def __init__(self, folder: Path, metric: str) -> None:
        model, card, tensors = load_checkpoint(folder)
        try:
            width, kernel = int_shape(tensors, "entropy.bits")
        except KeyError:
            raise SystemExit(f"--bit-model {folder} has no context models (run cwic train-entropy on it)") from None
        self.config = model.config
        self.net = BitContext(model.config.n, model.config.levels, width, kernel)
        import_int(self.net, tensors, "entropy.bits")
        self.net.eval().requires_grad_(False)
        self.card_levels, self.metric = card.get("levels") or [], metric
        rd_slope(self.card_levels, 0.5, (metric,))  # ValueError now, not at the first step, when uncalibrated

    def to(self, device: torch.device) -> CodeRate:
        self.net.to(device)
        return self

    def bpp(self, bits: Tensor, p: Tensor, rate: Tensor) -> Tensor:
        """(B,) bits per pixel of each sample's kept code; differentiable in `bits` (B, n, h, w)."""
        t = top_group(quantize_importance(p.detach(), self.config), self.config)
        rate_int = torch.round(rate.detach().float() * 16).long()
        return code_bits(self.net, bits.float(), t, rate_int) / (64 * bits.shape[-2] * bits.shape[-1])

    def slopes(self, rate: Tensor) -> Tensor:
        """(B,) dB per bpp of the checkpoint's level curve at each sample's rate."""
        r = rate.detach().cpu().double().numpy()
        s = [rd_slope(self.card_levels, float(v), (self.metric,)) for v in np.atleast_1d(r)]
        return torch.tensor(s, dtype=torch.float32, device=rate.device)
