#!/usr/bin/env python3
"""Train a DeepModel net with the `caffe` command, then evaluate it and plot the loss curves.

    tools/train.py --variant hand_up --lmdb-dir data/lmdb_mix51 --results results/base --no-eval
    tools/train.py --variant hand_up --lmdb-dir data/lmdb_mix --results results --iters 1200 \
        --weights results/base/deepmodel_hand_up.caffemodel --base-lr 0.0003   # make train's two
    tools/train.py --results results                     # the paper's net as it is
    tools/train.py --variant direct_joints --iters 100 --results results/try

``make train`` trains the variant ``hand_up``: the paper's net with a layer before it that turns
each crop so that its hand points up and one after the model layer that turns the keypoints
back (tools/make_nets.py; docs/experiments/realism.md, "Every crop turned to its hand"), on the synthetic
set's LMDBs mixed 5:1 with the prior-pose world's (``make lmdb-default-mix``: data/lmdb_mix51,
whose test split is the synthetic set's), then from those weights 1200 iterations at a tenth of
the learning rate on the two mixed 1:1 (``make lmdb-mix``: data/lmdb_mix).

Steps: check the LMDBs (``make lmdb-nyu`` writes them), write the solver actually used into the
results folder (max_iter, snapshot prefix and test_iter adapted), run ``caffe train`` from the
project root with a progress bar (parsed from Caffe's log, which is kept in RESULTS/train.log),
copy the final snapshot to RESULTS/<net>.caffemodel, run tools/test_net.py on the test LMDB
(RESULTS/eval/eval.json and plots) and tools/plot_log.py (RESULTS/loss.png), print the test error.

Budget (`make train`: about 20 minutes on this 2-core machine, data and evaluation included): the
paper's net at its batch of 512 takes about 1.6-2 s per iteration in CPU Caffe here, so 16 minutes
are ~500-600 updates. In such a budget the number of updates limits training, so by default this
tool trains at batch 64 for 4800 iterations: as many frames as the committed solver's 600
iterations at batch 512 (prototxt/solver.prototxt, kept as the paper's), 8 times the updates, and
the same lr 0.003 and momentum 0.9. Measured on the synthetic set, 5 minutes each, mean joint
error on its 2000 test frames: batch 512 24.96 mm, 128 18.29 mm, 64 16.38 mm. ``--paper-batch``
trains the committed solver as is. Test and snapshot intervals are scaled with the batch (same
frames between them). ``--max-minutes`` (default 16) stops training early, with a snapshot
(Caffe's SIGINT action), when the machine is slower; the iterations done are printed and kept
in RESULTS/train.json.

Faults: a diverged run (a NaN or infinite training loss in Caffe's log) is stopped at once, its
non-finite snapshots removed, and reported with the last finite snapshot. A run that has not
learnt (its final test loss at least 80% of always predicting the mean test label: stuck at the
average pose from the start; the test pass after training is used, the test interval being
capped at the run's length) gets a warning to train again with another ``--seed`` and
``"stuck": true`` in RESULTS/train.json. (The cause seen so far, first updates that kill every
unit of a layer, is what the generated solvers' gradient clipping prevents.) ``--resume`` (what
`make train` runs) continues an interrupted run from its newest ``.solverstate`` in
RESULTS/snapshots, when the solver written for this run is the one that state was saved with, and
keeps a finished run (nothing trained) when RESULTS/train.json records the same solver, net, data
(the LMDBs' build ids) and initial weights (their SHA-256) and the weights file is still the one
it wrote: so `make train` run again after an interruption in its second stage does not train the
first again.
BLAS threads: ``caffe train`` runs with one OpenBLAS thread (OPENBLAS_NUM_THREADS=1) unless
that variable is set. OpenBLAS's result depends on its thread count (same seed and data, 200
iterations: the weights of 1 and 2 threads differ, those of two runs at the same count are equal
to the bit), so a fixed count is needed to reproduce the shipped weights (and so is OpenBLAS's
kernel for the CPU: models/default/README.md). On this 2-core machine one thread is also faster
(Caffe's data prefetch thread and this tool share the cores): 200 iterations of ``--variant
hand_up`` 55-56 s against 66-70 s with OpenBLAS's default of two threads (docs/benchmarks.md).
The count used is in RESULTS/train.json (``blas_threads``), and OpenBLAS's kernel
(``blas_core``).
Long runs (real NYU, docs/usage.md "The real NYU dataset"): ``--schedule paper`` trains with the
released solver's settings (batch 512, lr 0.003 fixed, momentum 0.9; the project's gradient clip
kept) for ``--epochs`` passes over the training split (default 100), with no time cap, and writes
a snapshot every ``--snapshot-minutes`` (30) besides Caffe's own, so ``--resume`` after an
interruption loses at most that much. After 20 iterations every run prints the measured seconds
per iteration and the time the rest will take. ``--epochs E`` works with any schedule.
``--weights W`` starts from W instead of the fillers (fine-tuning: Caffe's ``-weights``, layers
matched by name; W is checked against the variant's deploy net first).
"""
if __name__ == "__main__" and not __package__:   # a script outside the venv: say how to enter it
    import _venv_check  # noqa: F401
import pathlib

from argparse import RawDescriptionHelpFormatter
from deepmodel.nets import netspec as mn
from deepmodel.nets.training import (BUDGET_BATCH, BUDGET_ITERS, DEFAULT_LMDB_DIR,
                                     DEFAULT_MAX_MINUTES, PAPER_EPOCHS, SNAPSHOT_MINUTES,
                                     describe_eval, train_variant)

SCHEDULES = ("budget", "paper")
from deepmodel.plumbing import (PROJECT, ArgumentParser, InputError, check_outputs, console,
                                finite_float, nonneg_int, positive_int, run)


def main(argv=None):
    parser = ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 2)[2])
    parser.add_argument("--results", type=pathlib.Path, default=PROJECT / "results",
                        help="output folder (default: results/)")
    parser.add_argument("--dataset", choices=list(mn.DATASETS), default="nyu",
                        help="whose LMDBs and nets: nyu (default) or icvl (the ICVL variants "
                             "of prototxt/, data/lmdb/icvl_*; `make lmdb-icvl` writes them)")
    parser.add_argument("--variant", choices=list(mn.VARIANTS), default="paper",
                        help="which net of Table 1 (default: paper = model layer + joint-limit loss)")
    parser.add_argument("--iters", type=int,
                        help=f"max_iter (default {BUDGET_ITERS}: at batch {BUDGET_BATCH}, as many "
                             f"frames as the solver's {mn.MAX_ITER} iterations at {mn.TRAIN_BATCH})")
    parser.add_argument("--batch", type=int,
                        help=f"training batch size (default {BUDGET_BATCH}; the paper's, "
                             f"{mn.TRAIN_BATCH}, trains worse in a CPU budget of minutes)")
    parser.add_argument("--paper-batch", action="store_true",
                        help=f"the solver and net as committed: batch {mn.TRAIN_BATCH}, "
                             f"{mn.MAX_ITER} iterations, unless --batch / --iters are given")
    parser.add_argument("--schedule", choices=SCHEDULES, default="budget",
                        help="budget (default): batch "
                             f"{BUDGET_BATCH}, {BUDGET_ITERS} iterations, a {DEFAULT_MAX_MINUTES:g}-"
                             "minute cap, for the embedded synthetic set on a CPU; paper: the "
                             f"released solver's settings, batch {mn.TRAIN_BATCH}, lr "
                             f"{mn.BASE_LR:g} fixed, momentum 0.9 (the project's gradient clip "
                             f"at {mn.CLIP_GRADIENTS:g} kept), {PAPER_EPOCHS} epochs unless "
                             "--epochs/--iters say otherwise, no time cap, a snapshot every "
                             f"{SNAPSHOT_MINUTES:g} minutes")
    parser.add_argument("--epochs", type=finite_float(0, lo_open=True), default=None,
                        help="passes over the training split: the iteration count is epochs x "
                             "training frames / batch (instead of --iters)")
    parser.add_argument("--max-minutes", type=finite_float(0), default=None,
                        help=f"stop training after this many minutes, snapshotting (default "
                             f"{DEFAULT_MAX_MINUTES:g} for --schedule budget, none for paper; 0 = "
                             "no limit)")
    parser.add_argument("--snapshot-minutes", type=finite_float(0), default=None,
                        help="also snapshot every this many minutes (Caffe's SIGHUP action; "
                             f"default {SNAPSHOT_MINUTES:g} when there is no time cap, else 0: "
                             "off), so that --resume loses at most that much of a long run")
    parser.add_argument("--test-interval", type=positive_int, help="iterations between test passes")
    parser.add_argument("--lmdb-dir", type=pathlib.Path, default=DEFAULT_LMDB_DIR,
                        help="folder of the nyu_{train,test}_{depth,joint,theta} LMDBs "
                             "(default: data/lmdb)")
    parser.add_argument("--solver", type=pathlib.Path,
                        help="solver to start from (default: prototxt/solver<variant>.prototxt)")
    parser.add_argument("--seed", type=nonneg_int,
                        help="the solver's random_seed (weight initialisation, dropout; default: "
                             f"the committed solver's, {mn.RANDOM_SEED})")
    parser.add_argument("--weights", type=pathlib.Path,
                        help="start from these weights instead of the fillers (fine-tuning; "
                             "`caffe train -weights`): a .caffemodel of the same net, e.g. "
                             "models/default/deepmodel.caffemodel for --variant hand_up")
    parser.add_argument("--base-lr", type=finite_float(0, lo_open=True), default=None,
                        help=f"the solver's learning rate (default: the committed solver's, "
                             f"{mn.BASE_LR:g}); e.g. a tenth of it to fine-tune from --weights")
    parser.add_argument("--no-eval", action="store_true", help="skip tools/test_net.py")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run from its newest .solverstate in "
                             "RESULTS/snapshots (same solver and net; else train from the start); "
                             "keep a finished run of the same solver, net, data and initial "
                             "weights as it is")
    args = parser.parse_args(argv)
    if args.epochs is not None and args.iters is not None:
        raise InputError("give --epochs or --iters, not both")
    if args.schedule == "paper":
        if args.paper_batch:
            raise InputError("--paper-batch is the committed solver as is; --schedule paper "
                             "already trains at its batch: give one of them")
        args.batch = mn.TRAIN_BATCH if args.batch is None else args.batch
        if args.iters is None and args.epochs is None:
            args.epochs = PAPER_EPOCHS
        args.max_minutes = 0.0 if args.max_minutes is None else args.max_minutes
    elif not args.paper_batch:
        args.batch = BUDGET_BATCH if args.batch is None else args.batch
        if args.epochs is None:
            args.iters = BUDGET_ITERS if args.iters is None else args.iters
    if args.max_minutes is None:
        args.max_minutes = DEFAULT_MAX_MINUTES
    if args.snapshot_minutes is None:
        args.snapshot_minutes = 0.0 if args.max_minutes else SNAPSHOT_MINUTES
    if args.iters is not None and args.iters < 1:
        raise InputError(f"--iters {args.iters}: must be at least 1")
    if args.batch is not None and args.batch < 1:
        raise InputError(f"--batch {args.batch}: must be at least 1")
    from deepmodel.nets.training import weight_name

    name = weight_name(args.variant, args.dataset)
    results = pathlib.Path(args.results)
    check_outputs([("--results", results / f"{name}.caffemodel"), ("--results", results / "train.log"),
                   ("--results", results / "train.json"), ("--results/", results / "snapshots")],
                  [("--weights", args.weights), ("--solver", args.solver),
                   ("--lmdb-dir", args.lmdb_dir)])

    summary = train_variant(args.variant, args.results, iters=args.iters, batch=args.batch,
                            lmdb_dir=args.lmdb_dir, max_minutes=args.max_minutes or None,
                            solver_path=args.solver, test_interval=args.test_interval,
                            do_eval=not args.no_eval, dataset=args.dataset, resume=args.resume,
                            seed=args.seed, init_weights=args.weights, base_lr=args.base_lr,
                            epochs=args.epochs, snapshot_minutes=args.snapshot_minutes or None)
    note = " (stopped early by --max-minutes)" if summary["stopped_early"] else ""
    note += " (kept from the finished run)" if summary.get("kept") else ""
    print(f"trained {summary['variant']}"
          f"{'' if args.dataset == 'nyu' else ' (' + args.dataset.upper() + ')'}: "
          f"{summary['iterations']} iterations"
          f"{'' if summary.get('epochs') is None else ' (%.2f epochs)' % summary['epochs']} in "
          f"{summary['seconds'] / 60:.1f} min{note}; weights {summary['weights']}, "
          f"log {summary['log']}")
    if summary.get("loss_plot"):
        print(f"loss curves: {summary['loss_plot']}")
    if "eval" in summary:
        print(f"test: {describe_eval(summary['eval'])}")
        if "real_crops" in summary:
            r = summary["real_crops"]
            fit = (f", fitted to the depth {r['fit_mean_mm']:.2f} mm" if "fit_mean_mm" in r
                   else "")
            print(f"real NYU test crops ({len(r['frames'])}, 14 joints centred on their mean): "
                  f"{r['net_mean_mm']:.2f} mm{fit} (mean-pose baseline {r['mean_pose_mean_mm']:.2f} "
                  f"mm; tools/score_real.py{' --fit' if fit else ''})")
        print(f"evaluation (JSON, plots, predictions): {summary['eval_dir']}/")
    return 0


cli = console(main)   # the `deepmodel-train` command (pyproject.toml)

if __name__ == "__main__":
    run(main)
