"""``cimsim bench --model``: the whole-network benchmark's bookkeeping (its speeds are measured, never asserted)."""

import json
import os

import pytest

from cimsim import bench_model
from cimsim.arch import get
from tests._cli_helpers import run_cli


def test_effective_macs_count_every_crossbar_product():
    """The engine's MAC count is the layers' K x N x cycles x slices per position, over every test image."""
    r = bench_model.run_model("mlp", "isaac", "digits", limit=40, batch_size=16, calibration=64)
    assert r["images"] == 40
    arch = get("isaac")
    cycles = -(-arch.input_bits // arch.crossbar_spec(input_signed=False).dac_bits)
    slices = -(-arch.weight_bits // arch.crossbar_spec(input_signed=False).cell_bits)
    from cimsim.workloads import zoo
    model = zoo.build_for("mlp", (1, 8, 8), 10)   # the shipped mlp-digits checkpoint's shape
    linears = [m for m in model.modules() if m.__class__.__name__ == "Linear"]
    expected = 40 * sum(m.in_features * m.out_features for m in linears) * cycles * slices
    assert r["engine"]["effective_macs"] == expected
    assert r["ratio"] == pytest.approx(r["engine"]["effective_macs_per_s"] / r["best_gemm"]["macs_per_s"])
    assert r["best_gemm"]["macs_per_s"] == max(r["gemm_macs_per_s"].values())
    ph = r["phases_s"]
    assert ph["map"] >= ph["prepare"] + ph["program"] + ph["calibrate"] - 1e-6
    assert ph["command"] >= ph["evaluate"] + ph["map"] - 1e-6
    assert r["images_per_s"] == pytest.approx(40 / ph["evaluate"])
    assert 0 < r["engine"]["share_of_evaluate"] <= 1
    assert 0 <= r["accuracy"] <= 1
    # ISAAC's defaults convert every column value losslessly: every call (3 layers x the warm-up and 3 batches)
    # takes the exact integer path, which the report says; a 4-bit ADC clips and rounds, so none does
    assert r["engine"]["lossless_calls"] == 3 * 4 and r["engine"]["bit_serial_calls"] == 0
    low = bench_model.run_model("mlp", "isaac", "digits", limit=40, batch_size=16, calibration=64, sets={"adc_bits": 4})
    # noiseless integer levels: the rounding, clipping 4-bit ADC takes the bit-serial integer path at every call
    assert low["engine"]["lossless_calls"] == 0 and low["engine"]["bit_serial_calls"] == 3 * 4
    noisy = bench_model.run_model("mlp", "isaac", "digits", limit=40, batch_size=16, calibration=64,
                                  sets={"adc_bits": 4, "cell.read_sigma_frac": 0.02})
    assert noisy["engine"]["lossless_calls"] == noisy["engine"]["bit_serial_calls"] == 0


def test_packed_layers_count_the_products_of_the_columns_they_keep():
    """SME's packed layers (no dense K x N grid): the count is each layer's used rows x used columns x input cycles
    per position (cimsim.packed.PackedTile.cell_macs_per_input), over every test image; it used to fail."""
    from cimsim.packed import PackedTile

    r = bench_model.run_model("mlp", "sme", "digits", limit=40, batch_size=16, calibration=64,
                              sets={"cell": "ideal"})
    assert r["images"] == 40 and 0 <= r["accuracy"] <= 1
    from cimsim import arch as arch_mod
    from cimsim.mappers.mapper import map_model
    from cimsim.networks import load_model_and_data

    spec = arch_mod.get("sme", cell="ideal")   # the same layout (it depends on the weights only)
    model, _, data, _ = load_model_and_data("mlp", "digits", None, arch=spec, overrides={"cell": "ideal"})
    mapped = map_model(model, spec, data.loader("train", batch_size=16, limit=16, shuffle=False), progress=False)
    per_image = sum(t.cell_macs_per_input() for layer in mapped.mapped_layers.values() for t in layer.crossbars)
    assert all(isinstance(t, PackedTile) for layer in mapped.mapped_layers.values() for t in layer.crossbars)
    assert r["engine"]["effective_macs"] == 40 * per_image   # one position per image in each of the mlp's layers
    tile = PackedTile.__new__(PackedTile)   # the count of a layout worked by hand: 2 groups
    tile.groups = [type("G", (), {"rows": [0, 1, 2], "outputs": [0, 1]})(),
                   type("G", (), {"rows": [3], "outputs": [4]})()]
    tile.crossbars = [type("X", (), {"cycles": 8})(), type("X", (), {"cycles": 8})()]
    assert tile.cell_macs_per_input() == 3 * 2 * 8 + 1 * 1 * 8


def test_cli_bench_model_json_and_refusals(capsys):
    code, out, _ = run_cli(capsys, "bench", "--model", "mlp", "--dataset", "digits", "--limit", "20", "--batch", "10",
                           "--calibration", "20", "--json")
    assert code == 0
    r = json.loads(out)
    assert r["model"] == "mlp" and r["arch"] == "isaac" and r["images"] == 20
    ph = r["phases_s"]          # the process's start before the benchmark (in a test: the test process's age)
    assert ph["startup"] is None or (ph["startup"] > 0 and ph["whole"] == pytest.approx(ph["startup"] + ph["command"]))
    code, out, err = run_cli(capsys, "bench", "--arch", "hcim")
    assert code == 2 and "--arch needs --model" in err and len(err.strip().splitlines()) == 1
    code, out, err = run_cli(capsys, "bench", "--model", "lenet9")
    assert code == 2 and "lenet9" in err and "Traceback" not in err


def test_cli_bench_sweep_file_appends_and_folds_every_point(capsys):
    """The sweep-file benchmark's bookkeeping (its times are measured, never asserted)."""
    code, out, _ = run_cli(capsys, "bench", "--sweep-file", "70", "--json")   # past FOLD_MIN: one fold midway
    assert code == 0
    r = json.loads(out)
    assert r["points"] == 70 and r["file_bytes"] > 70 * 10_000   # every point's report is in the folded file
    assert 0 < r["append_s_median"] <= r["append_s_max"] and r["total_s"] >= 70 * r["append_s_median"] * 0.5
    code, out, err = run_cli(capsys, "bench", "--sweep-file", "5", "--model", "mlp")
    assert code == 2 and "--model does not go with --sweep-file" in err
    code, out, err = run_cli(capsys, "bench", "--sweep-file", "1000000")
    assert code == 2 and "100,000" in err


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="the process's start time is read from Linux's /proc")
def test_process_age_counts_from_the_process_start():
    """``process_age_s`` in a fresh interpreter that sleeps 0.5 s first: at least that, and less than the whole
    child's run (its clock has a 1/CLK_TCK resolution, 10 ms on Linux)."""
    import subprocess
    import sys
    import time

    code = "import time; time.sleep(0.5); from cimsim.bench_model import process_age_s; print(process_age_s())"
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    wall = time.perf_counter() - t
    assert 0.5 - 0.02 <= float(out) <= wall + 0.02
