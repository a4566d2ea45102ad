#!/usr/bin/env python3
"""Export a trained net, hand model layer included, to one ONNX file that runs without Caffe.

    tools/export_onnx.py                                  # the shipped real-depth net -> models/real/deepmodel.onnx
    tools/export_onnx.py --weights results/deepmodel_hand_up.caffemodel      # -> beside it, .onnx
    tools/export_onnx.py --weights W --model prototxt/deploy_icvl.prototxt --out icvl.onnx
    tools/export_onnx.py --shipped                        # what `make onnx` runs: every shipped net

The deploy net (``--model``; default the one the weights belong to, ``prototxt/deploy.prototxt``
or ``prototxt/deploy_hand_up.prototxt``) and its weights become one ``.onnx`` file (opset 17,
standard operators only): Caffe's layers as ONNX's, and the project's Python layers written as
ONNX operators from the model file (the hand model's forward kinematics, the joint-set
selection, the keypoint turn and the hand-up crop turn; ``python_layers/export/``). Input
``depth`` ``(N, 1, 128, 128)`` float32; outputs ``joints`` and, when the net has them, ``theta``,
``depth_up`` and ``turn``, named as the Caffe blobs.

Every file written is checked before it replaces anything: ``onnx.checker``, and ONNX Runtime
against Caffe on the five real NYU test crops and on ``--check-crops`` random crops (the largest
difference of any output is printed; above 1e-4 the export fails and writes nothing).
``--shipped`` writes the ``.onnx`` beside each shipped ``.caffemodel`` that the raw-frame
pipeline uses (``models/real/``, the hand detector and the two centre refiners).

Needs the extra ``pip install -e '.[onnx]'`` (onnx, onnxruntime) and Caffe (to read the net).
"""
if __name__ == "__main__" and not __package__:   # a script outside the venv: say how to enter it
    import _venv_check  # noqa: F401
import argparse
import pathlib

import numpy as np

from deepmodel.nets.net_io import MODEL_HELP, default_model, load_net
from deepmodel.nets.weights import SHIPPED_REAL
from deepmodel.plumbing import (PROJECT, ArgumentParser, InputError, atomic_path,
                                check_output_file, check_outputs, int_in, run)

TOLERANCE = 1e-4            # largest difference of any output, ONNX Runtime vs Caffe
SHIPPED = [                 # (deploy prototxt, weights): what the raw-frame pipeline runs
    ("prototxt/deploy.prototxt", "models/real/deepmodel.caffemodel"),
    ("prototxt/deploy_detect.prototxt", "models/detect/detect_nyu.caffemodel"),
    ("prototxt/deploy_refine.prototxt", "models/detect/detect_nyu_refine.caffemodel"),
    ("prototxt/deploy_refine.prototxt", "models/refine/refine_nyu.caffemodel"),
]


def build_parser():
    p = ArgumentParser(description=__doc__.split("\n\n")[0],
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--weights", type=pathlib.Path, default=None,
                   help="the .caffemodel (default: the shipped real-depth net, "
                        "models/real/deepmodel.caffemodel)")
    p.add_argument("--model", type=pathlib.Path, default=None, help=MODEL_HELP)
    p.add_argument("--out", type=pathlib.Path, default=None,
                   help="the .onnx file to write (default: beside the weights, same name)")
    p.add_argument("--shipped", action="store_true",
                   help="export every shipped net the raw-frame pipeline uses, beside its weights")
    p.add_argument("--check-crops", type=int_in(0, 10000), default=200,
                   help="random crops checked against Caffe besides the five real ones (default 200)")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    return p


def check_crops(shape, n, seed=0):
    """The crops an export is checked on: the five real NYU test crops (for a 128x128 input)
    and ``n`` random ones (a random hand-sized blob on the background, noise, and plain noise)."""
    from deepmodel.data.evaluation.real_crops import real_crops

    h, w = shape
    rng = np.random.default_rng(seed)
    crops = [real_crops()["crops"]] if (h, w) == (128, 128) else []
    rows, cols = np.mgrid[0:h, 0:w]
    blobs = np.ones((n, 1, h, w), np.float32)
    for i in range(n):
        cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
        r = rng.uniform(0.15, 0.4) * min(h, w)
        inside = (rows - cy) ** 2 + (cols - cx) ** 2 < r * r
        arm = (np.abs(cols - cx) < r / 2) & (rows > cy) if i % 2 else np.zeros_like(inside)
        blobs[i, 0][inside | arm] = rng.uniform(-0.6, 0.6, size=(inside | arm).sum())
    if n:
        crops += [blobs, rng.uniform(-1, 1, (max(1, n // 10), 1, h, w)).astype(np.float32)]
    return np.concatenate(crops) if crops else np.zeros((0, 1, h, w), np.float32)


def compare(path, model, weights, crops):
    """The largest difference, over every output of the ONNX file, between ONNX Runtime and
    Caffe on ``crops``: ``{output: difference}``."""
    from deepmodel.runtime.nets import CaffeNet, OnnxNet

    onnx_net = OnnxNet(path)
    net = CaffeNet(load_net(model, weights))
    diffs = {}
    for start in range(0, len(crops), 64):
        x = crops[start:start + 64]
        got = onnx_net.run(x, onnx_net.outputs)
        want = net.run(x, onnx_net.outputs)
        for name, value in got.items():
            d = float(np.max(np.abs(value - want[name].reshape(value.shape))))
            diffs[name] = max(diffs.get(name, 0.0), d)
    return diffs


def export_one(model, weights, out, n_check, quiet):
    from deepmodel.export.caffe_net import export_net
    from deepmodel.export.graph import onnx_modules

    onnx = onnx_modules()[0]
    proto = export_net(model, weights)
    size = [int(d.dim_value) for d in proto.graph.input[0].type.tensor_type.shape.dim[2:]]
    crops = check_crops(tuple(size) if all(size) else (60, 80), n_check)
    with atomic_path(out) as tmp:
        onnx.save(proto, str(tmp))
        diffs = compare(tmp, model, weights, crops)
        worst = max(diffs.values())
        if not worst <= TOLERANCE:
            raise InputError(f"{out}: ONNX Runtime differs from Caffe by {worst:.3g} "
                             f"(> {TOLERANCE:g}) on the check crops; nothing written")
    if not quiet:
        shown = ", ".join(f"{k} {v:.2g}" for k, v in diffs.items())
        print(f"[export] {out}: {len(proto.graph.node)} ONNX nodes, "
              f"{pathlib.Path(out).stat().st_size / 1e6:.1f} MB; ONNX Runtime vs Caffe on "
              f"{len(crops)} crops, largest difference: {shown}")
    return diffs


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.shipped:
        if args.weights or args.model or args.out:
            raise InputError("--shipped exports the shipped nets: give no --weights, --model, --out")
        jobs = [(PROJECT / m, PROJECT / w, (PROJECT / w).with_suffix(".onnx")) for m, w in SHIPPED]
    else:
        weights = args.weights or SHIPPED_REAL
        if not weights.is_file():
            raise InputError(f"--weights {weights}: no such file")
        if weights.suffix != ".caffemodel":
            raise InputError(f"--weights {weights}: expected a .caffemodel")
        model = args.model or pathlib.Path(default_model(str(weights.resolve())))
        out = args.out or weights.with_suffix(".onnx")
        if out.suffix != ".onnx":
            raise InputError(f"--out {out}: give a file name ending in .onnx")
        check_output_file(out)
        check_outputs([("--out", out)], [("--weights", weights), ("--model", model)],
                      generated=[(PROJECT / w).with_suffix(".onnx") for _, w in SHIPPED])
        jobs = [(model, weights, out)]
    for model, weights, out in jobs:
        export_one(model, weights, out, args.check_crops, args.quiet)
    return 0


def cli():
    run(main)


if __name__ == "__main__":
    cli()
