"""Sealed HDF5 files (cimsim.h5seal): a sweep file whose bytes are not what cimsim wrote is refused in one line
before the HDF5 library reads it (the library can crash on a damaged file); unsealed files are tried in a child
process first."""

import h5py
import numpy as np
import pytest

from cimsim import h5seal, sweepfile
from cimsim.report import Report
from cimsim.sweepfile import Point, SweepFileError


def _report():
    return Report(accuracy=0.9, digital_accuracy=0.91, energy_j=1e-6, latency_s=1e-5, throughput_inf_per_s=1e5,
                  area_m2=1e-6, layers=[{"name": "fc", "kind": "Linear", "macs": 10}], components={"adc": 1e-6},
                  config={"model": "mlp"}, n_examples=10)


@pytest.fixture
def sweep(tmp_path):
    path = sweepfile.create(tmp_path / "s.h5", {"model": "mlp", "dataset": "digits"})
    sweepfile.append(path, Point.make("isaac", {"adc.bits": 4}, 0), _report())
    sweepfile.fold(path)
    return path


def test_sealed_files_stay_hdf5_and_read_back(sweep):
    raw = sweep.read_bytes()
    assert raw.startswith(h5seal.MAGIC) and raw[512:520] == h5seal.HDF5_SIGNATURE
    n, digest = raw[len(h5seal.MAGIC):].split(b"\n")[0].split(b" ")
    import hashlib
    assert int(n) == len(raw) - 512 and digest.decode() == hashlib.sha256(raw[512:]).hexdigest()
    with h5py.File(sweep, "r") as f:               # an ordinary HDF5 file with a user block
        assert f.attrs["format"] == "cimsim.sweep" and f.userblock_size == 512
    assert list(sweepfile.read_points(sweep)) == [Point.make("isaac", {"adc.bits": 4}, 0)]
    # a second point through the journal, folded: the file is sealed again and reads back both
    sweepfile.append(sweep, Point.make("isaac", {"adc.bits": 5}, 0), _report())
    (journal,) = sweepfile.journal_dir(sweep).glob("*.h5")
    assert h5seal.sealed(journal)
    sweepfile.fold(sweep)
    assert h5seal.sealed(sweep) and len(sweepfile.read_points(sweep)) == 2


@pytest.mark.parametrize("where", [0, 30, 511, 512, 600, -1])
def test_any_changed_byte_is_refused_in_one_line(sweep, where):
    raw = bytearray(sweep.read_bytes())
    raw[where] ^= 0x10
    sweep.write_bytes(bytes(raw))
    for read in (sweepfile.read_settings, sweepfile.read_points, sweepfile.finished_keys):
        with pytest.raises(SweepFileError) as exc:
            read(sweep)
        msg = str(exc.value)
        assert "\n" not in msg and str(sweep) in msg and ("checksum" in msg or "not a cimsim" in msg), msg


@pytest.mark.parametrize("how", ["truncate", "append"])
def test_truncated_or_extended_files_are_refused(sweep, how):
    raw = sweep.read_bytes()
    sweep.write_bytes(raw[:-100] if how == "truncate" else raw + b"\0" * 8)
    with pytest.raises(SweepFileError, match="checksum"):
        sweepfile.read_settings(sweep)


def test_a_damaged_journal_file_is_refused_naming_it(sweep):
    sweepfile.append(sweep, Point.make("isaac", {"adc.bits": 6}, 0), _report())
    (journal,) = sweepfile.journal_dir(sweep).glob("*.h5")
    raw = bytearray(journal.read_bytes())
    raw[len(raw) // 2] ^= 1
    journal.write_bytes(bytes(raw))
    with pytest.raises(SweepFileError) as exc:
        sweepfile.read_points(sweep)
    assert journal.name in str(exc.value) and "checksum" in str(exc.value)


def test_unsealed_files_are_read_after_a_child_process_read_them(tmp_path):
    """A sweep file written before seals (no user block) still reads; one the child process crashes on does not."""
    path = tmp_path / "old.h5"
    with h5py.File(path, "w") as f:
        sweepfile._write_root(f, {"model": "mlp"})
    assert not h5seal.sealed(path)
    assert sweepfile.read_settings(path) == {"model": "mlp"}

    class Refused(sweepfile.SweepFileError):
        pass

    crash = tmp_path / "crash.h5"
    crash.write_bytes(path.read_bytes())
    probe = h5seal._PROBE
    try:   # a child that dies by a signal, as the HDF5 library does on some damaged files
        h5seal._PROBE = "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"
        with pytest.raises(Refused, match="crashed the HDF5 library, signal 11"):
            h5seal.check(crash, Refused, "cimsim sweep file", "remove it")
    finally:
        h5seal._PROBE = probe


def test_seal_refuses_a_file_without_a_user_block(tmp_path):
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(ValueError, match="user block"):
        h5seal.seal(path)
