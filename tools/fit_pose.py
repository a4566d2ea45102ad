#!/usr/bin/env python
"""Fit the hand model to labelled joints: model parameters (theta) for every frame of a label set.

Inputs (``--format auto`` picks by name):
  * ``*.txt`` (or ``.txt.xz``): the evaluation kit's uvd format. NYU (default): 14 joints, NYU
    camera, keypoints 0,3,5,8,10,13,15,18,30,29,28,25,26,24 (the model's ``eval14``). ICVL
    (``--dataset icvl``): 16 joints, ICVL camera, the keypoints of the model's joint set
    ``icvl16`` (docs/icvl.md); ICVL's hand is the model's mirrored in x, so the labels are
    mirrored onto the model's hand (``labels_mm`` and the fit are in the model's frame; the npz
    records ``mirror_x``). ``--model icvl16`` fits the hand calibrated to ICVL.
  * ``*.mat``: an NYU ``joint_data.mat`` (camera 0): all 31 keypoints; the offset is NYU joint 34,
    the published crop centre.
  * ``*_meta.npz``: an LMDB set's meta file (``data/lmdb/nyu_<split>_meta.npz``); the joints are read
    from the sibling ``nyu_<split>_joint`` LMDB (93 values, normalised) and brought back to mm with
    the meta's ``com`` and ``cube``; offset = com and, by default, the scale is fixed to cube / 2, so
    the fitted theta are labels in the network's own convention. If the meta holds the true
    ``theta`` (synthetic data) the angle error of the fit is reported too.

Output ``--out fits.npz``: ``model`` (its name), ``theta`` (N, 26) layer convention, ``scale`` (N,) mm per normalised unit,
``offset`` (N, 3) mm, ``error_mm`` (N,) mean joint distance, with
``HandModel.forward(theta)[:, keypoints] * scale[:, None, None] + offset[:, None, :]`` = the labels
(``labels_mm`` (N, k, 3), xyz in mm, y up) up to ``error_mm``; also ``keypoints``, ``frame`` (the
0-based index of each frame in the input), ``segment``, ``objective``, ``settings`` (JSON).
A histogram of the errors goes next to it (``<out stem>_error.png``).

The objective, solver and starts are described in ``python_layers/fitting/pose_fitting.py``.
"""
if __name__ == "__main__" and not __package__:   # a script outside the venv: say how to enter it
    import _venv_check  # noqa: F401
import json
import os
import pathlib
import time

import numpy as np


from deepmodel.plumbing import (InputError, check_outputs, console, open_text, run, save_figure,
                                write_npz)
from deepmodel.plumbing import ArgumentParser, finite_float, int_in, nonneg_int  # checked as parsed
from deepmodel.data.datasets import icvl
from deepmodel.data.datasets import nyu
from deepmodel.data.datasets.camera import ICVL_CAMERA, NYU_CAMERA
from deepmodel.data.datasets.labels import NYU14_KEYPOINTS, load_uvd_file
from deepmodel.data.records.split import LmdbSplit, to_mm


# ----------------------------------------------------------------------------------------------
# inputs: each loader returns a dict with labels (N, k, 3) mm, keypoints (k,), frame (N,),
# total (frames in the input before skipping/slicing), offset (N, 3) or None, scale (N,) or None,
# segment (N,) or None, theta (N, 26) or None, skipped (list of str), what (str)

def load_uvd(path, skip_bad, model, dataset="nyu", joint_set=None):
    """A kit-format label file: NYU's 14 joints (NYU camera, keypoints ``eval14``) or ICVL's 16
    (ICVL camera, keypoints and mirror of the model's joint set, e.g. ``icvl16``). Labels are
    returned in the model's frame (an ICVL hand mirrored in x when the joint set says so)."""
    if dataset == "nyu":
        keypoints, sign, camera = np.array(NYU14_KEYPOINTS), np.ones(3), NYU_CAMERA
        what = "14-joint uvd labels (NYU camera)"
    else:
        from deepmodel.model.hand_model import ModelDefinitionError
        try:
            js = model.joint_set(joint_set or "icvl16")
        except ModelDefinitionError as err:
            raise InputError(str(err)) from None
        keypoints, sign, camera = js.keypoints, js.sign, ICVL_CAMERA
        what = (f"16-joint uvd labels (ICVL camera), joint set {js.name}"
                + (" (mirrored in x onto the model's hand)" if js.mirror_x else ""))
    uvd, bad = load_uvd_file(path, num_joints=len(keypoints), skip_bad_rows=skip_bad)
    # 0-based frame index of each kept row: position among the non-blank lines
    with open_text(path) as fh:
        nonblank = [i for i, line in enumerate(fh, 1) if line.strip()]
    bad_set = set(bad)
    frame = np.array([f for f, line in enumerate(nonblank) if line not in bad_set], dtype=np.int64)
    if len(frame) != len(uvd):
        raise InputError(f"{path}: changed while being read")
    return dict(labels=camera.uvd_to_xyz(uvd) * sign, keypoints=np.asarray(keypoints), frame=frame,
                total=len(nonblank), offset=None, scale=None, segment=None, theta=None,
                skipped=[f"line {b}" for b in bad], what=what, mirror_x=bool(sign[0] < 0))


def load_joint_mat(path, model, skip_bad):
    from scipy.io import loadmat

    try:
        mat = loadmat(path, variable_names=["joint_xyz"])
    except Exception as err:  # scipy raises several kinds for a file that is not MATLAB v5
        raise InputError(f"{path}: not a readable MATLAB file ({' '.join(str(err).split())})") from None
    if "joint_xyz" not in mat:
        raise InputError(f"{path}: no variable 'joint_xyz' (expected an NYU joint_data.mat)")
    xyz = np.asarray(mat["joint_xyz"])
    if xyz.ndim != 4 or xyz.shape[-1] != 3 or xyz.shape[2] < 36 or xyz.shape[1] == 0:
        raise InputError(f"{path}: joint_xyz has shape {xyz.shape}, expected (cameras, N, 36, 3)")
    xyz = xyz[0].astype(np.float64)                            # camera 0: (N, 36, 3) mm, y up
    ok = np.isfinite(xyz).all(axis=(1, 2))
    frame = np.arange(len(xyz))
    if not ok.all():
        first = int(np.flatnonzero(~ok)[0])
        if not skip_bad:
            raise InputError(f"{path}: frame {first + 1} (1-based) of joint_xyz has a NaN or "
                             f"infinite value ({(~ok).sum()} such frames; --skip-bad-rows skips them)")
    nyu_joints = np.asarray(model.nyu_joint_of_keypoint)
    return dict(labels=xyz[ok][:, nyu_joints], keypoints=np.arange(model.num_keypoints), frame=frame[ok],
                total=len(xyz), offset=xyz[ok, nyu.PALM_JOINT], scale=None, segment=None,
                theta=None, skipped=[f"frame {f + 1}" for f in np.flatnonzero(~ok)],
                what="NYU joint_data.mat, camera 0, 31 keypoints")


def load_lmdb_meta(path, model, skip_bad):
    split = LmdbSplit.from_meta_path(path)
    meta = split.read_meta()
    com, cube, frame, theta, n = meta.com, meta.cube, meta.frame, meta.theta, len(meta)
    joint_path = split.lmdb("joint")
    _, rows = split.read_labels("joint")
    width = 3 * model.num_keypoints
    if rows.shape != (n, width):
        raise InputError(f"{joint_path}: {rows.shape[0]} records of {rows.shape[1]} values, "
                         f"expected {n} (as {path}) of {width}")
    rows = rows.astype(np.float64).reshape(n, model.num_keypoints, 3)
    labels = to_mm(rows, com, cube)
    ok = np.isfinite(labels).all(axis=(1, 2))
    if not ok.all() and not skip_bad:
        first = int(np.flatnonzero(~ok)[0])
        raise InputError(f"{joint_path}: record {first} has a NaN or infinite value "
                         f"({(~ok).sum()} such records; --skip-bad-rows skips them)")
    # frames of one cube size form one segment (NYU test: cube 261 mm marks subject 2)
    _, segment = np.unique(cube, return_inverse=True)
    clipped = int((np.abs(rows[ok]) >= 1.0).any(axis=(1, 2)).sum())
    return dict(labels=labels[ok], keypoints=np.arange(model.num_keypoints), frame=frame[ok],
                total=n, offset=com[ok], scale=cube[ok] / 2.0, segment=segment[ok],
                theta=None if theta is None else theta[ok],
                skipped=[f"record {i}" for i in np.flatnonzero(~ok)],
                what=f"LMDB {pathlib.Path(joint_path).name} (31 keypoints, offset = com, "
                     f"cube from meta; {clipped} frames have joints clipped to the cube)")


def detect_format(path):
    name = str(path).lower()
    if name.endswith("_meta.npz"):
        return "lmdb-meta"
    if name.endswith(".mat"):
        return "mat"
    return "uvd"


# ----------------------------------------------------------------------------------------------
def parse_frames(text, total):
    """``A:B`` (0-based, B exclusive; either side may be empty) -> slice."""
    try:
        a, b = text.split(":")
        start = int(a) if a.strip() else 0
        stop = int(b) if b.strip() else total
    except ValueError:
        raise InputError(f"--frames {text!r}: expected START:STOP (0-based, e.g. 0:200)") from None
    if not 0 <= start < stop:
        raise InputError(f"--frames {text!r}: need 0 <= START < STOP")
    return start, stop


def parse_segments(text, data):
    """Segment id per frame: 'auto', 'none' or a list of 1-based first frames, e.g. '1,2441'."""
    frame, total = data["frame"], data["total"]
    if text == "auto":
        if data["segment"] is not None:
            return data["segment"], "one per cube size in the meta file"
        if total == nyu.TEST_FRAMES and data.get("dataset", "nyu") == "nyu":
            return (frame >= nyu.SUBJECT2_FIRST_FRAME).astype(np.int64), \
                "NYU test subjects: frames 1-2440 and 2441-8252"
        if total == icvl.TEST_FRAMES and data.get("dataset") == "icvl":
            return (frame >= icvl.TEST_SEQUENCE_2_FIRST).astype(np.int64), \
                "ICVL test sequences: frames 1-702 and 703-1596"
        return np.zeros(len(frame), np.int64), "one sequence"
    if text == "none":
        return np.zeros(len(frame), np.int64), "one sequence"
    try:
        starts = sorted(int(s) for s in text.split(","))
    except ValueError:
        raise InputError(f"--segments {text!r}: expected auto, none or 1-based first frames "
                         "such as 1,2441") from None
    if not starts or starts[0] < 1:
        raise InputError(f"--segments {text!r}: first frames are 1-based (>= 1)")
    return np.searchsorted(np.array(starts) - 1, frame, side="right").astype(np.int64) - 1, \
        f"sequences starting at frames {','.join(map(str, starts))}"


def starting_scale(args, data, segment, model):
    """Starting (or, with --scale fixed, final) scale per frame, mm per normalised unit."""
    if args.scale_mm is not None:
        try:
            vals = [float(v) for v in args.scale_mm.split(",")]
        except ValueError:
            raise InputError(f"--scale-mm {args.scale_mm!r}: expected numbers (mm per unit)") from None
        if any(not np.isfinite(v) or v <= 0 for v in vals):
            raise InputError(f"--scale-mm {args.scale_mm!r}: scales must be positive")
        nseg = int(segment.max()) + 1
        if len(vals) == 1:
            vals = vals * nseg
        if len(vals) != nseg:
            raise InputError(f"--scale-mm {args.scale_mm!r}: {len(vals)} values for {nseg} segments")
        return np.asarray(vals)[segment]
    if data["scale"] is not None:
        return data["scale"].copy()
    scale = np.full(len(segment), model.mm_per_unit)
    if (data["total"] == nyu.TEST_FRAMES and args.segments == "auto"
            and data.get("dataset", "nyu") == "nyu"):
        scale[data["frame"] >= nyu.SUBJECT2_FIRST_FRAME] *= nyu.SUBJECT2_SCALE
    return scale


# ----------------------------------------------------------------------------------------------
def parse_args(argv):
    p = ArgumentParser(
        description="Fit the 26-DoF hand model to labelled joints (bounded Levenberg-Marquardt, "
                    "all frames at once).",
        epilog="example: tools/fit_pose.py data/reference/nyu/nyu_test_groundtruth_label.txt.xz "
               "--out results/fit/fits.npz")
    p.add_argument("labels", help="label file: kit-format uvd text (NYU 14 joints, or ICVL 16 "
                                  "with --dataset icvl; .txt, .xz), NYU joint_data.mat, or an LMDB "
                                  "<set>_meta.npz")
    p.add_argument("--dataset", choices=["nyu", "icvl"], default="nyu",
                   help="whose uvd label file: NYU (14 joints, NYU camera) or ICVL (16 joints, ICVL "
                        "camera, the model's joint set --joint-set)")
    p.add_argument("--model", default="nyu31", help="hand model (python_layers/model/NAME.json): "
                   "nyu31, the paper's NYU hand; icvl16, the hand calibrated on ICVL (make "
                   "icvl-hand)")
    p.add_argument("--joint-set", default=None, help="for --dataset icvl: the model's joint set "
                   "that says which keypoints the 16 ICVL joints are (default icvl16)")
    p.add_argument("--out", required=True, help="output .npz (a histogram <stem>_error.png goes beside)")
    p.add_argument("--format", choices=["auto", "uvd", "mat", "lmdb-meta"], default="auto",
                   help="input format (default: by file name)")
    p.add_argument("--scale", choices=["frame", "sequence", "fixed"], default=None,
                   help="hand size: fitted per frame, one per sequence (segment), or fixed "
                        "(default: frame; fixed for an LMDB meta file, whose cube sets it)")
    p.add_argument("--scale-mm", default=None, metavar="S[,S2,...]",
                   help="starting (or fixed) scale in mm per normalised unit, one value or one per "
                        "segment (default 150; 130.5 for NYU test subject 2; cube/2 from a meta file)")
    p.add_argument("--segments", default="auto", metavar="auto|none|F1,F2,...",
                   help="sequences (1-based first frames): per-sequence scales and neighbour starts "
                        "stay inside one (default auto: the two NYU test subjects for an 8252-frame "
                        "input, the cube sizes of a meta file, else one)")
    p.add_argument("--prior", type=finite_float(0), default=0.3, metavar="MM_PER_RAD",
                   help="weight of the pull of the 20 finger angles towards the rest pose, in mm of "
                        "joint error per radian (default 0.3; 0 disables it)")
    p.add_argument("--restarts", type=int_in(0, 1000), default=4,
                   help="random perturbation starts per poorly fitted frame (default 4)")
    p.add_argument("--restart-above", type=finite_float(0), default=4.0, metavar="MM",
                   help="perturbation starts only for frames whose error exceeds this (default 4)")
    p.add_argument("--neighbour-passes", type=int_in(0, 100), default=1,
                   help="passes starting from the previous and next frame's solution (default 1)")
    p.add_argument("--max-iter", type=int_in(1, 100_000), default=60,
                   help="LM iterations per start (default 60)")
    p.add_argument("--frames", default=None, metavar="A:B",
                   help="fit only input frames A..B-1 (0-based), e.g. 0:200")
    p.add_argument("--skip-bad-rows", action="store_true",
                   help="skip (and report) rows with NaN or a wrong number of values instead of "
                        "stopping with an error")
    p.add_argument("--seed", type=nonneg_int, default=0, help="random seed of the perturbations")
    p.add_argument("--no-plot", action="store_true", help="do not write the histogram")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-start lines")
    args = p.parse_args(argv)
    for name in ("restarts", "neighbour_passes"):
        if getattr(args, name) < 0:
            raise InputError(f"--{name.replace('_', '-')} must be >= 0")
    if args.max_iter < 1:
        raise InputError("--max-iter must be >= 1")
    if not np.isfinite(args.prior) or args.prior < 0:
        raise InputError(f"--prior {args.prior}: must be >= 0")
    return args


def write_histogram(path, error, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = pathlib.Path(path)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    top = max(float(np.percentile(error, 99.5)), 1e-3)
    ax.hist(np.minimum(error, top), bins=80, range=(0, top), color="#4a7ab5")
    for val, name, style in ((error.mean(), "mean", "-"), (np.median(error), "median", "--"),
                             (np.percentile(error, 95), "95th pct", ":")):
        ax.axvline(val, color="k", ls=style, lw=1, label=f"{name} {val:.2f} mm")
    ax.set_xlabel("fit error per frame: mean joint distance (mm; last bin holds the rest)")
    ax.set_ylabel("frames")
    ax.set_title(title, fontsize=10)
    ax.legend()
    fig.tight_layout()
    try:
        save_figure(fig, path, format="png")
    finally:
        plt.close(fig)


def main(argv=None):
    t_start = time.perf_counter()
    args = parse_args(argv)
    from deepmodel.model.hand_model import HandModel
    from deepmodel.fitting.pose_fitting import PoseFitter, estimate_offset

    out = pathlib.Path(args.out)
    if out.suffix != ".npz":
        raise InputError(f"--out {out}: expected a .npz file name")
    if out.is_dir():
        raise InputError(f"--out {out}: is a folder")
    if not os.path.exists(args.labels):
        raise InputError(f"{args.labels}: no such file")
    check_outputs([("--out", out), ("--out", out.with_name(f"{out.stem}_error.png"))],
                  [("the labels", args.labels)])

    from deepmodel.model.hand_model import ModelDefinitionError
    try:
        model = HandModel.by_name(args.model)
    except ModelDefinitionError as err:
        raise InputError(f"--model: {err}") from None
    fmt = detect_format(args.labels) if args.format == "auto" else args.format
    if args.dataset == "icvl" and fmt != "uvd":
        raise InputError(f"--dataset icvl: expected a uvd label file, {args.labels} is {fmt}")
    if fmt == "uvd":
        data = load_uvd(args.labels, args.skip_bad_rows, model, args.dataset, args.joint_set)
        data["dataset"] = args.dataset
    elif fmt == "mat":
        data = load_joint_mat(args.labels, model, args.skip_bad_rows)
    else:
        data = load_lmdb_meta(args.labels, model, args.skip_bad_rows)
    if data["skipped"]:
        shown = ", ".join(data["skipped"][:10]) + (" ..." if len(data["skipped"]) > 10 else "")
        print(f"skipped {len(data['skipped'])} bad rows of {args.labels}: {shown}")

    segment, seg_text = parse_segments(args.segments, data)
    keep = np.ones(len(data["frame"]), bool)
    if args.frames:
        a, b = parse_frames(args.frames, data["total"])
        keep = (data["frame"] >= a) & (data["frame"] < b)
        if not keep.any():
            raise InputError(f"--frames {args.frames}: no frames of {args.labels} in that range "
                             f"(it has {data['total']})")
    for key in ("labels", "frame", "offset", "scale", "theta"):
        if data[key] is not None:
            data[key] = data[key][keep]
    segment = segment[keep]
    labels, keypoints = data["labels"], data["keypoints"]
    n = len(labels)
    scale_mode = args.scale or ("fixed" if fmt == "lmdb-meta" else "frame")
    scale0 = starting_scale(args, data, segment, model)
    offset = data["offset"] if data["offset"] is not None else estimate_offset(model, keypoints,
                                                                              labels, scale0)
    log = (lambda *a: None) if args.quiet else print
    print(f"fitting {n} frames of {args.labels}: {data['what']}; {len(keypoints)} joints; scale "
          f"{scale_mode}; segments: {seg_text}; prior {args.prior:g} mm/rad")

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    t0, c0 = time.perf_counter(), time.process_time()
    fitter = PoseFitter(model, keypoints, prior=args.prior, max_iter=args.max_iter,
                        progress=not args.quiet)
    # neighbour starts follow the frame order (a shuffled training LMDB is put back in order for
    # the fit; the output keeps the input's order)
    order = np.argsort(data["frame"], kind="stable")
    res = fitter.fit(labels[order], offset[order], scale0[order], segments=segment[order],
                     scale_mode=scale_mode, restarts=args.restarts,
                     restart_above=args.restart_above, neighbour_passes=args.neighbour_passes,
                     seed=args.seed, log=log)
    back = np.empty_like(order)
    back[order] = np.arange(len(order))
    res = {k: v[back] for k, v in res.items()}
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")

    theta, scale, err = res["theta"], res["scale"], res["error_mm"]
    outside = int(np.any((theta < model.lower) | (theta > model.upper), axis=1).sum())
    print(f"time {wall:.1f} s wall, {cpu:.1f} s CPU for the fit, {time.perf_counter() - t_start:.1f} s "
          f"with reading and setup (load average {load:.1f} at start, {load_end:.1f} at end, "
          f"{os.cpu_count()} cores)")
    print(f"fit error per frame (mean joint distance): mean {err.mean():.3f} mm, median "
          f"{np.median(err):.3f} mm, 95th percentile {np.percentile(err, 95):.3f} mm, "
          f"max {err.max():.3f} mm")
    print(f"frames with an angle outside its limits: {outside}")
    for g in np.unique(segment):
        m = segment == g
        print(f"  segment {g + 1}: {m.sum()} frames, scale median {np.median(scale[m]):.1f} "
              f"mm/unit, mean error {err[m].mean():.3f} mm")
    if data["theta"] is not None:
        d = np.degrees(np.abs(theta[:, 6:] - data["theta"][:, 6:]))
        print(f"angle error against the meta file's theta: mean {d.mean():.2f} deg, median "
              f"{np.median(d):.2f} deg")

    out.parent.mkdir(parents=True, exist_ok=True)
    settings = dict(input=str(args.labels), format=fmt, scale=scale_mode, segments=seg_text,
                    prior_mm_per_rad=args.prior, restarts=args.restarts,
                    restart_above_mm=args.restart_above, neighbour_passes=args.neighbour_passes,
                    max_iter=args.max_iter, seed=args.seed, frames=args.frames,
                    skipped=data["skipped"], seconds=wall, cpu_seconds=cpu, model=model.name,
                    dataset=data.get("dataset", "nyu"))
    write_npz(out, theta=theta, scale=scale, offset=offset, error_mm=err,
              objective=res["objective"], keypoints=np.asarray(keypoints), labels_mm=labels,
              model=np.array(model.name), mirror_x=np.array(bool(data.get("mirror_x", False))),
              frame=data["frame"], segment=segment, settings=json.dumps(settings))
    written = [str(out)]
    if not args.no_plot:
        png = out.with_name(out.stem + "_error.png")
        write_histogram(png, err, f"{pathlib.Path(args.labels).name}: {n} frames, "
                                  f"{len(keypoints)} joints, scale {scale_mode}")
        written.append(str(png))
    print("wrote " + ", ".join(written))
    return 0 if outside == 0 else 1


cli = console(main)   # the `deepmodel-fit` command (pyproject.toml)

if __name__ == "__main__":
    run(main)
