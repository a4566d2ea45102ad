"""Caffe Python layer: turn keypoints about the z axis by per-sample angles.

Use (after the hand model layer of a net whose crops were turned by a ``HandTurnLayer``)::

    layer {
      name: "turn_back" type: "Python" bottom: "keypoints_up" bottom: "turn" top: "joints"
      python_param { module: "deepmodel.layers.point_turn_layer" layer: "PointTurnLayer" param_str: '{"inverse": true}' }
    }

bottom[0]: ``(N, 3K)`` keypoints x0, y0, z0, x1, ... in normalised units about the crop centre.
bottom[1]: ``(N, 1)`` (or ``(N,)``) angles, radians, counter-clockwise in the label frame (y up).
top: ``(N, 3K)`` the keypoints with x, y turned about the z axis by the angle, or by minus the
angle with ``inverse`` (the default: back from the turned crop to the crop's own frame); z
unchanged. param_str (JSON, optional): ``inverse`` (true / false).
Backward: the top gradient turned the other way to bottom[0] (a turn's transpose is its
inverse). The angles come from the data: no gradient flows to them (their diff is left at 0).
Float64 inside, float32 at the blobs.
"""
import caffe

from deepmodel.layers.hand_model_layer import parse_params
from deepmodel.model.hand_turn import turn_points


class PointTurnLayer(caffe.Layer):
    """keypoints (N, 3K), angles (N, 1) -> keypoints (N, 3K) turned by -angle (or +angle)."""

    def setup(self, bottom, top):
        name = type(self).__name__
        params = parse_params(name, self.param_str, {"inverse": True})
        if not isinstance(params["inverse"], bool):
            raise ValueError(f"{name}: inverse must be true or false, got {params['inverse']!r}")
        if len(bottom) != 2 or len(top) != 1:
            raise ValueError(f"{name}: expected 2 bottoms (keypoints, angles) and 1 top, got "
                             f"{len(bottom)} bottom(s) and {len(top)} top(s)")
        self.sign = -1.0 if params["inverse"] else 1.0
        self.shape = None

    def reshape(self, bottom, top):
        shapes = tuple(bottom[0].shape), tuple(bottom[1].shape)
        if shapes == self.shape:
            return
        name = type(self).__name__
        pts, ang = shapes
        if len(pts) != 2 or pts[1] % 3 or pts[1] == 0:
            raise ValueError(f"{name}: bottom[0] has shape {pts}; expected (N, 3K) keypoints")
        if not ang or ang[0] != pts[0] or any(s != 1 for s in ang[1:]):
            raise ValueError(f"{name}: bottom[1] has shape {ang}; expected ({pts[0]}, 1) angles, "
                             "one per keypoint row")
        top[0].reshape(*pts)
        self.shape = shapes

    def forward(self, bottom, top):
        phi = self.sign * bottom[1].data.reshape(-1)
        turn_points(bottom[0].data, phi, out=top[0].data)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            phi = self.sign * bottom[1].data.reshape(-1)
            turn_points(top[0].diff, -phi, out=bottom[0].diff)
        if propagate_down[1]:
            bottom[1].diff[...] = 0
