"""On-chip learning, the result of a run: summary, self-describing HDF5 file (format ``cimsim.onchip``)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cimsim.errors import ConfigError
from cimsim.plots import ONCHIP_FORMAT

FORMAT = ONCHIP_FORMAT
FORMAT_VERSION = 1


@dataclass
class OnChipResult:
    """Learning curves and costs of one run (SI units)."""

    config: dict[str, Any]
    history: list[dict[str, float]]
    train_accuracy: float
    test_accuracy: float
    float_train_accuracy: float
    float_test_accuracy: float
    energy_j: float
    time_s: float
    write_energy_j: float
    write_pulses: float
    weight_updates: float
    energy_per_update_j: float
    energy_by_component_j: dict[str, float]
    topology: list[int]
    wall_s: float
    ledger: dict[str, dict[str, float]] = field(default_factory=dict)
    device: dict[str, Any] = field(default_factory=dict)

    @property
    def epochs(self) -> int:
        return len(self.history)

    def summary(self) -> dict[str, Any]:
        """The JSON the CLI prints: results, per-epoch history, costs and the configuration."""
        d = {k: getattr(self, k) for k in (
            "train_accuracy", "test_accuracy", "float_train_accuracy", "float_test_accuracy", "energy_j",
            "time_s", "write_energy_j", "write_pulses", "weight_updates", "energy_per_update_j",
            "energy_by_component_j", "topology", "wall_s")}
        d["epochs"] = self.epochs
        d["history"] = self.history
        d["config"] = self.config
        d["device"] = self.device
        return d

    def to_hdf5(self, path) -> Path:
        """Write the run (format ``cimsim.onchip``): root attributes for scalars and config, /history table."""
        import json

        import h5py

        from cimsim._version import __version__
        from cimsim.fileio import atomic_output

        path = Path(path)
        with atomic_output(path) as tmp:
            with h5py.File(tmp, "w") as f:
                f.attrs["format"] = FORMAT
                f.attrs["format_version"] = FORMAT_VERSION
                f.attrs["kind"] = "onchip"
                f.attrs["cimsim_version"] = __version__
                f.attrs["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
                for k in ("train_accuracy", "test_accuracy", "float_train_accuracy", "float_test_accuracy",
                          "energy_j", "time_s", "write_energy_j", "write_pulses", "weight_updates",
                          "energy_per_update_j", "wall_s"):
                    f.attrs[k] = float(getattr(self, k))
                f.attrs["epochs"] = self.epochs
                f.attrs["topology"] = np.array(self.topology, dtype=np.int64)
                f.attrs["summary_json"] = json.dumps(self.summary(), default=str)
                cfg = f.create_group("config")
                for k, v in self.config.items():
                    cfg.attrs[k] = "none" if v is None else (np.array(v) if isinstance(v, (list, tuple)) else v)
                h = f.create_group("history")
                for key in self.history[0] if self.history else []:
                    h.create_dataset(key, data=np.array([r[key] for r in self.history], dtype=np.float64))
                comp = f.create_group("energy_by_component")
                for k, v in self.energy_by_component_j.items():
                    comp.attrs[k] = float(v)
        return path

    @classmethod
    def from_hdf5(cls, path) -> "OnChipResult":
        import json

        import h5py

        from cimsim.fileio import reading

        with reading(path, ConfigError, "cimsim on-chip run file", "re-create it with 'cimsim onchip --out'"):
            with h5py.File(path, "r") as f:
                if str(f.attrs.get("format", "")) != FORMAT:
                    raise ConfigError(f"{path} is not an on-chip learning run (format {f.attrs.get('format')!r})")
                s = json.loads(f.attrs["summary_json"])
            if not isinstance(s, dict):
                raise ValueError("summary_json is not an object")
            s.pop("epochs", None)
            return cls(**s)

