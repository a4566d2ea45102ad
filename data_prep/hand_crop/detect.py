"""A learned hand detector for scenes where the hand is not the nearest thing (a body beside it, a
desk or an object in front of it), and the tracker of a sequence that uses the previous frame.

**Detection** (:class:`HandDetector`): the frame is resampled, nearest neighbour, to a fixed focal
length (:data:`FOCAL_PX`, NYU's 588 px / 8: 80x60 for a 640x480 NYU frame, about the same number
of millimetres per pixel for any camera), its depth normalised (``(d - 800) / 400`` within the
working range, missing and out-of-range readings far, +1.75), and a small fully-convolutional Caffe
net (``prototxt/deploy_detect.prototxt``, weights ``models/detect/detect_nyu.caffemodel`` trained by
``tools/train_detect.py`` on the scenes of :mod:`deepmodel.data.synthetic.scenes`) gives a heat map,
a logit per 4x4 input pixels that the palm centre lies there. The nearest-surface localiser's
centre (:mod:`deepmodel.data.hand_crop.locate`) is the first guess and stands when the heat map
near it is at least :data:`AGREE` (0.9) of the peak's; otherwise the peak decides. The peak (refined to a sub-cell
position by the mean of its 3x3 neighbourhood's probabilities) is the hand's u, v; its depth is the
median of the readings within 60 mm behind the nearest one in a 5x5 input-pixel window around
it, moved back by the localiser's surface-to-palm offset. The learned refinement
(:mod:`deepmodel.data.hand_crop.refine`) then moves the centre to the palm centre, whichever
decided. When the heat map's peak is below :data:`MIN_SCORE` (probability) the first guess stands.

**Finding a hand in frame after frame** (:class:`HandFinder`): the localiser and the detector
(without its weights or with ``detector=None``, the localiser alone) on every frame; with ``track``,
a frame after a found one starts from the previous centre: the refinement net moves it to the
palm centre, and it is kept ("tracked") when it moved less than :data:`TRACK_MAX_MOVE_MM` and the
crop still holds a surface there; otherwise, and every ``redetect_every`` frames, the whole frame is
searched again ("detected").

Units: u, v pixels, d and xyz mm (camera frame, x right, y up).
"""
import os
from typing import NamedTuple

import cv2
import numpy as np

from deepmodel.data.hand_crop.locate import (DEPTH_OFFSET_MM, FAR_MM, NEAR_MM, HandNotFound,
                                             learned_refiner, locate)
from deepmodel.data.hand_crop.refine import shipped_net
from deepmodel.runtime.nets import onnx_path, open_net
from deepmodel.plumbing import PROJECT, InputError

DEPLOY = PROJECT / "prototxt" / "deploy_detect.prototxt"
WEIGHTS = PROJECT / "models" / "detect" / "detect_nyu.caffemodel"
REFINE_WEIGHTS = PROJECT / "models" / "detect" / "detect_nyu_refine.caffemodel"   # scene refiner
FOCAL_PX = 588.03 / 8          # the detector's input: this focal length (NYU's camera at 1/8)
DEPTH_MID_MM, DEPTH_SCALE_MM, FAR_VALUE = 800.0, 400.0, 1.75
MIN_SCORE = 0.05               # below this peak probability the nearest surface decides
AGREE = 0.9                    # the first guess stands where the heat is this share of the peak
SIGMA_CELLS = 0.75             # the training target: a Gaussian of this width (heat cells)
HEAT_STRIDE = 4                # input pixels per heat cell
WINDOW = 2                     # the depth is taken within +-2 input pixels of the peak
SURFACE_MM = 60.0              # ... among the readings this far behind the nearest one
TRACK_MAX_MOVE_MM = 100.0
TRACK_MIN_SURFACE = 0.02       # share of the crop's pixels within the cube (else lost)


def input_size(camera, shape):
    """The detector's input size ``(rows, cols)`` for frames of ``shape`` (rows, cols) from ``camera``."""
    H, W = shape[:2]
    return (max(8, int(round(H * FOCAL_PX / camera.fy))), max(8, int(round(W * FOCAL_PX / camera.fx))))


def detector_input(depth_mm, camera, size=None):
    """``(H, W)`` depth in mm -> ``(rows, cols)`` float32, the detector's normalised input."""
    rows, cols = size or input_size(camera, np.shape(depth_mm))
    depth = np.asarray(depth_mm)
    if depth.dtype not in (np.uint16, np.float32):       # what cv2.resize takes as it is
        depth = depth.astype(np.float32)
    small = cv2.resize(depth, (cols, rows), interpolation=cv2.INTER_NEAREST).astype(np.float32)
    ok = (small >= NEAR_MM) & (small <= FAR_MM)          # NaN compares False
    out = np.full(small.shape, FAR_VALUE, np.float32)
    out[ok] = (small[ok] - DEPTH_MID_MM) / DEPTH_SCALE_MM
    return out


def heat_size(size):
    """The heat map's ``(rows, cols)`` for an input of ``size``: two stride-2 convolutions of
    kernels 5 and 3 (padding 2 and 1)."""
    return tuple((((n + 4 - 5) // 2 + 1) + 2 - 3) // 2 + 1 for n in size)


def pixel_to_cell(u, v, size, shape):
    """Frame pixel ``(u, v)`` of a frame of ``shape`` -> heat-map cell coordinates ``(row, col)``
    (continuous) for the detector's input ``size`` (rows, cols): input pixel x covers frame
    pixels ``[x W / cols, (x + 1) W / cols)``, heat cell j is centred on input pixel
    ``4 j + 1.5`` (:data:`HEAT_STRIDE` 4)."""
    rows, cols = size
    H, W = shape[:2]
    x = (u + 0.5) * cols / W - 0.5
    y = (v + 0.5) * rows / H - 0.5
    half = (HEAT_STRIDE - 1) / 2.0
    return (y - half) / HEAT_STRIDE, (x - half) / HEAT_STRIDE


def cell_to_input(ci, cj):
    """Heat-map cell ``(row, col)`` -> the input pixel ``(row, col)`` it is centred on."""
    half = (HEAT_STRIDE - 1) / 2.0
    return HEAT_STRIDE * ci + half, HEAT_STRIDE * cj + half


def cell_to_pixel(ci, cj, size, shape):
    """The inverse of :func:`pixel_to_cell`: cell ``(row, col)`` -> frame pixel ``(u, v)``."""
    rows, cols = size
    H, W = shape[:2]
    y, x = cell_to_input(ci, cj)
    return (x + 0.5) * W / cols - 0.5, (y + 0.5) * H / rows - 0.5


def heat_target(uv, camera, shape, size=None, sigma=SIGMA_CELLS):
    """The training target for a palm centre at pixel ``uv`` of a frame of ``shape``: the heat
    map's size (:func:`heat_size`) float32, a Gaussian of ``sigma`` cells around it, peak 1 (less
    off the grid)."""
    size = size or input_size(camera, shape)
    ci, cj = pixel_to_cell(uv[0], uv[1], size, shape)
    gy, gx = np.mgrid[0:heat_size(size)[0], 0:heat_size(size)[1]]
    return np.exp(-((gx - cj) ** 2 + (gy - ci) ** 2) / (2 * sigma * sigma)).astype(np.float32)


def _peak(prob):
    """The heat map's peak: ``(row, col)`` in cells (sub-cell, by the 3x3 mean) and its value."""
    i, j = np.unravel_index(int(np.argmax(prob)), prob.shape)
    i0, i1, j0, j1 = max(i - 1, 0), min(i + 2, prob.shape[0]), max(j - 1, 0), min(j + 2, prob.shape[1])
    w = prob[i0:i1, j0:j1]
    gy, gx = np.mgrid[i0:i1, j0:j1]
    return (float((w * gy).sum() / w.sum()), float((w * gx).sum() / w.sum())), float(prob[i, j])


class HeatMap(NamedTuple):
    """A frame's heat map: ``prob`` the probabilities (:func:`heat_size`), ``x`` the normalised
    input, ``shape`` the frame's, ``peak`` ``(row, col)`` in cells and ``score`` its probability."""
    prob: np.ndarray
    x: np.ndarray
    shape: tuple
    peak: tuple
    score: float


class HandDetector:
    """The learned detector: ``detector(depth_mm, camera, first_guess=None) -> (center_uvd,
    how)``, a crop centre before the refinement (see :meth:`__call__`)."""

    def __init__(self, weights=WEIGHTS, model=DEPLOY, refine_weights=REFINE_WEIGHTS,
                 backend="caffe"):
        from deepmodel.data.hand_crop.refine import CentreRefiner

        files = (model, weights, refine_weights) if backend == "caffe" else \
            (onnx_path(weights), onnx_path(refine_weights))
        for path in files:
            if not os.path.isfile(str(path)):
                raise InputError(f"{path}: no such file (the hand detector: `make detect-net`"
                                 f"{'' if backend == 'caffe' else ', then `make onnx`'})")
        self.net = open_net(backend, model, weights)
        self.refiner = CentreRefiner(weights=refine_weights, backend=backend)
        self.last = None                # the last frame's HeatMap

    def heat(self, depth_mm, camera):
        """Peak probability map (:func:`heat_size`) and the normalised input ``(rows, cols)``."""
        x = detector_input(depth_mm, camera)
        logits = self.net.run(x[None, None], ["heat"])["heat"][0, 0]
        return 1.0 / (1.0 + np.exp(-logits.astype(np.float64))), x

    def __call__(self, depth_mm, camera, first_guess=None):
        """-> ``(center_uvd or None, how)``. With ``first_guess`` (a centre uvd, e.g. the
        nearest-surface localiser's), it is kept (``how`` "nearest") when it :meth:`agrees` with
        the heat map; otherwise the peak's centre (:meth:`peak_centre`, ``how`` "detected");
        None when the peak is below :data:`MIN_SCORE` (then the first guess, if any, stands) or
        has no reading near it. The heat map stays for :meth:`agrees` and :meth:`peak_centre`."""
        prob, x = self.heat(depth_mm, camera)
        self.last = HeatMap(prob, x, np.shape(depth_mm)[:2], *_peak(prob))
        fallback = (None, None) if first_guess is None else (first_guess, "nearest")
        if not self.confident():
            return fallback
        if first_guess is not None and self.agrees(first_guess):
            return first_guess, "nearest"
        center = self.peak_centre()
        return fallback if center is None else (center, "detected")

    def confident(self):
        """Whether the last heat map's peak reaches :data:`MIN_SCORE`."""
        return self.last is not None and self.last.score >= MIN_SCORE

    def agrees(self, center_uvd):
        """Whether the last heat map (of :meth:`__call__`) is at least :data:`AGREE` of its peak
        within one cell of ``center_uvd``."""
        prob, x, shape, _, score = self.last
        gi, gj = pixel_to_cell(center_uvd[0], center_uvd[1], x.shape, shape)
        i, j = int(round(gi)), int(round(gj))
        near = prob[max(i - 1, 0):max(i + 2, 0), max(j - 1, 0):max(j + 2, 0)]
        return bool(near.size and near.max() >= AGREE * score)

    def peak_centre(self):
        """The last heat map's peak as a crop centre ``(3,)`` uvd (before the refinement), or
        None when no reading lies near it."""
        prob, x, shape, (ci, cj), _ = self.last
        u, v = cell_to_pixel(ci, cj, x.shape, shape)
        r0, c0 = (int(round(c)) for c in cell_to_input(ci, cj))
        win = x[max(r0 - WINDOW, 0):r0 + WINDOW + 1, max(c0 - WINDOW, 0):c0 + WINDOW + 1]
        d = win[win < FAR_VALUE] * DEPTH_SCALE_MM + DEPTH_MID_MM
        if not len(d):
            return None
        d = d[d <= d.min() + SURFACE_MM]
        return np.array([u, v, float(np.median(d)) + DEPTH_OFFSET_MM])


def default_detector(backend="caffe"):
    """The shipped detector (one per process and backend), or None without its weights or the
    backend (pycaffe, onnxruntime), or with ``DEEPMODEL_NO_DETECT=1``."""
    return shipped_net("detector", "DEEPMODEL_NO_DETECT", (WEIGHTS, DEPLOY, REFINE_WEIGHTS),
                       HandDetector, backend)


class HandFinder:
    """The hand's crop centre in frame after frame: ``finder(depth_mm) -> (center_uvd, how)``,
    ``how`` one of ``"detected"`` (the learned detector), ``"nearest"`` (the nearest-surface
    localiser), ``"tracked"`` (from the previous frame's centre). Raises
    :class:`~deepmodel.data.hand_crop.locate.HandNotFound` when there is no hand.

    Args:
        camera: the frames' :class:`~deepmodel.data.datasets.camera.Camera`.
        cube_mm: the crop cube's edge (mm).
        detector: ``"learned"`` (default: :func:`default_detector`, None without its weights),
            None (the nearest-surface localiser alone) or a :class:`HandDetector` of other weights.
        refine: ``"learned"`` (the refinement net when present), None, or a callable.
        track: use the previous frame's centre (a sequence); ``redetect_every``: search the
            whole frame at least this often even while tracking (0: never).
        backend: the learned nets' backend, "caffe" or "onnx" (their ``.onnx`` files, ``make onnx``).
    """

    def __init__(self, camera, cube_mm, detector="learned", refine="learned", track=False,
                 redetect_every=30, backend="caffe"):
        self.camera, self.cube = camera, float(cube_mm)
        self.detector = default_detector(backend) if detector == "learned" else detector
        self.refine = learned_refiner(backend) if refine == "learned" else refine
        self.track, self.redetect_every = track, int(redetect_every)
        self.last, self.since = None, 0

    def reset(self):
        """Forget the previous frame (a new sequence)."""
        self.last, self.since = None, 0

    def _refined(self, depth, center, how="nearest"):
        refine = self.refine
        if how != "nearest" and self.detector is not None and refine is not None:
            refine = getattr(self.detector, "refiner", refine)     # the scene refiner
        return center if refine is None else np.asarray(
            refine(depth, self.camera, center, self.cube), np.float64)

    def _tracked(self, depth):
        """The previous centre refined on this frame, or None when the hand looks lost."""
        if self.refine is None:
            return None
        center = self._refined(depth, self.last, "tracked")
        moved = np.linalg.norm(self.camera.uvd_to_xyz(center) - self.camera.uvd_to_xyz(self.last))
        if not moved < TRACK_MAX_MOVE_MM:
            return None
        from deepmodel.data.hand_crop.crop import crop_depth

        crop = crop_depth(depth, center, self.cube, self.camera)
        if np.mean(np.abs(crop) < 1.0) < TRACK_MIN_SURFACE:
            return None
        return center

    def __call__(self, depth):
        try:
            return self._find(depth)
        except ValueError:          # HandNotFound, a frame the localiser cannot take: lost
            self.reset()
            raise

    def _find(self, depth):
        center, how = None, None
        if self.track and self.last is not None and not (
                self.redetect_every and self.since >= self.redetect_every):
            center = self._tracked(depth)
            how = "tracked" if center is not None else None
        if center is None:
            self.since = 1            # frames since the whole frame was searched, this one included
            not_found = None
            try:
                guess = locate(depth, self.camera, self.cube, refine=None).center_uvd
            except HandNotFound as err:
                if self.detector is None:
                    raise
                guess, not_found = None, err
            how = "nearest"
            if self.detector is not None:
                guess, how = self.detector(depth, self.camera, guess)
                if guess is None:
                    raise not_found or HandNotFound("no hand: nothing in the working range the "
                                                    "detector takes for one")
            center = self._refined(depth, guess, how)
            if how == "nearest" and self.detector is not None and self.refine is not None \
                    and self.detector.confident() and not self.detector.agrees(center):
                # the refinement left the hand the detector sees (a body beside it): start
                # again from the detector's peak, with its scene refiner
                peak = self.detector.peak_centre()
                if peak is not None:
                    center, how = self._refined(depth, peak, "detected"), "detected"
        else:
            self.since += 1
        if not (np.all(np.isfinite(center)) and center[2] > 0):
            raise HandNotFound(f"the hand's centre came out as {np.round(center, 1).tolist()}")
        self.last = np.array(center, np.float64)
        return self.last.copy(), how
