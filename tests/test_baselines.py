"""Classical baselines: rate matching on real file bytes, decodable files, recorded versions."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cwic.evaluation import baselines

KODAK = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kodak" / "kodim23.png"


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    if KODAK.exists():
        return np.asarray(Image.open(KODAK).convert("RGB"))[100:228, 200:392].copy()
    yy, xx = np.mgrid[0:128, 0:192]
    return np.stack([(xx * 1.3) % 256, (yy * 2) % 256, (xx + yy) % 256], -1).astype(np.uint8)


@pytest.mark.parametrize("codec", baselines.CODECS)
@pytest.mark.parametrize("target", [0.6, 1.5])
def test_rate_matched_within_tolerance_or_closest_below(rgb, codec, target):
    cache: dict = {}
    e = baselines.encode_at_bpp(codec, rgb, target, tol=0.02, cache=cache)
    h, w = rgb.shape[:2]
    assert e.bpp == len(e.data) * 8 / (h * w)
    assert e.matched and e.target_bpp == target
    if abs(e.bpp - target) > 0.02 * target:
        # not within tolerance: it must be the largest probe below the target, and the knob
        # setting right above it (integer qualities) must overshoot the tolerance
        assert e.bpp < target
        assert not [p for p in cache.values() if e.bpp < p.bpp <= target * 1.02]
        if baselines.SPECS[codec].integer:
            nxt = baselines.encode(codec, rgb, e.settings["quality"] + 1)
            assert nxt.bpp > target * 1.02
    with Image.open(io.BytesIO(e.data)) as im:
        assert np.array_equal(np.asarray(im.convert("RGB")), e.reconstruction)
    assert e.reconstruction.shape == rgb.shape


def test_unreachable_rate_returns_smallest_file_unmatched(rgb):
    e = baselines.encode_at_bpp("jpeg", rgb, 0.001)
    assert not e.matched
    assert e.settings["quality"] == baselines.SPECS["jpeg"].lo


def test_cache_shares_probes_between_targets(rgb):
    cache: dict = {}
    baselines.encode_at_bpp("webp", rgb, 1.0, cache=cache)
    n = len(cache)
    again = baselines.encode_at_bpp("webp", rgb, 1.0, cache=cache)
    assert len(cache) == n and again.probes == 0


def test_sweep_is_monotone_in_rate(rgb):
    for codec in baselines.CODECS:
        bpps = [e.bpp for e in baselines.sweep(codec, rgb)]
        assert bpps == sorted(bpps), codec


def test_bad_target_and_versions(rgb):
    with pytest.raises(ValueError, match="positive"):
        baselines.encode_at_bpp("jpeg", rgb, 0)
    v = baselines.encoder_versions()
    assert {"Pillow", "libjpeg-turbo", "openjpeg", "libwebp", "libavif"} <= set(v)
    e = baselines.encode("jpeg2000", rgb, 0.5)
    assert e.settings["format"] == "JPEG2000" and e.settings["irreversible"] and e.settings["no_jp2"]
