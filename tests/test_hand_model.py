"""HandModel (python_layers/model/hand_model.py): forward, backward and jacobian against the released C++
layer's outputs, the spec's figures, an independent 4x4-matrix implementation of the spec's chain
(derivatives by the paper's substitution rule, eq. 4) and central differences."""
import json

import numpy as np
import pytest

from deepmodel.data.datasets.labels import NYU14_KEYPOINTS
from data_helpers import central_difference
from deepmodel.model.hand_model import HandModel, ModelDefinitionError


@pytest.fixture(scope="module")
def config(reference_data):
    d = reference_data / "deepmodel-config"

    def nums(name):
        return np.array((d / name).read_text().split(), dtype=np.float64)

    fixed = nums("DofFixedId.txt")
    constraint = nums("DofConstraintId.txt")
    return {"bones": nums("BoneLength.txt"), "init": nums("InitialParameters.txt"),
            "low": nums("DofConstraintLow.txt"), "up": nums("DofConstraintUp.txt"),
            "fixed": fixed[1:].astype(int), "n_fixed": int(fixed[0]),
            "constraint_ids": constraint[1:].astype(int)}


# --------------------------------------------------------------------------- independent reference
def _rot(axis, t):
    """4x4 rotation of the spec (note the sign of Ry)."""
    c, s = np.cos(t), np.sin(t)
    m = np.eye(4)
    if axis == "x":
        m[1:3, 1:3] = [[c, -s], [s, c]]
    elif axis == "y":
        m[0, 0], m[0, 2], m[2, 0], m[2, 2] = c, -s, s, c
    else:
        m[0:2, 0:2] = [[c, -s], [s, c]]
    return m


def _drot(axis, t):
    """Element-wise derivative of _rot (the substituted matrix of eq. 4)."""
    c, s = np.cos(t), np.sin(t)
    m = np.zeros((4, 4))
    if axis == "x":
        m[1:3, 1:3] = [[-s, -c], [c, -s]]
    elif axis == "y":
        m[0, 0], m[0, 2], m[2, 0], m[2, 2] = -s, -c, c, -s
    else:
        m[0:2, 0:2] = [[-s, -c], [c, -s]]
    return m


def _trans(axis, v):
    m = np.eye(4)
    m["xyz".index(axis), 3] = v
    return m


def _dtrans(axis):
    m = np.zeros((4, 4))
    m["xyz".index(axis), 3] = 1.0
    return m


def _spec_chain():
    """The spec's kinematic table: keypoint -> (parent, ops); op = (kind, axis, param id or -bone-1, sign)."""
    def R(a, i):
        return ("R", a, i, 1)

    def Tb(a, b, sign=1):
        return ("Tb", a, b, sign)

    g = [R("z", 5), R("x", 3), R("y", 4)]
    chain = {24: (None, [("Tp", "x", 0, 1), ("Tp", "y", 1, 1), ("Tp", "z", 2, 1)]),
             25: (24, g + [R("z", 8), R("x", 6), R("y", 7), Tb("y", 24, -1)]),
             26: (24, g + [R("z", 11), R("x", 9), R("y", 10), Tb("y", 25, -1)]),
             27: (24, g + [R("z", 14), R("x", 12), R("y", 13), Tb("y", 26, -1)]),
             28: (27, [R("z", 16), R("y", 15), Tb("x", 27)]),
             29: (28, [R("z", 17), Tb("x", 28)]),
             30: (29, [R("z", 18), Tb("x", 29)])}
    for k in range(4):
        chain[20 + k] = (24, g + [R("z", 21 + 3 * k), R("x", 19 + 3 * k), R("y", 20 + 3 * k), Tb("y", 20 + k)])
        chain[5 * k + 4] = (20 + k, [R("z", 32 + 4 * k), R("x", 31 + 4 * k), Tb("y", 5 * k + 4)])
        chain[5 * k + 3] = (5 * k + 4, [R("x", 33 + 4 * k), Tb("y", 5 * k + 3)])
        chain[5 * k + 2] = (5 * k + 3, [Tb("y", 5 * k + 2)])
        chain[5 * k + 1] = (5 * k + 2, [R("x", 34 + 4 * k), Tb("y", 5 * k + 1)])
        chain[5 * k + 0] = (5 * k + 1, [Tb("y", 5 * k + 0)])
    full = {}

    def ops_of(k):
        if k not in full:
            parent, ops = chain[k]
            full[k] = (ops_of(parent) if parent is not None else []) + ops
        return full[k]

    return [ops_of(k) for k in range(31)]


SPEC_CHAIN = _spec_chain()


def reference(theta47, config):
    """Per-sample 4x4 products: keypoints (N, 31, 3) and d keypoints / d param (N, 31, 3, 47).

    The derivative with respect to parameter i is the same product with each matrix of parameter
    i replaced by its element-wise derivative (summed over the matrices that use i): eq. 4.
    """
    free = np.ones(47, bool)
    free[config["fixed"]] = False
    out, jac = [], []
    for row in np.asarray(theta47, dtype=np.float64):
        a = config["init"] + np.where(free, row, 0.0)
        pts, der = np.zeros((31, 3)), np.zeros((31, 3, 47))
        for k, ops in enumerate(SPEC_CHAIN):
            mats, dmats = [], []
            for kind, axis, ref, sign in ops:
                if kind == "R":
                    mats.append(_rot(axis, a[ref]))
                    dmats.append((ref, _drot(axis, a[ref])))
                elif kind == "Tp":
                    mats.append(_trans(axis, a[ref]))
                    dmats.append((ref, _dtrans(axis)))
                else:
                    mats.append(_trans(axis, sign * config["bones"][ref]))
                    dmats.append((None, None))
            o = np.array([0.0, 0.0, 0.0, 1.0])
            prod = np.eye(4)
            for m in mats:
                prod = prod @ m
            pts[k] = (prod @ o)[:3]
            for j, (pid, dm) in enumerate(dmats):
                if pid is None or not free[pid]:
                    continue
                prod = np.eye(4)
                for jj, m in enumerate(mats):
                    prod = prod @ (dm if jj == j else m)
                der[k, :, pid] += (prod @ o)[:3]
        out.append(pts)
        jac.append(der)
    return np.array(out), np.array(jac)


def random_theta(model, n, seed, scale=0.3):
    """(N, 26): within the limits' span around the middle, plus some global pose spread."""
    rng = np.random.default_rng(seed)
    lo, up = model.lower.copy(), model.upper.copy()
    lo[:6], up[:6] = -scale, scale
    return lo + (up - lo) * rng.uniform(0.05, 0.95, size=(n, model.num_free))


# --------------------------------------------------------------------------- the definition file
def test_definition_matches_released_config(model, config):
    assert model.num_params == 47 and model.num_keypoints == 31 and model.num_free == 26
    assert config["n_fixed"] == len(config["fixed"]) == 21
    np.testing.assert_array_equal(model.fixed_ids, np.sort(config["fixed"]))
    np.testing.assert_array_equal(model.free_ids, np.setdiff1d(np.arange(47), config["fixed"]))
    np.testing.assert_array_equal(model.bone_lengths, config["bones"])
    np.testing.assert_array_equal(model.init, config["init"])
    np.testing.assert_array_equal(model.lower_all, config["low"])
    np.testing.assert_array_equal(model.upper_all, config["up"])
    np.testing.assert_array_equal(model.lower, config["low"][model.free_ids])
    np.testing.assert_array_equal(model.upper, config["up"][model.free_ids])
    # the ids the released loss ignores are exactly the fixed ones
    np.testing.assert_array_equal(np.sort(config["constraint_ids"]), model.fixed_ids)


def test_definition_structure(model):
    assert len(model.parents) == len(model.keypoint_names) == 31
    assert model.parents[24] == -1 and sum(p < 0 for p in model.parents) == 1
    assert sorted(model.edges) == sorted((p, c) for c, p in enumerate(model.parents) if p >= 0)
    assert len(set(model.nyu_joint_of_keypoint.tolist())) == 31
    assert set(model.nyu_joint_of_keypoint.tolist()) <= set(range(36)) - {34}
    # the 14-joint evaluation: the spec's keypoints (docs/hand-model.md), same NYU joints
    np.testing.assert_array_equal(model.eval14_keypoints, (0, 3, 5, 8, 10, 13, 15, 18, 30, 29, 28, 25, 26, 24))
    assert NYU14_KEYPOINTS == tuple(model.eval14_keypoints)          # the label reader reads them
    np.testing.assert_array_equal(model.nyu_joint_of_keypoint[model.eval14_keypoints], model.eval14_nyu_joints)
    # every parameter's kind/axis/pivot follows from the spec's table
    for k, ops in enumerate(SPEC_CHAIN):
        for kind, axis, ref, _ in ops:
            if kind != "Tb":
                assert model.param_axis[ref] == axis
                assert model.param_kind[ref] == ("rotation" if kind == "R" else "translation")
    assert model.param_pivot[31] == 20 and model.param_pivot[33] == 4 and model.param_pivot[34] == 2
    assert model.param_pivot[17] == 28 and model.param_pivot[5] == 24


# --------------------------------------------------------------------------- golden outputs
@pytest.mark.parametrize("layout", [47, 26])
def test_forward_matches_released_layer(model, golden, layout):
    theta = golden["theta47"] if layout == 47 else golden["theta47"][:, model.free_ids]
    out = model.forward(theta)
    assert out.shape == (16, 31, 3) and out.dtype == np.float64
    np.testing.assert_allclose(out.reshape(16, 93), golden["joints93"], rtol=0, atol=1e-9)


@pytest.mark.parametrize("layout", [47, 26])
@pytest.mark.parametrize("grad_shape", ["flat", "kp"])
def test_backward_matches_released_layer(model, golden, layout, grad_shape):
    theta = golden["theta47"] if layout == 47 else golden["theta47"][:, model.free_ids]
    tg = golden["top_grad93"] if grad_shape == "flat" else golden["top_grad93"].reshape(16, 31, 3)
    grad = model.backward(theta, tg)
    assert grad.shape == theta.shape and grad.dtype == np.float64
    want = golden["bottom_diff47"] if layout == 47 else golden["bottom_diff47"][:, model.free_ids]
    np.testing.assert_allclose(grad, want, rtol=0, atol=1e-9)
    if layout == 47:
        assert np.all(grad[:, model.fixed_ids] == 0.0)
        assert np.all(golden["bottom_diff47"][:, model.fixed_ids] == 0.0)


def test_forward_backward_and_jacobian_match_golden(model, golden):
    fwd, grad = model.forward_backward(golden["theta47"], golden["top_grad93"])
    np.testing.assert_allclose(fwd.reshape(16, 93), golden["joints93"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(grad, golden["bottom_diff47"], rtol=0, atol=1e-9)
    jac = model.jacobian(golden["theta47"])
    assert jac.shape == (16, 93, 26)
    np.testing.assert_allclose(np.einsum("nkf,nk->nf", jac, golden["top_grad93"]),
                               golden["bottom_diff47"][:, model.free_ids], rtol=0, atol=1e-9)


# --------------------------------------------------------------------------- spec figures, invariants
def test_rest_pose_sanity_figures(model):
    rest = model.rest_pose()
    np.testing.assert_allclose(rest[24], [0.042313, 0.168748, -0.062570], atol=1e-12)
    tips = rest[[0, 5, 10, 15], 1]
    assert np.all((tips > 0.76) & (tips < 1.0)), tips
    assert tips.min() == pytest.approx(0.77, abs=0.01) and tips.max() == pytest.approx(0.99, abs=0.01)
    wrists = rest[[25, 26], 1]
    assert np.all((wrists > -0.37) & (wrists < -0.30)), wrists
    assert rest[30, 0] > rest[24, 0]  # the thumb is on the +x side of the palm


def test_bone_lengths_unchanged(model, config):
    theta = random_theta(model, 64, seed=1, scale=2.0)
    theta += np.random.default_rng(2).normal(scale=1.0, size=theta.shape)  # far outside the limits too
    pts = model.forward(theta)
    bone_of = {k: (k if k < 24 else k - 1) for k in range(31) if k != 24}
    for child, bone in bone_of.items():
        assert model.bone_of_keypoint[child] == bone
        length = np.linalg.norm(pts[:, child] - pts[:, model.parents[child]], axis=1)
        np.testing.assert_allclose(length, config["bones"][bone], rtol=0, atol=1e-12)


def test_26_and_47_layouts_agree(model):
    theta26 = random_theta(model, 32, seed=3)
    theta47 = np.random.default_rng(4).normal(scale=5.0, size=(32, 47))  # junk at the fixed ids
    theta47[:, model.free_ids] = theta26
    np.testing.assert_array_equal(model.forward(theta26), model.forward(theta47))
    tg = np.random.default_rng(5).normal(size=(32, 93))
    g26, g47 = model.backward(theta26, tg), model.backward(theta47, tg)
    np.testing.assert_array_equal(g47[:, model.free_ids], g26)
    assert np.all(g47[:, model.fixed_ids] == 0)
    np.testing.assert_array_equal(model.jacobian(theta26), model.jacobian(theta47))
    np.testing.assert_array_equal(model.to_full(theta26)[:, model.free_ids], theta26)
    np.testing.assert_array_equal(model.to_free(theta47), theta26)


def test_matches_independent_4x4_reference(model, config):
    theta47 = np.zeros((5, 47))
    theta47[:, model.free_ids] = random_theta(model, 5, seed=6, scale=1.0)
    pts, der = reference(theta47, config)
    np.testing.assert_allclose(model.forward(theta47), pts, rtol=0, atol=1e-12)
    jac = model.jacobian(theta47)
    np.testing.assert_allclose(jac, der[..., model.free_ids].reshape(5, 93, 26), rtol=0, atol=1e-12)
    tg = np.random.default_rng(7).normal(size=(5, 31, 3))
    np.testing.assert_allclose(model.backward(theta47, tg), np.einsum("nkcp,nkc->np", der, tg),
                               rtol=0, atol=1e-11)


# --------------------------------------------------------------------------- finite differences
def _rel_err(a, b):
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-12)


@pytest.mark.parametrize("where", ["random", "near_limits"])
def test_backward_equals_central_differences(model, where):
    rng = np.random.default_rng(8)
    if where == "random":
        theta = random_theta(model, 8, seed=9, scale=1.0)
    else:
        # every free angle just inside (or just outside) one of its limits
        side = rng.integers(0, 2, size=(8, model.num_free)).astype(bool)
        lo, up = model.lower.copy(), model.upper.copy()
        lo[:6], up[:6] = -0.5, 0.5
        theta = np.where(side, up, lo) + rng.choice([-1e-3, 1e-3], size=(8, model.num_free))
    tg = rng.normal(size=(8, 31, 3))
    num = central_difference(lambda t: (model.forward(t) * tg).sum(axis=(1, 2)), theta, 1e-6,
                             per_sample=True)
    ana = model.backward(theta, tg)
    assert _rel_err(ana, num) < 1e-6
    # per-sample, per-parameter too (relative to that sample's gradient size)
    scale = np.abs(num).max(axis=1, keepdims=True)
    assert np.all(np.abs(ana - num) <= 1e-6 * scale)
    # the jacobian column by column
    jac = model.jacobian(theta)
    h = 1e-6
    for i in (0, 3, 5, 8, 12, 25):
        d = np.zeros_like(theta)
        d[:, i] = h
        col = (model.forward(theta + d) - model.forward(theta - d)).reshape(8, 93) / (2 * h)
        assert _rel_err(jac[:, :, i], col) < 1e-6


def test_translation_gradient_is_the_sum_of_keypoint_gradients(model):
    tg = np.random.default_rng(10).normal(size=(4, 31, 3))
    grad = model.backward(random_theta(model, 4, seed=11), tg)
    np.testing.assert_allclose(grad[:, :3], tg.sum(axis=1), rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- interface details
def test_float32_input_and_out_arrays(model, golden):
    theta32 = golden["theta47"][:, model.free_ids].astype(np.float32)
    ref = model.forward(theta32.astype(np.float64))
    out = np.empty((16, 93), np.float32)
    assert model.forward(theta32, out=out) is out
    np.testing.assert_allclose(out, ref.reshape(16, 93), rtol=1e-6, atol=1e-6)
    gout = np.empty((16, 26), np.float32)
    assert model.backward(theta32, golden["top_grad93"].astype(np.float32), out=gout) is gout
    np.testing.assert_allclose(gout, golden["bottom_diff47"][:, model.free_ids], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="out for the gradient"):
        model.backward(theta32, golden["top_grad93"], out=np.empty((16, 47)))


def test_batch_sizes_and_repeated_calls(model):
    # the workspace is reused between calls: results must not alias it or depend on the last batch
    a = random_theta(model, 3, seed=12)
    b = random_theta(model, 7, seed=13)
    fa = model.forward(a)
    fb = model.forward(b)
    np.testing.assert_array_equal(model.forward(a), fa)
    np.testing.assert_array_equal(model.forward(b[2:3])[0], fb[2])
    assert model.forward(np.zeros((0, 26))).shape == (0, 31, 3)


@pytest.mark.parametrize("shape", [(4,), (4, 25), (4, 46), (2, 26, 1)])
def test_forward_rejects_bad_theta_shape(model, shape):
    with pytest.raises(ValueError, match=r"expected \(N, 26\).*\(N, 47\)"):
        model.forward(np.zeros(shape))


def test_backward_rejects_bad_top_grad_shape(model):
    with pytest.raises(ValueError, match=r"top_grad has shape \(4, 92\): expected \(4, 31, 3\) or \(4, 93\)"):
        model.backward(np.zeros((4, 26)), np.zeros((4, 92)))


def test_malformed_model_files_raise_naming_the_entry(tmp_path, project_root):
    with pytest.raises(ModelDefinitionError, match="no file nosuch.json.*known models: .*nyu31"):
        HandModel.by_name("nosuch")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ModelDefinitionError, match="bad.json: not valid JSON"):
        HandModel.from_file(bad)
    d = json.loads((project_root / "python_layers" / "model" / "nyu31.json").read_text())
    d["keypoints"][3]["ops"][0]["op"] = "Rw"
    with pytest.raises(ModelDefinitionError, match="keypoint 3: unknown op 'Rw'"):
        HandModel(d, source="edited")


def test_textbook_ry_sign_would_not_match_golden(golden, project_root):
    """The released numbers depend on the spec's sign of Ry: the golden check can tell."""
    d = json.loads((project_root / "python_layers" / "model" / "nyu31.json").read_text())
    d["rotation_sign"]["y"] = 1
    wrong = HandModel(d, source="textbook Ry")
    err = np.abs(wrong.forward(golden["theta47"]).reshape(16, 93) - golden["joints93"]).max()
    assert err > 1e-2


def test_backward_after_forward_reuses_only_identical_theta(model, golden):
    """forward keeps its pass for backward; a theta changed in place must not reuse it."""
    theta = golden["theta47"].copy()
    tg = golden["top_grad93"]
    model.forward(theta)
    np.testing.assert_allclose(model.backward(theta, tg), golden["bottom_diff47"], rtol=0, atol=1e-9)
    theta[:, 31] += 0.2  # same array object, new values
    fresh = HandModel.nyu()
    np.testing.assert_array_equal(model.backward(theta, tg), fresh.backward(theta, tg))
    np.testing.assert_array_equal(model.forward(theta[:, model.free_ids]), fresh.forward(theta))
    np.testing.assert_allclose(model.backward(golden["theta47"], tg), golden["bottom_diff47"], rtol=0, atol=1e-9)


def test_palm_normal_points_where_the_fingers_flex(model):
    theta = np.zeros((16, model.num_free))                  # straight fingers, any global pose
    theta[:, :6] = random_theta(model, 16, seed=11, scale=np.pi)[:, :6]
    normal = model.palm_normal(model.forward(theta))
    np.testing.assert_allclose(np.linalg.norm(normal, axis=1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(model.palm_normal(model.forward(theta).reshape(16, 93)), normal)
    for finger in ("little", "ring", "middle", "index"):
        tip = model.keypoint_names.index(f"{finger} tip")
        flexed = theta.copy()
        flexed[:, model.free_column(f"{finger} MCP flexion")] -= 0.5     # flexion is negative
        moved = model.forward(flexed)[:, tip].copy() - model.forward(theta)[:, tip]
        # the tip swings towards the palm's side, well off the palm's plane
        assert np.all(np.einsum("nk,nk->n", moved, normal) > 0.3 * np.linalg.norm(moved, axis=1))


def test_palm_normal_turns_with_the_hand_and_the_rest_pose_shows_the_palm(model):
    kp = model.forward(random_theta(model, 8, seed=12))
    a = np.radians(70.0)
    turn = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    np.testing.assert_allclose(model.palm_normal(kp @ turn.T), model.palm_normal(kp) @ turn.T,
                               atol=1e-12)
    # at rest the fingers point up (+y) and curl towards the camera (-z): the palm faces it
    assert model.palm_normal(model.rest_pose()[None])[0, 2] < -0.9
