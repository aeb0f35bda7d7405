"""The unfold shared by the hardware-aware layers (cimsim.mappers.qat_ops.LinearRows / ConvRows, used by the PSQ and
sense-amp layers): rows times the weight matrix, folded back, are the float layer's output."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cimsim.errors import ConfigError
from cimsim.mappers.qat_ops import ConvRows, LinearRows


class Conv(ConvRows, nn.Conv2d):
    pass


class Linear(LinearRows, nn.Linear):
    pass


@pytest.mark.parametrize("padding,stride,dilation", [((1, 1), 1, 1), ((2, 0), 2, 1), ((1, 2), 1, 2), ("valid", 1, 1)])
def test_conv_rows_times_the_weights_are_the_convolution(padding, stride, dilation):
    torch.manual_seed(0)
    conv = Conv(3, 5, (3, 2), padding=padding, stride=stride, dilation=dilation, bias=False).double()
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64)
    rows, shape = conv._patches(x)
    y = conv._unpatch(rows @ conv.weight.reshape(5, -1).T, shape)
    torch.testing.assert_close(y, F.conv2d(x, conv.weight, None, conv.stride, conv.padding, conv.dilation),
                               rtol=1e-12, atol=1e-12)


def test_string_padding_other_than_valid_is_refused_by_name():
    conv = Conv(3, 5, 3, padding="same")
    with pytest.raises(ConfigError, match=r"Conv: padding='same' is not supported; use explicit padding"):
        conv._patches(torch.zeros(1, 3, 6, 6))


def test_linear_rows_keep_the_leading_shape():
    torch.manual_seed(1)
    lin = Linear(7, 4, bias=False).double()
    x = torch.randn(3, 5, 7, dtype=torch.float64)
    rows, shape = lin._patches(x)
    assert rows.shape == (15, 7)
    torch.testing.assert_close(lin._unpatch(rows @ lin.weight.T, shape), F.linear(x, lin.weight), rtol=1e-12,
                               atol=1e-12)
