"""IR drop on crossbar wires (cimsim.irdrop): the exact nodal solve against hand-solved circuits and
Kirchhoff's laws, and the first-order model against the exact solve.

Expected numbers come from series / parallel resistor formulas worked out here, from the node voltages
(currents through each wire segment), or from the exact solver once it has been checked that way.
"""

import numpy as np
import pytest

from cimsim.errors import ConfigError
from cimsim.irdrop import effective_conductance, ir_drop_exact, ir_drop_first_order, ir_drop_node_voltages

G_ON = 1 / 6e3          # R_on = 6 kOhm
G_OFF = G_ON / 150      # on/off ratio 150
V_READ = 0.5


def _array(n, seed, batch=8):
    """Realistic random tile: G uniform in [G_OFF, G_ON]; each input drives a random half of the rows."""
    rng = np.random.default_rng(seed)
    G = rng.uniform(G_OFF, G_ON, size=(n, n))
    V = V_READ * (rng.random((batch, n)) < 0.5)
    V[:, 0] = V_READ                       # no all-zero input (relative errors need I > 0)
    return G, V


def _eps(G, r_wl, r_bl):
    """The model's small parameter max(r_wl*Q + r_bl*S), read off the linear form G1 = G * (1 - x)."""
    return float(np.max(1 - effective_conductance(G, r_wl, r_bl, "linear") / G))


def _maxrel(I, I_ref):
    return float(np.max(np.abs(I - I_ref) / I_ref))


def _l1(a):
    return float(np.sum(np.abs(a)))


# ------------------------------------------------------------------------------------------ ideal wires
def test_zero_wire_resistance_gives_v_at_G_exactly():
    G, V = _array(7, seed=1, batch=5)
    G = G[:, :4]                                            # non-square
    for v in (V[2], V):
        ideal = v @ G
        assert np.array_equal(ir_drop_exact(G, v, 0.0, 0.0), ideal)
        assert np.array_equal(ir_drop_first_order(G, v, 0, 0), ideal)
        assert np.array_equal(ir_drop_first_order(G, v, 0, 0, form="rational"), ideal)
    for model in ("exact", "linear", "rational"):
        assert np.array_equal(effective_conductance(G, 0, 0, model), G)
    v_wl, v_bl = ir_drop_node_voltages(G, V, 0, 0)
    assert np.array_equal(v_wl, np.broadcast_to(V[:, :, None], v_wl.shape)) and not v_bl.any()


def test_small_wire_resistance_tends_to_ideal_with_the_first_order_slope():
    G, V = _array(16, seed=2)
    ideal = V @ G
    for r in (1e-3, 1e-4, 1e-5, 1e-6):
        exact = ir_drop_exact(G, V, r, 2 * r)
        lin = ir_drop_first_order(G, V, r, 2 * r)
        # the deviation from ideal is O(r) (measured 0.013 ... 0.033 * r / ohm over the columns) and the
        # model's O(r) term is its exact slope: the two deviations agree to O(r) relatively (measured 0.032 * r)
        dev = np.abs(exact - ideal) / ideal
        assert 0.01 * r < dev.min() and dev.max() < 0.05 * r
        np.testing.assert_allclose(ideal - exact, ideal - lin, rtol=0.1 * r, atol=0)
    assert np.max(np.abs(ir_drop_exact(G, V, 1e-12, 1e-12) / ideal - 1)) < 1e-11


def test_one_ideal_wire_matches_the_limit_of_the_full_system():
    """r_wl = 0 (or r_bl = 0) eliminates those nodes; that must equal the full solve as r -> 0."""
    G, V = _array(12, seed=3, batch=3)
    for r_wl, r_bl in ((0.0, 2.0), (2.0, 0.0)):
        reduced = ir_drop_exact(G, V, r_wl, r_bl)
        full = ir_drop_exact(G, V, r_wl or 1e-7, r_bl or 1e-7)
        assert _maxrel(reduced, V @ G) > 0.01                 # a real IR drop, not the ideal answer
        np.testing.assert_allclose(full, reduced, rtol=1e-6, atol=0)


# -------------------------------------------------------------------------------------- hand-solved cases
def test_single_cell_is_three_resistors_in_series():
    G, v, r_wl, r_bl = 1 / 7e3, 0.3, 3.0, 11.0
    expected = v / (r_wl + 1 / G + r_bl)
    assert ir_drop_exact([[G]], [v], r_wl, r_bl) == pytest.approx([expected], rel=1e-12)
    # the rational first-order form is exact for one cell; the linear one is its expansion
    assert ir_drop_first_order([[G]], [v], r_wl, r_bl, form="rational") == pytest.approx([expected], rel=1e-12)
    assert ir_drop_first_order([[G]], [v], r_wl, r_bl) == pytest.approx([G * v * (1 - G * (r_wl + r_bl))],
                                                                        rel=1e-12)


def test_one_row_two_columns_ladder():
    G0, G1, v, r_wl, r_bl = 1 / 5e3, 1 / 9e3, 0.7, 40.0, 25.0
    g0 = 1 / (1 / G0 + r_bl)            # column branch: cell + one bit-line segment to ground
    g1 = 1 / (1 / G1 + r_bl)
    far = 1 / (r_wl + 1 / g1)           # second word-line segment + column 1
    total = v / (r_wl + 1 / (g0 + far))
    node0 = v - r_wl * total            # word-line node 0
    expected = [g0 * node0, far * node0]
    assert ir_drop_exact([[G0, G1]], [v], r_wl, r_bl) == pytest.approx(expected, rel=1e-12)
    # bit lines ideal: the cells load the word line directly
    far = 1 / (r_wl + 1 / G1)
    node0 = v - r_wl * v / (r_wl + 1 / (G0 + far))
    assert ir_drop_exact([[G0, G1]], [v], r_wl, 0) == pytest.approx([G0 * node0, far * node0], rel=1e-12)


def test_two_rows_one_column_bit_line():
    G0, G1, v0, v1, r_wl, r_bl = 1 / 4e3, 1 / 8e3, 0.5, 0.2, 30.0, 50.0
    h0 = 1 / (r_wl + 1 / G0)            # driver 0 -> bit-line node 0
    h1 = 1 / (r_wl + 1 / G1)            # driver 1 -> bit-line node 1
    k = 1 / (1 / h0 + r_bl)             # driver 0 -> bit-line node 1, through the upper segment
    b1 = (h1 * v1 + k * v0) / (h1 + k + 1 / r_bl)   # node 1: Millman's theorem
    expected = b1 / r_bl
    assert ir_drop_exact([[G0], [G1]], [v0, v1], r_wl, r_bl) == pytest.approx([expected], rel=1e-12)


# ----------------------------------------------------------------------------------------------- Kirchhoff
def test_kirchhoff_driver_current_equals_ground_current():
    G, V = _array(24, seed=4, batch=3)
    G = G[:, :17]
    r_wl, r_bl = 2.5, 1.5
    R, C = G.shape
    v_wl, v_bl = ir_drop_node_voltages(G, V, r_wl, r_bl)
    I = ir_drop_exact(G, V, r_wl, r_bl)
    drivers = (V - v_wl[:, :, 0]) / r_wl                    # (B, R) out of each driver
    grounds = v_bl[:, R - 1, :] / r_bl                      # (B, C) into each TIA
    cells = G * (v_wl - v_bl)                               # (B, R, C)
    np.testing.assert_allclose(drivers.sum(1), grounds.sum(1), rtol=1e-10, atol=0)
    np.testing.assert_allclose(grounds, I, rtol=1e-10, atol=0)          # per column
    np.testing.assert_allclose(drivers, cells.sum(2), rtol=1e-9, atol=0)  # per row (sneak rows are small)
    # every wire segment carries exactly the current of the cells beyond it
    wl_seg = np.cumsum(cells[:, :, ::-1], axis=2)[:, :, ::-1]          # segment k feeds node k
    wl_drop = np.concatenate([V[:, :, None], v_wl], axis=2)
    np.testing.assert_allclose(-np.diff(wl_drop, axis=2), r_wl * wl_seg,
                               rtol=1e-8, atol=1e-12 * V_READ)
    bl_seg = np.cumsum(cells, axis=1)                                   # segment below node k
    bl = np.concatenate([v_bl, np.zeros_like(v_bl[:, :1])], axis=1)
    np.testing.assert_allclose(-np.diff(bl, axis=1), r_bl * bl_seg, rtol=1e-8, atol=1e-12 * V_READ)


def test_exact_currents_are_below_ideal_and_fall_as_wires_get_worse():
    G, V = _array(32, seed=5, batch=4)
    ideal = V @ G
    sweep = (0.0, 0.25, 1.0, 2.5, 5.0, 20.0, 100.0)
    for shape in (lambda r: (r, r), lambda r: (r, 1.0), lambda r: (1.0, r)):
        prev = None
        for r in sweep:
            I = ir_drop_exact(G, V, *shape(r))
            assert np.all(I <= ideal) and np.all(I > 0)
            if prev is not None:
                assert np.all(I < prev)                     # strictly: every column, every input
            prev = I
    # at 100 ohm per pitch the 32x32 tile delivers at most about a third of the ideal current (measured 0.36)
    assert np.max(ir_drop_exact(G, V, 100, 100) / ideal) < 0.4


# -------------------------------------------------------------------------------------- first-order model
# Measured (seeds below, batch 8): largest column error relative to the exact current of the linear
# first-order model / its rational form / ignoring IR drop, and the l1 ratio |lin - exact| / |ideal - exact|
# (the fraction of the IR-drop error the linear model leaves):
#   32x32, 1 ohm   (eps 0.10):  0.64 % / 0.06 % /  8.3 %   ratio 0.065
#   32x32, 2.5 ohm (eps 0.24):  3.6 %  / 0.31 % / 20 %     ratio 0.16
#   64x64, 1 ohm   (eps 0.42):  11 %   / 0.86 % / 35 %     ratio 0.26
#   64x64, 2.5 ohm (eps 0.98):  67 %   / 3.2 %  / 86 %     ratio 0.64   (linear model: useless here)
# Bound (docstring of ir_drop_first_order): over the cells, sum |c_lin - c| <= eps * sum |c_ideal - c|
# exactly; on column currents the measured ratio is 0.62-0.68 * eps, asserted as ratio <= eps.
ACCURACY = [
    # n,  r,   seed, bound on lin max rel error, bound on rational max rel error
    (32, 1.0, 10, 0.008, 0.001),
    (32, 2.5, 11, 0.045, 0.005),
    (64, 1.0, 12, 0.13, 0.012),
    (64, 2.5, 13, 0.75, 0.04),
]


@pytest.mark.parametrize("n, r, seed, lin_tol, rat_tol", ACCURACY)
def test_first_order_tracks_exact(n, r, seed, lin_tol, rat_tol):
    G, V = _array(n, seed)
    exact = ir_drop_exact(G, V, r, r)
    ideal = V @ G
    lin = ir_drop_first_order(G, V, r, r)
    rat = ir_drop_first_order(G, V, r, r, form="rational")
    eps = _eps(G, r, r)
    err_ideal = _maxrel(ideal, exact)
    assert _maxrel(lin, exact) < lin_tol < err_ideal
    assert _maxrel(rat, exact) < rat_tol < err_ideal / 20
    assert _l1(lin - exact) <= eps * _l1(ideal - exact)
    assert np.all(lin <= exact)                     # the linear model overestimates the drop


def test_first_order_breaks_down_as_r_g_size_grows():
    """The linear model's residual error (a fraction of the IR-drop error) grows with eps ~ r*G*N**2;
    past eps ~ 1 it is worse than ignoring IR drop. The rational form degrades gracefully."""
    G, V = _array(64, seed=14)
    ratios, epss = [], []
    for r in (0.25, 1.0, 2.5, 5.0, 20.0):
        exact = ir_drop_exact(G, V, r, r)
        ideal = V @ G
        ratios.append(_l1(ir_drop_first_order(G, V, r, r) - exact) / _l1(ideal - exact))
        epss.append(_eps(G, r, r))
    assert np.all(np.diff(ratios) > 0) and np.all(np.diff(epss) > 0)
    assert ratios[0] < 0.1 and ratios[-1] > 3         # measured 0.065, 0.26, 0.63, 1.25, 4.9 (eps 0.1 ... 8.1)
    r = 20.0                                          # eps 8.1
    exact = ir_drop_exact(G, V, r, r)
    lin = ir_drop_first_order(G, V, r, r)
    assert _maxrel(lin, exact) > _maxrel(V @ G, exact) > 5          # measured 48x vs 7.7x
    assert np.any(effective_conductance(G, r, r, "linear") < 0)      # unphysical negative conductance
    assert _maxrel(ir_drop_first_order(G, V, r, r, form="rational"), exact) < 0.4   # measured 0.28


# ------------------------------------------------------------------------------------------------- batches
@pytest.mark.parametrize("batch", [3, 40])    # 40 > rows: the exact solve goes through the transfer matrix
def test_batch_equals_loop(batch):
    rng = np.random.default_rng(6)
    G = rng.uniform(G_OFF, G_ON, size=(20, 13))
    V = rng.uniform(0, V_READ, size=(batch, 20))
    for fn, kw in ((ir_drop_exact, {}), (ir_drop_first_order, {}), (ir_drop_first_order, {"form": "rational"})):
        out = fn(G, V, 2.0, 3.0, **kw)
        assert out.shape == (batch, 13)
        loop = np.stack([fn(G, v, 2.0, 3.0, **kw) for v in V])
        np.testing.assert_allclose(out, loop, rtol=1e-12, atol=0)
    T = effective_conductance(G, 2.0, 3.0)
    np.testing.assert_allclose(V @ T, ir_drop_exact(G, V, 2.0, 3.0), rtol=1e-12, atol=0)
    assert ir_drop_exact(G, V[:0], 2.0, 3.0).shape == (0, 13)


# -------------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize("call", [
    lambda G, v: ir_drop_exact(G, v, -1.0, 1.0),
    lambda G, v: ir_drop_exact(G, v, 1.0, -1e-9),
    lambda G, v: ir_drop_first_order(G, v, -2.0, 0.0),
    lambda G, v: ir_drop_exact(G, v, float("nan"), 1.0),
    lambda G, v: ir_drop_exact(G, v, float("inf"), 1.0),
    lambda G, v: ir_drop_exact(G, v, [1.0, 2.0], 1.0),
    lambda G, v: ir_drop_exact(G, v[:-1], 1.0, 1.0),                 # v too short
    lambda G, v: ir_drop_first_order(G, np.ones((2, 5)), 1.0, 1.0),  # batch with wrong row count
    lambda G, v: ir_drop_exact(G, v[None, None], 1.0, 1.0),          # 3-D input
    lambda G, v: ir_drop_exact(G[0], v, 1.0, 1.0),                   # 1-D G
    lambda G, v: ir_drop_exact(-G, v, 1.0, 1.0),                     # negative conductance
    lambda G, v: ir_drop_first_order(G, v, 1.0, 1.0, form="quadratic"),
    lambda G, v: effective_conductance(G, 1.0, 1.0, model="spice"),
    lambda G, v: ir_drop_node_voltages(G, v, -1.0, 1.0),
])
def test_bad_inputs_raise_config_error(call):
    G, V = _array(4, seed=7)
    with pytest.raises(ConfigError):
        call(G, V[0])
