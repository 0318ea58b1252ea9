"""The content-weighted compression network (Li et al., CVPR 2018).

Encoder -> binary codes B (n maps at 1/8 resolution); importance network -> p in (0, 1);
p quantized to L levels (L + 1 with `zero_level`) decides how many of the n channels are kept at
each location;
decoder rebuilds the image from the masked codes with depth-to-space upsampling.

Two documented departures from the paper, both for a single variable-rate model:
- the importance network also takes the target rate r (a constant input plane), so one
  network produces the map for every rate level instead of one network per rate;
- the decoder sees kept bits as +-1 and dropped bits as 0, so it can tell "dropped" from
  "bit = 0" (the paper multiplies 0/1 codes by the mask).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ModelConfig

MIN_SIDE = 16  # smallest image side the codec accepts (2x2 code locations)
RENDER_THREADS = 2  # synthesis always runs with this many threads: its float32 output depends on it


@contextmanager
def fixed_threads(n: int) -> Iterator[None]:
    """Run torch ops with exactly n threads (float32 conv results can depend on the thread count)."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


class Binarize(torch.autograd.Function):
    """Forward: 1 where e > 0.5 else 0. Backward: straight-through (the paper's proxy B~(e) = e)."""

    @staticmethod
    def forward(ctx, e: Tensor) -> Tensor:  # noqa: D102
        return (e > 0.5).to(e.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # noqa: D102
        return grad


class ImportanceMask(torch.autograd.Function):
    """Mask from the importance map, with the paper's windowed gradient (Eq. 7, LOCAL mode).

    Forward: q = floor(S*p) (clamped to S-1, S = config.symbols); channel k is kept iff
    k < `kept_channels(q)`. Backward: dm_k/dp = S for channels within one group (n/L channels) of
    the cut, that is k in [h - n/L, h + n/L) with h the number of kept channels, and 0 elsewhere.
    """

    @staticmethod
    def forward(ctx, p: Tensor, config: ModelConfig) -> Tensor:  # noqa: D102
        kept = kept_channels(quantize_importance(p, config), config)
        k = torch.arange(config.n, device=p.device).view(1, config.n, 1, 1)
        ctx.save_for_backward(kept)
        ctx.config = config
        return (k < kept).to(p.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):  # noqa: D102
        (kept,) = ctx.saved_tensors
        c = ctx.config
        k = torch.arange(c.n, device=grad.device).view(1, c.n, 1, 1)
        window = (k >= kept - c.group) & (k < kept + c.group)
        grad_p = c.symbols * (grad * window).sum(dim=1, keepdim=True)
        return grad_p, None


def shift_to_mean(p: Tensor, rate: Tensor, iters: int = 40) -> Tensor:
    """Shift each map (B, 1, h, w) by the constant t that makes mean(clamp(p + t, 0, 1)) = rate.

    The rate then holds by construction, so the only gradient that shapes the map is the
    distortion's: it moves importance from where it helps least to where it helps most. t is
    found by bisection (the mean is monotone in t); its gradient is the implicit one, so an
    unclamped entry gets g - mean(g) over the unclamped entries and a clamped one gets none.
    """
    r = rate.view(-1, 1, 1, 1).to(p.dtype)
    with torch.no_grad():
        lo, hi = torch.full_like(r, -1.0), torch.full_like(r, 1.0)
        for _ in range(iters):
            mid = (lo + hi) / 2
            below = (p + mid).clamp(0, 1).mean(dim=(1, 2, 3), keepdim=True) < r
            lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
        t = (lo + hi) / 2
        inner = ((p + t > 0) & (p + t < 1)).to(p.dtype)
    delta = (p - p.detach()) * inner  # zero in value; carries the gradient of the unclamped entries
    shift = delta.sum(dim=(1, 2, 3), keepdim=True) / inner.sum(dim=(1, 2, 3), keepdim=True).clamp(min=1)
    return torch.where(inner.bool(), p + t - shift, (p + t).clamp(0, 1))


def quantize_importance(p: Tensor, config: ModelConfig) -> Tensor:
    """Map symbols q (int64) in [0, S), floor(S*p) with p = 1 mapped to S-1 (S = config.symbols)."""
    s = config.symbols
    return torch.clamp(torch.floor(p * s), 0, s - 1).long()


def top_group(q: Tensor, config: ModelConfig) -> Tensor:
    """The last channel group kept at each map symbol q: q, or q - 1 with `zero_level` (-1: none kept).

    The bit coder's stages and inputs are written in this, so they mean the same for both kinds of map.
    """
    return q - int(config.zero_level)


def kept_channels(q: Tensor, config: ModelConfig) -> Tensor:
    """Channels kept at map symbols q: the first (n/L)(top group + 1)."""
    return (top_group(q, config) + 1) * config.group


def mask_from_levels(q: Tensor, config: ModelConfig) -> Tensor:
    """0/1 mask (B, n, h, w) from map symbols (B, 1, h, w): the first `kept_channels(q)` channels."""
    k = torch.arange(config.n, device=q.device).view(1, config.n, 1, 1)
    return (k < kept_channels(q, config)).float()


class ResBlock(nn.Module):
    """y = ReLU(x + ReLU(conv3x3(ReLU(conv3x3(x))))), the official block (no BatchNorm)."""

    def __init__(self, channels: int, inner: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, inner, 3, padding=1)
        self.conv2 = nn.Conv2d(inner, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        return F.relu(x + F.relu(self.conv2(F.relu(self.conv1(x)))))


class GDN(nn.Module):
    """Generalized divisive normalization (Balle et al. 2016): y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2).

    `inverse` multiplies instead (IGDN, for the decoder). beta and gamma are kept non-negative by
    taking absolute values; gamma starts at 0.1 I plus a small positive off-diagonal, so every
    entry has a gradient from the first step. The `gdn` transform of ModelConfig uses it in place
    of the ReLU after every layer outside the residual blocks: a documented departure from the
    paper, whose ReLU structure stays the default.
    """

    def __init__(self, channels: int, inverse: bool = False) -> None:
        super().__init__()
        self.inverse = inverse
        self.beta = nn.Parameter(torch.ones(channels))
        self.gamma = nn.Parameter(0.1 * torch.eye(channels) + 1e-3)

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        c = self.gamma.shape[0]
        norm = F.conv2d(x * x, self.gamma.abs().view(c, c, 1, 1), self.beta.abs() + 1e-6)
        return x * torch.sqrt(norm) if self.inverse else x * torch.rsqrt(norm)


def _act(c: ModelConfig, channels: int, inverse: bool) -> nn.Module:
    return GDN(channels, inverse) if c.gdn else nn.ReLU()


class Encoder(nn.Module):
    """Image in [-1, 1] -> (pre-binarization sigmoid outputs e, features for the importance net)."""

    def __init__(self, c: ModelConfig) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, c.enc1, 8, stride=4, padding=2),
            _act(c, c.enc1, False),
            ResBlock(c.enc1, c.enc_inner),
            nn.Conv2d(c.enc1, c.enc2, 4, stride=2, padding=1),
            _act(c, c.enc2, False),
            ResBlock(c.enc2, c.enc_inner),
            nn.Conv2d(c.enc2, c.enc2, 3, padding=1),
            _act(c, c.enc2, False),
            ResBlock(c.enc2, c.enc_inner),
        )
        self.to_codes = nn.Conv2d(c.enc2, c.n, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:  # noqa: D102
        feats = self.body(x)
        return torch.sigmoid(self.to_codes(feats)), feats


class ImportanceNet(nn.Module):
    """conv3x3 -> ReLU -> conv1x1 -> sigmoid on the encoder features plus a rate plane."""

    def __init__(self, c: ModelConfig) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c.enc2 + 1, c.imp, 3, padding=1)
        self.conv2 = nn.Conv2d(c.imp, 1, 1)

    def forward(self, feats: Tensor, rate: Tensor) -> Tensor:  # noqa: D102
        plane = rate.view(-1, 1, 1, 1).to(feats.dtype).expand(feats.shape[0], 1, *feats.shape[2:])
        return torch.sigmoid(self.conv2(F.relu(self.conv1(torch.cat([feats, plane], 1)))))


class Decoder(nn.Module):
    """Masked +-1 codes -> image in [-1, 1]; depth-to-space x2 then x4 (PixelShuffle order)."""

    def __init__(self, c: ModelConfig) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c.n, c.dec1, 3, padding=1),
            _act(c, c.dec1, True),
            ResBlock(c.dec1, c.dec_inner),
            nn.Conv2d(c.dec1, c.dec1, 3, padding=1),
            _act(c, c.dec1, True),
            ResBlock(c.dec1, c.dec_inner),
            nn.PixelShuffle(2),
            nn.Conv2d(c.dec1 // 4, c.dec2, 3, padding=1),
            _act(c, c.dec2, True),
            ResBlock(c.dec2, c.dec_inner),
            nn.PixelShuffle(4),
            nn.Conv2d(c.dec2 // 16, c.dec_out, 3, padding=1),
            _act(c, c.dec_out, True),
            nn.Conv2d(c.dec_out, 3, 1),
        )

    def forward(self, codes: Tensor) -> Tensor:  # noqa: D102
        return self.body(codes)


class CWICModel(nn.Module):
    """The whole autoencoder. Images are float tensors in [0, 1], (B, 3, H, W), any H, W >= 16."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.importance = ImportanceNet(config)
        self.decoder = Decoder(config)

    # -- pieces the codec calls one by one -------------------------------------------------
    def analyze(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Padded image in [0, 1] -> (sigmoid code activations e, encoder features)."""
        return self.encoder(x * 2 - 1)

    def importance_map(
        self, feats: Tensor, rate: Tensor | float, roi: Tensor | None = None, uniform: bool = False
    ) -> Tensor:
        """Importance map p in [0, 1], (B, 1, h, w), for target mean importance `rate`.

        `uniform`: the map is replaced by its mean (the paper's "no content weighting" ablation).
        `roi` (B or 1, 1, h, w) in [0, 1] raises p to p + roi (1 - p) (a painted region of
        interest); with `mean_shift` that happens before the shift, so the mean, and with it the
        file size, stays put and the bits move into the region.
        """
        rate = torch.as_tensor(rate, dtype=feats.dtype, device=feats.device).reshape(-1)
        p = self.importance(feats, rate).float()  # float32 even under autocast: the shift and the levels need it
        if uniform:
            p = p.mean(dim=(1, 2, 3), keepdim=True).expand_as(p)
        if roi is not None:
            p = p + roi * (1 - p)
        return shift_to_mean(p, rate) if self.config.mean_shift else p

    def synthesize(self, bits: Tensor, mask: Tensor) -> Tensor:
        """0/1 bits and 0/1 mask (B, n, h, w) -> image in [0, 1] (unclamped, padded size)."""
        return (self.decoder((2 * bits - 1) * mask) + 1) / 2

    # -- training ------------------------------------------------------------------------------
    def forward(
        self,
        x: Tensor,
        rate: Tensor,
        uniform: Tensor | None = None,
        detach_importance: bool = False,
        noise: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Training pass on crops whose sides are multiples of 8.

        `uniform` (B,): where a value is not NaN, that sample's importance map is replaced by
        that constant, for the first training stage and the paper's no-content-weighting
        ablation, so one decoder also learns to decode uniform maps.
        `detach_importance`: the importance net reads the encoder features without passing
        gradients back, so the rate terms train the map but do not steer the encoder.
        `noise` (uniform in [0, 1), the shape of the code): stochastic binarization, bit = 1 with
        probability e (Toderici et al. 2016), so the decoder's input is unbiased where e is near
        0.5; the gradient is straight-through as for the threshold. Decoding always thresholds.

        Under autocast only the decoder runs in low precision. The encoder and the importance net
        stay float32, as the codec runs them: in bf16, 0.6 % of the bits flip against the float32
        codes of a trained net, and repairing those flips dominated its gradient (cosine -0.13
        against float32 on the same batch, docs/train_step_speed.json).
        """
        with torch.autocast(x.device.type, enabled=False):
            e, feats = self.analyze(x.float())
            p = self.importance_map(feats.detach() if detach_importance else feats, rate)
        if uniform is not None:
            u = uniform.view(-1, 1, 1, 1).to(p.dtype)
            p = torch.where(torch.isnan(u), p, torch.nan_to_num(u).expand_as(p))
        bits = Binarize.apply(e if noise is None else e - noise + 0.5)  # e > u where noise is given
        mask = ImportanceMask.apply(p, self.config)
        return {"x_hat": self.synthesize(bits, mask), "p": p, "mask": mask, "bits": bits}


def pad_to_multiple(x: Tensor, multiple: int = 8) -> tuple[Tensor, tuple[int, int]]:
    """Replicate-pad (B, C, H, W) on the bottom/right to multiples of `multiple`."""
    h, w = x.shape[-2:]
    if h < MIN_SIDE or w < MIN_SIDE:
        raise ValueError(f"image is {w}x{h}; cwic needs at least {MIN_SIDE}x{MIN_SIDE} pixels")
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x, (h, w)


@torch.no_grad()
def reconstruct(model: CWICModel, x: Tensor, rate: float) -> tuple[Tensor, Tensor, Tensor]:
    """Any-size image batch in [0, 1] -> (reconstruction in [0, 1], levels q, mask).

    The reference path without entropy coding: used for checks and training-time evaluation.
    """
    xp, (h, w) = pad_to_multiple(x)
    e, feats = model.analyze(xp)
    q = quantize_importance(model.importance_map(feats, rate), model.config)
    mask = mask_from_levels(q, model.config)
    with fixed_threads(RENDER_THREADS):  # as the codec renders: the decoded file equals this bit for bit
        x_hat = model.synthesize((e > 0.5).float(), mask)
    return x_hat[..., :h, :w].clamp(0, 1), q, mask


def raw_bpp(mask: Tensor, image_hw: tuple[int, int], map_bits: int = 4) -> float:
    """Kept code bits plus `map_bits` per map entry, per image pixel (before entropy coding)."""
    h, w = image_hw
    entries = mask.shape[0] * mask.shape[-1] * mask.shape[-2]
    return float((mask.sum() + map_bits * entries) / (mask.shape[0] * h * w))
