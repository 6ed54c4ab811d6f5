"""The shared layers: the channels_last path of depth-to-space, and the in-place (no autograd)
paths of the residual block and the adaptive norm, which must compute the same values."""

from __future__ import annotations

import pytest
import torch

from wetok.nn.blocks import AdaptiveGroupNorm, ResBlock, depth_to_space, norm_silu


def test_depth_to_space_keeps_channels_last_with_the_same_values():
    x = torch.randn(2, 12, 5, 7)
    want = depth_to_space(x, 2)
    nhwc = x.contiguous(memory_format=torch.channels_last)
    got = depth_to_space(nhwc, 2)
    assert got.shape == (2, 3, 10, 14) and torch.equal(got, want)
    assert got.is_contiguous(memory_format=torch.channels_last) and not got.is_contiguous()
    assert want.is_contiguous()


def test_depth_to_space_is_the_released_channel_order():
    x = torch.arange(8.0).reshape(1, 8, 1, 1)  # C = 2 output channels, block 2
    out = depth_to_space(x, 2)
    # output channel c at sub-position (i, j) comes from input channel (i*2 + j)*2 + c
    assert out[0, 0].tolist() == [[0.0, 2.0], [4.0, 6.0]] and out[0, 1].tolist() == [[1.0, 3.0], [5.0, 7.0]]


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_resblock_in_place_path_equals_the_autograd_path(layout):
    torch.manual_seed(0)
    block = ResBlock(16, 32, norm_groups=4).to(memory_format=layout)
    x = torch.randn(2, 16, 6, 6).contiguous(memory_format=layout)
    with_grad = block(x.clone().requires_grad_())
    with torch.no_grad():
        in_place = block(x)
    assert torch.equal(in_place, with_grad.detach())
    assert in_place.is_contiguous(memory_format=layout)
    with_grad.sum().backward()  # the autograd path still has its gradients
    assert block.conv1.weight.grad is not None


def test_adaptive_norm_in_place_path_equals_the_autograd_path():
    torch.manual_seed(0)
    norm = AdaptiveGroupNorm(8, 16, norm_groups=4)
    x, style = torch.randn(3, 16, 8, 8), torch.randn(3, 8, 4, 4).sign()
    with_grad = norm(x.clone().requires_grad_(), style)
    with torch.no_grad():
        in_place = norm(x, style)
    assert torch.equal(in_place, with_grad.detach())


def test_adaptive_norm_in_bfloat16_takes_style_statistics_in_float32():
    torch.manual_seed(0)
    norm = AdaptiveGroupNorm(8, 16, norm_groups=4)
    x, style = torch.randn(1, 16, 8, 8), torch.randn(1, 8, 4, 4).sign()
    with torch.no_grad():
        want = norm(x, style)
        got = norm.to(torch.bfloat16)(x.bfloat16(), style.bfloat16())
    assert got.dtype == torch.bfloat16
    assert (got.float() - want).abs().max().item() < 0.05


def test_norm_silu_does_not_touch_its_input():
    x = torch.randn(1, 8, 4, 4)
    keep = x.clone()
    with torch.no_grad():
        out = norm_silu(torch.nn.GroupNorm(2, 8), x)
    assert torch.equal(x, keep) and out.min() >= -0.3
