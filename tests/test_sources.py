"""Frame sources: a RealSense recording plays through tools/run_frames.py exactly as the same frames
given as PNGs with the camera spelled out; the recording carries its camera; bad recordings and
options are one-line errors. Needs the optional extra pyrealsense2 (`make test` installs it)."""
import json

import cv2
import numpy as np
import pytest

from deepmodel.data.datasets.camera import Camera
from deepmodel.data.datasets.sources import open_frames
from tests.data_helpers import assert_one_line_error, run_module

rs = pytest.importorskip("pyrealsense2", reason="the RealSense extra is not installed: "
                         "pip install -e '.[realsense]' (make test does it)")

# a RealSense-like camera: not a dataset's, 1/8 mm depth units
CAMERA = Camera(fx=476.0, fy=476.5, cx=314.0, cy=243.0, width=640, height=480, depth_unit_mm=0.125)
N_FRAMES = 32


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """32 synthetic frames through CAMERA: a recording, the same raw frames as 16-bit PNGs, the
    camera as JSON, and the true palm centres (mm)."""
    from deepmodel.data.datasets import nyu
    from deepmodel.data.datasets.realsense import write_recording
    from deepmodel.data.synthetic.nyu import PoseSampler, make_frames
    from deepmodel.model.hand_model import HandModel

    folder = tmp_path_factory.mktemp("recorded")
    depth, _, xyz, _ = make_frames(PoseSampler(HandModel.nyu()), np.random.default_rng(4), N_FRAMES,
                                   camera=CAMERA)
    raw = np.clip(np.rint(depth / CAMERA.depth_unit_mm), 0, 65535).astype(np.uint16)
    (folder / "png").mkdir()
    for i, frame in enumerate(raw):
        cv2.imwrite(str(folder / "png" / f"{i:03d}.png"), frame)
    assert write_recording(folder / "hands.db3", raw, CAMERA) == N_FRAMES
    (folder / "camera.json").write_text(json.dumps(
        {"fx": CAMERA.fx, "fy": CAMERA.fy, "cx": CAMERA.cx, "cy": CAMERA.cy, "width": 640,
         "height": 480, "depth_unit_mm": CAMERA.depth_unit_mm}))
    return folder, raw, xyz[:, nyu.PALM_JOINT]


def test_recording_carries_its_camera_and_every_frame(recorded):
    folder, raw, _ = recorded
    with open_frames([folder / "hands.db3"]) as source:
        assert source.camera == CAMERA                       # intrinsics and depth unit, exactly
        frames = list(source)
    assert [name for name, _ in frames] == [f"hands.db3#{i}" for i in range(N_FRAMES)]
    for (_, depth), r in zip(frames, raw):
        np.testing.assert_array_equal(depth, r.astype(np.float32) * np.float32(0.125))


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_recording_gives_the_keypoints_of_the_pngs(recorded, project_root):
    folder, _, palm = recorded
    weights = project_root / "models" / "real" / "deepmodel.caffemodel"
    a = run_module(project_root, "tools/run_frames.py", folder / "hands.db3", "--weights", weights,
                   "--out", folder / "from_recording", "--quiet")
    assert a.returncode == 0, a.stderr
    assert "tracking" in a.stdout                            # a recording is a sequence
    b = run_module(project_root, "tools/run_frames.py", folder / "png", "--camera",
                   folder / "camera.json", "--track", "on", "--weights", weights, "--out",
                   folder / "from_pngs", "--quiet")
    assert b.returncode == 0, b.stderr
    ra, rb = _jsonl(folder / "from_recording" / "frames.jsonl"), _jsonl(folder / "from_pngs" / "frames.jsonl")
    assert len(ra) == len(rb) == N_FRAMES and all(r["found"] for r in ra)
    for x, y in zip(ra, rb):
        assert x["how"] == y["how"]
        np.testing.assert_allclose(x["keypoints_mm"], y["keypoints_mm"], rtol=0, atol=1e-6)
        np.testing.assert_allclose(x["center_uvd"], y["center_uvd"], rtol=0, atol=1e-6)
    # and they are the hands that were recorded: crop centres near the true palm centres
    centres = CAMERA.uvd_to_xyz(np.array([r["center_uvd"] for r in ra]))
    err = np.linalg.norm(centres - palm, axis=1)
    assert np.median(err) < 15.0 and np.mean(err < 30.0) > 0.9, err
    # the text files agree with the JSON lines
    kp = np.loadtxt(folder / "from_recording" / "keypoints_mm.txt").reshape(N_FRAMES, 31, 3)
    np.testing.assert_allclose(kp, [r["keypoints_mm"] for r in ra], atol=5e-4)
    assert not (folder / "from_recording" / "predictions_nyu14_uvd.txt").exists()   # not NYU's camera


def _color_only_recording(path):
    """A recording whose one stream is colour (a camera recorded without depth)."""
    device = rs.software_device()
    sensor = device.add_sensor("Color")
    intr = rs.intrinsics()
    intr.width, intr.height, intr.fx, intr.fy, intr.ppx, intr.ppy = 64, 48, 50.0, 50.0, 32.0, 24.0
    intr.model, intr.coeffs = rs.distortion.none, [0.0] * 5
    spec = rs.video_stream()
    spec.type, spec.index, spec.uid = rs.stream.color, 0, 1
    spec.width, spec.height, spec.fps, spec.bpp, spec.fmt = 64, 48, 30, 3, rs.format.rgb8
    spec.intrinsics = intr
    profile = sensor.add_video_stream(spec).as_video_stream_profile()
    recorder = rs.recorder(str(path), device)
    queue = rs.frame_queue(4)
    sensor.open(profile)
    sensor.start(queue)
    for i in range(3):
        f = rs.software_video_frame()
        f.pixels, f.stride, f.bpp = np.zeros((48, 64, 3), np.uint8), 64 * 3, 3
        f.timestamp, f.frame_number = i * 33.3, i
        f.domain, f.profile = rs.timestamp_domain.hardware_clock, profile
        sensor.on_video_frame(f)
        queue.wait_for_frame(5000)
    sensor.stop()
    sensor.close()
    del recorder


def test_bad_recordings_and_options(recorded, project_root, tmp_path):
    folder, _, _ = recorded
    weights = project_root / "models" / "real" / "deepmodel.caffemodel"

    def run_frames(*args):
        return run_module(project_root, "tools/run_frames.py", *args, "--weights", weights,
                          "--out", tmp_path / "o", "--quiet")

    color = tmp_path / "color.db3"
    _color_only_recording(color)
    assert_one_line_error(run_frames(color), "color.db3", "no depth stream", "Color")
    broken = tmp_path / "broken.db3"
    broken.write_bytes((folder / "hands.db3").read_bytes()[:3000])
    assert_one_line_error(run_frames(broken), "broken.db3", "cannot play it")
    assert_one_line_error(run_frames(folder / "hands.db3", "--camera", "nyu"),
                          "--camera nyu", "gives its own camera")
    assert_one_line_error(run_frames(folder / "hands.db3", folder / "png"), "give a recording alone")
    assert_one_line_error(run_frames(tmp_path / "missing.db3"), "missing.db3", "no such recording")
    assert_one_line_error(run_frames("--live", folder / "hands.db3"), "--live takes no input")
    assert_one_line_error(run_frames("--live"), "--live", "no RealSense camera is connected")
    assert_one_line_error(run_frames(), "no input")
    assert not (tmp_path / "o").exists()
