"""tools/test_net.py and tools/metrics.py: figures against published numbers and hand computations,
the net path through real Caffe and real LMDBs, and bad input through the real CLI."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tools import metrics

PY = sys.executable


def run_cli(project_root, *args, env_extra=None):
    env = dict(os.environ)
    env.setdefault("GLOG_minloglevel", "2")
    if env_extra:
        env.update(env_extra)
    return subprocess.run([PY, str(project_root / "tools" / "test_net.py"), *map(str, args)],
                          cwd=project_root, capture_output=True, text=True, env=env, timeout=300)


def assert_one_line_error(proc, *fragments):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    err = proc.stderr.strip()
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: "), err
    for frag in fragments:
        assert frag in err, (frag, err)
    return err


# ---------------------------------------------------------------------------------------------
# metrics on a hand-made case

NYU_FX, NYU_FY = 588.03, 587.07


def write_uvd(path, rows):
    path.write_text("\n".join(" ".join(f"{v:.10f}" for v in row) for row in rows) + "\n")


def hand_made_case(tmp_path):
    """Two frames, two joints; errors built in xyz: [[3, 5], [0, 12]] mm (joint 14 -> 2 joints)."""
    labels = [
        [320.0, 240.0, 500.0, 320.0, 240.0, 500.0],
        [320.0, 240.0, 1000.0, 320.0, 240.0, 1000.0],
    ]
    preds = [
        # joint 0: 3 mm deeper; joint 1: x = 3 mm at depth 504 -> (3, 0, 4) off = 5 mm
        [320.0, 240.0, 503.0, 320.0 + 3.0 * NYU_FX / 504.0, 240.0, 504.0],
        # joint 0 exact; joint 1: y = +12 mm (up) at depth 1000
        [320.0, 240.0, 1000.0, 320.0, 240.0 - 12.0 * NYU_FY / 1000.0, 1000.0],
    ]
    write_uvd(tmp_path / "labels.txt", labels)
    write_uvd(tmp_path / "pred.txt", preds)
    return tmp_path / "labels.txt", tmp_path / "pred.txt"


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

def test_published_predictions_give_published_means(shared_data, project_root, tmp_path):
    preds = shared_data / "nyu" / "predictions"
    out = tmp_path / "cmp"
    proc = run_cli(project_root, "--predictions", preds / "CVWW15_NYU_Prior.txt",
                   preds / "ICCVW17_NYU_DeepPrior++.txt",
                   "--labels", shared_data / "nyu" / "nyu_test_groundtruth_label.txt",
                   "--names", "DeepPrior", "DeepPrior++", "--out", out)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "eval.json").read_text())
    by_name = {m["name"]: m for m in report["methods"]}
    assert round(by_name["DeepPrior"]["mean_error_mm"], 2) == 20.75
    assert round(by_name["DeepPrior++"]["mean_error_mm"], 2) == 12.24
    assert report["frames"] == 8252 and by_name["DeepPrior++"]["frames"] == 8252
    assert report["mean_error_mm"] == by_name["DeepPrior"]["mean_error_mm"]   # first file on top
    assert len(by_name["DeepPrior"]["per_joint_error_mm"]) == 14
    frac = by_name["DeepPrior++"]["frac_max_error_within_mm"]
    assert list(frac) == [str(t) for t in range(81)]
    values = list(frac.values())
    assert values == sorted(values) and 0.0 <= values[0] and values[-1] <= 1.0
    assert "20.75" in proc.stdout and "12.24" in proc.stdout
    for png in ("threshold.png", "per_joint.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_labels_as_predictions_give_zero(shared_data, project_root, tmp_path):
    labels = shared_data / "nyu" / "nyu_test_groundtruth_label.txt"
    proc = run_cli(project_root, "--predictions", labels, "--labels", labels,
                   "--out", tmp_path, "--json", tmp_path / "z.json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "z.json").read_text())
    assert report["mean_error_mm"] == 0.0
    assert report["frac_max_error_within_mm"]["0"] == 1.0
    assert set(report["per_joint_error_mm"].values()) == {0.0}


def test_hand_made_files_through_cli(project_root, tmp_path):
    labels, pred = hand_made_case(tmp_path)
    proc = run_cli(project_root, "--predictions", pred, "--labels", labels, "--num-joints", 2,
                   "--out", tmp_path / "o")
    assert proc.returncode == 0, proc.stderr
    r = json.loads((tmp_path / "o" / "eval.json").read_text())
    assert r["frames"] == 2
    assert r["mean_error_mm"] == pytest.approx(5.0, abs=1e-6)
    assert list(r["per_joint_error_mm"].values()) == pytest.approx([1.5, 8.5], abs=1e-6)
    f = r["frac_max_error_within_mm"]
    assert (f["4"], f["5"], f["11"], f["12"], f["80"]) == (0.0, 0.5, 0.5, 1.0, 1.0)


def test_wrong_column_count_is_one_line_error(project_root, tmp_path, shared_data):
    labels = shared_data / "nyu" / "nyu_test_groundtruth_label.txt"
    bad = tmp_path / "bad.txt"
    lines = labels.read_text().splitlines()[:5]
    lines[3] = " ".join(lines[3].split()[:-1])          # 41 values
    bad.write_text("\n".join(lines) + "\n")
    proc = run_cli(project_root, "--predictions", bad, "--labels", labels, "--out", tmp_path / "o")
    assert_one_line_error(proc, str(bad), "line 4", "41 values")
    assert not (tmp_path / "o" / "eval.json").exists()


def test_frame_count_mismatch_is_one_line_error(project_root, tmp_path, shared_data):
    labels = shared_data / "nyu" / "nyu_test_groundtruth_label.txt"
    short = tmp_path / "short.txt"
    short.write_text("\n".join(labels.read_text().splitlines()[:100]) + "\n")
    proc = run_cli(project_root, "--predictions", short, "--labels", labels, "--out", tmp_path / "o")
    assert_one_line_error(proc, str(short), "100 frames", "8252")
    assert not (tmp_path / "o" / "eval.json").exists()


def test_option_errors(project_root, tmp_path):
    labels, pred = hand_made_case(tmp_path)
    assert_one_line_error(run_cli(project_root, "--predictions", pred, "--num-joints", 2),
                          "--labels")
    assert_one_line_error(run_cli(project_root, "--predictions", pred, "--labels", labels,
                                  "--num-joints", 2, "--names", "a", "b"), "--names")
    assert_one_line_error(run_cli(project_root, "--predictions", tmp_path / "nope.txt",
                                  "--labels", labels, "--num-joints", 2), "nope.txt")
    assert_one_line_error(run_cli(project_root), "--weights")
