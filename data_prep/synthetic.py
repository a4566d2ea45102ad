"""A synthetic hand-depth dataset in the exact NYU on-disk format, rendered from the hand model.

``python -m data_prep.synthetic --out data/synthetic --train N --test M --seed S`` writes::

    <out>/train/joint_data.mat, depth_1_0000001.png ...   (as distributed by NYU)
    <out>/train/theta.npy                                 (N, 26) true angles (HandModel theta)
    <out>/test/...                                        the same for the test split
    <out>/synthetic.json                                  parameters; written last (set complete)

How a frame is made (all vectorised over a batch of frames):

* Pose: finger curls drawn per frame from a mixture of hand shapes (open, fist, a global curl,
  counting/pointing gestures with independent extended or flexed fingers), correlated within a
  finger (DIP follows PIP) and across the hand (spread shrinks as the hand closes; the thumb follows
  the mean curl), mapped into each angle's range; everything clipped to ``HandModel.lower/upper``.
  With ``--poses prior`` (or ``both``: half the frames), poses around those fitted to real ICVL
  labels instead (``data_prep/pose_prior.py``).
  Global rotation: uniform within +-``rot_deg`` (x, y, z) of the rest orientation.
* Joints: the model's 31 keypoints (``HandModel.nyu().forward``) give the 31 NYU joints they map
  to; the 5 others are placed from them: 26 between thumb joints 25 and 27, 29 on the thumb's
  chain beyond 28 towards the wrist, 33 among the four finger roots, 35 between the wrist points,
  and 34 (the crop centre) on the palm, between the palm centre and the wrist (rigid in the palm).
* theta ids 0-2 (translation) are set so that joint 34 is the origin of ``forward(theta)``: the
  labels the NYU reader makes, ``(xyz - xyz[34]) / 150``, equal ``forward(theta)`` (before the
  [-1, 1] clip). ids 3-5 are the global rotation in the camera frame.
* Placement: joint 34 at a random pixel, 500-1000 mm from the camera.
* Body: sphere chains along the finger and thumb bones (radii 8-12 mm, tapering), a flat palm slab
  25 mm thick with a rounded rim (a sphere chain along its outline), a forearm (a chain of 22-29 mm
  spheres, along the hand's axis; with ``--wrist`` bent at the wrist within its range of motion);
  with ``--relief``, thenar and hypothenar bulges on the palm's side. Rendered exactly
  (ray-sphere, ray-plane) through a z-buffer (``data_prep.render``), only inside each
  primitive's pixel box. Thickness scales by 0.9-1.1 per frame (with ``--vary-body`` also by
  0.9-1.4, and the sensor's silhouette grows by 0-2 pixels: ``data_prep/realism.py``).
* Sensor: disparity quantisation (2 mm steps at 800 mm), noise, missing readings at depth edges and
  at random; background: a tilted wall behind the hand (or none: no reading), per ``background``.
* Scene (``--clutter``, off by default): :func:`add_clutter` around the same hands: a torso and
  head behind, in half of the frames an object beside the hand nearer than the wrist, isolated
  readings nearer than the hand, missing readings and holes near the palm.
"""
if __name__ == "__main__":   # outside the venv: one line on how to activate it
    from tools import _venv_check  # noqa: F401
import argparse
import json
import os
import pathlib
import sys
import time

import numpy as np
from tqdm import tqdm

from data_prep import nyu
from data_prep.camera import NYU_CAMERA
from plumbing import PROJECT, InputError, atomic_path, run, worker_results
from plumbing import ArgumentParser, finite_float, nonneg_int, positive_int  # options checked as parsed
from data_prep.render import SensorModel, render_slabs, render_spheres
from hand_model import FINGERS

DEFAULT_OUT = PROJECT / "data" / "synthetic"
# Default size: ~12000 training frames give a CPU-trained net (batch 512, ~15 min) dozens of epochs
# of distinct poses; generation + LMDB build of 14000 frames takes about two minutes on 2 cores.
DEFAULT_TRAIN = 12000
DEFAULT_TEST = 2000
DEFAULT_SEED = 0
FORMAT_VERSION = 1
BATCH = 16      # frames rendered together
CLUTTER_NEAR_OBJECT = 0.5   # share of frames with an object beside the hand (``--clutter``)
# the wrist's range of motion (``--wrist``; degrees, the usual clinical norms): extension 70 to
# flexion 80, radial deviation 20 to ulnar deviation 30
WRIST_RANGE_DEG = ((-70.0, 80.0), (-20.0, 30.0))


# ---------------------------------------------------------------------------- hand body
class HandBody:
    """The 36 NYU joints and the rendered body as functions of the 31 keypoints.

    Joints and sphere centres are fixed linear combinations of keypoints (the palm is rigid, so
    distances within it do not change): ``joints36(kp)`` -> ``(B, 36, 3)``; ``spheres(kp, scale)``
    -> centres ``(B, S, 3)``, radii ``(B, S)``; ``slab_frames(kp)`` -> the palm slab's frame.
    """

    FINGER_RADIUS = (8.0, 8.8, 9.2, 9.0)       # little, ring, middle, index at the base (mm)
    THUMB_RADIUS = (12.0, 11.0, 10.0, 9.0)      # thumb keypoints 27, 28, 29, 30
    PALM_RADIUS = 12.5
    FOREARM = (22.0, 29.0, 220.0)               # radius at the wrist, at the end, length (mm)
    PALM_RING = (4, 9, 14, 19, 23, 27, 26, 25, 20)  # palm outline (keypoints), around palm centre 24
    SLAB_ANCHORS = (20, 23, 26)                 # rigid palm keypoints carrying the slab's frame
    # the palm side's relief (``relief=True``): (keypoint weights, radius mm, mm towards the palm
    # side from the palm's mid-plane); the thenar bulge over the thumb's metacarpal (27 -> 28),
    # the hypothenar along the little finger's side of the palm
    RELIEF = (({27: 0.55, 28: 0.15, 24: 0.3}, 15.0, 9.0),
              ({27: 0.35, 28: 0.05, 24: 0.3, 26: 0.3}, 16.0, 9.0),
              ({27: 0.2, 24: 0.3, 26: 0.5}, 15.0, 8.0),
              ({20: 0.5, 25: 0.5}, 12.0, 7.0),
              ({20: 0.8, 25: 0.2}, 11.0, 6.0))

    def __init__(self, model, relief=False):
        self.model = model
        K = model.num_keypoints
        rest = model.forward(np.zeros((1, model.num_free)))[0] * model.mm_per_unit
        eye = np.eye(K)
        self.nyu_joint_of_keypoint = np.asarray(model.nyu_joint_of_keypoint)
        wrist_mid = (eye[25] + eye[26]) / 2
        extra = {26: (eye[28] + eye[29]) / 2,
                 29: 1.5 * eye[27] - 0.5 * eye[28],
                 33: eye[20:24].mean(axis=0),
                 34: 0.65 * eye[24] + 0.35 * wrist_mid,
                 35: wrist_mid}
        J = np.zeros((nyu.NUM_JOINTS, K))
        for k, j in enumerate(self.nyu_joint_of_keypoint):
            J[j] = eye[k]
        for j, w in extra.items():
            J[j] = w
        if np.any(np.abs(J).sum(axis=1) == 0):
            raise ValueError("hand model's nyu_joint_of_keypoint leaves an NYU joint unplaced")
        self.J = J
        self.palm_point = J[nyu.PALM_JOINT]           # (K,) weights of joint 34

        W, R = [], []

        def chain(a, b, ra, rb, end_trim=0.0, spacing=0.6):
            length = np.linalg.norm(rest[b] - rest[a])
            t_end = max(0.0, 1.0 - end_trim / max(length, 1e-9))
            m = int(np.ceil(length * t_end / (spacing * min(ra, rb)))) + 1
            for t in np.linspace(0.0, t_end, m):
                W.append((1 - t) * eye[a] + t * eye[b])
                R.append((1 - t) * ra + t * rb)

        for f in range(4):
            r0 = self.FINGER_RADIUS[f]
            pts = [5 * f + 4, 5 * f + 3, 5 * f + 2, 5 * f + 1, 5 * f]
            radii = np.linspace(r0, 0.8 * r0, len(pts))
            for i in range(len(pts) - 1):
                trim = 0.7 * radii[-1] if i == len(pts) - 2 else 0.0
                chain(pts[i], pts[i + 1], radii[i], radii[i + 1], trim)
        th = (27, 28, 29, 30)
        for i in range(3):
            trim = 0.7 * self.THUMB_RADIUS[3] if i == 2 else 0.0
            chain(th[i], th[i + 1], self.THUMB_RADIUS[i], self.THUMB_RADIUS[i + 1], trim)
        # palm: a flat slab (rendered analytically, render_slabs) in the best-fit plane of the
        # palm outline at rest, its outline the convex hull of the outline's projection; its
        # frame is carried by three rigid palm keypoints (see slab_frames)
        ring = self.PALM_RING
        pts = rest[list(ring)]
        centre = pts.mean(axis=0)
        _, _, vt = np.linalg.svd(pts - centre)
        e1, e2, nrm = vt[0], vt[1], np.cross(vt[0], vt[1])
        poly = np.stack([(pts - centre) @ e1, (pts - centre) @ e2], axis=1)
        from scipy.spatial import ConvexHull
        self.slab_polygon = poly[ConvexHull(poly).vertices]
        A, Bk, Ck = self.SLAB_ANCHORS
        basis = self._basis(rest[None, A], rest[None, Bk], rest[None, Ck])[0]     # (3, 3) columns
        inv = np.linalg.inv(basis)
        self.slab_coef = {"center": inv @ (centre - rest[A]), "e1": inv @ e1, "e2": inv @ e2,
                          "normal": inv @ nrm}
        # the outline itself, so the slab has a rounded rim
        for i in range(len(ring)):
            chain(ring[i], ring[(i + 1) % len(ring)], self.PALM_RADIUS, self.PALM_RADIUS, spacing=0.8)
        # forearm: from the wrist along the palm's axis (palm centre -> wrist)
        wrist = 0.25 * eye[25] + 0.75 * eye[26]
        axis_len = np.linalg.norm(wrist @ rest - rest[24])
        r_w, r_e, length = self.FOREARM
        m = int(np.ceil(length / (0.8 * r_w))) + 1
        first = len(W)
        for s in np.linspace(10.0, length, m):
            W.append(wrist + (s / axis_len) * (wrist - eye[24]))
            R.append(r_w + (r_e - r_w) * s / length)
        # the forearm's spheres as distances from the wrist point along its direction, per mm of
        # the rest hand (so a bent wrist can place them: spheres(..., wrist=))
        self.forearm = slice(first, len(W))
        self.forearm_s = np.linspace(10.0, length, m) / axis_len     # x |wrist - palm centre|
        self.relief = slice(len(W), len(W))
        self.relief_mm = np.zeros(0)
        if relief:
            for weights, radius, out in self.RELIEF:
                W.append(sum(w * eye[k] for k, w in weights.items()))
                R.append(radius)
            self.relief = slice(len(W) - len(self.RELIEF), len(W))
            self.relief_mm = np.array([out for _, _, out in self.RELIEF])
        self.W = np.array(W)
        self.R = np.array(R)
        self.wrist_w = wrist
        self.rest_hand_mm = float(self._wrist_frame(rest[None])[1][0])  # the rest hand's size
        self.palm_side = self._palm_side(model, rest)

    def _palm_side(self, model, rest):
        """+1 or -1: the side of the palm, along ``cross(hand axis, little -> index)``, that the
        fingers close towards (their flexions at the lower limits)."""
        theta = np.zeros((1, model.num_free))
        fid = [int(i) for i in model.free_ids]
        for f in FINGERS[:4]:
            for j in ("MCP", "PIP", "DIP"):
                c = fid.index(model.param_id(f"{f} {j} flexion"))
                theta[0, c] = model.lower[c]
        closed = model.forward(theta)[0] * model.mm_per_unit
        nrm = self._wrist_frame(rest[None])[4]
        return float(np.sign((closed[10] - rest[10]) @ nrm[0]))

    def _wrist_frame(self, kp_mm):
        """``(B, 31, 3)`` keypoints (mm) -> the wrist point ``(B, 3)`` (``wrist_w``), the hand's
        size ``(B,)`` (wrist point to palm centre, mm) and unit vectors ``(B, 3)`` each: the hand's
        axis (wrist -> palm centre), the radial side (little -> index base, orthogonal to it),
        their cross."""
        wrist = np.einsum("k,bkd->bd", self.wrist_w, kp_mm)
        u = kp_mm[:, 24] - wrist
        hand = np.linalg.norm(u, axis=1)
        u = u / hand[:, None]
        lat = kp_mm[:, 19] - kp_mm[:, 4]
        lat -= np.sum(lat * u, axis=1, keepdims=True) * u
        lat /= np.linalg.norm(lat, axis=1, keepdims=True)
        return wrist, hand, u, lat, np.cross(u, lat)

    @staticmethod
    def _basis(a, b, c):
        """``(B, 3, 3)`` frame with columns b - a, c - a and their cross product (rigid covariant)."""
        u, v = b - a, c - a
        return np.stack([u, v, np.cross(u, v)], axis=2)

    def slab_frames(self, kp_mm):
        """Palm slab per frame: centre, e1, e2, normal, each ``(B, 3)``, from keypoints ``(B, 31, 3)`` mm."""
        A, Bk, Ck = self.SLAB_ANCHORS
        basis = self._basis(kp_mm[:, A], kp_mm[:, Bk], kp_mm[:, Ck])
        out = {k: np.einsum("bij,j->bi", basis, v) for k, v in self.slab_coef.items()}
        out["center"] += kp_mm[:, A]
        return out["center"], out["e1"], out["e2"], out["normal"]

    def joints36(self, kp):
        """``(B, 31, 3)`` keypoints -> ``(B, 36, 3)`` NYU joints (same units)."""
        return np.einsum("jk,bkd->bjd", self.J, kp)

    def spheres(self, kp_mm, scale, wrist=None):
        """Keypoints ``(B, 31, 3)`` mm, thickness scale ``(B,)`` -> centres ``(B, S, 3)``, radii ``(B, S)``.

        ``wrist``: ``(B, 2)`` radians, the hand's flexion (+, towards the palm) and ulnar
        deviation (+, towards the little finger) against the forearm; None: the forearm
        continues the hand's axis (the same as zeros). A body made with ``relief=True`` puts its
        relief spheres off the palm's mid-plane, on the palm's side, scaled with the hand.
        """
        centres = np.einsum("sk,bkd->bsd", self.W, kp_mm)
        if wrist is None and not len(self.relief_mm):
            return centres, self.R[None, :] * np.asarray(scale)[:, None]
        w, hand, u, lat, nrm = self._wrist_frame(kp_mm)
        if len(self.relief_mm):
            grow = hand / self.rest_hand_mm
            centres[:, self.relief] += ((self.palm_side * grow)[:, None, None]
                                        * self.relief_mm[None, :, None] * nrm[:, None, :])
        if wrist is not None:
            flex, dev = np.asarray(wrist, np.float64).T
            # seen from the hand, the forearm swings to the side the hand bends to: the palm's
            # side in flexion, the little finger's in ulnar deviation
            d = (np.cos(flex)[:, None] * (np.cos(dev)[:, None] * -u - np.sin(dev)[:, None] * lat)
                 + (self.palm_side * np.sin(flex))[:, None] * nrm)
            centres[:, self.forearm] = (w[:, None] + (hand[:, None, None] * self.forearm_s[None, :, None])
                                        * d[:, None, :])
        return centres, self.R[None, :] * np.asarray(scale)[:, None]


# ---------------------------------------------------------------------------- poses
class PoseSampler:
    """Natural random poses of the hand model, as ``(B, 26)`` theta within the joint limits.

    Finger angle directions come from the model: for the four fingers every flexion angle closes
    towards its lower limit (the palm side) and extends towards its upper one; a positive
    abduction moves a finger towards the little-finger side. ``rot_deg``: half-ranges of the global
    rotation (x, y, z) around the rest orientation, degrees.
    """

    def __init__(self, model, rot_deg=(35.0, 50.0, 60.0)):
        self.model = model
        self.body = HandBody(model)
        fid = [int(i) for i in model.free_ids]
        self.col = {pid: fid.index(pid) for pid in fid}
        self.lo = dict(zip(fid, model.lower))
        self.hi = dict(zip(fid, model.upper))
        self.rot = np.radians(np.asarray(rot_deg, np.float64))

    def sample(self, rng, n):
        """-> theta ``(n, 26)`` with joint 34 (``HandBody.palm_point``) at the origin of ``forward``."""
        m = self.model
        theta = np.zeros((n, m.num_free))
        col, lo, hi = self.col, self.lo, self.hi
        # finger curls: mixture of hand shapes
        mode = rng.choice(4, size=n, p=[0.2, 0.15, 0.25, 0.4])
        curl = np.empty((n, 4))
        curl[mode == 0] = rng.uniform(0.0, 0.15, ((mode == 0).sum(), 4))            # open
        curl[mode == 1] = rng.uniform(0.75, 1.0, ((mode == 1).sum(), 4))            # fist
        g = rng.uniform(0.0, 1.0, (n, 1))
        glob = np.clip(g + rng.normal(0.0, 0.12, (n, 4)), 0.0, 1.0)                 # global curl
        curl[mode == 2] = glob[mode == 2]
        ext = rng.random((n, 4)) < 0.5                                              # gestures
        ext[:, 0] = np.where(rng.random(n) < 0.7, ext[:, 1], ext[:, 0])             # little ~ ring
        gest = np.where(ext, rng.uniform(0.0, 0.15, (n, 4)), rng.uniform(0.7, 1.0, (n, 4)))
        curl[mode == 3] = gest[mode == 3]
        pid = m.param_id
        for f, finger in enumerate(FINGERS[:4]):
            mcp, pip, dip = (pid(f"{finger} {j} flexion") for j in ("MCP", "PIP", "DIP"))
            c = curl[:, f]
            fm = np.clip(c + rng.normal(0.0, 0.08, n), 0.0, 1.0)
            fp = np.clip(c + rng.normal(0.0, 0.08, n), 0.0, 1.0)
            fd = fp * rng.uniform(0.5, 0.85, n)
            for j, frac in ((mcp, fm), (pip, fp), (dip, fd)):
                open_ = hi[j] * rng.uniform(0.0, 0.5, n)        # slight hyperextension when open
                theta[:, col[j]] = open_ + frac * (lo[j] - open_)
        # spread: fingers fan out (little/ring towards +abduction, index towards -), less when closed
        spread = rng.uniform(0.0, 1.0, n) * (1.0 - curl.mean(axis=1))
        little, ring, middle, index = (pid(f"{finger} MCP abduction") for finger in FINGERS[:4])
        theta[:, col[little]] = spread * hi[little] * 0.9
        theta[:, col[ring]] = spread * hi[ring] * 0.5
        theta[:, col[middle]] = rng.normal(0.0, 0.04, n)
        theta[:, col[index]] = spread * lo[index] * 0.9
        for j in (little, ring, middle, index):
            theta[:, col[j]] += rng.normal(0.0, 0.03, n)
        # thumb follows the hand's mean curl
        t = np.clip(0.8 * curl.mean(axis=1) + rng.normal(0.0, 0.25, n), 0.0, 1.0)
        mcp_y, mcp_z, dip_z, tip_z = (pid(f"thumb {j}") for j in (
            "MCP rotation y", "MCP rotation z", "DIP rotation z", "tip rotation z"))
        theta[:, col[mcp_y]] = rng.uniform(0.8 * lo[mcp_y], 0.5 * hi[mcp_y], n)
        theta[:, col[mcp_z]] = 0.3 * lo[mcp_z] + t * (0.9 * hi[mcp_z] - 0.3 * lo[mcp_z])
        theta[:, col[dip_z]] = 0.5 * lo[dip_z] + t * (hi[dip_z] - 0.5 * lo[dip_z])
        theta[:, col[tip_z]] = 0.5 * lo[tip_z] + t * (hi[tip_z] - 0.5 * lo[tip_z])
        theta = np.clip(theta, m.lower, m.upper)
        # global rotation in the camera frame, then the translation putting joint 34 at the origin
        rotation = [col[pid(f"global rotation {a}")] for a in "xyz"]
        translation = [col[pid(f"global translation {a}")] for a in "xyz"]
        theta[:, rotation] = rng.uniform(-1.0, 1.0, (n, 3)) * self.rot
        kp = m.forward(theta)
        theta[:, translation] = -np.einsum("k,bkd->bd", self.body.palm_point, kp)
        return theta


# ---------------------------------------------------------------------------- frames
_SPLIT_CODE = {"train": 0, "test": 1}


def make_frames(sampler, rng, n, background="wall", camera=NYU_CAMERA, sensor=None,
                size_range=None, wrist=False, thickness_range=None):
    """Render ``n`` frames -> (depth ``(n, H, W)`` uint16 mm, uvd ``(n, 36, 3)``, xyz ``(n, 36, 3)``, theta).

    ``size_range``: ``(lo, hi)`` a per-frame factor on the hand's size (the labels follow the
    rendered joints: normalised, they are ``size * forward(theta)``); None: the model's size.
    ``wrist``: bend the forearm at the wrist (:func:`render_depth`). ``thickness_range``:
    ``(lo, hi)`` a per-frame factor on the body's thickness (``render_depth``'s ``thickness``);
    None: 1 (nothing drawn, so sets made without it are unchanged).
    """
    body = sampler.body
    theta = sampler.sample(rng, n)
    kp = sampler.model.forward(theta)                                 # normalised, joint 34 at 0
    com_uvd = np.stack([rng.uniform(140, 500, n), rng.uniform(110, 370, n),
                        rng.uniform(500, 1000, n)], axis=1)
    com = camera.uvd_to_xyz(com_uvd)
    size = np.ones(n) if size_range is None else rng.uniform(*size_range, n)
    kp_mm = com[:, None, :] + sampler.model.mm_per_unit * size[:, None, None] * kp
    xyz = body.joints36(kp_mm)
    xyz[:, nyu.PALM_JOINT] = com                                      # exact (is com up to rounding)
    uvd = camera.xyz_to_uvd(xyz)
    thickness = 1.0 if thickness_range is None else rng.uniform(*thickness_range, n)
    depth = render_depth(body, kp_mm, com, rng, camera, background, sensor, thickness, wrist=wrist)
    return depth, uvd, xyz, theta


def render_depth(body, kp_mm, com, rng, camera, background="wall", sensor=None, thickness=1.0,
                 wrist=False):
    """Depth frames of hands: keypoints ``(n, 31, 3)`` mm in the camera frame (any hand: mirrored
    keypoints give the mirrored hand), ``com`` ``(n, 3)`` mm the hand's centre (places the wall)
    -> ``(n, H, W)`` uint16 mm (0 = no reading). ``thickness`` (a number or ``(n,)``) multiplies
    the body's radii (the per-frame factor 0.9-1.1 comes on top); the sensor model as :class:`SensorModel`.
    ``wrist``: the forearm leaves the hand at a wrist angle drawn per frame, uniform within
    ``WRIST_RANGE_DEG`` (flexion and deviation); False (nothing drawn, so sets made without it
    are unchanged): it continues the hand's axis."""
    sensor = sensor or SensorModel()
    n = len(kp_mm)
    H, W = camera.height, camera.width
    NONE = 65535.0                          # "no reading yet"; becomes 0 in the PNG
    zbuf = np.empty((n, H, W), np.float32)
    rows = (np.arange(H, dtype=np.float32) - camera.cy)
    wall_z = com[:, 2] + 400.0 + rng.uniform(300.0, 1500.0, n)       # behind the hand and forearm
    slope = rng.uniform(-1.0, 1.0, n)                                 # mm per image row
    has_wall = (rng.random(n) < 0.85) if background == "wall" else np.zeros(n, bool)

    def wall(i, v0=0, v1=H, u0=0, u1=W):
        if not has_wall[i]:
            return np.float32(NONE)
        # a wall tilted about the camera's x axis, whole millimetres: rows of equal depth keep
        # the PNG small and fast to write
        row = np.rint(np.float32(wall_z[i]) + np.float32(slope[i]) * rows[v0:v1, None])
        return np.broadcast_to(row, (v1 - v0, u1 - u0))

    for i in range(n):
        zbuf[i] = wall(i)
    scale = rng.uniform(0.9, 1.1, n) * thickness
    bend = None
    if wrist:
        bend = np.radians(np.stack([rng.uniform(*WRIST_RANGE_DEG[0], n),
                                    rng.uniform(*WRIST_RANGE_DEG[1], n)], axis=1))
    centers, radii = body.spheres(kp_mm, scale, wrist=bend)
    bbox = render_spheres(zbuf, centers, radii, camera)
    c, e1, e2, nrm = body.slab_frames(kp_mm)
    render_slabs(zbuf, c, e1, e2, nrm, body.slab_polygon, body.PALM_RADIUS * scale, camera, bbox)
    for i in range(n):                      # sensor model on each frame's hand box only
        u0, u1, v0, v1 = bbox[i]
        if u1 <= u0 or v1 <= v0:
            continue
        u0, v0 = max(u0 - 2, 0), max(v0 - 2, 0)
        u1, v1 = min(u1 + 2, W), min(v1 + 2, H)
        region = zbuf[i, v0:v1, u0:u1]
        fg = region < wall(i, v0, v1, u0, u1)
        sensor.apply(region, fg, rng)
        np.rint(region, out=region)
    depth = zbuf.astype(np.uint16)
    depth[~has_wall] *= depth[~has_wall] != 65535
    return depth


def add_clutter(depth, xyz, rng, camera=NYU_CAMERA, body=True, noise_pixels=300, hole_fraction=0.05,
                hole_blocks=3, near_object=0.0):
    """A harder scene around rendered hands: a body behind, an object beside, noise and holes.

    The scene model of the generator's ``clutter`` option (:func:`generate`, ``--clutter``), of
    the localiser's tests and of the training crops of its learned refinement
    (``tools/train_refine.py``); the hand itself is never changed, only what is around it.

    Args:
        depth: ``(n, H, W)`` depth in mm (e.g. :func:`make_frames`'s), not modified.
        xyz: ``(n, 36, 3)`` the frames' NYU joints in mm (joint 34 places the clutter).
        rng: a ``numpy.random.Generator``.
        body: add a torso (a sphere of radius 220-320 mm whose front is 200-400 mm behind joint
            34, 50-250 mm below it and up to 150 mm to either side) and a head (radius 100 mm,
            above the torso), rendered exactly (:func:`data_prep.render.render_spheres`); they fill
            missing readings and what they are in front of.
        noise_pixels: isolated readings per frame at random pixels, depths uniform between 150 mm
            and 50 mm in front of the frame's nearest reading (nearer than the hand).
        hole_fraction: fraction of the pixels set to 0 (no reading), at random.
        hole_blocks: 6x6-pixel holes per frame within 40 px of joint 34.
        near_object: probability per frame of a second object off the hand but nearer than the
            wrist (a ball of radius 40-80 mm, e.g. a cup or the other fist): its front lies
            between 10 mm behind the hand's nearest joint and the wrist (joint 35; at least 30 mm
            further) in depth, never in front of the hand itself, and its centre
            170-280 mm beyond its radius from joint 34 sideways, at least its radius + 40 mm from
            every joint in x, y (so it never covers the hand; it may cover the forearm). The plain
            "everything near the nearest reading" rule takes it for part of the hand.
    Returns:
        ``(n, H, W)`` uint16 depth in mm.

    Random draws: body, noise, holes, then (only when ``near_object > 0``) the object, so the
    default scene does not depend on whether the object option exists.
    """
    out = np.asarray(depth, np.float32).copy()
    n, H, W = out.shape
    com = np.asarray(xyz, np.float64)[:, nyu.PALM_JOINT]
    if body:
        zb = np.full(out.shape, np.inf, np.float32)
        r_t = rng.uniform(220.0, 320.0, n)
        torso = com + np.stack([rng.uniform(-150, 150, n), rng.uniform(-250, -50, n),
                                rng.uniform(200, 400, n) + r_t], axis=1)
        head = torso + np.stack([np.zeros(n), r_t + 120.0, np.zeros(n)], axis=1)
        render_spheres(zb, np.stack([torso, head], axis=1),
                       np.stack([r_t, np.full(n, 100.0)], axis=1), camera)
        put = np.isfinite(zb) & ((zb < out) | (out == 0))
        out[put] = np.rint(zb[put])
    for i in range(n):
        valid = out[i] > 0
        nearest = float(out[i][valid].min()) if valid.any() else 1000.0
        k = int(noise_pixels)
        if k > 0:
            out[i, rng.integers(0, H, k), rng.integers(0, W, k)] = np.rint(
                rng.uniform(150.0, max(nearest - 50.0, 151.0), k))
        m = int(round(hole_fraction * H * W))
        if m > 0:
            out[i, rng.integers(0, H, m), rng.integers(0, W, m)] = 0
        u, v = camera.xyz_to_uvd(com[i])[:2]
        for _ in range(int(hole_blocks)):
            bu = int(np.clip(u + rng.uniform(-40, 40), 0, W - 6))
            bv = int(np.clip(v + rng.uniform(-40, 40), 0, H - 6))
            out[i, bv:bv + 6, bu:bu + 6] = 0
    if near_object > 0:
        _add_near_object(out, np.asarray(xyz, np.float64), rng, camera, float(near_object))
    return np.clip(out, 0, 65535).astype(np.uint16)


def _add_near_object(out, xyz, rng, camera, p):
    """Render, in place into ``out`` ``(n, H, W)`` float32 mm, a ball off the hand, nearer than
    the wrist, in a share ``p`` of the frames (see :func:`add_clutter`)."""
    n = len(out)
    has = rng.random(n) < p
    r = rng.uniform(40.0, 80.0, n)
    phi = rng.uniform(0.0, 2 * np.pi, n)
    dist = r + rng.uniform(170.0, 280.0, n)
    com = xyz[:, nyu.PALM_JOINT]
    direction = np.stack([np.cos(phi), np.sin(phi)], axis=1)
    centre_xy = com[:, :2] + dist[:, None] * direction
    # keep it off every joint (x, y): push outwards until radius + 40 mm clear of the nearest one
    for _ in range(4):
        gap = np.linalg.norm(xyz[:, :, :2] - centre_xy[:, None, :], axis=2).min(axis=1)
        centre_xy += np.maximum(r + 40.0 - gap, 0.0)[:, None] * direction
    z_near = xyz[:, :, 2].min(axis=1) + 10.0          # behind the hand's nearest surface
    z_wrist = np.maximum(xyz[:, 35, 2], z_near + 30.0)
    front = z_near + rng.uniform(0.0, 1.0, n) * (z_wrist - z_near)
    centre = np.concatenate([centre_xy, (front + r)[:, None]], axis=1)
    if not has.any():
        return
    zb = np.full((int(has.sum()),) + out.shape[1:], np.inf, np.float32)
    render_spheres(zb, centre[has, None, :], r[has, None], camera)
    sub = out[has]
    put = np.isfinite(zb) & ((zb < sub) | (sub == 0))
    sub[put] = np.rint(zb[put])
    out[has] = sub


_G = {}


PROFILES = ("default", "realistic")
POSES = ("mixture", "prior", "both")   # where the default profile's poses come from


def _worker_init(rot_deg, background, compression, profile="default", clutter=False, wrist=False,
                 relief=False, vary_body=False, poses="mixture"):
    from hand_model import HandModel
    _G["background"], _G["compression"] = background, compression
    _G["clutter"], _G["wrist"] = clutter, wrist
    _G["sensor"], _G["size_range"], _G["thickness_range"] = None, None, None
    if profile == "realistic":         # data_prep/realism.py
        from data_prep import realism
        _G["sampler"] = realism.realistic_sampler(HandModel.nyu())
        _G["sensor"] = realism.GrowingSensorModel()
        _G["size_range"] = realism.SIZE_RANGE
    elif poses == "mixture":
        _G["sampler"] = PoseSampler(HandModel.nyu(), rot_deg)
    else:                              # the ICVL prior's poses (data_prep/pose_prior.py)
        from data_prep import pose_prior
        prior, model = pose_prior.load_prior(), HandModel.nyu()
        _G["sampler"] = (pose_prior.PriorPoseSampler(model, prior, rot_deg) if poses == "prior"
                         else pose_prior.MixedPoseSampler(model, prior, rot_deg))
    if relief:
        _G["sampler"].body = type(_G["sampler"].body)(_G["sampler"].model, relief=True)
    if vary_body:                      # domain randomisation of body and sensor (realism.py)
        from data_prep import realism
        _G["sensor"] = realism.VaryingSensorModel()
        _G["thickness_range"] = realism.THICKNESS_RANGE


def _make_chunk(task):
    """Render and write frames ``[start, start + count)`` of a split -> (split, start, uvd, xyz, theta)."""
    split_dir, split, start, count, seed = task
    rng = np.random.default_rng([seed, _SPLIT_CODE[split], start])
    # the scene has its own random stream: with and without clutter the hands are the same
    scene_rng = np.random.default_rng([seed, _SPLIT_CODE[split], start, 1])
    out_uvd, out_xyz, out_theta = [], [], []
    for b in range(0, count, BATCH):
        k = min(BATCH, count - b)
        depth, uvd, xyz, theta = make_frames(_G["sampler"], rng, k, _G["background"],
                                             sensor=_G["sensor"], size_range=_G["size_range"],
                                             wrist=_G.get("wrist", False),
                                             thickness_range=_G.get("thickness_range"))
        if _G.get("clutter"):
            depth = add_clutter(depth, xyz, scene_rng, near_object=CLUTTER_NEAR_OBJECT)
        for i in range(k):
            path = nyu.depth_file(split_dir, start + b + i)
            path.write_bytes(nyu.encode_depth(depth[i], _G["compression"]))
        out_uvd.append(uvd)
        out_xyz.append(xyz)
        out_theta.append(theta)
    return split, start, np.concatenate(out_uvd), np.concatenate(out_xyz), np.concatenate(out_theta)


def render_chunks(make_chunk, worker_init, init_args, tasks, workers, total, desc, progress):
    """``make_chunk(task)`` for every task, in ``workers`` forked processes (each set up by
    ``worker_init(*init_args)``) or in this one; a progress bar of ``total`` frames, advanced by
    each result's frames (its third item, ``(k, ...)``). Returns the results in completion order;
    the pool is ended whatever happens."""
    out = []
    with worker_results(make_chunk, worker_init, init_args, tasks, workers, ordered=False) as it, \
            tqdm(total=total, desc=desc, unit="frame", disable=not progress, smoothing=0.05) as bar:
        for result in it:
            out.append(result)
            bar.update(len(result[2]))
    return out


def is_complete(root):
    """True when ``root`` holds a finished synthetic set (``synthetic.json`` is written last)."""
    root = pathlib.Path(root)
    return (root / "synthetic.json").is_file() and all(
        (root / s / "joint_data.mat").is_file() and (root / s / "theta.npy").is_file()
        for s in ("train", "test"))


def is_current(root):
    """A finished set written by this version of the generator (``format`` in synthetic.json)."""
    if not is_complete(root):
        return False
    try:
        return json.loads((pathlib.Path(root) / "synthetic.json").read_text()).get("format") == FORMAT_VERSION
    except (OSError, ValueError):
        return False


def set_params(n_train, n_test, seed, background, rot_deg, profile, clutter, wrist, relief,
               vary_body=False, poses="mixture"):
    """What ``synthetic.json`` says of a set (but its ``seconds``): the options that make it,
    the profile and the scene options only when not the default."""
    params = dict(format=FORMAT_VERSION, train=int(n_train), test=int(n_test), seed=int(seed),
                  background=background, rot_deg=list(rot_deg), camera="NYU camera 1",
                  cube_mm=nyu.CUBE_MM, crop_centre_joint=nyu.PALM_JOINT)
    if profile not in PROFILES:
        raise InputError(f"profile {profile!r}: expected one of {', '.join(PROFILES)}")
    if profile != "default":
        params["profile"] = profile
    if poses not in POSES:
        raise InputError(f"poses {poses!r}: expected one of {', '.join(POSES)}")
    if poses != "mixture":
        if profile != "default":
            raise InputError(f"poses {poses!r}: only with the default profile (the realistic "
                             "profile draws its own poses from the prior)")
        params["poses"] = poses
    for name, on in (("clutter", clutter), ("wrist", wrist), ("relief", relief),
                     ("vary_body", vary_body)):
        if on:
            params[name] = True
    return params


def generate(out, n_train=DEFAULT_TRAIN, n_test=DEFAULT_TEST, seed=DEFAULT_SEED, workers=None,
             progress=True, background="wall", compression=1, rot_deg=(35.0, 50.0, 60.0),
             chunk=64, profile="default", clutter=False, wrist=False, relief=False,
             vary_body=False, poses="mixture"):
    """Write the synthetic set to ``out`` (built under a temporary name, renamed when complete).

    ``profile``: ``"default"`` (the world of the paper's Table 1 here) or ``"realistic"``
    (``data_prep/realism.py``: poses around real ones, adult widths, per-frame size, silhouette
    growth; ``rot_deg`` is then the profile's).

    ``clutter``: put each hand in the scene of :func:`add_clutter` (a torso and head behind it,
    in half of the frames an object beside it nearer than the wrist, nearer noise readings,
    holes), drawn from a random stream of its own, so the hands, labels and theta are those of
    the same set without clutter. Off by default: the default set (and NYU Table 1's data) is
    unchanged, and ``synthetic.json`` says ``"clutter": true`` only for a cluttered set.

    ``wrist``: the forearm bends at the wrist within its range of motion (``WRIST_RANGE_DEG``,
    drawn per frame) instead of continuing the hand's axis, so the forearm does not tell the
    hand's direction; ``"wrist": true`` in ``synthetic.json``. Off by default.

    ``relief``: the palm's side has the thenar and hypothenar bulges (``HandBody.RELIEF``), so
    the palm and the back of a hand differ in depth, not only by the thumb's side; ``"relief":
    true`` in ``synthetic.json``. Off by default.

    ``vary_body``: domain randomisation of the body's thickness and the sensor's silhouette
    growth per frame (``data_prep/realism.py``: ``THICKNESS_RANGE``, ``GROW_PX``); ``"vary_body":
    true`` in ``synthetic.json``. Off by default.

    ``poses``: ``"mixture"`` (default) the gesture mixture of :class:`PoseSampler`; ``"prior"``
    poses around those fitted to real ICVL labels (``data_prep/pose_prior.py``, ``make
    pose-prior``); ``"both"``: each frame from one or the other, half and half; the global
    rotations are ``rot_deg``'s in all three. Recorded in ``synthetic.json`` when not the default.

    Deterministic: the same arguments give identical files whatever ``workers`` is.
    Returns the parameters written to ``synthetic.json``.
    """
    out = pathlib.Path(out)
    params = set_params(n_train, n_test, seed, background, rot_deg, profile, clutter, wrist, relief,
                        vary_body, poses)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    if poses != "mixture":
        from data_prep.pose_prior import load_prior
        load_prior()                   # a missing or broken prior file: one line, before any work
    workers = workers or os.cpu_count() or 1
    init = (tuple(rot_deg), background, compression, profile, bool(clutter), bool(wrist),
            bool(relief), bool(vary_body), poses)
    results = {"train": [], "test": []}
    t0 = time.perf_counter()
    with atomic_path(out) as tmp:
        tasks = []
        for split, n in (("train", n_train), ("test", n_test)):
            (tmp / split).mkdir(parents=True)
            tasks += [(tmp / split, split, s, min(chunk, n - s), seed) for s in range(0, n, chunk)]
        for split, start, uvd, xyz, theta in render_chunks(
                _make_chunk, _worker_init, init, tasks, workers, n_train + n_test,
                "synthetic NYU frames", progress):
            results[split].append((start, uvd, xyz, theta))
        for split in ("train", "test"):
            parts = sorted(results[split], key=lambda r: r[0])
            if not parts:
                continue
            uvd = np.concatenate([p[1] for p in parts])
            xyz = np.concatenate([p[2] for p in parts])
            theta = np.concatenate([p[3] for p in parts])
            nyu.save_joint_data(tmp / split / "joint_data.mat", uvd, xyz)
            np.save(tmp / split / "theta.npy", theta)
        params["seconds"] = round(time.perf_counter() - t0, 1)
        (tmp / "synthetic.json").write_text(json.dumps(params, indent=1) + "\n")
    return params


def parse_args(argv):
    p = ArgumentParser(
        prog="python -m data_prep.synthetic",
        description="Render a synthetic hand-depth dataset in the exact NYU on-disk format "
                    "(train/ and test/ with joint_data.mat, depth_1_%07d.png, plus theta.npy).")
    p.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT, help="output folder (default data/synthetic)")
    p.add_argument("--train", type=nonneg_int, default=DEFAULT_TRAIN, help=f"training frames (default {DEFAULT_TRAIN})")
    p.add_argument("--test", type=nonneg_int, default=DEFAULT_TEST, help=f"test frames (default {DEFAULT_TEST})")
    p.add_argument("--seed", type=nonneg_int, default=DEFAULT_SEED, help="random seed (same seed, same files)")
    p.add_argument("--workers", type=positive_int, default=os.cpu_count() or 1, help="processes (default: one per core)")
    p.add_argument("--background", choices=("wall", "none"), default="wall",
                   help="wall: a tilted wall behind most hands; none: no reading behind the hand")
    p.add_argument("--rot-deg", type=finite_float(0, 180), nargs=3, default=(35.0, 50.0, 60.0), metavar=("X", "Y", "Z"),
                   help="half-ranges of the global rotation about x, y, z in degrees (default 35 50 60)")
    p.add_argument("--clutter", action="store_true",
                   help="a scene around each hand: body behind, at times an object beside it "
                        "nearer than the wrist, nearer noise, holes (same hands and labels)")
    p.add_argument("--wrist", action="store_true",
                   help="bend the forearm at the wrist (flexion -70..80 deg, deviation -20..30 deg, "
                        "drawn per frame) instead of continuing the hand's axis")
    p.add_argument("--relief", action="store_true",
                   help="thenar and hypothenar bulges on the palm's side, so palm and back differ")
    p.add_argument("--vary-body", action="store_true",
                   help="domain randomisation: the body's thickness (x0.9-1.4) and the sensor's "
                        "silhouette growth (0-2 pixels) drawn per frame")
    p.add_argument("--poses", choices=POSES, default="mixture",
                   help="mixture: the generator's gestures (default); prior: around poses fitted "
                        "to real ICVL labels (make pose-prior); both: half and half")
    p.add_argument("--compression", type=int, default=1, choices=range(0, 10), metavar="0-9",
                   help="PNG compression level (default 1: fast)")
    p.add_argument("--profile", choices=PROFILES, default="default",
                   help="default: the world of the paper's Table 1 here; realistic: poses around "
                        "real ones, adult widths, per-frame size, sensor silhouette growth "
                        "(data_prep/realism.py)")
    p.add_argument("--force", action="store_true", help="regenerate even if an identical set exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.train < 0 or args.test < 0 or args.train + args.test == 0:
        p.error("--train and --test must be >= 0 and not both 0")
    if args.workers < 1:
        p.error("--workers must be at least 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"{args.out}: exists and is not a folder")
    if not args.force and is_complete(args.out):
        old = json.loads((args.out / "synthetic.json").read_text())
        old.pop("seconds", None)
        if old == set_params(args.train, args.test, args.seed, args.background, args.rot_deg,
                             args.profile, args.clutter, args.wrist, args.relief, args.vary_body,
                             args.poses):
            print(f"[synthetic] {args.out}: already holds this set (--force regenerates)")
            return 0
    t0 = time.perf_counter()
    generate(args.out, args.train, args.test, args.seed, args.workers, not args.quiet,
             args.background, args.compression, tuple(args.rot_deg), profile=args.profile,
             clutter=args.clutter, wrist=args.wrist, relief=args.relief, vary_body=args.vary_body,
             poses=args.poses)
    dt = time.perf_counter() - t0
    n = args.train + args.test
    print(f"[synthetic] {n} frames ({args.train} train, {args.test} test) -> {args.out} in {dt:.1f} s "
          f"({n / dt:.0f} frames/s)")
    return 0


if __name__ == "__main__":
    run(main, sys.argv[1:])
