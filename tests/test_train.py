"""tools/train.py: a real `caffe train` on a tiny LMDB set (snapshot, log, loss going down), the
early stop of --max-minutes, and bad input."""
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

from tiny_lmdb import write_tiny_lmdbs

PY = sys.executable


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_lmdbs(tmp_path_factory.mktemp("lmdb"), n_train=64, n_test=16)


def _train(project_root, *args):
    return subprocess.run([PY, "tools/train.py", *map(str, args)], cwd=project_root,
                          capture_output=True, text=True, timeout=600)


def _losses(log_text):
    return [(int(i), float(v)) for i, v in re.findall(r"Iteration (\d+), loss = (\S+)", log_text)]


@pytest.mark.slow
def test_train_paper_net_on_a_tiny_lmdb(project_root, tiny, tmp_path):
    res = tmp_path / "res"
    proc = _train(project_root, "--results", res, "--lmdb-dir", tiny, "--iters", 40, "--batch", 16,
                  "--test-interval", 20)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((res / "train.json").read_text())
    assert summary["iterations"] == 40 and not summary["stopped_early"]
    assert (summary["train_frames"], summary["test_frames"]) == (64, 16)
    assert (res / "snapshots" / "deepmodel_iter_40.caffemodel").is_file()
    assert (res / "deepmodel.caffemodel").read_bytes() == \
        (res / "snapshots" / "deepmodel_iter_40.caffemodel").read_bytes()
    # the solver used: the committed one with our overrides
    solver = (res / "solver.prototxt").read_text()
    assert "max_iter: 40" in solver and "base_lr: 0.003" in solver and "momentum: 0.9" in solver
    assert f'snapshot_prefix: "{res}/snapshots/deepmodel"' in solver
    assert "batch_size: 16" in (res / "train_val.prototxt").read_text()
    # test interval as given; snapshots every 200 x 512 / 16 iterations, capped at max_iter
    assert "test_interval: 20\n" in solver and "snapshot: 40\n" in solver
    log = (res / "train.log").read_text()
    losses = _losses(log)
    assert [i for i, _ in losses] == list(range(0, 41, 10))
    assert losses[-1][1] < 0.5 * losses[0][1], losses       # learns the tiny set's translation
    assert summary["stuck"] is False and "has not learnt" not in proc.stderr, \
        (summary["final_test_loss"], summary["average_pose_test_loss"])
    assert "Test net output #0: joint_loss" in log and "out_of_limits" in log
    assert "loss=" in proc.stderr                            # the progress bar's postfix
    # evaluation by tools/test_net.py and the printed summary
    ev = json.loads((res / "eval" / "eval.json").read_text())
    assert ev["frames"] == 16 and ev["mean_error_mm"] > 0
    assert summary["eval"]["mean_error_mm"] == ev["mean_error_mm"]
    assert f"mean joint error {ev['mean_error_mm']:.2f} mm" in proc.stdout
    assert "trained paper: 40 iterations" in proc.stdout
    # the real NYU crops scored beside the mean pose (tools/score_real.py)
    real = json.loads((res / "eval" / "real_crops.json").read_text())
    assert summary["real_crops"]["net_mean_mm"] == pytest.approx(real["net_mean_mm"])
    # the model-layer net's angles are also fitted to the crops' depth (score_real.py --fit)
    assert summary["real_crops"]["fit_mean_mm"] == pytest.approx(real["fit_mean_mm"])
    assert (f"{real['net_mean_mm']:.2f} mm, fitted to the depth {real['fit_mean_mm']:.2f} mm "
            f"(mean-pose baseline {real['mean_pose_mean_mm']:.2f} mm") in proc.stdout


@pytest.mark.slow
def test_max_minutes_stops_early_with_a_snapshot(project_root, tiny, tmp_path):
    res = tmp_path / "res"
    proc = _train(project_root, "--results", res, "--lmdb-dir", tiny, "--iters", 100000,
                  "--batch", 4, "--max-minutes", 0.04, "--variant", "direct_joints", "--no-eval")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((res / "train.json").read_text())
    assert summary["stopped_early"] and 0 < summary["iterations"] < 100000
    assert (res / "snapshots" / f"deepmodel_direct_joints_iter_{summary['iterations']}.caffemodel"
            ).is_file()
    assert (res / "deepmodel_direct_joints.caffemodel").is_file()
    assert "stopped early by --max-minutes" in proc.stdout
    # intervals scaled with the batch: the committed 100 (test) and 200 (snapshot) x 512 / 4
    solver = (res / "solver.prototxt").read_text()
    assert "test_interval: 12800\n" in solver and "snapshot: 25600\n" in solver


@pytest.mark.slow
def test_paper_batch_keeps_the_committed_solver(project_root, tiny, tmp_path):
    res = tmp_path / "res"
    proc = _train(project_root, "--results", res, "--lmdb-dir", tiny, "--paper-batch",
                  "--iters", 1, "--no-eval")
    assert proc.returncode == 0, proc.stderr
    solver = (res / "solver.prototxt").read_text()
    # the committed solver's settings; its test interval (100) capped at the run's length
    assert "max_iter: 1\n" in solver and "test_interval: 1\n" in solver
    assert "clip_gradients: 100\n" in solver and "base_lr: 0.003\n" in solver
    net = (res / "train_val.prototxt").read_text()      # only the LMDB folder differs
    assert net.count("batch_size: 512") == 2 and f'source: "{tiny}/nyu_train_depth"' in net
    assert json.loads((res / "train.json").read_text())["batch"] == 512
    assert json.loads((res / "train.json").read_text())["seed"] == 1701     # the committed solver's


@pytest.mark.slow
def test_seed_sets_the_solvers_random_seed(project_root, tiny, tmp_path):
    """--seed: written into the solver used and train.json; the same seed trains the same
    weights, another seed other ones (the initialisation)."""
    weights = {}
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        res = tmp_path / name
        proc = _train(project_root, "--results", res, "--lmdb-dir", tiny, "--iters", 2, "--batch", 4,
                      "--seed", seed, "--no-eval")
        assert proc.returncode == 0, proc.stderr
        assert f"random_seed: {seed}\n" in (res / "solver.prototxt").read_text()
        assert json.loads((res / "train.json").read_text())["seed"] == seed
        weights[name] = (res / "deepmodel.caffemodel").read_bytes()
    assert weights["a"] == weights["b"] and weights["a"] != weights["c"]


@pytest.mark.slow
def test_base_lr_sets_the_solvers_learning_rate(project_root, tiny, tmp_path):
    res = tmp_path / "res"
    proc = _train(project_root, "--results", res, "--lmdb-dir", tiny, "--iters", 1, "--batch", 4,
                  "--base-lr", "0.0007", "--no-eval")
    assert proc.returncode == 0, proc.stderr
    assert "base_lr: 0.0007\n" in (res / "solver.prototxt").read_text()
    assert "Iteration 0, lr = 0.0007" in (res / "train.log").read_text()


def _mean_label_loss(lmdb_path):
    """1/2 mean |label - mean label|^2 over an LMDB of float Datums, read with lmdb and Caffe's
    own protobuf (not the project's reader)."""
    import lmdb
    import numpy as np
    from caffe.proto import caffe_pb2

    rows = []
    env = lmdb.open(str(lmdb_path), readonly=True, lock=False)
    with env.begin() as txn:
        for _, value in txn.cursor():
            d = caffe_pb2.Datum()
            d.ParseFromString(value)
            rows.append(np.array(d.float_data, np.float64))
    env.close()
    labels = np.stack(rows)
    return 0.5 * float(np.mean(np.sum((labels - labels.mean(axis=0)) ** 2, axis=1)))


@pytest.mark.slow
def test_a_run_that_has_not_learnt_is_flagged(project_root, tiny, tmp_path):
    """A net no better than always predicting the mean test label (here: one update) gets a
    warning and ``stuck`` in train.json, beside that baseline loss computed independently."""
    res = tmp_path / "res"
    proc = _train(project_root, "--results", res, "--lmdb-dir", tiny, "--iters", 1, "--batch", 4,
                  "--test-interval", 1, "--no-eval")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((res / "train.json").read_text())
    base = _mean_label_loss(tiny / "nyu_test_joint")
    assert summary["average_pose_test_loss"] == pytest.approx(base, rel=1e-6)
    assert summary["final_test_loss"] >= 0.8 * base and summary["stuck"] is True
    assert "has not learnt" in proc.stderr and "--seed" in proc.stderr


@pytest.mark.slow
def test_a_run_shorter_than_the_test_interval_is_tested_at_its_end(project_root, tiny, tmp_path):
    """The test interval is capped at the run's length, so the loss curve ends with a test pass
    after training and the has-it-learnt check uses that one (not the pass before the first
    update, which would call every short run stuck)."""
    res = tmp_path / "res"
    proc = _train(project_root, "--results", res, "--lmdb-dir", tiny, "--iters", 30, "--batch", 16,
                  "--no-eval")
    assert proc.returncode == 0, proc.stderr
    assert "test_interval: 30\n" in (res / "solver.prototxt").read_text()
    log = (res / "train.log").read_text()
    assert "Iteration 0, Testing net" in log and "Iteration 30, Testing net" in log
    summary = json.loads((res / "train.json").read_text())
    assert summary["final_test_iteration"] == 30
    assert summary["final_test_loss"] < 0.8 * summary["average_pose_test_loss"]
    assert summary["stuck"] is False and "has not learnt" not in proc.stderr


def test_missing_or_mismatched_lmdbs_are_one_line_errors(project_root, tiny, tmp_path):
    proc = _train(project_root, "--results", tmp_path / "r", "--lmdb-dir", tmp_path / "nowhere")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1
    assert "nyu_train_depth: LMDB is missing: run `make lmdb-nyu` first" in proc.stderr
    assert not (tmp_path / "r").exists()

    partial = tmp_path / "partial"
    partial.mkdir()
    for name in ("nyu_train_depth", "nyu_train_joint", "nyu_test_depth", "nyu_test_joint"):
        (partial / name).symlink_to(tiny / name)
    proc = _train(project_root, "--results", tmp_path / "r", "--lmdb-dir", partial,
                  "--variant", "direct_params")
    assert proc.returncode == 2
    assert "nyu_train_theta: missing; direct_params trains against the true angles" in proc.stderr

    other = write_tiny_lmdbs(tmp_path / "other", n_train=8, n_test=4)
    (partial / "nyu_train_theta").symlink_to(other / "nyu_train_theta")
    (partial / "nyu_test_theta").symlink_to(tiny / "nyu_test_theta")
    proc = _train(project_root, "--results", tmp_path / "r", "--lmdb-dir", partial,
                  "--variant", "direct_params")
    assert proc.returncode == 2
    assert "the train LMDBs have different record counts (depth: 64, joint: 64, theta: 8)" \
        in proc.stderr
    proc = _train(project_root, "--iters", 0)
    assert proc.returncode == 2 and proc.stderr.strip() == "error: --iters 0: must be at least 1"


@pytest.mark.slow
def test_table1_page_from_two_short_trainings(project_root, tiny, tmp_path):
    doc, fig = tmp_path / "docs" / "table1.md", tmp_path / "docs" / "img" / "t1.png"
    args = ["tools/table1.py", "--results", tmp_path / "t1", "--lmdb-dir", tiny, "--iters", 10,
            "--batch", 8, "--variants", "direct_joints", "paper", "--doc", doc, "--figure", fig]
    proc = subprocess.run([PY, *map(str, args)], cwd=project_root, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    page = doc.read_text()
    assert fig.stat().st_size > 0 and "![threshold curves](img/t1.png)" in page
    assert "**Reduced budget**: 10 iterations of batch 8 per variant instead of the default 4800" \
        in page
    evals = {v: json.loads((tmp_path / "t1" / v / "eval" / "eval.json").read_text())
             for v in ("direct_joints", "paper")}
    row = next(line for line in page.splitlines() if line.startswith("| direct joint regression | 17.2"))
    assert f"| {evals['direct_joints']['mean_error_mm']:.2f} |" in row and row.endswith("| n/a | n/a |")
    row = next(line for line in page.splitlines() if line.startswith("| model layer + joint-limit"))
    assert f"| {evals['paper']['mean_error_mm']:.2f} |" in row and "| 0.9% |" in row
    verdict = "yes" if evals["paper"]["mean_error_mm"] <= evals["direct_joints"]["mean_error_mm"] \
        else "no"
    assert f"direct joint regression ({evals['paper']['mean_error_mm']:.2f} vs " \
           f"{evals['direct_joints']['mean_error_mm']:.2f} mm): **{verdict}**" in page
    # the page again from the finished runs, without training
    doc.unlink()
    proc = subprocess.run([PY, *map(str, args), "--table-only"], cwd=project_root,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert doc.read_text().split("\n", 3)[3] == page.split("\n", 3)[3]


def test_a_failing_caffe_run_is_a_one_line_error(project_root, tiny, tmp_path):
    # a net whose fc gives 25 parameters: the hand model layer refuses it at setup
    net = (project_root / "prototxt" / "train_val.prototxt").read_text()
    (tmp_path / "train_val.prototxt").write_text(net.replace("num_output: 26", "num_output: 25"))
    solver = (project_root / "prototxt" / "solver.prototxt").read_text()
    (tmp_path / "solver.prototxt").write_text(
        solver.replace("prototxt/train_val.prototxt", str(tmp_path / "train_val.prototxt")))
    proc = _train(project_root, "--solver", tmp_path / "solver.prototxt", "--lmdb-dir", tiny,
                  "--results", tmp_path / "r", "--iters", 2, "--batch", 4, "--no-eval")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: caffe train failed (exit code ")
    assert "HandModelLayer: bottom[0] has shape (4, 25)" in last
    assert f"(log: {tmp_path / 'r' / 'train.log'})" in last


def _solver_copy(project_root, tmp_path, **changes):
    """The committed solver with some fields replaced (snapshot in units of the committed batch
    512: train.py scales it by 512 / --batch)."""
    text = (project_root / "prototxt" / "solver.prototxt").read_text()
    for key, value in changes.items():
        text = re.sub(rf"^{key}:.*$", f"{key}: {value}", text, flags=re.M) if re.search(
            rf"^{key}:", text, re.M) else text + f"{key}: {value}\n"
    path = tmp_path / "solver.prototxt"
    path.write_text(text)
    return path


@pytest.mark.slow
def test_diverged_run_is_stopped_and_reported(project_root, tiny, tmp_path):
    """The learning rate jumps a billion-fold at iteration 16: the loss turns NaN; train.py stops
    Caffe, says so, keeps the finite snapshots (the last one, of iteration 16, taken before the
    jump) and removes non-finite ones."""
    solver = _solver_copy(project_root, tmp_path, base_lr=0.003, lr_policy='"step"', stepsize=16,
                          gamma=1e9, snapshot=1)
    res = tmp_path / "res"
    proc = _train(project_root, "--results", res, "--lmdb-dir", tiny, "--iters", 200, "--batch",
                  64, "--solver", solver, "--no-eval", "--test-interval", 1000)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: training diverged: loss") and "nan" in last, proc.stderr
    assert "last finite snapshot" in last and "deepmodel_iter_16.caffemodel" in last, last
    from deepmodel.nets.training import snapshot_is_finite

    snaps = sorted((res / "snapshots").glob("*.caffemodel"))
    assert snaps and all(snapshot_is_finite(s) for s in snaps), snaps
    assert not (res / "deepmodel.caffemodel").exists()


@pytest.mark.slow
def test_resume_continues_from_the_last_solverstate(project_root, tiny, tmp_path):
    """A run whose last snapshots are gone (as after a kill) continues from its newest
    .solverstate with --resume, to max_iter; another solver trains from the start."""
    solver = _solver_copy(project_root, tmp_path, snapshot=1)          # every 8 iterations
    res = tmp_path / "res"
    args = ("--results", res, "--lmdb-dir", tiny, "--iters", 24, "--batch", 64, "--solver", solver,
            "--no-eval", "--test-interval", 1000)
    assert _train(project_root, *args).returncode == 0
    for it in (16, 24):
        for suffix in ("caffemodel", "solverstate"):
            (res / "snapshots" / f"deepmodel_iter_{it}.{suffix}").unlink()
    (res / "train.json").unlink()               # a killed run writes no summary
    proc = _train(project_root, *args, "--resume")
    assert proc.returncode == 0, proc.stderr
    assert "resuming from" in proc.stderr and "deepmodel_iter_8.solverstate" in proc.stderr
    log = (res / "train.log").read_text()
    assert "Restoring previous solver status" in log or "Resuming from" in log
    assert (res / "snapshots" / "deepmodel_iter_24.caffemodel").is_file()
    assert json.loads((res / "train.json").read_text())["iterations"] == 24
    proc = _train(project_root, *args[:-2], "--test-interval", 12, "--resume")    # another solver
    assert proc.returncode == 0 and "training from the start" in proc.stderr


@pytest.mark.slow
def test_resume_keeps_a_finished_run_until_what_it_depends_on_changes(project_root, tiny, tmp_path):
    """--resume after a finished run trains nothing and leaves its files as they are; a run
    fine-tuned from it (--weights) is kept too, until the weights it started from change (the
    first run trained again with another seed), and a run on rebuilt data trains again."""
    first, second = tmp_path / "first", tmp_path / "second"
    common = ("--lmdb-dir", tiny, "--iters", 4, "--batch", 16, "--no-eval", "--resume")

    def train(res, *extra):
        proc = _train(project_root, "--results", res, *common, *extra)
        assert proc.returncode == 0, proc.stderr
        return proc

    def files(res):
        return {p.name: p.read_bytes() for p in (res / "deepmodel.caffemodel", res / "train.log",
                                                 res / "train.json")}

    start = first / "deepmodel.caffemodel"
    assert "kept" not in train(first).stderr
    before = files(first)
    proc = train(first)
    assert "kept (nothing trained)" in proc.stderr and "kept from the finished run" in proc.stdout
    assert "from the start" not in proc.stderr
    assert files(first) == before
    assert "kept" not in train(second, "--weights", start).stderr
    assert "kept" in train(second, "--weights", start).stderr
    assert "kept" not in train(first, "--seed", 5).stderr          # another solver: trained
    assert files(first)["deepmodel.caffemodel"] != before["deepmodel.caffemodel"]
    assert "kept" not in train(second, "--weights", start).stderr  # its start changed
    assert "kept" in train(second, "--weights", start).stderr
    # other data of the same size (another build): trained again
    rebuilt = write_tiny_lmdbs(tmp_path / "rebuilt", n_train=64, n_test=16, seed=1)
    proc = _train(project_root, "--results", second, "--weights", start, *common[2:],
                  "--lmdb-dir", rebuilt)
    assert proc.returncode == 0 and "kept" not in proc.stderr, proc.stderr


@pytest.mark.slow
def test_weights_start_training_from_a_trained_net(project_root, tiny, tmp_path):
    """--weights: Caffe starts from them (with a zero learning rate the next snapshot holds the
    same parameters; without --weights it holds the fillers'); weights of another net are a
    one-line error before anything is written."""
    from deepmodel.nets.net_io import read_weights

    def params(path):
        return {l.name: [list(b.data) for b in l.blobs] for l in read_weights(path).layer if l.blobs}

    first = tmp_path / "first"
    assert _train(project_root, "--results", first, "--lmdb-dir", tiny, "--iters", 8, "--batch", 16,
                  "--no-eval").returncode == 0
    start = first / "deepmodel.caffemodel"
    solver = _solver_copy(project_root, tmp_path, base_lr=0)
    got = {}
    for name, extra in (("tuned", ("--weights", start)), ("fresh", ())):
        res = tmp_path / name
        proc = _train(project_root, "--results", res, "--lmdb-dir", tiny, "--iters", 1, "--batch",
                      16, "--solver", solver, "--no-eval", *extra)
        assert proc.returncode == 0, proc.stderr
        assert ("Finetuning from" in (res / "train.log").read_text()) == bool(extra)
        summary = json.loads((res / "train.json").read_text())
        assert summary["initial_weights"] == (str(start) if extra else None)
        got[name] = params(res / "deepmodel.caffemodel")
    assert got["tuned"] == params(start) and got["fresh"] != params(start)
    other = project_root / "models" / "refine" / "refine_nyu.caffemodel"
    proc = _train(project_root, "--results", tmp_path / "bad", "--lmdb-dir", tiny, "--iters", 1,
                  "--weights", other)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "refine_nyu.caffemodel" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_train_hand_up_net_on_a_tiny_lmdb(project_root, tiny, tmp_path):
    """The variant that turns its crops hand-up trains through Caffe (the turn layers in the
    TRAIN and TEST phases), is evaluated, and its real-crop score includes the depth fit in the
    turned crops."""
    res = tmp_path / "res"
    proc = _train(project_root, "--results", res, "--lmdb-dir", tiny, "--iters", 20, "--batch", 16,
                  "--test-interval", 20, "--variant", "hand_up")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((res / "train.json").read_text())
    assert summary["iterations"] == 20 and summary["deploy"] == "prototxt/deploy_hand_up.prototxt"
    assert (res / "deepmodel_hand_up.caffemodel").is_file()
    log = (res / "train.log").read_text()
    assert "Test net output #0: joint_loss" in log and "out_of_limits" in log
    assert "turn" not in re.findall(r"Train net output #\d+: (\w+)", log)
    real = json.loads((res / "eval" / "real_crops.json").read_text())
    assert summary["real_crops"]["fit_mean_mm"] == pytest.approx(real["fit_mean_mm"])


def _make_dry_run(project_root, *args):
    """The commands `make` would run (``make -n``), one per line."""
    env = {k: v for k, v in os.environ.items()     # not the variables of a make running pytest
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "RESULTS", "NYU_ROOT", "DATASET")}
    proc = subprocess.run(["make", "-n", "RESULTS=results", *args], cwd=project_root, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [line for line in proc.stdout.splitlines()
            if re.search(r"\.venv/bin/python (-m data_prep|tools/)", line)]


def test_make_train_runs_the_recipe_models_default_records(project_root):
    """`make train` without a dataset: the prior-pose world, 2400 of its records mixed with the
    synthetic set's 12000, the hand-up net trained on that mix, then fine-tuned on the 1:1 mix at
    a tenth of the learning rate (models/default/README.md); with NYU_ROOT the NYU LMDBs as they
    are; DATASET=icvl the paper's net on ICVL."""
    default = _make_dry_run(project_root, "train", "NYU_ROOT=", "DATASET=nyu")
    steps = ["tools/make_lmdb.py nyu",
             "tools/synthetic.py --out data/synthetic_real --wrist --rot-deg 35 180 60 "
             "--vary-body --poses prior",
             "tools/make_lmdb.py nyu --root data/synthetic_real --out data/lmdb_real "
             "--augment 2",
             "tools/merge_lmdb.py --out data/lmdb_mix51 --train data/lmdb data/lmdb_real:2400",
             "tools/merge_lmdb.py --out data/lmdb_mix --train data/lmdb data/lmdb_real:12000",
             "tools/train.py --dataset nyu --results results/base --variant hand_up "
             "--lmdb-dir data/lmdb_mix51 --no-eval --resume",
             "tools/train.py --dataset nyu --results results --variant hand_up --lmdb-dir "
             "data/lmdb_mix --weights results/base/deepmodel_hand_up.caffemodel --iters 1200 "
             "--base-lr 0.0003 --resume"]
    assert len(default) == len(steps)
    for line, step in zip(default, steps):
        assert step in line, (step, line)
    readme = (project_root / "models" / "default" / "README.md").read_text()
    for step in steps[-3:]:                     # the README names the mixes and both trainings
        assert step.split(" --resume")[0] in " ".join(readme.split()), step
    nyu = _make_dry_run(project_root, "train", "NYU_ROOT=/some/nyu", "DATASET=nyu")
    assert not any("merge_lmdb" in line or "synthetic" in line for line in nyu)
    assert "--root /some/nyu" in nyu[0] or '--root "/some/nyu"' in nyu[0]
    assert nyu[-1].endswith("tools/train.py --dataset nyu --results results --variant hand_up "
                            "--schedule paper --resume")     # real NYU: the released schedule
    icvl = _make_dry_run(project_root, "train", "NYU_ROOT=", "DATASET=icvl")
    assert "tools/make_lmdb.py icvl" in icvl[0]
    assert icvl[-1].endswith("tools/train.py --dataset icvl --results results/icvl --resume")


@pytest.mark.slow
def test_caffe_train_runs_one_blas_thread_unless_told(project_root, tiny, tmp_path):
    """OpenBLAS's sums depend on its thread count: from the same seed and data two threads train
    other weights than one. tools/train.py runs `caffe train` with one unless OPENBLAS_NUM_THREADS
    is set, so a run with the variable unset trains the weights of OPENBLAS_NUM_THREADS=1 to the
    bit, whatever the machine's core count."""
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one CPU: OpenBLAS runs one thread whatever it is told")
    # Some kernels sum a net this small the same way whatever the thread count (Cooperlake, on
    # the AMD EPYC machines here): the runs pin a kernel whose sums do depend on it, Haswell's
    # (any CPU with AVX2; OPENBLAS_CORETYPE chooses it), so that the control below can fail.
    flags = pathlib.Path("/proc/cpuinfo").read_text() if pathlib.Path("/proc/cpuinfo").exists() else ""
    kernel = "Haswell" if " avx2" in flags else None
    weights, runs = {}, [("unset", None, kernel), ("one", "1", kernel), ("two", "2", kernel)]
    for name, threads, core in runs:
        env = {k: v for k, v in os.environ.items()
               if k not in ("OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE")}
        if threads:
            env["OPENBLAS_NUM_THREADS"] = threads
        if core:
            env["OPENBLAS_CORETYPE"] = core
        res = tmp_path / name
        proc = subprocess.run([PY, "tools/train.py", "--results", str(res), "--lmdb-dir", str(tiny),
                               "--iters", "3", "--batch", "64", "--no-eval"], cwd=project_root,
                              env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
        summary = json.loads((res / "train.json").read_text())
        assert summary["blas_threads"] == int(threads or 1)
        if core:
            assert summary["blas_core"] == core
        weights[name] = (res / "deepmodel.caffemodel").read_bytes()
    assert weights["unset"] == weights["one"]
    assert weights["two"] != weights["one"]     # the control: the thread count does change the bits


@pytest.mark.slow
def test_epochs_schedule_paper_estimate_and_snapshots_by_time(project_root, tiny, tmp_path):
    """--epochs sets max_iter from the training split's size; --schedule paper is the released
    solver's settings with no time cap; the measured seconds per iteration and the estimate are
    printed after 20 iterations; --snapshot-minutes snapshots by time (SIGHUP) besides Caffe."""
    res = tmp_path / "epochs"
    proc = _train(project_root, "--results", res, "--lmdb-dir", tiny, "--epochs", 2.5, "--batch", 4,
                  "--variant", "direct_joints", "--no-eval", "--snapshot-minutes", 0.005,
                  "--max-minutes", 0)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((res / "train.json").read_text())
    assert summary["max_iter"] == 40 and summary["iterations"] == 40        # ceil(2.5 x 64 / 4)
    assert summary["epochs"] == 2.5 and "(2.50 epochs)" in proc.stdout
    m = re.search(r"measured (\d+\.\d+) s per iteration over (\d+) \(batch 4\): the (\d+) "
                  r"iterations left \((\d+\.\d) epochs\) take about", proc.stderr)
    assert m, proc.stderr
    assert int(m.group(2)) >= 20 and 0 < int(m.group(3)) <= 40 - int(m.group(2))
    assert float(m.group(4)) == pytest.approx(int(m.group(3)) * 4 / 64, abs=0.051)
    # snapshots at iterations that are not the solver's interval: written on SIGHUP
    iters = sorted(int(p.stem.rsplit("_", 1)[1]) for p in (res / "snapshots").glob("*.caffemodel"))
    assert len(iters) >= 2 and any(i not in (40,) and i % 25600 for i in iters[:-1]), iters
    # the paper's schedule: batch 512 and no time cap, 100 epochs unless told
    res = tmp_path / "paper"
    proc = _train(project_root, "--results", res, "--lmdb-dir", tiny, "--schedule", "paper",
                  "--epochs", 8, "--no-eval")                 # ceil(8 x 64 / 512) = 1 iteration
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((res / "train.json").read_text())
    assert summary["batch"] == 512 and summary["max_iter"] == 1 and not summary["stopped_early"]
    solver = (res / "solver.prototxt").read_text()
    assert "base_lr: 0.003\n" in solver and "momentum: 0.9\n" in solver and "clip_gradients: 100\n" in solver
    for bad, needle in ((("--epochs", 1, "--iters", 5), "not both"),
                        (("--schedule", "paper", "--paper-batch"), "--paper-batch"),
                        (("--epochs", 0), "--epochs")):
        proc = _train(project_root, "--results", tmp_path / "x", "--lmdb-dir", tiny, *bad)
        assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
