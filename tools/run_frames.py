#!/usr/bin/env python3
"""Hand pose from raw depth frames with no label: detection, crop, net, model layer, one frame at a time.

    tools/run_frames.py FOLDER --weights results/deepmodel.caffemodel --out results/frames
    tools/run_frames.py a.png b.png --weights W --dataset icvl --out results/icvl_frames
    tools/run_frames.py FOLDER --weights W --camera 476,476,314,243 --depth-unit 0.125 --out O
    tools/run_frames.py recording.db3 --weights W --out O --video O/video.mp4
    tools/run_frames.py --live --weights W --out O --max-frames 900      # a RealSense camera

**Sources.** A folder's ``*.png`` and ``*.npy`` in name order, or the files given: NYU's 8-bit PNG
(blue + 256 * green, in mm), a 16-bit PNG or a 2-D ``.npy`` in the camera's raw units
(``--depth-unit`` mm each), with the camera's intrinsics (``--camera``: a dataset's by name,
``FX,FY,CX,CY``, or a JSON file; default the ``--dataset``'s; the cube stays in mm). A RealSense
recording (``.db3``, or an older SDK's ``.bag``) or a live RealSense camera (``--live``) bring
their own intrinsics and depth unit (needs the extra ``pip install -e '.[realsense]'``). Each
frame is checked against the camera (its size, depths in the working range).

**Finding the hand** (:class:`deepmodel.data.hand_crop.detect.HandFinder`): the nearest-surface
localiser, overruled by the learned detector when the body, a desk or an object is nearer than the
hand (``--detector nearest``: the localiser alone), then the learned centre refinement. On a
sequence (``--track``: on by default for recordings and cameras) a frame starts from the previous
frame's hand and the whole frame is searched again when it is lost or every ``--redetect``
frames; ``--smooth A`` blends tracked frames' keypoints with the previous ones (weight A, off by
default). Then the cube is cropped (:func:`deepmodel.data.hand_crop.crop.crop_depth`), the deploy
net runs (``--model``, its ``joints`` blob: the model layer's 31 keypoints in half-cube units) and
the keypoints are mapped to mm (camera frame) and pixels; with ``--fit``, the net's angles (its
``theta`` blob) are first fitted to the crop's depth (:class:`deepmodel.fitting.depth_fit.DepthFitter`).

Writes into ``--out`` (all files when the run is complete; a failed run leaves none):

* ``frames.txt``: the frames, one a line (a file, or ``<recording>#<frame number>``): line i of
  every other file is this frame;
* ``frames.jsonl``: one JSON object a line: ``frame``, ``name``, ``found``, ``how`` (nearest,
  detected, tracked), ``center_uvd``, ``cube_mm``, ``keypoints_mm`` and ``keypoints_uvd``
  (31 x 3), or ``error`` for a frame that failed;
* ``keypoints_mm.txt``: 31 keypoints x (x, y, z) mm, 93 values a line;
* ``keypoints_uvd.txt``: the same 31 keypoints x (u, v px, d mm);
* ``predictions_nyu14_uvd.txt`` (NYU's camera): the kit's format, the 14 joints of
  ``nyu_test_groundtruth_label.txt`` x (u, v, d), ready for ``tools/test_net.py --predictions``;
* ``centers.txt``: the crop centre u, v (px), d (mm) and cube (mm) found for each frame;
* ``failures.txt``: the frames that failed and why (no hand found, unreadable file, ...);
* ``--video``: every frame drawn (the depth, the crop box, the 2D skeleton, and beside it the 3D
  skeleton): an ``.mp4`` or ``.avi`` file, or else a folder of ``frame_NNNNNN.png``.

A frame that fails is a line of ``nan`` in the per-frame text files (the lines stay aligned with
the frames; ``test_net.py`` reads them as missing), counted and reported, never a crash; the run
fails (exit 2) only when no frame at all gives a pose, or on a bad option, net, weights file or
recording (one-line error). Ctrl-C on a live camera ends the run and writes what it has.
"""
if __name__ == "__main__" and not __package__:   # a script outside the venv: say how to enter it
    import _venv_check  # noqa: F401
import argparse
import json
import os
import pathlib
import time

import numpy as np
from tqdm import tqdm

os.environ.setdefault("GLOG_minloglevel", "2")

from deepmodel.data.datasets.camera import CAMERA_HELP, DEPTH_UNIT_HELP
from deepmodel.data.datasets.frames import BadFrame
from deepmodel.data.datasets.sources import SOURCES_HELP, open_frames
from deepmodel.nets.net_io import MODEL_HELP, default_model
from deepmodel.pipeline.frames import DATASETS, FramePipeline
from deepmodel.pipeline.video import VideoOut, check_video_path
from deepmodel.plumbing import (ArgumentParser, InputError, OutputSet, check_outputs, console,
                                finite_float, int_in, run)
from deepmodel.runtime.nets import BACKEND_HELP, BACKENDS

TRACK = ("auto", "on", "off")
OUTPUT_NAMES = ("frames.txt", "frames.jsonl", "keypoints_mm.txt", "keypoints_uvd.txt",
                "predictions_nyu14_uvd.txt", "centers.txt", "failures.txt")


def build_parser():
    p = ArgumentParser(description=__doc__.split("\n\n")[0],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="*", help=SOURCES_HELP)
    p.add_argument("--live", action="store_true", help="frames from a connected RealSense camera "
                   "(Ctrl-C or --max-frames ends the run)")
    p.add_argument("--max-frames", type=int_in(1, 100_000_000), default=None,
                   help="stop after this many frames")
    p.add_argument("--weights", required=True, help=".caffemodel of the trained pose net (with "
                   "--backend onnx: its .onnx, or the .caffemodel whose .onnx lies beside it)")
    p.add_argument("--backend", choices=BACKENDS, default="caffe", help=BACKEND_HELP +
                   " (default caffe)")
    p.add_argument("--model", default=None, help=MODEL_HELP)
    p.add_argument("--blob", default="joints", help="output blob with (N, 93) keypoints")
    p.add_argument("--dataset", choices=sorted(DATASETS), default="nyu",
                   help="camera, cube (NYU 300 mm, ICVL 250 mm) and the kit's joints (default nyu)")
    p.add_argument("--camera", default=None, help=CAMERA_HELP + " (default: the --dataset's; a "
                   "recording or --live: its own)")
    p.add_argument("--depth-unit", default=None, metavar="MM", help=DEPTH_UNIT_HELP)
    p.add_argument("--cube", type=finite_float(50.0, 1000.0), default=None,
                   help="cube edge in mm, 50-1000 (default: the dataset's)")
    p.add_argument("--detector", choices=("learned", "nearest"), default="learned",
                   help="learned: the nearest surface overruled by the learned hand detector when "
                   "something else is nearer (default); nearest: the nearest surface alone")
    p.add_argument("--track", choices=TRACK, default="auto", help="start each frame from the "
                   "previous frame's hand (auto: for a recording or a camera, not for files)")
    p.add_argument("--redetect", type=int_in(0, 100_000), default=30, metavar="N",
                   help="while tracking, search the whole frame at least every N frames (0: only "
                   "when lost; default 30)")
    p.add_argument("--smooth", type=finite_float(0.0, 0.95), default=0.0, metavar="A",
                   help="blend tracked frames' keypoints with the previous frame's, weight A "
                   "(0-0.95; default 0: off)")
    p.add_argument("--fit", action="store_true", help="fit the net's pose to each crop's depth "
                   "(python_layers/fitting/depth_fit.py) and write the fitted hand's keypoints")
    p.add_argument("--theta-blob", default="theta", help="blob with the (N, 26) angles the hand "
                   "model layer takes (for --fit)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--video", default=None, metavar="PATH", help="draw every frame into a video "
                   "(.mp4, .avi) or, for any other name, a folder of PNGs")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    _, cube = DATASETS[args.dataset]
    if args.cube is not None:
        cube = args.cube
    out = pathlib.Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    video = check_video_path(args.video, args.inputs) if args.video else None
    check_outputs([("--out", out / name) for name in OUTPUT_NAMES],
                  [(f"the input {i}", i) for i in args.inputs]
                  + [("--weights", args.weights), ("--model", args.model)])
    model = args.model or (default_model(args.weights) if args.backend == "caffe" else None)
    with open_frames(args.inputs, args.camera, args.depth_unit, args.dataset, live=args.live,
                     max_frames=args.max_frames) as source:
        track = args.track == "on" or (args.track == "auto" and source.recording is not None)
        pipeline = FramePipeline(model, args.weights, source.camera, cube, args.blob, args.fit,
                                 args.theta_blob, detector=None if args.detector == "nearest"
                                 else "learned", track=track, smooth=args.smooth,
                                 redetect_every=args.redetect, backend=args.backend)
        with OutputSet(out / "frames.txt") as outs:
            drawer = VideoOut(video, outs, source.camera, cube) if video else None
            try:
                result = process(source, pipeline, drawer, args)
            finally:
                if drawer is not None:
                    drawer.close()
            write_outputs(outs, out, result, source.camera, args, cube)
    report(result, out, args, track)
    return 0


def process(source, pipeline, drawer, args):
    """Run every frame of ``source``: per-frame names, poses (None for a failure), failures."""
    names, poses, failures = [], [], []
    busy, t0 = 0.0, time.perf_counter()
    frames = tqdm(source, total=source.total, desc="frames", unit="frame", disable=args.quiet)
    try:
        for name, depth in frames:
            names.append(name)
            pose = None
            if isinstance(depth, BadFrame):
                failures.append((name, str(depth)))
                pipeline.reset()
            else:
                t = time.perf_counter()
                try:
                    pose = pipeline(depth)
                except ValueError as err:        # HandNotFound, a frame the localiser cannot take
                    failures.append((name, f"no hand found: {err}"))
                busy += time.perf_counter() - t
            poses.append(pose)
            if drawer is not None:
                drawer.add(None if isinstance(depth, BadFrame) else depth, pose, name)
    except KeyboardInterrupt:
        if not args.live:
            raise
        del names[len(poses):]                  # a frame cut off halfway is left out
        print(f"[frames] stopped after {len(names)} frames")
    finally:
        frames.close()
    if not names:
        raise InputError("no frame came from the source")
    ok = sum(p is not None for p in poses)
    if ok == 0:
        raise InputError(f"no pose from any of the {len(names)} frames (first: {failures[0][0]}: "
                         f"{failures[0][1]})")
    return {"names": names, "poses": poses, "failures": failures, "busy": busy,
            "wall": time.perf_counter() - t0, "ok": ok}


def write_outputs(outs, out, result, camera, args, cube):
    from deepmodel.data.datasets.labels import NYU14_KEYPOINTS

    poses, names = result["poses"], result["names"]
    n = len(names)
    xyz = np.full((n, 31, 3), np.nan)
    uvd = np.full((n, 31, 3), np.nan)
    centers = np.full((n, 4), np.nan)
    lines = []
    errors = dict(result["failures"])
    for i, (name, pose) in enumerate(zip(names, poses)):
        entry = {"frame": i, "name": name, "found": pose is not None}
        if pose is not None:
            xyz[i], uvd[i] = pose.xyz, pose.uvd
            centers[i] = (*pose.center_uvd, pose.cube_mm)
            entry.update(how=pose.how, center_uvd=pose.center_uvd.tolist(),
                         cube_mm=pose.cube_mm, keypoints_mm=pose.xyz.tolist(),
                         keypoints_uvd=pose.uvd.tolist())
        else:
            entry["error"] = errors.get(name, "no pose")
        lines.append(json.dumps(entry))
    outs.stage(out / "frames.txt").write_text("".join(f"{p}\n" for p in names))
    outs.stage(out / "frames.jsonl").write_text("".join(f"{line}\n" for line in lines))
    files = {"keypoints_mm.txt": xyz.reshape(n, -1), "keypoints_uvd.txt": uvd.reshape(n, -1),
             "centers.txt": centers}
    if camera == DATASETS["nyu"][0]:                    # the kit's format: NYU's camera
        files["predictions_nyu14_uvd.txt"] = uvd[:, list(NYU14_KEYPOINTS)].reshape(n, -1)
    for name, rows in files.items():
        np.savetxt(outs.stage(out / name), rows, fmt="%.3f", delimiter=" ")
    outs.stage(out / "failures.txt").write_text(
        "".join(f"{p}: {why}\n" for p, why in result["failures"]))
    result["files"] = ["frames.jsonl", *files]


def report(result, out, args, track):
    n, ok, busy = len(result["names"]), result["ok"], result["busy"]
    hows = [p.how for p in result["poses"] if p is not None]
    counts = ", ".join(f"{hows.count(h)} {h}" for h in ("nearest", "detected", "tracked")
                       if h in hows)
    print(f"[frames] {ok} of {n} frames -> {out} ({', '.join(result['files'])}) in "
          f"{result['wall']:.1f} s; hand: {counts}; detection + crop + net + model layer"
          f"{' + fit' if args.fit else ''} {1000 * busy / max(n, 1):.2f} ms a frame "
          f"({n / busy if busy else 0:.0f} frames/s{', tracking' if track else ''})")
    if args.video:
        print(f"[frames] video: {args.video}")
    failures = result["failures"]
    if failures:
        print(f"[frames] {len(failures)} frames failed (nan lines), listed in "
              f"{out / 'failures.txt'}; first: {failures[0][0]}: {failures[0][1]}")


cli = console(main)


if __name__ == "__main__":
    run(main)
