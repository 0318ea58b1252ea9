"""Where a JPEG file spends its bits: the Huffman-coded bits of every MCU, read from the file itself.

A small parser for baseline sequential Huffman JPEG (SOF0, or SOF1 at 8 bits) as libjpeg and Pillow
write it: greyscale or YCbCr (any subsampling), standard or optimized Huffman tables, with or
without restart markers. It does not decode coefficients, only code lengths: each 16-bit window of
the scan is looked up in a table that gives the code length plus the extra bits that follow it.

Every bit of the file is counted once, so `scan_bits + other_bits == 8 * len(file)` exactly:

- an MCU owns the bits of its Huffman codes and extra bits, plus the 8 bits of each stuffed 0x00
  that follows a 0xFF byte whose last bit is one of its bits;
- the overhead (`other_bits`) is the headers and tables (SOI through the SOS header), the 1-bits
  padding the last byte before each RST marker and EOI (with a stuffed 0x00 after a padding byte
  that ends in the padding), the RST markers, and EOI with anything after the scan.

Progressive, lossless, hierarchical and arithmetic-coded JPEG, 12-bit samples and files with more
than one scan raise UnsupportedJpegError; corrupt or truncated files raise JpegBitsError.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cwic.errors import CwicError

_ONLY = "only baseline sequential Huffman JPEG has a per-block bit map"
_UNSUPPORTED = {
    0xC2: "progressive JPEG (SOF2)",
    0xC3: "lossless JPEG (SOF3)",
    0xC5: "hierarchical JPEG (SOF5)",
    0xC6: "hierarchical progressive JPEG (SOF6)",
    0xC7: "hierarchical lossless JPEG (SOF7)",
    0xC8: "the JPG extension (marker 0xFFC8)",
    0xC9: "arithmetic-coded JPEG (SOF9)",
    0xCA: "arithmetic-coded progressive JPEG (SOF10)",
    0xCB: "arithmetic-coded lossless JPEG (SOF11)",
    0xCC: "arithmetic-coded JPEG (DAC)",
    0xCD: "arithmetic-coded hierarchical JPEG (SOF13)",
    0xCE: "arithmetic-coded hierarchical progressive JPEG (SOF14)",
    0xCF: "arithmetic-coded hierarchical lossless JPEG (SOF15)",
    0xDC: "a number of lines defined after the scan (DNL)",
    0xDE: "hierarchical JPEG (DHP)",
    0xDF: "hierarchical JPEG (EXP)",
}
_EOB, _BAD = 1000, 100_000  # AC "runs" of end-of-block and of an invalid code; valid runs are 1..16
_SLACK = 2200  # zero bytes after the scan: one MCU (10 blocks of at most 1,665 bits) may read past its end


class JpegBitsError(CwicError, ValueError):
    """A JPEG file that is corrupt or truncated, so its bits cannot be attributed."""


class UnsupportedJpegError(JpegBitsError):
    """A valid JPEG of a kind that has no per-MCU bit map here (progressive, arithmetic, 12-bit, ...)."""


@dataclass(frozen=True)
class JpegBits:
    """Where one JPEG file's bits go: per MCU, and the overhead around the scan."""

    mcu_bits: np.ndarray  # (mcu_rows, mcu_cols) int64: each MCU's Huffman-coded bits, its stuffed bytes included
    mcu_size: tuple[int, int]  # (height, width) of an MCU in pixels: 16x16 for 4:2:0, 8x16 for 4:2:2, 8x8 for 4:4:4
    width: int
    height: int
    sampling: tuple[tuple[int, int], ...]  # (horizontal, vertical) sampling factor of each component, in scan order
    blocks: int  # 8x8 blocks decoded
    restart_interval: int  # MCUs per restart interval, 0 without restart markers
    header_bits: int  # SOI through the SOS header: markers, APPn, quantization and Huffman tables
    padding_bits: int  # 1-bits filling the last byte before each RST marker and EOI (with a 0x00 stuffed after one)
    restart_bits: int  # the RST markers
    trailer_bits: int  # EOI and anything after the scan

    @property
    def scan_bits(self) -> int:
        """The entropy-coded MCUs: every bit of the scan that belongs to an MCU."""
        return int(self.mcu_bits.sum())

    @property
    def other_bits(self) -> int:
        """Everything that is not an MCU's: headers, tables, padding and markers."""
        return self.header_bits + self.padding_bits + self.restart_bits + self.trailer_bits


def parse(data: bytes) -> JpegBits:
    """The per-MCU bits of a baseline sequential Huffman JPEG file (`data`, the whole file)."""
    if data[:2] != b"\xff\xd8":
        raise JpegBitsError("not a JPEG file: it does not start with an SOI marker")
    tables: dict[tuple[int, int], tuple[list[int], list[int]]] = {}
    frame = None
    restart = 0
    pos = 2
    while True:
        while pos + 1 < len(data) and data[pos] == 0xFF and data[pos + 1] == 0xFF:
            pos += 1  # fill bytes before a marker
        if pos + 1 >= len(data):
            raise JpegBitsError("truncated JPEG: the file ends before its scan")
        if data[pos] != 0xFF:
            raise JpegBitsError(f"corrupt JPEG: expected a marker at byte {pos}")
        marker = data[pos + 1]
        if marker in _UNSUPPORTED:
            raise UnsupportedJpegError(f"{_UNSUPPORTED[marker]} is not supported: {_ONLY}")
        if marker == 0xD9:
            raise JpegBitsError("corrupt JPEG: EOI before any scan")
        if marker in (0x01, *range(0xD0, 0xD8)) or 0xF0 <= marker <= 0xFD:
            raise JpegBitsError(f"corrupt JPEG: unexpected marker 0xFF{marker:02X} at byte {pos}")
        if pos + 4 > len(data) or pos + 2 + _u16(data, pos + 2) > len(data):
            raise JpegBitsError(f"truncated JPEG: the file ends inside the segment of marker 0xFF{marker:02X}")
        length = _u16(data, pos + 2)
        if length < 2:
            raise JpegBitsError(f"corrupt JPEG: segment length {length} at byte {pos}")
        body = data[pos + 4 : pos + 2 + length]
        pos += 2 + length
        if marker in (0xC0, 0xC1):
            if frame is not None:
                raise JpegBitsError("corrupt JPEG: two frame headers")
            frame = _frame(body)
        elif marker == 0xC4:
            _huffman_tables(body, tables)
        elif marker == 0xDD:
            if len(body) != 2:
                raise JpegBitsError("corrupt JPEG: bad DRI segment")
            restart = _u16(body, 0)
        elif marker == 0xDA:
            if frame is None:
                raise JpegBitsError("corrupt JPEG: a scan before the frame header")
            return _scan(data, pos, body, frame, tables, restart)


def block_bpp(bits: JpegBits) -> np.ndarray:
    """Bits per pixel of each 8x8 block of the image (ceil(H/8) x ceil(W/8)): each MCU's bits spread
    uniformly over its pixels inside the image, so it can share a colour scale with cwic's bits / 64."""
    mh, mw = bits.mcu_size
    rows, cols = bits.mcu_bits.shape
    inside_h = np.minimum(mh, bits.height - mh * np.arange(rows))
    inside_w = np.minimum(mw, bits.width - mw * np.arange(cols))
    bpp = bits.mcu_bits / np.outer(inside_h, inside_w)
    grid = np.repeat(np.repeat(bpp, mh // 8, axis=0), mw // 8, axis=1)
    return grid[: math.ceil(bits.height / 8), : math.ceil(bits.width / 8)]


def _u16(data: bytes, i: int) -> int:
    return data[i] << 8 | data[i + 1]


def _frame(body: bytes) -> dict:
    """The frame header: sample precision, size and each component's sampling factors."""
    if len(body) < 6:
        raise JpegBitsError("corrupt JPEG: frame header too short")
    if body[0] == 12:
        raise UnsupportedJpegError(f"12-bit JPEG is not supported: {_ONLY} at 8 bits per sample")
    if body[0] != 8:
        raise JpegBitsError(f"corrupt JPEG: sample precision {body[0]} bits")
    height, width, n = _u16(body, 1), _u16(body, 3), body[5]
    if height == 0:
        raise UnsupportedJpegError(f"a number of lines defined after the scan (DNL) is not supported: {_ONLY}")
    if width == 0 or not 1 <= n <= 4 or len(body) != 6 + 3 * n:
        raise JpegBitsError("corrupt JPEG: bad frame header")
    comps = {}
    for i in range(n):
        cid, hv = body[6 + 3 * i], body[7 + 3 * i]
        h, v = hv >> 4, hv & 15
        if not (1 <= h <= 4 and 1 <= v <= 4):
            raise JpegBitsError(f"corrupt JPEG: sampling factors {h}x{v}")
        comps[cid] = (h, v)
    return {"width": width, "height": height, "components": comps}


def _huffman_tables(body: bytes, tables: dict) -> None:
    """Each table of a DHT segment as two 65536-entry lists indexed by the next 16 bits of the scan:
    how many bits to skip (code plus extra bits; -1 for no code) and, for AC, how far the block advances."""
    i = 0
    while i < len(body):
        if i + 17 > len(body):
            raise JpegBitsError("corrupt JPEG: bad DHT segment")
        tc, th = body[i] >> 4, body[i] & 15
        counts = body[i + 1 : i + 17]
        symbols = body[i + 17 : i + 17 + sum(counts)]
        if tc > 1 or th > 3 or len(symbols) != sum(counts):
            raise JpegBitsError("corrupt JPEG: bad DHT segment")
        i += 17 + len(symbols)
        length = np.zeros(1 << 16, np.int32)
        symbol = np.zeros(1 << 16, np.int32)
        code, k = 0, 0
        for n_bits, count in enumerate(counts, start=1):
            for _ in range(count):
                if code >= 1 << n_bits:
                    raise JpegBitsError("corrupt JPEG: a Huffman table with more codes than fit")
                lo = code << (16 - n_bits)
                length[lo : lo + (1 << (16 - n_bits))] = n_bits
                symbol[lo : lo + (1 << (16 - n_bits))] = symbols[k]
                code, k = code + 1, k + 1
            code <<= 1
        size = symbol & 15
        if tc == 0:  # DC: the symbol is the number of extra bits, at most 11 at 8 bits per sample
            skip = np.where((length > 0) & (symbol <= 11), length + symbol, -1)
            tables[(0, th)] = (skip.tolist(), [])
        else:  # AC: run of zeros (high nibble) and extra bits (low nibble, at most 10)
            run = np.where(size > 0, (symbol >> 4) + 1, _BAD)
            run = np.where(symbol == 0x00, _EOB, np.where(symbol == 0xF0, 16, run))
            run = np.where((length > 0) & (size <= 10), run, _BAD)
            tables[(1, th)] = ((length + size).tolist(), run.tolist())


def _scan(data: bytes, pos: int, body: bytes, frame: dict, tables: dict, restart: int) -> JpegBits:
    """Decode the code lengths of the one scan that starts at `pos` and check the file ends after it."""
    comps = frame["components"]
    n = body[0] if body else 0
    if len(body) != 4 + 2 * n or n == 0:
        raise JpegBitsError("corrupt JPEG: bad scan header")
    if n != len(comps):
        raise UnsupportedJpegError(
            f"JPEG with more than one scan (this one codes {n} of {len(comps)} components) is not supported: {_ONLY}"
        )
    if tuple(body[1 + 2 * n :]) != (0, 63, 0):
        raise UnsupportedJpegError(
            f"a scan of spectral selection or successive approximation is not supported: {_ONLY}"
        )
    order = [body[1 + 2 * i] for i in range(n)]
    if sorted(order) != sorted(comps):
        raise JpegBitsError("corrupt JPEG: the scan names components the frame does not have")
    width, height = frame["width"], frame["height"]
    hmax = max(h for h, _ in comps.values())
    vmax = max(v for _, v in comps.values())
    plan = []  # (DC skip, AC skip, AC run) of each block of an MCU, in coding order
    for i, cid in enumerate(order):
        dc, ac = body[2 + 2 * i] >> 4, body[2 + 2 * i] & 15
        if (0, dc) not in tables or (1, ac) not in tables:
            raise JpegBitsError(f"corrupt JPEG: component {cid} uses a Huffman table that is not defined")
        h, v = comps[cid] if n > 1 else (1, 1)  # a single-component scan codes one block per MCU
        plan += [(tables[(0, dc)][0], *tables[(1, ac)])] * (h * v)
    if len(plan) > 10:
        raise JpegBitsError("corrupt JPEG: more than 10 blocks per MCU")
    mcu_size = (8 * vmax, 8 * hmax) if n > 1 else (8, 8)
    rows, cols = math.ceil(height / mcu_size[0]), math.ceil(width / mcu_size[1])
    segments, end, marker, restart_bytes = _segments(data, pos)
    n_mcus = rows * cols
    per_segment = restart or n_mcus
    if len(segments) != math.ceil(n_mcus / per_segment):
        raise JpegBitsError(
            f"corrupt JPEG: the scan has {len(segments)} restart intervals, its header implies "
            f"{math.ceil(n_mcus / per_segment)}"
        )
    starts, ends, padding, stuffed = _decode(segments, plan, n_mcus, per_segment)
    # A stuffed byte goes to the MCU that owns the last bit of the 0xFF before it, else to the padding.
    last_bits = 8 * stuffed + 7
    owner = np.searchsorted(starts, last_bits, side="right") - 1
    in_mcu = (owner >= 0) & (last_bits < ends[np.maximum(owner, 0)])
    mcu_bits = (ends - starts) + 8 * np.bincount(owner[in_mcu], minlength=n_mcus)
    padding += 8 * int((~in_mcu).sum())
    if marker != 0xD9:
        if b"\xff\xda" in data[end:]:
            raise UnsupportedJpegError(f"JPEG with more than one scan is not supported: {_ONLY}")
        raise JpegBitsError(f"corrupt JPEG: marker 0xFF{marker:02X} after the scan instead of EOI")
    return JpegBits(
        mcu_bits=mcu_bits.reshape(rows, cols),
        mcu_size=mcu_size,
        width=frame["width"],
        height=frame["height"],
        sampling=tuple(comps[cid] for cid in order),
        blocks=n_mcus * len(plan),
        restart_interval=restart,
        header_bits=8 * pos,
        padding_bits=padding,
        restart_bits=8 * restart_bytes,
        trailer_bits=8 * (len(data) - end),
    )


def _segments(data: bytes, pos: int) -> tuple[list[bytes], int, int, int]:
    """The scan's restart intervals, unstuffed; where the scan ends (at the marker after it or its
    fill bytes) and that marker's code; and the bytes of its RST markers (fill bytes included)."""
    segments, marker_bytes, expected = [], 0, 0
    seg_start = i = pos
    while True:
        i = data.find(b"\xff", i)
        if i < 0 or i + 1 >= len(data):
            raise JpegBitsError("truncated JPEG: the file ends inside the scan, without an EOI marker")
        nxt = data[i + 1]
        if nxt == 0x00:
            i += 2
            continue
        j = i
        while j + 1 < len(data) and data[j + 1] == 0xFF:
            j += 1  # fill bytes before a marker
        if j + 1 >= len(data):
            raise JpegBitsError("truncated JPEG: the file ends inside the scan, without an EOI marker")
        segments.append(data[seg_start:i].replace(b"\xff\x00", b"\xff"))
        if not 0xD0 <= data[j + 1] <= 0xD7:
            return segments, i, data[j + 1], marker_bytes
        if data[j + 1] != 0xD0 + expected:
            raise JpegBitsError(f"corrupt JPEG: RST{data[j + 1] - 0xD0} where RST{expected} was due")
        expected = (expected + 1) % 8
        marker_bytes += j + 2 - i
        seg_start = i = j + 2


def _decode(segments: list[bytes], plan: list, n_mcus: int, per_segment: int):
    """Start and end bit of every MCU in the unstuffed scan, the padding bits, and the unstuffed byte
    positions that were followed by a stuffed 0x00 (every 0xFF)."""
    joined = b"".join(segments)
    buf = np.frombuffer(joined + bytes(_SLACK), np.uint8).astype(np.int64)
    window = (buf[:-2] << 16 | buf[1:-1] << 8 | buf[2:]).tolist()  # 24 bits from each byte on
    limit = 8 * len(joined)
    starts, ends = [], []
    padding = 0
    seg_byte = 0
    mcu = 0
    for k, segment in enumerate(segments):
        pos = 8 * seg_byte
        seg_byte += len(segment)
        for _ in range(min(per_segment, n_mcus - mcu)):
            starts.append(pos)
            for dc_skip, ac_skip, ac_run in plan:
                skip = dc_skip[(window[pos >> 3] >> (8 - (pos & 7))) & 0xFFFF]
                if skip < 0:
                    raise JpegBitsError(f"corrupt JPEG: an invalid Huffman code in MCU {mcu}")
                pos += skip
                i = 1
                while i < 64:
                    w = (window[pos >> 3] >> (8 - (pos & 7))) & 0xFFFF
                    pos += ac_skip[w]
                    i += ac_run[w]
                if i != 64 and not _EOB < i < _BAD:
                    raise JpegBitsError(f"corrupt JPEG: an invalid Huffman code or over 64 coefficients in MCU {mcu}")
            if pos > limit:
                raise JpegBitsError(f"truncated JPEG: the scan data ends inside MCU {mcu} of {n_mcus}")
            ends.append(pos)
            mcu += 1
        fill = 8 * seg_byte - pos
        if not 0 <= fill < 8:
            raise JpegBitsError(f"corrupt JPEG: restart interval {k}'s MCUs do not end in its last byte")
        if fill and joined[seg_byte - 1] & ((1 << fill) - 1) != (1 << fill) - 1:
            raise JpegBitsError(f"corrupt JPEG: the padding of restart interval {k} is not all 1-bits")
        padding += fill
    stuffed = np.flatnonzero(buf[: len(joined)] == 0xFF)
    return np.array(starts, np.int64), np.array(ends, np.int64), padding, stuffed
