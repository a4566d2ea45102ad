"""Smoke test of tools/bench.py with tiny sizes: it runs and its JSON is sane (no timing goals here)."""
import json
import math
import os
import subprocess
import sys

from tiny_lmdb import write_tiny_lmdbs

PY = sys.executable


def _positive(x):
    return isinstance(x, float) and math.isfinite(x) and x > 0


def test_bench_cli_reports_figures_on_tiny_lmdbs(project_root, tmp_path):
    lmdb_dir = write_tiny_lmdbs(tmp_path / "lmdb", n_train=16, n_test=4)
    out = tmp_path / "bench.json"
    proc = subprocess.run([PY, "tools/bench.py", "--batch", "8", "--repeats", "2", "--frames", "5",
                           "--lmdb-dir", str(lmdb_dir), "--json", str(out)],
                          cwd=project_root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())
    assert res["batch"] == 8
    assert res["inputs"] == "nyu_train_depth (first 8 records)"
    for key in ("model_fwd_bwd_ms_b8", "layer_fwd_bwd_ms_b8", "iteration_ms_b8",
                "model_layer_in_iteration_ms_b8", "net_forward_ms_b1",
                "net_forward_ms_b1_without_model_layer", "model_layer_forward_ms_b1",
                "model_layer_forward_ms_b1_warm",
                "data_layers_ms_per_batch_b8",
                "model_fwd_bwd_peak_mb_b8", "localize_ms", "crop_ms", "localize_crop_ms"):
        assert _positive(res[key]), key
    assert math.isclose(res["localize_crop_fps"], 1000 / res["localize_crop_ms"])
    assert res["localize_refined"] is True
    for key in ("localize_without_refinement_ms", "refinement_ms", "raw_frame_path_ms"):
        assert _positive(res[key]), key
    assert math.isclose(res["raw_frame_path_fps"], 1000 / res["raw_frame_path_ms"])
    assert f"{res['raw_frame_path_fps']:.0f} frames/s (goal >= 250)" in proc.stdout
    assert f"{res['localize_crop_fps']:.0f} frames/s" in proc.stdout
    assert math.isclose(res["net_forward_fps_b1"], 1000 / res["net_forward_ms_b1"])
    assert math.isclose(res["data_frames_per_s"], 8000 / res["data_layers_ms_per_batch_b8"])
    layers = res["iteration_layers_ms_b8"]
    for name in ("conv1", "conv2", "conv3", "fc1", "fc2", "theta", "joints", "joint_loss",
                 "limit_loss"):
        assert _positive(layers[name]), name
    assert res["model_layer_in_iteration_ms_b8"] == layers["joints"]
    assert math.isclose(res["model_layer_share_pct"],
                        100 * layers["joints"] / res["iteration_ms_b8"])
    assert 0 < res["model_layer_share_pct"] < 100
    # the printed table carries the same figures
    assert f"{res['layer_fwd_bwd_ms_b8']:.2f} ms" in proc.stdout
    assert f"{res['net_forward_fps_b1']:.0f} frames/s" in proc.stdout
    assert f"{res['model_layer_forward_ms_b1']:.3f} ms" in proc.stdout
    assert f"{res['model_layer_forward_ms_b1_warm']:.3f} ms" in proc.stdout
    # the hand-up net: its turn layer is part of its forward
    assert 0 < res["hand_turn_layer_forward_ms_b1"] < res["hand_up_net_forward_ms_b1"]
    assert math.isclose(res["hand_up_net_forward_fps_b1"], 1000 / res["hand_up_net_forward_ms_b1"])
    assert _positive(res["hand_turn_layer_forward_ms_b8"])
    assert f"{res['hand_up_net_forward_fps_b1']:.0f} frames/s" in proc.stdout
    # ONNX Runtime against Caffe, in the same loop (make test installs the onnx extra)
    ox = res["onnx_ms"]
    for key in ("caffe", "onnx", "caffe64", "onnx64", "up_caffe", "up_onnx", "path_caffe",
                "path_onnx"):
        assert _positive(ox[key]), key
    assert (f"Caffe in the same run {ox['caffe']:.3f} ms: {ox['caffe'] / ox['onnx']:.2f} x "
            "(goal >= 2 x)") in proc.stdout
    assert f"{1000 / ox['path_onnx']:.0f} frames/s (goal >= 400)" in proc.stdout
    # make train's iteration with one OpenBLAS thread and with one per CPU (this Caffe: OpenBLAS)
    if (os.cpu_count() or 1) > 1:
        one, every = res["hand_up_iteration_ms_b8_1_thread"], res["hand_up_iteration_ms_b8_all_threads"]
        assert _positive(one) and _positive(every) and res["blas_threads_cpus"] == os.cpu_count()
        assert (f"{one:.0f} ms  {os.cpu_count()} threads: {every:.0f} ms ({every / one:.2f} x;"
                in proc.stdout)


def test_bench_without_lmdb_and_bad_input(project_root, tmp_path):
    out = tmp_path / "b.json"
    proc = subprocess.run([PY, "tools/bench.py", "--batch", "2", "--repeats", "1", "--frames", "2",
                           "--lmdb-dir", str(tmp_path / "none"), "--json", str(out)],
                          cwd=project_root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())
    assert res["data_layers_ms_per_batch_b2"] is None and res["data_frames_per_s"] is None
    assert res["inputs"] == "synthetic blobs (no LMDBs)" and res["iteration_ms_b2"] > 0
    assert "no LMDBs" in proc.stdout

    proc = subprocess.run([PY, "tools/bench.py", "--batch", "0"], cwd=project_root,
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: --batch 0: must be at least 1"
    proc = subprocess.run([PY, "tools/bench.py", "--json", str(tmp_path / "no" / "b.json")],
                          cwd=project_root, capture_output=True, text=True)
    assert proc.returncode == 2 and "no such folder for --json" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_model_layer_figures_are_the_time_of_its_work(monkeypatch, tmp_path):
    """The model layer's figures are wired to the work they time, checked without a wall clock:
    the clock tools/bench.py reads is a counter that only HandModel.forward and .backward move,
    by 1 and 2 us per frame. Whatever runs around them (Caffe, the other layers, the solver) takes
    no time on it, so the figures must be exactly the model's share and move with the batch."""
    import numpy as np
    import pytest

    from deepmodel.model.hand_model import HandModel
    from deepmodel.tools import bench

    clock = {"s": 0.0}
    forward, backward = HandModel.forward, HandModel.backward

    def timed_forward(self, theta, *args, **kwargs):
        clock["s"] += 1e-6 * len(theta)
        return forward(self, theta, *args, **kwargs)

    def timed_backward(self, theta, *args, **kwargs):
        clock["s"] += 2e-6 * len(theta)
        return backward(self, theta, *args, **kwargs)

    monkeypatch.setattr(HandModel, "forward", timed_forward)
    monkeypatch.setattr(HandModel, "backward", timed_backward)
    monkeypatch.setattr(bench.time, "perf_counter", lambda: clock["s"])
    caffe = bench.import_caffe()
    rng = np.random.default_rng(0)
    for batch in (4, 12):
        want = 3e-3 * batch                                 # ms per forward + backward
        ms, peak = bench.bench_model(batch, 3, rng)
        assert ms == pytest.approx(want) and peak > 0
        assert bench.bench_layer(caffe, batch, 3, rng, tmp_path) == pytest.approx(want)
        depth, joints, _ = bench.sample_inputs(tmp_path / "none", batch, rng)
        iteration, per_layer = bench.bench_iteration(caffe, batch, 2, rng, tmp_path, (depth, joints))
        assert per_layer["joints"] == pytest.approx(want) and iteration == pytest.approx(want)
        assert sum(per_layer.values()) == pytest.approx(want)
