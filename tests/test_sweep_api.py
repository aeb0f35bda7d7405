"""The sweep's Python API refuses a bad argument with one ConfigError naming the fix, before any file exists."""

from __future__ import annotations

import pytest

from cimsim import sweep
from cimsim.errors import ConfigError


@pytest.mark.parametrize("call,needle", [
    (lambda: sweep.make_points(["isaac"], grid={"rows": "64"}), r"grid\['rows'\] is a list of values, e.g. "
                                                                 r"\{'rows': \['64'\]\}, got '64'"),
    (lambda: sweep.make_points("isaac"), r"archs is a list of names, e.g. \['isaac'\], got the str 'isaac'"),
    (lambda: sweep.make_points(["isaac"], seeds=1.5), "seeds must be a whole number of seeds, e.g. 3, got 1.5"),
    (lambda: sweep.make_points(["isaac"], seeds=0), r"^seeds must be a positive whole number of seeds, e\.g\. 3, "
                                                    r"got 0$"),   # the Python argument, not the CLI's --seeds
    (lambda: sweep.make_points(["isaac"], seeds=-2), r"^seeds must be a positive whole number of seeds, e\.g\. 3, "
                                                     r"got -2$"),
    (lambda: sweep.make_points(["isaac"], adc_bits="8"), "adc_bits is a list of whole numbers"),
])
def test_make_points_refuses_a_str_for_a_list_and_a_fractional_seed_count(call, needle):
    with pytest.raises(ConfigError, match=needle):
        call()


def test_make_points_takes_a_list_of_values():
    assert [p.param_dict["rows"] for p in sweep.make_points(["isaac"], grid={"rows": ["64", "128"]})] == [64, 128]


@pytest.mark.parametrize("kw,needle", [
    ({"calibration": 0}, "Settings.calibration must be a positive whole number, got 0"),
    ({"limit": 0}, r"Settings.limit must be a positive whole number \(or None\), got 0"),
    ({"batch_size": -1}, "Settings.batch_size must be a positive whole number, got -1"),
    ({"model": "mlpp"}, "unknown model 'mlpp': choose one of mlp, "),
    ({"dataset": "digitz"}, "unknown dataset 'digitz': choose one of "),
    ({"overrides": {"rows": 64}}, "Settings.overrides is a dict of parameter names to values as str"),
])
def test_settings_are_checked_when_made(kw, needle):
    with pytest.raises(ConfigError, match=needle):
        sweep.Settings(**{"model": "mlp", "dataset": "digits", **kw})


def test_run_sweep_takes_points_from_make_points_and_creates_no_file(tmp_path):
    path = tmp_path / "s.h5"
    with pytest.raises(ConfigError, match=r"points come from sweep.make_points \(a list of Point\), got 'isaac'"):
        sweep.run_sweep(path, ["isaac"], sweep.Settings("mlp", "digits"))
    with pytest.raises(ConfigError, match="settings is a sweep.Settings"):
        sweep.run_sweep(path, sweep.make_points(["digital"]), {"model": "mlp"})
    assert not path.exists()
