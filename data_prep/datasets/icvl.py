"""The ICVL hand dataset: 16-bit depth PNGs (mm, 320x240) and text labels of 16 joints (u, v, d).

Layout (as distributed)::

    <root>/Training/labels.txt                 lines: relative/path.png u0 v0 d0 ... u15 v15 d15
    <root>/Training/Depth/<relative/path.png>
    <root>/Testing/test_seq_1.txt, test_seq_2.txt
    <root>/Testing/Depth/<relative/path.png>

Crop centre: joint 0 (palm) as labelled; cube 250 mm; labels: the 16 joints' xyz minus the centre's
xyz, divided by cube/2, clipped to [-1, 1] (48 values). Camera: ``deepmodel.data.datasets.camera.ICVL_CAMERA``.
A synthetic set (``data_prep/synthetic/icvl.py``) also holds ``Training/theta.npy`` and
``Testing/theta.npy``, the true angles, which the build keeps.
"""
import pathlib

import cv2
import numpy as np

from deepmodel.data.datasets.camera import ICVL_CAMERA
from deepmodel.data.datasets.frames import (BadFrame, FrameTable, label_problems, neutralise,
                                            quiet_imdecode, read_bytes, read_theta)
from deepmodel.data.records.split import to_normalised
from deepmodel.plumbing import InputError, open_text

NUM_JOINTS = 16
CENTER_JOINT = 0
CUBE_MM = 250.0
TEST_FRAMES = 1596             # the two test sequences as distributed: 702 + 894 frames
TEST_SEQUENCE_2_FIRST = 702    # 0-based first frame of test sequence 2
IMAGE_SHAPE = (240, 320)
SPLITS = {"train": ("Training", ("labels.txt",)),
          "test": ("Testing", ("test_seq_1.txt", "test_seq_2.txt"))}


def read_depth(path):
    """One ICVL depth PNG -> ``(240, 320)`` uint16 mm. Raises ``BadFrame`` naming the problem."""
    buf = read_bytes(path)
    if not buf.endswith(b"IEND\xaeB`\x82"):
        raise BadFrame("truncated or not a PNG (no IEND chunk at the end)")
    img = quiet_imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_ANYDEPTH)
    if img is None:
        raise BadFrame("PNG data cannot be decoded")
    if img.ndim != 2 or img.shape != IMAGE_SHAPE or img.dtype != np.uint16:
        raise BadFrame(f"expected a 320x240 16-bit single-channel depth PNG, got {img.dtype} "
                       f"shape {img.shape}")
    return img


def read_labels(path):
    """A label file -> (list of relative paths, ``(N, 16, 3)`` uvd float64). InputError on bad lines."""
    names, rows = [], []
    with open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 1 + 3 * NUM_JOINTS:
                raise InputError(f"{path}: line {lineno} has {len(parts)} fields, expected "
                                 f"{1 + 3 * NUM_JOINTS} (image path and {NUM_JOINTS} joints x u, v, d)")
            try:
                vals = np.array(parts[1:], dtype=np.float64)
            except ValueError:
                raise InputError(f"{path}: line {lineno} has a value that is not a number") from None
            names.append(parts[0])
            rows.append(vals)
    if not rows:
        raise InputError(f"{path}: no labelled frames")
    return names, np.stack(rows).reshape(-1, NUM_JOINTS, 3)


def split_table(root, split, cube=CUBE_MM):
    """Raw files -> frames: ``(FrameTable, list of label files read)`` for ICVL ``split`` ("train"
    or "test"); labels ``(N, 48)`` normalised, cube ``cube`` mm, crop centre joint 0."""
    root = pathlib.Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: no such folder (the ICVL root holds Training/ and Testing/)")
    folder, files = SPLITS[split]
    sources = [root / folder / f for f in files]
    for s in sources:
        if not s.is_file():
            raise InputError(f"{s}: missing (the ICVL root holds Training/labels.txt and "
                             f"Testing/test_seq_1.txt, test_seq_2.txt)")
    names, uvd = [], []
    for s in sources:
        n, a = read_labels(s)
        names += n
        uvd.append(a)
    uvd = np.concatenate(uvd)
    n = len(uvd)
    xyz = ICVL_CAMERA.uvd_to_xyz(uvd)
    bad = label_problems(xyz, uvd[:, CENTER_JOINT], CENTER_JOINT)
    h, w = IMAGE_SHAPE
    palm = uvd[:, CENTER_JOINT]
    with np.errstate(invalid="ignore"):
        off = ~((palm[:, 0] >= 0) & (palm[:, 0] < w) & (palm[:, 1] >= 0) & (palm[:, 1] < h))
    for r in np.flatnonzero(off):
        bad.setdefault(int(r), f"label: the palm (joint {CENTER_JOINT}) at u {palm[r, 0]:g}, "
                               f"v {palm[r, 1]:g} is off the {w}x{h} image")
    xyz, center = neutralise(bad, xyz, uvd[:, CENTER_JOINT])
    com = xyz[:, CENTER_JOINT].copy()
    cubes = np.full(n, float(cube))
    labels = to_normalised(xyz, com, cubes).reshape(n, -1)
    paths = [str(root / folder / "Depth" / name) for name in names]
    table = FrameTable(dataset="icvl", split=split, paths=paths, center_uvd=center, com=com,
                       cube=cubes, labels=labels, frame=np.arange(n), camera=ICVL_CAMERA,
                       decoder="png16", theta=read_theta(root / folder / "theta.npy", n, "label line"),
                       bad=bad, keypoints_mm=xyz)
    return table, sources
