"""The published cube crop: a depth image around a 3D centre -> a ``size x size`` map in [-1, 1].

For a centre ``(u, v, d)`` (pixels, mm) and a cube of edge ``c`` mm (``h = c / 2``):

* pixel box ``[floor(u - h fx / d), floor(u + h fx / d))`` by ``[floor(v - h fy / d), floor(v + h fy / d))``,
  zero-padded (= no reading) where it leaves the image;
* depth window ``[d - h, d + h]``: nearer readings become the near plane, farther ones and missing
  readings (0) the far plane (the released code left missing readings at 0 mm; here they go to the
  far plane so the crop stays in [-1, 1]);
* resized with nearest-neighbour sampling, keeping the aspect ratio, into the centre of a
  ``size x size`` map whose rest is the far plane (nearest-neighbour is what reproduces the released
  crops pixel for pixel, and it creates no depths between the hand and the background);
* normalised ``(depth - com_z) / h``, so the cube maps to [-1, 1].

A 3D point at crop-pixel coordinates: :func:`crop_pixel_of_uvd`.
"""
import math

import cv2
import numpy as np


def crop_box(center_uvd, cube_mm, camera):
    """Pixel box of the crop: ``(x0, x1, y0, y1)`` ints, half-open ``[x0, x1) x [y0, y1)``."""
    u, v, d = (float(x) for x in center_uvd)
    h = float(cube_mm) / 2.0
    ax, ay = h * camera.fx / d, h * camera.fy / d
    return (math.floor(u - ax), math.floor(u + ax), math.floor(v - ay), math.floor(v + ay))


def _resized_shape(box, size):
    """(width, height) of the resized box, keeping the aspect ratio (integer division like the release)."""
    wb, hb = box[1] - box[0], box[3] - box[2]
    if wb > hb:
        return size, hb * size // wb
    return wb * size // hb, size


def _window(center_uvd, cube_mm, com_z):
    """``(d, h, com_z)`` of a crop: the centre's depth (checked > 0), half the cube, the depth
    that maps to 0 (default d), all mm."""
    d = float(center_uvd[2])
    if not (d > 0 and math.isfinite(d)):
        raise ValueError(f"crop centre depth must be a positive number of mm, got {d}")
    return d, float(cube_mm) / 2.0, d if com_z is None else float(com_z)


def _normalise(out, com_z, h):
    """In place: depths (mm, already in the cube's window) -> ``(depth - com_z) / h`` in [-1, 1]."""
    out -= com_z
    out /= h
    np.clip(out, -1.0, 1.0, out=out)
    return out


def crop_depth(depth, center_uvd, cube_mm, camera, size=128, com_z=None):
    """Crop one depth image.

    Args:
        depth: ``(H, W)`` depth in mm (any numeric dtype; 0 = no reading).
        center_uvd: ``(3,)`` crop centre u, v (pixels), d (mm); d must be > 0.
        cube_mm: cube edge in mm.
        camera: a :class:`deepmodel.data.datasets.camera.Camera`.
        size: output edge in pixels.
        com_z: depth (mm) that maps to 0; default the centre's d.
    Returns:
        ``(size, size)`` float32 in [-1, 1] (far plane = +1).
    """
    d, h, com_z = _window(center_uvd, cube_mm, com_z)
    near, far = d - h, d + h
    x0, x1, y0, y1 = crop_box(center_uvd, cube_mm, camera)
    wb, hb = x1 - x0, y1 - y0
    if wb < 1 or hb < 1:
        raise ValueError(f"crop box of centre {tuple(center_uvd)} is empty")
    H, W = depth.shape
    # Nearest-neighbour resizing picks pixels, so it commutes with the per-pixel steps (missing
    # -> far, clip): resize the box as the frame stores it (uint16, float32; other types as
    # float32, which they would become anyway), then map only the pixels kept.
    dtype = depth.dtype if depth.dtype in (np.uint16, np.float32) else np.float32
    sx0, sx1, sy0, sy1 = max(x0, 0), min(x1, W), max(y0, 0), min(y1, H)
    if (sx0, sx1, sy0, sy1) == (x0, x1, y0, y1) and depth.dtype == dtype:
        box = depth[y0:y1, x0:x1]                   # inside the frame: resized where it is
    else:
        box = np.zeros((hb, wb), dtype)             # padding = no reading
        if sx1 > sx0 and sy1 > sy0:
            box[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = depth[sy0:sy1, sx0:sx1]
    rw, rh = _resized_shape((x0, x1, y0, y1), size)
    out = np.full((size, size), far, np.float32)
    if rw > 0 and rh > 0:
        rz = cv2.resize(box, (rw, rh), interpolation=cv2.INTER_NEAREST).astype(np.float32, copy=False)
        rz[rz == 0] = far
        np.clip(rz, near, far, out=rz)
        ox, oy = size // 2 - rw // 2, size // 2 - rh // 2
        out[oy:oy + rh, ox:ox + rw] = rz
    return _normalise(out, com_z, h)


def crop_pixel_of_uvd(uvd, center_uvd, cube_mm, camera, size=128):
    """Image points ``(..., 2+)`` (u, v pixels) -> ``(..., 2)`` crop coordinates (column, row).

    Continuous coordinates with pixel ``(j, i)`` covering ``[j, j+1) x [i, i+1)``; a point at image
    pixel centre ``(u, v)`` (integers) lies in crop pixel ``floor`` of the result (nearest sampling
    takes source pixel ``floor(j * wb / rw)`` for crop column ``j``).
    """
    uvd = np.asarray(uvd, np.float64)
    x0, x1, y0, y1 = crop_box(center_uvd, cube_mm, camera)
    rw, rh = _resized_shape((x0, x1, y0, y1), size)
    ox, oy = size // 2 - rw // 2, size // 2 - rh // 2
    col = ox + (uvd[..., 0] + 0.5 - x0) * rw / (x1 - x0)
    row = oy + (uvd[..., 1] + 0.5 - y0) * rh / (y1 - y0)
    return np.stack([col, row], axis=-1)


# ------------------------------------------------------------------ turned crops (augmentation)
def turn_about_ray(center_xyz, angle_deg):
    """``(n, 3, 3)`` rotations by ``angle_deg`` ``(n,)`` about the camera's ray through each
    centre ``(n, 3)`` mm (x right, y up, z away from the camera): the scene turned about the
    line of sight of the crop centre, counter-clockwise as the camera sees it. The centre stays
    where it is, and so does its pixel."""
    c = np.asarray(center_xyz, np.float64)
    axis = c / np.linalg.norm(c, axis=1, keepdims=True)
    t = np.deg2rad(np.asarray(angle_deg, np.float64))[:, None, None]
    x, y, z = axis[:, 0], axis[:, 1], axis[:, 2]
    o = np.zeros_like(x)
    k = np.stack([np.stack([o, -z, y], -1), np.stack([z, o, -x], -1), np.stack([-y, x, o], -1)], -2)
    outer = axis[:, :, None] * axis[:, None, :]
    return np.cos(t) * np.eye(3) + np.sin(t) * k + (1.0 - np.cos(t)) * outer


def crop_depth_turned(depth, center_uvd, cube_mm, camera, angle_deg, size=128, com_z=None):
    """The cube crop of the scene turned by ``angle_deg`` about the ray through the crop centre.

    A rigid motion about a line through the camera maps each pixel's ray to another ray (a
    homography, whatever the depth), so the turned frame is exact: crop pixel ``(j, i)`` looks
    along the ray of the frame point :func:`crop_depth` samples for it; that ray, turned back,
    meets the frame at a pixel whose reading (nearest) is the point ``p``; the crop shows the
    depth of ``R p`` (``R`` of :func:`turn_about_ray`). Depth window and normalisation as
    :func:`crop_depth`; rays leaving the frame are no reading (far plane). At angle 0 it is
    :func:`crop_depth`'s crop (but for the far rows or columns :func:`crop_depth` adds when the
    box is not square). Returns ``(size, size)`` float32 in [-1, 1].
    """
    d, h, com_z = _window(center_uvd, cube_mm, com_z)
    u, v = float(center_uvd[0]), float(center_uvd[1])
    rot = turn_about_ray(camera.uvd_to_xyz(np.array([[u, v, d]])), np.array([float(angle_deg)]))[0]
    x0, x1, y0, y1 = crop_box(center_uvd, cube_mm, camera)
    rw, rh = _resized_shape((x0, x1, y0, y1), size)
    if rw < 1 or rh < 1:
        raise ValueError(f"crop box of centre {tuple(center_uvd)} is empty")
    grid = np.arange(size, dtype=np.float64)
    # crop_depth's nearest resize reads source pixel x0 + floor((j - ox) wb / rw): that pixel's
    # centre, in the frame's pixel-centre coordinates, is the point this pixel looks at
    qu = x0 + np.floor((grid[None, :] - (size // 2 - rw // 2)) * (x1 - x0) / rw + 1e-9)
    qv = y0 + np.floor((grid[:, None] - (size // 2 - rh // 2)) * (y1 - y0) / rh + 1e-9)
    ray = np.stack(np.broadcast_arrays((qu - camera.cx) / camera.fx, (camera.cy - qv) / camera.fy,
                                       1.0), -1)                           # (size, size, 3)
    back = ray @ rot                                                       # R^T ray, row-wise
    ahead = back[..., 2] > 1e-9
    bz = np.where(ahead, back[..., 2], 1.0)
    col = np.floor(camera.cx + camera.fx * back[..., 0] / bz + 0.5)
    row = np.floor(camera.cy - camera.fy * back[..., 1] / bz + 0.5)
    H, W = depth.shape
    inside = ahead & (col >= 0) & (col < W) & (row >= 0) & (row < H)
    ci, ri = col[inside].astype(np.int64), row[inside].astype(np.int64)
    reading = depth[ri, ci].astype(np.float64)
    # z of R p, p = reading * (ray of the source pixel)
    src = np.stack([(ci - camera.cx) / camera.fx, (camera.cy - ri) / camera.fy,
                    np.ones(len(ci))], -1)
    z = reading * (src @ rot[2])
    out = np.zeros((size, size), np.float64)
    out[inside] = np.where(reading > 0, z, 0.0)
    out[out <= 0] = d + h
    np.clip(out, d - h, d + h, out=out)
    return _normalise(out, com_z, h).astype(np.float32)
