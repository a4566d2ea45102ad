"""Build one split's aligned LMDBs from a table of frames: parallel decode + crop, atomic commit.

Writes, for ``prefix = "<dataset>_<split>"`` in the output folder:

* ``<prefix>_depth``: Datum float_data ``1 x size x size`` crops in [-1, 1];
* ``<prefix>_joint``: Datum float_data ``K x 1 x 1`` labels (normalised, clipped);
* ``<prefix>_theta``: Datum float_data ``26 x 1 x 1`` true angles, only when the table has them;
* ``<prefix>_meta.npz``: ``com`` (N, 3) mm, ``cube`` (N,) mm, ``frame`` (N,) 0-based frame index,
  ``theta`` (N, 26) when known, ``fingerprint`` (what the LMDBs were built from) and ``bad_frames``;
* ``<prefix>_bad.txt`` when frames were skipped: one line per frame, ``frame path: reason``.

Records are keyed ``'%08d' % i`` in the same order in every LMDB of the split: the order given
(shuffled for training, frame order for testing), skipped frames left out. Frames whose image
cannot be read are skipped and counted; the build fails (writing nothing) when more than
``max_bad`` of them (a fraction) are bad.
"""
import dataclasses
import json
import multiprocessing
import os
import pathlib
import shutil

import numpy as np
from tqdm import tqdm

from data_prep import crop as crop_mod
from data_prep import lmdb_writer as lw
from plumbing import InputError, write_npz, write_text

PIPELINE_VERSION = 1   # bump when the crop or the record layout changes (invalidates built LMDBs)


@dataclasses.dataclass
class FrameTable:
    """Everything needed to build a split, one row per frame (N frames).

    paths: N image files; center_uvd ``(N, 3)`` crop centres (pixels, mm); com ``(N, 3)`` mm
    (its z maps to 0); cube ``(N,)`` mm; labels ``(N, K)`` normalised targets; frame ``(N,)``
    0-based frame index; theta ``(N, 26)`` or None; decoder: ``"nyu"`` (blue/green PNG) or
    ``"png16"`` (16-bit PNG in mm); bad: ``{row: reason}`` rows already known to be unusable.
    """
    dataset: str
    split: str
    paths: list
    center_uvd: np.ndarray
    com: np.ndarray
    cube: np.ndarray
    labels: np.ndarray
    frame: np.ndarray
    camera: object
    decoder: str = "nyu"
    theta: np.ndarray = None
    bad: dict = dataclasses.field(default_factory=dict)

    def __len__(self):
        return len(self.paths)

    @property
    def prefix(self):
        return f"{self.dataset}_{self.split}"


# ---------------------------------------------------------------- worker side
_W = {}


def _init_worker(paths, center_uvd, cube, com_z, camera, decoder, size):
    _W.update(paths=paths, center=center_uvd, cube=cube, com_z=com_z, camera=camera,
              decoder=decoder, size=size, head=lw.datum_header(1, size, size, size * size))


def _decode(path, decoder):
    from data_prep import nyu
    if decoder == "nyu":
        return nyu.read_depth(path)
    from data_prep import icvl
    return icvl.read_depth(path)


def _process(rows):
    """Decode and crop frames ``rows`` -> list of ``(row, datum bytes or None, reason or None)``."""
    from data_prep.nyu import BadFrame
    out = []
    for r in rows:
        try:
            depth = _decode(_W["paths"][r], _W["decoder"])
            c = crop_mod.crop_depth(depth, _W["center"][r], _W["cube"][r], _W["camera"],
                                    size=_W["size"], com_z=_W["com_z"][r])
            out.append((r, _W["head"] + c.astype("<f4").tobytes(), None))
        except (BadFrame, ValueError) as err:
            out.append((r, None, str(err)))
    return out


# ---------------------------------------------------------------- main side
def output_paths(out_dir, prefix, with_theta):
    out_dir = pathlib.Path(out_dir)
    names = ["depth", "joint"] + (["theta"] if with_theta else [])
    return ({n: out_dir / f"{prefix}_{n}" for n in names}, out_dir / f"{prefix}_meta.npz",
            out_dir / f"{prefix}_bad.txt")


def is_current(out_dir, prefix, fingerprint):
    """True when the split's LMDBs exist, are complete and were built from ``fingerprint``."""
    _, meta_path, _ = output_paths(out_dir, prefix, False)
    if not meta_path.is_file():
        return False
    try:
        with np.load(meta_path) as meta:
            if str(meta["fingerprint"]) != fingerprint:
                return False
            n = len(meta["frame"])
            with_theta = "theta" in meta.files
    except (OSError, KeyError, ValueError):
        return False
    lmdbs, _, _ = output_paths(out_dir, prefix, with_theta)
    return all(lw.count_records(p) == n for p in lmdbs.values())


def build_split(table, out_dir, order, fingerprint, workers=2, max_bad=0.01, size=128,
                chunk=32, progress=True):
    """Build the split's LMDBs from ``table`` in record order ``order`` (row indices).

    Returns a dict: ``written``, ``bad`` (list of (row, reason)), ``paths``. Raises
    :class:`InputError` (nothing written) when the bad frames exceed ``max_bad``.
    """
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lw.remove_stale(out_dir, table.prefix)
    with_theta = table.theta is not None
    lmdbs, meta_path, bad_path = output_paths(out_dir, table.prefix, with_theta)
    n = len(table)
    order = np.asarray(order, dtype=np.int64)
    bad = [(int(r), table.bad[int(r)]) for r in order if int(r) in table.bad]
    todo = [int(r) for r in order if int(r) not in table.bad]
    label_dim = table.labels.shape[1]
    map_size = {"depth": n * (size * size * 4 + 8192) + (256 << 20),
                "joint": n * 2048 + (64 << 20), "theta": n * 2048 + (64 << 20)}
    joint_rows = lw.datum_rows(table.labels, (label_dim, 1, 1))
    theta_rows = lw.datum_rows(table.theta, (table.theta.shape[1], 1, 1)) if with_theta else None
    chunks = [todo[i:i + chunk] for i in range(0, len(todo), chunk)]
    init_args = (table.paths, np.asarray(table.center_uvd, np.float64), np.asarray(table.cube, np.float64),
                 np.asarray(table.com, np.float64)[:, 2], table.camera, table.decoder, size)
    written = []
    bar = tqdm(total=len(order), desc=f"{table.prefix} LMDBs", unit="frame", disable=not progress,
               smoothing=0.05)
    bar.update(len(bad))
    pool = None
    try:
        if workers and workers > 1:     # start the workers before any LMDB is open here
            pool = multiprocessing.get_context("fork").Pool(workers, initializer=_init_worker,
                                                            initargs=init_args)
            results = pool.imap(_process, chunks)
        else:
            _init_worker(*init_args)
            results = map(_process, chunks)
        out = lw.LmdbSet(lmdbs, map_size)
        with out:
            for res in results:
                for r, depth_bytes, reason in res:
                    if depth_bytes is None:
                        bad.append((r, reason))
                        continue
                    rec = {"depth": depth_bytes, "joint": joint_rows[r]}
                    if with_theta:
                        rec["theta"] = theta_rows[r]
                    out.put(rec)
                    written.append(r)
                bar.update(len(res))
                if len(bad) > max_bad * n:
                    break
            _finish(table, out, bad, written, n, max_bad, fingerprint, with_theta, meta_path, bad_path)
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()
    return {"written": len(written), "bad": bad, "paths": lmdbs, "meta": meta_path,
            "bad_log": bad_path if bad else None}


def _finish(table, out, bad, written, n, max_bad, fingerprint, with_theta, meta_path, bad_path):
    """Fail (nothing renamed) past the bad-frame limit, else commit the LMDBs, meta and log."""
    if len(bad) > max_bad * n or not written:
        lines = _bad_lines(table, bad)
        write_text(bad_path, lines)
        some = "" if len(bad) + len(written) == n else "at least "    # stopped at the limit
        raise InputError(f"{table.prefix}: {some}{len(bad)} of {n} frames unusable (limit "
                         f"{max_bad:.1%}); nothing written; see {bad_path} (first: "
                         f"{lines.splitlines()[0]})")
    rows = np.asarray(written, dtype=np.int64)
    meta = dict(com=np.asarray(table.com, np.float64)[rows], cube=np.asarray(table.cube, np.float64)[rows],
                frame=np.asarray(table.frame, np.int64)[rows], fingerprint=np.array(fingerprint),
                bad_frames=np.array(sorted(int(table.frame[r]) for r, _ in bad), dtype=np.int64))
    if with_theta:
        meta["theta"] = np.asarray(table.theta, np.float64)[rows]
    def before_rename():
        meta_path.unlink(missing_ok=True)
        stale_theta = meta_path.parent / f"{table.prefix}_theta"
        if not with_theta and stale_theta.is_dir():      # from an earlier build with true angles
            shutil.rmtree(stale_theta)

    out.commit(before_rename=before_rename)
    write_npz(meta_path, **meta)
    if bad:
        write_text(bad_path, _bad_lines(table, bad))
    else:
        bad_path.unlink(missing_ok=True)


def _bad_lines(table, bad):
    return "".join(f"{int(table.frame[r])} {table.paths[r]}: {reason}\n" for r, reason in sorted(bad))


def fingerprint_of(**parts):
    """A stable string describing what a build depends on (compared to skip up-to-date builds)."""
    return json.dumps(dict(parts, pipeline=PIPELINE_VERSION), sort_keys=True, default=str)


def files_signature(folder, pattern):
    """``(count, total bytes, newest mtime_ns)`` of the files matching ``pattern`` in ``folder``."""
    import fnmatch
    count = total = newest = 0
    try:
        it = os.scandir(folder)
    except OSError:
        return (0, 0, 0)
    with it:
        for e in it:
            if fnmatch.fnmatchcase(e.name, pattern):
                st = e.stat()
                count += 1
                total += st.st_size
                newest = max(newest, st.st_mtime_ns)
    return (count, total, newest)
