"""A raw depth frame to keypoints, one frame at a time: find the hand without a label
(:func:`deepmodel.data.hand_crop.locate.locate_hand`), crop the cube around it
(:func:`deepmodel.data.hand_crop.crop.crop_depth`), run the deploy net and its model layer, and,
with ``fit``, fit the net's pose to the crop's depth (:class:`deepmodel.fitting.depth_fit.DepthFitter`).
Keypoints come back in mm (camera frame) and in pixels."""
import numpy as np

from deepmodel.data.datasets.camera import ICVL_CAMERA, NYU_CAMERA
from deepmodel.data.hand_crop.crop import crop_depth
from deepmodel.data.hand_crop.locate import locate_hand
from deepmodel.nets.net_io import fit_net_pose, input_blob, load_net, output_blob
from deepmodel.plumbing import InputError

# the raw-frame cameras and their crop cubes (mm)
DATASETS = {"nyu": (NYU_CAMERA, 300.0), "icvl": (ICVL_CAMERA, 250.0)}


class FramePipeline:
    """Detection + crop + net + model layer for one raw frame at a time.

    ``pipeline(depth_mm) -> (keypoints_mm (31, 3), keypoints_uvd (31, 3), center_uvd (3,))``.
    """

    def __init__(self, model, weights, camera, cube_mm, blob="joints", fit=False, theta_blob="theta"):
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

    def __call__(self, depth):
        center, cube = locate_hand(depth, self.camera, self.cube)
        self.data[0, 0] = crop_depth(depth, center, cube, self.camera)
        self.net.forward()
        kp = self.net.blobs[self.blob].data[0].reshape(31, 3).astype(np.float64)
        com = self.camera.uvd_to_xyz(center)
        if self.fitter is not None:
            kp = fit_net_pose(self.net, self.theta_blob, self.model_path, self.data[:1], cube,
                              com[None], fitter=self.fitter)[0].reshape(31, 3)
        xyz = kp * (cube / 2.0) + com
        return xyz, self.camera.xyz_to_uvd(xyz), center
