"""Three synthetic event datasets, generated deterministically from a seed (the real ones cannot be downloaded here).

Every set is made by one **pixel model** of a DVS camera (Lichtsteiner et al., JSSC 2008): a video of intensities
``I`` in [0, 1] is rendered at ``K + 1`` instants; each pixel keeps the log intensity ``L = ln(I + LOG_EPS)`` at its
last event and, at every instant ``k``, fires ``n = floor(|L_k - L_ref| / C)`` events of the sign of the change
(ON = 1 brighter, OFF = 0) and moves its reference by ``n C`` (:func:`dvs_counts`). The contrast threshold ``C``
varies from pixel to pixel (Gaussian mismatch). The ``K`` instants are spread evenly over the sample's window and
grouped into ``T`` time bins (``K / T`` each), giving frames ``(T, 2, H, W)`` like :func:`cimsim.workloads.events.
events_to_frames` gives for real recordings; :func:`counts_to_events` gives one sample's events themselves (event
time = its instant's index times ``DT_US``), whose binning equals the frames exactly (tested).

* ``nmnist-fashion`` (:func:`make_nmnist_fashion`): Fashion-MNIST images seen by a sensor making three linear
  saccades in a triangle, as N-MNIST was recorded (Orchard et al., Front. Neurosci. 2015): the 28 x 28 image sits
  at the centre of a 32 x 32 sensor (N-MNIST's is 34 x 34; 32 fits the zoo's multiple-of-4 rule) and moves
  (-2, 2) -> (0, -2) -> (2, 2) -> (-2, 2) pixels (x right, y down), 10 instants per saccade, bilinear
  sub-pixel shifts. Balanced: the first ``n / 10`` images of each class of each split. T = 5 by default.
* ``gesture-synth`` (:func:`make_gesture_synth`): 11 classes of a bright Gaussian blob (sigma 3-5 px) on a
  64 x 64 sensor (DVSNet's input, arXiv 2211.02167): 0 right, 1 left, 2 up, 3 down (12-24 px), 4 clockwise and
  5 counter-clockwise circles (radius 10-18 px, one turn), 6 horizontal and 7 vertical waves (amplitude 8-14 px,
  one period), 8 zoom in and 9 zoom out (a ring whose radius grows 4 -> 20 px or shrinks), 10 clap (two blobs
  meet and part). Centre, size, speed and phase are drawn per sample; background noise events fire with
  probability ``NOISE_P`` per pixel and instant. Balanced: ``n / 11`` samples of each class, classes interleaved.
* ``flow-synth`` (:func:`make_flow_synth`): a random band-limited periodic texture (period = the 64 x 64 sensor)
  translating at a velocity drawn uniformly in the disc of radius ``V_MAX`` px per window, and one textured
  square (16-24 px) in front of it moving at its own velocity. Ground truth: per pixel, the displacement in
  pixels over the sample's window (flow_x, flow_y) of the layer seen there at the window's start, as MVSEC's
  ``*_gt_flow_dist`` gives the flow over one interval. Sub-pixel translation by a Fourier phase shift (exact for
  the band-limited periodic texture).

Sizes (registered defaults, kept small for a 2-core machine): nmnist-fashion 2000 + 1000 samples, gesture-synth
484 + 242, flow-synth 512 + 128; all with T = 5 and seed 0 (``CIMSIM_EVENT_SEED`` is not read: pass ``seed``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from cimsim.errors import ConfigError
from cimsim.workloads.events import Events

LOG_EPS = 0.1          # (est.) offset of the log: a dark pixel's log intensity stays finite
CONTRAST = 0.2         # (est.) DVS contrast threshold; Lichtsteiner et al. 2008 report ~15 % contrast sensitivity
CONTRAST_SIGMA = 0.03  # (est.) pixel-to-pixel threshold mismatch (relative), of the order reported for the DVS128
NOISE_P = 2e-4         # (est.) background events per pixel and instant (gesture-synth)
DT_US = 1000           # (est.) time between instants of the synthetic sensor, us
V_MAX = 8.0            # (est.) flow-synth: the largest displacement over a window, px
TIME_BINS = 5          # the flow networks' time steps (arXiv 2211.02167); used for all three sets
GESTURE_CLASSES = ("right", "left", "up", "down", "circle cw", "circle ccw", "wave horizontal", "wave vertical",
                   "zoom in", "zoom out", "clap")
FMNIST_SENSOR = 32
SACCADE = ((-2.0, 2.0), (0.0, -2.0), (2.0, 2.0), (-2.0, 2.0))   # (dx, dy) vertices of the triangle, px
SACCADE_STEPS = 10


def _check(time_bins: int, instants: int) -> None:
    if isinstance(time_bins, bool) or not isinstance(time_bins, int) or time_bins < 1 or instants % time_bins:
        raise ConfigError(f"time_bins must be a positive divisor of the {instants} instants, got {time_bins!r}")


def dvs_counts(video: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Events per instant of a pixel model (module docstring): ``video`` (B, K + 1, H, W) intensities,
    ``thresholds`` (B, H, W) contrast thresholds; returns (B, K, 2, H, W) counts (channel 0 OFF, 1 ON)."""
    logv = np.log(video.astype(np.float64) + LOG_EPS)
    ref = logv[:, 0].copy()
    B, K1, H, W = video.shape
    out = np.zeros((B, K1 - 1, 2, H, W), dtype=np.float32)
    for k in range(1, K1):
        d = logv[:, k] - ref
        n = np.floor(np.abs(d) / thresholds)
        on = d > 0
        out[:, k - 1, 1] = np.where(on, n, 0)
        out[:, k - 1, 0] = np.where(on, 0, n)
        ref += np.sign(d) * n * thresholds
    return out


def bin_counts(counts: np.ndarray, time_bins: int) -> np.ndarray:
    """(B, K, 2, H, W) per-instant counts summed into ``time_bins`` equal bins: (B, T, 2, H, W)."""
    B, K = counts.shape[:2]
    _check(time_bins, K)
    return counts.reshape(B, time_bins, K // time_bins, *counts.shape[2:]).sum(axis=2)


def counts_to_events(counts: np.ndarray) -> Events:
    """One sample's per-instant counts (K, 2, H, W) as events, time = instant index x ``DT_US`` (sorted)."""
    k, p, y, x = np.nonzero(counts)
    n = counts[k, p, y, x].astype(np.int64)
    rep = lambda a, dt: np.repeat(a, n).astype(dt)   # noqa: E731
    return Events(rep(x, np.int16), rep(y, np.int16), rep(k, np.int64) * DT_US, rep(p, np.int8))


def _thresholds(rng, n: int, size: tuple[int, int]) -> np.ndarray:
    return np.maximum(CONTRAST * (1 + CONTRAST_SIGMA * rng.standard_normal((n,) + size)), 0.05)


def _dataset(name, x_train, y_train, x_test, y_test, classes, seed, info):
    from cimsim.workloads.datasets import Dataset

    return Dataset(name, torch.from_numpy(x_train), torch.from_numpy(y_train), torch.from_numpy(x_test),
                   torch.from_numpy(y_test), tuple(classes), f"generated (seed {seed})", {"seed": seed, **info})


# ------------------------------------------------------------------------------------------- nmnist-fashion
def saccade_offsets() -> np.ndarray:
    """(K + 1, 2) sensor offsets (dx, dy) of the three saccades, 10 instants each."""
    pts = [np.array(SACCADE[0])]
    for a, b in zip(SACCADE[:-1], SACCADE[1:]):
        for s in range(1, SACCADE_STEPS + 1):
            pts.append(np.array(a) + (np.array(b) - np.array(a)) * s / SACCADE_STEPS)
    return np.stack(pts)


def _place(images: np.ndarray, dx: float, dy: float, size: int) -> np.ndarray:
    """``images`` (B, h, w) drawn on a (B, size, size) canvas, centred and shifted by (dx, dy), bilinear."""
    B, h, w = images.shape
    x0, y0 = (size - w) / 2 + dx, (size - h) / 2 + dy
    ix, iy = math.floor(x0), math.floor(y0)
    fx, fy = x0 - ix, y0 - iy
    out = np.zeros((B, size, size))
    for oy, wy in ((0, 1 - fy), (1, fy)):
        for ox, wx in ((0, 1 - fx), (1, fx)):
            if wx * wy:
                out[:, iy + oy:iy + oy + h, ix + ox:ix + ox + w] += wx * wy * images
    return out


def saccade_counts(images: np.ndarray, rng) -> np.ndarray:
    """Per-instant event counts (B, 30, 2, 32, 32) of images (B, 28, 28) in [0, 1] seen through the saccades."""
    video = np.stack([_place(images, dx, dy, FMNIST_SENSOR) for dx, dy in saccade_offsets()], axis=1)
    return dvs_counts(video, _thresholds(rng, len(images), (FMNIST_SENSOR, FMNIST_SENSOR)))


def _balanced_first(y: np.ndarray, per_class: int, classes: int) -> np.ndarray:
    idx = [np.flatnonzero(y == c)[:per_class] for c in range(classes)]
    if min(len(i) for i in idx) < per_class:
        raise ConfigError(f"the source split has fewer than {per_class} examples of some class")
    return np.sort(np.concatenate(idx))


def make_nmnist_fashion(n_train: int = 2000, n_test: int = 1000, time_bins: int = TIME_BINS, seed: int = 0,
                        data_dir=None, source=None):
    """Fashion-MNIST as saccade events (module docstring): frames (N, T, 2, 32, 32). ``source``: a loaded
    Fashion-MNIST :class:`~cimsim.workloads.datasets.Dataset` (default: loaded from ``data_dir``)."""
    _check(time_bins, 3 * SACCADE_STEPS)
    if n_train < 10 or n_test < 10:
        raise ConfigError("nmnist-fashion needs at least 10 training and 10 test samples (one per class)")
    if source is None:
        from cimsim.workloads.datasets import load_fashion_mnist
        source = load_fashion_mnist(data_dir)
    rng = np.random.default_rng(seed)
    parts = []
    for x, y, n in ((source.x_train, source.y_train, n_train), (source.x_test, source.y_test, n_test)):
        yn = y.numpy()
        idx = _balanced_first(yn, n // 10, 10)
        imgs = x.numpy()[idx, 0].astype(np.float64)
        frames = np.concatenate([bin_counts(saccade_counts(imgs[s:s + 500], rng), time_bins)
                                 for s in range(0, len(imgs), 500)])
        parts += [frames, yn[idx].astype(np.int64)]
    return _dataset("nmnist-fashion", *parts, source.classes, seed,
                    {"task": "classify", "time_bins": time_bins, "sensor": [FMNIST_SENSOR] * 2,
                     "n_train": len(parts[1]), "n_test": len(parts[3])})


# ------------------------------------------------------------------------------------------- gesture-synth
GESTURE_SIZE = 64
GESTURE_INSTANTS = 40


def _blob(cx, cy, sigma, size):
    g = np.arange(size)
    return np.exp(-((g[None, :] - cx) ** 2 + (g[:, None] - cy) ** 2) / (2 * sigma ** 2))


def _ring(cx, cy, radius, width, size):
    g = np.arange(size)
    r = np.hypot(g[None, :] - cx, g[:, None] - cy)
    return np.exp(-((r - radius) ** 2) / (2 * width ** 2))


def gesture_video(label: int, rng, size: int = GESTURE_SIZE, instants: int = GESTURE_INSTANTS) -> np.ndarray:
    """(instants + 1, size, size) intensities of one sample of class ``label`` (module docstring)."""
    s = np.linspace(0.0, 1.0, instants + 1)
    sigma = rng.uniform(3.0, 5.0)
    cx, cy = rng.uniform(24, 40, 2)
    frames = []
    if label <= 3:
        dist = rng.uniform(12, 24)
        ux, uy = ((1, 0), (-1, 0), (0, -1), (0, 1))[label]
        path = [(cx + ux * dist * (t - 0.5), cy + uy * dist * (t - 0.5)) for t in s]
    elif label <= 5:
        r, phi0 = rng.uniform(10, 18), rng.uniform(0, 2 * np.pi)
        sgn = 1.0 if label == 4 else -1.0          # y points down: increasing angle turns clockwise on screen
        path = [(cx + r * np.cos(phi0 + sgn * 2 * np.pi * t), cy + r * np.sin(phi0 + sgn * 2 * np.pi * t))
                for t in s]
    elif label <= 7:
        a = rng.uniform(8, 14)
        path = [(cx + (a * np.sin(2 * np.pi * t) if label == 6 else 0.0),
                 cy + (a * np.sin(2 * np.pi * t) if label == 7 else 0.0)) for t in s]
    if label <= 7:
        frames = [_blob(x, y, sigma, size) for x, y in path]
    elif label <= 9:
        radii = 4 + 16 * (s if label == 8 else 1 - s)
        frames = [_ring(cx, cy, r, 1.5, size) for r in radii]
    else:
        gap = rng.uniform(10, 16)
        frames = [_blob(cx - gap * abs(1 - 2 * t), cy, sigma, size) + _blob(cx + gap * abs(1 - 2 * t), cy, sigma, size)
                  for t in s]
    return 0.2 + 0.8 * np.clip(np.stack(frames), 0, 1)


def make_gesture_synth(n_train: int = 484, n_test: int = 242, time_bins: int = TIME_BINS, seed: int = 0):
    """The synthetic gesture set (module docstring): frames (N, T, 2, 64, 64), 11 balanced classes."""
    _check(time_bins, GESTURE_INSTANTS)
    n_cls = len(GESTURE_CLASSES)
    if n_train < n_cls or n_test < n_cls:
        raise ConfigError(f"gesture-synth needs at least {n_cls} training and {n_cls} test samples (one per class)")
    rng = np.random.default_rng(seed)
    parts = []
    for n in (n_train - n_train % n_cls, n_test - n_test % n_cls):
        labels = np.arange(n) % n_cls
        x = np.empty((n, time_bins, 2, GESTURE_SIZE, GESTURE_SIZE), dtype=np.float32)
        for i, c in enumerate(labels):
            video = gesture_video(int(c), rng)[None]
            counts = dvs_counts(video, _thresholds(rng, 1, (GESTURE_SIZE, GESTURE_SIZE)))
            noise = rng.random(counts.shape[:2] + counts.shape[3:]) < NOISE_P
            pol = rng.integers(0, 2, noise.shape)
            counts[:, :, 1] += noise & (pol == 1)
            counts[:, :, 0] += noise & (pol == 0)
            x[i] = bin_counts(counts, time_bins)[0]
        parts += [x, labels.astype(np.int64)]
    return _dataset("gesture-synth", *parts, GESTURE_CLASSES, seed,
                    {"task": "classify", "time_bins": time_bins, "sensor": [GESTURE_SIZE] * 2,
                     "noise_p": NOISE_P, "n_train": len(parts[1]), "n_test": len(parts[3])})


# ------------------------------------------------------------------------------------------- flow-synth
FLOW_SIZE = 64
FLOW_INSTANTS = 40
TEXTURE_CUTOFF = 6.0   # (est.) Gaussian spectrum width, cycles per sensor: edges of a few pixels


def texture_spectrum(rng, size: int = FLOW_SIZE) -> np.ndarray:
    """The FFT of a random band-limited periodic texture (Gaussian spectrum of width ``TEXTURE_CUTOFF``)."""
    f = np.fft.fftfreq(size) * size
    amp = np.exp(-(f[None, :] ** 2 + f[:, None] ** 2) / (2 * TEXTURE_CUTOFF ** 2))
    spec = np.fft.fft2(rng.standard_normal((size, size))) * amp
    img = np.fft.ifft2(spec).real
    return np.fft.fft2((img - img.min()) / (img.max() - img.min()))


def shifted(spec: np.ndarray, dx, dy) -> np.ndarray:
    """The texture of spectrum ``spec`` translated by (dx, dy) pixels: ``I(x - dx, y - dy)``, periodic. ``dx``,
    ``dy``: numbers, or arrays of shifts (then one image per shift, stacked)."""
    size = spec.shape[0]
    f = np.fft.fftfreq(size)
    dx, dy = np.atleast_1d(np.asarray(dx, float)), np.atleast_1d(np.asarray(dy, float))
    phase = np.exp(-2j * np.pi * dy[:, None, None] * f[None, :, None]) * \
        np.exp(-2j * np.pi * dx[:, None, None] * f[None, None, :])   # separable: (shifts, rows, columns)
    out = np.clip(np.fft.ifft2(spec[None] * phase).real, 0, 1)
    return out if np.ndim(out) and len(dx) > 1 else out[0]


def _box(x0: float, y0: float, side: float, size: int) -> np.ndarray:
    """An anti-aliased square mask, top-left corner (x0, y0): each pixel's covered fraction."""
    g = np.arange(size)
    cov = lambda a: np.clip(np.minimum(g + 1, a + side) - np.maximum(g, a), 0, 1)   # noqa: E731
    return cov(y0)[:, None] * cov(x0)[None, :]


def flow_sample(rng, objects: int = 1):
    """One flow-synth sample: (video (K + 1, H, W), flow (2, H, W), velocities [(vx, vy), ...] background first)."""
    def velocity():
        r, a = V_MAX * math.sqrt(rng.random()), rng.uniform(0, 2 * np.pi)
        return r * math.cos(a), r * math.sin(a)

    s = np.linspace(0.0, 1.0, FLOW_INSTANTS + 1)
    bg, v_bg = texture_spectrum(rng), velocity()
    layers = []
    for _ in range(objects):
        side = rng.uniform(16, 24)
        v = velocity()
        # the square stays on the sensor for the whole window
        x0 = rng.uniform(max(0.0, -v[0]), FLOW_SIZE - side - max(0.0, v[0]))
        y0 = rng.uniform(max(0.0, -v[1]), FLOW_SIZE - side - max(0.0, v[1]))
        layers.append((texture_spectrum(rng), v, x0, y0, side))
    flow = np.empty((2, FLOW_SIZE, FLOW_SIZE))
    flow[0], flow[1] = v_bg
    video = shifted(bg, v_bg[0] * s, v_bg[1] * s)
    for spec, v, x0, y0, side in layers:
        m = np.stack([_box(x0 + v[0] * t, y0 + v[1] * t, side, FLOW_SIZE) for t in s])
        video = video * (1 - m) + shifted(spec, v[0] * s, v[1] * s) * m
    for spec, v, x0, y0, side in layers:
        m = _box(x0, y0, side, FLOW_SIZE) >= 0.5
        flow[0][m], flow[1][m] = v
    return video, flow, [v_bg] + [layer[1] for layer in layers]


def make_flow_synth(n_train: int = 512, n_test: int = 128, time_bins: int = TIME_BINS, seed: int = 0,
                    objects: int = 1):
    """The synthetic optical-flow set (module docstring): frames (N, T, 2, 64, 64), flow (N, 2, 64, 64) in px."""
    _check(time_bins, FLOW_INSTANTS)
    if n_train < 1 or n_test < 1 or objects < 0:
        raise ConfigError("flow-synth needs n_train >= 1, n_test >= 1 and objects >= 0")
    rng = np.random.default_rng(seed)
    parts = []
    for n in (n_train, n_test):
        x = np.empty((n, time_bins, 2, FLOW_SIZE, FLOW_SIZE), dtype=np.float32)
        y = np.empty((n, 2, FLOW_SIZE, FLOW_SIZE), dtype=np.float32)
        for i in range(n):
            video, flow, _ = flow_sample(rng, objects)
            counts = dvs_counts(video[None], _thresholds(rng, 1, (FLOW_SIZE, FLOW_SIZE)))
            x[i], y[i] = bin_counts(counts, time_bins)[0], flow
        parts += [x, y]
    return _dataset("flow-synth", *parts, ("flow_x", "flow_y"), seed,
                    {"task": "flow", "time_bins": time_bins, "sensor": [FLOW_SIZE] * 2, "v_max_px": V_MAX,
                     "objects": objects, "n_train": n_train, "n_test": n_test})
