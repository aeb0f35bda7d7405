"""``cimsim compare``: architectures side by side on one network, optionally at equal chip area.

Every architecture runs the same network at the same precision and node (by default the papers' comparison
point: 8-bit weights and inputs, 32 nm, as Neural-PIM re-implements its baselines); with ``--equal-area REF``
each one gets the tile count whose chip area matches REF's (:func:`cimsim.arch.scaling.scale_to_area`). A network
larger than one chip runs on a chain of chips (:mod:`cimsim.arch.chips`): every architecture gets the same number
(``--chips``, by default the fewest that hold one copy of the network on the least dense of them), so the
comparison stays at equal total area, each layer replicated as the chips allow, the chip-to-chip links costed. The
table gives accuracy, energy per inference, energy efficiency (operations per joule, one MAC = 2 ops),
throughput of the pipelined chip, area and the energy split per component, the ratios to the first
architecture, and the ratios the papers report beside ours.

Cost-only mode (``--input-shape C,H,W``): the network is a definition (any zoo model, or an ImageNet-size one
of :mod:`cimsim.workloads.zoo_imagenet`) with its random initialisation, run on synthetic inputs uniform in
[0, 1]; energy and throughput follow from the layer shapes and the activations, accuracy is not measured
(the output says "cost only: no accuracy"). Its crossbars are counting tiles
(:class:`cimsim.crossbar_count.CountingCrossbar`: the engine's events from the inputs' digits and the exact
integer product, no cell programmed), so ResNet-50, VGG-16 and AlexNet at 224x224 fit in a few GB;
``--simulate`` runs the engine instead (every cell's conductance in memory, the hardware's errors in the
activations).
"""

from __future__ import annotations

import sys

from cimsim.cli import names
from cimsim.cli.common import (FINE_TUNE_RULE, FLOAT_NETWORK_HELP, add_command, data_options, emit_json, key_value,
                               node_or_own, nonneg_int, positive_int)
from cimsim.errors import ConfigError

COST_ONLY = "cost only: no accuracy"
# (architecture, baseline) -> the papers' energy-efficiency and throughput ratios
PAPER_RATIOS = {
    ("neural-pim", "isaac"): {"energy_efficiency": 5.36, "throughput": 3.43,
                              "source": "Neural-PIM (arXiv 2201.12861), average over its 8-bit ImageNet CNNs"},
    ("neural-pim", "cascade"): {"energy_efficiency": 1.73, "throughput": 1.59,
                                "source": "Neural-PIM (arXiv 2201.12861), average over its 8-bit ImageNet CNNs"},
    ("cascade", "isaac"): {"energy_efficiency": 3.5, "throughput": 1.86,
                           "source": "CASCADE (MICRO 2019), average over ~10 DNNs and an RNN"},
}


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--input-shape {text!r}: give channels,height,width as whole numbers, e.g. 3,224,224") from None
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(f"--input-shape {text!r}: give channels,height,width (positive), e.g. 3,224,224")
    return shape


def parse_archs(text: str) -> list[str]:
    items = [a.strip().lower() for a in text.split(",")]
    if not all(items) or len(items) < 1:
        raise ConfigError(f"--arch {text!r}: give architecture names separated by commas, e.g. isaac,cascade,neural-pim")
    return list(dict.fromkeys(items))


def common_params(name: str, precision: str, node: str, sets: dict) -> dict:
    """The parameters that put architecture ``name`` at the common point: ``precision`` bits of weights and inputs,
    the ``node`` and the ``sets`` it has (an explicit --set wins)."""
    from cimsim import arch as arch_mod

    base = arch_mod.get(name)
    over = {}
    if precision != "own":
        over.update({k: precision for k in ("weight_bits", "input_bits") if base.has_param(k)})
    if node != "own" and base.has_param("node_nm"):
        over["node_nm"] = node
    over.update({k: v for k, v in sets.items() if base.has_param(k)})
    return over


def fine_tune_setting(name: str, precision: str, node: str, sets: dict) -> dict:
    """The ``--set`` options of the 'cimsim finetune' command that makes the network architecture ``name`` needs
    at the common point: those of its common parameters that change which fine-tune it needs."""
    from cimsim import arch as arch_mod
    from cimsim.mappers import qat, snn_qat

    over = common_params(name, precision, node, sets)
    base = arch_mod.get(name)
    cfg_of = qat.PSQConfig.from_arch if base.learned_column_scales else snn_qat.SAConfig.from_arch
    cfg = cfg_of(base.with_params(**over))
    without = {k: {j: w for j, w in over.items() if j != k} for k in over}
    return {k: v for k, v in over.items() if cfg_of(base.with_params(**without[k])) != cfg}


def build_archs(arch_names: list[str], precision: str, node: str, sets: dict, equal_area: str | None) -> dict:
    """The architectures to compare, at the common precision and node, scaled to the reference's area."""
    from cimsim import arch as arch_mod
    from cimsim.arch.params import hint
    from cimsim.arch.scaling import scale_to_area, tile_area_m2

    def common(name: str):
        return arch_mod.get(name).with_params(**common_params(name, precision, node, sets))

    for key in sets:
        if not any(arch_mod.get(n).has_param(key) for n in arch_names):
            why = hint(key, map(arch_mod.get, arch_names))
            raise ConfigError(f"--set {key}: none of {', '.join(arch_names)} has this parameter ({why + '; ' if why else ''}"
                              f"see 'cimsim archs show {arch_names[0]}')")
    archs = {n: common(n) for n in arch_names}
    if equal_area:
        ref = archs[equal_area] if equal_area in archs else common(equal_area)
        tile_area_m2(ref)   # the reference must be a tiled chip too
        archs = {n: scale_to_area(a, ref.area_m2) for n, a in archs.items()}
    return archs


def countable(arch) -> bool:
    """Whether cost-only counting (:class:`cimsim.crossbar_count.CountingCrossbar`) can stand for ``arch``'s tiles:
    plain crossbars, no packed layout (SME) and no per-column scales (HCiM's learned ones, sense amps' calibrated
    ones), as the mapper's ``backend='count'`` requires. Architectures without crossbars are counted as they are."""
    from cimsim.readouts import readout_op

    if not arch.maps_to_crossbars:
        return True
    spec = arch.crossbar_spec()
    scales = readout_op(spec.readout).decides and not spec.pair_readout
    return (arch.weight_layout() is None and not arch.learned_column_scales and not arch.learned_sense_amp_scales
            and not scales)


def parse_chips(text: str) -> int | None:
    """``--chips``: 'auto' (None) or a positive whole number."""
    t = str(text).strip().lower()
    if t == "auto":
        return None
    if not t.isdigit() or int(t) < 1:
        raise ConfigError(f"--chips {text!r}: give 'auto' or a positive whole number of chips, e.g. 4")
    return int(t)


def spread_over_chips(reports: dict, archs: dict, chips: int | None) -> tuple[dict, dict]:
    """Every tiled architecture on the same number of its chips (equal area when the chips are): ``chips``, or with
    None the fewest that hold one copy of every mapped layer on every architecture (the least dense decides). The
    runs are re-costed (:meth:`cimsim.report.Report.recost`): the chip count changes the layers' copies, the static
    power and the chip-to-chip traffic, not what was simulated."""
    holds = [r.config.get("chips_to_hold", 1) for n, r in reports.items() if archs[n].has_param("chips")]
    if not holds:
        return reports, archs
    n_chips = max(holds) if chips is None else chips
    archs = {n: a.with_params(chips=n_chips) if a.has_param("chips") else a for n, a in archs.items()}
    reports = {n: r.recost(archs[n]) if archs[n].has_param("chips") and n_chips != r.config.get("chips", 1) else r
               for n, r in reports.items()}
    return reports, archs


def summarize(reports: dict, archs: dict, cost_only: bool) -> dict:
    """Per architecture: accuracy, energy, efficiency, throughput, area, tiles, energy split; ratios to the first
    architecture; our ratios beside the papers' for every pair the papers report."""
    rows = {}
    for name, rep in reports.items():
        ops = 2 * sum(r.get("macs", 0) for r in rep.layers)
        rows[name] = {
            "accuracy": None if cost_only else rep.accuracy,
            "energy_j": rep.energy_j, "ops_per_j": ops / rep.energy_j if rep.energy_j else float("inf"),
            "throughput_inf_per_s": rep.throughput_inf_per_s, "area_m2": rep.area_m2,
            "tiles": getattr(archs[name], "tiles", None), "chips": getattr(archs[name], "chips", None),
            "chips_to_hold": rep.config.get("chips_to_hold"),
            # whose accuracy: the float network, one fine-tuned for the architecture, or the float network where the
            # architecture needs a fine-tune (network_note says so; cimsim.networks.missing_fine_tune)
            "network": None if cost_only else rep.config.get("network"),
            "network_note": None if cost_only else rep.config.get("network_note"),
            "energy_split": {k: v / rep.energy_j for k, v in sorted(rep.components.items(), key=lambda kv: -kv[1])},
        }
    first = next(iter(rows))
    for name, row in rows.items():
        row["vs_" + first] = {"energy_efficiency": row["ops_per_j"] / rows[first]["ops_per_j"],
                              "throughput": row["throughput_inf_per_s"] / rows[first]["throughput_inf_per_s"]}
    papers = []
    for (a, b), paper in PAPER_RATIOS.items():
        if a in rows and b in rows:
            papers.append({"arch": a, "baseline": b, "source": paper["source"],
                           "ours": {"energy_efficiency": rows[a]["ops_per_j"] / rows[b]["ops_per_j"],
                                    "throughput": rows[a]["throughput_inf_per_s"] / rows[b]["throughput_inf_per_s"]},
                           "paper": {"energy_efficiency": paper["energy_efficiency"],
                                     "throughput": paper["throughput"]}})
    return {"architectures": rows, "baseline": first, "paper_ratios": papers}


def table(result: dict) -> str:
    from cimsim.report import fmt_si

    rows, first = result["architectures"], result["baseline"]
    head = ["", *rows]
    notes = {n: r["network_note"] for n, r in rows.items() if r.get("network_note")}
    lines = [
        ["accuracy", *(COST_ONLY if r["accuracy"] is None else f"{100 * r['accuracy']:.2f} %" + " *" * (n in notes)
                       for n, r in rows.items())],
        *([["network", *(r["network"] or "as given" for r in rows.values())]]   # "as given": compare()'s model
          if any(r.get("network") not in (None, "float") for r in rows.values()) else []),
        ["energy / inference", *(fmt_si(r["energy_j"], "J") for r in rows.values())],
        ["efficiency", *(f"{r['ops_per_j'] / 1e12:.3g} TOPS/W" for r in rows.values())],
        ["throughput", *(f"{r['throughput_inf_per_s']:.4g} inf/s" for r in rows.values())],
        ["area", *(f"{r['area_m2'] * 1e6:.2f} mm^2" for r in rows.values())],
        ["tiles per chip", *(str(r["tiles"]) for r in rows.values())],
        ["chips", *(str(r["chips"]) for r in rows.values())],
        ["chips to hold one copy", *(str(r["chips_to_hold"]) for r in rows.values())],
        [f"efficiency vs {first}", *(f"{r['vs_' + first]['energy_efficiency']:.2f}x" for r in rows.values())],
        [f"throughput vs {first}", *(f"{r['vs_' + first]['throughput']:.2f}x" for r in rows.values())],
    ]
    comps = sorted({c for r in rows.values() for c in r["energy_split"]},
                   key=lambda c: -max(r["energy_split"].get(c, 0) for r in rows.values()))
    lines += [[f"  energy: {c}", *(f"{100 * r['energy_split'].get(c, 0):.1f} %" for r in rows.values())] for c in comps]
    widths = [max(len(str(x[i])) for x in [head, *lines]) for i in range(len(head))]
    out = ["  ".join(str(x).ljust(w) for x, w in zip(line, widths)) for line in [head, *lines]]
    out += [f"* {n}: {note}" for n, note in notes.items()]
    if result["paper_ratios"]:
        out.append("")
        out.append("ratios (ours | paper): energy efficiency, throughput")
        for p in result["paper_ratios"]:
            o, q = p["ours"], p["paper"]
            out.append(f"  {p['arch']} vs {p['baseline']}: {o['energy_efficiency']:.2f}x | {q['energy_efficiency']:.2f}x, "
                       f"{o['throughput']:.2f}x | {q['throughput']:.2f}x   ({p['source']})")
    return "\n".join(out)


def cost_only_model(model: str, shape: tuple[int, ...], seed: int):
    """A randomly initialised definition (ImageNet-size or zoo) for synthetic inputs of ``shape``."""
    import torch

    from cimsim.workloads import zoo, zoo_imagenet

    torch.manual_seed(seed)
    key = model.strip().lower().replace("-", "_")
    if key in zoo_imagenet.model_names():
        return zoo_imagenet.build(key, shape, num_classes=1000).eval()
    return zoo.build_for(model, shape, num_classes=10).eval()


def synthetic_batches(shape: tuple[int, ...], n: int, batch_size: int, seed: int) -> list:
    import torch

    g = torch.Generator().manual_seed(seed)
    x = torch.rand((n, *shape), generator=g)
    y = torch.zeros(n, dtype=torch.long)
    return [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, n, batch_size)]


def compare(model, arch_names: list[str], loader, calibration, *, precision: str = "8", node: str = "32",
            equal_area: str | None = None, sets: dict | None = None, seed: int = 0, cost_only: bool = False,
            chips: int | None = None, networks: dict | None = None,
            config: dict | None = None, progress: bool | None = None, backend: str = "numba") -> dict:
    """Run ``model`` on each architecture (at the common point, scaled to ``equal_area``'s chip) and summarize
    (:func:`summarize`); ``result["reports"]`` holds the :class:`~cimsim.report.Report` of each. Every tiled
    architecture gets ``chips`` of its chips, by default the fewest that hold the network on all of them
    (:func:`spread_over_chips`). ``backend``:
    the engine's (``"numba"``) or counting tiles (``"count"``, cost only: :mod:`cimsim.crossbar_count`).
    ``networks``: architecture name -> ``{"model": ..., "config": {...}, "reference": ..., "reference_note": ...}``,
    the network that architecture runs instead of ``model`` (one fine-tuned for it: :func:`fine_tuned_networks`).
    Where an architecture's readout needs a fine-tuned network and it runs the float one, its report's
    ``network_note`` and the table say whose accuracy it is (:func:`cimsim.networks.missing_fine_tune`)."""
    from cimsim.mappers import evaluate
    from cimsim.networks import fine_tune_kind, missing_fine_tune

    archs = build_archs(arch_names, precision, node, dict(sets or {}), equal_area)
    reports = {}
    for name, spec in archs.items():
        if progress is not False:
            print(f"cimsim compare: {name} ({getattr(spec, 'tiles', '-')} tiles)", file=sys.stderr)
        own = dict((networks or {}).get(name) or {"model": model})
        net, cfg = own.pop("model"), {**(config or {}), **own.pop("config", {})}
        note = None if cost_only else missing_fine_tune(spec, net)
        if not cost_only and fine_tune_kind(spec):
            cfg.update({"network": "float, not fine-tuned" if note else "fine-tuned",
                        **({"network_note": note} if note else {})})
        reports[name] = evaluate(net, spec, loader, calibration=calibration, seed=seed, config=cfg,
                                 progress=progress, backend=backend, **own)
    reports, archs = spread_over_chips(reports, archs, chips)
    result = summarize(reports, archs, cost_only=cost_only)
    result["reports"] = reports
    return result


def fine_tuned_networks(archs: dict, model_name: str, data, precision: str, node: str, sets: dict) -> dict:
    """For ``compare(networks=)``: the network each architecture whose readout needs one runs, fine-tuned for it at
    the common point, found as 'cimsim run' finds it (:func:`cimsim.networks.load_network`: hcim's missing is refused,
    naming the command that makes it, before any architecture runs; adcless-snn's falls back to the float network)."""
    from cimsim.networks import fine_tune_kind, load_network, reference_kwargs

    found = {}
    for name, spec in archs.items():
        if fine_tune_kind(spec) is None:
            continue
        model, meta, ckpt = load_network(model_name, data, arch=spec, option="--float-network",
                                         overrides=fine_tune_setting(name, precision, node, sets))
        found[name] = {"model": model, "config": {"checkpoint": str(ckpt)}, **reference_kwargs(meta, ckpt)}
    return found


def run(args) -> int:
    arch_names = parse_archs(args.arch)
    shape = parse_shape(args.input_shape) if args.input_shape else None
    if shape is None:
        if args.model and args.model.strip().lower().replace("-", "_") in names.IMAGENET_MODELS:
            raise ConfigError(f"{args.model} is a network definition without trained weights: compare its costs on "
                              "synthetic inputs with --input-shape 3,224,224 (no accuracy)")
        names.check(archs=args.arch, model=args.model, dataset=args.dataset, sets=args.set, sets_every=False)
    else:
        names.check(archs=args.arch, sets=args.set, sets_every=False)
        names.check_cost_only_model(args.model)
    if args.equal_area:
        names.check_arch(args.equal_area)
    if args.precision != "own" and not args.precision.isdigit():
        raise ConfigError(f"--precision {args.precision!r}: give a number of bits (e.g. 8) or 'own'")
    chips = parse_chips(args.chips)
    if args.simulate and shape is None:
        raise ConfigError("--simulate goes with --input-shape (cost-only mode); runs with accuracy always simulate")
    if args.float_network and shape is not None:
        raise ConfigError("--float-network goes with runs with accuracy (no --input-shape): cost-only mode maps a "
                          "network definition, never a fine-tuned network")
    equal_area = args.equal_area.strip().lower() if args.equal_area else None
    for key, option, value in (("weight_bits", "--precision", args.precision), ("input_bits", "--precision",
                                                                              args.precision),
                               ("node_nm", "--node", args.node)):
        if value != "own" and key in dict(args.set or []):   # the header and the JSON would name the other value
            raise ConfigError(f"--set {key} and {option} {value} both set it: give {option} (every architecture), "
                              f"or {option} own with --set {key}")
    archs = build_archs(arch_names, args.precision, args.node, dict(args.set or []), equal_area)   # before loading
    if shape is not None and not args.simulate:
        uncounted = [n for n, a in archs.items() if not countable(a)]
        if uncounted:
            raise ConfigError(f"cost-only counting takes plain crossbar tiles, and {', '.join(uncounted)} "
                              f"map{'s' * (len(uncounted) == 1)} packed tiles or per-column scales: add --simulate "
                              "(the engine programs every cell; slower) or leave "
                              f"{'it' if len(uncounted) == 1 else 'them'} out")
    if shape is None:
        from cimsim.networks import load_model_and_data

        model, meta, data, ckpt = load_model_and_data(args.model, args.dataset, args.data_dir)
        networks = {} if args.float_network else fine_tuned_networks(archs, args.model, data, args.precision,
                                                                     args.node, dict(args.set or []))
        loader = list(data.loader("test", batch_size=args.batch_size, limit=args.limit))
        calibration = list(data.loader("train", batch_size=args.batch_size, limit=args.calibration, shuffle=False))
        config = {"model": meta["model"], "dataset": data.name, "checkpoint": str(ckpt), "network": "float"}
    else:
        model, networks = cost_only_model(args.model, shape, args.seed), {}
        loader = synthetic_batches(shape, args.limit or 1, args.batch_size, seed=args.seed + 1)
        calibration = synthetic_batches(shape, min(args.calibration, 4), args.batch_size, seed=args.seed + 2)
        config = {"model": args.model, "input_shape": list(shape), "mode": COST_ONLY,
                  "engine": "simulated" if args.simulate else "counted"}
    backend = "count" if shape is not None and not args.simulate else "numba"
    result = compare(model, arch_names, loader, calibration, precision=args.precision, node=args.node,
                     equal_area=equal_area, sets=dict(args.set or []), seed=args.seed, cost_only=shape is not None,
                     config=config, backend=backend, chips=chips, networks=networks)
    del result["reports"]
    result.update({"model": args.model, "dataset": None if shape else args.dataset,
                   "input_shape": list(shape) if shape else None, "mode": COST_ONLY if shape else "accuracy and cost",
                   "engine": "counted" if backend == "count" else "simulated",
                   "precision": args.precision, "node_nm": args.node, "equal_area": args.equal_area,
                   "chips": args.chips})
    if args.json:
        emit_json(result)
    else:
        where = (f"synthetic inputs {'x'.join(map(str, shape))} ({COST_ONLY}; "
                 f"{'simulated' if args.simulate else 'events counted, crossbars not simulated'})") if shape else args.dataset
        n_chips = sorted({r["chips"] for r in result["architectures"].values() if r["chips"]})
        on = "" if len(n_chips) != 1 else f"; {n_chips[0]} chip{'s' * (n_chips[0] > 1)} each " + (
            "(the fewest that hold the network on every architecture)" if chips is None else "(--chips)")
        print(f"{args.model} on {where}; precision {args.precision}, node {args.node}"
              + (f", equal area with {args.equal_area} per chip" if args.equal_area else "") + on)
        print(table(result))
    return 0


def register(sub) -> None:
    sp = add_command(sub, "compare", "architectures side by side on one network (optionally at equal chip area)", run,
                     desc="Run one network on several architectures at a common precision and node and print accuracy, "
                          "energy, efficiency, throughput, area and the energy split side by side, with the ratios to "
                          "the first architecture and the papers' ratios. --input-shape runs a network definition on "
                          "synthetic inputs (cost only: no accuracy), e.g. --model resnet50 --input-shape 3,224,224: "
                          "with it --model takes the ImageNet-size definitions too ("
                          + ", ".join(names.IMAGENET_MODELS) + "). "
                          "Every architecture runs the same float network, except those whose readout needs one "
                          "fine-tuned for it, as in 'cimsim run': " + FINE_TUNE_RULE)
    sp.add_argument("--arch", default="isaac,cascade,neural-pim",
                    help="architectures, comma-separated; the first is the baseline (default isaac,cascade,neural-pim)")
    data_options(sp)
    sp.add_argument("--equal-area", metavar="ARCH", help="scale every architecture's tile count to ARCH's chip area")
    sp.add_argument("--precision", default="8",
                    help="weight and input bits of every architecture, or 'own' (default 8: the papers' comparison)")
    sp.add_argument("--node", default="32", type=node_or_own,
                    help="technology node (nm) of every architecture, or 'own' (default 32, Neural-PIM's comparison)")
    sp.add_argument("--chips", default="auto", metavar="N|auto",
                    help="chips of each tiled architecture, joined by chip-to-chip links (default auto: the fewest that "
                         "hold one copy of the network on every architecture, so a network larger than one chip runs "
                         "at equal total area with --equal-area)")
    sp.add_argument("--input-shape", metavar="C,H,W",
                    help="cost-only mode: run --model's definition on synthetic inputs of this shape (no accuracy)")
    sp.add_argument("--simulate", action="store_true",
                    help="cost-only mode: simulate the crossbars (every cell in memory) instead of counting their "
                         "events from the inputs' digits")
    sp.add_argument("--set", action="append", type=key_value, metavar="KEY=VALUE",
                    help="override a parameter of the architectures that have it (repeatable)")
    sp.add_argument("--float-network", action="store_true", help=FLOAT_NETWORK_HELP)
    sp.add_argument("--batch-size", type=positive_int, default=64, help="examples per batch (default 64)")
    sp.add_argument("--calibration", type=positive_int, default=256, metavar="N",
                    help="examples that calibrate activation and ADC ranges (default 256, half of 'cimsim run''s 512: "
                         "every architecture calibrates; 4 synthetic in cost-only mode)")
    sp.add_argument("--seed", type=nonneg_int, default=0, help="seed of the devices, the definition and the inputs")
