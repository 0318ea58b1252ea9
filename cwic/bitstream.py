"""The .cwic container: a fixed 32-byte header, two range-coded sections, a CRC32 trailer.

Layout (little-endian), see docs/bitstream.md:
  0  4s  magic b"CWIC"          16  u16 width          24  u32 map section length
  4  u8  format version (1)     18  u16 height         28  u32 bits section length
  5  u8  flags (bit 0 uniform,  20  f32 rate r         32  map section, bits section
         bit 1 roi, bit 2                              end u32 CRC32 of all bytes before it
         constant map)
  6  u8  level (0 = bpp target)
  7  u8  reserved (0)
  8  8s  checkpoint id (weights_id, 16 hex digits)
Every field is checked before anything is allocated from it; any failure is a BitstreamError.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass

from .errors import BitstreamError
from .images import MAX_PIXELS, MAX_SIDE, MIN_SIDE

MAGIC = b"CWIC"
VERSION = 1
FLAG_UNIFORM, FLAG_ROI, FLAG_CONSTANT_MAP = 1, 2, 4
_FLAGS = FLAG_UNIFORM | FLAG_ROI | FLAG_CONSTANT_MAP
CONSTANT_MAP_LEN = 4  # a constant map's section: its one symbol in a 32-bit word
_HEADER = struct.Struct("<4sBBBB8sHHfII")
HEADER_SIZE = _HEADER.size  # 32
TRAILER_SIZE = 4
MAX_SECTION = 2 * 64 * (MAX_PIXELS // 64) // 8 + 1024  # generous: two bytes per raw code bit


@dataclass(frozen=True)
class Header:
    """Decoded header fields."""

    width: int
    height: int
    rate: float
    level: int
    checkpoint_id: str
    uniform: bool = False
    roi: bool = False
    constant_map: bool = False  # the map section is one symbol, not range-coded
    map_len: int = 0
    bits_len: int = 0
    version: int = VERSION

    def to_dict(self) -> dict:
        return {
            "format_version": self.version,
            "checkpoint_id": self.checkpoint_id,
            "width": self.width,
            "height": self.height,
            "level": self.level,
            "rate": self.rate,
            "uniform": self.uniform,
            "roi": self.roi,
            "constant_map": self.constant_map,
            "header_bytes": HEADER_SIZE + TRAILER_SIZE,
            "map_bytes": self.map_len,
            "bits_bytes": self.bits_len,
        }


def pack(header: Header, map_section: bytes, bits_section: bytes) -> bytes:
    """Header fields + sections -> the complete file bytes (with CRC32)."""
    flags = (
        (FLAG_UNIFORM if header.uniform else 0)
        | (FLAG_ROI if header.roi else 0)
        | (FLAG_CONSTANT_MAP if header.constant_map else 0)
    )
    head = _HEADER.pack(
        MAGIC,
        VERSION,
        flags,
        header.level,
        0,
        bytes.fromhex(header.checkpoint_id),
        header.width,
        header.height,
        header.rate,
        len(map_section),
        len(bits_section),
    )
    body = head + map_section + bits_section
    return body + struct.pack("<I", zlib.crc32(body))


def parse(data: bytes) -> tuple[Header, bytes, bytes]:
    """File bytes -> (header, map section, bits section); BitstreamError on any inconsistency."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise BitstreamError(f"expected the bytes of a .cwic file, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < HEADER_SIZE + TRAILER_SIZE:
        raise BitstreamError(f"not a .cwic file: {len(data)} bytes is shorter than the {HEADER_SIZE}-byte header")
    magic, version, flags, level, reserved, ckpt, width, height, rate, map_len, bits_len = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise BitstreamError(f"not a .cwic file (magic {magic!r}, expected {MAGIC!r})")
    if version != VERSION:
        raise BitstreamError(f"unsupported .cwic format version {version} (this cwic reads version {VERSION})")
    expected = HEADER_SIZE + map_len + bits_len + TRAILER_SIZE
    if len(data) != expected:
        raise BitstreamError(f"truncated or padded .cwic file: {len(data)} bytes, header says {expected}")
    (crc,) = struct.unpack_from("<I", data, len(data) - TRAILER_SIZE)
    if zlib.crc32(data[:-TRAILER_SIZE]) != crc:
        raise BitstreamError("corrupt .cwic file: CRC32 mismatch")
    if flags & ~_FLAGS or reserved:
        raise BitstreamError(f"invalid .cwic header: unknown flags {flags:#x} / reserved byte {reserved}")
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE) or width * height > MAX_PIXELS:
        raise BitstreamError(f"invalid .cwic header: image size {width}x{height} is outside the supported range")
    if not (math.isfinite(rate) and 0.0 < rate < 1.0):
        raise BitstreamError(f"invalid .cwic header: rate {rate} is not in (0, 1)")
    if not (4 <= map_len <= MAX_SECTION and 4 <= bits_len <= MAX_SECTION) or (map_len | bits_len) % 4:
        raise BitstreamError(f"invalid .cwic header: section lengths {map_len}, {bits_len}")
    if flags & FLAG_CONSTANT_MAP and map_len != CONSTANT_MAP_LEN:
        raise BitstreamError(
            f"invalid .cwic header: a constant map's section is {CONSTANT_MAP_LEN} bytes, got {map_len}"
        )
    header = Header(
        width=width,
        height=height,
        rate=float(rate),
        level=level,
        checkpoint_id=ckpt.hex(),
        uniform=bool(flags & FLAG_UNIFORM),
        roi=bool(flags & FLAG_ROI),
        constant_map=bool(flags & FLAG_CONSTANT_MAP),
        map_len=map_len,
        bits_len=bits_len,
        version=version,
    )
    start = HEADER_SIZE
    return header, data[start : start + map_len], data[start + map_len : start + map_len + bits_len]


def with_fixed_crc(data: bytes) -> bytes:
    """Recompute the CRC32 trailer (used by tests to reach the payload decoder with mutated bytes)."""
    body = bytes(data[:-TRAILER_SIZE])
    return body + struct.pack("<I", zlib.crc32(body))
