#!/usr/bin/env python3
"""Score a trained net on the real NYU test crops in the repository, beside the mean-pose baseline.

The five crops in ``data/reference/nyu/test_crops/`` (128x128, 8-bit, normalised depth = gray /
255 x 2 - 1, named by 0-based NYU test-frame index) are the only real depth the project has. Their
crop centres are not known, so the metric compares shapes, not positions:

* the net's 31 keypoints (normalised units) -> the 14 NYU evaluation joints -> mm with the crop's
  half cube (150 mm; 0.87 x 150 mm for test frames 2440 and later, the second subject);
* the frame's labels (the NYU test label file, 14 joints u, v, d) -> xyz mm with the NYU camera;
* both centred on their mean over the 14 joints; the error of a frame is the mean Euclidean
  distance of its 14 joints (mm).

The baseline predicts, for every frame, the average centred pose of all 8252 NYU test labels.
The crops are a test: nothing in the project is tuned on them.

    tools/score_real.py --weights results/deepmodel.caffemodel
    tools/score_real.py                  # the newest weights in results/, else models/real/'s
    tools/score_real.py --weights A.caffemodel B.caffemodel ...   # several nets, keypoints averaged
    tools/score_real.py --fit            # also the net's pose fitted to each crop's depth

With ``--fit`` each net's pose (its ``theta`` blob, the hand model layer's input) is also fitted
to the crop's depth (:class:`deepmodel.fitting.depth_fit.DepthFitter`) and scored beside the net's own.

With several weights files (nets of the same ``--model``), the frames are scored on the average
of their keypoints (an ensemble): whether nets of different seeds or worlds share their error.
"""
if __name__ == "__main__" and not __package__:   # a script outside the venv: say how to enter it
    import _venv_check  # noqa: F401
import argparse
import os

import numpy as np

os.environ.setdefault("GLOG_minloglevel", "2")

from deepmodel.data.datasets.reference import NYU_TEST_CROPS
from deepmodel.data.evaluation.real_crops import half_cube_mm, real_crops, score
from deepmodel.nets.net_io import MODEL_HELP, fitted_keypoints, net_keypoints
from deepmodel.plumbing import (PROJECT, InputError, check_output_file, check_outputs, run,
                                write_json)
from deepmodel.plumbing import ArgumentParser  # options checked as parsed
from deepmodel.nets.weights import SHIPPED_REAL, default_weights


def print_report(result, weights):
    print(f"real NYU test crops, 14 joints, centred on their mean (mm); weights {weights}")
    cols = [("net", "net_mm")] + ([("net + fit", "fit_mm")] if "fit_mm" in result else []) \
        + [("mean pose", "mean_pose_mm")]
    print(f"{'frame':>6}" + "".join(f"  {name:>9}" for name, _ in cols))
    for i, f in enumerate(result["frames"]):
        print(f"{f:>6d}" + "".join(f"  {result[key][i]:>9.2f}" for _, key in cols))
    print(f"{'mean':>6}" + "".join(f"  {np.mean(result[key]):>9.2f}" for _, key in cols))


def build_parser():
    p = ArgumentParser(
        description="Score a trained net on the five real NYU test crops of the repository "
                    "(14 joints, centred on their mean, mm) beside the mean-pose baseline.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--weights", default=None, nargs="+", metavar="CAFFEMODEL",
                   help=".caffemodel (default: the newest in results/ or results/snapshots/, else "
                   "the shipped models/real/ weights (make train-real's net, for real "
                   "depth) for the default --model); several: "
                   "their keypoints averaged")
    p.add_argument("--model", default=None, help=MODEL_HELP)
    p.add_argument("--blob", default="joints", help="output blob with (N, 93) keypoints")
    p.add_argument("--crops", default=None, help="folder of crops named by 0-based test-frame "
                   "index (default: the repository's data/reference/nyu/test_crops)")
    p.add_argument("--fit", action="store_true", help="also fit each net's pose (its --theta-blob) "
                   "to the crop's depth and score the fitted keypoints (python_layers/fitting/depth_fit.py)")
    p.add_argument("--theta-blob", default="theta", help="blob with the (N, 26) angles the hand "
                   "model layer takes (for --fit)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    check_output_file(args.json, "--json")
    check_outputs([("--json", args.json)], [(f"--weights {w}", w) for w in args.weights or ()]
                  + [("--model", args.model), ("--crops", args.crops)])
    from deepmodel.nets.net_io import default_model, input_blob, load_net, output_blob

    if args.weights:
        all_weights = list(args.weights)
    else:
        weights, where = default_weights(PROJECT / "results", args.model, shipped=SHIPPED_REAL)
        print(f"weights: {where}: {weights}")
        all_weights = [weights]
    data = real_crops(args.crops or NYU_TEST_CROPS)
    keypoints, fitted = [], []
    models = [args.model or default_model(w) for w in all_weights]
    for w, model in zip(all_weights, models):
        net = load_net(model, w)
        data_blob = input_blob(net, None, model)
        if tuple(net.blobs[data_blob].data.shape[1:]) != data["crops"].shape[1:]:
            raise InputError(f"{model}: input '{data_blob}' has shape "
                             f"{tuple(net.blobs[data_blob].data.shape[1:])}, the crops "
                             f"{data['crops'].shape[1:]}")
        joints_blob = output_blob(net, args.blob, 93, model, "--blob")
        keypoints.append(net_keypoints(net, data_blob, joints_blob, data["crops"]))
        if args.fit:
            fitted.append(fitted_keypoints(net, args.theta_blob, model, data["crops"],
                                           2.0 * half_cube_mm(data["frames"])))
    result = score(np.mean(keypoints, axis=0), data)
    if args.fit:
        result["fit_mm"] = score(np.mean(fitted, axis=0), data)["net_mm"]
    weights = all_weights[0] if len(all_weights) == 1 else \
        f"the average of {len(all_weights)} nets' keypoints ({', '.join(map(str, all_weights))})"
    print_report(result, weights)
    if args.json:
        write_json(args.json, {"weights": [str(w) for w in all_weights] if len(all_weights) > 1
                               else str(all_weights[0]),
                               "model": (str(models[0]) if len(set(models)) == 1
                                         else [str(m) for m in models]),
                               "frames": result["frames"],
                               "net_mm": [float(x) for x in result["net_mm"]],
                               "mean_pose_mm": [float(x) for x in result["mean_pose_mm"]],
                               "net_mean_mm": float(np.mean(result["net_mm"])),
                               "mean_pose_mean_mm": float(np.mean(result["mean_pose_mm"])),
                               **({"fit_mm": [float(x) for x in result["fit_mm"]],
                                   "fit_mean_mm": float(np.mean(result["fit_mm"]))}
                                  if args.fit else {})})
    return 0


if __name__ == "__main__":
    run(main)
