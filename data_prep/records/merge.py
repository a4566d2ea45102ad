"""Mix the training splits of several LMDB folders into one: ``python tools/merge_lmdb.py``.

    python tools/merge_lmdb.py --out data/lmdb_mix --train data/lmdb data/lmdb_real:12000

Each ``--train`` source is a folder written by ``tools/make_lmdb.py`` (``<dataset>_train_depth``,
``_joint``, ``_theta`` and ``_meta.npz``); ``FOLDER:N`` takes N of its records, drawn at random
without replacement (seeded), plain ``FOLDER`` all of them; a ``:back`` or ``:palm`` suffix
(``FOLDER:N:back``, ``FOLDER:back``) draws only among the records whose labelled hand shows that
face to the camera (the palm normal of the 31 keypoints, ``HandModel.palm_normal``). The records
of all sources are written in one seeded random order (Caffe's Data layers read an LMDB in key
order, so the sources are interleaved, not one after the other) into ``OUT/<dataset>_train_*``,
with a meta file whose arrays follow the same order (plus ``source``: which ``--train`` each
record came from). The test split of ``--test`` (default: the first source) is copied as it is,
so ``tools/train.py --lmdb-dir OUT`` evaluates on it.

Records are copied byte for byte (no decoding); every source must hold the same dataset, the same
record shapes and the same kinds (all with true angles, or none). An output built from the same
sources (their build ids), counts, faces and seed is up to date and skipped (``--force``
rebuilds).
Everything is written under temporary names and renamed when complete.
"""
import json
import pathlib
import shutil

import lmdb
import numpy as np
from tqdm import tqdm

from deepmodel.data.records import datum
from deepmodel.data.records.lmdb_io import BUILD_ID_FILE, check_data_file, key, read_build_id
from deepmodel.data.records.split import KINDS, LmdbSplit
from deepmodel.plumbing import InputError, replace_atomically, tmp_name


FACES = ("palm", "back")


def parse_source(text):
    """``"FOLDER[:N][:palm|back]"`` -> ``(Path, N or None, face or None)``."""
    rest, face = str(text), None
    head, sep, tail = rest.rpartition(":")
    if sep and tail in FACES:
        rest, face = head, tail
    folder, sep, count = rest.rpartition(":")
    if not sep or not count.isdigit():
        return pathlib.Path(rest), None, face
    if int(count) <= 0:
        raise InputError(f"--train {text}: the record count must be positive")
    return pathlib.Path(folder), int(count), face


def facing(split):
    """``(N,)`` str: the face ("palm" or "back") the hand of each record of a split's joint LMDB
    (31 keypoints, normalised crop units, z = depth) shows to the camera."""
    from deepmodel.model.hand_model import HandModel

    model = HandModel.nyu()
    _, rows = split.read_labels("joint")
    if rows.shape[1] != 3 * model.num_keypoints:
        raise InputError(f"{split.lmdb('joint')}: records hold {rows.shape[1]} values, not the "
                         f"{model.num_keypoints} keypoints x 3 a face is read from")
    return np.where(model.palm_normal(rows)[:, 2] < 0, "palm", "back")


class Source:
    """One ``--train`` source: its training split, meta, kinds and the records drawn from it."""

    def __init__(self, text, dataset):
        self.text = text
        self.folder, self.count, self.face = parse_source(text)
        self.split = LmdbSplit.of(self.folder, dataset, "train")
        if not self.split.lmdb("depth").is_dir():
            raise InputError(f"--train {text}: no {self.split.lmdb('depth')} (build it with "
                             "python tools/make_lmdb.py)")
        self.meta = self.split.read_meta()
        if self.meta.dataset != dataset:
            raise InputError(f"--train {text}: holds {self.meta.dataset} frames, not {dataset}")
        self.kinds = KINDS if self.meta.theta is not None else KINDS[:2]
        for kind in self.kinds:
            n = self.split.count(kind)
            if n != len(self.meta):
                raise InputError(f"{self.split.lmdb(kind)}: {n} records, its meta file "
                                 f"{len(self.meta)}: build it again")
        # the records a draw may take: all, or those showing the asked face
        self.eligible = np.arange(len(self.meta))
        if self.face is not None:
            faces = facing(self.split)
            self.eligible = np.flatnonzero(faces == self.face)
        if self.count is not None and self.count > len(self.eligible):
            raise InputError(f"--train {text}: asks for {self.count} records, the split has "
                             f"{len(self.eligible)}"
                             + (f" showing the {self.face}" if self.face else ""))
        self.build_id = read_build_id(self.split.lmdb("depth"))

    def shapes(self):
        """``{kind: shape}`` of the first record of each LMDB."""
        out = {}
        for kind in self.kinds:
            with lmdb.open(str(self.split.lmdb(kind)), readonly=True, lock=False) as env, \
                    env.begin() as txn:
                out[kind] = tuple(datum.decode(txn.get(key(0)))[0])
        return out


def plan(sources, seed):
    """``(n, 2)`` rows ``(source, record)`` in the merged order: each source's draw, then one
    random order over all of them."""
    rng = np.random.default_rng(seed)
    rows = []
    for s, src in enumerate(sources):
        if src.face is None:        # drawn by position: the same draws as before faces existed
            n = len(src.meta)
            pick = np.arange(n) if src.count is None else rng.choice(n, src.count, replace=False)
        else:
            pick = (src.eligible if src.count is None
                    else rng.choice(src.eligible, src.count, replace=False))
        rows.append(np.stack([np.full(len(pick), s), pick], 1))
    rows = np.concatenate(rows)
    return rows[rng.permutation(len(rows))]


def check_test_split(folder, dataset):
    """Before anything is written: ``folder``'s test split is whole (meta, LMDBs not truncated,
    labels finite and in range), as :func:`copy_test_split` copies it without reading it."""
    src = LmdbSplit.of(folder, dataset, "test")
    src.read_meta()
    for kind in KINDS:
        if src.lmdb(kind).is_dir():
            check_data_file(src.lmdb(kind))
            if kind != "depth":
                src.read_labels(kind)


def copy_test_split(folder, out, dataset, force=False):
    """Copy ``folder``'s test split (LMDBs and meta) into ``out``; skipped when ``out`` holds the
    same build. Returns the number of records."""
    src = LmdbSplit.of(folder, dataset, "test")
    dst = LmdbSplit.of(out, dataset, "test")
    meta = src.read_meta()
    build = read_build_id(src.lmdb("depth"))
    kinds = [k for k in KINDS if src.lmdb(k).is_dir()]
    if not force and build is not None and all(read_build_id(dst.lmdb(k)) == build for k in kinds) \
            and dst.meta_path.is_file() and dst.count() == len(meta):
        return len(meta)
    dst.meta_path.unlink(missing_ok=True)       # never a meta beside LMDBs of another build
    for kind in kinds:
        tmp = tmp_name(dst.lmdb(kind))
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name in ("data.mdb", BUILD_ID_FILE):
            if (src.lmdb(kind) / name).is_file():
                shutil.copyfile(src.lmdb(kind) / name, tmp / name)
        replace_atomically(tmp, dst.lmdb(kind))
    tmp = tmp_name(dst.meta_path)
    shutil.copyfile(src.meta_path, tmp)
    replace_atomically(tmp, dst.meta_path)
    return len(meta)


def merge(sources, out, dataset, seed=0, force=False, progress=True):
    """Write the mixed training split of ``sources`` into ``out``; returns ``(records, written)``
    (``written`` False when an identical build was already there)."""
    shapes = sources[0].shapes()
    for src in sources[1:]:
        if src.kinds != sources[0].kinds:
            raise InputError(f"--train {src.text}: {'has' if len(src.kinds) == 3 else 'lacks'} true "
                             f"angles (a theta LMDB), --train {sources[0].text} "
                             f"{'does' if len(sources[0].kinds) == 3 else 'does not'}")
        other = src.shapes()
        for kind, shape in shapes.items():
            if other[kind] != shape:
                raise InputError(f"--train {src.text}: {kind} records of shape {other[kind]}, "
                                 f"--train {sources[0].text} {shape}")
    fingerprint = json.dumps({"sources": [[s.build_id, s.count] + ([s.face] if s.face else [])
                                          for s in sources], "seed": seed, "merge": 1})
    split = LmdbSplit.of(out, dataset, "train")
    if not force and split.is_current(fingerprint):
        return len(split.read_meta()), False
    rows = plan(sources, seed)
    kinds = sources[0].kinds
    sizes = {k: sum(pathlib.Path(s.split.lmdb(k), "data.mdb").stat().st_size for s in sources)
             for k in kinds}
    # one environment and transaction per LMDB: a folder may be a source twice (FOLDER:N:back
    # FOLDER:N:palm), and LMDB opens an environment once per process
    opened = {}

    def txn_of(path):
        path = str(pathlib.Path(path).resolve())
        if path not in opened:
            env = lmdb.open(path, readonly=True, lock=False, readahead=False)
            opened[path] = (env, env.begin())
        return opened[path][1]

    try:
        txns = [{k: txn_of(s.split.lmdb(k)) for k in kinds} for s in sources]
        pathlib.Path(out).mkdir(parents=True, exist_ok=True)
        with split.writer(kinds, {k: 2 * v + (256 << 20) for k, v in sizes.items()}) as w:
            for s, r in tqdm(rows, desc=f"{dataset}_train LMDBs", unit="record",
                             disable=not progress, smoothing=0.05):
                w.put({k: txns[s][k].get(key(int(r))) for k in kinds})
            w.commit(before_rename=lambda: split.meta_path.unlink(missing_ok=True))
    finally:
        for env, _ in opened.values():
            env.close()

    def gather(name):
        """The meta array ``name`` of every merged record, in the merged order."""
        first = np.asarray(getattr(sources[0].meta, name))
        out = np.empty((len(rows),) + first.shape[1:], first.dtype)
        for i, src in enumerate(sources):
            mine = rows[:, 0] == i
            out[mine] = np.asarray(getattr(src.meta, name))[rows[mine, 1]]
        return out

    split.write_meta(com=gather("com"), cube=gather("cube"), frame=gather("frame"),
                     theta=gather("theta") if len(kinds) == 3 else None,
                     fingerprint=np.array(fingerprint), dataset=np.array(dataset),
                     source=rows[:, 0].astype(np.int64))
    return len(rows), True
