"""Test LMDBs cropped at label-free centres (docs/localization.md): make_lmdb --centers detected."""
import numpy as np

from deepmodel.tools import make_lmdb
from deepmodel.data.datasets import nyu
from deepmodel.data.datasets.camera import NYU_CAMERA
from deepmodel.data.hand_crop.crop import crop_depth
from deepmodel.data.hand_crop.locate import locate_hand
from deepmodel.data.records.split import LmdbSplit, to_mm
from tests.data_helpers import make_synthetic, nyu_uvd_to_xyz, run_module


def test_detected_centres_lmdb(project_root, tmp_path):
    """Crops at locate_hand's centres (recomputed here frame by frame), com = their xyz, the true
    keypoints (from joint_data.mat) back from the labels with that com; beside the labelled
    build, which is unchanged; a second run is up to date."""
    root = make_synthetic(tmp_path / "syn", 4, 10, seed=5, workers=1)
    out = tmp_path / "lmdb"
    proc = run_module(project_root, "-m", "deepmodel.tools.make_lmdb", "nyu", "--root", root, "--out", out,
                      "--splits", "test", "--centers", "detected", "--quiet", "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    assert "nyu_test_detected: hand found without labels in 10 frames" in proc.stdout
    assert "detected centre to the labelled one: mean" in proc.stdout
    assert make_lmdb.main(["nyu", "--root", str(root), "--out", str(out), "--splits", "test",
                           "--quiet", "--workers", "1"]) == 0
    det, lab = LmdbSplit.of(out, "nyu", "test_detected"), LmdbSplit.of(out, "nyu", "test")
    assert det.count() == lab.count() == 10
    meta, meta_lab = det.read_meta(10), lab.read_meta(10)
    jd = nyu.load_joint_data(root / "test" / "joint_data.mat")
    np.testing.assert_allclose(meta_lab.com, jd.xyz[:, nyu.PALM_JOINT], atol=1e-6)
    _, labels = det.read_labels()
    kp_true = jd.xyz[:, nyu.keypoint_joints()]
    with det.open("depth") as db:
        crops = db.read_all()[1].reshape(10, 128, 128)
    for i in range(10):
        depth = nyu.read_depth(root / "test" / f"depth_1_{i + 1:07d}.png")
        center, cube = locate_hand(depth, NYU_CAMERA)
        np.testing.assert_allclose(meta.com[i], nyu_uvd_to_xyz(center), atol=1e-6)
        np.testing.assert_allclose(crops[i], crop_depth(depth, center, cube, NYU_CAMERA), atol=1e-6)
        assert np.linalg.norm(meta.com[i] - meta_lab.com[i]) < 60     # the hand was found
    # the labels are the true keypoints (mm) around the detected centre, clipped to the cube
    expect = np.clip((kp_true - meta.com[:, None]) / 150.0, -1, 1) * 150.0 + meta.com[:, None]
    np.testing.assert_allclose(to_mm(labels, meta.com, meta.cube), expect, atol=1e-3)
    assert np.abs(labels).max() <= 1 and (np.abs(labels) < 1).mean() > 0.99
    again = run_module(project_root, "-m", "deepmodel.tools.make_lmdb", "nyu", "--root", root, "--out", out,
                       "--splits", "test", "--centers", "detected", "--quiet")
    assert again.returncode == 0 and "nyu_test_detected: up to date" in again.stdout


def test_frame_without_hand_is_left_out_and_counted(tmp_path, project_root):
    """A frame with no reading in the working range is a counted per-frame failure, not a crash."""

    root = make_synthetic(tmp_path / "syn", 2, 6, seed=6, workers=1)
    empty = np.zeros((480, 640), np.uint16)
    (root / "test" / "depth_1_0000003.png").write_bytes(nyu.encode_depth(empty, 1))
    out = tmp_path / "lmdb"
    proc = run_module(project_root, "-m", "deepmodel.tools.make_lmdb", "nyu", "--root", root, "--out", out,
                      "--splits", "test", "--centers", "detected", "--quiet", "--workers", "1",
                      "--max-bad", "0.2")
    assert proc.returncode == 0, proc.stderr
    assert "no hand found in 1 frames" in proc.stdout and "1 frames skipped" in proc.stdout
    split = LmdbSplit.of(out, "nyu", "test_detected")
    assert split.count() == 5
    assert "no hand detected" in split.bad_path.read_text()
    assert split.read_meta(5).frame.tolist() == [0, 1, 3, 4, 5]
