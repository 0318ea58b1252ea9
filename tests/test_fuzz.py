"""Over 1000 damaged .cwic inputs: each is rejected with BitstreamError (or CheckpointError for a
foreign checkpoint id), or - only when the CRC was recomputed after damaging the payload - decodes
to an image of the declared size. Nothing else may happen: no other exception, no hang."""

from __future__ import annotations

import os

import numpy as np
import pytest

from cwic import Codec, bitstream
from cwic.errors import BitstreamError, CheckpointError

CKPT = os.environ.get("CWIC_TEST_CHECKPOINT")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def setup():
    codec = Codec.load(CKPT)
    rgb = np.random.default_rng(1).integers(0, 256, (32, 40, 3), dtype=np.uint8)
    rgb[:, :20] = 128
    return codec, codec.compress(rgb, level=4).data


def _inputs(valid: bytes, rng: np.random.Generator):
    yield "empty", b""
    for n in range(len(valid)):
        yield f"truncated to {n}", valid[:n]
    for _ in range(400):
        yield "random", rng.integers(0, 256, rng.integers(0, 400), dtype=np.uint8).tobytes()
    for _ in range(200):
        yield (
            "random with magic",
            b"CWIC" + bytes([1]) + rng.integers(0, 256, rng.integers(0, 300), dtype=np.uint8).tobytes(),
        )
    for v in (0, 2, 3, 255):
        b = bytearray(valid)
        b[4] = v
        yield f"version {v}", bitstream.with_fixed_crc(bytes(b))
    for _ in range(300):
        b = bytearray(valid)
        for _flip in range(rng.integers(1, 4)):
            b[rng.integers(len(b))] ^= 1 << int(rng.integers(8))
        yield "bit flips", bytes(b)
    for _ in range(100):  # payload damaged, CRC fixed: the range decoder itself must cope
        b = bytearray(valid)
        i = rng.integers(bitstream.HEADER_SIZE, len(b) - bitstream.TRAILER_SIZE)
        b[i] = rng.integers(256)
        if rng.random() < 0.3:
            j = rng.integers(bitstream.HEADER_SIZE, len(b) - bitstream.TRAILER_SIZE)
            b[j:] = rng.integers(0, 256, len(b) - j, dtype=np.uint8).tobytes()
        yield "payload (crc fixed)", bitstream.with_fixed_crc(bytes(b))
    for off, size in ((5, 1), (6, 1), (7, 1), (8, 8), (16, 2), (18, 2), (20, 4), (24, 4), (28, 4)):
        for _ in range(6):  # header fields with a valid CRC (sizes limited to keep decoding fast)
            b = bytearray(valid)
            b[off : off + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
            if off in (16, 18):
                b[off + 1] = 0  # at most 255 px: every accepted size decodes quickly
            yield f"header bytes {off} (crc fixed)", bitstream.with_fixed_crc(bytes(b))


def test_fuzzed_inputs_give_documented_errors(setup):
    codec, valid = setup
    rng = np.random.default_rng(0)
    counts = {"rejected": 0, "decoded": 0}
    total = 0
    for kind, data in _inputs(valid, rng):
        total += 1
        try:
            out = codec.decompress(data)
        except (BitstreamError, CheckpointError):
            counts["rejected"] += 1
            continue
        header, _, _ = bitstream.parse(data)
        assert "crc fixed" in kind, f"{kind}: a damaged file decoded"
        assert out.shape == (header.height, header.width, 3) and out.dtype == np.uint8
        counts["decoded"] += 1
    assert total >= 1000
    assert counts["rejected"] > 0.6 * total
