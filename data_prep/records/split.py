"""One split's LMDBs, the contract between the build, the nets and the tools, owned in one place.

For a prefix ``<folder>/<dataset>_<split>`` (e.g. ``data/lmdb/nyu_test``), :class:`LmdbSplit` names
and reads (and the build writes):

* ``<prefix>_depth``: Datum float_data ``1 x 128 x 128`` crops in [-1, 1] (``deepmodel.data.hand_crop.crop``);
* ``<prefix>_joint``: Datum ``3K x 1 x 1`` labels, the K keypoints normalised by
  :func:`to_normalised` (x0, y0, z0, x1, ...);
* ``<prefix>_theta``: Datum ``26 x 1 x 1`` true angles, only when they are known (synthetic data);
* ``<prefix>_meta.npz``: ``dataset`` (``nyu``, ``icvl``; sets built before it was recorded are
  NYU), ``com`` (N, 3) mm, ``cube`` (N,) mm, ``frame`` (N,) 0-based frame index, ``theta`` (N, 26)
  when known, ``fingerprint`` (what the LMDBs were built from), ``bad_frames``, ``build_id``
  (the id written into each LMDB of the build: readers check that the LMDBs and the meta are of
  one build, so a build interrupted between its renames is never read as a set);
* ``<prefix>_bad.txt``: the frames left out, one a line, ``frame path: reason``.

Records are keyed ``'%08d' % i`` in the same order in every LMDB of the split, record i of each
being frame ``meta.frame[i]``. Normalisation both ways: :func:`to_normalised` (mm -> [-1, 1]) and
:func:`to_mm` (network units -> mm), with each record's com and cube.
"""
import dataclasses
import pathlib

import numpy as np

from deepmodel.data.records.lmdb_io import DatumLMDB, LmdbSet, count_records, read_build_id
from deepmodel.plumbing import InputError, write_npz

KINDS = ("depth", "joint", "theta")


LABEL_LIMIT = 1000.0     # a label beyond this (normalised units, radians) is not a label


def checked_labels(path, values, first=0):
    """``values`` ``(N, W)`` of the label LMDB ``path``, or an InputError naming the first record
    with a NaN, an infinite value or one beyond +-:data:`LABEL_LIMIT` (normalised keypoints are
    about +-1, angles within +-pi: such a number is damage, not data). ``first``: the record
    number of the first row."""
    values = np.asarray(values)
    bad = ~np.all(np.isfinite(values) & (np.abs(values) <= LABEL_LIMIT), axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        row = values[i]
        j = int(np.flatnonzero(~(np.isfinite(row) & (np.abs(row) <= LABEL_LIMIT)))[0])
        what = f"beyond +-{LABEL_LIMIT:g}" if np.isfinite(row[j]) else "a NaN or infinite value"
        raise InputError(f"{path}: record {first + i} has the label value {row[j]:.6g} ({what}, "
                         f"not a label; value {j}, {int(bad.sum())} such records): build the LMDB "
                         "again")
    return values


def to_normalised(xyz, com, cube, clip=True):
    """Points ``(N, K, 3)`` mm -> ``(N, K, 3)`` network units ``(xyz - com) / (cube / 2)``.

    com ``(N, 3)`` mm (the crop centre's xyz), cube ``(N,)`` mm (edge); clipped to [-1, 1] (the
    labels' range) unless ``clip`` is False.
    """
    half = np.asarray(cube, np.float64)[:, None, None] / 2.0
    rel = (np.asarray(xyz, np.float64) - np.asarray(com, np.float64)[:, None, :]) / half
    return np.clip(rel, -1.0, 1.0) if clip else rel


def to_mm(norm, com, cube):
    """Network units ``(N, 3K)`` (x0, y0, z0, x1, ...) or ``(N, K, 3)`` -> ``(N, K, 3)`` mm:
    ``norm * cube / 2 + com`` with com ``(N, 3)`` mm and cube ``(N,)`` mm."""
    norm = np.asarray(norm, np.float64).reshape(len(norm), -1, 3)
    return norm * (np.asarray(cube, np.float64)[:, None, None] / 2.0) + np.asarray(com, np.float64)[:, None, :]


@dataclasses.dataclass
class Meta:
    """The meta file of a split: com ``(N, 3)`` mm, cube ``(N,)`` mm, frame ``(N,)`` int, theta
    ``(N, 26)`` or None, fingerprint (str or None), dataset (str: whose frames, ``nyu``/``icvl``)."""
    com: np.ndarray
    cube: np.ndarray
    frame: np.ndarray
    theta: np.ndarray = None
    fingerprint: str = None
    dataset: str = "nyu"
    build_id: str = None

    def __len__(self):
        return len(self.com)


class LmdbSplit:
    """The files of one split under ``prefix`` (``<folder>/<dataset>_<split>``, a str or path)."""

    def __init__(self, prefix):
        self.prefix = pathlib.Path(prefix)
        self._build_id = None      # of the last writer(): recorded by write_meta

    @classmethod
    def of(cls, folder, dataset, split):
        """The split ``<folder>/<dataset>_<split>``, e.g. ``of("data/lmdb", "nyu", "test")``."""
        return cls(pathlib.Path(folder) / f"{dataset}_{split}")

    @classmethod
    def from_meta_path(cls, path):
        """The split whose meta file is ``path`` (``<prefix>_meta.npz``)."""
        name = str(path)
        if not name.endswith("_meta.npz"):
            raise InputError(f"{path}: an LMDB meta file is named <set>_meta.npz")
        return cls(name[: -len("_meta.npz")])

    @property
    def name(self):
        """``<dataset>_<split>``."""
        return self.prefix.name

    @property
    def folder(self):
        return self.prefix.parent

    def lmdb(self, kind):
        """Path of the ``kind`` LMDB (``depth``, ``joint``, ``theta``)."""
        return pathlib.Path(f"{self.prefix}_{kind}")

    @property
    def meta_path(self):
        return pathlib.Path(f"{self.prefix}_meta.npz")

    @property
    def bad_path(self):
        return pathlib.Path(f"{self.prefix}_bad.txt")

    def inputs(self, label="the split"):
        """``(label, path)`` of every file of the split, for ``plumbing.check_outputs``."""
        return [(f"{label}'s {p.name}", p) for p in
                (self.lmdb("depth"), self.lmdb("joint"), self.lmdb("theta"), self.meta_path)]

    def __repr__(self):
        return f"LmdbSplit({str(self.prefix)!r})"

    # ------------------------------------------------------------------ reading
    def count(self, kind="depth"):
        """Records in the ``kind`` LMDB, or -1 when it is not a readable LMDB."""
        return count_records(self.lmdb(kind))

    def open(self, kind):
        """The ``kind`` LMDB for reading (:class:`DatumLMDB`; InputError if missing or empty, or
        when the split's LMDBs and meta file are not of one build: :meth:`check_build`)."""
        self.check_build()
        return DatumLMDB(self.lmdb(kind))

    def _meta_build_id(self):
        """``(meta exists, its build id or None)``."""
        try:
            with np.load(self.meta_path) as npz:
                return True, (str(npz["build_id"]) if "build_id" in npz.files else None)
        except FileNotFoundError:
            return False, None
        except Exception:  # an unreadable meta file: read_meta reports it
            return True, None

    def check_build(self):
        """InputError unless the split's LMDBs (depth, joint, theta: those that exist) and its meta
        file (when it records one) carry the same build id: a build interrupted between its
        renames, or files copied together from two builds, are refused. Sets written before
        build ids (no id anywhere) pass."""
        ids = {k: read_build_id(self.lmdb(k)) for k in KINDS if self.lmdb(k).is_dir()}
        has_meta, meta_id = self._meta_build_id()
        if meta_id is not None:        # a meta file written without an id (by hand) names none
            ids["meta"] = meta_id
        if len(set(ids.values())) > 1:
            shown = ", ".join(f"{k} {v[:8] if v else 'none'}" for k, v in ids.items())
            raise InputError(f"{self.prefix}: the LMDBs and meta file are not of one build ({shown}; "
                             "an interrupted or mixed build): build them again (make lmdb-nyu)")

    def read_labels(self, kind="joint"):
        """All records of a small LMDB: ``(keys, (N, C*H*W) float32)``, checked by
        :func:`checked_labels`."""
        with self.open(kind) as db:
            keys, values = db.read_all()
        return keys, checked_labels(self.lmdb(kind), values)

    def read_meta(self, n=None):
        """The meta file as a :class:`Meta`, checked: InputError naming the file when it is
        missing, unreadable, lacks com or cube, has arrays of different lengths (or other than
        ``n`` records when given), a non-finite com or a cube that is not positive."""
        path = self.meta_path
        if not path.is_file():
            raise InputError(f"{path}: no such meta file (com and cube per frame)")
        self.check_build()
        try:
            with np.load(path) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except Exception as err:  # numpy raises several kinds for a broken file
            raise InputError(f"{path}: not a readable .npz file ({' '.join(str(err).split())})") from None
        for k in ("com", "cube"):
            if k not in arrays:
                raise InputError(f"{path}: has no '{k}' array")
        com = np.asarray(arrays["com"], np.float64)
        cube = np.asarray(arrays["cube"], np.float64).reshape(-1)
        n = len(com) if n is None else n
        frame = np.asarray(arrays["frame"]).astype(np.int64) if "frame" in arrays else np.arange(n)
        theta = np.asarray(arrays["theta"], np.float64) if "theta" in arrays else None
        if com.shape != (n, 3) or cube.shape != (n,) or frame.shape != (n,):
            raise InputError(f"{path}: com {com.shape}, cube {cube.shape}, frame {frame.shape} do not "
                             f"match the {n} records of the LMDB")
        if theta is not None and (theta.ndim != 2 or theta.shape[0] != n):
            raise InputError(f"{path}: theta has shape {theta.shape}, expected ({n}, 26)")
        if not np.all(np.isfinite(com)) or not np.all(np.isfinite(cube) & (cube > 0)):
            bad = np.flatnonzero(~np.all(np.isfinite(com), axis=1) | ~(np.isfinite(cube) & (cube > 0)))
            raise InputError(f"{path}: record {int(bad[0])} has a non-finite com or a cube that "
                             f"is not a positive number ({len(bad)} such records)")
        if theta is not None and not np.all(np.isfinite(theta)):
            bad = np.flatnonzero(~np.all(np.isfinite(theta), axis=1))
            raise InputError(f"{path}: record {int(bad[0])} has a non-finite theta ({len(bad)} "
                             "such records)")
        fingerprint = str(arrays["fingerprint"]) if "fingerprint" in arrays else None
        dataset = str(arrays["dataset"]) if "dataset" in arrays else "nyu"
        build_id = str(arrays["build_id"]) if "build_id" in arrays else None
        return Meta(com=com, cube=cube, frame=frame, theta=theta, fingerprint=fingerprint,
                    dataset=dataset, build_id=build_id)

    def is_current(self, fingerprint):
        """True when the meta file was written for ``fingerprint`` and every LMDB it implies
        (depth, joint, and theta when the meta has theta) holds its N records."""
        try:
            meta = self.read_meta()
        except InputError:
            return False
        if meta.fingerprint != fingerprint:
            return False
        kinds = KINDS if meta.theta is not None else KINDS[:2]
        return all(self.count(k) == len(meta) for k in kinds)

    # ------------------------------------------------------------------ writing
    def writer(self, kinds, map_size):
        """An :class:`LmdbSet` writing the ``kinds`` LMDBs of this split (renamed on commit); its
        build id goes into the meta file written next (:meth:`write_meta`)."""
        out = LmdbSet({k: self.lmdb(k) for k in kinds}, map_size)
        self._build_id = out.build_id
        return out

    def write_meta(self, com, cube, frame, theta=None, **extra):
        """Write the meta file atomically (arrays as described in the module docstring), with the
        build id of the LMDBs last written by :meth:`writer` unless ``build_id`` is given."""
        arrays = dict(com=np.asarray(com, np.float64), cube=np.asarray(cube, np.float64),
                      frame=np.asarray(frame, np.int64), **extra)
        if "build_id" not in arrays and self._build_id is not None:
            arrays["build_id"] = np.array(self._build_id)
        if theta is not None:
            arrays["theta"] = np.asarray(theta, np.float64)
        write_npz(self.meta_path, **arrays)
