"""A synthetic hand-depth dataset in the exact NYU on-disk format, rendered from the hand model.

``python tools/synthetic.py --out data/synthetic --train N --test M --seed S`` writes::

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
  labels instead (``data_prep/synthetic/pose_prior.py``).
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
  (ray-sphere, ray-plane) through a z-buffer (``deepmodel.data.synthetic.render``), only inside each
  primitive's pixel box. Thickness scales by 0.9-1.1 per frame (with ``--vary-body`` also by
  0.9-1.4, and the sensor's silhouette grows by 0-2 pixels: ``data_prep/synthetic/realism.py``).
* Sensor: disparity quantisation (2 mm steps at 800 mm), noise, missing readings at depth edges and
  at random; background: a tilted wall behind the hand (or none: no reading), per ``background``.
* Scene (``--clutter``, off by default): :func:`add_clutter` around the same hands: a torso and
  head behind, in half of the frames an object beside the hand nearer than the wrist, isolated
  readings nearer than the hand, missing readings and holes near the palm.
"""
import json
import os
import pathlib
import time

import numpy as np
from tqdm import tqdm

from deepmodel.data.datasets import nyu
from deepmodel.data.datasets.camera import NYU_CAMERA
from deepmodel.plumbing import PROJECT, InputError, atomic_path, worker_results
from deepmodel.data.synthetic.render import SensorModel, render_slabs, render_spheres
from deepmodel.data.synthetic.poses import PoseSampler

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
            above the torso), rendered exactly (:func:`deepmodel.data.synthetic.render.render_spheres`); they fill
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
    from deepmodel.model.hand_model import HandModel
    _G["background"], _G["compression"] = background, compression
    _G["clutter"], _G["wrist"] = clutter, wrist
    _G["sensor"], _G["size_range"], _G["thickness_range"] = None, None, None
    if profile == "realistic":         # data_prep/synthetic/realism.py
        from deepmodel.data.synthetic import realism
        _G["sampler"] = realism.realistic_sampler(HandModel.nyu())
        _G["sensor"] = realism.GrowingSensorModel()
        _G["size_range"] = realism.SIZE_RANGE
    elif poses == "mixture":
        _G["sampler"] = PoseSampler(HandModel.nyu(), rot_deg)
    else:                              # the ICVL prior's poses (data_prep/synthetic/pose_prior.py)
        from deepmodel.data.synthetic import pose_prior
        prior, model = pose_prior.load_prior(), HandModel.nyu()
        _G["sampler"] = (pose_prior.PriorPoseSampler(model, prior, rot_deg) if poses == "prior"
                         else pose_prior.MixedPoseSampler(model, prior, rot_deg))
    if relief:
        _G["sampler"].body = type(_G["sampler"].body)(_G["sampler"].model, relief=True)
    if vary_body:                      # domain randomisation of body and sensor (realism.py)
        from deepmodel.data.synthetic import realism
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
    each result's frames (its third item, ``(k, ...)``). Yields the results in completion order
    (the caller stores each and lets it go: memory flat in the frame count); the pool is ended
    whatever happens."""
    with worker_results(make_chunk, worker_init, init_args, tasks, workers, ordered=False) as it, \
            tqdm(total=total, desc=desc, unit="frame", disable=not progress, smoothing=0.05) as bar:
        for result in it:
            bar.update(len(result[2]))
            yield result


class RowFile:
    """A ``.npy`` file of ``n`` rows (``row_shape``, ``dtype``) filled as chunks of rows arrive in
    any order, by plain writes at their offsets (no memory map: nothing of it stays resident)."""

    def __init__(self, path, n, row_shape, dtype):
        self.path, self.n, self.dtype = pathlib.Path(path), int(n), np.dtype(dtype)
        self.fh = open(self.path, "w+b")
        np.lib.format.write_array_header_1_0(self.fh, {"descr": np.lib.format.dtype_to_descr(
            self.dtype), "fortran_order": False, "shape": (self.n,) + tuple(row_shape)})
        self.offset = self.fh.tell()
        self.row_bytes = self.dtype.itemsize * int(np.prod(row_shape, dtype=np.int64))
        self.fh.truncate(self.offset + self.n * self.row_bytes)

    def put(self, start, rows):
        self.fh.seek(self.offset + start * self.row_bytes)
        self.fh.write(np.ascontiguousarray(rows, self.dtype).tobytes())

    def close(self):
        self.fh.close()


class ColumnFile:
    """Scratch store of ``n`` rows of ``row_shape`` float64 kept column by column on disk (one
    value of the row across all frames is contiguous), filled as chunks of rows arrive in any
    order: ``column(c, a, b)`` reads frames ``a..b`` of column ``c``, ``rows(a, b)`` a block of
    rows. Memory stays that of a chunk or a column whatever ``n``; the file is removed by
    :meth:`close`."""

    def __init__(self, path, n, row_shape):
        self.path, self.n, self.row_shape = pathlib.Path(path), int(n), tuple(row_shape)
        self.width = int(np.prod(row_shape, dtype=np.int64))
        self.fh = open(self.path, "w+b")
        self.fh.truncate(8 * self.n * self.width)

    def put(self, start, rows):
        rows = np.asarray(rows, np.float64).reshape(len(rows), self.width)
        for c in range(self.width):
            self.fh.seek(8 * (c * self.n + start))
            self.fh.write(rows[:, c].tobytes())

    def column(self, c, a=0, b=None):
        b = self.n if b is None else min(b, self.n)
        self.fh.seek(8 * (c * self.n + a))
        return np.fromfile(self.fh, np.float64, b - a)

    def rows(self, a, b):
        b = min(b, self.n)
        return np.stack([self.column(c, a, b) for c in range(self.width)], axis=1).reshape(
            (b - a,) + self.row_shape)

    def close(self):
        self.fh.close()
        self.path.unlink(missing_ok=True)


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
    (``data_prep/synthetic/realism.py``: poses around real ones, adult widths, per-frame size, silhouette
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
    growth per frame (``data_prep/synthetic/realism.py``: ``THICKNESS_RANGE``, ``GROW_PX``); ``"vary_body":
    true`` in ``synthetic.json``. Off by default.

    ``poses``: ``"mixture"`` (default) the gesture mixture of :class:`PoseSampler`; ``"prior"``
    poses around those fitted to real ICVL labels (``data_prep/synthetic/pose_prior.py``, ``make
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
        from deepmodel.data.synthetic.pose_prior import load_prior
        load_prior()                   # a missing or broken prior file: one line, before any work
    workers = workers or os.cpu_count() or 1
    init = (tuple(rot_deg), background, compression, profile, bool(clutter), bool(wrist),
            bool(relief), bool(vary_body), poses)
    t0 = time.perf_counter()
    with atomic_path(out) as tmp:
        tasks, labels = [], {}
        for split, n in (("train", n_train), ("test", n_test)):
            (tmp / split).mkdir(parents=True)
            tasks += [(tmp / split, split, s, min(chunk, n - s), seed) for s in range(0, n, chunk)]
            labels[split] = {}
        # labels go to disk as the chunks come (theta.npy directly, uvd and xyz into scratch
        # column files that joint_data.mat is then written from): memory flat in the frame count
        sizes = {"train": n_train, "test": n_test}
        for split, start, uvd, xyz, theta in render_chunks(
                _make_chunk, _worker_init, init, tasks, workers, n_train + n_test,
                "synthetic NYU frames", progress):
            files = labels[split]
            if not files:
                n = sizes[split]
                files.update(uvd=ColumnFile(tmp / split / ".uvd.scratch", n, uvd.shape[1:]),
                             xyz=ColumnFile(tmp / split / ".xyz.scratch", n, xyz.shape[1:]),
                             theta=RowFile(tmp / split / "theta.npy", n, theta.shape[1:],
                                           theta.dtype))
            for name, rows in (("uvd", uvd), ("xyz", xyz), ("theta", theta)):
                files[name].put(start, rows)
        for split, files in labels.items():
            if files:
                nyu.save_joint_data(tmp / split / "joint_data.mat", files["uvd"], files["xyz"])
                for f in files.values():
                    f.close()
        params["seconds"] = round(time.perf_counter() - t0, 1)
        (tmp / "synthetic.json").write_text(json.dumps(params, indent=1) + "\n")
    return params
