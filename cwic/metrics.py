"""Image quality metrics on 8-bit RGB, one definition each (see docs/metrics.md).

- PSNR: 10 log10(255^2 / MSE), MSE over all pixels and the three channels.
- SSIM: Wang et al. 2004 with a Gaussian window (sigma 1.5), per channel, averaged over RGB
  (scikit-image, `gaussian_weights=True, use_sample_covariance=False, data_range=255`).
- MS-SSIM: pytorch-msssim's `ms_ssim` (5 scales, Gaussian window 11, sigma 1.5) on RGB in
  [0, 255]; images whose shorter side is at most 160 px cannot be scored and give None.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from pytorch_msssim import ms_ssim as _ms_ssim
from skimage.metrics import structural_similarity

MS_SSIM_MIN_SIDE = 161  # pytorch-msssim: the smaller side must exceed (11 - 1) * 2**4


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape or a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"need two HxWx3 images of one shape, got {a.shape} and {b.shape}")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 RGB images; inf when they are identical."""
    _check_pair(a, b)
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM (Gaussian sigma 1.5, mean over RGB) of two uint8 RGB images."""
    _check_pair(a, b)
    return float(
        structural_similarity(
            a, b, channel_axis=2, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
        )
    )


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float | None:
    """MS-SSIM of two uint8 RGB images, or None when the image is too small to score."""
    _check_pair(a, b)
    if min(a.shape[:2]) < MS_SSIM_MIN_SIDE:
        return None
    # float32: about 10x faster than float64 on CPU; the score differs by < 1e-6.
    ta, tb = (torch.from_numpy(np.array(x, dtype=np.float32)).permute(2, 0, 1)[None] for x in (a, b))
    return float(_ms_ssim(ta, tb, data_range=255.0))
