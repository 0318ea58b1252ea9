"""Encoder-side code refinement: real files that decode exactly, a better objective, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cwic.cli import encode_main
from cwic.entropy_models.context_model import code_bits, rate_plane_value
from cwic.evaluation.metrics import psnr
from cwic.images import load_rgb
from cwic.models.network import mask_from_levels, pad_to_multiple, quantize_importance, top_group
from cwic.refinement import distortion_db, rd_slope, refine_codes

REPO = Path(__file__).resolve().parents[1]
KODAK = REPO.parent / "shared" / "data" / "kodak"


pytestmark = pytest.mark.usefixtures("one_thread")


def one_code_bits(net, bits: torch.Tensor, t: torch.Tensor, rate: float) -> torch.Tensor:
    """`code_bits` of one image: last kept groups t (h, w), its file's rate."""
    return code_bits(net, bits, t.view(1, 1, *t.shape[-2:]), torch.tensor([rate_plane_value(rate)]))[0]


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A 96 x 120 crop of kodim23 (the right side is not a multiple of 8)."""
    return np.ascontiguousarray(load_rgb(KODAK / "kodim23.png")[180:276, 290:410])


@pytest.mark.parametrize("kwargs", [{"level": 2}, {"level": 5, "uniform": True}, {"bpp": 0.3}])
def test_refined_file_decodes_to_its_reconstruction(codec, photo, kwargs):
    c = codec.compress(photo, refine=4, **kwargs)
    assert c.refine_steps == 4
    assert np.array_equal(codec.decompress(c.data), c.reconstruction)
    base = codec.compress(photo, **kwargs)
    assert np.array_equal(c.importance_levels, base.importance_levels)  # the map is not refined
    assert c.rate == base.rate


def test_refinement_improves_the_objective_and_the_picture(codec, photo):
    """What refine_codes returns is never worse in its own float32 objective than the encoder's codes,
    and on a photo 20 steps raise PSNR at about the same size."""
    x, _ = pad_to_multiple(torch.tensor(photo).permute(2, 0, 1)[None].float() / 255)
    rate = codec.rate_of(3)
    with torch.no_grad():
        e, feats = codec.model.analyze(x)
        q = quantize_importance(codec.model.importance_map(feats, rate)[0, 0], codec.config)
    mask, t = mask_from_levels(q[None, None], codec.config), top_group(q, codec.config)
    net = codec.entropy.float_bit_context()
    slope = rd_slope(codec.levels, rate, ("psnr", "ssim"))
    refined = refine_codes(codec.model, net, x, e, mask, t, rate, slope, ("psnr", "ssim"), steps=6)

    def objective(bits):
        with torch.no_grad():
            d = distortion_db(("psnr", "ssim"), codec.model.synthesize(bits, mask), x)
            return float(d + slope * one_code_bits(net, bits, t, rate) / x[0, 0].numel())

    assert objective(refined) <= objective((e > 0.5).float())
    base, better = codec.compress(photo, level=3), codec.compress(photo, level=3, refine=20)
    assert psnr(photo, better.reconstruction) > psnr(photo, base.reconstruction)
    assert better.bpp < 1.1 * base.bpp


def test_a_batch_is_refined_image_by_image(codec, photo):
    """Refining crops together (how training crops get refined codes) keeps each crop's own objective:
    every crop's result is no worse than its encoder codes in float32, whatever the other crop did."""
    x = (
        torch.stack(
            [torch.tensor(photo[:64, :64]).permute(2, 0, 1), torch.tensor(photo[32:96, 56:120]).permute(2, 0, 1)]
        ).float()
        / 255
    )
    rate = codec.rate_of(2)
    with torch.no_grad():
        e, feats = codec.model.analyze(x)
        q = quantize_importance(codec.model.importance_map(feats, rate), codec.config)
    mask, t = mask_from_levels(q, codec.config), top_group(q, codec.config)
    net = codec.entropy.float_bit_context()
    slope = rd_slope(codec.levels, rate, ("psnr", "ssim"))
    refined = refine_codes(codec.model, net, x, e, mask, t, rate, slope, ("psnr", "ssim"), steps=6)
    assert refined.shape == e.shape and set(refined.unique().tolist()) <= {0.0, 1.0}
    rint = torch.full((2,), rate_plane_value(rate))

    def objective(bits):
        with torch.no_grad():
            d = distortion_db(("psnr", "ssim"), codec.model.synthesize(bits, mask), x)
            return d + slope * code_bits(net, bits, t, rint) / x[0, 0].numel()

    mine, start = objective(refined), objective((e > 0.5).float())
    assert mine.shape == (2,) and bool((mine <= start).all())


def test_code_bits_estimates_the_coded_size(codec, photo):
    """The float twin of the bit model prices the code within a few per cent of the range coder."""
    c = codec.compress(photo, level=4)
    x, _ = pad_to_multiple(torch.tensor(photo).permute(2, 0, 1)[None].float() / 255)
    with torch.no_grad():
        e, _ = codec.model.analyze(x)
        t = top_group(torch.tensor(c.importance_levels), codec.config)
        est = float(one_code_bits(codec.entropy.float_bit_context(), (e > 0.5).float(), t, c.rate))
    assert est == pytest.approx(c.code_bits, rel=0.05)


def test_rd_slope_follows_the_levels(codec):
    levels = codec.levels
    slopes = [rd_slope(levels, lv["rate"], ("psnr",)) for lv in levels]
    assert all(s > 0 for s in slopes) and slopes[0] > slopes[-1]  # quality gets dearer as the rate grows
    with pytest.raises(ValueError, match="calibrated"):
        rd_slope([{"level": 1, "rate": 0.1, "bpp": None}, {"level": 2, "rate": 0.2, "bpp": None}], 0.1, ("psnr",))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"refine": -1}, "refine must be"),
        ({"refine": 2.5}, "refine must be"),
        ({"refine": True}, "refine must be"),
        ({"refine": 2, "refine_for": ("psnr", "lpips")}, "refine_for must name"),
        ({"refine": 2, "refine_for": ()}, "refine_for must name"),
    ],
)
def test_bad_refine_options_are_refused(codec, photo, kwargs, message):
    with pytest.raises(ValueError, match=message):
        codec.compress(photo, level=2, **kwargs)


def test_cli_refine(tmp_path, photo, capsys):
    from PIL import Image

    src = tmp_path / "in.png"
    Image.fromarray(photo).save(src)
    assert encode_main([str(src), str(tmp_path / "a.cwic"), "--level", "2", "--refine", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["refine_steps"] == 2
    assert encode_main([str(src), str(tmp_path / "b.cwic"), "--refine", "2", "--refine-for", "fid"]) == 2
    assert "refine_for must name" in capsys.readouterr().err
