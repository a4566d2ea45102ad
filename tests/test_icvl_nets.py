"""ICVL nets: the JointSetLayer through Caffe (against an independent map and finite
differences), the generated ICVL variants, and a real `caffe train` on a tiny synthetic ICVL set."""
import json
import subprocess
import sys

import numpy as np
import pytest

from data_helpers import central_difference, rel_err

CHOSEN = [24, 27, 28, 30, 19, 17, 15, 14, 12, 10, 9, 7, 5, 4, 2, 0]   # typed in (docs/icvl.md)
NET = """force_backward: true
layer {{ name: "in" type: "Input" top: "theta" input_param {{ shape {{ dim: {n} dim: 26 }} }} }}
layer {{ name: "hand" type: "Python" bottom: "theta" top: "keypoints"
  python_param {{ module: "deepmodel.layers.hand_model_layer" layer: "HandModelLayer" param_str: '{{"model": "nyu31"}}' }} }}
layer {{ name: "set" type: "Python" bottom: "keypoints" top: "joints"
  python_param {{ module: "deepmodel.layers.joint_set_layer" layer: "JointSetLayer" param_str: '{param}' }} }}
"""
PARAM = '{"model": "nyu31", "joint_set": "icvl16", "crop_unit_mm": 125}'
CENTRED = '{"model": "nyu31", "joint_set": "icvl16", "crop_unit_mm": 125, "centre_joint": 0}'


def independent(keypoints93, centre=None):
    """The ICVL joints by hand: pick the keypoints, negate x, scale 102.2 mm/unit to 125; with
    ``centre``, minus that joint."""
    k = np.asarray(keypoints93, np.float64).reshape(len(keypoints93), 31, 3)[:, CHOSEN]
    k = k * np.array([-1.0, 1.0, 1.0]) * (102.2 / 125.0)
    if centre is not None:
        k = k - k[:, centre:centre + 1]
    return k.reshape(len(k), 48)


@pytest.mark.parametrize("param, centre", [(PARAM, None), (CENTRED, 0)])
def test_forward_matches_an_independent_map(make_net, model, param, centre):
    net = make_net(NET.format(n=5, param=param))
    theta = np.random.default_rng(1).normal(0, 0.3, (5, 26))
    net.blobs["theta"].data[...] = theta
    net.forward()
    assert net.blobs["joints"].data.shape == (5, 48)
    np.testing.assert_allclose(net.blobs["joints"].data,
                               independent(net.blobs["keypoints"].data, centre),
                               rtol=1e-6, atol=1e-7)
    if centre is not None:      # the palm is 0 and the global translation moves nothing
        assert np.abs(net.blobs["joints"].data[:, :3]).max() == 0
        theta[:, :3] += 0.2
        net.blobs["theta"].data[...] = theta
        before = net.blobs["joints"].data.copy()
        net.forward()
        np.testing.assert_allclose(net.blobs["joints"].data, before, atol=1e-6)


@pytest.mark.parametrize("param, centre", [(PARAM, None), (CENTRED, 0)])
def test_gradient_through_model_and_joint_set_layers(make_net, model, param, centre):
    """d(sum w * joints)/d theta through both Python layers against central differences of the
    float64 model composed with the independent map."""
    net = make_net(NET.format(n=3, param=param))
    rng = np.random.default_rng(2)
    theta = rng.normal(0, 0.3, (3, 26))
    w = rng.normal(size=(3, 48))
    net.blobs["theta"].data[...] = theta
    net.forward()
    net.blobs["joints"].diff[...] = w
    net.backward()
    got = net.blobs["theta"].diff.copy()

    def f(t):
        return float(np.sum(w * independent(model.forward(t).reshape(len(t), 93), centre)))

    want = central_difference(f, theta, 1e-6)
    assert rel_err(got, want) < 1e-3


@pytest.mark.parametrize("param, words", [
    ('{"model": "nyu31", "joint_set": "msra21"}', ["JointSetLayer", "msra21"]),
    ('{"model": "nyu31", "joint_set": "icvl16", "crop_unit_mm": -3}', ["crop_unit_mm"]),
    ('{"modle": "nyu31"}', ["unknown param_str key", "modle"]),
    ('{"model": "nyu31", "joint_set": "icvl16", "centre_joint": 16}', ["centre_joint", "0-15"]),
    ('{"model": "nyu31", "joint_set": "icvl16", "centre_joint": "palm"}', ["centre_joint"]),
])
def test_setup_errors_name_the_problem(make_net, param, words):
    with pytest.raises(Exception) as err:
        make_net(NET.format(n=1, param=param))
    for w in words:
        assert w in str(err.value) or w in repr(err.value)


def test_icvl_variants_are_generated(project_root):
    from deepmodel.nets import netspec as mn

    assert set(mn.DATASET_VARIANTS["icvl"]) == set(mn.VARIANTS) - mn.TURNED
    for variant in mn.DATASET_VARIANTS["icvl"]:
        files = mn.variant_files(variant, "icvl")
        for path in files.values():
            assert (project_root / "prototxt" / path).is_file(), path
        text = (project_root / "prototxt" / files["train_val"]).read_text()
        assert "data/lmdb/icvl_train_depth" in text and "nyu_" not in text
    deploy = (project_root / "prototxt" / "deploy_icvl.prototxt").read_text()
    assert "JointSetLayer" in deploy and '\\"joint_set\\": \\"icvl16\\"' in deploy
    assert '\\"centre_joint\\": 0' in deploy          # ICVL's crops are centred on its palm
    # the limit loss keeps the paper's balance with a joint loss over 16 of 31 keypoints of a hand
    # 102.2/125 of the crop unit; NYU's is the paper's 1.0
    lam = round(16 / 31 * (102.2 / 125) ** 2, 4)
    assert f'\\"lambda\\": {lam}' in (project_root / "prototxt" / "train_val_icvl.prototxt").read_text()
    assert '\\"lambda\\": 1.0' in (project_root / "prototxt" / "train_val.prototxt").read_text()
    assert "num_output: 48" in (project_root / "prototxt" /
                                "deploy_icvl_direct_joints.prototxt").read_text()


@pytest.fixture(scope="module")
def icvl_lmdbs(tmp_path_factory):
    from deepmodel.tools import make_lmdb
    from deepmodel.data.synthetic import icvl as synthetic_icvl

    base = tmp_path_factory.mktemp("icvl_train")
    synthetic_icvl.generate(base / "icvl", n_train=64, n_test=(8, 8), seed=5, workers=2,
                            progress=False)
    out = base / "lmdb"
    assert make_lmdb.main(["icvl", "--root", str(base / "icvl"), "--out", str(out), "--quiet"]) == 0
    return out


def test_centred_net_refuses_labels_not_centred_on_its_joint(project_root, icvl_lmdbs, tmp_path):
    """Training crops shifted off the palm (make_lmdb --augment with a centre shift): the palm's
    labels are no longer 0, which a model net placed by its palm cannot fit: one line, no training."""
    from deepmodel.tools import make_lmdb
    from deepmodel.data.records.split import LmdbSplit

    root = icvl_lmdbs.parent / "icvl"
    out = tmp_path / "shifted"
    assert make_lmdb.main(["icvl", "--root", str(root), "--out", str(out), "--quiet",
                           "--augment", "1", "--shift", "10"]) == 0
    _, labels = LmdbSplit.of(out, "icvl", "train").read_labels("joint")
    assert np.abs(labels[:, :3]).max() > 0.01           # the shifted copies' palms
    proc = subprocess.run(
        [sys.executable, "tools/train.py", "--dataset", "icvl", "--variant", "paper",
         "--results", str(tmp_path / "res"), "--lmdb-dir", str(out), "--iters", "2", "--batch", "8"],
        cwd=project_root, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "joint 0" in proc.stderr and "centre_joint" in proc.stderr
    assert not (tmp_path / "res" / "train.log").exists()


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["paper", "direct_joints"])
def test_train_icvl_variant_and_evaluate(project_root, icvl_lmdbs, tmp_path, variant):
    res = tmp_path / "res"
    proc = subprocess.run(
        [sys.executable, "tools/train.py", "--dataset", "icvl", "--variant", variant,
         "--results", str(res), "--lmdb-dir", str(icvl_lmdbs), "--iters", "20", "--batch", "8",
         "--test-interval", "10"], cwd=project_root, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((res / "train.json").read_text())
    assert summary["dataset"] == "icvl" and summary["iterations"] == 20
    name = "deepmodel_icvl" if variant == "paper" else "deepmodel_icvl_direct_joints"
    assert (res / f"{name}.caffemodel").is_file()
    ev = json.loads((res / "eval" / "eval.json").read_text())
    assert ev["dataset"] == "icvl" and ev["frames"] == 16
    assert list(ev["per_joint_error_mm"])[:2] == ["palm", "thumb root"]
    assert 0 < ev["dataset_joints"]["mean_error_mm"] < 200
    uvd = np.loadtxt(res / "eval" / "predictions_icvl16_uvd.txt")
    assert uvd.shape == (16, 48) and np.all(uvd[:, 2::3] > 100)
    if variant == "paper":
        assert ev["frac_out_of_limits"] is not None and ev["mean_angle_error_deg"] is not None
    assert "(ICVL)" in proc.stdout and "16 ICVL joints" in proc.stdout
    assert not (res / "eval" / "real_crops.json").exists()      # the NYU crops are not ICVL's


def test_true_angles_reproduce_the_labels_through_the_generated_layers(make_net, icvl_lmdbs):
    """The synthetic frames' true angles through the ICVL nets' own hand model and joint set layers
    (param_str as generated) give the LMDB's joint labels to float precision."""
    from deepmodel.data.records.split import LmdbSplit
    from deepmodel.nets import netspec as mn

    split = LmdbSplit.of(icvl_lmdbs, "icvl", "test")
    _, theta = split.read_labels("theta")
    _, joints = split.read_labels("joint")
    theta, joints = theta.reshape(len(theta), -1), joints.reshape(len(joints), -1)
    net = make_net(NET.format(n=len(theta), param=mn.DATASETS["icvl"][2]))
    net.blobs["theta"].data[...] = theta
    net.forward()
    assert np.abs(joints).max() > 0.1
    np.testing.assert_allclose(net.blobs["joints"].data, joints, atol=2e-6)
