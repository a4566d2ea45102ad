"""The label-free hand localiser (deepmodel.data.hand_crop.locate) on real and rendered frames, and bad input.

Figures printed with ``-s``: ``pytest tests/test_localize.py -s`` (docs/localization.md).
"""
import math

import cv2
import numpy as np
import pytest

from deepmodel.data.hand_crop import locate as localize
from deepmodel.data.datasets import nyu
from deepmodel.data.synthetic import nyu as synthetic
from deepmodel.data.datasets.camera import ICVL_CAMERA, NYU_CAMERA, Camera
from deepmodel.data.hand_crop.crop import crop_depth
from deepmodel.data.hand_crop.locate import HandNotFound, locate, locate_hand
from deepmodel.data.hand_crop.refine import CentreRefiner
from tests.data_helpers import FX, FY, nyu_uvd_to_xyz, nyu_xyz_to_uvd

# The centre at which the project's crop of depth_1_0000001.png reproduces the released crop
# 0.png at every pixel: found by the coarse-to-fine search of
# tests/test_data_nyu.py::test_crop_of_real_frame_matches_released_crop (run once, same result);
# test_reference_centre_reproduces_released_crop checks it again here.
RELEASED_CENTRE = np.array([205.4781901, 288.29256324, 784.199])


# ------------------------------------------------------------------ scenes with a known answer
def _patch_scene(center_xyz, size_mm=80.0, shape=(480, 640), camera=NYU_CAMERA, background=0):
    """A fronto-parallel square of ``size_mm`` at ``center_xyz`` (mm): its pixels' 3D mean is the
    square's centre (pixels sample a fronto-parallel plane uniformly in x and y)."""
    H, W = shape
    depth = np.full((H, W), background, np.uint16)
    x, y, z = center_xyz
    h = size_mm / 2
    u0, v0 = camera.xyz_to_uvd([x - h, y + h, z])[:2]
    u1, v1 = camera.xyz_to_uvd([x + h, y - h, z])[:2]
    depth[int(math.ceil(v0)):int(math.floor(v1)) + 1, int(math.ceil(u0)):int(math.floor(u1)) + 1] = int(z)
    return depth


def _xyz_error(center_uvd, truth_xyz, camera=NYU_CAMERA):
    return float(np.linalg.norm(camera.uvd_to_xyz(center_uvd) - np.asarray(truth_xyz)))


def test_flat_patch_centre_and_depth_offset():
    """A square 80 mm patch at a known point: centre of mass = its centre; depth offset applied."""
    truth = np.array([-60.0, 35.0, 700.0])
    depth = _patch_scene(truth)
    c, cube = locate_hand(depth, NYU_CAMERA, depth_offset_mm=0.0, refine=None)
    assert c.shape == (3,) and c.dtype == np.float64 and cube == 300.0
    # pixel rounding of the patch edges moves its pixel centroid by at most half a pixel (~0.6 mm)
    assert _xyz_error(c, truth) < 1.5, c
    c2, _ = locate_hand(depth, NYU_CAMERA, refine=None)
    np.testing.assert_allclose(c2[:2], c[:2])
    assert c2[2] == pytest.approx(c[2] + localize.DEPTH_OFFSET_MM)
    # the independent projection of the test helpers agrees with the result's u, v
    np.testing.assert_allclose(c[:2], nyu_xyz_to_uvd(truth)[:2], atol=1.0)


def test_patch_with_body_noise_and_holes():
    """A body 250 mm behind, isolated readings nearer than the hand, 20 % holes: same centre."""
    truth = np.array([40.0, -20.0, 650.0])
    depth = _patch_scene(truth).astype(np.int64)
    rng = np.random.default_rng(3)
    body = np.zeros_like(depth)
    body[150:480, 200:560] = 900                       # a large surface 250 mm behind the hand
    depth = np.where(depth == 0, body, depth)
    vv, uu = rng.integers(0, 480, 400), rng.integers(0, 640, 400)
    depth[vv, uu] = rng.integers(200, 600, 400)         # isolated noise, nearer than the hand
    depth[rng.random(depth.shape) < 0.2] = 0           # holes everywhere, also on the hand
    depth = depth.astype(np.uint16)
    loc = locate(depth, NYU_CAMERA, depth_offset_mm=0.0, refine=None)
    assert 645 <= loc.near_mm <= 655                   # the noise did not capture the nearest depth
    assert _xyz_error(loc.center_uvd, truth) < 3.0, loc
    # the single nearest reading is noise: a plain minimum would have picked it
    assert depth[depth > 0].min() < 600


def test_forearm_pull_is_limited():
    """A forearm-like strip at the hand's depth: the mean shift stays much nearer the hand than
    the whole region's centre of mass does."""
    truth = np.array([0.0, 40.0, 700.0])
    depth = _patch_scene(truth, size_mm=90.0)
    # a 60 mm wide, 250 mm long strip going down from the patch, 10-40 mm behind it
    u0, v0 = NYU_CAMERA.xyz_to_uvd([-30.0, 0.0, 720.0])[:2]
    u1, v1 = NYU_CAMERA.xyz_to_uvd([30.0, -250.0, 720.0])[:2]
    assert v1 < 480
    rows = np.arange(int(v0), int(v1))
    depth[rows, int(u0):int(u1)] = (710 + 30 * (rows - v0) / (v1 - v0)).astype(np.uint16)[:, None]
    loc = locate(depth, NYU_CAMERA, depth_offset_mm=0.0, refine=None)
    com_err = _xyz_error(loc.com_uvd, truth)
    ms_err = _xyz_error(loc.center_uvd, truth)
    assert com_err > 80, com_err                       # the region includes the 250 mm strip
    # measured: 49 mm against 107 mm. A strip as dense as the hand still pulls (the sphere holds
    # 120 mm of it); a real hand, with fingers, outweighs a forearm more than this 9 cm square does
    assert ms_err < 0.6 * com_err, (ms_err, com_err)


def test_icvl_sized_frame():
    """A 320x240 ICVL frame (coarse stride 2, full-resolution mean shift) finds the patch too."""
    truth = np.array([20.0, 10.0, 400.0])
    depth = _patch_scene(truth, size_mm=70.0, shape=(240, 320), camera=ICVL_CAMERA)
    loc = locate(depth, ICVL_CAMERA, cube_mm=250.0, depth_offset_mm=0.0, refine=None)
    assert loc.stride == 2 and loc.cube_mm == 250.0
    assert _xyz_error(loc.center_uvd, truth, ICVL_CAMERA) < 2.0


def test_float_frame_with_nan_and_refine_hook():
    """Float frames with NaN holes work; the refinement hook is called and its answer returned."""
    truth = np.array([0.0, 0.0, 800.0])
    depth = _patch_scene(truth).astype(np.float32)
    depth[::7, ::5] = np.nan
    seen = {}

    def refine(d, camera, center, cube):
        seen.update(shape=d.shape, camera=camera, center=center.copy(), cube=cube)
        return center + (1.0, -2.0, 3.0)

    base = locate(depth, NYU_CAMERA, refine=None)
    loc = locate(depth, NYU_CAMERA, refine=refine)
    assert loc.refined and not base.refined
    np.testing.assert_allclose(seen["center"], base.center_uvd)
    np.testing.assert_allclose(loc.center_uvd, base.center_uvd + (1.0, -2.0, 3.0))
    assert seen["cube"] == 300.0 and seen["camera"] is NYU_CAMERA
    # the default is the learned refinement (data_prep/hand_crop/refine.py), applied to the same centre
    learned = localize.learned_refiner()
    assert isinstance(learned, CentreRefiner) and learned is localize.learned_refiner()
    np.testing.assert_allclose(locate_hand(depth, NYU_CAMERA)[0],
                               learned(depth, NYU_CAMERA, base.center_uvd, 300.0))
    with pytest.raises(ValueError, match="refine returned"):
        locate(depth, NYU_CAMERA, refine=lambda *a: np.array([1.0, np.nan, 3.0]))


# ------------------------------------------------------------------ the real NYU frame
def _released_crop_gray(depth, center):
    return np.rint((crop_depth(depth, center, 300.0, NYU_CAMERA).astype(np.float64) + 1) / 2 * 255)


def test_reference_centre_reproduces_released_crop(reference_data):
    depth = nyu.read_depth(reference_data / "nyu" / "depth_1_0000001.png")
    target = cv2.imread(str(reference_data / "nyu" / "test_crops" / "0.png"), cv2.IMREAD_GRAYSCALE)
    assert np.array_equal(_released_crop_gray(depth, RELEASED_CENTRE), target.astype(np.float64))


def test_real_nyu_frame(reference_data):
    """The raw NYU test frame, no label: the detected centre lies on the hand, near the released
    crop centre. The localiser alone (centre of mass, mean shift, depth offset) is 38.9 mm (3D)
    from it, settling ~37 mm towards the fingers; the learned refinement (never tuned on this
    frame: it is the test) brings it within the issue's goal of 20 mm. The bounds guard the
    measured figures (docs/localization.md) against regressions."""
    depth = nyu.read_depth(reference_data / "nyu" / "depth_1_0000001.png")
    target = cv2.imread(str(reference_data / "nyu" / "test_crops" / "0.png"),
                        cv2.IMREAD_GRAYSCALE).astype(np.float64)
    labels = np.loadtxt(reference_data / "nyu" / "nyu_test_groundtruth_label.txt.xz",
                        max_rows=1).reshape(14, 3)
    released = nyu_uvd_to_xyz(RELEASED_CENTRE)
    alone = locate(depth, NYU_CAMERA, refine=None)
    loc = locate(depth, NYU_CAMERA)
    assert loc.refined and not alone.refined and loc.cube_mm == alone.cube_mm == 300.0
    np.testing.assert_array_equal(loc.surface_uvd, alone.surface_uvd)   # same steps 1-6
    figures = {}
    for name, center in (("localiser alone", alone.center_uvd), ("refined", loc.center_uvd)):
        err = float(np.linalg.norm(nyu_uvd_to_xyz(center) - released))
        mad = float(np.abs(_released_crop_gray(depth, center) - target).mean())
        figures[name] = (err, mad)
        print(f"\nNYU depth_1_0000001.png, {name}: centre {np.round(center, 2).tolist()}, "
              f"{err:.1f} mm from the released crop centre {RELEASED_CENTRE.round(2).tolist()} "
              f"(x, y, z {np.round(nyu_uvd_to_xyz(center) - released, 1).tolist()}); crop vs "
              f"0.png mean abs difference {mad:.2f} gray levels of 255 ({mad / 127.5:.4f} "
              f"normalised)", end="")
    mad_ref = float(np.abs(_released_crop_gray(depth, labels[13]) - target).mean())
    print(f"\nat the palm label (joint 32): {mad_ref:.2f} gray levels")
    assert figures["localiser alone"][0] < 45.0 and figures["localiser alone"][1] < 30.0
    assert figures["refined"][0] < 20.0, figures          # the goal
    assert figures["refined"][1] < figures["localiser alone"][1]
    # independent check that the centres are on the hand: the 14 labelled joints' 3D mean (which
    # the fingertips pull 74 mm away from the released centre)
    joints = nyu_uvd_to_xyz(labels).mean(axis=0)
    assert np.linalg.norm(nyu_uvd_to_xyz(alone.center_uvd) - joints) < 60
    assert np.linalg.norm(nyu_uvd_to_xyz(loc.center_uvd) - joints) < np.linalg.norm(released - joints) + 10
    # the nearest supported depth is the hand's front (731 mm readings), not the body (> 930 mm)
    assert 720 < loc.near_mm < 760


def _windowed_mean_shift(depth, grown, s, rs, com, z0, band, radius, near, iterations, intrinsics):
    """The mean shift as first written: the sphere's pixel box cut out of the frame at every step
    (masks, samples and 3D points rebuilt each time; the box itself is localize's rule). localize._mean_shift finds the samples once
    and must give the same steps and the same centre to the bit."""
    fx, fy, cx, cy = intrinsics
    c = com.copy()
    steps = 0
    for steps in range(1, iterations + 1):
        box = localize._sphere_box(c, radius, near, rs, intrinsics, depth.shape)
        if box is None:
            break
        x0, x1, y0, y1 = box
        sub = np.asarray(depth[y0:y1:rs, x0:x1:rs], dtype=np.float32)
        us, vs = np.arange(x0, x1, rs), np.arange(y0, y1, rs)
        lo, hi = max(z0, c[2] - radius), min(z0 + band, c[2] + radius)
        m = (sub >= lo) & (sub <= hi)
        m &= grown[np.minimum((vs + s // 2) // s, grown.shape[0] - 1)][
            :, np.minimum((us + s // 2) // s, grown.shape[1] - 1)]
        iv, iu = np.nonzero(m)
        d = sub[iv, iu].astype(np.float64)
        x = (us[iu] - cx) * d / fx
        y = (cy - vs[iv]) * d / fy
        inside = (x - c[0]) ** 2 + (y - c[1]) ** 2 + (d - c[2]) ** 2 <= radius * radius
        if not inside.any():
            break
        new = np.array([x[inside].mean(), y[inside].mean(), d[inside].mean()])
        moved = float(np.linalg.norm(new - c))
        c = new
        if moved < localize.TOLERANCE_MM:
            break
    return c, steps


def test_mean_shift_equals_the_windowed_one(reference_data, monkeypatch):
    """The mean shift's samples, found once per frame, give bit for bit the centres of cutting the
    frame at every step: raw NYU, rendered with clutter, a float frame with NaN, ICVL-sized, and
    options that change the sphere and the grid."""
    from deepmodel.model.hand_model import HandModel

    rng = np.random.default_rng(21)
    depth, _, xyz, _ = synthetic.make_frames(synthetic.PoseSampler(HandModel.nyu()), rng, 6)
    frames = [(nyu.read_depth(reference_data / "nyu" / "depth_1_0000001.png"), NYU_CAMERA)]
    frames += [(f, NYU_CAMERA) for f in synthetic.add_clutter(depth, xyz, rng, near_object=0.5)]
    holed = depth[0].astype(np.float32)
    holed[::7, ::5] = np.nan
    frames += [(holed, NYU_CAMERA), (np.ascontiguousarray(depth[1][::2, ::2]), ICVL_CAMERA)]
    for frame, camera in frames:
        for options in ({}, {"radius_mm": 60.0}, {"refine_stride": 1}, {"refine_stride": 3}):
            fast = locate(frame, camera, refine=None, **options)
            with monkeypatch.context() as m:
                m.setattr(localize, "_mean_shift", _windowed_mean_shift)
                slow = locate(frame, camera, refine=None, **options)
            assert fast.iterations == slow.iterations > 0
            assert np.array_equal(fast.surface_uvd, slow.surface_uvd), (options, fast, slow)


# ------------------------------------------------------------------ rendered frames
def _synthetic_errors(n, seed, clutter):
    """Centre errors (mm) vs joint 34 of ``n`` rendered frames: a dict of arrays ``refined``
    (locate_hand's answer), ``localiser`` (steps 1-6, no refinement), ``com`` (the region's
    centre of mass + the depth offset)."""
    from deepmodel.model.hand_model import HandModel

    rng = np.random.default_rng(seed)
    sampler = synthetic.PoseSampler(HandModel.nyu())
    errors = {"refined": [], "localiser": [], "com": []}
    offset = (0.0, 0.0, localize.DEPTH_OFFSET_MM)
    for b in range(0, n, 32):
        depth, _, xyz, _ = synthetic.make_frames(sampler, rng, min(32, n - b))
        if clutter:
            depth = synthetic.add_clutter(depth, xyz, rng, near_object=0.5)
        for i in range(len(depth)):
            loc = locate(depth[i], NYU_CAMERA)
            assert loc.refined
            truth = xyz[i, nyu.PALM_JOINT]
            errors["refined"].append(_xyz_error(loc.center_uvd, truth))
            errors["localiser"].append(_xyz_error(loc.surface_uvd + offset, truth))
            errors["com"].append(_xyz_error(loc.com_uvd + offset, truth))
    return {k: np.array(v) for k, v in errors.items()}


@pytest.mark.parametrize("clutter", [False, True], ids=["plain", "clutter"])
def test_synthetic_frames_centre_error(clutter):
    """Rendered hands (true joint 34 known), plain and in the generator's clutter (a body behind,
    an object beside the hand in half of them, nearer noise, holes).

    Seeds 101/102: neither the calibration seed of the depth offset (11) nor the refinement's
    training (7) and evaluation (8) seeds. The issue's goals (mean <= 10 mm, 95th percentile
    <= 25 mm) are for the refined centre; the bounds on the others guard the measured figures.
    """
    errors = _synthetic_errors(128, 101 + int(clutter), clutter)
    print(f"\nsynthetic {'with clutter' if clutter else 'plain'} (128 frames), centre error vs "
          f"joint 34 (mm):")
    for name in ("com", "localiser", "refined"):
        e = errors[name]
        print(f"  {name:9s} mean {e.mean():6.1f}  median {np.median(e):6.1f}  95th percentile "
              f"{np.percentile(e, 95):6.1f}  max {e.max():6.1f}")
    ref, alone = errors["refined"], errors["localiser"]
    assert ref.mean() <= 10.0 and np.percentile(ref, 95) <= 25.0       # the goals
    assert alone.mean() < 32 and np.percentile(alone, 95) < 60
    assert alone.mean() < 0.8 * errors["com"].mean()   # the mean shift helps over the plain mass


def test_depth_offset_is_the_synthetic_calibration():
    """DEPTH_OFFSET_MM (28 mm) is how far the mean-shift surface centre lies in front of joint 34
    on rendered frames (measured on 300 frames of seed 11; here 96 frames of seed 11 again)."""
    from deepmodel.model.hand_model import HandModel

    rng = np.random.default_rng(11)
    sampler = synthetic.PoseSampler(HandModel.nyu())
    gaps = []
    for _ in range(6):
        depth, _, xyz, _ = synthetic.make_frames(sampler, rng, 16)
        for i in range(16):
            surface = NYU_CAMERA.uvd_to_xyz(locate(depth[i], NYU_CAMERA).surface_uvd)
            gaps.append(xyz[i, nyu.PALM_JOINT, 2] - surface[2])
    print(f"\njoint 34 lies {np.mean(gaps):.1f} mm (median {np.median(gaps):.1f}) behind the surface centre")
    assert abs(np.mean(gaps) - localize.DEPTH_OFFSET_MM) < 5, np.mean(gaps)


def test_add_clutter_keeps_the_hand():
    """add_clutter: the body only fills what is behind or missing; the generator is unchanged."""
    from deepmodel.model.hand_model import HandModel

    sampler = synthetic.PoseSampler(HandModel.nyu())
    d1, _, xyz, _ = synthetic.make_frames(sampler, np.random.default_rng(5), 4)
    d2, _, _, _ = synthetic.make_frames(sampler, np.random.default_rng(5), 4)
    assert np.array_equal(d1, d2)                      # deterministic; add_clutter copies
    c = synthetic.add_clutter(d1, xyz, np.random.default_rng(6), noise_pixels=0,
                              hole_fraction=0.0, hole_blocks=0)
    assert np.array_equal(d1, d2) and c.dtype == np.uint16
    changed = c != d1
    assert changed.any()
    # where both have a reading, clutter only ever comes nearer over the wall, never over the hand
    for i in range(4):
        u, v = np.rint(nyu_xyz_to_uvd(xyz[i, nyu.PALM_JOINT])[:2]).astype(int)
        box = (slice(max(v - 10, 0), v + 10), slice(max(u - 10, 0), u + 10))
        hand = (d1[i][box] > 0) & (d1[i][box] < xyz[i, nyu.PALM_JOINT, 2] + 100)
        assert np.array_equal(c[i][box][hand], d1[i][box][hand])


# ------------------------------------------------------------------ bad input
def test_no_valid_depth():
    with pytest.raises(HandNotFound, match="no valid depth reading"):
        locate_hand(np.zeros((480, 640), np.uint16), NYU_CAMERA)
    with pytest.raises(HandNotFound, match="no valid depth reading"):
        locate_hand(np.full((480, 640), np.nan, np.float32), NYU_CAMERA)


def test_nothing_in_working_range():
    far = np.full((480, 640), 3000, np.uint16)
    with pytest.raises(HandNotFound, match="working range 100-1500 mm") as info:
        locate_hand(far, NYU_CAMERA)
    assert "3000" in str(info.value)
    assert isinstance(info.value, ValueError)
    near = np.full((480, 640), 50, np.uint16)          # everything nearer than the sensor's range
    with pytest.raises(HandNotFound, match="working range"):
        locate_hand(near, NYU_CAMERA)
    # the same frame is fine when the range includes it
    c, _ = locate_hand(far, NYU_CAMERA, far_mm=4000, refine=None)
    assert c[2] > 3000


def test_only_scattered_noise():
    rng = np.random.default_rng(0)
    depth = np.zeros((480, 640), np.uint16)
    depth[rng.integers(0, 480, 500), rng.integers(0, 640, 500)] = rng.integers(300, 1400, 500)
    with pytest.raises(HandNotFound, match="no surface.*only scattered readings"):
        locate_hand(depth, NYU_CAMERA)


@pytest.mark.parametrize("frame,needle", [
    (np.zeros(640), "2-D"),
    (np.zeros((480, 640, 3)), "2-D"),
    (np.zeros((2, 640)), "too small"),
    (np.array([["a", "b", "c"]] * 3), "numeric"),
])
def test_bad_frames(frame, needle):
    with pytest.raises(ValueError, match=needle) as info:
        locate_hand(frame, NYU_CAMERA)
    assert not isinstance(info.value, HandNotFound)


def test_bad_camera_and_options():
    depth = _patch_scene(np.array([0.0, 0.0, 700.0]))
    nan_cam = Camera(fx=float("nan"), fy=FY, cx=320.0, cy=240.0, width=640, height=480)
    with pytest.raises(ValueError, match="finite"):
        locate_hand(depth, nan_cam)
    with pytest.raises(ValueError, match="positive"):
        locate_hand(depth, Camera(fx=-FX, fy=FY, cx=320.0, cy=240.0, width=640, height=480))
    with pytest.raises(ValueError, match="Camera"):
        locate_hand(depth, "nyu")
    with pytest.raises(ValueError, match="cube_mm"):
        locate_hand(depth, NYU_CAMERA, cube_mm=0)
    with pytest.raises(ValueError, match="cube_mm"):
        locate_hand(depth, NYU_CAMERA, cube_mm=float("inf"))
    with pytest.raises(ValueError, match="working range"):
        locate_hand(depth, NYU_CAMERA, near_mm=900, far_mm=800)
    with pytest.raises(ValueError, match="refine"):
        locate_hand(depth, NYU_CAMERA, refine="neural")
    with pytest.raises(ValueError, match="refine must be"):
        locate_hand(np.zeros((480, 640)), NYU_CAMERA, refine=5)     # checked before the frame
