"""Entropy coding of (importance map, kept bits) with the staged context models and constriction.

Encoder and decoder run the same functions, `EntropyModel._map_stages` and `_bit_stages`, which
make the staged network calls and hand each stage's probabilities to a `_Coder`: the encoder's
coder writes the true symbols, the decoder's reads them back. So both sides compute probabilities
from identical inputs with identical (exact integer) arithmetic. Stage order and inputs: see
context_model.py.

A map with one value everywhere (every uniform-map file) is not range-coded: its section is that
symbol in one 4-byte word, which is never longer than a coded section (at least one word) and does
not charge the ablation for a map it does not have.
"""

from __future__ import annotations

from dataclasses import dataclass

import constriction
import numpy as np
import torch
from torch import Tensor

from ..bitstream import CONSTANT_MAP_LEN
from ..errors import BitstreamError, CheckpointError
from ..models.config import ModelConfig
from ..models.network import fixed_threads, top_group
from .context_model import (
    A_BITS,
    DIFF_MAX,
    LOGIT_MAX,
    LUT_STEP,
    PROB_BITS,
    W_BITS,
    BitContext,
    IntNet,
    checkerboard,
    import_int,
    int_shape,
    map_dilations,
    map_phase,
    map_scales,
    rate_plane_value,
)

_STEP = 2.0 ** (W_BITS + A_BITS) / LUT_STEP  # integer logit units per table step
CODER_THREADS = 2  # exact integer sums: any thread count gives the same bytes; two halve level 6's stages


@dataclass
class Coded:
    """What the encoder produced: two range-coded sections and the information per location."""

    map_section: bytes
    bits_section: bytes
    map_info: np.ndarray  # (h, w) float64: -log2 P(q) of each map entry, as coded (constant: 32 bits spread)
    bits_info: np.ndarray  # (h, w) float64: sum of -log2 P(bit) of the coded bits at each location
    constant_map: bool  # the map section is one symbol, not range-coded (the header's flag says so)


class _Coder:
    """Encodes given symbols (encoder) or decodes them (decoder) for one section."""

    def __init__(self, data: bytes | None = None) -> None:
        if data is None:
            self.enc, self.dec = constriction.stream.queue.RangeEncoder(), None
        else:
            if len(data) % 4 or not data:
                raise BitstreamError("corrupt payload: a section is not a whole number of 32-bit words")
            self.enc, self.dec = None, constriction.stream.queue.RangeDecoder(np.frombuffer(data, dtype="<u4"))

    def code(self, family, params: np.ndarray, symbols: np.ndarray | None) -> np.ndarray:
        params = np.ascontiguousarray(params, dtype=np.float64)  # constriction reads the buffer as C-ordered
        if self.enc is not None:
            self.enc.encode(symbols.astype(np.int32), family, params)
            return symbols
        try:
            return np.asarray(self.dec.decode(family, params), dtype=np.int64)
        except Exception as e:  # constriction reports corrupt data with its own exception types
            raise BitstreamError(f"corrupt payload: the range decoder failed ({e})") from None

    def finish(self) -> bytes:
        if self.enc is not None:
            return self.enc.get_compressed().astype("<u4").tobytes()
        if not self.dec.maybe_exhausted():
            raise BitstreamError("corrupt payload: a section has data left over after decoding")
        return b""


class EntropyModel:
    """The shipped context models (integer weights and probability tables) and the coding loop."""

    def __init__(self, tensors: dict[str, Tensor], config: ModelConfig) -> None:
        try:
            self.map_net = IntNet(tensors, "entropy.map")
            self.bit_net = IntNet(tensors, "entropy.bits")
            self.sigmoid = tensors["entropy.lut.sigmoid"].to(torch.float64)
            self.exp = tensors["entropy.lut.exp"].to(torch.float64)
        except KeyError as e:
            raise CheckpointError(
                f"checkpoint has no entropy model (missing {e}); run `python -m cwic train-entropy`"
            ) from None
        self.config = config
        if (
            self.bit_net.stages != 2 * config.levels
            or self.bit_net.hw.shape[1] != config.group
            or self.map_net.hw.shape[1] != config.symbols
        ):
            raise CheckpointError("entropy model does not match the autoencoder's n / levels / map symbols")
        try:
            self.map_scales = map_scales(self.map_net.stages)
        except ValueError as e:
            raise CheckpointError(f"entropy model: {e}") from None
        self._bern = constriction.stream.model.Bernoulli(perfect=False)
        self._cat = constriction.stream.model.Categorical(perfect=False)
        self._tensors, self._float_bits = tensors, None

    def float_bit_context(self) -> BitContext:
        """The bit model as a float32 module (its integer weights read back; for code refinement)."""
        if self._float_bits is None:
            width, kernel = int_shape(self._tensors, "entropy.bits")
            net = BitContext(self.config.n, self.config.levels, width, kernel)
            import_int(net, self._tensors, "entropy.bits")
            self._float_bits = net.eval().requires_grad_(False)
        return self._float_bits

    # -- probabilities from integer logits ----------------------------------------------------------
    def bit_probs(self, logits: Tensor) -> Tensor:
        """Integer logits -> P(bit = 1) on the 2^-PROB_BITS grid (float64, exact)."""
        idx = torch.floor(logits / _STEP).clamp_(-LOGIT_MAX * LUT_STEP, LOGIT_MAX * LUT_STEP)
        return self.sigmoid[(idx + LOGIT_MAX * LUT_STEP).long()] / 2.0**PROB_BITS

    def map_probs(self, logits: Tensor) -> Tensor:
        """(N, L) integer logits -> (N, L) probabilities (integer weights / their sum, float64)."""
        d = torch.floor((logits.max(1, keepdim=True).values - logits) / _STEP).clamp_(0, DIFF_MAX)
        w = self.exp[d.long()]
        return w / w.sum(1, keepdim=True)

    # -- coding -------------------------------------------------------------------------------------
    def encode(self, q: Tensor, bits: Tensor, rate: float) -> Coded:
        """q (h, w) long map symbols, bits (n, h, w) 0/1 -> Coded. Only bits inside the mask are coded."""
        q = q.long()
        h, w = q.shape
        constant = bool((q == q[0, 0]).all())
        bc = _Coder()
        with torch.no_grad(), fixed_threads(CODER_THREADS):
            if constant:
                map_section = bytes([int(q[0, 0])]) + bytes(CONSTANT_MAP_LEN - 1)
                map_info = np.full((h, w), 8.0 * CONSTANT_MAP_LEN / (h * w))
            else:
                mc = _Coder()
                _, map_info = self._map_stages(h, w, rate, mc, q)
                map_section = mc.finish()
            _, bits_info = self._bit_stages(q, rate, bc, bits)
        return Coded(map_section, bc.finish(), map_info, bits_info, constant)

    def decode(
        self, map_section: bytes, bits_section: bytes, h: int, w: int, rate: float, constant_map: bool = False
    ) -> tuple[Tensor, Tensor]:
        """Inverse of `encode`: (q (h, w) long map symbols, bits (n, h, w) float 0/1, zero outside the mask).
        `constant_map`: the header's flag that the map section is one symbol (`Coded.constant_map`)."""
        bc = _Coder(bits_section)
        with torch.no_grad(), fixed_threads(CODER_THREADS):
            if constant_map:
                sym = map_section[0] if len(map_section) == CONSTANT_MAP_LEN else -1
                if not 0 <= sym < self.config.symbols or any(map_section[1:]):
                    raise BitstreamError(
                        f"corrupt payload: a constant map section must be one symbol below {self.config.symbols} "
                        f"and {CONSTANT_MAP_LEN - 1} zero bytes, got {map_section[:8].hex()}"
                    )
                q = torch.full((h, w), sym, dtype=torch.long)
            else:
                mc = _Coder(map_section)
                q, _ = self._map_stages(h, w, rate, mc, None)
                mc.finish()
            bits, _ = self._bit_stages(q, rate, bc, None)
        bc.finish()
        return q, bits

    def _map_stages(self, h: int, w: int, rate: float, mc: _Coder, q_true: Tensor | None):
        """Code the importance map (q_true: encoder, None: decoder) in 1 + 3 scales phase stages, coarse to
        fine -> (q, map_info)."""
        r = float(rate_plane_value(rate))
        net = self.map_net
        phase = map_phase(h, w, None, self.map_scales)[0, 0]
        q = torch.zeros(h, w, dtype=torch.long)
        known = torch.zeros(h, w, dtype=torch.float64)
        map_info = np.zeros((h, w))
        for s, dilation in enumerate(map_dilations(self.map_scales)):
            x = torch.stack([(q + 1).to(torch.float64) * known, known, torch.full_like(known, r)])
            pos = (phase == s).nonzero(as_tuple=True)
            pre = (net.w1m @ x.view(3, -1)).view(-1, h, w)
            logits = net.logits_at(net.hidden(pre, s), pos[0], pos[1], s, dilation).T  # (N, symbols) in raster order
            probs = self.map_probs(logits)
            sym = mc.code(self._cat, probs.numpy(), None if q_true is None else q_true[pos].numpy())
            q[pos] = torch.from_numpy(sym)
            known[pos] = 1
            map_info[pos[0].numpy(), pos[1].numpy()] = -np.log2(probs.numpy()[np.arange(len(sym)), sym])
        return q, map_info

    def _bit_stages(self, q: Tensor, rate: float, bc: _Coder, bits_true: Tensor | None):
        """Code the kept bits given the map q (bits_true: encoder, None: decoder) -> (bits, bits_info)."""
        r = float(rate_plane_value(rate))
        h, w = q.shape
        # L groups x 2 checkerboard halves, group g where the last kept group t >= g
        n, gsz, net = self.config.n, self.config.group, self.bit_net
        t = top_group(q, self.config)
        cb = checkerboard(h, w)[0, 0]
        # conv1 sums of everything decoded so far (bits, t, rate), updated group by group
        acc = (net.w1m[:, n : n + 1] * t.view(1, -1).to(torch.float64) + net.w1m[:, n + 2 : n + 3] * r).view(-1, h, w)
        bits = torch.zeros(n, h, w)
        bits_info = np.zeros((h, w))
        for g in range(self.config.levels):
            for half in (0, 1):
                coded = (t >= g) & (cb == half)
                if not bool(coded.any()):
                    continue
                stage = 2 * g + half
                pre = acc
                if half:  # the decoded-neighbour plane of the current group
                    pre = acc + net.w1m[:, n + 1].view(-1, 1, 1) * ((t >= g) & (cb == 0)).to(torch.float64)
                pos = coded.nonzero(as_tuple=True)
                p1 = self.bit_probs(net.logits_at(net.hidden(pre, stage), pos[0], pos[1], stage)).reshape(-1)
                chans = slice(g * gsz, (g + 1) * gsz)  # p1 is channel-major over the coded positions
                truth = None if bits_true is None else bits_true[chans][:, pos[0], pos[1]].reshape(-1).numpy()
                sym = bc.code(self._bern, p1.numpy(), truth)
                b = torch.from_numpy(np.asarray(sym, dtype=np.float32)).view(gsz, -1)
                bits[chans, pos[0], pos[1]] = b
                acc[:, pos[0], pos[1]] += net.w1m[:, chans] @ (2 * b.double() - 1)
                p = p1.numpy().reshape(gsz, -1)
                info = -np.log2(np.where(b.numpy() > 0, p, 1 - p)).sum(0)
                bits_info[pos[0].numpy(), pos[1].numpy()] += info
        return bits, bits_info
