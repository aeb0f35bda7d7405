"""SME (arXiv 2103.01705): shaping, splicing and squeeze-out as a mapper step the engine runs (cimsim.mappers.sme)."""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

import cimsim
from cimsim.devices import IdealCell, IdealReadout
from cimsim.encoding import slice_weights
from cimsim.errors import ConfigError
from cimsim.layout import BitPlaneLayout
from cimsim.mappers import sme
from cimsim.mappers.mapper import quantize_weights
from cimsim.packed import PackedGroup, PackedTile
from cimsim.spec import CrossbarSpec

IDEAL = CrossbarSpec(cell=IdealCell(), readout=IdealReadout(), cell_bits=1, weight_bits=8, input_bits=8,
                     signed="differential")


def laplace_weights(shape, scale, seed):
    rng = np.random.default_rng(seed)
    return np.clip(np.round(rng.laplace(0, scale, size=shape)), -127, 127).astype(np.int64)


# ---------------------------------------------------------------------------------------------- the root test
@pytest.mark.parametrize("density", [0.0, 0.01, 0.25, 1.0])
@pytest.mark.parametrize("signed", [False, True])
def test_the_squeezed_tile_equals_the_integer_product_bit_for_bit(density, signed):
    """Ideal cells and a lossless readout: the packed crossbars the engine runs give x @ W.T exactly."""
    W = laplace_weights((70, 300), 6.0, seed=1)
    W[:, 128:256] //= 16                        # a sparser row block: squeeze-out has something to move
    tile, res = sme.packed_tile(W, replace(IDEAL, input_signed=signed), BitPlaneLayout(0, density), seed=3)
    rng = np.random.default_rng(2)
    x = rng.integers(-128, 128, size=(9, 300)) if signed else rng.integers(0, 256, size=(9, 300))
    assert np.array_equal(tile(x), x @ W.T)
    assert tile.arrays == res.squeezed
    if density > 0:
        assert res.moved_bits > 0


def test_the_squeezed_tile_is_exact_on_the_torch_backend():
    W = laplace_weights((20, 150), 3.0, seed=4)
    tile, _ = sme.packed_tile(W, IDEAL, BitPlaneLayout(0, 1.0), backend="torch")
    x = np.random.default_rng(5).integers(0, 256, size=(4, 150))
    assert np.array_equal(tile(x), x @ W.T)


def tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 12, 3, padding=1, groups=2), nn.ReLU(),
                         nn.AvgPool2d(2), nn.Flatten(), nn.Linear(12 * 7 * 7, 10)).eval()


@pytest.mark.parametrize("nonzero_bits,tolerance", [(0, 0.0), (2, 0.0), (0, 0.03), (2, 0.03)])
def test_the_mapped_sme_network_equals_the_quantized_network_bit_for_bit(nonzero_bits, tolerance):
    """The root test through the mapper: SME's ADC converts 1-bit columns losslessly, so with an ideal cell the
    squeezed network's outputs equal the (shaped) quantized network's in exact integer arithmetic."""
    x = torch.rand(8, 1, 14, 14, generator=torch.Generator().manual_seed(1))
    arch = cimsim.arch.get("sme", cell="ideal", nonzero_bits=nonzero_bits, squeeze_density=1.0,
                           shaping_tolerance=tolerance)
    mapped = cimsim.map(tiny_cnn(), arch, calibration=x, seed=0, progress=False)
    analog = mapped(x)
    digital = mapped.set_mode("digital")(x)
    assert torch.equal(analog, digital)
    for layer in mapped.mapped_layers.values():
        assert layer.plan.arrays == layer.layout_counts["xbars_squeezed"]
        assert all(isinstance(t, PackedTile) for t in layer.crossbars)
    rep = mapped.set_mode("analog").evaluate([(x, torch.zeros(8, dtype=torch.long))], progress=False)
    rows = {r["name"]: r for r in rep.layers}
    assert rows["6"]["xbars_sliced"] == 5 * 2      # ceil(588 / 128) row blocks x ceil(2 * 7 * 10 / 128) blocks
    assert rows["6"]["arrays"] == rows["6"]["xbars_squeezed"] <= rows["6"]["xbars_spliced"] <= 10
    assert all(r["rel_error"] == 0 for r in rep.layers if r["arrays"])
    # costs come from the packed arrays' own events: one conversion per used column, input cycle and example
    for name in ("0", "2", "6"):
        layer = mapped.mapped_layers[name]
        columns = sum(len(g.outputs) for tile in layer.crossbars for g in tile.groups)
        assert rows[name]["conversions"] == layer.plan.positions * arch.input_bits * columns


_DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", _DEVICES)
def test_the_packed_layers_stay_on_the_torch_device_and_equal_the_numba_engine(device):
    """On the torch backend a mapped SME network's packed layers run on the engine's device (rows gathered, columns
    spliced there: PackedTile.call_device), as dense layers do, and give the numba engine's outputs and events."""
    x = torch.rand(8, 1, 14, 14, generator=torch.Generator().manual_seed(1))
    arch = cimsim.arch.get("sme", cell="ideal", nonzero_bits=2, squeeze_density=0.5, shaping_tolerance=0.03)
    runs = {}
    for backend in ("numba", "torch"):
        mapped = cimsim.map(tiny_cnn(), arch, calibration=x, seed=0, progress=False, backend=backend,
                            device=device if backend == "torch" else "cpu")
        layers = list(mapped.mapped_layers.values())
        assert all(isinstance(t, PackedTile) for layer in layers for t in layer.crossbars)
        want = None if backend == "numba" else torch.device(device)
        assert {layer.engine_device() for layer in layers} == {want}
        rep = mapped.evaluate([(x, torch.zeros(8, dtype=torch.long))], progress=False)
        runs[backend] = (mapped(x), {r["name"]: (r["conversions"], r["energy_j"]) for r in rep.layers})
    assert torch.equal(runs["torch"][0], runs["numba"][0])
    for name, (conversions, energy) in runs["numba"][1].items():   # energies: float sums in another order
        assert runs["torch"][1][name][0] == conversions
        assert runs["torch"][1][name][1] == pytest.approx(energy, rel=1e-12)


def test_a_packed_tiles_device_call_equals_its_host_call():
    W = laplace_weights((20, 150), 3.0, seed=4)
    tile, _ = sme.packed_tile(W, IDEAL, BitPlaneLayout(0, 0.5), backend="torch")
    assert tile.torch_device == torch.device("cpu")
    x = np.random.default_rng(5).integers(0, 256, size=(6, 150))
    y = tile.call_device(torch.from_numpy(x).to(torch.float32))
    assert y.dtype == torch.float64 and np.array_equal(y.numpy(), x @ W.T)
    numba_tile, _ = sme.packed_tile(W, IDEAL, BitPlaneLayout(0, 0.5))
    assert numba_tile.torch_device is None


@pytest.mark.parametrize("bad, what", [(torch.zeros(3, 149), r"shape \(3, 149\)"),
                                       (torch.zeros(3, 151), r"shape \(3, 151\)"),
                                       (np.zeros((3, 150)), "ndarray"), (torch.zeros(150), r"shape \(150,\)")])
def test_a_packed_tiles_device_call_refuses_an_input_of_the_wrong_kind_shape_or_width(bad, what):
    """As Crossbar.call_device (torch_products.check_device_input): a wider input gathered only the tile's rows and
    returned numbers, a numpy array failed on its missing .device; nothing is called or counted."""
    tile, _ = sme.packed_tile(laplace_weights((20, 150), 3.0, seed=4), IDEAL, BitPlaneLayout(0, 0.5), backend="torch")
    with pytest.raises(ConfigError, match=r"call_device takes a 2-D torch tensor \(batch, 150\) on cpu, got .*" + what):
        tile.call_device(bad)
    assert not any(xb._pending for xb in tile.crossbars)
    numba_tile, _ = sme.packed_tile(laplace_weights((20, 150), 3.0, seed=4), IDEAL, BitPlaneLayout(0, 0.5))
    with pytest.raises(ConfigError, match=r"^call_device needs the torch backend \(backend='torch'\)$"):
        numba_tile.call_device(torch.zeros(3, 150))


# ---------------------------------------------------------------------------------------------- the counts
def test_counts_of_a_layout_worked_by_hand():
    """64 outputs x 256 inputs, 8-bit weights. Dense 1-bit differential layout: 2 row blocks x ceil(14 * 64 / 128)
    = 14 crossbars. Weights 64 on the 'diagonal' k = 4 o: one plane-6 bit per output, spread over both row blocks:
    splicing leaves the 2 crossbars of plane 6 (one per row block); squeeze-out moves the 64 bits (64 columns,
    64 distinct inputs) into one crossbar."""
    W = np.zeros((64, 256), dtype=np.int64)
    W[np.arange(64), 4 * np.arange(64)] = 64
    res = sme.squeeze(W, 8, 128, 128, 0.25)
    assert (res.sliced, res.spliced, res.squeezed, res.moved_bits) == (14, 2, 1, 64)
    assert sme.squeeze(W, 8, 128, 128, 0.0).squeezed == 2        # splice only
    (g,) = res.groups
    assert np.array_equal(g.rows, 4 * np.arange(64)) and np.all(g.weights == 64.0)
    assert np.array_equal(np.sort(g.outputs), np.arange(64))
    # all ones: plane 0's W+ columns, half-full crossbars stay when d <= 0.5, are repacked when d = 1
    ones = np.ones((64, 256), dtype=np.int64)
    for d in (0.25, 1.0):
        assert sme.squeeze(ones, 8, 128, 128, d).counts() == {"sliced": 14, "spliced": 2, "squeezed": 2}


def test_an_all_zero_layer_keeps_one_crossbar_and_computes_zero():
    tile, res = sme.packed_tile(np.zeros((5, 40), dtype=np.int64), IDEAL, BitPlaneLayout(0, 0.25))
    assert (res.spliced, res.squeezed, tile.arrays) == (0, 1, 1)
    assert np.array_equal(tile(np.ones((2, 40), dtype=np.int64)), np.zeros((2, 5)))


def test_bit_planes_are_sign_magnitude_bits():
    q = np.array([[5, -3, 0]])
    planes = sme.bit_planes(q, 4)          # (3 planes, 2 columns: W+ then W-, 3 inputs)
    assert planes[:, 0].tolist() == [[1, 0, 0], [0, 0, 0], [1, 0, 0]]
    assert planes[:, 1].tolist() == [[0, 1, 0], [0, 1, 0], [0, 0, 0]]
    assert sme.plane_bit_counts(q, 4).tolist() == [2, 1, 1]


# ---------------------------------------------------------------------------------------------- shaping
def test_the_shaping_table_keeps_at_most_n_bits_and_moves_to_the_nearest():
    t = sme.shaping_table(8, 2)
    assert np.all(sme.popcount(t) <= 2) and t[0] == 0 and t[96] == 96
    assert t[7] == 6 and t[11] == 10 and t[13] == 12 and t[127] == 96     # ties go to the smaller magnitude
    brute = [min((v for v in range(128) if bin(v).count("1") <= 2), key=lambda v: (abs(v - m), v))
             for m in range(128)]
    assert t.tolist() == brute


def test_shaping_reduces_bits_and_keeps_the_weights_close():
    torch.manual_seed(0)
    w = torch.randn(32, 200)
    q0, s0 = quantize_weights(w, 8)
    q, s = sme.shape_weights(w, 8, 2)
    assert np.all(sme.popcount(np.abs(q)) <= 2)
    assert sme.plane_bit_counts(q, 8).sum() < 0.75 * sme.plane_bit_counts(q0, 8).sum()
    rel = lambda q, s: np.linalg.norm(w.numpy() - s[:, None] * q) / np.linalg.norm(w.numpy())  # noqa: E731
    at_plain_scale = np.sign(q0) * sme.shaping_table(8, 2)[np.abs(q0)]
    # Gaussian weights, 2 non-zero bits: 9.05 % RMS weight error (plain 8-bit: 0.71 %); re-choosing the scale is
    # never worse than shaping at the plain scale (which is one of the candidates)
    assert 0.085 < rel(q, s) < 0.092 and rel(q, s) <= rel(at_plain_scale, s0)
    assert rel(*sme.shape_weights(w, 8, 3)) < 0.5 * rel(q, s)
    same_q, same_s = sme.shape_weights(w, 8, 0)
    assert np.array_equal(same_q, q0) and np.array_equal(same_s, s0)


def test_plane_windows_keep_at_most_w_planes_per_column_segment():
    """Each segment of ``rows`` inputs of one output keeps the planes [top - W + 1, top] of its largest magnitude;
    weights round to the nearest multiple of the lowest place value: at most half of it away (or clipped to the
    window's largest value)."""
    q = laplace_weights((40, 300), 12.0, seed=7)
    assert np.array_equal(sme.plane_window(q, 7, 128), q) and np.array_equal(sme.plane_window(q, 0, 128), q)
    for W in (1, 3, 5):
        s = sme.plane_window(q, W, 128)
        for k0 in range(0, 300, 128):
            seg, orig = np.abs(s[:, k0:k0 + 128]), np.abs(q[:, k0:k0 + 128])
            top = np.floor(np.log2(np.maximum(orig.max(axis=1), 1))).astype(int)
            step = 2 ** np.maximum(top - W + 1, 0)
            assert np.all(seg % step[:, None] == 0) and np.all(seg <= (2 ** W - 1) * step[:, None])
            cap = (2 ** W - 1) * step[:, None]
            assert np.all(np.abs(seg - np.minimum(orig, cap)) <= step[:, None] // 2)
            assert np.array_equal(np.sign(s[:, k0:k0 + 128])[seg > 0], np.sign(q[:, k0:k0 + 128])[seg > 0])


def test_crossbar_aware_windows_cut_crossbars_within_the_tolerance():
    """Bell-shaped weights, 128 outputs x 256 inputs: 2 row blocks x 14 dense crossbars. Narrowing windows frees
    whole crossbars while every row block's squared weight error stays within the tolerance; 0 changes nothing,
    and a larger tolerance never needs more crossbars."""
    torch.manual_seed(0)
    w = torch.randn(128, 256)
    q0, s0 = quantize_weights(w, 8)
    assert np.array_equal(sme.shape_weights(w, 8, 0, 0.0)[0], q0)
    counts = []
    for tol in (1e-3, 1e-2, 3e-2):
        q, s = sme.shape_weights(w, 8, 0, tol)
        assert np.array_equal(s, s0)
        err = np.square(w.numpy() - s[:, None] * q)
        for k0 in (0, 128):
            assert err[:, k0:k0 + 128].sum() <= tol * np.square(w.numpy()[:, k0:k0 + 128]).sum()
        counts.append(sme.squeeze(q, 8, 128, 128, 0.25).squeezed)
    plain = sme.squeeze(q0, 8, 128, 128, 0.25).squeezed
    assert plain == 28 and counts == sorted(counts, reverse=True) and counts[-1] <= plain // 2


def test_squeeze_out_drops_the_empty_columns_of_a_row_block():
    """64 outputs x 256 inputs of positive weights 1..127 with every magnitude bit set somewhere in each row block:
    splicing keeps all 7 column blocks of each row block (a plane's 64 W+ columns beside its 64 empty W- ones);
    squeeze-out packs each row block's 7 x 64 = 448 live columns side by side: 4 crossbars a row block."""
    q = np.random.default_rng(3).integers(1, 128, size=(64, 256))
    q[:, 0] = q[:, 128] = 127
    res = sme.squeeze(q, 8, 128, 128, 0.0)
    assert (res.sliced, res.spliced, res.squeezed) == (14, 14, 8)
    tile, _ = sme.packed_tile(q, IDEAL, BitPlaneLayout(0, 0.0))
    x = np.random.default_rng(4).integers(0, 256, size=(3, 256))
    assert np.array_equal(tile(x), x @ q.T)


# ---------------------------------------------------------------------------------------------- the pieces
def test_unsigned_weights_are_sliced_as_they_are():
    sl = slice_weights(np.array([[0, 1, 5]]), 3, 1, "unsigned")
    assert sl.levels[:, 0, 0].tolist() == [[0, 1, 1], [0, 0, 0], [0, 0, 1]] and sl.offset == 0
    with pytest.raises(ConfigError, match="unsigned 3-bit"):
        slice_weights(np.array([[-1]]), 3, 1, "unsigned")
    with pytest.raises(ConfigError, match="at least 2"):
        CrossbarSpec(weight_bits=1, cell_bits=1)
    assert CrossbarSpec(weight_bits=1, cell_bits=1, signed="unsigned").weight_bits == 1


def test_packed_groups_and_layouts_are_validated():
    with pytest.raises(ConfigError, match="at most one"):
        PackedGroup(np.array([1, 1]), np.array([0]), np.array([1.0]), np.ones((1, 2), dtype=np.int64))
    with pytest.raises(ConfigError, match="levels"):
        PackedGroup(np.array([1]), np.array([0]), np.array([1.0]), np.ones((2, 1), dtype=np.int64))
    for bad in ({"nonzero_bits": -1}, {"squeeze_density": 1.5}, {"nonzero_bits": 1.5}, {"shaping_tolerance": -0.1},
                {"shaping_tolerance": float("nan")}):
        with pytest.raises(ConfigError):
            BitPlaneLayout(**bad)
    with pytest.raises(ConfigError, match="1-bit cells"):
        sme.packed_tile(np.ones((2, 2), dtype=np.int64), replace(IDEAL, cell_bits=2), BitPlaneLayout())


def test_the_architecture_asks_for_the_layout_and_sweeps_its_knobs():
    a = cimsim.arch.get("sme", nonzero_bits="2", squeeze_density="0.5", shaping_tolerance="0.02")
    assert a.weight_layout() == BitPlaneLayout(2, 0.5, 0.02)
    assert cimsim.arch.get("isaac").weight_layout() is None
    with pytest.raises(ConfigError, match="cell_bits"):
        cimsim.arch.get("sme", cell_bits=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert a.crossbar_spec().cell_bits == 1
    from cimsim.sweep import make_points
    points = make_points(["sme"], grid={"nonzero_bits": ["0", "3"], "squeeze_density": ["0", "1"]})
    assert sorted(p.param_dict["squeeze_density"] for p in points) == [0.0, 0.0, 1.0, 1.0] and len(points) == 4


def test_a_sweep_of_the_squeeze_knob_draws_crossbars_instead_of_the_area():
    from cimsim.plots import sweep_figure
    from cimsim.report import Report
    from cimsim.sweepfile import Point, aggregate

    def report(arrays):
        return Report(accuracy=0.9, digital_accuracy=0.9, energy_j=1e-6, latency_s=1e-6, throughput_inf_per_s=1e6,
                      area_m2=1e-4, layers=[{"name": "fc", "kind": "Linear", "arrays": arrays},
                                            {"name": "relu", "kind": "ReLU", "arrays": 0}],
                      config={"arch": "sme", "arch_params": {}}, n_examples=10)
    results = {Point.make("sme", {"squeeze_density": d}): report(n) for d, n in ((0.0, 35), (0.25, 30), (1.0, 28))}
    assert [r["crossbars"] for r in aggregate(results)] == [35.0, 30.0, 28.0]
    fig = sweep_figure(results, title="t")
    assert [ax.get_title() for ax in fig.axes][3] == "crossbars allocated vs squeeze_density"
    assert list(fig.axes[3].get_lines()[0].get_ydata()) == [35.0, 30.0, 28.0]
    same = {Point.make("sme", {"squeeze_density": d}): report(35) for d in (0.0, 1.0)}
    assert sweep_figure(same, title="t").axes[3].get_title().startswith("chip area")
