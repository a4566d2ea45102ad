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
    assert_one_line_error(proc, "empty", "no .png or .npy files")
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


def test_another_depth_unit_and_the_camera_given_three_ways(make_net, project_root, reference_data,
                                                           tmp_path):
    """The raw NYU frame stored as a sensor with 0.125 mm units would store it (16-bit PNG and
    .npy of depth x 8): with that unit and NYU's intrinsics given as numbers or as a JSON file, the
    keypoints in mm are those of the frame as NYU encodes it; the kit's file is written only for
    NYU's own camera. Without the unit the depths leave the working range: one line per frame."""
    import json

    weights = _weights(make_net, project_root, tmp_path)
    depth = nyu.read_depth(reference_data / "nyu" / "depth_1_0000001.png")
    assert depth.max() * 8 < 65536
    raw = (depth.astype(np.uint32) * 8).astype(np.uint16)
    frames = tmp_path / "frames"
    frames.mkdir()
    import cv2

    assert cv2.imwrite(str(frames / "1.png"), raw)
    np.save(frames / "2.npy", raw.astype(np.float32))
    intrinsics = f"{NYU_CAMERA.fx},{NYU_CAMERA.fy},{NYU_CAMERA.cx},{NYU_CAMERA.cy}"
    spec = tmp_path / "camera.json"
    spec.write_text(json.dumps({"fx": NYU_CAMERA.fx, "fy": NYU_CAMERA.fy, "cx": NYU_CAMERA.cx,
                                "cy": NYU_CAMERA.cy, "width": 640, "height": 480,
                                "depth_unit_mm": 0.125}))
    ref = tmp_path / "ref"
    proc = run_module(project_root, "tools/run_frames.py", reference_data / "nyu" / "depth_1_0000001.png",
                      "--weights", weights, "--out", ref, "--quiet")
    assert proc.returncode == 0, proc.stderr
    want = np.loadtxt(ref / "keypoints_mm.txt")
    for name, options in (("numbers", ["--camera", intrinsics, "--depth-unit", "0.125"]),
                          ("json", ["--camera", spec])):
        out = tmp_path / name
        proc = run_module(project_root, "tools/run_frames.py", frames, "--weights", weights,
                          "--out", out, "--quiet", *options)
        assert proc.returncode == 0, proc.stderr
        kp = np.loadtxt(out / "keypoints_mm.txt")
        assert kp.shape == (2, 93)
        np.testing.assert_allclose(kp, np.stack([want, want]), atol=1e-3)
        assert not (out / "predictions_nyu14_uvd.txt").exists()
    proc = run_module(project_root, "tools/run_frames.py", frames, "--weights", weights,
                      "--out", tmp_path / "unit1", "--quiet", "--camera", intrinsics)
    assert_one_line_error(proc, "no pose from any of the 2 frames", "is the depth unit right?")
    assert not (tmp_path / "unit1").exists()


def test_a_frame_of_another_size_than_the_camera_is_a_failure(make_net, project_root,
                                                              reference_data, tmp_path):
    weights = _weights(make_net, project_root, tmp_path)
    frames = tmp_path / "frames"
    frames.mkdir()
    shutil.copy(reference_data / "nyu" / "depth_1_0000001.png", frames / "a.png")
    depth = nyu.read_depth(reference_data / "nyu" / "depth_1_0000001.png")
    np.save(frames / "b.npy", depth[::2, ::2].astype(np.float32))        # 320x240
    out = tmp_path / "out"
    proc = run_module(project_root, "tools/run_frames.py", frames, "--weights", weights, "--out", out,
                      "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "1 of 2 frames" in proc.stdout
    assert "b.npy: 320x240 pixels, the camera's frames are 640x480" in (out / "failures.txt").read_text()


def test_bad_camera_options_are_one_line_errors(make_net, project_root, reference_data, tmp_path):
    import json

    weights = _weights(make_net, project_root, tmp_path)
    frame = reference_data / "nyu" / "depth_1_0000001.png"
    cases = [(["--camera", "kinect9"], "expected a name (nyu, icvl, msra)"),
             (["--camera", "500,500,320"], "expected a name"),
             (["--camera", "500,-500,320,240"], "fy"),
             (["--camera", "500,nan,320,240"], "fy"),
             (["--camera", "nyu", "--depth-unit", "0"], "--depth-unit"),
             (["--camera", "nyu", "--depth-unit", "inf"], "--depth-unit"),
             (["--camera", str(tmp_path / "none.json")], "no such file")]
    specs = {"missing.json": ({"fx": 1.0, "fy": 1.0, "cx": 1.0}, "no cy"),
             "nan.json": ({"fx": 1.0, "fy": 1.0, "cx": 1.0, "cy": "nan"}, "cy"),
             "half.json": ({"fx": 1.0, "fy": 1.0, "cx": 1.0, "cy": 1.0, "width": 640}, "both width and height"),
             "typo.json": ({"fx": 1.0, "fy": 1.0, "cx": 1.0, "cy": 1.0, "depth_unit": 1}, "unknown key 'depth_unit'"),
             "list.json": ([1, 2, 3, 4], "a JSON object")}
    for name, (spec, why) in specs.items():
        (tmp_path / name).write_text(json.dumps(spec))
        cases.append((["--camera", str(tmp_path / name)], why))
    (tmp_path / "broken.json").write_text("{fx: 1")
    cases.append((["--camera", str(tmp_path / "broken.json")], "not JSON"))
    for options, why in cases:
        out = tmp_path / "out"
        proc = run_module(project_root, "tools/run_frames.py", frame, "--weights", weights, "--out", out,
                          "--quiet", *options)
        assert_one_line_error(proc, why)
        assert not out.exists(), options


def test_the_same_hands_through_another_camera(project_root, tmp_path, model):
    """Six rendered hands (known keypoints, mm) seen by NYU's camera and by one with other
    intrinsics (fx = fy = 476, principal point (314, 243)) storing 1/8 mm units: through the
    shipped net, with --camera and --depth-unit, both give keypoints near the truth and near each
    other (the crop is the same cube in mm whatever the focal length)."""
    import cv2

    from deepmodel.data.datasets.camera import Camera
    from deepmodel.data.synthetic.nyu import PoseSampler, render_depth

    other = Camera(fx=476.0, fy=476.0, cx=314.0, cy=243.0, width=640, height=480)
    rng = np.random.default_rng(3)
    sampler = PoseSampler(model)
    theta = sampler.sample(rng, 6)
    com = NYU_CAMERA.uvd_to_xyz(np.stack([rng.uniform(260, 380, 6), rng.uniform(200, 280, 6),
                                          rng.uniform(550, 750, 6)], 1))
    truth = com[:, None] + model.mm_per_unit * model.forward(theta)
    weights = project_root / "models" / "default" / "deepmodel.caffemodel"
    got = {}
    for name, camera, unit, option in (("nyu", NYU_CAMERA, 1.0, "nyu"),
                                       ("other", other, 0.125, "476,476,314,243")):
        frames = tmp_path / name
        frames.mkdir()
        depth = render_depth(sampler.body, truth, com, np.random.default_rng(4), camera)
        for i, d in enumerate(depth):
            assert cv2.imwrite(str(frames / f"{i}.png"), (d.astype(np.float64) / unit).astype(np.uint16))
        out = tmp_path / f"out_{name}"
        proc = run_module(project_root, "tools/run_frames.py", frames, "--weights", weights, "--out", out,
                          "--quiet", "--camera", option, "--depth-unit", unit)
        assert proc.returncode == 0, proc.stderr
        got[name] = np.loadtxt(out / "keypoints_mm.txt").reshape(6, 31, 3)
    err = {k: np.linalg.norm(v - truth, axis=2).mean(axis=1) for k, v in got.items()}
    assert err["nyu"].mean() < 20.0 and err["other"].mean() < 20.0, err  # measured 13.1, 13.5 mm
    assert np.linalg.norm(got["nyu"] - got["other"], axis=2).mean(axis=1).max() < 10.0   # 2-6 mm


def test_sequence_tracking_video_and_json_lines(project_root, reference_data, tmp_path):
    """A folder taken as a sequence (--track on): the first frame searched whole, the next ones
    tracked; a failed frame in between is a JSON line with its error and the frame after it is
    searched whole again; --video draws every frame (mp4, or a folder of PNGs)."""
    import cv2
    import json

    frames = tmp_path / "seq"
    frames.mkdir()
    for name in ("1.png", "2.png", "4.png", "5.png"):
        shutil.copy(reference_data / "nyu" / "depth_1_0000001.png", frames / name)
    (frames / "3.png").write_bytes(nyu.encode_depth(np.zeros((480, 640), np.uint16)))
    weights = project_root / "models" / "real" / "deepmodel.caffemodel"
    out = tmp_path / "out"
    proc = run_module(project_root, "tools/run_frames.py", frames, "--weights", weights, "--out", out,
                      "--track", "on", "--video", out / "video.mp4", "--quiet")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(l) for l in (out / "frames.jsonl").read_text().splitlines()]
    assert [l.get("how") for l in lines] == ["nearest", "tracked", None, "nearest", "tracked"]
    assert "no hand found" in lines[2]["error"] and not lines[2]["found"]
    kp = np.loadtxt(out / "keypoints_mm.txt")
    np.testing.assert_allclose(kp[0], np.ravel(lines[0]["keypoints_mm"]), atol=5e-4)
    # tracking the same frame stays on the hand (the scene refiner's centre, near the localiser's)
    moved = nyu_uvd_to_xyz(np.array(lines[1]["center_uvd"])) - nyu_uvd_to_xyz(np.array(lines[0]["center_uvd"]))
    assert np.linalg.norm(moved) < 25.0
    # --smooth A: a tracked frame's keypoints are A x the previous frame's + (1 - A) x its own
    proc = run_module(project_root, "tools/run_frames.py", frames, "--weights", weights, "--out",
                      tmp_path / "smooth", "--track", "on", "--smooth", "0.75", "--quiet")
    assert proc.returncode == 0, proc.stderr
    smooth = [json.loads(l) for l in (tmp_path / "smooth" / "frames.jsonl").read_text().splitlines()]
    raw = [np.array(l.get("keypoints_mm", np.nan)) for l in lines]
    sm = [np.array(l.get("keypoints_mm", np.nan)) for l in smooth]
    np.testing.assert_allclose(sm[0], raw[0], atol=1e-9)                # searched: as it is
    np.testing.assert_allclose(sm[1], 0.75 * raw[0] + 0.25 * raw[1], atol=1e-9)
    np.testing.assert_allclose(sm[3], raw[3], atol=1e-9)                # after a failure
    np.testing.assert_allclose(sm[4], 0.75 * raw[3] + 0.25 * raw[4], atol=1e-9)
    video = cv2.VideoCapture(str(out / "video.mp4"))
    shapes = []
    while True:
        ok, img = video.read()
        if not ok:
            break
        shapes.append(img.shape)
    assert shapes == [(480, 640 + 480, 3)] * 5
    # a folder of PNGs; an existing folder that holds other files is refused before any work
    proc = run_module(project_root, "tools/run_frames.py", frames, "--weights", weights, "--out", out,
                      "--video", out / "png_frames", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (out / "png_frames").iterdir()) == \
        [f"frame_{i:06d}.png" for i in range(5)]
    before = (out / "frames.jsonl").read_bytes()
    (out / "dir.mp4").mkdir()
    for bad, needle in ((out, "not only the frame_*.png"), (frames, "would replace the input"),
                        (out / "v.gif", "give a name ending"), (out / "dir.mp4", "is a folder")):
        proc = run_module(project_root, "tools/run_frames.py", frames, "--weights", weights,
                          "--out", out, "--video", bad, "--quiet")
        assert_one_line_error(proc, "--video", needle)
    assert (out / "frames.jsonl").read_bytes() == before and len(list(frames.iterdir())) == 5
    # frames named like a previous video's, given as the input: never replaced by the video
    drawn = sorted((out / "png_frames").iterdir())
    proc = run_module(project_root, "tools/run_frames.py", out / "png_frames", "--weights", weights,
                      "--out", tmp_path / "again", "--video", out / "png_frames", "--quiet")
    assert_one_line_error(proc, "--video", "would replace the input")
    assert sorted((out / "png_frames").iterdir()) == drawn
