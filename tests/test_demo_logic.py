"""The demo's logic and its event function, without a browser (demo/compare.py, demo/ui.py)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cwic.errors import ImageError
from demo import compare

EXAMPLE = Path(__file__).resolve().parents[1] / "demo" / "examples" / "kodim23.png"


@pytest.fixture(scope="module")
def codec():
    from cwic import Codec

    return Codec.load()


@pytest.fixture(scope="module")
def small_rgb() -> np.ndarray:
    """A 256x176 crop of a Kodak example: big enough for MS-SSIM, small enough to be quick."""
    return np.asarray(Image.open(EXAMPLE).convert("RGB"))[100:276, 200:456].copy()


def _png(rgb: np.ndarray, path: Path, **kw) -> Path:
    Image.fromarray(rgb).save(path, **kw)
    return path


def test_examples_are_shipped_and_load_unchanged():
    rgb, note = compare.prepare_image(str(EXAMPLE))
    assert rgb.shape == (512, 768, 3) and rgb.dtype == np.uint8 and note == ""
    assert np.array_equal(rgb, np.asarray(Image.open(EXAMPLE).convert("RGB")))


def test_large_upload_is_downscaled_with_a_note(tmp_path):
    path = _png(np.full((1500, 2400, 3), 90, np.uint8), tmp_path / "big.png")
    rgb, note = compare.prepare_image(str(path))
    assert rgb.shape == (640, 1024, 3)
    assert "Downscaled from 2400×1500 to 1024×640" in note


def test_exif_rotation_and_odd_modes_are_handled(tmp_path):
    rgba = np.zeros((40, 60, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 128
    rgb, _ = compare.prepare_image(str(_png(rgba, tmp_path / "rgba.png")))
    assert rgb.shape == (40, 60, 3)
    grey16 = Image.fromarray(np.full((32, 48), 65535, np.uint16))
    rgb, _ = compare.prepare_image(str(_png(np.asarray(grey16), tmp_path / "g16.png")))
    assert rgb.shape == (32, 48, 3) and rgb.min() == 255
    exif = Image.Exif()
    exif[274] = 6  # rotate 90° on display
    buf = io.BytesIO()
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(buf, "JPEG", exif=exif)
    rgb, _ = compare.prepare_image(buf.getvalue())
    assert rgb.shape == (60, 40, 3)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (None, "Upload an image"),
        (b"not an image at all", "not an image this demo can read"),
        (EXAMPLE.read_bytes()[:3000], "truncated or corrupt"),
    ],
)
def test_bad_uploads_give_a_clear_error(data, message):
    with pytest.raises(ImageError, match=message):
        compare.prepare_image(data)


def test_tiny_and_huge_images_are_refused(tmp_path):
    with pytest.raises(ImageError, match="at least 16 px"):
        compare.prepare_image(str(_png(np.zeros((10, 300, 3), np.uint8), tmp_path / "thin.png")))
    with pytest.raises(ImageError, match="at least 16 px on each side after the demo's downscaling"):
        compare.prepare_image(str(_png(np.zeros((20, 3000, 3), np.uint8), tmp_path / "strip.png")))
    bomb = tmp_path / "bomb.png"
    Image.new("1", (9000, 8000)).save(bomb)  # 72 Mpx, a few kB on disk
    with pytest.raises(ImageError, match="at most 50 Mpx"):
        compare.prepare_image(str(bomb))


def test_compare_reports_real_files_at_matched_sizes(codec, small_rgb, tmp_path):
    comp = compare.compare(codec, small_rgb, level=2, classical=["JPEG", "JPEG 2000"], uniform=True)
    h, w = small_rgb.shape[:2]
    assert comp.cwic.bpp() == pytest.approx(len(comp.cwic.data) * 8 / (h * w))
    assert np.array_equal(comp.cwic.image, codec.decompress(comp.cwic.data))
    names = [r.name for r in comp.others]
    assert names == ["JPEG", "JPEG 2000", "cwic (uniform map)"]
    for r in comp.others[:2]:  # the classical codecs never get more than 2 % over the cwic file
        assert len(r.data) <= 1.02 * len(comp.cwic.data) or "larger" in r.settings
        assert r.image.shape == small_rgb.shape
    for r in [comp.cwic, *comp.others]:
        assert r.scores["psnr"] > 15 and 0 < r.scores["ssim"] <= 1 and 0 < r.scores["ms_ssim"] <= 1

    rows = compare.metrics_rows(comp)
    assert [row[0] for row in rows] == ["cwic", *names]
    assert all(len(row) == len(compare.METRIC_HEADERS) for row in rows)
    assert rows[0][1] == len(comp.cwic.data)
    assert f"{len(comp.cwic.data):,} bytes" in compare.summary_markdown(comp)

    files = compare.write_files(comp, tmp_path)
    assert files[0].read_bytes() == comp.cwic.data
    assert np.array_equal(np.asarray(Image.open(files[1])), comp.cwic.image)
    assert [f.stat().st_size for f in files[2:]] == [len(r.data) for r in comp.others]


def test_maps_are_drawn_over_the_image(codec, small_rgb):
    comp = compare.compare(codec, small_rgb, level=1, classical=[])
    c = comp.compressed
    assert np.asarray(c.bits_per_block).shape == (22, 32)
    for img in compare.maps(comp):
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and img.shape[1] > 300
        assert img.std() > 10  # a picture, not a blank canvas


def test_target_bpp_and_unknown_codec(codec, small_rgb):
    comp = compare.compare(codec, small_rgb, bpp=0.4, classical=["WebP"])
    assert comp.others[0].name == "WebP"
    with pytest.raises(ValueError, match="unknown codec"):
        compare.compare(codec, small_rgb, level=1, classical=["GIF"])


def test_event_function_fills_every_panel(codec, tmp_path):
    gr = pytest.importorskip("gradio")
    from demo.ui import make_handler

    run = make_handler(codec)
    path = str(_png(np.asarray(Image.open(EXAMPLE).convert("RGB"))[:200, :300], tmp_path / "crop.png"))
    slider, summary, note, imp, kept, bits, gallery, table, files = run(
        path, "cwic level", 1, 0.3, ["JPEG"], False, progress=lambda *a, **k: None
    )
    assert slider[0].shape == slider[1].shape == (200, 300, 3)
    assert "cwic file" in summary and note == ""
    assert all(m.ndim == 3 for m in (imp, kept, bits))
    assert [caption.split(" ·")[0] for _, caption in gallery] == ["cwic", "JPEG"]
    assert [row[0] for row in table] == ["cwic", "JPEG"]
    assert Path(files[0]).suffix == ".cwic" and Path(files[0]).stat().st_size == table[0][1]
    bad = tmp_path / "bad.png"
    bad.write_text("hello")
    with pytest.raises(gr.Error, match="bad.png is not an image"):
        run(str(bad), "cwic level", 1, 0.3, [], False, progress=lambda *a, **k: None)
