"""The training distortions: MS-SSIM equals pytorch-msssim on full-size images, works on crops."""

import numpy as np
import pytest
import torch
from pytorch_msssim import ms_ssim as reference_ms_ssim

from cwic.training.distortion import distortion, ms_ssim, ssim


def _pair(shape: tuple[int, int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.random((2, 3, *shape), dtype=np.float32))
    smooth = torch.nn.functional.avg_pool2d(x, 5, stride=1, padding=2)
    return x, (smooth + 0.05 * torch.randn_like(x)).clamp(0, 1)


@pytest.mark.parametrize("shape", [(256, 256), (171, 230)])
def test_ms_ssim_equals_reference_on_full_size(shape):
    x, y = _pair(shape)
    ours = ms_ssim(y, x)
    ref = reference_ms_ssim(y, x, data_range=1.0, size_average=False)
    assert torch.allclose(ours, ref, atol=1e-5)


def test_ms_ssim_on_training_crops_uses_the_scales_that_fit():
    x, y = _pair((128, 128))
    value = ms_ssim(y, x)
    assert value.shape == (2,) and torch.all((value > 0) & (value < 1))
    assert torch.allclose(ms_ssim(x, x), torch.ones(2))


def test_distortion_has_a_gradient_and_names_the_choices():
    x, y = _pair((64, 64))
    y.requires_grad_(True)
    distortion("ms-ssim", y, x).sum().backward()
    assert y.grad is not None and torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0
    assert torch.allclose(distortion("mse", x, x), torch.zeros(2))
    mse, one_minus_ssim = distortion("mse", y, x), 1 - ssim(y, x)
    assert torch.allclose(distortion("mse+ssim", y, x) ** 2, mse * one_minus_ssim, rtol=1e-5)  # dB averaged
    product = mse * one_minus_ssim * (1 - ms_ssim(y, x))
    assert torch.allclose(distortion("mse+ssim+ms-ssim", y, x) ** 3, product, rtol=1e-5)
    assert torch.allclose(distortion("ssim+ms-ssim", y, x) ** 2, product / mse, rtol=1e-5)
    with pytest.raises(ValueError, match="unknown distortion 'l1'"):
        distortion("l1", x, y)
