"""Growing a trained network without starting over: a wider code (`grow_codes`) or wider layers
(`widen`, `widen_decoder`, `widen_encoder`), all computing exactly the same function at first
(`cwic train --grow-n / --widen / --widen-decoder / --widen-encoder`)."""

from __future__ import annotations

from dataclasses import replace

import torch

from ..models.config import ModelConfig
from ..models.network import CWICModel


@torch.no_grad()
def grow_codes(model: CWICModel, n: int) -> CWICModel:
    """A copy of `model` with n code maps instead of config.n that reconstructs exactly as before.

    For the paper's wider high-rate code (n = 128) without starting over. Every importance level
    keeps n/L channels instead of config.n/L; within each level's group the old channels come first
    and the new ones after, and the new ones' decoder weights start at zero, so every level decodes
    the same image (with more bits, not yet useful: training gives them their use). The new encoder
    rows keep their random initialisation so their codes carry information from the first step.
    """
    old, levels = model.config.n, model.config.levels
    if n <= old or n % levels:
        raise ValueError(f"grow to n > {old}, a multiple of levels={levels}; got n={n}")
    grown = CWICModel(replace(model.config, n=n))
    grown.load_state_dict(
        {k: v for k, v in model.state_dict().items() if not k.startswith(("encoder.to_codes.", "decoder.body.0."))},
        strict=False,
    )
    g_old, g_new = old // levels, n // levels
    pos = torch.tensor([g * g_new + i for g in range(levels) for i in range(g_old)])  # old channel k -> pos[k]
    enc, dec = grown.encoder.to_codes, grown.decoder.body[0]
    enc.weight[pos] = model.encoder.to_codes.weight
    enc.bias[pos] = model.encoder.to_codes.bias
    dec.weight.zero_()
    dec.weight[:, pos] = model.decoder.body[0].weight
    dec.bias.copy_(model.decoder.body[0].bias)
    return grown


@torch.no_grad()
def widen(model: CWICModel, config: ModelConfig) -> CWICModel:
    """A copy of `model` with the wider layers of `config` that computes exactly the same function
    (`model` itself when no layer is wider).

    To grow the transforms without starting over (the paper-width net diverged from scratch here).
    Every layer keeps its old weights in its leading rows and columns and appends new units: their
    incoming weights keep the fresh initialisation, so they respond to the input from the first step,
    and every old unit reads them with weight 0, so nothing downstream changes until training gives
    them a use. Appended channels stay at the end through depth-to-space (PixelShuffle groups whole
    channels), and the importance net's rate plane, the last input of its first conv, moves to the end.
    """
    old = model.config
    config = replace(config, mean_shift=old.mean_shift, gdn=old.gdn, zero_level=old.zero_level)
    if old.gdn:
        raise ValueError("widen grows ReLU transforms only, not GDN ones")
    if config == old:
        return model
    if (config.n, config.levels) != (old.n, old.levels):
        raise ValueError("widen changes layer widths only; use grow_codes for the code width n")
    if any(
        getattr(config, f) < getattr(old, f)
        for f in ("enc1", "enc2", "enc_inner", "imp", "dec1", "dec2", "dec_inner", "dec_out")
    ):
        raise ValueError("widen cannot narrow a layer")
    wide = CWICModel(config)
    olds = model.state_dict()
    for name, w in wide.state_dict().items():
        src = olds[name]
        if w.dim() > 1:
            w[: src.shape[0]] = 0  # old units read nothing from the new ones
        if name == "importance.conv1.weight":  # feats then the rate plane: keep the plane last
            w[: src.shape[0], : old.enc2] = src[:, : old.enc2]
            w[: src.shape[0], -1] = src[:, -1]
        else:
            w[tuple(slice(0, s) for s in src.shape)] = src
    return wide


DECODER_WIDTHS = ("dec1", "dec2", "dec_inner", "dec_out")


def widen_decoder(model: CWICModel, config: ModelConfig) -> CWICModel:
    """`widen` for the decoder's layers alone, to `config`'s decoder widths (none narrowed).

    For `cwic train --decoder-only`: the encoder and the importance net stay as they are, so the
    codes, the maps and the context models fitted to them stay valid, and encoding costs no more.
    At slim widths only dec2 / 16 = 8 channels per pixel reach full resolution; this is the way to
    give the decoder the paper's 16 without touching the code.
    """
    return _widen_fields(model, config, DECODER_WIDTHS)


ENCODER_WIDTHS = ("enc1", "enc2", "enc_inner", "imp")


def widen_encoder(model: CWICModel, config: ModelConfig) -> CWICModel:
    """`widen` for the encoder's and the importance net's layers alone, to `config`'s widths.

    For `cwic train --encoder-only`: the decoder stays as it is, so every rate decodes as before,
    and only the encoder's capacity grows. Refining the codes of one image gains about a dB for the
    same decoder (docs/refinement.md), and the slim encoder trained alone does not close that gap:
    this asks whether a wider one does, at the cost of encoding only.
    """
    return _widen_fields(model, config, ENCODER_WIDTHS)


def _widen_fields(model: CWICModel, config: ModelConfig, fields: tuple[str, ...]) -> CWICModel:
    """`widen` to `config`'s widths for `fields` alone, never narrowing; every other width stays."""
    old = model.config
    return widen(model, replace(old, **{f: max(getattr(old, f), getattr(config, f)) for f in fields}))
