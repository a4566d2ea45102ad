"""The hostile run: bad inputs, absurd options and faults against every tool, as a hostile but fair
user would try them (docs/robustness.md). Each case runs a real tool in a subprocess on real files and is
judged by the same rules:

* no traceback and no "internal error" on stderr, ever;
* a refused case exits 2 with exactly one ``error:`` line (the last line) naming what is wrong;
* an accepted case exits 0 (or 1 where the tool documents it), warnings as ``warning:`` lines;
* nothing outside the case's own output is touched (a ``victim/`` tree is hashed before and
  after every case), no temporary file is left anywhere, every JSON written is strict JSON.

Faults are injected with RLIMIT_FSIZE (``resource.setrlimit`` in the child; SIGXFSZ ignored, so a
write past the limit fails with EFBIG, a full disk as the writer sees it) and, for "no space
left" and "read-only file system", with ``tests/fault_inject/sitecustomize.py``: it makes the
file-creating calls of the child (``open`` for writing, ``os.open``, ``os.mkdir``) raise ENOSPC or
EROFS under one folder, at the OS boundary.

``pytest tests/test_hostile.py`` runs every case; ``python tests/hostile_cases.py`` runs them and
prints the count per tool (docs/robustness.md records it).
"""
import collections
import dataclasses
import hashlib
import json
import lzma
import os
import pathlib
import re
import resource
import shutil
import signal
import subprocess
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
PY = sys.executable
TMP_TAG = ".tmp-"


@dataclasses.dataclass
class Case:
    tool: str                     # the command, e.g. "tools/test_net.py" or "tools/make_lmdb.py"
    name: str
    argv: tuple
    expect: str = "error"         # "error", "ok", "warn"
    needles: tuple = ()           # must appear in the error (or warning) line
    fsize: int = None             # RLIMIT_FSIZE in bytes for the child
    fault: str = None             # "enospc:<folder>" or "erofs:<folder>" (sitecustomize)
    codes: tuple = (0,)           # exit codes accepted for "ok"/"warn"
    check: object = None          # extra check(ws, proc)
    setup: object = None          # setup(ws) run just before the case

    @property
    def id(self):
        return f"{tool_name(self.tool)}-{self.name}"


def tool_name(tool):
    """``tools/test_net.py`` -> ``test_net``; ``tools/make_lmdb.py`` -> ``make_lmdb``."""
    last = tool.split()[-1]
    return last.rsplit(".", 1)[-1] if tool.startswith("-m") else pathlib.Path(last).stem


# ---------------------------------------------------------------------------------------------
# the workspace: real inputs, built once

def _lines(path, n):
    with lzma.open(path, "rt") as fh:
        return [next(fh) for _ in range(n)]


def _write_rows(path, rows):
    path.write_text("".join(" ".join(f"{v:.3f}" for v in r) + "\n" for r in rows))


def build_workspace(ws):
    """Inputs of the cases in ``ws`` (a fresh folder); returns ws."""
    ws = pathlib.Path(ws)
    ws.mkdir(parents=True, exist_ok=True)
    sys.path[:0] = [str(ROOT), str(ROOT / "python_layers"), str(TESTS)]
    from tiny_lmdb import write_tiny_lmdbs

    # label and prediction files (20 frames of the NYU test labels)
    labels = ws / "lab.txt"
    labels.write_text("".join(_lines(ROOT / "data/reference/nyu/nyu_test_groundtruth_label.txt.xz", 20)))
    lab = np.loadtxt(labels)
    rng = np.random.default_rng(0)
    _write_rows(ws / "pred.txt", lab + rng.normal(0, 2, lab.shape))
    bad = {"nan": ("nan", 0, 0), "inf": ("inf", 0, 0), "huge": ("1e308", 0, 0),
           "far": ("1e6", 0, 3), "zero_depth": ("0", 0, 2), "neg_depth": ("-5", 3, 5),
           "word": ("abc", 1, 1)}
    for name, (value, row, col) in bad.items():
        rows = [line.split() for line in labels.read_text().splitlines()]
        rows[row][col] = value
        (ws / f"pred_{name}.txt").write_text("".join(" ".join(r) + "\n" for r in rows))
        (ws / f"lab_{name}.txt").write_text("".join(" ".join(r) + "\n" for r in rows))
    shuffled = lab.reshape(len(lab), 14, 3)[:, rng.permutation(14)].reshape(len(lab), -1)
    _write_rows(ws / "pred_shuffled.txt", shuffled)
    _write_rows(ws / "pred_short.txt", lab[:10])
    _write_rows(ws / "pred_13joints.txt", lab[:, :39])
    (ws / "pred_ragged.txt").write_text(labels.read_text() + "1 2 3\n")
    (ws / "empty.txt").write_text("")
    (ws / "blank.txt").write_text("\n\n  \n")
    (ws / "binary.txt").write_bytes(bytes(range(256)) * 8)
    (ws / "latin1.txt").write_bytes("1 2 3 caf\xe9\n".encode("latin-1"))
    (ws / "broken.txt.xz").write_bytes(lzma.compress(labels.read_bytes())[:200])
    (ws / "notxz.txt.xz").write_text(labels.read_text())
    (ws / "notgz.txt.gz").write_text(labels.read_text())
    (ws / "a_folder.txt").mkdir()
    # Caffe logs
    log = ("I1124 10:00:00.000001  77 solver.cpp:218] Iteration {i} (5.2 iter/s, 19.2s/100 iters), "
           "loss = {v}\nI1124 10:00:00.000004  77 solver.cpp:330] Iteration {i}, Testing net (#0)\n"
           "I1124 10:00:00.000005  77 solver.cpp:397]     Test net output #0: jl = {v} (* 1 = {v} loss)\n")
    (ws / "logs" / "a").mkdir(parents=True)
    (ws / "logs" / "b").mkdir(parents=True)
    (ws / "logs" / "a" / "train.log").write_text("".join(log.format(i=i, v=1 / (i + 1)) for i in range(0, 50, 10)))
    (ws / "logs" / "b" / "train.log").write_text("".join(log.format(i=i, v=2 / (i + 1)) for i in range(0, 50, 10)))
    (ws / "logs" / "nan.log").write_text("".join(log.format(i=i, v="nan" if i > 20 else 0.5)
                                                 for i in range(0, 50, 10)))
    (ws / "logs" / "junk.log").write_text("hello\nworld\n")
    (ws / "logs" / "binary.log").write_bytes(bytes(range(256)) * 4)
    # LMDB sets: a good one, a mixed build (joint of another build), NaN labels, a NaN meta,
    # an empty LMDB, a corrupt data.mdb
    good = write_tiny_lmdbs(ws / "lmdb", n_train=16, n_test=8)
    other = write_tiny_lmdbs(ws / "lmdb_other", n_train=16, n_test=8, seed=1)
    mixed = ws / "lmdb_mixed"
    shutil.copytree(good, mixed)
    for split in ("train", "test"):
        shutil.rmtree(mixed / f"nyu_{split}_joint")
        shutil.copytree(other / f"nyu_{split}_joint", mixed / f"nyu_{split}_joint")
    _nan_label_set(ws / "lmdb_nan")
    nanmeta = ws / "lmdb_nanmeta"
    shutil.copytree(good, nanmeta)
    with np.load(nanmeta / "nyu_test_meta.npz") as z:
        arrays = dict(z)
    arrays["com"][3, 0] = np.nan
    np.savez(nanmeta / "nyu_test_meta.npz", **arrays)
    corrupt = ws / "lmdb_corrupt"
    shutil.copytree(good, corrupt)
    for kind in ("depth", "joint"):
        (corrupt / f"nyu_test_{kind}" / "data.mdb").write_bytes(b"\x00garbage" * 4096)
    empty = ws / "lmdb_empty"
    _empty_set(empty)
    # a deploy net with random weights
    import caffe
    caffe.set_mode_cpu()
    net = caffe.Net(str(ROOT / "prototxt" / "deploy.prototxt"), caffe.TEST)
    net.save(str(ws / "random.caffemodel"))
    shutil.copy(ROOT / "prototxt" / "deploy.prototxt", ws / "deploy_copy.prototxt")
    (ws / "garbage.caffemodel").write_bytes(b"not a model" * 100)
    # images for the demo
    import cv2
    crop = cv2.imread(str(sorted((ROOT / "data/reference/nyu/test_crops").glob("*.png"))[0]),
                      cv2.IMREAD_UNCHANGED)
    for sub in ("x", "y"):
        (ws / "crops" / sub).mkdir(parents=True)
        cv2.imwrite(str(ws / "crops" / sub / "1.png"), crop)
    cv2.imwrite(str(ws / "gray200.png"), np.dstack([np.full((200, 200), 90, np.uint8)] * 3))
    cv2.imwrite(str(ws / "white_crop.png"), np.full((128, 128), 255, np.uint8))
    cv2.imwrite(str(ws / "zero16.png"), np.zeros((480, 640), np.uint16))
    (ws / "notapng.png").write_bytes(b"GIF89a" + bytes(100))
    shutil.copy(ROOT / "data/reference/nyu/depth_1_0000001.png", ws / "frame.png")
    # the victim: a folder and files that no case may touch
    victim = ws / "victim"
    (victim / "inner").mkdir(parents=True)
    (victim / "inner" / "keep.txt").write_text("precious\n")
    (victim / "eval.json").mkdir()
    (victim / "eval.json" / "keep.txt").write_text("precious\n")
    (victim / "plain.txt").write_text("precious\n")
    # round 2: inputs that a run's outputs must never replace (docs/robustness.md)
    shutil.copy(ws / "pred.txt", victim / "pred.txt")
    shutil.copy(ws / "logs" / "a" / "train.log", victim / "train.log")
    shutil.copy(ws / "random.caffemodel", victim / "w.caffemodel")
    shutil.copy(ws / "frame.png", victim / "frame.png")
    (victim / "frames").mkdir()
    shutil.copy(ws / "frame.png", victim / "frames" / "f1.png")
    shutil.copy(ws / "crops" / "x" / "1.png", victim / "overview.png")   # a crop named as an output
    shutil.copytree(ws / "lmdb", victim / "lmdb")
    np.savez(victim / "fits.npz", theta=np.zeros((3, 26)), error_mm=np.ones(3))
    (victim / "page.md").write_text("# My notes\n\nno generated block here\n")
    from deepmodel.data.synthetic import nyu as synthetic_nyu     # a small NYU-format root
    synthetic_nyu.generate(ws / "nyu_small", n_train=60, n_test=10, seed=2, workers=1,
                           progress=False)
    # damaged data: a data.mdb cut to half its size, a label of 1e30, a test loss of inf
    truncated = ws / "lmdb_truncated"
    shutil.copytree(ws / "lmdb", truncated)
    mdb = truncated / "nyu_test_depth" / "data.mdb"
    os.truncate(mdb, mdb.stat().st_size // 2)
    _nan_label_set(ws / "lmdb_huge", value=1e30)
    (ws / "logs" / "inf_test.log").write_text("".join(
        log.format(i=i, v=1 / (i + 1)).replace(f"jl = {1 / (i + 1)} (* 1 = {1 / (i + 1)} loss)",
                                               "jl = inf (* 1 = inf loss)" if i == 20 else
                                               f"jl = {1 / (i + 1)} (* 1 = {1 / (i + 1)} loss)")
        for i in range(0, 50, 10)))
    return ws


def _nan_label_set(folder, value=np.nan):
    from deepmodel.data.records import datum
    from deepmodel.data.records.split import LmdbSplit

    folder.mkdir(parents=True)
    n = 8
    split = LmdbSplit.of(folder, "nyu", "test")
    depth = datum.encode_rows(np.zeros((n, 128 * 128)), (1, 128, 128))
    joints = np.zeros((n, 93))
    joints[5, 7] = value
    joint = datum.encode_rows(joints, (93, 1, 1))
    with split.writer(["depth", "joint"], map_size=1 << 26) as out:
        for i in range(n):
            out.put({"depth": depth[i], "joint": joint[i]})
        out.commit()
    split.write_meta(com=np.tile([0.0, 0.0, 500.0], (n, 1)), cube=np.full(n, 300.0), frame=np.arange(n))


def _empty_set(folder):
    from deepmodel.data.records.split import LmdbSplit

    folder.mkdir(parents=True)
    split = LmdbSplit.of(folder, "nyu", "test")
    with split.writer(["depth", "joint"], map_size=1 << 20) as out:
        out.commit()


# ---------------------------------------------------------------------------------------------
# the cases

def _stale_temporaries(ws):
    """Leftovers of a killed run in the output folder: temporary names of a process that has
    ended (one a temporary name of a temporary name); the next run there removes them (the
    case's rule: no temporary file left)."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    folder = ws / "out" / "stale"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f".eval.json{TMP_TAG}{gone.pid}.json").write_text("{")
    (folder / f"..threshold.png{TMP_TAG}{gone.pid}.png{TMP_TAG}{gone.pid}.png").write_bytes(b"x")


def _ok_eval(ws, proc):
    """test_net's output folder: a strict eval.json naming files that exist."""
    out = pathlib.Path(re.search(r"wrote (\S+?eval\.json)", proc.stdout).group(1))
    report = json.loads(out.read_text(), parse_constant=_no_constant)
    for f in (report.get("plots") or report.get("files") or {}).values():
        assert pathlib.Path(f).is_file(), f


def _no_constant(name):
    raise AssertionError(f"JSON holds {name}")


def _old_eval_kept(folder):
    """After a failed rewrite of an evaluation folder: the previous set, complete (eval.json
    naming the previous method and the plots it names)."""
    def check(ws, proc):
        d = pathlib.Path(str(folder).format(ws=ws))
        report = json.loads((d / "eval.json").read_text(), parse_constant=_no_constant)
        assert report["methods"][0]["name"] == "pred", report["methods"][0]["name"]
        for f in report["plots"].values():
            assert pathlib.Path(f).is_file(), f
    return check


def cases():
    T, P, D, F, S, L = ("tools/test_net.py", "tools/plot_log.py", "tools/demo.py",
                        "tools/fit_pose.py", "tools/show_sample.py", "tools/train.py")
    c = []
    add = c.append
    pred = lambda f, *more: ("--predictions", f"{{ws}}/{f}", "--labels", "{ws}/lab.txt", *more)
    # ----------------------------------------------------------------- test_net.py, prediction files
    add(Case(T, "ok", pred("pred.txt", "--out", "{ws}/out/t_ok"), "ok", check=_ok_eval))
    for name, needles in {"nan": ("line 1", "NaN"), "inf": ("line 1", "NaN or infinite"),
                          "huge": ("line 1", "beyond"), "far": ("line 1", "beyond"),
                          "zero_depth": ("line 1", "depth of 0"), "neg_depth": ("line 4", "depth of -5"),
                          "word": ("line 2", "not a number")}.items():
        add(Case(T, f"pred_{name}", pred(f"pred_{name}.txt", "--out", "{ws}/out/t"), "error",
                 (f"pred_{name}.txt",) + needles))
        add(Case(T, f"labels_{name}", ("--predictions", "{ws}/pred.txt", "--labels",
                                        f"{{ws}}/lab_{name}.txt", "--out", "{ws}/out/t"),
                 "error", (f"lab_{name}.txt",) + needles))
    add(Case(T, "shuffled_joints", pred("pred_shuffled.txt", "--out", "{ws}/out/t_shuf"), "warn",
             ("pred_shuffled.txt", "another order")))
    add(Case(T, "short", pred("pred_short.txt", "--out", "{ws}/out/t"), "error", ("10 frames", "20")))
    add(Case(T, "13_joints", pred("pred_13joints.txt", "--out", "{ws}/out/t"), "error", ("13 joints",)))
    add(Case(T, "ragged", pred("pred_ragged.txt", "--out", "{ws}/out/t"), "error", ("line 21",)))
    for f, needle in (("empty.txt", "empty file"), ("blank.txt", "empty file"),
                      ("binary.txt", "not a text file"), ("latin1.txt", "not a text file"),
                      ("broken.txt.xz", "not a valid compressed file"),
                      ("notxz.txt.xz", "not a valid compressed file"),
                      ("notgz.txt.gz", "not a valid compressed file"),
                      ("a_folder.txt", "cannot read"), ("missing.txt", "cannot read")):
        add(Case(T, f"pred_file_{f}", pred(f, "--out", "{ws}/out/t"), "error", (f, needle)))
        add(Case(T, f"labels_file_{f}", ("--predictions", "{ws}/pred.txt", "--labels", f"{{ws}}/{f}",
                                         "--out", "{ws}/out/t"), "error", (f, needle)))
    add(Case(T, "json_is_folder", pred("pred.txt", "--json", "{ws}/victim/eval.json"), "error",
             ("eval.json", "is a folder")))
    add(Case(T, "json_is_folder2", pred("pred.txt", "--json", "{ws}/victim/inner"), "error",
             ("inner", "is a folder")))
    add(Case(T, "out_is_file", pred("pred.txt", "--out", "{ws}/victim/plain.txt"), "error",
             ("plain.txt", "not a folder")))
    add(Case(T, "out_under_file", pred("pred.txt", "--out", "{ws}/victim/plain.txt/sub"), "error",
             ("plain.txt",)))
    add(Case(T, "json_under_file", pred("pred.txt", "--json", "{ws}/victim/plain.txt/e.json"), "error",
             ("plain.txt",)))
    add(Case(T, "out_victim_folder", pred("pred.txt", "--out", "{ws}/victim"), "error",
             ("eval.json", "is a folder")))
    add(Case(T, "names_count", pred("pred.txt", "--names", "a", "b"), "error", ("--names",)))
    add(Case(T, "names_twice", ("--predictions", "{ws}/pred.txt", "{ws}/pred.txt", "--labels",
                                "{ws}/lab.txt", "--names", "a", "a"), "error", ("twice",)))
    add(Case(T, "dataset_icvl_14", pred("pred.txt", "--dataset", "icvl"), "error", ("icvl",)))
    add(Case(T, "dataset_bogus", pred("pred.txt", "--dataset", "bogus"), "error", ("--dataset",)))
    add(Case(T, "no_weights_no_lmdb", ("--out", "{ws}/out/t", "--lmdb", "{ws}/nowhere/nyu_test"),
             "error", ("nowhere",)))
    add(Case(T, "both_modes", pred("pred.txt", "--weights", "{ws}/random.caffemodel"), "error",
             ("either",)))
    add(Case(T, "unknown_option", ("--frobnicate",), "error", ("--frobnicate",)))
    for v in ("0", "-3", "nan", "1e9x", "2.5"):
        add(Case(T, f"batch_size_{v}", ("--weights", "{ws}/random.caffemodel", "--lmdb",
                                        "{ws}/lmdb/nyu_test", "--batch-size", v), "error",
                 ("--batch-size",)))
    # faults while writing: the previous complete set stays, no temporary file is left
    add(Case(T, "prepare_old_set", pred("pred.txt", "--out", "{ws}/out/t_set"), "ok", check=_ok_eval))
    add(Case(T, "fsize_limit", pred("pred.txt", "--out", "{ws}/out/t_set", "--names", "new"), "error",
             ("File too large",), fsize=30000, check=_old_eval_kept("{ws}/out/t_set")))
    add(Case(T, "enospc", pred("pred.txt", "--out", "{ws}/out/t_set", "--names", "new"), "error",
             ("No space left",), fault="enospc:{ws}/out/t_set", check=_old_eval_kept("{ws}/out/t_set")))
    add(Case(T, "erofs", pred("pred.txt", "--out", "{ws}/out/t_set", "--names", "new"), "error",
             ("Read-only file system",), fault="erofs:{ws}/out/t_set",
             check=_old_eval_kept("{ws}/out/t_set")))
    # ----------------------------------------------------------------- test_net.py, a net on LMDBs
    W = ("--weights", "{ws}/random.caffemodel", "--quiet")
    add(Case(T, "net_ok", W + ("--lmdb", "{ws}/lmdb/nyu_test", "--out", "{ws}/out/t_net"), "ok",
             check=_ok_eval))
    for name, needles in {"lmdb_mixed": ("not of one build",), "lmdb_nan": ("record 5", "NaN"),
                          "lmdb_nanmeta": ("record 3", "non-finite com"),
                          "lmdb_corrupt": ("nyu_test_depth",), "lmdb_empty": ("empty",),
                          "nowhere": ("no such LMDB",)}.items():
        add(Case(T, f"net_{name}", W + ("--lmdb", f"{{ws}}/{name}/nyu_test", "--out", "{ws}/out/t"),
                 "error", needles))
    add(Case(T, "net_garbage_weights", ("--weights", "{ws}/garbage.caffemodel", "--lmdb",
                                        "{ws}/lmdb/nyu_test"), "error", ("garbage.caffemodel",)))
    add(Case(T, "net_missing_weights", ("--weights", "{ws}/none.caffemodel"), "error", ("none.caffemodel",)))
    add(Case(T, "net_model_is_folder", W + ("--model", "{ws}/victim", "--lmdb", "{ws}/lmdb/nyu_test"),
             "error", ("victim",)))
    add(Case(T, "net_model_binary", W + ("--model", "{ws}/binary.txt", "--lmdb", "{ws}/lmdb/nyu_test"),
             "error", ("binary.txt",)))
    add(Case(T, "net_json_is_folder", W + ("--lmdb", "{ws}/lmdb/nyu_test", "--json",
                                           "{ws}/victim/inner"), "error", ("is a folder",)))
    # ----------------------------------------------------------------- plot_log.py
    add(Case(P, "ok", ("{ws}/logs/a/train.log", "--out", "{ws}/out/p/a.png", "--json",
                       "{ws}/out/p/a.json"), "ok"))
    add(Case(P, "same_file_names", ("{ws}/logs/a/train.log", "{ws}/logs/b/train.log", "--out",
                                    "{ws}/out/p/ab.png", "--json", "{ws}/out/p/ab.json"), "ok",
             check=lambda ws, p: set(json.loads((ws / "out/p/ab.json").read_text())) == {"a/train", "b/train"}))
    add(Case(P, "nan_log", ("{ws}/logs/nan.log", "--out", "{ws}/out/p/n.png", "--json", "{ws}/out/p/n.json"),
             "warn", ("nan", "iteration 30")))
    for opt in ("--out", "--json"):
        add(Case(P, f"{opt[2:]}_is_folder", ("{ws}/logs/a/train.log", opt, "{ws}/victim/inner"), "error",
                 ("inner", "is a folder")))
        add(Case(P, f"{opt[2:]}_under_file", ("{ws}/logs/a/train.log", opt, "{ws}/victim/plain.txt/x"),
                 "error", ("plain.txt",)))
    for f in ("junk.log", "binary.log", "missing.log"):
        add(Case(P, f"log_{f}", (f"{{ws}}/logs/{f}", "--out", "{ws}/out/p/x.png"), "error", (f,)))
    add(Case(P, "log_is_folder", ("{ws}/logs", "--out", "{ws}/out/p/x.png"), "error", ("folder",)))
    add(Case(P, "labels_count", ("{ws}/logs/a/train.log", "--labels", "a", "b"), "error", ("--labels",)))
    add(Case(P, "labels_twice", ("{ws}/logs/a/train.log", "{ws}/logs/b/train.log", "--labels", "a", "a"),
             "error", ("twice",)))
    add(Case(P, "no_logs", (), "error", ("LOG",)))
    add(Case(P, "fsize_limit", ("{ws}/logs/a/train.log", "--out", "{ws}/out/p/big.png"), "error",
             ("File too large",), fsize=5000))
    add(Case(P, "enospc", ("{ws}/logs/a/train.log", "--out", "{ws}/out/p2/x.png"), "error",
             ("No space left",), fault="enospc:{ws}/out/p2"))
    # ----------------------------------------------------------------- show_sample.py
    add(Case(S, "ok", ("--lmdb", "{ws}/lmdb", "--index", "2", "--out", "{ws}/out/s/ok.png"), "ok"))
    add(Case(S, "out_is_folder", ("--lmdb", "{ws}/lmdb", "--out", "{ws}/victim/inner"), "error",
             ("inner", "is a folder")))
    add(Case(S, "out_is_folder2", ("--lmdb", "{ws}/lmdb", "--out", "{ws}/victim/eval.json"), "error",
             ("is a folder",)))
    for v in ("-1", "8", "100000000000", "nan", "x"):
        add(Case(S, f"index_{v}", ("--lmdb", "{ws}/lmdb", "--index", v, "--out", "{ws}/out/s/x.png"),
                 "error", ("index",)))
    for name, needles in {"lmdb_empty": ("empty",), "lmdb_mixed": ("not of one build",),
                          "lmdb_corrupt": ("nyu_test_depth",), "nowhere": ("nowhere",)}.items():
        add(Case(S, name, ("--lmdb", f"{{ws}}/{name}", "--out", "{ws}/out/s/x.png"), "error", needles))
    for center, needle in ((("300", "200", "1"), "depth 1 mm"), (("nan", "200", "700"), "finite"),
                           (("300", "200", "inf"), "finite"), (("1e9", "200", "700"), "within"),
                           (("300", "200", "-700"), "depth")):
        add(Case(S, f"center_{'_'.join(center)}", ("--frame", "{ws}/frame.png", "--center", *center,
                                                   "--out", "{ws}/out/s/x.png"), "error", (needle,)))
    for v in ("0", "-300", "inf", "nan", "1e9"):
        add(Case(S, f"cube_{v}", ("--frame", "{ws}/frame.png", "--center", "300", "200", "700",
                                  "--cube", v), "error", ("--cube",)))
    add(Case(S, "frame_not_png", ("--frame", "{ws}/notapng.png", "--center", "300", "200", "700",
                                  "--out", "{ws}/out/s/x.png"), "error", ("notapng.png",)))
    add(Case(S, "frame_no_mat", ("--frame", "{ws}/frame.png", "--out", "{ws}/out/s/x.png"), "error",
             ("joint_data.mat",)))
    # ----------------------------------------------------------------- demo.py
    DW = ("--weights", "{ws}/random.caffemodel")
    add(Case(D, "same_names", ("{ws}/crops/x/1.png", "{ws}/crops/y/1.png", *DW, "--out", "{ws}/out/d_same"),
             "ok", check=lambda ws, p: {f.name for f in (ws / "out/d_same").iterdir()} >= {
                 "1_overlay.png", "1_2_overlay.png", "demo.json"} and len(json.loads(
                     (ws / "out/d_same/demo.json").read_text())["inputs"]) == 2))
    add(Case(D, "gray_not_crop", ("{ws}/gray200.png", *DW, "--center", "100", "100", "700", "--out",
                                  "{ws}/out/d"), "error", ("gray200.png", "gray")))
    add(Case(D, "white_crop", ("{ws}/white_crop.png", *DW, "--out", "{ws}/out/d_white"), "warn",
             ("white_crop.png", "no depth reading")))
    add(Case(D, "zero_frame_center", ("{ws}/zero16.png", *DW, "--center", "300", "200", "700", "--out",
                                      "{ws}/out/d"), "error", ("zero16.png", "no depth reading")))
    add(Case(D, "zero_frame_detect", ("{ws}/zero16.png", *DW, "--out", "{ws}/out/d"), "error",
             ("zero16.png", "no hand found")))
    add(Case(D, "center_off_image", ("{ws}/frame.png", *DW, "--center", "900", "200", "700", "--out",
                                     "{ws}/out/d"), "error", ("frame.png", "outside")))
    add(Case(D, "center_negative_uv", ("{ws}/frame.png", *DW, "--center", "-5", "200", "700", "--out",
                                       "{ws}/out/d"), "error", ("outside",)))
    for center, needle in ((("300", "200", "1"), "depth 1 mm"), (("nan", "200", "700"), "finite"),
                           (("300", "inf", "700"), "finite"), (("300", "200", "0"), "depth"),
                           (("300", "200", "-1"), "depth"), (("1e12", "200", "700"), "must be")):
        add(Case(D, f"center_{'_'.join(center)}", ("{ws}/frame.png", *DW, "--center", *center,
                                                   "--out", "{ws}/out/d"), "error", (needle,)))
    for v in ("inf", "nan", "0", "-300", "1e9", "abc"):
        add(Case(D, f"cube_{v}", ("{ws}/frame.png", *DW, "--cube", v), "error", ("--cube",)))
    for intr in (("nan", "588", "320", "240"), ("588", "inf", "320", "240"), ("0", "588", "320", "240"),
                 ("-588", "588", "320", "240"), ("588", "588", "-320", "240"), ("588", "588", "1e9", "240")):
        add(Case(D, f"intrinsics_{'_'.join(intr)}", ("{ws}/frame.png", *DW, "--intrinsics", *intr,
                                                     "--center", "300", "200", "700"), "error",
                 ("--intrinsics",)))
    add(Case(D, "out_is_file", ("{ws}/crops/x/1.png", *DW, "--out", "{ws}/victim/plain.txt"), "error",
             ("plain.txt",)))
    add(Case(D, "ok", ("{ws}/crops/x/1.png", *DW, "--out", "{ws}/out/d_ok"), "ok",
             check=lambda ws, p: (ws / "out/d_ok/1_overlay.png").is_file()))
    add(Case(D, "no_weights_other_model", ("{ws}/crops/x/1.png", "--model", "{ws}/deploy_copy.prototxt",
                                            "--out", "/zz-hostile-nowhere/demo"),
             "error", ("no trained weights",)))
    add(Case(D, "garbage_weights", ("{ws}/crops/x/1.png", "--weights", "{ws}/garbage.caffemodel",
                                    "--out", "{ws}/out/d"), "error", ("garbage.caffemodel",)))
    add(Case(D, "not_png", ("{ws}/notapng.png", *DW, "--out", "{ws}/out/d"), "error",
             ("notapng.png", "not a readable image")))
    add(Case(D, "missing", ("{ws}/nothere.png", *DW, "--out", "{ws}/out/d"), "error", ("nothere.png",)))
    add(Case(D, "empty_folder", ("{ws}/victim/inner", *DW, "--out", "{ws}/out/d"), "error",
             ("no .png files",)))
    add(Case(D, "camera_bogus", ("{ws}/frame.png", *DW, "--camera", "kinect2"), "error", ("--camera",)))
    add(Case(D, "fsize_limit", ("{ws}/crops/x/1.png", *DW, "--out", "{ws}/out/d_fs"), "error",
             ("File too large",), fsize=20000,
             check=lambda ws, p: not (ws / "out/d_fs/demo.json").exists()))
    # ----------------------------------------------------------------- fit_pose.py
    FO = ("--out", "{ws}/out/f/fits.npz", "--quiet", "--no-plot")
    add(Case(F, "ok", ("{ws}/lab.txt", "--frames", "0:3", "--restarts", "0", *FO), "ok", codes=(0, 1)))
    for name, needles in {"nan": ("line 1",), "huge": ("line 1", "beyond"), "zero_depth": ("line 1", "depth"),
                          "word": ("line 2",)}.items():
        add(Case(F, f"labels_{name}", (f"{{ws}}/lab_{name}.txt", *FO), "error", (f"lab_{name}.txt",) + needles))
    for f in ("empty.txt", "binary.txt", "latin1.txt", "broken.txt.xz", "missing.txt"):
        add(Case(F, f"file_{f}", (f"{{ws}}/{f}", *FO), "error", (f,)))
    for opt, v in (("--restart-above", "nan"), ("--restart-above", "inf"), ("--restart-above", "-1"),
                   ("--prior", "nan"), ("--prior", "-1"), ("--prior", "inf"), ("--restarts", "-1"),
                   ("--restarts", "x"), ("--neighbour-passes", "-2"), ("--max-iter", "0"),
                   ("--max-iter", "-5"), ("--seed", "-1"), ("--frames", "5:2"), ("--frames", "-3:4"),
                   ("--frames", "a:b"), ("--frames", "100:200"), ("--scale-mm", "nan"),
                   ("--scale-mm", "-150"), ("--scale-mm", "inf"), ("--segments", "0,5"),
                   ("--segments", "x")):
        add(Case(F, f"{opt[2:]}_{v}", ("{ws}/lab.txt", opt, v, *FO), "error", (opt,)))
    add(Case(F, "out_is_folder", ("{ws}/lab.txt", "--out", "{ws}/victim/eval.json"), "error",
             ("--out",)))
    add(Case(F, "out_not_npz", ("{ws}/lab.txt", "--out", "{ws}/out/f/fits.txt"), "error", (".npz",)))
    add(Case(F, "meta_mixed", ("{ws}/lmdb_mixed/nyu_test_meta.npz", *FO), "error", ("not of one build",)))
    add(Case(F, "meta_nan", ("{ws}/lmdb_nanmeta/nyu_test_meta.npz", *FO), "error", ("record 3",)))
    add(Case(F, "meta_not_npz", ("{ws}/lab.txt", "--format", "lmdb-meta", *FO), "error", ("meta",)))
    # ----------------------------------------------------------------- train.py (checks before Caffe)
    TR = ("--results", "{ws}/out/tr", "--no-eval")
    add(Case(L, "mixed_build", (*TR, "--lmdb-dir", "{ws}/lmdb_mixed"), "error", ("not of one build",)))
    add(Case(L, "empty_lmdb", (*TR, "--lmdb-dir", "{ws}/lmdb_empty"), "error", ("nyu_train",)))
    add(Case(L, "corrupt_lmdb", (*TR, "--lmdb-dir", "{ws}/lmdb_corrupt"), "error", ("nyu_test",)))
    add(Case(L, "nowhere", (*TR, "--lmdb-dir", "{ws}/nowhere"), "error", ("missing",)))
    for opt, v in (("--iters", "0"), ("--iters", "-5"), ("--iters", "x"), ("--batch", "0"),
                   ("--batch", "-1"), ("--max-minutes", "nan"), ("--max-minutes", "-1"),
                   ("--max-minutes", "inf"), ("--test-interval", "0"), ("--test-interval", "-10"),
                   ("--variant", "bogus")):
        add(Case(L, f"{opt[2:]}_{v}", (*TR, opt, v), "error", (opt,)))
    add(Case(L, "solver_missing", (*TR, "--lmdb-dir", "{ws}/lmdb", "--solver", "{ws}/none.prototxt"),
             "error", ("none.prototxt",)))
    add(Case(L, "solver_binary", (*TR, "--lmdb-dir", "{ws}/lmdb", "--solver", "{ws}/binary.txt"),
             "error", ("binary.txt",)))
    add(Case(L, "results_is_file", ("--results", "{ws}/victim/plain.txt", "--no-eval", "--lmdb-dir",
                                    "{ws}/lmdb", "--iters", "1"), "error", ("plain.txt",)))
    # ----------------------------------------------------------------- data_prep
    M = "tools/make_lmdb.py"
    for opt, v in (("--workers", "0"), ("--workers", "-2"), ("--max-bad", "nan"), ("--max-bad", "2"),
                   ("--max-bad", "-0.1"), ("--cube", "inf"), ("--cube", "0"), ("--cube", "nan"),
                   ("--synthetic-train", "-5"), ("--synthetic-test", "0"), ("--seed", "-1"),
                   ("--splits", "val")):
        add(Case(M, f"{opt[2:]}_{v}", ("nyu", opt, v, "--out", "{ws}/out/m"), "error", (opt,)))
    add(Case(M, "root_missing", ("nyu", "--root", "{ws}/nowhere", "--out", "{ws}/out/m"), "error",
             ("nowhere",)))
    add(Case(M, "root_is_file", ("nyu", "--root", "{ws}/lab.txt", "--out", "{ws}/out/m"), "error",
             ("lab.txt",)))
    add(Case(M, "icvl_root_missing", ("icvl", "--root", "{ws}/nowhere", "--out", "{ws}/out/m"), "error",
             ("nowhere",)))
    add(Case(M, "dataset_bogus", ("msra",), "error", ("dataset",)))
    MG = "tools/merge_lmdb.py"
    MO = ("--out", "{ws}/out/mg")
    add(Case(MG, "ok", MO + ("--train", "{ws}/lmdb", "{ws}/lmdb_other:8", "--quiet"), "ok"))
    add(Case(MG, "count_too_big", MO + ("--train", "{ws}/lmdb", "{ws}/lmdb_other:17"), "error",
             ("lmdb_other:17", "asks for 17")))
    add(Case(MG, "count_0", MO + ("--train", "{ws}/lmdb:0"), "error", ("lmdb:0", "positive")))
    add(Case(MG, "source_missing", MO + ("--train", "{ws}/nowhere"), "error", ("nowhere",)))
    add(Case(MG, "source_mixed_build", MO + ("--train", "{ws}/lmdb_mixed"), "error",
             ("lmdb_mixed", "not of one build")))
    add(Case(MG, "test_missing", MO + ("--train", "{ws}/lmdb", "--test", "{ws}/nowhere"), "error",
             ("nowhere",)))
    add(Case(MG, "out_is_source", ("--out", "{ws}/lmdb", "--train", "{ws}/lmdb"), "error",
             ("output folder",)))
    add(Case(MG, "out_is_file", ("--out", "{ws}/victim/plain.txt", "--train", "{ws}/lmdb"), "error",
             ("plain.txt",)))
    add(Case(MG, "seed_-1", MO + ("--train", "{ws}/lmdb", "--seed", "-1"), "error", ("--seed",)))
    SY = "tools/synthetic.py"
    for opt, v in (("--rot-deg", "nan"), ("--rot-deg", "inf"), ("--rot-deg", "-10"), ("--rot-deg", "720"),
                   ("--train", "-1"), ("--test", "-4"), ("--workers", "0"), ("--seed", "-1"),
                   ("--compression", "11")):
        args = (opt, v, "1", "1") if opt == "--rot-deg" else (opt, v)
        add(Case(SY, f"{opt[2:]}_{v}", (*args, "--out", "{ws}/out/syn"), "error", (opt,)))
    add(Case(SY, "both_zero", ("--train", "0", "--test", "0", "--out", "{ws}/out/syn"), "error", ("--train",)))
    add(Case(SY, "out_is_file", ("--train", "1", "--test", "1", "--out", "{ws}/victim/plain.txt"),
             "error", ("plain.txt",)))
    # ----------------------------------------------------------------- other tools: options
    B = "tools/bench.py"
    for opt, v in (("--batch", "0"), ("--batch", "-1"), ("--repeats", "0"), ("--frames", "-5"),
                   ("--frames", "nan")):
        add(Case(B, f"{opt[2:]}_{v}", (opt, v), "error", (opt,)))
    add(Case(B, "json_folder_missing", ("--json", "{ws}/nowhere/b.json", "--repeats", "1"), "error",
             ("nowhere",)))
    T1 = "tools/table1.py"
    for opt, v in (("--iters", "0"), ("--batch", "-1"), ("--max-minutes", "nan"), ("--max-minutes", "-2"),
                   ("--variants", "bogus")):
        add(Case(T1, f"{opt[2:]}_{v}", (opt, v, "--table-only"), "error", (opt,)))
    R = "tools/draw_rest_pose.py"
    add(Case(R, "model_bogus", ("--model", "nope", "--print-tables"), "error", ("nope",)))
    add(Case(R, "out_is_folder", ("--out", "{ws}/victim/inner"), "error", ("inner",)))
    add(Case(R, "markdown_binary", ("--markdown", "{ws}/binary.txt"), "error", ("binary.txt",)))
    SR = "tools/score_real.py"
    add(Case(SR, "weights_missing", ("--weights", "{ws}/none.caffemodel"), "error", ("none.caffemodel",)))
    add(Case(SR, "weights_garbage", ("--weights", "{ws}/garbage.caffemodel"), "error", ("garbage.caffemodel",)))
    add(Case(SR, "crops_empty", ("--weights", "{ws}/random.caffemodel", "--crops", "{ws}/victim/inner"),
             "error", ("no crops",)))
    add(Case(SR, "json_is_folder", ("--weights", "{ws}/random.caffemodel", "--json", "{ws}/victim/inner"),
             "error", ("inner",)))
    add(Case(SR, "fit_theta_bogus", ("--weights", "{ws}/random.caffemodel", "--fit", "--theta-blob",
                                     "nope"), "error", ("--theta-blob", "nope")))
    FD = "tools/fit_depth.py"
    FW = ("--weights", "{ws}/random.caffemodel", "--lmdb", "{ws}/lmdb/nyu_test")
    add(Case(FD, "ok", FW + ("--frames", "4"), "ok"))
    add(Case(FD, "weights_missing", ("--weights", "{ws}/none.caffemodel", "--lmdb", "{ws}/lmdb/nyu_test"),
             "error", ("none.caffemodel",)))
    add(Case(FD, "weights_garbage", ("--weights", "{ws}/garbage.caffemodel", "--lmdb",
                                     "{ws}/lmdb/nyu_test"), "error", ("garbage.caffemodel",)))
    add(Case(FD, "lmdb_missing", ("--weights", "{ws}/random.caffemodel", "--lmdb", "{ws}/nowhere/nyu_test"),
             "error", ("nowhere",)))
    add(Case(FD, "lmdb_empty", ("--weights", "{ws}/random.caffemodel", "--lmdb", "{ws}/lmdb_empty/nyu_test"),
             "error", ("empty",)))
    add(Case(FD, "lmdb_nanmeta", ("--weights", "{ws}/random.caffemodel", "--lmdb",
                                  "{ws}/lmdb_nanmeta/nyu_test"), "error", ("non-finite com",)))
    add(Case(FD, "lmdb_nan", ("--weights", "{ws}/random.caffemodel", "--lmdb", "{ws}/lmdb_nan/nyu_test"),
             "error", ("record 5", "NaN")))
    add(Case(FD, "frames_0", FW + ("--frames", "0"), "error", ("--frames",)))
    add(Case(FD, "theta_blob_bogus", FW + ("--theta-blob", "nope"), "error", ("nope",)))
    add(Case(FD, "json_is_folder", FW + ("--frames", "2", "--json", "{ws}/victim/inner"), "error",
             ("inner",)))
    add(Case(D, "fit_theta_bogus", ("--weights", "{ws}/random.caffemodel", "--fit", "--theta-blob", "nope",
                                    "--out", "{ws}/out/d_fit"), "error", ("--theta-blob", "nope")))
    MN = "tools/make_nets.py"
    add(Case(MN, "out_is_file", ("--out", "{ws}/victim/plain.txt"), "error", ("plain.txt",)))
    # ----------------------------------------------------------------- ICVL, realism, raw frames
    IH = "tools/icvl_hand.py"
    add(Case(IH, "labels_missing", ("--labels", "{ws}/none.txt"), "error", ("none.txt",)))
    add(Case(IH, "labels_binary", ("--labels", "{ws}/binary.txt"), "error", ("binary.txt",)))
    add(Case(IH, "labels_nyu_joints", ("--labels", "{ws}/lab.txt"), "error", ("lab.txt", "48")))
    add(Case(IH, "rounds_0", ("--rounds", "0"), "error", ("--rounds",)))
    add(Case(IH, "restarts_neg", ("--restarts", "-1"), "error", ("--restarts",)))
    add(Case(IH, "markdown_is_folder", ("--markdown", "{ws}/victim/inner"), "error", ("inner",)))
    CC = "tools/compare_crops.py"
    add(Case(CC, "out_is_folder", ("--out", "{ws}/victim/inner"), "error", ("inner",)))
    add(Case(CC, "out_under_file", ("--out", "{ws}/victim/plain.txt/x.png"), "error", ("plain.txt",)))
    add(Case(CC, "out_not_png", ("--out", "{ws}/out/x.jpg"), "error", (".png",)))
    add(Case(CC, "seed_neg", ("--seed", "-4"), "error", ("--seed",)))
    PP = "tools/pose_prior.py"
    add(Case(PP, "fits_missing", ("{ws}/none.npz",), "error", ("none.npz",)))
    add(Case(PP, "fits_garbage", ("{ws}/garbage.caffemodel",), "error", ("garbage.caffemodel",)))
    add(Case(PP, "max_error_nan", ("{ws}/none.npz", "--max-error", "nan"), "error", ("--max-error",)))
    add(Case(PP, "out_is_folder", ("{ws}/none.npz", "--out", "{ws}/victim/inner"), "error", ("inner",)))
    SI = "tools/synthetic_icvl.py"
    add(Case(SI, "train_0", ("--train", "0", "--out", "{ws}/out/si"), "error", ("--train",)))
    add(Case(SI, "test_neg", ("--test", "5", "-1", "--out", "{ws}/out/si"), "error", ("--test",)))
    add(Case(SI, "workers_0", ("--workers", "0", "--out", "{ws}/out/si"), "error", ("--workers",)))
    add(Case(SI, "out_is_file", ("--out", "{ws}/victim/plain.txt"), "error", ("plain.txt",)))
    RF = "tools/run_frames.py"
    frames = ("{ws}/gray200.png", "--weights", "{ws}/random.caffemodel", "--out", "{ws}/out/rf")
    add(Case(RF, "cube_nan", frames + ("--cube", "nan"), "error", ("--cube",)))
    add(Case(RF, "cube_tiny", frames + ("--cube", "1"), "error", ("--cube",)))
    add(Case(RF, "inputs_missing", ("{ws}/nowhere", "--weights", "{ws}/random.caffemodel", "--out",
                                    "{ws}/out/rf"), "error", ("nowhere",)))
    add(Case(RF, "weights_garbage", ("{ws}/gray200.png", "--weights", "{ws}/garbage.caffemodel", "--out",
                                     "{ws}/out/rf"), "error", ("garbage.caffemodel",)))
    add(Case(RF, "out_is_file", ("{ws}/gray200.png", "--weights", "{ws}/random.caffemodel", "--out",
                                 "{ws}/victim/plain.txt"), "error", ("plain.txt",)))
    TR = "tools/train_refine.py"
    add(Case(TR, "frames_0", ("--frames", "0"), "error", ("--frames",)))
    add(Case(TR, "iters_neg", ("--iters", "-2"), "error", ("--iters",)))
    add(Case(TR, "out_not_caffemodel", ("--out", "{ws}/out/w.bin"), "error", ("caffemodel",)))
    add(Case(F, "icvl_with_nyu_labels", ("--dataset", "icvl", "{ws}/lab.txt", "--out",
                                         "{ws}/out/f_icvl.npz"), "error", ("lab.txt", "48")))
    add(Case(F, "model_bogus", ("{ws}/lab.txt", "--model", "nope", "--out", "{ws}/out/f_m.npz"),
             "error", ("nope",)))
    # ----------------------------------------------------------------- round 2 (docs/robustness.md)
    # an output that is one of the run's inputs, lies inside an input folder, or is a file of
    # the repository: refused before any work (the inputs live in victim/, hashed by every case)
    V = "{ws}/victim"
    NET = ("--weights", f"{V}/w.caffemodel")
    for tool, name, argv, needles in (
            (T, "json_is_the_predictions", ("--predictions", f"{V}/pred.txt", "--labels",
                                            "{ws}/lab.txt", "--json", f"{V}/pred.txt"), ("pred.txt", "input")),
            (T, "json_is_the_lmdb_meta", NET + ("--lmdb", f"{V}/lmdb/nyu_test", "--json",
                                                f"{V}/lmdb/nyu_test_meta.npz"), ("nyu_test_meta.npz", "input")),
            (T, "json_is_the_weights", NET + ("--lmdb", "{ws}/lmdb/nyu_test", "--json",
                                              f"{V}/w.caffemodel"), ("w.caffemodel", "input")),
            (P, "out_is_the_log", (f"{V}/train.log", "--out", f"{V}/train.log"), ("train.log", "input")),
            (P, "json_is_the_log", (f"{V}/train.log", "--json", f"{V}/train.log"), ("train.log", "input")),
            (S, "out_is_the_frame", ("--frame", f"{V}/frame.png", "--center", "300", "200", "800",
                                     "--out", f"{V}/frame.png"), ("frame.png", "input")),
            (S, "out_inside_the_lmdb", ("--lmdb", f"{V}/lmdb", "--out", f"{V}/lmdb/s.png"),
             ("s.png", "inside")),
            (D, "input_named_as_an_output", (f"{V}/overview.png", *NET, "--out", V),
             ("overview.png", "input")),
            (RF, "out_inside_the_frames", (f"{V}/frames", *NET, "--out", f"{V}/frames/out"),
             ("frames", "inside")),
            (PP, "out_is_the_fits", (f"{V}/fits.npz", "--out", f"{V}/fits.npz"), ("fits.npz", "input")),
            (SR, "json_is_the_weights", NET + ("--json", f"{V}/w.caffemodel"), ("w.caffemodel", "input")),
            (FD, "json_inside_the_lmdb", NET + ("--lmdb", f"{V}/lmdb/nyu_test", "--frames", "2",
                                                "--json", f"{V}/lmdb/nyu_test_depth/x.json"),
             ("x.json", "inside")),
            (M, "out_inside_the_root", ("nyu", "--root", V, "--out", f"{V}/lmdb_new"),
             ("lmdb_new", "inside")),
            (B, "json_inside_the_lmdb_dir", ("--lmdb-dir", f"{V}/lmdb", "--json", f"{V}/lmdb/b.json"),
             ("b.json", "inside")),
            (L, "results_inside_the_lmdb_dir", ("--results", f"{V}/lmdb", "--lmdb-dir", f"{V}/lmdb",
                                                "--iters", "1", "--no-eval"), ("inside",)),
            (CC, "out_is_a_reference_crop", ("--out", "data/reference/nyu/test_crops/772.png"),
             ("772.png", "input")),
            (MN, "out_in_the_reference_data", ("--out", "data/reference"), ("reference",)),
            (SY, "out_holds_repository_files", ("--train", "1", "--test", "1", "--out", "docs"),
             ("docs", "repository")),
            (T1, "doc_is_not_its_page", ("--table-only", "--doc", f"{V}/page.md", "--results",
                                         "{ws}/out/t1"), ("page.md", "tools/table1.py")),
            (R, "markdown_without_block_first", ("--out", f"{V}/rest.png", "--markdown",
                                                  f"{V}/page.md"), ("page.md",)),
            (IH, "markdown_without_block_first", ("--markdown", f"{V}/page.md"), ("page.md",)),
            # damaged files and values that are numbers but not data
            (T, "lmdb_truncated", ("--weights", "{ws}/random.caffemodel", "--lmdb",
                                   "{ws}/lmdb_truncated/nyu_test", "--out", "{ws}/out/t"),
             ("data.mdb", "truncated")),
            (S, "lmdb_truncated", ("--lmdb", "{ws}/lmdb_truncated", "--out", "{ws}/out/s.png"),
             ("data.mdb", "truncated")),
            (T, "label_1e30", ("--weights", "{ws}/random.caffemodel", "--lmdb", "{ws}/lmdb_huge/nyu_test",
                               "--out", "{ws}/out/t"), ("nyu_test_joint", "record 5", "1e+30")),
            (S, "label_1e30", ("--lmdb", "{ws}/lmdb_huge", "--index", "5", "--out", "{ws}/out/s.png"),
             ("record 5", "1e+30")),
            (F, "restarts_unbounded", ("{ws}/lab.txt", "--restarts", "100000000", "--out",
                                       "{ws}/out/f.npz"), ("--restarts",)),
            (IH, "restarts_unbounded", ("--restarts", "100000000"), ("--restarts",)),
            (S, "out_unknown_format", ("--frame", "{ws}/frame.png", "--center", "300", "200", "800",
                                       "--out", "{ws}/out/s.bmp"), (".bmp",))):
        add(Case(tool, name, argv, "error", needles))
    # a second fresh set, written after the fixes: other tools, other paths, other classes
    for tool, name, argv, needles in (
            (P, "out_is_the_second_log", (f"{V}/train.log", "{ws}/logs/b/train.log", "--out",
                                          "{ws}/logs/b/train.log"), ("train.log", "input")),
            (S, "out_is_the_data_mdb", ("--lmdb", f"{V}/lmdb", "--out",
                                        f"{V}/lmdb/nyu_test_depth/data.mdb"), ("data.mdb",)),
            (SR, "json_inside_the_crops", ("--weights", f"{V}/w.caffemodel", "--crops", f"{V}/frames",
                                           "--json", f"{V}/frames/s.json"), ("s.json", "inside")),
            (M, "out_is_the_root", ("nyu", "--root", f"{V}/frames", "--out", f"{V}/frames"),
             ("frames", "input")),
            (MG, "out_inside_a_source", ("--out", f"{V}/lmdb/merged", "--train", f"{V}/lmdb"),
             ("merged", "inside")),
            (T1, "figure_in_the_reference_data", ("--table-only", "--figure",
                                                  "data/reference/t.png", "--results", "{ws}/out/t1"),
             ("reference",)),
            (B, "json_is_the_readme", ("--json", "README.md"), ("README.md", "repository")),
            (FD, "json_is_the_weights", NET + ("--lmdb", f"{V}/lmdb/nyu_test", "--json",
                                               f"{V}/w.caffemodel"), ("w.caffemodel", "input")),
            (L, "results_is_the_lmdb_dir", ("--results", f"{V}/lmdb", "--lmdb-dir", f"{V}/lmdb",
                                            "--no-eval"), ("input",)),
            (PP, "out_in_the_reference_data", (f"{V}/fits.npz", "--out", "data/reference/p.npz"),
             ("reference",)),
            (F, "out_is_the_labels_npz", (f"{V}/fits.npz", "--out", f"{V}/fits.npz"),
             ("fits.npz", "input")),
            (T, "out_holds_a_prediction_named_like_a_plot",
             ("--predictions", f"{V}/overview.png", "--labels", "{ws}/lab.txt", "--out", V), ()),
            (FD, "lmdb_truncated", ("--weights", "{ws}/random.caffemodel", "--lmdb",
                                    "{ws}/lmdb_truncated/nyu_test", "--frames", "2"), ("truncated",)),
            (MG, "source_truncated", ("--out", "{ws}/out/mg_t", "--train", "{ws}/lmdb_truncated"),
             ("truncated",)),
            (MG, "test_label_1e30", ("--out", "{ws}/out/mg_h", "--train", "{ws}/lmdb",
                                     "--test", "{ws}/lmdb_huge"), ("1e+30",)),
            (F, "max_iter_unbounded", ("{ws}/lab.txt", "--max-iter", "1000000000", "--out",
                                       "{ws}/out/f.npz"), ("--max-iter",)),
            (F, "neighbour_passes_unbounded", ("{ws}/lab.txt", "--neighbour-passes", "1000000",
                                               "--out", "{ws}/out/f.npz"), ("--neighbour-passes",)),
            (T1, "figure_not_png", ("--table-only", "--figure", "{ws}/out/t.gif", "--results",
                                    "{ws}/out/t1"), (".png",))):
        add(Case(tool, name, argv, "error", needles))
    add(Case(M, "disk_full_during_build", ("nyu", "--root", "{ws}/nyu_small", "--out",
                                            "{ws}/out/m_full", "--quiet"), "error",
             ("nyu_train_depth", "disk full"), fsize=200000,
             check=lambda ws, proc: not any((ws / "out" / "m_full").glob("nyu_*"))))
    add(Case(P, "test_loss_inf", ("{ws}/logs/inf_test.log", "--out", "{ws}/out/inf.png", "--json",
                                  "{ws}/out/inf.json"), "warn", ("inf", "iteration 20")))
    add(Case(T, "stale_temporaries_removed", pred("pred.txt", "--out", "{ws}/out/stale"), "ok",
             setup=_stale_temporaries, check=lambda ws, proc: (ws / "out/stale/eval.json").is_file()))
    # ----------------------------------------------------------------- outside the venv
    for tool in (T, P, D, F, S, L, B, T1, R, SR, FD, MN, IH, CC, RF, TR):
        add(Case(tool, "outside_venv", ("--help",), "error", ("venv", "activate")))
    for mod in (M, SY, PP, SI):
        add(Case(mod, "outside_venv", ("--help",), "error", ("venv", "activate")))
    ids = [x.id for x in c]
    dup = [i for i, n in collections.Counter(ids).items() if n > 1]
    assert not dup, dup
    return c


# ---------------------------------------------------------------------------------------------
# running and judging one case

def _tree_state(folder):
    state = {}
    for p in sorted(pathlib.Path(folder).rglob("*")):
        if p.is_file():
            state[str(p.relative_to(folder))] = hashlib.sha1(p.read_bytes()).hexdigest()
        else:
            state[str(p.relative_to(folder)) + "/"] = "dir"
    return state


def _preexec(fsize):
    def limit():
        os.setsid()
        if fsize is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)    # a write past the limit: EFBIG
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    return limit


def run_case(case, ws, timeout=600):
    """Run one case in workspace ``ws``; returns the CompletedProcess. Raises AssertionError with
    the reason when a rule is broken."""
    ws = pathlib.Path(ws)
    fmt = lambda a: str(a).format(ws=ws)
    argv = [fmt(a) for a in case.argv]
    env = dict(os.environ, GLOG_minloglevel="2", PYTHONDONTWRITEBYTECODE="1")
    env.pop("DEEPMODEL_TRACEBACK", None)
    interpreter = [PY]
    if case.name == "outside_venv":
        interpreter = [getattr(sys, "_base_executable", PY), "-S"]    # no site-packages: no numpy
    if case.fault:
        kind, folder = fmt(case.fault).split(":", 1)
        env["HOSTILE_FAULT"] = f"{kind}:{folder}"
        env["PYTHONPATH"] = os.pathsep.join([str(TESTS / "fault_inject"), env.get("PYTHONPATH", "")])
    if case.setup is not None:
        case.setup(ws)
    before = _tree_state(ws / "victim")
    proc = subprocess.run(interpreter + case.tool.split() + argv, cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout,
                          preexec_fn=_preexec(case.fsize))
    err = proc.stderr
    show = f"{case.id}: exit {proc.returncode}\nstdout: {proc.stdout[-2000:]}\nstderr: {err[-3000:]}"
    assert "Traceback" not in err, show
    assert "internal error" not in err, show
    lines = [ln for ln in re.split(r"[\r\n]", err) if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    if case.expect == "error":
        assert proc.returncode == 2, show
        assert len(errors) == 1 and lines[-1] == errors[0], show
        for n in case.needles:
            assert fmt(n) in errors[0], (n, show)
    else:
        assert proc.returncode in case.codes, show
        assert not errors, show
        if case.expect == "warn":
            warnings = [ln for ln in lines if ln.startswith("warning:")]
            assert any(all(fmt(n) in w for n in case.needles) for w in warnings), show
    assert _tree_state(ws / "victim") == before, f"{case.id}: the victim folder changed\n{show}"
    left = [str(p) for p in ws.rglob(f"*{TMP_TAG}*")]
    assert not left, f"{case.id}: temporary files left: {left}\n{show}"
    for j in (ws / "out").rglob("*.json") if (ws / "out").is_dir() else ():
        json.loads(j.read_text(), parse_constant=_no_constant)
    if case.check is not None:
        assert case.check(ws, proc) is not False, show
    return proc


def main():
    import tempfile

    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
        ws = build_workspace(pathlib.Path(tmp) / "ws")
        counts = collections.Counter()
        failed = collections.Counter()
        for case in cases():
            tool = tool_name(case.tool)
            counts[tool] += 1
            try:
                run_case(case, ws)
            except AssertionError as err:
                failed[tool] += 1
                print(f"FAILED {case.id}: {str(err).splitlines()[0]}", file=sys.stderr)
        width = max(map(len, counts))
        print(f"{'tool':<{width}}  cases  failed")
        for tool, n in sorted(counts.items()):
            print(f"{tool:<{width}}  {n:>5}  {failed[tool]:>6}")
        print(f"{'total':<{width}}  {sum(counts.values()):>5}  {sum(failed.values()):>6}")
        return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
