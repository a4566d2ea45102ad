"""LMDBs of Caffe ``Datum`` records: written atomically (:class:`LmdbSet`), read (:class:`DatumLMDB`).

Records are serialised by :mod:`deepmodel.data.records.datum`; keys are ``b'%08d' % i`` (:func:`key`), in the
same order in every LMDB of a split.

:class:`LmdbSet` writes several aligned LMDBs (one record per frame in each) under temporary names
in the output folder and renames them onto their final names only in :meth:`LmdbSet.commit`; if
the writer is interrupted, the previous LMDBs (or none) stay, and the temporary folders are removed
(or, after a hard kill, by the next build: :func:`remove_stale`).

Every LMDB of a set carries the set's build id (a random hex string) in a file ``build_id``
beside its ``data.mdb`` (Caffe's Data layer reads only ``data.mdb``; a key inside it would be
read as a record), and the split's meta file records the same id: readers check that the LMDBs
and the meta belong to one build (:func:`read_build_id`, ``LmdbSplit.check_build``).
"""
import os
import pathlib
import shutil
import uuid

import lmdb
import numpy as np

from deepmodel.data.records import datum
from deepmodel.plumbing import (InputError, remove_path, replace_atomically, stale_temporaries,
                                tmp_name)


BUILD_ID_FILE = "build_id"


def read_build_id(path):
    """The build id written into the LMDB folder ``path`` by :class:`LmdbSet`, or None (an LMDB
    written before build ids, or not by this project)."""
    try:
        return (pathlib.Path(path) / BUILD_ID_FILE).read_text().strip() or None
    except (FileNotFoundError, NotADirectoryError):
        return None


_MAGIC = 0xBEEFC0DE


def check_data_file(path):
    """Refuse an LMDB folder whose ``data.mdb`` is shorter than its own meta pages say (a truncated
    copy or download): LMDB maps the file and would fault (SIGBUS) when it reads past the end,
    ending the process without a message. An InputError names the file; a file that is not an
    LMDB at all is left to ``lmdb.open`` to refuse."""
    data = pathlib.Path(path) / "data.mdb"
    import struct

    try:
        size = data.stat().st_size
        with open(data, "rb") as fh:
            head = fh.read(2 * 65536)
    except OSError:
        return
    if len(head) < 44 or struct.unpack_from("<I", head, 16)[0] != _MAGIC:
        return                                        # too short to tell, or not an LMDB
    page = struct.unpack_from("<I", head, 40)[0]      # the free DB's md_pad: the page size
    if not 512 <= page <= 65536 or len(head) < page + 160:
        raise InputError(f"{data}: truncated LMDB ({size} bytes, not even its two meta pages); "
                         "copy or build it again")
    metas = [struct.unpack_from("<QQ", head, off + 136) for off in (0, page)]
    last_page = max(metas, key=lambda m: m[1])[0]     # the meta of the newest transaction
    need = (last_page + 1) * page
    if size < need:
        raise InputError(f"{data}: truncated LMDB ({size} bytes, its pages need {need}); copy "
                         "or build it again")


def key(i):
    """The key of record ``i``: ``b'%08d' % i``."""
    return b"%08d" % i


def count_records(path):
    """Number of records of an LMDB folder, or -1 if it is not a readable LMDB."""
    path = pathlib.Path(path)
    if not (path / "data.mdb").is_file():
        return -1
    try:
        check_data_file(path)
    except InputError:
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
    """Remove the temporary folders and files of builds of ``<prefix>*`` (its LMDBs, meta and bad
    log) whose processes have ended (``plumbing.stale_temporaries``)."""
    for final, paths in stale_temporaries(out_dir).items():
        if pathlib.Path(final).name.startswith(prefix):
            for path in paths:
                remove_path(path)


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
        self.build_id = uuid.uuid4().hex      # written into every LMDB of the set on commit

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
                try:
                    with self.envs[n].begin(write=True) as txn:
                        txn.cursor().putmulti(items, append=True)
                except lmdb.Error as err:
                    raise self._write_error(n, err) from None
                items.clear()

    def _write_error(self, name, err):
        """A failed write as one line naming the LMDB (its final name) and, for an I/O error or a
        full map, the likely cause."""
        text = " ".join(str(err).split())
        full = any(k in text for k in ("Input/output error", "No space", "MAP_FULL"))
        return InputError(f"{self.final[name]}: writing the LMDB failed ({text})"
                          + (" (is the disk full? `df -h` shows the free space)" if full else ""))

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
        for n, env in self.envs.items():
            try:
                env.sync(True)
            except lmdb.Error as err:
                raise self._write_error(n, err) from None
        self.close()
        for t in self.tmp.values():
            (t / BUILD_ID_FILE).write_text(self.build_id + "\n")
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


class DatumLMDB:
    """A read-only LMDB of Datum records: ``len``, ``get(i)``, ``iter_records()``, ``iter_batches(n)``,
    ``read_all()``; bad input (no LMDB, empty, not Datums) is an InputError naming the folder."""

    def __init__(self, path):
        self.path = str(path)
        if not os.path.isdir(self.path):
            raise InputError(f"{self.path}: no such LMDB (a folder with data.mdb)")
        if not os.path.isfile(os.path.join(self.path, "data.mdb")):
            raise InputError(f"{self.path}: not an LMDB (no data.mdb inside)")
        check_data_file(self.path)
        try:
            self.env = lmdb.open(self.path, readonly=True, lock=False, readahead=False,
                                 subdir=True)
        except lmdb.Error as err:
            raise InputError(f"{self.path}: cannot open the LMDB ({' '.join(str(err).split())})") from None
        self.entries = int(self.env.stat()["entries"])
        if self.entries == 0:
            raise InputError(f"{self.path}: the LMDB is empty (no records)")

    def __len__(self):
        return self.entries

    def close(self):
        self.env.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _decode(self, k, raw):
        try:
            shape, values = datum.decode(raw)
        except Exception as err:
            raise InputError(f"{self.path}: record {k!r} is not a Caffe Datum "
                             f"({' '.join(str(err).split())})") from None
        if values.size == 0 or values.size != int(np.prod(shape)):
            raise InputError(f"{self.path}: record {k!r} has {values.size} float "
                             f"values for shape {shape}")
        return shape, values

    def get(self, index):
        """Record ``index`` (0-based) -> ``(C, H, W)`` float32."""
        if not 0 <= index < self.entries:
            raise InputError(f"record {index}: {self.path} has records 0..{self.entries - 1}")
        with self.env.begin() as txn:
            raw = txn.get(key(index))
        if raw is None:
            raise InputError(f"{self.path}: no record {key(index).decode()}")
        shape, values = self._decode(key(index), raw)
        return values.reshape(shape)

    def iter_records(self):
        """Yield ``(key bytes, (C, H, W), (C*H*W,) float32)`` in key order."""
        with self.env.begin(buffers=False) as txn:
            for k, raw in txn.cursor():
                shape, values = self._decode(k, raw)
                yield k, shape, values

    def iter_batches(self, batch_size, shape=None):
        """Yield ``(keys list, (B, C, H, W) float32)``; every record must have ``shape``."""
        keys, rows = [], []
        for key, rshape, values in self.iter_records():
            if shape is None:
                shape = rshape
            elif tuple(rshape) != tuple(shape):
                raise InputError(f"{self.path}: record {key!r} has shape {rshape}, expected "
                                 f"{tuple(shape)}")
            keys.append(key)
            rows.append(values)
            if len(rows) == batch_size:
                yield keys, np.stack(rows).reshape((-1,) + tuple(shape))
                keys, rows = [], []
        if rows:
            yield keys, np.stack(rows).reshape((-1,) + tuple(shape))

    def read_all(self):
        """All records: ``(keys list, (N, C*H*W) float32)`` (for the small label LMDBs)."""
        keys, rows = [], []
        for batch_keys, batch in self.iter_batches(4096):
            keys += batch_keys
            rows.append(batch.reshape(len(batch_keys), -1))
        return keys, np.concatenate(rows)
