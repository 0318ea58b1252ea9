"""Image quality metrics on 8-bit RGB, one definition each (see docs/metrics.md).

- PSNR: 10 log10(255^2 / MSE), MSE over all pixels and the three channels.
- SSIM: Wang et al. 2004 with an 11-tap Gaussian window (sigma 1.5), per channel, averaged over RGB
  (the definition of scikit-image's `structural_similarity(..., gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=255)`).
- MS-SSIM: 5 scales, the same window, average-pool downsampling (the definition of pytorch-msssim's
  `ms_ssim(..., data_range=255)`); images whose shorter side is at most 160 px give None.

SSIM is MS-SSIM's first scale, so `quality` computes both in one pass. Both run in numpy float32
with separable filters: single-threaded (the demo scores several codecs at once on two cores) and
equal to the two reference libraries to within 1e-5 (tests/test_metrics.py checks it).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import correlate1d

MS_SSIM_MIN_SIDE = 161  # the smaller side must exceed (11 - 1) * 2**4 for four downsamplings
MS_SSIM_WEIGHTS = np.array([0.0448, 0.2856, 0.3001, 0.2363, 0.1333])
C1, C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - size // 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return (g / g.sum()).astype(np.float32)


WINDOW = _gaussian_window()


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape or a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"need two HxWx3 images of one shape, got {a.shape} and {b.shape}")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 RGB images; inf when they are identical."""
    _check_pair(a, b)
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def _blur_valid(x: np.ndarray) -> np.ndarray:
    """Separable Gaussian over (C, H, W), keeping only positions where the window fits."""
    k = len(WINDOW) // 2
    y = correlate1d(x, WINDOW, axis=1, mode="constant")[:, k:-k]
    return correlate1d(y, WINDOW, axis=2, mode="constant")[:, :, k:-k]


def _ssim_cs(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean SSIM and contrast-structure term of (C, H, W) float32 images."""
    mu_x, mu_y, xx, yy, xy = np.split(_blur_valid(np.concatenate([x, y, x * x, y * y, x * y])), 5)
    mxx, myy, mxy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    cs = (2 * (xy - mxy) + C2) / ((xx - mxx) + (yy - myy) + C2)
    s = (2 * mxy + C1) / (mxx + myy + C1) * cs
    return s.mean(axis=(1, 2), dtype=np.float64), cs.mean(axis=(1, 2), dtype=np.float64)


def _avg_pool2(x: np.ndarray) -> np.ndarray:
    """2x2 average pooling; an odd side is zero-padded by one on both ends first (torch's avg_pool2d)."""
    _, h, w = x.shape
    x = np.pad(x, ((0, 0), (h % 2, h % 2), (w % 2, w % 2)))
    x = x[:, : x.shape[1] // 2 * 2, : x.shape[2] // 2 * 2]
    return (x[:, 0::2, 0::2] + x[:, 1::2, 0::2] + x[:, 0::2, 1::2] + x[:, 1::2, 1::2]) / 4


def _ssim_and_ms_ssim(a: np.ndarray, b: np.ndarray, multiscale: bool) -> tuple[float, float | None]:
    _check_pair(a, b)
    if min(a.shape[:2]) < len(WINDOW):
        raise ValueError(f"SSIM needs images of at least {len(WINDOW)} px on each side, got {a.shape[:2]}")
    x, y = (np.ascontiguousarray(t.transpose(2, 0, 1), dtype=np.float32) for t in (a, b))
    s, cs = _ssim_cs(x, y)
    first = float(s.mean())
    if not multiscale or min(a.shape[:2]) < MS_SSIM_MIN_SIDE:
        return first, None
    terms = [np.maximum(cs, 0)]
    for scale in range(1, len(MS_SSIM_WEIGHTS)):
        x, y = _avg_pool2(x), _avg_pool2(y)
        s, cs = _ssim_cs(x, y)
        terms.append(np.maximum(cs if scale < len(MS_SSIM_WEIGHTS) - 1 else s, 0))
    return first, float(np.prod(np.stack(terms) ** MS_SSIM_WEIGHTS[:, None], axis=0).mean())


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM (Gaussian sigma 1.5, mean over RGB) of two uint8 RGB images."""
    return _ssim_and_ms_ssim(a, b, multiscale=False)[0]


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float | None:
    """MS-SSIM of two uint8 RGB images, or None when the image is too small to score."""
    return _ssim_and_ms_ssim(a, b, multiscale=True)[1]


def quality(a: np.ndarray, b: np.ndarray) -> dict[str, float | None]:
    """{"psnr", "ssim", "ms_ssim"} of two uint8 RGB images, SSIM and MS-SSIM from one pass."""
    s, ms = _ssim_and_ms_ssim(a, b, multiscale=True)
    return {"psnr": psnr(a, b), "ssim": s, "ms_ssim": ms}
