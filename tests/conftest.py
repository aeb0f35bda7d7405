"""Suite-wide test settings.

cimsim works in SI units, so many compared values are tiny (fJ, uS, um^2 in m^2). pytest.approx's
default absolute tolerance of 1e-12 would make every such comparison pass vacuously, so here approx
defaults to abs=0 (a purely relative comparison, rel=1e-6 unless given).
"""

import pytest

_approx = pytest.approx


def _strict_approx(expected, rel=None, abs=None, nan_ok=False):
    return _approx(expected, rel=1e-6 if rel is None else rel, abs=0.0 if abs is None else abs, nan_ok=nan_ok)


pytest.approx = _strict_approx


@pytest.fixture
def isolated_data(monkeypatch, tmp_path):
    """No test sees the caller's CIMSIM_DATA, the system datasets or another test's cached loads."""
    from cimsim.workloads import datasets as ds

    monkeypatch.delenv(ds.ENV_VAR, raising=False)
    empty = tmp_path / "_empty_system_root"
    empty.mkdir()
    monkeypatch.setattr(ds, "SYSTEM_ROOT", empty)
    monkeypatch.setattr(ds, "_CACHE", {})
