#!/usr/bin/env python3
"""Draw the loss curves of Caffe training logs into a PNG.

Reads the glog lines that ``caffe train`` writes (to stderr, or a GLOG_log_dir file):

    ... solver.cpp:231] Iteration 100 (5.2 iter/s, 19.2s/100 iters), loss = 0.0123
    ... solver.cpp:247]     Train net output #0: joint_loss = 0.0121 (* 1 = 0.0121 loss)
    ... sgd_solver.cpp:106] Iteration 100, lr = 0.003
    ... solver.cpp:346] Iteration 200, Testing net (#0)
    ... solver.cpp:413]     Test net output #0: joint_loss = 0.0150 (* 1 = 0.0150 loss)

and draws one panel per net output (train and test curves), one for the solver's (smoothed) total
training loss and one for the learning rate. Several logs (e.g. the Table 1 variants) share the
panels, one colour per log.

    tools/plot_log.py results/train.log --out results/loss.png
    tools/plot_log.py a.log b.log --labels paper direct --out results/compare_loss.png --json c.json
"""
if __name__ == "__main__" and not __package__:   # a script outside the venv: say how to enter it
    import _venv_check  # noqa: F401
import math
import sys
from argparse import ArgumentDefaultsHelpFormatter
import pathlib
import re


from deepmodel.plumbing import (ArgumentParser, InputError, OutputSet, check_output_file,
                                check_outputs, run, same_path, save_figure, write_json)

_NUM = r"([-+]?(?:nan|inf|[0-9.]+(?:e[-+]?[0-9]+)?))"
RE_LOSS = re.compile(r"\bIteration (\d+)(?: \([^)]*\))?, loss = " + _NUM, re.I)
RE_LR = re.compile(r"\bIteration (\d+), lr = " + _NUM, re.I)
RE_TEST = re.compile(r"\bIteration (\d+), Testing net \(#(\d+)\)")
RE_OUTPUT = re.compile(r"\b(Train|Test) net output #(\d+): (\S+) = " + _NUM, re.I)


def parse_log(lines):
    """Parse Caffe solver log lines.

    Returns a dict of series, each ``{iteration: value}`` (a later line for the same iteration,
    as after a resume, replaces the earlier one): ``loss`` (the solver's displayed total training
    loss), ``lr``, ``train`` (output name -> series) and ``test`` (output name -> series; outputs
    of test net #k > 0 are named ``name#k``).
    """
    out = {"loss": {}, "lr": {}, "train": {}, "test": {}}
    train_iter = None
    test_iter, test_net = None, 0
    for line in lines:
        m = RE_OUTPUT.search(line)
        if m:
            kind, name, value = m.group(1).lower(), m.group(3), float(m.group(4))
            if kind == "train":
                if train_iter is None:
                    continue
                out["train"].setdefault(name, {})[train_iter] = value
            else:
                if test_iter is None:
                    continue
                key = name if test_net == 0 else f"{name}#{test_net}"
                out["test"].setdefault(key, {})[test_iter] = value
            continue
        m = RE_TEST.search(line)
        if m:
            test_iter, test_net = int(m.group(1)), int(m.group(2))
            continue
        m = RE_LR.search(line)
        if m:
            out["lr"][int(m.group(1))] = float(m.group(2))
            continue
        m = RE_LOSS.search(line)
        if m:
            train_iter = int(m.group(1))
            out["loss"][train_iter] = float(m.group(2))
    return out


def read_log(path):
    path = str(path)
    try:
        with open(path, "r", errors="replace") as fh:
            parsed = parse_log(fh)
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, not a Caffe log") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read ({err.strerror})") from None
    if not parsed["loss"] and not parsed["test"]:
        raise InputError(f"{path}: no Caffe training lines ('Iteration N, loss = X' or "
                         "'Test net output') - is it the log of `caffe train` at GLOG level 0?")
    return parsed


def _xy(series):
    """Iterations and values of a series, its NaN and infinite values left out (not drawable;
    main() warns about them)."""
    its = [i for i in sorted(series) if math.isfinite(series[i])]
    return its, [series[i] for i in its]


def _use_log_scale(values):
    vals = [v for v in values if math.isfinite(v)]
    return bool(vals) and min(vals) > 0 and max(vals) / min(vals) > 20


def plot_logs(parsed_logs, labels, path, title=None):
    """Draw the panels for one or more parsed logs into the PNG ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    for p in parsed_logs:
        for name in list(p["train"]) + list(p["test"]):
            if name not in names:
                names.append(name)
    # panel keys: ("solver", "loss"|"lr") for the solver's series, ("output", name) for outputs
    panels = [("total training loss (solver display)", ("solver", "loss"))]
    panels += [(f"output: {n}", ("output", n)) for n in names]
    if any(p["lr"] for p in parsed_logs):
        panels.append(("learning rate", ("solver", "lr")))
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.8 * rows), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (ptitle, (kind, key)) in zip(axes.flat, panels):
        values = []
        for i, (p, label) in enumerate(zip(parsed_logs, labels)):
            c = colours[i % len(colours)]
            prefix = f"{label}: " if len(parsed_logs) > 1 else ""
            if kind == "solver":
                if p[key]:
                    x, y = _xy(p[key])
                    ax.plot(x, y, color=c, lw=1.5, drawstyle="steps-post" if key == "lr"
                            else "default", label=f"{prefix}train" if key == "loss"
                            else label if len(parsed_logs) > 1 else None)
                    values += y
                continue
            if key in p["train"]:
                x, y = _xy(p["train"][key])
                ax.plot(x, y, color=c, lw=1.2, alpha=0.8, label=f"{prefix}train")
                values += y
            if key in p["test"]:
                x, y = _xy(p["test"][key])
                ax.plot(x, y, color=c, lw=2, ls="--", marker="o", ms=4, label=f"{prefix}test")
                values += y
        ax.set_title(ptitle)
        ax.set_xlabel("iteration")
        ax.grid(True, alpha=0.4)
        if _use_log_scale(values):
            ax.set_yscale("log")
        elif values and min(values) >= 0:
            ax.set_ylim(bottom=0, top=max(values) * 1.1 if max(values) > 0 else 1)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path, format="png", dpi=100)
    plt.close(fig)


def write_series_json(path, parsed, labels):
    """The parsed series as JSON (strict: a NaN or infinite value of the log is null)."""
    def ser(s):
        return {str(k): (v if math.isfinite(v) else None) for k, v in sorted(s.items())}

    write_json(path, {label: {"loss": ser(p["loss"]), "lr": ser(p["lr"]),
                              "train": {k: ser(v) for k, v in p["train"].items()},
                              "test": {k: ser(v) for k, v in p["test"].items()}}
                      for label, p in zip(labels, parsed)})


def default_labels(logs):
    """Legend names: the log file stems, with as many parent folders as make them distinct
    (``a/train.log``, ``b/train.log`` -> ``a/train``, ``b/train``)."""
    paths = [pathlib.Path(p) for p in logs]
    for depth in range(0, max(len(p.parts) for p in paths)):
        labels = ["/".join(p.with_suffix("").parts[-1 - depth:]) for p in paths]
        if len(set(labels)) == len(labels):
            return labels
    return [f"{p.stem} ({i + 1})" for i, p in enumerate(paths)]


def main(argv=None):
    ap = ArgumentParser(
        description="Draw the loss curves (train and test, each net output, learning rate) of "
                    "Caffe training logs into a PNG.",
        formatter_class=ArgumentDefaultsHelpFormatter)
    ap.add_argument("logs", nargs="+", metavar="LOG", help="Caffe training log(s)")
    ap.add_argument("--out", default=None,
                    help="PNG to write (default: beside the first log, LOGSTEM_loss.png)")
    ap.add_argument("--labels", nargs="+", default=None, help="legend names, one per log "
                    "(default: the log file stems)")
    ap.add_argument("--title", default=None, help="figure title")
    ap.add_argument("--json", default=None, help="also write the parsed series as JSON")
    args = ap.parse_args(argv)
    if args.labels is not None and len(args.labels) != len(args.logs):
        raise InputError(f"--labels gives {len(args.labels)} names for {len(args.logs)} logs")
    if args.labels is not None and len(set(args.labels)) != len(args.labels):
        raise InputError("--labels has a name twice: each log needs its own legend entry")
    labels = args.labels or default_labels(args.logs)
    check_output_file(args.out, "--out")
    check_output_file(args.json, "--json")
    first = pathlib.Path(args.logs[0])
    out = pathlib.Path(args.out) if args.out else first.with_name(f"{first.stem}_loss.png")
    if args.json is not None and same_path(args.json, out):
        raise InputError(f"--json {args.json}: is also the figure (--out); give another name")
    check_outputs([("--out", out), ("--json", args.json)],
                  [(f"the log {p}", p) for p in args.logs])
    parsed = [read_log(p) for p in args.logs]
    for label, p in zip(labels, parsed):
        bad = sorted(i for i, v in p["loss"].items() if not math.isfinite(v))
        if bad:
            print(f"warning: {label}: the training loss is {p['loss'][bad[0]]} from iteration "
                  f"{bad[0]} on (diverged); those points are not drawn", file=sys.stderr)
        for kind in ("train", "test"):
            for name, series in p[kind].items():
                bad = sorted(i for i, v in series.items() if not math.isfinite(v))
                if bad:
                    print(f"warning: {label}: {kind} output {name} is {series[bad[0]]} at "
                          f"iteration {bad[0]} ({len(bad)} point(s)); not drawn", file=sys.stderr)
    with OutputSet(out) as outs:       # the figure and its JSON appear together or not at all
        plot_logs(parsed, labels, outs.stage(out), args.title)
        if args.json:
            write_series_json(outs.stage(pathlib.Path(args.json)), parsed, labels)
    for label, p in zip(labels, parsed):
        last = max(p["loss"]) if p["loss"] else None
        tests = ", ".join(f"{k} {v[max(v)]:.4g}" for k, v in p["test"].items())
        msg = f"{label}: {len(p['loss'])} training points"
        if last is not None:
            msg += f", last iteration {last} loss {p['loss'][last]:.4g}"
        if tests:
            msg += f"; last test: {tests}"
        print(msg)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    run(main)
