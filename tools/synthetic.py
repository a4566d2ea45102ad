#!/usr/bin/env python3
"""Render the synthetic hand-depth dataset in the exact NYU on-disk format (`make lmdb-nyu` runs it
first; `--help` lists the options). The generator is :mod:`deepmodel.data.synthetic.nyu`."""
if __name__ == "__main__" and not __package__:   # a script outside the venv: say how to enter it
    import _venv_check  # noqa: F401
import json
import os
import pathlib
import sys
import time

from deepmodel.data.synthetic.nyu import (DEFAULT_OUT, DEFAULT_SEED, DEFAULT_TEST, DEFAULT_TRAIN,
                                          POSES, PROFILES, generate, is_complete, set_params)
from deepmodel.plumbing import (ArgumentParser, InputError, check_outputs, finite_float, nonneg_int,
                                positive_int, run)


def parse_args(argv):
    p = ArgumentParser(
        prog="python tools/synthetic.py",
        description="Render a synthetic hand-depth dataset in the exact NYU on-disk format "
                    "(train/ and test/ with joint_data.mat, depth_1_%07d.png, plus theta.npy).")
    p.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT, help="output folder (default data/synthetic)")
    p.add_argument("--train", type=nonneg_int, default=DEFAULT_TRAIN, help=f"training frames (default {DEFAULT_TRAIN})")
    p.add_argument("--test", type=nonneg_int, default=DEFAULT_TEST, help=f"test frames (default {DEFAULT_TEST})")
    p.add_argument("--seed", type=nonneg_int, default=DEFAULT_SEED, help="random seed (same seed, same files)")
    p.add_argument("--workers", type=positive_int, default=os.cpu_count() or 1, help="processes (default: one per core)")
    p.add_argument("--background", choices=("wall", "none"), default="wall",
                   help="wall: a tilted wall behind most hands; none: no reading behind the hand")
    p.add_argument("--rot-deg", type=finite_float(0, 180), nargs=3, default=(35.0, 50.0, 60.0), metavar=("X", "Y", "Z"),
                   help="half-ranges of the global rotation about x, y, z in degrees (default 35 50 60)")
    p.add_argument("--clutter", action="store_true",
                   help="a scene around each hand: body behind, at times an object beside it "
                        "nearer than the wrist, nearer noise, holes (same hands and labels)")
    p.add_argument("--wrist", action="store_true",
                   help="bend the forearm at the wrist (flexion -70..80 deg, deviation -20..30 deg, "
                        "drawn per frame) instead of continuing the hand's axis")
    p.add_argument("--relief", action="store_true",
                   help="thenar and hypothenar bulges on the palm's side, so palm and back differ")
    p.add_argument("--vary-body", action="store_true",
                   help="domain randomisation: the body's thickness (x0.9-1.4) and the sensor's "
                        "silhouette growth (0-2 pixels) drawn per frame")
    p.add_argument("--poses", choices=POSES, default="mixture",
                   help="mixture: the generator's gestures (default); prior: around poses fitted "
                        "to real ICVL labels (make pose-prior); both: half and half")
    p.add_argument("--compression", type=int, default=1, choices=range(0, 10), metavar="0-9",
                   help="PNG compression level (default 1: fast)")
    p.add_argument("--profile", choices=PROFILES, default="default",
                   help="default: the world of the paper's Table 1 here; realistic: poses around "
                        "real ones, adult widths, per-frame size, sensor silhouette growth "
                        "(data_prep/synthetic/realism.py)")
    p.add_argument("--force", action="store_true", help="regenerate even if an identical set exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.train < 0 or args.test < 0 or args.train + args.test == 0:
        p.error("--train and --test must be >= 0 and not both 0")
    if args.workers < 1:
        p.error("--workers must be at least 1")
    check_outputs([("--out/", args.out)])
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"{args.out}: exists and is not a folder")
    if not args.force and is_complete(args.out):
        old = json.loads((args.out / "synthetic.json").read_text())
        old.pop("seconds", None)
        if old == set_params(args.train, args.test, args.seed, args.background, args.rot_deg,
                             args.profile, args.clutter, args.wrist, args.relief, args.vary_body,
                             args.poses):
            print(f"[synthetic] {args.out}: already holds this set (--force regenerates)")
            return 0
    t0 = time.perf_counter()
    generate(args.out, args.train, args.test, args.seed, args.workers, not args.quiet,
             args.background, args.compression, tuple(args.rot_deg), profile=args.profile,
             clutter=args.clutter, wrist=args.wrist, relief=args.relief, vary_body=args.vary_body,
             poses=args.poses)
    dt = time.perf_counter() - t0
    n = args.train + args.test
    print(f"[synthetic] {n} frames ({args.train} train, {args.test} test) -> {args.out} in {dt:.1f} s "
          f"({n / dt:.0f} frames/s)")
    return 0


if __name__ == "__main__":
    run(main, sys.argv[1:])
