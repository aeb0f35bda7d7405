"""The result of one simulation: accuracy, energy, latency and area, per layer and per component.

Quantities are SI inside and in files: ``energy_j`` is joules per inference, ``latency_s`` seconds per
inference, ``area_m2`` square metres. Only :meth:`Report.table` converts to engineering units.

HDF5 layout (``format`` = ``cimsim.report``, ``format_version`` = 1), every number with a ``unit`` or
``description`` attribute so a file explains itself::

    /                 attrs: the scalar results, units, cimsim version, creation time
    /layers/<column>  one dataset per column of the per-layer table (name, kind, energy_j, latency_s, ...)
    /components       datasets ``name`` and ``energy_j`` (J per inference)
    /config           attrs: every configuration value (nested dicts as sub-groups), for reading;
                      root attr ``config_json`` holds the whole configuration for an exact round trip
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cimsim._version import __version__
from cimsim.errors import CimsimError, ConfigError
from cimsim.fileio import CORRUPT_FILE_ERRORS, atomic_output, reading

FORMAT = "cimsim.report"
FORMAT_VERSION = 1

# config["digital_reference"] of a report whose reference is the simulated network itself, in floating point
SELF_REFERENCE = "the network itself in floating point"

SCALARS: dict[str, tuple[str, str]] = {
    "accuracy": ("1", "top-1 accuracy of the simulated hardware on the evaluated examples, in [0, 1]"),
    "digital_accuracy": ("1", "top-1 accuracy of the floating-point reference network on the same examples, in "
                              "[0, 1] (config 'digital_reference' says which network)"),
    "energy_j": ("J", "energy per inference"),
    "latency_s": ("s", "latency of one inference"),
    "throughput_inf_per_s": ("1/s", "inferences per second"),
    "area_m2": ("m^2", "chip area"),
    "n_examples": ("1", "number of examples evaluated"),
}
LAYER_UNITS = {"energy_j": "J per inference", "latency_s": "s per inference", "macs": "multiply-accumulates per inference",
               "rel_error": "1 (relative RMS error of the layer's output against the exact integer product of the "
                            "same inputs; NaN for a layer not on crossbars)",
               "clip_rate": "1 (ADC conversions that clipped / conversions; NaN for a layer not on crossbars)"}


class ReportFileError(CimsimError):
    """A report file is missing, corrupt or not a cimsim report."""


@dataclass
class Report:
    accuracy: float
    digital_accuracy: float
    energy_j: float
    latency_s: float
    throughput_inf_per_s: float
    area_m2: float
    layers: list[dict[str, Any]] = field(default_factory=list)
    components: dict[str, float] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    n_examples: int = 0
    cimsim_version: str = __version__
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    # ------------------------------------------------------------------ dict / JSON
    def to_dict(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "digital_accuracy": self.digital_accuracy,
            "energy_j": self.energy_j,
            "latency_s": self.latency_s,
            "throughput_inf_per_s": self.throughput_inf_per_s,
            "area_m2": self.area_m2,
            "n_examples": self.n_examples,
            "layers": [dict(r) for r in self.layers],
            "components": dict(self.components),
            "config": _jsonable(self.config),
            "cimsim_version": self.cimsim_version,
            "created": self.created,
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, default=json_default)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Report":
        known = {k: d[k] for k in ("accuracy", "digital_accuracy", "energy_j", "latency_s",
                                   "throughput_inf_per_s", "area_m2") if k in d}
        missing = {"accuracy", "digital_accuracy", "energy_j", "latency_s", "throughput_inf_per_s",
                   "area_m2"} - set(known)
        if missing:
            raise ReportFileError(f"report lacks {', '.join(sorted(missing))}")
        return cls(**{k: float(v) for k, v in known.items()},
                   layers=_numeric_nulls([dict(r) for r in d.get("layers", [])]),
                   components={k: float(v) for k, v in d.get("components", {}).items()},
                   config=dict(d.get("config", {})), n_examples=int(d.get("n_examples", 0)),
                   cimsim_version=d.get("cimsim_version", __version__), created=d.get("created", ""))

    @classmethod
    def from_json(cls, text: str) -> "Report":
        if not isinstance(text, (str, bytes, bytearray)):
            raise ConfigError(f"Report.from_json takes the text Report.to_json wrote, got {type(text).__name__}")
        try:
            d = json.loads(text)
        except ValueError as exc:
            raise ReportFileError(f"the text is not a cimsim report's JSON ({exc}); pass what Report.to_json "
                                  "wrote") from None
        if not isinstance(d, dict):
            raise ReportFileError(f"the JSON holds a {type(d).__name__}, not a cimsim report's object; pass what "
                                  "Report.to_json wrote")
        return cls.from_dict(d)

    # ------------------------------------------------------------------ HDF5
    def write_hdf5_group(self, group) -> None:
        """Write this report into an open h5py group (used by to_hdf5 and by sweep files)."""
        group.attrs["format"] = FORMAT
        group.attrs["format_version"] = FORMAT_VERSION
        group.attrs["cimsim_version"] = self.cimsim_version
        group.attrs["created"] = self.created
        group.attrs["description"] = ("cimsim simulation report: accuracy, energy, latency and area of one "
                                      "network on one architecture; SI units, per inference")
        for key, (unit, desc) in SCALARS.items():
            group.attrs[key] = getattr(self, key)
        group.attrs["units"] = json.dumps({k: u for k, (u, _) in SCALARS.items()})
        group.attrs["descriptions"] = json.dumps({k: d for k, (_, d) in SCALARS.items()})

        lg = group.create_group("layers")
        columns = _layer_columns(self.layers)
        lg.attrs["columns"] = json.dumps(columns)
        lg.attrs["description"] = "per-layer table, one dataset per column, one row per layer in network order"
        for col in columns:
            values = [r.get(col) for r in self.layers]
            if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
                ds = lg.create_dataset(col, data=np.asarray(values, dtype=np.int64))  # counts stay ints
            elif all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in values):
                ds = lg.create_dataset(col, data=np.asarray(values, dtype=np.float64))
            else:
                ds = lg.create_dataset(col, data=np.asarray(["" if v is None else str(v) for v in values],
                                                            dtype=object), dtype=_h5str())
            if col in LAYER_UNITS:
                ds.attrs["unit"] = LAYER_UNITS[col]

        cg = group.create_group("components")
        cg.attrs["description"] = "energy per inference by hardware component"
        cg.create_dataset("name", data=np.asarray(list(self.components), dtype=object), dtype=_h5str())
        ds = cg.create_dataset("energy_j", data=np.asarray(list(self.components.values()), dtype=np.float64))
        ds.attrs["unit"] = "J per inference"

        # The exact configuration as JSON on the root (attrs of /config are its readable copy, so a
        # config key may be named anything, 'json' and 'description' included).
        group.attrs["config_json"] = json.dumps(_jsonable(self.config), default=json_default)
        _write_attrs(group.create_group("config"), self.config)

    @classmethod
    def read_hdf5_group(cls, group, where: str = "") -> "Report":
        """The report in an open h5py group; a corrupt or foreign group gives ReportFileError (one line)."""
        with reading(where or getattr(group, "name", "?"), ReportFileError, "cimsim report",
                     "re-create it with 'cimsim run --out'"):
            return cls._read_hdf5_group(group, where)

    @classmethod
    def _read_hdf5_group(cls, group, where: str = "") -> "Report":
        if group.attrs.get("format") != FORMAT:
            raise ReportFileError(f"{where or group.name} is not a cimsim report (no format={FORMAT!r} attribute)")
        version = int(group.attrs.get("format_version", 0))
        if version > FORMAT_VERSION:
            raise ReportFileError(f"{where} was written by a newer cimsim (report format {version}); upgrade cimsim")
        scalars = {k: group.attrs[k] for k in SCALARS if k in group.attrs}
        lg = group["layers"]
        columns = json.loads(lg.attrs["columns"])
        data = {}
        for col in columns:
            arr = lg[col][()]
            data[col] = [v.decode() if isinstance(v, bytes) else (float(v) if isinstance(v, np.floating) else
                                                                  int(v) if isinstance(v, np.integer) else v)
                         for v in arr]
        n = len(data[columns[0]]) if columns else 0
        layers = [{c: data[c][i] for c in columns} for i in range(n)]
        cg = group["components"]
        names = [v.decode() if isinstance(v, bytes) else str(v) for v in cg["name"][()]]
        energies = [float(x) for x in cg["energy_j"][()]]
        if len(names) != len(energies):
            raise ValueError(f"components: {len(names)} names for {len(energies)} energies")
        components = dict(zip(names, energies))
        if not isinstance(columns, list) or any(len(data[c]) != n for c in columns):
            raise ValueError("layers: the columns are not one list of equally long datasets")
        config = json.loads(group.attrs["config_json"])
        if not isinstance(config, dict):
            raise ValueError(f"config_json holds a {type(config).__name__}, not an object")
        return cls(accuracy=float(scalars["accuracy"]), digital_accuracy=float(scalars["digital_accuracy"]),
                   energy_j=float(scalars["energy_j"]), latency_s=float(scalars["latency_s"]),
                   throughput_inf_per_s=float(scalars["throughput_inf_per_s"]), area_m2=float(scalars["area_m2"]),
                   layers=layers, components=components, config=config,
                   n_examples=int(scalars.get("n_examples", 0)),
                   cimsim_version=str(group.attrs.get("cimsim_version", "")),
                   created=str(group.attrs.get("created", "")))

    def to_hdf5(self, path: str | os.PathLike) -> Path:
        """Write the report to ``path`` atomically (a temporary file in the same folder, then a rename). An
        existing file is replaced only when it is a cimsim report (a sweep file, a checkpoint or a file that is not
        cimsim's is kept: ConfigError)."""
        import h5py

        from cimsim import outkind

        path = _file_path(path, "Report.to_hdf5")
        if path.is_dir():
            raise ConfigError(f"path {path} is a folder; give a file name such as {path / 'report.h5'}")
        if path.parent and not path.parent.exists():
            raise ReportFileError(f"folder {path.parent} does not exist; create it or choose another path")
        outkind.refuse_replacing(path, outkind.REPORT, "path")
        with atomic_output(path) as tmp:
            with h5py.File(tmp, "w") as f:
                self.write_hdf5_group(f)
        return path

    @classmethod
    def from_hdf5(cls, path: str | os.PathLike) -> "Report":
        import h5py

        path = _file_path(path, "Report.from_hdf5")
        if path.is_dir():
            raise ReportFileError(f"report file {path} is a folder; give the path of a report file")
        if not path.is_file():
            raise ReportFileError(f"report file {path} does not exist; check the path")
        try:
            with h5py.File(path, "r") as f:
                return cls.read_hdf5_group(f, where=str(path))
        except ReportFileError:
            raise
        except CORRUPT_FILE_ERRORS as exc:
            raise ReportFileError(f"{path} is not a readable cimsim report ({type(exc).__name__}: {exc}); "
                                  "re-create it with 'cimsim run --out'") from None

    # ------------------------------------------------------------------ text
    def table(self) -> str:
        c = self.config
        head = "cimsim report"
        if c.get("model") or c.get("arch"):
            head += f": {c.get('model', '?')} on {c.get('dataset', '?')}, architecture {c.get('arch', '?')}"
        lines = [head, "=" * len(head)]
        if "aee_px" in c:   # a flow network: average endpoint error instead of accuracy (cimsim.metrics)
            lines.append(f"  AEE                   {c['aee_px']:.4f} px   (digital reference {c['digital_aee_px']:.4f} px,"
                         f" {self.n_examples} examples)")
        else:
            lines.append(f"  accuracy              {_pct(self.accuracy)}   (digital reference "
                         f"{_pct(self.digital_accuracy)}, {self.n_examples} examples)")
        if c.get("network_note"):   # the float network where the architecture needs a fine-tuned one
            lines.append(f"  network               {c['network_note']}")
        ref = c.get("digital_reference")
        if ref and ref != SELF_REFERENCE:
            lines.append(f"  digital reference     {ref}")
        if "checkpoint" in c:
            lines.append(f"  checkpoint            {checkpoint_line(c)}")
        worst = self.worst_layer()
        if worst is not None and worst["rel_error"] == 0:
            lines.append("  largest layer error   none: every mapped layer's output equals its exact integer product")
        elif worst is not None:
            lines.append(f"  largest layer error   {worst['name']} ({worst.get('kind', '')}): {_error(worst['rel_error'])} "
                         f"RMS of its output against the exact integer product (SNR {_snr(worst['rel_error'])})")
        lines.append(f"  energy / inference    {fmt_si(self.energy_j, 'J')}")
        uncosted = (c.get("calibration") or {}).get("uncosted_layers") or []
        if uncosted:   # work no cost model covers: run, but left out of energy and latency (the mapper warned)
            lines.append(f"    not costed          {', '.join(map(str, uncosted))} (their work is left out of "
                         "energy and latency)")
        mapped = c.get("mapped_layers") or {}
        digital_macs = sum(r.get("macs", 0) for r in self.layers if r.get("name") not in mapped) if mapped else 0
        if digital_macs:   # products kept off the crossbars (attention, a weight used outside its layer)
            total = sum(r.get("macs", 0) for r in self.layers)
            lines.append(f"    digital MACs        {digital_macs:,.0f} of {total:,.0f} run digitally, off the crossbars "
                         "(rows without a rel. error)")
        macro = self.config.get("macro_components")
        if macro:
            share = self.macro_energy_j / self.energy_j if self.energy_j else 0.0
            lines.append(f"    compute macro       {fmt_si(self.macro_energy_j, 'J')} ({100 * share:.1f} %: "
                         f"{', '.join(macro)}; the rest is shared chip infrastructure)")
        lines.append(f"  latency / inference   {fmt_si(self.latency_s, 's')}   "
                     f"(throughput {self.throughput_inf_per_s:,.0f} inferences/s)")
        lines.append(f"  area                  {self.area_m2 * 1e6:.4g} mm^2")
        if self.layers:
            lines.append("")
            extra = [k for k in ("macs",) if any(k in r for r in self.layers)]
            quality = [k for k in ("rel_error", "clip_rate") if any(k in r for r in self.layers)]
            titles = {"rel_error": "rel. error", "clip_rate": "clipped"}
            header = ["layer", "kind", *extra, "energy", "share", "latency", *[titles[k] for k in quality]]
            rows = []
            for r in self.layers:
                share = r.get("energy_j", 0.0) / self.energy_j if self.energy_j else 0.0
                rows.append([str(r.get("name", "")), str(r.get("kind", "")),
                             *[f"{r.get(k, 0):,.0f}" for k in extra],
                             fmt_si(r.get("energy_j", 0.0), "J"), f"{100 * share:5.1f}%",
                             fmt_si(r.get("latency_s", 0.0), "s"),
                             *[_error(r.get("rel_error")) if k == "rel_error" else _rate(r.get(k)) for k in quality]])
            rows.append(["total", "", *[f"{sum(r.get(k, 0) for r in self.layers):,.0f}" for k in extra],
                         fmt_si(sum(r.get("energy_j", 0.0) for r in self.layers), "J"), "100.0%",
                         fmt_si(sum(r.get("latency_s", 0.0) for r in self.layers), "s"), *[""] * len(quality)])
            lines += _grid(header, rows)
        if self.components:
            lines.append("")
            macro = set(self.config.get("macro_components") or ())
            rows = [[k, fmt_si(v, "J"), f"{100 * v / self.energy_j if self.energy_j else 0:5.1f}%",
                     *(["yes" if k in macro else ""] if macro else [])]
                    for k, v in sorted(self.components.items(), key=lambda kv: -kv[1])]
            lines += _grid(["component", "energy", "share", *(["macro"] if macro else [])], rows)
        return "\n".join(lines)

    @property
    def layer_components(self) -> dict[str, dict[str, float]]:
        """Energy per inference of each layer by component (J: ``{layer: {component: J}}``, layers in the order of
        :attr:`layers`), as recorded when the report was costed; empty for a report written by an older cimsim."""
        recorded = self.config.get("energy_per_layer_component") or {}
        return {r["name"]: dict(recorded.get(r["name"], {})) for r in self.layers if r["name"] in recorded}

    # ------------------------------------------------------------------ macro and chip level
    @property
    def macro_components(self) -> list[str]:
        """The component kinds of the architecture's compute macro (crossbars, readout, partial-sum processing:
        :meth:`cimsim.arch.base.Architecture.macro_kinds`), as recorded when the report was costed."""
        if "macro_components" not in self.config:
            raise ReportFileError("this report does not record its architecture's compute macro (written by an "
                                  "older cimsim); re-cost it with Report.recost(arch) or run it again")
        return list(self.config["macro_components"])

    @property
    def macro_energy_j(self) -> float:
        """Energy per inference of the compute macro: the report's component energies (dynamic and static) of
        the :attr:`macro_components`; ``energy_j - macro_energy_j`` is the shared chip infrastructure."""
        return float(sum(self.components.get(k, 0.0) for k in self.macro_components))

    def energy_at(self, level: str) -> float:
        """Energy per inference at ``level``: 'chip' (every component) or 'macro' (:attr:`macro_energy_j`)."""
        if level == "chip":
            return self.energy_j
        if level == "macro":
            return self.macro_energy_j
        raise ConfigError(f"level must be 'chip' or 'macro', got {level!r}")

    def worst_layer(self) -> dict[str, Any] | None:
        """The layer row with the largest output error against its exact integer product (None when no layer
        has one, e.g. on the digital reference)."""
        rows = [r for r in self.layers if _finite_or_inf(r.get("rel_error"))]
        return max(rows, key=lambda r: r["rel_error"]) if rows else None

    def __str__(self) -> str:
        return self.table()

    # ------------------------------------------------------------------ re-costing
    def recost(self, arch) -> "Report":
        """The same run costed on ``arch``: the events this run counted (kept per layer in ``config['ledger']``)
        with ``arch``'s event costs, inventory and timing, without simulating again.

        ``arch`` may differ from the run's architecture only in parameters that change costs and not the
        simulated numbers (its ``cost_only`` parameters: technology node, clock, chip size, converter energy
        calibration, peripheral figures, ...); any other difference is refused, since the events themselves
        would change: run again. Accuracy and the digital reference are this run's."""
        # what recost reads of an architecture (duck-typed: this module sits below cimsim.arch)
        if not all(callable(getattr(arch, a, None)) for a in ("params", "is_cost_only", "event_costs")):
            name = arch.lower() if isinstance(arch, str) else "isaac"
            raise ConfigError(f"recost takes an architecture object, got {type(arch).__name__} {arch!r}: "
                              f"cimsim.arch.get({name!r})")
        cfg = self.config
        missing = [k for k in ("ledger", "mapped_layers", "layer_kinds", "arch", "arch_params") if k not in cfg]
        if missing:
            raise ReportFileError(f"this report keeps no event ledger ({', '.join(missing)} missing: written by an "
                                  "older cimsim); run it again to re-cost it")
        if arch.name != cfg["arch"]:
            raise ConfigError(f"this run is on {cfg['arch']}; it cannot be re-costed on {arch.name}: run it again")
        changed = [p for p, v in arch.params().items()
                   if not arch.is_cost_only(p) and json.dumps(_jsonable(v)) != json.dumps(cfg["arch_params"].get(p))]
        if changed:
            raise ConfigError(f"re-costing changes only cost parameters; {', '.join(sorted(changed))} change what "
                                  "is simulated: run again with them")
        from cimsim.cost import LayerPlan
        from cimsim.ledger import EventLedger

        plans = {n: LayerPlan.from_dict(d) for n, d in cfg["mapped_layers"].items()}
        out = cost_report(arch, EventLedger(cfg["ledger"]), plans, cfg["layer_kinds"])
        out.accuracy, out.digital_accuracy, out.n_examples = self.accuracy, self.digital_accuracy, self.n_examples
        quality = {r.get("name"): {k: r[k] for k in ("rel_error", "clip_rate") if k in r} for r in self.layers}
        for row in out.layers:   # the layers' output quality is this run's, like the accuracy
            row.update(quality.get(row["name"], {}))
        keep = {k: v for k, v in cfg.items() if k not in out.config}
        out.config = {**keep, **out.config, "arch_params": arch.params(),
                      "recost_of": {"created": self.created, "arch_params": cfg["arch_params"]}}
        return out


def cost_report(arch, ledger, plans: dict, kinds: dict) -> Report:
    """The cost part of a report (energy, latency, throughput, area, per layer and per component) of a
    per-inference ``ledger`` on ``arch`` (a :class:`cimsim.arch.base.Architecture`); accuracy is left at 0 for the
    caller to fill. The configuration keeps what :meth:`Report.recost` needs to cost the same events again."""
    from cimsim import events

    cost = arch.cost(ledger, plans, kinds)
    layers = []
    order = [n for n in kinds if n in ledger.layers()]          # execution order (the profile's)
    order += [n for n in ledger.layers() if n not in order]
    for name in order:
        ev = ledger.layer(name)
        row = {"name": name, "kind": kinds.get(name, ""),
               "energy_j": cost.energy_per_layer.get(name, 0.0), "latency_s": cost.latency_per_layer.get(name, 0.0)}
        if name in plans:
            p = plans[name]
            row.update({"macs": p.positions * p.in_features * p.out_features, "arrays": p.arrays,
                        "copies": cost.copies.get(name, 1), "conversions": events.conversions(ev)})
        else:   # every row has the same columns (the HDF5 layer table is one record array)
            row.update({"macs": ev.get(events.MAC, 0), "arrays": 0, "copies": 0, "conversions": 0})
        layers.append(row)
    cfg = {"mapped_layers": {n: p.to_dict() for n, p in plans.items()}, "layer_kinds": dict(kinds),
           "events_per_inference": ledger.totals(), "ledger": ledger.to_dict(),
           "leakage_j": cost.leakage_per_component, "macro_components": sorted(arch.macro_kinds()),
           "energy_per_layer_component": cost.energy_per_layer_component, **cost.config}
    return Report(accuracy=0.0, digital_accuracy=0.0, energy_j=sum(r["energy_j"] for r in layers),
                  latency_s=sum(r["latency_s"] for r in layers), throughput_inf_per_s=cost.throughput_inf_per_s,
                  area_m2=cost.area_m2, layers=layers, components=cost.energy_per_component, config=cfg)


def checkpoint_line(config: dict[str, Any]) -> str:
    """Which checkpoint a report's network came from, where it sits and the accuracy it recorded."""
    path = config.get("checkpoint")
    if not path:
        return "none (a network given in Python, not loaded from a checkpoint)"
    acc = config.get("checkpoint_test_accuracy")
    recorded = "no recorded test accuracy" if acc is None else f"recorded test accuracy {100 * float(acc):.2f} %"
    if acc is None and config.get("checkpoint_test_aee_px") is not None:   # a flow network
        recorded = f"recorded test AEE {float(config['checkpoint_test_aee_px']):.3f} px"
    origin = {"shipped": "shipped with cimsim", "user": "yours, from the user checkpoint folder",
              "file": "a file given"}.get(config.get("checkpoint_origin") or "", "")
    shadows = config.get("checkpoint_shadows")
    note = f"; it shadows the shipped {Path(shadows).name}" if shadows else ""
    return f"{path} ({', '.join(x for x in (origin, recorded) if x)}{note})"


# ---------------------------------------------------------------------------------------------------
# helpers

_PREFIXES = [(1e-15, "f"), (1e-12, "p"), (1e-9, "n"), (1e-6, "u"), (1e-3, "m"), (1.0, ""), (1e3, "k"), (1e6, "M"),
             (1e9, "G"), (1e12, "T"), (1e15, "P")]


def si_prefix(magnitude: float) -> tuple[float, str]:
    """The SI scale and prefix that show ``magnitude`` (> 0) between 1 and 1000: (1e-9, 'n') for 3e-8."""
    scale, prefix = _PREFIXES[0]
    for s, p in _PREFIXES:
        if magnitude >= s:
            scale, prefix = s, p
    return scale, prefix


def fmt_si(value: float, unit: str) -> str:
    """Format with an SI prefix and 4 significant digits, e.g. fmt_si(1.23e-6, 'J') -> '1.23 uJ'."""
    if value is None or not math.isfinite(value):
        return f"{value} {unit}"
    if value == 0:
        return f"0 {unit}"
    scale, prefix = si_prefix(abs(float(f"{value:.4g}")))  # round first: 999.96e-9 J prints as 1 uJ, not 1000 nJ
    return f"{value / scale:.4g} {prefix}{unit}"


def _pct(x: float) -> str:
    return f"{100 * x:6.2f} %"


def _finite_or_inf(x) -> bool:
    return isinstance(x, (int, float, np.number)) and not isinstance(x, bool) and not math.isnan(x)


def _error(x) -> str:
    """A relative error as a percentage ('exact' for 0, '-' where there is none)."""
    if not _finite_or_inf(x):
        return "-"
    return "exact" if x == 0 else f"{100 * x:.3g} %"


def _rate(x) -> str:
    return f"{100 * x:.3g} %" if _finite_or_inf(x) else "-"


def _snr(rel_error: float) -> str:
    """Signal-to-error ratio of a relative RMS error: -20 log10(rel_error) dB."""
    if rel_error == 0:
        return "inf dB"
    return "-inf dB" if math.isinf(rel_error) else f"{-20 * math.log10(rel_error):.1f} dB"


def _numeric_nulls(layers: list[dict]) -> list[dict]:
    """Nulls back to NaN in numeric layer columns (strict JSON writes NaN as null)."""
    for col in _layer_columns(layers):
        values = [r.get(col) for r in layers]
        if any(v is None for v in values) and all(v is None or _finite_or_inf(v) for v in values):
            for r in layers:
                if r.get(col, 0) is None:
                    r[col] = math.nan
    return layers


def _grid(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    fmt = lambda cells: "  " + "  ".join(c.ljust(w) if i < 2 else c.rjust(w)  # noqa: E731
                                         for i, (c, w) in enumerate(zip(cells, widths)))
    return [fmt(header), "  " + "  ".join("-" * w for w in widths), *[fmt(r) for r in rows]]


def _layer_columns(layers: list[dict]) -> list[str]:
    cols: list[str] = []
    for r in layers:
        for k in r:
            if k not in cols:
                cols.append(k)
    return cols


def _h5str():
    import h5py
    return h5py.string_dtype(encoding="utf-8")


def json_default(o):
    """``json.dumps(default=...)`` for numpy scalars and arrays (the report's and the sweep file's JSON)."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def _file_path(path, what: str) -> Path:
    """``path`` (a str or os.PathLike, not empty) as a Path; anything else is one ConfigError."""
    if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
        raise ConfigError(f"{what} takes a file path (a str or pathlib.Path), got {path!r}")
    return Path(path)


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=json_default))


def _write_attrs(group, mapping: dict) -> None:
    """Readable attributes for each config value (nested dicts become sub-groups)."""
    for key, value in mapping.items():
        key = str(key).replace("/", "_")
        if isinstance(value, dict):
            _write_attrs(group.create_group(key), value)
        elif value is None:
            group.attrs[key] = "None"
        elif isinstance(value, (bool, int, float, str, np.number)):
            group.attrs[key] = value
        else:
            group.attrs[key] = json.dumps(value, default=json_default)
