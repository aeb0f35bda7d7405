import json
import subprocess
import sys

import h5py
import pytest

import cimsim
from _cli_helpers import assert_one_line_user_error, run_cli

from cimsim.cli import main
from cimsim.cli.common import strict_json
from cimsim.report import Report
from cimsim.workloads import datasets, train

SUBCOMMANDS = ["run", "sweep", "compare", "archs", "devices", "bench", "train", "plot", "onchip", "linalg"]
FMNIST = datasets.SYSTEM_ROOT / "fashion-mnist"
needs_fmnist = pytest.mark.skipif(not FMNIST.is_dir(), reason="Fashion-MNIST not installed")




def test_console_script_help_lists_every_subcommand():
    res = subprocess.run([sys.executable, "-m", "cimsim", "--help"], capture_output=True, text=True, check=True)
    for sub in SUBCOMMANDS:
        assert f"    {sub} " in res.stdout


@pytest.mark.parametrize("sub", SUBCOMMANDS)
def test_every_subcommand_has_help(capsys, sub):
    with pytest.raises(SystemExit) as exc:
        main([sub, "--help"])
    assert exc.value.code == 0
    assert f"usage: cimsim {sub}" in capsys.readouterr().out


@pytest.mark.parametrize("argv,needles", [
    (["run", "--model", "alexnet", "--limit", "5"], ["unknown model 'alexnet'", "lenet5"]),
    (["run", "--dataset", "imagenet"], ["unknown dataset 'imagenet'", "fashion-mnist"]),
    (["run", "--arch", "tpu"], ["unknown architecture 'tpu'", "digital"]),
    (["run", "--adc-bits", "0"], ["--adc-bits", "positive integer"]),
    (["run", "--arch", "digital", "--adc-bits", "6"], ["digital has no ADC, so adc_bits does not apply"]),
    (["run", "--set", "adc_bits=40"], ["isaac: adc.bits = 40 bit is out of range", "[1, 16]"]),
    (["run", "--set", "cell.r_on_ohm=inf"], ["isaac: cell.r_on_ohm = inf Ohm is not a finite number: it must be "
                                             "finite and > 0"]),
    (["run", "--set", "cell.r_on_ohm=nan"], ["cell.r_on_ohm = nan Ohm is not a finite number"]),
    (["run", "--set", "cell.r_on_ohm=0"], ["isaac: cell.r_on_ohm = 0.0 Ohm is out of range: it must be > 0"]),
    (["run", "--set", "cell=quantum"], ["unknown device 'quantum'", "reram"]),
    (["run", "--device", "cuda"], ["--device cuda needs --backend torch"]),
    (["run", "--arch", "isaac", "--set", "table=x"], ["isaac has no parameter 'table'"]),
    (["run", "--limit", "0"], ["--limit", "positive integer"]),
    (["run", "--arch", "digital", "--set", "warp=9"], ["no parameter 'warp'", "mac_units"]),
    (["run", "--arch", "digital", "--set", "mac_units=many"], ["mac_units='many'"]),
    (["run", "--arch", "digital", "--set", "clock_hz=-1"], ["clock_hz = -1 1/s is out of range"]),
    (["run", "--checkpoint", "/nonexistent/model.pt"], ["/nonexistent/model.pt does not exist"]),
    (["run", "--model", "resnet20", "--dataset", "digits"],
     ["no trained checkpoint", "resnet20 does not take the 8x8 images of digits (mlp does): pass --model mlp"]),
    (["run", "--bogus"], ["unrecognized arguments: --bogus", "cimsim run --help"]),
    (["train", "--epochs", "x"], ["--epochs", "'x'"]),
    (["train", "--device", "tpu"], ["invalid choice: 'tpu'"]),
    (["train", "--model", "lenet5", "--dataset", "iris"], ["needs image inputs", "--model mlp"]),
    (["train", "--model", "mlp", "--dataset", "digits", "--init", "/nonexistent/a.pt"], ["/nonexistent/a.pt does not exist"]),
    (["train", "--model", "mlp", "--dataset", "digits", "--init", "workloads/checkpoints/lenet5-fashion-mnist.pt"],
     ["holds lenet5 on fashion-mnist, not mlp on digits", "same model and dataset"]),
    (["train", "--model", "mlp", "--dataset", "digits", "--optimizer", "kfac", "--init", "a.pt"],
     ["--init apply to the recipe's training"]),
    (["archs", "show", "nope"], ["unknown architecture 'nope'"]),
    (["plot", "/nonexistent.h5"], ["does not exist"]),
    (["run", "--out", "/nonexistent/dir/r.h5"], ["/nonexistent/dir", "--out"]),
    (["frobnicate"], ["invalid choice: 'frobnicate'"]),
])
def test_user_errors_exit_2_with_one_line(capsys, argv, needles):
    code, out, err = run_cli(capsys, *argv)
    assert_one_line_user_error(code, err, *needles)


def test_missing_dataset_names_where_it_looked(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("CIMSIM_DATA", raising=False)
    monkeypatch.setattr(datasets, "SYSTEM_ROOT", tmp_path / "none")
    code, out, err = run_cli(capsys, "run", "--dataset", "mnist", "--data-dir", str(tmp_path))
    assert_one_line_user_error(code, err, "mnist not found", str(tmp_path), "--data-dir", "CIMSIM_DATA")


def test_a_user_error_via_the_console_script_shows_no_traceback():
    res = subprocess.run([sys.executable, "-m", "cimsim", "run", "--model", "alexnet"], capture_output=True, text=True)
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr


@needs_fmnist
def test_run_digital_reports_the_shipped_checkpoint_accuracy(capsys):
    code, out, err = run_cli(capsys, "run", "--arch", "digital", "--model", "lenet5", "--dataset",
                             "fashion-mnist", "--json")
    assert code == 0
    rep = json.loads(out)
    for key in ("accuracy", "digital_accuracy", "energy_j", "latency_s", "throughput_inf_per_s", "area_m2",
                "layers", "components", "config"):
        assert key in rep
    _, meta = train.load_checkpoint(train.SHIPPED_DIR / "lenet5-fashion-mnist.pt")
    assert rep["accuracy"] == pytest.approx(meta["test_accuracy"], abs=1e-4)
    assert rep["digital_accuracy"] == rep["accuracy"]
    assert rep["n_examples"] == 10000
    assert sum(l["energy_j"] for l in rep["layers"]) == pytest.approx(rep["energy_j"], rel=1e-12)
    assert sum(rep["components"].values()) == pytest.approx(rep["energy_j"], rel=1e-12)
    assert sum(l["latency_s"] for l in rep["layers"]) == pytest.approx(rep["latency_s"], rel=1e-12)
    assert rep["throughput_inf_per_s"] == pytest.approx(1 / rep["latency_s"])
    assert {l["name"] for l in rep["layers"]} >= {"features.0", "classifier.5"}
    assert all({"name", "energy_j", "latency_s"} <= set(l) for l in rep["layers"])


@needs_fmnist
def test_run_out_writes_a_report_file_and_plot_draws_it(capsys, tmp_path):
    h5 = tmp_path / "r.h5"
    code, out, err = run_cli(capsys, "run", "--arch", "isaac", "--model", "lenet5", "--limit", "200", "--set",
                             "weight_bits=8", "--set", "input_bits=8", "--adc-bits", "7", "--out", str(h5), "--json")
    assert code == 0
    printed = json.loads(out)
    # an 8-bit LeNet-5 with a 7-bit ADC stays within 3 points of the float network on 200 examples
    assert abs(printed["accuracy"] - printed["digital_accuracy"]) <= 0.03
    assert printed["config"]["arch_params"]["adc.bits"] == 7 and printed["config"]["calibration_examples"] == 512
    assert printed["config"]["batch_size"] == 64    # the CPU default, recorded
    # the chip area is the architecture's at this operating point: a 7-bit ADC is smaller than ISAAC's 8-bit one
    area = cimsim.arch.get("isaac", weight_bits=8, input_bits=8, adc_bits=7).area_m2
    assert printed["components"]["adc"] > 0 and printed["area_m2"] == pytest.approx(area, rel=1e-12)
    assert printed["area_m2"] < 85.42472e-6
    back = Report.from_hdf5(h5)
    assert strict_json(back.to_dict()) == printed   # a layer without an error (not on crossbars): NaN, null in JSON
    errors = {r["name"]: r["rel_error"] for r in printed["layers"]}
    assert set(printed["config"]["mapped_layers"]) == {n for n, e in errors.items() if e is not None}
    assert all(0 <= errors[n] < 0.05 for n in printed["config"]["mapped_layers"]), errors   # 7-bit ADC: small
    with h5py.File(h5) as f:
        assert f.attrs["format"] == "cimsim.report"
        assert f["config"].attrs["model"] == "lenet5"
    png = tmp_path / "fig.png"
    code, out, err = run_cli(capsys, "plot", str(h5), "-o", str(png))
    assert code == 0
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_plot_refuses_a_file_that_is_not_a_report(capsys, tmp_path):
    bad = tmp_path / "x.h5"
    with h5py.File(bad, "w") as f:
        f.attrs["format"] = "something-else"
    code, out, err = run_cli(capsys, "plot", str(bad))
    assert_one_line_user_error(code, err, "no plottable cimsim results")


def test_run_table_output_on_synthetic_data(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("CIMSIM_HOME", str(tmp_path))
    code, out, err = run_cli(capsys, "train", "--model", "mlp", "--dataset", "synthetic", "--epochs", "2", "--json")
    assert code == 0
    meta = json.loads(out)
    assert meta["epochs"] == 2 and meta["dataset"] == "synthetic"
    assert (tmp_path / "checkpoints" / "mlp-synthetic.pt").is_file()
    code, out, err = run_cli(capsys, "run", "--arch", "digital", "--model", "mlp", "--dataset", "synthetic")
    assert code == 0
    assert "mlp on synthetic, architecture digital" in out
    assert f"{100 * meta['test_accuracy']:6.2f} %" in out
    assert "total" in out and "mac_array" in out


def test_archs_lists_and_shows(capsys):
    code, out, err = run_cli(capsys, "archs", "--json")
    listed = [a["name"] for a in json.loads(out)]
    assert code == 0 and listed[:3] == ["digital", "isaac", "hcim"]
    assert {"cascade", "neural-pim", "adcless-snn", "snn-hpadc", "sme"} <= set(listed)
    code, out, err = run_cli(capsys, "archs", "show", "digital", "--json")
    s = json.loads(out)
    for key in ("peak_ops_per_s", "power_w", "area_m2", "ce_gops_per_s_per_mm2", "pe_gops_per_w", "breakdown"):
        assert key in s
    assert s["peak_ops_per_s"] == 2 * 168 * 200e6
    code, out, err = run_cli(capsys, "archs", "show", "isaac")
    assert code == 0 and "  hierarchy         1 chip, 168 tiles, 2016 imas, 16128 crossbars, 8 weight slices, " \
        "16 input cycles, cycle 100 ns" in out.splitlines()


def test_a_bad_output_folder_fails_before_any_work(capsys, monkeypatch, tmp_path):
    import cimsim.mappers
    from cimsim.workloads import train as train_mod

    def boom(*a, **k):
        raise AssertionError("work started before the output path was checked")

    monkeypatch.setattr(cimsim.mappers, "evaluate", boom)
    monkeypatch.setattr(train_mod, "train", boom)
    code, out, err = run_cli(capsys, "run", "--out", str(tmp_path / "missing" / "r.h5"))
    assert_one_line_user_error(code, err, "does not exist")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, out, err = run_cli(capsys, "train", "--dataset", "synthetic", "--out", str(blocker / "sub") + "/")
    assert_one_line_user_error(code, err, "cannot create folder", "--out")


def test_devices_lists_every_model_with_units_and_sources(capsys):
    code, out, err = run_cli(capsys, "devices", "--json")
    assert code == 0

    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    rows = json.loads(out, parse_constant=refuse)   # strict JSON: no Infinity / NaN
    kinds = {r["kind"]: r for r in rows}
    for k in ("ideal", "reram", "mosfet", "domain-wall", "sar-adc", "flash-adc", "sense-amp", "ternary", "dac",
              "ideal-readout", "shift-add", "lif-neuron"):
        assert k in kinds, k
    assert {r["category"] for r in rows} == {"cell", "converter", "peripheral"}
    for r in rows:
        assert all(p["unit"] and p["source"] for p in r["params"]), r["kind"]


def test_devices_show_sar_adc_at_the_isaac_point(capsys):
    from cimsim.devices import SarADC

    code, out, err = run_cli(capsys, "devices", "show", "sar-adc", "--bits", "8", "--sample-rate", "1.28e9",
                             "--node", "32", "--json")
    assert code == 0
    d = json.loads(out)
    ref = SarADC(bits=8, sample_rate_hz=1.28e9, node_nm=32)
    assert d["energy_j"] == ref.energy_j and d["latency_s"] == ref.latency_s and d["area_m2"] == ref.area_m2
    assert 0.5 < d["energy_j"] / (16e-3 / 8 / 1.28e9) < 2.0
    code, out, err = run_cli(capsys, "devices", "show", "reram", "--set", "r_on_ohm=1e4")
    assert code == 0 and "r_on_ohm" in out and "10000.0" in out


@pytest.mark.parametrize("argv,needles", [
    (["devices", "show", "memristor"], ["unknown device 'memristor'", "sar-adc"]),
    (["devices", "show", "sar-adc", "--bits", "40"], ["SarADC.bits = 40", "[1, 16]"]),
    (["devices", "show", "reram", "--set", "colour=blue"], ["no parameter 'colour'"]),
    (["devices", "show", "reram", "--set", "on_off_ratio=1"], ["on_off_ratio"]),
    (["devices", "show"], ["needs a device kind"]),
    (["devices", "sar-adc"], ["'sar-adc' is not an action", "'cimsim devices show sar-adc'"]),
])
def test_devices_user_errors(capsys, argv, needles):
    code, out, err = run_cli(capsys, *argv)
    assert_one_line_user_error(code, err, *needles)


def test_bench_reports_the_standard_case(capsys):
    """Keys and internal consistency only: speed is measured by the benchmark itself, never asserted."""
    code, out, err = run_cli(capsys, "bench", "--json", "--batch", "16", "--repeat", "1")
    assert code == 0
    r = json.loads(out)
    for key in ("effective_macs_per_s", "gemm_macs_per_s", "ratio", "peak_memory_bytes", "backend", "device", "config"):
        assert key in r
    c = r["config"]
    assert (c["in_features"], c["out_features"], c["cycles"], c["slices"], c["arrays"]) == (1152, 128, 8, 4, 36)
    assert r["effective_macs_per_s"] == pytest.approx(16 * 1152 * 128 * 8 * 4 / r["wall_s"])
    assert r["ratio"] == pytest.approx(r["effective_macs_per_s"] / r["gemm_macs_per_s"])
    # the device's dense reference: the best of the dtypes measured, and the engine's ratio to it
    rates = r["device_gemm"]["macs_per_s"]
    assert "float32" in rates and "int8" not in rates and r["device_gemm"]["shape"] == [4096, 1024, 1024]
    assert r["best_gemm"]["macs_per_s"] == max(rates.values()) == rates[r["best_gemm"]["dtype"]]
    assert r["ratio_best"] == pytest.approx(r["effective_macs_per_s"] / r["best_gemm"]["macs_per_s"])
    assert r["host_call"] is None   # on the CPU the timed call is the numpy call
    from cimsim import kernels_amx
    assert r["product"] == ("amx" if kernels_amx.wanted() else "tables")   # noisy levels on the exact grid
    code, out, err = run_cli(capsys, "bench", "--json", "--batch", "16", "--repeat", "1", "--backend", "torch")
    assert code == 0 and json.loads(out)["backend"] == "torch" and json.loads(out)["product"] is None


def test_bench_on_cuda_times_the_call_a_network_makes(capsys):
    """On a GPU the standard case times the device-resident call (inputs on the GPU, as a mapped network calls the
    engine) and reports the numpy call beside it; the device's reference includes its tensor-core dtypes."""
    import torch
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    code, out, err = run_cli(capsys, "bench", "--json", "--batch", "64", "--repeat", "2", "--backend", "torch",
                             "--device", "cuda")
    assert code == 0
    r = json.loads(out)
    assert r["effective_macs_per_s"] == pytest.approx(64 * 1152 * 128 * 8 * 4 / r["wall_s"])
    h = r["host_call"]
    assert h["effective_macs_per_s"] == pytest.approx(64 * 1152 * 128 * 8 * 4 / h["wall_s"])
    assert {"float32", "tf32", "bf16"} <= set(r["device_gemm"]["macs_per_s"])
    assert r["ratio_best"] == pytest.approx(r["effective_macs_per_s"] / r["best_gemm"]["macs_per_s"])
    code, out, err = run_cli(capsys, "bench", "--batch", "64", "--repeat", "1", "--backend", "torch", "--device", "cuda")
    assert code == 0 and "inputs and outputs on the GPU" in out and "from numpy arrays" in out and "tf32" in out


def test_bench_on_cuda_without_a_gpu_says_so(capsys):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    for model in ((), ("--model", "lenet5")):   # the whole-network bench too (it measured a GEMM there first)
        code, out, err = run_cli(capsys, "bench", "--backend", "torch", "--device", "cuda", *model)
        assert_one_line_user_error(code, err, "no CUDA GPU")


def _raiser(exc):
    def f(*a, **k):
        raise exc
    return f


def test_running_out_of_memory_is_one_line_naming_a_smaller_batch(capsys, monkeypatch):
    """An allocator's refusal while fine-tuning or training: one line, exit 2, the fix (half the batch) named."""
    import torch

    from cimsim import networks
    from cimsim.mappers import psq_finetune, snn_qat

    monkeypatch.setattr(networks, "load_model_and_data", lambda *a, **k: (None, {}, None, None))
    cpu = RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
                       "you tried to allocate 6100000000 bytes. Error code 12 (Cannot allocate memory)")
    monkeypatch.setattr(snn_qat, "finetune", _raiser(cpu))
    code, _, err = run_cli(capsys, "finetune", "--arch", "adcless-snn", "--model", "snn_dvsnet", "--dataset",
                           "gesture-synth", "--batch-size", "16", "--limit", "64")
    assert_one_line_user_error(code, err, "cimsim finetune: error: out of host memory (an allocation of 6.10 GB was "
                               "refused) at batch size 16", "pass a smaller --batch-size, e.g. --batch-size 8")
    monkeypatch.setattr(psq_finetune, "finetune", _raiser(MemoryError()))
    code, _, err = run_cli(capsys, "finetune", "--arch", "hcim", "--model", "lenet5", "--dataset", "fashion-mnist")
    default = psq_finetune.FinetuneRecipe().batch_size                  # no --batch-size: the recipe's
    assert_one_line_user_error(code, err, f"out of host memory at batch size {default}",
                               f"--batch-size {default // 2}")
    gpu = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total capacity of "
                                 "139.81 GiB of which 3.12 GiB is free.\nIncluding non-PyTorch memory, ...")
    monkeypatch.setattr(train, "train", _raiser(gpu))
    code, _, err = run_cli(capsys, "train", "--model", "lenet5", "--dataset", "synthetic")
    default = train.recipe_for("lenet5", "synthetic").batch_size
    assert_one_line_user_error(code, err, "cimsim train: error: out of GPU memory (an allocation of 20.00 GiB was "
                               f"refused) at batch size {default}", f"--batch-size {default // 2}")
    code, _, err = run_cli(capsys, "train", "--model", "lenet5", "--dataset", "synthetic", "--batch-size", "1")
    assert_one_line_user_error(code, err, "at batch size 1: the network does not fit")
    monkeypatch.setattr(train, "train", _raiser(RuntimeError("shape mismatch")))   # a bug keeps its traceback
    with pytest.raises(RuntimeError, match="shape mismatch"):
        main(["train", "--model", "lenet5", "--dataset", "synthetic"])


def test_a_renamed_parameter_names_its_new_name(capsys):
    code, _, err = run_cli(capsys, "run", "--arch", "cascade", "--set", "adcs_per_array=7")
    assert code == 2
    assert err.strip() == ("cimsim run: error: cascade: parameter 'adcs_per_array' was renamed to 'adcs_per_block'; "
                           "set adcs_per_block instead (see 'cimsim archs show cascade')")
    with pytest.raises(cimsim.ConfigError, match="^cascade: parameter 'adcs_per_array' was renamed to 'adcs_per_block'"):
        cimsim.arch.get("cascade", adcs_per_array=7)
    assert cimsim.arch.get("cascade", adcs_per_block=5).adcs_per_block == 5     # the new name works
    # a sweep or comparison over several architectures says it too, once no architecture has the old name
    code, _, err = run_cli(capsys, "compare", "--arch", "isaac,cascade", "--set", "adcs_per_array=7")
    assert code == 2
    assert err.strip() == ("cimsim compare: error: --set adcs_per_array: none of isaac, cascade has this parameter "
                           "(cascade: renamed to adcs_per_block; see 'cimsim archs show isaac')")


def test_every_renamed_parameter_points_at_a_parameter_that_exists():
    renames = {(n, old, new) for n in cimsim.arch.names() for old, new in cimsim.arch.get(n).renamed.items()}
    assert ("cascade", "adcs_per_array", "adcs_per_block") in renames
    for n, old, new in renames:
        a = cimsim.arch.get(n)
        assert a.has_param(new) and not a.has_param(old), (n, old, new)


def _typo(path: str) -> str:
    """``path`` with the two letters before its last one swapped (``weight_bits`` -> ``weight_bist``), or its last
    letter replaced where those two are equal."""
    return path[:-3] + path[-2] + path[-3] + path[-1] if path[-2] != path[-3] else path[:-1] + "q"


@pytest.mark.parametrize("name", cimsim.arch.names())
def test_an_unknown_parameter_suggests_the_closest_name_for_every_architecture(capsys, name):
    arch = cimsim.arch.get(name)
    own = [p.path for p in arch.parameters() if "." not in p.path and p.unit != "kind"]
    path = max(own, key=len)            # the longest scalar name: its typo is closer to it than to any other
    typo = _typo(path)
    assert not arch.has_param(typo)
    code, _, err = run_cli(capsys, "run", "--arch", name, "--set", f"{typo}=1")
    assert_one_line_user_error(code, err, f"{name} has no parameter {typo!r} (did you mean {path!r}?); its parameters "
                                          f"are ")
    assert err.startswith("cimsim run: error: ")
    # a component's parameter: the closest of that component's, named by its path
    comp = next((p.path for p in arch.parameters() if "." in p.path and p.derived_from is None), None)
    if comp is not None:
        head, tail = comp.split(".", 1)
        bad = f"{head}.{_typo(tail)}"
        code, _, err = run_cli(capsys, "run", "--arch", name, "--set", f"{bad}=1")
        assert_one_line_user_error(code, err, f"{name}: {head} (", f"has no parameter {_typo(tail)!r} (did you mean "
                                              f"{comp!r}?); its parameters are ")


def test_a_sweep_over_several_architectures_names_the_closest_parameter(capsys, tmp_path):
    code, _, err = run_cli(capsys, "sweep", "--arch", "isaac,cascade", "--grid", "adcs_per_blok=5,7",
                           "--out", tmp_path / "s.h5")
    assert code == 2
    assert err.strip() == ("cimsim sweep: error: no architecture in the sweep (isaac, cascade) has parameter "
                           "adcs_per_blok (cascade: did you mean 'adcs_per_block'?); see 'cimsim archs show ARCH'")
    assert not (tmp_path / "s.h5").exists()
