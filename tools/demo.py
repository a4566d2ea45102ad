#!/usr/bin/env python3
"""Run a trained net on depth images and draw the predicted hand: a 2D overlay and a 3D skeleton.

Inputs (PNG files or folders of PNGs):

* a depth crop the size of the net's input (128x128), 8-bit gray (or 3 equal channels), holding
  normalised depth = gray / 255 * 2 - 1 - like the five real NYU test crops in
  ``data/reference/nyu/test_crops/`` (used when no input is given);
* a raw depth frame: NYU's 640x480 blue/green encoding (depth mm = blue + 256 * green) or a
  16-bit single-channel PNG in the camera's raw units (``--depth-unit`` mm each, default 1), with
  the camera (``--camera``: nyu, icvl, msra, FX,FY,CX,CY or a JSON file; or ``--intrinsics FX FY
  CX CY``) and the cube (``--cube``, mm). The crop centre is ``--center U V D`` (pixels, mm) when
  given, else found without a label by ``deepmodel.data.hand_crop.detect.HandFinder`` (the nearest
  surface, or the learned detector when the body or an object is nearer; printed; a frame with
  no hand in the working range is a one-line error). The frame is cropped with the project's crop
  (deepmodel.data.hand_crop.crop); the skeleton, the centre (cyan) and the crop box (yellow) are drawn on the frame.

For every input it writes ``<name>_overlay.png`` (the crop, 4x enlarged, with the 2D skeleton),
``<name>_3d.png`` (the 3D skeleton over the crop's point cloud), for raw frames also
``<name>_frame.png``; plus ``overview.png`` (all overlays) and ``demo.json`` (per input: the 31
keypoints in normalised units and, when the centre is known, in mm; crop-pixel positions; theta and
the parameters outside their limits when the net has a ``theta`` blob). For a net that turns its
crops hand-up first (``prototxt/deploy_hand_up.prototxt``, what ``make train`` trains), theta poses
the hand in the turned crop and ``turn_rad`` is the crop's angle: the keypoints are the model's
keypoints of theta turned by ``-turn_rad`` about z (x right, y up).

On a crop alone the centre's depth is unknown, so keypoints are placed on the crop orthographically
(column = 64 + 64 x, row = 64 - 64 y, in normalised units); with ``--center`` the exact projection
is used.

The net may be the project's deploy net (fc 26 -> HandModelLayer) or the released network's layout
(fc 47 -> HandModelLayer); only the (N, 93) output blob (``--blob``) is needed.

    tools/demo.py --out results/demo       # the newest trained weights, else models/real/'s
    tools/demo.py frame.png --weights W.caffemodel --out results/demo      # centre detected
    tools/demo.py frame.png --center 277 200 750 --weights W.caffemodel --out results/demo
    tools/demo.py --fit                    # the net's pose fitted to each crop's depth

With ``--fit`` the net's angles (its ``theta`` blob) are fitted to each crop's depth
(:class:`deepmodel.fitting.depth_fit.DepthFitter`, with the crop centre when it is known) and the fitted
hand is drawn and written instead of the net's; ``demo.json`` keeps the net's keypoints too.
"""
if __name__ == "__main__" and not __package__:   # a script outside the venv: say how to enter it
    import _venv_check  # noqa: F401
import os
from argparse import ArgumentDefaultsHelpFormatter
import pathlib
import sys

import numpy as np

os.environ.setdefault("GLOG_minloglevel", "2")

from deepmodel.data.datasets import nyu
from deepmodel.data.datasets.camera import CAMERA_HELP, DEPTH_UNIT_HELP, Camera, parse_camera
from deepmodel.plumbing import (MAX_PLAUSIBLE, ArgumentParser, InputError, OutputSet,
                                atomic_path, check_center, check_outputs, console, finite_float, run,
                                save_figure, write_json)
from deepmodel.data.datasets.frames import png_files
from deepmodel.data.datasets.reference import NYU_TEST_CROPS
from deepmodel.nets.net_io import MODEL_HELP
from deepmodel.nets.weights import SHIPPED_REAL, default_weights
from deepmodel.pipeline.drawing import FINGER_COLOURS, draw_skeleton, frame_image
from deepmodel.runtime.nets import BACKEND_HELP, BACKENDS

DEFAULT_CROPS = NYU_TEST_CROPS
FOUND_BY = {"nearest": "the nearest surface", "detected": "the learned detector, not the nearest "
            "surface"}
SCALE = 4  # enlargement of the crop in the overlay



# ---------------------------------------------------------------------------------------------
# inputs

def find_inputs(paths):
    """Expand folders to their PNGs (sorted by name, numerically when the stems are numbers)."""
    return png_files(paths)


def default_inputs():
    if DEFAULT_CROPS.is_dir():
        return find_inputs([DEFAULT_CROPS])
    raise InputError(f"no input images given (and the default folder {DEFAULT_CROPS} "
                     "does not exist): give depth crop PNGs or raw depth frames")


def unique_names(files):
    """An output name per input: its file stem, made unique (``_2``, ``_3`` ...) when two inputs
    share a stem (e.g. ``a/1.png`` and ``b/1.png``), so no output overwrites another."""
    names, used = [], set()
    for f in files:
        name, k = f.stem, 2
        while name in used:
            name, k = f"{f.stem}_{k}", k + 1
        if name != f.stem:
            print(f"note: {f}: another input is also named {f.stem}; its outputs are named {name}_*",
                  file=sys.stderr)
        used.add(name)
        names.append(name)
    return names


def warn_if_empty(path, crop):
    """A warning when a crop holds no depth reading (all background): the pose drawn is a guess."""
    if np.all(np.asarray(crop) >= 1.0 - 1e-6):
        print(f"warning: {path}: the crop holds no depth reading (all background); the predicted "
              "pose is meaningless", file=sys.stderr)


def read_png(path):
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError(f"{path}: not a readable image")
    return img


def load_input(path, crop_hw, args, camera, finder):
    """One input -> dict with ``crop`` (H, W) float32 in [-1, 1] and, for raw frames, ``depth``
    (mm), ``center`` (3,) uvd (given, or found by ``finder``, a :class:`HandFinder`), ``com``
    (3,) xyz mm."""
    img = read_png(path)
    h, w = img.shape[:2]
    if (h, w) == tuple(crop_hw):
        if img.ndim == 3:
            if img.shape[2] == 4:
                img = img[:, :, :3]
            if not all(np.array_equal(img[:, :, 0], img[:, :, c]) for c in range(1, img.shape[2])):
                raise InputError(f"{path}: a {w}x{h} crop must be gray (its colour channels "
                                 "differ)")
            img = img[:, :, 0]
        if img.dtype != np.uint8:
            raise InputError(f"{path}: a {w}x{h} crop must be 8-bit gray, got {img.dtype}")
        if args.center is not None:
            print(f"note: {path} is a {w}x{h} crop: --center (for raw frames) is not used",
                  file=sys.stderr)
        crop = img.astype(np.float32) / 255.0 * 2.0 - 1.0
        warn_if_empty(path, crop)
        return {"crop": crop}
    if img.ndim == 3 and img.shape[2] >= 3 and img.dtype == np.uint8 and img.any() and all(
            np.array_equal(img[:, :, 0], img[:, :, c]) for c in range(1, 3)):
        raise InputError(f"{path}: a {w}x{h} gray image (equal colour channels) is neither a "
                         f"{crop_hw[1]}x{crop_hw[0]} crop nor an NYU depth frame (blue + 256 x "
                         "green)")
    if img.ndim == 3 and img.dtype == np.uint8 and img.shape[2] >= 2:
        depth = nyu.depth_of_image(img)
        kind = "NYU-encoded (blue + 256 * green)"
    elif img.ndim == 2 and img.dtype == np.uint16:
        # in the camera's raw units (--depth-unit mm each)
        depth = camera.depth_mm(img)
        kind = "16-bit"
    else:
        raise InputError(f"{path}: {w}x{h} {img.dtype} image with {1 if img.ndim == 2 else img.shape[2]} "
                         f"channel(s) is neither a {crop_hw[1]}x{crop_hw[0]} 8-bit crop nor a raw "
                         "depth frame (NYU 8-bit blue/green or 16-bit mm)")
    if camera.size_problem(img.shape):
        print(f"note: {path}: {camera.size_problem(img.shape)}", file=sys.stderr)
    from deepmodel.data.hand_crop.crop import crop_depth

    if args.center is None:
        try:
            finder.reset()
            center, how = finder(depth)
        except ValueError as err:        # HandNotFound is a ValueError
            raise InputError(f"{path}: {kind} depth frame ({w}x{h}), no --center given and no "
                             f"hand found: {err}") from None
        print(f"{path}: detected hand centre u {center[0]:.1f} px, v {center[1]:.1f} px, "
              f"d {center[2]:.1f} mm (cube {args.cube:g} mm; {FOUND_BY[how]})")
        source = "detected"
    else:
        center = np.asarray(args.center, dtype=np.float64)
        source = "given"
        if not np.any(depth):
            raise InputError(f"{path}: {kind} depth frame ({w}x{h}) has no depth reading (all zero)")
        if not (0 <= center[0] < w and 0 <= center[1] < h):
            raise InputError(f"{path}: --center {center[0]:g} {center[1]:g} is outside the "
                             f"{w}x{h} frame")
    if crop_hw[0] != crop_hw[1]:
        raise InputError(f"the net's input is {crop_hw[1]}x{crop_hw[0]}; cropping needs a square")
    try:
        crop = crop_depth(depth, center, args.cube, camera, size=int(crop_hw[0]))
    except ValueError as err:
        raise InputError(f"{path}: {err}") from None
    warn_if_empty(path, crop)
    return {"crop": crop.astype(np.float32), "depth": depth, "center": center,
            "com": camera.uvd_to_xyz(center), "center_source": source}


# ---------------------------------------------------------------------------------------------
# geometry

def ortho_crop_pixels(norm, size):
    """``(31, 3)`` normalised keypoints -> ``(31, 2)`` crop (column, row), orthographic.

    Continuous coordinates, pixel j covering [j, j+1): the crop centre is at ``size / 2``.
    """
    half = size / 2.0
    return np.stack([half + half * norm[:, 0], half - half * norm[:, 1]], axis=-1)


def exact_pixels(norm, item, args, camera, size):
    """Keypoints in mm ``(31, 3)``, image uvd ``(31, 3)`` and crop (column, row) ``(31, 2)``
    (continuous, pixel j covering [j, j+1), as deepmodel.data.hand_crop.crop.crop_pixel_of_uvd) for an input
    with a known centre."""
    from deepmodel.data.hand_crop.crop import crop_pixel_of_uvd

    from deepmodel.data.records.split import to_mm

    xyz = to_mm(norm[None], item["com"][None], np.array([args.cube]))[0]
    uvd = camera.xyz_to_uvd(xyz)
    crop_px = crop_pixel_of_uvd(uvd, item["center"], args.cube, camera, size=size)
    return xyz, uvd, crop_px


# ---------------------------------------------------------------------------------------------
# drawing

def _save_png_rgb(path, rgb):
    import cv2

    ok, png = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]))
    if not ok:
        raise InputError(f"{path}: cannot encode the image")
    with atomic_path(path) as tmp:      # written by Python: a failed write is an OSError
        tmp.write_bytes(png.tobytes())


def crop_to_rgb(crop, scale):
    """Normalised crop (near = -1 bright, far = +1 black) -> enlarged RGB uint8."""
    import cv2

    gray = np.clip((1.0 - crop) / 2.0, 0, 1)
    gray = (255 * gray ** 0.8).astype(np.uint8)
    big = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    return np.repeat(big[:, :, None], 3, axis=2)


def draw_3d(path, norm, crop, edges, finger, title):
    """3D skeleton (normalised units) over the crop's point cloud (orthographic back-projection)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = crop.shape[0]
    rows, cols = np.nonzero(crop < 0.98)
    if len(rows) > 2500:
        pick = np.random.default_rng(0).choice(len(rows), 2500, replace=False)
        rows, cols = rows[pick], cols[pick]
    half = size / 2.0
    cx, cy, cz = (cols + 0.5 - half) / half, (half - rows - 0.5) / half, crop[rows, cols]
    fig = plt.figure(figsize=(6.4, 6.0))
    ax = fig.add_subplot(projection="3d")
    ax.scatter(cx, cz, cy, s=1, c="0.6", alpha=0.35, depthshade=False)
    for a, b in edges:
        c = np.array(FINGER_COLOURS[finger[b]]) / 255.0
        if np.all(c > 0.9):
            c = np.array([0.3, 0.3, 0.3])
        ax.plot([norm[a, 0], norm[b, 0]], [norm[a, 2], norm[b, 2]], [norm[a, 1], norm[b, 1]],
                color=c, lw=2.5)
    ax.scatter(norm[:, 0], norm[:, 2], norm[:, 1], s=14, c="k", depthshade=False)
    ax.set_xlabel("x (right)")
    ax.set_ylabel("z (depth)")
    ax.set_zlabel("y (up)")
    lim = max(1.0, float(np.abs(norm).max()) * 1.05)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_zlim(-lim, lim)
    ax.set_box_aspect((1, 1, 1))
    ax.view_init(elev=15, azim=-70)
    ax.set_title(title, fontsize=10)
    save_figure(fig, path, dpi=90)
    plt.close(fig)


def draw_frame(path, depth, uvd, center, edges, finger, cube, camera):
    """The skeleton on the full raw frame with the crop box and centre
    (:func:`deepmodel.pipeline.drawing.frame_image`), written to ``path``."""
    _save_png_rgb(path, frame_image(depth, uvd, center, cube, camera, edges, finger))


def draw_overview(path, overlays, names):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(overlays)
    cols = min(n, 5)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, name in zip(axes.flat, overlays, names):
        ax.imshow(img)
        ax.set_title(name, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=90)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------

def build_parser():
    p = ArgumentParser(
        description="Run a trained hand-pose net on depth crops or raw depth frames and draw the "
                    "predicted skeleton (2D overlay, 3D) into PNGs.",
        formatter_class=ArgumentDefaultsHelpFormatter)
    p.add_argument("inputs", nargs="*", help="crop PNGs, raw depth frames or folders (default: "
                   "the five real NYU test crops in data/reference/nyu/test_crops)")
    p.add_argument("--weights", default=None, help=".caffemodel (default: the newest trained "
                   "weights in the parent of --out, e.g. results/snapshots; with nothing trained, "
                   "the weights shipped in models/real/ (make train-real's net, for real "
                   "depth) for the default --model)")
    p.add_argument("--model", default=None, help=MODEL_HELP + "; input: the depth crop, output "
                   "blob --blob of shape (N, 93)")
    p.add_argument("--backend", choices=BACKENDS, default="caffe", help=BACKEND_HELP)
    p.add_argument("--blob", default="joints", help="output blob with the 31 keypoints (N, 93)")
    p.add_argument("--theta-blob", default="theta", help="blob with the predicted parameters, "
                   "(N, 26) or the released (N, 47); optional")
    p.add_argument("--center", nargs=3, type=finite_float(-MAX_PLAUSIBLE, MAX_PLAUSIBLE),
                   metavar=("U", "V", "D"), default=None,
                   help="crop centre of raw frames: pixels and depth in mm (default: detected "
                   "without a label, deepmodel.data.hand_crop.locate)")
    p.add_argument("--camera", default="nyu", help="camera of raw frames: " + CAMERA_HELP)
    p.add_argument("--depth-unit", default=None, metavar="MM", help=DEPTH_UNIT_HELP)
    p.add_argument("--intrinsics", nargs=4, type=finite_float(-MAX_PLAUSIBLE, MAX_PLAUSIBLE),
                   metavar=("FX", "FY", "CX", "CY"),
                   default=None, help="camera intrinsics of raw frames (override --camera)")
    p.add_argument("--cube", type=finite_float(10, 2000), default=nyu.CUBE_MM,
                   help="crop cube edge in mm (10..2000)")
    p.add_argument("--fit", action="store_true", help="fit the net's pose to each crop's depth "
                   "(python_layers/fitting/depth_fit.py) and draw the fitted hand")
    p.add_argument("--out", default="results/demo", help="output folder")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.center is not None:
        check_center(args.center)
    camera = parse_camera(args.camera, args.depth_unit)
    if args.intrinsics is not None:
        fx, fy, cx, cy = args.intrinsics
        if fx <= 0 or fy <= 0:
            raise InputError(f"--intrinsics: focal lengths must be positive, got {fx}, {fy}")
        if not (0 < cx <= 10000 and 0 < cy <= 10000):
            raise InputError(f"--intrinsics: the principal point {cx:g}, {cy:g} must be inside "
                             "an image of at most 20000 pixels (positive)")
        camera = Camera(fx=fx, fy=fy, cx=cx, cy=cy, depth_unit_mm=camera.depth_unit_mm)
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise InputError(f"--out {args.out}: is a file, not a folder")
    files = find_inputs(args.inputs) if args.inputs else default_inputs()
    if args.weights:
        weights = pathlib.Path(args.weights)
    else:
        weights, where = default_weights(pathlib.Path(args.out).parent, args.model,
                                        shipped=SHIPPED_REAL)
        print(f"weights: {where}: {weights}")
    out = pathlib.Path(args.out)
    written = [out / "overview.png", out / "demo.json"] + [
        out / f"{name}{kind}" for name in unique_names(files)
        for kind in ("_overlay.png", "_3d.png", "_frame.png")]
    check_outputs([("--out", p) for p in written],
                  [(f"the input {f}", f) for f in files]
                  + [("--weights", weights), ("--model", args.model)])

    from deepmodel.data.evaluation import metrics
    from deepmodel.fitting.depth_fit import NOMINAL_DEPTH_MM, DepthFitter
    from deepmodel.model.hand_model import HandModel
    from deepmodel.nets.net_io import default_model, fit_outputs
    from deepmodel.pipeline.frames import FramePipeline

    if args.backend == "caffe":
        args.model = args.model or default_model(str(weights))
    pipe = FramePipeline(args.model, weights, camera, args.cube, args.blob, fit=args.fit,
                         theta_blob=args.theta_blob, backend=args.backend)
    args.model = pipe.model_path
    items = [load_input(f, (128, 128), args, camera, pipe.finder) for f in files]
    batch = np.stack([it["crop"] for it in items])[:, None]
    outs = pipe.run_crops(batch)
    joints = outs[args.blob].reshape(len(items), -1).astype(np.float64)
    turn = outs["turn"].reshape(-1).astype(np.float64) if "turn" in outs else None
    theta = None
    if args.theta_blob in outs and args.theta_blob != args.blob:
        theta = outs[args.theta_blob].reshape(len(items), -1).astype(np.float64)

    for what, values in (("joints", joints), ("angles", theta)):
        bad = np.zeros(0, bool) if values is None else ~np.all(np.isfinite(values), axis=1)
        if bad.any():
            raise InputError(f"{weights}: the net predicts non-finite {what} for "
                             f"{files[int(np.flatnonzero(bad)[0])]} ({int(bad.sum())} of "
                             f"{len(files)} inputs; diverged training?)")

    model = HandModel.nyu()
    net_joints = None
    if args.fit:
        center = np.array([it["com"] if "com" in it else (0.0, 0.0, NOMINAL_DEPTH_MM) for it in items])
        keypoints, fit = fit_outputs(DepthFitter(model, cube_mm=args.cube), batch, outs, args.cube,
                                     center, args.theta_blob)
        net_joints, joints, theta = joints, keypoints, fit["theta"]
    free_ids = np.asarray(model.free_ids)
    outside = None
    if theta is not None and theta.shape[1] in (len(free_ids), 47):
        free = metrics.free_columns(theta, free_ids)
        outside = (free < model.lower) | (free > model.upper)

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with OutputSet(out / "demo.json") as outs:       # demo.json last, beside its files
        written = write_outputs(args, outs, out, files, items, joints, theta, outside, weights,
                                camera, 128, model, net_joints, turn)
    print(f"weights {weights}; wrote {len(written) + 2} files to {out}")
    return 0


def write_outputs(args, outs, out, files, items, joints, theta, outside, weights, camera, size,
                  model, net_joints=None, turn=None):
    """Every output of the demo, each written to its staged name of ``outs``; returns the
    per-input files. ``net_joints``: with ``--fit``, the net's own keypoints (``joints`` are
    then the fitted ones). ``turn``: for a net that turns its crops hand-up, the angles (N,)."""
    edges = [tuple(int(v) for v in e) for e in model.edges]
    finger = model.finger_of_keypoint
    free_ids = np.asarray(model.free_ids)
    report = {"weights": str(weights), "model": str(args.model), "fit_to_depth": bool(args.fit),
              "inputs": []}
    overlays, names, written = [], [], []
    for i, (f, item, name) in enumerate(zip(files, items, unique_names(files))):
        norm = joints[i].reshape(-1, 3)
        entry = {"input": str(f), "name": name, "keypoints_normalised": norm.tolist()}
        if net_joints is not None:
            entry["net_keypoints_normalised"] = net_joints[i].reshape(-1, 3).tolist()
        if "center" in item:
            xyz, uvd, crop_px = exact_pixels(norm, item, args, camera, size)
            entry.update({"center_uvd": item["center"].tolist(), "cube_mm": args.cube,
                          "center_source": item["center_source"],
                          "keypoints_xyz_mm": xyz.tolist(), "keypoints_uvd": uvd.tolist()})
        else:
            crop_px = ortho_crop_pixels(norm, size)
        entry["keypoints_crop_px"] = crop_px.tolist()
        if turn is not None:
            entry["turn_rad"] = float(turn[i])
        if theta is not None:
            entry["theta"] = theta[i].tolist()
            if outside is not None:
                entry["params_out_of_limits"] = [int(free_ids[j]) for j in np.flatnonzero(outside[i])]
        rgb = crop_to_rgb(item["crop"], SCALE)
        draw_skeleton(rgb, crop_px, edges, finger, SCALE)
        p_overlay = out / f"{name}_overlay.png"
        _save_png_rgb(outs.stage(p_overlay), rgb)
        p3d = out / f"{name}_3d.png"
        what = "fitted to the depth" if args.fit else "predicted"
        draw_3d(outs.stage(p3d), norm, item["crop"], edges, finger, f"{name}: {what} skeleton (normalised units)")
        written += [p_overlay, p3d]
        if "center" in item:
            p_frame = out / f"{name}_frame.png"
            draw_frame(outs.stage(p_frame), item["depth"], uvd, item["center"], edges, finger, args.cube, camera)
            written.append(p_frame)
        entry["files"] = [str(p) for p in written[-(3 if "center" in item else 2):]]
        report["inputs"].append(entry)
        overlays.append(rgb)
        names.append(name)
        extra = ""
        if outside is not None:
            extra = f", {len(entry['params_out_of_limits'])} parameter(s) outside their limits"
        print(f"{f}: {p_overlay.name}, {p3d.name}{extra}")
    draw_overview(outs.stage(out / "overview.png"), overlays, names)
    write_json(outs.stage(out / "demo.json"), report)
    return written


cli = console(main)   # the `deepmodel-demo` command (pyproject.toml)

if __name__ == "__main__":
    run(main)
