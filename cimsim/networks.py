"""Trained networks for an architecture: the checkpoint a run needs, found, loaded and checked.

``load_model_and_data`` gives ``cimsim run`` / ``cimsim sweep`` the network and its dataset: the
``cimsim train`` checkpoint, or, for an architecture with learned partial-sum scale factors (hcim), the
network fine-tuned for it by ``cimsim finetune`` (:mod:`cimsim.mappers.qat`), whose checkpoints are
saved, found (the user's directory first, then the shipped ones) and rebuilt here.

Like the ``cimsim/cli/`` package and ``cimsim/sweep.py`` this module stands on top of every layer (DESIGN.md): it
joins the zoo and checkpoint directories of ``workloads`` with the PSQ layers of ``mappers``, which may not
import each other.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from cimsim.errors import CheckpointError, ConfigError, warn_user
from cimsim.mappers import qat, snn_qat
from cimsim.mappers.mapper import replace_module
from cimsim.mappers.unfuse import unfuse
from cimsim.provenance import tag_model
from cimsim.workloads import datasets, train, zoo


def load_model_and_data(model_name: str | None, dataset: str, data_dir=None, checkpoint=None, arch=None,
                        overrides=None, float_network: bool = False, option: str | None = None):
    """The trained network and its dataset, checked against each other: (model, metadata, data, path).

    ``model_name``: the model a ``checkpoint`` must hold (one of another model is refused), or None to take the
    checkpoint's own; without ``checkpoint``, the model whose checkpoint is looked for (then required).

    The network is the one ``arch`` runs (:func:`load_network`: for an architecture whose readout needs a fine-tuned
    network, the one fine-tuned for it)."""
    if model_name is None and not checkpoint:
        raise ConfigError("name a model or a checkpoint: pass --model or --checkpoint")
    data = datasets.load(dataset, data_dir=data_dir)
    model, meta, ckpt = load_network(model_name, data, checkpoint, arch, overrides, float_network, option)
    return model, meta, data, ckpt


def load_network(model_name: str | None, data, checkpoint=None, arch=None, overrides=None,
                 float_network: bool = False, option: str | None = None):
    """The trained network ``arch`` runs on ``data`` (a loaded dataset), checked against it: (model, metadata, path).

    The rule of ``cimsim run`` and ``cimsim compare`` (and of ``cimsim sweep``'s points): an architecture whose readout
    needs a network fine-tuned for it (``fine_tune_kind``) runs the one made by ``cimsim finetune`` for its setting,
    found by model and dataset (the user's directory first, then the shipped ones). Where there is none, hcim's
    (partial-sum QAT, :mod:`cimsim.mappers.qat`) is refused, naming the command that makes it: a float network's
    accuracy through its comparators is not hcim's; adcless-snn maps the float network with sense-amp scales set from
    the calibration partial sums and says so (its documented fallback, README). ``float_network=True``
    (``--float-network``) maps the float network on every architecture, fine-tuned ones not used:
    :func:`missing_fine_tune` then names what the accuracy is of. A ``checkpoint`` given is run as it is. ``option``:
    the caller's name of that opt-in (``"--float-network"``), which the refusal then offers beside the fine-tune."""
    overrides = overrides or {}
    kind = fine_tune_kind(arch) if arch is not None and not float_network and not checkpoint else None
    if kind == "psq":
        cfg = qat.PSQConfig.from_arch(arch)
        ckpt = find_psq_checkpoint(
            model_name, data.name, cfg,
            command=finetune_command(zoo.canonical_name(model_name), data.name, arch.name, overrides),
            instead=f"pass {option} to run the float network with calibrated scales (its accuracy is then not "
                    f"{arch.name}'s)" if option else None, arch=arch.name)
        model, meta = load_any_checkpoint(ckpt)
    elif kind == "sa":   # adcless-snn: fine-tuned for its sense amps, else the float network with calibrated scales
        cfg = snn_qat.SAConfig.from_arch(arch)
        ckpt = find_sa_checkpoint(model_name, data.name, cfg)
        if ckpt is None:
            ckpt = train.find_checkpoint(model_name, data.name)
            warn_user(f"no network fine-tuned for {arch.name} ({sa_checkpoint_name(model_name, data.name, cfg)}): "
                      "mapping the float network with calibrated sense-amp scales; make one with '"
                      + finetune_command(zoo.canonical_name(model_name), data.name, arch.name, overrides) + "'")
        model, meta = load_sa_checkpoint(ckpt) if is_sa_checkpoint(ckpt) else train.load_checkpoint(ckpt)
    elif checkpoint and arch is not None and arch.learned_column_scales:
        ckpt = Path(checkpoint)
        model, meta = load_any_checkpoint(ckpt)
    elif checkpoint and arch is not None and arch.learned_sense_amp_scales:
        ckpt = Path(checkpoint)
        model, meta = load_sa_checkpoint(ckpt) if is_sa_checkpoint(ckpt) else train.load_checkpoint(ckpt)
    else:
        ckpt = Path(checkpoint) if checkpoint else train.find_checkpoint(model_name, data.name)
        fmt = checkpoint_format(ckpt)
        if fmt == SA_FORMAT:
            raise ConfigError(f"checkpoint {ckpt} was fine-tuned for sense amps ('cimsim finetune --arch "
                              f"adcless-snn'): run it with --arch adcless-snn, or leave --checkpoint out for "
                              f"{arch.name if arch else 'this architecture'} (the float network)")
        # a network fine-tuned by 'cimsim finetune' for hcim (PSQ) maps onto the baselines as fine-tuned
        model, meta = load_psq_checkpoint(ckpt) if fmt == qat.FORMAT else train.load_checkpoint(ckpt)
    missing = [k for k in ("dataset", "test_accuracy") if k not in meta]
    if missing:
        raise CheckpointError(f"checkpoint {ckpt} records no {' or '.join(missing)} in its metadata; re-create it "
                              "with 'cimsim train' or 'cimsim finetune'")
    if model_name is not None and meta.get("model") != zoo.canonical_name(model_name):
        raise ConfigError(f"checkpoint {ckpt} holds {meta.get('model')}, not {zoo.canonical_name(model_name)}: "
                          f"pass --model {meta.get('model')} (or leave --model out) or another --checkpoint")
    if meta["dataset"] != data.name:
        raise ConfigError(f"checkpoint {ckpt} was trained on {meta['dataset']}, not {data.name}: "
                          f"pass --dataset {meta['dataset']} or another --checkpoint")
    if tuple(meta["input_shape"]) != data.input_shape:
        raise ConfigError(f"checkpoint {ckpt} expects inputs {tuple(meta['input_shape'])}, "
                          f"{data.name} gives {data.input_shape}")
    return model, meta, ckpt


def fine_tune_kind(arch) -> str | None:
    """The fine-tune ``arch``'s readout needs: ``"psq"`` (learned partial-sum scales: hcim), ``"sa"`` (learned
    sense-amp scales: adcless-snn), or None."""
    if arch.learned_column_scales:
        return "psq"
    return "sa" if arch.learned_sense_amp_scales else None


def missing_fine_tune(arch, model: nn.Module) -> str | None:
    """What a run's accuracy is of where ``arch``'s readout needs a fine-tuned network and ``model`` is none (the
    float network, mapped with calibrated scales): one phrase for a report or a table; None where nothing is missing
    (a fine-tuned network, or an architecture that needs none)."""
    kind = fine_tune_kind(arch)
    if kind == "psq" and not any(qat.is_psq(m) for m in model.modules()):
        return (f"the float network without {arch.name}'s partial-sum fine-tune (calibrated scales): its accuracy is "
                f"not {arch.name}'s; 'cimsim finetune --arch {arch.name}' makes the fine-tune")
    if kind == "sa" and not any(snn_qat.is_sa(m) for m in model.modules()):
        return (f"the float network without {arch.name}'s sense-amp fine-tune (calibrated sense-amp scales); "
                f"'cimsim finetune --arch {arch.name}' makes the fine-tune")
    return None


def psq_checkpoint_name(model: str, dataset: str, cfg: qat.PSQConfig) -> str:
    return train.checkpoint_name(model, dataset).replace(".pt", f"-{cfg.tag}.pt")


def save_psq_checkpoint(path, model: nn.Module, metadata: dict) -> Path:
    """Weights, column scales and input ranges of a PSQ model (and the metadata as .json beside it)."""
    path = Path(path)
    train.require_finite(model.state_dict(), path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": qat.FORMAT, "format_version": 1, "metadata": json.dumps(metadata),
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    train._atomic_write(path, lambda f: torch.save(payload, f))
    train._atomic_write(path.with_suffix(".json"), lambda f: f.write(json.dumps(metadata, indent=2).encode() + b"\n"))
    return path


def load_psq_checkpoint(path) -> tuple[nn.Module, dict]:
    """Rebuild a PSQ fine-tuned zoo model: (model in eval mode with its PSQ layers, metadata)."""
    path = Path(path)
    payload = train.read_payload(path, "'cimsim train' or 'cimsim finetune'")   # what the file is, if no checkpoint
    try:
        if not isinstance(payload, dict) or payload.get("format") != qat.FORMAT:
            raise ValueError("not a cimsim PSQ checkpoint")
        meta = train.check_metadata(json.loads(payload["metadata"]), ("model", "input_shape", "num_classes"))
        cfg = qat.PSQConfig(**meta["psq"])
        model = zoo.rebuild(meta).eval()
        unfuse(model)   # as qat.prepare fine-tuned it: attention's projections as layers (cimsim.mappers.unfuse)
        mods = dict(model.named_modules())
        for layer, bn in meta["batchnorm_folded"]:
            lay = mods[layer]
            if lay.bias is None:
                lay.bias = nn.Parameter(torch.zeros(lay.weight.shape[0]))
            replace_module(model, bn, nn.Identity())
        state = payload["state_dict"]
        ranges = {k[:-len(".input_scale")]: (float(v), bool(state[k[:-len("input_scale")] + "input_signed"]))
                  for k, v in state.items() if k.endswith(".input_scale")}
        order = (qat.mapped_layers_in_order(model, torch.zeros(1, *meta["input_shape"]))
                 if cfg.first_input_bits or cfg.adc_layers != "none" else []) or [None]
        qat.convert(model, cfg, ranges, order[0], order[-1])
        model.psq_folded = meta["batchnorm_folded"]
        model.load_state_dict(state)
        if not all(bool(torch.isfinite(v).all()) for v in model.state_dict().values() if v.is_floating_point()):
            raise ValueError("it holds NaN or infinite weights")
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"PSQ checkpoint {path} is unreadable ({train.unreadable_detail(exc)}): it is damaged "
                              "or not written by 'cimsim finetune'; give one that 'cimsim finetune' wrote, or "
                              "re-create this one with it") from None
    return tag_model(model.eval(), train.checkpoint_info(path, meta)), meta


def checkpoint_format(path) -> str | None:
    """The format a checkpoint file records (``train.FORMAT``, ``qat.FORMAT`` for a PSQ fine-tune, ``SA_FORMAT`` for a
    sense-amp one); None where ``path`` is no readable checkpoint (its loader then says why)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None
    return payload.get("format") if isinstance(payload, dict) else None


def is_psq_checkpoint(path) -> bool:
    """Whether ``path`` is a file saved by ``cimsim finetune`` (a PSQ checkpoint), not by ``cimsim train``."""
    return checkpoint_format(path) == qat.FORMAT


def load_any_checkpoint(path) -> tuple[nn.Module, dict]:
    """A PSQ checkpoint, or a plain one from ``cimsim train`` (then mapped with calibrated scales)."""
    return train.load_checkpoint(path) if checkpoint_format(path) == train.FORMAT else load_psq_checkpoint(path)


def psq_base_model(meta: dict, ckpt) -> tuple[nn.Module | None, str]:
    """The floating-point network a PSQ checkpoint was fine-tuned from, as the digital reference of its
    reports: (model, what it is), or (None, why not) when the metadata names no base or the base is not
    found. The base named in the metadata (``base_checkpoint``) is looked for beside the PSQ checkpoint,
    then in the user's and the shipped checkpoint directories; a file of that name counts only if its
    recorded test accuracy is the one the fine-tune recorded for its base (``base_test_accuracy``)."""
    name = meta.get("base_checkpoint")
    if not name:
        return None, "no base checkpoint recorded"
    for d in (Path(ckpt).parent, train.user_dir(), train.SHIPPED_DIR):
        path = d / name
        if not path.is_file():
            continue
        try:
            model, base = train.load_checkpoint(path)
        except CheckpointError:
            continue
        same = (base.get("test_accuracy") == meta.get("base_test_accuracy") and base.get("dataset") == meta["dataset"]
                and tuple(base.get("input_shape", ())) == tuple(meta["input_shape"]))
        if same:
            return model.eval(), f"{path.name}, the float network this checkpoint was fine-tuned from"
    return None, f"base checkpoint {name} not found"


def reference_kwargs(meta: dict, ckpt) -> dict:
    """``reference`` / ``reference_note`` for :func:`cimsim.mappers.evaluate` of a loaded checkpoint: a PSQ
    network is compared with the float network it was fine-tuned from; others with themselves (no
    arguments)."""
    if "psq" not in meta and "sa" not in meta:
        return {}
    model, note = psq_base_model(meta, ckpt)
    if model is None:
        return {"reference_note": "the PSQ network with partial-sum quantization off (its fine-tuned weights in "
                                  f"floating point; {note})"}
    return {"reference": model, "reference_note": note}


def finetune_command(model: str, dataset: str, arch: str = "hcim", overrides: dict | None = None) -> str:
    sets = "".join(f" --set {k}={v}" for k, v in (overrides or {}).items())
    return f"cimsim finetune --arch {arch} --model {model} --dataset {dataset}{sets}"


def existing_psq_checkpoint(model: str, dataset: str, cfg: qat.PSQConfig) -> Path | None:
    """The PSQ checkpoint file for (model, dataset, cfg), the user's directory first, then the shipped ones; None
    where neither holds one. Says nothing (:func:`find_psq_checkpoint` announces a shadowing user file)."""
    name = psq_checkpoint_name(model, dataset, cfg)
    return next((d / name for d in (train.user_dir(), train.SHIPPED_DIR) if (d / name).is_file()), None)


def find_psq_checkpoint(model: str, dataset: str, cfg: qat.PSQConfig, command: str | None = None,
                        instead: str | None = None, arch: str | None = None) -> Path:
    """The PSQ checkpoint for (model, dataset, cfg): the user's directory first, then the shipped ones (a user
    checkpoint that shadows a shipped one is announced, as by :func:`cimsim.workloads.train.find_checkpoint`).
    Where there is none, the refusal names ``arch`` (the architecture's name), ``command`` (the fine-tune that makes
    it) and, given, ``instead``."""
    name = psq_checkpoint_name(model, dataset, cfg)
    if (found := existing_psq_checkpoint(model, dataset, cfg)) is not None:
        train.warn_if_shadowing(found)
        return found
    cmd = command or finetune_command(zoo.canonical_name(model), datasets.canonical_name(dataset))
    raise CheckpointError(f"no PSQ fine-tuned checkpoint {name} for {arch or 'this architecture'}; make it with '{cmd}'"
                          + (f", or {instead}" if instead else ""))


# ---------------------------------------------------------------------------------------------- sense-amp SNNs
# Spiking networks fine-tuned for the sense-amp readout (adcless-snn, cimsim.mappers.snn_qat): 'cimsim finetune
# --arch adcless-snn' saves one in the user's checkpoint directory; 'cimsim run --arch adcless-snn' finds it (the
# user's directory, then the shipped ones) and otherwise maps the float network with calibrated scales.
SA_FORMAT = "cimsim.sa-checkpoint"


def sa_checkpoint_name(model: str, dataset: str, cfg: snn_qat.SAConfig) -> str:
    tag = f"sa-w{cfg.weight_bits}a{cfg.input_bits}c{cfg.cell_bits}r{cfg.rows}t{cfg.threshold:g}"
    return train.checkpoint_name(model, dataset).replace(".pt", f"-{tag}.pt")


def save_sa_checkpoint(path, model: nn.Module, metadata: dict) -> Path:
    """Weights, column scales, input ranges and spike flags of a sense-amp model (and the metadata as .json); a
    diverged fine-tune (weights not all finite) is refused, nothing written, as every checkpoint writer does."""
    path = Path(path)
    train.require_finite(model.state_dict(), path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": SA_FORMAT, "format_version": 1, "metadata": json.dumps(metadata),
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    train._atomic_write(path, lambda f: torch.save(payload, f))
    train._atomic_write(path.with_suffix(".json"), lambda f: f.write(json.dumps(metadata, indent=2).encode() + b"\n"))
    return path


def is_sa_checkpoint(path) -> bool:
    return checkpoint_format(path) == SA_FORMAT


def load_sa_checkpoint(path) -> tuple[nn.Module, dict]:
    """Rebuild a sense-amp fine-tuned zoo SNN: (model in eval mode with its SA layers, metadata)."""
    path = Path(path)
    payload = train.read_payload(path, "'cimsim finetune --arch adcless-snn'")
    try:
        if not isinstance(payload, dict) or payload.get("format") != SA_FORMAT:
            raise ValueError("not a cimsim sense-amp checkpoint")
        meta = json.loads(payload["metadata"])
        cfg = snn_qat.SAConfig(**meta["sa"])
        model = zoo.rebuild(meta).eval()
        unfuse(model)   # as snn_qat.prepare trained it: attention's projections as layers (cimsim.mappers.unfuse)
        mods = dict(model.named_modules())
        for layer, bn in meta["batchnorm_folded"]:
            if mods[layer].bias is None:
                mods[layer].bias = nn.Parameter(torch.zeros(mods[layer].weight.shape[0]))
            replace_module(model, bn, nn.Identity())
        state = payload["state_dict"]
        for i, (name, mod) in enumerate(m for m in model.named_modules() if f"{m[0]}.sa_scale" in state):
            mod.__class__ = snn_qat.SALinear if isinstance(mod, nn.Linear) else snn_qat.SAConv2d
            mod._setup(cfg, mod.weight[0].numel(), bool(state[f"{name}.spike_input"]),
                       float(state[f"{name}.input_scale"]), bool(state[f"{name}.input_signed"]), seed=i)
        model.sa_folded = meta["batchnorm_folded"]
        model.load_state_dict(state)
    except Exception as exc:
        raise CheckpointError(f"sense-amp checkpoint {path} is unreadable ({train.unreadable_detail(exc)}): it is "
                              "damaged or not written by 'cimsim finetune --arch adcless-snn'; give one that it "
                              "wrote, or re-create this one with it") from None
    return tag_model(model.eval(), train.checkpoint_info(path, meta)), meta


def find_sa_checkpoint(model: str, dataset: str, cfg: snn_qat.SAConfig) -> Path | None:
    """The sense-amp checkpoint for (model, dataset, cfg): the user's directory first, then the shipped ones; None
    when there is none."""
    name = sa_checkpoint_name(model, dataset, cfg)
    for d in (train.user_dir(), train.SHIPPED_DIR):
        if (d / name).is_file():
            train.warn_if_shadowing(d / name)
            return d / name
    return None
