#!/usr/bin/env python3
"""Speed figures of DeepModel-Caffe on this machine (CPU), all measured in one run.

    tools/bench.py                       # what `make bench` runs: prints a table
    tools/bench.py --json results/bench.json

Measured (median over repeats, after a warm-up):
  1. HandModel.forward + backward in NumPy at batch B (default 512), and the peak memory NumPy
     allocates for a fresh model's first forward + backward (workspaces included; the goal is
     at most proportional to B x 31 x 26, i.e. 3.3 MB in float64 at B = 512);
  2. the HandModelLayer through Caffe (Input -> Python layer, forward + backward) at batch B;
  3. one training iteration of the paper's net at batch B (pycaffe SGDSolver.step(1) on the train
     net with Input layers in place of the Data layers, so data loading is excluded), and each
     layer's forward + backward time in that net: the model layer's share of the iteration;
     inputs are real records of the train LMDBs when present (ReLU and pooling times depend on
     the data), else synthetic hand-like crops;
  3b. make train's iteration (variant hand_up, batch 64 or B if smaller, data loading excluded)
     with one OpenBLAS thread and with one per CPU, switched at run time
     (openblas_set_num_threads) between steps: tools/train.py's default of one thread;
  4. single-frame forward of the deploy net (frames/s), with and without the model layer, and the
     model layer alone: right after the layers below it, as the net runs it (the goal's figure),
     and repeated at once (warm caches; interleaved in one loop, measured first: after the
     batch-512 work the single-frame figures were less stable);
  4b. the same for the hand-up deploy net (tools/make_nets.py, variant hand_up), its HandTurnLayer
     alone inside it, and that layer's forward at make train's batch (64);
  5. if the LMDBs exist (`make lmdb-nyu`): how fast Caffe's Data layers deliver batches of B;
  6. label-free hand localisation (deepmodel.data.hand_crop.locate.locate_hand, with its learned refinement)
     + the crop (deepmodel.data.hand_crop.crop) on the raw 640x480 NYU test frame, one frame at a time
     (frames/s), each part alone, and the whole raw-frame path: localisation, crop, the deploy
     net with its model layer, keypoints in mm;
  7. ONNX Runtime against Caffe (needs the extra '.[onnx]' and models/real/deepmodel.onnx, `make
     onnx`), interleaved: the shipped real-depth net single frame and at batch 64, the hand-up
     net single frame, and the raw-frame path (tools/run_frames.py's FramePipeline) on each backend.

The project's speed goals (docs/benchmarks.md): layer forward+backward <= 5 ms at batch 512; the
layer's share of an iteration < 1 %; deploy single-frame inference >= 400 frames/s; localisation
+ crop >= 300 frames/s, the whole raw-frame path >= 250 frames/s, the model layer's single-frame
forward <= 0.1 ms; ONNX Runtime >= 2x Caffe's single-frame frames/s, its raw-frame path >= 400
frames/s. Timings depend on the load of the machine: the load average at the start is
reported with the figures.
"""
if __name__ == "__main__" and not __package__:   # a script outside the venv: say how to enter it
    import _venv_check  # noqa: F401
import argparse
import os
import pathlib
import statistics
import tempfile
import time
import tracemalloc

import numpy as np

os.environ.setdefault("GLOG_minloglevel", "2")

from deepmodel.plumbing import (PROJECT, InputError, blas_core, check_output_file, check_outputs,
                                openblas, run, write_json)
from deepmodel.plumbing import ArgumentParser, positive_int  # options checked as parsed
from deepmodel.data.records.split import LmdbSplit
from deepmodel.nets.net_io import import_caffe

BLOCK = 25                      # ONNX Runtime vs Caffe: runs of one job in a row
TURN_BATCH = 64                 # make train's batch (tools/train.py), for the HandTurnLayer's figure
GOALS = {"layer_fwd_bwd_ms": 5.0, "layer_share_pct": 1.0, "deploy_fps": 400.0, "localize_crop_fps": 300.0,
         "raw_path_fps": 250.0, "model_layer_ms_b1": 0.1, "onnx_vs_caffe": 2.0,
         "onnx_raw_path_fps": 400.0}


def timeit(fn, repeats, warmup=1):
    """Median and all wall times (ms) of ``fn()`` over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - t))
    return statistics.median(times), times


def build_net(caffe, net_param, phase, folder, name):
    from google.protobuf import text_format

    path = pathlib.Path(folder) / f"{name}.prototxt"
    path.write_text(text_format.MessageToString(net_param))
    return caffe.Net(str(path), phase), path


def sample_inputs(lmdb_dir, n, rng):
    """Inputs for the timings: ``(depth (n, 1, 128, 128), joints (n, 93), source description)``.

    Real crops and labels from the train LMDBs when they exist: timings of ReLU and max-pooling
    depend on the data (random noise makes their branches unpredictable and costs ~0.5 ms per
    frame more than a depth crop). Otherwise synthetic crops: far background (+1) with a smooth
    hand-sized blob, and the hand model's keypoints for small random parameters.
    """
    from deepmodel.model.hand_model import HandModel

    split = LmdbSplit.of(lmdb_dir, "nyu", "train")
    paths = [split.lmdb(k) for k in ("depth", "joint")]
    if all(split.count(k) > 0 for k in ("depth", "joint")):
        out = []
        for kind, shape in (("depth", (1, 128, 128)), ("joint", (93, 1, 1))):
            with split.open(kind) as db:
                rows = next(db.iter_batches(min(n, len(db)), shape))[1]
            reps = -(-n // len(rows))
            out.append(np.concatenate([rows] * reps)[:n])
        return out[0], out[1].reshape(n, 93), f"{paths[0].name} (first {min(n, len(rows))} records)"
    v, u = np.mgrid[0:128, 0:128] / 64.0 - 1.0
    c = rng.uniform(-0.2, 0.2, (n, 2, 1, 1))
    r2 = ((u - c[:, 0]) / 0.45) ** 2 + ((v - c[:, 1]) / 0.6) ** 2
    depth = np.where(r2 < 1, -0.3 + 0.3 * r2, 1.0)[:, None].astype(np.float32)
    joints = HandModel.nyu().forward(rng.uniform(-0.2, 0.2, (n, 26))).reshape(n, 93)
    return depth, joints, "synthetic blobs (no LMDBs)"


def bench_model(batch, repeats, rng):
    """HandModel forward+backward in NumPy: (median ms, peak MB of one call)."""
    from deepmodel.model.hand_model import HandModel

    model = HandModel.nyu()
    theta = rng.uniform(-0.3, 0.3, (batch, 26))
    grad = rng.standard_normal((batch, 93))

    def step():
        model.forward(theta)
        model.backward(theta, grad)

    ms, _ = timeit(step, repeats, warmup=2)
    # memory: a fresh model's first call, so that workspaces kept between calls are counted
    tracemalloc.start()
    fresh = HandModel.nyu()
    fresh.forward(theta)
    fresh.backward(theta, grad)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return ms, peak / 2**20


def bench_layer(caffe, batch, repeats, rng, folder):
    """HandModelLayer through Caffe: Input (batch, 26) -> Python layer -> (batch, 93)."""
    from deepmodel.nets import netspec as mn
    from caffe import layers as L

    n = caffe.NetSpec()
    n.theta = L.Input(shape={"dim": [batch, 26]})
    n.joints = L.Python(n.theta, python_param={"module": "deepmodel.layers.hand_model_layer",
                                               "layer": "HandModelLayer",
                                               "param_str": mn.HAND_MODEL_PARAM})
    p = n.to_proto()
    p.force_backward = True
    net, _ = build_net(caffe, p, caffe.TEST, folder, "layer")
    net.blobs["theta"].data[...] = rng.uniform(-0.3, 0.3, (batch, 26))
    net.blobs["joints"].diff[...] = rng.standard_normal((batch, 93))

    def step():
        net.forward()
        net.backward()

    ms, _ = timeit(step, repeats, warmup=2)
    return ms


def bench_solver(caffe, variant, batch, folder, inputs):
    """A pycaffe SGDSolver of ``variant``'s train net with Input layers (no test net, no
    snapshots), its inputs filled with ``inputs`` = (depth, joints) cut to ``batch``."""
    from deepmodel.nets import netspec as mn
    from google.protobuf import text_format

    net_path = pathlib.Path(folder) / f"train_bench_{variant}_{batch}.prototxt"
    net_path.write_text(text_format.MessageToString(mn.bench_train_net(variant, batch)))
    s = mn.solver(variant, net_path=str(net_path), max_iter=10**6)
    del s.test_iter[:]
    s.ClearField("test_interval")
    s.snapshot = 0
    s.snapshot_after_train = False
    s.display = 0
    solver_path = pathlib.Path(folder) / f"solver_bench_{variant}_{batch}.prototxt"
    solver_path.write_text(text_format.MessageToString(s))
    solver = caffe.SGDSolver(str(solver_path))
    solver.net.blobs["depth"].data[...] = inputs[0][:batch]
    solver.net.blobs["joint_gt"].data[...] = inputs[1][:batch]
    return solver


def bench_blas_threads(caffe, repeats, folder, inputs):
    """make train's training iteration (variant hand_up at the batch of ``inputs``, make train's
    being TURN_BATCH; pycaffe SGDSolver.step(1), data loading excluded) with one OpenBLAS thread
    and with one per CPU, switched with openblas_set_num_threads between steps (interleaved).
    Returns ``(ms with one, ms with n, n)``, or None when Caffe's BLAS is not OpenBLAS or there
    is one CPU."""
    lib, cpus = openblas(), os.cpu_count() or 1
    if lib is None or cpus < 2:
        return None
    before = lib.openblas_get_num_threads()
    solver = bench_solver(caffe, "hand_up", len(inputs[0]), folder, inputs)
    times = {1: [], cpus: []}
    try:
        for threads in (1, cpus):               # warm-up at each count
            lib.openblas_set_num_threads(threads)
            solver.step(1)
        for _ in range(repeats):
            for threads in (1, cpus):
                lib.openblas_set_num_threads(threads)
                t = time.perf_counter()
                solver.step(1)
                times[threads].append(1000 * (time.perf_counter() - t))
    finally:
        lib.openblas_set_num_threads(before)
    return statistics.median(times[1]), statistics.median(times[cpus]), cpus


def bench_iteration(caffe, batch, repeats, rng, folder, inputs):
    """One SGD iteration of the paper's net (Input layers); per-layer forward+backward ms."""
    solver = bench_solver(caffe, "paper", batch, folder, inputs)
    net = solver.net
    iter_ms, _ = timeit(lambda: solver.step(1), repeats, warmup=1)

    names = list(net._layer_names)
    per_layer = {name: 0.0 for name in names}
    runs = max(1, min(repeats, 3))
    fwd_times = {name: [] for name in names}
    bwd_times = {name: [] for name in names}
    for _ in range(runs):
        for i, name in enumerate(names):
            t = time.perf_counter()
            net._forward(i, i)
            fwd_times[name].append(1000 * (time.perf_counter() - t))
        for i in reversed(range(len(names))):
            t = time.perf_counter()
            net._backward(i, i)
            bwd_times[names[i]].append(1000 * (time.perf_counter() - t))
    for name in names:
        per_layer[name] = statistics.median(fwd_times[name]) + statistics.median(bwd_times[name])
    return iter_ms, per_layer


def bench_deploy(caffe, repeats, folder, depth):
    """Single-frame forward of the deploy net, median ms of: the whole net (``net.forward()``),
    the net up to ``theta`` (without the model layer), the model layer alone right after it (as
    the net runs it: the goal's figure) and the model layer once more at once (warm: its caches
    still hold what the first call touched), measured interleaved in one loop so that all see
    the same machine state."""
    from deepmodel.nets import netspec as mn

    net, _ = build_net(caffe, mn.deploy_net("paper", batch=1), caffe.TEST, folder, "deploy")
    net.blobs["depth"].data[...] = depth
    names = list(net._layer_names)
    theta_idx, joints_idx = names.index("theta"), names.index("joints")
    for _ in range(20):
        net.forward()
    full, trunk, layer, warm = [], [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        net.forward()
        t1 = time.perf_counter()
        net._forward(0, theta_idx)
        t2 = time.perf_counter()
        net._forward(joints_idx, joints_idx)
        t3 = time.perf_counter()
        net._forward(joints_idx, joints_idx)
        t4 = time.perf_counter()
        full.append(t1 - t0)
        trunk.append(t2 - t1)
        layer.append(t3 - t2)
        warm.append(t4 - t3)
    return tuple(1000 * statistics.median(x) for x in (full, trunk, layer, warm))


def bench_turn(caffe, repeats, folder, depth):
    """The turn to the hand (tools/make_nets.py, variant hand_up): median ms of the hand-up deploy
    net's single-frame forward, of its HandTurnLayer alone inside it, and of a HandTurnLayer
    forward at the batch of ``depth`` (make train's batch: 64), interleaved in one loop."""
    from deepmodel.nets import netspec as mn
    from caffe import layers as L

    net, _ = build_net(caffe, mn.deploy_net("hand_up", batch=1), caffe.TEST, folder, "deploy_up")
    net.blobs["depth"].data[...] = depth[:1]
    turn_idx = list(net._layer_names).index("depth_up")
    n = caffe.NetSpec()                         # the generator's turn layer alone, at this batch
    n.depth = L.Input(shape={"dim": list(depth.shape)})
    mn._net_input(n, "hand_up", n.depth)
    batch_net, _ = build_net(caffe, n.to_proto(), caffe.TEST, folder, "turn_batch")
    batch_net.blobs["depth"].data[...] = depth
    for _ in range(20):
        net.forward()
    batch_net.forward()
    full, alone, batch = [], [], []
    for i in range(repeats):
        t0 = time.perf_counter()
        net.forward()
        t1 = time.perf_counter()
        net._forward(turn_idx, turn_idx)
        t2 = time.perf_counter()
        full.append(t1 - t0)
        alone.append(t2 - t1)
        if i % 10 == 0:                         # the batch forward is longer: fewer of them
            t3 = time.perf_counter()
            batch_net.forward()
            batch.append(time.perf_counter() - t3)
    return tuple(1000 * statistics.median(x) for x in (full, alone, batch))


def bench_data(caffe, batch, repeats, folder, lmdb_dir):
    """ms per batch delivered by the native Data layers (depth + joint) from the train LMDBs."""
    from caffe import layers as L, params as P

    split = LmdbSplit.of(lmdb_dir, "nyu", "train")
    sources = {k: split.lmdb(k) for k in ("depth", "joint")}
    if not all(split.count(k) > 0 for k in sources):
        return None
    n = caffe.NetSpec()
    for k, src in sources.items():
        setattr(n, k, L.Data(source=str(src), backend=P.Data.LMDB, batch_size=batch))
    net, _ = build_net(caffe, n.to_proto(), caffe.TRAIN, folder, "data")
    ms, _ = timeit(net.forward, repeats, warmup=2)
    return ms


def bench_localize(caffe, frames, folder):
    """Median ms per frame on the raw NYU test frame (640x480), one frame at a time, interleaved
    in one loop over ``frames`` frames: ``locate_hand`` (with the learned refinement when its
    weights are present), the localiser without it, the refinement alone (two crops and two
    forwards of the refinement net), the crop at the centre, localisation + crop, and the whole
    raw-frame path: localisation, crop, the paper's deploy net with its model layer (single frame,
    initial weights: the time does not depend on them) and the keypoints in mm. Returns a dict."""
    from deepmodel.nets import netspec as mn

    from deepmodel.data.datasets import nyu
    from deepmodel.data.datasets.camera import NYU_CAMERA
    from deepmodel.data.hand_crop.crop import crop_depth
    from deepmodel.data.hand_crop.locate import learned_refiner, locate_hand
    from deepmodel.data.datasets.reference import NYU_RAW_FRAME

    depth = nyu.read_depth(NYU_RAW_FRAME)
    refiner = learned_refiner()
    net, _ = build_net(caffe, mn.deploy_net("paper", batch=1), caffe.TEST, folder, "deploy_path")
    data, joints = net.blobs["depth"].data, net.blobs["joints"].data

    def path():
        center, cube = locate_hand(depth, NYU_CAMERA)
        data[0, 0] = crop_depth(depth, center, cube, NYU_CAMERA)
        net.forward()
        return joints[0].reshape(31, 3) * (cube / 2.0) + NYU_CAMERA.uvd_to_xyz(center)

    from deepmodel.data.hand_crop.detect import HandFinder, default_detector

    detector = default_detector()
    finders = {"detect": HandFinder(NYU_CAMERA, 300.0),
               "track": HandFinder(NYU_CAMERA, 300.0, track=True)}
    scene = body_scene()

    def finder_path(finder, frame):
        center, _ = finder(frame)
        data[0, 0] = crop_depth(frame, center, 300.0, NYU_CAMERA)
        net.forward()
        return joints[0].reshape(31, 3) * 150.0 + NYU_CAMERA.uvd_to_xyz(center)

    for _ in range(5):
        path()
        finder_path(finders["detect"], scene)
    times = {k: [] for k in ("loc", "alone", "refine", "crop", "both", "path", "detect_path",
                             "scene_path", "track_path")}
    for _ in range(frames):
        t0 = time.perf_counter()
        center, cube = locate_hand(depth, NYU_CAMERA)
        t1 = time.perf_counter()
        crop_depth(depth, center, cube, NYU_CAMERA)
        t2 = time.perf_counter()
        crop_depth(depth, *locate_hand(depth, NYU_CAMERA), NYU_CAMERA)
        t3 = time.perf_counter()
        alone, _ = locate_hand(depth, NYU_CAMERA, refine=None)
        t4 = time.perf_counter()
        if refiner is not None:
            refiner(depth, NYU_CAMERA, alone, cube)
        t5 = time.perf_counter()
        path()
        t6 = time.perf_counter()
        if detector is not None:
            finder_path(finders["detect"], depth)
            t7 = time.perf_counter()
            finder_path(finders["detect"], scene)
            t8 = time.perf_counter()
            finder_path(finders["track"], depth)
            t9 = time.perf_counter()
            times["detect_path"].append(t7 - t6)
            times["scene_path"].append(t8 - t7)
            times["track_path"].append(t9 - t8)
        for k, dt in (("loc", t1 - t0), ("crop", t2 - t1), ("both", t3 - t2), ("alone", t4 - t3),
                      ("refine", t5 - t4), ("path", t6 - t5)):
            times[k].append(dt)
    res = {k: 1000 * statistics.median(v) if v else None for k, v in times.items()}
    res["refined"] = refiner is not None
    res["scene_how"] = finders["detect"](scene)[1] if detector is not None else None
    return res


def bench_onnx(frames, folder):
    """ONNX Runtime against Caffe (median ms per run), in blocks of :data:`BLOCK` runs of one job
    after another, cycling through the jobs (each runs as a stream of frames would, the machine's
    state shared by all): the shipped real-depth net
    (``models/real/``: the paper's net + model layer) on one real crop and on a batch of 64, the
    hand-up net (``models/default/``, exported here) on one crop, and the raw-frame path on the
    NYU frame (:class:`deepmodel.pipeline.frames.FramePipeline`: the hand found by the
    nearest surface and the learned detector, the refinement, the crop, the net) on each backend.
    None when onnxruntime, onnx or the shipped .onnx files are missing."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return None
    from deepmodel.data.datasets import nyu
    from deepmodel.data.datasets.camera import NYU_CAMERA
    from deepmodel.data.datasets.reference import NYU_RAW_FRAME
    from deepmodel.data.evaluation.real_crops import real_crops
    from deepmodel.export.caffe_net import export_net
    from deepmodel.nets.net_io import TURNED_MODEL, load_net
    from deepmodel.nets.weights import SHIPPED, SHIPPED_REAL
    from deepmodel.pipeline.frames import FramePipeline
    from deepmodel.runtime.nets import CaffeNet, OnnxNet, onnx_path

    if not onnx_path(SHIPPED_REAL).is_file():
        return None
    crops = real_crops()["crops"]
    batch = np.concatenate([crops] * 13)[:64]
    up_onnx = pathlib.Path(folder) / "hand_up.onnx"
    onnx.save(export_net(PROJECT / TURNED_MODEL, SHIPPED), str(up_onnx))
    nets = {"caffe": CaffeNet(load_net(PROJECT / "prototxt/deploy.prototxt", SHIPPED_REAL)),
            "onnx": OnnxNet(onnx_path(SHIPPED_REAL)),
            "caffe64": CaffeNet(load_net(PROJECT / "prototxt/deploy.prototxt", SHIPPED_REAL)),
            "up_caffe": CaffeNet(load_net(PROJECT / TURNED_MODEL, SHIPPED)),
            "up_onnx": OnnxNet(up_onnx)}
    nets["onnx64"] = nets["onnx"]
    depth = nyu.read_depth(NYU_RAW_FRAME)
    pipes = {b: FramePipeline(PROJECT / "prototxt/deploy.prototxt", SHIPPED_REAL, NYU_CAMERA, 300.0,
                              backend=b) for b in ("caffe", "onnx")}
    jobs = {k: (lambda n=n, x=(batch if k.endswith("64") else crops[:1]): n.run(x, ["joints"]))
            for k, n in nets.items()}
    jobs.update({f"path_{b}": (lambda p=p: p(depth)) for b, p in pipes.items()})
    for _ in range(5):
        for job in jobs.values():
            job()
    times = {k: [] for k in jobs}
    for i in range(max(1, frames // BLOCK)):
        for k, job in jobs.items():
            for _ in range(max(1, BLOCK // 10) if k.endswith("64") else BLOCK):
                t0 = time.perf_counter()    # a batch takes longer: a tenth as many
                job()
                times[k].append(time.perf_counter() - t0)
    return {k: 1000 * statistics.median(v) for k, v in times.items()}


def body_scene():
    """One synthetic scene with a person (``deepmodel.data.synthetic.scenes``, seed 3): the first
    with the hand beside the body whose nearest surface is not the hand (the localiser's centre
    more than 100 mm from the palm), where the learned detector has to overrule it."""
    from deepmodel.data.datasets.camera import NYU_CAMERA
    from deepmodel.data.hand_crop.locate import locate
    from deepmodel.data.synthetic.nyu import PoseSampler
    from deepmodel.data.synthetic.scenes import make_scenes
    from deepmodel.model.hand_model import HandModel

    depth, palm, kind = make_scenes(PoseSampler(HandModel.nyu()), np.random.default_rng(3), 32)
    for d, p, k in zip(depth, palm, kind):
        c = locate(d, NYU_CAMERA, refine=None).center_uvd
        if k == 0 and np.linalg.norm(NYU_CAMERA.uvd_to_xyz(c) - p) > 100.0:
            return d
    return depth[0]


def main(argv=None):
    parser = ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 2)[2])
    parser.add_argument("--batch", type=int, default=512, help="batch size (default 512, the paper's)")
    parser.add_argument("--repeats", type=positive_int, default=20,
                        help="repeats of the fast measurements (default 20; the training iteration "
                             "uses a quarter of them, at least 2)")
    parser.add_argument("--frames", type=positive_int, default=500,
                        help="single-frame forwards of the deploy net (default 500)")
    parser.add_argument("--lmdb-dir", type=pathlib.Path, default=PROJECT / "data" / "lmdb",
                        help="LMDB folder for the data-pipeline figure (default data/lmdb; "
                             "skipped when absent)")
    parser.add_argument("--json", type=pathlib.Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    for opt in ("batch", "repeats", "frames"):
        if getattr(args, opt) < 1:
            raise InputError(f"--{opt} {getattr(args, opt)}: must be at least 1")
    if args.json and not args.json.parent.is_dir():
        raise InputError(f"{args.json.parent}: no such folder for --json")
    check_output_file(args.json, "--json")
    check_outputs([("--json", args.json)], [("--lmdb-dir", args.lmdb_dir)])

    caffe = import_caffe()
    rng = np.random.default_rng(0)
    b = args.batch
    load = os.getloadavg()
    res = {"batch": b, "cpus": os.cpu_count(), "loadavg_1min_at_start": round(load[0], 2),
           "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
           "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS"), "openblas_core": blas_core()}
    iter_repeats = max(2, args.repeats // 4)
    depth, joints, res["inputs"] = sample_inputs(args.lmdb_dir, b, rng)
    turn_b = min(TURN_BATCH, len(depth))
    with tempfile.TemporaryDirectory() as folder:
        # deploy first: after the batch-512 iteration the single-frame times were less stable
        steps = ["deploy", "turn", "localize", "onnx", "model", "layer", "iteration", "threads",
                 "data"]
        from tqdm import tqdm

        bar = tqdm(steps, desc="bench", leave=False)
        for step in bar:
            bar.set_postfix_str(step)
            if step == "model":
                ms, mb = bench_model(b, args.repeats, rng)
                res[f"model_fwd_bwd_ms_b{b}"] = ms
                res[f"model_fwd_bwd_peak_mb_b{b}"] = mb
            elif step == "layer":
                res[f"layer_fwd_bwd_ms_b{b}"] = bench_layer(caffe, b, args.repeats, rng, folder)
            elif step == "iteration":
                it_ms, per_layer = bench_iteration(caffe, b, iter_repeats, rng, folder,
                                                   (depth, joints))
                res[f"iteration_ms_b{b}"] = it_ms
                res[f"iteration_layers_ms_b{b}"] = per_layer
                res[f"model_layer_in_iteration_ms_b{b}"] = per_layer["joints"]
                res["model_layer_share_pct"] = 100 * per_layer["joints"] / it_ms
                res["limit_loss_in_iteration_ms"] = per_layer["limit_loss"]
                res["python_layers_share_pct"] = (100 * (per_layer["joints"] + per_layer["limit_loss"])
                                                  / it_ms)
            elif step == "threads":
                bt = bench_blas_threads(caffe, max(4, args.repeats // 2), folder,
                                        (depth[:turn_b], joints[:turn_b]))
                res["blas_threads_cpus"] = None if bt is None else bt[2]
                res[f"hand_up_iteration_ms_b{turn_b}_1_thread"] = None if bt is None else bt[0]
                res[f"hand_up_iteration_ms_b{turn_b}_all_threads"] = None if bt is None else bt[1]
            elif step == "deploy":
                full, trunk, layer, warm = bench_deploy(caffe, args.frames, folder, depth[:1])
                res["net_forward_ms_b1"] = full
                res["model_layer_forward_ms_b1"] = layer
                res["model_layer_forward_ms_b1_warm"] = warm
                res["net_forward_fps_b1"] = 1000 / full
                res["net_forward_ms_b1_without_model_layer"] = trunk
                res["net_forward_fps_b1_without_model_layer"] = 1000 / trunk
            elif step == "turn":
                full, alone, batch = bench_turn(caffe, args.frames, folder, depth[:turn_b])
                res["hand_up_net_forward_ms_b1"] = full
                res["hand_up_net_forward_fps_b1"] = 1000 / full
                res["hand_turn_layer_forward_ms_b1"] = alone
                res[f"hand_turn_layer_forward_ms_b{turn_b}"] = batch
            elif step == "localize":
                lc = bench_localize(caffe, args.frames, folder)
                res["localize_ms"] = lc["loc"]
                res["localize_refined"] = lc["refined"]
                res["localize_without_refinement_ms"] = lc["alone"]
                res["refinement_ms"] = lc["refine"] if lc["refined"] else None
                res["crop_ms"] = lc["crop"]
                res["localize_crop_ms"] = lc["both"]
                res["localize_crop_fps"] = 1000 / lc["both"]
                res["raw_frame_path_ms"] = lc["path"]
                res["raw_frame_path_fps"] = 1000 / lc["path"]
                for k in ("detect_path", "scene_path", "track_path"):
                    res[f"raw_frame_{k}_ms"] = lc[k]
                    res[f"raw_frame_{k}_fps"] = None if lc[k] is None else 1000 / lc[k]
                res["scene_found_by"] = lc["scene_how"]
            elif step == "onnx":
                res["onnx_ms"] = bench_onnx(args.frames, folder)
            elif step == "data":
                ms = bench_data(caffe, b, max(2, args.repeats // 4), folder, args.lmdb_dir)
                res[f"data_layers_ms_per_batch_b{b}"] = ms
                res["data_frames_per_s"] = None if ms is None else 1000 * b / ms

    rows = [
        (f"HandModel forward+backward, NumPy, batch {b}", f"{res[f'model_fwd_bwd_ms_b{b}']:.2f} ms",
         f"peak {res[f'model_fwd_bwd_peak_mb_b{b}']:.1f} MB (N x 31 x 26 float64: "
         f"{b * 31 * 26 * 8 / 2**20:.1f} MB)"),
        (f"HandModelLayer forward+backward through Caffe, batch {b}",
         f"{res[f'layer_fwd_bwd_ms_b{b}']:.2f} ms",
         f"goal <= {GOALS['layer_fwd_bwd_ms']:g} ms at b512"),
        (f"training iteration of the paper's net, batch {b}", f"{res[f'iteration_ms_b{b}']:.0f} ms",
         "SGD step, data loading excluded"),
        ("  model layer inside it (forward+backward)",
         f"{res[f'model_layer_in_iteration_ms_b{b}']:.2f} ms",
         f"{res['model_layer_share_pct']:.2f} % of the iteration (goal < {GOALS['layer_share_pct']:g} %)"),
        ("  joint-limit loss inside it", f"{res['limit_loss_in_iteration_ms']:.2f} ms",
         f"both Python layers {res['python_layers_share_pct']:.2f} %"),
        ("deploy net, single frame", f"{res['net_forward_ms_b1']:.3f} ms",
         f"{res['net_forward_fps_b1']:.0f} frames/s (goal >= {GOALS['deploy_fps']:g})"),
        ("  without the model layer", f"{res['net_forward_ms_b1_without_model_layer']:.3f} ms",
         f"{res['net_forward_fps_b1_without_model_layer']:.0f} frames/s"),
        ("  the model layer alone", f"{res['model_layer_forward_ms_b1']:.3f} ms",
         f"forward, one frame, right after the layers below it (goal <= {GOALS['model_layer_ms_b1']:g} ms)"),
        ("  the model layer alone, warm", f"{res['model_layer_forward_ms_b1_warm']:.3f} ms",
         "the same forward repeated at once (its caches still warm)"),
    ]
    rows += [
        ("hand-up deploy net (variant hand_up), single frame",
         f"{res['hand_up_net_forward_ms_b1']:.3f} ms",
         f"{res['hand_up_net_forward_fps_b1']:.0f} frames/s: the crop turned hand-up first"),
        ("  its HandTurnLayer alone", f"{res['hand_turn_layer_forward_ms_b1']:.3f} ms",
         "forward, one frame: the angle and the turn"),
        (f"HandTurnLayer forward, batch {turn_b}",
         f"{res[f'hand_turn_layer_forward_ms_b{turn_b}']:.2f} ms",
         "make train's batch (in the training iteration)" if turn_b == TURN_BATCH else
         f"make train's batch is {TURN_BATCH} (--batch smaller)"),
    ]
    one, every = (res[f"hand_up_iteration_ms_b{turn_b}_{k}"] for k in ("1_thread", "all_threads"))
    rows.append((f"hand_up training iteration, batch {turn_b}, 1 OpenBLAS thread",
                 "n/a" if one is None else f"{one:.0f} ms",
                 "Caffe's BLAS is not OpenBLAS, or one CPU" if one is None else
                 f"{res['blas_threads_cpus']} threads: {every:.0f} ms ({every / one:.2f} x; "
                 "tools/train.py runs one unless OPENBLAS_NUM_THREADS is set)"))
    rows += [
        ("hand localisation + crop, raw 640x480 NYU frame", f"{res['localize_crop_ms']:.3f} ms",
         f"{res['localize_crop_fps']:.0f} frames/s (goal >= {GOALS['localize_crop_fps']:g})"),
        ("  locate_hand alone", f"{res['localize_ms']:.3f} ms",
         "no label, one frame" + (", learned refinement included" if res["localize_refined"]
                                  else " (no refinement weights)")),
        ("  the localiser without the refinement", f"{res['localize_without_refinement_ms']:.3f} ms",
         "locate_hand(..., refine=None)"),
        ("  the refinement alone", "n/a" if res["refinement_ms"] is None else
         f"{res['refinement_ms']:.3f} ms", "two crops + refinement net forwards"),
        ("  crop alone (128x128)", f"{res['crop_ms']:.3f} ms", "deepmodel.data.hand_crop.crop.crop_depth"),
        ("whole raw-frame path: localise, crop, net, model layer", f"{res['raw_frame_path_ms']:.3f} ms",
         f"{res['raw_frame_path_fps']:.0f} frames/s (goal >= {GOALS['raw_path_fps']:g}), one frame at a time"),
    ]
    for k, what, note in (
            ("detect_path", "  the same with the learned detector", "the NYU frame (the localiser kept)"),
            ("scene_path", "  the same on a scene with a person", f"the hand found by: {res['scene_found_by']}"),
            ("track_path", "  the same tracking a sequence", "the NYU frame again and again")):
        ms = res[f"raw_frame_{k}_ms"]
        rows.append((what, "n/a" if ms is None else f"{ms:.3f} ms",
                     "no detector weights (make detect-net)" if ms is None else
                     f"{1000 / ms:.0f} frames/s (goal >= {GOALS['raw_path_fps']:g}); {note}"))
    ox = res["onnx_ms"]
    if ox is None:
        rows.append(("ONNX Runtime", "n/a", "no onnxruntime or no models/real/deepmodel.onnx "
                     "(pip install -e '.[onnx]'; make onnx)"))
    else:
        rows += [
            ("ONNX Runtime: the paper's net + model layer, single frame", f"{ox['onnx']:.3f} ms",
             f"{1000 / ox['onnx']:.0f} frames/s; Caffe in the same run {ox['caffe']:.3f} ms: "
             f"{ox['caffe'] / ox['onnx']:.2f} x (goal >= {GOALS['onnx_vs_caffe']:g} x)"),
            ("  the same, batch 64", f"{ox['onnx64']:.2f} ms",
             f"{64000 / ox['onnx64']:.0f} frames/s; Caffe {ox['caffe64']:.2f} ms: "
             f"{ox['caffe64'] / ox['onnx64']:.2f} x"),
            ("  the hand-up net (turn + net + model layer), single frame", f"{ox['up_onnx']:.3f} ms",
             f"{1000 / ox['up_onnx']:.0f} frames/s; Caffe {ox['up_caffe']:.3f} ms: "
             f"{ox['up_caffe'] / ox['up_onnx']:.2f} x"),
            ("  raw-frame path, --backend onnx", f"{ox['path_onnx']:.3f} ms",
             f"{1000 / ox['path_onnx']:.0f} frames/s (goal >= {GOALS['onnx_raw_path_fps']:g}); "
             f"--backend caffe in the same run {ox['path_caffe']:.3f} ms "
             f"({1000 / ox['path_caffe']:.0f} frames/s); NYU frame, detector on"),
        ]
    ms = res[f"data_layers_ms_per_batch_b{b}"]
    rows.append((f"Data layers (depth + joint LMDB), batch {b}",
                 "n/a" if ms is None else f"{ms:.0f} ms",
                 "no LMDBs (make lmdb-nyu)" if ms is None else f"{res['data_frames_per_s']:.0f} frames/s"))
    width = max(len(r[0]) for r in rows)
    print(f"bench: {res['cpus']} CPUs, load average {res['loadavg_1min_at_start']} at start, "
          f"OPENBLAS_CORETYPE={res['openblas_coretype']} (kernel: {res['openblas_core']}), "
          f"inputs: {res['inputs']}")
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>10}  {note}")
    if args.json:
        write_json(args.json, res)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    run(main)
