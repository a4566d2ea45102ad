"""Training a net variant through Caffe's own ``caffe train``: solver and net files of a run
(``prepare``), the run key that lets a finished run be kept (``--resume``), the ``caffe train``
process with its progress bar, time cap and divergence checks (``run_caffe``), then evaluation,
the real-crop score and the loss plot (``train_variant``). The command is ``tools/train.py``,
whose docstring says how ``make train`` uses it."""
import hashlib
import json
import math
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np

from deepmodel.data.records.lmdb_io import check_data_file, read_build_id
from deepmodel.data.records.split import LmdbSplit
from deepmodel.nets import netspec as mn
from deepmodel.plumbing import PROJECT, InputError, atomic_path, blas_core, write_json

DEFAULT_LMDB_DIR = PROJECT / "data" / "lmdb"
# The budget of `make train` (see tools/train.py's docstring): batch 64 instead of the paper's 512, for
# as many frames (4800 x 64 = 600 x 512) but 8 times the updates; measured on the synthetic set at
# equal wall time (5 min): batch 512 24.96 mm, 128 18.29 mm, 64 16.38 mm mean joint error.
BUDGET_BATCH = 64
BUDGET_ITERS = 4800
DEFAULT_MAX_MINUTES = 16.0
PAPER_EPOCHS = 100          # --schedule paper's default length (passes over the training split)
SNAPSHOT_MINUTES = 30.0     # runs without a time cap snapshot this often (SIGHUP), besides Caffe's
ESTIMATE_AFTER = 20         # the time estimate is printed after this many iterations
# OpenBLAS threads of `caffe train` unless OPENBLAS_NUM_THREADS is set (tools/train.py's docstring, "BLAS
# threads"): one trains faster here, and the same weights whatever the core count.
BLAS_THREADS = 1
# a run whose final test loss is at least this share of the loss of always predicting the test
# labels' mean has not learnt (stuck at the average pose from the start; seen with seeds 3 and 4
# before the solvers clipped the gradient, docs/benchmarks.md): warned about, flagged in train.json
STUCK_RATIO = 0.8
ITER_RE = re.compile(r"Iteration (\d+)(?: \([^)]*\))?, loss = (\S+)")
TEST_RE = re.compile(r"Iteration (\d+), Testing net")
TEST_OUT_RE = re.compile(r"Test net output #\d+: (\w+) = (\S+)")
SNAPSHOT_RE = re.compile(r"Snapshotting to binary proto file (\S+)")
WEIGHT_NAMES = {"paper": "deepmodel", "nolimit": "deepmodel_nolimit",
                "direct_joints": "deepmodel_direct_joints", "direct_params": "deepmodel_direct_params",
                "hand_up": "deepmodel_hand_up"}


def weight_name(variant, dataset="nyu"):
    """The file stem of a variant's weights: ``deepmodel[_icvl][_<variant>]``."""
    name = WEIGHT_NAMES[variant]
    return name if dataset == "nyu" else name.replace("deepmodel", f"deepmodel_{dataset}", 1)


def rel(path):
    """A path for messages: relative to the project root when inside it."""
    path = pathlib.Path(path).resolve()
    return str(path.relative_to(PROJECT)) if path.is_relative_to(PROJECT) else str(path)


def lmdb_entries(split, kind, dataset="nyu"):
    """Number of records of ``split``'s ``kind`` LMDB; InputError when missing or empty."""
    path = split.lmdb(kind)
    check_data_file(path)        # a truncated data.mdb would end caffe train with SIGBUS
    entries = split.count(kind)
    if entries < 0:
        raise InputError(f"{rel(path)}: LMDB is missing: run `make lmdb-{dataset}` first")
    if entries == 0:
        raise InputError(f"{rel(path)}: LMDB is empty: run `make lmdb-{dataset}` again")
    return entries


def check_lmdbs(variant, lmdb_dir, dataset="nyu"):
    """Check the LMDBs a variant reads; returns (train frames, test frames)."""
    kinds = ["depth", "joint"] + (["theta"] if mn.needs_theta_labels(variant) else [])
    counts = {}
    for split in ("train", "test"):
        lmdbs = LmdbSplit.of(lmdb_dir, dataset, split)
        for kind in kinds:
            if kind == "theta" and lmdbs.count(kind) < 0:
                raise InputError(f"{rel(lmdbs.lmdb(kind))}: missing; {variant} trains against the "
                                 "true angles, which only the synthetic set has (`make "
                                 f"lmdb-{dataset}` without {dataset.upper()}_ROOT)")
            counts[(split, kind)] = lmdb_entries(lmdbs, kind, dataset)
        sizes = {counts[(split, k)] for k in kinds}
        if len(sizes) != 1:
            raise InputError(f"{rel(lmdb_dir)}: the {split} LMDBs have different record counts "
                             f"({', '.join(f'{k}: {counts[(split, k)]}' for k in kinds)}): "
                             f"run `make lmdb-{dataset}` again")
        lmdbs.check_build()      # depth, joint, theta and meta of one build (deepmodel.data.records.split)
    return counts[("train", "depth")], counts[("test", "depth")]


def check_centre_joint(net, lmdb_dir, dataset="nyu"):
    """A net whose joint set layer gives its joints relative to a centre joint (``centre_joint``
    of ``JointSetLayer``: the ICVL model nets, whose crops are centred on the palm) always outputs
    0 for that joint: InputError when the training labels of that joint are not 0 (crops not
    centred on it, e.g. an LMDB built with a centre shift or at detected centres)."""
    import numpy as np

    for layer in net.layer:
        if layer.type != "Python" or layer.python_param.module != "deepmodel.layers.joint_set_layer":
            continue
        centre = json.loads(layer.python_param.param_str or "{}").get("centre_joint")
        if centre is None:
            continue
        split = LmdbSplit.of(lmdb_dir, dataset, "train")
        _, labels = split.read_labels("joint")
        off = np.abs(labels.reshape(len(labels), -1)[:, 3 * centre:3 * centre + 3]).max(initial=0)
        if off > 1e-6:
            raise InputError(f"{rel(split.lmdb('joint'))}: the labels of joint {centre} are up "
                             f"to {off:.3g} half-cubes from the crop centre, but the net gives its "
                             f"joints relative to that joint (layer {layer.name}, centre_joint) and "
                             "cannot fit them: crops not centred on it (a centre shift, detected "
                             "centres?)")


def find_caffe():
    exe = shutil.which("caffe")
    if exe is None:
        venv_caffe = PROJECT / ".venv" / "bin" / "caffe"
        if venv_caffe.is_file():
            return str(venv_caffe)
        raise InputError("the `caffe` command is not found: run `make caffe` "
                         "(it installs .venv/bin/caffe)")
    return exe


def read_proto(path, message):
    from google.protobuf import text_format

    try:
        text_format.Merge(pathlib.Path(path).read_text(), message)
    except UnicodeDecodeError:
        raise InputError(f"{rel(path)}: not a text file (cannot decode it as UTF-8)") from None
    except text_format.ParseError as err:
        raise InputError(f"{rel(path)}: not a valid prototxt: {' '.join(str(err).split())}") from None
    return message


def prepare(variant, results, iters=None, batch=None, lmdb_dir=DEFAULT_LMDB_DIR, solver_path=None,
            test_interval=None, dataset="nyu", resume=False, seed=None, base_lr=None, epochs=None):
    """Write RESULTS/solver.prototxt (and RESULTS/train_val.prototxt when the net is changed).

    Returns a dict with the solver path, max_iter, snapshot prefix, data sizes and ``resume``: the
    ``.solverstate`` to continue from (with ``resume``: the newest one of this snapshot prefix
    when the solver and net are unchanged since it was saved and it is short of max_iter), or None.
    ``seed``: the solver's ``random_seed`` (weight initialisation, dropout); None: the solver's.
    ``epochs``: passes over the training split: max_iter is ``ceil(epochs x frames / batch)``
    (instead of ``iters``).
    """
    from caffe.proto import caffe_pb2

    files = mn.variant_files(variant, dataset)
    solver_path = pathlib.Path(solver_path or PROJECT / "prototxt" / files["solver"])
    if not solver_path.is_file():
        raise InputError(f"{rel(solver_path)}: no such solver (run `make nets`)")
    n_train, n_test = check_lmdbs(variant, lmdb_dir, dataset)
    s = read_proto(solver_path, caffe_pb2.SolverParameter())
    net_path = PROJECT / s.net if not os.path.isabs(s.net) else pathlib.Path(s.net)
    if not net_path.is_file():
        raise InputError(f"{rel(solver_path)}: its net {s.net} does not exist (run `make nets`)")
    results.mkdir(parents=True, exist_ok=True)
    (results / "snapshots").mkdir(exist_ok=True)

    net = read_proto(net_path, caffe_pb2.NetParameter())
    check_centre_joint(net, lmdb_dir, dataset)
    changed = False
    test_batch = mn.TEST_BATCH
    scale = 1.0            # net batch / new batch: test and snapshot intervals kept in frames
    for layer in net.layer:
        if layer.type != "Data":
            continue
        phases = {r.phase for r in layer.include}
        src = layer.data_param.source
        if pathlib.Path(lmdb_dir).resolve() != (PROJECT / src).resolve().parent:
            layer.data_param.source = str(pathlib.Path(lmdb_dir).resolve() / pathlib.Path(src).name)
            changed = True
        if caffe_pb2.TRAIN in phases and batch and layer.data_param.batch_size != batch:
            scale = layer.data_param.batch_size / batch
            layer.data_param.batch_size, changed = batch, True
        if caffe_pb2.TEST in phases:
            test_batch = layer.data_param.batch_size
    used_net = results / "train_val.prototxt"
    net_text = f"# Written by tools/train.py from {rel(net_path)}\n{net}"
    same_net = not changed or (used_net.is_file() and used_net.read_text() == net_text)
    if changed:
        used_net.write_text(net_text)
        s.net = str(used_net)
    train_batch = next((l.data_param.batch_size for l in net.layer if l.type == "Data"
                        and caffe_pb2.TRAIN in {r.phase for r in l.include}), None)
    if epochs is not None:
        s.max_iter = max(1, math.ceil(epochs * n_train / train_batch))
    elif iters is not None:
        s.max_iter = iters
    if seed is not None:
        s.random_seed = seed
    if base_lr is not None:
        s.base_lr = base_lr
    s.test_interval = test_interval or max(1, round(s.test_interval * scale))
    if s.max_iter > 0:
        # a run shorter than the test interval still gets a test pass at its end (Caffe tests at
        # multiples of the interval): the loss curve's last point and the check that it has learnt
        s.test_interval = min(s.test_interval, s.max_iter)
    s.snapshot = max(1, round(s.snapshot * scale)) if s.snapshot else 0
    # at most 2048 test frames per test pass of the loss curve (the full test set is evaluated by
    # tools/test_net.py at the end)
    del s.test_iter[:]
    s.test_iter.append(max(1, min(math.ceil(n_test / test_batch), 2048 // test_batch)))
    s.snapshot = min(s.snapshot, s.max_iter) if s.snapshot else 0
    s.snapshot_prefix = str(results / "snapshots" / weight_name(variant, dataset))
    used_solver = results / "solver.prototxt"
    solver_text = f"# Written by tools/train.py from {rel(solver_path)}\n{s}"
    state = None
    if resume:
        same = same_net and used_solver.is_file() and used_solver.read_text() == solver_text
        state = latest_solverstate(s.snapshot_prefix, s.max_iter) if same else None
    used_solver.write_text(solver_text)
    # what a finished run's weights depend on, compared by --resume to keep them (train_variant)
    sources = sorted({l.data_param.source for l in net.layer if l.type == "Data"})
    run_key = {"solver": _sha256(solver_text.encode()), "net": _sha256(net_text.encode()),
               "data": {rel(PROJECT / src): read_build_id(PROJECT / src) for src in sources}}
    return {"solver": used_solver, "max_iter": s.max_iter, "n_train": n_train, "n_test": n_test,
            "net": s.net, "snapshot_prefix": s.snapshot_prefix, "batch": train_batch, "resume": state,
            "seed": s.random_seed, "run_key": run_key}


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def file_sha256(path):
    """The SHA-256 of a file's bytes, hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def finished_run(results, run_key, weights):
    """The summary in ``results/train.json`` of a run that trained to its end with the same
    ``run_key`` (solver, net, the data's LMDB build ids, the initial weights' bytes) and whose
    ``weights`` file is still the one it wrote, or None. An LMDB without a build id never
    matches (its contents cannot be told apart)."""
    try:
        old = json.loads((results / "train.json").read_text())
    except (OSError, ValueError):
        return None
    if (not isinstance(old, dict) or old.get("run_key") != run_key or old.get("stopped_early")
            or old.get("iterations") != old.get("max_iter")
            or None in run_key["data"].values() or not weights.is_file()
            or old.get("weights_sha256") != file_sha256(weights)):
        return None
    return old


def latest_solverstate(prefix, max_iter):
    """The newest ``<prefix>_iter_N.solverstate`` with its ``.caffemodel`` and N < max_iter, or
    None."""
    prefix = pathlib.Path(prefix)
    best = None
    for f in prefix.parent.glob(f"{prefix.name}_iter_*.solverstate"):
        m = re.fullmatch(re.escape(prefix.name) + r"_iter_(\d+)\.solverstate", f.name)
        if m and int(m.group(1)) < max_iter and f.with_suffix(".caffemodel").is_file():
            if best is None or int(m.group(1)) > best[0]:
                best = (int(m.group(1)), f)
    return None if best is None else best[1]


def snapshot_is_finite(path):
    """Whether every learned blob of a ``.caffemodel`` is finite (False when unreadable)."""
    import numpy as np
    from caffe.proto import caffe_pb2

    param = caffe_pb2.NetParameter()
    try:
        param.ParseFromString(pathlib.Path(path).read_bytes())
    except Exception:  # protobuf's DecodeError and friends, a missing file
        return False
    for layer in list(param.layer) + list(param.layers):
        for blob in layer.blobs:
            for values in (blob.data, blob.double_data):
                if len(values) and not np.all(np.isfinite(np.asarray(values))):
                    return False
    return True


def handle_divergence(diverged, snapshots, log_path):
    """A diverged run: remove its non-finite snapshots (and their solver states), then raise an
    InputError naming the iteration, the loss and the last finite snapshot."""
    it, loss = diverged
    finite = None
    for snap in snapshots:
        snap = snap if snap.is_absolute() else PROJECT / snap
        if snapshot_is_finite(snap):
            finite = snap
        else:
            snap.unlink(missing_ok=True)
            snap.with_suffix(".solverstate").unlink(missing_ok=True)
    kept = f"last finite snapshot: {rel(finite)}" if finite else "no finite snapshot was written"
    raise InputError(f"training diverged: loss {loss} at iteration {it}; stopped, {kept} (lower "
                     f"the learning rate; log: {rel(log_path)})")


def _die_with_parent():
    """In the child: get SIGTERM when this tool dies (Linux prctl PR_SET_PDEATHSIG), so that a
    killed tools/train.py never leaves a `caffe train` running."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def blas_threads():
    """OpenBLAS threads for `caffe train`: $OPENBLAS_NUM_THREADS when set, else BLAS_THREADS."""
    return os.environ.get("OPENBLAS_NUM_THREADS") or str(BLAS_THREADS)


def run_caffe(plan, log_path, max_minutes=None, desc="train", position=0, snapshot_minutes=None):
    """Run `caffe train`, streaming its log to ``log_path`` with a tqdm bar.

    After :data:`ESTIMATE_AFTER` iterations it prints the measured seconds per iteration and the
    estimated time of the whole run. ``snapshot_minutes``: every so many minutes Caffe is sent
    SIGHUP, on which it writes a snapshot (``caffe train``'s ``-sighup_effect``, ``snapshot`` by
    default), so an interrupted multi-hour run loses at most that much (``--resume``).

    Returns a dict: iterations reached, seconds, last snapshot path, stopped_early flag.
    """
    from tqdm import tqdm

    caffe = find_caffe()
    env = dict(os.environ, GLOG_minloglevel="0")   # the progress comes from Caffe's INFO lines
    env.pop("GLOG_logtostderr", None)
    env["OPENBLAS_NUM_THREADS"] = blas_threads()
    cmd = [caffe, "train", f"-solver={plan['solver']}"]
    if plan.get("resume"):
        cmd.append(f"-snapshot={plan['resume']}")
    elif plan.get("weights"):
        cmd.append(f"-weights={plan['weights']}")      # fine-tuning: layers matched by name
    start = time.monotonic()
    last_hup = start
    first_it, estimated = None, False
    snapshot, it, stopped_early, interrupted = None, 0, False, False
    train_loss = test_loss = None
    test_loss_name, test_at = None, None
    diverged, snapshots = None, []
    with open(log_path, "a" if plan.get("resume") else "w") as log, tqdm(total=plan["max_iter"], desc=desc, unit="it",
                                          position=position, dynamic_ncols=True) as bar:
        log.write(f"# {' '.join(cmd)}  (cwd: project root)\n")
        proc = subprocess.Popen(cmd, cwd=PROJECT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1,
                                preexec_fn=_die_with_parent)
        try:
            for line in proc.stdout:
                log.write(line)
                m = ITER_RE.search(line)
                if m:
                    it = int(m.group(1))
                    try:
                        train_loss = float(m.group(2))
                    except ValueError:
                        train_loss = float("nan")
                    if not math.isfinite(train_loss):
                        # diverged: stop now (SIGKILL: Caffe snapshots on SIGINT, NaN weights)
                        diverged = (it, m.group(2))
                        proc.kill()
                        for line in proc.stdout:
                            log.write(line)
                        break
                    bar.update(it - bar.n)
                    if first_it is None:
                        first_it, first_t = it, time.monotonic()
                    elif not estimated and it - first_it >= ESTIMATE_AFTER:
                        estimated = True
                        per_it = (time.monotonic() - first_t) / (it - first_it)
                        bar.write(describe_estimate(per_it, it - first_it, plan["max_iter"] - it,
                                                    plan["batch"], plan["n_train"], max_minutes),
                                  file=sys.stderr)
                    bar.set_postfix(loss=f"{train_loss:.4g}",
                                    **({"test": f"{test_loss:.4g}"} if test_loss is not None else {}))
                m = TEST_RE.search(line)
                if m:
                    test_at = int(m.group(1))
                m = TEST_OUT_RE.search(line)
                if m and m.group(1).endswith("_loss") and "limit" not in m.group(1):
                    test_loss, test_loss_name = float(m.group(2)), m.group(1)
                    bar.set_postfix(**({"loss": f"{train_loss:.4g}"} if train_loss is not None else {}),
                                    test=f"{test_loss:.4g}")
                m = SNAPSHOT_RE.search(line)
                if m:
                    snapshot = m.group(1)
                    snapshots.append(pathlib.Path(snapshot))
                if (max_minutes and not stopped_early
                        and time.monotonic() - start > 60 * max_minutes):
                    stopped_early = True        # Caffe stops, snapshots and exits on SIGINT
                    proc.send_signal(signal.SIGINT)
                if snapshot_minutes and time.monotonic() - last_hup > 60 * snapshot_minutes:
                    last_hup = time.monotonic()
                    proc.send_signal(signal.SIGHUP)     # Caffe snapshots and goes on
        except KeyboardInterrupt:
            interrupted = True
            proc.send_signal(signal.SIGINT)
            for line in proc.stdout:
                log.write(line)
        code = proc.wait()
    seconds = time.monotonic() - start
    if interrupted:
        print(f"interrupted; Caffe's log: {rel(log_path)}"
              + (f", last snapshot: {rel(PROJECT / snapshot)}" if snapshot else ""), file=sys.stderr)
        raise KeyboardInterrupt
    if diverged is None and code != 0:
        # a crash after a non-finite loss is a divergence too
        for m in ITER_RE.finditer(log_path.read_text(errors="replace")):
            if m.group(2).lower().lstrip("+-") in ("nan", "inf", "-nan"):
                diverged = (int(m.group(1)), m.group(2))
                break
    if diverged is not None:
        handle_divergence(diverged, snapshots, log_path)
    if code != 0:
        # the reason: glog's last FATAL/ERROR line, or a Python layer's exception
        lines = log_path.read_text().splitlines()
        why = [ln for ln in lines if re.match(r"[FE]\d{4} ", ln) or re.match(r"\w*(Error|Exception):", ln)]
        reason = f": {' '.join(why[-1].split())}" if why else ""
        raise InputError(f"caffe train failed (exit code {code}){reason} (log: {rel(log_path)})")
    if snapshot is None:
        raise InputError(f"caffe train wrote no snapshot; its log: {rel(log_path)}")
    snap = pathlib.Path(snapshot)
    snap = snap if snap.is_absolute() else PROJECT / snap
    m = re.search(r"_iter_(\d+)\.caffemodel$", snap.name)
    iterations = int(m.group(1)) if m else it
    return {"iterations": iterations, "seconds": seconds, "snapshot": snap,
            "stopped_early": stopped_early, "final_train_loss": train_loss,
            "final_test_loss": test_loss, "test_loss_name": test_loss_name,
            "final_test_iteration": test_at}


def average_pose_loss(lmdb_dir, dataset, kind):
    """The test loss of a net that always predicts the mean test label: Caffe's EuclideanLoss,
    ``1/2`` the mean over records of ``|label - mean label|^2``, over the ``kind`` LMDB
    (``joint``: the joint loss; ``theta``: the angle loss of direct parameter regression)."""
    import numpy as np

    _, labels = LmdbSplit.of(lmdb_dir, dataset, "test").read_labels(kind)
    labels = np.asarray(labels, np.float64).reshape(len(labels), -1)
    return 0.5 * float(np.mean(np.sum((labels - labels.mean(axis=0)) ** 2, axis=1)))


def check_learnt(out, lmdb_dir, dataset):
    """``(average-pose test loss, stuck)`` for a finished run (see ``STUCK_RATIO``); warns on
    stderr when stuck. ``(None, False)`` when the log had no test loss after training (none at
    all, or only the one before the first update)."""
    if out.get("final_test_loss") is None or not out.get("test_loss_name") \
            or not out.get("final_test_iteration"):
        return None, False
    kind = "theta" if out["test_loss_name"].startswith("theta") else "joint"
    base = average_pose_loss(lmdb_dir, dataset, kind)
    stuck = out["final_test_loss"] >= STUCK_RATIO * base
    if stuck:
        print(f"warning: the test loss at iteration {out['final_test_iteration']} "
              f"({out['final_test_loss']:.4g}) is "
              f"{100 * out['final_test_loss'] / base:.0f}% of always predicting the average "
              f"pose ({base:.4g}): the net has not learnt; train again with another --seed",
              file=sys.stderr)
    return base, stuck


def evaluate(weights, deploy, lmdb_prefix, out):
    """Run tools/test_net.py; returns its JSON (dict)."""
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "eval.json"
    cmd = [sys.executable, str(PROJECT / "tools" / "test_net.py"), "--weights", str(weights),
           "--model", str(deploy), "--lmdb", str(lmdb_prefix), "--out", str(out),
           "--json", str(json_path)]
    if not (PROJECT / "tools" / "test_net.py").is_file():
        raise InputError("tools/test_net.py is missing: cannot evaluate")
    proc = subprocess.run(cmd, cwd=PROJECT, capture_output=True, text=True)
    if proc.returncode != 0:
        msg = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise InputError(f"tools/test_net.py failed (exit code {proc.returncode}): {msg}")
    return json.loads(json_path.read_text())


def score_real_crops(weights, deploy, out_json, fit):
    """Run tools/score_real.py (the real NYU crops, centred 14-joint error, beside the mean
    pose; with ``--fit`` when ``fit``: the net has the hand model layer's angles, a ``theta``
    blob); returns its JSON (dict) or None (with a warning) when it fails."""
    cmd = [sys.executable, str(PROJECT / "tools" / "score_real.py"), "--weights", str(weights),
           "--model", str(deploy), "--json", str(out_json)] + (["--fit"] if fit else [])
    proc = subprocess.run(cmd, cwd=PROJECT, capture_output=True, text=True)
    if proc.returncode != 0:
        msg = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
        print(f"warning: tools/score_real.py failed: {msg}", file=sys.stderr)
        return None
    return json.loads(pathlib.Path(out_json).read_text())


def plot(log_path, png):
    """Run tools/plot_log.py; returns the PNG path or None (with a warning) when it fails."""
    script = PROJECT / "tools" / "plot_log.py"
    if not script.is_file():
        print("warning: tools/plot_log.py is missing: no loss plot", file=sys.stderr)
        return None
    proc = subprocess.run([sys.executable, str(script), str(log_path), "--out", str(png)],
                          cwd=PROJECT, capture_output=True, text=True)
    if proc.returncode != 0:
        msg = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
        print(f"warning: tools/plot_log.py failed: {msg}", file=sys.stderr)
        return None
    return png


def describe_estimate(per_it, measured, left, batch, n_train, max_minutes=None):
    """One line: the measured seconds per iteration and what the rest of the run will take."""
    total = per_it * left
    hours, minutes = divmod(round(total / 60), 60)
    epochs = left * batch / n_train if batch and n_train else None
    cap = (f"; --max-minutes {max_minutes:g} stops it before" if max_minutes
           and total > 60 * max_minutes else "")
    return (f"measured {per_it:.2f} s per iteration over {measured} (batch {batch}): the "
            f"{left} iterations left{f' ({epochs:.1f} epochs)' if epochs else ''} take about "
            f"{f'{hours} h ' if hours else ''}{minutes} min{cap}")


def train_variant(variant, results, iters=None, batch=None, lmdb_dir=DEFAULT_LMDB_DIR,
                  max_minutes=None, solver_path=None, test_interval=None, position=0,
                  eval_lmdb=None, do_eval=True, do_plot=True, dataset="nyu", resume=False,
                  seed=None, init_weights=None, base_lr=None, epochs=None, snapshot_minutes=None):
    """Train one variant into ``results``; evaluate and plot. Returns a summary dict.
    ``init_weights``: a .caffemodel to start from (checked against the variant's deploy net)."""
    deploy = f"prototxt/{mn.variant_files(variant, dataset)['deploy']}"
    if init_weights is not None:
        from deepmodel.nets.net_io import load_net

        load_net(PROJECT / deploy, init_weights)   # one-line error unless every learned layer fits
    results = pathlib.Path(results).resolve()
    plan = prepare(variant, results, iters=iters, batch=batch, lmdb_dir=lmdb_dir,
                   solver_path=solver_path, test_interval=test_interval, dataset=dataset,
                   resume=resume, seed=seed, base_lr=base_lr, epochs=epochs)
    plan["weights"] = None if init_weights is None else pathlib.Path(init_weights).resolve()
    plan["run_key"]["initial_weights"] = (None if init_weights is None
                                          else file_sha256(plan["weights"]))
    weights = results / f"{weight_name(variant, dataset)}.caffemodel"
    if resume:
        done = finished_run(results, plan["run_key"], weights)
        if done is not None and (not do_eval or "eval" in done):
            print(f"--resume: {rel(weights)} is this run's, trained to its end with the same "
                  "solver, net, data and initial weights: kept (nothing trained)", file=sys.stderr)
            return dict(done, kept=True)
    log_path = results / "train.log"
    if plan["resume"] is not None:
        print(f"resuming from {rel(plan['resume'])} (appending to {rel(log_path)})", file=sys.stderr)
    elif resume:
        print("--resume: no solver state of this run to continue from: training from the start",
              file=sys.stderr)
    out = run_caffe(plan, log_path, max_minutes=max_minutes, desc=variant, position=position,
                    snapshot_minutes=snapshot_minutes)
    with atomic_path(weights) as tmp:
        shutil.copyfile(out["snapshot"], tmp)
    summary = {"variant": variant, "dataset": dataset, "weights": rel(weights), "log": rel(log_path),
               "solver": rel(plan["solver"]), "net": plan["net"], "batch": plan["batch"],
               "max_iter": plan["max_iter"], "seed": plan["seed"],
               "epochs": round(out["iterations"] * plan["batch"] / plan["n_train"], 3)
               if plan["batch"] and plan["n_train"] else None,
               "iterations": out["iterations"], "stopped_early": out["stopped_early"],
               "seconds": round(out["seconds"], 1), "train_frames": plan["n_train"],
               "test_frames": plan["n_test"], "final_train_loss": out["final_train_loss"],
               "final_test_loss": out["final_test_loss"],
               "final_test_iteration": out.get("final_test_iteration"),
               "initial_weights": None if init_weights is None else str(init_weights),
               "deploy": deploy, "run_key": plan["run_key"], "weights_sha256": file_sha256(weights),
               "blas_threads": int(t) if (t := blas_threads()).isdigit() else t,
               "blas_core": blas_core()}
    summary["average_pose_test_loss"], summary["stuck"] = check_learnt(out, lmdb_dir, dataset)
    if do_plot:
        png = plot(log_path, results / "loss.png")
        summary["loss_plot"] = rel(png) if png else None
    if do_eval:
        lmdb_prefix = eval_lmdb or str(LmdbSplit.of(lmdb_dir, dataset, "test").prefix)
        summary["eval_dir"] = rel(results / "eval")
        summary["eval"] = evaluate(weights, PROJECT / summary["deploy"], lmdb_prefix, results / "eval")
        real = None
        if dataset == "nyu":       # the real crops are NYU's
            real = score_real_crops(weights, PROJECT / summary["deploy"],
                                    results / "eval" / "real_crops.json", mn.has_theta_blob(variant))
        if real is not None:
            summary["real_crops"] = {k: real[k] for k in ("net_mean_mm", "fit_mean_mm",
                                                          "mean_pose_mean_mm", "frames")
                                     if k in real}
    write_json(results / "train.json", summary)
    return summary


def describe_eval(ev):
    """One-line summary of test_net.py's JSON (keys mean_error_mm, mean_error_nyu14_mm,
    mean_angle_error_deg, frac_out_of_limits, frames)."""
    joints = len(ev.get("per_joint_error_mm", {})) or 31
    parts = [f"mean joint error {ev['mean_error_mm']:.2f} mm ({joints} keypoints)"]
    if ev.get("mean_error_nyu14_mm") is not None:
        parts.append(f"{ev['mean_error_nyu14_mm']:.2f} mm (14 NYU joints)")
    elif ev.get("dataset", "nyu") != "nyu" and "dataset_joints" in ev:
        parts[0] = (f"mean joint error {ev['dataset_joints']['mean_error_mm']:.2f} mm "
                    f"({len(ev['dataset_joints']['per_joint_error_mm'])} "
                    f"{ev['dataset'].upper()} joints, the kit's camera)")
    if ev.get("mean_angle_error_deg") is not None:
        parts.append(f"mean angle error {ev['mean_angle_error_deg']:.2f} deg")
    if ev.get("frac_out_of_limits") is not None:
        parts.append(f"{100 * ev['frac_out_of_limits']:.1f}% of frames out of limits")
    parts.append(f"{ev['frames']} test frames")
    return ", ".join(parts)


def train_in_memory(net_param, solver_param, feed, iters, folder, seed, progress=False,
                    desc="training", show=None):
    """Train a net whose inputs are Input layers fed from memory, with pycaffe's solver (the
    small helper nets: the centre refinement, the hand detector).

    ``net_param``/``solver_param``: NetParameter and SolverParameter (the solver's ``net`` is set
    to the written net); ``feed(net, it, rng)`` fills the inputs of iteration ``it``;
    ``show(losses) -> str``: the progress bar's figure every 50 iterations. Returns ``(net,
    losses)``: the solver's train net after ``iters`` iterations and the loss of each."""
    from google.protobuf import text_format

    from deepmodel.nets.net_io import import_caffe

    caffe = import_caffe()
    folder = pathlib.Path(folder)
    net_path = folder / "train_net.prototxt"
    net_path.write_text(text_format.MessageToString(net_param))
    solver_param.net = str(net_path)
    solver_param.max_iter = iters
    solver_param.snapshot_prefix = str(folder / "snapshot")
    solver_path = folder / "solver.prototxt"
    solver_path.write_text(text_format.MessageToString(solver_param))
    caffe.set_random_seed(seed)
    solver = caffe.get_solver(str(solver_path))
    net = solver.net
    rng = np.random.default_rng(seed)
    losses = []
    from tqdm import tqdm

    with tqdm(total=iters, desc=desc, unit="it", disable=not progress) as bar:
        for it in range(iters):
            feed(net, it, rng)
            solver.step(1)
            losses.append(float(net.blobs["loss"].data))
            if show is not None and it % 50 == 49:
                bar.set_postfix_str(show(losses))
            bar.update(1)
    return net, losses


def refine_rms_mm(losses, half_cube_mm=150.0):
    """The refinement net's training figure: the rms offset error per axis (mm) over the last 100
    iterations of its EuclideanLoss (``sum of squares / (2 batch)``, in half-cube units)."""
    return float(np.sqrt(2 * np.mean(losses[-100:]) / 3) * half_cube_mm)


def train_refine_net(crops, offsets, iters, folder, progress=False, desc="training"):
    """The centre-refinement net (``netspec.refine_net``) trained on ``crops`` ``(n, 128, 128)``
    and their offsets to the palm centre ``(n, 3)`` (half-cube units), random batches with the
    net's seed: ``(net, losses)``, as :func:`train_in_memory`. Used by ``tools/train_refine.py``
    and, for the scene refiner, ``tools/train_detect.py``."""
    def feed(net, it, rng):
        idx = rng.integers(0, len(crops), net.blobs["depth"].data.shape[0])
        net.blobs["depth"].data[:, 0] = crops[idx]
        net.blobs["offset_gt"].data[...] = offsets[idx]

    return train_in_memory(mn.refine_net(deploy=False), mn.refine_solver(), feed, iters, folder,
                           mn.REFINE_SEED, progress, desc,
                           lambda losses: f"rms_mm={refine_rms_mm(losses):.1f}")
