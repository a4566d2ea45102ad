"""What a dataset reader hands to the build: a table of frames, and how a frame can be unusable.

The readers (``deepmodel.data.datasets.nyu``, ``deepmodel.data.datasets.icvl``) import this module; the build
(``deepmodel.data.records.build``) imports the readers and this module. Nothing here imports a reader.
"""
import dataclasses
import pathlib

import cv2
import numpy as np

from deepmodel.plumbing import InputError


class BadFrame(Exception):
    """A frame that cannot be used (unreadable image, bad label); the message says why."""


def read_bytes(path):
    """The bytes of an image file, or :class:`BadFrame` saying why it cannot be read."""
    try:
        return pathlib.Path(path).read_bytes()
    except OSError as err:
        raise BadFrame(f"cannot read ({err.strerror})") from None


def quiet_imdecode(arr, flags):
    """``cv2.imdecode`` without OpenCV's log lines for broken data (the caller reports it); None if bad."""
    log = cv2.utils.logging
    level = log.getLogLevel()
    log.setLogLevel(log.LOG_LEVEL_SILENT)
    try:
        return cv2.imdecode(arr, flags)
    except cv2.error:
        return None
    finally:
        log.setLogLevel(level)


@dataclasses.dataclass
class FrameTable:
    """Everything needed to build a split, one row per frame (N frames).

    paths: N image files; center_uvd ``(N, 3)`` crop centres (pixels, mm); com ``(N, 3)`` mm
    (its z maps to 0); cube ``(N,)`` mm; labels ``(N, K)`` normalised targets; frame ``(N,)``
    0-based frame index; theta ``(N, 26)`` or None; decoder: ``"nyu"`` (blue/green PNG) or
    ``"png16"`` (16-bit PNG in mm); bad: ``{row: reason}`` rows already known to be unusable;
    keypoints_mm ``(N, K, 3)`` the labels' keypoints in mm before normalising and clipping, or
    None (then ``to_mm(labels, com, cube)``): a build that crops elsewhere renormalises them;
    turn_deg ``(N,)`` degrees or None: rows with a finite value are cropped turned by it
    (``deepmodel.data.hand_crop.crop.crop_depth_turned``, the augmentation of ``deepmodel.data.records.augment``).
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
    keypoints_mm: np.ndarray = None
    turn_deg: np.ndarray = None

    def __len__(self):
        return len(self.paths)

    @property
    def prefix(self):
        return f"{self.dataset}_{self.split}"


def label_problems(xyz, center_uvd, center_joint):
    """Frames whose labels cannot be cropped: ``{row: reason}``.

    xyz ``(N, J, 3)`` mm (the joints used); center_uvd ``(N, 3)`` (pixels, mm) the crop centres,
    taken from joint ``center_joint`` (named in the reason). A non-finite coordinate, or a centre
    depth that is not > 0 mm, makes a frame bad.
    """
    xyz, center_uvd = np.asarray(xyz), np.asarray(center_uvd)
    finite = np.isfinite(xyz).all(axis=(1, 2)) & np.isfinite(center_uvd).all(axis=1)
    bad = {int(r): "label: a joint has a NaN or infinite coordinate" for r in np.flatnonzero(~finite)}
    for r in np.flatnonzero(finite & ~(center_uvd[:, 2] > 0)):
        bad[int(r)] = (f"label: crop centre (joint {center_joint}) depth is {center_uvd[r, 2]:g} mm, "
                       "not > 0")
    return bad


def neutralise(bad, xyz, center_uvd):
    """Copies of ``xyz`` ``(N, J, 3)`` and ``center_uvd`` ``(N, 3)`` whose bad rows are harmless
    placeholders (joints at 0 mm, centre ``(0, 0, 1)``): the build skips those rows, and the label
    arithmetic stays finite."""
    ok = np.ones(len(xyz), bool)
    ok[list(bad)] = False
    xyz = np.where(ok[:, None, None], xyz, 0.0)
    center_uvd = np.array(center_uvd, np.float64)
    center_uvd[~ok] = (0.0, 0.0, 1.0)
    return xyz, center_uvd


def png_files(paths, suffixes=(".png",)):
    """Input images: a folder's files ending in one of ``suffixes`` (``*.png`` by default; sorted
    by name, numerically when the stems are numbers) or the files given, in order. An InputError
    names a missing path or a folder without such files."""
    files = []
    for p in paths:
        p = pathlib.Path(p)
        if p.is_dir():
            found = sorted((f for f in p.iterdir() if f.suffix.lower() in suffixes and f.is_file()),
                           key=lambda f: (0, int(f.stem), "") if f.stem.isdigit() else (1, 0, f.stem))
            if not found:
                raise InputError(f"{p}: folder has no {' or '.join(suffixes)} files")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise InputError(f"{p}: no such file or folder")
    return files


def frame_files(paths):
    """Raw depth frames: a folder's ``*.png`` and ``*.npy`` files, or the files given."""
    return png_files(paths, (".png", ".npy"))


def read_theta(path, n, rows):
    """A synthetic set's true angles ``theta.npy`` -> ``(n, 26)``, or None when there is none;
    ``rows`` says what a row stands for in the error message (e.g. "frame of joint_data.mat")."""
    path = pathlib.Path(path)
    if not path.is_file():
        return None
    try:
        theta = np.load(path)
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: not a readable .npy file ({err})") from None
    if theta.shape != (n, 26) or not np.all(np.isfinite(theta)):
        raise InputError(f"{path}: expected ({n}, 26) finite angles (one row per {rows}), got "
                         f"shape {theta.shape}")
    return theta
