"""Pinhole depth cameras of the NYU and ICVL datasets: uvd (pixels, mm) <-> xyz (mm, y up)."""
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Camera:
    """Intrinsics of a depth camera. ``fx, fy`` focal lengths (pixels), ``cx, cy`` principal point."""
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def uvd_to_xyz(self, uvd):
        """``(..., 3)`` u, v (pixels), d (mm) -> ``(..., 3)`` x, y, z (mm), y pointing up."""
        uvd = np.asarray(uvd, dtype=np.float64)
        d = uvd[..., 2]
        x = (uvd[..., 0] - self.cx) * d / self.fx
        y = (self.cy - uvd[..., 1]) * d / self.fy
        return np.stack([x, y, d], axis=-1)

    def xyz_to_uvd(self, xyz):
        """``(..., 3)`` x, y, z (mm, y up) -> ``(..., 3)`` u, v (pixels), d (mm)."""
        xyz = np.asarray(xyz, dtype=np.float64)
        z = xyz[..., 2]
        u = self.cx + xyz[..., 0] * self.fx / z
        v = self.cy - xyz[..., 1] * self.fy / z
        return np.stack([u, v, z], axis=-1)


NYU_CAMERA = Camera(fx=588.03, fy=587.07, cx=320.0, cy=240.0, width=640, height=480)
ICVL_CAMERA = Camera(fx=241.42, fy=241.42, cx=160.0, cy=120.0, width=320, height=240)
