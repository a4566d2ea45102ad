"""Fit the hand model to a depth crop: a model-based refinement of a net's pose.

A net trained on synthetic depth falls back towards its average training pose on real crops
(curled, short fingers where the real ones are straight; docs/experiments/realism.md). The crop itself says
where the hand is: :class:`DepthFitter` starts from the net's 26 angles and moves them until the
model's body explains the crop's readings, with three terms per frame:

* **data**: each of up to ``max_points`` readings of the hand (pixels nearer than the far plane)
  to the surface of its nearest body sphere. Readings farther than ``trim_mm`` from every surface
  (another object, noise) and those beyond the wrist along the hand's axis (the forearm, which
  the hand model does not contain) are left out;
* **silhouette**: a sphere whose centre projects onto the background is pulled, in the image
  plane, to the nearest hand pixel;
* **free space**: a sphere whose front lies more than ``margin_mm`` in front of the reading at its
  centre's pixel (the sensor would have seen it) is pushed back to that reading;

plus a weak prior ``prior`` (per rad^2) towards the starting finger angles. The body is the
renderer's (:class:`deepmodel.data.synthetic.body.HandBody`: sphere chains along the fingers, thumb and
palm rim) with spheres filling the palm, each a fixed combination of the model's keypoints, so
its Jacobian is the model's (:meth:`HandModel.jacobian`). Each frame is solved by damped
Gauss-Newton (a step is kept only when it lowers the cost; correspondences are found again at
every step), vectorised over a chunk of frames, from two starts: the given pose, and the same
with every finger and thumb angle at the model's rest value (an open hand); the lower cost wins.
The starts, weights and iteration count were chosen on synthetic test frames of the generator
(never on the real crops, which stay a test).

Geometry and units: crops ``(N, H, W)`` normalised depth (1 = half the cube, ``+1`` = no
reading), as :func:`deepmodel.data.hand_crop.crop.crop_depth` makes them; points and keypoints in the same
normalised frame (x right, y up, z away from the camera, origin at the crop centre). A crop's
pixel covers ``cube / W`` mm at the crop centre's depth; a reading ``z`` nearer or farther lies
at ``x = a (1 + z cube / 2 / D) + z X / D`` (``a`` the pixel's offset from the crop centre in
half crops, ``(X, Y, D)`` the crop centre in the camera frame, mm; the same for y): exact for a
pinhole camera. A crop alone does not say where its centre was: without ``center_mm`` the
centre is taken on the optical axis at ``NOMINAL_DEPTH_MM``. The body's radii are the model's
millimetres in its units (``model.mm_per_unit``).
"""
import sys

import numpy as np
from scipy import ndimage
from tqdm import tqdm

from deepmodel.data.synthetic.body import HandBody

# chosen on synthetic test frames (docs/experiments/realism.md, "Fitting the model to the depth")
ITERATIONS = 25
TRIM_MM = 18.0            # a reading farther than this from every sphere surface is not the hand's
MARGIN_MM = 3.0           # a sphere may stand this far in front of the reading at its pixel
PRIOR = 2e-4              # weight of (finger angle - start)^2, rad^-2, beside mean squared units
SILHOUETTE_WEIGHT = 1.0
NOMINAL_DEPTH_MM = 750.0  # the crop centre's depth assumed for the perspective factor
MAX_POINTS = 800
FINGER_COLUMNS = slice(6, None)   # theta columns of the thumb and fingers (0-5: global pose)


class DepthFitter:
    """Fit :class:`hand_model.HandModel` angles to depth crops.

    ``fit(crops (N, H, W), theta (N, 26), center_mm=None, cube_mm=None)`` -> ``dict(theta
    (N, 26), cost_start (N,), cost (N,), start (N,) int: 0 = from the given pose, 1 = from the
    open hand)``. ``cube_mm``: the crops' cube edge (a number, or per frame in ``fit``; default
    twice the model's mm per unit, NYU's 300 mm); ``starts``: 1 (the given pose only) or 2;
    ``chunk``: frames solved together (memory: about ``chunk x max_points x spheres`` doubles).
    """

    def __init__(self, model, iterations=ITERATIONS, trim_mm=TRIM_MM, margin_mm=MARGIN_MM,
                 prior=PRIOR, silhouette_weight=SILHOUETTE_WEIGHT, cube_mm=None,
                 max_points=MAX_POINTS, starts=2, chunk=16):
        if starts not in (1, 2):
            raise ValueError(f"starts must be 1 or 2, not {starts!r}")
        self.model = model
        self.unit = float(model.mm_per_unit)
        self.cube = float(cube_mm) if cube_mm else 2.0 * self.unit
        body = HandBody(model)
        self.wrist_w = body.wrist_w
        W = list(body.W[:body.forearm.start])          # fingers, thumb, palm rim (no forearm)
        R = list(body.R[:body.forearm.start])
        eye = np.eye(model.num_keypoints)
        ring = body.PALM_RING
        W.append(eye[24])                               # the palm's inside: fans from its centre
        R.append(body.PALM_RADIUS)
        for i in range(len(ring)):
            a = eye[ring[i]] - eye[24]
            b = eye[ring[(i + 1) % len(ring)]] - eye[24]
            for s in (0.25, 0.5, 0.75):
                for t in (0.0, 0.33, 0.66):
                    W.append(eye[24] + s * ((1 - t) * a + t * b))
                    R.append(body.PALM_RADIUS)
        self.W = np.array(W)                            # (S, 31) keypoint weights
        self.radius = np.array(R) / self.unit           # (S,) normalised units
        self.iterations = int(iterations)
        self.trim = trim_mm / self.unit
        self.margin = margin_mm / self.unit
        self.prior = float(prior)
        self.w_sil = float(silhouette_weight)
        self.max_points = int(max_points)
        self.starts = starts
        self.chunk = int(chunk)
        self.lower = np.asarray(model.lower, np.float64)
        self.upper = np.asarray(model.upper, np.float64)

    # ------------------------------------------------------------------ crop geometry
    @staticmethod
    def lateral(rows, cols, z, h, w, view):
        """Pixels ``(rows, cols)`` of an ``(h, w)`` crop at normalised depths ``z`` -> x, y;
        ``view = (p, sx, sy)``: half the cube and the centre's X and Y, each over its depth D
        (broadcasting against ``z``)."""
        p, sx, sy = view
        f = 1.0 + p * z
        return ((cols + 0.5 - w / 2) / (w / 2) * f + sx * z,
                (h / 2 - rows - 0.5) / (h / 2) * f + sy * z)

    @staticmethod
    def project(xyz, h, w, view):
        """``(..., 3)`` points -> nearest pixel (rows, cols) ``(...)`` int, clipped to the crop."""
        p, sx, sy = view
        z = xyz[..., 2]
        f = 1.0 + p * z
        cols = np.rint(w / 2 * (1 + (xyz[..., 0] - sx * z) / f) - 0.5).astype(np.int64)
        rows = np.rint(h / 2 * (1 - (xyz[..., 1] - sy * z) / f) - 0.5).astype(np.int64)
        return np.clip(rows, 0, h - 1), np.clip(cols, 0, w - 1)

    def _frames(self, crops, center, cube):
        """Per-frame data of a chunk: sampled points ``(n, P, 3)`` with a mask, the hand mask and,
        per pixel, the nearest hand pixel (for the silhouette term)."""
        n, h, w = crops.shape
        pts = np.zeros((n, self.max_points, 3))
        mask = np.zeros((n, self.max_points))
        fg = crops < 1.0 - 1e-3
        near = np.zeros((n, 2, h, w), np.int64)
        view = np.stack([cube / 2.0, center[:, 0], center[:, 1]]) / center[:, 2]
        for i in range(n):                              # setup only: sampling and distance maps
            # a regular grid of the hand's pixels, as fine as max_points allows
            step = max(1, int(np.sqrt(fg[i].sum() / self.max_points)))
            while (fg[i, ::step, ::step]).sum() > self.max_points:
                step += 1
            rows, cols = np.nonzero(fg[i, ::step, ::step])
            rows, cols = rows * step, cols * step
            z = crops[i, rows, cols]
            pts[i, :len(rows)] = np.stack([*self.lateral(rows, cols, z, h, w, view[:, i]), z], 1)
            mask[i, :len(rows)] = 1.0
            if fg[i].any():
                near[i] = ndimage.distance_transform_edt(~fg[i], return_indices=True)[1]
            else:
                near[i] = np.indices((h, w))
        return {"crops": crops, "pts": pts, "mask": mask, "fg": fg, "near": near, "view": view}

    # ------------------------------------------------------------------ residuals
    def residuals(self, theta, fr, jacobian=True):
        """Weighted residuals ``(n, R)`` of a chunk (data, then silhouette x, y, free space z
        per sphere) and, with ``jacobian``, their derivatives ``(n, R, 26)``."""
        n = len(theta)
        kp = self.model.forward(theta)                                    # (n, 31, 3)
        c = np.einsum("sk,nkd->nsd", self.W, kp)                          # (n, S, 3)
        pts, mask = fr["pts"], fr["mask"]
        # |p - c|^2 as |p|^2 - 2 p.c + |c|^2 (one matrix product, no (n, P, S, 3) array)
        d2 = (np.einsum("npd,npd->np", pts, pts)[:, :, None] - 2.0 * pts @ c.transpose(0, 2, 1)
              + np.einsum("nsd,nsd->ns", c, c)[:, None, :])
        surf = np.sqrt(np.maximum(d2, 0.0)) - self.radius                 # (n, P, S)
        best = np.argmin(np.abs(surf), axis=2)                            # (n, P)
        ni, pi = np.arange(n)[:, None], np.arange(pts.shape[1])[None, :]
        d = pts - c[ni, best]                                             # (n, P, 3) to its sphere
        dist = np.sqrt(np.einsum("npd,npd->np", d, d))
        r_data = dist - self.radius[best]
        # the forearm: readings behind the wrist along the hand's axis
        wrist = np.einsum("k,nkd->nd", self.wrist_w, kp)
        axis = kp[:, 24] - wrist
        axis /= np.linalg.norm(axis, axis=1, keepdims=True)
        beyond = np.einsum("npd,nd->np", pts - wrist[:, None], axis) < 0
        w_data = mask * (np.abs(r_data) < self.trim) * ~beyond
        w_data /= np.sqrt(np.maximum(mask.sum(axis=1, keepdims=True), 1.0))
        # silhouette and free space, per sphere centre
        crops, fg, near = fr["crops"], fr["fg"], fr["near"]
        _, h, w = crops.shape
        view = fr["view"][:, :, None]
        rows, cols = self.project(c, h, w, view)                          # (n, S)
        bg = ~fg[ni, rows, cols]
        qr, qc = near[ni, 0, rows, cols], near[ni, 1, rows, cols]
        qx, qy = self.lateral(qr, qc, c[..., 2], h, w, view)   # the pixel at the sphere's depth
        seen = crops[ni, rows, cols].astype(np.float64)
        front = c[..., 2] - self.radius
        ahead = ~bg & (front < seen - self.margin)
        w_s = self.w_sil / np.sqrt(c.shape[1])
        r_x = np.where(bg, c[..., 0] - qx, 0.0) * w_s
        r_y = np.where(bg, c[..., 1] - qy, 0.0) * w_s
        r_z = np.where(ahead, front - seen, 0.0) * w_s
        res = np.concatenate([r_data * w_data, r_x, r_y, r_z], axis=1)
        if not jacobian:
            return res, None
        jk = self.model.jacobian(theta).reshape(n, -1, 3, theta.shape[1])
        jc = np.einsum("sk,nkdj->nsdj", self.W, jk)                       # (n, S, 3, 26)
        normal = d / np.maximum(dist, 1e-12)[..., None]
        j_data = -np.einsum("npd,npdj->npj", normal, jc[ni, best]) * w_data[..., None]
        # the nearest pixel's lateral position moves with the sphere's depth (linear in z)
        x0, y0 = self.lateral(qr, qc, 0.0, h, w, view)
        x1, y1 = self.lateral(qr, qc, 1.0, h, w, view)
        j_x = (jc[:, :, 0] - (x1 - x0)[..., None] * jc[:, :, 2]) * (bg * w_s)[..., None]
        j_y = (jc[:, :, 1] - (y1 - y0)[..., None] * jc[:, :, 2]) * (bg * w_s)[..., None]
        j_z = jc[:, :, 2] * (ahead * w_s)[..., None]
        return res, np.concatenate([j_data, j_x, j_y, j_z], axis=1)

    def cost(self, theta, anchor, fr):
        """``(n,)`` sum of squared residuals plus the prior on finger angles."""
        res, _ = self.residuals(theta, fr, jacobian=False)
        dev = (theta - anchor)[:, FINGER_COLUMNS]
        return np.einsum("nr,nr->n", res, res) + self.prior * np.einsum("nj,nj->n", dev, dev)

    # ------------------------------------------------------------------ solver
    def _solve(self, theta, fr):
        """Damped Gauss-Newton on a chunk from ``theta`` ``(n, 26)`` (clipped to the limits, the
        prior's anchor) -> (theta, the cost at the start, the final cost)."""
        theta = np.clip(theta, self.lower, self.upper)
        anchor = theta.copy()
        k = theta.shape[1]
        prior = np.zeros(k)
        prior[FINGER_COLUMNS] = self.prior
        cost0 = cost = self.cost(theta, anchor, fr)
        damp = np.full(len(theta), 1e-2)
        diag = np.arange(k)
        for _ in range(self.iterations):
            res, jac = self.residuals(theta, fr)
            g = np.einsum("nrj,nr->nj", jac, res) + prior * (theta - anchor)
            hess = np.einsum("nri,nrj->nij", jac, jac)
            hess[:, diag, diag] += prior
            a = hess.copy()
            a[:, diag, diag] += damp[:, None] * (hess[:, diag, diag] + 1e-6)
            step = np.linalg.solve(a, -g[..., None])[..., 0]
            trial = np.clip(theta + step, self.lower, self.upper)
            c_trial = self.cost(trial, anchor, fr)
            ok = c_trial < cost
            theta = np.where(ok[:, None], trial, theta)
            cost = np.where(ok, c_trial, cost)
            damp = np.where(ok, np.maximum(damp / 3.0, 1e-4), damp * 4.0)
        return theta, cost0, cost

    def fit(self, crops, theta, center_mm=None, cube_mm=None, progress=False):
        """Fit every crop from ``theta``; ``center_mm``: ``(N, 3)`` or ``(3,)`` each crop's
        centre in the camera frame (x right, y up, z = depth; default on the optical axis at
        ``NOMINAL_DEPTH_MM``); ``cube_mm``: a number or ``(N,)`` (default the fitter's);
        ``progress``: a progress bar (frames) on stderr. See the class docstring for shapes."""
        crops = np.asarray(crops, np.float64)
        theta = np.asarray(theta, np.float64)
        center = np.broadcast_to(np.asarray((0.0, 0.0, NOMINAL_DEPTH_MM) if center_mm is None
                                            else center_mm, np.float64), (len(crops), 3))
        if not np.all(center[:, 2] > 0):
            raise ValueError(f"crop centre depths must be positive, got {center[:, 2].min()}")
        cube = np.broadcast_to(np.asarray(self.cube if cube_mm is None else cube_mm, np.float64),
                               (len(crops),))
        if not np.all(cube > 0):
            raise ValueError(f"cube edges must be positive, got {cube.min()}")
        if crops.ndim != 3 or theta.shape != (len(crops), self.model.num_free):
            raise ValueError(f"fit takes crops (N, H, W) and theta (N, {self.model.num_free}); "
                             f"got {crops.shape} and {theta.shape}")
        open_hand = theta.copy()
        open_hand[:, FINGER_COLUMNS] = 0.0
        out = {"theta": np.empty_like(theta), "cost_start": np.empty(len(theta)),
               "cost": np.empty(len(theta)), "start": np.zeros(len(theta), np.int64)}
        bar = tqdm(total=len(crops), desc="fit", unit="frame", disable=not progress, file=sys.stderr)
        for lo in range(0, len(crops), self.chunk):
            sl = slice(lo, lo + self.chunk)
            fr = self._frames(crops[sl], center[sl], cube[sl])
            t, c0, c = self._solve(theta[sl], fr)
            if self.starts == 2:
                t2, _, c2 = self._solve(open_hand[sl], fr)
                better = c2 < c
                t[better], c[better] = t2[better], c2[better]
                out["start"][sl] = better
            out["theta"][sl], out["cost_start"][sl], out["cost"][sl] = t, c0, c
            bar.update(len(t))
        bar.close()
        return out
