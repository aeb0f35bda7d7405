"""Issue 16's CASCADE buffer-noise readings: CASCADE's "~25 dB SNR suffices at 6 bits", read as different signal and
noise definitions, put through the engine on LeNet-5 / Fashion-MNIST (BENCHMARKS.md, npim8).

    PYTHONPATH=$PWD python docs/bench_cascade_snr.py READING SEED LIMIT [SNR_DB]

The network is mapped on ``cascade`` at the comparison point of ``cimsim compare`` (8-bit weights and inputs,
32 nm; 256 calibration images, batches of 64; the first LIMIT test images), so ``value`` at seed S gives what
``cimsim compare --arch cascade --model lenet5 --dataset fashion-mnist --limit LIMIT --seed S`` gives. With
``r = 10**(-SNR_DB/20)`` (25 dB by default), each buffered line value ``v`` of slice ``s`` of layer ``L`` is off by:

* ``value``: ``r |v|`` (the model's default, ``buffer.write_sigma_frac``);
* ``rms_s``: ``r`` times the rms of layer L's slice-s line values, independent of ``v`` (signal = mean square);
* ``std_s``: ``r`` times their standard deviation, independent of ``v`` (signal = variance over the data, the
  compute SNR of the CiM literature: Kavishwar & Shanbhag, arXiv 2507.09776, docs/references.md#csnr);
* ``rms_L``: ``r`` times the rms of all of layer L's line values, independent of ``v``;
* ``fs``: ``r`` times a full-scale sine's rms on the line, ``FS / (2 sqrt 2)`` levels, independent of ``v``;
* ``conv``: the converted value itself (a whole weight over a group of cycles, summed over row blocks) off by
  ``r`` times its standard deviation over the layer's data (the compute SNR at the ADC's input).

The statistics come from the crossbars' own integer inputs on two calibration batches (at most 4000 input vectors a
crossbar) and the programmed level matrices. A value-independent error enters the engine as one Gaussian per
conversion (``BufferedADC.analog_sigma``, per row block; exact for independent Gaussians): ``sum_{c < K} 4**c
sum_s 4**s 2 (tia**2 + sigma_s**2)`` for K cycles a group and the two lines of a pair, ``tia`` the TIA's thermal
noise per value. Prints one JSON line: the accuracy and, per layer, the statistics and the noise used.
"""
import json
import math
import sys
import time
from dataclasses import replace

import numpy as np

import cimsim
from cimsim.crossbar import Crossbar
from cimsim.mappers.mapper import map_model
from cimsim.networks import load_model_and_data

READINGS = ("value", "rms_s", "std_s", "rms_L", "fs", "conv")


def line_statistics(xb, x, K):
    """Mean square and mean of each slice's line values (both lines of every pair, every cycle and row block), and
    the standard deviation of the converted values (groups of K cycles, all slices, summed over row blocks)."""
    xv = xb.digit_source(x)
    S, N, bits = xb.n_slices, xb.out_features, xb.spec.input_bits
    sq, s1, cnt = np.zeros(S), np.zeros(S), 0
    groups = []
    diffs = []
    for i, (k0, k1) in enumerate(xb.row_blocks):
        a = np.asarray(xb.a_gemm[i], dtype=np.float64).reshape(k1 - k0, S, 2, N)
        diffs.append(np.einsum("rsn,s->rn", a[:, :, 0] - a[:, :, 1], 2.0 ** np.arange(S)))
        for c in range(bits):
            plane = ((xv[:, k0:k1] >> c) & 1).astype(np.float64)
            v = np.einsum("br,rspn->bspn", plane, a)
            sq += (v ** 2).sum(axis=(0, 2, 3))
            s1 += v.sum(axis=(0, 2, 3))
            cnt += len(x) * 2 * N
    for g0 in range(0, bits, K):
        y = 0.0
        for i, (k0, k1) in enumerate(xb.row_blocks):
            for c in range(g0, min(g0 + K, bits)):
                y = y + 2.0 ** (c - g0) * (((xv[:, k0:k1] >> c) & 1).astype(np.float64) @ diffs[i])
        groups.append(np.ravel(y))
    return sq / cnt, s1 / cnt, float(np.concatenate(groups).std())


def main(reading: str, seed: int, limit: int, snr_db: float = 25.0) -> dict:
    r = 10 ** (-snr_db / 20)
    arch = cimsim.arch.get("cascade").with_params(weight_bits=8, input_bits=8, node_nm=32.0)
    if reading != "value":
        arch = arch.with_params(**{"buffer.write_sigma_frac": 0.0})
    model, _, data, _ = load_model_and_data("lenet5", "fashion-mnist", arch=arch)
    loader = list(data.loader("test", batch_size=64, limit=limit))
    cal = list(data.loader("train", batch_size=64, limit=256, shuffle=False))
    t0 = time.time()
    mapped = map_model(model, arch, cal, seed=seed, progress=False)
    stats = {}
    if reading != "value":
        seen = {}
        call = Crossbar.__call__

        def spy(xb, x):
            seen.setdefault(id(xb), []).append(np.asarray(x))
            return call(xb, x)
        Crossbar.__call__ = spy
        try:
            mapped.evaluate(cal[:2], progress=False)
        finally:
            Crossbar.__call__ = call
        tia = arch.tia.thermal_noise_levels(arch.full_scale_levels(), arch.level_current_a())
        K, J = arch.cycles_per_conversion, arch.magnitude_slices
        cycles_w = sum(4 ** c for c in range(K))
        for name, layer in mapped.mapped_layers.items():
            new = []
            for xb in layer.crossbars:
                x = np.concatenate(seen[id(xb)])
                if len(x) > 4000:
                    x = x[np.random.default_rng(0).choice(len(x), 4000, replace=False)]
                ms, mean, conv_std = line_statistics(xb, x, K)
                if reading == "conv":
                    blocks = len(xb.row_blocks)
                    tia_var = cycles_w * sum(4 ** s * 2 * tia ** 2 for s in range(J))
                    sigma = math.sqrt((r * conv_std) ** 2 / blocks + tia_var)
                    sig = None
                else:
                    sig = {"rms_s": r * np.sqrt(ms), "std_s": r * np.sqrt(np.maximum(ms - mean ** 2, 0)),
                           "rms_L": np.full(J, r * math.sqrt(ms.mean())),
                           "fs": np.full(J, r * arch.full_scale_levels() / (2 * math.sqrt(2)))}[reading]
                    sigma = math.sqrt(cycles_w * sum(4 ** s * 2 * (tia ** 2 + sig[s] ** 2) for s in range(J)))
                stats[name] = {"rms_per_slice": np.sqrt(ms).round(3).tolist(), "mean_per_slice": mean.round(3).tolist(),
                               "conversion_std": round(conv_std, 2),
                               "sigma_per_slice": None if sig is None else np.round(sig, 4).tolist(),
                               "analog_sigma": sigma, "default_analog_sigma": xb.spec.readout.analog_sigma}
                new.append(xb.with_readout(replace(xb.spec.readout, analog_sigma=sigma, relative_sigma=0.0)))
            layer.crossbars = new
        mapped.reset_events()
    rep = mapped.evaluate(loader, progress=False)
    return {"reading": reading, "seed": seed, "limit": limit, "snr_db": snr_db, "accuracy": rep.accuracy,
            "wall_s": round(time.time() - t0, 1), "layers": stats}


if __name__ == "__main__":
    if len(sys.argv) not in (4, 5) or sys.argv[1] not in READINGS:
        print(f"usage: bench_cascade_snr.py {{{'|'.join(READINGS)}}} SEED LIMIT [SNR_DB]", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]),
                          float(sys.argv[4]) if len(sys.argv) == 5 else 25.0)))
