"""shape_calibration: the keypoints are affine in the bone lengths; a known hand shape is found."""
import json

import numpy as np
import pytest

from deepmodel.model.hand_model import HandModel
from deepmodel.fitting.shape_calibration import BoneBasis, calibrate, solve_bones, with_bones


@pytest.fixture(scope="module")
def definition(project_root):
    return json.loads((project_root / "python_layers" / "model" / "nyu31.json").read_text())


def random_poses(model, n, rng, spread=0.5):
    """``(n, 26)`` poses inside the limits: angles a fraction of the way to a random bound."""
    theta = np.zeros((n, 26))
    lo, hi = np.asarray(model.lower), np.asarray(model.upper)
    theta[:, 6:] = rng.uniform(spread * lo[6:], spread * hi[6:], (n, 20))
    theta[:, 3:6] = rng.normal(0, 0.4, (n, 3))
    theta[:, 0:3] = rng.normal(0, 0.1, (n, 3))
    return theta


def test_basis_reproduces_the_forward_pass_for_any_bones(definition):
    rng = np.random.default_rng(3)
    model = HandModel(definition)
    theta = random_poses(model, 6, rng)
    bones = np.asarray(definition["bone_lengths"]) * rng.uniform(0.5, 1.5, 30)
    p0, basis = BoneBasis(definition, np.arange(31))(theta)
    direct = HandModel(with_bones(definition, bones)).forward(theta)
    np.testing.assert_allclose(p0 + basis @ bones, direct, atol=1e-12)


def test_solve_bones_recovers_exact_bones_for_known_poses(definition):
    rng = np.random.default_rng(4)
    truth = np.asarray(definition["bone_lengths"]) * rng.uniform(0.8, 1.2, 30)
    true_model = HandModel(with_bones(definition, truth))
    theta = random_poses(true_model, 40, rng)
    keypoints = np.arange(31)
    scale = rng.uniform(100, 160, 40)
    offset = rng.normal(0, 50, (40, 3)) + [0, 0, 600]
    labels = true_model.forward(theta) * scale[:, None, None] + offset[:, None, :]
    basis = BoneBasis(definition, keypoints)
    got = solve_bones(basis, theta, scale, offset, labels, definition["bone_lengths"], ridge=1e-6)
    np.testing.assert_allclose(got, truth, atol=1e-7)


def test_calibration_finds_a_known_shape_from_poses_it_does_not_know(definition):
    """Labels of 16 keypoints rendered from a hand with other bone lengths, at unknown poses and
    scales: the calibrated hand fits them far better than the starting one, and the bones that the
    labels constrain come out near the truth."""
    rng = np.random.default_rng(5)
    start = np.asarray(definition["bone_lengths"])
    truth = start * rng.uniform(0.8, 1.25, 30)
    true_model = HandModel(with_bones(definition, truth))
    keypoints = np.array([24, 27, 28, 30, 19, 17, 15, 14, 12, 10, 9, 7, 5, 4, 2, 0])
    n = 150
    theta = random_poses(true_model, n, rng, spread=0.4)
    offset = np.tile([0.0, 0.0, 600.0], (n, 1))
    labels = true_model.forward(theta)[:, keypoints] * 125.0 + offset[:, None, :]
    res = calibrate(definition, keypoints, labels, offset, np.full(n, 125.0), rounds=8,
                    unit_mm=125.0, log=lambda *a: None)
    assert res["history"][0] > 2.0                        # the NYU bones do not fit this hand
    assert res["error_mm"].mean() < 0.35 * res["history"][0]
    assert np.median(res["scale"]) == pytest.approx(125.0)
    # a finger chain that the labels pin down: the index finger MCP -> 2nd PIP -> tip lengths,
    # compared as distances on the rest pose (bones between unlabelled points may trade length)
    rest = np.zeros((1, 26))
    def seg(model, a, b):
        p = model.forward(rest)[0]
        return np.linalg.norm(p[a] - p[b])
    cal = HandModel(with_bones(definition, res["bones"]))
    for a, b in ((19, 17), (17, 15), (14, 12), (12, 10)):
        assert seg(cal, a, b) == pytest.approx(seg(true_model, a, b), rel=0.08)
