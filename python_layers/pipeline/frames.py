"""A raw depth frame to keypoints, one frame at a time: find the hand without a label
(:class:`deepmodel.data.hand_crop.detect.HandFinder`: the nearest-surface localiser, the learned
detector when the body or an object is nearer, the previous frame's hand on a sequence), crop the cube around it
(:func:`deepmodel.data.hand_crop.crop.crop_depth`), run the deploy net and its model layer, and,
with ``fit``, fit the net's pose to the crop's depth (:class:`deepmodel.fitting.depth_fit.DepthFitter`).
Keypoints come back in mm (camera frame) and in pixels."""
from dataclasses import dataclass

import numpy as np

from deepmodel.data.datasets.camera import ICVL_CAMERA, NYU_CAMERA
from deepmodel.data.hand_crop.crop import crop_depth
from deepmodel.data.hand_crop.detect import HandFinder
from deepmodel.nets.net_io import (TURN_ANGLES, TURNED_CROPS, fit_outputs, input_blob, load_net,
                                   output_blob)
from deepmodel.plumbing import InputError
from deepmodel.runtime.nets import CaffeNet, OnnxNet, check_backend, onnx_path

# the raw-frame cameras and their crop cubes (mm)
DATASETS = {"nyu": (NYU_CAMERA, 300.0), "icvl": (ICVL_CAMERA, 250.0)}


@dataclass
class FramePose:
    """One frame's hand: ``xyz`` ``(31, 3)`` keypoints mm (camera frame, y up), ``uvd`` ``(31, 3)``
    the same in pixels and mm, ``center_uvd`` ``(3,)`` the crop centre, ``cube_mm`` its edge,
    ``how`` how the hand was found: "nearest" (the nearest surface), "detected" (the learned
    detector overruled it), "tracked" (from the previous frame)."""
    xyz: np.ndarray
    uvd: np.ndarray
    center_uvd: np.ndarray
    cube_mm: float
    how: str

    def __iter__(self):            # xyz, uvd, center = pose
        return iter((self.xyz, self.uvd, self.center_uvd))


class FramePipeline:
    """Detection + crop + net + model layer for one raw frame at a time.

    ``pipeline(depth_mm) -> FramePose`` (which also unpacks as ``keypoints_mm (31, 3),
    keypoints_uvd (31, 3), center_uvd (3,)``). ``detector``: "learned" (the detector when its
    weights are there) or None (the nearest-surface localiser alone); ``track``: frames are a
    sequence, start from the previous frame's hand (:meth:`reset` between sequences), searching
    the whole frame again at least every ``redetect_every`` frames;
    ``smooth``: 0 (off) to <1, the weight of the previous keypoints in an exponential smoothing
    of tracked frames' keypoints; ``backend``: "caffe" (``model`` and the ``.caffemodel``
    ``weights``) or "onnx" (ONNX Runtime on ``weights`` if it is a ``.onnx`` file, else the
    ``.onnx`` beside it; ``model`` unused; no Caffe needed; the detector's and refiners' ``.onnx``
    files likewise).
    """

    def __init__(self, model, weights, camera, cube_mm, blob="joints", fit=False, theta_blob="theta",
                 detector="learned", track=False, smooth=0.0, redetect_every=30, backend="caffe"):
        check_backend(backend)
        self.fitter = None
        if fit:
            from deepmodel.fitting.depth_fit import DepthFitter
            from deepmodel.model.hand_model import HandModel

            self.fitter = DepthFitter(HandModel.nyu(), chunk=1)      # the cube comes with each frame
        if backend == "onnx":
            self.net = OnnxNet(onnx_path(weights))
            model = str(self.net.path)
            for name, width, option in [(blob, 93, "--blob")] + (
                    [(theta_blob, self.fitter.model.num_free, "--theta-blob")] if fit else []):
                self.net.check_output(name, width, option)
        else:
            net = load_net(model, weights)
            self.net = CaffeNet(net, input_blob(net, None, model))
            output_blob(net, blob, 93, model)
            if fit:
                output_blob(net, theta_blob, self.fitter.model.num_free, model, "--theta-blob")
        self.blob, self.theta_blob, self.model_path = blob, theta_blob, model
        shape = self.net.input_shape
        if tuple(shape[1:]) != (1, 128, 128):
            raise InputError(f"{model}: input '{self.net.input}' has shape {tuple(shape)}, "
                             "expected (N, 1, 128, 128)")
        # what a forward pass reads: the keypoints, and the angles (and a turning net's turn)
        # for the fit and for HandPoseEstimator
        self.names = [blob] + [b for b in (theta_blob, TURNED_CROPS, TURN_ANGLES)
                               if self.net.has(b) and b != blob]
        self.outputs = {}
        self.camera, self.cube = camera, float(cube_mm)
        self.finder = HandFinder(camera, self.cube, detector=detector, track=track,
                                 redetect_every=redetect_every, backend=backend)
        if not 0.0 <= smooth < 1.0:
            raise InputError(f"smoothing {smooth}: must be at least 0 and below 1")
        self.smooth, self.previous = float(smooth), None

    def run_crops(self, crops):
        """Crops ``(N, 128, 128)`` (the project's crop) through the net in one batch -> the pass's
        outputs by blob name (copies): the keypoints ``(N, 93)`` (``blob``), and when the net
        has them its angles ``theta_blob``, a hand-up net's turned crops and turn angles."""
        crops = np.asarray(crops, np.float32).reshape(-1, 1, 128, 128)
        return {k: np.array(v) for k, v in self.net.run(crops, self.names).items()}

    def run_crop(self, crop):
        """One ``(128, 128)`` crop through the net -> keypoints ``(31, 3)`` normalised (half-cube
        units, about the crop centre); the pass's outputs stay in :attr:`outputs`."""
        self.outputs = self.net.run(np.asarray(crop, np.float32).reshape(1, 1, 128, 128), self.names)
        return np.asarray(self.outputs[self.blob][0], np.float64).reshape(31, 3)

    def reset(self):
        """A new sequence: forget the previous frame."""
        self.finder.reset()
        self.previous = None

    def __call__(self, depth):
        try:
            center, how = self.finder(depth)
        except ValueError:
            self.previous = None
            raise
        cube = self.cube
        crop = crop_depth(depth, center, cube, self.camera)
        kp = self.run_crop(crop)
        com = self.camera.uvd_to_xyz(center)
        if self.fitter is not None:
            kp = fit_outputs(self.fitter, crop.reshape(1, 1, 128, 128), self.outputs, cube,
                             com[None], self.theta_blob)[0].reshape(31, 3)
        xyz = kp * (cube / 2.0) + com
        if self.smooth and how == "tracked" and self.previous is not None:
            xyz = self.smooth * self.previous + (1.0 - self.smooth) * xyz
        self.previous = xyz
        return FramePose(xyz, self.camera.xyz_to_uvd(xyz), center, cube, how)
