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

This module knows no dataset, no model and no Caffe; everything else may import it.
"""
import contextlib
import gzip
import json
import lzma
import os
import pathlib
import re
import shutil
import sys

PROJECT = pathlib.Path(__file__).resolve().parents[1]   # the repository (an editable install)
TMP_TAG = ".tmp-"


class InputError(Exception):
    """Bad input from the user (a file, a value, an option). The message is shown as is."""


def run(main, argv=None):
    """Call ``main(argv)``; turn InputError (and a missing/unreadable file) into one line and exit 2."""
    try:
        code = main(argv)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except (FileNotFoundError, IsADirectoryError, PermissionError) as err:
        name = err.filename if err.filename is not None else ""
        print(f"error: {name}: {err.strerror}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)


def console(main):
    """A console entry point (``[project.scripts]``) for ``main``: ``run(main)`` on ``sys.argv``."""
    def entry():
        run(main)
    entry.__doc__ = main.__doc__
    return entry


def open_text(path):
    """Open a text file for reading (``.xz`` and ``.gz`` compressed files too, as the repository's
    reference files are), or raise an InputError naming it and why it cannot be read."""
    name = os.fspath(path)
    try:
        if name.endswith(".xz"):
            return lzma.open(name, "rt")
        if name.endswith(".gz"):
            return gzip.open(name, "rt")
        return open(name, "r")
    except OSError as err:
        raise InputError(f"{path}: cannot read ({err.strerror})") from None


# ---------------------------------------------------------------------------------------------
# atomic outputs

def tmp_name(final_path):
    """The temporary name of ``final_path`` while it is written: ``.<name>.tmp-<pid><suffix>`` in
    the same folder (same filesystem, so the rename is atomic; the suffix stays last because some
    writers choose the format by it)."""
    final_path = pathlib.Path(final_path)
    return final_path.parent / f".{final_path.name}{TMP_TAG}{os.getpid()}{final_path.suffix}"


def tmp_owner(path):
    """The process id in a temporary name made by :func:`tmp_name`, or -1."""
    m = re.match(r"\d+", pathlib.Path(path).name.rsplit(TMP_TAG, 1)[-1])
    return int(m.group()) if m else -1


def replace_atomically(tmp_path, final_path):
    """Rename a completed temporary file or folder onto its final name (same filesystem)."""
    if os.path.isdir(final_path) and not os.path.islink(final_path):
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
    tmp = tmp_name(path)
    remove_path(tmp)
    try:
        yield tmp
        replace_atomically(tmp, path)
    except BaseException:
        remove_path(tmp)
        raise


def write_text(path, text):
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path, obj, indent=1):
    """``obj`` as JSON (``indent`` spaces, a final newline) to ``path`` atomically."""
    write_text(path, json.dumps(obj, indent=indent) + "\n")


def write_npz(path, compressed=False, **arrays):
    """``np.savez`` (``np.savez_compressed`` if ``compressed``) of ``arrays`` to ``path`` atomically."""
    import numpy as np

    save = np.savez_compressed if compressed else np.savez
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        save(fh, **arrays)


def save_figure(fig, path, **savefig_kwargs):
    """``fig.savefig`` to ``path`` atomically; the format is the file's suffix (default png)."""
    path = pathlib.Path(path)
    savefig_kwargs.setdefault("format", path.suffix.lstrip(".") or "png")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, **savefig_kwargs)
