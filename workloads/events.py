"""Event-camera data: polarity events, their binning into frames, and readers of the real formats on disk.

An event is (x, y, t, p): a pixel, a time in microseconds and a polarity (1 = ON, brighter; 0 = OFF). The
spiking networks consume **frames**: :func:`events_to_frames` bins a stream into ``T`` equal time bins over a
window ``[t0, t1)`` and counts the events of each polarity per pixel, giving ``(T, 2, H, W)`` (channel 0 OFF,
channel 1 ON), with optional spatial downsampling by an integer factor (the counts of each ``d x d`` block
summed). ``bin = floor((t - t0) * T / (t1 - t0))``; events outside the window are dropped.

Readers (nothing is downloaded; tonic is not needed):

* **DVS128 Gesture** (Amir et al., CVPR 2017; the IBM release ``DvsGesture/``): one AEDAT 3.1 file per
  recording (``user01_fluorescent.aedat``), a ``user01_fluorescent_labels.csv`` beside it (header
  ``class,startTime_usec,endTime_usec``, classes 1..11), and the split lists ``trials_to_train.txt`` /
  ``trials_to_test.txt`` (one ``.aedat`` name a line). :func:`read_aedat31` reads the file: text header lines
  starting with ``#`` (the first ``#!AER-DAT3.1``, the last ``#!END-HEADER``), then packets, each a 28-byte
  little-endian header (int16 event type, int16 source, int32 event size, int32 timestamp offset, int32
  timestamp overflow, int32 capacity, int32 number, int32 valid) and ``number x size`` bytes of events.
  Polarity events (type 1, 8 bytes): a uint32 address word (bit 0 valid, bit 1 polarity, bits 2-16 y,
  bits 17-31 x) and an int32 timestamp in us, extended to 64 bits by ``overflow << 31`` (libcaer's
  ``polarity.h`` and ``common.h``). Other packet types are skipped; invalid events are dropped.
  :func:`load_dvs_gesture` cuts every labelled segment into one sample of ``T`` bins on the 128 x 128 sensor.
* **MVSEC-style HDF5** (Zhu et al., RA-L 2018): ``davis/left/events``, an N x 4 float array of rows
  [x, y, t (s), p (-1 or +1)], and the ground-truth flow file ``*_gt_flow_dist.npz`` (``timestamps`` in s,
  ``x_flow_dist`` / ``y_flow_dist`` of shape (M, H, W), pixels per ground-truth interval).
  :func:`load_mvsec` makes one sample per interval ``[timestamps[i], timestamps[i+1])``: its events in
  ``T`` bins and the flow ``(2, H, W)`` at ``timestamps[i]`` (block-averaged and divided by the factor when
  downsampled, so it stays in pixels of the frames).

Corrupt or missing files give one :class:`~cimsim.errors.DatasetError` line naming the file and the fix.
"""

from __future__ import annotations

import csv
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cimsim.errors import ConfigError, DatasetError
from cimsim.fileio import reading

AEDAT31_MAGIC = b"#!AER-DAT3.1"
AEDAT_END_HEADER = b"#!END-HEADER"
PACKET_HEADER_BYTES = 28            # libcaer common.h: caer_event_packet_header
POLARITY_EVENT = 1                  # libcaer: POLARITY_EVENT packet type
POLARITY_EVENT_BYTES = 8
DVS128_SIZE = (128, 128)            # DVS128 sensor (Lichtsteiner et al., JSSC 2008): 128 x 128 pixels
DVS_GESTURE_CLASSES = ("hand clap", "right hand wave", "left hand wave", "right arm clockwise",
                       "right arm counter clockwise", "left arm clockwise", "left arm counter clockwise",
                       "arm roll", "air drums", "air guitar", "other gestures")   # Amir et al. 2017, Fig. 2
MVSEC_SIZE = (260, 346)             # DAVIS 346 (MVSEC, Zhu et al. 2018): 260 rows x 346 columns
MVSEC_EVENTS = "davis/left/events"


@dataclass(frozen=True)
class Events:
    """A stream of polarity events: pixel ``x`` (column), ``y`` (row), time ``t`` (us) and polarity ``p`` (0/1)."""

    x: np.ndarray
    y: np.ndarray
    t: np.ndarray
    p: np.ndarray

    def __len__(self) -> int:
        return len(self.t)

    def select(self, mask: np.ndarray) -> "Events":
        return Events(self.x[mask], self.y[mask], self.t[mask], self.p[mask])


def events_to_frames(ev: Events, time_bins: int, size: tuple[int, int], t0: float | None = None,
                     t1: float | None = None, downsample: int = 1) -> np.ndarray:
    """Event counts in ``time_bins`` equal bins of ``[t0, t1)`` (default: the stream's span): float32
    ``(T, 2, H // d, W // d)``, channel = polarity, ``d`` = ``downsample`` (see the module docstring)."""
    if isinstance(time_bins, bool) or not isinstance(time_bins, (int, np.integer)) or time_bins < 1:
        raise ConfigError(f"time bins must be a positive whole number, got {time_bins!r}")
    if isinstance(downsample, bool) or not isinstance(downsample, (int, np.integer)) or downsample < 1:
        raise ConfigError(f"downsample must be a positive whole number, got {downsample!r}")
    H, W = size
    h, w = H // downsample, W // downsample
    frames = np.zeros((time_bins, 2, h, w), dtype=np.float32)
    if len(ev) == 0:
        return frames
    t = ev.t.astype(np.float64)
    t0 = float(t.min()) if t0 is None else float(t0)
    t1 = float(t.max()) + 1.0 if t1 is None else float(t1)
    if not t1 > t0:
        raise ConfigError(f"the time window [{t0}, {t1}) is empty: t1 must exceed t0")
    b = np.floor((t - t0) * time_bins / (t1 - t0)).astype(np.int64)
    xs, ys = ev.x.astype(np.int64) // downsample, ev.y.astype(np.int64) // downsample
    keep = (b >= 0) & (b < time_bins) & (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h) & (ev.x >= 0) & (ev.y >= 0)
    np.add.at(frames, (b[keep], ev.p[keep].astype(np.int64).clip(0, 1), ys[keep], xs[keep]), 1.0)
    return frames


# ---------------------------------------------------------------------------------------------- AEDAT 3.1
def write_aedat31(path, ev: Events, packet_events: int = 4096, overflow: int = 0) -> None:
    """Write polarity events as an AEDAT 3.1 file (the layout :func:`read_aedat31` reads; for tests and for
    converting other streams). Timestamps must fit 31 bits above ``overflow << 31``."""
    ts = ev.t.astype(np.int64) - (int(overflow) << 31)
    if len(ts) and (ts.min() < 0 or ts.max() >= 1 << 31):
        raise ConfigError("timestamps do not fit one 31-bit overflow epoch; split the stream")
    addr = (1 | (ev.p.astype(np.uint32) & 1) << 1 | (ev.y.astype(np.uint32) & 0x7FFF) << 2
            | (ev.x.astype(np.uint32) & 0x7FFF) << 17).astype("<u4")
    with open(path, "wb") as f:
        f.write(AEDAT31_MAGIC + b"\r\n#Format: RAW\r\n#Source 1: DVS128\r\n" + AEDAT_END_HEADER + b"\r\n")
        for s in range(0, len(ts), packet_events):
            n = min(packet_events, len(ts) - s)
            f.write(np.array([POLARITY_EVENT, 1], "<i2").tobytes()
                    + np.array([POLARITY_EVENT_BYTES, 4, overflow, n, n, n], "<i4").tobytes())
            body = np.empty(n, dtype=[("a", "<u4"), ("t", "<i4")])
            body["a"], body["t"] = addr[s:s + n], ts[s:s + n]
            f.write(body.tobytes())


def read_aedat31(path) -> Events:
    """The polarity events of an AEDAT 3.1 file (module docstring); other packet types are skipped."""
    path = Path(path)
    fix = "replace it with an intact copy of the recording"
    if not path.is_file():
        raise DatasetError(f"AEDAT file {path} does not exist; {fix}")
    with reading(path, DatasetError, "AEDAT 3.1 file", fix):
        raw = path.read_bytes()
    if not raw.startswith(AEDAT31_MAGIC):
        raise DatasetError(f"{path} is not an AEDAT 3.1 file (its first line is not {AEDAT31_MAGIC.decode()}); {fix}")
    end = raw.find(AEDAT_END_HEADER)
    if end < 0:
        raise DatasetError(f"{path} has no {AEDAT_END_HEADER.decode()} line; {fix}")
    pos = raw.find(b"\n", end) + 1 or len(raw)
    parts = []
    while pos < len(raw):
        if len(raw) - pos < PACKET_HEADER_BYTES:
            raise DatasetError(f"{path} is truncated (a packet header at byte {pos} is cut short); {fix}")
        etype, _src = np.frombuffer(raw, "<i2", 2, pos)
        size, _off, overflow, _cap, number, _valid = (int(v) for v in np.frombuffer(raw, "<i4", 6, pos + 4))
        pos += PACKET_HEADER_BYTES
        if size < 1 or number < 0 or pos + size * number > len(raw):
            raise DatasetError(f"{path}: a packet at byte {pos - PACKET_HEADER_BYTES} declares {number} events of "
                               f"{size} bytes, more than the file holds; {fix}")
        if etype == POLARITY_EVENT:
            if size != POLARITY_EVENT_BYTES:
                raise DatasetError(f"{path}: polarity events of {size} bytes (expected {POLARITY_EVENT_BYTES}); {fix}")
            body = np.frombuffer(raw, [("a", "<u4"), ("t", "<i4")], number, pos)
            valid = (body["a"] & 1).astype(bool)
            a, t = body["a"][valid], body["t"][valid].astype(np.int64) + (overflow << 31)
            parts.append((((a >> 17) & 0x7FFF).astype(np.int16), ((a >> 2) & 0x7FFF).astype(np.int16), t,
                          ((a >> 1) & 1).astype(np.int8)))
        pos += size * number
    if not parts:
        return Events(np.zeros(0, np.int16), np.zeros(0, np.int16), np.zeros(0, np.int64), np.zeros(0, np.int8))
    return Events(*(np.concatenate([p[i] for p in parts]) for i in range(4)))


def read_gesture_labels(path) -> list[tuple[int, int, int]]:
    """(class 0..10, start us, end us) of every segment in a DVS128 Gesture ``*_labels.csv``."""
    path = Path(path)
    fix = "replace it with the labels file of the DvsGesture release"
    if not path.is_file():
        raise DatasetError(f"labels file {path} does not exist; {fix}")
    out = []
    with reading(path, DatasetError, "DVS128 Gesture labels file", fix), open(path, newline="") as f:
        rows = list(csv.reader(f))
        if not rows or [c.strip() for c in rows[0]] != ["class", "startTime_usec", "endTime_usec"]:
            raise DatasetError(f"{path} lacks the header class,startTime_usec,endTime_usec; {fix}")
        for i, row in enumerate(rows[1:], start=2):
            if not row or not "".join(row).strip():
                continue
            c, t0, t1 = (int(v) for v in row)
            if not 1 <= c <= len(DVS_GESTURE_CLASSES) or t1 <= t0:
                raise DatasetError(f"{path} line {i}: class {c} outside 1..{len(DVS_GESTURE_CLASSES)} or end "
                                   f"{t1} not after start {t0}; {fix}")
            out.append((c - 1, t0, t1))
    return out


def _trial_list(path: Path) -> list[str]:
    with reading(path, DatasetError, "DVS128 Gesture trial list", "replace it with the release's copy"):
        return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]


def gesture_samples(root, split: str, time_bins: int, downsample: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``(N, T, 2, 128 // d, 128 // d)`` and labels ``(N,)`` of one split of a DvsGesture folder."""
    root = Path(root)
    lst = root / f"trials_to_{split}.txt"
    if not lst.is_file():
        raise DatasetError(f"{lst} does not exist; point --data-dir at the DvsGesture folder of the release")
    xs, ys = [], []
    for name in _trial_list(lst):
        rec = root / name
        ev = read_aedat31(rec)
        for c, t0, t1 in read_gesture_labels(rec.with_name(rec.stem + "_labels.csv")):
            xs.append(events_to_frames(ev, time_bins, DVS128_SIZE, t0, t1, downsample))
            ys.append(c)
    if not xs:
        raise DatasetError(f"{lst} names no labelled recordings; replace it with the release's copy")
    return np.stack(xs), np.array(ys, dtype=np.int64)


# ---------------------------------------------------------------------------------------------- MVSEC HDF5
def read_mvsec_events(path, group: str = MVSEC_EVENTS) -> Events:
    """The events of an MVSEC-style HDF5 file: ``group`` holds N x 4 rows [x, y, t (s), p (-1/+1)]; t in us."""
    import h5py

    path = Path(path)
    fix = "replace it with an intact MVSEC *_data.hdf5 file"
    if not path.is_file():
        raise DatasetError(f"HDF5 file {path} does not exist; {fix}")
    with reading(path, DatasetError, "MVSEC-style HDF5 file", fix), h5py.File(path, "r") as f:
        if group not in f:
            raise DatasetError(f"{path} has no dataset {group}; {fix}")
        a = np.asarray(f[group][()], dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 4 or not np.isfinite(a).all():
        raise DatasetError(f"{path}:{group} is {a.shape}, not N x 4 finite rows [x, y, t, p]; {fix}")
    return Events(a[:, 0].astype(np.int16), a[:, 1].astype(np.int16), np.round(a[:, 2] * 1e6).astype(np.int64),
                  (a[:, 3] > 0).astype(np.int8))


def read_mvsec_flow(path) -> tuple[np.ndarray, np.ndarray]:
    """(timestamps in us (M,), flow (M, 2, H, W) in pixels) of an MVSEC ``*_gt_flow_dist.npz``."""
    path = Path(path)
    fix = "replace it with an intact MVSEC *_gt_flow_dist.npz file"
    if not path.is_file():
        raise DatasetError(f"ground-truth flow file {path} does not exist; {fix}")
    try:
        with reading(path, DatasetError, "MVSEC ground-truth flow file", fix), np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("timestamps", "x_flow_dist", "y_flow_dist") if k not in z.files]
            if missing:
                raise DatasetError(f"{path} lacks {', '.join(missing)}; {fix}")
            ts, fx, fy = (np.asarray(z[k], dtype=np.float64) for k in ("timestamps", "x_flow_dist", "y_flow_dist"))
    except (zipfile.BadZipFile, zlib.error) as exc:   # an npz is a zip archive: a broken one raises these
        raise DatasetError(f"{path} is not a readable MVSEC ground-truth flow file ({type(exc).__name__}: "
                           f"{' '.join(str(exc).split())[:120]}); {fix}") from None
    if ts.ndim != 1 or fx.ndim != 3 or fx.shape != fy.shape or len(ts) != len(fx) or len(ts) < 2:
        raise DatasetError(f"{path}: timestamps {ts.shape} and flows {fx.shape}/{fy.shape} disagree; {fix}")
    return np.round(ts * 1e6).astype(np.int64), np.stack([fx, fy], axis=1)


def _block_mean(a: np.ndarray, d: int) -> np.ndarray:
    *lead, H, W = a.shape
    h, w = H // d, W // d
    return a[..., :h * d, :w * d].reshape(*lead, h, d, w, d).mean(axis=(-3, -1))


def mvsec_samples(events_h5, flow_npz, time_bins: int, downsample: int = 1,
                  crop: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``(M-1, T, 2, h, w)`` and flows ``(M-1, 2, h, w)``: one sample per ground-truth interval
    (module docstring). ``crop`` (rows, columns): a centred crop of the sensor before downsampling."""
    ev = read_mvsec_events(events_h5)
    ts, flow = read_mvsec_flow(flow_npz)
    H, W = flow.shape[-2:]
    r0 = c0 = 0
    if crop is not None:
        ch, cw = crop
        if not (0 < ch <= H and 0 < cw <= W):
            raise ConfigError(f"crop {crop} does not fit the {H}x{W} sensor")
        r0, c0 = (H - ch) // 2, (W - cw) // 2
        H, W = ch, cw
        flow = flow[..., r0:r0 + H, c0:c0 + W]
        ev = ev.select((ev.y >= r0) & (ev.y < r0 + H) & (ev.x >= c0) & (ev.x < c0 + W))
        ev = Events((ev.x - c0).astype(np.int16), (ev.y - r0).astype(np.int16), ev.t, ev.p)
    order = np.argsort(ev.t, kind="stable")
    ev = ev.select(order)
    xs = []
    for i in range(len(ts) - 1):
        lo, hi = np.searchsorted(ev.t, [ts[i], ts[i + 1]])
        xs.append(events_to_frames(ev.select(slice(lo, hi)), time_bins, (H, W), ts[i], ts[i + 1], downsample))
    y = _block_mean(flow[:-1], downsample) / downsample if downsample > 1 else flow[:-1]
    return np.stack(xs), y.astype(np.float32)


# ---------------------------------------------------------------------------------------------- as datasets
def _find(data_dir, names: tuple[str, ...], has, how: str) -> Path:
    from cimsim.workloads.datasets import find_dir   # the shared search order (--data-dir, $CIMSIM_DATA, system)

    return find_dir(names[0], data_dir, names, has, how)


def load_dvs_gesture(data_dir=None, time_bins: int = 10, downsample: int = 2):
    """DVS128 Gesture from the release's folder: 11 classes, frames (T, 2, 64, 64) by default (the 128 x 128
    sensor downsampled by 2: DVSNet's 64 x 64 input, arXiv 2211.02167); T = 10 (the paper's 5..10)."""
    from cimsim.workloads.datasets import Dataset

    d = _find(data_dir, ("dvs-gesture", "DvsGesture", "dvs_gesture"),
              lambda p: (p / "trials_to_train.txt").is_file() and (p / "trials_to_test.txt").is_file(),
              "unpack the DvsGesture release (DvsGesture.tar.gz) into a folder")
    xtr, ytr = gesture_samples(d, "train", time_bins, downsample)
    xte, yte = gesture_samples(d, "test", time_bins, downsample)
    return Dataset("dvs-gesture", torch.from_numpy(xtr), torch.from_numpy(ytr), torch.from_numpy(xte),
                   torch.from_numpy(yte), DVS_GESTURE_CLASSES, str(d),
                   {"task": "classify", "time_bins": time_bins, "downsample": downsample})


def load_mvsec(data_dir=None, time_bins: int = 5, downsample: int = 4, crop: tuple[int, int] = (256, 256),
               test_fraction: float = 0.2):
    """MVSEC-style optical flow from a folder holding one ``*_data.hdf5`` and its ``*_gt_flow_dist.npz``:
    a centred 256 x 256 crop (Spike-FlowNet's, Lee et al. ECCV 2020) downsampled by 4 to 64 x 64, T = 5 (the
    flow networks' time steps, arXiv 2211.02167); the last ``test_fraction`` of the intervals is the test split."""
    from cimsim.workloads.datasets import Dataset

    def pair(p: Path):
        for h5 in sorted(p.glob("*_data.hdf5")):
            gt = h5.with_name(h5.name[:-len("_data.hdf5")] + "_gt_flow_dist.npz")
            if gt.is_file():
                return h5, gt
        return None

    d = _find(data_dir, ("mvsec", "MVSEC"), lambda p: pair(p) is not None,
              "copy an MVSEC *_data.hdf5 file and its *_gt_flow_dist.npz into a folder")
    h5, gt = pair(d)
    x, y = mvsec_samples(h5, gt, time_bins, downsample, crop)
    n_test = max(1, int(round(test_fraction * len(x))))
    if len(x) - n_test < 1:
        raise DatasetError(f"{gt} holds {len(x) + 1} ground-truth frames: too few for a train and a test split")
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    return Dataset("mvsec", x[:-n_test], y[:-n_test], x[-n_test:], y[-n_test:], ("flow_x", "flow_y"),
                   f"{h5} + {gt.name}", {"task": "flow", "time_bins": time_bins, "downsample": downsample,
                                         "crop": list(crop)})

