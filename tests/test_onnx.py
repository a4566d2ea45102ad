"""The ONNX export (python_layers/export, tools/export_onnx.py) and the ONNX Runtime backend.

Every deploy variant is exported with seeded random weights and run in ONNX Runtime against the
real Caffe net (with the project's Python layers) on the five real NYU test crops and 200
synthetic crops of the default world; the hand model's ONNX form is checked against the NumPy
model on its own, also for a changed model file."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from data_helpers import assert_one_line_error, make_synthetic, run_module

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from deepmodel.data.evaluation.real_crops import real_crops  # noqa: E402
from deepmodel.export import hand_ops  # noqa: E402
from deepmodel.export.caffe_net import export_net  # noqa: E402
from deepmodel.export.graph import OPSET, Graph  # noqa: E402
from deepmodel.model.hand_model import HandModel  # noqa: E402
from deepmodel.nets.net_io import load_net  # noqa: E402
from deepmodel.plumbing import PROJECT  # noqa: E402
from deepmodel.runtime.nets import CaffeNet, OnnxNet  # noqa: E402

TOL = 1e-4          # the bound on keypoints (normalised units)
POSE_VARIANTS = ["deploy", "deploy_hand_up", "deploy_icvl", "deploy_nolimit", "deploy_icvl_nolimit",
                 "deploy_direct_params", "deploy_direct_joints", "deploy_icvl_direct_params",
                 "deploy_icvl_direct_joints"]
LARGEST = {}        # variant -> {output: largest difference}, printed at the end of the module


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    """The five real NYU test crops and 200 synthetic test crops of the default world."""
    from deepmodel.data.records.split import LmdbSplit
    from deepmodel.tools import make_lmdb

    tmp = tmp_path_factory.mktemp("onnx_crops")
    root = make_synthetic(tmp / "synthetic", 0, 200, seed=11)
    assert make_lmdb.main(["nyu", "--root", str(root), "--out", str(tmp / "lmdb"), "--splits",
                           "test", "--quiet"]) == 0
    with LmdbSplit.of(tmp / "lmdb", "nyu", "test").open("depth") as depth:
        synthetic = depth.read_all()[1].reshape(-1, 1, 128, 128).astype(np.float32)
    assert len(synthetic) == 200
    return np.concatenate([real_crops()["crops"], synthetic])


def _random_weights(model, path, seed=3):
    net = load_net(model, None)
    rng = np.random.default_rng(seed)
    for blobs in net.params.values():
        for b in blobs:
            b.data[...] = rng.normal(0.0, 0.05, b.data.shape)
    net.save(str(path))
    return net


def _caffe_outputs(net, x, names):
    return {n: np.array(v) for n, v in CaffeNet(net).run(x, names).items()}


def _standard_ops_only(proto):
    for node in proto.graph.node:
        assert node.domain in ("", "ai.onnx"), node
        assert onnx.defs.has(node.op_type, OPSET), node.op_type


@pytest.mark.parametrize("variant", POSE_VARIANTS)
def test_every_variant_runs_in_onnx_runtime_as_in_caffe(variant, crops, tmp_path):
    model = PROJECT / "prototxt" / f"{variant}.prototxt"
    net = _random_weights(model, tmp_path / "w.caffemodel")
    proto = export_net(model, tmp_path / "w.caffemodel")
    onnx.checker.check_model(proto, full_check=True)
    _standard_ops_only(proto)
    assert proto.opset_import[0].version == OPSET
    path = tmp_path / "net.onnx"
    onnx.save(proto, str(path))
    runner = OnnxNet(path)
    assert runner.outputs[0] == "joints" and "theta" in runner.outputs or "direct_joints" in variant
    got = runner.run(crops, runner.outputs)
    want = _caffe_outputs(net, crops, runner.outputs)
    diffs = {k: float(np.max(np.abs(got[k] - want[k].reshape(got[k].shape)))) for k in got}
    LARGEST[variant] = diffs
    print(variant, diffs)
    assert diffs["joints"] <= TOL, diffs
    assert np.ptp(got["joints"]) > 0.1           # a net that does something, not all zeros
    if variant == "deploy_hand_up":               # the crop turn is exact: same pixels, angles
        assert diffs["depth_up"] == 0.0 and diffs["turn"] == 0.0, diffs
        assert np.mean(np.abs(want["turn"]) > 0.1) > 0.5        # the crops were really turned


def test_the_shipped_nets_run_as_in_caffe_and_are_the_current_export(crops, tmp_path):
    """The shipped .onnx files are what the exporter makes of the shipped weights today, and
    give Caffe's outputs on the real and synthetic crops (the detector on frames of two sizes)."""
    from tools.export_onnx import SHIPPED

    for model, weights in SHIPPED:
        shipped = PROJECT / weights.replace(".caffemodel", ".onnx")
        fresh = export_net(PROJECT / model, PROJECT / weights)
        assert onnx.load(str(shipped)).graph == fresh.graph, f"{shipped}: run `make onnx`"
        runner, net = OnnxNet(shipped), load_net(PROJECT / model, PROJECT / weights)
        if "detect" in model and "refine" not in weights:
            from deepmodel.data.datasets import nyu
            from deepmodel.data.datasets.camera import NYU_CAMERA
            from deepmodel.data.hand_crop.detect import detector_input

            frame = nyu.read_depth(PROJECT / "data/reference/nyu/depth_1_0000001.png")
            for x in (detector_input(frame, NYU_CAMERA), detector_input(frame[::2, ::2], NYU_CAMERA)):
                x = x[None, None]
                got = runner.run(x, ["heat"])["heat"]
                want = _caffe_outputs(net, x, ["heat"])["heat"]
                assert got.shape == want.shape and np.max(np.abs(got - want)) < 1e-4
            continue
        got = runner.run(crops, runner.outputs)
        want = _caffe_outputs(net, crops, runner.outputs)
        for name in runner.outputs:
            assert np.max(np.abs(got[name] - want[name].reshape(got[name].shape))) <= TOL, name


def _fk_session(model, width, tmp_path):
    g = Graph()
    out = hand_ops.hand_model(g, "theta", model, width)
    g.nodes.append(g.helper.make_node("Identity", [out], ["keypoints"]))
    proto = g.model("fk", [g.value_info("theta", np.float32, ["N", width])],
                    [g.value_info("keypoints", np.float32, ["N", 3 * model.num_keypoints])])
    path = tmp_path / f"fk{width}.onnx"
    onnx.save(proto, str(path))
    return OnnxNet(path)


@pytest.mark.parametrize("width", [26, 47])
def test_forward_kinematics_in_onnx_is_the_hand_model(model, width, tmp_path):
    rng = np.random.default_rng(width)
    theta = rng.uniform(-1.0, 1.0, (300, width)).astype(np.float32)
    got = _fk_session(model, width, tmp_path).run(theta, ["keypoints"])["keypoints"]
    want = model.forward(theta.astype(np.float64)).reshape(len(theta), -1)
    assert np.max(np.abs(got - want)) < 1e-6


def test_the_export_follows_the_model_file(tmp_path):
    """A changed model file (longer bones, another rest pose, a flipped rotation sign) changes the
    exported kinematics as it changes the NumPy model's."""
    definition = json.loads((PROJECT / "python_layers/model/nyu31.json").read_text())
    definition["bone_lengths"] = [1.3 * b for b in definition["bone_lengths"]]
    definition["rotation_sign"]["x"] = -definition["rotation_sign"]["x"]
    for p in definition["params"]:
        if p["fixed"]:
            p["init"] = p["init"] + 0.1
    changed, nyu = HandModel(definition, "changed"), HandModel.nyu()
    theta = np.random.default_rng(1).uniform(-0.5, 0.5, (50, 26)).astype(np.float32)
    got = _fk_session(changed, 26, tmp_path).run(theta, ["keypoints"])["keypoints"]
    want = changed.forward(theta.astype(np.float64)).reshape(50, -1)
    assert np.max(np.abs(got - want)) < 1e-6
    assert np.max(np.abs(got - nyu.forward(theta.astype(np.float64)).reshape(50, -1))) > 0.1


def test_export_tool_writes_a_checked_file_and_refuses_bad_input(project_root, tmp_path):
    weights = tmp_path / "w.caffemodel"
    _random_weights(PROJECT / "prototxt/deploy_icvl.prototxt", weights)
    out = tmp_path / "icvl.onnx"
    proc = run_module(project_root, "tools/export_onnx.py", "--weights", weights, "--model",
                      "prototxt/deploy_icvl.prototxt", "--out", out, "--check-crops", "20")
    assert proc.returncode == 0, proc.stderr
    assert "largest difference: joints" in proc.stdout and out.is_file()
    assert OnnxNet(out).outputs == ("joints", "theta")
    assert not list(tmp_path.glob(".*tmp*"))
    # weights that do not fit the net, a foreign layer, an output that is an input
    refine = PROJECT / "models/refine/refine_nyu.caffemodel"
    bad = run_module(project_root, "tools/export_onnx.py", "--weights", refine, "--model",
                     "prototxt/deploy.prototxt", "--out", tmp_path / "x.onnx")
    assert_one_line_error(bad, str(refine))
    assert not (tmp_path / "x.onnx").exists()
    foreign = tmp_path / "foreign.prototxt"
    foreign.write_text('layer { name: "depth" type: "Input" top: "depth" input_param { shape { '
                       'dim: 1 dim: 1 dim: 8 dim: 8 } } }\nlayer { name: "s" type: "Sigmoid" '
                       'bottom: "depth" top: "s" }\n')
    proc = run_module(project_root, "tools/export_onnx.py", "--weights", weights, "--model",
                      foreign, "--out", tmp_path / "y.onnx")
    assert_one_line_error(proc)
    assert not (tmp_path / "y.onnx").exists()
    assert_one_line_error(run_module(project_root, "tools/export_onnx.py", "--weights", weights,
                                     "--out", weights), "--out")


def test_onnx_runtime_refuses_a_file_that_is_not_onnx(tmp_path):
    from deepmodel.plumbing import InputError

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(InputError, match="bad.onnx"):
        OnnxNet(bad)
    with pytest.raises(InputError, match="export_onnx"):
        OnnxNet(tmp_path / "missing.onnx")


ONNX_EXAMPLE_GUARD = """
import sys
class NoCaffe:
    def find_spec(self, name, path=None, target=None):
        if name == "caffe" or name.startswith("caffe."):
            raise ImportError("caffe is not installed here")
sys.meta_path.insert(0, NoCaffe())
"""


def test_readme_onnx_example_runs_without_caffe(project_root):
    """The README's example without Caffe, in a Python where importing caffe fails: it runs,
    never imports caffe (nor the Caffe layers), and finds the pose the Caffe backend finds."""
    import re

    text = (project_root / "README.md").read_text()
    code = re.search(r"<!-- onnx-example[^>]*-->\s*```python\n(.*?)```", text, re.S).group(1)
    assert len(code.strip().splitlines()) <= 10 and 'backend="onnx"' in code
    check = "\nassert 'caffe' not in sys.modules and 'deepmodel.layers' not in sys.modules\n" \
            "print(repr(pose.keypoints_mm.tolist()))\n"
    env = {"GLOG_minloglevel": "2", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", ONNX_EXAMPLE_GUARD + code + check],
                          cwd=project_root, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("True nearest (31, 3)")
    from deepmodel.data.datasets import nyu
    from deepmodel.pipeline.estimator import HandPoseEstimator

    frame = nyu.read_depth(project_root / "data/reference/nyu/depth_1_0000001.png")
    caffe_pose = HandPoseEstimator(camera="nyu").estimate(frame)
    onnx_mm = np.array(eval(lines[-1]))
    assert np.max(np.abs(onnx_mm - caffe_pose.keypoints_mm)) < 0.01     # mm


def test_run_frames_backend_onnx_writes_what_caffe_writes(project_root, reference_data, tmp_path):
    frame = reference_data / "nyu" / "depth_1_0000001.png"
    outs = {}
    for backend in ("caffe", "onnx"):
        out = tmp_path / backend
        proc = run_module(project_root, "tools/run_frames.py", frame, frame, "--weights",
                          "models/real/deepmodel.caffemodel", "--backend", backend, "--out", out,
                          "--track", "on", "--quiet")
        assert proc.returncode == 0, proc.stderr
        outs[backend] = np.loadtxt(out / "keypoints_mm.txt")
    assert outs["caffe"].shape == (2, 93)
    assert np.max(np.abs(outs["caffe"] - outs["onnx"])) < 0.01
    missing = tmp_path / "lonely.caffemodel"
    missing.write_bytes((PROJECT / "models/real/deepmodel.caffemodel").read_bytes())
    proc = run_module(project_root, "tools/run_frames.py", frame, "--weights", missing,
                      "--backend", "onnx", "--out", tmp_path / "x")
    assert_one_line_error(proc, "lonely.onnx", "export_onnx")
    for blob, needle in (("theta", "expected (N, 93)"), ("nope", "has no output 'nope'")):
        proc = run_module(project_root, "tools/run_frames.py", frame, "--weights",
                          "models/real/deepmodel.onnx", "--backend", "onnx", "--blob", blob,
                          "--out", tmp_path / "y")
        assert_one_line_error(proc, "deepmodel.onnx", needle)


def teardown_module(module):
    if LARGEST and os.environ.get("PYTEST_XDIST_WORKER") is None:
        worst = max(v["joints"] for v in LARGEST.values())
        print(f"\nlargest keypoint difference ONNX Runtime vs Caffe over {len(LARGEST)} variants: "
              f"{worst:.2g} units")
