#!/usr/bin/env python3
"""Evaluate hand-pose predictions: a trained net on the test LMDBs, or prediction files.

Two modes:

1. A trained net (``--weights``): runs the deploy net in batches over the test LMDBs
   (``<lmdb>_depth``, ``<lmdb>_joint``, ``<lmdb>_meta.npz`` and, if present, the true angles in the
   meta file), maps its (N, 93) normalised joints back to mm with each frame's com and cube, and
   reports the mean joint error over the 31 keypoints and over the 14 standard NYU joints, the
   per-joint error, the fraction of frames whose worst joint is within t mm (t = 0..80), the mean
   angle error (degrees; needs a ``theta`` blob in the net and true angles in the meta file) and the
   fraction of frames with an angle outside its limits (needs the ``theta`` blob).

       tools/test_net.py --weights results/snapshots/deepmodel_iter_1000.caffemodel \\
           --model prototxt/deploy.prototxt --lmdb data/lmdb/nyu_test --out results/eval

2. Prediction files (``--predictions``) in the community NYU format (one line per frame, 14 joints
   x u, v, d) against a label file in the same format; several methods share one plot:

       tools/test_net.py --predictions data/reference/nyu/predictions/*.txt.xz \\
           --labels data/reference/nyu/nyu_test_groundtruth_label.txt.xz --out results/compare

Writes into ``--out``: ``eval.json`` (or ``--json``), ``threshold.png`` (fraction of frames whose
worst joint is within t mm), ``per_joint.png`` and, in mode 1, ``predictions_nyu14_uvd.txt`` (the
net's predictions in the community format, frame order) and ``predictions.npz`` (xyz mm of the 31
keypoints, frame index, theta).
"""
import argparse
import os
import pathlib
import sys

import numpy as np

os.environ.setdefault("GLOG_minloglevel", "2")

from data_prep.camera import NYU_CAMERA
from data_prep.labels import NYU14_KEYPOINTS, NYU14_NAMES, load_uvd_file, write_uvd_file
from data_prep.split import LmdbSplit, to_mm
from plumbing import PROJECT, InputError, console, run, save_figure, write_json, write_npz
from tools import metrics

DEFAULT_MODEL = "prototxt/deploy.prototxt"
DEFAULT_LMDB = "data/lmdb/nyu_test"
DEFAULT_OUT = "results/eval"


# ---------------------------------------------------------------------------------------------
# plots (written atomically, as every output: plumbing)

def _save_figure(fig, path):
    save_figure(fig, path, dpi=110, bbox_inches="tight")


def plot_threshold_curves(curves, path, title):
    """curves: list of ``(label, thresholds (T,), fraction (T,))`` -> one PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for label, thr, frac in curves:
        ax.plot(thr, 100.0 * np.asarray(frac), lw=2, label=label)
    ax.set_xlabel("maximum allowed distance to ground truth (mm)")
    ax.set_ylabel("frames with all joints within distance (%)")
    ax.set_xlim(0, max(max(c[1]) for c in curves))
    ax.set_ylim(0, 100)
    ax.grid(True, alpha=0.4)
    ax.set_title(title)
    ax.legend(loc="lower right")
    _save_figure(fig, path)
    plt.close(fig)


def plot_per_joint(bars, joint_names, path, title):
    """bars: list of ``(label, per-joint mean error (J,))`` -> grouped bars plus a 'mean' group."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(joint_names) + ["mean"]
    x = np.arange(len(names))
    width = 0.8 / len(bars)
    fig, ax = plt.subplots(figsize=(max(6.4, 0.42 * len(names) * max(1, len(bars)) ** 0.5), 4.6))
    for i, (label, per_joint) in enumerate(bars):
        vals = list(per_joint) + [float(np.mean(per_joint))]
        ax.bar(x + (i - (len(bars) - 1) / 2) * width, vals, width, label=label)
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("mean error (mm)")
    ax.grid(True, axis="y", alpha=0.4)
    ax.set_title(title)
    ax.legend()
    _save_figure(fig, path)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# mode 2: prediction files

def method_name(path):
    """A prediction file's name without folder and suffixes: ``X.txt.xz`` -> ``X``."""
    name = pathlib.Path(path).name
    for suffix in (".xz", ".gz", ".txt"):
        name = name.removesuffix(suffix)
    return name or pathlib.Path(path).name


def evaluate_prediction_files(files, labels, names=None, num_joints=14, camera=NYU_CAMERA):
    """Errors of community-format prediction files against a label file.

    Returns ``(names, [errors (N, J) mm for each file], N)``; a file with the wrong column count
    or another frame count than the labels is an InputError naming it.
    """
    true_uvd, _ = load_uvd_file(labels, num_joints)
    true_xyz = camera.uvd_to_xyz(true_uvd)
    if names is None:
        names = [method_name(f) for f in files]
    errors = []
    for f in files:
        pred_uvd, _ = load_uvd_file(f, num_joints)
        if len(pred_uvd) != len(true_uvd):
            raise InputError(f"{f}: {len(pred_uvd)} frames, but the labels {labels} have "
                             f"{len(true_uvd)}")
        errors.append(metrics.joint_errors(camera.uvd_to_xyz(pred_uvd), true_xyz))
    return list(names), errors, len(true_uvd)


def run_predictions(args):
    files = args.predictions
    if args.names is not None and len(args.names) != len(files):
        raise InputError(f"--names gives {len(args.names)} names for {len(files)} prediction files")
    if len(set(args.names or [])) != len(args.names or []):
        raise InputError("--names has a name twice")
    names, errors, frames = evaluate_prediction_files(files, args.labels, args.names,
                                                      args.num_joints)
    joint_names = (NYU14_NAMES if args.num_joints == 14
                   else tuple(f"joint {j}" for j in range(args.num_joints)))
    methods = []
    for name, f, err in zip(names, files, errors):
        summ = metrics.error_summary(err, joint_names)
        methods.append({"name": name, "file": str(f), **summ})

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    json_path = pathlib.Path(args.json) if args.json else out / "eval.json"
    thr = list(metrics.THRESHOLDS_MM)
    plot_threshold_curves([(m["name"], thr, list(m["frac_max_error_within_mm"].values()))
                           for m in methods], out / "threshold.png",
                          f"{pathlib.Path(args.labels).name}: {frames} frames")
    plot_per_joint([(m["name"], list(m["per_joint_error_mm"].values())) for m in methods],
                   joint_names, out / "per_joint.png", "per-joint mean error")
    # the first file's figures at the top level, so both modes share the basic keys
    first = {k: v for k, v in methods[0].items() if k not in ("name", "file")}
    report = {"mode": "predictions", "labels": str(args.labels), **first, "methods": methods,
              "plots": {"threshold": str(out / "threshold.png"),
                        "per_joint": str(out / "per_joint.png")}}
    write_json(json_path, report)

    width = max(12, max(len(n) for n in names))
    print(f"{'method':<{width}}  {'frames':>6}  {'mean mm':>8}  {'<=20mm':>7}  {'<=40mm':>7}  "
          f"{'<=80mm':>7}")
    for m in methods:
        fr = m["frac_max_error_within_mm"]
        print(f"{m['name']:<{width}}  {m['frames']:>6d}  {m['mean_error_mm']:>8.2f}  "
              f"{100 * fr['20']:>6.1f}%  {100 * fr['40']:>6.1f}%  {100 * fr['80']:>6.1f}%")
    print(f"wrote {json_path}, {out / 'threshold.png'}, {out / 'per_joint.png'}")
    return 0


# ---------------------------------------------------------------------------------------------
# mode 1: a trained net on the LMDBs

def run_net_on_lmdb(net, data_blob, split, joints_blob, theta_blob, batch_size,
                    progress=True):
    """Forward every depth record of ``split`` (an :class:`LmdbSplit`) through ``net`` in batches.

    Returns a dict: ``pred`` (N, 93) and ``theta`` (N, K) or None as the net gives them (float64,
    network units and radians), ``true`` (N, 93) from the joint LMDB, and ``n``.
    """
    from tqdm import tqdm

    depth = split.open("depth")
    joint = split.open("joint")
    if len(depth) != len(joint):
        raise InputError(f"{depth.path} has {len(depth)} records but {joint.path} has "
                         f"{len(joint)}")
    joint_keys, true = joint.read_all()
    if true.shape[1] != 93:
        raise InputError(f"{joint.path}: records hold {true.shape[1]} values, expected 93")
    in_shape = tuple(net.blobs[data_blob].data.shape[1:])
    n = len(depth)
    pred = np.empty((n, 93), np.float64)
    theta = None
    if theta_blob is not None:
        theta = np.empty((n, int(np.prod(net.blobs[theta_blob].data.shape[1:]))), np.float64)
    i = 0
    bar = tqdm(total=n, unit="frame", desc="test", disable=not progress, file=sys.stderr)
    for keys, batch in depth.iter_batches(batch_size, None):
        if batch.shape[1:] != in_shape:
            raise InputError(f"{depth.path}: records have shape {batch.shape[1:]}, but the net's "
                             f"input '{data_blob}' takes {in_shape}")
        if keys != joint_keys[i:i + len(keys)]:
            raise InputError(f"{depth.path} and {joint.path} hold different keys near record {i}")
        b = len(batch)
        if net.blobs[data_blob].data.shape[0] != b:
            net.blobs[data_blob].reshape(b, *in_shape)
            net.reshape()
        net.blobs[data_blob].data[...] = batch
        net.forward()
        pred[i:i + b] = net.blobs[joints_blob].data.reshape(b, -1)
        if theta is not None:
            theta[i:i + b] = net.blobs[theta_blob].data.reshape(b, -1)
        i += b
        bar.update(b)
    bar.close()
    depth.close()
    joint.close()
    return {"pred": pred, "theta": theta, "true": true.astype(np.float64), "n": n}


def evaluate_net_outputs(pred93, true93, com, cube, pred_theta=None, true_theta=None,
                         model=None):
    """All figures of mode 1 from arrays.

    pred93, true93: ``(N, 93)`` normalised; com ``(N, 3)`` mm; cube ``(N,)`` mm; pred_theta
    ``(N, 26)``/``(N, 47)`` radians or None; true_theta ``(N, 26)`` or None; model: a HandModel
    (names, limits). Returns ``(report dict, pred_xyz (N, 31, 3) mm, errors (N, 31) mm)``.
    """
    pred_xyz = to_mm(pred93, com, cube)
    true_xyz = to_mm(true93, com, cube)
    errors = metrics.joint_errors(pred_xyz, true_xyz)
    names = list(model.keypoint_names) if model is not None else [
        f"keypoint {k}" for k in range(errors.shape[1])]
    report = metrics.error_summary(errors, names)
    nyu14 = metrics.error_summary(errors[:, list(NYU14_KEYPOINTS)], NYU14_NAMES)
    report["mean_error_nyu14_mm"] = nyu14["mean_error_mm"]
    report["per_joint_error_nyu14_mm"] = nyu14["per_joint_error_mm"]
    report["frac_max_error_within_nyu14_mm"] = nyu14["frac_max_error_within_mm"]

    report["mean_angle_error_deg"] = None
    report["frac_out_of_limits"] = None
    if pred_theta is None:
        report["angle_note"] = "n/a: the net has no theta blob (direct joint regression?)"
        return report, pred_xyz, errors
    free_ids = np.asarray(model.free_ids)
    try:
        outside = metrics.out_of_limits(pred_theta, model.lower, model.upper, free_ids)
    except ValueError as err:
        raise InputError(f"theta blob: {err}") from None
    report["frac_out_of_limits"] = float(outside.mean())
    report["frames_out_of_limits"] = int(outside.sum())
    if true_theta is None:
        report["angle_note"] = "n/a: the true angles are not known (no theta in the meta file)"
        return report, pred_xyz, errors
    try:
        mean_deg, per_param = metrics.angle_error_deg(pred_theta, true_theta, free_ids)
    except ValueError as err:
        raise InputError(f"theta: {err}") from None
    cols = metrics.angle_columns(free_ids)
    report["mean_angle_error_deg"] = mean_deg
    report["per_angle_error_deg"] = {str(int(free_ids[c])): float(v)
                                     for c, v in zip(cols, per_param)}
    report["angle_note"] = ("mean |wrapped difference| over the 23 rotational free parameters "
                            "(ids 0-2 are translations)")
    return report, pred_xyz, errors


def _default_path(value, default):
    """A default path relative to the project root when the current folder does not have it."""
    if value == default and not os.path.isdir(os.path.dirname(value)):
        return str(PROJECT / default)
    return value


def run_weights(args):
    from hand_model import HandModel

    args.model = _default_path(args.model, DEFAULT_MODEL)
    args.lmdb = _default_path(args.lmdb, DEFAULT_LMDB)

    from tools.net_io import input_blob, load_net, output_blob

    net = load_net(args.model, args.weights)
    data_blob = input_blob(net, args.input, args.model)
    joints_blob = output_blob(net, args.blob, 93, args.model, "--blob")
    theta_blob = args.theta_blob if args.theta_blob in net.blobs else None
    if theta_blob is not None and args.theta_blob == args.blob:
        theta_blob = None
    # check the meta file before the long forward pass
    split = LmdbSplit(args.lmdb)
    with split.open("depth") as probe:
        meta = split.read_meta(len(probe))
    com, cube, frame, true_theta = meta.com, meta.cube, meta.frame, meta.theta

    out = run_net_on_lmdb(net, data_blob, split, joints_blob, theta_blob, args.batch_size,
                          progress=not args.quiet)
    bad = ~np.all(np.isfinite(out["pred"]), axis=1)
    if bad.any():
        raise InputError(f"{args.weights}: the net predicts non-finite joints for {int(bad.sum())} "
                         f"of {len(bad)} frames (diverged training?)")
    model = HandModel.nyu()
    report, pred_xyz, errors = evaluate_net_outputs(out["pred"], out["true"], com, cube,
                                                    out["theta"], true_theta, model)
    outdir = pathlib.Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
    json_path = pathlib.Path(args.json) if args.json else outdir / "eval.json"
    order = np.argsort(frame, kind="stable")
    pred_uvd14 = NYU_CAMERA.xyz_to_uvd(pred_xyz[order][:, list(NYU14_KEYPOINTS)])
    write_uvd_file(outdir / "predictions_nyu14_uvd.txt", pred_uvd14)
    arrays = {"xyz_mm": pred_xyz[order], "frame": frame[order]}
    if out["theta"] is not None:
        arrays["theta"] = out["theta"][order]
    write_npz(outdir / "predictions.npz", compressed=True, **arrays)
    thr = list(metrics.THRESHOLDS_MM)
    label = pathlib.Path(args.weights).stem
    plot_threshold_curves(
        [(f"{label}: 31 keypoints", thr, list(report["frac_max_error_within_mm"].values())),
         (f"{label}: 14 NYU joints", thr,
          list(report["frac_max_error_within_nyu14_mm"].values()))],
        outdir / "threshold.png", f"{pathlib.Path(args.lmdb).name}: {report['frames']} frames")
    plot_per_joint([(label, list(report["per_joint_error_mm"].values()))],
                   report["per_joint_error_mm"].keys(), outdir / "per_joint.png",
                   f"per-keypoint mean error, mean {report['mean_error_mm']:.2f} mm")
    report = {"mode": "net", "weights": str(args.weights), "model": str(args.model),
              "lmdb": str(args.lmdb), "blob": joints_blob, "theta_blob": theta_blob, **report,
              "files": {"predictions_uvd": str(outdir / "predictions_nyu14_uvd.txt"),
                        "predictions_npz": str(outdir / "predictions.npz"),
                        "threshold": str(outdir / "threshold.png"),
                        "per_joint": str(outdir / "per_joint.png")}}
    write_json(json_path, report)

    fr = report["frac_max_error_within_mm"]
    print(f"frames: {report['frames']}")
    print(f"mean joint error: {report['mean_error_mm']:.2f} mm (31 keypoints), "
          f"{report['mean_error_nyu14_mm']:.2f} mm (14 NYU joints)")
    print(f"frames with the worst joint within 20/40/80 mm: {100 * fr['20']:.1f}% / "
          f"{100 * fr['40']:.1f}% / {100 * fr['80']:.1f}%")
    if report["mean_angle_error_deg"] is not None:
        print(f"mean angle error: {report['mean_angle_error_deg']:.2f} deg")
    else:
        print(f"mean angle error: {report['angle_note']}")
    if report["frac_out_of_limits"] is not None:
        print(f"frames with an angle out of its limits: {100 * report['frac_out_of_limits']:.1f}%")
    else:
        print("frames with an angle out of its limits: n/a (no theta blob)")
    print(f"wrote {json_path}, {outdir / 'threshold.png'}, {outdir / 'per_joint.png'}, "
          f"{outdir / 'predictions_nyu14_uvd.txt'}")
    return 0


def build_parser():
    p = argparse.ArgumentParser(
        description="Evaluate a trained net on the test LMDBs (--weights) or community-format "
                    "prediction files against labels (--predictions, --labels).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    mode = p.add_argument_group("mode 1: a trained net")
    mode.add_argument("--weights", help=".caffemodel of the trained net")
    mode.add_argument("--model", default=DEFAULT_MODEL, help="deploy prototxt")
    mode.add_argument("--lmdb", default=DEFAULT_LMDB,
                      help="LMDB prefix: reads PREFIX_depth, PREFIX_joint, PREFIX_meta.npz")
    mode.add_argument("--input", default=None, help="the net's image input blob (default: its "
                      "only input)")
    mode.add_argument("--blob", default="joints", help="output blob with (N, 93) joints")
    mode.add_argument("--theta-blob", default="theta", help="blob with the predicted angles "
                      "(N, 26) or (N, 47); angle figures are n/a when the net has none")
    mode.add_argument("--batch-size", type=int, default=256, help="frames per forward pass")
    pred = p.add_argument_group("mode 2: prediction files (14 joints x u, v, d per line)")
    pred.add_argument("--predictions", nargs="+", metavar="FILE", help="prediction files")
    pred.add_argument("--labels", help="label file in the same format")
    pred.add_argument("--names", nargs="+", help="legend names (default: file stems)")
    pred.add_argument("--num-joints", type=int, default=14, help="joints per line")
    p.add_argument("--out", default=DEFAULT_OUT, help="folder for the JSON, plots, predictions")
    p.add_argument("--json", default=None, help="JSON file (default: OUT/eval.json)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if (args.weights is None) == (args.predictions is None):
        raise InputError("give either --weights (evaluate a net) or --predictions with --labels")
    if args.predictions is not None:
        if args.labels is None:
            raise InputError("--predictions needs --labels (the label file, same format)")
        if args.num_joints < 1:
            raise InputError(f"--num-joints {args.num_joints}: must be positive")
        return run_predictions(args)
    if args.batch_size < 1:
        raise InputError(f"--batch-size {args.batch_size}: must be positive")
    return run_weights(args)


cli = console(main)   # the `deepmodel-test` command (pyproject.toml)

if __name__ == "__main__":
    run(main)
