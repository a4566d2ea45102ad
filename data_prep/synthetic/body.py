"""The hand's body around the model's 31 keypoints: the 36 NYU joints and the spheres, palm slab and
forearm that are rendered (``render``) and fitted to depth (``deepmodel.fitting.depth_fit``), all
fixed linear combinations of the keypoints (mm)."""
import numpy as np

from deepmodel.data.datasets import nyu
from deepmodel.model.hand_model import FINGERS


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
