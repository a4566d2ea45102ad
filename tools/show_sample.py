#!/usr/bin/env python
"""Draw one 128x128 crop with its joints (PNG), from a built LMDB or from a raw NYU frame.

    python tools/show_sample.py --lmdb data/lmdb --split test --index 0 --out results/sample.png
    python tools/show_sample.py --frame data/synthetic/test/depth_1_0000001.png --out results/raw.png

From an LMDB: record ``index`` of ``<dataset>_<split>_depth`` and ``_joint``; the joints are drawn
where they project into the crop (exactly, using com and cube from ``_meta.npz``; without it,
orthographically). From a raw frame: the frame is cropped with the NYU pipeline at joint 34 of the
``joint_data.mat`` beside it (frame number from the file name), or at ``--center U V D``.
"""
if __name__ == "__main__" and not __package__:   # a script outside the venv: say how to enter it
    import _venv_check  # noqa: F401
import pathlib
import re
import sys

import numpy as np


from argparse import RawDescriptionHelpFormatter

from deepmodel.data.datasets.camera import CAMERA_HELP, DEPTH_UNIT_HELP, parse_camera
from deepmodel.plumbing import (ArgumentParser, InputError, check_center, check_figure_name,
                                check_output_file, check_outputs, finite_float, nonneg_int, run,
                                save_figure)


def parse_args(argv):
    p = ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--lmdb", type=pathlib.Path, help="folder of the LMDBs (e.g. data/lmdb)")
    src.add_argument("--frame", type=pathlib.Path, help="a raw depth frame: an NYU depth PNG "
                     "(depth_1_%%07d.png), a 16-bit PNG or .npy in the camera's units")
    p.add_argument("--camera", default="nyu", help="raw frame: " + CAMERA_HELP + " (default nyu)")
    p.add_argument("--depth-unit", default=None, metavar="MM", help="raw frame: " + DEPTH_UNIT_HELP)
    p.add_argument("--dataset", default="nyu", help="LMDB name prefix (default nyu)")
    p.add_argument("--split", default="test", choices=("train", "test"))
    p.add_argument("--index", type=nonneg_int, default=0, help="LMDB record (default 0)")
    p.add_argument("--center", type=finite_float(), nargs=3, metavar=("U", "V", "D"),
                   help="raw frame: crop centre (pixels, mm) instead of joint 34 of joint_data.mat")
    p.add_argument("--cube", type=finite_float(10, 2000), default=300.0, help="raw frame: cube edge in mm (default 300)")
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("results/sample.png"),
                   help="output PNG (default results/sample.png)")
    args = p.parse_args(argv)
    if args.center is not None:
        check_center(args.center)
    check_output_file(args.out, "--out")
    check_figure_name(args.out)
    check_outputs([("--out", args.out)], [("--lmdb", args.lmdb), ("--frame", args.frame)])
    return args


def _read_record(split, kind, index):
    """Record ``index`` of ``split``'s ``kind`` LMDB -> ``(C, H, W)`` float32."""
    from deepmodel.data.records.lmdb_io import check_data_file

    check_data_file(split.lmdb(kind))          # a truncated data.mdb: one line, not SIGBUS
    if split.count(kind) < 0:
        raise InputError(f"{split.lmdb(kind)}: not an LMDB (build it with python tools/make_lmdb.py)")
    if split.count(kind) == 0:
        raise InputError(f"{split.lmdb(kind)}: the LMDB is empty (no records)")
    if not 0 <= index < split.count(kind):
        raise InputError(f"--index {index}: {split.lmdb(kind)} has records 0..{split.count(kind) - 1}")
    with split.open(kind) as db:
        return db.get(index)


def from_lmdb(args):
    from deepmodel.data.datasets.camera import ICVL_CAMERA, NYU_CAMERA
    from deepmodel.data.hand_crop.crop import crop_pixel_of_uvd
    from deepmodel.data.records.split import LmdbSplit, checked_labels, to_mm

    split = LmdbSplit.of(args.lmdb, args.dataset, args.split)
    crop = _read_record(split, "depth", args.index)[0]
    joints = checked_labels(split.lmdb("joint"),
                            _read_record(split, "joint", args.index).reshape(1, -1),
                            first=args.index).reshape(-1, 3)
    size = crop.shape[0]
    info = f"{split.name} record {args.index}"
    if split.meta_path.is_file():
        meta = split.read_meta()
        i = args.index
        com, cube, frame = meta.com[i], float(meta.cube[i]), int(meta.frame[i])
        camera = ICVL_CAMERA if args.dataset == "icvl" else NYU_CAMERA
        xyz = to_mm(joints[None], meta.com[i:i + 1], meta.cube[i:i + 1])[0]
        center = camera.xyz_to_uvd(com)
        pix = crop_pixel_of_uvd(camera.xyz_to_uvd(xyz), center, cube, camera, size)
        info += f" (frame {frame}, cube {cube:g} mm)"
    else:
        pix = np.stack([(joints[:, 0] + 1) * size / 2, (1 - joints[:, 1]) * size / 2], axis=1)
        info += " (no meta: orthographic)"
    return crop, pix, info


def from_frame(args):
    from deepmodel.data.datasets import nyu
    from deepmodel.data.datasets.raw import read_frame
    from deepmodel.data.hand_crop.crop import crop_depth, crop_pixel_of_uvd

    camera = parse_camera(args.camera, args.depth_unit)
    try:
        depth = read_frame(args.frame, camera)
    except nyu.BadFrame as err:
        raise InputError(f"{args.frame}: {err}") from None
    pix = None
    if args.center is not None:
        center = np.asarray(args.center, np.float64)
        info = f"{args.frame.name} at ({center[0]:g}, {center[1]:g}, {center[2]:g})"
    else:
        m = re.fullmatch(r"depth_1_(\d{7})\.png", args.frame.name)
        mat = args.frame.parent / "joint_data.mat"
        if not m or not mat.is_file():
            raise InputError(f"{args.frame}: no joint_data.mat beside it (or not named depth_1_NNNNNNN.png); "
                             "give the crop centre with --center U V D")
        frame = int(m.group(1)) - 1
        jd = nyu.load_joint_data(mat)
        if not 0 <= frame < len(jd):
            raise InputError(f"{args.frame}: frame {frame + 1} but {mat} has {len(jd)} frames")
        center = jd.uvd[frame, nyu.PALM_JOINT]
        uvd = jd.uvd[frame, nyu.keypoint_joints()]
        pix = crop_pixel_of_uvd(uvd, center, args.cube, camera)
        info = f"{args.frame.name} (frame {frame}), centre joint {nyu.PALM_JOINT}"
    try:
        crop = crop_depth(depth, center, args.cube, camera)
    except ValueError as err:
        raise InputError(f"{args.frame}: {err}") from None
    return crop, pix, info


def draw(crop, pix, info, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = crop.shape[0]
    fig, ax = plt.subplots(figsize=(5.2, 5.6), dpi=100)
    ax.imshow(crop, cmap="gray", vmin=-1, vmax=1, extent=(0, size, size, 0), interpolation="nearest")
    if pix is not None:
        if len(pix) == 31:
            from deepmodel.model.hand_model import HandModel
            for a, b in HandModel.nyu().edges:
                ax.plot(pix[[a, b], 0], pix[[a, b], 1], "-", color="tab:orange", lw=1.2)
        ax.scatter(pix[:, 0], pix[:, 1], s=12, c="tab:red", zorder=3)
    ax.set_xlim(0, size)
    ax.set_ylim(size, 0)
    ax.set_title(info, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    save_figure(fig, out, bbox_inches="tight")
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    crop, pix, info = from_lmdb(args) if args.lmdb is not None else from_frame(args)
    draw(crop, pix, info, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    run(main, sys.argv[1:])
