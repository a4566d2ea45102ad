#!/usr/bin/env python3
"""Real and synthetic depth crops side by side: the five real NYU test crops of the repository
above crops of the synthetic NYU generator (its default hand-shape mixture; with the pose prior
fitted to real ICVL labels, ``deepmodel.data.synthetic.pose_prior``; its realistic profile,
``deepmodel.data.synthetic.realism``), all 128x128 in the same gray scale
(near = dark). A figure for comparing what the synthetic world looks like with real depth.

    tools/compare_crops.py --out docs/img/real_vs_synthetic.png
"""
if __name__ == "__main__" and not __package__:   # a script outside the venv: say how to enter it
    import _venv_check  # noqa: F401
import pathlib

import numpy as np

from deepmodel.data.datasets import nyu
from deepmodel.data.datasets.camera import NYU_CAMERA
from deepmodel.data.hand_crop.crop import crop_depth
from deepmodel.data.datasets.reference import NYU_TEST_CROPS
from deepmodel.plumbing import (PROJECT, ArgumentParser, InputError, check_output_file,
                                check_outputs, nonneg_int, run, save_figure)

DEFAULT_OUT = PROJECT / "docs" / "img" / "real_vs_synthetic.png"


def real_crops():
    """``[(name, (128, 128) float in [-1, 1])]`` of the repository's real NYU crops."""
    import cv2

    out = []
    for p in sorted(NYU_TEST_CROPS.glob("*.png"), key=lambda p: int(p.stem)):
        out.append((f"real NYU test frame {p.stem}",
                    cv2.imread(str(p), cv2.IMREAD_GRAYSCALE).astype(np.float64) / 127.5 - 1.0))
    if not out:
        raise InputError(f"{NYU_TEST_CROPS}: no crops")
    return out


def synthetic_crops(sampler, n, seed, **frame_options):
    """``n`` crops of frames rendered with ``sampler``, cropped as the NYU reader does."""
    from deepmodel.data.synthetic.nyu import make_frames

    depth, uvd, xyz, _ = make_frames(sampler, np.random.default_rng(seed), n, **frame_options)
    return [crop_depth(depth[i], uvd[i, nyu.PALM_JOINT], nyu.CUBE_MM, NYU_CAMERA,
                       com_z=xyz[i, nyu.PALM_JOINT, 2]) for i in range(n)]


def draw(rows, path):
    """rows: ``[(row title, [crop (128, 128)])]`` -> one PNG, a row per source."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = max(len(c) for _, c in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(2.1 * cols, 2.3 * len(rows)), squeeze=False)
    for r, (title, crops) in enumerate(rows):
        for c in range(cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(crops):
                ax.imshow(crops[c], cmap="gray", vmin=-1, vmax=1)
            else:
                ax.axis("off")
        axes[r, 0].set_ylabel(title, fontsize=9)
    fig.suptitle("128x128 crops, 300 mm cube, normalised depth (dark = near)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=80)
    plt.close(fig)


def main(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT, help="PNG to write")
    p.add_argument("--seed", type=nonneg_int, default=7, help="seed of the synthetic frames")
    args = p.parse_args(argv)
    check_output_file(args.out)
    check_outputs([("--out", args.out)], [("the real crops", NYU_TEST_CROPS)],
                  generated=[DEFAULT_OUT])
    if args.out.suffix.lower() != ".png":
        raise InputError(f"--out {args.out}: expected a .png file name")
    from deepmodel.model.hand_model import HandModel

    from deepmodel.data.synthetic import realism
    from deepmodel.data.synthetic.pose_prior import PriorPoseSampler, load_prior
    from deepmodel.data.synthetic.poses import PoseSampler

    model = HandModel.nyu()
    real = real_crops()
    n = len(real)
    rows = [("real (NYU test)", [c for _, c in real]),
            ("synthetic: mixture", synthetic_crops(PoseSampler(model), n, args.seed)),
            ("synthetic: ICVL prior", synthetic_crops(PriorPoseSampler(model, load_prior()), n,
                                                      args.seed)),
            ("synthetic: realistic", synthetic_crops(
                realism.realistic_sampler(model), n, args.seed,
                sensor=realism.GrowingSensorModel(), size_range=realism.SIZE_RANGE))]
    draw(rows, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    run(main)
