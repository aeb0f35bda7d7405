"""The inversion circuit's converters and its matrix error term, pinned by hand and by first principles (added by a
mutation audit: the DAC's symmetric level count and the 1.5 p**2 of the programming-noise term were not pinned).
"""

import math
from dataclasses import replace

import numpy as np
import pytest

from cimsim import linalg as L
from cimsim.devices.reram import ReRAM
from cimsim.linalg import theory as T


def test_the_input_dac_has_2_to_the_bits_minus_1_minus_1_levels_each_side():
    # a 3-bit signed DAC: levels k / 3, k = -3..3 (2**(3-1) - 1 = 3 each side). With A = I on an otherwise lossless
    # circuit the solution is the DAC's b: b / max|b| = (1, 0.4, 0.2, -0.9) -> round(3 u) / 3 = (1, 1/3, 1/3, -1)
    c = replace(L.InversionCircuit.ideal(size=4), input_bits=3)
    p = L.ProgrammedInverter(np.eye(4), c)
    x, _ = p.solve(np.array([2.0, 0.8, 0.4, -1.8]))      # max|b| = 2
    assert x == pytest.approx(2.0 * np.array([1.0, 1 / 3, 1 / 3, -1.0]), rel=1e-12)


def test_programming_noise_term_of_the_matrix_error_matches_a_measured_programmed_matrix():
    # The matrix term's entry error (theory.matrix_entry_sigma): in level steps, rounding (1/12) plus programming noise
    # p on the cell that holds the entry (p**2) and on the other cell, which sits at g_min where the window clips the
    # noise to max(0, N(0, p**2)) (mean square p**2 / 2; its mean does not cancel the holding cell's zero-mean noise):
    # 1/12 + 1.5 p**2. Measured here on entries programmed exactly on their levels (no rounding), all positive and far
    # from both window edges, with p = 3 level steps: mean square 1.5 * 9 = 13.5, the theory's 1/12 + 13.5 = 13.58
    # (0.3 % apart in rms); a term of p**2 alone would give 9.08 (18 % lower rms).
    n, bits = 48, 8
    Lv = (1 << (bits - 1)) - 1                          # 127 level steps per polarity
    f = 3.0 / Lv                                       # p = 3 level steps
    rng = np.random.default_rng(7)
    B = rng.uniform(0.5, 1.0, size=(n, n))
    A0 = B @ B.T / n + 0.7 * np.eye(n)                 # symmetric positive definite: the circuit settles on it
    a_max = float(np.max(np.abs(A0)))
    A = np.rint(A0 / a_max * Lv) * (a_max / Lv)        # on the levels: rounding adds nothing
    off = ~np.eye(n, dtype=bool)
    levels = np.rint(A / a_max * Lv)[off]
    assert levels.min() >= 20 and levels.max() <= Lv - 20   # > 6 sigma from g_min and from g_max
    c = replace(L.InversionCircuit(size=n), cell=ReRAM(prog_sigma_frac=f))
    sq = []
    for seed in range(12):
        p = L.ProgrammedInverter(A, c, seed=seed)
        assert p.a_max == a_max
        sq.append(((p.A_programmed - A)[off] / (a_max / Lv)) ** 2)
    ms = float(np.mean(sq))                            # 12 x 2256 entries
    assert ms == pytest.approx(1.5 * 9.0, rel=0.05)    # the sample mean square: 0.9 % standard error (sqrt(2 / N))
    p = L.ProgrammedInverter(A, c, seed=0)
    assert T.matrix_entry_sigma(p) == pytest.approx(math.sqrt(ms) * a_max / Lv, rel=0.04)
