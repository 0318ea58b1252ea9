"""Context models of any width and kernel train, export to integers and code bit-exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cwic.entropy_models.context_model import BitContext, MapContext, export_int, import_int, int_shape, lookup_tables
from cwic.entropy_models.entropy_coder import EntropyModel
from cwic.models.network import mask_from_levels
from cwic.training.train_entropy import fit

N, L = 64, 16


@pytest.mark.parametrize(("width", "kernel"), [(8, 5), (12, 3)])
def test_a_trained_context_model_of_any_shape_round_trips_exactly(width: int, kernel: int) -> None:
    gen = torch.Generator().manual_seed(0)
    q = torch.randint(0, L, (4, 8, 8), generator=gen)
    q[:, :, :4] = q[:, :, :1]  # some structure to learn
    bits = torch.randint(0, 2, (4, N, 8, 8), generator=gen, dtype=torch.uint8)
    rates = torch.tensor([2, 5, 8, 12])
    map_net, bit_net = MapContext(L, width, kernel), BitContext(N, L, width, kernel)
    assert fit(map_net, bit_net, (bits, q, rates), N, L, 0.01, 4, 8, 3e-3, np.random.default_rng(0)) > 0
    model = EntropyModel(
        export_int(map_net, "entropy.map") | export_int(bit_net, "entropy.bits") | lookup_tables(), N, L
    )
    assert model.bit_net.k == kernel and model.bit_net.w2.shape[0] == width
    rate = 5 / 16
    coded = model.encode(q[1], bits[1].float(), rate)
    q2, bits2 = model.decode(coded.map_section, coded.bits_section, 8, 8, rate)
    mask = mask_from_levels(q[1][None, None], N, L)[0]
    assert torch.equal(q2, q[1]) and torch.equal(bits2, bits[1].float() * mask)


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
