"""Differentiable distortions for training (`cwic train --distortion`).

The evaluation metrics in `cwic.metrics` are numpy and not differentiable; this is their torch
twin for the loss: the same 11-tap Gaussian window (sigma 1.5), constants and scale weights as
`cwic.metrics.ms_ssim`, on images in [0, 1]. Training crops are small (128 px), so MS-SSIM uses
as many scales as fit (a scale needs at least 11 px) with the weights of those scales renormalised;
on images of 161 px and more it is the full 5-scale MS-SSIM (tests/test_distortion.py checks it
against pytorch-msssim).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..evaluation.metrics import MS_SSIM_WEIGHTS, WINDOW

_C1, _C2 = 0.01**2, 0.03**2


def _blur_valid(x: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter per channel, 'valid' borders (the metric's definition)."""
    c = x.shape[1]
    w = torch.as_tensor(WINDOW, dtype=x.dtype, device=x.device)
    x = F.conv2d(x, w.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return F.conv2d(x, w.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)


def _ssim_cs(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """SSIM and contrast-structure term per image and channel (N x C), averaged over pixels."""
    mu_x, mu_y = _blur_valid(x), _blur_valid(y)
    sxx = _blur_valid(x * x) - mu_x**2
    syy = _blur_valid(y * y) - mu_y**2
    sxy = _blur_valid(x * y) - mu_x * mu_y
    cs = (2 * sxy + _C2) / (sxx + syy + _C2)
    ssim = (2 * mu_x * mu_y + _C1) / (mu_x**2 + mu_y**2 + _C1) * cs
    return ssim.mean(dim=(2, 3)), cs.mean(dim=(2, 3))


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """SSIM per image of two N x 3 x H x W batches in [0, 1] (mean over channels, as the metric)."""
    return _ssim_cs(x, y)[0].mean(dim=1)


def ms_ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """MS-SSIM per image of two N x 3 x H x W batches in [0, 1], over the scales that fit."""
    return _ms_ssim_and_ssim(x, y)[0]


def _ms_ssim_and_ssim(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """MS-SSIM and the full-scale SSIM per image: its first scale computes SSIM anyway."""
    side = min(x.shape[-2:])
    if side < len(WINDOW):
        raise ValueError(f"MS-SSIM needs images of at least {len(WINDOW)} px, got {tuple(x.shape[-2:])}")
    scales, pooled = 1, side
    while scales < len(MS_SSIM_WEIGHTS) and (pooled := pooled // 2 + pooled % 2) >= len(WINDOW):
        scales += 1  # avg_pool2d pads an odd side, so it halves rounding up
    weights = MS_SSIM_WEIGHTS[:scales]
    if scales < len(MS_SSIM_WEIGHTS):
        weights = weights / weights.sum()
    weights = torch.as_tensor(weights, dtype=x.dtype)
    factors = []
    for s in range(scales):
        ssim, cs = _ssim_cs(x, y)
        if s == 0:
            full_scale_ssim = ssim.mean(dim=1)
        if s < scales - 1:
            factors.append(torch.relu(cs))
            pad = [n % 2 for n in x.shape[-2:]]
            x, y = F.avg_pool2d(x, 2, padding=pad), F.avg_pool2d(y, 2, padding=pad)
        else:
            factors.append(torch.relu(ssim))
    per_channel = torch.prod(torch.stack(factors) ** weights.to(x.device).view(-1, 1, 1), dim=0)
    return per_channel.mean(dim=1), full_scale_ssim


def distortion(name: str, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-image training distortion: 'mse', 'ms-ssim' (1 - MS-SSIM), 'mse+ssim', 'mse+ssim+ms-ssim'
    or 'ssim+ms-ssim'.

    'mse+ssim' is the geometric mean sqrt(MSE * (1 - SSIM)): its log, which the per-dB weighting
    follows, is the average of the two distortions in dB, the objective encoder-side refinement
    uses by default because it gains in PSNR, SSIM and MS-SSIM together (docs/refinement.md).
    'mse+ssim+ms-ssim' is the cube root of MSE * (1 - SSIM) * (1 - MS-SSIM): all three metrics the
    evaluation reports, in dB, with equal weight. 'ssim+ms-ssim' is sqrt((1 - SSIM) * (1 - MS-SSIM)):
    the two metrics issue 14's bar is written in, with PSNR left to follow.
    """
    if name == "ms-ssim":
        return 1 - ms_ssim(x_hat, x)
    if name == "ssim+ms-ssim":
        ms, full_scale = _ms_ssim_and_ssim(x_hat, x)
        return torch.sqrt((1 - full_scale).clamp(min=1e-6) * (1 - ms).clamp(min=1e-6))
    mse = ((x_hat - x) ** 2).mean(dim=(1, 2, 3))
    if name == "mse":
        return mse
    if name == "mse+ssim":
        return torch.sqrt(mse.clamp(min=1e-10) * (1 - ssim(x_hat, x)).clamp(min=1e-6))
    if name == "mse+ssim+ms-ssim":
        ms, full_scale = _ms_ssim_and_ssim(x_hat, x)
        return (mse.clamp(min=1e-10) * (1 - full_scale).clamp(min=1e-6) * (1 - ms).clamp(min=1e-6)) ** (1 / 3)
    raise ValueError(f"unknown distortion {name!r}: use one of {', '.join(DISTORTIONS)}")


DISTORTIONS = ("mse", "ms-ssim", "mse+ssim", "mse+ssim+ms-ssim", "ssim+ms-ssim")
