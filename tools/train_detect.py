#!/usr/bin/env python3
"""Train the hand detector (python data_prep/hand_crop/detect.py) on rendered scenes with a person in them, and score it.

    tools/train_detect.py                      # what `make detect-net` runs (about 15 min on 2 cores)
    tools/train_detect.py --frames 300 --iters 30 --eval-frames 100 --out /tmp/d.caffemodel

1. **Scenes**: ``--frames`` scenes of :func:`deepmodel.data.synthetic.scenes.make_scenes` (NYU's
   camera; a hand beside the body at the body's depth, in front of it, a desk or an object nearer
   than the hand; 30/20/20/30 %, more of the harder kinds than the test sets), seed ``--seed``;
   the palm centre (NYU joint 34) is known.
2. **Training** with pycaffe's solver on ``prototxt/solver_detect.prototxt`` (Adam, batch 32,
   ``--iters`` iterations; ``prototxt/train_detect.prototxt`` has Input layers fed here): input the
   frame at the detector's fixed focal length, target a Gaussian heat map at the palm centre,
   every other batch mirrored left-right.
3. **Evaluation** on ``--eval-frames`` other scenes (seed ``--seed + 1``; the goal's test set is
   the default 2000): the share of frames whose crop centre lies within 30 mm of the palm centre,
   for the nearest-surface localiser alone (with its learned refinement) and for the detector
   (with the same refinement), overall and per scene kind, and the centre errors.
4. **Output**: the weights (``--out``, default ``models/detect/detect_nyu.caffemodel``, tracked in
   git) and beside them a JSON record (``.json``) of the command, settings and figures.

No real frame is used here.
"""
if __name__ == "__main__" and not __package__:   # a script outside the venv: say how to enter it
    import _venv_check  # noqa: F401
import argparse
import pathlib
import shutil
import sys
import tempfile
import time

import numpy as np
from tqdm import tqdm

from deepmodel.data.datasets.camera import NYU_CAMERA
from deepmodel.data.hand_crop.crop import crop_depth
from deepmodel.data.hand_crop.detect import (WEIGHTS, HandDetector, HandFinder,
                                             detector_input, heat_target, input_size)
from deepmodel.data.hand_crop.refine import offset_target
from deepmodel.data.hand_crop.locate import HandNotFound, learned_refiner
from deepmodel.data.synthetic.scenes import KIND_SHARE, KINDS, make_scenes
from deepmodel.nets import netspec as mn
from deepmodel.nets.training import refine_rms_mm, train_in_memory, train_refine_net
from deepmodel.plumbing import (PROJECT, ArgumentParser, InputError, atomic_path, check_outputs,
                                int_in, nonneg_int, run, worker_results, write_json)

CUBE_MM = 300.0
FOUND_MM = 30.0            # the goal: crop centre within this of the palm centre
TRAIN_SHARES = (0.30, 0.20, 0.20, 0.30)   # training scenes: more of the rarer, harder kinds
JITTER_MM = (10.0, 20.0, 40.0)     # the scene refiner's crops: palm centre + Gaussian (per axis)
MAX_OFFSET_MM = 150.0
CHUNK = 50


def _init():
    from deepmodel.model.hand_model import HandModel
    from deepmodel.data.synthetic.nyu import PoseSampler

    _init.sampler = PoseSampler(HandModel.nyu())


def _chunk(task):
    seed, start, n, shares = task
    rng = np.random.default_rng([seed, start])
    depth, palm, kind = make_scenes(_init.sampler, rng, n, shares=shares)
    return depth, palm, kind


def scenes(n, seed, progress, desc, workers=2, shares=KIND_SHARE):
    """Yields ``(depth (H, W) uint16 mm, palm (3,) mm, kind)`` for ``n`` scenes of seed ``seed``
    (the same frames whatever the number of workers), the kinds drawn with ``shares``."""
    tasks = [(seed, s, min(CHUNK, n - s), shares) for s in range(0, n, CHUNK)]
    with tqdm(total=n, desc=desc, unit="scene", disable=not progress) as bar, \
            worker_results(_chunk, _init, (), tasks, workers) as results:
        for depth, palm, kind in results:
            for i in range(len(depth)):
                yield depth[i], palm[i], int(kind[i])
            bar.update(len(depth))


def training_set(n, seed, progress, with_crops=True):
    """The detector's inputs ``(n, rows, cols)`` and targets ``(n, rows/2, cols/2)`` (float16),
    and the scene refiner's crops ``(3n', 128, 128)`` (float16) and offsets ``(3n', 3)``: three
    per scene, at the palm centre moved by a Gaussian of 10, 20 and 40 mm per axis (kept within
    150 mm of it)."""
    size = input_size(NYU_CAMERA, (NYU_CAMERA.height, NYU_CAMERA.width))
    rng = np.random.default_rng([seed, 1])
    xs, ys, crops, offsets = [], [], [], []
    for depth, palm, _ in scenes(n, seed, progress, "training scenes", shares=TRAIN_SHARES):
        xs.append(detector_input(depth, NYU_CAMERA, size).astype(np.float16))
        ys.append(heat_target(NYU_CAMERA.xyz_to_uvd(palm)[:2], NYU_CAMERA, depth.shape, size)
                  .astype(np.float16))
        for sd in JITTER_MM if with_crops else ():
            x = palm + np.clip(rng.normal(0, sd, 3), -MAX_OFFSET_MM / 2, MAX_OFFSET_MM / 2)
            c = NYU_CAMERA.xyz_to_uvd(x)
            crops.append(crop_depth(depth, c, CUBE_MM, NYU_CAMERA).astype(np.float16))
            offsets.append(offset_target(c, palm, CUBE_MM, NYU_CAMERA))
    return (np.stack(xs), np.stack(ys), np.array(crops, np.float16).reshape(-1, 128, 128),
            np.asarray(offsets, np.float32).reshape(-1, 3))


def train_detector(xs, ys, iters, folder, progress):
    """The detector with pycaffe's solver, every other batch mirrored left-right."""
    def feed(net, it, rng):
        idx = rng.integers(0, len(xs), net.blobs["depth"].data.shape[0])
        x, y = xs[idx], ys[idx]
        if it % 2:
            x, y = x[:, :, ::-1], y[:, :, ::-1]
        net.blobs["depth"].data[:, 0] = x
        net.blobs["heat_gt"].data[:, 0] = y

    return train_in_memory(mn.detect_net(deploy=False, size=xs.shape[1:]), mn.detect_solver(),
                           feed, iters, folder, mn.DETECT_SEED, progress, "detector",
                           lambda losses: f"loss={np.mean(losses[-50:]):.4f}")


def evaluate(detector, n, seed, progress):
    """Centre errors (mm) against the palm centre, the nearest-surface localiser and the
    detector (both refined), and each scene's kind -> dict of arrays."""
    refine = learned_refiner()
    finders = {"nearest": HandFinder(NYU_CAMERA, CUBE_MM, detector=None, refine=refine),
               "detector": HandFinder(NYU_CAMERA, CUBE_MM, detector=detector, refine=refine)}
    errors = {k: [] for k in finders}
    kinds, kept = [], 0
    for depth, palm, kind in scenes(n, seed, progress, "evaluation scenes"):
        kinds.append(kind)
        for name, finder in finders.items():
            try:
                center, how = finder(depth)
            except HandNotFound:
                errors[name].append(np.inf)
                continue
            kept += name == "detector" and how == "nearest"
            errors[name].append(float(np.linalg.norm(NYU_CAMERA.uvd_to_xyz(center) - palm)))
    out = {k: np.asarray(v) for k, v in errors.items()}
    out["kind"], out["kept"] = np.asarray(kinds), kept
    return out


def summary(err, kinds):
    found = err <= FOUND_MM
    fig = {"found_pct": round(100.0 * float(found.mean()), 2), "frames": int(len(err)),
           "median_mm": round(float(np.median(err)), 2)}
    fig["by_kind_found_pct"] = {k: round(100.0 * float(found[kinds == i].mean()), 2)
                                for i, k in enumerate(KINDS) if np.any(kinds == i)}
    return fig


def parse_args(argv):
    p = ArgumentParser(description=__doc__.split("\n\n")[0],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int_in(1, 200_000), default=15000,
                   help="rendered training scenes (default 15000)")
    p.add_argument("--eval-frames", type=int_in(1, 200_000), default=2000,
                   help="evaluation scenes (default 2000: the goal's test set)")
    p.add_argument("--seed", type=nonneg_int, default=21, help="seed of the training scenes "
                   "(evaluation: +1)")
    p.add_argument("--iters", type=int_in(1, 1_000_000), default=mn.DETECT_MAX_ITER,
                   help=f"solver iterations (default {mn.DETECT_MAX_ITER})")
    p.add_argument("--refine-iters", type=int_in(0, 1_000_000), default=mn.REFINE_MAX_ITER,
                   help=f"solver iterations of the scene refiner (default {mn.REFINE_MAX_ITER}; 0: "
                   "keep the one beside --out)")
    p.add_argument("--out", type=pathlib.Path, default=WEIGHTS,
                   help="the detector's weights file (default models/detect/detect_nyu.caffemodel; "
                   "the scene refiner's is written beside it, <name>_refine.caffemodel)")
    p.add_argument("--eval-only", action="store_true", help="no training: score the weights "
                   "--out names and rewrite the evaluation in their JSON record")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if args.out.suffix != ".caffemodel":
        raise InputError(f"{args.out}: the weights file must end in .caffemodel")
    if args.out.exists() and not args.out.is_file():
        raise InputError(f"{args.out}: exists and is not a file")
    check_outputs([("--out", args.out), ("--out", args.out.with_suffix(".json"))]
                  + ([("--out", refiner_path(args.out))] if args.refine_iters else []),
                  generated=[WEIGHTS, WEIGHTS.with_suffix(".json"), refiner_path(WEIGHTS)])
    return args


def scores(res):
    figures = {k: summary(res[k], res["kind"]) for k in ("nearest", "detector")}
    figures["detector"]["first_guess_kept"] = int(res["kept"])
    return figures


def print_scores(figures, kinds, seed):
    print(f"[detect] hand found (centre within {FOUND_MM:g} mm of the palm) on {sum(kinds.values())} "
          f"scenes with a person (seed {seed}; {kinds}):")
    for k, name in (("nearest", "nearest surface"), ("detector", "learned detector")):
        f = figures[k]
        per = ", ".join(f"{kk} {v:.1f}%" for kk, v in f["by_kind_found_pct"].items())
        print(f"  {name:17s} {f['found_pct']:5.1f}%  median {f['median_mm']:6.1f} mm  ({per})")


def eval_only(args):
    import json

    if not args.out.is_file():
        raise InputError(f"{args.out}: no such weights file to score")
    if not refiner_path(args.out).is_file():
        raise InputError(f"{refiner_path(args.out)}: no such weights file (the scene refiner)")
    res = evaluate(HandDetector(weights=args.out, refine_weights=refiner_path(args.out)), args.eval_frames, args.seed + 1, not args.quiet)
    kinds = {k: int(np.sum(res["kind"] == i)) for i, k in enumerate(KINDS)}
    record_path = args.out.with_suffix(".json")
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    record.update(eval_seed=args.seed + 1, eval_scenes=kinds, evaluation=scores(res),
                  evaluation_command=" ".join(["tools/train_detect.py", "--eval-only",
                                               *(["--out", rel(args.out)] if args.out != WEIGHTS else [])]))
    write_json(record_path, record)
    print_scores(record["evaluation"], kinds, args.seed + 1)
    return 0


def rel(path):
    path = pathlib.Path(path).resolve()
    return str(path.relative_to(PROJECT)) if path.is_relative_to(PROJECT) else str(path)


def refiner_path(weights):
    """The scene refiner's weights beside the detector's: ``<name>_refine.caffemodel``."""
    return weights.with_name(weights.stem + "_refine.caffemodel")


def main(argv=None):
    args = parse_args(argv)
    if args.eval_only:
        return eval_only(args)
    refine_out = refiner_path(args.out)
    keep = args.refine_iters == 0
    old_record = {}
    if keep:
        import json

        if not refine_out.is_file():
            raise InputError(f"--refine-iters 0 keeps the scene refiner, but {refine_out} is missing")
        if args.out.with_suffix(".json").is_file():
            old_record = json.loads(args.out.with_suffix(".json").read_text())
    t0 = time.perf_counter()
    xs, ys, crops, offsets = training_set(args.frames, args.seed, not args.quiet, with_crops=not keep)
    t_data = time.perf_counter() - t0
    print(f"[detect] {len(xs)} training scenes, input {xs.shape[2]}x{xs.shape[1]}, "
          f"{len(crops)} refinement crops, in {t_data:.0f} s")
    with atomic_path(args.out) as tmp, atomic_path(refine_out) as tmp_refine, \
            tempfile.TemporaryDirectory() as folder:
        t1 = time.perf_counter()
        net, losses = train_detector(xs, ys, args.iters, pathlib.Path(folder), not args.quiet)
        net.save(str(tmp))
        del xs, ys
        t2 = time.perf_counter()
        if keep:
            shutil.copyfile(refine_out, tmp_refine)
            refiner = dict(old_record.get("refiner", {"weights": rel(refine_out)}))
            refiner.setdefault("command", old_record.get("command", "unknown"))   # made by
        else:
            refine_net, refine_losses = train_refine_net(crops, offsets, args.refine_iters,
                                                         pathlib.Path(folder), not args.quiet,
                                                         "scene refiner")
            refine_net.save(str(tmp_refine))
            refiner = {"weights": rel(refine_out), "net": "prototxt/deploy_refine.prototxt",
                       "crops": int(len(crops)), "jitter_mm": list(JITTER_MM),
                       "iterations": args.refine_iters, "batch": mn.REFINE_BATCH,
                       "final_train_rms_mm": round(refine_rms_mm(refine_losses, CUBE_MM / 2), 2)}
        t_train = (t2 - t1, time.perf_counter() - t2)
        res = evaluate(HandDetector(weights=tmp, refine_weights=tmp_refine), args.eval_frames,
                       args.seed + 1, not args.quiet)
    figures = scores(res)
    kinds = {k: int(np.sum(res["kind"] == i)) for i, k in enumerate(KINDS)}
    record = {
        "command": " ".join(["tools/train_detect.py", *(argv if argv is not None else sys.argv[1:])]),
        "weights": rel(args.out),
        "net": "prototxt/deploy_detect.prototxt", "training_scenes": args.frames, "seed": args.seed,
        "eval_seed": args.seed + 1, "eval_scenes": kinds, "iterations": args.iters,
        "batch": mn.DETECT_BATCH, "final_loss": round(float(np.mean(losses[-100:])), 5),
        "refiner": refiner,
        "seconds": {"data": round(t_data, 1), "detector": round(t_train[0], 1),
                    "refiner": old_record.get("seconds", {}).get("refiner") if keep
                    else round(t_train[1], 1)},
        "found_within_mm": FOUND_MM, "evaluation": figures,
    }
    write_json(args.out.with_suffix(".json"), record)
    print(f"[detect] detector {args.iters} iterations in {t_train[0]:.0f} s -> {args.out}; scene "
          f"refiner {args.refine_iters} iterations in {t_train[1]:.0f} s -> {refine_out}")
    print_scores(figures, kinds, args.seed + 1)
    return 0


if __name__ == "__main__":
    run(main)
