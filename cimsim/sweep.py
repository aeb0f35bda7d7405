"""Design-point sweeps: a grid of (architecture, parameters, seed) points, each evaluated once, into one file.

``run_sweep(path, points, settings)`` evaluates every point of the grid that the sweep file at ``path``
does not hold yet and appends each one to it as soon as it finishes (:mod:`cimsim.sweepfile`), so an
interrupted sweep resumes where it stopped, losing at most the points that were running. Points run in
this process (``workers=1``), in local processes (``workers=N``) or on a Dask cluster
(``scheduler="tcp://host:8786"``, e.g. a ``dask-jobqueue`` SLURM cluster's address): :mod:`cimsim.sweep_pool`;
the file is only ever written by the process that called ``run_sweep``.

The evaluation of one point is a function ``evaluate_point(point, settings) -> Report``
(default :func:`evaluate_point`: the network on the architecture through :func:`cimsim.mappers.evaluate`);
tests and studies may pass their own. It must be picklable (a module-level function) to run in other
processes.

Like the ``cimsim/cli/`` package this module stands on top of every layer (DESIGN.md), so it imports the
workloads, architectures and mappers, lazily, inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from cimsim._version import __version__
from cimsim.errors import CimsimError, ConfigError
from cimsim.fileio import stale_temporaries
from cimsim.networks import load_model_and_data, reference_kwargs
from cimsim.progress import progress as progress_bar
from cimsim.report import Report
from cimsim.sweepfile import Point, SweepFileError, aggregate
from cimsim import sweep_admm, sweep_checks, sweep_pool, sweep_snn, sweepfile, sweepgrid

# the grid's parsers (cimsim.sweepgrid), where the command line and studies find them
MAX_ADC_BITS, MAX_GRID_VALUES = sweepgrid.MAX_ADC_BITS, sweepgrid.MAX_GRID_VALUES
parse_adc_bits, parse_values, parse_grid = sweepgrid.parse_adc_bits, sweepgrid.parse_values, sweepgrid.parse_grid

DEFAULT_CALIBRATION = 512   # training examples that calibrate ranges, as 'cimsim run' (issue 19's mapping target
#                             calibrates on 512 images; our choice: a layer's 99.99th input percentile then rests on
#                             tens of thousands of values or more: 43,008 for LeNet-5's last layer, 401,408 its first)


# --------------------------------------------------------------------------------------------------
# model and data (once per process)

def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------------
# settings and grid

@dataclass(frozen=True)
class Settings:
    """What every point of a sweep shares. All but ``data_dir`` are stored in the file and compared on resume."""

    model: str
    dataset: str
    checkpoint: str = ""
    checkpoint_sha256: str = ""
    limit: int | None = None
    overrides: dict[str, str] = field(default_factory=dict)   # --set key=value, as given
    calibration: int = DEFAULT_CALIBRATION
    batch_size: int = 64
    backend: str = "numba"
    device: str = "cpu"
    cimsim_version: str = __version__
    data_dir: str | None = None  # where this machine finds the dataset: not a result-changing setting

    def __post_init__(self):   # known names and positive sizes, before any file is created (one ConfigError)
        sweep_checks.check_settings(self)

    def fixed(self) -> dict[str, Any]:
        """The settings stored in the sweep file (every field but ``data_dir``)."""
        d = asdict(self)
        d.pop("data_dir")
        d["overrides"] = dict(sorted(self.overrides.items()))
        return d


NOT_COMPARED = {"checkpoint"}  # its path may change with the machine; its content is compared by sha256


def settings_differences(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """'name: file X, now Y' for each fixed setting that differs (the checkpoint by content, not path)."""
    out = []
    for k in sorted((set(stored) | set(current)) - NOT_COMPARED):
        a, b = stored.get(k), current.get(k)
        if json.loads(json.dumps(a)) != json.loads(json.dumps(b)):
            out.append(f"{k}: file {a!r}, now {b!r}")
    return out


def parse_archs(text: str) -> list[str]:
    """A comma list of architecture names, each checked with :func:`cimsim.arch.get` (distinct, in order)."""
    from cimsim import arch as arch_mod

    names: list[str] = []
    for item in str(text).split(","):
        name = item.strip().lower()
        if not name:
            raise ConfigError(f"--arch {text!r} has an empty name; give a comma list such as "
                              f"{','.join(arch_mod.names())}")
        arch_mod.get(name)  # unknown -> ConfigError listing the known names
        if name not in names:
            names.append(name)
    return names


def has_adc_bits(arch_name: str) -> bool:
    """Whether sweeping ADC bits makes sense for the architecture (it has an ADC, ``adc.bits``)."""
    from cimsim import arch as arch_mod

    return arch_mod.get(arch_name).has_adc


def arch_overrides(arch_name: str, overrides: dict[str, str]) -> dict[str, str]:
    """The ``--set`` overrides that apply to ``arch_name`` (those naming one of its parameters)."""
    from cimsim import arch as arch_mod

    spec = arch_mod.get(arch_name)
    return {k: v for k, v in overrides.items() if spec.has_param(k)}


def has_key(spec, key: str) -> bool:
    """Whether a ``--grid`` / ``--set`` key applies to the architecture ``spec``: one of its parameters, or an ADMM
    knob (``admm.*``, :mod:`cimsim.sweep_admm`) where ADMM pruning applies, or a spiking network's time steps
    (``time_steps``, :mod:`cimsim.sweep_snn`: every architecture)."""
    if sweep_snn.is_knob(key):
        return True
    return sweep_admm.applies(spec) if sweep_admm.is_knob(key) else spec.has_param(key)


def admm_overrides(arch_name: str, overrides: dict[str, str]) -> dict[str, str]:
    """The ``--set admm.*`` overrides, where ADMM pruning applies to ``arch_name``."""
    from cimsim import arch as arch_mod

    spec = arch_mod.get(arch_name)
    return {k: v for k, v in overrides.items() if sweep_admm.is_knob(k) and sweep_admm.applies(spec)}


def point_params(point: Point, overrides: dict[str, str]) -> dict[str, Any]:
    """The parameters of one point: its applicable overrides plus its swept values (the ADMM knobs, ``admm.*``, and
    the time steps beside the architecture's parameters; :func:`cimsim.sweep_admm.split` and
    :func:`cimsim.sweep_snn.split` part them)."""
    return {**arch_overrides(point.arch, overrides), **admm_overrides(point.arch, overrides),
            **sweep_snn.overrides(overrides), **point.param_dict}


MAX_POINTS = 100_000         # points of one sweep (our bound: a sweep file of ~100k reports is already huge)


def grid_size(archs: Iterable[str], grid: dict[str, list[str]], seeds: int) -> int:
    """How many points the grid makes, computed before any point is (the per-architecture product of the
    values of the keys it has, times the seeds)."""
    from cimsim import arch as arch_mod

    total = 0
    for a in archs:
        spec = arch_mod.get(a)
        n = 1
        for k, values in grid.items():
            if has_key(spec, k):
                n *= len(values)
        total += n
    return total * seeds


def make_points(archs: Iterable[str], adc_bits: list[int] | None = None, seeds: int = 1,
                overrides: dict[str, str] | None = None, grid: dict[str, list[str]] | None = None,
                notes: list[str] | None = None) -> list[Point]:
    """The grid: per architecture, the Cartesian product of the values of every ``grid`` key it has (a key it
    lacks is skipped for it, and said once in ``notes``), times seeds ``0..seeds-1``.

    ``adc_bits`` is the shorthand for ``grid['adc_bits']``; an architecture with an ADC always records its
    ADC bits in its points (its own when they are not swept). Every point's architecture is built here, so a
    bad override or value fails before any work starts; a grid beyond :data:`MAX_POINTS` is refused with its
    size before anything is built.

    ``archs`` is a list of names (``['isaac']``, not ``'isaac'``) and each ``grid`` value a list of values
    (``{'rows': ['64', '128']}``; a str such as ``'64'`` is refused, not taken apart character by character).
    """
    import itertools

    from cimsim import arch as arch_mod
    from cimsim.arch.params import hinted

    sweep_checks.check_grid_args(archs, adc_bits, seeds, grid)
    archs = list(archs)
    overrides = dict(overrides or {})
    grid = dict(grid or {})
    if adc_bits is not None:
        if "adc_bits" in grid or "adc.bits" in grid:
            raise ConfigError("give ADC bits once: --adc-bits or --grid adc_bits=..., not both")
        grid["adc_bits"] = [str(b) for b in adc_bits]
    if "adc_bits" in overrides or "adc.bits" in overrides:
        raise ConfigError("adc_bits is swept: give it once, with --adc-bits, not --set adc_bits "
                          "(in Python: make_points(adc_bits=[...]), not overrides={'adc_bits': ...})")
    for k in overrides:
        if k in grid:
            raise ConfigError(f"{k} is swept: give it once, with --grid, not --set {k} "
                              f"(in Python: grid={{{k!r}: [...]}}, not in overrides)")
    knobs = {k: sweep_admm.parse(k, v) for k, v in overrides.items() if sweep_admm.is_knob(k)}   # checked now
    grid_knobs = {k: [sweep_admm.parse(k, v) for v in vs] for k, vs in grid.items() if sweep_admm.is_knob(k)}
    for k, vs in grid_knobs.items():
        if len(set(vs)) < len(vs):
            raise ConfigError(f"the grid's {k} (--grid {k}=...) names a value twice "
                              f"({', '.join(map(str, grid[k]))}; off is 1)")
    if (knobs or grid_knobs) and "admm.compression" not in {**knobs, **grid_knobs} and notes is not None:
        notes.append("ADMM knobs without admm.compression: the network stays dense (give e.g. "
                     "--grid admm.compression=1,2,4,8)")
    grid_knobs.update(sweep_snn.grid_values(grid, overrides))   # time steps: checked now, whole numbers >= 1
    unused = set(overrides) - set(sweep_snn.overrides(overrides))
    for a in archs:
        unused -= set(arch_overrides(a, overrides)) | set(admm_overrides(a, overrides))
    if any(sweep_admm.is_knob(k) for k in unused):
        raise ConfigError(f"ADMM pruning applies to no architecture in the sweep ({', '.join(archs)}): add one that "
                          "maps a plain network to crossbars, e.g. --arch isaac")
    if unused:
        raise ConfigError(f"no architecture in the sweep ({', '.join(archs)}) has parameter "
                          f"{hinted(sorted(unused), map(arch_mod.get, archs))}; see 'cimsim archs show ARCH'")
    size = grid_size(archs, grid, seeds)
    if size > MAX_POINTS:
        raise ConfigError(f"the sweep grid has {size:,} points, more than {MAX_POINTS:,}; sweep fewer values "
                          "or seeds, or split it over several files")
    unswept = [k for k in grid if not any(has_key(arch_mod.get(a), k) for a in archs)]
    if adc_bits is not None and "adc_bits" in unswept:   # the shorthand on ADC-less architectures: a note
        grid.pop("adc_bits")
        unswept.remove("adc_bits")
        if notes is not None:
            notes.append(f"no architecture in the sweep ({', '.join(archs)}) has ADC bits; --adc-bits is unused")
    if any(sweep_admm.is_knob(k) for k in unswept):
        raise ConfigError(f"ADMM pruning applies to no architecture in the sweep ({', '.join(archs)}): add one that "
                          "maps a plain network to crossbars, e.g. --arch isaac")
    if unswept:
        raise ConfigError(f"no architecture in the sweep ({', '.join(archs)}) has parameter "
                          f"{hinted(unswept, map(arch_mod.get, archs))}; see 'cimsim archs show ARCH'")
    points: list[Point] = []
    for a in archs:
        base = arch_mod.get(a, **arch_overrides(a, overrides))
        keys = [k for k in grid if has_key(base, k)]
        for k in grid:
            if k not in keys and notes is not None:
                notes.append(f"{a} has no parameter {k}: it is not swept there" if not sweep_admm.is_knob(k) else
                             f"ADMM pruning does not apply to {a} (it maps no plain network to crossbars): "
                             f"{k} is not swept there")
        if knobs and not sweep_admm.applies(base) and notes is not None:
            notes.append(f"ADMM pruning does not apply to {a}: --set {', '.join(knobs)} is unused there")
        arch_keys = [k for k in keys if k not in grid_knobs]
        for combo in itertools.product(*(grid_knobs[k] if k in grid_knobs else grid[k] for k in keys)):
            chosen = dict(zip(keys, combo))
            spec = base.with_params(**{k: chosen[k] for k in arch_keys})      # validate now, not mid-sweep
            values = spec.params()
            swept_values = {base.aliases.get(k, k): values[base.aliases.get(k, k)] for k in arch_keys}
            swept_values.update({k: chosen[k] for k in keys if k in grid_knobs})
            if spec.has_adc:
                swept_values.setdefault("adc.bits", values["adc.bits"])
            points.extend(Point.make(a, swept_values, s) for s in range(seeds))
    return points


# --------------------------------------------------------------------------------------------------
# evaluating one point

_CONTEXT: dict[str, tuple] = {}  # settings -> (model, meta, data): one network in memory per process
# whether a point evaluated in this process reports its own progress (run_sweep turns it on when the points
# run here, one at a time, so a long point still shows its mapping and simulation going forward)
_POINT_PROGRESS = {"enabled": False}


def missing_fine_tunes(points: Iterable[Point], model: str, dataset: str, overrides: dict[str, str],
                       done: Iterable[str] = ()) -> None:
    """Refuse, before any point runs, a grid whose points need a network fine-tuned for their setting (hcim's
    partial-sum QAT: one checkpoint per array, bits and readout) where none exists: one line naming the settings
    without one, how many points they are, and how to make or drop them. Points in ``done`` (finished in the sweep
    file) need nothing."""
    from cimsim import arch as arch_mod
    from cimsim.mappers import qat
    from cimsim.networks import existing_psq_checkpoint, finetune_command, psq_checkpoint_name
    from cimsim.workloads import datasets, zoo

    model, dataset = zoo.canonical_name(model), datasets.canonical_name(dataset)
    done = set(done)
    specs: dict[tuple, Any] = {}

    def spec_of(arch: str, params: dict):
        key = (arch, json.dumps(params, sort_keys=True, default=str))
        if key not in specs:
            specs[key] = arch_mod.get(arch, **params)
        return specs[key]

    missing: dict[str, tuple[dict, int]] = {}   # checkpoint name -> (the parameters that set it, points)
    for point in points:
        if point.key in done:
            continue
        arch_params = sweep_admm.split(sweep_snn.split(point_params(point, overrides))[0])[0]
        spec = spec_of(point.arch, arch_params)
        if not spec.learned_column_scales:
            continue
        cfg = qat.PSQConfig.from_arch(spec)
        if existing_psq_checkpoint(model, dataset, cfg) is not None:
            continue
        name = psq_checkpoint_name(model, dataset, cfg)
        if name not in missing:   # the parameters without which the fine-tune's setting would differ
            setting = {k: v for k, v in arch_params.items() if qat.PSQConfig.from_arch(
                spec_of(point.arch, {j: w for j, w in arch_params.items() if j != k})) != cfg}
            missing[name] = (setting, 0)
        missing[name] = (missing[name][0], missing[name][1] + 1)
    if not missing:
        return
    total = sum(n for _, n in missing.values())
    name, (setting, _) = next(iter(missing.items()))
    where = ", ".join(f"{k}={v}" for k, v in setting.items()) or "its defaults"
    raise ConfigError(f"{total} point(s) of this grid need a network fine-tuned for hcim at a setting without one "
                      f"({len(missing)} setting(s), the first {where}: no {name} here or shipped); make it with "
                      f"'{finetune_command(model, dataset, 'hcim', setting)}', or sweep hcim separately without "
                      "those values")


def _settings_key(settings: Settings) -> str:
    return json.dumps({**settings.fixed(), "data_dir": settings.data_dir}, sort_keys=True)


def prime_context(settings: Settings, model, meta, data) -> None:
    """Hand this process's already loaded network and data to the point evaluations."""
    _CONTEXT.clear()
    _CONTEXT[_settings_key(settings)] = (model, meta, data)


def _context(settings: Settings):
    key = _settings_key(settings)
    if key not in _CONTEXT:
        model, meta, data, ckpt = load_model_and_data(settings.model, settings.dataset, settings.data_dir,
                                                       settings.checkpoint or None)
        if settings.checkpoint_sha256 and file_sha256(ckpt) != settings.checkpoint_sha256:
            raise ConfigError(f"checkpoint {ckpt} on this machine differs from the one the sweep started with "
                              f"(sha256 {settings.checkpoint_sha256[:12]}...); give every worker the same file")
        prime_context(settings, model, meta, data)
    return _CONTEXT[key]


def _base_sha256(settings: Settings, data) -> str:
    """The sweep's network file by content (the settings' record, else the checkpoint found by model and dataset)."""
    if settings.checkpoint_sha256:
        return settings.checkpoint_sha256
    from cimsim.workloads import train

    return file_sha256(settings.checkpoint or train.find_checkpoint(settings.model, data.name))


def evaluate_point(point: Point, settings: Settings) -> Report:
    """The network of ``settings`` on the point's architecture: accuracy, energy, latency, area."""
    from cimsim import arch as arch_mod
    from cimsim.mappers import evaluate

    model, meta, data = _context(settings)
    params, steps = sweep_snn.split(point_params(point, settings.overrides))   # time steps: the network's
    arch_params, knob_params = sweep_admm.split(params)
    spec = arch_mod.get(point.arch, **arch_params)
    if spec.learned_column_scales or spec.learned_sense_amp_scales:   # hcim / adcless-snn: the network fine-tuned
        # for it (partial-sum QAT / sense-amp training), else (adcless-snn) the float one with calibrated scales
        key = ("psq", _settings_key(settings), json.dumps(arch_params, sort_keys=True))
        if key not in _CONTEXT:
            m, mt, _, ck = load_model_and_data(settings.model, settings.dataset, settings.data_dir, None,
                                               arch=spec, overrides=arch_params)   # the point's own, for a finetune hint
            _CONTEXT[key] = (m, mt, reference_kwargs(mt, ck), str(ck))
        model, meta, reference, checkpoint = _CONTEXT[key]
    else:
        reference, checkpoint = {}, settings.checkpoint
    model = sweep_snn.at_time_steps(model, steps)   # a copy at the point's T: the cached network keeps its own
    admm_record, network = None, ""
    if knob_params and sweep_admm.applies(spec):     # ADMM pruning (cimsim.sweep_admm): the pruned network, cached
        knobs = sweep_admm.Knobs.from_params(knob_params)
        if knobs.prunes:
            model, admm_record = sweep_admm.pruned_network(
                model, meta, data, spec, knobs, checkpoint_sha256=_base_sha256(settings, data),
                device=settings.device, test_limit=settings.limit, progress=_POINT_PROGRESS["enabled"])
            network = checkpoint = admm_record["network"]
        else:
            admm_record = sweep_admm.dense_record(model, knobs)
    loader = data.loader("test", batch_size=settings.batch_size, limit=settings.limit)
    calibration = data.loader("train", batch_size=settings.batch_size, limit=settings.calibration, shuffle=False)
    config = {"model": meta["model"], "dataset": data.name,
              **({"checkpoint": checkpoint} if checkpoint else {}),   # else the loaded model's own record
              "checkpoint_test_accuracy": meta.get("test_accuracy"), "limit": settings.limit,
              "batch_size": settings.batch_size, "calibration": settings.calibration, "seed": point.seed,
              "data_source": data.source, "sweep_point": point.to_dict(), **sweep_snn.record(steps),
              **({"admm": admm_record} if admm_record is not None else {})}
    if admm_record is not None and network:
        config["checkpoint_test_accuracy"] = admm_record["float_test_accuracy"]
    if reference or not spec.maps_to_crossbars:
        return evaluate(model, spec, loader, calibration=calibration, seed=point.seed,
                        progress=_POINT_PROGRESS["enabled"],
                        config=config, backend=settings.backend, device=settings.device, **reference)
    return _evaluate_programmed(point, settings, spec, model, loader, calibration, config, network)


# the programmed networks of this process: (settings, architecture, seed, network, time steps) -> MappedModel, the
# most recently used last. Points that differ only in converter settings (ADC bits) put one on their architecture
# (MappedModel.retarget) instead of mapping, programming and calibrating again. A grid's seeds vary fastest, so
# a network per seed is kept, at most MAX_PROGRAMMED of them (our bound on the memory they hold)
_PROGRAMMED: dict[tuple, Any] = {}
MAX_PROGRAMMED = 4


def _evaluate_programmed(point: Point, settings: Settings, spec, model, loader, calibration, config,
                         network: str = "") -> Report:
    """What :func:`cimsim.mappers.evaluate` does (map, then evaluate), reusing the programmed network of an
    earlier point where only the converters differ: bit-identical reports, one mapping. ``network`` names a network
    other than the sweep's own (an ADMM-pruned one: its cache file), '' for the sweep's."""
    from cimsim.mappers import mapper

    key = (_settings_key(settings), point.arch, point.seed, network, sweep_snn.steps_of(model))
    mapped = _PROGRAMMED.pop(key, None)
    if mapped is None or not mapped.retarget(spec):
        mapped = None
        while len(_PROGRAMMED) >= MAX_PROGRAMMED:      # free the least recently used before mapping anew
            _PROGRAMMED.pop(next(iter(_PROGRAMMED)))
        mapped = mapper.map_model(model, spec, calibration, seed=point.seed, backend=settings.backend,
                                  device=settings.device, progress=_POINT_PROGRESS["enabled"])
    _PROGRAMMED[key] = mapped
    return mapped.evaluate(loader, progress=_POINT_PROGRESS["enabled"], config=config)


# --------------------------------------------------------------------------------------------------
# the sweep

class SweepPointError(CimsimError):
    """A point of a sweep failed with a user error; the finished points stay in the file."""


require_dask = sweep_pool.require_dask   # (cimsim.sweep_pool) also here, where the CLI calls it


def run_sweep(path: str | os.PathLike, points: list[Point], settings: Settings, *,
              evaluate_point: Callable[[Point, Settings], Report] = evaluate_point, workers: int = 1,
              scheduler: str | None = None, executor=None, progress: bool | None = None,
              on_point: Callable[[Point, Report, bool], None] | None = None) -> dict[Point, Report]:
    """Evaluate the points the file at ``path`` lacks, appending each as it finishes; return all ``points``.

    The file is created with ``settings.fixed()`` if missing; an existing file with other fixed settings is
    refused (SweepFileError naming what differs). ``on_point(point, report, from_file)`` is called for each
    point already in the file (``from_file=True``) and then for each as it finishes. ``workers > 1`` runs
    points in that many local processes; ``scheduler`` (an address) on a Dask cluster; ``executor`` on any
    ``concurrent.futures`` executor you pass (left running). Progress goes to stderr (``progress=False``
    silences it): a line per finished point with how many are left and an estimate of the time left.
    """
    points = sweep_checks.check_points(points)
    if not isinstance(settings, Settings):
        raise ConfigError(f"settings is a sweep.Settings, e.g. Settings('lenet5', 'fashion-mnist'), got {settings!r}")
    path = Path(path)
    if not path.parent.is_dir():
        raise ConfigError(f"folder {path.parent} for --out does not exist; create it or choose another --out")
    if workers < 1:
        raise ConfigError(f"--workers must be a positive number of processes, got {workers}")
    keys = [p.key for p in points]
    if len(set(keys)) != len(keys):
        raise ConfigError("the sweep grid names a point twice")
    if sweep_snn.used(points, settings.overrides):   # time steps the network cannot take: refused before any point
        sweep_snn.check_model(_context(settings)[0], settings.model, sweep_snn.used(points, settings.overrides))
    fixed = settings.fixed()
    client = None
    if executor is None and scheduler is not None:
        client, executor = sweep_pool.dask_executor(scheduler)  # connect before touching the file
    with contextlib.ExitStack() as stack:
        if client is not None:
            stack.callback(client.close)
        stack.enter_context(sweepfile.exclusive(path))
        for stale in stale_temporaries(path):   # left by a sweep killed mid-write; we hold the lock: none is live
            with contextlib.suppress(OSError):
                stale.unlink()
        stored = sweepfile.read_settings(path)
        if stored is None:
            sweepfile.clean_journal(path, drop_points=True)   # points of a file that was removed: not ours
            sweepfile.create(path, fixed)
        else:
            diff = settings_differences(stored, fixed)
            if diff:
                raise SweepFileError(f"{path} holds a sweep with other settings ({'; '.join(diff)}); "
                                     "choose another --out, or re-run with the file's settings to extend it")
            sweepfile.clean_journal(path)
            sweepfile.fold(path)   # points a killed sweep left in the journal
        stack.enter_context(sweepfile.folding(path))   # however the sweep ends, its finished points end up in the file
        done = sweepfile.finished_keys(path)
        todo = [p for p in points if p.key not in done]
        if on_point is not None:
            cached = sweepfile.read_points(path, keys=set(keys) & done)
            for p in points:
                if p in cached:
                    on_point(p, cached[p], True)
        print(f"cimsim sweep: {len(points)} points, {len(points) - len(todo)} already in {path}, "
              f"{len(todo)} to run", file=sys.stderr)

        def finish(point: Point, report: Report) -> None:
            sweepfile.append(path, point, report, arch_params=report.config.get("arch_params"))
            if on_point is not None:
                on_point(point, report, False)

        def failed(point: Point, exc: CimsimError) -> SweepPointError:
            n = len(sweepfile.finished_keys(path) & set(keys))
            return SweepPointError(f"point {point.key}: {exc} ({n} of {len(points)} points are in {path}; "
                                   "re-run the same command to resume)")

        bar = progress_bar(desc="sweep", total=len(todo), unit="points", enabled=progress, each=True)
        try:
            if todo and executor is None and scheduler is None and workers == 1:
                _POINT_PROGRESS["enabled"] = progress is not False
                for p in todo:
                    try:
                        report = evaluate_point(p, settings)
                    except CimsimError as exc:
                        raise failed(p, exc) from None
                    finish(p, report)
                    bar.set_postfix_str(f"{p.key} done")
                    bar.update()
            elif todo:
                sweep_pool.run_parallel(todo, settings, evaluate_point, workers, executor, finish, failed, bar)
        finally:
            _POINT_PROGRESS["enabled"] = False
            _PROGRAMMED.clear()
            bar.close()
    return sweepfile.read_points(path, keys=set(keys))


# --------------------------------------------------------------------------------------------------
# output

def point_summary(point: Point, report: Report, from_file: bool = False) -> dict[str, Any]:
    """The per-point record of ``cimsim sweep --json``."""
    return {"key": point.key, "arch": point.arch, "params": point.param_dict, "adc_bits": point.adc_bits,
            "seed": point.seed, "area_m2": report.area_m2,
            "accuracy": report.accuracy, "digital_accuracy": report.digital_accuracy,
            "energy_j": report.energy_j, "latency_s": report.latency_s, "n_examples": report.n_examples,
            "crossbars": sum(l.get("arrays", 0) for l in report.layers), **_admm_summary(report),
            "from_file": from_file}


def _admm_summary(report: Report) -> dict[str, Any]:
    """An ADMM point's weight compression and whether it trained its network (cimsim.sweep_admm), else nothing."""
    rec = report.config.get("admm") or {}
    return {"weight_compression": rec["compression"], "admm_trained": rec["trained"]} if rec else {}


def table(results: dict[Point, Report]) -> str:
    """A compact grid: one row per (architecture, swept values), mean and range over seeds."""
    from cimsim.report import fmt_si

    rows = aggregate(results)
    keys = list(dict.fromkeys(k for r in rows for k in r["params"]))
    pruned = any(r["weight_compression"] is not None for r in rows)     # an ADMM sweep: compression and crossbars
    header = ["arch", *keys, "seeds", "accuracy (min-max)", "digital", "energy/inf", "latency/inf", "area",
              *(["weights/kept", "crossbars"] if pruned else [])]
    cells = []
    for r in rows:
        acc = f"{100 * r['accuracy']:6.2f} %"
        if r["seeds"] > 1:
            acc += f" ({100 * r['accuracy_min']:.2f}-{100 * r['accuracy_max']:.2f})"
        cells.append([r["arch"], *(sweepfile.format_value(r["params"][k]) if k in r["params"] else "-"
                                   for k in keys), str(r["seeds"]), acc,
                      f"{100 * r['digital_accuracy']:6.2f} %", fmt_si(r["energy_j"], "J"),
                      fmt_si(r["latency_s"], "s"), f"{r['area_m2'] * 1e6:.4g} mm^2",
                      *([("-" if r["weight_compression"] is None else f"{r['weight_compression']:.2f}x"),
                         f"{r['crossbars']:g}"] if pruned else [])])
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(header)]
    line = lambda cs: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                                for i, (c, w) in enumerate(zip(cs, widths)))
    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(c) for c in cells)])
