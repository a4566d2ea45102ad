#!/usr/bin/env python3
"""One-line mutations of the production code, each run against the tests that should catch it
(docs/testing.md lists them with the test that caught each).

    .venv/bin/python scripts/mutations.py              # all, about 4 minutes on 2 cores
    .venv/bin/python scripts/mutations.py --area data  # one area

Each mutation replaces one line (exactly one occurrence, else it is reported as stale), runs the
named test files with ``pytest -x``, and puts the file back whatever happens. Exit 1 when a
mutation survives or is stale. Run it on a clean work tree: it edits files in place.
"""
import argparse
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]

# (area, file, line as it is, line mutated, what it breaks, test files)
MUTATIONS = [
    ("fitting", "python_layers/nets/net_io.py",
     'return keypoints_of_theta(fitter.model, fit["theta"], angles), fit',
     'return keypoints_of_theta(fitter.model, fit["theta"]), fit',
     "the depth fit's pose not turned back", ["tests/test_score_real.py", "tests/test_depth_fit.py"]),
    ("fitting", "python_layers/nets/net_io.py",
     'return keypoints_of_theta(fitter.model, fit["theta"], angles), fit',
     'return keypoints_of_theta(fitter.model, theta, angles), fit',
     "the depth fit skipped", ["tests/test_score_real.py", "tests/test_depth_fit.py"]),
    ("fitting", "python_layers/nets/net_io.py",
     "fit = fitter.fit(posed[:, 0], theta, center_mm, cube_mm, progress=progress)",
     "fit = fitter.fit(crops[:, 0], theta, center_mm, cube_mm, progress=progress)",
     "the fit run on the crops as they came", ["tests/test_depth_fit.py"]),
    ("fitting", "tools/fit_depth.py",
     "fit_abs, fit_c = errors_mm(fitted, true, cube / 2)",
     "fit_abs, fit_c = errors_mm(pred, true, cube / 2)",
     "fit_depth.py scores the net's keypoints as the fit's", ["tests/test_depth_fit.py"]),
    ("fitting", "python_layers/fitting/depth_fit.py",
     "NOMINAL_DEPTH_MM = 750.0", "NOMINAL_DEPTH_MM = 650.0",
     "the nominal crop depth 100 mm nearer", ["tests/test_depth_fit.py", "tests/test_score_real.py"]),
    ("evaluation", "tools/table1.py",
     'else "yes" if oob["paper"] < oob["nolimit"] else "no"))',
     'else "yes" if oob["paper"] > oob["nolimit"] else "no"))',
     "Table 1's joint-limit verdict inverted", ["tests/test_table1_findings.py"]),
    ("evaluation", "tools/table1.py",
     '"yes" if best_model <= err["direct_joints"] else "no"))',
     '"yes" if best_model >= err["direct_joints"] else "no"))',
     "Table 1's model-layer verdict inverted", ["tests/test_table1_findings.py"]),
    ("evaluation", "tools/table1.py",
     'worse = err["direct_params"] > 1.1 * min(', 'worse = err["direct_params"] < 1.1 * min(',
     "Table 1's direct-parameter verdict inverted", ["tests/test_table1_findings.py"]),
    ("evaluation", "data_prep/evaluation/metrics.py",
     "return (mean[None, :] <= t[:, None]).mean(axis=1)",
     "return (mean[None, :] <= 2 * t[:, None]).mean(axis=1)",
     "the mean-error success curve at twice the threshold", ["tests/test_test_net.py"]),
    ("evaluation", "data_prep/evaluation/metrics.py",
     "return (worst[None, :] <= t[:, None]).mean(axis=1)",
     "return (worst[None, :] < t[:, None]).mean(axis=1)",
     "the worst-joint success curve with < for <=", ["tests/test_test_net.py"]),
    ("evaluation", "data_prep/evaluation/real_crops.py",
     "cube = np.where(frames >= nyu.SUBJECT2_FIRST_FRAME, nyu.CUBE_MM * nyu.SUBJECT2_SCALE,",
     "cube = np.where(frames >= nyu.SUBJECT2_FIRST_FRAME, nyu.CUBE_MM,",
     "the second subject's smaller cube ignored", ["tests/test_score_real.py"]),
    ("benchmark", "tools/bench.py", "    return ms, peak / 2**20", "    return 1.42, peak / 2**20",
     "the model's time a constant", ["tests/test_bench.py"]),
    ("benchmark", "tools/bench.py", "    ms, _ = timeit(step, repeats, warmup=2)\n    return ms\n",
     "    ms, _ = timeit(step, repeats, warmup=2)\n    return 1.42\n",
     "the model layer's time through Caffe a constant", ["tests/test_bench.py"]),
    ("benchmark", "tools/bench.py",
     "per_layer[name] = statistics.median(fwd_times[name]) + statistics.median(bwd_times[name])",
     "per_layer[name] = statistics.median(fwd_times[name])",
     "a layer's share of the iteration counting its forward only", ["tests/test_bench.py"]),
    ("model", "python_layers/model/hand_model.py",
     "e[q, p], e[p, q] = np.sin(t), -np.sin(t)", "e[q, p], e[p, q] = -np.sin(t), np.sin(t)",
     "the fixed rotations turned the other way", ["tests/test_hand_model.py"]),
    ("model", "python_layers/model/hand_turn.py",
     "xyz[..., 0] = c * x - s * y", "xyz[..., 0] = c * x + s * y",
     "the keypoint turn not a rotation", ["tests/test_hand_turn.py"]),
    ("layers", "python_layers/layers/joint_limit_loss.py",
     "grad = (above > 0).astype(np.float64) - (below > 0)",
     "grad = (below > 0).astype(np.float64) - (above > 0)",
     "the joint-limit loss's gradient reversed", ["tests/test_joint_limit_loss.py"]),
    ("data", "data_prep/hand_crop/crop.py", "h = float(cube_mm) / 2.0", "h = float(cube_mm) / 2.2",
     "the crop's half cube 10% off", ["tests/test_data_nyu.py", "tests/test_data_lmdb.py"]),
    ("data", "data_prep/records/split.py",
     "return norm * (np.asarray(cube, np.float64)[:, None, None] / 2.0)",
     "return norm * (np.asarray(cube, np.float64)[:, None, None] / 2.1)",
     "normalised units back to mm 5% off", ["tests/test_data_lmdb.py", "tests/test_test_net.py"]),
    ("data", "data_prep/datasets/camera.py",
     "y = (self.cy - uvd[..., 1]) * d / self.fy", "y = (uvd[..., 1] - self.cy) * d / self.fy",
     "the camera's y axis pointing down", ["tests/test_data_nyu.py", "tests/test_fit_pose.py"]),
    ("data", "tools/make_lmdb.py",
     "if not args.force and build.is_current(args.out, table.prefix, fp):",
     "if not args.force and False:",
     "a current split built again", ["tests/test_data_lmdb.py"]),
    ("data", "data_prep/records/augment.py", "new_cube = cube[src] / scale", "new_cube = cube[src] * scale",
     "--scale making the hand smaller", ["tests/test_augment.py"]),
    ("data", "data_prep/datasets/camera.py",
     "return raw.astype(np.float32) * np.float32(self.depth_unit_mm)", "return raw.astype(np.float32)",
     "raw frames' depth unit ignored", ["tests/test_run_frames.py", "tests/test_demo.py"]),
    ("localisation", "data_prep/hand_crop/locate.py",
     "DEPTH_OFFSET_MM = 28.0", "DEPTH_OFFSET_MM = 18.0",
     "the found centre's depth offset 10 mm off", ["tests/test_localize.py"]),
    ("pipeline", "python_layers/pipeline/frames.py",
     "xyz = kp * (cube / 2.0) + com", "xyz = kp * cube + com",
     "raw-frame keypoints scaled by the cube", ["tests/test_run_frames.py"]),
    ("training", "python_layers/nets/training.py", "BLAS_THREADS = 1", "BLAS_THREADS = 2",
     "caffe train with two OpenBLAS threads by default",
     ["tests/test_train.py::test_caffe_train_runs_one_blas_thread_unless_told"]),
    ("training", "python_layers/nets/training.py", "STUCK_RATIO = 0.8", "STUCK_RATIO = 0.0",
     "every run flagged as not having learnt", ["tests/test_train.py"]),
    ("camera", "data_prep/datasets/realsense.py",
     "unit_mm = round(_short(depth_scale_m) * 1000.0, 12)",
     "unit_mm = 1.0",
     "a recording's depth unit ignored", ["tests/test_sources.py"]),
    ("camera", "tools/run_frames.py",
     'track = args.track == "on" or (args.track == "auto" and source.recording is not None)',
     'track = args.track == "on"',
     "a recording not tracked by default", ["tests/test_sources.py"]),
    ("camera", "python_layers/pipeline/frames.py",
     "xyz = self.smooth * self.previous + (1.0 - self.smooth) * xyz",
     "xyz = (1.0 - self.smooth) * self.previous + self.smooth * xyz",
     "--smooth weights swapped", ["tests/test_run_frames.py"]),
    ("camera", "data_prep/hand_crop/detect.py",
     "return bool(near.size and near.max() >= AGREE * score)",
     "return bool(near.size and near.max() >= 0.0 * score)",
     "the detector never overrules the nearest surface", ["tests/test_detect.py"]),
    ("camera", "data_prep/hand_crop/detect.py",
     "self.redetect_every and self.since >= self.redetect_every):",
     "self.redetect_every and self.since > self.redetect_every):",
     "re-detection a frame late", ["tests/test_detect.py"]),
    ("camera", "data_prep/synthetic/scenes.py",
     "gap = np.where(beside, rng.uniform(-60.0, 60.0, n), rng.uniform(150.0, 450.0, n))",
     "gap = rng.uniform(150.0, 450.0, n)",
     "no scene with the hand beside the body at its depth", ["tests/test_detect.py"]),
    ("robustness", "plumbing/__init__.py", "            if out == inp:", "            if False:",
     "an output that is an input of its run accepted",
     ["tests/test_plumbing.py", "tests/test_hostile.py::test_hostile_case[plot_log-out_is_the_log]"]),
    ("robustness", "data_prep/records/lmdb_io.py", "    if size < need:", "    if False:",
     "a truncated data.mdb mapped (SIGBUS)", ["tests/test_data_lmdb.py"]),
    ("robustness", "data_prep/records/split.py",
     "LABEL_LIMIT = 1000.0     # a label beyond this (normalised units, radians) is not a label",
     "LABEL_LIMIT = 1e300     # a label beyond this (normalised units, radians) is not a label",
     "an LMDB label of 1e30 scored", ["tests/test_data_lmdb.py"]),
    ("robustness", "plumbing/__init__.py", "    remove_stale_temporaries(path)\n", "\n",
     "a killed run's temporaries left forever", ["tests/test_plumbing.py"]),
    ("onnx", "python_layers/export/hand_ops.py",
     "big[slot, 1, q, p], big[slot, 1, p, q] = 1.0, -1.0  # sin",
     "big[slot, 1, q, p], big[slot, 1, p, q] = -1.0, 1.0  # sin",
     "the exported rotations turn the wrong way", ["tests/test_onnx.py"]),
    ("onnx", "python_layers/export/hand_ops.py", "if centre is not None:", "if False:",
     "the exported ICVL joint set not centred on the palm", ["tests/test_onnx.py"]),
    ("onnx", "python_layers/export/turn_ops.py",
     'col = g.cast(g.op("Round", [sc]), np.int64, "turn/col")',
     'col = g.cast(g.op("Floor", [sc]), np.int64, "turn/col")',
     "the exported crop turn rounds source pixels down, not as OpenCV", ["tests/test_onnx.py"]),
    ("onnx", "python_layers/export/turn_ops.py",
     'pos = g.op("Mul", [g.cast(top, F64), g.const(F64(ht.FAR_QUANTILE), "turn/quantile")],',
     'pos = g.op("Mul", [g.cast(top, F64), g.const(F64(0.8), "turn/quantile")],',
     "the exported forearm fall-back takes another quantile", ["tests/test_onnx.py"]),
    ("onnx", "python_layers/runtime/nets.py",
     'return weights if weights.suffix == ".onnx" else weights.with_suffix(".onnx")',
     'return weights',
     "--backend onnx handed the .caffemodel", ["tests/test_onnx.py"]),
]


def run(mutation):
    """-> ``(status, first failing test or pytest's last line)``; status caught|survived|stale."""
    _, rel, old, new, _, tests = mutation
    path = ROOT / rel
    src = path.read_text()
    if src.count(old) != 1:
        return "stale", f"{rel}: the line is there {src.count(old)} times, not once"
    path.write_text(src.replace(old, new))
    try:
        env = dict(os.environ, PATH=f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
                   GLOG_minloglevel="2")
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                               *tests], cwd=ROOT, capture_output=True, text=True, env=env)
    finally:
        path.write_text(src)
    failed = [ln.split()[1] for ln in proc.stdout.splitlines() if ln.startswith("FAILED")]
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr.strip()[-200:]
    return ("caught" if proc.returncode else "survived"), (failed[0] if failed else last)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--area", choices=sorted({m[0] for m in MUTATIONS}), help="only this area")
    args = p.parse_args(argv)
    todo = [m for m in MUTATIONS if args.area in (None, m[0])]
    bad = 0
    for i, m in enumerate(todo, 1):
        status, detail = run(m)
        bad += status != "caught"
        print(f"[{i}/{len(todo)}] {status:8s} {m[1]}: {m[4]} ({detail})", flush=True)
    print(f"{len(todo) - bad} caught, {bad} survived or stale")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
