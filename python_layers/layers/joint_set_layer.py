"""Caffe Python layer: the model's keypoints -> a dataset's labelled joints (a joint set).

Use (ICVL's 16 joints from the NYU hand's 31 keypoints)::

    layer {
      name: "icvl_joints" type: "Python" bottom: "keypoints" top: "joints"
      python_param { module: "deepmodel.layers.joint_set_layer" layer: "JointSetLayer"
                     param_str: '{"model": "nyu31", "joint_set": "icvl16", "crop_unit_mm": 125}' }
    }

bottom: ``(N, 3K)`` keypoints x0, y0, z0, x1, ... in the model's normalised units (the hand model
layer's top). top: ``(N, 3J)`` the joint set's J joints, in the dataset's order, mirrored in x when
the set says so (``mirror_x``), in the crop's normalised units: multiplied by the set's
``mm_per_unit`` (the model's size on that dataset's hands) over ``crop_unit_mm`` (half the
dataset's crop cube). Without ``crop_unit_mm`` no rescaling. With ``centre_joint`` (an index into
the joint set, e.g. 0 for ICVL's palm), every joint is given relative to that joint, which is then
0: for a dataset whose crops are centred on one of its labelled joints (whose label is therefore
always 0), the model's hand is placed by that joint instead of by its global translation, which
no longer has any effect on the output (see docs/icvl.md, "Why the model layer was behind").
A fixed linear map: backward sends the top gradient back through the same map (its transpose) to
the selected keypoints (0 elsewhere).
"""
import caffe
import numpy as np

from deepmodel.layers.hand_model_layer import load_model, parse_params

DEFAULTS = {"model": "nyu31", "joint_set": "icvl16", "crop_unit_mm": None, "centre_joint": None}


def joint_set_map(model, name, crop_unit_mm=None):
    """``(rows (3J,), factors (3J,))``: top[:, i] = factors[i] * bottom[:, rows[i]]."""
    js = model.joint_set(name)
    scale = 1.0
    if crop_unit_mm is not None:
        if js.mm_per_unit is None:
            raise ValueError(f"joint set {name!r} of {model.name} has no mm_per_unit: give no "
                             "crop_unit_mm")
        scale = js.mm_per_unit / float(crop_unit_mm)
    rows = (3 * js.keypoints[:, None] + np.arange(3)).reshape(-1)
    factors = np.tile(js.sign * scale, len(js.keypoints))
    return rows, factors


class JointSetLayer(caffe.Layer):
    def setup(self, bottom, top):
        name = type(self).__name__
        p = parse_params(name, self.param_str, DEFAULTS)
        self.model = load_model(name, p["model"])
        cu = p["crop_unit_mm"]
        if cu is not None and not (isinstance(cu, (int, float)) and np.isfinite(cu) and cu > 0):
            raise ValueError(f"{name}: crop_unit_mm must be a positive number of mm, got {cu!r}")
        try:
            self.rows, self.factors = joint_set_map(self.model, p["joint_set"], cu)
        except Exception as err:     # an unknown set, a set without a size
            raise ValueError(f"{name}: {err}") from None
        c = p["centre_joint"]
        n_joints = len(self.rows) // 3
        if c is not None and (isinstance(c, bool) or not isinstance(c, int)
                              or not 0 <= c < n_joints):
            raise ValueError(f"{name}: centre_joint must be a joint index 0-{n_joints - 1} of "
                             f"{p['joint_set']!r}, got {c!r}")
        self.centre = c
        if len(bottom) != 1 or len(top) != 1:
            raise ValueError(f"{name}: needs 1 bottom (keypoints) and 1 top, got {len(bottom)} "
                             f"and {len(top)}")

    def reshape(self, bottom, top):
        shape = tuple(bottom[0].shape)
        width = 3 * self.model.num_keypoints
        if len(shape) < 2 or int(np.prod(shape[1:])) != width:
            raise ValueError(f"{type(self).__name__}: bottom[0] has shape {shape}, expected "
                             f"(N, {width}) keypoints of {self.model.name}")
        top[0].reshape(shape[0], len(self.rows))

    def forward(self, bottom, top):
        x = bottom[0].data.reshape(len(bottom[0].data), -1)
        y = x[:, self.rows] * self.factors
        if self.centre is not None:
            y = y.reshape(len(y), -1, 3)
            y = (y - y[:, self.centre:self.centre + 1]).reshape(len(y), -1)
        top[0].data[...] = y

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        diff = bottom[0].diff.reshape(len(bottom[0].diff), -1)
        diff[...] = 0
        g = top[0].diff
        if self.centre is not None:      # the centre joint moves every output joint
            g = g.reshape(len(g), -1, 3).copy()
            g[:, self.centre] -= g.sum(axis=1)
            g = g.reshape(len(g), -1)
        diff[:, self.rows] = g * self.factors      # rows are distinct keypoints
