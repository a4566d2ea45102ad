#!/usr/bin/env python3
"""Hand pose from raw depth frames with no label: detection, crop, net, model layer, one frame at a time.

    tools/run_frames.py FOLDER --weights results/deepmodel.caffemodel --out results/frames
    tools/run_frames.py a.png b.png --weights W --dataset icvl --out results/icvl_frames
    tools/run_frames.py FOLDER --weights W --camera 476,476,314,243 --depth-unit 0.125 --out O

For every frame (a folder's ``*.png`` and ``*.npy`` in name order, or the files given): read the
depth (an NYU 8-bit PNG, blue + 256 * green, in mm; a 16-bit PNG or a 2-D ``.npy`` in the
camera's raw units, ``--depth-unit`` mm each), with the camera's intrinsics (``--camera``: a
dataset's by name, ``FX,FY,CX,CY``, or a JSON file; default the ``--dataset``'s; the cube stays in
mm), check it is the camera's (its size, depths in the working range), find the hand without a label
(:func:`deepmodel.data.hand_crop.locate.locate_hand`, with the learned refinement when its weights are
present), crop the cube around it (:func:`deepmodel.data.hand_crop.crop.crop_depth`), run the deploy net
(``--model``, its ``joints`` blob: the model layer's 31 keypoints in half-cube units) and map the
keypoints to mm (camera frame) and to pixels; with ``--fit``, the net's angles (its ``theta``
blob) are first fitted to the crop's depth (:class:`deepmodel.fitting.depth_fit.DepthFitter`, with the
crop centre found) and the fitted hand's keypoints are written. Writes into ``--out``:

* ``frames.txt``: the frame files, one a line: line i of every other file is this frame;
* ``keypoints_mm.txt``: 31 keypoints x (x, y, z) mm, 93 values a line;
* ``keypoints_uvd.txt``: the same 31 keypoints x (u, v px, d mm);
* ``predictions_nyu14_uvd.txt`` (``--dataset nyu``): the kit's format, the 14 joints of
  ``nyu_test_groundtruth_label.txt`` x (u, v, d), ready for ``tools/test_net.py --predictions``;
* ``centers.txt``: the crop centre u, v (px), d (mm) and cube (mm) found for each frame;
* ``failures.txt``: the frames that failed and why (no hand found, unreadable file, ...).

A frame that fails is a line of ``nan`` in the three per-frame files (the lines stay aligned with
the frames; ``test_net.py`` reads them as missing), counted and reported, never a crash; the run
fails (exit 2) only when no frame at all gives a pose, or on a bad option, net or weights file
(one-line error). Files are written when the run is complete (atomically).
"""
if __name__ == "__main__" and not __package__:   # a script outside the venv: say how to enter it
    import _venv_check  # noqa: F401
import argparse
import os
import pathlib
import time

import numpy as np
from tqdm import tqdm

os.environ.setdefault("GLOG_minloglevel", "2")

from deepmodel.data.datasets.camera import CAMERA_HELP, DEPTH_UNIT_HELP, parse_camera
from deepmodel.data.datasets.frames import BadFrame, frame_files
from deepmodel.data.datasets.raw import read_frame
from deepmodel.nets.net_io import MODEL_HELP, default_model
from deepmodel.pipeline.frames import DATASETS, FramePipeline
from deepmodel.plumbing import (ArgumentParser, InputError, atomic_path, console, finite_float, run,
                                write_text)


def build_parser():
    p = ArgumentParser(description=__doc__.split("\n\n")[0],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", help="a folder of raw depth frames (*.png, *.npy) or frame "
                   "files")
    p.add_argument("--weights", required=True, help=".caffemodel of the trained pose net")
    p.add_argument("--model", default=None, help=MODEL_HELP)
    p.add_argument("--blob", default="joints", help="output blob with (N, 93) keypoints")
    p.add_argument("--dataset", choices=sorted(DATASETS), default="nyu",
                   help="camera, cube (NYU 300 mm, ICVL 250 mm) and the kit's joints (default nyu)")
    p.add_argument("--camera", default=None, help=CAMERA_HELP + " (default: the --dataset's)")
    p.add_argument("--depth-unit", default=None, metavar="MM", help=DEPTH_UNIT_HELP)
    p.add_argument("--cube", type=finite_float(50.0, 1000.0), default=None,
                   help="cube edge in mm, 50-1000 (default: the dataset's)")
    p.add_argument("--fit", action="store_true", help="fit the net's pose to each crop's depth "
                   "(python_layers/fitting/depth_fit.py) and write the fitted hand's keypoints")
    p.add_argument("--theta-blob", default="theta", help="blob with the (N, 26) angles the hand "
                   "model layer takes (for --fit)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    _, cube = DATASETS[args.dataset]
    camera = parse_camera(args.camera or args.dataset, args.depth_unit)
    if args.cube is not None:
        if not (np.isfinite(args.cube) and args.cube > 0):
            raise InputError(f"--cube {args.cube}: must be a positive number of mm")
        cube = args.cube
    out = pathlib.Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    frames = frame_files(args.inputs)
    model = args.model or default_model(args.weights)
    pipeline = FramePipeline(model, args.weights, camera, cube, args.blob, args.fit,
                             args.theta_blob)
    from deepmodel.data.datasets.labels import NYU14_KEYPOINTS
    n = len(frames)
    xyz = np.full((n, 31, 3), np.nan)
    uvd = np.full((n, 31, 3), np.nan)
    centers = np.full((n, 4), np.nan)
    failures = []
    t0 = time.perf_counter()
    busy = 0.0
    for i, path in enumerate(tqdm(frames, desc="frames", unit="frame", disable=args.quiet)):
        try:
            depth = read_frame(path, camera)
            t = time.perf_counter()
            xyz[i], uvd[i], c = pipeline(depth)
            busy += time.perf_counter() - t
            centers[i] = (*c, cube)
        except BadFrame as err:
            failures.append((path, str(err)))
        except ValueError as err:        # HandNotFound, a frame the localiser cannot take
            failures.append((path, f"no hand found: {err}"))
    wall = time.perf_counter() - t0
    ok = n - len(failures)
    if ok == 0:
        raise InputError(f"no pose from any of the {n} frames (first: {failures[0][0]}: "
                         f"{failures[0][1]})")
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "frames.txt", "".join(f"{p}\n" for p in frames))
    files = {"keypoints_mm.txt": xyz.reshape(n, -1), "keypoints_uvd.txt": uvd.reshape(n, -1),
             "centers.txt": centers}
    if args.dataset == "nyu" and camera == DATASETS["nyu"][0]:     # the kit's format: NYU's camera
        files["predictions_nyu14_uvd.txt"] = uvd[:, list(NYU14_KEYPOINTS)].reshape(n, -1)
    for name, rows in files.items():
        with atomic_path(out / name) as tmp:
            np.savetxt(tmp, rows, fmt="%.3f", delimiter=" ")
    write_text(out / "failures.txt", "".join(f"{p}: {why}\n" for p, why in failures))
    print(f"[frames] {ok} of {n} frames -> {out} ({', '.join(files)}) in {wall:.1f} s; "
          f"detection + crop + net + model layer{' + fit' if args.fit else ''} "
          f"{1000 * busy / ok:.2f} ms a frame "
          f"({ok / busy:.0f} frames/s)")
    if failures:
        print(f"[frames] {len(failures)} frames failed (nan lines), listed in "
              f"{out / 'failures.txt'}; first: {failures[0][0]}: {failures[0][1]}")
    return 0


cli = console(main)


if __name__ == "__main__":
    run(main)
