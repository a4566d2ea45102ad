"""The realistic synthetic profile: silhouette growth, the wider body, per-frame size, the set."""
import json

import numpy as np

from data_prep import nyu, realism, synthetic
from hand_model import HandModel


def test_silhouette_grows_one_pixel_at_a_depth_edge():
    depth = np.full((20, 20), 1000.0, np.float32)
    depth[5:15, 5:15] = 500.0
    fg = depth < 900
    sensor = realism.GrowingSensorModel(grow_px=1, noise=0.0, edge_drop=0.0, drop=0.0)
    out = sensor.apply(depth.copy(), fg, np.random.default_rng(0))
    near = out < 700
    assert near.sum() == 12 * 12              # the 10x10 square grown by one pixel (3x3 min filter)
    assert near[4:16, 4:16].all() and not near[:4].any() and not near[:, :4].any()
    assert set(np.unique(out[near])) == {500.0}                      # at the foreground's depth
    # without growth the square keeps its size
    plain = realism.GrowingSensorModel(grow_px=0, noise=0.0, edge_drop=0.0, drop=0.0)
    assert (plain.apply(depth.copy(), fg, np.random.default_rng(0)) < 700).sum() == 100


def test_realistic_body_is_wider_than_the_default():
    model = HandModel.nyu()
    default, wide = synthetic.HandBody(model), realism.RealisticHandBody(model)
    assert wide.R.mean() > 1.2 * default.R.mean()
    assert wide.FOREARM[0] >= 30.0 and min(wide.FINGER_RADIUS) >= 9.5


def test_realistic_frames_scale_the_hand_and_keep_the_pose():
    model = HandModel.nyu()
    sampler = realism.realistic_sampler(model)
    rng = np.random.default_rng(4)
    depth, uvd, xyz, theta = synthetic.make_frames(sampler, rng, 6, sensor=realism.GrowingSensorModel(),
                                                   size_range=realism.SIZE_RANGE)
    kp = model.forward(theta)                                    # joint 34 at the origin
    rel = (xyz - xyz[:, nyu.PALM_JOINT:nyu.PALM_JOINT + 1]) / model.mm_per_unit
    keypoint_rows = np.asarray(model.nyu_joint_of_keypoint)
    ratio = np.linalg.norm(rel[:, keypoint_rows], axis=2) / np.maximum(np.linalg.norm(kp, axis=2), 1e-9)
    size = np.median(ratio, axis=1)
    assert np.all((size > 0.9 - 1e-6) & (size < 1.05 + 1e-6)) and np.ptp(size) > 0.01
    np.testing.assert_allclose(rel[:, keypoint_rows], size[:, None, None] * kp, atol=1e-6)


def test_generator_profile_is_recorded(tmp_path):
    params = synthetic.generate(tmp_path / "s", n_train=8, n_test=4, workers=1, progress=False,
                                profile="realistic")
    assert params["profile"] == "realistic"
    assert json.loads((tmp_path / "s" / "synthetic.json").read_text())["profile"] == "realistic"
    d = nyu.read_depth(nyu.depth_file(tmp_path / "s" / "test", 0))
    assert d.shape == (480, 640) and (d > 0).any()
