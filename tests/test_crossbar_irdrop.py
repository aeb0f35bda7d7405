"""IR drop folded into the programmed arrays of a crossbar (cimsim.irdrop inside cimsim.Crossbar)."""

import numpy as np
import pytest

from cimsim import Crossbar, CrossbarSpec
from cimsim.devices import ReRAM
from cimsim.errors import ConfigError


def _ir_case():
    rng = np.random.default_rng(0)
    return rng.integers(-127, 128, size=(32, 256)), rng.integers(0, 256, size=(20, 256))


def _ir_out(W, x, r, model, backend="numba"):
    spec = CrossbarSpec(rows=64, cols=64, cell=ReRAM(), signed="differential", r_wire_ohm=r, ir_drop=model)
    return Crossbar(W, spec, backend=backend)(x)


def test_ir_drop_off_by_default_and_at_zero_resistance():
    W, x = _ir_case()
    base = Crossbar(W, CrossbarSpec(rows=64, cols=64, cell=ReRAM(), signed="differential"))(x)
    for model in ("rational", "linear", "exact"):
        assert np.array_equal(_ir_out(W, x, 0.0, model), base)


def test_fast_ir_drop_tracks_the_exact_nodal_solve():
    W, x = _ir_case()
    ref = x @ W.T
    rel = lambda a, b: np.abs(a - b).mean() / np.abs(b).mean()  # noqa: E731
    exact = _ir_out(W, x, 1.0, "exact")
    # 64x64 arrays of 6 kOhm cells with 1 ohm per pitch: IR drop costs ~22 % of the output ...
    assert rel(exact, ref) > 0.15
    # ... and the rational model reproduces the exact solve to ~0.5 %, the linear one to ~4 %
    assert rel(_ir_out(W, x, 1.0, "rational"), exact) < 0.01
    assert rel(_ir_out(W, x, 1.0, "linear"), exact) < 0.06
    # more wire resistance, more error
    assert rel(_ir_out(W, x, 2.5, "exact"), ref) > rel(exact, ref)
    # the torch backend uses the same folded arrays (float32 GEMMs: ~2e-7 of full scale on these
    # non-integer levels)
    numba_out = _ir_out(W, x, 1.0, "rational")
    torch_out = _ir_out(W, x, 1.0, "rational", backend="torch")
    assert np.abs(torch_out - numba_out).max() < 1e-6 * np.abs(numba_out).max()


def test_bad_ir_drop_settings():
    with pytest.raises(ConfigError, match="r_wire_ohm"):
        CrossbarSpec(r_wire_ohm=-1.0)
    with pytest.raises(ConfigError, match="ir_drop"):
        CrossbarSpec(ir_drop="spice")
