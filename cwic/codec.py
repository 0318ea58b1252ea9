"""`Codec`: image <-> .cwic bytes with the content-weighted autoencoder and the learned entropy coder.

`Compressed.reconstruction` runs the decoder's own rendering function on the tensors the decoder
rebuilds (q and the kept bits), so it equals `Codec.decompress(data)` bit for bit. It is computed on
first access: producing the file does not pay for the synthesis.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import bitstream
from .checkpoint import DEFAULT_CHECKPOINT, WEIGHTS, load_checkpoint, shipped_checkpoints, weights_id
from .entropy_models.entropy_coder import Coded, EntropyModel
from .errors import CheckpointError, ImageError
from .images import check_rgb
from .models.network import (
    RENDER_THREADS,
    fixed_threads,
    kept_channels,
    mask_from_levels,
    pad_to_multiple,
    quantize_importance,
    top_group,
)
from .refinement import DEFAULT_METRICS, check_metrics, rd_slope, refine_codes

DEFAULT_RATES = (0.04, 0.1, 0.18, 0.3, 0.45, 0.65)  # used until `train-entropy` calibrates the card
DEFAULT_LEVEL = 3
RATE_MIN, RATE_MAX = 0.005, 0.99  # search range of `bpp=` (a header rate must be < 1)
BPP_TOLERANCE = 0.01  # relative tolerance of the `bpp=` search


@dataclass
class Compressed:
    """A compressed image: the file bytes plus diagnostics (all from the coded symbols)."""

    data: bytes
    width: int
    height: int
    level: int  # 0 when compressed with bpp=
    rate: float  # the rate r stored in the header
    uniform: bool
    refine_steps: int  # encoder-side refinement steps the codes got (0: the encoder's own codes)
    importance: np.ndarray  # (h, w) float32 p (after uniform / roi)
    importance_levels: np.ndarray  # (h, w) int map symbols q in [0, config.symbols)
    kept_channels: np.ndarray  # (h, w) int, `cwic.models.network.kept_channels` of the map
    bits_per_block: np.ndarray  # (h, w) float64, sums to payload_bits
    map_bits: float  # information content of the map, as coded
    code_bits: float  # information content of the kept bits, as coded
    payload_bits: int  # 8 x (map section + bits section)
    _render: Callable[[], np.ndarray] = field(repr=False)
    _by_level: Callable[[], dict[int, np.ndarray]] | None = field(default=None, repr=False)
    _reconstruction: np.ndarray | None = field(default=None, repr=False)
    _kept_by_level: dict[int, np.ndarray] | None = field(default=None, repr=False)

    @property
    def reconstruction(self) -> np.ndarray:
        """H x W x 3 uint8, equal to `decompress(data)`: the decoder's own path, run on first access."""
        if self._reconstruction is None:
            self._reconstruction = self._render()
        return self._reconstruction

    @property
    def kept_channels_by_level(self) -> dict[int, np.ndarray]:
        """`Codec.kept_channels_by_level` of this image (same uniform / roi), from the encoder pass that made
        this file: computed on first access, after which the encoder features it needed are let go."""
        if self._kept_by_level is None:
            self._kept_by_level, self._by_level = self._by_level(), None
        return self._kept_by_level

    @property
    def bpp(self) -> float:
        """File size in bits per pixel, header and CRC included."""
        return len(self.data) * 8 / (self.width * self.height)

    @property
    def raw_bits(self) -> int:
        """Kept bits plus 4 bits per map entry: the size without context coding."""
        return int(self.kept_channels.sum()) + 4 * self.kept_channels.size


class Codec:
    """A loaded checkpoint (autoencoder + entropy models + calibrated levels)."""

    def __init__(self, model, card: dict, entropy: EntropyModel) -> None:
        self.model, self.card, self.entropy = model, card, entropy
        # channels-last: the synthesis 26 % faster (docs/bitstream.md); the model is this codec's own
        self.model.decoder.to(memory_format=torch.channels_last)
        self.config, self.n, self.L = model.config, model.config.n, model.config.levels
        self.checkpoint_id: str = card["weights_id"]

    @classmethod
    def load(cls, folder: str | Path | None = None) -> Codec:
        """Load a checkpoint folder (default: the shipped checkpoints/cwic-slim)."""
        folder = Path(folder or DEFAULT_CHECKPOINT)
        try:
            model, card, extra = load_checkpoint(folder)
        except FileNotFoundError as e:
            raise CheckpointError(str(e)) from None
        return cls(model, card, EntropyModel(extra, model.config))

    @classmethod
    def for_file(cls, data: bytes, folders: Iterable[str | Path] | None = None) -> Codec:
        """The checkpoint a .cwic file's header names, loaded from the first of `folders` (default:
        every shipped checkpoint) whose weights have that id: a file decodes without its reader
        knowing which model made it. CheckpointError naming the folders searched when none has it."""
        header, _, _ = bitstream.parse(data)
        searched = [Path(f) for f in (shipped_checkpoints() if folders is None else folders)]
        for folder in searched:
            if (folder / WEIGHTS).is_file() and weights_id(folder / WEIGHTS) == header.checkpoint_id:
                return cls.load(folder)
        raise CheckpointError(
            f"this file needs checkpoint {header.checkpoint_id}, which none of the checkpoints searched has "
            f"({', '.join(str(f) for f in searched) or 'no folders'}); load its folder explicitly "
            "(Codec.load, or --checkpoint on the command line)"
        )

    @property
    def levels(self) -> list[dict]:
        """[{"level": K, "rate": r, "bpp": mean Kodak bpp or None}], level 1 = lowest rate."""
        if self.card.get("levels"):
            return [dict(lv) for lv in self.card["levels"]]
        return [{"level": k + 1, "rate": r, "bpp": None} for k, r in enumerate(DEFAULT_RATES)]

    def rate_of(self, level: int) -> float:
        """The rate r of a level; ImageError-style ValueError for an unknown level."""
        for lv in self.levels:
            if lv["level"] == level:
                return float(lv["rate"])
        raise ValueError(f"level must be one of {[lv['level'] for lv in self.levels]}, got {level!r}")

    # -- compression ----------------------------------------------------------------------------------
    @torch.no_grad()
    def compress(
        self,
        rgb: np.ndarray,
        level: int | None = None,
        bpp: float | None = None,
        uniform: bool = False,
        roi: np.ndarray | None = None,
        refine: int = 0,
        refine_for: tuple[str, ...] = DEFAULT_METRICS,
    ) -> Compressed:
        """Compress an H x W x 3 uint8 image at `level` (default 3) or at a target `bpp` (file size).

        `refine` > 0 runs that many encoder-side refinement steps on the codes for the metrics
        `refine_for` (cwic.refinement: better quality for the bits, any decoder reads the file).
        With `bpp`, the size is searched with the encoder's own codes and the refined codes are
        coded at that rate, so the file can be a few per cent off the target.
        """
        rgb = check_rgb(rgb)
        if level is not None and bpp is not None:
            raise ValueError("give level or bpp, not both")
        if isinstance(refine, bool) or not (isinstance(refine, int) and 0 <= refine <= 1000):
            raise ValueError(f"refine must be a whole number of steps in [0, 1000], got {refine!r}")
        refine_for = check_metrics(refine_for)
        h_img, w_img = rgb.shape[:2]
        xp, e, feats, roi_blocks = self._analyze(rgb, roi)
        bits = (e[0] > 0.5).float()

        def importance(rate: float) -> torch.Tensor:
            return self.model.importance_map(feats, rate, roi_blocks, uniform)[0, 0]

        if bpp is None:
            lvl = DEFAULT_LEVEL if level is None else level
            rate = _f32(self.rate_of(lvl))
            p = importance(rate)
            coded = self._code(p, bits, rate)
        else:
            if not (isinstance(bpp, int | float) and 0 < bpp < 64):
                raise ValueError(f"bpp must be a number in (0, 64), got {bpp!r}")
            lvl = 0
            rate, p, coded = self._search_bpp(importance, bits, float(bpp), h_img * w_img)
        if refine:
            bits = self._refine(xp, e, coded[0], rate, refine, refine_for)
            coded = self._code(p, bits, rate)
        q, c = coded
        header = bitstream.Header(
            w_img, h_img, rate, lvl, self.checkpoint_id, uniform, roi is not None, constant_map=c.constant_map
        )
        data = bitstream.pack(header, c.map_section, c.bits_section)
        payload = 8 * (len(c.map_section) + len(c.bits_section))
        info = c.map_info + c.bits_info
        kept = bits * mask_from_levels(q[None, None], self.config)[0]
        kept_counts = kept_channels(q, self.config).numpy()
        return Compressed(
            data=data,
            width=w_img,
            height=h_img,
            level=lvl,
            rate=rate,
            uniform=uniform,
            refine_steps=refine,
            importance=p.numpy().astype(np.float32),
            importance_levels=q.numpy(),
            kept_channels=kept_counts,
            bits_per_block=info * (payload / info.sum()),
            map_bits=float(c.map_info.sum()),
            code_bits=float(c.bits_info.sum()),
            payload_bits=payload,
            _render=lambda: self._render(q, kept, h_img, w_img),
            _by_level=lambda: self._kept_by_level(feats, roi_blocks, uniform, {lvl: kept_counts}),
        )

    def kept_channels_by_level(
        self, rgb: np.ndarray, uniform: bool = False, roi: np.ndarray | None = None
    ) -> dict[int, np.ndarray]:
        """{level: (h, w) int channels kept per 8x8 block}, equal to `compress(rgb, level=k, ...).kept_channels`
        for every level, from one encoder pass: only the importance net sees the rate, so how the map grows
        with the rate costs one small network per level, not one compression per level. (A `Compressed` has
        this for its own image without even that pass.)"""
        _, _, feats, roi_blocks = self._analyze(check_rgb(rgb), roi)
        return self._kept_by_level(feats, roi_blocks, uniform)

    @torch.no_grad()
    def _kept_by_level(self, feats, roi_blocks, uniform: bool, known: dict | None = None) -> dict[int, np.ndarray]:
        """The importance net at every level's rate; `known` holds levels already computed (a file's own)."""
        kept = {}
        for lv in self.levels:
            k = lv["level"]
            if known and k in known:
                kept[k] = known[k]
            else:
                p = self.model.importance_map(feats, _f32(lv["rate"]), roi_blocks, uniform)[0, 0]
                kept[k] = kept_channels(quantize_importance(p, self.config), self.config).numpy()
        return kept

    @torch.no_grad()
    def _analyze(self, rgb: np.ndarray, roi: np.ndarray | None):
        """The rate-independent part of encoding: (padded image, code activations e, encoder features, ROI
        per block or None)."""
        h_img, w_img = rgb.shape[:2]
        if roi is not None:
            roi = np.asarray(roi, dtype=np.float32)
            if roi.shape != (h_img, w_img) or not np.isfinite(roi).all():
                raise ImageError(f"roi must be a finite {h_img}x{w_img} array, got shape {roi.shape}")
        x = torch.tensor(rgb).permute(2, 0, 1)[None].float() / 255
        xp, _ = pad_to_multiple(x)
        e, feats = self.model.analyze(xp)
        return xp, e, feats, _block_mean(roi, xp.shape[-2:]) if roi is not None else None

    def _refine(self, xp, e, q: torch.Tensor, rate: float, steps: int, metrics: tuple[str, ...]) -> torch.Tensor:
        """Refined 0/1 codes (n, h, w) for the mask of levels q, at this checkpoint's own R-D slope."""
        slope = rd_slope(self.levels, rate, metrics)
        mask = mask_from_levels(q[None, None], self.config)
        bit_net = self.entropy.float_bit_context()
        t = top_group(q, self.config)
        return refine_codes(self.model, bit_net, xp, e, mask, t, rate, slope, metrics, steps)[0]

    def _code(self, p: torch.Tensor, bits: torch.Tensor, rate: float) -> tuple[torch.Tensor, Coded]:
        q = quantize_importance(p, self.config)
        return q, self.entropy.encode(q, bits, rate)

    def _search_bpp(self, importance, bits, target: float, pixels: int):
        """Bisection on r against the real file size (bpp grows monotonically with r up to quantization)."""
        overhead = 8 * (bitstream.HEADER_SIZE + bitstream.TRAILER_SIZE)
        lo, hi = RATE_MIN, RATE_MAX
        best = None
        for _ in range(14):
            rate = _f32((lo + hi) / 2) if best is not None else _f32(min(max(target / 1.2, lo), hi))
            p = importance(rate)
            coded = self._code(p, bits, rate)
            size = 8 * (len(coded[1].map_section) + len(coded[1].bits_section)) + overhead
            got = size / pixels
            if best is None or abs(got - target) < abs(best[0] - target):
                best = (got, rate, p, coded)
            if abs(got - target) <= BPP_TOLERANCE * target:
                break
            lo, hi = (rate, hi) if got < target else (lo, rate)
            if hi - lo < 1e-4:
                break
        return best[1], best[2], best[3]

    # -- decompression -------------------------------------------------------------------------------
    @torch.no_grad()
    def decompress(self, data: bytes) -> np.ndarray:
        """.cwic bytes -> H x W x 3 uint8. BitstreamError / CheckpointError on bad input."""
        header, q, bits = self.decode_codes(data)
        return self._render(q, bits, header.height, header.width)

    def decode_codes(self, data: bytes) -> tuple[bitstream.Header, torch.Tensor, torch.Tensor]:
        """.cwic bytes -> (header, q (h, w) map symbols, bits (n, h, w) 0/1): the exact, machine-independent
        half of decoding, without the float synthesis."""
        header, map_s, bits_s = bitstream.parse(data)
        if header.checkpoint_id != self.checkpoint_id:
            raise CheckpointError(
                f"this file needs checkpoint {header.checkpoint_id}; the loaded checkpoint is {self.checkpoint_id} "
                "(Codec.for_file(data) loads the right one of the shipped checkpoints; `cwic decode` does so "
                "without --checkpoint)"
            )
        hc, wc = -(-header.height // 8), -(-header.width // 8)
        q, bits = self.entropy.decode(map_s, bits_s, hc, wc, header.rate, header.constant_map)
        return header, q, bits

    @torch.no_grad()
    def _render(self, q: torch.Tensor, bits: torch.Tensor, height: int, width: int) -> np.ndarray:
        """The decoder: (q, masked 0/1 bits) -> cropped uint8 image. The encoder calls it too."""
        x_hat = self.synthesize_levels(q, bits, height, width)
        return x_hat.round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()

    @torch.no_grad()
    def synthesize_levels(self, q: torch.Tensor, bits: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """(q, 0/1 bits) -> the cropped (3, H, W) float image in [0, 255] that decoding rounds: the exact path
        of `decompress` (threads, layout), for callers that need the values before rounding (the golden file)."""
        mask = mask_from_levels(q[None, None], self.config)
        codes = (bits[None] * mask).contiguous(memory_format=torch.channels_last)
        with fixed_threads(RENDER_THREADS):
            x_hat = self.model.synthesize(codes, mask)[0, :, :height, :width]
        return x_hat.clamp(0, 1) * 255


def _f32(r: float) -> float:
    """r as stored in the header (float32), so encoder and header agree exactly."""
    return float(np.float32(r))


def _block_mean(roi: np.ndarray, padded_hw) -> torch.Tensor:
    """Mean of the ROI over each 8x8 block (replicate-padded like the image), clipped to [0, 1]."""
    t = torch.from_numpy(np.clip(roi, 0, 1))[None, None]
    t, _ = pad_to_multiple(t)
    return torch.nn.functional.avg_pool2d(t, 8)
