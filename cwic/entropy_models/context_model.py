"""Staged context models that give the entropy coder its probabilities (replaces the paper's CEC).

Decoding order (both models are called once per stage, predicting a whole stage in parallel):
- importance map q (h x w, S = config.symbols classes: L, or L + 1 with `zero_level`), coarse to
  fine over `scales` nested lattices (stride 2^(scales-1) down to 1): the coarsest lattice in its
  four 2x2 phases (0,0), (1,1), (0,1), (1,0), then each finer lattice's three new phases (1,1),
  (0,1), (1,0); 1 + 3 scales stages, a stage on the lattice of stride d reading its neighbours
  with a 3x3 convolution dilated by d. Each stage sees the already decoded q values and the rate
  of the file. scales = 1 is the original four-stage order (the checkpoint's map model says which:
  its stage count).
- code bits: L channel groups of n/L channels; group g in two checkerboard halves, so 2L stages.
  Each stage sees every decoded bit (+1/-1; unknown or dropped = 0), the last kept group t
  (`cwic.models.network.top_group`: q, or q - 1 with `zero_level`), the decoded-neighbour plane of
  the current group and the rate, and predicts P(bit = 1) for the group's n/L channels; group g is
  coded where t >= g.

Training uses float32 modules (`MapContext`, `BitContext`). Coding uses `IntNet`, their integer
export: integer weights, integer activations, exact float64 arithmetic (every partial sum stays
below 2^52, so the result is independent of summation order, thread count and CPU), and
probabilities read from integer tables. Encoder and decoder therefore agree bit for bit on any
machine.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MAP_STAGES = ((0, 0), (1, 1), (0, 1), (1, 0))  # (row parity, column parity) of each map stage
ACT_CLAMP = 64.0  # activations are clamped to [0, ACT_CLAMP] (keeps integer inference bounded)
W_BITS = 12  # weights are integers at scale 2^W_BITS
A_BITS = 8  # activations are integers at scale 2^A_BITS
LUT_STEP = 16  # logits are read from the tables in steps of 1/LUT_STEP
LOGIT_MAX = 14  # Bernoulli logits are clamped to +-LOGIT_MAX
DIFF_MAX = 255  # categorical logit differences are clamped to DIFF_MAX / LUT_STEP
PROB_BITS = 16  # table probabilities are integers at scale 2^PROB_BITS, at least 1


def rate_plane_value(rate: float) -> int:
    """The integer rate input both models see: round(16 r)."""
    return int(round(float(rate) * 16))


def map_scales(stages: int) -> int:
    """The number of map lattices of a map model with `stages` stages (1 + 3 scales)."""
    if stages < 4 or (stages - 1) % 3:
        raise ValueError(f"a map model has 1 + 3 * scales stages; got {stages}")
    return (stages - 1) // 3


def map_dilations(scales: int) -> tuple[int, ...]:
    """The conv2 dilation of every map stage: the stride of the lattice the stage codes on."""
    coarse = 2 ** (scales - 1)
    return (coarse,) * 4 + tuple(2**d for d in range(scales - 2, -1, -1) for _ in range(3))


class StagedNet(nn.Module):
    """1x1 (+ per-stage bias) -> k x k (per-stage dilation) -> 1x1 -> per-stage 1x1 head.

    Every ReLU is clamped to [0, ACT_CLAMP].
    """

    def __init__(self, c_in: int, width: int, out: int, stages: int, k: int, dilations: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.dilations = dilations or (1,) * stages
        self.distinct_dilations = tuple(sorted(set(self.dilations)))
        self.conv1 = nn.Conv2d(c_in, width, 1, bias=False)
        self.stage_bias = nn.Parameter(torch.zeros(stages, width))
        self.conv2 = nn.Conv2d(width, width, k, padding=k // 2)
        self.conv3 = nn.Conv2d(width, width, 1)
        self.head_w = nn.Parameter(torch.randn(stages, out, width) * width**-0.5)
        self.head_b = nn.Parameter(torch.zeros(stages, out))
        self.k = k

    def forward(self, x: Tensor, stage: Tensor) -> Tensor:
        """x (B, c_in, h, w), stage (B,) long -> logits (B, out, h, w)."""
        act = lambda t: t.clamp(0, ACT_CLAMP)  # noqa: E731
        h = act(self.conv1(x) + self.stage_bias[stage][:, :, None, None])
        h = act(self._conv2(h, stage))
        h = act(self.conv3(h))
        return torch.einsum("boc,bchw->bohw", self.head_w[stage], h) + self.head_b[stage][:, :, None, None]

    def _conv2(self, h: Tensor, stage: Tensor) -> Tensor:
        """conv2 at each sample's stage dilation (one pass per dilation present in the batch)."""
        if self.distinct_dilations == (1,):  # the bit model, and a one-lattice map model: no per-sample choice
            return self.conv2(h)
        dil = torch.tensor(self.dilations, device=h.device)[stage]
        out = None
        for d in self.distinct_dilations:
            chosen = dil == d
            if not bool(chosen.any()):
                continue
            y = F.conv2d(h, self.conv2.weight, self.conv2.bias, padding=d * (self.k // 2), dilation=d)
            out = y if out is None else torch.where(chosen.view(-1, 1, 1, 1), y, out)
        return out


def map_inputs(q: Tensor, stage: Tensor, rate_int: Tensor, scales: int = 1) -> tuple[Tensor, Tensor]:
    """(inputs (B, 3, h, w), positions of the stage (B, 1, h, w) bool) for map stages `stage` (B,).

    Inputs: q + 1 where already decoded else 0; the decoded plane; the rate value.
    """
    b, _, h, w = q.shape
    phase = map_phase(h, w, q.device, scales)  # (1, 1, h, w) stage index of every location
    s = stage.view(b, 1, 1, 1)
    known = (phase < s).to(torch.float64 if q.dtype == torch.float64 else torch.float32)
    x = torch.cat(
        [(q.to(known.dtype) + 1) * known, known, rate_int.view(b, 1, 1, 1).to(known.dtype).expand_as(known)], 1
    )
    return x, (phase == s)


def map_phase(h: int, w: int, device=None, scales: int = 1) -> Tensor:
    """(1, 1, h, w) long: the map stage that codes each location (see the module docstring)."""
    ii = torch.arange(h, device=device).view(h, 1).expand(h, w)
    jj = torch.arange(w, device=device).view(1, w).expand(h, w)
    phase = torch.zeros(h, w, dtype=torch.long, device=device)
    for d in range(scales):  # lattice of stride 2^d, finest first; coarser lattices overwrite
        stride = 2**d
        on = (ii % stride == 0) & (jj % stride == 0)
        pi, pj = (ii // stride) % 2, (jj // stride) % 2
        first = 0 if d == scales - 1 else 1  # only the coarsest lattice codes its (0, 0) phase
        for s, (a, b) in enumerate(MAP_STAGES[first:], start=first):
            stage = s if d == scales - 1 else 3 * (scales - 1 - d) + s
            phase[on & (pi == a) & (pj == b)] = stage
    return phase.view(1, 1, h, w)


def checkerboard(h: int, w: int, device=None) -> Tensor:
    """(1, 1, h, w) long: 0 on the first-coded half, 1 on the second."""
    ii = torch.arange(h, device=device).view(h, 1)
    jj = torch.arange(w, device=device).view(1, w)
    return ((ii + jj) % 2).view(1, 1, h, w)


def bit_inputs(bits_pm: Tensor, t: Tensor, stage: Tensor, rate_int: Tensor, group: int) -> tuple[Tensor, Tensor]:
    """Teacher-forced inputs for bit stages `stage` (B,) = 2 g + half, from complete codes.

    bits_pm (B, n, h, w): kept bits as +-1, dropped 0; t (B, 1, h, w): the last kept group. Returns
    (inputs (B, n + 3, h, w), coded positions (B, 1, h, w) bool). `group` = n/L channels per group.
    """
    b, n, h, w = bits_pm.shape
    g = (stage // 2).view(b, 1, 1, 1)
    half = (stage % 2).view(b, 1, 1, 1)
    cb = checkerboard(h, w, bits_pm.device)
    chan_group = (torch.arange(n, device=bits_pm.device) // group).view(1, n, 1, 1)
    known = (chan_group < g) | ((chan_group == g) & (half == 1) & (cb == 0))
    x = bits_pm * known.to(bits_pm.dtype)
    cur = ((t >= g) & (half == 1) & (cb == 0)).to(x.dtype)
    rate = rate_int.view(b, 1, 1, 1).to(x.dtype).expand(b, 1, h, w)
    coded = (t >= g) & (cb == half)
    return torch.cat([x, t.to(x.dtype), cur, rate], 1), coded


class MapContext(StagedNet):
    """Importance-map model: 1 + 3 scales stages, one logit per map symbol (`ModelConfig.symbols`)."""

    def __init__(self, symbols: int = 16, width: int = 24, k: int = 3, scales: int = 1) -> None:
        super().__init__(3, width, symbols, 1 + 3 * scales, k, map_dilations(scales))
        self.scales = scales


class BitContext(StagedNet):
    """Code-bit model: 2L stages, one logit per channel of the current group."""

    def __init__(self, n: int = 64, levels: int = 16, width: int = 24, k: int = 3) -> None:
        super().__init__(n + 3, width, n // levels, 2 * levels, k)


def code_bits(bit_net: BitContext, bits: Tensor, t: Tensor, rate_int: Tensor) -> Tensor:
    """Bits of each sample's kept code under the float bit model, (B,), differentiable in `bits`.

    bits (B, n, h, w) 0/1; t (B, 1, h, w) the last kept group (`top_group`); rate_int (B,) as
    `rate_plane_value`. The context
    inputs are held fixed (detached) and only the coded symbols carry a gradient: the model's inputs
    move little per step, and leaving them out makes the term three times cheaper. Code refinement
    prices one image's bits with it, and `cwic train --code-rate` a batch's.
    """
    b, n = bits.shape[:2]
    group = n // (bit_net.stage_bias.shape[0] // 2)
    mask = (torch.arange(n, device=bits.device).view(1, n, 1, 1) < (t + 1) * group).to(bits.dtype)
    pm = ((2 * bits - 1) * mask).detach()
    rate_int = rate_int.to(bits.device)
    total = bits.new_zeros(b)
    for s in range(2 * (int(t.max()) + 1)):
        st = torch.full((b,), s, dtype=torch.long, device=bits.device)
        x, coded = bit_inputs(pm, t, st, rate_int, group)
        with torch.no_grad():
            logits = bit_net(x, st).float()
        g = s // 2
        target = bits[:, g * group : (g + 1) * group]
        nll = F.binary_cross_entropy_with_logits(logits, target, reduction="none") * coded
        total = total + nll.sum(dim=(1, 2, 3))
    return total / math.log(2)


# -- integer export and exact inference ------------------------------------------------------------
def _int_layout(net: StagedNet) -> list[tuple[str, Tensor, float]]:
    """(key, parameter, integer scale) of every tensor the integer export holds."""
    fw, fa = 2.0**W_BITS, 2.0**A_BITS
    return [
        ("conv1.w", net.conv1.weight, fw),
        ("stage_bias", net.stage_bias, fw),  # conv1 sees raw integer inputs: its sums are at scale 2^W
        ("conv2.w", net.conv2.weight, fw),
        ("conv2.b", net.conv2.bias, fw * fa),
        ("conv3.w", net.conv3.weight, fw),
        ("conv3.b", net.conv3.bias, fw * fa),
        ("head.w", net.head_w, fw),
        ("head.b", net.head_b, fw * fa),
    ]


def export_int(net: StagedNet, prefix: str) -> dict[str, Tensor]:
    """Integer tensors (stored as int32) of `net` under `prefix`; checked to stay exact in float64."""
    out = {
        f"{prefix}.{key}": torch.round(param.detach().double() * scale).to(torch.int32)
        for key, param, scale in _int_layout(net)
    }
    IntNet(out, prefix)  # validates the exactness bound
    return out


def import_int(net: StagedNet, tensors: dict[str, Tensor], prefix: str) -> None:
    """Load `export_int`'s integers back into `net` as floats (a warm start: exporting again is exact)."""
    with torch.no_grad():
        for key, param, scale in _int_layout(net):
            src = tensors[f"{prefix}.{key}"].double()
            if src.shape != param.shape:
                raise ValueError(f"{prefix}.{key} has shape {tuple(src.shape)}, the model {tuple(param.shape)}")
            param.copy_(src / scale)


def int_shape(tensors: dict[str, Tensor], prefix: str) -> tuple[int, int]:
    """(width, kernel) of the exported net under `prefix`."""
    w2 = tensors[f"{prefix}.conv2.w"]
    return int(w2.shape[0]), int(w2.shape[-1])


def lookup_tables() -> dict[str, Tensor]:
    """Integer probability tables (shipped with the weights, so no float exp runs at coding time)."""
    idx = torch.arange(-LOGIT_MAX * LUT_STEP, LOGIT_MAX * LUT_STEP + 1, dtype=torch.float64)
    p1 = torch.sigmoid((idx + 0.5) / LUT_STEP)
    scale = 2**PROB_BITS
    sig = torch.round(p1 * scale).clamp(1, scale - 1).to(torch.int32)
    d = torch.arange(DIFF_MAX + 1, dtype=torch.float64)
    ex = torch.round(torch.exp(-(d + 0.5) / LUT_STEP) * scale).clamp(min=1).to(torch.int32)
    return {"entropy.lut.sigmoid": sig, "entropy.lut.exp": ex}


class IntNet:
    """Exact integer inference of a StagedNet in float64 (all values are integers below 2^52)."""

    def __init__(self, tensors: dict[str, Tensor], prefix: str) -> None:
        t = {k[len(prefix) + 1 :]: v.to(torch.float64) for k, v in tensors.items() if k.startswith(prefix + ".")}
        self.w1, self.sb = t["conv1.w"], t["stage_bias"]
        self.w2, self.b2 = t["conv2.w"], t["conv2.b"]
        self.w3, self.b3 = t["conv3.w"], t["conv3.b"]
        self.hw, self.hb = t["head.w"], t["head.b"]
        self.stages = self.sb.shape[0]
        self.k = self.w2.shape[-1]
        self.w1m = self.w1[:, :, 0, 0]  # (width, c_in): conv1 as a matrix
        self.w2m = self.w2.reshape(self.w2.shape[0], -1)  # (width, width * k * k), in-channel major
        self.w3m = self.w3[:, :, 0, 0]
        self.act_max = ACT_CLAMP * 2**A_BITS
        self._check_bounds()

    def _check_bounds(self) -> None:
        limit = 2.0**52
        in_max = 2.0**10  # integer inputs: bits +-1, q + 1 <= 17, |t| <= 16, rate <= 16 (generous)
        checks = [
            (self.w1.abs().sum((1, 2, 3)) * in_max + self.sb.abs().max(0).values).max(),
            (self.w2.abs().sum((1, 2, 3)) * self.act_max + self.b2.abs()).max(),
            (self.w3.abs().sum((1, 2, 3)) * self.act_max + self.b3.abs()).max(),
            (self.hw.abs().sum(2) * self.act_max + self.hb.abs()).max(),
        ]
        if max(float(c) for c in checks) >= limit:
            raise ValueError("entropy model weights too large for exact integer inference")

    def hidden(self, pre: Tensor, stage: int) -> Tensor:
        """conv1 sums (width, h, w) at scale 2^W_BITS -> the first activation (width, h, w).

        The caller keeps the conv1 sums itself: a 1x1 convolution of integers can be updated
        exactly as symbols are decoded, instead of being recomputed for every stage.
        """
        sh1 = 2.0 ** (W_BITS - A_BITS)
        return torch.floor((pre + self.sb[stage].view(-1, 1, 1)) / sh1).clamp_(0, self.act_max)

    def logits_at(self, h1: Tensor, rows: Tensor, cols: Tensor, stage: int, dilation: int = 1) -> Tensor:
        """First activation (width, h, w) -> integer logits (out, N) at the N positions (rows, cols).

        conv2 (dilated by `dilation`) runs only where a stage reads it, as one matrix product over
        the gathered k x k windows (zero padding as in training); integer sums make it equal to the
        full convolution.
        """
        c, _, w = h1.shape
        p, sh = dilation * (self.k // 2), 2.0**W_BITS
        padded = F.pad(h1, (p, p, p, p)).view(c, -1)
        taps = torch.arange(self.k) * dilation
        offsets = (taps.view(-1, 1) * (w + 2 * p) + taps.view(1, -1)).view(-1, 1)
        windows = padded[:, offsets + (rows * (w + 2 * p) + cols).view(1, -1)]  # (c, k * k, N)
        h = torch.floor((self.w2m @ windows.view(c * self.k**2, -1) + self.b2[:, None]) / sh).clamp_(0, self.act_max)
        h = torch.floor((self.w3m @ h + self.b3[:, None]) / sh).clamp_(0, self.act_max)
        return self.hw[stage] @ h + self.hb[stage][:, None]
