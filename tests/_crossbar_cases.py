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


def _with_and_without(monkeypatch, cls, method, off, W, spec, seed, x, x_cal, check=None):
    """{(on, threads): (outputs, ledger)} of a crossbar of ``spec`` calibrated on ``x_cal`` and called on ``x``, on 1
    and 3 threads, with ``cls.method`` as it is (on) and replaced by a function returning ``off`` (off), shards of
    any size allowed; ``check(crossbar)`` runs on each crossbar with the method on."""
    from cimsim import Crossbar, crossbar_cpu

    monkeypatch.setattr(crossbar_cpu, "MIN_SHARD_MACS", 1)
    monkeypatch.setattr(crossbar_cpu, "MIN_SHARD_ROWS", 1)
    runs = {}
    for on in (True, False):
        if not on:
            monkeypatch.setattr(cls, method, lambda self: off)
        for n in (1, 3):
            monkeypatch.setenv("CIMSIM_THREADS", str(n))
            xb = Crossbar(W, spec, seed=seed)
            xb.calibrate(x_cal)
            runs[on, n] = (xb(x), xb.ledger.to_dict())
            if on and check is not None:
                check(xb)
    return runs
