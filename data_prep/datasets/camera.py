"""Pinhole depth cameras: uvd (pixels, mm) <-> xyz (mm, y up), the depth unit of their raw frames,
the datasets' cameras by name, and the ``--camera`` / ``--depth-unit`` options of the tools that
read raw frames."""
import json
import math
import pathlib
from dataclasses import dataclass, replace

import numpy as np

from deepmodel.plumbing import InputError


@dataclass(frozen=True)
class Camera:
    """Intrinsics of a depth camera. ``fx, fy`` focal lengths (pixels), ``cx, cy`` principal point;
    ``width, height`` its frames' size in pixels (None: any, taken from the frame);
    ``depth_unit_mm`` millimetres per raw depth unit of its frames (1 for most sensors, 0.125 or
    0.1 for some RealSense models). Whatever the camera, depths and the crop cube are in mm."""
    fx: float
    fy: float
    cx: float
    cy: float
    width: int | None = None
    height: int | None = None
    depth_unit_mm: float = 1.0

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

    def depth_mm(self, raw):
        """A frame in this camera's raw units -> depth in mm: the frame itself when the unit is
        1 mm and the frame 16-bit, else float32 times ``depth_unit_mm``."""
        raw = np.asarray(raw)
        if self.depth_unit_mm == 1.0 and raw.dtype == np.uint16:
            return raw
        return raw.astype(np.float32) * np.float32(self.depth_unit_mm)

    def size_problem(self, shape):
        """Why a frame of ``shape`` (rows, columns, ...) is not this camera's, or None."""
        h, w = shape[:2]
        if self.width is not None and (w, h) != (self.width, self.height):
            return f"{w}x{h} pixels, the camera's frames are {self.width}x{self.height}"
        return None


NYU_CAMERA = Camera(fx=588.03, fy=587.07, cx=320.0, cy=240.0, width=640, height=480)
ICVL_CAMERA = Camera(fx=241.42, fy=241.42, cx=160.0, cy=120.0, width=320, height=240)
MSRA_CAMERA = Camera(fx=241.42, fy=241.42, cx=160.0, cy=120.0, width=320, height=240)
CAMERAS = {"nyu": NYU_CAMERA, "icvl": ICVL_CAMERA, "msra": MSRA_CAMERA}
CAMERA_HELP = ("the depth camera: a dataset's (nyu, icvl, msra), FX,FY,CX,CY in pixels (frames of "
               "any size), or a JSON file with fx, fy, cx, cy and optionally width, height, "
               "depth_unit_mm")
DEPTH_UNIT_HELP = ("millimetres per raw depth unit of 16-bit and .npy frames (default: the "
                   "camera's, 1 for the datasets: e.g. 0.125 or 0.1 for some RealSense models)")
MAX_PIXELS = 100_000          # a plausible bound on a frame's side and principal point


def _number(value, what, positive=False):
    """A finite float from ``value`` (JSON or text); InputError naming ``what`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InputError(f"{what}: {value!r} is not a number")
    try:
        x = float(value)
    except ValueError:
        raise InputError(f"{what}: {value!r} is not a number") from None
    if not math.isfinite(x) or (positive and x <= 0) or abs(x) > MAX_PIXELS:
        raise InputError(f"{what}: {value!r} must be a finite {'positive ' if positive else ''}"
                         f"number of at most {MAX_PIXELS}")
    return x


def _from_json(path):
    try:
        spec = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"--camera {path}: cannot read it ({err.strerror or err})") from None
    except json.JSONDecodeError as err:
        raise InputError(f"--camera {path}: not JSON ({err.msg}, line {err.lineno})") from None
    if not isinstance(spec, dict):
        raise InputError(f"--camera {path}: expected a JSON object with fx, fy, cx, cy")
    missing = [k for k in ("fx", "fy", "cx", "cy") if k not in spec]
    if missing:
        raise InputError(f"--camera {path}: no {', '.join(missing)} (fx, fy, cx, cy are needed)")
    unknown = sorted(set(spec) - {"fx", "fy", "cx", "cy", "width", "height", "depth_unit_mm"})
    if unknown:
        raise InputError(f"--camera {path}: unknown key {unknown[0]!r} (fx, fy, cx, cy, width, "
                         "height, depth_unit_mm)")
    values = {k: _number(spec[k], f"--camera {path}: {k}", positive=k in ("fx", "fy"))
              for k in ("fx", "fy", "cx", "cy")}
    if ("width" in spec) != ("height" in spec):
        raise InputError(f"--camera {path}: give both width and height, or neither")
    if "width" in spec:
        for k in ("width", "height"):
            v = _number(spec[k], f"--camera {path}: {k}", positive=True)
            if v != int(v):
                raise InputError(f"--camera {path}: {k} {spec[k]!r} is not a whole number of pixels")
            values[k] = int(v)
    if "depth_unit_mm" in spec:
        values["depth_unit_mm"] = _number(spec["depth_unit_mm"], f"--camera {path}: depth_unit_mm",
                                          positive=True)
    return Camera(**values)


def parse_camera(text, depth_unit_mm=None):
    """The ``--camera`` option (see ``CAMERA_HELP``) and ``--depth-unit`` (None: the camera's) ->
    :class:`Camera`; a one-line :class:`InputError` naming what is wrong."""
    text = str(text).strip()
    if text.lower() in CAMERAS:
        camera = CAMERAS[text.lower()]
    elif text.endswith(".json") or pathlib.Path(text).is_file():
        path = pathlib.Path(text)
        if not path.is_file():
            raise InputError(f"--camera {text}: no such file")
        camera = _from_json(path)
    else:
        parts = text.split(",")
        if len(parts) != 4:
            raise InputError(f"--camera {text}: expected a name ({', '.join(CAMERAS)}), "
                             "FX,FY,CX,CY or a JSON file")
        fx, fy, cx, cy = (_number(p, f"--camera {text}: {k}", positive=k in ("fx", "fy"))
                          for p, k in zip(parts, ("fx", "fy", "cx", "cy")))
        camera = Camera(fx=fx, fy=fy, cx=cx, cy=cy)
    if depth_unit_mm is not None:
        camera = replace(camera, depth_unit_mm=_number(depth_unit_mm, "--depth-unit", positive=True))
    return camera
