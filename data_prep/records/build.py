"""Build one split's aligned LMDBs from a table of frames: parallel decode + crop, atomic commit.

The last steps of the data flow (``docs/architecture.md``)::

    reader (nyu.split_table, icvl.split_table): raw files -> FrameTable (paths, centres, labels)
    -> worker: decode (``DECODERS``) -> crop (``deepmodel.data.hand_crop.crop.crop_depth``) -> Datum bytes
    -> records in the given order -> LMDBs + meta (``deepmodel.data.records.split.LmdbSplit``), renamed when
       complete.

The files written are those of :class:`deepmodel.data.records.split.LmdbSplit` for ``"<dataset>_<split>"``
in the output folder. Records are in the order given (shuffled for training, frame order for
testing), skipped frames left out. Frames whose image cannot be read are skipped and counted;
the build fails (writing nothing) when more than ``max_bad`` of them (a fraction) are bad.
"""
import dataclasses
import json
import os
import pathlib
import shutil

import numpy as np
from tqdm import tqdm

from deepmodel.data.hand_crop import crop as crop_mod
from deepmodel.data.records import datum
from deepmodel.data.datasets import icvl
from deepmodel.data.records import lmdb_io
from deepmodel.data.datasets import nyu
from deepmodel.data.datasets.frames import BadFrame
from deepmodel.data.records.split import KINDS, LmdbSplit
from deepmodel.plumbing import InputError, worker_results, write_text

PIPELINE_VERSION = 1   # bump when the crop or the record layout changes (invalidates built LMDBs)


# ---------------------------------------------------------------- worker side
_W = {}


# a FrameTable's decoder -> the reader's function: image path -> (H, W) uint16 depth in mm
DECODERS = {"nyu": nyu.read_depth, "png16": icvl.read_depth}


def _init_worker(paths, center_uvd, cube, com_z, camera, decoder, size, turn=None):
    _W.update(paths=paths, center=center_uvd, cube=cube, com_z=com_z, camera=camera,
              decode=DECODERS[decoder], size=size, head=datum.header(1, size, size, size * size),
              turn=turn)


def _process(rows):
    """Decode and crop frames ``rows`` (table row indices) -> list of ``(row, Datum bytes of the
    (1, size, size) float32 crop in [-1, 1], or None, reason or None)``."""
    out = []
    for r in rows:
        try:
            depth = _W["decode"](_W["paths"][r])
            turn = None if _W["turn"] is None else _W["turn"][r]
            if turn is None or not np.isfinite(turn):
                c = crop_mod.crop_depth(depth, _W["center"][r], _W["cube"][r], _W["camera"],
                                        size=_W["size"], com_z=_W["com_z"][r])
            else:
                c = crop_mod.crop_depth_turned(depth, _W["center"][r], _W["cube"][r], _W["camera"],
                                               turn, size=_W["size"], com_z=_W["com_z"][r])
            out.append((r, _W["head"] + c.astype("<f4").tobytes(), None))
        except (BadFrame, ValueError) as err:
            out.append((r, None, str(err)))
    return out


def _init_detect(paths, cube, camera, decoder):
    _W.update(paths=paths, cube=cube, camera=camera, decode=DECODERS[decoder])


def _detect(rows):
    """Decode frames ``rows`` and find the hand without labels -> list of ``(row, (3,) centre
    uvd or None, reason or None)``."""
    from deepmodel.data.hand_crop.locate import locate_hand

    out = []
    for r in rows:
        try:
            depth = _W["decode"](_W["paths"][r])
            center, _ = locate_hand(depth, _W["camera"], float(_W["cube"][r]))
            out.append((r, center, None))
        except BadFrame as err:
            out.append((r, None, str(err)))
        except ValueError as err:       # HandNotFound and a frame the localiser cannot take
            out.append((r, None, f"no hand detected: {err}"))
    return out


# ---------------------------------------------------------------- main side
def with_detected_centres(table, workers=2, chunk=32, progress=True):
    """The table cropped at label-free centres (``deepmodel.data.hand_crop.locate.locate_hand``, with the
    learned refinement when its weights are present) instead of the labelled joint.

    Returns ``(table, distances)``: a copy whose split is ``<split>_detected`` (so its LMDBs are
    ``<dataset>_<split>_detected_*``), ``center_uvd`` the detected centres ``(N, 3)``, ``com``
    their xyz ``(N, 3)`` mm (the crops' depth 0), and ``labels`` the same true keypoints
    (``table.keypoints_mm``, else ``to_mm`` of the labels with the labelled com) normalised around
    the detected centre (``to_normalised``, clipped to [-1, 1] as every label); ``test_net`` maps predictions back
    to mm with the meta's com, so the errors are against the true joints. Frames with no hand
    found are bad (their reason says so) and left out, counted like unreadable frames.
    ``distances``: ``(M,)`` mm from each detected centre to the labelled one (frames found).
    """
    from deepmodel.data.records.split import to_mm, to_normalised

    n = len(table)
    todo = [r for r in range(n) if r not in table.bad]
    chunks = [todo[i:i + chunk] for i in range(0, len(todo), chunk)]
    init_args = (table.paths, np.asarray(table.cube, np.float64), table.camera, table.decoder)
    centers = np.array(table.center_uvd, np.float64)
    bad = dict(table.bad)
    found = np.zeros(n, bool)
    with worker_results(_detect, _init_detect, init_args, chunks, workers) as results, \
            tqdm(total=len(todo), desc=f"{table.prefix} hand detection", unit="frame",
                 disable=not progress, smoothing=0.05) as bar:
        for res in results:
            for r, center, reason in res:
                if center is None:
                    bad[r] = reason
                else:
                    centers[r] = center
                    found[r] = True
            bar.update(len(res))
    com = np.asarray(table.com, np.float64)
    cube = np.asarray(table.cube, np.float64)
    new_com = com.copy()
    new_com[found] = table.camera.uvd_to_xyz(centers[found])
    kp_mm = table.keypoints_mm if table.keypoints_mm is not None else to_mm(table.labels, com, cube)
    labels = to_normalised(kp_mm, new_com, cube).reshape(n, -1)
    distances = np.linalg.norm(new_com[found] - com[found], axis=1)
    return dataclasses.replace(table, split=f"{table.split}_detected", center_uvd=centers,
                               com=new_com, labels=labels, bad=bad), distances


def is_current(out_dir, prefix, fingerprint):
    """True when the split's LMDBs exist, are complete and were built from ``fingerprint``."""
    return LmdbSplit(pathlib.Path(out_dir) / prefix).is_current(fingerprint)


def build_split(table, out_dir, order, fingerprint, workers=2, max_bad=0.01, size=128,
                chunk=32, progress=True):
    """Build the split's LMDBs from ``table`` in record order ``order`` (row indices).

    Returns a dict: ``written``, ``bad`` (list of (row, reason)), ``split`` (the
    :class:`LmdbSplit`), ``kinds``. Raises :class:`InputError` (nothing written) when the bad
    frames exceed ``max_bad``.
    """
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lmdb_io.remove_stale(out_dir, table.prefix)
    with_theta = table.theta is not None
    split = LmdbSplit(out_dir / table.prefix)
    kinds = KINDS if with_theta else KINDS[:2]
    n = len(table)
    order = np.asarray(order, dtype=np.int64)
    bad = [(int(r), table.bad[int(r)]) for r in order if int(r) in table.bad]
    todo = [int(r) for r in order if int(r) not in table.bad]
    label_dim = table.labels.shape[1]
    map_size = {"depth": n * (size * size * 4 + 8192) + (256 << 20),
                "joint": n * 2048 + (64 << 20), "theta": n * 2048 + (64 << 20)}
    joint_rows = datum.encode_rows(table.labels, (label_dim, 1, 1))
    theta_rows = datum.encode_rows(table.theta, (table.theta.shape[1], 1, 1)) if with_theta else None
    chunks = [todo[i:i + chunk] for i in range(0, len(todo), chunk)]
    init_args = (table.paths, np.asarray(table.center_uvd, np.float64), np.asarray(table.cube, np.float64),
                 np.asarray(table.com, np.float64)[:, 2], table.camera, table.decoder, size,
                 None if table.turn_deg is None else np.asarray(table.turn_deg, np.float64))
    written = []
    # the workers start before any LMDB is open here
    with worker_results(_process, _init_worker, init_args, chunks, workers) as results, \
            tqdm(total=len(order), desc=f"{table.prefix} LMDBs", unit="frame", disable=not progress,
                 smoothing=0.05) as bar:
        bar.update(len(bad))
        with split.writer(kinds, map_size) as out:
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
            _finish(table, split, out, bad, written, n, max_bad, fingerprint)
    return {"written": len(written), "bad": bad, "split": split, "kinds": kinds,
            "bad_log": split.bad_path if bad else None}


def _finish(table, split, out, bad, written, n, max_bad, fingerprint):
    """Fail (nothing renamed) past the bad-frame limit, else commit the LMDBs, meta and log."""
    bad_path = split.bad_path
    if len(bad) > max_bad * n or not written:
        lines = _bad_lines(table, bad)
        write_text(bad_path, lines)
        some = "" if len(bad) + len(written) == n else "at least "    # stopped at the limit
        raise InputError(f"{table.prefix}: {some}{len(bad)} of {n} frames unusable (limit "
                         f"{max_bad:.1%}); nothing written; see {bad_path} (first: "
                         f"{lines.splitlines()[0]})")
    rows = np.asarray(written, dtype=np.int64)
    with_theta = table.theta is not None

    def before_rename():
        split.meta_path.unlink(missing_ok=True)
        stale_theta = split.lmdb("theta")
        if not with_theta and stale_theta.is_dir():      # from an earlier build with true angles
            shutil.rmtree(stale_theta)

    out.commit(before_rename=before_rename)
    split.write_meta(com=np.asarray(table.com)[rows], cube=np.asarray(table.cube)[rows],
                     frame=np.asarray(table.frame)[rows],
                     theta=np.asarray(table.theta)[rows] if with_theta else None,
                     fingerprint=np.array(fingerprint), dataset=np.array(table.dataset),
                     bad_frames=np.array(sorted(int(table.frame[r]) for r, _ in bad), dtype=np.int64))
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
