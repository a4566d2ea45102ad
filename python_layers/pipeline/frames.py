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
from deepmodel.nets.net_io import fit_net_pose, input_blob, load_net, output_blob
from deepmodel.plumbing import InputError

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
    of tracked frames' keypoints.
    """

    def __init__(self, model, weights, camera, cube_mm, blob="joints", fit=False, theta_blob="theta",
                 detector="learned", track=False, smooth=0.0, redetect_every=30):
        self.net = load_net(model, weights)
        self.input = input_blob(self.net, None, model)
        self.blob = output_blob(self.net, blob, 93, model)
        self.fitter = None
        if fit:
            from deepmodel.fitting.depth_fit import DepthFitter
            from deepmodel.model.hand_model import HandModel

            self.fitter = DepthFitter(HandModel.nyu(), chunk=1)      # the cube comes with each frame
            self.theta_blob = output_blob(self.net, theta_blob, self.fitter.model.num_free, model,
                                          "--theta-blob")
        self.model_path = model
        shape = self.net.blobs[self.input].data.shape
        if tuple(shape[1:]) != (1, 128, 128):
            raise InputError(f"{model}: input '{self.input}' has shape {tuple(shape)}, expected "
                             "(N, 1, 128, 128)")
        if shape[0] != 1:
            self.net.blobs[self.input].reshape(1, 1, 128, 128)
            self.net.reshape()
        self.data = self.net.blobs[self.input].data
        self.camera, self.cube = camera, float(cube_mm)
        self.finder = HandFinder(camera, self.cube, detector=detector, track=track,
                                 redetect_every=redetect_every)
        if not 0.0 <= smooth < 1.0:
            raise InputError(f"smoothing {smooth}: must be at least 0 and below 1")
        self.smooth, self.previous = float(smooth), None

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
        self.data[0, 0] = crop_depth(depth, center, cube, self.camera)
        self.net.forward()
        kp = self.net.blobs[self.blob].data[0].reshape(31, 3).astype(np.float64)
        com = self.camera.uvd_to_xyz(center)
        if self.fitter is not None:
            kp = fit_net_pose(self.net, self.theta_blob, self.model_path, self.data[:1], cube,
                              com[None], fitter=self.fitter)[0].reshape(31, 3)
        xyz = kp * (cube / 2.0) + com
        if self.smooth and how == "tracked" and self.previous is not None:
            xyz = self.smooth * self.previous + (1.0 - self.smooth) * xyz
        self.previous = xyz
        return FramePose(xyz, self.camera.xyz_to_uvd(xyz), center, cube, how)
