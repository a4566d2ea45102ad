"""The community NYU evaluation format: one line per frame, J joints x (u, v, d) as text.

Used for ``nyu_test_groundtruth_label.txt`` and published prediction files. The 14 columns are
NYU joints 0,3,6,9,12,15,18,21,24,25,27,30,31,32; which hand-model keypoints they are is the
model's knowledge (``eval14`` of ``python_layers/models/nyu31.json``): :data:`NYU14_KEYPOINTS`.
"""
import numpy as np

from hand_model import HandModel
from plumbing import InputError, atomic_path, open_text

# keypoint id (of the 31-keypoint hand model) of each column of the 14-joint evaluation format
NYU14_KEYPOINTS = tuple(int(k) for k in HandModel.nyu().eval14_keypoints)
NYU14_NAMES = ("little tip", "little mid", "ring tip", "ring mid", "middle tip", "middle mid",
               "index tip", "index mid", "thumb tip", "thumb mid", "thumb root", "wrist left",
               "wrist right", "palm")


def load_uvd_file(path, num_joints=14, skip_bad_rows=False):
    """Read a label/prediction text file -> ``(N, num_joints, 3)`` float64 (u, v pixels; d mm).

    A row with the wrong number of values or a non-finite value is an :class:`InputError` naming
    the file and line, unless ``skip_bad_rows``; then it is left out and its 1-based line number
    is returned in the second value: ``(array, bad_lines)``.
    """
    width = 3 * num_joints
    rows, bad = [], []
    with open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            parts = line.split()
            problem = None
            if len(parts) != width:
                problem = f"{len(parts)} values, expected {width} ({num_joints} joints x u, v, d)"
            else:
                try:
                    vals = np.array(parts, dtype=np.float64)
                except ValueError:
                    problem = "a value that is not a number"
                else:
                    if not np.all(np.isfinite(vals)):
                        problem = "a NaN or infinite value"
            if problem:
                if not skip_bad_rows:
                    raise InputError(f"{path}: line {lineno} has {problem}")
                bad.append(lineno)
                continue
            rows.append(vals)
    if not rows:
        raise InputError(f"{path}: no rows of {width} values")
    return np.stack(rows).reshape(-1, num_joints, 3), bad


def write_uvd_file(path, uvd):
    """``(N, J, 3)`` u, v (pixels), d (mm) -> the community text format (3 decimals), atomically."""
    uvd = np.asarray(uvd, np.float64)
    with atomic_path(path) as tmp:
        np.savetxt(tmp, uvd.reshape(len(uvd), -1), fmt="%.3f", delimiter=" ")
