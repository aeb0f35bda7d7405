"""The CPU engine's bit-serial integer path (CpuTile._bit_serial, cimsim.kernels_bits): where the fused path's numbers
are integer functions of integer column values (integer levels, no read noise, an ADC on an integer grid), the
column values come from popcounts of packed bit planes and the ADC runs in integers. It must give the bit-plane
path's outputs and events bit for bit, rounding and clipping included, and step aside where it cannot."""

from dataclasses import replace

import numpy as np
import pytest

from _crossbar_cases import _operands
from cimsim import Crossbar, CrossbarSpec
from cimsim import crossbar_cpu, events
from cimsim.crossbar_cpu import CpuTile
from cimsim.devices import ReRAM, SarADC
from cimsim import kernels_bits
from cimsim.kernels_bits import group_tables


def _both(monkeypatch, spec, W, x, seed=3, calibrate=None):
    """(outputs of two calls, ledger, calls the bit-serial path took) with the path on, then off."""
    out = []
    for bits in (True, False):
        monkeypatch.setattr(CpuTile, "BITS", bits)
        xb = Crossbar(W, spec, seed=seed, name="l")
        if calibrate is not None:
            xb.calibrate(calibrate)
        y1 = xb(x)
        y2 = xb(x[: len(x) // 2 + 1])            # a second call: the noise streams and ledger move on alike
        out.append((y1, y2, xb.ledger, xb._cpu.bit_serial_calls, xb._cpu.lossless_calls))
    return out


def _identical(a, b):
    assert a.dtype == b.dtype == np.float64 and a.shape == b.shape
    assert np.array_equal(a.view(np.int64), b.view(np.int64))     # bit for bit, the sign of zero included


CASES = {   # name: (spec, out, in, batch, calibration percentile or None)
    # ISAAC's shape at a 4-bit ADC: LSB > 1 rounds every conversion; 150 rows = a 2-word block and a 22-row one
    "isaac-4bit": (CrossbarSpec(rows=128, cols=128, cell_bits=2, weight_bits=16, input_bits=16, dac_bits=1,
                                signed="offset", adc_range="full", readout=SarADC(bits=4)), 12, 150, 21, None),
    # calibrated on half the values: many conversions clip; signed inputs (the sign bit a 1-bit cycle with a
    # negative place value after 3-bit digits), offset weights
    "clipping-signed-dac3": (CrossbarSpec(rows=32, cols=64, cell_bits=2, weight_bits=8, input_bits=8, dac_bits=3,
                                          signed="offset", input_signed=True, adc_range="calibrated",
                                          calibration_percentile=50.0, readout=SarADC(bits=3)), 9, 70, 23, True),
    "one-bit-cells-dac2": (CrossbarSpec(rows=16, cols=32, cell_bits=1, weight_bits=4, input_bits=6, dac_bits=2,
                                        signed="differential", adc_range="calibrated", calibration_percentile=90.0,
                                        readout=SarADC(bits=2)), 5, 40, 17, True),
    "three-bit-cells-twos": (CrossbarSpec(rows=64, cols=64, cell_bits=3, weight_bits=9, input_bits=12, dac_bits=1,
                                          signed="twos", adc_range="full", readout=SarADC(bits=5)), 7, 100, 13, None),
    "one-bit-adc": (CrossbarSpec(rows=128, cols=128, cell_bits=2, weight_bits=16, input_bits=16, dac_bits=1,
                                 signed="offset", adc_range="calibrated", readout=SarADC(bits=1)), 6, 60, 15, True),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bit_serial_path_equals_the_bit_planes(monkeypatch, name):
    spec, out, inp, batch, cal = CASES[name]
    rng = np.random.default_rng(17)
    W, x = _operands(rng, spec.signed, spec.weight_bits, spec.input_bits, spec.input_signed, out, inp, batch)
    (a1, a2, led_a, took, exact), (b1, b2, led_b, took_b, _) = _both(monkeypatch, spec, W, x,
                                                                       calibrate=x if cal else None)
    assert (took, took_b, exact) == (2, 0, 0)   # lossy cases; the switch turns the path off
    _identical(a1, b1)
    _identical(a2, b2)
    assert led_a == led_b


def test_zero_and_repeated_planes(monkeypatch):
    """8-bit pixels scaled by 257 into 16 bits (planes n and n + 8 equal), many all-zero rows and examples: the
    kernel's shortcuts (a zero plane's constant conversion, a repeated plane's values reused) change nothing, also
    where the ADC's code for 0 is not 0 (signed inputs: lo < 0) and clips."""
    base = CASES["isaac-4bit"][0]
    rng = np.random.default_rng(4)
    for spec in (base, replace(base, input_signed=True, input_bits=16, adc_range="calibrated",
                               calibration_percentile=60.0, readout=SarADC(bits=3))):
        W, _ = _operands(rng, spec.signed, spec.weight_bits, 16, False, 10, 150, 1)
        px = rng.integers(0, 256, size=(40, 150)) * (rng.random((40, 150)) < 0.4)
        px[:5] = 0                                   # whole examples of zeros
        px[5:9, :75] = 0                             # zero first row block
        x = px * 257 if not spec.input_signed else (px - 128) * 257 // 2
        (a1, a2, led_a, took, _), (b1, b2, led_b, _, _) = _both(monkeypatch, spec, W, x, calibrate=x)
        assert took == 2
        _identical(a1, b1)
        _identical(a2, b2)
        assert led_a == led_b
        if spec.input_signed:
            assert led_a.count(events.CLIPPED_CONVERSIONS) > 0


def test_tally_summed_over_the_same_shards_and_chunks(monkeypatch):
    """Chunks of 10 examples cut into shards of a few examples each, spread over threads: the energy's float sums are
    added shard by shard in the bit-plane path's order, so they are equal too."""
    monkeypatch.setattr(crossbar_cpu, "MIN_SHARD_ROWS", 32)
    monkeypatch.setattr(crossbar_cpu, "MIN_SHARD_MACS", 1)
    spec, out, inp, _, _ = CASES["isaac-4bit"]
    spec = replace(spec, batch_chunk=10)
    assert len(CpuTile._shards(0, 10, 1, spec.input_bits)) == 5
    rng = np.random.default_rng(2)
    W, x = _operands(rng, spec.signed, spec.weight_bits, spec.input_bits, spec.input_signed, out, inp, 47)
    (a1, a2, led_a, took, _), (b1, b2, led_b, _, _) = _both(monkeypatch, spec, W, x)
    assert took == 2
    _identical(a1, b1)
    _identical(a2, b2)
    assert led_a == led_b


@pytest.mark.parametrize("why,spec,takes_exact", [
    ("lossless: the exact product comes first", CrossbarSpec(rows=16, cols=32, cell_bits=2, weight_bits=8,
                                                             input_bits=8, dac_bits=1, signed="differential",
                                                             adc_range="full", readout=SarADC(bits=8)), True),
    ("read noise", CrossbarSpec(rows=16, cols=32, cell=ReRAM(read_sigma_frac=0.02), cell_bits=2, weight_bits=8,
                                input_bits=8, dac_bits=1, signed="differential", adc_range="full",
                                readout=SarADC(bits=4)), False),
    ("programmed levels off the integers", CrossbarSpec(rows=16, cols=32, cell=ReRAM(prog_sigma_frac=0.02),
                                                        cell_bits=2, weight_bits=8, input_bits=8, dac_bits=1,
                                                        signed="differential", adc_range="full",
                                                        readout=SarADC(bits=4)), False),
    ("inputs wider than the digit tables", CrossbarSpec(rows=16, cols=32, cell_bits=2, weight_bits=8, input_bits=20,
                                                        dac_bits=2, signed="differential", adc_range="full",
                                                        readout=SarADC(bits=4)), False),
])
def test_the_path_steps_aside(monkeypatch, why, spec, takes_exact):
    rng = np.random.default_rng(5)
    W, x = _operands(rng, spec.signed, spec.weight_bits, spec.input_bits, spec.input_signed, 9, 40, 23)
    (a1, a2, led_a, took, exact), (b1, b2, led_b, _, _) = _both(monkeypatch, spec, W, x)
    assert took == 0 and exact == (2 if takes_exact else 0), why
    _identical(a1, b1)
    _identical(a2, b2)
    assert led_a == led_b


def test_group_tables_equal_their_definition_entry_for_entry():
    """Every entry of every table (built by doubling) is the sum over the set bits of its row index, for signed
    levels whose entries need int8, int16 and int32 tables, ragged last groups, 8- and 4-row groups."""
    rng = np.random.default_rng(5)
    for top in (3, 1000, 20000):   # largest |entry| at most 8 x 3, 8 x 1000; about 8 x 10000 (int8, int16, int32)
        a = [rng.integers(-top, top + 1, size=(k, 6)).astype(np.float32) for k in (13, 8, 1)]
        for g in (8, 4):
            saved = kernels_bits.TABLE_BYTES_8
            kernels_bits.TABLE_BYTES_8 = saved if g == 8 else 0
            try:
                tables, got, _ = group_tables(a)
            finally:
                kernels_bits.TABLE_BYTES_8 = saved
            assert got == g
            bits = (np.arange(1 << g)[:, None] >> np.arange(g)[None, :]) & 1
            for ai, t in zip(a, tables):
                padded = np.zeros((t.shape[0] * g, 6), dtype=np.int64)
                padded[:ai.shape[0]] = ai
                want = np.einsum("mr,grj->gmj", bits, padded.reshape(-1, g, 6))
                assert t.dtype == (np.int8 if top == 3 else np.int16 if top == 1000 else np.int32)
                assert t.flags.c_contiguous and np.array_equal(t.astype(np.int64), want)


def test_group_tables_and_the_bit_transpose():
    """T[G, m, j] = sum_r bit_r(m) a[g G + r, j] (the last group padded with zero rows), 8-row groups, 4-row ones where
    8 would exceed the size bound, none for non-integer levels; the 8 x 8 bit transpose puts row r's bit c at bit r of
    byte c."""
    rng = np.random.default_rng(0)
    a = [rng.integers(0, 8, size=(130, 5)).astype(np.float32), rng.integers(0, 8, size=(7, 5)).astype(np.float32)]
    for g in (8, 4):
        if g == 4:
            kernels_bits.TABLE_BYTES_8, saved = 0, kernels_bits.TABLE_BYTES_8
        try:
            tables, got, plane = group_tables(a)
        finally:
            if g == 4:
                kernels_bits.TABLE_BYTES_8 = saved
        assert got == g and [t.dtype for t in tables] == [np.int8, np.int8]   # entries at most 8 x 7 < 2**7
        assert plane == np.int16                                               # column sums at most 130 x 7
        for ai, t in zip(a, tables):
            assert t.shape == (-(-ai.shape[0] // g), 1 << g, 5)
            for G in range(t.shape[0]):
                for m in (0, 1, (1 << g) - 1, 5, (1 << g) - 2):
                    rows = [G * g + r for r in range(g) if (m >> r) & 1 and G * g + r < ai.shape[0]]
                    assert np.array_equal(t[G, m], ai[rows].sum(axis=0).astype(np.int64))
    assert group_tables([a[0] + 0.5]) is None
    assert group_tables([a[0] * 3])[0][0].dtype == np.int16                    # 8 x 21 >= 2**7
    m = rng.integers(0, 256, size=(50, 8), dtype=np.uint64)
    words = (m << (np.arange(8, dtype=np.uint64) * np.uint64(8))).sum(axis=1, dtype=np.uint64)
    out = kernels_bits.transpose8(words)
    for i in range(50):
        for r in range(8):
            for c in range(8):
                assert (int(out[i]) >> (8 * c + r)) & 1 == (int(m[i, r]) >> c) & 1


def test_same_numbers_on_any_number_of_threads(monkeypatch):
    """The examples go to the threads in runs of whole shards: 1, 2 and 8 threads give the same outputs and ledger."""
    monkeypatch.setattr(crossbar_cpu, "MIN_SHARD_ROWS", 32)
    monkeypatch.setattr(crossbar_cpu, "MIN_SHARD_MACS", 1)
    spec, out, inp, _, _ = CASES["isaac-4bit"]
    rng = np.random.default_rng(8)
    W, x = _operands(rng, spec.signed, spec.weight_bits, spec.input_bits, spec.input_signed, out, inp, 61)
    got = []
    for n in ("1", "2", "8"):
        monkeypatch.setenv("CIMSIM_THREADS", n)
        xb = Crossbar(W, spec, seed=1, name="l")
        got.append((xb(x), xb.ledger, xb._cpu.bit_serial_calls))
    for y, led, calls in got[1:]:
        _identical(y, got[0][0])
        assert led == got[0][1] and calls == 1
