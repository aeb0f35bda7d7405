"""The GPU kernels' read-noise normals as a formula (:func:`cimsim.kernels_triton.normals_from_words`): one
Box-Muller pair per 32-bit Philox word, its radius from the top 20 bits and its angle from the low 12. Runs without
a GPU: the bound the kernels' docstrings state is worked out here, and draws of the formula from uniform words are
held to it (tests/test_kernels_triton.py ties the kernels' own draws to the formula)."""
import math

import numpy as np
from scipy.stats import kstest, norm

from cimsim import kernels_triton

R_BITS, A_BITS = kernels_triton.PAIR_RADIUS_BITS, kernels_triton.PAIR_ANGLE_BITS


def test_the_split_is_the_one_the_bound_is_for():
    assert (R_BITS, A_BITS) == (20, 12)


def test_the_angles_grid_moves_the_distribution_by_at_most_its_bound():
    """With a continuous radius, ``r cos a`` over the 4,096 centred angles is a mixture of scaled Rayleigh laws:
    its distribution function, worked out on a fine grid of x (and finer near 0, where it departs most), is within
    8.3e-5 of the normal's; the radius's grid of 2**20 centred steps adds at most half a step of probability,
    2**-21. A 1,024-angle grid would be four times as far off (3.3e-4): the bound tracks the bits."""
    x = np.concatenate([np.linspace(-6, 6, 24001), np.geomspace(1e-7, 0.02, 4000)])
    x = np.concatenate([x, -x])

    def cdf_error(bits):
        c = np.cos((np.arange(2 ** bits) + 0.5) * 2 * np.pi / 2 ** bits - np.pi)
        F = np.zeros_like(x)
        for cj in c:
            tail = np.exp(-x ** 2 / (2 * cj ** 2))
            F += np.where(x > 0, 1 - tail, 0.0) if cj > 0 else np.where(x > 0, 1.0, tail)
        return float(np.abs(F / c.size - norm.cdf(x)).max())

    e12 = cdf_error(A_BITS)
    assert 7.0e-5 < e12 < 8.3e-5
    assert 3.0e-4 < cdf_error(10) < 3.4e-4
    assert e12 + 2.0 ** -(R_BITS + 1) < 1e-4


def test_draws_of_the_formula_are_standard_normal_with_their_tails():
    """2**21 uniform words (8 Mi normals): Kolmogorov-Smirnov distance within the sampling band plus the bound,
    mean 0, variance 1, fourth moment 3, each of a word's cosine and sine normals uncorrelated, the counts beyond
    4 and 4.5 sigma within 5 Poisson sigmas of the normal's, and nothing beyond the radius's largest value
    sqrt(2 (R_BITS + 1) ln 2) = 5.40."""
    rng = np.random.default_rng(19)
    w = rng.integers(0, 2 ** 32, size=(2 ** 19, 4), dtype=np.uint64)
    z = kernels_triton.normals_from_words(w)
    flat = z.ravel()
    n = flat.size
    assert kstest(flat, "norm").statistic < 1.63 / math.sqrt(n) + 8.3e-5      # 1 % band
    assert abs(flat.mean()) < 5 / math.sqrt(n)
    assert abs(flat.var() - 1) < 5 * math.sqrt(2 / n)
    assert abs(np.mean(flat ** 4) - 3) < 5 * math.sqrt(96 / n)
    pairs = z.reshape(-1, 4, 2)
    assert abs(np.corrcoef(pairs[..., 0].ravel(), pairs[..., 1].ravel())[0, 1]) < 5 / math.sqrt(n / 2)
    for k in (4.0, 4.5):
        want = n * 2 * norm.sf(k)
        assert abs(np.count_nonzero(np.abs(flat) > k) - want) < 5 * math.sqrt(want)
    assert np.abs(flat).max() <= math.sqrt(2 * (R_BITS + 1) * math.log(2)) + 1e-12


def test_the_order_is_each_words_cosine_then_sine():
    """A word with angle bits j and radius bits k gives ``r cos a`` then ``r sin a``; word i's pair sits at 2 i."""
    k, j = 12345, 1000
    word = (k << A_BITS) | j
    words = np.array([[0, word, 0, 0]], dtype=np.uint64)
    z = kernels_triton.normals_from_words(words)[0]
    r = math.sqrt(-2 * math.log((k + 0.5) * 2.0 ** -R_BITS))
    a = (j + 0.5) * 2 * math.pi / 2 ** A_BITS - math.pi
    assert z[2] == np.float64(r * math.cos(a)) and z[3] == np.float64(r * math.sin(a))
