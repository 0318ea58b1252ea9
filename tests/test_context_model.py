"""Context models of any width and kernel train, export to integers, code bit-exactly and warm-start."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from cwic.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint, save_checkpoint
from cwic.entropy_models.context_model import (
    A_BITS,
    W_BITS,
    BitContext,
    MapContext,
    export_int,
    import_int,
    int_shape,
    lookup_tables,
    map_inputs,
)
from cwic.entropy_models.entropy_coder import EntropyModel
from cwic.errors import CheckpointError
from cwic.models.config import ModelConfig
from cwic.models.network import CWICModel, mask_from_levels
from cwic.training import train_entropy
from cwic.training.train_entropy import fit

N, L = 64, 16


@pytest.mark.parametrize(
    ("width", "kernel", "zero_level", "scales"),
    [(8, 5, False, 1), (12, 3, False, 1), (8, 3, True, 1), (8, 3, False, 2), (8, 5, False, 3)],
)
def test_a_trained_context_model_of_any_shape_round_trips_exactly(
    width: int, kernel: int, zero_level: bool, scales: int
) -> None:
    config = ModelConfig(n=N, levels=L, zero_level=zero_level)
    gen = torch.Generator().manual_seed(0)
    q = torch.randint(0, config.symbols, (4, 8, 8), generator=gen)
    q[:, :, :4] = q[:, :, :1]  # some structure to learn
    q[1, :2] = 0  # blocks at the lowest symbol (nothing kept with zero_level)
    bits = torch.randint(0, 2, (4, N, 8, 8), generator=gen, dtype=torch.uint8)
    rates = torch.tensor([2, 5, 8, 12])
    map_net, bit_net = MapContext(config.symbols, width, kernel, scales), BitContext(N, L, width, kernel)
    assert fit(map_net, bit_net, (bits, q, rates), config, 0.01, 4, 8, 3e-3, np.random.default_rng(0)) > 0
    tensors = export_int(map_net, "entropy.map") | export_int(bit_net, "entropy.bits") | lookup_tables()
    model = EntropyModel(tensors, config)
    assert model.bit_net.k == kernel and model.bit_net.w2.shape[0] == width
    rate = 5 / 16
    coded = model.encode(q[1], bits[1].float(), rate)
    q2, bits2 = model.decode(coded.map_section, coded.bits_section, 8, 8, rate)
    mask = mask_from_levels(q[1][None, None], config)[0]
    assert torch.equal(q2, q[1]) and torch.equal(bits2, bits[1].float() * mask)
    if zero_level:  # the first two rows keep nothing and cost no code bits
        assert mask[:, :2].sum() == 0 and coded.bits_info[:2].sum() == 0
    with pytest.raises(CheckpointError, match="map symbols"):  # a map model of the other alphabet
        EntropyModel(tensors, replace(config, zero_level=not zero_level))


def test_a_warm_start_reloads_the_exported_integers_exactly() -> None:
    bit_net = BitContext(N, L, 12, 3)
    with torch.no_grad():
        for param in bit_net.parameters():
            param.normal_(0, 0.3)
    ints = export_int(bit_net, "entropy.bits")
    assert int_shape(ints, "entropy.bits") == (12, 3)
    again = BitContext(N, L, 12, 3)
    import_int(again, ints, "entropy.bits")
    assert all(torch.equal(ints[k], v) for k, v in export_int(again, "entropy.bits").items())
    with pytest.raises(ValueError, match="shape"):
        import_int(BitContext(N, L, 8, 3), ints, "entropy.bits")


def _no_context_models(folder: Path, config: ModelConfig) -> Path:
    return save_checkpoint(folder, CWICModel(config), {"format": "cwic-checkpoint/1"})


def test_a_warm_start_from_another_checkpoint_is_checked_before_any_code_is_extracted(tmp_path: Path) -> None:
    target = _no_context_models(tmp_path / "target", ModelConfig())
    missing = tmp_path / "no-data"  # extraction would fail on it: the check must come first
    bare = _no_context_models(tmp_path / "bare", ModelConfig())
    with pytest.raises(SystemExit, match="bare has no context models yet"):
        train_entropy.main(["--checkpoint", str(target), "--warm-start-from", str(bare), "--data", str(missing)])
    other = _no_context_models(tmp_path / "n32", replace(ModelConfig(), n=32))
    with pytest.raises(SystemExit, match="codes n = 32, L = 16"):
        train_entropy.main(["--checkpoint", str(target), "--warm-start-from", str(other), "--data", str(missing)])


def test_a_warm_start_from_the_shipped_checkpoint_continues_its_fit(tmp_path: Path) -> None:
    shipped, card, _ = load_checkpoint(DEFAULT_CHECKPOINT)
    target = save_checkpoint(tmp_path / "fine-tuned", shipped, {"format": card["format"]})
    argv = ["--checkpoint", str(target), "--warm-start-from", str(DEFAULT_CHECKPOINT), "--minutes", "0.02"]
    train_entropy.main([*argv, "--crops", "4", "--no-calibrate", "--no-golden"])
    _, fitted, extra = load_checkpoint(target)
    assert fitted["entropy"]["warm_start_from"]["checkpoint"] == card["weights_id"]
    assert fitted["entropy"]["steps"] > card["entropy"]["steps"]
    shape = ("width", "kernel")
    assert [fitted["entropy"][k] for k in shape] == [card["entropy"][k] for k in shape]
    assert "entropy.bits.conv2.w" in extra


def test_a_map_model_warm_starts_across_map_alphabets() -> None:
    """A zero_level model (17 map symbols) starts its fit from a 16-symbol one: the head grows by copies of
    its top symbol, and cutting it back gives the original."""
    ints = export_int(MapContext(L, 8, 3), "entropy.map")
    grown = train_entropy.with_map_symbols(ints, L + 1)
    head = grown["entropy.map.head.w"]
    assert head.shape[1] == L + 1 and torch.equal(head[:, L], head[:, L - 1])
    import_int(MapContext(L + 1, 8, 3), grown, "entropy.map")  # the shapes a zero_level model needs
    back = train_entropy.with_map_symbols(grown, L)
    assert all(torch.equal(back[k], v) for k, v in ints.items())


@pytest.mark.parametrize("scales", [1, 2, 3])
def test_the_integer_map_coder_reads_the_neighbours_the_float_model_was_trained_on(scales: int) -> None:
    """At every stage the coder's integer logits are the float model's (stage order and dilations agree).

    Measured when this was written: within 0.011 of the float logits; a coder that ignored the
    dilations was off by 0.14 (2 lattices) and 1.35 (3 lattices).
    """
    config = ModelConfig(n=N, levels=L)
    map_net = MapContext(L, 8, 3, scales)
    with torch.no_grad():
        for param in map_net.parameters():
            param.normal_(0, 0.25)
    tensors = export_int(map_net, "entropy.map") | export_int(BitContext(N, L, 8, 3), "entropy.bits") | lookup_tables()
    import_int(map_net, tensors, "entropy.map")  # the float model the integers stand for
    model = EntropyModel(tensors, config)
    seen = []
    probs = model.map_probs
    model.map_probs = lambda logits: (seen.append(logits.clone()), probs(logits))[1]
    q = torch.randint(0, L, (1, 11, 13), generator=torch.Generator().manual_seed(1))
    model.encode(q[0], torch.zeros(N, 11, 13), 5 / 16)
    assert len(seen) == 1 + 3 * scales
    with torch.no_grad():
        for s, logits in enumerate(seen):
            x, pos = map_inputs(q[:, None], torch.tensor([s]), torch.tensor([5]), scales)
            expected = map_net(x, torch.tensor([s]))[0][:, pos[0, 0]].T.double()
            assert (logits / 2.0 ** (W_BITS + A_BITS) - expected).abs().max() < 0.03


def test_a_map_model_warm_starts_across_map_scales() -> None:
    """A coarse-to-fine map model (2 lattices, 7 stages) starts from a 4-stage one: the coarse lattice keeps
    the four stages, the fine lattice's three start from the old last three; the coder rejects other counts."""
    ints = export_int(MapContext(L, 8, 3), "entropy.map")
    grown = train_entropy.with_map_scales(ints, 2)
    bias = grown["entropy.map.stage_bias"]
    assert bias.shape[0] == 7 and torch.equal(bias[:4], ints["entropy.map.stage_bias"])
    assert torch.equal(bias[4:], ints["entropy.map.stage_bias"][1:])
    import_int(MapContext(L, 8, 3, scales=2), grown, "entropy.map")
    five = dict(
        grown, **{k: grown[k][:5] for k in ("entropy.map.stage_bias", "entropy.map.head.w", "entropy.map.head.b")}
    )
    bits = export_int(BitContext(N, L, 8, 3), "entropy.bits")
    with pytest.raises(CheckpointError, match="1 \\+ 3 \\* scales stages; got 5"):
        EntropyModel(five | bits | lookup_tables(), ModelConfig(n=N, levels=L))


@pytest.mark.parametrize(("bpp_per_rate", "bottom"), [(2.0, 0.04), (0.9, 0.0676)])
def test_level_calibration_moves_a_starved_bottom_level_up(monkeypatch, bpp_per_rate: float, bottom: float) -> None:
    """A bottom level under 0.06 bpp (a zero_level model at r = 0.04) moves up; one above stays."""
    monkeypatch.setattr(train_entropy, "prepare_kodak", lambda codec, folder: None)
    monkeypatch.setattr(train_entropy, "kodak_bpp", lambda codec, prepared, r: (bpp_per_rate * r, 2 * r))
    levels = train_entropy.calibrate_levels(None, Path("unused"))
    assert levels[0]["rate"] == bottom and levels[-1]["bpp"] >= 0.6 and len(levels) == 6
    assert all(a["rate"] < b["rate"] for a, b in zip(levels, levels[1:], strict=False))
