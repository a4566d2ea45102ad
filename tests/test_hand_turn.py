"""The turn of a crop so that its hand points up (python_layers/model/hand_turn.py) and its two layers
(HandTurnLayer, PointTurnLayer) through real caffe.Nets: the turn against OpenCV's, crop and
points turned together, the angle under exact quarter turns and on labelled synthetic hands,
float32 gradient checks, the hand_up deploy net, and bad input."""
import cv2
import numpy as np
import pytest

from data_helpers import central_difference, make_synthetic, rel_err

from deepmodel.model import hand_turn as ht


@pytest.fixture(scope="module")
def real():
    from deepmodel.data.evaluation.real_crops import real_crops

    return real_crops()["crops"][:, 0]


def _wrap(a):
    return np.angle(np.exp(1j * np.asarray(a)))


def _opencv_turn(crop, phi):
    """OpenCV's rotation about the crop's centre (counter-clockwise on screen for phi > 0, which
    with rows going down is counter-clockwise in the label frame, y up), nearest neighbour."""
    c = (crop.shape[1] - 1) / 2.0
    m = cv2.getRotationMatrix2D((c, c), float(np.degrees(phi)), 1.0)
    return cv2.warpAffine(crop, m, crop.shape[::-1], flags=cv2.INTER_NEAREST,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=1.0)


def test_turn_crops_is_opencvs_nearest_neighbour_rotation(real):
    phis = np.array([0.3, -1.2, 2.5, np.pi, np.radians(138.0)])
    ours = ht.turn_crops(real, phis)
    assert ours.shape == real.shape and ours.dtype == real.dtype
    same = np.mean([np.mean(ours[i] == _opencv_turn(real[i], p)) for i, p in enumerate(phis)])
    assert same > 0.999, same                 # ties of the rounding aside, the same pixels
    np.testing.assert_array_equal(ht.turn_crops(real, np.zeros(5)), real)
    # a (N, 1, H, W) stack keeps its shape
    assert ht.turn_crops(real[:, None], phis).shape == (5, 1, 128, 128)


def test_crop_and_points_turn_together():
    """Three marks drawn where three points fall (40 pixels per unit, rows down) are found,
    after turning crop and points by the same angle, where the turned points fall."""
    pixels = np.array([[84, 55], [39, 35], [67, 99]])            # (col, row) of the marks
    pts = np.column_stack([(pixels[:, 0] - 63.5) / 40, (63.5 - pixels[:, 1]) / 40, [0.1, -0.3, 0.4]])
    values = (-0.2, -0.5, -0.8)
    crop = np.ones((128, 128), np.float32)
    for (x, y, _), v in zip(pts, values):
        col, row = int(round(63.5 + 40 * x)), int(round(63.5 - 40 * y))
        crop[row - 2:row + 3, col - 2:col + 3] = v
    for phi in (0.7, -2.0, 3.0):
        turned = ht.turn_crops(crop[None], [phi])[0]
        moved = ht.turn_points(pts.reshape(1, -1), [phi]).reshape(3, 3)
        # an independent rotation: the matrix [[c, -s], [s, c]] on x, y
        c, s = np.cos(phi), np.sin(phi)
        np.testing.assert_allclose(moved[:, :2], pts[:, :2] @ np.array([[c, s], [-s, c]]), atol=1e-12)
        np.testing.assert_array_equal(moved[:, 2], pts[:, 2])
        for (x, y, _), v in zip(moved, values):
            rows, cols = np.nonzero(turned == np.float32(v))
            assert len(rows) >= 20
            assert abs(cols.mean() - (63.5 + 40 * x)) < 0.6 and abs(rows.mean() - (63.5 - 40 * y)) < 0.6


def test_the_angle_follows_quarter_turns(real):
    """Turning a crop by a quarter turn (exact, np.rot90: counter-clockwise) asks for a quarter
    turn less."""
    phi = ht.hand_angle(real)
    assert np.all(np.abs(phi) > np.radians(5))        # the real hands are not upright
    for k in (1, 2, 3):
        turned = np.rot90(real, k, axes=(1, 2))
        np.testing.assert_allclose(_wrap(ht.hand_angle(turned) - (phi - k * np.pi / 2)), 0,
                                   atol=1e-9)
    # an empty crop is not turned; the crops of a batch do not depend on each other
    assert ht.hand_angle(np.ones((2, 128, 128), np.float32)).tolist() == [0.0, 0.0]
    np.testing.assert_allclose(ht.hand_angle(real[2:4]), phi[2:4], atol=0)


def _drawn_hand(finger_rows_to, arm_rows_to, arm_width=30):
    """A 128 x 128 crop drawn by hand: a palm disk at the centre, three fingers 7 pixels wide
    going up to row ``finger_rows_to``, a forearm ``arm_width`` pixels wide going down to row
    ``arm_rows_to`` and farther away down its length (as an arm leaving through the cube's back)."""
    crop = np.ones((128, 128), np.float32)
    rows, cols = np.mgrid[0:128, 0:128]
    crop[np.hypot(rows - 63.5, cols - 63.5) < 22] = -0.2
    for c in (50, 61, 72):
        crop[finger_rows_to:60, c:c + 7] = -0.3
    left = 64 - arm_width // 2
    arm = np.linspace(0.0, 0.9, arm_rows_to - 80)[:, None]
    crop[80:arm_rows_to, left:left + arm_width] = arm
    return crop


def test_fingers_at_the_border_are_not_taken_for_the_forearm():
    """Fingers reaching the border (runs of 7 pixels) are narrower than a forearm (MIN_RUN, 18):
    with the forearm fading out before the bottom border, the far part of the foreground gives
    the forearm and the hand stays upright, as it does with a forearm on the border; a border run
    counts as a forearm from MIN_RUN pixels wide, not narrower."""
    assert ht.MIN_RUN == 18
    fingers_out = _drawn_hand(finger_rows_to=0, arm_rows_to=112)
    arm_out = _drawn_hand(finger_rows_to=20, arm_rows_to=128)
    for crop in (fingers_out, arm_out):
        assert abs(ht.hand_angle(crop[None])[0]) < np.radians(10)
    unit, found = ht.forearm_direction(np.stack([fingers_out, arm_out]))
    assert found.all() and np.all(unit[:, 1] > 0.9)                     # both point down
    # a forearm narrower than MIN_RUN at the border is not a forearm; one as wide is
    for width, ok in ((ht.MIN_RUN - 2, False), (ht.MIN_RUN, True)):
        crop = _drawn_hand(finger_rows_to=20, arm_rows_to=128, arm_width=width)
        _, _, run_found = ht._longest_border_run(crop[None] < ht.FOREGROUND, ht.BANDS[0])
        assert run_found[0] == ok, width


def test_the_turn_points_labelled_synthetic_hands_up(tmp_path):
    """On synthetic frames of the default world, the labels turned by their crop's angle have
    their fingers up: the direction from the palm centre to the middle finger's base is within
    45 deg of up for nearly every frame (57 of 60 when written; median 13 deg, 40 before)."""
    from deepmodel.tools import make_lmdb
    from deepmodel.data.records.split import LmdbSplit

    root = make_synthetic(tmp_path / "synthetic", 0, 60, seed=5)
    assert make_lmdb.main(["nyu", "--root", str(root), "--out", str(tmp_path / "lmdb"),
                           "--splits", "test", "--quiet"]) == 0
    split = LmdbSplit.of(tmp_path / "lmdb", "nyu", "test")
    with split.open("depth") as depth, split.open("joint") as joint:
        crops = depth.read_all()[1].reshape(-1, 128, 128)
        labels = joint.read_all()[1].reshape(-1, 31, 3)
    up = ht.turn_points(labels, ht.hand_angle(crops))
    v = up[:, 14, :2] - up[:, 24, :2]                 # palm centre -> middle MCP
    off = np.degrees(np.abs(np.arctan2(v[:, 0], v[:, 1])))
    before = np.degrees(np.abs(np.arctan2(*(labels[:, 14, :2] - labels[:, 24, :2]).T)))
    assert np.mean(off < 45) >= 0.9 and np.median(off) < 20, np.sort(off)
    assert np.median(off) < np.median(before)


POINT_NET = """force_backward: true
layer {{ name: "p" type: "Input" top: "points" input_param {{ shape {{ dim: {n} dim: {w} }} }} }}
layer {{ name: "a" type: "Input" top: "turn" input_param {{ shape {{ dim: {n} dim: 1 }} }} }}
layer {{ name: "t" type: "Python" bottom: "points" bottom: "turn" top: "out"
  python_param {{ module: "deepmodel.layers.point_turn_layer" layer: "PointTurnLayer" param_str: '{param}' }} }}
"""


def _point_net(make_net, n=4, w=93, param='{"inverse": true}'):
    return make_net(POINT_NET.format(n=n, w=w, param=param))


def _run_points(net, pts, phi, top_grad=None):
    net.blobs["points"].data[...] = pts
    net.blobs["turn"].data[:, 0] = phi
    net.forward()
    out = net.blobs["out"].data.astype(np.float64)
    if top_grad is None:
        return out
    net.blobs["out"].diff[...] = top_grad
    net.backward()
    return out, net.blobs["points"].diff.astype(np.float64), net.blobs["turn"].diff.copy()


@pytest.mark.parametrize("inverse", [True, False])
def test_point_turn_layer_forward_and_float32_gradient(make_net, inverse):
    rng = np.random.default_rng(3)
    pts, phi, w = rng.normal(size=(4, 93)), rng.uniform(-np.pi, np.pi, 4), rng.normal(size=(4, 93))
    net = _point_net(make_net, param='{"inverse": %s}' % str(inverse).lower())
    out, diff, angle_diff = _run_points(net, pts, phi, w)
    sign = -1.0 if inverse else 1.0
    c, s = np.cos(sign * phi)[:, None], np.sin(sign * phi)[:, None]
    x, y, z = (pts.reshape(4, 31, 3)[..., k] for k in range(3))
    want = np.stack([c * x - s * y, s * x + c * y, z], axis=-1).reshape(4, 93)
    np.testing.assert_allclose(out, want, atol=1e-6)
    num = central_difference(lambda p: (_run_points(net, p, phi) * w).sum(axis=1), pts, 1e-2,
                             per_sample=True)
    assert rel_err(diff, num) < 1e-3
    assert np.all(angle_diff == 0)


def test_point_turn_layer_rejects_bad_input(make_net):
    with pytest.raises(ValueError, match="PointTurnLayer: inverse must be true or false"):
        _point_net(make_net, param='{"inverse": 1}')
    with pytest.raises(ValueError, match="unknown param_str key.*'angle'"):
        _point_net(make_net, param='{"angle": 1}')
    with pytest.raises(ValueError, match=r"PointTurnLayer: bottom\[0\] has shape \(4, 94\); expected \(N, 3K\)"):
        _point_net(make_net, w=94)


TURN_NET = """force_backward: true
layer {{ name: "d" type: "Input" top: "depth" input_param {{ shape {{ {dims} }} }} }}
layer {{ name: "h" type: "Python" bottom: "depth" top: "depth_up" top: "turn"
  python_param {{ module: "deepmodel.layers.hand_turn_layer" layer: "HandTurnLayer" param_str: '{param}' }} }}
layer {{ name: "s" type: "Reduction" bottom: "depth_up" top: "loss" loss_weight: 1 }}
"""


def test_hand_turn_layer_turns_the_batch(make_net, real):
    net = make_net(TURN_NET.format(dims="dim: 5 dim: 1 dim: 128 dim: 128", param=""))
    net.blobs["depth"].data[:, 0] = real
    net.forward()
    phi = net.blobs["turn"].data
    assert phi.shape == (5, 1)
    np.testing.assert_allclose(phi[:, 0], ht.hand_angle(real), atol=1e-6)
    for i in range(5):
        assert np.mean(net.blobs["depth_up"].data[i, 0] == _opencv_turn(real[i], phi[i, 0])) > 0.999
    net.backward()                               # the crops are data: no gradient, and no error
    assert np.all(net.blobs["depth"].diff == 0)
    with pytest.raises(ValueError, match=r"HandTurnLayer: bottom\[0\] has shape \(5, 2, 128, 128\)"):
        make_net(TURN_NET.format(dims="dim: 5 dim: 2 dim: 128 dim: 128", param=""))
    with pytest.raises(ValueError, match="HandTurnLayer: unknown param_str key"):
        make_net(TURN_NET.format(dims="dim: 5 dim: 1 dim: 128 dim: 128", param='{"up": 1}'))


def test_hand_up_deploy_net_turns_keypoints_back(make_net, real, project_root):
    """The committed deploy_hand_up net (random weights, a bias on theta so the pose is not the
    rest pose): conv1 reads the turned crops, and ``joints`` is the model's keypoints of ``theta``
    turned back by ``turn`` - which is also what the tools' depth fit uses (deepmodel.nets.net_io)."""
    import caffe
    from deepmodel.model.hand_model import HandModel
    from deepmodel.nets.net_io import keypoints_of_theta, theta_frame

    caffe.set_random_seed(4)
    text = (project_root / "prototxt" / "deploy_hand_up.prototxt").read_text()
    net = make_net(text)
    net.params["theta"][1].data[...] = np.random.default_rng(4).normal(scale=0.2, size=26)
    net.blobs["depth"].reshape(5, 1, 128, 128)
    net.reshape()
    net.blobs["depth"].data[:, 0] = real
    net.forward()
    phi = net.blobs["turn"].data[:, 0].astype(np.float64)
    np.testing.assert_allclose(phi, ht.hand_angle(real), atol=1e-6)
    m = HandModel.nyu()
    theta = net.blobs["theta"].data.astype(np.float64)
    c, s = np.cos(-phi)[:, None], np.sin(-phi)[:, None]
    k = m.forward(theta).reshape(5, 31, 3)
    want = np.stack([c * k[..., 0] - s * k[..., 1], s * k[..., 0] + c * k[..., 1], k[..., 2]], -1)
    np.testing.assert_allclose(net.blobs["joints"].data, want.reshape(5, 93), atol=2e-5)
    posed, angles = theta_frame({k: b.data for k, b in net.blobs.items()}, real[:, None])
    np.testing.assert_array_equal(posed, net.blobs["depth_up"].data)
    np.testing.assert_allclose(keypoints_of_theta(m, theta, angles), want.reshape(5, 93), atol=1e-12)
    # a net without the turn: the crops themselves, no angles
    plain = make_net((project_root / "prototxt" / "deploy.prototxt").read_text())
    same, none = theta_frame({k: b.data for k, b in plain.blobs.items()}, real[:, None])
    assert same is not None and none is None


def test_tools_take_the_deploy_net_the_weights_belong_to(make_net, project_root, tmp_path):
    """Weights saved through the hand-up net carry its HandTurnLayer: without --model the tools
    take prototxt/deploy_hand_up.prototxt; with the paper's deploy net (whose learned layers are
    the same, so Caffe would load them silently) a one-line error names the net to use; and the
    other way round for paper-net weights (models/real/)."""
    import json

    from data_helpers import assert_one_line_error, run_module
    from deepmodel.nets.net_io import default_model

    net = make_net((project_root / "prototxt" / "deploy_hand_up.prototxt").read_text())
    turned = tmp_path / "hand_up.caffemodel"
    net.save(str(turned))
    shipped = project_root / "models" / "real" / "deepmodel.caffemodel"       # the paper's net
    assert default_model(turned) == str(project_root / "prototxt" / "deploy_hand_up.prototxt")
    assert default_model(shipped) == str(project_root / "prototxt" / "deploy.prototxt")
    assert default_model(project_root / "models" / "default" / "deepmodel.caffemodel") == \
        str(project_root / "prototxt" / "deploy_hand_up.prototxt")              # make train's
    proc = run_module(project_root, "tools/score_real.py", "--weights", turned,
                      "--json", tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "r.json").read_text())["model"].endswith("deploy_hand_up.prototxt")
    proc = run_module(project_root, "tools/score_real.py", "--weights", turned,
                      "--model", "prototxt/deploy.prototxt")
    assert_one_line_error(proc, str(turned), "trained on crops turned hand-up",
                          "--model prototxt/deploy_hand_up.prototxt")
    proc = run_module(project_root, "tools/test_net.py", "--weights", shipped, "--model",
                      "prototxt/deploy_hand_up.prototxt", "--out", tmp_path / "eval")
    assert_one_line_error(proc, "trained on crops as they come", "--model prototxt/deploy.prototxt")
