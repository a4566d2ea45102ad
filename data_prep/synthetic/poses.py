"""Natural random poses of the hand model (theta ``(B, 26)`` within the joint limits): the synthetic
generators' default sampler (``PoseSampler``; the pose prior's samplers derive from it)."""
import numpy as np

from deepmodel.data.synthetic.body import HandBody
from deepmodel.model.hand_model import FINGERS


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
