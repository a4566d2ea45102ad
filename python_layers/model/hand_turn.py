"""Turn depth crops in their plane so that the hand points up, and turn points with them.

Crops are ``(N, H, W)`` (or ``(N, 1, H, W)``) normalised depth in [-1, 1], background at 1
(``deepmodel.data.hand_crop.crop``: the far face of the cube), rows going down. Angles are in radians,
counter-clockwise in the label frame (x right, y up; the crop's rows run against y), and turn a
crop about the centre of its centre pixel ((W - 1) / 2, (H - 1) / 2). Keypoints ``(N, 3K)`` are
x0, y0, z0, x1, ... in normalised units about the crop centre; a turn by ``phi`` rotates their
x, y about the z axis through the crop centre, as it turns the crop's pixels (docs/experiments/realism.md,
"Every crop turned to its hand").

The angle that brings a crop's hand up (:func:`hand_angle`):

1. The forearm's direction ``a``: the centre of the longest run of foreground pixels
   (normalised depth under :data:`FOREGROUND`) along the crop's border, looked for in a band of
   2 pixels, else 10 (runs of at least 18 pixels: 37-42 mm in NYU's cubes, narrower than a
   wrist, wider than two fingers reaching the border side by side); else, for a forearm leaving
   the cube through its back, the mean direction from the centre of the farthest quarter of the
   foreground more than 20 pixels from the centre. With none of these, ``a`` points down.
2. The hand's pixels: the foreground within 45 pixels of the centre and at most 8 pixels towards
   ``a`` (their offset along ``a``). The direction from the centre to their centroid points to the
   fingers; where that centroid lies within 4 pixels of the centre, the direction opposite ``a``.
3. The angle turns that direction up. A crop with neither a forearm nor a hand off centre
   (an empty crop) is not turned (angle 0).

With a straight wrist this is the turn that points the forearm down; with a bent one it follows
the hand. Everything is vectorised over the batch (NumPy); no loop over samples.
"""
import functools

import cv2
import numpy as np

FOREGROUND = 0.99          # normalised depth under this is foreground (the background is 1)
BANDS = (2, 10)            # border bands (pixels) searched for the forearm, in turn
MIN_RUN = 18               # shortest run of border pixels taken for a forearm
FAR_QUANTILE = 0.75        # fall-back: the farthest quarter of the foreground ...
FAR_MIN_RADIUS = 20.0      # ... farther than this from the centre (pixels) ...
FAR_MIN_PIXELS = (50, 10)  # ... with at least this much foreground / far pixels ...
FAR_MIN_LENGTH = 0.3       # ... and their mean unit direction at least this long
HAND_RADIUS = 45.0         # the hand: foreground within this many pixels of the centre ...
ARM_SIDE = 8.0             # ... and at most this far towards the forearm
MIN_OFFSET = 4.0           # a hand centroid nearer the centre than this gives no direction
REMAP_ROWS = 16384         # rows per cv2.remap call (it keeps source rows in 16-bit integers)


@functools.lru_cache(maxsize=4)
def _grid(h, w):
    """Pixel tables of an ``h`` x ``w`` crop (flattened): ``offsets`` (2, H*W) dx, dy from the
    centre (image columns, rows); the indices of the pixels within :data:`HAND_RADIUS` (``disk``)
    and beyond :data:`FAR_MIN_RADIUS` (``ring``); ``disk_offsets`` (2, P) the offsets of the disk's
    pixels; ``disk_sums`` / ``ring_sums`` ((P, 3): dx, dy, 1 of the disk's pixels, and their unit
    directions ux, uy, 1 for the ring's; a mask's product with them gives the sums and the
    count)."""
    rows, cols = np.mgrid[0:h, 0:w]
    offsets = np.stack([cols - (w - 1) / 2.0, rows - (h - 1) / 2.0]).reshape(2, -1)
    rad = np.hypot(*offsets)
    units = offsets / np.maximum(rad, 1e-9)
    disk, ring = np.flatnonzero(rad < HAND_RADIUS), np.flatnonzero(rad > FAR_MIN_RADIUS)
    near = offsets[:, disk]
    return {"offsets": offsets, "disk": disk, "ring": ring, "disk_offsets": near,
            "disk_sums": np.vstack([near, np.ones(len(disk))]).T,
            "ring_sums": np.vstack([units[:, ring], np.ones(len(ring))]).T}


def _as_stack(crops):
    """``(N, H, W)`` view of ``(N, H, W)`` or ``(N, 1, H, W)`` crops; ValueError otherwise."""
    crops = np.asarray(crops)
    if crops.ndim == 4 and crops.shape[1] == 1:
        crops = crops[:, 0]
    if crops.ndim != 3 or crops.shape[1] < 3 or crops.shape[2] < 3:
        raise ValueError(f"crops of shape {crops.shape}: expected (N, H, W) or (N, 1, H, W)")
    return crops


@functools.lru_cache(maxsize=4)
def _perimeter(h, w):
    """``(P, 2)`` (row, col) of the border pixels, clockwise from the top-left corner."""
    top = [(0, c) for c in range(w)]
    right = [(r, w - 1) for r in range(1, h)]
    bottom = [(h - 1, c) for c in range(w - 2, -1, -1)]
    left = [(r, 0) for r in range(h - 2, 0, -1)]
    return np.array(top + right + bottom + left)


@functools.lru_cache(maxsize=4)
def _perimeter_cumsum(h, w):
    """``(2P + 1, 2)``: cumulative sums of the (row, col) of the border pixels gone round twice,
    from 0 (the sum of a run of them is a difference of two rows)."""
    per = _perimeter(h, w)
    return np.concatenate([np.zeros((1, 2)), np.cumsum(np.concatenate([per, per]), axis=0)])


@functools.lru_cache(maxsize=8)
def _border_band(h, w, band):
    """Flat pixel indices ``(P, band)``: each border pixel and the ``band - 1`` pixels inward
    from it (a corner pixel goes inward along its row and column at once)."""
    per = _perimeter(h, w)
    r, c = per[:, :1], per[:, 1:]
    k = np.arange(band)
    rr = np.clip(np.where(r == 0, r + k, np.where(r == h - 1, r - k, r)), 0, h - 1)
    cc = np.clip(np.where(c == 0, c + k, np.where(c == w - 1, c - k, c)), 0, w - 1)
    return rr * w + cc


def _border_foreground(fg, band):
    """``(N, P)``: is the border pixel, or one of the ``band`` pixels inward from it, foreground."""
    n, h, w = fg.shape
    return fg.reshape(n, -1)[:, _border_band(h, w, band)].any(axis=2), _perimeter(h, w)


def _longest_border_run(fg, band):
    """``(dx, dy, found)``: offset from the centre (image columns, rows) of the middle of each
    crop's longest circular run of border foreground, and whether there is one of at least
    :data:`MIN_RUN` pixels (a border all foreground or all background has none)."""
    _, h, w = fg.shape
    b, per = _border_foreground(fg, band)
    p = len(per)
    twice = np.concatenate([b, b], axis=1)                     # runs that wrap round, unbroken
    idx = np.arange(2 * p)
    last_gap = np.maximum.accumulate(np.where(twice, -1, idx), axis=1)
    length = idx - last_gap                                    # run length ending at each pixel
    end = p + np.argmax(length[:, p:], axis=1)                 # every run ends once in [p, 2p)
    run = length[np.arange(len(b)), end]
    partial = b.any(axis=1) & ~b.all(axis=1)
    found = partial & (run >= MIN_RUN)
    # mean position of the run's pixels: differences of cumulative sums over the doubled border
    cum = _perimeter_cumsum(h, w)
    n = np.maximum(run, 1)[:, None]
    mean = (cum[end + 1] - cum[end + 1 - np.maximum(run, 1)]) / n
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    return mean[:, 1] - cx, mean[:, 0] - cy, found


def _far_direction(crops, fg):
    """``(dx, dy, found)``: the mean unit direction (image columns, rows) from the centre of the
    farthest quarter of each crop's foreground beyond :data:`FAR_MIN_RADIUS` pixels."""
    n, h, w = crops.shape
    # the quantile of each crop's foreground depth (linear, as np.quantile), from one sort:
    # background is set to +inf so it sorts last
    count = fg.reshape(n, -1).sum(axis=1)
    enough = count >= FAR_MIN_PIXELS[0]
    ordered = np.sort(np.where(fg, crops, np.inf).reshape(n, -1), axis=1)
    pos = FAR_QUANTILE * (np.maximum(count, 1) - 1)
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, np.maximum(count, 1) - 1)
    e = np.flatnonzero(enough)
    low, high = ordered[e, lo[e]], ordered[e, hi[e]]
    thr = np.full(n, np.inf)
    thr[e] = low + (pos[e] - lo[e]) * (high - low)
    g = _grid(h, w)
    ring = g["ring"]                                           # the pixels far from the centre
    far = (fg.reshape(n, -1)[:, ring]) & (crops.reshape(n, -1)[:, ring] >= thr[:, None])
    sums = far.astype(np.float64) @ g["ring_sums"]
    count = sums[:, 2]
    vx, vy = sums[:, 0] / np.maximum(count, 1), sums[:, 1] / np.maximum(count, 1)
    found = enough & (count >= FAR_MIN_PIXELS[1]) & (np.hypot(vx, vy) >= FAR_MIN_LENGTH)
    return vx, vy, found


def forearm_direction(crops):
    """``(N, 2)`` unit direction (image columns, rows; rows down) from each crop's centre to its
    forearm, and ``(N,)`` whether one was found (else the direction is down, ``(0, 1)``)."""
    crops = _as_stack(crops)
    fg = crops < FOREGROUND
    n = len(crops)
    vx, vy, found = np.zeros(n), np.ones(n), np.zeros(n, bool)
    # each way in turn, on the crops the ways before it left without a forearm
    ways = [lambda c, f, band=band: _longest_border_run(f, band) for band in BANDS]
    for way in ways + [_far_direction]:
        rest = np.flatnonzero(~found)
        if not len(rest):
            break
        dx, dy, ok = way(crops[rest], fg[rest])
        new = rest[ok]
        vx[new], vy[new], found[new] = dx[ok], dy[ok], True
    norm = np.hypot(vx, vy)
    unit = np.where(norm[:, None] > 0, np.stack([vx, vy], 1) / np.maximum(norm, 1e-12)[:, None],
                    [[0.0, 1.0]])
    return unit, found


def hand_angle(crops):
    """``(N,)`` angles (radians, in (-pi, pi]) that turn each crop's hand up (module docstring).

    crops: ``(N, H, W)`` or ``(N, 1, H, W)`` normalised depth, background 1.
    """
    crops = _as_stack(crops)
    arm, arm_found = forearm_direction(crops)
    n, h, w = crops.shape
    g = _grid(h, w)
    disk = g["disk"]                                           # the pixels near the centre
    near = crops.reshape(n, -1)[:, disk] < FOREGROUND
    hand = near & (arm @ g["disk_offsets"] < ARM_SIDE)         # not far towards the forearm
    sums = hand.astype(np.float64) @ g["disk_sums"]
    count = np.maximum(sums[:, 2], 1)
    mx, my = sums[:, 0] / count, sums[:, 1] / count
    off = np.hypot(mx, my) >= MIN_OFFSET
    fx = np.where(off, mx, -arm[:, 0])
    fy = np.where(off, my, -arm[:, 1])
    # the fingers' direction in the label frame (y up) is (fx, -fy); turn it to (0, 1)
    phi = np.pi / 2 - np.arctan2(-fy, fx)
    phi = np.pi - np.mod(np.pi - phi, 2 * np.pi)               # wrap into (-pi, pi]
    return np.where(arm_found | off, phi, 0.0)


def turn_crops(crops, phi, background=1.0, out=None):
    """Crops turned counter-clockwise (y up) by ``phi`` about their centre, nearest neighbour.

    crops: ``(N, H, W)`` or ``(N, 1, H, W)``; phi: ``(N,)`` radians. Pixels coming from outside
    the crop are ``background``. Returns an array of the crops' shape and dtype (or fills ``out``).
    """
    src = np.asarray(crops)
    stack = np.ascontiguousarray(_as_stack(src))
    n, h, w = stack.shape
    phi = np.asarray(phi, np.float64).reshape(n)
    dx, dy = (np.float32(v).reshape(h, w) for v in _grid(h, w)["offsets"])
    result = np.empty((n, h, w), src.dtype) if out is None else out.reshape(n, h, w)
    # OpenCV's remap, on the crops stacked into one tall image (a chunk of crops per call, not
    # a loop over samples): each output pixel's source is the output turned back by -phi, in
    # the label frame (y up = -dy); what falls outside its own crop is sent off the image
    per = max(1, REMAP_ROWS // h)
    for start in range(0, n, per):
        k = min(n, start + per) - start
        c = np.cos(phi[start:start + k]).astype(np.float32)[:, None, None]
        s = np.sin(phi[start:start + k]).astype(np.float32)[:, None, None]
        sc = (w - 1) / 2.0 + c * dx - s * dy
        sr = (h - 1) / 2.0 + s * dx + c * dy
        outside = (sc < -0.5) | (sc >= w - 0.5) | (sr < -0.5) | (sr >= h - 0.5)
        sr += (np.arange(k, dtype=np.float32) * h)[:, None, None]
        sc[outside] = -2.0 * w
        turned = cv2.remap(stack[start:start + k].reshape(k * h, w), sc.reshape(k * h, w),
                           sr.reshape(k * h, w), cv2.INTER_NEAREST,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=float(background))
        result[start:start + k] = turned.reshape(k, h, w)
    return result.reshape(src.shape) if out is None else out


def turn_points(points, phi, out=None):
    """Keypoints ``(N, 3K)`` (or ``(N, K, 3)``) with x, y turned counter-clockwise by ``phi``
    (``(N,)`` radians) about the z axis; z unchanged. float64 inside; returns the input's shape
    (or fills ``out``). The gradient of this map is the turn by ``-phi``."""
    pts = np.asarray(points)
    n = len(pts)
    xyz = pts.reshape(n, -1, 3).astype(np.float64)
    phi = np.asarray(phi, np.float64).reshape(n)
    c, s = np.cos(phi)[:, None], np.sin(phi)[:, None]
    x, y = xyz[..., 0].copy(), xyz[..., 1].copy()
    xyz[..., 0] = c * x - s * y
    xyz[..., 1] = s * x + c * y
    if out is None:
        return xyz.reshape(pts.shape)
    out[...] = xyz.reshape(out.shape)
    return out
