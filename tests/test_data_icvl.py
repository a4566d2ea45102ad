"""The synthetic ICVL-format set and the ICVL reader: layout, exact labels from the true angles,
LMDBs through the real reader, and bad input (malformed labels, wrong PNGs, a palm off the image)."""
import json
import shutil

import cv2
import numpy as np
import pytest

from data_helpers import assert_one_line_error, run_module
from deepmodel.data.datasets import icvl
from deepmodel.tools import make_lmdb
from deepmodel.data.synthetic import icvl as synthetic_icvl
from deepmodel.data.records.split import LmdbSplit
from deepmodel.model.hand_model import HandModel


FOCAL, CX, CY = 241.42, 160.0, 120.0          # the ICVL camera, typed in (y up)


@pytest.fixture(scope="module")
def synth_icvl(tmp_path_factory):
    root = tmp_path_factory.mktemp("si") / "icvl"
    synthetic_icvl.generate(root, n_train=40, n_test=(12, 10), seed=3, workers=2, progress=False)
    return root


def test_layout_is_icvl_as_distributed(synth_icvl):
    info = json.loads((synth_icvl / "synthetic.json").read_text())
    assert info["joint_set"] == "icvl16" and info["mirror_x"] is True
    for folder, files, n in (("Training", ["labels.txt"], 40),
                             ("Testing", ["test_seq_1.txt", "test_seq_2.txt"], 22)):
        lines = sum(((synth_icvl / folder / f).read_text().splitlines() for f in files), [])
        assert len(lines) == n and all(len(line.split()) == 49 for line in lines)
        img = cv2.imread(str(synth_icvl / folder / "Depth" / lines[0].split()[0]), cv2.IMREAD_UNCHANGED)
        assert img.dtype == np.uint16 and img.shape == (240, 320)
        uvd = np.array(lines[0].split()[1:], float).reshape(16, 3)
        u, v, d = uvd[0]
        # the depth image shows a surface within a few cm in front of the labelled palm centre
        patch = img[int(v) - 3:int(v) + 4, int(u) - 3:int(u) + 4].astype(float)
        near = patch[patch > 0]
        assert near.size and -5 < d - near.min() < 60, (d, near.min())
        assert np.load(synth_icvl / folder / "theta.npy").shape == (n, 26)


def test_labels_are_the_mirrored_model_joints_of_the_true_angles(synth_icvl):
    table, _ = icvl.split_table(synth_icvl, "test")
    model = HandModel.nyu()
    js = model.joint_set("icvl16")
    kp = model.forward(table.theta)[:, js.keypoints] * js.mm_per_unit      # mm, palm at 0
    kp[..., 0] *= -1
    uvd = np.loadtxt(synth_icvl / "Testing" / "test_seq_1.txt", usecols=range(1, 49)).reshape(-1, 16, 3)
    u, v, d = uvd[..., 0], uvd[..., 1], uvd[..., 2]
    xyz = np.stack([(u - CX) * d / FOCAL, (CY - v) * d / FOCAL, d], -1)
    np.testing.assert_allclose(xyz - xyz[:, :1], kp[:12], atol=1e-3)
    # and the LMDB labels are the normalised same, before the clip
    np.testing.assert_allclose(table.labels.reshape(-1, 16, 3)[:12],
                               np.clip(kp[:12] / 125.0, -1, 1), atol=1e-5)


def test_deterministic_whatever_the_workers(synth_icvl, tmp_path):
    other = tmp_path / "again"
    synthetic_icvl.generate(other, n_train=40, n_test=(12, 10), seed=3, workers=1, progress=False)
    for rel in ("Training/labels.txt", "Testing/test_seq_2.txt"):
        assert (other / rel).read_bytes() == (synth_icvl / rel).read_bytes()
    a = sorted((synth_icvl / "Testing" / "Depth").rglob("*.png"))
    b = sorted((other / "Testing" / "Depth").rglob("*.png"))
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]


def test_lmdbs_through_the_real_reader_keep_the_true_angles(synth_icvl, tmp_path):
    out = tmp_path / "lmdb"
    assert make_lmdb.main(["icvl", "--root", str(synth_icvl), "--out", str(out), "--quiet",
                           "--workers", "1"]) == 0
    split = LmdbSplit.of(out, "icvl", "test")
    meta = split.read_meta()
    assert meta.dataset == "icvl" and len(meta) == 22 and (meta.cube == 250).all()
    _, theta = split.read_labels("theta")
    np.testing.assert_allclose(theta, np.load(synth_icvl / "Testing" / "theta.npy"), atol=1e-6)
    _, joints = split.read_labels("joint")
    assert joints.shape == (22, 48)


def _copy(synth_icvl, tmp_path):
    root = tmp_path / "icvl"
    shutil.copytree(synth_icvl, root)
    return root


def test_malformed_label_line_is_one_line_error(project_root, synth_icvl, tmp_path):
    root = _copy(synth_icvl, tmp_path)
    f = root / "Testing" / "test_seq_2.txt"
    lines = f.read_text().splitlines()
    lines[4] = " ".join(lines[4].split()[:-2])
    f.write_text("\n".join(lines) + "\n")
    proc = run_module(project_root, "-m", "deepmodel.tools.make_lmdb", "icvl", "--root", root,
                      "--out", tmp_path / "lmdb", "--splits", "test", "--quiet")
    assert_one_line_error(proc, "test_seq_2.txt", "line 5", "47 fields")
    assert not (tmp_path / "lmdb").exists() or not any((tmp_path / "lmdb").iterdir())


def test_bad_pngs_and_a_palm_off_the_image_are_listed_frames(project_root, synth_icvl, tmp_path):
    root = _copy(synth_icvl, tmp_path)
    f = root / "Testing" / "test_seq_1.txt"
    lines = f.read_text().splitlines()
    paths = [root / "Testing" / "Depth" / line.split()[0] for line in lines]
    cv2.imwrite(str(paths[1]), np.full((240, 320), 90, np.uint8))             # 8-bit
    cv2.imwrite(str(paths[2]), np.full((120, 160), 400, np.uint16))           # wrong size
    parts = lines[3].split()
    parts[1] = "-50.0"                                                        # palm u off the image
    lines[3] = " ".join(parts)
    f.write_text("\n".join(lines) + "\n")
    out = tmp_path / "lmdb"
    # 3 of 22 frames bad: over the default 1% limit -> one line, nothing written
    proc = run_module(project_root, "-m", "deepmodel.tools.make_lmdb", "icvl", "--root", root,
                      "--out", out, "--splits", "test", "--quiet")
    assert_one_line_error(proc, "icvl_test", "3 of 22 frames unusable", "nothing written")
    assert not (out / "icvl_test_depth").exists()
    bad = (out / "icvl_test_bad.txt").read_text()
    assert "16-bit" in bad and "320x240" in bad and "off the 320x240 image" in bad
    # with a looser limit the others are built and the three listed
    proc = run_module(project_root, "-m", "deepmodel.tools.make_lmdb", "icvl", "--root", root,
                      "--out", out, "--splits", "test", "--quiet", "--max-bad", "0.2")
    assert proc.returncode == 0, proc.stderr
    meta = LmdbSplit.of(out, "icvl", "test").read_meta()
    assert sorted(set(range(22)) - set(meta.frame.tolist())) == [1, 2, 3]
