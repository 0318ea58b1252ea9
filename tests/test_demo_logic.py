"""The demo's logic and its event function, without a browser (demo/*.py)."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from cwic import Codec
from cwic.errors import ImageError
from cwic.evaluation import baselines
from demo import compare, inputs, maps, rd_curves

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "demo" / "examples" / "kodim23.png"


@pytest.fixture(scope="module")
def codec():
    from cwic import Codec

    return Codec.load()


@pytest.fixture(scope="module")
def small_rgb() -> np.ndarray:
    """A 192x168 crop of a Kodak example: big enough for MS-SSIM (> 160 px), small enough to be quick."""
    return np.asarray(Image.open(EXAMPLE).convert("RGB"))[100:268, 200:392].copy()


def _png(rgb: np.ndarray, path: Path, **kw) -> Path:
    Image.fromarray(rgb).save(path, **kw)
    return path


def test_examples_are_shipped_and_load_unchanged():
    rgb, note = inputs.prepare_image(str(EXAMPLE))
    assert rgb.shape == (512, 768, 3) and rgb.dtype == np.uint8 and note == ""
    assert np.array_equal(rgb, np.asarray(Image.open(EXAMPLE).convert("RGB")))


def test_large_upload_is_downscaled_with_a_note(tmp_path):
    path = _png(np.full((1500, 2400, 3), 90, np.uint8), tmp_path / "big.png")
    rgb, note = inputs.prepare_image(str(path))
    assert rgb.shape == (640, 1024, 3)
    assert "Downscaled from 2400×1500 to 1024×640" in note


def test_exif_rotation_and_odd_modes_are_handled(tmp_path):
    rgba = np.zeros((40, 60, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 128
    rgb, _ = inputs.prepare_image(str(_png(rgba, tmp_path / "rgba.png")))
    assert rgb.shape == (40, 60, 3)
    grey16 = Image.fromarray(np.full((32, 48), 65535, np.uint16))
    rgb, _ = inputs.prepare_image(str(_png(np.asarray(grey16), tmp_path / "g16.png")))
    assert rgb.shape == (32, 48, 3) and rgb.min() == 255
    exif = Image.Exif()
    exif[274] = 6  # rotate 90° on display
    buf = io.BytesIO()
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(buf, "JPEG", exif=exif)
    rgb, _ = inputs.prepare_image(buf.getvalue())
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
        inputs.prepare_image(data)


def test_thin_strips_are_never_downscaled_below_the_codec_minimum(tmp_path):
    rgb, note = inputs.prepare_image(str(_png(np.full((16, 4000, 3), 90, np.uint8), tmp_path / "strip.png")))
    assert rgb.shape == (16, 4000, 3)
    assert note.startswith("Kept at 4000×16 px") and "never takes the short side under cwic's minimum of 16" in note
    rgb, note = inputs.prepare_image(str(_png(np.full((3000, 20, 3), 90, np.uint8), tmp_path / "tall.png")))
    assert rgb.shape == (2400, 16, 3)
    assert note.startswith("Downscaled from 20×3000 to 16×2400 px") and "minimum of 16" in note
    with pytest.raises(ImageError, match="too long and thin: .* the long side is still 5000 px, over cwic's 4096"):
        inputs.prepare_image(str(_png(np.zeros((16, 5000, 3), np.uint8), tmp_path / "long.png")))


def test_tiny_and_huge_images_are_refused(tmp_path):
    with pytest.raises(ImageError, match="is 300×10 px; cwic needs at least 16 px on each side"):
        inputs.prepare_image(str(_png(np.zeros((10, 300, 3), np.uint8), tmp_path / "thin.png")))
    with pytest.raises(ImageError, match="is 3000×10 px; cwic needs at least 16 px"):
        inputs.prepare_image(str(_png(np.zeros((10, 3000, 3), np.uint8), tmp_path / "strip.png")))
    bomb = tmp_path / "bomb.png"
    Image.new("1", (9000, 8000)).save(bomb)  # 72 Mpx, a few kB on disk
    with pytest.raises(ImageError, match="at most 50 Mpx"):
        inputs.prepare_image(str(bomb))


def test_compare_refines_both_cwic_files_when_asked(codec, small_rgb):
    comp = compare.compare(codec, small_rgb, level=2, classical=[], uniform=True, refine=3)
    assert comp.compressed.refine_steps == 3
    for r in (comp.cwic, comp.others[0]):
        assert r.settings.endswith(", 3 refinement steps")
        assert np.array_equal(r.image, codec.decompress(r.data))


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
    comp = compare.compare(codec, small_rgb, level=1, classical=["JPEG"])
    c = comp.compressed
    assert np.asarray(c.bits_per_block).shape == (21, 24)
    drawn = maps.maps(comp)
    for img in drawn:
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and img.shape[1] > 300
        assert img.std() > 10  # a picture, not a blank canvas
    assert drawn[3].shape == drawn[2].shape  # JPEG's bits map beside cwic's, the same geometry (clicks zoom alike)
    assert maps.maps(compare.compare(codec, small_rgb, level=1, classical=["WebP"]))[3] is None  # no JPEG, no map


def test_level_strip_draws_every_level_growing(codec, small_rgb):
    comp = compare.compare(codec, small_rgb, level=1, classical=[])
    strip = maps.level_strip(comp, codec)
    panels = strip[maps.STRIP_TOP : maps.STRIP_TOP + 168]  # 192x168 px: 8 px per block, each panel the image's size
    ink = (panels != 255).any(axis=(0, 2))  # the panels, then the colour bar, between white gaps
    edges = np.flatnonzero(np.diff(np.r_[0, ink.astype(int), 0]))
    spans = list(zip(edges[::2], edges[1::2], strict=True))[: len(codec.levels)]
    assert [b - a for a, b in spans] == [192] * len(codec.levels)
    green = [panels[:, a:b, 1].mean() for a, b in spans]  # viridis: more channels kept, greener
    assert green == sorted(green) and green[-1] - green[0] > 100
    red = (panels == [255, 0, 0]).all(axis=2)
    assert red[:, slice(*spans[0])].sum() > 4 * 150 and not red[:, spans[1][0] :].any()  # level 1's file, framed


def test_target_note_only_when_the_search_misses():
    assert compare.target_note(0.305, 0.3) == ""
    assert "cannot reach 0.6 bpp" in compare.target_note(0.157, 0.6)


def test_target_bpp_and_unknown_codec(codec, small_rgb):
    comp = compare.compare(codec, small_rgb[:96, :96], bpp=0.4, classical=["WebP"])
    assert comp.others[0].name == "WebP"
    with pytest.raises(ValueError, match="unknown codec"):
        compare.compare(codec, small_rgb, level=1, classical=["GIF"])


def test_event_function_fills_every_panel(codec, tmp_path):
    gr = pytest.importorskip("gradio")
    from demo.ui import make_handler, zoom_at

    run = make_handler({"cwic-slim": codec})
    path = str(_png(np.asarray(Image.open(EXAMPLE).convert("RGB"))[:64, :96], tmp_path / "crop.png"))
    slider, summary, note, imp, kept, bits, jpeg_map, strip, gallery, table, files, zoom, comp = run(
        path, "cwic level", 1, 0.3, ["JPEG"], False, progress=lambda *a, **k: None
    )

    def load(path):
        with Image.open(path) as im:
            assert im.format == "PNG"
            return np.asarray(im.convert("RGB"))

    assert load(slider[0]).shape == load(slider[1]).shape == (64, 96, 3)
    assert np.array_equal(load(slider[1]), comp.cwic.image)  # lossless: the browser sees the decoded pixels
    assert "cwic file" in summary and "model cwic-slim" in summary and "MS-SSIM **n/a" in summary and note == ""
    assert all(load(m).ndim == 3 for m in (imp, kept, bits, jpeg_map))
    assert np.array_equal(load(strip), maps.level_strip(comp, codec))  # every level, from this file's encoder pass
    assert [caption.split(" ·")[0] for _, caption in gallery] == ["cwic", "JPEG"]
    assert [row[0] for row in table] == ["cwic", "JPEG"]
    assert Path(files[0]).suffix == ".cwic" and Path(files[0]).stat().st_size == table[0][1]
    assert [name for _, name in zoom] == ["original", "cwic", "JPEG"]
    assert load(zoom[0][0]).shape == (3 * 64, 3 * 64, 3)
    assert comp.cwic.data == Path(files[0]).read_bytes()

    # a click on a map (panel pixels: this 96 px wide image is drawn 4x) moves the zoom there
    moved = zoom_at(comp, SimpleNamespace(index=[4 * 90, 4 * 60]))
    assert [name for _, name in moved] == ["original", "cwic", "JPEG"]
    assert np.array_equal(load(moved[0][0])[::3, ::3], comp.original[:, 32:])  # the image's right 64x64
    assert isinstance(zoom_at(comp, SimpleNamespace(index=[4 * 96 + 20, 10])), type(gr.skip()))  # the colour bar
    bad = tmp_path / "bad.png"
    bad.write_text("hello")
    with pytest.raises(gr.Error, match="bad.png is not an image"):
        run(str(bad), "cwic level", 1, 0.3, [], False, progress=lambda *a, **k: None)


def test_zoom_box_finds_the_most_bits():
    bits = np.zeros((20, 30))
    bits[12:16, 20:24] = 100.0
    top, left, side = maps.zoom_box(bits, (160, 240), size=32)
    assert (top, left, side) == (96, 160, 32)
    assert maps.zoom_box(bits, (20, 40), size=128)[2] == 16  # clipped to the image


def test_a_click_on_a_map_picks_the_zoom_box():
    assert maps.zoom_box_at((400, 300), (512, 768)) == (232, 336, 128)
    assert maps.zoom_box_at((5, 5), (512, 768)) == (0, 0, 128)
    assert maps.zoom_box_at((767, 511), (512, 768)) == (384, 640, 128)
    assert maps.zoom_box_at((800, 100), (512, 768)) is None  # the colour bar
    assert maps.zoom_box_at((100, 530), (512, 768)) is None  # the title under the map
    assert maps.panel_scale(120) == 4 and maps.zoom_box_at((4 * 119, 4 * 99), (100, 120)) == (0, 24, 96)


def test_rd_curves_cover_every_level_and_plot(codec):
    rgb = np.asarray(Image.open(EXAMPLE).convert("RGB"))[200:328, 300:428].copy()
    curves = rd_curves.rd_points(codec, rgb, ["JPEG"])
    assert len(curves["cwic"]) == len(codec.levels) and len(curves["JPEG"]) == len(baselines.SPECS["jpeg"].sweep)
    assert all(p["ms_ssim"] is None and p["ssim"] > 0 for p in curves["cwic"])  # 128 px: SSIM panel instead
    img = rd_curves.rd_plot(curves)
    assert img.dtype == np.uint8 and img.shape[1] == 1100


def test_painted_region_of_interest_gets_more_bits(codec, small_rgb):
    small_rgb = small_rgb[:128, :128]
    h, w = small_rgb.shape[:2]
    layer = np.zeros((2 * h, 2 * w, 4), np.uint8)  # the editor works on the upload before downscaling
    layer[:128, :128, 3] = 255
    mask = inputs.roi_from_editor({"background": None, "layers": [layer], "composite": None}, (h, w))
    assert mask.shape == (h, w) and mask[:60, :60].min() == 1 and mask[70:, 70:].max() == 0
    assert inputs.roi_from_editor({"background": None, "layers": [np.zeros_like(layer)]}, (h, w)) is None

    base = compare.compare(codec, small_rgb, level=2, classical=[]).compressed
    painted = compare.compare(codec, small_rgb, level=2, classical=[], roi=mask).compressed
    assert (painted.kept_channels[:7, :7] >= base.kept_channels[:7, :7]).all()
    assert painted.kept_channels[:7, :7].sum() > base.kept_channels[:7, :7].sum()
    assert painted.bits_per_block[:7, :7].sum() > base.bits_per_block[:7, :7].sum()


def test_the_model_choice_picks_the_checkpoint(codec, tmp_path):
    gr = pytest.importorskip("gradio")
    from cwic.training.distortion import DISTORTIONS
    from demo.ui import _TRAINED_FOR, describe, make_handler, make_rd_handler

    codecs = {"first": codec, "second": codec}
    run = make_handler(codecs)
    path = str(_png(np.asarray(Image.open(EXAMPLE).convert("RGB"))[:32, :32], tmp_path / "crop.png"))
    quiet = {"progress": lambda *a, **k: None}
    out = run(path, "cwic level", 1, 0.3, [], False, **quiet)
    assert out[-1].model == "first" and out[6] is None  # the default; no JPEG, so no JPEG bits map
    comp = run(path, "cwic level", 1, 0.3, [], False, None, "second", **quiet)[-1]
    assert comp.model == "second" and "model second" in compare.summary_markdown(comp)
    with pytest.raises(gr.Error, match="unknown model 'third'"):
        run(path, "cwic level", 1, 0.3, [], False, None, "third", **quiet)
    assert make_rd_handler(codecs)(comp, **quiet).ndim == 3
    assert describe(codec).startswith("fine-tuned on PSNR + SSIM + MS-SSIM")  # the default
    assert describe(Codec.load(REPO / "checkpoints" / "cwic-slim-mse")).startswith("trained on MSE, ")
    assert describe(Codec.load(REPO / "checkpoints" / "cwic-slim-msssim")).startswith("fine-tuned on MS-SSIM")
    assert set(_TRAINED_FOR) == set(DISTORTIONS)  # words for every distortion a checkpoint can be trained on
