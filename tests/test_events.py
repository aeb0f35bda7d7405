"""Event data readers (cimsim.workloads.events): files written here in the real formats, read back number-exact.

The AEDAT 3.1 bytes are packed by this file with ``struct`` from the format's facts (libcaer's packet header and
polarity address word), independently of the module's own writer; MVSEC-style files are written with h5py and
numpy's npz, as the dataset ships them.
"""

from __future__ import annotations

import struct
from pathlib import Path

import h5py
import numpy as np
import pytest

from cimsim.errors import ConfigError, DatasetError
from cimsim.workloads import events as E

pytestmark = pytest.mark.usefixtures("isolated_data")   # tests/conftest.py


def aedat_bytes(packets, header=b"#!AER-DAT3.1\r\n#Format: RAW\r\n#!END-HEADER\r\n") -> bytes:
    """packets: list of (type, overflow, [(x, y, p, t, valid), ...]); polarity events packed as libcaer does."""
    out = bytearray(header)
    for etype, overflow, evs in packets:
        out += struct.pack("<hhiiiiii", etype, 1, 8, 4, overflow, len(evs), len(evs), len(evs))
        for x, y, p, t, valid in evs:
            out += struct.pack("<Ii", (x << 17) | (y << 2) | (p << 1) | valid, t)
    return bytes(out)


def random_events(rng, n, size=(128, 128), t_max=1_000_000):
    t = np.sort(rng.integers(0, t_max, n))
    return E.Events(rng.integers(0, size[1], n).astype(np.int16), rng.integers(0, size[0], n).astype(np.int16),
                    t.astype(np.int64), rng.integers(0, 2, n).astype(np.int8))


def test_frames_count_every_event_in_its_bin():
    ev = E.Events(np.array([0, 5, 5, 127]), np.array([0, 3, 3, 127]), np.array([0, 10, 19, 39]),
                  np.array([1, 0, 0, 1]))
    f = E.events_to_frames(ev, 4, (128, 128), 0, 40)
    assert f.shape == (4, 2, 128, 128) and f.dtype == np.float32
    assert f.sum() == 4
    assert f[0, 1, 0, 0] == 1 and f[1, 0, 3, 5] == 2 and f[3, 1, 127, 127] == 1
    g = E.events_to_frames(ev, 4, (128, 128), 0, 40, downsample=4)   # blocks of 4x4 pixels summed
    assert g.shape == (4, 2, 32, 32) and g[1, 0, 0, 1] == 2 and g[3, 1, 31, 31] == 1
    assert E.events_to_frames(ev, 2, (128, 128), 10, 20).sum() == 2   # outside [t0, t1) dropped
    with pytest.raises(ConfigError):
        E.events_to_frames(ev, 0, (128, 128))


def test_aedat31_packed_by_hand_reads_back_exactly(tmp_path):
    evs = [(3, 7, 1, 100, 1), (127, 0, 0, 200, 1), (9, 9, 1, 300, 0), (64, 127, 0, 2**31 - 1, 1)]
    raw = aedat_bytes([(1, 0, evs[:2]), (2, 0, []), (1, 0, evs[2:]), (1, 1, [(1, 2, 1, 5, 1)])])
    path = tmp_path / "u.aedat"
    path.write_bytes(raw)
    ev = E.read_aedat31(path)
    assert ev.x.tolist() == [3, 127, 64, 1] and ev.y.tolist() == [7, 0, 127, 2]   # the invalid event dropped
    assert ev.p.tolist() == [1, 0, 0, 1]
    assert ev.t.tolist() == [100, 200, 2**31 - 1, (1 << 31) + 5]                 # overflow << 31 added


def test_aedat31_writer_round_trip(tmp_path):
    ev = random_events(np.random.default_rng(1), 10_000)
    E.write_aedat31(tmp_path / "a.aedat", ev, packet_events=999)
    back = E.read_aedat31(tmp_path / "a.aedat")
    for k in ("x", "y", "t", "p"):
        assert np.array_equal(getattr(back, k), getattr(ev, k))


@pytest.mark.parametrize("damage", ["magic", "no_end", "truncated_header", "overlong_packet", "missing"])
def test_corrupt_aedat_is_one_dataset_error(tmp_path, damage):
    good = aedat_bytes([(1, 0, [(1, 1, 1, 10, 1)] * 5)])
    raw = {"magic": b"#!AER-DAT2.0" + good[12:], "no_end": good.replace(b"#!END-HEADER", b"#!XXX-HEADER"),
           "truncated_header": good[:-40 - 10], "overlong_packet": good[:-8], "missing": None}[damage]
    path = tmp_path / "r.aedat"
    if raw is not None:
        path.write_bytes(raw)
    with pytest.raises(DatasetError) as e:
        E.read_aedat31(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def write_gesture_release(root: Path, rng, per_split=2):
    """A DvsGesture-like folder: recordings, their labels csv, the two trial lists; returns the truth."""
    root.mkdir(parents=True, exist_ok=True)
    truth = {}
    for split in ("train", "test"):
        names = []
        for r in range(per_split):
            name = f"user{r + (10 if split == 'test' else 1):02d}_led.aedat"
            ev = random_events(rng, 3000, t_max=3_000_000)
            E.write_aedat31(root / name, ev)
            segs = [(1 + (2 * r + k) % 11, 100_000 + k * 1_000_000, 900_000 + k * 1_000_000) for k in range(3)]
            with open(root / name.replace(".aedat", "_labels.csv"), "w") as f:
                f.write("class,startTime_usec,endTime_usec\n")
                f.writelines(f"{c},{a},{b}\n" for c, a, b in segs)
            truth.setdefault(split, []).extend((ev, c - 1, a, b) for c, a, b in segs)
            names.append(name)
        (root / f"trials_to_{split}.txt").write_text("\n".join(names) + "\n")
    return truth


def test_gesture_release_samples_are_the_labelled_segments(tmp_path):
    truth = write_gesture_release(tmp_path / "DvsGesture", np.random.default_rng(2))
    x, y = E.gesture_samples(tmp_path / "DvsGesture", "test", 5, downsample=2)
    assert x.shape == (6, 5, 2, 64, 64) and y.tolist() == [c for _, c, _, _ in truth["test"]]
    for i, (ev, c, a, b) in enumerate(truth["test"]):
        inside = (ev.t >= a) & (ev.t < b)
        assert x[i].sum() == inside.sum()                    # every event of the segment, once
        k = np.flatnonzero(inside)[0]                        # the first one in its bin, pixel and channel
        j = int((ev.t[k] - a) * 5 // (b - a))
        assert x[i, j, ev.p[k], ev.y[k] // 2, ev.x[k] // 2] >= 1
    data = E.load_dvs_gesture(tmp_path, time_bins=5)
    assert data.input_shape == (5, 2, 64, 64) and data.num_classes == 11 and len(data.y_train) == 6


def test_gesture_bad_labels_and_missing_lists(tmp_path):
    write_gesture_release(tmp_path / "g", np.random.default_rng(3), per_split=1)
    (tmp_path / "g" / "user01_led_labels.csv").write_text("class,startTime_usec,endTime_usec\n12,0,10\n")
    with pytest.raises(DatasetError, match="outside 1..11"):
        E.gesture_samples(tmp_path / "g", "train", 5)
    with pytest.raises(DatasetError, match="trials_to_val.txt does not exist"):
        E.gesture_samples(tmp_path / "g", "val", 5)


def write_mvsec(folder: Path, rng, n_frames=4, size=(260, 346)):
    folder.mkdir(parents=True, exist_ok=True)
    n = 5000
    t = np.sort(rng.uniform(10.0, 10.3, n))
    ev = np.stack([rng.integers(0, size[1], n), rng.integers(0, size[0], n), t, rng.choice([-1.0, 1.0], n)], 1)
    with h5py.File(folder / "outdoor_day1_data.hdf5", "w") as f:
        f.create_dataset("davis/left/events", data=ev)
    ts = np.linspace(10.0, 10.3, n_frames)
    fx = rng.normal(size=(n_frames,) + size)
    fy = rng.normal(size=(n_frames,) + size)
    np.savez(folder / "outdoor_day1_gt_flow_dist.npz", timestamps=ts, x_flow_dist=fx, y_flow_dist=fy)
    return ev, ts, fx, fy


def test_mvsec_reader_bins_events_and_flow(tmp_path):
    ev, ts, fx, fy = write_mvsec(tmp_path / "mvsec", np.random.default_rng(4))
    got = E.read_mvsec_events(tmp_path / "mvsec" / "outdoor_day1_data.hdf5")
    assert np.array_equal(got.x, ev[:, 0]) and np.array_equal(got.t, np.round(ev[:, 2] * 1e6))
    assert np.array_equal(got.p, ev[:, 3] > 0)
    x, y = E.mvsec_samples(tmp_path / "mvsec" / "outdoor_day1_data.hdf5",
                           tmp_path / "mvsec" / "outdoor_day1_gt_flow_dist.npz", 5, downsample=4, crop=(256, 256))
    assert x.shape == (3, 5, 2, 64, 64) and y.shape == (3, 2, 64, 64)
    r0, c0 = 2, 45                                           # centred 256 x 256 crop of 260 x 346
    tus = np.round(ev[:, 2] * 1e6)
    tts = np.round(ts * 1e6)
    inside = (ev[:, 1] >= r0) & (ev[:, 1] < r0 + 256) & (ev[:, 0] >= c0) & (ev[:, 0] < c0 + 256)
    for i in range(3):
        assert x[i].sum() == (inside & (tus >= tts[i]) & (tus < tts[i + 1])).sum()
    want = fx[1, r0:r0 + 4, c0:c0 + 4].mean() / 4           # block mean, in pixels of the downsampled frame
    assert y[1, 0, 0, 0] == pytest.approx(want, rel=1e-6)
    data = E.load_mvsec(tmp_path)
    assert data.info["task"] == "flow" and data.input_shape == (5, 2, 64, 64) and len(data.y_test) == 1


def test_mvsec_corrupt_files_are_one_line(tmp_path):
    write_mvsec(tmp_path, np.random.default_rng(5))
    bad = tmp_path / "bad_data.hdf5"
    bad.write_bytes(b"not hdf5 at all")
    with pytest.raises(DatasetError, match="bad_data.hdf5 is not a readable MVSEC-style HDF5 file"):
        E.read_mvsec_events(bad)
    with h5py.File(tmp_path / "three.hdf5", "w") as f:
        f.create_dataset("davis/left/events", data=np.zeros((4, 3)))
    with pytest.raises(DatasetError, match="not N x 4"):
        E.read_mvsec_events(tmp_path / "three.hdf5")
    np.savez(tmp_path / "gt.npz", timestamps=np.zeros(3))
    with pytest.raises(DatasetError, match="lacks x_flow_dist, y_flow_dist"):
        E.read_mvsec_flow(tmp_path / "gt.npz")
