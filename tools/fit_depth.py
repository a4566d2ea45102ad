#!/usr/bin/env python3
"""Measure the depth fit (python_layers/fitting/depth_fit.py) on a labelled test LMDB: the net's pose and the
same pose fitted to each crop's depth, both against the labels.

    tools/fit_depth.py --weights results/deepmodel.caffemodel --lmdb data/lmdb/nyu_test --frames 400
    tools/fit_depth.py --lmdb data/lmdb_drq_aug/nyu_test       # the newest weights, else the shipped

For the first ``--frames`` records of the split: the net's angles (its ``--theta-blob``, the hand
model layer's input) -> :class:`deepmodel.fitting.depth_fit.DepthFitter` with each crop's centre from the
split's meta file (``--nominal-depth``: on the optical axis at the fitter's fixed depth instead, as
for crops whose centre is unknown) -> the 14 NYU evaluation joints of both poses, in mm (the split's cube), against
the labels: the mean joint error, the same with both centred on their mean joint (the real-crop
metric of tools/score_real.py), and the share of frames the fit made better or worse by more than
1 mm (centred). Prints a table; ``--json`` also writes the figures.
"""
if __name__ == "__main__" and not __package__:   # a script outside the venv: say how to enter it
    import _venv_check  # noqa: F401
import argparse
import os
import time

import numpy as np

os.environ.setdefault("GLOG_minloglevel", "2")

from deepmodel.data.datasets.labels import NYU14_KEYPOINTS
from deepmodel.data.records.split import LmdbSplit, checked_labels
from deepmodel.plumbing import (PROJECT, ArgumentParser, InputError, check_output_file,
                                check_outputs, positive_int, run, write_json)
from deepmodel.data.evaluation.metrics import joint_errors
from deepmodel.data.evaluation.real_crops import centred_error
from deepmodel.nets.net_io import net_keypoints
from deepmodel.nets.net_io import MODEL_HELP
from deepmodel.nets.weights import default_weights

DEFAULT_LMDB = PROJECT / "data" / "lmdb" / "nyu_test"


def errors_mm(pred93, true93, half_cube_mm):
    """``(N, 93)`` normalised keypoints, predicted and true -> the 14 NYU joints' mean error per
    frame ``(N,)`` mm, absolute and centred on the mean joint."""
    idx = list(NYU14_KEYPOINTS)
    p = np.asarray(pred93).reshape(len(pred93), -1, 3)[:, idx] * half_cube_mm[:, None, None]
    q = np.asarray(true93).reshape(len(true93), -1, 3)[:, idx] * half_cube_mm[:, None, None]
    return joint_errors(p, q).mean(axis=1), centred_error(p, q)


def build_parser():
    p = ArgumentParser(description="Measure the depth fit on a labelled test LMDB: the net's pose "
                       "and the pose fitted to the crop's depth, against the labels (14 NYU joints, mm).",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--weights", default=None, help=".caffemodel (default: the newest in results/, "
                   "else the shipped models/default/ weights)")
    p.add_argument("--model", default=None, help=MODEL_HELP)
    p.add_argument("--lmdb", default=None, help="test split prefix (<prefix>_depth, _joint, "
                   "_meta.npz; default: the repository's data/lmdb/nyu_test)")
    p.add_argument("--frames", type=positive_int, default=400, help="the first N records")
    p.add_argument("--theta-blob", default="theta", help="blob with the (N, 26) angles")
    p.add_argument("--blob", default="joints", help="output blob with the (N, 93) keypoints")
    p.add_argument("--nominal-depth", action="store_true", help="ignore the meta file's crop "
                   "centres (the fitter's fixed depth, as for crops whose centre is unknown)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    check_output_file(args.json, "--json")
    check_outputs([("--json", args.json)], [("--weights", args.weights), ("--model", args.model)]
                  + (LmdbSplit(args.lmdb).inputs("--lmdb") if args.lmdb else []))
    from deepmodel.model.hand_model import HandModel
    from deepmodel.nets.net_io import default_model, fit_net_pose, input_blob, load_net, output_blob

    if args.weights:
        weights = args.weights
    else:
        weights, where = default_weights(PROJECT / "results", args.model)
        print(f"weights: {where}: {weights}")
    args.model = args.model or default_model(weights)
    net = load_net(args.model, weights)
    data_blob = input_blob(net, None, args.model)
    output_blob(net, args.blob, 93, args.model, "--blob")
    output_blob(net, args.theta_blob, HandModel.nyu().num_free, args.model, "--theta-blob")
    args.lmdb = args.lmdb or str(DEFAULT_LMDB)
    split = LmdbSplit(args.lmdb)
    with split.open("depth") as depth, split.open("joint") as joint:
        meta = split.read_meta(len(depth))
        n = min(args.frames, len(depth))
        crops = next(iter(depth.iter_batches(n, None)))[1]
        _, true = joint.read_all()
    true = np.asarray(checked_labels(joint.path, true)[:n], np.float64)
    if len(true) < n:
        raise InputError(f"{args.lmdb}: the joint LMDB has {len(true)} records, the depth LMDB {n}")
    bad = ~np.all(np.isfinite(true), axis=1)
    if bad.any():
        raise InputError(f"{args.lmdb}: record {int(np.flatnonzero(bad)[0])} has a NaN or infinite "
                         "label")
    if true.shape[1] != 93:
        raise InputError(f"{args.lmdb}: joint records hold {true.shape[1]} values, not the 31 "
                         "keypoints (93) of the hand model")
    pred = net_keypoints(net, data_blob, args.blob, crops)
    center = None if args.nominal_depth else np.asarray(meta.com, np.float64)[:n]
    cube = np.asarray(meta.cube, np.float64)[:n]
    start = time.perf_counter()
    fitted, fit = fit_net_pose(net, args.theta_blob, args.model, crops, cube, center,
                               progress=not args.quiet)
    seconds = time.perf_counter() - start
    net_abs, net_c = errors_mm(pred, true, cube / 2)
    fit_abs, fit_c = errors_mm(fitted, true, cube / 2)
    better, worse = float(np.mean(fit_c < net_c - 1.0)), float(np.mean(fit_c > net_c + 1.0))
    print(f"{n} frames of {args.lmdb}; weights {weights}")
    print(f"{'14 NYU joints (mm)':<22}{'net':>8}{'net + fit':>11}")
    print(f"{'mean error':<22}{net_abs.mean():>8.2f}{fit_abs.mean():>11.2f}")
    print(f"{'centred on the mean':<22}{net_c.mean():>8.2f}{fit_c.mean():>11.2f}")
    print(f"fit: {better:.0%} of frames better by > 1 mm (centred), {worse:.0%} worse; "
          f"{fit['start'].mean():.0%} from the open hand; {seconds / n * 1000:.0f} ms per frame "
          f"(crop centres: {'nominal' if args.nominal_depth else 'the meta file'})")
    if args.json:
        write_json(args.json, {"weights": str(weights), "lmdb": str(args.lmdb), "frames": n,
                               "nominal_depth": bool(args.nominal_depth),
                               "net_mm": float(net_abs.mean()), "fit_mm": float(fit_abs.mean()),
                               "net_centred_mm": float(net_c.mean()),
                               "fit_centred_mm": float(fit_c.mean()),
                               "better": better, "worse": worse,
                               "from_open_hand": float(fit["start"].mean()),
                               "ms_per_frame": seconds / n * 1000})
    return 0


if __name__ == "__main__":
    run(main)
