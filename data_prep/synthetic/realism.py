"""A more realistic synthetic world (issue: the default model must work on real depth).

The generator's ``profile="realistic"`` (``python tools/synthetic.py --profile realistic``)
changes, against the default world (kept for the paper's Table 1):

* poses: drawn around the poses fitted to real ICVL labels (:mod:`deepmodel.data.synthetic.pose_prior`), with
  global rotations of a front-facing camera: within +-30 deg about x (fingers towards or away
  from the camera), +-180 deg about y (palm or back towards the camera, sideways), +-90 deg
  about z (the hand pointing up, sideways or down);
* volume (:class:`RealisticHandBody`): an adult hand's widths: fingers 19-22 mm at the base
  (radii 9.5-11 mm, the default body has 16-18 mm), a thicker thumb, a palm rim of 15 mm, a
  forearm 60 mm wide at the wrist and 80 mm 26 cm further (the default: 44 to 58 mm);
* size: the hand's size varies per frame by a factor 0.9-1.05 (people's hands differ; the NYU
  test set has two subjects), with the labels following the rendered joints;
* sensor (:class:`GrowingSensorModel`): the silhouette growth of a structured-light sensor
  (the foreground's depth spreads 1 pixel over the background at its edges, as a Kinect's
  block matching does) on top of the default quantisation, noise and missing readings.

The generator's ``vary_body`` option (``--vary-body``, with any profile) randomises the body and
the sensor instead of matching one adult hand (domain randomisation): per frame, the body's
thickness by a factor in ``THICKNESS_RANGE`` on top of the per-frame 0.9-1.1 (fingers about 14
to 25 mm wide at the base with the default body; the hands of children to large adults) and the
silhouette growth by 0, 1 or 2 pixels (:class:`VaryingSensorModel`), so that a real hand's widths
and its sensor's edges fall inside what training has seen.

Nothing here is tuned on the repository's five real crops, which stay a test set
(``tools/score_real.py``); widths and ranges come from anatomy and sensor behaviour.
"""
import cv2
import numpy as np

from deepmodel.data.synthetic.render import SensorModel
from deepmodel.data.synthetic.body import HandBody

ROT_DEG = (30.0, 180.0, 90.0)
SIZE_RANGE = (0.9, 1.05)
THICKNESS_RANGE = (0.9, 1.4)      # ``vary_body``: the body's thickness, per frame
GROW_PX = (0, 2)                  # ``vary_body``: silhouette growth in pixels, per frame


class RealisticHandBody(HandBody):
    """The hand body with adult widths (mm): see the module docstring."""

    FINGER_RADIUS = (9.5, 10.5, 11.0, 10.5)     # little, ring, middle, index at the base
    THUMB_RADIUS = (14.0, 12.5, 11.0, 10.0)
    PALM_RADIUS = 15.0
    FOREARM = (30.0, 40.0, 260.0)               # radius at the wrist, at the end, length


class GrowingSensorModel(SensorModel):
    """:class:`SensorModel` plus silhouette growth by ``grow_px`` pixels at depth edges."""

    def __init__(self, grow_px=1, **kw):
        super().__init__(**kw)
        self.grow_px = int(grow_px)

    def apply(self, depth, fg, rng):
        return super().apply(depth, self._grow(depth, fg, self.growth(rng)), rng)

    def growth(self, rng):
        """Pixels to grow this frame's silhouette by (``grow_px``; nothing drawn)."""
        return self.grow_px

    def _grow(self, depth, fg, px):
        """Spread the foreground's depth ``px`` pixels over nearer-than-``edge_mm`` farther
        readings, in place; -> the grown foreground mask."""
        if px <= 0:
            return fg
        k = 2 * int(px) + 1
        nearer = cv2.erode(np.where(fg, depth, np.float32(np.inf)).astype(np.float32),
                           np.ones((k, k), np.uint8))
        grow = ~fg & np.isfinite(nearer) & (nearer < depth - self.edge_mm)
        depth[grow] = nearer[grow]
        return fg | grow


class VaryingSensorModel(GrowingSensorModel):
    """:class:`GrowingSensorModel` whose growth is drawn per frame (per call of ``apply``),
    uniform among the whole pixels of ``grow_px`` ``(lo, hi)``."""

    def __init__(self, grow_px=GROW_PX, **kw):
        lo, hi = (int(v) for v in grow_px)
        if not 0 <= lo <= hi:
            raise ValueError(f"grow_px {grow_px}: expected 0 <= lo <= hi")
        super().__init__(grow_px=hi, **kw)
        self.grow_range = (lo, hi)

    def growth(self, rng):
        return int(rng.integers(self.grow_range[0], self.grow_range[1] + 1))


def realistic_sampler(model, prior=None):
    """The pose sampler of the realistic profile (prior poses, front-facing camera views, the
    realistic body)."""
    from deepmodel.data.synthetic.pose_prior import PriorPoseSampler, load_prior

    sampler = PriorPoseSampler(model, load_prior() if prior is None else prior, rot_deg=ROT_DEG)
    sampler.body = RealisticHandBody(model)
    return sampler
