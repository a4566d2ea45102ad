"""Caffe ``Datum`` records and LMDBs written atomically (temporary name, renamed when complete).

``datum_bytes`` serialises a float array as ``caffe.proto.caffe_pb2.Datum`` (channels, height,
width, float_data) without needing Caffe: float_data is written in the packed wire format, which
protobuf parsers accept for any repeated float field (tests parse it with ``caffe_pb2`` and read it
through Caffe's native ``Data`` layer). Keys are ``b'%08d' % i``.

:class:`LmdbSet` writes several aligned LMDBs (one record per frame in each) under temporary names
in the output folder and renames them onto their final names only in :meth:`LmdbSet.commit`; if
the writer is interrupted, the previous LMDBs (or none) stay, and the temporary folders are removed
(or, after a hard kill, by the next build: :func:`remove_stale`).
"""
import os
import pathlib
import shutil

import lmdb
import numpy as np

from plumbing import TMP_TAG, replace_atomically, tmp_name, tmp_owner


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def datum_header(channels, height, width, count):
    """Bytes of a Datum before its float payload: fields 1-3 and the packed float_data (6) header."""
    return (b"\x08" + _varint(channels) + b"\x10" + _varint(height) + b"\x18" + _varint(width)
            + b"\x32" + _varint(4 * count))


def datum_bytes(arr):
    """``(C, H, W)`` (or ``(K,)`` -> ``K x 1 x 1``) array -> serialised Datum with float_data (float32)."""
    a = np.asarray(arr, dtype="<f4")
    if a.ndim == 1:
        a = a.reshape(-1, 1, 1)
    if a.ndim != 3:
        raise ValueError(f"datum array must be (C, H, W) or (K,), got shape {a.shape}")
    c, h, w = a.shape
    return datum_header(c, h, w, a.size) + np.ascontiguousarray(a).tobytes()


def datum_rows(arr, shape):
    """``(N, K)`` float array -> list of N serialised Datums of shape ``shape`` (C, H, W)."""
    a = np.ascontiguousarray(np.asarray(arr, dtype="<f4").reshape(len(arr), -1))
    head = datum_header(*shape, a.shape[1])
    if a.shape[1] != shape[0] * shape[1] * shape[2]:
        raise ValueError(f"rows of {a.shape[1]} values do not fit shape {shape}")
    return [head + row.tobytes() for row in a]


def parse_datum(buf):
    """Inverse of :func:`datum_bytes` for our own records: -> ``(C, H, W)`` float32 (tests, tools)."""
    pos, fields = 0, {}
    floats = None
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            fields[field], pos = _read_varint(buf, pos)
        elif wire == 2:
            n, pos = _read_varint(buf, pos)
            if field == 6:
                floats = np.frombuffer(buf, dtype="<f4", count=n // 4, offset=pos)
            pos += n
        elif wire == 5:  # unpacked float
            if field == 6:
                floats = np.concatenate([floats if floats is not None else np.zeros(0, "<f4"),
                                         np.frombuffer(buf, "<f4", 1, pos)])
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
    c, h, w = fields.get(1, 0), fields.get(2, 0), fields.get(3, 0)
    return np.asarray(floats, np.float32).reshape(c, h, w)


def _read_varint(buf, pos):
    shift = result = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def key(i):
    return b"%08d" % i


def count_records(path):
    """Number of records of an LMDB folder, or -1 if it is not a readable LMDB."""
    path = pathlib.Path(path)
    if not (path / "data.mdb").is_file():
        return -1
    try:
        env = lmdb.open(str(path), readonly=True, lock=False, readahead=False, subdir=True)
    except lmdb.Error:
        return -1
    try:
        return env.stat()["entries"]
    finally:
        env.close()


def remove_stale(out_dir, prefix):
    """Remove temporary folders/files ``.<prefix>*.tmp-<pid>`` of builds that are no longer running."""
    out_dir = pathlib.Path(out_dir)
    if not out_dir.is_dir():
        return
    for p in out_dir.glob(f".{prefix}*{TMP_TAG}*"):
        pid = tmp_owner(p)
        if pid > 0 and pid != os.getpid() and _alive(pid):
            continue
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LmdbSet:
    """Aligned LMDBs written together: ``put(i, {name: bytes})`` for record i, then ``commit()``.

    Args:
        paths: ``{name: final folder path}``.
        map_size: bytes reserved per LMDB (address space; the file grows only as written).
        txn_records: records per write transaction (big transactions are fast).
    Use as a context manager: leaving it without ``commit()`` (an error, Ctrl-C) removes the
    temporary folders; the final names are untouched until commit.
    """

    def __init__(self, paths, map_size, txn_records=512):
        self.final = {n: pathlib.Path(p) for n, p in paths.items()}
        self.tmp = {n: tmp_name(p) for n, p in self.final.items()}
        self.envs = {}
        for n, t in self.tmp.items():
            if t.exists():
                shutil.rmtree(t)
            self.envs[n] = lmdb.open(str(t), map_size=int(map_size[n] if isinstance(map_size, dict)
                                                          else map_size),
                                     subdir=True, sync=False, metasync=False, lock=True,
                                     writemap=False, map_async=True, max_dbs=0)
        self.txn_records = int(txn_records)
        self.pending = {n: [] for n in self.final}
        self.count = 0
        self.committed = False

    def put(self, values):
        """Append the next record: ``values`` = ``{name: bytes}`` for every LMDB of the set."""
        k = key(self.count)
        for n in self.final:
            self.pending[n].append((k, values[n]))
        self.count += 1
        if len(self.pending[next(iter(self.final))]) >= self.txn_records:
            self.flush()

    def flush(self):
        for n, items in self.pending.items():
            if items:
                with self.envs[n].begin(write=True) as txn:
                    txn.cursor().putmulti(items, append=True)
                items.clear()

    def close(self):
        for env in self.envs.values():
            env.close()
        self.envs = {}

    def commit(self, before_rename=None):
        """Flush, sync, close and rename every temporary LMDB onto its final name.

        ``before_rename()`` runs after the data are safely on disk and before the first rename
        (e.g. to remove a stale meta file that describes the old LMDBs).
        """
        self.flush()
        for env in self.envs.values():
            env.sync(True)
        self.close()
        if before_rename:
            before_rename()
        for n, t in self.tmp.items():
            self.final[n].parent.mkdir(parents=True, exist_ok=True)
            replace_atomically(str(t), str(self.final[n]))
        self.committed = True

    def abort(self):
        self.close()
        for t in self.tmp.values():
            shutil.rmtree(t, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if not self.committed:
            self.abort()
        return False


