"""The JPEG bit map (cwic/evaluation/jpeg_bits.py) on files Pillow writes: every bit of the file accounted
for, the MCU grid the frame header implies, known code lengths, and clear errors for what it cannot map."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cwic.errors import CwicError
from cwic.evaluation import jpeg_bits
from cwic.evaluation.jpeg_bits import JpegBitsError, UnsupportedJpegError

EXAMPLE = Path(__file__).resolve().parents[1] / "demo" / "examples" / "kodim23.png"
MCU = {"4:2:0": (16, 16), "4:2:2": (8, 16), "4:4:4": (8, 8)}  # (height, width)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return np.asarray(Image.open(EXAMPLE).convert("RGB"))[96:256, 240:480].copy()


def _jpeg(pixels: np.ndarray, **options) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", **options)
    return buf.getvalue()


def _scan_start(data: bytes) -> int:
    """Where the entropy-coded data begins, found by walking the marker segments independently."""
    pos = 2
    while data[pos + 1] != 0xDA:
        pos += 2 + (data[pos + 2] << 8 | data[pos + 3])
    return pos + 2 + (data[pos + 2] << 8 | data[pos + 3])


CASES = [
    ("RGB", (160, 240), {"subsampling": "4:2:0", "quality": 40}),
    ("RGB", (160, 240), {"subsampling": "4:2:0", "quality": 40, "optimize": True}),
    ("RGB", (160, 240), {"subsampling": "4:4:4", "quality": 90}),
    ("RGB", (160, 240), {"subsampling": "4:4:4", "quality": 90, "optimize": True}),
    ("RGB", (160, 240), {"subsampling": "4:2:2", "quality": 60}),
    ("RGB", (160, 240), {"subsampling": "4:2:0", "restart_marker_blocks": 5}),
    ("RGB", (160, 240), {"subsampling": "4:4:4", "restart_marker_rows": 1, "optimize": True}),
    ("RGB", (29, 17), {"subsampling": "4:2:0"}),
    ("RGB", (29, 17), {"subsampling": "4:4:4", "optimize": True, "restart_marker_blocks": 2}),
    ("RGB", (29, 17), {"subsampling": "4:2:2", "quality": 95}),
    ("L", (160, 240), {"quality": 75}),
    ("L", (29, 17), {"optimize": True, "restart_marker_blocks": 1}),
]


@pytest.mark.parametrize(("mode", "size", "options"), CASES)
def test_every_bit_of_the_file_is_accounted_for(photo, mode, size, options):
    h, w = size
    pixels = photo[:h, :w] if mode == "RGB" else photo[:h, :w].mean(axis=2).astype(np.uint8)
    data = _jpeg(pixels, **options)
    bits = jpeg_bits.parse(data)

    mh, mw = MCU[options["subsampling"]] if mode == "RGB" else (8, 8)
    rows, cols = math.ceil(h / mh), math.ceil(w / mw)
    assert bits.mcu_size == (mh, mw) and bits.mcu_bits.shape == (rows, cols)
    assert (bits.width, bits.height) == (w, h)
    assert bits.sampling[0] == ((mw // 8, mh // 8) if mode == "RGB" else (1, 1))  # luma's factors
    blocks_per_mcu = mh * mw // 64 + 2 if mode == "RGB" else 1  # the luma blocks and one Cb, one Cr
    assert bits.blocks == rows * cols * blocks_per_mcu
    assert (bits.mcu_bits > 0).all()

    # The file in full: headers up to the scan, the MCUs, padding and RST markers, then EOI and nothing more.
    assert bits.scan_bits + bits.other_bits == 8 * len(data)
    start = _scan_start(data)
    assert bits.header_bits == 8 * start
    assert data.endswith(b"\xff\xd9") and bits.trailer_bits == 16
    interval = bits.restart_interval
    markers = math.ceil(rows * cols / interval) - 1 if interval else 0
    assert bits.restart_bits == 16 * markers
    assert markers == sum(data[start:].count(bytes([0xFF, 0xD0 + m])) for m in range(8))
    assert bits.scan_bits + bits.padding_bits + bits.restart_bits == 8 * (len(data) - 2 - start)
    assert 0 <= bits.padding_bits <= 15 * (markers + 1)  # < 8 fill bits per interval, and a stuffed byte at most


def test_restart_rows_and_blocks_set_the_interval(photo):
    assert jpeg_bits.parse(_jpeg(photo, restart_marker_rows=2)).restart_interval == 2 * 240 // 16
    assert jpeg_bits.parse(_jpeg(photo, restart_marker_blocks=7)).restart_interval == 7
    assert jpeg_bits.parse(_jpeg(photo)).restart_interval == 0


def test_stuffed_bytes_are_counted_in_the_mcus(photo):
    data = _jpeg(photo, quality=98, subsampling="4:4:4")
    start = _scan_start(data)
    assert data[start:].count(b"\xff\x00") > 20  # the case the accounting must get right
    bits = jpeg_bits.parse(data)
    assert bits.scan_bits + bits.padding_bits == 8 * (len(data) - 2 - start)


def test_flat_images_cost_the_standard_code_lengths():
    # Annex K tables (Pillow's default without optimize): a flat 128 block is DC category 0 ("00")
    # and end-of-block ("1010" for luma, "00" for chroma).
    grey = jpeg_bits.parse(_jpeg(np.full((64, 40), 128, np.uint8)))
    assert grey.mcu_bits.shape == (8, 5) and (grey.mcu_bits == 2 + 4).all()
    colour = jpeg_bits.parse(_jpeg(np.full((48, 64, 3), 128, np.uint8), subsampling="4:2:0"))
    assert colour.mcu_bits.shape == (3, 4) and (colour.mcu_bits == 4 * (2 + 4) + 2 * (2 + 2)).all()


def test_texture_gets_more_bits_than_flat_sky():
    rng = np.random.default_rng(0)
    pixels = np.full((64, 128, 3), 140, np.uint8)
    pixels[:, 64:] = rng.integers(0, 256, (64, 64, 3))
    bits = jpeg_bits.parse(_jpeg(pixels, quality=75, optimize=True)).mcu_bits
    assert bits.shape == (4, 8)
    assert bits[:, 4:].min() > 20 * bits[:, :4].max()


def test_block_bpp_spreads_each_mcu_over_its_pixels(photo):
    h, w = 29, 17
    bits = jpeg_bits.parse(_jpeg(photo[:h, :w], subsampling="4:2:0"))
    bpp = jpeg_bits.block_bpp(bits)
    assert bpp.shape == (4, 3)
    pixels = np.outer(np.diff(np.minimum(np.arange(5) * 8, h)), np.diff(np.minimum(np.arange(4) * 8, w)))
    assert (bpp * pixels).sum() == pytest.approx(bits.scan_bits)
    assert bpp[0, 0] == bpp[1, 1] == bits.mcu_bits[0, 0] / 256  # one 16x16 MCU, four blocks
    assert bpp[2, 2] == bits.mcu_bits[1, 1] / (13 * 1)  # the corner MCU has 13x1 pixels in the image
    full = jpeg_bits.parse(_jpeg(photo, subsampling="4:2:0"))
    assert jpeg_bits.block_bpp(full).mean() == pytest.approx(full.scan_bits / photo[..., 0].size)


def test_unsupported_kinds_say_what_is_not_supported(photo):
    with pytest.raises(UnsupportedJpegError, match=r"progressive JPEG \(SOF2\) is not supported: only baseline"):
        jpeg_bits.parse(_jpeg(photo, progressive=True))
    data = _jpeg(photo[:32, :32])
    sof = data.index(b"\xff\xc0")
    with pytest.raises(UnsupportedJpegError, match="arithmetic-coded JPEG"):
        jpeg_bits.parse(data[:sof] + b"\xff\xc9" + data[sof + 2 :])
    with pytest.raises(UnsupportedJpegError, match="12-bit JPEG is not supported"):
        jpeg_bits.parse(data[: sof + 4] + b"\x0c" + data[sof + 5 :])
    assert issubclass(UnsupportedJpegError, CwicError)


def test_truncated_and_corrupt_files_give_a_clear_error(photo):
    data = _jpeg(photo, quality=60)
    start = _scan_start(data)
    for cut, message in [(start // 2, "truncated JPEG"), ((start + len(data)) // 2, "truncated JPEG")]:
        with pytest.raises(JpegBitsError, match=message):
            jpeg_bits.parse(data[:cut])
    with pytest.raises(JpegBitsError, match="not a JPEG file"):
        jpeg_bits.parse(b"\x89PNG\r\n\x1a\n" + data)
    with pytest.raises(JpegBitsError, match="truncated JPEG: the scan data ends inside MCU"):
        jpeg_bits.parse(data[: start + 100] + b"\xff\xd9")


def test_random_damage_never_escapes_as_another_exception(photo):
    data = _jpeg(photo[:48, :64], quality=70, restart_marker_blocks=2)
    rng = np.random.default_rng(1)
    outcomes = set()
    for _ in range(300):
        damaged = bytearray(data)
        for i in rng.integers(2, len(data), rng.integers(1, 4)):
            damaged[i] = rng.integers(0, 256)
        damaged = bytes(damaged[: rng.integers(len(data) // 2, len(data) + 1)])
        try:
            bits = jpeg_bits.parse(damaged)
        except JpegBitsError:
            outcomes.add("error")
        else:  # a change the decoder cannot tell apart from a valid file: the accounting still holds
            assert bits.scan_bits + bits.other_bits == 8 * len(damaged)
            outcomes.add("parsed")
    assert "error" in outcomes
