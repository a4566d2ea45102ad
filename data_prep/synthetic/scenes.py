"""Synthetic scenes with a person in them, for the hand detector (:mod:`deepmodel.data.hand_crop.detect`):
the rendered hand and forearm of :func:`deepmodel.data.synthetic.nyu.make_frames`, plus the rest of a
person and of a room, where "the hand is the nearest thing" no longer holds.

Every frame has a person (a torso of 6 spheres, a neck, a head, both upper arms; the labelled hand's
arm joins its forearm at the elbow, the other ends in a second hand, a fist of spheres), sensor holes
and edge noise over the whole frame, and a wall behind. Scene kinds, drawn per frame:

* ``beside`` (40 %): the hand raised beside the body, the torso's front within 60 mm of the hand's
  depth and its centre 260-420 mm to the side: the nearest surface is as often the chest as the hand;
* ``front`` (30 %): the hand 150-450 mm in front of the torso (the datasets' usual scene);
* ``desk`` (15 %): a table top below the hand whose front edge is 100-300 mm nearer than the hand,
  and the body beside or behind;
* ``object`` (15 %): a ball of radius 40-90 mm off the hand and 30-250 mm nearer than it, body
  behind.

The second hand is never nearer than the labelled one and stays at the body's depth or behind it
(which of two free hands is "the hand" is not a question a detector can answer). Units: mm, camera
frame (x right, y up, z depth); frames uint16 mm (0: no reading).
"""
import numpy as np

from deepmodel.data.datasets import nyu
from deepmodel.data.datasets.camera import NYU_CAMERA
from deepmodel.data.synthetic.nyu import make_frames
from deepmodel.data.synthetic.render import render_spheres

KINDS = ("beside", "front", "desk", "object")
KIND_SHARE = (0.40, 0.30, 0.15, 0.15)
EDGE_MM, EDGE_DROP, HOLE_FRACTION = 30.0, 0.35, 0.02
ELBOW_NEAR_MM = 50.0


def _capsule(a, b, ra, rb, k):
    """``k`` spheres from ``a`` to ``b`` ``(n, 3)``, radii from ``ra`` to ``rb``: ``(n, k, 3), (n, k)``."""
    t = np.linspace(0.0, 1.0, k)
    c = a[:, None, :] + t[None, :, None] * (b - a)[:, None, :]
    r = np.asarray(ra)[..., None] * (1 - t) + np.asarray(rb)[..., None] * t
    return c, np.broadcast_to(r, c.shape[:2])


def _person(palm, elbow, torso, rng):
    """Spheres of a person whose torso centre is ``torso`` ``(n, 3)``, the labelled hand's elbow
    at ``elbow``: ``(n, S, 3)`` centres and ``(n, S)`` radii."""
    n = len(palm)
    side = np.sign(palm[:, 0] - torso[:, 0])                     # the hand's side of the body
    side[side == 0] = 1.0
    w = rng.uniform(0.9, 1.15, n)[:, None]                       # build
    parts_c, parts_r = [], []
    grid = np.array([[sx, sy, 0.0] for sy in (140.0, 0.0, -140.0) for sx in (-80.0, 80.0)])
    parts_c.append(torso[:, None, :] + w[:, :, None] * grid[None])
    parts_r.append(np.broadcast_to(130.0 * w, (n, 6)))
    neck = torso + np.stack([np.zeros(n), 250.0 * w[:, 0], np.zeros(n)], axis=1)
    head = neck + np.stack([np.zeros(n), rng.uniform(110, 140, n), rng.uniform(-20, 20, n)], axis=1)
    parts_c += [neck[:, None], head[:, None]]
    parts_r += [np.full((n, 1), 55.0), rng.uniform(90.0, 110.0, (n, 1))]
    for s, end in ((side, elbow), (-side, None)):
        shoulder = torso + np.stack([s * 190.0 * w[:, 0], 190.0 * w[:, 0], np.zeros(n)], axis=1)
        if end is None:                                          # the other arm hangs or rests
            end = shoulder + np.stack([s * rng.uniform(0, 120, n), -rng.uniform(200, 280, n),
                                       rng.uniform(-60, 40, n)], axis=1)
            fist = end + np.stack([s * rng.uniform(0, 80, n), -rng.uniform(180, 250, n),
                                   rng.uniform(-80, 20, n)], axis=1)
            c, r = _capsule(end, fist, 30.0, 28.0, 6)
            parts_c.append(c)
            parts_r.append(r)
            knuckles = fist[:, None, :] + rng.normal(0, 18.0, (n, 5, 3))
            parts_c.append(knuckles)
            parts_r.append(rng.uniform(22.0, 32.0, (n, 5)))
        c, r = _capsule(shoulder, end, 55.0, 38.0, 8)
        parts_c.append(c)
        parts_r.append(r)
    return np.concatenate(parts_c, axis=1), np.concatenate(parts_r, axis=1)


def _table(out, palm, rng, camera):
    """A horizontal table top below the hand, its front edge nearer than the hand: drawn into
    ``out`` ``(H, W)`` float32 mm where it is nearer (in place)."""
    H, W = out.shape
    y_top = palm[1] - rng.uniform(90.0, 250.0)
    z_front, z_back = palm[2] - rng.uniform(100.0, 300.0), palm[2] + rng.uniform(200.0, 500.0)
    half_w = rng.uniform(300.0, 700.0)
    v = np.arange(H, dtype=np.float64)[:, None]
    u = np.arange(W, dtype=np.float64)[None, :]
    ray_y = (camera.cy - v) / camera.fy                          # y per mm of depth along the ray
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.broadcast_to(np.where(ray_y < 0, y_top / np.minimum(ray_y, -1e-9), np.inf), (H, W))
        x = (u - camera.cx) / camera.fx * z
    hit = (z >= z_front) & (z <= z_back) & (np.abs(x - palm[0]) <= half_w)
    put = hit & ((z < out) | (out == 0))
    out[put] = z[put]


def _sensor(out, rng):
    """Edge dropout and random holes over a whole frame ``(H, W)`` float32 mm, in place."""
    edge = np.zeros(out.shape, bool)
    dv = np.abs(np.diff(out, axis=0)) > EDGE_MM
    du = np.abs(np.diff(out, axis=1)) > EDGE_MM
    edge[1:] |= dv
    edge[:-1] |= dv
    edge[:, 1:] |= du
    edge[:, :-1] |= du
    drop = edge & (rng.random(out.shape) < EDGE_DROP)
    drop |= rng.random(out.shape) < HOLE_FRACTION
    out[drop] = 0.0


def _hands(sampler, rng, n, camera):
    """``n`` frames of :func:`make_frames` whose forearm leaves the hand away from the camera or
    sideways (its elbow at most :data:`ELBOW_NEAR_MM` nearer than the palm centre): the arm comes
    from the body."""
    depth, xyz = [], []
    while sum(map(len, depth)) < n:
        d, _, x, _ = make_frames(sampler, rng, n, camera=camera, wrist=True)
        keep = _elbow(x)[:, 2] >= x[:, nyu.PALM_JOINT, 2] - ELBOW_NEAR_MM
        depth.append(d[keep])
        xyz.append(x[keep])
    return np.concatenate(depth)[:n], np.concatenate(xyz)[:n]


def _elbow(xyz, length=250.0):
    """The elbow ``(n, 3)`` mm: ``length`` beyond the wrist (NYU joint 35) on the palm-wrist axis."""
    axis = xyz[:, 35] - xyz[:, nyu.PALM_JOINT]
    return xyz[:, 35] + axis / np.linalg.norm(axis, axis=1, keepdims=True) * length


def make_scenes(sampler, rng, n, camera=NYU_CAMERA, shares=KIND_SHARE):
    """``n`` scenes -> ``(depth (n, H, W) uint16 mm, palm (n, 3) mm, kind (n,) int)``: ``palm``
    is the labelled hand's palm centre (NYU joint 34, the crop centre of the datasets), ``kind``
    an index into :data:`KINDS`, drawn with the probabilities ``shares`` (default
    :data:`KIND_SHARE`, the test sets')."""
    depth, xyz = _hands(sampler, rng, n, camera)
    kind = rng.choice(len(KINDS), n, p=shares)
    palm = xyz[:, nyu.PALM_JOINT]
    elbow = _elbow(xyz)
    side = rng.choice([-1.0, 1.0], n)
    torso = np.empty((n, 3))
    torso[:, 1] = palm[:, 1] - rng.uniform(50.0, 350.0, n)
    beside = kind == KINDS.index("beside")
    torso[:, 0] = np.where(beside, palm[:, 0] - side * rng.uniform(260.0, 420.0, n),
                           palm[:, 0] - side * rng.uniform(0.0, 200.0, n))
    gap = np.where(beside, rng.uniform(-60.0, 60.0, n), rng.uniform(150.0, 450.0, n))
    torso[:, 2] = palm[:, 2] + gap + 130.0                       # front of the torso at palm + gap
    desk_beside = (kind == KINDS.index("desk")) & (rng.random(n) < 0.5)
    torso[desk_beside, 0] = palm[desk_beside, 0] - side[desk_beside] * rng.uniform(
        260.0, 420.0, int(desk_beside.sum()))
    torso[desk_beside, 2] = palm[desk_beside, 2] + 130.0 + rng.uniform(-40.0, 60.0,
                                                                        int(desk_beside.sum()))
    centres, radii = _person(palm, elbow, torso, rng)
    zb = np.full(depth.shape, np.inf, np.float32)
    render_spheres(zb, centres, radii, camera)
    out = depth.astype(np.float32)
    put = np.isfinite(zb) & ((zb < out) | (out == 0))
    out[put] = zb[put]
    for i in np.flatnonzero(kind == KINDS.index("object")):
        r = rng.uniform(40.0, 90.0)
        phi = rng.uniform(0.0, 2 * np.pi)
        d = r + rng.uniform(150.0, 280.0)
        c = palm[i] + np.array([d * np.cos(phi), d * np.sin(phi),
                                -rng.uniform(30.0, 250.0) + r])
        zo = np.full((1,) + out.shape[1:], np.inf, np.float32)
        render_spheres(zo, c[None, None], np.array([[r]]), camera)
        take = np.isfinite(zo[0]) & ((zo[0] < out[i]) | (out[i] == 0))
        out[i][take] = zo[0][take]
    for i in np.flatnonzero(kind == KINDS.index("desk")):
        _table(out[i], palm[i], rng, camera)
    for i in range(n):
        _sensor(out[i], rng)
    return np.clip(np.rint(out), 0, 65535).astype(np.uint16), palm, kind
