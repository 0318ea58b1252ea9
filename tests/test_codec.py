"""The codec end to end: round trips, diagnostics, options, CLIs, image loading, the golden file."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cwic import Codec, bitstream
from cwic.checkpoint import save_checkpoint
from cwic.cli import decode_main, encode_main, levels_main
from cwic.entropy_models import entropy_coder
from cwic.errors import BitstreamError, CheckpointError, ImageError
from cwic.images import load_rgb
from cwic.models.network import reconstruct

REPO = Path(__file__).resolve().parents[1]
KODAK = REPO.parent / "shared" / "data" / "kodak"
GOLDEN = REPO / "tests" / "golden"
CKPT = os.environ.get("CWIC_TEST_CHECKPOINT")  # default: the shipped checkpoint


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A 72 x 100 crop of kodim23 (sides not multiples of 8)."""
    return np.ascontiguousarray(load_rgb(KODAK / "kodim23.png")[200:272, 300:400])


@pytest.mark.parametrize("hw", [(16, 16), (23, 37), (72, 100)])
@pytest.mark.parametrize("level", [1, 6])
def test_round_trip_and_diagnostics(codec, photo, hw, level):
    rgb = np.ascontiguousarray(photo[: hw[0], : hw[1]])
    c = codec.compress(rgb, level=level)
    out = codec.decompress(c.data)
    assert out.dtype == np.uint8 and out.shape == rgb.shape
    assert np.array_equal(out, c.reconstruction)
    assert c.bpp == len(c.data) * 8 / (hw[0] * hw[1])
    assert c.payload_bits == 8 * (len(c.data) - bitstream.HEADER_SIZE - bitstream.TRAILER_SIZE)
    h, w = -(-hw[0] // 8), -(-hw[1] // 8)
    for a in (c.importance, c.importance_levels, c.kept_channels, c.bits_per_block):
        assert a.shape == (h, w)
    assert np.isclose(c.bits_per_block.sum(), c.payload_bits)
    assert c.payload_bits >= c.map_bits + c.code_bits  # coder overhead is never negative
    assert np.array_equal(c.kept_channels, (c.importance_levels + 1) * 4)


def test_decoded_equals_model_reconstruction(codec, photo):
    c = codec.compress(photo, level=3)
    x = torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 255
    ref, q, _ = reconstruct(codec.model, x, c.rate)
    ref8 = (ref[0] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.array_equal(q[0, 0].numpy(), c.importance_levels)
    assert np.array_equal(codec.decompress(c.data), ref8)


def test_levels_order_rates(codec, photo):
    levels = codec.levels
    assert [lv["level"] for lv in levels] == list(range(1, len(levels) + 1))
    rates = [lv["rate"] for lv in levels]
    assert rates == sorted(rates)
    sizes = [len(codec.compress(photo, level=k).data) for k in (1, len(levels))]
    assert sizes[0] < sizes[1]


def test_bpp_target_uses_real_file_size(codec, photo):
    target = (codec.compress(photo, level=2).bpp + codec.compress(photo, level=5).bpp) / 2
    c = codec.compress(photo, bpp=target)
    assert c.level == 0 and abs(c.bpp - target) <= max(0.05 * target, 0.01)
    header, _, _ = bitstream.parse(c.data)
    assert header.rate == c.rate and header.level == 0
    assert np.array_equal(codec.decompress(c.data), c.reconstruction)


def test_uniform_and_roi(codec, photo):
    u = codec.compress(photo, level=3, uniform=True)
    assert len(np.unique(u.importance_levels)) == 1 and bitstream.parse(u.data)[0].uniform
    assert np.array_equal(codec.decompress(u.data), u.reconstruction)
    roi = np.zeros(photo.shape[:2], np.float32)
    roi[:32, :48] = 1
    base, r = codec.compress(photo, level=2), codec.compress(photo, level=2, roi=roi)
    assert r.importance_levels[:4, :6].mean() > base.importance_levels[:4, :6].mean()
    assert bitstream.parse(r.data)[0].roi
    assert np.array_equal(codec.decompress(r.data), r.reconstruction)


def test_a_constant_map_costs_one_word_and_files_with_a_coded_one_still_decode(codec, photo):
    u = codec.compress(photo, level=3, uniform=True)
    header, map_s, bits_s = bitstream.parse(u.data)
    assert header.constant_map and map_s == bytes([u.importance_levels[0, 0]]) + bytes(3) and np.isclose(u.map_bits, 32)
    assert not bitstream.parse(codec.compress(photo, level=3).data)[0].constant_map
    # before the flag existed, a uniform file range-coded its constant map; such files still decode
    q = torch.from_numpy(u.importance_levels)
    mc = entropy_coder._Coder()
    codec.entropy._map_stages(*q.shape, header.rate, mc, q)
    old = bitstream.pack(dataclasses.replace(header, constant_map=False), mc.finish(), bits_s)
    assert len(old) >= len(u.data) and np.array_equal(codec.decompress(old), u.reconstruction)
    for bad in (bytes([codec.config.symbols, 0, 0, 0]), bytes([0, 0, 1, 0])):
        with pytest.raises(BitstreamError, match="constant map section"):
            codec.decompress(bitstream.pack(header, bad, bits_s))


def test_kept_channels_by_level_equal_what_each_level_keeps_from_one_encoder_pass(codec, photo, monkeypatch):
    roi = np.zeros(photo.shape[:2], np.float32)
    roi[:32, :48] = 1
    analyze, passes = codec.model.analyze, []
    monkeypatch.setattr(codec.model, "analyze", lambda x: passes.append(1) or analyze(x))
    by_level = codec.kept_channels_by_level(photo, roi=roi)
    assert len(passes) == 1 and list(by_level) == [lv["level"] for lv in codec.levels]
    files = [codec.compress(photo, bpp=0.3, roi=roi), codec.compress(photo, level=4, roi=roi)]
    assert len(passes) == 3
    for c in files:
        same = zip(c.kept_channels_by_level.values(), by_level.values(), strict=True)
        assert all(np.array_equal(a, b) for a, b in same)
    assert len(passes) == 3  # each file's own encoder pass, reused
    for k, kept in by_level.items():
        assert np.array_equal(kept, codec.compress(photo, level=k, roi=roi).kept_channels)
    means = [kept.mean() for kept in by_level.values()]
    assert means == sorted(means) and means[0] < means[-1]
    uniform = codec.kept_channels_by_level(photo, uniform=True)[2]
    assert np.array_equal(uniform, codec.compress(photo, level=2, uniform=True).kept_channels)


def test_bytes_and_pixels_do_not_depend_on_thread_count(codec, photo):
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = codec.compress(photo, level=4)
        pixels_1 = a.reconstruction
        torch.set_num_threads(2)
        b = codec.compress(photo, level=4)
        pixels_2 = codec.decompress(a.data)
    finally:
        torch.set_num_threads(old)
    assert a.data == b.data
    assert np.array_equal(pixels_1, pixels_2)


def test_wrong_checkpoint_names_the_required_one(codec, photo):
    data = bytearray(codec.compress(photo[:16, :16], level=1).data)
    data[8:16] = bytes.fromhex("00112233aabbccdd")
    with pytest.raises(CheckpointError, match="00112233aabbccdd"):
        codec.decompress(bitstream.with_fixed_crc(bytes(data)))
    with pytest.raises(CheckpointError, match="no cwic checkpoint"):
        Codec.load(REPO / "no-such-checkpoint")


def test_checkpoint_without_entropy_model_is_reported(codec, tmp_path):
    save_checkpoint(tmp_path, codec.model, {"name": "autoencoder only"})
    with pytest.raises(CheckpointError, match="train-entropy"):
        Codec.load(tmp_path)


def test_bad_arguments(codec, photo):
    with pytest.raises(ImageError, match="uint8"):
        codec.compress(photo.astype(np.float32))
    with pytest.raises(ImageError, match="at least 16x16"):
        codec.compress(photo[:15])
    with pytest.raises(ValueError, match="level must be one of"):
        codec.compress(photo, level=9)
    with pytest.raises(BitstreamError):
        codec.decompress(b"")


@pytest.mark.parametrize("name", ["golden", "golden-uniform"])
def test_golden_file_decodes_to_committed_hash(codec, name):
    info = json.loads((GOLDEN / f"{name}.json").read_text())
    data = (GOLDEN / f"{name}.cwic").read_bytes()
    assert bitstream.parse(data)[0].constant_map == (name == "golden-uniform")
    assert info["checkpoint_id"] == codec.checkpoint_id, (
        "golden file is stale for this checkpoint: run `python -m cwic train-entropy --skip-train`"
    )
    _, q, bits = codec.decode_codes(data)
    codes = hashlib.sha256(q.to(torch.uint8).numpy().tobytes() + bits.to(torch.uint8).numpy().tobytes())
    assert codes.hexdigest() == info["codes_sha256"]  # exact on every CPU (integer context model)
    assert hashlib.sha256(codec.decompress(data).tobytes()).hexdigest() == info["pixels_sha256"]


def test_cli_round_trip_and_errors(tmp_path, photo, capsys):
    src, cw, png = tmp_path / "in.png", tmp_path / "x.cwic", tmp_path / "out.png"
    Image.fromarray(photo).save(src)
    ck = ["--checkpoint", CKPT] if CKPT else []
    assert encode_main([str(src), str(cw), "--level", "2", *ck]) == 0
    assert json.loads(capsys.readouterr().out)["bytes"] == cw.stat().st_size
    assert decode_main([str(cw), str(png), *ck]) == 0
    assert np.asarray(Image.open(png)).shape == photo.shape
    assert levels_main(ck) == 0
    levels = json.loads(capsys.readouterr().out)
    assert [lv["level"] for lv in levels] == [1, 2, 3, 4, 5, 6] and all("bpp" in lv for lv in levels)
    assert decode_main([str(cw), str(png), "--checkpoint", str(tmp_path / "nowhere")]) == 2
    needed = bitstream.parse(cw.read_bytes())[0].checkpoint_id
    assert f"needs checkpoint {needed}" in capsys.readouterr().err
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    for argv, fn in [
        ([str(tmp_path / "bad.png"), str(cw)], encode_main),
        ([str(src), str(cw), "--level", "0"], encode_main),
        ([str(src), str(cw), "--bogus"], encode_main),
        ([str(src), str(png)], decode_main),  # a PNG is not a .cwic file
        ([str(tmp_path / "missing.cwic"), str(png)], decode_main),
    ]:
        assert fn(argv + ck) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_decode_finds_the_checkpoint_the_file_names(tmp_path, photo, capsys):
    msssim = REPO / "checkpoints" / "cwic-slim-msssim"
    src, cw, png = tmp_path / "in.png", tmp_path / "x.cwic", tmp_path / "out.png"
    Image.fromarray(photo).save(src)
    assert encode_main([str(src), str(cw), "--level", "2", "--checkpoint", str(msssim)]) == 0
    capsys.readouterr()
    assert decode_main([str(cw), str(png)]) == 0  # no --checkpoint: the header's id picks cwic-slim-msssim
    found = Codec.for_file(cw.read_bytes())
    assert found.checkpoint_id == bitstream.parse(cw.read_bytes())[0].checkpoint_id != Codec.load().checkpoint_id
    assert np.array_equal(np.asarray(Image.open(png)), found.decompress(cw.read_bytes()))

    data = bytearray(cw.read_bytes())
    data[8:16] = bytes.fromhex("00112233aabbccdd")
    unknown = tmp_path / "unknown.cwic"
    unknown.write_bytes(bitstream.with_fixed_crc(bytes(data)))
    assert decode_main([str(unknown), str(png)]) == 2
    err = capsys.readouterr().err
    assert "needs checkpoint 00112233aabbccdd" in err and err.count("\n") == 1
    assert str(REPO / "checkpoints" / "cwic-slim") in err and str(msssim) in err
    with pytest.raises(CheckpointError, match=f"searched has \\({tmp_path}\\)"):
        Codec.for_file(unknown.read_bytes(), [tmp_path])


def _png(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=kw.pop("format", "PNG"), **kw)
    return buf.getvalue()


def test_load_rgb_modes_and_orientation():
    grey = Image.fromarray(np.arange(32 * 40, dtype=np.uint16).reshape(32, 40) * 50)
    assert load_rgb(_png(grey)).shape == (32, 40, 3)
    rgba = Image.new("RGBA", (20, 18), (255, 0, 0, 0))
    assert (load_rgb(_png(rgba)) == 255).all()  # transparent -> white
    pal = Image.new("P", (20, 18))
    assert load_rgb(_png(pal)).shape == (18, 20, 3)
    la = Image.new("L", (20, 18), 7)
    assert (load_rgb(_png(la)) == 7).all()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees
    rot = load_rgb(_png(Image.new("RGB", (40, 20)), format="JPEG", exif=exif))
    assert rot.shape == (40, 20, 3)
    with pytest.raises(ImageError, match="not a readable image"):
        load_rgb(b"not an image")
    with pytest.raises(ImageError, match="truncated or corrupt"):
        load_rgb(_png(Image.new("RGB", (64, 64)), format="JPEG")[:200])
    with pytest.raises(ImageError, match="at least 16x16"):
        load_rgb(_png(Image.new("RGB", (15, 64))))
    with pytest.raises(ImageError, match="cannot open"):
        load_rgb("/nonexistent/x.png")
