#!/usr/bin/env python3
"""Reproduce Table 1 of the paper: train the four variants on the same data and budget, evaluate,
and write docs/table1.md with the paper's figures beside ours.

    tools/table1.py --results results/table1              # what `make table1` runs (4 x ~15 min)
    tools/table1.py --results results/table1 --iters 2400 # a reduced budget (said in the page)
    tools/table1.py --results results/table1 --table-only  # rebuild the page from finished runs

Each variant is trained by tools/train.py's machinery into RESULTS/<variant>/ (log, snapshots,
weights, loss plot, evaluation by tools/test_net.py) with the same iterations, batch, seed and
LMDBs: by default `make train`'s budget (batch 64, 4800 iterations; see tools/train.py). The page lists, per variant, the mean joint error (mm; 31 keypoints and the 14 standard NYU
joints), the mean angle error (degrees; needs the true angles, which the synthetic set has) and
the share of test frames with an angle outside its limits, plus the paper's figures and whether
the paper's findings show up again. A threshold-curve figure of the four goes to
docs/img/table1_threshold.png.
"""
if __name__ == "__main__" and not __package__:   # a script outside the venv: say how to enter it
    import _venv_check  # noqa: F401
import argparse
import datetime
import json
import pathlib
import shlex
import subprocess
import sys


from deepmodel.plumbing import (PROJECT, InputError, OutputSet, check_output_file, check_outputs,
                                run, save_figure, write_text)
from deepmodel.plumbing import ArgumentParser, finite_float, positive_int  # checked as parsed

from deepmodel.nets import netspec as mn
from deepmodel.nets import training as tr

ORDER = ["direct_joints", "direct_params", "nolimit", "paper"]
LABELS = {"direct_joints": "direct joint regression", "direct_params": "direct parameter regression",
          "nolimit": "model layer, no joint-limit loss", "paper": "model layer + joint-limit loss"}
# The paper's Table 1 (NYU test set) and the out-of-limit shares given in its text.
PAPER = {"direct_joints": (17.2, 21.4, None), "direct_params": (26.7, 12.2, None),
         "nolimit": (16.9, 12.0, 18.6), "paper": (16.9, 12.2, 0.9)}


def fmt(x, spec=".1f", suffix=""):
    return "n/a" if x is None else f"{x:{spec}}{suffix}"


def main_error(ev):
    """The figure the variants are compared on: the 31 keypoints on NYU (the paper's), the
    dataset's joints with the kit's camera elsewhere (mm)."""
    if ev.get("dataset", "nyu") != "nyu" and "dataset_joints" in ev:
        return ev["dataset_joints"]["mean_error_mm"]
    return ev["mean_error_mm"]


def findings(runs):
    """The paper's three findings, checked on our figures: list of (statement, verdict)."""
    out = []
    err = {v: main_error(runs[v]["eval"]) for v in runs}
    with_layer = [v for v in ("paper", "nolimit") if v in err]
    if with_layer and "direct_joints" in err:
        best_model = min(err[v] for v in with_layer)
        out.append(("the model layer is at least as good as direct joint regression "
                    f"({best_model:.2f} vs {err['direct_joints']:.2f} mm)",
                    "yes" if best_model <= err["direct_joints"] else "no"))
    if "direct_params" in err and len(err) > 1:
        worse = err["direct_params"] > 1.1 * min(err[v] for v in err if v != "direct_params")
        out.append(("direct parameter regression is clearly worse on the joints "
                    f"({err['direct_params']:.2f} mm vs the best other {min(err[v] for v in err if v != 'direct_params'):.2f} mm)",
                    "yes" if worse else "no"))
    oob = {v: runs[v]["eval"].get("frac_out_of_limits") for v in runs}
    if oob.get("paper") is not None and oob.get("nolimit") is not None:
        out.append(("the joint-limit loss cuts the frames out of limits "
                    f"({100 * oob['nolimit']:.1f}% -> {100 * oob['paper']:.1f}%; paper 18.6% -> 0.9%)",
                    "not seen: no frame out of limits in either" if oob["nolimit"] == 0
                    else "yes" if oob["paper"] < oob["nolimit"] else "no"))
    return out


def plot_thresholds(runs, png):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for v in ORDER:
        if v not in runs:
            continue
        curve = runs[v]["eval"]["frac_max_error_within_mm"]
        t = [float(k) for k in curve]
        ax.plot(t, [100 * f for f in curve.values()],
                label=f"{LABELS[v]} ({runs[v]['eval']['mean_error_mm']:.1f} mm)")
    ax.set_xlabel("maximum allowed distance D (mm)")
    ax.set_ylabel("frames with all joints within D (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Table 1 variants: worst-joint threshold curve (31 keypoints)", fontsize=9)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, png, dpi=110)
    plt.close(fig)


def git_commit():
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT, capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


SYNTHETIC = {"nyu": "synthetic", "icvl": "synthetic_icvl"}


def data_source(lmdb_dir, dataset="nyu"):
    """What the LMDBs were built from (the meta file's fingerprint): a phrase for the page."""
    from deepmodel.data.records.split import LmdbSplit

    made = f"built by `make lmdb-{dataset}`"
    try:
        root = json.loads(LmdbSplit.of(lmdb_dir, dataset, "train").read_meta().fingerprint).get("root")
    except (InputError, TypeError, ValueError):
        return made
    synthetic = PROJECT / "data" / SYNTHETIC[dataset]
    if root and pathlib.Path(root).resolve() == synthetic.resolve():
        return (f"{made} from the embedded synthetic {dataset.upper()}-format set "
                f"(`data/{SYNTHETIC[dataset]}/`, rendered from the hand model with known angles)")
    return f"{made} from `{root}`" if root else made


GENERATED_MARK = "Generated by `tools/table1.py`"


def write_page(runs, args, run_info, doc, png, out=None):
    """The page ``doc`` (links relative to it; written to ``out``, a staged name, if given)."""
    first = runs[next(iter(runs))]
    iters = sorted({r["iterations"] for r in runs.values()})
    minutes = sum(r["seconds"] for r in runs.values()) / 60
    batch = first["batch"]
    reduced = first["max_iter"] * batch < tr.BUDGET_ITERS * tr.BUDGET_BATCH
    icvl = args.dataset == "icvl"
    lines = [
        "# Table 1 of the paper, on ICVL" if icvl else "# Table 1 of the paper, reproduced",
        "",
        f"Generated by `tools/table1.py` on {datetime.date.today().isoformat()} (commit "
        f"{git_commit()}) from a real run on this 2-core machine (CPU Caffe), trained at commit "
        f"{run_info.get('commit', 'unknown')} from {run_info.get('started', 'an unknown time')} "
        "with:",
        "",
        "```",
        run_info.get("command", "tools/table1.py"),
        "```",
        "",
        f"Data: `{tr.rel(args.lmdb_dir)}`, {first['train_frames']} training and "
        f"{first['test_frames']} test frames, {data_source(args.lmdb_dir, args.dataset)}. "
        "Every variant: SGD, "
        f"lr 0.003, momentum 0.9, batch {batch}"
        f"{' (the paper: 512; see tools/train.py for why)' if batch != 512 else ''}, "
        f"{', '.join(map(str, iters))} iterations "
        f"(~{first['iterations'] * batch / first['train_frames']:.1f} epochs), same seed and data; "
        f"{minutes:.0f} minutes of training in all.",
        "",
    ]
    if reduced or any(r["stopped_early"] for r in runs.values()):
        lines += [f"**Reduced budget**: {', '.join(map(str, iters))} iterations of batch {batch} "
                  f"per variant instead of the default {tr.BUDGET_ITERS} of batch "
                  f"{tr.BUDGET_BATCH} (`make train`'s budget, itself far shorter than the paper's "
                  "training). The figures show the trend of a short training, not converged nets.",
                  ""]
    if icvl:
        lines += [
            "The nets: the NYU hand (`nyu31`) with ICVL's 16 joints as its joint set `icvl16` "
            "(docs/icvl.md), as the paper does on ICVL, its joints given relative to the palm, "
            "ICVL's crop centre (docs/icvl.md, \"Why the model layer was behind\"); the paper "
            "gives ICVL figures only as "
            "curves (its Figure 7), so there are no paper columns here. Errors over the 16 ICVL "
            "joints with the evaluation kit's ICVL camera (docs/evaluation.md).",
            "",
            "| method | ours: 16 ICVL joints (mm) | frames with every joint within 20 / 40 mm | "
            "ours: angle error (deg) | ours: out of limits |",
            "|---|---|---|---|---|",
        ]
        for v in ORDER:
            if v not in runs:
                continue
            e = runs[v]["eval"]
            kit = e.get("dataset_joints", e)
            oob = e.get("frac_out_of_limits")
            frac = kit["frac_max_error_within_mm"]
            lines.append(f"| {LABELS[v]} | {kit['mean_error_mm']:.2f} | "
                         f"{100 * frac['20']:.1f}% / {100 * frac['40']:.1f}% | "
                         f"{fmt(e.get('mean_angle_error_deg'), '.2f')} | "
                         f"{fmt(None if oob is None else 100 * oob, '.1f', '%')} |")
    else:
        lines += [
            "| method | paper: joint error (mm) | paper: angle error (deg) | paper: out of limits | "
            "ours: joint error, 31 keypoints (mm) | ours: 14 NYU joints (mm) | ours: angle error "
            "(deg) | ours: out of limits |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for v in ORDER:
            if v not in runs:
                continue
            p, e = PAPER[v], runs[v]["eval"]
            oob = e.get("frac_out_of_limits")
            lines.append(f"| {LABELS[v]} | {p[0]} | {p[1]} | {fmt(p[2], '.1f', '%')} | "
                         f"{e['mean_error_mm']:.2f} | {fmt(e.get('mean_error_nyu14_mm'), '.2f')} | "
                         f"{fmt(e.get('mean_angle_error_deg'), '.2f')} | "
                         f"{fmt(None if oob is None else 100 * oob, '.1f', '%')} |")
    lines += [""]
    if not icvl:
        lines += [
        "Paper: NYU test set (8252 frames), converged training; its out-of-limit shares are "
        "given in the text only for the two model-layer nets. Ours: the test LMDB above. The angle "
        "error is test_net.py's mean absolute (wrapped) difference over the rotational free "
        "parameters, against the true angles of the data (n/a when they are unknown); "
        "'out of limits' is the share of test frames with any predicted angle outside its range "
        "(n/a for direct joint regression, which predicts no angles).",
        ""]
    lines += [
        "Absolute figures are not comparable with the paper's: other data (on the synthetic set the "
        "ground-truth angles are the ones the frames were rendered with, not PSO fits to labels) "
        "and a training of minutes instead of a converged one. The comparison is between the rows, "
        "all trained alike.",
        "",
        "## The paper's findings, on our figures",
        "",
    ]
    for statement, verdict in findings(runs):
        lines.append(f"- {statement}: **{verdict}**")
    lines += [
        "",
        "## Per variant",
        "",
        "| variant | iterations | minutes | final train loss | final test loss | weights | deploy net |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in ORDER:
        if v in runs:
            r = runs[v]
            lines.append(f"| {LABELS[v]} | {r['iterations']}{' (stopped early)' if r['stopped_early'] else ''} "
                         f"| {r['seconds'] / 60:.1f} | {fmt(r['final_train_loss'], '.4g')} | "
                         f"{fmt(r['final_test_loss'], '.4g')} | `{r['weights']}` | `{r['deploy']}` |")
    lines += [
        "",
        f"![threshold curves]({png.relative_to(doc.parent) if png.is_relative_to(doc.parent) else png})",
        "",
        "Each variant's Caffe log, loss plot and evaluation (JSON, plots, predictions) are in "
        f"`{tr.rel(args.results)}/<variant>/`. Losses are not comparable across variants (the "
        "direct parameter regression's loss is on the angles). To evaluate one again:",
        "",
        "```",
        f"tools/test_net.py --weights {tr.rel(args.results)}/paper/"
        f"{tr.weight_name('paper', args.dataset)}.caffemodel --model prototxt/"
        f"{mn.variant_files('paper', args.dataset)['deploy']} --lmdb "
        f"{tr.rel(args.lmdb_dir)}/{args.dataset}_test --out results/eval",
        "```",
        "",
    ]
    write_text(out or doc, "\n".join(lines))


def main(argv=None):
    parser = ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 2)[2])
    parser.add_argument("--dataset", choices=list(mn.DATASETS), default="nyu",
                        help="nyu (the paper's Table 1, docs/table1.md) or icvl (the same four "
                             "variants on the ICVL LMDBs, docs/table1_icvl.md)")
    parser.add_argument("--results", type=pathlib.Path, default=None,
                        help="output folder, one sub-folder per variant (default results/table1, "
                             "results/table1_icvl for ICVL)")
    parser.add_argument("--iters", type=positive_int, default=tr.BUDGET_ITERS,
                        help=f"iterations per variant (default {tr.BUDGET_ITERS}, as `make train`)")
    parser.add_argument("--batch", type=positive_int, default=tr.BUDGET_BATCH,
                        help=f"training batch (default {tr.BUDGET_BATCH}, as `make train`; the "
                             f"paper's is {mn.TRAIN_BATCH})")
    parser.add_argument("--max-minutes", type=finite_float(0), default=0,
                        help="stop each training after this many minutes (default 0 = no limit, "
                             "so every variant gets the same iterations)")
    parser.add_argument("--variants", nargs="+", choices=ORDER, default=ORDER,
                        help="which variants (default: all four)")
    parser.add_argument("--lmdb-dir", type=pathlib.Path, default=tr.DEFAULT_LMDB_DIR,
                        help="folder of the LMDBs (default data/lmdb)")
    parser.add_argument("--doc", type=pathlib.Path, default=None,
                        help="page to write (default docs/table1.md; ICVL: docs/table1_icvl.md)")
    parser.add_argument("--figure", type=pathlib.Path, default=None,
                        help="threshold-curve figure (default docs/img/table1_threshold.png; "
                             "ICVL: docs/img/table1_icvl_threshold.png)")
    parser.add_argument("--table-only", action="store_true",
                        help="train nothing: rebuild the page from RESULTS/<variant>/train.json")
    args = parser.parse_args(argv)
    for opt in ("iters", "batch"):
        if getattr(args, opt) is not None and getattr(args, opt) < 1:
            raise InputError(f"--{opt} {getattr(args, opt)}: must be at least 1")
    tag = "" if args.dataset == "nyu" else f"_{args.dataset}"
    args.results = (args.results or PROJECT / "results" / f"table1{tag}").resolve()
    args.doc = args.doc or PROJECT / "docs" / f"table1{tag}.md"
    args.figure = args.figure or PROJECT / "docs" / "img" / f"table1{tag}_threshold.png"
    check_outputs([("--doc", args.doc), ("--figure", args.figure)], [("--lmdb-dir", args.lmdb_dir)],
                  generated=[args.doc, PROJECT / "docs" / "img" / f"table1{tag}_threshold.png"])
    check_output_file(args.doc, "--doc")
    check_output_file(args.figure, "--figure")
    if args.doc.suffix != ".md":
        raise InputError(f"--doc {args.doc}: expected a Markdown page name (.md)")
    if args.figure.suffix.lower() != ".png":
        raise InputError(f"--figure {args.figure}: expected a .png file name")
    if args.doc.exists():            # only a page this command wrote is replaced
        try:
            mine = GENERATED_MARK in args.doc.read_text(errors="replace")
        except OSError as err:
            raise InputError(f"--doc {args.doc}: cannot read it ({err.strerror})") from None
        if not mine:
            raise InputError(f"--doc {args.doc}: is not a page tools/table1.py wrote (no "
                             f"'{GENERATED_MARK}' line); give a new file name (nothing was "
                             "written)")
    if not args.table_only:
        for v in args.variants:                  # all data problems before hours of training
            tr.check_lmdbs(v, args.lmdb_dir, args.dataset)

    runs = {}
    if not args.table_only:
        args.results.mkdir(parents=True, exist_ok=True)
        run_info = {"command": " ".join(["tools/table1.py"] + [
                        shlex.quote(str(a)) for a in (sys.argv[1:] if argv is None else argv)]),
                    "commit": git_commit(), "started": datetime.datetime.now().isoformat(
                        timespec="minutes")}
        (args.results / "run.json").write_text(json.dumps(run_info, indent=1) + "\n")
    for k, v in enumerate(args.variants):
        if args.table_only:
            path = args.results / v / "train.json"
            if not path.is_file():
                raise InputError(f"{tr.rel(path)}: missing: train {v} first (tools/table1.py "
                                 f"--variants {v})")
            runs[v] = json.loads(path.read_text())
            if "eval" not in runs[v]:
                raise InputError(f"{tr.rel(path)}: has no evaluation")
            continue
        print(f"[{k + 1}/{len(args.variants)}] {LABELS[v]}", flush=True)
        runs[v] = tr.train_variant(v, args.results / v, iters=args.iters, batch=args.batch,
                                   lmdb_dir=args.lmdb_dir, max_minutes=args.max_minutes or None,
                                   dataset=args.dataset)
        print(f"  {tr.describe_eval(runs[v]['eval'])}", flush=True)

    run_path = args.results / "run.json"
    if args.table_only:
        run_info = json.loads(run_path.read_text()) if run_path.is_file() else {}
    with OutputSet(args.doc) as outs:            # the page and its figure together, or neither
        plot_thresholds(runs, outs.stage(args.figure))
        write_page(runs, args, run_info, args.doc, args.figure, outs.stage(args.doc))
    print(f"wrote {tr.rel(args.doc)} and {tr.rel(args.figure)}")
    for statement, verdict in findings(runs):
        print(f"  {statement}: {verdict}")
    return 0


if __name__ == "__main__":
    run(main)
