"""deepmodel.data.records.merge: training splits of several LMDB folders mixed into one, read by Caffe."""
import subprocess
import sys

import lmdb
import numpy as np
import pytest

from deepmodel.data.records import datum
from deepmodel.data.records.lmdb_io import read_build_id
from deepmodel.data.records.split import LmdbSplit
from tiny_lmdb import write_tiny_lmdbs


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("merge")
    return write_tiny_lmdbs(root / "a", n_train=40, n_test=8, seed=0), \
        write_tiny_lmdbs(root / "b", n_train=24, n_test=8, seed=1)


def merge(project_root, *args):
    return subprocess.run([sys.executable, "-m", "deepmodel.tools.merge_lmdb", "--quiet", *map(str, args)],
                          cwd=project_root, capture_output=True, text=True)


def records(folder, name):
    """``{kind: [bytes, ...]}`` of a split's LMDBs in key order."""
    out = {}
    for kind in ("depth", "joint", "theta"):
        with lmdb.open(str(folder / f"nyu_{name}_{kind}"), readonly=True, lock=False) as env, \
                env.begin() as txn:
            out[kind] = [v for _, v in txn.cursor()]
    return out


def test_merged_split_holds_the_drawn_records_aligned(project_root, sources, tmp_path):
    a, b = sources
    out = tmp_path / "mix"
    proc = merge(project_root, "--out", out, "--train", a, f"{b}:10")
    assert proc.returncode == 0, proc.stderr
    assert "50 training records (40 of" in proc.stdout
    merged, ra, rb = records(out, "train"), records(a, "train"), records(b, "train")
    assert all(len(v) == 50 for v in merged.values())
    # each merged record is one source record, depth, joints and angles of the same frame: the
    # frames are told apart by their (random) true angles
    index = {v: ("a", i) for i, v in enumerate(ra["theta"])} | {v: ("b", i) for i, v in enumerate(rb["theta"])}
    found = [index[v] for v in merged["theta"]]
    for (src, i), d, j in zip(found, merged["depth"], merged["joint"]):
        ref = ra if src == "a" else rb
        assert d == ref["depth"][i] and j == ref["joint"][i]
    assert sorted(i for s, i in found if s == "a") == list(range(40))       # all of a, once
    from_b = [i for s, i in found if s == "b"]
    assert len(from_b) == len(set(from_b)) == 10                             # 10 distinct of b
    meta = np.load(out / "nyu_train_meta.npz")
    src = meta["source"]
    assert list(src) == [0 if s == "a" else 1 for s, _ in found]
    assert 0 < np.flatnonzero(src == 1)[0] < 40 and np.flatnonzero(src == 0)[-1] > 10   # interleaved
    theta = np.stack([datum.decode(v)[1] for v in merged["theta"]])
    np.testing.assert_allclose(meta["theta"], theta, atol=1e-6)
    # the test split is the first source's, byte for byte
    assert records(out, "test") == records(a, "test")
    LmdbSplit.of(out, "nyu", "train").check_build()
    LmdbSplit.of(out, "nyu", "test").check_build()


def test_a_face_suffix_draws_only_hands_showing_that_face(project_root, sources, tmp_path):
    a, _ = sources
    b = write_tiny_lmdbs(tmp_path / "faces", n_train=24, n_test=4, seed=2, back_every=3)
    turned = np.load(b / "nyu_train_meta.npz")["theta"][:, 4] != 0      # 8 of 24, backs shown
    out = tmp_path / "mix"
    proc = merge(project_root, "--out", out, "--train", a, f"{b}:6:back")
    assert proc.returncode == 0, proc.stderr
    assert "6 of" in proc.stdout and "showing the back" in proc.stdout
    meta = np.load(out / "nyu_train_meta.npz")
    from_b = meta["source"] == 1
    assert from_b.sum() == 6 and np.all(meta["theta"][from_b, 4] != 0)
    # every back-facing record, and only those; the palms likewise; the face is part of the build
    proc = merge(project_root, "--out", out, "--train", a, f"{b}:back")
    assert proc.returncode == 0 and "up to date" not in proc.stdout, proc.stderr
    meta = np.load(out / "nyu_train_meta.npz")
    assert sorted(meta["frame"][meta["source"] == 1]) == list(np.flatnonzero(turned))
    proc = merge(project_root, "--out", out, "--train", f"{b}:palm")
    assert proc.returncode == 0, proc.stderr
    assert sorted(np.load(out / "nyu_train_meta.npz")["frame"]) == list(np.flatnonzero(~turned))
    # one folder twice, a draw of each face: each record's bytes are its own source record's
    proc = merge(project_root, "--out", out, "--train", f"{b}:4:back", f"{b}:4:palm")
    assert proc.returncode == 0, proc.stderr
    meta = np.load(out / "nyu_train_meta.npz")
    assert np.all(turned[meta["frame"][meta["source"] == 0]])
    assert not np.any(turned[meta["frame"][meta["source"] == 1]])
    mine, theirs = records(out, "train"), records(b, "train")     # the tiny set's frame = record
    for kind in mine:
        assert len(mine[kind]) == 8
        assert all(m == theirs[kind][f] for m, f in zip(mine[kind], meta["frame"]))
    proc = merge(project_root, "--out", tmp_path / "none", "--train", a, f"{b}:9:back")
    assert proc.returncode == 2 and "asks for 9 records, the split has 8 showing the back" in \
        proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "none").exists()


def test_up_to_date_is_skipped_and_force_rebuilds(project_root, sources, tmp_path):
    a, b = sources
    out = tmp_path / "mix"
    assert merge(project_root, "--out", out, "--train", a, f"{b}:5").returncode == 0
    build = read_build_id(out / "nyu_train_depth")
    again = merge(project_root, "--out", out, "--train", a, f"{b}:5")
    assert again.returncode == 0 and "up to date" in again.stdout
    assert read_build_id(out / "nyu_train_depth") == build
    other = merge(project_root, "--out", out, "--train", a, f"{b}:5", "--seed", "3")
    assert other.returncode == 0 and "up to date" not in other.stdout
    assert read_build_id(out / "nyu_train_depth") != build


@pytest.mark.slow
def test_caffe_trains_on_the_merged_split(project_root, sources, tmp_path):
    a, b = sources
    out = tmp_path / "mix"
    assert merge(project_root, "--out", out, "--train", a, b).returncode == 0
    proc = subprocess.run([sys.executable, "tools/train.py", "--results", str(tmp_path / "r"),
                           "--lmdb-dir", str(out), "--iters", "4", "--no-eval"],
                          cwd=project_root, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "r" / "deepmodel.caffemodel").is_file()


@pytest.mark.parametrize("bad, needle", [("{b}:25", "asks for 25 records"), ("{b}:0", "positive"),
                                         ("{root}/nowhere", "nowhere")])
def test_bad_sources_are_one_line_errors(project_root, sources, tmp_path, bad, needle):
    a, b = sources
    out = tmp_path / "mix"
    proc = merge(project_root, "--out", out, "--train", a, bad.format(b=b, root=tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and needle in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists() or not any(out.iterdir())


def test_a_bad_test_source_writes_nothing(project_root, sources, tmp_path):
    a, _ = sources
    out = tmp_path / "mix"
    proc = merge(project_root, "--out", out, "--train", a, "--test", tmp_path / "nowhere")
    assert proc.returncode == 2 and "nowhere" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()
    proc = merge(project_root, "--out", out, "--train", a, "--test", out)
    assert proc.returncode == 2 and "--test" in proc.stderr and not out.exists()
