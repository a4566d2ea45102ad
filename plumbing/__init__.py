"""Plumbing shared by the library (``data_prep``) and the tools: errors, exit codes, atomic files.

* Bad input is one line on stderr and exit code 2: raise :class:`InputError` with a message that
  names the file or value and what is wrong; wrap a tool's ``main`` with :func:`run` (or expose
  it as a console entry point with :func:`console`) so the user never sees a traceback for it.
* Nothing is half-written: every output goes to a temporary name beside its final name
  (:func:`tmp_name`, ``.<name>.tmp-<pid><suffix>``) and is renamed onto it when complete
  (:func:`atomic_path`; :func:`write_text`, :func:`write_json`, :func:`write_npz`,
  :func:`save_figure` are built on it). Folders (LMDBs, a generated dataset) are renamed with
  :func:`replace_atomically`.
* :func:`open_text` opens the reference text files, plain or ``.xz``/``.gz`` compressed.
* Options are checked when they are parsed: :class:`ArgumentParser` reports a bad option in one
  line, and the ``type=`` helpers :func:`finite_float`, :func:`int_in` (:func:`positive_int`,
  :func:`nonneg_int`) refuse NaN, infinities and values out of range.
* An output never replaces a folder: :func:`replace_atomically` refuses a file over a folder (as
  ``rename(2)`` and ``mv`` do) and :func:`check_output_file` says so before any work is done.
* :func:`worker_results`: a function over chunks of work in forked worker processes (or in this
  one), the pool ended whatever happens.

This module knows no dataset, no model and no Caffe; everything else may import it.
"""
import argparse
import contextlib
import errno
import gzip
import io
import json
import lzma
import math
import multiprocessing
import os
import pathlib
import re
import shutil
import sys

PROJECT = pathlib.Path(__file__).resolve().parents[1]   # the repository (an editable install)
TMP_TAG = ".tmp-"


@contextlib.contextmanager
def worker_results(func, init, init_args, tasks, workers, ordered=True):
    """Yield an iterator of ``func(task)`` for ``tasks``, computed by ``workers`` forked processes
    each set up by ``init(*init_args)`` (or here, after ``init``, for ``workers`` <= 1), in task
    order (``ordered``) or as they finish; on leaving the block the pool is terminated, so a
    consumer may stop early or fail without leaving workers behind."""
    pool = None
    try:
        if workers and workers > 1:
            pool = multiprocessing.get_context("fork").Pool(workers, init, init_args)
            yield (pool.imap if ordered else pool.imap_unordered)(func, tasks)
        else:
            init(*init_args)
            yield map(func, tasks)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()


def openblas():
    """The system OpenBLAS that Caffe links with (ctypes; libopenblas.so.0), or None (another
    BLAS). Loading it here honours OPENBLAS_CORETYPE as a Caffe process started with the same
    environment would."""
    import ctypes

    try:
        lib = ctypes.CDLL("libopenblas.so.0")
        lib.openblas_set_num_threads.argtypes = [ctypes.c_int]
        lib.openblas_get_num_threads.restype = ctypes.c_int
        lib.openblas_get_corename.restype = ctypes.c_char_p
    except (OSError, AttributeError):
        return None
    return lib


def blas_core():
    """OpenBLAS's kernel for this CPU (e.g. 'Haswell', 'SkylakeX'), or None: its sums, and so
    the weights training makes, can differ from one kernel to another."""
    lib = openblas()
    return None if lib is None else lib.openblas_get_corename().decode()


class InputError(Exception):
    """Bad input from the user (a file, a value, an option). The message is shown as is."""


def _one_line(text):
    return " ".join(str(text).split())


def final_name(path):
    """The final name a temporary name of :func:`tmp_name` stands for (else ``path`` itself), so
    that messages name the file the user asked for."""
    if path is None:
        return None
    p = pathlib.Path(os.fsdecode(path))
    while p.name.startswith(".") and TMP_TAG in p.name:
        p = p.parent / p.name[1:].rsplit(TMP_TAG, 1)[0]
    return str(p)


def describe_os_error(err):
    """One line for an OSError: the file (its final name, not a temporary one) and the reason."""
    names = [n for n in (final_name(err.filename), final_name(err.filename2)) if n]
    reason = err.strerror or (_one_line(err.args[0]) if err.args else "") or type(err).__name__
    if err.errno == errno.EFBIG:
        reason += " (the file size limit was reached)"
    return f"{' -> '.join(names)}: {reason}" if names else reason


def _fail(message, code=2):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def run(main, argv=None):
    """Call ``main(argv)``; bad input and faults end in one line on stderr and a non-zero exit.

    InputError, a missing/unreadable/unwritable file and any other OSError (a folder where a
    file is expected, a read-only file system, no space left, a file size limit), undecodable
    text, a corrupt LMDB and running out of memory exit with code 2; Ctrl-C with 130. Anything
    else is a defect of the tool: one line saying so, exit 3 (``DEEPMODEL_TRACEBACK=1`` shows the
    traceback)."""
    try:
        code = main(argv)
    except InputError as err:
        _fail(err)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except MemoryError:
        _fail("out of memory: an option or an input asks for more than this machine has")
    except UnicodeDecodeError as err:
        _fail(f"cannot decode text as {err.encoding} (byte {err.start}): not a text file")
    except OSError as err:
        _fail(describe_os_error(err))
    except Exception as err:  # a corrupt LMDB, else a defect: still one line, never a traceback
        if type(err).__module__ == "lmdb":
            # LMDB reports a write that found no room as an I/O error or a full map
            full = any(k in str(err) for k in ("Input/output error", "No space", "MAP_FULL"))
            _fail(f"LMDB: {_one_line(err)}"
                  + (" (is the disk full? `df -h .` shows the free space)" if full else ""))
        if os.environ.get("DEEPMODEL_TRACEBACK"):
            raise
        _fail(f"internal error ({type(err).__name__}: {_one_line(err)}); please report it "
              "(DEEPMODEL_TRACEBACK=1 shows the traceback)", code=3)
    sys.exit(code or 0)


def console(main):
    """A console entry point (``[project.scripts]``) for ``main``: ``run(main)`` on ``sys.argv``."""
    def entry():
        run(main)
    entry.__doc__ = main.__doc__
    return entry


def open_text(path):
    """Open a text file for reading (``.xz`` and ``.gz`` compressed files too, as the repository's
    reference files are), or raise an InputError naming it and why it cannot be read: missing,
    a folder, a broken archive, not UTF-8 text. The file is read whole (label and prediction files
    are a few MB) and returned as a text stream."""
    name = os.fspath(path)
    try:
        if name.endswith(".xz"):
            opener = lzma.open
        elif name.endswith(".gz"):
            opener = gzip.open
        else:
            opener = open
        with opener(name, "rb") as fh:
            raw = fh.read()
    except (lzma.LZMAError, EOFError, gzip.BadGzipFile) as err:
        raise InputError(f"{path}: not a valid compressed file ({_one_line(err)})") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read ({err.strerror or _one_line(err)})") from None
    except MemoryError:
        raise InputError(f"{path}: too large to read") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not a text file (undecodable byte at offset {err.start})") from None
    return io.StringIO(text)


# ---------------------------------------------------------------------------------------------
# options

class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line (``error: ...``, exit 2), like every
    other bad input of the tools."""

    def error(self, message):
        _fail(f"{message} (see {self.prog} --help)")


def _number_text(value):
    return repr(value) if isinstance(value, str) else str(value)


def finite_float(lo=None, hi=None, lo_open=False):
    """An argparse ``type=``: a finite float in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``)."""
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{_number_text(text)} is not a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text}: must be a finite number")
        if lo is not None and (value <= lo if lo_open else value < lo):
            raise argparse.ArgumentTypeError(f"{text}: must be {'>' if lo_open else '>='} {lo:g}")
        if hi is not None and value > hi:
            raise argparse.ArgumentTypeError(f"{text}: must be <= {hi:g}")
        return value
    parse.__name__ = "finite_float"
    return parse


def int_in(lo=None, hi=None):
    """An argparse ``type=``: an integer in ``[lo, hi]``."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{_number_text(text)} is not an integer") from None
        if lo is not None and value < lo:
            raise argparse.ArgumentTypeError(f"{text}: must be >= {lo}")
        if hi is not None and value > hi:
            raise argparse.ArgumentTypeError(f"{text}: must be <= {hi}")
        return value
    parse.__name__ = "int"
    return parse


positive_int = int_in(1)
nonneg_int = int_in(0)

# magnitudes no depth camera produces: pixel coordinates and millimetres beyond this are refused
MAX_PLAUSIBLE = 1e5
# the nearest depth a sensor reports (mm): a crop centre closer than this is refused
MIN_DEPTH_MM = 100.0


def check_center(center, option="--center"):
    """A crop centre ``U V D`` (pixels, mm) given as an option: finite, within the magnitudes a
    camera produces, the depth at least :data:`MIN_DEPTH_MM`; InputError otherwise."""
    u, v, d = (float(x) for x in center)
    if not all(math.isfinite(x) and abs(x) <= MAX_PLAUSIBLE for x in (u, v, d)):
        raise InputError(f"{option} {u:g} {v:g} {d:g}: values must be finite and within "
                         f"+-{MAX_PLAUSIBLE:g} (pixels, mm)")
    if d < MIN_DEPTH_MM:
        raise InputError(f"{option} {u:g} {v:g} {d:g}: depth {d:g} mm is closer than any depth "
                         f"camera measures (at least {MIN_DEPTH_MM:g} mm)")
    return u, v, d


REFERENCE = PROJECT / "data" / "reference"      # the repository's reference data: read only


def _resolved(path):
    try:
        return pathlib.Path(os.path.abspath(os.path.realpath(os.fspath(path))))
    except (OSError, ValueError):
        return pathlib.Path(os.path.abspath(os.fspath(path)))


def same_path(a, b):
    """Whether two paths name the same file or folder (links and ``..`` resolved)."""
    return _resolved(a) == _resolved(b)


_TRACKED = {}


def tracked_files():
    """The files git tracks in the repository (resolved paths), or an empty set without git or a
    checkout. Read once per process."""
    if "files" not in _TRACKED:
        files = set()
        if (PROJECT / ".git").exists():
            import subprocess

            try:
                out = subprocess.run(["git", "-C", str(PROJECT), "ls-files", "-z"],
                                     capture_output=True, timeout=30, check=True).stdout
                files = {_resolved(PROJECT / os.fsdecode(f)) for f in out.split(b"\0") if f}
            except (OSError, subprocess.SubprocessError):
                files = set()
        _TRACKED["files"] = files
    return _TRACKED["files"]


def check_outputs(outputs, inputs=(), generated=()):
    """Before any work: no output of a run may destroy one of its inputs or the repository's files.

    ``outputs``: ``(label, path)`` pairs, the files and folders the run writes (a folder that
    the run replaces as a whole: label ending in ``/``); ``inputs``: ``(label, path)`` pairs it
    reads (files or folders; None entries skipped); ``generated``: the repository files this
    command exists to regenerate (its default outputs), which it may replace.

    Refused, in one line naming both: an output that is an input (also through a link); an
    output inside an input folder (an LMDB, a dataset, a recording's folder); a replaced output
    folder that holds an input; an output that is a file of the repository tracked by git or
    lies in ``data/reference/`` (unless in ``generated``).
    """
    ins = [(label, _resolved(p)) for label, p in inputs if p is not None]
    allowed = {_resolved(p) for p in generated}
    tracked = None
    for label, path in outputs:
        if path is None:
            continue
        folder = label.endswith("/")
        label = label.rstrip("/")
        out = _resolved(path)
        for what, inp in ins:
            if out == inp:
                raise InputError(f"{label} {path}: is {what}, an input of this run; give another "
                                 "name (nothing was written)")
            if inp in out.parents:
                raise InputError(f"{label} {path}: lies inside {what} {inp}, an input of this "
                                 "run; write elsewhere (nothing was written)")
            if folder and out in inp.parents:
                raise InputError(f"{label} {path}: holds {what} {inp}, an input of this run, and "
                                 "would be replaced; write elsewhere (nothing was written)")
        if out in allowed:
            continue
        if out == REFERENCE or REFERENCE in out.parents:
            raise InputError(f"{label} {path}: lies in the repository's reference data "
                             "(data/reference/); write elsewhere (nothing was written)")
        tracked = tracked_files() if tracked is None else tracked
        hit = out in tracked or (folder and any(out in t.parents for t in tracked))
        if hit:
            raise InputError(f"{label} {path}: {'holds files' if folder and out not in tracked else 'is a file'} "
                             "of the repository (tracked by git); write elsewhere (nothing was "
                             "written)")


def check_output_file(path, option="--out"):
    """Before any work: ``path`` can become a file: InputError when it is an existing folder or its
    parent is an existing file."""
    if path is None:
        return
    path = pathlib.Path(path)
    if path.is_dir():
        raise InputError(f"{option} {path}: is a folder; give a file name (nothing was written)")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{option} {path}: {parent} is a file, not a folder")
            break


# ---------------------------------------------------------------------------------------------
# atomic outputs

def tmp_name(final_path):
    """The temporary name of ``final_path`` while it is written: ``.<name>.tmp-<pid><suffix>`` in
    the same folder (same filesystem, so the rename is atomic; the suffix stays last because some
    writers choose the format by it)."""
    final_path = pathlib.Path(final_path)
    return final_path.parent / f".{final_path.name}{TMP_TAG}{os.getpid()}{final_path.suffix}"


def pid_alive(pid):
    """Whether a process ``pid`` exists (one of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):
        return False
    return True


def stale_temporaries(folder):
    """The leftovers of killed runs in ``folder``, found in one scan: ``{final name: [paths]}``
    of the names made by :func:`tmp_name` (also a temporary name of a temporary name) whose
    writers have all ended. Those of a running process (this one included) are not listed."""
    folder = pathlib.Path(folder)
    try:
        names = [e.name for e in os.scandir(folder) if e.name.startswith(".") and TMP_TAG in e.name]
    except OSError:
        return {}
    stale = {}
    for name in names:
        pids = [int(p) for p in re.findall(re.escape(TMP_TAG) + r"(\d+)", name)]
        if pids and not any(p == os.getpid() or pid_alive(p) for p in pids):
            stale.setdefault(final_name(folder / name), []).append(folder / name)
    return stale


def remove_stale_temporaries(final_path, stale=None):
    """Remove the leftovers of killed runs that wrote ``final_path`` (:func:`stale_temporaries`
    of its folder, or ``stale``, that scan made once for many outputs of one folder; the entries
    removed are taken out of it). Anything else is never touched."""
    final_path = pathlib.Path(final_path)
    if stale is None:
        stale = stale_temporaries(final_path.parent)
    for path in stale.pop(str(final_path), ()):
        remove_path(path)


def replace_atomically(tmp_path, final_path):
    """Rename a completed temporary file or folder onto its final name (same filesystem).

    A file never replaces a folder nor a folder a file (InputError, nothing touched: as
    ``rename(2)`` and ``mv`` refuse); a folder replaces the previous version of the same folder
    (an LMDB, a generated dataset)."""
    final_is_dir = os.path.isdir(final_path) and not os.path.islink(final_path)
    tmp_is_dir = os.path.isdir(tmp_path) and not os.path.islink(tmp_path)
    if final_is_dir and not tmp_is_dir:
        raise InputError(f"{final_path}: is a folder; refusing to replace it with a file "
                         "(give a file name)")
    if tmp_is_dir and os.path.lexists(final_path) and not final_is_dir:
        raise InputError(f"{final_path}: is a file; refusing to replace it with a folder")
    if final_is_dir:
        old = os.fspath(final_path) + ".old"
        if os.path.exists(old):
            shutil.rmtree(old)
        os.rename(final_path, old)
        os.rename(tmp_path, final_path)
        shutil.rmtree(old)
    else:
        os.replace(tmp_path, final_path)


def remove_path(path):
    """Remove a file or folder if it exists."""
    path = pathlib.Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path):
    """``with atomic_path(final) as tmp:`` write ``tmp`` (a file or a folder); on leaving the block
    it is renamed onto ``final``, or removed if the block raised (Ctrl-C included). The parent
    folder is created."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if final_name(path) == str(path):     # a staged name's leftovers went with its output set's
        remove_stale_temporaries(path)
    tmp = tmp_name(path)
    remove_path(tmp)
    try:
        yield tmp
        replace_atomically(tmp, path)
    except BaseException as err:
        remove_path(tmp)
        if isinstance(err, OSError) and not err.filename:
            err.filename = str(path)     # "No space left on device" says which file
        raise


class OutputSet:
    """Files that belong together, written as a set around an index file (e.g. ``eval.json``)::

        with OutputSet(out / "eval.json") as outs:
            write_npz(outs.stage(out / "predictions.npz"), ...)
            write_json(outs.stage(out / "eval.json"), report)

    :meth:`stage` gives the temporary name to write each final file to. When the block ends
    without an error, the old index is removed first (it no longer describes the files), every
    file is renamed onto its final name and the index comes last: an index on disk always sits
    beside the files it describes. On an error (a full disk, Ctrl-C) every staged file is
    removed and the previous set stays as it was. A staged name may be made a folder: it replaces
    the previous version of that folder (:func:`replace_atomically`).
    """

    def __init__(self, index):
        self.index = pathlib.Path(index)
        self.staged = {}
        self._stale = {}          # folder -> its killed runs' temporaries, scanned once per set

    def stage(self, final):
        """The temporary name to write ``final`` to (its folder is created)."""
        final = pathlib.Path(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.parent not in self._stale:
            self._stale[final.parent] = stale_temporaries(final.parent)
        remove_stale_temporaries(final, self._stale[final.parent])
        tmp = tmp_name(final)
        remove_path(tmp)
        self.staged[final] = tmp
        return tmp

    def _discard(self):
        for tmp in self.staged.values():
            remove_path(tmp)
        self.staged = {}

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self._discard()
            return False
        index_tmp = None
        try:
            for final, tmp in self.staged.items():
                if not tmp.exists():
                    raise RuntimeError(f"{final}: staged but not written")
                if final.is_dir() and not final.is_symlink() and not tmp.is_dir():
                    raise InputError(f"{final}: is a folder; refusing to replace it with a file "
                                     "(nothing was written)")
            index_tmp = self.staged.pop(self.index, None)
            if index_tmp is not None:
                self.index.unlink(missing_ok=True)
            for final in list(self.staged):
                replace_atomically(self.staged.pop(final), final)   # a staged folder too
            if index_tmp is not None:
                os.replace(index_tmp, self.index)
        except BaseException:
            self._discard()
            if index_tmp is not None:
                remove_path(index_tmp)
            raise
        return False


def write_text(path, text):
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path, obj, indent=1):
    """``obj`` as JSON (``indent`` spaces, a final newline) to ``path`` atomically; strict JSON:
    a NaN or an infinity is an InputError, never ``NaN``/``Infinity`` in the file."""
    try:
        text = json.dumps(obj, indent=indent, allow_nan=False)
    except ValueError:
        raise InputError(f"{path}: not written: a figure is NaN or infinite "
                         "(non-finite input or output)") from None
    write_text(path, text + "\n")


def write_npz(path, compressed=False, **arrays):
    """``np.savez`` (``np.savez_compressed`` if ``compressed``) of ``arrays`` to ``path`` atomically."""
    import numpy as np

    save = np.savez_compressed if compressed else np.savez
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        save(fh, **arrays)


FIGURE_FORMATS = ("png", "pdf", "svg", "svgz", "jpg", "jpeg", "tif", "tiff", "webp", "eps", "ps",
                  "gif")


def check_figure_name(path, option="--out"):
    """Before any work: a figure file name whose suffix (if any) is a format the figures are
    written in (:data:`FIGURE_FORMATS`; no suffix: PNG)."""
    if path is None:
        return
    suffix = pathlib.Path(path).suffix.lower().lstrip(".")
    if suffix and suffix not in FIGURE_FORMATS:
        raise InputError(f"{option} {path}: .{suffix} is not a figure format written here "
                         f"(use one of: {', '.join(FIGURE_FORMATS)})")


def save_figure(fig, path, **savefig_kwargs):
    """``fig.savefig`` to ``path`` atomically; the format is the file's suffix (default png)."""
    path = pathlib.Path(path)
    savefig_kwargs.setdefault("format", path.suffix.lstrip(".").lower() or "png")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, **savefig_kwargs)
