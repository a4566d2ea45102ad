"""tools/run_frames.py: raw frames -> keypoints with no label; per-frame failures counted."""
import shutil

import numpy as np

from deepmodel.data.datasets import nyu
from deepmodel.data.datasets.camera import NYU_CAMERA
from deepmodel.data.hand_crop.crop import crop_depth
from deepmodel.data.datasets.labels import NYU14_KEYPOINTS, load_uvd_file
from deepmodel.data.hand_crop.locate import locate_hand
from tests.data_helpers import assert_one_line_error, nyu_uvd_to_xyz, run_module


def _weights(make_net, project_root, tmp_path):
    import caffe

    caffe.set_random_seed(5)
    net = make_net((project_root / "prototxt" / "deploy.prototxt").read_text())
    path = tmp_path / "w.caffemodel"
    net.save(str(path))
    return path


def test_folder_of_frames(make_net, project_root, reference_data, tmp_path):
    weights = _weights(make_net, project_root, tmp_path)
    frames = tmp_path / "frames"
    frames.mkdir()
    shutil.copy(reference_data / "nyu" / "depth_1_0000001.png", frames / "a.png")
    (frames / "b.png").write_bytes(nyu.encode_depth(np.zeros((480, 640), np.uint16)))
    (frames / "c.png").write_text("not an image")
    shutil.copy(reference_data / "nyu" / "depth_1_0000001.png", frames / "d.png")
    out = tmp_path / "out"
    proc = run_module(project_root, "tools/run_frames.py", frames, "--weights", weights, "--out", out,
                      "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "2 of 4 frames" in proc.stdout and "2 frames failed" in proc.stdout
    assert [l.split("/")[-1] for l in (out / "frames.txt").read_text().split()] == \
        ["a.png", "b.png", "c.png", "d.png"]
    fail = (out / "failures.txt").read_text()
    assert "b.png: no hand found: no valid depth reading" in fail and "c.png: not a readable image" in fail
    kp = np.loadtxt(out / "keypoints_mm.txt")
    assert kp.shape == (4, 93) and np.isnan(kp[1:3]).all() and np.isfinite(kp[[0, 3]]).all()
    np.testing.assert_array_equal(kp[0], kp[3])
    # independently: the same net on the crop at locate_hand's centre, keypoints * 150 + centre
    depth = nyu.read_depth(frames / "a.png")
    center, cube = locate_hand(depth, NYU_CAMERA)
    net = make_net((project_root / "prototxt" / "deploy.prototxt").read_text(), weights=weights)
    net.blobs["depth"].data[0, 0] = crop_depth(depth, center, cube, NYU_CAMERA)
    net.forward()
    expect = net.blobs["joints"].data[0].reshape(31, 3) * 150.0 + nyu_uvd_to_xyz(center)
    np.testing.assert_allclose(kp[0].reshape(31, 3), expect, atol=2e-3)
    uvd = np.loadtxt(out / "keypoints_uvd.txt")[0].reshape(31, 3)
    np.testing.assert_allclose(nyu_uvd_to_xyz(uvd), expect, atol=5e-3)
    kit, bad = load_uvd_file(out / "predictions_nyu14_uvd.txt", skip_bad_rows=True)
    assert bad == [2, 3] and kit.shape == (2, 14, 3)
    np.testing.assert_allclose(kit[0], uvd[list(NYU14_KEYPOINTS)], atol=1e-3)
    c = np.loadtxt(out / "centers.txt")
    np.testing.assert_allclose(c[0], [*center, 300.0], atol=1e-3)


def test_bad_input(make_net, project_root, tmp_path):
    weights = _weights(make_net, project_root, tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_module(project_root, "tools/run_frames.py", empty, "--weights", weights, "--out", tmp_path / "o")
    assert_one_line_error(proc, "empty", "no .png files")
    frame = tmp_path / "zero.png"
    frame.write_bytes(nyu.encode_depth(np.zeros((480, 640), np.uint16)))
    proc = run_module(project_root, "tools/run_frames.py", frame, "--weights", weights, "--out", tmp_path / "o",
                      "--quiet")
    assert_one_line_error(proc, "no pose from any of the 1 frames", "zero.png")
    assert not (tmp_path / "o").exists()
    proc = run_module(project_root, "tools/run_frames.py", frame, "--weights", tmp_path / "none.caffemodel",
                      "--out", tmp_path / "o")
    assert_one_line_error(proc, "none.caffemodel")


def test_fit_writes_the_fitted_hand(project_root, reference_data, tmp_path, model):
    """--fit with the shipped net on the raw NYU frame: the written keypoints are the model's
    forward pass of the net's angles fitted to the crop at the found centre (checked against
    DepthFitter run here on the same crop and centre), not the net's own keypoints."""
    import caffe

    from deepmodel.fitting.depth_fit import DepthFitter

    weights = project_root / "models" / "default" / "deepmodel.caffemodel"
    out = tmp_path / "out"
    proc = run_module(project_root, "tools/run_frames.py", reference_data / "nyu" / "depth_1_0000001.png",
                      "--weights", weights, "--out", out, "--quiet", "--fit")
    assert proc.returncode == 0, proc.stderr
    assert "model layer + fit" in proc.stdout
    kp = np.loadtxt(out / "keypoints_mm.txt").reshape(31, 3)
    depth = nyu.read_depth(reference_data / "nyu" / "depth_1_0000001.png")
    center, cube = locate_hand(depth, NYU_CAMERA)
    from deepmodel.nets.net_io import default_model

    net = caffe.Net(default_model(weights), str(weights), caffe.TEST)   # the hand-up net
    net.blobs["depth"].reshape(1, 1, 128, 128)
    net.reshape()
    net.blobs["depth"].data[0, 0] = crop_depth(depth, center, cube, NYU_CAMERA)
    net.forward()
    com = nyu_uvd_to_xyz(center)
    own = net.blobs["joints"].data[0].reshape(31, 3) * 150.0 + com
    # the shipped net turns its crop hand-up: the fit runs in the turned crop, and its keypoints
    # are turned back by the angle (x, y by -turn about z)
    assert "turn" in net.blobs and "depth_up" in net.blobs
    fitted = DepthFitter(model).fit(net.blobs["depth_up"].data[:, 0],
                                    net.blobs["theta"].data.astype(float), com[None], cube)["theta"]
    a = -float(net.blobs["turn"].data[0, 0])
    back = np.array([[np.cos(a), np.sin(a), 0], [-np.sin(a), np.cos(a), 0], [0, 0, 1]])
    np.testing.assert_allclose(kp, model.forward(fitted)[0] @ back * 150.0 + com, atol=2e-3)
    assert np.abs(kp - own).max() > 5.0
