"""Calibrate the hand model's bone lengths to labelled joints: one shape for all frames.

The keypoints of the hand model are linear in its bone lengths for fixed parameters: every bone is
a translation along a link's axis after that link's rotations, so ::

    model.forward(theta)[n] = P0(theta)[n] + sum_b  bone[b] * B_b(theta)[n]          # (31, 3)

with ``P0`` the positions for all bones of length 0 (the global translation alone) and ``B_b``
the positions for bone ``b`` of length 1 minus ``P0``. The calibration alternates two steps on all
frames at once:

1. poses: the per-frame parameters and scales by the bounded Levenberg-Marquardt fit of
   :class:`pose_fitting.PoseFitter` with the current bones (warm-started after the first round);
2. bones: with those poses, scales and offsets fixed, the bone lengths by linear least squares
   over every labelled joint of every frame, with a small ridge towards the starting bones so
   that bones no label constrains (e.g. a joint the dataset does not annotate) stay as they were.

The overall size is shared between the bones and the per-frame scales; at the end the bones are
rescaled so that the median scale equals ``unit_mm`` (the dataset's half cube), i.e. the model's
normalised unit means the same there as in the nets. Positions in normalised units, scales in mm
per unit, labels and offsets in mm.
"""
import copy

import numpy as np

from deepmodel.model.hand_model import HandModel
from deepmodel.fitting.pose_fitting import PoseFitter


def with_bones(definition, bones, name=None, about=None):
    """A copy of a model definition (dict) with other bone lengths (normalised units)."""
    d = copy.deepcopy(definition)
    d["bone_lengths"] = [float(b) for b in bones]
    if name is not None:
        d["name"] = name
    if about is not None:
        d["about"] = about
    return d


class BoneBasis:
    """The positions of the labelled keypoints as an affine function of the bone lengths.

    ``definition``: a model definition dict; ``keypoints``: (k,) model keypoint ids.
    :meth:`__call__` gives ``P0 (N, k, 3)`` and ``B (N, k, 3, nb)`` for theta ``(N, 26)``.
    """

    def __init__(self, definition, keypoints):
        nb = len(definition["bone_lengths"])
        self.keypoints = np.asarray(keypoints, dtype=np.int64)
        self.zero = HandModel(with_bones(definition, np.zeros(nb)))
        unit = np.eye(nb)
        self.units = [HandModel(with_bones(definition, unit[b])) for b in range(nb)]

    def __call__(self, theta):
        p0 = self.zero.forward(theta)[:, self.keypoints]
        basis = np.stack([m.forward(theta)[:, self.keypoints] - p0 for m in self.units], axis=-1)
        return p0, basis


def solve_bones(basis_fn, theta, scale, offset, labels, prior_bones, ridge):
    """The bone lengths (nb,) that best place the labelled joints for fixed poses.

    Minimises ``sum |scale_n (P0_n + B_n b) + offset_n - label_n|^2 + ridge^2 |b - prior|^2``
    (mm^2, with ``ridge`` in mm per normalised unit of bone length).
    """
    p0, basis = basis_fn(theta)
    s = scale[:, None, None]
    a = (basis * s[..., None]).reshape(-1, basis.shape[-1])
    rhs = (labels - offset[:, None, :] - s * p0).reshape(-1)
    nb = basis.shape[-1]
    a = np.vstack([a, ridge * np.eye(nb)])
    rhs = np.concatenate([rhs, ridge * np.asarray(prior_bones, dtype=np.float64)])
    bones, *_ = np.linalg.lstsq(a, rhs, rcond=None)
    return bones


def calibrate(definition, keypoints, labels, offset, scale0, rounds=6, ridge=50.0,
              unit_mm=150.0, restarts=2, prior=0.3, min_factor=0.3, log=print):
    """Fit one set of bone lengths and every frame's pose to the labels.

    definition: the starting model definition (dict); keypoints (k,) the model keypoint of each
    label column; labels ``(N, k, 3)`` mm; offset ``(N, 3)`` mm; scale0 ``(N,)`` mm/unit
    starting scales. ``ridge`` in mm per unit of bone length; bones are kept at least
    ``min_factor`` x their starting length. Returns ``dict(bones (nb,), theta (N, 26), scale (N,),
    error_mm (N,), history [mean error per round])``.
    """
    labels = np.asarray(labels, dtype=np.float64)
    offset = np.asarray(offset, dtype=np.float64)
    start = np.asarray(definition["bone_lengths"], dtype=np.float64)
    basis = BoneBasis(definition, keypoints)
    bones = start.copy()
    fitter = PoseFitter(HandModel(definition), keypoints, prior=prior)
    res = fitter.fit(labels, offset, scale0, scale_mode="frame", restarts=restarts,
                     log=lambda *a: None)
    theta, scale = res["theta"], res["scale"]
    history = [float(res["error_mm"].mean())]
    log(f"  round 0 (starting bones): mean error {history[-1]:.3f} mm")
    for r in range(1, rounds + 1):
        bones = solve_bones(basis, theta, scale, offset, labels, bones, ridge)
        bones = np.maximum(bones, min_factor * start)
        fitter = PoseFitter(HandModel(with_bones(definition, bones)), keypoints, prior=prior)
        theta, scale, _ = fitter.solve(theta, scale, offset, labels, fit_scale=True)
        history.append(float(fitter.errors_mm(theta, scale, offset, labels).mean()))
        log(f"  round {r}: mean error {history[-1]:.3f} mm")
    # the size lives in the bones: the median frame's scale becomes unit_mm
    k = np.median(scale) / unit_mm
    bones, scale = bones * k, scale / k
    theta = theta.copy()
    theta[:, 0:3] *= k                # translations are in normalised units too
    fitter = PoseFitter(HandModel(with_bones(definition, bones)), keypoints, prior=prior)
    error = fitter.errors_mm(theta, scale, offset, labels)
    return dict(bones=bones, theta=theta, scale=scale, error_mm=error, history=history)
