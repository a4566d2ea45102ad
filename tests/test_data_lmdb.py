"""LMDB build: Caffe's native Data layers read aligned records; order, skipping, atomicity, bad frames."""
import os
import re
import signal
import subprocess
import sys
import threading

import cv2
import lmdb
import numpy as np
import pytest

from deepmodel.data.records import datum
from deepmodel.data.records import lmdb_io
from deepmodel.tools import make_lmdb
from deepmodel.data.datasets import nyu
from deepmodel.data.datasets.camera import NYU_CAMERA
from deepmodel.data.hand_crop.crop import crop_depth
from tests.data_helpers import (SPEC_MAP, assert_one_line_error, data_layer_net, make_synthetic,
                                run_module)

N_TRAIN, N_TEST = 40, 24


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return make_synthetic(tmp_path_factory.mktemp("synth") / "synthetic", N_TRAIN, N_TEST, seed=3)


@pytest.fixture(scope="module")
def built(synth, tmp_path_factory):
    out = tmp_path_factory.mktemp("lmdb")
    assert make_lmdb.main(["nyu", "--root", str(synth), "--out", str(out), "--workers", "2", "--quiet"]) == 0
    return out


def _records(path):
    env = lmdb.open(str(path), readonly=True, lock=False)
    with env.begin() as txn:
        items = [(k, datum.decode_array(v)) for k, v in txn.cursor()]
    env.close()
    return items


def test_caffe_data_layers_read_aligned_records(built, synth, make_net):
    """Two (three) native Data layers: batch after batch, depth, joints and theta belong together."""
    from deepmodel.model.hand_model import HandModel
    batch = 8
    for split in ("train", "test"):
        meta = np.load(built / f"nyu_{split}_meta.npz")
        n = len(meta["frame"])
        assert str(meta["dataset"]) == "nyu"
        net = make_net(data_layer_net({t: built / f"nyu_{split}_{t}" for t in ("depth", "joint", "theta")},
                                      batch))
        assert net.blobs["depth"].data.shape == (batch, 1, 128, 128)
        assert net.blobs["joint"].data.shape == (batch, 93, 1, 1)
        jd = nyu.load_joint_data(synth / split / "joint_data.mat")
        theta_file = np.load(synth / split / "theta.npy")
        model = HandModel.nyu()
        for b in range(n // batch):
            out = net.forward()
            frames = meta["frame"][b * batch:(b + 1) * batch]
            # labels, computed here from joint_data.mat with the spec's mapping (not the reader's)
            xyz = jd.xyz[frames]
            expect = np.clip((xyz[:, SPEC_MAP] - xyz[:, 34:35]) / 150.0, -1, 1).reshape(batch, 93)
            np.testing.assert_allclose(out["joint"].reshape(batch, 93), expect, atol=2e-6)
            np.testing.assert_allclose(out["theta"].reshape(batch, 26), theta_file[frames], atol=1e-6)
            # joints and theta agree through the model: the records are aligned
            kp = np.clip(model.forward(out["theta"].reshape(batch, 26).astype(np.float64)), -1, 1)
            np.testing.assert_allclose(out["joint"].reshape(batch, 93), kp.reshape(batch, 93), atol=3e-6)
            # depth: the crop of that frame's PNG at its joint 34
            for i, f in enumerate(frames):
                img = cv2.imread(str(synth / split / f"depth_1_{f + 1:07d}.png"), cv2.IMREAD_UNCHANGED)
                depth = img[..., 0].astype(np.int32) + 256 * img[..., 1].astype(np.int32)
                c = crop_depth(depth, jd.uvd[f, 34], 300.0, NYU_CAMERA)
                np.testing.assert_array_equal(out["depth"][i, 0], c)
            assert out["depth"].min() >= -1 and out["depth"].max() <= 1


def test_real_crops_load_into_net_input_range(reference_data, tmp_path, make_net):
    """The five released crops, written as Datums, come out of a Data layer unchanged, in [-1, 1]."""
    crops = sorted((reference_data / "nyu" / "test_crops").glob("*.png"), key=lambda p: int(p.stem))
    assert len(crops) == 5
    arrs = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255 * 2 - 1 for p in crops]
    path = tmp_path / "real_depth"
    with lmdb_io.LmdbSet({"depth": path}, 1 << 26) as out:
        for a in arrs:
            out.put({"depth": datum.encode(a[None])})
        out.commit()
    net = make_net(data_layer_net({"depth": path}, 5))
    got = net.forward()["depth"]
    for i, a in enumerate(arrs):
        np.testing.assert_array_equal(got[i, 0], a)
    assert got.min() >= -1 and got.max() <= 1 and got.max() == 1    # background is the far plane
    assert (got < 0.9).mean() > 0.1                                   # and there is a hand


def test_order_keys_and_meta(built, synth):
    train = np.load(built / "nyu_train_meta.npz")
    test = np.load(built / "nyu_test_meta.npz")
    assert list(test["frame"]) == list(range(N_TEST))
    assert list(train["frame"]) == list(np.random.default_rng(0).permutation(N_TRAIN))
    assert (train["cube"] == 300).all() and (test["cube"] == 300).all()   # synthetic: no subject-2 cube
    jd = nyu.load_joint_data(synth / "train" / "joint_data.mat")
    np.testing.assert_array_equal(train["com"], jd.xyz[train["frame"], 34])
    np.testing.assert_array_equal(train["theta"], np.load(synth / "train" / "theta.npy")[train["frame"]])
    for name in ("depth", "joint", "theta"):
        keys = [k for k, _ in _records(built / f"nyu_train_{name}")]
        assert keys == [b"%08d" % i for i in range(N_TRAIN)]
    # predictions go back to mm with the meta: xyz = pred * cube / 2 + com
    joints = np.stack([r for _, r in _records(built / "nyu_test_joint")]).reshape(N_TEST, 31, 3)
    jt = nyu.load_joint_data(synth / "test" / "joint_data.mat")
    mm = joints * test["cube"][:, None, None] / 2 + test["com"][:, None, :]
    inside = np.abs(joints).max(axis=2) < 0.999
    np.testing.assert_allclose(mm[inside], jt.xyz[:, SPEC_MAP][inside], atol=1e-3)


def test_second_build_is_skipped_and_changes_rebuild(synth, tmp_path, monkeypatch, capsys):
    """A second build of the same input builds nothing (the LMDB is the same file, untouched, and
    the build step is not entered); another crop rebuilds."""
    out = tmp_path / "lmdb"
    args = ["nyu", "--root", str(synth), "--out", str(out), "--workers", "1", "--quiet", "--splits", "test"]
    assert make_lmdb.main(args) == 0
    first = (out / "nyu_test_depth" / "data.mdb").stat()
    build_split = make_lmdb.build.build_split

    def no_build(*a, **k):
        raise AssertionError("a current split was built again")

    monkeypatch.setattr(make_lmdb.build, "build_split", no_build)
    capsys.readouterr()
    assert make_lmdb.main(args) == 0
    assert make_lmdb.main(args + ["--seed", "5"]) == 0          # seed only affects train: still current
    assert capsys.readouterr().out.count("nyu_test: up to date") == 2
    again = (out / "nyu_test_depth" / "data.mdb").stat()
    assert (again.st_ino, again.st_mtime_ns, again.st_size) == (first.st_ino, first.st_mtime_ns, first.st_size)
    monkeypatch.setattr(make_lmdb.build, "build_split", build_split)
    mtime = first.st_mtime_ns
    assert make_lmdb.main(args + ["--cube", "280"]) == 0         # another crop: rebuilt
    assert (out / "nyu_test_depth" / "data.mdb").stat().st_mtime_ns != mtime
    assert (np.load(out / "nyu_test_meta.npz")["cube"] == 280).all()


def _fake_root(src, dst, n, bad=()):
    """An NYU-layout root of ``n`` test frames reusing ``src``'s PNGs/labels cyclically (hard links)."""
    (dst / "test").mkdir(parents=True)
    jd = nyu.load_joint_data(src / "test" / "joint_data.mat")
    m = len(jd)
    idx = np.arange(n) % m
    for i in range(n):
        target = dst / "test" / f"depth_1_{i + 1:07d}.png"
        if i in bad:
            data = (src / "test" / f"depth_1_{idx[i] + 1:07d}.png").read_bytes()
            target.write_bytes(data[: len(data) // 3])                   # truncated
        else:
            os.link(src / "test" / f"depth_1_{idx[i] + 1:07d}.png", target)
    nyu.save_joint_data(dst / "test" / "joint_data.mat", jd.uvd[idx], jd.xyz[idx])
    return dst


def test_unreadable_pngs_are_skipped_counted_and_logged(synth, tmp_path, project_root):
    root = _fake_root(synth, tmp_path / "root", 120, bad={7})
    (root / "test" / "depth_1_0000031.png").unlink()                     # missing file
    corrupt = root / "test" / "depth_1_0000013.png"                      # damaged data, complete file
    data = bytearray(corrupt.read_bytes())
    corrupt.unlink()                                                     # (a hard link: do not edit)
    data[40:80] = b"x" * 40
    corrupt.write_bytes(bytes(data))
    out = tmp_path / "lmdb"
    proc = run_module(project_root, "-m", "deepmodel.tools.make_lmdb", "nyu", "--root", root, "--out", out,
                      "--splits", "test", "--quiet", "--max-bad", "0.05", "--subject2-cube", "off")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""                                             # no decoder chatter
    assert "3 frames skipped" in proc.stdout and "nyu_test_bad.txt" in proc.stdout
    log = (out / "nyu_test_bad.txt").read_text().splitlines()
    assert len(log) == 3
    assert log[0].startswith("7 ") and "truncated" in log[0]
    assert log[1].startswith("12 ") and "cannot be decoded" in log[1]
    assert log[2].startswith("30 ") and "cannot read" in log[2]
    meta = np.load(out / "nyu_test_meta.npz")
    assert len(meta["frame"]) == 117 and not {7, 12, 30} & set(meta["frame"].tolist())
    assert list(meta["bad_frames"]) == [7, 12, 30]
    assert lmdb_io.count_records(out / "nyu_test_depth") == 117
    # past the threshold: fails, one line, nothing written (the previous LMDBs stay)
    before = (out / "nyu_test_depth" / "data.mdb").stat().st_mtime_ns
    for i in range(40, 44):
        (root / "test" / f"depth_1_{i:07d}.png").unlink()
    proc = run_module(project_root, "-m", "deepmodel.tools.make_lmdb", "nyu", "--root", root, "--out", out,
                      "--splits", "test", "--quiet", "--max-bad", "0.05", "--subject2-cube", "off")
    assert_one_line_error(proc, "7 of 120 frames unusable", "nyu_test_bad.txt")
    assert (out / "nyu_test_depth" / "data.mdb").stat().st_mtime_ns == before
    assert lmdb_io.count_records(out / "nyu_test_depth") == 117
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]


def test_killed_build_leaves_previous_lmdb_or_none(synth, tmp_path, project_root):
    """SIGKILL in the middle of a build (once its progress bar has counted 200 of 4000 frames
    written): the final names hold the previous LMDBs (or nothing)."""
    out = tmp_path / "lmdb"
    small = _fake_root(synth, tmp_path / "small", 30)
    big = _fake_root(synth, tmp_path / "big", 4000)
    cmd = [sys.executable, "-m", "deepmodel.tools.make_lmdb", "nyu", "--out", str(out), "--splits", "test",
           "--workers", "2", "--subject2-cube", "off"]

    def kill_midway(root):
        proc = subprocess.Popen(cmd + ["--root", str(root)], cwd=project_root, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # only against a hang (the build never reporting): no bound on how fast it runs
        guard = threading.Timer(900, os.killpg, (proc.pid, signal.SIGKILL))
        guard.start()
        seen, tail = 0, b""
        try:
            while seen < 200:
                chunk = os.read(proc.stderr.fileno(), 4096)     # blocks until the bar moves
                if not chunk:
                    pytest.fail(f"the build ended after {seen} frames, before it could be killed")
                tail = (tail + chunk)[-4096:]
                counts = re.findall(rb"(\d+)/4000", tail)
                seen = int(counts[-1]) if counts else 0
        finally:
            guard.cancel()
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            proc.stderr.close()

    out.mkdir()
    kill_midway(big)                              # no previous LMDB: none afterwards
    assert not (out / "nyu_test_depth").exists() and not (out / "nyu_test_meta.npz").exists()
    assert subprocess.run(cmd + ["--root", str(small), "--quiet"], cwd=project_root).returncode == 0
    assert lmdb_io.count_records(out / "nyu_test_depth") == 30
    kill_midway(big)                              # previous LMDB: still there, complete
    for name in ("depth", "joint"):
        assert lmdb_io.count_records(out / f"nyu_test_{name}") == 30
    assert len(np.load(out / "nyu_test_meta.npz")["frame"]) == 30
    assert [p for p in out.iterdir() if ".tmp-" in p.name]             # the killed build's leftovers
    assert subprocess.run(cmd + ["--root", str(small), "--force", "--quiet"],
                          cwd=project_root).returncode == 0
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]         # cleaned by the next build


def test_default_builds_from_generated_synthetic_set(tmp_path, monkeypatch, capsys):
    """No --root: the synthetic set is generated first, then read by the NYU reader."""
    monkeypatch.setattr(make_lmdb, "DEFAULT_SYNTHETIC", tmp_path / "synthetic")
    out = tmp_path / "lmdb"
    args = ["nyu", "--out", str(out), "--quiet", "--workers", "2", "--synthetic-train", "24",
            "--synthetic-test", "8"]
    assert make_lmdb.main(args) == 0
    assert "generating 24 train / 8 test" in capsys.readouterr().out
    assert lmdb_io.count_records(out / "nyu_train_theta") == 24
    assert lmdb_io.count_records(out / "nyu_test_depth") == 8
    assert make_lmdb.main(args) == 0
    text = capsys.readouterr().out
    assert "generating" not in text and text.count("up to date") == 2


def test_icvl_build(tmp_path, make_net):
    """ICVL layout: 16-bit PNGs, 16 joints, 250 mm cube at joint 0, its camera."""
    from deepmodel.data.datasets.camera import ICVL_CAMERA
    rng = np.random.default_rng(4)
    root = tmp_path / "icvl"
    lines = {"train": [], "test": []}
    for split, folder, n in (("train", "Training", 6), ("test", "Testing", 4)):
        for i in range(n):
            rel = f"seq{i % 2}/image_{i:04d}.png"
            p = root / folder / "Depth" / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            img = np.full((240, 320), 900, np.uint16)
            uvd = np.column_stack([rng.uniform(120, 200, 16), rng.uniform(80, 160, 16), rng.uniform(330, 380, 16)])
            u, v = int(uvd[0, 0]), int(uvd[0, 1])
            img[v - 20:v + 20, u - 15:u + 15] = int(uvd[0, 2])
            cv2.imwrite(str(p), img)
            lines[split].append(rel + " " + " ".join(f"{x:.3f}" for x in uvd.ravel()))
    (root / "Training" / "labels.txt").write_text("\n".join(lines["train"]) + "\n")
    (root / "Testing" / "test_seq_1.txt").write_text("\n".join(lines["test"][:2]) + "\n")
    (root / "Testing" / "test_seq_2.txt").write_text("\n".join(lines["test"][2:]) + "\n")
    out = tmp_path / "lmdb"
    assert make_lmdb.main(["icvl", "--root", str(root), "--out", str(out), "--quiet", "--workers", "1"]) == 0
    meta = np.load(out / "icvl_test_meta.npz")
    assert str(meta["dataset"]) == "icvl"
    assert list(meta["frame"]) == [0, 1, 2, 3] and (meta["cube"] == 250).all()
    net = make_net(data_layer_net({"depth": out / "icvl_test_depth", "joint": out / "icvl_test_joint"}, 4))
    res = net.forward()
    assert res["joint"].shape == (4, 48, 1, 1)
    first = lines["test"][0].split()
    uvd = np.array(first[1:], float).reshape(16, 3)
    xyz = ICVL_CAMERA.uvd_to_xyz(uvd)
    np.testing.assert_allclose(res["joint"][0].ravel(), np.clip((xyz - xyz[0]) / 125, -1, 1).ravel(), atol=1e-5)
    np.testing.assert_allclose(meta["com"][0], xyz[0])
    # the patch at the centre is at the centre's depth -> 0 in the crop (up to 1 mm rounding)
    assert abs(res["depth"][0, 0, 64, 64]) < 1.0 / 125


def test_icvl_missing_label_file(project_root, tmp_path):
    (tmp_path / "icvl" / "Training").mkdir(parents=True)
    proc = run_module(project_root, "-m", "deepmodel.tools.make_lmdb", "icvl", "--root", tmp_path / "icvl",
                      "--out", tmp_path / "lmdb")
    assert_one_line_error(proc, "labels.txt", "missing")


def test_lmdbset_abort_leaves_nothing(tmp_path):
    final = tmp_path / "x_depth"
    with pytest.raises(RuntimeError):
        with lmdb_io.LmdbSet({"d": final}, 1 << 24) as out:
            out.put({"d": datum.encode(np.zeros(3))})
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []




def test_rebuild_without_angles_removes_stale_theta(synth, tmp_path):
    out = tmp_path / "lmdb"
    assert make_lmdb.main(["nyu", "--root", str(synth), "--out", str(out), "--splits", "test", "--quiet",
                           "--workers", "1"]) == 0
    assert lmdb_io.count_records(out / "nyu_test_theta") == N_TEST
    real_like = _fake_root(synth, tmp_path / "nyu", 10)          # no theta.npy, like real NYU
    assert make_lmdb.main(["nyu", "--root", str(real_like), "--out", str(out), "--splits", "test",
                           "--quiet", "--workers", "1"]) == 0
    assert not (out / "nyu_test_theta").exists()
    assert "theta" not in np.load(out / "nyu_test_meta.npz").files


def test_show_sample_from_lmdb_and_raw_frame(built, synth, reference_data, project_root, tmp_path):
    out = tmp_path / "lmdb.png"
    proc = run_module(project_root, "tools/show_sample.py", "--lmdb", built, "--split", "train", "--index", "5",
                      "--out", out)
    assert proc.returncode == 0, proc.stderr
    img = cv2.imread(str(out))
    red = (img[..., 2] > 180) & (img[..., 1] < 90) & (img[..., 0] < 90)
    assert img.shape[0] > 300 and red.sum() > 50                     # joints drawn
    raw = tmp_path / "raw.png"
    proc = run_module(project_root, "tools/show_sample.py", "--frame", synth / "test" / "depth_1_0000003.png",
                      "--out", raw)
    assert proc.returncode == 0, proc.stderr
    assert raw.is_file()
    real = tmp_path / "real.png"
    proc = run_module(project_root, "tools/show_sample.py", "--frame", reference_data / "nyu" / "depth_1_0000001.png",
                      "--center", "205.5", "288", "784.2", "--out", real)
    assert proc.returncode == 0, proc.stderr
    proc = run_module(project_root, "tools/show_sample.py", "--lmdb", built, "--index", "999", "--out", out)
    assert_one_line_error(proc, "--index 999", f"records 0..{N_TEST - 1}")
    proc = run_module(project_root, "tools/show_sample.py", "--frame", reference_data / "nyu" / "depth_1_0000001.png",
                      "--out", real)
    assert_one_line_error(proc, "joint_data.mat", "--center")
    # the same frame as a sensor in 0.125 mm units stores it (.npy): drawn with the unit, refused without
    depth = nyu.read_depth(reference_data / "nyu" / "depth_1_0000001.png")
    np.save(tmp_path / "frame.npy", depth.astype(np.float32) * 8)
    unit = tmp_path / "unit.png"
    proc = run_module(project_root, "tools/show_sample.py", "--frame", tmp_path / "frame.npy",
                      "--depth-unit", "0.125", "--center", "205.5", "288", "784.2", "--out", unit)
    assert proc.returncode == 0, proc.stderr
    assert cv2.imread(str(unit)).shape == cv2.imread(str(real)).shape
    proc = run_module(project_root, "tools/show_sample.py", "--frame", tmp_path / "frame.npy",
                      "--center", "205.5", "288", "784.2", "--out", tmp_path / "no.png")
    assert_one_line_error(proc, "frame.npy", "is the depth unit right?")
    assert not (tmp_path / "no.png").exists()


def test_truncated_and_damaged_lmdbs_are_one_line_errors_not_a_crash(tmp_path):
    """A data.mdb cut short would fault (SIGBUS) when mapped: refused before it is opened, in
    this process and in a tool's; a label of 1e30 is refused where labels are read."""
    import os
    import shutil

    import numpy as np
    import pytest

    from deepmodel.data.records.lmdb_io import DatumLMDB, check_data_file, count_records
    from deepmodel.data.records.split import LmdbSplit, checked_labels
    from deepmodel.plumbing import InputError
    from tiny_lmdb import write_tiny_lmdbs

    good = write_tiny_lmdbs(tmp_path / "good", n_train=4, n_test=4)
    cut = tmp_path / "cut"
    shutil.copytree(good, cut)
    mdb = cut / "nyu_test_depth" / "data.mdb"
    full = mdb.stat().st_size
    check_data_file(good / "nyu_test_depth")                  # intact: nothing said
    for size in (full - 4096, full // 2, 5000, 100):
        os.truncate(mdb, size)
        with pytest.raises(InputError, match="truncated LMDB"):
            DatumLMDB(cut / "nyu_test_depth")
        assert count_records(cut / "nyu_test_depth") == -1
    labels = np.zeros((3, 93))
    labels[1, 4] = -1e30
    with pytest.raises(InputError, match="record 1 has the label value -1e"):
        checked_labels("x_joint", labels)
    assert checked_labels("x_joint", labels[[0, 2]]) is not None
    _, rows = LmdbSplit.of(good, "nyu", "test").read_labels("joint")
    assert rows.shape == (4, 93)
