"""``cimsim sweep``: a grid of design points into one resumable HDF5 file."""

from __future__ import annotations

import errno
import json
import os
import sys
from pathlib import Path

from cimsim.errors import CimsimError, ConfigError
from cimsim.fileio import OutputError
from cimsim.cli import names
from cimsim.cli.common import (BATCH_HELP, add_command, batch_for, batch_size, calibration_size, data_options,
                               key_value, model_to_check, output_path, positive_int, require_device, strict_json)


def run(args) -> int:
    names.check(archs=args.arch, model=args.model, dataset=args.dataset, sets=args.set, sets_every=False)   # before torch/numba load
    from cimsim import sweep, sweepfile

    out = output_path(args.out)   # a folder, device or FIFO (which would hang the reader) is refused here
    if args.scheduler and args.workers != 1:
        raise ConfigError("give either --workers (local processes) or --scheduler (a Dask cluster), not both")
    archs = sweep.parse_archs(args.arch)
    bits = sweep.parse_adc_bits(args.adc_bits) if args.adc_bits is not None else None
    overrides = dict(args.set or [])
    notes: list[str] = []
    points = sweep.make_points(archs, bits, args.seeds, overrides, sweep.parse_grid(args.grid or []), notes)
    for note in dict.fromkeys(notes):
        print(f"cimsim sweep: note: {note}", file=sys.stderr)
    if args.device == "cuda" and args.backend != "torch":
        raise ConfigError("--device cuda needs --backend torch")
    require_device(args.device)
    if args.scheduler:
        sweep.require_dask()  # before loading anything
    model, meta, data, ckpt = sweep.load_model_and_data(model_to_check(args), args.dataset, args.data_dir,
                                                        args.checkpoint)
    try:
        done = sweepfile.finished_keys(out)   # a resumed sweep's finished points need no fine-tune
    except CimsimError:
        done = set()   # not a sweep file: run_sweep refuses it in its own words
    sweep.missing_fine_tunes(points, meta["model"], data.name, overrides, done)   # before the first point
    batch = batch_for("sweep", args.batch_size, model, data.input_shape, args.device)
    settings = sweep.Settings(
        model=meta["model"], dataset=data.name, checkpoint=str(Path(ckpt).resolve()),
        checkpoint_sha256=sweep.file_sha256(ckpt), limit=args.limit, overrides=overrides,
        calibration=args.calibration, batch_size=batch, data_dir=args.data_dir,
        backend=args.backend, device=args.device)
    sweep.prime_context(settings, model, meta, data)

    def on_point(point, report, from_file):
        if args.json:
            sys.stdout.write(json.dumps(strict_json(sweep.point_summary(point, report, from_file)),
                                        allow_nan=False) + "\n")
            sys.stdout.flush()

    try:
        results = sweep.run_sweep(out, points, settings, workers=args.workers, scheduler=args.scheduler,
                                  on_point=on_point)
    except OutputError as exc:   # the points finished so far wait in the journal for the resume
        raise OutputError(f"{exc}; {_kept(out, str(exc))}", exc.path) from None
    if not args.json:
        print(sweep.table(results))
        print(f"results in {out}; draw them with 'cimsim plot {out}'")
    return 0


def _kept(out: Path, failure: str) -> str:
    """Where a sweep whose file could not be written keeps its finished points, and when to re-run it: once there is
    room where the write ``failure`` (OutputError's message, the reason in parentheses) was a full disk or quota."""
    from cimsim import sweepfile

    n = sweepfile.journal_size(out)
    where = f"the {n} finished point{' is' if n == 1 else 's are'} kept in {sweepfile.journal_dir(out)}; " if n else ""
    full = any(f"({os.strerror(code)})" in failure for code in (errno.ENOSPC, errno.EDQUOT))
    return f"{where}re-run the same command {'once there is room' if full else f'once it can write {out}'}: it resumes " \
           "where it stopped"


def _admm_knobs() -> str:
    from cimsim.sweep_admm import knob_help   # the standard library only: cheap at --help

    return knob_help()


def register(sub) -> None:
    sp = add_command(sub, "sweep", "run a grid of design points (archs x any parameters x seeds) into one HDF5 file",
                     run,
                     desc="Evaluate a trained network on every point of a grid: architectures x the values of every "
                          "--grid parameter (and --adc-bits) x seeds. Each finished point is kept at once (in a "
                          "journal folder beside the --out file, .NAME.points, folded into the file from time to "
                          "time and at the end); re-running the same command skips the points the file and its "
                          "journal hold, so an interrupted sweep resumes losing at most the point it was on. hcim's "
                          "points need a network fine-tuned for their array and bits: a grid with a setting that "
                          "has none is refused before its first point. An architecture without a swept parameter "
                          "(ADC bits of digital or ADC-less designs) is not swept over it. With --json, stdout "
                          "carries one JSON object per point and per line (JSON Lines: key, arch, params, "
                          "adc_bits, seed, accuracy, digital_accuracy, energy_j, latency_s, area_m2, n_examples, "
                          "crossbars, from_file; an ADMM point also weight_compression and admm_trained), points "
                          "already in the file first, then each as it finishes. ADMM block pruning is a sweep axis "
                          "too: --grid admm.compression=1,2,4,8 prunes the network for each target with blocks of "
                          "the point's array (cimsim.mappers.admm, as 'cimsim finetune --method admm'), maps only "
                          "the non-zero blocks and records the weight compression reached; pruned networks are "
                          "cached in $CIMSIM_HOME/checkpoints/admm, so a repeated sweep does not train again. "
                          "ADMM knobs (--grid or --set): " + _admm_knobs() + ". A spiking network's time steps "
                          "are a sweep axis of every architecture: --grid time_steps=5,10 (or --set time_steps=5) "
                          "runs each point on a copy of the network at that T, as 'cimsim run --time-steps T'; "
                          "spiking models only (snn_vgg, snn_resnet20; the event networks snn_dvsnet and "
                          "snn_flownet run only their data's frames).")
    sp.add_argument("--arch", default="isaac,digital",
                    help="comma list of architectures (see 'cimsim archs'; default isaac,digital)")
    sp.add_argument("--adc-bits", metavar="BITS",
                    help="ADC resolutions: a range 1-8, a list 4,6,8 or one value 6 (1 to 16; default: each "
                         "architecture's own); the same as --grid adc_bits=BITS")
    sp.add_argument("--grid", action="append", type=key_value, metavar="KEY=VALUES",
                    help="sweep a parameter (repeatable; the grid is their Cartesian product): an integer range "
                         "2-8 or a list 64,128 or 0,0.01,0.02; dotted paths reach components, e.g. "
                         "--grid cell.read_sigma_frac=0,0.02 (see 'cimsim archs show ARCH'); an architecture "
                         "without the parameter is not swept over it; ADMM pruning: --grid admm.compression=1,2,4,8 "
                         "(1 or off: dense); a spiking network's time steps: --grid time_steps=5,10")
    sp.add_argument("--seeds", type=positive_int, default=1, metavar="N", help="run seeds 0..N-1 (default 1)")
    data_options(sp)
    sp.add_argument("--checkpoint", help="a checkpoint file (default: the one found by model and dataset)")
    sp.add_argument("--batch-size", type=batch_size, help=BATCH_HELP)
    # the default: cimsim.sweep.DEFAULT_CALIBRATION (its source there)
    sp.add_argument("--calibration", type=calibration_size, default=512, metavar="N",
                    help="training examples that calibrate activation and ADC ranges (default 512, as 'run')")
    sp.add_argument("--backend", default="numba", choices=["numba", "torch"], help="crossbar engine (default numba)")
    sp.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                    help="engine device, and where ADMM pruning trains (cuda needs --backend torch)")
    sp.add_argument("--set", action="append", type=key_value, metavar="KEY=VALUE",
                    help="override an architecture parameter, for every architecture that has it (repeatable), or "
                         "fix an ADMM knob, e.g. --set admm.epochs=2 --set admm.limit=5000, or a spiking network's "
                         "time steps, --set time_steps=5")
    sp.add_argument("--out", required=True, help="the sweep's HDF5 file (created, or resumed when it exists)")
    sp.add_argument("--workers", type=positive_int, default=1, metavar="N",
                    help="run points in N local processes (default 1: this process)")
    sp.add_argument("--scheduler", metavar="ADDRESS",
                    help="run points on the Dask cluster at ADDRESS, e.g. tcp://host:8786 "
                         "(needs pip install 'cimsim[dist]')")
