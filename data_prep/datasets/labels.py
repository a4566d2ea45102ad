"""The community NYU evaluation format: one line per frame, J joints x (u, v, d) as text.

Used for ``nyu_test_groundtruth_label.txt`` and published prediction files. The 14 columns are
NYU joints 0,3,6,9,12,15,18,21,24,25,27,30,31,32; which hand-model keypoints they are is the
model's knowledge (``eval14`` of ``python_layers/model/nyu31.json``): :data:`NYU14_KEYPOINTS`.
"""
import numpy as np

from deepmodel.model.hand_model import HandModel
from deepmodel.plumbing import MAX_PLAUSIBLE, InputError, atomic_path, open_text

# keypoint id (of the 31-keypoint hand model) of each column of the 14-joint evaluation format
NYU14_KEYPOINTS = tuple(int(k) for k in HandModel.nyu().eval14_keypoints)
NYU14_NAMES = ("little tip", "little mid", "ring tip", "ring mid", "middle tip", "middle mid",
               "index tip", "index mid", "thumb tip", "thumb mid", "thumb root", "wrist left",
               "wrist right", "palm")


def load_uvd_file(path, num_joints=14, skip_bad_rows=False):
    """Read a label/prediction text file -> ``(N, num_joints, 3)`` float64 (u, v pixels; d mm).

    A row with the wrong number of values, a non-finite value, a value no camera produces (beyond
    :data:`plumbing.MAX_PLAUSIBLE` pixels or mm) or a depth that is not positive is an
    :class:`InputError` naming the file and line, unless ``skip_bad_rows``; then it is left out
    and its 1-based line number is returned in the second value: ``(array, bad_lines)``.
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
                    elif np.max(np.abs(vals)) > MAX_PLAUSIBLE:
                        problem = (f"a value of magnitude {np.max(np.abs(vals)):g}, beyond what a "
                                   f"camera produces ({MAX_PLAUSIBLE:g} pixels or mm)")
                    elif np.min(vals[2::3]) <= 0:
                        problem = f"a depth of {np.min(vals[2::3]):g} mm (depths are positive)"
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


# bones of the 14-joint NYU format (column pairs) and their median length in mm over the NYU test
# labels (data/reference/nyu): finger tip-middle, thumb middle-root, wrist width, palm-wrist
NYU14_BONES = ((0, 1, 34.7), (2, 3, 42.8), (4, 5, 47.3), (6, 7, 43.9), (8, 9, 19.5), (9, 10, 38.6),
               (11, 12, 29.3), (13, 11, 67.3), (13, 12, 67.3))


def nyu14_order_warning(xyz, source):
    """A warning (str) when the 14 NYU joints ``(N, 14, 3)`` mm do not look like a hand in the
    format's joint order, else None: the median length of a bone, relative to that of the NYU
    labels, differs by more than a factor 1.6 from the median of all bones' ratios (a hand of
    another size scales them all alike; joints in another order do not)."""
    xyz = np.asarray(xyz, np.float64)
    if xyz.ndim != 3 or xyz.shape[1:] != (14, 3) or not len(xyz):
        return None
    ratios = np.array([np.median(np.linalg.norm(xyz[:, a] - xyz[:, b], axis=1)) / ref
                       for a, b, ref in NYU14_BONES])
    scale = float(np.median(ratios))
    if not np.isfinite(scale) or scale <= 0:
        return f"{source}: the joints do not form a hand (bone lengths zero)"
    off = np.abs(np.log(ratios / scale))
    worst = int(np.argmax(off))
    if off[worst] > np.log(1.6):
        a, b, ref = NYU14_BONES[worst]
        return (f"{source}: joints may be in another order: the median length between columns "
                f"{a} and {b} ({NYU14_NAMES[a]}, {NYU14_NAMES[b]}) is {ratios[worst] * ref:.0f} mm, "
                f"a hand of this size has about {scale * ref:.0f} mm")
    return None
