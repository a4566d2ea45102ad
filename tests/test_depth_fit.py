"""python_layers/fitting/depth_fit.py: the fit's Jacobian against finite differences, the crop geometry against
the project's crop, and poses recovered from rendered depth; tools/fit_depth.py,
tools/score_real.py --fit and tools/demo.py --fit through Caffe."""
import json
import subprocess
import sys

import numpy as np
import pytest

from deepmodel.data.datasets import nyu
from deepmodel.data.datasets.camera import NYU_CAMERA
from deepmodel.data.hand_crop.crop import crop_depth
from deepmodel.fitting.depth_fit import FINGER_COLUMNS, DepthFitter
from deepmodel.data.synthetic.nyu import PoseSampler, render_depth


@pytest.fixture(scope="module")
def frames(model):
    """Six rendered NYU frames of known pose (default body and sensor, no wall), cropped at the
    true palm centre: crops (6, 128, 128), theta (6, 26), centre xyz (6, 3) mm, keypoints (6, 31, 3)."""
    rng = np.random.default_rng(11)
    sampler = PoseSampler(model)
    theta = sampler.sample(rng, 6)
    kp = model.forward(theta)
    com_uvd = np.stack([rng.uniform(220, 420, 6), rng.uniform(160, 320, 6), rng.uniform(600, 900, 6)], 1)
    com = NYU_CAMERA.uvd_to_xyz(com_uvd)
    kp_mm = com[:, None] + model.mm_per_unit * kp
    depth = render_depth(sampler.body, kp_mm, com, rng, NYU_CAMERA, background="none")
    crops = np.stack([crop_depth(depth[i], com_uvd[i], nyu.CUBE_MM, NYU_CAMERA) for i in range(6)])
    return {"crops": crops, "theta": theta, "com": com, "kp": kp}


def test_crop_geometry_is_the_crops(model, frames):
    """A keypoint's pixel by the fitter's projection, with the true centre, is where the camera
    projects it in the crop (the crop's box, scaled to 128 pixels): within a pixel (the nearest
    pixel of a position known to the crop box's flooring)."""
    f = DepthFitter(model)
    for i in range(3):
        c = frames["com"][i]
        view = np.array([nyu.CUBE_MM / 2, c[0], c[1]]) / c[2]
        pts = frames["kp"][i]
        rows, cols = f.project(pts, 128, 128, view)
        uvd = NYU_CAMERA.xyz_to_uvd(c + model.mm_per_unit * pts)
        centre = NYU_CAMERA.xyz_to_uvd(c[None])[0]
        half_box = nyu.CUBE_MM / 2 * NYU_CAMERA.fx / c[2]
        want_c = (uvd[:, 0] - centre[0]) / half_box * 64 + 64 - 0.5
        want_r = (uvd[:, 1] - centre[1]) / (nyu.CUBE_MM / 2 * NYU_CAMERA.fy / c[2]) * 64 + 64 - 0.5
        inside = (want_c > 0) & (want_c < 127) & (want_r > 0) & (want_r < 127)
        assert inside.sum() > 20
        assert np.abs(cols - want_c)[inside].max() <= 1.0
        assert np.abs(rows - want_r)[inside].max() <= 1.0
        # and back: the lateral position of a pixel at the keypoint's depth is the keypoint's
        x, y = f.lateral(want_r, want_c, pts[:, 2], 128, 128, view)
        np.testing.assert_allclose(x[inside], pts[inside, 0], atol=0.02)     # 0.02 units = 3 mm
        np.testing.assert_allclose(y[inside], pts[inside, 1], atol=0.02)


def test_jacobian_matches_finite_differences(model, frames):
    fitter = DepthFitter(model)
    theta = frames["theta"][:3] + np.random.default_rng(2).normal(0, 0.05, (3, 26))
    fr = fitter._frames(frames["crops"][:3], frames["com"][:3], np.full(3, nyu.CUBE_MM))
    res, jac = fitter.residuals(theta, fr)
    assert np.count_nonzero(res) > 300
    eps = 1e-6
    num = np.zeros_like(jac)
    for j in range(26):
        tp, tm = theta.copy(), theta.copy()
        tp[:, j] += eps
        tm[:, j] -= eps
        num[:, :, j] = (fitter.residuals(tp, fr, False)[0] - fitter.residuals(tm, fr, False)[0]) / (2 * eps)
    # a residual whose nearest sphere or pixel switches inside +-eps is not differentiable there
    smooth = np.abs(num - jac).max(axis=2) < 1e-3 * (1 + np.abs(jac).max())
    assert smooth.mean() > 0.99
    np.testing.assert_allclose(num[smooth], jac[smooth], rtol=1e-4, atol=1e-7)
    assert np.abs(jac).max() > 0.01


def _err_mm(model, theta, kp):
    return np.linalg.norm(model.forward(theta) - kp, axis=2).mean(axis=1) * model.mm_per_unit


def test_fit_from_the_true_pose_stays_near_it(model, frames):
    """The objective's own bias: started at the truth (with the true crop centres), no frame's
    keypoints move by more than 6 mm on average (the body is drawn 0.9-1.1 thick, the sensor
    quantises and drops readings)."""
    out = DepthFitter(model, starts=1).fit(frames["crops"], frames["theta"], frames["com"])
    assert _err_mm(model, out["theta"], frames["kp"]).max() < 6.0
    assert np.all(out["cost"] <= out["cost_start"])


def test_fit_recovers_bent_fingers_from_depth(model, frames):
    """Start from the true pose with every finger and thumb angle moved by 0.35 rad towards the
    middle of its range (24 mm of keypoint error on average): the fit (both starts) removes more
    than a third of the error, and more than 5 mm on at least four of the six frames."""
    true = frames["theta"]
    mid = (model.lower + model.upper) / 2
    start = true.copy()
    start[:, FINGER_COLUMNS] += 0.35 * np.sign(mid - true)[:, FINGER_COLUMNS]
    start = np.clip(start, model.lower, model.upper)
    out = DepthFitter(model).fit(frames["crops"], start, frames["com"])
    before, after = _err_mm(model, start, frames["kp"]), _err_mm(model, out["theta"], frames["kp"])
    assert before.mean() > 15.0
    assert after.mean() < 0.65 * before.mean(), (before, after)
    assert np.sum(after < before - 5.0) >= 4, (before, after)
    assert np.all((out["theta"] >= model.lower - 1e-12) & (out["theta"] <= model.upper + 1e-12))


def test_open_hand_start_is_kept_only_when_it_explains_the_depth_better(model, frames):
    out = DepthFitter(model).fit(frames["crops"][:2], frames["theta"][:2], frames["com"][:2])
    one = DepthFitter(model, starts=1).fit(frames["crops"][:2], frames["theta"][:2], frames["com"][:2])
    for i in range(2):
        assert out["cost"][i] <= one["cost"][i] + 1e-15
        if out["start"][i] == 0:
            np.testing.assert_array_equal(out["theta"][i], one["theta"][i])


TURNING_NET = """
name: "turning"
layer {{ name: "depth" type: "Input" top: "depth" input_param {{ shape {{ dim: {n} dim: 1 dim: 128 dim: 128 }} }} }}
layer {{ name: "hand_turn" type: "Python" bottom: "depth" top: "depth_up" top: "turn"
        python_param {{ module: "deepmodel.layers.hand_turn_layer" layer: "HandTurnLayer" }} }}
layer {{ name: "theta" type: "Input" top: "theta" input_param {{ shape {{ dim: {n} dim: 26 }} }} }}
"""


def test_fit_of_a_turning_net_lands_near_the_truth_in_the_crops_frame(model, frames, make_net):
    """fit_net_pose (what score_real.py --fit and fit_depth.py run) on a net that turns its crops
    hand-up: a net of the HandTurnLayer whose theta blob (an input here) poses the hand in the
    turned crops, every finger angle 0.35 rad off the truth. Back in the crops' own frame (the
    turn undone by a rotation matrix written out here) the fitted keypoints are nearer the truth
    than the start by more than a third of its error, at the true crop centres."""
    from deepmodel.model.global_pose import rotate_pose
    from deepmodel.nets.net_io import fit_net_pose

    n = len(frames["crops"])
    net = make_net(TURNING_NET.format(n=n))
    net.blobs["depth"].data[...] = frames["crops"][:, None]
    net.forward()
    phi = np.array(net.blobs["turn"].data, np.float64).reshape(n)
    assert np.abs(phi).max() > 0.3                                 # the crops are really turned
    c, s = np.cos(phi), np.sin(phi)
    rot = np.zeros((n, 3, 3))
    rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1], rot[:, 2, 2] = c, -s, s, c, 1.0
    up = rotate_pose(model, frames["theta"], rot)                  # the truth in the turned crops
    np.testing.assert_allclose(model.forward(up), np.einsum("nij,nkj->nki", rot, frames["kp"]),
                               atol=1e-9)
    mid = (model.lower + model.upper) / 2
    start = up.copy()
    start[:, FINGER_COLUMNS] += 0.35 * np.sign(mid - up)[:, FINGER_COLUMNS]
    start = np.clip(start, model.lower, model.upper)
    net.blobs["theta"].data[...] = start
    keypoints, fit = fit_net_pose(net, "theta", "the turning net", frames["crops"][:, None],
                                  np.full(n, nyu.CUBE_MM), frames["com"])

    def back(kp):                                                  # R^T p for each point
        return np.einsum("nji,nkj->nki", rot, kp)

    np.testing.assert_allclose(keypoints.reshape(n, 31, 3), back(model.forward(fit["theta"])),
                               atol=1e-9)
    err = lambda kp: np.linalg.norm(kp - frames["kp"], axis=2).mean(axis=1) * model.mm_per_unit
    before, after = err(back(model.forward(start))), err(keypoints.reshape(n, 31, 3))
    assert before.mean() > 15.0
    assert after.mean() < 0.65 * before.mean(), (before, after)


def test_bad_arguments(model):
    with pytest.raises(ValueError, match="theta"):
        DepthFitter(model).fit(np.zeros((2, 128, 128)), np.zeros((3, 26)))
    with pytest.raises(ValueError, match="positive"):
        DepthFitter(model).fit(np.zeros((1, 128, 128)), np.zeros((1, 26)), (0.0, 0.0, -5.0))
    with pytest.raises(ValueError, match="cube"):
        DepthFitter(model).fit(np.zeros((1, 128, 128)), np.zeros((1, 26)), None, 0.0)
    with pytest.raises(ValueError, match="starts"):
        DepthFitter(model, starts=3)


def run_tool(project_root, name, *args):
    return subprocess.run([sys.executable, str(project_root / "tools" / name), *map(str, args)],
                          capture_output=True, text=True, cwd=project_root)


def test_score_real_fit_through_caffe(project_root, tmp_path):
    """The shipped net with --fit: a second column, per frame and mean, in the output and JSON."""
    proc = run_tool(project_root, "score_real.py", "--weights",
                    project_root / "models" / "default" / "deepmodel.caffemodel", "--fit",
                    "--json", tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr
    r = json.loads((tmp_path / "r.json").read_text())
    assert len(r["fit_mm"]) == 5 and np.all(np.isfinite(r["fit_mm"]))
    assert r["fit_mean_mm"] == pytest.approx(np.mean(r["fit_mm"]))
    assert r["fit_mm"] != r["net_mm"]
    assert "net + fit" in proc.stdout and f"{r['fit_mean_mm']:.2f}" in proc.stdout


def test_score_real_fit_needs_the_angles(project_root, tmp_path):
    model = tmp_path / "direct.prototxt"
    model.write_text('name: "d" layer { name: "data" type: "Input" top: "data" '
                     'input_param { shape { dim: 1 dim: 1 dim: 128 dim: 128 } } } '
                     'layer { name: "fc" type: "InnerProduct" bottom: "data" top: "joints" '
                     'inner_product_param { num_output: 93 } }')
    import caffe
    net = caffe.Net(str(model), caffe.TEST)
    net.save(str(tmp_path / "d.caffemodel"))
    proc = run_tool(project_root, "score_real.py", "--weights", tmp_path / "d.caffemodel",
                    "--model", model, "--fit")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "--theta-blob" in proc.stderr and "direct.prototxt" in proc.stderr


def test_fit_depth_tool_on_a_rendered_lmdb(project_root, tmp_path):
    """tools/fit_depth.py on a tiny synthetic test LMDB, with the shipped net (it turns its crops):
    both columns near each other, the JSON's figures equal to the printed ones; a missing LMDB is
    one line."""
    from data_helpers import make_synthetic
    from deepmodel.tools import make_lmdb

    root = make_synthetic(tmp_path / "synthetic", 8, 8, seed=5)
    assert make_lmdb.main(["nyu", "--root", str(root), "--out", str(tmp_path / "lmdb"),
                           "--workers", "1", "--quiet"]) == 0
    proc = run_tool(project_root, "fit_depth.py", "--weights",
                    project_root / "models" / "default" / "deepmodel.caffemodel",
                    "--lmdb", tmp_path / "lmdb" / "nyu_test", "--frames", 8, "--json", tmp_path / "f.json")
    assert proc.returncode == 0, proc.stderr
    r = json.loads((tmp_path / "f.json").read_text())
    assert r["frames"] == 8 and 0 < r["net_mm"] < 30
    # rendered frames at their true centres: the fitted hand stays within 5 mm of the net's
    # (measured 14.44 -> 16.38 mm, centred 12.88 -> 14.08); a fitted hand left in the turned crop's
    # frame is 30-40 mm further off
    assert abs(r["fit_mm"] - r["net_mm"]) < 5.0 and abs(r["fit_centred_mm"] - r["net_centred_mm"]) < 5.0
    assert r["fit_mm"] != r["net_mm"] and r["fit_centred_mm"] != r["net_centred_mm"]   # both scored
    assert f"{r['net_mm']:.2f}" in proc.stdout and f"{r['fit_centred_mm']:.2f}" in proc.stdout
    proc = run_tool(project_root, "fit_depth.py", "--lmdb", tmp_path / "none" / "nyu_test",
                    "--weights", project_root / "models" / "default" / "deepmodel.caffemodel")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "none" in proc.stderr


def test_demo_draws_the_fitted_hand(project_root, tmp_path, model):
    """tools/demo.py --fit on the real crops: demo.json holds the fitted keypoints (the model's
    forward pass of the written angles) beside the net's own, which differ."""
    out = tmp_path / "demo"
    proc = run_tool(project_root, "demo.py", "--fit", "--out", out, "--weights",
                    project_root / "models" / "default" / "deepmodel.caffemodel")
    assert proc.returncode == 0, proc.stderr
    r = json.loads((out / "demo.json").read_text())
    assert r["fit_to_depth"] is True and len(r["inputs"]) == 5
    for e in r["inputs"]:
        fitted = np.array(e["keypoints_normalised"])
        # make train's net turns its crops hand-up: the pose is turned back by the crop's angle
        a = -e["turn_rad"]
        back = np.array([[np.cos(a), np.sin(a), 0], [-np.sin(a), np.cos(a), 0], [0, 0, 1]])
        np.testing.assert_allclose(fitted, model.forward(np.array([e["theta"]]))[0] @ back,
                                   atol=1e-9)
        assert np.abs(fitted - np.array(e["net_keypoints_normalised"])).max() > 1e-3
    assert (out / "overview.png").is_file()
