"""Contract tests: what every registered architecture, memory cell and readout must satisfy.

They are parametrized over the registries at collection time, so a new architecture (``@register``), cell
(the device catalog) or readout (``cimsim.readouts.register_readout``) is checked without writing a test.
The ``check_*`` functions take one architecture; tests/test_toy_arch.py runs them on a toy architecture
written in one file, as CONTRIBUTING.md describes.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

import cimsim
from cimsim import events
from cimsim.arch.params import ParamInfo
from cimsim.devices import IdealCell, IdealReadout, catalog
from cimsim.devices import base as devices_base
from cimsim.errors import ConfigError
from cimsim.readouts import readout_op, registered_readouts
from cimsim.report import Report

ARCHS = cimsim.arch.names()


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                         nn.Linear(3 * 4 * 4, 5)).eval()


def tiny_data():
    g = torch.Generator().manual_seed(2)
    return torch.rand(12, 1, 8, 8, generator=g), torch.randint(0, 5, (12,), generator=g)


def run_tiny(arch) -> Report:
    x, y = tiny_data()
    if not arch.maps_to_crossbars:
        return cimsim.mappers.evaluate(tiny_net(), arch, [(x, y)], progress=False)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # architectures with learned scales warn that none were learned here
        mapped = cimsim.map(tiny_net(), arch, calibration=x, seed=1)
        return mapped.evaluate([(x[:6], y[:6]), (x[6:], y[6:])], progress=False)


# ---------------------------------------------------------------------------------------------- checks
def check_tile_is_exact_with_ideal_cells_and_a_lossless_readout(arch) -> None:
    """The architecture's tile (its slicing, signed mode, pair readout, conversion scope) with an ideal cell
    and a lossless readout gives the exact integer product, for unsigned and signed inputs."""
    if not arch.maps_to_crossbars:
        return
    rng = np.random.default_rng(0)
    for signed in (False, True):
        spec = replace(arch.crossbar_spec(input_signed=signed), cell=IdealCell(), readout=IdealReadout(),
                       adc_range="full")
        half_w = 2 ** (spec.weight_bits - 1) - 1
        W = rng.integers(-half_w, half_w + 1, size=(7, 2 * spec.rows + 5))
        lo, hi = ((-(2 ** (spec.input_bits - 1)), 2 ** (spec.input_bits - 1) - 1) if signed
                  else (0, 2 ** spec.input_bits - 1))
        x = rng.integers(lo, hi + 1, size=(6, W.shape[1]))
        y = cimsim.Crossbar(W, spec, seed=0)(x)
        assert np.array_equal(y, x.astype(np.int64) @ W.T.astype(np.int64)), (arch.name, signed)


def check_every_event_it_can_emit_has_a_cost(arch) -> None:
    costs = arch.event_costs()
    for signed in (False, True):
        missing = arch.emitted_events(input_signed=signed) - set(costs)
        assert not missing, f"{arch.name}: no cost for {sorted(missing)}"
    for e, c in costs.items():
        assert c.energy_j >= 0 and math.isfinite(c.energy_j), (arch.name, e)


def check_a_run_adds_up_and_round_trips(arch, tmp_path):
    """Per-layer energies and per-component energies both add up to the total; latencies add up; the report
    survives JSON and HDF5 unchanged; re-costing at the same point changes nothing. Returns the run's report."""
    rep = run_tiny(arch)
    assert rep.energy_j > 0 and rep.latency_s > 0 and rep.area_m2 > 0
    assert sum(r["energy_j"] for r in rep.layers) == pytest.approx(rep.energy_j, rel=1e-12)
    assert sum(rep.components.values()) == pytest.approx(rep.energy_j, rel=1e-12)
    assert sum(r["latency_s"] for r in rep.layers) == pytest.approx(rep.latency_s, rel=1e-12)
    assert rep.area_m2 == pytest.approx(arch.area_m2, rel=1e-12)
    original = json.loads(rep.to_json())
    assert same_values(Report.from_json(rep.to_json()).to_dict(), original)
    again = Report.from_hdf5(rep.to_hdf5(tmp_path / f"{arch.name}.h5"))
    assert same_values(json.loads(again.to_json()), original)
    assert again.recost(arch).energy_j == pytest.approx(rep.energy_j, rel=1e-12)
    # macro level + the rest = chip level, from the same components of the same run
    macro = set(rep.macro_components)
    assert macro == arch.macro_kinds() and again.macro_components == rep.macro_components
    rest = sum(v for k, v in rep.components.items() if k not in macro)
    assert 0 < rep.macro_energy_j <= rep.energy_j
    assert rep.macro_energy_j + rest == pytest.approx(rep.energy_j, rel=1e-12)
    assert rep.energy_at("chip") == rep.energy_j and rep.energy_at("macro") == rep.macro_energy_j
    return rep


def same_values(a, b) -> bool:
    """Equal as data: numbers by value (an int 0 equals 0.0, NaN equals NaN), containers element by element."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_values(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_values(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


def check_the_inventory_rolls_up(arch) -> None:
    s = arch.summary()
    bd = s["breakdown"]
    assert sum(r["power_w"] for r in bd.values()) == pytest.approx(s["power_w"], rel=1e-12)
    assert sum(r["area_m2"] for r in bd.values()) == pytest.approx(s["area_m2"], rel=1e-12)
    assert s["peak_ops_per_s"] > 0 and s["power_w"] > 0 and s["area_m2"] > 0
    for c in arch.inventory():
        assert c.level in ("ima", "tile", "chip") and c.count > 0 and c.power_w >= 0 and c.area_m2 >= 0, c
        assert c.source, c


def check_the_compute_macro_is_declared(arch) -> None:
    """Inventory rows flagged ``macro`` name the compute macro: never empty, the crossbars in it for a
    crossbar architecture, every macro kind costed by some event or holding static power, no kind split."""
    macro = arch.macro_kinds()
    assert macro, f"{arch.name}: no inventory row is flagged macro"
    if arch.maps_to_crossbars:
        assert "crossbar" in macro, arch.name
    costed = {c.component for c in arch.event_costs().values()} | set(arch.breakdown())
    assert macro <= costed, (arch.name, sorted(macro - costed))
    assert arch.summary()["macro_components"] == sorted(macro)
    # the arrays' readout and partial-sum processing belong to the macro wherever an inventory has them
    kinds = {c.kind for c in arch.inventory()}
    readout = kinds & {"adc", "sample_hold", "comparator", "sense_amp", "tia", "buffer", "nns_a", "shift_add",
                       "accumulator", "dcim"}
    assert readout <= macro, (arch.name, sorted(readout - macro))


def check_area_and_power_move_with_adc_bits(arch) -> None:
    if not arch.has_adc:
        return
    figures = [arch.with_params(adc_bits=b).summary() for b in (3, 6, 9)]
    for key in ("area_m2", "power_w"):
        assert figures[0][key] < figures[1][key] < figures[2][key], (arch.name, key)


def check_parameters_are_declared_validated_and_round_trip(arch) -> None:
    params = arch.parameters()
    assert all(isinstance(p, ParamInfo) and p.source for p in params)
    # a component value the architecture sets itself cites the architecture, not the device class's default
    for f in dataclasses.fields(arch):
        if not f.metadata.get("arch_component") or f.default_factory is dataclasses.MISSING:
            continue
        own = f.default_factory()   # the model as the architecture makes it
        if type(own) is not type(getattr(arch, f.name)):
            continue
        for p in params:
            head, _, name = p.path.partition(".")
            if head == f.name and name and getattr(own, name) != devices_base.default_of(type(own), name):
                assert p.source.startswith(f.metadata["source"]) and "not used here" in p.source, p.path
            elif head == f.name and name:
                assert not p.source.startswith(f.metadata["source"]), p.path
    assert cimsim.arch.get(arch.name, **arch.params()) == arch              # the flat paths rebuild it
    with pytest.raises(ConfigError, match="no parameter"):
        arch.with_params(warp_factor="9")
    for p in params:   # a number beyond its range is refused, naming the path
        if p.derived_from or p.unit == "kind" or not isinstance(p.value, (int, float)) or isinstance(p.value, bool):
            continue
        bad = _out_of_range(p)
        if bad is None:
            continue
        with pytest.raises(ConfigError) as exc:
            arch.with_params(**{p.path: bad})
        assert p.path in str(exc.value) or p.path.split(".")[-1] in str(exc.value), (p.path, str(exc.value))


def _out_of_range(p: ParamInfo):
    text = p.range
    if text.startswith("["):
        hi = float(text.strip("[]").split(",")[1])
        return hi * 10 + 1
    if text.startswith((">", ">=")):
        return -1.0 if float(text.split()[-1]) >= 0 else None
    return None


CHECKS = [check_tile_is_exact_with_ideal_cells_and_a_lossless_readout, check_every_event_it_can_emit_has_a_cost,
          check_the_inventory_rolls_up, check_the_compute_macro_is_declared, check_area_and_power_move_with_adc_bits,
          check_parameters_are_declared_validated_and_round_trip]


# ---------------------------------------------------------------------------------------------- architectures
@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__[6:])
@pytest.mark.parametrize("name", ARCHS)
def test_architecture_contract(name, check):
    arch = cimsim.arch.get(name)
    assert arch.name == name     # the registry gives the architecture asked for; then the check's own asserts
    check(arch)


@pytest.mark.parametrize("name", ARCHS)
def test_architecture_run_contract(name, tmp_path):
    rep = check_a_run_adds_up_and_round_trips(cimsim.arch.get(name), tmp_path)
    assert rep.config["arch"] == name and rep.n_examples > 0     # the report is this architecture's own run


# ---------------------------------------------------------------------------------------------- cells
CELLS = [d["kind"] for d in catalog.listing() if d["category"] == "cell"]


@pytest.mark.parametrize("kind", CELLS)
def test_every_cell_works_in_the_engine(kind):
    """Each cell programs levels, reads through the engine on both backends (finite numbers, positive
    conductance-seconds) and tracks the exact product within its own non-idealities."""
    cell = catalog.get(kind)
    rng = np.random.default_rng(4)
    W = rng.integers(-7, 8, size=(5, 40))
    x = rng.integers(0, 16, size=(9, 40))
    spec = cimsim.CrossbarSpec(rows=16, cols=16, cell=cell, cell_bits=1, weight_bits=4, input_bits=4,
                               readout=IdealReadout())
    exact = x @ W.T
    for backend in ("numba", "torch"):
        xb = cimsim.Crossbar(W, spec, seed=0, backend=backend)
        y = xb(x)
        assert np.all(np.isfinite(y)), (kind, backend)
        assert xb.ledger.count(events.CELL_READ_CONDUCTANCE_S) > 0
        assert np.corrcoef(y.ravel(), exact.ravel())[0, 1] > 0.9, (kind, backend)


@pytest.mark.parametrize("kind", CELLS)
def test_a_cell_programming_on_levels_says_so(kind):
    """programs_on_levels() is True only where program() returns the levels' conductances exactly and draws nothing
    from its generator (the engine then skips programming); a cell with programming noise says False where it has
    a noise field to turn on."""
    cell = catalog.get(kind)
    levels = np.random.default_rng(1).integers(0, 4, size=(3, 50))
    rng = np.random.default_rng(2)
    g = cell.program(levels, 2, rng)
    exact = np.array_equal(g, cell.level_conductances(2)[levels]) and rng.random() == np.random.default_rng(2).random()
    assert not cell.programs_on_levels() or exact, kind
    for field in ("prog_sigma_frac", "program_sigma_v", "p_stuck_on"):
        if hasattr(cell, field):
            assert not replace(cell, **{field: 0.01}).programs_on_levels(), (kind, field)


# ---------------------------------------------------------------------------------------------- readouts
def _readout_instances():
    out = []
    for cls in registered_readouts():
        for kind in catalog.kinds():
            m = catalog.get(kind)
            if isinstance(m, cls) and type(m) not in (type(o) for o in out):
                out.append(m)
    return out


@pytest.mark.parametrize("readout", _readout_instances(), ids=lambda r: r.kind)
@pytest.mark.parametrize("pair", [False, True])
def test_every_readout_agrees_on_both_backends_and_names_its_event(readout, pair):
    """The numpy and torch transfers of a readout give the same values for the same column values (no offset
    noise), and its conversion event parses back to its kind and bits."""
    op = readout_op(readout)
    v = np.linspace(-40.5, 70.25, 997)
    lo, lsb = (-32.0, 2.0) if op.quantizes else (0.0, 1.0)
    values, clipped = op.convert(v.copy(), lo, lsb, np.random.default_rng(0), pair)
    codes, clips = op.codes_torch(torch.tensor(v), torch.tensor(lo), torch.tensor(lsb), None, pair)
    codes = codes.numpy()
    torch_values = lo + codes * lsb if op.quantizes else codes
    np.testing.assert_array_equal(values, torch_values)
    if op.quantizes:
        assert clipped == int(clips) > 0
    parsed = events.parse_conversion(op.event)
    assert parsed is not None and parsed.kind == readout.kind
    assert parsed.bits == (int(readout.bits) if op.quantizes else None)
    assert op.code_bound(100.0) >= np.abs(codes).max()
