"""The five real NYU test crops of the repository scored against their labels, shapes only.

The crops in ``data/reference/nyu/test_crops/`` (128x128, 8-bit, normalised depth = gray / 255 x 2
- 1, named by 0-based NYU test-frame index) are the only real depth the project has. Their crop
centres are not known, so the metric compares shapes, not positions: the net's 14 NYU evaluation
joints in mm (half the crop cube per unit: 150 mm, 0.87 x 150 mm for the second subject) and the
labels' (u, v, d through the NYU camera) are both centred on their mean over the 14 joints; a
frame's error is the mean Euclidean distance of its joints (mm). The baseline predicts every
frame as the average centred pose of all 8252 NYU test labels. Nothing is tuned on these crops.
"""
import pathlib

import numpy as np

from deepmodel.data.datasets import nyu
from deepmodel.data.datasets.camera import NYU_CAMERA
from deepmodel.data.datasets.labels import NYU14_KEYPOINTS, load_uvd_file
from deepmodel.data.datasets.reference import NYU_LABELS, NYU_TEST_CROPS
from deepmodel.plumbing import InputError


def half_cube_mm(frames):
    """``(N,)`` 0-based test-frame indices -> ``(N,)`` mm per normalised unit (half the crop
    cube: the released pipeline's cube for the frame's subject)."""
    frames = np.asarray(frames)
    cube = np.where(frames >= nyu.SUBJECT2_FIRST_FRAME, nyu.CUBE_MM * nyu.SUBJECT2_SCALE,
                    nyu.CUBE_MM)
    return cube / 2.0


def centred(xyz):
    """``(N, J, 3)`` mm -> the same centred on each frame's mean joint."""
    xyz = np.asarray(xyz, dtype=np.float64)
    return xyz - xyz.mean(axis=1, keepdims=True)


def centred_error(pred_mm, true_mm):
    """Per-frame mean joint distance ``(N,)`` mm after centring both on their mean joint."""
    return np.linalg.norm(centred(pred_mm) - centred(true_mm), axis=2).mean(axis=1)


def real_crops(folder=NYU_TEST_CROPS, labels=NYU_LABELS):
    """The real crops and their labels: ``dict(frames (N,), crops (N, 1, 128, 128) float32 in
    [-1, 1], true_mm (N, 14, 3) xyz, mean_pose_mm (14, 3) centred average of all labels)``."""
    import cv2

    paths = sorted(pathlib.Path(folder).glob("*.png"), key=lambda p: p.stem)
    paths = [p for p in paths if p.stem.isdigit()]
    if not paths:
        raise InputError(f"{folder}: no crops named by their test-frame index (e.g. 772.png)")
    paths.sort(key=lambda p: int(p.stem))
    uvd, _ = load_uvd_file(labels, len(NYU14_KEYPOINTS))
    all_xyz = NYU_CAMERA.uvd_to_xyz(uvd)
    frames = np.array([int(p.stem) for p in paths])
    if frames.max() >= len(all_xyz):
        raise InputError(f"{folder}: crop {frames.max()}.png, but {labels} has {len(all_xyz)} "
                         "frames")
    crops = []
    for p in paths:
        gray = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        if gray is None or gray.shape != (128, 128):
            raise InputError(f"{p}: not a 128x128 gray crop")
        crops.append(gray.astype(np.float32) / 255.0 * 2.0 - 1.0)
    return {"frames": frames, "crops": np.stack(crops)[:, None],
            "true_mm": all_xyz[frames], "mean_pose_mm": centred(all_xyz).mean(axis=0)}


def score(pred93, data):
    """Errors of ``(N, 93)`` normalised predictions on the real crops, and of the mean pose.

    Returns ``dict(frames, net_mm (N,), mean_pose_mm (N,))``.
    """
    pred14 = np.asarray(pred93).reshape(len(pred93), 31, 3)[:, list(NYU14_KEYPOINTS)]
    pred_mm = pred14 * half_cube_mm(data["frames"])[:, None, None]
    baseline = np.broadcast_to(data["mean_pose_mm"], data["true_mm"].shape)
    return {"frames": data["frames"].tolist(),
            "net_mm": centred_error(pred_mm, data["true_mm"]),
            "mean_pose_mm": centred_error(baseline, data["true_mm"])}
