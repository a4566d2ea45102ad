"""ICVL on the hand model: the joint set in the model data, fit_pose --dataset icvl, the
correspondence choice and the calibrated hand (tools/icvl_hand.py, models/icvl16.json)."""
import json
import subprocess
import sys

import numpy as np
import pytest

from deepmodel.model.hand_model import HandModel

ICVL_FOCAL, ICVL_CX, ICVL_CY = 241.42, 160.0, 120.0   # the ICVL camera, typed in (y up)
CHOSEN = [24, 27, 28, 30, 19, 17, 15, 14, 12, 10, 9, 7, 5, 4, 2, 0]


def icvl_xyz(uvd):
    u, v, d = uvd[..., 0], uvd[..., 1], uvd[..., 2]
    return np.stack([(u - ICVL_CX) * d / ICVL_FOCAL, (ICVL_CY - v) * d / ICVL_FOCAL, d], -1)


@pytest.fixture(scope="module")
def icvl_labels(reference_data):
    return np.loadtxt(reference_data / "icvl" / "icvl_test_groundtruth_label.txt.xz").reshape(
        -1, 16, 3)


def test_joint_set_lives_in_the_model_files():
    for name in ("nyu31", "icvl16"):
        js = HandModel.by_name(name).joint_set("icvl16")
        assert js.keypoints.tolist() == CHOSEN and js.mirror_x and js.dataset == "icvl"
    model = HandModel.nyu()
    pts = model.forward(np.zeros((2, 26)))
    got = model.joint_set("icvl16").apply(pts)
    np.testing.assert_array_equal(got[..., 0], -pts[:, CHOSEN, 0])
    np.testing.assert_array_equal(got[..., 1:], pts[:, CHOSEN, 1:])
    with pytest.raises(Exception, match="no joint set 'msra21'"):
        model.joint_set("msra21")


def test_calibrated_model_file_keeps_the_chain_and_changes_bones():
    nyu, cal = HandModel.by_name("nyu31"), HandModel.by_name("icvl16")
    assert cal.mm_per_unit == 125.0 and nyu.mm_per_unit == 150.0
    np.testing.assert_array_equal(cal.lower, nyu.lower)
    np.testing.assert_array_equal(cal.upper, nyu.upper)
    assert cal.parents == nyu.parents
    ratio = np.asarray(cal.bone_lengths) / np.asarray(nyu.bone_lengths)
    assert np.all(ratio > 0.2) and np.ptp(ratio) > 0.2        # a different shape, not a rescale


@pytest.mark.parametrize("model_name, bound", [("nyu31", 8.0), ("icvl16", 4.5)])
def test_fit_pose_icvl_rebuilds_the_labels(project_root, reference_data, tmp_path, icvl_labels,
                                           model_name, bound):
    out = tmp_path / "fit.npz"
    proc = subprocess.run(
        [sys.executable, str(project_root / "tools" / "fit_pose.py"), "--dataset", "icvl",
         reference_data / "icvl" / "icvl_test_groundtruth_label.txt.xz", "--out", out,
         "--frames", "650:760", "--model", model_name, "--quiet", "--no-plot"],
        capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    d = np.load(out)
    assert str(d["model"]) == model_name and bool(d["mirror_x"])
    assert d["keypoints"].tolist() == CHOSEN
    np.testing.assert_array_equal(d["segment"], (np.arange(650, 760) >= 702).astype(int))
    model = HandModel.by_name(model_name)
    rebuilt = model.forward(d["theta"])[:, d["keypoints"]] * d["scale"][:, None, None] \
        + d["offset"][:, None, :]
    rebuilt[..., 0] *= -1                                       # back to ICVL's hand
    err = np.linalg.norm(rebuilt - icvl_xyz(icvl_labels[650:760]), axis=2).mean(axis=1)
    np.testing.assert_allclose(d["error_mm"], err, rtol=1e-9, atol=1e-9)
    assert err.mean() < bound, err.mean()


def test_correspondence_choice_on_a_subset(icvl_labels):
    """On 200 frames, the model's icvl16 assignment beats the ones with the PIP as finger mid and
    the wrist as palm, and mirroring beats not mirroring (the full table: docs/icvl.md)."""
    from deepmodel.tools import icvl_hand

    model = HandModel.nyu()
    labels = icvl_xyz(icvl_labels[::8])
    err = {}
    for palm, mid in (("palm centre", "second PIP point"), ("palm centre", "PIP"),
                      ("wrist middle", "second PIP point")):
        k = icvl_hand.candidate(model, palm, mid, ("thumb MCP", "thumb PIP"))
        err[palm, mid] = icvl_hand.fit(model, k, labels, True, restarts=0)["error_mm"].mean()
    assert icvl_hand.candidate(model, "palm centre", "second PIP point",
                               ("thumb MCP", "thumb PIP")).tolist() == CHOSEN
    best = err["palm centre", "second PIP point"]
    assert best < err["palm centre", "PIP"] - 1.0 and best < err["wrist middle", "second PIP point"] - 1.0
    unmirrored = icvl_hand.fit(model, np.array(CHOSEN), labels, False, restarts=0)["error_mm"]
    assert best < unmirrored.mean() - 2.0
