"""Hand-pose evaluation metrics (NumPy only; no Caffe, no files).

The community NYU measures:
- mean 3D joint error: Euclidean distance between predicted and true joint positions (mm),
  averaged over all joints and frames;
- per-joint mean error (mm);
- the evaluation kit's three success-rate curves over t = 0..80 mm: the fraction of frames whose
  *worst* joint is within t (a frame counts when its largest error is ``<= t``), the fraction of
  frames whose *mean* joint error is within t, and the fraction of all joints (every frame's
  every joint counted once) within t;
and the paper's two angle measures:
- mean angle error (degrees): mean absolute difference between predicted and true angles,
  wrapped to [-180, 180), over the rotational parameters (the global translation ids 0, 1, 2 are
  not angles and are left out);
- the fraction of frames with at least one parameter outside its limits.
"""
import numpy as np

THRESHOLDS_MM = tuple(range(0, 81))


def joint_errors(pred_xyz, true_xyz):
    """Per-joint Euclidean errors.

    pred_xyz, true_xyz: ``(N, J, 3)`` mm. Returns ``(N, J)`` float64 mm.
    """
    pred = np.asarray(pred_xyz, dtype=np.float64)
    true = np.asarray(true_xyz, dtype=np.float64)
    if pred.shape != true.shape or pred.ndim != 3 or pred.shape[-1] != 3:
        raise ValueError(f"shapes {pred.shape} and {true.shape}: expected equal (N, J, 3)")
    return np.linalg.norm(pred - true, axis=-1)


def frac_max_error_within(errors, thresholds=THRESHOLDS_MM):
    """Fraction of frames whose largest joint error is ``<= t`` for each t.

    errors: ``(N, J)`` mm. Returns ``(T,)`` float64 in [0, 1].
    """
    worst = np.asarray(errors, dtype=np.float64).max(axis=1)
    t = np.asarray(thresholds, dtype=np.float64)
    return (worst[None, :] <= t[:, None]).mean(axis=1)


def frac_mean_error_within(errors, thresholds=THRESHOLDS_MM):
    """Fraction of frames whose mean joint error is ``<= t`` for each t.

    errors: ``(N, J)`` mm. Returns ``(T,)`` float64 in [0, 1].
    """
    mean = np.asarray(errors, dtype=np.float64).mean(axis=1)
    t = np.asarray(thresholds, dtype=np.float64)
    return (mean[None, :] <= t[:, None]).mean(axis=1)


def frac_joints_within(errors, thresholds=THRESHOLDS_MM):
    """Fraction of all joints (N x J, each counted once) whose error is ``<= t`` for each t.

    errors: ``(N, J)`` mm. Returns ``(T,)`` float64 in [0, 1].
    """
    flat = np.sort(np.asarray(errors, dtype=np.float64).reshape(-1))
    t = np.asarray(thresholds, dtype=np.float64)
    return np.searchsorted(flat, t, side="right") / flat.size


# the three curves of the kit, by their JSON key
CURVES = {
    "frac_max_error_within_mm": frac_max_error_within,
    "frac_mean_error_within_mm": frac_mean_error_within,
    "frac_joints_within_mm": frac_joints_within,
}
CURVE_TITLES = {
    "frac_max_error_within_mm": "frames with every joint within t (max error)",
    "frac_mean_error_within_mm": "frames with mean joint error within t",
    "frac_joints_within_mm": "joints within t",
}


def error_summary(errors, joint_names, thresholds=THRESHOLDS_MM):
    """The standard figures of one method as a JSON-ready dict.

    errors: ``(N, J)`` mm; joint_names: J names. Keys: ``frames``, ``mean_error_mm``,
    ``median_error_mm``, ``max_error_mm``, ``per_joint_error_mm`` (name -> mm, in joint order)
    and the three curves of :data:`CURVES`, each str(t) -> fraction.
    """
    errors = np.asarray(errors, dtype=np.float64)
    if errors.ndim != 2 or len(joint_names) != errors.shape[1]:
        raise ValueError(f"errors {errors.shape} do not match {len(joint_names)} joint names")
    per_joint = errors.mean(axis=0)
    summary = {
        "frames": int(errors.shape[0]),
        "mean_error_mm": float(errors.mean()),
        "median_error_mm": float(np.median(errors)),
        "max_error_mm": float(errors.max()),
        "per_joint_error_mm": {str(n): float(e) for n, e in zip(joint_names, per_joint)},
    }
    for key, curve in CURVES.items():
        summary[key] = {str(int(t)): float(f) for t, f in zip(thresholds, curve(errors, thresholds))}
    return summary


def free_columns(theta, free_ids):
    """The 26 free parameters of a theta array.

    theta: ``(N, 26)`` (already the free ids) or ``(N, 47)`` (released layout, all ids) ->
    ``(N, 26)`` float64.
    """
    theta = np.asarray(theta, dtype=np.float64)
    free_ids = np.asarray(free_ids)
    if theta.ndim != 2:
        raise ValueError(f"theta has shape {theta.shape}, expected (N, 26) or (N, 47)")
    if theta.shape[1] == len(free_ids):
        return theta
    if theta.shape[1] > free_ids.max():
        return theta[:, free_ids]
    raise ValueError(f"theta has {theta.shape[1]} columns, expected {len(free_ids)} or 47")


def angle_columns(free_ids):
    """Column indices (into the 26 free parameters) that are angles: every free id >= 3."""
    return np.flatnonzero(np.asarray(free_ids) >= 3)


def angle_error_deg(pred_theta, true_theta, free_ids):
    """Mean absolute angle error in degrees over the rotational free parameters.

    pred_theta, true_theta: ``(N, 26)`` or ``(N, 47)`` radians. The difference is wrapped to
    [-pi, pi) before taking its absolute value. Returns ``(mean_deg, per_parameter_deg (A,))``.
    """
    pred = free_columns(pred_theta, free_ids)
    true = free_columns(true_theta, free_ids)
    if pred.shape != true.shape:
        raise ValueError(f"predicted theta {pred.shape} and true theta {true.shape} differ")
    cols = angle_columns(free_ids)
    diff = pred[:, cols] - true[:, cols]
    wrapped = (diff + np.pi) % (2 * np.pi) - np.pi
    per_param = np.degrees(np.abs(wrapped)).mean(axis=0)
    return float(per_param.mean()), per_param


def out_of_limits(theta, lower, upper, free_ids):
    """Which frames have at least one free parameter strictly outside [lower, upper] or not
    finite (a NaN angle is inside no limits).

    theta: ``(N, 26)`` or ``(N, 47)`` (compared as the network outputs it, not theta + init);
    lower, upper: ``(26,)``. Returns ``(N,)`` bool.
    """
    t = free_columns(theta, free_ids)
    lower = np.asarray(lower, dtype=np.float64)
    upper = np.asarray(upper, dtype=np.float64)
    return np.any((t < lower) | (t > upper) | ~np.isfinite(t), axis=1)
