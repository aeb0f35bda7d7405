"""Odd layers, bad Python API calls and sizes set by the user (issue 14, defects 6, 9 and 10): a named warning
and a digital fallback for layers the mapper cannot place, one ConfigError line for bad calls, bounded sizes."""

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import cimsim
from _cli_helpers import assert_one_line_user_error, run_cli
from cimsim import Crossbar, CrossbarSpec
from cimsim.errors import ConfigError
from cimsim.mappers.mapper import KeptDigitalWarning

ROOT = Path(__file__).resolve().parent.parent


class SqueezeExcite(nn.Module):
    def __init__(self, c, r=4):
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(c, c // r, 1), nn.Conv2d(c // r, c, 1)

    def forward(self, x):
        s = F_silu(self.fc1(nn.functional.adaptive_avg_pool2d(x, 1)))
        return x * torch.sigmoid(self.fc2(s))


def F_silu(x):
    return nn.functional.silu(x)


class MBConv(nn.Module):
    """EfficientNet's block (Tan and Le 2019): expand 1x1, depthwise 3x3, squeeze-and-excitation, project 1x1,
    SiLU, and drop-connect on the residual in training."""

    def __init__(self, cin, cout, stride=1, expand=4, drop=0.2):
        super().__init__()
        mid = cin * expand
        self.expand = nn.Sequential(nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.SiLU())
        self.dw = nn.Sequential(nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), nn.BatchNorm2d(mid),
                                nn.SiLU())
        self.se = SqueezeExcite(mid)
        self.project = nn.Sequential(nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.residual, self.drop = stride == 1 and cin == cout, drop

    def forward(self, x):
        y = self.project(self.se(self.dw(self.expand(x))))
        if not self.residual:
            return y
        if self.training:
            y = y * (torch.rand(x.shape[0], 1, 1, 1) >= self.drop).float() / (1 - self.drop)
        return x + y


def efficientnet_style():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.SiLU(), MBConv(8, 8),
                         MBConv(8, 16, stride=2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2),
                         nn.Linear(16, 10)).eval()


def _ideal_isaac():
    """Ideal cells and an ADC wide enough for the worst-case column sum (3 * 128 rows -> 9 bits): lossless."""
    return cimsim.arch.get("isaac", cell="ideal", adc_bits=9, adc_range="full", weight_bits=8, input_bits=8)


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_an_efficientnet_style_network_maps_on_both_backends(backend):
    model = efficientnet_style()
    x = torch.rand(6, 1, 12, 12)
    mapped = cimsim.map(model, _ideal_isaac(), calibration=x, backend=backend, progress=False)
    assert not mapped.kept_digital
    names = {n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    assert set(mapped.mapped_layers) == names   # depthwise and SE convolutions included
    mapped.set_mode("digital")
    exact = mapped(x)
    mapped.set_mode("analog")
    assert torch.equal(mapped(x), exact)   # ideal cells, 16-bit ADC: the integer result, bit for bit


class Attention(nn.Module):
    def __init__(self, transformer: bool, **attention):
        super().__init__()
        self.embed = nn.Linear(16, 32)
        self.block = (nn.TransformerEncoderLayer(32, 4, 64, batch_first=True) if transformer
                      else nn.MultiheadAttention(32, 4, batch_first=True, **attention))
        self.out = nn.Linear(32, 10)

    def forward(self, x):
        h = self.embed(x.view(x.shape[0], 4, 16))
        h = self.block(h) if isinstance(self.block, nn.TransformerEncoderLayer) else self.block(h, h, h)[0]
        return self.out(h.mean(1))


@pytest.mark.parametrize("transformer", [False, True])
@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_attention_projections_are_mapped_and_exact_on_ideal_devices(transformer, backend):
    torch.manual_seed(0)
    model = Attention(transformer).eval()
    x = torch.rand(5, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", KeptDigitalWarning)
        mapped = cimsim.map(model, _ideal_isaac(), calibration=x, backend=backend, progress=False)
    attn = "block.self_attn" if transformer else "block"
    want = {"embed", "out"} | {f"{attn}.{p}_proj" for p in ("q", "k", "v", "out")}
    assert set(mapped.mapped_layers) == want | ({"block.linear1", "block.linear2"} if transformer else set())
    assert not mapped.kept_digital and not mapped.calibration_info["uncosted_layers"]
    mapped.set_mode("digital")
    exact = mapped(x)
    mapped.set_mode("analog")
    assert torch.equal(mapped(x), exact)   # ideal cells, 16-bit ADC: the integer result, bit for bit
    with torch.no_grad():   # 8-bit weights and inputs: within 2 % of the float network's largest output (measured
        # 1.3 % for the attention, 1.3 % for the encoder layer; 0.04 % and 0.1 % at 16 bits)
        torch.testing.assert_close(exact, model(x), rtol=0, atol=0.02 * float(model(x).abs().max()))


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_attention_left_packed_is_named_in_one_warning_and_kept_digital(backend):
    torch.manual_seed(0)
    model = Attention(False, add_bias_kv=True).eval()
    x = torch.rand(5, 64)
    with pytest.warns(KeptDigitalWarning, match="kept digital") as rec:
        mapped = cimsim.map(model, _ideal_isaac(), calibration=x, backend=backend, progress=False)
    assert len([w for w in rec if issubclass(w.category, KeptDigitalWarning)]) == 1
    assert "add_bias_kv=True" in mapped.kept_digital["block"]
    assert "block.out_proj" in mapped.kept_digital and set(mapped.mapped_layers) == {"embed", "out"}
    report = mapped.evaluate([(x, torch.zeros(5, dtype=torch.long))], progress=False)
    assert report.accuracy == report.digital_accuracy   # ideal devices: the same decisions


def test_nan_weights_are_refused_naming_the_layer():
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    with torch.no_grad():
        model[2].weight[1, 3] = float("nan")
    for arch in ("isaac", "hcim"):
        with pytest.raises(ConfigError, match=r"layer 2: 1 of 32 weight values are NaN or infinite"):
            cimsim.map(model, cimsim.arch.get(arch), calibration=torch.rand(4, 8), progress=False)


def test_evaluate_leaves_the_callers_model_in_its_mode():
    model = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5), nn.ReLU(), nn.Linear(8, 4)).train()
    mapped = cimsim.map(model, cimsim.arch.get("isaac"), calibration=torch.rand(4, 8), progress=False)
    mapped.evaluate([(torch.rand(3, 8), torch.zeros(3, dtype=torch.long))], progress=False)
    assert model.training and all(m.training for m in model.modules())


@pytest.mark.parametrize("call,needle", [
    (lambda: Crossbar(np.full((2, 3), object()), CrossbarSpec()), "array of object"),
    (lambda: Crossbar(np.ones((2, 3)) + 1j, CrossbarSpec()), "array of complex128"),
    (lambda: Crossbar(np.ones((2, 3), dtype=int), CrossbarSpec())(np.ones((1, 3)) + 1j), "array of complex128"),
    (lambda: Crossbar(np.ones((2, 3), dtype=int), CrossbarSpec(), seed="x"), "seed must be a non-negative"),
    (lambda: Crossbar(np.ones((2, 3), dtype=int), CrossbarSpec(), seed=-1), "seed must be a non-negative"),
    (lambda: Crossbar(np.ones((2, 3), dtype=int), CrossbarSpec(), seed=1.5), "seed must be a non-negative"),
    (lambda: CrossbarSpec(adc_range=float("inf")), "adc_range = inf"),
    (lambda: CrossbarSpec(adc_range=(0.0, float("inf"))), "adc_range"),
    (lambda: Crossbar(np.ones((2, 3), dtype=int), CrossbarSpec()).calibrate(np.zeros((0, 3), dtype=int)), "empty"),
    (lambda: cimsim.map(nn.Linear(8, 4), cimsim.arch.get("isaac"), calibration=torch.zeros(0, 8)),
     "needs calibration data"),
    (lambda: cimsim.map(nn.Linear(8, 4), cimsim.arch.get("isaac"), calibration=torch.zeros(2, 5)),
     "fails on a calibration batch of shape (2, 5)"),
    (lambda: cimsim.map(nn.Linear(8, 4), cimsim.arch.get("isaac"), calibration=torch.zeros(2, 8) + 1j),
     "real tensors"),
    (lambda: cimsim.map(nn.Linear(8, 4), cimsim.arch.get("isaac"), calibration=[("x", 1)]), "real tensors"),
    (lambda: cimsim.map(nn.Linear(8, 4), cimsim.arch.get("isaac"), calibration=torch.rand(2, 8), seed=-3),
     "seed must be a non-negative"),
])
def test_bad_python_api_calls_are_one_config_error(call, needle):
    with pytest.raises(ConfigError) as exc:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            call()
    assert needle in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize("argv,needle", [
    (["run", "--batch-size", str(2**70)], "[1, 65,536]"),
    (["sweep", "--out", "x.h5", "--batch-size", "100000"], "[1, 65,536]"),
    (["bench", "--batch", str(10**12)], "[1, 65,536]"),
    (["run", "--calibration", "1000000000"], "[1, 10,000]"),
    (["train", "--batch-size", "9223372036854775808"], "[1, 65,536]"),
    (["run", "--set", "rows=100000"], "rows = 100000 is out of range"),
    (["run", "--set", "rows=1e9"], "out of range"),
    (["run", "--set", "weight_bits=64"], "weight_bits = 64 bit is out of range"),
    (["run", "--set", "input_bits=64"], "input_bits = 64 bit is out of range"),
    (["run", "--set", "name=x"], "has no parameter 'name'"),
    (["finetune", "--device", "cuda"], "cuda"),
])
def test_sizes_and_parameters_are_bounded_at_the_boundary(capsys, argv, needle):
    if argv[:3] == ["finetune", "--device", "cuda"] and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    code, out, err = run_cli(capsys, *argv)
    assert_one_line_user_error(code, err, needle)


def test_numba_gets_a_cache_folder_when_home_and_the_package_are_read_only(tmp_path):
    from cimsim.fileio import numba_cache_fallback

    env = {}
    assert numba_cache_fallback(env, tmp_path, writable=lambda p: False) == env["NUMBA_CACHE_DIR"]
    assert env["NUMBA_CACHE_DIR"].endswith(f"cimsim-numba-cache-{os.getuid()}")
    assert numba_cache_fallback({"NUMBA_CACHE_DIR": "/x"}, tmp_path, writable=lambda p: False) is None
    assert numba_cache_fallback({}, tmp_path, writable=lambda p: True) is None
    # end to end: nothing writable but the temporary folder, and the engine still imports and runs
    code = ("import cimsim.fileio as f; f._can_write_in = lambda p: False\n"
            "import numpy as np, cimsim\n"
            "xb = cimsim.Crossbar(np.ones((2, 3), dtype=int), cimsim.CrossbarSpec())\n"
            "print(xb(np.ones((1, 3), dtype=int)).tolist())\n")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env.update(HOME=str(tmp_path / "missing-home"), TMPDIR=str(tmp_path))
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / f"cimsim-numba-cache-{os.getuid()}").is_dir()


@pytest.mark.parametrize("rows, cols", [(4096, 128), (128, 4096), (4096, 4096)])
def test_memory_follows_the_work_not_the_array_size(rows, cols):
    """Defect 9: a 64x300 layer on 4096-row or 4096-column arrays (the bound) allocates about what it does on
    128x128 ones (tracemalloc's peak of programming and one forward pass of 10 inputs, with noise on): buffers
    are sized by the weights and the batch, not by the array parameters (3.7 GB for a 2-image run on 468ba4e)."""
    import tracemalloc

    import cimsim
    from cimsim.devices import ReRAM, SarADC

    W = np.random.default_rng(0).integers(-127, 128, size=(64, 300))
    x = np.random.default_rng(1).integers(0, 256, size=(10, 300))

    def peak(r, c):
        spec = cimsim.CrossbarSpec(rows=r, cols=c, cell=ReRAM(read_sigma_frac=0.02, prog_sigma_frac=0.05),
                                   cell_bits=2, weight_bits=8, input_bits=8, dac_bits=1, signed="differential",
                                   readout=SarADC(bits=8))
        tracemalloc.start()
        try:
            cimsim.Crossbar(W, spec, seed=0)(x)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    peak(128, 128)   # first calls: numba compiles outside the measured calls (a tall or wide array may take a
    peak(rows, cols)   # kernel of its own: compiled on a cold cache inside the measured call, it failed on a GPU host)
    base = peak(128, 128)
    assert base < 20 * 2**20 and peak(rows, cols) < 1.5 * base
