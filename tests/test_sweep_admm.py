"""ADMM block pruning as a sweep axis (issue 18: ``cimsim sweep --grid admm.compression=...``, cimsim.sweep_admm):
grid and knobs, the dense point equal to a plain run, a pruned point at its target with fewer crossbars, the cache
of pruned networks, the table, JSON and plot, and bad input."""

import json

import pytest
from _cli_helpers import assert_one_line_user_error, run_cli

from cimsim import sweep, sweep_admm
from cimsim.errors import ConfigError
from cimsim.sweepfile import Point
from cimsim.workloads import datasets

FMNIST = datasets.SYSTEM_ROOT / "fashion-mnist"
needs_fmnist = pytest.mark.skipif(not FMNIST.is_dir(), reason="Fashion-MNIST not installed")
RECIPE = {"admm.epochs": "1", "admm.limit": "256"}      # 1 ADMM + 1 retraining epoch on 256 examples: small


def test_admm_knobs_are_a_grid_axis_of_the_crossbar_architectures_only():
    notes = []
    points = sweep.make_points(["isaac", "hcim", "digital"], None, 2, dict(RECIPE),
                               sweep.parse_grid(["admm.compression=off,2,4.5"]), notes)
    isaac = [p for p in points if p.arch == "isaac"]
    assert [p.param_dict["admm.compression"] for p in isaac if p.seed == 0] == [1.0, 2.0, 4.5]
    assert Point("isaac", {"adc.bits": 8, "admm.compression": 2.0}, 1).key == \
        "isaac__adc.bits=8__admm.compression=2.0_seed1" and len(isaac) == 6
    assert [p.key for p in points if p.arch != "isaac"] == ["hcim_adcnone_seed0", "hcim_adcnone_seed1",
                                                           "digital_adcnone_seed0", "digital_adcnone_seed1"]
    assert any("ADMM pruning does not apply to hcim" in n for n in notes)
    assert any("ADMM pruning does not apply to digital" in n for n in notes)
    assert sweep.grid_size(["isaac", "hcim", "digital"], {"admm.compression": ["1", "2", "4.5"]}, 2) == 6 + 2 + 2
    assert not any("stays dense" in n for n in notes)
    sweep.make_points(["isaac"], None, 1, dict(RECIPE), {}, notes)      # a recipe and no target: said once
    assert "ADMM knobs without admm.compression: the network stays dense (give e.g. --grid admm.compression=1,2,4,8)" \
        in notes
    # a point's knobs: the fixed ones (--set) beside the swept ones; the architecture gets only its own parameters
    params = sweep.point_params(isaac[2], dict(RECIPE, rows="64"))
    arch_params, knobs = sweep_admm.split(params)
    assert arch_params == {"rows": "64", "adc.bits": 8}
    assert sweep_admm.Knobs.from_params(knobs) == sweep_admm.Knobs(compression=2.0, epochs=1, limit=256)
    recipe = sweep_admm.Knobs.from_params(knobs).recipe()
    assert (recipe.admm_epochs, recipe.retrain_epochs, recipe.lr, recipe.batch_size) == (1, 1, 1e-2, 128)


def test_the_cache_key_holds_blocks_target_recipe_and_seed_but_no_readout_parameter():
    from cimsim import arch
    from cimsim.mappers.admm import ADMMConfig

    def path(spec, knobs=sweep_admm.Knobs(4.0), device="cpu"):
        cfg = ADMMConfig.from_arch(spec, knobs.compression)
        return sweep_admm.cache_path(sweep_admm.cache_key("lenet5", "fashion-mnist", "ab" * 32, cfg, knobs, device))

    base = path(arch.get("isaac"))
    assert base.parent.name == "admm" and base.name.startswith("lenet5-fashion-mnist-admm-r128o16w16-c4-")
    for same in (arch.get("isaac", adc_bits=5), arch.get("isaac", **{"cell.read_sigma_frac": 0.02})):
        assert path(same) == base                                    # readout and device noise: one pruned network
    for other in (path(arch.get("isaac", rows=64)), path(arch.get("isaac", cols=64)),
                  path(arch.get("isaac", weight_bits=8)), path(arch.get("isaac"), sweep_admm.Knobs(8.0)),
                  path(arch.get("isaac"), sweep_admm.Knobs(4.0, epochs=2)),
                  path(arch.get("isaac"), sweep_admm.Knobs(4.0, seed=1)),
                  path(arch.get("isaac"), sweep_admm.Knobs(4.0, limit=100)), path(arch.get("isaac"), device="cuda")):
        assert other != base


@pytest.mark.parametrize("grid,sets,needle", [
    (["admm.compression=0.5"], {}, "admm.compression '0.5' is out of range"),
    (["admm.compression=2,x"], {}, "admm.compression 'x' is not a number"),
    (["admm.compression=nan"], {}, "is out of range"),
    (["admm.compression=1,off"], {}, "names a value twice"),
    (["admm.rho=1,2"], {}, "admm.rho is not an ADMM knob: choose one of admm.compression, admm.epochs"),
    (["admm.compression=2"], {"admm.epochs": "0"}, "admm.epochs '0' is out of range"),
    (["admm.compression=2"], {"admm.lr": "fast"}, "admm.lr 'fast' is not a learning rate > 0"),
])
def test_bad_knobs_are_refused_before_any_work(grid, sets, needle):
    with pytest.raises(ConfigError, match=needle):
        sweep.make_points(["isaac"], None, 1, sets, sweep.parse_grid(grid))


@pytest.mark.parametrize("argv,needles", [
    (["--grid", "admm.compression=0.5"], ["admm.compression '0.5' is out of range", "at least 1"]),
    (["--grid", "admm.compression=four"], ["admm.compression 'four' is not a number"]),
    (["--set", "admm.epochs=two"], ["admm.epochs 'two' is not a positive whole number"]),
    (["--arch", "digital", "--grid", "admm.compression=2"], ["ADMM pruning applies to no architecture", "isaac"]),
])
def test_cli_bad_knobs_exit_2_with_one_line(capsys, tmp_path, argv, needles):
    code, _, err = run_cli(capsys, "sweep", "--out", tmp_path / "s.h5", *(["--arch", "isaac"] if "--arch" not in argv
                                                                          else []), *argv)
    assert_one_line_user_error(code, err, *needles)
    assert not (tmp_path / "s.h5").exists()


def numbers(report):
    """Every number of a report (not its configuration), as comparable text: 0 and 0.0 alike, NaN equal to NaN."""
    def floats(x):
        if isinstance(x, dict):
            return {k: floats(v) for k, v in x.items()}
        if isinstance(x, list):
            return [floats(v) for v in x]
        return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else x
    return json.dumps(floats({k: v for k, v in report.to_dict().items() if k not in ("config", "created")}),
                      sort_keys=True)


@needs_fmnist
def test_an_admm_sweep_prunes_maps_the_blocks_caches_and_draws(tmp_path, monkeypatch):
    """LeNet-5 on ISAAC (blocks of 128 inputs x 16 outputs, 16-bit weights): the point at compression 1 is a plain
    run bit for bit; at 4 the network is pruned to at least 4x by whole blocks (each pruned layer reaches its share
    of the target, so whole blocks overshoot: below 5x here), allocates only its non-zero blocks and has fewer
    crossbars than the dense point; a second sweep over another ADC resolution trains nothing (the cache on disk)."""
    from cimsim import arch as arch_mod
    from cimsim.mappers import evaluate
    from cimsim.plots import sweep_figure

    monkeypatch.setenv("CIMSIM_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(sweep, "_CONTEXT", {})
    monkeypatch.setattr(sweep_admm, "_MEMO", {})
    monkeypatch.setattr(sweep_admm, "TRAINED", [])
    settings = sweep.Settings(model="lenet5", dataset="fashion-mnist", limit=20, calibration=16, batch_size=20,
                              overrides=dict(RECIPE))
    grid = {"admm.compression": ["1", "4"]}
    points = sweep.make_points(["isaac"], None, 1, settings.overrides, grid)
    results = sweep.run_sweep(tmp_path / "a.h5", points, settings, progress=False)
    dense, pruned = (results[p] for p in points)

    model, _, data = sweep._context(settings)
    plain = evaluate(model, arch_mod.get("isaac"), data.loader("test", batch_size=20, limit=20),
                     calibration=data.loader("train", batch_size=20, limit=16, shuffle=False), seed=0, progress=False)
    assert numbers(dense) == numbers(plain)
    assert dense.config["admm"] == {"target_compression": 1.0, "compression": 1.0, "trained": False,
                                    "network": "the dense network (compression 1: not pruned)"}

    rec = pruned.config["admm"]
    assert 4.0 <= rec["compression"] < 5.0 and rec["trained"] and rec["train_examples"] == 256
    assert (rec["block_rows"], rec["block_outputs"], rec["weight_bits"], rec["train_device"]) == (128, 16, 16, "cpu")
    assert rec["recipe"]["admm_epochs"] == rec["recipe"]["retrain_epochs"] == 1
    assert rec["layer_compression"]["features.0"] == 1.0 and rec["layer_compression"]["classifier.5"] == 1.0
    assert sweep_admm.TRAINED == [rec["network"]] and pruned.config["checkpoint"] == rec["network"]
    rows = {r["name"]: r for r in pruned.layers}
    dense_rows = {r["name"]: r for r in dense.layers}
    assert rows["classifier.1"]["xbars_masked"] < rows["classifier.1"]["xbars_dense"] == \
        dense_rows["classifier.1"]["arrays"]
    xbars = {p.param_dict["admm.compression"]: sum(r.get("arrays", 0) for r in results[p].layers) for p in points}
    assert xbars[4.0] < xbars[1.0]
    assert pruned.accuracy != dense.accuracy or pruned.energy_j != dense.energy_j

    # the table and the JSON record say the compression reached and the crossbars
    table = sweep.table(results)
    assert "weights/kept" in table and f"{rec['compression']:.2f}x" in table and "1.00x" in table
    summary = sweep.point_summary(points[1], pruned)
    assert (summary["weight_compression"], summary["admm_trained"], summary["crossbars"]) == \
        (rec["compression"], True, xbars[4.0])

    # the plot: crossbars allocated against the target (and against the compression reached)
    for x, label in (("admm.compression", "ADMM target compression"), ("weight_compression", "weight compression")):
        fig = sweep_figure(results, x=x)
        ax = fig.axes[3]
        assert ax.get_ylabel() == "crossbars allocated" and ax.get_xlabel().startswith(label)
        line = [c for c in ax.containers][0]
        xs, ys = line.lines[0].get_data()
        assert list(ys) == [xbars[1.0], xbars[4.0]]
        assert list(xs) == ([1.0, 4.0] if x == "admm.compression" else [1.0, round(rec["compression"], 6)])
        # each point's float reference is its own network (the pruned one): a dashed curve, not a mean line
        ref = [l for l in fig.axes[0].get_lines() if l.get_label() == "float network of isaac (each point's)"]
        assert len(ref) == 1 and list(ref[0].get_ydata()) == [100 * dense.digital_accuracy,
                                                               100 * pruned.digital_accuracy]

    # a new sweep (another file, another ADC resolution, a new process's memory): the pruned network from disk
    monkeypatch.setattr(sweep_admm, "_MEMO", {})
    again = sweep.run_sweep(tmp_path / "b.h5", sweep.make_points(["isaac"], [6], 1, settings.overrides, grid),
                            settings, progress=False)
    rec6 = again[Point("isaac", {"adc.bits": 6, "admm.compression": 4.0}, 0)].config["admm"]
    assert not rec6["trained"] and sweep_admm.TRAINED == [rec["network"]]
    assert rec6["network"] == rec["network"] and rec6["compression"] == rec["compression"]


@needs_fmnist
def test_parallel_workers_train_each_pruned_network_once(tmp_path, monkeypatch):
    """Two local workers, two points that share a pruned network (they differ in ADC bits only): the lock beside the
    cache entry lets one train it and the other load it."""
    monkeypatch.setenv("CIMSIM_HOME", str(tmp_path / "home"))
    settings = sweep.Settings(model="lenet5", dataset="fashion-mnist", limit=20, calibration=16, batch_size=20,
                              overrides=dict(RECIPE))
    points = sweep.make_points(["isaac"], [6, 8], 1, settings.overrides, {"admm.compression": ["4"]})
    results = sweep.run_sweep(tmp_path / "p.h5", points, settings, workers=2, progress=False)
    recs = [results[p].config["admm"] for p in points]
    assert sorted(r["trained"] for r in recs) == [False, True]
    assert len({r["network"] for r in recs}) == 1 and len(list((tmp_path / "home/checkpoints/admm").glob("*.pt"))) == 1
