"""JointLimitLossLayer through a real caffe.Net: both penalty forms against an independent
element-by-element computation, zero inside the limits, central-difference gradients, the
out-of-range fraction, loss weights and setup errors."""
import numpy as np
import pytest

from data_helpers import central_difference, rel_err


NET = """force_backward: true
layer {{ name: "in" type: "Input" top: "theta" input_param {{ shape {{ dim: {n} dim: {w} }} }} }}
layer {{ name: "limits" type: "Python" bottom: "theta" top: "loss" {extra_top}
  python_param {{ module: "deepmodel.layers.joint_limit_loss" layer: "JointLimitLossLayer" param_str: '{param}' }}
  {weights} }}
"""


def net_text(n, w, param="{}", fraction=False, weight=1.0):
    return NET.format(n=n, w=w, param=param, extra_top='top: "out_of_range"' if fraction else "",
                      weights=f"loss_weight: {weight}" + (" loss_weight: 0" if fraction else ""))


def spec_limits(reference_data):
    """Limits straight from the released files, and the ids the released loss ignores."""
    d = reference_data / "deepmodel-config"
    low = np.array((d / "DofConstraintLow.txt").read_text().split(), dtype=np.float64)
    up = np.array((d / "DofConstraintUp.txt").read_text().split(), dtype=np.float64)
    ignored = [int(x) for x in (d / "DofConstraintId.txt").read_text().split()[1:]]
    return low, up, ignored


def expected_loss(theta47, low, up, ignored, penalty, lam):
    """Element by element, straight from the spec's formula, averaged over the batch."""
    total, bad = 0.0, 0
    for row in theta47:
        out = False
        for i, t in enumerate(row):
            if i in ignored:
                continue
            b = max(low[i] - t, 0.0) + max(t - up[i], 0.0)
            total += b if penalty == "hinge" else b * b
            out = out or b > 0
        bad += out
    return lam * total / len(theta47), bad / len(theta47)


def run(net, theta):
    net.blobs["theta"].data[...] = theta
    net.forward()
    net.backward()
    frac = float(net.blobs["out_of_range"].data[0]) if "out_of_range" in net.blobs else None
    return float(net.blobs["loss"].data[0]), net.blobs["theta"].diff.copy(), frac


def theta_with_violations(model, n, seed):
    rng = np.random.default_rng(seed)
    lo, up = model.lower, model.upper
    span = np.where(np.abs(up - lo) > 100, 1.0, up - lo)
    mid = np.where(np.abs(up - lo) > 100, 0.0, (up + lo) / 2)
    theta = mid + span * rng.uniform(-1.0, 1.0, size=(n, model.num_free))  # about half out of range
    theta[0] = mid  # one sample well inside
    return theta


@pytest.mark.parametrize("penalty,lam", [("hinge", 1.0), ("squared", 1.0), ("hinge", 0.25), ("squared", 3.0)])
@pytest.mark.parametrize("layout", [26, 47])
def test_loss_matches_independent_computation(make_net, model, reference_data, penalty, lam, layout):
    low, up, ignored = spec_limits(reference_data)
    theta26 = theta_with_violations(model, 6, seed=1)
    theta47 = np.random.default_rng(2).normal(scale=3.0, size=(6, 47))  # fixed ids far out of "range"
    theta47[:, model.free_ids] = theta26
    theta = theta26 if layout == 26 else theta47
    param = f'{{"penalty": "{penalty}", "lambda": {lam}}}'
    net = make_net(net_text(6, layout, param, fraction=True))
    loss, diff, frac = run(net, theta)
    want, want_frac = expected_loss(theta47.astype(np.float32), low, up, ignored, penalty, lam)
    assert want > 0
    assert loss == pytest.approx(want, rel=1e-5)
    assert frac == pytest.approx(want_frac) and 0 < frac < 1
    if layout == 47:
        assert np.all(diff[:, model.fixed_ids] == 0)


def test_loss_and_gradient_are_zero_inside_limits(make_net, model):
    rng = np.random.default_rng(3)
    lo, up = model.lower.copy(), model.upper.copy()
    lo[:6], up[:6] = -5.0, 5.0
    theta = (lo + (up - lo) * rng.uniform(0.01, 0.99, size=(8, 26))).astype(np.float32)
    # rows 0 and 1: on the limits, i.e. the float32 values nearest to them from inside
    lo32, up32 = lo.astype(np.float32), up.astype(np.float32)
    theta[0] = np.where(lo32 < lo, np.nextafter(lo32, np.float32(np.inf)), lo32)
    theta[1] = np.where(up32 > up, np.nextafter(up32, np.float32(-np.inf)), up32)
    assert np.all((theta >= model.lower) & (theta <= model.upper))
    assert np.abs(theta[0] - lo).max() < 1e-6 and np.abs(theta[1] - up).max() < 1e-6
    for penalty in ("hinge", "squared"):
        net = make_net(net_text(8, 26, f'{{"penalty": "{penalty}"}}', fraction=True))
        loss, diff, frac = run(net, theta)
        assert loss == 0.0 and frac == 0.0 and np.all(diff == 0)


def test_loss_gradient_equals_central_differences(make_net, model):
    """Through Caffe float32, near the limits (but not within h of a kink)."""
    rng = np.random.default_rng(4)
    lo, up = model.lower, model.upper
    finite = np.abs(up - lo) < 100
    side = rng.integers(0, 2, size=(5, 26)).astype(bool)
    offset = rng.choice([-1, 1], size=(5, 26)) * rng.uniform(0.02, 0.1, size=(5, 26))
    theta = np.where(finite, np.where(side, up, lo) + offset, rng.normal(size=(5, 26)))
    for penalty, weight in (("hinge", 1.0), ("squared", 1.0), ("squared", 0.5)):
        net = make_net(net_text(5, 26, f'{{"penalty": "{penalty}", "lambda": 2.0}}', weight=weight))
        _, diff, _ = run(net, theta)
        num = central_difference(lambda t: weight * run(net, t)[0], theta, 1e-3)
        assert np.abs(num).max() > 0
        assert rel_err(diff, num) < 1e-3
        # the gradient is zero exactly where the angle is inside its range
        inside = (theta >= lo) & (theta <= up)
        assert np.all(diff[inside] == 0) and np.all(diff[~inside] != 0)


def test_hinge_gradient_is_sign_over_batch(make_net, model):
    theta = np.zeros((4, 26))
    theta[1, 10] = model.upper[10] + 0.5  # id 31 above
    theta[2, 11] = model.lower[11] - 0.5  # id 32 below
    net = make_net(net_text(4, 26, '{"lambda": 1.0}'))
    assert np.all((model.lower <= 0) & (model.upper >= 0))  # theta = 0 (the rest pose) is inside
    loss, diff, _ = run(net, theta)
    assert loss == pytest.approx((0.5 + 0.5) / 4, rel=1e-5)
    assert np.count_nonzero(diff) == 2
    assert diff[1, 10] == pytest.approx(0.25) and diff[2, 11] == pytest.approx(-0.25)


@pytest.mark.parametrize("param,message", [
    ('{"penalty": "cubic"}', "penalty 'cubic' is not one of 'hinge', 'squared'"),
    ('{"lambda": -1}', "lambda -1 must be a finite number >= 0"),
    ('{"lambda": "big"}', "lambda 'big' must be"),
    ('{"weight": 1}', "unknown param_str key.*'weight'.*\"model\", \"penalty\", \"lambda\""),
    ('{penalty: hinge}', "not valid JSON"),
    ('{"model": "nosuch"}', "model 'nosuch'"),
])
def test_loss_rejects_bad_param_str(make_net, param, message):
    with pytest.raises(ValueError, match=message):
        make_net(net_text(2, 26, param))


def test_loss_rejects_bottom_of_wrong_width(make_net):
    with pytest.raises(ValueError, match=r"JointLimitLossLayer: bottom\[0\] has shape \(2, 30\).*\(N, 26\)"):
        make_net(net_text(2, 30))


def test_nan_theta_counts_as_out_of_limits(make_net, model):
    """A NaN angle is inside no limits: the out_of_range top and metrics.out_of_limits count it."""
    from deepmodel.data.evaluation import metrics

    net = make_net(net_text(3, 26, fraction=True))
    theta = np.tile((model.lower + model.upper) / 2, (3, 1))
    theta = np.where(np.isfinite(theta), theta, 0.0)
    theta[1, 7] = np.nan
    _, _, frac = run(net, theta)
    assert frac == pytest.approx(1 / 3)
    outside = metrics.out_of_limits(theta, model.lower, model.upper, model.free_ids)
    assert outside.tolist() == [False, True, False]
