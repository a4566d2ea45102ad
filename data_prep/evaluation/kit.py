"""The community evaluation kit's conventions for prediction files, one entry per benchmark.

A prediction or label file holds one frame per line, J joints x (u px, v px, d mm). The kit turns
both into xyz with one camera per dataset, ``x = (u - cx) * d / fx``, ``y = (v - cy) * d / fy``,
``z = d`` (mm), and measures Euclidean distances. The cameras are the kit's, not always the
dataset's own: ICVL is evaluated with (240.99, 240.96), not the 241.42 of the ICVL camera. Using
the wrong camera scales x and y and so every error: the NYU camera on ICVL files gives errors
about 30% too small.

+---------+--------+-------------------------------------+
| dataset | joints | camera (fx, fy, cx, cy)             |
+=========+========+=====================================+
| nyu     | 14     | (588.03, -587.07, 320, 240)         |
| icvl    | 16     | (240.99, 240.96, 160, 120)          |
| msra    | 21     | (241.42, 241.42, 160, 120)          |
+---------+--------+-------------------------------------+
"""
from dataclasses import dataclass

import numpy as np

from deepmodel.data.datasets.labels import NYU14_NAMES


@dataclass(frozen=True)
class KitDataset:
    """One benchmark as the kit evaluates it: camera, joint count and joint names (label order)."""
    name: str
    fx: float
    fy: float
    cx: float
    cy: float
    joint_names: tuple

    @property
    def num_joints(self):
        return len(self.joint_names)

    def uvd_to_xyz(self, uvd):
        """``(..., 3)`` u, v (pixels), d (mm) -> ``(..., 3)`` x, y, z (mm), the kit's formula."""
        uvd = np.asarray(uvd, dtype=np.float64)
        d = uvd[..., 2]
        return np.stack([(uvd[..., 0] - self.cx) * d / self.fx,
                         (uvd[..., 1] - self.cy) * d / self.fy, d], axis=-1)

    def xyz_to_uvd(self, xyz):
        """The inverse of :meth:`uvd_to_xyz`: ``(..., 3)`` mm -> ``(..., 3)`` u, v px, d mm."""
        xyz = np.asarray(xyz, dtype=np.float64)
        z = xyz[..., 2]
        return np.stack([self.cx + xyz[..., 0] * self.fx / z,
                         self.cy + xyz[..., 1] * self.fy / z, z], axis=-1)


_FINGERS = ("index", "middle", "ring", "little")

NYU = KitDataset("nyu", 588.03, -587.07, 320.0, 240.0, NYU14_NAMES)
ICVL = KitDataset("icvl", 240.99, 240.96, 160.0, 120.0, (
    "palm",
    "thumb root", "thumb mid", "thumb tip",
    "index root", "index mid", "index tip",
    "middle root", "middle mid", "middle tip",
    "ring root", "ring mid", "ring tip",
    "little root", "little mid", "little tip"))
MSRA = KitDataset("msra", 241.42, 241.42, 160.0, 120.0, (
    ("wrist",)
    + tuple(f"{f} {j}" for f in _FINGERS for j in ("mcp", "pip", "dip", "tip"))
    + ("thumb mcp", "thumb pip", "thumb dip", "thumb tip")))

DATASETS = {d.name: d for d in (NYU, ICVL, MSRA)}
BY_JOINTS = {d.num_joints: d for d in DATASETS.values()}


def dataset_for_joints(num_joints):
    """The benchmark whose files have ``num_joints`` joints per line, or None."""
    return BY_JOINTS.get(int(num_joints))
