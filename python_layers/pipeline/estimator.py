"""Hand poses from your own code, one import away::

    from deepmodel.pipeline.estimator import HandPoseEstimator

    estimator = HandPoseEstimator(camera="476,476,314,243", depth_unit=0.125)   # your camera
    pose = estimator.estimate(depth)          # (H, W) raw frame in the camera's units
    if pose.found:
        print(pose.keypoints_mm[0], pose.keypoints_uvd[0], pose.how)

:class:`HandPoseEstimator` wraps the raw-frame pipeline (:class:`deepmodel.pipeline.frames.FramePipeline`:
the hand found without labels, the 128x128 crop, the net and its hand model layer, optionally the
pose fitted to the depth) with the shipped weights by default. :meth:`~HandPoseEstimator.estimate`
takes one frame, :meth:`~HandPoseEstimator.track` a sequence (each frame starting from the
previous one's hand), :meth:`~HandPoseEstimator.estimate_crop` a crop you made yourself.
Units: keypoints ``(31, 3)`` in mm (camera frame: x right, y up, z depth) and in pixels (u, v)
with depth d in mm; angles in radians.
"""
from dataclasses import dataclass, field

import numpy as np

from deepmodel.data.datasets.camera import Camera, parse_camera
from deepmodel.nets.net_io import default_model
from deepmodel.nets.weights import SHIPPED_REAL
from deepmodel.pipeline.frames import DATASETS, FramePipeline, FramePose
from deepmodel.plumbing import InputError
from deepmodel.runtime.nets import check_backend, onnx_path


@dataclass
class HandPose:
    """One frame's hand. ``found``: False when no hand was found (then the arrays are NaN and
    ``reason`` says why). ``keypoints_mm`` ``(31, 3)`` mm, camera frame; ``keypoints_uvd``
    ``(31, 3)`` u, v pixels and d mm; ``theta`` ``(26,)`` the net's angles (radians; for a net
    that turns its crops hand-up, in the turned crop, ``turn_rad`` its angle), before any fit;
    ``center_uvd`` ``(3,)`` the crop centre; ``cube_mm`` its edge; ``how``: "nearest",
    "detected", "tracked" or "given" (a crop of your own)."""
    found: bool
    keypoints_mm: np.ndarray
    keypoints_uvd: np.ndarray
    theta: np.ndarray
    center_uvd: np.ndarray
    cube_mm: float
    how: str = ""
    turn_rad: float = 0.0
    reason: str = field(default="", repr=False)


def _nan(*shape):
    return np.full(shape, np.nan)


class HandPoseEstimator:
    """The pose net and the hand finder for one camera.

    Args:
        weights: a ``.caffemodel`` (default: the shipped real-depth net, ``models/real/``); with
            ``backend="onnx"`` a ``.onnx`` file (or the ``.caffemodel`` whose ``.onnx`` lies
            beside it; default ``models/real/deepmodel.onnx``).
        model: its deploy prototxt (default: the one the weights belong to; Caffe only).
        camera: a :class:`~deepmodel.data.datasets.camera.Camera`, or ``--camera``'s text: a
            dataset's name (``nyu``, ``icvl``, ``msra``), ``"FX,FY,CX,CY"``, a JSON file.
        depth_unit: mm per raw depth unit of the frames you pass (default: the camera's, 1).
        cube_mm: the crop cube's edge (default: 300 mm, ICVL's camera 250 mm).
        fit: fit the net's pose to each crop's depth (slower, better on real depth).
        detector: use the learned hand detector when something else is nearer than the hand.
        backend: "caffe" (pycaffe and the project's Python layers) or "onnx" (ONNX Runtime on
            the exported files, ``make onnx``: neither Caffe nor its layers are imported).
    Raises :class:`deepmodel.plumbing.InputError` (one line) for a bad option or file.
    """

    def __init__(self, weights=None, model=None, camera="nyu", depth_unit=None, cube_mm=None,
                 fit=False, detector=True, backend="caffe"):
        check_backend(backend)
        weights = str(weights or (SHIPPED_REAL if backend == "caffe" else onnx_path(SHIPPED_REAL)))
        if backend == "caffe":
            model = str(model or default_model(weights))
        if isinstance(camera, Camera):
            cam = camera if depth_unit is None else parse_camera(
                f"{camera.fx},{camera.fy},{camera.cx},{camera.cy}", depth_unit)
        else:
            cam = parse_camera(camera, depth_unit)
        if cube_mm is None:
            cube_mm = DATASETS["icvl"][1] if cam == DATASETS["icvl"][0] else DATASETS["nyu"][1]
        if not (np.isfinite(cube_mm) and 50.0 <= float(cube_mm) <= 1000.0):
            raise InputError(f"cube_mm {cube_mm}: must be 50-1000 mm")
        self.camera, self.cube = cam, float(cube_mm)
        self.pipeline = FramePipeline(model, weights, cam, self.cube, fit=fit,
                                      detector="learned" if detector else None, backend=backend)
        self.backend = backend

    def _pose(self, found):
        outs = self.pipeline.outputs
        theta = (np.array(outs["theta"][0], np.float64).reshape(-1) if "theta" in outs
                 else _nan(26))
        turn = float(np.asarray(outs["turn"]).ravel()[0]) if "turn" in outs else 0.0
        return HandPose(True, found.xyz, found.uvd, theta, np.asarray(found.center_uvd, np.float64),
                        found.cube_mm, found.how, turn)

    def _frame(self, depth):
        depth = np.asarray(depth)
        if depth.ndim != 2:
            raise InputError(f"a depth frame is a 2-D (H, W) array, got shape {depth.shape}")
        problem = self.camera.size_problem(depth.shape)
        if problem:
            raise InputError(f"the frame is {problem}")
        if depth.dtype.kind not in "uif":
            raise InputError(f"a depth frame holds numbers, got {depth.dtype}")
        return self.camera.depth_mm(depth)

    def _estimate(self, depth):
        try:
            return self._pose(self.pipeline(self._frame(depth)))
        except ValueError as err:       # HandNotFound: no hand in this frame
            return HandPose(False, _nan(31, 3), _nan(31, 3), _nan(26), _nan(3), self.cube,
                            reason=str(err))

    def estimate(self, depth):
        """One raw frame ``(H, W)`` in the camera's units (0 or NaN: no reading) -> :class:`HandPose`."""
        self.pipeline.reset()
        self.pipeline.finder.track = False
        return self._estimate(depth)

    def track(self, frames):
        """Frames of a sequence, in order -> :class:`HandPose` per frame, each starting from the
        previous frame's hand (``how`` "tracked") and searching the whole frame when it is lost."""
        self.pipeline.reset()
        self.pipeline.finder.track = True
        try:
            for depth in frames:
                yield self._estimate(depth)
        finally:
            self.pipeline.finder.track = False

    def estimate_crop(self, crop, center_mm, cube_mm=None):
        """A crop you made (``(128, 128)`` normalised depth in [-1, 1], the project's crop,
        ``deepmodel.data.hand_crop.crop.crop_depth``) around ``center_mm`` ``(3,)`` xyz mm with a
        cube of ``cube_mm`` (default the estimator's) -> :class:`HandPose` (``how`` "given";
        no fit)."""
        crop = np.asarray(crop, np.float32)
        if crop.shape != (128, 128) or not np.all(np.isfinite(crop)):
            raise InputError(f"a crop is (128, 128) finite normalised depth, got {crop.shape}")
        center = np.asarray(center_mm, np.float64)
        if center.shape != (3,) or not np.all(np.isfinite(center)) or not center[2] > 0:
            raise InputError(f"center_mm must be a finite (3,) x, y, z in mm with z > 0, got {center_mm}")
        cube = self.cube if cube_mm is None else float(cube_mm)
        xyz = self.pipeline.run_crop(crop) * (cube / 2.0) + center
        return self._pose(FramePose(xyz, self.camera.xyz_to_uvd(xyz), self.camera.xyz_to_uvd(center),
                                    cube, "given"))
