"""tools/demo.py through its CLI with real Caffe nets: geometry of the overlays checked against
independent computations, the released 47-output layout, bad input."""
import json
import math
import os
import subprocess
import sys

import cv2
import numpy as np
from data_helpers import assert_one_line_error, reference_lines

PY = sys.executable
FX, FY, CX, CY = 588.03, 587.07, 320.0, 240.0
# pixels whose crop values the probe net copies into its first three outputs (row, column)
PROBE_PIXELS = ((10, 20), (64, 64), (100, 5))


def run_demo(project_root, *args, cwd=None):
    env = dict(os.environ, GLOG_minloglevel="2")
    return subprocess.run([PY, str(project_root / "tools" / "demo.py"), *map(str, args)],
                          cwd=cwd or project_root, capture_output=True, text=True, env=env,
                          timeout=300)


def probe_net(tmp_path, bias93, theta_width=None, theta_bias=None):
    """Deploy-like net: joints = bias93, except joints[0:3] = the crop at PROBE_PIXELS;
    optional fc 'theta' (constant theta_bias)."""
    import caffe

    text = """
    layer { name: "depth" type: "Input" top: "depth"
            input_param { shape { dim: 1 dim: 1 dim: 128 dim: 128 } } }
    layer { name: "fcj" type: "InnerProduct" bottom: "depth" top: "joints"
            inner_product_param { num_output: 93 } }
    """
    if theta_width:
        text += f"""
    layer {{ name: "fct" type: "InnerProduct" bottom: "depth" top: "theta"
            inner_product_param {{ num_output: {theta_width} }} }}
    """
    model = tmp_path / "probe.prototxt"
    model.write_text(text)
    net = caffe.Net(str(model), caffe.TEST)
    w = np.zeros((93, 128 * 128), np.float32)
    b = np.asarray(bias93, np.float32).copy()
    for k, (r, c) in enumerate(PROBE_PIXELS):
        w[k, r * 128 + c] = 1.0
        b[k] = 0.0
    net.params["fcj"][0].data[...] = w
    net.params["fcj"][1].data[...] = b
    if theta_width:
        net.params["fct"][0].data[...] = 0
        net.params["fct"][1].data[...] = theta_bias
    weights = tmp_path / "probe.caffemodel"
    net.save(str(weights))
    return model, weights


def label_row(reference_data, i=0):
    line = reference_lines(reference_data / "nyu" / "nyu_test_groundtruth_label.txt.xz")[i]
    return np.array(line.split(), float).reshape(14, 3)


def uvd_to_xyz(uvd):
    u, v, d = uvd[..., 0], uvd[..., 1], uvd[..., 2]
    return np.stack([(u - CX) * d / FX, (CY - v) * d / FY, d], -1)


def test_raw_frame_in_another_depth_unit(reference_data, project_root, tmp_path):
    """The raw NYU frame as a 16-bit PNG in 0.125 mm units, given --depth-unit 0.125: the net sees
    the crop of the frame in mm (probe pixels), and the keypoints are those of the NYU frame."""
    labels = label_row(reference_data)
    center = labels[13]
    model, weights = probe_net(tmp_path, np.zeros(93))
    frame = reference_data / "nyu" / "depth_1_0000001.png"
    img = cv2.imread(str(frame), cv2.IMREAD_UNCHANGED).astype(np.int64)
    raw = tmp_path / "raw.png"
    assert cv2.imwrite(str(raw), ((img[..., 0] + 256 * img[..., 1]) * 8).astype(np.uint16))
    got = {}
    for name, path, unit in (("nyu", frame, []), ("raw", raw, ["--depth-unit", "0.125"])):
        out = tmp_path / name
        proc = run_demo(project_root, path, "--center", *center, "--weights", weights,
                        "--model", model, "--out", out, *unit)
        assert proc.returncode == 0, proc.stderr
        got[name] = json.loads((out / "demo.json").read_text())["inputs"][0]["keypoints_normalised"]
    np.testing.assert_allclose(got["raw"], got["nyu"], atol=1e-6)
    assert len(set(np.round(got["nyu"][0], 4))) > 1          # the probes see different depths


def test_raw_frame_geometry(reference_data, project_root, tmp_path):
    """Raw NYU frame + centre: the crop the net sees is data_prep's, keypoints go back to the labels."""
    from deepmodel.data.datasets.camera import NYU_CAMERA
    from deepmodel.data.hand_crop.crop import crop_depth

    labels = label_row(reference_data)
    center = labels[13]                              # the palm label as crop centre
    com = uvd_to_xyz(center)
    nyu14 = [0, 3, 5, 8, 10, 13, 15, 18, 30, 29, 28, 25, 26, 24]
    norm = np.tile((com - com) / 150.0, (31, 1))
    norm[nyu14] = (uvd_to_xyz(labels) - com) / 150.0
    model, weights = probe_net(tmp_path, norm.ravel())
    frame = reference_data / "nyu" / "depth_1_0000001.png"
    out = tmp_path / "out"
    proc = run_demo(project_root, frame, "--center", *center, "--weights", weights,
                    "--model", model, "--out", out)
    assert proc.returncode == 0, proc.stderr
    entry = json.loads((out / "demo.json").read_text())["inputs"][0]
    kp = np.array(entry["keypoints_normalised"])

    # the crop given to the net: data_prep's crop of the decoded frame (blue + 256 * green)
    img = cv2.imread(str(frame), cv2.IMREAD_UNCHANGED).astype(np.int64)
    depth = img[..., 0] + 256 * img[..., 1]
    crop = crop_depth(depth, center, 300.0, NYU_CAMERA)
    np.testing.assert_allclose(kp[0], [crop[r, c] for r, c in PROBE_PIXELS], atol=1e-6)
    assert len(set(kp[0].round(4))) > 1                 # the probes see different depths

    # keypoints 1..30 are the bias: back in mm and uvd they are the labels
    uvd = np.array(entry["keypoints_uvd"])
    np.testing.assert_allclose(uvd[nyu14[1:]], labels[1:], atol=1e-3)
    # crop pixels by the published crop geometry (datasets.md), computed here from the spec
    d = center[2]
    x0, x1 = math.floor(center[0] - 150 * FX / d), math.floor(center[0] + 150 * FX / d)
    y0, y1 = math.floor(center[1] - 150 * FY / d), math.floor(center[1] + 150 * FY / d)
    wb, hb = x1 - x0, y1 - y0
    rw, rh = (128, hb * 128 // wb) if wb > hb else (wb * 128 // hb, 128)
    ox, oy = 64 - rw // 2, 64 - rh // 2
    px = np.array(entry["keypoints_crop_px"])
    np.testing.assert_allclose(px[nyu14[1:], 0], ox + (labels[1:, 0] + 0.5 - x0) * rw / wb,
                               atol=1e-6)
    np.testing.assert_allclose(px[nyu14[1:], 1], oy + (labels[1:, 1] + 0.5 - y0) * rh / hb,
                               atol=1e-6)
    for name in ("depth_1_0000001_overlay.png", "depth_1_0000001_3d.png",
                 "depth_1_0000001_frame.png", "overview.png"):
        assert (out / name).exists(), name
    assert cv2.imread(str(out / "depth_1_0000001_overlay.png")).shape == (512, 512, 3)
    assert cv2.imread(str(out / "depth_1_0000001_frame.png")).shape == (480, 640, 3)


def test_raw_frame_detected_centre(reference_data, project_root, tmp_path):
    """Raw NYU frame without --center: the detected centre is printed, used for the crop and the
    keypoints, reported in demo.json, and drawn on the frame with the crop box."""
    from deepmodel.data.datasets.camera import NYU_CAMERA
    from deepmodel.data.hand_crop.crop import crop_depth
    from deepmodel.data.hand_crop.locate import locate_hand

    frame = reference_data / "nyu" / "depth_1_0000001.png"
    img = cv2.imread(str(frame), cv2.IMREAD_UNCHANGED).astype(np.int64)
    depth = img[..., 0] + 256 * img[..., 1]
    center, cube = locate_hand(depth, NYU_CAMERA)
    norm = np.zeros((31, 3))
    norm[5] = [0.4, -0.3, 0.1]                       # one keypoint away from the centre
    model, weights = probe_net(tmp_path, norm.ravel())
    out = tmp_path / "out"
    proc = run_demo(project_root, frame, "--weights", weights, "--model", model, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert (f"detected hand centre u {center[0]:.1f} px, v {center[1]:.1f} px, "
            f"d {center[2]:.1f} mm (cube 300 mm; the nearest surface)") in proc.stdout
    entry = json.loads((out / "demo.json").read_text())["inputs"][0]
    assert entry["center_source"] == "detected" and entry["cube_mm"] == 300.0
    np.testing.assert_allclose(entry["center_uvd"], center, atol=1e-9)
    # the crop the net saw is the crop at the detected centre
    crop = crop_depth(depth, center, cube, NYU_CAMERA)
    kp = np.array(entry["keypoints_normalised"])
    np.testing.assert_allclose(kp[0], [crop[r, c] for r, c in PROBE_PIXELS], atol=1e-6)
    # keypoint 5 in mm: centre + norm * 150 (the centre's 3D point by the dataset formulas)
    com = uvd_to_xyz(np.asarray(center))
    np.testing.assert_allclose(entry["keypoints_xyz_mm"][5], com + norm[5] * 150.0, atol=1e-6)
    # the frame: the crop box (yellow) on its edges, computed here from the crop geometry
    rgb = cv2.imread(str(out / "depth_1_0000001_frame.png"))[:, :, ::-1]
    d = center[2]
    x0, x1 = math.floor(center[0] - 150 * FX / d), math.floor(center[0] + 150 * FX / d)
    y0, y1 = math.floor(center[1] - 150 * FY / d), math.floor(center[1] + 150 * FY / d)
    yellow = (rgb[..., 0] > 200) & (rgb[..., 1] > 180) & (rgb[..., 2] < 60)
    ym = (y0 + y1) // 2 + 12            # a row off the centre's, which the probe's skeleton crosses
    assert yellow[ym, x0] and yellow[ym, x1 - 1] and not yellow[ym, x0 + 3]
    assert yellow[y0, (x0 + x1) // 2 + 20] and yellow[y1 - 1, (x0 + x1) // 2 + 20]
    # the centre (cyan disc) at the detected pixel
    cyan = (rgb[..., 0] < 40) & (rgb[..., 1] > 230) & (rgb[..., 2] > 230)
    rows, cols = np.nonzero(cyan[y0:y1, x0:x1])
    assert 9 <= len(rows) <= 40                      # a disc of radius 3 px
    assert abs(np.median(cols) + x0 - center[0]) <= 1 and abs(np.median(rows) + y0 - center[1]) <= 1
    # --center still wins over detection
    given = center + (5.0, -4.0, 10.0)
    proc = run_demo(project_root, frame, "--center", *given, "--weights", weights, "--model",
                    model, "--out", tmp_path / "out2")
    assert proc.returncode == 0 and "detected hand centre" not in proc.stdout, proc.stdout
    entry = json.loads((tmp_path / "out2" / "demo.json").read_text())["inputs"][0]
    assert entry["center_source"] == "given"
    np.testing.assert_allclose(entry["center_uvd"], given)


def test_crops_default_and_orthographic_placement(reference_data, project_root, tmp_path):
    """No inputs: the five real crops; the crop is gray/255*2-1; keypoints placed 64 + 64 (x, -y)."""
    rng = np.random.default_rng(1)
    norm = rng.uniform(-0.8, 0.8, (31, 3))
    model, weights = probe_net(tmp_path, norm.ravel())
    out = tmp_path / "out"
    proc = run_demo(project_root, "--weights", weights, "--model", model, "--out", out)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "demo.json").read_text())
    names = [e["name"] for e in report["inputs"]]
    assert names == ["0", "772", "1150", "1350", "1739"]
    for e in report["inputs"]:
        gray = cv2.imread(str(reference_data / "nyu" / "test_crops" / f"{e['name']}.png"),
                          cv2.IMREAD_GRAYSCALE).astype(np.float64)
        kp = np.array(e["keypoints_normalised"])
        np.testing.assert_allclose(kp[0], [gray[r, c] / 255 * 2 - 1 for r, c in PROBE_PIXELS],
                                   atol=1e-6)
        np.testing.assert_allclose(kp[1:], norm[1:], atol=1e-6)
        px = np.array(e["keypoints_crop_px"])
        np.testing.assert_allclose(px[1:, 0], 64 + 64 * norm[1:, 0], atol=1e-4)
        np.testing.assert_allclose(px[1:, 1], 64 - 64 * norm[1:, 1], atol=1e-4)
        assert "keypoints_xyz_mm" not in e
        assert (out / f"{e['name']}_overlay.png").exists() and (out / f"{e['name']}_3d.png").exists()


def test_overlay_draws_at_the_keypoints(project_root, tmp_path):
    """A flat crop and one keypoint far from the others: its colour appears around its pixel only."""
    norm = np.zeros((31, 3))
    norm[:, 0] = -0.5                                 # everything at column 32, row 64 ...
    norm[15] = [0.5, 0.5, 0.0]                        # ... except the index tip at (96, 32)
    model, weights = probe_net(tmp_path, norm.ravel())
    crop = tmp_path / "flat.png"
    cv2.imwrite(str(crop), np.full((128, 128), 255, np.uint8))     # all far plane: black
    out = tmp_path / "out"
    proc = run_demo(project_root, crop, "--weights", weights, "--model", model, "--out", out)
    assert proc.returncode == 0, proc.stderr
    img = cv2.imread(str(out / "flat_overlay.png"))[:, :, ::-1]    # RGB, 4x
    blue = (img[:, :, 2] > 200) & (img[:, :, 0] < 100)            # the index colour (50,120,240)
    rows, cols = np.nonzero(blue)
    assert blue[32 * 4, 96 * 4]
    # the index tip's disc is there; blue elsewhere only along the index finger's edges
    assert abs(np.median(rows[cols > 90 * 4]) - 32 * 4) < 8


def test_released_47_output_layout(project_root, tmp_path):
    """The released layout: fc 47 -> HandModelLayer -> joints. Nothing assumes 26: the keypoints
    are the model's for the 26 free entries, out-of-limits ids are reported over the free ids."""
    import caffe
    from deepmodel.model.hand_model import HandModel

    m = HandModel.nyu()
    free = list(m.free_ids)
    theta47 = np.zeros(47)
    theta47[6:15] = 50.0                            # fixed ids: ignored
    theta47[free] = np.random.default_rng(2).uniform(-0.05, 0.05, 26)
    theta47[31] = m.upper[free.index(31)] + 0.2
    theta47[44] = m.lower[free.index(44)] - 0.2
    theta47[3] = 0.3                                # a global rotation
    model = tmp_path / "released.prototxt"
    model.write_text("""
    layer { name: "data" type: "Input" top: "data"
            input_param { shape { dim: 1 dim: 1 dim: 128 dim: 128 } } }
    layer { name: "fc3" type: "InnerProduct" bottom: "data" top: "theta"
            inner_product_param { num_output: 47 } }
    layer { name: "hand" type: "Python" bottom: "theta" top: "joints"
            python_param { module: "deepmodel.layers.hand_model_layer" layer: "HandModelLayer"
                           param_str: '{"model": "nyu31"}' } }
    """)
    net = caffe.Net(str(model), caffe.TEST)
    net.params["fc3"][0].data[...] = 0
    net.params["fc3"][1].data[...] = theta47
    weights = tmp_path / "released.caffemodel"
    net.save(str(weights))
    crops = []
    for k in range(3):
        crops.append(tmp_path / f"c{k}.png")
        cv2.imwrite(str(crops[-1]), np.full((128, 128), 100 + 20 * k, np.uint8))
    proc = run_demo(project_root, *crops, "--weights", weights, "--model", model,
                    "--out", tmp_path / "o")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "o" / "demo.json").read_text())
    expect = m.forward(theta47[free][None].astype(np.float32).astype(np.float64))[0]
    t32 = theta47.astype(np.float32)
    out_ids = [i for j, i in enumerate(free) if t32[i] < m.lower[j] or t32[i] > m.upper[j]]
    assert 31 in out_ids and 44 in out_ids
    for e in report["inputs"]:
        assert len(e["theta"]) == 47
        assert e["params_out_of_limits"] == out_ids
        np.testing.assert_allclose(e["keypoints_normalised"], expect, atol=1e-5)
        np.testing.assert_allclose(np.array(e["keypoints_crop_px"])[:, 0],
                                   64 + 64 * expect[:, 0], atol=1e-3)


def test_bad_inputs_are_one_line_errors(reference_data, project_root, tmp_path):
    model, weights = probe_net(tmp_path, np.zeros(93))
    common = ("--weights", weights, "--model", model, "--out", tmp_path / "o")
    frame = reference_data / "nyu" / "depth_1_0000001.png"
    # raw frames without --center: the centre is detected; frames with no hand are one-line errors
    from deepmodel.data.datasets.nyu import encode_depth
    empty = tmp_path / "empty.png"
    empty.write_bytes(encode_depth(np.zeros((480, 640), np.uint16)))
    assert_one_line_error(run_demo(project_root, empty, *common), "empty.png", "no hand found",
                          "no valid depth reading")
    far = tmp_path / "far.png"
    cv2.imwrite(str(far), np.full((480, 640), 4000, np.uint16))      # 16-bit mm, all at 4 m
    assert_one_line_error(run_demo(project_root, far, *common), "far.png",
                          "no depth reading inside the working range")
    odd = tmp_path / "odd.png"
    cv2.imwrite(str(odd), np.zeros((100, 90), np.uint8))
    assert_one_line_error(run_demo(project_root, odd, *common), "odd.png", "90x100")
    colour = tmp_path / "colour.png"
    c = np.zeros((128, 128, 3), np.uint8)
    c[..., 2] = 200
    cv2.imwrite(str(colour), c)
    assert_one_line_error(run_demo(project_root, colour, *common), "colour.png", "gray")
    assert_one_line_error(run_demo(project_root, tmp_path / "none.png", *common), "none.png")
    assert_one_line_error(run_demo(project_root, odd, "--weights", tmp_path / "w.caffemodel",
                                   "--model", model), "w.caffemodel", "no such weights")
    # no --weights and nothing trained under the results folder
    proc = run_demo(project_root, odd, "--model", model, "--out", tmp_path / "res" / "demo",
                    cwd=tmp_path)
    assert_one_line_error(proc, "no trained weights", "--weights")
    assert_one_line_error(run_demo(project_root, frame, "--center", 300, 200, 0, *common),
                          "--center")
    assert not (tmp_path / "o").exists()


def test_without_weights_the_shipped_real_depth_net(reference_data, project_root, tmp_path):
    """No --weights and nothing trained under the results folder: the net shipped for real depth
    (models/real/), named in the output; its keypoints are those of caffe.Net with those weights."""
    import caffe

    from deepmodel.nets.weights import SHIPPED_REAL

    crop = reference_data / "nyu" / "test_crops" / "1739.png"
    proc = run_demo(project_root, crop, "--out", tmp_path / "res" / "demo", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "shipped" in proc.stdout and str(SHIPPED_REAL) in proc.stdout
    e = json.loads((tmp_path / "res" / "demo" / "demo.json").read_text())["inputs"][0]
    net = caffe.Net(str(project_root / "prototxt" / "deploy.prototxt"), str(SHIPPED_REAL), caffe.TEST)
    net.blobs["depth"].data[0, 0] = cv2.imread(str(crop), cv2.IMREAD_GRAYSCALE) / 255.0 * 2.0 - 1.0
    net.forward()
    np.testing.assert_allclose(e["keypoints_normalised"], net.blobs["joints"].data.reshape(31, 3),
                               atol=1e-5)


def test_project_deploy_net(reference_data, project_root, tmp_path):
    """The default --model (prototxt/deploy.prototxt) with random weights on a real crop."""
    import caffe

    net = caffe.Net(str(project_root / "prototxt" / "deploy.prototxt"), caffe.TEST)
    weights = tmp_path / "random.caffemodel"
    net.save(str(weights))
    crop = reference_data / "nyu" / "test_crops" / "772.png"
    proc = run_demo(project_root, crop, "--weights", weights, "--out", tmp_path / "o")
    assert proc.returncode == 0, proc.stderr
    e = json.loads((tmp_path / "o" / "demo.json").read_text())["inputs"][0]
    assert len(e["theta"]) == 26 and np.array(e["keypoints_normalised"]).shape == (31, 3)
    assert (tmp_path / "o" / "772_overlay.png").exists()


def test_intrinsics_option_sets_the_camera(reference_data, project_root, tmp_path):
    """--intrinsics FX FY CX CY is the camera the crop and the keypoints use (not --camera's)."""
    from deepmodel.data.datasets.camera import Camera

    frame = reference_data / "nyu" / "depth_1_0000001.png"
    norm = np.zeros((31, 3))
    norm[5] = [0.4, -0.3, 0.1]
    model, weights = probe_net(tmp_path, norm.ravel())
    cam = Camera(500.0, 510.0, 300.0, 250.0)
    out = tmp_path / "out"
    proc = run_demo(project_root, frame, "--center", 277, 200, 750, "--intrinsics", 500, 510, 300,
                    250, "--weights", weights, "--model", model, "--out", out)
    assert proc.returncode == 0, proc.stderr
    entry = json.loads((out / "demo.json").read_text())["inputs"][0]
    com = cam.uvd_to_xyz(np.array([277.0, 200.0, 750.0]))
    np.testing.assert_allclose(entry["keypoints_xyz_mm"][5], com + norm[5] * 150.0, atol=1e-6)
    np.testing.assert_allclose(entry["keypoints_uvd"][5], cam.xyz_to_uvd(com + norm[5] * 150.0),
                               atol=1e-6)


def test_backend_onnx_draws_what_caffe_draws(project_root, tmp_path):
    """The shipped real-depth net on the five real crops, Caffe and ONNX Runtime: the same
    keypoints (to 1e-5 units) and angles in demo.json."""
    got = {}
    for backend in ("caffe", "onnx"):
        out = tmp_path / backend
        proc = run_demo(project_root, "--backend", backend, "--out", out)
        assert proc.returncode == 0, proc.stderr
        got[backend] = json.loads((out / "demo.json").read_text())["inputs"]
    assert len(got["caffe"]) == 5
    for a, b in zip(got["caffe"], got["onnx"]):
        np.testing.assert_allclose(a["keypoints_normalised"], b["keypoints_normalised"], atol=1e-5)
        np.testing.assert_allclose(a["theta"], b["theta"], atol=1e-5)
