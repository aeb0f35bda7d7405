"""Numba kernels of the crossbar engine's hot loop (the quantizing epilogue after each bit-plane GEMM)."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(parallel=False, fastmath=False, cache=True, nogil=True)  # threads run shards in parallel
def adc_accumulate(acc, v, std, z, lo, lsb, top, weight):
    """acc += weight * ADC(v + std * z): uniform quantizer, half-LSB thresholds, codes clipped to 0..top.

    ``v`` (batch, columns) is the noise-free column value in level units, ``z`` standard normal draws and
    ``std`` the column noise standard deviation, both of v's shape (zero-stride views where a value is
    shared or there is no noise). Codes are reconstructed as ``lo + code * lsb``.
    """
    n, m = v.shape
    for i in range(n):
        for j in range(m):
            u = (v[i, j] + std[i, j] * z[i, j] - lo) / lsb
            code = np.floor(u + 0.5)
            if code < 0.0:
                code = 0.0
            elif code > top:
                code = top
            acc[i, j] += weight * (lo + code * lsb)
