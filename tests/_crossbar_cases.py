"""Operand generators shared by the crossbar engine tests."""

import numpy as np

# ---------------------------------------------------------------------------------------------- helpers
def _w_range(mode, b):
    h = 2 ** (b - 1)
    return (-(h - 1), h - 1) if mode == "differential" else (-h, h - 1)


def _x_range(a, signed):
    return (-(2 ** (a - 1)), 2 ** (a - 1) - 1) if signed else (0, 2 ** a - 1)


def _operands(rng, mode, b, a, signed, out, inp, batch):
    """Random integer W, x over their full ranges, with the extremes planted."""
    wlo, whi = _w_range(mode, b)
    xlo, xhi = _x_range(a, signed)
    W = rng.integers(wlo, whi + 1, size=(out, inp))
    x = rng.integers(xlo, xhi + 1, size=(batch, inp))
    W.flat[0] = wlo
    W.flat[-1] = whi
    x.flat[0] = xlo
    x.flat[-1] = xhi
    return W, x


def _matmul(x, W):
    return np.asarray(x, dtype=np.int64) @ np.asarray(W, dtype=np.int64).T
