"""The synthetic event datasets (cimsim.workloads.event_synth): pixel model, determinism, balance, motion statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cimsim.errors import ConfigError
from cimsim.workloads import datasets as ds
from cimsim.workloads import event_synth as S
from cimsim.workloads.events import events_to_frames


def test_pixel_model_fires_floor_of_log_change_over_threshold():
    video = np.array([0.0, 1.0, 1.0, 0.0])[None, :, None, None] * np.ones((1, 4, 1, 2))
    thr = np.full((1, 1, 2), 0.2)
    c = S.dvs_counts(video, thr)
    n = math.floor((math.log(1 + S.LOG_EPS) - math.log(S.LOG_EPS)) / 0.2)    # 11 ON events on the rise
    assert c[0, 0, 1, 0, 0] == n and c[0, 0, 0].sum() == 0
    assert c[0, 1].sum() == 0                                                  # no change, no event
    # the fall: the reference sits n*0.2 above the start, so the same n OFF events bring it back under 0.2
    assert c[0, 2, 0, 0, 0] == n and c[0, 2, 1].sum() == 0


def test_events_of_a_sample_bin_to_its_frames():
    rng = np.random.default_rng(0)
    video = S.gesture_video(4, rng)[None]
    counts = S.dvs_counts(video, S._thresholds(rng, 1, (64, 64)))
    ev = S.counts_to_events(counts[0])
    frames = events_to_frames(ev, 5, (64, 64), 0, counts.shape[1] * S.DT_US)
    assert len(ev) == counts.sum() > 0
    assert np.array_equal(frames, S.bin_counts(counts, 5)[0])


@pytest.mark.parametrize("make", [lambda seed: S.make_gesture_synth(22, 11, seed=seed),
                                  lambda seed: S.make_flow_synth(3, 2, seed=seed)])
def test_same_seed_same_bytes(make):
    a, b, c = make(3), make(3), make(4)
    for k in ("x_train", "y_train", "x_test", "y_test"):
        assert getattr(a, k).numpy().tobytes() == getattr(b, k).numpy().tobytes()
    assert a.x_train.numpy().tobytes() != c.x_train.numpy().tobytes()


def fake_fmnist(n_per_class=3):
    """A Fashion-MNIST-shaped source: a bright square per image, class c at its own size."""
    from cimsim.workloads.datasets import Dataset, FASHION_MNIST_CLASSES

    x = torch.zeros(10 * n_per_class, 1, 28, 28)
    y = torch.arange(10 * n_per_class) % 10
    for i, c in enumerate(y.tolist()):
        x[i, 0, 14 - c - 2:14 + c + 2, 14 - c - 2:14 + c + 2] = 1.0
    return Dataset("fashion-mnist", x, y, x.clone(), y.clone(), FASHION_MNIST_CLASSES, "test")


def test_nmnist_fashion_balanced_deterministic_and_only_at_edges():
    src = fake_fmnist()
    a = S.make_nmnist_fashion(20, 10, seed=1, source=src)
    b = S.make_nmnist_fashion(20, 10, seed=1, source=src)
    assert a.x_train.shape == (20, 5, 2, 32, 32) and a.input_shape == (5, 2, 32, 32)
    assert np.bincount(a.y_train.numpy()).tolist() == [2] * 10 and np.bincount(a.y_test.numpy()).tolist() == [1] * 10
    assert torch.equal(a.x_train, b.x_train)
    # class 0: a 4x4 square at rows/cols 12..15 of the image, centred in the sensor (offset 2) and moved at most
    # 2 px (+1 for the bilinear spread): no event outside rows/cols 12..19, some at both polarities in each bin
    f = a.x_train[a.y_train == 0][0]
    inside = torch.zeros(32, 32, dtype=torch.bool)
    inside[11:21, 11:21] = True
    assert f[..., ~inside].sum() == 0
    assert bool((f.sum(dim=(2, 3)) > 0).all())
    with pytest.raises(ConfigError):
        S.make_nmnist_fashion(20, 10, time_bins=4, source=src)   # 30 instants: 4 bins do not divide them


def centroid(frame):
    w = frame.sum(axis=0)
    yy, xx = np.mgrid[:w.shape[0], :w.shape[1]]
    return np.array([(xx * w).sum(), (yy * w).sum()]) / w.sum()


def test_gesture_classes_balanced_and_move_as_named():
    d = S.make_gesture_synth(66, 11, seed=0)
    assert d.num_classes == 11 and d.input_shape == (5, 2, 64, 64)
    assert np.bincount(d.y_train.numpy()).tolist() == [6] * 11
    x, y = d.x_train.numpy(), d.y_train.numpy()
    for i in range(len(y)):
        c0, c4 = centroid(x[i, 0]), centroid(x[i, 4])
        move = c4 - c0
        if y[i] in (0, 1, 2, 3):      # right, left, up (y decreases), down: at least 5 px the named way
            want = np.array(((1, 0), (-1, 0), (0, -1), (0, 1))[y[i]])
            assert move @ want > 5, (i, y[i], move)
        if y[i] in (4, 5):            # circles: the turn from bin 1 to bin 2 about the circle's centre
            cs = [centroid(x[i, t]) for t in range(5)]
            centre = np.mean(cs, axis=0)
            a, b = cs[1] - centre, cs[2] - centre
            cross = a[0] * b[1] - a[1] * b[0]    # > 0: clockwise on screen (y points down)
            assert (cross > 0) == (y[i] == 4), (i, y[i], cross)
    # zoom in: the ring grows, so the events' mean distance from their centroid grows from bin 0 to bin 4
    for i in np.flatnonzero(np.isin(y, (8, 9))):
        def spread(t):
            w = x[i, t].sum(0)
            yy, xx = np.mgrid[:64, :64]
            c = centroid(x[i, t])
            return (np.hypot(xx - c[0], yy - c[1]) * w).sum() / w.sum()
        assert (spread(4) > spread(0)) == (y[i] == 8)


def shift_between(a, b):
    """The circular displacement (dx, dy) that best maps image a onto b (cross-correlation peak, parabolic)."""
    cc = np.fft.ifft2(np.conj(np.fft.fft2(a)) * np.fft.fft2(b)).real
    iy, ix = np.unravel_index(np.argmax(cc), cc.shape)
    n = cc.shape[0]

    def refine(m, p, q):
        d = m - 2 * p + q
        return 0.0 if d == 0 else 0.5 * (m - q) / d
    dy = iy + refine(cc[(iy - 1) % n, ix], cc[iy, ix], cc[(iy + 1) % n, ix])
    dx = ix + refine(cc[iy, (ix - 1) % n], cc[iy, ix], cc[iy, (ix + 1) % n])
    return np.array([(dx + n / 2) % n - n / 2, (dy + n / 2) % n - n / 2])


def test_flow_events_move_at_the_ground_truth_flow():
    """Background only: the signed event frames of bins 1 and 4 are the same edges shifted by 3/5 of the flow
    (bin centres 3 bins apart over a 5-bin window); the cross-correlation peak finds it within 0.5 px, 0.25 px
    on average over 12 samples. Bin 0 is left out: every pixel starts at its reference, so its first events lag
    until the change reaches the threshold (that alone biases a bin-0 estimate by ~7 % low)."""
    d = S.make_flow_synth(12, 1, seed=7, objects=0)
    errs = []
    for i in range(12):
        f = d.x_train[i].numpy()
        signed = f[:, 1] - f[:, 0]
        est = shift_between(signed[1], signed[4])
        truth = d.y_train[i, :, 0, 0].numpy() * 3 / 5
        assert torch.equal(d.y_train[i, 0], torch.full((64, 64), float(d.y_train[i, 0, 0, 0])))   # uniform flow
        errs.append(np.hypot(*(est - truth)))
    assert max(errs) < 0.5 and np.mean(errs) < 0.25, errs


def test_flow_truth_of_the_square_is_its_own_velocity():
    rng = np.random.default_rng(11)
    video, flow, vels = S.flow_sample(rng, objects=1)
    assert video.shape == (41, 64, 64) and 0 <= video.min() and video.max() <= 1
    (vbx, vby), (vox, voy) = vels
    square = (flow[0] == np.float64(vox)) & (flow[1] == np.float64(voy))
    assert 16 ** 2 <= square.sum() <= 25 ** 2                       # the 16-24 px square
    assert np.all(flow[0][~square] == vbx) and np.all(flow[1][~square] == vby)
    assert max(math.hypot(*v) for v in vels) <= S.V_MAX


def test_registered_names():
    for name in ("nmnist-fashion", "gesture-synth", "flow-synth", "dvs-gesture", "mvsec"):
        assert ds.canonical_name(name) == name
    assert ds.canonical_name("Gesture_Synth") == "gesture-synth"
