"""The network: shapes, padding, binarizer and mask (values and proxy gradients)."""

from dataclasses import replace

import pytest
import torch

from cwic.models.config import PRESETS, ModelConfig
from cwic.models.network import (
    GDN,
    MIN_SIDE,
    Binarize,
    CWICModel,
    ImportanceMask,
    kept_channels,
    mask_from_levels,
    pad_to_multiple,
    quantize_importance,
    reconstruct,
    shift_to_mean,
    top_group,
)
from cwic.training.growth import DECODER_WIDTHS, ENCODER_WIDTHS, grow_codes, widen, widen_decoder, widen_encoder


@pytest.fixture(scope="module")
def tiny() -> CWICModel:
    torch.manual_seed(0)
    return CWICModel(PRESETS["tiny"]).eval()


@pytest.mark.parametrize(("h", "w"), [(17, 29), (512, 768), (16, 16), (33, 8 * 5)])
def test_reconstruct_keeps_any_size(tiny: CWICModel, h: int, w: int) -> None:
    x = torch.rand(1, 3, h, w)
    y, q, mask = reconstruct(tiny, x, 0.3)
    assert y.shape == x.shape
    assert 0 <= float(y.min()) and float(y.max()) <= 1
    assert q.shape == (1, 1, -(-h // 8), -(-w // 8))
    assert mask.shape == (1, tiny.config.n, -(-h // 8), -(-w // 8))


def test_padding_replicates_edges() -> None:
    x = torch.arange(17 * 29, dtype=torch.float32).view(1, 1, 17, 29)
    xp, size = pad_to_multiple(x)
    assert size == (17, 29) and xp.shape == (1, 1, 24, 32)
    assert torch.equal(xp[..., :17, :29], x)
    assert torch.equal(xp[..., 23, :29], x[..., 16, :])
    assert torch.equal(xp[..., :17, 31], x[..., :, 28])


@pytest.mark.parametrize(("h", "w"), [(15, 64), (64, 8), (1, 1)])
def test_too_small_images_are_rejected(tiny: CWICModel, h: int, w: int) -> None:
    with pytest.raises(ValueError, match=f"{w}x{h}; cwic needs at least {MIN_SIDE}x{MIN_SIDE}"):
        reconstruct(tiny, torch.rand(1, 3, h, w), 0.3)


def test_training_forward_shapes(tiny: CWICModel) -> None:
    out = tiny(torch.rand(2, 3, 32, 48), torch.tensor([0.2, 0.6]), torch.tensor([float("nan"), 0.5]))
    assert out["x_hat"].shape == (2, 3, 32, 48)
    assert out["p"].shape == (2, 1, 4, 6) and out["bits"].shape == out["mask"].shape == (2, 64, 4, 6)
    assert torch.all(out["p"][1] == 0.5)  # the uniform sample uses the constant map


def test_binarizer_values_and_straight_through_gradient() -> None:
    e = torch.tensor([0.0, 0.2, 0.5, 0.5001, 0.9, 1.0], requires_grad=True)
    b = Binarize.apply(e)
    assert b.tolist() == [0, 0, 0, 1, 1, 1]
    (b * torch.arange(6.0)).sum().backward()
    assert e.grad.tolist() == [0, 1, 2, 3, 4, 5]


def test_stochastic_binarization_keeps_a_bit_with_probability_e_and_passes_gradients(tiny: CWICModel) -> None:
    x, rate = torch.rand(2, 3, 32, 48), torch.tensor([0.3, 0.9])
    e, _ = tiny.analyze(x)
    noise = torch.rand(e.shape, generator=torch.Generator().manual_seed(0))
    out = tiny(x, rate, noise=noise)
    assert torch.equal(out["bits"], (e > noise).float())
    assert torch.equal(tiny(x, rate)["bits"], (e > 0.5).float())  # without noise: the threshold
    out["x_hat"].sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in tiny.encoder.parameters())
    tiny.zero_grad(set_to_none=True)


def test_the_gdn_transform_trains_every_parameter_and_old_configs_stay_relu() -> None:
    model = CWICModel(replace(PRESETS["tiny"], gdn=True))
    gdns = [m for m in model.modules() if isinstance(m, GDN)]
    assert len(gdns) == 7 and sum(m.inverse for m in gdns) == 4  # 3 in the encoder, 4 IGDN in the decoder
    out = model(torch.rand(2, 3, 32, 32), torch.tensor([0.3, 0.9]))
    ((out["x_hat"] - 0.5) ** 2).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for m in gdns for p in m.parameters())
    old = {k: v for k, v in PRESETS["tiny"].to_dict().items() if k != "gdn"}
    assert not ModelConfig.from_dict(old).gdn
    assert not any(isinstance(m, GDN) for m in CWICModel(ModelConfig.from_dict(old)).modules())


def test_quantization_and_mask_values() -> None:
    c = ModelConfig()
    p = torch.tensor([0.0, 0.0624, 0.0625, 0.5, 0.999, 1.0]).view(1, 1, 1, 6)
    q = quantize_importance(p, c)
    assert q.flatten().tolist() == [0, 0, 1, 8, 15, 15]
    mask = ImportanceMask.apply(p, c)
    assert mask.sum(dim=1).flatten().tolist() == [4, 4, 8, 36, 64, 64]
    assert torch.equal(mask, mask_from_levels(q, c))
    # kept channels are always a prefix
    assert torch.all(mask[:, 1:] <= mask[:, :-1])


def test_zero_level_maps_keep_nothing_at_symbol_zero() -> None:
    """With zero_level the map has L + 1 symbols, floor(17 p), and symbol q keeps q groups: p < 1/17
    keeps no channel (the paper's Eq. 4), p = 1 every channel."""
    c = ModelConfig(zero_level=True)
    assert c.symbols == 17 and ModelConfig().symbols == 16
    p = torch.tensor([0.0, 0.058, 0.059, 0.5, 0.999, 1.0]).view(1, 1, 1, 6)
    q = quantize_importance(p, c)
    assert q.flatten().tolist() == [0, 0, 1, 8, 16, 16]
    assert top_group(q, c).flatten().tolist() == [-1, -1, 0, 7, 15, 15]
    mask = ImportanceMask.apply(p, c)
    assert mask.sum(dim=1).flatten().tolist() == [0, 0, 4, 32, 64, 64]
    assert torch.equal(mask, mask_from_levels(q, c))
    assert torch.equal(mask.sum(1, keepdim=True).long(), kept_channels(q, c))
    p.requires_grad_(True)
    ImportanceMask.apply(p, c)[:, 0].sum().backward()  # channel 0 is in the window of blocks keeping 0 or 4
    assert p.grad.flatten().tolist() == [17, 17, 17, 0, 0, 0]


def test_mask_gradient_is_nonzero_exactly_in_the_window() -> None:
    n, levels = 64, 16
    p = torch.tensor([0.3]).view(1, 1, 1, 1).requires_grad_()
    c = ModelConfig(n=n, levels=levels)
    mask = ImportanceMask.apply(p, c)
    kept = int(mask.sum())  # floor(16 * 0.3) = 4 -> 5 groups -> 20 channels
    assert kept == 20
    for k in range(n):
        if p.grad is not None:
            p.grad = None
        m = ImportanceMask.apply(p, c)
        m[0, k, 0, 0].backward()
        inside = kept - n // levels <= k < kept + n // levels
        assert float(p.grad) == (levels if inside else 0.0), k


def test_mask_gradient_sums_upstream_over_the_window() -> None:
    p = torch.full((2, 1, 3, 3), 0.5, requires_grad=True)
    m = ImportanceMask.apply(p, ModelConfig())
    upstream = torch.randn_like(m)
    (m * upstream).sum().backward()
    kept = 36
    expected = 16 * upstream[:, kept - 4 : kept + 4].sum(dim=1, keepdim=True)
    assert torch.allclose(p.grad, expected)


def test_gradients_reach_every_part() -> None:
    torch.manual_seed(0)
    model = CWICModel(PRESETS["tiny"])
    out = model(torch.rand(2, 3, 32, 32), torch.tensor([0.3, 0.5]))
    loss = ((out["x_hat"] - 0.5) ** 2).mean() + out["p"].mean()
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    assert model.encoder.to_codes.weight.grad.abs().sum() > 0
    assert model.importance.conv1.weight.grad.abs().sum() > 0


def test_config_rejects_bad_widths() -> None:
    with pytest.raises(ValueError, match="multiple of levels"):
        ModelConfig(n=60)
    with pytest.raises(ValueError, match="unknown model config keys"):
        ModelConfig.from_dict({"n": 64, "widthh": 3})


def test_detached_importance_keeps_rate_gradients_out_of_the_encoder() -> None:
    torch.manual_seed(0)
    model = CWICModel(PRESETS["tiny"])
    out = model(torch.rand(2, 3, 32, 32), torch.tensor([0.3, 0.5]), detach_importance=True)
    out["p"].mean().backward()
    assert model.importance.conv1.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.encoder.parameters())


def test_mean_shift_gives_each_map_its_rate_and_moves_importance_by_the_gradient() -> None:
    torch.manual_seed(0)
    p = torch.rand(3, 1, 6, 7).requires_grad_()
    rate = torch.tensor([0.05, 0.4, 0.97])
    shifted = shift_to_mean(p, rate)
    assert shifted.min() >= 0 and shifted.max() <= 1
    assert torch.allclose(shifted.mean(dim=(1, 2, 3)), rate, atol=1e-6)
    g = torch.randn_like(p)
    (shifted * g).sum().backward()
    clamped = (shifted == 0) | (shifted == 1)
    assert clamped[0].any() and (p.grad[clamped] == 0).all()  # a clamped entry cannot move the file size
    inner = ~clamped[2]
    assert torch.allclose(p.grad[2][inner], g[2][inner] - g[2][inner].mean(), atol=1e-6)

    # where nothing clamps, the shift keeps the map's shape and what one entry gains the others pay
    narrow = (0.3 + 0.2 * torch.rand(1, 1, 6, 7)).requires_grad_()
    out = shift_to_mean(narrow, torch.tensor([0.6]))
    assert torch.allclose(out - narrow, 0.6 - narrow.mean(), atol=1e-6)
    (out * g[:1]).sum().backward()
    assert torch.allclose(narrow.grad, g[:1] - g[:1].mean(), atol=1e-6)


def test_a_mean_shift_model_holds_its_rate_and_loads_from_old_configs() -> None:
    torch.manual_seed(0)
    model = CWICModel(replace(PRESETS["tiny"], mean_shift=True))
    _, feats = model.analyze(torch.rand(2, 3, 64, 64))
    p = model.importance_map(feats, torch.tensor([0.2, 0.7]))
    assert torch.allclose(p.mean(dim=(1, 2, 3)), torch.tensor([0.2, 0.7]), atol=1e-3)
    old = {k: v for k, v in PRESETS["tiny"].to_dict().items() if k != "mean_shift"}
    assert ModelConfig.from_dict(old).mean_shift is False


@pytest.mark.parametrize("mean_shift", [False, True])
def test_region_of_interest_raises_importance_and_a_shifted_map_keeps_its_mean(mean_shift: bool) -> None:
    torch.manual_seed(0)
    model = CWICModel(replace(PRESETS["tiny"], mean_shift=mean_shift)).eval()
    _, feats = model.analyze(torch.rand(1, 3, 64, 64))
    roi = torch.zeros(1, 1, 8, 8)
    roi[..., :3, :3] = 1
    base, painted = model.importance_map(feats, 0.3).detach(), model.importance_map(feats, 0.3, roi).detach()
    assert (painted[..., :3, :3] > base[..., :3, :3]).all()
    if mean_shift:  # the bits move: same mean, the rest of the image pays
        assert (
            float(painted.mean()) == pytest.approx(0.3, abs=1e-5) and (painted[..., 3:, 3:] <= base[..., 3:, 3:]).all()
        )
    else:  # the bits are added
        assert torch.equal(painted[..., 3:, 3:], base[..., 3:, 3:])
    flat = model.importance_map(feats, 0.3, uniform=True)
    assert torch.all(flat == flat.flatten()[0])


def test_grown_code_decodes_as_before_with_twice_the_channels(tiny: CWICModel) -> None:
    torch.manual_seed(1)
    x = torch.rand(1, 3, 48, 64)
    grown = grow_codes(tiny, 2 * tiny.config.n).eval()
    assert grown.config.n == 2 * tiny.config.n and grown.config.levels == tiny.config.levels
    for rate in (0.05, 0.4, 0.9):
        y, q, mask = reconstruct(tiny, x, rate)
        y2, q2, mask2 = reconstruct(grown, x, rate)
        assert torch.equal(q, q2) and mask2.sum() == 2 * mask.sum()
        assert torch.allclose(y, y2, atol=1e-5)
    with pytest.raises(ValueError, match="grow to n > "):
        grow_codes(tiny, tiny.config.n + 1)


def test_widened_layers_compute_the_same_function(tiny: CWICModel) -> None:
    torch.manual_seed(2)
    x = torch.rand(2, 3, 40, 56)
    wider = replace(PRESETS["slim"], n=tiny.config.n, levels=tiny.config.levels)
    wide = widen(tiny, wider).eval()
    assert wide.config == wider and sum(p.numel() for p in wide.parameters()) > sum(
        p.numel() for p in tiny.parameters()
    )
    for rate in (0.05, 0.4, 0.9):
        y, q, _ = reconstruct(tiny, x, rate)
        y2, q2, _ = reconstruct(wide, x, rate)
        assert torch.equal(q, q2)
        assert torch.allclose(y, y2, atol=1e-6)
    out = wide(x[:, :, :32, :48], torch.tensor([0.3, 0.6]))
    ((out["x_hat"] - x[:, :, :32, :48]) ** 2).mean().backward()
    new_cols = wide.decoder.body[2].conv1.weight.grad[:, tiny.config.dec1 :]
    assert new_cols.abs().sum() > 0  # the new units get gradients, so training puts them to use
    with pytest.raises(ValueError, match="cannot narrow"):
        widen(wide, tiny.config)
    with pytest.raises(ValueError, match="grow_codes"):
        widen(tiny, replace(wider, n=2 * tiny.config.n))


@pytest.mark.parametrize(
    ("grow", "widths", "grown", "atol"),
    [
        (widen_decoder, DECODER_WIDTHS, ("decoder.",), 1e-6),
        (widen_encoder, ENCODER_WIDTHS, ("encoder.", "importance."), 1e-5),
    ],
    ids=["decoder", "encoder"],
)
def test_widening_one_side_alone_keeps_the_other_and_the_output(tiny: CWICModel, grow, widths, grown, atol) -> None:
    torch.manual_seed(3)
    x = torch.rand(1, 3, 40, 56)
    wide = grow(tiny, PRESETS["slim"]).eval()
    assert all(getattr(wide.config, f) == getattr(PRESETS["slim"], f) for f in widths)
    assert replace(wide.config, **{f: getattr(tiny.config, f) for f in widths}) == tiny.config
    for name, value in tiny.state_dict().items():
        if not name.startswith(grown):
            assert torch.equal(wide.state_dict()[name], value), name  # the other side is untouched
    for rate in (0.05, 0.9):
        y, q, _ = reconstruct(tiny, x, rate)
        y2, q2, _ = reconstruct(wide, x, rate)
        assert torch.equal(q, q2) and torch.allclose(y, y2, atol=atol)
