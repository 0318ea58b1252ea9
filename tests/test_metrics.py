"""Metrics on known cases (identical, constant, too small) and against the reference libraries."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cwic.evaluation.metrics import MS_SSIM_MIN_SIDE, ms_ssim, psnr, quality, ssim

EXAMPLE = Path(__file__).resolve().parents[1] / "demo" / "examples" / "kodim15.png"


def _noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_identical_images():
    a = _noise(176, 176)
    assert psnr(a, a) == math.inf
    assert ssim(a, a) == pytest.approx(1.0)
    assert ms_ssim(a, a) == pytest.approx(1.0, abs=1e-6)


def test_constant_images_match_hand_computed_values():
    a = np.full((32, 40, 3), 100, np.uint8)
    b = np.full((32, 40, 3), 110, np.uint8)
    # MSE = 100 -> PSNR = 10 log10(255^2 / 100)
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 100))
    # no variance: only the luminance term is left, (2 mu_a mu_b + C1) / (mu_a^2 + mu_b^2 + C1)
    c1 = (0.01 * 255) ** 2
    assert ssim(a, b) == pytest.approx((2 * 100 * 110 + c1) / (100**2 + 110**2 + c1), abs=1e-6)


def test_psnr_of_a_known_error():
    a = _noise(20, 30)
    b = a.astype(np.int16)
    b[::2] = np.clip(b[::2] + 4, 0, 255)
    mse = np.mean((a.astype(float) - b) ** 2)
    assert psnr(a, b.astype(np.uint8)) == pytest.approx(10 * math.log10(255**2 / mse))


def test_ms_ssim_needs_161_pixels_and_says_so():
    assert MS_SSIM_MIN_SIDE == 161
    small = _noise(160, 400)
    assert ms_ssim(small, small) is None
    big = _noise(161, 161)
    worse = np.clip(big.astype(int) + _noise(161, 161, 1) // 8, 0, 255).astype(np.uint8)
    assert 0 < ms_ssim(big, worse) < 1


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="one shape"):
        psnr(_noise(8, 8), _noise(8, 9))


@pytest.mark.parametrize("shape", [(512, 768), (333, 500), (161, 170), (40, 57)])
def test_ssim_and_ms_ssim_equal_the_reference_libraries(shape):
    """cwic's numpy SSIM / MS-SSIM are scikit-image's and pytorch-msssim's definitions."""
    import torch
    from pytorch_msssim import ms_ssim as reference_ms_ssim
    from skimage.metrics import structural_similarity

    a = np.asarray(Image.open(EXAMPLE).convert("RGB"))[: shape[0], : shape[1]]
    b = np.clip(a.astype(int) + _noise(*shape, seed=3) // 10 - 12, 0, 255).astype(np.uint8)
    expected_ssim = structural_similarity(
        a, b, channel_axis=2, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
    )
    q = quality(a, b)
    assert q["ssim"] == pytest.approx(expected_ssim, abs=1e-5) == ssim(a, b)
    assert q["psnr"] == psnr(a, b)
    if min(shape) < MS_SSIM_MIN_SIDE:
        assert q["ms_ssim"] is None
    else:
        ta, tb = (torch.from_numpy(x.astype(np.float32)).permute(2, 0, 1)[None] for x in (a, b))
        expected_ms = float(reference_ms_ssim(ta, tb, data_range=255.0))
        assert q["ms_ssim"] == pytest.approx(expected_ms, abs=1e-5) == ms_ssim(a, b)


def test_ssim_needs_the_window_to_fit():
    with pytest.raises(ValueError, match="at least 11 px"):
        ssim(_noise(10, 30), _noise(10, 30))
