"""Augmentation of a training split when its LMDBs are built: in-plane turn, hand scale, and a 3D
shift of the crop centre, the three the strongest depth hand-pose baselines use.

Off by default: the paper's Table 1 trains on the plain crops. ``python tools/make_lmdb.py nyu
--augment 3 --out data/lmdb_aug`` writes, after the frames of the split, three augmented copies of
each (training split only; the test split is never augmented). Each copy draws, independently:

* **shift** ``t ~ N(0, shift_mm)`` per axis (mm, clipped at 3 sigma): the crop is taken at
  ``com + t`` and the labels normalised around it; exact, it is the crop of any other centre;
* **scale** ``s ~ U(lo, hi)``: the cube edge divided by ``s``, so the hand fills ``s`` times more
  of the crop and its normalised labels are ``s`` times larger; exact;
* **turn** ``a ~ U(-turn_deg, turn_deg)`` degrees: the scene turned rigidly about the camera's
  ray through the crop centre (:func:`deepmodel.data.hand_crop.crop.turn_about_ray`; counter-clockwise as the
  camera sees it), the in-plane rotation of the crop. A rotation about a line through the camera
  maps rays to rays whatever their depth, so the turned frame is exact
  (:func:`deepmodel.data.hand_crop.crop.crop_depth_turned`), and the labels turn with the same rotation. (Turning
  the crop image about its centre pixel instead, keeping depths, is not a rigid motion for a
  centre off the optical axis: on the synthetic NYU set it bends the hand by 9 mm on average.)

True angles (synthetic sets, the ``theta`` LMDB): the hand translated by ``-t`` and turned with the
scene (:func:`deepmodel.model.global_pose.rotate_pose`; mirrored for a dataset whose hand is the
model's mirror image): exact for the shift and the turn; the scale is not in theta (the model's
bones have fixed lengths), so a net's model layer sees hands ``s`` times its size.
"""
import dataclasses
import json

import numpy as np

from deepmodel.data.hand_crop import crop as crop_mod
from deepmodel.data.records.split import to_mm, to_normalised


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """What to draw: ``copies`` augmented copies of each frame; ``turn_deg`` the turn's half-range
    (degrees); ``scale`` ``(lo, hi)`` the hand-size factor's range; ``shift_mm`` the centre shift's
    standard deviation per axis (mm); ``seed`` of the draws."""
    copies: int = 0
    turn_deg: float = 180.0
    scale: tuple = (0.9, 1.1)
    shift_mm: float = 5.0
    seed: int = 0

    def describe(self):
        """A stable string for the build's fingerprint."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    def draw(self, n):
        """``(turn (n,) degrees, scale (n,), shift (n, 3) mm)`` for ``n`` copies."""
        rng = np.random.default_rng(self.seed)
        turn = rng.uniform(-self.turn_deg, self.turn_deg, n)
        scale = rng.uniform(self.scale[0], self.scale[1], n)
        shift = np.clip(rng.normal(0.0, 1.0, (n, 3)), -3.0, 3.0) * self.shift_mm
        return turn, scale, shift


def _hand_frame_mirror(model, dataset):
    """``(3,)`` the x mirror between the model's hand and the dataset's (ICVL's is mirrored)."""
    if dataset != "icvl":
        return np.ones(3)
    from deepmodel.data.synthetic.icvl import JOINT_SET
    return model.joint_set(JOINT_SET).sign


def augmented_theta(theta, rot, shift_mm, dataset="nyu"):
    """True angles ``(n, 26)`` of frames whose crop centre moved by ``shift_mm`` ``(n, 3)`` and
    whose scene turned by ``rot`` ``(n, 3, 3)`` about the new centre -> ``(n, 26)``."""
    from deepmodel.model.hand_model import HandModel
    from deepmodel.model.global_pose import rotate_pose

    model = HandModel.nyu()
    mirror = _hand_frame_mirror(model, dataset)
    theta = np.array(theta, np.float64)
    theta[:, 0:3] -= shift_mm * mirror / model.mm_per_unit
    return rotate_pose(model, theta, mirror[:, None] * rot * mirror[None, :])   # M R M, M = diag(mirror)


def augment_table(table, aug):
    """The table followed by ``aug.copies`` augmented copies of each of its frames.

    Returns a :class:`deepmodel.data.datasets.frames.FrameTable` of ``n * (1 + copies)`` rows: rows ``[0, n)``
    the frames as they are (``turn_deg`` NaN: the plain crop), row ``n * (1 + k) + r`` copy ``k``
    of frame ``r`` (same image and frame index; centre, cube, labels, theta and turn changed).
    A frame already known to be bad is bad in every copy.
    """
    n, k = len(table), int(aug.copies)
    if k <= 0:
        return table
    m = n * k
    src = np.tile(np.arange(n), k)
    turn, scale, shift = aug.draw(m)
    com = np.asarray(table.com, np.float64)
    cube = np.asarray(table.cube, np.float64)
    kp = table.keypoints_mm if table.keypoints_mm is not None else to_mm(table.labels, com, cube)
    kp = np.asarray(kp, np.float64)
    new_com = com[src] + shift
    new_cube = cube[src] / scale
    cam = table.camera
    center = cam.xyz_to_uvd(new_com)
    bad = set(table.bad)
    ok = np.array([r not in bad for r in src])
    center[~ok] = (0.0, 0.0, 1.0)           # placeholders: the build skips these rows
    rot = crop_mod.turn_about_ray(np.where(ok[:, None], new_com, (0.0, 0.0, 1.0)), turn)
    new_kp = new_com[:, None, :] + np.einsum("nij,nkj->nki", rot, kp[src] - new_com[:, None, :])
    labels = to_normalised(new_kp, new_com, new_cube).reshape(m, -1)
    theta = None
    if table.theta is not None:
        theta = np.concatenate([table.theta, augmented_theta(np.asarray(table.theta)[src], rot,
                                                             shift, table.dataset)])
    return dataclasses.replace(
        table,
        paths=list(table.paths) * (1 + k),
        center_uvd=np.concatenate([np.asarray(table.center_uvd, np.float64), center]),
        com=np.concatenate([com, new_com]),
        cube=np.concatenate([cube, new_cube]),
        labels=np.concatenate([np.asarray(table.labels, np.float64), labels]),
        frame=np.concatenate([np.asarray(table.frame)] * (1 + k)),
        theta=theta,
        bad={**table.bad, **{n + i: table.bad[int(r)] for i, r in enumerate(src) if not ok[i]}},
        keypoints_mm=np.concatenate([kp, new_kp]),
        turn_deg=np.concatenate([np.full(n, np.nan), turn]))
