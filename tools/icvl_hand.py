#!/usr/bin/env python3
"""The NYU hand on ICVL's joints: which keypoints they are, and a hand calibrated to ICVL.

Two steps on the 1596 real ICVL test labels (``data/reference/icvl/``, two sequences of 702 and
894 frames; ICVL camera), both with the pose fit of ``python_layers/fitting/pose_fitting.py`` (bounded
LM, per-frame scale):

1. **Correspondence.** Every plausible assignment of the 16 ICVL joints to model keypoints (palm:
   palm centre, wrist middle or middle metacarpal root; finger root: MCP; finger mid: PIP, second
   PIP point or DIP; thumb root/mid: MCP/PIP, MCP/DIP or PIP/DIP; tips: tips) is fitted with the
   NYU hand (``nyu31``), the ICVL hand mirrored in x onto the model's (ICVL's hand is the other
   one in the camera frame; the chosen assignment is also fitted unmirrored to show it). The
   assignment with the lowest mean error is the one for the model's ``joint_sets.icvl16``.
2. **Calibration** (beyond the paper, which kept the NYU geometry on ICVL): the bone lengths,
   shared by all frames, fitted jointly with the per-frame poses on test sequence 1
   (``python_layers/fitting/shape_calibration.py``), written as the model file
   ``python_layers/model/icvl16.json`` (1 unit = 125 mm, half ICVL's 250 mm cube); both hands
   are then fitted to the held-out sequence 2.

The tables go to stdout and, with ``--markdown``, into the generated block of ``docs/icvl.md``;
the size of the NYU hand on ICVL (its median fitted scale on sequence 1, mm per model unit) is
printed for the model's joint set (``mm_per_unit``).

    tools/icvl_hand.py --markdown docs/icvl.md --write-model      # what `make icvl-hand` runs
"""
if __name__ == "__main__" and not __package__:   # a script outside the venv: say how to enter it
    import _venv_check  # noqa: F401
import argparse
import itertools
import json
import time

import numpy as np

from deepmodel.data.datasets import icvl
from deepmodel.data.datasets.camera import ICVL_CAMERA
from deepmodel.data.datasets.labels import load_uvd_file
from deepmodel.data.datasets.reference import ICVL_LABELS
from deepmodel.plumbing import (PROJECT, ArgumentParser, InputError, check_output_file,
                                check_outputs, int_in, run, write_text)

BEGIN = "<!-- BEGIN GENERATED TABLES (tools/icvl_hand.py --markdown) -->"
END = "<!-- END GENERATED TABLES -->"
MODEL_OUT = PROJECT / "python_layers" / "model" / "icvl16.json"
FINGERS = ("index", "middle", "ring", "little")          # ICVL's order after the thumb
PALMS = ("palm centre", "wrist middle", "middle metacarpal root")
MIDS = ("PIP", "second PIP point", "DIP")
THUMBS = (("thumb MCP", "thumb PIP"), ("thumb MCP", "thumb DIP"), ("thumb PIP", "thumb DIP"))
ICVL_UNIT_MM = icvl.CUBE_MM / 2.0


def keypoint_id(model, name):
    try:
        return model.keypoint_names.index(name)
    except ValueError:
        raise InputError(f"model {model.name}: no keypoint named {name!r}") from None


def candidate(model, palm, mid, thumb):
    """The 16 model keypoints of one assignment, in ICVL's label order."""
    ids = [keypoint_id(model, palm), keypoint_id(model, thumb[0]), keypoint_id(model, thumb[1]),
           keypoint_id(model, "thumb tip")]
    for f in FINGERS:
        ids += [keypoint_id(model, f"{f} MCP (base)"), keypoint_id(model, f"{f} {mid}"),
                keypoint_id(model, f"{f} tip")]
    return np.array(ids)


def load_labels(path):
    """ICVL labels -> ``(N, 16, 3)`` xyz mm (ICVL camera, y up)."""
    uvd, _ = load_uvd_file(path, icvl.NUM_JOINTS)
    return ICVL_CAMERA.uvd_to_xyz(uvd)


def fit(model, keypoints, labels, mirror, restarts, segments=None):
    """Fit ``labels`` (N, k, 3) mm with the model; returns the fit dict (``error_mm``, ``scale``)."""
    from deepmodel.fitting.pose_fitting import PoseFitter
    from deepmodel.fitting.pose_fitting import estimate_offset

    lab = labels * np.array([-1.0 if mirror else 1.0, 1.0, 1.0])
    scale0 = np.full(len(lab), model.mm_per_unit)
    offset = estimate_offset(model, keypoints, lab, scale0)
    res = PoseFitter(model, keypoints).fit(lab, offset, scale0, segments=segments,
                                           scale_mode="frame", restarts=restarts,
                                           log=lambda *a: None)
    res["offset"] = offset
    res["labels"] = lab
    return res


def stats(err):
    return {"mean_mm": float(np.mean(err)), "median_mm": float(np.median(err)),
            "p95_mm": float(np.percentile(err, 95))}


def correspondence(model, labels, segments, restarts, progress=True):
    """Fit every candidate; returns rows sorted by mean error (the best first)."""
    from tqdm import tqdm

    combos = list(itertools.product(PALMS, MIDS, THUMBS))
    rows = []
    for palm, mid, thumb in tqdm(combos, desc="correspondences", disable=not progress):
        k = candidate(model, palm, mid, thumb)
        res = fit(model, k, labels, True, restarts, segments)
        rows.append({"palm": palm, "mid": mid, "thumb": f"{thumb[0]} / {thumb[1]}",
                     "keypoints": k.tolist(), "mirror_x": True,
                     "scale_mm": float(np.median(res["scale"])), **stats(res["error_mm"])})
    rows.sort(key=lambda r: r["mean_mm"])
    best = rows[0]
    res = fit(model, np.array(best["keypoints"]), labels, False, restarts, segments)
    rows.append({**{k: best[k] for k in ("palm", "mid", "thumb", "keypoints")},
                 "mirror_x": False, "scale_mm": float(np.median(res["scale"])),
                 **stats(res["error_mm"])})
    return rows


def icvl16_definition(nyu_definition, bones, keypoints, mirror_x):
    """The calibrated model file: the NYU hand's chain with ICVL's bone lengths (125 mm units)."""
    from deepmodel.fitting.shape_calibration import with_bones

    d = with_bones(nyu_definition, bones, name="icvl16", about=(
        "The NYU hand model (nyu31) with its bone lengths calibrated to ICVL's annotation: fitted "
        "jointly with the poses of ICVL test sequence 1 (702 frames) by tools/icvl_hand.py "
        "(make icvl-hand); kinematic chain, parameters, limits and rest angles as nyu31. "
        "Lengths in normalised units: 1 = half ICVL's 250 mm crop cube."))
    d["mm_per_unit"] = ICVL_UNIT_MM
    d["units"] = dict(d.get("units", {}), length="normalised (1 = half the crop cube, 125 mm for "
                      "ICVL's 250 mm cube)")
    d["joint_sets"] = {"icvl16": {
        "dataset": "icvl", "mirror_x": bool(mirror_x), "mm_per_unit": ICVL_UNIT_MM,
        "keypoints": [int(k) for k in keypoints],
        "about": "ICVL's 16 joints in label order, as for nyu31 (docs/icvl.md)."}}
    return d


def calibrate(nyu_definition, keypoints, labels, rounds, restarts):
    """Calibrate on sequence 1, compare both hands on sequences 1 and 2. Returns (bones, rows)."""
    from deepmodel.model.hand_model import HandModel
    from deepmodel.fitting.shape_calibration import calibrate as fit_shape, with_bones

    first = icvl.TEST_SEQUENCE_2_FIRST
    seq1, seq2 = labels[:first], labels[first:]
    nyu = HandModel(nyu_definition)
    start = fit(nyu, keypoints, seq1, True, restarts)
    res = fit_shape(nyu_definition, keypoints, start["labels"], start["offset"], start["scale"],
                    rounds=rounds, unit_mm=ICVL_UNIT_MM, restarts=restarts,
                    log=lambda m: print(m, flush=True))
    cal = HandModel(with_bones(nyu_definition, res["bones"], name="icvl16"))
    cal.mm_per_unit = ICVL_UNIT_MM
    rows = []
    for name, model in (("NYU geometry (nyu31)", nyu), ("calibrated on sequence 1 (icvl16)", cal)):
        for seq, lab in (("1 (calibration)", seq1), ("2 (held out)", seq2)):
            r = fit(model, keypoints, lab, True, restarts)
            rows.append({"hand": name, "sequence": seq, "frames": len(lab),
                         "scale_mm": float(np.median(r["scale"])), **stats(r["error_mm"])})
    return res["bones"], rows, float(np.median(start["scale"]))


def markdown(corr, cal_rows, nyu_scale_mm, seconds):
    lines = ["Correspondences, NYU hand (`nyu31`), all 1596 ICVL test frames, ICVL hand mirrored "
             "in x (last row: the best one unmirrored); fit error per frame = mean joint distance:",
             "",
             "| rank | palm | finger mid | thumb root / mid | mirrored | mean (mm) | median | "
             "95th pct | median scale (mm/unit) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(corr, 1):
        rank = str(i) if r["mirror_x"] else "-"
        lines.append(f"| {rank} | {r['palm']} | {r['mid']} | {r['thumb']} | "
                     f"{'yes' if r['mirror_x'] else 'no'} | {r['mean_mm']:.2f} | "
                     f"{r['median_mm']:.2f} | {r['p95_mm']:.2f} | {r['scale_mm']:.1f} |")
    lines += ["", f"Chosen: row 1, keypoints {corr[0]['keypoints']} (`joint_sets.icvl16` of "
              "`python_layers/model/nyu31.json`).", "",
              "Calibrated hand: bone lengths fitted on sequence 1, both hands fitted to each "
              "sequence:", "",
              "| hand | sequence | frames | mean (mm) | median | 95th pct | median scale (mm/unit) |",
              "|---|---|---|---|---|---|---|"]
    for r in cal_rows:
        lines.append(f"| {r['hand']} | {r['sequence']} | {r['frames']} | {r['mean_mm']:.2f} | "
                     f"{r['median_mm']:.2f} | {r['p95_mm']:.2f} | {r['scale_mm']:.1f} |")
    lines += ["", f"The NYU hand's size on ICVL: median scale {nyu_scale_mm:.1f} mm per model "
              f"unit on sequence 1 (`mm_per_unit` of nyu31's `icvl16` joint set). "
              f"Run time {seconds:.0f} s (`make icvl-hand`).", ""]
    return "\n".join(lines)


def build_parser():
    p = ArgumentParser(
        description="Choose which model keypoints the 16 ICVL joints are (by fit error on the "
                    "ICVL test labels) and calibrate the hand's bone lengths to ICVL.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--labels", default=None, help="ICVL label file (16 joints, kit format; its "
                   "first 702 lines are test sequence 1; default: the repository's ICVL test "
                   "labels)")
    p.add_argument("--rounds", type=int_in(1, 100), default=10,
                   help="calibration rounds (poses <-> bones), 1-100")
    p.add_argument("--restarts", type=int_in(0, 1000), default=2, help="random restarts per poor frame")
    p.add_argument("--markdown", default=None, help="replace the generated block of this page")
    p.add_argument("--write-model", action="store_true",
                   help=f"write the calibrated model file {MODEL_OUT.relative_to(PROJECT)}")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    check_output_file(args.markdown, "--markdown")
    check_outputs([("--markdown", args.markdown)], [("--labels", args.labels)],
                  generated=[args.markdown] if args.markdown else ())   # pages with a generated block
    if args.markdown:                # a page without the block is refused before the work
        from deepmodel.plumbing.docblock import check_block

        check_block(args.markdown, BEGIN, END)
    from deepmodel.model.hand_model import HandModel

    t0 = time.perf_counter()
    nyu_definition = json.loads((PROJECT / "python_layers" / "model" / "nyu31.json").read_text())
    model = HandModel(nyu_definition)
    args.labels = args.labels or str(ICVL_LABELS)
    labels = load_labels(args.labels)
    if len(labels) != icvl.TEST_FRAMES:
        raise InputError(f"{args.labels}: {len(labels)} frames, expected ICVL's "
                         f"{icvl.TEST_FRAMES} test frames (sequence 1 = the first 702)")
    segments = (np.arange(len(labels)) >= icvl.TEST_SEQUENCE_2_FIRST).astype(np.int64)
    corr = correspondence(model, labels, segments, args.restarts, progress=not args.quiet)
    best = np.array(corr[0]["keypoints"])
    current = model.joint_sets.get("icvl16")
    if current is None or not np.array_equal(current.keypoints, best):
        print(f"note: the lowest-error correspondence {best.tolist()} differs from nyu31's "
              f"joint set icvl16 ({None if current is None else current.keypoints.tolist()})")
    bones, cal_rows, nyu_scale = calibrate(nyu_definition, best, labels, args.rounds,
                                           args.restarts)
    text = markdown(corr, cal_rows, nyu_scale, time.perf_counter() - t0)
    print(text)
    if args.markdown:
        from deepmodel.plumbing.docblock import replace_block
        changed = replace_block(args.markdown, BEGIN, END, text)
        print(f"{'updated' if changed else 'unchanged'} tables in {args.markdown}")
    if args.write_model:
        d = icvl16_definition(nyu_definition, bones, best, corr[0]["mirror_x"])
        write_text(MODEL_OUT, json.dumps(d, indent=1) + "\n")
        print(f"wrote {MODEL_OUT.relative_to(PROJECT)}")
    return 0


if __name__ == "__main__":
    run(main)
