#!/usr/bin/env python3
"""Evaluate hand-pose predictions: a trained net on the test LMDBs, or prediction files.

Two modes, both with the community evaluation kit's conventions (data_prep/evaluation/kit.py: one camera
per dataset, mean joint error, per-joint error and three success-rate curves over 0..80 mm:
frames whose worst joint is within t, frames whose mean joint error is within t, joints within t).

With no arguments (``python tools/test_net.py``) it evaluates the obvious net: the newest trained
weights in ``results/`` (``make train``), else the weights shipped with the repository
(``models/default/``), with the paper's deploy net on the default test LMDBs, and says which
weights it used (``python_layers/nets/weights.py``).

1. A trained net (``--weights``): runs the deploy net in batches over the test LMDBs
   (``<lmdb>_depth``, ``<lmdb>_joint``, ``<lmdb>_meta.npz``, which names the dataset and may hold
   the true angles), maps its (N, 93) normalised joints back to mm with each frame's com and cube,
   and reports the errors over the 31 keypoints and over the dataset's benchmark joints (14 for
   NYU; a net that predicts the dataset's joints directly is scored on those), the mean angle
   error (degrees; needs a ``theta`` blob and true angles) and the fraction of frames with an
   angle outside its limits (needs the ``theta`` blob).

       tools/test_net.py --weights results/snapshots/deepmodel_iter_1000.caffemodel \\
           --model prototxt/deploy.prototxt --lmdb data/lmdb/nyu_test --out results/eval

2. Prediction files (``--predictions``) in the kit's format (one line per frame, J joints x u, v,
   d; NYU 14, ICVL 16, MSRA 21 joints, the dataset inferred from J or given with ``--dataset``)
   against a label file (default: the repository's NYU or ICVL test labels); several methods
   share one table and one figure (``--sort`` orders them by mean error):

       tools/test_net.py --predictions data/reference/nyu/predictions/*.txt.xz --sort
       tools/test_net.py --predictions data/reference/icvl/predictions/*.txt.xz \\
           --labels data/reference/icvl/icvl_test_groundtruth_label.txt.xz --out results/icvl

Writes into ``--out``: ``eval.json`` (or ``--json``), ``threshold.png`` (the three success-rate
curves side by side), ``per_joint.png`` and, in mode 1, ``predictions_<dataset><J>_uvd.txt`` (the
net's predictions in the kit's format, frame order) and ``predictions.npz`` (xyz mm of the
predicted joints, frame index, theta).
"""
if __name__ == "__main__" and not __package__:   # a script outside the venv: say how to enter it
    import _venv_check  # noqa: F401
from argparse import ArgumentDefaultsHelpFormatter
import os
import pathlib
import sys

import numpy as np

os.environ.setdefault("GLOG_minloglevel", "2")

from deepmodel.data.evaluation import kit
from deepmodel.data.datasets.camera import ICVL_CAMERA, NYU_CAMERA
from deepmodel.data.datasets.labels import (NYU14_KEYPOINTS, load_uvd_file, nyu14_order_warning,
                                            write_uvd_file)
from deepmodel.data.datasets.reference import ICVL_LABELS, NYU_LABELS
from deepmodel.data.records.split import LmdbSplit, checked_labels, to_mm
from deepmodel.plumbing import (PROJECT, ArgumentParser, InputError, OutputSet, check_output_file,
                                check_outputs, console, open_text, positive_int, run, save_figure,
                                write_json, write_npz)
from deepmodel.data.evaluation import metrics
from deepmodel.nets.net_io import MODEL_HELP
from deepmodel.nets.weights import default_weights

# the cameras the dataset readers use (uvd <-> xyz of the LMDB sets); scoring uses the kit's
DATASET_CAMERAS = {"nyu": NYU_CAMERA, "icvl": ICVL_CAMERA}
REFERENCE_LABELS = {"nyu": NYU_LABELS, "icvl": ICVL_LABELS}

DEFAULT_LMDB = "data/lmdb/nyu_test"
DEFAULT_OUT = "results/eval"


# ---------------------------------------------------------------------------------------------
# plots (written atomically, as every output: plumbing)

def _save_figure(fig, path):
    save_figure(fig, path, dpi=110, bbox_inches="tight")


def plot_success_rates(series, path, title):
    """The kit's three success-rate curves side by side, one line per method.

    series: list of ``(label, summary)`` with ``summary`` holding the three curve keys of
    :data:`deepmodel.data.evaluation.metrics.CURVES` (str(t) -> fraction) -> one PNG with three panels.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), sharey=True)
    for ax, key in zip(axes, metrics.CURVES):
        for label, summary in series:
            curve = summary[key]
            ax.plot([int(t) for t in curve], 100.0 * np.asarray(list(curve.values())), lw=2,
                    label=f"{label} ({summary['mean_error_mm']:.2f} mm)")
        ax.set_xlabel("distance threshold t (mm)")
        ax.set_title(metrics.CURVE_TITLES[key], fontsize=10)
        ax.set_xlim(0, max(metrics.THRESHOLDS_MM))
        ax.set_ylim(0, 100)
        ax.grid(True, alpha=0.4)
    axes[0].set_ylabel("success rate (%)")
    axes[-1].legend(loc="lower right", fontsize=8)
    fig.suptitle(title)
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


def joints_per_line(path):
    """Joints per line of a community-format file, from its first non-blank line."""
    with open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            values = line.split()
            if values:
                if len(values) % 3:
                    raise InputError(f"{path}: line {lineno} has {len(values)} values, not a "
                                     "multiple of 3 (u, v, d per joint)")
                return len(values) // 3
    raise InputError(f"{path}: empty file")


def choose_dataset(name, labels, first_prediction):
    """The kit dataset and label file of mode 2: ``(KitDataset, labels path, how it was chosen)``.

    With ``name`` (``--dataset``) that dataset; else the one whose joint count the labels (or,
    without labels, the first prediction file) have per line. Without labels, the repository's
    test labels of that dataset.
    """
    probe = labels if labels is not None else first_prediction
    joints = joints_per_line(probe)
    if name is not None:
        dataset = kit.DATASETS[name]
        how = "--dataset"
    else:
        dataset = kit.dataset_for_joints(joints)
        if dataset is None:
            known = ", ".join(f"{d.name} {d.num_joints}" for d in kit.DATASETS.values())
            raise InputError(f"{probe}: {joints} joints per line, not a dataset of the evaluation "
                             f"kit ({known}); give --dataset")
        how = f"inferred from {joints} joints per line"
    if joints != dataset.num_joints:
        raise InputError(f"{probe}: {joints} joints per line, but {dataset.name} files have "
                         f"{dataset.num_joints}")
    if labels is None:
        labels = REFERENCE_LABELS.get(dataset.name)
        if labels is None:
            raise InputError(f"no {dataset.name} labels in the repository: give --labels")
        how += "; the repository's test labels"
    return dataset, labels, how


def evaluate_prediction_files(files, labels, dataset, names=None):
    """Errors of community-format prediction files against a label file, the kit's way.

    dataset: a :class:`deepmodel.data.evaluation.kit.KitDataset` (camera, joints). Returns ``(names, [errors
    (N, J) mm for each file], N)``; a file with another joint count or another frame count than
    the labels is an InputError naming both counts.
    """
    true_uvd, _ = load_uvd_file(labels, dataset.num_joints)
    true_xyz = dataset.uvd_to_xyz(true_uvd)
    warnings = [joint_order_warning(true_xyz, labels, dataset)]
    if names is None:
        names = [method_name(f) for f in files]
    errors = []
    for f in files:
        joints = joints_per_line(f)
        if joints != dataset.num_joints:
            raise InputError(f"{f}: {joints} joints per line, but the labels {labels} have "
                             f"{dataset.num_joints}")
        pred_uvd, _ = load_uvd_file(f, dataset.num_joints)
        if len(pred_uvd) != len(true_uvd):
            raise InputError(f"{f}: {len(pred_uvd)} frames, but the labels {labels} have "
                             f"{len(true_uvd)}")
        pred_xyz = dataset.uvd_to_xyz(pred_uvd)
        warnings.append(joint_order_warning(pred_xyz, f, dataset))
        errors.append(metrics.joint_errors(pred_xyz, true_xyz))
    for message in filter(None, warnings):      # once every file has been read without error
        print(f"warning: {message}", file=sys.stderr)
    return list(names), errors, len(true_uvd)


def joint_order_warning(xyz, source, dataset):
    """A warning (str or None) when the NYU joints of ``source`` do not look like a hand in the
    format's order (bone lengths; :func:`deepmodel.data.datasets.labels.nyu14_order_warning`)."""
    return nyu14_order_warning(xyz, source) if dataset.name == "nyu" else None


def print_table(methods):
    """One row per method: frames, mean error (3 decimals, as the kit's published figures) and
    the max-error curve at 20/40/80 mm."""
    width = max(12, max(len(m["name"]) for m in methods))
    print(f"{'method':<{width}}  {'frames':>6}  {'mean mm':>8}  {'<=20mm':>7}  {'<=40mm':>7}  "
          f"{'<=80mm':>7}  (frames with every joint within)")
    for m in methods:
        fr = m["frac_max_error_within_mm"]
        print(f"{m['name']:<{width}}  {m['frames']:>6d}  {m['mean_error_mm']:>8.3f}  "
              f"{100 * fr['20']:>6.1f}%  {100 * fr['40']:>6.1f}%  {100 * fr['80']:>6.1f}%")


def run_predictions(args):
    files = args.predictions
    if args.names is not None and len(args.names) != len(files):
        raise InputError(f"--names gives {len(args.names)} names for {len(files)} prediction files")
    if len(set(args.names or [])) != len(args.names or []):
        raise InputError("--names has a name twice")
    dataset, labels, how = choose_dataset(args.dataset, args.labels, files[0])
    print(f"dataset: {dataset.name} ({how}); camera fx {dataset.fx}, fy {dataset.fy}, "
          f"cx {dataset.cx}, cy {dataset.cy}")
    names, errors, frames = evaluate_prediction_files(files, labels, dataset, args.names)
    methods = []
    for name, f, err in zip(names, files, errors):
        summ = metrics.error_summary(err, dataset.joint_names)
        methods.append({"name": name, "file": str(f), **summ})
    shown = sorted(methods, key=lambda m: m["mean_error_mm"]) if args.sort else methods

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    json_path = pathlib.Path(args.json) if args.json else out / "eval.json"
    outs = OutputSet(json_path)      # eval.json is written last, beside the files it names
    with outs:
        plot_success_rates([(m["name"], m) for m in shown], outs.stage(out / "threshold.png"),
                           f"{dataset.name.upper()} test set, {frames} frames")
        plot_per_joint([(m["name"], list(m["per_joint_error_mm"].values())) for m in shown],
                       dataset.joint_names, outs.stage(out / "per_joint.png"),
                       f"{dataset.name.upper()}: per-joint mean error")
        write_predictions_report(args, dataset, labels, methods, shown, out, outs.stage(json_path))
    print_table(shown)
    print(f"wrote {json_path}, {out / 'threshold.png'}, {out / 'per_joint.png'}")
    return 0


def write_predictions_report(args, dataset, labels, methods, shown, out, json_path):
    # the first file's figures at the top level, so both modes share the basic keys
    first = {k: v for k, v in methods[0].items() if k not in ("name", "file")}
    report = {"mode": "predictions", "dataset": dataset.name, "labels": str(labels),
              "camera": {"fx": dataset.fx, "fy": dataset.fy, "cx": dataset.cx, "cy": dataset.cy},
              **first, "sorted": bool(args.sort), "methods": shown,
              "plots": {"threshold": str(out / "threshold.png"),
                        "per_joint": str(out / "per_joint.png")}}
    write_json(json_path, report)


# ---------------------------------------------------------------------------------------------
# mode 1: a trained net on the LMDBs

def run_net_on_lmdb(net, data_blob, split, joints_blob, theta_blob, batch_size,
                    progress=True):
    """Forward every depth record of ``split`` (an :class:`LmdbSplit`) through ``net`` in batches.

    Returns a dict: ``pred`` (N, W) and ``theta`` (N, K) or None as the net gives them (float64,
    network units and radians), ``true`` (N, W) from the joint LMDB (W = 93 for the 31 keypoints,
    3 x the dataset's joints for a direct-joint net), and ``n``.
    """
    from tqdm import tqdm

    depth = split.open("depth")
    joint = split.open("joint")
    if len(depth) != len(joint):
        raise InputError(f"{depth.path} has {len(depth)} records but {joint.path} has "
                         f"{len(joint)}")
    joint_keys, true = joint.read_all()
    true = checked_labels(joint.path, true)
    width = int(np.prod(net.blobs[joints_blob].data.shape[1:]))
    if true.shape[1] != width:
        raise InputError(f"{joint.path}: records hold {true.shape[1]} values, but the net's "
                         f"'{joints_blob}' has {width}")
    in_shape = tuple(net.blobs[data_blob].data.shape[1:])
    n = len(depth)
    pred = np.empty((n, width), np.float64)
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


def dataset_joints(pred_xyz, true_xyz, dataset, source):
    """The dataset's benchmark joints of mode 1's output, scored with the kit's conventions.

    pred_xyz, true_xyz: ``(N, K, 3)`` mm, K = 31 model keypoints or the dataset's own joints.
    The positions go to uvd with the dataset's own camera (as its label files hold them) and back
    to xyz with the kit's camera, so the figures are those of the kit on exported predictions.
    Returns ``(pred_uvd (N, J, 3), errors (N, J) mm)``.
    """
    bench = kit.DATASETS[dataset]
    if pred_xyz.shape[1] == 31 and dataset == "nyu":
        cols = list(NYU14_KEYPOINTS)
    elif pred_xyz.shape[1] == bench.num_joints:
        cols = list(range(bench.num_joints))
    else:
        raise InputError(f"{source}: {pred_xyz.shape[1]} joints per frame on the {dataset} set: "
                         f"expected its {bench.num_joints} joints (or the 31 model keypoints on "
                         "NYU)")
    camera = DATASET_CAMERAS[dataset]
    pred_uvd = camera.xyz_to_uvd(pred_xyz[:, cols])
    true_uvd = camera.xyz_to_uvd(true_xyz[:, cols])
    return pred_uvd, metrics.joint_errors(bench.uvd_to_xyz(pred_uvd), bench.uvd_to_xyz(true_uvd))


def evaluate_net_outputs(pred93, true93, com, cube, pred_theta=None, true_theta=None,
                         model=None, dataset="nyu", source="the net"):
    """All figures of mode 1 from arrays.

    pred93, true93: ``(N, 93)`` normalised (or ``(N, 3J)`` for a net that predicts the dataset's
    J joints directly); com ``(N, 3)`` mm; cube ``(N,)`` mm; pred_theta ``(N, 26)``/``(N, 47)``
    radians or None; true_theta ``(N, 26)`` or None; model: a HandModel (names, limits); dataset:
    the set's benchmark (``nyu``, ``icvl``). Returns ``(report dict, pred_xyz (N, K, 3) mm,
    errors (N, K) mm, pred_uvd (N, J, 3) of the dataset's joints)``.
    """
    pred_xyz = to_mm(pred93, com, cube)
    true_xyz = to_mm(true93, com, cube)
    errors = metrics.joint_errors(pred_xyz, true_xyz)
    bench = kit.DATASETS[dataset]
    if errors.shape[1] == 31 and model is not None:
        names = list(model.keypoint_names)
    elif errors.shape[1] == bench.num_joints:
        names = list(bench.joint_names)
    else:
        names = [f"keypoint {k}" for k in range(errors.shape[1])]
    report = metrics.error_summary(errors, names)
    pred_uvd, kit_errors = dataset_joints(pred_xyz, true_xyz, dataset, source)
    report["dataset"] = dataset
    report["dataset_joints"] = metrics.error_summary(kit_errors, bench.joint_names)
    if dataset == "nyu":      # the names train.py and table1.py read
        nyu14 = report["dataset_joints"]
        report["mean_error_nyu14_mm"] = nyu14["mean_error_mm"]
        report["per_joint_error_nyu14_mm"] = nyu14["per_joint_error_mm"]
        report["frac_max_error_within_nyu14_mm"] = nyu14["frac_max_error_within_mm"]
    if errors.shape[1] == 31 and model is not None:
        # the hand turned over: the palm's normal more than 90 deg from the label's
        true_normal = model.palm_normal(true93)
        back_true = true_normal[:, 2] >= 0          # the label shows the camera the back
        wrong = np.einsum("nk,nk->n", model.palm_normal(pred93), true_normal) < 0
        report["frac_back_to_camera"] = float(back_true.mean())
        report["frac_face_wrong"] = float(wrong.mean())
        report["frac_face_wrong_back"] = float(wrong[back_true].mean()) if back_true.any() else None
        report["frac_face_wrong_palm"] = (float(wrong[~back_true].mean())
                                          if (~back_true).any() else None)

    report["mean_angle_error_deg"] = None
    report["frac_out_of_limits"] = None
    if pred_theta is None:
        report["angle_note"] = "n/a: the net has no theta blob (direct joint regression?)"
        return report, pred_xyz, errors, pred_uvd
    free_ids = np.asarray(model.free_ids)
    try:
        outside = metrics.out_of_limits(pred_theta, model.lower, model.upper, free_ids)
    except ValueError as err:
        raise InputError(f"theta blob: {err}") from None
    report["frac_out_of_limits"] = float(outside.mean())
    report["frames_out_of_limits"] = int(outside.sum())
    if true_theta is None:
        report["angle_note"] = "n/a: the true angles are not known (no theta in the meta file)"
        return report, pred_xyz, errors, pred_uvd
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
    return report, pred_xyz, errors, pred_uvd


def joint_record_width(split):
    """Values per record of a split's joint LMDB (93 for the 31 keypoints, 48 for ICVL's 16)."""
    with split.open("joint") as db:
        for _, shape, _ in db.iter_records():
            return int(np.prod(shape))
    raise InputError(f"{split.lmdb('joint')}: no records")


def _default_path(value, default):
    """A default path relative to the project root when the current folder does not have it."""
    if value == default and not os.path.isdir(os.path.dirname(value)):
        return str(PROJECT / default)
    return value


def run_weights(args):
    from deepmodel.model.hand_model import HandModel
    from deepmodel.nets.net_io import default_model, input_blob, load_net, output_blob

    args.model = args.model or default_model(args.weights)
    args.lmdb = _default_path(args.lmdb, DEFAULT_LMDB)

    net = load_net(args.model, args.weights)
    data_blob = input_blob(net, args.input, args.model)
    # check the LMDBs and the meta file before the long forward pass
    split = LmdbSplit(args.lmdb)
    with split.open("depth") as probe:
        meta = split.read_meta(len(probe))
    joints_blob = output_blob(net, args.blob, joint_record_width(split), args.model, "--blob")
    theta_blob = args.theta_blob if args.theta_blob in net.blobs else None
    if theta_blob is not None and args.theta_blob == args.blob:
        theta_blob = None
    com, cube, frame, true_theta, dataset = (meta.com, meta.cube, meta.frame, meta.theta,
                                             meta.dataset)
    if dataset not in DATASET_CAMERAS:
        raise InputError(f"{split.meta_path}: dataset '{dataset}' is not one of "
                         f"{', '.join(DATASET_CAMERAS)}")

    out = run_net_on_lmdb(net, data_blob, split, joints_blob, theta_blob, args.batch_size,
                          progress=not args.quiet)
    for what, values in (("joints", out["pred"]), ("angles", out["theta"])):
        bad = np.zeros(0, bool) if values is None else ~np.all(np.isfinite(values), axis=1)
        if bad.any():
            raise InputError(f"{args.weights}: the net predicts non-finite {what} for "
                             f"{int(bad.sum())} of {len(bad)} frames, the first frame "
                             f"{int(frame[np.flatnonzero(bad)[0]])} (diverged training?)")
    model = HandModel.nyu()
    report, pred_xyz, errors, pred_uvd = evaluate_net_outputs(
        out["pred"], out["true"], com, cube, out["theta"], true_theta, model, dataset,
        f"{args.model}, blob '{joints_blob}'")
    bench = kit.DATASETS[dataset]
    outdir = pathlib.Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
    json_path = pathlib.Path(args.json) if args.json else outdir / "eval.json"
    uvd_name = f"predictions_{dataset}{bench.num_joints}_uvd.txt"
    # one set: every file staged, eval.json renamed last (plumbing.OutputSet)
    with OutputSet(json_path) as outs:
        report = write_net_outputs(args, outs, outdir, json_path, uvd_name, report, out, frame,
                                   pred_xyz, pred_uvd, errors, joints_blob, theta_blob, dataset,
                                   bench)
    print_net_report(report, errors, dataset, bench, json_path, outdir, uvd_name)
    return 0


def write_net_outputs(args, outs, outdir, json_path, uvd_name, report, out, frame, pred_xyz,
                      pred_uvd, errors, joints_blob, theta_blob, dataset, bench):
    """Mode 1's files, each written to its staged name of ``outs``; returns the final report."""
    order = np.argsort(frame, kind="stable")
    write_uvd_file(outs.stage(outdir / uvd_name), pred_uvd[order])
    arrays = {"xyz_mm": pred_xyz[order], "frame": frame[order]}
    if out["theta"] is not None:
        arrays["theta"] = out["theta"][order]
    write_npz(outs.stage(outdir / "predictions.npz"), compressed=True, **arrays)
    thr = list(metrics.THRESHOLDS_MM)
    label = pathlib.Path(args.weights).stem
    series = [(f"{label}: {errors.shape[1]} joints", report)]
    if report["dataset_joints"]["per_joint_error_mm"].keys() != report["per_joint_error_mm"].keys():
        series.append((f"{label}: {bench.num_joints} {dataset.upper()} joints",
                       report["dataset_joints"]))
    plot_success_rates(series, outs.stage(outdir / "threshold.png"),
                       f"{pathlib.Path(args.lmdb).name}: {report['frames']} frames")
    plot_per_joint([(label, list(report["per_joint_error_mm"].values()))],
                   report["per_joint_error_mm"].keys(), outs.stage(outdir / "per_joint.png"),
                   f"per-keypoint mean error, mean {report['mean_error_mm']:.2f} mm")
    report = {"mode": "net", "weights": str(args.weights), "model": str(args.model),
              "lmdb": str(args.lmdb), "blob": joints_blob, "theta_blob": theta_blob, **report,
              "files": {"predictions_uvd": str(outdir / uvd_name),
                        "predictions_npz": str(outdir / "predictions.npz"),
                        "threshold": str(outdir / "threshold.png"),
                        "per_joint": str(outdir / "per_joint.png")}}
    write_json(outs.stage(json_path), report)
    return report


def print_net_report(report, errors, dataset, bench, json_path, outdir, uvd_name):
    fr = report["frac_max_error_within_mm"]
    print(f"frames: {report['frames']}")
    print(f"dataset: {dataset} (from the meta file)")
    print(f"mean joint error: {report['mean_error_mm']:.2f} mm ({errors.shape[1]} joints), "
          f"{report['dataset_joints']['mean_error_mm']:.2f} mm ({bench.num_joints} "
          f"{dataset.upper()} joints, the kit's camera)")
    print(f"frames with the worst joint within 20/40/80 mm: {100 * fr['20']:.1f}% / "
          f"{100 * fr['40']:.1f}% / {100 * fr['80']:.1f}%")
    if report.get("frac_face_wrong") is not None:
        parts = [f"{100 * report[key]:.1f}% of those showing the {face}"
                 for face, key in (("palm", "frac_face_wrong_palm"), ("back", "frac_face_wrong_back"))
                 if report[key] is not None]
        print(f"frames whose hand is turned over (palm normal over 90 deg from the label's): "
              f"{100 * report['frac_face_wrong']:.1f}% ({', '.join(parts)}; the labels show the "
              f"back in {100 * report['frac_back_to_camera']:.1f}%)")
    if report["mean_angle_error_deg"] is not None:
        print(f"mean angle error: {report['mean_angle_error_deg']:.2f} deg")
    else:
        print(f"mean angle error: {report['angle_note']}")
    if report["frac_out_of_limits"] is not None:
        print(f"frames with an angle out of its limits: {100 * report['frac_out_of_limits']:.1f}%")
    else:
        print("frames with an angle out of its limits: n/a (no theta blob)")
    print(f"wrote {json_path}, {outdir / 'threshold.png'}, {outdir / 'per_joint.png'}, "
          f"{outdir / uvd_name}")


def build_parser():
    p = ArgumentParser(
        description="Evaluate a trained net on the test LMDBs (--weights) or community-format "
                    "prediction files against labels (--predictions, --labels).",
        formatter_class=ArgumentDefaultsHelpFormatter)
    mode = p.add_argument_group("mode 1: a trained net")
    mode.add_argument("--weights", help=".caffemodel of the trained net (default, when no "
                      "--predictions are given: the newest trained weights in the parent of --out "
                      "(results/), else the weights shipped in models/default/ for the default "
                      "--model)")
    mode.add_argument("--model", default=None, help=MODEL_HELP)
    mode.add_argument("--lmdb", default=DEFAULT_LMDB,
                      help="LMDB prefix: reads PREFIX_depth, PREFIX_joint, PREFIX_meta.npz")
    mode.add_argument("--input", default=None, help="the net's image input blob (default: its "
                      "only input)")
    mode.add_argument("--blob", default="joints", help="output blob with (N, 93) joints")
    mode.add_argument("--theta-blob", default="theta", help="blob with the predicted angles "
                      "(N, 26) or (N, 47); angle figures are n/a when the net has none")
    mode.add_argument("--batch-size", type=positive_int, default=256, help="frames per forward pass")
    pred = p.add_argument_group("mode 2: prediction files (J joints x u, v, d per line, the "
                                "evaluation kit's format; plain text, .xz or .gz)")
    pred.add_argument("--predictions", nargs="+", metavar="FILE", help="prediction files")
    pred.add_argument("--labels", help="label file in the same format (default: the repository's "
                      "test labels of the dataset, NYU or ICVL)")
    pred.add_argument("--dataset", choices=sorted(kit.DATASETS), default=None,
                      help="camera and joints of the kit: nyu (14 joints), icvl (16), msra (21) "
                      "(default: inferred from the joints per line)")
    pred.add_argument("--names", nargs="+", help="legend names (default: file names)")
    pred.add_argument("--sort", action="store_true", help="order the table and plots by mean "
                      "error")
    p.add_argument("--out", default=DEFAULT_OUT, help="folder for the JSON, plots, predictions")
    p.add_argument("--json", default=None, help="JSON file (default: OUT/eval.json)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.weights is not None and args.predictions is not None:
        raise InputError("give either --weights (evaluate a net) or --predictions with --labels, "
                         "not both")
    check_output_file(args.json, "--json")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise InputError(f"--out {args.out}: is a file, not a folder")
    out = pathlib.Path(args.out)
    names = ["threshold.png", "per_joint.png", "predictions.npz"] + [
        f"predictions_{d}{b.num_joints}_uvd.txt" for d, b in sorted(kit.DATASETS.items())]
    check_outputs([("--json", args.json or out / "eval.json")] + [("--out", out / n) for n in names],
                  [(f"the predictions {f}", f) for f in args.predictions or ()]
                  + [("--labels", args.labels), ("--weights", args.weights), ("--model", args.model)]
                  + ([] if args.predictions else LmdbSplit(args.lmdb).inputs("--lmdb")))
    if args.predictions is not None:
        return run_predictions(args)
    if args.batch_size < 1:
        raise InputError(f"--batch-size {args.batch_size}: must be positive")
    if args.weights is None:          # the card's `python tools/test_net.py`: the obvious net
        args.weights, where = default_weights(pathlib.Path(args.out).parent, args.model)
        print(f"weights: {where}: {args.weights}", flush=True)
    return run_weights(args)


cli = console(main)   # the `deepmodel-test` command (pyproject.toml)

if __name__ == "__main__":
    run(main)
