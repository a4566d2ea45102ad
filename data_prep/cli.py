"""Command-line conventions shared by every tool: bad input is one line on stderr, exit code 2.

Raise :class:`InputError` with a message that names the file or value and what is wrong;
wrap a tool's ``main`` with :func:`run` so the user never sees a traceback for it.
"""
import gzip
import lzma
import os
import shutil
import sys


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
