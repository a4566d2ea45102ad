#!/usr/bin/env python3
"""Render the synthetic hand-depth dataset in ICVL's on-disk layout (`make lmdb-icvl` runs it
first). The generator is :mod:`deepmodel.data.synthetic.icvl`."""
if __name__ == "__main__" and not __package__:   # a script outside the venv: say how to enter it
    import _venv_check  # noqa: F401
import os
import pathlib

from deepmodel.data.synthetic.icvl import (DEFAULT_OUT, DEFAULT_SEED, DEFAULT_TEST, DEFAULT_TRAIN,
                                           generate)
from deepmodel.plumbing import ArgumentParser, InputError, check_outputs, int_in, nonneg_int, run


def parse_args(argv):
    p = ArgumentParser(
        prog="python tools/synthetic_icvl.py",
        description="Render a synthetic hand-depth dataset in ICVL's on-disk layout (Training/ "
                    "and Testing/ with label text files and 16-bit depth PNGs, plus theta.npy).")
    p.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT,
                   help="output folder (default data/synthetic_icvl)")
    p.add_argument("--train", type=int_in(1, 10_000_000), default=DEFAULT_TRAIN,
                   help="training frames")
    p.add_argument("--test", type=int_in(1, 10_000_000), nargs=2, default=list(DEFAULT_TEST),
                   metavar=("SEQ1", "SEQ2"), help="frames of test sequences 1 and 2")
    p.add_argument("--seed", type=nonneg_int, default=DEFAULT_SEED,
                   help="random seed (same seed, same files)")
    p.add_argument("--workers", type=int_in(1, 256), default=os.cpu_count() or 1, help="processes")
    p.add_argument("--background", choices=("wall", "none"), default="wall",
                   help="wall: a tilted wall behind most hands; none: no reading behind the hand")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"--out {args.out}: exists and is not a folder")
    check_outputs([("--out/", args.out)])
    return args


def main(argv=None):
    args = parse_args(argv)
    params = generate(args.out, args.train, tuple(args.test), args.seed, args.workers,
                      progress=not args.quiet, background=args.background)
    n = params["train"] + sum(params["test"])
    print(f"wrote {n} frames to {args.out} in {params['seconds']:.1f} s "
          f"({n / max(params['seconds'], 1e-9):.0f} frames/s)")
    return 0


if __name__ == "__main__":
    run(main)
