"""Hand poses drawn from a prior fitted to real annotations, for the synthetic generators.

The prior is a set of poses the hand model takes on real labels: ``data/prior/icvl_poses.npz``
holds the 26 parameters fitted to the 1596 ICVL test labels (``tools/fit_pose.py --dataset icvl``:
the NYU hand, ICVL's joint set, ICVL's hand mirrored onto the model's), so the finger angles are
those of real hands, from another dataset than NYU (nothing of NYU's test frames leaks in).

:class:`PriorPoseSampler` draws a pose of the prior at random, jitters its 20 finger angles
(``noise_rad``, clipped to the limits), and gives it a global rotation uniform within
``rot_deg`` of the rest orientation, then the translation that puts joint 34 at the origin, as
:class:`deepmodel.data.synthetic.poses.PoseSampler` does.

    python tools/pose_prior.py FITS.npz        # what `make pose-prior` runs after the fit
"""
import pathlib

import numpy as np

from deepmodel.data.synthetic.poses import PoseSampler
from deepmodel.plumbing import PROJECT, InputError

DEFAULT_PRIOR = PROJECT / "data" / "prior" / "icvl_poses.npz"
ANGLES = slice(6, 26)            # the 20 finger and thumb angles of a 26-wide theta


def load_prior(path=DEFAULT_PRIOR):
    """``(M, 26)`` float64 fitted poses of a prior file; InputError naming the file otherwise."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such pose prior (`make pose-prior` writes the default one)")
    try:
        with np.load(path) as npz:
            theta = np.asarray(npz["theta"], np.float64)
    except (OSError, KeyError, ValueError) as err:
        raise InputError(f"{path}: not a pose prior (an .npz with theta (M, 26)): {err}") from None
    if theta.ndim != 2 or theta.shape[1] != 26 or not len(theta) or not np.isfinite(theta).all():
        raise InputError(f"{path}: theta has shape {theta.shape}, expected finite (M, 26)")
    return theta


class PriorPoseSampler(PoseSampler):
    """Poses around those of a prior ``(M, 26)``; see the module docstring."""

    def __init__(self, model, prior, rot_deg=(35.0, 50.0, 60.0), noise_rad=0.1):
        super().__init__(model, rot_deg)
        self.prior = np.clip(np.asarray(prior, np.float64), model.lower, model.upper)
        self.noise = float(noise_rad)

    def sample(self, rng, n):
        """-> theta ``(n, 26)`` with joint 34 (``HandBody.palm_point``) at the origin of ``forward``."""
        m = self.model
        theta = np.zeros((n, m.num_free))
        pick = self.prior[rng.integers(0, len(self.prior), n)]
        theta[:, ANGLES] = pick[:, ANGLES] + rng.normal(0.0, self.noise, (n, ANGLES.stop - ANGLES.start))
        theta = np.clip(theta, m.lower, m.upper)
        rotation = [self.col[m.param_id(f"global rotation {a}")] for a in "xyz"]
        translation = [self.col[m.param_id(f"global translation {a}")] for a in "xyz"]
        theta[:, rotation] = rng.uniform(-1.0, 1.0, (n, 3)) * self.rot
        kp = m.forward(theta)
        theta[:, translation] = -np.einsum("k,bkd->bd", self.body.palm_point, kp)
        return theta


class MixedPoseSampler(PoseSampler):
    """Each frame's pose from :class:`PriorPoseSampler` with probability ``share``, else from the
    generator's gesture mixture (:class:`deepmodel.data.synthetic.poses.PoseSampler`), both with the same
    global rotations (``rot_deg``): real hands' finger poses beside the gestures."""

    def __init__(self, model, prior, rot_deg=(35.0, 50.0, 60.0), share=0.5):
        super().__init__(model, rot_deg)
        self.prior_sampler = PriorPoseSampler(model, prior, rot_deg)
        self.share = float(share)

    def sample(self, rng, n):
        """-> theta ``(n, 26)`` with joint 34 (``HandBody.palm_point``) at the origin of ``forward``."""
        gestures = super().sample(rng, n)
        real = self.prior_sampler.sample(rng, n)
        return np.where((rng.random(n) < self.share)[:, None], real, gestures)
