#!/usr/bin/env python3
"""Draw the hand model's rest pose (theta = 0) and write its keypoint and parameter tables.

    tools/draw_rest_pose.py --out docs/img/rest_pose.png      # what the Makefile runs
    tools/draw_rest_pose.py --markdown docs/hand-model.md      # refresh the tables in the page
    tools/draw_rest_pose.py --print-tables                     # tables to stdout

The figure has a 3D view and the front view (as the camera sees it: x right, y up) with every
keypoint's id. The tables are generated from the model file (python_layers/model/<model>.json)
and replace the block between ``<!-- BEGIN GENERATED TABLES -->`` and ``<!-- END GENERATED
TABLES -->`` in the Markdown file.
"""
if __name__ == "__main__" and not __package__:   # a script outside the venv: say how to enter it
    import _venv_check  # noqa: F401
import argparse
import pathlib
import sys



from deepmodel.plumbing import PROJECT, InputError, check_outputs, run, save_figure
from deepmodel.plumbing import ArgumentParser  # options checked as parsed
from deepmodel.model.hand_model import HandModel, ModelDefinitionError

BEGIN = "<!-- BEGIN GENERATED TABLES (tools/draw_rest_pose.py --markdown) -->"
END = "<!-- END GENERATED TABLES -->"
COLOURS = ["#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#ff7f0e", "#8c564b", "#7f7f7f", "#17becf"]


def branches(model):
    """Keypoint -> index of the root's child whose subtree holds it (-1 for the root), and labels."""
    children = [c for c, p in enumerate(model.parents) if p == model.root]
    branch = [-1] * model.num_keypoints
    for b, c in enumerate(children):
        stack = [c]
        while stack:
            k = stack.pop()
            branch[k] = b
            stack.extend(j for j, p in enumerate(model.parents) if p == k)
    words = [model.keypoint_names[c].split()[0] for c in children]
    labels = [w if words.count(w) == 1 else model.keypoint_names[c] for w, c in zip(words, children)]
    return branch, labels


def draw(model, out_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = model.rest_pose()
    branch, labels = branches(model)
    fig = plt.figure(figsize=(13, 6.5))
    ax3 = fig.add_subplot(1, 2, 1, projection="3d")
    ax2 = fig.add_subplot(1, 2, 2)
    seen = set()
    for a, b in model.edges:
        br = branch[b] if branch[b] >= 0 else branch[a]
        colour = COLOURS[br % len(COLOURS)]
        label = labels[br] if br not in seen else None
        seen.add(br)
        seg = pts[[a, b]]
        ax3.plot(seg[:, 0], seg[:, 2], seg[:, 1], color=colour, lw=2.5, label=label)
        ax2.plot(seg[:, 0], seg[:, 1], color=colour, lw=2.5)
    ax3.scatter(pts[:, 0], pts[:, 2], pts[:, 1], color="k", s=12, depthshade=False)
    ax2.scatter(pts[:, 0], pts[:, 1], color="k", s=14, zorder=3)
    for k, (x, y, z) in enumerate(pts):
        ax3.text(x, z, y, f" {k}", fontsize=7)
        ax2.annotate(str(k), (x, y), xytext=(4, 3), textcoords="offset points", fontsize=8)
    # equal scale on every axis
    centre, half = (pts.max(0) + pts.min(0)) / 2, (pts.max(0) - pts.min(0)).max() / 2 * 1.05
    ax3.set_xlim(centre[0] - half, centre[0] + half)
    ax3.set_ylim(centre[2] - half, centre[2] + half)
    ax3.set_zlim(centre[1] - half, centre[1] + half)
    ax3.set_box_aspect((1, 1, 1))
    ax3.set_xlabel("x (right)")
    ax3.set_ylabel("z (depth)")
    ax3.set_zlabel("y (up)")
    ax3.view_init(elev=20, azim=-60)
    ax3.set_title("3D view")
    ax3.legend(loc="upper left", fontsize=8)
    ax2.set_aspect("equal")
    ax2.set_xlabel("x (right), normalised units (1 = 150 mm)")
    ax2.set_ylabel("y (up)")
    ax2.set_title("front view (as the camera sees it), keypoint ids")
    ax2.grid(alpha=0.3)
    fig.suptitle(f"Hand model '{model.name}' at theta = 0 (rest pose): {model.num_keypoints} keypoints, "
                 f"{model.num_free} free parameters")
    fig.tight_layout()
    try:
        save_figure(fig, out_path, dpi=110)
    finally:
        plt.close(fig)


def _limit(v):
    return "unbounded" if abs(v) >= 1000 else f"{v:.6g}"


def _ids(ids):
    """(20, 21, 22, 23, 25) -> '20-23, 25'."""
    runs, out = [], []
    for i in ids:
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    for a, b in runs:
        out.append(str(a) if a == b else f"{a}-{b}")
    return ", ".join(out)


def tables(model):
    """Markdown: the keypoint table and the parameter table of the model."""
    pts = model.rest_pose()
    eval_col = {int(k): i for i, k in enumerate(model.eval14_keypoints)}
    lines = [f"### Keypoints ({model.num_keypoints})", "",
             "Rest position: theta = 0, normalised units (x right, y up, z depth). Bone: the link that "
             "ends at the keypoint, length in normalised units and in mm for the 300 mm cube. Eval: "
             "column of the standard 14-joint NYU evaluation.", "",
             "| id | name | parent | bone | length | mm | NYU joint | eval | rest x | rest y | rest z |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for k in range(model.num_keypoints):
        b = model.bone_of_keypoint[k]
        parent = model.parents[k]
        bone = ("-", "-", "-") if b < 0 else (str(b), f"{model.bone_lengths[b]:.6f}",
                                               f"{model.bone_lengths[b] * model.mm_per_unit:.1f}")
        lines.append(f"| {k} | {model.keypoint_names[k]} | {parent if parent >= 0 else '-'} | "
                     f"{' | '.join(bone)} | {model.nyu_joint_of_keypoint[k]} | {eval_col.get(k, '-')} | "
                     f"{pts[k, 0]:.4f} | {pts[k, 1]:.4f} | {pts[k, 2]:.4f} |")
    lines += ["", f"### Parameters ({model.num_params}: {model.num_free} free, {len(model.fixed_ids)} fixed)", "",
              "Value used = theta + init for a free id, init for a fixed id. Limits apply to theta (the "
              "network output), not to theta + init; fixed ids have none (+-10000 = unbounded). "
              "Links: the keypoints whose links hold the operation; pivot: the keypoint it rotates about. Theta column: position "
              "in the 26-wide layout.", "",
              "| id | name | kind | axis | units | links | pivot | init | free | theta column | lower | upper |",
              "|---:|---|---|---|---|---:|---:|---:|---|---:|---:|---:|"]
    col = {int(p): j for j, p in enumerate(model.free_ids)}
    for i in range(model.num_params):
        free = i in col
        units = "rad" if model.param_kind[i] == "rotation" else "normalised"
        lo, up = (_limit(model.lower_all[i]), _limit(model.upper_all[i])) if free else ("-", "-")
        pivot = model.param_pivot[i] if model.param_pivot[i] >= 0 else "-"
        lines.append(f"| {i} | {model.param_names[i]} | {model.param_kind[i]} | {model.param_axis[i]} | "
                     f"{units} | {_ids(model.param_links[i])} | {pivot} | {model.init[i]:.6f} | "
                     f"{'free' if free else 'fixed'} | {col.get(i, '-')} | {lo} | {up} |")
    return "\n".join(lines) + "\n"


def update_markdown(path, text):
    """Replace the generated block of the Markdown file at path with text (atomically)."""
    from deepmodel.plumbing.docblock import replace_block

    return replace_block(path, BEGIN, END, text)


def main(argv=None):
    parser = ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Default: --out docs/img/rest_pose.png",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="nyu31", help="model file python_layers/model/<MODEL>.json "
                        "(default: %(default)s)")
    parser.add_argument("--out", metavar="PNG", help="write the rest-pose figure here")
    parser.add_argument("--markdown", metavar="MD", help="replace the generated tables block in this "
                        "Markdown file")
    parser.add_argument("--print-tables", action="store_true", help="print the Markdown tables")
    args = parser.parse_args(argv)
    try:
        model = HandModel.by_name(args.model)
    except ModelDefinitionError as err:
        raise InputError(str(err)) from None
    if not (args.out or args.markdown or args.print_tables):
        args.out = str(PROJECT / "docs" / "img" / "rest_pose.png")
    if args.markdown:               # refused before the figure is drawn: both or neither
        from deepmodel.plumbing.docblock import check_block

        check_block(args.markdown, BEGIN, END)
    check_outputs([("--out", args.out), ("--markdown", args.markdown)],
                  generated=[PROJECT / "docs" / "img" / "rest_pose.png"]
                  + ([args.markdown] if args.markdown else []))
    if args.out:
        out = pathlib.Path(args.out)
        if out.suffix.lower() != ".png":
            raise InputError(f"--out {args.out}: expected a .png file name")
        if not out.parent.is_dir():
            if out.parent.exists():
                raise InputError(f"--out {args.out}: {out.parent} is not a folder")
            out.parent.mkdir(parents=True)
        draw(model, out)
        print(f"wrote {out}")
    if args.markdown:
        changed = update_markdown(args.markdown, tables(model))
        print(f"{'updated' if changed else 'unchanged'} tables in {args.markdown}")
    if args.print_tables:
        sys.stdout.write(tables(model))
    return 0


if __name__ == "__main__":
    run(main)
