"""The generated nets: committed files current, real caffe.Net builds, blob shapes, weight transfer."""
import subprocess
import sys

import numpy as np
import pytest
from google.protobuf import text_format

from deepmodel.nets import netspec as mn
from tiny_lmdb import write_tiny_lmdbs

PY = sys.executable


def _conv(size, kernel):
    return size - kernel + 1


def _pool_ceil(size, kernel, stride):
    # Caffe's pooling output size (no padding): ceil((size - kernel) / stride) + 1
    return -(-(size - kernel) // stride) + 1


def test_committed_prototxt_are_current(project_root):
    proc = subprocess.run([PY, "tools/make_nets.py", "--check"], cwd=project_root,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "33 prototxt files are current" in proc.stdout   # (5 NYU + 4 ICVL variants) x 3; refinement, detector x 3


def test_check_fails_on_a_stale_or_missing_file(project_root, tmp_path):
    proc = subprocess.run([PY, "tools/make_nets.py", "--out", str(tmp_path)], cwd=project_root,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(mn.generate())
    path = tmp_path / "train_val_nolimit.prototxt"
    path.write_text(path.read_text().replace("dropout_ratio: 0.3", "dropout_ratio: 0.5", 1))
    (tmp_path / "deploy.prototxt").unlink()
    proc = subprocess.run([PY, "tools/make_nets.py", "--check", "--out", str(tmp_path)],
                          cwd=project_root, capture_output=True, text=True)
    assert proc.returncode == 1
    assert "deploy.prototxt: missing" in proc.stderr
    assert "dropout_ratio: 0.5" in proc.stderr and "2 of 33" in proc.stderr


def test_solver_settings_are_the_papers(project_root):
    from caffe.proto import caffe_pb2

    for variant in mn.VARIANTS:
        files = mn.variant_files(variant)
        s = caffe_pb2.SolverParameter()
        text_format.Merge((project_root / "prototxt" / files["solver"]).read_text(), s)
        assert (s.type, s.lr_policy) == ("SGD", "fixed")
        assert (s.base_lr, s.momentum) == (pytest.approx(0.003), pytest.approx(0.9))
        assert s.solver_mode == caffe_pb2.SolverParameter.CPU
        assert s.clip_gradients == pytest.approx(mn.CLIP_GRADIENTS)
        assert s.net == f"prototxt/{files['train_val']}" and (project_root / s.net).is_file()
        assert s.snapshot_prefix.startswith("results/snapshots/")
        net = caffe_pb2.NetParameter()
        text_format.Merge((project_root / s.net).read_text(), net)
        batches = {(r.phase, l.data_param.source): l.data_param.batch_size
                   for l in net.layer if l.type == "Data" for r in l.include}
        kinds = ["depth", "theta" if variant == "direct_params" else "joint"]
        assert batches == {**{(caffe_pb2.TRAIN, f"data/lmdb/nyu_train_{k}"): 512 for k in kinds},
                           **{(caffe_pb2.TEST, f"data/lmdb/nyu_test_{k}"): mn.TEST_BATCH
                              for k in kinds}}


def test_solver_clips_a_large_gradient_to_its_norm(tmp_path):
    """The generated solver, run by Caffe on a net whose gradient is known (a zero fully
    connected layer from 10 ones to 3 outputs, targets 1000: every one of the 33 parameters'
    gradients is -1000, norm 1000 sqrt(33)): the first update's norm is base_lr x
    CLIP_GRADIENTS; with clipping off it is base_lr x 1000 sqrt(33)."""
    import caffe

    caffe.set_mode_cpu()
    net = tmp_path / "net.prototxt"
    net.write_text("""
layer { name: "x" type: "DummyData" top: "x"
  dummy_data_param { shape { dim: 4 dim: 10 } data_filler { type: "constant" value: 1 } } }
layer { name: "y" type: "DummyData" top: "y"
  dummy_data_param { shape { dim: 4 dim: 3 } data_filler { type: "constant" value: 1000 } } }
layer { name: "fc" type: "InnerProduct" bottom: "x" top: "fc"
  inner_product_param { num_output: 3 weight_filler { type: "constant" value: 0 }
                        bias_filler { type: "constant" value: 0 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "fc" bottom: "y" top: "loss" }
""")
    full = 1000.0 * np.sqrt(33.0)
    assert full > 10 * mn.CLIP_GRADIENTS
    for clip, want in ((None, mn.CLIP_GRADIENTS), (-1.0, full)):
        s = mn.solver("paper", net_path=str(net), max_iter=1, snapshot=0,
                      snapshot_prefix=str(tmp_path / "snap"))
        del s.test_iter[:]
        s.test_interval = 0
        if clip is not None:
            s.clip_gradients = clip
        path = tmp_path / "solver.prototxt"
        path.write_text(text_format.MessageToString(s))
        solver = caffe.SGDSolver(str(path))
        solver.step(1)
        w, b = (p.data.astype(np.float64) for p in solver.net.params["fc"])
        step = np.sqrt((w ** 2).sum() + (b ** 2).sum())         # from zeros
        assert step == pytest.approx(mn.BASE_LR * want, rel=1e-4), (clip, step)


def _build(make_net, proto, phase):
    return make_net(text_format.MessageToString(proto), phase=phase)


@pytest.mark.parametrize("variant", list(mn.VARIANTS))
def test_deploy_nets_build_with_the_papers_shapes(make_net, variant):
    net = _build(make_net, mn.deploy_net(variant, batch=3), "TEST")
    size = _conv(_pool_ceil(_conv(_pool_ceil(_conv(128, 5), 4, 4), 5), 2, 2), 3)
    assert size == 12
    assert net.blobs["conv3"].data.shape == (3, 8, size, size)
    assert net.blobs["fc1"].data.shape == (3, 1024) and net.blobs["fc2"].data.shape == (3, 1024)
    assert list(net.inputs) == ["depth"] and list(net.outputs) == ["joints"]
    assert net.blobs["joints"].data.shape == (3, 93)
    if variant != "direct_joints":
        assert net.blobs["theta"].data.shape == (3, 26)
    # no losses and no dropout in a deploy net
    types = {layer.type for layer in net.layers}
    assert not types & {"EuclideanLoss", "Dropout", "Data"}


@pytest.mark.parametrize("variant", list(mn.VARIANTS))
def test_train_nets_build_and_backpropagate(make_net, variant):
    net = _build(make_net, mn.bench_train_net(variant, batch=4), "TRAIN")
    rng = np.random.default_rng(1)
    net.blobs["depth"].data[...] = rng.uniform(-1, 1, net.blobs["depth"].data.shape)
    if variant == "direct_params":
        assert "joint_gt" not in net.blobs
        net.blobs["theta_gt"].data[...] = rng.uniform(-0.3, 0.3, (4, 26))
    else:
        net.blobs["joint_gt"].data[...] = rng.uniform(-0.5, 0.5, (4, 93))
    out = net.forward()
    losses = {"paper": {"joint_loss", "limit_loss", "out_of_limits"},
              "nolimit": {"joint_loss"}, "direct_joints": {"joint_loss"},
              "direct_params": {"theta_loss"},
              "hand_up": {"joint_loss", "limit_loss", "out_of_limits"}}[variant]
    assert set(out) == losses
    main = out["theta_loss" if variant == "direct_params" else "joint_loss"]
    pred = net.blobs["theta" if variant == "direct_params" else "joints"].data
    gt = net.blobs["theta_gt" if variant == "direct_params" else "joint_gt"].data
    # Caffe's Euclidean loss: sum of squares / (2 N)
    assert main.sum() == pytest.approx(((pred - gt) ** 2).sum() / 8, rel=1e-4)
    if variant in ("paper", "hand_up"):
        # the paper's hinge, averaged over the batch, from the model's limits
        from deepmodel.model.hand_model import HandModel

        m = HandModel.nyu()
        theta = net.blobs["theta"].data.astype(np.float64)
        below, above = np.maximum(m.lower - theta, 0), np.maximum(theta - m.upper, 0)
        assert out["limit_loss"].sum() == pytest.approx((below + above).sum() / 4, rel=1e-4, abs=1e-7)
        assert out["out_of_limits"].sum() == pytest.approx(((below + above) > 0).any(1).mean())
    net.backward()
    assert np.abs(net.params["conv1"][0].diff).max() > 0      # the gradient reaches the input layer


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_initial_theta_is_near_the_rest_pose(make_net, seed):
    import caffe
    from deepmodel.model.hand_model import HandModel

    caffe.set_random_seed(seed)
    net = _build(make_net, mn.deploy_net("paper", batch=8), "TEST")
    # background 1 with a hand-sized patch of nearer values, and pure noise (the worst case)
    x = np.ones((8, 1, 128, 128))
    rng = np.random.default_rng(seed)
    x[:4, :, 30:100, 30:100] = rng.uniform(-0.3, 0.3, (4, 1, 70, 70))
    x[4:] = rng.uniform(-1, 1, (4, 1, 128, 128))
    net.blobs["depth"].data[...] = x
    net.forward()
    theta = net.blobs["theta"].data
    assert np.sqrt((theta ** 2).mean()) < 0.02 and np.abs(theta).max() < 0.1
    rest = HandModel.nyu().forward(np.zeros((1, 26))).reshape(93)
    assert np.abs(net.blobs["joints"].data - rest).max() < 0.15     # < 22 mm from the rest pose


def test_train_val_reads_the_lmdbs_and_weights_load_into_deploy(make_net, tmp_path):
    lmdb_dir = write_tiny_lmdbs(tmp_path / "lmdb", n_train=8, n_test=6)
    net_p = mn.train_val_net("direct_params", train_batch=4, test_batch=3, lmdb_dir=str(lmdb_dir))
    train = _build(make_net, net_p, "TRAIN")
    assert train.blobs["depth"].data.shape == (4, 1, 128, 128)
    assert "joint_gt" not in train.blobs
    assert train.blobs["theta_gt"].data.shape == (4, 26, 1, 1)
    train.forward()
    meta = np.load(lmdb_dir / "nyu_train_meta.npz")
    np.testing.assert_allclose(train.blobs["theta_gt"].data.reshape(4, 26), meta["theta"][:4],
                               atol=1e-6)
    # the trained layers have the same names and shapes in the deploy net, which computes what
    # the TEST phase of train_val computes (dropout is the identity there)
    weights = tmp_path / "w.caffemodel"
    train.save(str(weights))
    text = text_format.MessageToString(net_p)
    test = make_net(text, phase="TEST", weights=weights)
    assert test.blobs["depth"].data.shape == (3, 1, 128, 128)
    test.forward()
    deploy = make_net(text_format.MessageToString(mn.deploy_net("direct_params", batch=3)),
                      weights=weights)
    assert list(deploy.params) == list(train.params)
    for name in train.params:
        for a, b in zip(train.params[name], deploy.params[name]):
            np.testing.assert_array_equal(a.data, b.data)
    deploy.blobs["depth"].data[...] = test.blobs["depth"].data
    deploy.forward()
    np.testing.assert_allclose(deploy.blobs["theta"].data, test.blobs["theta"].data, atol=1e-6)
    from deepmodel.model.hand_model import HandModel

    np.testing.assert_allclose(deploy.blobs["joints"].data,
                               HandModel.nyu().forward(deploy.blobs["theta"].data.astype(np.float64))
                               .reshape(3, 93), atol=1e-5)


def test_refine_net_shapes_loss_and_weight_transfer(make_net, tmp_path):
    """The centre-refinement net (docs/localization.md): 128 -> 32 (average pool) -> 28 -> 14 -> 12 -> 6,
    6x6x32 = 1152 values, fc 128, offset (N, 3); the train net's loss is Caffe's Euclidean loss;
    the trained layers load into the deploy net, which computes the same offset."""
    import caffe

    caffe.set_random_seed(3)
    train = _build(make_net, mn.refine_net(deploy=False, batch=4), "TRAIN")
    assert train.blobs["pool0"].data.shape == (4, 1, 32, 32)
    assert train.blobs["conv1"].data.shape == (4, 16, 28, 28)
    assert train.blobs["pool1"].data.shape == (4, 16, 14, 14)
    assert train.blobs["conv2"].data.shape == (4, 32, 12, 12)
    assert train.blobs["pool2"].data.shape == (4, 32, 6, 6)
    assert train.blobs["fc1"].data.shape == (4, 128)
    assert train.blobs["offset"].data.shape == (4, 3)
    n_weights = sum(b.data.size for blobs in train.params.values() for b in blobs)
    assert n_weights == 16 * 25 + 16 + 32 * 16 * 9 + 32 + 1152 * 128 + 128 + 128 * 3 + 3
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (4, 1, 128, 128))
    train.blobs["depth"].data[...] = x
    train.blobs["offset_gt"].data[...] = rng.uniform(-0.3, 0.3, (4, 3))
    out = train.forward()
    # the average pool is the mean of each 4x4 block
    np.testing.assert_allclose(train.blobs["pool0"].data, x.reshape(4, 1, 32, 4, 32, 4).mean(axis=(3, 5)),
                               atol=1e-6)
    pred, gt = train.blobs["offset"].data, train.blobs["offset_gt"].data
    assert float(out["loss"]) == pytest.approx(((pred - gt) ** 2).sum() / 8, rel=1e-4)
    train.backward()
    assert np.abs(train.params["conv1"][0].diff).max() > 0
    weights = tmp_path / "refine.caffemodel"
    train.save(str(weights))
    deploy = make_net(text_format.MessageToString(mn.refine_net(deploy=True, batch=4)), weights=weights)
    assert list(deploy.inputs) == ["depth"] and list(deploy.outputs) == ["offset"]
    deploy.blobs["depth"].data[...] = x
    deploy.forward()
    np.testing.assert_allclose(deploy.blobs["offset"].data, pred, atol=1e-6)
    s = mn.refine_solver()
    assert (s.type, s.base_lr, s.max_iter, s.stepsize) == ("Adam", pytest.approx(0.001), 5000, 3750)


def test_has_theta_blob_matches_the_deploy_nets(project_root):
    """make_nets.has_theta_blob (what make train uses to ask score_real for --fit) is true exactly
    for the variants whose committed deploy net has a layer with top 'theta'."""
    from caffe.proto import caffe_pb2

    for dataset, variants in mn.DATASET_VARIANTS.items():
        for variant in variants:
            net = caffe_pb2.NetParameter()
            path = project_root / "prototxt" / mn.variant_files(variant, dataset)["deploy"]
            text_format.Parse(path.read_text(), net)
            tops = {t for layer in net.layer for t in layer.top}
            assert ("theta" in tops) == mn.has_theta_blob(variant), (variant, dataset)
    assert not mn.has_theta_blob("direct_joints") and mn.has_theta_blob("paper")
