"""The Python API (python_layers/pipeline/estimator.py): the README's example runs as printed, and
HandPoseEstimator gives what the pipeline and the net give, computed here independently."""
import re
import subprocess
import sys

import numpy as np
import pytest

from deepmodel.data.datasets import nyu
from deepmodel.data.datasets.camera import NYU_CAMERA
from deepmodel.data.hand_crop.crop import crop_depth
from deepmodel.data.hand_crop.locate import locate_hand
from deepmodel.pipeline.estimator import HandPoseEstimator
from deepmodel.plumbing import PROJECT, InputError


def test_readme_example_runs(project_root):
    text = (project_root / "README.md").read_text()
    code = re.search(r"<!-- api-example[^>]*-->\s*```python\n(.*?)```", text, re.S).group(1)
    assert len(code.strip().splitlines()) <= 10
    proc = subprocess.run([sys.executable, "-c", code], cwd=project_root, capture_output=True,
                          text=True, timeout=300, env={"GLOG_minloglevel": "2", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("True nearest (31, 3) [") and len(lines) == 3
    assert lines[1].split()[0] == "nearest" and lines[2].split()[0] == "tracked"


@pytest.fixture(scope="module")
def frame(reference_data):
    return nyu.read_depth(reference_data / "nyu" / "depth_1_0000001.png")


def test_estimate_is_the_net_on_the_crop_at_the_found_centre(frame, make_net):
    import caffe  # noqa: F401

    est = HandPoseEstimator()                    # the shipped real-depth net: the paper's net
    pose = est.estimate(frame)
    assert pose.found and pose.how == "nearest" and pose.cube_mm == 300.0
    center, _ = locate_hand(frame, NYU_CAMERA)
    np.testing.assert_array_equal(pose.center_uvd, center)
    weights = PROJECT / "models" / "real" / "deepmodel.caffemodel"
    net = make_net((PROJECT / "prototxt" / "deploy.prototxt").read_text(), weights=weights)
    net.blobs["depth"].data[0, 0] = crop_depth(frame, center, 300.0, NYU_CAMERA)
    net.forward()
    xyz = net.blobs["joints"].data[0].reshape(31, 3) * 150.0 + NYU_CAMERA.uvd_to_xyz(center)
    np.testing.assert_allclose(pose.keypoints_mm, xyz, atol=1e-3)
    np.testing.assert_allclose(pose.keypoints_uvd, NYU_CAMERA.xyz_to_uvd(xyz), atol=1e-3)
    np.testing.assert_allclose(pose.theta, net.blobs["theta"].data[0], atol=1e-6)
    assert pose.turn_rad == 0.0                  # this net does not turn its crops
    # a net that turns its crops hand-up: its angle is reported
    up = HandPoseEstimator(weights=PROJECT / "models" / "default" / "deepmodel.caffemodel").estimate(frame)
    assert up.found and up.turn_rad != 0.0 and np.isfinite(up.theta).all()
    # the same crop given by hand: the same keypoints
    again = est.estimate_crop(crop_depth(frame, center, 300.0, NYU_CAMERA), NYU_CAMERA.uvd_to_xyz(center))
    assert again.how == "given"
    np.testing.assert_allclose(again.keypoints_mm, pose.keypoints_mm, atol=1e-4)


def test_units_tracking_no_hand_and_bad_input(frame):
    est = HandPoseEstimator(camera="588.03,587.07,320,240", depth_unit=0.125)
    pose = est.estimate((frame.astype(np.float64) * 8).astype(np.uint16))    # 1/8 mm units
    ref = HandPoseEstimator().estimate(frame)
    np.testing.assert_allclose(pose.keypoints_mm, ref.keypoints_mm, atol=1e-3)
    hows = [p.how for p in est.track([frame * 8, frame * 8, np.zeros_like(frame), frame * 8])]
    assert hows == ["nearest", "tracked", "", "nearest"]
    empty = est.estimate(np.zeros((480, 640), np.uint16))
    assert not empty.found and np.isnan(empty.keypoints_mm).all() and "no valid depth" in empty.reason
    with pytest.raises(InputError, match="2-D"):
        est.estimate(np.zeros((4, 480, 640)))
    with pytest.raises(InputError, match="--camera"):
        HandPoseEstimator(camera="1,2,3")
    with pytest.raises(InputError, match="crop"):
        est.estimate_crop(np.zeros((64, 64)), (0, 0, 700))
    with pytest.raises(InputError, match="center_mm"):
        est.estimate_crop(np.zeros((128, 128)), (0, 0, -5))
