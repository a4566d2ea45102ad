#!/usr/bin/env python3
"""Build the LMDBs the nets train on: ``python tools/make_lmdb.py nyu|icvl [--root R] ...``.

``nyu``: from an NYU root (``train/``, ``test/`` as distributed) or, without ``--root``, from the
synthetic NYU-format set in ``data/synthetic/`` (generated first when absent). ``icvl``: from an
ICVL root (``Training/``, ``Testing/``) or, without ``--root``, from the synthetic ICVL-format set
in ``data/synthetic_icvl/`` (``data_prep/synthetic/icvl.py``, generated first when absent). Output (default ``data/lmdb/``), per split:
``<dataset>_<split>_depth``, ``_joint``, ``_theta`` (when the true angles are known), ``_meta.npz``;
see ``data_prep/records/split.py``. ``--centers detected`` crops at the centres the label-free localiser
finds (``deepmodel.data.hand_crop.locate.locate_hand``) instead, into ``<dataset>_<split>_detected_*`` with the
true labels (``make lmdb-nyu CENTERS=detected``: the test split). ``--augment COPIES`` adds turned,
scaled and shifted copies of each training frame (``data_prep/records/augment.py``; off by default). Splits
already built from the same input are skipped (``--force`` rebuilds).
"""
if __name__ == "__main__" and not __package__:   # a script outside the venv: say how to enter it
    import _venv_check  # noqa: F401
import os
import pathlib
import sys
import time

import numpy as np

from deepmodel.data.records import build
from deepmodel.plumbing import PROJECT, check_outputs, run
from deepmodel.plumbing import ArgumentParser, finite_float, nonneg_int, positive_int  # checked as parsed

DEFAULT_OUT = PROJECT / "data" / "lmdb"
DEFAULT_SYNTHETIC = PROJECT / "data" / "synthetic"
DEFAULT_SYNTHETIC_ICVL = PROJECT / "data" / "synthetic_icvl"


def _show(path):
    path = pathlib.Path(path)
    try:
        return str(path.resolve().relative_to(pathlib.Path.cwd().resolve()))
    except ValueError:
        return str(path)


def parse_args(argv):
    p = ArgumentParser(
        prog="python tools/make_lmdb.py",
        description="Crop depth frames to the published 128x128 cube crops and write aligned Caffe "
                    "LMDBs (depth, joints, true angles when known) plus a meta .npz per split.")
    p.add_argument("dataset", choices=("nyu", "icvl"), help="dataset layout of --root")
    p.add_argument("--root", type=pathlib.Path, default=None,
                   help="dataset folder (NYU: holds train/ and test/; ICVL: Training/ and Testing/). "
                        "Default: the synthetic set in that format, data/synthetic/ (NYU) or "
                        "data/synthetic_icvl/ (ICVL), generated if absent")
    p.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT,
                   help="output folder (default: data/lmdb)")
    p.add_argument("--splits", nargs="+", choices=("train", "test"), default=["train", "test"],
                   help="splits to build (default: both)")
    p.add_argument("--workers", type=positive_int, default=os.cpu_count() or 1,
                   help="decoding/cropping processes (default: one per core)")
    p.add_argument("--seed", type=nonneg_int, default=0, help="seed of the training-set shuffle (default 0)")
    p.add_argument("--subject2-cube", choices=("auto", "on", "off"), default="auto",
                   help="NYU: 300*0.87 mm cube for test frames 2441-8252 (subject 2), as released. "
                        "auto = on for real NYU data, off for the synthetic set")
    p.add_argument("--cube", type=finite_float(10, 2000), default=None,
                   help="cube edge in mm (default: NYU 300, ICVL 250)")
    p.add_argument("--max-bad", type=finite_float(0, 1), default=0.01,
                   help="fail when more than this fraction of a split's frames is unusable (default 0.01)")
    p.add_argument("--centers", choices=("label", "detected"), default="label",
                   help="crop centre: the labelled joint (default), or found with no label by "
                        "deepmodel.data.hand_crop.locate.locate_hand (LMDBs <dataset>_<split>_detected_*, the "
                        "true labels kept: tools/test_net.py --lmdb data/lmdb/nyu_test_detected)")
    aug = p.add_argument_group("augmentation of the training split (data_prep/records/augment.py; off by default, "
                               "as for the paper's Table 1)")
    aug.add_argument("--augment", type=nonneg_int, default=0, metavar="COPIES",
                     help="augmented copies of each training frame, written after the frames "
                          "(default 0: none)")
    aug.add_argument("--turn", type=finite_float(0, 180), default=180.0, metavar="DEG",
                     help="in-plane turn drawn from [-DEG, DEG] degrees (default 180)")
    aug.add_argument("--scale", type=finite_float(0.5, 2.0), nargs=2, default=(0.9, 1.1),
                     metavar=("LO", "HI"), help="hand-size factor drawn from [LO, HI] (default 0.9 1.1)")
    aug.add_argument("--shift", type=finite_float(0, 100), default=5.0, metavar="MM",
                     help="3D shift of the crop centre, standard deviation per axis in mm (default 5)")
    p.add_argument("--force", action="store_true", help="rebuild even if the LMDBs are up to date")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--synthetic-train", type=positive_int, default=None,
                   help="frames of the generated synthetic training set (default: deepmodel.data.synthetic.nyu's)")
    p.add_argument("--synthetic-test", type=positive_int, default=None,
                   help="frames of the generated synthetic test set (ICVL: per test sequence)")
    args = p.parse_args(argv)
    if args.workers < 1:
        p.error("--workers must be at least 1")
    check_outputs([("--out/", args.out)], [("--root", args.root)])
    if not 0 <= args.max_bad <= 1:
        p.error("--max-bad must be a fraction between 0 and 1")
    if args.cube is not None and not args.cube > 0:
        p.error("--cube must be a positive number of mm")
    if args.scale[0] > args.scale[1]:
        p.error(f"--scale {args.scale[0]:g} {args.scale[1]:g}: LO must not exceed HI")
    return args


def _ensure_synthetic(root, args):
    from deepmodel.data.synthetic import nyu as synthetic
    if synthetic.is_current(root):
        return
    n_train = args.synthetic_train or synthetic.DEFAULT_TRAIN
    n_test = args.synthetic_test or synthetic.DEFAULT_TEST
    why = "one from an older generator" if synthetic.is_complete(root) else "no synthetic set"
    print(f"[lmdb-nyu] no --root/NYU_ROOT given and {why} in {_show(root)}: generating "
          f"{n_train} train / {n_test} test NYU-format frames", flush=True)
    synthetic.generate(root, n_train=n_train, n_test=n_test, seed=synthetic.DEFAULT_SEED,
                       workers=args.workers, progress=not args.quiet)


def _ensure_synthetic_icvl(root, args):
    from deepmodel.data.synthetic import icvl as synthetic_icvl
    if synthetic_icvl.is_current(root):
        return
    n_train = args.synthetic_train or synthetic_icvl.DEFAULT_TRAIN
    n_test = ((args.synthetic_test,) * 2 if args.synthetic_test else synthetic_icvl.DEFAULT_TEST)
    print(f"[lmdb-icvl] no --root/ICVL_ROOT given and no current synthetic set in {_show(root)}: "
          f"generating {n_train} train / {n_test[0]} + {n_test[1]} test ICVL-format frames",
          flush=True)
    synthetic_icvl.generate(root, n_train=n_train, n_test=n_test, seed=synthetic_icvl.DEFAULT_SEED,
                            workers=args.workers, progress=not args.quiet)


def _tables(args):
    """Yield (split, FrameTable, fingerprint) for the splits asked."""
    from deepmodel.data.datasets import icvl
    from deepmodel.data.datasets import nyu
    if args.dataset == "nyu":
        root = args.root if args.root is not None else DEFAULT_SYNTHETIC
        if args.root is None:
            _ensure_synthetic(root, args)
        is_synth = (root / "synthetic.json").is_file()
        subject2 = {"on": True, "off": False, "auto": not is_synth}[args.subject2_cube]
        for split in args.splits:
            table = nyu.split_table(root, split, subject2=subject2, cube_mm=args.cube or nyu.CUBE_MM)
            split_dir = root / split
            mat = split_dir / "joint_data.mat"
            st = mat.stat()
            theta = split_dir / "theta.npy"
            fp = build.fingerprint_of(
                dataset="nyu", root=str(root.resolve()), split=split, mat=(st.st_size, st.st_mtime_ns),
                pngs=build.files_signature(split_dir, "depth_1_*.png"),
                theta=(theta.stat().st_size, theta.stat().st_mtime_ns) if theta.is_file() else None,
                subject2=subject2, cube=args.cube, seed=args.seed if split == "train" else None)
            yield split, table, fp
    else:
        root = args.root if args.root is not None else DEFAULT_SYNTHETIC_ICVL
        if args.root is None:
            _ensure_synthetic_icvl(root, args)
        cube = args.cube or icvl.CUBE_MM
        for split in args.splits:
            table, sources = icvl.split_table(root, split, cube=cube)
            theta = root / icvl.SPLITS[split][0] / "theta.npy"
            fp = build.fingerprint_of(
                dataset="icvl", root=str(root.resolve()), split=split, cube=cube,
                labels=[(str(s), s.stat().st_size, s.stat().st_mtime_ns) for s in sources],
                theta=(theta.stat().st_size, theta.stat().st_mtime_ns) if theta.is_file() else None,
                seed=args.seed if split == "train" else None)
            yield split, table, fp


def _detected(table, fp, args):
    """The table at detected centres and its fingerprint (which names the refinement weights)."""
    from deepmodel.data.hand_crop import refine

    w = refine.WEIGHTS
    fp = build.fingerprint_of(labelled=fp, centers="detected", no_refine=os.environ.get("DEEPMODEL_NO_REFINE"),
                              refine=(w.stat().st_size, w.stat().st_mtime_ns) if w.is_file() else None)
    prefix = f"{table.prefix}_detected"
    if not args.force and build.is_current(args.out, prefix, fp):
        return None, fp
    t0 = time.perf_counter()
    table, dist = build.with_detected_centres(table, workers=args.workers, progress=not args.quiet)
    lost = sum(1 for reason in table.bad.values() if reason.startswith("no hand detected"))
    msg = (f"[lmdb-{args.dataset}] {prefix}: hand found without labels in {len(dist)} frames in "
           f"{time.perf_counter() - t0:.1f} s")
    if len(dist):
        msg += (f"; detected centre to the labelled one: mean {dist.mean():.1f} mm, median "
                f"{np.median(dist):.1f}, 95th percentile {np.percentile(dist, 95):.1f}")
    if lost:
        msg += f"; no hand found in {lost} frames (left out)"
    print(msg, flush=True)
    return table, fp


def main(argv=None):
    args = parse_args(argv)
    # every split's frame table read and checked before any split is written: a test split
    # that is refused leaves no newly written train split behind
    for split, table, fp in list(_tables(args)):
        if args.centers == "detected":
            detected, fp = _detected(table, fp, args)
            if detected is None:
                print(f"[lmdb-{args.dataset}] {table.prefix}_detected: up to date in "
                      f"{_show(args.out)} ({len(table)} frames; --force rebuilds)", flush=True)
                continue
            table = detected
        if split == "train" and args.augment:
            from deepmodel.data.records.augment import Augmentation, augment_table
            aug = Augmentation(copies=args.augment, turn_deg=args.turn, scale=tuple(args.scale),
                               shift_mm=args.shift, seed=args.seed)
            fp = build.fingerprint_of(labelled=fp, augment=aug.describe())
            if args.force or not build.is_current(args.out, table.prefix, fp):
                table = augment_table(table, aug)
        if not args.force and build.is_current(args.out, table.prefix, fp):
            n = len(table) * (1 + args.augment if split == "train" and args.augment else 1)
            print(f"[lmdb-{args.dataset}] {table.prefix}: up to date in {_show(args.out)} "
                  f"({n} frames; --force rebuilds)", flush=True)
            continue
        if split == "train":
            order = np.random.default_rng(args.seed).permutation(len(table))
        else:
            order = np.arange(len(table))
        t0 = time.perf_counter()
        res = build.build_split(table, args.out, order, fp, workers=args.workers,
                                max_bad=args.max_bad, progress=not args.quiet)
        dt = time.perf_counter() - t0
        names = ",".join(res["kinds"])
        msg = (f"[lmdb-{args.dataset}] {table.prefix}: {res['written']} frames -> "
               f"{_show(args.out)}/{table.prefix}_{{{names}}} + _meta.npz in {dt:.1f} s "
               f"({len(table) / max(dt, 1e-9):.0f} frames/s)")
        if res["bad"]:
            msg += f"; {len(res['bad'])} frames skipped, listed in {_show(res['bad_log'])}"
        print(msg, flush=True)
    return 0


if __name__ == "__main__":
    run(main, sys.argv[1:])
