"""Find the hand in a raw depth frame without any label: the crop centre (u, v, d) and the cube.

The paper and the released code crop around a labelled joint; a user with a depth camera has no
label. :func:`locate_hand` assumes what the paper offers as the alternative, that the hand is the
closest object to the camera, and makes that rule robust:

1. **Working range and holes.** Readings outside ``[near_mm, far_mm]`` (default 100-1500 mm) and
   missing readings (0, NaN) are ignored.
2. **A coarse, denoised frame.** Every ``s``-th pixel (``s`` = width // 160: 4 for 640x480, 2 for
   320x240), then a 3x3 median: a reading has to be shared by most of its coarse neighbours to
   survive, so isolated noise pixels (and clusters smaller than about 1.5 coarse pixels) vanish.
3. **The nearest depth with enough support** ``z0``: the nearest 10 mm depth bin such that the
   40 mm slab starting there holds at least ``min_area_mm2`` (default 600 mm^2, a 2.5 x 2.5 cm
   patch) of surface. The number of pixels this area covers is computed for the slab's depth from
   the focal lengths (``area fx fy / (z^2 s^2)`` coarse pixels), so the rule does not depend on
   the distance of the hand. A single nearest pixel never decides.
4. **A depth band and its connected region.** The coarse pixels within ``band_mm`` (default half
   the cube, 150 mm) behind ``z0``; of their 8-connected regions, the one holding most of the
   pixels within ``VOTE_MM`` (20 mm) of ``z0`` is the hand (and whatever touches it within the
   band: a wrist, a forearm). A body or wall farther than the band behind the hand's nearest point
   is cut off here, and an object beside the hand, nearer than the wrist but behind the hand's
   front, is a region of its own that does not win (voting with the whole 40 mm slab, the object
   won in 19 of 128 frames of ``add_clutter(near_object=1.0)``, seed 103).
5. **3D centre of mass, then mean shift.** The centre of mass of the region's 3D points (camera
   frame, mm), then, at full resolution (every ``refine_stride``-th pixel, default 2 for 640x480),
   re-centred on the mass within ``radius_mm`` (default 0.4 cube = 120 mm: a hand spans about
   190 mm from wrist to fingertip) of the current centre, restricted to the band and to the region
   (dilated by one coarse pixel), until it moves less than 0.5 mm (at most ``iterations``, 10).
   This is the "re-centre the cube on the mass inside it" of the DeepPrior line of work with a
   sphere smaller than the cube: a forearm in the band pulls the centre towards the wrist only by
   the part of it within the sphere, and a body behind the hand does not enter it.
6. **From the visible surface to the palm centre.** The mass is that of the visible surface;
   the palm centre the crops are made around (NYU joint 34) lies inside the hand, behind it (the
   palm is 25-30 mm thick, and curled fingers come towards the camera). The centre's depth is
   moved back by ``depth_offset_mm`` along the viewing ray (u, v unchanged). The default, 28 mm,
   is measured, not guessed: on 300 frames of the project's synthetic generator (seed 11), the
   surface centre of step 5 lies on average 28 mm in front of joint 34 (docs/localization.md).

7. **Learned refinement** (`refine.py`, docs/localization.md): :func:`locate_hand` calls :func:`learned_refiner`
   and applies what it returns: a small Caffe net (:mod:`deepmodel.data.hand_crop.refine`) that looks at the
   128x128 crop around the centre and moves it to the palm centre, twice. Without its weights (or
   pycaffe) the centre is that of steps 5-6. A caller can also pass its own ``refine`` callable, or
   ``refine=None`` for the centre of mass alone.

Bad input: a frame that is not a 2-D numeric array, a camera with non-finite or non-positive
focal lengths, a bad cube or working range raise :class:`ValueError`; a frame with no valid
reading inside the working range, or none with enough support, raises :class:`HandNotFound`
(a ``ValueError``) saying why. A centre is never made up (no silent (0, 0)).

Units: u, v pixels (pixel (u, v) = column u, row v, its centre at integer coordinates, as in
:mod:`deepmodel.data.hand_crop.crop`), depth mm, 3D points mm in the camera frame (x right, y up, z = depth).
Cost: all steps are array operations (no per-pixel Python loop); steps 1-6 take about 1 ms for
640x480 on one busy core, less on a quiet one (``make bench`` measures them, and them with the
refinement and the crop).
"""
import math
from dataclasses import dataclass

import cv2
import numpy as np

CUBE_MM = 300.0          # default cube edge (the NYU pipeline's; ICVL's is 250 mm)
NEAR_MM = 100.0          # working range of the sensor: readings outside are ignored
FAR_MM = 1500.0
BIN_MM = 10.0            # depth histogram bin
SLAB_MM = 40.0           # thickness of the slab that must hold min_area_mm2 of surface
VOTE_MM = 20.0           # the region holding most readings within this of z0 is the hand
MIN_AREA_MM2 = 600.0     # surface needed within the nearest slab (a 2.5 x 2.5 cm patch)
DEPTH_OFFSET_MM = 28.0   # visible surface centre -> NYU joint 34 (calibrated on synthetic frames)
COARSE_WIDTH = 160       # the coarse frame is about this wide
TOLERANCE_MM = 0.5       # mean shift stops when the centre moves less than this


class HandNotFound(ValueError):
    """No hand in a frame: no valid reading in the working range, or none with enough support.

    The message says which, with the figures (valid pixels, range, support needed).
    """


@dataclass
class Localization:
    """What :func:`locate` found. All uvd are u, v pixels and d mm; xyz mm (camera frame, y up).

    ``center_uvd``: ``(3,)`` the crop centre (after the depth offset and any refinement);
    ``cube_mm``: the cube edge (scalar, mm); ``com_uvd``: ``(3,)`` the region's centre of mass
    before the mean shift (visible surface); ``surface_uvd``: ``(3,)`` after the mean shift, before
    the depth offset; ``near_mm``: the supported nearest depth z0; ``region_pixels``: coarse pixels
    in the connected region; ``iterations``: mean-shift steps taken; ``refined``: whether a
    refinement callable was applied; ``stride``: pixel step of the coarse frame.
    """
    center_uvd: np.ndarray
    cube_mm: float
    com_uvd: np.ndarray
    surface_uvd: np.ndarray
    near_mm: float
    region_pixels: int
    iterations: int
    refined: bool = False
    stride: int = 1


def learned_refiner(backend="caffe"):
    """The learned centre refinement (`refine.py`), when its weights are present.

    Returns a callable ``refine(depth_mm, camera, center_uvd, cube_mm) -> center_uvd``: the
    refinement net of :mod:`deepmodel.data.hand_crop.refine` (``prototxt/deploy_refine.prototxt`` with
    ``models/refine/refine_nyu.caffemodel``, two passes, loaded once per process), or ``None``
    when the weights or pycaffe are missing or the environment sets ``DEEPMODEL_NO_REFINE=1``;
    then :func:`locate_hand` returns the centre of mass of steps 5-6.
    """
    from deepmodel.data.hand_crop.refine import default_refiner

    return default_refiner(backend)


def _check_camera(camera):
    try:
        vals = [float(getattr(camera, k)) for k in ("fx", "fy", "cx", "cy")]
    except (AttributeError, TypeError, ValueError):
        raise ValueError(f"camera must have numeric fx, fy, cx, cy (a deepmodel.data.datasets.camera.Camera), "
                         f"got {camera!r}") from None
    if not all(math.isfinite(v) for v in vals):
        raise ValueError(f"camera intrinsics must be finite, got fx, fy, cx, cy = {vals}")
    if vals[0] <= 0 or vals[1] <= 0:
        raise ValueError(f"camera focal lengths must be positive, got fx={vals[0]}, fy={vals[1]}")
    return vals


def _check_depth(depth_mm):
    depth = np.asarray(depth_mm)
    if depth.ndim != 2:
        raise ValueError(f"depth frame must be a 2-D (H, W) array in mm, got shape {depth.shape}")
    if depth.shape[0] < 3 or depth.shape[1] < 3:
        raise ValueError(f"depth frame of shape {depth.shape} is too small (at least 3x3 pixels)")
    if not (np.issubdtype(depth.dtype, np.integer) or np.issubdtype(depth.dtype, np.floating)):
        raise ValueError(f"depth frame must be numeric (mm), got dtype {depth.dtype}")
    return depth


def _positive(name, value):
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a positive number of mm, got {value}")
    return v


def _coarse(depth, stride, near, far):
    """Strided, range-limited, 3x3-median-filtered float32 copy (0 = no reading)."""
    c = np.array(depth[::stride, ::stride], dtype=np.float32)     # a copy: NaN -> invalid below
    c[~((c >= near) & (c <= far))] = 0.0                          # NaN compares False: dropped
    return cv2.medianBlur(c, 3)


def _nearest_supported(z, stride, fx, fy, near, far, min_area_mm2):
    """Nearest depth (mm) at which a SLAB_MM slab holds ``min_area_mm2`` of surface, or None.

    ``z``: 1-D valid coarse depths (mm), sampled every ``stride`` pixels. Histogram in BIN_MM
    bins; a slab ``[z, z + SLAB_MM)`` is supported when it holds at least the number of coarse
    pixels ``min_area_mm2`` covers at the slab's middle depth, ``area fx fy / (z^2 stride^2)``.
    Returns ``(z0 or None, slab counts, counts needed)``, z0 the nearest depth of the first
    supported slab's first bin.
    """
    nb = int(math.ceil((far - near) / BIN_MM)) + 1
    idx = ((z - near) / BIN_MM).astype(np.int64)
    counts = np.bincount(idx, minlength=nb)
    k = int(round(SLAB_MM / BIN_MM))
    csum = np.concatenate([[0], np.cumsum(counts)])
    window = csum[np.minimum(np.arange(nb) + k, nb)] - csum[:nb]
    z_lo = near + np.arange(nb) * BIN_MM
    need = min_area_mm2 * fx * fy / (np.maximum(z_lo + SLAB_MM / 2, 1.0) ** 2 * stride * stride)
    ok = np.flatnonzero((window >= need) & (counts > 0))
    if not len(ok):
        return None, window, need
    b = int(ok[0])
    return float(z[idx == b].min()), window, need


def _xyz_mean(us, vs, ds, fx, fy, cx, cy):
    """Mean 3D point (mm) of pixels (u, v) with depths d (1-D arrays)."""
    sd = ds.sum()
    n = len(ds)
    return np.array([((us * ds).sum() - cx * sd) / (fx * n),
                     (cy * sd - (vs * ds).sum()) / (fy * n),
                     sd / n])


def _band_samples(depth, grown, s, rs, z0, band):
    """The full-resolution samples the mean shift can use, found once per frame.

    Every ``rs``-th pixel (u, v multiples of ``rs``) whose nearest coarse sample lies in the
    dilated region ``grown`` and whose depth lies in the band ``[z0, z0 + band]``:
    ``(u, v, d32)``, row by row (u, v int64, d32 float32; the depth compared as float32, as
    the steps compare it). Only the region's bounding box is read.
    """
    rows, cols = np.flatnonzero(grown.any(axis=1)), np.flatnonzero(grown.any(axis=0))
    if not len(rows):
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0, np.float32)

    def span(lo, hi, n_coarse, n):
        # pixels p whose nearest coarse sample min((p + s // 2) // s, n_coarse - 1) is in [lo, hi]
        a = max(lo * s - s // 2, 0)
        b = n if hi == n_coarse - 1 else min((hi + 1) * s - s // 2, n)
        return a + (-a % rs), b                       # from the first multiple of rs

    y0, y1 = span(rows[0], rows[-1], grown.shape[0], depth.shape[0])
    x0, x1 = span(cols[0], cols[-1], grown.shape[1], depth.shape[1])
    sub = np.asarray(depth[y0:y1:rs, x0:x1:rs], dtype=np.float32)
    us, vs = np.arange(x0, x1, rs), np.arange(y0, y1, rs)
    gy = np.minimum((vs + s // 2) // s, grown.shape[0] - 1)        # nearest coarse sample
    gx = np.minimum((us + s // 2) // s, grown.shape[1] - 1)
    m = (sub >= z0) & (sub <= z0 + band)
    m &= grown[gy][:, gx]
    iv, iu = np.nonzero(m)
    return us[iu], vs[iv], sub[iv, iu]


def _sphere_box(c, radius, near, rs, intrinsics, shape):
    """The pixel box ``(x0, x1, y0, y1)`` (half-open, clipped to the frame of ``shape``) around
    the projection of the sphere of ``radius`` mm at ``c`` (xyz mm), sized at its nearest depth
    (at least ``near``); its first row and column are multiples of ``rs`` (the same sample grid
    at every mean-shift step). None when it is empty."""
    fx, fy, cx, cy = intrinsics
    H, W = shape
    zc = max(c[2] - radius, near, 1.0)
    u_c, v_c = cx + c[0] * fx / c[2], cy - c[1] * fy / c[2]
    ax, ay = radius * fx / zc, radius * fy / zc
    x0, x1 = max(int(math.floor(u_c - ax)), 0), min(int(math.ceil(u_c + ax)) + 1, W)
    y0, y1 = max(int(math.floor(v_c - ay)), 0), min(int(math.ceil(v_c + ay)) + 1, H)
    x0 -= x0 % rs
    y0 -= y0 % rs
    return None if x1 <= x0 or y1 <= y0 else (x0, x1, y0, y1)


def _mean_shift(depth, grown, s, rs, com, z0, band, radius, near, iterations, intrinsics):
    """Step 5's mean shift from ``com`` (xyz mm): ``(centre xyz, steps taken)``.

    Each step takes the samples of :func:`_band_samples` inside the pixel box that bounds the
    sphere (``radius`` around the centre, its nearest depth at least ``near``) and within the
    sphere's depth range, and moves to the mean of those inside the sphere. The samples and
    their 3D points are computed once; a step selects among them (the same points, in the same
    order, as cutting the box out of the frame at every step, so the same means).
    """
    fx, fy, cx, cy = intrinsics
    u, v, d32 = _band_samples(depth, grown, s, rs, z0, band)
    d = d32.astype(np.float64)
    x = (u.astype(np.float64) - cx) * d / fx
    y = (cy - v.astype(np.float64)) * d / fy
    d_min, d_max = (d32.min(), d32.max()) if len(d32) else (0.0, 0.0)
    c = com.copy()
    steps = 0
    for steps in range(1, iterations + 1):
        box = _sphere_box(c, radius, near, rs, intrinsics, depth.shape)
        if box is None:
            break
        x0, x1, y0, y1 = box
        lo, hi = max(z0, c[2] - radius), min(z0 + band, c[2] + radius)
        inside = (u >= x0) & (u < x1) & (v >= y0) & (v < y1)
        if not (d_min >= lo and d_max <= hi):   # (usually all samples are in the depth range)
            inside &= (d32 >= lo) & (d32 <= hi)
        inside &= (x - c[0]) ** 2 + (y - c[1]) ** 2 + (d - c[2]) ** 2 <= radius * radius
        k = np.count_nonzero(inside)
        if not k:
            break
        # the means as ndarray.mean computes them (its sum, then / count), without its wrapper
        new = np.array([np.add.reduce(x[inside]) / k, np.add.reduce(y[inside]) / k,
                        np.add.reduce(d[inside]) / k])
        moved = float(np.linalg.norm(new - c))
        c = new
        if moved < TOLERANCE_MM:
            break
    return c, steps


def locate(depth_mm, camera, cube_mm=CUBE_MM, *, near_mm=NEAR_MM, far_mm=FAR_MM, band_mm=None,
           radius_mm=None, min_area_mm2=MIN_AREA_MM2, depth_offset_mm=DEPTH_OFFSET_MM,
           iterations=10, refine="learned", refine_stride=None):
    """The hand in one raw depth frame, with the intermediate results: a :class:`Localization`.

    Args:
        depth_mm: ``(H, W)`` depth in mm, any numeric dtype; 0 (and NaN) = no reading.
        camera: a :class:`deepmodel.data.datasets.camera.Camera` (fx, fy, cx, cy in pixels).
        cube_mm: crop cube edge (mm, scalar); returned as is, and sets the defaults below.
        near_mm, far_mm: working range; readings outside it are ignored.
        band_mm: depth band behind the nearest supported depth that may belong to the hand
            (default ``cube_mm / 2``).
        radius_mm: mean-shift sphere radius (default ``0.4 * cube_mm``).
        min_area_mm2: surface the nearest 40 mm slab must hold (mm^2).
        depth_offset_mm: added to the centre's depth (visible surface -> the hand's middle).
        iterations: maximum mean-shift steps at full resolution (0: the region's centre of mass).
        refine: ``"learned"`` (default): :func:`learned_refiner`'s callable if any;
            ``None``: no refinement; or a callable ``refine(depth_mm, camera, center_uvd, cube_mm)
            -> (3,) center_uvd``.
        refine_stride: pixel step of the full-resolution mean shift (default: 2 for frames at
            least 480 pixels wide, else 1).
    Raises:
        ValueError: bad frame, camera or parameters (message says which).
        HandNotFound: no valid reading in the working range, or none with enough support.
    """
    depth = _check_depth(depth_mm)
    fx, fy, cx, cy = _check_camera(camera)
    cube = _positive("cube_mm", cube_mm)
    near, far = float(near_mm), float(far_mm)
    if not (math.isfinite(near) and math.isfinite(far) and 0 <= near < far):
        raise ValueError(f"working range must satisfy 0 <= near_mm < far_mm (finite), got "
                         f"{near_mm}, {far_mm}")
    band = _positive("band_mm", cube / 2 if band_mm is None else band_mm)
    radius = _positive("radius_mm", 0.4 * cube if radius_mm is None else radius_mm)
    min_area = _positive("min_area_mm2", min_area_mm2)
    if isinstance(refine, str):
        if refine != "learned":
            raise ValueError(f"refine must be 'learned', None or a callable, got {refine!r}")
        refine = learned_refiner()
    elif refine is not None and not callable(refine):
        raise ValueError(f"refine must be 'learned', None or a callable, got {refine!r}")
    H, W = depth.shape
    s = max(1, W // COARSE_WIDTH)
    rs = refine_stride if refine_stride is not None else (2 if W >= 480 else 1)
    rs = max(1, int(rs))

    coarse = _coarse(depth, s, near, far)
    valid = coarse > 0
    z = coarse[valid]
    z0 = None
    if len(z):
        z0, _, _ = _nearest_supported(z, s, fx, fy, near, far, min_area)
    if z0 is None:
        raw = np.asarray(depth[::s, ::s], dtype=np.float64)
        readings = raw[np.isfinite(raw) & (raw > 0)]
        if not len(readings):
            raise HandNotFound(f"no valid depth reading in the {W}x{H} frame (all 0 or NaN)")
        n_in = int(np.count_nonzero((readings >= near) & (readings <= far)))
        if n_in == 0:
            raise HandNotFound(f"no depth reading inside the working range {near:g}-{far:g} mm "
                               f"(the readings are {readings.min():g}-{readings.max():g} mm)")
        raise HandNotFound(f"no surface of at least {min_area:g} mm^2 within a {SLAB_MM:g} mm "
                           f"slab in the working range {near:g}-{far:g} mm (only scattered "
                           f"readings: {n_in} of {raw.size} sampled pixels, {len(z)} left after "
                           f"the 3x3 median)")

    # the connected region in the band behind z0 that holds most of the nearest slab
    band_mask = valid & (coarse >= z0) & (coarse <= z0 + band)
    n_lab, labels = cv2.connectedComponents(band_mask.view(np.uint8), connectivity=8)
    slab = band_mask & (coarse <= z0 + VOTE_MM)
    votes = np.bincount(labels[slab], minlength=n_lab)
    votes[0] = 0
    region = labels == int(np.argmax(votes))
    rv, ru = np.nonzero(region)
    rd = coarse[rv, ru].astype(np.float64)
    com = _xyz_mean(ru * float(s), rv * float(s), rd, fx, fy, cx, cy)
    com_uvd = camera.xyz_to_uvd(com)

    # mean shift at full resolution within the sphere, the band and the (dilated) region
    grown = cv2.dilate(region.view(np.uint8), np.ones((3, 3), np.uint8)).view(bool)
    c, steps = _mean_shift(depth, grown, s, rs, com, z0, band, radius, near, int(iterations),
                           (fx, fy, cx, cy))
    surface_uvd = camera.xyz_to_uvd(c)
    center = surface_uvd.copy()
    center[2] += float(depth_offset_mm)

    refined = False
    if refine is not None:
        out = np.asarray(refine(depth, camera, center.copy(), cube), dtype=np.float64)
        if out.shape != (3,) or not np.all(np.isfinite(out)) or not out[2] > 0:
            raise ValueError(f"refine returned {out!r}: expected a finite (3,) u, v, d with d > 0")
        center, refined = out, True
    return Localization(center_uvd=center, cube_mm=cube, com_uvd=com_uvd, surface_uvd=surface_uvd,
                        near_mm=z0, region_pixels=int(len(rd)), iterations=steps, refined=refined,
                        stride=s)


def locate_hand(depth_mm, camera, cube_mm=CUBE_MM, **options):
    """Hand centre and cube of a raw depth frame, with no label: ``(center_uvd, cube_mm)``.

    Args:
        depth_mm: ``(H, W)`` depth in mm (any numeric dtype; 0 or NaN = no reading).
        camera: a :class:`deepmodel.data.datasets.camera.Camera` (e.g. ``NYU_CAMERA``, ``ICVL_CAMERA``).
        cube_mm: the crop cube's edge in mm (scalar; default 300, the NYU pipeline's; ICVL's 250).
        options: see :func:`locate` (working range, band, radius, refinement, ...).
    Returns:
        ``center_uvd``: ``(3,)`` float64 u, v (pixels), d (mm), the crop centre to give
        :func:`deepmodel.data.hand_crop.crop.crop_depth`; ``cube_mm``: float, the cube edge in mm (scalar, the
        same for x, y and z, as ``crop_depth`` takes it).
    Raises:
        HandNotFound: no valid depth, nothing inside the working range, or no supported surface.
        ValueError: the frame is not 2-D numeric, the camera not finite, a bad option.
    """
    loc = locate(depth_mm, camera, cube_mm, **options)
    return loc.center_uvd, loc.cube_mm
