"""The hand's global pose: the model's global rotation ``G = Rz(a5) Rx(a3) Ry(a4)``, its inverse,
and a pose turned rigidly about the model's origin (theta ``(n, 26)``, radians for ids 3-25,
normalised units for the translation ids 0-2)."""
import numpy as np


def axis_rotation(axis, t):
    """``(n,)`` angles -> ``(n, 3, 3)`` rotation matrices in the model's convention (spec: Ry has
    the sign ``[[c, 0, -s], [0, 1, 0], [s, 0, c]]``)."""
    c, s = np.cos(t), np.sin(t)
    o, z = np.ones_like(t), np.zeros_like(t)
    if axis == "x":
        m = [[o, z, z], [z, c, -s], [z, s, c]]
    elif axis == "y":
        m = [[c, z, -s], [z, o, z], [s, z, c]]
    else:
        m = [[c, -s, z], [s, c, z], [z, z, o]]
    return np.moveaxis(np.array(m, dtype=np.float64), (0, 1), (-2, -1))


def global_rotation(a3, a4, a5):
    """The model's global rotation ``G = Rz(a5) Rx(a3) Ry(a4)``: ``(n,)`` x 3 -> ``(n, 3, 3)``."""
    return axis_rotation("z", a5) @ axis_rotation("x", a3) @ axis_rotation("y", a4)


def euler_of_global_rotation(m):
    """Inverse of :func:`global_rotation`: ``(n, 3, 3)`` -> ``(a3, a4, a5)`` each ``(n,)`` rad,
    with ``a3`` in [-pi/2, pi/2]."""
    a3 = np.arcsin(np.clip(m[:, 2, 1], -1.0, 1.0))
    a4 = np.arctan2(m[:, 2, 0], m[:, 2, 2])
    a5 = np.arctan2(-m[:, 0, 1], m[:, 1, 1])
    return a3, a4, a5


def wrap_angle(a):
    return (a + np.pi) % (2 * np.pi) - np.pi


def rotate_pose(model, theta, rot):
    """The pose of the hand turned by ``rot`` about the model's origin.

    theta ``(n, 26)``, rot ``(n, 3, 3)`` -> theta ``(n, 26)`` with the same finger angles, the
    global rotation ``rot @ G`` and the palm position ``rot @ palm``, so that
    ``model.forward(result) == rot @ model.forward(theta)`` for every keypoint (the spec's chain:
    the palm at ``a0..a2``, every link below it behind ``G = Rz(a5) Rx(a3) Ry(a4)``, with
    ``a_i = theta_i + init_i``).
    """
    theta = np.array(theta, np.float64)
    init = np.asarray(model.init, np.float64)[:6]
    a = theta[:, :6] + init
    g = global_rotation(a[:, 3], a[:, 4], a[:, 5])
    a3, a4, a5 = euler_of_global_rotation(rot @ g)
    out = theta.copy()
    out[:, 0:3] = np.einsum("nij,nj->ni", rot, a[:, 0:3]) - init[0:3]
    out[:, 3:6] = np.stack([wrap_angle(a3 - init[3]), wrap_angle(a4 - init[4]), wrap_angle(a5 - init[5])], axis=1)
    return out
