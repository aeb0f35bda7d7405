"""Sweeps reuse the programmed network (issue 19, item 3): points that differ only in converter settings put the
mapped, programmed and calibrated network of their seed on their own converter, bit-identical to runs of their
own; a network is never put on other arrays or another architecture."""

import json

import pytest

from cimsim import sweep
from cimsim.workloads import datasets

FMNIST = datasets.SYSTEM_ROOT / "fashion-mnist"
needs_fmnist = pytest.mark.skipif(not FMNIST.is_dir(), reason="Fashion-MNIST not installed")


@needs_fmnist
def test_adc_bits_sweep_programs_once_and_equals_independent_runs(tmp_path, monkeypatch):
    """Points that differ only in ADC bits reuse the mapped, programmed and calibrated network of their seed:
    one map_model per seed (counted through a wrapper), and every report equals an independent
    cimsim.mappers.evaluate of that point bit for bit (accuracy, energy, latency, per-layer errors, components)."""
    from cimsim import arch as arch_mod
    from cimsim.mappers import evaluate, mapper

    maps = []
    real = mapper.map_model

    def counting(model, arch, *args, **kwargs):
        maps.append((arch.name, arch.params()["adc.bits"], kwargs["seed"]))
        return real(model, arch, *args, **kwargs)

    monkeypatch.setattr(mapper, "map_model", counting)
    monkeypatch.setattr(sweep, "_CONTEXT", {})
    settings = sweep.Settings(model="lenet5", dataset="fashion-mnist", limit=24, calibration=16, batch_size=12)
    points = sweep.make_points(["isaac"], [2, 5, 8], 2)          # seeds vary fastest: both kept programmed
    results = sweep.run_sweep(tmp_path / "s.h5", points, settings, progress=False)
    assert maps == [("isaac", 2, 0), ("isaac", 2, 1)]
    assert not sweep._PROGRAMMED                                  # freed when the sweep ends

    model, _, data = sweep._context(settings)
    def numbers(r):   # every number as a float (the file gives 0.0 for 0) and NaN comparable, as text
        floats = lambda x: ({k: floats(v) for k, v in x.items()} if isinstance(x, dict) else  # noqa: E731
                            [floats(v) for v in x] if isinstance(x, list) else
                            float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else x)
        return json.dumps(floats({k: v for k, v in r.to_dict().items() if k not in ("config", "created")}),
                          sort_keys=True)
    for p in points:
        spec = arch_mod.get("isaac", **p.param_dict)
        alone = evaluate(model, spec, data.loader("test", batch_size=12, limit=24),
                         calibration=data.loader("train", batch_size=12, limit=16, shuffle=False), seed=p.seed,
                         progress=False)
        assert numbers(results[p]) == numbers(alone), p.key
        assert results[p].config["arch_params"] == alone.config["arch_params"]
    assert len({results[p].energy_j for p in points if p.seed == 0}) == 3      # the bits do change the numbers
    assert len(maps) == 2 + len(points)                           # the independent runs each mapped


@needs_fmnist
def test_a_programmed_network_is_not_put_on_other_arrays():
    from cimsim import arch as arch_mod
    from cimsim.mappers import mapper
    from cimsim.workloads import datasets as ds, zoo

    data = ds.load("fashion-mnist")
    model = zoo.build("lenet5")
    cal = data.loader("train", batch_size=8, limit=8, shuffle=False)
    mapped = mapper.map_model(model, arch_mod.get("isaac"), cal, progress=False)
    assert not mapped.retarget(arch_mod.get("isaac", rows=64))            # other arrays: map again
    assert not mapped.retarget(arch_mod.get("hcim"))                      # another architecture
    assert mapped.arch.params()["adc.bits"] == 8
    assert mapped.retarget(arch_mod.get("isaac", adc_bits=4))
    assert mapped.arch.params()["adc.bits"] == 4
    xb = next(iter(mapped.mapped_layers.values())).crossbars[0]
    assert xb.spec.readout.bits == 4 and xb.noise.calls == 0

