"""Caffe Python layer: turn each depth crop in its plane so that its hand points up.

Use (after the data layer, before the net's first convolution)::

    layer {
      name: "hand_turn" type: "Python" bottom: "depth" top: "depth_up" top: "turn"
      python_param { module: "deepmodel.layers.hand_turn_layer" layer: "HandTurnLayer" }
    }

bottom: ``(N, 1, H, W)`` normalised depth crops, background 1.
top[0]: ``(N, 1, H, W)`` the crops turned about their centre so that the hand points up
(nearest neighbour; what comes from outside the crop is background).
top[1]: ``(N, 1)`` the angle of each turn, radians, counter-clockwise in the label frame (x right,
y up). A ``PointTurnLayer`` with this blob turns the keypoints predicted on the turned crops back
to the crop's own frame. How the angle is found: python_layers/model/hand_turn.py.
No parameters (``param_str`` empty or ``{}``). The crops are input data: no gradient flows back
to them (their diff is left at 0).
"""
import caffe

from deepmodel.layers.hand_model_layer import parse_params
from deepmodel.model.hand_turn import hand_angle, turn_crops


class HandTurnLayer(caffe.Layer):
    """depth (N, 1, H, W) -> depth turned hand-up (N, 1, H, W), turn angle (N, 1) radians."""

    def setup(self, bottom, top):
        name = type(self).__name__
        parse_params(name, self.param_str, {})
        if len(bottom) != 1 or len(top) != 2:
            raise ValueError(f"{name}: expected 1 bottom (depth crops) and 2 tops (turned crops, "
                             f"angles), got {len(bottom)} bottom(s) and {len(top)} top(s)")
        self.shape = None

    def reshape(self, bottom, top):
        shape = tuple(bottom[0].shape)
        if shape == self.shape:
            return
        if len(shape) != 4 or shape[1] != 1 or shape[2] < 3 or shape[3] < 3:
            raise ValueError(f"{type(self).__name__}: bottom[0] has shape {shape}; expected "
                             "(N, 1, H, W) depth crops")
        top[0].reshape(*shape)
        top[1].reshape(shape[0], 1)
        self.shape = shape

    def forward(self, bottom, top):
        crops = bottom[0].data
        phi = hand_angle(crops)
        turn_crops(crops, phi, out=top[0].data)
        top[1].data[:, 0] = phi

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            bottom[0].diff[...] = 0
