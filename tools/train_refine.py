#!/usr/bin/env python3
"""Train the hand-centre refinement net (docs/localization.md) on rendered frames with clutter.

    tools/train_refine.py                      # what `make refine-net` runs (about 4 min on 2 cores)
    tools/train_refine.py --frames 400 --iters 50 --out /tmp/r.caffemodel     # a quick try

1. **Frames**: ``--frames`` hands rendered by the project's generator
   (:func:`deepmodel.data.synthetic.nyu.make_frames`, NYU camera) in the scene of
   :func:`deepmodel.data.synthetic.nyu.add_clutter` with a second object beside the hand in half of them
   (``near_object=0.5``), seed ``--seed``; the true palm centre (NYU joint 34) is known.
2. **Crops** (:func:`deepmodel.data.hand_crop.crop.crop_depth`, 128x128, cube 300 mm), three per frame, each
   labelled with the 3D offset from its centre to joint 34 in half-cube units
   (:func:`deepmodel.data.hand_crop.refine.offset_target`): at the label-free localiser's centre
   (``locate(..., refine=None)``: the error distribution the first pass corrects); at that centre
   moved by a Gaussian of 20 mm per axis (more of the same, wider); at joint 34 moved by a Gaussian
   of 10 mm per axis (what the second pass sees). Crops more than 150 mm from joint 34 (the
   localiser missed the hand; a crop there may not show it) are left out.
3. **Training** with pycaffe's solver on ``prototxt/solver_refine.prototxt`` (Adam, batch 64,
   ``--iters`` iterations; the net ``prototxt/train_refine.prototxt`` has Input layers fed here
   with random batches).
4. **Evaluation** on ``--eval-frames`` other frames (seed ``--seed + 1``, same scene): the centre
   error against joint 34 of the localiser alone and after one and two refinement passes.
5. **Output**: the weights (``--out``, default ``models/refine/refine_nyu.caffemodel``, tracked
   in git) and beside them a JSON record (``.json``) of the command, settings and figures.

The raw NYU test frame is never used here: it is the test of the result (tests/test_localize.py).
"""
if __name__ == "__main__" and not __package__:   # a script outside the venv: say how to enter it
    import _venv_check  # noqa: F401
import argparse
import pathlib
import sys
import time

import numpy as np
from tqdm import tqdm

from deepmodel.data.datasets import nyu
from deepmodel.data.synthetic import nyu as synthetic
from deepmodel.data.datasets.camera import NYU_CAMERA
from deepmodel.data.hand_crop.crop import crop_depth
from deepmodel.data.hand_crop.locate import HandNotFound, locate
from deepmodel.data.hand_crop.refine import WEIGHTS, CentreRefiner, offset_target
from deepmodel.plumbing import (PROJECT, ArgumentParser, InputError, atomic_path, check_outputs,
                                int_in, nonneg_int, run, write_json)
from deepmodel.nets import netspec as mn
from deepmodel.nets.training import refine_rms_mm, train_refine_net

CUBE_MM = nyu.CUBE_MM
MAX_OFFSET_MM = 150.0
JITTER_COM_MM = 20.0
JITTER_TRUE_MM = 10.0
NEAR_OBJECT = 0.5


def render(n, seed, progress, desc):
    """``n`` cluttered frames: yields ``(depth (H, W) uint16 mm, joint 34 xyz (3,) mm)``."""
    from deepmodel.model.hand_model import HandModel

    rng = np.random.default_rng(seed)
    sampler = synthetic.PoseSampler(HandModel.nyu())
    with tqdm(total=n, desc=desc, unit="frame", disable=not progress) as bar:
        for b in range(0, n, 32):
            depth, _, xyz, _ = synthetic.make_frames(sampler, rng, min(32, n - b))
            depth = synthetic.add_clutter(depth, xyz, rng, near_object=NEAR_OBJECT)
            for i in range(len(depth)):
                yield depth[i], xyz[i, nyu.PALM_JOINT]
            bar.update(len(depth))


def training_crops(n, seed, progress):
    """Crops ``(m, 128, 128)`` float16 and targets ``(m, 3)`` float32, and counts."""
    rng = np.random.default_rng([seed, 1])
    crops, targets = [], []
    missed = not_found = 0
    for depth, truth in render(n, seed, progress, "training crops"):
        try:
            c0 = locate(depth, NYU_CAMERA, CUBE_MM, refine=None).center_uvd
        except HandNotFound:
            not_found += 1
            continue
        x0 = NYU_CAMERA.uvd_to_xyz(c0)
        if np.linalg.norm(x0 - truth) > MAX_OFFSET_MM:
            missed += 1
        centres = [x0, x0 + rng.normal(0, JITTER_COM_MM, 3), truth + rng.normal(0, JITTER_TRUE_MM, 3)]
        for x in centres:
            if np.linalg.norm(x - truth) > MAX_OFFSET_MM:
                continue
            c = NYU_CAMERA.xyz_to_uvd(x)
            crops.append(crop_depth(depth, c, CUBE_MM, NYU_CAMERA).astype(np.float16))
            targets.append(offset_target(c, truth, CUBE_MM, NYU_CAMERA))
    return (np.stack(crops), np.asarray(targets, np.float32),
            {"frames": n, "crops": len(crops), "localiser_missed": missed, "not_found": not_found})


def evaluate(refiner, n, seed, progress):
    """Centre errors (mm) against joint 34: localiser alone, after 1 and 2 passes -> dict of arrays."""
    passes = refiner.passes
    errors = {"localiser": [], "refined_1": [], "refined_2": []}
    try:
        for depth, truth in render(n, seed, progress, "evaluation"):
            try:
                c = locate(depth, NYU_CAMERA, CUBE_MM, refine=None).center_uvd
            except HandNotFound:
                continue
            errors["localiser"].append(np.linalg.norm(NYU_CAMERA.uvd_to_xyz(c) - truth))
            for k in (1, 2):
                refiner.passes = 1
                c = refiner(depth, NYU_CAMERA, c, CUBE_MM)
                errors[f"refined_{k}"].append(np.linalg.norm(NYU_CAMERA.uvd_to_xyz(c) - truth))
    finally:
        refiner.passes = passes
    return {k: np.asarray(v) for k, v in errors.items()}


def summary(err):
    return {"mean_mm": round(float(err.mean()), 2), "median_mm": round(float(np.median(err)), 2),
            "p95_mm": round(float(np.percentile(err, 95)), 2), "max_mm": round(float(err.max()), 2),
            "frames": int(len(err))}


def parse_args(argv):
    p = ArgumentParser(description=__doc__.split("\n\n")[0],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int_in(1, 1_000_000), default=8000,
                   help="rendered training frames (default 8000)")
    p.add_argument("--eval-frames", type=int_in(1, 1_000_000), default=512,
                   help="evaluation frames (default 512)")
    p.add_argument("--seed", type=nonneg_int, default=7,
                   help="seed of the training frames (evaluation: +1)")
    p.add_argument("--iters", type=int_in(1, 10_000_000), default=mn.REFINE_MAX_ITER,
                   help=f"solver iterations (default {mn.REFINE_MAX_ITER})")
    p.add_argument("--out", type=pathlib.Path, default=WEIGHTS,
                   help="weights file (default models/refine/refine_nyu.caffemodel)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if args.frames < 1 or args.eval_frames < 1 or args.iters < 1:
        p.error("--frames, --eval-frames and --iters must be at least 1")
    if args.out.suffix != ".caffemodel":
        raise InputError(f"{args.out}: the weights file must end in .caffemodel")
    if args.out.exists() and not args.out.is_file():
        raise InputError(f"{args.out}: exists and is not a file")
    check_outputs([("--out", args.out), ("--out", args.out.with_suffix(".json"))],
                  generated=[WEIGHTS, WEIGHTS.with_suffix(".json")])
    return args


def main(argv=None):
    args = parse_args(argv)
    t0 = time.perf_counter()
    crops, targets, counts = training_crops(args.frames, args.seed, not args.quiet)
    t_data = time.perf_counter() - t0
    print(f"[refine] {counts['crops']} crops from {counts['frames']} frames in {t_data:.0f} s "
          f"(localiser beyond {MAX_OFFSET_MM:g} mm on {counts['localiser_missed']}, no hand on "
          f"{counts['not_found']})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            t1 = time.perf_counter()
            net, losses = train_refine_net(crops, targets, args.iters, folder, not args.quiet)
            t_train = time.perf_counter() - t1
            net.save(str(tmp))
        refiner = CentreRefiner(weights=tmp)
        errors = evaluate(refiner, args.eval_frames, args.seed + 1, not args.quiet)
    figures = {k: summary(v) for k, v in errors.items()}
    record = {
        "command": " ".join(["tools/train_refine.py", *(argv if argv is not None else sys.argv[1:])]),
        "weights": str(args.out.relative_to(PROJECT)) if args.out.is_relative_to(PROJECT) else str(args.out),
        "net": "prototxt/deploy_refine.prototxt", "training": counts, "seed": args.seed,
        "eval_seed": args.seed + 1, "iterations": args.iters, "batch": mn.REFINE_BATCH,
        "near_object": NEAR_OBJECT, "cube_mm": CUBE_MM,
        "final_train_rms_mm": round(refine_rms_mm(losses, CUBE_MM / 2), 2),
        "seconds": {"data": round(t_data, 1), "training": round(t_train, 1)},
        "evaluation": figures,
    }
    write_json(args.out.with_suffix(".json"), record)
    print(f"[refine] trained {args.iters} iterations in {t_train:.0f} s -> {args.out} "
          f"({args.out.stat().st_size / 1e6:.2f} MB)")
    print(f"[refine] centre error vs joint 34 on {figures['localiser']['frames']} rendered frames "
          f"with clutter (seed {args.seed + 1}):")
    for k, name in (("localiser", "localiser alone"), ("refined_1", "refined, 1 pass"),
                    ("refined_2", "refined, 2 passes")):
        f = figures[k]
        print(f"  {name:18s} mean {f['mean_mm']:6.1f}  median {f['median_mm']:6.1f}  "
              f"95th {f['p95_mm']:6.1f}  max {f['max_mm']:6.1f} mm")
    return 0


if __name__ == "__main__":
    run(main)
