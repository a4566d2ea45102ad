"""Caffe Python layer: the joint-limit loss of DeepModel (penalises angles outside their range).

Use (the Python layer has no default loss weight: give ``loss_weight: 1`` for top[0] to count)::

    layer {
      name: "joint_limit" type: "Python" bottom: "theta" top: "limit_loss" top: "out_of_range"
      python_param { module: "deepmodel.layers.joint_limit_loss" layer: "JointLimitLossLayer"
                     param_str: '{"model": "nyu31", "penalty": "hinge", "lambda": 1.0}' }
      loss_weight: 1 loss_weight: 0
    }

bottom: theta ``(N, 26)`` (free ids) or ``(N, 47)`` (released layout; fixed ids ignored), compared
with the model's limits (on theta itself, not theta + init). With ``b_i(theta) =
max(low_i - theta_i, 0) + max(theta_i - up_i, 0)`` per free id i, averaged over the N samples:

- ``"hinge"`` (default, the paper's form): ``lambda / N * sum_n sum_i b_i``
- ``"squared"`` (the released code's form): ``lambda / N * sum_n sum_i b_i ** 2``

top[0]: the scalar loss. Optional top[1]: the fraction of samples with any parameter outside its
range or not finite (no gradient). param_str keys: ``model`` (default "nyu31"), ``penalty``, ``lambda`` (>= 0).
"""
import math

import caffe
import numpy as np

from deepmodel.layers.hand_model_layer import load_model, parse_params, theta_width

PENALTIES = ("hinge", "squared")


def limit_violation(theta, lower, upper):
    """``(N, F)`` -> (below, above): ``max(lower - theta, 0)`` and ``max(theta - upper, 0)``, float64."""
    theta = np.asarray(theta, dtype=np.float64)
    return np.maximum(lower - theta, 0.0), np.maximum(theta - upper, 0.0)


class JointLimitLossLayer(caffe.Layer):
    """Hinge (or squared hinge) penalty on parameters outside the model's limits."""

    def setup(self, bottom, top):
        name = type(self).__name__
        params = parse_params(name, self.param_str, {"model": "nyu31", "penalty": "hinge", "lambda": 1.0})
        if params["penalty"] not in PENALTIES:
            raise ValueError(f"{name}: penalty {params['penalty']!r} is not one of "
                             f"{', '.join(map(repr, PENALTIES))} (hinge = the paper's form)")
        lam = params["lambda"]
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam) or lam < 0:
            raise ValueError(f"{name}: lambda {lam!r} must be a finite number >= 0")
        if len(bottom) != 1 or len(top) not in (1, 2):
            raise ValueError(f"{name}: expected 1 bottom (theta) and 1 or 2 tops (loss, optional "
                             f"fraction out of range), got {len(bottom)} bottom(s) and {len(top)} top(s)")
        self.penalty, self.lam = params["penalty"], float(lam)
        self.model = load_model(name, params["model"])
        self.width = theta_width(name, self.model, bottom[0])

    def reshape(self, bottom, top):
        self.width = theta_width(type(self).__name__, self.model, bottom[0])
        top[0].reshape(1)
        if len(top) > 1:
            top[1].reshape(1)

    def _free_theta(self, bottom):
        theta = bottom[0].data.reshape(bottom[0].shape[0], self.width)
        if self.width == self.model.num_params:
            theta = theta[:, self.model.free_ids]
        return theta

    def forward(self, bottom, top):
        theta = self._free_theta(bottom)
        below, above = limit_violation(theta, self.model.lower, self.model.upper)
        n = theta.shape[0]
        if self.penalty == "hinge":
            loss = below.sum() + above.sum()
        else:
            loss = np.square(below).sum() + np.square(above).sum()
        top[0].data[...] = self.lam * loss / n
        if len(top) > 1:
            outside = (below > 0) | (above > 0) | ~np.isfinite(theta)   # NaN is inside no limits
            top[1].data[...] = np.mean(np.any(outside, axis=1)) if n else 0.0

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        theta = self._free_theta(bottom)
        n = theta.shape[0]
        below, above = limit_violation(theta, self.model.lower, self.model.upper)
        if self.penalty == "hinge":
            grad = (above > 0).astype(np.float64) - (below > 0)
        else:
            grad = 2.0 * (above - below)
        grad *= self.lam * float(top[0].diff.flat[0]) / n
        diff = bottom[0].diff.reshape(n, self.width)
        if self.width == self.model.num_params:
            diff[...] = 0.0
            diff[:, self.model.free_ids] = grad
        else:
            diff[...] = grad
