"""HandModelLayer through a real caffe.Net: golden outputs, float32 gradient checks, setup errors."""

import numpy as np
import pytest

from data_helpers import central_difference, rel_err


LAYER = """force_backward: true
layer {{ name: "in" type: "Input" top: "theta" input_param {{ shape {{ {dims} }} }} }}
layer {{ name: "hand" type: "Python" bottom: "theta" top: "joints"
  python_param {{ module: "deepmodel.layers.hand_model_layer" layer: "HandModelLayer" param_str: '{param}' }} }}
"""


def net_text(shape, param='{"model": "nyu31"}'):
    return LAYER.format(dims=" ".join(f"dim: {d}" for d in shape), param=param)


def run(net, theta, top_grad=None):
    net.blobs["theta"].data[...] = theta.reshape(net.blobs["theta"].data.shape)
    net.forward()
    out = net.blobs["joints"].data.copy()
    if top_grad is None:
        return out
    net.blobs["joints"].diff[...] = top_grad
    net.backward()
    return out, net.blobs["theta"].diff.reshape(theta.shape).copy()


@pytest.mark.parametrize("layout", [47, 26])
def test_layer_matches_released_outputs(make_net, model, golden, layout):
    theta = golden["theta47"] if layout == 47 else golden["theta47"][:, model.free_ids]
    net = make_net(net_text((16, layout)))
    out, diff = run(net, theta, golden["top_grad93"])
    assert out.shape == (16, 93) and out.dtype == np.float32
    # float32 at the boundary: inputs and outputs are rounded, the model itself is float64
    theta32 = theta.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(out, model.forward(theta32).reshape(16, 93).astype(np.float32), rtol=0, atol=0)
    np.testing.assert_allclose(out, golden["joints93"], rtol=0, atol=2e-6)
    want = golden["bottom_diff47"] if layout == 47 else golden["bottom_diff47"][:, model.free_ids]
    np.testing.assert_allclose(diff, want, rtol=0, atol=2e-5 * np.abs(want).max())
    if layout == 47:
        assert np.all(diff[:, model.fixed_ids] == 0)


def test_layer_accepts_4d_bottom(make_net, model, golden):
    theta = golden["theta47"][:4, model.free_ids]
    net = make_net(net_text((4, 26, 1, 1)))
    out, diff = run(net, theta, golden["top_grad93"][:4])
    np.testing.assert_allclose(out, golden["joints93"][:4], atol=2e-6)
    np.testing.assert_allclose(diff, golden["bottom_diff47"][:4, model.free_ids], atol=1e-4)


def test_layer_reshapes_with_the_batch(make_net, model):
    net = make_net(net_text((2, 26)))
    net.blobs["theta"].reshape(5, 26)
    net.reshape()
    theta = np.random.default_rng(0).normal(scale=0.2, size=(5, 26))
    out = run(net, theta)
    assert out.shape == (5, 93)
    np.testing.assert_allclose(out, model.forward(theta).reshape(5, 93), atol=2e-6)


@pytest.mark.parametrize("where", ["random", "near_limits"])
@pytest.mark.parametrize("layout", [26, 47])
def test_layer_gradient_equals_central_differences_in_float32(make_net, model, where, layout):
    """Gradient of sum(w * joints) through Caffe (float32) against central differences of the net."""
    rng = np.random.default_rng(1 if where == "random" else 2)
    n = 4
    lo, up = model.lower.copy(), model.upper.copy()
    lo[:6], up[:6] = -0.5, 0.5
    if where == "random":
        theta26 = lo + (up - lo) * rng.uniform(0.1, 0.9, size=(n, 26))
    else:
        theta26 = np.where(rng.integers(0, 2, size=(n, 26)).astype(bool), up, lo)
        theta26 += rng.choice([-2e-3, 2e-3], size=(n, 26))
    theta = theta26 if layout == 26 else model.to_full(theta26)
    w = rng.normal(size=(n, 93))
    net = make_net(net_text((n, layout)))
    _, diff = run(net, theta, w)
    num = central_difference(lambda t: (run(net, t).astype(np.float64) * w).sum(axis=1), theta,
                             1e-2, per_sample=True)
    assert rel_err(diff, num) < 1e-3
    # per sample as well
    for s in range(n):
        assert rel_err(diff[s], num[s]) < 1e-3
    # and Caffe's float32 gradient equals the float64 model's at the float32 input
    exact = model.backward(theta.astype(np.float32).astype(np.float64), w.astype(np.float32))
    assert rel_err(diff, exact) < 1e-6


@pytest.mark.parametrize("param,message", [
    ('{"model": "nyu31", "scale": 2}', "unknown param_str key.*'scale'.*expected a JSON object with keys \"model\""),
    ('{"model": nyu31}', "is not valid JSON.*expected a JSON object"),
    ('["nyu31"]', "is not a JSON object"),
    ('{"model": "nosuch"}', "model 'nosuch': no file nosuch.json"),
])
def test_layer_rejects_bad_param_str(make_net, param, message):
    with pytest.raises(ValueError, match=message):
        make_net(net_text((2, 26), param))


@pytest.mark.parametrize("shape", [(2, 25), (2, 93), (2, 26, 2)])
def test_layer_rejects_bottom_of_wrong_width(make_net, shape):
    with pytest.raises(ValueError, match=r"HandModelLayer: bottom\[0\] has shape .*expected \(N, 26\).*\(N, 47\)"):
        make_net(net_text(shape))


def test_layer_without_param_str_uses_nyu31(make_net, model):
    text = net_text((2, 26)).replace(" param_str: '{\"model\": \"nyu31\"}'", "")
    assert "param_str" not in text
    net = make_net(text)
    theta = np.zeros((2, 26))
    np.testing.assert_allclose(run(net, theta), model.forward(theta).reshape(2, 93), atol=1e-6)


def test_layer_rejects_two_bottoms(make_net):
    text = net_text((2, 26)).replace('bottom: "theta" top: "joints"', 'bottom: "theta" bottom: "theta" top: "joints"')
    with pytest.raises(ValueError, match="expected 1 bottom"):
        make_net(text)
