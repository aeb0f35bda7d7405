"""Files cimsim writes and reads: output paths checked before any work, atomic replacement, corrupt inputs
turned into one-line errors.

* :func:`check_output_path` is what every command runs on an output path before it starts working: the path is
  not empty, its name fits the file system, its folder exists and takes a new file, and whatever is already there
  is a regular file (a device node, FIFO, directory or socket is never replaced: ``--out /dev/null`` is refused).
* :func:`atomic_output` writes to a temporary file in the target folder, then renames it over the target. A crash
  or an interruption mid-write leaves the previous file untouched and no partial file behind; it repeats the type
  check, so the Python API (``Report.to_hdf5`` ...) never replaces a device either.
* :func:`reading` turns whatever a corrupt or foreign file makes a reader raise into one line naming the file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from cimsim.errors import CimsimError, ConfigError

TMP_SUFFIX = ".tmp"   # temporaries are '.NAME.XXXXXXXX.tmp' beside NAME (stale_temporaries finds them)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()  # read once, at import, while no other thread writes files


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255   # POSIX NAME_MAX of ext4, xfs, btrfs, tmpfs


def check_output_path(path, option: str = "--out", *, extensions: Iterable[str] | None = None,
                      probe: bool = True, example: str | None = None) -> Path:
    """``path`` as a Path once it is known to take a result, else ConfigError (one line naming ``option``).

    Refused: an empty path; a name longer than the file system allows; an existing path that is not a regular
    file (folder, device node, FIFO, socket; a symbolic link counts as what it points to); a missing or
    non-folder parent; a parent where no file can be created (read-only, ``/proc``; with ``probe`` a scratch file
    is created there and removed at once, the only reliable test); a suffix outside ``extensions`` (lower case,
    with the dot), when given. ``example`` is the file name a refusal of a folder suggests (default ``result``
    with the first of ``extensions``, else ``result.h5``)."""
    if path is None or str(path).strip() == "":
        raise ConfigError(f"{option} is empty; give a file name")
    if "\0" in str(path):
        raise ConfigError(f"{option} {str(path)!r} holds a NUL character; give a plain file name")
    p = Path(os.path.expanduser(str(path)))
    example = example or "result" + (sorted(extensions)[0] if extensions else ".h5")
    if str(path).endswith(os.sep) or p.name in ("", ".", ".."):
        raise ConfigError(f"{option} {path} names a folder; give a file name such as {p / example}")
    try:
        st = os.stat(p)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise ConfigError(f"{option} {str(path)[:60]}... is too long for the file system; "
                              "give a shorter name") from None
        if exc.errno == errno.ENOTDIR:
            raise ConfigError(f"{option} {path}: a part of its folder path is not a folder; choose another {option}") \
                from None
        if exc.errno == errno.ELOOP:
            raise ConfigError(f"{option} {path} is a loop of symbolic links; choose another {option}") from None
        raise ConfigError(f"{option} {path} cannot be checked ({exc.strerror}); choose another {option}") from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        hint = f"; give a file name such as {p / example}" if stat.S_ISDIR(st.st_mode) else \
            f"; cimsim only ever replaces a regular file: choose another {option}"
        raise ConfigError(f"{option} {path} is {_kind(st.st_mode)}{hint}")
    folder = p.parent
    if len(os.fsencode(p.name)) > min(_name_max(folder), 255) - 14:   # room for the temporary's '.NAME.XXXXXXXX.tmp'
        raise ConfigError(f"{option}: file name {p.name[:40]}... is {len(p.name)} characters, too long for the "
                          "file system; give a shorter name")
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise ConfigError(f"folder {folder} for {option} {what}; create it or choose another {option}")
    if extensions is not None:
        allowed = sorted({e.lower() for e in extensions})
        if p.suffix.lower() not in allowed:
            raise ConfigError(f"{option} {path}: unknown image type {p.suffix or '(none)'!r}; "
                              f"use one of {', '.join(allowed)}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"folder {folder} for {option} is not writable; choose another {option}")
    if probe:
        try:
            fd, scratch = tempfile.mkstemp(dir=folder, prefix=f".{p.name[:40]}.", suffix=".probe")
        except OSError as exc:
            raise ConfigError(f"folder {folder} for {option} takes no new file ({exc.strerror}); "
                              f"choose another {option}") from None
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(scratch)
    return p


def _refuse_non_regular(path: Path) -> None:
    try:
        st = os.stat(path)
    except OSError:
        return
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{path} is {_kind(st.st_mode)}; cimsim only ever replaces a regular file: "
                          "write the result elsewhere")


class OutputError(CimsimError):
    """A result could not be written (a full disk, a file that cannot be replaced ...): the message names the file
    and the system's reason. ``path`` is the file."""

    def __init__(self, message: str, path: Path | None = None):
        super().__init__(message)
        self.path = path

    def __reduce__(self):   # whole across processes (a sweep worker's failed write reaches the parent as itself)
        return type(self), (str(self), self.path)


# What a writer raises when the system refuses a write: OSError (open, write, rename), RuntimeError (h5py and
# torch wrap a failed write of the HDF5 library or of torch's zip writer in one).
WRITE_ERRORS = (OSError, RuntimeError)


def write_failure_reason(exc: BaseException, folder: Path) -> str:
    """The system's reason a write into ``folder`` failed, in words: the OS error's text, else (a library's
    RuntimeError without an errno) 'No space left on device' where the folder's file system is full, else the
    library's message, shortened."""
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)   # h5py's OSError carries the errno and a page of HDF5 detail: the errno says it
    with contextlib.suppress(OSError):
        st = os.statvfs(folder)
        # a file system without inode counts (btrfs, tmpfs nr_inodes=0) reports f_files = f_favail = 0: not full
        if st.f_bavail * st.f_frsize < 1 << 20 or (st.f_files > 0 and st.f_favail == 0):
            return os.strerror(errno.ENOSPC)
    return " ".join(str(exc).split())[:120] or type(exc).__name__


def _is_write_failure(exc: RuntimeError, folder: Path) -> bool:
    text = str(exc).lower()
    # phrases of h5py's and torch's refused writes ("file write failed ... errno = 28", "failed writing file"), not
    # the bare word "write", which a bug's message may hold ("written", "writer")
    return any(w in text for w in ("write failed", "failed writing", "errno", "no space", "permission denied",
                                   "quota")) or \
        write_failure_reason(exc, folder) == os.strerror(errno.ENOSPC)


def output_failed(path: Path, exc: BaseException) -> OutputError:
    """The one-line error of a result that could not be written to ``path``."""
    reason = write_failure_reason(exc, path.parent)
    fix = "free some space or write the result elsewhere" if reason in (os.strerror(errno.ENOSPC),
                                                                         os.strerror(errno.EDQUOT)) \
        else "write the result elsewhere"
    return OutputError(f"could not write {path} ({reason}); nothing was written there and any earlier file is as it "
                       f"was: {fix}", path)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path``, on failure it is removed.

    ``path`` must be a regular file or not exist (ConfigError otherwise, before anything is written, and again
    just before the rename). A write the system refuses (OSError, or the RuntimeError h5py and torch raise for
    one) becomes :class:`OutputError` naming ``path`` and the reason."""
    path = Path(path)
    _refuse_non_regular(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    except OSError as exc:
        raise output_failed(path, exc) from None
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; results get the usual permissions
        yield Path(tmp)
        _refuse_non_regular(path)
        os.replace(tmp, path)
    except WRITE_ERRORS as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, RuntimeError) and not _is_write_failure(exc, path.parent):
            raise   # a library's RuntimeError that is no refused write: a bug, with its traceback
        raise output_failed(path, exc) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def save_figure(fig, path: str | os.PathLike, **kwargs) -> Path:
    """``fig.savefig`` through :func:`atomic_output`: an image the system refuses (a full disk) is an OutputError,
    and no partial image replaces an earlier one. The image type is the suffix of ``path``."""
    path = Path(path)
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format=path.suffix[1:].lower() or None, **kwargs)
    return path


def stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Temporaries :func:`atomic_output` left beside ``path`` when its process was killed mid-write."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        return sorted(q for q in folder.glob(f".{path.name}.*{TMP_SUFFIX}")
                      if q.name[len(path.name) + 2:-len(TMP_SUFFIX)].isalnum() and q.is_file())
    except OSError:
        return []


# What a reader of a corrupt or foreign file raises: h5py (OSError, KeyError, RuntimeError, TypeError ...),
# json (ValueError), numpy (IndexError, ValueError), attribute access on the wrong kind of object.
CORRUPT_FILE_ERRORS = (OSError, KeyError, ValueError, TypeError, IndexError, AttributeError, RuntimeError,
                       UnicodeError, OverflowError, EOFError, LookupError, AssertionError)


@contextlib.contextmanager
def reading(path, error: type[CimsimError], what: str, fix: str) -> Iterator[None]:
    """Run a reader of ``path``; a CimsimError passes, anything a corrupt file raises becomes ``error``:
    '{path} is not a readable {what} (Kind: detail); {fix}'."""
    try:
        yield
    except CimsimError:
        raise
    except CORRUPT_FILE_ERRORS as exc:
        detail = " ".join(str(exc).split())[:160]
        raise error(f"{path} is not a readable {what} ({type(exc).__name__}: {detail}); {fix}") from None


def _can_write_in(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def numba_cache_fallback(environ=None, package_dir: Path | None = None, writable=None) -> str | None:
    """Give numba a cache folder it can write when neither of its own can be (``cache=True`` kernels fail at
    import otherwise): numba caches beside the package (``__pycache__``), else in ``~/.cache/numba``; when
    both are read-only (an installed package and a read-only or missing ``$HOME``) ``NUMBA_CACHE_DIR`` is
    set to a per-user folder in the temporary directory. A ``NUMBA_CACHE_DIR`` already set is kept. Returns
    the folder set, or None. Call it before numba is imported."""
    environ = os.environ if environ is None else environ
    writable = _can_write_in if writable is None else writable
    if environ.get("NUMBA_CACHE_DIR"):
        return None
    package_dir = Path(__file__).resolve().parent if package_dir is None else package_dir
    home = Path(os.path.expanduser("~"))
    if writable(package_dir / "__pycache__") or writable(home / ".cache" / "numba"):
        return None
    folder = Path(tempfile.gettempdir()) / f"cimsim-numba-cache-{os.getuid()}"
    environ["NUMBA_CACHE_DIR"] = str(folder)
    import sys
    if "numba" in sys.modules:   # already loaded (configuration read): tell its config directly
        sys.modules["numba"].config.CACHE_DIR = str(folder)
    return str(folder)
