"""tools/score_real.py: the real-crop metric against an independent computation, through Caffe."""
import json
import subprocess
import sys

import numpy as np
import pytest

from data_helpers import nyu_uvd_to_xyz

EVAL14 = [0, 3, 5, 8, 10, 13, 15, 18, 30, 29, 28, 25, 26, 24]   # typed in from the model spec
CROPS = [0, 772, 1150, 1350, 1739]

CONST_NET = """
name: "const"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 1 dim: 1 dim: 128 dim: 128 } } }
layer { name: "pool" type: "Pooling" bottom: "data" top: "pool"
        pooling_param { pool: AVE global_pooling: true } }
layer { name: "fc" type: "InnerProduct" bottom: "pool" top: "joints"
        inner_product_param { num_output: 93 } }
"""


@pytest.fixture(scope="module")
def labels_xyz(reference_data):
    uvd = np.loadtxt(reference_data / "nyu" / "nyu_test_groundtruth_label.txt.xz").reshape(-1, 14, 3)
    return nyu_uvd_to_xyz(uvd)


def const_weights(tmp_path, pose93):
    """A real deploy net whose output is ``pose93`` whatever the crop (weights 0, bias = pose)."""
    import caffe

    model = tmp_path / "const.prototxt"
    model.write_text(CONST_NET)
    net = caffe.Net(str(model), caffe.TEST)
    net.params["fc"][0].data[...] = 0
    net.params["fc"][1].data[...] = pose93
    weights = tmp_path / "const.caffemodel"
    net.save(str(weights))
    return model, weights


def run_tool(project_root, *args):
    return subprocess.run([sys.executable, str(project_root / "tools" / "score_real.py"),
                           *map(str, args)], capture_output=True, text=True, cwd=project_root)


def to93(pose14_norm):
    out = np.zeros((31, 3))
    out[EVAL14] = pose14_norm
    return out.reshape(93)


def test_mean_pose_net_scores_the_baseline(project_root, tmp_path, labels_xyz):
    centred = labels_xyz - labels_xyz.mean(axis=1, keepdims=True)
    mean_pose = centred.mean(axis=0)                                 # (14, 3) mm
    model, weights = const_weights(tmp_path, to93(mean_pose / 150.0))   # all crops < 2440
    proc = run_tool(project_root, "--weights", weights, "--model", model,
                    "--json", tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["frames"] == CROPS
    true = centred[CROPS]
    expect = np.linalg.norm(true - mean_pose, axis=2).mean(axis=1)
    np.testing.assert_allclose(r["mean_pose_mm"], expect, rtol=1e-9)
    np.testing.assert_allclose(r["net_mm"], expect, rtol=1e-5)       # float32 through Caffe
    assert 45 < r["mean_pose_mean_mm"] < 60                           # the issue's ~52 mm
    assert f"{r['mean_pose_mean_mm']:.2f}" in proc.stdout


def test_exact_pose_scores_zero_and_shift_is_ignored(project_root, tmp_path, labels_xyz):
    """A net that outputs frame 772's true pose, shifted by 40 mm: 0 mm on that frame only."""
    pose = labels_xyz[772] + np.array([40.0, -10.0, 25.0])
    model, weights = const_weights(tmp_path, to93(pose / 150.0))
    proc = run_tool(project_root, "--weights", weights, "--model", model,
                    "--json", tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["net_mm"][1] == pytest.approx(0.0, abs=1e-3)
    assert min(r["net_mm"][i] for i in (0, 2, 3, 4)) > 5.0


def test_several_weights_are_scored_on_their_average(project_root, tmp_path, labels_xyz):
    """Two nets bent the opposite ways around frame 772's true pose (+-D per joint): each scores
    more than 5 mm there, their average of keypoints 0."""
    rng = np.random.default_rng(0)
    bend = rng.normal(0.0, 15.0, (14, 3))
    files = []
    for sign, name in ((1.0, "a"), (-1.0, "b")):
        folder = tmp_path / name
        folder.mkdir()
        files.append(const_weights(folder, to93((labels_xyz[772] + sign * bend) / 150.0)))
    model = files[0][0]
    singles = []
    for _, w in files:
        proc = run_tool(project_root, "--weights", w, "--model", model, "--json", tmp_path / "one.json")
        assert proc.returncode == 0, proc.stderr
        singles.append(json.loads((tmp_path / "one.json").read_text())["net_mm"][1])
    assert min(singles) > 5.0
    proc = run_tool(project_root, "--weights", files[0][1], files[1][1], "--model", model,
                    "--json", tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["net_mm"][1] == pytest.approx(0.0, abs=1e-3)
    assert r["weights"] == [str(files[0][1]), str(files[1][1])]
    assert "average of 2 nets" in proc.stdout


def test_subject_two_frames_use_the_smaller_cube():
    from deepmodel.data.evaluation.real_crops import half_cube_mm
    np.testing.assert_allclose(half_cube_mm([0, 2439, 2440, 8251]), [150, 150, 130.5, 130.5])


def test_bad_input(project_root, tmp_path):
    proc = run_tool(project_root, "--weights", tmp_path / "none.caffemodel")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "none.caffemodel" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    (tmp_path / "crops").mkdir()
    proc = run_tool(project_root, "--crops", tmp_path / "crops", "--weights", tmp_path / "w")
    assert proc.returncode == 2 and "no crops" in proc.stderr


def test_shipped_nets_score_their_records(project_root, reference_data, labels_xyz, tmp_path):
    """models/default/ (make train's net, turned hand-up) and models/real/ (make train-real's):
    small and tracked; their keypoints on the five real crops, through caffe.Net with each one's
    own deploy net and the metric computed here, score the figures their READMEs record, both far
    below the mean pose (52.21 mm); the tool prints the same figure."""
    import caffe
    import cv2

    crops = np.stack([cv2.imread(str(reference_data / "nyu" / "test_crops" / f"{f}.png"),
                                 cv2.IMREAD_GRAYSCALE) for f in CROPS]) / 255.0 * 2.0 - 1.0
    true = labels_xyz[CROPS]
    true = true - true.mean(axis=1, keepdims=True)
    means = {}
    for name, deploy in (("real", "deploy.prototxt"), ("default", "deploy_hand_up.prototxt")):
        weights = project_root / "models" / name / "deepmodel.caffemodel"
        assert weights.is_file() and weights.stat().st_size < 10 << 20
        assert subprocess.run(["git", "check-ignore", "-q", str(weights)],
                              cwd=project_root).returncode == 1          # tracked, not ignored
        net = caffe.Net(str(project_root / "prototxt" / deploy), str(weights), caffe.TEST)
        net.blobs["depth"].reshape(len(CROPS), 1, 128, 128)
        net.blobs["depth"].data[...] = crops[:, None]
        net.forward()
        pred = net.blobs["joints"].data.reshape(len(CROPS), 31, 3)[:, EVAL14] * 150.0  # all < 2440
        pred = pred - pred.mean(axis=1, keepdims=True)
        means[name] = np.linalg.norm(pred - true, axis=2).mean()
        readme = (project_root / "models" / name / "README.md").read_text()
        assert f"{means[name]:.2f} mm" in readme, name
        assert means[name] <= 35.0, name      # the recipes' seeds reach 35 mm (docs/experiments/realism.md)
    for name, mean in means.items():              # the tool finds each one's deploy net itself
        out = tmp_path / f"{name}.json"
        proc = run_tool(project_root, "--weights",
                        project_root / "models" / name / "deepmodel.caffemodel", "--json", out)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(out.read_text())["net_mean_mm"] == pytest.approx(mean, abs=1e-3)


def _turn_back(points, phi):
    """``(N, K, 3)`` points turned clockwise by ``phi`` ``(N,)`` about z: the inverse of a
    counter-clockwise turn, written out here as rotation matrices."""
    c, s = np.cos(phi), np.sin(phi)
    rot = np.zeros((len(phi), 3, 3))
    rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1], rot[:, 2, 2] = c, -s, s, c, 1.0
    return np.einsum("nji,nkj->nki", rot, points)          # R^T p for each point


def test_shipped_nets_fitted_figures_are_their_records(project_root, reference_data, labels_xyz,
                                                       tmp_path):
    """The real-crop figure with the pose fitted to the depth, recomputed here for both shipped
    nets: each net's angles through caffe.Net, fitted to its own crops (the turned ones for
    make train's hand-up net) with the depth fitter, the hand turned back by the net's angle with a
    rotation written out here, scored with the metric computed here. It is the figure the nets'
    READMEs record, and the one score_real.py --fit prints."""
    import caffe
    import cv2

    from deepmodel.fitting.depth_fit import DepthFitter
    from deepmodel.model.hand_model import HandModel

    model = HandModel.nyu()
    crops = np.stack([cv2.imread(str(reference_data / "nyu" / "test_crops" / f"{f}.png"),
                                 cv2.IMREAD_GRAYSCALE) for f in CROPS]) / 255.0 * 2.0 - 1.0
    true = labels_xyz[CROPS]
    true = true - true.mean(axis=1, keepdims=True)
    for name, deploy in (("real", "deploy.prototxt"), ("default", "deploy_hand_up.prototxt")):
        weights = project_root / "models" / name / "deepmodel.caffemodel"
        net = caffe.Net(str(project_root / "prototxt" / deploy), str(weights), caffe.TEST)
        net.blobs["depth"].reshape(len(CROPS), 1, 128, 128)
        net.blobs["depth"].data[...] = crops[:, None]
        net.forward()
        theta = np.array(net.blobs["theta"].data, np.float64)
        turned = name == "default"
        assert turned == ("turn" in net.blobs)
        posed = net.blobs["depth_up"].data[:, 0] if turned else crops
        fitted = DepthFitter(model).fit(np.array(posed, np.float64), theta, cube_mm=300.0)["theta"]
        kp = model.forward(fitted)
        if turned:
            kp = _turn_back(kp, np.array(net.blobs["turn"].data, np.float64).reshape(-1))
        pred = kp[:, EVAL14] * 150.0
        pred = pred - pred.mean(axis=1, keepdims=True)
        fit_mm = np.linalg.norm(pred - true, axis=2).mean()
        readme = (project_root / "models" / name / "README.md").read_text()
        assert f"with the pose fitted to the depth {fit_mm:.2f} mm" in readme, (name, fit_mm)
        out = tmp_path / f"{name}.json"
        proc = run_tool(project_root, "--weights", weights, "--fit", "--json", out)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(out.read_text())["fit_mean_mm"] == pytest.approx(fit_mm, abs=1e-3), name
