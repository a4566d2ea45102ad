"""The toolchain: pycaffe imports, Python layers run through caffe.Net and the `caffe` command."""
import os
import shutil
import subprocess
import textwrap

import numpy as np
import pytest

caffe = pytest.importorskip("caffe", reason="pycaffe missing: run `make caffe`")

# A small Python layer: top = 3 * bottom + 1; backward scales the diff by 3.
AFFINE_LAYER = textwrap.dedent('''
    import caffe


    class AffineLayer(caffe.Layer):
        def setup(self, bottom, top):
            if len(bottom) != 1:
                raise Exception("AffineLayer takes one bottom")

        def reshape(self, bottom, top):
            top[0].reshape(*bottom[0].data.shape)

        def forward(self, bottom, top):
            top[0].data[...] = 3.0 * bottom[0].data + 1.0

        def backward(self, top, propagate_down, bottom):
            if propagate_down[0]:
                bottom[0].diff[...] = 3.0 * top[0].diff
''')

NET = textwrap.dedent('''
    name: "toolchain"
    force_backward: true
    layer { name: "data" type: "Input" top: "data"
            input_param { shape { dim: 4 dim: 5 } } }
    layer { name: "affine" type: "Python" bottom: "data" top: "out"
            python_param { module: "toolchain_affine" layer: "AffineLayer" } }
    layer { name: "fc" type: "InnerProduct" bottom: "out" top: "fc"
            inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0.1 } } }
    layer { name: "target" type: "Input" top: "target"
            input_param { shape { dim: 4 dim: 2 } } }
    layer { name: "loss" type: "EuclideanLoss" bottom: "fc" bottom: "target" top: "loss" }
''')


@pytest.fixture
def layer_module(tmp_path, monkeypatch):
    (tmp_path / "toolchain_affine.py").write_text(AFFINE_LAYER)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_python_layer_is_registered():
    assert "Python" in caffe.layer_type_list()
    assert "Data" in caffe.layer_type_list()


def test_python_layer_forward_backward(layer_module, make_net):
    net = make_net(NET)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 5)).astype(np.float32)
    net.blobs["data"].data[...] = x
    net.blobs["target"].data[...] = 0.0
    net.forward()
    np.testing.assert_allclose(net.blobs["out"].data, 3 * x + 1, rtol=1e-6)
    w = net.params["fc"][0].data.astype(np.float64)
    b = net.params["fc"][1].data.astype(np.float64)
    fc = (3 * x.astype(np.float64) + 1) @ w.T + b
    np.testing.assert_allclose(net.blobs["fc"].data, fc, rtol=1e-5, atol=1e-6)
    # Euclidean loss = sum(d^2) / (2N); its gradient reaches the data through fc and the layer
    np.testing.assert_allclose(float(net.blobs["loss"].data), (fc ** 2).sum() / 8, rtol=1e-5)
    net.backward()
    expected = 3 * ((fc / 4) @ w)
    np.testing.assert_allclose(net.blobs["data"].diff, expected, rtol=1e-4, atol=1e-6)


def test_caffe_command_times_a_net_with_a_python_layer(layer_module):
    exe = shutil.which("caffe")
    assert exe, "the `caffe` command is not on PATH (run from `make test` or activate .venv)"
    model = layer_module / "net.prototxt"
    model.write_text(NET)
    env = dict(os.environ, PYTHONPATH=f"{layer_module}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    env["GLOG_minloglevel"] = "0"
    proc = subprocess.run([exe, "time", "-model", str(model), "-iterations", "3"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Average Forward-Backward" in proc.stderr
    assert "affine\tforward" in proc.stderr


def test_caffe_train_fine_tunes_from_weights(layer_module, make_net):
    """`caffe train -weights W` starts from W (this Caffe source ignored the flag until
    scripts/caffe-train-weights.patch): with a zero learning rate the snapshot after one
    iteration holds W's parameters, and without -weights the filler's."""
    exe = shutil.which("caffe")
    assert exe, "the `caffe` command is not on PATH (run from `make test` or activate .venv)"
    net = make_net(NET)
    rng = np.random.default_rng(3)
    w = rng.normal(size=net.params["fc"][0].data.shape).astype(np.float32)
    b = rng.normal(size=net.params["fc"][1].data.shape).astype(np.float32)
    net.params["fc"][0].data[...] = w
    net.params["fc"][1].data[...] = b
    weights = layer_module / "given.caffemodel"
    net.save(str(weights))
    model = layer_module / "net.prototxt"
    model.write_text(NET)
    env = dict(os.environ, PYTHONPATH=f"{layer_module}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    env["GLOG_minloglevel"] = "0"
    got = {}
    for name, extra in (("given", ["-weights", str(weights)]), ("filler", [])):
        solver = layer_module / f"solver_{name}.prototxt"
        solver.write_text(f'net: "{model}"\nbase_lr: 0\nlr_policy: "fixed"\nmax_iter: 1\n'
                          f'snapshot_prefix: "{layer_module / name}"\nsolver_mode: CPU\n'
                          f'random_seed: 5\n')
        proc = subprocess.run([exe, "train", "-solver", str(solver), *extra], capture_output=True,
                              text=True, env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert ("Finetuning from" in proc.stderr) == bool(extra)
        snap = caffe.Net(str(model), str(layer_module / f"{name}_iter_1.caffemodel"), caffe.TEST)
        got[name] = [p.data.copy() for p in snap.params["fc"]]
    np.testing.assert_array_equal(got["given"][0], w)
    np.testing.assert_array_equal(got["given"][1], b)
    assert np.abs(got["filler"][0] - w).max() > 0.1 and np.all(got["filler"][1] == 0)


def test_venv_caffe_runs_the_project_layers_from_a_clean_shell(project_root, tmp_path):
    """The venv's `caffe` command, started from another folder with neither the venv on PATH nor
    PYTHONPATH set, imports the hand model layer by its dotted module (the package deepmodel,
    installed in the venv) and runs it."""
    exe = project_root / ".venv" / "bin" / "caffe"
    if not exe.is_file():
        pytest.skip("no .venv/bin/caffe: run `make caffe`")
    model = tmp_path / "net.prototxt"
    model.write_text(textwrap.dedent('''
        name: "layers"
        layer { name: "theta" type: "Input" top: "theta" input_param { shape { dim: 2 dim: 26 } } }
        layer { name: "hand" type: "Python" bottom: "theta" top: "joints"
                python_param { module: "deepmodel.layers.hand_model_layer" layer: "HandModelLayer" } }
    '''))
    env = {"HOME": os.environ.get("HOME", str(tmp_path)), "PATH": "/usr/bin:/bin", "GLOG_minloglevel": "0"}
    proc = subprocess.run([str(exe), "time", "-model", str(model), "-iterations", "2"], cwd=tmp_path,
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "hand\tforward" in proc.stderr
