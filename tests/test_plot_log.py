"""tools/plot_log.py on the log of a real short `caffe train` run, on other log formats, bad input."""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

PY = sys.executable

NET = textwrap.dedent("""
    name: "tiny"
    layer { name: "data" type: "DummyData" top: "data" top: "label"
      dummy_data_param { shape { dim: 8 dim: 4 } shape { dim: 8 dim: 2 }
        data_filler { type: "gaussian" std: 1 } data_filler { type: "gaussian" std: 1 } } }
    layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc"
      inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0.1 } } }
    layer { name: "loss" type: "EuclideanLoss" bottom: "fc" bottom: "label" top: "loss" }
    layer { name: "aux" type: "EuclideanLoss" bottom: "fc" bottom: "label" top: "aux"
            loss_weight: 0.5 }
""")
SOLVER = textwrap.dedent("""
    net: "net.prototxt"
    base_lr: 0.01
    lr_policy: "step"
    gamma: 0.5
    stepsize: 20
    momentum: 0.9
    max_iter: 50
    display: 10
    test_iter: 2
    test_interval: 25
    snapshot: 0
    solver_mode: CPU
""")


def caffe_binary(project_root):
    path = project_root / ".venv" / "bin" / "caffe"
    if path.exists():
        return str(path)
    found = shutil.which("caffe")
    if not found:
        pytest.fail("the `caffe` command is missing: run `make caffe`")
    return found


@pytest.fixture(scope="module")
def caffe_log(tmp_path_factory, project_root):
    """The log of a real 50-iteration `caffe train` run (stderr at GLOG level 0)."""
    d = tmp_path_factory.mktemp("caffe_train")
    (d / "net.prototxt").write_text(NET)
    (d / "solver.prototxt").write_text(SOLVER)
    env = dict(os.environ, GLOG_minloglevel="0")
    proc = subprocess.run([caffe_binary(project_root), "train", "-solver", "solver.prototxt"],
                          cwd=d, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    log = d / "train.log"
    log.write_text(proc.stderr)
    return log


def plot_log(project_root, *args):
    return subprocess.run([PY, str(project_root / "tools" / "plot_log.py"), *map(str, args)],
                          cwd=project_root, capture_output=True, text=True, timeout=120)


def test_real_caffe_log(caffe_log, project_root, tmp_path):
    out, js = tmp_path / "loss.png", tmp_path / "series.json"
    proc = plot_log(project_root, caffe_log, "--out", out, "--json", js, "--labels", "tiny")
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    s = json.loads(js.read_text())["tiny"]
    # display 10, max_iter 50: the solver shows iterations 0..50
    assert list(s["loss"]) == ["0", "10", "20", "30", "40", "50"]
    # step policy: 0.01 * 0.5 ** floor(it / 20), shown at every display but the last
    assert s["lr"] == {str(i): pytest.approx(0.01 * 0.5 ** (i // 20)) for i in range(0, 50, 10)}
    # test every 25 iterations and at the end, both outputs
    assert set(s["test"]) == {"loss", "aux"}
    assert list(s["test"]["loss"]) == ["0", "25", "50"]
    # both Euclidean losses see the same values: total = loss + 0.5 * aux = 1.5 * loss
    assert set(s["train"]) == {"loss", "aux"}
    for it in ("0", "10", "20", "30", "40"):
        assert s["train"]["aux"][it] == s["train"]["loss"][it]
        assert s["loss"][it] == pytest.approx(1.5 * s["train"]["loss"][it], rel=1e-4)
    assert "last iteration 50" in proc.stdout


def test_default_output_name_and_several_logs(caffe_log, project_root, tmp_path):
    log2 = tmp_path / "second.log"
    log2.write_text(caffe_log.read_text())
    proc = plot_log(project_root, log2)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "second_loss.png").exists()
    proc = plot_log(project_root, caffe_log, log2, "--out", tmp_path / "both.png")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "both.png").stat().st_size > 1000
    assert proc.stdout.count("training points") == 2


def test_other_log_formats(project_root, tmp_path):
    """Newer Caffe's 'Iteration N (x iter/s, ...), loss', a resume, a second test net."""
    log = tmp_path / "t.log"
    log.write_text(textwrap.dedent("""\
        I1124 10:00:00.000001  77 solver.cpp:218] Iteration 100 (5.2 iter/s, 19.2s/100 iters), loss = 0.5
        I1124 10:00:00.000002  77 solver.cpp:237]     Train net output #0: jl = 0.4 (* 1 = 0.4 loss)
        I1124 10:00:00.000003  77 sgd_solver.cpp:105] Iteration 100, lr = 0.003
        I1124 10:00:00.000004  77 solver.cpp:330] Iteration 200, Testing net (#0)
        I1124 10:00:00.000005  77 solver.cpp:397]     Test net output #0: jl = 0.7 (* 1 = 0.7 loss)
        I1124 10:00:00.000006  77 solver.cpp:330] Iteration 200, Testing net (#1)
        I1124 10:00:00.000007  77 solver.cpp:397]     Test net output #0: jl = 0.9 (* 1 = 0.9 loss)
        I1124 10:00:00.000008  77 solver.cpp:218] Iteration 200 (5.1 iter/s, 19.6s/100 iters), loss = nan
        I1124 10:00:00.000009  77 solver.cpp:218] Iteration 100 (5.2 iter/s, 19.2s/100 iters), loss = 0.45
        I1124 10:00:00.000010  77 solver.cpp:237]     Train net output #0: jl = 3.5e-02 (* 1 = 0.035 loss)
    """))
    proc = plot_log(project_root, log, "--out", tmp_path / "t.png", "--json", tmp_path / "t.json")
    assert proc.returncode == 0, proc.stderr
    s = json.loads((tmp_path / "t.json").read_text())["t"]
    assert s["loss"]["100"] == 0.45                      # the resumed run's value replaces it
    assert s["loss"]["200"] is None                      # nan: null in strict JSON
    assert "warning: t: the training loss is nan from iteration 200" in proc.stderr
    assert s["train"]["jl"] == {"100": 0.035}
    assert s["test"] == {"jl": {"200": 0.7}, "jl#1": {"200": 0.9}}
    assert s["lr"] == {"100": 0.003}


def test_bad_logs_and_options_are_one_line_errors(project_root, tmp_path):
    for args, fragments in [
        ((tmp_path / "missing.log",), ("missing.log",)),
        ((tmp_path,), (str(tmp_path),)),
    ]:
        proc = plot_log(project_root, *args)
        err = proc.stderr.strip()
        assert proc.returncode == 2 and "Traceback" not in err and len(err.splitlines()) == 1, err
        assert all(f in err for f in fragments), err
    junk = tmp_path / "junk.log"
    junk.write_text("hello\nno training here\n")
    proc = plot_log(project_root, junk, "--out", tmp_path / "j.png")
    err = proc.stderr.strip()
    assert proc.returncode == 2 and len(err.splitlines()) == 1 and "junk.log" in err, err
    assert "no Caffe training lines" in err
    assert not (tmp_path / "j.png").exists()
    proc = plot_log(project_root, junk, junk, "--labels", "one")
    assert proc.returncode == 2 and "--labels" in proc.stderr
