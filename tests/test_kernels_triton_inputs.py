"""Triton kernels that read a mapped layer's patches as they are (cimsim.kernels_triton): the exact product and
its error sums in one kernel, and the one kernel reading the inputs in the row blocks' layout without a copy. Run on
CUDA, or through Triton's interpreter (``TRITON_INTERPRET=1``), as tests/test_kernels_triton.py."""

import numpy as np
import pytest
import torch

from cimsim import kernels_triton
from tests.test_kernels_triton import DEVICE

pytestmark = pytest.mark.skipif(DEVICE is None, reason="needs CUDA with Triton, or Triton's interpreter")


@pytest.mark.parametrize("M, K, O, dtype", [(300, 144, 16, torch.float32), (97, 577, 64, torch.float32),
                                            (64, 9, 10, torch.float64), (130, 40, 200, torch.float32)])
def test_exact_error_sums_are_the_torch_sums(M, K, O, dtype):
    """:func:`kernels_triton.exact_error_sums` against the eager path's ``patches.double() @ w`` and its two sums:
    16-bit input codes and weights (sums up to 2**42: exact in float64), ragged shapes (rows, inputs and outputs
    not multiples of the tiles), float64 patches (wide codes), patches as a strided view (a linear layer's rows):
    the sums equal to 1e-13 relative (their order differs, their terms are the same integers)."""
    rng = np.random.default_rng(M + K)
    p = torch.as_tensor(rng.integers(0, 2 ** 16, size=(M, K + 3)), dtype=dtype, device=DEVICE)[:, 1:K + 1]
    w = torch.as_tensor(rng.integers(-2 ** 15, 2 ** 15, size=(K, O)), dtype=torch.float64, device=DEVICE)
    exact = p.double() @ w
    acc = exact + torch.as_tensor(rng.normal(0, 1e4, size=(M, O)).round(), device=DEVICE)
    scale = torch.as_tensor(rng.uniform(1e-6, 1e-5, size=(1, O)), device=DEVICE)
    err = torch.tensor([1.0, 2.0], dtype=torch.float64, device=DEVICE)          # adds to what is there
    assert kernels_triton.exact_error_sums(p, w, acc, scale, err)
    want = torch.stack([((acc - exact) * scale).square().sum(), (exact * scale).square().sum()]).cpu().numpy()
    np.testing.assert_allclose(err.cpu().numpy(), want + [1.0, 2.0], rtol=1e-13)
    assert not kernels_triton.exact_error_sums(p.t(), w, acc, scale, err)      # columns not unit-stride: declined
    assert not kernels_triton.exact_error_sums(p.to(torch.int32), w, acc, scale, err)


@pytest.mark.parametrize("dtype, noise", [(torch.float32, True), (torch.int16, False), (torch.int32, True)])
def test_the_kernels_read_the_inputs_in_place_as_the_blocks_layout(dtype, noise):
    """``planes_gemm_adc`` on the inputs themselves (batch, in) with ``rows``: the same outputs, counts and row
    sums bit for bit as on their copy in the row blocks' layout (``TorchTile.block_inputs``: zero beyond the
    inputs), with a ragged last block (100 inputs in blocks of 32), rows of a wider array (a strided view) and read
    noise of the same seed."""
    nb, K, R, C, T = 70, 100, 32, 24, 6
    G = -(-K // R)
    dev = DEVICE
    rng = np.random.default_rng(11)
    wide = rng.integers(0, 2 ** T, size=(nb, K + 5))
    xt = torch.as_tensor(wide, dtype=dtype, device=dev)[:, 2:K + 2]
    blocks = torch.zeros((G, nb, R), dtype=torch.int32, device=dev)
    for g in range(G):
        part = xt[:, g * R:(g + 1) * R].to(torch.int32)
        blocks[g, :, :part.shape[1]] = part
    i32 = lambda v: torch.as_tensor(v, dtype=torch.int32, device=dev)   # noqa: E731
    f32 = lambda v: torch.as_tensor(v, dtype=torch.float32, device=dev)  # noqa: E731
    a8 = torch.as_tensor(rng.integers(0, 4, size=(G, R, C)), dtype=torch.int8, device=dev)
    var = f32(np.full((G, R), 0.25)) if noise else None
    args = (a8, i32(range(T)), i32([1] * T), f32([-8.0] * G), f32([1.0] * G), f32(2.0 ** np.arange(T)), C, 2.0 ** 8,
            var, 99)
    s1, s2 = (torch.zeros(nb, dtype=torch.float64, device=dev) for _ in range(2))
    got = kernels_triton.planes_gemm_adc(xt, *args, binary=True, rows=R, row_sums=s1)
    want = kernels_triton.planes_gemm_adc(blocks, *args, binary=True, row_sums=s2)
    for u, v in zip(got, want):
        torch.testing.assert_close(u, v, rtol=0, atol=0)
    torch.testing.assert_close(s1, s2, rtol=0, atol=0)
    np.testing.assert_array_equal(s1.cpu().numpy(), wide[:, 2:K + 2].sum(axis=1))
