"""cimsim.linalg: the crossbar MVM, the closed-loop inversion circuit and RePAST's refinement."""

import math
from dataclasses import replace

import numpy as np
import pytest

from cimsim import linalg as L
from cimsim.devices.cell import IdealCell
from cimsim.devices.converters import IdealReadout
from cimsim.devices.reram import ReRAM
from cimsim.errors import ConfigError
from cimsim.spec import CrossbarSpec


def _case(n, cond, s):
    return L.random_matrix(n, cond, seed=s), np.random.default_rng(1000 + s).standard_normal(n)


# ---------------------------------------------------------------- exact identities
def test_ideal_circuit_is_numpy_solve_to_float_precision():
    for s in range(5):
        A, b = _case(12, 50.0, s)
        x = L.solve(A, b, L.InversionCircuit.ideal(), seed=s)
        ref = np.linalg.solve(A, b)
        assert L.rel_error(x, ref) < 1e-12
    A, _ = _case(9, 5.0, 0)
    assert np.max(np.abs(L.inv(A, L.InversionCircuit.ideal()) @ A - np.eye(9))) < 1e-12


def test_ideal_circuit_with_quantized_matrix_solves_the_programmed_matrix_exactly():
    c = replace(L.InversionCircuit.ideal(), matrix_bits=8, cell=ReRAM())
    A, b = _case(8, 10.0, 3)
    p = L.ProgrammedInverter(A, c)
    x, _ = p.solve(b)
    assert L.rel_error(x, np.linalg.solve(p.A_programmed, b)) < 1e-12
    # 8-bit levels: every programmed entry within half a level step (max|A| / 127 / 2) of A
    assert np.max(np.abs(p.A_programmed - A)) <= 0.5 * np.max(np.abs(A)) / 127 * (1 + 1e-9)


def test_mvm_ideal_is_the_exact_integer_product():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((20, 150))           # more rows than one 128-row block
    x = rng.standard_normal((150, 3))
    spec = CrossbarSpec(cell=IdealCell(), weight_bits=10, input_bits=9, readout=IdealReadout())
    arr = L.VmmArray(A, spec)
    y, cost = arr(x)
    sx = np.max(np.abs(x), axis=0) / 255
    ref = arr.A_eff @ (np.rint(x / sx) * sx)
    assert np.max(np.abs(y - ref)) <= 1e-9 * np.max(np.abs(ref))
    assert cost.time_s == pytest.approx(3 * 9 * 100e-9)
    # and the default 24-bit / 16-bit VMM on ReRAM with its lossless 10-bit ADC: error ~ 2**-16 of the inputs
    y2 = L.mvm(A, x)
    assert L.rel_error(y2, A @ x) < 2.0 ** -13


# ---------------------------------------------------------------- the 8-bit circuit
def test_8bit_circuit_error_on_well_conditioned_matrices_is_about_2_to_minus_8():
    # kappa 1.5, n = 8, 40 seeded systems: median relative error within a factor 4 of 2**-8 (measured 2**-6.6:
    # 7-bit magnitude levels of A, programming noise and 8-bit DAC / ADC each add about 2**-8)
    errs = []
    for s in range(40):
        A, b = _case(8, 1.5, s)
        errs.append(L.rel_error(L.solve(A, b, seed=s), np.linalg.solve(A, b)))
    med = float(np.median(errs))
    assert 2.0 ** -10 <= med <= 2.0 ** -6


def test_error_obeys_the_perturbation_bound_and_grows_linearly_with_kappa():
    # matrix quantization alone (exact converters, infinite gain): the first-order bound
    # ||dx|| / ||x|| <= kappa e / (1 - kappa e), e = ||A_lo - A|| / ||A||, holds for every system
    c = replace(L.InversionCircuit.ideal(), matrix_bits=8, cell=ReRAM())
    kappas = [10.0, 30.0, 100.0, 300.0]
    med = []
    for k in kappas:
        errs = []
        for s in range(30):
            A, b = _case(8, k, s)
            p = L.ProgrammedInverter(A, c)
            x, _ = p.solve(b)
            err = L.rel_error(x, np.linalg.solve(A, b))
            e = np.linalg.norm(p.A_programmed - A, 2) / np.linalg.norm(A, 2)
            kap = np.linalg.cond(A)
            if kap * e < 1:
                assert err <= kap * e / (1 - kap * e) * (1 + 1e-9)
            errs.append(err)
        med.append(np.median(errs))
    slope = np.polyfit(np.log(kappas), np.log(med), 1)[0]
    assert 0.7 <= slope <= 1.3, slope


def test_finite_gain_error_scales_as_one_over_gain():
    A, b = _case(8, 10.0, 1)
    ref = np.linalg.solve(A, b)
    e = [L.rel_error(L.solve(A, b, replace(L.InversionCircuit.ideal(), open_loop_gain=g)), ref) for g in (1e3, 1e5)]
    assert e[0] / e[1] == pytest.approx(100, rel=0.05)


def test_settling_time_follows_the_smallest_eigenvalue():
    c = L.InversionCircuit()
    A, b = _case(8, 10.0, 0)
    p = L.ProgrammedInverter(A, c)
    lam = np.linalg.eigvals(p.G / p.D[:, None]).real.min()
    assert p.tau_s == pytest.approx(1 / (2 * math.pi * c.gbw_hz * lam))
    assert p.t_settle_s == pytest.approx(p.tau_s * 9 * math.log(2))
    _, cost = p.solve(b)
    assert cost.time_s == pytest.approx(p.t_settle_s + c.adc.latency_s)
    assert cost.energy_j == pytest.approx(sum(cost.parts.values()))
    # a worse-conditioned matrix settles more slowly
    assert L.ProgrammedInverter(_case(8, 100.0, 0)[0], c).tau_s > 3 * p.tau_s


def test_non_settling_matrix_is_refused_or_mapped_through_normal_equations():
    A = np.array([[0.0, 1.0], [1.0, 0.0]])    # eigenvalues +1 and -1
    with pytest.raises(ConfigError, match="cannot settle"):
        L.solve(A, [1.0, 2.0])
    x = L.solve(A, [1.0, 2.0], L.InversionCircuit.ideal(), normal=True)
    assert np.allclose(x, [2.0, 1.0], atol=1e-12)


@pytest.mark.parametrize("A, msg", [
    (np.zeros((3, 3)), "singular"),
    (np.ones((2, 3)), "square"),
    (np.eye(200), "larger than"),
    (np.array([[1.0, np.nan], [0.0, 1.0]]), "NaN"),
    (np.array([["a"]]), "real matrix"),
])
def test_bad_matrices_get_one_line(A, msg):
    with pytest.raises(ConfigError, match=msg) as e:
        L.solve(A, np.ones(A.shape[0]))
    assert "\n" not in str(e.value)


def test_bad_rhs_and_circuit_values_get_one_line():
    with pytest.raises(ConfigError, match="shape"):
        L.solve(np.eye(3), np.ones(4))
    with pytest.raises(ConfigError, match="NaN"):
        L.solve(np.eye(2), [np.nan, 1.0])
    with pytest.raises(ConfigError, match="output_bits"):
        L.InversionCircuit(output_bits=40)
    with pytest.raises(ConfigError, match="open_loop_gain"):
        L.InversionCircuit(open_loop_gain=0.5)


# ---------------------------------------------------------------- refinement
@pytest.mark.parametrize("cond", [2.0, 10.0, 100.0])
def test_refinement_reaches_16_bits_in_a_bounded_number_of_steps(cond):
    for s in range(4):
        A, b = _case(16, cond, s)
        r = L.refine_solve(A, b, seed=s)
        assert r.converged
        assert r.rel_error <= 2.0 ** -16
        # bits gained per step ~ 8 - log2(kappa) minus a few: at most 16 / (6.5 - log2 kappa) + 3 steps
        assert r.iterations <= math.ceil(17 / max(6.5 - math.log2(cond), 1.2)) + 3
        assert r.cost_per_iteration.energy_j > 0 and r.cost_per_iteration.time_s > 0


def test_refinement_error_falls_geometrically():
    A, b = _case(16, 10.0, 0)
    r = L.refine_solve(A, b, target_bits=20)
    e = [h["rel_error"] for h in r.history]
    # until it reaches the floor of the 24-bit VMM matrix (kappa 2**-24 ~ 2**-20.7), each step gains >= 3 bits
    above = [v for v in e if v > 2.0 ** -19]
    assert all(e1 < e0 / 8 for e0, e1 in zip(above, above[1:]))
    assert e[0] > 2.0 ** -9 and e[-1] < 2.0 ** -20
