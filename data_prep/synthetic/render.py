"""Depth rendering of sphere sets through a z-buffer, and a depth-sensor model.

Spheres are intersected exactly with each pixel's camera ray inside the sphere's projected box only,
vectorised over all spheres of a batch of frames; the nearest hit per pixel wins (``np.minimum.at``
on the flattened z-buffer). Units: mm, pixels; depth = z of the camera frame (x right, y up).
"""
import numpy as np


def render_spheres(zbuf, centers, radii, camera):
    """Render spheres into ``zbuf`` (in place; keeps the nearer of the old and new depth).

    Args:
        zbuf: ``(B, H, W)`` float32 depth buffer (mm), e.g. the background (or +inf).
        centers: ``(B, S, 3)`` sphere centres in mm (camera frame, y up, z > radius).
        radii: ``(B, S)`` or ``(S,)`` radii in mm.
        camera: :class:`deepmodel.data.datasets.camera.Camera`.
    Returns:
        ``(B, 4)`` int pixel bounding box ``(u0, u1, v0, v1)`` (half-open, clipped to the image) of
        everything drawn per frame (``u1 <= u0`` when nothing is visible).

    Spheres are grouped by the side of their square pixel box; each group is one broadcast
    computation ``(n, side, side)`` of the ray-sphere intersection.
    """
    B, H, W = zbuf.shape
    S = np.shape(centers)[1]
    c = np.asarray(centers, np.float64).reshape(-1, 3)
    r = np.broadcast_to(np.asarray(radii, np.float64), (B, S)).reshape(-1)
    frame = np.repeat(np.arange(B), S)
    X, Y, Z = c[:, 0], c[:, 1], c[:, 2]
    keep = Z > r + 1.0
    Zs = np.where(keep, Z, 1.0)
    uc = camera.cx + camera.fx * X / Zs
    vc = camera.cy - camera.fy * Y / Zs
    # projected radius of the silhouette (half-angle asin(r / distance)) with a margin
    f = max(camera.fx, camera.fy)
    rp = f * r / np.sqrt(np.maximum(Z * Z - r * r, 1.0)) * 1.02 + 1.0
    u0 = np.floor(uc - rp).astype(np.int64)
    v0 = np.floor(vc - rp).astype(np.int64)
    side = np.ceil(2 * rp).astype(np.int64) + 1
    keep &= (u0 + side > 0) & (u0 < W) & (v0 + side > 0) & (v0 < H)
    bbox = np.zeros((B, 4), np.int64)
    bbox[:, 0], bbox[:, 2] = W, H
    if not keep.any():
        return bbox
    flat_z = zbuf.reshape(-1)
    cc_all = (c * c).sum(axis=1) - r * r
    idx_all = np.flatnonzero(keep)
    order = idx_all[np.argsort(side[idx_all], kind="stable")]
    sides = side[order]
    bounds = np.flatnonzero(np.diff(sides)) + 1
    for grp in np.split(order, bounds):
        s = int(side[grp[0]])
        ar = np.arange(s)
        U = u0[grp, None] + ar                                   # (n, s) columns
        V = v0[grp, None] + ar                                   # (n, s) rows
        dx = ((U - camera.cx) / camera.fx).astype(np.float32)
        dy = ((camera.cy - V) / camera.fy).astype(np.float32)
        Xg, Yg, Zg = (X[grp, None].astype(np.float32), Y[grp, None].astype(np.float32),
                      Z[grp, None].astype(np.float32))
        # ray p(t) = t (dx, dy, 1): a t^2 - 2 b t + cc = 0, near root t = (b - sqrt(b^2 - a cc)) / a
        a = (dx * dx)[:, None, :] + (dy * dy + 1.0)[:, :, None]
        b = (dx * Xg)[:, None, :] + (dy * Yg + Zg)[:, :, None]
        disc = b * b - a * cc_all[grp, None, None].astype(np.float32)
        hit = disc >= 0
        hit &= ((U >= 0) & (U < W))[:, None, :]
        hit &= ((V >= 0) & (V < H))[:, :, None]
        n_i, v_i, u_i = np.nonzero(hit)
        if not len(n_i):
            continue
        t = (b[n_i, v_i, u_i] - np.sqrt(disc[n_i, v_i, u_i])) / a[n_i, v_i, u_i]
        fr = frame[grp][n_i]
        uu = U[n_i, u_i]
        vv = V[n_i, v_i]
        np.minimum.at(flat_z, (fr * H + vv) * W + uu, t)
        g_fr = frame[grp]
        np.minimum.at(bbox[:, 0], g_fr, np.maximum(u0[grp], 0))
        np.maximum.at(bbox[:, 1], g_fr, np.minimum(u0[grp] + s, W))
        np.minimum.at(bbox[:, 2], g_fr, np.maximum(v0[grp], 0))
        np.maximum.at(bbox[:, 3], g_fr, np.minimum(v0[grp] + s, H))
    return bbox


def render_slabs(zbuf, center, e1, e2, normal, polygon, half, camera, bbox=None):
    """Render the camera-facing side of flat slabs (a convex polygon with a thickness) into ``zbuf``.

    Args:
        zbuf: ``(B, H, W)`` float32 depth buffer (mm), updated in place (nearer depth wins).
        center: ``(B, 3)`` a point of each slab's mid-plane (mm); ``e1, e2``: ``(B, 3)`` orthonormal
            in-plane axes; ``normal``: ``(B, 3)`` unit normal.
        polygon: ``(P, 2)`` convex outline in (e1, e2) coordinates about ``center`` (mm), any
            orientation; the same for every frame (rigid slab).
        half: ``(B,)`` half-thickness (mm): the visible face lies ``half`` in front of the mid-plane.
        bbox: optional ``(B, 4)`` int boxes ``(u0, u1, v0, v1)`` to grow by what is drawn.
    The slab's rim is not drawn (render sphere chains along the outline for a rounded rim).
    """
    B, H, W = zbuf.shape
    poly = np.asarray(polygon, np.float64)
    edge = np.roll(poly, -1, axis=0) - poly
    area2 = np.sum(poly[:, 0] * np.roll(poly[:, 1], -1) - np.roll(poly[:, 0], -1) * poly[:, 1])
    orient = 1.0 if area2 > 0 else -1.0
    # inside <=> for every edge i: orient * (edge_x (y - p_y) - edge_y (x - p_x)) >= 0
    ea, eb = -orient * edge[:, 1], orient * edge[:, 0]
    ec = -(ea * poly[:, 0] + eb * poly[:, 1])
    for i in range(B):
        c, n = np.asarray(center[i], np.float64), np.asarray(normal[i], np.float64)
        side = -1.0 if n @ c > 0 else 1.0                    # face towards the camera (origin)
        q = c + side * half[i] * n
        corners = q + poly[:, :1] * e1[i] + poly[:, 1:] * e2[i]   # (P, 3)
        if np.any(corners[:, 2] <= 1.0):
            continue
        uvd = camera.xyz_to_uvd(corners)
        u0, u1 = int(max(np.floor(uvd[:, 0].min()), 0)), int(min(np.ceil(uvd[:, 0].max()) + 1, W))
        v0, v1 = int(max(np.floor(uvd[:, 1].min()), 0)), int(min(np.ceil(uvd[:, 1].max()) + 1, H))
        if u1 <= u0 or v1 <= v0:
            continue
        dx = ((np.arange(u0, u1) - camera.cx) / camera.fx)
        dy = ((camera.cy - np.arange(v0, v1)) / camera.fy)
        nd = (n[0] * dx)[None, :] + (n[1] * dy + n[2])[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (n @ q) / nd                                 # ray p = t (dx, dy, 1) meets the face
        x = t * ((e1[i][0] * dx)[None, :] + (e1[i][1] * dy + e1[i][2])[:, None]) - e1[i] @ c
        y = t * ((e2[i][0] * dx)[None, :] + (e2[i][1] * dy + e2[i][2])[:, None]) - e2[i] @ c
        inside = t > 0
        for k in range(len(poly)):
            inside &= ea[k] * x + eb[k] * y + ec[k] >= 0
        region = zbuf[i, v0:v1, u0:u1]
        np.minimum(region, np.where(inside, t, np.inf).astype(np.float32), out=region)
        if bbox is not None and inside.any():
            rows = np.flatnonzero(inside.any(axis=1))
            cols = np.flatnonzero(inside.any(axis=0))
            bbox[i, 0] = min(bbox[i, 0], u0 + cols[0])
            bbox[i, 1] = max(bbox[i, 1], u0 + cols[-1] + 1)
            bbox[i, 2] = min(bbox[i, 2], v0 + rows[0])
            bbox[i, 3] = max(bbox[i, 3], v0 + rows[-1] + 1)
    return bbox


class SensorModel:
    """A structured-light depth sensor: disparity quantisation, noise, missing pixels.

    ``quant_mm2``: depth is quantised in inverse depth, ``z = q / round(q / z)``, so the step is
    about ``z^2 / q`` (2 mm at 800 mm for the default, like the Kinect depth of NYU); ``noise``:
    std of a Gaussian on ``q / z`` before rounding (in quantisation steps); ``edge_drop``:
    probability that a pixel at a depth edge (a jump over ``edge_mm`` to a 4-neighbour) has no
    reading; ``drop``: probability of a missing reading anywhere on the hand.
    """

    def __init__(self, quant_mm2=320000.0, noise=0.35, edge_mm=30.0, edge_drop=0.35, drop=0.003):
        self.q, self.noise = quant_mm2, noise
        self.edge_mm, self.edge_drop, self.drop = edge_mm, edge_drop, drop

    def apply(self, depth, fg, rng):
        """Degrade the foreground ``fg`` (bool, same shape) of ``depth`` (float, mm) in place."""
        z = depth[fg]
        disp = self.q / z + rng.normal(0.0, self.noise, z.shape)
        depth[fg] = self.q / np.maximum(np.rint(disp), 1.0)
        edge = np.zeros(depth.shape, bool)
        dv = np.abs(np.diff(depth, axis=0)) > self.edge_mm
        du = np.abs(np.diff(depth, axis=1)) > self.edge_mm
        edge[1:] |= dv
        edge[:-1] |= dv
        edge[:, 1:] |= du
        edge[:, :-1] |= du
        flat = depth.reshape(-1)
        e_idx = np.flatnonzero(edge)
        flat[e_idx[rng.random(len(e_idx)) < self.edge_drop]] = 0.0
        f_idx = np.flatnonzero(fg)
        k = rng.binomial(len(f_idx), self.drop) if len(f_idx) else 0
        flat[f_idx[rng.integers(0, len(f_idx), k)]] = 0.0
        return depth
