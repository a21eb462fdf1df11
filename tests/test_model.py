"""VeerNet: any input size, both heads, reported size and cost."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from veer.errors import ConfigError
from veer.model import (ModelConfig, build_model, count_parameters, gmac_per_megapixel, grow_state, grows_from,
                        to_input)

TINY = {"widths": [8, 8, 16], "blocks": [1, 1], "attn_heads": 2}


@pytest.mark.parametrize("out_channels", [3, 1])
@pytest.mark.parametrize("shape", [(1, 1, 37, 53), (2, 1, 16, 16), (1, 1, 5, 3), (1, 1, 64, 29)])
def test_logits_have_input_size(out_channels, shape):
    torch.manual_seed(0)
    model = build_model(TINY, out_channels).eval()
    with torch.no_grad():
        y = model(torch.rand(shape))
    assert y.shape == (shape[0], out_channels, shape[2], shape[3])
    assert torch.isfinite(y).all()


def test_default_model_odd_size_channels_last():
    model = build_model(None, 3).eval().to(memory_format=torch.channels_last)
    x = torch.rand(1, 1, 37, 53).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        assert model(x).shape == (1, 3, 37, 53)


def test_pads_with_white_paper_and_crops_back():
    """An odd-sized input gives exactly the crop of the output for the same input padded with white."""
    torch.manual_seed(0)
    model = build_model(TINY).eval()
    assert model.stride == 4
    x = torch.rand(1, 1, 37, 53)
    with torch.no_grad():
        a = model(x)
        b = model(torch.nn.functional.pad(x, (0, 3, 0, 3), value=1.0))[..., :37, :53]
    assert torch.allclose(a, b, atol=1e-5)


def test_to_input_scales_and_stacks():
    gray = np.array([[0, 255], [51, 102]], np.uint8)
    x = to_input(gray)
    assert x.shape == (1, 1, 2, 2) and x.dtype == torch.float32
    assert x[0, 0, 0, 1] == 1.0 and abs(float(x[0, 0, 1, 0]) - 0.2) < 1e-6
    assert to_input(np.stack([gray, gray])).shape == (2, 1, 2, 2)
    with pytest.raises(ValueError):
        to_input(np.zeros((1, 2, 2, 2), np.uint8))


def test_parameters_and_gmac_reported():
    model = build_model(None, 3)
    params = count_parameters(model)
    gmac = gmac_per_megapixel(model)
    assert 100_000 < params < 5_000_000
    # the speed budget of the shipped config (see the model card): a few GMAC per megapixel
    assert 2.0 < gmac < 12.0
    wider = build_model({"widths": [16, 32, 64, 128, 256]}, 3)
    assert gmac_per_megapixel(wider) > gmac * 2


def test_config_round_trip_and_errors():
    cfg = ModelConfig(widths=(8, 16, 32), blocks=(1, 2))
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.stride == 4
    with pytest.raises(ConfigError):
        ModelConfig(widths=(8, 16), blocks=(1, 1))
    with pytest.raises(ConfigError):
        ModelConfig.from_dict({"depth": 3})
    with pytest.raises(ConfigError):
        build_model(None, 2)


@pytest.mark.parametrize("out_channels", [3, 1])
def test_grown_network_computes_what_the_trained_one_did(out_channels):
    """More residual blocks, a second transformer layer and refine blocks at full resolution start
    as the identity: the grown network's logits equal the small one's, and training can move them."""
    torch.manual_seed(0)
    small = build_model(TINY, out_channels)
    for p in small.parameters():                 # a "trained" network: nothing left at its init
        p.data.add_(0.05 * torch.randn_like(p))
    small.eval()
    big_cfg = {**TINY, "blocks": [2, 1], "attn_layers": 2, "head_blocks": 2}
    big = build_model(big_cfg, out_channels)
    new = grow_state(big, small.state_dict(), TINY)
    assert new == ["down.0.2", "attn.1", "refine.0", "refine.1"]
    big.eval()
    x = torch.rand(2, 1, 37, 29)
    with torch.no_grad():
        assert torch.allclose(small(x), big(x), atol=1e-5)
    assert count_parameters(big) > count_parameters(small)
    assert gmac_per_megapixel(big) > gmac_per_megapixel(small)
    # the new blocks learn: one gradient step changes the output
    big.train()
    loss = big(x).square().mean()
    loss.backward()
    grads = [float(p.grad.abs().sum()) for n, p in big.named_parameters() if n.startswith("refine.0")]
    assert max(grads) > 0


@pytest.mark.parametrize("out_channels", [3, 1])
def test_widened_network_computes_what_the_trained_one_did(out_channels):
    """More channels at full resolution (and at a middle level, with a refine block as well):
    the old channels compute what they did, so the logits are the trained network's; the new
    channels' outgoing weights start at zero but get gradients, so training can use them."""
    torch.manual_seed(0)
    small = build_model(TINY, out_channels)
    for p in small.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    small.eval()
    x = torch.rand(2, 1, 37, 29)
    for widths, groups in (([16, 8, 16], 4), ([12, 16, 16], 4), ([8, 12, 16], 6)):
        big = build_model({**TINY, "widths": widths, "head_blocks": 1, "groups": groups}, out_channels)
        changed = grow_state(big, small.state_dict(), TINY)
        assert changed[0] == "refine.0"
        assert ("stem.0.weight" in changed) == ("head.weight" in changed) == (widths[0] > 8)
        big.eval()
        with torch.no_grad():
            assert torch.allclose(small(x), big(x), atol=1e-5)
        assert count_parameters(big) > count_parameters(small)
        assert gmac_per_megapixel(big) > gmac_per_megapixel(small)
        big.train()
        big(x).square().mean().backward()
        # the new channels into the head (full resolution) or into the half-resolution's lateral
        layer = big.head if widths[0] > 8 else big.lateral[-1]
        assert float(layer.weight.grad[:, 8:].abs().sum()) > 0
        assert float(layer.weight.detach()[:, 8:].abs().sum()) == 0


def test_growth_refused_where_the_network_differs():
    assert grows_from(TINY, {**TINY, "head_blocks": 1})
    assert grows_from(TINY, TINY)
    assert grows_from(TINY, {**TINY, "widths": [16, 8, 16]})       # whole groups of 4 added
    assert grows_from(ModelConfig(), {"widths": [16, 16, 32, 64, 128]})
    assert not grows_from(TINY, {**TINY, "widths": [8, 32, 16]})   # groups of 4 would become groups of 8
    # more groups keep the group sizes when every level below the bottleneck grows alike
    shipped = {"widths": [16, 16, 32, 64, 128], "blocks": [1, 1, 2, 2], "attn_layers": 2, "head_blocks": 2}
    assert grows_from(shipped, {**shipped, "widths": [16, 24, 48, 96, 128], "groups": 6})
    assert not grows_from(shipped, {**shipped, "widths": [16, 24, 48, 96, 128]})        # 6 / 12 / 24 a group
    assert not grows_from(shipped, {**shipped, "widths": [16, 24, 36, 64, 128], "groups": 6})  # 36: 6 a group
    assert not grows_from(TINY, {**TINY, "widths": [8, 8, 32]})    # the bottleneck's layer norms
    assert not grows_from({**TINY, "widths": [16, 8, 16]}, TINY)   # narrower
    assert not grows_from({**TINY, "blocks": [2, 1]}, TINY)
    assert not grows_from({**TINY, "head_blocks": 1}, TINY)
    with pytest.raises(ConfigError, match="cannot grow"):
        grow_state(build_model(TINY), build_model({**TINY, "widths": [8, 8, 32]}).state_dict(),
                   {**TINY, "widths": [8, 8, 32]})
    with pytest.raises(ConfigError, match="head_blocks"):
        ModelConfig(head_blocks=-1)
    # an old card without head_blocks reads as none
    assert ModelConfig.from_dict({"widths": [8, 8, 16], "blocks": [1, 1]}).head_blocks == 0
