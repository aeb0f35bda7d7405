"""Real-valued matrix-vector products on the crossbar engine (:class:`cimsim.crossbar.Crossbar`).

``y = A x`` for any real ``A`` (m x n) and ``x`` (n,) or (n, k): ``A`` is scaled by ``s_A = max|A| / (2**(b-1) - 1)``
and rounded to ``b = spec.weight_bits`` signed integers, which the tile maps as it always does (signed mapping,
bit slices of ``spec.cell_bits``, row and column blocks); ``x`` is scaled per column by
``s_x = max|x| / (2**(a-1) - 1)`` and rounded to ``a = spec.input_bits`` signed integers streamed bit-serially;
``y = s_A s_x xb(x_int)``. With ideal cells and a lossless readout the integer product is exact, so the only
error is the rounding of ``A`` and ``x`` (relative ``2**-b`` and ``2**-a`` of their largest entries).

:class:`VmmArray` programs ``A`` once (as RePAST's VMM crossbars hold the matrix between refinement steps) and
takes integer inputs directly (:meth:`VmmArray.integer`), which is exact when they already are integers.

Cost from the tile's ledger (est. where marked): cell energy ``sum digit^2 G t_read V_step^2`` (the event
:data:`cimsim.events.CELL_READ_CONDUCTANCE_S`), one conversion per readout column and cycle at the readout's
energy, one DAC drive per non-zero digit and column block (:class:`cimsim.devices.DAC`, 1 bit), one
shift-and-add per conversion (:class:`cimsim.devices.peripherals.ShiftAdd`); time: one 100 ns read cycle per
input cycle and input vector (ISAAC's crossbar read cycle, Shafiee et al., ISCA 2016; all arrays in parallel).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from cimsim import events
from cimsim.crossbar import Crossbar
from cimsim.devices.converters import DAC, SarADC
from cimsim.devices.peripherals import ShiftAdd
from cimsim.devices.reram import ReRAM
from cimsim.errors import ConfigError
from cimsim.linalg.circuit import Cost
from cimsim.spec import CrossbarSpec

READ_CYCLE_S = 100e-9    # ISAAC's 100 ns crossbar read cycle (Shafiee et al., ISCA 2016)


def high_precision_spec(weight_bits: int = 24, input_bits: int = 16, rows: int = 128) -> CrossbarSpec:
    """The VMM crossbars of the refinement: ``weight_bits`` bit-sliced into 2-bit ReRAM cells (ISAAC's slicing),
    signed inputs streamed 1 bit per cycle, a 10-bit SAR ADC per column: lossless for 128 rows x 3 levels x digits in
    -1..1 (a column value spans [-384, 384]: 769 values < 2**10; ISAAC's unsigned design point, Shafiee et al.
    2016, needs 9 bits, 8 with its flipped encoding)."""
    return CrossbarSpec(rows=rows, cols=128, cell=ReRAM(), cell_bits=2, weight_bits=weight_bits,
                        input_bits=input_bits, dac_bits=1, signed="differential", input_signed=True,
                        readout=SarADC(bits=10))


def _as_matrix(A, what: str = "A") -> np.ndarray:
    A = np.asarray(A)
    if A.dtype.kind not in "biuf":
        raise ConfigError(f"{what} must be a real matrix, got an array of {A.dtype}")
    A = A.astype(np.float64)
    if A.ndim != 2 or min(A.shape) < 1:
        raise ConfigError(f"{what} must be a 2-D matrix, got shape {A.shape}")
    if not np.all(np.isfinite(A)):
        raise ConfigError(f"{what} holds NaN or infinite entries: give a finite matrix")
    return A


class VmmArray:
    """``A`` programmed into crossbar tiles at ``spec.weight_bits``; call it on real or integer vectors."""

    def __init__(self, A, spec: CrossbarSpec | None = None, seed: int = 0, name: str = "vmm"):
        A = _as_matrix(A)
        spec = high_precision_spec() if spec is None else spec
        if not isinstance(spec, CrossbarSpec):
            raise ConfigError(f"spec must be a cimsim.CrossbarSpec, got {type(spec).__name__}")
        if spec.signed == "unsigned":
            raise ConfigError("a real matrix needs a signed mapping: use signed='differential', 'offset' or 'twos'")
        self.spec = replace(spec, input_signed=True)
        self.m, self.n = A.shape
        qmax = (1 << (spec.weight_bits - 1)) - 1
        a_max = float(np.max(np.abs(A)))
        self.scale = a_max / qmax if a_max > 0 else 1.0
        self.A_int = np.rint(A / self.scale).astype(np.int64)
        self.xb = Crossbar(self.A_int, self.spec, seed=seed, name=name)

    @property
    def A_eff(self) -> np.ndarray:
        """The matrix the tiles hold (before device noise): ``s_A * round(A / s_A)``."""
        return self.A_int * self.scale

    def integer(self, x_int) -> tuple[np.ndarray, Cost]:
        """``A_int @ x_int`` for integer x_int (n,) or (n, k) within ``input_bits`` (exact with ideal devices and a
        lossless readout), in units of ``scale`` (multiply by :attr:`scale` for real units), and its cost."""
        x = np.asarray(x_int)
        X = x[:, None] if x.ndim == 1 else x
        before = self.xb.ledger.totals()
        y = self.xb(X.T).T
        cost = self._cost(before, X.shape[1])
        return (y[:, 0] if x.ndim == 1 else y), cost

    def _scaled_input(self, x) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim not in (1, 2) or x.shape[0] != self.n or not np.all(np.isfinite(x)):
            raise ConfigError(f"x must be a finite array of shape ({self.n},) or ({self.n}, k), got {x.shape}")
        X = x[:, None] if x.ndim == 1 else x
        qmax = (1 << (self.spec.input_bits - 1)) - 1
        x_max = np.max(np.abs(X), axis=0)
        sx = np.where(x_max > 0, x_max / qmax, 1.0)
        return x, np.rint(X / sx).astype(np.int64), sx

    def rounded_input(self, x) -> np.ndarray:
        """The input :meth:`__call__` streams for ``x``: each column rounded to ``input_bits`` signed integers
        times its scale (idempotent)."""
        x, xi, sx = self._scaled_input(x)
        xr = xi * sx
        return xr[:, 0] if x.ndim == 1 else xr

    def __call__(self, x) -> tuple[np.ndarray, Cost]:
        """``A x`` for real x (n,) or (n, k): each column scaled to ``input_bits`` signed integers."""
        x, xi, sx = self._scaled_input(x)
        y, cost = self.integer(xi)
        y = y * self.scale * sx
        return (y[:, 0] if x.ndim == 1 else y), cost

    def _cost(self, before: dict, vectors: int) -> Cost:
        after = self.xb.ledger.totals()
        d = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
        xb, spec = self.xb, self.spec
        v = xb.read_voltage_step_v()
        e_cells = d.get(events.CELL_READ_CONDUCTANCE_S, 0.0) * v * v
        conv = vectors * xb.conversions_per_mvm()
        e_adc = conv * float(spec.readout.energy_j)
        e_dac = d.get(events.DAC_DRIVES, 0.0) * DAC(bits=spec.dac_bits).energy_j
        e_sa = d.get(events.SHIFT_ADDS, 0.0) * ShiftAdd().energy_per_op_j
        parts = {"vmm_cells": e_cells, "vmm_adc": e_adc, "vmm_dac": e_dac, "vmm_shift_add": e_sa}
        return Cost(vectors * xb.cycles * READ_CYCLE_S, sum(parts.values()), parts)


def mvm(A, x, spec: CrossbarSpec | None = None, seed: int = 0, return_cost: bool = False):
    """``A x`` through the crossbar engine (see the module docstring); ``spec`` defaults to
    :func:`high_precision_spec` (24-bit matrix, 16-bit inputs)."""
    arr = VmmArray(A, spec, seed)
    y, cost = arr(x)
    return (y, cost) if return_cost else y
