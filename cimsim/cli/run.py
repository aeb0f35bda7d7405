"""``cimsim run``: simulate a trained network on an architecture."""

from __future__ import annotations

import gc
import sys

from cimsim import datafiles, outkind
from cimsim.errors import ConfigError
from cimsim.cli import names
from cimsim.cli.common import (BATCH_HELP, FINE_TUNE_RULE, FLOAT_NETWORK_HELP, add_command, batch_for, batch_size,
                               calibration_size, data_options,
                               emit_json, key_value, model_to_check, nonneg_int, output_path, positive_int,
                               require_device, show_then_write)


def run(args) -> int:
    # Python's cyclic collector walked every object torch, numba and the network had created, again and again while
    # they loaded (four full passes, 0.5-0.9 s of a 13 s README job on the 2-core AMD EPYC, 2026-12-03); those objects
    # live until the process ends. So it is off while they load, and they are frozen (never walked again) before the
    # simulation, which runs with it on. No number depends on it.
    gc.disable()
    try:
        return _run(args)
    finally:
        datafiles.forget()   # whatever was read ahead and not used (an error before the data loaded)
        gc.enable()


def _run(args) -> int:
    names.check(archs=args.arch, model=args.model, dataset=args.dataset, sets=args.set)  # before torch/numba load
    if args.adc_bits is not None and {"adc_bits", "adc.bits"} & {k for k, _ in args.set or []}:
        raise ConfigError("give ADC bits once: --adc-bits B or --set adc_bits=B, not both")   # as 'cimsim sweep'
    if args.device == "cuda" and args.backend != "torch":
        raise ConfigError("--device cuda needs --backend torch")
    require_device(args.device)
    if args.float_network and args.checkpoint:
        raise ConfigError(f"--float-network and --checkpoint {args.checkpoint} both name the network: give "
                          "--checkpoint (run as it is), or --float-network (the float network found by model and "
                          "dataset)")
    out = output_path(args.out)   # before any work: a device, folder or unwritable place is refused
    outkind.refuse_replacing(out, outkind.REPORT, inputs=[("--checkpoint", args.checkpoint)])   # a report only
    datafiles.read_ahead(args.dataset, args.data_dir)   # an IDX set's files un-gzipped while torch and numba load
    from cimsim import arch as arch_mod   # numba, not torch: a bad --set is refused before torch loads

    overrides = dict(args.set or [])
    if args.adc_bits is not None:
        overrides["adc_bits"] = args.adc_bits
    spec = arch_mod.get(args.arch, **overrides)
    from cimsim.mappers import evaluate
    from cimsim.networks import load_model_and_data, missing_fine_tune, reference_kwargs

    model, meta, data, ckpt = load_model_and_data(model_to_check(args), args.dataset, args.data_dir, args.checkpoint,
                                                  arch=spec, overrides=dict(args.set or []),
                                                  float_network=args.float_network, option="--float-network")
    untuned = missing_fine_tune(spec, model)   # the float network on hcim / adcless-snn: its accuracy says so
    if args.time_steps is not None:
        from cimsim.workloads.snn_zoo import with_time_steps

        with_time_steps(model, args.time_steps)
    datafiles.forget()
    batch = batch_for("run", args.batch_size, model, data.input_shape, args.device)
    gc.freeze()   # the modules, the network and the data, loaded: kept out of the collector's passes (see run)
    gc.enable()
    loader = data.loader("test", batch_size=batch, limit=args.limit)
    calibration = data.loader("train", batch_size=batch, limit=args.calibration, shuffle=False)
    report = evaluate(
        model, spec, loader, calibration=calibration, seed=args.seed, backend=args.backend, device=args.device,
        config={"model": meta["model"], "dataset": data.name, "checkpoint": str(ckpt),
                "checkpoint_test_accuracy": meta["test_accuracy"], "limit": args.limit,
                **({"checkpoint_test_aee_px": meta["test_aee"]} if meta.get("test_aee") is not None else {}),
                "batch_size": batch, "data_source": data.source,
                "calibration_examples": args.calibration,
                **({"time_steps": args.time_steps} if args.time_steps is not None else {}),
                **({"network_note": untuned} if untuned else {})},
        **(reference_kwargs(meta, ckpt) if spec.maps_to_crossbars else {}))

    def write() -> None:
        if out is not None:
            path = report.to_hdf5(out)
            print(f"cimsim run: report written to {path}", file=sys.stderr)

    # the report first: a file that cannot be written (a full disk) is one line after it, the result not lost
    show_then_write(lambda: emit_json(report.to_dict()) if args.json else print(report.table()), write)
    return 0


def register(sub) -> None:
    sp = add_command(sub, "run", "simulate a trained network on an architecture and print its report", run,
                     desc="Simulate a trained network on an architecture and print accuracy, energy, latency and area. "
                          + FINE_TUNE_RULE)
    sp.add_argument("--arch", default="isaac", help="architecture (see 'cimsim archs'; default isaac)")
    data_options(sp)
    sp.add_argument("--checkpoint", help="a checkpoint file (default: the one found by model and dataset); one "
                    "'cimsim finetune --arch hcim' wrote maps onto an ADC baseline such as isaac as fine-tuned")
    sp.add_argument("--float-network", action="store_true", help=FLOAT_NETWORK_HELP)
    sp.add_argument("--batch-size", type=batch_size, help=BATCH_HELP)
    sp.add_argument("--set", action="append", type=key_value, metavar="KEY=VALUE",
                    help="override an architecture parameter (repeatable; see 'cimsim archs show ARCH')")
    sp.add_argument("--adc-bits", type=positive_int, metavar="B",
                    help="ADC resolution (same as --set adc_bits=B; architectures with an ADC)")
    sp.add_argument("--seed", type=nonneg_int, default=0, help="seed of every device and readout draw (default 0)")
    # the default: cimsim.sweep.DEFAULT_CALIBRATION (its source there)
    sp.add_argument("--calibration", type=calibration_size, default=512, metavar="N",
                    help="training examples that calibrate activation and ADC ranges (default 512, whatever --limit: "
                         "a --limit run maps the same network as the whole test set's; a smaller N maps faster, "
                         "with other ranges and so other numbers)")
    sp.add_argument("--backend", default="numba", choices=["numba", "torch"], help="crossbar engine (default numba)")
    sp.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="engine device (cuda needs --backend torch)")
    sp.add_argument("--out", help="also write the report to this HDF5 file")
    sp.add_argument("--time-steps", type=positive_int, metavar="T",
                    help="time steps of a spiking network (default: the network's own, e.g. 10 for snn_vgg)")
