"""The learned hand detector and the tracker (data_prep/hand_crop/detect.py) with the shipped weights:
on scenes with a person it finds the hand where the nearest surface does not; where the nearest
surface is the hand (the raw NYU frame) it keeps it; on a sequence it tracks and re-detects."""
import json

import numpy as np
import pytest

from deepmodel.data.datasets import nyu
from deepmodel.data.datasets.camera import ICVL_CAMERA, NYU_CAMERA, Camera
from deepmodel.data.hand_crop.detect import (REFINE_WEIGHTS, WEIGHTS, HandDetector, HandFinder,
                                             _peak, cell_to_pixel, heat_target, input_size,
                                             pixel_to_cell)
from deepmodel.data.hand_crop.locate import HandNotFound, locate_hand
from deepmodel.plumbing import PROJECT

SCENES = 300          # the first 300 of the 2000 scenes the record scores (seed 22)


def test_cell_and_pixel_are_inverse_and_the_target_peaks_at_the_palm():
    for shape, camera in (((480, 640), NYU_CAMERA), ((240, 320), ICVL_CAMERA)):
        size = input_size(camera, shape)
        for u, v in ((0.0, 0.0), (317.4, 201.9), (shape[1] - 1.0, shape[0] - 1.0)):
            np.testing.assert_allclose(cell_to_pixel(*pixel_to_cell(u, v, size, shape), size, shape),
                                       (u, v), atol=1e-9)
        target = heat_target((shape[1] * 0.6, shape[0] * 0.3), camera, shape)
        (ci, cj), peak = _peak(target)
        u, v = cell_to_pixel(ci, cj, size, shape)
        cell_px = 4 * shape[1] / size[1]
        assert peak > 0.8 and abs(u - shape[1] * 0.6) < cell_px and abs(v - shape[0] * 0.3) < cell_px
    # the input is the frame at the detector's focal length: about the same mm per pixel
    assert input_size(NYU_CAMERA, (480, 640)) == (60, 80)
    assert input_size(Camera(476.0, 476.0, 314.0, 243.0), (480, 640)) == (74, 99)


@pytest.fixture(scope="module")
def scenes():
    from deepmodel.tools.train_detect import scenes as render

    return list(render(SCENES, 22, False, "scenes"))


def _found(finder, scenes):
    errors, hows = [], []
    for depth, palm, _ in scenes:
        try:
            center, how = finder(depth)
        except HandNotFound:
            errors.append(np.inf)
            hows.append(None)
            continue
        errors.append(np.linalg.norm(NYU_CAMERA.uvd_to_xyz(center) - palm))
        hows.append(how)
    return np.asarray(errors), hows


@pytest.mark.slow
def test_shipped_detector_finds_the_hand_beside_the_body(scenes):
    """Goal: >= 98 % within 30 mm of the palm on the 2000 scenes (the record); here the first 300:
    at least 96 %, where the nearest surface alone gets under 75 %."""
    kinds = np.array([k for _, _, k in scenes])
    assert np.mean(kinds == 0) > 1 / 3                       # beside the body at its depth
    nearest, _ = _found(HandFinder(NYU_CAMERA, 300.0, detector=None), scenes)
    learned, hows = _found(HandFinder(NYU_CAMERA, 300.0), scenes)
    assert np.mean(nearest <= 30) < 0.75, np.mean(nearest <= 30)
    assert np.mean(learned <= 30) >= 0.96, np.mean(learned <= 30)
    assert np.mean(learned[kinds == 0] <= 30) >= 0.94
    assert {"nearest", "detected"} <= set(hows)              # both ways are used
    # the record of the shipped weights says what the tool measured on all 2000
    record = json.loads(WEIGHTS.with_suffix(".json").read_text())
    assert record["eval_seed"] == 22 and sum(record["eval_scenes"].values()) >= 2000
    assert record["evaluation"]["detector"]["found_pct"] >= 98.0
    assert record["evaluation"]["nearest"]["found_pct"] < 75.0


def test_raw_nyu_frame_keeps_the_nearest_surface(reference_data):
    """Where the hand is the nearest thing the detector agrees and the centre is the localiser's."""
    depth = nyu.read_depth(reference_data / "nyu" / "depth_1_0000001.png")
    center, how = HandFinder(NYU_CAMERA, 300.0)(depth)
    assert how == "nearest"
    np.testing.assert_array_equal(center, locate_hand(depth, NYU_CAMERA)[0])


def _moving_hand(n):
    """``n`` frames of one hand moving 6 mm a frame to the right, a body beside it."""
    from deepmodel.data.synthetic.nyu import PoseSampler
    from deepmodel.data.synthetic.scenes import make_scenes
    from deepmodel.model.hand_model import HandModel

    depth, palm, _ = make_scenes(PoseSampler(HandModel.nyu()), np.random.default_rng(9), 1)
    frames, truths = [], []
    for i in range(n):              # the same scene moved: whole pixels of the frame
        shift = int(round(6.0 * i * NYU_CAMERA.fx / palm[0, 2]))
        moved = np.zeros_like(depth[0])
        moved[:, shift:] = depth[0][:, :640 - shift]
        frames.append(moved)
        uvd = NYU_CAMERA.xyz_to_uvd(palm[0])
        truths.append(NYU_CAMERA.uvd_to_xyz(uvd + [shift, 0, 0]))
    return frames, truths


def test_tracking_a_sequence_and_redetecting_when_lost():
    frames, truths = _moving_hand(8)
    finder = HandFinder(NYU_CAMERA, 300.0, track=True, redetect_every=5)
    hows, errors = [], []
    for depth, truth in zip(frames, truths):
        center, how = finder(depth)
        hows.append(how)
        errors.append(np.linalg.norm(NYU_CAMERA.uvd_to_xyz(center) - truth))
    assert hows[0] != "tracked" and hows[1:5] == ["tracked"] * 4 and hows[5] != "tracked"
    assert hows[6:] == ["tracked"] * 2
    assert max(errors) < 30.0, errors
    # an empty frame: no hand, and the next frame is searched whole, not tracked
    with pytest.raises(HandNotFound):
        finder(np.zeros((480, 640), np.uint16))
    assert finder(frames[0])[1] != "tracked"
    # a frame whose hand has gone (only the wall, beyond the working range) is not tracked
    with pytest.raises(HandNotFound):
        finder(np.full((480, 640), 2500, np.uint16))


def test_detector_files_are_the_shipped_ones():
    assert WEIGHTS.is_file() and REFINE_WEIGHTS.is_file()
    det = HandDetector()
    assert (PROJECT / "prototxt" / "deploy_detect.prototxt").is_file()
    prob, x = det.heat(np.full((480, 640), 900, np.uint16), NYU_CAMERA)
    assert prob.shape == (15, 20) and x.shape == (60, 80)


def test_scenes_have_the_body_where_they_say():
    """make_scenes: the hand stays visible (the depth at the palm's pixel is the hand's, within
    60 mm of the palm centre: in front of it lie at most the fingers); "beside": the body is at
    the hand's depth; the kinds follow the shares."""
    from deepmodel.data.synthetic.nyu import PoseSampler
    from deepmodel.data.synthetic.scenes import KIND_SHARE, KINDS, make_scenes
    from deepmodel.model.hand_model import HandModel

    depth, palm, kind = make_scenes(PoseSampler(HandModel.nyu()), np.random.default_rng(2), 60)
    assert depth.shape == (60, 480, 640) and depth.dtype == np.uint16
    uvd = NYU_CAMERA.xyz_to_uvd(palm)
    at_palm = np.array([np.median(d[int(v) - 2:int(v) + 3, int(u) - 2:int(u) + 3])
                        for d, (u, v, _) in zip(depth, uvd)]).astype(float)
    visible = (at_palm > 0) & (np.abs(at_palm - palm[:, 2]) < 60.0)
    assert visible.mean() > 0.9, at_palm - palm[:, 2]
    # "beside": the torso's front within 60 mm of the palm's depth, 260-420 mm to the side: pixels
    # at the palm's depth (within 80 mm) more than 300 mm to its side, where in front of the body
    # there are none (the body is 150-450 mm behind); the torso may leave the frame
    cols = np.arange(640)[None, :]
    beside = []
    for i in range(len(depth)):
        z = depth[i].astype(float)
        sideways = np.abs((cols - NYU_CAMERA.cx) * z / NYU_CAMERA.fx - palm[i, 0]) > 300.0
        count = int(((z > 0) & (np.abs(z - palm[i, 2]) < 80.0) & sideways).sum())
        if kind[i] == KINDS.index("front"):
            assert count < 1000, (i, count)
        elif kind[i] == KINDS.index("beside"):
            beside.append(count)
    assert np.median(beside) > 5000, beside
    counts = np.bincount(kind, minlength=len(KINDS)) / len(kind)
    assert np.all(np.abs(counts - KIND_SHARE) < 0.2), counts


def test_clutter_set_keeps_its_figures():
    """Rendered hands with a body behind and an object beside (the localiser's clutter set, seed
    102): with the detector the centres stay within the localiser's goals (mean <= 10 mm, 95th
    percentile <= 25 mm) and no worse than the localiser's own."""
    from deepmodel.data.synthetic import nyu as synthetic
    from deepmodel.model.hand_model import HandModel

    rng = np.random.default_rng(102)
    depth, _, xyz, _ = synthetic.make_frames(synthetic.PoseSampler(HandModel.nyu()), rng, 128)
    depth = synthetic.add_clutter(depth, xyz, rng, near_object=0.5)
    finder = HandFinder(NYU_CAMERA, 300.0)
    palm = xyz[:, nyu.PALM_JOINT]
    found = np.array([NYU_CAMERA.uvd_to_xyz(finder(d)[0]) for d in depth])
    alone = np.array([NYU_CAMERA.uvd_to_xyz(locate_hand(d, NYU_CAMERA)[0]) for d in depth])
    err, err_alone = (np.linalg.norm(c - palm, axis=1) for c in (found, alone))
    assert err.mean() <= 10.0 and np.percentile(err, 95) <= 25.0, (err.mean(), np.percentile(err, 95))
    assert err.mean() <= err_alone.mean() + 0.5, (err.mean(), err_alone.mean())


def test_train_detect_tool_small_run(project_root, tmp_path):
    """A short real run: both nets written with a record; --refine-iters 0 keeps the scene refiner
    (bytes and record); --eval-only scores again; bad --out and a missing refiner are one-line
    errors that write nothing."""
    from tests.data_helpers import assert_one_line_error, run_module

    out = tmp_path / "d.caffemodel"
    args = ["tools/train_detect.py", "--frames", "40", "--iters", "5", "--eval-frames", "12",
            "--out", out, "--quiet"]
    proc = run_module(project_root, *args, "--refine-iters", "5")
    assert proc.returncode == 0, proc.stderr
    refiner = tmp_path / "d_refine.caffemodel"
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["iterations"] == 5 and record["training_scenes"] == 40
    assert record["refiner"]["iterations"] == 5 and record["refiner"]["crops"] == 120
    assert sum(record["eval_scenes"].values()) == 12
    assert HandDetector(weights=out, refine_weights=refiner).heat(
        np.full((480, 640), 900, np.uint16), NYU_CAMERA)[0].shape == (15, 20)
    kept = refiner.read_bytes()
    proc = run_module(project_root, *args, "--refine-iters", "0", "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    again = json.loads(out.with_suffix(".json").read_text())
    assert refiner.read_bytes() == kept and again["refiner"]["iterations"] == 5
    assert again["seed"] == 3 and again["refiner"]["command"] == record["command"]
    proc = run_module(project_root, "tools/train_detect.py", "--eval-only", "--eval-frames", "12",
                      "--out", out, "--quiet")
    assert proc.returncode == 0 and "learned detector" in proc.stdout, proc.stderr
    assert json.loads(out.with_suffix(".json").read_text())["evaluation_command"].startswith(
        "tools/train_detect.py --eval-only --out ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.caffemodel", "d.json",
                                                           "d_refine.caffemodel"]
    assert_one_line_error(run_module(project_root, "tools/train_detect.py", "--out",
                                     tmp_path / "w.txt"), "w.txt", ".caffemodel")
    assert_one_line_error(run_module(project_root, "tools/train_detect.py", "--refine-iters", "0",
                                     "--out", tmp_path / "new.caffemodel", "--quiet"),
                          "new_refine.caffemodel", "missing")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.caffemodel", "d.json",
                                                           "d_refine.caffemodel"]
