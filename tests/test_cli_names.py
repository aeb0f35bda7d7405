"""Typos are refused before torch and numba load, with the registries' own messages; the command line's copy
of the names (cimsim.cli.names) equals the registries."""

import json
import subprocess
import sys

import pytest

from cimsim.cli import names

# Each command fails on a typo; the child process then reports which heavy modules it had imported.
PROBE = """
import json, sys
from cimsim.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "heavy": sorted(m for m in ("torch", "numba") if m in sys.modules)}))
"""


@pytest.mark.parametrize("argv,needle", [
    (["run", "--arch", "isac"], "unknown architecture 'isac': choose one of digital, isaac, hcim, cascade, neural-pim, adcless-snn, snn-hpadc, sme"),
    (["run", "--model", "lenet55"], "unknown model 'lenet55': choose one of mlp, lenet5"),
    (["run", "--dataset", "fashoin-mnist"], "unknown dataset 'fashoin-mnist': choose one of fashion-mnist"),
    (["run", "--arch", "hcim", "--set", "readout=ternery"], "hcim: readout = 'ternery': choose one of ternary, binary"),
    (["run", "--arch", "isaac", "--set", "adc.bits=40"], "isaac: adc.bits = 40 bit is out of range"),
    (["run", "--arch", "isaac", "--set", "cell.warp=1"], "cell (reram) has no parameter 'warp'"),
    (["run", "--arch", "cascade", "--set", "adcs_per_array=7"],
     "cascade: parameter 'adcs_per_array' was renamed to 'adcs_per_block'; set adcs_per_block instead"),
    (["run", "--arch", "isaac", "--set", "adc.bitz=7"], "has no parameter 'bitz' (did you mean 'adc.bits'?)"),
    (["run", "--modle", "lenet5"], "unrecognized arguments: --modle lenet5"),
    (["run", "--backend", "numbaa"], "invalid choice: 'numbaa'"),
    (["sweep", "--arch", "isaac,hcimm", "--out", "s.h5"], "unknown architecture 'hcimm'"),
    (["train", "--model", "resnet-21"], "unknown model 'resnet-21'"),
    (["finetune", "--dataset", "cifar"], "unknown dataset 'cifar'"),
    (["swep", "--arch", "isaac"], "invalid choice: 'swep'"),
    (["compare", "--arch", "isaac,cascde"], "unknown architecture 'cascde'"),
    (["compare", "--model", "resnet51", "--input-shape", "3,224,224"], "unknown model 'resnet51': choose one of alexnet"),
    (["compare", "--input-shape", "3,224"], "--input-shape '3,224': give channels,height,width"),
    (["compare", "--equal-area", "isac"], "unknown architecture 'isac'"),
    (["compare", "--precision", "eight"], "--precision 'eight': give a number of bits"),
])
def test_a_typo_is_refused_before_torch_and_numba_load(tmp_path, argv, needle):
    proc = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, cwd=tmp_path,
                          timeout=120)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["code"] == 2, proc.stderr
    assert result["heavy"] == [], f"{argv}: loaded {result['heavy']} before refusing the typo"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr


def test_the_command_lines_names_equal_the_registries():
    from cimsim.workloads import datasets, zoo

    assert names.MODELS == tuple(zoo.model_names())
    from cimsim.workloads import zoo_imagenet

    assert names.IMAGENET_MODELS == tuple(zoo_imagenet.model_names())
    assert names.DATASETS == tuple(datasets.dataset_names())
    # every alias the registries accept, the command line accepts, with the same meaning
    assert names.MODEL_ALIASES == zoo._ALIASES
    assert names.DATASET_ALIASES == datasets._ALIASES
    for text in ("LeNet-5", "lenet", "ResNet_20", "mobilenet"):
        assert names.check_model(text) == zoo.canonical_name(text)
    for text in ("FMNIST", "cifar-10", "Fashion_MNIST"):
        assert names.check_dataset(text) == datasets.canonical_name(text)
