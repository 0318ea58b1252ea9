"""Classical codecs through Pillow (JPEG, JPEG 2000, WebP, AVIF), rate-matched by real file size.

Every codec has one knob that raises the rate monotonically: the quality for JPEG, WebP and AVIF
(integers), the nominal bits per pixel of OpenJPEG's rate mode for JPEG 2000 (continuous). To hit
a target bpp we search that knob on the real file bytes; a result within `tol` of the target is a
match, otherwise the closest result below the target is used (the baseline never gets more bits
than asked for), and only when even the lowest setting is above the target the smallest file is
returned with `matched=False`.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field

import numpy as np
import PIL
from PIL import Image, features


@dataclass
class Encoded:
    """One classical encoding: the real file, its decoded image and how it was made."""

    codec: str
    data: bytes
    reconstruction: np.ndarray
    bpp: float
    settings: dict
    matched: bool = True
    target_bpp: float | None = None
    probes: int = 0

    def row(self) -> dict:
        """JSON-friendly summary (no pixels, no bytes)."""
        out = {"codec": self.codec, "bytes": len(self.data), "bpp": self.bpp, "settings": self.settings}
        if self.target_bpp is not None:
            out.update(target_bpp=self.target_bpp, matched=self.matched, probes=self.probes)
        return out


@dataclass(frozen=True)
class _Spec:
    fmt: str  # Pillow format name
    knob: str  # name of the searched setting
    lo: float
    hi: float
    integer: bool
    fixed: dict = field(default_factory=dict)  # settings that never change
    sweep: tuple = ()  # knob values of the fixed sweep used for full RD curves

    def options(self, x: float) -> dict:
        if self.fmt == "JPEG2000":
            # OpenJPEG's rate mode takes a compression ratio over the raw 24 bpp samples.
            return {**self.fixed, "quality_layers": [24.0 / x]}
        return {**self.fixed, self.knob: int(x)}


# AVIF runs at libavif speed 8, not its default 6: 3-4x faster to encode, which keeps the full Kodak
# evaluation within budget on 2 cores; measured on 4 Kodak images at quality 30 / 50, speed 8 costs
# -0.3 to +16 % bytes and 0.3 dB less PSNR at the same quality setting (docs/evaluation.md).
SPECS: dict[str, _Spec] = {
    "jpeg": _Spec("JPEG", "quality", 1, 95, True, {"optimize": True, "subsampling": "4:2:0"}, (5, 15, 35, 60, 90)),
    "jpeg2000": _Spec(
        "JPEG2000",
        "nominal_bpp",
        0.01,
        8.0,
        False,
        {"quality_mode": "rates", "irreversible": True, "mct": 1, "no_jp2": True},
        (0.0625, 0.125, 0.25, 0.5, 1.0),
    ),
    "webp": _Spec("WEBP", "quality", 0, 100, True, {"method": 4}, (0, 10, 30, 60, 90)),
    "avif": _Spec("AVIF", "quality", 0, 100, True, {"speed": 8, "subsampling": "4:2:0"}, (10, 25, 40, 60, 80)),
}
CODECS = tuple(SPECS)


def encoder_versions() -> dict:
    """Pillow and the encoder libraries it loaded, for the record in every result file."""
    versions = {
        "Pillow": PIL.__version__,
        "libjpeg-turbo": features.version_feature("libjpeg_turbo"),
        "openjpeg": features.version_codec("jpg_2000"),
        "libwebp": features.version_module("webp"),
        "libavif": features.version_module("avif"),
    }
    try:
        from PIL import _avif

        versions["avif_codecs"] = _avif.codec_versions()
    except (ImportError, AttributeError):
        pass
    return versions


def describe(codec: str) -> str:
    """One line naming the encoder, its library version and the fixed settings."""
    spec, v = SPECS[codec], encoder_versions()
    lib = {"jpeg": "libjpeg-turbo", "jpeg2000": "openjpeg", "webp": "libwebp", "avif": "libavif"}[codec]
    extra = f" ({v['avif_codecs']})" if codec == "avif" and "avif_codecs" in v else ""
    fixed = ", ".join(f"{k}={val}" for k, val in spec.fixed.items())
    return f"Pillow {v['Pillow']} {spec.fmt}, {lib} {v[lib]}{extra}; searched {spec.knob}; {fixed}"


def encode(codec: str, rgb: np.ndarray, knob: float) -> Encoded:
    """Encode HxWx3 uint8 `rgb` with one knob value; bpp counts the whole file."""
    spec = SPECS[codec]
    if spec.integer:
        knob = int(round(knob))
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, spec.fmt, **spec.options(knob))
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as im:
        rec = np.asarray(im.convert("RGB"))
    settings = {"format": spec.fmt, spec.knob: knob, **{k: v for k, v in spec.options(knob).items() if k != spec.knob}}
    return Encoded(codec, data, rec, len(data) * 8 / (rgb.shape[0] * rgb.shape[1]), settings)


def sweep(codec: str, rgb: np.ndarray, cache: dict | None = None) -> list[Encoded]:
    """The codec's fixed quality sweep on one image (for full RD curves)."""
    return [_probe(codec, rgb, x, cache) for x in SPECS[codec].sweep]


def encode_at_bpp(
    codec: str, rgb: np.ndarray, target_bpp: float, tol: float = 0.02, cache: dict | None = None, max_probes: int = 12
) -> Encoded:
    """Search the codec's knob so the real file lands within `tol` (relative) of `target_bpp`.

    `cache` (a dict owned by the caller, one per image and codec) keeps earlier probes, so the
    searches for several targets on one image share their encodes.
    """
    if target_bpp <= 0:
        raise ValueError(f"target bpp must be positive, got {target_bpp}")
    spec = SPECS[codec]
    cache = {} if cache is None else cache
    n0 = len(cache)

    def probe(x: float) -> Encoded:
        return _probe(codec, rgb, x, cache)

    def done(e: Encoded) -> bool:
        return abs(e.bpp - target_bpp) <= tol * target_bpp

    if not spec.integer:
        probe(min(max(target_bpp, spec.lo), spec.hi))  # the rate mode usually lands within tol at once
    for _ in range(max_probes):
        below = [e for e in cache.values() if e.bpp <= target_bpp]
        above = [e for e in cache.values() if e.bpp > target_bpp]
        if any(done(e) for e in cache.values()):
            break
        if not below or not above:  # bracket the target with the knob's ends first
            end = spec.lo if not below else spec.hi
            if _key(spec, end) in cache:
                break
            probe(end)
            continue
        a = max(below, key=lambda e: (e.bpp, _knob(e)))
        b = min(above, key=lambda e: (e.bpp, -_knob(e)))
        xa, xb = _knob(a), _knob(b)
        if spec.integer and xb - xa <= 1:
            break
        x = _interpolate(xa, xb, a.bpp, b.bpp, target_bpp, spec.integer)
        if _key(spec, x) in cache:
            break
        probe(x)
    return _choose(cache.values(), target_bpp, tol, len(cache) - n0)


def _knob(e: Encoded) -> float:
    return e.settings[SPECS[e.codec].knob]


def _key(spec: _Spec, x: float) -> float:
    return int(round(x)) if spec.integer else float(x)


def _probe(codec: str, rgb: np.ndarray, x: float, cache: dict | None) -> Encoded:
    key = _key(SPECS[codec], x)
    if cache is None:
        return encode(codec, rgb, key)
    if key not in cache:
        cache[key] = encode(codec, rgb, key)
    return cache[key]


def _interpolate(xa: float, xb: float, ya: float, yb: float, target: float, integer: bool) -> float:
    """Next knob inside (xa, xb): linear in log bpp (rate mode in log knob), kept off the ends."""
    if integer:
        t = (math.log(target) - math.log(ya)) / (math.log(yb) - math.log(ya)) if ya > 0 else 0.5
        x = round(xa + min(max(t, 0.15), 0.85) * (xb - xa))
        return float(min(max(x, xa + 1), xb - 1))
    la, lb = math.log(xa), math.log(xb)
    t = (math.log(target) - math.log(ya)) / (math.log(yb) - math.log(ya))
    return math.exp(la + min(max(t, 0.1), 0.9) * (lb - la))


def _choose(found, target: float, tol: float, probes: int) -> Encoded:
    found = list(found)
    close = [e for e in found if abs(e.bpp - target) <= tol * target]
    below = [e for e in found if e.bpp <= target]
    if close:
        best, matched = min(close, key=lambda e: abs(e.bpp - target)), True
    elif below:
        best, matched = max(below, key=lambda e: e.bpp), True
    else:
        best, matched = min(found, key=lambda e: e.bpp), False
    return Encoded(best.codec, best.data, best.reconstruction, best.bpp, best.settings, matched, target, probes)
