"""The realistic synthetic profile: silhouette growth, the wider body, per-frame size, the set."""
import json

import numpy as np

from deepmodel.data.datasets import nyu
from deepmodel.data.synthetic import realism
from deepmodel.data.synthetic.body import HandBody
from deepmodel.data.synthetic import nyu as synthetic
from deepmodel.model.hand_model import HandModel


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
    default, wide = HandBody(model), realism.RealisticHandBody(model)
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


def test_wrist_bends_the_forearm_to_the_side_the_hand_bends():
    """``HandBody.spheres(wrist=)``: zero angles are the straight forearm; a bend keeps each
    forearm sphere's distance from the wrist point and its radius, turns the forearm by the
    angle whose cosine is cos(flexion) cos(deviation) from the hand's axis, towards the side the
    fingers close to for flexion and towards the little finger for ulnar deviation."""
    model = HandModel.nyu()
    sampler = synthetic.PoseSampler(model)
    body = sampler.body
    rng = np.random.default_rng(5)
    n = 64
    kp = model.forward(sampler.sample(rng, n)) * model.mm_per_unit
    scale = rng.uniform(0.9, 1.1, n)
    straight, r0 = body.spheres(kp, scale)
    zero, r1 = body.spheres(kp, scale, wrist=np.zeros((n, 2)))
    np.testing.assert_allclose(zero, straight, atol=1e-9)
    np.testing.assert_array_equal(r0, r1)
    angles = np.radians(np.stack([rng.uniform(-70, 80, n), rng.uniform(-20, 30, n)], axis=1))
    bent, r2 = body.spheres(kp, scale, wrist=angles)
    np.testing.assert_array_equal(r0, r2)
    fore = np.zeros(len(body.W), bool)
    fore[body.forearm] = True
    assert fore.sum() > 5
    np.testing.assert_array_equal(bent[:, ~fore], straight[:, ~fore])     # the hand is untouched
    wrist = 0.25 * kp[:, 25] + 0.75 * kp[:, 26]
    d0 = straight[:, fore] - wrist[:, None]
    d1 = bent[:, fore] - wrist[:, None]
    np.testing.assert_allclose(np.linalg.norm(d1, axis=2), np.linalg.norm(d0, axis=2), rtol=1e-9)
    u0 = d0[:, -1] / np.linalg.norm(d0[:, -1], axis=1, keepdims=True)
    u1 = d1[:, -1] / np.linalg.norm(d1[:, -1], axis=1, keepdims=True)
    np.testing.assert_allclose(np.sum(u0 * u1, axis=1),
                               np.cos(angles[:, 0]) * np.cos(angles[:, 1]), atol=1e-9)
    # the directions from each frame's own hand: where its middle fingertip goes when the four
    # fingers close from straight, and the little finger's side
    fid = [int(i) for i in model.free_ids]
    flex = [fid.index(model.param_id(f"{f} {j} flexion"))
            for f in ("little", "ring", "middle", "index") for j in ("MCP", "PIP", "DIP")]
    poses = sampler.sample(np.random.default_rng(5), n)
    np.testing.assert_allclose(model.forward(poses) * model.mm_per_unit, kp, atol=1e-9)
    straight_f, shut = poses.copy(), poses.copy()
    straight_f[:, flex] = 0.0
    shut[:, flex] = model.lower[flex]
    palm_side = model.forward(shut)[:, 10] - model.forward(straight_f)[:, 10]
    little_side = kp[:, 4] - kp[:, 19]
    axis = kp[:, 24] - (0.25 * kp[:, 25] + 0.75 * kp[:, 26])
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    for which, want in ((0, palm_side), (1, little_side)):
        want = want - np.sum(want * axis, axis=1, keepdims=True) * axis    # across the hand's axis
        pure = np.zeros((n, 2))
        pure[:, which] = np.radians(40.0)
        d, _ = body.spheres(kp, scale, wrist=pure)
        move = d[:, fore][:, -1] - straight[:, fore][:, -1]
        assert np.all(np.sum(move * want, axis=1) > 0), which


def test_wrist_option_is_recorded_and_changes_the_frames(project_root, tmp_path):
    from tests.data_helpers import run_module

    plain = synthetic.generate(tmp_path / "plain", n_train=4, n_test=2, seed=2, workers=1,
                               progress=False)
    assert "wrist" not in plain
    proc = run_module(project_root, "-m", "deepmodel.tools.synthetic", "--out", tmp_path / "bent",
                      "--train", "4", "--test", "2", "--seed", "2", "--quiet", "--workers", "1",
                      "--wrist")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "bent" / "synthetic.json").read_text())["wrist"] is True
    a = nyu.read_depth(nyu.depth_file(tmp_path / "plain" / "train", 0))
    b = nyu.read_depth(nyu.depth_file(tmp_path / "bent" / "train", 0))
    assert (a != b).mean() > 0.001
    proc = run_module(project_root, "-m", "deepmodel.tools.synthetic", "--out", tmp_path / "plain",
                      "--train", "4", "--test", "2", "--seed", "2", "--quiet", "--workers", "1",
                      "--wrist")
    assert proc.returncode == 0 and "already holds" not in proc.stdout


def test_relief_is_on_the_palm_side_only():
    """``HandBody(relief=True)``: seen from the palm's side the rendered hand has readings nearer
    than without (the bulges stand out of the palm); seen from the back it is the same hand."""
    from deepmodel.data.datasets.camera import NYU_CAMERA

    model = HandModel.nyu()
    plain, bumpy = HandBody(model), HandBody(model, relief=True)
    assert len(bumpy.W) == len(plain.W) + len(bumpy.RELIEF)
    kp = model.forward(np.zeros((1, model.num_free)))[0] * model.mm_per_unit
    # the palm's side at rest: where a closing fingertip goes, across the hand's axis
    fid = [int(i) for i in model.free_ids]
    shut = np.zeros((1, model.num_free))
    for f in ("little", "ring", "middle", "index"):
        for j in ("MCP", "PIP", "DIP"):
            c = fid.index(model.param_id(f"{f} {j} flexion"))
            shut[0, c] = model.lower[c]
    axis = kp[24] - (0.25 * kp[25] + 0.75 * kp[26])
    axis /= np.linalg.norm(axis)
    side = model.forward(shut)[0, 10] * model.mm_per_unit - kp[10]
    side -= (side @ axis) * axis
    side /= np.linalg.norm(side)
    for facing, nearer in ((side, True), (-side, False)):
        # turn the hand so that `facing` points along -z (towards the camera), 600 mm away
        target = np.array([0.0, 0.0, -1.0])
        v = np.cross(facing, target)
        c = float(facing @ target)
        vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
        rot = np.eye(3) + vx + vx @ vx / (1.0 + c)
        pts = (kp - kp[24]) @ rot.T + np.array([0.0, 0.0, 600.0])
        depths = []
        for body in (plain, bumpy):
            d = synthetic.render_depth(body, pts[None], pts[None, 24], np.random.default_rng(0),
                                       NYU_CAMERA, background="none")
            depths.append(d[0].astype(np.float64))
        a, b = depths
        both = (a > 0) & (b > 0)
        changed = both & (np.abs(a - b) > 3)
        if nearer:
            assert changed.sum() > 50 and np.all(b[changed] < a[changed]), changed.sum()
        else:
            assert changed.sum() < 10, changed.sum()


def test_varying_sensor_draws_the_growth_per_frame():
    """``VaryingSensorModel``: each call grows the silhouette by a whole number of pixels drawn
    in ``GROW_PX`` (a 10x10 square becomes 10x10, 12x12 or 14x14), every one of them drawn."""
    depth = np.full((24, 24), 1000.0, np.float32)
    depth[7:17, 7:17] = 500.0
    fg = depth < 900
    sensor = realism.VaryingSensorModel(grow_px=(0, 2), noise=0.0, edge_drop=0.0, drop=0.0)
    rng = np.random.default_rng(3)
    sizes = [int((sensor.apply(depth.copy(), fg, rng) < 700).sum()) for _ in range(60)]
    assert set(sizes) == {100, 144, 196}
    assert realism.GROW_PX == (0, 2)


def test_vary_body_thickens_the_body_and_keeps_the_labels(project_root, tmp_path):
    """``make_frames(thickness_range=)`` renders the same hands (labels, theta) with a thicker
    body; ``--vary-body`` is recorded in synthetic.json and changes the frames."""
    from tests.data_helpers import run_module

    model = HandModel.nyu()
    sampler = synthetic.PoseSampler(model)
    plain_sensor = dict(sensor=realism.GrowingSensorModel(grow_px=0, noise=0.0, edge_drop=0.0, drop=0.0))
    d1, uvd1, xyz1, th1 = synthetic.make_frames(sampler, np.random.default_rng(9), 8,
                                                thickness_range=(1.0, 1.0), **plain_sensor)
    d2, uvd2, xyz2, th2 = synthetic.make_frames(sampler, np.random.default_rng(9), 8,
                                                thickness_range=(1.4, 1.4), **plain_sensor)
    np.testing.assert_array_equal(xyz1, xyz2)
    np.testing.assert_array_equal(th1, th2)
    # the hand (nearer than 400 mm behind joint 34) covers more pixels in every frame
    behind = xyz1[:, nyu.PALM_JOINT, 2, None, None] + 400
    near = [((d > 0) & (d < behind)).sum(axis=(-2, -1)) for d in (d1, d2)]
    assert np.all(near[1] > 1.15 * near[0]), (near[0], near[1])
    proc = run_module(project_root, "-m", "deepmodel.tools.synthetic", "--out", tmp_path / "v",
                      "--train", "4", "--test", "2", "--seed", "2", "--quiet", "--workers", "1",
                      "--vary-body")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "v" / "synthetic.json").read_text())["vary_body"] is True
    plain = synthetic.generate(tmp_path / "p", n_train=4, n_test=2, seed=2, workers=1, progress=False)
    assert "vary_body" not in plain
    a = nyu.read_depth(nyu.depth_file(tmp_path / "p" / "train", 0))
    b = nyu.read_depth(nyu.depth_file(tmp_path / "v" / "train", 0))
    assert (a != b).mean() > 0.001
