"""The CPU engine's lossless integer path (CpuTile._lossless): where every conversion provably returns its column
value (integer levels, no read noise, an ADC with integer lo, a power-of-two LSB <= 1 and codes covering every
possible value), a call is the integer product x @ W with its digits counted from tables. It must give the bit-plane
path's outputs and events bit for bit, and step aside wherever a conversion could round or clip."""

from dataclasses import replace

import numpy as np
import pytest

from _crossbar_cases import _matmul, _operands
from cimsim import Crossbar, CrossbarSpec
from cimsim import crossbar_cpu
from cimsim.crossbar_cpu import CpuTile
from cimsim.devices import ReRAM, SarADC
from cimsim.encoding import plane_layout
from cimsim.kernels import digit_tables, digit_tally, stack_digits
from cimsim.readouts import ConversionScope


def _both(monkeypatch, spec, W, x, seed=3, calibrate=None):
    """(outputs of two calls, ledger, calls the exact path computed) with the exact path on, then off."""
    out = []
    forward_exact = CpuTile._forward_exact
    for exact in (True, False):
        calls = []
        monkeypatch.setattr(CpuTile, "EXACT", exact)
        monkeypatch.setattr(CpuTile, "_forward_exact", lambda self, *a: calls.append(1) or forward_exact(self, *a))
        xb = Crossbar(W, spec, seed=seed, name="l")
        if calibrate is not None:
            xb.calibrate(calibrate)
        y1 = xb(x)
        y2 = xb(x[: len(x) // 2 + 1])            # a second call: the noise streams and ledger move on alike
        out.append((y1, y2, xb.ledger, len(calls)))
    return out


def _identical(a, b):
    assert a.dtype == b.dtype == np.float64 and a.shape == b.shape
    assert np.array_equal(a.view(np.int64), b.view(np.int64))     # bit for bit, the sign of zero included


CASES = {   # name: (spec, out, in, batch)
    "isaac-like": (CrossbarSpec(rows=16, cols=32, cell_bits=2, weight_bits=16, input_bits=16, dac_bits=1,
                                signed="differential", adc_range="full", readout=SarADC(bits=8)), 20, 40, 37),
    "signed-dac3-offset": (CrossbarSpec(rows=16, cols=32, cell_bits=2, weight_bits=8, input_bits=8, dac_bits=3,
                                        signed="offset", input_signed=True, adc_range="full",
                                        readout=SarADC(bits=10)), 12, 35, 29),
    "one-bit-cells": (CrossbarSpec(rows=8, cols=16, cell_bits=1, weight_bits=4, input_bits=6, dac_bits=1,
                              signed="differential", adc_range="full", readout=SarADC(bits=8)), 5, 19, 11),
    "wide-inputs": (CrossbarSpec(rows=16, cols=32, cell_bits=2, weight_bits=8, input_bits=20, dac_bits=2,
                                 signed="differential", adc_range="full", readout=SarADC(bits=8)), 6, 20, 9),
}


@pytest.mark.parametrize("name", list(CASES))
def test_lossless_path_equals_the_bit_planes(monkeypatch, name):
    spec, out, inp, batch = CASES[name]
    rng = np.random.default_rng(11)
    W, x = _operands(rng, spec.signed, spec.weight_bits, spec.input_bits, spec.input_signed, out, inp, batch)
    (a1, a2, led_a, took), (b1, b2, led_b, took_b) = _both(monkeypatch, spec, W, x)
    assert took == 2 and took_b == 0           # these cases are lossless; the switch turns the path off
    _identical(a1, b1)
    _identical(a2, b2)
    assert led_a == led_b
    assert np.array_equal(a1, _matmul(x, W))   # and both are the exact product


@pytest.mark.parametrize("threads", ["1", "3", "8"])
def test_tally_summed_over_the_same_shards_and_chunks(monkeypatch, threads):
    """Chunks of 10 examples cut into shards of a few examples each (the least work lowered): the energy's float
    sums (conductance-seconds) are added shard by shard in the bit-plane path's order, so they are equal too; and
    the exact path's runs of shards over 1, 3 or 8 threads change nothing."""
    monkeypatch.setenv("CIMSIM_THREADS", threads)
    monkeypatch.setattr(crossbar_cpu, "MIN_SHARD_ROWS", 32)
    monkeypatch.setattr(crossbar_cpu, "MIN_SHARD_MACS", 1)
    spec, out, inp, _ = CASES["isaac-like"]
    spec = replace(spec, batch_chunk=10)
    assert len(CpuTile._shards(0, 10, 1, spec.input_bits)) == 5
    rng = np.random.default_rng(2)
    W, x = _operands(rng, spec.signed, spec.weight_bits, spec.input_bits, spec.input_signed, out, inp, 47)
    (a1, a2, led_a, took), (b1, b2, led_b, took_b) = _both(monkeypatch, spec, W, x)
    assert took == 2 and took_b == 0
    _identical(a1, b1)
    _identical(a2, b2)
    assert led_a == led_b


@pytest.mark.parametrize("why,spec", [
    ("rounds: LSB 2", CrossbarSpec(rows=64, cols=32, cell_bits=2, weight_bits=8, input_bits=8, dac_bits=1,
                                   signed="differential", adc_range="full", readout=SarADC(bits=6))),
    ("clips: calibrated range", CrossbarSpec(rows=64, cols=32, cell_bits=2, weight_bits=8, input_bits=8, dac_bits=1,
                                             signed="differential", adc_range="calibrated",
                                             calibration_percentile=50.0, readout=SarADC(bits=4))),
    ("read noise", CrossbarSpec(rows=16, cols=32, cell=ReRAM(read_sigma_frac=0.02), cell_bits=2, weight_bits=8,
                                input_bits=8, dac_bits=1, signed="differential", adc_range="full",
                                readout=SarADC(bits=8))),
    ("programmed levels off the integers", CrossbarSpec(rows=16, cols=32, cell=ReRAM(prog_sigma_frac=0.02),
                                                        cell_bits=2, weight_bits=8, input_bits=8, dac_bits=1,
                                                        signed="differential", adc_range="full",
                                                        readout=SarADC(bits=8))),
    ("analog sum of two cycles", CrossbarSpec(rows=16, cols=32, cell_bits=2, weight_bits=8, input_bits=8, dac_bits=1,
                                              signed="differential", adc_range="full", readout=SarADC(bits=10),
                                              conversion=ConversionScope(2, "each"))),
])
def test_the_path_steps_aside_where_a_conversion_could_change_a_value(monkeypatch, why, spec):
    rng = np.random.default_rng(5)
    W, x = _operands(rng, spec.signed, spec.weight_bits, spec.input_bits, spec.input_signed, 9, 70, 23)
    (a1, a2, led_a, took), (b1, b2, led_b, _) = _both(monkeypatch, spec, W, x, calibrate=x)
    assert took == 0, why
    _identical(a1, b1)
    _identical(a2, b2)
    assert led_a == led_b


@pytest.mark.parametrize("bits,dac,signed", [(16, 1, False), (9, 1, True), (8, 3, True), (7, 2, True), (5, 5, False)])
def test_digit_tables_count_what_stack_digits_counts(bits, dac, signed):
    """Per shard and row block the same non-zero count and per-row digit**2 sums as stack_digits, and the inputs
    back as signed numbers."""
    rng = np.random.default_rng(bits * 10 + dac)
    u = rng.integers(0, 1 << bits, size=(13, 21))
    u[0, :] = (1 << bits) - 1
    u[1, :] = 0
    shifts, widths = plane_layout(bits, dac, signed)
    blocks = [(0, 8), (8, 21)]
    edges = [0, 2, 2, 11, 13]                       # shards 0..2, an empty one, 2..11, 11..13
    nz, sq, xf = digit_tally(u, edges, blocks, digit_tables(bits, dac, signed), (1 << bits) if signed else 0)
    for j in range(len(edges) - 1):
        for i, (k0, k1) in enumerate(blocks):
            b0, b1 = edges[j], edges[j + 1]
            out = np.empty((len(shifts) * (b1 - b0), k1 - k0), dtype=np.float64)
            sq_ref = np.zeros(k1 - k0, dtype=np.int64)
            _, nz_ref = stack_digits(u, b0, b1, k0, k1, shifts, widths, out, None, sq_ref)
            assert nz[i, j] == nz_ref
            assert np.array_equal(sq[j, k0:k1], sq_ref)
    x = np.where(u >= 1 << (bits - 1), u - (1 << bits), u) if signed else u
    assert xf.dtype == np.float64 and np.array_equal(xf, x)
    nz2, sq2, none = digit_tally(u, edges, blocks, digit_tables(bits, dac, signed), (1 << bits) if signed else 0,
                                 numbers=False)   # the counts alone (a packed tile's lossless groups)
    assert none is None and np.array_equal(nz2, nz) and np.array_equal(sq2, sq)


def test_every_cpu_path_counts_the_same_conductance(monkeypatch):
    """The lossless path, the bit-serial path and the fused bit-plane path (tiles or tables where they run, BLAS
    where neither does) sum the reads' conductance-seconds alike (kernels_shares.row_conductance, shard by shard in
    order): the same ledger to the last bit over a batch of several chunks of several shards, with a ReRAM cell's
    conductances."""
    monkeypatch.setattr(crossbar_cpu, "MIN_SHARD_ROWS", 32)
    monkeypatch.setattr(crossbar_cpu, "MIN_SHARD_MACS", 1)
    spec = CrossbarSpec(rows=128, cols=128, cell_bits=2, weight_bits=16, input_bits=16, dac_bits=1, signed="offset",
                        adc_range="full", readout=SarADC(bits=9), batch_chunk=10,
                        cell=ReRAM(prog_sigma_frac=0.0, read_sigma_frac=0.0))   # its conductances: not round numbers
    rng = np.random.default_rng(5)
    W, x = _operands(rng, spec.signed, spec.weight_bits, spec.input_bits, spec.input_signed, 20, 300, 47)
    ledgers, paths = [], []
    for exact, bits, tables in ((True, True, True), (False, True, True), (False, False, True), (False, False, False)):
        monkeypatch.setattr(CpuTile, "EXACT", exact)
        monkeypatch.setattr(CpuTile, "BITS", bits)
        monkeypatch.setattr(CpuTile, "TABLES", tables)
        xb = Crossbar(W, spec, seed=3, name="l")
        xb(x)
        ledgers.append(xb.ledger.to_dict())
        paths.append((xb._cpu.lossless_calls, xb._cpu.bit_serial_calls, xb._cpu.last_product))
    assert paths[0][0] == 1 and paths[1][:2] == (0, 1) and paths[2][:2] == paths[3][:2] == (0, 0)
    assert paths[3][2] is None                                       # BLAS
    assert all(led == ledgers[0] for led in ledgers[1:])
