"""tools/test_net.py and data_prep/evaluation/metrics.py: figures against published numbers and hand computations,
the net path through real Caffe and real LMDBs, and bad input through the real CLI."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from deepmodel.data.evaluation import metrics
from data_helpers import assert_one_line_error, reference_lines

PY = sys.executable


def run_cli(project_root, *args, env_extra=None, cwd=None):
    env = dict(os.environ)
    env.setdefault("GLOG_minloglevel", "2")
    if env_extra:
        env.update(env_extra)
    return subprocess.run([PY, str(project_root / "tools" / "test_net.py"), *map(str, args)],
                          cwd=cwd or project_root, capture_output=True, text=True, env=env, timeout=300)


# ---------------------------------------------------------------------------------------------
# metrics on hand-made cases

# the evaluation kit's cameras (fx, fy, cx, cy) and joints per line, typed in from its conventions
KIT = {"nyu": (588.03, -587.07, 320.0, 240.0, 14), "icvl": (240.99, 240.96, 160.0, 120.0, 16),
       "msra": (241.42, 241.42, 160.0, 120.0, 21)}


def kit_xyz_to_uvd(xyz, dataset):
    fx, fy, cx, cy, _ = KIT[dataset]
    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    return np.stack([cx + x * fx / z, cy + y * fy / z, z], -1)


def write_uvd(path, rows):
    rows = np.asarray(rows).reshape(len(rows), -1)
    path.write_text("\n".join(" ".join(f"{v:.10f}" for v in row) for row in rows) + "\n")


def hand_made_files(tmp_path, dataset, n=5, seed=1):
    """Labels and predictions of ``n`` frames in the kit's format whose joint errors are known.

    True joints scattered in a 160 mm box 500-800 mm from the camera; each prediction is the true
    joint moved by a chosen distance (k + 0.37 mm, never a whole number, so no curve threshold
    sits on an error) in a random direction; both written as uvd with the kit's camera. Returns
    ``(labels path, predictions path, errors (n, J) mm)``.
    """
    rng = np.random.default_rng(seed)
    joints = KIT[dataset][4]
    true = np.stack([rng.uniform(-80, 80, (n, joints)), rng.uniform(-80, 80, (n, joints)),
                     rng.uniform(500, 800, (n, joints))], -1)
    errors = rng.integers(0, 60, (n, joints)) + 0.37
    direction = rng.normal(size=(n, joints, 3))
    direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
    pred = true + errors[..., None] * direction
    labels, preds = tmp_path / f"{dataset}_labels.txt", tmp_path / f"{dataset}_pred.txt"
    write_uvd(labels, kit_xyz_to_uvd(true, dataset))
    write_uvd(preds, kit_xyz_to_uvd(pred, dataset))
    return labels, preds, errors


def test_metrics_hand_made_numbers():
    true = np.zeros((2, 2, 3))
    pred = np.array([[[0, 0, 3.0], [3.0, 0, 4.0]], [[0, 0, 0], [0, 12.0, 0]]])
    err = metrics.joint_errors(pred, true)
    np.testing.assert_allclose(err, [[3, 5], [0, 12]])
    s = metrics.error_summary(err, ["a", "b"], thresholds=range(0, 14))
    assert s["frames"] == 2
    assert s["mean_error_mm"] == pytest.approx(20 / 4)
    assert s["per_joint_error_mm"] == pytest.approx({"a": 1.5, "b": 8.5})
    # worst joints are 5 and 12 mm: 0 frames below 5, one from 5 to 11, both from 12
    expect = {str(t): (0.0 if t < 5 else 0.5 if t < 12 else 1.0) for t in range(14)}
    assert s["frac_max_error_within_mm"] == pytest.approx(expect)
    # frame means are 4 and 6 mm
    expect = {str(t): (0.0 if t < 4 else 0.5 if t < 6 else 1.0) for t in range(14)}
    assert s["frac_mean_error_within_mm"] == pytest.approx(expect)
    # the four joints: 0, 3, 5, 12 mm
    expect = {str(t): (1 + (t >= 3) + (t >= 5) + (t >= 12)) / 4 for t in range(14)}
    assert s["frac_joints_within_mm"] == pytest.approx(expect)


def test_angle_error_and_limits_hand_made():
    free_ids = np.array([0, 1, 2, 3, 4, 5] + list(range(15, 19)) + list(range(31, 47)))
    true = np.zeros((2, 26))
    pred = np.zeros((2, 26))
    pred[:, 0] = 5.0                      # a translation: not an angle, ignored
    pred[0, 3] = np.radians(23.0)         # 23 deg on one angle of frame 0
    pred[1, 4] = np.radians(350.0)        # wraps to -10 deg
    mean, per = metrics.angle_error_deg(pred, true, free_ids)
    assert per.shape == (23,)
    assert mean == pytest.approx((23.0 + 10.0) / (2 * 23))
    # the (N, 47) layout picks the free ids
    pred47 = np.full((2, 47), 99.0)
    pred47[:, free_ids] = pred
    assert metrics.angle_error_deg(pred47, true, free_ids)[0] == pytest.approx(mean)
    lower, upper = np.full(26, -1.0), np.full(26, 1.0)
    lower[:3], upper[:3] = -1e4, 1e4
    theta = np.zeros((3, 26))
    theta[1, 20] = 1.5
    theta[2, 20] = 1.0                    # on the bound: inside
    np.testing.assert_array_equal(metrics.out_of_limits(theta, lower, upper, free_ids),
                                  [False, True, False])



# ---------------------------------------------------------------------------------------------
# mode 2 through the CLI

PUBLISHED = {   # published means (mm) of the reference prediction files, the kit's conventions
    "nyu": {"CVWW15_NYU_Prior": 20.750, "ICCVW17_NYU_DeepPrior++": 12.238},
    "icvl": {"CVPR14_LRF_Results": 12.578, "JVCI18_ICVL_REN_9x6x6": 7.305},
}
LABEL_FILES = {"nyu": "nyu_test_groundtruth_label.txt.xz",
               "icvl": "icvl_test_groundtruth_label.txt.xz"}


@pytest.mark.parametrize("dataset", ["nyu", "icvl"])
def test_published_predictions_give_published_means(reference_data, project_root, tmp_path,
                                                     dataset):
    preds = sorted((reference_data / dataset / "predictions").glob("*.txt.xz"))
    out = tmp_path / "cmp"
    proc = run_cli(project_root, "--predictions", *preds,
                   "--labels", reference_data / dataset / LABEL_FILES[dataset], "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert f"dataset: {dataset} (inferred" in proc.stdout
    report = json.loads((out / "eval.json").read_text())
    assert report["dataset"] == dataset
    by_name = {m["name"]: m for m in report["methods"]}
    assert set(by_name) == set(PUBLISHED[dataset])
    frames = 8252 if dataset == "nyu" else 1596
    for name, published in PUBLISHED[dataset].items():
        assert abs(by_name[name]["mean_error_mm"] - published) < 0.01, name
        assert by_name[name]["frames"] == frames
        assert f"{published:.3f}" in proc.stdout
        assert len(by_name[name]["per_joint_error_mm"]) == (14 if dataset == "nyu" else 16)
        for key in ("frac_max_error_within_mm", "frac_mean_error_within_mm",
                    "frac_joints_within_mm"):
            values = list(by_name[name][key].values())
            assert list(by_name[name][key]) == [str(t) for t in range(81)]
            assert values == sorted(values) and 0.0 <= values[0] and values[-1] <= 1.0
    first = by_name[method_name(preds[0])]
    assert report["mean_error_mm"] == first["mean_error_mm"]          # first file on top
    assert report["frames"] == frames
    for png in ("threshold.png", "per_joint.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def method_name(path):
    return path.name.removesuffix(".xz").removesuffix(".txt")


def test_icvl_defaults_to_its_labels_and_camera_and_sorts(reference_data, project_root, tmp_path):
    """No --labels, no --dataset: ICVL inferred from 16 joints, its camera, its labels; --sort."""
    preds = sorted((reference_data / "icvl" / "predictions").glob("*.txt.xz"))
    proc = run_cli(project_root, "--predictions", *preds, "--sort", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["labels"].endswith("icvl_test_groundtruth_label.txt.xz")
    assert report["camera"] == {"fx": 240.99, "fy": 240.96, "cx": 160.0, "cy": 120.0}
    assert [m["name"] for m in report["methods"]] == ["JVCI18_ICVL_REN_9x6x6", "CVPR14_LRF_Results"]
    rows = [line.split()[0] for line in proc.stdout.splitlines() if line.startswith(("JVCI", "CVPR"))]
    assert rows == ["JVCI18_ICVL_REN_9x6x6", "CVPR14_LRF_Results"]    # one row per file, sorted
    assert list(report["per_joint_error_mm"])[:2] == ["palm", "thumb root"]


def test_labels_as_predictions_give_zero(reference_data, project_root, tmp_path):
    labels = reference_data / "nyu" / "nyu_test_groundtruth_label.txt.xz"
    proc = run_cli(project_root, "--predictions", labels, "--labels", labels,
                   "--out", tmp_path, "--json", tmp_path / "z.json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "z.json").read_text())
    assert report["mean_error_mm"] == 0.0
    for key in ("frac_max_error_within_mm", "frac_mean_error_within_mm", "frac_joints_within_mm"):
        assert report[key]["0"] == 1.0
    assert set(report["per_joint_error_mm"].values()) == {0.0}


@pytest.mark.parametrize("dataset", ["nyu", "icvl", "msra"])
def test_three_curves_on_hand_made_files_against_independent_computation(project_root, tmp_path,
                                                                          dataset):
    labels, pred, errors = hand_made_files(tmp_path, dataset)
    args = ["--dataset", dataset] if dataset == "msra" else []       # msra: also by inference
    proc = run_cli(project_root, "--predictions", pred, "--labels", labels, *args,
                   "--out", tmp_path / "o")
    assert proc.returncode == 0, proc.stderr
    r = json.loads((tmp_path / "o" / "eval.json").read_text())
    assert r["dataset"] == dataset and r["frames"] == len(errors)
    assert r["mean_error_mm"] == pytest.approx(errors.mean(), abs=1e-5)
    assert list(r["per_joint_error_mm"].values()) == pytest.approx(errors.mean(0), abs=1e-5)
    t = np.arange(81)
    expect = {
        "frac_max_error_within_mm": (errors.max(1)[None, :] <= t[:, None]).mean(1),
        "frac_mean_error_within_mm": (errors.mean(1)[None, :] <= t[:, None]).mean(1),
        "frac_joints_within_mm": (errors.reshape(1, -1) <= t[:, None]).mean(1),
    }
    for key, values in expect.items():
        assert list(r[key].values()) == pytest.approx(values), key
        assert 0 < np.count_nonzero(np.diff(values))       # the curve does rise: not trivially 0/1


def test_the_camera_matters(project_root, tmp_path):
    """ICVL files read with the NYU camera would be scored about 30% too small: not here."""
    labels, pred, errors = hand_made_files(tmp_path, "icvl")
    proc = run_cli(project_root, "--predictions", pred, "--labels", labels, "--out", tmp_path / "o")
    r = json.loads((tmp_path / "o" / "eval.json").read_text())
    assert r["mean_error_mm"] == pytest.approx(errors.mean(), abs=1e-5)
    proc = run_cli(project_root, "--predictions", pred, "--labels", labels, "--dataset", "nyu",
                   "--out", tmp_path / "x")
    assert_one_line_error(proc, "16 joints", "nyu", "14")


def test_wrong_column_count_is_one_line_error(project_root, tmp_path, reference_data):
    labels = reference_data / "nyu" / "nyu_test_groundtruth_label.txt.xz"
    bad = tmp_path / "bad.txt"
    lines = reference_lines(labels)[:5]
    lines[3] = " ".join(lines[3].split()[:-1])          # 41 values
    bad.write_text("\n".join(lines) + "\n")
    proc = run_cli(project_root, "--predictions", bad, "--labels", labels, "--out", tmp_path / "o")
    assert_one_line_error(proc, str(bad), "line 4", "41 values")
    assert not (tmp_path / "o" / "eval.json").exists()


def test_joint_count_mismatch_names_both_counts(project_root, tmp_path, reference_data):
    icvl = reference_data / "icvl" / "predictions" / "CVPR14_LRF_Results.txt.xz"
    labels = reference_data / "nyu" / "nyu_test_groundtruth_label.txt.xz"
    proc = run_cli(project_root, "--predictions", icvl, "--labels", labels, "--out", tmp_path / "o")
    assert_one_line_error(proc, "CVPR14_LRF_Results", "16 joints", "14")
    assert not (tmp_path / "o" / "eval.json").exists()


def test_frame_count_mismatch_is_one_line_error(project_root, tmp_path, reference_data):
    labels = reference_data / "nyu" / "nyu_test_groundtruth_label.txt.xz"
    short = tmp_path / "short.txt"
    short.write_text("\n".join(reference_lines(labels)[:100]) + "\n")
    proc = run_cli(project_root, "--predictions", short, "--labels", labels, "--out", tmp_path / "o")
    assert_one_line_error(proc, str(short), "100 frames", "8252")
    assert not (tmp_path / "o" / "eval.json").exists()


def test_unknown_joint_count_asks_for_dataset(project_root, tmp_path):
    odd = tmp_path / "odd.txt"
    write_uvd(odd, np.full((3, 2, 3), 400.0))                  # 2 joints per line
    proc = run_cli(project_root, "--predictions", odd, "--labels", odd, "--out", tmp_path / "o")
    assert_one_line_error(proc, "2 joints per line", "--dataset")
    proc = run_cli(project_root, "--predictions", odd, "--out", tmp_path / "o", "--dataset", "msra")
    assert_one_line_error(proc, "2 joints per line", "msra", "21")


def test_option_errors(project_root, tmp_path):
    labels, pred, _ = hand_made_files(tmp_path, "nyu")
    assert_one_line_error(run_cli(project_root, "--predictions", pred, "--dataset", "msra"),
                          "21")
    msra_labels, msra_pred, _ = hand_made_files(tmp_path, "msra")
    assert_one_line_error(run_cli(project_root, "--predictions", msra_pred), "msra", "--labels")
    assert_one_line_error(run_cli(project_root, "--predictions", pred, "--labels", labels,
                                  "--names", "a", "b"), "--names")
    assert_one_line_error(run_cli(project_root, "--predictions", tmp_path / "nope.txt",
                                  "--labels", labels), "nope.txt")
    # no --weights: the default weights are used, and a missing LMDB is named
    assert_one_line_error(run_cli(project_root, "--lmdb", tmp_path / "nowhere" / "nyu_test", "--out",
                                  tmp_path / "o" / "e"), "nowhere")
    assert_one_line_error(run_cli(project_root, "--predictions", pred, "--labels", labels, "--weights",
                                  tmp_path / "w.caffemodel"), "not both")


# ---------------------------------------------------------------------------------------------
# mode 1: a tiny real net on real LMDBs

TINY_NET = """
name: "tiny"
layer {{ name: "data" type: "Input" top: "data"
        input_param {{ shape {{ dim: 1 dim: 1 dim: 8 dim: 8 }} }} }}
layer {{ name: "fcj" type: "InnerProduct" bottom: "data" top: "joints"
        inner_product_param {{ num_output: {nj}
          weight_filler {{ type: "gaussian" std: 0.05 }} bias_filler {{ type: "gaussian" std: 0.2 }} }} }}
{theta}
"""
TINY_THETA = """
layer { name: "fct" type: "InnerProduct" bottom: "data" top: "theta"
        inner_product_param { num_output: 26
          weight_filler { type: "gaussian" std: 0.3 } bias_filler { type: "gaussian" std: 0.3 } } }
"""


def write_datum_lmdb(path, arrays):
    """A Caffe LMDB of float Datums, keys '%08d': arrays (N, C, H, W)."""
    import lmdb
    from caffe.proto import caffe_pb2

    env = lmdb.open(str(path), map_size=1 << 26)
    with env.begin(write=True) as txn:
        for i, a in enumerate(np.asarray(arrays, dtype=np.float32)):
            d = caffe_pb2.Datum(channels=a.shape[0], height=a.shape[1], width=a.shape[2])
            d.float_data.extend(a.ravel().tolist())
            txn.put(b"%08d" % i, d.SerializeToString())
    env.close()


def make_tiny(tmp_path, n=7, theta_net=True, theta_meta=True, nj=93, name="tiny", seed=0,
              dataset=None):
    """Tiny deploy net + random weights + LMDBs of n records (joint records of ``nj`` values;
    ``dataset`` recorded in the meta file when given). Returns a dict of paths/arrays."""
    import caffe

    rng = np.random.default_rng(seed)
    model = tmp_path / f"{name}.prototxt"
    model.write_text(TINY_NET.format(nj=nj, theta=TINY_THETA if theta_net else ""))
    net = caffe.Net(str(model), caffe.TEST)
    depth = rng.uniform(-1, 1, (n, 1, 8, 8)).astype(np.float32)
    if theta_net:
        # theta = 0 (rest pose, inside every limit) except free parameter 10 (id 31, upper limit
        # 0.053) = 1.5 * the first pixel: the frames with a clearly positive first pixel are out
        net.params["fct"][0].data[...] = 0
        net.params["fct"][1].data[...] = 0
        net.params["fct"][0].data[10, 0] = 1.5
        depth[:, 0, 0, 0] = np.resize([-0.9, 0.5, -0.5, 0.9, 0.0, 0.3, -0.2], n)
    weights = tmp_path / f"{name}.caffemodel"
    net.save(str(weights))
    joints = rng.uniform(-0.9, 0.9, (n, nj, 1, 1)).astype(np.float32)
    prefix = tmp_path / "lmdb" / "nyu_test"
    prefix.parent.mkdir(exist_ok=True)
    write_datum_lmdb(f"{prefix}_depth", depth)
    write_datum_lmdb(f"{prefix}_joint", joints)
    meta = {"com": np.column_stack([rng.uniform(-80, 80, n), rng.uniform(-80, 80, n),
                                    rng.uniform(600, 900, n)]),
            "cube": np.where(np.arange(n) % 2 == 0, 300.0, 261.0),
            "frame": rng.permutation(n)}
    if theta_meta:
        meta["theta"] = rng.normal(0, 0.4, (n, 26))
    if dataset is not None:
        meta["dataset"] = np.array(dataset)
    np.savez(f"{prefix}_meta.npz", **meta)
    params = {k: [b.data.copy() for b in v] for k, v in net.params.items()}
    return {"model": model, "weights": weights, "prefix": prefix, "depth": depth,
            "joints": joints.reshape(n, nj), "meta": meta, "params": params}


def test_net_mode_matches_independent_computation(project_root, tmp_path):
    from deepmodel.model.hand_model import HandModel

    t = make_tiny(tmp_path)
    out = tmp_path / "eval"
    proc = run_cli(project_root, "--weights", t["weights"], "--model", t["model"],
                   "--lmdb", t["prefix"], "--out", out, "--batch-size", 3)
    assert proc.returncode == 0, proc.stderr
    r = json.loads((out / "eval.json").read_text())

    # independent: the fc layers by hand, then mm, errors, angles
    x = t["depth"].reshape(len(t["depth"]), -1).astype(np.float64)
    wj, bj = t["params"]["fcj"]
    wt, bt = t["params"]["fct"]
    pred = x @ wj.T.astype(np.float64) + bj
    theta = x @ wt.T.astype(np.float64) + bt
    half = t["meta"]["cube"][:, None, None] / 2
    com = t["meta"]["com"][:, None, :]
    p_mm = pred.reshape(-1, 31, 3) * half + com
    g_mm = t["joints"].astype(np.float64).reshape(-1, 31, 3) * half + com
    err = np.sqrt(((p_mm - g_mm) ** 2).sum(-1))
    assert r["frames"] == 7
    assert r["mean_error_mm"] == pytest.approx(err.mean(), rel=1e-5)
    nyu14 = [0, 3, 5, 8, 10, 13, 15, 18, 30, 29, 28, 25, 26, 24]
    assert r["mean_error_nyu14_mm"] == pytest.approx(err[:, nyu14].mean(), rel=1e-5)
    assert r["dataset"] == "nyu"                               # a meta file without the key
    assert r["dataset_joints"]["frac_joints_within_mm"]["30"] == pytest.approx(
        np.mean(err[:, nyu14] <= 30))
    assert list(r["per_joint_error_mm"].values()) == pytest.approx(err.mean(0), rel=1e-5)
    worst = err.max(1)
    for thr in (0, 50, 80):
        assert r["frac_max_error_within_mm"][str(thr)] == pytest.approx(np.mean(worst <= thr))
    d = theta[:, 3:] - t["meta"]["theta"][:, 3:]          # free ids 0-2 are the translations
    d = np.abs(np.degrees(np.arctan2(np.sin(d), np.cos(d))))
    assert r["mean_angle_error_deg"] == pytest.approx(d.mean(), rel=1e-5)
    m = HandModel.nyu()
    outside = ((theta < m.lower) | (theta > m.upper)).any(1)
    np.testing.assert_array_equal(outside, [False, True, False, True, False, True, False])
    assert r["frac_out_of_limits"] == pytest.approx(outside.mean())
    # the hand turned over: the palm's normals (wrist -> middle knuckle x little -> index
    # knuckle) more than 90 deg apart; the back shown where the label's normal leaves the camera
    def palm(kp):
        kp = kp.reshape(-1, 31, 3)
        return np.cross(kp[:, 14] - kp[:, 26], kp[:, 19] - kp[:, 4])
    n_pred, n_true = palm(pred), palm(t["joints"].astype(np.float64))
    wrong = np.sum(n_pred * n_true, axis=1) < 0
    assert 0 < wrong.sum() < 7
    assert r["frac_face_wrong"] == pytest.approx(wrong.mean())
    assert r["frac_back_to_camera"] == pytest.approx(np.mean(n_true[:, 2] >= 0))
    assert "turned over" in proc.stdout

    # the community-format predictions, in frame order, by the camera formulas
    order = np.argsort(t["meta"]["frame"])
    p14 = p_mm[order][:, nyu14]
    u = 320 + p14[..., 0] * 588.03 / p14[..., 2]
    v = 240 - p14[..., 1] * 587.07 / p14[..., 2]
    expect = np.stack([u, v, p14[..., 2]], -1).reshape(7, 42)
    got = np.loadtxt(out / "predictions_nyu14_uvd.txt")
    np.testing.assert_allclose(got, expect, atol=2e-3)
    saved = np.load(out / "predictions.npz")
    np.testing.assert_array_equal(saved["frame"], np.arange(7))
    for png in ("threshold.png", "per_joint.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "mean joint error" in proc.stdout


def test_icvl_net_scored_with_the_kit_conventions(project_root, tmp_path):
    """A direct-joint net on an ICVL set (meta says icvl, 48 values per record): the 16 joints,
    the kit's ICVL camera, predictions exported with the ICVL camera as its label files hold them."""
    t = make_tiny(tmp_path, n=6, nj=48, theta_net=False, theta_meta=False, dataset="icvl")
    out = tmp_path / "eval"
    proc = run_cli(project_root, "--weights", t["weights"], "--model", t["model"],
                   "--lmdb", t["prefix"], "--out", out, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "dataset: icvl" in proc.stdout
    r = json.loads((out / "eval.json").read_text())
    assert r["dataset"] == "icvl" and "mean_error_nyu14_mm" not in r

    x = t["depth"].reshape(len(t["depth"]), -1).astype(np.float64)
    wj, bj = t["params"]["fcj"]
    half = t["meta"]["cube"][:, None, None] / 2
    com = t["meta"]["com"][:, None, :]
    p_mm = (x @ wj.T.astype(np.float64) + bj).reshape(-1, 16, 3) * half + com
    g_mm = t["joints"].astype(np.float64).reshape(-1, 16, 3) * half + com

    def icvl_uvd(xyz):            # the dataset's own camera: 241.42, (160, 120), y up
        return np.stack([160 + xyz[..., 0] * 241.42 / xyz[..., 2],
                         120 - xyz[..., 1] * 241.42 / xyz[..., 2], xyz[..., 2]], -1)

    def kit_xyz(uvd):             # the kit's ICVL camera
        return np.stack([(uvd[..., 0] - 160) * uvd[..., 2] / 240.99,
                         (uvd[..., 1] - 120) * uvd[..., 2] / 240.96, uvd[..., 2]], -1)

    err = np.linalg.norm(kit_xyz(icvl_uvd(p_mm)) - kit_xyz(icvl_uvd(g_mm)), axis=-1)
    kit = r["dataset_joints"]
    assert kit["mean_error_mm"] == pytest.approx(err.mean(), rel=1e-5)
    assert list(kit["per_joint_error_mm"])[0] == "palm"
    assert kit["frac_mean_error_within_mm"]["80"] == pytest.approx(np.mean(err.mean(1) <= 80))
    assert r["mean_error_mm"] == pytest.approx(np.linalg.norm(p_mm - g_mm, axis=-1).mean(),
                                               rel=1e-5)
    order = np.argsort(t["meta"]["frame"])
    got = np.loadtxt(out / "predictions_icvl16_uvd.txt")
    np.testing.assert_allclose(got, icvl_uvd(p_mm[order]).reshape(6, 48), atol=2e-3)


def test_model_keypoint_net_on_icvl_set_is_refused(project_root, tmp_path):
    t = make_tiny(tmp_path, n=2, dataset="icvl")
    proc = run_cli(project_root, "--weights", t["weights"], "--model", t["model"],
                   "--lmdb", t["prefix"], "--out", tmp_path / "o", "--quiet")
    assert_one_line_error(proc, "31 joints per frame on the icvl set", "16")
    assert not (tmp_path / "o" / "eval.json").exists()


def test_net_without_theta_reports_na(project_root, tmp_path):
    t = make_tiny(tmp_path, theta_net=False, n=4)
    proc = run_cli(project_root, "--weights", t["weights"], "--model", t["model"], "--lmdb",
                   t["prefix"], "--out", tmp_path / "o", "--quiet")
    assert proc.returncode == 0, proc.stderr
    r = json.loads((tmp_path / "o" / "eval.json").read_text())
    assert r["mean_angle_error_deg"] is None and r["frac_out_of_limits"] is None
    assert "n/a" in r["angle_note"] and "n/a" in proc.stdout
    assert r["frames"] == 4 and r["mean_error_mm"] > 0


def test_missing_weights(project_root, tmp_path):
    t = make_tiny(tmp_path, n=2)
    proc = run_cli(project_root, "--weights", tmp_path / "nope.caffemodel", "--model", t["model"],
                   "--lmdb", t["prefix"], "--out", tmp_path / "o")
    assert_one_line_error(proc, "nope.caffemodel", "no such weights file")
    assert not (tmp_path / "o" / "eval.json").exists()


def test_weights_that_do_not_fit_the_model(project_root, tmp_path):
    t = make_tiny(tmp_path, n=2)
    other = make_tiny(tmp_path, n=2, nj=92, name="other")       # fcj: (92, 64) instead of (93, 64)
    proc = run_cli(project_root, "--weights", other["weights"], "--model", t["model"],
                   "--lmdb", t["prefix"], "--out", tmp_path / "o")
    assert_one_line_error(proc, "other.caffemodel", "'fcj'", "(92, 64)", "(93, 64)")
    # a weights file without one of the model's layers
    renamed = tmp_path / "renamed.prototxt"
    renamed.write_text(t["model"].read_text().replace('"fct"', '"fc_other"'))
    proc = run_cli(project_root, "--weights", t["weights"], "--model", renamed,
                   "--lmdb", t["prefix"], "--out", tmp_path / "o")
    assert_one_line_error(proc, "tiny.caffemodel", "'fc_other'")
    # not a weights file at all
    junk = tmp_path / "junk.caffemodel"
    junk.write_text("this is not a caffemodel\n")
    proc = run_cli(project_root, "--weights", junk, "--model", t["model"], "--lmdb", t["prefix"])
    assert_one_line_error(proc, "junk.caffemodel", "not a Caffe weights file")


def test_model_that_does_not_parse(project_root, tmp_path):
    t = make_tiny(tmp_path, n=2)
    bad = tmp_path / "bad.prototxt"
    bad.write_text('name: "x"\nlayer { name: "data" type: "Input" top: "data" oops: 3 }\n')
    proc = run_cli(project_root, "--weights", t["weights"], "--model", bad, "--lmdb", t["prefix"])
    assert_one_line_error(proc, "bad.prototxt", "not a valid net prototxt", "oops")
    unknown = tmp_path / "unknown.prototxt"
    unknown.write_text(t["model"].read_text().replace('type: "InnerProduct"', 'type: "Inner"', 1))
    proc = run_cli(project_root, "--weights", t["weights"], "--model", unknown,
                   "--lmdb", t["prefix"])
    assert_one_line_error(proc, "unknown.prototxt", "'fcj'", "'Inner'")
    proc = run_cli(project_root, "--weights", t["weights"], "--model", tmp_path / "none.prototxt",
                   "--lmdb", t["prefix"])
    assert_one_line_error(proc, "none.prototxt", "no such model")


def test_empty_or_missing_lmdb(project_root, tmp_path):
    import lmdb

    t = make_tiny(tmp_path, n=2)
    empty = tmp_path / "empty" / "nyu_test"
    empty.parent.mkdir()
    for part in ("_depth", "_joint"):
        lmdb.open(f"{empty}{part}", map_size=1 << 20).close()
    np.savez(f"{empty}_meta.npz", com=np.zeros((0, 3)), cube=np.zeros(0))
    proc = run_cli(project_root, "--weights", t["weights"], "--model", t["model"],
                   "--lmdb", empty, "--out", tmp_path / "o")
    assert_one_line_error(proc, "nyu_test_depth", "empty")
    proc = run_cli(project_root, "--weights", t["weights"], "--model", t["model"],
                   "--lmdb", tmp_path / "nowhere" / "nyu_test", "--out", tmp_path / "o")
    assert_one_line_error(proc, "nowhere", "no such LMDB")
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------------------------
# the project's real deploy net (model layer included) on LMDBs written by data_prep's writer

def random_deploy_weights(project_root, path, rng):
    """The paper's deploy net with random weights (a larger last layer, so that theta and the pose
    vary between crops), saved to ``path``."""
    import caffe

    caffe.set_mode_cpu()
    net = caffe.Net(str(project_root / "prototxt" / "deploy.prototxt"), caffe.TEST)
    net.params["theta"][0].data[...] = rng.normal(0, 0.05, net.params["theta"][0].data.shape)
    net.params["theta"][1].data[...] = rng.normal(0, 0.2, 26)
    path.parent.mkdir(parents=True, exist_ok=True)
    net.save(str(path))
    return path


def real_crops_lmdb(reference_data, tmp_path, rng):
    """A test LMDB set of the five real crops (12 frames), random true angles:
    ``(prefix, n, true theta, depth, com, joints)``."""
    import cv2
    from deepmodel.model.hand_model import HandModel

    from deepmodel.data.records.datum import encode
    from deepmodel.data.records.lmdb_io import LmdbSet

    crops = sorted((reference_data / "nyu" / "test_crops").glob("*.png"))
    depth = np.stack([cv2.imread(str(c), cv2.IMREAD_GRAYSCALE) / 255.0 * 2 - 1 for c in crops])
    depth = np.concatenate([depth, depth[::-1], depth[:2]])            # 12 frames
    n = len(depth)
    model = HandModel.nyu()
    true_theta = rng.normal(0, 0.2, (n, 26))
    joints = np.clip(model.forward(true_theta).reshape(n, 93), -1, 1)
    prefix = tmp_path / "lmdb" / "nyu_test"
    prefix.parent.mkdir()
    with LmdbSet({"depth": f"{prefix}_depth", "joint": f"{prefix}_joint"}, 1 << 24) as s:
        for i in range(n):
            s.put({"depth": encode(depth[i][None]), "joint": encode(joints[i])})
        s.commit()
    com = np.column_stack([rng.uniform(-50, 50, n), rng.uniform(-50, 50, n), np.full(n, 700.0)])
    cube = np.full(n, 300.0)
    np.savez(f"{prefix}_meta.npz", com=com, cube=cube, frame=np.arange(n), theta=true_theta)
    return prefix, n, true_theta, depth, com, joints


def test_real_deploy_net_on_data_prep_lmdb(project_root, tmp_path, reference_data):
    import caffe
    from deepmodel.model.hand_model import HandModel

    deploy = project_root / "prototxt" / "deploy.prototxt"
    rng = np.random.default_rng(5)
    weights = random_deploy_weights(project_root, tmp_path / "random.caffemodel", rng)
    prefix, n, true_theta, depth, com, joints = real_crops_lmdb(reference_data, tmp_path, rng)
    model = HandModel.nyu()

    out = tmp_path / "eval"
    proc = run_cli(project_root, "--weights", weights, "--lmdb", prefix, "--out", out,
                   "--batch-size", 5)          # default --model: prototxt/deploy.prototxt
    assert proc.returncode == 0, proc.stderr
    r = json.loads((out / "eval.json").read_text())
    assert r["frames"] == n and r["blob"] == "joints" and r["theta_blob"] == "theta"

    # independent: one frame at a time through the deploy net's conv/fc part, the hand model in
    # NumPy, the errors by hand
    ref = caffe.Net(str(deploy), str(weights), caffe.TEST)
    theta = np.empty((n, 26))
    for i in range(n):
        ref.blobs["depth"].data[...] = depth[i]
        ref.forward(end="theta")
        theta[i] = ref.blobs["theta"].data[0]
    assert np.ptp(theta, axis=0).max() > 0.05                             # the crops differ
    pred_mm = model.forward(theta) * 150.0 + com[:, None, :]
    true_mm = joints.reshape(n, 31, 3) * 150.0 + com[:, None, :]
    err = np.linalg.norm(pred_mm - true_mm, axis=-1)
    assert r["mean_error_mm"] == pytest.approx(err.mean(), rel=1e-4)
    saved = np.load(out / "predictions.npz")
    np.testing.assert_allclose(saved["xyz_mm"], pred_mm, atol=1e-2)
    np.testing.assert_allclose(saved["theta"], theta, atol=1e-5)
    d = np.degrees(np.abs(np.angle(np.exp(1j * (theta[:, 3:] - true_theta[:, 3:])))))
    assert r["mean_angle_error_deg"] == pytest.approx(d.mean(), rel=1e-4)
    outside = ((theta < model.lower) | (theta > model.upper)).any(1)
    assert r["frac_out_of_limits"] == pytest.approx(outside.mean())
    assert len(np.loadtxt(out / "predictions_nyu14_uvd.txt")) == n


def test_without_weights_the_newest_trained_else_the_shipped_ones(project_root, tmp_path, reference_data):
    """No --weights (the card's `python tools/test_net.py`): the newest trained weights under
    results/, else the weights shipped in models/default/, named in the output."""
    from deepmodel.nets.weights import SHIPPED

    assert SHIPPED.is_file() and SHIPPED.stat().st_size < 10 << 20
    rng = np.random.default_rng(8)
    prefix = real_crops_lmdb(reference_data, tmp_path, rng)[0]
    work = tmp_path / "work"
    work.mkdir()
    proc = run_cli(project_root, "--lmdb", prefix, "--quiet", cwd=work)   # nothing trained here
    assert proc.returncode == 0, proc.stderr
    assert "shipped" in proc.stdout and str(SHIPPED) in proc.stdout
    shipped_eval = json.loads((work / "results" / "eval" / "eval.json").read_text())
    assert shipped_eval["frames"] == 12
    assert shipped_eval["model"].endswith("deploy_hand_up.prototxt")   # the net they belong to

    old = random_deploy_weights(project_root, work / "results" / "snapshots" / "deepmodel_iter_10.caffemodel", rng)
    new = random_deploy_weights(project_root, work / "results" / "deepmodel.caffemodel", rng)
    os.utime(old, ns=(new.stat().st_mtime_ns + 10 ** 9,) * 2)               # the snapshot is newer
    proc = run_cli(project_root, "--lmdb", prefix, "--quiet", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert "newest trained" in proc.stdout and "deepmodel_iter_10.caffemodel" in proc.stdout
    trained_eval = json.loads((work / "results" / "eval" / "eval.json").read_text())
    assert trained_eval["mean_error_mm"] != shipped_eval["mean_error_mm"]

    # another deploy net: the shipped weights are not for it, and nothing trained is found
    other = tmp_path / "other" / "deploy.prototxt"
    other.parent.mkdir()
    other.write_text((project_root / "prototxt" / "deploy.prototxt").read_text())
    proc = run_cli(project_root, "--model", other, "--lmdb", prefix, "--out", tmp_path / "o" / "e",
                   cwd=tmp_path / "other")
    assert_one_line_error(proc, "no trained weights", "deploy.prototxt", "--weights")
