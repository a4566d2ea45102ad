"""Fault injection for the hostile run (tests/hostile_cases.py), loaded through PYTHONPATH.

``HOSTILE_FAULT=enospc:<folder>`` or ``erofs:<folder>``: creating or writing a file, or making a
folder, under <folder> fails as the OS would fail it on a full disk (ENOSPC) or a read-only file
system (EROFS). Reading is untouched. Patched at the OS boundary: ``builtins.open`` and ``io.open``
for writing, ``os.open`` with a creating or writing flag, ``os.mkdir``.
"""
import builtins
import errno
import io
import os

_spec = os.environ.get("HOSTILE_FAULT", "")
if ":" in _spec:
    _kind, _folder = _spec.split(":", 1)
    _folder = os.path.realpath(_folder)
    _code = {"enospc": errno.ENOSPC, "erofs": errno.EROFS}[_kind]

    def _hit(path):
        try:
            p = os.path.realpath(os.fsdecode(path))
        except TypeError:      # a file descriptor
            return False
        return p == _folder or p.startswith(_folder + os.sep)

    def _fail(path):
        raise OSError(_code, os.strerror(_code), os.fsdecode(path))

    _open = builtins.open

    def open(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+") and _hit(file):
            _fail(file)
        return _open(file, mode, *args, **kwargs)

    builtins.open = open
    io.open = open
    _os_open = os.open

    def os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and _hit(path):
            _fail(path)
        return _os_open(path, flags, *args, **kwargs)

    os.open = os_open
    _mkdir = os.mkdir

    def mkdir(path, *args, **kwargs):
        if _hit(path) and not os.path.isdir(path):
            _fail(path)
        return _mkdir(path, *args, **kwargs)

    os.mkdir = mkdir
